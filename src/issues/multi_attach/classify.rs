//! From a snapshot to what is stuck and what can be done about it. Pure:
//! every decision of the check and of its repair is made here, from what
//! `observe` read once.
//!
//! A pod of a Harbor Deployment is stuck when it waits for its volumes and
//! something else has its single-node claim: the FailedAttachVolume event
//! says so (in any of its four forms, old or aggregated), another pod on
//! another node mounts the claim, or a VolumeAttachment holds its volume on
//! another node (events expire; the attachment does not).

use std::collections::{BTreeMap, BTreeSet};

use k8s_openapi::api::apps::v1::{Deployment, ReplicaSet};
use k8s_openapi::api::core::v1::{Event, Pod};
use serde_json::Value;

use super::message::{parse_message, MultiAttachMessage};
use super::observe::Snapshot;
use crate::clients::kube_objects::{
    attached_node, attached_volume, desired_replicas, event_count, event_involves, event_last_seen,
    has_finished, is_ready, is_terminating, mounts_claim, name, node_of, node_readiness, owner_of,
    pod_state, revision_of, uid, waits_for_volumes,
};
use crate::issues::harbor_workloads::{HarborDeployment, SingleNodeClaim};

/// A node's state, as the holder's side of the conflict.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NodeState {
    Ready,
    NotReady(String),
    Gone,
}

/// One of the Deployment's ReplicaSets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OwnerSet {
    pub name: String,
    pub uid: String,
    pub revision: Option<i64>,
    /// Whether it is the Deployment's current revision.
    pub current: bool,
}

/// Who a pod that holds the volume belongs to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HolderOwner {
    /// One of the Deployment's own ReplicaSets.
    Deployment(OwnerSet),
    /// Any other owner, by kind and name.
    Other { kind: String, name: String },
    /// None: a bare pod.
    Bare,
}

/// A pod that holds (or that the event says holds) the volume.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HolderPod {
    pub name: String,
    pub node: String,
    pub terminating: bool,
    pub owner: HolderOwner,
}

impl HolderPod {
    /// The Deployment's ReplicaSet it belongs to, if it does.
    pub fn replicaset(&self) -> Option<&OwnerSet> {
        match &self.owner {
            HolderOwner::Deployment(o) => Some(o),
            _ => None,
        }
    }
}

/// The FailedAttachVolume event that names the stuck pod.
#[derive(Debug, Clone)]
pub struct EventSeen {
    pub message: String,
    pub parsed: Option<MultiAttachMessage>,
    /// As the API wrote it; null when the event carries no time.
    pub last_seen: Value,
    pub count: i64,
}

/// A VolumeAttachment of the volume to another node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attachment {
    pub name: String,
    pub node: String,
}

/// What holds the volume when it is not the Deployment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outsider {
    /// A pod with another owner, or none.
    Pod(HolderPod),
    /// Pods in other namespaces, which the event only counts.
    OtherNamespaces(u32),
}

/// What can be done about one stuck pod.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Every holder belongs to stale ReplicaSets of the Deployment, on Ready
    /// nodes: deleting those ReplicaSets frees the volume.
    DeleteStale(Vec<OwnerSet>),
    /// A holding node is NotReady or gone.
    HolderNodeDown(Vec<(String, NodeState)>),
    /// The current ReplicaSet's own pods hold the volume.
    HolderIsCurrent,
    /// Something outside the Deployment holds it.
    HolderElsewhere(Outsider),
    /// Attached to a Ready node where no pod uses it.
    DetachPending,
}

/// One pod stuck behind a single-node volume, and what holds the volume.
#[derive(Debug, Clone)]
pub struct Stuck {
    pub deployment: String,
    pub deployment_revision: Option<i64>,
    pub current_replicaset: Option<String>,
    pub pod: String,
    pub node: String,
    pub claim: SingleNodeClaim,
    pub event: Option<EventSeen>,
    pub holders: Vec<HolderPod>,
    pub attachments: Vec<Attachment>,
}

impl Stuck {
    /// The nodes that hold the volume, holders' first.
    fn holding_nodes(&self) -> impl Iterator<Item = &str> {
        self.holders
            .iter()
            .map(|h| h.node.as_str())
            .chain(self.attachments.iter().map(|a| a.node.as_str()))
            .filter(|n| !n.is_empty())
    }
}

/// A stuck pod judged: the state of the nodes that hold its volume, and
/// the verdict.
#[derive(Debug, Clone)]
pub struct Diagnosis {
    pub stuck: Stuck,
    pub nodes: BTreeMap<String, NodeState>,
    pub verdict: Verdict,
}

