//! The doctor binary with a clean environment: none of the variables it
//! reads come from the developer's own shell.

use std::collections::BTreeSet;
use std::path::Path;
use std::process::Output;
use std::sync::OnceLock;

use clap::CommandFactory;
use harbor_doctor::cli::Cli;

use super::Registry;

/// Variables the doctor reads that are no option's `env`, so the command
/// line's definition cannot name them.
pub const OTHER_ENV: &[&str] = &[
    // The kube client reads it itself: it may list several files.
    "KUBECONFIG",
    // Inside a pod (a CI runner on Kubernetes) the kube client would use
    // the pod's own cluster.
    "KUBERNETES_SERVICE_HOST",
    "KUBERNETES_SERVICE_PORT",
    // Read only when `diagnose cli-login` needs a secret, never an option,
    // so that it never shows in a process list.
    "HARBOR_CLI_SECRET",
    // Where docker-login stores credentials.
    "DOCKER_CONFIG",
    // Log filter and colour, which tests assert on.
    "RUST_LOG",
    "NO_COLOR",
    // Where the backup seal key lives; HOME is set to a scratch directory.
    "XDG_STATE_HOME",
    // The pager `runbook` uses on a terminal, and less's options.
    "PAGER",
    "LESS",
];

/// Every variable an option of any command reads (its `env`), from the
/// command line's definition.
pub fn option_env(cmd: &clap::Command) -> BTreeSet<String> {
    let mut vars: BTreeSet<String> = cmd
        .get_arguments()
        .filter_map(|a| a.get_env())
        .map(|v| v.to_string_lossy().into_owned())
        .collect();
    for sub in cmd.get_subcommands() {
        vars.extend(option_env(sub));
    }
    vars
}

/// What [`bare_doctor_process`] removes: [`option_env`] and [`OTHER_ENV`].
fn doctor_env() -> &'static BTreeSet<String> {
    static VARS: OnceLock<BTreeSet<String>> = OnceLock::new();
    VARS.get_or_init(|| {
        let mut vars = option_env(&Cli::command());
        vars.extend(OTHER_ENV.iter().map(|v| v.to_string()));
        vars
    })
}

/// The doctor binary with a clean environment, pointed at `registry` and a
/// backup directory.
pub fn doctor(registry: &Registry, backups: &Path) -> assert_cmd::Command {
    let mut cmd = bare_doctor();
    cmd.env("HARBOR_DATABASE_URL", &registry.db.url)
        .env("HARBOR_DOCTOR_BACKUP_DIR", backups)
        .env("HARBOR_DOCTOR_TIMEOUT", "20");
    cmd
}

/// The doctor binary with none of its environment variables set.
pub fn bare_doctor() -> assert_cmd::Command {
    assert_cmd::Command::from_std(bare_doctor_process())
}

/// [`bare_doctor`] as a plain process, for tests that run it themselves
/// (in a pseudo-terminal, or `lab` in the background).
pub fn bare_doctor_process() -> std::process::Command {
    let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_harbor-doctor"));
    for var in doctor_env() {
        cmd.env_remove(var);
    }
    // The backup seal key lives in the state directory under HOME.
    cmd.env("HOME", std::env::temp_dir());
    cmd
}

/// Runs a prepared command off the async runtime's threads (the simulators
/// run on them) and returns its output.
pub async fn run(mut cmd: assert_cmd::Command) -> Output {
    tokio::task::spawn_blocking(move || cmd.output().unwrap())
        .await
        .unwrap()
}

/// Runs the doctor against `registry` with `args` and returns its output.
pub async fn run_doctor(registry: &Registry, backups: &Path, args: &[&str]) -> Output {
    let mut cmd = doctor(registry, backups);
    cmd.args(args);
    run(cmd).await
}

/// A variable added to the command line must be cleared like the others,
/// or a developer's own setting would reach the tests: every option's
/// `env`, in every command (global options as each subcommand sees them),
/// and the variables read without clap.
#[test]
fn the_doctor_runs_without_any_variable_it_reads() {
    let mut cli = Cli::command();
    cli.build();
    let removed: BTreeSet<String> = bare_doctor_process()
        .get_envs()
        .filter(|(_, value)| value.is_none())
        .map(|(name, _)| name.to_string_lossy().into_owned())
        .collect();
    let read = option_env(&cli);
    assert!(
        read.contains("HARBOR_DATABASE_URL") && read.contains("HARBOR_DOCTOR_TIMEOUT"),
        "the walk missed the global options: {read:?}"
    );
    let missing: Vec<&String> = read.iter().filter(|v| !removed.contains(*v)).collect();
    assert!(
        missing.is_empty(),
        "the doctor reads {missing:?}, which the tests leave set"
    );
    for var in OTHER_ENV {
        assert!(removed.contains(*var), "{var} is left set");
    }
}
