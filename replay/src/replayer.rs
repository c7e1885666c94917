//! Replaying log lines into one tracker per session.

use hpp_session::wire::{CallbackStatus, SessionStatus};

use crate::fields::{BodyFields, Field, LineFields, SnapshotFields, Span};

use crate::log_line::LogLine;
use crate::sessions::{Sessions, View};
use hpp_session::{
    Action, ActionId, ActionKind, ActionSet, Completion, CompletionProblem, IdError, Outcome,
    Report, SecretMatched, SessionId, Settled, Snapshot, Status, Timestamp, Tracker, TrackerConfig,
    callback_secret_matches,
};

/// What one observation did, owned (the session may settle right after it).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Observed {
    /// What it did.
    pub outcome: Outcome,
    /// The kinds of the actions newly asked for.
    pub kinds: ActionSet,
    /// The actions newly asked for, with their data (empty, and not allocated, when none).
    pub actions: Vec<Action>,
    /// When to read the session next, after the observation (`None`: no more reads; also
    /// when [`crate::replay`] writes an output that does not show it).
    pub next_read: Option<Timestamp>,
}

impl Observed {
    /// What `report` did on `tracker`. The replay is the log of an executor: the actions it
    /// reports are done once reported, so that a session settles.
    fn of(
        report: Report,
        tracker: &mut Tracker,
        config: &TrackerConfig,
        now: Timestamp,
        next_reads: bool,
    ) -> Self {
        let kinds = report.newly_owed();
        let actions = if kinds.is_empty() {
            Vec::new()
        } else {
            kinds.iter().filter_map(|k| tracker.action(k)).collect()
        };
        report_done(tracker, kinds);
        Self {
            outcome: report.outcome(),
            kinds,
            actions,
            next_read: if next_reads {
                tracker.next_read(config, now).map(|r| r.at)
            } else {
                None
            },
        }
    }

    /// A settled session's answer: it asks for nothing, and needs no more reads.
    fn settled(outcome: Outcome) -> Self {
        Self {
            outcome,
            kinds: ActionSet::EMPTY,
            actions: Vec::new(),
            next_read: None,
        }
    }
}

/// What one line did.
pub struct Record<'a> {
    /// The line's number, from 1.
    pub line: u64,
    /// The session it was routed to, when it could be.
    pub session_id: Option<&'a str>,
    /// What the observation did and when `now` was, or why the line was rejected.
    pub result: Result<(Observed, Timestamp), String>,
    /// The session's shown status after the line: its confirmed status's wire name, or
    /// `EXPIRED` once a session that was not paid expired.
    pub status: Option<&'static str>,
    /// The status unsigned callbacks claim, awaiting confirmation.
    pub claim: Option<&'static str>,
}

/// What a session shows as its (confirmed) status: the wire name, or `EXPIRED` once a session
/// that was not paid expired.
pub(crate) fn shown_status(v: View<'_>) -> Option<&'static str> {
    shown(v.status(), v.is_expired())
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

/// How a replay takes the log's callbacks.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum Callbacks {
    /// As hints (Klarna's callbacks are unsigned). The default.
    #[default]
    Hints,
    /// As evidence: the service that wrote the log checked each callback's secret before it
    /// logged it (`--trust verified`).
    Verified,
}

/// What a replay's trackers are: their configuration, and how they take callbacks.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct Config {
    /// The trackers' configuration (reads, clock skew).
    pub tracker: TrackerConfig,
    /// How callbacks are taken.
    pub callbacks: Callbacks,
}

impl From<TrackerConfig> for Config {
    fn from(tracker: TrackerConfig) -> Self {
        Self {
            tracker,
            callbacks: Callbacks::Hints,
        }
    }
}

/// One tracker per session, and the counts a summary needs.
pub struct Replayer {
    config: Config,
    /// Whether each record says when to read its session next.
    next_reads: bool,
    sessions: Sessions,
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
    /// A replayer whose trackers use `config` (a [`TrackerConfig`] takes callbacks as hints).
    #[must_use]
    pub fn new(config: impl Into<Config>) -> Self {
        Self {
            config: config.into(),
            next_reads: true,
            sessions: Sessions::default(),
            lines: 0,
            rejected: 0,
            first_rejected: Vec::new(),
            actions: [0; ActionKind::ALL.len()],
            latest: None,
        }
    }

