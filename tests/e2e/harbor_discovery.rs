//! Harbor found through the cluster: with only a kubeconfig (and the CA of
//! Harbor's certificate), the doctor reads Harbor's external URL from the
//! chart's core ConfigMap and the admin password from its core Secret.


use std::time::Duration;

use crate::support::*;
use harbor_doctor_sim::harbor::{HarborOptions, HarborSim};
use harbor_doctor_sim::k8s::{HarborSeed, KubeSim};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn url_and_password_come_from_the_chart() {
    // The chart's core Secret says Harbor12345, the simulator's default.
    let h = HarborSim::start(HarborOptions {
        tls: true,
        login_penalty: Duration::from_millis(20),
        ..HarborOptions::otomi("https://keycloak.example.com/realms/otomi")
    })
    .await
    .unwrap();
    let kube = KubeSim::start().await.unwrap();
    let host = h.url().trim_start_matches("https://").to_string();
    kube.seed_harbor(&HarborSeed {
        external_host: host.clone(),
        ..HarborSeed::new("harbor", "harbor")
    })
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let kubeconfig = dir.path().join("kubeconfig");
    kube.write_kubeconfig(&kubeconfig, kube.admin_token())
        .unwrap();
    let ca = dir.path().join("harbor-ca.pem");
    std::fs::write(&ca, h.ca_pem().unwrap()).unwrap();

    let o = run({
        let mut c = bare_doctor();
        c.env("KUBECONFIG", &kubeconfig)
            .env("HARBOR_CA_CERT", &ca)
            .env("HARBOR_DOCTOR_TIMEOUT", "10")
            .args(["-v", "diagnose", "connectivity"]);
        c
    })
    .await;
    let out = stdout(&o);
    let err = stderr(&o);
    assert!(out.contains(&format!("at https://{host}")), "{out}\n{err}");
    assert!(
        err.contains("EXT_ENDPOINT in the core ConfigMap harbor/harbor-core"),
        "{err}"
    );
    assert!(
        err.contains("HARBOR_ADMIN_PASSWORD in the core Secret"),
        "{err}"
    );
    assert!(!out.contains("Harbor12345") && !err.contains("Harbor12345"));
    assert_eq!(h.failed_logins("admin"), 0);
    assert!(
        h.requests()
            .iter()
            .any(|r| r.path == "/api/v2.0/configurations" && r.status == 200),
        "the discovered admin password was accepted"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_harbor_in_the_namespace_the_check_is_skipped_with_the_reason() {
    let kube = KubeSim::start().await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let kubeconfig = dir.path().join("kubeconfig");
    kube.write_kubeconfig(&kubeconfig, kube.admin_token())
        .unwrap();
    let o = run({
        let mut c = bare_doctor();
        c.env("KUBECONFIG", &kubeconfig)
            .args(["diagnose", "teams", "-o", "json"]);
        c
    })
    .await;
    assert_exit(&o, 3); // a check named, or every check, skipped: nothing answered
    let doc: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(doc["checks"][0]["status"], "skipped");
    assert!(
        doc["checks"][0]["reason"]
            .as_str()
            .unwrap()
            .contains("no Harbor core ConfigMap"),
        "{doc}"
    );
}
