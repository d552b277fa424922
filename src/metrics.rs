//! The Prometheus text format (0.0.4) of a diagnosis: the metric families
//! DESIGN.md fixes for `serve` and `diagnose -o prometheus`.
//!
//! Labels carry only bounded, public values (check ids, statuses,
//! severities, the version): never a finding's subject, a user, a URL or a
//! secret, so a scrape can be stored and shared like any other metric.
//! docs/metrics.md documents every family; the names are stable across
//! versions because alerts and dashboards are written against them.

use std::fmt::Write;
use std::time::{SystemTime, UNIX_EPOCH};

use crate::report::{CheckStatus, DiagnoseReport, Severity};

/// The media type of the text format, for `/metrics`' Content-Type.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

const STATUSES: [(CheckStatus, &str); 5] = [
    (CheckStatus::Ok, "ok"),
    (CheckStatus::Warning, "warning"),
    (CheckStatus::Problem, "problem"),
    (CheckStatus::Skipped, "skipped"),
    (CheckStatus::Error, "error"),
];

const SEVERITIES: [(Severity, &str); 2] = [
    (Severity::Warning, "warning"),
    (Severity::Problem, "problem"),
];

/// The counters only `serve` keeps: a one-shot `diagnose` has no history.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counters {
    /// Runs completed since the process started.
    pub runs: u64,
    /// Of those, the runs in which at least one check errored.
    pub run_errors: u64,
}

/// The gauges of one finished run, as `diagnose -o prometheus` prints them.
/// `finished` is when the run ended: every check's last-run timestamp.
pub fn gauges(report: &DiagnoseReport, finished: SystemTime) -> String {
    let mut out = String::new();
    write_gauges(&mut out, Some(report), finished);
    out
}

/// Everything `serve` answers on `/metrics`: the last complete run's
/// gauges (none before the first run has finished), the counters and the
/// build information.
pub fn exposition(last: Option<(&DiagnoseReport, SystemTime)>, counters: Counters) -> String {
    let mut out = String::new();
    match last {
        Some((report, finished)) => write_gauges(&mut out, Some(report), finished),
        None => write_gauges(&mut out, None, UNIX_EPOCH),
    }
    family(
        &mut out,
        "harbor_doctor_runs_total",
        "counter",
        "Diagnosis runs completed since serve started.",
    );
    let _ = writeln!(out, "harbor_doctor_runs_total {}", counters.runs);
    family(
        &mut out,
        "harbor_doctor_run_errors_total",
        "counter",
        "Diagnosis runs in which at least one check errored (could not run or ran out of --timeout).",
    );
    let _ = writeln!(
        out,
        "harbor_doctor_run_errors_total {}",
        counters.run_errors
    );
    out
}

fn write_gauges(out: &mut String, report: Option<&DiagnoseReport>, finished: SystemTime) {
    let checks = report.map(|r| r.checks.as_slice()).unwrap_or_default();
    family(
        out,
        "harbor_doctor_check_status",
        "gauge",
        "1 for the check's status in the last run, 0 for the other statuses.",
    );
    for c in checks {
        for (status, name) in STATUSES {
            let v = u8::from(c.status == status);
            let _ = writeln!(
                out,
                "harbor_doctor_check_status{{check=\"{}\",status=\"{name}\"}} {v}",
                escape(&c.id)
            );
        }
    }
    family(
        out,
        "harbor_doctor_check_findings",
        "gauge",
        "Findings of each severity the check reported in the last run.",
    );
    for c in checks {
        for (severity, name) in SEVERITIES {
            let n = c.findings.iter().filter(|f| f.severity == severity).count();
            let _ = writeln!(
                out,
                "harbor_doctor_check_findings{{check=\"{}\",severity=\"{name}\"}} {n}",
                escape(&c.id)
            );
        }
    }
    family(
        out,
        "harbor_doctor_check_duration_seconds",
        "gauge",
        "How long the check took in the last run.",
    );
    for c in checks {
        let _ = writeln!(
            out,
            "harbor_doctor_check_duration_seconds{{check=\"{}\"}} {}",
            escape(&c.id),
            c.duration_ms as f64 / 1000.0
        );
    }
    family(
        out,
        "harbor_doctor_check_last_run_timestamp_seconds",
        "gauge",
        "When the check last ran (end of the run), as Unix time.",
    );
    let at = finished
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0);
    for c in checks {
        let _ = writeln!(
            out,
            "harbor_doctor_check_last_run_timestamp_seconds{{check=\"{}\"}} {at:.3}",
            escape(&c.id)
        );
    }
    family(
        out,
        "harbor_doctor_build_info",
        "gauge",
        "Always 1; the version label says which harbor-doctor produced these metrics.",
    );
    let _ = writeln!(
        out,
        "harbor_doctor_build_info{{version=\"{}\"}} 1",
        escape(env!("CARGO_PKG_VERSION"))
    );
}

