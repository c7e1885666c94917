//! Klarna over HTTP: the calls the service makes, each answer mapped to what it means for the
//! session, and the merchant's budget (Klarna's rate limit) shared out by a GCRA limiter.

use std::num::NonZeroU32;
use std::time::Duration;

use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};
use hpp_session::ReadFailure;
use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::observe::ReadAnswer;

/// How long a call to Klarna may take.
const CALL_TIMEOUT: Duration = Duration::from_secs(10);

/// The merchant's Klarna budget for this process: reads get their share, money calls (orders,
/// disables) the rest, so reads never take what a money call needs.
#[derive(Debug)]
pub struct Budget {
    reads: DefaultDirectRateLimiter,
    money: DefaultDirectRateLimiter,
    rates: (u32, u32),
}

impl Budget {
    /// `per_second` requests a second for the whole merchant, `read_share` of it for reads,
    /// split evenly over `processes`. Each limiter allows no burst, so no 1-second window sees
    /// more than its rate plus one.
    #[must_use]
    pub fn new(per_second: u32, read_share: f64, processes: u32) -> Self {
        // Each limiter lets at most its rate plus one into a 1-second window: leave room for
        // both extras in this process's part.
        let part = per_second / processes.max(1);
        #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
        let reads = ((f64::from(part) * read_share.clamp(0.0, 1.0)).floor() as u32)
            .saturating_sub(1)
            .min(part.saturating_sub(3))
            .max(1);
        // The rest, so a read never takes a money call's place (at least one a second).
        let money = part.saturating_sub(reads + 2).max(1);
        let rate = |r: u32| NonZeroU32::new(r).unwrap_or(NonZeroU32::MIN);
        let (reads, money) = (rate(reads), rate(money));
        let quota = |r| Quota::per_second(r).allow_burst(NonZeroU32::MIN);
        Self {
            reads: RateLimiter::direct(quota(reads)),
            money: RateLimiter::direct(quota(money)),
            rates: (reads.get(), money.get()),
        }
    }

    /// Requests a second this process allows itself: reads, money calls.
    #[must_use]
    pub fn rates(&self) -> (u32, u32) {
        self.rates
    }
}

/// What create-order answered.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum OrderResult {
    /// 200: the order, by id.
    Created(String),
    /// 4xx: refused (an invalid or expired token); resending will not help.
    Refused(u16),
    /// 429: not processed; try again.
    RateLimited,
    /// 5xx, a timeout, a dropped connection: the order may or may not exist. Never resend
    /// blindly: check the payment session first.
    Ambiguous,
}

/// What a disable answered.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DisableResult {
    /// 204.
    Disabled,
    /// 400: the session is final already (the tracker reads it next).
    AlreadyFinal,
    /// 404: expired (or unknown).
    NotFound,
    /// 429, 5xx, a timeout: try again (a disable is safe to repeat).
    Retry,
}

/// Klarna's API for one merchant.
#[derive(Debug)]
pub struct Klarna {
    http: reqwest::Client,
    base: String,
    username: String,
    password: String,
    budget: Budget,
}

impl Klarna {
    /// A client of the API at `base` (e.g. `https://api.playground.klarna.com`).
    #[must_use]
    pub fn new(base: &str, username: &str, password: &str, budget: Budget) -> Self {
        Self {
            http: reqwest::Client::builder()
                .timeout(CALL_TIMEOUT)
                .build()
                .unwrap_or_default(),
            base: base.trim_end_matches('/').to_owned(),
            username: username.to_owned(),
            password: password.to_owned(),
            budget,
        }
    }

    fn request(&self, method: reqwest::Method, path: &str) -> reqwest::RequestBuilder {
        self.http
            .request(method, format!("{}{path}", self.base))
            .basic_auth(&self.username, Some(&self.password))
    }

    /// Creates a Klarna Payments session; its id.
    ///
    /// # Errors
    /// Klarna's answer, as text.
    pub async fn create_payment_session(&self, amount: u64) -> Result<String, String> {
        let body = json!({
            "purchase_country": "SE", "purchase_currency": "SEK", "locale": "en-SE",
            "order_amount": amount, "order_tax_amount": 0,
            "order_lines": [{"name": "Cart", "quantity": 1, "unit_price": amount,
                             "total_amount": amount, "tax_rate": 0, "total_tax_amount": 0}],
        });
        let answer: Value = self
            .request(reqwest::Method::POST, "/payments/v1/sessions")
            .json(&body)
            .send()
            .await
            .and_then(reqwest::Response::error_for_status)
            .map_err(|e| e.to_string())?
            .json()
            .await
            .map_err(|e| e.to_string())?;
        answer["session_id"]
            .as_str()
            .map(str::to_owned)
            .ok_or_else(|| "no session_id".to_owned())
    }

