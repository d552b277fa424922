//! `harbor-doctor runbook <id>` as on-call reads it: laid out as text, not
//! Markdown, wrapped to the width with commands left whole, through a
//! pager on a terminal and straight out anywhere else.

use std::io::Read;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Stdio;

use pulldown_cmark::{Event, Parser, Tag, TagEnd};
use textwrap::core::display_width;

use crate::support::*;

const WIDTH: usize = 60;

/// What a runbook's Markdown holds that must come through: its headings,
/// the lines of its code blocks, its inline code spans.
#[derive(Default)]
struct Source {
    headings: Vec<String>,
    code_lines: Vec<String>,
    spans: Vec<String>,
    top_level_items: usize,
}

fn source(markdown: &str) -> Source {
    let mut s = Source::default();
    let (mut heading, mut code, mut lists) = (None::<String>, None::<String>, 0);
    for event in Parser::new_ext(markdown, pulldown_cmark::Options::ENABLE_TABLES) {
        match event {
            Event::Start(Tag::Heading { .. }) => heading = Some(String::new()),
            Event::End(TagEnd::Heading(_)) => s.headings.extend(heading.take()),
            Event::Start(Tag::CodeBlock(_)) => code = Some(String::new()),
            Event::End(TagEnd::CodeBlock) => {
                let c = code.take().unwrap();
                s.code_lines
                    .extend(c.lines().filter(|l| !l.is_empty()).map(String::from));
            }
            Event::Start(Tag::List(_)) => lists += 1,
            Event::End(TagEnd::List(_)) => lists -= 1,
            Event::Start(Tag::Item) if lists == 1 => s.top_level_items += 1,
            Event::Text(t) => {
                if let Some(c) = code.as_mut() {
                    c.push_str(&t);
                } else if let Some(h) = heading.as_mut() {
                    h.push_str(&t);
                }
            }
            Event::Code(t) => {
                if let Some(h) = heading.as_mut() {
                    h.push_str(&format!("`{t}`"));
                }
                s.spans.push(t.to_string());
            }
            _ => {}
        }
    }
    s
}

fn runbook(id: &str, env: &[(&str, &str)]) -> String {
    let mut cmd = bare_doctor();
    cmd.args(["runbook", id]).env("COLUMNS", WIDTH.to_string());
    for (k, v) in env {
        cmd.env(k, v);
    }
    let o = cmd.output().unwrap();
    assert_exit(&o, 0);
    assert!(stderr(&o).is_empty(), "{}", stderr(&o));
    stdout(&o)
}

#[test]
fn piped_each_runbook_is_plain_text_that_fits_the_width() {
    for rb in harbor_doctor::runbooks::all() {
        let src = source(rb.text);
        // A pager must never be used off a terminal, whatever PAGER says.
        let out = runbook(rb.id, &[("PAGER", "/bin/false")]);
        let lines: Vec<&str> = out.lines().collect();
        let id = rb.id;
        assert!(!out.contains('\u{1b}'), "{id}: no escapes when piped");
        assert!(!out.contains("```") && !out.contains("**"), "{id}:\n{out}");
        assert!(
            lines.iter().all(|l| !l.trim_start().starts_with('#')),
            "{id}: no Markdown heading marks:\n{out}"
        );
        // Headings stand out in upper case, code spans in them as written.
        for h in &src.headings {
            let shown = upper_outside_code(h);
            assert!(
                out.contains(&shown) || display_width(&shown) > WIDTH,
                "{id}: heading {h:?} shown as {shown:?}:\n{out}"
            );
        }
        let title = upper_outside_code(&src.headings[0]);
        assert!(
            title.starts_with(lines[0]),
            "{id}: the title first: {title:?}"
        );
        // Each top-level list item starts a line with its marker.
        let items = lines
            .iter()
            .filter(|l| {
                l.starts_with("- ")
                    || l.split_once(". ")
                        .is_some_and(|(n, _)| n.parse::<u32>().is_ok())
            })
            .count();
        assert_eq!(items, src.top_level_items, "{id}:\n{out}");
        // Code blocks: every line exactly as written, only indented.
        let is_code = |line: &str| {
            src.code_lines.iter().any(|c| {
                line.strip_suffix(c.as_str())
                    .is_some_and(|indent| !indent.is_empty() && indent.chars().all(|ch| ch == ' '))
            })
        };
        for c in &src.code_lines {
            assert!(
                lines.iter().any(|l| is_code(l) && l.ends_with(c.as_str())),
                "{id}: code line {c:?} not shown as written:\n{out}"
            );
        }
        // Prose fits; only code may not: a code block line, or an inline
        // code span too wide for the room its line leaves.
        for l in &lines {
            if display_width(l) <= WIDTH || is_code(l) {
                continue;
            }
            let indent = l.len() - l.trim_start_matches([' ', '-', '|']).len();
            let unbreakable = src
                .spans
                .iter()
                .any(|s| l.contains(&format!("`{s}`")) && indent + display_width(s) + 2 > WIDTH);
            assert!(unbreakable, "{id}: line wider than {WIDTH}: {l:?}");
        }
    }
}

