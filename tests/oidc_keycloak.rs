//! The OIDC conflict with Keycloak in the loop: the users who will hit the
//! conflict are found before they log in, and `--all` relinks them all at once.

mod common;

use common::*;
use harbor_doctor_sim::keycloak::{KeycloakSim, RealmLifespans};
use serde_json::Value;

const KC_ADMIN: &str = "kc-admin";
const KC_PASSWORD: &str = "kc-Canary-Password-71";

struct World {
    reg: Registry,
    kc: KeycloakSim,
    backups: tempfile::TempDir,
}

/// Harbor users onboarded through Keycloak realm `otomi`, with Harbor's
/// oidc_endpoint set to the simulated Keycloak's issuer.
async fn world(users: &[&str]) -> World {
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
    for (i, name) in users.iter().enumerate() {
        let sub = format!("00000000-0000-4000-8000-{i:012}");
        kc.add_user("otomi", name, Some(&format!("{name}@example.com")), &sub);
        reg.oidc_user(name, &sub, &issuer).await;
    }
    World {
        reg,
        kc,
        backups: tempfile::tempdir().unwrap(),
    }
}

fn doctor_kc(w: &World) -> assert_cmd::Command {
    let mut c = doctor(&w.reg, w.backups.path());
    c.env("KEYCLOAK_URL", w.kc.url())
        .env("KEYCLOAK_USERNAME", KC_ADMIN)
        .env("KEYCLOAK_PASSWORD", KC_PASSWORD);
    c
}

