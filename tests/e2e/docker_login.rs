//! `docker-login` end to end: the team's Secret from the simulated Kubernetes
//! API server (read with the user's own, RBAC-limited token), one token
//! request to the simulated Harbor, and the docker CLI's config file or
//! credential helpers (fake helper programs: small shell scripts on PATH).

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::support::*;
use base64::Engine;
use harbor_doctor_sim::harbor::{HarborEndpoint, HarborOptions, HarborSim, RobotSeed};
use harbor_doctor_sim::k8s::{KubeSim, PolicyRule};
use serde_json::{json, Value};

const ROBOT_SECRET: &str = "RobotCanary7f3e91";
const PULL_SECRET: &str = "PullCanary2b8c04";
const BUILDS_SECRET: &str = "BuildsCanary5d1a77";
const USER_TOKEN: &str = "alice-token";

/// A team `demo` provisioned the way current Otomi does it: Harbor project
/// and robots, and the push, pull and builds Secrets in namespace team-demo.
struct Team {
    harbor: HarborEndpoint,
    kube: KubeSim,
    /// The registry host as the Secrets name it.
    host: String,
    push_user: String,
    pull_user: String,
    builds_user: String,
    dir: tempfile::TempDir,
}

fn b64(s: &str) -> String {
    base64::engine::general_purpose::STANDARD.encode(s)
}

fn dockerconfigjson(host: &str, user: &str, password: &str) -> String {
    b64(&json!({"auths": {host: {
        "username": user, "password": password, "auth": b64(&format!("{user}:{password}"))
    }}})
    .to_string())
}

impl Team {
    /// Harbor over HTTP, its registry host the address clients use (Prism's
    /// in the contract stage, so the token checks are validated too).
    async fn new() -> Team {
        let harbor = HarborSim::start_for_test(HarborOptions {
            login_penalty: Duration::from_millis(50),
            ..HarborOptions::otomi(ISSUER)
        })
        .await
        .unwrap();
        harbor.set_external_url(&harbor.url());
        Self::with_harbor(harbor).await
    }

