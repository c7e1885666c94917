//! Klarna's JSON bodies through the borrowing wire types, with `serde_json` (std) and
//! `serde-json-core` (no_std).
#![cfg(feature = "serde")]

use hpp_session::wire::{CallbackBody, SessionBody};
use hpp_session::{
    Completion, IdKind, SnapshotError, Status, Timestamp, TimestampErrorKind, TimestampField,
};

const READ: &str = r#"{"session_id":"39a1c773-bafd-754d-af1f-b30c592f1267","status":"IN_PROGRESS",
 "updated_at":"2019-05-13T14:52:57.540Z","expires_at":"2019-05-15T13:51:43.507Z"}"#;
const CALLBACK: &str = r#"{"event_id":"27ba32b0-644b-4b22-94a9-dac503bcae18","session":{"session_id":"39a1c773-bafd-754d-af1f-b30c592f1267",
 "status":"COMPLETED","authorization_token":"a1a8f727-2756-6058-bd3c-40069be0994b",
 "updated_at":"2019-05-13T14:54:04.675Z","expires_at":"2019-05-15T13:51:43.507Z"}}"#;
const ORDER: &str = r#"{"session_id":"39a1c773","status":"COMPLETED","order_id":"93d644a2-43f3-11e9-b210-d663bd873d93",
 "klarna_reference":"X438HG0Q","updated_at":"2019-05-13T14:54:04.675Z","expires_at":"2019-05-15T13:51:43.507Z",
 "customer":{"email":"x@example.com","nested":[1,{"a":null}]},"unknown_field":true}"#;
const MANUAL: &str = r#"{"session_id":"s","status":"MANUAL_ID_CHECK","updated_at":"2019-05-13T14:54:04Z",
 "manual_identification":{"status":"PENDING","expires_at":"2019-05-13T15:54:04Z"}}"#;

/// Parses `json` as a session object with both crates; they must agree.
fn both(json: &str) -> SessionBody<'_> {
    let a: SessionBody<'_> = serde_json::from_str(json).unwrap();
    let (b, _) = serde_json_core::from_str::<SessionBody<'_>>(json).unwrap();
    assert_eq!(a, b);
    a
}

#[test]
fn the_shapes_in_klarnas_examples_parse() {
    let read = both(READ).snapshot().unwrap();
    assert_eq!(read.status(), Status::InProgress);
    assert_eq!(
        read.expires_at(),
        Some("2019-05-15T13:51:43.507Z".parse::<Timestamp>().unwrap())
    );
    assert_eq!(read.completion(), None);

    let cb: CallbackBody<'_> = serde_json::from_str(CALLBACK).unwrap();
    let (cb2, _) = serde_json_core::from_str::<CallbackBody<'_>>(CALLBACK).unwrap();
    assert_eq!(cb, cb2);
    assert_eq!(cb.event_id, Some("27ba32b0-644b-4b22-94a9-dac503bcae18"));
    let s = cb.session.snapshot().unwrap();
    assert_eq!(
        s.completion(),
        Some(&Completion::authorized("a1a8f727-2756-6058-bd3c-40069be0994b").unwrap())
    );
    assert_eq!(
        cb.session.session_id().unwrap().unwrap().as_str(),
        "39a1c773-bafd-754d-af1f-b30c592f1267"
    );

    let order = both(ORDER).snapshot().unwrap();
    assert_eq!(
        order.completion(),
        Some(
            &Completion::order_placed("93d644a2-43f3-11e9-b210-d663bd873d93", "X438HG0Q").unwrap()
        )
    );

    assert_eq!(
        both(MANUAL).snapshot().unwrap().status(),
        Status::ManualIdCheck
    );
}

#[test]
fn strings_are_borrowed_from_the_input() {
    let body = both(READ);
    let status = body.status.unwrap();
    let range = READ.as_bytes().as_ptr_range();
    assert!(
        range.contains(&status.as_ptr()),
        "status points into the input"
    );
}

