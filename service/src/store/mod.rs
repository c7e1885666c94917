//! Storage behind one small seam, two implementations: SQLite (one process, the default) and
//! PostgreSQL (several processes share the work).
//!
//! What both guarantee:
//! - every observation runs on a tracker loaded under its session row's lock, in the
//!   transaction that stores the tracker and the actions it asked for (all or nothing);
//! - a due read, and a pending action, is claimed by one process at a time, and no lock or
//!   transaction is held while it is performed: on PostgreSQL the claim is the process's owner
//!   id ([`postgres`]: an action of a dead process is taken over at once, a read once the
//!   tracker's read in flight timed out; a frozen process's after its lease); on SQLite the one
//!   process's own claim set;
//! - a due read is started on its tracker as it is claimed (the read in flight is the core's);
//! - an action's attempt is recorded, committed, before the action is performed, with the
//!   instant until which it may still land at Klarna, so a worker that resumes it knows the
//!   outcome may be ambiguous, and does not look or place again before;
//! - an action claimed is performed with the data the tracker owes it with now, and one the
//!   tracker owes no more is done without being performed ([`current`]);
//! - a store opened with another policy than the one its schedule was written under computes
//!   every open session's next read again ([`POLICY_SETTING`]).

pub mod postgres;
pub mod sqlite;

use std::fmt;

use hpp_session::{ActionKind, ActionSet, NextRead, Timestamp, Tracker, TrackerConfig, Urgency};
use serde_json::Value;

use crate::observe::{Asked, Done, ReadAnswer};

/// A storage error (the database's message).
#[derive(Debug)]
pub struct StoreError(pub String);

impl fmt::Display for StoreError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "storage: {}", self.0)
    }
}

impl std::error::Error for StoreError {}

impl StoreError {
    pub(crate) fn of(e: impl fmt::Display) -> Self {
        Self(e.to_string())
    }

    /// `what` failed with PostgreSQL's `e`: its message and SQLSTATE when the server answered,
    /// else the cause (`tokio_postgres` alone displays a server's error as `db error`).
    #[allow(clippy::needless_pass_by_value)]
    pub(crate) fn query(what: &str, e: tokio_postgres::Error) -> Self {
        if let Some(db) = e.as_db_error() {
            return Self(format!(
                "{what}: {} ({}: {})",
                db.message(),
                db.severity(),
                db.code().code()
            ));
        }
        Self(format!("{what}: {}", crate::error::with_causes(&e)))
    }

    /// No connection from the pool.
    #[allow(clippy::needless_pass_by_value)]
    pub(crate) fn pool(e: deadpool_postgres::PoolError) -> Self {
        Self(format!(
            "no PostgreSQL connection: {}",
            crate::error::with_causes(&e)
        ))
    }
}

/// A session's row, as an observation sees it.
#[derive(Debug)]
pub struct Row {
    /// The secret issued in its callback URL.
    pub secret: String,
    /// Its tracker.
    pub tracker: Tracker,
}

/// A session to insert.
#[derive(Debug)]
pub struct NewSession {
    /// Klarna's HPP session id.
    pub session_id: String,
    /// The secret in its callback URL.
    pub secret: String,
    /// The Klarna Payments session it pays.
    pub payment_session_id: String,
    /// Its tracker.
    pub tracker: Tracker,
    /// Its first read.
    pub next: Option<NextRead>,
}

/// An action claimed for performing. `Debug` does not show its data (a place-order's carries
/// the authorization token), only its kind.
#[derive(Clone)]
pub struct PendingAction {
    /// Its stable id, `"{session_id}/{kind}"` (the idempotency key).
    pub action_id: String,
    /// The HPP session.
    pub session_id: String,
    /// The Klarna Payments session.
    pub payment_session_id: String,
    /// The crate's serialized action.
    pub data: Value,
    /// Earlier attempts (recorded before each was performed): more than zero means the
    /// outcome of one may be unknown.
    pub attempts: u32,
    /// Milliseconds until the last attempt can no longer land at Klarna (`None` before the
    /// first; zero or less once past), on the database's clock, by the bound the attempting
    /// process recorded: an order is not looked up or placed again before.
    pub lands_in_ms: Option<i64>,
    /// The owner id it was claimed under (PostgreSQL; 0 on SQLite).
    pub owner: i32,
    /// The tracker owes it no more (confirmed evidence replaced the completion it was asked
    /// for, the cart turned out paid, the session ended before its disable): it is reported
    /// done without being performed ([`current`]).
    pub retired: bool,
}

