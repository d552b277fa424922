//! Known issue, the lasting fix for Multi-Attach: a Harbor Deployment that
//! mounts a ReadWriteOnce claim but rolls with strategy RollingUpdate.
//!
//! RollingUpdate starts the new pod before stopping the old one; with a
//! volume only one node can attach, that deadlocks whenever the new pod
//! lands elsewhere. Recreate stops the old pod first. The chart's value is
//! `updateStrategy.type` (default RollingUpdate; the chart itself says to use
//! Recreate when volumes are not ReadWriteMany), so a Helm upgrade puts the
//! chart's value back unless the values are changed too.
//!
//! - diagnose: each such Deployment is a warning.
//! - plan/apply: a strategic merge patch to Recreate that clears
//!   `rollingUpdate` (`$retainKeys`, or the API server rejects it), guarded
//!   by the resourceVersion that was planned against; the backup holds the
//!   strategy as it was.
//! - verify: the Deployments read back as Recreate.

use anyhow::Result;
use k8s_openapi::api::apps::v1::{Deployment, DeploymentStrategy};
use serde_json::{json, Value};

use crate::backup::{Backup, BackupItem};
use crate::clients::kube::is_denied;
use crate::context::Ctx;
use crate::issues::harbor_workloads::{cluster_flags, harbor_deployments, HarborDeployment};
use crate::issues::{no_options, FindingKind, FixCommand, KnownIssue, Runbook};
use crate::outcome::{incomplete, refused};
use crate::repair::{BackupSink, Repair, Verification};
use crate::report::{CheckOutcome, Finding, PlanStep, RepairStage, Severity};

pub const CHECK: &str = "registry-strategy";
pub const RUNBOOK: &str = "registry-strategy";
const REPAIR: &str = "registry-strategy";

pub static ISSUE: KnownIssue = KnownIssue {
    check: CHECK,
    about: "Deployments with ReadWriteOnce volumes that roll with RollingUpdate",
    runbook: Runbook {
        id: RUNBOOK,
        summary: "Deployments with ReadWriteOnce volumes that roll with RollingUpdate instead of Recreate",
        text: include_str!("../../runbooks/registry-strategy.md"),
    },
    kinds: &[
        FindingKind {
            id: "rolling-update-with-rwo",
            about: "a Deployment that mounts a ReadWriteOnce volume rolls with RollingUpdate",
        },
    ],
    diagnose: |ctx, _| Box::pin(diagnose(ctx)),
    repair: Some(FixCommand {
        name: REPAIR,
        stage: RepairStage::Kubernetes,
        repeats: None,
        about: "Switch Deployments that mount ReadWriteOnce volumes to strategy Recreate",
        options: no_options,
        run: |ctx, _| Box::pin(async move { crate::repair::run(ctx, &mut RegistryStrategyRepair::new()).await }),
    }),
};
/// The Harbor chart value that sets the strategy of its Deployments with volumes.
pub const HELM_VALUE: &str = "updateStrategy.type";

fn strategy_of(d: &Deployment) -> DeploymentStrategy {
    d.spec
        .as_ref()
        .and_then(|s| s.strategy.clone())
        .unwrap_or_default()
}

/// A strategy as people read it: `RollingUpdate (maxSurge 25%, maxUnavailable 25%)`.
pub fn describe_strategy(s: &DeploymentStrategy) -> String {
    let ty = s.type_.clone().unwrap_or_else(|| "RollingUpdate".into());
    match &s.rolling_update {
        Some(ru) => {
            let v = |x: &Option<k8s_openapi::apimachinery::pkg::util::intstr::IntOrString>| match x
            {
                Some(k8s_openapi::apimachinery::pkg::util::intstr::IntOrString::Int(i)) => {
                    i.to_string()
                }
                Some(k8s_openapi::apimachinery::pkg::util::intstr::IntOrString::String(s)) => {
                    s.clone()
                }
                None => "default".into(),
            };
            format!(
                "{ty} (maxSurge {}, maxUnavailable {})",
                v(&ru.max_surge),
                v(&ru.max_unavailable)
            )
        }
        None => ty,
    }
}

