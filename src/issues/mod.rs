//! The known issues, one module each, all of the same shape:
//!
//! - `diagnose(ctx) -> CheckOutcome`: read only; findings name their runbook
//!   and a complete repair command (or none when no repair is safe);
//! - a type implementing [`crate::repair::Repair`]: `plan` turns findings
//!   into the list of changes, `apply` makes them after writing a backup,
//!   `verify` diagnoses again;
//! - one `pub static ISSUE: KnownIssue` that tells the rest of the program
//!   about it: its check id, its runbook, its `fix` subcommand and options.
//!
//! Adding a known issue means exactly three things: its module here (with
//! its `ISSUE`), its runbook file in `runbooks/` (which `ISSUE` embeds), and
//! one line in [`KNOWN_ISSUES`]. The check id `diagnose` accepts, the `fix`
//! subcommand and its alias, `runbook <id>`, the help text and the shell
//! completions are all derived from that list (`tests` below and the
//! packaging tests check that nothing else needs touching).

pub mod cli_login;
pub mod connectivity;
pub mod harbor_workloads;
pub mod multi_attach;
pub mod oidc_conflict;
pub mod registry_strategy;
pub mod teams;

use std::sync::LazyLock;

use anyhow::Result;
use futures::future::LocalBoxFuture;

use crate::context::Ctx;
use crate::outcome::ExitCode;
use crate::report::CheckOutcome;

/// Every known issue, in the order `diagnose` reports them.
pub static KNOWN_ISSUES: &[&KnownIssue] = &[
    &connectivity::ISSUE,
    &oidc_conflict::ISSUE,
    &multi_attach::ISSUE,
    &registry_strategy::ISSUE,
    &cli_login::ISSUE,
    &teams::ISSUE,
];

/// What the program knows about one known issue, declared in its module.
pub struct KnownIssue {
    /// The check id: `diagnose <CHECK>`, the report's `id`.
    pub check: &'static str,
    /// One line on what the check looks at (help, completions).
    pub about: &'static str,
    pub runbook: Runbook,
    /// Every finding `kind` the check can report, each with one line on
    /// what it means; the runbook documents each.
    pub kinds: &'static [FindingKind],
    /// Runs the check (read only).
    pub diagnose: DiagnoseFn,
    /// Its automatic repair, when one is safe to offer.
    pub repair: Option<FixCommand>,
}

/// A finding's stable `kind` and what it means.
pub struct FindingKind {
    pub id: &'static str,
    pub about: &'static str,
}

/// A runbook: the human version of a known-issue module.
pub struct Runbook {
    pub id: &'static str,
    /// One line for `runbook` without an id.
    pub summary: &'static str,
    pub text: &'static str,
}

/// A `fix` subcommand. It is also reachable by the check id when that
/// differs (`fix oidc-users` is `fix oidc-conflict`).
pub struct FixCommand {
    pub name: &'static str,
    pub about: &'static str,
    /// Where it acts, which orders the report's next steps.
    pub stage: crate::report::RepairStage,
    /// An option its command takes more than once (`provision --team a
    /// --team b`): the next steps run the commands that differ only in
    /// its last value as one.
    pub repeats: Option<&'static str>,
    /// Adds the repair's own options to its subcommand.
    pub options: fn(clap::Command) -> clap::Command,
    /// Runs the repair with the options parsed from its subcommand.
    pub run: FixFn,
}

pub type DiagnoseFn =
    for<'a> fn(&'a Ctx, &'a CheckOptions) -> LocalBoxFuture<'a, Result<CheckOutcome>>;
pub type FixFn = for<'a> fn(&'a Ctx, &'a clap::ArgMatches) -> LocalBoxFuture<'a, Result<ExitCode>>;

/// For a repair with no options of its own.
pub fn no_options(cmd: clap::Command) -> clap::Command {
    cmd
}

/// Reads a repair's typed options from its subcommand's matches. clap has
/// validated them already, so a failure here is a bug in the definitions;
/// it is still a usage error, not a panic.
pub fn fix_options<T: clap::FromArgMatches>(matches: &clap::ArgMatches) -> Result<T> {
    T::from_arg_matches(matches)
        .map_err(|e| crate::outcome::Failure::error(ExitCode::Usage, e.to_string()))
}

impl KnownIssue {
    /// The known issue whose check id, runbook id or `fix` name is `name`.
    pub fn find(name: &str) -> Option<&'static KnownIssue> {
        KNOWN_ISSUES.iter().copied().find(|i| {
            i.check == name
                || i.runbook.id == name
                || i.repair.as_ref().is_some_and(|r| r.name == name)
        })
    }
}

