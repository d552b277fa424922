//! The one way every repair runs: plan, show, confirm, back up, apply,
//! verify, report.
//!
//! A known-issue module implements [`Repair`]; [`run`] does the rest, so
//! every repair honours `--dry-run`, `--yes`, the terminal rule and the exit
//! codes in the same way.
//!
//! The exit code of a failed repair is decided here, by what may have
//! changed: 3 when nothing did (the failure came before the backup was
//! written, or the repair's transaction was certainly rolled back before
//! its COMMIT), 5 when something may have (a COMMIT whose answer was lost,
//! a change outside a transaction). A repair that knows better says so
//! with a [`Failure`] (e.g. a Kubernetes patch refused before the first
//! change: 3).

use std::path::PathBuf;

use anyhow::Result;

use crate::backup::{Backup, BackupStore};
use crate::confirm::confirm;
use crate::context::Ctx;
use crate::outcome::{ExitCode, Failure};
use crate::render::Output;
use crate::report::{PlanStep, RepairReport};

/// What a repair's verification concluded.
pub enum Verification {
    Verified,
    /// Applied, but the problem is still there (or the new state was not
    /// reached in time): what was seen.
    NotVerified(String),
}

/// A repair of one known issue. `plan` reads only; `apply` writes the
/// backup through [`BackupSink`] before its first change.
#[allow(async_fn_in_trait)]
pub trait Repair {
    /// The repair's id, as in `fix <ISSUE>` and the backup file name.
    fn id(&self) -> &'static str;
    /// Who or what is repaired, for the plan's title and the backup name.
    fn subject(&self) -> String;
    /// Decides what to change. An empty plan means there is nothing to do.
    /// Refuses (exit 3) when the repair would be unsafe.
    async fn plan(&mut self, ctx: &Ctx) -> Result<Vec<PlanStep>>;
    /// Makes the planned changes.
    async fn apply(&mut self, ctx: &Ctx, backups: &mut BackupSink) -> Result<()>;
    /// Checks that the problem is gone.
    async fn verify(&mut self, ctx: &Ctx) -> Result<Verification>;
    /// Lines to show after the plan (what is left alone and why).
    fn notes(&self) -> Vec<String> {
        vec![]
    }
    /// The command this repair runs as, for its plan's title: `fix
    /// <id>` unless it is a command of its own (`provision`, `restore`).
    fn command(&self) -> String {
        format!("fix {}", self.id())
    }
    /// The check whose diagnosis proves the repair worked, for the line
    /// after it: the known issue named like the repair.
    fn proven_by(&self) -> Option<&'static str> {
        crate::issues::KnownIssue::find(self.id()).map(|i| i.check)
    }
    /// Shows the plan to people. A numbered list by default; a repair over
    /// many subjects (provisioning many teams) may show a table instead.
    fn show_plan(&self, out: &Output, title: &str, steps: &[PlanStep]) {
        out.print_plan(title, steps);
    }
}

/// Where a repair writes its backup; remembers the path so it is reported
/// even when the repair fails after writing it.
pub struct BackupSink {
    store: BackupStore,
    quiet: bool,
    pub written: Option<PathBuf>,
}

impl BackupSink {
    pub fn new(store: BackupStore, quiet: bool) -> BackupSink {
        BackupSink {
            store,
            quiet,
            written: None,
        }
    }

    /// Writes the backup (fsynced) and returns its path. The path is
    /// printed at once, before the change it guards can commit: whatever
    /// ends the process afterwards, the person has already been told.
    pub fn write(&mut self, backup: &Backup) -> Result<PathBuf> {
        let path = self.store.write(backup)?;
        crate::signals::backup_written(&path);
        if !self.quiet {
            crate::errln!("Backup: {}", path.display());
        }
        self.written = Some(path.clone());
        Ok(path)
    }
}

