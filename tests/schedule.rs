//! The read schedule's guarantee (`SPEC.md` G1–G6), checked against the simulator's ground
//! truth (when the consumer really paid, from the history; which reads failed, from the
//! simulator), never against the tracker's own report:
//!
//! - every `COMPLETED` is confirmed within `detect_within` of its `updated_at`, over any history
//!   and any loss of callbacks and redirects, for a poller that reads when due and for pollers
//!   that wake on a tick (any tick up to `detect_within`);
//! - a read that fell due stays due until it is made: a cron poller never skips one;
//! - after failed reads the schedule resumes within [`MAX_READ_BACKOFF`] once they stop;
//! - the merchant's disable races the consumer's payment safely in every order.
#![cfg(feature = "sim")]

mod common;

use core::time::Duration;

use common::at;
use hpp_session::sim::oracle::{Expected, expected};
use hpp_session::sim::{ReadAnswer, ReadFailure as SimFailure, Scenario, SimConfig, Simulator};
use hpp_session::{
    Action, ActionKind, Completion, MAX_READ_BACKOFF, MIN_READ_INTERVAL, ReadFailure, ReadPolicy,
    ReleaseReason, SessionId, Snapshot, Status, Timestamp, Tracker, TrackerConfig, Urgency,
};
use proptest::prelude::*;

/// How the integrator decides when to read.
#[derive(Clone, Copy, Debug)]
enum Poller {
    /// Sleeps until the next read falls due (or a hint arrives).
    WhenDue,
    /// Wakes every `every` (from the session's creation, shifted by `phase`) and reads when a
    /// read is due: a cron job.
    Tick { every: Duration, phase: Duration },
}

impl Poller {
    /// When the poller first looks at or after `t`.
    fn wakes_at(self, t: Timestamp, origin: Timestamp) -> Timestamp {
        match self {
            Self::WhenDue => t,
            Self::Tick { every, phase } => {
                let start = origin.checked_add(phase).unwrap();
                let behind = t.duration_since(start).unwrap_or_default().as_nanos();
                let step = every.as_nanos();
                let ticks = behind.div_ceil(step);
                let ahead = u64::try_from(ticks * step).unwrap();
                start.checked_add(Duration::from_nanos(ahead)).unwrap()
            }
        }
    }

    fn lag(self) -> Duration {
        match self {
            Self::WhenDue => Duration::ZERO,
            Self::Tick { every, .. } => every,
        }
    }
}

/// One read attempt, as the simulator answered it.
#[derive(Clone, Copy, Debug)]
struct Attempt {
    at: Timestamp,
    failed: bool,
}

/// What a run did, from the simulator's side.
struct Trace {
    attempts: Vec<Attempt>,
    /// When a read first showed the tracker's status as `COMPLETED`.
    confirmed_paid: Option<Timestamp>,
    actions: Vec<Action>,
    disables: u32,
    tracker: Tracker,
}

