//! The read schedule's guarantee (`SPEC.md` G1–G6), checked against the simulator's ground
//! truth (when the consumer really paid, from the history; which reads failed, from the
//! simulator), never against the tracker's own report:
//!
//! - every `COMPLETED` is confirmed within `detect_within` of its `updated_at`, over any history,
//!   any loss of callbacks and redirects, and any late delivery of earlier changes (hints or
//!   verified callbacks), for a poller that reads when due and for pollers that wake on a tick
//!   (any tick up to `detect_within`);
//! - a read that fell due stays due until it is made, whatever arrives: a cron poller never
//!   skips one;
//! - after failed reads the schedule resumes within [`MAX_READ_BACKOFF`] once they stop; after
//!   a 429 never before its reset, spread over the second after it;
//! - a read handed out and never answered counts as failed, so a poller that reports nothing
//!   does not storm Klarna;
//! - the merchant's disable races the consumer's payment safely in every order, its 204 counted
//!   as evidence.

#[path = "../../tests/common/mod.rs"]
mod common;

use core::time::Duration;

use common::{CFG, at, new_actions};
use hpp_session::{
    AUTHORIZATION_VALIDITY, Action, ActionId, ActionKind, Completion, DEFAULT_MAX_CLOCK_SKEW,
    DisableAnswer, MAX_DETECT_WITHIN, MAX_READ_BACKOFF, MIN_READ_INTERVAL, PLACE_ORDER_MARGIN,
    READ_TIMEOUT, ReadFailure, ReadPolicy, ReleaseReason, SessionId, Snapshot, Status, Timestamp,
    Tracker, TrackerConfig, Urgency, callback_secret_matches,
};
use hpp_sim::oracle::{Expected, expected};
use hpp_sim::{ReadAnswer, Scenario, SimConfig, Simulator};
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

/// What reaches the integrator besides its reads.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Hints {
    /// Nothing: every callback and redirect is lost.
    Lost,
    /// Callbacks as unsigned hints, and redirects.
    Unsigned,
    /// Callbacks whose secret the integrator checked (evidence; forged ones fail the check),
    /// and redirects.
    Verified,
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
    /// When the tracker first showed `COMPLETED` (by a read, or a verified callback).
    confirmed_paid: Option<Timestamp>,
    /// When the money action was performed.
    paid_action_at: Option<Timestamp>,
    /// The merchant actions performed (each reported done).
    actions: Vec<Action>,
    disables: u32,
    tracker: Tracker,
}

