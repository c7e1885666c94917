//! The closed loop: an integrator with one [`Tracker`] receives a scenario's callbacks and
//! redirects, reads the session whenever the tracker says, and performs what the tracker owes,
//! reporting each done, on a test clock.

use core::time::Duration;

use super::Scenario;
use super::klarna::{Delivery, ReadAnswer, Visit};
use super::oracle::Expected;
use hpp_session::ReadFailure;
use hpp_session::SessionId;
use hpp_session::Snapshot;
use hpp_session::Timestamp;
use hpp_session::callback_secret_matches;
use hpp_session::{Action, DisableAnswer};
use hpp_session::{Report, Tracker, TrackerConfig};

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
    /// The merchant actions performed, in order (each reported done once performed).
    pub actions: heapless::Vec<Expected, MAX_RUN_ACTIONS>,
    /// Whether the tracker needed no more reads and owed nothing at the end (a confirmed final
    /// status, or expiry) within [`SETTLE_WITHIN`] after expiry.
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

/// The integrator takes callback `d` (its snapshot `s`) as `callbacks` says; `Err` when it is
/// refused (a secret that does not match, or the tracker's refusal).
fn take_callback(
    tracker: &mut Tracker,
    integrator: &Integrator,
    session: Option<&SessionId>,
    d: &Delivery,
    s: &Snapshot,
    now: Timestamp,
) -> Result<Report, ()> {
    let event_id = Some(d.event_id.as_str());
    let observed = match integrator.callbacks {
        Callbacks::Hints => tracker.observe_callback(&integrator.tracker, event_id, s, now),
        Callbacks::Verified { leaked } => {
            let presented = if d.forged && !leaked {
                GUESSED_SECRET
            } else {
                ISSUED_SECRET
            };
            // The URL names the session the secret was issued for: the integrator's own.
            let session = session.ok_or(())?;
            let checked = callback_secret_matches(session, ISSUED_SECRET, presented).ok_or(())?;
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
/// each callback and redirect as it arrives, and reads whenever [`Tracker::next_read`] says a
/// read is due ([`Tracker::start_read`]), the way a poller that sleeps until the next read
/// does: no spacing of its own, no back-off of its own (a failed read goes to
/// [`Tracker::observe_read_failure`]). After each step it performs what the tracker owes and
/// reports each done: a disable at once, with Klarna's answer
/// ([`Tracker::observe_disable_answer`]). The loop ends when no callback or redirect is left,
/// no read is needed and nothing is owed, or [`SETTLE_WITHIN`] after expiry.
pub fn drive(
    scenario: &mut Scenario,
    integrator: impl Into<Integrator>,
    mut on_step: impl FnMut(Step<'_>),
) -> (Tracker, Run) {
    let integrator = integrator.into();
    let config = integrator.tracker;
    let created = scenario.history.created_at;
    let session = SessionId::new(scenario.history.session_id.as_str()).ok();
    let mut tracker = match &session {
        Some(id) => Tracker::created(id.clone(), created),
        None => Tracker::new(),
    };
    let mut run = Run::default();
    let deadline = scenario.history.expires_at.saturating_add(SETTLE_WITHIN);
    let mut now = scenario.history.created_at;
    let (mut next_delivery, mut next_visit) = (0, 0);
    loop {
        let read_at = tracker.next_read(&config, now).map(|r| r.at.max(now));
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
            run.settled = tracker.owed().is_empty();
            break;
        };
        if step_at > deadline {
            run.settled = read_at.is_none() && tracker.owed().is_empty();
            break;
        }
        now = step_at;
        match next {
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
                        take_callback(&mut tracker, &integrator, session.as_ref(), d, &s, now)
                    });
                run.refused += u32::from(observed.is_err());
            }
            Next::Visit => {
                let Some(v) = scenario.visits.get(next_visit) else {
                    break;
                };
                next_visit += 1;
                run.redirects += 1;
                on_step(Step::Redirect(v));
                let observed = session.as_ref().ok_or(()).and_then(|id| {
                    tracker
                        .observe_redirect(id, v.redirect, now)
                        .map_err(|_| ())
                });
                run.refused += u32::from(observed.is_err());
            }
            Next::Read => read(scenario, &config, &mut tracker, &mut run, now, &mut on_step),
        }
        if let Some(id) = &session {
            perform(scenario, &mut tracker, id, &mut run, now, &mut on_step);
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

/// Performs what the tracker owes at `now`, and reports each done: the merchant's actions are
/// recorded in the run; a disable is made at Klarna and its answer observed.
fn perform(
    scenario: &mut Scenario,
    tracker: &mut Tracker,
    id: &SessionId,
    run: &mut Run,
    now: Timestamp,
    on_step: &mut impl FnMut(Step<'_>),
) {
    // Until nothing is owed: a disable's answer may ask for a release.
    while let Some(action) = tracker.next_action() {
        if action == Action::Disable {
            run.disables += 1;
            let answer = scenario.disable(now);
            on_step(Step::Disable { at: now, answer });
            let _ = tracker.observe_disable_answer(id, answer, now);
            continue;
        }
        if let Some(expected) = Expected::of(&action) {
            // Past the bound is far past a failure already.
            let _ = run.actions.push(expected);
        }
        // Cannot be refused: the tracker asked for it, for this session.
        let _ = tracker.done(action.id(id));
    }
}

/// One read at `now`.
fn read(
    scenario: &mut Scenario,
    config: &TrackerConfig,
    tracker: &mut Tracker,
    run: &mut Run,
    now: Timestamp,
    on_step: &mut impl FnMut(Step<'_>),
) {
    if tracker.start_read(config, now).is_none() {
        // Not due: the loop only comes here when it is.
        return;
    }
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
                .and_then(|s| tracker.observe_read(config, &s, now).map_err(|_| ()));
            if observed.is_ok() {
                return;
            }
            run.refused += 1;
            ReadFailure::Unexpected
        }
        ReadAnswer::NotFound => {
            if tracker.observe_not_found(now).is_ok() {
                return;
            }
            // No confirmed `expires_at` to judge the 404 by.
            run.refused += 1;
            ReadFailure::Unexpected
        }
        ReadAnswer::Failed(failure) => *failure,
    };
    tracker.observe_read_failure(failure, now);
}
