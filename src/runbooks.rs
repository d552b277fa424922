//! The runbooks, embedded: the human version of each known-issue module,
//! for when the doctor cannot run. Each is declared with its issue
//! ([`crate::issues::KnownIssue::runbook`]).

use crate::issues::{KnownIssue, Runbook, KNOWN_ISSUES};

/// Every runbook, in report order.
pub fn all() -> impl Iterator<Item = &'static Runbook> {
    KNOWN_ISSUES.iter().map(|issue| &issue.runbook)
}

/// A runbook by its id, or by the id of its check (`oidc-users` is the
/// `oidc-conflict` runbook) or its repair.
pub fn find(id: &str) -> Option<&'static str> {
    KnownIssue::find(id).map(|issue| issue.runbook.text)
}
