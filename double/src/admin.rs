//! The test's endpoints: the clock, and the ground truth with the oracle's verdict.

use std::sync::Arc;
use std::time::Duration;

use axum::Json;
use axum::extract::{Query, State};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::Double;
use crate::world::Truth;

/// `GET /admin/clock`: `{"now": RFC 3339, "speed": simulated seconds per second}`.
pub(crate) async fn clock(State(double): State<Arc<Double>>) -> Json<Value> {
    Json(json!({
        "now": double.clock.now().to_string(),
        "speed": double.clock.speed(),
    }))
}

/// The body of `POST /admin/clock/advance`.
#[derive(Debug, Deserialize)]
pub(crate) struct Advance {
    seconds: f64,
}

/// `POST /admin/clock/advance`: moves the clock forward.
pub(crate) async fn advance(
    State(double): State<Arc<Double>>,
    Json(body): Json<Advance>,
) -> Json<Value> {
    if body.seconds.is_finite() && body.seconds > 0.0 {
        double.clock.advance(Duration::from_secs_f64(body.seconds));
        double.jobs.wake();
    }
    clock(State(double)).await
}

/// The query of `GET /admin/truth`.
#[derive(Debug, Deserialize)]
pub(crate) struct TruthQuery {
    #[serde(default)]
    sessions: bool,
}

/// `GET /admin/truth[?sessions=true]`: the ground truth now.
pub(crate) async fn truth(
    State(double): State<Arc<Double>>,
    Query(q): Query<TruthQuery>,
) -> Json<Truth> {
    let now = double.clock.now();
    Json(double.world.lock().truth(now, q.sessions))
}
