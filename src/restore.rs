//! `restore BACKUP-FILE`: put back what a repair changed.
//!
//! Restore is a repair like the others: it plans (showing each row and
//! configuration value that will be put back), confirms, honours
//! `--dry-run`, writes a backup of the state it replaces (so a restore can
//! itself be undone), applies (rows in one transaction, then Harbor
//! configuration values in one request), and verifies. Rows come back exactly
//! as they were, update_time aside (Harbor's triggers set it). It refuses, changing
//! nothing, when the file is truncated or edited, or when putting a row back
//! would clash with rows created since (a new user with the same name, a
//! subject now linked elsewhere, a membership created again).
//!
//! Kubernetes items (a Deployment's strategy, from `fix registry-strategy`)
//! are put back with a patch guarded by the resourceVersion read at plan
//! time; a ReplicaSet deleted by `fix multi-attach` is not recreated (the
//! Deployment controller owns ReplicaSets), and restore says what to do
//! instead.

use std::path::PathBuf;

use anyhow::Result;
use serde_json::{Map, Value};

use crate::backup::{self, Backup, BackupItem};
use crate::clients::harbor::status_of;
use crate::clients::registry_db::{CommitError, RowImage};
use crate::context::Ctx;
use crate::outcome::{incomplete, refused};
use crate::repair::{BackupSink, Repair, Verification};
use crate::report::PlanStep;
use k8s_openapi::api::apps::v1::{Deployment, DeploymentStrategy};

/// Tables in the order rows go back: users before what refers to them.
const TABLE_ORDER: &[&str] = &["harbor_user", "oidc_user", "project_member", "properties"];

pub struct RestoreRepair {
    path: PathBuf,
    backup: Option<Backup>,
    /// Rows that differ from the backup, with whether they still exist.
    rows: Vec<(RowImage, bool)>,
    /// Harbor configuration values that differ from the backup.
    config: Vec<ConfigValue>,
    /// Deployments whose strategy differs from the backup.
    strategies: Vec<StrategyRestore>,
}

/// A Deployment strategy to put back.
#[derive(Debug, Clone)]
struct StrategyRestore {
    namespace: String,
    name: String,
    wanted: Value,
    /// The strategy and resourceVersion found at plan time.
    current: Value,
    resource_version: String,
}

/// A Harbor configuration value to put back.
struct ConfigValue {
    key: String,
    /// As the plan saw it.
    seen: Value,
    wanted: Value,
}

impl RestoreRepair {
    pub fn new(path: PathBuf) -> Self {
        RestoreRepair {
            path,
            backup: None,
            rows: vec![],
            config: vec![],
            strategies: vec![],
        }
    }
}

/// Whether two row images are the same, update_time aside.
fn same_row(a: &Value, b: &Value) -> bool {
    let strip = |v: &Value| {
        let mut v = v.clone();
        if let Some(o) = v.as_object_mut() {
            o.remove("update_time");
        }
        v
    };
    strip(a) == strip(b)
}

