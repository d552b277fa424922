//! How harbor-doctor is installed and invoked: as itself or as the kubectl
//! plugin, with shell completions and manual pages generated from the one
//! CLI definition in `cli`.
//!
//! Installed as `kubectl-harbor_doctor` on PATH, kubectl runs it for
//! `kubectl harbor-doctor ...` (kubectl maps the `-` of a plugin's command
//! to `_` in its file name). The binary recognises that name in argv[0],
//! says `kubectl harbor-doctor` in its usage text, and names its repair
//! commands that way, so what it prints can be pasted as it is.
//!
//! The manual pages come from `cargo run --example man -- DIR`, which calls
//! [`man_pages`]: a packager's step, not a subcommand, so the CLI contract
//! stays as DESIGN.md has it.

use std::ffi::OsString;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use clap::{CommandFactory, FromArgMatches};

use crate::cli::Cli;

/// The binary's name.
pub const NAME: &str = "harbor-doctor";
/// The file name kubectl looks for on PATH for `kubectl harbor-doctor`.
pub const PLUGIN_FILE: &str = "kubectl-harbor_doctor";
/// How users type it as a kubectl plugin.
pub const PLUGIN_COMMAND: &str = "kubectl harbor-doctor";

static INVOKED_AS_PLUGIN: OnceLock<bool> = OnceLock::new();

/// Whether argv[0] names the kubectl plugin (a path or a bare name).
pub fn is_plugin_name(argv0: &std::ffi::OsStr) -> bool {
    Path::new(argv0)
        .file_name()
        .is_some_and(|name| name == PLUGIN_FILE)
}

/// Whether this process runs as the kubectl plugin (known once
/// [`parse_args`] ran; false before).
pub fn invoked_as_plugin() -> bool {
    INVOKED_AS_PLUGIN.get().copied().unwrap_or(false)
}

/// How to invoke this program in commands it prints:
/// `harbor-doctor` or `kubectl harbor-doctor`.
pub fn command_name() -> &'static str {
    if invoked_as_plugin() {
        PLUGIN_COMMAND
    } else {
        NAME
    }
}

/// A repair command as the user can run it from here: the same command
/// behind `kubectl ` when running as the plugin.
pub fn as_invoked(command: &str) -> String {
    match command.strip_prefix(NAME) {
        Some(rest) if invoked_as_plugin() && (rest.is_empty() || rest.starts_with(' ')) => {
            format!("{PLUGIN_COMMAND}{rest}")
        }
        _ => command.to_string(),
    }
}

/// The CLI definition as invoked: as the kubectl plugin, its usage says
/// `kubectl harbor-doctor` and its help says how it was found.
pub fn command(as_plugin: bool) -> clap::Command {
    let cmd = Cli::command();
    if !as_plugin {
        return cmd;
    }
    cmd.bin_name(PLUGIN_COMMAND)
        .display_name(PLUGIN_COMMAND)
        .before_help(format!(
            "Running as the kubectl plugin `{PLUGIN_COMMAND}` (installed as {PLUGIN_FILE}); \
         the same program as `{NAME}`."
        ))
}

/// Parses the process's arguments, recognising the kubectl plugin form.
pub fn parse_args() -> Result<Cli, crate::cli::Unparsed> {
    parse_from(std::env::args_os().collect())
}

fn parse_from(args: Vec<OsString>) -> Result<Cli, crate::cli::Unparsed> {
    let as_plugin = args.first().is_some_and(|a| is_plugin_name(a));
    let _ = INVOKED_AS_PLUGIN.set(as_plugin);
    let mut cmd = command(as_plugin);
    crate::cli::settle_usage(&mut cmd);
    use clap::error::ErrorKind;
    let mut matches = match cmd.try_get_matches_from_mut(&args) {
        Err(e)
            if matches!(
                e.kind(),
                ErrorKind::MissingSubcommand | ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand
            ) =>
        {
            return Err(crate::cli::missing_command(&cmd, &args));
        }
        other => other?,
    };
    Ok(Cli::from_arg_matches_mut(&mut matches).map_err(|e| e.format(&mut cmd))?)
}

/// Writes the completion script for `shell` (for `harbor-doctor`; kubectl
/// completes its plugins itself).
pub fn completions(shell: clap_complete::Shell, out: &mut dyn Write) {
    clap_complete::generate(shell, &mut Cli::command(), NAME, out);
}

/// Writes a manual page for the command and one for each subcommand
/// (`harbor-doctor.1`, `harbor-doctor-diagnose.1`,
/// `harbor-doctor-fix-oidc-conflict.1`, ...) into `dir` and returns their
/// paths.
pub fn man_pages(dir: &Path) -> std::io::Result<Vec<PathBuf>> {
    fn render(cmd: clap::Command, dir: &Path, written: &mut Vec<PathBuf>) -> std::io::Result<()> {
        for sub in cmd.get_subcommands().filter(|s| !s.is_hide_set()) {
            render(sub.clone(), dir, written)?;
        }
        let page = clap_mangen::Man::new(cmd).manual("harbor-doctor manual");
        written.push(page.generate_to(dir)?);
        Ok(())
    }
    std::fs::create_dir_all(dir)?;
    let mut cmd = Cli::command().disable_help_subcommand(true);
    cmd.build();
    let mut written = Vec::new();
    render(cmd, dir, &mut written)?;
    written.reverse();
    Ok(written)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_plugin_is_recognised_by_its_file_name_only() {
        assert!(is_plugin_name("kubectl-harbor_doctor".as_ref()));
        assert!(is_plugin_name(
            "/usr/local/bin/kubectl-harbor_doctor".as_ref()
        ));
        assert!(!is_plugin_name("harbor-doctor".as_ref()));
        assert!(!is_plugin_name(
            "/opt/kubectl-harbor_doctor/harbor-doctor".as_ref()
        ));
        assert!(!is_plugin_name("kubectl-harbor-doctor".as_ref()));
    }

    #[test]
    fn plugin_usage_names_kubectl() {
        let help = command(true).render_usage().to_string();
        assert!(help.contains("kubectl harbor-doctor"), "{help}");
        let help = command(false).render_usage().to_string();
        assert!(help.starts_with("Usage: harbor-doctor"), "{help}");
    }
}
