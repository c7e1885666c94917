//! Turns taken soonest deadline first: the waiters of one process for Klarna's money budget.
//!
//! The executor performs many actions at once, and an order, a look at a payment session and a
//! disable all wait on the one money bucket. Left to race for it, an order whose token dies in
//! a minute waits behind disables as often as not; and each waiter asking the shared budget in
//! PostgreSQL on its own is a herd. So the waiters of a process queue here by deadline (an
//! order's `place_by`; `i64::MAX` for a call that waits on no token), and only the first asks
//! the budget.

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, PoisonError};

use tokio::sync::Notify;

/// A queue of waiters by deadline.
#[derive(Debug, Default)]
pub struct Soonest {
    state: Mutex<State>,
    arrivals: AtomicU64,
    turn: Notify,
}

/// Who waits, and whether a turn is held now (one at a time).
#[derive(Debug, Default)]
struct State {
    waiting: BTreeSet<(i64, u64)>,
    held: bool,
}

/// A place in the queue, given up when dropped (served, or the waiter gave up).
#[derive(Debug)]
pub struct Turn<'a> {
    queue: &'a Soonest,
    ticket: (i64, u64),
    holds: bool,
}

impl Drop for Turn<'_> {
    fn drop(&mut self) {
        let mut state = self.queue.lock();
        state.waiting.remove(&self.ticket);
        if self.holds {
            state.held = false;
        }
        drop(state);
        self.queue.turn.notify_waiters();
    }
}

impl Soonest {
    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Waits until no turn is held and no waiter with an earlier deadline (or the same one,
    /// arrived before) is queued, and returns the turn: hold it while taking from the budget,
    /// then drop it.
    pub async fn turn(&self, deadline_ms: i64) -> Turn<'_> {
        let ticket = (deadline_ms, self.arrivals.fetch_add(1, Ordering::Relaxed));
        self.lock().waiting.insert(ticket);
        let mut turn = Turn {
            queue: self,
            ticket,
            holds: false,
        };
        loop {
            let notified = self.turn.notified();
            tokio::pin!(notified);
            // Registered before looking, so a turn let go of meanwhile is not missed.
            notified.as_mut().enable();
            {
                let mut state = self.lock();
                if !state.held && state.waiting.first() == Some(&ticket) {
                    state.held = true;
                    turn.holds = true;
                    return turn;
                }
            }
            notified.await;
        }
    }

    /// How many wait or hold a turn (for the tests).
    #[must_use]
    pub fn waiting(&self) -> usize {
        self.lock().waiting.len()
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::time::Duration;

    use super::*;

    /// While the first waiter holds its turn, others queue; they are then served soonest
    /// deadline first (ties by arrival), whatever order they came in, and a waiter that gives
    /// up leaves no hole.
    #[tokio::test(start_paused = true)]
    async fn waiters_are_served_soonest_deadline_first() {
        let queue = Arc::new(Soonest::default());
        let served = Arc::new(Mutex::new(Vec::new()));
        let first = queue.turn(50).await;
        let mut waiters = Vec::new();
        for (deadline, name) in [(30, "c"), (10, "a"), (20, "b"), (10, "a2"), (i64::MAX, "z")] {
            let (queue, served) = (Arc::clone(&queue), Arc::clone(&served));
            waiters.push(tokio::spawn(async move {
                let _turn = queue.turn(deadline).await;
                served.lock().expect("served").push(name);
                tokio::time::sleep(Duration::from_millis(1)).await;
            }));
            tokio::task::yield_now().await;
        }
        // One that gives up before its turn.
        let quitter = {
            let queue = Arc::clone(&queue);
            tokio::spawn(async move {
                let _ = tokio::time::timeout(Duration::from_millis(1), queue.turn(15)).await;
            })
        };
        quitter.await.expect("gave up");
        tokio::time::sleep(Duration::from_millis(5)).await;
        assert!(
            served.lock().expect("served").is_empty(),
            "served before the first let go"
        );
        drop(first);
        for w in waiters {
            w.await.expect("served");
        }
        assert_eq!(*served.lock().expect("served"), ["a", "a2", "b", "c", "z"]);
        assert_eq!(queue.waiting(), 0);
    }
}
