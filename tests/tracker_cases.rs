//! Named tracker scenarios: conflicts, trust, expiry, the read schedule, de-duplication, and
//! the callback secret.

mod common;

use core::time::Duration;

use common::{CFG, at, new_actions};
use hpp_session::{
    Action, ActionId, ActionKind, ActionSet, Claim, Completion, CompletionProblem, ConflictKind,
    DEFAULT_MAX_CLOCK_SKEW, FutureHint, MAX_DETECT_WITHIN, MAX_READ_BACKOFF, MIN_READ_INTERVAL,
    NextRead, NotFoundError, Outcome, PolicyError, ReadFailure, ReadPolicy, Refused, ReleaseReason,
    SessionId, Snapshot, Status, Timestamp, Tracker, TrackerConfig, Urgency,
    callback_secret_matches,
};
use proptest::prelude::*;

const EXPIRES: u64 = 48 * 3_600_000;

fn snap(status: Status, t: u64) -> Snapshot {
    let completion = (status == Status::Completed)
        .then(|| Completion::authorized("a1a8f727-2756-6058-bd3c-40069be0994b").unwrap());
    Snapshot::new(status, at(t), Some(at(EXPIRES)), completion).unwrap()
}

fn token(t: &str, at_ms: u64) -> Snapshot {
    let c = Completion::authorized(t).unwrap();
    Snapshot::new(Status::Completed, at(at_ms), Some(at(EXPIRES)), Some(c)).unwrap()
}

fn kinds(r: &hpp_session::Report) -> Vec<&'static str> {
    r.newly_owed().iter().map(ActionKind::as_str).collect()
}

/// What a hint claiming a final status does: it asks for nothing, and makes a read urgent.
fn assert_claim_reads_at_once(t: &Tracker, r: &hpp_session::Report) {
    assert!(kinds(r).is_empty(), "a hint asked for {:?}", kinds(r));
    assert_eq!(
        t.next_read(&CFG, Timestamp::MAX).map(|n| n.urgency),
        Some(Urgency::Confirm)
    );
}

#[test]
fn the_sample_journey_asks_each_action_once() {
    let mut t = Tracker::default();
    let r = t
        .observe_read(&CFG, &snap(Status::Waiting, 0), at(1))
        .unwrap();
    assert_eq!(
        r.outcome(),
        Outcome::Advanced {
            from: None,
            to: Status::Waiting,
            skipped: false
        }
    );
    // An unsigned callback: a claim, awaiting confirmation; the confirmed status stays.
    let r = t
        .observe_callback(&CFG, Some("e1"), &snap(Status::InProgress, 10), at(11))
        .unwrap();
    assert_eq!(r.outcome(), Outcome::Claimed(Status::InProgress));
    assert_eq!(t.status(), Some(Status::Waiting));
    assert_eq!(t.claim(), Some(Claim::new(Status::InProgress, at(10))));
    assert_eq!(
        t.claim().unwrap().to_string(),
        "IN_PROGRESS at 2019-05-13T14:52:57.550Z (unconfirmed)"
    );
    // e2 (BACK at 20) is lost; the consumer comes back at 30.
    let r = t
        .observe_callback(&CFG, Some("e3"), &snap(Status::InProgress, 30), at(31))
        .unwrap();
    assert_eq!(r.outcome(), Outcome::Claimed(Status::InProgress));
    // e1 again (Klarna's retry): a duplicate, even though it is older than what is claimed.
    assert_eq!(
        t.observe_callback(&CFG, Some("e1"), &snap(Status::InProgress, 10), at(32))
            .unwrap()
            .outcome(),
        Outcome::Duplicate
    );
    // A read that was on its way before: it moves the confirmed state, the newer claim stays.
    let r = t
        .observe_read(&CFG, &snap(Status::InProgress, 10), at(33))
        .unwrap();
    assert_eq!(
        r.outcome(),
        Outcome::Advanced {
            from: Some(Status::Waiting),
            to: Status::InProgress,
            skipped: false
        }
    );
    assert_eq!(t.claim(), Some(Claim::new(Status::InProgress, at(30))));
    // COMPLETED by callback: a hint; asks for a read at once, no money yet.
    let r = t
        .observe_callback(&CFG, Some("e4"), &snap(Status::Completed, 40), at(41))
        .unwrap();
    assert_eq!(r.outcome(), Outcome::Claimed(Status::Completed));
    assert_claim_reads_at_once(&t, &r);
    // Due at once, but a hint's read comes at most one every 10 s: the last read was at 33 ms.
    assert_eq!(
        t.next_read(&CFG, at(41)),
        Some(NextRead {
            at: at(10_033),
            urgency: Urgency::Confirm
        })
    );
    // The same claim again, under another event id: a duplicate of the claim, not stale news.
    let before = t.clone();
    let r = t
        .observe_callback(&CFG, Some("e4-again"), &snap(Status::Completed, 40), at(41))
        .unwrap();
    assert_eq!(r.outcome(), Outcome::Duplicate);
    assert_eq!(t, before);
    // The read confirms: place the order, by authorization + 60 min.
    let r = t
        .observe_read(&CFG, &snap(Status::Completed, 40), at(42))
        .unwrap();
    assert_eq!(r.outcome(), Outcome::Confirmed(Status::Completed));
    let actions: Vec<Action> = new_actions(&t, &r).collect();
    assert_eq!(actions.len(), 1);
    let Action::PlaceOrder {
        authorization_token,
        place_by,
    } = &actions[0]
    else {
        panic!("{actions:?}")
    };
    assert_eq!(
        authorization_token.expose_secret(),
        "a1a8f727-2756-6058-bd3c-40069be0994b"
    );
    assert_eq!(*place_by, Some(at(40 + 3_600_000)));
    assert_eq!(
        actions[0].to_string(),
        "place the order with <redacted> by 2019-05-13T15:52:57.580Z"
    );
    assert_eq!(t.claim(), None);
    // Everything after: duplicates, no actions, no reads.
    assert_eq!(
        t.observe_read(&CFG, &snap(Status::Completed, 40), at(50))
            .unwrap()
            .outcome(),
        Outcome::Duplicate
    );
    assert_eq!(
        t.observe_callback(&CFG, Some("e4"), &snap(Status::Completed, 40), at(51))
            .unwrap()
            .outcome(),
        Outcome::Duplicate
    );
    assert_eq!(t.next_read(&CFG, at(50)), None);
    // 404 after expiry: nothing more to do for a paid session.
    let r = t.observe_not_found(at(EXPIRES)).unwrap();
    assert_eq!((r.outcome(), kinds(&r).len()), (Outcome::Expired, 0));
}

#[test]
fn an_authorization_wins_over_a_cancel_in_either_order() {
    for order in [[0, 1], [1, 0]] {
        let seen = [snap(Status::Cancelled, 50), token("tok", 40)];
        let mut t = Tracker::default();
        let mut asked = Vec::new();
        let mut outcomes = Vec::new();
        for i in order {
            let r = t.observe_read(&CFG, &seen[i], at(60)).unwrap();
            outcomes.push(r.outcome());
            asked.extend(new_actions(&t, &r).map(|a| a.kind().as_str()));
        }
        assert_eq!(t.status(), Some(Status::Completed), "{order:?}");
        assert!(t.has_conflict());
        assert!(matches!(
            outcomes[1],
            Outcome::Conflict {
                kind: ConflictKind::TwoFinals,
                ..
            }
        ));
        assert!(asked.contains(&"place_order"), "{order:?}: {asked:?}");
    }
}

#[test]
fn two_tokens_conflict_and_only_one_order_is_asked_for() {
    let mut t = Tracker::default();
    assert_eq!(
        kinds(&t.observe_read(&CFG, &token("tok-a", 40), at(50)).unwrap()),
        ["place_order"]
    );
    let r = t.observe_read(&CFG, &token("tok-b", 40), at(51)).unwrap();
    assert!(matches!(
        r.outcome(),
        Outcome::Conflict {
            kind: ConflictKind::TwoCompletions,
            ..
        }
    ));
    assert_eq!(kinds(&r).len(), 0);
    assert!(r.outcome().to_string().starts_with("conflict: COMPLETED"));
    assert!(t.has_conflict());
}

/// The issue's first report: a forged `COMPLETED` callback must not block the real one.
#[test]
fn a_forged_completion_neither_pays_nor_blocks_the_real_one() {
    let mut t = Tracker::default();
    let _ = t
        .observe_read(&CFG, &snap(Status::InProgress, 0), at(1))
        .unwrap();
    // Stamped hours ahead: refused, nothing changes.
    let before = t.clone();
    let err = t
        .observe_callback(&CFG, Some("forged-1"), &token("ffff", 9 * 3_600_000), at(2))
        .unwrap_err();
    assert_eq!(
        err,
        Refused::FutureHint(FutureHint {
            updated_at: at(9 * 3_600_000),
            now: at(2),
            max_clock_skew: DEFAULT_MAX_CLOCK_SKEW
        })
    );
    assert_eq!(
        err.to_string(),
        "unsigned callback stamped 2019-05-13T23:52:57.540Z, more than 60s after now (2019-05-13T14:52:57.542Z): refused"
    );
    assert_eq!(t, before);
    // Stamped just inside the tolerance, with another token: a claim, never money.
    let r = t
        .observe_callback(&CFG, Some("forged-2"), &token("ffff", 60_002), at(3))
        .unwrap();
    assert_claim_reads_at_once(&t, &r);
    // The real authorization, by callback then by read: the read places the real token.
    let real = token("a1a8f727", 30_000);
    let r = t
        .observe_callback(&CFG, Some("real-1"), &real, at(30_500))
        .unwrap();
    assert_eq!(r.outcome(), Outcome::Stale, "below the forged claim");
    let r = t.observe_read(&CFG, &real, at(31_000)).unwrap();
    let actions: Vec<Action> = new_actions(&t, &r).collect();
    assert!(
        matches!(&actions[..], [Action::PlaceOrder { authorization_token, .. }] if authorization_token.expose_secret() == "a1a8f727"),
        "{actions:?}"
    );
    // The forged claim is hidden and counted; no person is paged for it.
    assert_eq!(t.claim(), None);
    assert!(!t.has_conflict());
    assert_eq!(t.refuted_claims(), 1);
    assert_eq!(t.next_read(&CFG, at(31_000)), None);
}

