//! What an HTTP handler answers when it fails: one typed error, each case with its status and a
//! message that says what failed (never a secret: no token, no callback secret, no body).

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::json;

use crate::klarna::KlarnaError;
use crate::store::StoreError;

/// `e` with each of its causes, `: `-separated: crates such as `tokio_postgres` and `reqwest`
/// display only the outermost (`db error`, `error sending request`).
#[must_use]
pub fn with_causes(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut cause = e.source();
    while let Some(c) = cause {
        text.push_str(": ");
        text.push_str(&c.to_string());
        cause = c.source();
    }
    text
}

/// A handler's failure.
#[derive(Debug)]
pub enum ApiError {
    /// `POST /checkout` without the configured credential (`Authorization: Bearer …`): 401.
    Unauthorized,
    /// Klarna failed or refused: 502 (the checkout may be tried again).
    Klarna(KlarnaError),
    /// Klarna gave a session id this service cannot use: 502.
    UnusableSessionId,
    /// The database failed: 503 (Klarna calls a callback again; a checkout may be tried again).
    /// The caller is told only that storage failed; the log has the cause.
    Storage(StoreError),
    /// `/readyz`: the database does not answer or its schema is another version's: 503, with
    /// the cause (an operations route, for the orchestrator and the person on call).
    NotReady(StoreError),
    /// The clock could not be read (the double's, in tests): 503.
    Clock(String),
    /// The system's randomness failed (no callback secret): 500.
    NoRandomness,
    /// No such session, or no such route: 404.
    NotFound(&'static str),
    /// The process is draining (SIGTERM): 503.
    Draining,
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Unauthorized => f.write_str(
                "the checkout needs the configured credential: Authorization: Bearer <HPP_CHECKOUT_TOKEN>",
            ),
            Self::Klarna(e) => e.fmt(f),
            Self::UnusableSessionId => f.write_str("Klarna: the HPP session id is unusable"),
            Self::Storage(e) | Self::NotReady(e) => e.fmt(f),
            Self::Clock(e) => write!(f, "clock: {e}"),
            Self::NoRandomness => f.write_str("no randomness for a callback secret"),
            Self::NotFound(what) => write!(f, "not found: {what}"),
            Self::Draining => f.write_str("draining: this process is stopping"),
        }
    }
}

impl std::error::Error for ApiError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Self::Klarna(e) => Some(e),
            Self::Storage(e) | Self::NotReady(e) => Some(e),
            _ => None,
        }
    }
}

impl ApiError {
    /// Its HTTP status.
    #[must_use]
    pub const fn status(&self) -> StatusCode {
        match self {
            Self::Unauthorized => StatusCode::UNAUTHORIZED,
            Self::Klarna(_) | Self::UnusableSessionId => StatusCode::BAD_GATEWAY,
            Self::Storage(_) | Self::NotReady(_) | Self::Clock(_) | Self::Draining => {
                StatusCode::SERVICE_UNAVAILABLE
            }
            Self::NoRandomness => StatusCode::INTERNAL_SERVER_ERROR,
            Self::NotFound(_) => StatusCode::NOT_FOUND,
        }
    }
}

impl ApiError {
    /// What the caller is told: the whole message, but for a storage or clock failure only what
    /// failed (the database's own text names tables, versions and hosts; it goes to the log,
    /// and callers of the callback and redirect routes are anyone on the internet).
    #[must_use]
    pub fn public_message(&self) -> String {
        match self {
            Self::Storage(_) => {
                "storage unavailable: try again (the cause is in the service's log)".to_owned()
            }
            Self::Clock(_) => {
                "clock unavailable: try again (the cause is in the service's log)".to_owned()
            }
            _ => self.to_string(),
        }
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        Self::Storage(e)
    }
}

impl From<KlarnaError> for ApiError {
    fn from(e: KlarnaError) -> Self {
        Self::Klarna(e)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = self.status();
        if status.is_server_error() {
            tracing::warn!(status = status.as_u16(), error = %self, "request failed");
        }
        let mut response = (status, Json(json!({"error": self.public_message()}))).into_response();
        if matches!(self, Self::Unauthorized) {
            response.headers_mut().insert(
                axum::http::header::WWW_AUTHENTICATE,
                axum::http::HeaderValue::from_static("Bearer"),
            );
        }
        response
    }
}
