//! The command-line contract of DESIGN.md, as clap definitions.
//!
//! Scripts depend on these names, defaults and environment variables exactly;
//! change them only together with DESIGN.md.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

use crate::issues::teams::model::RobotKind;
pub use crate::issues::CheckId;
use crate::issues::{KnownIssue, KNOWN_ISSUES};

const ABOUT: &str = "Find, explain and safely repair the known failure modes of Harbor \
registries on Kubernetes behind OIDC (Keycloak).";

/// The lines after the exit codes in `--help` (the manual's NOTES).
pub const HELP_NOTES: &str = "Runbooks: harbor-doctor runbook";

/// `--help`'s closing text: the exit codes, from the one list of them.
fn after_help() -> String {
    let mut text = String::from("Exit codes:\n");
    for code in crate::outcome::ExitCode::ALL {
        text.push_str(&format!("  {}  {}\n", code.code(), code.summary()));
    }
    text.push('\n');
    text.push_str(HELP_NOTES);
    text
}

#[derive(Debug, Parser)]
#[command(name = "harbor-doctor", version, about = ABOUT, after_help = after_help())]
pub struct Cli {
    #[command(flatten)]
    pub global: GlobalOptions,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum OutputFormat {
    Table,
    Json,
    /// The Prometheus text format: `diagnose` only
    Prometheus,
}

/// The heading of the options only repairs read (fix, provision, restore).
const REPAIR_OPTIONS: &str = "Repair options (fix, provision, restore)";

pub const DEFAULT_HARBOR_NAMESPACE: &str = "harbor";

/// The options every command takes (DESIGN.md, "Global options"). Help
/// shows them after a command's own options, under their own heading.
#[derive(Debug, Clone, Args)]
#[command(next_help_heading = "Global options")]
pub struct GlobalOptions {
    /// Kubeconfig file [default: $KUBECONFIG (which may list several files), else
    /// ~/.kube/config; in-cluster config inside a pod]
    // Not `env = "KUBECONFIG"`: that variable may hold a list of files, which
    // the kube client merges itself when no path is given.
    #[arg(long, global = true, value_name = "PATH")]
    pub kubeconfig: Option<PathBuf>,
    /// Kubeconfig context to use
    #[arg(long, global = true, value_name = "NAME")]
    pub context: Option<String>,
    /// Namespace Harbor is installed in
    #[arg(
        short = 'n',
        long,
        env = "HARBOR_NAMESPACE",
        default_value = DEFAULT_HARBOR_NAMESPACE,
        global = true,
        value_name = "NS"
    )]
    pub harbor_namespace: String,
    /// Harbor's URL (discovered from the cluster when not given; http:// only when said explicitly)
    #[arg(long, env = "HARBOR_URL", global = true, value_name = "URL")]
    pub harbor_url: Option<String>,
    /// Harbor admin username
    #[arg(
        long,
        env = "HARBOR_USERNAME",
        default_value = "admin",
        global = true,
        value_name = "NAME"
    )]
    pub harbor_username: String,
    /// Harbor admin password (default: from the chart's core Secret when readable)
    #[arg(
        long,
        env = "HARBOR_PASSWORD",
        global = true,
        hide_env_values = true,
        value_name = "PASSWORD"
    )]
    pub harbor_password: Option<String>,
    /// CA certificate (PEM) to verify Harbor's and Keycloak's HTTPS certificates with, instead of the system roots
    #[arg(long, env = "HARBOR_CA_CERT", global = true, value_name = "PATH")]
    pub ca_cert: Option<PathBuf>,
    /// Registry database URL, e.g. postgres://user:pw@host:5432/registry?sslmode=require
    /// (default: discovered through the cluster)
    #[arg(
        long,
        env = "HARBOR_DATABASE_URL",
        global = true,
        hide_env_values = true,
        value_name = "URL"
    )]
    pub db_url: Option<String>,
    /// Keycloak base URL, e.g. https://keycloak.example.com (default: from Harbor's oidc_endpoint;
    /// inside a pod, the Service keycloak-keycloakx-http in namespace keycloak)
    #[arg(long, env = "KEYCLOAK_URL", global = true, value_name = "URL")]
    pub keycloak_url: Option<String>,
    /// Keycloak realm Harbor's users sign in through (default: the realm in Harbor's
    /// oidc_endpoint, else otomi)
    // No clap default: whether it was given decides whether oidc_endpoint's
    // realm is used.
    #[arg(long, env = "KEYCLOAK_REALM", global = true, value_name = "REALM")]
    pub keycloak_realm: Option<String>,
    /// Keycloak admin username, master realm, admin-cli client (default: from the Secret
    /// keycloak/keycloak-initial-admin when readable)
    #[arg(long, env = "KEYCLOAK_USERNAME", global = true, value_name = "NAME")]
    pub keycloak_username: Option<String>,
    /// Keycloak admin password (default: from the Secret keycloak/keycloak-initial-admin when readable)
    #[arg(
        long,
        env = "KEYCLOAK_PASSWORD",
        global = true,
        hide_env_values = true,
        value_name = "PASSWORD"
    )]
    pub keycloak_password: Option<String>,
    /// The current OIDC issuer URL (default: Harbor's oidc_endpoint, else Keycloak's realm issuer)
    #[arg(long, env = "HARBOR_OIDC_ISSUER", global = true, value_name = "URL")]
    pub issuer: Option<String>,
    /// Output format: tables for people, one JSON document for scripts
    #[arg(short = 'o', long, value_enum, default_value = "table", global = true)]
    pub output: OutputFormat,
    /// Do not ask for confirmation: apply the plan
    #[arg(short = 'y', long, global = true, help_heading = REPAIR_OPTIONS)]
    pub yes: bool,
    /// Show the plan and change nothing
    #[arg(long, global = true, help_heading = REPAIR_OPTIONS)]
    pub dry_run: bool,
    /// Where repairs write their backups
    /// (default: $XDG_STATE_HOME/harbor-doctor/backups, else ~/.local/state/harbor-doctor/backups)
    #[arg(
        long,
        env = "HARBOR_DOCTOR_BACKUP_DIR",
        global = true,
        value_name = "DIR",
        help_heading = REPAIR_OPTIONS
    )]
    pub backup_dir: Option<PathBuf>,
    /// Seconds allowed per request, and per check
    #[arg(long, env = "HARBOR_DOCTOR_TIMEOUT", default_value_t = 30, global = true,
          value_parser = clap::value_parser!(u64).range(1..=3600), value_name = "SECONDS")]
    pub timeout: u64,
    /// More log output (repeat for more); RUST_LOG overrides
    #[arg(short = 'v', long = "verbose", action = clap::ArgAction::Count, global = true, conflicts_with = "quiet")]
    pub verbose: u8,
    /// Errors only; table output shows only findings
    #[arg(short = 'q', long, global = true)]
    pub quiet: bool,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run all checks, or the ones named, and report findings
    #[command(after_long_help = examples::DIAGNOSE)]
    Diagnose(DiagnoseArgs),
    /// Plan, confirm, apply and verify one repair
    #[command(after_long_help = examples::FIX)]
    Fix(FixArgs),
    /// Provision teams: Harbor project, members, robots, their Secrets, the default ServiceAccount
    #[command(after_long_help = examples::PROVISION)]
    Provision(ProvisionArgs),
    /// Log the docker CLI in with a team's robot account
    #[command(after_long_help = examples::DOCKER_LOGIN)]
    DockerLogin(DockerLoginArgs),
    /// Put back what a repair changed, from its backup file (the list of backups when none is given)
    #[command(after_long_help = examples::RESTORE)]
    Restore(RestoreArgs),
    /// Print a runbook (the list of runbooks when no id is given)
    #[command(after_long_help = examples::RUNBOOK)]
    Runbook(RunbookArgs),
    /// Diagnose on a schedule and answer Prometheus on /metrics (never repairs)
    #[command(after_long_help = examples::SERVE)]
    Serve(ServeArgs),
    /// Start a simulated broken installation to practise on
    #[command(after_long_help = examples::LAB)]
    Lab(LabArgs),
    /// Print shell completions
    #[command(after_long_help = examples::COMPLETIONS)]
    Completions(CompletionsArgs),
}

