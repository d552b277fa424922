//! `restore BACKUP-FILE`: put back what a repair changed.
//!
//! Restore is a repair like the others: it plans (showing each row that will
//! be put back), confirms, honours `--dry-run`, writes a backup of the state
//! it replaces (so a restore can itself be undone), applies in one
//! transaction, and verifies. Rows come back exactly as they were,
//! update_time aside (Harbor's triggers set it). It refuses, changing
//! nothing, when the file is truncated or edited, or when putting a row back
//! would clash with rows created since (a new user with the same name, a
//! subject now linked elsewhere, a membership created again).

use std::path::PathBuf;

use anyhow::Result;
use serde_json::Value;

use crate::backup::{self, Backup, BackupItem};
use crate::clients::registry_db::{CommitError, RowImage};
use crate::context::Ctx;
use crate::outcome::{incomplete, refused};
use crate::repair::{BackupSink, Repair, Verification};
use crate::report::PlanStep;

/// Tables in the order rows go back: users before what refers to them.
const TABLE_ORDER: &[&str] = &["harbor_user", "oidc_user", "project_member", "properties"];

pub struct RestoreRepair {
    path: PathBuf,
    backup: Option<Backup>,
    /// Rows that differ from the backup, with whether they still exist.
    rows: Vec<(RowImage, bool)>,
}

impl RestoreRepair {
    pub fn new(path: PathBuf) -> Self {
        RestoreRepair {
            path,
            backup: None,
            rows: vec![],
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
        let mut images: Vec<RowImage> = vec![];
        for item in &backup.items {
            match item {
                BackupItem::RegistryDb(img) => images.push(img.clone()),
                other => {
                    return Err(refused(format!(
                        "the backup holds {other}, and restoring that kind of item is not available in this \
                         version of harbor-doctor yet; nothing was changed"
                    )))
                }
            }
        }
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
        self.backup = Some(backup);
        if !clashes.is_empty() {
            return Err(refused(format!(
                "restoring would clash with rows created or changed since the backup; nothing was changed:\n  {}",
                clashes.join("\n  ")
            )));
        }
        Ok(steps)
    }

    async fn apply(&mut self, ctx: &Ctx, backups: &mut BackupSink) -> Result<()> {
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
        let subject = self.subject();
        backups.write(&Backup::new("restore", &subject, db.describe(), before))?;
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

    async fn verify(&mut self, ctx: &Ctx) -> Result<Verification> {
        let db = ctx.db().await?;
        let tx = db.begin(ctx.lock_wait()).await?;
        let mut differ = vec![];
        for (img, _) in &self.rows {
            match tx.current(&img.table, img.key).await? {
                Some(cur) if same_row(&cur, &img.row) => {}
                _ => differ.push(format!("{} {}={}", img.table, img.key_column, img.key)),
            }
        }
        tx.rollback().await;
        Ok(if differ.is_empty() {
            Verification::Verified
        } else {
            Verification::NotVerified(format!(
                "rows still differ from the backup: {}",
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
