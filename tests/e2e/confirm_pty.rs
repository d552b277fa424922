//! The confirmation prompt, answered for real in a pseudo-terminal.

use crate::support::pty;

use std::path::PathBuf;

use crate::support::*;

const NEW_SUB: &str = "9b1d2c3e-0000-4000-8000-00000000abcd";

/// Runs the fix in a pseudo-terminal, answers its question with `reply`,
/// and returns the exit code and what the terminal showed.
fn fix_in_terminal(db_url: String, backups: PathBuf, reply: &str) -> (i32, String) {
    let mut cmd = bare_doctor_process();
    cmd.env("HARBOR_DATABASE_URL", db_url)
        .env("HARBOR_DOCTOR_BACKUP_DIR", backups)
        .env("NO_COLOR", "1")
        .env("TERM", "xterm")
        .args([
            "fix",
            "oidc-conflict",
            "--user",
            "alice",
            "--new-sub",
            NEW_SUB,
        ]);
    pty::in_terminal(cmd, &[("Apply these 1 change(s)?", reply)])
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn answering_no_changes_nothing() {
    let reg = Registry::new().await;
    reg.oidc_user("alice", "a-sub", OLD_ISSUER).await;
    let backups = tempfile::tempdir().unwrap();
    let before = reg.snapshot().await;
    let (url, dir) = (reg.db.url.clone(), backups.path().to_path_buf());
    let (code, shown) = tokio::task::spawn_blocking(move || fix_in_terminal(url, dir, "n"))
        .await
        .unwrap();
    assert_eq!(code, 4, "exit {code}: {shown}");
    assert!(
        shown.contains("not confirmed"),
        "declined, not failed: {shown}"
    );
    assert!(
        shown.contains("Plan: harbor-doctor fix oidc-conflict"),
        "the plan is shown before the question:\n{shown}"
    );
    assert_eq!(reg.snapshot().await, before);
    assert!(backups_in(backups.path()).is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn answering_yes_applies_and_verifies() {
    let reg = Registry::new().await;
    let alice = reg.oidc_user("alice", "a-sub", OLD_ISSUER).await;
    let backups = tempfile::tempdir().unwrap();
    let (url, dir) = (reg.db.url.clone(), backups.path().to_path_buf());
    let (code, shown) = tokio::task::spawn_blocking(move || fix_in_terminal(url, dir, "y"))
        .await
        .unwrap();
    assert_eq!(code, 0, "exit {code}: {shown}");
    assert!(shown.contains("Applied and verified"), "{shown}");
    assert_eq!(
        reg.subiss_of(alice).await,
        vec![format!("{NEW_SUB}{ISSUER}")]
    );
    assert_eq!(backups_in(backups.path()).len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn just_pressing_enter_means_no() {
    let reg = Registry::new().await;
    reg.oidc_user("alice", "a-sub", OLD_ISSUER).await;
    let backups = tempfile::tempdir().unwrap();
    let before = reg.snapshot().await;
    let (url, dir) = (reg.db.url.clone(), backups.path().to_path_buf());
    let (code, shown) = tokio::task::spawn_blocking(move || fix_in_terminal(url, dir, ""))
        .await
        .unwrap();
    assert_eq!(code, 4, "exit {code}: {shown}");
    assert!(
        shown.contains("not confirmed"),
        "declined, not failed: {shown}"
    );
    assert_eq!(reg.snapshot().await, before);
}
