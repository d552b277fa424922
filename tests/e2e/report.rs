//! `diagnose` with no arguments, as on-call and scripts read it: the JSON
//! document field by field, exit codes with errored and skipped checks, a
//! check that runs out of time while the others report, the spinner (only
//! on a terminal), colour (never with NO_COLOR, never when piped) and -q.

use crate::support::pty;

use std::collections::BTreeSet;
use std::time::Duration;

use crate::support::*;
use harbor_doctor_sim::harbor::{HarborOptions, HarborSim};
use harbor_doctor_sim::lab::{Lab, Postgres};
use serde_json::Value;

const ESC: &str = "\u{1b}[";

fn keys(v: &Value) -> BTreeSet<&str> {
    v.as_object()
        .unwrap_or_else(|| panic!("not an object: {v}"))
        .keys()
        .map(String::as_str)
        .collect()
}

fn set<'a>(names: &[&'a str]) -> BTreeSet<&'a str> {
    names.iter().copied().collect()
}

/// Holds a `diagnose -o json` document to DESIGN.md's shape: exactly these
/// fields, of these types, consistent with each other.
fn assert_design_shape(doc: &Value) {
    assert_eq!(
        keys(doc),
        set(&["checks", "summary", "next_steps", "version"]),
        "{doc:#}"
    );
    assert_eq!(doc["version"], env!("CARGO_PKG_VERSION"), "{doc:#}");
    let checks = doc["checks"].as_array().expect("checks is an array");
    let mut counted = std::collections::BTreeMap::new();
    for c in checks {
        assert_eq!(
            keys(c),
            set(&[
                "id",
                "status",
                "reason",
                "duration_ms",
                "detail",
                "findings"
            ]),
            "{c:#}"
        );
        let id = c["id"].as_str().expect("id is a string");
        assert!(CHECK_IDS.contains(&id), "unknown check id {id}");
        let status = c["status"].as_str().expect("status is a string");
        assert!(
            ["ok", "warning", "problem", "skipped", "error"].contains(&status),
            "{status}"
        );
        *counted.entry(status.to_string()).or_insert(0u64) += 1;
        match status {
            "skipped" | "error" => assert!(
                c["reason"].as_str().is_some_and(|r| !r.is_empty()),
                "a {status} check says why: {c:#}"
            ),
            _ => assert!(c["reason"].is_null(), "{c:#}"),
        }
        assert!(c["duration_ms"].is_u64(), "{c:#}");
        assert!(
            c["detail"].is_null() || c["detail"].as_str().is_some_and(|d| !d.is_empty()),
            "detail is a string or null: {c:#}"
        );
        let issue = harbor_doctor::issues::KnownIssue::find(id).expect("a known issue");
        let findings = c["findings"].as_array().expect("findings is an array");
        let worst = findings
            .iter()
            .map(|f| f["severity"].as_str().unwrap_or_default())
            .max_by_key(|s| *s == "problem");
        match status {
            "ok" | "skipped" | "error" => assert!(findings.is_empty(), "{c:#}"),
            "warning" => assert_eq!(worst, Some("warning"), "{c:#}"),
            _ => assert_eq!(worst, Some("problem"), "{c:#}"),
        }
        for f in findings {
            assert_eq!(
                keys(f),
                set(&[
                    "check", "kind", "severity", "subject", "summary", "evidence", "repair",
                    "runbook"
                ]),
                "{f:#}"
            );
            let kind = f["kind"].as_str().expect("kind is a string");
            assert!(
                issue.kinds.iter().any(|k| k.id == kind),
                "kind {kind} is not among {id}'s documented kinds: {f:#}"
            );
            assert_eq!(f["check"], id, "{f:#}");
            assert!(
                ["warning", "problem"].contains(&f["severity"].as_str().unwrap()),
                "{f:#}"
            );
            for text in ["subject", "summary"] {
                assert!(
                    f[text].as_str().is_some_and(|s| !s.is_empty()),
                    "{text}: {f:#}"
                );
            }
            assert!(f["evidence"].is_object(), "{f:#}");
            assert!(
                f["repair"].is_null()
                    || f["repair"]
                        .as_str()
                        .is_some_and(|r| r.starts_with("harbor-doctor ")),
                "a complete command line or null: {f:#}"
            );
            let runbook = f["runbook"].as_str().expect("runbook is a string");
            assert!(
                harbor_doctor::runbooks::find(runbook).is_some(),
                "runbook {runbook} does not exist"
            );
        }
    }
    // next_steps: each repair command once (provision's --team values
    // joined into one run), database repairs before Kubernetes before
    // provisioning.
    let steps: Vec<&str> = doc["next_steps"]
        .as_array()
        .expect("next_steps is an array")
        .iter()
        .map(|s| s.as_str().expect("a command line"))
        .collect();
    let distinct: BTreeSet<&str> = steps.iter().copied().collect();
    assert_eq!(distinct.len(), steps.len(), "no command twice: {steps:?}");
    for f in checks
        .iter()
        .flat_map(|c| c["findings"].as_array().unwrap())
    {
        if let Some(repair) = f["repair"].as_str() {
            let covered = steps.iter().any(|s| {
                *s == repair
                    || repair.rsplit_once(" --team ").is_some_and(|(head, team)| {
                        s.starts_with(&format!("{head} --team "))
                            && format!("{s} ").contains(&format!(" --team {team} "))
                    })
            });
            assert!(covered, "{repair} is not in next_steps {steps:?}");
        }
    }
    let rank = |s: &str| {
        [
            "fix oidc-conflict",
            "fix cli-login",
            "fix multi-attach",
            "fix registry-strategy",
            "provision",
        ]
        .iter()
        .position(|p| s.contains(p))
        .unwrap_or_else(|| panic!("unexpected next step {s}"))
    };
    let ranks: Vec<usize> = steps.iter().map(|s| rank(s)).collect();
    assert!(
        ranks.windows(2).all(|w| w[0] <= w[1]),
        "next_steps in the order to run them: {steps:?}"
    );
    let summary = &doc["summary"];
    assert_eq!(
        keys(summary),
        set(&["ok", "warning", "problem", "skipped", "error"])
    );
    for (status, n) in summary.as_object().unwrap() {
        assert_eq!(
            n.as_u64(),
            Some(counted.get(status).copied().unwrap_or(0)),
            "summary.{status} counts the checks: {doc:#}"
        );
    }
}

