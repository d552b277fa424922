//! The documentation, held to the program it documents.
//!
//! - docs/cli.md, the finding kinds in docs/json.md and each runbook's
//!   "Finding kinds" are generated here, from the CLI definition, the exit
//!   codes and `KNOWN_ISSUES`; a test fails when the committed text differs,
//!   and `UPDATE_DOCS=1 cargo test --test e2e docs::` rewrites it.
//! - docs/diagnose.schema.json and docs/repair.schema.json accept the
//!   documents the doctor really prints (against the lab, and with nothing
//!   configured) and reject documents with a field too many or a wrong value.
//! - README.md, docs/*.md and the runbooks link only to files of this
//!   repository, and name no option the CLI does not have.

use std::collections::BTreeSet;
use std::fmt::Write as _;
use std::path::Path;

use clap::{Arg, ArgAction};
use harbor_doctor::issues::{KnownIssue, KNOWN_ISSUES};
use harbor_doctor::outcome::ExitCode;
use harbor_doctor_sim::lab::{Lab, Postgres};
use serde_json::{json, Value};

use crate::support::*;

const REGENERATE: &str = "UPDATE_DOCS=1 cargo test --test e2e docs::";

fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn read(path: &str) -> String {
    std::fs::read_to_string(repo().join(path)).unwrap_or_else(|e| panic!("reading {path}: {e}"))
}

/// Holds the committed `path` to `want`, what the definitions generate;
/// with UPDATE_DOCS=1 writes `want` there instead.
#[track_caller]
fn generated(path: &str, want: &str) {
    let file = repo().join(path);
    if std::env::var_os("UPDATE_DOCS").is_some_and(|v| v == "1") {
        std::fs::write(&file, want).unwrap_or_else(|e| panic!("writing {path}: {e}"));
        return;
    }
    let have = std::fs::read_to_string(&file).unwrap_or_default();
    if have != want {
        let (h, w): (Vec<&str>, Vec<&str>) = (have.lines().collect(), want.lines().collect());
        let at = (0..h.len().max(w.len()))
            .find(|&i| h.get(i) != w.get(i))
            .unwrap_or(0);
        panic!(
            "{path} is not what the program's definitions generate; first difference at line {}:\n  \
             committed: {:?}\n  generated: {:?}\nRegenerate it with `{REGENERATE}` and commit the result.",
            at + 1,
            h.get(at),
            w.get(at)
        );
    }
}

// ---------------------------------------------------------------------------
// The generator: docs/cli.md and the finding-kind lists.

/// Text for a Markdown table cell or paragraph: `|` escaped, one line,
/// and `<`/`>` outside code spans kept from being read as HTML.
fn md(text: &str) -> String {
    let mut out = String::new();
    for (i, part) in text.split('`').enumerate() {
        if i > 0 {
            out.push('`');
        }
        if i % 2 == 1 {
            out.push_str(part);
        } else {
            out.push_str(&part.replace('<', "&lt;").replace('>', "&gt;"));
        }
    }
    out.replace('|', "\\|").replace('\n', " ")
}

fn value_name(arg: &Arg) -> String {
    arg.get_value_names()
        .and_then(|names| names.first())
        .map(|n| n.to_string())
        .unwrap_or_else(|| arg.get_id().as_str().to_uppercase())
}

fn takes_value(arg: &Arg) -> bool {
    arg.get_num_args().is_some_and(|n| n.takes_values())
}

/// How the argument is written: `-n, --harbor-namespace <NS>`, `<CHECK>...`.
fn spelling(arg: &Arg) -> String {
    let many = arg.get_num_args().is_some_and(|n| n.max_values() > 1);
    if arg.is_positional() {
        return format!("<{}>{}", value_name(arg), if many { "..." } else { "" });
    }
    let mut s = String::new();
    if let Some(c) = arg.get_short() {
        write!(s, "-{c}, ").unwrap();
    }
    write!(s, "--{}", arg.get_long().unwrap_or_default()).unwrap();
    if takes_value(arg) {
        write!(s, " <{}>", value_name(arg)).unwrap();
    }
    s
}

/// The description column: the help text, its possible values, whether it
/// may be repeated.
fn description(arg: &Arg) -> String {
    let s = arg
        .get_long_help()
        .or(arg.get_help())
        .map(|h| h.to_string())
        .unwrap_or_default();
    let values: Vec<String> = if takes_value(arg) {
        arg.get_possible_values()
            .iter()
            .filter(|v| !v.is_hide_set())
            .map(|v| match v.get_help() {
                Some(help) => format!("`{}` ({help})", v.get_name()),
                None => format!("`{}`", v.get_name()),
            })
            .collect()
    } else {
        vec![]
    };
    let mut parts: Vec<String> = vec![s];
    if !values.is_empty() {
        parts.push(format!("One of: {}", values.join(", ")));
    }
    // A positional's `...` says so already.
    if !arg.is_positional() && matches!(arg.get_action(), ArgAction::Append | ArgAction::Count) {
        parts.push("May be repeated".into());
    }
    parts.retain(|p| !p.is_empty());
    parts.join(". ")
}

