//! The kinds of failure the clients report. Clients say what happened;
//! what it means for the exit code is decided in one place
//! (`outcome::exit_code_of`, and `repair::run` for a repair under way).

/// What went wrong, in terms every system shares.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// No connection, or it broke.
    Unreachable,
    /// Credentials refused.
    Rejected,
    /// Authenticated, but not allowed.
    Forbidden,
    NotFound,
    /// Someone else changed or holds the thing.
    Conflict,
    /// No answer within `--timeout`.
    Timeout,
    /// An answer or file larger than any real one.
    TooLarge,
    /// The system answered something that makes no sense.
    Invalid,
    /// Rows stayed locked by another session past the lock wait.
    Locked,
    /// The state differs from what the plan saw (rows added or changed).
    Changed,
    /// The system refused the change itself (a constraint, a validation).
    Refused,
    /// A commit was sent and its answer never came: it may have applied.
    OutcomeUnknown,
}

/// A failure with its kind and a message for people (never a secret).
#[derive(Debug, thiserror::Error)]
#[error("{message}")]
pub struct ClientError {
    pub kind: ErrorKind,
    pub message: String,
}

impl ClientError {
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> ClientError {
        ClientError {
            kind,
            message: message.into(),
        }
    }
}

/// A failure inside a repair's database transaction before its COMMIT was
/// sent: PostgreSQL rolls the transaction back, so nothing changed, for
/// certain.
#[derive(Debug, thiserror::Error)]
#[error("{0}; the transaction was rolled back, so nothing was changed")]
pub struct RolledBack(pub ClientError);

/// The kind of the first [`ClientError`] in an error's chain.
pub fn kind_of(err: &anyhow::Error) -> Option<ErrorKind> {
    err.chain().find_map(|e| {
        e.downcast_ref::<ClientError>()
            .map(|c| c.kind)
            .or_else(|| e.downcast_ref::<RolledBack>().map(|r| r.0.kind))
    })
}

/// Whether the error says a transaction was certainly rolled back.
pub fn rolled_back(err: &anyhow::Error) -> bool {
    err.chain().any(|e| e.is::<RolledBack>())
}