/// Each command's examples, at the end of its long help (`--help`).
pub mod examples {
    pub const DIAGNOSE: &str = "\
Examples:
  harbor-doctor diagnose                       every check, the report for people
  harbor-doctor diagnose oidc-users teams      only these checks
  harbor-doctor diagnose -v                    with each finding's evidence
  harbor-doctor diagnose -o json | jq -r '.next_steps[]'   the repairs, in order
  harbor-doctor diagnose cli-login --user alice   is alice's CLI secret accepted?
  kubectl harbor-doctor -n harbor diagnose     as a kubectl plugin";
    pub const FIX: &str = "\
Examples:
  harbor-doctor fix oidc-users --user alice --dry-run   show the plan, change nothing
  harbor-doctor fix oidc-conflict --all                 relink every stale user (asks first)
  harbor-doctor fix multi-attach --yes                  no question asked (scripts, Jobs)
  harbor-doctor fix registry-strategy -o json --yes     the outcome as JSON";
    pub const PROVISION: &str = "\
Examples:
  harbor-doctor provision --team alpha --dry-run   what it would create or repair
  harbor-doctor provision --team alpha --team beta
  harbor-doctor provision --all --builds           every team, with builds robots";
    pub const DOCKER_LOGIN: &str = "\
Examples:
  harbor-doctor docker-login --team alpha                 docker login with alpha's push robot
  harbor-doctor docker-login --team alpha --robot pull --print";
    pub const RESTORE: &str = "\
Examples:
  harbor-doctor restore                       list the backups, newest first
  harbor-doctor restore ~/.local/state/harbor-doctor/backups/<file>.json --dry-run";
    pub const RUNBOOK: &str = "\
Examples:
  harbor-doctor runbook                 the runbooks and what each is for
  harbor-doctor runbook oidc-conflict   read one (through $PAGER on a terminal)";
    pub const SERVE: &str = "\
Examples:
  harbor-doctor serve                                  every 5m, /metrics on 0.0.0.0:9795
  harbor-doctor serve --interval 1m --listen 127.0.0.1:9795 --report
  curl -s localhost:9795/metrics | grep harbor_doctor_check_status";
    pub const LAB: &str = "\
Examples:
  harbor-doctor lab                             run it; `. <env file>` in another shell
  harbor-doctor lab -- harbor-doctor diagnose   one command in the lab";
    pub const COMPLETIONS: &str = "\
Examples:
  harbor-doctor completions bash > ~/.local/share/bash-completion/completions/harbor-doctor
  harbor-doctor completions zsh > \"${fpath[1]}/_harbor-doctor\"";
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, ValueEnum)]
pub enum FailOn {
    Warning,
    Problem,
}

