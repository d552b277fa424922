//! The cluster's moving parts, reduced to what the doctor's stories need:
//! the garbage collector (ownerReferences, foreground deletion), graceful
//! pod termination by the kubelet, a ReplicaSet controller, the Deployment
//! controller's status and its scale-down of old ReplicaSets once the new
//! one is ready, and the attach/detach controller with the kubelet starting
//! pods once their ReadWriteOnce volumes are attached to their node, and
//! the ServiceAccount controller's `default` account in every namespace.
//!
//! The controllers run in one background loop that wakes after every write
//! and whenever a timed step (a pod's termination, a volume's attachment)
//! is due. They write with full rights, through the store directly.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use super::catalog;
use super::store::{self, DeleteOptions, Store};
use super::{Inner, Timing};

#[derive(Default)]
pub(crate) struct ControllerState {
    /// When each waiting pod's volumes became attached to its node.
    attached_at: HashMap<String, Instant>,
}

pub(crate) async fn run(inner: Arc<Inner>) {
    let mut stopped = inner.stopped.subscribe();
    loop {
        let next = reconcile(&inner).unwrap_or(Duration::from_secs(3600));
        tokio::select! {
            _ = inner.wake.notified() => {}
            _ = tokio::time::sleep(next) => {}
            _ = stopped.changed() => return,
        }
        if *stopped.borrow() {
            return;
        }
    }
}

/// Runs every controller until nothing changes; returns when the next
/// timed step is due.
fn reconcile(inner: &Inner) -> Option<Duration> {
    let timing = *inner.timing.lock();
    let mut store = inner.store.lock();
    let mut state = inner.controller.lock();
    let mut next: Option<Duration> = None;
    for _ in 0..20 {
        let mut changed = false;
        changed |= finish_terminations(&mut store, timing, &mut next);
        changed |= collect_garbage(&mut store);
        changed |= finish_foreground_deletions(&mut store);
        changed |= run_replicasets(&mut store);
        changed |= schedule_pods(&mut store);
        changed |= detach_volumes(&mut store);
        changed |= start_pods(&mut store, &mut state, timing, &mut next);
        changed |= update_deployments(&mut store);
        changed |= ensure_default_service_accounts(&mut store);
        if !changed {
            break;
        }
    }
    next
}

/// The ServiceAccount controller: every namespace that is not being
/// deleted has a `default` ServiceAccount, made again when it is deleted,
/// except where a test broke the controller for that namespace. Token
/// Secrets are not made: since Kubernetes 1.24 the controller makes none.
pub(crate) fn ensure_default_service_accounts(store: &mut Store) -> bool {
    let missing: Vec<String> = store
        .raw_list("namespaces", None)
        .into_iter()
        .filter(|ns| !is_deleting(ns) && ns["status"]["phase"] != "Terminating")
        .map(name_of)
        .filter(|ns| {
            !store.service_account_controller_broken.contains(ns)
                && store.raw_get("serviceaccounts", ns, "default").is_none()
        })
        .collect();
    for ns in &missing {
        let account = with_identity(json!({
            "apiVersion": "v1",
            "kind": "ServiceAccount",
            "metadata": {"name": "default", "namespace": ns},
        }));
        store.raw_put("serviceaccounts", account);
    }
    !missing.is_empty()
}

fn soonest(next: &mut Option<Duration>, d: Duration) {
    let d = d.max(Duration::from_millis(5));
    *next = Some(next.map_or(d, |n| n.min(d)));
}

fn name_of(obj: &Value) -> String {
    obj["metadata"]["name"].as_str().unwrap_or("").to_string()
}

fn ns_of(obj: &Value) -> String {
    obj["metadata"]["namespace"]
        .as_str()
        .unwrap_or("")
        .to_string()
}

fn uid_of(obj: &Value) -> String {
    obj["metadata"]["uid"].as_str().unwrap_or("").to_string()
}

fn is_deleting(obj: &Value) -> bool {
    obj["metadata"]["deletionTimestamp"].is_string()
}

/// Some(true) Ready, Some(false) NotReady or Unknown, None no such node.
pub(crate) fn node_ready(store: &Store, node: &str) -> Option<bool> {
    let n = store.raw_get("nodes", "", node)?;
    Some(
        n["status"]["conditions"]
            .as_array()
            .and_then(|c| c.iter().find(|c| c["type"] == "Ready"))
            .is_some_and(|c| c["status"] == "True"),
    )
}

pub(crate) fn pod_is_ready(pod: &Value) -> bool {
    pod["status"]["conditions"]
        .as_array()
        .and_then(|c| c.iter().find(|c| c["type"] == "Ready"))
        .is_some_and(|c| c["status"] == "True")
}

