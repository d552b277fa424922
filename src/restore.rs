//! `restore BACKUP-FILE`: put back what a repair changed, and only that.
//!
//! The file is untrusted input (see `backup`): it must be a private
//! regular file of this user, sealed with this user's key, in the current
//! format; its source must be the target (the database's own identity,
//! Harbor's `external_url`); and what it would change must be what the
//! named repair can change (its tables, columns and rows; never the local
//! admin). A backup records each value before and after its repair, so
//! restore puts back only the values the repair changed, and refuses,
//! showing the difference, when one of them has changed again since.
//! Columns the repair did not touch (a password set since, the OIDC token
//! Harbor rewrites at every login) are left alone.
//!
//! Restore is a repair like the others: it plans, confirms, honours
//! `--dry-run`, writes a backup of what it changes (so a restore can itself
//! be undone, removing the rows it put back), applies (rows in one
//! transaction, then Harbor configuration values in one request), and
//! verifies. It refuses, changing nothing, when putting a row back would
//! clash with rows created since.
//!
//! Kubernetes items (a Deployment's strategy, from `fix registry-strategy`)
//! are put back with a patch guarded by the resourceVersion read at plan
//! time; a ReplicaSet deleted by `fix multi-attach` is not recreated (the
//! Deployment controller owns ReplicaSets), and restore says what to do
//! instead.

use std::path::PathBuf;

use anyhow::Result;
use serde_json::{json, Map, Value};

use crate::backup::{self, Backup, BackupItem, Source};
use crate::clients::harbor::status_of;
use crate::clients::registry_db::{tables, RowChange, TableSpec};
use crate::context::Ctx;
use crate::issues::oidc_conflict::LOCAL_ADMIN_ID;
use crate::outcome::{incomplete, refused, ExitCode};
use crate::repair::{BackupSink, Repair, Verification};
use crate::report::PlanStep;
use k8s_openapi::api::apps::v1::{Deployment, DeploymentStrategy};

pub struct RestoreRepair {
    path: PathBuf,
    backup: Option<Backup>,
    /// Rows to put back, in order.
    rows: Vec<RowRestore>,
    /// Harbor configuration values to put back.
    config: Vec<ConfigValue>,
    /// Deployments whose strategy differs from the backup.
    strategies: Vec<StrategyRestore>,
    notes: Vec<String>,
}

/// What restore does to one row.
#[derive(Debug, Clone)]
enum RowAction {
    /// Set these columns back to these values.
    Update(Map<String, Value>),
    /// Put back a row the repair deleted.
    Insert(Map<String, Value>),
    /// Remove a row a restore put back (undoing that restore).
    Delete,
}

#[derive(Debug, Clone)]
struct RowRestore {
    spec: &'static TableSpec,
    key: i64,
    action: RowAction,
    /// The row as the plan saw it: apply refuses when it changed since.
    seen: Option<Map<String, Value>>,
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
            notes: vec![],
        }
    }
}

/// The row without the columns that change on their own.
fn stable(spec: &TableSpec, row: &Map<String, Value>) -> Map<String, Value> {
    row.iter()
        .filter(|(k, _)| !spec.volatile.contains(&k.as_str()))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect()
}

/// Who a row is about, for people.
fn describe_row(table: &str, row: Option<&Map<String, Value>>) -> String {
    let get = |c: &str| {
        row.and_then(|r| r.get(c))
            .map(|v| tables::show_value(c, Some(v)))
    };
    match table {
        "harbor_user" => get("username").map(|u| format!(" (user {u})")),
        "oidc_user" => get("user_id").map(|u| format!(" (link of user_id {u})")),
        "project_member" => match (get("project_id"), get("entity_id")) {
            (Some(p), Some(e)) => Some(format!(" (membership of user_id {e} in project {p})")),
            _ => None,
        },
        "properties" => get("k").map(|k| format!(" ({k})")),
        _ => None,
    }
    .unwrap_or_default()
}

