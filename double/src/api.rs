//! Klarna's API at Klarna's paths: HPP sessions (create, read, disable), Klarna Payments
//! sessions (create, read) and create-order. HTTP Basic credentials on every call, the rate
//! limiter on every call, status codes and body shapes as Klarna documents them.

use std::sync::Arc;
use std::time::Duration;

use axum::Json;
use axum::extract::{Path, Request, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use hpp_session::DisableAnswer;
use serde::Deserialize;
use serde_json::json;

use crate::Double;
use crate::world::{MerchantUrls, OrderAnswer, PaymentSession};
use hpp_sim::limiter::Admission;

/// Which bucket and counter a request belongs to: each create call has a bucket of its own;
/// reads, disables and create-order share "other operations"
/// (<https://docs.klarna.com/api/#rate-limiting>).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Call {
    CreatePaymentSession,
    CreateHppSession,
    Read,
    Disable,
    Order,
    CancelAuthorization,
    PaymentRead,
}

impl Call {
    /// The Klarna call a request is, by method and path; `None` for the double's own routes
    /// (the shop, the admin, the hosted page).
    fn of(method: &Method, path: &str) -> Option<Self> {
        let segments: Vec<&str> = path.trim_matches('/').split('/').collect();
        Some(match (method.as_str(), segments.as_slice()) {
            ("POST", ["payments", "v1", "sessions"]) => Self::CreatePaymentSession,
            ("GET", ["payments", "v1", "sessions", _]) => Self::PaymentRead,
            ("POST", ["payments", "v1", "authorizations", _, "order"]) => Self::Order,
            ("DELETE", ["payments", "v1", "authorizations", _]) => Self::CancelAuthorization,
            ("POST", ["hpp", "v1", "sessions"]) => Self::CreateHppSession,
            ("GET", ["hpp", "v1", "sessions", _]) => Self::Read,
            ("DELETE", ["hpp", "v1", "sessions", _]) => Self::Disable,
            _ => return None,
        })
    }
}

/// Klarna's error body.
fn error(status: StatusCode, code: &str, message: &str) -> Response {
    let body = json!({
        "error_code": code,
        "error_messages": [message],
        "correlation_id": "double",
    });
    (status, Json(body)).into_response()
}

/// Klarna's gate on each of its calls: HTTP Basic credentials (401), then the call's bucket of
/// the rate limiter (429). Every answer to a call that passed the credentials carries
/// `X-Ratelimit-Limit`, `X-Ratelimit-Remaining` and `X-Ratelimit-Reset`, as Klarna's do, not
/// only a 429.
pub(crate) async fn gate(
    State(double): State<Arc<Double>>,
    request: Request,
    next: Next,
) -> Response {
    let Some(call) = Call::of(request.method(), request.uri().path()) else {
        return next.run(request).await;
    };
    let merchant = request
        .headers()
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Basic "))
        .and_then(|b| base64::engine::general_purpose::STANDARD.decode(b).ok())
        .and_then(|b| String::from_utf8(b).ok())
        .and_then(|pair| {
            let (user, password) = pair.split_once(':')?;
            (user == double.config.username && password == double.config.password)
                .then(|| user.to_owned())
        });
    let Some(merchant) = merchant else {
        return error(StatusCode::UNAUTHORIZED, "UNAUTHORIZED", "Bad credentials");
    };
    let verdict = double.limiter_of(call).lock().check(&merchant);
    let mut response = if verdict.allowed {
        next.run(request).await
    } else {
        let mut world = double.world.lock();
        let counter = &mut world.over_limit;
        match call {
            Call::CreatePaymentSession | Call::CreateHppSession => counter.creates += 1,
            Call::Read => counter.reads += 1,
            Call::Disable => counter.disables += 1,
            Call::Order | Call::CancelAuthorization => counter.orders += 1,
            Call::PaymentRead => counter.payment_reads += 1,
        }
        error(
            StatusCode::TOO_MANY_REQUESTS,
            "RATE_LIMITED",
            "Too many requests",
        )
    };
    // A 429 the handler made (another client of the merchant filled the window) says so itself.
    if !response.headers().contains_key("x-ratelimit-limit") {
        rate_headers(response.headers_mut(), verdict);
    }
    response
}

/// Klarna's form: `X-Ratelimit-Limit: 50, 50;w=1` (the limit, then the limit with its window in
/// seconds), `X-Ratelimit-Remaining: 49`, `X-Ratelimit-Reset: 1` (seconds, rounded up).
fn rate_headers(headers: &mut HeaderMap, v: Admission) {
    let limit = format!("{0}, {0};w=1", v.limit);
    if let Ok(limit) = HeaderValue::from_str(&limit) {
        headers.insert("x-ratelimit-limit", limit);
    }
    headers.insert("x-ratelimit-remaining", HeaderValue::from(v.remaining));
    headers.insert(
        "x-ratelimit-reset",
        HeaderValue::from(v.reset_ms.div_ceil(1_000)),
    );
}

