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
    s.authorize(&completion, at(4)).unwrap();
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
                Event::Authorize => s.authorize(&Completion::authorized(&token).unwrap(), t),
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

/// Every action in its one serialized form, with the keys written out by hand (the oracle), and
/// back; forms whose fields do not fit their kind are refused, by both parsers.
#[test]
fn actions_have_one_serialized_form_and_read_back() {
    use hpp_session::{
        Action, AuthorizationToken, IdError, IdKind, KlarnaReference, OrderId, ReleaseReason,
        SessionId,
    };
    let at: Timestamp = "2019-05-13T15:54:04.675Z".parse().unwrap();
    let token = AuthorizationToken::new("a1a8f727").unwrap();
    let cases = [
        (
            Action::PlaceOrder {
                authorization_token: token.clone(),
                place_by: Some(at),
            },
            r#"{"kind":"place_order","authorization_token":"a1a8f727","place_by":"2019-05-13T15:54:04.675Z"}"#,
        ),
        (
            Action::PlaceOrder {
                authorization_token: token,
                place_by: None,
            },
            r#"{"kind":"place_order","authorization_token":"a1a8f727","place_by":null}"#,
        ),
        (
            Action::RecordOrder {
                order_id: OrderId::new("93d6").unwrap(),
                klarna_reference: Some(KlarnaReference::new("X438").unwrap()),
            },
            r#"{"kind":"record_order","order_id":"93d6","klarna_reference":"X438"}"#,
        ),
        (
            Action::RecordOrder {
                order_id: OrderId::new("93d6").unwrap(),
                klarna_reference: None,
            },
            r#"{"kind":"record_order","order_id":"93d6"}"#,
        ),
        (
            Action::ReviewCompletion {
                problem: CompletionProblem::Missing,
            },
            r#"{"kind":"review_completion","problem":"missing"}"#,
        ),
        (
            Action::ReviewCompletion {
                problem: CompletionProblem::Id(IdError {
                    kind: IdKind::OrderId,
                    len: 300,
                }),
            },
            r#"{"kind":"review_completion","problem":{"id":{"field":"order_id","len":300}}}"#,
        ),
        (
            Action::Release {
                reason: ReleaseReason::Expired,
            },
            r#"{"kind":"release","reason":"EXPIRED"}"#,
        ),
        (Action::Disable, r#"{"kind":"disable"}"#),
    ];
    for (action, json) in cases {
        assert_eq!(serde_json::to_string(&action).unwrap(), json);
        let mut buf = [0u8; 256];
        let n = serde_json_core::to_slice(&action, &mut buf).unwrap();
        assert_eq!(core::str::from_utf8(&buf[..n]).unwrap(), json);
        assert_eq!(serde_json::from_str::<Action>(json).unwrap(), action);
        assert_eq!(serde_json_core::from_str::<Action>(json).unwrap().0, action);
    }
    for bad in [
        r#"{"kind":"place_order"}"#,
        r#"{"kind":"place_order","authorization_token":"t","reason":"EXPIRED"}"#,
        r#"{"kind":"record_order","authorization_token":"t"}"#,
        r#"{"kind":"release"}"#,
        r#"{"kind":"disable","order_id":"o"}"#,
        // Reads are the schedule's, not actions, since 0.2.
        r#"{"kind":"read_session"}"#,
        r#"{"kind":"refund"}"#,
        r#"{"kind":"release","reason":"EXPIRED","extra":1}"#,
    ] {
        assert!(serde_json::from_str::<Action>(bad).is_err(), "{bad}");
        assert!(serde_json_core::from_str::<Action>(bad).is_err(), "{bad}");
    }
    let session = SessionId::new("39a1c773").unwrap();
    let release = Action::Release {
        reason: ReleaseReason::Cancelled,
    };
    assert_eq!(release.id(&session).to_string(), "39a1c773/release");
}

/// The authorization token is a credential: `Debug` and `Display` never show it, nor do the
/// action, completion and snapshot that carry it; only `expose_secret` and serialization do.
#[test]
fn the_authorization_token_is_never_printed() {
    use hpp_session::{Action, AuthorizationToken, Snapshot, Status, Tracker};
    let secret = "a1a8f727-2756-6058-bd3c-40069be0994b";
    let token = AuthorizationToken::new(secret).unwrap();
    let completion = Completion::authorized(secret).unwrap();
    let at: Timestamp = "2019-05-13T14:54:04.675Z".parse().unwrap();
    let snapshot = Snapshot::new(Status::Completed, at, None, Some(completion.clone())).unwrap();
    let mut tracker = Tracker::default();
    let _ = tracker
        .observe_read(&hpp_session::TrackerConfig::DEFAULT, &snapshot, at)
        .unwrap();
    let action: Vec<Action> = tracker.actions().collect();
    let printed = [
        format!("{token} {token:?}"),
        format!("{completion:?}"),
        format!("{snapshot:?}"),
        format!("{tracker:?}"),
        format!(
            "{:?}",
            serde_json::from_str::<hpp_session::wire::SessionBody<'_>>(&format!(
                r#"{{"status":"COMPLETED","authorization_token":"{secret}"}}"#
            ))
            .unwrap()
        ),
        format!("{:?} {}", action[0], action[0]),
    ];
    for text in &printed {
        assert!(!text.contains(secret), "{text}");
        assert!(text.contains("<redacted>"), "{text}");
    }
    assert_eq!(token.expose_secret(), secret);
    assert!(serde_json::to_string(&action[0]).unwrap().contains(secret));
    // A body's fields as `Debug` shows them: the token hidden, an escaped string too long to
    // keep by its length.
    let long = "\\/".repeat(300);
    let json =
        format!(r#"{{"status":"COMPLETED","authorization_token":"{secret}","order_id":"{long}"}}"#);
    let body = serde_json::from_str::<hpp_session::wire::SessionBody<'_>>(&json).unwrap();
    let fields = "session_id: None, status: Some(\"COMPLETED\"), updated_at: None, expires_at: None, \
                  authorization_token: Some(\"<redacted>\"), order_id: Some(<300 bytes>), \
                  klarna_reference: None";
    assert_eq!(format!("{body:?}"), format!("SessionBody {{ {fields} }}"));
    assert_eq!(
        format!("{:?}", body.fields()),
        format!("SessionFields {{ {fields} }}")
    );
}