impl Repair for RestoreRepair {
    fn id(&self) -> &'static str {
        "restore"
    }

    fn subject(&self) -> String {
        self.backup
            .as_ref()
            .map(|b| format!("{}-{}", b.repair, b.subject))
            .unwrap_or_else(|| self.path.display().to_string())
    }

    async fn plan(&mut self, ctx: &Ctx) -> Result<Vec<PlanStep>> {
        let backup = backup::read(&self.path)?;
        if backup
            .items
            .iter()
            .any(|i| matches!(i, BackupItem::Kubernetes { .. }))
        {
            let steps = self.plan_kubernetes(ctx, &backup).await?;
            self.backup = Some(backup);
            return Ok(steps);
        }
        let mut images: Vec<RowImage> = vec![];
        let mut config: Vec<(String, Value)> = vec![];
        for item in &backup.items {
            match item {
                BackupItem::RegistryDb(img) => images.push(img.clone()),
                BackupItem::HarborConfig { key, value } => config.push((key.clone(), value.clone())),
                other => {
                    return Err(refused(format!(
                        "the backup holds {other}, and restoring that kind of item is not available in this \
                         version of harbor-doctor yet; nothing was changed"
                    )))
                }
            }
        }
        let mut steps = vec![];
        if !images.is_empty() {
            steps.extend(self.plan_rows(ctx, images).await?);
        }
        if !config.is_empty() {
            steps.extend(self.plan_config(ctx, config).await?);
        }
        self.backup = Some(backup);
        Ok(steps)
    }

    async fn apply(&mut self, ctx: &Ctx, backups: &mut BackupSink) -> Result<()> {
        if !self.strategies.is_empty() {
            return self.apply_kubernetes(ctx, backups).await;
        }
        let config_before = self.config_before(ctx).await?;
        if self.rows.is_empty() {
            let harbor = ctx.harbor().await?;
            let source = format!("Harbor {}", harbor.base_url());
            backups.write(&Backup::new(
                "restore",
                &self.subject(),
                &source,
                config_before,
            ))?;
            return self.put_config(ctx).await;
        }
        self.apply_rows(ctx, backups, config_before).await?;
        if self.config.is_empty() {
            return Ok(());
        }
        self.put_config(ctx).await.map_err(|e| {
            incomplete(format!(
                "the database rows were restored, but the Harbor configuration was not: {e:#}. Run restore \
                 again to put back what still differs"
            ))
        })
    }

    async fn verify(&mut self, ctx: &Ctx) -> Result<Verification> {
        if !self.strategies.is_empty() {
            return self.verify_kubernetes(ctx).await;
        }
        let mut differ = vec![];
        if !self.rows.is_empty() {
            let db = ctx.db().await?;
            let tx = db.begin(ctx.lock_wait()).await?;
            for (img, _) in &self.rows {
                match tx.current(&img.table, img.key).await? {
                    Some(cur) if same_row(&cur, &img.row) => {}
                    _ => differ.push(format!("{} {}={}", img.table, img.key_column, img.key)),
                }
            }
            tx.rollback().await;
        }
        if !self.config.is_empty() {
            let now = ctx.harbor().await?.configurations().await?;
            for c in &self.config {
                if now.get(&c.key) != Some(&c.wanted) {
                    differ.push(format!("Harbor configuration {}", c.key));
                }
            }
        }
        Ok(if differ.is_empty() {
            Verification::Verified
        } else {
            Verification::NotVerified(format!(
                "still different from the backup: {}",
                differ.join(", ")
            ))
        })
    }
}

impl RestoreRepair {
    /// Registry database rows: which differ from the backup, and whether
    /// putting them back would clash with rows created since.
    async fn plan_rows(&mut self, ctx: &Ctx, mut images: Vec<RowImage>) -> Result<Vec<PlanStep>> {
        images.sort_by_key(|i| {
            (
                TABLE_ORDER
                    .iter()
                    .position(|t| *t == i.table)
                    .unwrap_or(usize::MAX),
                i.key,
            )
        });
        let db = ctx.db().await?;
        let tx = db.begin(ctx.lock_wait()).await?;
        let mut steps = vec![];
        let mut clashes = vec![];
        self.rows.clear();
        for img in images {
            let current = tx.current(&img.table, img.key).await?;
            if current.as_ref().is_some_and(|c| same_row(c, &img.row)) {
                continue;
            }
            clashes.extend(tx.clashes(&img).await?);
            let detail = match &current {
                Some(cur) => changed_columns(cur, &img.row),
                None => "was deleted; insert it again".to_string(),
            };
            steps.push(PlanStep::new(
                if current.is_some() {
                    "update"
                } else {
                    "insert"
                },
                format!("{} {}={}", img.table, img.key_column, img.key),
                detail,
            ));
            self.rows.push((img, current.is_some()));
        }
        tx.rollback().await;
        if !clashes.is_empty() {
            return Err(refused(format!(
                "restoring would clash with rows created or changed since the backup; nothing was changed:\n  {}",
                clashes.join("\n  ")
            )));
        }
        Ok(steps)
    }

