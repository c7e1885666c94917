//! Replaying log lines into one tracker per session.

use std::collections::HashMap;

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
    // Unpacked before any tracker is touched, so that a line rejected here changes nothing.
    let checked = prepared.0.and_then(|line| {
        let unpack = |packed: Packed| {
            packed.unpack().map_err(|e| Rejection {
                session_id: Some(line.session_id),
                error: e.to_string(),
            })
        };
        let observed = match line.what {
            What::Callback { event_id, snapshot } => {
                Observed::Callback(event_id, unpack(snapshot)?)
            }
            What::Read(snapshot) => Observed::Read(unpack(snapshot)?),
            What::NotFound => Observed::NotFound,
        };
        Ok((line.at, line.session_id, observed))
    });
    let (now, session_id, observed) = match checked {
        Ok(checked) => checked,
        Err(Rejection { session_id, error }) => {
            record.session_id = session_id;
            // A rejected line changes nothing: show the session as it was.
            if let Some(t) = session_id.and_then(|id| trackers.get(id)) {
                record.status = shown_status(t);
                record.claim = t.claim().map(|c| c.status().as_str());
            }
            return Err(error);
        }
    };
    record.session_id = Some(session_id);
    let tracker = trackers.get_or_insert(session_id, config);
    record.status = shown_status(tracker);
    record.claim = tracker.claim().map(|c| c.status().as_str());
    let report = match &observed {
        Observed::Callback(event_id, snapshot) => tracker
            .observe_callback(*event_id, snapshot, now)
            .map_err(|e| e.to_string())?,
        Observed::Read(snapshot) => tracker.observe_read(snapshot, now),
        Observed::NotFound => tracker.observe_not_found(now).map_err(|e| e.to_string())?,
    };
    Ok((report, now))
}

/// What a line observes, its snapshot unpacked.
enum Observed<'a> {
    Callback(Option<&'a str>, Snapshot),
    Read(Snapshot),
    NotFound,
}

/// One line of the log, read and checked before any tracker sees it: everything about a line
/// that does not depend on the sessions, so that it can be done on another thread
/// ([`crate::pipeline`]). `S` is how it refers to strings in the line's text: `&str`, or a
/// byte range of the line while it crosses threads.
pub struct Prepared<S>(Result<Observation<S>, Rejection<S>>);

/// A line that can be observed.
struct Observation<S> {
    at: Timestamp,
    session_id: S,
    what: What<S>,
}

enum What<S> {
    Callback {
        event_id: Option<S>,
        snapshot: Packed,
    },
    Read(Packed),
    NotFound,
}

/// A checked snapshot in few bytes while it waits to be applied. A [`Snapshot`] is 568 bytes,
/// nearly all of it room for completion ids stored inline, and most snapshots have none: moving
/// whole snapshots between threads cost more than checking them.
enum Packed {
    /// A snapshot without completion data.
    Plain {
        status: Status,
        updated_at: Timestamp,
        expires_at: Option<Timestamp>,
    },
    /// A snapshot with completion data (a `COMPLETED` session).
    Paid(Box<Snapshot>),
}

impl Packed {
    fn new(snapshot: Snapshot) -> Self {
        if snapshot.completion().is_some() {
            return Self::Paid(Box::new(snapshot));
        }
        Self::Plain {
            status: snapshot.status(),
            updated_at: snapshot.updated_at(),
            expires_at: snapshot.expires_at(),
        }
    }

    /// The snapshot again. A plain one is checked again by [`Snapshot::new`], which accepts
    /// whatever [`Packed::new`] took apart.
    fn unpack(self) -> Result<Snapshot, SnapshotError> {
        match self {
            Self::Plain {
                status,
                updated_at,
                expires_at,
            } => Snapshot::new(status, updated_at, expires_at, None),
            Self::Paid(snapshot) => Ok(*snapshot),
        }
    }
}

/// Why a line is rejected, and the session it names when it could be routed.
struct Rejection<S> {
    session_id: Option<S>,
    error: String,
}

impl<'a> Prepared<&'a str> {
    /// Reads and checks one line of text (`Err` when it could not be read as text).
    #[must_use]
    pub fn of(text: Result<&'a str, String>) -> Self {
        Self(
            text.map_err(|error| Rejection {
                session_id: None,
                error,
            })
            .and_then(|text| {
                let line =
                    parse(text).map_err(|(session_id, error)| Rejection { session_id, error })?;
                let snapshot = |body: SessionBody<'_>| {
                    body.snapshot().map(Packed::new).map_err(|e| Rejection {
                        session_id: Some(line.session_id),
                        error: e.to_string(),
                    })
                };
                let what = match line.what {
                    Parsed::Callback { event_id, body } => What::Callback {
                        event_id,
                        snapshot: snapshot(body)?,
                    },
                    Parsed::Read(body) => What::Read(snapshot(body)?),
                    Parsed::NotFound => What::NotFound,
                };
                Ok(Observation {
                    at: line.at,
                    session_id: line.session_id,
                    what,
                })
            }),
        )
    }
}