fn owned_by<'a>(objs: &'a [&'a Value], owner_uid: &str) -> Vec<&'a Value> {
    objs.iter()
        .copied()
        .filter(|o| store::owner_uids(o).iter().any(|u| u == owner_uid))
        .collect()
}

/// Gives an object made by a controller the identity the server assigns.
pub(crate) fn with_identity(mut obj: Value) -> Value {
    obj["metadata"]["uid"] = json!(uuid::Uuid::new_v4().to_string());
    if obj["metadata"]["creationTimestamp"].is_null() {
        obj["metadata"]["creationTimestamp"] = json!(store::now());
    }
    obj
}

/// Records an event about `involved` in core/v1 form.
#[allow(clippy::too_many_arguments)]
pub(crate) fn record_event(
    store: &mut Store,
    involved: &Value,
    event_type: &str,
    reason: &str,
    message: &str,
    component: &str,
    host: Option<&str>,
    first: &str,
    last: &str,
    count: u32,
) -> Value {
    let ns = ns_of(involved);
    let name = format!("{}.{:016x}", name_of(involved), rand::random::<u64>());
    let mut source = json!({"component": component});
    if let Some(h) = host {
        source["host"] = json!(h);
    }
    let event = with_identity(json!({
        "apiVersion": "v1",
        "kind": "Event",
        "metadata": {"name": name, "namespace": ns, "creationTimestamp": first},
        "involvedObject": {
            "apiVersion": involved["apiVersion"],
            "kind": involved["kind"],
            "name": name_of(involved),
            "namespace": ns,
            "uid": uid_of(involved),
            "resourceVersion": involved["metadata"]["resourceVersion"],
        },
        "reason": reason,
        "message": message,
        "source": source,
        "firstTimestamp": first,
        "lastTimestamp": last,
        "count": count,
        "type": event_type,
        "eventTime": null,
        "reportingComponent": component,
        "reportingInstance": host.unwrap_or(""),
    }));
    store.raw_put("events", event)
}

fn finish_terminations(store: &mut Store, timing: Timing, next: &mut Option<Duration>) -> bool {
    if store.terminating.is_empty() {
        return false;
    }
    let pods: HashMap<String, (String, String, String)> = store
        .raw_list("pods", None)
        .into_iter()
        .filter(|p| is_deleting(p))
        .map(|p| {
            (
                uid_of(p),
                (
                    ns_of(p),
                    name_of(p),
                    p["spec"]["nodeName"].as_str().unwrap_or("").to_string(),
                ),
            )
        })
        .collect();
    let mut changed = false;
    let terminating: Vec<(String, Instant)> = store
        .terminating
        .iter()
        .map(|(k, v)| (k.clone(), *v))
        .collect();
    for (uid, since) in terminating {
        let Some((ns, name, node)) = pods.get(&uid) else {
            store.terminating.remove(&uid);
            continue;
        };
        // A kubelet that does not report cannot confirm the pod stopped.
        if node_ready(store, node) == Some(false) {
            continue;
        }
        let elapsed = since.elapsed();
        if elapsed >= timing.pod_termination {
            store.raw_remove("pods", ns, name);
            changed = true;
        } else {
            soonest(next, timing.pod_termination - elapsed);
        }
    }
    changed
}

fn collect_garbage(store: &mut Store) -> bool {
    // uid -> whether the owner is being deleted in the foreground.
    let owners: HashMap<String, bool> = store
        .all()
        .map(|(_, v)| {
            let foreground = is_deleting(v)
                && v["metadata"]["finalizers"]
                    .as_array()
                    .is_some_and(|f| f.iter().any(|x| x == "foregroundDeletion"));
            (uid_of(v), foreground)
        })
        .collect();
    let doomed: Vec<(Value, &'static str)> = store
        .all()
        .filter(|(_, v)| !is_deleting(v))
        .filter_map(|(_, v)| {
            let refs = store::owner_uids(v);
            if refs.is_empty() {
                return None;
            }
            let gone = refs.iter().all(|u| !owners.contains_key(u));
            let foreground = refs.iter().any(|u| owners.get(u) == Some(&true));
            if gone {
                Some((v.clone(), "Background"))
            } else if foreground {
                Some((v.clone(), "Foreground"))
            } else {
                None
            }
        })
        .collect();
    let mut changed = false;
    for (obj, policy) in doomed {
        let Some(rt) = catalog::by_kind(
            obj["apiVersion"].as_str().unwrap_or(""),
            obj["kind"].as_str().unwrap_or(""),
        ) else {
            continue;
        };
        let opts = DeleteOptions {
            propagation: Some(policy.to_string()),
            ..DeleteOptions::default()
        };
        if store
            .delete(rt, &ns_of(&obj), &name_of(&obj), &opts)
            .is_ok()
        {
            changed = true;
        }
    }
    changed
}

fn finish_foreground_deletions(store: &mut Store) -> bool {
    let waiting: Vec<(&'static str, Value)> = store
        .all()
        .filter(|(_, v)| {
            is_deleting(v)
                && v["metadata"]["finalizers"]
                    .as_array()
                    .is_some_and(|f| f.iter().any(|x| x == "foregroundDeletion"))
        })
        .map(|(k, v)| (k.0, v.clone()))
        .collect();
    let mut changed = false;
    for (storage, mut obj) in waiting {
        let uid = uid_of(&obj);
        let has_dependents = store
            .all()
            .any(|(_, v)| store::owner_uids(v).contains(&uid));
        if has_dependents {
            continue;
        }
        let finalizers: Vec<Value> = obj["metadata"]["finalizers"]
            .as_array()
            .map(|f| {
                f.iter()
                    .filter(|x| *x != "foregroundDeletion")
                    .cloned()
                    .collect()
            })
            .unwrap_or_default();
        if finalizers.is_empty() {
            store.raw_remove(storage, &ns_of(&obj), &name_of(&obj));
        } else {
            obj["metadata"]["finalizers"] = Value::Array(finalizers);
            store.raw_put(storage, obj);
        }
        changed = true;
    }
    changed
}

/// Picks a Ready, schedulable node with the fewest pods.
fn schedule(store: &Store) -> Option<String> {
    let mut load: HashMap<String, usize> = HashMap::new();
    for p in store.raw_list("pods", None) {
        if let Some(n) = p["spec"]["nodeName"].as_str() {
            *load.entry(n.to_string()).or_default() += 1;
        }
    }
    store
        .raw_list("nodes", None)
        .into_iter()
        .filter(|n| n["spec"]["unschedulable"] != true)
        .map(name_of)
        .filter(|n| node_ready(store, n) == Some(true))
        .min_by_key(|n| (load.get(n).copied().unwrap_or(0), n.clone()))
}

/// The address a simulated node reports (seeds number them from .10).
pub(crate) fn node_ip(node: &str) -> String {
    let n: u32 = node.bytes().map(u32::from).sum::<u32>() % 200;
    format!("10.0.0.{}", 10 + n)
}

/// A pod made from a ReplicaSet's template, scheduled, with its containers
/// still being created.
pub(crate) fn pod_from_template(rs: &Value, node: Option<&str>) -> Value {
    let template = &rs["spec"]["template"];
    let containers: Vec<Value> = template["spec"]["containers"]
        .as_array()
        .cloned()
        .unwrap_or_default()
        .iter()
        .map(|c| {
            json!({"name": c["name"], "image": c["image"], "ready": false, "started": false,
                   "restartCount": 0, "state": {"waiting": {"reason": "ContainerCreating"}}, "imageID": ""})
        })
        .collect();
    let mut spec = template["spec"].clone();
    let now = store::now();
    let mut conditions =
        vec![json!({"type": "PodScheduled", "status": "True", "lastTransitionTime": now})];
    let mut status =
        json!({"phase": "Pending", "containerStatuses": containers, "qosClass": "BestEffort"});
    if let Some(node) = node {
        spec["nodeName"] = json!(node);
        status["startTime"] = json!(now);
        status["hostIP"] = json!(node_ip(node));
        status["hostIPs"] = json!([{"ip": node_ip(node)}]);
        conditions.extend([
            json!({"type": "Initialized", "status": "True", "lastTransitionTime": now}),
            json!({"type": "Ready", "status": "False", "reason": "ContainersNotReady",
                   "message": "containers with unready status", "lastTransitionTime": now}),
            json!({"type": "ContainersReady", "status": "False", "reason": "ContainersNotReady",
                   "message": "containers with unready status", "lastTransitionTime": now}),
        ]);
    }
    status["conditions"] = Value::Array(conditions);
    let mut labels = template["metadata"]["labels"].clone();
    if labels.is_null() {
        labels = json!({});
    }
    with_identity(json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": format!("{}-{}", name_of(rs), store::random_suffix(5)),
            "namespace": ns_of(rs),
            "labels": labels,
            "annotations": template["metadata"]["annotations"].clone(),
            "ownerReferences": [{"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": name_of(rs),
                                 "uid": uid_of(rs), "controller": true, "blockOwnerDeletion": true}],
        },
        "spec": spec,
        "status": status,
    }))
}