fn upper_outside_code(heading: &str) -> String {
    heading
        .split('`')
        .enumerate()
        .map(|(i, part)| {
            if i % 2 == 0 {
                part.to_uppercase()
            } else {
                part.to_string()
            }
        })
        .collect::<Vec<_>>()
        .join("`")
}

#[test]
fn a_closed_pipe_ends_the_runbook_quietly() {
    let mut child = bare_doctor_process()
        .args(["runbook", "provisioning"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut first = [0u8; 16];
    child.stdout.take().unwrap().read_exact(&mut first).unwrap();
    // The pipe closes here, with most of the runbook unread.
    let o = child.wait_with_output().unwrap();
    assert_exit(&o, 0);
    assert!(!stderr(&o).contains("panicked"), "{}", stderr(&o));
}

/// A pager that records that it ran and the LESS it was given, then shows
/// its input.
fn recording_pager(dir: &Path, name: &str) -> std::path::PathBuf {
    let path = dir.join(name);
    let mark = dir.join(format!("{name}.ran"));
    std::fs::write(
        &path,
        format!(
            "#!/bin/sh\nprintf '%s' \"LESS=$LESS\" > '{}'\nexec /bin/cat\n",
            mark.display()
        ),
    )
    .unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
    path
}

fn in_terminal(env: &[(&str, &str)]) -> (i32, String) {
    let mut cmd = bare_doctor_process();
    cmd.env("TERM", "xterm-256color")
        .args(["runbook", "connectivity"]);
    for (k, v) in env {
        cmd.env(k, v);
    }
    crate::support::pty::in_terminal(cmd, &[])
}

#[test]
fn on_a_terminal_the_runbook_goes_through_the_pager() {
    let dir = tempfile::tempdir().unwrap();
    let pager = recording_pager(dir.path(), "my-pager");
    let (code, shown) = in_terminal(&[("PAGER", pager.to_str().unwrap())]);
    assert_eq!(code, 0, "{shown}");
    let mark = std::fs::read_to_string(dir.path().join("my-pager.ran"))
        .unwrap_or_else(|e| panic!("the pager did not run ({e}):\n{shown}"));
    // The user's LESS is unset here: the pager gets less's quit-if-one-
    // screen, raw-colour, no-clear options.
    assert_eq!(mark, "LESS=FRX");
    assert!(shown.contains("\u{1b}["), "styled on a terminal: {shown:?}");
    let text = console::strip_ansi_codes(&shown);
    assert!(text.contains("Symptoms"), "{text}");
    assert!(!text.contains("## Symptoms"), "{text}");

    // PAGER unset: less from PATH, when there is one.
    let bin = tempfile::tempdir().unwrap();
    recording_pager(bin.path(), "less");
    let (code, shown) = in_terminal(&[("PATH", bin.path().to_str().unwrap())]);
    assert_eq!(code, 0, "{shown}");
    assert_eq!(
        std::fs::read_to_string(bin.path().join("less.ran")).unwrap(),
        "LESS=FRX"
    );
    assert!(console::strip_ansi_codes(&shown).contains("Symptoms"));
}

#[test]
fn without_a_pager_the_runbook_is_printed_directly() {
    let empty = tempfile::tempdir().unwrap();
    for env in [
        // A pager that cannot start.
        vec![("PAGER", "/no/such/pager")],
        // No PAGER and no less.
        vec![("PATH", empty.path().to_str().unwrap())],
        // PAGER set empty: no pager, as git reads it.
        vec![("PAGER", "")],
    ] {
        let mut env = env;
        env.push(("NO_COLOR", "1"));
        let (code, shown) = in_terminal(&env);
        assert_eq!(code, 0, "{env:?}: {shown}");
        assert!(shown.contains("SYMPTOMS"), "{env:?}: {shown}");
        // NO_COLOR: plain text, on a terminal too.
        assert!(!shown.contains("\u{1b}["), "{env:?}: {shown:?}");
    }
}
