//! Shell completion as users get it: the scripts of `completions <SHELL>`
//! loaded by the real shells and asked to complete, under both names the
//! binary is installed as, and the completer kubectl runs for the plugin,
//! in Cobra's protocol and through the real kubectl.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::support::*;

/// What `fix` accepts: each repair, and each check id that names one.
const FIX_NAMES: &[&str] = &[
    "oidc-conflict",
    "oidc-users",
    "multi-attach",
    "registry-strategy",
    "cli-login",
    "teams",
];
const NAMES: [&str; 2] = ["harbor-doctor", "kubectl-harbor_doctor"];

fn runbook_ids() -> Vec<String> {
    harbor_doctor::runbooks::all()
        .map(|r| r.id.to_string())
        .collect()
}

/// A directory with the binary installed under `names` (links to it).
fn installed(names: &[&str]) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    for name in names {
        std::os::unix::fs::symlink(env!("CARGO_BIN_EXE_harbor-doctor"), dir.path().join(name))
            .unwrap();
    }
    dir
}

/// `completions <shell>` as printed by the binary run as `program`.
fn script(program: &Path, shell: &str) -> String {
    let o = Command::new(program)
        .args(["completions", shell])
        .output()
        .unwrap();
    assert_exit(&o, 0);
    stdout(&o)
}

fn write_script(dir: &Path, shell: &str, text: &str) -> PathBuf {
    let file = dir.join(format!("harbor-doctor.{shell}"));
    std::fs::write(&file, text).unwrap();
    file
}

