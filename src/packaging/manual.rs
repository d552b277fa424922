//! The manual pages: clap_mangen's sections from the CLI definition, in the
//! order and under the headings man-pages(7) expects, plus the sections
//! clap has no notion of (EXIT STATUS, ENVIRONMENT, FILES, EXAMPLES).
//!
//! What can come from the definition does: the exit codes from the one
//! list `--help` prints too (so the two cannot disagree), the environment
//! from each option's `env`, and each example's
//! page from parsing it.

use std::io::{Error, ErrorKind, Write};

use clap::Command;
use roff::{bold, italic, roman, Roff};

use super::{COMPLETER_FILE, NAME, PLUGIN_COMMAND, PLUGIN_FILE};

/// Command lines shown under EXAMPLES, each on the page of the subcommand
/// it runs (and all on the main page). The namespace option is spelled as
/// the definition spells it.
fn examples(root: &Command) -> Vec<(String, &'static str)> {
    let namespace = root
        .get_arguments()
        .find(|a| a.get_id() == "harbor_namespace")
        .map(|a| match a.get_short() {
            Some(short) => format!("-{short}"),
            None => format!("--{}", a.get_long().unwrap_or("harbor-namespace")),
        })
        .unwrap_or_else(|| "--harbor-namespace".to_string());
    vec![
        (
            format!("{NAME} diagnose"),
            "Run every check against the installation the kubeconfig points at, and print the \
             report with the repair command of each finding.",
        ),
        (
            format!("{NAME} diagnose oidc-users -o json"),
            "Only the OIDC users check, as one JSON document on stdout for scripts.",
        ),
        (
            format!("{NAME} fix oidc-users --user alice --dry-run"),
            "Show the plan that repairs alice's OIDC link, and change nothing.",
        ),
        (
            format!("{NAME} provision --all"),
            "Provision every team namespace: Harbor project, members, robots, their Secrets.",
        ),
        (
            format!("{PLUGIN_COMMAND} {namespace} harbor diagnose"),
            "The same as a kubectl plugin, for a Harbor installed in the namespace harbor.",
        ),
    ]
}

/// The subcommand path an example runs (`["fix", "oidc-conflict"]` for
/// `fix oidc-users ...`), found by parsing it, which also proves it valid.
pub(super) fn example_path(root: &Command, line: &str) -> Result<Vec<String>, Error> {
    let words = line
        .strip_prefix("kubectl ")
        .unwrap_or(line)
        .split_whitespace();
    let matches = root.clone().try_get_matches_from(words).map_err(|e| {
        Error::new(
            ErrorKind::InvalidData,
            format!(
                "the manual's example `{line}` is not a valid command line ({}); \
                 correct it in src/packaging/manual.rs",
                e.kind()
            ),
        )
    })?;
    let mut path = Vec::new();
    let mut at = &matches;
    while let Some((name, sub)) = at.subcommand() {
        path.push(name.to_string());
        at = sub;
    }
    Ok(path)
}

/// Variables the program reads besides the options' own (those come from
/// the definition): they are not options, so clap does not know them.
const OTHER_ENVIRONMENT: &[(&str, &str)] = &[
    (
        "KUBECONFIG",
        "Kubeconfig file, or several separated by colons, when --kubeconfig is not given.",
    ),
    (
        "HARBOR_CLI_SECRET",
        "The CLI secret that diagnose cli-login --user tries (else a hidden prompt, or stdin \
         when it is not a terminal).",
    ),
    (
        "XDG_STATE_HOME",
        "Where the state directory is (default ~/.local/state): backups and the backup seal key.",
    ),
    (
        "RUST_LOG",
        "Log filter (tracing's EnvFilter syntax); overrides -v and -q.",
    ),
    (
        "NO_COLOR",
        "When set and not empty: no colour, even on a terminal.",
    ),
];

