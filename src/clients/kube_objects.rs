//! Reading Kubernetes objects: the fields the checks ask about, with the
//! meaning the API gives an absent field, so that issue modules speak of
//! a pod's node or a ReplicaSet's revision instead of walking Options.

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{Event, Node, Pod};
use k8s_openapi::api::storage::v1::VolumeAttachment;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use kube::core::Selector;
use kube::Resource;
use serde_json::Value;

/// The annotation a Deployment and its ReplicaSets carry: which rollout
/// made the ReplicaSet, and which one the Deployment is at.
pub const REVISION: &str = "deployment.kubernetes.io/revision";

pub fn name<K: Resource>(o: &K) -> String {
    o.meta().name.clone().unwrap_or_default()
}

pub fn uid<K: Resource>(o: &K) -> String {
    o.meta().uid.clone().unwrap_or_default()
}

/// Whether the object is being deleted (it has a deletionTimestamp).
pub fn is_terminating<K: Resource>(o: &K) -> bool {
    o.meta().deletion_timestamp.is_some()
}

/// A Deployment's or ReplicaSet's rollout revision.
pub fn revision_of<K: Resource>(o: &K) -> Option<i64> {
    o.meta()
        .annotations
        .as_ref()
        .and_then(|a| a.get(REVISION))
        .and_then(|r| r.parse().ok())
}

/// The object that owns another: its controller, else its first owner.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Owner {
    pub kind: String,
    pub name: String,
    pub uid: String,
}

pub fn owner_of<K: Resource>(o: &K) -> Option<Owner> {
    let refs = o.meta().owner_references.as_ref()?;
    refs.iter()
        .find(|r| r.controller == Some(true))
        .or(refs.first())
        .map(|r| Owner {
            kind: r.kind.clone(),
            name: r.name.clone(),
            uid: r.uid.clone(),
        })
}

/// The replicas a Deployment asks for (1 when unset, as the API defaults it).
pub fn desired_replicas(d: &Deployment) -> usize {
    d.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1).max(0) as usize
}

/// The label selector that picks a Deployment's pods; None when it has
/// none or an empty one (the API rejects those for apps/v1, and listing
/// with one would return every pod in the namespace).
pub fn pod_selector(d: &Deployment) -> Option<&LabelSelector> {
    let s = &d.spec.as_ref()?.selector;
    let empty = s.match_labels.as_ref().is_none_or(|l| l.is_empty())
        && s.match_expressions.as_ref().is_none_or(|e| e.is_empty());
    (!empty).then_some(s)
}

/// A label selector in the API's query syntax, matchLabels and
/// matchExpressions both. Fails on an operator Kubernetes does not have.
pub fn selector_query(
    selector: &LabelSelector,
) -> Result<String, kube::core::ParseExpressionError> {
    Ok(Selector::try_from(selector.clone())?.to_string())
}

pub fn phase(pod: &Pod) -> &str {
    pod.status
        .as_ref()
        .and_then(|s| s.phase.as_deref())
        .unwrap_or("")
}

/// The node a pod is scheduled on; empty when not scheduled.
pub fn node_of(pod: &Pod) -> &str {
    pod.spec
        .as_ref()
        .and_then(|s| s.node_name.as_deref())
        .unwrap_or("")
}

/// Whether the pod has finished for good (Succeeded or Failed).
pub fn has_finished(pod: &Pod) -> bool {
    matches!(phase(pod), "Succeeded" | "Failed")
}

pub fn is_ready(pod: &Pod) -> bool {
    pod.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|c| c.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
}

pub fn mounts_claim(pod: &Pod, claim: &str) -> bool {
    pod.spec
        .as_ref()
        .and_then(|s| s.volumes.as_ref())
        .is_some_and(|vs| {
            vs.iter().any(|v| {
                v.persistent_volume_claim
                    .as_ref()
                    .is_some_and(|c| c.claim_name == claim)
            })
        })
}

/// A pod that waits for its volumes: scheduled, Pending, containers not
/// started (ContainerCreating, or no status yet).
pub fn waits_for_volumes(pod: &Pod) -> bool {
    if phase(pod) != "Pending" || node_of(pod).is_empty() || is_terminating(pod) {
        return false;
    }
    let statuses = pod
        .status
        .as_ref()
        .and_then(|s| s.container_statuses.as_ref());
    match statuses {
        None => true,
        Some(cs) => cs.iter().all(|c| {
            c.state
                .as_ref()
                .and_then(|s| s.waiting.as_ref())
                .is_some_and(|w| w.reason.as_deref().is_none_or(|r| r == "ContainerCreating"))
        }),
    }
}

