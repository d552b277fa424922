//! Known issue: a Harbor pod stuck behind a Multi-Attach error.
//!
//! A rolling update of a Deployment that mounts a ReadWriteOnce volume
//! (the registry, jobservice) starts the new pod before the old one stops.
//! When the scheduler puts it on another node, the attach/detach controller
//! cannot attach the volume there while the old node still has it: the new
//! pod stays in ContainerCreating with a FailedAttachVolume "Multi-Attach
//! error" event, and the rollout never finishes, because the old pod is only
//! stopped once the new one is ready.
//!
//! - diagnose: each Harbor Deployment (chart labels) with a single-node
//!   claim; its pending pods; the event in any of its four message forms
//!   (old and aggregated events count, and an expired event is not needed
//!   when the attachment itself shows the conflict); the pods and nodes that
//!   hold the volume (pods, VolumeAttachments); the ReplicaSet owning each
//!   holder and whether it is stale (not the Deployment's current revision);
//!   whether the holder's node is Ready.
//! - plan/apply: delete the stale ReplicaSet (the seed runbook's step), never
//!   the current one, and only the exact object that was diagnosed (uid
//!   precondition). Refused when the holder's node is NotReady or gone,
//!   when the holder is the current ReplicaSet, or when something else holds
//!   the volume: deleting would not help there.
//! - verify: wait, bounded, until the Deployment's pods are ready.

use std::collections::{BTreeMap, BTreeSet};
use std::io::IsTerminal;
use std::time::{Duration, Instant};

use anyhow::Result;
use k8s_openapi::api::apps::v1::{Deployment, ReplicaSet};
use k8s_openapi::api::core::v1::{Event, Node, Pod};
use k8s_openapi::api::storage::v1::VolumeAttachment;
use serde_json::{json, Value};

use crate::backup::{Backup, BackupItem};
use crate::clients::kube::{is_denied, Kube};
use crate::context::Ctx;
use crate::issues::harbor_workloads::{
    cluster_flags, harbor_deployments, HarborDeployment, SingleNodeClaim, HARBOR_LABELS,
};
use crate::issues::{no_options, FixCommand, KnownIssue, Runbook};
use crate::outcome::{incomplete, refused};
use crate::repair::{BackupSink, Repair, Verification};
use crate::report::{CheckOutcome, Finding, PlanStep, Severity};

pub const CHECK: &str = "multi-attach";
pub const RUNBOOK: &str = "multi-attach";
const REPAIR: &str = "multi-attach";

pub static ISSUE: KnownIssue = KnownIssue {
    check: CHECK,
    about: "Harbor pods stuck in ContainerCreating on a Multi-Attach error",
    runbook: Runbook {
        id: RUNBOOK,
        summary: "a Harbor pod stuck in ContainerCreating on a Multi-Attach error after a rollout",
        text: include_str!("../../runbooks/multi-attach.md"),
    },
    diagnose: |ctx, _| Box::pin(diagnose(ctx)),
    repair: Some(FixCommand {
        name: REPAIR,
        about: "Delete the stale ReplicaSet whose pod holds a ReadWriteOnce volume",
        options: no_options,
        run: |ctx, _| {
            Box::pin(async move { crate::repair::run(ctx, &mut MultiAttachRepair::new()).await })
        },
    }),
};
const REVISION: &str = "deployment.kubernetes.io/revision";
/// How long the attach/detach controller waits for an unresponsive node
/// before it force-detaches (maxWaitForUnmountDuration).
const FORCE_DETACH_AFTER: &str = "6 minutes";

/// The FailedAttachVolume message, parsed. Its four forms (shared/FACTS.md):
/// exclusively attached; used by pod(s) A, B; used by pod(s) A and N pod(s)
/// in different namespaces; used by N pod(s) in different namespaces.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MultiAttachMessage {
    pub volume: String,
    pub form: &'static str,
    pub pods: Vec<String>,
    pub other_namespaces: u32,
}

pub fn parse_message(message: &str) -> Option<MultiAttachMessage> {
    let rest = message
        .trim()
        .strip_prefix("Multi-Attach error for volume \"")?;
    let (volume, rest) = rest.split_once('"')?;
    let rest = rest.trim_start().strip_prefix("Volume is already ")?.trim();
    let count_of = |s: &str| -> Option<u32> {
        s.trim()
            .strip_suffix("pod(s) in different namespaces")
            .and_then(|n| n.trim().parse().ok())
    };
    let (form, pods, other) = if rest.starts_with("exclusively attached") {
        ("exclusively-attached", vec![], 0)
    } else if let Some(list) = rest.strip_prefix("used by pod(s) ") {
        match list.rsplit_once(" and ") {
            Some((names, tail)) if count_of(tail).is_some() => (
                "used-by-pods-and-other-namespaces",
                split_names(names),
                count_of(tail).unwrap_or(0),
            ),
            _ => ("used-by-pods", split_names(list), 0),
        }
    } else if let Some(tail) = rest.strip_prefix("used by ") {
        ("used-in-other-namespaces", vec![], count_of(tail)?)
    } else {
        return None;
    };
    Some(MultiAttachMessage {
        volume: volume.to_string(),
        form,
        pods,
        other_namespaces: other,
    })
}

