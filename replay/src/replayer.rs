//! Replaying log lines into one tracker per session.

use std::collections::HashMap;
use std::convert::Infallible;

use hpp_session::wire::{CallbackBody, SessionBody};
use hpp_session::{
    ActionKind, Report, SessionId, Snapshot, SnapshotError, Status, Timestamp, Tracker,
    TrackerConfig,
};
use serde::Deserialize;

/// One line of the log: when the integrator received it, and what.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct LogLine<'a> {
    #[serde(borrow)]
    at: &'a str,
    #[serde(borrow, default)]
    callback: Option<CallbackBody<'a>>,
    #[serde(borrow, default)]
    read: Option<SessionBody<'a>>,
    #[serde(default)]
    not_found: Option<bool>,
    #[serde(borrow, default)]
    session_id: Option<&'a str>,
}

/// What one line did.
pub struct Record<'a> {
    /// The line's number, from 1.
    pub line: u64,
    /// The session it was routed to, when it could be.
    pub session_id: Option<&'a str>,
    /// The observation's report and when `now` was, or why the line was rejected.
    pub result: Result<(Report<'a>, Timestamp), String>,
    /// The session's shown status after the line ([`shown_status`]).
    pub status: Option<&'static str>,
    /// The status unsigned callbacks claim, awaiting confirmation.
    pub claim: Option<&'static str>,
}

/// What a tracker shows as its (confirmed) status: the wire name, or `EXPIRED` once a session
/// that was not paid expired.
#[must_use]
pub fn shown_status(t: &Tracker) -> Option<&'static str> {
    shown(t.status(), t.is_expired())
}

/// The shown status of a confirmed `status` in a session that `expired` or not.
fn shown(status: Option<Status>, expired: bool) -> Option<&'static str> {
    if expired && status != Some(Status::Completed) {
        return Some("EXPIRED");
    }
    status.map(Status::as_str)
}

/// The rejected lines a summary lists by number and error.
pub const REJECTED_LISTED: usize = 5;

/// One tracker per session, and the counts a summary needs.
pub struct Replayer {
    config: TrackerConfig,
    trackers: Trackers,
    /// Lines seen.
    pub lines: u64,
    /// Lines rejected.
    pub rejected: u64,
    /// The first [`REJECTED_LISTED`] rejected lines: number and error.
    pub first_rejected: Vec<(u64, String)>,
    /// Actions asked for, by kind, in [`ActionKind::ALL`] order.
    pub actions: [u64; ActionKind::ALL.len()],
    /// The latest `at` of an accepted line: "now" at the end of the log.
    pub latest: Option<Timestamp>,
}

impl Replayer {
    /// A replayer whose trackers use `config`.
    #[must_use]
    pub fn new(config: TrackerConfig) -> Self {
        Self {
            config,
            trackers: Trackers::default(),
            lines: 0,
            rejected: 0,
            first_rejected: Vec::new(),
            actions: [0; ActionKind::ALL.len()],
            latest: None,
        }
    }

    /// The trackers, by session id.
    pub fn trackers(&self) -> impl Iterator<Item = (&str, &Tracker)> {
        let all = &self.trackers.all;
        let index = self.trackers.index.iter();
        index.filter_map(|(id, &i)| Some((&**id, &**all.get(i)?)))
    }

    /// Replays line number `line` (`Err` when it could not be read as text: too long, not
    /// UTF-8). A rejected line changes nothing.
    pub fn replay<'a>(&'a mut self, line: u64, text: Result<&'a str, String>) -> Record<'a> {
        self.apply(line, Prepared::of(text))
    }

    /// Applies line number `line`, prepared by [`Prepared::of`], to its session's tracker.
    /// A rejected line changes nothing.
    pub fn apply<'a>(&'a mut self, line: u64, prepared: Prepared<&'a str>) -> Record<'a> {
        self.lines += 1;
        let Self {
            config,
            trackers,
            rejected,
            first_rejected,
            actions,
            latest,
            ..
        } = self;
        let mut record = Record {
            line,
            session_id: None,
            result: Err(String::new()),
            status: None,
            claim: None,
        };
        let result = observe(trackers, *config, prepared, &mut record);
        match &result {
            Ok((report, now)) => {
                for (count, kind) in actions.iter_mut().zip(ActionKind::ALL) {
                    *count += u64::from(report.action_kinds().contains(kind));
                }
                *latest = Some(latest.map_or(*now, |l| l.max(*now)));
                let state = report.state();
                record.status = shown(state.status, state.expired);
                record.claim = state.claim.map(|c| c.status().as_str());
            }
            Err(e) => {
                *rejected += 1;
                if first_rejected.len() < REJECTED_LISTED {
                    first_rejected.push((line, e.clone()));
                }
            }
        }
        record.result = result;
        record
    }
}

