//! What a person reads at a terminal: the lab's report at 80 columns (a
//! snapshot, so that a layout change is a reviewed change), `-q` and `-v`,
//! the help a bare `harbor-doctor` prints whatever the environment, `-n`,
//! `fix` names that are close to real ones, and `restore` listing backups.

use std::path::Path;

use crate::support::pty;
use crate::support::*;
use harbor_doctor_sim::lab::{Lab, Postgres};

const SNAPSHOT: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/tests/e2e/snapshots/lab-report-80.txt"
);

async fn start_lab() -> Lab {
    Lab::start(Postgres::Shared, |_| {})
        .await
        .expect("starting the lab")
}

/// The doctor with the lab's environment, laid out for 80 columns in a
/// UTF-8 locale, without colour.
fn doctor_in(lab: &Lab, backups: &Path) -> assert_cmd::Command {
    let mut cmd = bare_doctor();
    cmd.envs(lab.env().iter().map(|(k, v)| (*k, v.as_str())))
        .env("HARBOR_DOCTOR_TIMEOUT", "60")
        .env("HARBOR_DOCTOR_BACKUP_DIR", backups)
        .env("COLUMNS", "80")
        .env("LANG", "C.UTF-8")
        .env_remove("LC_ALL")
        .env_remove("LC_CTYPE")
        .env_remove("NO_COLOR");
    cmd
}

