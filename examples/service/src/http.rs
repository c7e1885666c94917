//! HTTP in: the checkout, Klarna's status callbacks, the consumer's redirects.

use std::fmt::Write as _;
use std::sync::Arc;

use axum::Json;
use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use hpp_session::{SessionId, Tracker};
use serde_json::json;

use crate::App;
use crate::observe::{self, CallbackOutcome};
use crate::store::NewSession;

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
        .with_state(app)
}

fn failed(e: impl std::fmt::Display) -> Response {
    (StatusCode::INTERNAL_SERVER_ERROR, e.to_string()).into_response()
}

/// A fresh callback secret: 128 random bits, hex.
fn secret() -> Result<String, getrandom::Error> {
    let mut bytes = [0_u8; 16];
    getrandom::fill(&mut bytes)?;
    Ok(bytes.iter().fold(String::new(), |mut s, b| {
        let _ = write!(s, "{b:02x}");
        s
    }))
}

/// `POST /checkout`: creates the payment session and the HPP session at Klarna, stores the
/// session with its tracker, and answers 201 with the consumer's `redirect_url`. The session
/// is stored before the consumer can be sent to the page.
async fn checkout(State(app): State<Arc<App>>) -> Response {
    let Ok(secret) = secret() else {
        return failed("no randomness");
    };
    let payment_session_id = match app.klarna.create_payment_session(10_000).await {
        Ok(id) => id,
        Err(e) => return (StatusCode::BAD_GATEWAY, e).into_response(),
    };
    let base = &app.public_url;
    let back = |kind: &str| format!("{base}/klarna/return/{kind}/{{{{session_id}}}}");
    let urls = json!({
        "status_update": format!("{base}/klarna/status/{{{{session_id}}}}/{secret}"),
        // No `{{authorization_token}}`: a token in a URL lands in every access log and proxy
        // on the way, and the authenticated read carries it.
        "success": back("success"),
        "failure": back("failure"),
        "back": back("back"),
        "cancel": back("cancel"),
        "error": back("error"),
    });
    let (session_id, redirect_url) =
        match app.klarna.create_session(&payment_session_id, urls).await {
            Ok(created) => created,
            Err(e) => return (StatusCode::BAD_GATEWAY, e).into_response(),
        };
    let Ok(id) = SessionId::new(&session_id) else {
        return (StatusCode::BAD_GATEWAY, "Klarna's session id is unusable").into_response();
    };
    let now = match app.clock.now().await {
        Ok(now) => now,
        Err(e) => return failed(e),
    };
    let tracker = Tracker::created(id, now);
    let next = tracker.next_read(&app.tracker, now);
    let new = NewSession {
        session_id: session_id.clone(),
        secret,
        payment_session_id,
        tracker,
        next,
    };
    if let Err(e) = app.store.insert(new).await {
        return failed(e);
    }
    let body = json!({"session_id": session_id, "redirect_url": redirect_url});
    (StatusCode::CREATED, Json(body)).into_response()
}

/// `POST /klarna/status/{session_id}/{secret}`: 200 when observed or refused for good (a
/// retry would not help), 404 for a session not stored (yet: Klarna calls again), 500 when
/// the database failed (Klarna calls again).
async fn status_callback(
    State(app): State<Arc<App>>,
    Path((session_id, presented)): Path<(String, String)>,
    body: Bytes,
) -> Response {
    let now = match app.clock.now().await {
        Ok(now) => now,
        Err(e) => return failed(e),
    };
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
        .await;
    match observed {
        Ok(Some(CallbackOutcome::Observed { .. } | CallbackOutcome::Refused(_))) => {
            StatusCode::OK.into_response()
        }
        Ok(None) => StatusCode::NOT_FOUND.into_response(),
        Err(e) => failed(e),
    }
}

/// `GET /klarna/return/{kind}/{session_id}`: the consumer's browser, back from the page. A
/// hint: it may make a read urgent.
async fn redirect(
    State(app): State<Arc<App>>,
    Path((kind, session_id)): Path<(String, String)>,
) -> Response {
    let Some(kind) = observe::redirect_kind(&kind) else {
        return StatusCode::NOT_FOUND.into_response();
    };
    let now = match app.clock.now().await {
        Ok(now) => now,
        Err(e) => return failed(e),
    };
    let id = session_id.clone();
    let observed = app
        .store
        .observe(&session_id, now, move |row| {
            ((), observe::redirect(&mut row.tracker, &id, kind, now))
        })
        .await;
    match observed {
        Ok(Some(())) => "Thank you: your order is being confirmed.".into_response(),
        Ok(None) => StatusCode::NOT_FOUND.into_response(),
        Err(e) => failed(e),
    }
}

/// `GET /status`: sessions stored and actions pending.
async fn status(State(app): State<Arc<App>>) -> Response {
    match app.store.counts().await {
        Ok((sessions, pending)) => {
            Json(json!({"sessions": sessions, "pending_actions": pending})).into_response()
        }
        Err(e) => failed(e),
    }
}