/// What a pod shows as its state, the way kubectl shows it.
pub fn pod_state(pod: &Pod) -> String {
    if is_terminating(pod) {
        return "Terminating".into();
    }
    let waiting = pod
        .status
        .as_ref()
        .and_then(|s| s.container_statuses.as_ref())
        .and_then(|cs| {
            cs.iter()
                .find_map(|c| c.state.as_ref()?.waiting.as_ref()?.reason.clone())
        });
    match waiting {
        Some(w) => format!("{} ({w})", phase(pod)),
        None if is_ready(pod) => format!("{} (ready)", phase(pod)),
        None => phase(pod).to_string(),
    }
}

/// Ok when the node reports Ready; else why not, as the node says it.
pub fn node_readiness(node: &Node) -> Result<(), String> {
    let ready = node
        .status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .and_then(|c| c.iter().find(|c| c.type_ == "Ready"));
    match ready {
        Some(c) if c.status == "True" => Ok(()),
        Some(c) => Err(c
            .message
            .clone()
            .or(c.reason.clone())
            .unwrap_or_else(|| format!("Ready={}", c.status))),
        None => Err("no Ready condition reported".into()),
    }
}

/// Whether an event is about the object with `uid` (or, for an event that
/// names no uid, the object called `name`).
pub fn event_involves(e: &Event, uid: &str, name: &str) -> bool {
    let io = &e.involved_object;
    io.uid.as_deref() == Some(uid) || (io.uid.is_none() && io.name.as_deref() == Some(name))
}

/// When an event was last seen (lastTimestamp, else eventTime) as the API
/// writes it; null when it carries neither.
pub fn event_last_seen(e: &Event) -> Value {
    e.last_timestamp
        .as_ref()
        .map(|t| serde_json::to_value(t).unwrap_or(Value::Null))
        .or_else(|| {
            e.event_time
                .as_ref()
                .map(|t| serde_json::to_value(t).unwrap_or(Value::Null))
        })
        .unwrap_or(Value::Null)
}

/// How often an event happened: its series count, else its count, else once.
pub fn event_count(e: &Event) -> i64 {
    e.series
        .as_ref()
        .and_then(|s| s.count)
        .or(e.count)
        .unwrap_or(1) as i64
}

/// The PersistentVolume a VolumeAttachment attaches (None for inline volumes).
pub fn attached_volume(va: &VolumeAttachment) -> Option<&str> {
    va.spec.source.persistent_volume_name.as_deref()
}

/// The node a VolumeAttachment attaches to.
pub fn attached_node(va: &VolumeAttachment) -> &str {
    &va.spec.node_name
}

#[cfg(test)]
mod tests {
    use super::*;

    fn deployment(selector: serde_json::Value) -> Deployment {
        serde_json::from_value(serde_json::json!({
            "metadata": {"name": "harbor-registry"},
            "spec": {"selector": selector, "template": {}},
        }))
        .unwrap()
    }

    #[test]
    fn a_selector_keeps_its_expressions() {
        let d = deployment(serde_json::json!({
            "matchLabels": {"app": "harbor", "component": "registry"},
            "matchExpressions": [
                {"key": "release", "operator": "In", "values": ["harbor", "harbor-canary"]},
                {"key": "legacy", "operator": "DoesNotExist"},
            ],
        }));
        let sel = pod_selector(&d).expect("a selector");
        assert_eq!(
            selector_query(sel).unwrap(),
            "app=harbor,component=registry,release in (harbor,harbor-canary),!legacy"
        );
    }

    #[test]
    fn an_unknown_operator_or_an_empty_selector_selects_nothing() {
        let d = deployment(serde_json::json!({
            "matchExpressions": [{"key": "tier", "operator": "Near", "values": ["x"]}],
        }));
        assert!(selector_query(pod_selector(&d).unwrap()).is_err());
        assert!(pod_selector(&deployment(serde_json::json!({}))).is_none());
        assert!(pod_selector(&deployment(serde_json::json!({"matchLabels": {}}))).is_none());
    }

    #[test]
    fn a_node_says_why_it_is_not_ready() {
        let node = |conditions: serde_json::Value| -> Node {
            serde_json::from_value(serde_json::json!({
                "metadata": {"name": "node-a"},
                "status": {"conditions": conditions},
            }))
            .unwrap()
        };
        assert_eq!(
            node_readiness(&node(
                serde_json::json!([{"type": "Ready", "status": "True"}])
            )),
            Ok(())
        );
        assert_eq!(
            node_readiness(&node(serde_json::json!([
                {"type": "Ready", "status": "Unknown", "reason": "NodeStatusUnknown",
                 "message": "Kubelet stopped posting node status."}
            ]))),
            Err("Kubelet stopped posting node status.".into())
        );
        assert_eq!(
            node_readiness(&node(
                serde_json::json!([{"type": "Ready", "status": "False"}])
            )),
            Err("Ready=False".into())
        );
        assert_eq!(
            node_readiness(&node(serde_json::json!([]))),
            Err("no Ready condition reported".into())
        );
    }
}
