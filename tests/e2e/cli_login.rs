//! The docker-login (CLI secret) issue end to end: the doctor binary against
//! the simulated Harbor (configuration, registry token service, OIDC users
//! with CLI secrets) and the simulated Keycloak (realm lifespans).

use crate::support::pty;

use std::path::Path;
use std::time::Duration;

use crate::support::*;
use harbor_doctor_sim::harbor::{HarborEndpoint, HarborOptions, HarborSim};
use harbor_doctor_sim::keycloak::{KeycloakSim, RealmLifespans};
use serde_json::{json, Value};

const ADMIN_PW: &str = "AdminCanary-5e1d7c";
const KC_PW: &str = "KcCanary-93b0aa";
const CLI_SECRET: &str = "CliCanary-0d4f2e91";

async fn harbor(scope: &str) -> HarborEndpoint {
    let h = HarborSim::start_for_test(HarborOptions {
        admin_password: ADMIN_PW.into(),
        login_penalty: Duration::from_millis(50),
        ..HarborOptions::otomi(ISSUER)
    })
    .await
    .unwrap();
    h.set_config("oidc_scope", json!(scope));
    h
}

async fn keycloak() -> KeycloakSim {
    let kc = KeycloakSim::start("kc-admin", KC_PW).await.unwrap();
    kc.add_realm("otomi", RealmLifespans::otomi());
    kc
}

fn doctor_for(h: &HarborEndpoint, backups: &Path) -> assert_cmd::Command {
    let mut c = bare_doctor();
    c.env("HARBOR_URL", h.url())
        .env("HARBOR_PASSWORD", ADMIN_PW)
        .env("HARBOR_DOCTOR_BACKUP_DIR", backups)
        .env("HARBOR_DOCTOR_TIMEOUT", "20");
    c
}

fn with_keycloak(mut c: assert_cmd::Command, kc: &KeycloakSim) -> assert_cmd::Command {
    c.env("KEYCLOAK_URL", kc.url())
        .env("KEYCLOAK_USERNAME", "kc-admin")
        .env("KEYCLOAK_PASSWORD", KC_PW);
    c
}

