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
//! Installed (a link will do) as `kubectl_complete-harbor_doctor` on PATH,
//! it is the completer kubectl 1.26+ runs to complete
//! `kubectl harbor-doctor ...` ([`kubectl_complete`]); like the plugin name,
//! it is recognised in argv[0], so the CLI contract gains no subcommand.
//!
//! The shell scripts of `completions <SHELL>` complete both `harbor-doctor`
//! and `kubectl-harbor_doctor`.
//!
//! The manual pages come from `cargo run --example man -- DIR`, which calls
//! [`man_pages`]: a packager's step, not a subcommand, so the CLI contract
//! stays as the design has it.

pub mod kubectl_complete;
mod manual;

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
/// The file name kubectl runs to complete `kubectl harbor-doctor ...`.
pub const COMPLETER_FILE: &str = "kubectl_complete-harbor_doctor";

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

/// When argv[0] names the kubectl completer, answers kubectl's completion
/// request for the arguments and returns the exit code to end with; `None`
/// for any other name.
pub fn run_as_completer() -> Option<i32> {
    let mut args = std::env::args_os();
    let argv0 = args.next()?;
    if Path::new(&argv0).file_name()? != COMPLETER_FILE {
        return None;
    }
    let words: Vec<String> = args.map(|a| a.to_string_lossy().into_owned()).collect();
    let answer = kubectl_complete::complete(&words).to_protocol();
    let mut stdout = crate::pipe::stdout();
    // kubectl reads the answer only from a completer that exits 0.
    let _ = stdout.write_all(answer.as_bytes());
    let _ = stdout.flush();
    Some(0)
}

/// The CLI definition as the completions see it: `runbook` offers the
/// runbook ids, and `fix` only the names that have a repair. Parsing keeps
/// its own definition, where an unknown runbook id or a check without a
/// repair gets its explanation rather than clap's error.
pub fn completion_command() -> clap::Command {
    Cli::command().mut_subcommands(|sub| match sub.get_name() {
        "runbook" => sub.mut_arg("id", |id| {
            id.value_parser(clap::builder::PossibleValuesParser::new(
                crate::runbooks::all()
                    .map(|r| clap::builder::PossibleValue::new(r.id).help(r.summary)),
            ))
        }),
        "fix" => without_hidden_subcommands(sub),
        _ => sub,
    })
}

/// `fix` without the names it accepts only to refuse (a check without a
/// repair): clap's generators list hidden subcommands too.
fn without_hidden_subcommands(fix: clap::Command) -> clap::Command {
    let mut kept = clap::Command::new("fix")
        .subcommand_required(true)
        .subcommand_value_name("ISSUE")
        .args(fix.get_arguments().cloned())
        .subcommands(fix.get_subcommands().filter(|s| !s.is_hide_set()).cloned());
    if let Some(about) = fix.get_about() {
        kept = kept.about(about.clone());
    }
    kept
}

/// The name the bash script is generated for: clap_complete (4.6) names
/// the function of each subcommand inconsistently when the binary's name
/// has a hyphen (clap-rs/clap#6421: `cmd` is set to
/// `harbor__doctor__subcmd__diagnose`, while the case label reads
/// `harbor__subcmd__doctor__subcmd__diagnose`), so nothing after the first
/// word completes. Without a hyphen the names agree; the script's
/// `complete` lines are then pointed at the real names.
const BASH_SCRIPT_NAME: &str = "harbor_doctor";

/// Writes the completion script for `shell`, for both `harbor-doctor` and
/// the plugin's file name `kubectl-harbor_doctor` (kubectl completes
/// `kubectl harbor-doctor` through [`COMPLETER_FILE`] instead).
pub fn completions(shell: clap_complete::Shell, out: &mut dyn Write) {
    let _ = out.write_all(completion_script(shell).as_bytes());
}