/// Runs `scenario` with `poller` reading for a tracker under `config`; callbacks and redirects
/// reach it as `hints` says. After every step the integrator performs what the tracker owes and
/// reports it done; a disable with Klarna's answer.
fn run(scenario: &mut Scenario, config: TrackerConfig, poller: Poller, hints: Hints) -> Trace {
    let origin = scenario.history.created_at;
    let id = SessionId::new(scenario.history.session_id.as_str()).unwrap();
    let mut tracker = Tracker::created(id.clone(), origin);
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
        paid_action_at: None,
        actions: Vec::new(),
        disables: 0,
        tracker: tracker.clone(),
    };
    let hinted = hints != Hints::Lost;
    for step in 0.. {
        // A session's 48 hours take a few hundred steps; a schedule that spins never ends.
        assert!(step < 100_000, "the poller spins at {now}");
        let read_at = tracker
            .next_read(&config, now)
            .map(|r| poller.wakes_at(r.at.max(now), origin));
        let callback = scenario.deliveries.get(d).filter(|_| hinted).map(|x| x.at);
        let visit = scenario.visits.get(v).filter(|_| hinted).map(|x| x.at);
        let Some(step) = [callback, visit, read_at].into_iter().flatten().min() else {
            break;
        };
        if step > end {
            break;
        }
        now = step;
        if callback == Some(step) {
            let delivery = scenario.deliveries[d].clone();
            d += 1;
            if let Ok(s) = delivery.body.session_body().snapshot() {
                let event = Some(delivery.event_id.as_str());
                let _ = match hints {
                    Hints::Verified => {
                        let presented: &[u8] = if delivery.forged { b"guess" } else { b"secret" };
                        match callback_secret_matches(&id, b"secret", presented) {
                            Some(checked) => {
                                tracker.observe_verified_callback(checked, event, &s, now)
                            }
                            None => continue,
                        }
                    }
                    _ => tracker.observe_callback(&config, event, &s, now),
                };
            }
        } else if visit == Some(step) {
            let visit = scenario.visits[v];
            v += 1;
            tracker.observe_redirect(&id, visit.redirect, now).unwrap();
        } else {
            assert!(
                tracker.start_read(&config, now).is_some(),
                "not due at {now}"
            );
            let answer = scenario.read(now);
            let failed = !matches!(answer, ReadAnswer::Session(_) | ReadAnswer::NotFound);
            trace.attempts.push(Attempt { at: now, failed });
            match answer {
                ReadAnswer::Session(body) => {
                    let s = body.session_body().snapshot().unwrap();
                    tracker.observe_read(&config, &s, now).unwrap();
                }
                ReadAnswer::NotFound => {
                    if tracker.observe_not_found(now).is_err() {
                        tracker.observe_read_failure(ReadFailure::Unexpected, now);
                    }
                }
                ReadAnswer::Failed(failure) => tracker.observe_read_failure(failure, now),
            }
        }
        if trace.confirmed_paid.is_none() && tracker.status() == Some(Status::Completed) {
            trace.confirmed_paid = Some(now);
        }
        // What the tracker owes, until nothing is (a disable's answer may ask for a release).
        while let Some(action) = tracker.next_action() {
            if action == Action::Disable {
                trace.disables += 1;
                let answer = scenario.disable(now);
                tracker.observe_disable_answer(&id, answer, now).unwrap();
                continue;
            }
            if action.kind().is_money() {
                trace.paid_action_at.get_or_insert(now);
            }
            tracker.done(action.id(&id)).unwrap();
            trace.actions.push(action);
        }
    }
    trace.tracker = tracker;
    trace
}

/// The merchant actions of a run, as the oracle names them.
fn merchant_actions(actions: &[Action]) -> Vec<Expected> {
    actions.iter().filter_map(Expected::of).collect()
}

/// A simulator configuration with any loss: calls, whole events, redirects; late calls (evidence
/// of earlier changes after evidence of later ones); forged callbacks and redirects; failing
/// reads.
fn any_network() -> impl Strategy<Value = SimConfig> {
    (
        (0u16..=1000, 0u16..=1000, 0u16..=1000),
        (0u16..=1000, 0u16..=300, 0u64..60, 0u16..=1000),
    )
        .prop_map(
            |((call_loss, event_loss, redirect), (forged, read_failure, delay, late))| SimConfig {
                call_loss,
                event_loss,
                redirect,
                forged,
                read_failure,
                max_delay: Duration::from_secs(delay),
                late,
                ..SimConfig::DEFAULT
            },
        )
}

fn any_hints() -> impl Strategy<Value = Hints> {
    prop_oneof![
        Just(Hints::Lost),
        Just(Hints::Unsigned),
        Just(Hints::Verified)
    ]
}