#[derive(Debug, Args)]
pub struct DiagnoseArgs {
    /// Checks to run (default: all)
    #[arg(value_enum, value_name = "CHECK")]
    pub checks: Vec<CheckId>,
    /// With cli-login: check this user's CLI secret (from HARBOR_CLI_SECRET, a hidden prompt, or stdin)
    #[arg(long, value_name = "NAME")]
    pub user: Option<String>,
    /// Lowest severity that makes the exit code 1
    #[arg(long, value_enum, default_value = "warning")]
    pub fail_on: FailOn,
}

/// `fix <ISSUE>`: one subcommand per known issue with a repair, named by
/// the repair and also by its check id, derived from
/// [`crate::issues::KNOWN_ISSUES`]. A check without a repair is accepted as
/// a name only to say so and name its runbook (exit 2).
#[derive(Clone)]
pub struct FixArgs {
    pub issue: &'static KnownIssue,
    /// The repair's own options, read by its [`crate::issues::FixCommand`].
    pub matches: clap::ArgMatches,
}

impl std::fmt::Debug for FixArgs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FixArgs")
            .field("issue", &self.issue.check)
            .finish_non_exhaustive()
    }
}

impl clap::FromArgMatches for FixArgs {
    fn from_arg_matches(matches: &clap::ArgMatches) -> Result<Self, clap::Error> {
        use clap::error::ErrorKind;
        let Some((name, sub)) = matches.subcommand() else {
            return Err(clap::Error::raw(
                ErrorKind::MissingSubcommand,
                "fix needs the name of a repair",
            ));
        };
        let by_name =
            |i: &&&KnownIssue| i.check == name || i.repair.as_ref().is_some_and(|r| r.name == name);
        let Some(issue) = KNOWN_ISSUES.iter().find(by_name).copied() else {
            let names: Vec<String> = KNOWN_ISSUES
                .iter()
                .filter_map(|i| {
                    let fix = i.repair.as_ref()?;
                    Some(if fix.name == i.check {
                        fix.name.to_string()
                    } else {
                        format!("{} (or {})", fix.name, i.check)
                    })
                })
                .collect();
            // The closest name a person may have meant (`oidc-user`).
            // `fix provision` is `provision` (or `fix teams`).
            let closest = KNOWN_ISSUES
                .iter()
                .filter_map(|i| i.repair.as_ref().map(|r| [r.name, i.check]))
                .flatten()
                .map(|n| format!("fix {n}"))
                .chain(["provision".to_string()])
                .map(|command| {
                    let n = command.trim_start_matches("fix ");
                    (strsim::damerau_levenshtein(name, n), n.len(), command)
                })
                .filter(|(d, len, _)| *d <= 2.max(len / 4))
                .min();
            let hint = closest
                .map(|(_, _, c)| format!("\n\n  tip: did you mean `harbor-doctor {c}`?"))
                .unwrap_or_default();
            return Err(clap::Error::raw(
                ErrorKind::InvalidSubcommand,
                format!(
                    "there is no repair called {name:?}; the repairs are: {}{hint}",
                    names.join(", ")
                ),
            ));
        };
        if issue.repair.is_none() {
            return Err(clap::Error::raw(
                ErrorKind::InvalidSubcommand,
                format!(
                    "{} has no automatic repair: what it finds is put right by hand, as its runbook \
                     says (harbor-doctor runbook {})",
                    issue.check, issue.runbook.id
                ),
            ));
        }
        Ok(FixArgs {
            issue,
            matches: sub.clone(),
        })
    }

