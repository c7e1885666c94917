//! Replaying log lines into one tracker per session.

use std::collections::HashMap;

use hpp_session::wire::{CallbackBody, SessionBody};
use hpp_session::{ActionKind, Report, SessionId, Status, Timestamp, Tracker, TrackerConfig};
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
        let result = match text {
            Ok(text) => observe(trackers, *config, text, &mut record),
            Err(e) => Err(e),
        };
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

/// Observes one line of text; fills in the record's session and what it shows, and returns
/// the report, or why the line is rejected (then nothing changed).
fn observe<'a>(
    trackers: &'a mut Trackers,
    config: TrackerConfig,
    text: &'a str,
    record: &mut Record<'a>,
) -> Result<(Report<'a>, Timestamp), String> {
    // The snapshot (568 bytes) is built here, in place, and only borrowed from then on: moving
    // it through the parse result cost a fifth of a replay in copies.
    let checked = parse(text).and_then(|line| {
        let snapshot = match line.what {
            What::Callback { body, .. } | What::Read(body) => Some(
                body.snapshot()
                    .map_err(|e| (Some(line.session_id), e.to_string()))?,
            ),
            What::NotFound => None,
        };
        Ok((line, snapshot))
    });
    let (line, snapshot) = match checked {
        Ok(checked) => checked,
        Err((session_id, e)) => {
            record.session_id = session_id;
            // A rejected line changes nothing: show the session as it was.
            if let Some(t) = session_id.and_then(|id| trackers.get(id)) {
                record.status = shown_status(t);
                record.claim = t.claim().map(|c| c.status().as_str());
            }
            return Err(e);
        }
    };
    record.session_id = Some(line.session_id);
    let tracker = trackers.get_or_insert(line.session_id, config);
    record.status = shown_status(tracker);
    record.claim = tracker.claim().map(|c| c.status().as_str());
    let now = line.at;
    let report = match (line.what, &snapshot) {
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

/// A log line, parsed; its session body is checked by the caller ([`SessionBody::snapshot`]).
struct Parsed<'a> {
    at: Timestamp,
    session_id: &'a str,
    what: What<'a>,
}

enum What<'a> {
    Callback {
        event_id: Option<&'a str>,
        body: SessionBody<'a>,
    },
    Read(SessionBody<'a>),
    NotFound,
}

/// Parses one line of the log and checks its routing and `at`; an error names the session when
/// the line could be routed to one.
fn parse(text: &str) -> Result<Parsed<'_>, (Option<&str>, String)> {
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
        (Some(body), Some(event_id)) => What::Callback { event_id, body },
        (Some(body), None) => What::Read(body),
        (None, _) => What::NotFound,
    };
    Ok(Parsed {
        at,
        session_id,
        what,
    })
}
