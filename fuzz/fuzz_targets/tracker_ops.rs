//! Any sequence of what a caller does to one tracker, under any policy the setters accept,
//! changed at any time: observations of every kind (reads, hints, verified callbacks, 404s,
//! redirects, disable answers), reads handed out and never answered, failures, actions reported
//! done (right, wrong, twice), and stores and restores. Checked after every step:
//! - nothing panics; a refused call changes nothing;
//! - what is owed was asked, and has its data; `settled()` only when nothing is owed;
//! - a read handed out is not handed out again for the same slot;
//! - after an answered read (and no failure or read in flight since), the next read is never
//!   later than that read plus the blind gap, whatever arrives (the guarantee);
//! - a tracker stored and restored is the tracker (what it owes and its read in flight too).
#![no_main]

use core::time::Duration;

use hpp_session::{
    ActionId, ActionKind, Completion, CompletionProblem, DisableAnswer, ReadFailure, ReadPolicy,
    Redirect, SessionId, Snapshot, Status, Timestamp, Tracker, TrackerConfig,
    callback_secret_matches,
};
use libfuzzer_sys::arbitrary::{self, Arbitrary};
use libfuzzer_sys::fuzz_target;

#[derive(Arbitrary, Debug)]
struct Body {
    status: u8,
    /// Seconds after the base instant.
    updated_at: u32,
    expires_at: Option<u32>,
    completion: u8,
    other_session: bool,
}

#[derive(Arbitrary, Debug)]
enum Op {
    Read(Body),
    Hint(Body, Option<u8>),
    /// A callback whose secret matched; `true`: the secret of another session.
    Verified(Body, bool),
    NotFound,
    Redirect(u8, bool),
    Disable(u8, bool),
    StartRead,
    Failure(u8, u16),
    Done(u8, bool),
    StoreRestore,
    /// A new policy: detect within `minutes`, lag `seconds`, time limit `minutes`, the first
    /// read after a change `seconds` after it.
    Policy(u8, u16, Option<u16>, Option<u16>),
}

#[derive(Arbitrary, Debug)]
struct Input {
    created: bool,
    steps: Vec<(u16, Op)>,
}

const BASE: i64 = 1_557_759_103;

fn t(secs: u32) -> Timestamp {
    Timestamp::from_unix(BASE + i64::from(secs), 0).expect("in range")
}

fn snapshot(b: &Body) -> Snapshot {
    let status = Status::ALL[usize::from(b.status) % Status::COUNT];
    let completion = (status == Status::Completed).then(|| match b.completion % 4 {
        0 => Completion::authorized("token-a").expect("an id"),
        1 => Completion::authorized("token-b").expect("an id"),
        2 => Completion::order_placed("order", "REF").expect("ids"),
        _ => Completion::Unusable(CompletionProblem::Missing),
    });
    let s = Snapshot::new(status, t(b.updated_at), b.expires_at.map(t), completion)
        .expect("consistent");
    let id = if b.other_session { "s-2" } else { "s-1" };
    s.of_session(SessionId::new(id).expect("an id"))
}

fn policy(minutes: u8, lag: u16, limit: Option<u16>, first: Option<u16>) -> Option<TrackerConfig> {
    let mut reads = ReadPolicy::DEFAULT
        .with_detect_within(Duration::from_secs(60 * u64::from(minutes % 60 + 1)))
        .ok()?
        .with_poll_lag(Duration::from_secs(u64::from(lag % 3_600)))
        .ok()?;
    if let Some(first) = first {
        reads = reads
            .with_first(Duration::from_secs(u64::from(first % 3_600)))
            .ok()?;
    }
    Some(TrackerConfig {
        reads,
        abandon_after: limit.map(|m| Duration::from_secs(60 * u64::from(m % 600 + 1))),
        ..TrackerConfig::DEFAULT
    })
}

