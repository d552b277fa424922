//! The OIDC conflict with Keycloak in the loop: the users who will hit the
//! conflict are found before they log in, and `--all` relinks them all at once.

use crate::support::*;
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
    reg.set_property("oidc_endpoint", &issuer).await;
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
async fn an_email_match_on_another_claim_is_weak_and_needs_new_sub() {
    // Harbor takes usernames from preferred_username here; Keycloak only
    // knows carol under a new username, with the same email. That is
    // evidence, not identity: no automatic repair.
    let w = world(&[]).await;
    let issuer = w.kc.issuer("otomi");
    let carol = w.reg.oidc_user("carol", "old-carol-sub", &issuer).await;
    let new_id = "c0c0c0c0-0000-4000-8000-000000000000";
    w.kc.add_user("otomi", "carol.new", Some("carol@example.com"), new_id);
    let o = run({
        let mut c = doctor_kc(&w);
        c.args(["diagnose", "oidc-users", "-o", "json"]);
        c
    })
    .await;
    assert_exit(&o, 1);
    let f = &json(&o)["checks"][0]["findings"][0];
    assert_eq!(f["subject"], "user carol");
    assert_eq!(f["repair"], Value::Null);
    assert_eq!(f["evidence"]["keycloak_candidates"][0]["id"], new_id);
    assert!(f["summary"].as_str().unwrap().contains("carol.new"), "{f}");
    let before = w.reg.snapshot().await;
    for args in [
        &["fix", "oidc-conflict", "--user", "carol", "--yes"][..],
        &["fix", "oidc-conflict", "--all", "--yes"][..],
    ] {
        let o = run({
            let mut c = doctor_kc(&w);
            c.args(args);
            c
        })
        .await;
        let code = o.status.code();
        assert!(code == Some(3) || code == Some(0), "{}", stderr(&o));
        assert!(
            stderr(&o).contains("carol.new"),
            "names the candidate: {}",
            stderr(&o)
        );
        assert_eq!(
            w.reg.snapshot().await,
            before,
            "nothing changed for {args:?}"
        );
    }
    // With the subject checked by a person, --new-sub relinks.
    let o = run({
        let mut c = doctor_kc(&w);
        c.args([
            "fix",
            "oidc-conflict",
            "--user",
            "carol",
            "--new-sub",
            new_id,
            "--yes",
        ]);
        c
    })
    .await;
    assert_exit(&o, 0);
    assert_eq!(
        w.reg.subiss_of(carol).await,
        vec![format!("{new_id}{issuer}")]
    );
}

