//! What the service makes of each input, on a tracker loaded under its row's lock: pure
//! functions from an input to the merchant actions it asks for.

use hpp_session::wire::{CallbackBody, SessionBody};
use hpp_session::{
    Action, ActionKind, ReadFailure, Redirect, SessionId, Timestamp, Tracker,
    callback_secret_matches,
};
use serde_json::Value;

/// A merchant action to store: its kind and the crate's serialized form.
pub type Asked = (ActionKind, Value);

/// What a read of the session answered.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ReadAnswer {
    /// 200, with the body.
    Body(String),
    /// 404.
    NotFound,
    /// Nothing learned.
    Failed(ReadFailure),
}

/// The merchant actions among `actions`, with their data (a read is not stored: the poller
/// reads when the tracker says).
pub fn asked(actions: impl Iterator<Item = Action>) -> Vec<Asked> {
    actions
        .filter(|a| !matches!(a, Action::ReadSession))
        .filter_map(|a| serde_json::to_value(&a).ok().map(|v| (a.kind(), v)))
        .collect()
}

/// What became of a callback.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CallbackOutcome {
    /// Observed: as evidence (the secret matched) or as a hint.
    Observed {
        /// The secret in the URL matched the session's.
        verified: bool,
    },
    /// The body is not a callback, or the tracker refused it (another session's, too old...).
    Refused(String),
}

/// Observes a callback posted with `presented` as the secret: evidence when it matches the
/// session's `issued` secret (checked in constant time), a hint otherwise.
pub fn callback(
    tracker: &mut Tracker,
    issued: &str,
    presented: &str,
    body: &[u8],
    now: Timestamp,
) -> (CallbackOutcome, Vec<Asked>) {
    let callback: CallbackBody<'_> = match serde_json::from_slice(body) {
        Ok(c) => c,
        Err(e) => {
            return (
                CallbackOutcome::Refused(format!("not a callback: {e}")),
                vec![],
            );
        }
    };
    let snapshot = match callback.session.snapshot() {
        Ok(s) => s,
        Err(e) => return (CallbackOutcome::Refused(e.to_string()), vec![]),
    };
    let checked = callback_secret_matches(issued.as_bytes(), presented.as_bytes());
    let verified = checked.is_some();
    let observed = match checked {
        Some(proof) => {
            tracker.observe_verified_callback(proof, callback.event_id(), &snapshot, now)
        }
        None => tracker.observe_callback(callback.event_id(), &snapshot, now),
    };
    match observed {
        Ok(report) => (
            CallbackOutcome::Observed { verified },
            asked(report.actions()),
        ),
        Err(e) => (CallbackOutcome::Refused(e.to_string()), vec![]),
    }
}

/// Observes a read's answer. A body that does not parse, or that the tracker refuses, and a
/// 404 it cannot judge yet, count as a failed read (the tracker backs off).
pub fn read(tracker: &mut Tracker, answer: &ReadAnswer, now: Timestamp) -> Vec<Asked> {
    let learned = match answer {
        ReadAnswer::Body(body) => serde_json::from_str::<SessionBody<'_>>(body)
            .ok()
            .and_then(|b| b.snapshot().ok())
            .and_then(|s| tracker.observe_read(&s, now).ok())
            .map(|r| asked(r.actions())),
        ReadAnswer::NotFound => tracker
            .observe_not_found(now)
            .ok()
            .map(|r| asked(r.actions())),
        ReadAnswer::Failed(_) => None,
    };
    learned.unwrap_or_else(|| {
        let failure = match answer {
            ReadAnswer::Failed(failure) => *failure,
            _ => ReadFailure::Unexpected,
        };
        let _next = tracker.observe_read_failure(failure, now);
        Vec::new()
    })
}

/// The redirect named `kind` in the URL.
#[must_use]
pub fn redirect_kind(kind: &str) -> Option<Redirect> {
    Redirect::ALL.into_iter().find(|r| r.as_str() == kind)
}

/// Observes the consumer's redirect: a hint (it may make a read urgent, never more).
pub fn redirect(
    tracker: &mut Tracker,
    session_id: &str,
    redirect: Redirect,
    now: Timestamp,
) -> Vec<Asked> {
    SessionId::new(session_id)
        .ok()
        .and_then(|id| tracker.observe_redirect(&id, redirect, now).ok())
        .map(|r| asked(r.actions()))
        .unwrap_or_default()
}
