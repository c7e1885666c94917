//! HTTP in: the checkout, Klarna's status callbacks, the consumer's redirects, and what a person
//! on call and an orchestrator ask (`/status`, `/healthz`, `/readyz`, `/metrics`).
//!
//! Bodies are limited to [`BODY_LIMIT`] (a callback is a few hundred bytes; the checkout takes
//! none): a larger one is answered 413 and never read.

use std::fmt::Write as _;
use std::sync::Arc;
use std::time::Instant;

use axum::Json;
use axum::Router;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use hpp_session::{SessionId, Tracker};
use serde_json::json;
use subtle::ConstantTimeEq as _;
use tracing::Instrument as _;

use crate::App;
use crate::error::ApiError;
use crate::observe::{self, CallbackOutcome};
use crate::store::NewSession;

/// The largest request body read: 64 KiB.
pub const BODY_LIMIT: usize = 64 * 1024;

/// The service's routes.
pub fn router(app: Arc<App>) -> Router {
    Router::new()
        .route("/checkout", post(checkout))
        .route(
            "/klarna/status/{session_id}/{secret}",
            post(status_callback),
        )
        .route("/klarna/return/{kind}/{session_id}", get(redirect))
        .route("/status", get(status))
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .layer(DefaultBodyLimit::max(BODY_LIMIT))
        .with_state(app)
}

/// A fresh callback secret: 128 random bits, hex.
fn secret() -> Result<String, ApiError> {
    let mut bytes = [0_u8; 16];
    getrandom::fill(&mut bytes).map_err(|_| ApiError::NoRandomness)?;
    Ok(bytes.iter().fold(String::new(), |mut s, b| {
        let _ = write!(s, "{b:02x}");
        s
    }))
}

/// Whether `headers` carry `Authorization: Bearer {expected}` (compared in constant time).
fn authorized(headers: &HeaderMap, expected: &str) -> bool {
    // The scheme is case-insensitive (RFC 9110, 11.1); the credential is not.
    let presented = headers
        .get(axum::http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split_once(' '))
        .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
        .map_or("", |(_, credential)| credential.trim());
    !expected.is_empty() && bool::from(presented.as_bytes().ct_eq(expected.as_bytes()))
}

/// `POST /checkout` (`Authorization: Bearer <HPP_CHECKOUT_TOKEN>`): creates the payment
/// session and the HPP session at Klarna, stores the session with its tracker, and answers 201
/// with the consumer's `redirect_url`. The session is stored before the consumer can be sent to
/// the page; when it cannot be, the HPP session just created is disabled, so that no page is
/// left open that no one tracks.
async fn checkout(State(app): State<Arc<App>>, headers: HeaderMap) -> Result<Response, ApiError> {
    if !authorized(&headers, &app.checkout_token) {
        return Err(ApiError::Unauthorized);
    }
    let secret = secret()?;
    let payment_session_id = app.klarna.create_payment_session(10_000).await?;
    let base = &app.public_url;
    let back = |kind: &str| format!("{base}/klarna/return/{kind}/{{{{session_id}}}}");
    let urls = json!({
        "status_update": format!("{base}/klarna/status/{{{{session_id}}}}/{secret}"),
        // The session id only: a token in a URL lands in every access log and proxy on the
        // way, and the authenticated read carries it.
        "success": back("success"),
        "failure": back("failure"),
        "back": back("back"),
        "cancel": back("cancel"),
        "error": back("error"),
    });
    let (session_id, redirect_url) = app.klarna.create_session(&payment_session_id, urls).await?;
    let span = tracing::info_span!("checkout", session = %session_id);
    async {
        let stored = store_new(&app, &session_id, secret, payment_session_id).await;
        if let Err(e) = stored {
            // Not tracked: close the page rather than leave it open to a payment no one sees,
            // in a task of its own (the consumer's connection may go), until Klarna answers.
            tracing::warn!(error = %e, "checkout not stored: disabling the HPP session");
            metrics::counter!("hpp_checkouts_total", "result" => "not_stored").increment(1);
            tokio::spawn(disable_orphan(Arc::clone(&app), session_id.clone()).in_current_span());
            return Err(e);
        }
        metrics::counter!("hpp_checkouts_total", "result" => "created").increment(1);
        tracing::info!("checked out");
        let body = json!({"session_id": session_id, "redirect_url": redirect_url});
        Ok((StatusCode::CREATED, Json(body)).into_response())
    }
    .instrument(span)
    .await
}

/// Disables an HPP session no one tracks, trying for about an hour (the page cannot be paid
/// once Klarna answers 204, 400 means it was paid already: a person must look).
async fn disable_orphan(app: Arc<App>, session_id: String) {
    use crate::klarna::DisableResult;
    for attempt in 0..40_u32 {
        match app.klarna.disable(&session_id).await {
            DisableResult::Disabled | DisableResult::NotFound => {
                tracing::info!("untracked HPP session disabled");
                return;
            }
            DisableResult::AlreadyFinal => {
                tracing::error!(
                    "an untracked HPP session is final already (perhaps paid): a person must look"
                );
                metrics::counter!("hpp_orphans_total", "result" => "final").increment(1);
                return;
            }
            DisableResult::Retry => {
                let wait = crate::worker::spread(attempt).max(1_000);
                tokio::time::sleep(std::time::Duration::from_millis(wait)).await;
            }
        }
    }
    tracing::error!("an untracked HPP session could not be disabled: a person must disable it");
    metrics::counter!("hpp_orphans_total", "result" => "open").increment(1);
}