/// Runs a repair from plan to verification and returns the exit code.
pub async fn run<R: Repair>(ctx: &Ctx, repair: &mut R) -> Result<ExitCode> {
    let out = &ctx.out;
    let steps = repair.plan(ctx).await?;
    let title = format!(
        "{} ({})",
        crate::packaging::as_invoked(&format!("harbor-doctor {}", repair.command())),
        repair.subject()
    );
    let mut report = RepairReport {
        repair: repair.id().to_string(),
        plan: steps.clone(),
        applied: false,
        verified: false,
        backup: None,
    };
    if steps.is_empty() {
        for note in repair.notes() {
            out.info(note);
        }
        out.info(format!("{title}: nothing to do."));
        report.verified = true;
        out.print_repair(&report);
        return Ok(ExitCode::Ok);
    }
    // The plan first, then what it leaves alone and why.
    repair.show_plan(out, &title, &steps);
    for note in repair.notes() {
        out.info(note);
    }
    if ctx.opts.dry_run {
        out.info("Dry run: nothing was changed.");
        out.print_repair(&report);
        return Ok(ExitCode::Ok);
    }
    if let Err(e) = confirm(
        &format!("Apply these {} change(s)?", steps.len()),
        ctx.opts.yes,
    ) {
        out.print_repair(&report);
        return Err(e);
    }

    crate::signals::catch_during_repair();
    if crate::signals::interrupted() {
        out.print_repair(&report);
        return Err(Failure::error(
            ExitCode::NotConfirmed,
            "interrupted before any change; nothing was changed",
        ));
    }
    let mut sink = BackupSink::new(BackupStore::new(ctx.opts.backup_dir.as_deref())?, out.quiet);
    let applied = repair.apply(ctx, &mut sink).await;
    report.backup = sink.written.as_ref().map(|p| p.display().to_string());
    if let Err(e) = applied {
        out.print_repair(&report);
        let code = failed_apply_code(&e);
        return Err(Failure::error(code, format!("{e:#}")));
    }
    report.applied = true;
    if crate::signals::interrupted() {
        out.print_repair(&report);
        return Err(Failure::error(
            ExitCode::Incomplete,
            "interrupted: the change was applied, and was not verified. Run `harbor-doctor diagnose` to see the state",
        ));
    }

    match repair.verify(ctx).await {
        Ok(Verification::Verified) => {
            report.verified = true;
            out.info(format!("Applied and verified: {title}."));
            if let Some(check) = repair.proven_by() {
                out.info(format!(
                    "To see it for yourself: {}",
                    crate::packaging::as_invoked(&format!("harbor-doctor diagnose {check}"))
                ));
            }
            out.print_repair(&report);
            Ok(ExitCode::Ok)
        }
        Ok(Verification::NotVerified(seen)) => {
            out.print_repair(&report);
            Err(Failure::error(
                ExitCode::Incomplete,
                format!("the change was applied but verification failed: {seen}"),
            ))
        }
        Err(e) => {
            out.print_repair(&report);
            Err(Failure::error(
                ExitCode::Incomplete,
                format!("the change was applied but could not be verified: {e:#}"),
            ))
        }
    }
}

/// The exit code of a repair whose apply failed: decided by what may have
/// changed (see the module's comment).
fn failed_apply_code(e: &anyhow::Error) -> ExitCode {
    if let Some(f) = e.chain().find_map(|c| c.downcast_ref::<Failure>()) {
        return f.code;
    }
    if crate::clients::error::rolled_back(e) {
        return ExitCode::CannotRun;
    }
    // Anything else struck while changes were being made, perhaps half-way.
    ExitCode::Incomplete
}

/// Quotes a value for a POSIX shell, so that repair commands printed in
/// findings can be pasted as they are, whatever a username contains.
pub fn shell_quote(s: &str) -> String {
    if !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_.,/:@%+=".contains(c))
    {
        s.to_string()
    } else {
        format!("'{}'", s.replace('\'', r"'\''"))
    }
}

#[cfg(test)]
mod tests {
    use super::shell_quote;

    #[test]
    fn quotes_for_the_shell() {
        assert_eq!(shell_quote("alice"), "alice");
        assert_eq!(shell_quote("bob#7"), "'bob#7'");
        assert_eq!(shell_quote("o'neil; rm -rf /"), r"'o'\''neil; rm -rf /'");
        assert_eq!(shell_quote(""), "''");
    }
}
