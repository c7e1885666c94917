//! A deterministic model of Klarna for testing HPP integrations: session histories, what Klarna
//! sends and answers for them, an oracle of what a correct integrator must do, and a closed loop
//! on a test clock. The `klarna-double` HTTP server and the replay tool's fleet build on it, so
//! each of Klarna's rules is written once: the histories, the oracle, the token's hour
//! ([`klarna::token_accepted`]), create-order and cancel authorization ([`money`]), the rate
//! limiter ([`limiter`], `now` passed in) and the verdict on what a merchant did ([`judge`]).
//! What holds many sessions (the double's maps of payment sessions and tokens, the fleet's
//! queues) stays with them. [`integration`] drives your own handler, poller and executor through
//! a scenario and judges them with the same judge.
//!
//! Like `hpp-session` it is `no_std` and allocation-free: one [`Scenario`] (a session's
//! history, its callbacks, its reads) at a time, in fixed-capacity storage. Everything is
//! integer arithmetic on a seeded [`rng::Rng`], so the same seed and configuration give the same
//! scenarios, byte for byte, on every platform.
//!
//! - [`History::generate`] walks the transition table with realistic timings: the page opened
//!   seconds to minutes after creation, retry loops, an ending or none, expiry 48 h after
//!   creation, every completion shape Klarna publishes.
//! - [`Scenario::deliveries`]: a callback per consumer status change on Klarna's schedule
//!   (3 s timeout, up to 4 calls a few seconds apart) with configurable loss (of one call, or of
//!   all four), duplicates (a call that arrived but was acknowledged too late is made again),
//!   network delay (so reordering); optionally forged callbacks.
//! - [`Scenario::read`] answers a read with the session as of that time, 404 from `expires_at`,
//!   and optionally a 429 or 5xx.
//! - [`oracle::expected`] is the one merchant action the history calls for, computed from the
//!   history alone.
//! - [`people`]: when a consumer opens the page ([`people::Opening`]: at once, hours later,
//!   twice, or never); [`Simulator::scenario_as_people`] is session `index` as its consumer
//!   opens it, [`Simulator::scenario`] opens every page at its creation.
//! - [`money`], [`judge`], [`limiter`]: Klarna's answer to create-order and cancel
//!   authorization, the verdict on what a merchant did, Klarna's 1-second windows.
//! - [`drive::drive`] runs the closed loop with a [`hpp_session::Tracker`]: days of simulated time in
//!   microseconds.
//!
//! ```
//! use hpp_sim::{SimConfig, Simulator, drive::drive, oracle};
//! use hpp_session::TrackerConfig;
//!
//! let simulator = Simulator::new(SimConfig { forged: 500, ..SimConfig::DEFAULT }, 42);
//! for index in 0..200 {
//!     let mut scenario = simulator.scenario(index);
//!     let expected = oracle::expected(&scenario.history);
//!     let (_tracker, run) = drive(&mut scenario, TrackerConfig::DEFAULT, |_| {});
//!     assert!(run.settled);
//!     assert_eq!(run.actions.as_slice(), [expected]);
//! }
//! ```
#![no_std]
#![forbid(unsafe_code)]

pub mod drive;
pub mod history;
pub mod integration;
pub mod judge;
pub mod klarna;
pub mod limiter;
pub mod money;
pub mod oracle;
pub mod people;
pub mod rng;

use core::time::Duration;

pub use history::{History, MAX_CHANGES};
pub use klarna::{
    Body, Delivery, LATE, MAX_DELIVERIES, MAX_VISITS, ReadAnswer, Visit, token_accepted,
};

use hpp_session::Timestamp;
use rng::Rng;

/// The simulator's text: ids are UUID-shaped (36 bytes), references 8.
pub type Text = heapless::String<40>;

/// How Klarna, the network and an adversary behave. Probabilities are in per mille (0–1000;
/// above 1000 means always).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct SimConfig {
    /// When session 0 is created.
    pub start: Timestamp,
    /// Between two sessions' creations.
    pub arrival_gap: Duration,
    /// A callback call that never reaches the integrator (Klarna calls again).
    pub call_loss: u16,
    /// A call that reaches the integrator but whose 2xx comes after Klarna's 3 s timeout, so
    /// Klarna calls again: a duplicate.
    pub slow_ack: u16,
    /// An event whose four calls all fail: Klarna gives up on it.
    pub event_loss: u16,
    /// The longest network and queueing delay of a call: calls overtake each other.
    pub max_delay: Duration,
    /// A call that arrives late, 1 minute to 2 hours after it was made ([`LATE`]): evidence of
    /// an earlier change after evidence of a later one. 0 (the default) draws nothing, so the
    /// scenarios of a seed stay as they were.
    pub late: u16,
    /// Sessions an adversary posts one to three forged callbacks to.
    pub forged: u16,
    /// Reads answered 429 or 5xx.
    pub read_failure: u16,
    /// A consumer change with a redirect URL (`COMPLETED`, `FAILED`, `BACK`, `CANCELLED`,
    /// `ERROR`) whose redirect reaches the merchant (the consumer may close the window first).
    pub redirect: u16,
    /// The simulated merchant disables 1 in 25 sessions at a random time in their first two
    /// hours (on by default: in the closed loop and the fleet the simulated merchant is the
    /// integrator). Off in the double, where the merchant is the integrator under test: Klarna
    /// never moves a session to `DISABLED` by itself.
    pub merchant_disables: bool,
}

