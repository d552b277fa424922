//! Backups: what a repair changed, written before its change can commit.
//!
//! A backup is one JSON file, mode 0600, named
//! `<UTC timestamp>-<repair>-<subject>.json` in `--backup-dir`. It records
//! each thing the repair changes as it was *and* as the repair leaves it,
//! where it came from (the database's own identity, Harbor's external URL,
//! the cluster's kube-system namespace UID), and an HMAC-SHA256 seal made
//! with a key kept 0600 in the doctor's state directory.
//!
//! A backup file is untrusted input when it comes back to `restore`:
//! - the seal tells a file edited (or written) by someone without the key
//!   from one this doctor wrote; a plain checksum could be recomputed by
//!   anyone who edits the file. It cannot protect against someone who can
//!   read the key (root, or the same user), and a backup moved to another
//!   machine or user cannot be restored there, since the key stays behind;
//! - the file must be a regular file owned by the user running restore and
//!   not readable or writable by others;
//! - older formats are refused: they lack what restore needs to put back
//!   only what a repair changed.
//!
//! Files are written to a temporary name, fsynced, renamed, and the
//! directory fsynced: a backup that a repair reports is on disk. The
//! temporary file is removed on every error path, and the signal handler
//! (`crate::signals`) lets a write in progress finish before the process
//! ends, so no `.tmp` file is left behind.

use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use anyhow::Result;
use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use sha2::Sha256;

use crate::clients::files::RegularFile;
use crate::clients::registry_db::{DbIdentity, RegistryDb, RowChange};
use crate::outcome::refused;

pub const FORMAT: &str = "harbor-doctor-backup/2";
/// Formats this version recognises but no longer restores.
const OLDER_FORMATS: &[&str] = &["harbor-doctor-backup/1"];
/// No real backup comes near this: a user's rows are a few kilobytes, and
/// `--all` over 100,000 users stays well below it.
const MAX_BACKUP_BYTES: u64 = 256 << 20;
/// The seal key's file name, in the state directory.
pub const KEY_FILE: &str = "backup-seal.key";

/// One thing a repair changed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "system", rename_all = "kebab-case")]
pub enum BackupItem {
    /// A row of the registry database, before and after.
    RegistryDb(RowChange),
    /// A value of Harbor's configuration (`/api/v2.0/configurations`):
    /// `value` as it was, `after` as the repair sets it.
    HarborConfig {
        key: String,
        value: Value,
        #[serde(default)]
        after: Option<Value>,
    },
    /// A Kubernetes object, or the part of it the repair changes: `object`
    /// as it was, `after` as the repair leaves it (None when deleted).
    Kubernetes {
        api_version: String,
        kind: String,
        namespace: Option<String>,
        name: String,
        object: Value,
        #[serde(default)]
        after: Option<Value>,
    },
}

/// Where a backup's items came from: for people, and to tell at restore
/// whether the target is the same installation.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Source {
    /// For people (never a password).
    pub description: String,
    #[serde(default)]
    pub database: Option<DbIdentity>,
    /// Harbor's `external_url` (systeminfo).
    #[serde(default)]
    pub harbor: Option<String>,
    /// The UID of the cluster's kube-system namespace.
    #[serde(default)]
    pub cluster: Option<String>,
}

impl Source {
    /// The registry database, identified by itself.
    pub async fn database(db: &RegistryDb) -> Result<Source> {
        Ok(Source {
            description: db.describe().to_string(),
            database: Some(db.identity().await?),
            ..Source::default()
        })
    }
}

impl From<&str> for Source {
    fn from(description: &str) -> Source {
        Source {
            description: description.to_string(),
            ..Source::default()
        }
    }
}

impl From<String> for Source {
    fn from(description: String) -> Source {
        Source {
            description,
            ..Source::default()
        }
    }
}

impl From<&String> for Source {
    fn from(description: &String) -> Source {
        Source::from(description.as_str())
    }
}

/// The contents of a backup file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Backup {
    pub format: String,
    pub repair: String,
    pub subject: String,
    pub created_at: String,
    pub tool_version: String,
    pub source: Source,
    /// For a restore's own backup: the repair whose changes it undid.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub undoes: Option<String>,
    pub items: Vec<BackupItem>,
}

impl Backup {
    pub fn new(
        repair: &str,
        subject: &str,
        source: impl Into<Source>,
        items: Vec<BackupItem>,
    ) -> Backup {
        Backup {
            format: FORMAT.to_string(),
            repair: repair.to_string(),
            subject: subject.to_string(),
            created_at: chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
            tool_version: env!("CARGO_PKG_VERSION").to_string(),
            source: source.into(),
            undoes: None,
            items,
        }
    }
}