fn split_names(list: &str) -> Vec<String> {
    list.split(',')
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
        .collect()
}

/// A node's state, as the holder's side of the conflict.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NodeState {
    Ready,
    NotReady(String),
    Gone,
}

impl NodeState {
    fn describe(&self) -> String {
        match self {
            NodeState::Ready => "Ready".into(),
            NodeState::NotReady(why) => format!("NotReady ({why})"),
            NodeState::Gone => "gone (no Node object)".into(),
        }
    }
}

/// The ReplicaSet a holder pod belongs to.
#[derive(Debug, Clone)]
struct OwnerSet {
    name: String,
    uid: String,
    revision: Option<i64>,
    /// Whether it belongs to the Deployment in question.
    ours: bool,
    current: bool,
}

#[derive(Debug, Clone)]
struct HolderPod {
    name: String,
    node: String,
    terminating: bool,
    owner: Option<OwnerSet>,
    /// Description of an owner outside the Deployment.
    foreign_owner: Option<String>,
}

#[derive(Debug, Clone)]
struct EventSeen {
    message: String,
    parsed: Option<MultiAttachMessage>,
    last_seen: Value,
    count: i64,
}

/// What can be done about one stuck pod.
#[derive(Debug, Clone)]
enum Verdict {
    /// Every holder belongs to stale ReplicaSets of the Deployment, on Ready nodes.
    DeleteStale(Vec<OwnerSet>),
    /// A holding node is NotReady or gone.
    HolderNodeDown(Vec<(String, NodeState)>),
    /// The current ReplicaSet's own pods hold the volume.
    HolderIsCurrent,
    /// Something outside the Deployment holds it.
    HolderElsewhere(String),
    /// Attached to a Ready node where no pod uses it.
    DetachPending,
}

/// One pod stuck behind a single-node volume.
#[derive(Debug, Clone)]
struct Stuck {
    deployment: String,
    deployment_revision: Option<i64>,
    current_replicaset: Option<String>,
    pod: String,
    node: String,
    claim: SingleNodeClaim,
    event: Option<EventSeen>,
    holders: Vec<HolderPod>,
    attachments: Vec<(String, String)>,
    nodes: BTreeMap<String, NodeState>,
    verdict: Verdict,
}

fn revision_of(meta: &k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta) -> Option<i64> {
    meta.annotations
        .as_ref()
        .and_then(|a| a.get(REVISION))
        .and_then(|r| r.parse().ok())
}

fn name<K: kube::Resource>(o: &K) -> String {
    o.meta().name.clone().unwrap_or_default()
}

fn uid<K: kube::Resource>(o: &K) -> String {
    o.meta().uid.clone().unwrap_or_default()
}

fn controller_uid<K: kube::Resource>(o: &K) -> Option<(String, String, String)> {
    o.meta().owner_references.as_ref().and_then(|refs| {
        refs.iter()
            .find(|r| r.controller == Some(true))
            .or(refs.first())
            .map(|r| (r.kind.clone(), r.name.clone(), r.uid.clone()))
    })
}

