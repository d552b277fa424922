//! The OIDC conflicting-user issue end to end: the doctor binary against a
//! real PostgreSQL holding Harbor's schema.

use crate::support::*;
use serde_json::Value;
use std::os::unix::fs::PermissionsExt;

const NEW_SUB: &str = "9b1d2c3e-0000-4000-8000-00000000abcd";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn issuer_change_is_found_and_relinked_then_restored() {
    let reg = Registry::new().await;
    let alice = reg.oidc_user("alice", "a-sub", OLD_ISSUER).await;
    let bob = reg.oidc_user("bob", "b-sub", ISSUER).await;
    let p = reg.add_project("team-a", alice).await;
    reg.add_member(p, alice, 1).await;
    let backups = tempfile::tempdir().unwrap();

    let o = run_doctor(
        &reg,
        backups.path(),
        &["diagnose", "oidc-users", "-o", "json"],
    )
    .await;
    assert_exit(&o, 1);
    let doc = json(&o);
    let check = &doc["checks"][0];
    assert_eq!(check["id"], "oidc-users");
    assert_eq!(check["status"], "problem");
    let findings = check["findings"].as_array().unwrap();
    // Without Keycloak, changed ids cannot be seen, and the check says so
    // after what it found (DESIGN.md, honest coverage).
    assert_eq!(findings.len(), 2, "{doc:#}");
    assert_eq!(findings[1]["subject"], "coverage: Keycloak", "{doc:#}");
    assert_eq!(findings[1]["severity"], "warning");
    assert_eq!(findings[1]["repair"], serde_json::Value::Null);
    let f = &findings[0];
    assert_eq!(f["subject"], "user alice");
    assert_eq!(f["severity"], "problem");
    assert_eq!(f["runbook"], "oidc-conflict");
    assert_eq!(f["evidence"]["stored_sub"], "a-sub");
    assert_eq!(f["evidence"]["stored_issuer"], OLD_ISSUER);
    assert_eq!(f["evidence"]["issuer"], ISSUER);
    assert!(f["evidence"]["issuer_source"]
        .as_str()
        .unwrap()
        .contains("oidc_endpoint"));
    // Without Keycloak the new sub is unknown: no automatic repair, but the summary says what to do.
    assert!(f["repair"].is_null());
    assert!(f["summary"].as_str().unwrap().contains("--new-sub"));
    assert_eq!(doc["summary"]["problem"], 1);

    let before = reg.snapshot().await;
    let o = run_doctor(
        &reg,
        backups.path(),
        &[
            "fix",
            "oidc-conflict",
            "--user",
            "alice",
            "--new-sub",
            NEW_SUB,
            "--yes",
            "-o",
            "json",
        ],
    )
    .await;
    assert_exit(&o, 0);
    let doc = json(&o);
    assert_eq!(doc["repair"], "oidc-conflict");
    assert_eq!(doc["applied"], true);
    assert_eq!(doc["verified"], true);
    assert_eq!(doc["plan"].as_array().unwrap().len(), 1);
    let backup = doc["backup"].as_str().unwrap().to_string();
    assert!(
        stderr(&o).contains(&backup),
        "the backup path is printed on stderr"
    );
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(
        std::fs::metadata(&backup).unwrap().permissions().mode() & 0o777,
        0o600
    );
    assert_eq!(
        reg.subiss_of(alice).await,
        vec![format!("{NEW_SUB}{ISSUER}")]
    );
    assert_eq!(
        reg.subiss_of(bob).await,
        vec![format!("b-sub{ISSUER}")],
        "bob is untouched"
    );
    // Memberships and ownership are kept.
    let n: i64 = reg
        .sql
        .query_one(
            "SELECT count(*) FROM project_member WHERE entity_id = $1",
            &[&alice],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(n, 1);

    // Fixed; what is left is the warning that, without Keycloak, changed
    // ids were not looked at.
    let o = run_doctor(
        &reg,
        backups.path(),
        &["diagnose", "oidc-users", "--fail-on", "problem"],
    )
    .await;
    assert_exit(&o, 0);

    // Restore puts the rows back exactly, update_time aside.
    let o = run_doctor(&reg, backups.path(), &["restore", &backup, "--yes"]).await;
    assert_exit(&o, 0);
    assert_eq!(reg.snapshot().await, before);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dry_run_and_missing_terminal_change_nothing() {
    let reg = Registry::new().await;
    reg.oidc_user("alice", "a-sub", OLD_ISSUER).await;
    let backups = tempfile::tempdir().unwrap();
    let before = reg.snapshot().await;

    let o = run_doctor(
        &reg,
        backups.path(),
        &[
            "fix",
            "oidc-conflict",
            "--user",
            "alice",
            "--new-sub",
            NEW_SUB,
            "--dry-run",
        ],
    )
    .await;
    assert_exit(&o, 0);
    assert!(
        stdout(&o).contains(&format!("sub: a-sub -> {NEW_SUB}"))
            && stdout(&o).contains(&format!("issuer: {OLD_ISSUER} -> {ISSUER}")),
        "the plan shows the new sub and issuer, apart:\n{}",
        stdout(&o)
    );
    assert_eq!(reg.snapshot().await, before);

    // No terminal (assert_cmd gives none) and no --yes: refused with 4.
    let o = run_doctor(
        &reg,
        backups.path(),
        &[
            "fix",
            "oidc-conflict",
            "--user",
            "alice",
            "--new-sub",
            NEW_SUB,
            "-o",
            "json",
        ],
    )
    .await;
    assert_exit(&o, 4);
    assert!(stderr(&o).contains("--yes"));
    assert_eq!(json(&o)["applied"], false);
    assert_eq!(reg.snapshot().await, before);
    assert!(
        backups_in(backups.path()).is_empty(),
        "no backup without a change"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn project_owner_cannot_be_hard_deleted_but_can_be_soft_deleted() {
    let reg = Registry::new().await;
    let carol = reg.oidc_user("carol", "c-sub", OLD_ISSUER).await;
    let p = reg.add_project("team-c", carol).await;
    reg.add_member(p, carol, 1).await;
    let lib = 1;
    reg.add_member(lib, carol, 2).await;
    let backups = tempfile::tempdir().unwrap();
    let before = reg.snapshot().await;

    let o = run_doctor(
        &reg,
        backups.path(),
        &[
            "fix",
            "oidc-conflict",
            "--user",
            "carol",
            "--strategy",
            "delete",
            "--yes",
        ],
    )
    .await;
    assert_exit(&o, 3);
    assert!(
        stderr(&o).contains("team-c"),
        "names the project: {}",
        stderr(&o)
    );
    assert_eq!(reg.snapshot().await, before);

    let o = run_doctor(
        &reg,
        backups.path(),
        &[
            "fix",
            "oidc-conflict",
            "--user",
            "carol",
            "--strategy",
            "soft-delete",
            "--yes",
        ],
    )
    .await;
    assert_exit(&o, 0);
    let r = reg
        .sql
        .query_one(
            "SELECT username, email, deleted FROM harbor_user WHERE user_id = $1",
            &[&carol],
        )
        .await
        .unwrap();
    assert_eq!(r.get::<_, String>(0), format!("carol#{carol}"));
    assert_eq!(r.get::<_, String>(1), format!("carol@example.com#{carol}"));
    assert!(r.get::<_, bool>(2));
    assert!(reg.subiss_of(carol).await.is_empty());
    let n: i64 = reg
        .sql
        .query_one(
            "SELECT count(*) FROM project_member WHERE entity_id = $1 AND entity_type = 'u'",
            &[&carol],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(n, 0);
    let owner: i32 = reg
        .sql
        .query_one("SELECT owner_id FROM project WHERE name = 'team-c'", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(owner, carol, "the project keeps its owner row");

    // A restore while a new "carol" has been onboarded since would clash.
    let backup = backups_in(backups.path()).pop().unwrap();
    reg.oidc_user("carol", "c-sub-new", ISSUER).await;
    let mid = reg.snapshot().await;
    let o = run({
        let mut c = doctor(&reg, backups.path());
        c.args(["restore"]).arg(&backup).arg("--yes");
        c
    })
    .await;
    assert_exit(&o, 3);
    assert!(stderr(&o).contains("clash"), "{}", stderr(&o));
    assert_eq!(reg.snapshot().await, mid);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hard_delete_removes_memberships_link_and_user() {
    let reg = Registry::new().await;
    let dave = reg.oidc_user("dave", "d-sub", OLD_ISSUER).await;
    reg.add_member(1, dave, 2).await;
    let backups = tempfile::tempdir().unwrap();
    let before = reg.snapshot().await;
    let o = run_doctor(
        &reg,
        backups.path(),
        &[
            "fix",
            "oidc-conflict",
            "--user",
            "dave",
            "--strategy",
            "delete",
            "--yes",
        ],
    )
    .await;
    assert_exit(&o, 0);
    let n: i64 = reg
        .sql
        .query_one(
            "SELECT count(*) FROM harbor_user WHERE user_id = $1",
            &[&dave],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(n, 0);
    let n: i64 = reg
        .sql
        .query_one(
            "SELECT count(*) FROM project_member WHERE entity_id = $1",
            &[&dave],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(n, 0);
    // And restore brings all three kinds of rows back.
    let backup = backups_in(backups.path()).pop().unwrap();
    let o = run({
        let mut c = doctor(&reg, backups.path());
        c.args(["restore"]).arg(&backup).arg("--yes");
        c
    })
    .await;
    assert_exit(&o, 0);
    assert_eq!(reg.snapshot().await, before);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn soft_deleted_user_with_leftover_link_is_cleaned() {
    let reg = Registry::new().await;
    let erin = reg
        .add_user("erin#9", Some("erin@example.com#9"), false)
        .await;
    reg.sql
        .execute(
            "UPDATE harbor_user SET deleted = true WHERE user_id = $1",
            &[&erin],
        )
        .await
        .unwrap();
    reg.link(erin, "e-sub", ISSUER).await;
    let backups = tempfile::tempdir().unwrap();

    let o = run_doctor(
        &reg,
        backups.path(),
        &["diagnose", "oidc-users", "-o", "json"],
    )
    .await;
    assert_exit(&o, 1);
    let doc = json(&o);
    let f = &doc["checks"][0]["findings"][0];
    assert_eq!(f["severity"], "warning");
    assert_eq!(
        f["repair"],
        "harbor-doctor fix oidc-conflict --user 'erin#9' --strategy soft-delete"
    );

    let o = run_doctor(
        &reg,
        backups.path(),
        &[
            "fix",
            "oidc-conflict",
            "--user",
            "erin#9",
            "--strategy",
            "soft-delete",
            "--yes",
        ],
    )
    .await;
    assert_exit(&o, 0);
    assert!(reg.subiss_of(erin).await.is_empty());
    let name: String = reg
        .sql
        .query_one(
            "SELECT username FROM harbor_user WHERE user_id = $1",
            &[&erin],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(
        name, "erin#9",
        "an already deleted user is not renamed twice"
    );
    // With --fail-on problem a warning-only diagnosis exits 0.
    let o = run_doctor(
        &reg,
        backups.path(),
        &["diagnose", "oidc-users", "--fail-on", "problem"],
    )
    .await;
    assert_exit(&o, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn guards_refuse_with_exit_3_and_change_nothing() {
    let reg = Registry::new().await;
    let root = reg.add_user("root", Some("root@example.com"), true).await;
    reg.link(root, "r-sub", OLD_ISSUER).await;
    reg.oidc_user("alice", "a-sub", OLD_ISSUER).await;
    let backups = tempfile::tempdir().unwrap();
    let before = reg.snapshot().await;
    let long_sub = "x".repeat(250);
    let cases: Vec<(Vec<&str>, &str)> = vec![
        (
            vec!["--user", "nobody", "--new-sub", NEW_SUB],
            "no user named",
        ),
        (vec!["--user", "admin", "--new-sub", NEW_SUB], "local admin"),
        (
            vec!["--user", "root", "--strategy", "delete"],
            "system administrator",
        ),
        (
            vec!["--user", "root", "--strategy", "soft-delete"],
            "system administrator",
        ),
        (
            vec!["--user", "alice", "--new-sub", ""],
            "--new-sub is empty",
        ),
        (
            vec!["--user", "alice", "--new-sub", "   "],
            "--new-sub is empty",
        ),
        (
            vec!["--user", "alice", "--new-sub", &long_sub],
            "at most 255",
        ),
        (
            vec!["--user", "alice"],
            "destructive repair is never the default",
        ),
        (
            vec!["--user", "alice", "--strategy", "relink"],
            "relink needs",
        ),
        (vec!["--all"], "needs Keycloak"),
    ];
    for (args, expect) in cases {
        let o = run({
            let mut c = doctor(&reg, backups.path());
            c.args(["fix", "oidc-conflict", "--yes"]).args(&args);
            c
        })
        .await;
        assert_exit(&o, 3);
        assert!(
            stderr(&o).contains(expect),
            "{args:?}: expected {expect:?} in:\n{}",
            stderr(&o)
        );
        assert_eq!(reg.snapshot().await, before, "{args:?} changed something");
    }
    // An OIDC sysadmin may be relinked.
    let o = run_doctor(
        &reg,
        backups.path(),
        &[
            "fix",
            "oidc-conflict",
            "--user",
            "root",
            "--new-sub",
            NEW_SUB,
            "--yes",
        ],
    )
    .await;
    assert_exit(&o, 0);
    assert_eq!(
        reg.subiss_of(root).await,
        vec![format!("{NEW_SUB}{ISSUER}")]
    );
    // Usage errors are 2.
    let o = run_doctor(&reg, backups.path(), &["fix", "oidc-conflict"]).await;
    assert_exit(&o, 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn usernames_full_of_quotes_and_sql_are_data() {
    let reg = Registry::new().await;
    let evil = r#"o'neil"; DROP TABLE harbor_user; --"#;
    let id = reg.add_user(evil, None, false).await;
    reg.link(id, "q-sub", OLD_ISSUER).await;
    let backups = tempfile::tempdir().unwrap();
    let o = run_doctor(
        &reg,
        backups.path(),
        &["diagnose", "oidc-users", "-o", "json"],
    )
    .await;
    assert_exit(&o, 1);
    assert_eq!(
        json(&o)["checks"][0]["findings"][0]["subject"],
        format!("user {evil}")
    );
    let o = run_doctor(
        &reg,
        backups.path(),
        &[
            "fix",
            "oidc-conflict",
            "--user",
            evil,
            "--new-sub",
            NEW_SUB,
            "--yes",
        ],
    )
    .await;
    assert_exit(&o, 0);
    assert_eq!(reg.subiss_of(id).await, vec![format!("{NEW_SUB}{ISSUER}")]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn other_findings_several_links_and_unlinked_users() {
    let reg = Registry::new().await;
    let frank = reg.oidc_user("frank", "f-sub", ISSUER).await;
    reg.link(frank, "f-sub-2", ISSUER).await;
    reg.add_user("local-bot", None, false).await;
    let backups = tempfile::tempdir().unwrap();
    let o = run_doctor(
        &reg,
        backups.path(),
        &["diagnose", "oidc-users", "-o", "json"],
    )
    .await;
    assert_exit(&o, 1);
    let doc = json(&o);
    let subjects: Vec<&str> = doc["checks"][0]["findings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["subject"].as_str().unwrap())
        .collect();
    assert!(subjects.contains(&"user frank"), "{subjects:?}");
    assert!(subjects.contains(&"user local-bot"), "{subjects:?}");
    assert_eq!(doc["checks"][0]["status"], "warning");
    // Outside OIDC mode a user without a link is normal.
    reg.set_property("auth_mode", "db_auth").await;
    let o = run_doctor(
        &reg,
        backups.path(),
        &["diagnose", "oidc-users", "-o", "json"],
    )
    .await;
    let doc = json(&o);
    assert!(!doc["checks"][0]["findings"]
        .as_array()
        .unwrap()
        .iter()
        .any(|f| f["subject"] == "user local-bot"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn issuer_option_wins_over_harbor_configuration() {
    let reg = Registry::new().await;
    reg.oidc_user("alice", "a-sub", ISSUER).await;
    let backups = tempfile::tempdir().unwrap();
    let o = run_doctor(
        &reg,
        backups.path(),
        &[
            "diagnose",
            "oidc-users",
            "-o",
            "json",
            "--issuer",
            OLD_ISSUER,
        ],
    )
    .await;
    assert_exit(&o, 1);
    let f = &json(&o)["checks"][0]["findings"][0];
    assert_eq!(f["evidence"]["issuer"], OLD_ISSUER);
    assert!(f["evidence"]["issuer_source"]
        .as_str()
        .unwrap()
        .contains("--issuer"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restore_refuses_a_truncated_or_edited_backup() {
    let reg = Registry::new().await;
    reg.oidc_user("alice", "a-sub", OLD_ISSUER).await;
    let backups = tempfile::tempdir().unwrap();
    relink_alice(&reg, backups.path()).await;
    let backup = backups_in(backups.path()).pop().unwrap();
    let text = std::fs::read_to_string(&backup).unwrap();
    let after_fix = reg.snapshot().await;
    let damaged = backups.path().join("damaged.json");
    for (bytes, expect) in [
        (text[..text.len() * 2 / 3].to_string(), "truncated"),
        (
            text.replace("a-sub", "b-sub"),
            "changed after harbor-doctor wrote it",
        ),
    ] {
        std::fs::write(&damaged, bytes).unwrap();
        std::fs::set_permissions(&damaged, std::fs::Permissions::from_mode(0o600)).unwrap();
        let o = run_doctor(
            &reg,
            backups.path(),
            &["restore", damaged.to_str().unwrap(), "--yes"],
        )
        .await;
        assert_exit(&o, 3);
        assert!(stderr(&o).contains(expect), "{}", stderr(&o));
        assert_eq!(reg.snapshot().await, after_fix, "nothing changed");
    }
}

// -- restore treats a backup file as untrusted input -------------------------

/// The newest backup in `dir`.
fn newest(dir: &std::path::Path) -> std::path::PathBuf {
    backups_in(dir).pop().expect("a backup")
}

async fn restore(
    reg: &Registry,
    backups: &std::path::Path,
    file: &std::path::Path,
    extra: &[&str],
) -> std::process::Output {
    let mut args = vec!["restore", file.to_str().unwrap()];
    args.extend_from_slice(extra);
    run_doctor(reg, backups, &args).await
}

async fn hard_delete_bob(reg: &Registry, backups: &std::path::Path) {
    let o = run_doctor(
        reg,
        backups,
        &[
            "fix",
            "oidc-conflict",
            "--user",
            "bob",
            "--strategy",
            "delete",
            "--yes",
        ],
    )
    .await;
    assert_exit(&o, 0);
}

async fn relink_alice(reg: &Registry, backups: &std::path::Path) {
    let o = run_doctor(
        reg,
        backups,
        &[
            "fix",
            "oidc-conflict",
            "--user",
            "alice",
            "--new-sub",
            NEW_SUB,
            "--yes",
        ],
    )
    .await;
    assert_exit(&o, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restore_puts_back_only_what_the_repair_changed_and_can_be_undone() {
    let reg = Registry::new().await;
    let alice = reg.oidc_user("alice", "a-sub", OLD_ISSUER).await;
    let backups = tempfile::tempdir().unwrap();
    relink_alice(&reg, backups.path()).await;
    let fix_backup = newest(backups.path());
    // After the fix alice logged in (Harbor rewrote her token) and an
    // admin set her password: restore must keep both.
    reg.sql
        .batch_execute(&format!(
            "UPDATE oidc_user SET token = '<enc-v1>bmV3LXRva2Vu' WHERE user_id = {alice};
             UPDATE harbor_user SET password = 'new-hash-0001', salt = 'new-salt-0001' WHERE user_id = {alice}"
        ))
        .await
        .unwrap();
    let o = restore(
        &reg,
        backups.path(),
        &fix_backup,
        &["--dry-run", "-o", "json"],
    )
    .await;
    assert_exit(&o, 0);
    let doc = json(&o);
    assert_eq!(doc["plan"].as_array().unwrap().len(), 1, "{doc}");
    assert!(
        doc["plan"][0]["detail"]
            .as_str()
            .unwrap()
            .starts_with("sub: 9b1d2c3e-0000-4000-8000-00000000abcd -> a-sub\nissuer: "),
        "the subject and the issuer apart: {doc}"
    );
    assert!(
        stderr(&o).contains("409"),
        "restore says it brings the conflict back: {}",
        stderr(&o)
    );
    let o = restore(&reg, backups.path(), &fix_backup, &["--yes"]).await;
    assert_exit(&o, 0);
    assert_eq!(
        reg.subiss_of(alice).await,
        vec![format!("a-sub{OLD_ISSUER}")]
    );
    let r = reg
        .sql
        .query_one(
            "SELECT u.password, u.salt, o.token FROM harbor_user u JOIN oidc_user o USING (user_id) WHERE user_id = $1",
            &[&alice],
        )
        .await
        .unwrap();
    assert_eq!(r.get::<_, String>(0), "new-hash-0001");
    assert_eq!(r.get::<_, String>(1), "new-salt-0001");
    assert_eq!(r.get::<_, String>(2), "<enc-v1>bmV3LXRva2Vu");
    // The restore's own backup undoes it.
    let o = restore(&reg, backups.path(), &newest(backups.path()), &["--yes"]).await;
    assert_exit(&o, 0);
    assert_eq!(
        reg.subiss_of(alice).await,
        vec![format!("{NEW_SUB}{ISSUER}")]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn undoing_a_restore_removes_the_rows_it_put_back_and_no_plan_shows_a_secret() {
    let reg = Registry::new().await;
    let bob = reg.oidc_user("bob", "b-sub", OLD_ISSUER).await;
    reg.sql
        .execute(
            "UPDATE harbor_user SET password = 'bob-hash-0002', salt = 'bob-salt-0002' WHERE user_id = $1",
            &[&bob],
        )
        .await
        .unwrap();
    let p = reg.add_project("team-b", 1).await;
    reg.add_member(p, bob, 2).await;
    let original = reg.snapshot().await;
    let backups = tempfile::tempdir().unwrap();
    hard_delete_bob(&reg, backups.path()).await;
    let deleted = reg.snapshot().await;
    let o = restore(
        &reg,
        backups.path(),
        &newest(backups.path()),
        &["--dry-run", "-o", "json"],
    )
    .await;
    assert_exit(&o, 0);
    let text = format!("{}{}", stdout(&o), stderr(&o));
    for secret in [
        "bob-hash-0002",
        "bob-salt-0002",
        "<enc-v1>",
        "c2VjcmV0",
        "dG9rZW4",
    ] {
        assert!(!text.contains(secret), "the plan shows {secret}:\n{text}");
    }
    assert_eq!(json(&o)["plan"].as_array().unwrap().len(), 3, "{text}");
    let o = restore(&reg, backups.path(), &newest(backups.path()), &["--yes"]).await;
    assert_exit(&o, 0);
    assert_eq!(
        reg.snapshot().await,
        original,
        "bob's rows are back exactly"
    );
    let o = restore(&reg, backups.path(), &newest(backups.path()), &["--yes"]).await;
    assert_exit(&o, 0);
    assert_eq!(
        reg.snapshot().await,
        deleted,
        "undoing the restore removed the rows it put back"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restore_refuses_a_genuine_backup_of_another_database() {
    let reg = Registry::new().await;
    reg.oidc_user("alice", "a-sub", OLD_ISSUER).await;
    let backups = tempfile::tempdir().unwrap();
    relink_alice(&reg, backups.path()).await;
    // Another installation where an unrelated user has the same user_id.
    let other = Registry::new().await;
    other.oidc_user("zoe", "z-sub", ISSUER).await;
    let before = other.snapshot().await;
    let o = restore(&other, backups.path(), &newest(backups.path()), &["--yes"]).await;
    assert_exit(&o, 3);
    assert!(
        stderr(&o).contains("another registry database"),
        "{}",
        stderr(&o)
    );
    assert_eq!(other.snapshot().await, before);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restore_refuses_files_that_are_shared_or_links() {
    use std::os::unix::fs::PermissionsExt;
    let reg = Registry::new().await;
    reg.oidc_user("alice", "a-sub", OLD_ISSUER).await;
    let backups = tempfile::tempdir().unwrap();
    relink_alice(&reg, backups.path()).await;
    let after = reg.snapshot().await;
    let elsewhere = tempfile::tempdir().unwrap();
    let shared = elsewhere.path().join("shared.json");
    std::fs::copy(newest(backups.path()), &shared).unwrap();
    std::fs::set_permissions(&shared, std::fs::Permissions::from_mode(0o644)).unwrap();
    let link = elsewhere.path().join("link.json");
    std::os::unix::fs::symlink(newest(backups.path()), &link).unwrap();
    for (file, expect) in [(&shared, "other users can read"), (&link, "symbolic link")] {
        let o = restore(&reg, backups.path(), file, &["--yes"]).await;
        assert_exit(&o, 3);
        assert!(stderr(&o).contains(expect), "{}", stderr(&o));
        assert_eq!(reg.snapshot().await, after);
    }
}

/// Seals `doc` with the key the doctors of these tests use (HOME is the
/// temporary directory): what only someone who can read the key could do.
fn seal_with_the_real_key(doc: &mut Value) {
    use hmac::{Hmac, Mac};
    let key_path = std::env::temp_dir().join(".local/state/harbor-doctor/backup-seal.key");
    let key = hex::decode(std::fs::read_to_string(key_path).unwrap().trim()).unwrap();
    doc.as_object_mut().unwrap().remove("seal");
    let mut mac = Hmac::<sha2::Sha256>::new_from_slice(&key).unwrap();
    mac.update(&serde_json::to_vec(doc).unwrap());
    doc["seal"] = format!("hmac-sha256:{}", hex::encode(mac.finalize().into_bytes())).into();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn even_a_sealed_backup_cannot_reach_beyond_its_repair() {
    use std::os::unix::fs::PermissionsExt;
    let reg = Registry::new().await;
    let alice = reg.oidc_user("alice", "a-sub", OLD_ISSUER).await;
    let backups = tempfile::tempdir().unwrap();
    relink_alice(&reg, backups.path()).await;
    let genuine: Value =
        serde_json::from_str(&std::fs::read_to_string(newest(backups.path())).unwrap()).unwrap();
    let row = |id: i32| {
        let sql = &reg.sql;
        async move {
            let v: Value = sql
                .query_one(
                    "SELECT row_to_json(t)::jsonb FROM harbor_user t WHERE user_id = $1",
                    &[&id],
                )
                .await
                .unwrap()
                .get(0);
            v
        }
    };
    let alice_row = row(alice).await;
    let admin_row = row(1).await;
    let mut forged_password = alice_row.clone();
    forged_password["password"] = "attacker-hash".into();
    forged_password["sysadmin_flag"] = true.into();
    let mut renamed_admin = admin_row.clone();
    renamed_admin["email"] = "attacker@example.com".into();
    let before = reg.snapshot().await;
    for (items, expect) in [
        (
            serde_json::json!([{"system": "registry-db", "table": "harbor_user", "key": alice,
                                "before": forged_password, "after": alice_row}]),
            "never changes",
        ),
        (
            serde_json::json!([{"system": "registry-db", "table": "harbor_user", "key": 1,
                                "before": renamed_admin, "after": admin_row}]),
            "local admin",
        ),
        (
            serde_json::json!([{"system": "registry-db", "table": "properties", "key": 1,
                                "before": {"id": 1, "k": "oidc_endpoint", "v": "https://evil"},
                                "after": {"id": 1, "k": "oidc_endpoint", "v": ISSUER}}]),
            "which never does that",
        ),
    ] {
        let mut doc = genuine.clone();
        doc["items"] = items;
        seal_with_the_real_key(&mut doc);
        let file = backups.path().join("forged.json");
        std::fs::write(&file, serde_json::to_vec(&doc).unwrap()).unwrap();
        std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o600)).unwrap();
        let o = restore(&reg, backups.path(), &file, &["--yes"]).await;
        assert_exit(&o, 3);
        assert!(stderr(&o).contains(expect), "{}", stderr(&o));
        assert_eq!(reg.snapshot().await, before);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_database_error_inside_restore_is_a_certain_rollback() {
    use std::os::unix::fs::PermissionsExt;
    let reg = Registry::new().await;
    reg.oidc_user("bob", "b-sub", OLD_ISSUER).await;
    let backups = tempfile::tempdir().unwrap();
    hard_delete_bob(&reg, backups.path()).await;
    // Within the repair's scope, but its link names a user that is gone
    // for good: the foreign key refuses the insert inside the transaction.
    let mut doc: Value =
        serde_json::from_str(&std::fs::read_to_string(newest(backups.path())).unwrap()).unwrap();
    let items = doc["items"].as_array_mut().unwrap();
    items.retain(|i| i["table"] == "oidc_user");
    items[0]["before"]["user_id"] = 424242.into();
    seal_with_the_real_key(&mut doc);
    let file = backups.path().join("dangling.json");
    std::fs::write(&file, serde_json::to_vec(&doc).unwrap()).unwrap();
    std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o600)).unwrap();
    let before = reg.snapshot().await;
    let o = restore(&reg, backups.path(), &file, &["--yes"]).await;
    assert_exit(&o, 3);
    let err = stderr(&o);
    assert!(
        err.contains("foreign key") && err.contains("rolled back, so nothing was changed"),
        "{err}"
    );
    assert_eq!(reg.snapshot().await, before);
}
