//! The one place that turns reports into what people and scripts read.
//!
//! `-o json` prints exactly one JSON document on stdout and everything else
//! on stderr. Tables (comfy-table) fit the terminal's width, or 120 columns
//! when piped; colour appears only on a terminal and never with NO_COLOR.
//! `-q` keeps only findings and errors.

pub mod diagnose;

use std::io::IsTerminal;

use comfy_table::{presets, ContentArrangement, Table};
use serde::Serialize;

use crate::cli::{GlobalOptions, OutputFormat};
use crate::report::{DiagnoseReport, PlanStep, RepairReport};

const PIPED_WIDTH: u16 = 120;

/// Whether NO_COLOR asks for no colour (set and not empty, as
/// no-color.org says).
pub(crate) fn no_color() -> bool {
    std::env::var_os("NO_COLOR").is_some_and(|v| !v.is_empty())
}

/// Whether text written to stderr may be coloured: only on a terminal and
/// never with NO_COLOR. Also used for the log lines.
pub fn colour_on_stderr() -> bool {
    !no_color() && std::io::stderr().is_terminal()
}

/// The width text on stdout is laid out for: the terminal's; else
/// `$COLUMNS`, as shells export it; else [`UNKNOWN_WIDTH`].
pub(crate) fn stdout_width() -> usize {
    // console gives (rows, columns).
    if let Some((_rows, w)) = console::Term::stdout()
        .size_checked()
        .filter(|_| std::io::stdout().is_terminal())
    {
        return (w as usize).max(MIN_WIDTH);
    }
    std::env::var("COLUMNS")
        .ok()
        .and_then(|c| c.trim().parse::<usize>().ok())
        .filter(|w| *w > 0)
        .map_or(UNKNOWN_WIDTH, |w| w.max(MIN_WIDTH))
}

/// The columns of the terminal on stderr, or None when stderr is not one
/// (a log keeps each message on one line, for grep). Only the lab wraps
/// its own messages.
#[cfg(feature = "lab")]
pub(crate) fn stderr_terminal_width() -> Option<usize> {
    console::Term::stderr()
        .size_checked()
        .filter(|_| std::io::stderr().is_terminal())
        .map(|(_rows, w)| (w as usize).max(MIN_WIDTH))
}

/// Piped to a file or a log: wide enough for most summaries' first
/// sentence, narrow enough to read.
const UNKNOWN_WIDTH: usize = 100;
/// Below this, cutting lines helps no one.
const MIN_WIDTH: usize = 40;

/// Whether Unicode marks may be drawn: the locale's character set is UTF-8,
/// the terminal is not `dumb`, and NO_COLOR (which asks for plain output)
/// is not set.
fn unicode_ok() -> bool {
    if no_color() || std::env::var("TERM").is_ok_and(|t| t == "dumb") {
        return false;
    }
    // The first of these that is set decides, as setlocale does.
    let locale = ["LC_ALL", "LC_CTYPE", "LANG"]
        .iter()
        .find_map(|v| std::env::var(v).ok().filter(|s| !s.is_empty()))
        .unwrap_or_default()
        .to_ascii_lowercase();
    locale.contains("utf-8") || locale.contains("utf8")
}

#[derive(Debug, Clone)]
pub struct Output {
    pub format: OutputFormat,
    pub quiet: bool,
    pub verbose: u8,
    color_stdout: bool,
    color_stderr: bool,
    /// Columns for text on stdout (the terminal's, or $COLUMNS, else 100).
    width: usize,
    /// Unicode marks, unless the terminal or NO_COLOR asks for ASCII.
    unicode: bool,
}

impl Output {
    pub fn new(opts: &GlobalOptions) -> Output {
        Output {
            format: opts.output,
            quiet: opts.quiet,
            verbose: opts.verbose,
            color_stdout: !no_color() && std::io::stdout().is_terminal(),
            color_stderr: colour_on_stderr(),
            width: stdout_width(),
            unicode: unicode_ok(),
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

    /// The diagnosis for people (see [`diagnose`]), or the JSON document.
    pub fn print_diagnose(&self, report: &DiagnoseReport, header: &str) {
        if self.json() {
            self.print_json(report);
            return;
        }
        let style = diagnose::Style {
            width: self.width,
            unicode: self.unicode,
            colour: self.color_stdout,
            verbose: self.verbose > 0,
            quiet: self.quiet,
        };
        let mut stdout = crate::pipe::stdout();
        for line in diagnose::lines(report, header, &style) {
            use std::io::Write;
            let _ = writeln!(stdout, "{line}");
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
