//! The traps of issue 21, each written as a newcomer writes it from the README and rustdoc
//! alone: a dropped report, an answer never reported, a mixed-up session id, forged callbacks
//! aimed at the review queue, a thousand sessions refused by one 429. None may lose an action,
//! storm Klarna, or flag a person.
#![cfg(feature = "serde")]

mod common;

use core::time::Duration;

use common::{CFG, at};
use hpp_session::{
    Action, ActionId, ActionKind, Completion, ReadFailure, Refused, SessionId, Snapshot, Status,
    Timestamp, Tracker,
};

const EXPIRES: u64 = 48 * 3_600_000;

fn paid(id: &str) -> Snapshot {
    let token = Completion::authorized("a1a8f727-2756-6058-bd3c-40069be0994b").unwrap();
    Snapshot::new(
        Status::Completed,
        at(60_000),
        Some(at(EXPIRES)),
        Some(token),
    )
    .unwrap()
    .of_session(SessionId::new(id).unwrap())
}

fn waiting() -> Snapshot {
    Snapshot::new(Status::Waiting, at(0), Some(at(EXPIRES)), None).unwrap()
}

/// `let _ = tracker.observe_read(..)`, `.ok();` and `.is_ok()` compile without a warning: each
/// dropped the only copy of the `PlaceOrder` before. Now the order stays owed in the tracker (and
/// in whatever stores it) until it is reported done.
#[test]
fn a_dropped_report_loses_no_order() {
    let id = SessionId::new("s-1").unwrap();
    for style in 0..3 {
        let mut tracker = Tracker::for_session(id.clone());
        let now = at(61_000);
        match style {
            0 => {
                let _ = tracker.observe_read(&CFG, &paid("s-1"), now);
            }
            1 => {
                tracker.observe_read(&CFG, &paid("s-1"), now).ok();
            }
            _ => assert!(tracker.observe_read(&CFG, &paid("s-1"), now).is_ok()),
        }
        // Stored and loaded again, as a handler does between requests.
        let stored = serde_json::to_string(&tracker).unwrap();
        let mut loaded: Tracker = serde_json::from_str(&stored).unwrap();
        let action = loaded.next_action();
        assert!(
            matches!(action, Some(Action::PlaceOrder { .. })),
            "style {style}: {action:?}"
        );
        // Asking again does not lose it either: it is owed until done.
        assert_eq!(loaded.next_action(), action);
        loaded.done(action.unwrap().id(&id)).unwrap();
        assert_eq!(loaded.next_action(), None);
        assert!(loaded.settled().is_some());
    }
}

/// A 404 the tracker refuses (the `let _` a newcomer writes for a `Result` they do not know what
/// to do with), and a 5xx the poller skips, left the read due: a 1 s tick read that session 3,600
/// times an hour. A read handed out with `start_read` and never answered counts as failed after
/// `READ_TIMEOUT` instead.
#[test]
fn a_refused_404_or_a_skipped_5xx_does_not_storm() {
    for answer in ["refused 404", "skipped 5xx"] {
        let id = SessionId::new("s-1").unwrap();
        // The merchant's id is wrong, or the credentials: every read answers 404 or 500.
        let mut tracker = Tracker::created(id, at(0));
        let mut reads = 0;
        for second in 0..3_600u64 {
            let now = at(45 * 60_000 + second * 1_000);
            if tracker.start_read(&CFG, now).is_none() {
                continue;
            }
            reads += 1;
            if answer == "refused 404" {
                let _ = tracker.observe_not_found(now);
            }
        }
        assert!(reads <= 60, "{answer}: {reads} reads in an hour");
    }
}

