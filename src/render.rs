//! The one place that turns reports into what people and scripts read.
//!
//! `-o json` prints exactly one JSON document on stdout and everything else
//! on stderr. Tables (comfy-table) fit the terminal's width, or 120 columns
//! when piped; colour appears only on a terminal and never with NO_COLOR.
//! `-q` keeps only findings and errors.

use std::io::IsTerminal;

use comfy_table::{presets, Cell, ContentArrangement, Table};
use serde::Serialize;

use crate::cli::{GlobalOptions, OutputFormat};
use crate::report::{CheckStatus, DiagnoseReport, PlanStep, RepairReport, Severity};

const PIPED_WIDTH: u16 = 120;

#[derive(Debug, Clone)]
pub struct Output {
    pub format: OutputFormat,
    pub quiet: bool,
    color_stdout: bool,
    color_stderr: bool,
}

impl Output {
    pub fn new(opts: &GlobalOptions) -> Output {
        let no_color = std::env::var_os("NO_COLOR").is_some_and(|v| !v.is_empty());
        Output {
            format: opts.output,
            quiet: opts.quiet,
            color_stdout: !no_color && std::io::stdout().is_terminal(),
            color_stderr: !no_color && std::io::stderr().is_terminal(),
        }
    }

    pub fn json(&self) -> bool {
        self.format == OutputFormat::Json
    }

    /// A progress or context line for people, on stderr; silent with -q.
    pub fn info(&self, msg: impl AsRef<str>) {
        if !self.quiet {
            eprintln!("{}", msg.as_ref());
        }
    }

    /// A warning on stderr, shown even with -q.
    pub fn warn(&self, msg: impl AsRef<str>) {
        let label = if self.color_stderr {
            console::style("warning:").yellow().bold().to_string()
        } else {
            "warning:".to_string()
        };
        eprintln!("{label} {}", msg.as_ref());
    }

    /// An error on stderr, shown always.
    pub fn error(&self, msg: impl AsRef<str>) {
        let label = if self.color_stderr {
            console::style("error:").red().bold().to_string()
        } else {
            "error:".to_string()
        };
        eprintln!("{label} {}", msg.as_ref());
    }

    /// Prints the one JSON document of this run on stdout.
    pub fn print_json<T: Serialize>(&self, doc: &T) {
        match serde_json::to_string_pretty(doc) {
            Ok(s) => println!("{s}"),
            Err(e) => self.error(format!("could not encode the JSON output: {e}")),
        }
    }

    /// Text for people: on stdout for tables, on stderr when stdout carries JSON.
    fn human(&self, text: &str) {
        if self.json() {
            eprintln!("{text}");
        } else {
            println!("{text}");
        }
    }

    fn table(&self, for_stdout: bool) -> Table {
        let mut t = Table::new();
        t.load_preset(presets::UTF8_FULL_CONDENSED);
        t.set_content_arrangement(ContentArrangement::Dynamic);
        let on_terminal = if for_stdout && !self.json() {
            std::io::stdout().is_terminal()
        } else {
            std::io::stderr().is_terminal()
        };
        if !on_terminal {
            t.set_width(PIPED_WIDTH);
        }
        t
    }

    fn paint_status(&self, status: CheckStatus) -> String {
        let word = match status {
            CheckStatus::Ok => "ok",
            CheckStatus::Warning => "warning",
            CheckStatus::Problem => "problem",
            CheckStatus::Skipped => "skipped",
            CheckStatus::Error => "error",
        };
        if !self.color_stdout {
            return word.to_string();
        }
        let s = console::style(word);
        match status {
            CheckStatus::Ok => s.green(),
            CheckStatus::Warning => s.yellow(),
            CheckStatus::Problem | CheckStatus::Error => s.red().bold(),
            CheckStatus::Skipped => s.dim(),
        }
        .to_string()
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
                    Cell::new(self.paint_status(c.status)),
                    Cell::new(format!("{} ms", c.duration_ms)),
                    Cell::new(detail.join("\n")),
                ]);
            }
            println!("{t}");
        }
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
            println!("\n{title} ({})", findings.len());
            let mut t = self.table(true);
            t.set_header(vec!["subject", "finding", "repair / runbook"]);
            for f in findings {
                let evidence = f
                    .evidence
                    .iter()
                    .map(|(k, v)| match v {
                        serde_json::Value::String(s) => format!("{k}: {s}"),
                        other => format!("{k}: {other}"),
                    })
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
            println!("{t}");
        }
        if !self.quiet {
            let s = &report.summary;
            println!(
                "\n{} ok, {} warning, {} problem, {} skipped, {} error",
                s.ok, s.warning, s.problem, s.skipped, s.error
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
