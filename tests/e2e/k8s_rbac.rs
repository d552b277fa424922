//! The roles in deploy/rbac.yaml against what the commands really do.
//!
//! Every Kubernetes call the doctor makes in these scenarios (both database
//! layouts, every Kubernetes check, every repair) is recorded by the
//! simulated API server. The test fails when a role lacks a permission its
//! commands use, or grants one that none of them uses; then it runs the
//! commands again with tokens that hold only the roles, as the in-cluster
//! Job and a repair account would.

use crate::support::k8s;
use crate::support::teams::namespace_without_default_service_account;

use std::collections::BTreeSet;
use std::net::ToSocketAddrs;

use crate::support::*;
use harbor_doctor_sim::k8s::{
    AccessRequest, CnpgSeed, HarborSeed, MultiAttachOptions, PolicyRule, RecordedRequest,
};
use k8s::Cluster;
use serde_json::Value;

const RBAC: &str = include_str!("../../deploy/rbac.yaml");
const RBAC_OTOMI: &str = include_str!("../../deploy/rbac-otomi.yaml");
const RBAC_KEYCLOAK: &str = include_str!("../../deploy/rbac-keycloak.yaml");
const NEW_SUB: &str = "77a1c0de-0000-4000-8000-000000000001";

struct Roles {
    diagnose: Vec<PolicyRule>,
    repair: Vec<PolicyRule>,
    cluster: Vec<PolicyRule>,
    provision: Vec<PolicyRule>,
    /// deploy/rbac-otomi.yaml: bound to both accounts in Otomi's operator namespace.
    operator: Vec<PolicyRule>,
    /// deploy/rbac-keycloak.yaml (opt-in): Keycloak's admin Secret, by name.
    keycloak: Vec<PolicyRule>,
}

impl Roles {
    fn load() -> Roles {
        let role = |name| PolicyRule::from_role_yaml(RBAC, Some(name)).unwrap();
        Roles {
            diagnose: role("harbor-doctor-diagnose"),
            repair: role("harbor-doctor-repair"),
            cluster: role("harbor-doctor-cluster-read"),
            provision: role("harbor-doctor-provision"),
            operator: PolicyRule::from_role_yaml(RBAC_OTOMI, Some("harbor-doctor-operator-read"))
                .unwrap()
                .into_iter()
                .map(|r| r.in_namespaces(&["apl-harbor-operator"]))
                .collect(),
            keycloak: PolicyRule::from_role_yaml(
                RBAC_KEYCLOAK,
                Some("harbor-doctor-keycloak-admin-read"),
            )
            .unwrap()
            .into_iter()
            .map(|r| r.in_namespaces(&["keycloak"]))
            .collect(),
        }
    }

    /// What a ServiceAccount bound as deploy/rbac.yaml binds it holds: the
    /// namespace role in `harbor` (RoleBinding), the cluster reads everywhere.
    fn effective(&self, namespace_role: &[PolicyRule]) -> Vec<PolicyRule> {
        namespace_role
            .iter()
            .map(|r| r.clone().in_namespaces(&["harbor"]))
            .chain(self.cluster.iter().cloned())
            .chain(self.operator.iter().cloned())
            .chain(self.keycloak.iter().cloned())
            .collect()
    }
}

/// A permission as (API group, resource[/subresource], verb).
type Permission = (String, String, String);

fn permissions_used(requests: &[RecordedRequest]) -> BTreeSet<Permission> {
    let mut used = BTreeSet::new();
    for r in requests.iter().filter(|r| !r.verb.is_empty()) {
        let resource = match &r.subresource {
            Some(sub) => format!("{}/{sub}", r.resource),
            None => r.resource.clone(),
        };
        for verb in std::iter::once(&r.verb).chain(r.also_requires.iter()) {
            used.insert((r.group.clone(), resource.clone(), verb.clone()));
        }
    }
    used
}

fn permissions_granted(rules: &[PolicyRule]) -> BTreeSet<Permission> {
    let mut granted = BTreeSet::new();
    for r in rules {
        for g in &r.api_groups {
            for res in &r.resources {
                for v in &r.verbs {
                    granted.insert((g.clone(), res.clone(), v.clone()));
                }
            }
        }
    }
    granted
}