fuzz_target!(|input: Input| {
    let mine = SessionId::new("s-1").expect("an id");
    let other = SessionId::new("s-2").expect("an id");
    let mut config = TrackerConfig::DEFAULT;
    let mut tracker = if input.created {
        Tracker::created(mine.clone(), t(0))
    } else {
        Tracker::for_session(mine.clone())
    };
    let mut now = 0u32;
    // The last read answered with no failure and no read in flight since: what the guarantee
    // counts from.
    let mut clean_read: Option<Timestamp> = input.created.then(|| t(0));
    for (advance, op) in &input.steps {
        let was_due = tracker
            .next_read(&config, t(now))
            .is_some_and(|r| r.is_due(t(now)));
        now = now.saturating_add(u32::from(*advance));
        let at = t(now);
        let before = tracker.clone();
        match op {
            Op::Read(b) => {
                let in_flight = tracker.read_in_flight();
                match tracker.observe_read(&config, &snapshot(b), at) {
                    Ok(_) => clean_read = Some(in_flight.map_or(at, |s| s.min(at))),
                    Err(_) => assert_eq!(tracker, before, "a refused read changed the tracker"),
                }
            }
            Op::Hint(b, event) => {
                let event = event.map(|e| [b'e', b'0' + e % 10]);
                let event = event.as_ref().map(|e| core::str::from_utf8(e).expect("ascii"));
                if tracker.observe_callback(&config, event, &snapshot(b), at).is_err() {
                    assert_eq!(tracker, before, "a refused hint changed the tracker");
                }
                assert_eq!(tracker.state().status, before.state().status);
                assert_eq!(tracker.owed(), before.owed(), "a hint asked for something");
                assert!(!tracker.has_conflict() || before.has_conflict(), "a hint paged a person");
            }
            Op::Verified(b, wrong) => {
                let proved = if *wrong { &other } else { &mine };
                let checked = callback_secret_matches(proved, b"s", b"s").expect("equal");
                match tracker.observe_verified_callback(checked, None, &snapshot(b), at) {
                    Err(_) => assert_eq!(tracker, before),
                    Ok(_) => assert!(!*wrong, "another session's secret was taken as proof"),
                }
            }
            Op::NotFound => {
                if tracker.observe_not_found(at).is_err() {
                    assert_eq!(tracker, before, "a refused 404 changed the tracker");
                }
            }
            Op::Redirect(which, wrong) => {
                let r = Redirect::ALL[usize::from(*which) % Redirect::ALL.len()];
                let id = if *wrong { &other } else { &mine };
                if tracker.observe_redirect(id, r, at).is_err() {
                    assert_eq!(tracker, before);
                }
                assert_eq!(tracker.owed(), before.owed());
            }
            Op::Disable(which, wrong) => {
                let answer = [
                    DisableAnswer::Disabled,
                    DisableAnswer::AlreadyFinal,
                    DisableAnswer::NotFound,
                ][usize::from(*which) % 3];
                let id = if *wrong { &other } else { &mine };
                if tracker.observe_disable_answer(id, answer, at).is_err() {
                    assert_eq!(tracker, before);
                }
            }
            Op::StartRead => {
                if tracker.start_read(&config, at).is_some() {
                    clean_read = None;
                    // Handed out once: not again for this slot.
                    assert!(tracker.start_read(&config, at).is_none(), "handed out twice");
                }
            }
            Op::Failure(kind, reset) => {
                let failure = match kind % 4 {
                    0 => ReadFailure::RateLimited {
                        reset: Some(Duration::from_millis(u64::from(*reset))),
                    },
                    1 => ReadFailure::ServerError,
                    2 => ReadFailure::Timeout,
                    _ => ReadFailure::Unexpected,
                };
                tracker.observe_read_failure(failure, at);
                clean_read = None;
            }
            Op::Done(kind, wrong) => {
                let kind = ActionKind::ALL[usize::from(*kind) % ActionKind::ALL.len()];
                let id = if *wrong { &other } else { &mine };
                match tracker.done(ActionId::new(id, kind)) {
                    Ok(()) => {
                        assert!(!tracker.owed().contains(kind));
                        // Twice is once.
                        let once = tracker.clone();
                        tracker.done(ActionId::new(id, kind)).expect("done again");
                        assert_eq!(tracker, once);
                    }
                    Err(_) => assert_eq!(tracker, before, "a refused done changed the tracker"),
                }
            }
            Op::StoreRestore => {
                let json = serde_json::to_string(&tracker).expect("serializes");
                let back: Tracker = serde_json::from_str(&json).expect("restores");
                assert_eq!(back, tracker);
                tracker = back;
            }
            Op::Policy(minutes, lag, limit, first) => {
                if let Some(p) = policy(*minutes, *lag, *limit, *first) {
                    config = p;
                }
            }
        }
        // What is owed was asked, and has its data; settled only when nothing is owed.
        assert!(tracker.owed().without(tracker.asked()).is_empty());
        assert!(tracker.owed().iter().all(|k| tracker.action(k).is_some()));
        assert!(tracker.settled().is_none() || tracker.owed().is_empty());
        // A read that fell due stays due until a read is started or answered (or fails), the
        // policy changes, or no read is needed any more: nothing else puts it off.
        let reads = matches!(
            op,
            Op::Read(_) | Op::NotFound | Op::StartRead | Op::Failure(..) | Op::Policy(..)
        );
        if was_due && !reads {
            if let Some(next) = tracker.next_read(&config, at) {
                assert!(next.is_due(at), "{op:?} put off a due read: {next:?} at {at}");
            }
        }
        // The guarantee: never later than the clean read plus the blind gap.
        if let (Some(read), Some(next)) = (clean_read, tracker.next_read(&config, at)) {
            let latest = read.saturating_add(config.reads.blind_gap());
            assert!(next.at <= latest, "{next:?} after {latest} ({config:?})");
        }
    }
});
