//! PostgreSQL: several processes share the work, and no lock outlives a statement's short
//! transaction.
//!
//! - An observation locks its session's row (`SELECT … FOR UPDATE`) for the transaction that
//!   stores the tracker and its actions: no network call is made in it.
//! - A claim (of due reads or pending actions) is the owner's id written in `claimed_by`, in a
//!   short transaction (`FOR UPDATE SKIP LOCKED` while it writes). The read or the action is then
//!   performed with no transaction open and no pooled connection pinned, so a callback for that
//!   session never waits on it. A due read is started on the tracker as it is claimed
//!   ([`hpp_session::Tracker::start_read`]): the read in flight is the core's.
//! - Each process holds a liveness lock, `pg_advisory_lock(717, owner)`, on a connection of its
//!   own ([`Liveness`]). A claim whose owner's lock is free (the process died, for good or with
//!   `kill -9`, or lost its connection) is taken over as soon as it is due (an action at once; a
//!   read once the tracker's read in flight timed out, [`hpp_session::READ_TIMEOUT`]); one whose
//!   lease ran out (a frozen process) too. Pooled sessions end a transaction left idle for 2 s
//!   (a process frozen mid-transaction) and give up a lock after 2 s. What a taken-over claim could repeat is safe to repeat: a read, a shop call
//!   with its idempotency key, a disable. An order is not: it is never placed again while an
//!   earlier attempt may still land at Klarna ([`PendingAction::since_attempt_ms`]).
//! - Migrations are versioned files (`migrations/postgres`, applied with `refinery`) under an
//!   advisory lock, so processes that start together migrate once.
//! - Klarna's budget is one GCRA per bucket in the `budget` table ([`SharedBudget`]): every
//!   process draws on it, so the survivors use a dead process's share.

use std::collections::HashSet;
use std::sync::atomic::{AtomicI32, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use deadpool_postgres::{GenericClient, Object, Pool, Runtime};
use hpp_session::{ActionKind, Timestamp, TrackerConfig};
use tokio_postgres::NoTls;

use super::{
    ActionClaim, Finished, NewSession, Options, POLICY_SETTING, PendingAction, Row, Sabotage,
    StoreError, action_id, current, from_json, from_millis, kinds, millis, policy_fingerprint,
    schedule, status_of, stored_before_owed, to_json, urgency,
};
use crate::observe::{self, Asked, ReadAnswer};

mod migrations {
    refinery::embed_migrations!("migrations/postgres");
}

/// The advisory lock key that serializes migrations (and the policy's rescheduling) when
/// several processes start at once.
const MIGRATION_LOCK: i64 = 716;
/// The first key of each process's liveness lock, `pg_advisory_lock(717, owner)`.
const LIVENESS_CLASS: i32 = 717;
/// The database's clock in Unix milliseconds: every process compares times on it.
const NOW_MS: &str = "(extract(epoch FROM clock_timestamp()) * 1000)::bigint";
/// The condition under which a row's claim (`claimed_by`, `claimed_at_ms`) may be taken by
/// owner `$me` (parameter `me`), who holds its liveness lock: no one holds it, its owner's liveness lock is free (the process
/// died, for good or not, or lost its connection), or its lease of `$lease` milliseconds ran out
/// (a frozen process); or it is `$me`'s own and not in hand (`$mine`, an array of `id`: what this
/// process holds now, so its own claim left behind by a failed finish is taken again).
fn claimable(id: &str, me: u8, mine: u8, lease: u8) -> String {
    let alive = holds_liveness(me);
    format!("{alive} AND {}", takeable(id, me, mine, lease))
}

/// Whether owner `$me`'s liveness lock is held now (by this process's own connection): a
/// process whose lock was lost without its noticing yet (a half-open connection) claims and
/// attempts nothing.
fn holds_liveness(me: u8) -> String {
    format!(
        "EXISTS (SELECT 1 FROM pg_locks WHERE locktype = 'advisory' \
         AND classid = {LIVENESS_CLASS} AND objid::bigint = ${me}::int AND objsubid = 2 AND granted)"
    )
}

/// Whether the row's claim may be taken (see [`claimable`]). Never what this process holds
/// now, whoever the row names: a task of this process still works on it (under an owner id
/// the process since lost, or past its lease), and taking it again would give one action two
/// holders with one owner id.
fn takeable(id: &str, me: u8, mine: u8, lease: u8) -> String {
    format!(
        "(NOT ({id} = ANY(${mine})) AND (claimed_by IS NULL \
         OR claimed_by::bigint NOT IN (SELECT objid::bigint FROM pg_locks \
             WHERE locktype = 'advisory' AND classid = {LIVENESS_CLASS} AND objsubid = 2 \
             AND granted) \
         OR claimed_at_ms < {NOW_MS} - ${lease} \
         OR claimed_by = ${me}))"
    )
}

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
        .map_err(|e| StoreError::query("read the stored policy", e))?
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
        .map_err(|e| StoreError::query("load open sessions to reschedule", e))?;
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
            .map_err(|e| StoreError::query("reschedule a session", e))?;
        }
    }
    tx.execute(
        "INSERT INTO settings (name, value) VALUES ($1, $2) \
         ON CONFLICT (name) DO UPDATE SET value = EXCLUDED.value",
        &[&POLICY_SETTING, &fingerprint],
    )
    .await
    .map_err(|e| StoreError::query("record the policy", e))?;
    Ok(())
}

