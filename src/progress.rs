//! Progress for people waiting on checks: after a second, a spinner on
//! stderr names the checks still running. Only on a terminal and never
//! with `-q`, so scripts and logs never see it.

use std::future::Future;
use std::io::IsTerminal;
use std::sync::Mutex;
use std::time::{Duration, Instant};

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

/// Whether a spinner may be drawn at all.
fn spinner_allowed(out: &Output) -> bool {
    !out.quiet && std::io::stderr().is_terminal()
}

/// Awaits `work`; when it takes longer than [`SPINNER_AFTER`] and stderr
/// is a terminal, shows a spinner with `running`'s description until it
/// finishes, then clears it.
pub async fn while_running<F: Future>(out: &Output, running: &Running, work: F) -> F::Output {
    if !spinner_allowed(out) {
        return work.await;
    }
    tokio::pin!(work);
    tokio::select! {
        result = &mut work => return result,
        _ = tokio::time::sleep(SPINNER_AFTER) => {}
    }
    let bar =
        indicatif::ProgressBar::with_draw_target(None, indicatif::ProgressDrawTarget::stderr());
    if let Ok(style) = indicatif::ProgressStyle::with_template("{spinner} {msg}") {
        bar.set_style(style);
    }
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

#[cfg(test)]
mod tests {
    use super::Running;

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
}