/// Every request must be allowed by `rules`, and every permission in
/// `rules` must be used by some request.
fn check_role(role: &str, rules: &[PolicyRule], requests: &[RecordedRequest]) {
    let mut missing = vec![];
    for r in requests.iter().filter(|r| !r.verb.is_empty()) {
        for verb in std::iter::once(&r.verb).chain(r.also_requires.iter()) {
            let req = AccessRequest {
                verb,
                group: &r.group,
                resource: &r.resource,
                subresource: r.subresource.as_deref(),
                name: r.name.as_deref(),
                namespace: if r.resource == "namespaces" {
                    r.name.as_deref()
                } else {
                    r.namespace.as_deref()
                },
            };
            if !rules.iter().any(|rule| rule.allows(&req)) {
                missing.push(format!(
                    "{verb} {} {}/{:?} in {:?}",
                    r.group, r.resource, r.subresource, r.namespace
                ));
            }
        }
    }
    missing.sort();
    missing.dedup();
    assert!(
        missing.is_empty(),
        "role {role} lacks permissions its commands use:\n{}",
        missing.join("\n")
    );
    let unused: Vec<Permission> = permissions_granted(rules)
        .difference(&permissions_used(requests))
        .cloned()
        .collect();
    assert!(
        unused.is_empty(),
        "role {role} grants permissions no command uses: {unused:?}"
    );
}

/// A chart-layout cluster in the Multi-Attach state, with a stale OIDC link
/// in its database.
async fn broken_installation(reg: &Registry, cnpg: bool) -> Cluster {
    let addr = (reg.db.host.as_str(), reg.db.port)
        .to_socket_addrs()
        .unwrap()
        .next()
        .unwrap();
    let mut seed = HarborSeed::new("harbor", "harbor");
    seed.database_user = reg.db.user.clone();
    seed.database_name = reg.db.name.clone();
    seed.database_password = reg.db.password.clone();
    seed.database_target = Some(addr);
    seed.internal_database = !cnpg;
    let c = Cluster::with(seed).await;
    if cnpg {
        let mut s = CnpgSeed::new("harbor");
        s.username = reg.db.user.clone();
        s.password = reg.db.password.clone();
        s.dbname = reg.db.name.clone();
        s.database_target = Some(addr);
        c.sim.seed_cnpg_cluster(&s).unwrap();
    }
    c.sim
        .roll_deployment_into_multi_attach(
            "harbor",
            "harbor-registry",
            MultiAttachOptions::default(),
        )
        .unwrap();
    reg.oidc_user("alice", "a-sub", OLD_ISSUER).await;
    // A team to provision: its pull Secret names another registry, its
    // push Secret has the wrong type.
    c.sim
        .put(serde_json::json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "team-a"}}))
        .unwrap();
    c.sim
        .put(
            serde_json::json!({"apiVersion": "v1", "kind": "ServiceAccount",
                    "metadata": {"name": "default", "namespace": "team-a"}}),
        )
        .unwrap();
    c.sim
        .put(
            serde_json::json!({"apiVersion": "v1", "kind": "Secret", "type": "Opaque",
                    "metadata": {"name": "harbor-pushsecret", "namespace": "team-a"},
                    "data": {"password": "c2VjcmV0"}}),
        )
        .unwrap();
    let auths = serde_json::json!({"auths": {"old-registry.example.com": {
        "username": "otomi-team-a-pull", "password": "Old1secret",
        "auth": "b3RvbWktdGVhbS1hLXB1bGw6T2xkMXNlY3JldA=="}}});
    let data = base64::Engine::encode(
        &base64::engine::general_purpose::STANDARD,
        auths.to_string(),
    );
    c.sim
        .put(serde_json::json!({"apiVersion": "v1", "kind": "Secret",
                                "type": "kubernetes.io/dockerconfigjson",
                                "metadata": {"name": "harbor-pullsecret", "namespace": "team-a"},
                                "data": {".dockerconfigjson": data}}))
        .unwrap();
    // A second team whose namespace lacks its default ServiceAccount:
    // provisioning creates it.
    namespace_without_default_service_account(&c.sim, "team-b");
    c
}

