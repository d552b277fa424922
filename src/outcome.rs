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
    pub fn code(self) -> i32 {
        self as i32
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