fn json(o: &std::process::Output) -> Value {
    serde_json::from_slice(&o.stdout).unwrap_or_else(|e| panic!("not JSON ({e}):\n{}", stdout(o)))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keycloak_redeployed_every_user_found_and_relinked_in_one_transaction() {
    let names: Vec<String> = (0..150).map(|i| format!("user{i:03}")).collect();
    let refs: Vec<&str> = names.iter().map(String::as_str).collect();
    let w = world(&refs).await;
    let o = run({
        let mut c = doctor_kc(&w);
        c.args(["diagnose", "oidc-users", "-o", "json"]);
        c
    })
    .await;
    assert_exit(&o, 0);

    w.kc.redeploy("otomi");
    w.kc.clear_requests();
    let o = run({
        let mut c = doctor_kc(&w);
        c.args(["diagnose", "oidc-users", "-o", "json"]);
        c
    })
    .await;
    assert_exit(&o, 1);
    let doc = json(&o);
    let findings = doc["checks"][0]["findings"].as_array().unwrap();
    assert_eq!(findings.len(), 150);
    let f = findings
        .iter()
        .find(|f| f["subject"] == "user user007")
        .unwrap();
    assert_eq!(
        f["evidence"]["keycloak_sub"],
        w.kc.user_id("otomi", "user007").unwrap()
    );
    assert_eq!(
        f["evidence"]["stored_sub"],
        "00000000-0000-4000-8000-000000000007"
    );
    assert_eq!(
        f["repair"],
        "harbor-doctor fix oidc-conflict --user user007"
    );
    assert!(f["summary"]
        .as_str()
        .unwrap()
        .contains("Keycloak id changed"));
    // Keycloak's users are read in pages, once: not one request per user.
    let user_reads =
        w.kc.requests()
            .iter()
            .filter(|r| r.path.ends_with("/users"))
            .count();
    assert!(
        user_reads <= 2,
        "read Keycloak's users {user_reads} times for 150 users"
    );

    let o = run({
        let mut c = doctor_kc(&w);
        c.args(["fix", "oidc-conflict", "--all", "--yes", "-o", "json"]);
        c
    })
    .await;
    assert_exit(&o, 0);
    let doc = json(&o);
    assert_eq!(doc["plan"].as_array().unwrap().len(), 150);
    assert_eq!(doc["verified"], true);
    assert_eq!(
        backups_in(w.backups.path()).len(),
        1,
        "one backup for the whole run"
    );
    let issuer = w.kc.issuer("otomi");
    let uid: i32 = w
        .reg
        .sql
        .query_one(
            "SELECT user_id FROM harbor_user WHERE username = 'user042'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(
        w.reg.subiss_of(uid).await,
        vec![format!(
            "{}{issuer}",
            w.kc.user_id("otomi", "user042").unwrap()
        )]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn single_user_relink_learns_the_new_sub_from_keycloak() {
    let w = world(&["alice", "bob"]).await;
    // Only alice's account was re-created in Keycloak.
    w.kc.add_user(
        "otomi",
        "alice",
        Some("alice@example.com"),
        "11111111-2222-4333-8444-555555555555",
    );
    let o = run({
        let mut c = doctor_kc(&w);
        c.args(["fix", "oidc-conflict", "--user", "alice", "--yes"]);
        c
    })
    .await;
    assert_exit(&o, 0);
    let uid: i32 = w
        .reg
        .sql
        .query_one(
            "SELECT user_id FROM harbor_user WHERE username = 'alice'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(
        w.reg.subiss_of(uid).await,
        vec![format!(
            "11111111-2222-4333-8444-555555555555{}",
            w.kc.issuer("otomi")
        )]
    );
    // Nothing left to do the second time.
    let o = run({
        let mut c = doctor_kc(&w);
        c.args(["fix", "oidc-conflict", "--user", "alice", "--yes"]);
        c
    })
    .await;
    assert_exit(&o, 0);
    assert!(stderr(&o).contains("nothing to do"), "{}", stderr(&o));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn user_found_by_email_when_keycloak_knows_another_username() {
    let w = world(&[]).await;
    let issuer = w.kc.issuer("otomi");
    let carol = w.reg.oidc_user("carol", "old-carol-sub", &issuer).await;
    // Keycloak only knows her under a new username, with the same email.
    w.kc.add_user(
        "otomi",
        "carol.new",
        Some("carol@example.com"),
        "c0c0c0c0-0000-4000-8000-000000000000",
    );
    let o = run({
        let mut c = doctor_kc(&w);
        c.args(["diagnose", "oidc-users", "-o", "json"]);
        c
    })
    .await;
    assert_exit(&o, 1);
    let f = &json(&o)["checks"][0]["findings"][0];
    assert_eq!(f["subject"], "user carol");
    assert_eq!(f["evidence"]["matched_by"], "email");
    assert_eq!(
        f["evidence"]["keycloak_sub"],
        "c0c0c0c0-0000-4000-8000-000000000000"
    );
    let o = run({
        let mut c = doctor_kc(&w);
        c.args(["fix", "oidc-conflict", "--user", "carol", "--yes"]);
        c
    })
    .await;
    assert_exit(&o, 0);
    assert_eq!(
        w.reg.subiss_of(carol).await,
        vec![format!("c0c0c0c0-0000-4000-8000-000000000000{issuer}")]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_keycloak_password_is_exit_3_and_never_printed() {
    let w = world(&["alice"]).await;
    let canary = "Wrong-Canary-Secret-4242";
    let o = run({
        let mut c = doctor_kc(&w);
        c.env("KEYCLOAK_PASSWORD", canary)
            .args(["fix", "oidc-conflict", "--all", "--yes", "-vvv"]);
        c
    })
    .await;
    assert_exit(&o, 3);
    assert!(
        stderr(&o).contains("rejected the admin credentials"),
        "{}",
        stderr(&o)
    );
    for text in [stdout(&o), stderr(&o)] {
        assert!(!text.contains(canary), "the Keycloak password leaked");
        assert!(
            !text.contains(&w.reg.db.password),
            "the database password leaked"
        );
    }
    // In diagnose it is an error for that check (exit 3), not a crash.
    let o = run({
        let mut c = doctor_kc(&w);
        c.env("KEYCLOAK_PASSWORD", canary)
            .args(["diagnose", "oidc-users", "-o", "json", "-vvv"]);
        c
    })
    .await;
    assert_exit(&o, 3);
    assert_eq!(json(&o)["checks"][0]["status"], "error");
    assert!(!stderr(&o).contains(canary) && !stdout(&o).contains(canary));
}
