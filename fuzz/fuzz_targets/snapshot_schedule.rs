//! Arbitrary snapshot schedules (contradictory ones included) into two trackers, one in the
//! given order and one in reverse. Checks: equal states; observations that change nothing leave
//! the tracker equal; each action kind at most once; money only from a confirmed completion, and
//! under the default trust only from a read; a final status only gives way to an authorization;
//! once confirmed evidence showed `COMPLETED` the cart is never released; money and a release
//! together only with a reported conflict.
#![no_main]

use hpp_session::{
    Action, ActionKind, ActionSet, Completion, CompletionProblem, Outcome, Snapshot, Status,
    Timestamp, Tracker, TrackerConfig, callback_secret_matches,
};
use libfuzzer_sys::arbitrary::{self, Arbitrary};
use libfuzzer_sys::fuzz_target;

#[derive(Arbitrary, Debug)]
struct Item {
    read: bool,
    status: u8,
    updated_at: u8,
    expires_at: Option<u8>,
    completion: u8,
    event_id: Option<u8>,
}

#[derive(Arbitrary, Debug)]
struct Schedule {
    verified: bool,
    items: Vec<Item>,
    not_found_at: Option<u8>,
}

fn snapshot(item: &Item) -> Snapshot {
    let t = |s: u8| Timestamp::from_unix(1_557_759_177 + i64::from(s), 0).unwrap();
    let status = Status::ALL[usize::from(item.status) % Status::COUNT];
    let completion = (status == Status::Completed).then(|| match item.completion % 5 {
        0 => Completion::authorized("token-a").unwrap(),
        1 => Completion::authorized("token-b").unwrap(),
        2 => Completion::order_placed("order", "REF").unwrap(),
        3 => Completion::from_fields(None, Some("order"), None).unwrap(),
        _ => Completion::Unusable(CompletionProblem::Missing),
    });
    Snapshot::new(
        status,
        t(item.updated_at),
        item.expires_at.map(t),
        completion,
    )
    .unwrap()
}

/// `verified`: the integrator checked each callback's secret and observes it as evidence.
fn run(verified: bool, items: &[&Item]) -> Tracker {
    // A checked secret binds an unbound tracker even when its body changes nothing (that is a
    // change, and `tracker_ops` fuzzes it): bound from the start, a verified run checks that a
    // callback that changes nothing leaves the tracker equal.
    let mut tracker = if verified {
        Tracker::for_session(hpp_session::SessionId::new("s").unwrap())
    } else {
        Tracker::default()
    };
    let mut asked = ActionSet::EMPTY;
    let mut paid = false;
    for (i, item) in items.iter().enumerate() {
        let now = Timestamp::from_unix(1_600_000_000 + i as i64, 0).unwrap();
        let s = snapshot(item);
        let id = item.event_id.map(|e| [b'e', e]);
        let id = id.as_ref().map(|b| core::str::from_utf8(&b[..1]).unwrap());
        let before = tracker.clone();
        let confirming = item.read || verified;
        let report = if item.read {
            tracker
                .observe_read(&TrackerConfig::DEFAULT, &s, now)
                .expect("no session ids here")
        } else if verified {
            let session = hpp_session::SessionId::new("s").unwrap();
            let checked = callback_secret_matches(&session, b"secret", b"secret").unwrap();
            tracker
                .observe_verified_callback(checked, id, &s, now)
                .unwrap()
        } else {
            // Stamped in 2019, observed in 2020: never refused as coming from the future.
            tracker
                .observe_callback(&TrackerConfig::DEFAULT, id, &s, now)
                .unwrap()
        };
        let outcome = report.outcome();
        let new = report.newly_owed();
        let actions: Vec<Action> = new.iter().filter_map(|k| tracker.action(k)).collect();
        assert_eq!(actions.len(), new.iter().count());
        // What it asked for stays owed (nothing here reports it done), unless confirmed evidence
        // replaced the completion a money action was asked for; what is owed has its data.
        assert!(tracker.owed().without(tracker.asked()).is_empty());
        assert!(tracker.owed().iter().all(|k| tracker.action(k).is_some()));
        assert!(new.without(ActionSet::EMPTY) == new);
        for kind in new.iter() {
            assert!(!asked.contains(kind), "{kind:?} asked twice");
        }
        asked = asked.union(new);
        if !outcome.changed() {
            if item.read {
                // A read that changes nothing is still a read: only the schedule counts it.
                assert_eq!(
                    tracker.state(),
                    before.state(),
                    "{outcome:?} changed the state"
                );
                assert_eq!(tracker.asked(), before.asked());
            } else {
                assert_eq!(tracker, before, "{outcome:?} changed the tracker");
            }
        }
        paid |= confirming && s.status() == Status::Completed;
        if paid {
            assert!(!new.contains(ActionKind::Release), "released a paid cart");
        }
        if asked.iter().any(ActionKind::is_money) && asked.contains(ActionKind::Release) {
            assert!(
                tracker.has_conflict(),
                "money and a release without a conflict"
            );
        }
        let money = new.iter().any(ActionKind::is_money);
        if money {
            assert!(tracker.is_confirmed() && tracker.status() == Some(Status::Completed));
            if !verified {
                assert!(item.read, "money from an unsigned callback");
            }
        }
        // A final status gives way only to a contradicting snapshot of higher precedence, and
        // never silently: the observation is a reported conflict.
        if let Some(was) = before.status().filter(|s| s.is_final()) {
            if tracker.status() != Some(was) {
                assert!(
                    matches!(
                        outcome,
                        Outcome::Conflict { .. } | Outcome::Contradicts { .. }
                    ),
                    "{was} silently gave way"
                );
                assert!(tracker.has_conflict());
            }
        }
    }
    tracker
}

fuzz_target!(|schedule: Schedule| {
    let forward: Vec<&Item> = schedule.items.iter().collect();
    let backward: Vec<&Item> = schedule.items.iter().rev().collect();
    let mut a = run(schedule.verified, &forward);
    let mut b = run(schedule.verified, &backward);
    assert_eq!(a.state(), b.state());
    if let Some(s) = schedule.not_found_at {
        let now = Timestamp::from_unix(1_557_759_177 + i64::from(s), 0).unwrap();
        let (ra, rb) = (
            a.observe_not_found(now).is_ok(),
            b.observe_not_found(now).is_ok(),
        );
        assert_eq!(ra, rb);
        assert_eq!(a.state(), b.state());
    }
});