/// Renders the page of `cmd` (built, at `path` below the root; empty for
/// the main page) to `out`.
pub(super) fn render(
    cmd: &Command,
    root: &Command,
    path: &[String],
    out: &mut dyn Write,
) -> Result<(), Error> {
    // The version for every page; clap_mangen would name a subcommand's
    // page after the subcommand alone, without one.
    let man = clap_mangen::Man::new(page_command(cmd, path))
        .source(format!("{NAME} {}", env!("CARGO_PKG_VERSION")))
        .manual("harbor-doctor manual");
    // Commands in the text must stay whole to be copied: no hyphenation,
    // no stretched spaces.
    let mut whole = Roff::new();
    whole.control("nh", []).control("ad", ["l"]);
    let mut parts = vec![
        rendered(|w| man.render_title(w))?,
        rendered(|w| whole.to_writer(w))?,
        rendered(|w| man.render_name_section(w))?,
        rendered(|w| man.render_synopsis_section(w))?,
        rendered(|w| man.render_description_section(w))?,
    ];
    if cmd.get_arguments().any(|a| !a.is_hide_set()) {
        parts.push(rendered(|w| man.render_options_section(w))?);
    }
    if cmd.get_subcommands().any(|s| !s.is_hide_set()) {
        parts.push(rendered(|w| man.render_subcommands_section(w))?);
    }
    let mut own = Roff::new();
    exit_status(&mut own);
    environment(&mut own, cmd);
    files(&mut own);
    examples_section(&mut own, root, path)?;
    if path.is_empty() {
        own.control("SH", ["NOTES"]);
        for line in crate::cli::HELP_NOTES.lines() {
            own.text([roman(line)]);
            own.control("br", []);
        }
    }
    see_also(&mut own, path);
    parts.push(rendered(|w| own.to_writer(w))?);
    if cmd.get_version().is_some() {
        parts.push(rendered(|w| man.render_version_section(w))?);
    }

    // Each part starts with roff's preamble (a string definition); it
    // belongs once, at the top.
    let mut preamble = Vec::new();
    Roff::new().to_writer(&mut preamble)?;
    for (i, part) in parts.iter().enumerate() {
        let body = match part.strip_prefix(preamble.as_slice()) {
            Some(body) if i > 0 => body,
            _ => part.as_slice(),
        };
        out.write_all(body)?;
    }
    Ok(())
}

fn rendered(f: impl FnOnce(&mut Vec<u8>) -> Result<(), Error>) -> Result<Vec<u8>, Error> {
    let mut buf = Vec::new();
    f(&mut buf)?;
    Ok(buf)
}

/// The main page also says how the program is installed and invoked, which
/// its `--help` leaves to this manual.
fn page_command(cmd: &Command, path: &[String]) -> Command {
    if !path.is_empty() {
        return cmd.clone();
    }
    let about = cmd
        .get_long_about()
        .or(cmd.get_about())
        .map(|a| a.to_string())
        .unwrap_or_default();
    cmd.clone().long_about(format!(
        "{about}\n\n\
         It reports each check's findings with the command that repairs them; a repair shows \
         its plan, asks once, writes a backup of what it changes, applies and verifies it.\n\n\
         Installed as {PLUGIN_FILE} on PATH it is also the kubectl plugin {PLUGIN_COMMAND}: \
         the same program, which then names its commands that way. Installed (a link to it \
         will do) as {COMPLETER_FILE} on PATH it gives kubectl 1.26 and later the completions \
         of {PLUGIN_COMMAND} command lines. {NAME} completions SHELL prints the completion \
         script of bash, zsh, fish, elvish or PowerShell, which completes both {NAME} and \
         {PLUGIN_FILE}."
    ))
}

/// The same codes and words as `--help`, from the one list of them.
fn exit_status(roff: &mut Roff) {
    roff.control("SH", ["EXIT STATUS"]);
    roff.text([roman("Every command ends with one of these codes.")]);
    for code in crate::outcome::ExitCode::ALL {
        roff.control("TP", []);
        roff.text([bold(code.code().to_string())]);
        roff.text([roman(code.summary())]);
    }
}

fn environment(roff: &mut Roff, cmd: &Command) {
    roff.control("SH", ["ENVIRONMENT"]);
    roff.text([roman(
        "An option given on the command line wins over its variable.",
    )]);
    for arg in cmd.get_arguments().filter(|a| !a.is_hide_set()) {
        let Some(env) = arg.get_env() else { continue };
        let option = match arg.get_long() {
            Some(long) => format!("--{long}"),
            None => arg.get_id().to_string(),
        };
        let help = arg
            .get_help()
            .map(|h| h.to_string().lines().next().unwrap_or("").to_string())
            .unwrap_or_default();
        roff.control("TP", []);
        roff.text([bold(env.to_string_lossy())]);
        roff.text([italic(option), roman(format!(": {help}"))]);
    }
    for (name, meaning) in OTHER_ENVIRONMENT {
        roff.control("TP", []);
        roff.text([bold(*name)]);
        roff.text([roman(*meaning)]);
    }
}

