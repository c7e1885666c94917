//! SQLite: one process (SQLite has one writer). Every observation is a `BEGIN IMMEDIATE`
//! transaction, so it runs on the tracker as stored; claims are the process's own set of
//! sessions and actions in hand.

use std::collections::HashSet;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use hpp_session::{ActionKind, Timestamp, TrackerConfig};
use rusqlite::{Connection, OptionalExtension, TransactionBehavior, params};

use super::{
    ActionClaim, Finished, NewSession, POLICY_SETTING, PendingAction, Row, StoreError, action_id,
    current, from_json, from_millis, kinds, millis, policy_fingerprint, schedule,
    stored_before_owed, to_json, urgency, wall_millis,
};
use crate::observe::{self, Asked, ReadAnswer};

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS sessions (
    session_id         TEXT PRIMARY KEY,
    secret             TEXT NOT NULL,
    payment_session_id TEXT NOT NULL,
    tracker            TEXT NOT NULL,
    next_read_ms       INTEGER,
    urgency            INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX IF NOT EXISTS sessions_due ON sessions (next_read_ms);
CREATE TABLE IF NOT EXISTS actions (
    action_id     TEXT PRIMARY KEY,
    session_id    TEXT NOT NULL,
    kind          TEXT NOT NULL,
    data          TEXT NOT NULL,
    done          INTEGER NOT NULL DEFAULT 0,
    outcome       TEXT,
    not_before_ms INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX IF NOT EXISTS actions_pending ON actions (done);
CREATE TABLE IF NOT EXISTS attempts (
    action_id TEXT PRIMARY KEY,
    count     INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS settings (
    name  TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
";

/// Computes every open session's next read again when the store was last opened with another
/// policy (or by a version that did not record it), in one transaction.
fn reschedule(conn: &mut Connection, config: &TrackerConfig) -> Result<(), StoreError> {
    let fingerprint = policy_fingerprint(config);
    let tx = conn
        .transaction_with_behavior(TransactionBehavior::Immediate)
        .map_err(StoreError::of)?;
    let stored: Option<String> = tx
        .query_row(
            "SELECT value FROM settings WHERE name = ?1",
            [POLICY_SETTING],
            |r| r.get(0),
        )
        .optional()
        .map_err(StoreError::of)?;
    if stored.as_deref() == Some(fingerprint.as_str()) {
        return Ok(());
    }
    let open: Vec<(String, String, i64)> = tx
        .prepare(
            "SELECT session_id, tracker, next_read_ms FROM sessions WHERE next_read_ms IS NOT NULL",
        )
        .and_then(|mut stmt| {
            stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?
                .collect::<Result<_, _>>()
        })
        .map_err(StoreError::of)?;
    for (session_id, tracker, due) in open {
        // A tracker that does not load keeps its schedule: its reads fail as before.
        if let Ok((next, urgency)) = schedule(&tracker, config, from_millis(due)) {
            tx.execute(
                "UPDATE sessions SET next_read_ms = ?2, urgency = ?3 WHERE session_id = ?1",
                params![session_id, next, urgency],
            )
            .map_err(StoreError::of)?;
        }
    }
    tx.execute(
        "INSERT INTO settings (name, value) VALUES (?1, ?2) \
         ON CONFLICT (name) DO UPDATE SET value = excluded.value",
        params![POLICY_SETTING, fingerprint],
    )
    .map_err(StoreError::of)?;
    tx.commit().map_err(StoreError::of)
}

type Claimed = Arc<Mutex<HashSet<String>>>;

/// The SQLite store.
#[derive(Debug, Clone)]
pub struct Sqlite {
    conn: Arc<Mutex<Connection>>,
    reads: Claimed,
    actions: Claimed,
    config: TrackerConfig,
}

/// What this process holds: released when dropped.
#[derive(Debug)]
pub struct Claim {
    /// The claimed ids.
    pub ids: Vec<String>,
    set: Claimed,
}

impl Drop for Claim {
    fn drop(&mut self) {
        let mut set = lock(&self.set);
        for id in &self.ids {
            set.remove(id);
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

fn save(
    tx: &rusqlite::Transaction<'_>,
    config: &TrackerConfig,
    session_id: &str,
    row: &Row,
    now: Timestamp,
    asked: &[Asked],
) -> Result<(), StoreError> {
    let next = row.tracker.next_read(config, now);
    tx.execute(
        "UPDATE sessions SET tracker = ?2, next_read_ms = ?3, urgency = ?4 WHERE session_id = ?1",
        params![
            session_id,
            to_json(&row.tracker)?,
            next.map(|r| millis(r.at)),
            urgency(next)
        ],
    )
    .map_err(StoreError::of)?;
    for a in asked {
        tx.execute(
            "INSERT OR IGNORE INTO actions (action_id, session_id, kind, data) \
             VALUES (?1, ?2, ?3, ?4)",
            params![
                action_id(session_id, a),
                session_id,
                a.0.as_str(),
                a.1.to_string()
            ],
        )
        .map_err(StoreError::of)?;
    }
    Ok(())
}

fn load(tx: &rusqlite::Transaction<'_>, session_id: &str) -> Result<Option<Row>, StoreError> {
    let found = tx
        .query_row(
            "SELECT secret, tracker FROM sessions WHERE session_id = ?1",
            [session_id],
            |r| Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?)),
        )
        .optional()
        .map_err(StoreError::of)?;
    found
        .map(|(secret, tracker)| {
            let pending = if stored_before_owed(&tracker) {
                // Stored before trackers kept what they owe: the pending rows say.
                let mut stmt = tx
                    .prepare_cached("SELECT kind FROM actions WHERE session_id = ?1 AND done = 0")
                    .map_err(StoreError::of)?;
                let names: Vec<String> = stmt
                    .query_map([session_id], |r| r.get(0))
                    .map_err(StoreError::of)?
                    .collect::<Result<_, _>>()
                    .map_err(StoreError::of)?;
                Some(kinds(names.iter().map(String::as_str)))
            } else {
                None
            };
            Ok(Row {
                secret,
                tracker: from_json(&tracker, pending)?,
            })
        })
        .transpose()
}

impl Sqlite {
    /// Opens (or creates) the database file at `path`, in WAL mode.
    ///
    /// # Errors
    /// SQLite's.
    pub async fn open(path: &str, config: TrackerConfig) -> Result<Self, StoreError> {
        let path = path.strip_prefix("sqlite://").unwrap_or(path).to_owned();
        let conn = tokio::task::spawn_blocking(move || -> Result<Connection, StoreError> {
            let mut conn = Connection::open(path).map_err(StoreError::of)?;
            conn.pragma_update(None, "journal_mode", "WAL")
                .and_then(|()| conn.pragma_update(None, "synchronous", "NORMAL"))
                .and_then(|()| conn.busy_timeout(std::time::Duration::from_secs(5)))
                .and_then(|()| conn.execute_batch(SCHEMA))
                .map_err(StoreError::of)?;
            reschedule(&mut conn, &config)?;
            Ok(conn)
        })
        .await
        .map_err(StoreError::of)??;
        Ok(Self {
            conn: Arc::new(Mutex::new(conn)),
            reads: Claimed::default(),
            actions: Claimed::default(),
            config,
        })
    }

    async fn with<R: Send + 'static>(
        &self,
        f: impl FnOnce(&mut Connection) -> Result<R, StoreError> + Send + 'static,
    ) -> Result<R, StoreError> {
        let conn = Arc::clone(&self.conn);
        tokio::task::spawn_blocking(move || f(&mut lock(&conn)))
            .await
            .map_err(StoreError::of)?
    }

    pub(super) async fn insert(&self, s: NewSession) -> Result<(), StoreError> {
        self.with(move |conn| {
            conn.execute(
                "INSERT INTO sessions \
                 (session_id, secret, payment_session_id, tracker, next_read_ms, urgency) \
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                params![
                    s.session_id,
                    s.secret,
                    s.payment_session_id,
                    to_json(&s.tracker)?,
                    s.next.map(|r| millis(r.at)),
                    urgency(s.next)
                ],
            )
            .map_err(StoreError::of)?;
            Ok(())
        })
        .await
    }

    pub(super) async fn observe<R: Send + 'static>(
        &self,
        session_id: &str,
        now: Timestamp,
        observe: impl FnOnce(&mut Row) -> (R, Vec<Asked>) + Send + 'static,
    ) -> Result<Option<R>, StoreError> {
        let session_id = session_id.to_owned();
        let config = self.config;
        self.with(move |conn| {
            let tx = conn
                .transaction_with_behavior(TransactionBehavior::Immediate)
                .map_err(StoreError::of)?;
            let Some(mut row) = load(&tx, &session_id)? else {
                return Ok(None);
            };
            let (result, asked) = observe(&mut row);
            save(&tx, &config, &session_id, &row, now, &asked)?;
            tx.commit().map_err(StoreError::of)?;
            Ok(Some(result))
        })
        .await
    }

    pub(super) async fn claim_reads(
        &self,
        now: Timestamp,
        limit: u32,
    ) -> Result<Claim, StoreError> {
        let set = Arc::clone(&self.reads);
        let ids = self
            .with(move |conn| {
                let mut stmt = conn
                    .prepare_cached(
                        "SELECT session_id FROM sessions WHERE next_read_ms <= ?1 \
                         ORDER BY urgency DESC, next_read_ms LIMIT ?2",
                    )
                    .map_err(StoreError::of)?;
                let ids: Vec<String> = stmt
                    .query_map(params![millis(now), limit.saturating_mul(2)], |r| r.get(0))
                    .map_err(StoreError::of)?
                    .collect::<Result<_, _>>()
                    .map_err(StoreError::of)?;
                Ok(ids)
            })
            .await?;
        let mut claimed = lock(&set);
        let ids: Vec<String> = ids
            .into_iter()
            .filter(|id| claimed.insert(id.clone()))
            .take(limit as usize)
            .collect();
        drop(claimed);
        Ok(Claim { ids, set })
    }

    pub(super) async fn finish_reads(
        &self,
        claim: Claim,
        answers: Vec<(String, ReadAnswer)>,
        started: Timestamp,
        now: Timestamp,
    ) -> Result<(), StoreError> {
        let config = self.config;
        self.with(move |conn| {
            let tx = conn
                .transaction_with_behavior(TransactionBehavior::Immediate)
                .map_err(StoreError::of)?;
            for (session_id, answer) in &answers {
                let Some(mut row) = load(&tx, session_id)? else {
                    continue;
                };
                // The read counts from when it started (its evidence is as of then).
                let _ = row.tracker.start_read(&config, started);
                let asked = observe::read(&mut row.tracker, &config, answer, now);
                save(&tx, &config, session_id, &row, now, &asked)?;
            }
            tx.commit().map_err(StoreError::of)?;
            drop(claim);
            Ok(())
        })
        .await
    }

    pub(super) async fn claim_actions(&self, limit: u32) -> Result<ActionClaim, StoreError> {
        let set = Arc::clone(&self.actions);
        let pending = self
            .with(move |conn| {
                let mut stmt = conn
                    .prepare_cached(
                        "SELECT a.action_id, a.session_id, s.payment_session_id, a.data, \
                         COALESCE(t.count, 0), a.kind, s.tracker FROM actions a \
                         JOIN sessions s ON s.session_id = a.session_id \
                         LEFT JOIN attempts t ON t.action_id = a.action_id \
                         WHERE a.done = 0 AND a.not_before_ms <= ?1 ORDER BY a.rowid LIMIT ?2",
                    )
                    .map_err(StoreError::of)?;
                let rows = stmt
                    .query_map(params![wall_millis(), limit.saturating_mul(2)], |r| {
                        let stored = serde_json::from_str(&r.get::<_, String>(3)?)
                            .unwrap_or(serde_json::Value::Null);
                        let now = ActionKind::from_name(&r.get::<_, String>(5)?).map_or(
                            Some(stored.clone()),
                            |kind| {
                                current(&r.get::<_, String>(6).unwrap_or_default(), kind, stored)
                            },
                        );
                        Ok(PendingAction {
                            action_id: r.get(0)?,
                            session_id: r.get(1)?,
                            payment_session_id: r.get(2)?,
                            retired: now.is_none(),
                            data: now.unwrap_or(serde_json::Value::Null),
                            attempts: r.get(4)?,
                        })
                    })
                    .map_err(StoreError::of)?
                    .collect::<Result<Vec<_>, _>>()
                    .map_err(StoreError::of)?;
                Ok(rows)
            })
            .await?;
        let mut claimed = lock(&set);
        let pending: Vec<PendingAction> = pending
            .into_iter()
            .filter(|a| claimed.insert(a.action_id.clone()))
            .take(limit as usize)
            .collect();
        drop(claimed);
        let ids = pending.iter().map(|a| a.action_id.clone()).collect();
        Ok(ActionClaim::Sqlite(Claim { ids, set }, pending))
    }

    pub(super) async fn attempt(&self, action_id: &str) -> Result<(), StoreError> {
        let action_id = action_id.to_owned();
        self.with(move |conn| {
            conn.execute(
                "INSERT INTO attempts (action_id, count) VALUES (?1, 1) \
                 ON CONFLICT (action_id) DO UPDATE SET count = count + 1",
                [action_id],
            )
            .map_err(StoreError::of)?;
            Ok(())
        })
        .await
    }

    pub(super) async fn finish_actions(
        &self,
        claim: Claim,
        finished: Vec<(String, Finished)>,
        now: Timestamp,
    ) -> Result<(), StoreError> {
        let config = self.config;
        self.with(move |conn| {
            let tx = conn
                .transaction_with_behavior(TransactionBehavior::Immediate)
                .map_err(StoreError::of)?;
            for (action_id, f) in &finished {
                match f {
                    Finished::Done(done, outcome) => {
                        // Reported done on the tracker, in the same transaction as the row.
                        let session_id = action_id.rsplit_once('/').map_or("", |(s, _)| s);
                        if let Some(mut row) = load(&tx, session_id)? {
                            let asked = observe::done(&mut row.tracker, session_id, done, now);
                            save(&tx, &config, session_id, &row, now, &asked)?;
                        }
                        tx.execute(
                            "UPDATE actions SET done = 1, outcome = ?2 WHERE action_id = ?1",
                            params![action_id, outcome],
                        )
                    }
                    Finished::Retry(after) => tx.execute(
                        "UPDATE actions SET not_before_ms = ?2 WHERE action_id = ?1",
                        params![
                            action_id,
                            wall_millis().saturating_add(i64::try_from(*after).unwrap_or(0))
                        ],
                    ),
                }
                .map_err(StoreError::of)?;
            }
            tx.commit().map_err(StoreError::of)?;
            drop(claim);
            Ok(())
        })
        .await
    }

    pub(super) async fn counts(&self) -> Result<(i64, i64), StoreError> {
        self.with(|conn| {
            conn.query_row(
                "SELECT (SELECT COUNT(*) FROM sessions), \
                 (SELECT COUNT(*) FROM actions WHERE done = 0)",
                [],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .map_err(StoreError::of)
        })
        .await
    }
}
