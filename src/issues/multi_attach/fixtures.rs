//! Clusters as data, and one test per verdict and per refusal: each starts
//! from `healthy_cluster()` or `stuck_rollout()` and changes what the case
//! is about.
//!
//! The rollout: Deployment `harbor-registry` at revision 2 mounts claim
//! `harbor-registry` (ReadWriteOnce, volume `pvc-registry`). Its old pod
//! (ReplicaSet revision 1) runs on node-a, which has the volume; the new
//! pod (revision 2) waits in ContainerCreating on node-b.

use std::collections::BTreeMap;

use k8s_openapi::api::apps::v1::{Deployment, ReplicaSet};
use k8s_openapi::api::core::v1::{Event, Node, Pod};
use k8s_openapi::api::storage::v1::VolumeAttachment;
use serde::de::DeserializeOwned;
use serde_json::{json, Value};

use super::classify::{
    classify, nodes_to_read, rollout, Diagnosis, HolderOwner, NodeState, Outsider, OwnerSet,
    Verdict,
};
use super::finding::finding;
use super::observe::Snapshot;
use super::plan_deletions;
use crate::issues::harbor_workloads::{HarborDeployment, SingleNodeClaim};

const NS: &str = "harbor";
const DEPLOYMENT: &str = "harbor-registry";
const DEPLOYMENT_UID: &str = "d-0001";
const CLAIM: &str = "harbor-registry";
const PV: &str = "pvc-registry";
const OLD_RS: &str = "harbor-registry-6b8f9";
const OLD_RS_UID: &str = "rs-0001";
const NEW_RS: &str = "harbor-registry-7c4d2";
const NEW_RS_UID: &str = "rs-0002";
const OLD_POD: &str = "harbor-registry-6b8f9-aaaaa";
const NEW_POD: &str = "harbor-registry-7c4d2-bbbbb";
const FIX: &str = "harbor-doctor fix multi-attach";
const NOT_READY: &str = "Kubelet stopped posting node status.";

fn object<K: DeserializeOwned>(v: Value) -> K {
    serde_json::from_value(v).expect("a fixture is a valid object")
}

fn owner(kind: &str, name: &str, uid: &str) -> Value {
    json!([{"apiVersion": "apps/v1", "kind": kind, "name": name, "uid": uid, "controller": true}])
}

fn deployment(revision: i64, replicas: i32) -> HarborDeployment {
    let d: Deployment = object(json!({
        "metadata": {"name": DEPLOYMENT, "namespace": NS, "uid": DEPLOYMENT_UID,
                     "labels": {"app": "harbor", "component": "registry"},
                     "annotations": {"deployment.kubernetes.io/revision": revision.to_string()}},
        "spec": {"replicas": replicas,
                 "selector": {"matchLabels": {"app": "harbor", "component": "registry"}},
                 "template": {"spec": {"containers": [{"name": "registry", "image": "harbor-registry"}],
                     "volumes": [{"name": "registry-data", "persistentVolumeClaim": {"claimName": CLAIM}}]}}},
    }));
    HarborDeployment {
        deployment: d,
        claims: vec![SingleNodeClaim {
            claim: CLAIM.into(),
            volume: "registry-data".into(),
            access_modes: vec!["ReadWriteOnce".into()],
            persistent_volume: Some(PV.into()),
        }],
    }
}

fn replicaset(name: &str, uid: &str, revision: i64) -> ReplicaSet {
    object(json!({
        "metadata": {"name": name, "namespace": NS, "uid": uid,
                     "labels": {"app": "harbor", "component": "registry"},
                     "annotations": {"deployment.kubernetes.io/revision": revision.to_string()},
                     "ownerReferences": owner("Deployment", DEPLOYMENT, DEPLOYMENT_UID)},
    }))
}

/// A pod of `owners` (ownerReferences, or null for a bare pod) on `node`
/// that mounts the claim: running and ready, or waiting for its volumes.
fn pod(name: &str, owners: Value, node: &str, running: bool) -> Pod {
    let status = if running {
        json!({"phase": "Running", "conditions": [{"type": "Ready", "status": "True"}],
               "containerStatuses": [{"name": "registry", "image": "harbor-registry", "imageID": "",
                   "ready": true, "restartCount": 0, "state": {"running": {}}}]})
    } else {
        json!({"phase": "Pending",
               "containerStatuses": [{"name": "registry", "image": "harbor-registry", "imageID": "",
                   "ready": false, "restartCount": 0,
                   "state": {"waiting": {"reason": "ContainerCreating"}}}]})
    };
    object(json!({
        "metadata": {"name": name, "namespace": NS, "uid": format!("uid-{name}"),
                     "labels": {"app": "harbor", "component": "registry"},
                     "ownerReferences": owners},
        "spec": {"nodeName": node, "containers": [{"name": "registry", "image": "harbor-registry"}],
                 "volumes": [{"name": "registry-data", "persistentVolumeClaim": {"claimName": CLAIM}}]},
        "status": status,
    }))
}

