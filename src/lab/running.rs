//! `lab` in a doctor built with the simulators: start the installation
//! from `harbor_doctor_sim::lab`, hand its environment to the user or to a
//! command, stop it cleanly.

use std::ffi::OsString;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use harbor_doctor_sim::lab::{Lab, Postgres};
use tokio::signal::unix::{signal, Signal, SignalKind};

use crate::cli::LabArgs;
use crate::context::Ctx;
use crate::outcome::{refused, ExitCode};
use crate::render::Output;

/// The doctor's environment variables that the lab does not set: removed
/// from the command's environment so the user's own settings cannot point
/// it anywhere else.
const CLEARED_FOR_COMMAND: &[&str] = &["HARBOR_OIDC_ISSUER", "HARBOR_CLI_SECRET"];

/// Runs `lab`. In command mode this does not return: the process exits with
/// the command's own code, which can be any number, after the lab stopped.
pub async fn run(ctx: &Ctx, args: &LabArgs) -> Result<ExitCode> {
    let out = &ctx.out;
    // Before anything starts, so an early Ctrl-C still stops it cleanly.
    let mut signals = Signals::new()?;
    let lab = Lab::start(Postgres::Own, |step| out.info(format!("lab: {step}..."))).await?;
    let env_file = lab.dir().join("env");
    if let Err(e) = write_private(&env_file, &export_lines(lab.env())) {
        stop(out, lab)?;
        return Err(e);
    }
    describe(out, &lab);
    if args.command.is_empty() {
        out.print_stdout(&export_lines(lab.env()));
        out.info(format!(
            "lab: the same environment is in {} (mode 0600): `. {}` in another shell, then \
             `harbor-doctor diagnose`.\nlab: unset HARBOR_DATABASE_URL to reach the database \
             through the cluster's port-forward instead.\nlab: running; stop it with Ctrl-C.",
            env_file.display(),
            env_file.display()
        ));
        let name = signals.next().await;
        out.info(format!("lab: {name}: stopping"));
        stop(out, lab)?;
        return Ok(ExitCode::Ok);
    }
    out.info(format!(
        "lab: environment in {}; running {}",
        env_file.display(),
        args.command.join(" ")
    ));
    let status = run_command(&lab, &args.command, &mut signals).await;
    stop(out, lab)?;
    let code = status?;
    std::process::exit(code);
}

/// `export NAME=value` lines, each value quoted for a POSIX shell.
fn export_lines(env: &[(&str, String)]) -> String {
    env.iter()
        .map(|(k, v)| format!("export {k}={}\n", crate::repair::shell_quote(v)))
        .collect()
}

/// The environment file holds the lab's throwaway credentials: readable by
/// its owner only, and never written over an existing file.
fn write_private(path: &Path, text: &str) -> Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .with_context(|| format!("writing {}", path.display()))?;
    f.write_all(text.as_bytes())?;
    Ok(())
}

/// The planted issues as a list; on a terminal each item is wrapped at
/// word boundaries under its dash, since the terminal would cut words.
fn describe(out: &Output, lab: &Lab) {
    let mut text = String::from("lab: a simulated Harbor installation with these known issues:");
    let width = crate::render::stderr_terminal_width();
    for item in lab.planted() {
        let lines = match width {
            Some(width) => textwrap::wrap(
                item,
                textwrap::Options::new(width)
                    .initial_indent("  - ")
                    .subsequent_indent("    ")
                    .break_words(false)
                    .word_splitter(textwrap::WordSplitter::NoHyphenation),
            ),
            None => vec![format!("  - {item}").into()],
        };
        for line in lines {
            text.push('\n');
            text.push_str(&line);
        }
    }
    out.info(text);
}

fn stop(out: &Output, lab: Lab) -> Result<()> {
    let dir = lab.dir().display().to_string();
    lab.shutdown()?;
    out.info(format!("lab: stopped; removed {dir}"));
    Ok(())
}

/// Runs the command with the lab's environment and harbor-doctor first on
/// PATH, passing on SIGINT and SIGTERM, and returns its exit code (128 +
/// the signal's number when a signal ended it, as shells report it).
async fn run_command(lab: &Lab, command: &[String], signals: &mut Signals) -> Result<i32> {
    let bin = doctor_on_path(lab.dir())?;
    let mut path = OsString::from(bin.as_os_str());
    if let Some(old) = std::env::var_os("PATH") {
        path.push(":");
        path.push(old);
    }
    let mut cmd = tokio::process::Command::new(&command[0]);
    cmd.args(&command[1..])
        .envs(lab.env().iter().map(|(k, v)| (*k, v.as_str())))
        .env("PATH", path);
    for var in CLEARED_FOR_COMMAND {
        cmd.env_remove(var);
    }
    let mut child = cmd
        .spawn()
        .map_err(|e| refused(format!("cannot run {:?} in the lab: {e}", command[0])))?;
    let pid = child.id();
    loop {
        tokio::select! {
            status = child.wait() => {
                let status = status.context("waiting for the command")?;
                use std::os::unix::process::ExitStatusExt;
                return Ok(status
                    .code()
                    .unwrap_or_else(|| 128 + status.signal().unwrap_or(0)));
            }
            name = signals.next() => {
                if let Some(pid) = pid {
                    let number = if name == "SIGTERM" { libc::SIGTERM } else { libc::SIGINT };
                    // The command decides how to end; the lab waits for it.
                    unsafe { libc::kill(pid as i32, number) };
                }
            }
        }
    }
}

/// A `harbor-doctor` link to this very binary in the lab's directory, so
/// the command finds it on PATH whatever name it was installed under
/// (`kubectl-harbor_doctor`, a cargo target directory).
fn doctor_on_path(dir: &Path) -> Result<PathBuf> {
    let exe = std::env::current_exe().context("finding the harbor-doctor binary")?;
    let bin = dir.join("bin");
    std::fs::create_dir_all(&bin)?;
    std::os::unix::fs::symlink(&exe, bin.join("harbor-doctor"))
        .context("linking harbor-doctor into the lab's PATH")?;
    Ok(bin)
}

/// SIGINT and SIGTERM, the two ways to stop the lab.
struct Signals {
    interrupt: Signal,
    terminate: Signal,
}

impl Signals {
    fn new() -> Result<Signals> {
        Ok(Signals {
            interrupt: signal(SignalKind::interrupt()).context("listening for SIGINT")?,
            terminate: signal(SignalKind::terminate()).context("listening for SIGTERM")?,
        })
    }

    /// Waits for the next signal and names it.
    async fn next(&mut self) -> &'static str {
        tokio::select! {
            _ = self.interrupt.recv() => "SIGINT",
            _ = self.terminate.recv() => "SIGTERM",
        }
    }
}
