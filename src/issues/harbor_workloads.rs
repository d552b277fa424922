//! What the Kubernetes checks share: the Harbor release's Deployments, found
//! by the chart's labels in `--harbor-namespace`, and the ReadWriteOnce
//! claims each one mounts. A Deployment that mounts such a claim can only
//! run on one node at a time, which is what both the Multi-Attach deadlock
//! and the registry-strategy warning are about.

use std::collections::BTreeMap;

use anyhow::Result;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{PersistentVolumeClaim, PodSpec};

use crate::clients::kube::Kube;
use crate::context::Ctx;

/// The label selector of the chart's objects.
pub const HARBOR_LABELS: &str = "app=harbor";

/// A claim a Deployment's pods mount that only one node can attach.
#[derive(Debug, Clone)]
pub struct SingleNodeClaim {
    pub claim: String,
    /// The pod's name for the volume.
    pub volume: String,
    pub access_modes: Vec<String>,
    /// The bound PersistentVolume, when bound.
    pub persistent_volume: Option<String>,
}

/// A Harbor Deployment with the single-node claims it mounts.
#[derive(Debug, Clone)]
pub struct HarborDeployment {
    pub deployment: Deployment,
    pub claims: Vec<SingleNodeClaim>,
}

impl HarborDeployment {
    pub fn name(&self) -> &str {
        self.deployment.metadata.name.as_deref().unwrap_or("")
    }

    pub fn component(&self) -> Option<&str> {
        self.deployment
            .metadata
            .labels
            .as_ref()
            .and_then(|l| l.get("component"))
            .map(String::as_str)
    }
}

/// Whether access modes allow only one node.
pub fn single_node(modes: &[String]) -> bool {
    modes
        .iter()
        .any(|m| m == "ReadWriteOnce" || m == "ReadWriteOncePod")
        && !modes.iter().any(|m| m == "ReadWriteMany")
}

/// The single-node claims a pod spec mounts.
pub fn single_node_claims(
    spec: Option<&PodSpec>,
    claims: &BTreeMap<String, PersistentVolumeClaim>,
) -> Vec<SingleNodeClaim> {
    let mut out = Vec::new();
    for v in spec.and_then(|s| s.volumes.as_ref()).into_iter().flatten() {
        let Some(source) = &v.persistent_volume_claim else {
            continue;
        };
        let Some(pvc) = claims.get(&source.claim_name) else {
            continue;
        };
        let spec = pvc.spec.as_ref();
        let modes = spec
            .and_then(|s| s.access_modes.clone())
            .unwrap_or_default();
        if single_node(&modes) {
            out.push(SingleNodeClaim {
                claim: source.claim_name.clone(),
                volume: v.name.clone(),
                access_modes: modes,
                persistent_volume: spec.and_then(|s| s.volume_name.clone()),
            });
        }
    }
    out
}

/// The cluster, the namespace, and the release's Deployments that mount
/// single-node claims (those that mount none are left out).
pub async fn harbor_deployments(ctx: &Ctx) -> Result<(&Kube, Vec<HarborDeployment>)> {
    let kube = ctx.kube().await?;
    let ns = ctx.opts.harbor_namespace.as_str();
    let deployments: Vec<Deployment> = kube.list_in(ns, Some(HARBOR_LABELS), None).await?;
    let claims: BTreeMap<String, PersistentVolumeClaim> = kube
        .list_in::<PersistentVolumeClaim>(ns, None, None)
        .await?
        .into_iter()
        .map(|c| (c.metadata.name.clone().unwrap_or_default(), c))
        .collect();
    let found = deployments
        .into_iter()
        .filter_map(|d| {
            let mounted = single_node_claims(
                d.spec.as_ref().and_then(|s| s.template.spec.as_ref()),
                &claims,
            );
            (!mounted.is_empty()).then_some(HarborDeployment {
                deployment: d,
                claims: mounted,
            })
        })
        .collect();
    Ok((kube, found))
}

/// The options that point a repair command line at the same cluster and
/// namespace as this run (`--kubeconfig`, `--context`, `--harbor-namespace`
/// when not the default), each with a leading space.
pub fn cluster_flags(ctx: &Ctx) -> String {
    use crate::repair::shell_quote;
    let mut flags = String::new();
    if let Some(path) = &ctx.opts.kubeconfig {
        flags.push_str(&format!(
            " --kubeconfig {}",
            shell_quote(&path.display().to_string())
        ));
    }
    if let Some(context) = &ctx.opts.context {
        flags.push_str(&format!(" --context {}", shell_quote(context)));
    }
    if ctx.opts.harbor_namespace != "harbor" {
        flags.push_str(&format!(
            " --harbor-namespace {}",
            shell_quote(&ctx.opts.harbor_namespace)
        ));
    }
    flags
}
