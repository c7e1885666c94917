//! Klarna's JSON bodies through the borrowing wire types, with `serde_json` (std) and
//! `serde-json-core` (no_std).
#![cfg(feature = "serde")]

use hpp_session::wire::{CallbackBody, SessionBody, Text};
use hpp_session::{
    Completion, CompletionProblem, IdError, IdKind, KlarnaReference, OrderId, SnapshotError,
    Status, Timestamp, TimestampErrorKind, TimestampField,
};
use proptest::prelude::*;

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
    assert_eq!(
        cb.event_id,
        Some("27ba32b0-644b-4b22-94a9-dac503bcae18".into())
    );
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
    let Some(Text::Borrowed(status)) = body.status else {
        panic!("the status was copied: {:?}", body.status)
    };
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
        snapshot(
            r#"{"status":"BACK","updated_at":"2019-05-13T14:52:57Z","authorization_token":"t"}"#
        ),
        SnapshotError::UnexpectedCompletion(Status::Back)
    );
    // Strict on a status that is not paid: an over-long token there is still an error.
    let long = format!(
        r#"{{"status":"FAILED","updated_at":"2019-05-13T14:52:57Z","authorization_token":"{}"}}"#,
        "a".repeat(256)
    );
    assert_eq!(
        snapshot(&long),
        SnapshotError::UnexpectedCompletion(Status::Failed)
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

/// The API reference's sample read body (`SessionResponseV1` in Klarna's OpenAPI document): a
/// `COMPLETED` session with a token, an order id and a Klarna reference at once.
const API_REFERENCE_SAMPLE: &str = r#"{"authorization_token":"70850a20-a2a0-5c70-810c-096fa6f850bb",
 "expires_at":"2038-01-19T03:14:07.000Z","klarna_reference":"ffc25786",
 "order_id":"93d644a2-43f3-11e9-b210-d663bd873d93","session_id":"a15b228c-02ad-11e9-8eb2-f2801f1b9fd1",
 "status":"COMPLETED","updated_at":"2038-01-19T03:14:07.000Z"}"#;

fn completion_of(json: &str) -> Completion {
    both(json).snapshot().unwrap().completion().unwrap().clone()
}

fn order(order_id: &str, reference: Option<&str>) -> Completion {
    Completion::OrderPlaced {
        order_id: OrderId::new(order_id).unwrap(),
        klarna_reference: reference.map(|r| KlarnaReference::new(r).unwrap()),
    }
}