/// Every stuck pod in the snapshot with its verdict.
pub fn classify(snapshot: &Snapshot) -> Vec<Diagnosis> {
    stuck_pods(snapshot)
        .into_iter()
        .map(|stuck| judge(stuck, snapshot))
        .collect()
}

/// The nodes whose state the verdicts need: those holding a volume a
/// stuck pod waits for. `observe` reads exactly these.
pub fn nodes_to_read(snapshot: &Snapshot) -> BTreeSet<String> {
    stuck_pods(snapshot)
        .iter()
        .flat_map(|s| s.holding_nodes().map(str::to_string).collect::<Vec<_>>())
        .collect()
}

fn node_state(snapshot: &Snapshot, node: &str) -> NodeState {
    match snapshot.nodes.get(node) {
        None => NodeState::Gone,
        Some(n) => match node_readiness(n) {
            Ok(()) => NodeState::Ready,
            Err(why) => NodeState::NotReady(why),
        },
    }
}

fn judge(stuck: Stuck, snapshot: &Snapshot) -> Diagnosis {
    let nodes: BTreeMap<String, NodeState> = stuck
        .holding_nodes()
        .map(|n| (n.to_string(), node_state(snapshot, n)))
        .collect();
    let down: Vec<(String, NodeState)> = nodes
        .iter()
        .filter(|(_, s)| **s != NodeState::Ready)
        .map(|(n, s)| (n.clone(), s.clone()))
        .collect();
    let verdict = if !down.is_empty() {
        Verdict::HolderNodeDown(down)
    } else if stuck.holders.is_empty() {
        match stuck.event.as_ref().and_then(|e| e.parsed.as_ref()) {
            Some(p) if p.other_namespaces > 0 => {
                Verdict::HolderElsewhere(Outsider::OtherNamespaces(p.other_namespaces))
            }
            _ => Verdict::DetachPending,
        }
    } else if let Some(h) = stuck.holders.iter().find(|h| h.replicaset().is_none()) {
        Verdict::HolderElsewhere(Outsider::Pod(h.clone()))
    } else if stuck
        .holders
        .iter()
        .any(|h| h.replicaset().is_some_and(|o| o.current))
    {
        Verdict::HolderIsCurrent
    } else {
        let mut sets: Vec<OwnerSet> = vec![];
        for o in stuck.holders.iter().filter_map(HolderPod::replicaset) {
            if !sets.iter().any(|s| s.uid == o.uid) {
                sets.push(o.clone());
            }
        }
        Verdict::DeleteStale(sets)
    };
    Diagnosis {
        stuck,
        nodes,
        verdict,
    }
}

fn stuck_pods(snapshot: &Snapshot) -> Vec<Stuck> {
    snapshot
        .deployments
        .iter()
        .flat_map(|d| stuck_in(d, snapshot))
        .collect()
}

/// The Deployment's ReplicaSets by uid, and which of them is current: the
/// one at the Deployment's revision, else the newest.
fn replicasets_of<'a>(
    d: &Deployment,
    all: &'a [ReplicaSet],
) -> (BTreeMap<String, &'a ReplicaSet>, Option<&'a ReplicaSet>) {
    let d_uid = uid(d);
    let d_rev = revision_of(d);
    let owned: Vec<&ReplicaSet> = all
        .iter()
        .filter(|rs| owner_of(*rs).is_some_and(|o| o.uid == d_uid))
        .collect();
    let current = owned
        .iter()
        .find(|rs| d_rev.is_some() && revision_of(**rs) == d_rev)
        .or_else(|| owned.iter().max_by_key(|rs| revision_of(**rs)))
        .copied();
    (owned.iter().map(|rs| (uid(*rs), *rs)).collect(), current)
}

