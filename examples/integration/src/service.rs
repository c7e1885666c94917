//! The callback handler, the poller and the executor. Each call works from the database alone,
//! and every change it makes is one transaction.

use std::fmt;
use std::path::Path;

use hpp_session::wire::{CallbackBody, SessionBody};
use hpp_session::{
    Outcome, ReadFailure, SessionId, Timestamp, Tracker, TrackerConfig, callback_secret_matches,
};
use rusqlite::Connection;

use crate::store::{self, StoredAction};

/// Where the test may kill the process.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum CrashPoint {
    /// After a read answered, before anything is stored.
    AfterRead,
    /// With the transaction written but not committed (so it rolls back).
    BeforeCommit,
    /// Right after the commit, before the caller hears of it.
    AfterCommit,
    /// After an action was performed, before it is marked done.
    AfterPerform,
    /// After an action was marked done.
    AfterMarkDone,
}

/// The process died here: all in-memory state is gone; reopen the service from the database.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Crash(pub CrashPoint);

/// Decides where the process dies (in tests); production code passes [`NoFaults`].
pub trait Faults {
    /// `Err` kills the process at `point`.
    ///
    /// # Errors
    /// [`Crash`] when the process dies here.
    fn check(&mut self, point: CrashPoint) -> Result<(), Crash>;
}

/// Never crashes.
pub struct NoFaults;

impl Faults for NoFaults {
    fn check(&mut self, _: CrashPoint) -> Result<(), Crash> {
        Ok(())
    }
}

/// Why a call failed.
#[derive(Debug)]
pub enum ServiceError {
    /// The process died (in tests).
    Crashed(Crash),
    /// The database failed.
    Db(rusqlite::Error),
}

impl fmt::Display for ServiceError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Crashed(Crash(point)) => write!(f, "the process died at {point:?}"),
            Self::Db(e) => write!(f, "database: {e}"),
        }
    }
}

impl std::error::Error for ServiceError {}

impl From<Crash> for ServiceError {
    fn from(c: Crash) -> Self {
        Self::Crashed(c)
    }
}

impl From<rusqlite::Error> for ServiceError {
    fn from(e: rusqlite::Error) -> Self {
        Self::Db(e)
    }
}

/// What the handler did with a callback. Only [`Handled::Observed`] changed anything; the HTTP
/// answer is 2xx for it and for the refusals that a retry would not fix, 403 for `Forbidden`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Handled {
    /// Observed, with this outcome.
    Observed(Outcome),
    /// No such session.
    UnknownSession,
    /// The secret in the URL is wrong: not from Klarna.
    Forbidden,
    /// The body is not a callback for this session, or the tracker refused it.
    Refused(String),
}

/// What a read of the session answered.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ReadResult {
    /// 200, with the body.
    Body(String),
    /// 404.
    NotFound,
    /// 429, 5xx, a timeout: nothing learned.
    Failed,
}

/// What the service makes of a callback whose secret matched.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Callbacks {
    /// A hint all the same (the tracker's default): a leaked secret still moves no money.
    #[default]
    Hints,
    /// Evidence, observed with the proof the secret check returns
    /// ([`Tracker::observe_verified_callback`]).
    Verified,
}

/// The service: one database connection, the trackers' configuration, and what it makes of
/// callbacks.
pub struct Service {
    conn: Connection,
    config: TrackerConfig,
    callbacks: Callbacks,
}

impl Service {
    /// Opens the service on the database at `path` (creating it).
    ///
    /// # Errors
    /// SQLite's.
    pub fn open(
        path: &Path,
        config: TrackerConfig,
        callbacks: Callbacks,
    ) -> rusqlite::Result<Self> {
        Ok(Self {
            conn: store::open(path)?,
            config,
            callbacks,
        })
    }

    /// Records a session just created through Klarna's API, with the secret put in its callback
    /// URL. Its first read is due at once.
    ///
    /// # Errors
    /// SQLite's (the session already recorded included).
    pub fn create_session(
        &mut self,
        session_id: &str,
        secret: &str,
        now: Timestamp,
    ) -> Result<(), ServiceError> {
        let tx = self.conn.transaction()?;
        // Bound to its session: a snapshot of another session is refused by the tracker.
        let tracker = match SessionId::new(session_id) {
            Ok(id) => Tracker::for_session(id),
            Err(_) => Tracker::new(),
        };
        store::insert(
            &tx,
            session_id,
            secret,
            &tracker,
            tracker.next_read(&self.config, now),
        )?;
        tx.commit()?;
        Ok(())
    }

