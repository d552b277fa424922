//! Programs some tests drive that a developer's machine may lack (zsh,
//! fish, groff). CI installs them (`.ci/run`) and runs with `CI=true`:
//! there a missing one fails the test, since a check that did not run
//! proves nothing. Elsewhere the test says what it skipped and passes.

use std::process::{Command, Stdio};

/// Whether `program` can be started (as `program --version`). Under `CI=true` a missing
/// one panics, naming the Debian package that has it; otherwise the caller
/// skips, and a line on stderr says so.
pub fn tool_available(program: &str, package: &str, what_for: &str) -> bool {
    if version_status(program).is_some() {
        return true;
    }
    let message = format!(
        "{program} is not installed, so {what_for} is not checked (apt-get install {package})"
    );
    assert!(
        std::env::var("CI").as_deref() != Ok("true"),
        "{message}; CI must have it"
    );
    eprintln!("skipped: {message}");
    false
}

/// How `program --version` ended, or None when it cannot be started.
pub fn version_status(program: &str) -> Option<std::process::ExitStatus> {
    Command::new(program)
        .arg("--version")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .ok()
}
