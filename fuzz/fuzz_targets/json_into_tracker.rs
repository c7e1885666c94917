//! Arbitrary bytes as lines of callback or read JSON into one tracker: never a panic; a body
//! that parses but is invalid is a typed error that changes nothing; observations that change
//! nothing leave the tracker equal (a read, all but its schedule, which counts the read); each
//! action kind is asked for at most once.
#![no_main]

use hpp_session::wire::{CallbackBody, SessionBody};
use hpp_session::{ActionSet, Timestamp, Tracker, TrackerConfig};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let mut tracker = Tracker::default();
    let mut asked = ActionSet::EMPTY;
    for (i, line) in data.split(|&b| b == b'\n').enumerate() {
        let now = Timestamp::from_unix(1_557_759_177 + i as i64, 0).unwrap();
        let before = tracker.clone();
        let (event_id, body) = if let Ok(cb) = serde_json::from_slice::<CallbackBody<'_>>(line) {
            let event_id = cb.event_id().map(str::to_owned);
            (event_id, cb.session)
        } else if let Ok(read) = serde_json::from_slice::<SessionBody<'_>>(line) {
            (None, read)
        } else if line == b"404" {
            if tracker.observe_not_found(now).is_err() {
                assert_eq!(tracker, before);
            }
            continue;
        } else {
            continue;
        };
        let Ok(snapshot) = body.snapshot() else {
            assert_eq!(tracker, before);
            continue;
        };
        // Bodies name any session: the tracker binds to the first read that names one and
        // refuses the others, changing nothing.
        let observed = if i % 2 == 0 {
            tracker.observe_callback(&TrackerConfig::DEFAULT, event_id.as_deref(), &snapshot, now)
        } else {
            tracker.observe_read(&TrackerConfig::DEFAULT, &snapshot, now)
        };
        let report = match observed {
            Ok(report) => report,
            Err(_) => {
                assert_eq!(tracker, before, "a refused observation changed the tracker");
                continue;
            }
        };
        let (outcome, new) = (report.outcome(), report.newly_owed());
        for kind in new.iter() {
            assert!(!asked.contains(kind), "{kind:?} asked twice");
            // Owed, with its data, until reported done.
            assert!(tracker.owed().contains(kind) && tracker.action(kind).is_some());
        }
        assert!(tracker.owed().iter().all(|k| tracker.action(k).is_some()));
        asked = asked.union(new);
        if !outcome.changed() {
            if i % 2 == 0 {
                assert_eq!(tracker, before);
            } else {
                // A read that changes nothing is still a read: only the schedule counts it.
                assert_eq!(tracker.state(), before.state());
                assert_eq!(tracker.asked(), before.asked());
                assert_eq!(tracker.has_conflict(), before.has_conflict());
            }
        }
    }
});