/// A handler that mixes up session ids (the executor loads the wrong row) must not mark another
/// session's order placed: the tracker refuses the id and keeps owing its order.
#[test]
fn a_mixed_up_session_id_marks_nothing_done() {
    let mine = SessionId::new("s-1").unwrap();
    let other = SessionId::new("s-2").unwrap();
    let mut tracker = Tracker::for_session(mine.clone());
    let _ = tracker.observe_read(&CFG, &paid("s-1"), at(61_000));
    let before = tracker.clone();
    let err = tracker
        .done(ActionId::new(&other, ActionKind::PlaceOrder))
        .unwrap_err();
    assert!(matches!(err, Refused::OtherSession(_)), "{err}");
    assert_eq!(tracker, before);
    // Nor mark done what was never asked.
    let err = tracker
        .done(ActionId::new(&mine, ActionKind::Release))
        .unwrap_err();
    assert_eq!(err, Refused::NotAsked(ActionKind::Release));
    assert_eq!(
        err.to_string(),
        "`release` reported done, but this session's tracker never asked for it: refused"
    );
    assert_eq!(tracker, before);
    assert!(matches!(
        tracker.next_action(),
        Some(Action::PlaceOrder { .. })
    ));
}

/// Forged callbacks aimed at the review queue: an unsigned `COMPLETED` after a confirmed
/// `CANCELLED`, and the same forgeries before the read that shows them false. Neither order
/// flags the session for a person; the tracker counts the refuted claims.
#[test]
fn forged_callbacks_fill_no_review_queue() {
    let cancelled = Snapshot::new(Status::Cancelled, at(10_000), Some(at(EXPIRES)), None).unwrap();
    let forged = |k: u64| {
        let token = Completion::authorized("forged").unwrap();
        Snapshot::new(Status::Completed, at(20_000 + k), None, Some(token)).unwrap()
    };
    // The read first, then the forgeries.
    let mut after = Tracker::default();
    let _ = after.observe_read(&CFG, &cancelled, at(11_000));
    // The forgeries first, then the read.
    let mut before = Tracker::default();
    for k in 0..10 {
        let _ = after.observe_callback(&CFG, None, &forged(k), at(30_000 + k));
        let _ = before.observe_callback(&CFG, None, &forged(k), at(30_000 + k));
    }
    let _ = before.observe_read(&CFG, &cancelled, at(31_000));
    for t in [&after, &before] {
        assert!(!t.has_conflict(), "a person was paged for forgeries");
        assert!(t.refuted_claims() >= 1, "{}", t.refuted_claims());
        assert_eq!(
            t.actions().collect::<Vec<_>>(),
            [Action::Release {
                reason: hpp_session::ReleaseReason::Cancelled
            }]
        );
    }
}

/// After a 429 with `X-Ratelimit-Reset: 1`, a thousand sessions refused in one window all came
/// back at exactly the reset instant. Klarna asks for jitter: they spread over the second after
/// the reset, none before it.
#[test]
fn a_thousand_sessions_refused_together_come_back_spread_over_the_second_after_the_reset() {
    let now = at(45 * 60_000);
    let reset = now.checked_add(Duration::from_secs(1)).unwrap();
    let mut retries: Vec<Timestamp> = (0..1_000)
        .map(|k| {
            let id = SessionId::new(&format!("session-{k:04}")).unwrap();
            let mut t = Tracker::for_session(id);
            let _ = t.observe_read(&CFG, &waiting(), at(0));
            t.start_read(&CFG, now).unwrap();
            t.observe_read_failure(
                ReadFailure::RateLimited {
                    reset: Some(Duration::from_secs(1)),
                },
                now,
            );
            t.next_read(&CFG, now).unwrap().at
        })
        .collect();
    retries.sort();
    assert!(retries[0] >= reset, "a retry before the reset");
    let end = reset.checked_add(Duration::from_secs(1)).unwrap();
    assert!(retries[999] < end, "a retry long after the reset");
    // Spread: no millisecond holds more than a handful of them, and every tenth of the second
    // after the reset gets some.
    let mut per_ms = std::collections::BTreeMap::new();
    for r in &retries {
        *per_ms.entry(*r).or_insert(0) += 1;
    }
    assert!(
        per_ms.values().all(|&n| n <= 8),
        "{:?}",
        per_ms.values().max()
    );
    for tenth in 0..10u64 {
        let from = reset
            .checked_add(Duration::from_millis(tenth * 100))
            .unwrap();
        let to = from.checked_add(Duration::from_millis(100)).unwrap();
        assert!(
            retries.iter().any(|&r| r >= from && r < to),
            "nothing in tenth {tenth}"
        );
    }
}