impl SimConfig {
    /// Sessions from `2019-05-13T14:51:43.507Z` (an instant from Klarna's examples), one every
    /// 500 ms; 10 % of calls lost, 10 % acknowledged too late, 2 % of events lost outright,
    /// up to 10 s of delay; half of the redirects reach the merchant; no adversary, no failing
    /// reads.
    pub const DEFAULT: Self = Self {
        start: match Timestamp::from_unix(1_557_759_103, 507_000_000) {
            Some(t) => t,
            None => Timestamp::UNIX_EPOCH,
        },
        arrival_gap: Duration::from_millis(500),
        call_loss: 100,
        slow_ack: 100,
        event_loss: 20,
        max_delay: Duration::from_secs(10),
        late: 0,
        forged: 0,
        read_failure: 0,
        redirect: 500,
        merchant_disables: true,
    };
}

impl Default for SimConfig {
    fn default() -> Self {
        Self::DEFAULT
    }
}

/// Makes scenarios from a configuration and a seed; scenario `i` depends on `(seed, i)` only.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Simulator {
    config: SimConfig,
    seed: u64,
}

impl Simulator {
    /// A simulator.
    #[must_use]
    pub const fn new(config: SimConfig, seed: u64) -> Self {
        Self { config, seed }
    }

    /// The configuration.
    #[must_use]
    pub const fn config(&self) -> &SimConfig {
        &self.config
    }

    /// When session `index` is created: `start + index × arrival_gap`.
    #[must_use]
    pub fn created_at(&self, index: u64) -> Timestamp {
        let offset = self
            .config
            .arrival_gap
            .saturating_mul(u32::try_from(index).unwrap_or(u32::MAX));
        self.config.start.saturating_add(offset)
    }

    /// Session `index`, created at [`Simulator::created_at`], its page reaching the consumer at
    /// once.
    #[inline]
    #[must_use]
    pub fn scenario(&self, index: u64) -> Scenario {
        self.scenario_opened(index, Some(self.created_at(index)))
    }

    /// Session `index`, its page reaching the consumer at `opened_at`, or never (`None`: it
    /// stays `WAITING` until disabled or expired), as [`History::generate_opened`] says. Its id
    /// and `expires_at` are the same whatever `opened_at` is: the double makes a session
    /// unopened at creation and makes it again when someone opens its page.
    #[inline]
    #[must_use]
    pub fn scenario_opened(&self, index: u64, opened_at: Option<Timestamp>) -> Scenario {
        self.scenario_expiring(index, opened_at, None)
    }

    /// [`Simulator::scenario_opened`] for an HPP session that expires by `expires_by`, sooner
    /// than 48 h after its creation when its payment session is older
    /// ([`money::hpp_expires_at`]), as [`History::generate_expiring`] says.
    #[must_use]
    pub fn scenario_expiring(
        &self,
        index: u64,
        opened_at: Option<Timestamp>,
        expires_by: Option<Timestamp>,
    ) -> Scenario {
        let mut rng = Rng::derive(self.seed, index);
        let created_at = self.created_at(index);
        let history = History::generate_expiring(
            &mut rng,
            created_at,
            opened_at,
            expires_by,
            self.config.merchant_disables,
        );
        let deliveries = klarna::deliveries(&history, &mut rng, &self.config);
        let visits = klarna::visits(&history, &mut rng, &self.config);
        Scenario {
            history,
            deliveries,
            visits,
            read_failure: self.config.read_failure,
            rng,
        }
    }
}

/// One session: its history, the callbacks that reach the integrator, and Klarna's answers to
/// reads.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Scenario {
    /// What really happened.
    pub history: History,
    /// The callbacks, sorted by arrival.
    pub deliveries: heapless::Vec<Delivery, MAX_DELIVERIES>,
    /// The redirects that reach the merchant, sorted by arrival.
    pub visits: heapless::Vec<Visit, MAX_VISITS>,
    read_failure: u16,
    rng: Rng,
}

impl Scenario {
    /// The callbacks that reach the integrator, sorted by arrival.
    #[must_use]
    pub fn deliveries(&self) -> &[Delivery] {
        &self.deliveries
    }

    /// The merchant disables the session at `at` (`DELETE`): 404 from `expires_at`, 400 when it
    /// is final already, else 204, and then the consumer's later changes never happen (their
    /// callbacks and redirects are not sent) and the session is `DISABLED`.
    pub fn disable(&mut self, at: Timestamp) -> hpp_session::DisableAnswer {
        use hpp_session::DisableAnswer;
        if at >= self.history.expires_at {
            return DisableAnswer::NotFound;
        }
        if self.history.status_at(at).is_final() {
            return DisableAnswer::AlreadyFinal;
        }
        self.history.disable(at);
        let kept = |t: Timestamp| t <= at;
        let changes = &self.history.changes;
        // A real callback is of a change that is still in the history (its `updated_at`).
        self.deliveries.retain(|d| {
            d.forged
                || Timestamp::parse(&d.body.updated_at)
                    .is_ok_and(|t| kept(t) && changes.iter().any(|c| c.at == t))
        });
        self.visits.retain(|v| {
            v.forged || (kept(v.change_at) && changes.iter().any(|c| c.at == v.change_at))
        });
        DisableAnswer::Disabled
    }

    /// Klarna's answer to a read at `at`: 404 from `expires_at` on; otherwise the session as of
    /// `at`, unless the read fails (with the configured probability).
    pub fn read(&mut self, at: Timestamp) -> ReadAnswer {
        if at >= self.history.expires_at {
            return ReadAnswer::NotFound;
        }
        if self.rng.chance(self.read_failure) {
            let failure = if self.rng.chance(500) {
                hpp_session::ReadFailure::RateLimited {
                    reset: Some(Duration::from_secs(1)),
                }
            } else {
                hpp_session::ReadFailure::ServerError
            };
            return ReadAnswer::Failed(failure);
        }
        self.history.answer(at)
    }
}