#[test]
fn a_forged_final_claim_is_hidden_by_a_newer_read_and_decides_nothing() {
    let mut t = Tracker::default();
    let r = t
        .observe_callback(&CFG, None, &snap(Status::Completed, 20), at(21))
        .unwrap();
    assert_claim_reads_at_once(&t, &r);
    assert_eq!(t.status(), None);
    assert!(!t.is_confirmed());
    let r = t
        .observe_read(&CFG, &snap(Status::InProgress, 25), at(26))
        .unwrap();
    // The read that shows the claim false moves the state, and counts the refuted claim: a
    // sign of forgery, not a conflict for a person.
    assert_eq!(
        r.outcome(),
        Outcome::Advanced {
            from: None,
            to: Status::InProgress,
            skipped: false,
        }
    );
    assert_eq!(kinds(&r).len(), 0, "no money from a refuted callback");
    assert!(!t.has_conflict());
    assert_eq!(t.refuted_claims(), 1);
    assert_eq!(t.status(), Some(Status::InProgress));
    assert_eq!(t.claim(), None);
    assert!(t.is_confirmed());
    // The reverse order meets the same contradiction.
    let mut u = Tracker::default();
    let _ = u
        .observe_read(&CFG, &snap(Status::InProgress, 25), at(26))
        .unwrap();
    let r = u
        .observe_callback(&CFG, None, &snap(Status::Completed, 20), at(27))
        .unwrap();
    assert_eq!(
        r.outcome(),
        Outcome::Refuted {
            known: Status::InProgress,
            claimed: Status::Completed,
            kind: ConflictKind::CannotFollow
        }
    );
    assert_eq!(r.outcome().as_str(), "refuted");
    assert_eq!(kinds(&r).len(), 0);
    assert_eq!(t.state(), u.state());
    assert!(!u.has_conflict());
    assert_eq!(u.refuted_claims(), 1);
}

/// The issue's second report: a forged hint's `expires_at` must not turn a stray 404 into an
/// expiry, and a forged cancel must not release the cart or stop the reads.
#[test]
fn a_forged_expiry_or_cancel_never_releases_the_cart() {
    let mut t = Tracker::default();
    let _ = t
        .observe_read(&CFG, &snap(Status::InProgress, 0), at(1))
        .unwrap();
    let forged = Snapshot::new(Status::Cancelled, at(5), Some(at(3)), None).unwrap();
    let r = t
        .observe_callback(&CFG, Some("forged"), &forged, at(10))
        .unwrap();
    assert_claim_reads_at_once(&t, &r);
    let before = t.clone();
    assert_eq!(
        t.observe_not_found(at(20)).unwrap_err(),
        NotFoundError {
            now: at(20),
            expires_at: Some(at(EXPIRES))
        }
    );
    assert_eq!(t, before);
    assert!(t.next_read(&CFG, at(20)).is_some());
    // The consumer went back, then paid: the forged cancel decides nothing.
    let _ = t
        .observe_read(&CFG, &snap(Status::Back, 30), at(31))
        .unwrap();
    let r = t
        .observe_read(&CFG, &snap(Status::Completed, 60), at(61))
        .unwrap();
    assert_eq!(kinds(&r), ["place_order"]);
    assert_eq!(
        t.observe_not_found(at(EXPIRES)).unwrap().newly_owed(),
        ActionSet::EMPTY
    );
    assert!(!t.asked().contains(ActionKind::Release));
}

#[test]
fn a_status_that_cannot_follow_is_a_conflict() {
    let mut t = Tracker::default();
    let _ = t
        .observe_read(&CFG, &snap(Status::Failed, 10), at(11))
        .unwrap();
    let r = t
        .observe_read(&CFG, &snap(Status::Waiting, 20), at(21))
        .unwrap();
    assert!(matches!(
        r.outcome(),
        Outcome::Conflict {
            kind: ConflictKind::CannotFollow,
            ..
        }
    ));
}

/// The session the cases' proofs are for.
fn proved_session() -> SessionId {
    SessionId::new("39a1c773-bafd-754d-af1f-b30c592f1267").unwrap()
}

/// The proof a matched secret gives, for [`proved_session`].
fn checked() -> hpp_session::SecretMatched {
    callback_secret_matches(&proved_session(), b"5e55ac1e", b"5e55ac1e").unwrap()
}

/// A secret checked for one session proves nothing for another: a handler that checks the
/// secret of the session its URL names, then loads the tracker its body names (or the tracker
/// of another row), is refused and nothing changes; an unbound tracker is bound to the proof's
/// session, and a body naming another is refused.
#[test]
fn a_proof_for_one_session_is_refused_by_another_sessions_tracker() {
    let other = SessionId::new("00000000-0000-0000-0000-000000000000").unwrap();
    let theirs = || callback_secret_matches(&other, b"5e55ac1e", b"5e55ac1e").unwrap();
    let completed = snap(Status::Completed, 40);
    let mut mine = Tracker::for_session(proved_session());
    let before = mine.clone();
    let refused = mine
        .observe_verified_callback(theirs(), Some("e"), &completed, at(41))
        .unwrap_err();
    assert!(matches!(refused, Refused::OtherSession(_)), "{refused}");
    assert_eq!(mine, before);
    // The body names this session, the proof another's: refused too.
    let named = completed.clone().of_session(proved_session());
    let mut unbound = Tracker::new();
    let refused = unbound
        .observe_verified_callback(theirs(), Some("e"), &named, at(41))
        .unwrap_err();
    assert!(matches!(refused, Refused::OtherSession(_)), "{refused}");
    assert_eq!(unbound, Tracker::new());
    // An unbound tracker takes the proof's session, and then refuses another's.
    let r = unbound
        .observe_verified_callback(checked(), Some("e"), &completed, at(41))
        .unwrap();
    assert_eq!(kinds(&r), ["place_order"]);
    assert_eq!(unbound.session_id(), Some(&proved_session()));
    assert!(matches!(
        unbound.observe_verified_callback(theirs(), Some("f"), &completed, at(42)),
        Err(Refused::OtherSession(_))
    ));
}

#[test]
fn verified_callbacks_confirm_by_themselves() {
    let mut t = Tracker::default();
    let r = t
        .observe_verified_callback(checked(), Some("e"), &snap(Status::Completed, 40), at(41))
        .unwrap();
    assert_eq!(kinds(&r), ["place_order"]);
    assert_eq!(t.next_read(&CFG, at(41)), None);
}

/// A callback is evidence only through a matched secret: no secret, a wrong one, or an empty
/// issued one gives no proof, and the same callback observed plainly is a hint.
#[test]
fn only_a_matched_secret_makes_a_callback_evidence() {
    let s = proved_session();
    assert!(callback_secret_matches(&s, b"5e55ac1e", b"5e55ac1f").is_none());
    assert!(callback_secret_matches(&s, b"5e55ac1e", b"").is_none());
    assert!(
        callback_secret_matches(&s, b"", b"").is_none(),
        "an empty secret lets anyone in"
    );
    assert_eq!(
        format!("{:?}", checked()),
        "SecretMatched(39a1c773-bafd-754d-af1f-b30c592f1267)"
    );
    assert_eq!(checked().session_id(), &s);
    let mut t = Tracker::default();
    let r = t
        .observe_callback(&CFG, Some("e"), &snap(Status::Completed, 40), at(41))
        .unwrap();
    assert_claim_reads_at_once(&t, &r);
    assert_eq!(t.status(), None);
}

#[test]
fn an_order_placed_by_klarna_is_recorded_once() {
    let c = Completion::order_placed("93d644a2-43f3-11e9-b210-d663bd873d93", "X438HG0Q").unwrap();
    let s = Snapshot::new(Status::Completed, at(40), None, Some(c)).unwrap();
    let mut t = Tracker::default();
    let r = t.observe_read(&CFG, &s, at(41)).unwrap();
    let actions: Vec<String> = new_actions(&t, &r).map(|a| a.to_string()).collect();
    assert_eq!(
        actions,
        ["record order 93d644a2-43f3-11e9-b210-d663bd873d93 (X438HG0Q)"]
    );
    assert_eq!(
        t.observe_read(&CFG, &s, at(42)).unwrap().outcome(),
        Outcome::Duplicate
    );
}

#[test]
fn cancelled_and_disabled_release_the_cart_once_when_confirmed() {
    for (status, reason) in [
        (Status::Cancelled, ReleaseReason::Cancelled),
        (Status::Disabled, ReleaseReason::Disabled),
    ] {
        let mut t = Tracker::default();
        let r = t
            .observe_callback(&CFG, None, &snap(status, 10), at(11))
            .unwrap();
        assert_claim_reads_at_once(&t, &r);
        let r = t.observe_read(&CFG, &snap(status, 10), at(12)).unwrap();
        assert_eq!(
            new_actions(&t, &r).collect::<Vec<_>>(),
            [Action::Release { reason }]
        );
        assert_eq!(kinds(&t.observe_not_found(at(EXPIRES)).unwrap()).len(), 0);
    }
}

#[test]
fn not_found_before_expiry_changes_nothing_and_after_it_releases_once() {
    let mut t = Tracker::default();
    assert_eq!(
        t.observe_not_found(at(5)).unwrap_err(),
        NotFoundError {
            now: at(5),
            expires_at: None
        }
    );
    let _ = t
        .observe_read(&CFG, &snap(Status::Back, 10), at(11))
        .unwrap();
    let before = t.clone();
    let err = t.observe_not_found(at(EXPIRES - 1)).unwrap_err();
    assert_eq!(t, before);
    assert!(err.to_string().contains("before it expires at"), "{err}");
    let r = t.observe_not_found(at(EXPIRES)).unwrap();
    assert_eq!(r.outcome(), Outcome::Expired);
    assert_eq!(
        new_actions(&t, &r).collect::<Vec<_>>(),
        [Action::Release {
            reason: ReleaseReason::Expired
        }]
    );
    assert!(t.is_expired() && t.next_read(&CFG, at(EXPIRES)).is_none());
    let again = t.clone();
    assert_eq!(
        t.observe_not_found(at(EXPIRES + 5)).unwrap().outcome(),
        Outcome::Duplicate
    );
    assert_eq!(t, again);
    // After expiry a redirect is old news.
    let id = hpp_session::SessionId::new("s-1").unwrap();
    let r = t
        .observe_redirect(&id, hpp_session::Redirect::Success, at(EXPIRES + 6))
        .unwrap();
    assert_eq!(r.outcome(), Outcome::Stale);
}