/// A policy: the default guarantee or a tighter one, and a poll lag for a tick poller.
fn policy(detect_within: Duration, lag: Duration) -> ReadPolicy {
    ReadPolicy::DEFAULT
        .with_detect_within(detect_within)
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
/// `MAX_READ_BACKOFF` (+ the tick) of the last failed read before it, when reads were failing).
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
/// more than the blind gap plus the poller's lag, whatever arrived between them.
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
    /// redirect lost included), late deliveries of earlier changes as hints or as verified
    /// callbacks, forged hints, failing reads, the merchant's time limit or none, any
    /// guarantee the setters accept.
    #[test]
    fn a_paid_session_is_confirmed_within_the_guarantee(
        network in any_network(),
        seed in any::<u64>(),
        index in 0u64..1_000_000,
        hints in any_hints(),
        detect_secs in prop_oneof![Just(MAX_DETECT_WITHIN.as_secs()), 60u64..=MAX_DETECT_WITHIN.as_secs()],
        abandon in prop::option::of(prop::sample::select(vec![30u64, 120, 600])),
    ) {
        let mut scenario = Simulator::new(network, seed).scenario(index);
        let reads = policy(Duration::from_secs(detect_secs), Duration::ZERO);
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
        prop_assert!(trace.tracker.next_read(&config, at(0)).is_none(), "not settled");
        prop_assert!(trace.tracker.settled().is_some(), "final, but something is owed");
        // A forged callback pages no one.
        prop_assert!(!trace.tracker.has_conflict());
    }

    /// G1, G2 for a cron poller: any tick from `MIN_READ_INTERVAL` to `detect_within`. With the
    /// tick as the policy's `poll_lag` the guarantee holds as stated; with the default policy it
    /// holds within one tick more. Every callback and redirect is lost, or late.
    #[test]
    fn a_cron_poller_confirms_within_the_guarantee_and_skips_no_read(
        network in any_network(),
        seed in any::<u64>(),
        index in 0u64..1_000_000,
        tick_ms in 200u64..45 * 60_000,
        phase_ms in 0u64..45 * 60_000,
        lag_in_policy in any::<bool>(),
        hints in any_hints(),
    ) {
        let mut scenario = Simulator::new(network, seed).scenario(index);
        let every = Duration::from_millis(tick_ms);
        let phase = Duration::from_millis(phase_ms % tick_ms);
        let poller = Poller::Tick { every, phase };
        let default = ReadPolicy::DEFAULT;
        let reads = match default.with_poll_lag(every) {
            Ok(with_lag) if lag_in_policy => with_lag,
            _ => default,
        };
        let config = TrackerConfig { reads, ..TrackerConfig::DEFAULT };
        let trace = run(&mut scenario, config, poller, hints);
        let late = reads.poll_lag().max(poller.lag()) - reads.poll_lag();
        check_detection(&scenario, &trace, reads.detect_within() + late, poller.lag())?;
        check_gaps(&trace, reads.blind_gap(), poller.lag())?;
    }

    /// For every policy the setters accept, the guarantee and its allowances leave the order
    /// placed before the token dies: a `COMPLETED` at the worst moment (just after a read),
    /// Klarna's clock behind the caller's by up to the skew allowed for, a poller that is
    /// `poll_lag` late for every read, the read at the deadline never answered (it times out),
    /// the next one refused with a 429 whose reset is a minute, and every hint lost. The money action comes at least `PLACE_ORDER_MARGIN`
    /// before `place_by`, judged by the token's hour from the history, not the tracker.
    #[test]
    fn no_token_is_dead_at_placement_for_any_accepted_policy(
        detect_ms in 200u64..=u64::try_from(MAX_DETECT_WITHIN.as_millis()).unwrap(),
        lag_ms in 0u64..=u64::try_from(MAX_DETECT_WITHIN.as_millis()).unwrap(),
        skew_ms in 0u64..=u64::try_from(DEFAULT_MAX_CLOCK_SKEW.as_millis()).unwrap(),
        paid_after_ms in 1u64..1_000,
        id in "[a-z0-9]{8}",
    ) {
        let detect = Duration::from_millis(detect_ms);
        let lag = Duration::from_millis(lag_ms);
        let Ok(reads) = ReadPolicy::DEFAULT.with_detect_within(detect).and_then(|p| p.with_poll_lag(lag)) else {
            // Refused: nothing to keep.
            return Ok(());
        };
        let config = TrackerConfig { reads, ..TrackerConfig::DEFAULT };
        let sid = SessionId::new(&id).unwrap();
        let expires = Some(at(48 * 3_600_000));
        let mut t = Tracker::created(sid.clone(), at(0));
        // The first read, at once: WAITING.
        let mut now = t.next_read(&config, at(0)).unwrap().at;
        t.start_read(&config, now).unwrap();
        let waiting = Snapshot::new(Status::Waiting, at(0), expires, None).unwrap();
        t.observe_read(&config, &waiting, now).unwrap();
        // Paid just after that read, stamped by Klarna's clock, behind ours by the skew (the
        // token dies that much sooner by our clock).
        let paid_local = now.checked_add(Duration::from_millis(paid_after_ms)).unwrap();
        let paid_stamp = Timestamp::from_unix(
            paid_local.unix_seconds() - i64::try_from(skew_ms / 1_000).unwrap(),
            paid_local.subsec_nanos(),
        )
        .unwrap();
        let place_by = paid_stamp.checked_add(AUTHORIZATION_VALIDITY).unwrap();
        let paid = Snapshot::new(Status::Completed, paid_stamp, expires, Some(Completion::authorized("tok").unwrap())).unwrap();
        // The read at the deadline, `poll_lag` late, never answered.
        now = t.next_read(&config, now).unwrap().at.checked_add(lag).unwrap();
        t.start_read(&config, now).unwrap();
        // The retry: a 429 with a reset of a minute.
        let next = t.next_read(&config, now).unwrap().at;
        prop_assert!(next >= now.checked_add(READ_TIMEOUT).unwrap());
        now = next.checked_add(lag).unwrap();
        t.start_read(&config, now).unwrap();
        t.observe_read_failure(ReadFailure::RateLimited { reset: Some(Duration::from_secs(60)) }, now);
        // Then answered.
        now = t.next_read(&config, now).unwrap().at.checked_add(lag).unwrap();
        t.start_read(&config, now).unwrap();
        t.observe_read(&config, &paid, now).unwrap();
        let placed_at = now;
        let asked_place = matches!(t.actions().next(), Some(Action::PlaceOrder { .. }));
        prop_assert!(asked_place, "the order was not asked for");
        prop_assert!(
            placed_at.checked_add(PLACE_ORDER_MARGIN).unwrap() <= place_by,
            "paid at {}, asked at {}, token dies at {}", paid_stamp, placed_at, place_by
        );
    }

    /// G4: after any run of failed reads, the next read comes at most `MAX_READ_BACKOFF` after
    /// the last failure, or when it was due anyway; never before the failure; after a 429 never
    /// before its reset, and within the second after it (or at the ceiling).
    #[test]
    fn the_back_off_ends_within_a_minute_of_the_last_failure(
        failures in prop::collection::vec((0u8..5, 0u64..120_000, 0u64..70_000), 1..40),
        claim in any::<bool>(),
        id in "[a-z0-9-]{1,12}",
    ) {
        let id = SessionId::new(&id).unwrap();
        let mut t = Tracker::for_session(id);
        let _ = t.observe_read(&CFG, &Snapshot::new(Status::Waiting, at(0), Some(at(48 * 3_600_000)), None).unwrap(), at(1_000)).unwrap();
        if claim {
            let paid = Snapshot::new(Status::Completed, at(2_000), None, Some(Completion::authorized("tok").unwrap())).unwrap();
            let _ = t.observe_callback(&CFG, None, &paid, at(2_000)).unwrap();
        }
        let due_before = t.next_read(&CFG, at(1_000)).unwrap();
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
            t.observe_read_failure(failure, at(now));
            let next = t.next_read(&CFG, at(now)).unwrap();
            prop_assert_eq!(next.urgency, due_before.urgency, "a failure changed the urgency");
            prop_assert!(next.at > at(now), "a retry at once would spin");
            let latest = at(now).checked_add(MAX_READ_BACKOFF).unwrap().max(due_before.at);
            prop_assert!(next.at <= latest, "{:?} after {}", next, latest);
            if let ReadFailure::RateLimited { reset: Some(reset) } = failure {
                let reset_at = at(now).checked_add(reset.min(MAX_READ_BACKOFF)).unwrap();
                prop_assert!(next.at >= reset_at, "before the reset");
                let spread_end = reset_at.checked_add(Duration::from_secs(1)).unwrap();
                let ceiling = at(now).checked_add(MAX_READ_BACKOFF).unwrap();
                let backoff_end = at(now).checked_add(Duration::from_secs(1 << 6)).unwrap();
                if next.at > due_before.at {
                    prop_assert!(next.at < spread_end || next.at == ceiling || next.at <= backoff_end, "{:?} long after the reset {}", next, reset_at);
                }
            }
        }
    }

    /// G5: the merchant's disable races the consumer's payment safely in every order. The read
    /// that finds the session abandoned asks for the disable; then either the consumer paid
    /// first (the `DELETE` answers 400, a read shows `COMPLETED`) or the disable won (the
    /// `DELETE` answers 204, evidence of `DISABLED`; a read shows it too). Whatever order the
    /// answer, the reads, a late stale read and the consumer's callbacks arrive in: money
    /// exactly when paid, a release exactly when disabled, never both, and the disable asked
    /// once.
    #[test]
    fn the_disable_races_the_payment_safely_in_every_order(
        paid_first in any::<bool>(),
        order in Just((0..6).collect::<Vec<usize>>()).prop_shuffle(),
        gaps in prop::collection::vec(1u64..600_000, 6),
    ) {
        const H: u64 = 3_600_000;
        let expires = Some(at(48 * H));
        let config = TrackerConfig { abandon_after: Some(Duration::from_secs(2 * 3_600)), ..TrackerConfig::DEFAULT };
        let id = SessionId::new("s-1").unwrap();
        let mut t = Tracker::for_session(id.clone());
        let waiting = Snapshot::new(Status::Waiting, at(0), expires, None).unwrap();
        let _ = t.observe_read(&config, &waiting, at(1_000)).unwrap();
        // The read at the deadline finds it abandoned: the disable, asked once, and a read at
        // once after it.
        let r = t.observe_read(&config, &waiting, at(2 * H)).unwrap();
        prop_assert_eq!(new_actions(&t, &r).collect::<Vec<_>>(), vec![Action::Disable]);
        let next = t.next_read(&config, at(2 * H)).unwrap();
        prop_assert_eq!(next.urgency, Urgency::Confirm);
        prop_assert!(next.at <= at(2 * H + 10_000));
        // What really happened a moment later: paid at 2 h + 1 s, or disabled then.
        let end = if paid_first {
            Snapshot::new(Status::Completed, at(2 * H + 1_000), expires, Some(Completion::authorized("tok").unwrap())).unwrap()
        } else {
            Snapshot::new(Status::Disabled, at(2 * H + 1_000), expires, None).unwrap()
        };
        let answer = if paid_first { DisableAnswer::AlreadyFinal } else { DisableAnswer::Disabled };
        let mut asked: Vec<Action> = Vec::new();
        let mut now = 2 * H + 1_000;
        for (step, gap) in order.into_iter().zip(gaps) {
            now += gap;
            let report = match step {
                // The read of the end, twice (a retried poll), a stale read of the old state,
                // the consumer's callback (unsigned), a redirect, and Klarna's answer to the
                // `DELETE`.
                0 | 1 => t.observe_read(&config, &end, at(now)).unwrap(),
                2 => t.observe_read(&config, &waiting, at(now)).unwrap(),
                3 => t.observe_callback(&config, Some("e-end"), &end, at(now)).unwrap(),
                4 => t.observe_redirect(&id, hpp_session::Redirect::Success, at(now)).unwrap(),
                _ => t.observe_disable_answer(&id, answer, at(now)).unwrap(),
            };
            asked.extend(new_actions(&t, &report));
        }
        if paid_first {
            prop_assert_eq!(asked.iter().map(Action::kind).collect::<Vec<_>>(), vec![ActionKind::PlaceOrder]);
        } else {
            prop_assert_eq!(asked, vec![Action::Release { reason: ReleaseReason::Disabled }]);
        }
        prop_assert!(!t.asked().contains(ActionKind::Release) || !paid_first);
        prop_assert!(!t.has_conflict());
        // The disable was done with its answer: only the money or the release is owed.
        prop_assert!(!t.owed().contains(ActionKind::Disable));
        prop_assert!(t.next_read(&config, at(now)).is_none());
    }
}

