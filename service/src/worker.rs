//! The poller and the executor: loops that claim work from the store, do it over HTTP with no
//! transaction open, and store what came of it. Each read and each action is a task of its
//! own, stored as soon as it ends, so a slow one holds only its own slot
//! ([`READS_IN_FLIGHT`], [`ACTIONS_IN_FLIGHT`]). Either loop may die at any point; what was not
//! committed is claimed again. Asked to stop, each claims no more and lets what is in flight
//! finish.

use std::sync::Arc;
use std::time::Duration;

use hpp_session::{Action, ActionKind, DisableAnswer};
use serde_json::json;
use tokio::task::JoinSet;
use tracing::Instrument as _;

use crate::App;
use crate::klarna::{DisableResult, OrderResult};
use crate::observe::Done;
use crate::store::{ActionClaim, Finished, PendingAction, Sabotage};

/// Sessions or actions claimed in one statement, at most.
const BATCH: u32 = 16;
/// Idle wait when nothing is due.
const IDLE: Duration = Duration::from_millis(10);
/// Back-off after a storage error, and the first retry of a failed action.
const RETRY_MS: u64 = 250;
/// The longest an action waits between attempts.
const RETRY_CAP_MS: u64 = 10_000;

/// When to try an action again after `attempts` attempts: exponential from [`RETRY_MS`] up to
/// [`RETRY_CAP_MS`], spread over half to one and a half of it, so that retries after a shared
/// outage (the shop down, Klarna throttling) do not come back together.
#[must_use]
pub fn spread(attempts: u32) -> u64 {
    let base = RETRY_MS
        .saturating_mul(1 << attempts.min(6))
        .min(RETRY_CAP_MS);
    let mut bytes = [0_u8; 2];
    let unit = if getrandom::fill(&mut bytes).is_ok() {
        f64::from(u16::from_le_bytes(bytes)) / f64::from(u16::MAX)
    } else {
        0.5
    };
    #[allow(
        clippy::cast_possible_truncation,
        clippy::cast_sign_loss,
        clippy::cast_precision_loss
    )]
    let spread = (base as f64 * (0.5 + unit)) as u64;
    spread.max(1)
}

/// Reads one process keeps in flight at most: enough that reads answered slowly (Klarna's
/// 2–5 s, or a timeout) hold only their own slot while the others go on, at the budget's pace.
const READS_IN_FLIGHT: usize = 64;
/// Actions one process performs at once at most.
const ACTIONS_IN_FLIGHT: usize = 32;

/// Work claimed and owned by one task: performed, then its outcome stored.
type Work = std::pin::Pin<Box<dyn Future<Output = Result<(), String>> + Send>>;

/// Claims work with `claim` (given the room left) and runs each piece on its own task, keeping
/// at most `limit` in flight, until `stop` says so: a slow piece holds its own slot, never the
/// next claim. Then it claims no more and lets what is in flight finish (each piece is bounded;
/// the process's drain deadline bounds the rest).
async fn pipeline<F: Future<Output = Result<Vec<Work>, String>>>(
    name: &'static str,
    stop: &tokio::sync::watch::Receiver<bool>,
    limit: usize,
    mut claim: impl FnMut(u32) -> F,
) {
    // A piece that panicked takes the loop down with it (its claim is let go as it unwinds):
    // the health check then reports the worker stopped, and the process is restarted.
    let report = |ended: Result<Result<(), String>, tokio::task::JoinError>| match ended {
        Ok(Ok(())) => {}
        Ok(Err(e)) => tracing::warn!(worker = name, error = %e, "outcome not stored"),
        Err(e) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
        Err(e) => tracing::error!(worker = name, error = %e, "task ended abnormally"),
    };
    let mut running: JoinSet<Result<(), String>> = JoinSet::new();
    while !*stop.borrow() {
        while let Some(ended) = running.try_join_next() {
            report(ended);
        }
        let room = limit.saturating_sub(running.len());
        let mut claimed = 0;
        if room > 0 {
            match claim(u32::try_from(room).unwrap_or(BATCH).min(BATCH)).await {
                Ok(work) => {
                    claimed = work.len();
                    for piece in work {
                        running.spawn(piece);
                    }
                }
                Err(e) => {
                    tracing::warn!(worker = name, error = %e, "claim failed");
                    tokio::time::sleep(Duration::from_millis(RETRY_MS)).await;
                    continue;
                }
            }
        }
        // Claim again at once while work is found and there is room; otherwise wait for a
        // slot, or for more to come due.
        if running.len() >= limit {
            if let Some(ended) = running.join_next().await {
                report(ended);
            }
        } else if claimed == 0 {
            tokio::select! {
                Some(ended) = running.join_next(), if !running.is_empty() => report(ended),
                () = tokio::time::sleep(IDLE) => {}
            }
        }
    }
    tracing::info!(worker = name, in_flight = running.len(), "stopped claiming");
    while let Some(ended) = running.join_next().await {
        report(ended);
    }
}