#[test]
fn malformed_bodies_are_typed_errors() {
    let snapshot = |json: &str| both(json).snapshot().unwrap_err();
    assert_eq!(
        snapshot(r#"{"updated_at":"2019-05-13T14:52:57.540Z"}"#),
        SnapshotError::MissingStatus
    );
    let err = snapshot(r#"{"status":"COMPLETE","updated_at":"2019-05-13T14:52:57.540Z"}"#);
    assert!(matches!(err, SnapshotError::UnknownStatus(e) if e.input().as_str() == "COMPLETE"));
    assert_eq!(err.to_string(), r#"unknown session status "COMPLETE""#);
    assert_eq!(
        snapshot(r#"{"status":"WAITING"}"#),
        SnapshotError::MissingUpdatedAt
    );
    let err = snapshot(r#"{"status":"WAITING","updated_at":"2019-02-30T00:00:00Z"}"#);
    assert!(
        matches!(err, SnapshotError::Timestamp(TimestampField::UpdatedAt, e) if e.kind() == TimestampErrorKind::Day)
    );
    assert!(
        err.to_string().starts_with("updated_at: invalid timestamp"),
        "{err}"
    );
    let err = snapshot(
        r#"{"status":"WAITING","updated_at":"2019-05-13T14:52:57Z","expires_at":"tomorrow"}"#,
    );
    assert!(matches!(
        err,
        SnapshotError::Timestamp(TimestampField::ExpiresAt, _)
    ));
    assert_eq!(
        snapshot(r#"{"status":"COMPLETED","updated_at":"2019-05-13T14:52:57Z"}"#),
        SnapshotError::MissingCompletion
    );
    assert_eq!(
        snapshot(
            r#"{"status":"BACK","updated_at":"2019-05-13T14:52:57Z","authorization_token":"t"}"#
        ),
        SnapshotError::UnexpectedCompletion(Status::Back)
    );
    assert_eq!(
        snapshot(
            r#"{"status":"COMPLETED","updated_at":"2019-05-13T14:52:57Z","authorization_token":"t","order_id":"o","klarna_reference":"r"}"#
        ),
        SnapshotError::AmbiguousCompletion
    );
    assert_eq!(
        snapshot(r#"{"status":"COMPLETED","updated_at":"2019-05-13T14:52:57Z","order_id":"o"}"#),
        SnapshotError::AmbiguousCompletion
    );
    let long = format!(
        r#"{{"status":"COMPLETED","updated_at":"2019-05-13T14:52:57Z","authorization_token":"{}"}}"#,
        "a".repeat(256)
    );
    let err = snapshot(&long);
    assert!(
        matches!(err, SnapshotError::Id(e) if e.kind == IdKind::AuthorizationToken && e.len == 256)
    );
    let long_id = format!(
        r#"{{"session_id":"{}","status":"WAITING"}}"#,
        "s".repeat(300)
    );
    assert!(
        matches!(both(&long_id).session_id(), Err(SnapshotError::Id(e)) if e.kind == IdKind::SessionId)
    );
}

#[test]
fn wrong_types_fail_in_both_parsers() {
    for json in [
        r#"{"status":5}"#,
        r#"{"status":["WAITING"]}"#,
        r#"{"updated_at":{"t":1}}"#,
        r#"["status","WAITING"]"#,
        r#"[null,"COMPLETED","2019-05-13T14:52:57Z",null,"tok"]"#,
        r#"{"status":"WAITING""#,
        r#""#,
    ] {
        assert!(
            serde_json::from_str::<SessionBody<'_>>(json).is_err(),
            "{json}"
        );
        assert!(
            serde_json_core::from_str::<SessionBody<'_>>(json).is_err(),
            "{json}"
        );
    }
    assert!(
        serde_json::from_str::<CallbackBody<'_>>(r#"{"event_id":"e"}"#).is_err(),
        "session is required"
    );
}