/// The doctor's state directory: `$XDG_STATE_HOME/harbor-doctor`, else
/// `~/.local/state/harbor-doctor`.
pub fn state_dir() -> Result<PathBuf> {
    match std::env::var_os("XDG_STATE_HOME").filter(|v| !v.is_empty()) {
        Some(state) => Ok(PathBuf::from(state).join("harbor-doctor")),
        None => {
            let home = std::env::var_os("HOME").filter(|v| !v.is_empty()).ok_or_else(|| {
                refused("neither --backup-dir, XDG_STATE_HOME nor HOME is set: there is nowhere to keep backups")
            })?;
            Ok(PathBuf::from(home).join(".local/state/harbor-doctor"))
        }
    }
}

/// Creates `dir` 0700 when it does not exist; an existing one keeps its
/// mode, and one that others could write into (or that belongs to someone
/// else) is refused: they could replace a backup or its key.
fn private_dir(dir: &Path, what: &str) -> Result<()> {
    let cannot = |e: std::io::Error| {
        refused(format!(
            "cannot create the {what} {}: {e}; nothing was changed. Choose another directory with --backup-dir",
            dir.display()
        ))
    };
    if !dir.exists() {
        if let Some(parent) = dir.parent() {
            std::fs::create_dir_all(parent).map_err(cannot)?;
        }
        match std::fs::DirBuilder::new().mode(0o700).create(dir) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
            Err(e) => return Err(cannot(e)),
        }
    }
    let meta = std::fs::metadata(dir).map_err(cannot)?;
    if !meta.is_dir() {
        return Err(refused(format!(
            "the {what} {} is not a directory; nothing was changed",
            dir.display()
        )));
    }
    let mode = meta.permissions().mode() & 0o7777;
    if mode & 0o022 != 0 || meta.uid() != effective_uid() {
        return Err(refused(format!(
            "the {what} {} can be written by other users (mode {mode:o}, owner uid {}), who could replace \
             what the doctor keeps there; nothing was changed. Use a private directory (e.g. \
             `mkdir -m 700 DIR` and --backup-dir DIR)",
            dir.display(),
            meta.uid()
        )));
    }
    Ok(())
}

fn effective_uid() -> u32 {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() }
}

/// Reads a file the doctor itself keeps (a backup, the key), refusing
/// what is not a private regular file of this user: a symlink, a FIFO or
/// a device put in its place, or a file others could have written.
fn read_private_file(path: &Path, what: &str, cap: u64) -> Result<Vec<u8>> {
    let untrusted = |problem: String| {
        refused(format!(
            "the {what} {} is not trusted: {problem}. Nothing was changed",
            path.display()
        ))
    };
    let file = RegularFile::open_no_follow(path, cap).map_err(|e| untrusted(e.to_string()))?;
    let meta = file.metadata();
    let mode = meta.permissions().mode() & 0o7777;
    if meta.uid() != effective_uid() {
        return Err(untrusted(format!(
            "it belongs to uid {}, not to the user running the doctor",
            meta.uid()
        )));
    }
    if mode & 0o066 != 0 {
        return Err(untrusted(format!(
            "other users can read or write it (mode {mode:o}); backups are written 0600"
        )));
    }
    file.read_all(cap).map_err(|e| untrusted(e.to_string()))
}

/// Creates `path` (which must not exist) mode 0600 with `bytes`, on disk.
fn write_new_private(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)?;
    f.write_all(bytes)?;
    f.sync_all()
}

/// The seal key, created on first use. `create` is false for restore: a
/// missing key means the backup was not sealed here.
fn seal_key(create: bool) -> Result<Vec<u8>> {
    let dir = state_dir()?;
    let path = dir.join(KEY_FILE);
    if !path.exists() {
        if !create {
            return Err(refused(format!(
                "there is no backup seal key at {}, so no backup written by this user on this machine can be \
                 checked; a backup written elsewhere cannot be restored here. Nothing was changed",
                path.display()
            )));
        }
        private_dir(&dir, "state directory")?;
        let key: [u8; 32] = rand::random();
        // Written whole under another name, then linked into place: two
        // doctors starting at once agree on one key, and none reads half.
        let tmp = dir.join(format!(".{KEY_FILE}.{}.tmp", std::process::id()));
        let written = (|| {
            write_new_private(&tmp, hex::encode(key).as_bytes())?;
            match std::fs::hard_link(&tmp, &path) {
                Ok(()) => Ok(()),
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(()),
                Err(e) => Err(e),
            }
        })();
        let _ = std::fs::remove_file(&tmp);
        written.map_err(|e| {
            refused(format!(
                "cannot create the backup seal key {}: {e}; nothing was changed",
                path.display()
            ))
        })?;
    }
    let text = read_private_file(&path, "backup seal key", 1024)?;
    hex::decode(String::from_utf8_lossy(&text).trim())
        .ok()
        .filter(|k| k.len() == 32)
        .ok_or_else(|| {
            refused(format!(
                "the backup seal key {} is damaged (not 64 hexadecimal digits); nothing was changed",
                path.display()
            ))
        })
}