/// One tracker per session. The trackers (808 bytes each) are boxed in a vector and the map
/// holds indexes: one hash of the id per line, the id copied only for a new session, and
/// growing the map moves small entries, never trackers.
#[derive(Default)]
struct Trackers {
    index: HashMap<Box<str>, usize>,
    #[allow(
        clippy::vec_box,
        reason = "a vector of trackers would hold up to twice their memory after it grows"
    )]
    all: Vec<Box<Tracker>>,
}

impl Trackers {
    fn get(&self, id: &str) -> Option<&Tracker> {
        self.all.get(*self.index.get(id)?).map(|t| &**t)
    }

    fn get_or_insert(&mut self, id: &str, config: TrackerConfig) -> &mut Tracker {
        let i = if let Some(&i) = self.index.get(id) {
            i
        } else {
            self.all.push(Box::new(Tracker::new(config)));
            let i = self.all.len() - 1;
            self.index.insert(id.into(), i);
            i
        };
        // Every index in the map points into `all`.
        &mut self.all[i]
    }
}

/// Applies one prepared line to its session's tracker; fills in the record's session and what
/// it shows, and returns the report, or why the line is rejected (then nothing changed).
fn observe<'a>(
    trackers: &'a mut Trackers,
    config: TrackerConfig,
    prepared: Prepared<&'a str>,
    record: &mut Record<'a>,
) -> Result<(Report<'a>, Timestamp), String> {
    // Everything is checked before any tracker is touched, so that a line rejected here
    // changes nothing.
    let line = match prepared.0 {
        Ok(line) => line,
        Err(rejection) => return Err(rejected(trackers, rejection, record)),
    };
    let routed = |error| Rejection {
        session_id: Some(line.session_id),
        error,
    };
    let now = match Timestamp::parse(line.at) {
        Ok(now) => now,
        Err(e) => return Err(rejected(trackers, routed(format!("at: {e}")), record)),
    };
    // The snapshot is built in place and then only borrowed: it is 568 bytes, and each move of
    // it is a copy.
    let checked;
    let snapshot = match &line.what {
        What::Callback { body, .. } | What::Read(body) => {
            checked = body.snapshot();
            match &checked {
                Ok(snapshot) => Some(snapshot),
                Err(e) => return Err(rejected(trackers, routed(e.to_string()), record)),
            }
        }
        What::NotFound => None,
    };
    record.session_id = Some(line.session_id);
    let tracker = trackers.get_or_insert(line.session_id, config);
    record.status = shown_status(tracker);
    record.claim = tracker.claim().map(|c| c.status().as_str());
    let report = match (line.what, snapshot) {
        (What::Callback { event_id, .. }, Some(snapshot)) => tracker
            .observe_callback(event_id, snapshot, now)
            .map_err(|e| e.to_string())?,
        (What::Read(_), Some(snapshot)) => tracker.observe_read(snapshot, now),
        (What::NotFound, _) => tracker.observe_not_found(now).map_err(|e| e.to_string())?,
        (What::Callback { .. } | What::Read(_), None) => {
            return Err("the line's snapshot is missing".to_owned());
        }
    };
    Ok((report, now))
}

/// Fills in the record of a rejected line, which changes nothing: its session as it was, when
/// the line names one that exists. Returns the error.
fn rejected<'a>(
    trackers: &'a Trackers,
    Rejection { session_id, error }: Rejection<&'a str>,
    record: &mut Record<'a>,
) -> String {
    record.session_id = session_id;
    if let Some(t) = session_id.and_then(|id| trackers.get(id)) {
        record.status = shown_status(t);
        record.claim = t.claim().map(|c| c.status().as_str());
    }
    error
}

/// One line of the log, read before any tracker sees it: the JSON parsed and the session it
/// belongs to found; its `at` and session body are read and checked when it is applied. This
/// is the part of a line that does not depend on the sessions, so that it can be done on
/// another thread ([`Threads::Two`](crate::Threads::Two)), and about as much work as applying
/// it. `S` is how it refers to strings of the line: `&str`, or byte ranges of a buffer while it
/// crosses threads.
pub struct Prepared<S>(Result<Observation<S>, Rejection<S>>);

/// A line that can be applied.
struct Observation<S> {
    /// When the integrator received it, read when the line is applied.
    at: S,
    session_id: S,
    what: What<S>,
}

enum What<S> {
    Callback { event_id: Option<S>, body: Body<S> },
    Read(Body<S>),
    NotFound,
}

/// The fields of a session body that make its snapshot ([`SessionBody::snapshot`]).
struct Body<S> {
    status: Option<S>,
    updated_at: Option<S>,
    expires_at: Option<S>,
    authorization_token: Option<S>,
    order_id: Option<S>,
    klarna_reference: Option<S>,
}

