//! The diagnosis as people read it at a terminal, as lines of text: a
//! header, one line per check with its status mark, under each check its
//! findings (a one-line summary, then the repair command on a line of its
//! own), and at the end the next steps in the order to run them.
//!
//! Pure: [`lines`] takes the report and how to draw it and returns the
//! lines, so the layout is tested from fixtures and by a snapshot of the
//! lab. Every line fits `width` except command lines, which are never cut
//! or wrapped so they can be copied whole.

use serde_json::Value;

use crate::report::{CheckReport, CheckStatus, DiagnoseReport, Finding, Severity};

/// How to draw the report.
#[derive(Debug, Clone, Copy)]
pub struct Style {
    /// Columns available; text lines are cut to fit, commands are not.
    pub width: usize,
    /// Unicode marks (✓ ! ✗); ASCII when the terminal or NO_COLOR asks.
    pub unicode: bool,
    /// ANSI colour on the marks.
    pub colour: bool,
    /// `-v`: whole summaries, what each check looked at, the evidence.
    pub verbose: bool,
    /// `-q`: only the findings (and errors), each with its command.
    pub quiet: bool,
}

/// Where the commands go: two spaces in from the finding's summary.
const COMMAND_INDENT: &str = "      ";
const FINDING_INDENT: &str = "    ";
const DETAIL_INDENT: &str = "        ";

pub fn lines(report: &DiagnoseReport, header: &str, style: &Style) -> Vec<String> {
    let mut out = vec![];
    if style.quiet {
        for c in &report.checks {
            if c.status == CheckStatus::Error {
                out.push(style.fit(&format!("{} {}: {}", style.mark(c.status), c.id, reason(c))));
            }
            for f in &c.findings {
                let mark = format!("{} {}", style.finding_mark(f.severity), f.check);
                out.push(style.fit(&short_line("", &mark, f, style.width)));
                out.push(format!("  {}", command_line(f)));
            }
        }
        return out;
    }
    out.push(style.fit(header));
    out.push(String::new());
    let id_width = report.checks.iter().map(|c| c.id.len()).max().unwrap_or(0);
    for c in &report.checks {
        let line = format!(
            "{} {:<id_width$}  {}",
            style.mark(c.status),
            c.id,
            check_detail(c)
        );
        out.push(style.fit(&line));
        if style.verbose || c.status == CheckStatus::Error {
            let what: Vec<&str> = if c.status == CheckStatus::Error {
                vec![reason(c)]
            } else {
                c.notes.iter().map(String::as_str).collect()
            };
            for note in what {
                out.extend(style.wrap(note, FINDING_INDENT));
            }
        }
        for f in &c.findings {
            finding_lines(f, style, &mut out);
        }
    }
    if !report.next_steps.is_empty() {
        out.push(String::new());
        out.push(style.fit("Next steps, in this order:"));
        for step in &report.next_steps {
            out.push(format!("  {step}"));
        }
    }
    out.push(String::new());
    let s = &report.summary;
    out.push(style.fit(&format!(
        "{} ok, {} warning, {} problem, {} skipped, {} error",
        s.ok, s.warning, s.problem, s.skipped, s.error
    )));
    if report.findings().next().is_some() {
        let more = if style.verbose {
            ""
        } else {
            "Evidence: add -v. "
        };
        out.push(style.fit(&format!(
            "{more}Why and what else to try: {}",
            crate::packaging::as_invoked("harbor-doctor runbook <id>")
        )));
    }
    out
}