/// The seal over a backup's canonical JSON (the document without its seal).
fn seal(key: &[u8], document: &Value) -> Result<String> {
    let mut mac = Hmac::<Sha256>::new_from_slice(key).expect("HMAC takes any key length");
    mac.update(&serde_json::to_vec(document)?);
    Ok(format!(
        "hmac-sha256:{}",
        hex::encode(mac.finalize().into_bytes())
    ))
}

fn check_seal(key: &[u8], document: &Value, claimed: &str) -> bool {
    let Some(hexed) = claimed.strip_prefix("hmac-sha256:") else {
        return false;
    };
    let Ok(tag) = hex::decode(hexed) else {
        return false;
    };
    let mut mac = Hmac::<Sha256>::new_from_slice(key).expect("HMAC takes any key length");
    match serde_json::to_vec(document) {
        Ok(bytes) => {
            mac.update(&bytes);
            // Constant time: the tag is a secret's function.
            mac.verify_slice(&tag).is_ok()
        }
        Err(_) => false,
    }
}

/// The backup directory.
pub struct BackupStore {
    dir: PathBuf,
}

impl BackupStore {
    /// `--backup-dir`, else `<state directory>/backups`.
    pub fn new(dir: Option<&Path>) -> Result<BackupStore> {
        let dir = match dir {
            Some(d) => d.to_path_buf(),
            None => state_dir()?.join("backups"),
        };
        Ok(BackupStore { dir })
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Writes a backup and returns its path. Fails (before any change can
    /// commit) when the file cannot be written whole; leaves no temporary
    /// file behind.
    pub fn write(&self, backup: &Backup) -> Result<PathBuf> {
        let unwritable = |e: std::io::Error| {
            refused(format!(
                "cannot write the backup into {}: {e}; nothing was changed. Choose another directory with \
                 --backup-dir",
                self.dir.display()
            ))
        };
        private_dir(&self.dir, "backup directory")?;
        let key = seal_key(true)?;
        let stamp = chrono::Utc::now().format("%Y%m%dT%H%M%S%.3fZ");
        let name = format!(
            "{stamp}-{}-{}.json",
            backup.repair,
            safe_file_part(&backup.subject)
        );
        let path = self.dir.join(&name);
        let tmp = self.dir.join(format!(".{name}.tmp"));
        let mut document = serde_json::to_value(backup)?;
        let sealed = seal(&key, &document)?;
        document["seal"] = Value::String(sealed);
        let mut bytes = serde_json::to_vec_pretty(&document)?;
        bytes.push(b'\n');
        let _hold = crate::signals::defer();
        let result = (|| {
            write_new_private(&tmp, &bytes)?;
            std::fs::rename(&tmp, &path)?;
            std::fs::File::open(&self.dir).and_then(|d| d.sync_all())
        })();
        if let Err(e) = result {
            let _ = std::fs::remove_file(&tmp);
            return Err(unwritable(e));
        }
        Ok(path)
    }

    /// The backups in this directory, newest first.
    pub fn list(&self) -> Vec<PathBuf> {
        let mut v: Vec<PathBuf> = std::fs::read_dir(&self.dir)
            .map(|rd| {
                rd.flatten()
                    .map(|e| e.path())
                    .filter(|p| {
                        p.extension().is_some_and(|e| e == "json")
                            && !p
                                .file_name()
                                .is_some_and(|n| n.to_string_lossy().starts_with('.'))
                    })
                    .collect()
            })
            .unwrap_or_default();
        v.sort();
        v.reverse();
        v
    }
}

/// Reads a backup file, refusing one that is not whole, not sealed by this
/// user's key, not private, or in an older format.
pub fn read(path: &Path) -> Result<Backup> {
    let bytes = read_private_file(path, "backup file", MAX_BACKUP_BYTES)?;
    let mut document: Value = serde_json::from_slice(&bytes).map_err(|e| {
        refused(format!(
            "{} is not a complete backup: it is not valid JSON ({e}); it may be truncated. Nothing was changed",
            path.display()
        ))
    })?;
    let format = document
        .get("format")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string();
    if OLDER_FORMATS.contains(&format.as_str()) {
        return Err(refused(format!(
            "{} is a backup in the older format {format:?}. This harbor-doctor restores only {FORMAT}: the \
             older files record whole rows as they were, not what the repair changed, so restoring one would \
             also undo every later change to those rows (a password set since, a login). Nothing was changed; \
             the file is plain JSON, see `harbor-doctor runbook oidc-conflict` to put values back by hand",
            path.display()
        )));
    }
    if format != FORMAT {
        return Err(refused(format!(
            "{} is not a harbor-doctor backup this version reads (format {:?}, expected {FORMAT}). Nothing was \
             changed",
            path.display(),
            crate::clients::http::clip(&format, 60)
        )));
    }
    let claimed = match document.as_object_mut().and_then(|o| o.remove("seal")) {
        Some(Value::String(s)) => s,
        _ => {
            return Err(refused(format!(
            "{} has no seal, so whether harbor-doctor wrote it cannot be told. Nothing was changed",
            path.display()
        )))
        }
    };
    let key = seal_key(false)?;
    if !check_seal(&key, &document, &claimed) {
        return Err(refused(format!(
            "{} was changed after harbor-doctor wrote it, or written with another key (its seal does not \
             match: a backup from another machine or user cannot be restored here). It cannot be trusted to \
             put things back; nothing was changed",
            path.display()
        )));
    }
    serde_json::from_value(document).map_err(|e| {
        refused(format!(
            "{} is sealed but its contents are not what this version expects ({e}). Nothing was changed",
            path.display()
        ))
    })
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
            BackupItem::RegistryDb(c) => {
                let key = crate::clients::registry_db::tables::table(&c.table)
                    .map(|t| t.key)
                    .unwrap_or("key");
                write!(f, "{} {key}={}", c.table, c.key)
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
            "cli-login",
            "oidc_scope",
            "test",
            vec![BackupItem::HarborConfig {
                key: "oidc_scope".into(),
                value: "openid".into(),
                after: Some("openid,offline_access".into()),
            }],
        )
    }

    /// Each test gets its own state directory (and key).
    fn private_state() -> tempfile::TempDir {
        let state = tempfile::tempdir().unwrap();
        std::env::set_var("XDG_STATE_HOME", state.path());
        state
    }

    // One test, because the state directory is process-wide.
    #[test]
    fn round_trips_refuses_edits_and_keeps_modes() {
        let _state = private_state();
        let dir = tempfile::tempdir().unwrap();
        let store = BackupStore::new(Some(dir.path())).unwrap();
        let path = store.write(&sample()).unwrap();
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        assert!(path
            .file_name()
            .unwrap()
            .to_string_lossy()
            .ends_with("-cli-login-oidc_scope.json"));
        let back = read(&path).unwrap();
        assert_eq!(back.items, sample().items);
        assert!(std::fs::read_dir(dir.path()).unwrap().all(|e| !e
            .unwrap()
            .file_name()
            .to_string_lossy()
            .ends_with(".tmp")));

        let text = std::fs::read_to_string(&path).unwrap();
        std::fs::write(&path, &text[..text.len() / 2]).unwrap();
        assert!(format!("{:#}", read(&path).unwrap_err()).contains("truncated"));

        // Edited, and resealed the way a plain checksum could be: refused.
        let mut doc: Value = serde_json::from_str(&text).unwrap();
        doc["items"][0]["value"] = "openid,evil".into();
        doc.as_object_mut().unwrap().remove("seal");
        let forged = {
            let mut m = Hmac::<Sha256>::new_from_slice(b"not the key").unwrap();
            m.update(&serde_json::to_vec(&doc).unwrap());
            format!("hmac-sha256:{}", hex::encode(m.finalize().into_bytes()))
        };
        doc["seal"] = forged.into();
        std::fs::write(&path, serde_json::to_vec(&doc).unwrap()).unwrap();
        assert!(format!("{:#}", read(&path).unwrap_err()).contains("seal does not match"));

        // Readable by others: refused, whatever it holds.
        std::fs::write(&path, &text).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        assert!(format!("{:#}", read(&path).unwrap_err()).contains("other users can read"));
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
        assert!(read(&path).is_ok());

        // An older format is refused with the reason.
        let old = text.replace(FORMAT, "harbor-doctor-backup/1");
        std::fs::write(&path, old).unwrap();
        assert!(format!("{:#}", read(&path).unwrap_err()).contains("older format"));

        // A shared directory keeps its mode and is refused.
        let shared = tempfile::tempdir().unwrap();
        std::fs::set_permissions(shared.path(), std::fs::Permissions::from_mode(0o1777)).unwrap();
        let err = BackupStore::new(Some(shared.path()))
            .unwrap()
            .write(&sample())
            .unwrap_err();
        assert!(format!("{err:#}").contains("can be written by other users"));
        let mode = std::fs::metadata(shared.path())
            .unwrap()
            .permissions()
            .mode()
            & 0o7777;
        assert_eq!(mode, 0o1777);
        assert_eq!(std::fs::read_dir(shared.path()).unwrap().count(), 0);

        // A new directory is made private.
        let fresh = dir.path().join("new/backups");
        BackupStore::new(Some(&fresh))
            .unwrap()
            .write(&sample())
            .unwrap();
        let mode = std::fs::metadata(&fresh).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o700);
    }
}
