//! Every file harbor-doctor opens itself: regular files only, read with a
//! size cap.
//!
//! A path the user names (or that an environment variable names) may be a
//! FIFO, which blocks `open` until a writer comes; a device such as
//! /dev/zero, which never ends; or a directory. Each of those hung the
//! doctor or grew it without limit before. So a file is
//! - stat'ed first (following symlinks, as reading it would), so a device is
//!   never even opened: opening some devices has side effects;
//! - opened with O_NONBLOCK, so a path swapped for a FIFO in between cannot
//!   block the open, and O_NOCTTY, so a terminal cannot become ours;
//! - checked again with fstat on the open descriptor: what is read is what
//!   was checked, and the caller may reuse that metadata (owner, mode);
//! - read up to a cap, with a clear error past it.
//!
//! Files a library reads itself (the kube crate reads kubeconfigs) are
//! checked with [`check_regular_file`] just before.

use std::fs::{File, Metadata};
use std::io::Read;
use std::os::unix::fs::{FileTypeExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

/// A docker `config.json`. It holds a few KiB even with hundreds of
/// registries; 4 MiB is far above any real one and still cheap to hold.
pub const DOCKER_CONFIG_CAP: u64 = 4 << 20;

/// A kubeconfig. They embed base64 certificates (a few KiB per cluster and
/// user), and generated ones for fleets of clusters reach a few MiB; 16 MiB
/// leaves room for those and still bounds memory.
pub const KUBECONFIG_CAP: u64 = 16 << 20;

/// A PEM CA bundle (`--ca-cert`, `sslrootcert`). The whole Mozilla root
/// store is about 220 KiB; 4 MiB is anything a CA file can sensibly be.
pub const CA_BUNDLE_CAP: u64 = 4 << 20;

/// Why a file was not read. Each message names the path and says what to
/// do; callers add which file it was meant to be (the docker config, ...).
#[derive(Debug, thiserror::Error)]
pub enum FileError {
    #[error("{} does not exist", path.display())]
    NotFound { path: PathBuf },
    #[error(
        "{} is {kind}, not a regular file; harbor-doctor reads only regular files (a FIFO could hang it \
         and a device could feed it without end). Use a regular file instead",
        path.display()
    )]
    NotRegular { path: PathBuf, kind: &'static str },
    #[error(
        "{} is larger than {} MiB{}, far more than such a file holds, so it was not read. Check that it \
         is the right file",
        path.display(),
        cap >> 20,
        size.map(|s| format!(" ({s} bytes)")).unwrap_or_default()
    )]
    TooLarge {
        path: PathBuf,
        cap: u64,
        size: Option<u64>,
    },
    #[error("cannot read {}: {source}", path.display())]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
}

impl FileError {
    fn io(path: &Path, source: std::io::Error) -> FileError {
        if source.kind() == std::io::ErrorKind::NotFound {
            FileError::NotFound {
                path: path.to_path_buf(),
            }
        } else {
            FileError::Io {
                path: path.to_path_buf(),
                source,
            }
        }
    }

    pub fn is_not_found(&self) -> bool {
        matches!(self, FileError::NotFound { .. })
    }
}

/// What a non-regular file is, as messages name it.
fn kind_of(metadata: &Metadata) -> Option<&'static str> {
    let t = metadata.file_type();
    if t.is_file() {
        None
    } else if t.is_dir() {
        Some("a directory")
    } else if t.is_fifo() {
        Some("a FIFO (named pipe)")
    } else if t.is_char_device() {
        Some("a character device")
    } else if t.is_block_device() {
        Some("a block device")
    } else if t.is_socket() {
        Some("a socket")
    } else {
        Some("not a regular file")
    }
}

fn ensure_regular(path: &Path, metadata: &Metadata, cap: u64) -> Result<(), FileError> {
    if let Some(kind) = kind_of(metadata) {
        return Err(FileError::NotRegular {
            path: path.to_path_buf(),
            kind,
        });
    }
    if metadata.len() > cap {
        return Err(FileError::TooLarge {
            path: path.to_path_buf(),
            cap,
            size: Some(metadata.len()),
        });
    }
    Ok(())
}

/// A regular file, open for reading, and its fstat metadata.
#[derive(Debug)]
pub struct RegularFile {
    path: PathBuf,
    file: File,
    metadata: Metadata,
}

impl RegularFile {
    /// Opens `path` (following symlinks) when it is a regular file of at
    /// most `cap` bytes.
    pub fn open(path: &Path, cap: u64) -> Result<RegularFile, FileError> {
        Self::open_with(path, cap, true)
    }

    /// Like [`RegularFile::open`], but a symbolic link is refused rather
    /// than followed: for the files the doctor keeps itself (backups, the
    /// seal key), where a link put in their place is an attack, not a
    /// convenience.
    pub fn open_no_follow(path: &Path, cap: u64) -> Result<RegularFile, FileError> {
        Self::open_with(path, cap, false)
    }