/// With a `first` under the gap, a verified callback of a change that arrives after the blind
/// read fell due leaves it due (it moved it 6 minutes later: the schedule restarted `first`
/// after the callback), and one that arrives before brings it no later than it was.
#[test]
fn a_verified_change_keeps_a_due_read_due_whatever_first_is() {
    let minutes = |m: u64| Duration::from_secs(60 * m);
    let config = TrackerConfig {
        reads: ReadPolicy::DEFAULT.with_first(minutes(5)).unwrap(),
        ..TrackerConfig::DEFAULT
    };
    let id = SessionId::new("s-1").unwrap();
    let expires = Some(at(48 * 3_600_000));
    let waiting = Snapshot::new(Status::Waiting, at(0), expires, None).unwrap();
    let mut t = Tracker::for_session(id.clone());
    let mut now = at(0);
    t.observe_read(&config, &waiting, now).unwrap();
    // Reads at 5, 10 and 20 minutes: the doubling after the change at 0.
    for _ in 0..3 {
        now = t.next_read(&config, now).unwrap().at;
        assert!(t.start_read(&config, now).is_some());
        t.observe_read(&config, &waiting, now).unwrap();
    }
    let due = t.next_read(&config, now).unwrap().at;
    let late = due.checked_add(minutes(1)).unwrap();
    assert!(t.next_read(&config, late).unwrap().is_due(late));
    let mut early = t.clone();
    // The consumer opens the page; the verified callback comes a minute after the read fell due.
    let ip = Snapshot::new(Status::InProgress, late, expires, None).unwrap();
    let proof = callback_secret_matches(&id, b"k", b"k").unwrap();
    t.observe_verified_callback(proof, None, &ip, late).unwrap();
    let after = t.next_read(&config, late).unwrap();
    assert!(
        after.is_due(late) && after.at <= due,
        "{after:?}, due at {due}"
    );
    // Before it fell due: never later than it was.
    let before_due = Timestamp::from_unix(due.unix_seconds() - 120, 0).unwrap();
    let ip = Snapshot::new(Status::InProgress, before_due, expires, None).unwrap();
    let proof = callback_secret_matches(&id, b"k", b"k").unwrap();
    early
        .observe_verified_callback(proof, None, &ip, before_due)
        .unwrap();
    assert!(early.next_read(&config, before_due).unwrap().at <= due);
}