    async fn with_harbor(harbor: HarborEndpoint) -> Team {
        harbor.add_project("team-demo", false);
        let push = harbor.add_robot(RobotSeed {
            secret: Some(ROBOT_SECRET.into()),
            ..RobotSeed::system("team-demo-push", "team-demo", &["pull", "push"])
        });
        let pull = harbor.add_robot(RobotSeed {
            secret: Some(PULL_SECRET.into()),
            ..RobotSeed::system("team-demo-pull", "team-demo", &["pull"])
        });
        let builds = harbor.add_robot(RobotSeed {
            secret: Some(BUILDS_SECRET.into()),
            ..RobotSeed::system("team-demo-builds", "team-demo", &["pull", "push"])
        });
        let push_user = harbor.robot_login_name(&push);
        let pull_user = harbor.robot_login_name(&pull);
        let builds_user = harbor.robot_login_name(&builds);
        let host =
            harbor_doctor::clients::docker_config::host_of_url(&harbor.external_url()).unwrap();

        let kube = KubeSim::start().await.unwrap();
        for (name, user, password) in [
            ("harbor-pushsecret", &push_user, ROBOT_SECRET),
            ("harbor-pullsecret", &pull_user, PULL_SECRET),
        ] {
            kube.put(json!({
                "apiVersion": "v1", "kind": "Secret",
                "metadata": {"name": name, "namespace": "team-demo"},
                "type": "kubernetes.io/dockerconfigjson",
                "data": {".dockerconfigjson": dockerconfigjson(&host, user, password)}
            }))
            .unwrap();
        }
        // The builds robot's Secret is Opaque, its docker config (with
        // Otomi's placeholder email) under config.json.
        let builds_config = b64(&json!({"auths": {&host: {
            "username": builds_user, "password": BUILDS_SECRET, "email": "not@val.id",
            "auth": b64(&format!("{builds_user}:{BUILDS_SECRET}"))
        }}})
        .to_string());
        kube.put(json!({
            "apiVersion": "v1", "kind": "Secret",
            "metadata": {"name": "harbor-pushsecret-builds", "namespace": "team-demo"},
            "type": "Opaque",
            "data": {"config.json": builds_config}
        }))
        .unwrap();
        // A team member may read the team's Secrets, and nothing else.
        kube.add_user(
            USER_TOKEN,
            "alice",
            vec![PolicyRule::new(&["get"], &[""], &["secrets"]).in_namespaces(&["team-demo"])],
        );
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("docker")).unwrap();
        std::fs::create_dir(dir.path().join("bin")).unwrap();
        let team = Team {
            harbor,
            kube,
            host,
            push_user,
            pull_user,
            builds_user,
            dir,
        };
        team.kube
            .write_kubeconfig(&team.kubeconfig(), USER_TOKEN)
            .unwrap();
        team
    }

    fn kubeconfig(&self) -> PathBuf {
        self.dir.path().join("kubeconfig")
    }

    fn config_path(&self) -> PathBuf {
        self.dir.path().join("docker/config.json")
    }

    fn bin(&self) -> PathBuf {
        self.dir.path().join("bin")
    }

    /// `harbor-doctor docker-login --team demo ARGS` as alice, with the
    /// fake helpers' directory first on PATH.
    fn doctor(&self, args: &[&str]) -> assert_cmd::Command {
        self.doctor_for("demo", args)
    }

    fn doctor_for(&self, team: &str, args: &[&str]) -> assert_cmd::Command {
        let mut c = bare_doctor();
        let path = format!(
            "{}:{}",
            self.bin().display(),
            std::env::var("PATH").unwrap_or_default()
        );
        c.env("DOCKER_CONFIG", self.dir.path().join("docker"))
            .env("HARBOR_URL", self.harbor.url())
            .env("HARBOR_DOCTOR_TIMEOUT", "20")
            .env("PATH", path)
            .arg("--kubeconfig")
            .arg(self.kubeconfig())
            .args(["docker-login", "--team", team])
            .args(args);
        c
    }

    fn write_config(&self, text: &str) {
        std::fs::write(self.config_path(), text).unwrap();
    }

    fn config(&self) -> String {
        std::fs::read_to_string(self.config_path()).unwrap()
    }

    /// A fake credential helper that keeps what `store` received in
    /// `<dir>/<name>.stored`.
    fn helper(&self, name: &str) -> PathBuf {
        let stored = self.dir.path().join(format!("{name}.stored"));
        let program = self.bin().join(format!("docker-credential-{name}"));
        std::fs::write(
            &program,
            format!(
                "#!/bin/sh\n[ \"$1\" = store ] || exit 9\ncat > '{}'\n",
                stored.display()
            ),
        )
        .unwrap();
        std::fs::set_permissions(&program, std::fs::Permissions::from_mode(0o755)).unwrap();
        stored
    }

    fn token_requests(&self, user: &str) -> usize {
        self.harbor
            .requests()
            .iter()
            .filter(|r| r.path == "/service/token" && r.username.as_deref() == Some(user))
            .count()
    }

    async fn finish(self) {
        self.kube.shutdown();
        self.harbor.finish().await.unwrap();
    }
}

/// Every byte of `old` is in `new`, around one inserted range.
#[track_caller]
fn assert_only_inserted(old: &str, new: &str) {
    let prefix = old
        .bytes()
        .zip(new.bytes())
        .take_while(|(a, b)| a == b)
        .count();
    let suffix = old
        .bytes()
        .rev()
        .zip(new.bytes().rev())
        .take_while(|(a, b)| a == b)
        .count();
    assert!(
        prefix + suffix >= old.len(),
        "other entries changed:\n--- before\n{old}\n--- after\n{new}"
    );
}