fn finding_lines(f: &Finding, style: &Style, out: &mut Vec<String>) {
    let mark = style.finding_mark(f.severity);
    if style.verbose {
        let head = format!("{mark} {}: {}", f.subject, f.summary);
        out.extend(style.wrap_hanging(&head, FINDING_INDENT, COMMAND_INDENT));
        for (key, value) in &f.evidence {
            for line in evidence_lines(key, value) {
                // Wrapped, not cut: a value (a subject, a URL) is read whole.
                let indent = format!("{DETAIL_INDENT}{}", " ".repeat(leading_spaces(&line)));
                out.extend(style.wrap_hanging(
                    line.trim_start(),
                    &indent,
                    &format!("{indent}    "),
                ));
            }
        }
        let about = format!(
            "kind: {}; runbook: {}",
            f.kind,
            crate::packaging::as_invoked(&format!("harbor-doctor runbook {}", f.runbook))
        );
        out.extend(style.wrap(&about, DETAIL_INDENT));
    } else if f.repair.is_none() {
        // No command to run: what to do is in the rest of the summary.
        let head = format!("{mark} {}: {}", f.subject, f.summary);
        out.extend(style.wrap_hanging(&head, FINDING_INDENT, COMMAND_INDENT));
    } else {
        out.push(style.fit(&short_line(FINDING_INDENT, &mark, f, style.width)));
    }
    out.push(format!("{COMMAND_INDENT}{}", command_line(f)));
}

/// `<mark> <subject>: <what is wrong>`, shortened to its first clause, and
/// to the part before a `; ` when that is still too wide to read whole.
fn short_line(indent: &str, mark: &str, f: &Finding, width: usize) -> String {
    let mut what = first_sentence(&f.summary);
    let line = |what: &str| format!("{indent}{mark} {}: {what}", f.subject);
    if console::measure_text_width(&line(what)) > width {
        if let Some((head, _)) = what.split_once("; ") {
            what = head;
        }
    }
    line(what)
}

/// The command that repairs a finding, or where to read what to do.
fn command_line(f: &Finding) -> String {
    match &f.repair {
        Some(cmd) => cmd.clone(),
        None => format!(
            "no automatic repair; what to do: {}",
            crate::packaging::as_invoked(&format!("harbor-doctor runbook {}", f.runbook))
        ),
    }
}

/// What a check's line says after its name.
fn check_detail(c: &CheckReport) -> String {
    match c.status {
        CheckStatus::Skipped => format!("skipped: {}", reason(c)),
        CheckStatus::Error => "error: the check could not finish".to_string(),
        CheckStatus::Ok => c
            .notes
            .first()
            .cloned()
            .unwrap_or_else(|| "nothing wrong found".to_string()),
        CheckStatus::Warning | CheckStatus::Problem => {
            let count = |sev| c.findings.iter().filter(|f| f.severity == sev).count();
            let mut parts = vec![];
            for (n, one, many) in [
                (count(Severity::Problem), "problem", "problems"),
                (count(Severity::Warning), "warning", "warnings"),
            ] {
                if n > 0 {
                    parts.push(format!("{n} {}", if n == 1 { one } else { many }));
                }
            }
            parts.join(", ")
        }
    }
}

fn reason(c: &CheckReport) -> &str {
    c.reason.as_deref().unwrap_or("no reason given")
}

/// The summary's first clause: what is wrong. What it breaks, why and
/// what to do follow in the whole summary (`-v`, and the JSON).
fn first_sentence(summary: &str) -> &str {
    // A sentence ends at ". " before a capital letter ("e.g. x" does not
    // end one); a clause at ": ", which introduces the explanation.
    let bytes = summary.as_bytes();
    let sentence = summary.match_indices(". ").map(|(i, _)| i).find(|&i| {
        bytes
            .get(i + 2)
            .is_some_and(|b| b.is_ascii_uppercase() || *b == b'`')
    });
    let clause = summary.find(": ");
    match (sentence, clause) {
        (Some(a), Some(b)) => &summary[..a.min(b)],
        (Some(i), None) | (None, Some(i)) => &summary[..i],
        (None, None) => summary.trim_end_matches('.'),
    }
}

impl Style {
    fn mark(&self, status: CheckStatus) -> String {
        let (uni, ascii, colour) = match status {
            CheckStatus::Ok => ("[✓]", "[+]", console::Color::Green),
            CheckStatus::Warning => ("[!]", "[!]", console::Color::Yellow),
            CheckStatus::Problem => ("[✗]", "[x]", console::Color::Red),
            CheckStatus::Skipped => ("[-]", "[-]", console::Color::White),
            CheckStatus::Error => ("[?]", "[?]", console::Color::Red),
        };
        self.paint(if self.unicode { uni } else { ascii }, colour)
    }

