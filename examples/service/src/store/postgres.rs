//! PostgreSQL: several processes share the work. An observation locks its session's row
//! (`SELECT … FOR UPDATE`) for the transaction that stores the tracker and its actions. Due
//! reads and pending actions are claimed with `FOR UPDATE SKIP LOCKED` in a transaction that
//! stays open while the worker reads or performs them: no two workers hold the same session or
//! action, and a worker that dies (its connection drops) releases its claims at once.

use deadpool_postgres::{GenericClient, Object, Pool, Runtime};
use hpp_session::{ActionKind, Timestamp, TrackerConfig};
use tokio_postgres::NoTls;

use super::{
    ActionClaim, Finished, NewSession, POLICY_SETTING, PendingAction, Row, Sabotage, StoreError,
    action_id, current, from_json, from_millis, kinds, millis, policy_fingerprint, schedule,
    stored_before_owed, to_json, urgency, wall_millis,
};
use crate::observe::{self, Asked, ReadAnswer};

const SCHEMA: &str = "
SELECT pg_advisory_xact_lock(716);
CREATE TABLE IF NOT EXISTS sessions (
    session_id         TEXT PRIMARY KEY,
    secret             TEXT NOT NULL,
    payment_session_id TEXT NOT NULL,
    tracker            TEXT NOT NULL,
    next_read_ms       BIGINT,
    urgency            INT NOT NULL DEFAULT 0
);
CREATE INDEX IF NOT EXISTS sessions_due ON sessions (next_read_ms);
CREATE TABLE IF NOT EXISTS actions (
    seq           BIGSERIAL,
    action_id     TEXT PRIMARY KEY,
    session_id    TEXT NOT NULL,
    kind          TEXT NOT NULL,
    data          TEXT NOT NULL,
    done          BOOLEAN NOT NULL DEFAULT FALSE,
    outcome       TEXT,
    not_before_ms BIGINT NOT NULL DEFAULT 0
);
CREATE INDEX IF NOT EXISTS actions_pending ON actions (seq) WHERE NOT done;
CREATE TABLE IF NOT EXISTS attempts (
    action_id TEXT PRIMARY KEY,
    count     INT NOT NULL
);
CREATE TABLE IF NOT EXISTS settings (
    name  TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
";

/// Computes every open session's next read again when the store was last opened with another
/// policy (or by a version that did not record it), in the schema's transaction (under its
/// advisory lock: once, however many processes start together). No network call is made in
/// it; the rows it updates wait for it, once per change of policy.
async fn reschedule(tx: &impl GenericClient, config: &TrackerConfig) -> Result<(), StoreError> {
    let fingerprint = policy_fingerprint(config);
    let stored = tx
        .query_opt(
            "SELECT value FROM settings WHERE name = $1",
            &[&POLICY_SETTING],
        )
        .await
        .map_err(StoreError::of)?
        .map(|r| r.get::<_, String>(0));
    if stored.as_deref() == Some(fingerprint.as_str()) {
        return Ok(());
    }
    let open = tx
        .query(
            "SELECT session_id, tracker, next_read_ms FROM sessions \
             WHERE next_read_ms IS NOT NULL FOR UPDATE",
            &[],
        )
        .await
        .map_err(StoreError::of)?;
    for row in open {
        let (session_id, tracker, due): (String, String, i64) =
            (row.get(0), row.get(1), row.get(2));
        // A tracker that does not load keeps its schedule: its reads fail as before.
        if let Ok((next, urgency)) = schedule(&tracker, config, from_millis(due)) {
            tx.execute(
                "UPDATE sessions SET next_read_ms = $2, urgency = $3 WHERE session_id = $1",
                &[&session_id, &next, &urgency],
            )
            .await
            .map_err(StoreError::of)?;
        }
    }
    tx.execute(
        "INSERT INTO settings (name, value) VALUES ($1, $2) \
         ON CONFLICT (name) DO UPDATE SET value = EXCLUDED.value",
        &[&POLICY_SETTING, &fingerprint],
    )
    .await
    .map_err(StoreError::of)?;
    Ok(())
}

/// The PostgreSQL store: a connection pool.
#[derive(Debug, Clone)]
pub struct Postgres {
    pool: Pool,
    sabotage: Sabotage,
    config: TrackerConfig,
}

/// Rows locked by this worker in an open transaction; dropped unfinished, the connection is
/// closed, and the server rolls the transaction back.
#[derive(Debug)]
pub struct Claim {
    /// The claimed ids.
    pub ids: Vec<String>,
    client: Option<Object>,
}

impl Drop for Claim {
    fn drop(&mut self) {
        if let Some(client) = self.client.take() {
            // Out of the pool for good: closing the connection ends the transaction.
            drop(Object::take(client));
        }
    }
}

impl Claim {
    async fn commit(mut self) -> Result<(), StoreError> {
        if let Some(client) = &self.client {
            client
                .batch_execute("COMMIT")
                .await
                .map_err(StoreError::of)?;
        }
        // Committed: back to the pool.
        self.client = None;
        Ok(())
    }
}

async fn save(
    client: &impl GenericClient,
    config: &TrackerConfig,
    session_id: &str,
    row: &Row,
    now: Timestamp,
    asked: &[Asked],
) -> Result<(), StoreError> {
    let next = row.tracker.next_read(config, now);
    client
        .execute(
            "UPDATE sessions SET tracker = $2, next_read_ms = $3, urgency = $4 \
             WHERE session_id = $1",
            &[
                &session_id,
                &to_json(&row.tracker)?,
                &next.map(|r| millis(r.at)),
                &urgency(next),
            ],
        )
        .await
        .map_err(StoreError::of)?;
    for a in asked {
        client
            .execute(
                "INSERT INTO actions (action_id, session_id, kind, data) VALUES ($1, $2, $3, $4) \
                 ON CONFLICT (action_id) DO NOTHING",
                &[
                    &action_id(session_id, a),
                    &session_id,
                    &a.0.as_str(),
                    &a.1.to_string(),
                ],
            )
            .await
            .map_err(StoreError::of)?;
    }
    Ok(())
}

async fn load_locked(
    client: &impl GenericClient,
    session_id: &str,
) -> Result<Option<Row>, StoreError> {
    let row = client
        .query_opt(
            "SELECT secret, tracker FROM sessions WHERE session_id = $1 FOR UPDATE",
            &[&session_id],
        )
        .await
        .map_err(StoreError::of)?;
    let Some(r) = row else {
        return Ok(None);
    };
    let stored: String = r.get(1);
    let pending = if stored_before_owed(&stored) {
        // Stored before trackers kept what they owe: the pending rows say.
        let names: Vec<String> = client
            .query(
                "SELECT kind FROM actions WHERE session_id = $1 AND NOT done",
                &[&session_id],
            )
            .await
            .map_err(StoreError::of)?
            .iter()
            .map(|k| k.get(0))
            .collect();
        Some(kinds(names.iter().map(String::as_str)))
    } else {
        None
    };
    Ok(Some(Row {
        secret: r.get(0),
        tracker: from_json(&stored, pending)?,
    }))
}

impl Postgres {
    /// Connects to `url` and creates the schema (once, under an advisory lock, however many
    /// processes start together).
    ///
    /// # Errors
    /// PostgreSQL's.
    pub async fn open(
        url: &str,
        sabotage: Sabotage,
        config: TrackerConfig,
    ) -> Result<Self, StoreError> {
        let mut pool_config = deadpool_postgres::Config::new();
        pool_config.url = Some(url.to_owned());
        pool_config.pool = Some(deadpool_postgres::PoolConfig::new(16));
        let pool = pool_config
            .create_pool(Some(Runtime::Tokio1), NoTls)
            .map_err(StoreError::of)?;
        let mut client = pool.get().await.map_err(StoreError::of)?;
        let tx = client.transaction().await.map_err(StoreError::of)?;
        tx.batch_execute(SCHEMA).await.map_err(StoreError::of)?;
        reschedule(&tx, &config).await?;
        tx.commit().await.map_err(StoreError::of)?;
        Ok(Self {
            pool,
            sabotage,
            config,
        })
    }

    async fn client(&self) -> Result<Object, StoreError> {
        self.pool.get().await.map_err(StoreError::of)
    }

    pub(super) async fn insert(&self, s: NewSession) -> Result<(), StoreError> {
        self.client()
            .await?
            .execute(
                "INSERT INTO sessions \
                 (session_id, secret, payment_session_id, tracker, next_read_ms, urgency) \
                 VALUES ($1, $2, $3, $4, $5, $6)",
                &[
                    &s.session_id,
                    &s.secret,
                    &s.payment_session_id,
                    &to_json(&s.tracker)?,
                    &s.next.map(|r| millis(r.at)),
                    &urgency(s.next),
                ],
            )
            .await
            .map_err(StoreError::of)?;
        Ok(())
    }

    pub(super) async fn observe<R: Send + 'static>(
        &self,
        session_id: &str,
        now: Timestamp,
        observe: impl FnOnce(&mut Row) -> (R, Vec<Asked>) + Send + 'static,
    ) -> Result<Option<R>, StoreError> {
        let mut client = self.client().await?;
        let tx = client.transaction().await.map_err(StoreError::of)?;
        let Some(mut row) = load_locked(&tx, session_id).await? else {
            return Ok(None);
        };
        let (result, asked) = observe(&mut row);
        save(&tx, &self.config, session_id, &row, now, &asked).await?;
        tx.commit().await.map_err(StoreError::of)?;
        Ok(Some(result))
    }

    pub(super) async fn claim_reads(
        &self,
        now: Timestamp,
        limit: u32,
    ) -> Result<Claim, StoreError> {
        let client = self.client().await?;
        client
            .batch_execute("BEGIN")
            .await
            .map_err(StoreError::of)?;
        let mut claim = Claim {
            ids: Vec::new(),
            client: Some(client),
        };
        let Some(client) = &claim.client else {
            return Ok(claim);
        };
        let rows = client
            .query(
                "SELECT session_id FROM sessions WHERE next_read_ms <= $1 \
                 ORDER BY urgency DESC, next_read_ms LIMIT $2 FOR UPDATE SKIP LOCKED",
                &[&millis(now), &i64::from(limit)],
            )
            .await
            .map_err(StoreError::of)?;
        claim.ids = rows.iter().map(|r| r.get(0)).collect();
        Ok(claim)
    }

    pub(super) async fn finish_reads(
        &self,
        claim: Claim,
        answers: Vec<(String, ReadAnswer)>,
        started: Timestamp,
        now: Timestamp,
    ) -> Result<(), StoreError> {
        if let Some(client) = &claim.client {
            for (session_id, answer) in &answers {
                // Locked since the claim: this is the tracker as stored.
                let Some(mut row) = load_locked(client, session_id).await? else {
                    continue;
                };
                // The read counts from when it started (its evidence is as of then).
                let _ = row.tracker.start_read(&self.config, started);
                let asked = observe::read(&mut row.tracker, &self.config, answer, now);
                save(client, &self.config, session_id, &row, now, &asked).await?;
            }
        }
        claim.commit().await
    }

    pub(super) async fn claim_actions(&self, limit: u32) -> Result<ActionClaim, StoreError> {
        let client = self.client().await?;
        client
            .batch_execute("BEGIN")
            .await
            .map_err(StoreError::of)?;
        let lock = match self.sabotage {
            Sabotage::None | Sabotage::ResendBlindly => "FOR UPDATE OF a SKIP LOCKED",
            Sabotage::ActionsWithoutLock => "",
        };
        let sql = format!(
            "SELECT a.action_id, a.session_id, s.payment_session_id, a.data, \
             COALESCE(t.count, 0), a.kind, s.tracker FROM actions a \
             JOIN sessions s ON s.session_id = a.session_id \
             LEFT JOIN attempts t ON t.action_id = a.action_id \
             WHERE NOT a.done AND a.not_before_ms <= $1 ORDER BY a.seq LIMIT $2 {lock}"
        );
        let rows = client
            .query(&sql, &[&wall_millis(), &i64::from(limit)])
            .await;
        let mut claim = Claim {
            ids: Vec::new(),
            client: Some(client),
        };
        let rows = rows.map_err(StoreError::of)?;
        let pending: Vec<PendingAction> = rows
            .iter()
            .map(|r| {
                let stored = serde_json::from_str(r.get(3)).unwrap_or(serde_json::Value::Null);
                let now = ActionKind::from_name(r.get(5))
                    .map_or(Some(stored.clone()), |kind| current(r.get(6), kind, stored));
                PendingAction {
                    action_id: r.get(0),
                    session_id: r.get(1),
                    payment_session_id: r.get(2),
                    retired: now.is_none(),
                    data: now.unwrap_or(serde_json::Value::Null),
                    attempts: u32::try_from(r.get::<_, i32>(4)).unwrap_or(0),
                }
            })
            .collect();
        claim.ids = pending.iter().map(|a| a.action_id.clone()).collect();
        Ok(ActionClaim::Postgres(Box::new(claim), pending))
    }

    pub(super) async fn attempt(&self, action_id: &str) -> Result<(), StoreError> {
        self.client()
            .await?
            .execute(
                "INSERT INTO attempts (action_id, count) VALUES ($1, 1) \
                 ON CONFLICT (action_id) DO UPDATE SET count = attempts.count + 1",
                &[&action_id],
            )
            .await
            .map_err(StoreError::of)?;
        Ok(())
    }

    pub(super) async fn finish_actions(
        &self,
        claim: Claim,
        finished: Vec<(String, Finished)>,
        now: Timestamp,
    ) -> Result<(), StoreError> {
        if let Some(client) = &claim.client {
            for (action_id, f) in &finished {
                match f {
                    Finished::Done(done, outcome) => {
                        // Reported done on the tracker, in the same transaction as the row.
                        let session_id = action_id.rsplit_once('/').map_or("", |(s, _)| s);
                        if let Some(mut row) = load_locked(client, session_id).await? {
                            let asked = observe::done(&mut row.tracker, session_id, done, now);
                            save(client, &self.config, session_id, &row, now, &asked).await?;
                        }
                        client
                            .execute(
                                "UPDATE actions SET done = TRUE, outcome = $2 WHERE action_id = $1",
                                &[action_id, outcome],
                            )
                            .await
                    }
                    Finished::Retry(after) => {
                        let at = wall_millis().saturating_add(i64::try_from(*after).unwrap_or(0));
                        client
                            .execute(
                                "UPDATE actions SET not_before_ms = $2 WHERE action_id = $1",
                                &[action_id, &at],
                            )
                            .await
                    }
                }
                .map_err(StoreError::of)?;
            }
        }
        claim.commit().await
    }

    pub(super) async fn counts(&self) -> Result<(i64, i64), StoreError> {
        let row = self
            .client()
            .await?
            .query_one(
                "SELECT (SELECT COUNT(*) FROM sessions), \
                 (SELECT COUNT(*) FROM actions WHERE NOT done)",
                &[],
            )
            .await
            .map_err(StoreError::of)?;
        Ok((row.get(0), row.get(1)))
    }
}
