//! Arbitrary text as a status, a timestamp and a stored session: never a panic, and what parses
//! prints back to text that parses to the same value.
#![no_main]

use hpp_session::{Session, Status, Timestamp};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = core::str::from_utf8(data) else {
        return;
    };
    match Status::from_wire(text) {
        Ok(status) => assert_eq!(status.as_str(), text, "only exact wire names parse"),
        Err(err) => assert!(err.input().as_str().len() <= hpp_session::EXCERPT_CAPACITY),
    }
    if let Ok(t) = Timestamp::parse(text) {
        let printed = t.to_string();
        assert!(printed.len() <= Timestamp::MAX_TEXT_LEN);
        assert_eq!(
            Timestamp::parse(&printed),
            Ok(t),
            "format then parse changed {text:?}"
        );
    }
    if let Ok(session) = serde_json::from_str::<Session>(text) {
        assert_eq!(
            session.completion().is_some(),
            session.status() == Status::Completed
        );
        let json = serde_json::to_string(&session).unwrap();
        assert_eq!(serde_json::from_str::<Session>(&json).unwrap(), session);
    }
});