fn token_requests_by(h: &HarborEndpoint, user: &str) -> usize {
    h.requests()
        .iter()
        .filter(|r| r.path == "/service/token" && r.username.as_deref() == Some(user))
        .count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_scope_without_offline_access_is_a_problem_explained_by_keycloak() {
    let h = harbor("openid,email").await;
    let kc = keycloak().await;
    let backups = tempfile::tempdir().unwrap();
    let o = run({
        let mut c = with_keycloak(doctor_for(&h, backups.path()), &kc);
        c.args(["diagnose", "cli-login", "-o", "json"]);
        c
    })
    .await;
    assert_exit(&o, 1);
    let c = only_check(&o);
    assert_eq!(c["id"], "cli-login");
    assert_eq!(c["status"], "problem");
    let f = &c["findings"][0];
    assert_eq!(f["severity"], "problem");
    assert_eq!(f["subject"], "Harbor oidc_scope");
    assert_eq!(f["runbook"], "cli-login");
    assert_eq!(f["repair"], "harbor-doctor fix cli-login");
    assert_eq!(f["evidence"]["oidc_scope"], "openid,email");
    assert_eq!(f["evidence"]["auth_mode"], "oidc_auth");
    assert_eq!(f["evidence"]["sso_session_idle_timeout_s"], 1800);
    let summary = f["summary"].as_str().unwrap();
    assert!(
        summary.contains("CLI secrets stop working 30 minutes after the user's last web login"),
        "{summary}"
    );
    assert_no_secret(&o, &[ADMIN_PW, KC_PW]);

    // The table names the runbook and the repair too.
    let o = run({
        let mut c = with_keycloak(doctor_for(&h, backups.path()), &kc);
        c.args(["diagnose", "cli-login", "-v"]);
        c
    })
    .await;
    assert_exit(&o, 1);
    assert!(stdout(&o).contains("harbor-doctor fix cli-login"));
    assert!(stdout(&o).contains("harbor-doctor runbook cli-login"));
    h.finish().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_scope_with_offline_access_is_healthy() {
    let h = harbor("openid,offline_access").await;
    let kc = keycloak().await;
    let backups = tempfile::tempdir().unwrap();
    let o = run({
        let mut c = with_keycloak(doctor_for(&h, backups.path()), &kc);
        c.args(["diagnose", "cli-login", "-o", "json"]);
        c
    })
    .await;
    assert_exit(&o, 0);
    assert_eq!(only_check(&o)["status"], "ok");
    // Without Keycloak the check still runs; -v says what it knows.
    let o = run({
        let mut c = doctor_for(&h, backups.path());
        c.args(["diagnose", "cli-login", "-v"]);
        c
    })
    .await;
    assert_exit(&o, 0);
    assert!(
        stdout(&o).contains("lifespans were not read"),
        "{}",
        stdout(&o)
    );
    h.finish().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn database_mode_has_nothing_to_check_and_no_harbor_means_skipped() {
    let h = HarborSim::start_for_test(HarborOptions {
        admin_password: ADMIN_PW.into(),
        ..HarborOptions::default()
    })
    .await
    .unwrap();
    let backups = tempfile::tempdir().unwrap();
    let o = run({
        let mut c = doctor_for(&h, backups.path());
        c.env("HARBOR_CLI_SECRET", CLI_SECRET).args([
            "diagnose",
            "cli-login",
            "--user",
            "alice",
            "-o",
            "json",
        ]);
        c
    })
    .await;
    assert_exit(&o, 0);
    assert_eq!(only_check(&o)["status"], "ok");
    assert_eq!(
        token_requests_by(&h, "alice"),
        0,
        "not tried outside OIDC mode"
    );

    let o = run({
        let mut c = doctor_for(&h, backups.path());
        c.args(["fix", "cli-login", "--yes"]);
        c
    })
    .await;
    assert_exit(&o, 3);
    assert!(stderr(&o).contains("db_auth"), "{}", stderr(&o));
    h.finish().await.unwrap();

    let o = run({
        let mut c = bare_doctor();
        c.args(["diagnose", "cli-login", "-o", "json"]);
        c
    })
    .await;
    assert_exit(&o, 3); // a check named, or every check, skipped: nothing answered
    let c = only_check(&o);
    assert_eq!(c["status"], "skipped");
    assert!(c["reason"].as_str().unwrap().contains("--harbor-url"));
    let o = run({
        let mut c = bare_doctor();
        c.args(["fix", "cli-login", "--yes"]);
        c
    })
    .await;
    assert_exit(&o, 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_working_cli_secret_is_tried_once_and_never_shown() {
    let h = harbor("openid").await;
    h.add_oidc_user("alice", CLI_SECRET, &["team-demo"]);
    let kc = keycloak().await;
    let backups = tempfile::tempdir().unwrap();
    let o = run({
        let mut c = with_keycloak(doctor_for(&h, backups.path()), &kc);
        c.env("HARBOR_CLI_SECRET", CLI_SECRET).args([
            "diagnose",
            "cli-login",
            "--user",
            "alice",
            "-o",
            "json",
            "-vvv",
        ]);
        c
    })
    .await;
    // The secret works now; the scope is still a problem for later.
    assert_exit(&o, 1);
    let c = only_check(&o);
    let findings = c["findings"].as_array().unwrap();
    assert_eq!(findings.len(), 1, "{c:#}");
    assert_eq!(findings[0]["subject"], "Harbor oidc_scope");
    assert_eq!(token_requests_by(&h, "alice"), 1);
    assert!(
        stderr(&o).contains("using Harbor at"),
        "-vvv logs everything, so the canary is looked for in every log line"
    );
    assert_no_secret(&o, &[CLI_SECRET, ADMIN_PW, KC_PW]);

    // The table says so in words.
    let o = run({
        let mut c = doctor_for(&h, backups.path());
        c.env("HARBOR_CLI_SECRET", CLI_SECRET).args([
            "diagnose",
            "cli-login",
            "--user",
            "alice",
            "-v",
        ]);
        c
    })
    .await;
    assert!(
        stdout(&o).contains("alice's CLI secret works now"),
        "{}",
        stdout(&o)
    );
    assert_no_secret(&o, &[CLI_SECRET, ADMIN_PW]);
    h.finish().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_cli_secret_is_explained_then_fixed_for_good() {
    let h = harbor("openid").await;
    h.add_oidc_user("alice", CLI_SECRET, &["team-demo"]);
    h.end_idp_session("alice");
    let kc = keycloak().await;
    let backups = tempfile::tempdir().unwrap();

    // The secret arrives on stdin (not a terminal), as a script would give it.
    let o = run({
        let mut c = with_keycloak(doctor_for(&h, backups.path()), &kc);
        c.write_stdin(format!("{CLI_SECRET}\n")).args([
            "diagnose",
            "cli-login",
            "--user",
            "alice",
            "-o",
            "json",
        ]);
        c
    })
    .await;
    assert_exit(&o, 1);
    let c = only_check(&o);
    let user = c["findings"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["subject"] == "user alice")
        .unwrap_or_else(|| panic!("a finding for alice: {c:#}"));
    let summary = user["summary"].as_str().unwrap();
    assert!(summary.contains("rejected"), "{summary}");
    assert!(summary.contains("lacks offline_access"), "{summary}");
    assert!(summary.contains("30 minutes"), "{summary}");
    // The scope finding carries the repair; this one names it, since the
    // user must also log in to the web UI before the secret works again.
    assert!(user["repair"].is_null(), "{user:#}");
    assert!(summary.contains("harbor-doctor fix cli-login"), "{summary}");
    assert_eq!(user["evidence"]["token_service"], "401 Unauthorized");
    assert_eq!(token_requests_by(&h, "alice"), 1, "tried once only");
    assert_eq!(h.failed_logins("alice"), 1);
    assert_no_secret(&o, &[CLI_SECRET, ADMIN_PW, KC_PW]);

    // The repair: plan, backup of the old value, verify.
    let o = run({
        let mut c = doctor_for(&h, backups.path());
        c.args(["fix", "cli-login", "--yes", "-o", "json", "-vvv"]);
        c
    })
    .await;
    assert_exit(&o, 0);
    let doc = json(&o);
    assert_eq!(doc["repair"], "cli-login");
    assert_eq!(doc["applied"], true);
    assert_eq!(doc["verified"], true);
    assert_eq!(doc["plan"][0]["target"], "Harbor configuration oidc_scope");
    assert_eq!(
        doc["plan"][0]["detail"],
        "\"openid\" -> \"openid,offline_access\""
    );
    assert_eq!(
        h.config_value("oidc_scope"),
        Some(json!("openid,offline_access"))
    );
    let backup = doc["backup"].as_str().unwrap().to_string();
    let saved: Value = serde_json::from_str(&std::fs::read_to_string(&backup).unwrap()).unwrap();
    assert_eq!(
        saved["items"],
        json!([{"system": "harbor-config", "key": "oidc_scope", "value": "openid",
                "after": "openid,offline_access"}])
    );
    assert_no_secret(&o, &[ADMIN_PW]);

    // After one web login the secret outlives the Keycloak session.
    h.oidc_web_login("alice");
    h.end_idp_session("alice");
    let o = run({
        let mut c = with_keycloak(doctor_for(&h, backups.path()), &kc);
        c.env("HARBOR_CLI_SECRET", CLI_SECRET).args([
            "diagnose",
            "cli-login",
            "--user",
            "alice",
            "-o",
            "json",
        ]);
        c
    })
    .await;
    assert_exit(&o, 0);
    assert_eq!(only_check(&o)["status"], "ok");

    // Running the fix again has nothing to do.
    let o = run({
        let mut c = doctor_for(&h, backups.path());
        c.args(["fix", "cli-login", "--yes"]);
        c
    })
    .await;
    assert_exit(&o, 0);
    assert!(stderr(&o).contains("already asks for offline_access"));
    h.finish().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_offline_access_a_rejected_secret_points_at_the_secret_itself() {
    let h = harbor("openid,offline_access").await;
    h.add_oidc_user("bob", "TheRealSecret-1", &[]);
    let backups = tempfile::tempdir().unwrap();
    let o = run({
        let mut c = doctor_for(&h, backups.path());
        c.env("HARBOR_CLI_SECRET", CLI_SECRET).args([
            "diagnose",
            "cli-login",
            "--user",
            "bob",
            "-o",
            "json",
        ]);
        c
    })
    .await;
    assert_exit(&o, 1);
    let f = &only_check(&o)["findings"][0];
    assert_eq!(f["subject"], "user bob");
    assert!(f["summary"]
        .as_str()
        .unwrap()
        .contains("not the current one"));
    assert!(f["repair"].is_null(), "no scope change would help");
    assert_no_secret(&o, &[CLI_SECRET, ADMIN_PW]);
    h.finish().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_cli_secret_at_all_is_refused() {
    let h = harbor("openid").await;
    let backups = tempfile::tempdir().unwrap();
    let o = run({
        let mut c = doctor_for(&h, backups.path());
        c.args(["diagnose", "cli-login", "--user", "alice"]);
        c
    })
    .await;
    assert_exit(&o, 3);
    assert!(stderr(&o).contains("HARBOR_CLI_SECRET"), "{}", stderr(&o));
    assert_eq!(token_requests_by(&h, "alice"), 0);
    h.finish().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_fix_asks_first_and_restore_puts_the_scope_back() {
    let h = harbor("openid,email").await;
    let backups = tempfile::tempdir().unwrap();

    // No terminal and no --yes: nothing changes (exit 4); a dry run neither.
    for args in [
        vec!["fix", "cli-login"],
        vec!["fix", "cli-login", "--dry-run"],
    ] {
        let o = run({
            let mut c = doctor_for(&h, backups.path());
            c.args(&args);
            c
        })
        .await;
        assert_exit(&o, if args.len() == 2 { 4 } else { 0 });
        assert!(stdout(&o).contains("\"openid,email\" -> \"openid,email,offline_access\""));
        assert_eq!(h.config_value("oidc_scope"), Some(json!("openid,email")));
    }
    assert!(backups_in(backups.path()).is_empty());

    let o = run({
        let mut c = doctor_for(&h, backups.path());
        c.args(["fix", "cli-login", "--yes"]);
        c
    })
    .await;
    assert_exit(&o, 0);
    assert_eq!(
        h.config_value("oidc_scope"),
        Some(json!("openid,email,offline_access"))
    );
    let backup = backups_in(backups.path()).pop().unwrap();
    assert!(backup
        .file_name()
        .unwrap()
        .to_string_lossy()
        .ends_with("-cli-login-oidc_scope.json"));

    // Restore plans like a repair, then puts the old value back exactly.
    let o = run({
        let mut c = doctor_for(&h, backups.path());
        c.args(["restore", backup.to_str().unwrap(), "--dry-run"]);
        c
    })
    .await;
    assert_exit(&o, 0);
    assert!(
        stdout(&o).contains("\"openid,email,offline_access\" -> \"openid,email\""),
        "{}",
        stdout(&o)
    );
    let o = run({
        let mut c = doctor_for(&h, backups.path());
        c.args(["restore", backup.to_str().unwrap(), "--yes", "-o", "json"]);
        c
    })
    .await;
    assert_exit(&o, 0);
    let doc = json(&o);
    assert_eq!(doc["verified"], true);
    assert_eq!(h.config_value("oidc_scope"), Some(json!("openid,email")));
    // The restore kept what it replaced, so it can be undone too.
    let undo: Value =
        serde_json::from_str(&std::fs::read_to_string(doc["backup"].as_str().unwrap()).unwrap())
            .unwrap();
    assert_eq!(
        undo["items"],
        json!([{"system": "harbor-config", "key": "oidc_scope", "value": "openid,email,offline_access",
                "after": "openid,email"}])
    );

    // Nothing left to restore.
    let o = run({
        let mut c = doctor_for(&h, backups.path());
        c.args(["restore", backup.to_str().unwrap(), "--yes"]);
        c
    })
    .await;
    assert_exit(&o, 0);
    assert!(stderr(&o).contains("nothing to do"), "{}", stderr(&o));
    h.finish().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restore_refuses_to_undo_a_later_change() {
    // Someone (an operator, a person in the UI) changed the scope again
    // after the fix: putting the backup's value back would undo their
    // change too, so restore shows the difference and changes nothing.
    let h = harbor("openid").await;
    let backups = tempfile::tempdir().unwrap();
    let o = run({
        let mut c = doctor_for(&h, backups.path());
        c.args(["fix", "cli-login", "--yes"]);
        c
    })
    .await;
    assert_exit(&o, 0);
    let backup = backups_in(backups.path()).pop().unwrap();
    h.set_config("oidc_scope", json!("openid,profile"));
    let o = run({
        let mut c = doctor_for(&h, backups.path());
        c.args(["restore", backup.to_str().unwrap(), "--yes"]);
        c
    })
    .await;
    assert_exit(&o, 3);
    let err = stderr(&o);
    assert!(
        err.contains("now \"openid,profile\", but the repair left \"openid,offline_access\""),
        "{err}"
    );
    assert_eq!(h.config_value("oidc_scope"), Some(json!("openid,profile")));
    assert_eq!(backups_in(backups.path()).len(), 1, "no restore backup");
    h.finish().await.unwrap();
}

/// A cluster for the operator checks, and a kubeconfig for it.
async fn cluster(
    operator_replicas: Option<i32>,
) -> (harbor_doctor_sim::k8s::KubeSim, tempfile::TempDir) {
    let kube = harbor_doctor_sim::k8s::KubeSim::start().await.unwrap();
    if let Some(replicas) = operator_replicas {
        kube.put(json!({
            "apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": "apl-harbor-operator", "namespace": "apl-harbor-operator"},
            "spec": {
                "replicas": replicas,
                "selector": {"matchLabels": {"app": "apl-harbor-operator"}},
                "template": {
                    "metadata": {"labels": {"app": "apl-harbor-operator"}},
                    "spec": {"containers": [{"name": "operator", "image": "linode/apl-tasks"}]}
                }
            }
        }))
        .unwrap();
    }
    let dir = tempfile::tempdir().unwrap();
    kube.write_kubeconfig(&dir.path().join("kubeconfig"), kube.admin_token())
        .unwrap();
    (kube, dir)
}

fn with_cluster(mut c: assert_cmd::Command, dir: &tempfile::TempDir) -> assert_cmd::Command {
    c.arg("--kubeconfig").arg(dir.path().join("kubeconfig"));
    c
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn otomis_operator_means_the_scope_fix_would_not_last() {
    let h = harbor("openid").await;
    let (kube, kubeconfig) = cluster(Some(1)).await;
    let backups = tempfile::tempdir().unwrap();
    let o = run({
        let mut c = with_cluster(doctor_for(&h, backups.path()), &kubeconfig);
        c.args(["diagnose", "cli-login", "-o", "json"]);
        c
    })
    .await;
    assert_exit(&o, 1);
    let f = &only_check(&o)["findings"][0];
    assert_eq!(f["subject"], "Harbor oidc_scope");
    assert_eq!(
        f["evidence"]["operator"],
        "deployment apl-harbor-operator/apl-harbor-operator"
    );
    assert!(
        f["repair"].is_null(),
        "the scope fix would be undone: {f:#}"
    );
    let summary = f["summary"].as_str().unwrap();
    assert!(summary.contains("undone within a minute"), "{summary}");
    assert!(summary.contains("linode/apl-tasks"), "{summary}");
    assert!(
        summary.contains("harbor-doctor docker-login --team <id>"),
        "{summary}"
    );

    // The fix still runs when asked, but warns first.
    let o = run({
        let mut c = with_cluster(doctor_for(&h, backups.path()), &kubeconfig);
        c.args(["fix", "cli-login", "--yes"]);
        c
    })
    .await;
    assert_exit(&o, 0);
    assert!(
        stderr(&o).contains("warning: Otomi's Harbor operator"),
        "{}",
        stderr(&o)
    );
    assert_eq!(
        h.config_value("oidc_scope"),
        Some(json!("openid,offline_access"))
    );
    kube.shutdown();
    h.finish().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_running_operator_the_fix_is_offered() {
    let h = harbor("openid").await;
    let backups = tempfile::tempdir().unwrap();
    // Absent, and scaled to zero.
    for replicas in [None, Some(0)] {
        let (kube, kubeconfig) = cluster(replicas).await;
        let o = run({
            let mut c = with_cluster(doctor_for(&h, backups.path()), &kubeconfig);
            c.args(["diagnose", "cli-login", "-o", "json"]);
            c
        })
        .await;
        assert_exit(&o, 1);
        let f = &only_check(&o)["findings"][0];
        assert_eq!(f["evidence"]["operator"], "none", "{replicas:?}");
        assert_eq!(f["repair"], "harbor-doctor fix cli-login");
        kube.shutdown();
    }
    h.finish().await.unwrap();
}

/// The CLI secret typed at the hidden prompt in a pseudo-terminal: it is
/// asked for before the checks start, never echoed, and tried once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cli_secret_can_be_typed_at_a_hidden_prompt() {
    let h = harbor("openid,offline_access").await;
    h.add_oidc_user("alice", CLI_SECRET, &[]);
    let url = h.url();
    let shown = tokio::task::spawn_blocking(move || {
        let mut cmd = bare_doctor_process();
        cmd.env("HARBOR_URL", url)
            .env("HARBOR_PASSWORD", ADMIN_PW)
            .env("NO_COLOR", "1")
            .env("TERM", "xterm")
            .args(["diagnose", "cli-login", "--user", "alice", "-v"]);
        pty::in_terminal(cmd, &[("CLI secret of alice", CLI_SECRET)])
    })
    .await
    .unwrap();
    let (code, shown) = shown;
    assert_eq!(code, 0, "{shown}");
    assert!(shown.contains("alice's CLI secret works now"), "{shown}");
    assert!(
        !shown.contains(CLI_SECRET),
        "the secret was echoed:\n{shown}"
    );
    assert_eq!(token_requests_by(&h, "alice"), 1);
    h.finish().await.unwrap();
}