/// `POST /payments/v1/sessions`: a Klarna Payments session (the order lines are not checked).
pub(crate) async fn create_payment_session(State(double): State<Arc<Double>>) -> Response {
    let id = double.uuid();
    let now = double.clock.now();
    double
        .world
        .lock()
        .payment_sessions
        .insert(id.clone(), PaymentSession::new(now));
    Json(json!({
        "session_id": id,
        "client_token": format!("double-client-token-{id}"),
        "payment_method_categories": [{"identifier": "pay_later", "name": "Pay later."}],
    }))
    .into_response()
}

/// `GET /payments/v1/sessions/{id}`: `status` is `complete` once an order was created from it
/// (by any of its HPP sessions); 404 once it expired.
pub(crate) async fn read_payment_session(
    State(double): State<Arc<Double>>,
    Path(id): Path<String>,
) -> Response {
    let now = double.clock.now();
    let world = double.world.lock();
    if world
        .payment_sessions
        .get(&id)
        .is_none_or(|p| p.expired(now))
    {
        return error(StatusCode::NOT_FOUND, "NOT_FOUND", "Session not found");
    }
    let status = if world.payment_ordered(&id, now) {
        "complete"
    } else {
        "incomplete"
    };
    Json(json!({ "status": status })).into_response()
}

/// The body of `POST /hpp/v1/sessions`.
#[derive(Debug, Deserialize)]
pub(crate) struct CreateHpp {
    payment_session_url: String,
    #[serde(default)]
    merchant_urls: MerchantUrls,
}

/// `POST /hpp/v1/sessions`: 201 with the session's URLs; a simulated consumer takes it from here.
pub(crate) async fn create_session(
    State(double): State<Arc<Double>>,
    body: Result<Json<CreateHpp>, axum::extract::rejection::JsonRejection>,
) -> Response {
    let Ok(Json(body)) = body else {
        return error(StatusCode::BAD_REQUEST, "BAD_VALUE", "Invalid request body");
    };
    let Some(payment_session_id) = body
        .payment_session_url
        .rsplit('/')
        .next()
        .map(str::to_owned)
    else {
        return error(StatusCode::BAD_REQUEST, "BAD_VALUE", "payment_session_url");
    };
    let created = double.start_consumer(&payment_session_id, body.merchant_urls);
    let Some((session_id, expires_at)) = created else {
        return error(
            StatusCode::BAD_REQUEST,
            "BAD_VALUE",
            "payment_session_url: unknown, closed, or expired or in its last hour (its HPP sessions expire an hour before it)",
        );
    };
    let base = &double.base_url;
    let body = json!({
        "session_id": session_id,
        "session_url": format!("{base}/hpp/v1/sessions/{session_id}"),
        "redirect_url": format!("{base}/hpp/{session_id}"),
        "qr_code_url": format!("{base}/hpp/{session_id}/qr"),
        "distribution_url": format!("{base}/hpp/v1/sessions/{session_id}/distribution"),
        "distribution_module": {"token": session_id},
        "expires_at": double.stamp(expires_at),
    });
    (StatusCode::CREATED, Json(body)).into_response()
}

/// `GET /hpp/{id}`: the consumer's browser opens the payment page at `redirect_url`; the
/// simulated consumer takes over.
pub(crate) async fn open_page(
    State(double): State<Arc<Double>>,
    Path(id): Path<String>,
) -> Response {
    if double.open_page(&id) {
        "Klarna double: a simulated consumer is on this page.".into_response()
    } else {
        error(StatusCode::NOT_FOUND, "NOT_FOUND", "Session not found")
    }
}

