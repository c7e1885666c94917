//! The merchant's shop: the cart system and order book the integration reports to. Each call
//! carries the integration's `Idempotency-Key` (the action's stable id); a repeat with the same
//! key is applied once, as a real shop would, and still counted as a call.

use std::sync::Arc;

use axum::Json;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use hpp_session::ReleaseReason;
use serde::Deserialize;

use crate::Double;

/// The call's `Idempotency-Key` (required on every call of the shop).
fn idempotency_key(headers: &HeaderMap) -> Option<String> {
    headers
        .get("idempotency-key")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
}

/// Records one call of the merchant's shop for `id` with `apply`, keyed by the call's
/// `Idempotency-Key`: 400 without one, 404 for an unknown session.
fn record(
    double: &Double,
    id: &str,
    headers: &HeaderMap,
    apply: impl FnOnce(&mut crate::world::Shop, String),
) -> StatusCode {
    let Some(key) = idempotency_key(headers) else {
        return StatusCode::BAD_REQUEST;
    };
    let mut world = double.world.lock();
    let Some(session) = world.sessions.get_mut(id) else {
        return StatusCode::NOT_FOUND;
    };
    session.shop.calls += 1;
    apply(&mut session.shop, key);
    StatusCode::NO_CONTENT
}

/// The body of a release: why.
#[derive(Debug, Deserialize)]
pub(crate) struct Release {
    reason: String,
}

/// The reason a release gives, as the core names it: `CANCELLED`, `DISABLED` or `EXPIRED`.
fn release_reason(text: &str) -> Option<ReleaseReason> {
    [
        ReleaseReason::Cancelled,
        ReleaseReason::Disabled,
        ReleaseReason::Expired,
    ]
    .into_iter()
    .find(|r| r.as_str() == text)
}

/// `POST /shop/carts/{id}/release`: 400 without an `Idempotency-Key`, as every call of the
/// shop; 422 for a reason that is none of the three (as axum answers a body it cannot read).
/// Either way nothing is recorded, and the call is not counted.
pub(crate) async fn release(
    State(double): State<Arc<Double>>,
    Path(id): Path<String>,
    headers: HeaderMap,
    Json(body): Json<Release>,
) -> StatusCode {
    if idempotency_key(&headers).is_none() {
        return StatusCode::BAD_REQUEST;
    }
    let Some(reason) = release_reason(&body.reason) else {
        return StatusCode::UNPROCESSABLE_ENTITY;
    };
    record(&double, &id, &headers, |shop, key| {
        shop.releases.entry(key).or_insert(reason);
    })
}

/// The body of a recorded order.
#[derive(Debug, Deserialize)]
pub(crate) struct Record {
    order_id: String,
}

/// `POST /shop/orders/{id}/record`: an order Klarna placed.
pub(crate) async fn record_order(
    State(double): State<Arc<Double>>,
    Path(id): Path<String>,
    headers: HeaderMap,
    Json(body): Json<Record>,
) -> StatusCode {
    record(&double, &id, &headers, |shop, key| {
        shop.recorded.entry(key).or_insert(body.order_id);
    })
}

/// `POST /shop/reviews/{id}`: a paid session a person must look at.
pub(crate) async fn review(
    State(double): State<Arc<Double>>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> StatusCode {
    record(&double, &id, &headers, |shop, key| {
        shop.reviews.insert(key);
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_release_names_one_of_the_three_reasons() {
        assert_eq!(release_reason("CANCELLED"), Some(ReleaseReason::Cancelled));
        assert_eq!(release_reason("DISABLED"), Some(ReleaseReason::Disabled));
        assert_eq!(release_reason("EXPIRED"), Some(ReleaseReason::Expired));
        assert_eq!(release_reason("cancelled"), None);
        assert_eq!(release_reason("TIMEOUT"), None);
    }
}