    /// The same replayer, whose records leave [`Observed::next_read`] out (`None`): for an
    /// output that does not show it (`--json`, the summaries), which then does not pay for it
    /// (about 5 % of a replay's instructions). Crate-private: a record's `None` otherwise means
    /// "no more reads", which the timeline prints.
    #[must_use]
    pub(crate) fn without_next_reads(self) -> Self {
        Self {
            next_reads: false,
            ..self
        }
    }

    /// The trackers' configuration and how callbacks are taken.
    #[must_use]
    pub const fn config(&self) -> &Config {
        &self.config
    }

    /// The trackers of the open sessions (and of those that settled but were revived), by
    /// session id.
    pub fn trackers(&self) -> impl Iterator<Item = (&str, &Tracker)> {
        self.sessions.live()
    }

    /// Every session: open ones with their id, settled ones with theirs when they have a
    /// conflict.
    pub(crate) fn sessions(&self) -> impl Iterator<Item = (Option<&str>, View<'_>)> {
        self.sessions.iter()
    }

    /// Replays line number `line` (`Err` when it could not be read as text: too long, not
    /// UTF-8). A rejected line changes nothing.
    pub fn replay<'a>(&'a mut self, line: u64, text: Result<&'a str, String>) -> Record<'a> {
        let prepared = Prepared::of(text.as_deref().map_err(Clone::clone));
        self.apply(line, text.unwrap_or_default(), &prepared)
    }