/// What a repair may change, so that a backup naming anything else (an
/// edited file that got past the seal, a bug) is refused. `inverted`: the
/// backup is a restore's, undoing `repair`, so before and after swap.
fn within_scope(repair: &str, inverted: bool, item: &BackupItem) -> Result<(), String> {
    match (repair, item) {
        ("oidc-conflict", BackupItem::RegistryDb(c)) => oidc_row_in_scope(c, inverted),
        ("cli-login", BackupItem::HarborConfig { key, .. }) if key == "oidc_scope" => Ok(()),
        ("registry-strategy", BackupItem::Kubernetes { kind, .. }) if kind == "Deployment" => {
            Ok(())
        }
        ("multi-attach", BackupItem::Kubernetes { kind, .. }) if kind == "ReplicaSet" => Ok(()),
        ("provision", BackupItem::Kubernetes { kind, .. })
            if kind == "Secret" || kind == "ServiceAccount" =>
        {
            Ok(())
        }
        _ => Err(format!("{item}, which `{repair}` never changes")),
    }
}

fn oidc_row_in_scope(c: &RowChange, inverted: bool) -> Result<(), String> {
    let Some(spec) = tables::table(&c.table) else {
        return Err(format!(
            "table {:?}, which no repair changes",
            tables::show_value("t", Some(&Value::String(c.table.clone())))
        ));
    };
    let (before, after) = if inverted {
        (&c.after, &c.before)
    } else {
        (&c.before, &c.after)
    };
    for image in [before, after].into_iter().flatten() {
        if image.get(spec.key).and_then(Value::as_i64) != Some(c.key) {
            return Err(format!(
                "{} {}={} whose image names another key",
                c.table, spec.key, c.key
            ));
        }
        let admin = match c.table.as_str() {
            "harbor_user" => c.key == i64::from(LOCAL_ADMIN_ID),
            "oidc_user" => {
                image.get("user_id").and_then(Value::as_i64) == Some(i64::from(LOCAL_ADMIN_ID))
            }
            "project_member" => {
                image.get("entity_type").and_then(Value::as_str) == Some("u")
                    && image.get("entity_id").and_then(Value::as_i64)
                        == Some(i64::from(LOCAL_ADMIN_ID))
            }
            _ => false,
        };
        if admin {
            return Err(
                "a change to the local admin account (user_id 1), which is never changed".into(),
            );
        }
    }
    let allowed: &[&str] = match (c.table.as_str(), before.is_some(), after.is_some()) {
        // relink, soft-delete
        ("harbor_user", true, true) => &["username", "email", "deleted"],
        ("oidc_user", true, true) => &["subiss"],
        // delete, soft-delete: rows removed whole
        ("harbor_user" | "oidc_user" | "project_member", true, false) => return Ok(()),
        _ => {
            return Err(format!(
                "{} {}={} {} by `oidc-conflict`, which never does that",
                c.table,
                spec.key,
                c.key,
                if before.is_none() {
                    "created"
                } else {
                    "changed"
                }
            ))
        }
    };
    let outside: Vec<String> = c
        .changed_columns()
        .into_iter()
        .filter(|col| !allowed.contains(&col.as_str()))
        .collect();
    if outside.is_empty() {
        Ok(())
    } else {
        Err(format!(
            "changes to {}.{} of row {}={}, which `oidc-conflict` never changes",
            c.table,
            outside.join(", "),
            spec.key,
            c.key
        ))
    }
}