#[test]
fn every_completion_shape_klarna_publishes_is_a_paid_session() {
    // The guides: a token alone (Klarna Payments), an order with its reference (PLACE_ORDER).
    let cb: CallbackBody<'_> = serde_json::from_str(CALLBACK).unwrap();
    assert_eq!(
        cb.session.snapshot().unwrap().completion(),
        Some(&Completion::authorized("a1a8f727-2756-6058-bd3c-40069be0994b").unwrap())
    );
    assert_eq!(
        completion_of(ORDER),
        order("93d644a2-43f3-11e9-b210-d663bd873d93", Some("X438HG0Q"))
    );
    // The API reference's sample: Klarna placed the order; the token is never used.
    assert_eq!(
        completion_of(API_REFERENCE_SAMPLE),
        order("93d644a2-43f3-11e9-b210-d663bd873d93", Some("ffc25786"))
    );
    // The same shape inside a callback (as an integrator's public test fixture has it).
    let callback = format!(r#"{{"event_id":"e","session":{API_REFERENCE_SAMPLE}}}"#);
    let cb: CallbackBody<'_> = serde_json::from_str(&callback).unwrap();
    assert_eq!(
        cb.session.snapshot().unwrap().completion(),
        Some(&order(
            "93d644a2-43f3-11e9-b210-d663bd873d93",
            Some("ffc25786")
        ))
    );
    // Klarna Checkout: an order id alone, no token.
    assert_eq!(
        completion_of(
            r#"{"status":"COMPLETED","order_id":"93d644a2-43f3-11e9-b210-d663bd873d93","updated_at":"2019-05-13T14:54:04.675Z"}"#
        ),
        order("93d644a2-43f3-11e9-b210-d663bd873d93", None)
    );
    // Nothing the crate can act on: still COMPLETED, for a person to look at.
    let nothing = both(r#"{"status":"COMPLETED","updated_at":"2019-05-13T14:52:57Z"}"#)
        .snapshot()
        .unwrap();
    assert_eq!(nothing.status(), Status::Completed);
    assert_eq!(
        nothing.completion(),
        Some(&Completion::Unusable(CompletionProblem::Missing))
    );
    assert_eq!(
        completion_of(
            r#"{"status":"COMPLETED","updated_at":"2019-05-13T14:52:57Z","authorization_token":"t","klarna_reference":"r"}"#
        ),
        Completion::Unusable(CompletionProblem::ReferenceWithoutOrder)
    );
    let long = format!(
        r#"{{"status":"COMPLETED","updated_at":"2019-05-13T14:52:57Z","authorization_token":"{}"}}"#,
        "a".repeat(256)
    );
    let problem = CompletionProblem::Id(IdError {
        kind: IdKind::AuthorizationToken,
        len: 256,
    });
    assert_eq!(completion_of(&long), Completion::Unusable(problem));
    assert_eq!(
        problem.to_string(),
        "authorization_token is 256 bytes long; at most 255 are accepted"
    );
    assert_eq!(
        completion_of(
            r#"{"status":"COMPLETED","updated_at":"2019-05-13T14:52:57Z","authorization_token":"t","order_id":""}"#
        ),
        Completion::Unusable(CompletionProblem::Id(IdError {
            kind: IdKind::OrderId,
            len: 0
        }))
    );
}

#[test]
fn a_read_body_without_a_session_id_is_a_snapshot() {
    let body = both(
        r#"{"status":"COMPLETED","authorization_token":"a1a8f727-2756-6058-bd3c-40069be0994b","updated_at":"2019-05-13T14:54:04.675Z"}"#,
    );
    assert_eq!(body.session_id(), Ok(None));
    assert_eq!(body.snapshot().unwrap().status(), Status::Completed);
}

/// A completion field as it may come: absent, empty, ordinary, at the bound, or over it.
fn field() -> impl Strategy<Value = Option<String>> {
    prop::option::of(prop_oneof![
        Just(String::new()),
        "[a-f0-9-]{1,40}",
        Just("x".repeat(255)),
        Just("y".repeat(256)),
    ])
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(4_096))]

    /// `Completion::from_fields` against the rules written here from `SPEC.md`: an order id
    /// always means Klarna placed the order (never a token to place one with); a token alone is
    /// placed; anything present and malformed is kept as a problem, never cut, never dropped.
    #[test]
    fn completion_fields_follow_the_rules(token in field(), order_id in field(), reference in field()) {
        let valid = |s: &Option<String>| s.as_ref().is_none_or(|s| (1..=255).contains(&s.len()));
        let got = Completion::from_fields(token.as_deref(), order_id.as_deref(), reference.as_deref());
        match (&token, &order_id, &reference) {
            (None, None, None) => prop_assert_eq!(got, None),
            (_, Some(o), r) if valid(&order_id) && valid(&reference) => {
                prop_assert_eq!(got, Some(order(o, r.as_deref())));
            }
            (_, Some(_), _) => prop_assert!(matches!(got, Some(Completion::Unusable(CompletionProblem::Id(_))))),
            (_, None, Some(_)) => prop_assert_eq!(got, Some(Completion::Unusable(CompletionProblem::ReferenceWithoutOrder))),
            (Some(t), None, None) if valid(&token) => prop_assert_eq!(got, Some(Completion::authorized(t).unwrap())),
            (Some(t), None, None) => prop_assert_eq!(got, Some(Completion::Unusable(CompletionProblem::Id(IdError { kind: IdKind::AuthorizationToken, len: t.len() })))),
        }
    }
}
