//! Arbitrary event sequences on one session, checked step by step against the spec's oracle
//! (the same rule-based oracle the tests use, written independently of the crate's table).
#![no_main]

use hpp_session::{Completion, Event, Session, SessionError, Status, Timestamp};
use libfuzzer_sys::fuzz_target;

#[path = "../../tests/common/oracle.rs"]
mod oracle;

fuzz_target!(|data: &[u8]| {
    let t0 = Timestamp::from_unix(1_557_759_177, 540_000_000).unwrap();
    let mut session = Session::new(t0);
    let (mut status, mut now, mut retries) = (Status::Waiting, t0, 0u32);
    // Each pair of bytes is one step: an event, and how far its stamp moves (some go back).
    for pair in data.chunks_exact(2) {
        let event = Event::ALL[usize::from(pair[0]) % Event::COUNT];
        let delta = i64::from(pair[1]) - 32;
        let stamp = Timestamp::from_unix(now.unix_seconds() + delta, now.subsec_nanos()).unwrap();
        let before = session.clone();
        let result = if event == Event::Authorize && pair[0] & 0x80 != 0 {
            session.authorize(&Completion::authorized("a1a8f727").unwrap(), stamp)
        } else {
            session.apply(event, stamp)
        };
        let expected = oracle::next(status, event);
        match result {
            Ok(edge) => {
                let to = expected.expect("accepted a pair the spec rejects");
                assert!(stamp >= now, "accepted an event stamped in the past");
                assert_eq!((edge.from, edge.event, edge.to), (status, event, to));
                if event == Event::Open && oracle::can_come_back(status) {
                    retries += 1;
                }
                status = to;
                now = stamp;
            }
            Err(err) => {
                assert_eq!(
                    session, before,
                    "a rejected event changed the session: {err}"
                );
                match err {
                    SessionError::NotAllowed { .. } => assert!(expected.is_none()),
                    SessionError::BeforeLastChange { .. } => assert!(stamp < now),
                    SessionError::CompletionRequired => assert_eq!(event, Event::Authorize),
                    _ => unreachable!("unknown error {err}"),
                }
            }
        }
        assert_eq!(session.status(), status);
        assert_eq!(session.changed_at(), now);
        assert_eq!(session.retries(), retries);
        assert_eq!(session.completion().is_some(), status == Status::Completed);
        if oracle::is_final(before.status()) {
            assert_eq!(session, before, "a final session changed");
        }
    }
});