    /// Handles a status callback posted to the session's URL with `secret` at `now`.
    ///
    /// # Errors
    /// [`ServiceError`]: then nothing was stored (unless the crash came after the commit).
    pub fn handle_callback(
        &mut self,
        session_id: &str,
        secret: &str,
        body: &[u8],
        now: Timestamp,
        faults: &mut impl Faults,
    ) -> Result<Handled, ServiceError> {
        let tx = self.conn.transaction()?;
        let Some(mut row) = store::load(&tx, session_id)? else {
            return Ok(Handled::UnknownSession);
        };
        let Ok(url_session) = SessionId::new(session_id) else {
            return Ok(Handled::UnknownSession);
        };
        let Some(checked) =
            callback_secret_matches(&url_session, row.secret.as_bytes(), secret.as_bytes())
        else {
            return Ok(Handled::Forbidden);
        };
        let callback: CallbackBody<'_> = match serde_json::from_slice(body) {
            Ok(c) => c,
            Err(e) => return Ok(Handled::Refused(format!("not a callback: {e}"))),
        };
        let snapshot = match callback.session.snapshot() {
            Ok(s) => s,
            Err(e) => return Ok(Handled::Refused(e.to_string())),
        };
        let observed = match self.callbacks {
            Callbacks::Hints => {
                row.tracker
                    .observe_callback(&self.config, callback.event_id(), &snapshot, now)
            }
            Callbacks::Verified => {
                row.tracker
                    .observe_verified_callback(checked, callback.event_id(), &snapshot, now)
            }
        };
        let (outcome, actions) = match observed {
            Ok(report) => (
                report.outcome(),
                store::owned(&row.tracker, report.newly_owed()),
            ),
            Err(e) => return Ok(Handled::Refused(e.to_string())),
        };
        let next = row.tracker.next_read(&self.config, now);
        store::save(&tx, session_id, &row.tracker, next, &actions)?;
        faults.check(CrashPoint::BeforeCommit)?;
        tx.commit()?;
        faults.check(CrashPoint::AfterCommit)?;
        Ok(Handled::Observed(outcome))
    }

    /// Reads every session whose read is due at `now` (at most `limit`), with `read`, and
    /// stores what each read showed. Returns how many were read.
    ///
    /// Due reads are read most urgent first (the tracker's [`hpp_session::Urgency`]), then
    /// longest due first. The tracker counts each read, and backs off after a failed one (or a
    /// 404 it cannot judge yet): the service keeps no schedule of its own.
    ///
    /// # Errors
    /// [`ServiceError`]: the sessions read before it are stored.
    pub fn poll(
        &mut self,
        now: Timestamp,
        limit: u32,
        mut read: impl FnMut(&str, Timestamp) -> ReadResult,
        faults: &mut impl Faults,
    ) -> Result<u32, ServiceError> {
        let due = store::due(&self.conn, now, limit)?;
        for session_id in &due {
            let answer = read(session_id, now);
            faults.check(CrashPoint::AfterRead)?;
            let tx = self.conn.transaction()?;
            let Some(mut row) = store::load(&tx, session_id)? else {
                continue;
            };
            let learned = match &answer {
                ReadResult::Body(body) => serde_json::from_str::<SessionBody<'_>>(body)
                    .ok()
                    .and_then(|b| b.snapshot().ok())
                    .and_then(|s| row.tracker.observe_read(&self.config, &s, now).ok())
                    .map(|r| store::owned(&row.tracker, r.newly_owed())),
                ReadResult::NotFound => row
                    .tracker
                    .observe_not_found(now)
                    .ok()
                    .map(|r| store::owned(&row.tracker, r.newly_owed())),
                ReadResult::Failed => None,
            };
            let actions = learned.unwrap_or_else(|| {
                let failure = match answer {
                    ReadResult::Failed => ReadFailure::ServerError,
                    _ => ReadFailure::Unexpected,
                };
                row.tracker.observe_read_failure(failure, now);
                Vec::new()
            });
            let next = row.tracker.next_read(&self.config, now);
            store::save(&tx, session_id, &row.tracker, next, &actions)?;
            faults.check(CrashPoint::BeforeCommit)?;
            tx.commit()?;
            faults.check(CrashPoint::AfterCommit)?;
        }
        Ok(u32::try_from(due.len()).unwrap_or(u32::MAX))
    }

    /// When the next read is due, if any is.
    ///
    /// # Errors
    /// SQLite's.
    pub fn next_read(&self) -> Result<Option<Timestamp>, ServiceError> {
        Ok(store::next_due(&self.conn)?.and_then(|ms| {
            Timestamp::from_unix(
                ms.div_euclid(1_000),
                u32::try_from(ms.rem_euclid(1_000) * 1_000_000).unwrap_or(0),
            )
        }))
    }

    /// Performs pending actions (at most `limit`) with `perform`, marking each done after it
    /// succeeded: the row, and on the tracker (which owes it until then), in one transaction.
    /// An action whose `perform` fails stays pending. Returns how many were done.
    ///
    /// `perform` receives each action with its stable id: an action performed just before a
    /// crash is performed again after the restart (at least once), so pass the id on as an
    /// idempotency key, or check it before performing.
    ///
    /// # Errors
    /// [`ServiceError`].
    pub fn execute<E>(
        &mut self,
        limit: u32,
        mut perform: impl FnMut(&StoredAction) -> Result<(), E>,
        faults: &mut impl Faults,
    ) -> Result<u32, ServiceError> {
        let mut done = 0;
        for action in store::pending(&self.conn, limit)? {
            if perform(&action).is_err() {
                continue;
            }
            faults.check(CrashPoint::AfterPerform)?;
            let tx = self.conn.transaction()?;
            if let Some(mut row) = store::load(&tx, &action.session_id)? {
                let kind = hpp_session::ActionKind::from_name(&action.kind);
                if let (Some(kind), Ok(id)) = (kind, SessionId::new(&action.session_id)) {
                    // Refused only for a kind never asked: a row this service did not write.
                    let _ = row.tracker.done(hpp_session::ActionId::new(&id, kind));
                }
                store::save_tracker(&tx, &action.session_id, &row.tracker)?;
            }
            store::mark_done(&tx, &action.action_id)?;
            tx.commit()?;
            faults.check(CrashPoint::AfterMarkDone)?;
            done += 1;
        }
        Ok(done)
    }

    /// Actions not yet done.
    ///
    /// # Errors
    /// SQLite's.
    pub fn pending(&self) -> Result<Vec<StoredAction>, ServiceError> {
        Ok(store::pending(&self.conn, u32::MAX)?)
    }
}