impl std::fmt::Debug for PendingAction {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PendingAction")
            .field("action_id", &self.action_id)
            .field("session_id", &self.session_id)
            .field("payment_session_id", &self.payment_session_id)
            .field("data", &self.data.get("kind").and_then(Value::as_str))
            .field("attempts", &self.attempts)
            .field("lands_in_ms", &self.lands_in_ms)
            .field("owner", &self.owner)
            .field("retired", &self.retired)
            .finish()
    }
}

/// What became of a claimed action.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Finished {
    /// Done, with what happened: reported done on the tracker too.
    Done(Done, String),
    /// Not done: try again this many milliseconds later (it stays owed).
    Retry(u64),
}

/// Deliberately broken claims, for the end-to-end test's sabotage check only.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum Sabotage {
    /// None (the only setting for real use).
    #[default]
    None,
    /// PostgreSQL: claim pending actions with a plain `SELECT` (no lock, no `SKIP LOCKED`).
    ActionsWithoutLock,
    /// Place an order again after an ambiguous answer without looking first.
    ResendBlindly,
    /// Look and place an order again after an ambiguous answer at once, while the earlier
    /// attempt may still land at Klarna (no landing bound).
    ResendInFlight,
}

/// How a store is opened.
#[derive(Clone, Copy, Debug)]
pub struct Options {
    /// The merchant's policy, held here next to the stored trackers: a changed policy applies
    /// to every stored session.
    pub config: TrackerConfig,
    /// PostgreSQL: a claim older than this may be taken over even from a live process (one
    /// frozen, or stuck). It may be shorter than an action takes (a slow shop call): a holder
    /// whose claim was taken over is fenced, its attempt refused ([`Store::attempt`]: the row
    /// names another owner, or the attempt count moved), so a takeover repeats at most the
    /// work of a call not yet attempted, never an order.
    pub lease: std::time::Duration,
    /// Deliberate breakage, for the end-to-end test's sabotage checks only.
    pub sabotage: Sabotage,
}

impl Options {
    /// `config`, a lease of a minute, no sabotage.
    #[must_use]
    pub const fn new(config: TrackerConfig) -> Self {
        Self {
            config,
            lease: std::time::Duration::from_mins(1),
            sabotage: Sabotage::None,
        }
    }
}

/// The storage seam.
#[derive(Debug)]
pub enum Store {
    /// SQLite.
    Sqlite(sqlite::Sqlite),
    /// PostgreSQL.
    Postgres(postgres::Postgres),
}

/// Due reads claimed by this worker.
#[derive(Debug)]
pub enum ReadClaim {
    /// SQLite's.
    Sqlite(sqlite::Claim),
    /// PostgreSQL's (rows locked in an open transaction).
    Postgres(Box<postgres::Claim>),
}

impl ReadClaim {
    /// The claimed sessions.
    #[must_use]
    pub fn ids(&self) -> &[String] {
        match self {
            Self::Sqlite(c) => &c.ids,
            Self::Postgres(c) => &c.ids,
        }
    }

    /// One claim per session, each finished on its own: a slow read holds no other.
    #[must_use]
    pub fn into_each(self) -> Vec<Self> {
        match self {
            Self::Sqlite(c) => c.split().into_iter().map(Self::Sqlite).collect(),
            Self::Postgres(c) => c
                .split()
                .into_iter()
                .map(|c| Self::Postgres(Box::new(c)))
                .collect(),
        }
    }
}

/// Pending actions claimed by this worker.
#[derive(Debug)]
pub enum ActionClaim {
    /// SQLite's.
    Sqlite(sqlite::Claim, Vec<PendingAction>),
    /// PostgreSQL's (rows locked in an open transaction).
    Postgres(Box<postgres::Claim>, Vec<PendingAction>),
}

impl ActionClaim {
    /// The claimed actions.
    #[must_use]
    pub fn actions(&self) -> &[PendingAction] {
        match self {
            Self::Sqlite(_, a) | Self::Postgres(_, a) => a,
        }
    }