/// A claim never blocks a release: an authorization only a callback claims (and no read ever
/// confirmed) does not keep an expired cart.
#[test]
fn a_claimed_authorization_does_not_block_the_release_at_expiry() {
    let mut t = Tracker::default();
    let _ = t.observe_read(&CFG, &snap(Status::Back, 5), at(6)).unwrap();
    let _ = t
        .observe_callback(&CFG, None, &snap(Status::Completed, 10), at(11))
        .unwrap();
    let r = t.observe_not_found(at(EXPIRES)).unwrap();
    assert_eq!(
        new_actions(&t, &r).collect::<Vec<_>>(),
        [Action::Release {
            reason: ReleaseReason::Expired
        }]
    );
    // And an authorization confirmed by a read does block it.
    let mut t = Tracker::default();
    let _ = t
        .observe_read(&CFG, &snap(Status::Completed, 10), at(11))
        .unwrap();
    assert_eq!(kinds(&t.observe_not_found(at(EXPIRES)).unwrap()).len(), 0);
}

/// A newer `expires_at` of the known change counts from a read, never from an unsigned callback.
#[test]
fn a_newer_expiry_counts_only_from_a_read() {
    let mut t = Tracker::default();
    let _ = t
        .observe_read(&CFG, &snap(Status::InProgress, 10), at(11))
        .unwrap();
    let later =
        Snapshot::new(Status::InProgress, at(10), Some(at(EXPIRES + 60_000)), None).unwrap();
    let before = t.clone();
    let r = t.observe_callback(&CFG, None, &later, at(12)).unwrap();
    assert_eq!(r.outcome(), Outcome::Duplicate);
    assert_eq!(t, before);
    let r = t.observe_read(&CFG, &later, at(13)).unwrap();
    assert_eq!(
        r.outcome(),
        Outcome::Advanced {
            from: Some(Status::InProgress),
            to: Status::InProgress,
            skipped: false
        }
    );
    assert_eq!(t.state().expires_at, Some(at(EXPIRES + 60_000)));
}

#[test]
fn event_ids_are_remembered_up_to_the_bound_then_forgotten_oldest_first() {
    let mut t = Tracker::default();
    let n = hpp_session::REMEMBERED_EVENTS as u64;
    for i in 0..=n {
        let s = if i % 2 == 0 {
            Status::InProgress
        } else {
            Status::Back
        };
        let _ = t
            .observe_callback(&CFG, Some(&format!("e{i}")), &snap(s, 10 * (i + 1)), at(i))
            .unwrap();
    }
    // The newest `n` are remembered: a redelivery is a duplicate even though it is stale.
    assert_eq!(
        t.observe_callback(&CFG, Some("e1"), &snap(Status::Back, 20), at(99))
            .unwrap()
            .outcome(),
        Outcome::Duplicate
    );
    assert_eq!(
        t.observe_callback(
            &CFG,
            Some(&format!("e{n}")),
            &snap(Status::InProgress, 10 * (n + 1)),
            at(99)
        )
        .unwrap()
        .outcome(),
        Outcome::Duplicate
    );
    // The oldest fell out: its redelivery is only stale. Nothing changes either way.
    assert_eq!(
        t.observe_callback(&CFG, Some("e0"), &snap(Status::InProgress, 10), at(99))
            .unwrap()
            .outcome(),
        Outcome::Stale
    );
}

/// When the next read falls due, at `now`.
fn due(t: &Tracker, now: u64) -> Option<Timestamp> {
    due_in(t, &CFG, now)
}

fn due_in(t: &Tracker, config: &TrackerConfig, now: u64) -> Option<Timestamp> {
    t.next_read(config, at(now)).map(|r| r.at)
}

const MIN: u64 = 60_000;

#[test]
fn the_read_schedule_backs_off_to_the_guarantee_and_stops() {
    // The default reads every 45 min after a change; a first read sooner backs off to that.
    assert_eq!(
        ReadPolicy::DEFAULT.first(),
        ReadPolicy::DEFAULT.detect_within()
    );
    let reads = ReadPolicy::DEFAULT
        .with_first(Duration::from_secs(10 * 60))
        .unwrap();
    let config = TrackerConfig {
        reads,
        ..TrackerConfig::DEFAULT
    };
    let mut t = Tracker::new();
    assert_eq!(
        t.next_read(&config, at(0)),
        Some(NextRead {
            at: at(0),
            urgency: Urgency::Initial
        }),
        "knowing nothing: read now"
    );
    let _ = t
        .observe_read(&config, &snap(Status::InProgress, 0), at(1_000))
        .unwrap();
    // 10 min after the change; asking again at the same instant gives the same answer.
    let r = t.next_read(&config, at(1_000)).unwrap();
    assert_eq!((r.at, r.urgency), (at(1_000 + 10 * MIN), Urgency::Blind));
    assert!(!r.is_due(at(1_000)) && r.overdue(at(1_000)).is_none());
    // Nobody read at 10 min: at 60 min it is still due, since 10 min.
    let r = t.next_read(&config, at(1_000 + 60 * MIN)).unwrap();
    assert_eq!(r.at, at(1_000 + 10 * MIN));
    assert!(r.is_due(at(1_000 + 60 * MIN)));
    assert_eq!(
        r.overdue(at(1_000 + 60 * MIN)),
        Some(Duration::from_secs(50 * 60))
    );
    // Read at each slot (nothing changes): the gap doubles with the time since the change, up
    // to the guarantee's 45 min.
    let mut now = 1_000 + 10 * MIN;
    for gap in [10, 20, 40, 45, 45] {
        let r = t
            .observe_read(&config, &snap(Status::InProgress, 0), at(now))
            .unwrap();
        assert_eq!(r.outcome(), Outcome::Duplicate);
        assert_eq!(
            due_in(&t, &config, now),
            Some(at(now + gap * MIN)),
            "after the read at {now}"
        );
        now += gap * MIN;
    }
    // A read made late counts from when it was made.
    let late = now + 7 * MIN;
    let _ = t
        .observe_read(&config, &snap(Status::InProgress, 0), at(late))
        .unwrap();
    assert_eq!(due_in(&t, &config, late), Some(at(late + 45 * MIN)));
    // A change resets the backoff.
    let _ = t
        .observe_read(&config, &snap(Status::Back, late), at(late + MIN))
        .unwrap();
    assert_eq!(due_in(&t, &config, late + MIN), Some(at(late + 11 * MIN)));
    // The last slot is `expires_at` itself; after the 404 no read is due.
    let before = EXPIRES - 10 * MIN;
    let _ = t
        .observe_read(&config, &snap(Status::Back, late), at(before))
        .unwrap();
    assert_eq!(due_in(&t, &config, before), Some(at(EXPIRES)));
    let _ = t.observe_not_found(at(EXPIRES)).unwrap();
    assert_eq!(due_in(&t, &config, EXPIRES), None);
}

#[test]
fn read_failures_back_off_and_keep_the_urgency() {
    let mut t = Tracker::for_session(hpp_session::SessionId::new("s-1").unwrap());
    let _ = t
        .observe_read(&CFG, &snap(Status::Waiting, 0), at(1_000))
        .unwrap();
    let _ = t
        .observe_callback(
            &CFG,
            Some("e1"),
            &snap(Status::Completed, 20_000),
            at(20_000),
        )
        .unwrap();
    assert_read_at_once(&t, 20_000);
    // A 429 with X-Ratelimit-Reset of 1 s: not before the reset, within the second after it
    // (Klarna asks for jitter); the urgency stays.
    t.observe_read_failure(
        ReadFailure::RateLimited {
            reset: Some(Duration::from_secs(1)),
        },
        at(20_000),
    );
    let r = t.next_read(&CFG, at(20_000)).unwrap();
    assert_eq!(r.urgency, Urgency::Confirm);
    assert!(r.at >= at(21_000) && r.at < at(22_000), "{r:?}");
    // 5xx after 5xx: 1 s, 2 s, 4 s … (less up to half), never more than a minute.
    let mut now = 21_000;
    let mut waits = Vec::new();
    for _ in 0..12 {
        t.observe_read_failure(ReadFailure::ServerError, at(now));
        let r = t.next_read(&CFG, at(now)).unwrap();
        let wait = r.at.duration_since(at(now)).unwrap();
        assert!(wait <= MAX_READ_BACKOFF, "{wait:?}");
        waits.push(wait);
        now = u64::try_from(r.at.duration_since(at(0)).unwrap().as_millis()).unwrap();
    }
    // The second failure in a row waits 2 s less up to half, the third 4 s, …
    for (k, wait) in waits.iter().enumerate() {
        let full = Duration::from_secs(1 << (k + 1)).min(MAX_READ_BACKOFF);
        assert!(*wait <= full && *wait >= full / 2, "{k}: {wait:?}");
    }
    // Reads answer again: the urgent read confirms the money, no read is due any more.
    let r = t
        .observe_read(&CFG, &snap(Status::Completed, 20_000), at(now))
        .unwrap();
    assert_eq!(kinds(&r), ["place_order"]);
    assert_eq!(due(&t, now), None);
}

