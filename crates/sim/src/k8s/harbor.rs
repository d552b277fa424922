//! Seeds for the stories harbor-doctor works on: a Harbor release laid out
//! as the Helm chart lays it out, the registry Deployment rolled into the
//! Multi-Attach deadlock, and a CloudNativePG database cluster as newer
//! Otomi installations run it.
//!
//! Names, labels and event texts follow shared/FACTS.md: chart objects are
//! `<fullname>-<component>` labelled `app=harbor`, `component=<c>`,
//! `release=<release>`; the attach/detach controller's FailedAttachVolume
//! event comes in four message forms.

use std::net::SocketAddr;
use std::time::Duration;

use anyhow::{anyhow, bail, Context, Result};
use base64::Engine;
use chrono::Utc;
use serde_json::{json, Value};

use super::controller::{self, attachment, mark_running, record_event, with_identity};
use super::store::{self, Store};
use super::KubeSim;

const ATTACHER: &str = "csi.harbor-doctor.sim";

/// What to seed for a Harbor release.
#[derive(Debug, Clone)]
pub struct HarborSeed {
    pub namespace: String,
    pub release: String,
    /// The registry Deployment's `strategy.type` (chart value
    /// `updateStrategy.type`, default RollingUpdate).
    pub registry_strategy: String,
    pub jobservice_strategy: String,
    /// Whether the chart's own database StatefulSet runs (`database.type:
    /// internal`); when false the core ConfigMap points at
    /// `external_database_host`.
    pub internal_database: bool,
    pub external_database_host: String,
    /// The database user and name Harbor's core ConfigMap names (the
    /// chart's are postgres and registry).
    pub database_user: String,
    pub database_name: String,
    pub database_password: String,
    /// Where a port-forward to the database pod's 5432 leads.
    pub database_target: Option<SocketAddr>,
    pub external_host: String,
    pub nodes: Vec<String>,
    pub harbor_version: String,
}

impl HarborSeed {
    pub fn new(namespace: &str, release: &str) -> Self {
        Self {
            namespace: namespace.to_string(),
            release: release.to_string(),
            registry_strategy: "RollingUpdate".into(),
            jobservice_strategy: "RollingUpdate".into(),
            internal_database: true,
            external_database_host: "harbor-otomi-db-rw".into(),
            database_user: "postgres".into(),
            database_name: "registry".into(),
            database_password: "changeit".into(),
            database_target: None,
            external_host: "harbor.example.com".into(),
            nodes: vec!["node-a".into(), "node-b".into(), "node-c".into()],
            harbor_version: "v2.13.1".into(),
        }
    }
}

/// The names of a seeded release's objects.
#[derive(Debug, Clone)]
pub struct HarborRelease {
    pub namespace: String,
    pub release: String,
    /// `<release>` when it contains "harbor", else `<release>-harbor`.
    pub fullname: String,
    pub core_deployment: String,
    pub registry_deployment: String,
    pub jobservice_deployment: String,
    pub registry_claim: String,
    pub jobservice_claim: String,
    pub database_statefulset: Option<String>,
    pub database_pod: Option<String>,
    pub database_secret: Option<String>,
    pub core_secret: String,
    pub nodes: Vec<String>,
}

/// The FailedAttachVolume message forms of the attach/detach controller.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MultiAttachMessage {
    /// `... Volume is already exclusively attached to one node and can't be attached to another`
    ExclusivelyAttached,
    /// `... Volume is already used by pod(s) <pods>`
    UsedByPods,
    /// `... Volume is already used by pod(s) <pods> and <N> pod(s) in different namespaces`
    UsedByPodsAndOtherNamespaces(u32),
    /// `... Volume is already used by <N> pod(s) in different namespaces`
    UsedInOtherNamespaces(u32),
}

impl MultiAttachMessage {
    pub fn render(&self, pv: &str, pods: &[String]) -> String {
        let head = format!("Multi-Attach error for volume \"{pv}\" Volume is already");
        match self {
            Self::ExclusivelyAttached => {
                format!("{head} exclusively attached to one node and can't be attached to another")
            }
            Self::UsedByPods => format!("{head} used by pod(s) {}", pods.join(", ")),
            Self::UsedByPodsAndOtherNamespaces(n) => format!(
                "{head} used by pod(s) {} and {n} pod(s) in different namespaces",
                pods.join(", ")
            ),
            Self::UsedInOtherNamespaces(n) => {
                format!("{head} used by {n} pod(s) in different namespaces")
            }
        }
    }
}

