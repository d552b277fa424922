//! Long text for people through a pager, as git and man do.
//!
//! A runbook is longer than a screen. On a terminal it goes through
//! `$PAGER` (run by the shell, so it may carry options), or `less` when
//! PAGER is not set, with `LESS=FRX` unless the user set LESS: quit at
//! once when the text fits a screen (F), pass the colours through (R),
//! leave the text on the screen afterwards (X). An empty PAGER, no `less`,
//! or a pager that cannot be started prints the text directly. Not on a
//! terminal (a pipe, a file) there is never a pager.

use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use crate::pipe::Quiet;

/// Exit codes with which the shell says it could not run the command
/// (found but not executable; not found): the pager never started.
const SHELL_CANNOT_RUN: [i32; 2] = [126, 127];

/// Shows `text` on stdout: through a pager on a terminal, else as it is.
pub fn show(text: &str) -> std::io::Result<()> {
    if std::io::stdout().is_terminal() {
        if let Some(cmd) = pager_command() {
            if page(cmd, text) {
                return Ok(());
            }
        }
    }
    let mut stdout = crate::pipe::stdout();
    stdout.write_all(text.as_bytes())?;
    stdout.flush()
}

/// The pager to run, or None to print directly.
fn pager_command() -> Option<Command> {
    let mut cmd = match std::env::var_os("PAGER") {
        Some(p) if p.is_empty() => return None,
        Some(p) => {
            let mut c = Command::new("/bin/sh");
            c.arg("-c").arg(p);
            c
        }
        None => Command::new(find_on_path("less")?),
    };
    if std::env::var_os("LESS").is_none() {
        cmd.env("LESS", "FRX");
    }
    Some(cmd)
}

/// `name`'s executable on PATH, if there is one.
fn find_on_path(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join(name))
        .find(|p| is_executable(p))
}

fn is_executable(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

/// Runs the pager on `text`; false when it could not be started, so the
/// text still has to be shown.
fn page(mut cmd: Command, text: &str) -> bool {
    let mut child = match cmd.stdin(Stdio::piped()).spawn() {
        Ok(c) => c,
        Err(e) => {
            tracing::debug!("the pager could not be started: {e}");
            return false;
        }
    };
    // Ctrl-C and Ctrl-\ reach every process on the terminal. They are the
    // pager's keys now: ending this process under it would hand the
    // terminal back to the shell while the pager still reads from it.
    // Ignored only after the spawn, so that the pager does not inherit it.
    let _keys = IgnoreTerminalSignals::new();
    if let Some(stdin) = child.stdin.take() {
        // A pager that quits early closes the pipe: the reader is gone,
        // nothing more to show (Quiet drops the rest).
        let mut stdin = Quiet(stdin);
        let _ = stdin.write_all(text.as_bytes());
        let _ = stdin.flush();
    }
    match child.wait() {
        Ok(status) => !status
            .code()
            .is_some_and(|code| SHELL_CANNOT_RUN.contains(&code)),
        Err(e) => {
            tracing::debug!("waiting for the pager failed: {e}");
            true
        }
    }
}

/// SIGINT and SIGQUIT ignored while it lives, as they were before after.
struct IgnoreTerminalSignals {
    int: libc::sighandler_t,
    quit: libc::sighandler_t,
}

impl IgnoreTerminalSignals {
    fn new() -> Self {
        // SAFETY: signal(2) with SIG_IGN installs no handler code; the
        // previous dispositions are put back on drop.
        unsafe {
            IgnoreTerminalSignals {
                int: libc::signal(libc::SIGINT, libc::SIG_IGN),
                quit: libc::signal(libc::SIGQUIT, libc::SIG_IGN),
            }
        }
    }
}

impl Drop for IgnoreTerminalSignals {
    fn drop(&mut self) {
        // SAFETY: restores the dispositions signal(2) returned.
        unsafe {
            for (signal, previous) in [(libc::SIGINT, self.int), (libc::SIGQUIT, self.quit)] {
                if previous != libc::SIG_ERR {
                    libc::signal(signal, previous);
                }
            }
        }
    }
}