fn is_recreate(d: &Deployment) -> bool {
    strategy_of(d).type_.as_deref() == Some("Recreate")
}

fn fix_command(ctx: &Ctx) -> String {
    format!("harbor-doctor fix registry-strategy{}", cluster_flags(ctx))
}

/// The Deployments that roll with RollingUpdate over a single-node claim.
async fn examine(ctx: &Ctx) -> Result<(Vec<HarborDeployment>, Vec<String>)> {
    let (_, found) = harbor_deployments(ctx).await?;
    let checked = found.iter().map(|d| d.name().to_string()).collect();
    Ok((
        found
            .into_iter()
            .filter(|d| !is_recreate(&d.deployment))
            .collect(),
        checked,
    ))
}

/// `diagnose registry-strategy`.
pub async fn diagnose(ctx: &Ctx) -> Result<CheckOutcome> {
    let (rolling, checked) = examine(ctx).await?;
    let ns = &ctx.opts.harbor_namespace;
    let mut out = CheckOutcome::default();
    if checked.is_empty() {
        out.notes.push(format!(
            "no Deployment labelled app=harbor in namespace {ns} mounts a ReadWriteOnce claim"
        ));
    } else {
        out.notes.push(format!("checked: {}", checked.join(", ")));
    }
    for d in &rolling {
        let claims: Vec<String> = d
            .claims
            .iter()
            .map(|c| format!("{} ({})", c.claim, c.access_modes.join(",")))
            .collect();
        let strategy = strategy_of(&d.deployment);
        out.findings.push(
            Finding::new(
                CHECK,
                "rolling-update-with-rwo",
                Severity::Warning,
                format!("deployment {ns}/{}", d.name()),
                format!(
                    "a rollout can hang on a Multi-Attach error: {} rolls with strategy {} while it mounts \
                     ReadWriteOnce claim {}, so the new pod may start on another node and wait there in \
                     ContainerCreating for the volume. Switch it to \
                     Recreate. A Helm upgrade of the Harbor chart puts the chart's value back: set \
                     {HELM_VALUE}=Recreate in the chart's values as well",
                    d.name(),
                    describe_strategy(&strategy),
                    claims.join(", ")
                ),
                RUNBOOK,
            )
            .evidence("deployment", d.name())
            .evidence("component", json!(d.component()))
            .evidence("strategy", serde_json::to_value(&strategy)?)
            .evidence(
                "claims",
                json!(d
                    .claims
                    .iter()
                    .map(|c| json!({"claim": c.claim, "access_modes": c.access_modes, "persistent_volume": c.persistent_volume}))
                    .collect::<Vec<_>>()),
            )
            .evidence("helm_value", json!({"name": HELM_VALUE, "value": "Recreate"}))
            .repair(fix_command(ctx)),
        );
    }
    Ok(out)
}

#[derive(Debug, Clone)]
struct Target {
    name: String,
    resource_version: String,
    strategy: DeploymentStrategy,
}

/// `fix registry-strategy`.
#[derive(Default)]
pub struct RegistryStrategyRepair {
    targets: Vec<Target>,
}

impl RegistryStrategyRepair {
    pub fn new() -> Self {
        Self::default()
    }
}

/// The patch that switches to Recreate and clears `rollingUpdate`; the
/// resourceVersion makes the server refuse it (409) if the Deployment
/// changed since it was read.
pub fn recreate_patch(resource_version: &str) -> Value {
    json!({
        "metadata": {"resourceVersion": resource_version},
        "spec": {"strategy": {"$retainKeys": ["type"], "type": "Recreate"}},
    })
}