    /// Creates the HPP session for a payment session; its id and the consumer's `redirect_url`.
    ///
    /// # Errors
    /// Klarna's answer, as text.
    pub async fn create_session(
        &self,
        payment_session_id: &str,
        merchant_urls: Value,
    ) -> Result<(String, String), String> {
        let body = json!({
            "payment_session_url": format!("{}/payments/v1/sessions/{payment_session_id}", self.base),
            "merchant_urls": merchant_urls,
            "options": {"place_order_mode": "NONE"},
        });
        let response = self
            .request(reqwest::Method::POST, "/hpp/v1/sessions")
            .json(&body)
            .send()
            .await
            .map_err(|e| e.to_string())?;
        if response.status() != StatusCode::CREATED {
            return Err(format!("create session answered {}", response.status()));
        }
        let answer: Value = response.json().await.map_err(|e| e.to_string())?;
        match (
            answer["session_id"].as_str(),
            answer["redirect_url"].as_str(),
        ) {
            (Some(id), Some(url)) => Ok((id.to_owned(), url.to_owned())),
            _ => Err("no session_id or redirect_url".to_owned()),
        }
    }

    /// Reads the HPP session, within the reads' share of the budget.
    pub async fn read(&self, session_id: &str) -> ReadAnswer {
        self.budget.reads.until_ready().await;
        let sent = self
            .request(
                reqwest::Method::GET,
                &format!("/hpp/v1/sessions/{session_id}"),
            )
            .send()
            .await;
        let response = match sent {
            Ok(r) => r,
            Err(e) if e.is_timeout() => return ReadAnswer::Failed(ReadFailure::Timeout),
            Err(_) => return ReadAnswer::Failed(ReadFailure::ServerError),
        };
        match response.status() {
            StatusCode::OK => match response.text().await {
                Ok(body) => ReadAnswer::Body(body),
                Err(_) => ReadAnswer::Failed(ReadFailure::ServerError),
            },
            StatusCode::NOT_FOUND => ReadAnswer::NotFound,
            StatusCode::TOO_MANY_REQUESTS => {
                let reset = response
                    .headers()
                    .get("x-ratelimit-reset")
                    .and_then(|v| v.to_str().ok())
                    .and_then(|v| v.parse::<u64>().ok())
                    .map(Duration::from_secs);
                ReadAnswer::Failed(ReadFailure::RateLimited { reset })
            }
            s if s.is_server_error() => ReadAnswer::Failed(ReadFailure::ServerError),
            _ => ReadAnswer::Failed(ReadFailure::Unexpected),
        }
    }

    /// Creates the order with `token`, within the money share of the budget.
    pub async fn create_order(&self, token: &str, reference: &str) -> OrderResult {
        self.budget.money.until_ready().await;
        let body = json!({
            "purchase_country": "SE", "purchase_currency": "SEK",
            "merchant_reference1": reference,
        });
        let sent = self
            .request(
                reqwest::Method::POST,
                &format!("/payments/v1/authorizations/{token}/order"),
            )
            .json(&body)
            .send()
            .await;
        let Ok(response) = sent else {
            return OrderResult::Ambiguous;
        };
        let status = response.status();
        if status == StatusCode::TOO_MANY_REQUESTS {
            return OrderResult::RateLimited;
        }
        if status.is_client_error() {
            return OrderResult::Refused(status.as_u16());
        }
        if !status.is_success() {
            return OrderResult::Ambiguous;
        }
        match response.json::<Value>().await {
            Ok(v) => v["order_id"].as_str().map_or(OrderResult::Ambiguous, |id| {
                OrderResult::Created(id.to_owned())
            }),
            Err(_) => OrderResult::Ambiguous,
        }
    }

    /// Whether an order was created from the payment session (`status` `complete`): how an
    /// ambiguous create-order is settled. `None`: the read failed.
    pub async fn payment_session_ordered(&self, payment_session_id: &str) -> Option<bool> {
        self.budget.money.until_ready().await;
        let response = self
            .request(
                reqwest::Method::GET,
                &format!("/payments/v1/sessions/{payment_session_id}"),
            )
            .send()
            .await
            .ok()?;
        if !response.status().is_success() {
            return None;
        }
        let body: Value = response.json().await.ok()?;
        body["status"].as_str().map(|s| s == "complete")
    }

    /// Disables the HPP session, within the money share of the budget.
    pub async fn disable(&self, session_id: &str) -> DisableResult {
        self.budget.money.until_ready().await;
        let sent = self
            .request(
                reqwest::Method::DELETE,
                &format!("/hpp/v1/sessions/{session_id}"),
            )
            .send()
            .await;
        match sent.map(|r| r.status()) {
            Ok(StatusCode::NO_CONTENT) => DisableResult::Disabled,
            Ok(StatusCode::BAD_REQUEST) => DisableResult::AlreadyFinal,
            Ok(StatusCode::NOT_FOUND) => DisableResult::NotFound,
            _ => DisableResult::Retry,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_shares_of_every_process_fit_in_klarnas_window() {
        for budget in [50, 200, 1_000, 3_000] {
            for processes in 1..=8 {
                for share in [0.5, 0.8, 0.9] {
                    let (reads, money) = Budget::new(budget, share, processes).rates();
                    // Each limiter lets at most its rate plus one into a 1-second window.
                    let window = (reads + 1 + money + 1) * processes;
                    assert!(
                        window <= budget || reads + money == 2,
                        "{budget}/s, {processes} processes, {share}: {window} a window"
                    );
                    assert!(money >= 1 && reads >= 1);
                }
            }
        }
        assert_eq!(Budget::new(50, 0.8, 1).rates(), (39, 9));
        assert_eq!(Budget::new(3_000, 0.8, 4).rates(), (599, 149));
    }
}