impl<'a> Body<&'a str> {
    fn of(body: SessionBody<'a>) -> Self {
        Self {
            status: body.status,
            updated_at: body.updated_at,
            expires_at: body.expires_at,
            authorization_token: body.authorization_token,
            order_id: body.order_id,
            klarna_reference: body.klarna_reference,
        }
    }

    /// The snapshot, checked as [`SessionBody::snapshot`] checks it (which does not read the
    /// session id).
    fn snapshot(&self) -> Result<Snapshot, SnapshotError> {
        SessionBody {
            session_id: None,
            status: self.status,
            updated_at: self.updated_at,
            expires_at: self.expires_at,
            authorization_token: self.authorization_token,
            order_id: self.order_id,
            klarna_reference: self.klarna_reference,
        }
        .snapshot()
    }
}

impl<S> Body<S> {
    fn try_map<T, E>(self, f: &mut impl FnMut(S) -> Result<T, E>) -> Result<Body<T>, E> {
        let mut field = |s: Option<S>| s.map(&mut *f).transpose();
        Ok(Body {
            status: field(self.status)?,
            updated_at: field(self.updated_at)?,
            expires_at: field(self.expires_at)?,
            authorization_token: field(self.authorization_token)?,
            order_id: field(self.order_id)?,
            klarna_reference: field(self.klarna_reference)?,
        })
    }
}

/// Why a line is rejected, and the session it names when it could be routed.
struct Rejection<S> {
    session_id: Option<S>,
    error: String,
}

impl<'a> Prepared<&'a str> {
    /// Reads one line of text (`Err` when it could not be read as text).
    #[must_use]
    pub fn of(text: Result<&'a str, String>) -> Self {
        Self(
            text.map_err(|error| Rejection {
                session_id: None,
                error,
            })
            .and_then(parse),
        )
    }
}

impl<S> Prepared<S> {
    /// The same line with its strings referred to through `f`.
    pub fn map<T>(self, mut f: impl FnMut(S) -> T) -> Prepared<T> {
        let Ok(mapped) = self.try_map(|s| Ok::<T, Infallible>(f(s)));
        mapped
    }

    /// The same line with its strings referred to through `f`, or the first error `f` gives.
    ///
    /// # Errors
    /// `f`'s.
    pub fn try_map<T, E>(self, mut f: impl FnMut(S) -> Result<T, E>) -> Result<Prepared<T>, E> {
        Ok(Prepared(match self.0 {
            Ok(Observation {
                at,
                session_id,
                what,
            }) => Ok(Observation {
                at: f(at)?,
                session_id: f(session_id)?,
                what: match what {
                    What::Callback { event_id, body } => What::Callback {
                        event_id: event_id.map(&mut f).transpose()?,
                        body: body.try_map(&mut f)?,
                    },
                    What::Read(body) => What::Read(body.try_map(&mut f)?),
                    What::NotFound => What::NotFound,
                },
            }),
            Err(Rejection { session_id, error }) => Err(Rejection {
                session_id: session_id.map(f).transpose()?,
                error,
            }),
        }))
    }

    /// Why the line is rejected, if it is.
    #[must_use]
    pub fn error(&self) -> Option<&str> {
        self.0.as_ref().err().map(|r| r.error.as_str())
    }

    /// A line rejected for `error`, routed to no session.
    #[must_use]
    pub fn rejected(error: String) -> Self {
        Self(Err(Rejection {
            session_id: None,
            error,
        }))
    }
}

