//! What ships besides the binary, and the ways it is invoked: shell
//! completions, manual pages from the CLI definition, the kubectl plugin
//! form, and the embedded runbooks.

use std::path::Path;
use std::process::Command;

use crate::support::*;

const SUBCOMMANDS: &[&str] = &[
    "diagnose",
    "fix",
    "provision",
    "docker-login",
    "restore",
    "runbook",
    "lab",
    "completions",
];
fn doctor(args: &[&str]) -> std::process::Output {
    bare_doctor().args(args).output().unwrap()
}

#[test]
fn completions_for_each_shell_name_every_subcommand() {
    for shell in ["bash", "zsh", "fish"] {
        let o = doctor(&["completions", shell]);
        assert_exit(&o, 0);
        let script = stdout(&o);
        for sub in SUBCOMMANDS.iter().chain(&["oidc-conflict", "multi-attach"]) {
            assert!(script.contains(sub), "{shell} completions lack {sub}");
        }
        // clap_complete's fish script completes options, not positional
        // values such as check ids.
        if shell != "fish" {
            for check in CHECK_IDS {
                assert!(script.contains(check), "{shell} completions lack {check}");
            }
        }
        assert!(script.contains("harbor-doctor"), "{shell}");
    }
    // The bash script is valid bash.
    let o = doctor(&["completions", "bash"]);
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("harbor-doctor.bash");
    std::fs::write(&file, &o.stdout).unwrap();
    let check = Command::new("bash").arg("-n").arg(&file).output().unwrap();
    assert!(check.status.success(), "{}", stderr(&check));
    assert_exit(&doctor(&["completions", "tcsh"]), 2);
}

/// The `.SH` headings of a page, in order.
fn headings(page: &str) -> Vec<String> {
    page.lines()
        .filter_map(|l| l.strip_prefix(".SH "))
        .map(|h| h.trim_matches('"').to_string())
        .collect()
}

/// The text of section `name` of a page's roff source, `\-` read as `-`.
fn section(page: &str, name: &str) -> String {
    let mut text = String::new();
    let mut inside = false;
    for line in page.lines() {
        if let Some(heading) = line.strip_prefix(".SH ") {
            inside = heading.trim_matches('"') == name;
            continue;
        }
        if inside {
            text.push_str(&line.replace("\\-", "-"));
            text.push('\n');
        }
    }
    text
}

const PAGE_SECTIONS: &[&str] = &[
    "NAME",
    "SYNOPSIS",
    "DESCRIPTION",
    "OPTIONS",
    "EXIT STATUS",
    "ENVIRONMENT",
    "FILES",
];