/// How to play the Multi-Attach story.
#[derive(Debug, Clone)]
pub struct MultiAttachOptions {
    pub message: MultiAttachMessage,
    /// When false the holder's node stops reporting (NotReady, unreachable
    /// taints): its pod can never finish terminating.
    pub holder_node_ready: bool,
    /// How long ago the event was last seen (events are reported once per
    /// volume and can be old).
    pub event_age: Duration,
    /// The event's count (aggregated events have more than one).
    pub event_count: u32,
    /// Where the new pod lands; default the first other Ready node.
    pub target_node: Option<String>,
}

impl Default for MultiAttachOptions {
    fn default() -> Self {
        Self {
            message: MultiAttachMessage::UsedByPods,
            holder_node_ready: true,
            event_age: Duration::ZERO,
            event_count: 1,
            target_node: None,
        }
    }
}

/// What the rollout left behind.
#[derive(Debug, Clone)]
pub struct MultiAttachScene {
    pub namespace: String,
    pub deployment: String,
    /// The stale ReplicaSet (previous revision) whose pod holds the volume.
    pub old_replicaset: String,
    /// The Deployment's current ReplicaSet.
    pub new_replicaset: String,
    pub stuck_pod: String,
    pub holder_pods: Vec<String>,
    pub holder_node: String,
    pub target_node: String,
    pub claim: String,
    pub persistent_volume: String,
    pub event_message: String,
}

/// A CloudNativePG cluster to seed.
#[derive(Debug, Clone)]
pub struct CnpgSeed {
    pub namespace: String,
    /// The Cluster's name; Otomi's is `harbor-otomi-db`.
    pub cluster: String,
    pub username: String,
    pub password: String,
    pub dbname: String,
    pub instances: u32,
    /// Where a port-forward to the primary's 5432 leads.
    pub database_target: Option<SocketAddr>,
    pub nodes: Vec<String>,
}

impl CnpgSeed {
    pub fn new(namespace: &str) -> Self {
        Self {
            namespace: namespace.to_string(),
            cluster: "harbor-otomi-db".into(),
            username: "harbor".into(),
            password: "changeit".into(),
            dbname: "registry".into(),
            instances: 2,
            database_target: None,
            nodes: vec!["node-a".into(), "node-b".into(), "node-c".into()],
        }
    }
}

#[derive(Debug, Clone)]
pub struct CnpgCluster {
    pub namespace: String,
    pub cluster: String,
    pub primary_pod: String,
    pub rw_service: String,
    pub app_secret: String,
}

fn b64(s: &str) -> String {
    base64::engine::general_purpose::STANDARD.encode(s)
}

fn put(store: &mut Store, obj: Value) -> Result<Value> {
    store
        .put(obj)
        .map_err(|e| anyhow!("seeding the simulated cluster: {e}"))
}

/// Sets a Node's Ready condition (and the taints the node lifecycle
/// controller adds to an unreachable node).
pub(crate) fn set_ready_condition(node: &mut Value, ready: bool) {
    let now = store::now();
    let condition = if ready {
        json!({"type": "Ready", "status": "True", "reason": "KubeletReady",
               "message": "kubelet is posting ready status", "lastHeartbeatTime": now, "lastTransitionTime": now})
    } else {
        json!({"type": "Ready", "status": "Unknown", "reason": "NodeStatusUnknown",
               "message": "Kubelet stopped posting node status.", "lastHeartbeatTime": now, "lastTransitionTime": now})
    };
    let mut conditions: Vec<Value> = node["status"]["conditions"]
        .as_array()
        .cloned()
        .unwrap_or_default()
        .into_iter()
        .filter(|c| c["type"] != "Ready")
        .collect();
    conditions.push(condition);
    node["status"]["conditions"] = Value::Array(conditions);
    let mut taints: Vec<Value> = node["spec"]["taints"]
        .as_array()
        .cloned()
        .unwrap_or_default()
        .into_iter()
        .filter(|t| t["key"] != "node.kubernetes.io/unreachable")
        .collect();
    if !ready {
        taints.push(json!({"key": "node.kubernetes.io/unreachable", "effect": "NoSchedule", "timeAdded": now}));
        taints.push(json!({"key": "node.kubernetes.io/unreachable", "effect": "NoExecute", "timeAdded": now}));
    }
    if taints.is_empty() {
        if let Some(spec) = node["spec"].as_object_mut() {
            spec.remove("taints");
        }
    } else {
        node["spec"]["taints"] = Value::Array(taints);
    }
}