    /// One claim per action, each performed and finished on its own: a slow action holds no
    /// other. (An id claimed whose row did not load is released here.)
    #[must_use]
    pub fn into_each(self) -> Vec<(Self, PendingAction)> {
        fn pair<C>(
            claims: Vec<C>,
            ids: impl Fn(&C) -> &[String],
            mut pending: Vec<PendingAction>,
        ) -> Vec<(C, PendingAction)> {
            claims
                .into_iter()
                .filter_map(|c| {
                    let at = pending
                        .iter()
                        .position(|a| ids(&c).first() == Some(&a.action_id))?;
                    Some((c, pending.swap_remove(at)))
                })
                .collect()
        }
        match self {
            Self::Sqlite(c, pending) => pair(c.split(), |c| &c.ids, pending)
                .into_iter()
                .map(|(c, a)| (Self::Sqlite(c, vec![a.clone()]), a))
                .collect(),
            Self::Postgres(c, pending) => pair(c.split(), |c| &c.ids, pending)
                .into_iter()
                .map(|(c, a)| (Self::Postgres(Box::new(c), vec![a.clone()]), a))
                .collect(),
        }
    }
}

impl Store {
    /// Opens `url` (`postgres://…` for PostgreSQL, anything else is a SQLite file path) and
    /// applies its migrations: a database written by an earlier version is upgraded.
    ///
    /// # Errors
    /// The database's, a migration's, or (SQLite) another process holding the file.
    pub async fn open(url: &str, options: Options) -> Result<Self, StoreError> {
        if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            Ok(Self::Postgres(
                postgres::Postgres::open(url, &options).await?,
            ))
        } else {
            Ok(Self::Sqlite(
                sqlite::Sqlite::open(url, options.config).await?,
            ))
        }
    }

    /// Klarna's budget shared through the database (PostgreSQL: every process draws on one);
    /// `None` on SQLite, whose one process keeps its own.
    #[must_use]
    pub fn shared_budget(&self) -> Option<postgres::SharedBudget> {
        match self {
            Self::Sqlite(_) => None,
            Self::Postgres(p) => Some(p.budget()),
        }
    }

    /// Inserts a session just created at Klarna.
    ///
    /// # Errors
    /// The database's.
    pub async fn insert(&self, session: NewSession) -> Result<(), StoreError> {
        match self {
            Self::Sqlite(s) => s.insert(session).await,
            Self::Postgres(s) => s.insert(session).await,
        }
    }

    /// Runs `observe` on the session's row under its lock, at `now`, and stores the tracker
    /// and the actions it returns in the same transaction. `None`: no such session.
    ///
    /// # Errors
    /// The database's; then nothing was stored.
    pub async fn observe<R: Send + 'static>(
        &self,
        session_id: &str,
        now: Timestamp,
        observe: impl FnOnce(&mut Row) -> (R, Vec<Asked>) + Send + 'static,
    ) -> Result<Option<R>, StoreError> {
        match self {
            Self::Sqlite(s) => s.observe(session_id, now, observe).await,
            Self::Postgres(s) => s.observe(session_id, now, observe).await,
        }
    }

    /// Claims up to `limit` sessions whose read is due at `now`, most urgent first.
    ///
    /// # Errors
    /// The database's.
    pub async fn claim_reads(&self, now: Timestamp, limit: u32) -> Result<ReadClaim, StoreError> {
        match self {
            Self::Sqlite(s) => s.claim_reads(now, limit).await.map(ReadClaim::Sqlite),
            Self::Postgres(s) => s
                .claim_reads(now, limit)
                .await
                .map(|c| ReadClaim::Postgres(Box::new(c))),
        }
    }

    /// Observes the reads' answers on the claimed sessions (each started on its tracker when
    /// it was claimed, answered by `now`), and stores them. The claim stays in this process's
    /// hand until the caller lets go of it (drops it): not before this returned.
    ///
    /// # Errors
    /// The database's; then nothing was stored.
    pub async fn finish_reads(
        &self,
        claim: &ReadClaim,
        answers: Vec<(String, ReadAnswer)>,
        now: Timestamp,
    ) -> Result<(), StoreError> {
        match (self, claim) {
            (Self::Sqlite(s), ReadClaim::Sqlite(_)) => s.finish_reads(answers, now).await,
            (Self::Postgres(s), ReadClaim::Postgres(c)) => {
                s.finish_reads(c.owner, answers, now).await
            }
            _ => Err(StoreError("a claim from another store".to_owned())),
        }
    }

    /// Claims up to `limit` pending actions: the soonest deadline first (the order whose token
    /// dies soonest), then the oldest.
    ///
    /// # Errors
    /// The database's.
    pub async fn claim_actions(&self, limit: u32) -> Result<ActionClaim, StoreError> {
        match self {
            Self::Sqlite(s) => s.claim_actions(limit).await,
            Self::Postgres(s) => s.claim_actions(limit).await,
        }
    }

    /// Records, committed at once, that `action` is about to be performed, when, and that it
    /// may land at Klarna until `lands_within` from now, if it is still this process's claim
    /// (on PostgreSQL under the row's lock, and only while this process holds its liveness
    /// lock), it is not done, and no attempt was recorded since it was claimed (a
    /// compare-and-set on [`PendingAction::attempts`]); `false`: another process took it over,
    /// or another attempt came first: do not perform it.
    ///
    /// # Errors
    /// The database's: then do not perform it.
    pub async fn attempt(
        &self,
        action: &PendingAction,
        lands_within: std::time::Duration,
    ) -> Result<bool, StoreError> {
        let lands_within = i64::try_from(lands_within.as_millis()).unwrap_or(i64::MAX);
        match self {
            Self::Sqlite(s) => {
                s.attempt(&action.action_id, action.attempts, lands_within)
                    .await
            }
            Self::Postgres(s) => s.attempt(action, lands_within).await,
        }
    }

    /// Stores what became of the claimed actions (reported done on their trackers, in the same
    /// transaction). The claim stays in this process's hand until the caller lets go of it.
    ///
    /// # Errors
    /// The database's.
    pub async fn finish_actions(
        &self,
        claim: &ActionClaim,
        finished: Vec<(String, Finished)>,
        now: Timestamp,
    ) -> Result<(), StoreError> {
        match (self, claim) {
            (Self::Sqlite(s), ActionClaim::Sqlite(..)) => s.finish(finished, now).await,
            (Self::Postgres(s), ActionClaim::Postgres(c, _)) => {
                s.finish(c.owner, &finished, now).await
            }
            _ => Err(StoreError("a claim from another store".to_owned())),
        }
    }

    /// What the metrics show, at `now` (the service's clock).
    ///
    /// # Errors
    /// The database's.
    pub async fn gauges(&self, now: Timestamp) -> Result<Gauges, StoreError> {
        match self {
            Self::Sqlite(s) => s.gauges(now).await,
            Self::Postgres(s) => s.gauges(now).await,
        }
    }

    /// Whether the database answers and its schema is the one this version migrates to (for
    /// `/readyz`).
    ///
    /// # Errors
    /// What is wrong.
    pub async fn ready(&self) -> Result<(), StoreError> {
        match self {
            Self::Sqlite(s) => s.ready().await,
            Self::Postgres(s) => s.ready().await,
        }
    }

    /// When the earliest scheduled read is due, on the service's clock (`None`: no session has
    /// one, every one is settled): for a simulated clock that jumps from one due read to the
    /// next (the crash test, `tests/crash.rs`). One indexed query, where [`Store::gauges`] counts
    /// every session.
    ///
    /// # Errors
    /// The database's.
    pub async fn next_read(&self) -> Result<Option<Timestamp>, StoreError> {
        match self {
            Self::Sqlite(s) => s.next_read().await,
            Self::Postgres(s) => s.next_read().await,
        }
    }

    /// Counts of sessions and of pending actions (for the service's status page).
    ///
    /// # Errors
    /// The database's.
    pub async fn counts(&self) -> Result<(i64, i64), StoreError> {
        match self {
            Self::Sqlite(s) => s.counts().await,
            Self::Postgres(s) => s.counts().await,
        }
    }
}

