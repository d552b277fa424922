//! The known issues, one module each, all of the same shape:
//!
//! - `diagnose(ctx) -> CheckOutcome`: read only; findings name their runbook
//!   and a complete repair command (or none when no repair is safe);
//! - a type implementing [`crate::repair::Repair`]: `plan` turns findings
//!   into the list of changes, `apply` makes them after writing a backup,
//!   `verify` diagnoses again.
//!
//! Adding a known issue means adding a module here, its check id in
//! `cli::CheckId`, a line in [`run_check`], and its runbook in `runbooks/`.

pub mod cli_login;
pub mod connectivity;
pub mod harbor_workloads;
pub mod multi_attach;
pub mod oidc_conflict;
pub mod registry_strategy;
pub mod teams;

use anyhow::Result;

use crate::cli::CheckId;
use crate::context::Ctx;
use crate::report::CheckOutcome;

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
    match id {
        CheckId::OidcUsers => oidc_conflict::diagnose(ctx).await,
        CheckId::CliLogin => cli_login::diagnose(ctx, opts).await,
        CheckId::MultiAttach => multi_attach::diagnose(ctx).await,
        CheckId::RegistryStrategy => registry_strategy::diagnose(ctx).await,
        CheckId::Connectivity => connectivity::diagnose(ctx).await,
        CheckId::Teams => teams::diagnose(ctx).await,
    }
}
