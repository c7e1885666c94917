//! `Session` driven by generated event sequences, checked step by step against a model built
//! on the independent oracle.

mod common;

use common::{at, oracle};
use hpp_session::table::{self, Edge};
use hpp_session::{Completion, Event, InvalidSession, Session, SessionError, Status, Timestamp};
use proptest::prelude::*;

/// What the spec says the session should be after the steps so far.
#[derive(Debug)]
struct Model {
    status: Status,
    at_ms: u64,
    retries: u32,
    completion: Option<Completion>,
}

#[derive(Clone, Debug)]
struct Step {
    event: Event,
    /// Milliseconds after the model's last change; negative means "stamped in the past".
    delta_ms: i64,
    /// Completion data to authorize with: a token, or an order placed by Klarna.
    by_order: bool,
}

fn step() -> impl Strategy<Value = Step> {
    (0..Event::COUNT, -2_000i64..60_000, any::<bool>()).prop_map(|(e, delta_ms, by_order)| Step {
        event: Event::ALL[e],
        delta_ms,
        by_order,
    })
}

fn completion(by_order: bool, n: usize) -> Completion {
    if by_order {
        Completion::order_placed(&format!("order-{n}"), "X438HG0Q").unwrap()
    } else {
        Completion::authorized(&format!("a1a8f727-2756-6058-bd3c-{n:012}")).unwrap()
    }
}

/// Runs `steps` on a new session and checks every invariant after every step.
fn check(steps: &[Step]) -> Result<(), TestCaseError> {
    let mut session = Session::new(at(0));
    let mut model = Model {
        status: Status::Waiting,
        at_ms: 0,
        retries: 0,
        completion: None,
    };
    let mut accepted = 0usize;
    for (n, step) in steps.iter().enumerate() {
        let stamp_ms = model.at_ms.saturating_add_signed(step.delta_ms);
        let stamp = at(stamp_ms);
        let before = session.clone();
        let expected = oracle::next(model.status, step.event);
        let data = completion(step.by_order, n);

        // `apply` never takes Authorize: it needs the completion data.
        let result = if step.event == Event::Authorize {
            let via_apply = session.apply(Event::Authorize, stamp);
            prop_assert!(via_apply.is_err());
            prop_assert_eq!(&session, &before, "a rejected apply changed the session");
            if expected.is_some() && stamp >= before.changed_at() {
                prop_assert_eq!(via_apply, Err(SessionError::CompletionRequired));
            }
            session.authorize(&data, stamp)
        } else {
            session.apply(step.event, stamp)
        };

        match (expected, result) {
            (None, Err(err)) => {
                prop_assert_eq!(
                    err,
                    SessionError::NotAllowed {
                        from: model.status,
                        event: step.event
                    }
                );
                prop_assert_eq!(&session, &before, "a rejected event changed the session");
            }
            (Some(_), Err(err)) => {
                prop_assert!(
                    step.delta_ms < 0,
                    "an allowed, on-time event was rejected: {err}"
                );
                prop_assert_eq!(
                    err,
                    SessionError::BeforeLastChange {
                        at: stamp,
                        last_change: at(model.at_ms)
                    }
                );
                prop_assert_eq!(&session, &before, "a late event changed the session");
            }
            (Some(to), Ok(edge)) => {
                prop_assert!(stamp_ms >= model.at_ms);
                prop_assert_eq!(
                    edge,
                    Edge {
                        from: model.status,
                        event: step.event,
                        to
                    }
                );
                prop_assert!(
                    table::edges().any(|e| e == edge),
                    "not an edge of the table"
                );
                if step.event == Event::Open && oracle::can_come_back(model.status) {
                    model.retries += 1;
                }
                if to == Status::Completed {
                    model.completion = Some(data);
                }
                model.status = to;
                model.at_ms = stamp_ms;
                accepted += 1;
            }
            (None, Ok(edge)) => {
                return Err(TestCaseError::fail(format!(
                    "accepted a pair the spec rejects: {edge:?}"
                )));
            }
        }
        if oracle::is_final(before.status()) {
            prop_assert_eq!(session.status(), before.status(), "a final status changed");
        }
        prop_assert_eq!(session.status(), model.status);
        prop_assert_eq!(session.changed_at(), at(model.at_ms));
        prop_assert_eq!(session.retries(), model.retries);
        prop_assert_eq!(session.completion(), model.completion.as_ref());
        if accepted > 0 {
            prop_assert!(table::is_reachable(Status::Waiting, session.status()));
        }
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(4_096))]

    #[test]
    fn random_event_sequences_follow_the_spec(steps in prop::collection::vec(step(), 0..64)) {
        check(&steps)?;
    }

    /// Only the events the current status allows (plus lateness): long journeys through the
    /// retry loops.
    #[test]
    fn allowed_event_walks_follow_the_spec(
        picks in prop::collection::vec((any::<prop::sample::Index>(), 0i64..600_000, any::<bool>()), 0..64)
    ) {
        let mut status = Status::Waiting;
        let mut steps = Vec::new();
        for (pick, delta_ms, by_order) in picks {
            let allowed: Vec<Event> =
                Event::ALL.into_iter().filter(|&e| oracle::next(status, e).is_some()).collect();
            if allowed.is_empty() {
                break;
            }
            let event = *pick.get(&allowed);
            status = oracle::next(status, event).unwrap();
            steps.push(Step { event, delta_ms, by_order });
        }
        check(&steps)?;
    }
}

