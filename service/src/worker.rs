//! The poller and the executor: loops that claim work from the store, do it over HTTP with no
//! transaction open, and store what came of it. Either may die at any point; what was not
//! committed is claimed again. Asked to stop, each finishes the batch in hand and claims no
//! more.

use std::sync::Arc;
use std::time::Duration;

use hpp_session::{Action, ActionKind, DisableAnswer};
use serde_json::json;
use tokio::task::JoinSet;
use tracing::Instrument as _;

use crate::App;
use crate::klarna::{Call, DisableResult, OrderResult};
use crate::observe::Done;
use crate::store::{Finished, PendingAction, Sabotage};

/// Sessions or actions claimed at once.
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

/// Runs `once` until `stop` says so (it is asked between batches, never in one): at once again
/// while it found work, after a short wait when it found none, after a back-off when it failed.
async fn forever<F: Future<Output = Result<usize, String>>>(
    name: &'static str,
    stop: &tokio::sync::watch::Receiver<bool>,
    mut once: impl FnMut() -> F,
) {
    while !*stop.borrow() {
        match once().await {
            Ok(0) => tokio::time::sleep(IDLE).await,
            Ok(_) => {}
            Err(e) => {
                tracing::warn!(worker = name, error = %e, "batch failed");
                tokio::time::sleep(Duration::from_millis(RETRY_MS)).await;
            }
        }
    }
    tracing::info!(worker = name, "stopped claiming");
}

/// Reads due sessions until `stop`.
pub async fn poll(app: Arc<App>, stop: tokio::sync::watch::Receiver<bool>) {
    let _running = app.health.running("poller");
    forever("poller", &stop, || poll_once(&app)).await;
}

/// Claims and reads one batch of due sessions; how many.
///
/// # Errors
/// The clock's or the store's.
pub async fn poll_once(app: &Arc<App>) -> Result<usize, String> {
    let now = app.clock.now().await?;
    let claim = app
        .store
        .claim_reads(now, BATCH)
        .await
        .map_err(|e| e.to_string())?;
    let mut reads = JoinSet::new();
    for id in claim.ids() {
        let (app, id) = (Arc::clone(app), id.clone());
        let span = tracing::info_span!("read", session = %id);
        reads.spawn(
            async move {
                let answer = app.klarna.read(&id).await;
                tracing::debug!(answer = answer.kind(), "read");
                (id, answer)
            }
            .instrument(span),
        );
    }
    let answers = reads.join_all().await;
    let count = answers.len();
    let now = app.clock.now().await?;
    app.store
        .finish_reads(claim, answers, now)
        .await
        .map_err(|e| e.to_string())?;
    Ok(count)
}

/// Performs pending actions until `stop`.
pub async fn execute(app: Arc<App>, stop: tokio::sync::watch::Receiver<bool>) {
    let _running = app.health.running("executor");
    forever("executor", &stop, || execute_once(&app)).await;
}

/// Claims and performs one batch of pending actions; how many.
///
/// # Errors
/// The store's.
pub async fn execute_once(app: &Arc<App>) -> Result<usize, String> {
    let claim = Arc::new(
        app.store
            .claim_actions(BATCH)
            .await
            .map_err(|e| e.to_string())?,
    );
    let mut performing = JoinSet::new();
    for action in claim.actions() {
        let (app, action, claim) = (Arc::clone(app), action.clone(), Arc::clone(&claim));
        let span = tracing::info_span!(
            "action",
            session = %action.session_id,
            action = %action.action_id
        );
        performing.spawn(
            async move {
                tracing::info!(
                    attempts = action.attempts,
                    lands_in_ms = action.lands_in_ms,
                    retired = action.retired,
                    "claimed"
                );
                // Bounded, so one slow action never holds the others; each is stored as soon
                // as it is known.
                let finished = tokio::time::timeout(action_timeout(&app), perform(&app, &action))
                    .await
                    .unwrap_or(Finished::Retry(spread(action.attempts)));
                match &finished {
                    Finished::Done(_, what) => tracing::info!(outcome = %what, "done"),
                    Finished::Retry(ms) => tracing::info!(retry_in_ms = ms, "not done yet"),
                }
                // Reported done at the time of the answer.
                let now = app.clock.now().await?;
                app.store
                    .finish_action(&claim, action.action_id, finished, now)
                    .await
                    .map_err(|e| e.to_string())
            }
            .instrument(span),
        );
    }
    let results = performing.join_all().await;
    let count = results.len();
    let failed: Vec<String> = results.into_iter().filter_map(Result::err).collect();
    if let Ok(claim) = Arc::try_unwrap(claim) {
        app.store
            .finish_actions(claim, Vec::new(), app.clock.now().await?)
            .await
            .map_err(|e| e.to_string())?;
    }
    match failed.first() {
        Some(e) => Err(format!(
            "{} of {count} outcomes not stored: {e}",
            failed.len()
        )),
        None => Ok(count),
    }
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
async fn place_order(app: &App, pending: &PendingAction, token: &str) -> Finished {
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
            .payment_session_ordered(&pending.payment_session_id)
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
    let permit = app.klarna.budget().take(Call::Money).await;
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
            ..
        } => place_order(app, pending, authorization_token.expose_secret()).await,
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
