//! Keycloak found the way an Otomi cluster lays it out, with no
//! `--keycloak-*` option: the URL and realm from Harbor's oidc_endpoint, the
//! admin login from the Secret keycloak/keycloak-initial-admin. Each way it
//! can fail is a connectivity problem that says what to give, plus
//! oidc-users' coverage warning (exit 1), never an error and never "ok".

use crate::support::k8s::Cluster;
use crate::support::*;
use base64::Engine;
use harbor_doctor_sim::k8s::PolicyRule;
use harbor_doctor_sim::keycloak::{KeycloakSim, RealmLifespans};
use serde_json::{json, Value};

const KC_ADMIN: &str = "kc-admin";
const KC_PASSWORD: &str = "Kc-Discovery-Canary-8181";

struct World {
    reg: Registry,
    kc: KeycloakSim,
    cluster: Cluster,
}

/// alice, whose Keycloak id changed: only visible when Keycloak is compared.
async fn world() -> World {
    let reg = Registry::new().await;
    let kc = KeycloakSim::start(KC_ADMIN, KC_PASSWORD).await.unwrap();
    kc.add_realm("otomi", RealmLifespans::otomi());
    let issuer = kc.issuer("otomi");
    reg.sql
        .execute(
            "UPDATE properties SET v = $1 WHERE k = 'oidc_endpoint'",
            &[&issuer],
        )
        .await
        .unwrap();
    kc.add_user_verified(
        "otomi",
        "alice",
        Some("alice@example.com"),
        true,
        "00000000-0000-4000-8000-00000000a11c",
    );
    reg.oidc_user("alice", "the-old-sub", &issuer).await;
    let cluster = Cluster::start().await;
    World { reg, kc, cluster }
}

impl World {
    fn put_admin_secret(&self, username: &str, password: &str) {
        let b64 = base64::engine::general_purpose::STANDARD;
        self.cluster
            .sim
            .put(json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "keycloak"}}))
            .unwrap();
        self.cluster
            .sim
            .put(json!({
                "apiVersion": "v1", "kind": "Secret", "type": "Opaque",
                "metadata": {"name": "keycloak-initial-admin", "namespace": "keycloak"},
                "data": {"username": b64.encode(username), "password": b64.encode(password)},
            }))
            .unwrap();
    }

    async fn diagnose(&self, mut cmd: assert_cmd::Command) -> (std::process::Output, Value) {
        cmd.env("HARBOR_DATABASE_URL", &self.reg.db.url).args([
            "diagnose",
            "connectivity",
            "oidc-users",
            "-o",
            "json",
        ]);
        let o = run(cmd).await;
        let doc = json(&o);
        assert_no_secret(&o, &[KC_PASSWORD, &self.reg.db.password]);
        (o, doc)
    }
}

fn findings<'a>(doc: &'a Value, check: &str) -> Vec<&'a Value> {
    doc["checks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["id"] == check)
        .unwrap_or_else(|| panic!("no check {check}: {doc:#}"))["findings"]
        .as_array()
        .unwrap()
        .iter()
        .collect()
}

fn summaries(doc: &Value, check: &str) -> String {
    findings(doc, check)
        .iter()
        .map(|f| f["summary"].as_str().unwrap_or_default().to_string())
        .collect::<Vec<_>>()
        .join("\n")
}