/// Reads due sessions until `stop`.
pub async fn poll(app: Arc<App>, stop: tokio::sync::watch::Receiver<bool>) {
    let _running = app.health.running("poller");
    pipeline("poller", &stop, READS_IN_FLIGHT, |room| {
        claim_reads(&app, room)
    })
    .await;
}

/// Claims up to `limit` due sessions: for each, a read of its own, stored as soon as it is
/// answered.
///
/// # Errors
/// The clock's or the store's.
pub async fn claim_reads(app: &Arc<App>, limit: u32) -> Result<Vec<Work>, String> {
    let now = app.clock.now().await?;
    let claim = app
        .store
        .claim_reads(now, limit)
        .await
        .map_err(|e| e.to_string())?;
    Ok(claim
        .into_each()
        .into_iter()
        .filter_map(|claim| {
            let id = claim.ids().first()?.clone();
            let app = Arc::clone(app);
            let span = tracing::info_span!("read", session = %id);
            let work: Work = Box::pin(
                async move {
                    let answer = app.klarna.read(&id).await;
                    tracing::debug!(answer = answer.kind(), "read");
                    let now = app.clock.now().await?;
                    let stored = app
                        .store
                        .finish_reads(&claim, vec![(id, answer)], now)
                        .await
                        .map_err(|e| e.to_string());
                    let stored = held_back(stored).await;
                    drop(claim);
                    stored
                }
                .instrument(span),
            );
            Some(work)
        })
        .collect())
}

/// Performs pending actions until `stop`.
pub async fn execute(app: Arc<App>, stop: tokio::sync::watch::Receiver<bool>) {
    let _running = app.health.running("executor");
    pipeline("executor", &stop, ACTIONS_IN_FLIGHT, |room| {
        claim_actions(&app, room)
    })
    .await;
}

/// Claims up to `limit` pending actions, the soonest deadline first: for each, a task that
/// performs it and stores what came of it as soon as it is known.
///
/// # Errors
/// The store's.
pub async fn claim_actions(app: &Arc<App>, limit: u32) -> Result<Vec<Work>, String> {
    let claim = app
        .store
        .claim_actions(limit)
        .await
        .map_err(|e| e.to_string())?;
    Ok(claim
        .into_each()
        .into_iter()
        .map(|(claim, action)| {
            let app = Arc::clone(app);
            let span = tracing::info_span!(
                "action",
                session = %action.session_id,
                action = %action.action_id
            );
            let work: Work = Box::pin(
                async move {
                    tracing::info!(
                        attempts = action.attempts,
                        lands_in_ms = action.lands_in_ms,
                        retired = action.retired,
                        "claimed"
                    );
                    // Bounded, so a hung call ends and is tried again.
                    let finished =
                        tokio::time::timeout(action_timeout(&app), perform(&app, &action))
                            .await
                            .unwrap_or(Finished::Retry(spread(action.attempts)));
                    match &finished {
                        Finished::Done(_, what) => tracing::info!(outcome = %what, "done"),
                        Finished::Retry(ms) => tracing::info!(retry_in_ms = ms, "not done yet"),
                    }
                    // Reported done at the time of the answer; the claim is held until then.
                    let now = app.clock.now().await?;
                    let stored = finish(&app, &claim, action.action_id, finished, now).await;
                    let stored = held_back(stored).await;
                    drop(claim);
                    stored
                }
                .instrument(span),
            );
            work
        })
        .collect())
}

/// Stores what became of one action (its claim stays in hand: the caller lets go of it).
async fn finish(
    app: &App,
    claim: &ActionClaim,
    action_id: String,
    finished: Finished,
    now: hpp_session::Timestamp,
) -> Result<(), String> {
    app.store
        .finish_actions(claim, vec![(action_id, finished)], now)
        .await
        .map_err(|e| e.to_string())
}

/// After an outcome could not be stored, waits a spread-out while before the piece ends and
/// lets go of its claim: until then this process does not claim that read or action again, so
/// one whose outcome cannot be stored (a database refusing it, a row it cannot load) is not
/// performed again and again at the loop's speed.
async fn held_back(stored: Result<(), String>) -> Result<(), String> {
    if stored.is_err() {
        tokio::time::sleep(Duration::from_millis(spread(3))).await;
    }
    stored
}

/// The longest one action may take: two calls to Klarna (a look and an order) and the shop's
/// timeout, and the budget's waits. Past it the action is given up and tried again.
fn action_timeout(app: &App) -> Duration {
    app.klarna
        .timeout()
        .saturating_mul(2)
        .saturating_add(crate::shop::SHOP_TIMEOUT)
        .saturating_add(Duration::from_secs(5))
}