fn ensure_nodes(store: &mut Store, nodes: &[String]) -> Result<()> {
    for (i, n) in nodes.iter().enumerate() {
        if store.raw_get("nodes", "", n).is_some() {
            continue;
        }
        let mut node = json!({
            "apiVersion": "v1", "kind": "Node",
            "metadata": {"name": n, "labels": {"kubernetes.io/hostname": n, "kubernetes.io/os": "linux",
                                                "kubernetes.io/arch": "amd64"}},
            "spec": {"podCIDR": format!("10.244.{i}.0/24")},
            "status": {
                "addresses": [{"type": "InternalIP", "address": controller::node_ip(n)},
                              {"type": "Hostname", "address": n}],
                "capacity": {"cpu": "4", "memory": "16Gi", "pods": "110"},
                "allocatable": {"cpu": "4", "memory": "16Gi", "pods": "110"},
                "nodeInfo": {"kubeletVersion": super::discovery::GIT_VERSION, "containerRuntimeVersion": "containerd://1.7.27",
                             "osImage": "Debian GNU/Linux 12 (bookworm)", "kernelVersion": "6.1.0-31-amd64",
                             "operatingSystem": "linux", "architecture": "amd64"},
            },
        });
        set_ready_condition(&mut node, true);
        put(store, node)?;
    }
    Ok(())
}

fn chart_labels(release: &str, version: &str) -> Value {
    json!({
        "heritage": "Helm", "release": release, "chart": "harbor", "app": "harbor",
        "app.kubernetes.io/instance": release, "app.kubernetes.io/name": "harbor",
        "app.kubernetes.io/managed-by": "Helm", "app.kubernetes.io/part-of": "harbor",
        "app.kubernetes.io/version": version.trim_start_matches('v'),
    })
}

fn with_component(labels: &Value, component: &str) -> Value {
    let mut l = labels.clone();
    l["component"] = json!(component);
    l["app.kubernetes.io/component"] = json!(component);
    l
}

fn owner_ref(owner: &Value) -> Value {
    json!({"apiVersion": owner["apiVersion"], "kind": owner["kind"], "name": owner["metadata"]["name"],
           "uid": owner["metadata"]["uid"], "controller": true, "blockOwnerDeletion": true})
}

/// A bound ReadWriteOnce claim with its volume.
fn seed_claim(
    store: &mut Store,
    ns: &str,
    claim: &str,
    labels: &Value,
    size: &str,
) -> Result<String> {
    if let Some(pvc) = store.raw_get("persistentvolumeclaims", ns, claim) {
        if let Some(pv) = pvc["spec"]["volumeName"].as_str() {
            return Ok(pv.to_string());
        }
    }
    let pv = format!("pvc-{}", uuid::Uuid::new_v4());
    let pvc = put(
        store,
        json!({
            "apiVersion": "v1", "kind": "PersistentVolumeClaim",
            "metadata": {"name": claim, "namespace": ns, "labels": labels,
                         "annotations": {"pv.kubernetes.io/bind-completed": "yes",
                                         "volume.kubernetes.io/storage-provisioner": ATTACHER}},
            "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": size}},
                     "storageClassName": "standard", "volumeMode": "Filesystem", "volumeName": pv},
        }),
    )?;
    put(
        store,
        json!({
            "apiVersion": "v1", "kind": "PersistentVolume",
            "metadata": {"name": pv, "annotations": {"pv.kubernetes.io/provisioned-by": ATTACHER}},
            "spec": {"accessModes": ["ReadWriteOnce"], "capacity": {"storage": size},
                     "claimRef": {"apiVersion": "v1", "kind": "PersistentVolumeClaim", "name": claim,
                                  "namespace": ns, "uid": pvc["metadata"]["uid"]},
                     "csi": {"driver": ATTACHER, "volumeHandle": pv, "fsType": "ext4"},
                     "persistentVolumeReclaimPolicy": "Delete", "storageClassName": "standard",
                     "volumeMode": "Filesystem"},
            "status": {"phase": "Bound"},
        }),
    )?;
    Ok(pv)
}

fn attach(store: &mut Store, pv: &str, node: &str) -> Result<()> {
    let va = attachment(pv, ATTACHER, node);
    put(store, va)?;
    Ok(())
}

fn container(name: &str, image: &str, port: u16) -> Value {
    json!({"name": name, "image": image, "imagePullPolicy": "IfNotPresent",
           "ports": [{"containerPort": port, "protocol": "TCP"}],
           "terminationMessagePath": "/dev/termination-log", "terminationMessagePolicy": "File"})
}

