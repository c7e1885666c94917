//! SQLite: one process (SQLite has one writer). Every observation is a `BEGIN IMMEDIATE`
//! transaction, so it runs on the tracker as stored; claims are the process's own set of
//! sessions and actions in hand, so a second process on the same file would read and act
//! twice: opening takes an exclusive lock on `{file}.lock` and refuses when another process
//! holds it. Migrations are versioned files (`migrations/sqlite`, applied with `refinery`).

use std::collections::HashSet;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use hpp_session::{ActionKind, Timestamp, TrackerConfig};
use rusqlite::{Connection, OptionalExtension, TransactionBehavior, params};

use super::{
    ActionClaim, Finished, NewSession, POLICY_SETTING, PendingAction, Row, StoreError, action_id,
    current, from_json, from_millis, kinds, millis, policy_fingerprint, schedule, status_of,
    stored_before_owed, to_json, urgency, wall_millis,
};
use crate::observe::{self, Asked, ReadAnswer};

mod migrations {
    refinery::embed_migrations!("migrations/sqlite");
}

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
    /// The lock on `{file}.lock`, held while the store lives (the OS drops it with the
    /// process, however it ends).
    _one_process: Arc<std::fs::File>,
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

impl Claim {
    /// One claim per id, each released on its own (see the PostgreSQL store's).
    pub(super) fn split(mut self) -> Vec<Self> {
        std::mem::take(&mut self.ids)
            .into_iter()
            .map(|id| Self {
                ids: vec![id],
                set: Arc::clone(&self.set),
            })
            .collect()
    }
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
        "UPDATE sessions SET tracker = ?2, next_read_ms = ?3, urgency = ?4, status = ?5 \
         WHERE session_id = ?1",
        params![
            session_id,
            to_json(&row.tracker)?,
            next.map(|r| millis(r.at)),
            urgency(next),
            status_of(&row.tracker)
        ],
    )
    .map_err(StoreError::of)?;
    for a in asked {
        tx.execute(
            "INSERT OR IGNORE INTO actions \
             (action_id, session_id, kind, data, deadline_ms, asked_ms) \
             VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
            params![
                action_id(session_id, a),
                session_id,
                a.kind.as_str(),
                a.data.to_string(),
                a.deadline_ms,
                wall_millis()
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

/// The exclusive lock on `{path}.lock`: SQLite is for one process, and a second one on the
/// same file would read and act twice. The path is made canonical first (symbolic links and
/// `..` resolved), so the same file named two ways has one lock.
fn one_process(path: &str) -> Result<std::fs::File, StoreError> {
    let lock_path = format!("{}.lock", canonical(path).display());
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&lock_path)
        .map_err(|e| StoreError(format!("cannot open {lock_path}: {e}")))?;
    match file.try_lock() {
        Ok(()) => Ok(file),
        Err(std::fs::TryLockError::WouldBlock) => Err(StoreError(format!(
            "another hpp-service process holds {path} (its lock {lock_path} is taken): SQLite \
             is for one process; for several, use PostgreSQL (--database-url postgres://…)"
        ))),
        Err(std::fs::TryLockError::Error(e)) => {
            Err(StoreError(format!("cannot lock {lock_path}: {e}")))
        }
    }
}

/// `path` with its links resolved: the file's own when it exists, else its directory's.
fn canonical(path: &str) -> std::path::PathBuf {
    let path = std::path::Path::new(path);
    std::fs::canonicalize(path)
        .or_else(|_| {
            let dir = match path.parent() {
                Some(d) if !d.as_os_str().is_empty() => d,
                _ => std::path::Path::new("."),
            };
            let name = path.file_name().ok_or(std::io::ErrorKind::InvalidInput)?;
            std::fs::canonicalize(dir).map(|d| d.join(name))
        })
        .unwrap_or_else(|_| path.to_owned())
}

impl Sqlite {
    /// Opens (or creates) the database file at `path`, in WAL mode.
    ///
    /// # Errors
    /// SQLite's.
    pub async fn open(path: &str, config: TrackerConfig) -> Result<Self, StoreError> {
        let path = path.strip_prefix("sqlite://").unwrap_or(path).to_owned();
        let one_process = one_process(&path)?;
        let conn = tokio::task::spawn_blocking(move || -> Result<Connection, StoreError> {
            let mut conn = Connection::open(path).map_err(StoreError::of)?;
            conn.pragma_update(None, "journal_mode", "WAL")
                // FULL: an attempt committed before an order leaves survives a power loss too.
                .and_then(|()| conn.pragma_update(None, "synchronous", "FULL"))
                .and_then(|()| conn.busy_timeout(std::time::Duration::from_secs(5)))
                .map_err(StoreError::of)?;
            let report = migrations::migrations::runner()
                .run(&mut conn)
                .map_err(|e| StoreError(format!("migrating the SQLite schema: {e}")))?;
            for applied in report.applied_migrations() {
                tracing::info!(migration = %applied, "applied");
            }
            reschedule(&mut conn, &config)?;
            Ok(conn)
        })
        .await
        .map_err(StoreError::of)??;
        Ok(Self {
            _one_process: Arc::new(one_process),
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
                 (session_id, secret, payment_session_id, tracker, next_read_ms, urgency, status) \
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
                params![
                    s.session_id,
                    s.secret,
                    s.payment_session_id,
                    to_json(&s.tracker)?,
                    s.next.map(|r| millis(r.at)),
                    urgency(s.next),
                    status_of(&s.tracker)
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

    /// Claims due reads not in this process's hand, each started on its tracker
    /// ([`hpp_session::Tracker::start_read`]) in one transaction.
    pub(super) async fn claim_reads(
        &self,
        now: Timestamp,
        limit: u32,
    ) -> Result<Claim, StoreError> {
        let set = Arc::clone(&self.reads);
        let config = self.config;
        let in_hand: HashSet<String> = lock(&set).clone();
        let ids = self
            .with(move |conn| {
                let tx = conn
                    .transaction_with_behavior(TransactionBehavior::Immediate)
                    .map_err(StoreError::of)?;
                let due: Vec<String> = {
                    let mut stmt = tx
                        .prepare_cached(
                            "SELECT session_id FROM sessions WHERE next_read_ms <= ?1 \
                             ORDER BY urgency DESC, next_read_ms LIMIT ?2",
                        )
                        .map_err(StoreError::of)?;
                    let extra = u32::try_from(in_hand.len()).unwrap_or(u32::MAX);
                    stmt.query_map(params![millis(now), limit.saturating_add(extra)], |r| {
                        r.get(0)
                    })
                    .map_err(StoreError::of)?
                    .collect::<Result<_, _>>()
                    .map_err(StoreError::of)?
                };
                let mut ids = Vec::new();
                for session_id in due.into_iter().filter(|id| !in_hand.contains(id)) {
                    if ids.len() >= limit as usize {
                        break;
                    }
                    let Some(mut row) = load(&tx, &session_id)? else {
                        continue;
                    };
                    let started = row.tracker.start_read(&config, now).is_some();
                    save(&tx, &config, &session_id, &row, now, &[])?;
                    if started {
                        ids.push(session_id);
                    }
                }
                tx.commit().map_err(StoreError::of)?;
                Ok(ids)
            })
            .await?;
        lock(&set).extend(ids.iter().cloned());
        Ok(Claim { ids, set })
    }

    pub(super) async fn finish_reads(
        &self,
        answers: Vec<(String, ReadAnswer)>,
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
                let asked = observe::read(&mut row.tracker, &config, answer, now);
                save(&tx, &config, session_id, &row, now, &asked)?;
            }
            tx.commit().map_err(StoreError::of)
        })
        .await
    }

    pub(super) async fn claim_actions(&self, limit: u32) -> Result<ActionClaim, StoreError> {
        let set = Arc::clone(&self.actions);
        let hand = Arc::clone(&set);
        let pending = self
            .with(move |conn| {
                // Under the connection's lock, so no action in hand is stored and let go of
                // between this read and the check against the hand (a stale row claimed).
                let mut claimed = lock(&hand);
                let extra = u32::try_from(claimed.len()).unwrap_or(u32::MAX);
                let mut stmt = conn
                    .prepare_cached(
                        "SELECT a.action_id, a.session_id, s.payment_session_id, a.data, \
                         COALESCE(t.count, 0), a.kind, s.tracker, \
                         CASE WHEN t.count > 0 THEN t.lands_by_ms - ?1 END FROM actions a \
                         JOIN sessions s ON s.session_id = a.session_id \
                         LEFT JOIN attempts t ON t.action_id = a.action_id \
                         WHERE a.done = 0 AND a.not_before_ms <= ?1 \
                         ORDER BY a.deadline_ms, a.rowid LIMIT ?2",
                    )
                    .map_err(StoreError::of)?;
                let rows = stmt
                    .query_map(params![wall_millis(), limit.saturating_add(extra)], |r| {
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
                            lands_in_ms: r.get(7)?,
                            owner: 0,
                        })
                    })
                    .map_err(StoreError::of)?
                    .collect::<Result<Vec<_>, _>>()
                    .map_err(StoreError::of)?;
                Ok(rows
                    .into_iter()
                    .filter(|a| claimed.insert(a.action_id.clone()))
                    .take(limit as usize)
                    .collect::<Vec<_>>())
            })
            .await?;
        let ids = pending.iter().map(|a| a.action_id.clone()).collect();
        Ok(ActionClaim::Sqlite(Claim { ids, set }, pending))
    }

    /// Records an attempt, when it began and until when it may land (the process's claim is
    /// its own: always `true`).
    /// Records the attempt, if the action is not done and no attempt was recorded since it was
    /// claimed (a compare-and-set on the count the claim saw); `false`: do not perform it.
    pub(super) async fn attempt(
        &self,
        action_id: &str,
        seen: u32,
        lands_within: i64,
    ) -> Result<bool, StoreError> {
        let action_id = action_id.to_owned();
        self.with(move |conn| {
            let now = wall_millis();
            let recorded = conn
                .execute(
                    "INSERT INTO attempts (action_id, count, last_ms, lands_by_ms) \
                     SELECT ?1, 1, ?2, ?3 \
                     WHERE EXISTS (SELECT 1 FROM actions WHERE action_id = ?1 AND NOT done) \
                     AND (?4 = 0 OR EXISTS (SELECT 1 FROM attempts WHERE action_id = ?1)) \
                     ON CONFLICT (action_id) DO UPDATE \
                     SET count = count + 1, last_ms = ?2, lands_by_ms = ?3 \
                     WHERE attempts.count = ?4",
                    params![action_id, now, now.saturating_add(lands_within), seen],
                )
                .map_err(StoreError::of)?;
            Ok(recorded == 1)
        })
        .await
    }

    /// Stores what became of claimed actions.
    pub(super) async fn finish(
        &self,
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
            Ok(())
        })
        .await
    }

    pub(super) async fn gauges(&self, now: Timestamp) -> Result<super::Gauges, StoreError> {
        let now = millis(now);
        let wall = wall_millis();
        self.with(move |conn| {
            let (due_reads, oldest_due_read_ms) = conn
                .query_row(
                    "SELECT COUNT(*), COALESCE(?1 - MIN(next_read_ms), 0) FROM sessions \
                     WHERE next_read_ms <= ?1",
                    [now],
                    |r| Ok((r.get(0)?, r.get(1)?)),
                )
                .map_err(StoreError::of)?;
            let oldest_pending_ms = conn
                .query_row(
                    "SELECT COALESCE(?1 - MIN(asked_ms), 0) FROM actions \
                     WHERE done = 0 AND asked_ms > 0",
                    [wall],
                    |r| r.get(0),
                )
                .map_err(StoreError::of)?;
            let pairs = |sql: &str| -> Result<Vec<(String, i64)>, StoreError> {
                let mut stmt = conn.prepare_cached(sql).map_err(StoreError::of)?;
                stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
                    .map_err(StoreError::of)?
                    .collect::<Result<_, _>>()
                    .map_err(StoreError::of)
            };
            Ok(super::Gauges {
                due_reads,
                oldest_due_read_ms,
                pending: pairs("SELECT kind, COUNT(*) FROM actions WHERE done = 0 GROUP BY kind")?,
                oldest_pending_ms,
                sessions: pairs(
                    "SELECT COALESCE(status, 'UNKNOWN'), COUNT(*) FROM sessions GROUP BY 1",
                )?,
            })
        })
        .await
    }

    pub(super) async fn ready(&self) -> Result<(), StoreError> {
        let latest = migrations::migrations::runner()
            .get_migrations()
            .iter()
            .map(refinery::Migration::version)
            .max()
            .unwrap_or(0);
        self.with(move |conn| {
            let applied: Option<i64> = conn
                .query_row(
                    "SELECT MAX(version) FROM refinery_schema_history",
                    [],
                    |r| r.get(0),
                )
                .map_err(StoreError::of)?;
            match applied {
                Some(v) if v == i64::from(latest) => Ok(()),
                other => Err(StoreError(format!(
                    "the schema is at version {}, this service's is {latest}",
                    other.map_or_else(|| "none (not migrated)".to_owned(), |v| v.to_string())
                ))),
            }
        })
        .await
    }

    pub(super) async fn next_read(&self) -> Result<Option<Timestamp>, StoreError> {
        self.with(|conn| {
            conn.query_row("SELECT MIN(next_read_ms) FROM sessions", [], |r| {
                r.get::<_, Option<i64>>(0)
            })
            .map(|ms| ms.map(from_millis))
            .map_err(StoreError::of)
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
