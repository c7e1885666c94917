//! The closed loop: an integrator with one [`Tracker`] receives a scenario's callbacks and reads
//! the session whenever the tracker says, on a test clock.

use core::time::Duration;

use super::Scenario;
use super::klarna::{Delivery, DisableAnswer, ReadAnswer, ReadFailure as SimFailure, Visit};
use super::oracle::Expected;
use crate::action::ActionKind;
use crate::schedule::ReadFailure;
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

/// One thing that reached the integrator, in time order.
#[derive(Debug)]
pub enum Step<'s> {
    /// A status callback arrived.
    Callback(&'s Delivery),
    /// The consumer's browser (or an adversary) opened a redirect URL.
    Redirect(&'s Visit),
    /// The merchant disabled the session, as the tracker asked.
    Disable {
        /// When.
        at: Timestamp,
        /// Klarna's answer.
        answer: DisableAnswer,
    },
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
    /// Redirects observed.
    pub redirects: u32,
    /// Disables the merchant made (the tracker asks for at most one).
    pub disables: u32,
    /// Observations refused (forged bodies that fail validation, hints from the future,
    /// callbacks whose secret did not match under [`Callbacks::Verified`]).
    pub refused: u32,
    /// Whether the tracker reported a conflict.
    pub conflict: bool,
}

impl Run {
    /// Records the report's merchant actions; says whether it asks for a disable.
    fn record(&mut self, report: &Report<'_>) -> bool {
        for action in report.actions() {
            if let Some(expected) = Expected::of(&action) {
                // Past the bound is far past a failure already.
                let _ = self.actions.push(expected);
            }
        }
        report.action_kinds().contains(ActionKind::Disable)
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

/// What the loop does next.
enum Next {
    Callback,
    Visit,
    Read,
}

/// Runs `scenario` against an integrator (a [`TrackerConfig`], or an [`Integrator`] that checks
/// callback secrets), handing each step to `on_step` before the tracker observes it.
///
/// The integrator creates the session at its creation time ([`Tracker::created`]), observes
/// each callback and redirect
/// as it arrives, and reads whenever [`Tracker::next_read`] says a read is due, the way a
/// poller that sleeps until the next read does: no spacing of its own, no back-off of its own
/// (a failed read goes to [`Tracker::observe_read_failure`]). When the tracker asks for
/// [`crate::Action::Disable`], the merchant disables the session at once. The loop ends when no
/// callback or redirect is left and no read is needed, or [`SETTLE_WITHIN`] after expiry.
pub fn drive(
    scenario: &mut Scenario,
    integrator: impl Into<Integrator>,
    mut on_step: impl FnMut(Step<'_>),
) -> (Tracker, Run) {
    let integrator = integrator.into();
    let created = scenario.history.created_at;
    let mut tracker = match crate::id::SessionId::new(scenario.history.session_id.as_str()) {
        Ok(id) => Tracker::created(id, created, integrator.tracker),
        Err(_) => Tracker::new(integrator.tracker),
    };
    let mut run = Run::default();
    let deadline = scenario.history.expires_at.saturating_add(SETTLE_WITHIN);
    let mut now = scenario.history.created_at;
    let (mut next_delivery, mut next_visit) = (0, 0);
    loop {
        let read_at = tracker.next_read(now).map(|r| r.at.max(now));
        let delivery = scenario.deliveries.get(next_delivery).map(|d| d.at);
        let visit = scenario.visits.get(next_visit).map(|v| v.at);
        // Ties: a callback first, then a redirect, then the read (a read at the same instant
        // then sees what they asked for).
        let next = [
            (delivery, Next::Callback),
            (visit, Next::Visit),
            (read_at, Next::Read),
        ]
        .into_iter()
        .filter_map(|(at, next)| at.map(|at| (at, next)))
        .min_by_key(|&(at, ref next)| (at, next_rank(next)));
        let Some((step_at, next)) = next else {
            run.settled = true;
            break;
        };
        if step_at > deadline {
            run.settled = read_at.is_none();
            break;
        }
        now = step_at;
        let disable = match next {
            Next::Callback => {
                let Some(d) = scenario.deliveries.get(next_delivery) else {
                    break;
                };
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
                observed.unwrap_or(false)
            }
            Next::Visit => {
                let Some(v) = scenario.visits.get(next_visit) else {
                    break;
                };
                next_visit += 1;
                run.redirects += 1;
                on_step(Step::Redirect(v));
                let id = crate::id::SessionId::new(scenario.history.session_id.as_str());
                let observed = id.map_err(|_| ()).and_then(|id| {
                    tracker
                        .observe_redirect(&id, v.redirect, now)
                        .map(|r| run.record(&r))
                        .map_err(|_| ())
                });
                run.refused += u32::from(observed.is_err());
                observed.unwrap_or(false)
            }
            Next::Read => read(scenario, &mut tracker, &mut run, now, &mut on_step),
        };
        if disable {
            run.disables += 1;
            let answer = scenario.disable(now);
            on_step(Step::Disable { at: now, answer });
        }
    }
    run.conflict = tracker.has_conflict();
    (tracker, run)
}

fn next_rank(next: &Next) -> u8 {
    match next {
        Next::Callback => 0,
        Next::Visit => 1,
        Next::Read => 2,
    }
}

/// One read at `now`; says whether it asks for a disable.
fn read(
    scenario: &mut Scenario,
    tracker: &mut Tracker,
    run: &mut Run,
    now: Timestamp,
    on_step: &mut impl FnMut(Step<'_>),
) -> bool {
    run.reads += 1;
    let answer = scenario.read(now);
    on_step(Step::Read {
        at: now,
        answer: &answer,
    });
    let failure = match &answer {
        ReadAnswer::Session(body) => {
            // The simulator's read bodies are valid by construction; a history built by hand
            // could break that, and is then refused, not a panic.
            let observed = body
                .session_body()
                .snapshot()
                .map_err(|_| ())
                .and_then(|s| {
                    tracker
                        .observe_read(&s, now)
                        .map(|r| run.record(&r))
                        .map_err(|_| ())
                });
            if let Ok(disable) = observed {
                return disable;
            }
            run.refused += 1;
            ReadFailure::Unexpected
        }
        ReadAnswer::NotFound => {
            if let Ok(report) = tracker.observe_not_found(now) {
                return run.record(&report);
            }
            // No confirmed `expires_at` to judge the 404 by.
            run.refused += 1;
            ReadFailure::Unexpected
        }
        ReadAnswer::Failed(SimFailure::RateLimited) => ReadFailure::RateLimited {
            reset: Some(Duration::from_secs(1)),
        },
        ReadAnswer::Failed(SimFailure::ServerError) => ReadFailure::ServerError,
    };
    let _ = tracker.observe_read_failure(failure, now);
    false
}
