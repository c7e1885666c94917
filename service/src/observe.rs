//! What the service makes of each input, on a tracker loaded under its row's lock: pure
//! functions from an input to the merchant actions it asks for.

use hpp_session::wire::{CallbackBody, CallbackStatus, SessionBody, SessionStatus};
use hpp_session::{
    ActionKind, ActionSet, ReadFailure, Redirect, SessionId, Snapshot, Timestamp, Tracker,
    TrackerConfig, callback_secret_matches,
};
use serde_json::Value;

use crate::store::millis;

/// A merchant action to store: its kind, the crate's serialized form, and when it must be done
/// by (the executor takes the soonest first).
#[derive(Clone, Debug, PartialEq)]
pub struct Asked {
    /// Its kind.
    pub kind: ActionKind,
    /// The crate's serialized [`hpp_session::Action`].
    pub data: Value,
    /// Unix milliseconds by which it must be done: a place-order's `place_by` (0, at once,
    /// when the authorization time is unknown); `i64::MAX` for every other kind, which waits on
    /// no token and is taken in the order it was asked.
    pub deadline_ms: i64,
}

impl Asked {
    /// `action` as a row to store.
    #[must_use]
    pub fn of(action: &hpp_session::Action) -> Option<Self> {
        let deadline_ms = match action {
            hpp_session::Action::PlaceOrder { place_by, .. } => place_by.map_or(0, millis),
            _ => i64::MAX,
        };
        Some(Self {
            kind: action.kind(),
            data: serde_json::to_value(action).ok()?,
            deadline_ms,
        })
    }
}

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

impl ReadAnswer {
    /// Its kind, for logs (never the body: it carries the authorization token).
    #[must_use]
    pub const fn kind(&self) -> &'static str {
        match self {
            Self::Body(_) => "200",
            Self::NotFound => "404",
            Self::Failed(ReadFailure::Timeout) => "timeout",
            Self::Failed(ReadFailure::RateLimited { .. }) => "429",
            Self::Failed(ReadFailure::ServerError) => "5xx",
            Self::Failed(_) => "unexpected",
        }
    }
}

/// The actions of `kinds` the tracker owes, with their data: the rows that project what it owes
/// into a table the executor claims from (stored in the same transaction as the tracker; the
/// tracker's own `owed` set is the truth, and the executor reports each done on it).
#[must_use]
pub fn asked(tracker: &Tracker, kinds: ActionSet) -> Vec<Asked> {
    kinds
        .iter()
        .filter_map(|k| tracker.action(k))
        .filter_map(|a| Asked::of(&a))
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

/// Observes a callback posted to session `session_id`'s URL with `presented` as the secret:
/// evidence when it matches the `issued` secret (checked in constant time), a hint otherwise.
pub fn callback(
    tracker: &mut Tracker,
    config: &TrackerConfig,
    session_id: &str,
    issued: &str,
    presented: &str,
    body: &[u8],
    now: Timestamp,
) -> (CallbackOutcome, Vec<Asked>) {
    let (event_id, snapshot) = match callback_snapshot(body) {
        Ok(read) => read,
        Err(why) => return (CallbackOutcome::Refused(why), vec![]),
    };
    let event_id = event_id.as_deref();
    let Ok(session_id) = SessionId::new(session_id) else {
        return (
            CallbackOutcome::Refused(format!("not a session id: {session_id:?}")),
            vec![],
        );
    };
    let checked = callback_secret_matches(&session_id, issued.as_bytes(), presented.as_bytes());
    let verified = checked.is_some();
    let observed = match checked {
        Some(proof) => tracker.observe_verified_callback(proof, event_id, &snapshot, now),
        None => tracker.observe_callback(config, event_id, &snapshot, now),
    };
    match observed {
        Ok(report) => {
            counted(
                if verified {
                    "callback_verified"
                } else {
                    "callback"
                },
                report,
            );
            (
                CallbackOutcome::Observed { verified },
                asked(tracker, report.newly_owed()),
            )
        }
        Err(e) => (CallbackOutcome::Refused(e.to_string()), vec![]),
    }
}

/// A callback's event id and snapshot. A body [`CallbackBody`] cannot parse (a field Klarna
/// documents as a string is not one) is read again for its status alone: a `COMPLETED` one is
/// a paid session a person must review ([`SessionStatus::paid_snapshot`]), never a refused
/// callback that leaves the cart to be released. `Err`: why it was refused.
fn callback_snapshot(body: &[u8]) -> Result<(Option<String>, Snapshot), String> {
    match serde_json::from_slice::<CallbackBody<'_>>(body) {
        Ok(callback) => {
            let snapshot = callback.session.snapshot().map_err(|e| e.to_string())?;
            Ok((callback.event_id().map(str::to_owned), snapshot))
        }
        Err(e) => {
            let status = serde_json::from_slice::<CallbackStatus<'_>>(body).ok();
            let paid = status
                .as_ref()
                .and_then(|c| c.session.paid_snapshot().ok().flatten());
            match (status, paid) {
                (Some(c), Some(paid)) => Ok((
                    c.event_id
                        .as_ref()
                        .and_then(|t| t.as_str().ok())
                        .map(str::to_owned),
                    paid,
                )),
                _ => Err(format!("not a callback: {e}")),
            }
        }
    }
}