fn mounting(mut container: Value, volume: &str, path: &str) -> Value {
    container["volumeMounts"] = json!([{"name": volume, "mountPath": path}]);
    container
}

/// A Deployment with one ReplicaSet (revision 1) and its running pods.
#[allow(clippy::too_many_arguments)]
fn seed_deployment(
    store: &mut Store,
    ns: &str,
    name: &str,
    labels: &Value,
    component: &str,
    strategy: &str,
    pod_spec: Value,
    node: &str,
) -> Result<()> {
    let selector = json!({"release": labels["release"], "app": "harbor", "component": component});
    let pod_labels = with_component(labels, component);
    let mut strategy_obj = json!({"type": strategy});
    if strategy == "RollingUpdate" {
        strategy_obj["rollingUpdate"] = json!({"maxSurge": "25%", "maxUnavailable": "25%"});
    }
    let deployment = put(
        store,
        json!({
            "apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": name, "namespace": ns, "labels": with_component(labels, component),
                         "annotations": {"deployment.kubernetes.io/revision": "1",
                                         "meta.helm.sh/release-name": labels["release"],
                                         "meta.helm.sh/release-namespace": ns}},
            "spec": {"replicas": 1, "revisionHistoryLimit": 10, "selector": {"matchLabels": selector},
                     "strategy": strategy_obj,
                     "template": {"metadata": {"labels": pod_labels}, "spec": pod_spec}},
        }),
    )?;
    let mut rs = controller::new_replicaset(&deployment, 1);
    rs["status"] = json!({"replicas": 1, "readyReplicas": 1, "availableReplicas": 1,
                          "fullyLabeledReplicas": 1, "observedGeneration": 1});
    let rs = store.raw_put("replicasets.apps", rs);
    let mut pod = controller::pod_from_template(&rs, Some(node));
    mark_running(&mut pod);
    store.raw_put("pods", pod);
    Ok(())
}