/// The case, through the public API: a WAITING read at 12:44, then a verified
/// `IN_PROGRESS` callback of a change at 13:04:00 that arrives 25 s late. The next read stays
/// within the guarantee of the last read (it was 65 minutes after it: the callback restarted the
/// schedule from its arrival), and a read that fell due stays due when such a callback comes.
#[test]
fn a_late_verified_callback_never_puts_the_next_read_off() {
    let t = |s: &str| s.parse::<Timestamp>().unwrap();
    let id = SessionId::new("s1").unwrap();
    let expires = Some(t("2019-05-15T12:00:00Z"));
    let waiting = Snapshot::new(Status::Waiting, t("2019-05-13T12:00:00Z"), expires, None).unwrap();
    let in_progress =
        Snapshot::new(Status::InProgress, t("2019-05-13T13:04:00Z"), expires, None).unwrap();
    let mut tracker = Tracker::for_session(id.clone());
    tracker
        .observe_read(&CFG, &waiting, t("2019-05-13T12:44:00Z"))
        .unwrap();
    let before = tracker.next_read(&CFG, t("2019-05-13T12:44:00Z")).unwrap();
    // 45 minutes after the read, less the session's spread (at most 1/32 of it).
    assert!(before.at <= t("2019-05-13T13:29:00Z") && before.at > t("2019-05-13T13:27:35Z"));
    let checked = callback_secret_matches(&id, b"secret", b"secret").unwrap();
    tracker
        .observe_verified_callback(checked, Some("e1"), &in_progress, t("2019-05-13T13:04:25Z"))
        .unwrap();
    assert_eq!(tracker.status(), Some(Status::InProgress));
    let after = tracker.next_read(&CFG, t("2019-05-13T13:04:25Z")).unwrap();
    assert_eq!(after.at, before.at, "the callback put the read off");
    // Overdue at 13:50, and still due after another late verified callback.
    let overdue = t("2019-05-13T13:50:00Z");
    assert!(tracker.next_read(&CFG, overdue).unwrap().is_due(overdue));
    let back = Snapshot::new(Status::Back, t("2019-05-13T13:45:00Z"), expires, None).unwrap();
    let checked = callback_secret_matches(&id, b"secret", b"secret").unwrap();
    tracker
        .observe_verified_callback(checked, Some("e2"), &back, overdue)
        .unwrap();
    let still = tracker.next_read(&CFG, overdue).unwrap();
    assert!(still.is_due(overdue) && still.at == before.at, "{still:?}");
    // A verified body stamped in the future cannot put the time limit off either.
    let limited = TrackerConfig {
        abandon_after: Some(Duration::from_secs(20 * 60)),
        ..TrackerConfig::DEFAULT
    };
    let s2 = SessionId::new("s2").unwrap();
    let mut u = Tracker::created(s2.clone(), t("2019-05-13T12:00:00Z"));
    let future =
        Snapshot::new(Status::InProgress, t("2019-05-14T12:00:00Z"), expires, None).unwrap();
    let checked = callback_secret_matches(&s2, b"secret", b"secret").unwrap();
    u.observe_verified_callback(checked, None, &future, t("2019-05-13T12:05:00Z"))
        .unwrap();
    assert_eq!(
        u.next_read(&limited, t("2019-05-13T12:05:00Z")).unwrap().at,
        t("2019-05-13T12:25:00Z"),
        "the time limit counts from when the change was learned, not from its stamp"
    );
}

