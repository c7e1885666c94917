//! The closed loop: an integrator with one [`Tracker`] receives a scenario's callbacks and reads
//! the session whenever the tracker says, on a test clock.

use core::time::Duration;

use super::Scenario;
use super::klarna::{Delivery, ReadAnswer};
use super::oracle::Expected;
use crate::schedule::MIN_READ_INTERVAL;
use crate::secret::callback_secret_matches;
use crate::timestamp::Timestamp;
use crate::tracker::{Report, Tracker, TrackerConfig};

/// How the simulated integrator takes status callbacks.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum Callbacks {
    /// As hints, unchecked: what Klarna's unsigned callbacks call for. The default.
    #[default]
    Hints,
    /// It checks the per-session secret in the callback URL ([`callback_secret_matches`]) and
    /// observes a callback whose secret matched as evidence, one whose secret did not as
    /// nothing. Klarna's callbacks carry the secret; the adversary's carry it only when it
    /// `leaked`.
    Verified {
        /// Whether the adversary knows the secret.
        leaked: bool,
    },
}

/// The simulated integrator: its trackers' configuration and how it takes callbacks. A
/// [`TrackerConfig`] alone is an integrator that takes callbacks as hints.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct Integrator {
    /// Its trackers' configuration.
    pub tracker: TrackerConfig,
    /// How it takes callbacks.
    pub callbacks: Callbacks,
}

impl From<TrackerConfig> for Integrator {
    fn from(tracker: TrackerConfig) -> Self {
        Self {
            tracker,
            callbacks: Callbacks::Hints,
        }
    }
}

/// The secret the simulated integrator issues for every session, and what an adversary that does
/// not know it presents.
const ISSUED_SECRET: &[u8] = b"5e55ac1e5e55ac1e5e55ac1e5e55ac1e";
const GUESSED_SECRET: &[u8] = b"00000000000000000000000000000000";

/// The most merchant actions a run records; a correct run has one.
pub const MAX_RUN_ACTIONS: usize = 8;

/// How long after expiry the loop keeps going before it calls a session unsettled.
pub const SETTLE_WITHIN: Duration = Duration::from_secs(24 * 3600);

/// The longest back-off between failed reads.
pub const MAX_READ_BACKOFF: Duration = Duration::from_secs(60);

/// One thing that reached the integrator, in time order.
#[derive(Debug)]
pub enum Step<'s> {
    /// A status callback arrived.
    Callback(&'s Delivery),
    /// The integrator read the session at `at`.
    Read {
        /// When.
        at: Timestamp,
        /// What the read answered.
        answer: &'s ReadAnswer,
    },
}

/// What a closed-loop run did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Run {
    /// The merchant actions the tracker asked for, in order.
    pub actions: heapless::Vec<Expected, MAX_RUN_ACTIONS>,
    /// Whether the tracker needed no more reads at the end (a confirmed final status, or
    /// expiry) within [`SETTLE_WITHIN`] after expiry.
    pub settled: bool,
    /// Reads made (failed ones too).
    pub reads: u32,
    /// Callbacks observed.
    pub callbacks: u32,
    /// Observations refused (forged bodies that fail validation, hints from the future,
    /// callbacks whose secret did not match under [`Callbacks::Verified`]).
    pub refused: u32,
    /// Whether the tracker reported a conflict.
    pub conflict: bool,
}

impl Run {
    fn record(&mut self, report: &Report<'_>) {
        for action in report.actions() {
            if let Some(expected) = Expected::of(&action) {
                // Past the bound is far past a failure already.
                let _ = self.actions.push(expected);
            }
        }
    }
}

/// The integrator takes callback `d` (its snapshot `s`) as `callbacks` says; `Err` when it is
/// refused (a secret that does not match, or the tracker's refusal).
fn take_callback<'t>(
    tracker: &'t mut Tracker,
    callbacks: Callbacks,
    d: &Delivery,
    s: &crate::snapshot::Snapshot,
    now: Timestamp,
) -> Result<Report<'t>, ()> {
    let event_id = Some(d.event_id.as_str());
    let observed = match callbacks {
        Callbacks::Hints => tracker.observe_callback(event_id, s, now),
        Callbacks::Verified { leaked } => {
            let presented = if d.forged && !leaked {
                GUESSED_SECRET
            } else {
                ISSUED_SECRET
            };
            let checked = callback_secret_matches(ISSUED_SECRET, presented).ok_or(())?;
            tracker.observe_verified_callback(checked, event_id, s, now)
        }
    };
    observed.map_err(|_| ())
}