fn mode(path: &Path) -> u32 {
    std::fs::metadata(path).unwrap().permissions().mode() & 0o777
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writes_auths_leaving_other_registries_and_helpers_alone() {
    let team = Team::new().await;
    let before = "{\n\t\"auths\": {\n\t\t\"quay.io\": {\n\t\t\t\"auth\": \"cXVheTpwdw==\"\n\t\t}\n\t},\n\t\"credHelpers\": {\n\t\t\"123.dkr.ecr.eu-west-1.amazonaws.com\": \"ecr-login\"\n\t},\n\t\"psFormat\": \"table {{.Names}}\",\n\t\"x-unknown\": {\"kept\": [1, 2.50]}\n}";
    team.write_config(before);
    let o = run(team.doctor(&["-vvv"])).await;
    assert_exit(&o, 0);
    let after = team.config();
    assert_only_inserted(before, &after);
    let doc: Value = serde_json::from_str(&after).unwrap();
    assert_eq!(
        doc["auths"][&team.host]["auth"],
        b64(&format!("{}:{ROBOT_SECRET}", team.push_user))
    );
    assert_eq!(mode(&team.config_path()), 0o600);
    assert_eq!(team.token_requests(&team.push_user), 1, "tried once");
    assert!(stderr(&o).contains("Logged in to"), "{}", stderr(&o));
    assert_no_secret(&o, &[ROBOT_SECRET, PULL_SECRET]);
    team.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_config_is_created_and_json_output_says_where() {
    let team = Team::new().await;
    let o = run(team.doctor(&["--robot", "pull", "-o", "json"])).await;
    assert_exit(&o, 0);
    let doc: Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(doc["registry"], team.host);
    assert_eq!(doc["username"], team.pull_user);
    assert_eq!(doc["stored_in"], team.config_path().display().to_string());
    let config: Value = serde_json::from_str(&team.config()).unwrap();
    assert_eq!(
        config["auths"][&team.host]["auth"],
        b64(&format!("{}:{PULL_SECRET}", team.pull_user))
    );
    assert_eq!(mode(&team.config_path()), 0o600);
    assert_no_secret(&o, &[ROBOT_SECRET, PULL_SECRET]);
    team.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_creds_store_helper_receives_the_credentials_and_auths_is_untouched() {
    let team = Team::new().await;
    let before = "{\"auths\": {\"quay.io\": {}}, \"credsStore\": \"fake\"}\n";
    team.write_config(before);
    let stored = team.helper("fake");
    let o = run(team.doctor(&["-vvv"])).await;
    assert_exit(&o, 0);
    assert_eq!(team.config(), before, "the config file is not touched");
    let got: Value = serde_json::from_str(&std::fs::read_to_string(stored).unwrap()).unwrap();
    assert_eq!(
        got,
        json!({"ServerURL": team.host, "Username": team.push_user, "Secret": ROBOT_SECRET})
    );
    assert!(stderr(&o).contains("docker-credential-fake"));
    assert_no_secret(&o, &[ROBOT_SECRET, PULL_SECRET]);
    team.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cred_helpers_entry_for_the_host_wins_over_creds_store() {
    let team = Team::new().await;
    let before = json!({
        "credsStore": "desktop-not-installed",
        "credHelpers": {team.host.clone(): "teamhelper", "gcr.io": "gcloud"}
    })
    .to_string();
    team.write_config(&before);
    let stored = team.helper("teamhelper");
    let o = run(team.doctor(&[])).await;
    assert_exit(&o, 0);
    assert_eq!(team.config(), before);
    let got: Value = serde_json::from_str(&std::fs::read_to_string(stored).unwrap()).unwrap();
    assert_eq!(got["Username"], team.push_user);
    team.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_helper_program_is_refused_pointing_to_print() {
    let team = Team::new().await;
    let before = "{\"credsStore\": \"osxkeychain\"}";
    team.write_config(before);
    let o = run(team.doctor(&[])).await;
    assert_exit(&o, 3);
    let err = stderr(&o);
    assert!(err.contains("docker-credential-osxkeychain"), "{err}");
    assert!(err.contains("--print"), "{err}");
    assert_eq!(team.config(), before);
    assert_eq!(
        team.token_requests(&team.push_user),
        0,
        "refused before trying"
    );
    assert_no_secret(&o, &[ROBOT_SECRET, PULL_SECRET]);
    team.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_corrupt_config_is_refused_and_left_untouched() {
    let team = Team::new().await;
    let before = "{\"auths\": {\"quay.io\": {\"auth\": \"eDp5\"}},";
    team.write_config(before);
    std::fs::set_permissions(team.config_path(), std::fs::Permissions::from_mode(0o644)).unwrap();
    let o = run(team.doctor(&[])).await;
    assert_exit(&o, 3);
    assert!(stderr(&o).contains("not valid JSON"), "{}", stderr(&o));
    assert_eq!(team.config(), before);
    assert_eq!(mode(&team.config_path()), 0o644);
    assert_eq!(team.token_requests(&team.push_user), 0);
    team.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_forbidden_secret_read_names_the_permission() {
    let team = Team::new().await;
    // Bob may read Secrets, but only in his own team's namespace.
    team.kube.add_user(
        "bob-token",
        "bob",
        vec![PolicyRule::new(&["get"], &[""], &["secrets"]).in_namespaces(&["team-other"])],
    );
    team.kube
        .write_kubeconfig(&team.kubeconfig(), "bob-token")
        .unwrap();
    let before = "{}";
    team.write_config(before);
    let o = run(team.doctor(&[])).await;
    assert_exit(&o, 3);
    let err = stderr(&o);
    assert!(err.contains("get secrets in namespace team-demo"), "{err}");
    assert!(err.contains("403"), "{err}");
    assert_eq!(team.config(), before);
    team.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rejected_robot_credentials_store_nothing() {
    let team = Team::new().await;
    let robot = team.harbor.robot("team-demo-push").unwrap();
    team.harbor.set_robot_secret(robot.id, "SomethingElse9");
    let o = run(team.doctor(&["-vvv"])).await;
    assert_exit(&o, 3);
    assert!(stderr(&o).contains("rejected"), "{}", stderr(&o));
    assert!(stderr(&o).contains("provision --team demo"));
    assert!(!team.config_path().exists(), "nothing was written");
    assert_eq!(team.token_requests(&team.push_user), 1, "tried once only");
    assert_no_secret(&o, &[ROBOT_SECRET, PULL_SECRET]);
    team.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unprovisioned_team_and_no_cluster_are_refused() {
    let team = Team::new().await;
    // Carol may read Secrets in every namespace: the Secret is simply not there.
    team.kube.add_user(
        "carol-token",
        "carol",
        vec![PolicyRule::new(&["get"], &[""], &["secrets"])],
    );
    team.kube
        .write_kubeconfig(&team.kubeconfig(), "carol-token")
        .unwrap();
    let o = run(team.doctor_for("ghost", &[])).await;
    assert_exit(&o, 3);
    assert!(
        stderr(&o).contains("no Secret team-ghost/harbor-pushsecret"),
        "{}",
        stderr(&o)
    );
    assert!(stderr(&o).contains("provision --team ghost"));

    let o = run({
        let mut c = bare_doctor();
        c.env("DOCKER_CONFIG", team.dir.path().join("docker"))
            .env("HOME", team.dir.path())
            .args(["docker-login", "--team", "demo"]);
        c
    })
    .await;
    assert_exit(&o, 3);
    assert!(!team.config_path().exists());
    team.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dry_run_checks_but_stores_nothing() {
    let team = Team::new().await;
    let o = run(team.doctor(&["--dry-run"])).await;
    assert_exit(&o, 0);
    assert!(stderr(&o).contains("Dry run"), "{}", stderr(&o));
    assert!(!team.config_path().exists());
    assert_eq!(team.token_requests(&team.push_user), 1);
    team.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn https_registries_are_verified_with_the_given_ca() {
    // The registry host is the simulator's own HTTPS address, never Prism's.
    let team = Team::with_harbor(
        HarborSim::start_for_test(HarborOptions {
            tls: true,
            login_penalty: Duration::from_millis(50),
            ..HarborOptions::otomi(ISSUER)
        })
        .await
        .unwrap(),
    )
    .await;
    let ca = team.dir.path().join("ca.pem");
    std::fs::write(&ca, team.harbor.sim().ca_pem().unwrap()).unwrap();
    // No --harbor-url: docker talks to https://<host from the Secret>.
    let mut c = team.doctor(&[]);
    c.env_remove("HARBOR_URL");
    let o = run(c).await;
    assert_exit(&o, 3);
    assert!(
        stderr(&o).contains("certificate") || stderr(&o).contains("Certificate"),
        "an unknown CA is refused: {}",
        stderr(&o)
    );
    assert!(!team.config_path().exists());
    let mut c = team.doctor(&[]);
    c.env_remove("HARBOR_URL").env("HARBOR_CA_CERT", &ca);
    let o = run(c).await;
    assert_exit(&o, 0);
    assert!(team.config().contains(&team.host));
    team.finish().await;
}

/// The printed command line, run for real: kubectl against the simulated
/// cluster, base64, jq, and a fake `docker` that keeps what it was given.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_printed_command_logs_in_without_showing_the_password() {
    let team = Team::new().await;
    let o = run(team.doctor(&["--print", "-vvv"])).await;
    assert_exit(&o, 0);
    assert_no_secret(&o, &[ROBOT_SECRET, PULL_SECRET]);
    let command = stdout(&o).trim().to_string();
    assert!(command.contains("--password-stdin"), "{command}");
    assert!(
        command.contains(&format!("--username '{}'", team.push_user))
            || command.contains(&format!("--username {}", team.push_user)),
        "{command}"
    );
    assert!(!team.config_path().exists(), "--print writes nothing");

    let Some((password, args)) = run_printed(&team, command).await else {
        team.finish().await;
        return;
    };
    assert_eq!(password, ROBOT_SECRET);
    assert_eq!(
        args,
        format!(
            "login {} --username {} --password-stdin",
            team.host, team.push_user
        )
    );
    team.finish().await;
}

/// Runs a printed command line for real: kubectl against the simulated
/// cluster, base64, jq, and a fake `docker` that keeps what it was given.
/// Returns the password docker read and its arguments, or None (said on
/// stderr) where those tools are not installed.
async fn run_printed(team: &Team, command: String) -> Option<(String, String)> {
    let missing: Vec<&str> = ["kubectl", "jq", "base64", "sh"]
        .into_iter()
        .filter(|t| {
            !std::process::Command::new("sh")
                .args(["-c", &format!("command -v {t}")])
                .output()
                .map(|o| o.status.success())
                .unwrap_or(false)
        })
        .collect();
    if !missing.is_empty() {
        eprintln!("not running the printed command: {missing:?} not installed");
        return None;
    }
    let got = team.dir.path().join("docker-got");
    let fake_docker = team.bin().join("docker");
    std::fs::write(
        &fake_docker,
        format!(
            "#!/bin/sh\necho \"$@\" > '{0}.args'\ncat > '{0}'\n",
            got.display()
        ),
    )
    .unwrap();
    std::fs::set_permissions(&fake_docker, std::fs::Permissions::from_mode(0o755)).unwrap();
    let path = format!(
        "{}:{}",
        team.bin().display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let out = tokio::task::spawn_blocking(move || {
        std::process::Command::new("sh")
            .args(["-c", &command])
            .env("PATH", path)
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    Some((
        std::fs::read_to_string(&got).unwrap().trim().to_string(),
        std::fs::read_to_string(got.with_extension("args"))
            .unwrap()
            .trim()
            .to_string(),
    ))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_builds_robot_logs_in_from_its_opaque_secret() {
    let team = Team::new().await;
    let o = run(team.doctor(&["--robot", "builds", "-o", "json", "-vvv"])).await;
    assert_exit(&o, 0);
    assert_no_secret(&o, &[ROBOT_SECRET, PULL_SECRET, BUILDS_SECRET]);
    let doc: Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(doc["username"], team.builds_user);
    let config: Value = serde_json::from_str(&team.config()).unwrap();
    assert_eq!(
        config["auths"][&team.host]["auth"],
        b64(&format!("{}:{BUILDS_SECRET}", team.builds_user))
    );
    assert_eq!(team.token_requests(&team.builds_user), 1, "tried once");

    // The printed command reads config.json, not .dockerconfigjson.
    let o = run(team.doctor(&["--robot", "builds", "--print"])).await;
    assert_exit(&o, 0);
    assert_no_secret(&o, &[ROBOT_SECRET, PULL_SECRET, BUILDS_SECRET]);
    let command = stdout(&o).trim().to_string();
    assert!(command.contains("{.data.config\\.json}"), "{command}");
    if let Some((password, args)) = run_printed(&team, command).await {
        assert_eq!(password, BUILDS_SECRET);
        assert!(args.contains(&team.builds_user), "{args}");
    }

    // Written in the pull Secret's shape, it is refused, naming the key.
    team.kube
        .put(json!({
            "apiVersion": "v1", "kind": "Secret",
            "metadata": {"name": "harbor-pushsecret-builds", "namespace": "team-demo"},
            "type": "kubernetes.io/dockerconfigjson",
            "data": {".dockerconfigjson": dockerconfigjson(&team.host, &team.builds_user, BUILDS_SECRET)}
        }))
        .unwrap();
    let o = run(team.doctor(&["--robot", "builds"])).await;
    assert_exit(&o, 3);
    assert!(
        stderr(&o).contains("harbor-pushsecret-builds has no config.json key")
            && stderr(&o).contains("provision --team demo"),
        "{}",
        stderr(&o)
    );
    assert_no_secret(&o, &[ROBOT_SECRET, PULL_SECRET, BUILDS_SECRET]);
    team.finish().await;
}

// Files and helper processes the doctor does not control: each is bounded
// (regular files only, size caps, --timeout for helpers and what they
// start), and each refusal leaves the docker config as it was.

/// Generous: a regression fails here instead of hanging CI.
const TEST_BOUND: Duration = Duration::from_secs(120);

fn mkfifo(path: &Path) {
    let c = std::ffi::CString::new(path.as_os_str().as_encoded_bytes()).unwrap();
    assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0, "mkfifo");
}

/// Whether `pid` is gone: no such process, or a zombie (dead, waiting for
/// whoever adopted it to reap it).
fn gone(pid: i32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Err(_) => true,
        Ok(stat) => stat
            .rsplit_once(')')
            .map(|(_, rest)| rest.trim_start().starts_with('Z'))
            .unwrap_or(false),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_config_that_is_a_fifo_or_a_device_is_refused_without_hanging() {
    let team = Team::new().await;
    let path = team.config_path();
    mkfifo(&path);
    let fifo_ino = std::os::unix::fs::MetadataExt::ino(&std::fs::symlink_metadata(&path).unwrap());
    let mut c = team.doctor(&[]);
    c.timeout(TEST_BOUND);
    let o = run(c).await;
    assert_exit(&o, 3);
    let err = stderr(&o);
    assert!(
        err.contains("FIFO") && err.contains(&path.display().to_string()),
        "{err}"
    );
    let meta = std::fs::symlink_metadata(&path).unwrap();
    assert!(std::os::unix::fs::FileTypeExt::is_fifo(&meta.file_type()));
    assert_eq!(std::os::unix::fs::MetadataExt::ino(&meta), fifo_ino);

    std::fs::remove_file(&path).unwrap();
    std::os::unix::fs::symlink("/dev/zero", &path).unwrap();
    let mut c = team.doctor(&[]);
    c.timeout(TEST_BOUND);
    let o = run(c).await;
    assert_exit(&o, 3);
    assert!(stderr(&o).contains("character device"), "{}", stderr(&o));
    assert_eq!(std::fs::read_link(&path).unwrap(), Path::new("/dev/zero"));
    assert_eq!(team.token_requests(&team.push_user), 0, "refused first");
    team.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_oversized_config_is_refused_and_left_untouched() {
    let team = Team::new().await;
    // Valid JSON, just far larger than any docker config.
    let before = format!("{{\"x-padding\": \"{}\"}}", "a".repeat(5 << 20));
    team.write_config(&before);
    let o = run(team.doctor(&[])).await;
    assert_exit(&o, 3);
    assert!(stderr(&o).contains("larger than 4 MiB"), "{}", stderr(&o));
    assert!(team.config() == before, "the config changed");
    assert_eq!(team.token_requests(&team.push_user), 0);
    team.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hanging_helper_is_stopped_with_everything_it_started() {
    let team = Team::new().await;
    let before = "{\"credsStore\": \"stuck\"}";
    team.write_config(before);
    let pids = team.dir.path().join("pids");
    let program = team.bin().join("docker-credential-stuck");
    // The child keeps the helper's stdout and stderr open, as an agent it
    // starts would.
    std::fs::write(
        &program,
        format!(
            "#!/bin/sh\nsleep 100000 &\necho \"$$ $!\" > '{}.tmp'\nmv '{0}.tmp' '{0}'\nsleep 100000\n",
            pids.display()
        ),
    )
    .unwrap();
    std::fs::set_permissions(&program, std::fs::Permissions::from_mode(0o755)).unwrap();
    let mut c = team.doctor(&[]);
    c.env("HARBOR_DOCTOR_TIMEOUT", "5").timeout(TEST_BOUND);
    let o = run(c).await;
    assert_exit(&o, 3);
    assert!(
        stderr(&o).contains("did not finish within 5 s"),
        "{}",
        stderr(&o)
    );
    let pids: Vec<i32> = std::fs::read_to_string(&pids)
        .expect("the helper started")
        .split_whitespace()
        .map(|p| p.parse().unwrap())
        .collect();
    assert_eq!(pids.len(), 2);
    // SIGKILL was sent before the doctor exited; the kernel finishes it
    // on its own time, so look again for a while before calling it alive.
    for pid in &pids {
        let mut tries = 0;
        while !gone(*pid) && tries < 200 {
            tokio::time::sleep(Duration::from_millis(50)).await;
            tries += 1;
        }
        assert!(gone(*pid), "process {pid} of the helper is still running");
    }
    assert_eq!(team.config(), before);
    assert_no_secret(&o, &[ROBOT_SECRET, PULL_SECRET]);
    team.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_helper_echoing_its_input_encoded_never_shows_the_secret() {
    let team = Team::new().await;
    let before = "{\"credsStore\": \"echo\"}";
    team.write_config(before);
    let program = team.bin().join("docker-credential-echo");
    for (encoding, body) in [
        ("plain", "cat >&2"),
        ("base64, wrapped", "base64 >&2"),
        ("base64", "base64 | tr -d '\\n' >&2"),
        ("URL-safe base64", "base64 | tr -d '\\n=' | tr '+/' '-_'"),
        (
            "URL-encoded",
            "od -An -v -tx1 | tr -d ' \\n' | sed 's/../%&/g' >&2",
        ),
    ] {
        std::fs::write(
            &program,
            format!("#!/bin/sh\necho 'cannot store:' >&2\n{body}\nexit 1\n"),
        )
        .unwrap();
        std::fs::set_permissions(&program, std::fs::Permissions::from_mode(0o755)).unwrap();
        let mut c = team.doctor(&[]);
        c.timeout(TEST_BOUND);
        let o = run(c).await;
        assert_exit(&o, 3);
        assert!(
            stderr(&o).contains("docker-credential-echo refused to store the credentials (exit 1)"),
            "{encoding}: {}",
            stderr(&o)
        );
        assert_no_secret(&o, &[ROBOT_SECRET, PULL_SECRET]);
        for text in [stdout(&o), stderr(&o)] {
            assert_secret_absent(&text, ROBOT_SECRET);
        }
        assert_eq!(team.config(), before, "{encoding}");
    }
    team.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_kubeconfig_that_is_a_fifo_or_a_device_is_reported_without_hanging() {
    let team = Team::new().await;
    let fifo = team.dir.path().join("kube-fifo");
    mkfifo(&fifo);
    let zero = team.dir.path().join("kube-zero");
    std::os::unix::fs::symlink("/dev/zero", &zero).unwrap();
    // docker-login with --kubeconfig: refused before the docker config is
    // written.
    let mut c = bare_doctor();
    c.env("DOCKER_CONFIG", team.dir.path().join("docker"))
        .env("HARBOR_URL", team.harbor.url())
        .arg("--kubeconfig")
        .arg(&fifo)
        .args(["docker-login", "--team", "demo"])
        .timeout(TEST_BOUND);
    let o = run(c).await;
    assert_exit(&o, 3);
    assert!(
        stderr(&o).contains("kubeconfig") && stderr(&o).contains("FIFO"),
        "{}",
        stderr(&o)
    );
    assert!(!team.config_path().exists());
    // diagnose with KUBECONFIG listing a good file and a bad one.
    for bad in [&fifo, &zero] {
        let list = format!("{}:{}", team.kubeconfig().display(), bad.display());
        let mut c = bare_doctor();
        c.env("KUBECONFIG", &list)
            .env("HARBOR_DOCTOR_TIMEOUT", "20")
            .args(["diagnose", "connectivity", "-o", "json"])
            .timeout(TEST_BOUND);
        let o = run(c).await;
        assert_exit(&o, 1);
        let doc: Value = serde_json::from_slice(&o.stdout).unwrap();
        let cluster = doc["checks"][0]["findings"]
            .as_array()
            .unwrap()
            .iter()
            .find(|f| f["subject"] == "cluster")
            .unwrap_or_else(|| panic!("no cluster finding: {doc:#}"))
            .clone();
        let summary = cluster["summary"].as_str().unwrap();
        assert!(
            summary.contains(&bad.display().to_string()) && summary.contains("not a regular file"),
            "{summary}"
        );
    }
    assert!(!team.config_path().exists());
    team.finish().await;
}
