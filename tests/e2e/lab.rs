//! `harbor-doctor lab`, as users run it: the binary starts the simulated
//! installation with every known issue planted, hands out its environment,
//! and stops cleanly. The walk test is the README's main job: diagnose, run
//! every repair the findings name, until diagnose is clean.

use std::collections::BTreeMap;
use std::io::Read;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::support::*;
use serde_json::Value;

const DOCTOR: &str = env!("CARGO_BIN_EXE_harbor-doctor");

/// What the lab's environment must name.
const LAB_ENV: &[&str] = &[
    "KUBECONFIG",
    "HARBOR_NAMESPACE",
    "HARBOR_URL",
    "HARBOR_USERNAME",
    "HARBOR_PASSWORD",
    "HARBOR_CA_CERT",
    "HARBOR_DATABASE_URL",
    "HARBOR_DOCTOR_BACKUP_DIR",
    "DOCKER_CONFIG",
];

/// What it must leave out: the doctor finds Keycloak through the cluster,
/// as on a real Otomi installation.
const NOT_IN_LAB_ENV: &[&str] = &[
    "KEYCLOAK_URL",
    "KEYCLOAK_REALM",
    "KEYCLOAK_USERNAME",
    "KEYCLOAK_PASSWORD",
];

/// What the README's loop runs in the lab, in the order diagnose gives it:
/// the database first, then Harbor's configuration, then Kubernetes, then
/// one provisioning run for every team that drifted.
const LAB_NEXT_STEPS: &[&str] = &[
    "harbor-doctor fix oidc-conflict --user alice@example.com --yes",
    "harbor-doctor fix oidc-conflict --user bob@example.com --yes",
    "harbor-doctor fix cli-login --yes",
    "harbor-doctor fix multi-attach --yes",
    "harbor-doctor fix registry-strategy --yes",
    "harbor-doctor provision --team beta --team delta --team epsilon --team gamma --yes",
];

/// The lab binary with none of the doctor's variables set, so nothing of
/// the developer's own environment reaches it.
fn lab_command(args: &[&str]) -> Command {
    let mut cmd = bare_doctor_process();
    cmd.arg("lab").args(args);
    cmd
}

/// A stream read into a buffer by a thread, so the child never blocks on a
/// full pipe while the test waits for something else.
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Captured {
    fn spawn(mut from: impl Read + Send + 'static) -> Captured {
        let captured = Captured::default();
        let sink = captured.clone();
        std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            while let Ok(n) = from.read(&mut buf) {
                if n == 0 {
                    break;
                }
                sink.0.lock().unwrap().extend_from_slice(&buf[..n]);
            }
        });
        captured
    }

    fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap()).into_owned()
    }
}

/// A lab running in the background, as `harbor-doctor lab` in a terminal.
struct RunningLab {
    child: Child,
    stdout: Captured,
    stderr: Captured,
}

impl RunningLab {
    fn start(extra: &[&str]) -> RunningLab {
        let mut child = lab_command(extra)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("starting harbor-doctor lab");
        let stdout = Captured::spawn(child.stdout.take().unwrap());
        let stderr = Captured::spawn(child.stderr.take().unwrap());
        RunningLab {
            child,
            stdout,
            stderr,
        }
    }