    /// Puts the rows back in one transaction, after writing a backup of
    /// them as they are now (plus `also_before`, the other systems' state).
    async fn apply_rows(
        &self,
        ctx: &Ctx,
        backups: &mut BackupSink,
        also_before: Vec<BackupItem>,
    ) -> Result<()> {
        let db = ctx.db().await?;
        let tx = db.begin(ctx.lock_wait()).await?;
        let mut before = vec![];
        for (img, existed) in &self.rows {
            let current = tx.lock_current(img).await?;
            if current.is_some() != *existed {
                tx.rollback().await;
                return Err(refused(format!(
                    "{} {}={} changed since the plan was made; nothing was changed. Run restore again",
                    img.table, img.key_column, img.key
                )));
            }
            let clashes = tx.clashes(img).await?;
            if !clashes.is_empty() {
                tx.rollback().await;
                return Err(refused(format!(
                    "restoring would clash: {}; nothing was changed",
                    clashes.join("; ")
                )));
            }
            if let Some(row) = current {
                before.push(BackupItem::RegistryDb(RowImage { row, ..img.clone() }));
            }
        }
        let source = if also_before.is_empty() {
            db.describe().to_string()
        } else {
            format!(
                "{}; Harbor {}",
                db.describe(),
                ctx.harbor().await?.base_url()
            )
        };
        before.extend(also_before);
        let subject = self.subject();
        if let Err(e) = backups.write(&Backup::new("restore", &subject, &source, before)) {
            tx.rollback().await;
            return Err(e);
        }
        for (img, existed) in &self.rows {
            tx.restore_row(img, *existed).await?;
        }
        match tx.commit().await {
            Ok(()) => Ok(()),
            Err(CommitError::RolledBack(m)) => Err(refused(format!("the database rolled the restore back ({m}); nothing was changed"))),
            Err(CommitError::OutcomeUnknown(m)) => Err(incomplete(format!(
                "the connection broke during COMMIT ({m}); whether the rows were restored is unknown. Run restore \
                 again with --dry-run to see what still differs"
            ))),
        }
    }

    /// Harbor configuration values that differ from the backup. A key that
    /// Harbor does not show (write-only, or unknown to this version) cannot
    /// be compared or verified, so the restore is refused.
    async fn plan_config(
        &mut self,
        ctx: &Ctx,
        items: Vec<(String, Value)>,
    ) -> Result<Vec<PlanStep>> {
        let now = ctx.harbor().await?.configurations().await?;
        let mut steps = vec![];
        let mut hidden = vec![];
        self.config.clear();
        for (key, wanted) in items {
            let Some(current) = now.get(&key) else {
                hidden.push(key);
                continue;
            };
            if *current == wanted {
                continue;
            }
            steps.push(PlanStep::new(
                "update",
                format!("Harbor configuration {key}"),
                format!("{current} -> {wanted}"),
            ));
            self.config.push(ConfigValue {
                key,
                seen: current.clone(),
                wanted,
            });
        }
        if !hidden.is_empty() {
            return Err(refused(format!(
                "Harbor does not show its configuration value(s) {}, so restore can neither compare nor verify \
                 them; nothing was changed",
                hidden.join(", ")
            )));
        }
        Ok(steps)
    }

    /// The configuration values about to be replaced, as they are now;
    /// refuses when one changed since the plan was made.
    async fn config_before(&self, ctx: &Ctx) -> Result<Vec<BackupItem>> {
        if self.config.is_empty() {
            return Ok(vec![]);
        }
        let now = ctx.harbor().await?.configurations().await?;
        let mut before = vec![];
        for c in &self.config {
            let value = now.get(&c.key).cloned().unwrap_or(Value::Null);
            if value != c.seen {
                return Err(refused(format!(
                    "Harbor configuration {} changed since the plan was made (it is now {value}); nothing was \
                     changed. Run restore again",
                    c.key
                )));
            }
            before.push(BackupItem::HarborConfig {
                key: c.key.clone(),
                value,
            });
        }
        Ok(before)
    }