/// A check `diagnose` can run, by its id. A handle on its [`KnownIssue`],
/// so the ids clap accepts are exactly the list's.
#[derive(Clone, Copy)]
pub struct CheckId(&'static KnownIssue);

static CHECK_IDS: LazyLock<Vec<CheckId>> =
    LazyLock::new(|| KNOWN_ISSUES.iter().copied().map(CheckId).collect());

impl CheckId {
    /// Every check, in report order.
    pub fn all() -> &'static [CheckId] {
        &CHECK_IDS
    }

    pub fn as_str(self) -> &'static str {
        self.0.check
    }

    pub fn issue(self) -> &'static KnownIssue {
        self.0
    }

    /// Whether this is the check of `issue`.
    pub fn is(self, issue: &KnownIssue) -> bool {
        self.0.check == issue.check
    }
}

impl PartialEq for CheckId {
    fn eq(&self, other: &Self) -> bool {
        self.0.check == other.0.check
    }
}
impl Eq for CheckId {}

impl std::hash::Hash for CheckId {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.0.check.hash(state)
    }
}

impl std::fmt::Debug for CheckId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.0.check)
    }
}

impl clap::ValueEnum for CheckId {
    fn value_variants<'a>() -> &'a [Self] {
        CheckId::all()
    }

    fn to_possible_value(&self) -> Option<clap::builder::PossibleValue> {
        Some(clap::builder::PossibleValue::new(self.0.check).help(self.0.about))
    }
}

/// Options some checks take from the `diagnose` command line.
#[derive(Debug, Clone, Default)]
pub struct CheckOptions {
    /// `--user` for cli-login.
    pub user: Option<String>,
    /// That user's CLI secret, read before the checks start.
    pub cli_secret: Option<crate::clients::harbor::Secret>,
}

impl CheckOptions {
    /// Reads the options, prompting for a CLI secret when one is needed.
    pub fn from_args(args: &crate::cli::DiagnoseArgs) -> Result<CheckOptions> {
        Ok(CheckOptions {
            user: args.user.clone(),
            cli_secret: cli_login::read_cli_secret(args)?,
        })
    }
}

/// Runs one check.
pub async fn run_check(id: CheckId, ctx: &Ctx, opts: &CheckOptions) -> Result<CheckOutcome> {
    (id.issue().diagnose)(ctx, opts).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_issue_is_listed_once_with_distinct_names() {
        let mut names = std::collections::HashSet::new();
        for issue in KNOWN_ISSUES {
            assert!(names.insert(issue.check), "check id {} twice", issue.check);
            if issue.runbook.id != issue.check {
                assert!(
                    names.insert(issue.runbook.id),
                    "runbook {} twice",
                    issue.runbook.id
                );
            }
            if let Some(fix) = &issue.repair {
                if fix.name != issue.check && fix.name != issue.runbook.id {
                    assert!(names.insert(fix.name), "fix {} twice", fix.name);
                }
            }
            assert!(!issue.runbook.text.trim().is_empty(), "{}", issue.check);
            assert_eq!(
                KnownIssue::find(issue.check).map(|i| i.check),
                Some(issue.check)
            );
        }
    }

    #[test]
    fn the_modules_on_disk_are_the_modules_listed() {
        // A module with a diagnose but no line in KNOWN_ISSUES would never
        // run: compare the source tree with the list. harbor_workloads is
        // shared by two issues, not one itself.
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src/issues");
        let mut on_disk: Vec<String> = std::fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| p.is_dir() || p.extension().is_some_and(|e| e == "rs"))
            .map(|p| p.file_stem().unwrap().to_string_lossy().into_owned())
            .filter(|m| m != "mod" && m != "harbor_workloads")
            .collect();
        on_disk.sort();
        let sources = std::fs::read_to_string(dir.join("mod.rs")).unwrap();
        let list = &sources[sources.find("KNOWN_ISSUES").unwrap()..];
        let list = &list[..list.find("];").unwrap()];
        let mut listed: Vec<String> = list
            .lines()
            .filter_map(|l| l.trim().strip_prefix('&'))
            .filter_map(|l| l.strip_suffix("::ISSUE,"))
            .map(str::to_string)
            .collect();
        listed.sort();
        assert_eq!(on_disk, listed);
    }
}