/// The scheduler: binds pods that name no node to one.
fn schedule_pods(store: &mut Store) -> bool {
    let unscheduled: Vec<Value> = store
        .raw_list("pods", None)
        .into_iter()
        .filter(|p| {
            !is_deleting(p)
                && p["status"]["phase"] == "Pending"
                && p["spec"]["nodeName"].as_str().is_none_or(str::is_empty)
        })
        .cloned()
        .collect();
    let mut changed = false;
    for mut pod in unscheduled {
        let Some(node) = schedule(store) else {
            break;
        };
        pod["spec"]["nodeName"] = json!(node);
        pod["status"]["conditions"] =
            json!([{"type": "PodScheduled", "status": "True", "lastTransitionTime": store::now()}]);
        store.raw_put("pods", pod);
        changed = true;
    }
    changed
}

fn run_replicasets(store: &mut Store) -> bool {
    let rss: Vec<Value> = store
        .raw_list("replicasets.apps", None)
        .into_iter()
        .filter(|r| !is_deleting(r))
        .cloned()
        .collect();
    if rss.is_empty() {
        return false;
    }
    let mut changed = false;
    for rs in rss {
        let ns = ns_of(&rs);
        let pods: Vec<Value> = {
            let all = store.raw_list("pods", Some(&ns));
            owned_by(&all, &uid_of(&rs)).into_iter().cloned().collect()
        };
        let active: Vec<&Value> = pods.iter().filter(|p| !is_deleting(p)).collect();
        let desired = rs["spec"]["replicas"].as_i64().unwrap_or(1).max(0) as usize;
        if active.len() < desired {
            for _ in active.len()..desired {
                let node = schedule(store);
                let pod = pod_from_template(&rs, node.as_deref());
                store.raw_put("pods", pod);
            }
            changed = true;
            continue;
        }
        if active.len() > desired {
            let mut extra: Vec<&Value> = active.clone();
            extra.sort_by_key(|p| {
                std::cmp::Reverse(
                    p["metadata"]["creationTimestamp"]
                        .as_str()
                        .unwrap_or("")
                        .to_string(),
                )
            });
            let pods_rt = catalog::by_resource("", "v1", "pods").expect("pods are served");
            for p in extra.into_iter().take(active.len() - desired) {
                let _ = store.delete(pods_rt, &ns, &name_of(p), &DeleteOptions::default());
            }
            changed = true;
            continue;
        }
        let ready = active.iter().filter(|p| pod_is_ready(p)).count();
        let status = json!({
            "replicas": pods.len(),
            "fullyLabeledReplicas": pods.len(),
            "readyReplicas": ready,
            "availableReplicas": ready,
            "observedGeneration": rs["metadata"]["generation"].as_i64().unwrap_or(1),
        });
        if strip_zero(&status) != strip_zero(&rs["status"]) {
            let mut updated = rs.clone();
            updated["status"] = strip_zero(&status);
            store.raw_put("replicasets.apps", updated);
            changed = true;
        }
    }
    changed
}

