//! The one place that turns reports into what people and scripts read.
//!
//! `-o json` prints exactly one JSON document on stdout and everything else
//! on stderr. Tables (comfy-table) fit the terminal's width, or 120 columns
//! when piped; colour appears only on a terminal and never with NO_COLOR.
//! `-q` keeps only findings and errors.

use std::io::IsTerminal;

use comfy_table::{presets, Attribute, Cell, Color, ContentArrangement, Table};
use serde::Serialize;
use serde_json::Value;

use crate::cli::{GlobalOptions, OutputFormat};
use crate::report::{CheckStatus, DiagnoseReport, PlanStep, RepairReport, Severity};

const PIPED_WIDTH: u16 = 120;

/// Whether NO_COLOR asks for no colour (set and not empty, as
/// no-color.org says).
fn no_color() -> bool {
    std::env::var_os("NO_COLOR").is_some_and(|v| !v.is_empty())
}

/// Whether text written to stderr may be coloured: only on a terminal and
/// never with NO_COLOR. Also used for the log lines.
pub fn colour_on_stderr() -> bool {
    !no_color() && std::io::stderr().is_terminal()
}

#[derive(Debug, Clone)]
pub struct Output {
    pub format: OutputFormat,
    pub quiet: bool,
    color_stdout: bool,
    color_stderr: bool,
}

impl Output {
    pub fn new(opts: &GlobalOptions) -> Output {
        Output {
            format: opts.output,
            quiet: opts.quiet,
            color_stdout: !no_color() && std::io::stdout().is_terminal(),
            color_stderr: colour_on_stderr(),
        }
    }

    pub fn json(&self) -> bool {
        self.format == OutputFormat::Json
    }

    /// A progress or context line for people, on stderr; silent with -q.
    pub fn info(&self, msg: impl AsRef<str>) {
        if !self.quiet {
            crate::errln!("{}", msg.as_ref());
        }
    }

    /// A warning on stderr. Silent with -q, which DESIGN.md defines as
    /// errors only; a warning that changes what to do (a fix that will be
    /// undone) is also in the finding's summary, which -q still shows.
    pub fn warn(&self, msg: impl AsRef<str>) {
        if self.quiet {
            return;
        }
        let label = if self.color_stderr {
            console::style("warning:")
                .for_stderr()
                .force_styling(true)
                .yellow()
                .bold()
                .to_string()
        } else {
            "warning:".to_string()
        };
        crate::errln!("{label} {}", msg.as_ref());
    }

    /// An error on stderr, shown always.
    pub fn error(&self, msg: impl AsRef<str>) {
        let label = if self.color_stderr {
            console::style("error:")
                .for_stderr()
                .force_styling(true)
                .red()
                .bold()
                .to_string()
        } else {
            "error:".to_string()
        };
        crate::errln!("{label} {}", msg.as_ref());
    }

    /// Prints the one JSON document of this run on stdout.
    pub fn print_json<T: Serialize>(&self, doc: &T) {
        match serde_json::to_string_pretty(doc) {
            Ok(s) => crate::outln!("{s}"),
            Err(e) => self.error(format!("could not encode the JSON output: {e}")),
        }
    }

    /// A command's data for scripts and shells on stdout, as it is (the
    /// lab's `export` lines).
    pub fn print_stdout(&self, text: &str) {
        use std::io::Write;
        let mut stdout = crate::pipe::stdout();
        let _ = stdout.write_all(text.as_bytes());
        let _ = stdout.flush();
    }

    /// Text for people: on stdout for tables, on stderr when stdout carries JSON.
    fn human(&self, text: &str) {
        if self.json() {
            crate::errln!("{text}");
        } else {
            crate::outln!("{text}");
        }
    }

    /// A table for stdout (or stderr when stdout carries JSON): as wide as
    /// the terminal, or [`PIPED_WIDTH`] columns when not on one.
    fn table(&self, for_stdout: bool) -> Table {
        let mut t = Table::new();
        t.load_preset(presets::UTF8_FULL_CONDENSED);
        t.set_content_arrangement(ContentArrangement::Dynamic);
        if !for_stdout || self.json() {
            t.use_stderr();
        }
        if !t.is_tty() {
            t.force_no_tty();
            t.set_width(PIPED_WIDTH);
        }
        t
    }

    /// A check's status, coloured when stdout may be.
    fn status_cell(&self, status: CheckStatus) -> Cell {
        let word = match status {
            CheckStatus::Ok => "ok",
            CheckStatus::Warning => "warning",
            CheckStatus::Problem => "problem",
            CheckStatus::Skipped => "skipped",
            CheckStatus::Error => "error",
        };
        let cell = Cell::new(word);
        if !self.color_stdout {
            return cell;
        }
        match status {
            CheckStatus::Ok => cell.fg(Color::Green),
            CheckStatus::Warning => cell.fg(Color::Yellow),
            CheckStatus::Problem | CheckStatus::Error => {
                cell.fg(Color::Red).add_attribute(Attribute::Bold)
            }
            CheckStatus::Skipped => cell.fg(Color::DarkGrey),
        }
    }

