//! What the service makes of each input, case by case (no network): the secret decides
//! evidence or hint, a hint never asks for money, bad bodies and answers change nothing but the
//! read schedule.

use std::time::Duration;

use hpp_service::observe::{self, CallbackOutcome, ReadAnswer};
use hpp_session::{
    ActionKind, ReadFailure, Redirect, SessionId, Timestamp, Tracker, TrackerConfig,
};

/// The merchant's policy, held next to the trackers.
const CFG: TrackerConfig = TrackerConfig::DEFAULT;

const ID: &str = "39a1c773-bafd-754d-af1f-b30c592f1267";

fn at(text: &str) -> Timestamp {
    Timestamp::parse(text).expect("a timestamp")
}

fn tracker() -> Tracker {
    let id = SessionId::new(ID).expect("an id");
    Tracker::created(id, at("2019-05-13T14:51:43.507Z"))
}

fn completed() -> String {
    format!(
        r#"{{"session_id":"{ID}","status":"COMPLETED","authorization_token":"a1a8f727-2756-6058-bd3c-40069be0994b","updated_at":"2019-05-13T14:54:04.675Z","expires_at":"2019-05-15T13:51:43.507Z"}}"#
    )
}

fn callback(session: &str) -> Vec<u8> {
    format!(r#"{{"event_id":"27ba32b0-644b-4b22-94a9-dac503bcae18","session":{session}}}"#)
        .into_bytes()
}

fn kinds(asked: &[observe::Asked]) -> Vec<ActionKind> {
    asked.iter().map(|a| a.kind).collect()
}

const NOW: &str = "2019-05-13T14:54:05Z";

#[test]
fn a_callback_with_the_secret_is_evidence_and_asks_for_the_order() {
    let mut t = tracker();
    let (outcome, asked) = observe::callback(
        &mut t,
        &CFG,
        ID,
        "s3cret",
        "s3cret",
        &callback(&completed()),
        at(NOW),
    );
    assert_eq!(outcome, CallbackOutcome::Observed { verified: true });
    assert_eq!(kinds(&asked), [ActionKind::PlaceOrder]);
    assert_eq!(asked[0].data["kind"], "place_order");
    assert_eq!(
        asked[0].data["authorization_token"],
        "a1a8f727-2756-6058-bd3c-40069be0994b"
    );
    // Its deadline is the token's: authorized at 14:54:04.675, dead an hour later.
    let place_by: hpp_session::Timestamp = "2019-05-13T15:54:04.675Z".parse().expect("a time");
    assert_eq!(asked[0].deadline_ms, hpp_service::store::millis(place_by));
}

#[test]
fn a_callback_without_the_secret_is_a_hint_that_asks_for_no_money() {
    for presented in ["wrong", "", "s3cre", "s3cret "] {
        let mut t = tracker();
        let (outcome, asked) = observe::callback(
            &mut t,
            &CFG,
            ID,
            "s3cret",
            presented,
            &callback(&completed()),
            at(NOW),
        );
        assert_eq!(
            outcome,
            CallbackOutcome::Observed { verified: false },
            "{presented:?}"
        );
        assert!(asked.is_empty(), "a hint asked for {asked:?}");
        let next = t.next_read(&CFG, at(NOW)).expect("a read");
        assert!(next.is_due(at(NOW)), "the claim makes a read urgent");
    }
}

#[test]
fn a_body_that_is_not_a_callback_is_refused_and_changes_nothing() {
    for body in [
        &b"not json"[..],
        b"{}",
        br#"{"event_id":"e","session":{"status":"PAID"}}"#,
    ] {
        let mut t = tracker();
        let before = t.clone();
        let (outcome, asked) = observe::callback(&mut t, &CFG, ID, "s", "s", body, at(NOW));
        assert!(
            matches!(outcome, CallbackOutcome::Refused(_)),
            "{outcome:?}"
        );
        assert!(asked.is_empty());
        assert_eq!(t, before);
    }
}

#[test]
fn another_sessions_callback_is_refused_even_with_the_secret() {
    let other = completed().replace(ID, "00000000-0000-0000-0000-000000000000");
    let mut t = tracker();
    let (outcome, asked) =
        observe::callback(&mut t, &CFG, ID, "s", "s", &callback(&other), at(NOW));
    assert!(
        matches!(outcome, CallbackOutcome::Refused(_)),
        "{outcome:?}"
    );
    assert!(asked.is_empty());
}

#[test]
fn a_secret_posted_to_another_sessions_url_proves_nothing_for_this_one() {
    // The shop stores this session's tracker, but the callback came to the URL of another
    // session whose secret the attacker knows (their own): the proof is that session's.
    let mut t = tracker();
    let before = t.clone();
    let (outcome, asked) = observe::callback(
        &mut t,
        &CFG,
        "00000000-0000-0000-0000-000000000000",
        "s3cret",
        "s3cret",
        &callback(&completed()),
        at(NOW),
    );
    assert!(
        matches!(outcome, CallbackOutcome::Refused(_)),
        "{outcome:?}"
    );
    assert!(asked.is_empty());
    assert_eq!(t, before);
}

#[test]
fn a_read_decides_and_a_failed_or_bad_read_only_moves_the_schedule() {
    let mut t = tracker();
    let asked = observe::read(&mut t, &CFG, &ReadAnswer::Body(completed()), at(NOW));
    assert_eq!(kinds(&asked), [ActionKind::PlaceOrder]);
    assert_eq!(
        t.next_read(&CFG, at(NOW)),
        None,
        "a confirmed final needs no read"
    );

    let failures = [
        ReadAnswer::Failed(ReadFailure::ServerError),
        ReadAnswer::Failed(ReadFailure::RateLimited {
            reset: Some(Duration::from_secs(1)),
        }),
        ReadAnswer::Body("{".to_owned()),
        ReadAnswer::Body(completed().replace(ID, "00000000-0000-0000-0000-000000000000")),
        // A 404 before the known expiry is not an expiry.
        ReadAnswer::NotFound,
    ];
    for answer in failures {
        let mut t = tracker();
        let _ = observe::read(
            &mut t,
            &CFG,
            &ReadAnswer::Body(completed().replace("COMPLETED", "IN_PROGRESS").replace(
                r#""authorization_token":"a1a8f727-2756-6058-bd3c-40069be0994b","#,
                "",
            )),
            at(NOW),
        );
        let state = t.status();
        let asked = observe::read(&mut t, &CFG, &answer, at(NOW));
        assert!(asked.is_empty(), "{answer:?} asked for {asked:?}");
        assert_eq!(t.status(), state, "{answer:?}");
        let next = t.next_read(&CFG, at(NOW)).expect("a read later");
        assert!(
            !next.is_due(at(NOW)),
            "{answer:?}: backs off instead of spinning"
        );
    }
}

#[test]
fn a_404_after_expiry_releases_the_cart_once() {
    let mut t = tracker();
    let waiting = completed().replace("COMPLETED", "WAITING").replace(
        r#""authorization_token":"a1a8f727-2756-6058-bd3c-40069be0994b","#,
        "",
    );
    let _ = observe::read(&mut t, &CFG, &ReadAnswer::Body(waiting), at(NOW));
    let after = at("2019-05-15T13:51:44Z");
    assert_eq!(
        kinds(&observe::read(&mut t, &CFG, &ReadAnswer::NotFound, after)),
        [ActionKind::Release]
    );
    assert!(observe::read(&mut t, &CFG, &ReadAnswer::NotFound, after).is_empty());
}

#[test]
fn redirects_are_named_by_their_url_and_are_hints() {
    for r in Redirect::ALL {
        assert_eq!(observe::redirect_kind(r.as_str()), Some(r));
    }
    assert_eq!(observe::redirect_kind("paid"), None);
    let mut t = tracker();
    assert!(observe::redirect(&mut t, ID, Redirect::Success, at(NOW)).is_empty());
    assert!(t.next_read(&CFG, at(NOW)).expect("a read").is_due(at(NOW)));
    let mut t = tracker();
    let before = t.clone();
    assert!(observe::redirect(&mut t, "another", Redirect::Success, at(NOW)).is_empty());
    assert_eq!(t, before, "another session's redirect changes nothing");
}

#[test]
fn a_429_waits_for_its_reset_where_other_failures_retry_soon() {
    let in_progress = completed().replace("COMPLETED", "IN_PROGRESS").replace(
        r#""authorization_token":"a1a8f727-2756-6058-bd3c-40069be0994b","#,
        "",
    );
    let wait = |answer: ReadAnswer| {
        let mut t = tracker();
        let _ = observe::read(
            &mut t,
            &CFG,
            &ReadAnswer::Body(in_progress.clone()),
            at(NOW),
        );
        // The read falls due, and fails.
        let due = t.next_read(&CFG, at(NOW)).expect("a blind read").at;
        let _ = observe::read(&mut t, &CFG, &answer, due);
        let next = t.next_read(&CFG, due).expect("a read later");
        next.at.duration_since(due).expect("later")
    };
    let reset = Duration::from_secs(30);
    let limited = wait(ReadAnswer::Failed(ReadFailure::RateLimited {
        reset: Some(reset),
    }));
    assert!(limited >= reset, "{limited:?}");
    let failed = wait(ReadAnswer::Failed(ReadFailure::ServerError));
    assert!(failed < reset, "{failed:?}");
}

/// A `COMPLETED` body with a field Klarna documents as a string that is not one (an
/// integrator's round trip turned the `order_id` into a number) cannot be read whole: read
/// again for its status, it is a paid session for a person to review, as a read and as a
/// verified callback, and its expiry never releases the cart. Anything else so malformed is
/// refused as before.
#[test]
fn a_paid_body_that_cannot_be_read_whole_is_handed_to_a_person_never_released() {
    let odd = format!(
        r#"{{"session_id":"{ID}","status":"COMPLETED","order_id":12345,"updated_at":"2019-05-13T14:54:04.675Z","expires_at":"2019-05-15T13:51:43.507Z"}}"#
    );
    assert!(serde_json::from_str::<hpp_session::wire::SessionBody<'_>>(&odd).is_err());
    let mut t = tracker();
    let asked = observe::read(&mut t, &CFG, &ReadAnswer::Body(odd.clone()), at(NOW));
    assert_eq!(kinds(&asked), [ActionKind::ReviewCompletion]);
    let after = at("2019-05-16T00:00:00Z");
    assert!(
        !kinds(&observe::read(&mut t, &CFG, &ReadAnswer::NotFound, after))
            .contains(&ActionKind::Release),
        "a paid session's expiry released its cart"
    );
    let mut t = tracker();
    let (outcome, asked) = observe::callback(
        &mut t,
        &CFG,
        ID,
        "s3cret",
        "s3cret",
        &callback(&odd),
        at(NOW),
    );
    assert_eq!(outcome, CallbackOutcome::Observed { verified: true });
    assert_eq!(kinds(&asked), [ActionKind::ReviewCompletion]);
    // Not paid, and not readable: refused, nothing asked.
    let cancelled = odd.replace("COMPLETED", "CANCELLED");
    let mut t = tracker();
    let (outcome, asked) = observe::callback(
        &mut t,
        &CFG,
        ID,
        "s3cret",
        "s3cret",
        &callback(&cancelled),
        at(NOW),
    );
    assert!(
        matches!(outcome, CallbackOutcome::Refused(_)),
        "{outcome:?}"
    );
    assert!(asked.is_empty());
    assert!(observe::read(&mut t, &CFG, &ReadAnswer::Body(cancelled), at(NOW)).is_empty());
}