    fn update_from_arg_matches(&mut self, matches: &clap::ArgMatches) -> Result<(), clap::Error> {
        *self = FixArgs::from_arg_matches(matches)?;
        Ok(())
    }
}

impl clap::Args for FixArgs {
    fn augment_args(cmd: clap::Command) -> clap::Command {
        // Unknown names reach from_arg_matches, which lists the valid ones.
        let mut cmd = cmd
            .subcommand_required(true)
            .allow_external_subcommands(true)
            .subcommand_value_name("ISSUE");
        for issue in KNOWN_ISSUES {
            cmd = cmd.subcommand(match &issue.repair {
                Some(fix) => {
                    let sub = (fix.options)(clap::Command::new(fix.name).about(fix.about));
                    if fix.name == issue.check {
                        sub
                    } else {
                        sub.visible_alias(issue.check)
                    }
                }
                None => clap::Command::new(issue.check).hide(true),
            });
        }
        cmd
    }

    fn augment_args_for_update(cmd: clap::Command) -> clap::Command {
        FixArgs::augment_args(cmd)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Strategy {
    /// Point the user's OIDC link at the new subject (keeps memberships, ownerships, CLI secret)
    Relink,
    /// Delete the user the way Harbor does: memberships and link removed, name freed, row kept
    SoftDelete,
    /// Hard-delete the user's memberships, link and user row (refused for project owners)
    Delete,
}

#[derive(Debug, Args)]
#[command(group = clap::ArgGroup::new("who").required(true).args(["user", "all"]))]
pub struct OidcConflictArgs {
    /// The Harbor username to repair
    #[arg(long, value_name = "NAME")]
    pub user: Option<String>,
    /// Relink every stale link that diagnose finds (needs Keycloak), in one transaction
    #[arg(long, conflicts_with_all = ["new_sub"])]
    pub all: bool,
    /// How to repair (default: relink when the new subject is known; otherwise it must be named)
    #[arg(long, value_enum)]
    pub strategy: Option<Strategy>,
    /// The user's new OIDC subject (Keycloak user id), when Keycloak is not reachable
    #[arg(long, value_name = "SUB")]
    pub new_sub: Option<String>,
}

#[derive(Debug, Args)]
#[command(group = clap::ArgGroup::new("teams").required(true).args(["team", "all"]))]
pub struct ProvisionArgs {
    /// Team id (repeatable): provisions project team-<ID> and namespace team-<ID>
    #[arg(long, value_name = "ID")]
    pub team: Vec<String>,
    /// Every namespace named team-<id> except team-admin
    #[arg(long)]
    pub all: bool,
    /// Teams provisioned at once
    #[arg(long, default_value_t = 8, value_parser = clap::value_parser!(u16).range(1..=64))]
    pub concurrency: u16,
    /// Robot lifetime in days (default: never expires)
    #[arg(long, value_name = "DAYS", value_parser = clap::value_parser!(u32).range(1..=36500))]
    pub robot_duration: Option<u32>,
    /// Also give every team a builds robot (team-<id>-builds) and its Opaque Secret
    /// harbor-pushsecret-builds, as current Otomi does; needed only on an installation
    /// that has none yet (one that has any gets them without this)
    #[arg(long)]
    pub builds: bool,
}

#[derive(Debug, Args)]
pub struct DockerLoginArgs {
    /// Team id whose robot to log in with
    #[arg(long, value_name = "ID")]
    pub team: String,
    /// Which robot
    #[arg(long, value_enum, default_value = "push")]
    pub robot: RobotKind,
    /// Print a shell command that logs in, instead of logging in (the secret is not printed)
    #[arg(long)]
    pub print: bool,
}

#[derive(Debug, Args)]
pub struct RestoreArgs {
    /// A backup file written by a repair (none: list the backups in --backup-dir)
    #[arg(value_name = "BACKUP-FILE")]
    pub file: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct RunbookArgs {
    /// Runbook id (a check id, or oidc-conflict / provisioning)
    pub id: Option<String>,
}

#[derive(Debug, Args)]
pub struct LabArgs {
    /// A command to run inside the lab's environment; the lab stops when it exits
    #[arg(last = true, value_name = "COMMAND")]
    pub command: Vec<String>,
}

#[derive(Debug, Args)]
pub struct CompletionsArgs {
    #[arg(value_enum)]
    pub shell: clap_complete::Shell,
}

#[derive(Debug, Args)]
pub struct ServeArgs {
    /// Address and port to answer on
    #[arg(long, default_value = "0.0.0.0:9795", value_name = "ADDR")]
    pub listen: std::net::SocketAddr,
    /// Time between the starts of two runs: 30s, 5m, 1h (at least 1s)
    #[arg(long, default_value = "5m", value_name = "DURATION",
          value_parser = crate::serve::parse_interval)]
    pub interval: std::time::Duration,
    /// Also answer /report with the last run's JSON document (it names users)
    #[arg(long)]
    pub report: bool,
}

/// Sets each command's usage line to the one its definition gives, before
/// parsing. clap otherwise writes the options that were *used* into an
/// error's usage line, and an option set through its environment variable
/// counts as used: with the lab's environment, `fix oidc-conflict` listed a
/// dozen global options as if they were required.
pub fn settle_usage(cmd: &mut clap::Command) {
    cmd.build();
    fn settle(cmd: clap::Command) -> clap::Command {
        let usage = cmd.clone().render_usage().to_string();
        let usage = usage.strip_prefix("Usage: ").unwrap_or(&usage).to_string();
        let names: Vec<String> = cmd
            .get_subcommands()
            .map(|s| s.get_name().to_string())
            .collect();
        let mut cmd = cmd.override_usage(usage);
        for name in names {
            cmd = cmd.mut_subcommand(name, settle);
        }
        cmd
    }
    *cmd = settle(std::mem::take(cmd));
}

/// Why the command line did not parse.
#[derive(Debug)]
pub enum Unparsed {
    /// clap's own error, help or version text.
    Clap(clap::Error),
    /// No command named (`harbor-doctor`, `harbor-doctor fix`): that
    /// command's short help, for stderr and exit 2, without `error:`,
    /// whatever the environment sets (clap counts an option set through
    /// its variable as given, and then says "requires a subcommand").
    MissingCommand(clap::builder::StyledStr),
}

impl From<clap::Error> for Unparsed {
    fn from(e: clap::Error) -> Self {
        Unparsed::Clap(e)
    }
}

/// The short help of the deepest command `args` names.
pub fn missing_command(cmd: &clap::Command, args: &[std::ffi::OsString]) -> Unparsed {
    let mut current = cmd.clone();
    for arg in args.iter().skip(1).filter_map(|a| a.to_str()) {
        if let Some(sub) = current.find_subcommand(arg).cloned() {
            current = sub;
        }
    }
    Unparsed::MissingCommand(current.render_help())
}
