//! `diagnose connectivity` end to end: the doctor binary against the
//! simulated Harbor and Keycloak and a real PostgreSQL.

use std::time::Duration;

use crate::support::*;
use harbor_doctor_sim::harbor::{HarborOptions, HarborSim};
use harbor_doctor_sim::keycloak::{KeycloakSim, RealmLifespans};

const PW: &str = "Harbor12345";

fn harbor_opts() -> HarborOptions {
    HarborOptions {
        login_penalty: Duration::from_millis(50),
        ..HarborOptions::otomi("https://keycloak.example.com/realms/otomi")
    }
}

fn connectivity(harbor_url: &str, password: &str) -> assert_cmd::Command {
    connectivity_as(harbor_url, password, "json")
}

fn connectivity_as(harbor_url: &str, password: &str, output: &str) -> assert_cmd::Command {
    let mut c = bare_doctor();
    c.env("HARBOR_URL", harbor_url)
        .env("HARBOR_PASSWORD", password)
        .env("HARBOR_DOCTOR_TIMEOUT", "10")
        .args(["diagnose", "connectivity", "-o", output]);
    c
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn everything_reachable_is_ok() {
    let h = HarborSim::start_for_test(harbor_opts()).await.unwrap();
    let reg = Registry::new().await;
    let kc = KeycloakSim::start("kcadmin", "kc-password").await.unwrap();
    kc.add_realm("otomi", RealmLifespans::otomi());
    let o = run({
        let mut c = connectivity(&h.url(), PW);
        c.env("HARBOR_DATABASE_URL", &reg.db.url)
            .env("KEYCLOAK_URL", kc.url())
            .env("KEYCLOAK_USERNAME", "kcadmin")
            .env("KEYCLOAK_PASSWORD", "kc-password");
        c
    })
    .await;
    assert_exit(&o, 0);
    let c = only_check(&o);
    assert_eq!(c["status"], "ok", "{c:#}");

    // With -v the report shows what was checked, and never a password.
    let o = run({
        let mut c = connectivity_as(&h.url(), PW, "table");
        c.arg("-v")
            .env("HARBOR_DATABASE_URL", &reg.db.url)
            .env("KEYCLOAK_URL", kc.url())
            .env("KEYCLOAK_USERNAME", "kcadmin")
            .env("KEYCLOAK_PASSWORD", "kc-password");
        c
    })
    .await;
    assert_exit(&o, 0);
    let text = stdout(&o);
    assert!(text.contains("v2.11"), "{text}");
    assert!(text.contains("realm otomi"), "{text}");
    assert_no_secret(&o, &[PW, "kc-password", &reg.db.password]);
    h.finish().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unhealthy_component_is_named_with_its_error() {
    let h = HarborSim::start(harbor_opts()).await.unwrap();
    h.set_component_health(
        "redis",
        Some("dial tcp 10.0.0.5:6379: connect: connection refused"),
    );
    let o = run(connectivity(&h.url(), PW)).await;
    assert_exit(&o, 1);
    let c = only_check(&o);
    assert_eq!(c["status"], "problem");
    let f = &c["findings"][0];
    assert_eq!(f["subject"], "harbor component redis");
    assert!(
        f["summary"]
            .as_str()
            .unwrap()
            .contains("connection refused"),
        "{f}"
    );
    assert_eq!(f["runbook"], "connectivity");
    assert!(f["repair"].is_null());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_admin_password_is_reported_after_one_attempt() {
    let h = HarborSim::start(harbor_opts()).await.unwrap();
    let o = run(connectivity(&h.url(), "not-the-password")).await;
    assert_exit(&o, 1);
    let c = only_check(&o);
    let f = &c["findings"][0];
    assert!(
        f["summary"]
            .as_str()
            .unwrap()
            .contains("rejected the admin credentials"),
        "{f}"
    );
    assert_no_secret(&o, &["not-the-password"]);
    assert_eq!(h.failed_logins("admin"), 1, "no retry storm");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_harbor_gives_the_exact_error() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    drop(listener);
    let o = run(connectivity(&url, PW)).await;
    assert_exit(&o, 1);
    let f = &only_check(&o)["findings"][0];
    let summary = f["summary"].as_str().unwrap();
    assert!(
        summary.contains("does not answer") && summary.contains("could not connect"),
        "{summary}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keycloak_refusing_the_admin_is_a_problem() {
    let h = HarborSim::start(harbor_opts()).await.unwrap();
    let kc = KeycloakSim::start("kcadmin", "kc-password").await.unwrap();
    kc.add_realm("otomi", RealmLifespans::otomi());
    let o = run({
        let mut c = connectivity(&h.url(), PW);
        c.env("KEYCLOAK_URL", kc.url())
            .env("KEYCLOAK_USERNAME", "kcadmin")
            .env("KEYCLOAK_PASSWORD", "wrong");
        c
    })
    .await;
    assert_exit(&o, 1);
    let f = &only_check(&o)["findings"][0];
    assert_eq!(f["subject"], "keycloak realm otomi");
    assert!(
        f["summary"]
            .as_str()
            .unwrap()
            .contains("rejected the admin credentials"),
        "{f}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nothing_configured_is_skipped() {
    let o = run({
        let mut c = bare_doctor();
        c.args(["diagnose", "connectivity", "-o", "json"]);
        c
    })
    .await;
    assert_exit(&o, 3); // a check named, or every check, skipped: nothing answered
    assert_eq!(only_check(&o)["status"], "skipped");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cluster_and_harbors_namespace_are_checked() {
    let kube = harbor_doctor_sim::k8s::KubeSim::start().await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let kubeconfig = dir.path().join("kubeconfig");
    kube.write_kubeconfig(&kubeconfig, kube.admin_token())
        .unwrap();
    let h = HarborSim::start(harbor_opts()).await.unwrap();
    let with_cluster = |ns: &str| {
        let mut c = connectivity(&h.url(), PW);
        c.env("KUBECONFIG", &kubeconfig).env("HARBOR_NAMESPACE", ns);
        c
    };
    let o = run(with_cluster("default")).await;
    assert_exit(&o, 0);
    let o = run(with_cluster("harbor")).await;
    assert_exit(&o, 1);
    let f = &only_check(&o)["findings"][0];
    assert_eq!(f["subject"], "namespace harbor");
    kube.revoke_token(kube.admin_token());
    let o = run(with_cluster("default")).await;
    assert_exit(&o, 1);
    let c = only_check(&o);
    let f = c["findings"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["subject"] == "cluster")
        .unwrap_or_else(|| panic!("no cluster finding: {c:#}"))
        .clone();
    assert!(f["summary"].as_str().unwrap().contains("401"), "{f}");
}

/// A hostile "Harbor" that answers every request with a body that never
/// ends (bounded here at 256 MiB so the test stops by itself).
async fn endless_harbor() -> std::net::SocketAddr {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut buf = [0u8; 4096];
                let _ = s.read(&mut buf).await;
                let head = "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ntransfer-encoding: chunked\r\n\r\n";
                if s.write_all(head.as_bytes()).await.is_err() {
                    return;
                }
                let chunk = format!("{:x}\r\n{}\r\n", 65536, "[".repeat(65536));
                for _ in 0..4096 {
                    if s.write_all(chunk.as_bytes()).await.is_err() {
                        return;
                    }
                }
            });
        }
    });
    addr
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_endless_answer_is_cut_at_the_cap_not_read_into_memory() {
    let addr = endless_harbor().await;
    let o = run({
        let mut c = bare_doctor();
        c.env("HARBOR_URL", format!("http://{addr}"))
            .env("HARBOR_PASSWORD", "irrelevant-1")
            .env("HARBOR_DOCTOR_TIMEOUT", "30")
            .args(["diagnose", "connectivity", "-o", "json"]);
        c
    })
    .await;
    let text = format!("{}{}", stdout(&o), stderr(&o));
    assert!(text.contains("larger than"), "{text}");
    assert!(
        text.len() < 20_000,
        "the answer is not echoed: {} bytes",
        text.len()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn urls_with_credentials_are_refused_without_echoing_them() {
    let canary = "Url-Canary-Password-5151";
    for (var, value) in [
        (
            "HARBOR_URL",
            format!("https://admin:{canary}@harbor.example.com"),
        ),
        (
            "KEYCLOAK_URL",
            format!("https://admin:{canary}@keycloak.example.com"),
        ),
    ] {
        let reg = Registry::new().await;
        let backups = tempfile::tempdir().unwrap();
        let mut cmd = doctor(&reg, backups.path());
        cmd.env(var, &value)
            .env("HARBOR_PASSWORD", "x")
            .env("KEYCLOAK_USERNAME", "admin")
            .env("KEYCLOAK_PASSWORD", "y")
            .args(["diagnose", "-o", "json", "-vvv"]);
        let o = run(cmd).await;
        assert_no_secret(&o, &[canary]);
        let text = format!("{}{}", stdout(&o), stderr(&o));
        assert!(text.contains("user name or password"), "{var}: {text}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_huge_user_name_is_cut_in_messages() {
    let reg = Registry::new().await;
    let backups = tempfile::tempdir().unwrap();
    let name = "n".repeat(100_000);
    let o = run_doctor(
        &reg,
        backups.path(),
        &["fix", "oidc-conflict", "--user", &name, "--new-sub", "x"],
    )
    .await;
    assert_exit(&o, 3);
    assert!(
        stderr(&o).len() < 2_000,
        "{} bytes of error",
        stderr(&o).len()
    );
    assert!(
        stderr(&o).contains("100000 characters in all"),
        "{}",
        stderr(&o)
    );
}

/// The first finding's summary, for a check with one finding about `kind`.
fn summary_of(o: &std::process::Output, kind: &str) -> String {
    let c = only_check(o);
    let f = c["findings"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["kind"] == kind)
        .unwrap_or_else(|| panic!("no {kind} finding: {c:#}"));
    f["summary"].as_str().unwrap().to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_untrusted_certificate_names_the_host_its_issuer_and_the_remedy() {
    let h = HarborSim::start(HarborOptions {
        tls: true,
        ..harbor_opts()
    })
    .await
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let (right_ca, other_ca) = (dir.path().join("ca.pem"), dir.path().join("other.pem"));
    std::fs::write(&right_ca, h.ca_pem().unwrap()).unwrap();
    let other = harbor_doctor_sim::tls::TestPki::generate().unwrap();
    std::fs::write(&other_ca, &other.ca_pem).unwrap();

    // Without the CA: not trusted by the system's roots.
    let o = run(connectivity(&h.url(), PW)).await;
    assert_exit(&o, 1);
    let summary = summary_of(&o, "harbor-unreachable");
    for part in [
        &format!("Harbor at {} is not reachable over HTTPS", h.url()),
        "certificate 127.0.0.1 presented",
        "issued to CN=localhost by CN=harbor-doctor simulator CA",
        "is not trusted by the system's trusted roots",
        "give the CA certificate that signed it (PEM) with --ca-cert PATH (HARBOR_CA_CERT)",
    ] {
        assert!(summary.contains(part), "{part:?} in {summary}");
    }
    assert!(!summary.contains("UnknownIssuer"), "{summary}");
    assert_no_secret(&o, &[PW]);

    // With another CA: that file is named, as holding the wrong CA.
    let o = run({
        let mut c = connectivity(&h.url(), PW);
        c.env("HARBOR_CA_CERT", &other_ca);
        c
    })
    .await;
    let summary = summary_of(&o, "harbor-unreachable");
    let named = format!(
        "the CA certificate given with --ca-cert ({})",
        other_ca.display()
    );
    assert!(summary.contains(&named), "{summary}");
    assert!(summary.contains("holds another CA"), "{summary}");

    // A check that needs Harbor cannot run: exit 3, with the same words.
    let o = run({
        let mut c = bare_doctor();
        c.env("HARBOR_URL", h.url())
            .env("HARBOR_PASSWORD", PW)
            .env("HARBOR_DOCTOR_TIMEOUT", "10")
            .args(["diagnose", "cli-login", "-o", "json"]);
        c
    })
    .await;
    assert_exit(&o, 3);
    let c = only_check(&o);
    assert_eq!(c["status"], "error", "{c:#}");
    let reason = c["reason"].as_str().unwrap();
    assert!(
        reason.contains("CN=harbor-doctor simulator CA") && reason.contains("--ca-cert PATH"),
        "{reason}"
    );
    assert_no_secret(&o, &[PW]);

    // With the right CA it is fine.
    let o = run({
        let mut c = connectivity(&h.url(), PW);
        c.env("HARBOR_CA_CERT", &right_ca);
        c
    })
    .await;
    assert_exit(&o, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keycloak_is_verified_with_the_given_ca_too() {
    let h = HarborSim::start(harbor_opts()).await.unwrap();
    let pki = harbor_doctor_sim::tls::TestPki::generate().unwrap();
    let kc = KeycloakSim::start_with_tls("kcadmin", "kc-password", Some(pki.clone()))
        .await
        .unwrap();
    kc.add_realm("otomi", RealmLifespans::otomi());
    let dir = tempfile::tempdir().unwrap();
    let ca = dir.path().join("ca.pem");
    std::fs::write(&ca, &pki.ca_pem).unwrap();
    let with_keycloak = |ca: Option<&std::path::Path>| {
        let mut c = connectivity(&h.url(), PW);
        c.env("KEYCLOAK_URL", kc.url())
            .env("KEYCLOAK_USERNAME", "kcadmin")
            .env("KEYCLOAK_PASSWORD", "kc-password");
        if let Some(ca) = ca {
            c.env("HARBOR_CA_CERT", ca);
        }
        c
    };
    let o = run(with_keycloak(None)).await;
    assert_exit(&o, 1);
    let summary = summary_of(&o, "keycloak-unreachable");
    for part in [
        &format!("Keycloak at {} is not reachable over HTTPS", kc.url()),
        "issued to CN=localhost by CN=harbor-doctor simulator CA",
        "--ca-cert PATH (HARBOR_CA_CERT)",
    ] {
        assert!(summary.contains(part), "{part:?} in {summary}");
    }
    assert_no_secret(&o, &[PW, "kc-password"]);
    // The simulated Harbor is plain HTTP: the CA is only Keycloak's.
    let o = run(with_keycloak(Some(&ca))).await;
    assert_exit(&o, 0);
}

/// A server that accepts connections and never answers; it holds them
/// until the test's runtime ends.
async fn silent_server() -> std::net::SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((s, _)) = listener.accept().await {
            held.push(s);
        }
    });
    addr
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_system_that_hangs_is_its_own_finding_while_the_others_report() {
    let (harbor, keycloak) = (silent_server().await, silent_server().await);
    let reg = Registry::new().await;
    let started = std::time::Instant::now();
    let o = run({
        let mut c = bare_doctor();
        c.env("HARBOR_URL", format!("http://{harbor}"))
            .env("HARBOR_PASSWORD", PW)
            .env("HARBOR_DATABASE_URL", &reg.db.url)
            .env("KEYCLOAK_URL", format!("http://{keycloak}"))
            .env("KEYCLOAK_USERNAME", "kcadmin")
            .env("KEYCLOAK_PASSWORD", "kc-password")
            .args(["diagnose", "connectivity", "--timeout", "2", "-o", "json"]);
        c
    })
    .await;
    assert!(started.elapsed() < Duration::from_secs(10));
    assert_exit(&o, 1);
    let c = only_check(&o);
    assert_eq!(c["status"], "problem", "a problem, not an error: {c:#}");
    // Within the check's own time, which would otherwise have cut it off.
    assert!(c["duration_ms"].as_u64().unwrap() < 2000, "{c:#}");
    let detail = c["detail"].as_str().unwrap();
    assert!(
        detail.contains("registry database") && detail.contains("reachable"),
        "the database answered and says so: {detail}"
    );
    let kinds: Vec<&str> = c["findings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["kind"].as_str().unwrap())
        .collect();
    assert_eq!(kinds, ["harbor-timeout", "keycloak-timeout"], "{c:#}");
    let harbor_summary = summary_of(&o, "harbor-timeout");
    assert!(
        harbor_summary.starts_with(
            "Harbor did not answer within 1.8 s (--timeout 2), waiting for GET /api/v2.0/ping."
        ),
        "{harbor_summary}"
    );
    assert_eq!(
        c["findings"][0]["subject"],
        format!("harbor http://{harbor}"),
        "{c:#}"
    );
    assert!(
        summary_of(&o, "keycloak-timeout").starts_with("Keycloak did not answer within 1.8 s"),
        "{c:#}"
    );
    assert_no_secret(&o, &[PW, "kc-password", &reg.db.password]);
}