/// Status counters the real server omits when zero (omitempty).
fn strip_zero(status: &Value) -> Value {
    match status.as_object() {
        Some(m) => Value::Object(
            m.iter()
                .filter(|(k, v)| !(v.as_i64() == Some(0) && *k != "replicas"))
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect(),
        ),
        None => json!({}),
    }
}

/// The PersistentVolume names a pod's claims are bound to, with whether
/// each is single-node (ReadWriteOnce / ReadWriteOncePod). None when a
/// claim is missing or unbound.
fn pod_volumes(store: &Store, pod: &Value) -> Option<Vec<(String, bool)>> {
    let ns = ns_of(pod);
    let mut out = Vec::new();
    for v in pod["spec"]["volumes"]
        .as_array()
        .map(Vec::as_slice)
        .unwrap_or(&[])
    {
        let Some(claim) = v["persistentVolumeClaim"]["claimName"].as_str() else {
            continue;
        };
        let pvc = store.raw_get("persistentvolumeclaims", &ns, claim)?;
        let pv_name = pvc["spec"]["volumeName"].as_str()?.to_string();
        let modes = store
            .raw_get("persistentvolumes", "", &pv_name)
            .map(|pv| pv["spec"]["accessModes"].clone())
            .unwrap_or_else(|| pvc["spec"]["accessModes"].clone());
        let single = modes.as_array().is_some_and(|m| {
            m.iter()
                .any(|x| x == "ReadWriteOnce" || x == "ReadWriteOncePod")
        });
        out.push((pv_name, single));
    }
    Some(out)
}

/// A pod using a volume.
struct VolumeUser {
    uid: String,
    node: String,
    namespace: String,
    name: String,
}

