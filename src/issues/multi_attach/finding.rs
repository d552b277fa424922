//! What the check and the repair say about a stuck pod: the finding (a
//! sentence per verdict, with what to do where harbor-doctor will not act,
//! and the evidence) and the plan step that deletes a stale ReplicaSet.

use serde_json::{json, Value};

use super::classify::{
    Diagnosis, HolderOwner, HolderPod, NodeState, Outsider, OwnerSet, Stuck, Verdict,
};
use super::{CHECK, RUNBOOK};
use crate::report::{Finding, PlanStep, Severity};

/// How long the attach/detach controller waits for an unresponsive node
/// before it force-detaches (maxWaitForUnmountDuration).
const FORCE_DETACH_AFTER: &str = "6 minutes";

impl NodeState {
    pub fn describe(&self) -> String {
        match self {
            NodeState::Ready => "Ready".into(),
            NodeState::NotReady(why) => format!("NotReady ({why})"),
            NodeState::Gone => "gone (no Node object)".into(),
        }
    }
}

impl HolderOwner {
    /// An owner outside the Deployment, as the finding names it.
    fn outside(&self) -> Option<String> {
        match self {
            HolderOwner::Deployment(_) => None,
            HolderOwner::Other { kind, name } => Some(format!("{kind} {name}")),
            HolderOwner::Bare => Some("no owner (a bare pod)".into()),
        }
    }
}

impl Outsider {
    fn describe(&self) -> String {
        match self {
            Outsider::Pod(h) => {
                format!("pod {} ({})", h.name, h.owner.outside().unwrap_or_default())
            }
            Outsider::OtherNamespaces(n) => format!("{n} pod(s) in other namespaces"),
        }
    }
}

fn revision_text(r: Option<i64>) -> String {
    r.map(|r| r.to_string()).unwrap_or_else(|| "?".into())
}

/// The volume the pod waits for: the claim's PersistentVolume, else the
/// one the event names.
fn volume_of(s: &Stuck) -> String {
    s.claim
        .persistent_volume
        .clone()
        .or_else(|| {
            s.event
                .as_ref()
                .and_then(|e| e.parsed.as_ref())
                .map(|p| p.volume.clone())
        })
        .unwrap_or_else(|| "(unbound)".into())
}

/// The finding for one stuck pod in namespace `ns`; `fix` is the repair
/// command line, offered only where the repair would act.
pub fn finding(ns: &str, fix: &str, d: &Diagnosis) -> Finding {
    let s = &d.stuck;
    let pv = volume_of(s);
    let holder_names: Vec<String> = s.holders.iter().map(|h| h.name.clone()).collect();
    let holder_nodes: Vec<String> = d.nodes.keys().cloned().collect();
    let head = format!(
        "a new pod cannot start (Multi-Attach): {} of Deployment {} is stuck in ContainerCreating on {}, as its \
         ReadWriteOnce volume {pv} (claim {}) is still attached to {}",
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
    let (summary, repair) = match &d.verdict {
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
                    revision_text(s.deployment_revision)
                ),
                Some(fix.to_string()),
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
                "{head}, held by {}, outside Deployment {}. harbor-doctor only deletes a stale ReplicaSet of \
                 the Deployment itself: stop that pod (or let it finish) to free the volume",
                what.describe(),
                s.deployment
            ),
            None,
        ),
        Verdict::DetachPending => (
            format!(
                "{head}, although no pod there uses it. The attach/detach controller should detach it shortly; if \
                 it stays attached, check the CSI driver on that node and `kubectl describe volumeattachment {}`",
                s.attachments.first().map(|a| a.name.clone()).unwrap_or_default()
            ),
            None,
        ),
    };
    let mut f = Finding::new(
        CHECK,
        verdict_kind(&d.verdict),
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
        json!(s.holders.iter().map(holder_evidence).collect::<Vec<_>>()),
    )
    .evidence(
        "holder_nodes",
        json!(d
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
            .map(|a| json!({"name": a.name, "node": a.node}))
            .collect::<Vec<_>>()),
    );
    if let Some(r) = repair {
        f = f.repair(r);
    }
    f
}

fn holder_evidence(h: &HolderPod) -> Value {
    let rs = h.replicaset();
    json!({
        "pod": h.name,
        "node": h.node,
        "terminating": h.terminating,
        "replicaset": rs.map(|o| o.name.clone()),
        "replicaset_revision": rs.and_then(|o| o.revision),
        "stale": rs.map(|o| !o.current),
        "owner": h.owner.outside(),
    })
}

/// The plan step that deletes stale ReplicaSet `set`, whose pods hold the
/// volume the stuck pod waits for.
pub fn delete_step(ns: &str, s: &Stuck, set: &OwnerSet) -> PlanStep {
    let holders: Vec<String> = s
        .holders
        .iter()
        .filter(|h| h.replicaset().is_some_and(|o| o.uid == set.uid))
        .map(|h| format!("{} on {}", h.name, h.node))
        .collect();
    PlanStep::new(
        "delete",
        format!("replicaset {ns}/{}", set.name),
        format!(
            "stale revision {} of deployment {} (current: {}); its pod {} holds volume {}, which {} on {} waits for",
            revision_text(set.revision),
            s.deployment,
            revision_text(s.deployment_revision),
            holders.join(", "),
            s.claim.persistent_volume.clone().unwrap_or_else(|| s.claim.claim.clone()),
            s.pod,
            s.node
        ),
    )
}

/// The finding's `kind` (multi-attach's `ISSUE.kinds`).
fn verdict_kind(verdict: &Verdict) -> &'static str {
    match verdict {
        Verdict::DeleteStale(_) => "stale-replicaset",
        Verdict::HolderNodeDown(_) => "holder-node-down",
        Verdict::HolderIsCurrent => "holder-is-current",
        Verdict::HolderElsewhere(_) => "holder-elsewhere",
        Verdict::DetachPending => "detach-pending",
    }
}
