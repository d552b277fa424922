//! Faults during the OIDC conflict repair: each gets a clear message, the
//! exit code from DESIGN.md, and no change (or, for a COMMIT whose answer
//! never came, an honest "unknown" and the backup kept).


use std::net::SocketAddr;

use crate::support::*;
use harbor_doctor_sim::faults::{CutProxy, PauseProxy};

const NEW_SUB: &str = "9b1d2c3e-0000-4000-8000-00000000abcd";

fn db_addr(reg: &Registry) -> SocketAddr {
    format!("{}:{}", reg.db.host, reg.db.port).parse().unwrap()
}

/// The registry URL, but through a proxy at `proxy`.
fn via_addr(reg: &Registry, proxy: SocketAddr) -> String {
    reg.db.url.replace(
        &format!("{}:{}", reg.db.host, reg.db.port),
        &proxy.to_string(),
    )
}

fn via(reg: &Registry, proxy: &CutProxy) -> String {
    via_addr(reg, proxy.addr)
}

async fn fix_alice(reg: &Registry, backups: &std::path::Path, url: &str) -> std::process::Output {
    run({
        let mut c = doctor(reg, backups);
        c.env("HARBOR_DATABASE_URL", url).args([
            "fix",
            "oidc-conflict",
            "--user",
            "alice",
            "--new-sub",
            NEW_SUB,
            "--yes",
            "-vvv",
        ]);
        c
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connection_dropped_mid_transaction_changes_nothing() {
    let reg = Registry::new().await;
    reg.oidc_user("alice", "a-sub", OLD_ISSUER).await;
    let backups = tempfile::tempdir().unwrap();
    let before = reg.snapshot().await;
    let proxy = CutProxy::start(db_addr(&reg), b"UPDATE oidc_user")
        .await
        .unwrap();
    let o = fix_alice(&reg, backups.path(), &via(&reg, &proxy)).await;
    // Cut before COMMIT was sent: rolled back for certain, so exit 3.
    assert_exit(&o, 3);
    assert_eq!(proxy.cuts(), 1);
    assert!(
        stderr(&o).contains("rolled back, so nothing was changed"),
        "{}",
        stderr(&o)
    );
    assert_eq!(reg.snapshot().await, before);
    assert!(
        backups_in(backups.path()).is_empty(),
        "no backup of a change that never was"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connection_dropped_during_commit_is_reported_as_unknown_and_keeps_the_backup() {
    let reg = Registry::new().await;
    reg.oidc_user("alice", "a-sub", OLD_ISSUER).await;
    let backups = tempfile::tempdir().unwrap();
    let proxy = CutProxy::start(db_addr(&reg), b"COMMIT").await.unwrap();
    let o = fix_alice(&reg, backups.path(), &via(&reg, &proxy)).await;
    assert_exit(&o, 5);
    assert!(stderr(&o).contains("unknown"), "{}", stderr(&o));
    let files = backups_in(backups.path());
    assert_eq!(files.len(), 1, "the backup is kept");
    assert!(
        stderr(&o).contains(&files[0].display().to_string()),
        "and its path is printed"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_locked_row_makes_the_repair_give_up_after_the_bounded_wait() {
    let reg = Registry::new().await;
    let alice = reg.oidc_user("alice", "a-sub", OLD_ISSUER).await;
    let backups = tempfile::tempdir().unwrap();
    let before = reg.snapshot().await;
    // Another session holds alice's row.
    let mut other = reg.db.connect().await.unwrap();
    let tx = other.transaction().await.unwrap();
    tx.query(
        "SELECT 1 FROM harbor_user WHERE user_id = $1 FOR UPDATE",
        &[&alice],
    )
    .await
    .unwrap();
    let o = run({
        let mut c = doctor(&reg, backups.path());
        c.env("HARBOR_DOCTOR_TIMEOUT", "2").args([
            "fix",
            "oidc-conflict",
            "--user",
            "alice",
            "--new-sub",
            NEW_SUB,
            "--yes",
        ]);
        c
    })
    .await;
    tx.rollback().await.unwrap();
    assert_exit(&o, 3);
    assert!(
        stderr(&o).contains("locked by another session"),
        "{}",
        stderr(&o)
    );
    assert_eq!(reg.snapshot().await, before);
    assert!(backups_in(backups.path()).is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unreachable_database_and_wrong_password_are_exit_3_without_the_password() {
    let reg = Registry::new().await;
    let backups = tempfile::tempdir().unwrap();
    // Nothing listens on this port.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let unreachable =
        format!("postgres://postgres:Canary-Pass-1@127.0.0.1:{port}/registry?sslmode=disable");
    let wrong = reg.db.url.replace(&reg.db.password, "Canary-Wrong-Pass-2");
    for (url, expect, canary) in [
        (unreachable.as_str(), "could not connect", "Canary-Pass-1"),
        (
            wrong.as_str(),
            "rejected the credentials",
            "Canary-Wrong-Pass-2",
        ),
    ] {
        for args in [
            vec![
                "fix",
                "oidc-conflict",
                "--user",
                "alice",
                "--new-sub",
                NEW_SUB,
                "--yes",
                "-vvv",
            ],
            vec!["diagnose", "oidc-users", "-vvv"],
        ] {
            let o = run({
                let mut c = doctor(&reg, backups.path());
                c.env("HARBOR_DATABASE_URL", url).args(&args);
                c
            })
            .await;
            assert_exit(&o, 3);
            let all = format!("{}{}", stdout(&o), stderr(&o));
            assert!(
                all.contains(expect),
                "{args:?}: expected {expect:?} in {all}"
            );
            assert!(
                !all.contains(canary),
                "{args:?}: the password leaked:\n{all}"
            );
        }
    }
    // A URL that is not a URL says so without echoing it.
    let o = run({
        let mut c = doctor(&reg, backups.path());
        c.env("HARBOR_DATABASE_URL", "mysql://root:Canary-3@db/x")
            .args(["diagnose", "oidc-users"]);
        c
    })
    .await;
    assert_exit(&o, 3);
    assert!(!stdout(&o).contains("Canary-3") && !stderr(&o).contains("Canary-3"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sslmode_is_honoured() {
    let reg = Registry::new().await;
    reg.oidc_user("alice", "a-sub", OLD_ISSUER).await;
    let backups = tempfile::tempdir().unwrap();
    let server = harbor_doctor_sim::postgres::PgServer::shared();
    let Some(ca) = &server.ca_pem else {
        eprintln!("an external server was named: its TLS set-up is unknown, so sslmode is not exercised here");
        return;
    };
    let ca_file = backups.path().join("db-ca.pem");
    std::fs::write(&ca_file, ca).unwrap();
    // The test server's certificate names localhost and 127.0.0.1.
    let cases = [
        (reg.db.url_with_sslmode("require"), 1),
        (reg.db.url_with_sslmode("prefer"), 1),
        (
            format!(
                "{}&sslrootcert={}",
                reg.db.url_with_sslmode("verify-full"),
                ca_file.display()
            ),
            1,
        ),
        (
            format!(
                "{}&sslrootcert={}",
                reg.db.url_with_sslmode("verify-ca"),
                ca_file.display()
            ),
            1,
        ),
        // The system roots do not know the test CA: verification must fail.
        (reg.db.url_with_sslmode("verify-full"), 3),
        (reg.db.url_with_sslmode("sometimes"), 3),
    ];
    for (url, code) in cases {
        let o = run({
            let mut c = doctor(&reg, backups.path());
            c.env("HARBOR_DATABASE_URL", &url)
                .args(["diagnose", "oidc-users"]);
            c
        })
        .await;
        assert_exit(&o, code);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_diagnosis_that_outlives_the_timeout_is_an_error_for_that_check() {
    let reg = Registry::new().await;
    let backups = tempfile::tempdir().unwrap();
    // A server that accepts connections and never answers.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let mut held = vec![];
        while let Ok((s, _)) = listener.accept().await {
            held.push(s);
        }
    });
    let o = run({
        let mut c = doctor(&reg, backups.path());
        c.env(
            "HARBOR_DATABASE_URL",
            format!("postgres://u:p@{addr}/registry?sslmode=disable"),
        )
        .env("HARBOR_DOCTOR_TIMEOUT", "1")
        .args(["diagnose", "oidc-users", "-o", "json"]);
        c
    })
    .await;
    assert_exit(&o, 3);
    let doc: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(doc["checks"][0]["status"], "error");
    assert_eq!(doc["summary"]["error"], 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_membership_added_while_a_delete_runs_is_neither_deleted_nor_lost() {
    // The race: the repair locked bob's rows and wrote nothing yet; another
    // session adds a membership for bob; the repair's DELETE must not take
    // it (it is in no backup), so the repair rolls back, exit 3.
    let reg = Registry::new().await;
    let bob = reg.oidc_user("bob", "b-sub", OLD_ISSUER).await;
    let p1 = reg.add_project("p1", 1).await;
    let p2 = reg.add_project("p2", 1).await;
    reg.add_member(p1, bob, 2).await;
    let backups = tempfile::tempdir().unwrap();
    let proxy = PauseProxy::start(db_addr(&reg), b"DELETE FROM project_member")
        .await
        .unwrap();
    let url = via_addr(&reg, proxy.addr);
    let mut cmd = doctor(&reg, backups.path());
    cmd.env("HARBOR_DATABASE_URL", &url).args([
        "fix",
        "oidc-conflict",
        "--user",
        "bob",
        "--strategy",
        "soft-delete",
        "--yes",
    ]);
    let fix = tokio::spawn(run(cmd));
    tokio::time::timeout(std::time::Duration::from_secs(60), proxy.wait_held())
        .await
        .expect("the repair reaches its DELETE");
    reg.add_member(p2, bob, 2).await;
    let before = reg.snapshot().await;
    proxy.release();
    let o = tokio::time::timeout(std::time::Duration::from_secs(60), fix)
        .await
        .expect("the repair ends")
        .unwrap();
    assert_exit(&o, 3);
    assert!(
        stderr(&o).contains("added while the repair ran"),
        "{}",
        stderr(&o)
    );
    assert_eq!(
        reg.snapshot().await,
        before,
        "both memberships and the user are as they were"
    );
    assert!(
        backups_in(backups.path()).is_empty(),
        "no backup of a change that never was"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_frozen_connection_is_bounded_by_the_timeout_and_releases_the_locks() {
    let reg = Registry::new().await;
    let alice = reg.oidc_user("alice", "a-sub", OLD_ISSUER).await;
    let backups = tempfile::tempdir().unwrap();
    let before = reg.snapshot().await;
    // Held forever: the connection freezes after the locks were taken.
    let proxy = PauseProxy::start(db_addr(&reg), b"UPDATE oidc_user")
        .await
        .unwrap();
    let mut cmd = doctor(&reg, backups.path());
    cmd.env("HARBOR_DATABASE_URL", via_addr(&reg, proxy.addr))
        .env("HARBOR_DOCTOR_TIMEOUT", "2")
        .args([
            "fix",
            "oidc-conflict",
            "--user",
            "alice",
            "--new-sub",
            NEW_SUB,
            "--yes",
        ]);
    // A generous outer bound: a regression fails here instead of hanging.
    let o = tokio::time::timeout(std::time::Duration::from_secs(60), run(cmd))
        .await
        .expect("the repair ends on its own --timeout");
    assert_exit(&o, 3);
    // Whichever bound fires first, the server's or the client's, says so
    // (the server's may arrive as its message or as the closed connection).
    let err = stderr(&o);
    assert!(
        err.contains("did not answer within 2 s")
            || err.contains("waited 2 s (--timeout)")
            || err.contains("broke before the change was committed"),
        "{err}"
    );
    assert!(err.contains("rolled back, so nothing was changed"), "{err}");
    // The server ends the idle transaction itself: alice's rows can be
    // locked again, and nothing changed.
    reg.sql
        .batch_execute("SET lock_timeout = '30s'")
        .await
        .unwrap();
    reg.sql
        .execute(
            "SELECT 1 FROM harbor_user WHERE user_id = $1 FOR UPDATE",
            &[&alice],
        )
        .await
        .expect("the frozen repair's locks are released");
    assert_eq!(reg.snapshot().await, before);
    assert!(backups_in(backups.path()).is_empty());
    proxy.release();
}

/// The doctor as a child process, fixing alice through `url`, with its
/// stderr piped so the test can see when the signal was taken.
fn spawn_fix(backups: &std::path::Path, url: &str) -> std::process::Child {
    let mut cmd = bare_doctor_process();
    cmd.env("HARBOR_DATABASE_URL", url)
        .env("HARBOR_DOCTOR_BACKUP_DIR", backups)
        .env("HARBOR_DOCTOR_TIMEOUT", "20")
        .args([
            "fix",
            "oidc-conflict",
            "--user",
            "alice",
            "--new-sub",
            NEW_SUB,
            "--yes",
        ])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    cmd.spawn().unwrap()
}

fn sigterm(child: &std::process::Child) {
    // SAFETY: kill with a pid this test started.
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
}

/// Reads stderr lines until one contains `needle`; returns what was read.
fn read_until(stderr: &mut impl std::io::BufRead, needle: &str) -> String {
    let mut seen = String::new();
    let mut line = String::new();
    while stderr.read_line(&mut line).unwrap() > 0 {
        seen.push_str(&line);
        if line.contains(needle) {
            break;
        }
        line.clear();
    }
    seen
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_during_a_repair_finishes_the_transaction_and_names_the_backup() {
    let reg = Registry::new().await;
    let alice = reg.oidc_user("alice", "a-sub", OLD_ISSUER).await;
    let backups = tempfile::tempdir().unwrap();
    let proxy = PauseProxy::start(db_addr(&reg), b"UPDATE oidc_user")
        .await
        .unwrap();
    let mut child = spawn_fix(backups.path(), &via_addr(&reg, proxy.addr));
    tokio::time::timeout(std::time::Duration::from_secs(60), proxy.wait_held())
        .await
        .expect("the repair reaches its UPDATE");
    sigterm(&child);
    let mut err = std::io::BufReader::new(child.stderr.take().unwrap());
    let (err, mut seen) = tokio::task::spawn_blocking(move || {
        let seen = read_until(&mut err, "Interrupted");
        (err, seen)
    })
    .await
    .unwrap();
    proxy.release();
    let (status, rest) = tokio::task::spawn_blocking(move || {
        let mut rest = String::new();
        let mut err = err;
        std::io::Read::read_to_string(&mut err, &mut rest).unwrap();
        (child.wait().unwrap(), rest)
    })
    .await
    .unwrap();
    seen.push_str(&rest);
    // The transaction finished (it committed), the backup was named, and
    // the run stopped before verifying: exit 5, honestly.
    assert_eq!(status.code(), Some(5), "{seen}");
    assert!(seen.contains("Backup: "), "{seen}");
    assert!(seen.contains("was not verified"), "{seen}");
    assert_eq!(
        reg.subiss_of(alice).await,
        vec![format!("{NEW_SUB}{ISSUER}")]
    );
    let names: Vec<String> = std::fs::read_dir(backups.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(
        names.len(),
        1,
        "one backup and no temporary file: {names:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_sigterm_stops_at_once_and_the_database_rolls_back() {
    let reg = Registry::new().await;
    reg.oidc_user("alice", "a-sub", OLD_ISSUER).await;
    let before = reg.snapshot().await;
    let backups = tempfile::tempdir().unwrap();
    let proxy = PauseProxy::start(db_addr(&reg), b"UPDATE oidc_user")
        .await
        .unwrap();
    let mut child = spawn_fix(backups.path(), &via_addr(&reg, proxy.addr));
    tokio::time::timeout(std::time::Duration::from_secs(60), proxy.wait_held())
        .await
        .expect("the repair reaches its UPDATE");
    sigterm(&child);
    let mut err = std::io::BufReader::new(child.stderr.take().unwrap());
    let child_pid = child.id();
    let seen = tokio::task::spawn_blocking(move || {
        let mut seen = read_until(&mut err, "Interrupted");
        // SAFETY: the pid of the child this test started.
        unsafe { libc::kill(child_pid as i32, libc::SIGTERM) };
        let mut rest = String::new();
        std::io::Read::read_to_string(&mut err, &mut rest).unwrap();
        seen.push_str(&rest);
        seen
    })
    .await
    .unwrap();
    let status = tokio::task::spawn_blocking(move || child.wait().unwrap())
        .await
        .unwrap();
    assert_eq!(status.code(), Some(5), "{seen}");
    assert!(
        seen.contains("Stopped at once, before a backup was written"),
        "{seen}"
    );
    proxy.release();
    // The connection closed with the process: PostgreSQL rolled back.
    reg.sql
        .batch_execute("SET lock_timeout = '30s'")
        .await
        .unwrap();
    reg.sql
        .execute("SELECT 1 FROM oidc_user FOR UPDATE", &[])
        .await
        .unwrap();
    assert_eq!(reg.snapshot().await, before);
    assert_eq!(
        std::fs::read_dir(backups.path()).unwrap().count(),
        0,
        "no file left behind"
    );
}