/// `GET /hpp/v1/sessions/{id}`: the session as of the double's clock; 404 from `expires_at`;
/// a configured share of 500s.
pub(crate) async fn read_session(
    State(double): State<Arc<Double>>,
    Path(id): Path<String>,
) -> Response {
    if double.fault(double.config.hung_reads) {
        tokio::time::sleep(Duration::from_mins(1)).await;
    } else if double.fault(double.config.slow_reads) {
        let (from, to) = double.config.slow_read;
        let spread = to.saturating_sub(from).as_millis();
        let extra = double
            .rng
            .lock()
            .range(0, u64::try_from(spread).unwrap_or(0).saturating_add(1));
        tokio::time::sleep(from + Duration::from_millis(extra)).await;
    }
    if double.fault(double.config.throttled) {
        double.world.lock().throttled += 1;
        let mut response = error(
            StatusCode::TOO_MANY_REQUESTS,
            "RATE_LIMITED",
            "Too many requests",
        );
        let full = Admission {
            allowed: false,
            limit: double.config.limit,
            remaining: 0,
            reset_ms: 1_000,
        };
        rate_headers(response.headers_mut(), full);
        return response;
    }
    if double.fault(double.config.server_errors) {
        return error(
            StatusCode::INTERNAL_SERVER_ERROR,
            "INTERNAL_ERROR",
            "Internal error",
        );
    }
    let now = double.clock.now();
    let mut world = double.world.lock();
    world.reads += 1;
    let Some(session) = world.sessions.get(&id) else {
        return error(StatusCode::NOT_FOUND, "NOT_FOUND", "Session not found");
    };
    let history = &session.scenario.history;
    if now >= history.expires_at {
        return error(StatusCode::NOT_FOUND, "NOT_FOUND", "Session not found");
    }
    // Read and `DELETE` answer from the same history: until the page is opened it holds
    // nothing but the merchant's disable.
    let body = history.body_after(history.change_at(now));
    let mut body = serde_json::to_value(body.session_body()).unwrap_or_default();
    double.restamp(&mut body);
    Json(body).into_response()
}

/// `DELETE /hpp/v1/sessions/{id}`: 204, 400 when the session is already final, 404 from
/// `expires_at` or for an unknown id.
pub(crate) async fn disable_session(
    State(double): State<Arc<Double>>,
    Path(id): Path<String>,
) -> Response {
    let now = double.clock.now();
    match double.world.lock().disable(&id, now) {
        Some(DisableAnswer::Disabled) => StatusCode::NO_CONTENT.into_response(),
        Some(DisableAnswer::AlreadyFinal) => error(
            StatusCode::BAD_REQUEST,
            "NOT_ALLOWED",
            "The session is final and cannot be disabled",
        ),
        // 404, and any answer a later version of the model adds.
        _ => error(StatusCode::NOT_FOUND, "NOT_FOUND", "Session not found"),
    }
}

/// `POST /payments/v1/authorizations/{token}/order`: 200 with the order; 404 for a token
/// unknown, not issued yet or older than 60 minutes. A configured share of created orders is
/// answered 500 all the same (the order exists: an ambiguous result), and a configured share is
/// held before it is carried out (it lands after the client's timeout).
pub(crate) async fn create_order(
    State(double): State<Arc<Double>>,
    Path(token): Path<String>,
) -> Response {
    let late = double.fault(double.config.late_orders);
    // Carried out in a task of its own: a client that gives up (closing its connection, which
    // drops this handler) does not stop it, as it would not stop Klarna.
    let carried_out = tokio::spawn({
        let double = Arc::clone(&double);
        async move {
            if late {
                tokio::time::sleep(double.config.late_order_delay).await;
            }
            let now = double.clock.now();
            double.world.lock().create_order(&token, now)
        }
    });
    let Ok(answer) = carried_out.await else {
        return error(
            StatusCode::INTERNAL_SERVER_ERROR,
            "INTERNAL_ERROR",
            "Internal error",
        );
    };
    match answer {
        OrderAnswer::Created if double.fault(double.config.lost_order_answers) => error(
            StatusCode::INTERNAL_SERVER_ERROR,
            "INTERNAL_ERROR",
            "Internal error",
        ),
        OrderAnswer::Created => Json(json!({
            "order_id": double.uuid(),
            "fraud_status": "ACCEPTED",
            "authorized_payment_method": {"type": "invoice"},
        }))
        .into_response(),
        OrderAnswer::InvalidToken => error(
            StatusCode::NOT_FOUND,
            "NOT_FOUND",
            "Invalid authorization token",
        ),
        OrderAnswer::PaymentSessionClosed => error(
            StatusCode::BAD_REQUEST,
            "NOT_ALLOWED",
            "The payment session already has an order",
        ),
    }
}

/// `DELETE /payments/v1/authorizations/{token}`: the merchant releases an authorization it will
/// not fulfil (204), instead of letting the token die
/// (<https://docs.klarna.com/api/payments/#operation/cancelAuthorization>); 404 for a token
/// unknown, dead, used for an order or cancelled already.
pub(crate) async fn cancel_authorization(
    State(double): State<Arc<Double>>,
    Path(token): Path<String>,
) -> Response {
    let now = double.clock.now();
    if double.world.lock().cancel_authorization(&token, now) {
        StatusCode::NO_CONTENT.into_response()
    } else {
        error(
            StatusCode::NOT_FOUND,
            "NOT_FOUND",
            "Invalid authorization token",
        )
    }
}