    fn finding_mark(&self, severity: Severity) -> String {
        match severity {
            Severity::Problem => {
                self.paint(if self.unicode { "✗" } else { "x" }, console::Color::Red)
            }
            Severity::Warning => self.paint("!", console::Color::Yellow),
        }
    }

    fn paint(&self, text: &str, colour: console::Color) -> String {
        if self.colour {
            console::style(text)
                .fg(colour)
                .bold()
                .force_styling(true)
                .to_string()
        } else {
            text.to_string()
        }
    }

    fn ellipsis(&self) -> &'static str {
        if self.unicode {
            "…"
        } else {
            "..."
        }
    }

    /// One line cut to the width, marked when cut.
    fn fit(&self, line: &str) -> String {
        console::truncate_str(line, self.width, self.ellipsis()).into_owned()
    }

    /// Text wrapped to the width, every line indented.
    fn wrap(&self, text: &str, indent: &str) -> Vec<String> {
        self.wrap_hanging(text, indent, indent)
    }

    fn wrap_hanging(&self, text: &str, first: &str, rest: &str) -> Vec<String> {
        let options = textwrap::Options::new(self.width.max(20))
            .initial_indent(first)
            .subsequent_indent(rest)
            .break_words(false)
            // Names such as harbor-doctor-lab-x stay whole.
            .word_splitter(textwrap::WordSplitter::NoHyphenation)
            .word_separator(textwrap::WordSeparator::Custom(words_outside_backticks));
        textwrap::wrap(text, options)
            .into_iter()
            .map(|l| l.into_owned())
            .collect()
    }
}

/// Words for the wrapper, split at spaces, except inside `backticks`: a
/// command quoted in a summary stays on one line, so it can be copied.
fn words_outside_backticks(line: &str) -> Box<dyn Iterator<Item = textwrap::core::Word<'_>> + '_> {
    let bytes = line.as_bytes();
    let mut words = vec![];
    let (mut start, mut i, mut quoted) = (0, 0, false);
    while i < bytes.len() {
        match bytes[i] {
            b'`' => quoted = !quoted,
            b' ' if !quoted => {
                while i < bytes.len() && bytes[i] == b' ' {
                    i += 1;
                }
                words.push(textwrap::core::Word::from(&line[start..i]));
                start = i;
                continue;
            }
            _ => {}
        }
        i += 1;
    }
    if start < bytes.len() {
        words.push(textwrap::core::Word::from(&line[start..]));
    }
    Box::new(words.into_iter())
}

fn leading_spaces(line: &str) -> usize {
    line.len() - line.trim_start().len()
}

/// A scalar as people read it: strings without quotes.
fn plain(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Null => "-".into(),
        other => other.to_string(),
    }
}

/// One piece of evidence as `key: value` lines: a nested object one
/// `key: value` per line below its name, a list of objects one line per
/// item. Deeper nesting stays JSON.
pub fn evidence_lines(key: &str, value: &Value) -> Vec<String> {
    let flat = |o: &serde_json::Map<String, Value>| {
        o.iter()
            .map(|(k, v)| format!("{k}: {}", plain(v)))
            .collect::<Vec<_>>()
    };
    match value {
        Value::Object(o) if !o.is_empty() => {
            let mut lines = vec![format!("{key}:")];
            lines.extend(flat(o).into_iter().map(|l| format!("  {l}")));
            lines
        }
        Value::Array(items) if items.iter().any(Value::is_object) => {
            let mut lines = vec![format!("{key}:")];
            for item in items {
                lines.push(match item {
                    Value::Object(o) => format!("  - {}", flat(o).join(", ")),
                    other => format!("  - {}", plain(other)),
                });
            }
            lines
        }
        Value::Array(items) => vec![format!(
            "{key}: {}",
            items.iter().map(plain).collect::<Vec<_>>().join(", ")
        )],
        other => vec![format!("{key}: {}", plain(other))],
    }
}
