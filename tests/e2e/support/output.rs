//! Reading what the doctor printed.

use std::path::{Path, PathBuf};
use std::process::Output;

use serde_json::Value;

pub fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// Asserts the exit code, showing the output when it differs.
#[track_caller]
pub fn assert_exit(o: &Output, code: i32) {
    assert_eq!(
        o.status.code(),
        Some(code),
        "expected exit {code}\n--- stdout\n{}\n--- stderr\n{}",
        stdout(o),
        stderr(o)
    );
}

/// The one JSON document a command printed (`-o json`).
#[track_caller]
pub fn json(o: &Output) -> Value {
    serde_json::from_slice(&o.stdout).unwrap_or_else(|e| {
        panic!(
            "stdout is not one JSON document ({e}):\n{}\n--- stderr\n{}",
            stdout(o),
            stderr(o)
        )
    })
}

/// The report of check `id` in a `diagnose -o json` document.
#[track_caller]
pub fn check<'a>(doc: &'a Value, id: &str) -> &'a Value {
    doc["checks"]
        .as_array()
        .unwrap_or_else(|| panic!("no checks in {doc:#}"))
        .iter()
        .find(|c| c["id"] == id)
        .unwrap_or_else(|| panic!("no check {id} in {doc:#}"))
}

/// The report of the one check a `diagnose CHECK -o json` ran.
#[track_caller]
pub fn only_check(o: &Output) -> Value {
    let doc = json(o);
    let checks = doc["checks"]
        .as_array()
        .unwrap_or_else(|| panic!("no checks in {doc:#}"));
    assert_eq!(checks.len(), 1, "one check expected: {doc:#}");
    checks[0].clone()
}

/// Files in the backup directory.
pub fn backups_in(dir: &Path) -> Vec<PathBuf> {
    let mut v: Vec<_> = std::fs::read_dir(dir)
        .map(|rd| {
            rd.flatten()
                .map(|e| e.path())
                .filter(|p| p.extension().is_some_and(|e| e == "json"))
                .collect()
        })
        .unwrap_or_default();
    v.sort();
    v
}

/// The check ids DESIGN.md fixes, in report order: what scripts and
/// completions rely on, spelled out here rather than read from the program.
pub const CHECK_IDS: [&str; 6] = [
    "connectivity",
    "oidc-users",
    "multi-attach",
    "registry-strategy",
    "cli-login",
    "teams",
];