/// A read's snapshot, with the same fallback as [`callback_snapshot`]'s for a paid session.
fn read_snapshot(body: &str) -> Option<Snapshot> {
    match serde_json::from_str::<SessionBody<'_>>(body) {
        Ok(b) => b.snapshot().ok(),
        Err(_) => serde_json::from_str::<SessionStatus<'_>>(body)
            .ok()?
            .paid_snapshot()
            .ok()
            .flatten(),
    }
}

/// Counts an observation of `input` by its outcome (`hpp_observations_total`): a claim a read
/// refuted shows as `refuted`.
fn counted(input: &'static str, report: hpp_session::Report) {
    metrics::counter!(
        "hpp_observations_total",
        "input" => input,
        "outcome" => report.outcome().as_str()
    )
    .increment(1);
}

/// Observes a read's answer. A body that does not parse, or that the tracker refuses, and a
/// 404 it cannot judge yet, count as a failed read (the tracker backs off).
pub fn read(
    tracker: &mut Tracker,
    config: &TrackerConfig,
    answer: &ReadAnswer,
    now: Timestamp,
) -> Vec<Asked> {
    let learned = match answer {
        ReadAnswer::Body(body) => {
            read_snapshot(body).and_then(|s| tracker.observe_read(config, &s, now).ok())
        }
        ReadAnswer::NotFound => tracker.observe_not_found(now).ok(),
        ReadAnswer::Failed(_) => None,
    }
    .map(|report| {
        counted("read", report);
        report.newly_owed()
    });
    if let Some(new) = learned {
        return asked(tracker, new);
    }
    let failure = match answer {
        ReadAnswer::Failed(failure) => *failure,
        _ => ReadFailure::Unexpected,
    };
    tracker.observe_read_failure(failure, now);
    Vec::new()
}

/// Reports the action `kind` done on the tracker (its effect happened, or is known not to be
/// needed), or, for a disable, Klarna's answer to it; returns what that newly asks for (a 204
/// releases the cart).
pub fn done(tracker: &mut Tracker, session_id: &str, done: &Done, now: Timestamp) -> Vec<Asked> {
    match done {
        Done::Kind(kind) => {
            if let Ok(id) = SessionId::new(session_id) {
                // Refused only for a kind never asked (a row not written by this service).
                let _ = tracker.done(hpp_session::ActionId::new(&id, *kind));
            }
            Vec::new()
        }
        Done::Disable(answer) => SessionId::new(session_id)
            .ok()
            .and_then(|id| tracker.observe_disable_answer(&id, *answer, now).ok())
            .map(|report| asked(tracker, report.newly_owed()))
            .unwrap_or_default(),
    }
}

/// What an executor reports of an action it performed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Done {
    /// The action of this kind is done.
    Kind(ActionKind),
    /// Klarna answered the disable so.
    Disable(hpp_session::DisableAnswer),
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
        .map(|r| asked(tracker, r.newly_owed()))
        .unwrap_or_default()
}
