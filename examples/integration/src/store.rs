//! The database: sessions with their trackers, and the actions they asked for.

use hpp_session::{Action, ActionKind, ActionSet, NextRead, Timestamp, Tracker, Urgency};
use rusqlite::{Connection, OptionalExtension, Transaction, params};
use serde_json::Value;

/// The schema. `next_read_ms` is when the tracker's next read falls due (Unix milliseconds; it
/// stays due until a read happens), `NULL` when none is needed; `urgency` orders due reads (2
/// confirm, 1 initial, 0 blind). The back-off after failed reads is the tracker's.
const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS sessions (
    session_id    TEXT PRIMARY KEY,
    secret        TEXT NOT NULL,
    tracker       TEXT NOT NULL,
    next_read_ms  INTEGER,
    urgency       INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX IF NOT EXISTS sessions_due ON sessions (next_read_ms);
CREATE TABLE IF NOT EXISTS actions (
    action_id  TEXT PRIMARY KEY,
    session_id TEXT NOT NULL,
    kind       TEXT NOT NULL,
    data       TEXT NOT NULL,
    done       INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX IF NOT EXISTS actions_pending ON actions (done);
";

/// Opens (or creates) the database at `path`. WAL journaling: a transaction that committed
/// survives the process dying (the test's crash), and one that did not leaves no trace.
///
/// # Errors
/// SQLite's.
pub fn open(path: &std::path::Path) -> rusqlite::Result<Connection> {
    let conn = Connection::open(path)?;
    conn.pragma_update(None, "journal_mode", "WAL")?;
    // A process crash loses nothing at NORMAL in WAL mode (only a power loss could lose the
    // last transactions); FULL would add an fsync per transaction.
    conn.pragma_update(None, "synchronous", "NORMAL")?;
    conn.execute_batch(SCHEMA)?;
    Ok(conn)
}

/// The stable id of the action of `kind` for `session_id`: the tracker asks for each kind at
/// most once per session, so this names one action for good (an idempotency key).
#[must_use]
pub fn action_id(session_id: &str, kind: ActionKind) -> String {
    format!("{session_id}/{}", kind.as_str())
}

/// Unix milliseconds of `t`.
#[must_use]
pub fn millis(t: Timestamp) -> i64 {
    t.unix_seconds() * 1_000 + i64::from(t.subsec_nanos() / 1_000_000)
}

/// A session's row.
pub struct SessionRow {
    /// The secret issued for its callback URL.
    pub secret: String,
    /// Its tracker.
    pub tracker: Tracker,
}

/// Loads a session.
///
/// # Errors
/// SQLite's, or a stored tracker that does not parse.
pub fn load(tx: &Transaction<'_>, session_id: &str) -> rusqlite::Result<Option<SessionRow>> {
    tx.query_row(
        "SELECT secret, tracker FROM sessions WHERE session_id = ?1",
        [session_id],
        |r| Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?)),
    )
    .optional()?
    .map(|(secret, tracker)| {
        let tracker = serde_json::from_str(&tracker)
            .map_err(|e| rusqlite::Error::ToSqlConversionFailure(Box::new(e)))?;
        Ok(SessionRow { secret, tracker })
    })
    .transpose()
}

/// Inserts a new session.
///
/// # Errors
/// SQLite's (a session id already stored included).
pub fn insert(
    tx: &Transaction<'_>,
    session_id: &str,
    secret: &str,
    tracker: &Tracker,
    next_read: Option<NextRead>,
) -> rusqlite::Result<()> {
    let json = serde_json::to_string(tracker)
        .map_err(|e| rusqlite::Error::ToSqlConversionFailure(Box::new(e)))?;
    tx.execute(
        "INSERT INTO sessions (session_id, secret, tracker, next_read_ms, urgency) \
         VALUES (?1, ?2, ?3, ?4, ?5)",
        params![
            session_id,
            secret,
            json,
            next_read.map(|r| millis(r.at)),
            urgency(next_read)
        ],
    )?;
    Ok(())
}