#[test]
fn man_pages_come_from_the_cli_definition() {
    let dir = tempfile::tempdir().unwrap();
    let pages = harbor_doctor::packaging::man_pages(dir.path()).unwrap();
    let names: Vec<String> = pages
        .iter()
        .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
        .collect();
    assert_eq!(names[0], "harbor-doctor.1");
    for sub in SUBCOMMANDS {
        assert!(
            names.contains(&format!("harbor-doctor-{sub}.1")),
            "{sub}: {names:?}"
        );
    }
    assert!(names.contains(&"harbor-doctor-fix-oidc-conflict.1".to_string()));
    assert!(
        !names.contains(&"harbor-doctor-fix-connectivity.1".to_string()),
        "a check without a repair gets no page: {names:?}"
    );
    let main = std::fs::read_to_string(&pages[0]).unwrap();
    assert!(main.starts_with(".ie \\n(.g .ds Aq"), "roff: {main:.200}");
    assert_eq!(main.matches(".ds Aq").count(), 2, "the preamble once");
    assert!(main.contains(".TH harbor-doctor 1"), "{main:.400}");
    assert_eq!(
        headings(&main),
        [
            "NAME",
            "SYNOPSIS",
            "DESCRIPTION",
            "OPTIONS",
            // The help's headings, as clap_mangen writes them.
            "GLOBAL OPTIONS",
            "REPAIR OPTIONS (FIX, PROVISION, RESTORE)",
            "SUBCOMMANDS",
            "EXIT STATUS",
            "ENVIRONMENT",
            "FILES",
            "EXAMPLES",
            "NOTES",
            "SEE ALSO",
            "VERSION"
        ]
    );

    let exit = section(&main, "EXIT STATUS");
    for code in 0..=5 {
        assert!(
            exit.contains(&format!(".TP\n\\fB{code}\\fR\n")),
            "{code}: {exit}"
        );
    }
    assert!(exit.contains("--fail-on"), "{exit}");

    // Every variable an option reads, straight from the definition.
    let environment = section(&main, "ENVIRONMENT");
    let cmd = <harbor_doctor::cli::Cli as clap::CommandFactory>::command();
    let from_options: Vec<String> = cmd
        .get_arguments()
        .filter_map(|a| a.get_env())
        .map(|e| e.to_string_lossy().into_owned())
        .collect();
    assert!(from_options.len() >= 10, "{from_options:?}");
    for var in from_options.iter().map(String::as_str).chain([
        "HARBOR_URL",
        "KEYCLOAK_URL",
        "KUBECONFIG",
        "HARBOR_CLI_SECRET",
    ]) {
        assert!(
            environment.contains(&format!("\\fB{var}\\fR")),
            "ENVIRONMENT lacks {var}: {environment}"
        );
    }

    let files = section(&main, "FILES");
    for path in [
        "$XDG_STATE_HOME/harbor-doctor/backups",
        "~/.local/state/harbor-doctor/backups",
        "~/.kube/config",
        "harbor-doctor-lab-",
        "kubectl_complete-harbor_doctor",
    ] {
        assert!(files.contains(path), "FILES lacks {path}: {files}");
    }

    let examples = section(&main, "EXAMPLES");
    for example in [
        "harbor-doctor diagnose\\fR",
        "harbor-doctor diagnose oidc-users -o json",
        "harbor-doctor fix oidc-users --user alice --dry-run",
        "harbor-doctor provision --all",
    ] {
        assert!(
            examples.contains(example),
            "EXAMPLES lacks {example}: {examples}"
        );
    }
    // The namespace option as the definition spells it: -n once it has
    // the short form.
    let plugin_example = |text: &str| {
        ["-n", "--harbor-namespace"]
            .iter()
            .any(|o| text.contains(&format!("kubectl harbor-doctor {o} harbor diagnose")))
    };
    assert!(plugin_example(&examples), "{examples}");
    assert!(
        !main.contains("EXTRA"),
        "exit codes under EXIT STATUS, not EXTRA"
    );

    // Each subcommand's page: the same sections, and only its own examples.
    for page in &pages[1..] {
        let text = std::fs::read_to_string(page).unwrap();
        let got = headings(&text);
        let name = page.display();
        let mut at = 0;
        for want in PAGE_SECTIONS {
            let found = got[at..].iter().position(|h| h == want);
            at += found.unwrap_or_else(|| panic!("{name}: no {want} after the last: {got:?}")) + 1;
        }
        assert!(!got.contains(&"EXTRA".to_string()), "{name}");
    }
    let diagnose = std::fs::read_to_string(dir.path().join("harbor-doctor-diagnose.1")).unwrap();
    assert!(diagnose.contains("fail\\-on"), "{diagnose}");
    let examples = section(&diagnose, "EXAMPLES");
    assert!(
        examples.contains("diagnose oidc-users -o json"),
        "{examples}"
    );
    assert!(!examples.contains("provision"), "{examples}");
    let environment = section(&diagnose, "ENVIRONMENT");
    assert!(
        environment.contains("HARBOR_URL"),
        "global options' variables too"
    );
    let fix =
        std::fs::read_to_string(dir.path().join("harbor-doctor-fix-oidc-conflict.1")).unwrap();
    assert!(
        section(&fix, "EXAMPLES").contains("fix oidc-users --user alice"),
        "an example that uses the alias lands on the repair's page"
    );
    let restore = std::fs::read_to_string(dir.path().join("harbor-doctor-restore.1")).unwrap();
    assert!(
        !headings(&restore).contains(&"EXAMPLES".to_string()),
        "no examples, no heading"
    );

    // groff formats every page without a warning, and the examples come
    // out whole.
    if !tool_available("groff", "groff-base", "formatting the manual pages") {
        return;
    }
    for page in &pages {
        let o = Command::new("groff")
            .args(["-man", "-Tutf8", "-ww", "-P-cbou"])
            .arg(page)
            .env("LC_ALL", "C.UTF-8")
            .output()
            .unwrap();
        assert!(o.status.success(), "{}: {}", page.display(), stderr(&o));
        assert!(
            o.stderr.is_empty(),
            "groff warns about {}: {}",
            page.display(),
            stderr(&o)
        );
        if page == &pages[0] {
            let text = stdout(&o);
            for line in [
                "harbor-doctor fix oidc-users --user alice --dry-run",
                "harbor-doctor diagnose oidc-users -o json",
                "EXIT STATUS",
            ] {
                assert!(text.contains(line), "formatted page lacks {line}:\n{text}");
            }
            assert!(plugin_example(&text), "{text}");
        }
    }
}

