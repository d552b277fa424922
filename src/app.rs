//! Dispatches a parsed command line to the code that runs it.

use std::io::{IsTerminal, Write};

use anyhow::Result;

use crate::cli::{Cli, Command, OutputFormat};
use crate::context::Ctx;
use crate::issues::teams;
use crate::outcome::{refused, ExitCode, Failure};
use crate::restore::RestoreRepair;
use crate::{diagnose, docker_login, lab, packaging, repair, runbooks, serve};

/// Sets up logging on stderr: warnings only by default, more with -v,
/// errors only with -q; RUST_LOG overrides. Coloured only on a terminal
/// and never with NO_COLOR.
pub fn init_logging(verbose: u8, quiet: bool) {
    let default = match (quiet, verbose) {
        (true, _) => "error",
        (false, 0) => "warn",
        (false, 1) => "harbor_doctor=info,warn",
        (false, 2) => "harbor_doctor=debug,info",
        (false, _) => "trace",
    };
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        // Colour only on a terminal, never with NO_COLOR.
        .with_ansi(crate::render::colour_on_stderr())
        .with_target(false)
        .try_init();
}

pub async fn run(cli: Cli) -> Result<ExitCode> {
    if cli.global.output == OutputFormat::Prometheus && !matches!(cli.command, Command::Diagnose(_))
    {
        return Err(Failure::error(
            ExitCode::Usage,
            "-o prometheus is for diagnose only (serve answers /metrics itself); use -o table or -o json",
        ));
    }
    let ctx = Ctx::new(cli.global);
    match cli.command {
        Command::Diagnose(args) => diagnose::run(&ctx, &args).await,
        Command::Fix(args) => match &args.issue.repair {
            Some(fix) => (fix.run)(&ctx, &args.matches).await,
            // FixArgs accepts only issues with a repair.
            None => Err(refused(format!("{} has no repair", args.issue.check))),
        },
        Command::Restore(args) => match args.file {
            Some(file) => repair::run(&ctx, &mut RestoreRepair::new(file)).await,
            None => crate::restore::list(&ctx),
        },
        Command::Provision(args) => teams::provision(&ctx, &args).await,
        Command::DockerLogin(args) => docker_login::run(&ctx, &args).await,
        Command::Lab(args) => lab::run(&ctx, &args).await,
        // Only the options: serve makes a fresh context for each run.
        Command::Serve(args) => serve::run(&ctx.opts, &args).await,
        Command::Runbook(args) => print_runbook(args.id.as_deref()),
        Command::Completions(args) => {
            packaging::completions(args.shell, &mut crate::pipe::stdout());
            Ok(ExitCode::Ok)
        }
    }
}

/// `runbook`: the list of runbooks, or one laid out for reading (through a
/// pager on a terminal).
fn print_runbook(id: Option<&str>) -> Result<ExitCode> {
    let Some(id) = id else {
        let mut stdout = crate::pipe::stdout();
        for runbook in runbooks::all() {
            writeln!(stdout, "{:<20} {}", runbook.id, runbook.summary)?;
        }
        return Ok(ExitCode::Ok);
    };
    let Some(text) = runbooks::find(id) else {
        let ids: Vec<&str> = runbooks::all().map(|r| r.id).collect();
        return Err(refused(format!(
            "no runbook {id:?}; the runbooks are: {}",
            ids.join(", ")
        )));
    };
    let style = crate::markdown::Style {
        width: crate::render::stdout_width(),
        ansi: !crate::render::no_color() && std::io::stdout().is_terminal(),
    };
    crate::pager::show(&crate::markdown::render(text, &style))?;
    Ok(ExitCode::Ok)
}