/// Which pods use each PersistentVolume.
fn volume_users(store: &Store) -> HashMap<String, Vec<VolumeUser>> {
    let mut users: HashMap<String, Vec<VolumeUser>> = HashMap::new();
    for pod in store.raw_list("pods", None) {
        if matches!(
            pod["status"]["phase"].as_str(),
            Some("Succeeded") | Some("Failed")
        ) {
            continue;
        }
        let node = pod["spec"]["nodeName"].as_str().unwrap_or("").to_string();
        if node.is_empty() {
            continue;
        }
        if let Some(vols) = pod_volumes(store, pod) {
            for (pv, _) in vols {
                users.entry(pv).or_default().push(VolumeUser {
                    uid: uid_of(pod),
                    node: node.clone(),
                    namespace: ns_of(pod),
                    name: name_of(pod),
                });
            }
        }
    }
    users
}

fn detach_volumes(store: &mut Store) -> bool {
    let attachments: Vec<Value> = store
        .raw_list("volumeattachments.storage.k8s.io", None)
        .into_iter()
        .cloned()
        .collect();
    if attachments.is_empty() {
        return false;
    }
    let users = volume_users(store);
    let mut changed = false;
    for va in attachments {
        let pv = va["spec"]["source"]["persistentVolumeName"]
            .as_str()
            .unwrap_or("");
        let node = va["spec"]["nodeName"].as_str().unwrap_or("");
        let in_use = users
            .get(pv)
            .is_some_and(|u| u.iter().any(|user| user.node == node));
        // The attach/detach controller waits for an unresponsive node
        // (maxWaitForUnmountDuration, six minutes) before it force-detaches;
        // the simulation never does.
        if !in_use && node_ready(store, node) == Some(true) {
            store.raw_remove("volumeattachments.storage.k8s.io", "", &name_of(&va));
            changed = true;
        }
    }
    changed
}

/// The name the CSI external-attacher gives an attachment:
/// `csi-` + sha256(volume handle + attacher + node).
pub(crate) fn attachment_name(pv: &str, attacher: &str, node: &str) -> String {
    use sha2::{Digest, Sha256};
    let digest = Sha256::digest(format!("{pv}{attacher}{node}").as_bytes());
    format!("csi-{}", hex::encode(digest))
}

pub(crate) fn attachment(pv: &str, attacher: &str, node: &str) -> Value {
    with_identity(json!({
        "apiVersion": "storage.k8s.io/v1",
        "kind": "VolumeAttachment",
        "metadata": {"name": attachment_name(pv, attacher, node),
                     "annotations": {"csi.alpha.kubernetes.io/node-id": node}},
        "spec": {"attacher": attacher, "nodeName": node, "source": {"persistentVolumeName": pv}},
        "status": {"attached": true},
    }))
}

/// Marks a pod's containers started and the pod Ready, as the kubelet
/// reports it.
pub(crate) fn mark_running(pod: &mut Value) {
    let now = store::now();
    let containers: Vec<Value> = pod["spec"]["containers"]
        .as_array()
        .cloned()
        .unwrap_or_default()
        .iter()
        .map(|c| {
            json!({"name": c["name"], "image": c["image"], "imageID": c["image"],
                   "containerID": format!("containerd://{:016x}", rand::random::<u64>()),
                   "ready": true, "started": true, "restartCount": 0,
                   "state": {"running": {"startedAt": now}}})
        })
        .collect();
    let ip = format!(
        "10.244.{}.{}",
        rand::random::<u8>() % 250,
        2 + rand::random::<u8>() % 250
    );
    let started = pod["status"]["startTime"]
        .as_str()
        .map(str::to_string)
        .unwrap_or(now.clone());
    pod["status"] = json!({
        "phase": "Running",
        "conditions": [
            {"type": "PodReadyToStartContainers", "status": "True", "lastTransitionTime": now},
            {"type": "Initialized", "status": "True", "lastTransitionTime": now},
            {"type": "Ready", "status": "True", "lastTransitionTime": now},
            {"type": "ContainersReady", "status": "True", "lastTransitionTime": now},
            {"type": "PodScheduled", "status": "True", "lastTransitionTime": now},
        ],
        "hostIP": pod["status"]["hostIP"].as_str().map(str::to_string).unwrap_or_else(|| node_ip(pod["spec"]["nodeName"].as_str().unwrap_or(""))),
        "podIP": ip,
        "podIPs": [{"ip": ip}],
        "startTime": started,
        "containerStatuses": containers,
        "qosClass": "BestEffort",
    });
}