fn steps(list: &[(Event, i64)]) -> Vec<Step> {
    list.iter()
        .map(|&(event, delta_ms)| Step {
            event,
            delta_ms,
            by_order: false,
        })
        .collect()
}

#[test]
fn three_retry_loops_then_authorized() {
    use Event::*;
    check(&steps(&[
        (Open, 10),
        (Decline, 10),
        (Open, 10),
        (GoBack, 10),
        (Open, 10),
        (PaymentError, 10),
        (Open, 10),
        (Authorize, 10),
        (Disable, 10),
        (Open, 10),
    ]))
    .unwrap();
    let mut s = Session::new(at(0));
    for e in [Open, Decline, Open, GoBack, Open, InactivityTimeout, Open] {
        s.apply(e, at(1)).unwrap();
    }
    assert_eq!(s.retries(), 3);
}

#[test]
fn an_event_at_the_same_instant_is_accepted_and_an_earlier_one_is_not() {
    let mut s = Session::new(at(1_000));
    assert!(s.apply(Event::Open, at(1_000)).is_ok());
    let before = s.clone();
    let err = s.apply(Event::GoBack, at(999)).unwrap_err();
    assert_eq!(s, before);
    assert_eq!(
        err.to_string(),
        "event stamped 2019-05-13T14:52:58.539Z is earlier than the session's last change at \
         2019-05-13T14:52:58.540Z"
    );
}

#[test]
fn errors_say_what_was_wrong() {
    let mut s = Session::new(at(0));
    assert_eq!(
        s.apply(Event::Decline, at(1)).unwrap_err().to_string(),
        "event `decline` is not allowed from WAITING"
    );
    s.apply(Event::Disable, at(1)).unwrap();
    assert_eq!(
        s.apply(Event::Open, at(2)).unwrap_err().to_string(),
        "event `open` on a DISABLED session: DISABLED is final"
    );
    assert!(
        SessionError::CompletionRequired
            .to_string()
            .contains("Session::authorize")
    );
}

#[test]
fn stored_parts_must_fit_together() {
    let t = at(0);
    let token = Completion::authorized("tok").unwrap();
    assert_eq!(
        Session::from_parts(Status::Completed, t, None, 0),
        Err(InvalidSession::MissingCompletion)
    );
    assert_eq!(
        Session::from_parts(Status::Back, t, Some(token.clone()), 1),
        Err(InvalidSession::UnexpectedCompletion(Status::Back))
    );
    assert_eq!(
        Session::from_parts(Status::Waiting, t, None, 2),
        Err(InvalidSession::RetriesWhileWaiting)
    );
    let s = Session::from_parts(Status::Completed, t, Some(token.clone()), 2).unwrap();
    assert_eq!(
        (s.status(), s.completion(), s.retries()),
        (Status::Completed, Some(&token), 2)
    );
}

#[test]
fn retries_saturate_instead_of_overflowing() {
    let mut s = Session::from_parts(Status::Back, Timestamp::UNIX_EPOCH, None, u32::MAX).unwrap();
    s.apply(Event::Open, Timestamp::UNIX_EPOCH).unwrap();
    assert_eq!(s.retries(), u32::MAX);
}

#[test]
fn authorize_through_apply_at_the_same_instant_asks_for_the_completion() {
    let mut s = Session::new(at(0));
    s.apply(Event::Open, at(5)).unwrap();
    let before = s.clone();
    assert_eq!(
        s.apply(Event::Authorize, at(5)),
        Err(SessionError::CompletionRequired)
    );
    assert_eq!(
        s.apply(Event::Authorize, at(4)),
        Err(SessionError::BeforeLastChange {
            at: at(4),
            last_change: at(5)
        })
    );
    assert_eq!(s, before);
}

#[test]
fn invalid_stored_sessions_say_why() {
    assert_eq!(
        InvalidSession::MissingCompletion.to_string(),
        "a COMPLETED session needs its completion data"
    );
    assert_eq!(
        InvalidSession::UnexpectedCompletion(Status::Back).to_string(),
        "a BACK session cannot carry completion data"
    );
    assert_eq!(
        InvalidSession::RetriesWhileWaiting.to_string(),
        "a WAITING session cannot have retries"
    );
}