/// This process's liveness: the id it claims work under, held as an advisory lock on a
/// connection of its own. While the lock is held, no other process takes its claims (until
/// their lease runs out); once the connection drops (the process died, or the database
/// restarted), every process may. Re-established with a new id after a loss.
#[derive(Debug, Clone, Default)]
pub struct Liveness {
    owner: Arc<AtomicI32>,
}

impl Liveness {
    /// The id this process claims under now; `None` while its lock is being re-established
    /// (then it claims nothing).
    #[must_use]
    pub fn owner(&self) -> Option<i32> {
        Some(self.owner.load(Ordering::SeqCst)).filter(|&o| o > 0)
    }

    /// Holds the lock forever, connecting again after a loss.
    async fn hold(self, url: String) {
        loop {
            let config = url.parse::<tokio_postgres::Config>().map(|mut c| {
                c.keepalives_idle(Duration::from_secs(5))
                    .connect_timeout(POOL_WAIT);
                c
            });
            let connected = match config {
                Ok(config) => config.connect(NoTls).await,
                Err(e) => Err(e),
            };
            match connected {
                Ok((client, connection)) => {
                    let mut connection = tokio::spawn(connection);
                    if let Some(id) = Self::take_an_id(&client).await {
                        self.owner.store(id, Ordering::SeqCst);
                        tracing::info!(owner = id, "liveness lock held");
                        // Held while the connection lives and answers: asked every second, so a
                        // connection that went silent (half-open) is given up within seconds.
                        let cause = loop {
                            tokio::select! {
                                ended = &mut connection => break format!("connection ended: {ended:?}"),
                                () = tokio::time::sleep(Duration::from_secs(1)) => {}
                            }
                            let asked =
                                tokio::time::timeout(POOL_WAIT, client.simple_query("SELECT 1"));
                            match asked.await {
                                Ok(Ok(_)) => {}
                                Ok(Err(e)) => break crate::error::with_causes(&e),
                                Err(_) => break "no answer within 5 s".to_owned(),
                            }
                        };
                        self.owner.store(0, Ordering::SeqCst);
                        tracing::warn!(
                            owner = id,
                            cause,
                            "liveness lock lost: claiming nothing until it is held again"
                        );
                    }
                    connection.abort();
                    drop(client);
                }
                Err(e) => tracing::warn!(
                    error = %crate::error::with_causes(&e),
                    "liveness lock: cannot connect to PostgreSQL"
                ),
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    }

    /// A random id whose lock no one holds, locked.
    async fn take_an_id(client: &tokio_postgres::Client) -> Option<i32> {
        for _ in 0..16 {
            let mut bytes = [0_u8; 4];
            getrandom::fill(&mut bytes).ok()?;
            let id = i32::from_le_bytes(bytes) & i32::MAX;
            if id == 0 {
                continue;
            }
            let taken = client
                .query_one(
                    "SELECT pg_try_advisory_lock($1, $2)",
                    &[&LIVENESS_CLASS, &id],
                )
                .await;
            match taken {
                Ok(row) if row.get::<_, bool>(0) => return Some(id),
                Ok(_) => {}
                Err(e) => {
                    tracing::warn!(error = %e, "liveness lock: cannot lock");
                    return None;
                }
            }
        }
        None
    }
}

/// Klarna's budget shared by every process: one GCRA per bucket, its theoretical arrival time
/// in the `budget` table on the database's clock. A call is admitted when the bucket's time is
/// not ahead of now, and moves it one interval on; no burst, so no 1-second window admits more
/// than the rate plus one, however many processes draw on it.
#[derive(Debug, Clone)]
pub struct SharedBudget {
    pool: Pool,
}

impl SharedBudget {
    /// Takes one call from `bucket` at `per_second`: `Ok(None)` when admitted, else how long to
    /// wait before asking again.
    ///
    /// # Errors
    /// PostgreSQL's (then nothing was taken).
    pub async fn take(
        &self,
        bucket: &str,
        per_second: u32,
    ) -> Result<Option<Duration>, StoreError> {
        // Rounded up: never more than `per_second` intervals in a second.
        let rate = i64::from(per_second.max(1));
        let interval_us = (1_000_000 + rate - 1) / rate;
        let client = self.pool.get().await.map_err(StoreError::pool)?;
        let row = client
            .query_one(
                "WITH now AS (SELECT (extract(epoch FROM clock_timestamp()) * 1000000)::bigint AS us), \
                 taken AS (UPDATE budget b SET tat_us = GREATEST(b.tat_us, now.us) + $2 FROM now \
                           WHERE b.bucket = $1 AND b.tat_us <= now.us RETURNING 0::bigint AS wait) \
                 SELECT COALESCE((SELECT wait FROM taken), \
                                 (SELECT GREATEST(b.tat_us - now.us, 1) FROM budget b, now \
                                  WHERE b.bucket = $1), \
                                 -1)",
                &[&bucket, &interval_us],
            )
            .await
            .map_err(|e| StoreError::query("take from the budget", e))?;
        match row.get::<_, i64>(0) {
            0 => Ok(None),
            -1 => Err(StoreError(format!("the budget has no bucket {bucket:?}"))),
            wait => Ok(Some(Duration::from_micros(
                u64::try_from(wait).unwrap_or(1),
            ))),
        }
    }
}

/// The buckets of [`SharedBudget`].
pub const BUCKETS: [&str; 4] = [
    "reads",
    "money",
    "payment_session_create",
    "hpp_session_create",
];

/// Connections a pool holds at most: two pools a process (the workers' and the handlers'), so
/// four processes stay well under PostgreSQL's default 100 connections.
const POOL_SIZE: usize = 8;
/// How long to wait for a pooled connection, to make one, or to check one before reuse.
const POOL_WAIT: Duration = Duration::from_secs(5);
/// Server-side limits on every pooled session: a transaction left idle (its process frozen
/// mid-transaction) is ended after 2 s, so it cannot hold rows a callback waits on; a lock
/// waited for longer than 2 s is an error (the caller retries; Klarna calls a callback again).
const SESSION_LIMITS: &str = "-c idle_in_transaction_session_timeout=2000 -c lock_timeout=2000";

/// A pool on `url`, its sessions limited ([`SESSION_LIMITS`], unless the URL sets options).
fn new_pool(url: &str) -> Result<Pool, StoreError> {
    let mut config = deadpool_postgres::Config::new();
    config.url = Some(url.to_owned());
    let url_options = url
        .parse::<tokio_postgres::Config>()
        .ok()
        .and_then(|c| c.get_options().map(str::to_owned));
    config.options = Some(url_options.unwrap_or_else(|| SESSION_LIMITS.to_owned()));
    config.connect_timeout = Some(POOL_WAIT);
    config.keepalives_idle = Some(Duration::from_secs(10));
    let mut limits = deadpool_postgres::PoolConfig::new(POOL_SIZE);
    limits.timeouts = deadpool_postgres::Timeouts {
        wait: Some(POOL_WAIT),
        create: Some(POOL_WAIT),
        recycle: Some(POOL_WAIT),
    };
    config.pool = Some(limits);
    config
        .create_pool(Some(Runtime::Tokio1), NoTls)
        .map_err(|e| StoreError(format!("PostgreSQL's URL or settings: {e}")))
}

/// The PostgreSQL store: two connection pools (the workers' and the HTTP handlers', so that a
/// callback never queues behind claims and the budget), and this process's liveness.
#[derive(Debug, Clone)]
pub struct Postgres {
    pool: Pool,
    handlers: Pool,
    sabotage: Sabotage,
    config: TrackerConfig,
    /// Claims older than this (milliseconds) may be taken over even from a live owner.
    lease_ms: i64,
    liveness: Liveness,
    reads_in_hand: Arc<Mutex<HashSet<String>>>,
    actions_in_hand: Arc<Mutex<HashSet<String>>>,
}

/// Claimed by this process, under its owner id: released from this process's hand when
/// dropped (the rows' `claimed_by` is cleared when the work is stored).
#[derive(Debug)]
pub struct Claim {
    /// The claimed ids.
    pub ids: Vec<String>,
    /// The owner id it was claimed under.
    pub owner: i32,
    in_hand: Arc<Mutex<HashSet<String>>>,
}

impl Claim {
    /// One claim per id, each released on its own: a read or an action that ends sooner is
    /// stored, and leaves this process's hand, without waiting for the others.
    pub(super) fn split(mut self) -> Vec<Self> {
        std::mem::take(&mut self.ids)
            .into_iter()
            .map(|id| Self {
                ids: vec![id],
                owner: self.owner,
                in_hand: Arc::clone(&self.in_hand),
            })
            .collect()
    }
}

impl Drop for Claim {
    fn drop(&mut self) {
        let mut set = lock(&self.in_hand);
        for id in &self.ids {
            set.remove(id);
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
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
            "UPDATE sessions SET tracker = $2, next_read_ms = $3, urgency = $4, status = $5 \
             WHERE session_id = $1",
            &[
                &session_id,
                &to_json(&row.tracker)?,
                &next.map(|r| millis(r.at)),
                &urgency(next),
                &status_of(&row.tracker),
            ],
        )
        .await
        .map_err(|e| StoreError::query("store a tracker", e))?;
    tracing::debug!(
        session = session_id,
        status = status_of(&row.tracker),
        next_read_ms = next.map(|r| millis(r.at)),
        asked = ?asked.iter().map(|a| a.kind.as_str()).collect::<Vec<_>>(),
        "storing"
    );
    for a in asked {
        client
            .execute(
                &format!(
                    "INSERT INTO actions (action_id, session_id, kind, data, deadline_ms, \
                     asked_ms) VALUES ($1, $2, $3, $4, $5, {NOW_MS}) \
                     ON CONFLICT (action_id) DO NOTHING"
                ),
                &[
                    &action_id(session_id, a),
                    &session_id,
                    &a.kind.as_str(),
                    &a.data.to_string(),
                    &a.deadline_ms,
                ],
            )
            .await
            .map_err(|e| StoreError::query("store an action", e))?;
    }
    Ok(())
}

/// A session's row, locked for the transaction, and who claims it.
async fn load_locked(
    client: &impl GenericClient,
    session_id: &str,
) -> Result<Option<(Row, Option<i32>)>, StoreError> {
    let row = client
        .query_opt(
            "SELECT secret, tracker, claimed_by FROM sessions WHERE session_id = $1 FOR UPDATE",
            &[&session_id],
        )
        .await
        .map_err(|e| StoreError::query("load a session", e))?;
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
            .map_err(|e| StoreError::query("load a session's pending actions", e))?
            .iter()
            .map(|k| k.get(0))
            .collect();
        Some(kinds(names.iter().map(String::as_str)))
    } else {
        None
    };
    let row = Row {
        secret: r.get(0),
        tracker: from_json(&stored, pending)?,
    };
    Ok(Some((row, r.get(2))))
}

impl Postgres {
    /// Connects to `url`, applies the migrations (once, under an advisory lock, however many
    /// processes start together), and starts holding this process's liveness lock.
    ///
    /// # Errors
    /// PostgreSQL's, or a migration's.
    pub async fn open(url: &str, options: &Options) -> Result<Self, StoreError> {
        let (pool, handlers) = (new_pool(url)?, new_pool(url)?);
        migrate(&pool, &options.config).await?;
        let liveness = Liveness::default();
        tokio::spawn(liveness.clone().hold(url.to_owned()));
        Ok(Self {
            pool,
            handlers,
            sabotage: options.sabotage,
            config: options.config,
            lease_ms: i64::try_from(options.lease.as_millis()).unwrap_or(i64::MAX),
            liveness,
            reads_in_hand: Arc::default(),
            actions_in_hand: Arc::default(),
        })
    }

    /// Klarna's budget, shared by every process on this database.
    #[must_use]
    pub fn budget(&self) -> SharedBudget {
        SharedBudget {
            pool: self.pool.clone(),
        }
    }

    /// This process's liveness.
    #[must_use]
    pub fn liveness(&self) -> &Liveness {
        &self.liveness
    }

    async fn client(&self) -> Result<Object, StoreError> {
        self.pool.get().await.map_err(StoreError::pool)
    }

    /// A connection from the HTTP handlers' pool.
    async fn handler_client(&self) -> Result<Object, StoreError> {
        self.handlers.get().await.map_err(StoreError::pool)
    }

    fn owner(&self) -> Result<i32, StoreError> {
        self.liveness.owner().ok_or_else(|| {
            StoreError("no liveness lock held (re-establishing it): claiming nothing".to_owned())
        })
    }

    pub(super) async fn insert(&self, s: NewSession) -> Result<(), StoreError> {
        self.handler_client()
            .await?
            .execute(
                "INSERT INTO sessions \
                 (session_id, secret, payment_session_id, tracker, next_read_ms, urgency, status) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7)",
                &[
                    &s.session_id,
                    &s.secret,
                    &s.payment_session_id,
                    &to_json(&s.tracker)?,
                    &s.next.map(|r| millis(r.at)),
                    &urgency(s.next),
                    &status_of(&s.tracker),
                ],
            )
            .await
            .map_err(|e| StoreError::query("insert a session", e))?;
        Ok(())
    }

    pub(super) async fn observe<R: Send + 'static>(
        &self,
        session_id: &str,
        now: Timestamp,
        observe: impl FnOnce(&mut Row) -> (R, Vec<Asked>) + Send + 'static,
    ) -> Result<Option<R>, StoreError> {
        let mut client = self.handler_client().await?;
        let tx = client
            .transaction()
            .await
            .map_err(|e| StoreError::query("begin", e))?;
        let Some((mut row, _)) = load_locked(&tx, session_id).await? else {
            return Ok(None);
        };
        let (result, asked) = observe(&mut row);
        save(&tx, &self.config, session_id, &row, now, &asked).await?;
        tx.commit()
            .await
            .map_err(|e| StoreError::query("commit an observation", e))?;
        Ok(Some(result))
    }

    /// Claims due reads: each is started on its tracker ([`hpp_session::Tracker::start_read`])
    /// and marked with this process's owner id, in one short transaction.
    pub(super) async fn claim_reads(
        &self,
        now: Timestamp,
        limit: u32,
    ) -> Result<Claim, StoreError> {
        let me = self.owner()?;
        let mine: Vec<String> = lock(&self.reads_in_hand).iter().cloned().collect();
        let mut client = self.client().await?;
        let tx = client
            .transaction()
            .await
            .map_err(|e| StoreError::query("begin", e))?;
        let sql = format!(
            "SELECT session_id FROM sessions WHERE next_read_ms <= $1 AND {} \
             ORDER BY urgency DESC, next_read_ms LIMIT $2 FOR UPDATE SKIP LOCKED",
            claimable("session_id", 3, 4, 5)
        );
        let due = tx
            .query(
                &sql,
                &[&millis(now), &i64::from(limit), &me, &mine, &self.lease_ms],
            )
            .await
            .map_err(|e| StoreError::query("claim due reads", e))?;
        let mut ids = Vec::with_capacity(due.len());
        for r in due {
            let session_id: String = r.get(0);
            let Some((mut row, _)) = load_locked(&tx, &session_id).await? else {
                continue;
            };
            let started = row.tracker.start_read(&self.config, now).is_some();
            save(&tx, &self.config, &session_id, &row, now, &[]).await?;
            if started {
                tx.execute(
                    &format!(
                        "UPDATE sessions SET claimed_by = $2, claimed_at_ms = {NOW_MS} \
                         WHERE session_id = $1"
                    ),
                    &[&session_id, &me],
                )
                .await
                .map_err(|e| StoreError::query("claim a read", e))?;
                ids.push(session_id);
            }
        }
        tx.commit()
            .await
            .map_err(|e| StoreError::query("commit a claim of reads", e))?;
        lock(&self.reads_in_hand).extend(ids.iter().cloned());
        Ok(Claim {
            ids,
            owner: me,
            in_hand: Arc::clone(&self.reads_in_hand),
        })
    }

    /// Observes the reads' answers, each on its tracker as stored now, and gives the claims
    /// back. A read whose claim another process took over (this one was frozen, or lost its
    /// liveness lock) is not observed: the newer read is the one in flight.
    pub(super) async fn finish_reads(
        &self,
        owner: i32,
        answers: Vec<(String, ReadAnswer)>,
        now: Timestamp,
    ) -> Result<(), StoreError> {
        let mut client = self.client().await?;
        let tx = client
            .transaction()
            .await
            .map_err(|e| StoreError::query("begin", e))?;
        for (session_id, answer) in &answers {
            let Some((mut row, claimed_by)) = load_locked(&tx, session_id).await? else {
                continue;
            };
            if claimed_by != Some(owner) {
                continue;
            }
            let asked = observe::read(&mut row.tracker, &self.config, answer, now);
            save(&tx, &self.config, session_id, &row, now, &asked).await?;
            tx.execute(
                "UPDATE sessions SET claimed_by = NULL WHERE session_id = $1",
                &[session_id],
            )
            .await
            .map_err(|e| StoreError::query("give back a read's claim", e))?;
        }
        tx.commit()
            .await
            .map_err(|e| StoreError::query("commit reads' answers", e))
    }

    /// Claims pending actions, the soonest deadline first (an order whose token dies soonest),
    /// then in the order they were asked.
    pub(super) async fn claim_actions(&self, limit: u32) -> Result<ActionClaim, StoreError> {
        let me = self.owner()?;
        let mine: Vec<String> = lock(&self.actions_in_hand).iter().cloned().collect();
        let mut client = self.client().await?;
        let tx = client
            .transaction()
            .await
            .map_err(|e| StoreError::query("begin", e))?;
        let pick = match self.sabotage {
            // Sabotage: what every process sees pending, with no lock and no claim check.
            Sabotage::ActionsWithoutLock => format!(
                "SELECT action_id FROM actions WHERE NOT done AND not_before_ms <= {NOW_MS} \
                 AND $3::text[] IS NOT NULL AND $4::bigint IS NOT NULL \
                 ORDER BY deadline_ms, seq LIMIT $1"
            ),
            _ => format!(
                "SELECT action_id FROM actions WHERE NOT done AND not_before_ms <= {NOW_MS} \
                 AND {} ORDER BY deadline_ms, seq LIMIT $1 FOR UPDATE SKIP LOCKED",
                claimable("action_id", 2, 3, 4)
            ),
        };
        let sql = format!(
            "WITH picked AS ({pick}) \
             UPDATE actions a SET claimed_by = $2, claimed_at_ms = {NOW_MS} FROM picked \
             WHERE a.action_id = picked.action_id RETURNING a.action_id"
        );
        let claimed = tx
            .query(&sql, &[&i64::from(limit), &me, &mine, &self.lease_ms])
            .await
            .map_err(|e| StoreError::query("claim pending actions", e))?;
        let ids: Vec<String> = claimed.iter().map(|r| r.get(0)).collect();
        let rows = tx
            .query(
                &format!(
                    "SELECT a.action_id, a.session_id, s.payment_session_id, a.data, \
                     COALESCE(t.count, 0), a.kind, s.tracker, \
                     CASE WHEN t.count > 0 THEN t.lands_by_ms - {NOW_MS} END \
                     FROM actions a JOIN sessions s ON s.session_id = a.session_id \
                     LEFT JOIN attempts t ON t.action_id = a.action_id \
                     WHERE a.action_id = ANY($1) ORDER BY a.deadline_ms, a.seq"
                ),
                &[&ids],
            )
            .await
            .map_err(|e| StoreError::query("load claimed actions", e))?;
        tx.commit()
            .await
            .map_err(|e| StoreError::query("commit a claim of actions", e))?;
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
                    lands_in_ms: r.get(7),
                    owner: me,
                }
            })
            .collect();
        lock(&self.actions_in_hand).extend(ids.iter().cloned());
        let claim = Claim {
            ids,
            owner: me,
            in_hand: Arc::clone(&self.actions_in_hand),
        };
        Ok(ActionClaim::Postgres(Box::new(claim), pending))
    }

    /// Records that the action is about to be performed, on the database's clock, with the
    /// instant until which it may land (`lands_within` milliseconds on), when the claim is still
    /// this process's, this process still holds its liveness lock, the action is not done, and
    /// no attempt was recorded since it was claimed (a compare-and-set on the count the claim
    /// saw, under the attempts row's own lock); `false`: it was taken over (or may be at any
    /// moment), or someone attempted it meanwhile: do not perform it. The action's row is locked for the
    /// statement: a claim taking it over either waits for this attempt (and sees it) or
    /// commits first (and this one finds the row no longer ours).
    pub(super) async fn attempt(
        &self,
        action: &PendingAction,
        lands_within: i64,
    ) -> Result<bool, StoreError> {
        let (ours, unseen) = match self.sabotage {
            // Sabotage: whoever saw it pending performs it.
            Sabotage::ActionsWithoutLock => {
                ("$2::int IS NOT NULL AND $4::int IS NOT NULL".to_owned(), "")
            }
            _ => (
                format!("NOT done AND claimed_by = $2 AND {}", holds_liveness(2)),
                " WHERE $4::int = 0 OR EXISTS (SELECT 1 FROM attempts WHERE action_id = $1)",
            ),
        };
        let cas = if unseen.is_empty() {
            ""
        } else {
            " WHERE attempts.count = $4::int"
        };
        let recorded = self
            .client()
            .await?
            .execute(
                &format!(
                    "WITH mine AS (SELECT action_id FROM actions \
                         WHERE action_id = $1 AND {ours} \
                         FOR UPDATE OF actions) \
                     INSERT INTO attempts (action_id, count, last_ms, lands_by_ms) \
                     SELECT action_id, 1, {NOW_MS}, {NOW_MS} + $3 FROM mine{unseen} \
                     ON CONFLICT (action_id) DO UPDATE SET count = attempts.count + 1, \
                     last_ms = EXCLUDED.last_ms, lands_by_ms = EXCLUDED.lands_by_ms{cas}"
                ),
                &[
                    &action.action_id,
                    &action.owner,
                    &lands_within,
                    &i32::try_from(action.attempts).unwrap_or(i32::MAX),
                ],
            )
            .await
            .map_err(|e| StoreError::query("record an attempt", e))?;
        Ok(recorded == 1)
    }

    /// Stores what became of actions claimed under `owner`.
    pub(super) async fn finish(
        &self,
        owner: i32,
        finished: &[(String, Finished)],
        now: Timestamp,
    ) -> Result<(), StoreError> {
        let mut client = self.client().await?;
        let tx = client
            .transaction()
            .await
            .map_err(|e| StoreError::query("begin", e))?;
        for (action_id, f) in finished {
            match f {
                Finished::Done(done, outcome) => {
                    // Reported done on the tracker, in the same transaction as the row (done
                    // twice is done once: a taken-over claim's work is reported all the same).
                    let session_id = action_id.rsplit_once('/').map_or("", |(s, _)| s);
                    if let Some((mut row, _)) = load_locked(&tx, session_id).await? {
                        let asked = observe::done(&mut row.tracker, session_id, done, now);
                        save(&tx, &self.config, session_id, &row, now, &asked).await?;
                    }
                    tx.execute(
                        "UPDATE actions SET done = TRUE, outcome = $2, claimed_by = NULL \
                         WHERE action_id = $1",
                        &[action_id, outcome],
                    )
                    .await
                }
                Finished::Retry(after) => {
                    let after = i64::try_from(*after).unwrap_or(i64::MAX);
                    tx.execute(
                        &format!(
                            "UPDATE actions SET not_before_ms = {NOW_MS} + $2, claimed_by = NULL \
                             WHERE action_id = $1 AND claimed_by = $3"
                        ),
                        &[action_id, &after, &owner],
                    )
                    .await
                }
            }
            .map_err(|e| StoreError::query("store an action's outcome", e))?;
        }
        tx.commit()
            .await
            .map_err(|e| StoreError::query("commit actions' outcomes", e))?;
        Ok(())
    }

    pub(super) async fn gauges(&self, now: Timestamp) -> Result<super::Gauges, StoreError> {
        let client = self.handler_client().await?;
        let what = |e| StoreError::query("read the metrics' gauges", e);
        let now = millis(now);
        let reads = client
            .query_one(
                "SELECT COUNT(*), COALESCE($1 - MIN(next_read_ms), 0) FROM sessions \
                 WHERE next_read_ms <= $1",
                &[&now],
            )
            .await
            .map_err(what)?;
        let pending = client
            .query(
                "SELECT kind, COUNT(*) FROM actions WHERE NOT done GROUP BY kind",
                &[],
            )
            .await
            .map_err(what)?;
        let oldest = client
            .query_one(
                &format!(
                    "SELECT COALESCE({NOW_MS} - MIN(asked_ms), 0) FROM actions \
                     WHERE NOT done AND asked_ms > 0"
                ),
                &[],
            )
            .await
            .map_err(what)?;
        let sessions = client
            .query(
                "SELECT COALESCE(status, 'UNKNOWN'), COUNT(*) FROM sessions GROUP BY 1",
                &[],
            )
            .await
            .map_err(what)?;
        Ok(super::Gauges {
            due_reads: reads.get(0),
            oldest_due_read_ms: reads.get(1),
            pending: pending.iter().map(|r| (r.get(0), r.get(1))).collect(),
            oldest_pending_ms: oldest.get(0),
            sessions: sessions.iter().map(|r| (r.get(0), r.get(1))).collect(),
        })
    }

    pub(super) async fn ready(&self) -> Result<(), StoreError> {
        let latest = migrations::migrations::runner()
            .get_migrations()
            .iter()
            .map(refinery::Migration::version)
            .max()
            .unwrap_or(0);
        let applied: Option<i32> = self
            .client()
            .await?
            .query_one("SELECT MAX(version) FROM refinery_schema_history", &[])
            .await
            .map_err(|e| StoreError::query("read the schema's version", e))?
            .get(0);
        match applied {
            Some(v) if i64::from(v) == i64::from(latest) => Ok(()),
            other => Err(StoreError(format!(
                "the schema is at version {}, this service's is {latest}",
                other.map_or_else(|| "none (not migrated)".to_owned(), |v| v.to_string())
            ))),
        }
    }

    pub(super) async fn next_read(&self) -> Result<Option<Timestamp>, StoreError> {
        let row = self
            .client()
            .await?
            .query_one("SELECT MIN(next_read_ms) FROM sessions", &[])
            .await
            .map_err(|e| StoreError::query("find the next read", e))?;
        Ok(row.get::<_, Option<i64>>(0).map(from_millis))
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
            .map_err(|e| StoreError::query("count sessions and actions", e))?;
        Ok((row.get(0), row.get(1)))
    }
}