#[test]
fn read_policies_keep_their_guarantee() {
    let p = ReadPolicy::DEFAULT;
    assert_eq!(
        p.with_hint_gap(Duration::from_millis(199)),
        Err(PolicyError::IntervalTooShort)
    );
    assert_eq!(
        p.with_hint_gap(MIN_READ_INTERVAL).map(|p| p.hint_gap()),
        Ok(MIN_READ_INTERVAL)
    );
    // The guarantee and its allowances (a back-off, a read that never answers, clock skew)
    // and the time to place the order stay inside the token's hour.
    assert_eq!(MAX_DETECT_WITHIN, Duration::from_secs(55 * 60));
    assert_eq!(
        p.with_detect_within(MAX_DETECT_WITHIN)
            .map(|p| p.detect_within()),
        Ok(MAX_DETECT_WITHIN)
    );
    assert_eq!(
        p.with_detect_within(MAX_DETECT_WITHIN + Duration::from_nanos(1)),
        Err(PolicyError::DetectsAfterTokenExpiry)
    );
    assert_eq!(
        p.with_detect_within(Duration::from_secs(3_599)),
        Err(PolicyError::DetectsAfterTokenExpiry)
    );
    // `first` is the gap unless set: a new guarantee moves it.
    let tight = p.with_detect_within(Duration::from_secs(20 * 60)).unwrap();
    assert_eq!(tight.first(), Duration::from_secs(20 * 60));
    let cron_first = tight.with_poll_lag(Duration::from_secs(60)).unwrap();
    assert_eq!(cron_first.first(), Duration::from_secs(19 * 60));
    let short = p.with_detect_within(Duration::from_secs(600)).unwrap();
    assert_eq!(
        short.with_poll_lag(short.detect_within()),
        Err(PolicyError::LagExceedsDetection)
    );
    assert_eq!(
        short
            .with_poll_lag(short.detect_within() - MIN_READ_INTERVAL)
            .unwrap()
            .blind_gap(),
        MIN_READ_INTERVAL
    );
    let cron = p.with_poll_lag(Duration::from_secs(300)).unwrap();
    assert_eq!(cron.blind_gap(), Duration::from_secs(40 * 60));
    // A cron poller's lag counts again on each retry: a 10-minute tick needs a tighter
    // guarantee than 45 minutes.
    assert_eq!(
        p.with_poll_lag(Duration::from_secs(301)),
        Err(PolicyError::DetectsAfterTokenExpiry)
    );
    assert!(
        p.with_detect_within(Duration::from_secs(35 * 60))
            .and_then(|p| p.with_poll_lag(Duration::from_secs(600)))
            .is_ok()
    );
    assert_eq!(p.blind_gap(), p.detect_within());
    // A first read at once still leaves a gap after each read.
    let eager = p.with_first(Duration::ZERO).unwrap();
    assert_eq!(eager.blind_due(at(0), at(0), 0), at(200));
    assert_eq!(eager.blind_due(at(1_000), at(0), 0), at(200));
    // A first read later than the gap is capped at it.
    let slow = p.with_first(Duration::from_secs(24 * 3_600)).unwrap();
    assert_eq!(slow.first(), p.blind_gap());
    assert_eq!(slow.blind_due(at(0), at(0), 0), at(45 * MIN));
    // A change learned after the last read brings the next read to `first` after that read,
    // however late it was learned: never later than the slot the read had before (at least
    // `first` after it), never past the guarantee.
    let sooner = p.with_first(Duration::from_secs(10 * 60)).unwrap();
    assert_eq!(sooner.blind_due(at(0), at(0), 0), at(10 * MIN));
    assert_eq!(sooner.blind_due(at(MIN), at(0), 0), at(10 * MIN));
    assert_eq!(sooner.blind_due(at(40 * MIN), at(0), 0), at(10 * MIN));
    assert_eq!(p.blind_due(at(20 * MIN), at(0), 0), at(45 * MIN));
    // A session's spread takes up to 1/32 off the gap, never more.
    let gap = p.blind_gap();
    let shortest =
        gap - Duration::from_millis(u64::try_from(gap.as_millis() / 32 * 1023 / 1024).unwrap());
    assert_eq!(
        p.blind_due(at(0), at(0), 1023),
        at(0).checked_add(shortest).unwrap()
    );
    assert!(shortest > gap - gap / 32);
    assert_eq!(p.blind_due(at(0), at(0), 1024), at(45 * MIN));
    assert!(PolicyError::IntervalTooShort.to_string().contains("200 ms"));
    assert_eq!(
        PolicyError::DetectsAfterTokenExpiry.to_string(),
        "detect_within plus twice poll_lag over 3300 s would not leave time to place the order \
         within the authorization token's 60 minutes"
    );
}

#[test]
fn tracker_size_is_reported() {
    let size = core::mem::size_of::<Tracker>();
    println!("size_of::<Tracker>() = {size}");
    // 1,448 before issue 21. Its session id (256 bytes, the 255-byte bound inline) and the
    // completion of its best change (520: an order id and a Klarna reference of 255 bytes each)
    // are most of it. The policy left the row (96), the best change no longer carries a session
    // id or an `expires_at` (the expiry is kept apart), an `Option<Timestamp>` takes 16 bytes
    // (the nanoseconds are stored plus one), and the event ids are a ring; what is owed and the
    // read in flight were added.
    assert!(size <= 1024, "{size}");
    assert_eq!(core::mem::size_of::<Option<Timestamp>>(), 16);
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(4_096))]

    /// The constant-time comparison agrees with `==` (an empty issued secret never matches).
    #[test]
    fn callback_secret_matches_agrees_with_equality(a in prop::collection::vec(any::<u8>(), 0..40), b in prop::collection::vec(any::<u8>(), 0..40), same in any::<bool>()) {
        let b = if same { a.clone() } else { b };
        prop_assert_eq!(callback_secret_matches(&proved_session(), &a, &b).is_some(), a == b && !a.is_empty());
    }
}

/// Whichever comes first, the state ends the same (the later final wins), and when the second
/// replaces the first it is a reported conflict, never a silent change.
#[test]
fn two_different_finals_never_silently_replace_each_other() {
    let cancelled = snap(Status::Cancelled, 49_000);
    let disabled = snap(Status::Disabled, 10_000);
    let mut a = Tracker::default();
    let _ = a.observe_read(&CFG, &cancelled, at(1)).unwrap();
    let r = a.observe_read(&CFG, &disabled, at(2)).unwrap();
    assert!(matches!(
        r.outcome(),
        Outcome::Conflict {
            kind: ConflictKind::TwoFinals,
            ..
        }
    ));
    let mut b = Tracker::default();
    let _ = b.observe_read(&CFG, &disabled, at(1)).unwrap();
    let r = b.observe_read(&CFG, &cancelled, at(2)).unwrap();
    assert_eq!(
        r.outcome(),
        Outcome::Conflict {
            known: Status::Disabled,
            observed: Status::Cancelled,
            kind: ConflictKind::TwoFinals
        }
    );
    assert_eq!(a.state(), b.state());
    assert_eq!(a.status(), Some(Status::Cancelled));
    assert!(a.has_conflict() && b.has_conflict());
    // A dated DISABLED is a read's, not a disable's 204: after a dated CANCELLED it is a
    // contradiction too, whichever is the later.
    let mut d = Tracker::default();
    let _ = d
        .observe_read(&CFG, &snap(Status::Cancelled, 10_000), at(1))
        .unwrap();
    let r = d
        .observe_read(&CFG, &snap(Status::Disabled, 49_000), at(2))
        .unwrap();
    assert_eq!(
        r.outcome(),
        Outcome::Conflict {
            known: Status::Cancelled,
            observed: Status::Disabled,
            kind: ConflictKind::TwoFinals
        }
    );
    // An unsigned callback's final never displaces a confirmed one: refuted, nothing more.
    let mut c = Tracker::default();
    let _ = c.observe_read(&CFG, &cancelled, at(1)).unwrap();
    let before = c.status();
    let r = c
        .observe_callback(&CFG, None, &snap(Status::Completed, 50_000), at(2))
        .unwrap();
    assert!(matches!(
        r.outcome(),
        Outcome::Refuted {
            kind: ConflictKind::TwoFinals,
            ..
        }
    ));
    assert_eq!(kinds(&r).len(), 0);
    assert_eq!((c.status(), c.claim()), (before, None));
    assert!(!c.has_conflict());
}

#[test]
fn outcomes_have_the_replay_tools_names_and_say_what_happened() {
    let conflict = |kind| Outcome::Conflict {
        known: Status::Completed,
        observed: Status::Cancelled,
        kind,
    };
    let cases = [
        (
            Outcome::Advanced {
                from: None,
                to: Status::Waiting,
                skipped: false,
            },
            "advanced",
            "advanced to WAITING",
        ),
        (
            Outcome::Advanced {
                from: Some(Status::InProgress),
                to: Status::InProgress,
                skipped: true,
            },
            "advanced",
            "advanced IN_PROGRESS -> IN_PROGRESS (statuses in between not seen)",
        ),
        (
            Outcome::Confirmed(Status::Completed),
            "advanced",
            "confirmed COMPLETED",
        ),
        (
            Outcome::Claimed(Status::Cancelled),
            "claimed",
            "claims CANCELLED (unsigned: read to confirm)",
        ),
        (Outcome::Duplicate, "duplicate", "duplicate"),
        (Outcome::Stale, "stale", "stale"),
        (
            conflict(ConflictKind::TwoFinals),
            "conflict",
            "conflict: CANCELLED contradicts the final status COMPLETED",
        ),
        (
            conflict(ConflictKind::TwoCompletions),
            "conflict",
            "conflict: CANCELLED carries other completion data than COMPLETED",
        ),
        (
            conflict(ConflictKind::CannotFollow),
            "conflict",
            "conflict: CANCELLED cannot be ordered with COMPLETED",
        ),
        (Outcome::Expired, "expired", "expired"),
    ];
    for (outcome, name, text) in cases {
        assert_eq!(outcome.as_str(), name);
        assert_eq!(outcome.to_string(), text);
    }
}