fn files(roff: &mut Roff) {
    let key = crate::backup::KEY_FILE;
    let entries: [(String, String); 6] = [
        (
            format!("$XDG_STATE_HOME/{NAME}/backups, else ~/.local/state/{NAME}/backups"),
            "The backups repairs write before they change anything (the default of \
             --backup-dir): one file each, mode 0600, in a directory created 0700."
                .to_string(),
        ),
        (
            format!("$XDG_STATE_HOME/{NAME}/{key}, else ~/.local/state/{NAME}/{key}"),
            "The key that seals backups, so that restore can tell a backup edited since; \
             created on first use, mode 0600."
                .to_string(),
        ),
        (
            "~/.kube/config".to_string(),
            "The kubeconfig when neither --kubeconfig nor KUBECONFIG is given; inside a pod \
             the service account's credentials are used instead."
                .to_string(),
        ),
        (
            "$TMPDIR/harbor-doctor-lab-*/env".to_string(),
            format!(
                "The environment of a running {NAME} lab, as export lines (mode 0600), to \
                 source in another shell; removed when the lab stops."
            ),
        ),
        (
            format!("{PLUGIN_FILE} (on PATH)"),
            format!("This program installed as the kubectl plugin {PLUGIN_COMMAND}."),
        ),
        (
            format!("{COMPLETER_FILE} (on PATH)"),
            format!(
                "This program installed as the completer kubectl runs for {PLUGIN_COMMAND} \
                 (kubectl 1.26 and later)."
            ),
        ),
    ];
    roff.control("SH", ["FILES"]);
    for (path, meaning) in entries {
        roff.control("TP", []);
        roff.text([italic(path)]);
        roff.text([roman(meaning)]);
    }
}

fn examples_section(roff: &mut Roff, root: &Command, path: &[String]) -> Result<(), Error> {
    let mut shown = Vec::new();
    for (line, meaning) in examples(root) {
        if example_path(root, &line)?.starts_with(path) {
            shown.push((line, meaning));
        }
    }
    if shown.is_empty() {
        return Ok(());
    }
    roff.control("SH", ["EXAMPLES"]);
    for (line, meaning) in shown {
        roff.control("TP", []);
        roff.text([bold(line)]);
        roff.text([roman(meaning)]);
    }
    Ok(())
}

fn see_also(roff: &mut Roff, path: &[String]) {
    let mut pages = vec![match path.len() {
        0 => "kubectl(1)".to_string(),
        _ => format!("{NAME}(1)"),
    }];
    if path.len() > 1 {
        pages.push(format!("{NAME}-{}(1)", path[..path.len() - 1].join("-")));
    }
    roff.control("SH", ["SEE ALSO"]);
    roff.text([roman(pages.join(", "))]);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn root() -> Command {
        let mut cmd = <crate::cli::Cli as clap::CommandFactory>::command();
        cmd.build();
        cmd
    }

    #[test]
    fn every_example_parses_and_lands_on_its_page() {
        let root = root();
        let paths: Vec<Vec<String>> = examples(&root)
            .iter()
            .map(|(line, _)| example_path(&root, line).unwrap())
            .collect();
        assert_eq!(paths[0], ["diagnose"]);
        assert_eq!(paths[2], ["fix", "oidc-conflict"], "the alias resolved");
        assert_eq!(paths[3], ["provision"]);
        assert!(example_path(&root, "harbor-doctor diagnose --no-such").is_err());
    }

    #[test]
    fn help_and_manual_give_the_same_exit_codes() {
        let help = root().render_long_help().to_string();
        let mut page = Roff::new();
        exit_status(&mut page);
        let page = page.to_roff();
        for code in crate::outcome::ExitCode::ALL {
            let line = format!("  {}  {}", code.code(), code.summary());
            assert!(help.contains(&line), "--help lacks {line:?}:\n{help}");
            assert!(
                // roff escapes each hyphen.
                page.contains(&format!(
                    "\\fB{}\\fR\n{}",
                    code.code(),
                    code.summary().replace('-', "\\-")
                )),
                "EXIT STATUS lacks {}:\n{page}",
                code.code()
            );
        }
        assert!(help.contains(crate::cli::HELP_NOTES), "{help}");
    }
}