/// How long an order may land at Klarna after its attempt was recorded: Klarna's timeout
/// (after which this client gave up on it) plus the landing margin. Recorded with the attempt,
/// so a process with other settings judges it by the attempting process's.
#[must_use]
pub fn landing_bound(app: &App) -> Duration {
    app.klarna
        .timeout()
        .saturating_add(app.order_landing_margin)
}

/// How long to wait until an earlier attempt can no longer land (`lands_in_ms` as claimed);
/// `None` once past.
#[must_use]
pub fn may_still_land(lands_in_ms: Option<i64>) -> Option<u64> {
    lands_in_ms
        .filter(|&ms| ms > 0)
        .map(|ms| u64::try_from(ms).unwrap_or(u64::MAX))
}

/// The most time an order may take between the instant its attempt is asked to be recorded and
/// the instant it leaves: past it (the process was frozen, or the database slow), it is not
/// sent, and the next attempt waits for the bound.
pub const SEND_SLACK: Duration = Duration::from_secs(1);

/// Whether the claim on `pending` is still this process's, recorded as an attempt (and when)
/// before it is performed: one taken over (this process was frozen) is left to its new owner.
async fn attempt(app: &App, pending: &PendingAction) -> bool {
    match app.store.attempt(pending, landing_bound(app)).await {
        Ok(true) => true,
        Ok(false) => {
            tracing::warn!("claim taken over by another process: not performed");
            false
        }
        Err(e) => {
            tracing::warn!(error = %e, "attempt not recorded: not performed");
            false
        }
    }
}

/// Places the order with `token`. An earlier attempt may have created the order, or may still:
/// first let it land (or never: Klarna's timeout plus the landing margin), then look at the
/// payment session before placing again.
async fn place_order(
    app: &App,
    pending: &PendingAction,
    token: &str,
    place_by: Option<hpp_session::Timestamp>,
) -> Finished {
    // Its turn at the money budget: the token that dies soonest first (at once when unknown).
    let deadline = place_by.map_or(0, crate::store::millis);
    let retry = Finished::Retry(spread(pending.attempts));
    let done = |what: &str| Finished::Done(Done::Kind(ActionKind::PlaceOrder), what.to_owned());
    if pending.attempts > 0 && app.sabotage != Sabotage::ResendBlindly {
        if app.sabotage != Sabotage::ResendInFlight
            && let Some(wait) = may_still_land(pending.lands_in_ms)
        {
            return Finished::Retry(wait.saturating_add(spread(0)));
        }
        match app
            .klarna
            .payment_session_ordered(&pending.payment_session_id, deadline)
            .await
        {
            Some(true) => return done("ordered by an earlier attempt"),
            Some(false) => {}
            None => return retry,
        }
    }
    // The budget first, then the attempt: its time is when the request leaves. The request
    // must end by Klarna's timeout counted from before the attempt was recorded, so it cannot
    // outlive the bound recorded with it (a freeze in between sends nothing).
    let permit = app.klarna.money(deadline).await;
    let asked = std::time::Instant::now();
    if !attempt(app, pending).await {
        return retry;
    }
    if asked.elapsed() > SEND_SLACK {
        tracing::warn!(
            ms = asked.elapsed().as_millis(),
            "the attempt took too long to record: the order is not sent (the next waits out the bound)"
        );
        return retry;
    }
    let deadline = asked + app.klarna.timeout();
    match app
        .klarna
        .create_order(permit, token, &pending.action_id, deadline)
        .await
    {
        OrderResult::Created(order_id) => done(&format!("order {order_id}")),
        OrderResult::Refused(status) => {
            tracing::error!(
                status,
                "Klarna refused the order: the token is dead or used"
            );
            metrics::counter!("hpp_orders_refused_total").increment(1);
            done(&format!("refused: {status}"))
        }
        OrderResult::NotAuthorized(status) => {
            tracing::error!(
                status,
                "Klarna refused this service's credentials for an order: fix KLARNA_USERNAME \
                 and KLARNA_PASSWORD before the token's hour ends (tried again meanwhile)"
            );
            metrics::counter!("hpp_orders_not_authorized_total").increment(1);
            retry
        }
        OrderResult::RateLimited | OrderResult::Ambiguous | OrderResult::NotSent => retry,
    }
}