/// Stores the tracker, when to read next, and the merchant actions just asked for (from
/// [`owned`]).
///
/// # Errors
/// SQLite's.
pub fn save(
    tx: &Transaction<'_>,
    session_id: &str,
    tracker: &Tracker,
    next_read: Option<NextRead>,
    actions: &[(ActionKind, Value)],
) -> rusqlite::Result<()> {
    let json = serde_json::to_string(tracker)
        .map_err(|e| rusqlite::Error::ToSqlConversionFailure(Box::new(e)))?;
    tx.execute(
        "UPDATE sessions SET tracker = ?2, next_read_ms = ?3, urgency = ?4 WHERE session_id = ?1",
        params![
            session_id,
            json,
            next_read.map(|r| millis(r.at)),
            urgency(next_read)
        ],
    )?;
    for (kind, data) in actions {
        let kind = *kind;
        // `OR IGNORE`: the id is the session and the kind, so storing it twice is impossible by
        // construction; the tracker never asks twice anyway.
        tx.execute(
            "INSERT OR IGNORE INTO actions (action_id, session_id, kind, data) \
             VALUES (?1, ?2, ?3, ?4)",
            params![
                action_id(session_id, kind),
                session_id,
                kind.as_str(),
                data.to_string()
            ],
        )?;
    }
    Ok(())
}

/// The actions of `kinds` that `tracker` owes, with their data as stored, owned (so the tracker
/// can be saved while they are): the rows that project what it owes, stored with it.
#[must_use]
pub fn owned(tracker: &Tracker, kinds: ActionSet) -> Vec<(ActionKind, Value)> {
    kinds
        .iter()
        .filter_map(|k| tracker.action(k))
        .filter_map(|a| action_data(&a).map(|data| (a.kind(), data)))
        .collect()
}

/// A merchant action as stored: the crate's one serialized form of an action
/// (`{"kind", fields…}`).
#[must_use]
pub fn action_data(action: &Action) -> Option<Value> {
    // Serializing ids and timestamps cannot fail.
    serde_json::to_value(action).ok()
}

/// A stored action.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoredAction {
    /// Its stable id ([`action_id`]).
    pub action_id: String,
    /// The session.
    pub session_id: String,
    /// `place_order`, `record_order`, `review_completion` or `release`.
    pub kind: String,
    /// Its data, as JSON.
    pub data: Value,
}

/// Actions not yet marked done, oldest first.
///
/// # Errors
/// SQLite's.
pub fn pending(conn: &Connection, limit: u32) -> rusqlite::Result<Vec<StoredAction>> {
    let mut stmt = conn.prepare_cached(
        "SELECT action_id, session_id, kind, data FROM actions WHERE done = 0 \
         ORDER BY rowid LIMIT ?1",
    )?;
    stmt.query_map([limit], |r| {
        Ok(StoredAction {
            action_id: r.get(0)?,
            session_id: r.get(1)?,
            kind: r.get(2)?,
            data: serde_json::from_str(&r.get::<_, String>(3)?).unwrap_or(Value::Null),
        })
    })?
    .collect()
}

/// Stores `tracker` alone (what it owes changed; its schedule did not).
///
/// # Errors
/// SQLite's.
pub fn save_tracker(
    tx: &Transaction<'_>,
    session_id: &str,
    tracker: &Tracker,
) -> rusqlite::Result<()> {
    let json = serde_json::to_string(tracker)
        .map_err(|e| rusqlite::Error::ToSqlConversionFailure(Box::new(e)))?;
    tx.execute(
        "UPDATE sessions SET tracker = ?2 WHERE session_id = ?1",
        params![session_id, json],
    )?;
    Ok(())
}

/// Marks an action done.
///
/// # Errors
/// SQLite's.
pub fn mark_done(conn: &Connection, action_id: &str) -> rusqlite::Result<()> {
    conn.execute(
        "UPDATE actions SET done = 1 WHERE action_id = ?1",
        [action_id],
    )?;
    Ok(())
}

/// The stored urgency of a next read: 2 confirm, 1 initial, 0 blind (or none).
fn urgency(next_read: Option<NextRead>) -> i64 {
    match next_read.map(|r| r.urgency) {
        Some(Urgency::Confirm) => 2,
        Some(Urgency::Initial) => 1,
        _ => 0,
    }
}

/// Sessions whose read is due at `now`, most urgent first, then longest due.
///
/// # Errors
/// SQLite's.
pub fn due(conn: &Connection, now: Timestamp, limit: u32) -> rusqlite::Result<Vec<String>> {
    let mut stmt = conn.prepare_cached(
        "SELECT session_id FROM sessions WHERE next_read_ms <= ?1 \
         ORDER BY urgency DESC, next_read_ms LIMIT ?2",
    )?;
    stmt.query_map(params![millis(now), limit], |r| r.get(0))?
        .collect()
}

/// The earliest read due, in Unix milliseconds.
///
/// # Errors
/// SQLite's.
pub fn next_due(conn: &Connection) -> rusqlite::Result<Option<i64>> {
    conn.query_row("SELECT MIN(next_read_ms) FROM sessions", [], |r| r.get(0))
}
