//! The merchant's shop: the cart system and order book the executor reports to. Each call
//! carries the action's stable id as its `Idempotency-Key`, so a repeat after a crash is
//! applied once.

use serde_json::Value;

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
            http: reqwest::Client::new(),
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