fn old_pod() -> Pod {
    pod(
        OLD_POD,
        owner("ReplicaSet", OLD_RS, OLD_RS_UID),
        "node-a",
        true,
    )
}

fn new_pod(name: &str, node: &str, running: bool) -> Pod {
    pod(name, owner("ReplicaSet", NEW_RS, NEW_RS_UID), node, running)
}

fn event(message: &str) -> Event {
    object(json!({
        "metadata": {"name": format!("{NEW_POD}.17f0"), "namespace": NS},
        "involvedObject": {"kind": "Pod", "namespace": NS, "name": NEW_POD, "uid": format!("uid-{NEW_POD}")},
        "reason": "FailedAttachVolume", "type": "Warning", "count": 3,
        "lastTimestamp": "2025-06-01T10:00:00Z",
        "message": message,
    }))
}

fn used_by_old_pod() -> String {
    format!("Multi-Attach error for volume \"{PV}\" Volume is already used by pod(s) {OLD_POD}")
}

fn attachment(node: &str) -> VolumeAttachment {
    object(json!({
        "metadata": {"name": format!("csi-{PV}-{node}")},
        "spec": {"attacher": "csi.example.com", "nodeName": node,
                 "source": {"persistentVolumeName": PV}},
        "status": {"attached": true},
    }))
}

fn node(name: &str, ready: bool) -> (String, Node) {
    let condition = if ready {
        json!({"type": "Ready", "status": "True"})
    } else {
        json!({"type": "Ready", "status": "Unknown", "reason": "NodeStatusUnknown", "message": NOT_READY})
    };
    (
        name.to_string(),
        object(json!({"metadata": {"name": name}, "status": {"conditions": [condition]}})),
    )
}

fn nodes(ready: &[(&str, bool)]) -> BTreeMap<String, Node> {
    ready.iter().map(|(n, r)| node(n, *r)).collect()
}

/// The rollout finished: the new pod runs on node-b, which has the volume.
fn healthy_cluster() -> Snapshot {
    Snapshot {
        deployments: vec![deployment(2, 1)],
        replicasets: vec![
            replicaset(OLD_RS, OLD_RS_UID, 1),
            replicaset(NEW_RS, NEW_RS_UID, 2),
        ],
        pods: vec![new_pod(NEW_POD, "node-b", true)],
        events: vec![],
        attachments: vec![attachment("node-b")],
        nodes: nodes(&[("node-a", true), ("node-b", true), ("node-c", true)]),
    }
}

/// The rollout stuck: the old pod still runs on node-a and has the volume.
fn stuck_rollout() -> Snapshot {
    Snapshot {
        pods: vec![old_pod(), new_pod(NEW_POD, "node-b", false)],
        events: vec![event(&used_by_old_pod())],
        attachments: vec![attachment("node-a")],
        ..healthy_cluster()
    }
}

fn old_set() -> OwnerSet {
    OwnerSet {
        name: OLD_RS.into(),
        uid: OLD_RS_UID.into(),
        revision: Some(1),
        current: false,
    }
}

/// The one diagnosis of a snapshot.
fn only(snapshot: &Snapshot) -> Diagnosis {
    let mut found = classify(snapshot);
    assert_eq!(found.len(), 1, "{found:#?}");
    found.remove(0)
}

/// A verdict the repair does not act on: no repair offered, and the plan
/// refuses with the finding's words.
fn assert_refused(snapshot: &Snapshot, words: &str) {
    let d = only(snapshot);
    let f = finding(NS, FIX, &d);
    assert_eq!(f.repair, None, "{}", f.summary);
    assert!(f.summary.contains(words), "{}", f.summary);
    let plan = plan_deletions(NS, FIX, &[d]);
    assert!(plan.steps.is_empty() && plan.targets.is_empty());
    assert_eq!(
        plan.refusals,
        vec![format!("deployment {NS}/{DEPLOYMENT}: {}", f.summary)]
    );
}

#[test]
fn a_healthy_cluster_has_nothing_stuck_and_no_node_to_read() {
    let s = healthy_cluster();
    assert!(classify(&s).is_empty());
    assert!(nodes_to_read(&s).is_empty());
}

#[test]
fn a_pod_whose_volume_is_attached_to_its_own_node_is_not_stuck() {
    // The old pod is gone and the volume already moved: the new pod only
    // waits for the mount.
    let mut s = healthy_cluster();
    s.pods = vec![new_pod(NEW_POD, "node-b", false)];
    assert!(classify(&s).is_empty());
}