/// Runs `scenario` with `poller` reading for a tracker with `config`; callbacks and redirects
/// reach it only when `hints`.
fn run(scenario: &mut Scenario, config: TrackerConfig, poller: Poller, hints: bool) -> Trace {
    let origin = scenario.history.created_at;
    let id = SessionId::new(scenario.history.session_id.as_str()).unwrap();
    let mut tracker = Tracker::created(id.clone(), origin, config);
    let end = scenario
        .history
        .expires_at
        .checked_add(Duration::from_secs(3_600))
        .unwrap();
    let (mut d, mut v) = (0, 0);
    let mut now = origin;
    let mut trace = Trace {
        attempts: Vec::new(),
        confirmed_paid: None,
        actions: Vec::new(),
        disables: 0,
        tracker: tracker.clone(),
    };
    for step in 0.. {
        // A session's 48 hours take a few hundred steps; a schedule that spins never ends.
        assert!(step < 100_000, "the poller spins at {now}");
        let read_at = tracker
            .next_read(now)
            .map(|r| poller.wakes_at(r.at.max(now), origin));
        let callback = scenario.deliveries.get(d).filter(|_| hints).map(|x| x.at);
        let visit = scenario.visits.get(v).filter(|_| hints).map(|x| x.at);
        let Some(step) = [callback, visit, read_at].into_iter().flatten().min() else {
            break;
        };
        if step > end {
            break;
        }
        now = step;
        let mut asked: Vec<Action> = Vec::new();
        if callback == Some(step) {
            let delivery = scenario.deliveries[d].clone();
            d += 1;
            if let Ok(s) = delivery.body.session_body().snapshot() {
                if let Ok(r) = tracker.observe_callback(Some(delivery.event_id.as_str()), &s, now) {
                    asked.extend(r.actions());
                }
            }
        } else if visit == Some(step) {
            let visit = scenario.visits[v];
            v += 1;
            let r = tracker.observe_redirect(&id, visit.redirect, now).unwrap();
            asked.extend(r.actions());
        } else {
            let answer = scenario.read(now);
            let failed = !matches!(answer, ReadAnswer::Session(_) | ReadAnswer::NotFound);
            trace.attempts.push(Attempt { at: now, failed });
            match answer {
                ReadAnswer::Session(body) => {
                    let s = body.session_body().snapshot().unwrap();
                    asked.extend(tracker.observe_read(&s, now).unwrap().actions());
                    if trace.confirmed_paid.is_none() && tracker.status() == Some(Status::Completed)
                    {
                        trace.confirmed_paid = Some(now);
                    }
                }
                ReadAnswer::NotFound => match tracker.observe_not_found(now) {
                    Ok(r) => asked.extend(r.actions()),
                    Err(_) => {
                        let _ = tracker.observe_read_failure(ReadFailure::Unexpected, now);
                    }
                },
                ReadAnswer::Failed(f) => {
                    let failure = match f {
                        SimFailure::RateLimited => ReadFailure::RateLimited { reset: None },
                        SimFailure::ServerError => ReadFailure::ServerError,
                    };
                    let _ = tracker.observe_read_failure(failure, now);
                }
            }
        }
        if asked.contains(&Action::Disable) {
            trace.disables += 1;
            let _ = scenario.disable(now);
        }
        trace.actions.extend(asked);
    }
    trace.tracker = tracker;
    trace
}

/// The merchant actions of a run, as the oracle names them.
fn merchant_actions(actions: &[Action]) -> Vec<Expected> {
    actions.iter().filter_map(Expected::of).collect()
}

/// A simulator configuration with any loss: calls, whole events, redirects; forged callbacks and
/// redirects; failing reads.
fn any_network() -> impl Strategy<Value = SimConfig> {
    (
        0u16..=1000,
        0u16..=1000,
        0u16..=1000,
        0u16..=1000,
        0u16..=300,
        0u64..60,
    )
        .prop_map(
            |(call_loss, event_loss, redirect, forged, read_failure, delay)| SimConfig {
                call_loss,
                event_loss,
                redirect,
                forged,
                read_failure,
                max_delay: Duration::from_secs(delay),
                ..SimConfig::DEFAULT
            },
        )
}

/// A policy: the default guarantee or a tighter one, and a poll lag for a tick poller.
fn policy(detect_minutes: u64, lag: Duration) -> ReadPolicy {
    ReadPolicy::DEFAULT
        .with_detect_within(Duration::from_secs(detect_minutes * 60))
        .unwrap()
        .with_poll_lag(lag)
        .unwrap()
}

/// The latest failed attempt before `t`, if any.
fn last_failure_before(attempts: &[Attempt], t: Timestamp) -> Option<Timestamp> {
    attempts
        .iter()
        .filter(|a| a.failed && a.at < t)
        .map(|a| a.at)
        .max()
}

