//! Backups: what a repair is about to change, written before it changes it.
//!
//! A backup is one JSON file, mode 0600, named
//! `<UTC timestamp>-<repair>-<subject>.json` in `--backup-dir`. It carries a
//! SHA-256 checksum of its own contents, so `restore` can tell a truncated or
//! edited file from a good one and refuse it. Files are written to a
//! temporary name, fsynced, renamed, and the directory fsynced: a backup
//! that a repair reports is on disk.

use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use sha2::{Digest, Sha256};

use crate::clients::registry_db::RowImage;
use crate::outcome::refused;

pub const FORMAT: &str = "harbor-doctor-backup/1";

/// One thing as it was before a repair.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "system", rename_all = "kebab-case")]
pub enum BackupItem {
    /// A row of the registry database.
    RegistryDb(RowImage),
    /// A value of Harbor's configuration (`/api/v2.0/configurations`).
    HarborConfig { key: String, value: Value },
    /// A Kubernetes object, or the part of it the repair changes.
    Kubernetes {
        api_version: String,
        kind: String,
        namespace: Option<String>,
        name: String,
        /// The object (or the changed fields) as it was.
        object: Value,
    },
}

/// The contents of a backup file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Backup {
    pub format: String,
    pub repair: String,
    pub subject: String,
    pub created_at: String,
    pub tool_version: String,
    /// Where the items came from, for people (never a password).
    pub source: String,
    pub items: Vec<BackupItem>,
}

#[derive(Serialize, Deserialize)]
struct SealedBackup {
    #[serde(flatten)]
    backup: Backup,
    checksum: String,
}

impl Backup {
    pub fn new(repair: &str, subject: &str, source: &str, items: Vec<BackupItem>) -> Backup {
        Backup {
            format: FORMAT.to_string(),
            repair: repair.to_string(),
            subject: subject.to_string(),
            created_at: chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
            tool_version: env!("CARGO_PKG_VERSION").to_string(),
            source: source.to_string(),
            items,
        }
    }

    fn checksum(&self) -> Result<String> {
        // serde_json's Map is ordered by key, so this form is canonical.
        let canonical = serde_json::to_vec(&serde_json::to_value(self)?)?;
        Ok(format!(
            "sha256:{}",
            hex::encode(Sha256::digest(&canonical))
        ))
    }
}

/// The backup directory.
pub struct BackupStore {
    dir: PathBuf,
}

impl BackupStore {
    /// `--backup-dir`, else `$XDG_STATE_HOME/harbor-doctor/backups`, else
    /// `~/.local/state/harbor-doctor/backups`.
    pub fn new(dir: Option<&Path>) -> Result<BackupStore> {
        let dir = match dir {
            Some(d) => d.to_path_buf(),
            None => match std::env::var_os("XDG_STATE_HOME").filter(|v| !v.is_empty()) {
                Some(state) => PathBuf::from(state).join("harbor-doctor/backups"),
                None => {
                    let home = std::env::var_os("HOME")
                        .filter(|v| !v.is_empty())
                        .ok_or_else(|| refused("neither --backup-dir, XDG_STATE_HOME nor HOME is set: there is nowhere to write the backup"))?;
                    PathBuf::from(home).join(".local/state/harbor-doctor/backups")
                }
            },
        };
        Ok(BackupStore { dir })
    }

    /// Writes a backup and returns its path. Fails (before any change is
    /// made) when the file cannot be written whole.
    pub fn write(&self, backup: &Backup) -> Result<PathBuf> {
        let unwritable = |e: std::io::Error| {
            refused(format!(
                "cannot write the backup into {}: {e}; nothing was changed. Choose another \
                 directory with --backup-dir",
                self.dir.display()
            ))
        };
        std::fs::create_dir_all(&self.dir).map_err(unwritable)?;
        let _ = std::fs::set_permissions(&self.dir, std::fs::Permissions::from_mode(0o700));
        let stamp = chrono::Utc::now().format("%Y%m%dT%H%M%S%.3fZ");
        let name = format!(
            "{stamp}-{}-{}.json",
            backup.repair,
            safe_file_part(&backup.subject)
        );
        let path = self.dir.join(&name);
        let tmp = self.dir.join(format!(".{name}.tmp"));
        let sealed = SealedBackup {
            checksum: backup.checksum()?,
            backup: backup.clone(),
        };
        let bytes = serde_json::to_vec_pretty(&sealed)?;
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&tmp)
            .map_err(unwritable)?;
        file.write_all(&bytes).map_err(unwritable)?;
        file.write_all(b"\n").map_err(unwritable)?;
        file.sync_all().map_err(unwritable)?;
        drop(file);
        std::fs::rename(&tmp, &path).map_err(unwritable)?;
        std::fs::File::open(&self.dir)
            .and_then(|d| d.sync_all())
            .map_err(unwritable)?;
        Ok(path)
    }
}

