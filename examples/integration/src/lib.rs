//! The reference integration of `hpp-session`: what an integrator copies.
//!
//! Three parts share one SQLite database, and none keeps state in memory between calls, so the
//! process may die at any point and start again from the database:
//!
//! - the **callback handler** ([`Service::handle_callback`]) checks the per-session secret from
//!   the callback URL in constant time ([`hpp_session::callback_secret_matches`]), parses the
//!   body, and observes it;
//! - the **poller** ([`Service::poll`]) reads every session whose tracker says a read is due;
//! - the **executor** ([`Service::execute`]) performs the stored merchant actions and marks
//!   them done.
//!
//! The handler and the poller store the tracker **and** the actions it asks for in one
//! transaction: either both are stored or neither is, so an action asked for is never lost and
//! never stored twice. Each action gets a stable id, `"{session_id}/{kind}"` ([`action_id`]):
//! the tracker asks for each kind at most once per session, so the id names one action for good.
//!
//! What is guaranteed, precisely: every merchant action the tracker asks for is stored exactly
//! once, and performed **at least once**: if the process dies after performing an action and
//! before marking it done, the executor performs it again after the restart, with the same id.
//! A side effect happens exactly once only where its receiver de-duplicates by that id (an
//! idempotency key), or the executor checks before performing an action left in doubt. Klarna
//! documents no idempotency key for creating an order: read the session (a placed order closes
//! it) or look the order up by the id you passed as its merchant reference before placing again.

pub mod service;
pub mod store;

pub use service::{
    Callbacks, Crash, CrashPoint, Faults, Handled, NoFaults, ReadResult, Service, ServiceError,
};
pub use store::{StoredAction, action_id};
