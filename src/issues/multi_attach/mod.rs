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
//!
//! `observe` reads the cluster once; `classify` makes every decision from
//! that snapshot without I/O (tested from fixtures); `finding` words them.

mod classify;
mod finding;
#[cfg(test)]
mod fixtures;
mod message;
mod observe;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use anyhow::Result;
use k8s_openapi::api::apps::v1::{Deployment, ReplicaSet};
use k8s_openapi::api::core::v1::Pod;

pub use self::message::{parse_message, MultiAttachMessage};

use self::classify::{Diagnosis, Rollout, Verdict};
use crate::backup::{Backup, BackupItem};
use crate::clients::kube::{is_denied, Kube};
use crate::clients::kube_objects::{name, pod_selector, revision_of, uid};
use crate::context::Ctx;
use crate::issues::harbor_workloads::{cluster_flags, HARBOR_LABELS};
use crate::issues::{no_options, FindingKind, FixCommand, KnownIssue, Runbook};
use crate::outcome::{incomplete, refused};
use crate::progress::Waiting;
use crate::repair::{BackupSink, Repair, Verification};
use crate::report::{CheckOutcome, PlanStep, RepairStage};

pub const CHECK: &str = "multi-attach";
pub const RUNBOOK: &str = "multi-attach";
const REPAIR: &str = "multi-attach";

pub static ISSUE: KnownIssue = KnownIssue {
    check: CHECK,
    about: "Harbor pods stuck in ContainerCreating on a Multi-Attach error",
    runbook: Runbook {
        id: RUNBOOK,
        summary: "a Harbor pod stuck in ContainerCreating on a Multi-Attach error after a rollout",
        text: include_str!("../../../runbooks/multi-attach.md"),
    },
    kinds: &[
        FindingKind {
            id: "stale-replicaset",
            about: "a stale ReplicaSet's pod holds the volume a new pod needs; deleting it frees the volume",
        },
        FindingKind {
            id: "holder-node-down",
            about: "the volume is held from a node that is NotReady or gone",
        },
        FindingKind {
            id: "holder-is-current",
            about: "the Deployment's current pods hold the volume: more than one replica on ReadWriteOnce",
        },
        FindingKind {
            id: "holder-elsewhere",
            about: "a pod outside the Deployment holds the volume",
        },
        FindingKind {
            id: "detach-pending",
            about: "the volume is attached to a node where no pod uses it",
        },
    ],
    diagnose: |ctx, _| Box::pin(diagnose(ctx)),
    repair: Some(FixCommand {
        name: REPAIR,
        stage: RepairStage::Kubernetes,
        repeats: None,
        about: "Delete the stale ReplicaSet whose pod holds a ReadWriteOnce volume",
        options: no_options,
        run: |ctx, _| {
            Box::pin(async move { crate::repair::run(ctx, &mut MultiAttachRepair::new()).await })
        },
    }),
};

fn fix_command(ctx: &Ctx) -> String {
    format!("harbor-doctor fix multi-attach{}", cluster_flags(ctx))
}

/// `diagnose multi-attach`.
pub async fn diagnose(ctx: &Ctx) -> Result<CheckOutcome> {
    let snapshot = observe::observe(ctx).await?;
    let ns = ctx.opts.harbor_namespace.as_str();
    let mut out = CheckOutcome::default();
    out.notes.push(if snapshot.deployments.is_empty() {
        format!(
            "no Deployment labelled {HARBOR_LABELS} in namespace {ns} mounts a ReadWriteOnce claim"
        )
    } else {
        let checked: Vec<&str> = snapshot.deployments.iter().map(|d| d.name()).collect();
        format!(
            "checked Deployment(s) with ReadWriteOnce claims: {}",
            checked.join(", ")
        )
    });
    let fix = fix_command(ctx);
    out.findings = classify::classify(&snapshot)
        .iter()
        .map(|d| finding::finding(ns, &fix, d))
        .collect();
    Ok(out)
}

/// A stale ReplicaSet the repair deletes.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Target {
    deployment: String,
    replicaset: String,
    uid: String,
    revision: Option<i64>,
}

/// What the repair will do about a set of diagnoses.
#[derive(Debug, Default)]
struct Deletions {
    steps: Vec<PlanStep>,
    targets: Vec<Target>,
    /// The stuck pods the deletions should free, per Deployment.
    waiting: BTreeMap<String, Vec<String>>,
    /// The stuck pods it leaves alone, as "subject: summary".
    refusals: Vec<String>,
}

/// Each stale ReplicaSet once, however many stuck pods it blocks; every
/// other verdict is a refusal worded as its finding.
fn plan_deletions(ns: &str, fix: &str, diagnoses: &[Diagnosis]) -> Deletions {
    let mut plan = Deletions::default();
    for d in diagnoses {
        let s = &d.stuck;
        let Verdict::DeleteStale(sets) = &d.verdict else {
            let f = finding::finding(ns, fix, d);
            plan.refusals.push(format!("{}: {}", f.subject, f.summary));
            continue;
        };
        plan.waiting
            .entry(s.deployment.clone())
            .or_default()
            .push(s.pod.clone());
        for o in sets {
            if plan.targets.iter().any(|t| t.uid == o.uid) {
                continue;
            }
            plan.steps.push(finding::delete_step(ns, s, o));
            plan.targets.push(Target {
                deployment: s.deployment.clone(),
                replicaset: o.name.clone(),
                uid: o.uid.clone(),
                revision: o.revision,
            });
        }
    }
    plan
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
        let snapshot = observe::observe(ctx).await?;
        let plan = plan_deletions(
            &ctx.opts.harbor_namespace,
            &fix_command(ctx),
            &classify::classify(&snapshot),
        );
        if plan.steps.is_empty() && !plan.refusals.is_empty() {
            return Err(refused(format!(
                "no ReplicaSet can safely be deleted; nothing was changed.\n  {}",
                plan.refusals.join("\n  ")
            )));
        }
        self.targets = plan.targets;
        self.waiting = plan.waiting;
        self.notes.extend(
            plan.refusals
                .into_iter()
                .map(|r| format!("Left alone: {r}")),
        );
        Ok(plan.steps)
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
            let d_rev = d.as_ref().and_then(revision_of);
            if d_rev.is_none() || d_rev == revision_of(&rs) {
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
        let progress = Waiting::new(&ctx.out);
        let mut deployments: Vec<String> =
            self.targets.iter().map(|t| t.deployment.clone()).collect();
        deployments.dedup();
        loop {
            let mut states = vec![];
            let mut done = true;
            for name in &deployments {
                let waiting = self.waiting.get(name).map(Vec::as_slice).unwrap_or(&[]);
                let r = rollout_state(kube, ns, name, waiting).await?;
                done &= r.done;
                states.push(r.state);
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

/// A Deployment's rollout as it is now: the Deployment, and the pods its
/// selector picks (none are listed when it is gone).
async fn rollout_state(
    kube: &Kube,
    ns: &str,
    deployment: &str,
    waiting: &[String],
) -> Result<Rollout> {
    let d: Option<Deployment> = kube.get_in(ns, deployment).await?;
    let pods: Vec<Pod> = match d.as_ref().and_then(pod_selector) {
        Some(selector) => kube.list_selected_in(ns, selector).await?,
        None => vec![],
    };
    Ok(classify::rollout(deployment, d.as_ref(), &pods, waiting))
}