/// Reads a backup file, refusing one that is not whole or was changed.
pub fn read(path: &Path) -> Result<Backup> {
    let bytes = std::fs::read(path)
        .with_context(|| format!("reading the backup file {}", path.display()))
        .map_err(|e| refused(format!("{e:#}")))?;
    let value: Value = serde_json::from_slice(&bytes).map_err(|e| {
        refused(format!(
            "{} is not a complete backup: it is not valid JSON ({e}); it may be truncated. Nothing was changed",
            path.display()
        ))
    })?;
    let sealed: SealedBackup = serde_json::from_value(value).map_err(|e| {
        refused(format!(
            "{} is not a harbor-doctor backup, or it is missing parts ({e}). Nothing was changed",
            path.display()
        ))
    })?;
    if sealed.backup.format != FORMAT {
        return Err(refused(format!(
            "{} has format {:?}; this harbor-doctor reads {FORMAT}",
            path.display(),
            sealed.backup.format
        )));
    }
    let expected = sealed.backup.checksum()?;
    if expected != sealed.checksum {
        return Err(refused(format!(
            "{} was changed after harbor-doctor wrote it (its checksum does not match its \
             contents), so it cannot be trusted to put things back exactly. Nothing was changed",
            path.display()
        )));
    }
    Ok(sealed.backup)
}

/// Keeps a subject usable in a file name.
fn safe_file_part(s: &str) -> String {
    let cleaned: String = s
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' || c == '.' {
                c
            } else {
                '_'
            }
        })
        .take(80)
        .collect();
    if cleaned.is_empty() {
        "subject".into()
    } else {
        cleaned
    }
}

impl std::fmt::Display for BackupItem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            BackupItem::RegistryDb(img) => {
                write!(f, "{} {}={}", img.table, img.key_column, img.key)
            }
            BackupItem::HarborConfig { key, .. } => write!(f, "Harbor configuration {key}"),
            BackupItem::Kubernetes {
                kind,
                namespace,
                name,
                ..
            } => match namespace {
                Some(ns) => write!(f, "{kind} {ns}/{name}"),
                None => write!(f, "{kind} {name}"),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Backup {
        Backup::new(
            "oidc-conflict",
            "alice",
            "test",
            vec![BackupItem::HarborConfig {
                key: "oidc_scope".into(),
                value: "openid".into(),
            }],
        )
    }

    #[test]
    fn round_trips_and_is_private() {
        let dir = tempfile::tempdir().unwrap();
        let store = BackupStore::new(Some(dir.path())).unwrap();
        let path = store.write(&sample()).unwrap();
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        assert!(path
            .file_name()
            .unwrap()
            .to_string_lossy()
            .ends_with("-oidc-conflict-alice.json"));
        assert_eq!(read(&path).unwrap(), {
            let mut b = sample();
            b.created_at = read(&path).unwrap().created_at;
            b
        });
    }

    #[test]
    fn refuses_truncated_and_edited_files() {
        let dir = tempfile::tempdir().unwrap();
        let path = BackupStore::new(Some(dir.path()))
            .unwrap()
            .write(&sample())
            .unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        std::fs::write(&path, &text[..text.len() / 2]).unwrap();
        assert!(format!("{:#}", read(&path).unwrap_err()).contains("truncated"));
        std::fs::write(&path, text.replace("openid", "openid,offline_access")).unwrap();
        assert!(format!("{:#}", read(&path).unwrap_err()).contains("changed after"));
    }
}