impl<S> Prepared<S> {
    /// The same line with its strings referred to through `f`; `None` when `f` gives `None`
    /// for one of them.
    pub fn try_map<T>(self, mut f: impl FnMut(S) -> Option<T>) -> Option<Prepared<T>> {
        Some(Prepared(match self.0 {
            Ok(Observation {
                at,
                session_id,
                what,
            }) => Ok(Observation {
                at,
                session_id: f(session_id)?,
                what: match what {
                    What::Callback { event_id, snapshot } => What::Callback {
                        event_id: match event_id {
                            Some(id) => Some(f(id)?),
                            None => None,
                        },
                        snapshot,
                    },
                    What::Read(snapshot) => What::Read(snapshot),
                    What::NotFound => What::NotFound,
                },
            }),
            Err(Rejection { session_id, error }) => Err(Rejection {
                session_id: match session_id {
                    Some(id) => Some(f(id)?),
                    None => None,
                },
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

/// A log line, parsed: its `at` read and its routing checked; its session body is checked by
/// [`Prepared::of`] ([`SessionBody::snapshot`]).
struct ParsedLine<'a> {
    at: Timestamp,
    session_id: &'a str,
    what: Parsed<'a>,
}

enum Parsed<'a> {
    Callback {
        event_id: Option<&'a str>,
        body: SessionBody<'a>,
    },
    Read(SessionBody<'a>),
    NotFound,
}

/// Parses one line of the log and checks its routing and `at`; an error names the session when
/// the line could be routed to one.
fn parse(text: &str) -> Result<ParsedLine<'_>, (Option<&str>, String)> {
    let line: LogLine<'_> =
        serde_json::from_str(text).map_err(|e| (None, format!("not a log line: {e}")))?;
    let (event_id, body) = match (line.callback, line.read, line.not_found) {
        (Some(cb), None, None) => (Some(cb.event_id), Some(cb.session)),
        (None, Some(read), None) => (None, Some(read)),
        (None, None, Some(true)) => (None, None),
        _ => {
            let e = "a line has exactly one of callback, read, or not_found: true";
            return Err((None, e.into()));
        }
    };
    let session_id = match (body.and_then(|b| b.session_id), line.session_id) {
        (Some(body_id), Some(line_id)) if body_id != line_id => {
            return Err((
                None,
                format!("the line's session_id {line_id:?} differs from the body's {body_id:?}"),
            ));
        }
        (Some(id), _) | (None, Some(id)) => id,
        (None, None) => {
            let e = "no session_id: the line cannot be routed to a session";
            return Err((None, e.into()));
        }
    };
    SessionId::new(session_id).map_err(|e| (None, e.to_string()))?;
    let routed = |e: String| (Some(session_id), e);
    let at = Timestamp::parse(line.at).map_err(|e| routed(format!("at: {e}")))?;
    let what = match (body, event_id) {
        (Some(body), Some(event_id)) => Parsed::Callback { event_id, body },
        (Some(body), None) => Parsed::Read(body),
        (None, _) => Parsed::NotFound,
    };
    Ok(ParsedLine {
        at,
        session_id,
        what,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use hpp_session::{AuthorizationToken, Completion, CompletionProblem, OrderId};

    #[test]
    fn a_packed_snapshot_unpacks_to_itself_and_a_paid_one_stays_paid() {
        let at = Timestamp::parse("2019-05-13T14:54:04.675Z").unwrap();
        let expires = Timestamp::parse("2019-05-15T13:51:43.507Z").ok();
        let paid = [
            Completion::Authorized {
                authorization_token: AuthorizationToken::new("tok").unwrap(),
            },
            Completion::OrderPlaced {
                order_id: OrderId::new("order").unwrap(),
                klarna_reference: None,
            },
            Completion::Unusable(CompletionProblem::Missing),
        ];
        let mut snapshots = Vec::new();
        for status in Status::ALL {
            for expires_at in [None, expires] {
                if status == Status::Completed {
                    for completion in &paid {
                        let s = Snapshot::new(status, at, expires_at, Some(completion.clone()));
                        snapshots.push(s.unwrap());
                    }
                } else {
                    snapshots.push(Snapshot::new(status, at, expires_at, None).unwrap());
                }
            }
        }
        for snapshot in snapshots {
            let packed = Packed::new(snapshot.clone());
            let paid = matches!(packed, Packed::Paid(_));
            assert_eq!(paid, snapshot.status() == Status::Completed, "{snapshot:?}");
            assert_eq!(packed.unpack().as_ref(), Ok(&snapshot));
        }
    }
}