    /// Waits until stderr shows `text`, failing with what was shown.
    fn wait_for(&mut self, text: &str) {
        let deadline = Instant::now() + Duration::from_secs(180);
        while !self.stderr.text().contains(text) {
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!(
                    "the lab ended ({status}) before showing {text:?}\n--- stderr\n{}",
                    self.stderr.text()
                );
            }
            assert!(
                Instant::now() < deadline,
                "the lab did not show {text:?} in time\n--- stderr\n{}",
                self.stderr.text()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn signal(&self, signal: i32) {
        unsafe { libc::kill(self.child.id() as i32, signal) };
    }

    /// Waits for the lab to exit and returns its exit code.
    fn wait(&mut self) -> i32 {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                // Let the reader threads drain the pipes.
                std::thread::sleep(Duration::from_millis(100));
                return status.code().expect("the lab exits, it is not killed");
            }
            assert!(
                Instant::now() < deadline,
                "the lab did not stop within 60 s of the signal\n--- stderr\n{}",
                self.stderr.text()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for RunningLab {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            self.signal(libc::SIGTERM);
            let _ = self.child.wait();
        }
    }
}

/// Undoes POSIX shell single-quoting: `'a'\''b'` is `a'b`.
fn unquote(value: &str) -> String {
    if !value.starts_with('\'') {
        return value.to_string();
    }
    value
        .split(r"'\''")
        .map(|part| part.trim_start_matches('\'').trim_end_matches('\''))
        .collect::<Vec<_>>()
        .join("'")
}

/// `export NAME=value` lines as a map, failing on any other line.
fn parse_exports(text: &str) -> BTreeMap<String, String> {
    text.lines()
        .map(|line| {
            let rest = line
                .strip_prefix("export ")
                .unwrap_or_else(|| panic!("not an export line: {line:?}\n{text}"));
            let (name, value) = rest.split_once('=').expect("NAME=value");
            (name.to_string(), unquote(value))
        })
        .collect()
}

/// The directory a line of stderr names after `marker`.
fn path_after(stderr: &str, marker: &str) -> PathBuf {
    let at = stderr
        .find(marker)
        .unwrap_or_else(|| panic!("stderr names no {marker:?}:\n{stderr}"));
    let rest = &stderr[at + marker.len()..];
    let end = rest.find(|c: char| c.is_whitespace()).unwrap_or(rest.len());
    PathBuf::from(rest[..end].trim_end_matches(['.', ',']))
}

/// The doctor with exactly the lab's environment.
fn doctor_in(env: &BTreeMap<String, String>, args: &[&str]) -> Output {
    let mut cmd = crate::support::bare_doctor();
    cmd.envs(env).env("HARBOR_DOCTOR_TIMEOUT", "60").args(args);
    cmd.output().unwrap()
}

fn subjects(doc: &Value, id: &str) -> Vec<String> {
    let mut v: Vec<String> = check(doc, id)["findings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["subject"].as_str().unwrap().to_string())
        .collect();
    v.sort();
    v
}

fn doctor_dir() -> PathBuf {
    Path::new(DOCTOR).parent().unwrap().to_path_buf()
}

#[test]
fn walk_from_every_known_issue_to_a_clean_diagnosis() {
    let mut lab = RunningLab::start(&[]);
    lab.wait_for("stop it with Ctrl-C");
    let err = lab.stderr.text();
    let exports = lab.stdout.text();
    let env = parse_exports(&exports);
    for var in LAB_ENV {
        assert!(
            env.get(*var).is_some_and(|v| !v.is_empty()),
            "the lab exports {var}:\n{exports}"
        );
    }
    for var in NOT_IN_LAB_ENV {
        assert!(
            !env.contains_key(*var),
            "the lab leaves {var} out:\n{exports}"
        );
    }
    assert!(env["HARBOR_URL"].starts_with("https://127.0.0.1:"));
    assert!(Path::new(&env["HARBOR_CA_CERT"]).is_file());
    assert!(Path::new(&env["KUBECONFIG"]).is_file());

    // The same lines in a file only its owner can read.
    let file = path_after(&err, "the same environment is in ");
    assert_eq!(std::fs::read_to_string(&file).unwrap(), exports);
    let mode = std::fs::metadata(&file).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600, "{}", file.display());
    let lab_dir = file.parent().unwrap().to_path_buf();

    // Every planted issue is found.
    let first = doctor_in(&env, &["diagnose", "-o", "json"]);
    assert_exit(&first, 1);
    let doc = json(&first);
    assert_eq!(check(&doc, "connectivity")["status"], "ok", "{doc:#}");
    assert_eq!(
        subjects(&doc, "oidc-users"),
        ["user alice@example.com", "user bob@example.com"]
    );
    assert_eq!(
        subjects(&doc, "multi-attach"),
        ["deployment harbor/harbor-registry"]
    );
    assert!(
        subjects(&doc, "registry-strategy").contains(&"deployment harbor/harbor-registry".into())
    );
    assert_eq!(subjects(&doc, "cli-login"), ["Harbor oidc_scope"]);
    assert_eq!(
        subjects(&doc, "teams"),
        ["team beta", "team delta", "team epsilon", "team gamma"]
    );

    // With only the kubeconfig (and Harbor's CA, since its certificate is
    // the lab's own), the doctor finds Harbor, the database and Keycloak
    // through the cluster: the same findings, the changed ids included.
    let through_cluster: BTreeMap<String, String> = env
        .iter()
        .filter(|(k, _)| ["KUBECONFIG", "HARBOR_CA_CERT"].contains(&k.as_str()))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    let o = doctor_in(&through_cluster, &["diagnose", "-o", "json"]);
    assert_exit(&o, 1);
    let found = json(&o);
    for id in CHECK_IDS {
        assert_eq!(
            subjects(&found, id),
            subjects(&doc, id),
            "{id} through the cluster"
        );
    }
    let o = doctor_in(&through_cluster, &["diagnose", "connectivity", "-v"]);
    assert_exit(&o, 0);
    for how in [
        "port-forward to pod harbor/harbor-database-0",
        "EXT_ENDPOINT in the core ConfigMap harbor/harbor-core",
        "(from Harbor's oidc_endpoint)",
        "keycloak/keycloak-initial-admin",
    ] {
        let said = format!("{}{}", stdout(&o), stderr(&o));
        assert!(said.contains(how), "{how}:\n{said}");
    }

    // The README's main job, run as it says for a real installation: its
    // quoted script with only the kubeconfig (and the lab's CA), so every
    // repair, not only diagnose, finds what it changes through the cluster.
    assert_jq_installed();
    let home = tempfile::tempdir().unwrap();
    let path = format!(
        "{}:{}",
        doctor_dir().display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let o = Command::new("sh")
        .args(["-ec", &readme_walk()])
        .env_clear()
        .envs(&through_cluster)
        .env("PATH", &path)
        .env("HOME", home.path())
        .env("HARBOR_DOCTOR_TIMEOUT", "60")
        .output()
        .unwrap();
    assert_exit(&o, 0);
    let out = stdout(&o);
    let ran: Vec<&str> = out
        .lines()
        .filter_map(|l| l.strip_prefix("+ "))
        .filter(|l| l.starts_with("harbor-doctor "))
        .collect();
    assert_eq!(ran, LAB_NEXT_STEPS, "{out}\n{}", stderr(&o));
    let o = doctor_in(&through_cluster, &["diagnose", "-o", "json"]);
    let doc = json(&o);
    assert_exit(&o, 0);
    assert_eq!(
        doc["summary"],
        serde_json::json!({"ok": 6, "warning": 0, "problem": 0, "skipped": 0, "error": 0}),
        "{doc:#}"
    );
    // Every repair that changed something kept its backup in the default
    // state directory, since nothing named another.
    let backups: Vec<String> =
        std::fs::read_dir(home.path().join(".local/state/harbor-doctor/backups"))
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
    for repair in [
        "-cli-login-",
        "-multi-attach-",
        "-oidc-conflict-alice_example.com",
        "-oidc-conflict-bob_example.com",
        "-registry-strategy-",
    ] {
        assert!(
            backups.iter().any(|b| b.contains(repair)),
            "no backup of {repair}: {backups:?}"
        );
    }

    // Ctrl-C stops it cleanly: exit 0, PostgreSQL stopped, files removed.
    lab.signal(libc::SIGINT);
    assert_eq!(lab.wait(), 0, "{}", lab.stderr.text());
    assert!(lab.stderr.text().contains("stopped"));
    assert!(!lab_dir.exists(), "{} is left behind", lab_dir.display());
    let pg_dir = std::env::temp_dir().join(format!("harbor-doctor-pg-{}", lab.child.id()));
    assert!(!pg_dir.exists(), "{} is left behind", pg_dir.display());
    let o = doctor_in(&env, &["diagnose", "connectivity", "-o", "json"]);
    assert_eq!(
        check(&json(&o), "connectivity")["status"],
        "problem",
        "nothing answers any more"
    );
}

#[test]
fn the_readme_walk_runs_in_the_lab_until_diagnose_is_clean() {
    assert_jq_installed();
    let o = lab_command(&["--", "sh", "-ec", &readme_walk()])
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .output()
        .unwrap();
    assert_exit(&o, 0);
    let out = stdout(&o);
    let mut at = 0;
    for step in LAB_NEXT_STEPS.iter().map(|s| format!("+ {s}")) {
        let step = step.as_str();
        assert_eq!(out.matches(step).count(), 1, "{step} once:\n{out}");
        let found = out.find(step).unwrap();
        assert!(found >= at, "{step} out of order:\n{out}");
        at = found;
    }
    assert_eq!(
        out.matches("+ harbor-doctor ").count(),
        LAB_NEXT_STEPS.len(),
        "nothing else was run:\n{out}"
    );
}

#[test]
fn a_command_runs_in_the_lab_with_the_doctor_on_path_and_its_exit_code_is_the_labs() {
    let o = lab_command(&[
        "--",
        "sh",
        "-c",
        r#"harbor-doctor diagnose cli-login -q >/dev/null; echo "diagnose=$?"
           echo "url=$HARBOR_URL"; echo "docker=$DOCKER_CONFIG"; exit 7"#,
    ])
    .env("PATH", "/usr/bin:/bin")
    .output()
    .unwrap();
    assert_exit(&o, 7);
    let out = stdout(&o);
    assert!(out.contains("diagnose=1"), "{out}\n{}", stderr(&o));
    assert!(out.contains("url=https://127.0.0.1:"), "{out}");
    assert!(
        !out.contains("export "),
        "with a command, stdout is the command's own:\n{out}"
    );
    let docker = out.lines().find_map(|l| l.strip_prefix("docker=")).unwrap();
    let lab_dir = Path::new(docker).parent().unwrap();
    assert!(!lab_dir.exists(), "{} is left behind", lab_dir.display());
    assert!(stderr(&o).contains("stopped"), "{}", stderr(&o));
}

#[test]
fn sigterm_reaches_the_command_and_the_lab_exits_as_it_did() {
    let mut lab = RunningLab::start(&["--", "sh", "-c", "echo ready >&2; exec sleep 120"]);
    lab.wait_for("ready");
    lab.signal(libc::SIGTERM);
    assert_eq!(lab.wait(), 128 + libc::SIGTERM, "{}", lab.stderr.text());
    assert!(lab.stderr.text().contains("stopped"));
}

#[test]
fn without_postgresql_binaries_it_names_the_package_to_install() {
    let empty = tempfile::tempdir().unwrap();
    let o = lab_command(&[])
        .env("HARBOR_DOCTOR_PG_BIN", empty.path())
        .output()
        .unwrap();
    assert_exit(&o, 3);
    assert!(
        stderr(&o).contains("apt-get install postgresql"),
        "{}",
        stderr(&o)
    );
    assert!(stdout(&o).is_empty(), "no environment without a lab");
}

/// In a terminal the planted issues wrap at its width between words, under
/// their dash (left to the terminal, "alice's" was cut in two); piped, as
/// in the walk test, each stays on one line for grep.
#[test]
fn in_a_terminal_the_planted_issues_wrap_between_words() {
    let mut cmd = lab_command(&["--", "true"]);
    cmd.env("LANG", "C.UTF-8");
    let (code, shown) = pty::in_terminal_of_width(cmd, 80);
    assert_eq!(code, 0, "{shown}");
    let list: Vec<&str> = shown
        .lines()
        .map(|l| l.trim_end_matches('\r'))
        .skip_while(|l| !l.ends_with("with these known issues:"))
        .skip(1)
        .take_while(|l| l.starts_with("  "))
        .collect();
    let items = list.iter().filter(|l| l.starts_with("  - ")).count();
    assert!(items >= 5, "the list of planted issues:\n{shown}");
    for line in &list {
        assert!(
            line.chars().count() <= 80,
            "{line:?} is wider than 80\n{shown}"
        );
        assert!(
            line.starts_with("  - ") || line.starts_with("    "),
            "{line:?}"
        );
    }
    let joined = list
        .iter()
        .map(|l| l.trim_start().trim_start_matches("- "))
        .collect::<Vec<_>>()
        .join(" ");
    assert!(
        joined.contains("mallory set alice's address as an unverified email"),
        "words stay whole: {joined}"
    );
}