    /// The diagnosis: a line per check, then findings grouped by severity.
    pub fn print_diagnose(&self, report: &DiagnoseReport) {
        if self.json() {
            self.print_json(report);
            return;
        }
        if !self.quiet {
            let mut t = self.table(true);
            t.set_header(vec!["check", "status", "time", "detail"]);
            for c in &report.checks {
                let mut detail: Vec<String> = c.reason.iter().cloned().collect();
                detail.extend(c.notes.iter().cloned());
                if !c.findings.is_empty() {
                    detail.insert(0, format!("{} finding(s)", c.findings.len()));
                }
                t.add_row(vec![
                    Cell::new(&c.id),
                    self.status_cell(c.status),
                    Cell::new(format!("{} ms", c.duration_ms)),
                    Cell::new(detail.join("\n")),
                ]);
            }
            crate::outln!("{t}");
        }
        let mut first = true;
        for severity in [Severity::Problem, Severity::Warning] {
            let findings: Vec<_> = report
                .findings()
                .filter(|f| f.severity == severity)
                .collect();
            if findings.is_empty() {
                continue;
            }
            let title = match severity {
                Severity::Problem => "Problems",
                Severity::Warning => "Warnings",
            };
            // A blank line between tables; none at the top with -q.
            let gap = if self.quiet && first { "" } else { "\n" };
            first = false;
            crate::outln!("{gap}{title} ({})", findings.len());
            let mut t = self.table(true);
            t.set_header(vec!["subject", "finding", "repair / runbook"]);
            for f in findings {
                let evidence = f
                    .evidence
                    .iter()
                    .map(|(k, v)| evidence_text(k, v))
                    .collect::<Vec<_>>()
                    .join("\n");
                let repair = match &f.repair {
                    Some(cmd) => format!("{cmd}\nrunbook: harbor-doctor runbook {}", f.runbook),
                    None => format!(
                        "no automatic repair\nrunbook: harbor-doctor runbook {}",
                        f.runbook
                    ),
                };
                t.add_row(vec![
                    Cell::new(format!("{}\n({})", f.subject, f.check)),
                    Cell::new(if evidence.is_empty() {
                        f.summary.clone()
                    } else {
                        format!("{}\n\n{evidence}", f.summary)
                    }),
                    Cell::new(repair),
                ]);
            }
            crate::outln!("{t}");
        }
        if !self.quiet {
            let s = &report.summary;
            crate::outln!(
                "\n{} ok, {} warning, {} problem, {} skipped, {} error",
                s.ok,
                s.warning,
                s.problem,
                s.skipped,
                s.error
            );
        }
    }

    /// A repair's plan, before it is confirmed. A numbered list rather than
    /// a table: values (subjects, issuers, names) must show whole, never
    /// wrapped mid-value, so they can be read and copied exactly.
    pub fn print_plan(&self, title: &str, steps: &[PlanStep]) {
        let mut text = format!("Plan: {title}");
        for (i, s) in steps.iter().enumerate() {
            text.push_str(&format!("\n  {:>2}. {} {}", i + 1, s.action, s.target));
            for line in s.detail.lines() {
                text.push_str(&format!("\n        {line}"));
            }
        }
        self.human(&text);
    }

    /// A titled table for people (on stdout, or stderr when stdout carries
    /// JSON). Cells are shown whole.
    pub fn print_table(&self, title: &str, headers: &[&str], rows: Vec<Vec<String>>) {
        let mut t = self.table(!self.json());
        t.set_header(headers.to_vec());
        for row in rows {
            t.add_row(row);
        }
        self.human(&format!("{title}\n{t}"));
    }

    /// A repair's result: the JSON document, or a closing line for people.
    pub fn print_repair(&self, report: &RepairReport) {
        if self.json() {
            self.print_json(report);
        }
    }
}

/// A scalar as people read it: strings without quotes.
fn plain(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Null => "-".into(),
        other => other.to_string(),
    }
}

/// One piece of evidence for a table cell: `key: value`, a nested object
/// one `key: value` per line below its name, a list of objects one line
/// per item. Deeper nesting stays JSON.
fn evidence_text(key: &str, value: &Value) -> String {
    let flat = |o: &serde_json::Map<String, Value>| {
        o.iter()
            .map(|(k, v)| format!("{k}: {}", plain(v)))
            .collect::<Vec<_>>()
    };
    match value {
        Value::Object(o) if !o.is_empty() => {
            let mut lines = vec![format!("{key}:")];
            lines.extend(flat(o).into_iter().map(|l| format!("  {l}")));
            lines.join("\n")
        }
        Value::Array(items) if items.iter().any(Value::is_object) => {
            let mut lines = vec![format!("{key}:")];
            for item in items {
                lines.push(match item {
                    Value::Object(o) => format!("  - {}", flat(o).join(", ")),
                    other => format!("  - {}", plain(other)),
                });
            }
            lines.join("\n")
        }
        Value::Array(items) => format!(
            "{key}: {}",
            items.iter().map(plain).collect::<Vec<_>>().join(", ")
        ),
        other => format!("{key}: {}", plain(other)),
    }
}

#[cfg(test)]
mod tests {
    use super::evidence_text;
    use serde_json::json;

    #[test]
    fn evidence_reads_as_lines_not_json() {
        assert_eq!(evidence_text("user_id", &json!(3)), "user_id: 3");
        assert_eq!(evidence_text("sub", &json!("a-b")), "sub: a-b");
        assert_eq!(
            evidence_text("modes", &json!(["ReadWriteOnce"])),
            "modes: ReadWriteOnce"
        );
        assert_eq!(
            evidence_text(
                "event",
                &json!({"count": 1, "reason": "FailedAttachVolume"})
            ),
            "event:\n  count: 1\n  reason: FailedAttachVolume"
        );
        assert_eq!(
            evidence_text(
                "holders",
                &json!([{"pod": "p-1", "stale": true}, {"pod": "p-2", "owner": null}])
            ),
            "holders:\n  - pod: p-1, stale: true\n  - owner: -, pod: p-2"
        );
    }
}