#[test]
fn a_stale_holder_on_a_ready_node_is_deleted() {
    let s = stuck_rollout();
    assert_eq!(nodes_to_read(&s), ["node-a".to_string()].into());
    let d = only(&s);
    assert_eq!(d.verdict, Verdict::DeleteStale(vec![old_set()]));
    assert_eq!(
        (d.stuck.pod.as_str(), d.stuck.node.as_str()),
        (NEW_POD, "node-b")
    );
    assert_eq!(d.stuck.current_replicaset.as_deref(), Some(NEW_RS));
    assert_eq!(d.stuck.holders[0].owner, HolderOwner::Deployment(old_set()));
    assert_eq!(d.nodes, [("node-a".to_string(), NodeState::Ready)].into());
    let f = finding(NS, FIX, &d);
    assert_eq!(f.repair.as_deref(), Some(FIX));
    assert!(
        f.summary
            .contains(&format!("stale ReplicaSet {OLD_RS} (revision 1)")),
        "{}",
        f.summary
    );
    assert_eq!(f.evidence["event"]["form"], "used-by-pods");
    assert_eq!(f.evidence["event"]["count"], 3);
    assert_eq!(f.evidence["holders"][0]["stale"], true);

    let plan = plan_deletions(NS, FIX, &[d]);
    assert!(plan.refusals.is_empty());
    assert_eq!(plan.steps.len(), 1);
    assert_eq!(plan.steps[0].target, format!("replicaset {NS}/{OLD_RS}"));
    assert_eq!(plan.targets[0].uid, OLD_RS_UID);
    assert_eq!(plan.waiting[DEPLOYMENT], vec![NEW_POD.to_string()]);
}

#[test]
fn a_holder_on_a_notready_node_is_refused() {
    let mut s = stuck_rollout();
    s.nodes.extend([node("node-a", false)]);
    assert_eq!(
        only(&s).verdict,
        Verdict::HolderNodeDown(vec![(
            "node-a".into(),
            NodeState::NotReady(NOT_READY.into())
        )])
    );
    assert_refused(
        &s,
        "node-a is NotReady (Kubelet stopped posting node status.)",
    );
    assert_refused(&s, "`kubectl delete node node-a`");
}

#[test]
fn a_holder_on_a_node_that_is_gone_is_refused() {
    let mut s = stuck_rollout();
    s.nodes.remove("node-a");
    assert_eq!(
        only(&s).verdict,
        Verdict::HolderNodeDown(vec![("node-a".into(), NodeState::Gone)])
    );
    assert_refused(
        &s,
        &format!("`kubectl -n {NS} delete pod {OLD_POD} --grace-period=0 --force`"),
    );
}

#[test]
fn a_holder_of_the_current_replicaset_is_refused() {
    // Two replicas of the current revision on one ReadWriteOnce volume:
    // the first has it on node-a, the second can never start on node-b.
    let mut s = stuck_rollout();
    s.deployments = vec![deployment(2, 2)];
    s.pods = vec![
        new_pod("harbor-registry-7c4d2-first", "node-a", true),
        new_pod(NEW_POD, "node-b", false),
    ];
    s.events = vec![];
    assert_eq!(only(&s).verdict, Verdict::HolderIsCurrent);
    assert_refused(&s, &format!("scale deployment {DEPLOYMENT} --replicas=1"));
}

#[test]
fn a_pod_outside_the_deployment_holding_the_volume_is_refused() {
    for (owners, shown) in [
        (Value::Null, "pod debug-shell (no owner (a bare pod))"),
        (
            owner("Job", "registry-gc", "job-1"),
            "pod debug-shell (Job registry-gc)",
        ),
    ] {
        let mut s = stuck_rollout();
        s.pods.push(pod("debug-shell", owners, "node-c", true));
        match only(&s).verdict {
            Verdict::HolderElsewhere(Outsider::Pod(h)) => assert_eq!(h.name, "debug-shell"),
            other => panic!("{other:?}"),
        }
        assert_refused(
            &s,
            &format!("held by {shown}, outside Deployment {DEPLOYMENT}"),
        );
    }
}

#[test]
fn pods_in_other_namespaces_holding_the_volume_are_refused() {
    let mut s = stuck_rollout();
    s.pods = vec![new_pod(NEW_POD, "node-b", false)];
    s.events = vec![event(&format!(
        "Multi-Attach error for volume \"{PV}\" Volume is already used by 2 pod(s) in different namespaces"
    ))];
    assert_eq!(
        only(&s).verdict,
        Verdict::HolderElsewhere(Outsider::OtherNamespaces(2))
    );
    assert_refused(&s, "held by 2 pod(s) in other namespaces");
}

