//! The poller and the executor: loops that claim work from the store, do it over HTTP, and
//! store what came of it. Either may die at any point; what was not committed is claimed again.

use std::sync::Arc;
use std::time::Duration;

use hpp_session::{Action, ActionKind, DisableAnswer};
use serde_json::json;
use tokio::task::JoinSet;

use crate::App;
use crate::klarna::{DisableResult, OrderResult};
use crate::observe::Done;
use crate::store::{Finished, PendingAction, Sabotage};

/// Sessions or actions claimed at once.
const BATCH: u32 = 16;
/// Idle wait when nothing is due.
const IDLE: Duration = Duration::from_millis(10);
/// Back-off after a failed action or a storage error.
const RETRY_MS: u64 = 250;

/// Runs `once` forever: at once again while it found work, after a short wait when it found
/// none, after a back-off when it failed.
async fn forever<F: Future<Output = Result<usize, String>>>(
    name: &str,
    mut once: impl FnMut() -> F,
) {
    loop {
        match once().await {
            Ok(0) => tokio::time::sleep(IDLE).await,
            Ok(_) => {}
            Err(e) => {
                eprintln!("{name}: {e}");
                tokio::time::sleep(Duration::from_millis(RETRY_MS)).await;
            }
        }
    }
}

/// Reads due sessions forever.
pub async fn poll(app: Arc<App>) {
    forever("poller", || poll_once(&app)).await;
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
        reads.spawn(async move {
            let answer = app.klarna.read(&id).await;
            (id, answer)
        });
    }
    let answers = reads.join_all().await;
    let count = answers.len();
    // Observed at the time of the answers; each read counts from when it started.
    let started = now;
    let now = app.clock.now().await?;
    app.store
        .finish_reads(claim, answers, started, now)
        .await
        .map_err(|e| e.to_string())?;
    Ok(count)
}

/// Performs pending actions forever.
pub async fn execute(app: Arc<App>) {
    forever("executor", || execute_once(&app)).await;
}

/// Claims and performs one batch of pending actions; how many.
///
/// # Errors
/// The store's.
pub async fn execute_once(app: &Arc<App>) -> Result<usize, String> {
    let claim = app
        .store
        .claim_actions(BATCH)
        .await
        .map_err(|e| e.to_string())?;
    let mut performing = JoinSet::new();
    for action in claim.actions() {
        let (app, action) = (Arc::clone(app), action.clone());
        performing.spawn(async move {
            let finished = perform(&app, &action).await;
            (action.action_id, finished)
        });
    }
    let finished = performing.join_all().await;
    let count = finished.len();
    // Reported done at the time of the answers.
    let now = app.clock.now().await?;
    app.store
        .finish_actions(claim, finished, now)
        .await
        .map_err(|e| e.to_string())?;
    Ok(count)
}

/// Performs one action; what came of it.
pub async fn perform(app: &App, pending: &PendingAction) -> Finished {
    let retry = Finished::Retry(RETRY_MS);
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
        return Finished::Retry(60_000);
    };
    let key = &pending.action_id;
    let session = &pending.session_id;
    let kind = action.kind();
    let done = |what: &str| Finished::Done(Done::Kind(kind), what.to_owned());
    let shop = |ok: bool, what: &str| {
        if ok {
            done(what)
        } else {
            Finished::Retry(RETRY_MS)
        }
    };
    match action {
        Action::PlaceOrder {
            authorization_token,
            ..
        } => {
            if pending.attempts > 0 && app.sabotage != Sabotage::ResendBlindly {
                // An earlier attempt may have created the order: look before placing again.
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
            if app.store.attempt(key).await.is_err() {
                return retry;
            }
            match app
                .klarna
                .create_order(authorization_token.expose_secret(), key)
                .await
            {
                OrderResult::Created(order_id) => done(&format!("order {order_id}")),
                OrderResult::Refused(status) => done(&format!("refused: {status}")),
                OrderResult::RateLimited | OrderResult::Ambiguous => retry,
            }
        }
        Action::RecordOrder { order_id, .. } => {
            let body = json!({"order_id": order_id.as_str()});
            let ok = app
                .shop
                .post(&format!("/shop/orders/{session}/record"), key, &body)
                .await;
            shop(ok, "recorded")
        }
        Action::ReviewCompletion { .. } => {
            let ok = app
                .shop
                .post(&format!("/shop/reviews/{session}"), key, &json!({}))
                .await;
            shop(ok, "handed to a person")
        }
        Action::Release { reason } => {
            let body = json!({"reason": reason.as_str()});
            let ok = app
                .shop
                .post(&format!("/shop/carts/{session}/release"), key, &body)
                .await;
            shop(ok, "released")
        }
        Action::Disable => {
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
