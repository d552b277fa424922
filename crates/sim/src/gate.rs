//! Gates: hold chosen requests in a simulator until the test lets them go.
//!
//! Races between two writers (two `provision` runs, or one beside Otomi's
//! operator) are made deterministic with these instead of sleeps: the test
//! waits until a writer's request has arrived at a gate, does the other
//! writer's step, then releases the held request. Requests are told apart
//! by the order they arrived in (ticket 0, 1, ...), which the test controls
//! by only letting one writer reach a gate at a time.

use std::collections::BTreeSet;
use std::sync::Arc;

use tokio::sync::watch;

#[derive(Debug, Default, Clone)]
struct GateState {
    /// How many more matching requests the gate catches.
    remaining: usize,
    /// Requests caught so far; the next one gets this as its ticket.
    arrived: usize,
    released: BTreeSet<usize>,
    open: bool,
}

/// A gate shared by a simulator (which calls [`Gate::pass`]) and a test.
#[derive(Debug, Clone)]
pub struct Gate {
    state: Arc<watch::Sender<GateState>>,
}

impl Gate {
    /// A gate that catches the next `times` matching requests.
    pub fn new(times: usize) -> Gate {
        let (tx, _) = watch::channel(GateState {
            remaining: times,
            ..GateState::default()
        });
        Gate {
            state: Arc::new(tx),
        }
    }

    /// Whether the gate still catches requests (exhausted gates are dropped).
    pub fn is_catching(&self) -> bool {
        let s = self.state.borrow();
        s.remaining > 0 && !s.open
    }

    /// Called by a simulator for a matching request: returns at once when
    /// the gate catches no more, else waits until this request is released.
    pub async fn pass(&self) {
        let mut ticket = None;
        self.state.send_if_modified(|s| {
            if s.remaining == 0 || s.open {
                return false;
            }
            s.remaining -= 1;
            ticket = Some(s.arrived);
            s.arrived += 1;
            true
        });
        let Some(ticket) = ticket else { return };
        let mut rx = self.state.subscribe();
        let _ = rx
            .wait_for(|s| s.open || s.released.contains(&ticket))
            .await;
    }

    /// Waits until `n` requests have arrived at the gate (and are held
    /// there unless released since).
    pub async fn arrived(&self, n: usize) {
        let mut rx = self.state.subscribe();
        let _ = rx.wait_for(|s| s.arrived >= n).await;
    }

    /// Lets the request with this ticket (0 for the first to arrive) go on.
    pub fn release(&self, ticket: usize) {
        self.state.send_modify(|s| {
            s.released.insert(ticket);
        });
    }

    /// Lets every held request go on and catches no more.
    pub fn open(&self) {
        self.state.send_modify(|s| s.open = true);
    }
}