fn start_pods(
    store: &mut Store,
    state: &mut ControllerState,
    timing: Timing,
    next: &mut Option<Duration>,
) -> bool {
    let waiting: Vec<Value> = store
        .raw_list("pods", None)
        .into_iter()
        .filter(|p| {
            p["status"]["phase"] == "Pending"
                && !is_deleting(p)
                && p["spec"]["nodeName"]
                    .as_str()
                    .is_some_and(|n| !n.is_empty())
        })
        .cloned()
        .collect();
    let live: HashSet<String> = waiting.iter().map(uid_of).collect();
    state.attached_at.retain(|uid, _| live.contains(uid));
    if waiting.is_empty() {
        return false;
    }
    let users = volume_users(store);
    let mut changed = false;
    for mut pod in waiting {
        let uid = uid_of(&pod);
        let node = pod["spec"]["nodeName"].as_str().unwrap_or("").to_string();
        if node_ready(store, &node) != Some(true) {
            continue;
        }
        let Some(volumes) = pod_volumes(store, &pod) else {
            continue;
        };
        let mut blocked = false;
        for (pv, single) in volumes.iter().filter(|(_, single)| *single) {
            let _ = single;
            let holders: Vec<&VolumeUser> = users
                .get(pv)
                .map(|u| {
                    u.iter()
                        .filter(|user| user.uid != uid && user.node != node)
                        .collect()
                })
                .unwrap_or_default();
            let attached_elsewhere = store
                .raw_list("volumeattachments.storage.k8s.io", None)
                .iter()
                .any(|va| {
                    va["spec"]["source"]["persistentVolumeName"] == pv.as_str()
                        && va["spec"]["nodeName"] != node.as_str()
                });
            if holders.is_empty() && !attached_elsewhere {
                continue;
            }
            blocked = true;
            if !has_event(store, &uid, "FailedAttachVolume") {
                let message = multi_attach_message(pv, &ns_of(&pod), &holders);
                let now = store::now();
                record_event(
                    store,
                    &pod,
                    "Warning",
                    "FailedAttachVolume",
                    &message,
                    "attachdetach-controller",
                    None,
                    &now,
                    &now,
                    1,
                );
                let volume = volume_name_for(store, &pod, pv);
                record_event(
                    store,
                    &pod,
                    "Warning",
                    "FailedMount",
                    &failed_mount_message(&volume),
                    "kubelet",
                    Some(&node),
                    &now,
                    &now,
                    1,
                );
                changed = true;
            }
        }
        if blocked {
            continue;
        }
        if !state.attached_at.contains_key(&uid) {
            for (pv, _) in &volumes {
                let attacher = store
                    .raw_get("persistentvolumes", "", pv)
                    .and_then(|p| p["spec"]["csi"]["driver"].as_str().map(str::to_string))
                    .unwrap_or_else(|| "csi.harbor-doctor.sim".to_string());
                let name = attachment_name(pv, &attacher, &node);
                if store
                    .raw_get("volumeattachments.storage.k8s.io", "", &name)
                    .is_none()
                {
                    store.raw_put(
                        "volumeattachments.storage.k8s.io",
                        attachment(pv, &attacher, &node),
                    );
                    let now = store::now();
                    record_event(
                        store,
                        &pod,
                        "Normal",
                        "SuccessfulAttachVolume",
                        &format!("AttachVolume.Attach succeeded for volume \"{pv}\" "),
                        "attachdetach-controller",
                        None,
                        &now,
                        &now,
                        1,
                    );
                    changed = true;
                }
            }
            state.attached_at.insert(uid.clone(), Instant::now());
        }
        let delay = if volumes.is_empty() {
            Duration::ZERO
        } else {
            timing.volume_attach
        };
        let elapsed = state.attached_at[&uid].elapsed();
        if elapsed >= delay {
            mark_running(&mut pod);
            store.raw_put("pods", pod);
            state.attached_at.remove(&uid);
            changed = true;
        } else {
            soonest(next, delay - elapsed);
        }
    }
    changed
}

fn has_event(store: &Store, involved_uid: &str, reason: &str) -> bool {
    store
        .raw_list("events", None)
        .iter()
        .any(|e| e["involvedObject"]["uid"] == involved_uid && e["reason"] == reason)
}

/// The attach/detach controller's wording: the holders in the pod's own
/// namespace by name, the others only counted.
fn multi_attach_message(pv: &str, ns: &str, holders: &[&VolumeUser]) -> String {
    let here: Vec<String> = holders
        .iter()
        .filter(|h| h.namespace == ns)
        .map(|h| h.name.clone())
        .collect();
    let elsewhere = holders.len() - here.len();
    let head = format!("Multi-Attach error for volume \"{pv}\" Volume is already");
    match (here.is_empty(), elsewhere) {
        (true, 0) => {
            format!("{head} exclusively attached to one node and can't be attached to another")
        }
        (true, n) => format!("{head} used by {n} pod(s) in different namespaces"),
        (false, 0) => format!("{head} used by pod(s) {}", here.join(", ")),
        (false, n) => format!(
            "{head} used by pod(s) {} and {n} pod(s) in different namespaces",
            here.join(", ")
        ),
    }
}