/// The fourth small trap: a 20-minute time limit on a session made with
/// `Tracker::created` is a read slot of its own, counted from creation: enforced at 20 minutes,
/// not at the first blind read 44 minutes in.
#[test]
fn the_time_limit_of_a_created_session_counts_from_its_creation() {
    let config = TrackerConfig {
        abandon_after: Some(Duration::from_secs(20 * 60)),
        ..TrackerConfig::DEFAULT
    };
    let id = SessionId::new("s-1").unwrap();
    let mut t = Tracker::created(id.clone(), at(0));
    let first = t.next_read(&config, at(0)).unwrap();
    assert_eq!(
        (first.at, first.urgency),
        (at(20 * 60_000), Urgency::Initial)
    );
    t.start_read(&config, first.at).unwrap();
    let waiting = Snapshot::new(Status::Waiting, at(0), Some(at(48 * 3_600_000)), None).unwrap();
    let r = t.observe_read(&config, &waiting, first.at).unwrap();
    assert_eq!(new_actions(&t, &r).collect::<Vec<_>>(), [Action::Disable]);
    // Klarna's 204 is evidence: the cart is released as disabled, no read needed after it.
    let r = t
        .observe_disable_answer(&id, DisableAnswer::Disabled, first.at)
        .unwrap();
    assert_eq!(
        new_actions(&t, &r).collect::<Vec<_>>(),
        [Action::Release {
            reason: ReleaseReason::Disabled
        }]
    );
    assert_eq!(t.owed().iter().collect::<Vec<_>>(), [ActionKind::Release]);
    assert_eq!(t.next_read(&config, first.at), None);
    // Even if every later read fails, and a 404 comes at expiry: released once, as disabled.
    t.done(ActionId::new(&id, ActionKind::Release)).unwrap();
    let r = t.observe_not_found(at(48 * 3_600_000)).unwrap();
    assert!(r.newly_owed().is_empty());
    assert!(t.settled().is_some());
    // A later real `DISABLED` read is the same change, not a conflict.
    let disabled = Snapshot::new(
        Status::Disabled,
        at(20 * 60_000 + 5),
        Some(at(48 * 3_600_000)),
        None,
    )
    .unwrap();
    let mut u = Tracker::created(id.clone(), at(0));
    u.observe_disable_answer(&id, DisableAnswer::Disabled, at(20 * 60_000))
        .unwrap();
    let r = u
        .observe_read(&config, &disabled, at(20 * 60_000 + 10))
        .unwrap();
    assert!(r.newly_owed().is_empty() && !u.has_conflict(), "{r:?}");
    assert_eq!(u.state().updated_at, Some(at(20 * 60_000 + 5)));
}