fn family(out: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(out, "# HELP {name} {help}");
    let _ = writeln!(out, "# TYPE {name} {kind}");
}

/// A label value as the text format quotes it. Check ids and versions
/// need none today; escaping keeps the output valid if one ever does.
fn escape(value: &str) -> String {
    value
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::{CheckOutcome, CheckReport, Finding};

    fn report() -> DiagnoseReport {
        let finding = |s| {
            Finding::new(
                "teams",
                "project-missing",
                s,
                "user alice",
                "drifted",
                "provisioning",
            )
        };
        DiagnoseReport::new(vec![
            CheckReport::from_outcome(
                "teams",
                CheckOutcome {
                    findings: vec![
                        finding(Severity::Problem),
                        finding(Severity::Warning),
                        finding(Severity::Warning),
                    ],
                    ..Default::default()
                },
                1500,
            ),
            CheckReport::error("connectivity", "did not finish", 30_000),
        ])
    }

    #[test]
    fn every_status_of_every_check_with_one_set() {
        let text = gauges(&report(), UNIX_EPOCH + std::time::Duration::from_secs(10));
        for line in [
            "harbor_doctor_check_status{check=\"teams\",status=\"problem\"} 1",
            "harbor_doctor_check_status{check=\"teams\",status=\"ok\"} 0",
            "harbor_doctor_check_status{check=\"teams\",status=\"error\"} 0",
            "harbor_doctor_check_status{check=\"connectivity\",status=\"error\"} 1",
            "harbor_doctor_check_status{check=\"connectivity\",status=\"skipped\"} 0",
            "harbor_doctor_check_findings{check=\"teams\",severity=\"warning\"} 2",
            "harbor_doctor_check_findings{check=\"teams\",severity=\"problem\"} 1",
            "harbor_doctor_check_findings{check=\"connectivity\",severity=\"problem\"} 0",
            "harbor_doctor_check_duration_seconds{check=\"teams\"} 1.5",
            "harbor_doctor_check_last_run_timestamp_seconds{check=\"teams\"} 10.000",
        ] {
            assert!(text.lines().any(|l| l == line), "{line} in\n{text}");
        }
        let status_lines = text
            .lines()
            .filter(|l| l.starts_with("harbor_doctor_check_status{"))
            .count();
        assert_eq!(status_lines, 10);
        assert!(!text.contains("alice"), "no subject in a label: {text}");
        assert!(!text.contains("_total"), "no counters in a one-shot run");
    }

    #[test]
    fn before_the_first_run_only_the_families_build_info_and_counters() {
        let text = exposition(
            None,
            Counters {
                runs: 0,
                run_errors: 0,
            },
        );
        assert!(!text.contains("check=\""), "{text}");
        assert!(text.contains("harbor_doctor_runs_total 0\n"), "{text}");
        assert!(text.contains("# TYPE harbor_doctor_run_errors_total counter\n"));
        assert!(text.contains(&format!(
            "harbor_doctor_build_info{{version=\"{}\"}} 1\n",
            env!("CARGO_PKG_VERSION")
        )));
    }

    #[test]
    fn label_values_are_escaped() {
        assert_eq!(escape("a\"b\\c\nd"), "a\\\"b\\\\c\\nd");
    }
}