/// Stores a session Klarna just created.
async fn store_new(
    app: &App,
    session_id: &str,
    secret: String,
    payment_session_id: String,
) -> Result<(), ApiError> {
    let id = SessionId::new(session_id).map_err(|_| ApiError::UnusableSessionId)?;
    let now = app.clock.now().await.map_err(ApiError::Clock)?;
    let tracker = Tracker::created(id, now);
    let next = tracker.next_read(&app.tracker, now);
    let new = NewSession {
        session_id: session_id.to_owned(),
        secret,
        payment_session_id,
        tracker,
        next,
    };
    app.store.insert(new).await?;
    Ok(())
}

/// `POST /klarna/status/{session_id}/{secret}`: 200 when observed or refused for good (a
/// retry would not help), 404 for a session not stored (yet: Klarna calls again), 503 when
/// the database failed (Klarna calls again). Never waits on a read or an action in flight:
/// those hold no lock.
async fn status_callback(
    State(app): State<Arc<App>>,
    Path((session_id, presented)): Path<(String, String)>,
    body: Bytes,
) -> Result<Response, ApiError> {
    let started = Instant::now();
    let span = tracing::info_span!("callback", session = %session_id);
    let answer = async {
        let now = app.clock.now().await.map_err(ApiError::Clock)?;
        let config = app.tracker;
        let url_session = session_id.clone();
        let observed = app
            .store
            .observe(&session_id, now, move |row| {
                observe::callback(
                    &mut row.tracker,
                    &config,
                    &url_session,
                    &row.secret,
                    &presented,
                    &body,
                    now,
                )
            })
            .await?;
        match observed {
            Some(CallbackOutcome::Observed { verified }) => {
                tracing::info!(verified, "callback observed");
                Ok(StatusCode::OK.into_response())
            }
            Some(CallbackOutcome::Refused(why)) => {
                tracing::info!(why = %why, "callback refused");
                Ok(StatusCode::OK.into_response())
            }
            None => Err(ApiError::NotFound("no such session")),
        }
    }
    .instrument(span)
    .await;
    metrics::histogram!("hpp_callback_seconds").record(started.elapsed().as_secs_f64());
    answer
}

/// `GET /klarna/return/{kind}/{session_id}`: the consumer's browser, back from the page. A
/// hint: it may make a read urgent.
async fn redirect(
    State(app): State<Arc<App>>,
    Path((kind, session_id)): Path<(String, String)>,
) -> Result<Response, ApiError> {
    let kind = observe::redirect_kind(&kind).ok_or(ApiError::NotFound("no such redirect"))?;
    let now = app.clock.now().await.map_err(ApiError::Clock)?;
    let id = session_id.clone();
    let observed = app
        .store
        .observe(&session_id, now, move |row| {
            ((), observe::redirect(&mut row.tracker, &id, kind, now))
        })
        .instrument(tracing::info_span!("redirect", session = %session_id))
        .await?;
    match observed {
        Some(()) => Ok("Thank you: your order is being confirmed.".into_response()),
        None => Err(ApiError::NotFound("no such session")),
    }
}

/// `GET /status`: sessions stored and actions pending.
async fn status(State(app): State<Arc<App>>) -> Result<Response, ApiError> {
    let (sessions, pending) = app.store.counts().await?;
    Ok(Json(json!({"sessions": sessions, "pending_actions": pending})).into_response())
}

/// `GET /healthz`: 200 while the process serves and its poller and executor run; 503 when one
/// of them stopped without being asked (restart the process).
async fn healthz(State(app): State<Arc<App>>) -> Response {
    match app.health.stopped_worker() {
        None => "ok".into_response(),
        Some(worker) => (
            StatusCode::SERVICE_UNAVAILABLE,
            format!("the {worker} stopped"),
        )
            .into_response(),
    }
}

/// `GET /readyz`: 200 when the database answers and its schema is this version's; 503 with
/// what is wrong otherwise, and while the process drains.
async fn readyz(State(app): State<Arc<App>>) -> Result<&'static str, ApiError> {
    if app.health.draining() {
        return Err(ApiError::Draining);
    }
    app.store.ready().await.map_err(ApiError::NotReady)?;
    Ok("ready")
}

/// `GET /metrics`: Prometheus' text format.
async fn metrics(State(app): State<Arc<App>>) -> Response {
    match &app.metrics {
        Some(handle) => (
            [(
                axum::http::header::CONTENT_TYPE,
                "text/plain; version=0.0.4; charset=utf-8",
            )],
            crate::metrics::render(&app, handle).await,
        )
            .into_response(),
        None => StatusCode::NOT_FOUND.into_response(),
    }
}