/// The storm: a poller on a 1 s tick that takes due reads and never reports what they
/// answered (a 404 the tracker refuses, a 5xx it skips) read a session 3,600 times an hour.
/// With reads handed out by `start_read`, an unanswered read counts as failed after
/// `READ_TIMEOUT` and backs off: about once a minute at most.
#[test]
fn a_poller_that_never_reports_answers_does_not_storm() {
    let id = SessionId::new("s-1").unwrap();
    let mut t = Tracker::for_session(id);
    let mut reads = Vec::new();
    for second in 0..3_600u64 {
        let now = at(second * 1_000);
        if t.start_read(&CFG, now).is_some() {
            reads.push(second);
            // ... and nothing is ever reported.
        }
        assert!(
            t.start_read(&CFG, now).is_none(),
            "two reads handed out at {second} s"
        );
    }
    let gaps: Vec<u64> = reads.windows(2).map(|w| w[1] - w[0]).collect();
    assert!(
        reads.len() <= 60,
        "{} reads in an hour: {gaps:?}",
        reads.len()
    );
    assert!(gaps.iter().all(|&g| g > READ_TIMEOUT.as_secs()), "{gaps:?}");
    // Once the back-off reached its ceiling, a read about every 90 s.
    assert!(gaps.iter().rev().take(20).all(|&g| g <= 91), "{gaps:?}");
    // A reported answer (to the read still in flight) ends it: the schedule goes on as if the
    // failures had not been.
    let now = at(3_600_000);
    assert!(t.read_in_flight().is_some());
    let waiting = Snapshot::new(Status::Waiting, at(0), Some(at(48 * 3_600_000)), None).unwrap();
    let _ = t.observe_read(&CFG, &waiting, now).unwrap();
    assert_eq!(t.read_in_flight(), None);
    assert_eq!(t.next_read(&CFG, now).unwrap().urgency, Urgency::Blind);
}

