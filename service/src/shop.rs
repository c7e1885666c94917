//! The merchant's shop: the cart system and order book the executor reports to. Each call
//! carries the action's stable id as its `Idempotency-Key`, so a repeat after a crash is
//! applied once.

use serde_json::Value;

/// How long a call to the shop may take.
pub const SHOP_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

/// The shop's HTTP API.
#[derive(Debug)]
pub struct Shop {
    http: reqwest::Client,
    base: String,
}

impl Shop {
    /// The shop at `base`.
    #[must_use]
    pub fn new(base: &str) -> Self {
        Self {
            // A shop that hangs must not hold an action's slot for long: a call that takes longer
            // is retried (with the same idempotency key).
            http: reqwest::Client::builder()
                .timeout(SHOP_TIMEOUT)
                .build()
                .unwrap_or_default(),
            base: base.trim_end_matches('/').to_owned(),
        }
    }

    /// POSTs `body` to `path` with `key`; whether the shop answered 2xx.
    pub async fn post(&self, path: &str, key: &str, body: &Value) -> bool {
        self.http
            .post(format!("{}{path}", self.base))
            .header("idempotency-key", key)
            .json(body)
            .send()
            .await
            .is_ok_and(|r| r.status().is_success())
    }
}
