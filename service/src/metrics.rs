//! `/metrics`: counters and histograms recorded where things happen (Klarna's answers by call,
//! 429s by call, the budget taken, observations by outcome, callback latency), and gauges read
//! from the store at each scrape (due reads and the oldest one's age, pending actions by kind and
//! the oldest one's age, sessions by status), in Prometheus' text format.

use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

use crate::App;

/// Callback handling latency buckets, in seconds: Klarna waits 3 s for the answer.
const CALLBACK_BUCKETS: [f64; 12] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 3.0, 10.0,
];

/// Installs the process's recorder; its handle renders the text.
///
/// # Errors
/// A recorder is installed already.
pub fn install() -> Result<PrometheusHandle, String> {
    PrometheusBuilder::new()
        .set_buckets_for_metric(
            Matcher::Full("hpp_callback_seconds".to_owned()),
            &CALLBACK_BUCKETS,
        )
        .map_err(|e| e.to_string())?
        .install_recorder()
        .map_err(|e| e.to_string())
}

/// The metrics' text, with the store's gauges read now (`hpp_store_up` 0 when it cannot be).
pub async fn render(app: &App, handle: &PrometheusHandle) -> String {
    let gauges = match app.clock.now().await {
        Ok(now) => app.store.gauges(now).await.map_err(|e| e.to_string()),
        Err(e) => Err(e),
    };
    match gauges {
        Ok(g) => {
            metrics::gauge!("hpp_store_up").set(1.0);
            #[allow(clippy::cast_precision_loss)]
            {
                metrics::gauge!("hpp_reads_due").set(g.due_reads as f64);
                metrics::gauge!("hpp_reads_oldest_due_seconds")
                    .set(g.oldest_due_read_ms as f64 / 1000.0);
                metrics::gauge!("hpp_actions_oldest_pending_seconds")
                    .set(g.oldest_pending_ms as f64 / 1000.0);
                for kind in hpp_session::ActionKind::ALL {
                    let n = g
                        .pending
                        .iter()
                        .find(|(k, _)| k == kind.as_str())
                        .map_or(0, |(_, n)| *n);
                    metrics::gauge!("hpp_actions_pending", "kind" => kind.as_str()).set(n as f64);
                }
                for (status, n) in g.sessions {
                    metrics::gauge!("hpp_sessions", "status" => status).set(n as f64);
                }
            }
        }
        Err(e) => {
            tracing::warn!(error = %e, "metrics: the store's gauges");
            metrics::gauge!("hpp_store_up").set(0.0);
        }
    }
    handle.render()
}
