//! The README's main job, read from README.md itself so the tests that run
//! it and the text users copy cannot drift apart.

use std::process::Command;

/// The README's main-job command: the script between `lab -- sh -ec '` and
/// the closing `'`, to run with `sh -ec` where `harbor-doctor` is on PATH.
pub fn readme_walk() -> String {
    let readme =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md")).unwrap();
    let start = readme
        .find("lab -- sh -ec '")
        .expect("the README's main job runs in the lab")
        + "lab -- sh -ec '".len();
    let len = readme[start..]
        .find('\'')
        .expect("the README's script ends with a quote");
    readme[start..start + len].to_string()
}

/// The walk reads diagnose's JSON with jq; without it the walk cannot run,
/// so the test fails rather than skipping.
pub fn assert_jq_installed() {
    let jq = Command::new("jq").arg("--version").output();
    assert!(
        jq.is_ok_and(|o| o.status.success()),
        "the README's walk needs jq: apt-get install jq"
    );
}
