//! SIGINT and SIGTERM while a repair runs.
//!
//! Killing the process in the middle of a repair would be safe for the
//! database (PostgreSQL rolls back a transaction whose connection closes)
//! but could leave a half-written backup, or end without saying where the
//! backup is. So while a repair runs, the first signal only asks it to
//! stop: the step in progress finishes (the transaction commits or rolls
//! back whole), the runner prints the backup path and stops before the
//! next step. A second signal ends the process at once, after any backup
//! write in progress has finished, still printing the backup path.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Mutex;

static INTERRUPTED: AtomicBool = AtomicBool::new(false);
static WRITES_IN_PROGRESS: AtomicUsize = AtomicUsize::new(0);
static BACKUP: Mutex<Option<PathBuf>> = Mutex::new(None);

/// Whether a stop was asked for since the repair started.
pub fn interrupted() -> bool {
    INTERRUPTED.load(Ordering::SeqCst)
}

/// Remembers the backup's path, so that even a forced exit prints it.
pub fn backup_written(path: &std::path::Path) {
    *BACKUP.lock().unwrap_or_else(|e| e.into_inner()) = Some(path.to_path_buf());
}

/// Held while a file is being written: a forced exit waits for it, so no
/// temporary file is left behind.
pub struct Deferred(());

impl Drop for Deferred {
    fn drop(&mut self) {
        WRITES_IN_PROGRESS.fetch_sub(1, Ordering::SeqCst);
    }
}

pub fn defer() -> Deferred {
    WRITES_IN_PROGRESS.fetch_add(1, Ordering::SeqCst);
    Deferred(())
}

/// Starts catching SIGINT and SIGTERM for the rest of the process (a
/// repair's run). Must be called inside the tokio runtime.
pub fn catch_during_repair() {
    let Ok(mut term) = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
    else {
        return;
    };
    tokio::spawn(async move {
        let mut seen = 0;
        loop {
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = term.recv() => {}
            }
            seen += 1;
            if seen == 1 {
                INTERRUPTED.store(true, Ordering::SeqCst);
                crate::errln!(
                    "Interrupted: finishing the step in progress (the transaction commits or rolls back whole), \
                     then stopping. Press Ctrl-C again to stop at once."
                );
                continue;
            }
            // Bounded: a write that never ends must not keep the process.
            for _ in 0..200 {
                if WRITES_IN_PROGRESS.load(Ordering::SeqCst) == 0 {
                    break;
                }
                std::thread::sleep(std::time::Duration::from_millis(10));
            }
            let backup = BACKUP.lock().unwrap_or_else(|e| e.into_inner()).clone();
            // The apply had started: something may have changed (a
            // transaction still open rolls back as the connection closes,
            // but provisioning's Harbor calls are not transactional).
            match backup {
                Some(p) => crate::errln!(
                    "Stopped at once. Backup: {}. Whether the change committed is unknown: run \
                     `harbor-doctor diagnose` to see the state.",
                    p.display()
                ),
                None => crate::errln!(
                    "Stopped at once, before a backup was written. A database repair changed nothing; \
                     provisioning may have created some of what was missing. Run `harbor-doctor diagnose` \
                     to see the state."
                ),
            }
            let code = crate::outcome::ExitCode::Incomplete;
            std::process::exit(code.code());
        }
    });
}