/// The report with what changes from run to run (ports, generated names,
/// ids, times) replaced by stable marks.
fn normalised(report: &str) -> String {
    let rules = [
        (r"127\.0\.0\.1:\d+", "127.0.0.1:PORT"),
        (r"harbor-doctor \d+\.\d+\.\d+", "harbor-doctor VERSION"),
        (
            r"(harbor-(?:registry|jobservice))-[a-z0-9]{10}-[a-z0-9]{5}\b",
            "${1}-HASH-POD",
        ),
        (
            r"(harbor-(?:registry|jobservice))-[a-z0-9]{10}\b",
            "${1}-HASH",
        ),
        (
            r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}",
            "UUID",
        ),
        (r"v\d+\.\d+\.\d+-[0-9a-f]+", "vHARBOR"),
    ];
    let mut text = report.to_string();
    for (pattern, mark) in rules {
        text = regex::Regex::new(pattern)
            .unwrap()
            .replace_all(&text, mark)
            .into_owned();
    }
    text
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_labs_report_fits_80_columns_and_matches_its_snapshot() {
    let lab = start_lab().await;
    let backups = tempfile::tempdir().unwrap();
    let o = run({
        let mut c = doctor_in(&lab, backups.path());
        c.arg("diagnose");
        c
    })
    .await;
    assert_exit(&o, 1);
    let out = stdout(&o);
    let lines: Vec<&str> = out.lines().collect();
    // DESIGN.md's budget: 8 + checks + 2 per finding + distinct commands.
    let doc = {
        let mut c = doctor_in(&lab, backups.path());
        c.args(["diagnose", "-o", "json"]);
        json_doc(&run(c).await)
    };
    let checks = doc["checks"].as_array().unwrap().len();
    let findings: usize = doc["checks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["findings"].as_array().unwrap().len())
        .sum();
    let steps = doc["next_steps"].as_array().unwrap();
    let budget = 8 + checks + 2 * findings + steps.len();
    assert!(
        lines.len() <= budget.min(40),
        "{} lines, over {} (and 40):\n{out}",
        lines.len(),
        budget.min(40)
    );
    for line in &lines {
        let is_command = line.trim_start().starts_with("harbor-doctor ");
        assert!(
            is_command || line.chars().count() <= 80,
            "wider than 80 columns:\n{line}"
        );
    }
    // Every next step is a line of its own, whole, in the JSON's order.
    let mut at = 0;
    for step in steps {
        let step = step.as_str().unwrap();
        let found = out[at..].find(&format!("\n  {step}\n")).unwrap_or_else(|| {
            panic!("next step {step} is not a line of its own, in order:\n{out}")
        });
        at += found + 1;
    }
    let shown = normalised(&out);
    if std::env::var_os("UPDATE_SNAPSHOTS").is_some() {
        std::fs::write(SNAPSHOT, &shown).unwrap();
    }
    let expected = std::fs::read_to_string(SNAPSHOT).unwrap_or_default();
    assert_eq!(
        shown, expected,
        "the lab's report changed; if that is intended, review it and run with UPDATE_SNAPSHOTS=1"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_a_terminal_the_report_uses_its_width_and_not_columns() {
    let lab = start_lab().await;
    let backups = tempfile::tempdir().unwrap();
    for cols in [80u16, 160] {
        let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_harbor-doctor"));
        cmd.env_clear()
            .envs(lab.env().iter().map(|(k, v)| (*k, v.as_str())))
            .env("HOME", std::env::temp_dir())
            .env("HARBOR_DOCTOR_TIMEOUT", "60")
            .env("HARBOR_DOCTOR_BACKUP_DIR", backups.path())
            .env("LANG", "C.UTF-8")
            .env("NO_COLOR", "1")
            // A stale COLUMNS (from another window) does not decide.
            .env("COLUMNS", "50")
            .args(["diagnose", "multi-attach"]);
        let (code, shown) =
            tokio::task::spawn_blocking(move || pty::in_terminal_of_width(cmd, cols))
                .await
                .unwrap();
        assert_eq!(code, 1, "{shown}");
        let widest = shown
            .lines()
            .filter(|l| !l.trim_start().starts_with("harbor-doctor "))
            .map(|l| l.trim_end_matches('\r').chars().count())
            .max()
            .unwrap();
        assert!(widest <= cols as usize, "{cols}: {widest}\n{shown}");
        assert!(
            widest > 60,
            "{cols} columns used, not COLUMNS: {widest}\n{shown}"
        );
    }
}

fn json_doc(o: &std::process::Output) -> serde_json::Value {
    serde_json::from_slice(&o.stdout).expect("diagnose -o json prints one document")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn quiet_is_a_line_per_finding_and_verbose_adds_the_evidence() {
    let lab = start_lab().await;
    let backups = tempfile::tempdir().unwrap();
    let doc = {
        let mut c = doctor_in(&lab, backups.path());
        c.args(["diagnose", "-o", "json"]);
        json_doc(&run(c).await)
    };
    let findings: Vec<&serde_json::Value> = doc["checks"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|c| c["findings"].as_array().unwrap())
        .collect();
    let o = run({
        let mut c = doctor_in(&lab, backups.path());
        c.args(["diagnose", "-q"]);
        c
    })
    .await;
    assert_exit(&o, 1);
    let quiet = stdout(&o);
    assert_eq!(
        quiet.lines().count(),
        2 * findings.len(),
        "-q: a line per finding and its command:\n{quiet}"
    );
    for (pair, f) in quiet.lines().collect::<Vec<_>>().chunks(2).zip(&findings) {
        assert!(pair[0].contains(f["subject"].as_str().unwrap()), "{quiet}");
        match f["repair"].as_str() {
            Some(repair) => assert_eq!(pair[1], format!("  {repair}"), "{quiet}"),
            None => assert!(pair[1].contains("harbor-doctor runbook"), "{quiet}"),
        }
    }
    assert_eq!(stderr(&o), "", "-q: nothing else");

    let o = run({
        let mut c = doctor_in(&lab, backups.path());
        c.args(["diagnose", "-v", "oidc-users"]);
        c
    })
    .await;
    let verbose = stdout(&o);
    let alice = findings
        .iter()
        .find(|f| f["subject"] == "user alice@example.com")
        .unwrap();
    for key in ["stored_sub", "keycloak_sub", "matched_by"] {
        let value = alice["evidence"][key].as_str().unwrap();
        assert!(
            verbose.contains(&format!("{key}: {value}")),
            "-v shows {key} as key: value:\n{verbose}"
        );
    }
    assert!(verbose.contains("kind: sub-changed"), "{verbose}");
    // The default report keeps evidence out.
    let o = run({
        let mut c = doctor_in(&lab, backups.path());
        c.args(["diagnose", "oidc-users"]);
        c
    })
    .await;
    assert!(!stdout(&o).contains("stored_sub"), "{}", stdout(&o));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn n_is_the_harbor_namespace_and_plans_and_proofs_name_real_commands() {
    let lab = start_lab().await;
    let backups = tempfile::tempdir().unwrap();
    // -n as kubectl users type it: a namespace with no Harbor is said so.
    let o = run({
        let mut c = doctor_in(&lab, backups.path());
        c.args([
            "-n",
            "no-harbor-here",
            "diagnose",
            "connectivity",
            "-o",
            "json",
        ]);
        c
    })
    .await;
    assert_exit(&o, 1);
    let doc = json_doc(&o);
    let kinds: Vec<&str> = doc["checks"][0]["findings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["kind"].as_str().unwrap())
        .collect();
    assert!(kinds.contains(&"namespace-missing"), "{doc:#}");

    // A repair's plan is titled with the command that runs it, and after
    // it the diagnosis that proves it.
    let o = run({
        let mut c = doctor_in(&lab, backups.path());
        c.args(["provision", "--team", "gamma", "--yes"]);
        c
    })
    .await;
    assert_exit(&o, 0);
    let said = format!("{}{}", stdout(&o), stderr(&o));
    assert!(said.contains("harbor-doctor provision"), "{said}");
    assert!(!said.contains("fix provision"), "{said}");
    assert!(
        said.contains("To see it for yourself: harbor-doctor diagnose teams"),
        "{said}"
    );

    // restore without a file lists the backups, newest first, with what
    // each puts back; each backup was written before its change.
    for user in ["alice@example.com", "bob@example.com"] {
        let o = run({
            let mut c = doctor_in(&lab, backups.path());
            c.args(["fix", "oidc-users", "--user", user, "--yes"]);
            c
        })
        .await;
        assert_exit(&o, 0);
        let said = stderr(&o);
        let backup_at = said.find("Backup: ").expect(&said);
        let applied_at = said.find("Applied and verified").expect(&said);
        assert!(backup_at < applied_at, "in the order it happened:\n{said}");
        assert!(
            said.contains("To see it for yourself: harbor-doctor diagnose oidc-users"),
            "{said}"
        );
        // Backup names carry milliseconds; keep the two apart.
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    let o = run({
        let mut c = doctor_in(&lab, backups.path());
        c.arg("restore");
        c
    })
    .await;
    assert_exit(&o, 0);
    let listing = stdout(&o);
    let alice = listing
        .find("oidc-conflict of alice@example.com")
        .expect(&listing);
    let bob = listing
        .find("oidc-conflict of bob@example.com")
        .expect(&listing);
    assert!(bob < alice, "newest first:\n{listing}");
    assert!(
        listing.contains("409 conflict again"),
        "says the restore brings the 409 back:\n{listing}"
    );
    // Its plan shows the subject and the issuer apart.
    let newest = std::fs::read_dir(backups.path())
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.to_string_lossy().contains("oidc-conflict-alice"))
        .max()
        .unwrap();
    let o = run({
        let mut c = doctor_in(&lab, backups.path());
        c.args(["restore", "--dry-run"]).arg(&newest);
        c
    })
    .await;
    assert_exit(&o, 0);
    let plan = format!("{}{}", stdout(&o), stderr(&o));
    assert!(plan.contains("Plan: harbor-doctor restore"), "{plan}");
    assert!(plan.contains("sub: "), "{plan}");
    assert!(plan.contains("issuer: http://127.0.0.1:"), "{plan}");
    assert!(!plan.contains("subiss:"), "{plan}");
}

#[test]
fn a_bare_command_prints_its_short_help_and_exits_2_whatever_the_environment() {
    for env in [
        vec![],
        vec![
            ("HARBOR_URL", "https://h.example"),
            ("HARBOR_NAMESPACE", "x"),
        ],
    ] {
        for args in [&[][..], &["fix"][..]] {
            let mut c = bare_doctor();
            c.envs(env.clone()).args(args).env("NO_COLOR", "1");
            let o = c.output().unwrap();
            assert_exit(&o, 2);
            let err = stderr(&o);
            assert!(!err.contains("error:"), "{args:?} {env:?}:\n{err}");
            assert!(err.contains("Usage: harbor-doctor"), "{err}");
            assert!(stdout(&o).is_empty());
        }
    }
    // The usage line of an error names what is required, not the options
    // the environment set.
    let o = bare_doctor()
        .env("HARBOR_URL", "https://h.example")
        .env("HARBOR_DATABASE_URL", "postgres://u@h/registry")
        .args(["fix", "oidc-conflict"])
        .output()
        .unwrap();
    assert_exit(&o, 2);
    let err = stderr(&o);
    assert!(
        err.contains("Usage: harbor-doctor fix oidc-conflict [OPTIONS] <--user <NAME>|--all>"),
        "{err}"
    );
    assert!(!err.contains("--harbor-url <URL>"), "{err}");
}

#[test]
fn fix_suggests_the_name_that_was_meant() {
    for (typed, meant) in [
        ("oidc-user", "harbor-doctor fix oidc-users"),
        ("registry-stratgy", "harbor-doctor fix registry-strategy"),
        ("provision", "harbor-doctor provision"),
    ] {
        let o = bare_doctor().args(["fix", typed]).output().unwrap();
        assert_exit(&o, 2);
        assert!(
            stderr(&o).contains(&format!("did you mean `{meant}`?")),
            "{typed}: {}",
            stderr(&o)
        );
    }
    let o = bare_doctor().args(["fix", "zzzz"]).output().unwrap();
    assert_exit(&o, 2);
    assert!(!stderr(&o).contains("did you mean"), "{}", stderr(&o));
}

#[test]
fn help_puts_a_commands_own_options_first_and_has_examples() {
    for command in [
        "diagnose",
        "fix",
        "provision",
        "docker-login",
        "restore",
        "runbook",
        "serve",
        "lab",
        "completions",
    ] {
        let o = bare_doctor().args([command, "--help"]).output().unwrap();
        assert_exit(&o, 0);
        let help = stdout(&o);
        assert!(help.contains("Examples:\n"), "{command}: {help}");
        let global = help
            .find("Global options:")
            .expect("a heading for global options");
        if let Some(own) = help.find("\nOptions:") {
            assert!(own < global, "{command}: own options first:\n{help}");
        }
    }
    let o = bare_doctor().args(["diagnose", "--help"]).output().unwrap();
    let help = stdout(&o);
    let repair = help
        .find("Repair options")
        .expect("--yes is under the repair heading");
    assert!(help[repair..].contains("--yes"), "{help}");
}

/// The kinds no repair is offered for, and why: the summary says what to
/// do instead. Every other kind of every check must be proven below.
const NEVER_REPAIRED: &[(&str, &str)] = &[
    ("oidc-users", "no-certain-match"),
    ("oidc-users", "no-match"),
    ("oidc-users", "several-links"),
    ("oidc-users", "no-link"),
    ("oidc-users", "not-examined"),
    ("multi-attach", "holder-node-down"),
    ("multi-attach", "holder-is-current"),
    ("multi-attach", "holder-elsewhere"),
    ("multi-attach", "detach-pending"),
    // Adding offline_access (the scope finding's repair) helps only once
    // the user logs in to the web UI again.
    ("cli-login", "cli-secret-rejected"),
    ("teams", "namespace-missing"),
    ("teams", "not-examined"),
];

/// No finding may name a repair that cannot change it: in the lab, with
/// one case of every repairable kind planted, each finding's own command,
/// run alone, removes that finding (same check, kind and subject). Every
/// kind a check declares is either proven here or in [`NEVER_REPAIRED`],
/// and no finding of those carries a repair.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_findings_own_repair_removes_it() {
    let lab = start_lab().await;
    lab.plant_every_repairable_kind()
        .await
        .expect("planting every kind");
    let backups = tempfile::tempdir().unwrap();
    let diagnose = || {
        let mut c = doctor_in(&lab, backups.path());
        c.args(["diagnose", "-o", "json"]);
        c
    };
    let doc = json_doc(&run(diagnose()).await);
    let findings: Vec<serde_json::Value> = doc["checks"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|c| c["findings"].as_array().unwrap().clone())
        .collect();
    let kind_of = |f: &serde_json::Value| {
        (
            f["check"].as_str().unwrap().to_string(),
            f["kind"].as_str().unwrap().to_string(),
        )
    };
    let mut proven = std::collections::BTreeSet::new();
    for f in &findings {
        let key = (f["check"].clone(), f["kind"].clone(), f["subject"].clone());
        let Some(repair) = f["repair"].as_str() else {
            continue;
        };
        let (check, kind) = kind_of(f);
        assert!(
            !NEVER_REPAIRED.contains(&(check.as_str(), kind.as_str())),
            "{check}/{kind} names a repair: {f:#}"
        );
        let words = shell_words::split(repair).expect("a repair is one shell command line");
        assert_eq!(words[0], "harbor-doctor", "{repair}");
        let o = run({
            let mut c = doctor_in(&lab, backups.path());
            c.args(&words[1..]).arg("--yes");
            c
        })
        .await;
        assert_exit(&o, 0);
        let after = json_doc(&run(diagnose()).await);
        let still: Vec<&serde_json::Value> = after["checks"]
            .as_array()
            .unwrap()
            .iter()
            .flat_map(|c| c["findings"].as_array().unwrap())
            .filter(|g| (g["check"].clone(), g["kind"].clone(), g["subject"].clone()) == key)
            .collect();
        assert!(still.is_empty(), "`{repair}` left its finding: {still:#?}");
        proven.insert((check, kind));
    }
    // Every declared kind: proven, or never repaired. A kind added to a
    // check without a case here (or a reason above) fails this.
    let mut missing = vec![];
    for issue in harbor_doctor::issues::KNOWN_ISSUES {
        for kind in issue.kinds {
            let key = (issue.check.to_string(), kind.id.to_string());
            let excused =
                issue.repair.is_none() || NEVER_REPAIRED.contains(&(issue.check, kind.id));
            if !excused && !proven.contains(&key) {
                missing.push(format!("{}/{}", key.0, key.1));
            }
        }
    }
    assert!(
        missing.is_empty(),
        "repairable kinds no finding proved: {missing:?} (proven: {proven:?})"
    );
}