fn options_table(args: &[&Arg]) -> String {
    let mut out = String::from(
        "| argument or option | environment variable | default | description |\n|---|---|---|---|\n",
    );
    for arg in args {
        let env = arg
            .get_env()
            .map(|e| format!("`{}`", e.to_string_lossy()))
            .unwrap_or_default();
        let default: Vec<String> = arg
            .get_default_values()
            .iter()
            .map(|d| format!("`{}`", d.to_string_lossy()))
            .collect();
        let default = if takes_value(arg) {
            default.join(", ")
        } else {
            String::new()
        };
        writeln!(
            out,
            "| {} | {env} | {default} | {} |",
            md(&format!("`{}`", spelling(arg))),
            md(&description(arg))
        )
        .unwrap();
    }
    out
}

/// The commands a reader can run: not hidden, not clap's `help`.
fn visible(cmd: &clap::Command) -> impl Iterator<Item = &clap::Command> {
    cmd.get_subcommands()
        .filter(|s| !s.is_hide_set() && s.get_name() != "help")
}

fn anchor(path: &str) -> String {
    path.replace(' ', "-")
}

fn command_section(out: &mut String, cmd: &clap::Command, path: &str, depth: usize) {
    let hashes = "#".repeat(depth.min(3) + 1);
    writeln!(out, "{hashes} `{path}`\n").unwrap();
    if let Some(about) = cmd.get_long_about().or(cmd.get_about()) {
        writeln!(out, "{}.\n", md(about.to_string().trim_end_matches('.'))).unwrap();
    }
    let parent = path.rsplit_once(' ').map_or("", |(p, _)| p);
    for alias in cmd.get_visible_aliases() {
        writeln!(out, "Also: `{parent} {alias}`.\n").unwrap();
    }
    let usage = cmd.clone().render_usage().to_string();
    writeln!(out, "```text\n{}\n```\n", usage.trim_end()).unwrap();
    let own: Vec<&Arg> = cmd
        .get_arguments()
        .filter(|a| !a.is_hide_set() && !a.is_global_set())
        .filter(|a| !matches!(a.get_id().as_str(), "help" | "version"))
        .collect();
    if !own.is_empty() {
        writeln!(out, "{}", options_table(&own)).unwrap();
    }
    let subs: Vec<&clap::Command> = visible(cmd).collect();
    if !subs.is_empty() {
        out.push_str("| command | what it does |\n|---|---|\n");
        for sub in &subs {
            let sub_path = format!("{path} {}", sub.get_name());
            writeln!(
                out,
                "| [`{}`](#{}) | {} |",
                sub.get_name(),
                anchor(&sub_path),
                md(&sub.get_about().map(|a| a.to_string()).unwrap_or_default())
            )
            .unwrap();
        }
        out.push('\n');
    }
    for sub in subs {
        command_section(out, sub, &format!("{path} {}", sub.get_name()), depth + 1);
    }
}

/// Variables the doctor reads that are no option's: what each is for.
const OTHER_VARIABLES: &[(&str, &str)] = &[
    (
        "PAGER",
        "`runbook <id>` on a terminal pages through it (default: `less` when installed)",
    ),
    (
        "LESS",
        "the options `less` gets when it is the pager (default `FRX`: quit when it fits, keep \
         colour, leave the text on screen)",
    ),
    (
        "KUBECONFIG",
        "the kubeconfig file(s) when `--kubeconfig` is not given, as kubectl reads them (several, \
         separated by `:`, are merged); else `~/.kube/config`",
    ),
    (
        "KUBERNETES_SERVICE_HOST",
        "set inside a pod: with no kubeconfig and no `--context`, the pod's service account and \
         cluster are used",
    ),
    (
        "KUBERNETES_SERVICE_PORT",
        "with `KUBERNETES_SERVICE_HOST`, the in-cluster API server's port",
    ),
    (
        "HARBOR_CLI_SECRET",
        "the CLI secret `diagnose cli-login --user NAME` tests; without it the doctor asks with a \
         hidden prompt, or reads stdin when it is not a terminal. Never an option, so that it never \
         shows in a process list",
    ),
    (
        "DOCKER_CONFIG",
        "the directory of the docker CLI's `config.json`, which `docker-login` writes; else \
         `~/.docker`",
    ),
    (
        "RUST_LOG",
        "the log filter (as `tracing-subscriber` reads it); overrides `-v` and `-q`",
    ),
    ("NO_COLOR", "when set and not empty, nothing is coloured"),
    (
        "XDG_STATE_HOME",
        "the state directory is `$XDG_STATE_HOME/harbor-doctor`, else \
         `~/.local/state/harbor-doctor`: the backups (when `--backup-dir` is not given) and the \
         backup seal key (docs/backups.md)",
    ),
];