/// G1: a `COMPLETED` is confirmed within the guarantee of its `updated_at` (or within
/// `MAX_READ_BACKOFF` (+ the tick) of the last failed read before it, when reads were failing),
/// and the money action is asked for exactly once.
fn check_detection(
    scenario: &Scenario,
    trace: &Trace,
    within: Duration,
    lag: Duration,
) -> Result<(), TestCaseError> {
    let Some(end) = scenario
        .history
        .ending()
        .filter(|c| c.status == Status::Completed)
    else {
        return Ok(());
    };
    let confirmed = trace.confirmed_paid;
    prop_assert!(confirmed.is_some(), "a paid session never confirmed");
    let confirmed = confirmed.unwrap();
    let by_guarantee = end.at.checked_add(within).unwrap();
    let by_retry = last_failure_before(&trace.attempts, confirmed)
        .map(|f| f.checked_add(MAX_READ_BACKOFF + lag).unwrap());
    prop_assert!(
        confirmed <= by_guarantee || by_retry.is_some_and(|r| confirmed <= r),
        "paid at {} confirmed at {} (guarantee {:?})",
        end.at,
        confirmed,
        within
    );
    Ok(())
}

/// G2: between two successful reads of an open session with no failure between them, never
/// more than the blind gap plus the poller's lag.
fn check_gaps(trace: &Trace, gap: Duration, lag: Duration) -> Result<(), TestCaseError> {
    for w in trace.attempts.windows(2) {
        if w[0].failed || w[1].failed {
            continue;
        }
        let between = w[1].at.duration_since(w[0].at).unwrap();
        prop_assert!(
            between <= gap + lag,
            "{:?} between reads at {} and {}",
            between,
            w[0].at,
            w[1].at
        );
        // G3: no two answered reads closer than `MIN_READ_INTERVAL` (a poller never reads
        // twice for one slot; hints, expiry and the time limit are spaced like the rest).
        prop_assert!(
            between >= MIN_READ_INTERVAL,
            "reads at {} and {}",
            w[0].at,
            w[1].at
        );
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2_048))]

    /// G1, G2 for a poller that reads when due: any history, any loss (every callback and
    /// redirect lost included), forged hints, failing reads, the merchant's time limit or none.
    #[test]
    fn a_paid_session_is_confirmed_within_the_guarantee(
        network in any_network(),
        seed in any::<u64>(),
        index in 0u64..1_000_000,
        hints in any::<bool>(),
        detect_minutes in prop::sample::select(vec![15u64, 30, 45, 59]),
        abandon in prop::option::of(prop::sample::select(vec![30u64, 120, 600])),
    ) {
        let mut scenario = Simulator::new(network, seed).scenario(index);
        let reads = policy(detect_minutes, Duration::ZERO);
        let config = TrackerConfig {
            reads,
            abandon_after: abandon.map(|m| Duration::from_secs(m * 60)),
            ..TrackerConfig::DEFAULT
        };
        let trace = run(&mut scenario, config, Poller::WhenDue, hints);
        check_detection(&scenario, &trace, reads.detect_within(), Duration::ZERO)?;
        check_gaps(&trace, reads.blind_gap(), Duration::ZERO)?;
        // Exactly once, by the oracle of what really happened (a disable the tracker asked for
        // is part of the history): money never dropped for a release.
        prop_assert!(trace.disables <= 1);
        prop_assert_eq!(merchant_actions(&trace.actions), vec![expected(&scenario.history)]);
        prop_assert!(trace.tracker.next_read(at(0)).is_none(), "not settled");
    }

    /// G1, G2 for a cron poller: any tick from `MIN_READ_INTERVAL` to `detect_within`. With the
    /// tick as the policy's `poll_lag` the guarantee holds as stated; with the default policy it
    /// holds within one tick more. Every callback and redirect is lost.
    #[test]
    fn a_cron_poller_confirms_within_the_guarantee_and_skips_no_read(
        network in any_network(),
        seed in any::<u64>(),
        index in 0u64..1_000_000,
        tick_ms in 200u64..45 * 60_000,
        phase_ms in 0u64..45 * 60_000,
        lag_in_policy in any::<bool>(),
    ) {
        let mut scenario = Simulator::new(network, seed).scenario(index);
        let every = Duration::from_millis(tick_ms);
        let phase = Duration::from_millis(phase_ms % tick_ms);
        let poller = Poller::Tick { every, phase };
        let default = ReadPolicy::DEFAULT;
        let fits = every + MIN_READ_INTERVAL <= default.detect_within();
        let reads = if lag_in_policy && fits { default.with_poll_lag(every).unwrap() } else { default };
        let config = TrackerConfig { reads, ..TrackerConfig::DEFAULT };
        let trace = run(&mut scenario, config, poller, false);
        let late = reads.poll_lag().max(poller.lag()) - reads.poll_lag();
        check_detection(&scenario, &trace, reads.detect_within() + late, poller.lag())?;
        check_gaps(&trace, reads.blind_gap(), poller.lag())?;
    }

    /// G4: after any run of failed reads, the next read comes at most `MAX_READ_BACKOFF` after
    /// the last failure, or when it was due anyway; never before the failure, and a 429's
    /// reset is waited for.
    #[test]
    fn the_back_off_ends_within_a_minute_of_the_last_failure(
        failures in prop::collection::vec((0u8..5, 0u64..120_000, 0u64..5_000), 1..40),
        claim in any::<bool>(),
    ) {
        let id = SessionId::new("s-1").unwrap();
        let mut t = Tracker::for_session(id, TrackerConfig::DEFAULT);
        let _ = t.observe_read(&Snapshot::new(Status::Waiting, at(0), Some(at(48 * 3_600_000)), None).unwrap(), at(1_000)).unwrap();
        if claim {
            let paid = Snapshot::new(Status::Completed, at(2_000), None, Some(Completion::authorized("tok").unwrap())).unwrap();
            let _ = t.observe_callback(None, &paid, at(2_000)).unwrap();
        }
        let due_before = t.next_read(at(1_000)).unwrap();
        let mut now = 1_000;
        for (kind, wait, reset_ms) in failures {
            now += wait;
            let failure = match kind {
                0 => ReadFailure::RateLimited { reset: Some(Duration::from_millis(reset_ms)) },
                1 => ReadFailure::RateLimited { reset: None },
                2 => ReadFailure::ServerError,
                3 => ReadFailure::Timeout,
                _ => ReadFailure::Unexpected,
            };
            let next = t.observe_read_failure(failure, at(now)).unwrap();
            prop_assert_eq!(next.urgency, due_before.urgency, "a failure changed the urgency");
            prop_assert!(next.at > at(now), "a retry at once would spin");
            let latest = at(now).checked_add(MAX_READ_BACKOFF).unwrap().max(due_before.at);
            prop_assert!(next.at <= latest, "{:?} after {}", next, latest);
            if let ReadFailure::RateLimited { reset: Some(reset) } = failure {
                prop_assert!(next.at >= at(now).checked_add(reset.min(MAX_READ_BACKOFF)).unwrap());
            }
        }
    }

    /// G5: the merchant's disable races the consumer's payment safely in every order. The read
    /// that finds the session abandoned asks for the disable; then either the consumer paid
    /// first (the `DELETE` answers 400, a read shows `COMPLETED`) or the disable won (a read
    /// shows `DISABLED`). Whatever order the reads, a late stale read and the consumer's
    /// callbacks arrive in: money exactly when paid, a release exactly when disabled, never
    /// both, and the disable asked once.
    #[test]
    fn the_disable_races_the_payment_safely_in_every_order(
        paid_first in any::<bool>(),
        order in Just((0..5).collect::<Vec<usize>>()).prop_shuffle(),
        gaps in prop::collection::vec(1u64..600_000, 5),
    ) {
        const H: u64 = 3_600_000;
        let expires = Some(at(48 * H));
        let config = TrackerConfig { abandon_after: Some(Duration::from_secs(2 * 3_600)), ..TrackerConfig::DEFAULT };
        let mut t = Tracker::for_session(SessionId::new("s-1").unwrap(), config);
        let waiting = Snapshot::new(Status::Waiting, at(0), expires, None).unwrap();
        let _ = t.observe_read(&waiting, at(1_000)).unwrap();
        // The read at the deadline finds it abandoned: the disable, asked once, and a read at
        // once after it.
        let r = t.observe_read(&waiting, at(2 * H)).unwrap();
        prop_assert_eq!(r.actions().collect::<Vec<_>>(), vec![Action::Disable]);
        let next = t.next_read(at(2 * H)).unwrap();
        prop_assert_eq!(next.urgency, Urgency::Confirm);
        prop_assert!(next.at <= at(2 * H + 10_000));
        // What really happened a moment later: paid at 2 h + 1 s, or disabled then.
        let end = if paid_first {
            Snapshot::new(Status::Completed, at(2 * H + 1_000), expires, Some(Completion::authorized("tok").unwrap())).unwrap()
        } else {
            Snapshot::new(Status::Disabled, at(2 * H + 1_000), expires, None).unwrap()
        };
        let mut asked: Vec<Action> = Vec::new();
        let mut now = 2 * H + 1_000;
        for (step, gap) in order.into_iter().zip(gaps) {
            now += gap;
            let report = match step {
                // The read of the end, twice (a retried poll), a stale read of the old state,
                // the consumer's callback (unsigned), and a redirect.
                0 | 1 => t.observe_read(&end, at(now)).unwrap(),
                2 => t.observe_read(&waiting, at(now)).unwrap(),
                3 => t.observe_callback(Some("e-end"), &end, at(now)).unwrap(),
                _ => t.observe_redirect(&SessionId::new("s-1").unwrap(), hpp_session::Redirect::Success, at(now)).unwrap(),
            };
            asked.extend(report.actions());
        }
        let kinds: Vec<ActionKind> = asked.iter().map(Action::kind).filter(|k| *k != ActionKind::ReadSession).collect();
        if paid_first {
            prop_assert_eq!(kinds, vec![ActionKind::PlaceOrder]);
        } else {
            prop_assert_eq!(asked.iter().filter(|a| a.kind() != ActionKind::ReadSession).cloned().collect::<Vec<_>>(), vec![Action::Release { reason: ReleaseReason::Disabled }]);
        }
        prop_assert!(!t.asked().contains(ActionKind::Release) || !paid_first);
        prop_assert!(t.next_read(at(now)).is_none());
    }
}