fn seed_harbor(store: &mut Store, seed: &HarborSeed) -> Result<HarborRelease> {
    let ns = seed.namespace.as_str();
    let fullname = if seed.release.contains("harbor") {
        seed.release.clone()
    } else {
        format!("{}-harbor", seed.release)
    };
    let labels = chart_labels(&seed.release, &seed.harbor_version);
    ensure_nodes(store, &seed.nodes)?;
    let node = |i: usize| seed.nodes[i % seed.nodes.len()].clone();
    let v = &seed.harbor_version;
    let db_host = if seed.internal_database {
        format!("{fullname}-database")
    } else {
        seed.external_database_host.clone()
    };

    put(
        store,
        json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}}),
    )?;
    let core_secret = format!("{fullname}-core");
    put(
        store,
        json!({
            "apiVersion": "v1", "kind": "Secret",
            "metadata": {"name": core_secret, "namespace": ns, "labels": with_component(&labels, "core")},
            "type": "Opaque",
            "data": {"secretKey": b64("not-a-real-key16"), "secret": b64("core-secret"),
                     "HARBOR_ADMIN_PASSWORD": b64("Harbor12345"), "CSRF_KEY": b64("csrf-key-32-characters-long-0000"),
                     "POSTGRESQL_PASSWORD": b64(&seed.database_password)},
        }),
    )?;
    put(
        store,
        json!({
            "apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": format!("{fullname}-core"), "namespace": ns, "labels": with_component(&labels, "core")},
            "data": {"EXT_ENDPOINT": format!("https://{}", seed.external_host), "DATABASE_TYPE": "postgresql",
                     "POSTGRESQL_HOST": db_host, "POSTGRESQL_PORT": "5432", "POSTGRESQL_USERNAME": seed.database_user,
                     "POSTGRESQL_DATABASE": seed.database_name, "POSTGRESQL_SSLMODE": "disable",
                     "REGISTRY_URL": format!("http://{fullname}-registry:5000")},
        }),
    )?;

    let registry_claim = format!("{fullname}-registry");
    let registry_pv = seed_claim(
        store,
        ns,
        &registry_claim,
        &with_component(&labels, "registry"),
        "5Gi",
    )?;
    let jobservice_claim = format!("{fullname}-jobservice");
    let jobservice_pv = seed_claim(
        store,
        ns,
        &jobservice_claim,
        &with_component(&labels, "jobservice"),
        "1Gi",
    )?;

    let core = format!("{fullname}-core");
    seed_deployment(
        store,
        ns,
        &core,
        &labels,
        "core",
        "RollingUpdate",
        json!({
            "containers": [container("core", &format!("goharbor/harbor-core:{v}"), 8080)],
            "volumes": [{"name": "secret-key", "secret": {"secretName": core_secret}}],
        }),
        &node(1),
    )?;
    let registry = format!("{fullname}-registry");
    seed_deployment(
        store,
        ns,
        &registry,
        &labels,
        "registry",
        &seed.registry_strategy,
        json!({
            "containers": [container("registry", &format!("goharbor/registry-photon:{v}"), 5000),
                           container("registryctl", &format!("goharbor/harbor-registryctl:{v}"), 8080)],
            "volumes": [{"name": "registry-data", "persistentVolumeClaim": {"claimName": registry_claim}}],
        }),
        &node(0),
    )?;
    attach(store, &registry_pv, &node(0))?;
    let jobservice = format!("{fullname}-jobservice");
    seed_deployment(
        store,
        ns,
        &jobservice,
        &labels,
        "jobservice",
        &seed.jobservice_strategy,
        json!({
            "containers": [mounting(container("jobservice", &format!("goharbor/harbor-jobservice:{v}"), 8080), "job-logs", "/var/log/jobs")],
            "volumes": [{"name": "job-logs", "persistentVolumeClaim": {"claimName": jobservice_claim}}],
        }),
        &node(1),
    )?;
    attach(store, &jobservice_pv, &node(1))?;

    for (svc, component, port, target) in [
        ("core", "core", 80, 8080),
        ("registry", "registry", 5000, 5000),
        ("jobservice", "jobservice", 80, 8080),
    ] {
        put(
            store,
            json!({
                "apiVersion": "v1", "kind": "Service",
                "metadata": {"name": format!("{fullname}-{svc}"), "namespace": ns, "labels": labels},
                "spec": {"ports": [{"name": "http", "port": port, "targetPort": target, "protocol": "TCP"}],
                         "selector": {"release": seed.release, "app": "harbor", "component": component}},
            }),
        )?;
    }
    put(
        store,
        json!({
            "apiVersion": "networking.k8s.io/v1", "kind": "Ingress",
            "metadata": {"name": format!("{fullname}-ingress"), "namespace": ns, "labels": labels},
            "spec": {"ingressClassName": "nginx",
                     "tls": [{"hosts": [seed.external_host], "secretName": format!("{fullname}-ingress")}],
                     "rules": [{"host": seed.external_host, "http": {"paths": [
                         {"path": "/", "pathType": "Prefix", "backend": {"service": {"name": format!("{fullname}-core"), "port": {"number": 80}}}}]}}]},
        }),
    )?;

    let (mut database_statefulset, mut database_pod, mut database_secret) = (None, None, None);
    if seed.internal_database {
        let sts_name = format!("{fullname}-database");
        let db_labels = with_component(&labels, "database");
        put(
            store,
            json!({
                "apiVersion": "v1", "kind": "Secret",
                "metadata": {"name": sts_name, "namespace": ns, "labels": db_labels},
                "type": "Opaque",
                "data": {"POSTGRES_PASSWORD": b64(&seed.database_password)},
            }),
        )?;
        put(
            store,
            json!({
                "apiVersion": "v1", "kind": "Service",
                "metadata": {"name": sts_name, "namespace": ns, "labels": labels},
                "spec": {"ports": [{"port": 5432, "targetPort": 5432, "protocol": "TCP"}],
                         "selector": {"release": seed.release, "app": "harbor", "component": "database"}},
            }),
        )?;
        let sts = put(
            store,
            json!({
                "apiVersion": "apps/v1", "kind": "StatefulSet",
                "metadata": {"name": sts_name, "namespace": ns, "labels": db_labels},
                "spec": {"replicas": 1, "serviceName": sts_name,
                         "selector": {"matchLabels": {"release": seed.release, "app": "harbor", "component": "database"}},
                         "template": {"metadata": {"labels": db_labels}, "spec": {
                             "containers": [{"name": "database", "image": format!("goharbor/harbor-db:{v}"),
                                             "ports": [{"containerPort": 5432, "protocol": "TCP"}],
                                             "envFrom": [{"secretRef": {"name": sts_name}}]}]}},
                         "volumeClaimTemplates": [{"metadata": {"name": "database-data", "labels": labels},
                                                   "spec": {"accessModes": ["ReadWriteOnce"],
                                                            "resources": {"requests": {"storage": "1Gi"}}}}]},
                "status": {"replicas": 1, "readyReplicas": 1, "currentReplicas": 1, "updatedReplicas": 1,
                           "availableReplicas": 1, "observedGeneration": 1},
            }),
        )?;
        let pod_name = format!("{sts_name}-0");
        let claim = format!("database-data-{pod_name}");
        let pv = seed_claim(store, ns, &claim, &db_labels, "1Gi")?;
        let mut pod_labels = db_labels.clone();
        pod_labels["statefulset.kubernetes.io/pod-name"] = json!(pod_name);
        pod_labels["apps.kubernetes.io/pod-index"] = json!("0");
        pod_labels["controller-revision-hash"] =
            json!(format!("{sts_name}-{}", store::random_suffix(10)));
        let mut pod = with_identity(json!({
            "apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": pod_name, "namespace": ns, "labels": pod_labels,
                         "ownerReferences": [owner_ref(&sts)]},
            "spec": {"nodeName": node(2), "hostname": pod_name, "subdomain": sts_name,
                     "containers": sts["spec"]["template"]["spec"]["containers"],
                     "volumes": [{"name": "database-data", "persistentVolumeClaim": {"claimName": claim}}]},
        }));
        mark_running(&mut pod);
        store.raw_put("pods", pod);
        attach(store, &pv, &node(2))?;
        database_statefulset = Some(sts_name.clone());
        database_pod = Some(pod_name);
        database_secret = Some(sts_name);
    }

    Ok(HarborRelease {
        namespace: ns.to_string(),
        release: seed.release.clone(),
        fullname,
        core_deployment: core,
        registry_deployment: registry,
        jobservice_deployment: jobservice,
        registry_claim,
        jobservice_claim,
        database_statefulset,
        database_pod,
        database_secret,
        core_secret,
        nodes: seed.nodes.clone(),
    })
}