/// Applies the migrations and reschedules open sessions under a changed policy, under the
/// advisory lock that serializes processes starting together (a session lock, on a connection
/// closed afterwards: it ends with it, whatever happens).
async fn migrate(pool: &Pool, config: &TrackerConfig) -> Result<(), StoreError> {
    let mut client = Object::take(pool.get().await.map_err(StoreError::pool)?);
    client
        .execute("SELECT pg_advisory_lock($1)", &[&MIGRATION_LOCK])
        .await
        .map_err(|e| StoreError::query("take the migration lock", e))?;
    let report = migrations::migrations::runner()
        .run_async(&mut *client)
        .await
        .map_err(|e| StoreError(format!("migrating the PostgreSQL schema: {e}")))?;
    for applied in report.applied_migrations() {
        tracing::info!(migration = %applied, "applied");
    }
    let tx = client
        .transaction()
        .await
        .map_err(|e| StoreError::query("begin", e))?;
    reschedule(&tx, config).await?;
    for bucket in BUCKETS {
        tx.execute(
            "INSERT INTO budget (bucket) VALUES ($1) ON CONFLICT (bucket) DO NOTHING",
            &[&bucket],
        )
        .await
        .map_err(|e| StoreError::query("create the budget's buckets", e))?;
    }
    tx.commit()
        .await
        .map_err(|e| StoreError::query("commit the rescheduling", e))?;
    Ok(())
}
