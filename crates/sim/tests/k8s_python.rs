//! Conformance: the Python `kubernetes` client (k8s_python.py) against the
//! simulated API server, for list, pages, selectors and watch from a
//! resourceVersion as a second real client beside kube and kubectl. The
//! client must be installed (`pip install kubernetes` or Debian's
//! python3-kubernetes): this test fails, it does not skip, without it.

use std::path::{Path, PathBuf};
use std::process::Command;

use harbor_doctor_sim::k8s::KubeSim;

/// The first Python that imports `kubernetes`: $PYTHON, python3 on PATH,
/// then Debian's /usr/bin/python3 (where python3-kubernetes installs).
fn python_with_client() -> PathBuf {
    let candidates: Vec<PathBuf> = std::env::var_os("PYTHON")
        .map(PathBuf::from)
        .into_iter()
        .chain([PathBuf::from("python3"), PathBuf::from("/usr/bin/python3")])
        .collect();
    for python in &candidates {
        let imports = Command::new(python)
            .args(["-c", "import kubernetes"])
            .output()
            .is_ok_and(|o| o.status.success());
        if imports {
            return python.clone();
        }
    }
    panic!(
        "no Python with the kubernetes client was found (tried {candidates:?}): the conformance \
         test needs it. Install it with `python3 -m pip install kubernetes` or \
         `apt-get install python3-kubernetes`, or name a Python that has it in PYTHON"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_python_client_lists_pages_and_watches_from_a_resource_version() {
    let sim = KubeSim::start().await.unwrap();
    sim.seed_harbor_release("harbor", "harbor").unwrap();
    let dir = tempfile::tempdir().unwrap();
    let kubeconfig = dir.path().join("config");
    sim.write_kubeconfig(&kubeconfig, sim.admin_token())
        .unwrap();
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/k8s_python.py");
    let python = python_with_client();
    let out = tokio::task::spawn_blocking(move || {
        Command::new(&python)
            .arg(&script)
            .arg(&kubeconfig)
            .env("HOME", dir.path())
            .output()
            .expect("running python")
    })
    .await
    .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "the Python client found a difference:\nstdout: {stdout}\nstderr: {stderr}"
    );
    assert!(stdout.starts_with("ok:"), "{stdout}");
}