fn roll_into_multi_attach(
    store: &mut Store,
    ns: &str,
    deployment: &str,
    opts: &MultiAttachOptions,
) -> Result<MultiAttachScene> {
    let mut d = store
        .raw_get("deployments.apps", ns, deployment)
        .cloned()
        .ok_or_else(|| anyhow!("no Deployment {ns}/{deployment} in the simulated cluster"))?;
    let d_uid = d["metadata"]["uid"].as_str().unwrap_or("").to_string();
    let rss: Vec<Value> = store
        .raw_list("replicasets.apps", Some(ns))
        .into_iter()
        .filter(|r| store::owner_uids(r).contains(&d_uid))
        .cloned()
        .collect();
    let revision = |r: &Value| -> i64 {
        r["metadata"]["annotations"]["deployment.kubernetes.io/revision"]
            .as_str()
            .and_then(|s| s.parse().ok())
            .unwrap_or(0)
    };
    let current = rss
        .iter()
        .max_by_key(|r| revision(r))
        .cloned()
        .ok_or_else(|| anyhow!("Deployment {deployment} has no ReplicaSet to roll from"))?;
    let current_uid = current["metadata"]["uid"]
        .as_str()
        .unwrap_or("")
        .to_string();
    let holders: Vec<Value> = store
        .raw_list("pods", Some(ns))
        .into_iter()
        .filter(|p| store::owner_uids(p).contains(&current_uid))
        .cloned()
        .collect();
    let holder = holders.first().ok_or_else(|| {
        anyhow!(
            "ReplicaSet {} has no pod holding the volume",
            current["metadata"]["name"]
        )
    })?;
    let holder_node = holder["spec"]["nodeName"]
        .as_str()
        .unwrap_or("")
        .to_string();
    let claim = d["spec"]["template"]["spec"]["volumes"]
        .as_array()
        .and_then(|vs| {
            vs.iter()
                .find_map(|v| v["persistentVolumeClaim"]["claimName"].as_str())
        })
        .ok_or_else(|| anyhow!("Deployment {deployment} mounts no PersistentVolumeClaim"))?
        .to_string();
    let pvc = store
        .raw_get("persistentvolumeclaims", ns, &claim)
        .ok_or_else(|| anyhow!("claim {claim} is missing"))?;
    if !pvc["spec"]["accessModes"]
        .as_array()
        .is_some_and(|m| m.iter().any(|x| x == "ReadWriteOnce"))
    {
        bail!(
            "claim {claim} is not ReadWriteOnce; a Multi-Attach error needs a single-node volume"
        );
    }
    let pv = pvc["spec"]["volumeName"].as_str().unwrap_or("").to_string();
    let target_node = match &opts.target_node {
        Some(n) => n.clone(),
        None => store
            .raw_list("nodes", None)
            .into_iter()
            .filter_map(|n| n["metadata"]["name"].as_str().map(str::to_string))
            .find(|n| *n != holder_node && controller::node_ready(store, n) == Some(true))
            .ok_or_else(|| anyhow!("no other Ready node for the new pod to land on"))?,
    };

    // The rollout: a template change makes revision n+1 and its ReplicaSet.
    let new_revision = revision(&current) + 1;
    d["spec"]["template"]["metadata"]["annotations"]["kubectl.kubernetes.io/restartedAt"] =
        json!(store::now());
    d["metadata"]["annotations"]["deployment.kubernetes.io/revision"] =
        json!(new_revision.to_string());
    d["metadata"]["generation"] = json!(d["metadata"]["generation"].as_i64().unwrap_or(1) + 1);
    let d = store.raw_put("deployments.apps", d);
    let mut rs = controller::new_replicaset(&d, new_revision);
    rs["status"] = json!({"replicas": 1, "fullyLabeledReplicas": 1, "observedGeneration": 1});
    let rs = store.raw_put("replicasets.apps", rs);
    let pod = controller::pod_from_template(&rs, Some(&target_node));
    let pod = store.raw_put("pods", pod);

    if !opts.holder_node_ready {
        let mut node = store
            .raw_get("nodes", "", &holder_node)
            .cloned()
            .ok_or_else(|| anyhow!("holder node {holder_node} is missing"))?;
        set_ready_condition(&mut node, false);
        store.raw_put("nodes", node);
    }

    let holder_names: Vec<String> = holders
        .iter()
        .filter_map(|p| p["metadata"]["name"].as_str().map(str::to_string))
        .collect();
    let message = opts.message.render(&pv, &holder_names);
    let last = Utc::now() - chrono::Duration::from_std(opts.event_age).unwrap_or_default();
    let first = last - chrono::Duration::seconds(10 * (opts.event_count.max(1) as i64 - 1));
    let (first, last) = (
        first.format("%Y-%m-%dT%H:%M:%SZ").to_string(),
        last.format("%Y-%m-%dT%H:%M:%SZ").to_string(),
    );
    record_event(
        store,
        &pod,
        "Warning",
        "FailedAttachVolume",
        &message,
        "attachdetach-controller",
        None,
        &first,
        &last,
        opts.event_count.max(1),
    );
    let volume_name = d["spec"]["template"]["spec"]["volumes"]
        .as_array()
        .and_then(|vs| {
            vs.iter()
                .find(|v| v["persistentVolumeClaim"]["claimName"] == claim.as_str())
        })
        .and_then(|v| v["name"].as_str())
        .unwrap_or("data")
        .to_string();
    record_event(
        store,
        &pod,
        "Warning",
        "FailedMount",
        &controller::failed_mount_message(&volume_name),
        "kubelet",
        Some(&target_node),
        &first,
        &last,
        opts.event_count.max(1),
    );

    Ok(MultiAttachScene {
        namespace: ns.to_string(),
        deployment: deployment.to_string(),
        old_replicaset: current["metadata"]["name"]
            .as_str()
            .unwrap_or("")
            .to_string(),
        new_replicaset: rs["metadata"]["name"].as_str().unwrap_or("").to_string(),
        stuck_pod: pod["metadata"]["name"].as_str().unwrap_or("").to_string(),
        holder_pods: holder_names,
        holder_node,
        target_node,
        claim,
        persistent_volume: pv,
        event_message: message,
    })
}