    /// Writes the backup's configuration values in one request.
    async fn put_config(&self, ctx: &Ctx) -> Result<()> {
        let values: Map<String, Value> = self
            .config
            .iter()
            .map(|c| (c.key.clone(), c.wanted.clone()))
            .collect();
        ctx.harbor()
            .await?
            .set_configurations(&values)
            .await
            .map_err(|e| match status_of(&e) {
                Some(s) if (400..500).contains(&s) => {
                    refused(format!("Harbor refused the configuration ({e:#}); it was not changed"))
                }
                _ => incomplete(format!(
                    "writing Harbor's configuration failed ({e:#}); whether Harbor applied it is unknown. Run \
                     restore again with --dry-run to see what still differs"
                )),
            })
    }
}

fn strategy_text(v: &Value) -> String {
    serde_json::from_value::<DeploymentStrategy>(v.clone())
        .map(|s| crate::issues::registry_strategy::describe_strategy(&s))
        .unwrap_or_else(|_| v.to_string())
}

impl RestoreRepair {
    /// Plans putting Kubernetes objects back: Deployment strategies only.
    async fn plan_kubernetes(&mut self, ctx: &Ctx, backup: &Backup) -> Result<Vec<PlanStep>> {
        let mut wanted = vec![];
        for item in &backup.items {
            match item {
                BackupItem::Kubernetes {
                    kind,
                    namespace: Some(ns),
                    name,
                    object,
                    ..
                } if kind == "Deployment" && object["spec"]["strategy"].is_object() => {
                    wanted.push((ns.clone(), name.clone(), object["spec"]["strategy"].clone()))
                }
                BackupItem::Kubernetes {
                    kind,
                    namespace,
                    name,
                    object,
                    ..
                } if kind == "ReplicaSet" => {
                    let ns = namespace.clone().unwrap_or_default();
                    let owner = object["metadata"]["ownerReferences"][0]["name"]
                        .as_str()
                        .unwrap_or("<deployment>");
                    let revision = object["metadata"]["annotations"]["deployment.kubernetes.io/revision"]
                        .as_str()
                        .unwrap_or("<revision>");
                    return Err(refused(format!(
                        "the backup holds ReplicaSet {ns}/{name}, deleted by `fix multi-attach`. restore does not \
                         recreate ReplicaSets: the Deployment controller owns them, and the old one would hold the \
                         volume again. To go back to that revision's pod template, run `kubectl -n {ns} rollout undo \
                         deployment/{owner} --to-revision={revision}`; nothing was changed"
                    )));
                }
                BackupItem::Kubernetes { kind, .. } if kind == "Secret" || kind == "ServiceAccount" => {
                    return Err(refused(format!(
                        "the backup holds {item}, written by `provision`. restore does not put team Secrets and \
                         ServiceAccounts back: provisioning set the robots' passwords in Harbor to match the new \
                         Secrets, so the old ones would no longer log in. The backup keeps them for reference; to \
                         repair a team, run `harbor-doctor provision --team <ID>` again. Nothing was changed"
                    )));
                }
                other => {
                    return Err(refused(format!(
                        "the backup holds {other}, and restoring that kind of item is not available in this \
                         version of harbor-doctor yet; nothing was changed"
                    )))
                }
            }
        }
        let kube = ctx.kube().await?;
        let mut steps = vec![];
        self.strategies.clear();
        for (ns, name, strategy) in wanted {
            let Some(d) = kube.get_in::<Deployment>(&ns, &name).await? else {
                return Err(refused(format!(
                    "Deployment {ns}/{name} no longer exists, so its strategy cannot be put back; nothing was changed"
                )));
            };
            let current = serde_json::to_value(
                d.spec
                    .as_ref()
                    .and_then(|s| s.strategy.clone())
                    .unwrap_or_default(),
            )?;
            if current == strategy {
                continue;
            }
            steps.push(PlanStep::new(
                "patch",
                format!("deployment {ns}/{name}"),
                format!(
                    "spec.strategy: {} -> {}",
                    strategy_text(&current),
                    strategy_text(&strategy)
                ),
            ));
            self.strategies.push(StrategyRestore {
                namespace: ns,
                name,
                wanted: strategy,
                current,
                resource_version: d.metadata.resource_version.clone().unwrap_or_default(),
            });
        }
        Ok(steps)
    }