/// The tried case: a WAITING session read at its first slot answered that slot forever;
/// a cron poller with ticks of 1, 7, 60 and 300 s read it once in 24 hours. Now each reads it
/// at least every `detect_within` plus a tick.
#[test]
fn a_cron_poller_reads_a_waiting_session_all_day() {
    for tick in [1u64, 7, 60, 300] {
        let id = SessionId::new("s-1").unwrap();
        let mut t = Tracker::for_session(id, TrackerConfig::DEFAULT);
        let waiting =
            Snapshot::new(Status::Waiting, at(0), Some(at(48 * 3_600_000)), None).unwrap();
        let mut reads = 0;
        for k in 0..(24 * 3_600 / tick) {
            let now = at(k * tick * 1_000);
            if t.next_read(now).is_some_and(|r| r.is_due(now)) {
                let _ = t.observe_read(&waiting, now).unwrap();
                reads += 1;
                // Asked again at once: not due (the read counted).
                assert_not_due(&t, now);
            }
        }
        let most = 24 * 60 / 45 + 1;
        let least = 24 * 3_600 / (45 * 60 + tick);
        assert!(
            reads >= least && reads <= most + 4,
            "tick {tick} s: {reads} reads"
        );
    }
}

fn assert_not_due(t: &Tracker, now: Timestamp) {
    assert!(!t.next_read(now).unwrap().is_due(now), "due again at {now}");
}