fn seed_cnpg(store: &mut Store, seed: &CnpgSeed) -> Result<CnpgCluster> {
    let ns = seed.namespace.as_str();
    let c = seed.cluster.as_str();
    ensure_nodes(store, &seed.nodes)?;
    put(
        store,
        json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}}),
    )?;
    let app_secret = format!("{c}-app");
    let rw = format!("{c}-rw");
    let uri = format!(
        "postgresql://{}@{rw}.{ns}:5432/{}",
        seed.username, seed.dbname
    );
    put(
        store,
        json!({
            "apiVersion": "v1", "kind": "Secret",
            "metadata": {"name": app_secret, "namespace": ns,
                         "labels": {"cnpg.io/cluster": c, "cnpg.io/reload": "true", "cnpg.io/userType": "app"}},
            "type": "kubernetes.io/basic-auth",
            "data": {"username": b64(&seed.username), "user": b64(&seed.username), "password": b64(&seed.password),
                     "dbname": b64(&seed.dbname), "host": b64(&rw), "port": b64("5432"), "uri": b64(&uri)},
        }),
    )?;
    for (suffix, role) in [
        ("rw", Some("primary")),
        ("ro", Some("replica")),
        ("r", None),
    ] {
        let mut selector = json!({"cnpg.io/cluster": c});
        if let Some(role) = role {
            selector["cnpg.io/instanceRole"] = json!(role);
        }
        put(
            store,
            json!({
                "apiVersion": "v1", "kind": "Service",
                "metadata": {"name": format!("{c}-{suffix}"), "namespace": ns, "labels": {"cnpg.io/cluster": c}},
                "spec": {"ports": [{"name": "postgres", "port": 5432, "targetPort": 5432, "protocol": "TCP"}],
                         "selector": selector},
            }),
        )?;
    }
    let mut primary_pod = String::new();
    for i in 1..=seed.instances.max(1) {
        let name = format!("{c}-{i}");
        let role = if i == 1 { "primary" } else { "replica" };
        let claim = name.clone();
        let labels = json!({"cnpg.io/cluster": c, "cnpg.io/instanceName": name, "cnpg.io/instanceRole": role,
                            "cnpg.io/podRole": "instance", "role": role});
        let pv = seed_claim(store, ns, &claim, &json!({"cnpg.io/cluster": c}), "1Gi")?;
        let node = seed.nodes[(i as usize - 1) % seed.nodes.len()].clone();
        let mut pod = with_identity(json!({
            "apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": name, "namespace": ns, "labels": labels},
            "spec": {"nodeName": node,
                     "containers": [{"name": "postgres", "image": "ghcr.io/cloudnative-pg/postgresql:16",
                                     "ports": [{"containerPort": 5432, "name": "postgresql", "protocol": "TCP"}]}],
                     "volumes": [{"name": "pgdata", "persistentVolumeClaim": {"claimName": claim}}]},
        }));
        mark_running(&mut pod);
        store.raw_put("pods", pod);
        attach(store, &pv, &node)?;
        if i == 1 {
            primary_pod = name;
        }
    }
    Ok(CnpgCluster {
        namespace: ns.to_string(),
        cluster: c.to_string(),
        primary_pod,
        rw_service: rw,
        app_secret,
    })
}

