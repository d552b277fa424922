//! `diagnose`: run the checks at once, each within `--timeout`, and report.
//!
//! A check whose system is not configured is skipped, not failed; one that
//! errors or runs out of time is an error for that check while the others
//! still report. The exit code follows DESIGN.md: findings at or above
//! `--fail-on` give 1 even when another check errored; otherwise an error
//! gives 3. A check still running after a second shows a spinner on a
//! terminal (`progress`).

use std::time::Instant;

use anyhow::Result;

use crate::cli::{CheckId, DiagnoseArgs, FailOn, OutputFormat};
use crate::clients::is_not_configured;
use crate::context::Ctx;
use crate::issues::{run_check, CheckOptions};
use crate::outcome::ExitCode;
use crate::packaging;
use crate::progress::{self, Running};
use crate::report::{CheckReport, CheckStatus, DiagnoseReport, Severity};

pub async fn run(ctx: &Ctx, args: &DiagnoseArgs) -> Result<ExitCode> {
    let mut ids: Vec<CheckId> = if args.checks.is_empty() {
        CheckId::all().to_vec()
    } else {
        args.checks.clone()
    };
    // Each check once, in the order first named (dedup alone only drops
    // adjacent repeats: `teams connectivity teams` ran teams twice).
    let mut seen = std::collections::HashSet::new();
    ids.retain(|id| seen.insert(*id));
    let opts = CheckOptions::from_args(args)?;
    let names: Vec<&'static str> = ids.iter().map(|id| id.as_str()).collect();
    let running = Running::new(&names);
    let report = progress::while_running(
        &ctx.out,
        &running,
        collect(ctx, &ids, &opts, |id| running.done(id)),
    )
    .await;
    if ctx.out.format == OutputFormat::Prometheus {
        let text = crate::metrics::gauges(&report, std::time::SystemTime::now());
        crate::outln!("{}", text.trim_end());
    } else {
        ctx.out.print_diagnose(&report, &ctx.header());
    }
    let named = !args.checks.is_empty();
    let code = exit_code(&report, args.fail_on, named);
    if code == ExitCode::CannotRun {
        for c in report
            .checks
            .iter()
            .filter(|c| c.status == CheckStatus::Skipped)
        {
            if named
                || report
                    .checks
                    .iter()
                    .all(|c| c.status == CheckStatus::Skipped)
            {
                ctx.out.error(format!(
                    "{} was not checked: {}",
                    c.id,
                    c.reason.as_deref().unwrap_or("skipped")
                ));
            }
        }
    }
    Ok(code)
}