/// What putting a repair's backup back brings back, in the words of the
/// finding the repair had removed: a restore undoes a repair, so it
/// usually undoes its cure too.
pub fn brings_back(backup: &Backup) -> String {
    let who = &backup.subject;
    match backup.repair.as_str() {
        "oidc-conflict" => format!(
            "{who}'s old OIDC link: their next login fails with a 409 conflict again, unless Keycloak's id \
             for them is the old one again"
        ),
        "cli-login" => "Harbor's old oidc_scope: CLI secrets stop working again when the user's Keycloak \
                        session ends"
            .to_string(),
        "registry-strategy" => "strategy RollingUpdate: a rollout can hang on a Multi-Attach error again"
            .to_string(),
        "multi-attach" => "the stale ReplicaSet: its pod may hold the volume again".to_string(),
        "provision" => format!(
            "the Secrets and ServiceAccounts provisioning changed ({who}) as they were; what it created in \
             Harbor stays"
        ),
        "restore" => format!(
            "what the restore replaced: the repair `{}` is put back in force",
            backup.undoes.as_deref().unwrap_or("(unknown)")
        ),
        other => format!("what `{other}` changed"),
    }
}

/// How many backups `restore` without a file lists.
const LISTED: usize = 20;

/// `restore` without a file: the backups in --backup-dir, newest first,
/// each with what it would put back, or why it cannot be restored.
pub fn list(ctx: &Ctx) -> Result<ExitCode> {
    let store = crate::backup::BackupStore::new(ctx.opts.backup_dir.as_deref())?;
    let files = store.list();
    let mut listed = vec![];
    for path in files.iter().take(LISTED) {
        listed.push(match backup::read(path) {
            Ok(b) => json!({
                "path": path.display().to_string(),
                "repair": b.repair,
                "subject": b.subject,
                "created_at": b.created_at,
                "items": b.items.iter().map(|i| i.to_string()).collect::<Vec<_>>(),
                "brings_back": brings_back(&b),
                "refused": null,
            }),
            Err(e) => json!({
                "path": path.display().to_string(),
                "refused": format!("{e:#}"),
            }),
        });
    }
    if ctx.out.json() {
        ctx.out.print_json(&json!({
            "backup_dir": store.dir().display().to_string(),
            "backups": listed,
            "not_listed": files.len().saturating_sub(LISTED),
        }));
        return Ok(ExitCode::Ok);
    }
    let mut text = vec![];
    if files.is_empty() {
        text.push(format!(
            "No backups in {} (repairs write one before each change; --backup-dir names another \
             directory).",
            store.dir().display()
        ));
    } else {
        text.push(format!(
            "Backups in {}, newest first (restore one with `harbor-doctor restore <file>`, \
             --dry-run to see its plan):",
            store.dir().display()
        ));
    }
    for b in &listed {
        text.push(String::new());
        text.push(format!("  {}", b["path"].as_str().unwrap_or_default()));
        match b["refused"].as_str() {
            Some(why) => text.push(format!("      cannot be restored: {why}")),
            None => {
                text.push(format!(
                    "      {} of {}, written {}: {}",
                    b["repair"].as_str().unwrap_or_default(),
                    b["subject"].as_str().unwrap_or_default(),
                    b["created_at"].as_str().unwrap_or_default(),
                    b["items"]
                        .as_array()
                        .map(|i| i
                            .iter()
                            .filter_map(Value::as_str)
                            .collect::<Vec<_>>()
                            .join(", "))
                        .unwrap_or_default()
                ));
                text.push(format!(
                    "      puts back {}",
                    b["brings_back"].as_str().unwrap_or_default()
                ));
            }
        }
    }
    if files.len() > LISTED {
        text.push(String::new());
        text.push(format!("  ... and {} older ones", files.len() - LISTED));
    }
    crate::outln!("{}", text.join("\n"));
    Ok(ExitCode::Ok)
}

