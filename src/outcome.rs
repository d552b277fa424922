//! Exit codes, and the errors that choose them.
//!
//! Every command ends in one of DESIGN.md's exit codes. Code that knows why it
//! stops returns a [`Failure`] with that code; any other error reaching `main`
//! means the tool could not run, which is code 3. A repair's runner turns an
//! unclassified error after the first change into code 5 (see `repair`).

use std::fmt;

/// DESIGN.md's exit codes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExitCode {
    /// Healthy, a repair applied and verified, or a dry run.
    Ok = 0,
    /// `diagnose` found something at or above `--fail-on`.
    Findings = 1,
    /// The command line was wrong.
    Usage = 2,
    /// Could not run, or refused: unreachable, rejected credentials, bad input, unsafe.
    CannotRun = 3,
    /// Nothing changed: declined, or confirmation needed without a terminal.
    NotConfirmed = 4,
    /// A repair started but did not complete, or its verification failed.
    Incomplete = 5,
}

impl ExitCode {
    /// Every exit code, in numeric order: the reference (docs/cli.md) is
    /// generated from this list and [`ExitCode::meaning`].
    pub const ALL: [ExitCode; 6] = [
        ExitCode::Ok,
        ExitCode::Findings,
        ExitCode::Usage,
        ExitCode::CannotRun,
        ExitCode::NotConfirmed,
        ExitCode::Incomplete,
    ];

    pub fn code(self) -> i32 {
        self as i32
    }

    /// The code's meaning in a line short enough for `--help` and the
    /// manual's EXIT STATUS; [`ExitCode::meaning`] is the reference's.
    pub fn summary(self) -> &'static str {
        match self {
            ExitCode::Ok => "healthy, or the repair was applied and verified, or a dry run",
            ExitCode::Findings => "diagnose found a finding at or above --fail-on",
            ExitCode::Usage => "usage error",
            ExitCode::CannotRun => {
                "could not run or refused (unreachable, rejected credentials, bad input, unsafe repair)"
            }
            ExitCode::NotConfirmed => {
                "nothing changed: confirmation declined, or no terminal and no --yes"
            }
            ExitCode::Incomplete => {
                "a repair started but did not complete (or its verification failed)"
            }
        }
    }

    /// What the code tells a script, in the contract's words.
    pub fn meaning(self) -> &'static str {
        match self {
            ExitCode::Ok => "healthy, or the repair was applied and verified, or a dry run",
            ExitCode::Findings => {
                "`diagnose` found a finding at or above `--fail-on` (default: any warning or problem)"
            }
            ExitCode::Usage => "usage error",
            ExitCode::CannotRun => {
                "could not run or refused: a system unreachable, credentials rejected, bad input, a repair \
                 refused as unsafe (the reason is printed)"
            }
            ExitCode::NotConfirmed => {
                "nothing changed: confirmation declined, or needed but no terminal and no `--yes`"
            }
            ExitCode::Incomplete => {
                "a repair started but did not complete: a step failed, it was partly applied, the outcome \
                 of a commit is unknown, or verification failed"
            }
        }
    }
}

/// An error that knows which exit code it means. Its message is shown to
/// the user as it is, so it says what happened, what it means and what to do,
/// and never holds a secret.
#[derive(Debug)]
pub struct Failure {
    pub code: ExitCode,
    pub message: String,
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for Failure {}

impl Failure {
    /// An error with this exit code and message.
    pub fn error(code: ExitCode, message: impl Into<String>) -> anyhow::Error {
        anyhow::Error::new(Failure {
            code,
            message: message.into(),
        })
    }
}

/// Refused or could not run (exit 3), with the reason.
pub fn refused(message: impl Into<String>) -> anyhow::Error {
    Failure::error(ExitCode::CannotRun, message)
}

/// Started but did not complete (exit 5), with what is known.
pub fn incomplete(message: impl Into<String>) -> anyhow::Error {
    Failure::error(ExitCode::Incomplete, message)
}

/// The exit code an error stands for, decided here for every command: a
/// [`Failure`] anywhere in its chain keeps its own code; a commit whose
/// outcome is unknown is 5 (something may have changed); anything else,
/// including a transaction that was rolled back, is 3: nothing changed.
/// A repair under way refines this by phase (`repair::run`).
pub fn exit_code_of(err: &anyhow::Error) -> ExitCode {
    if let Some(f) = err.chain().find_map(|e| e.downcast_ref::<Failure>()) {
        return f.code;
    }
    match crate::clients::error::kind_of(err) {
        Some(crate::clients::error::ErrorKind::OutcomeUnknown) => ExitCode::Incomplete,
        _ => ExitCode::CannotRun,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_code_is_listed_once_in_order_and_in_the_help() {
        let codes: Vec<i32> = ExitCode::ALL.iter().map(|c| c.code()).collect();
        assert_eq!(codes, (0..ExitCode::ALL.len() as i32).collect::<Vec<_>>());
        // `--help` has its own shorter wording (cli.rs); it must list the
        // same codes, no more.
        let help = <crate::cli::Cli as clap::CommandFactory>::command()
            .get_after_help()
            .map(|h| h.to_string())
            .unwrap_or_default();
        let listed: Vec<i32> = help
            .lines()
            .filter_map(|l| l.trim_start().split_once("  "))
            .filter_map(|(n, _)| n.parse().ok())
            .collect();
        assert_eq!(listed, codes, "the exit codes in --help:\n{help}");
    }
}
