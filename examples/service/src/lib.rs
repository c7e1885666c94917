//! The reference HPP service: what an integrator runs, built on `hpp-session`.
//!
//! - **HTTP in** ([`http`]): the checkout that creates a session at Klarna, the status-callback
//!   endpoint (the per-session secret in the URL, checked in constant time: the body is
//!   evidence when it matches, a hint otherwise), and the consumer's redirects (hints).
//! - **The poller** ([`worker::poll`]) reads due sessions, most urgent first, within the reads'
//!   share of Klarna's budget ([`klarna::Budget`], a GCRA limiter).
//! - **The executor** ([`worker::execute`]) places orders, records Klarna's orders, releases
//!   carts and disables sessions. An ambiguous result means read, never resend blindly: an
//!   order whose earlier attempt's outcome is unknown is placed again only when the payment
//!   session shows no order.
//! - **Storage** ([`store`]) behind one seam: SQLite (one process) or PostgreSQL (several
//!   processes; row locks and `FOR UPDATE SKIP LOCKED`).
//! - **The clock** ([`clock`]): the system's, or the Klarna double's in tests.
//!
//! No state lives in memory between calls: a process killed at any instant loses nothing that
//! was committed, and another process (or the same one, restarted) carries on.

pub mod clock;
pub mod http;
pub mod klarna;
pub mod observe;
pub mod shop;
pub mod store;
pub mod worker;

use hpp_session::TrackerConfig;

/// Everything a handler or worker needs.
#[derive(Debug)]
pub struct App {
    /// The database.
    pub store: store::Store,
    /// Klarna.
    pub klarna: klarna::Klarna,
    /// The merchant's shop (carts, order book, people who review).
    pub shop: shop::Shop,
    /// Where `now` comes from.
    pub clock: clock::Clock,
    /// The trackers' configuration.
    pub tracker: TrackerConfig,
    /// The service's public URL, as Klarna and the consumer's browser reach it.
    pub public_url: String,
    /// Deliberate breakage, for the end-to-end test's sabotage checks only.
    pub sabotage: store::Sabotage,
}