/// A session's status as the metrics count it: its confirmed status (`WAITING` until one is
/// known), or `EXPIRED`.
#[must_use]
pub fn status_of(tracker: &Tracker) -> &'static str {
    if tracker.is_expired() {
        return "EXPIRED";
    }
    tracker.status().map_or("WAITING", |s| s.as_str())
}

/// What the metrics show of the store at one moment.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Gauges {
    /// Sessions whose read is due now.
    pub due_reads: i64,
    /// How long the most overdue read has been due, in milliseconds of the service's clock.
    pub oldest_due_read_ms: i64,
    /// Pending actions by kind.
    pub pending: Vec<(String, i64)>,
    /// How long the oldest pending action has waited, in wall-clock milliseconds.
    pub oldest_pending_ms: i64,
    /// Sessions by status.
    pub sessions: Vec<(String, i64)>,
}

/// Unix milliseconds of `t`.
#[must_use]
pub fn millis(t: Timestamp) -> i64 {
    t.unix_seconds()
        .saturating_mul(1_000)
        .saturating_add(i64::from(t.subsec_nanos() / 1_000_000))
}

/// Wall-clock Unix milliseconds (for the executor's own retry delays, a network matter).
#[must_use]
pub fn wall_millis() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

/// The stored urgency of a next read: 2 confirm, 1 initial, 0 blind (or none).
#[must_use]
pub fn urgency(next: Option<NextRead>) -> i32 {
    match next.map(|r| r.urgency) {
        Some(Urgency::Confirm) => 2,
        Some(Urgency::Initial) => 1,
        _ => 0,
    }
}