    fn open_with(path: &Path, cap: u64, follow: bool) -> Result<RegularFile, FileError> {
        let before = if follow {
            std::fs::metadata(path)
        } else {
            std::fs::symlink_metadata(path)
        }
        .map_err(|e| FileError::io(path, e))?;
        if before.file_type().is_symlink() {
            return Err(FileError::NotRegular {
                path: path.to_path_buf(),
                kind: "a symbolic link",
            });
        }
        ensure_regular(path, &before, cap)?;
        let nofollow = if follow { 0 } else { libc::O_NOFOLLOW };
        let file = std::fs::OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_NONBLOCK | libc::O_NOCTTY | nofollow)
            .open(path)
            .map_err(|e| FileError::io(path, e))?;
        let metadata = file.metadata().map_err(|e| FileError::io(path, e))?;
        ensure_regular(path, &metadata, cap)?;
        Ok(RegularFile {
            path: path.to_path_buf(),
            file,
            metadata,
        })
    }

    /// The metadata of the open file (fstat), for owner and mode checks
    /// that must be about the bytes that are read.
    pub fn metadata(&self) -> &Metadata {
        &self.metadata
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The whole file, refusing it when it grew past `cap` since it was
    /// checked.
    pub fn read_all(self, cap: u64) -> Result<Vec<u8>, FileError> {
        let mut bytes = Vec::with_capacity(self.metadata.len().min(cap) as usize);
        (&self.file)
            .take(cap.saturating_add(1))
            .read_to_end(&mut bytes)
            .map_err(|e| FileError::io(&self.path, e))?;
        if bytes.len() as u64 > cap {
            return Err(FileError::TooLarge {
                path: self.path,
                cap,
                size: None,
            });
        }
        Ok(bytes)
    }
}

/// The contents of `path`, a regular file of at most `cap` bytes.
pub fn read_regular_file(path: &Path, cap: u64) -> Result<Vec<u8>, FileError> {
    RegularFile::open(path, cap)?.read_all(cap)
}

/// Like [`read_regular_file`], with a missing file as `None`.
pub fn read_regular_file_if_exists(path: &Path, cap: u64) -> Result<Option<Vec<u8>>, FileError> {
    match read_regular_file(path, cap) {
        Ok(bytes) => Ok(Some(bytes)),
        Err(e) if e.is_not_found() => Ok(None),
        Err(e) => Err(e),
    }
}

/// Checks, without reading it, that `path` is a regular file of at most
/// `cap` bytes, for a file a library is about to read itself. A file
/// swapped in between is not caught; this guards against paths that were
/// wrong from the start (a FIFO, /dev/zero), not against someone who can
/// already rewrite the user's files.
pub fn check_regular_file(path: &Path, cap: u64) -> Result<Metadata, FileError> {
    Ok(RegularFile::open(path, cap)?.metadata)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_regular_files_and_follows_symlinks() {
        let dir = tempfile::tempdir().unwrap();
        let real = dir.path().join("real");
        std::fs::write(&real, b"hello").unwrap();
        let link = dir.path().join("link");
        std::os::unix::fs::symlink(&real, &link).unwrap();
        assert_eq!(read_regular_file(&real, 5).unwrap(), b"hello");
        assert_eq!(read_regular_file(&link, 5).unwrap(), b"hello");
        let meta = check_regular_file(&link, 5).unwrap();
        assert_eq!(meta.len(), 5);
        assert!(read_regular_file_if_exists(&dir.path().join("none"), 5)
            .unwrap()
            .is_none());
        assert!(read_regular_file(&dir.path().join("none"), 5)
            .unwrap_err()
            .is_not_found());
    }

    #[test]
    fn refuses_files_over_the_cap() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("big");
        std::fs::write(&path, vec![b'x'; 6]).unwrap();
        let err = read_regular_file(&path, 5).unwrap_err();
        assert!(
            matches!(err, FileError::TooLarge { size: Some(6), .. }),
            "{err}"
        );
        assert!(err.to_string().contains(&path.display().to_string()));
    }

    #[test]
    fn refuses_fifos_devices_and_directories_without_blocking() {
        let dir = tempfile::tempdir().unwrap();
        let fifo = dir.path().join("fifo");
        let c = std::ffi::CString::new(fifo.as_os_str().as_encoded_bytes()).unwrap();
        assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
        let zero_link = dir.path().join("zero");
        std::os::unix::fs::symlink("/dev/zero", &zero_link).unwrap();
        for (path, kind) in [
            (fifo.as_path(), "a FIFO"),
            (Path::new("/dev/zero"), "a character device"),
            (zero_link.as_path(), "a character device"),
            (dir.path(), "a directory"),
        ] {
            let err = read_regular_file(path, DOCKER_CONFIG_CAP).unwrap_err();
            let msg = err.to_string();
            assert!(
                matches!(err, FileError::NotRegular { .. })
                    && msg.contains(kind)
                    && msg.contains(&path.display().to_string()),
                "{msg}"
            );
            assert!(check_regular_file(path, DOCKER_CONFIG_CAP).is_err());
        }
    }
}
