//! The transition table: the whole lifecycle on one screen.
//!
//! [`EDGES`] is the single source of truth. Everything else here (the dense lookup behind
//! [`next`], the reachability behind [`is_reachable`], the diagram in [`crate::diagram`]) is
//! computed from it, at compile time where it can be. Every `(status, event)` pair that is not an
//! edge is rejected; final statuses have no outgoing edge, so they are absorbing.
//!
//! ```text
//! WAITING ──open──▶ IN_PROGRESS ──authorize──▶ COMPLETED (final)
//!                    │  ▲      ──cancel─────▶ CANCELLED (final)
//!   decline / back / │  │ open (retry loop)
//!   error / timeout  ▼  │
//!      FAILED, BACK, ERROR, TIMEOUT
//!
//! IN_PROGRESS ──id check──▶ MANUAL_ID_CHECK ──authorize / decline / error / cancel / timeout──▶ …
//! every non-final status ──disable (merchant)──▶ DISABLED (final)
//! ```
//!
//! The README carries the full diagram rendered by [`crate::diagram::Mermaid`]; a test fails
//! when that copy drifts from this table.

use crate::event::Event;
use crate::status::Status;

/// One allowed transition: `event` moves a session from `from` to `to`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Edge {
    /// The status before.
    pub from: Status,
    /// What happened.
    pub event: Event,
    /// The status after.
    pub to: Status,
}

const fn edge(from: Status, event: Event, to: Status) -> Edge {
    Edge { from, event, to }
}

use Event::{
    Authorize, Cancel, Decline, Disable, GoBack, InactivityTimeout, Open, PaymentError,
    RequestIdCheck,
};
use Status::{
    Back, Cancelled, Completed, Disabled, Error, Failed, InProgress, ManualIdCheck, Timeout,
    Waiting,
};

/// Every allowed transition. Any pair not listed here is rejected.
pub const EDGES: [Edge; 24] = [
    // The consumer opens the page, first time or again (the retry loops).
    edge(Waiting, Open, InProgress),
    edge(Failed, Open, InProgress),
    edge(Back, Open, InProgress),
    edge(Error, Open, InProgress),
    edge(Timeout, Open, InProgress),
    // On the page.
    edge(InProgress, Authorize, Completed),
    edge(InProgress, Decline, Failed),
    edge(InProgress, GoBack, Back),
    edge(InProgress, Cancel, Cancelled),
    edge(InProgress, PaymentError, Error),
    edge(InProgress, InactivityTimeout, Timeout),
    edge(InProgress, RequestIdCheck, ManualIdCheck),
    // Waiting for an identity check (this crate's reading; Klarna documents no edges).
    edge(ManualIdCheck, Authorize, Completed),
    edge(ManualIdCheck, Decline, Failed),
    edge(ManualIdCheck, PaymentError, Error),
    edge(ManualIdCheck, Cancel, Cancelled),
    edge(ManualIdCheck, InactivityTimeout, Timeout),
    // The merchant disables any session that has not ended.
    edge(Waiting, Disable, Disabled),
    edge(InProgress, Disable, Disabled),
    edge(Failed, Disable, Disabled),
    edge(Back, Disable, Disabled),
    edge(Error, Disable, Disabled),
    edge(ManualIdCheck, Disable, Disabled),
    edge(Timeout, Disable, Disabled),
];

/// An iterator over every edge of the table, in table order.
#[must_use]
pub fn edges() -> impl ExactSizeIterator<Item = Edge> + Clone {
    EDGES.iter().copied()
}

/// Where `event` takes a session in status `from`, or `None` when the table has no such edge.
///
/// Constant time: one load from a dense `[[Option<Status>; Event::COUNT]; Status::COUNT]` array
/// built from [`EDGES`] at compile time (the answer itself is stored: nothing to map).
#[must_use]
#[inline]
#[expect(
    clippy::indexing_slicing,
    reason = "the indexes are enum discriminants and the arrays are COUNT long, so they are in \
              bounds by construction (checked at compile time below); the compiler drops the check"
)]
pub const fn next(from: Status, event: Event) -> Option<Status> {
    NEXT[from as usize][event as usize]
}

/// Whether a session in status `from` can reach status `to` in one or more transitions.
///
/// `is_reachable(s, s)` is true only when `s` is on a cycle (the retry loops). Computed from
/// [`EDGES`] at compile time.
#[must_use]
#[inline]
#[expect(
    clippy::indexing_slicing,
    reason = "the index is an enum discriminant and the array is Status::COUNT long"
)]
pub const fn is_reachable(from: Status, to: Status) -> bool {
    REACH[from as usize] & bit(to) != 0
}

/// Whether some event moves a session from `from` straight to `to` (one edge, no status in
/// between). Computed from [`EDGES`] at compile time.
#[must_use]
#[inline]
#[expect(
    clippy::indexing_slicing,
    reason = "the index is an enum discriminant and the array is Status::COUNT long"
)]
pub const fn has_edge(from: Status, to: Status) -> bool {
    ADJACENT[from as usize] & bit(to) != 0
}

const fn bit(status: Status) -> u16 {
    1 << status as u16
}

/// `NEXT[from][event]` is the next status, or `None`.
const NEXT: [[Option<Status>; Event::COUNT]; Status::COUNT] = build_next();

#[expect(
    clippy::indexing_slicing,
    reason = "only evaluated at compile time: a bad index is a build error, not a runtime panic"
)]
const fn build_next() -> [[Option<Status>; Event::COUNT]; Status::COUNT] {
    let mut next = [[None; Event::COUNT]; Status::COUNT];
    let mut i = 0;
    while i < EDGES.len() {
        let Edge { from, event, to } = EDGES[i];
        assert!(
            next[from as usize][event as usize].is_none(),
            "two edges for one (status, event)"
        );
        assert!(!from.is_final(), "an edge leaves a final status");
        next[from as usize][event as usize] = Some(to);
        i += 1;
    }
    next
}

/// `ADJACENT[from]` is the set (bit per discriminant) of statuses one edge away.
const ADJACENT: [u16; Status::COUNT] = build_adjacent();

#[expect(
    clippy::indexing_slicing,
    reason = "only evaluated at compile time: a bad index is a build error, not a runtime panic"
)]
const fn build_adjacent() -> [u16; Status::COUNT] {
    let mut adjacent = [0u16; Status::COUNT];
    let mut i = 0;
    while i < EDGES.len() {
        adjacent[EDGES[i].from as usize] |= bit(EDGES[i].to);
        i += 1;
    }
    adjacent
}

/// `REACH[from]` is the set (bit per discriminant) of statuses reachable in one or more steps.
const REACH: [u16; Status::COUNT] = build_reach();

#[expect(
    clippy::indexing_slicing,
    reason = "only evaluated at compile time: a bad index is a build error, not a runtime panic"
)]
const fn build_reach() -> [u16; Status::COUNT] {
    let mut reach = ADJACENT;
    // Warshall's transitive closure: after step `k`, paths through statuses `0..=k` are in.
    let mut k = 0;
    while k < Status::COUNT {
        let through_k = reach[k];
        let mut i = 0;
        while i < Status::COUNT {
            if reach[i] & (1 << k) != 0 {
                reach[i] |= through_k;
            }
            i += 1;
        }
        k += 1;
    }
    reach
}

// The discriminants index the arrays above: they run 0..COUNT in declaration order (explicit in
// both enums, and `ALL` is checked against them in the tests), so the last one is COUNT - 1.
const _: () = assert!(
    Status::Timeout as usize == Status::COUNT - 1 && Event::Disable as usize == Event::COUNT - 1
);