impl Repair for RegistryStrategyRepair {
    fn id(&self) -> &'static str {
        REPAIR
    }

    fn subject(&self) -> String {
        if self.targets.is_empty() {
            "harbor".into()
        } else {
            self.targets
                .iter()
                .map(|t| t.name.as_str())
                .collect::<Vec<_>>()
                .join("+")
        }
    }

    fn notes(&self) -> Vec<String> {
        if self.targets.is_empty() {
            return vec![];
        }
        vec![format!(
            "A Helm upgrade of the Harbor chart sets the strategy from its values again: set \
             {HELM_VALUE}=Recreate there (values.yaml: `updateStrategy: {{type: Recreate}}`) so that this fix lasts."
        )]
    }

    async fn plan(&mut self, ctx: &Ctx) -> Result<Vec<PlanStep>> {
        let (rolling, _) = examine(ctx).await?;
        let ns = &ctx.opts.harbor_namespace;
        self.targets = rolling
            .iter()
            .map(|d| Target {
                name: d.name().to_string(),
                resource_version: d
                    .deployment
                    .metadata
                    .resource_version
                    .clone()
                    .unwrap_or_default(),
                strategy: strategy_of(&d.deployment),
            })
            .collect();
        Ok(self
            .targets
            .iter()
            .map(|t| {
                PlanStep::new(
                    "patch",
                    format!("deployment {ns}/{}", t.name),
                    format!(
                        "spec.strategy: {} -> Recreate",
                        describe_strategy(&t.strategy)
                    ),
                )
            })
            .collect())
    }

    async fn apply(&mut self, ctx: &Ctx, backups: &mut BackupSink) -> Result<()> {
        let kube = ctx.kube().await?;
        let ns = ctx.opts.harbor_namespace.as_str();
        let items = self
            .targets
            .iter()
            .map(|t| {
                Ok(BackupItem::Kubernetes {
                    api_version: "apps/v1".into(),
                    kind: "Deployment".into(),
                    namespace: Some(ns.to_string()),
                    name: t.name.clone(),
                    object: json!({
                        "metadata": {"resourceVersion": t.resource_version},
                        "spec": {"strategy": serde_json::to_value(&t.strategy)?},
                    }),
                    after: Some(json!({"spec": {"strategy": {"type": "Recreate"}}})),
                })
            })
            .collect::<Result<Vec<_>>>()?;
        let source = crate::backup::Source {
            description: kube.describe(),
            cluster: kube
                .cluster_uid()
                .await
                .map_err(|e| refused(format!("{e:#}; nothing was changed")))?,
            ..Default::default()
        };
        backups.write(&Backup::new(REPAIR, &self.subject(), source, items))?;
        let mut patched: Vec<String> = vec![];
        for t in &self.targets {
            if let Err(e) = kube
                .patch_strategic::<Deployment>(ns, &t.name, &recreate_patch(&t.resource_version))
                .await
            {
                // Refused before the first change: nothing happened.
                if patched.is_empty() && is_denied(&e) {
                    return Err(refused(format!("{e:#}. Nothing was changed")));
                }
                let so_far = if patched.is_empty() {
                    "No Deployment was changed".to_string()
                } else {
                    format!("Already switched: {}", patched.join(", "))
                };
                return Err(incomplete(format!(
                    "patching Deployment {ns}/{} failed: {e:#}. {so_far}; nothing else was changed",
                    t.name
                )));
            }
            patched.push(t.name.clone());
        }
        Ok(())
    }

    async fn verify(&mut self, ctx: &Ctx) -> Result<Verification> {
        let kube = ctx.kube().await?;
        let ns = ctx.opts.harbor_namespace.as_str();
        let mut wrong = vec![];
        for t in &self.targets {
            match kube.get_in::<Deployment>(ns, &t.name).await? {
                Some(d) if is_recreate(&d) && strategy_of(&d).rolling_update.is_none() => {}
                Some(d) => wrong.push(format!(
                    "{} is {}",
                    t.name,
                    describe_strategy(&strategy_of(&d))
                )),
                None => wrong.push(format!("{} no longer exists", t.name)),
            }
        }
        Ok(if wrong.is_empty() {
            Verification::Verified
        } else {
            Verification::NotVerified(wrong.join("; "))
        })
    }
}