/// docs/cli.md: every command, its options and the variables they read,
/// and the exit codes.
fn cli_reference() -> String {
    let mut cmd = harbor_doctor::packaging::command(false);
    cmd.build();
    let name = cmd.get_name().to_string();
    let mut out = String::new();
    writeln!(
        out,
        "# Command-line reference\n\n\
         <!-- Generated from the CLI definition (src/cli.rs) and the exit codes (src/outcome.rs) by \
         `{REGENERATE}`; edit those, not this file. -->\n\n\
         {}.\n\n\
         ```text\n{}\n```\n\n\
         `{name} --help` and `{name} COMMAND --help` show the same text. Installed on PATH as \
         `{}`, the same program is the kubectl plugin `{}`: its usage and the repair commands \
         it prints then start with `{}`.\n",
        md(cmd
            .get_about()
            .map(|a| a.to_string())
            .unwrap_or_default()
            .trim_end_matches('.')),
        cmd.clone().render_usage().to_string().trim_end(),
        harbor_doctor::packaging::PLUGIN_FILE,
        harbor_doctor::packaging::PLUGIN_COMMAND,
        harbor_doctor::packaging::PLUGIN_COMMAND,
    )
    .unwrap();
    out.push_str("## Commands\n\n| command | what it does |\n|---|---|\n");
    for sub in visible(&cmd) {
        writeln!(
            out,
            "| [`{}`](#{}) | {} |",
            sub.get_name(),
            anchor(&format!("{name} {}", sub.get_name())),
            md(&sub.get_about().map(|a| a.to_string()).unwrap_or_default())
        )
        .unwrap();
    }
    let globals: Vec<&Arg> = cmd.get_arguments().filter(|a| !a.is_hide_set()).collect();
    writeln!(
        out,
        "\n## Global options\n\n\
         Every command takes these, before or after its name. An option given on the command line \
         wins over its environment variable.\n\n{}",
        options_table(&globals)
    )
    .unwrap();
    out.push_str("## Other environment variables\n\n| variable | what it is for |\n|---|---|\n");
    for (var, what) in OTHER_VARIABLES {
        writeln!(out, "| `{var}` | {} |", md(what)).unwrap();
    }
    out.push_str("\n## Exit codes\n\nEvery command ends with one of these.\n\n| code | meaning |\n|---|---|\n");
    for code in ExitCode::ALL {
        writeln!(out, "| {} | {} |", code.code(), md(code.meaning())).unwrap();
    }
    writeln!(
        out,
        "\nFor `diagnose`: findings at or above `--fail-on` give {}, even when another check \
         errored; otherwise a check that errored gives {}. A check skipped because its system is \
         not configured does not change the code, except that {} is given when every check was \
         skipped (nothing was checked) or when a check named on the command line was skipped.\n",
        ExitCode::Findings.code(),
        ExitCode::CannotRun.code(),
        ExitCode::CannotRun.code()
    )
    .unwrap();
    for sub in visible(&cmd) {
        command_section(&mut out, sub, &format!("{name} {}", sub.get_name()), 1);
    }
    out.trim_end().to_string() + "\n"
}

/// The kinds of one check as a list, for its runbook.
fn runbook_kinds(issue: &KnownIssue) -> String {
    let mut out = format!(
        "Each finding of `{}` in `diagnose -o json` has one of these `kind`s:\n\n",
        issue.check
    );
    for kind in issue.kinds {
        writeln!(out, "- `{}`: {}", kind.id, kind.about).unwrap();
    }
    out
}

/// docs/json.md's "Finding kinds": every kind of every check.
fn json_kinds() -> String {
    let mut out = format!(
        "<!-- Generated from the known issues (src/issues/) by `{REGENERATE}`. -->\n\n\
         A finding's `kind` says what was found, in words a script can match: it is stable across \
         versions and unique within its check. These are all of them, by check.\n\n"
    );
    for issue in KNOWN_ISSUES {
        writeln!(
            out,
            "### `{}`\n\nRunbook: `harbor-doctor runbook {}` (runbooks/{}.md).\n\n| kind | meaning |\n|---|---|",
            issue.check, issue.runbook.id, issue.runbook.id
        )
        .unwrap();
        for kind in issue.kinds {
            writeln!(out, "| `{}` | {} |", kind.id, md(kind.about)).unwrap();
        }
        out.push('\n');
    }
    out
}

fn is_heading_at_most(line: &str, level: usize) -> bool {
    let hashes = line.chars().take_while(|c| *c == '#').count();
    (1..=level).contains(&hashes) && line[hashes..].starts_with(' ')
}