/// A world where Harbor takes usernames from the email claim, as Otomi
/// sets it.
async fn email_claim_world() -> World {
    let w = world(&[]).await;
    w.reg.set_property("oidc_user_claim", "email").await;
    w
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unverified_look_alike_never_gets_the_account() {
    let w = email_claim_world().await;
    let issuer = w.kc.issuer("otomi");
    let alice = w
        .reg
        .oidc_user("alice@example.com", "alice-old-sub", &issuer)
        .await;
    let project = w.reg.add_project("alice-project", alice).await;
    w.reg.add_member(project, alice, 1).await;
    let true_id = "a11ce000-0000-4000-8000-000000000001";
    let mallory_id = "ba5e0000-0000-4000-8000-000000000666";
    // Keycloak redeployed: alice's account came back with a new id and a
    // verified email; mallory set alice's address as an unverified email.
    w.kc.add_user_verified(
        "otomi",
        "mallory",
        Some("alice@example.com"),
        false,
        mallory_id,
    );
    w.kc.add_user_verified("otomi", "alice", Some("alice@example.com"), true, true_id);
    let o = run({
        let mut c = doctor_kc(&w);
        c.args(["diagnose", "oidc-users", "-o", "json"]);
        c
    })
    .await;
    assert_exit(&o, 1);
    let f = &json(&o)["checks"][0]["findings"][0];
    assert_eq!(f["evidence"]["keycloak_user"]["id"], true_id, "{f}");
    assert_eq!(f["evidence"]["keycloak_user"]["email_verified"], true);
    assert!(f["evidence"]["matched_by"]
        .as_str()
        .unwrap()
        .contains("verified email"));
    assert!(
        f["summary"]
            .as_str()
            .unwrap()
            .contains("Keycloak user alice"),
        "{f}"
    );
    let o = run({
        let mut c = doctor_kc(&w);
        c.args(["fix", "oidc-conflict", "--all", "--yes"]);
        c
    })
    .await;
    assert_exit(&o, 0);
    assert!(
        stdout(&o).contains(&format!("Keycloak user alice (id {true_id}")),
        "{}",
        stdout(&o)
    );
    assert_eq!(
        w.reg.subiss_of(alice).await,
        vec![format!("{true_id}{issuer}")]
    );
    assert!(!stdout(&o).contains(mallory_id) || stdout(&o).contains("Left alone"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_an_unverified_email_is_never_relinked() {
    let w = email_claim_world().await;
    let issuer = w.kc.issuer("otomi");
    w.reg
        .oidc_user("bob@example.com", "bob-old-sub", &issuer)
        .await;
    let bobby = "b0b00000-0000-4000-8000-000000000002";
    w.kc.add_user_verified("otomi", "bobby", Some("bob@example.com"), false, bobby);
    let o = run({
        let mut c = doctor_kc(&w);
        c.args(["diagnose", "oidc-users", "-o", "json"]);
        c
    })
    .await;
    assert_exit(&o, 1);
    let f = &json(&o)["checks"][0]["findings"][0];
    assert_eq!(f["repair"], Value::Null);
    assert_eq!(
        f["evidence"]["keycloak_candidates"][0]["email_verified"],
        false
    );
    let before = w.reg.snapshot().await;
    let o = run({
        let mut c = doctor_kc(&w);
        c.args(["fix", "oidc-conflict", "--all", "--yes"]);
        c
    })
    .await;
    assert_exit(&o, 0);
    assert!(
        stderr(&o).contains("Left alone: bob@example.com"),
        "{}",
        stderr(&o)
    );
    assert_eq!(w.reg.snapshot().await, before);
    let o = run({
        let mut c = doctor_kc(&w);
        c.args(["fix", "oidc-conflict", "--user", "bob@example.com", "--yes"]);
        c
    })
    .await;
    assert_exit(&o, 3);
    assert!(stderr(&o).contains("NOT verified"), "{}", stderr(&o));
    assert_eq!(w.reg.snapshot().await, before);
    assert!(backups_in(w.backups.path()).is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn new_sub_is_refused_when_keycloak_contradicts_or_cannot_confirm_it() {
    let w = world(&["carol", "dave"]).await;
    let dave_id = w.kc.user_id("otomi", "dave").unwrap();
    let before = w.reg.snapshot().await;
    let cases: [(&str, String, &str); 2] = [
        ("dave's id", dave_id, "contradicts Keycloak"),
        (
            "an unknown id",
            "f00f0000-0000-4000-8000-000000000000".into(),
            "has no user with id",
        ),
    ];
    for (what, sub, expect) in cases {
        let o = run({
            let mut c = doctor_kc(&w);
            c.args([
                "fix",
                "oidc-conflict",
                "--user",
                "carol",
                "--new-sub",
                &sub,
                "--yes",
            ]);
            c
        })
        .await;
        assert_exit(&o, 3);
        assert!(stderr(&o).contains(expect), "{what}: {}", stderr(&o));
        assert_eq!(w.reg.snapshot().await, before, "{what}: nothing changed");
    }
    // Keycloak configured but down: --new-sub cannot be checked, so no.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", closed.local_addr().unwrap());
    drop(closed);
    let o = run({
        let mut c = doctor_kc(&w);
        c.env("KEYCLOAK_URL", &url).args([
            "fix",
            "oidc-conflict",
            "--user",
            "carol",
            "--new-sub",
            "f00f0000-0000-4000-8000-000000000000",
            "--yes",
        ]);
        c
    })
    .await;
    assert_exit(&o, 3);
    assert!(stderr(&o).contains("not reachable"), "{}", stderr(&o));
    assert_eq!(w.reg.snapshot().await, before);
    assert!(backups_in(w.backups.path()).is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn paging_is_bounded_by_keycloaks_own_count() {
    // More than two pages: paging through works...
    let names: Vec<String> = (0..1100).map(|i| format!("u{i:04}")).collect();
    let refs: Vec<&str> = names.iter().map(String::as_str).collect();
    let w = world(&refs).await;
    w.kc.redeploy("otomi");
    let o = run({
        let mut c = doctor_kc(&w);
        c.args(["diagnose", "oidc-users", "-o", "json"]);
        c
    })
    .await;
    assert_exit(&o, 1);
    assert_eq!(
        json(&o)["checks"][0]["findings"].as_array().unwrap().len(),
        1100
    );
    // ...and a Keycloak that ignores `first` stops the loop with an error.
    w.kc.ignore_paging(true);
    let before = w.reg.snapshot().await;
    // diagnose says, as a coverage warning, that Keycloak could not be
    // compared (exit 1); the repair refuses (exit 3).
    for (args, code) in [
        (&["diagnose", "oidc-users"][..], 1),
        (&["fix", "oidc-conflict", "--all", "--yes"][..], 3),
    ] {
        let o = run({
            let mut c = doctor_kc(&w);
            c.args(args);
            c
        })
        .await;
        assert_exit(&o, code);
        assert!(
            stdout(&o).contains("repeats itself") || stderr(&o).contains("repeats itself"),
            "{}{}",
            stdout(&o),
            stderr(&o)
        );
    }
    assert_eq!(w.reg.snapshot().await, before);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redirect_never_carries_the_admin_password_elsewhere() {
    let w = world(&["alice"]).await;
    let elsewhere = KeycloakSim::start("someone", "else").await.unwrap();
    w.kc.redirect_token_to(Some(elsewhere.url()));
    let o = run({
        let mut c = doctor_kc(&w);
        c.args(["diagnose", "oidc-users"]);
        c
    })
    .await;
    // A coverage warning that names the redirect: not compared, not healthy.
    assert_exit(&o, 1);
    assert!(
        stdout(&o).contains("redirect") || stderr(&o).contains("redirect"),
        "{}",
        stdout(&o)
    );
    assert!(
        elsewhere.requests().is_empty(),
        "{:?}",
        elsewhere.requests()
    );
    assert_no_secret(&o, &[KC_PASSWORD]);
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
    assert_no_secret(&o, &[canary, &w.reg.db.password]);
    // In diagnose, oidc-users says it could not compare with Keycloak and
    // why (a warning, exit 1), and connectivity reports the refused login
    // as a problem; the login is tried once per check, not in a loop.
    w.kc.clear_requests();
    let o = run({
        let mut c = doctor_kc(&w);
        c.env("KEYCLOAK_PASSWORD", canary).args([
            "diagnose",
            "oidc-users",
            "connectivity",
            "-o",
            "json",
            "-vvv",
        ]);
        c
    })
    .await;
    assert_exit(&o, 1);
    let doc = json(&o);
    let users = &doc["checks"][0];
    assert_eq!(users["status"], "warning", "{doc:#}");
    let coverage = users["findings"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["subject"] == "coverage: Keycloak")
        .expect("a coverage warning");
    assert!(
        coverage["summary"]
            .as_str()
            .unwrap()
            .contains("rejected the admin credentials"),
        "{doc:#}"
    );
    assert_eq!(coverage["repair"], Value::Null);
    assert_eq!(doc["checks"][1]["status"], "problem", "{doc:#}");
    let tokens =
        w.kc.requests()
            .iter()
            .filter(|r| r.path.ends_with("/protocol/openid-connect/token"))
            .count();
    assert!(
        tokens <= 2,
        "one login per Keycloak client, no retry loop: {tokens}"
    );
    assert_no_secret(&o, &[canary]);
}