    async fn apply_kubernetes(&mut self, ctx: &Ctx, backups: &mut BackupSink) -> Result<()> {
        let kube = ctx.kube().await?;
        let before = self
            .strategies
            .iter()
            .map(|s| BackupItem::Kubernetes {
                api_version: "apps/v1".into(),
                kind: "Deployment".into(),
                namespace: Some(s.namespace.clone()),
                name: s.name.clone(),
                object: serde_json::json!({
                    "metadata": {"resourceVersion": s.resource_version},
                    "spec": {"strategy": s.current},
                }),
            })
            .collect();
        backups.write(&Backup::new(
            "restore",
            &self.subject(),
            &kube.describe(),
            before,
        ))?;
        let mut done: Vec<String> = vec![];
        for s in &self.strategies {
            let mut strategy = s.wanted.clone();
            let keys: Vec<String> = strategy
                .as_object()
                .map(|m| m.keys().cloned().collect())
                .unwrap_or_default();
            strategy["$retainKeys"] = serde_json::json!(keys);
            let patch = serde_json::json!({
                "metadata": {"resourceVersion": s.resource_version},
                "spec": {"strategy": strategy},
            });
            if let Err(e) = kube
                .patch_strategic::<Deployment>(&s.namespace, &s.name, &patch)
                .await
            {
                if done.is_empty() && crate::clients::kube::is_denied(&e) {
                    return Err(refused(format!("{e:#}. Nothing was changed")));
                }
                return Err(incomplete(format!(
                    "putting back the strategy of Deployment {}/{} failed: {e:#}. {}",
                    s.namespace,
                    s.name,
                    if done.is_empty() {
                        "Nothing was changed".to_string()
                    } else {
                        format!("Already put back: {}", done.join(", "))
                    }
                )));
            }
            done.push(s.name.clone());
        }
        Ok(())
    }

    async fn verify_kubernetes(&mut self, ctx: &Ctx) -> Result<Verification> {
        let kube = ctx.kube().await?;
        let mut differ = vec![];
        for s in &self.strategies {
            let d = kube.get_in::<Deployment>(&s.namespace, &s.name).await?;
            let now = d
                .and_then(|d| d.spec.and_then(|sp| sp.strategy))
                .map(|st| serde_json::to_value(st).unwrap_or_default());
            if now.as_ref() != Some(&s.wanted) {
                differ.push(format!("deployment {}/{}", s.namespace, s.name));
            }
        }
        Ok(if differ.is_empty() {
            Verification::Verified
        } else {
            Verification::NotVerified(format!(
                "strategies still differ from the backup: {}",
                differ.join(", ")
            ))
        })
    }
}

/// `col: now -> backup` for each column that differs, update_time aside.
fn changed_columns(current: &Value, wanted: &Value) -> String {
    let (Some(cur), Some(want)) = (current.as_object(), wanted.as_object()) else {
        return "replace the row".into();
    };
    let parts: Vec<String> = want
        .iter()
        .filter(|(k, v)| k.as_str() != "update_time" && cur.get(k.as_str()) != Some(v))
        .map(|(k, v)| {
            format!(
                "{k}: {} -> {}",
                cur.get(k.as_str()).unwrap_or(&Value::Null),
                v
            )
        })
        .collect();
    parts.join("; ")
}