/// Runs the checks `ids` at once, each within `--timeout`, and returns
/// the report without printing it: for `diagnose` and for each of
/// `serve`'s runs. `done` is told each check's id as it finishes.
pub async fn collect(
    ctx: &Ctx,
    ids: &[CheckId],
    opts: &CheckOptions,
    done: impl Fn(&'static str),
) -> DiagnoseReport {
    let runs = ids.iter().map(|&id| {
        let done = &done;
        async move {
            let report = run_one(ctx, id, opts).await;
            done(id.as_str());
            report
        }
    });
    let mut report = DiagnoseReport::new(futures::future::join_all(runs).await);
    // Repair commands as the user can paste them: `kubectl harbor-doctor
    // ...` when running as the kubectl plugin.
    report.map_repairs(packaging::as_invoked);
    report
}

async fn run_one(ctx: &Ctx, id: CheckId, opts: &CheckOptions) -> CheckReport {
    let started = Instant::now();
    let result = tokio::time::timeout(ctx.timeout(), run_check(id, ctx, opts)).await;
    let ms = started.elapsed().as_millis() as u64;
    match result {
        Ok(Ok(outcome)) => CheckReport::from_outcome(id.as_str(), outcome, ms),
        Ok(Err(e)) if is_not_configured(&e) => CheckReport::from_outcome(
            id.as_str(),
            crate::report::CheckOutcome::skipped(format!("{e:#}")),
            ms,
        ),
        Ok(Err(e)) => {
            tracing::debug!("check {} failed: {e:?}", id.as_str());
            CheckReport::error(id.as_str(), format!("{e:#}"), ms)
        }
        Err(_) => CheckReport::error(
            id.as_str(),
            format!("did not finish within {} s (--timeout)", ctx.opts.timeout),
            ms,
        ),
    }
}

/// DESIGN.md's exit code for a diagnosis. `named`: the checks were named
/// on the command line, so skipping one of them means the question asked
/// was not answered.
pub fn exit_code(report: &DiagnoseReport, fail_on: FailOn, named: bool) -> ExitCode {
    let threshold = match fail_on {
        FailOn::Warning => Severity::Warning,
        FailOn::Problem => Severity::Problem,
    };
    if report.findings().any(|f| f.severity >= threshold) {
        ExitCode::Findings
    } else if report.checks.iter().any(|c| c.status == CheckStatus::Error) {
        ExitCode::CannotRun
    } else if report
        .checks
        .iter()
        .all(|c| c.status == CheckStatus::Skipped)
        || (named
            && report
                .checks
                .iter()
                .any(|c| c.status == CheckStatus::Skipped))
    {
        // Nothing, or not what was asked, was looked at: never "healthy".
        ExitCode::CannotRun
    } else {
        ExitCode::Ok
    }
}

#[cfg(test)]
mod tests {
    use super::exit_code;
    use crate::cli::FailOn;
    use crate::outcome::ExitCode;
    use crate::report::{CheckOutcome, CheckReport, DiagnoseReport, Finding, Severity};

    fn with(severity: Severity) -> CheckReport {
        let f = Finding::new(
            "teams",
            "project-missing",
            severity,
            "team a",
            "drifted",
            "provisioning",
        );
        CheckReport::from_outcome(
            "teams",
            CheckOutcome {
                findings: vec![f],
                ..Default::default()
            },
            5,
        )
    }

    fn ok() -> CheckReport {
        CheckReport::from_outcome("connectivity", CheckOutcome::default(), 5)
    }

    fn skipped() -> CheckReport {
        CheckReport::from_outcome("cli-login", CheckOutcome::skipped("no Harbor URL"), 0)
    }

    fn errored() -> CheckReport {
        CheckReport::error(
            "multi-attach",
            "did not finish within 1 s (--timeout)",
            1000,
        )
    }

    fn code(checks: Vec<CheckReport>, fail_on: FailOn) -> ExitCode {
        exit_code(&DiagnoseReport::new(checks), fail_on, false)
    }

    #[test]
    fn findings_at_or_above_fail_on_give_1_even_when_another_check_errored() {
        let (warning, problem) = (Severity::Warning, Severity::Problem);
        assert_eq!(
            code(vec![ok(), with(warning)], FailOn::Warning),
            ExitCode::Findings
        );
        assert_eq!(
            code(vec![with(problem), errored()], FailOn::Warning),
            ExitCode::Findings
        );
        assert_eq!(
            code(vec![with(problem), errored()], FailOn::Problem),
            ExitCode::Findings
        );
        // A warning under --fail-on problem does not count: the error does.
        assert_eq!(
            code(vec![with(warning), errored()], FailOn::Problem),
            ExitCode::CannotRun
        );
        assert_eq!(
            code(vec![with(warning), ok()], FailOn::Problem),
            ExitCode::Ok
        );
    }

    #[test]
    fn an_error_gives_3_and_a_skipped_check_does_not_count() {
        assert_eq!(
            code(vec![ok(), errored()], FailOn::Warning),
            ExitCode::CannotRun
        );
        assert_eq!(code(vec![ok(), skipped()], FailOn::Warning), ExitCode::Ok);
    }

    #[test]
    fn nothing_checked_or_a_named_check_skipped_gives_3() {
        assert_eq!(code(vec![skipped()], FailOn::Warning), ExitCode::CannotRun);
        let named = |checks| exit_code(&DiagnoseReport::new(checks), FailOn::Warning, true);
        assert_eq!(named(vec![ok(), skipped()]), ExitCode::CannotRun);
        assert_eq!(named(vec![ok()]), ExitCode::Ok);
        assert_eq!(
            named(vec![with(Severity::Warning), skipped()]),
            ExitCode::Findings
        );
    }
}