/// Runs `scenario` against an integrator (a [`TrackerConfig`], or an [`Integrator`] that checks
/// callback secrets), handing each step to `on_step` before the tracker observes it.
///
/// The integrator creates the session at its creation time, observes each callback as it
/// arrives, and reads at [`Tracker::next_read`], never twice within [`MIN_READ_INTERVAL`]
/// (the tracker anchors its schedule on changes, so right after a read that changed nothing it
/// may still say "now"). A failed read is retried after 1 s, 2 s, 4 s, … up to
/// [`MAX_READ_BACKOFF`]. The loop ends when no callback is left and no read is needed, or
/// [`SETTLE_WITHIN`] after expiry.
pub fn drive(
    scenario: &mut Scenario,
    integrator: impl Into<Integrator>,
    mut on_step: impl FnMut(Step<'_>),
) -> (Tracker, Run) {
    let integrator = integrator.into();
    let mut tracker = Tracker::new(integrator.tracker);
    let mut run = Run::default();
    let deadline = scenario.history.expires_at.saturating_add(SETTLE_WITHIN);
    let mut now = scenario.history.created_at;
    let mut next_delivery = 0;
    let mut not_before = now;
    let mut backoff = Duration::ZERO;
    loop {
        let read_at = tracker
            .next_read(now.max(not_before))
            .map(|t| t.max(not_before));
        let delivery = scenario.deliveries.get(next_delivery);
        let step_at = match (read_at, delivery) {
            (None, None) => {
                run.settled = true;
                break;
            }
            (Some(r), Some(d)) => r.min(d.at),
            (Some(r), None) => r,
            (None, Some(d)) => d.at,
        };
        if step_at > deadline {
            run.settled = read_at.is_none();
            break;
        }
        now = step_at;
        match delivery {
            Some(d) if d.at <= step_at => {
                next_delivery += 1;
                run.callbacks += 1;
                on_step(Step::Callback(d));
                let observed = d
                    .body
                    .session_body()
                    .snapshot()
                    .map_err(|_| ())
                    .and_then(|s| {
                        take_callback(&mut tracker, integrator.callbacks, d, &s, now)
                            .map(|r| run.record(&r))
                    });
                run.refused += u32::from(observed.is_err());
            }
            _ => {
                run.reads += 1;
                let answer = scenario.read(now);
                on_step(Step::Read {
                    at: now,
                    answer: &answer,
                });
                not_before = now.saturating_add(MIN_READ_INTERVAL);
                match &answer {
                    ReadAnswer::Session(body) => {
                        backoff = Duration::ZERO;
                        // The simulator's read bodies are valid by construction; a history
                        // built by hand could break that, and is then refused, not a panic.
                        let observed =
                            body.session_body()
                                .snapshot()
                                .map_err(|_| ())
                                .and_then(|s| {
                                    tracker
                                        .observe_read(&s, now)
                                        .map(|r| run.record(&r))
                                        .map_err(|_| ())
                                });
                        run.refused += u32::from(observed.is_err());
                    }
                    ReadAnswer::NotFound => {
                        if let Ok(report) = tracker.observe_not_found(now) {
                            backoff = Duration::ZERO;
                            run.record(&report);
                        } else {
                            // No confirmed `expires_at` to judge the 404 by: like a failed read.
                            run.refused += 1;
                            backoff = next_backoff(backoff);
                            not_before = now.saturating_add(backoff);
                        }
                    }
                    ReadAnswer::Failed(_) => {
                        backoff = next_backoff(backoff);
                        not_before = now.saturating_add(backoff);
                    }
                }
            }
        }
    }
    run.conflict = tracker.has_conflict();
    (tracker, run)
}

/// 1 s, then doubling, up to [`MAX_READ_BACKOFF`].
fn next_backoff(backoff: Duration) -> Duration {
    backoff
        .saturating_mul(2)
        .max(Duration::from_secs(1))
        .min(MAX_READ_BACKOFF)
}