/// Discovery failed: connectivity names the cause, oidc-users says it did
/// not compare, and alice's changed id stays unseen (not called healthy).
#[track_caller]
fn assert_not_compared(o: &std::process::Output, doc: &Value, cause: &str) {
    assert_exit(o, 1);
    let connectivity = summaries(doc, "connectivity");
    assert!(connectivity.contains(cause), "{cause}: {doc:#}");
    // Last, after whatever else the check could see.
    let users = findings(doc, "oidc-users");
    let coverage = users.last().expect("a coverage warning");
    assert_eq!(coverage["subject"], "coverage: Keycloak", "{doc:#}");
    assert_eq!(coverage["severity"], "warning");
    assert_eq!(coverage["repair"], Value::Null);
    assert!(
        coverage["summary"].as_str().unwrap().contains(cause),
        "{cause}: {doc:#}"
    );
    assert!(
        users.iter().all(|f| f["subject"] != "user alice"
            || f["evidence"]["stored_issuer"] != f["evidence"]["issuer"]),
        "alice's changed id cannot have been seen: {doc:#}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keycloak_is_found_from_oidc_endpoint_and_its_admin_secret() {
    let w = world().await;
    w.put_admin_secret(KC_ADMIN, KC_PASSWORD);
    let (o, doc) = w.diagnose(w.cluster.doctor()).await;
    assert_exit(&o, 1);
    assert_eq!(findings(&doc, "connectivity").len(), 0, "{doc:#}");
    let users = findings(&doc, "oidc-users");
    assert_eq!(users.len(), 1, "{doc:#}");
    assert_eq!(users[0]["subject"], "user alice");
    assert_eq!(
        users[0]["repair"],
        "harbor-doctor fix oidc-conflict --user alice"
    );
    // And the repair finds it the same way.
    let mut cmd = w.cluster.doctor();
    cmd.env("HARBOR_DATABASE_URL", &w.reg.db.url).args([
        "fix",
        "oidc-conflict",
        "--user",
        "alice",
        "--yes",
    ]);
    let o = run(cmd).await;
    assert_exit(&o, 0);
    assert_no_secret(&o, &[KC_PASSWORD]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_admin_secret_says_what_to_give() {
    let w = world().await;
    let (o, doc) = w.diagnose(w.cluster.doctor()).await;
    assert_not_compared(&o, &doc, "keycloak/keycloak-initial-admin does not exist");
    assert!(summaries(&doc, "connectivity").contains("--keycloak-username"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_admin_secret_it_may_not_read_names_the_opt_in_role() {
    let w = world().await;
    w.put_admin_secret(KC_ADMIN, KC_PASSWORD);
    // Everything but Secrets in namespace keycloak.
    let rules = vec![
        PolicyRule::new(&["get", "list"], &["*"], &["*"]).in_namespaces(&["harbor"]),
        PolicyRule::new(&["get", "list"], &[""], &["namespaces"]),
    ];
    let (o, doc) = w.diagnose(w.cluster.doctor_as("no-keycloak", rules)).await;
    assert_not_compared(&o, &doc, "403 Forbidden");
    assert!(
        summaries(&doc, "connectivity").contains("deploy/rbac-keycloak.yaml"),
        "{doc:#}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_admin_password_is_said_once_and_never_printed() {
    let w = world().await;
    w.put_admin_secret(KC_ADMIN, "not-the-password");
    let (o, doc) = w.diagnose(w.cluster.doctor()).await;
    assert_not_compared(&o, &doc, "rejected the admin credentials");
    assert_no_secret(&o, &["not-the-password"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_oidc_endpoint_that_is_no_realm_url_names_keycloak_url() {
    let w = world().await;
    w.put_admin_secret(KC_ADMIN, KC_PASSWORD);
    w.reg
        .sql
        .execute(
            "UPDATE properties SET v = 'https://login.example.com/oauth2' WHERE k = 'oidc_endpoint'",
            &[],
        )
        .await
        .unwrap();
    let (o, doc) = w.diagnose(w.cluster.doctor()).await;
    assert_not_compared(&o, &doc, "is not a Keycloak realm URL");
    assert!(summaries(&doc, "connectivity").contains("--keycloak-url"));
    // The options still override discovery.
    let mut cmd = w.cluster.doctor();
    cmd.env("KEYCLOAK_URL", w.kc.url());
    let (o, doc) = w.diagnose(cmd).await;
    assert_exit(&o, 1);
    assert_eq!(findings(&doc, "connectivity").len(), 0, "{doc:#}");
}