#[cfg(feature = "serde")]
#[test]
fn stored_trackers_round_trip_and_are_checked() {
    let mut t = Tracker::default();
    let _ = t
        .observe_verified_callback(checked(), Some("e"), &snap(Status::Back, 10), at(11))
        .unwrap();
    let _ = t.observe_not_found(at(EXPIRES)).unwrap();
    let json = serde_json::to_string(&t).unwrap();
    assert!(json.contains(r#""released":"EXPIRED""#), "{json}");
    // Trackers stored when trust was a setting still load; the setting is gone (whether a
    // callback is evidence is decided per callback, by its secret).
    let old = json.replacen('{', r#"{"trust":"verified","#, 1);
    assert_eq!(serde_json::from_str::<Tracker>(&old).unwrap(), t);
    assert_eq!(serde_json::from_str::<Tracker>(&json).unwrap(), t);

    // A claim, and the urgent read it makes, round-trip too.
    let mut claimed = Tracker::default();
    let _ = claimed
        .observe_callback(&CFG, Some("e"), &snap(Status::Cancelled, 10), at(11))
        .unwrap();
    let stored = serde_json::to_string(&claimed).unwrap();
    assert!(
        stored.contains(r#""claim":{"status":"CANCELLED""#) && stored.contains(r#""urgent_since""#),
        "{stored}"
    );
    assert_eq!(serde_json::from_str::<Tracker>(&stored).unwrap(), claimed);

    let fresh = serde_json::to_string(&Tracker::default()).unwrap();
    assert_eq!(
        fresh,
        r#"{"best":null,"asked":0,"owed":0,"expired":false,"conflicted":false,"events":[]}"#
    );
    assert_eq!(
        serde_json::from_str::<Tracker>(&fresh).unwrap(),
        Tracker::default()
    );
    for (from, to) in [
        (r#""expired":false"#, r#""expired":true"#),
        (r#""asked":0"#, r#""asked":1"#),
        (r#""asked":0"#, r#""asked":4"#),
        (r#""asked":0"#, r#""asked":16"#),
        (r#""asked":0"#, r#""asked":32"#),
        // Reads are not actions any more: the bit of the old read request names nothing.
        (r#""asked":0"#, r#""asked":8"#),
        // Owed, never asked.
        (r#""owed":0"#, r#""owed":1"#),
        (r#""asked":0"#, r#""asked":0,"released":"CANCELLED""#),
        (
            r#""asked":0"#,
            r#""asked":0,"expiry":{"status":"WAITING","expires_at":"2019-05-15T12:00:00Z"}"#,
        ),
    ] {
        assert!(fresh.contains(from), "{fresh}");
        let bad = fresh.replace(from, to);
        assert!(serde_json::from_str::<Tracker>(&bad).is_err(), "{bad}");
    }
    let bad = json.replace(r#""released":"EXPIRED""#, r#""released":"LOST""#);
    assert!(serde_json::from_str::<Tracker>(&bad).is_err());
}

#[test]
fn a_claim_adds_earlier_reads_and_never_delays_the_schedule() {
    let mut t = Tracker::default();
    assert!(t.status().is_none() && !t.is_expired() && !t.is_confirmed());
    // Before any read: read at once, whatever callbacks claim.
    let _ = t
        .observe_callback(&CFG, Some("e0"), &snap(Status::InProgress, 10), at(500))
        .unwrap();
    assert_eq!(due(&t, 500), Some(at(500)));
    assert!(t.status().is_none() && !t.is_confirmed());
    let _ = t
        .observe_read(&CFG, &snap(Status::Waiting, 0), at(1_000))
        .unwrap();
    assert_eq!(
        (t.status(), t.state().updated_at),
        (Some(Status::Waiting), Some(at(0)))
    );
    assert_eq!(due(&t, 1_000), Some(at(1_000 + 45 * MIN)));
    // A non-final claim asks for no read of its own: money waits for a final status.
    let _ = t
        .observe_callback(&CFG, Some("e1"), &snap(Status::InProgress, 20), at(25_000))
        .unwrap();
    assert_eq!(due(&t, 25_000), Some(at(1_000 + 45 * MIN)));
    // A final claim asks for one at once.
    let _ = t
        .observe_callback(
            &CFG,
            Some("e2"),
            &snap(Status::Cancelled, 30_000),
            at(30_000),
        )
        .unwrap();
    assert_read_at_once(&t, 30_000);
    let _ = t
        .observe_read(&CFG, &snap(Status::InProgress, 20), at(30_000))
        .unwrap();
    // Claims arriving every 9 s never push the confirmed slots later.
    let schedule = t.clone();
    for k in 0..20u64 {
        let now = 40_000 + k * 9_000;
        let _ = t
            .observe_callback(&CFG, None, &snap(Status::InProgress, 30_001 + k), at(now))
            .unwrap();
        assert!(due(&t, now) <= due(&schedule, now));
    }
    assert!(!t.is_expired());
}

#[test]
fn the_clock_skew_tolerance_is_configurable_and_only_for_hints() {
    let strict = TrackerConfig {
        max_clock_skew: Duration::ZERO,
        ..TrackerConfig::default()
    };
    assert_eq!(
        TrackerConfig::default().max_clock_skew,
        Duration::from_secs(60)
    );
    assert_eq!(TrackerConfig::default(), TrackerConfig::DEFAULT);
    let mut t = Tracker::new();
    assert!(
        t.observe_callback(&strict, None, &snap(Status::Back, 10), at(10))
            .is_ok()
    );
    assert!(
        t.observe_callback(&strict, None, &snap(Status::Back, 11), at(10))
            .is_err()
    );
    // At the default, exactly 60 s ahead is accepted, a millisecond more is not.
    let mut t = Tracker::default();
    assert!(
        t.observe_callback(&CFG, None, &snap(Status::Back, 60_010), at(10))
            .is_ok()
    );
    assert!(
        t.observe_callback(&CFG, None, &snap(Status::Back, 60_011), at(10))
            .is_err()
    );
    // Authenticated evidence is Klarna's own clock: never refused.
    let mut t = Tracker::new();
    assert!(
        t.observe_verified_callback(checked(), None, &snap(Status::Back, 99_000), at(10))
            .is_ok()
    );
    assert_eq!(t.status(), Some(Status::Back));
    let mut t = Tracker::new();
    let _ = t
        .observe_read(&CFG, &snap(Status::Back, 99_000), at(10))
        .unwrap();
    assert_eq!(t.status(), Some(Status::Back));
}

/// The completion shapes, from a confirming read: an order Klarna placed is recorded (never
/// placed again), and unusable data asks a person to look, never releasing the paid cart.
#[test]
fn every_completion_shape_asks_for_its_own_action() {
    let completed = |c: Completion| {
        Snapshot::new(Status::Completed, at(40), Some(at(EXPIRES)), Some(c)).unwrap()
    };
    let all_three = Completion::from_fields(
        Some("70850a20-a2a0-5c70-810c-096fa6f850bb"),
        Some("93d644a2-43f3-11e9-b210-d663bd873d93"),
        Some("ffc25786"),
    )
    .unwrap();
    let order_only = Completion::from_fields(None, Some("93d644a2"), None).unwrap();
    let unusable = Completion::Unusable(CompletionProblem::Missing);
    let mut seen = Vec::new();
    for c in [all_three, order_only, unusable] {
        let mut t = Tracker::default();
        let r = t.observe_read(&CFG, &completed(c), at(41)).unwrap();
        seen.push(
            new_actions(&t, &r)
                .map(|a| a.to_string())
                .collect::<Vec<_>>(),
        );
        let r = t.observe_not_found(at(EXPIRES)).unwrap();
        assert_eq!(
            r.newly_owed(),
            ActionSet::EMPTY,
            "a paid cart is never released"
        );
        assert!(!t.has_conflict());
    }
    assert_eq!(
        seen,
        [
            vec!["record order 93d644a2-43f3-11e9-b210-d663bd873d93 (ffc25786)".to_owned()],
            vec!["record order 93d644a2".to_owned()],
            vec![
                "a person must review this paid session: no authorization_token and no order_id"
                    .to_owned()
            ],
        ]
    );
}

/// Money after a release only comes from contradictory evidence, and is always reported: here
/// an authorization read after the session answered 404 at expiry.
#[test]
fn money_after_a_release_is_reported_as_a_conflict() {
    let mut t = Tracker::default();
    let _ = t
        .observe_read(&CFG, &snap(Status::InProgress, 10), at(11))
        .unwrap();
    let r = t.observe_not_found(at(EXPIRES)).unwrap();
    assert_eq!(kinds(&r), ["release"]);
    assert!(!t.has_conflict());
    let r = t
        .observe_read(&CFG, &snap(Status::Completed, 20), at(EXPIRES + 1))
        .unwrap();
    assert_eq!(kinds(&r), ["place_order"]);
    assert_eq!(
        r.outcome(),
        Outcome::Contradicts {
            from: Some(Status::InProgress),
            to: Status::Completed
        }
    );
    assert!(t.has_conflict());
    // Once flagged, later news is reported as what it is.
    let r = t
        .observe_read(&CFG, &snap(Status::Completed, 20), at(EXPIRES + 2))
        .unwrap();
    assert_eq!(r.outcome(), Outcome::Duplicate);
}

/// Two changes stamped in the same millisecond are ordered by their status (a deterministic
/// tie-break), not reported as a conflict, when one can follow the other.
#[test]
fn changes_in_the_same_millisecond_are_not_a_conflict() {
    for order in [[0, 1], [1, 0]] {
        let seen = [snap(Status::InProgress, 10), snap(Status::Failed, 10)];
        let mut t = Tracker::default();
        for i in order {
            let r = t.observe_read(&CFG, &seen[i], at(20)).unwrap();
            assert!(
                !matches!(r.outcome(), Outcome::Conflict { .. }),
                "{order:?}: {:?}",
                r.outcome()
            );
        }
        assert_eq!(t.status(), Some(Status::Failed));
        assert!(!t.has_conflict());
    }
}

fn session(id: &str) -> hpp_session::SessionId {
    hpp_session::SessionId::new(id).unwrap()
}

/// A tracker belongs to one session: a read or callback of another is refused and changes
/// nothing, whichever way the tracker learned its session; a hint never binds it.
#[test]
fn a_snapshot_of_another_session_is_refused_and_changes_nothing() {
    let mine = session("39a1c773");
    let theirs = || token("their-token", 20).of_session(session("other"));
    // Bound at creation.
    let mut t = Tracker::for_session(mine.clone());
    let _ = t
        .observe_read(&CFG, &snap(Status::InProgress, 10), at(11))
        .unwrap();
    let before = t.clone();
    let err = t.observe_read(&CFG, &theirs(), at(21)).unwrap_err();
    assert!(matches!(err, Refused::OtherSession(_)), "{err:?}");
    assert_eq!(
        err.to_string(),
        "session other given to the tracker of session 39a1c773: refused"
    );
    assert!(matches!(
        t.observe_callback(&CFG, Some("e"), &theirs(), at(21)),
        Err(Refused::OtherSession(_))
    ));
    assert_eq!(t, before);
    // Its own session's snapshot, named or not, is taken.
    let r = t
        .observe_read(
            &CFG,
            &snap(Status::Completed, 20).of_session(mine.clone()),
            at(22),
        )
        .unwrap();
    assert_eq!(kinds(&r), ["place_order"]);

    // Unbound: a hint naming a session does not bind it; the first read naming one does.
    let mut u = Tracker::default();
    let _ = u
        .observe_callback(
            &CFG,
            None,
            &snap(Status::InProgress, 5).of_session(session("forged")),
            at(6),
        )
        .unwrap();
    assert_eq!(u.session_id(), None);
    let _ = u
        .observe_read(
            &CFG,
            &snap(Status::InProgress, 10).of_session(mine.clone()),
            at(11),
        )
        .unwrap();
    assert_eq!(u.session_id(), Some(&mine));
    let before = u.clone();
    assert!(u.observe_read(&CFG, &theirs(), at(21)).is_err());
    assert_eq!(u, before);
    // The binding is kept by persistence.
    #[cfg(feature = "serde")]
    {
        let back: Tracker = serde_json::from_str(&serde_json::to_string(&u).unwrap()).unwrap();
        assert_eq!(back, u);
        assert_eq!(back.session_id(), Some(&mine));
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2_048))]

    /// Whatever a tracker saw, a snapshot of another session (any status, any completion) is
    /// refused and leaves it equal to what it was.
    #[test]
    fn another_sessions_snapshot_never_changes_a_tracker(
        seen in prop::collection::vec((0usize..Status::ALL.len(), 0u64..100, any::<bool>()), 0..8),
        other in (0usize..Status::ALL.len(), 0u64..200, any::<bool>()),
    ) {
        let mut t = Tracker::for_session(session("mine"));
        for (i, &(s, ms, read)) in seen.iter().enumerate() {
            let s = snap(Status::ALL[s], ms * 1_000);
            let now = at(200_000 + i as u64);
            let _ = if read { t.observe_read(&CFG, &s, now).map(|_| ()) } else { t.observe_callback(&CFG, None, &s, now).map(|_| ()) };
        }
        let before = t.clone();
        let s = snap(Status::ALL[other.0], other.1 * 1_000).of_session(session("theirs"));
        let refused = if other.2 { t.observe_read(&CFG, &s, at(300_000)).is_err() } else { t.observe_callback(&CFG, None, &s, at(300_000)).is_err() };
        prop_assert!(refused);
        prop_assert_eq!(t, before);
    }
}

/// What a settled session answers by itself, and when it needs its tracker back: the same change
/// is a duplicate, older news stale, a forged claim refuted (no conflict), a 404 after expiry marks it
/// expired; an authorization read after a cancel (contradictory, and money) revives a tracker that
/// asks for the order once.
#[test]
fn a_settled_session_answers_what_reappears_and_revives_for_money() {
    let size = core::mem::size_of::<hpp_session::Settled>();
    println!("size_of::<Settled>() = {size}");
    // Four instants of 12 bytes, a 64-bit digest, statuses and flags: 64.
    assert!(size <= 64, "{size}");
    let mut t = Tracker::for_session(SessionId::new("s").unwrap());
    let _ = t
        .observe_read(&CFG, &snap(Status::InProgress, 10), at(11))
        .unwrap();
    assert!(t.settled().is_none(), "an open session is not settled");
    let r = t
        .observe_read(&CFG, &snap(Status::Cancelled, 20), at(21))
        .unwrap();
    assert_eq!(kinds(&r), ["release"]);
    // Final, but the release is owed: not settled until it is done.
    assert!(t.settled().is_none());
    let id = hpp_session::SessionId::new("s").unwrap();
    t.done(ActionId::new(&id, ActionKind::Release)).unwrap();
    let mut s = t.settled().unwrap();
    assert_eq!(
        (s.status(), s.asked(), s.has_conflict()),
        (Status::Cancelled, t.asked(), false)
    );
    assert_eq!(
        s.observe_read(&snap(Status::Cancelled, 20)),
        Some(Outcome::Duplicate)
    );
    assert_eq!(
        s.observe_read(&snap(Status::InProgress, 10)),
        Some(Outcome::Stale)
    );
    let config = TrackerConfig::DEFAULT;
    assert_eq!(
        s.observe_callback(&snap(Status::InProgress, 10), at(31), &config),
        Ok(Some(Outcome::Stale)),
        "an older hint is stale, not a claim"
    );
    assert!(!s.has_conflict());
    let forged = s
        .observe_callback(
            &snap(Status::Completed, 30),
            at(31),
            &TrackerConfig::DEFAULT,
        )
        .unwrap();
    assert!(
        matches!(forged, Some(Outcome::Refuted { .. })),
        "{forged:?}"
    );
    // A forged claim against a settled session pages no one.
    assert!(!s.has_conflict());
    assert!(matches!(
        s.observe_callback(
            &snap(Status::Completed, 99_000_000),
            at(31),
            &TrackerConfig::DEFAULT
        ),
        Err(Refused::FutureHint(_))
    ));
    assert!(s.observe_not_found(at(EXPIRES - 1)).is_err());
    assert_eq!(s.observe_not_found(at(EXPIRES)), Ok(Outcome::Expired));
    assert_eq!(s.observe_not_found(at(EXPIRES + 1)), Ok(Outcome::Duplicate));
    // Money after the cancel: the stand-in cannot answer it; the revived tracker asks once.
    let paid = snap(Status::Completed, 40);
    assert_eq!(s.observe_read(&paid), None);
    let mut revived = s.revive(Some(id.clone()));
    let r = revived.observe_read(&CFG, &paid, at(EXPIRES + 2)).unwrap();
    assert_eq!(kinds(&r), ["place_order"]);
    assert!(revived.has_conflict());
    assert!(revived.settled().is_none(), "the order is owed");
    revived
        .done(ActionId::new(&id, ActionKind::PlaceOrder))
        .unwrap();
    let again = revived.settled().unwrap();
    assert_eq!(
        revived
            .clone()
            .observe_read(&CFG, &paid, at(EXPIRES + 3))
            .unwrap()
            .newly_owed(),
        ActionSet::EMPTY
    );
    assert_eq!(again.status(), Status::Completed);

    // A second token for the same completion time is a conflict the stand-in answers itself:
    // that kind was asked for already, so no tracker comes back for it.
    let mut paid = again;
    let other = token("another-token", 40);
    assert!(matches!(
        paid.observe_read(&other),
        Some(Outcome::Conflict {
            kind: ConflictKind::TwoCompletions,
            ..
        })
    ));
}

#[test]
fn redirects_name_their_url_and_suggest_a_status() {
    use hpp_session::Redirect;
    let names: Vec<_> = Redirect::ALL.iter().map(|r| r.to_string()).collect();
    assert_eq!(names, ["success", "failure", "back", "cancel", "error"]);
    for r in Redirect::ALL {
        assert_eq!(r.as_str(), r.to_string());
        // The redirect a status sends the consumer to suggests that status back.
        assert_eq!(Redirect::after(r.status()), Some(r));
    }
    for s in [
        Status::Waiting,
        Status::InProgress,
        Status::ManualIdCheck,
        Status::Disabled,
        Status::Timeout,
    ] {
        assert_eq!(Redirect::after(s), None, "{s}");
    }
    // Only the final ones make a read urgent.
    let finals: Vec<_> = Redirect::ALL
        .iter()
        .filter(|r| r.status().is_final())
        .map(|r| r.as_str())
        .collect();
    assert_eq!(finals, ["success", "cancel"]);
}

#[test]
fn a_redirect_brings_one_read_forward_and_decides_nothing() {
    use hpp_session::Redirect;
    let id = hpp_session::SessionId::new("s-1").unwrap();
    let mut t = Tracker::created(id.clone(), at(0));
    // Created: the first read within the guarantee (less the session's spread), not at once.
    let first = t.next_read(&CFG, at(1_000)).unwrap();
    assert_eq!(first.urgency, Urgency::Initial);
    assert!(first.at <= at(45 * MIN) && first.at > at(45 * MIN - 45 * MIN / 32));
    // Another session's redirect: refused, nothing changes.
    let other = hpp_session::SessionId::new("s-2").unwrap();
    let before = t.clone();
    assert!(matches!(
        t.observe_redirect(&other, Redirect::Success, at(2_000)),
        Err(Refused::OtherSession(_))
    ));
    assert_eq!(t, before);
    // `back` asks for nothing; `success` for a read at once; again: a duplicate.
    let r = t.observe_redirect(&id, Redirect::Back, at(2_000)).unwrap();
    assert_eq!(r.outcome(), Outcome::Redirected(Status::Back));
    assert!(!r.outcome().changed() && r.newly_owed().is_empty());
    assert_eq!(t.next_read(&CFG, at(2_000)), Some(first));
    let r = t
        .observe_redirect(&id, Redirect::Success, at(3_000))
        .unwrap();
    assert_eq!(r.outcome(), Outcome::Redirected(Status::Completed));
    assert_eq!(r.outcome().as_str(), "redirected");
    assert!(r.newly_owed().is_empty());
    // At once, spaced like every hint's read from the last read: the creation, which Klarna's
    // authenticated answer to the create call counts as.
    assert_eq!(
        t.next_read(&CFG, at(3_000)),
        Some(NextRead {
            at: at(10_000),
            urgency: Urgency::Confirm
        })
    );
    let r = t
        .observe_redirect(&id, Redirect::Cancel, at(4_000))
        .unwrap();
    assert_eq!(r.outcome(), Outcome::Duplicate);
    // The read clears the urgency, whatever it shows: the next read is a blind one.
    let _ = t
        .observe_read(&CFG, &snap(Status::Waiting, 0), at(4_500))
        .unwrap();
    let next = t.next_read(&CFG, at(4_500)).unwrap();
    assert_eq!(next.urgency, Urgency::Blind);
    assert!(next.at > at(4_500 + 40 * MIN));
    // The read clears it; after a confirmed final, redirects are stale.
    let _ = t
        .observe_read(&CFG, &snap(Status::Cancelled, 2_500), at(5_000))
        .unwrap();
    let r = t
        .observe_redirect(&id, Redirect::Success, at(6_000))
        .unwrap();
    assert_eq!(r.outcome(), Outcome::Stale);
    assert_eq!(t.next_read(&CFG, at(6_000)), None);
    assert_eq!(
        Outcome::Redirected(Status::Completed).to_string(),
        "redirected as COMPLETED (unsigned: read to confirm)"
    );
}

#[test]
fn urgencies_and_failures_read_as_what_they_are() {
    // Least urgent first: a caller with less budget than due reads takes the greatest first.
    let mut all = [Urgency::Confirm, Urgency::Blind, Urgency::Initial];
    all.sort();
    let names: Vec<_> = all.iter().map(ToString::to_string).collect();
    assert_eq!(names, ["blind", "initial", "confirm"]);
    assert!(all.iter().all(|u| u.as_str() == u.to_string()));
    let failures = [
        (
            ReadFailure::RateLimited {
                reset: Some(Duration::from_millis(1_500)),
            },
            "rate limited (429), window resets in 1.5s",
        ),
        (
            ReadFailure::RateLimited { reset: None },
            "rate limited (429)",
        ),
        (ReadFailure::ServerError, "server error (5xx)"),
        (ReadFailure::Timeout, "timed out"),
        (ReadFailure::Unexpected, "unexpected answer"),
    ];
    for (failure, text) in failures {
        assert_eq!(failure.to_string(), text);
    }
    assert!(
        PolicyError::LagExceedsDetection
            .to_string()
            .contains("poll_lag")
    );
}

#[test]
fn a_read_at_expiry_that_still_answers_is_not_asked_again_at_once() {
    // Klarna's clock a little behind: the read at `expires_at` answers 200. The expiry slot is
    // spent; the next read is a blind one, not the same instant again.
    let mut t = Tracker::default();
    let _ = t
        .observe_read(&CFG, &snap(Status::Back, 10), at(EXPIRES - 30 * MIN))
        .unwrap();
    assert_eq!(
        t.next_read(&CFG, at(EXPIRES - 30 * MIN)).unwrap().at,
        at(EXPIRES)
    );
    let _ = t
        .observe_read(&CFG, &snap(Status::Back, 10), at(EXPIRES))
        .unwrap();
    assert!(t.next_read(&CFG, at(EXPIRES)).unwrap().at > at(EXPIRES + 40 * MIN));
    // A read 100 ms before expiry: the expiry read still keeps 200 ms from it.
    let mut close = Tracker::default();
    let _ = close
        .observe_read(&CFG, &snap(Status::Back, 10), at(EXPIRES - 100))
        .unwrap();
    assert_eq!(
        close.next_read(&CFG, at(EXPIRES - 100)).unwrap().at,
        at(EXPIRES + 100)
    );
}

#[test]
fn sessions_created_together_read_apart() {
    let due: std::collections::BTreeSet<_> = (0..8)
        .map(|i| {
            let id = hpp_session::SessionId::new(&format!("session-{i}")).unwrap();
            let t = Tracker::created(id, at(0));
            t.next_read(&CFG, at(0)).unwrap().at
        })
        .collect();
    assert!(due.len() >= 7, "{due:?}");
    assert!(
        due.iter()
            .all(|&d| d <= at(45 * MIN) && d > at(45 * MIN - 45 * MIN / 32))
    );
}

#[test]
fn the_time_limit_asks_for_one_disable_and_then_reads_blind() {
    let config = TrackerConfig {
        abandon_after: Some(Duration::from_secs(2 * 3_600)),
        ..TrackerConfig::DEFAULT
    };
    let mut t = Tracker::for_session(hpp_session::SessionId::new("s-1").unwrap());
    let waiting = snap(Status::Waiting, 0);
    let _ = t.observe_read(&config, &waiting, at(1_000)).unwrap();
    // The deadline is a slot of its own: 2 h after the last change.
    let mut now = 1_000;
    while t.next_read(&config, at(now)).unwrap().at < at(2 * 60 * MIN) {
        now = millis(t.next_read(&config, at(now)).unwrap().at);
        let r = t.observe_read(&config, &waiting, at(now)).unwrap();
        assert!(
            r.newly_owed().is_empty(),
            "asked before the deadline at {now}"
        );
    }
    assert_eq!(t.next_read(&config, at(now)).unwrap().at, at(2 * 60 * MIN));
    // A hint past the deadline asks for nothing: only a read finds a session abandoned.
    let r = t
        .observe_callback(
            &config,
            None,
            &snap(Status::InProgress, 100),
            at(2 * 60 * MIN),
        )
        .unwrap();
    assert!(r.newly_owed().is_empty());
    let r = t.observe_read(&config, &waiting, at(2 * 60 * MIN)).unwrap();
    assert_eq!(new_actions(&t, &r).collect::<Vec<_>>(), [Action::Disable]);
    let next = t.next_read(&config, at(2 * 60 * MIN)).unwrap();
    assert_eq!(next.urgency, Urgency::Confirm);
    // The disable did not take (the `DELETE` failed): reads go on blind, nothing asked again.
    now = 2 * 60 * MIN + 10_000;
    for _ in 0..5 {
        let r = t.observe_read(&config, &waiting, at(now)).unwrap();
        assert!(r.newly_owed().is_empty());
        let next = t.next_read(&config, at(now)).unwrap();
        assert_eq!(next.urgency, Urgency::Blind);
        now = millis(next.at);
    }
    // A session that ended is never disabled, however late a read of it comes.
    let mut ended = Tracker::new();
    let _ = ended
        .observe_read(&config, &snap(Status::Cancelled, 0), at(1_000))
        .unwrap();
    let late = ended
        .observe_read(&config, &snap(Status::Cancelled, 0), at(3 * 60 * MIN))
        .unwrap();
    assert!(late.newly_owed().is_empty());
    assert!(!ended.asked().contains(ActionKind::Disable));
    // A session that shows life is not abandoned: a change at the deadline moves it.
    let mut lively = Tracker::new();
    let _ = lively.observe_read(&config, &waiting, at(1_000)).unwrap();
    let r = lively
        .observe_read(
            &config,
            &snap(Status::InProgress, 2 * 60 * MIN - 1),
            at(2 * 60 * MIN),
        )
        .unwrap();
    assert!(r.newly_owed().is_empty());
}

fn millis(t: Timestamp) -> u64 {
    u64::try_from(t.duration_since(at(0)).unwrap().as_millis()).unwrap()
}

/// A read is due at `ms` itself, before every other kind.
fn assert_read_at_once(t: &Tracker, ms: u64) {
    assert_eq!(
        t.next_read(&CFG, at(ms)),
        Some(NextRead {
            at: at(ms),
            urgency: Urgency::Confirm
        })
    );
}

/// Every owed action has its data, whatever confirmed evidence comes after it was asked: when
/// evidence of higher precedence replaces the completion a money action was asked for (an
/// undated unusable body, then a dated token; a token, then Klarna's order), the action it no
/// longer warrants is owed no more (a conflict says why), and the one it warrants is owed.
#[test]
fn an_owed_action_never_loses_its_data() {
    let expires = Some(at(EXPIRES));
    let undated =
        Snapshot::paid_undated(Completion::Unusable(CompletionProblem::Malformed), expires);
    let token = |t: &str| Completion::authorized(t).unwrap();
    let dated = Snapshot::new(Status::Completed, at(40), expires, Some(token("tok"))).unwrap();
    let ordered = Snapshot::new(
        Status::Completed,
        at(40),
        expires,
        Some(Completion::from_fields(Some("tok"), Some("order-1"), None).unwrap()),
    )
    .unwrap();
    let all_have_data = |t: &Tracker| t.owed().iter().all(|k| t.action(k).is_some());
    let kinds = |t: &Tracker| t.owed().iter().collect::<Vec<_>>();

    let mut t = Tracker::default();
    let _ = t.observe_read(&CFG, &undated, at(41)).unwrap();
    assert_eq!(kinds(&t), [ActionKind::ReviewCompletion]);
    let _ = t.observe_read(&CFG, &dated, at(42)).unwrap();
    assert!(all_have_data(&t), "{:?}", t.owed());
    assert_eq!(kinds(&t), [ActionKind::PlaceOrder]);
    assert!(t.has_conflict());

    let mut u = Tracker::default();
    let _ = u.observe_read(&CFG, &dated, at(41)).unwrap();
    let _ = u.observe_read(&CFG, &ordered, at(42)).unwrap();
    assert!(all_have_data(&u), "{:?}", u.owed());
    assert_eq!(kinds(&u), [ActionKind::RecordOrder]);
    // A stored tracker that owes what its state has no data for is refused.
    #[cfg(feature = "serde")]
    {
        let mut json: serde_json::Value = serde_json::to_value(&u).unwrap();
        json["owed"] = serde_json::json!(1 | 2);
        json["asked"] = serde_json::json!(1 | 2);
        assert!(serde_json::from_value::<Tracker>(json).is_err());
    }
}

/// A disable's 204 says the session ended unpaid, not which way: a confirmed `CANCELLED` before
/// or after it is no contradiction, and pages no one. The cart is released once.
#[test]
fn a_disables_204_and_a_cancel_are_no_conflict_in_either_order() {
    let id = hpp_session::SessionId::new("s-1").unwrap();
    let cancelled = snap(Status::Cancelled, 30_000);
    let mut first = Tracker::for_session(id.clone());
    let _ = first
        .observe_read(&CFG, &snap(Status::InProgress, 10), at(11))
        .unwrap();
    let r = first
        .observe_disable_answer(&id, hpp_session::DisableAnswer::Disabled, at(20_000))
        .unwrap();
    assert_eq!(kinds(&r), ["release"]);
    let r = first.observe_read(&CFG, &cancelled, at(40_000)).unwrap();
    assert!(kinds(&r).is_empty() && !first.has_conflict(), "{r:?}");
    let mut second = Tracker::for_session(id.clone());
    let _ = second.observe_read(&CFG, &cancelled, at(40_000)).unwrap();
    let r = second
        .observe_disable_answer(&id, hpp_session::DisableAnswer::Disabled, at(50_000))
        .unwrap();
    assert_eq!(r.outcome(), Outcome::Stale);
    assert!(!second.has_conflict());
    assert_eq!(first.status(), Some(Status::Cancelled));
    // A 204 on a paid session is a real contradiction: the money wins, a person looks.
    let mut paid = Tracker::for_session(id.clone());
    let _ = paid
        .observe_read(&CFG, &snap(Status::Completed, 40), at(41))
        .unwrap();
    let r = paid
        .observe_disable_answer(&id, hpp_session::DisableAnswer::Disabled, at(50))
        .unwrap();
    assert!(matches!(r.outcome(), Outcome::Conflict { .. }), "{r:?}");
    assert_eq!(paid.status(), Some(Status::Completed));
    // Another session's answer is refused and changes nothing.
    let other = hpp_session::SessionId::new("s-2").unwrap();
    let before = second.clone();
    assert!(matches!(
        second.observe_disable_answer(&other, hpp_session::DisableAnswer::Disabled, at(60_000)),
        Err(Refused::OtherSession(_))
    ));
    assert_eq!(second, before);
}

/// The refuted count, in either order and only for claims shown false: a forged `CANCELLED`
/// refuted by a read of an earlier `COMPLETED` counts once whichever comes first; a claim the
/// read confirms (even undated) counts nothing; a forged callback delivered again is counted once.
#[test]
fn refuted_claims_are_counted_once_in_either_order() {
    let forged_cancel = snap(Status::Cancelled, 10_000);
    let paid = snap(Status::Completed, 8_000);
    let mut hint_first = Tracker::default();
    let _ = hint_first
        .observe_callback(&CFG, Some("f"), &forged_cancel, at(10_500))
        .unwrap();
    let _ = hint_first.observe_read(&CFG, &paid, at(11_000)).unwrap();
    let mut read_first = Tracker::default();
    let _ = read_first.observe_read(&CFG, &paid, at(11_000)).unwrap();
    let r = read_first
        .observe_callback(&CFG, Some("f"), &forged_cancel, at(11_500))
        .unwrap();
    assert!(matches!(r.outcome(), Outcome::Refuted { .. }), "{r:?}");
    assert_eq!(
        (hint_first.refuted_claims(), read_first.refuted_claims()),
        (1, 1)
    );
    // The same forged event again: a duplicate, not counted twice.
    let r = read_first
        .observe_callback(&CFG, Some("f"), &forged_cancel, at(12_000))
        .unwrap();
    assert_eq!(r.outcome(), Outcome::Duplicate);
    assert_eq!(read_first.refuted_claims(), 1);
    assert!(!hint_first.has_conflict() && !read_first.has_conflict());
    // A true claim, confirmed by an undated read of the same completion: nothing refuted.
    let mut true_claim = Tracker::default();
    let _ = true_claim
        .observe_callback(&CFG, None, &snap(Status::Completed, 40), at(41))
        .unwrap();
    let undated = Snapshot::paid_undated(
        snap(Status::Completed, 40).completion().cloned().unwrap(),
        None,
    );
    let _ = true_claim.observe_read(&CFG, &undated, at(42)).unwrap();
    assert_eq!(true_claim.refuted_claims(), 0);
}

/// A tracker bound to no session (bodies without a `session_id`, as Klarna's fixtures are) is
/// bound by the first action reported done, so that it drains and settles, and a later mixed-up
/// id is refused; a disable owed when the session ends on its own is owed no more. The
/// executor a newcomer writes (`while let Some(a) = next_action() { perform; let _ = done }`)
/// ends.
#[test]
fn done_binds_an_unbound_tracker_and_an_ended_session_owes_no_disable() {
    let config = TrackerConfig {
        abandon_after: Some(Duration::from_secs(60)),
        ..TrackerConfig::DEFAULT
    };
    let mut t = Tracker::default();
    let _ = t
        .observe_read(&config, &snap(Status::Waiting, 0), at(1))
        .unwrap();
    let r = t
        .observe_read(&config, &snap(Status::Waiting, 0), at(70_000))
        .unwrap();
    assert_eq!(kinds(&r), ["disable"]);
    // The consumer cancels before the merchant disables: the disable is not needed.
    let r = t
        .observe_read(&config, &snap(Status::Cancelled, 70_500), at(71_000))
        .unwrap();
    assert_eq!(kinds(&r), ["release"]);
    assert_eq!(t.owed().iter().collect::<Vec<_>>(), [ActionKind::Release]);
    assert_eq!(t.session_id(), None);
    let mine = SessionId::new("s-1").unwrap();
    let other = SessionId::new("s-2").unwrap();
    let mut performed = 0;
    while let Some(action) = t.next_action() {
        performed += 1;
        assert!(performed < 3, "the executor loops");
        let _ = t.done(action.id(&mine));
    }
    assert_eq!(performed, 1);
    assert_eq!(t.session_id(), Some(&mine));
    assert!(t.settled().is_some());
    let before = t.clone();
    assert!(matches!(
        t.done(ActionId::new(&other, ActionKind::Release)),
        Err(Refused::OtherSession(_))
    ));
    assert_eq!(t, before);
}

/// The disable's answer binds an unbound tracker too (the merchant's own call, for the id it
/// called), and another session's answer is refused after that; a redirect, which anyone can
/// open for any id, binds nothing.
#[test]
fn a_disable_answer_binds_an_unbound_tracker_and_a_redirect_does_not() {
    let mut t = Tracker::default();
    let _ = t
        .observe_read(&CFG, &snap(Status::Waiting, 0), at(1))
        .unwrap();
    let mine = SessionId::new("s-1").unwrap();
    let other = SessionId::new("s-2").unwrap();
    let _ = t
        .observe_redirect(&other, hpp_session::Redirect::Cancel, at(2))
        .unwrap();
    assert_eq!(t.session_id(), None, "a redirect bound the tracker");
    let r = t
        .observe_disable_answer(&mine, hpp_session::DisableAnswer::Disabled, at(3))
        .unwrap();
    assert_eq!(kinds(&r), ["release"]);
    assert_eq!(t.session_id(), Some(&mine));
    let before = t.clone();
    assert!(matches!(
        t.observe_disable_answer(&other, hpp_session::DisableAnswer::Disabled, at(4)),
        Err(Refused::OtherSession(_))
    ));
    assert_eq!(t, before);
}

/// A release owed and not done is owed no more once a `COMPLETED` of higher precedence is
/// confirmed (a 404 at expiry, then a late verified callback of a payment five minutes before
/// it): the executor that drains what is owed places the order and never releases the paid
/// cart; the contradiction is flagged for a person.
#[test]
fn a_paid_cart_is_no_longer_owed_the_release_it_was_asked_for() {
    let id = proved_session();
    let mut t = Tracker::for_session(id.clone());
    let _ = t
        .observe_read(&CFG, &snap(Status::InProgress, 0), at(60_000))
        .unwrap();
    let r = t.observe_not_found(at(EXPIRES)).unwrap();
    assert_eq!(kinds(&r), ["release"]);
    let paid = snap(Status::Completed, EXPIRES - 300_000);
    let r = t
        .observe_verified_callback(checked(), Some("e"), &paid, at(EXPIRES + 60_000))
        .unwrap();
    assert_eq!(kinds(&r), ["place_order"]);
    assert_eq!(
        t.owed().iter().collect::<Vec<_>>(),
        [ActionKind::PlaceOrder],
        "the paid cart is still owed a release"
    );
    assert!(t.has_conflict());
    t.done(ActionId::new(&id, ActionKind::PlaceOrder)).unwrap();
    assert!(t.settled().is_some());
    // The same with a cancel read first, and the authorization read after it.
    let mut t = Tracker::for_session(id);
    let _ = t
        .observe_read(&CFG, &snap(Status::Cancelled, 10_000), at(11_000))
        .unwrap();
    let _ = t
        .observe_read(&CFG, &snap(Status::Completed, 9_000), at(12_000))
        .unwrap();
    assert_eq!(
        t.owed().iter().collect::<Vec<_>>(),
        [ActionKind::PlaceOrder]
    );
}

/// An event id seen before, with another body (forged, or a sender's bug), after a confirmed
/// final: refuted like the first and counted once, and never reported as a duplicate, because
/// it raised the claim (the fuzz target `snapshot_schedule` found it reported `Duplicate`,
/// an outcome that promises nothing changed). Either order ends in the same state.
#[test]
fn a_seen_event_id_with_another_body_is_refuted_once_not_a_duplicate() {
    let disabled = snap(Status::Disabled, 0);
    let back = snap(Status::Back, 2_000);
    let cancelled = snap(Status::Cancelled, 94_000);
    let mut t = Tracker::default();
    t.observe_read(&CFG, &disabled, at(100_001)).unwrap();
    let first = t
        .observe_callback(&CFG, Some("e"), &back, at(100_002))
        .unwrap();
    assert!(matches!(first.outcome(), Outcome::Refuted { .. }));
    let before = t.clone();
    let second = t
        .observe_callback(&CFG, Some("e"), &cancelled, at(100_003))
        .unwrap();
    assert_eq!(
        second.outcome(),
        Outcome::Refuted {
            known: Status::Disabled,
            claimed: Status::Cancelled,
            kind: ConflictKind::TwoFinals
        }
    );
    assert_ne!(t, before);
    assert_eq!(t.refuted_claims(), 1);
    assert!(!t.has_conflict());
    // The very same body again is a duplicate, and changes nothing.
    let before = t.clone();
    let again = t
        .observe_callback(&CFG, Some("e"), &cancelled, at(100_004))
        .unwrap();
    assert_eq!(again.outcome(), Outcome::Duplicate);
    assert_eq!(t, before);
    // The other order: the same state.
    let mut u = Tracker::default();
    u.observe_callback(&CFG, Some("e"), &cancelled, at(100_001))
        .unwrap();
    u.observe_callback(&CFG, Some("e"), &back, at(100_002))
        .unwrap();
    u.observe_read(&CFG, &disabled, at(100_003)).unwrap();
    assert_eq!(u.state(), t.state());
    assert_eq!(u.refuted_claims(), 1);
}
