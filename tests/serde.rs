//! Persistence through serde, with `serde_json` (std) and `serde-json-core` (no_std).
#![cfg(feature = "serde")]

mod common;

use common::at;
use hpp_session::{
    Completion, CompletionProblem, Event, IdError, IdKind, Session, Status, Timestamp,
};
use proptest::prelude::*;

fn completed(completion: Completion) -> Session {
    let mut s = Session::new(at(0));
    s.apply(Event::Open, at(1)).unwrap();
    s.apply(Event::GoBack, at(2)).unwrap();
    s.apply(Event::Open, at(3)).unwrap();
    s.authorize(completion, at(4)).unwrap();
    s
}

#[test]
fn statuses_are_wire_names_and_timestamps_are_rfc3339() {
    assert_eq!(
        serde_json::to_string(&Status::ManualIdCheck).unwrap(),
        r#""MANUAL_ID_CHECK""#
    );
    assert_eq!(
        serde_json::from_str::<Status>(r#""TIMEOUT""#).unwrap(),
        Status::Timeout
    );
    let t = at(0);
    assert_eq!(
        serde_json::to_string(&t).unwrap(),
        r#""2019-05-13T14:52:57.540Z""#
    );
    assert_eq!(
        serde_json::from_str::<Timestamp>(r#""2019-05-13T16:52:57.54+02:00""#).unwrap(),
        t
    );
}

#[test]
fn a_completed_session_round_trips_in_both_completion_shapes() {
    for c in [
        Completion::authorized("a1a8f727-2756-6058-bd3c-40069be0994b").unwrap(),
        Completion::order_placed("93d644a2-43f3-11e9-b210-d663bd873d93", "X438HG0Q").unwrap(),
    ] {
        let s = completed(c);
        let json = serde_json::to_string(&s).unwrap();
        assert_eq!(serde_json::from_str::<Session>(&json).unwrap(), s);
        let mut buf = [0u8; 1024];
        let n = serde_json_core::to_slice(&s, &mut buf).unwrap();
        assert_eq!(
            &buf[..n],
            json.as_bytes(),
            "both serializers write the same JSON"
        );
        let (back, used) = serde_json_core::from_slice::<Session>(&buf[..n]).unwrap();
        assert_eq!((back, used), (s, n));
    }
    let s = completed(Completion::authorized("tok").unwrap());
    assert_eq!(
        serde_json::to_string(&s).unwrap(),
        r#"{"status":"COMPLETED","changed_at":"2019-05-13T14:52:57.544Z","completion":{"authorization_token":"tok"},"retries":1}"#
    );
}

#[test]
fn stored_sessions_that_break_invariants_are_rejected() {
    let cases = [
        // COMPLETED without completion
        r#"{"status":"COMPLETED","changed_at":"2019-05-13T14:52:57.540Z","retries":0}"#,
        // completion on a non-final status
        r#"{"status":"BACK","changed_at":"2019-05-13T14:52:57.540Z","completion":{"authorization_token":"t"},"retries":0}"#,
        // both completion shapes at once
        r#"{"status":"COMPLETED","changed_at":"2019-05-13T14:52:57.540Z","completion":{"authorization_token":"t","order_id":"o","klarna_reference":"r"},"retries":0}"#,
        // a reference without its order, data next to a problem, an unknown problem
        r#"{"status":"COMPLETED","changed_at":"2019-05-13T14:52:57.540Z","completion":{"klarna_reference":"r"},"retries":0}"#,
        r#"{"status":"COMPLETED","changed_at":"2019-05-13T14:52:57.540Z","completion":{"order_id":"o","unusable":"missing"},"retries":0}"#,
        r#"{"status":"COMPLETED","changed_at":"2019-05-13T14:52:57.540Z","completion":{"unusable":"lost"},"retries":0}"#,
        r#"{"status":"COMPLETED","changed_at":"2019-05-13T14:52:57.540Z","completion":{"unusable":{"id":{"field":"name","len":3}}},"retries":0}"#,
        // unknown status, bad time, over-long token, wrong type
        r#"{"status":"EXPIRED","changed_at":"2019-05-13T14:52:57.540Z","retries":0}"#,
        r#"{"status":"WAITING","changed_at":"2019-05-13","retries":0}"#,
        r#"{"status":"WAITING","changed_at":12,"retries":0}"#,
    ];
    for json in cases {
        assert!(serde_json::from_str::<Session>(json).is_err(), "{json}");
        assert!(
            serde_json_core::from_str::<Session>(json).is_err(),
            "{json}"
        );
    }
    let err = serde_json::from_str::<Status>("5").unwrap_err().to_string();
    assert!(err.contains("expected a session status wire name"), "{err}");
    let err = serde_json::from_str::<Timestamp>("[]")
        .unwrap_err()
        .to_string();
    assert!(err.contains("expected an RFC 3339 timestamp"), "{err}");
    let long = format!(
        r#"{{"status":"COMPLETED","changed_at":"2019-05-13T14:52:57.540Z","completion":{{"authorization_token":"{}"}},"retries":0}}"#,
        "a".repeat(256)
    );
    let err = serde_json::from_str::<Session>(&long)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("authorization_token is 256 bytes long; at most 255"),
        "{err}"
    );
}

#[test]
fn every_completion_shape_round_trips_in_the_stored_form() {
    let shapes = [
        (
            Completion::authorized("tok").unwrap(),
            r#"{"authorization_token":"tok"}"#,
        ),
        (
            Completion::order_placed("o", "r").unwrap(),
            r#"{"order_id":"o","klarna_reference":"r"}"#,
        ),
        (
            Completion::from_fields(None, Some("o"), None).unwrap(),
            r#"{"order_id":"o"}"#,
        ),
        (
            Completion::Unusable(CompletionProblem::Missing),
            r#"{"unusable":"missing"}"#,
        ),
        (
            Completion::Unusable(CompletionProblem::ReferenceWithoutOrder),
            r#"{"unusable":"reference_without_order"}"#,
        ),
        (
            Completion::Unusable(CompletionProblem::Id(IdError {
                kind: IdKind::OrderId,
                len: 300,
            })),
            r#"{"unusable":{"id":{"field":"order_id","len":300}}}"#,
        ),
    ];
    for (completion, json) in shapes {
        assert_eq!(serde_json::to_string(&completion).unwrap(), json);
        assert_eq!(
            serde_json::from_str::<Completion>(json).unwrap(),
            completion
        );
        let mut buf = [0u8; 256];
        let n = serde_json_core::to_slice(&completion, &mut buf).unwrap();
        assert_eq!(&buf[..n], json.as_bytes());
        assert_eq!(
            serde_json_core::from_slice::<Completion>(json.as_bytes())
                .unwrap()
                .0,
            completion
        );
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(1_024))]

    /// Any session reachable by events round-trips through both serializers.
    #[test]
    fn sessions_round_trip(events in prop::collection::vec(0..Event::COUNT, 0..20), token in "[a-z0-9-]{1,255}") {
        let mut s = Session::new(at(0));
        for (i, e) in events.into_iter().enumerate() {
            let t = at(i as u64);
            let _ = match Event::ALL[e] {
                Event::Authorize => s.authorize(Completion::authorized(&token).unwrap(), t),
                e => s.apply(e, t),
            };
        }
        let json = serde_json::to_string(&s).unwrap();
        prop_assert_eq!(serde_json::from_str::<Session>(&json).unwrap(), s.clone());
        let mut buf = [0u8; 1024];
        let n = serde_json_core::to_slice(&s, &mut buf).unwrap();
        prop_assert_eq!(serde_json_core::from_slice::<Session>(&buf[..n]).unwrap().0, s);
    }
}