/// The doctor with exactly the lab's environment.
fn doctor_in(lab: &Lab) -> assert_cmd::Command {
    let mut cmd = bare_doctor();
    cmd.envs(lab.env().iter().map(|(k, v)| (*k, v.as_str())))
        .env("HARBOR_DOCTOR_TIMEOUT", "60");
    cmd
}

async fn start_lab() -> Lab {
    Lab::start(Postgres::Shared, |_| {})
        .await
        .expect("starting the lab")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_check_of_a_broken_installation_in_designs_json_document() {
    let lab = start_lab().await;
    let mut cmd = doctor_in(&lab);
    cmd.args(["diagnose", "-o", "json"]);
    let o = run(cmd).await;
    assert_exit(&o, 1);
    let doc = json(&o);
    assert_design_shape(&doc);
    let ids: Vec<&str> = doc["checks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, CHECK_IDS, "every check, once, in DESIGN.md's order");
    assert_eq!(
        doc["summary"],
        serde_json::json!({"ok": 1, "warning": 1, "problem": 4, "skipped": 0, "error": 0})
    );
    // The evidence DESIGN.md shows for a user whose Keycloak id changed.
    let alice = doc["checks"][1]["findings"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["subject"] == "user alice@example.com")
        .expect("alice is found");
    assert_eq!(
        alice["repair"],
        "harbor-doctor fix oidc-conflict --user alice@example.com"
    );
    assert_eq!(alice["runbook"], "oidc-conflict");
    for key in ["stored_sub", "keycloak_sub", "issuer"] {
        assert!(alice["evidence"][key].is_string(), "{alice:#}");
    }
    // The lab plants a look-alike with alice's address, unverified: the
    // repair hands the account to the true, verified one.
    assert_eq!(
        alice["evidence"]["keycloak_user"]["username"], "alice",
        "{alice:#}"
    );
    assert_eq!(alice["evidence"]["keycloak_user"]["email_verified"], true);
    assert!(
        stderr(&o).is_empty(),
        "nothing but the document when piped: {}",
        stderr(&o)
    );
    lab.shutdown().unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nothing_configured_means_every_check_skipped_with_its_reason_and_exit_3() {
    let mut cmd = bare_doctor();
    cmd.args(["diagnose", "-o", "json"]);
    let o = run(cmd).await;
    assert_exit(&o, 3); // a check named, or every check, skipped: nothing answered
    let doc = json(&o);
    assert_design_shape(&doc);
    assert_eq!(doc["summary"]["skipped"], 6, "{doc:#}");
}

/// A Harbor so slow that the connectivity check (four requests) cannot
/// finish within --timeout 2, though each request does.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_check_past_the_timeout_is_an_error_while_the_others_report() {
    // cli-login with --user asks Harbor twice (its configuration, then the
    // user's registry token): 2.4 s, past the 2 s each check has.
    // (connectivity bounds each system itself, so it never runs out.)
    let harbor = HarborSim::start(HarborOptions {
        latency: Duration::from_millis(1200),
        ..HarborOptions::otomi(OLD_ISSUER)
    })
    .await
    .unwrap();
    let reg = Registry::new().await;
    let diagnose = |reg: &Registry| {
        let mut cmd = bare_doctor();
        cmd.env("HARBOR_URL", harbor.url())
            .env("HARBOR_PASSWORD", harbor.admin_password())
            .env("HARBOR_DATABASE_URL", &reg.db.url)
            .env("HARBOR_CLI_SECRET", "a-cli-secret")
            .args([
                "diagnose",
                "cli-login",
                "oidc-users",
                "--user",
                "alice",
                "--timeout",
                "2",
                // oidc-users' coverage warning (no Keycloak) is not what
                // this test is about.
                "--fail-on",
                "problem",
                "-o",
                "json",
            ]);
        cmd
    };
    let started = std::time::Instant::now();
    let o = run(diagnose(&reg)).await;
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "the slow check was cut off"
    );
    // Only an error: exit 3.
    assert_exit(&o, 3);
    let doc = json(&o);
    assert_design_shape(&doc);
    let slow = &doc["checks"][0];
    assert_eq!(slow["id"], "cli-login", "{doc:#}");
    assert_eq!(slow["status"], "error", "{doc:#}");
    assert!(
        slow["reason"]
            .as_str()
            .unwrap()
            .contains("did not finish within 2 s (--timeout)"),
        "{doc:#}"
    );
    assert!(slow["duration_ms"].as_u64().unwrap() >= 2000);
    // Without Keycloak, oidc-users warns that it could not look at changed ids.
    assert_eq!(doc["checks"][1]["status"], "warning", "{doc:#}");

    // A finding elsewhere gives 1, the error notwithstanding.
    reg.oidc_user("alice", "a-sub", OLD_ISSUER).await;
    let o = run(diagnose(&reg)).await;
    assert_exit(&o, 1);
    let doc = json(&o);
    assert_eq!(doc["checks"][0]["status"], "error");
    assert_eq!(doc["checks"][1]["status"], "problem");
    assert_eq!(doc["summary"]["error"], 1);
    assert_eq!(doc["summary"]["problem"], 1);
}

/// Runs the doctor in a pseudo-terminal and returns its exit code and all
/// it showed there (stdout and stderr both).
fn in_terminal(args: &[&str], env: &[(&str, String)]) -> (i32, String) {
    let mut cmd = bare_doctor_process();
    cmd.env("TERM", "xterm-256color").args(args);
    for (k, v) in env {
        cmd.env(k, v);
    }
    pty::in_terminal(cmd, &[])
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_check_shows_a_spinner_on_a_terminal_and_nothing_when_piped() {
    let harbor = HarborSim::start(HarborOptions {
        latency: Duration::from_millis(500),
        ..HarborOptions::default()
    })
    .await
    .unwrap();
    let env = vec![
        ("HARBOR_URL", harbor.url()),
        ("HARBOR_PASSWORD", harbor.admin_password()),
    ];
    let terminal_env = env.clone();
    let (code, shown) = tokio::task::spawn_blocking(move || {
        in_terminal(&["diagnose", "connectivity"], &terminal_env)
    })
    .await
    .unwrap();
    assert_eq!(code, 0, "{shown}");
    assert!(
        shown.contains("still running: connectivity (0 of 1 checks done"),
        "a spinner after a second:\n{shown}"
    );

    let mut cmd = bare_doctor();
    cmd.envs(env.iter().map(|(k, v)| (*k, v.as_str())))
        .args(["diagnose", "connectivity"]);
    let o = run(cmd).await;
    assert_exit(&o, 0);
    assert!(
        stderr(&o).is_empty(),
        "no spinner when piped: {}",
        stderr(&o)
    );
    assert!(!stdout(&o).contains("still running"));

    // -q: no spinner even on a terminal.
    let (code, shown) =
        tokio::task::spawn_blocking(move || in_terminal(&["diagnose", "connectivity", "-q"], &env))
            .await
            .unwrap();
    assert_eq!(code, 0, "{shown}");
    assert!(!shown.contains("still running"), "{shown}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn colour_only_on_a_terminal_and_never_with_no_color() {
    let reg = Registry::new().await;
    reg.oidc_user("alice", "a-sub", OLD_ISSUER).await;
    let env = vec![("HARBOR_DATABASE_URL", reg.db.url.clone())];
    let args = ["diagnose", "oidc-users", "-v"];

    let plain_env = env.clone();
    let (code, shown) = tokio::task::spawn_blocking(move || in_terminal(&args, &plain_env))
        .await
        .unwrap();
    assert_eq!(code, 1, "{shown}");
    assert!(
        shown.contains(ESC),
        "a terminal gets colour (status, log levels):\n{shown}"
    );

    let mut no_color = env.clone();
    no_color.push(("NO_COLOR", "1".into()));
    let (code, shown) = tokio::task::spawn_blocking(move || in_terminal(&args, &no_color))
        .await
        .unwrap();
    assert_eq!(code, 1, "{shown}");
    assert!(shown.contains("problem"), "{shown}");
    assert!(
        !shown.contains(ESC),
        "NO_COLOR: not one escape sequence:\n{shown:?}"
    );

    // Piped, at any verbosity: the log lines and the table carry no colour.
    let mut cmd = bare_doctor();
    cmd.env("HARBOR_DATABASE_URL", &reg.db.url)
        .args(["diagnose", "oidc-users", "-vv"]);
    let o = run(cmd).await;
    assert_exit(&o, 1);
    assert!(
        stderr(&o).contains("DEBUG") || stderr(&o).contains("INFO"),
        "{}",
        stderr(&o)
    );
    assert!(!stderr(&o).contains(ESC), "{:?}", stderr(&o));
    assert!(!stdout(&o).contains(ESC), "{:?}", stdout(&o));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn quiet_shows_only_findings_and_errors() {
    let reg = Registry::new().await;
    // With Keycloak, so that oidc-users looks at everything it exists for.
    let kc = harbor_doctor_sim::keycloak::KeycloakSim::start("kc-admin", "kc-pw")
        .await
        .unwrap();
    kc.add_realm(
        "otomi",
        harbor_doctor_sim::keycloak::RealmLifespans::otomi(),
    );
    let quiet = |reg: &Registry| {
        let mut cmd = bare_doctor();
        cmd.env("HARBOR_DATABASE_URL", &reg.db.url)
            .env("KEYCLOAK_URL", kc.url())
            .env("KEYCLOAK_USERNAME", "kc-admin")
            .env("KEYCLOAK_PASSWORD", "kc-pw")
            .args(["diagnose", "-q"]);
        cmd
    };
    // Healthy (the other checks skipped): nothing at all.
    let o = run(quiet(&reg)).await;
    assert_exit(&o, 0);
    assert_eq!(
        stdout(&o),
        "",
        "-q on a healthy installation prints nothing"
    );
    assert_eq!(stderr(&o), "");

    // A finding: its line and its command, no per-check lines, no summary.
    reg.oidc_user("alice", "a-sub", OLD_ISSUER).await;
    let o = run(quiet(&reg)).await;
    assert_exit(&o, 1);
    let out = stdout(&o);
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 2, "one line and its command:\n{out}");
    assert!(lines[0].contains("oidc-users user alice: "), "{out}");
    assert_eq!(
        lines[1], "  no automatic repair; what to do: harbor-doctor runbook oidc-conflict",
        "{out}"
    );
    assert!(!out.contains("skipped"), "no line per check:\n{out}");
    assert!(!out.contains(" ok, "), "no summary line:\n{out}");
    assert_eq!(stderr(&o), "");

    // An error is still said.
    let mut cmd = bare_doctor();
    cmd.args(["fix", "multi-attach", "-q", "--yes"]);
    let o = run(cmd).await;
    assert_exit(&o, 3);
    assert!(stderr(&o).starts_with("error: "), "{}", stderr(&o));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lines_fit_the_width_when_piped_and_commands_are_never_cut() {
    let reg = Registry::new().await;
    reg.oidc_user("alice", "a-sub", OLD_ISSUER).await;
    reg.oidc_user(
        "bartholomew-with-a-very-long-name@example.com",
        "b-sub",
        OLD_ISSUER,
    )
    .await;
    for verbose in [false, true] {
        let mut cmd = bare_doctor();
        cmd.env("HARBOR_DATABASE_URL", &reg.db.url)
            .env("COLUMNS", "60")
            .env("NO_COLOR", "1")
            .args(["diagnose"]);
        if verbose {
            cmd.arg("-v");
        }
        let o = run(cmd).await;
        assert_exit(&o, 1);
        let out = stdout(&o);
        // NO_COLOR asks for plain text: ASCII marks.
        assert!(out.contains("[x] oidc-users"), "{out}");
        assert!(!out.contains('✗') && !out.contains('…'), "{out}");
        // A repair command, or one quoted in a summary, is whole on its
        // line however wide; everything else fits.
        for line in out.lines() {
            if line.chars().count() > 60 {
                assert!(
                    line.trim_start().starts_with("harbor-doctor ")
                        || line.contains("`harbor-doctor ")
                        || line.contains("no automatic repair"),
                    "wider than 60 columns and not a command:\n{line}\n\n{out}"
                );
            }
        }
        for line in out.lines() {
            assert!(
                line.matches('`').count() % 2 == 0,
                "a quoted command was broken across lines:\n{line}\n\n{out}"
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_check_named_twice_runs_once() {
    let mut cmd = bare_doctor();
    cmd.args(["diagnose", "teams", "connectivity", "teams", "-o", "json"]);
    let o = run(cmd).await;
    let doc: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let ids: Vec<&str> = doc["checks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, ["teams", "connectivity"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_closed_pipe_ends_quietly_with_the_code_it_would_have_had() {
    let lab = start_lab().await;
    let commands: [&[&str]; 5] = [
        &["diagnose"],
        &["diagnose", "-o", "json"],
        &["completions", "bash"],
        &["runbook", "oidc-conflict"],
        &["runbook"],
    ];
    for args in commands {
        let expected = {
            let mut c = doctor_in(&lab);
            c.args(args);
            run(c).await.status.code()
        };
        // The reader is gone before the doctor writes a byte: every write
        // to stdout fails with EPIPE.
        let mut cmd = bare_doctor_process();
        cmd.envs(lab.env().iter().map(|(k, v)| (*k, v.as_str())))
            .env("HARBOR_DOCTOR_TIMEOUT", "60")
            .args(args)
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped());
        let o = tokio::task::spawn_blocking(move || {
            let mut child = cmd.spawn().unwrap();
            drop(child.stdout.take());
            child.wait_with_output().unwrap()
        })
        .await
        .unwrap();
        assert_eq!(o.status.code(), expected, "{args:?}: {}", stderr(&o));
        assert!(!stderr(&o).contains("panicked"), "{args:?}: {}", stderr(&o));
        assert!(
            !stderr(&o).contains("Broken pipe"),
            "{args:?}: {}",
            stderr(&o)
        );
    }
}
