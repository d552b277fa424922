//! What the Multi-Attach check reads, in one pass: the Harbor
//! Deployments with their single-node claims, then each kind in the Harbor
//! namespace listed once (ReplicaSets, pods, FailedAttachVolume events),
//! the VolumeAttachments, and last the few nodes the verdicts ask about.
//! No verdict is made here (see `classify`).

use std::collections::BTreeMap;

use anyhow::Result;
use k8s_openapi::api::apps::v1::ReplicaSet;
use k8s_openapi::api::core::v1::{Event, Node, Pod};
use k8s_openapi::api::storage::v1::VolumeAttachment;

use super::classify;
use crate::context::Ctx;
use crate::issues::harbor_workloads::{harbor_deployments, HarborDeployment, HARBOR_LABELS};

/// The cluster as the check saw it.
#[derive(Debug, Clone, Default)]
pub struct Snapshot {
    /// The Harbor Deployments that mount a single-node claim.
    pub deployments: Vec<HarborDeployment>,
    pub replicasets: Vec<ReplicaSet>,
    /// Every pod in the Harbor namespace.
    pub pods: Vec<Pod>,
    /// The namespace's FailedAttachVolume events about pods.
    pub events: Vec<Event>,
    pub attachments: Vec<VolumeAttachment>,
    /// The nodes `classify::nodes_to_read` names, by name; a node it names
    /// that is absent here has no Node object.
    pub nodes: BTreeMap<String, Node>,
}

/// Reads the snapshot. With no Harbor Deployment on a single-node claim
/// nothing more is read; nodes are read one by one (only those holding a
/// volume a stuck pod waits for), so no cluster-wide node list is needed.
pub async fn observe(ctx: &Ctx) -> Result<Snapshot> {
    let (kube, deployments) = harbor_deployments(ctx).await?;
    if deployments.is_empty() {
        return Ok(Snapshot::default());
    }
    let ns = ctx.opts.harbor_namespace.as_str();
    let mut snapshot = Snapshot {
        deployments,
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
        nodes: BTreeMap::new(),
    };
    for name in classify::nodes_to_read(&snapshot) {
        if let Some(node) = kube.get_cluster::<Node>(&name).await? {
            snapshot.nodes.insert(name, node);
        }
    }
    Ok(snapshot)
}
