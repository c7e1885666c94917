//! The reference HPP service: what an integrator runs beside a shop in any language, built on
//! `hpp-session`.
//!
//! - **HTTP in** ([`http`]): the checkout that creates a session at Klarna, the status-callback
//!   endpoint (the per-session secret in the URL, checked in constant time: the body is
//!   evidence when it matches, a hint otherwise), and the consumer's redirects (hints).
//! - **The poller** ([`worker::poll`]) reads due sessions, most urgent first, within the reads'
//!   share of Klarna's budget ([`klarna::Budget`], a GCRA limiter: the process's own, or one in
//!   PostgreSQL that every process shares).
//! - **The executor** ([`worker::execute`]) places orders (the token that dies soonest first),
//!   records Klarna's orders, releases carts and disables sessions. An ambiguous result means
//!   read, never resend blindly: an order whose earlier attempt's outcome is unknown is looked
//!   up once that attempt can no longer land ([`worker::may_still_land`]), and placed again
//!   only when the payment session shows no order.
//! - **Storage** ([`store`]) behind one seam: SQLite (one process; a second is refused) or
//!   PostgreSQL (several processes: claims are owner ids taken over from a dead or frozen
//!   process, one Klarna budget for all of them; no lock is held across a network call).
//!   Versioned migrations, applied at start.
//! - **Operations** ([`metrics`], [`error`]): `/healthz`, `/readyz`, `/metrics`; `tracing`
//!   logs with a span per session; typed errors that say what failed.
//! - **The clock** ([`clock`]): the system's, or the Klarna double's in tests.
//!
//! No state lives in memory between calls: a process killed at any instant loses nothing that
//! was committed, and another process (or the same one, restarted) carries on.

pub mod clock;
pub mod http;
pub mod klarna;
pub mod observe;
pub mod shop;
pub mod soonest;
pub mod store;
pub mod worker;

pub mod error;
pub mod metrics;

use std::time::Duration;

use hpp_session::TrackerConfig;

/// Everything a handler or worker needs.
#[derive(Debug)]
pub struct App {
    /// The credential `POST /checkout` must present (`Authorization: Bearer …`), compared in
    /// constant time.
    pub checkout_token: String,
    /// How long after Klarna's timeout an order request may still land at Klarna: no order is
    /// placed again before an earlier attempt's timeout plus this has passed.
    pub order_landing_margin: Duration,
    /// Whether the process drains, and whether its workers run.
    pub health: Health,
    /// The Prometheus exporter's handle (`None`: metrics are not recorded).
    pub metrics: Option<metrics_exporter_prometheus::PrometheusHandle>,
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

/// What `/healthz` and `/readyz` tell: whether the process drains, and whether its poller and
/// executor still run.
#[derive(Debug, Default)]
pub struct Health {
    draining: std::sync::atomic::AtomicBool,
    poller_stopped: std::sync::atomic::AtomicBool,
    executor_stopped: std::sync::atomic::AtomicBool,
}

impl Health {
    /// The process was asked to stop.
    pub fn drain(&self) {
        self.draining
            .store(true, std::sync::atomic::Ordering::SeqCst);
    }

    /// Whether the process drains.
    #[must_use]
    pub fn draining(&self) -> bool {
        self.draining.load(std::sync::atomic::Ordering::SeqCst)
    }

    /// A worker that stopped without the process draining (it panicked): `"poller"` or
    /// `"executor"`.
    #[must_use]
    pub fn stopped_worker(&self) -> Option<&'static str> {
        if self.draining() {
            return None;
        }
        if self
            .poller_stopped
            .load(std::sync::atomic::Ordering::SeqCst)
        {
            return Some("poller");
        }
        self.executor_stopped
            .load(std::sync::atomic::Ordering::SeqCst)
            .then_some("executor")
    }

    /// Marks `worker` (`"poller"` or `"executor"`) stopped when the guard drops, however it
    /// ends (a panic included).
    #[must_use]
    pub fn running(&self, worker: &'static str) -> RunningGuard<'_> {
        RunningGuard {
            flag: if worker == "poller" {
                &self.poller_stopped
            } else {
                &self.executor_stopped
            },
        }
    }
}

/// Marks a worker stopped when dropped ([`Health::running`]).
#[derive(Debug)]
pub struct RunningGuard<'a> {
    flag: &'a std::sync::atomic::AtomicBool,
}

impl Drop for RunningGuard<'_> {
    fn drop(&mut self) {
        self.flag.store(true, std::sync::atomic::Ordering::SeqCst);
    }
}