impl KubeSim {
    /// Seeds a Harbor release as the chart lays it out, with default
    /// settings (RollingUpdate, internal database, three nodes).
    pub fn seed_harbor_release(&self, ns: &str, release: &str) -> Result<HarborRelease> {
        self.seed_harbor(&HarborSeed::new(ns, release))
    }

    pub fn seed_harbor(&self, seed: &HarborSeed) -> Result<HarborRelease> {
        let release = self
            .inner
            .write(|s| seed_harbor(s, seed))
            .context("seeding a Harbor release")?;
        if let (Some(target), Some(pod)) = (seed.database_target, &release.database_pod) {
            self.set_port_forward_target(&seed.namespace, pod, 5432, target);
        }
        Ok(release)
    }

    /// Rolls `deployment` to a new revision whose pod lands on another node
    /// and stays in ContainerCreating because the ReadWriteOnce volume is
    /// still attached to the old pod's node, with the FailedAttachVolume and
    /// FailedMount events. Deleting the old ReplicaSet lets the controllers
    /// finish the story: the old pod terminates, the attachment moves, the
    /// new pod runs.
    pub fn roll_deployment_into_multi_attach(
        &self,
        ns: &str,
        deployment: &str,
        opts: MultiAttachOptions,
    ) -> Result<MultiAttachScene> {
        self.inner
            .write(|s| roll_into_multi_attach(s, ns, deployment, &opts))
            .context("playing the Multi-Attach rollout")
    }

    /// Seeds a CloudNativePG cluster's pods, Services and `-app` Secret.
    pub fn seed_cnpg_cluster(&self, seed: &CnpgSeed) -> Result<CnpgCluster> {
        let cluster = self
            .inner
            .write(|s| seed_cnpg(s, seed))
            .context("seeding a CloudNativePG cluster")?;
        if let Some(target) = seed.database_target {
            self.set_port_forward_target(&seed.namespace, &cluster.primary_pod, 5432, target);
        }
        Ok(cluster)
    }
}
