//! One line of the replay's log, in the one type that writes it (`hpp-replay simulate`) and reads
//! it (the replayer):
//!
//! ```text
//! {"at": RFC3339, "callback": {"event_id": ID, "session": SESSION}}
//! {"at": RFC3339, "read": SESSION}
//! {"at": RFC3339, "not_found": true, "session_id": ID}
//! ```
//!
//! `SESSION` is Klarna's session object ([`SessionBody`]); `at` is when the integrator received
//! it. Unknown keys are refused: a line is the integrator's own record, not Klarna's.

use hpp_session::wire::{CallbackBody, SessionBody};
use serde::{Deserialize, Serialize};

/// One line of the log. `C` and `R` are the callback's and the read's body: whole
/// ([`CallbackBody`], [`SessionBody`], the default), or only their status
/// ([`hpp_session::wire::CallbackStatus`], [`hpp_session::wire::SessionStatus`]) when a field is
/// not of the type Klarna documents.
#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LogLine<'a, C = CallbackBody<'a>, R = SessionBody<'a>> {
    /// When the integrator received it (RFC 3339).
    #[serde(borrow)]
    pub at: &'a str,
    /// A status callback's body.
    #[serde(default = "none", skip_serializing_if = "Option::is_none")]
    pub callback: Option<C>,
    /// A read's body (answered 200).
    #[serde(default = "none", skip_serializing_if = "Option::is_none")]
    pub read: Option<R>,
    /// A read answered 404.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub not_found: Option<bool>,
    /// The session, for a 404 (whose answer names none), or beside a body.
    #[serde(borrow, default, skip_serializing_if = "Option::is_none")]
    pub session_id: Option<&'a str>,
}

const fn none<T>() -> Option<T> {
    None
}

impl<'a> LogLine<'a> {
    /// A callback received at `at`.
    #[must_use]
    pub fn callback(at: &'a str, body: CallbackBody<'a>) -> Self {
        Self {
            callback: Some(body),
            ..Self::at(at)
        }
    }

    /// A read answered with `body` at `at`.
    #[must_use]
    pub fn read(at: &'a str, body: SessionBody<'a>) -> Self {
        Self {
            read: Some(body),
            ..Self::at(at)
        }
    }

    /// A read of `session_id` answered 404 at `at`.
    #[must_use]
    pub fn not_found(at: &'a str, session_id: &'a str) -> Self {
        Self {
            not_found: Some(true),
            session_id: Some(session_id),
            ..Self::at(at)
        }
    }

    fn at(at: &'a str) -> Self {
        Self {
            at,
            callback: None,
            read: None,
            not_found: None,
            session_id: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What `simulate` writes, the replayer reads back as the same line.
    #[test]
    fn a_written_line_reads_back() {
        let body = SessionBody {
            session_id: Some("s".into()),
            status: Some("COMPLETED".into()),
            updated_at: Some("2019-05-13T14:54:04.675Z".into()),
            authorization_token: Some("a/b".into()),
            ..SessionBody::default()
        };
        let callback = CallbackBody {
            event_id: Some("e".into()),
            session: body.clone(),
        };
        let lines = [
            (
                LogLine::callback("2019-05-13T14:54:05Z", callback),
                r#"{"at":"2019-05-13T14:54:05Z","callback":{"event_id":"e","session":{"session_id":"s","status":"COMPLETED","updated_at":"2019-05-13T14:54:04.675Z","authorization_token":"a/b"}}}"#,
            ),
            (
                LogLine::read("2019-05-13T14:54:06Z", body),
                r#"{"at":"2019-05-13T14:54:06Z","read":{"session_id":"s","status":"COMPLETED","updated_at":"2019-05-13T14:54:04.675Z","authorization_token":"a/b"}}"#,
            ),
            (
                LogLine::not_found("2019-05-16T00:00:00Z", "s"),
                r#"{"at":"2019-05-16T00:00:00Z","not_found":true,"session_id":"s"}"#,
            ),
        ];
        for (line, text) in lines {
            assert_eq!(serde_json::to_string(&line).unwrap(), text);
            let back: LogLine<'_> = serde_json::from_str(text).unwrap();
            assert_eq!(serde_json::to_string(&back).unwrap(), text);
            assert_eq!(back.callback, line.callback);
            assert_eq!(back.read, line.read);
        }
        assert!(serde_json::from_str::<LogLine<'_>>(r#"{"at":"x","extra":1}"#).is_err());
    }
}