impl Repair for RestoreRepair {
    fn id(&self) -> &'static str {
        "restore"
    }

    fn command(&self) -> String {
        "restore".to_string()
    }

    fn proven_by(&self) -> Option<&'static str> {
        // What the restore brought back is the repaired finding again.
        let repair = self.backup.as_ref()?.repair.as_str();
        crate::issues::KnownIssue::find(if repair == "provision" {
            "teams"
        } else {
            repair
        })
        .map(|i| i.check)
    }

    fn subject(&self) -> String {
        self.backup
            .as_ref()
            .map(|b| format!("{}-{}", b.repair, b.subject))
            .unwrap_or_else(|| self.path.display().to_string())
    }

    fn notes(&self) -> Vec<String> {
        self.notes.clone()
    }

    async fn plan(&mut self, ctx: &Ctx) -> Result<Vec<PlanStep>> {
        let backup = backup::read(&self.path)?;
        self.notes
            .push(format!("This restore puts back {}.", brings_back(&backup)));
        let (repair, inverted) = match backup.repair.as_str() {
            "restore" => (backup.undoes.clone().unwrap_or_default(), true),
            r => (r.to_string(), false),
        };
        for item in &backup.items {
            within_scope(&repair, inverted, item).map_err(|why| {
                refused(format!(
                    "{} holds {why}; a backup can only put back what its repair changed. Nothing was changed",
                    self.path.display()
                ))
            })?;
        }
        if backup
            .items
            .iter()
            .any(|i| matches!(i, BackupItem::Kubernetes { .. }))
        {
            let steps = self.plan_kubernetes(ctx, &backup).await?;
            self.backup = Some(backup);
            return Ok(steps);
        }
        let mut rows: Vec<RowChange> = vec![];
        let mut config: Vec<(String, Value, Option<Value>)> = vec![];
        for item in &backup.items {
            match item {
                BackupItem::RegistryDb(c) => rows.push(c.clone()),
                BackupItem::HarborConfig { key, value, after } => {
                    config.push((key.clone(), value.clone(), after.clone()))
                }
                BackupItem::Kubernetes { .. } => unreachable!("handled above"),
            }
        }
        let mut steps = vec![];
        if !rows.is_empty() {
            steps.extend(self.plan_rows(ctx, &backup.source, rows).await?);
        }
        if !config.is_empty() {
            steps.extend(self.plan_config(ctx, &backup.source, config).await?);
        }
        self.backup = Some(backup);
        Ok(steps)
    }

    async fn apply(&mut self, ctx: &Ctx, backups: &mut BackupSink) -> Result<()> {
        if !self.strategies.is_empty() {
            return self.apply_kubernetes(ctx, backups).await;
        }
        let config_changes = self.config_changes(ctx).await?;
        if self.rows.is_empty() {
            let harbor = ctx.harbor().await?;
            let source = Source {
                description: format!("Harbor {}", harbor.base_url()),
                harbor: harbor.systeminfo().await?.external_url,
                ..Source::default()
            };
            backups.write(&self.own_backup(source, config_changes))?;
            return self.put_config(ctx).await;
        }
        self.apply_rows(ctx, backups, config_changes).await?;
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
            for r in &self.rows {
                let now = tx.row(r.spec, r.key, false).await?;
                let ok = match (&r.action, &now) {
                    (RowAction::Update(values), Some(now)) => {
                        values.iter().all(|(k, v)| now.get(k) == Some(v))
                    }
                    (RowAction::Insert(row), Some(now)) => {
                        stable(r.spec, row) == stable(r.spec, now)
                    }
                    (RowAction::Delete, None) => true,
                    _ => false,
                };
                if !ok {
                    differ.push(format!("{} {}={}", r.spec.name, r.spec.key, r.key));
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
    /// The backup of a restore: what it changes, so that it can be undone.
    fn own_backup(&self, source: Source, items: Vec<BackupItem>) -> Backup {
        let mut b = Backup::new("restore", &self.subject(), source, items);
        b.undoes = self.backup.as_ref().map(|orig| match orig.repair.as_str() {
            "restore" => orig.undoes.clone().unwrap_or_default(),
            r => r.to_string(),
        });
        b
    }

    /// Registry database rows: what to put back, refusing when the backup
    /// comes from another database, when a value the repair changed has
    /// changed again since, or when a row would clash with rows created since.
    async fn plan_rows(
        &mut self,
        ctx: &Ctx,
        source: &Source,
        mut changes: Vec<RowChange>,
    ) -> Result<Vec<PlanStep>> {
        let db = ctx.db().await?;
        let Some(recorded) = &source.database else {
            return Err(refused(format!(
                "{} does not say which database its rows came from; nothing was changed",
                self.path.display()
            )));
        };
        let target = db.identity().await?;
        if let Some(why) = target.differs_from(recorded) {
            return Err(refused(format!(
                "the backup comes from another registry database than {} ({why}); restoring it here would \
                 rewrite unrelated rows that happen to have the same ids. Nothing was changed. Point the \
                 doctor at the database the backup was taken from",
                db.describe()
            )));
        }
        // Rows put back in table order (users first); rows removed in the
        // reverse order (memberships and links before their user).
        changes.sort_by_key(|c| {
            let pos = tables::position(&c.table) as i64;
            (if c.before.is_none() { -pos } else { pos }, c.key)
        });
        let tx = db.begin(ctx.lock_wait()).await?;
        let mut steps = vec![];
        let mut conflicts = vec![];
        self.rows.clear();
        for c in changes {
            let spec = tables::table(&c.table).expect("checked by within_scope");
            let what = format!("{} {}={}", spec.name, spec.key, c.key);
            let current = tx.row(spec, c.key, false).await?;
            match (&c.before, &c.after, &current) {
                (Some(before), Some(after), Some(now)) => {
                    let mut values = Map::new();
                    let mut detail = vec![];
                    for col in c.changed_columns() {
                        let (b, a, n) = (before.get(&col), after.get(&col), now.get(&col));
                        if n == b {
                            continue;
                        }
                        if n != a {
                            conflicts.push(format!(
                                "{what}{}: {col} is now {}, but the repair left {} (and restore would put back \
                                 {})",
                                describe_row(spec.name, Some(now)),
                                tables::show_value(&col, n),
                                tables::show_value(&col, a),
                                tables::show_value(&col, b)
                            ));
                            continue;
                        }
                        detail.extend(tables::show_change(&col, a, b));
                        values.insert(col, b.cloned().unwrap_or(Value::Null));
                    }
                    if values.is_empty() {
                        continue;
                    }
                    let mut merged = now.clone();
                    merged.extend(values.clone());
                    conflicts.extend(tx.clashes(spec, c.key, &merged).await?);
                    steps.push(PlanStep::new(
                        "update",
                        format!("{what}{}", describe_row(spec.name, Some(now))),
                        detail.join("\n"),
                    ));
                    self.rows.push(RowRestore {
                        spec,
                        key: c.key,
                        action: RowAction::Update(values),
                        seen: current.clone(),
                    });
                }
                (Some(_), Some(_), None) => conflicts.push(format!(
                    "{what} was deleted since the repair, so its old values cannot be put back"
                )),
                (Some(before), None, Some(now)) => {
                    if stable(spec, before) != stable(spec, now) {
                        conflicts.push(format!(
                            "{what} was deleted by the repair, and a different row with that key exists now"
                        ));
                    }
                }
                (Some(before), None, None) => {
                    conflicts.extend(tx.clashes(spec, c.key, before).await?);
                    steps.push(PlanStep::new(
                        "insert",
                        format!("{what}{}", describe_row(spec.name, Some(before))),
                        "was deleted by the repair; put it back as it was",
                    ));
                    self.rows.push(RowRestore {
                        spec,
                        key: c.key,
                        action: RowAction::Insert(before.clone()),
                        seen: None,
                    });
                }
                (None, Some(after), Some(now)) => {
                    if stable(spec, after) != stable(spec, now) {
                        conflicts.push(format!(
                            "{what} was put back by the restore being undone, and has changed since"
                        ));
                        continue;
                    }
                    steps.push(PlanStep::new(
                        "delete",
                        format!("{what}{}", describe_row(spec.name, Some(now))),
                        "was put back by the restore being undone; remove it again",
                    ));
                    self.rows.push(RowRestore {
                        spec,
                        key: c.key,
                        action: RowAction::Delete,
                        seen: current.clone(),
                    });
                }
                // Already as before the repair.
                (None, Some(_), None) | (None, None, _) => {}
            }
        }
        tx.rollback().await;
        if !conflicts.is_empty() {
            return Err(refused(format!(
                "restoring would undo changes made since the backup, or clash with rows created since; nothing \
                 was changed:\n  {}",
                conflicts.join("\n  ")
            )));
        }
        Ok(steps)
    }

    /// Puts the rows back in one transaction, after writing a backup of
    /// what it changes (plus `config`, the configuration values it will
    /// change), so the restore can be undone.
    async fn apply_rows(
        &self,
        ctx: &Ctx,
        backups: &mut BackupSink,
        config: Vec<BackupItem>,
    ) -> Result<()> {
        let db = ctx.db().await?;
        let mut source = Source::database(db)
            .await
            .map_err(|e| refused(format!("{e:#}; nothing was changed")))?;
        if !config.is_empty() {
            let harbor = ctx.harbor().await?;
            source.description = format!("{}; Harbor {}", source.description, harbor.base_url());
            source.harbor = harbor.systeminfo().await?.external_url;
        }
        let tx = db.begin(ctx.lock_wait()).await?;
        for r in &self.rows {
            let now = tx.row(r.spec, r.key, true).await?;
            let same = match (&now, &r.seen) {
                (Some(n), Some(s)) => stable(r.spec, n) == stable(r.spec, s),
                (None, None) => true,
                _ => false,
            };
            if !same {
                tx.rollback().await;
                return Err(refused(format!(
                    "{} {}={} changed since the plan was made; nothing was changed. Run restore again",
                    r.spec.name, r.spec.key, r.key
                )));
            }
            let wanted = match (&r.action, &now) {
                (RowAction::Insert(row), _) => Some(row.clone()),
                (RowAction::Update(values), Some(n)) => {
                    let mut merged = n.clone();
                    merged.extend(values.clone());
                    Some(merged)
                }
                _ => None,
            };
            if let Some(row) = &wanted {
                let clashes = tx.clashes(r.spec, r.key, row).await?;
                if !clashes.is_empty() {
                    tx.rollback().await;
                    return Err(refused(format!(
                        "restoring would clash: {}; nothing was changed",
                        clashes.join("; ")
                    )));
                }
            }
        }
        for r in &self.rows {
            match &r.action {
                RowAction::Update(values) => tx.update_columns(r.spec, r.key, values).await?,
                RowAction::Insert(row) => tx.insert_row(r.spec, row).await?,
                RowAction::Delete => tx.delete_row(r.spec, r.key).await?,
            }
        }
        let mut items = vec![];
        for r in &self.rows {
            items.push(BackupItem::RegistryDb(RowChange {
                table: r.spec.name.to_string(),
                key: r.key,
                before: r.seen.clone(),
                after: tx.row(r.spec, r.key, false).await?,
            }));
        }
        items.extend(config);
        if let Err(e) = backups.write(&self.own_backup(source, items)) {
            tx.rollback().await;
            return Err(e);
        }
        tx.commit().await
    }

    /// Harbor configuration values: what to put back, refusing when the
    /// backup comes from another Harbor or a value changed again since.
    async fn plan_config(
        &mut self,
        ctx: &Ctx,
        source: &Source,
        items: Vec<(String, Value, Option<Value>)>,
    ) -> Result<Vec<PlanStep>> {
        let harbor = ctx.harbor().await?;
        let external = harbor.systeminfo().await?.external_url;
        if source.harbor.is_none() || source.harbor != external {
            return Err(refused(format!(
                "the backup comes from another Harbor ({}) than {} ({}); nothing was changed",
                source.harbor.as_deref().unwrap_or("not recorded"),
                harbor.base_url(),
                external.as_deref().unwrap_or("no external_url")
            )));
        }
        let now = harbor.configurations().await?;
        let mut steps = vec![];
        let mut hidden = vec![];
        let mut conflicts = vec![];
        self.config.clear();
        for (key, before, after) in items {
            let Some(current) = now.get(&key) else {
                hidden.push(key);
                continue;
            };
            if *current == before {
                continue;
            }
            if after.as_ref() != Some(current) {
                conflicts.push(format!(
                    "Harbor configuration {key} is now {current}, but the repair left {} (restore would put back \
                     {before})",
                    after.unwrap_or(Value::Null)
                ));
                continue;
            }
            steps.push(PlanStep::new(
                "update",
                format!("Harbor configuration {key}"),
                format!("{current} -> {before}"),
            ));
            self.config.push(ConfigValue {
                key,
                seen: current.clone(),
                wanted: before,
            });
        }
        if !hidden.is_empty() {
            return Err(refused(format!(
                "Harbor does not show its configuration value(s) {}, so restore can neither compare nor verify \
                 them; nothing was changed",
                hidden.join(", ")
            )));
        }
        if !conflicts.is_empty() {
            return Err(refused(format!(
                "restoring would undo changes made since the backup; nothing was changed:\n  {}",
                conflicts.join("\n  ")
            )));
        }
        Ok(steps)
    }

    /// The configuration values about to be replaced, before and after;
    /// refuses when one changed since the plan was made.
    async fn config_changes(&self, ctx: &Ctx) -> Result<Vec<BackupItem>> {
        if self.config.is_empty() {
            return Ok(vec![]);
        }
        let now = ctx.harbor().await?.configurations().await?;
        let mut items = vec![];
        for c in &self.config {
            let value = now.get(&c.key).cloned().unwrap_or(Value::Null);
            if value != c.seen {
                return Err(refused(format!(
                    "Harbor configuration {} changed since the plan was made (it is now {value}); nothing was \
                     changed. Run restore again",
                    c.key
                )));
            }
            items.push(BackupItem::HarborConfig {
                key: c.key.clone(),
                value,
                after: Some(c.wanted.clone()),
            });
        }
        Ok(items)
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
                    after,
                    ..
                } if kind == "Deployment" && object["spec"]["strategy"].is_object() => wanted.push((
                    ns.clone(),
                    name.clone(),
                    object["spec"]["strategy"].clone(),
                    after.as_ref().map(|a| a["spec"]["strategy"].clone()),
                )),
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
        let here = kube.cluster_uid().await?;
        if backup.source.cluster.is_some() && backup.source.cluster != here {
            return Err(refused(format!(
                "the backup comes from another cluster (kube-system namespace UID {}, here {}); nothing was \
                 changed. Use the kubeconfig context of the cluster the backup was taken from",
                backup.source.cluster.as_deref().unwrap_or("?"),
                here.as_deref().unwrap_or("unreadable")
            )));
        }
        let mut steps = vec![];
        self.strategies.clear();
        for (ns, name, strategy, left) in wanted {
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
            if left.as_ref().is_some_and(|l| *l != current) {
                return Err(refused(format!(
                    "Deployment {ns}/{name}'s strategy is now {}, but the repair left {}; restoring would undo that \
                     later change. Nothing was changed",
                    strategy_text(&current),
                    strategy_text(left.as_ref().expect("checked"))
                )));
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
                after: Some(serde_json::json!({"spec": {"strategy": s.wanted}})),
            })
            .collect();
        let source = Source {
            description: kube.describe(),
            cluster: kube.cluster_uid().await?,
            ..Source::default()
        };
        backups.write(&self.own_backup(source, before))?;
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