async fn doctor(cmd: assert_cmd::Command, expect: i32) -> std::process::Output {
    let o = run(cmd).await;
    assert_exit(&o, expect);
    o
}

/// Runs every command in the scenarios as cluster-admin; returns the
/// requests diagnose made and those the repairs made.
async fn record() -> (Vec<RecordedRequest>, Vec<RecordedRequest>) {
    let mut diagnose = vec![];
    let mut repair = vec![];
    for cnpg in [false, true] {
        let reg = Registry::new().await;
        let c = broken_installation(&reg, cnpg).await;
        let mut cmd = c.doctor();
        cmd.args(["diagnose", "-o", "json"]);
        doctor(cmd, 1).await;
        diagnose.extend(c.sim.requests());
        c.sim.clear_requests();
        for fix in [
            vec!["fix", "registry-strategy", "--yes"],
            vec!["fix", "multi-attach", "--yes"],
            vec![
                "fix",
                "oidc-conflict",
                "--user",
                "alice",
                "--new-sub",
                NEW_SUB,
                "--yes",
            ],
            vec!["provision", "--all", "--yes"],
        ] {
            let mut cmd = c.doctor();
            cmd.args(&fix);
            doctor(cmd, 0).await;
        }
        repair.extend(c.sim.requests());
        c.sim.shutdown();
    }
    (diagnose, repair)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_roles_grant_exactly_what_the_commands_use() {
    let roles = Roles::load();
    let (diagnose, repair) = record().await;
    // Both accounts may read Keycloak's admin Secret where
    // deploy/rbac-keycloak.yaml is applied: diagnose and the relink use it.
    let diagnose_rules: Vec<PolicyRule> = roles
        .diagnose
        .iter()
        .chain(&roles.cluster)
        .chain(&roles.keycloak)
        .cloned()
        .collect();
    let repair_rules: Vec<PolicyRule> = roles
        .repair
        .iter()
        .chain(&roles.cluster)
        .chain(&roles.provision)
        .chain(&roles.keycloak)
        .cloned()
        .collect();
    check_role(
        "harbor-doctor-diagnose (+ cluster-read, keycloak-admin-read)",
        &diagnose_rules,
        &diagnose,
    );
    check_role(
        "harbor-doctor-repair (+ cluster-read, provision, keycloak-admin-read)",
        &repair_rules,
        &repair,
    );
    // Diagnose is read only.
    assert!(
        permissions_granted(&roles.diagnose)
            .iter()
            .all(|(_, res, verb)| matches!(verb.as_str(), "get" | "list")
                || res == "pods/portforward")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_commands_run_with_only_their_roles() {
    let roles = Roles::load();
    let reg = Registry::new().await;
    let c = broken_installation(&reg, false).await;

    c.sim.clear_requests();
    let mut cmd = c.doctor_as("diagnose-sa", roles.effective(&roles.diagnose));
    cmd.args(["diagnose", "-o", "json"]);
    let doc = json(&doctor(cmd, 1).await);
    // Every call diagnose made was allowed, in every namespace it looked at
    // (Harbor's, the teams', Otomi's operator namespace for cli-login).
    let denied: Vec<String> = c
        .sim
        .requests()
        .iter()
        .filter(|r| r.status == 403)
        .map(|r| format!("{} {} in {:?}", r.verb, r.resource, r.namespace))
        .collect();
    assert!(
        denied.is_empty(),
        "the diagnose account was refused: {denied:?}"
    );
    for check in doc["checks"].as_array().unwrap() {
        assert_ne!(check["status"], "error", "{check:#}");
    }
    let status = |id: &str| {
        doc["checks"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["id"] == id)
            .map(|c| c["status"].clone())
            .unwrap()
    };
    assert_eq!(status("multi-attach"), "problem");
    assert_eq!(status("registry-strategy"), "warning");
    assert_eq!(status("oidc-users"), "problem");

    // The diagnose account cannot repair; the repair account can.
    let mut cmd = c.doctor_as("diagnose-sa", roles.effective(&roles.diagnose));
    cmd.args(["fix", "registry-strategy", "--yes"]);
    doctor(cmd, 3).await;
    for fix in [
        vec!["fix", "multi-attach", "--yes"],
        vec!["fix", "registry-strategy", "--yes"],
    ] {
        let mut cmd = c.doctor_as("repair-sa", roles.effective(&roles.repair));
        cmd.args(&fix);
        doctor(cmd, 0).await;
    }
}

#[test]
fn the_job_and_cronjob_run_diagnose_with_the_diagnose_account() {
    let docs: Vec<Value> = serde_yaml::Deserializer::from_str(RBAC)
        .map(|d| serde::Deserialize::deserialize(d).unwrap())
        .collect();
    let bound_to_diagnose = docs
        .iter()
        .find(|d| d["kind"] == "RoleBinding" && d["roleRef"]["name"] == "harbor-doctor-diagnose")
        .expect("a RoleBinding of harbor-doctor-diagnose");
    let account = bound_to_diagnose["subjects"][0]["name"].as_str().unwrap();
    for (file, text) in [
        ("deploy/job.yaml", include_str!("../../deploy/job.yaml")),
        (
            "deploy/cronjob.yaml",
            include_str!("../../deploy/cronjob.yaml"),
        ),
    ] {
        let doc: Value = serde_yaml::from_str(text).unwrap();
        let pod = if doc["kind"] == "CronJob" {
            &doc["spec"]["jobTemplate"]["spec"]["template"]["spec"]
        } else {
            &doc["spec"]["template"]["spec"]
        };
        assert_eq!(pod["serviceAccountName"], account, "{file}");
        assert_eq!(
            pod["containers"][0]["args"],
            serde_json::json!(["diagnose", "-o", "json"]),
            "{file}"
        );
    }
}

/// deploy/serve.yaml runs `serve` with the diagnose account (serve makes
/// exactly diagnose's calls, never a repair's), as locked down as the Job,
/// behind a Service only the monitoring namespace's Prometheus may reach.
#[test]
fn serve_runs_with_the_diagnose_account_and_only_prometheus_reaches_it() {
    let docs: Vec<Value> = serde_yaml::Deserializer::from_str(RBAC)
        .map(|d| serde::Deserialize::deserialize(d).unwrap())
        .collect();
    let account = docs
        .iter()
        .find(|d| d["kind"] == "RoleBinding" && d["roleRef"]["name"] == "harbor-doctor-diagnose")
        .expect("a RoleBinding of harbor-doctor-diagnose")["subjects"][0]["name"]
        .clone();
    let serve: Vec<Value> =
        serde_yaml::Deserializer::from_str(include_str!("../../deploy/serve.yaml"))
            .map(|d| serde::Deserialize::deserialize(d).unwrap())
            .collect();
    let kinds: Vec<&str> = serve.iter().map(|d| d["kind"].as_str().unwrap()).collect();
    assert_eq!(kinds, ["Deployment", "Service", "NetworkPolicy"]);
    let pod = &serve[0]["spec"]["template"]["spec"];
    assert_eq!(pod["serviceAccountName"], account);
    let container = &pod["containers"][0];
    assert_eq!(container["args"][0], "serve");
    assert!(
        !container["args"]
            .as_array()
            .unwrap()
            .contains(&Value::from("--report")),
        "/report names users: off in the shipped Deployment"
    );
    assert_eq!(container["securityContext"]["readOnlyRootFilesystem"], true);
    assert_eq!(pod["securityContext"]["runAsNonRoot"], true);
    assert_eq!(container["livenessProbe"]["httpGet"]["path"], "/healthz");
    let labels = &serve[0]["spec"]["template"]["metadata"]["labels"];
    assert_eq!(serve[1]["spec"]["selector"], *labels);
    let policy = &serve[2]["spec"];
    assert_eq!(policy["podSelector"]["matchLabels"], *labels);
    let from = &policy["ingress"][0]["from"];
    assert_eq!(from.as_array().unwrap().len(), 1, "only one peer: {from}");
    assert_eq!(
        from[0]["namespaceSelector"]["matchLabels"]["kubernetes.io/metadata.name"],
        "monitoring"
    );
    assert_eq!(
        from[0]["podSelector"]["matchLabels"]["app.kubernetes.io/name"],
        "prometheus"
    );
}