    /// Applies line number `line`, whose text is `text` (`""` when it is not text) and which
    /// [`Prepared::of`] read, to its session's tracker. A rejected line changes nothing.
    pub(crate) fn apply<'a>(
        &'a mut self,
        line: u64,
        text: &'a str,
        prepared: &Prepared,
    ) -> Record<'a> {
        self.lines += 1;
        let Self {
            config,
            next_reads,
            sessions,
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
        let result = observe(sessions, *config, *next_reads, text, prepared, &mut record);
        match &result {
            Ok((observed, now)) => {
                for (count, kind) in actions.iter_mut().zip(ActionKind::ALL) {
                    *count += u64::from(observed.kinds.contains(kind));
                }
                *latest = Some(latest.map_or(*now, |l| l.max(*now)));
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

/// Applies one prepared line to its session's tracker; fills in the record's session and what
/// it shows, and returns the report, or why the line is rejected (then nothing changed).
fn observe<'a>(
    sessions: &mut Sessions,
    config: Config,
    next_reads: bool,
    text: &'a str,
    prepared: &Prepared,
    record: &mut Record<'a>,
) -> Result<(Observed, Timestamp), String> {
    // Everything is checked before any tracker is touched, so that a line rejected here
    // changes nothing.
    let line = match &prepared.0 {
        Ok(line) => line,
        Err(Rejection { session_id, error }) => {
            let session_id = session_id.and_then(|id| id.get(text));
            return Err(rejected(sessions, session_id, error.clone(), record));
        }
    };
    let (Some(at), Some(id)) = (line.at.get(text), line.session_id.get(text)) else {
        return Err(LOST.to_owned());
    };
    let mut routed = |error| rejected(sessions, Some(id), error, record);
    let now = match Timestamp::parse(at) {
        Ok(now) => now,
        Err(e) => return Err(routed(format!("at: {e}"))),
    };
    // The snapshot is built in place and then only borrowed: it is 824 bytes, and each move of
    // it is a copy.
    let checked;
    let snapshot = match &line.what {
        What::Callback { body, .. } | What::Read(body) => {
            checked = match body {
                Body::Fields(fields) => fields.values(text).ok_or(LOST)?.snapshot(),
                Body::PaidUnreadable => Ok(Body::paid_snapshot()),
            };
            match &checked {
                Ok(snapshot) => Some(snapshot),
                Err(e) => return Err(routed(e.to_string())),
            }
        }
        What::NotFound => None,
    };
    record.session_id = Some(id);
    let event_id = match &line.what {
        What::Callback { event_id, .. } => event_id
            .as_ref()
            .and_then(|e| e.value(text))
            .and_then(Result::ok),
        What::Read(_) | What::NotFound => None,
    };
    // An open session is found in the open ones' map; only a session that is not open is
    // looked for among the settled ones (two keyed SipHash values of its id).
    if !sessions.is_live(id) {
        if let Some(settled) = sessions.settled_mut(id) {
            record.status = shown(Some(settled.status()), settled.is_expired());
            match on_settled(settled, config, &line.what, snapshot, now) {
                Err(e) => return Err(e),
                Ok(Some(outcome)) => {
                    record.status = shown(Some(settled.status()), settled.is_expired());
                    sessions.note_conflict(id);
                    return Ok((Observed::settled(outcome), now));
                }
                // Confirmed evidence that outranks the settled change: its tracker comes back.
                Ok(None) => {
                    sessions.revive(id);
                }
            }
        } else {
            // A line that names a new session is tried on a tracker of its own first: one it
            // rejects (a 404 with no known expiry, a callback stamped in the future) leaves no
            // session.
            let mut fresh = Tracker::new();
            // Only whether it is refused counts: this tracker is thrown away.
            let _ = observe_on(&mut fresh, config, id, &line.what, event_id, snapshot, now)?;
            sessions.insert(id);
        }
    }
    let Some(tracker) = sessions.live_mut(id) else {
        return Err("internal error: the session's tracker is gone".to_owned());
    };
    record.status = shown_status(View::Live(tracker));
    record.claim = tracker.claim().map(|c| c.status().as_str());
    let report = observe_on(tracker, config, id, &line.what, event_id, snapshot, now)?;
    let observed = Observed::of(report, tracker, &config.tracker, now, next_reads);
    let state = tracker.state();
    record.status = shown(state.status, state.expired);
    record.claim = state.claim.map(|c| c.status().as_str());
    // A session that settled keeps only its stand-in from now on.
    if let Some(settled) = tracker.settled() {
        sessions.settle(id, settled);
    }
    Ok((observed, now))
}

/// What a line says to a settled session: `Ok(Some)` when the stand-in answers it (it asks for
/// nothing), `Ok(None)` when the session's tracker must come back for it, `Err` (and nothing
/// changed) when it is refused.
fn on_settled(
    settled: &mut Settled,
    config: Config,
    what: &What,
    snapshot: Option<&Snapshot>,
    now: Timestamp,
) -> Result<Option<Outcome>, String> {
    match (what, snapshot, config.callbacks) {
        (What::Callback { .. }, Some(snapshot), Callbacks::Hints) => settled
            .observe_callback(snapshot, now, &config.tracker)
            .map_err(|e| e.to_string()),
        (What::Callback { .. }, Some(snapshot), Callbacks::Verified)
        | (What::Read(_), Some(snapshot), _) => Ok(settled.observe_read(snapshot)),
        (What::NotFound, ..) => settled
            .observe_not_found(now)
            .map(Some)
            .map_err(|e| e.to_string()),
        (What::Callback { .. } | What::Read(_), None, _) => {
            Err("the line's snapshot is missing".to_owned())
        }
    }
}

/// Observes what a line about session `id` says on `tracker`; `Err` (and nothing changed) when
/// the tracker refuses it.
fn observe_on(
    tracker: &mut Tracker,
    config: Config,
    id: &str,
    what: &What,
    event_id: Option<&str>,
    snapshot: Option<&Snapshot>,
    now: Timestamp,
) -> Result<Report, String> {
    match (what, snapshot, config.callbacks) {
        (What::Callback { .. }, Some(snapshot), Callbacks::Hints) => tracker
            .observe_callback(&config.tracker, event_id, snapshot, now)
            .map_err(|e| e.to_string()),
        (What::Callback { .. }, Some(snapshot), Callbacks::Verified) => {
            let checked = checked_when_logged(id).map_err(|e| format!("session_id: {e}"))?;
            tracker
                .observe_verified_callback(checked, event_id, snapshot, now)
                .map_err(|e| e.to_string())
        }
        (What::Read(_), Some(snapshot), _) => tracker
            .observe_read(&config.tracker, snapshot, now)
            .map_err(|e| e.to_string()),
        (What::NotFound, ..) => tracker.observe_not_found(now).map_err(|e| e.to_string()),
        (What::Callback { .. } | What::Read(_), None, _) => {
            Err("the line's snapshot is missing".to_owned())
        }
    }
}

/// Reports `kinds` done on `tracker`: the replay reported them.
fn report_done(tracker: &mut Tracker, kinds: ActionSet) {
    // The replay binds each tracker to the session its lines name; one that is not (an id
    // Klarna would not issue) cannot take a report, and keeps what it owes.
    let Some(id) = tracker.session_id().cloned() else {
        return;
    };
    for kind in kinds.iter() {
        // Cannot be refused: the tracker just asked for it, for its own session.
        let _ = tracker.done(ActionId::new(&id, kind));
    }
}

/// Under `--trust verified` the log holds callbacks whose secret the service checked, for the
/// session the line names, when they arrived; the log does not hold the secrets, so the replay
/// cannot check them again. This stands for that check, in this one place: a callback becomes
/// evidence only through a [`SecretMatched`], and only `callback_secret_matches` makes one.
fn checked_when_logged(id: &str) -> Result<SecretMatched, IdError> {
    const CHECKED: &[u8] = b"checked by the service when it logged the callback";
    let session = SessionId::new(id)?;
    Ok(callback_secret_matches(&session, CHECKED, CHECKED)
        .unwrap_or_else(|| unreachable!("equal secrets")))
}

/// Fills in the record of a line rejected for `error`, which changes nothing: its session as it
/// was, when the line names one that exists. Returns the error.
fn rejected<'a>(
    sessions: &Sessions,
    session_id: Option<&'a str>,
    error: String,
    record: &mut Record<'a>,
) -> String {
    record.session_id = session_id;
    if let Some(v) = session_id.and_then(|id| sessions.get(id)) {
        record.status = shown_status(v);
        record.claim = v.claim().map(|c| c.status().as_str());
    }
    error
}

/// One line of the log, read before any tracker sees it: the JSON parsed and the session it
/// belongs to found; its `at` and session body are read and checked when it is applied. This
/// is the part of a line that does not depend on the sessions, so that it can be done on
/// another thread ([`Threads::Two`](crate::Threads::Two)), and about as much work as applying
/// it. It refers to the strings of its line by where they lie in it ([`Span`]), so that it is
/// applied with the line's text, wherever that was copied, without being moved or changed.
pub(crate) struct Prepared(Result<Observation, Rejection>);

/// A line that can be applied.
struct Observation {
    /// When the integrator received it, read when the line is applied.
    at: Span,
    session_id: Span,
    what: What,
}

enum What {
    Callback { event_id: Option<Field>, body: Body },
    Read(Body),
    NotFound,
}

/// The fields of a session body that make its snapshot
/// ([`hpp_session::wire::SessionFields::snapshot`], without the session id: the replay routes
/// by it), or a `COMPLETED` body that could not be read whole ([`SessionStatus::paid_snapshot`]).
enum Body {
    Fields(SnapshotFields),
    PaidUnreadable,
}

impl Body {
    /// The snapshot of a [`Body::PaidUnreadable`]: what [`SessionStatus::paid_snapshot`] gives
    /// a `COMPLETED` body. (A body's fields make theirs: [`hpp_session::wire::SessionFields::snapshot`], the check
    /// [`hpp_session::wire::SessionBody::snapshot`] makes.)
    fn paid_snapshot() -> Snapshot {
        let problem = CompletionProblem::Malformed;
        Snapshot::paid_undated(Completion::Unusable(problem), None)
    }
}

/// Why a line is rejected, and the session it names when it could be routed.
struct Rejection {
    session_id: Option<Span>,
    error: String,
}

/// Why a prepared line was not applied: a string of it was not in the text it was applied
/// with (never seen: a line is applied with the text it was read from, or a copy of it).
pub(crate) const LOST: &str = "internal error: a string of the line was not found in it";

impl Prepared {
    /// Reads one line of text (`Err` when it could not be read as text: why). Apply it with
    /// that text (or a copy).
    #[must_use]
    pub(crate) fn of(text: Result<&str, String>) -> Self {
        match text {
            Ok(line) => Self(parse(line)),
            Err(error) => Self::rejected(error),
        }
    }

    /// Why the line is rejected, if it is.
    #[cfg(test)]
    #[must_use]
    pub(crate) fn error(&self) -> Option<&str> {
        self.0.as_ref().err().map(|r| r.error.as_str())
    }

    /// A line rejected for `error`, routed to no session.
    #[must_use]
    pub(crate) fn rejected(error: String) -> Self {
        Self(Err(Rejection {
            session_id: None,
            error,
        }))
    }
}

/// Parses one line of the log and checks its routing; a rejection names the session when the
/// line could be routed to one.
///
/// A line whose body has a field of another type than Klarna documents (an `order_id` written
/// as a number by an integrator's own round trip) is read again for its session's id and
/// status alone: a paid session stays paid ([`SessionStatus::paid_snapshot`]); any other such
/// line is rejected as before.
fn parse(text: &str) -> Result<Observation, Rejection> {
    let unrouted = |error: String| Rejection {
        session_id: None,
        error,
    };
    let mut line = LineFields::default();
    if let Err(e) = line.read(text) {
        return paid_unreadable(text)
            .unwrap_or_else(|| Err(unrouted(format!("not a log line: {e}"))));
    }
    let LineFields {
        at,
        session_id,
        not_found,
        callback,
        read,
        event_id,
        body: BodyFields {
            session_id: body_id,
            snapshot,
        },
    } = line;
    let (event_id, body) = match (callback, read, not_found) {
        (true, false, None) => (Some(event_id), Some(snapshot)),
        (false, true, None) => (None, Some(snapshot)),
        (false, false, Some(true)) => (None, None),
        _ => return Err(unrouted(ONE_OF.into())),
    };
    let (Ok(body_id), Ok(line_id)) = (
        body_id.map(|id| id.in_text(text).ok_or(())).transpose(),
        session_id.map(|id| id.get(text).ok_or(())).transpose(),
    ) else {
        return Err(unrouted(LOST.into()));
    };
    let session_id = route(body_id, line_id)
        .and_then(|id| Span::of(text, id).ok_or_else(|| LOST.to_owned()))
        .map_err(unrouted)?;
    let what = match (body, event_id) {
        (Some(body), Some(event_id)) => What::Callback {
            event_id,
            body: Body::Fields(body),
        },
        (Some(body), None) => What::Read(Body::Fields(body)),
        (None, _) => What::NotFound,
    };
    Ok(Observation {
        at,
        session_id,
        what,
    })
}

const ONE_OF: &str = "a line has exactly one of callback, read, or not_found: true";

/// The session a line belongs to: the body's `session_id` and the line's, which must agree
/// when both are given. An escaped `session_id` is refused: the replay routes by the text of
/// the line (Klarna's session ids are UUIDs, with nothing to escape).
fn route<'a>(body_id: Option<Field<&'a str>>, line_id: Option<&'a str>) -> Result<&'a str, String> {
    let body_id = match body_id {
        None => None,
        Some(Field::Line(id)) => Some(id),
        Some(Field::Kept(escaped)) => {
            return Err(format!(
                "the session_id {escaped:?} is written with escapes: the replay routes by the \
                 session_id as the line writes it"
            ));
        }
    };
    let session_id = match (body_id, line_id) {
        (Some(body_id), Some(line_id)) if body_id != line_id => {
            return Err(format!(
                "the line's session_id {line_id:?} differs from the body's {body_id:?}"
            ));
        }
        (Some(id), _) | (None, Some(id)) => id,
        (None, None) => return Err("no session_id: the line cannot be routed to a session".into()),
    };
    SessionId::new(session_id).map_err(|e| e.to_string())?;
    Ok(session_id)
}

/// A line whose body could not be read whole but says `COMPLETED`: a paid session whose data a
/// person must review. `None` for anything else (the line is then rejected as it was).
fn paid_unreadable(text: &str) -> Option<Result<Observation, Rejection>> {
    let line: LogLine<'_, CallbackStatus<'_>, SessionStatus<'_>> =
        serde_json::from_str(text).ok()?;
    let (callback, status) = match (line.callback, line.read, line.not_found) {
        (Some(cb), None, None) => (true, cb.session),
        (None, Some(read), None) => (false, read),
        _ => return None,
    };
    status.paid_snapshot().ok()??;
    let session_id = route(status.session_id.map(Field::of), line.session_id).ok()?;
    let (Some(at), Some(session_id)) = (Span::of(text, line.at), Span::of(text, session_id)) else {
        return Some(Err(Rejection {
            session_id: None,
            error: LOST.to_owned(),
        }));
    };
    Some(Ok(Observation {
        at,
        session_id,
        what: if callback {
            What::Callback {
                event_id: None,
                body: Body::PaidUnreadable,
            }
        } else {
            What::Read(Body::PaidUnreadable)
        },
    }))
}

#[cfg(test)]
mod tests {
    use hpp_session::wire::SessionBody;

    use super::*;

    /// Bodies of every shape: each status, each completion shape, and the malformed.
    fn bodies() -> Vec<SessionBody<'static>> {
        let plain = SessionBody {
            session_id: Some("s".into()),
            status: Some("WAITING".into()),
            updated_at: Some("2019-05-13T14:54:04.675Z".into()),
            expires_at: Some("2019-05-15T13:51:43.507Z".into()),
            ..SessionBody::default()
        };
        let mut bodies: Vec<SessionBody<'static>> = Status::ALL
            .iter()
            .map(|s| SessionBody {
                status: Some(s.as_str().into()),
                ..plain.clone()
            })
            .collect();
        let paid = SessionBody {
            status: Some("COMPLETED".into()),
            ..plain.clone()
        };
        for (token, order, reference) in [
            (Some("tok"), None, None),
            (None, Some("order"), Some("ref")),
            (Some("tok"), Some("order"), None),
            (None, None, Some("ref")),
            (Some(""), None, None),
        ] {
            bodies.push(SessionBody {
                authorization_token: token.map(Into::into),
                order_id: order.map(Into::into),
                klarna_reference: reference.map(Into::into),
                ..paid.clone()
            });
        }
        bodies.extend([
            SessionBody {
                expires_at: None,
                ..plain.clone()
            },
            SessionBody {
                status: None,
                ..plain.clone()
            },
            SessionBody {
                status: Some("COMPLETE".into()),
                ..plain.clone()
            },
            SessionBody {
                updated_at: Some("yesterday".into()),
                ..plain.clone()
            },
            SessionBody {
                expires_at: Some("2019-02-30T00:00:00Z".into()),
                ..plain.clone()
            },
            SessionBody {
                authorization_token: Some("tok".into()),
                ..plain.clone()
            },
        ]);
        bodies
    }

    /// The next read is in each record unless the replayer was told to leave it out, and
    /// leaving it out changes nothing else.
    #[test]
    fn next_reads_are_computed_only_when_asked_for() {
        let waiting = r#"{"at":"2019-05-13T14:51:43.507Z","read":{"session_id":"s","status":"WAITING","updated_at":"2019-05-13T14:51:43.507Z"}}"#;
        let mut with = Replayer::new(TrackerConfig::DEFAULT);
        let mut without = Replayer::new(TrackerConfig::DEFAULT).without_next_reads();
        let (a, b) = (with.replay(1, Ok(waiting)), without.replay(1, Ok(waiting)));
        let (Ok((a, _)), Ok((b, _))) = (a.result, b.result) else {
            panic!("a WAITING read is accepted");
        };
        assert!(a.next_read.is_some());
        assert_eq!(b.next_read, None);
        assert_eq!(
            Observed {
                next_read: None,
                ..a
            },
            b
        );
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
            // The replay routes by the line's session id and binds its trackers to it, so its
            // snapshots carry none: the library's, of the body without its id.
            let expected = SessionBody {
                session_id: None,
                ..body.clone()
            }
            .snapshot();
            let json = format!(
                r#"{{"at":"2019-05-13T14:54:05Z","read":{}}}"#,
                serde_json::to_string(&body).unwrap()
            );
            let mut line = LineFields::default();
            line.read(&json).unwrap();
            let spans = line.body.snapshot;
            let snapshot = |text| spans.values(text).map(|fields| fields.snapshot());
            assert_eq!(snapshot(&json), Some(expected.clone()), "{body:?}");
            // Across threads: the strings as where they lie in the line, read in a copy of it.
            let copy = json.clone();
            assert_eq!(snapshot(&copy), Some(expected), "{body:?}");
            // Not in a text that does not hold them (every body here that has a status has
            // it as the line writes it).
            if json.contains("\"status\"") {
                assert_eq!(snapshot(""), None, "{json}");
            }
        }
    }
}