/// The binary installed under the kubectl plugin's name.
fn plugin(dir: &Path) -> std::path::PathBuf {
    let link = dir.join("kubectl-harbor_doctor");
    std::os::unix::fs::symlink(env!("CARGO_BIN_EXE_harbor-doctor"), &link).unwrap();
    link
}

#[test]
fn as_kubectl_harbor_doctor_it_says_so_in_its_usage() {
    let dir = tempfile::tempdir().unwrap();
    let link = plugin(dir.path());
    let o = Command::new(&link).arg("--help").output().unwrap();
    assert_exit(&o, 0);
    let help = stdout(&o);
    assert!(
        help.contains("Usage: kubectl harbor-doctor [OPTIONS] <COMMAND>"),
        "{help}"
    );
    assert!(help.contains("Running as the kubectl plugin"), "{help}");

    let o = Command::new(&link)
        .args(["diagnose", "--no-such-option"])
        .output()
        .unwrap();
    assert_exit(&o, 2);
    assert!(
        stderr(&o).contains("Usage: kubectl harbor-doctor diagnose"),
        "{}",
        stderr(&o)
    );

    // It runs commands as the binary does.
    let o = Command::new(&link).arg("runbook").output().unwrap();
    assert_exit(&o, 0);
    assert!(stdout(&o).contains("oidc-conflict"));

    // Under its own name, no kubectl.
    let o = doctor(&["--help"]);
    assert!(stdout(&o).contains("Usage: harbor-doctor [OPTIONS] <COMMAND>"));
    assert!(!stdout(&o).contains("kubectl plugin"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn as_the_plugin_its_repair_commands_start_with_kubectl() {
    let reg = Registry::new().await;
    // A deleted user still linked: its repair is a soft delete.
    let bob = reg.oidc_user("bob", "b-sub", ISSUER).await;
    reg.sql
        .execute(
            "UPDATE harbor_user SET deleted = true WHERE user_id = $1",
            &[&bob],
        )
        .await
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let link = plugin(dir.path());
    let repair_of = |o: &std::process::Output| {
        let doc: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
        doc["checks"][0]["findings"][0]["repair"]
            .as_str()
            .unwrap()
            .to_string()
    };
    let mut cmd = assert_cmd::Command::new(&link);
    cmd.env_clear()
        .env("HARBOR_DATABASE_URL", &reg.db.url)
        .args(["diagnose", "oidc-users", "-o", "json"]);
    let o = run(cmd).await;
    assert_exit(&o, 1);
    assert_eq!(
        repair_of(&o),
        "kubectl harbor-doctor fix oidc-conflict --user bob --strategy soft-delete"
    );
    let mut cmd = bare_doctor();
    cmd.env("HARBOR_DATABASE_URL", &reg.db.url)
        .args(["diagnose", "oidc-users", "-o", "json"]);
    let o = run(cmd).await;
    assert_eq!(
        repair_of(&o),
        "harbor-doctor fix oidc-conflict --user bob --strategy soft-delete"
    );
}

/// DESIGN.md: `fix` also accepts each check id for its repair; a check
/// without a repair and an unknown name exit 2, naming the runbook or the
/// valid names.
#[test]
fn fix_accepts_check_ids_and_explains_the_names_it_refuses() {
    // `fix oidc-users` is `fix oidc-conflict`: the same options are required.
    let o = doctor(&["fix", "oidc-users"]);
    assert_exit(&o, 2);
    assert!(stderr(&o).contains("--user"), "{}", stderr(&o));
    let o = doctor(&["fix", "oidc-users", "--help"]);
    assert_exit(&o, 0);
    assert!(stdout(&o).contains("--strategy"), "{}", stdout(&o));
    // `fix teams` is `provision`.
    let o = doctor(&["fix", "teams", "--help"]);
    assert_exit(&o, 0);
    assert!(
        stdout(&o).contains("--team") && stdout(&o).contains("--robot-duration"),
        "{}",
        stdout(&o)
    );
    // ... and runs it: without a cluster both refuse the same way.
    let fix = doctor(&["fix", "teams", "--team", "demo", "--dry-run"]);
    let provision = doctor(&["provision", "--team", "demo", "--dry-run"]);
    assert_exit(&fix, 3);
    assert_eq!(stderr(&fix), stderr(&provision));
    let o = doctor(&["fix", "connectivity"]);
    assert_exit(&o, 2);
    assert!(
        stderr(&o).contains("no automatic repair") && stderr(&o).contains("runbook connectivity"),
        "{}",
        stderr(&o)
    );
    let o = doctor(&["fix", "no-such-thing"]);
    assert_exit(&o, 2);
    let err = stderr(&o);
    for name in [
        "oidc-conflict",
        "multi-attach",
        "registry-strategy",
        "cli-login",
        "teams",
    ] {
        assert!(err.contains(name), "names {name}: {err}");
    }
    // The help lists every repair, with its check-id alias.
    let o = doctor(&["fix", "--help"]);
    assert!(stdout(&o).contains("alias: oidc-users"), "{}", stdout(&o));
}

#[test]
fn every_check_id_has_a_runbook_and_the_list_has_one_line_each() {
    for id in CHECK_IDS {
        let o = doctor(&["runbook", id]);
        assert_exit(&o, 0);
        // Laid out as text (the runbooks module tests how).
        assert!(stdout(&o).contains("SYMPTOMS"), "runbook {id}");
    }
    let o = doctor(&["runbook"]);
    assert_exit(&o, 0);
    let list = stdout(&o);
    let ids: Vec<&str> = list
        .lines()
        .map(|l| l.split_whitespace().next().unwrap())
        .collect();
    assert_eq!(
        ids.len(),
        harbor_doctor::runbooks::all().count(),
        "one line per runbook:\n{list}"
    );
    for runbook in harbor_doctor::runbooks::all() {
        let (id, summary) = (runbook.id, runbook.summary);
        assert!(
            list.lines()
                .any(|l| l.starts_with(id) && l.ends_with(summary)),
            "{id}: {list}"
        );
    }
    let o = doctor(&["runbook", "no-such-runbook"]);
    assert_exit(&o, 3);
    assert!(stderr(&o).contains("oidc-conflict"), "names the runbooks");
}

/// The sections every runbook has, in this order, so that on-call finds the
/// same thing in the same place in each of them.
const RUNBOOK_SECTIONS: &[&str] = &[
    "## Symptoms",
    "## Cause",
    "## What the doctor checks",
    "## What the repair changes",
    "## How to undo",
    "## By hand, when the doctor cannot run",
];

#[test]
fn every_runbook_has_the_six_sections_in_order() {
    for runbook in harbor_doctor::runbooks::all() {
        let (id, text) = (runbook.id, runbook.text);
        let sections: Vec<&str> = text
            .lines()
            .filter(|l| l.starts_with("## "))
            .map(str::trim_end)
            .collect();
        assert_eq!(
            sections, RUNBOOK_SECTIONS,
            "runbook {id}: its `## ` headings must be exactly these, in this order"
        );
    }
}

/// The CI scripts, which run under `set -o pipefail`.
fn ci_scripts() -> Vec<std::path::PathBuf> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut scripts = vec![root.join(".ci/run")];
    let mut dirs = vec![root.join("ci")];
    while let Some(dir) = dirs.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.file_name().is_some_and(|n| n == "node_modules") {
                continue;
            }
            if path.is_dir() {
                dirs.push(path);
            } else if path.extension().is_some_and(|e| e == "sh") {
                scripts.push(path);
            }
        }
    }
    scripts
}

/// A reader that stops early (`head`, `grep -q`) kills the writer with
/// SIGPIPE once it writes again, and under pipefail that ends the whole CI
/// run with exit 141: it did, when `kubectl version` wrote its second line.
#[test]
fn ci_scripts_never_end_a_pipe_early_under_pipefail() {
    let early =
        regex::Regex::new(r"\|\s*(head\b|grep\s+(-\w*[qm]\w*\b|--quiet|--max-count))").unwrap();
    let mut wrong = vec![];
    let scripts = ci_scripts();
    assert!(scripts.len() >= 5, "{scripts:?}");
    for script in scripts {
        let text = std::fs::read_to_string(&script).unwrap();
        if !text.contains("pipefail") {
            continue;
        }
        for (n, line) in text.lines().enumerate() {
            let code = line.split(" #").next().unwrap_or_default();
            if !code.trim_start().starts_with('#') && early.is_match(code) {
                wrong.push(format!("{}:{}: {}", script.display(), n + 1, line.trim()));
            }
        }
    }
    assert!(
        wrong.is_empty(),
        "these pipes end early and fail the run under pipefail; read the whole input \
         (sed -n 1p, grep >/dev/null) instead:\n{}",
        wrong.join("\n")
    );
}