#[test]
fn an_attachment_no_pod_uses_waits_for_the_detach() {
    let mut s = stuck_rollout();
    s.pods = vec![new_pod(NEW_POD, "node-b", false)];
    s.events = vec![];
    let d = only(&s);
    assert_eq!(d.verdict, Verdict::DetachPending);
    assert!(d.stuck.event.is_none() && d.stuck.holders.is_empty());
    assert_refused(
        &s,
        &format!("`kubectl describe volumeattachment csi-{PV}-node-a`"),
    );
}

#[test]
fn an_expired_event_does_not_hide_the_conflict_the_attachment_shows() {
    let mut s = stuck_rollout();
    s.events = vec![];
    let d = only(&s);
    assert!(d.stuck.event.is_none());
    assert_eq!(d.stuck.attachments[0].node, "node-a");
    assert_eq!(d.verdict, Verdict::DeleteStale(vec![old_set()]));
    assert_eq!(finding(NS, FIX, &d).evidence["event"], Value::Null);
}

#[test]
fn every_message_form_names_the_event_and_keeps_the_verdict() {
    let forms = [
        (
            "Volume is already exclusively attached to one node and can't be attached to another",
            "exclusively-attached",
        ),
        (
            &format!("Volume is already used by pod(s) {OLD_POD}") as &str,
            "used-by-pods",
        ),
        (
            &format!(
                "Volume is already used by pod(s) {OLD_POD} and 2 pod(s) in different namespaces"
            ),
            "used-by-pods-and-other-namespaces",
        ),
        (
            "Volume is already used by 1 pod(s) in different namespaces",
            "used-in-other-namespaces",
        ),
    ];
    for (tail, form) in forms {
        let mut s = stuck_rollout();
        s.events = vec![event(&format!(
            "Multi-Attach error for volume \"{PV}\" {tail}"
        ))];
        let d = only(&s);
        let parsed = d.stuck.event.as_ref().and_then(|e| e.parsed.as_ref());
        assert_eq!(parsed.map(|p| p.form), Some(form));
        // The old pod mounts the claim on node-a: it holds the volume
        // whether or not the message names it.
        assert_eq!(d.verdict, Verdict::DeleteStale(vec![old_set()]), "{form}");
    }
}

#[test]
fn an_event_about_another_volume_is_not_this_claims() {
    let mut s = stuck_rollout();
    s.events = vec![event(
        "Multi-Attach error for volume \"pvc-other\" Volume is already used by pod(s) somebody",
    )];
    let d = only(&s);
    assert!(d.stuck.event.is_none());
    assert_eq!(d.verdict, Verdict::DeleteStale(vec![old_set()]));
}

#[test]
fn one_stale_replicaset_holding_two_claims_is_deleted_once() {
    let mut s = stuck_rollout();
    let cache = SingleNodeClaim {
        claim: "harbor-registry-cache".into(),
        volume: "cache".into(),
        access_modes: vec!["ReadWriteOnce".into()],
        persistent_volume: Some("pvc-cache".into()),
    };
    s.deployments[0].claims.push(cache.clone());
    for p in &mut s.pods {
        let spec = p.spec.as_mut().expect("fixture pods have a spec");
        spec.volumes.get_or_insert_default().push(object(json!(
            {"name": cache.volume, "persistentVolumeClaim": {"claimName": cache.claim}}
        )));
    }
    let found = classify(&s);
    let claims: Vec<&str> = found.iter().map(|d| d.stuck.claim.claim.as_str()).collect();
    assert_eq!(claims, [CLAIM, "harbor-registry-cache"]);
    assert!(found
        .iter()
        .all(|d| d.verdict == Verdict::DeleteStale(vec![old_set()])));
    let plan = plan_deletions(NS, FIX, &found);
    assert_eq!(plan.steps.len(), 1);
    assert_eq!(plan.targets.len(), 1);
    assert!(plan.waiting[DEPLOYMENT].contains(&NEW_POD.to_string()));
}

#[test]
fn the_rollout_is_done_once_the_stuck_pod_is_ready_and_the_old_one_gone() {
    let d = deployment(2, 1).deployment;
    let waiting = vec![NEW_POD.to_string()];
    let stuck = stuck_rollout();
    let r = rollout(DEPLOYMENT, Some(&d), &stuck.pods, &waiting);
    assert!(!r.done);
    assert_eq!(
        r.state,
        format!(
            "{DEPLOYMENT} 1/1 ready: {OLD_POD} Running (ready) on node-a, {NEW_POD} Pending (ContainerCreating) on node-b"
        )
    );
    let r = rollout(DEPLOYMENT, Some(&d), &healthy_cluster().pods, &waiting);
    assert!(r.done, "{}", r.state);
    let r = rollout(DEPLOYMENT, None, &[], &waiting);
    assert_eq!(
        (r.done, r.state.as_str()),
        (false, "Deployment harbor-registry no longer exists")
    );
}