pub(crate) fn failed_mount_message(volume: &str) -> String {
    format!("Unable to attach or mount volumes: unmounted volumes=[{volume}], unattached volumes=[{volume}], failed to process volumes=[]: timed out waiting for the condition")
}

/// The pod's name for the volume bound to `pv`.
fn volume_name_for(store: &Store, pod: &Value, pv: &str) -> String {
    let ns = ns_of(pod);
    pod["spec"]["volumes"]
        .as_array()
        .and_then(|vs| {
            vs.iter().find(|v| {
                v["persistentVolumeClaim"]["claimName"]
                    .as_str()
                    .and_then(|c| store.raw_get("persistentvolumeclaims", &ns, c))
                    .is_some_and(|pvc| pvc["spec"]["volumeName"] == pv)
            })
        })
        .and_then(|v| v["name"].as_str())
        .unwrap_or("data")
        .to_string()
}

/// The pod-template-hash of a Deployment's template: stable, so that a
/// deleted current ReplicaSet comes back under the same name.
pub(crate) fn template_hash(template: &Value) -> String {
    use sha2::{Digest, Sha256};
    const ALPHABET: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";
    let digest = Sha256::digest(template_key(template).to_string().as_bytes());
    digest
        .iter()
        .take(10)
        .map(|b| ALPHABET[*b as usize % ALPHABET.len()] as char)
        .collect()
}

/// A template without the label the Deployment controller adds, for
/// comparing a ReplicaSet's template with its Deployment's.
fn template_key(template: &Value) -> Value {
    let mut t = template.clone();
    if let Some(labels) = t["metadata"]["labels"].as_object_mut() {
        labels.remove("pod-template-hash");
    }
    t
}

/// The ReplicaSet the Deployment controller makes for a template revision.
pub(crate) fn new_replicaset(deployment: &Value, revision: i64) -> Value {
    let hash = template_hash(&deployment["spec"]["template"]);
    let name = deployment["metadata"]["name"].as_str().unwrap_or("");
    let replicas = deployment["spec"]["replicas"].as_i64().unwrap_or(1);
    let mut template = deployment["spec"]["template"].clone();
    template["metadata"]["labels"]["pod-template-hash"] = json!(hash);
    let mut selector = deployment["spec"]["selector"].clone();
    selector["matchLabels"]["pod-template-hash"] = json!(hash);
    let labels = template["metadata"]["labels"].clone();
    with_identity(json!({
        "apiVersion": "apps/v1", "kind": "ReplicaSet",
        "metadata": {"name": format!("{name}-{hash}"), "namespace": deployment["metadata"]["namespace"],
                     "labels": labels, "generation": 1,
                     "annotations": {"deployment.kubernetes.io/revision": revision.to_string(),
                                     "deployment.kubernetes.io/desired-replicas": replicas.to_string(),
                                     "deployment.kubernetes.io/max-replicas": (replicas + 1).to_string()},
                     "ownerReferences": [{"apiVersion": "apps/v1", "kind": "Deployment", "name": name,
                                          "uid": uid_of(deployment), "controller": true, "blockOwnerDeletion": true}]},
        "spec": {"replicas": replicas, "selector": selector, "template": template},
    }))
}

fn revision(rs: &Value) -> i64 {
    rs["metadata"]["annotations"]["deployment.kubernetes.io/revision"]
        .as_str()
        .and_then(|r| r.parse().ok())
        .unwrap_or(0)
}