/// `doc` with the body of the section headed exactly `heading` (up to the
/// next heading of its level or above, outside code blocks) set to `body`.
/// A missing section is put before the line `insert_before`, when given.
fn with_section(doc: &str, heading: &str, body: &str, insert_before: Option<&str>) -> String {
    let level = heading.chars().take_while(|c| *c == '#').count();
    let lines: Vec<&str> = doc.lines().collect();
    let mut fenced = false;
    let mut start = None;
    let mut end = lines.len();
    for (i, line) in lines.iter().enumerate() {
        if line.starts_with("```") {
            fenced = !fenced;
        }
        if fenced {
            continue;
        }
        match start {
            None if *line == heading => start = Some(i),
            Some(_) if is_heading_at_most(line, level) => {
                end = i;
                break;
            }
            _ => {}
        }
    }
    let section = format!("{heading}\n\n{}\n", body.trim_end());
    let (before, after) = match start {
        Some(s) => (&lines[..s], &lines[end..]),
        None => {
            let at = insert_before
                .and_then(|line| lines.iter().position(|l| *l == line))
                .unwrap_or_else(|| {
                    panic!("no section {heading:?}, and no line {insert_before:?} to put it before")
                });
            (&lines[..at], &lines[at..])
        }
    };
    let mut out = before.join("\n");
    if !out.is_empty() {
        out.push('\n');
    }
    out.push_str(&section);
    if !after.is_empty() {
        out.push('\n');
        out.push_str(&after.join("\n"));
    }
    out + "\n"
}

#[test]
fn the_cli_reference_is_generated_from_the_cli_definition() {
    let reference = cli_reference();
    generated("docs/cli.md", &reference);
    // The generator reaches every level: global options, commands, the
    // repairs under `fix` and their own options.
    for text in [
        "`HARBOR_DATABASE_URL`",
        "`--fail-on <FAIL_ON>`",
        "## `harbor-doctor fix`",
        "### `harbor-doctor fix oidc-conflict`",
        "Also: `harbor-doctor fix oidc-users`",
        "`--new-sub <SUB>`",
        "| 5 | a repair started but did not complete",
    ] {
        assert!(reference.contains(text), "the reference lacks {text}");
    }
}

/// The variables the tests clear because the doctor reads them are the
/// ones the reference documents.
#[test]
fn every_variable_the_doctor_reads_is_documented() {
    let documented: BTreeSet<&str> = OTHER_VARIABLES.iter().map(|(v, _)| *v).collect();
    let read: BTreeSet<&str> = OTHER_ENV.iter().copied().collect();
    assert_eq!(
        documented, read,
        "OTHER_VARIABLES (docs/cli.md) and OTHER_ENV (tests/e2e/support/doctor.rs) differ"
    );
}

#[test]
fn finding_kinds_are_documented_in_the_json_reference_and_each_runbook() {
    let json_md = read("docs/json.md");
    generated(
        "docs/json.md",
        &with_section(&json_md, "## Finding kinds", &json_kinds(), None),
    );
    let updating = std::env::var_os("UPDATE_DOCS").is_some_and(|v| v == "1");
    for issue in KNOWN_ISSUES {
        let path = format!("runbooks/{}.md", issue.runbook.id);
        let want = with_section(
            &read(&path),
            "### Finding kinds",
            &runbook_kinds(issue),
            Some("## What the repair changes"),
        );
        generated(&path, &want);
        if updating {
            // The binary embeds the runbooks: it sees the new text once rebuilt.
            continue;
        }
        assert_eq!(
            issue.runbook.text, want,
            "{path} is not the runbook embedded"
        );
        // Spelled out, so that a runbook whose section was replaced by
        // hand still fails.
        for kind in issue.kinds {
            assert!(
                issue.runbook.text.contains(&format!("- `{}`: ", kind.id)),
                "runbook {} does not document kind {} of check {}",
                issue.runbook.id,
                kind.id,
                issue.check
            );
        }
    }
}

#[test]
fn kinds_are_distinct_within_each_check_and_spelled_as_the_schema_says() {
    let schema = schema("docs/diagnose.schema.json");
    let pattern = schema["$defs"]["finding"]["properties"]["kind"]["pattern"]
        .as_str()
        .unwrap()
        .to_string();
    let kind_schema = json!({"type": "string", "pattern": pattern});
    for issue in KNOWN_ISSUES {
        let mut seen = BTreeSet::new();
        for kind in issue.kinds {
            assert!(
                seen.insert(kind.id),
                "{}: kind {} twice",
                issue.check,
                kind.id
            );
            assert!(
                jsonschema::is_valid(&kind_schema, &json!(kind.id)),
                "{}: kind {:?} does not match {pattern}",
                issue.check,
                kind.id
            );
            assert!(!kind.about.is_empty() && !kind.about.contains('\n'));
        }
    }
}