/// Performs one action; what came of it.
pub async fn perform(app: &App, pending: &PendingAction) -> Finished {
    let retry = Finished::Retry(spread(pending.attempts));
    if pending.retired {
        // The tracker owes it no more: done, and nothing performed.
        let kind = pending
            .action_id
            .rsplit('/')
            .next()
            .and_then(ActionKind::from_name);
        if let Some(kind) = kind {
            return Finished::Done(Done::Kind(kind), "not performed: no longer owed".to_owned());
        }
    }
    let Ok(action) = serde_json::from_value::<Action>(pending.data.clone()) else {
        // Never written by this service: keep it pending, for a person to see.
        // Never its data: a place-order's carries the token.
        tracing::error!("an action this service cannot read");
        return Finished::Retry(60_000);
    };
    let key = &pending.action_id;
    let session = &pending.session_id;
    let kind = action.kind();
    let done = |what: &str| Finished::Done(Done::Kind(kind), what.to_owned());
    let shop = |ok: bool, what: &str| if ok { done(what) } else { retry.clone() };
    // Every action's attempt is recorded before it is performed, and only while the claim is
    // this process's.
    let attempt = || attempt(app, pending);
    match action {
        Action::PlaceOrder {
            authorization_token,
            place_by,
        } => place_order(app, pending, authorization_token.expose_secret(), place_by).await,
        Action::RecordOrder { order_id, .. } => {
            if !attempt().await {
                return retry;
            }
            let body = json!({"order_id": order_id.as_str()});
            let ok = app
                .shop
                .post(&format!("/shop/orders/{session}/record"), key, &body)
                .await;
            shop(ok, "recorded")
        }
        Action::ReviewCompletion { .. } => {
            if !attempt().await {
                return retry;
            }
            let ok = app
                .shop
                .post(&format!("/shop/reviews/{session}"), key, &json!({}))
                .await;
            shop(ok, "handed to a person")
        }
        Action::Release { reason } => {
            if !attempt().await {
                return retry;
            }
            let body = json!({"reason": reason.as_str()});
            let ok = app
                .shop
                .post(&format!("/shop/carts/{session}/release"), key, &body)
                .await;
            shop(ok, "released")
        }
        Action::Disable => {
            if !attempt().await {
                return retry;
            }
            // Klarna's answer is evidence: a 204 shows the session `DISABLED`.
            let answered = |answer, what: &str| Finished::Done(Done::Disable(answer), what.into());
            match app.klarna.disable(session).await {
                DisableResult::Disabled => answered(DisableAnswer::Disabled, "disabled"),
                DisableResult::AlreadyFinal => {
                    answered(DisableAnswer::AlreadyFinal, "already final")
                }
                DisableResult::NotFound => answered(DisableAnswer::NotFound, "expired"),
                DisableResult::Retry => retry,
            }
        }
        // A read is never stored; a kind this service does not know stays pending, for a
        // person to see.
        _ => Finished::Retry(60_000),
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicU32, Ordering};

    use super::*;

    /// The first piece ever claimed takes a minute, every other one a second: while it runs,
    /// the loop goes on claiming and finishing the rest (a loop that waited for each batch's
    /// slowest piece would finish one batch in the minute's first ten seconds). Asked to stop,
    /// it lets the slow one finish.
    #[tokio::test(start_paused = true)]
    async fn a_slow_piece_holds_only_its_own_slot_and_is_finished_at_stop() {
        let claimed = Arc::new(AtomicU32::new(0));
        let finished = Arc::new(AtomicU32::new(0));
        let (stop, stopping) = tokio::sync::watch::channel(false);
        let claim = {
            let (claimed, finished) = (Arc::clone(&claimed), Arc::clone(&finished));
            move |room: u32| {
                let (claimed, finished) = (Arc::clone(&claimed), Arc::clone(&finished));
                async move {
                    let work: Vec<Work> = (0..room.min(2))
                        .map(|_| {
                            let n = claimed.fetch_add(1, Ordering::SeqCst);
                            let finished = Arc::clone(&finished);
                            let piece: Work = Box::pin(async move {
                                let secs = if n == 0 { 60 } else { 1 };
                                tokio::time::sleep(Duration::from_secs(secs)).await;
                                finished.fetch_add(1, Ordering::SeqCst);
                                Ok(())
                            });
                            piece
                        })
                        .collect();
                    Ok::<_, String>(work)
                }
            }
        };
        let running = tokio::spawn({
            let stopping = stopping.clone();
            async move { pipeline("test", &stopping, 4, claim).await }
        });
        tokio::time::sleep(Duration::from_secs(10)).await;
        let in_ten_seconds = finished.load(Ordering::SeqCst);
        assert!(in_ten_seconds >= 20, "{in_ten_seconds} finished in 10 s");
        stop.send(true).expect("the loop listens");
        running.await.expect("the loop ends");
        // Everything claimed was finished, the minute-long piece included.
        assert_eq!(
            finished.load(Ordering::SeqCst),
            claimed.load(Ordering::SeqCst)
        );
    }
}
