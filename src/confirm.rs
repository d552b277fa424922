//! The one place that asks a person for permission.
//!
//! A repair asks once, default No, and only when both stdin and stderr are
//! terminals (the question goes to stderr so stdout stays clean for `-o
//! json`). `--yes` skips the question; without a terminal and without
//! `--yes` the answer is a refusal with exit 4 and nothing changed.

use anyhow::Result;
use std::io::IsTerminal;

use crate::outcome::{ExitCode, Failure};

/// Asks `question`; Ok(()) means go ahead.
pub fn confirm(question: &str, yes: bool) -> Result<()> {
    if yes {
        return Ok(());
    }
    if !(std::io::stdin().is_terminal() && std::io::stderr().is_terminal()) {
        return Err(Failure::error(
            ExitCode::NotConfirmed,
            "this repair needs confirmation, but there is no terminal to ask on; nothing was \
             changed. Review the plan above and rerun with --yes to apply it, or --dry-run to only show it",
        ));
    }
    let answer = dialoguer::Confirm::new()
        .with_prompt(question)
        .default(false)
        .show_default(true)
        .wait_for_newline(true)
        .interact_on_opt(&console::Term::stderr())
        .map_err(|e| {
            Failure::error(
                ExitCode::NotConfirmed,
                format!("could not read the answer ({e}); nothing was changed"),
            )
        })?;
    match answer {
        Some(true) => Ok(()),
        _ => Err(Failure::error(
            ExitCode::NotConfirmed,
            "not confirmed; nothing was changed",
        )),
    }
}