// ---------------------------------------------------------------------------
// The JSON Schemas, against real output.

fn schema(path: &str) -> Value {
    let schema: Value = serde_json::from_str(&read(path)).unwrap();
    jsonschema::meta::validate(&schema)
        .unwrap_or_else(|e| panic!("{path} is not a valid JSON Schema: {e}"));
    assert_eq!(
        schema["$schema"], "https://json-schema.org/draft/2020-12/schema",
        "{path}"
    );
    schema
}

fn validator(path: &str) -> jsonschema::Validator {
    jsonschema::draft202012::new(&schema(path)).unwrap()
}

#[track_caller]
fn assert_valid(v: &jsonschema::Validator, doc: &Value, what: &str) {
    let errors: Vec<String> = v
        .iter_errors(doc)
        .map(|e| format!("{} at {}", e, e.instance_path()))
        .collect();
    assert!(
        errors.is_empty(),
        "{what} breaks its schema:\n  {}\n{doc:#}",
        errors.join("\n  ")
    );
}

#[track_caller]
fn assert_rejected(v: &jsonschema::Validator, doc: &Value, what: &str) {
    assert!(
        !v.is_valid(doc),
        "the schema accepts {what}, which the doctor never prints"
    );
}

/// Documents the doctor never prints, made from a real one: each must be
/// rejected, or the schema would accept anything.
fn assert_diagnose_schema_is_strict(v: &jsonschema::Validator, real: &Value) {
    let with_findings = real["checks"]
        .as_array()
        .unwrap()
        .iter()
        .position(|c| !c["findings"].as_array().unwrap().is_empty())
        .expect("a real document with a finding");
    // Each gets the document and the index of a check with findings.
    type Mutation = (&'static str, fn(&mut Value, usize));
    let mutations: &[Mutation] = &[
        ("an extra top-level field", |d, _| d["extra"] = json!(1)),
        ("an extra field in a check", |d, _| {
            d["checks"][0]["extra"] = json!(1)
        }),
        ("an extra field in a finding", |d, f| {
            d["checks"][f]["findings"][0]["extra"] = json!(1)
        }),
        ("an unknown status", |d, _| {
            d["checks"][0]["status"] = json!("fine")
        }),
        ("an unknown severity", |d, f| {
            d["checks"][f]["findings"][0]["severity"] = json!("info")
        }),
        ("a kind that is not kebab-case", |d, f| {
            d["checks"][f]["findings"][0]["kind"] = json!("Sub Changed")
        }),
        ("a finding without kind", |d, f| {
            d["checks"][f]["findings"][0]
                .as_object_mut()
                .unwrap()
                .remove("kind");
        }),
        ("an unknown check id", |d, _| {
            d["checks"][0]["id"] = json!("disk-space")
        }),
        ("a missing version", |d, _| {
            d.as_object_mut().unwrap().remove("version");
        }),
        ("a summary with an extra status", |d, _| {
            d["summary"]["fine"] = json!(0)
        }),
        ("a warning or problem check without findings", |d, f| {
            d["checks"][f]["findings"] = json!([])
        }),
        ("a repair that is not a command line", |d, f| {
            d["checks"][f]["findings"][0]["repair"] = json!("rm -rf /")
        }),
    ];
    assert_valid(v, real, "the real document");
    for (what, mutate) in mutations {
        let mut doc = real.clone();
        mutate(&mut doc, with_findings);
        assert_rejected(v, &doc, what);
    }
}

fn lab_doctor(lab: &Lab) -> assert_cmd::Command {
    let mut cmd = bare_doctor();
    cmd.envs(lab.env().iter().map(|(k, v)| (*k, v.as_str())))
        .env("HARBOR_DOCTOR_TIMEOUT", "60");
    cmd
}

async fn in_lab(lab: &Lab, args: &[&str]) -> std::process::Output {
    let mut cmd = lab_doctor(lab);
    cmd.args(args);
    run(cmd).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_schemas_accept_what_the_doctor_prints_and_nothing_else() {
    let diagnose = validator("docs/diagnose.schema.json");
    let repair = validator("docs/repair.schema.json");
    let lab = Lab::start(Postgres::Shared, |_| {})
        .await
        .expect("starting the lab");

    // Every check with findings.
    let o = in_lab(&lab, &["diagnose", "-o", "json"]).await;
    assert_exit(&o, 1);
    let broken = json(&o);
    assert_diagnose_schema_is_strict(&diagnose, &broken);
    let kinds: BTreeSet<&str> = broken["checks"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|c| c["findings"].as_array().unwrap())
        .map(|f| f["kind"].as_str().unwrap())
        .collect();
    assert!(
        kinds.len() >= 5,
        "the lab's findings cover several kinds: {kinds:?}"
    );

    // A repair planned, applied, run again with nothing left to do, and
    // its restore planned.
    let o = in_lab(
        &lab,
        &["fix", "registry-strategy", "--dry-run", "-o", "json"],
    )
    .await;
    assert_exit(&o, 0);
    let dry = json(&o);
    assert_valid(&repair, &dry, "fix registry-strategy --dry-run");
    assert_eq!(
        (dry["applied"].clone(), dry["backup"].clone()),
        (json!(false), Value::Null)
    );
    let o = in_lab(&lab, &["fix", "registry-strategy", "--yes", "-o", "json"]).await;
    assert_exit(&o, 0);
    let applied = json(&o);
    assert_valid(&repair, &applied, "fix registry-strategy --yes");
    assert_eq!(applied["verified"], true, "{applied:#}");
    let backup = applied["backup"]
        .as_str()
        .expect("a backup path")
        .to_string();
    let o = in_lab(&lab, &["fix", "registry-strategy", "--yes", "-o", "json"]).await;
    assert_exit(&o, 0);
    let nothing = json(&o);
    assert_valid(
        &repair,
        &nothing,
        "fix registry-strategy with nothing to do",
    );
    assert_eq!(nothing["plan"], json!([]), "{nothing:#}");
    let o = in_lab(&lab, &["restore", &backup, "--dry-run", "-o", "json"]).await;
    assert_exit(&o, 0);
    assert_valid(&repair, &json(&o), "restore --dry-run");
    // provision's plan is a table for people, and the same list in JSON.
    let o = in_lab(&lab, &["provision", "--all", "--dry-run", "-o", "json"]).await;
    assert_exit(&o, 0);
    let provision = json(&o);
    assert_valid(&repair, &provision, "provision --all --dry-run");
    assert!(
        !provision["plan"].as_array().unwrap().is_empty(),
        "{provision:#}"
    );

    for (what, mutate) in [
        ("an extra field", json!({"extra": true})),
        (
            "a plan step with an extra field",
            json!({"plan": [{"action": "patch", "target": "t", "detail": "", "why": "x"}]}),
        ),
        ("applied as a string", json!({"applied": "yes"})),
        ("a backup that is a number", json!({"backup": 7})),
    ] {
        let mut doc = applied.clone();
        for (k, v) in mutate.as_object().unwrap() {
            doc[k] = v.clone();
        }
        assert_rejected(&repair, &doc, what);
    }
    let mut doc = applied.clone();
    doc.as_object_mut().unwrap().remove("verified");
    assert_rejected(&repair, &doc, "a document without verified");
    lab.shutdown().unwrap();

    // Nothing configured: every check skipped, each with its reason.
    let mut cmd = bare_doctor();
    cmd.args(["diagnose", "-o", "json"]);
    let o = run(cmd).await;
    assert_exit(&o, 3);
    let skipped = json(&o);
    assert_valid(&diagnose, &skipped, "diagnose with nothing configured");
    assert_eq!(
        skipped["summary"]["skipped"],
        KNOWN_ISSUES.len(),
        "{skipped:#}"
    );
    let mut doc = skipped.clone();
    doc["checks"][0]["reason"] = Value::Null;
    assert_rejected(&diagnose, &doc, "a skipped check without its reason");
}

#[test]
fn the_schemas_name_the_known_checks_and_runbooks() {
    let schema = schema("docs/diagnose.schema.json");
    let listed = |v: &Value| -> Vec<String> {
        v["enum"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| s.as_str().unwrap().to_string())
            .collect()
    };
    let checks: Vec<String> = KNOWN_ISSUES.iter().map(|i| i.check.to_string()).collect();
    let runbooks: Vec<String> = KNOWN_ISSUES
        .iter()
        .map(|i| i.runbook.id.to_string())
        .collect();
    assert_eq!(
        listed(&schema["$defs"]["checkId"]),
        checks,
        "checkId in docs/diagnose.schema.json"
    );
    assert_eq!(
        listed(&schema["$defs"]["finding"]["properties"]["runbook"]),
        runbooks,
        "runbook in docs/diagnose.schema.json"
    );
}

/// The example documents in README.md and docs/json.md are documents the
/// schemas accept: an example cannot drift from the real shape.
#[test]
fn the_json_examples_in_the_docs_match_the_schemas() {
    let diagnose = validator("docs/diagnose.schema.json");
    let repair = validator("docs/repair.schema.json");
    let mut seen = 0;
    for path in ["README.md", "docs/json.md"] {
        for block in code_blocks(&read(path))
            .into_iter()
            .filter(|b| b.lang == "json")
        {
            let doc: Value = serde_json::from_str(&block.text).unwrap_or_else(|e| {
                panic!("a json block in {path} is not JSON ({e}):\n{}", block.text)
            });
            if doc.get("checks").is_some() {
                assert_valid(&diagnose, &doc, &format!("the diagnose example in {path}"));
            } else if doc.get("plan").is_some() {
                assert_valid(&repair, &doc, &format!("the repair example in {path}"));
            } else {
                panic!(
                    "a json block in {path} is neither document:\n{}",
                    block.text
                );
            }
            seen += 1;
        }
    }
    assert!(
        seen >= 3,
        "the README and docs/json.md show example documents"
    );
}

// ---------------------------------------------------------------------------
// Links, paths and options in the prose.

/// The Markdown the repository ships: README.md, docs/*.md, runbooks/*.md.
fn documents() -> Vec<(String, String)> {
    let mut paths = vec!["README.md".to_string()];
    for dir in ["docs", "runbooks"] {
        let mut md: Vec<String> = std::fs::read_dir(repo().join(dir))
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|n| n.ends_with(".md"))
            .map(|n| format!("{dir}/{n}"))
            .collect();
        md.sort();
        paths.extend(md);
    }
    paths
        .into_iter()
        .map(|p| (read(&p), p))
        .map(|(t, p)| (p, t))
        .collect()
}

struct Block {
    lang: String,
    text: String,
}

fn code_blocks(doc: &str) -> Vec<Block> {
    let mut blocks = vec![];
    let mut open: Option<Block> = None;
    for line in doc.lines() {
        match (&mut open, line.strip_prefix("```")) {
            (None, Some(lang)) => {
                open = Some(Block {
                    lang: lang.trim().to_string(),
                    text: String::new(),
                })
            }
            (Some(_), Some(_)) => blocks.extend(open.take()),
            (Some(b), None) => {
                b.text.push_str(line);
                b.text.push('\n');
            }
            (None, None) => {}
        }
    }
    blocks
}

/// The prose of a document: everything outside code blocks.
fn prose(doc: &str) -> String {
    let mut fenced = false;
    let mut out = String::new();
    for line in doc.lines() {
        if line.starts_with("```") {
            fenced = !fenced;
            continue;
        }
        if !fenced {
            out.push_str(line);
            out.push('\n');
        }
    }
    out
}

/// The code spans of the prose (a span may run across a line break).
fn code_spans(prose: &str) -> Vec<String> {
    prose
        .split('`')
        .skip(1)
        .step_by(2)
        .map(|s| s.replace('\n', " "))
        .collect()
}

/// `[text](target)` links of the prose.
fn link_targets(prose: &str) -> Vec<String> {
    let mut targets = vec![];
    let mut rest = prose;
    while let Some(at) = rest.find("](") {
        let after = &rest[at + 2..];
        let end = after.find(')').unwrap_or(after.len());
        targets.push(after[..end].trim().to_string());
        rest = &after[end..];
    }
    targets
}

/// Names and paths a published document must not contain: the files the
/// project was built from live outside the repository.
const OUTSIDE: &[&str] = &[
    "../shared",
    "/work/",
    "shared/harbor",
    "DESIGN.md",
    "FACTS.md",
];

/// The top-level entries of the repository a path in the prose may start with.
const REPO_DIRS: &[&str] = &[
    "src/",
    "docs/",
    "deploy/",
    "tests/",
    "runbooks/",
    "ci/",
    ".ci/",
    "crates/",
    "benches/",
    "examples/",
];

/// A word that names a file or directory of the repository: under one of
/// [`REPO_DIRS`], with a file extension or a trailing `/` (which leaves
/// Harbor's own `src/controller/member` alone).
fn repo_path(word: &str) -> Option<&str> {
    let word = word
        .trim_start_matches(['(', '"', '\''])
        .trim_end_matches(['.', ',', ';', ':', ')', '"', '\'']);
    if !REPO_DIRS.iter().any(|d| word.starts_with(d)) || word.contains(['<', '*', '$', '{']) {
        return None;
    }
    let file = Path::new(word);
    let named = word.ends_with('/')
        || file.extension().is_some_and(|e| {
            ["md", "rs", "yaml", "yml", "json", "sh", "toml", "sql"]
                .contains(&e.to_str().unwrap_or(""))
        });
    named.then_some(word)
}

#[test]
fn the_docs_link_only_inside_the_repository() {
    let root = repo().canonicalize().unwrap();
    let mut wrong = vec![];
    for (path, doc) in documents() {
        for outside in OUTSIDE {
            if doc.contains(outside) {
                wrong.push(format!(
                    "{path} names {outside}, which users of this repository do not have"
                ));
            }
        }
        let dir = repo().join(&path).parent().unwrap().to_path_buf();
        for target in link_targets(&prose(&doc)) {
            let file = target.split('#').next().unwrap_or_default();
            if file.is_empty() {
                continue;
            }
            if file.contains("://") || file.starts_with("mailto:") || file.starts_with('/') {
                wrong.push(format!("{path} links outside the repository: {target}"));
                continue;
            }
            match dir.join(file).canonicalize() {
                Ok(p) if p.starts_with(&root) => {}
                Ok(_) => wrong.push(format!("{path} links outside the repository: {target}")),
                Err(_) => wrong.push(format!("{path} links to {target}, which does not exist")),
            }
        }
        let words = doc
            .split(|c: char| c.is_whitespace() || c == '`')
            .filter_map(repo_path)
            .collect::<BTreeSet<_>>();
        for word in words {
            if !repo().join(word).exists() {
                wrong.push(format!(
                    "{path} names {word}, which is not in the repository"
                ));
            }
        }
    }
    assert!(wrong.is_empty(), "\n{}", wrong.join("\n"));
}

/// Every long option anywhere in the command tree, hidden `fix` names and
/// all, with clap's own `--help` and `--version`.
fn long_options() -> BTreeSet<String> {
    fn walk(cmd: &clap::Command, into: &mut BTreeSet<String>) {
        for arg in cmd.get_arguments() {
            into.extend(arg.get_long().map(str::to_string));
            into.extend(
                arg.get_long_and_visible_aliases()
                    .into_iter()
                    .flatten()
                    .map(str::to_string),
            );
        }
        for sub in cmd.get_subcommands() {
            walk(sub, into);
        }
    }
    let mut cmd = harbor_doctor::packaging::command(false);
    cmd.build();
    let mut all = BTreeSet::new();
    walk(&cmd, &mut all);
    all
}

/// The `--options` a piece of text gives harbor-doctor: in a command line
/// after `harbor-doctor` (up to a pipe, `;`, `&&` or a comment), or in a
/// code span that starts with an option.
fn options_in(text: &str, span: bool) -> Vec<String> {
    let words: Vec<&str> = text.split_whitespace().collect();
    let start = match words.iter().position(|w| *w == "harbor-doctor") {
        Some(i) => i + 1,
        None if span && words.first().is_some_and(|w| w.starts_with("--")) => 0,
        None => return vec![],
    };
    words[start..]
        .iter()
        .take_while(|w| !["|", "||", "&&", ";", "#", ">", "2>"].contains(w) && !w.ends_with(';'))
        .filter(|w| w.starts_with("--") && w.len() > 2)
        .map(|w| {
            w.trim_start_matches("--")
                .split(['=', '\'', '"', ')', ',', '.', ':'])
                .next()
                .unwrap_or_default()
                .to_string()
        })
        .collect()
}

#[test]
fn the_docs_name_only_options_the_cli_has() {
    let options = long_options();
    assert!(
        options.contains("new-sub")
            && options.contains("robot-duration")
            && options.contains("interval")
    );
    let known = |name: &str| match name.strip_suffix('*') {
        // `--keycloak-*`: the family must exist.
        Some(prefix) => options.iter().any(|o| o.starts_with(prefix)),
        None => options.contains(name),
    };
    let mut wrong = vec![];
    for (path, doc) in documents() {
        let mut texts: Vec<(String, bool)> = code_spans(&prose(&doc))
            .into_iter()
            .map(|s| (s, true))
            .collect();
        for block in code_blocks(&doc) {
            texts.extend(block.text.lines().map(|l| (l.to_string(), false)));
        }
        for (text, span) in texts {
            for name in options_in(&text, span) {
                if !name.is_empty() && !known(&name) {
                    wrong.push(format!(
                        "{path}: --{name} (in {:?}) is no option of harbor-doctor",
                        text.trim()
                    ));
                }
            }
        }
    }
    assert!(wrong.is_empty(), "\n{}", wrong.join("\n"));
}

#[test]
fn the_option_check_sees_options_where_the_docs_write_them() {
    assert_eq!(
        options_in(
            "harbor-doctor fix oidc-conflict --user alice --new-sub=x",
            false
        ),
        ["user", "new-sub"]
    );
    assert_eq!(options_in("--team a --team b", true), ["team", "team"]);
    assert_eq!(
        options_in("harbor-doctor diagnose -o json | jq --raw-output", false),
        Vec::<String>::new()
    );
    assert_eq!(
        options_in("cargo build --profile dist", true),
        Vec::<String>::new()
    );
    assert_eq!(
        options_in("cargo install --locked --path .", false),
        Vec::<String>::new()
    );
    assert_eq!(repo_path("(deploy/rbac.yaml)."), Some("deploy/rbac.yaml"));
    assert_eq!(repo_path("src/controller/member"), None);
    assert_eq!(
        link_targets("see [the CLI](docs/cli.md#exit-codes) and [x](../y)"),
        ["docs/cli.md#exit-codes", "../y"]
    );
}