fn update_deployments(store: &mut Store) -> bool {
    let deployments: Vec<Value> = store
        .raw_list("deployments.apps", None)
        .into_iter()
        .filter(|d| !is_deleting(d))
        .cloned()
        .collect();
    let mut changed = false;
    for d in deployments {
        let ns = ns_of(&d);
        let rss: Vec<Value> = {
            let all = store.raw_list("replicasets.apps", Some(&ns));
            owned_by(&all, &uid_of(&d)).into_iter().cloned().collect()
        };
        let desired = d["spec"]["replicas"].as_i64().unwrap_or(1);
        let wanted = template_key(&d["spec"]["template"]);
        let current = rss
            .iter()
            .find(|r| template_key(&r["spec"]["template"]) == wanted)
            .cloned();
        let Some(current) = current else {
            // A new template (or a deleted current ReplicaSet): roll out.
            // Recreate first scales the old ReplicaSets down and waits
            // until their pods are gone.
            if d["spec"]["strategy"]["type"] == "Recreate" {
                let mut old_pods = false;
                for old in &rss {
                    if old["spec"]["replicas"].as_i64().unwrap_or(0) > 0 {
                        let mut scaled = old.clone();
                        scaled["spec"]["replicas"] = json!(0);
                        store.raw_put("replicasets.apps", scaled);
                        changed = true;
                    }
                    let all = store.raw_list("pods", Some(&ns));
                    old_pods |= !owned_by(&all, &uid_of(old)).is_empty();
                }
                if old_pods {
                    continue;
                }
            }
            let next_revision = rss.iter().map(revision).max().unwrap_or(0) + 1;
            store.raw_put("replicasets.apps", new_replicaset(&d, next_revision));
            let mut updated_d = d.clone();
            updated_d["metadata"]["annotations"]["deployment.kubernetes.io/revision"] =
                json!(next_revision.to_string());
            store.raw_put("deployments.apps", updated_d);
            changed = true;
            continue;
        };
        // A rollback returns to an older template: its ReplicaSet becomes
        // the newest revision again. The current ReplicaSet runs the
        // desired replicas; the old ones are scaled down once it is ready.
        let max_revision = rss.iter().map(revision).max().unwrap_or(0);
        let behind = revision(&current) < max_revision;
        if behind || current["spec"]["replicas"].as_i64() != Some(desired) {
            let mut scaled = current.clone();
            if behind {
                let next = (max_revision + 1).to_string();
                scaled["metadata"]["annotations"]["deployment.kubernetes.io/revision"] =
                    json!(next);
                let mut updated_d = d.clone();
                updated_d["metadata"]["annotations"]["deployment.kubernetes.io/revision"] =
                    json!(next);
                store.raw_put("deployments.apps", updated_d);
            }
            scaled["spec"]["replicas"] = json!(desired);
            store.raw_put("replicasets.apps", scaled);
            changed = true;
            continue;
        }
        if current["status"]["readyReplicas"].as_i64().unwrap_or(0) >= desired {
            for old in rss.iter().filter(|r| uid_of(r) != uid_of(&current)) {
                if old["spec"]["replicas"].as_i64().unwrap_or(0) > 0 {
                    let mut scaled = old.clone();
                    scaled["spec"]["replicas"] = json!(0);
                    store.raw_put("replicasets.apps", scaled);
                    changed = true;
                }
            }
        }
        let newest = Some(current);
        let sum = |field: &str| -> i64 {
            rss.iter()
                .map(|r| r["status"][field].as_i64().unwrap_or(0))
                .sum()
        };
        let replicas = sum("replicas");
        let ready = sum("readyReplicas");
        let updated = newest
            .as_ref()
            .map(|r| r["status"]["replicas"].as_i64().unwrap_or(0))
            .unwrap_or(0);
        let old_conditions = d["status"]["conditions"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        let condition = |ty: &str, ok: bool, reason: &str, message: String| {
            let status = if ok { "True" } else { "False" };
            let since = old_conditions
                .iter()
                .find(|c| c["type"] == ty && c["status"] == status && c["reason"] == reason)
                .map(|c| c["lastTransitionTime"].clone())
                .unwrap_or_else(|| json!(store::now()));
            json!({"type": ty, "status": status, "reason": reason, "message": message,
                   "lastTransitionTime": since, "lastUpdateTime": since})
        };
        let new_rs_name = newest.as_ref().map(name_of).unwrap_or_default();
        let new_ready = newest
            .as_ref()
            .is_some_and(|r| r["status"]["readyReplicas"].as_i64().unwrap_or(0) >= desired);
        let conditions = vec![
            if ready >= desired {
                condition(
                    "Available",
                    true,
                    "MinimumReplicasAvailable",
                    "Deployment has minimum availability.".into(),
                )
            } else {
                condition(
                    "Available",
                    false,
                    "MinimumReplicasUnavailable",
                    "Deployment does not have minimum availability.".into(),
                )
            },
            if new_ready {
                condition(
                    "Progressing",
                    true,
                    "NewReplicaSetAvailable",
                    format!("ReplicaSet \"{new_rs_name}\" has successfully progressed."),
                )
            } else {
                condition(
                    "Progressing",
                    true,
                    "ReplicaSetUpdated",
                    format!("ReplicaSet \"{new_rs_name}\" is progressing."),
                )
            },
        ];
        let mut status = strip_zero(&json!({
            "observedGeneration": d["metadata"]["generation"].as_i64().unwrap_or(1),
            "replicas": replicas,
            "updatedReplicas": updated,
            "readyReplicas": ready,
            "availableReplicas": ready,
            "unavailableReplicas": (desired - ready).max(0),
        }));
        status["conditions"] = Value::Array(conditions);
        if status != d["status"] {
            let mut updated_d = d.clone();
            updated_d["status"] = status;
            store.raw_put("deployments.apps", updated_d);
            changed = true;
        }
    }
    changed
}
