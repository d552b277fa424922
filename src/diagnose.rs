//! `diagnose`: run the checks at once, each within `--timeout`, and report.
//!
//! A check whose system is not configured is skipped, not failed; one that
//! errors or runs out of time is an error for that check while the others
//! still report. The exit code follows DESIGN.md: findings at or above
//! `--fail-on` give 1 even when another check errored; otherwise an error
//! gives 3.

use std::time::Instant;

use anyhow::Result;

use crate::cli::{CheckId, DiagnoseArgs, FailOn};
use crate::clients::is_not_configured;
use crate::context::Ctx;
use crate::issues::{run_check, CheckOptions};
use crate::outcome::ExitCode;
use crate::report::{CheckReport, CheckStatus, DiagnoseReport, Severity};

pub async fn run(ctx: &Ctx, args: &DiagnoseArgs) -> Result<ExitCode> {
    let mut ids: Vec<CheckId> = if args.checks.is_empty() {
        CheckId::ALL.to_vec()
    } else {
        args.checks.clone()
    };
    ids.dedup();
    let opts = CheckOptions {
        user: args.user.clone(),
    };
    let runs = ids.iter().map(|&id| run_one(ctx, id, &opts));
    let checks = futures::future::join_all(runs).await;
    let report = DiagnoseReport::new(checks);
    ctx.out.print_diagnose(&report);
    Ok(exit_code(&report, args.fail_on))
}

async fn run_one(ctx: &Ctx, id: CheckId, opts: &CheckOptions) -> CheckReport {
    let started = Instant::now();
    let result = tokio::time::timeout(ctx.timeout(), run_check(id, ctx, opts)).await;
    let ms = started.elapsed().as_millis() as u64;
    match result {
        Ok(Ok(outcome)) => CheckReport::from_outcome(id.as_str(), outcome, ms),
        Ok(Err(e)) if is_not_configured(&e) => CheckReport::from_outcome(
            id.as_str(),
            crate::report::CheckOutcome::skipped(format!("{e:#}")),
            ms,
        ),
        Ok(Err(e)) => {
            tracing::debug!("check {} failed: {e:?}", id.as_str());
            CheckReport::error(id.as_str(), format!("{e:#}"), ms)
        }
        Err(_) => CheckReport::error(
            id.as_str(),
            format!("did not finish within {} s (--timeout)", ctx.opts.timeout),
            ms,
        ),
    }
}

/// DESIGN.md's exit code for a diagnosis.
pub fn exit_code(report: &DiagnoseReport, fail_on: FailOn) -> ExitCode {
    let threshold = match fail_on {
        FailOn::Warning => Severity::Warning,
        FailOn::Problem => Severity::Problem,
    };
    if report.findings().any(|f| f.severity >= threshold) {
        ExitCode::Findings
    } else if report.checks.iter().any(|c| c.status == CheckStatus::Error) {
        ExitCode::CannotRun
    } else {
        ExitCode::Ok
    }
}