/// The tried case: a WAITING session read at its first slot answered that slot forever;
/// a cron poller with ticks of 1, 7, 60 and 300 s read it once in 24 hours. Now each reads it
/// at least every `detect_within` plus a tick.
#[test]
fn a_cron_poller_reads_a_waiting_session_all_day() {
    for tick in [1u64, 7, 60, 300] {
        let id = SessionId::new("s-1").unwrap();
        let mut t = Tracker::for_session(id);
        let waiting =
            Snapshot::new(Status::Waiting, at(0), Some(at(48 * 3_600_000)), None).unwrap();
        let mut reads = 0;
        for k in 0..(24 * 3_600 / tick) {
            let now = at(k * tick * 1_000);
            if t.start_read(&CFG, now).is_some() {
                let _ = t.observe_read(&CFG, &waiting, now).unwrap();
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
    assert!(
        !t.next_read(&CFG, now).unwrap().is_due(now),
        "due again at {now}"
    );
}

/// The longest `detect_within` accepted is 55 minutes, the figure its docs and the README quote:
/// a second more is refused, and 55 minutes with a poller's lag fits the token's hour.
#[test]
fn detect_within_is_capped_at_55_minutes() {
    assert_eq!(MAX_DETECT_WITHIN, Duration::from_secs(55 * 60));
    // What the 5 minutes it leaves hold for the order itself: 2 minutes, as documented.
    assert_eq!(PLACE_ORDER_MARGIN, Duration::from_secs(2 * 60));
    assert!(
        ReadPolicy::DEFAULT
            .with_detect_within(MAX_DETECT_WITHIN)
            .is_ok()
    );
    let over = MAX_DETECT_WITHIN + Duration::from_secs(1);
    assert!(ReadPolicy::DEFAULT.with_detect_within(over).is_err());
}