/// The tracker's stored form.
///
/// # Errors
/// Never in practice (serializing a tracker cannot fail).
pub fn to_json(tracker: &Tracker) -> Result<String, StoreError> {
    serde_json::to_string(tracker).map_err(StoreError::of)
}

/// Whether `text` is a tracker stored before trackers kept what they owe (no `owed` field):
/// then what it owes is what this service's pending action rows show.
#[must_use]
pub fn stored_before_owed(text: &str) -> bool {
    serde_json::from_str::<Value>(text)
        .ok()
        .and_then(|v| v.as_object().map(|fields| !fields.contains_key("owed")))
        .unwrap_or(false)
}

/// What a pending action row of `kind` is now, by the tracker stored beside it (the truth of
/// what is owed; the row is a projection written when the action was asked): the action's
/// current data, or `None` when the tracker owes it no more (retired: done without being
/// performed). A tracker that does not load leaves the row as it was: `stored`.
#[must_use]
pub fn current(tracker: &str, kind: ActionKind, stored: Value) -> Option<Value> {
    // A row of a tracker stored before trackers kept what they owe is pending: it is owed.
    let pending = stored_before_owed(tracker).then(|| ActionSet::EMPTY.with(kind));
    let Ok(tracker) = from_json(tracker, pending) else {
        return Some(stored);
    };
    let action = tracker.action(kind)?;
    Some(serde_json::to_value(&action).unwrap_or(stored))
}

/// The stored policy's name in the `settings` table: when the service opens with another
/// policy, every open session's next read is computed again under it.
pub const POLICY_SETTING: &str = "policy";

/// How a policy is recorded in `settings`, to tell a changed one.
#[must_use]
pub fn policy_fingerprint(config: &TrackerConfig) -> String {
    format!("{config:?}")
}

/// The schedule columns (`next_read_ms`, `urgency`) of a stored tracker under `config`; `due`
/// is its stored next read (what `now` means for a tracker never read).
///
/// # Errors
/// A stored tracker that does not parse.
pub fn schedule(
    tracker: &str,
    config: &TrackerConfig,
    due: Timestamp,
) -> Result<(Option<i64>, i32), StoreError> {
    let next = from_json(tracker, None)?.next_read(config, due);
    Ok((next.map(|r| millis(r.at)), urgency(next)))
}

/// `ms` (milliseconds since the Unix epoch) as a timestamp.
#[must_use]
pub fn from_millis(ms: i64) -> Timestamp {
    let secs = ms.div_euclid(1_000);
    let nanos = u32::try_from(ms.rem_euclid(1_000) * 1_000_000).unwrap_or(0);
    Timestamp::from_unix(secs, nanos).unwrap_or(Timestamp::UNIX_EPOCH)
}

/// A tracker from its stored form. One stored before trackers kept what they owe
/// ([`stored_before_owed`]) owes `pending`, the kinds its pending rows show.
///
/// # Errors
/// A stored tracker that does not parse, or owes what its state has no data for.
pub fn from_json(text: &str, pending: Option<ActionSet>) -> Result<Tracker, StoreError> {
    let mut value: Value = serde_json::from_str(text).map_err(StoreError::of)?;
    if let (Some(fields), Some(pending)) = (value.as_object_mut(), pending) {
        fields.insert("owed".to_owned(), Value::from(pending.bits()));
    }
    serde_json::from_value(value).map_err(StoreError::of)
}

/// The kinds named by pending action rows.
#[must_use]
pub fn kinds<'a>(names: impl IntoIterator<Item = &'a str>) -> ActionSet {
    names
        .into_iter()
        .filter_map(ActionKind::from_name)
        .fold(ActionSet::EMPTY, ActionSet::with)
}

/// The stable id of an action: `"{session_id}/{kind}"`.
#[must_use]
pub fn action_id(session_id: &str, asked: &Asked) -> String {
    format!("{session_id}/{}", asked.kind.as_str())
}