/// Trackers stored by version 0.1.0 (`tests/data/trackers-0.1.0.txt`, written by that version's
/// serializer: each carries its policy and no `owed`) still load. Their policy is ignored: the
/// caller's applies. They owe nothing: in 0.1 the actions were return values in the caller's
/// own queue, which stays the record of what is pending; a caller that wants the tracker to owe
/// them adds `owed` before loading. The read a claim asked for is dropped (reads are the
/// schedule's); a tracker made from the create response and never read counts its creation as
/// its first read, as trackers do now.
#[test]
fn trackers_stored_by_0_1_still_load() {
    use core::time::Duration;
    use hpp_session::{Action, ActionKind, ReleaseReason, Status, Tracker, TrackerConfig, Urgency};
    let stored = include_str!("data/trackers-0.1.0.txt");
    let tracker = |name: &str| -> Tracker {
        let line = stored
            .lines()
            .find_map(|l| l.strip_prefix(name).and_then(|l| l.strip_prefix(' ')))
            .unwrap();
        assert!(line.contains(r#""reads":"#) && !line.contains(r#""owed""#));
        serde_json::from_str(line).unwrap()
    };
    let config = TrackerConfig::DEFAULT;
    let ts = |s: &str| s.parse::<Timestamp>().unwrap();

    let created = tracker("CREATED");
    assert_eq!(created.status(), None);
    let first = created
        .next_read(&config, ts("2019-05-13T14:52:00Z"))
        .unwrap();
    assert_eq!(first.urgency, Urgency::Initial);
    assert!(first.at > ts("2019-05-13T15:35:00Z") && first.at <= ts("2019-05-13T15:36:43.507Z"));
    // The policy is the caller's now: the stored one (a time limit of 2 h) is gone.
    let limited = TrackerConfig {
        abandon_after: Some(Duration::from_secs(20 * 60)),
        ..config
    };
    assert_eq!(
        created
            .next_read(&limited, ts("2019-05-13T14:52:00Z"))
            .unwrap()
            .at,
        ts("2019-05-13T15:11:43.507Z")
    );

    // A claim's read request (bit 8) is dropped; the claim still makes a read urgent.
    let claimed = tracker("CLAIMED");
    assert!(claimed.asked().is_empty() && claimed.owed().is_empty());
    let urgent = claimed
        .next_read(&config, ts("2019-05-13T15:40:02Z"))
        .unwrap();
    assert_eq!(urgent.urgency, Urgency::Confirm);

    // Paid: the order was asked for (it is in the 0.1 caller's queue), and is not asked again.
    let paid = tracker("PAID");
    assert!(paid.asked().contains(ActionKind::PlaceOrder) && paid.owed().is_empty());
    assert_eq!(paid.next_action(), None);
    assert_eq!(paid.status(), Some(Status::Completed));
    assert!(paid.settled().is_some());

    // A caller that kept its queue adds `owed` from it: then the tracker owes it, with its data.
    let line = stored
        .lines()
        .find_map(|l| l.strip_prefix("PAID "))
        .unwrap();
    let owing: Tracker = serde_json::from_str(&line.replacen('{', r#"{"owed":1,"#, 1)).unwrap();
    let Some(Action::PlaceOrder {
        authorization_token,
        place_by,
    }) = owing.next_action()
    else {
        panic!("the order is not owed");
    };
    assert_eq!(
        authorization_token.expose_secret(),
        "a1a8f727-2756-6058-bd3c-40069be0994b"
    );
    assert_eq!(place_by, Some(ts("2019-05-13T16:40:00Z")));
    // ... but not what its confirmed state cannot say (a release of a paid session).
    assert!(serde_json::from_str::<Tracker>(&line.replacen('{', r#"{"owed":4,"#, 1)).is_err());

    // Abandoned: the disable was asked; the time limit is not asked again.
    let abandoned = tracker("ABANDONED");
    assert!(abandoned.asked().contains(ActionKind::Disable));
    assert_eq!(abandoned.next_action(), None);

    // Cancelled: the release reason is kept.
    let cancelled = tracker("CANCELLED");
    assert!(cancelled.asked().contains(ActionKind::Release));
    let line = stored
        .lines()
        .find_map(|l| l.strip_prefix("CANCELLED "))
        .unwrap();
    let owing: Tracker = serde_json::from_str(&line.replacen('{', r#"{"owed":4,"#, 1)).unwrap();
    assert_eq!(
        owing.next_action(),
        Some(Action::Release {
            reason: ReleaseReason::Cancelled
        })
    );
    // Stored again, they carry what they owe and no policy.
    let again = serde_json::to_string(&owing).unwrap();
    assert!(
        again.contains(r#""owed":4"#) && !again.contains("reads"),
        "{again}"
    );
    assert_eq!(serde_json::from_str::<Tracker>(&again).unwrap(), owing);
}

/// What is stored reads back as it was: a policy with every setting changed, a tracker created
/// and never read (its first read stays where `first` put it), and one that refuted claims.
#[test]
fn policies_and_trackers_read_back_as_stored() {
    use core::time::Duration;
    use hpp_session::{ReadPolicy, SessionId, Snapshot, Tracker, TrackerConfig};
    let minutes = |m: u64| Duration::from_secs(60 * m);
    let policy = ReadPolicy::DEFAULT
        .with_detect_within(minutes(30))
        .and_then(|p| p.with_poll_lag(minutes(2)))
        .and_then(|p| p.with_first(minutes(5)))
        .and_then(|p| p.with_hint_gap(minutes(3)))
        .unwrap();
    let text = serde_json::to_string(&policy).unwrap();
    assert_eq!(serde_json::from_str::<ReadPolicy>(&text).unwrap(), policy);
    let config = TrackerConfig {
        reads: policy,
        ..TrackerConfig::DEFAULT
    };

    let id = SessionId::new("s-1").unwrap();
    let created = Tracker::created(id.clone(), at(0));
    let back: Tracker = serde_json::from_str(&serde_json::to_string(&created).unwrap()).unwrap();
    assert_eq!(back, created);
    assert_eq!(
        back.next_read(&config, at(0)).map(|n| n.at),
        Some(at(5 * 60_000))
    );

    let mut refuting = Tracker::for_session(id);
    let expires = Some(at(48 * 3_600_000));
    let cancelled = Snapshot::new(Status::Cancelled, at(1_000), expires, None).unwrap();
    refuting
        .observe_read(&config, &cancelled, at(2_000))
        .unwrap();
    let waiting = Snapshot::new(Status::InProgress, at(3_000), expires, None).unwrap();
    let _ = refuting.observe_callback(&config, Some("e1"), &waiting, at(4_000));
    assert_eq!(refuting.refuted_claims(), 1);
    let back: Tracker = serde_json::from_str(&serde_json::to_string(&refuting).unwrap()).unwrap();
    assert_eq!(back, refuting);
}