/// Parses one line of the log and checks its routing; a rejection names the session when the
/// line could be routed to one.
fn parse(text: &str) -> Result<Observation<&str>, Rejection<&str>> {
    let unrouted = |error: String| Rejection {
        session_id: None,
        error,
    };
    let line: LogLine<'_> =
        serde_json::from_str(text).map_err(|e| unrouted(format!("not a log line: {e}")))?;
    let (event_id, body) = match (line.callback, line.read, line.not_found) {
        (Some(cb), None, None) => (Some(cb.event_id), Some(cb.session)),
        (None, Some(read), None) => (None, Some(read)),
        (None, None, Some(true)) => (None, None),
        _ => {
            let e = "a line has exactly one of callback, read, or not_found: true";
            return Err(unrouted(e.into()));
        }
    };
    let session_id = match (body.and_then(|b| b.session_id), line.session_id) {
        (Some(body_id), Some(line_id)) if body_id != line_id => {
            return Err(unrouted(format!(
                "the line's session_id {line_id:?} differs from the body's {body_id:?}"
            )));
        }
        (Some(id), _) | (None, Some(id)) => id,
        (None, None) => {
            let e = "no session_id: the line cannot be routed to a session";
            return Err(unrouted(e.into()));
        }
    };
    SessionId::new(session_id).map_err(|e| unrouted(e.to_string()))?;
    let what = match (body, event_id) {
        (Some(body), Some(event_id)) => What::Callback {
            event_id,
            body: Body::of(body),
        },
        (Some(body), None) => What::Read(Body::of(body)),
        (None, _) => What::NotFound,
    };
    Ok(Observation {
        at: line.at,
        session_id,
        what,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Bodies of every shape: each status, each completion shape, and the malformed.
    fn bodies() -> Vec<SessionBody<'static>> {
        let plain = SessionBody {
            session_id: Some("s"),
            status: Some("WAITING"),
            updated_at: Some("2019-05-13T14:54:04.675Z"),
            expires_at: Some("2019-05-15T13:51:43.507Z"),
            ..SessionBody::default()
        };
        let mut bodies: Vec<SessionBody<'static>> = Status::ALL
            .iter()
            .map(|s| SessionBody {
                status: Some(s.as_str()),
                ..plain
            })
            .collect();
        let paid = SessionBody {
            status: Some("COMPLETED"),
            ..plain
        };
        for (token, order, reference) in [
            (Some("tok"), None, None),
            (None, Some("order"), Some("ref")),
            (Some("tok"), Some("order"), None),
            (None, None, Some("ref")),
            (Some(""), None, None),
        ] {
            bodies.push(SessionBody {
                authorization_token: token,
                order_id: order,
                klarna_reference: reference,
                ..paid
            });
        }
        bodies.extend([
            SessionBody {
                expires_at: None,
                ..plain
            },
            SessionBody {
                status: None,
                ..plain
            },
            SessionBody {
                status: Some("COMPLETE"),
                ..plain
            },
            SessionBody {
                updated_at: Some("yesterday"),
                ..plain
            },
            SessionBody {
                expires_at: Some("2019-02-30T00:00:00Z"),
                ..plain
            },
            SessionBody {
                authorization_token: Some("tok"),
                ..plain
            },
        ]);
        bodies
    }

    #[test]
    fn a_line_with_a_bad_at_is_rejected_naming_its_session_and_changes_nothing() {
        let waiting = r#"{"at":"2019-05-13T14:51:43.507Z","read":{"session_id":"s","status":"WAITING","updated_at":"2019-05-13T14:51:43.507Z"}}"#;
        let mut seen = Replayer::new(TrackerConfig::DEFAULT);
        seen.replay(1, Ok(waiting));
        let before: Vec<(String, Tracker)> = seen
            .trackers()
            .map(|(id, t)| (id.to_owned(), t.clone()))
            .collect();
        // A paid read, a callback and a 404, each at a time that is not one: no money, no
        // release, no new session.
        for (bad, n) in [
            r#"{"at":"2019-02-30T00:00:00Z","read":{"session_id":"s","status":"COMPLETED","updated_at":"2019-05-13T14:52:00.000Z","authorization_token":"tok"}}"#,
            r#"{"at":"soon","callback":{"event_id":"e","session":{"session_id":"s","status":"CANCELLED","updated_at":"2019-05-13T14:52:00.000Z"}}}"#,
            r#"{"at":"2099-13-01T00:00:00Z","not_found":true,"session_id":"s"}"#,
            r#"{"at":"","not_found":true,"session_id":"new"}"#,
        ]
        .into_iter()
        .zip(2..)
        {
            let record = seen.replay(n, Ok(bad));
            let Err(error) = &record.result else {
                panic!("line {n} was accepted")
            };
            assert!(error.starts_with("at: "), "line {n}: {error}");
            assert_eq!(record.session_id, Some(if n == 5 { "new" } else { "s" }));
            assert_eq!(record.status, if n == 5 { None } else { Some("WAITING") });
        }
        let after: Vec<(String, Tracker)> = seen
            .trackers()
            .map(|(id, t)| (id.to_owned(), t.clone()))
            .collect();
        assert_eq!(after, before);
        assert_eq!(
            (seen.rejected, seen.actions),
            (4, [0; ActionKind::ALL.len()])
        );
    }

    #[test]
    fn a_body_makes_the_snapshot_the_library_makes_also_after_crossing_threads() {
        for body in bodies() {
            let expected = body.snapshot();
            assert_eq!(Body::of(body).snapshot(), expected, "{body:?}");
            // Across threads: strings copied into a buffer as ranges, then read back.
            let mut buffer = String::new();
            let Ok(ranges) = Body::of(body).try_map(&mut |s: &str| {
                let start = buffer.len();
                buffer.push_str(s);
                Ok::<_, Infallible>(start..buffer.len())
            });
            let back = ranges.try_map(&mut |r| buffer.get(r).ok_or(()));
            assert_eq!(back.map(|b| b.snapshot()), Ok(expected), "{body:?}");
        }
    }
}