fn mounts_claim(pod: &Pod, claim: &str) -> bool {
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

fn phase(pod: &Pod) -> &str {
    pod.status
        .as_ref()
        .and_then(|s| s.phase.as_deref())
        .unwrap_or("")
}

fn node_of(pod: &Pod) -> &str {
    pod.spec
        .as_ref()
        .and_then(|s| s.node_name.as_deref())
        .unwrap_or("")
}

fn is_ready(pod: &Pod) -> bool {
    pod.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|c| c.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
}

/// A pod that waits for its volumes: scheduled, Pending, containers not
/// started (ContainerCreating, or no status yet).
fn waiting_for_volumes(pod: &Pod) -> bool {
    if phase(pod) != "Pending"
        || node_of(pod).is_empty()
        || pod.metadata.deletion_timestamp.is_some()
    {
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
fn pod_state(pod: &Pod) -> String {
    if pod.metadata.deletion_timestamp.is_some() {
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

async fn node_state(
    kube: &Kube,
    cache: &mut BTreeMap<String, NodeState>,
    node: &str,
) -> Result<NodeState> {
    if let Some(s) = cache.get(node) {
        return Ok(s.clone());
    }
    let state = match kube.get_cluster::<Node>(node).await? {
        None => NodeState::Gone,
        Some(n) => {
            let ready = n
                .status
                .as_ref()
                .and_then(|s| s.conditions.as_ref())
                .and_then(|c| c.iter().find(|c| c.type_ == "Ready").cloned());
            match ready {
                Some(c) if c.status == "True" => NodeState::Ready,
                Some(c) => NodeState::NotReady(
                    c.message
                        .or(c.reason)
                        .unwrap_or_else(|| format!("Ready={}", c.status)),
                ),
                None => NodeState::NotReady("no Ready condition reported".into()),
            }
        }
    };
    cache.insert(node.to_string(), state.clone());
    Ok(state)
}

fn event_seen(e: &Event) -> EventSeen {
    let message = e.message.clone().unwrap_or_default();
    let last_seen = e
        .last_timestamp
        .as_ref()
        .map(|t| serde_json::to_value(t).unwrap_or(Value::Null))
        .or_else(|| {
            e.event_time
                .as_ref()
                .map(|t| serde_json::to_value(t).unwrap_or(Value::Null))
        })
        .unwrap_or(Value::Null);
    let count = e
        .series
        .as_ref()
        .and_then(|s| s.count)
        .or(e.count)
        .unwrap_or(1) as i64;
    EventSeen {
        parsed: parse_message(&message),
        message,
        last_seen,
        count,
    }
}

struct Cluster {
    replicasets: Vec<ReplicaSet>,
    pods: Vec<Pod>,
    events: Vec<Event>,
    attachments: Vec<VolumeAttachment>,
}

/// Everything `diagnose multi-attach` finds.
async fn examine(ctx: &Ctx) -> Result<(Vec<Stuck>, Vec<String>)> {
    let (kube, deployments) = harbor_deployments(ctx).await?;
    let ns = ctx.opts.harbor_namespace.as_str();
    let checked: Vec<String> = deployments.iter().map(|d| d.name().to_string()).collect();
    if deployments.is_empty() {
        return Ok((vec![], checked));
    }
    let cluster = Cluster {
        replicasets: kube.list_in(ns, Some(HARBOR_LABELS), None).await?,
        pods: kube.list_in(ns, None, None).await?,
        events: kube
            .list_in(
                ns,
                None,
                Some("involvedObject.kind=Pod,reason=FailedAttachVolume"),
            )
            .await?,
        attachments: kube.list_cluster(None, None).await?,
    };
    let mut nodes = BTreeMap::new();
    let mut stuck = vec![];
    for d in &deployments {
        stuck.extend(examine_deployment(kube, d, &cluster, &mut nodes).await?);
    }
    Ok((stuck, checked))
}

async fn examine_deployment(
    kube: &Kube,
    hd: &HarborDeployment,
    cluster: &Cluster,
    node_cache: &mut BTreeMap<String, NodeState>,
) -> Result<Vec<Stuck>> {
    let d = &hd.deployment;
    let d_uid = uid(d);
    let d_rev = revision_of(&d.metadata);
    let owned: Vec<&ReplicaSet> = cluster
        .replicasets
        .iter()
        .filter(|rs| controller_uid(*rs).is_some_and(|(_, _, u)| u == d_uid))
        .collect();
    let current = owned
        .iter()
        .find(|rs| d_rev.is_some() && revision_of(&rs.metadata) == d_rev)
        .or_else(|| owned.iter().max_by_key(|rs| revision_of(&rs.metadata)))
        .copied();
    let owned_uids: BTreeMap<String, &ReplicaSet> =
        owned.iter().map(|rs| (uid(*rs), *rs)).collect();
    let owner_set = |rs: &ReplicaSet| OwnerSet {
        name: name(rs),
        uid: uid(rs),
        revision: revision_of(&rs.metadata),
        ours: true,
        current: current.is_some_and(|c| uid(c) == uid(rs)),
    };

    let mut found = vec![];
    for pod in &cluster.pods {
        let Some((_, _, owner)) = controller_uid(pod) else {
            continue;
        };
        if !owned_uids.contains_key(&owner) || !waiting_for_volumes(pod) {
            continue;
        }
        let pod_name = name(pod);
        let pod_uid = uid(pod);
        let pod_node = node_of(pod).to_string();
        for claim in hd.claims.iter().filter(|c| mounts_claim(pod, &c.claim)) {
            let event = cluster
                .events
                .iter()
                .filter(|e| {
                    let io = &e.involved_object;
                    io.uid.as_deref() == Some(pod_uid.as_str())
                        || (io.uid.is_none() && io.name.as_deref() == Some(pod_name.as_str()))
                })
                .map(event_seen)
                .filter(|e| {
                    e.parsed.as_ref().is_some_and(|p| {
                        claim
                            .persistent_volume
                            .as_deref()
                            .is_none_or(|pv| pv == p.volume)
                    })
                })
                .max_by(|a, b| a.last_seen.to_string().cmp(&b.last_seen.to_string()));
            let named: BTreeSet<String> = event
                .as_ref()
                .and_then(|e| e.parsed.as_ref())
                .map(|p| p.pods.iter().cloned().collect())
                .unwrap_or_default();
            let mut holders = vec![];
            for other in &cluster.pods {
                let other_name = name(other);
                if uid(other) == pod_uid || matches!(phase(other), "Succeeded" | "Failed") {
                    continue;
                }
                let other_node = node_of(other).to_string();
                let holds = mounts_claim(other, &claim.claim)
                    && !other_node.is_empty()
                    && other_node != pod_node;
                if !holds && !named.contains(&other_name) {
                    continue;
                }
                let (owner, foreign_owner) = match controller_uid(other) {
                    Some((_, _, u)) if owned_uids.contains_key(&u) => {
                        (Some(owner_set(owned_uids[&u])), None)
                    }
                    Some((kind, n, _)) => (None, Some(format!("{kind} {n}"))),
                    None => (None, Some("no owner (a bare pod)".into())),
                };
                holders.push(HolderPod {
                    name: other_name,
                    node: other_node,
                    terminating: other.metadata.deletion_timestamp.is_some(),
                    owner,
                    foreign_owner,
                });
            }
            let attachments: Vec<(String, String)> = cluster
                .attachments
                .iter()
                .filter(|va| {
                    claim.persistent_volume.as_deref().is_some_and(|pv| {
                        va.spec.source.persistent_volume_name.as_deref() == Some(pv)
                    }) && va.spec.node_name != pod_node
                })
                .map(|va| (name(va), va.spec.node_name.clone()))
                .collect();
            if event.is_none() && holders.is_empty() && attachments.is_empty() {
                continue;
            }
            let mut nodes = BTreeMap::new();
            for n in holders
                .iter()
                .map(|h| h.node.clone())
                .chain(attachments.iter().map(|(_, n)| n.clone()))
                .filter(|n| !n.is_empty())
            {
                let state = node_state(kube, node_cache, &n).await?;
                nodes.insert(n, state);
            }
            let down: Vec<(String, NodeState)> = nodes
                .iter()
                .filter(|(_, s)| **s != NodeState::Ready)
                .map(|(n, s)| (n.clone(), s.clone()))
                .collect();
            let verdict = if !down.is_empty() {
                Verdict::HolderNodeDown(down)
            } else if holders.is_empty() {
                match event.as_ref().and_then(|e| e.parsed.as_ref()) {
                    Some(p) if p.other_namespaces > 0 => Verdict::HolderElsewhere(format!(
                        "{} pod(s) in other namespaces",
                        p.other_namespaces
                    )),
                    _ => Verdict::DetachPending,
                }
            } else if let Some(h) = holders.iter().find(|h| h.foreign_owner.is_some()) {
                Verdict::HolderElsewhere(format!(
                    "pod {} ({})",
                    h.name,
                    h.foreign_owner.clone().unwrap_or_default()
                ))
            } else if holders
                .iter()
                .any(|h| h.owner.as_ref().is_some_and(|o| o.current))
            {
                Verdict::HolderIsCurrent
            } else {
                let mut sets: Vec<OwnerSet> = vec![];
                for o in holders.iter().filter_map(|h| h.owner.clone()) {
                    if !sets.iter().any(|s| s.uid == o.uid) {
                        sets.push(o);
                    }
                }
                Verdict::DeleteStale(sets)
            };
            found.push(Stuck {
                deployment: hd.name().to_string(),
                deployment_revision: d_rev,
                current_replicaset: current.map(name),
                pod: pod_name.clone(),
                node: pod_node.clone(),
                claim: claim.clone(),
                event,
                holders,
                attachments,
                nodes,
                verdict,
            });
        }
    }
    Ok(found)
}

fn fix_command(ctx: &Ctx) -> String {
    format!("harbor-doctor fix multi-attach{}", cluster_flags(ctx))
}

fn finding(ctx: &Ctx, s: &Stuck) -> Finding {
    let ns = &ctx.opts.harbor_namespace;
    let pv = s
        .claim
        .persistent_volume
        .clone()
        .or_else(|| {
            s.event
                .as_ref()
                .and_then(|e| e.parsed.as_ref())
                .map(|p| p.volume.clone())
        })
        .unwrap_or_else(|| "(unbound)".into());
    let holder_names: Vec<String> = s.holders.iter().map(|h| h.name.clone()).collect();
    let holder_nodes: Vec<String> = s.nodes.keys().cloned().collect();
    let head = format!(
        "{} of Deployment {} is stuck in ContainerCreating on {}: its ReadWriteOnce volume {pv} (claim {}) is still \
         attached to {}",
        s.pod,
        s.deployment,
        s.node,
        s.claim.claim,
        if holder_nodes.is_empty() { "another node".to_string() } else { holder_nodes.join(", ") }
    );
    let holders_text = if holder_names.is_empty() {
        String::new()
    } else {
        format!(", held by pod(s) {}", holder_names.join(", "))
    };
    let (summary, repair) = match &s.verdict {
        Verdict::DeleteStale(sets) => {
            let names: Vec<String> = sets
                .iter()
                .map(|o| match o.revision {
                    Some(r) => format!("{} (revision {r})", o.name),
                    None => o.name.clone(),
                })
                .collect();
            (
                format!(
                    "{head}{holders_text} of the stale ReplicaSet {}, while the Deployment is at revision {}. \
                     Deleting the stale ReplicaSet lets its pod stop and the volume move, and the rollout finishes; \
                     strategy Recreate prevents this (check registry-strategy)",
                    names.join(", "),
                    s.deployment_revision.map(|r| r.to_string()).unwrap_or_else(|| "?".into())
                ),
                Some(fix_command(ctx)),
            )
        }
        Verdict::HolderNodeDown(down) => {
            let nodes: Vec<String> = down.iter().map(|(n, st)| format!("{n} is {}", st.describe())).collect();
            let force = s
                .holders
                .first()
                .map(|h| format!("`kubectl -n {ns} delete pod {} --grace-period=0 --force`", h.name))
                .unwrap_or_else(|| "the pod".into());
            (
                format!(
                    "{head}{holders_text}, and {}. Deleting a ReplicaSet would not free the volume: a pod on an \
                     unresponsive node never finishes terminating, and the attach/detach controller waits \
                     {FORCE_DETACH_AFTER} before it force-detaches. Bring the node back; if it is gone for good, \
                     make sure the old pod no longer runs there, then delete the Node object (`kubectl delete node \
                     {}`) or force-delete the pod ({force}) so the volume can be detached",
                    nodes.join(", "),
                    down[0].0
                ),
                None,
            )
        }
        Verdict::HolderIsCurrent => (
            format!(
                "{head}{holders_text} of the Deployment's current ReplicaSet {}: it runs more than one pod on a \
                 ReadWriteOnce volume, which cannot work across nodes. No ReplicaSet should be deleted: scale it to \
                 one replica (`kubectl -n {ns} scale deployment {} --replicas=1`) or give it a ReadWriteMany volume",
                s.current_replicaset.clone().unwrap_or_default(),
                s.deployment
            ),
            None,
        ),
        Verdict::HolderElsewhere(what) => (
            format!(
                "{head}, held by {what}, outside Deployment {}. harbor-doctor only deletes a stale ReplicaSet of \
                 the Deployment itself: stop that pod (or let it finish) to free the volume",
                s.deployment
            ),
            None,
        ),
        Verdict::DetachPending => (
            format!(
                "{head}, although no pod there uses it. The attach/detach controller should detach it shortly; if \
                 it stays attached, check the CSI driver on that node and `kubectl describe volumeattachment {}`",
                s.attachments.first().map(|(n, _)| n.clone()).unwrap_or_default()
            ),
            None,
        ),
    };
    let mut f = Finding::new(
        CHECK,
        Severity::Problem,
        format!("deployment {ns}/{}", s.deployment),
        summary,
        RUNBOOK,
    )
    .evidence("deployment", s.deployment.clone())
    .evidence("deployment_revision", json!(s.deployment_revision))
    .evidence("current_replicaset", json!(s.current_replicaset))
    .evidence("stuck_pod", s.pod.clone())
    .evidence("stuck_node", s.node.clone())
    .evidence("claim", s.claim.claim.clone())
    .evidence("access_modes", json!(s.claim.access_modes))
    .evidence("persistent_volume", pv)
    .evidence(
        "event",
        match &s.event {
            Some(e) => json!({
                "reason": "FailedAttachVolume",
                "message": e.message,
                "form": e.parsed.as_ref().map(|p| p.form),
                "last_seen": e.last_seen,
                "count": e.count,
            }),
            None => Value::Null,
        },
    )
    .evidence(
        "holders",
        json!(s
            .holders
            .iter()
            .map(|h| json!({
                "pod": h.name,
                "node": h.node,
                "terminating": h.terminating,
                "replicaset": h.owner.as_ref().map(|o| o.name.clone()),
                "replicaset_revision": h.owner.as_ref().and_then(|o| o.revision),
                "stale": h.owner.as_ref().map(|o| o.ours && !o.current),
                "owner": h.foreign_owner,
            }))
            .collect::<Vec<_>>()),
    )
    .evidence(
        "holder_nodes",
        json!(s
            .nodes
            .iter()
            .map(|(n, st)| json!({"node": n, "state": st.describe(), "ready": *st == NodeState::Ready}))
            .collect::<Vec<_>>()),
    )
    .evidence(
        "volume_attachments",
        json!(s
            .attachments
            .iter()
            .map(|(n, node)| json!({"name": n, "node": node}))
            .collect::<Vec<_>>()),
    );
    if let Some(r) = repair {
        f = f.repair(r);
    }
    f
}

/// `diagnose multi-attach`.
pub async fn diagnose(ctx: &Ctx) -> Result<CheckOutcome> {
    let (stuck, checked) = examine(ctx).await?;
    let mut out = CheckOutcome::default();
    out.notes.push(if checked.is_empty() {
        format!(
            "no Deployment labelled {HARBOR_LABELS} in namespace {} mounts a ReadWriteOnce claim",
            ctx.opts.harbor_namespace
        )
    } else {
        format!(
            "checked Deployment(s) with ReadWriteOnce claims: {}",
            checked.join(", ")
        )
    });
    out.findings = stuck.iter().map(|s| finding(ctx, s)).collect();
    Ok(out)
}

/// A stale ReplicaSet the repair deletes.
#[derive(Debug, Clone)]
struct Target {
    deployment: String,
    replicaset: String,
    uid: String,
    revision: Option<i64>,
}

/// `fix multi-attach`.
#[derive(Default)]
pub struct MultiAttachRepair {
    targets: Vec<Target>,
    /// The stuck pods the deletion should free, per Deployment.
    waiting: BTreeMap<String, Vec<String>>,
    notes: Vec<String>,
}

impl MultiAttachRepair {
    pub fn new() -> Self {
        Self::default()
    }
}

/// The bounded wait for the new pods, from --timeout: time for the old pod
/// to terminate, the volume to move and the new pod to start.
fn verify_wait(ctx: &Ctx) -> Duration {
    ctx.timeout() * 4
}

fn label_selector(d: &Deployment) -> Option<String> {
    let labels = d.spec.as_ref()?.selector.match_labels.as_ref()?;
    Some(
        labels
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join(","),
    )
}

impl Repair for MultiAttachRepair {
    fn id(&self) -> &'static str {
        REPAIR
    }

    fn subject(&self) -> String {
        let mut names: Vec<&str> = self.targets.iter().map(|t| t.deployment.as_str()).collect();
        names.dedup();
        if names.is_empty() {
            "harbor".into()
        } else {
            names.join("+")
        }
    }

    fn notes(&self) -> Vec<String> {
        self.notes.clone()
    }

    async fn plan(&mut self, ctx: &Ctx) -> Result<Vec<PlanStep>> {
        let ns = ctx.opts.harbor_namespace.clone();
        let (stuck, _) = examine(ctx).await?;
        let mut steps = vec![];
        let mut refusals = vec![];
        for s in &stuck {
            match &s.verdict {
                Verdict::DeleteStale(sets) => {
                    self.waiting
                        .entry(s.deployment.clone())
                        .or_default()
                        .push(s.pod.clone());
                    for o in sets {
                        if self.targets.iter().any(|t| t.uid == o.uid) {
                            continue;
                        }
                        let holders: Vec<String> = s
                            .holders
                            .iter()
                            .filter(|h| h.owner.as_ref().is_some_and(|ho| ho.uid == o.uid))
                            .map(|h| format!("{} on {}", h.name, h.node))
                            .collect();
                        steps.push(PlanStep::new(
                            "delete",
                            format!("replicaset {ns}/{}", o.name),
                            format!(
                                "stale revision {} of deployment {} (current: {}); its pod {} holds volume {}, \
                                 which {} on {} waits for",
                                o.revision.map(|r| r.to_string()).unwrap_or_else(|| "?".into()),
                                s.deployment,
                                s.deployment_revision.map(|r| r.to_string()).unwrap_or_else(|| "?".into()),
                                holders.join(", "),
                                s.claim.persistent_volume.clone().unwrap_or_else(|| s.claim.claim.clone()),
                                s.pod,
                                s.node
                            ),
                        ));
                        self.targets.push(Target {
                            deployment: s.deployment.clone(),
                            replicaset: o.name.clone(),
                            uid: o.uid.clone(),
                            revision: o.revision,
                        });
                    }
                }
                _ => {
                    let f = finding(ctx, s);
                    refusals.push(format!("{}: {}", f.subject, f.summary));
                }
            }
        }
        if steps.is_empty() && !refusals.is_empty() {
            return Err(refused(format!(
                "no ReplicaSet can safely be deleted; nothing was changed.\n  {}",
                refusals.join("\n  ")
            )));
        }
        for r in refusals {
            self.notes.push(format!("Left alone: {r}"));
        }
        Ok(steps)
    }

    async fn apply(&mut self, ctx: &Ctx, backups: &mut BackupSink) -> Result<()> {
        let kube = ctx.kube().await?;
        let ns = ctx.opts.harbor_namespace.as_str();
        // The plan was made from a snapshot: check each target is still the
        // same stale object before anything changes.
        let mut objects = vec![];
        for t in &self.targets {
            let rs: Option<ReplicaSet> = kube.get_in(ns, &t.replicaset).await?;
            let Some(rs) = rs.filter(|rs| uid(rs) == t.uid) else {
                return Err(refused(format!(
                    "ReplicaSet {ns}/{} is gone or was replaced since the plan was made; nothing was changed. Run \
                     `harbor-doctor diagnose multi-attach` again",
                    t.replicaset
                )));
            };
            let d: Option<Deployment> = kube.get_in(ns, &t.deployment).await?;
            let d_rev = d.as_ref().and_then(|d| revision_of(&d.metadata));
            if d_rev.is_none() || d_rev == revision_of(&rs.metadata) {
                return Err(refused(format!(
                    "ReplicaSet {ns}/{} is now the current revision of Deployment {}; nothing was changed",
                    t.replicaset, t.deployment
                )));
            }
            objects.push(rs);
        }
        let items = objects
            .iter()
            .map(|rs| {
                Ok(BackupItem::Kubernetes {
                    api_version: "apps/v1".into(),
                    kind: "ReplicaSet".into(),
                    namespace: Some(ns.to_string()),
                    name: name(rs),
                    object: serde_json::to_value(rs)?,
                    after: None,
                })
            })
            .collect::<Result<Vec<_>>>()?;
        backups.write(&Backup::new(
            REPAIR,
            &self.subject(),
            kube.describe(),
            items,
        ))?;
        let mut deleted: Vec<String> = vec![];
        for t in &self.targets {
            if let Err(e) = kube
                .delete_exact::<ReplicaSet>(ns, &t.replicaset, &t.uid)
                .await
            {
                // Refused before the first change: nothing happened.
                if deleted.is_empty() && is_denied(&e) {
                    return Err(refused(format!("{e:#}. Nothing was changed")));
                }
                return Err(incomplete(format!(
                    "deleting ReplicaSet {ns}/{} failed: {e:#}. {}; nothing else was changed. The backup holds the \
                     ReplicaSet(s) as they were",
                    t.replicaset,
                    if deleted.is_empty() {
                        "No ReplicaSet was deleted".to_string()
                    } else {
                        format!("Deleted before it: {}", deleted.join(", "))
                    }
                )));
            }
            ctx.out.info(format!(
                "Deleted ReplicaSet {ns}/{} (revision {}).",
                t.replicaset,
                t.revision
                    .map(|r| r.to_string())
                    .unwrap_or_else(|| "?".into())
            ));
            deleted.push(t.replicaset.clone());
        }
        Ok(())
    }

    async fn verify(&mut self, ctx: &Ctx) -> Result<Verification> {
        let kube = ctx.kube().await?;
        let ns = ctx.opts.harbor_namespace.as_str();
        let wait = verify_wait(ctx);
        let started = Instant::now();
        let progress = Progress::new(ctx);
        let mut deployments: Vec<String> =
            self.targets.iter().map(|t| t.deployment.clone()).collect();
        deployments.dedup();
        loop {
            let mut states = vec![];
            let mut done = true;
            for name in &deployments {
                let (ok, state) = rollout_state(kube, ns, name, self.waiting.get(name)).await?;
                done &= ok;
                states.push(state);
            }
            let state = states.join("; ");
            if done {
                progress.finish(&state);
                return Ok(Verification::Verified);
            }
            let elapsed = started.elapsed();
            if elapsed >= wait {
                progress.finish(&state);
                return Ok(Verification::NotVerified(format!(
                    "after {} s the new pod(s) were not running: {state}. Run `harbor-doctor diagnose multi-attach` \
                     and `kubectl -n {ns} describe pod` on them",
                    wait.as_secs()
                )));
            }
            progress.update(elapsed, &state);
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    }
}

/// Whether a Deployment's pods are all ready (and the pods that were stuck
/// are running or replaced), and a line describing them.
async fn rollout_state(
    kube: &Kube,
    ns: &str,
    deployment: &str,
    waiting: Option<&Vec<String>>,
) -> Result<(bool, String)> {
    let Some(d) = kube.get_in::<Deployment>(ns, deployment).await? else {
        return Ok((false, format!("Deployment {deployment} no longer exists")));
    };
    let desired = d.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1).max(0) as usize;
    let pods: Vec<Pod> = match label_selector(&d) {
        Some(sel) => kube.list_in(ns, Some(&sel), None).await?,
        None => vec![],
    };
    let ready = pods
        .iter()
        .filter(|p| p.metadata.deletion_timestamp.is_none() && is_ready(p))
        .count();
    let stuck_left = waiting.is_some_and(|w| {
        pods.iter().any(|p| {
            w.contains(&name(p)) && !is_ready(p) && p.metadata.deletion_timestamp.is_none()
        })
    });
    let mut parts: Vec<String> = pods
        .iter()
        .map(|p| format!("{} {} on {}", name(p), pod_state(p), node_of(p)))
        .collect();
    parts.sort();
    let ok = ready >= desired
        && !stuck_left
        && pods.iter().all(|p| p.metadata.deletion_timestamp.is_none());
    Ok((
        ok,
        format!("{deployment} {ready}/{desired} ready: {}", parts.join(", ")),
    ))
}

/// Progress while waiting: a spinner on a terminal, a line per change
/// otherwise.
struct Progress<'a> {
    ctx: &'a Ctx,
    bar: Option<indicatif::ProgressBar>,
    last: std::cell::RefCell<String>,
}

impl<'a> Progress<'a> {
    fn new(ctx: &'a Ctx) -> Self {
        let bar = (!ctx.out.quiet && std::io::stderr().is_terminal()).then(|| {
            let bar = indicatif::ProgressBar::new_spinner();
            bar.enable_steady_tick(Duration::from_millis(120));
            bar
        });
        Progress {
            ctx,
            bar,
            last: std::cell::RefCell::new(String::new()),
        }
    }

    fn update(&self, elapsed: Duration, state: &str) {
        let line = format!("waiting ({} s): {state}", elapsed.as_secs());
        match &self.bar {
            Some(bar) => bar.set_message(line),
            None => {
                if *self.last.borrow() != state {
                    self.ctx.out.info(line);
                    *self.last.borrow_mut() = state.to_string();
                }
            }
        }
    }

    fn finish(&self, state: &str) {
        if let Some(bar) = &self.bar {
            bar.finish_and_clear();
        }
        self.ctx.out.info(state);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_all_four_message_forms() {
        let pv = "pvc-0b1c";
        let m = parse_message(&format!(
            "Multi-Attach error for volume \"{pv}\" Volume is already exclusively attached to one node and can't be attached to another"
        ))
        .unwrap();
        assert_eq!((m.volume.as_str(), m.form), (pv, "exclusively-attached"));
        let m = parse_message(&format!(
            "Multi-Attach error for volume \"{pv}\" Volume is already used by pod(s) harbor-registry-a-1, harbor-registry-a-2"
        ))
        .unwrap();
        assert_eq!(m.pods, vec!["harbor-registry-a-1", "harbor-registry-a-2"]);
        assert_eq!(m.form, "used-by-pods");
        let m = parse_message(&format!(
            "Multi-Attach error for volume \"{pv}\" Volume is already used by pod(s) harbor-registry-a-1 and 2 pod(s) in different namespaces"
        ))
        .unwrap();
        assert_eq!(
            (m.pods.clone(), m.other_namespaces, m.form),
            (
                vec!["harbor-registry-a-1".to_string()],
                2,
                "used-by-pods-and-other-namespaces"
            )
        );
        let m = parse_message(&format!(
            "Multi-Attach error for volume \"{pv}\" Volume is already used by 3 pod(s) in different namespaces"
        ))
        .unwrap();
        assert_eq!(
            (m.other_namespaces, m.form),
            (3, "used-in-other-namespaces")
        );
        assert!(parse_message("AttachVolume.Attach failed for volume \"x\"").is_none());
    }
}