/// The completion script for `shell`, as [`completions`] writes it.
pub fn completion_script(shell: clap_complete::Shell) -> String {
    use clap_complete::Shell;
    let mut cmd = completion_command();
    let name = match shell {
        Shell::Bash => BASH_SCRIPT_NAME,
        _ => NAME,
    };
    let mut buf = Vec::new();
    clap_complete::generate(shell, &mut cmd, name, &mut buf);
    let script = String::from_utf8_lossy(&buf).into_owned();
    match shell {
        Shell::Bash => for_both_names(&script, |line| {
            let register = line.trim_start().starts_with("complete -F ");
            match line.strip_suffix(&format!(" {BASH_SCRIPT_NAME}")) {
                Some(rest) if register => Some(format!("{rest} {NAME} {PLUGIN_FILE}")),
                _ => None,
            }
        }),
        Shell::Zsh => for_both_names(&script, |line| {
            let register =
                line.starts_with("#compdef ") || line.trim_start().starts_with("compdef ");
            match line.strip_suffix(&format!(" {NAME}")) {
                Some(rest) if register => Some(format!("{rest} {NAME} {PLUGIN_FILE}")),
                _ => None,
            }
        }),
        // The plugin's name completes as the binary's: the script's
        // conditions read the command line, not the command's name.
        Shell::Fish => format!("{script}complete -c {PLUGIN_FILE} --wraps {NAME}\n"),
        _ => script,
    }
}

/// `script` with the lines that register it (as `fix` rewrites them) for
/// both names.
fn for_both_names(script: &str, fix: impl Fn(&str) -> Option<String>) -> String {
    let mut out = String::with_capacity(script.len() + 64);
    for line in script.lines() {
        match fix(line) {
            Some(fixed) => out.push_str(&fixed),
            None => out.push_str(line),
        }
        out.push('\n');
    }
    out
}

/// Writes a manual page for the command and one for each subcommand
/// (`harbor-doctor.1`, `harbor-doctor-diagnose.1`,
/// `harbor-doctor-fix-oidc-conflict.1`, ...) into `dir` and returns their
/// paths, the main page first.
pub fn man_pages(dir: &Path) -> std::io::Result<Vec<PathBuf>> {
    fn render(
        cmd: &clap::Command,
        root: &clap::Command,
        path: Vec<String>,
        dir: &Path,
        written: &mut Vec<PathBuf>,
    ) -> std::io::Result<()> {
        let file = dir.join(match path.is_empty() {
            true => format!("{NAME}.1"),
            false => format!("{NAME}-{}.1", path.join("-")),
        });
        let mut page = Vec::new();
        manual::render(cmd, root, &path, &mut page)?;
        std::fs::write(&file, page)?;
        written.push(file);
        for sub in cmd.get_subcommands().filter(|s| !s.is_hide_set()) {
            let mut path = path.clone();
            path.push(sub.get_name().to_string());
            render(sub, root, path, dir, written)?;
        }
        Ok(())
    }
    std::fs::create_dir_all(dir)?;
    let mut cmd = Cli::command().disable_help_subcommand(true);
    cmd.build();
    let mut written = Vec::new();
    render(&cmd, &cmd, Vec::new(), dir, &mut written)?;
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

    /// clap-rs/clap#6421: each state the bash script's loop sets `cmd` to
    /// must be a label of the case that completes it.
    #[test]
    fn the_bash_script_labels_every_state_it_sets() {
        let script = completion_script(clap_complete::Shell::Bash);
        let states: std::collections::BTreeSet<&str> = script
            .lines()
            .filter_map(|l| l.trim().strip_prefix("cmd=\"")?.strip_suffix('"'))
            .filter(|s| !s.is_empty())
            .collect();
        let labels: std::collections::BTreeSet<&str> = script
            .lines()
            .filter_map(|l| l.trim().strip_suffix(')'))
            .collect();
        assert!(states.len() > 20, "{states:?}");
        for state in &states {
            assert!(labels.contains(state), "no case for {state}");
        }
        let registering: Vec<&str> = script
            .lines()
            .filter(|l| l.trim_start().starts_with("complete -F"))
            .collect();
        assert_eq!(registering.len(), 2, "{registering:?}");
        for line in registering {
            assert!(
                line.ends_with(" harbor-doctor kubectl-harbor_doctor"),
                "{line}"
            );
        }
    }

    #[test]
    fn zsh_and_fish_scripts_register_both_names() {
        let zsh = completion_script(clap_complete::Shell::Zsh);
        assert!(zsh.starts_with("#compdef harbor-doctor kubectl-harbor_doctor\n"));
        assert!(zsh.contains("compdef _harbor-doctor harbor-doctor kubectl-harbor_doctor\n"));
        let fish = completion_script(clap_complete::Shell::Fish);
        assert!(fish.ends_with("complete -c kubectl-harbor_doctor --wraps harbor-doctor\n"));
    }

    #[test]
    fn plugin_usage_names_kubectl() {
        let help = command(true).render_usage().to_string();
        assert!(help.contains("kubectl harbor-doctor"), "{help}");
        let help = command(false).render_usage().to_string();
        assert!(help.starts_with("Usage: harbor-doctor"), "{help}");
    }
}
