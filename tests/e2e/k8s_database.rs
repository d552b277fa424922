//! The registry database reached through the cluster with a kubeconfig
//! alone: the doctor finds the database (the chart's StatefulSet and Secret,
//! or a CloudNativePG cluster), opens a port-forward with kube, and runs
//! tokio-postgres over it, against the simulated API server bridging to a
//! real PostgreSQL.

use crate::support::k8s;

use std::net::{SocketAddr, ToSocketAddrs};

use crate::support::{assert_exit, run, stderr, stdout, Registry, ISSUER, OLD_ISSUER};
use harbor_doctor_sim::k8s::{CnpgSeed, HarborSeed};
use k8s::{json, Cluster};

const NEW_SUB: &str = "5e0c1f7a-0000-4000-8000-00000000feed";

fn address(reg: &Registry) -> SocketAddr {
    (reg.db.host.as_str(), reg.db.port)
        .to_socket_addrs()
        .unwrap()
        .next()
        .unwrap()
}

async fn chart_cluster(reg: &Registry) -> Cluster {
    let mut seed = HarborSeed::new("harbor", "harbor");
    seed.database_user = reg.db.user.clone();
    seed.database_name = reg.db.name.clone();
    seed.database_password = reg.db.password.clone();
    seed.database_target = Some(address(reg));
    Cluster::with(seed).await
}

async fn cnpg_cluster(reg: &Registry) -> Cluster {
    let mut seed = HarborSeed::new("harbor", "harbor");
    seed.internal_database = false;
    let c = Cluster::with(seed).await;
    let mut cnpg = CnpgSeed::new("harbor");
    cnpg.username = reg.db.user.clone();
    cnpg.password = reg.db.password.clone();
    cnpg.dbname = reg.db.name.clone();
    cnpg.database_target = Some(address(reg));
    c.sim.seed_cnpg_cluster(&cnpg).unwrap();
    c
}

/// Diagnoses and relinks alice with nothing but a kubeconfig, and checks
/// that the connection went through a port-forward to `pod`.
async fn relink_through_the_cluster(reg: &Registry, c: &Cluster, pod: &str) {
    let alice = reg.oidc_user("alice", "a-sub", OLD_ISSUER).await;
    reg.oidc_user("bob", "b-sub", ISSUER).await;

    let mut cmd = c.doctor();
    cmd.args(["diagnose", "oidc-users", "-o", "json"]);
    let o = run(cmd).await;
    assert_exit(&o, 1);
    let doc = json(&o);
    let findings = doc["checks"][0]["findings"].as_array().unwrap();
    assert_eq!(findings.len(), 1, "{doc:#}");
    assert_eq!(findings[0]["subject"], "user alice");

    let mut cmd = c.doctor();
    cmd.args([
        "fix",
        "oidc-conflict",
        "--user",
        "alice",
        "--new-sub",
        NEW_SUB,
        "--yes",
    ]);
    let o = run(cmd).await;
    assert_exit(&o, 0);
    assert_eq!(
        reg.subiss_of(alice).await,
        vec![format!("{NEW_SUB}{ISSUER}")]
    );
    for text in [stdout(&o), stderr(&o)] {
        assert!(
            !text.contains(&reg.db.password),
            "the database password leaked: {text}"
        );
    }

    let forwards: Vec<_> = c
        .sim
        .requests()
        .into_iter()
        .filter(|r| r.subresource.as_deref() == Some("portforward"))
        .collect();
    assert!(!forwards.is_empty());
    assert!(
        forwards
            .iter()
            .all(|r| r.name.as_deref() == Some(pod) && r.status == 101),
        "{forwards:#?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_charts_database_is_reached_through_a_port_forward() {
    let reg = Registry::new().await;
    let c = chart_cluster(&reg).await;
    relink_through_the_cluster(&reg, &c, "harbor-database-0").await;
    let secrets: Vec<_> = c
        .sim
        .requests()
        .into_iter()
        .filter(|r| r.resource == "secrets")
        .map(|r| (r.verb, r.name.unwrap_or_default()))
        .collect();
    assert!(
        secrets
            .iter()
            .all(|s| *s == ("get".to_string(), "harbor-database".to_string())),
        "{secrets:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cloudnativepg_database_is_reached_through_its_primary() {
    let reg = Registry::new().await;
    let c = cnpg_cluster(&reg).await;
    relink_through_the_cluster(&reg, &c, "harbor-otomi-db-1").await;
    assert!(c
        .sim
        .requests()
        .iter()
        .any(|r| r.resource == "secrets" && r.name.as_deref() == Some("harbor-otomi-db-app")));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_database_that_cannot_be_reached_says_why() {
    let reg = Registry::new().await;
    let c = chart_cluster(&reg).await;
    // The database pod is there but nothing listens behind it.
    c.sim.set_port_forward_target(
        "harbor",
        "harbor-database-0",
        5432,
        "127.0.0.1:9".parse().unwrap(),
    );
    let mut cmd = c.doctor();
    cmd.args(["diagnose", "oidc-users", "-o", "json"]);
    let o = run(cmd).await;
    assert_exit(&o, 3);
    let reason = json(&o)["checks"][0]["reason"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(
        reason.contains("port-forward to pod harbor/harbor-database-0"),
        "{reason}"
    );
    assert!(!reason.contains(&reg.db.password));

    // Without a database StatefulSet or CloudNativePG cluster the check is
    // skipped with the way out.
    c.sim
        .delete("apps/v1", "StatefulSet", Some("harbor"), "harbor-database")
        .unwrap();
    let mut cmd = c.doctor();
    cmd.args(["diagnose", "oidc-users", "-o", "json"]);
    let o = run(cmd).await;
    assert_exit(&o, 3); // a check named, or every check, skipped: nothing answered
    let check = &json(&o)["checks"][0];
    assert_eq!(check["status"], "skipped");
    assert!(check["reason"].as_str().unwrap().contains("--db-url"));
}