fn stuck_in(hd: &HarborDeployment, snapshot: &Snapshot) -> Vec<Stuck> {
    let d = &hd.deployment;
    let (owned, current) = replicasets_of(d, &snapshot.replicasets);
    let owner_set = |rs: &ReplicaSet| OwnerSet {
        name: name(rs),
        uid: uid(rs),
        revision: revision_of(rs),
        current: current.is_some_and(|c| uid(c) == uid(rs)),
    };
    let mut found = vec![];
    for pod in &snapshot.pods {
        let Some(owner) = owner_of(pod) else {
            continue;
        };
        if !owned.contains_key(&owner.uid) || !waits_for_volumes(pod) {
            continue;
        }
        for claim in hd.claims.iter().filter(|c| mounts_claim(pod, &c.claim)) {
            let event = event_about(pod, claim, &snapshot.events);
            let named: BTreeSet<String> = event
                .as_ref()
                .and_then(|e| e.parsed.as_ref())
                .map(|p| p.pods.iter().cloned().collect())
                .unwrap_or_default();
            let holders: Vec<HolderPod> = snapshot
                .pods
                .iter()
                .filter(|other| holds(other, pod, claim, &named))
                .map(|other| HolderPod {
                    name: name(other),
                    node: node_of(other).to_string(),
                    terminating: is_terminating(other),
                    owner: match owner_of(other) {
                        Some(o) => match owned.get(&o.uid) {
                            Some(rs) => HolderOwner::Deployment(owner_set(rs)),
                            None => HolderOwner::Other {
                                kind: o.kind,
                                name: o.name,
                            },
                        },
                        None => HolderOwner::Bare,
                    },
                })
                .collect();
            let attachments: Vec<Attachment> = match claim.persistent_volume.as_deref() {
                None => vec![],
                Some(pv) => snapshot
                    .attachments
                    .iter()
                    .filter(|va| {
                        attached_volume(va) == Some(pv) && attached_node(va) != node_of(pod)
                    })
                    .map(|va| Attachment {
                        name: name(va),
                        node: attached_node(va).to_string(),
                    })
                    .collect(),
            };
            if event.is_none() && holders.is_empty() && attachments.is_empty() {
                continue;
            }
            found.push(Stuck {
                deployment: hd.name().to_string(),
                deployment_revision: revision_of(d),
                current_replicaset: current.map(name),
                pod: name(pod),
                node: node_of(pod).to_string(),
                claim: claim.clone(),
                event,
                holders,
                attachments,
            });
        }
    }
    found
}

/// The newest FailedAttachVolume event about `pod` that names the claim's
/// volume (any volume while the claim is unbound).
fn event_about(pod: &Pod, claim: &SingleNodeClaim, events: &[Event]) -> Option<EventSeen> {
    let (pod_uid, pod_name) = (uid(pod), name(pod));
    events
        .iter()
        .filter(|e| event_involves(e, &pod_uid, &pod_name))
        .map(|e| {
            let message = e.message.clone().unwrap_or_default();
            EventSeen {
                parsed: parse_message(&message),
                message,
                last_seen: event_last_seen(e),
                count: event_count(e),
            }
        })
        .filter(|e| {
            e.parsed.as_ref().is_some_and(|p| {
                claim
                    .persistent_volume
                    .as_deref()
                    .is_none_or(|pv| pv == p.volume)
            })
        })
        .max_by(|a, b| a.last_seen.to_string().cmp(&b.last_seen.to_string()))
}

/// Whether `other` holds the volume `stuck` waits for: it mounts the claim
/// on another node, or the event names it. Finished pods hold nothing.
fn holds(other: &Pod, stuck: &Pod, claim: &SingleNodeClaim, named: &BTreeSet<String>) -> bool {
    if uid(other) == uid(stuck) || has_finished(other) {
        return false;
    }
    let node = node_of(other);
    let mounts_elsewhere =
        mounts_claim(other, &claim.claim) && !node.is_empty() && node != node_of(stuck);
    mounts_elsewhere || named.contains(&name(other))
}

/// How a Deployment's rollout stands after the repair.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rollout {
    /// All its pods are ready, none is terminating, and none of the pods
    /// that were stuck still waits.
    pub done: bool,
    /// "harbor-registry 1/1 ready: pod state on node, ...".
    pub state: String,
}

/// The rollout of Deployment `name` (None when it no longer exists) with
/// the pods its selector picks; `waiting` are the pods that were stuck.
pub fn rollout(
    name: &str,
    deployment: Option<&Deployment>,
    pods: &[Pod],
    waiting: &[String],
) -> Rollout {
    let Some(d) = deployment else {
        return Rollout {
            done: false,
            state: format!("Deployment {name} no longer exists"),
        };
    };
    let desired = desired_replicas(d);
    let ready = pods
        .iter()
        .filter(|p| !is_terminating(*p) && is_ready(p))
        .count();
    let stuck_left = pods
        .iter()
        .any(|p| waiting.contains(&self::name(p)) && !is_ready(p) && !is_terminating(p));
    let mut parts: Vec<String> = pods
        .iter()
        .map(|p| format!("{} {} on {}", self::name(p), pod_state(p), node_of(p)))
        .collect();
    parts.sort();
    Rollout {
        done: ready >= desired && !stuck_left && pods.iter().all(|p| !is_terminating(p)),
        state: format!("{name} {ready}/{desired} ready: {}", parts.join(", ")),
    }
}