/// Sources `script` in bash and completes each line as bash would on TAB
/// at its end: COMP_WORDS / COMP_CWORD set, the function that `complete
/// -p` registered for the first word called with (command, word, previous
/// word). Returns each line's COMPREPLY.
fn bash_complete(script: &Path, lines: &[String]) -> Vec<Vec<String>> {
    const DRIVER: &str = r#"
source "$1" || exit 1
shift
for line in "$@"; do
    read -ra COMP_WORDS <<<"$line"
    if [[ $line == *' ' ]]; then COMP_WORDS+=(""); fi
    COMP_CWORD=$(( ${#COMP_WORDS[@]} - 1 ))
    COMP_LINE=$line
    COMP_POINT=${#line}
    if ! spec=$(complete -p "${COMP_WORDS[0]}" 2>/dev/null); then
        echo "(no-completion-registered)"
        continue
    fi
    fn=${spec#*-F }
    fn=${fn%% *}
    COMPREPLY=()
    "$fn" "${COMP_WORDS[0]}" "${COMP_WORDS[COMP_CWORD]}" "${COMP_WORDS[COMP_CWORD-1]}"
    printf '%s\n' "${COMPREPLY[*]}"
done
"#;
    let o = Command::new("bash")
        .arg("--norc")
        .arg("-c")
        .arg(DRIVER)
        .arg("bash")
        .arg(script)
        .args(lines)
        .output()
        .unwrap();
    assert!(o.status.success(), "bash: {}", stderr(&o));
    assert!(o.stderr.is_empty(), "bash complained: {}", stderr(&o));
    let replies: Vec<Vec<String>> = stdout(&o)
        .lines()
        .map(|l| l.split_whitespace().map(str::to_string).collect())
        .collect();
    assert_eq!(replies.len(), lines.len(), "{}", stdout(&o));
    replies
}

fn assert_offers(offered: &[String], wanted: &[&str], what: &str) {
    for want in wanted {
        assert!(
            offered.iter().any(|o| o == want),
            "{what}: {want} is not offered: {offered:?}"
        );
    }
}

#[test]
fn bash_completes_after_the_first_word_under_both_names() {
    let dir = installed(&NAMES);
    let scripts: Vec<String> = NAMES
        .iter()
        .map(|name| script(&dir.path().join(name), "bash"))
        .collect();
    assert_eq!(scripts[0], scripts[1], "one script serves both names");
    let file = write_script(dir.path(), "bash", &scripts[0]);
    let runbooks = runbook_ids();
    let runbooks: Vec<&str> = runbooks.iter().map(String::as_str).collect();
    for name in NAMES {
        let lines: Vec<String> = [
            "di",
            "diagnose ",
            "fix ",
            "runbook ",
            "diagnose --output ",
            "diagnose --fail-on p",
            "fix oidc-users --strategy ",
        ]
        .iter()
        .map(|l| format!("{name} {l}"))
        .collect();
        let got = bash_complete(&file, &lines);
        assert_eq!(got[0], ["diagnose"], "{name} di");
        assert_offers(&got[1], &CHECK_IDS, &lines[1]);
        assert_offers(&got[2], FIX_NAMES, &lines[2]);
        assert!(
            !got[2].contains(&"connectivity".to_string()),
            "fix offers a check without a repair: {:?}",
            got[2]
        );
        assert_offers(&got[3], &runbooks, &lines[3]);
        assert_eq!(got[4], ["table", "json", "prometheus"], "{}", lines[4]);
        assert_eq!(got[5], ["problem"], "{}", lines[5]);
        assert_eq!(got[6], ["relink", "soft-delete", "delete"], "{}", lines[6]);
    }
}

/// Runs the completer kubectl would, with `words` after the plugin's name;
/// returns (candidate, description) lines and the directive.
fn kubectl_complete(completer: &Path, words: &[&str]) -> (Vec<(String, String)>, String) {
    let o = Command::new(completer).args(words).output().unwrap();
    assert_exit(&o, 0);
    assert!(o.stderr.is_empty(), "{words:?}: {}", stderr(&o));
    let out = stdout(&o);
    let mut lines: Vec<&str> = out.lines().collect();
    assert!(out.ends_with('\n'), "{out:?}");
    let directive = lines.pop().expect("a directive line").to_string();
    let candidates = lines
        .iter()
        .map(|l| {
            assert!(!l.is_empty() && !l.starts_with(':'), "{words:?}: {out}");
            let (candidate, description) = l.split_once('\t').unwrap_or((l, ""));
            assert!(!description.contains('\t'), "{l:?}");
            (candidate.to_string(), description.to_string())
        })
        .collect();
    (candidates, directive)
}

#[test]
fn the_kubectl_completer_answers_in_cobras_protocol() {
    let dir = installed(&["kubectl_complete-harbor_doctor"]);
    let completer = dir.path().join("kubectl_complete-harbor_doctor");
    let names = |words: &[&str]| -> (Vec<String>, String) {
        let (candidates, directive) = kubectl_complete(&completer, words);
        (candidates.into_iter().map(|(c, _)| c).collect(), directive)
    };

    let (top, directive) = kubectl_complete(&completer, &[""]);
    assert_eq!(directive, ":4", "no file names after the plugin's name");
    for sub in [
        "diagnose",
        "fix",
        "provision",
        "runbook",
        "restore",
        "serve",
    ] {
        let found = top.iter().find(|(c, _)| c == sub);
        let (_, description) = found.unwrap_or_else(|| panic!("{sub}: {top:?}"));
        assert!(!description.is_empty(), "{sub} has its description");
    }

    let (checks, directive) = names(&["diagnose", ""]);
    assert_offers(&checks, &CHECK_IDS, "diagnose");
    assert_eq!(directive, ":4");
    let (fixes, _) = names(&["fix", ""]);
    assert_offers(&fixes, FIX_NAMES, "fix");
    assert!(!fixes.contains(&"connectivity".to_string()), "{fixes:?}");
    let (runbooks, _) = names(&["runbook", ""]);
    assert_eq!(runbooks, runbook_ids());
    assert_eq!(
        names(&["diagnose", "--output", ""]),
        (
            vec!["table".into(), "json".into(), "prometheus".into()],
            ":4".into()
        )
    );
    assert_eq!(
        names(&["diagnose", "--fail-on", ""]),
        (vec!["warning".into(), "problem".into()], ":4".into())
    );
    // kubectl passes the plugin's global options on as they were typed.
    assert_eq!(
        names(&["--harbor-namespace", "harbor", "diagnose", "--fail-on", "w"]).0,
        ["warning"]
    );
    let (options, _) = names(&["fix", "oidc-users", "--"]);
    assert_offers(
        &options,
        &["--user", "--all", "--strategy", "--dry-run"],
        "fix oidc-users --",
    );
    // A backup file: the shell completes file names (directive 0).
    assert_eq!(names(&["restore", ""]), (vec![], ":0".into()));
    // Nothing the definition knows: an empty answer, still well-formed.
    assert_eq!(
        names(&["fix", "oidc-users", "--user", ""]),
        (vec![], ":4".into())
    );
}

#[test]
fn kubectl_itself_completes_the_plugin_through_the_completer() {
    if !tool_available("kubectl", "kubectl", "kubectl's plugin completion") {
        return;
    }
    let dir = installed(&["kubectl-harbor_doctor", "kubectl_complete-harbor_doctor"]);
    let path = format!(
        "{}:{}",
        dir.path().display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let complete = |words: &[&str]| {
        let o = Command::new("kubectl")
            .arg("__complete")
            .args(words)
            .env("PATH", &path)
            .env("KUBECONFIG", dir.path().join("no-such-kubeconfig"))
            .output()
            .unwrap();
        assert_exit(&o, 0);
        let out = stdout(&o);
        let lines: Vec<String> = out
            .lines()
            .map(|l| l.split('\t').next().unwrap().to_string())
            .collect();
        lines
    };
    let plugins = complete(&["harbor-d"]);
    assert!(
        plugins.contains(&"harbor-doctor".to_string()),
        "{plugins:?}"
    );
    let checks = complete(&["harbor-doctor", "diagnose", ""]);
    assert_offers(&checks, &CHECK_IDS, "kubectl harbor-doctor diagnose");
    assert_eq!(checks.last().map(String::as_str), Some(":4"), "{checks:?}");
    let formats = complete(&["harbor-doctor", "diagnose", "-o", ""]);
    assert_eq!(formats, ["table", "json", "prometheus", ":4"]);
}

#[test]
fn zsh_loads_the_script_for_both_names() {
    if !tool_available("zsh", "zsh", "loading the zsh completion script") {
        return;
    }
    let dir = installed(&["harbor-doctor"]);
    let file = write_script(
        dir.path(),
        "zsh",
        &script(&dir.path().join("harbor-doctor"), "zsh"),
    );
    let o = Command::new("zsh")
        .arg("-f")
        .arg("-c")
        .arg(
            r#"autoload -U compinit && compinit -u -D && source "$1" || exit 1
print -r -- "${_comps[harbor-doctor]} ${_comps[kubectl-harbor_doctor]}""#,
        )
        .arg("zsh")
        .arg(&file)
        .env("HOME", dir.path())
        .env("ZDOTDIR", dir.path())
        .output()
        .unwrap();
    assert_exit(&o, 0);
    assert!(o.stderr.is_empty(), "zsh complained: {}", stderr(&o));
    assert_eq!(stdout(&o).trim(), "_harbor-doctor _harbor-doctor");
}

#[test]
fn fish_loads_the_script_and_completes_both_names() {
    if !tool_available("fish", "fish", "the fish completion script") {
        return;
    }
    let dir = installed(&["harbor-doctor"]);
    let file = write_script(
        dir.path(),
        "fish",
        &script(&dir.path().join("harbor-doctor"), "fish"),
    );
    let o = Command::new("fish")
        .arg("--no-config")
        .arg("-c")
        .arg(
            r#"source $argv[1]; or exit 1
complete -C 'harbor-doctor di'
echo ==
complete -C 'kubectl-harbor_doctor diagnose --output '
echo ==
complete -C 'harbor-doctor fix oidc-conflict --strategy '"#,
        )
        .arg(&file)
        .env("HOME", dir.path())
        .env("XDG_CONFIG_HOME", dir.path().join("config"))
        .env("XDG_DATA_HOME", dir.path().join("data"))
        .output()
        .unwrap();
    assert_exit(&o, 0);
    assert!(o.stderr.is_empty(), "fish complained: {}", stderr(&o));
    let out = stdout(&o);
    let blocks: Vec<Vec<&str>> = out
        .split("==\n")
        .map(|b| b.lines().map(|l| l.split('\t').next().unwrap()).collect())
        .collect();
    assert_eq!(blocks[0], ["diagnose"], "{out}");
    assert_eq!(blocks[1], ["json", "prometheus", "table"], "{out}");
    assert_eq!(blocks[2], ["delete", "relink", "soft-delete"], "{out}");
}
