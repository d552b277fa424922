//! Progress for people waiting, the one place the doctor draws on a
//! terminal: a spinner naming the checks still running (after a second), a
//! bar counting the items a repair works through, and a spinner for a
//! repair's bounded wait for its result. Drawn only on a terminal and never
//! with `-q`, so scripts and logs never see them; a wait that cannot draw
//! writes a line each time what it waits for changes instead.

use std::cell::RefCell;
use std::future::Future;
use std::io::IsTerminal;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

use crate::render::Output;

/// How long a check runs before the spinner appears.
pub const SPINNER_AFTER: Duration = Duration::from_secs(1);
const TICK: Duration = Duration::from_millis(100);

/// Which of a run's checks are still running.
pub struct Running {
    started: Instant,
    total: usize,
    names: Mutex<Vec<&'static str>>,
}

impl Running {
    pub fn new(names: &[&'static str]) -> Running {
        Running {
            started: Instant::now(),
            total: names.len(),
            names: Mutex::new(names.to_vec()),
        }
    }

    /// Marks a check as finished.
    pub fn done(&self, name: &str) {
        self.names
            .lock()
            .expect("the list is never poisoned")
            .retain(|n| *n != name);
    }

    /// "still running: teams, cli-login (4 of 6 checks done, 2.3 s)".
    pub fn describe(&self) -> String {
        let names = self.names.lock().expect("the list is never poisoned");
        format!(
            "still running: {} ({} of {} checks done, {:.1} s)",
            names.join(", "),
            self.total - names.len(),
            self.total,
            self.started.elapsed().as_secs_f64()
        )
    }
}

/// Whether anything may be drawn at all.
fn drawing_allowed(out: &Output) -> bool {
    !out.quiet && std::io::stderr().is_terminal()
}

/// A spinner with a message on stderr, or None where none may be drawn.
fn spinner(out: &Output) -> Option<ProgressBar> {
    if !drawing_allowed(out) {
        return None;
    }
    let bar = ProgressBar::with_draw_target(None, ProgressDrawTarget::stderr());
    if let Ok(style) = ProgressStyle::with_template("{spinner} {msg}") {
        bar.set_style(style);
    }
    Some(bar)
}

/// Awaits `work`; when it takes longer than [`SPINNER_AFTER`] and stderr
/// is a terminal, shows a spinner with `running`'s description until it
/// finishes, then clears it.
pub async fn while_running<F: Future>(out: &Output, running: &Running, work: F) -> F::Output {
    if !drawing_allowed(out) {
        return work.await;
    }
    tokio::pin!(work);
    tokio::select! {
        result = &mut work => return result,
        _ = tokio::time::sleep(SPINNER_AFTER) => {}
    }
    let Some(bar) = spinner(out) else {
        return work.await;
    };
    loop {
        bar.set_message(running.describe());
        bar.tick();
        tokio::select! {
            result = &mut work => {
                bar.finish_and_clear();
                return result;
            }
            _ = tokio::time::sleep(TICK) => {}
        }
    }
}

/// A bar counting `len` items of `unit` (e.g. "teams") as they finish;
/// hidden where nothing may be drawn. Clear it with `finish_and_clear`.
pub fn counter(out: &Output, len: usize, unit: &str) -> ProgressBar {
    if !drawing_allowed(out) {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::with_draw_target(Some(len as u64), ProgressDrawTarget::stderr());
    if let Ok(style) =
        ProgressStyle::with_template(&format!("{{bar:40}} {{pos}}/{{len}} {unit} ({{elapsed}})"))
    {
        bar.set_style(style);
    }
    bar
}

/// A repair's bounded wait for its result: a spinner showing how long it
/// has waited and what it sees, or without a terminal a line each time
/// what it sees changes.
pub struct Waiting<'a> {
    out: &'a Output,
    bar: Option<ProgressBar>,
    last: RefCell<String>,
}

impl<'a> Waiting<'a> {
    pub fn new(out: &'a Output) -> Self {
        let bar = spinner(out);
        if let Some(bar) = &bar {
            bar.enable_steady_tick(TICK);
        }
        Waiting {
            out,
            bar,
            last: RefCell::new(String::new()),
        }
    }

    /// What the wait sees after `elapsed`.
    pub fn update(&self, elapsed: Duration, state: &str) {
        let line = waiting_line(elapsed, state);
        match &self.bar {
            Some(bar) => bar.set_message(line),
            None => {
                if *self.last.borrow() != state {
                    self.out.info(line);
                    *self.last.borrow_mut() = state.to_string();
                }
            }
        }
    }

    /// Ends the wait, leaving what it saw last on stderr.
    pub fn finish(&self, state: &str) {
        if let Some(bar) = &self.bar {
            bar.finish_and_clear();
        }
        self.out.info(state);
    }
}

fn waiting_line(elapsed: Duration, state: &str) -> String {
    format!("waiting ({} s): {state}", elapsed.as_secs())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_what_is_left() {
        let r = Running::new(&["connectivity", "teams", "cli-login"]);
        r.done("teams");
        let text = r.describe();
        assert!(
            text.starts_with("still running: connectivity, cli-login (1 of 3 checks done, "),
            "{text}"
        );
    }

    #[test]
    fn a_wait_line_counts_whole_seconds() {
        assert_eq!(
            waiting_line(Duration::from_millis(2900), "harbor-registry 0/1 ready"),
            "waiting (2 s): harbor-registry 0/1 ready"
        );
    }
}
