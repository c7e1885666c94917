//! Klarna over HTTP: the calls the service makes, each answer mapped to what it means for the
//! session, and the merchant's budget (Klarna's rate limit) shared out by a GCRA limiter.

use std::num::NonZeroU32;
use std::time::Duration;

use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};
use hpp_session::ReadFailure;
use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::observe::ReadAnswer;
use crate::store::postgres::SharedBudget;

/// Counts a call's answer (`result`), and a 429 apart.
fn answered(call: &'static str, result: &'static str) {
    metrics::counter!("hpp_klarna_calls_total", "call" => call, "result" => result).increment(1);
    if result == "throttled" {
        metrics::counter!("hpp_klarna_throttled_total", "call" => call).increment(1);
    }
}

/// A call to Klarna, as the budget counts it: reads, disables and create-order share Klarna's
/// "other operations" (reads get their share, money calls the rest, so reads never take what a
/// money call needs); each create call has its own bucket.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Call {
    /// `GET /hpp/v1/sessions/{id}`.
    Read,
    /// Create-order, disable, and the payment session's read that settles an ambiguous order.
    Money,
    /// `POST /payments/v1/sessions`.
    CreatePaymentSession,
    /// `POST /hpp/v1/sessions`.
    CreateHppSession,
}

impl Call {
    /// Every call.
    pub const ALL: [Self; 4] = [
        Self::Read,
        Self::Money,
        Self::CreatePaymentSession,
        Self::CreateHppSession,
    ];

    /// Its name: the budget's bucket and the metrics' label.
    #[must_use]
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Read => "reads",
            Self::Money => "money",
            Self::CreatePaymentSession => "payment_session_create",
            Self::CreateHppSession => "hpp_session_create",
        }
    }
}

/// How long a checkout waits for its create calls' budget before it answers 502.
pub const CHECKOUT_BUDGET_WAIT: Duration = Duration::from_secs(5);
const NO_BUDGET: &str =
    "no room in the budget within 5 s (full, or the database holding it is down)";

/// Requests a second for each kind of call, for the whole merchant.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Rates {
    /// Reads.
    pub reads: u32,
    /// Money calls.
    pub money: u32,
    /// Each create call (payment sessions, HPP sessions), apart.
    pub creates: u32,
}

impl Rates {
    /// `per_second` requests a second for reads and money calls together, `read_share` of it
    /// for reads; `creates_per_second` for each create call. A limiter without burst lets at
    /// most its rate plus one into a 1-second window: the rates leave room for those extras, so
    /// no window at Klarna sees more than its limit.
    #[must_use]
    pub fn new(per_second: u32, read_share: f64, creates_per_second: u32) -> Self {
        #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
        let reads = ((f64::from(per_second) * read_share.clamp(0.0, 1.0)).floor() as u32)
            .saturating_sub(1)
            .min(per_second.saturating_sub(3))
            .max(1);
        // The rest, so a read never takes a money call's place (at least one a second).
        let money = per_second.saturating_sub(reads + 2).max(1);
        Self {
            reads,
            money,
            creates: creates_per_second.saturating_sub(1).max(1),
        }
    }

    /// The rate of `call`.
    #[must_use]
    pub const fn of(self, call: Call) -> u32 {
        match call {
            Call::Read => self.reads,
            Call::Money => self.money,
            Call::CreatePaymentSession | Call::CreateHppSession => self.creates,
        }
    }
}

/// The merchant's Klarna budget.
#[derive(Debug)]
#[allow(clippy::large_enum_variant)] // One per process.
pub enum Budget {
    /// This process's own (SQLite: one process): a GCRA limiter per bucket, in memory.
    Process {
        /// The limiters, by [`Call::ALL`]'s order.
        limiters: [DefaultDirectRateLimiter; 4],
        /// Their rates.
        rates: Rates,
    },
    /// One for every process, in PostgreSQL ([`SharedBudget`]): the survivors use a dead
    /// process's share.
    Shared {
        /// The buckets.
        budget: SharedBudget,
        /// Their rates.
        rates: Rates,
    },
}

impl Budget {
    /// A budget of this process's own.
    #[must_use]
    pub fn process(rates: Rates) -> Self {
        let limiter = |call: Call| {
            let rate = NonZeroU32::new(rates.of(call)).unwrap_or(NonZeroU32::MIN);
            RateLimiter::direct(Quota::per_second(rate).allow_burst(NonZeroU32::MIN))
        };
        Self::Process {
            limiters: Call::ALL.map(limiter),
            rates,
        }
    }

    /// The rates.
    #[must_use]
    pub const fn rates(&self) -> Rates {
        match self {
            Self::Process { rates, .. } | Self::Shared { rates, .. } => *rates,
        }
    }

    /// Takes `call` from the budget within `limit`; `None`: it could not be (the budget is full
    /// for that long, or the database holding it does not answer). For a caller waiting on an
    /// answer (a checkout), rather than [`Budget::take`]'s waiting forever.
    pub async fn take_within(&self, call: Call, limit: Duration) -> Option<Permit> {
        tokio::time::timeout(limit, self.take(call)).await.ok()
    }

    /// Waits until `call` fits in the budget, and takes it.
    pub async fn take(&self, call: Call) -> Permit {
        match self {
            Self::Process { limiters, .. } => {
                let i = Call::ALL.iter().position(|c| *c == call).unwrap_or(0);
                limiters[i].until_ready().await;
            }
            Self::Shared { budget, rates } => loop {
                match budget.take(call.as_str(), rates.of(call)).await {
                    Ok(None) => break,
                    // At least half a millisecond: a loser of the bucket's row lock may see a stale wait.
                    Ok(Some(wait)) => {
                        let wait = wait.clamp(Duration::from_micros(500), Duration::from_secs(1));
                        tokio::time::sleep(wait).await;
                    }
                    Err(e) => {
                        tracing::warn!(call = call.as_str(), error = %e, "budget unavailable");
                        tokio::time::sleep(Duration::from_millis(250)).await;
                    }
                }
            },
        }
        metrics::counter!("hpp_budget_taken_total", "call" => call.as_str()).increment(1);
        Permit(call)
    }
}

/// A call taken from the budget, to be spent on one request of its kind.
#[derive(Debug)]
#[must_use = "a permit is the budget's: spend it on the call it was taken for"]
pub struct Permit(Call);

/// What create-order answered.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum OrderResult {
    /// 200: the order, by id.
    Created(String),
    /// 4xx but 401, 403, 408 and 429: refused (an invalid or expired token, 404 Klarna's
    /// `NOT_FOUND` for a token past its hour); resending will not help.
    Refused(u16),
    /// 401 or 403: this service's credentials were refused, before anything was done. Not the
    /// token's fault: tried again (and logged as an error) until the credentials are fixed,
    /// within the token's hour.
    NotAuthorized(u16),
    /// 429: not processed; try again.
    RateLimited,
    /// 5xx, a timeout, a dropped connection: the order may or may not exist. Never resend
    /// blindly: check the payment session first.
    Ambiguous,
    /// Not sent: its deadline had passed.
    NotSent,
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

/// A call to Klarna that failed: which, and how.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KlarnaError {
    /// What was asked (`create a payment session`, ...).
    pub call: &'static str,
    /// What came back, or why nothing did.
    pub cause: String,
}

impl std::fmt::Display for KlarnaError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Klarna: {}: {}", self.call, self.cause)
    }
}

impl std::error::Error for KlarnaError {}

/// A transport error with its causes (reqwest alone says `error sending request`).
fn cause(e: &reqwest::Error) -> String {
    crate::error::with_causes(e)
}

/// Klarna's API for one merchant.
#[derive(Debug)]
pub struct Klarna {
    http: reqwest::Client,
    base: String,
    username: String,
    password: String,
    budget: Budget,
    /// This process's waiters for the money bucket, soonest deadline first.
    money: crate::soonest::Soonest,
    timeout: Duration,
}

impl Klarna {
    /// A client of the API at `base` (e.g. `https://api.playground.klarna.com`); no call takes
    /// longer than `timeout`, from sending to the last byte of the answer.
    #[must_use]
    pub fn new(
        base: &str,
        username: &str,
        password: &str,
        budget: Budget,
        timeout: Duration,
    ) -> Self {
        Self {
            http: reqwest::Client::builder()
                .timeout(timeout)
                .build()
                .unwrap_or_default(),
            base: base.trim_end_matches('/').to_owned(),
            username: username.to_owned(),
            password: password.to_owned(),
            budget,
            money: crate::soonest::Soonest::default(),
            timeout,
        }
    }

    /// The longest a call may take: after it, a request this client sent is abandoned (though
    /// Klarna may still carry it out).
    #[must_use]
    pub const fn timeout(&self) -> Duration {
        self.timeout
    }

    /// The budget.
    #[must_use]
    pub const fn budget(&self) -> &Budget {
        &self.budget
    }

    fn request(&self, method: reqwest::Method, path: &str) -> reqwest::RequestBuilder {
        self.http
            .request(method, format!("{}{path}", self.base))
            .basic_auth(&self.username, Some(&self.password))
    }

    /// Creates a Klarna Payments session, within its create bucket; its id.
    ///
    /// # Errors
    /// What Klarna answered, or why it did not.
    pub async fn create_payment_session(&self, amount: u64) -> Result<String, KlarnaError> {
        const CALL: &str = "create a payment session";
        let failed = |cause: String| KlarnaError { call: CALL, cause };
        let _permit = self
            .budget
            .take_within(Call::CreatePaymentSession, CHECKOUT_BUDGET_WAIT)
            .await
            .ok_or_else(|| failed(NO_BUDGET.to_owned()))?;
        let body = json!({
            "purchase_country": "SE", "purchase_currency": "SEK", "locale": "en-SE",
            "order_amount": amount, "order_tax_amount": 0,
            "order_lines": [{"name": "Cart", "quantity": 1, "unit_price": amount,
                             "total_amount": amount, "tax_rate": 0, "total_tax_amount": 0}],
        });
        let response = self
            .request(reqwest::Method::POST, "/payments/v1/sessions")
            .json(&body)
            .send()
            .await
            .map_err(|e| failed(cause(&e)))?;
        let status = response.status();
        answered(Call::CreatePaymentSession.as_str(), result_of(status));
        if !status.is_success() {
            return Err(failed(format!("answered {status}")));
        }
        let answer: Value = response.json().await.map_err(|e| failed(cause(&e)))?;
        answer["session_id"]
            .as_str()
            .map(str::to_owned)
            .ok_or_else(|| failed("no session_id in the answer".to_owned()))
    }

    /// Creates the HPP session for a payment session, within its create bucket; its id and the
    /// consumer's `redirect_url`.
    ///
    /// # Errors
    /// What Klarna answered, or why it did not.
    pub async fn create_session(
        &self,
        payment_session_id: &str,
        merchant_urls: Value,
    ) -> Result<(String, String), KlarnaError> {
        const CALL: &str = "create an HPP session";
        let failed = |cause: String| KlarnaError { call: CALL, cause };
        let _permit = self
            .budget
            .take_within(Call::CreateHppSession, CHECKOUT_BUDGET_WAIT)
            .await
            .ok_or_else(|| failed(NO_BUDGET.to_owned()))?;
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
            .map_err(|e| failed(cause(&e)))?;
        let status = response.status();
        answered(Call::CreateHppSession.as_str(), result_of(status));
        if status != StatusCode::CREATED {
            return Err(failed(format!("answered {status}")));
        }
        let answer: Value = response.json().await.map_err(|e| failed(cause(&e)))?;
        match (
            answer["session_id"].as_str(),
            answer["redirect_url"].as_str(),
        ) {
            (Some(id), Some(url)) => Ok((id.to_owned(), url.to_owned())),
            _ => Err(failed(
                "no session_id or redirect_url in the answer".to_owned(),
            )),
        }
    }

    /// Reads the HPP session, within the reads' share of the budget.
    pub async fn read(&self, session_id: &str) -> ReadAnswer {
        let _permit = self.budget.take(Call::Read).await;
        let sent = self
            .request(
                reqwest::Method::GET,
                &format!("/hpp/v1/sessions/{session_id}"),
            )
            .send()
            .await;
        let response = match sent {
            Ok(r) => r,
            Err(e) if e.is_timeout() => {
                answered("read", "timeout");
                return ReadAnswer::Failed(ReadFailure::Timeout);
            }
            Err(_) => {
                answered("read", "unreachable");
                return ReadAnswer::Failed(ReadFailure::ServerError);
            }
        };
        let status = response.status();
        answered("read", result_of(status));
        match status {
            StatusCode::OK => match response.text().await {
                Ok(body) => ReadAnswer::Body(body),
                Err(e) if e.is_timeout() => ReadAnswer::Failed(ReadFailure::Timeout),
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

    /// Creates the order with `token`, spending `permit` (a money call taken from the budget
    /// before the attempt was recorded: the attempt's time is when the request leaves, not when
    /// the budget let it).
    /// The request ends by `deadline` whatever happens (Klarna's timeout counted from before the
    /// attempt was recorded): it never outlives the landing bound recorded with the attempt.
    pub async fn create_order(
        &self,
        permit: Permit,
        token: &str,
        reference: &str,
        deadline: std::time::Instant,
    ) -> OrderResult {
        debug_assert_eq!(permit.0, Call::Money);
        let Some(left) = deadline.checked_duration_since(std::time::Instant::now()) else {
            return OrderResult::NotSent;
        };
        let body = json!({
            "purchase_country": "SE", "purchase_currency": "SEK",
            "merchant_reference1": reference,
        });
        let sent = self
            .request(
                reqwest::Method::POST,
                &format!("/payments/v1/authorizations/{token}/order"),
            )
            .timeout(left)
            .json(&body)
            .send()
            .await;
        let response = match sent {
            Ok(r) => r,
            Err(e) => {
                answered(
                    "create_order",
                    if e.is_timeout() {
                        "timeout"
                    } else {
                        "unreachable"
                    },
                );
                return OrderResult::Ambiguous;
            }
        };
        let status = response.status();
        answered("create_order", result_of(status));
        match status {
            StatusCode::TOO_MANY_REQUESTS => return OrderResult::RateLimited,
            StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN => {
                return OrderResult::NotAuthorized(status.as_u16());
            }
            // The request timed out at Klarna's side: it may have been carried out.
            StatusCode::REQUEST_TIMEOUT => return OrderResult::Ambiguous,
            s if s.is_client_error() => return OrderResult::Refused(status.as_u16()),
            _ => {}
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

    /// Takes a money call from the budget once no call of this process with an earlier
    /// deadline (Unix milliseconds: an order's `place_by`, `i64::MAX` for none) waits for one:
    /// the order whose token dies soonest goes first.
    pub async fn money(&self, deadline_ms: i64) -> Permit {
        let _turn = self.money.turn(deadline_ms).await;
        self.budget.take(Call::Money).await
    }

    /// Whether an order was created from the payment session (`status` `complete`): how an
    /// ambiguous create-order is settled, within the money budget at the order's deadline.
    /// `None`: the read failed.
    pub async fn payment_session_ordered(
        &self,
        payment_session_id: &str,
        deadline_ms: i64,
    ) -> Option<bool> {
        let _permit = self.money(deadline_ms).await;
        let sent = self
            .request(
                reqwest::Method::GET,
                &format!("/payments/v1/sessions/{payment_session_id}"),
            )
            .send()
            .await;
        let Ok(response) = sent else {
            answered("read_payment_session", "unreachable");
            return None;
        };
        answered("read_payment_session", result_of(response.status()));
        if !response.status().is_success() {
            return None;
        }
        let body: Value = response.json().await.ok()?;
        body["status"].as_str().map(|s| s == "complete")
    }

    /// Disables the HPP session, within the money share of the budget (after every order
    /// waiting for it).
    pub async fn disable(&self, session_id: &str) -> DisableResult {
        let _permit = self.money(i64::MAX).await;
        let sent = self
            .request(
                reqwest::Method::DELETE,
                &format!("/hpp/v1/sessions/{session_id}"),
            )
            .send()
            .await;
        let Ok(response) = sent else {
            answered("disable", "unreachable");
            return DisableResult::Retry;
        };
        let status = response.status();
        answered("disable", result_of(status));
        match status {
            StatusCode::NO_CONTENT => DisableResult::Disabled,
            StatusCode::BAD_REQUEST => DisableResult::AlreadyFinal,
            StatusCode::NOT_FOUND => DisableResult::NotFound,
            _ => DisableResult::Retry,
        }
    }
}

/// A status as the metrics' `result` label.
fn result_of(status: StatusCode) -> &'static str {
    match status.as_u16() {
        200..=299 => "ok",
        404 => "not_found",
        429 => "throttled",
        400..=499 => "refused",
        _ => "server_error",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_rates_fit_in_klarnas_window() {
        for budget in [50, 200, 1_000, 3_000] {
            for share in [0.5, 0.8, 0.9] {
                let rates = Rates::new(budget, share, 5);
                // Each limiter lets at most its rate plus one into a 1-second window.
                let window = rates.reads + 1 + rates.money + 1;
                assert!(window <= budget, "{budget}/s, {share}: {window} a window");
                assert!(rates.money >= 1 && rates.reads >= 1);
            }
        }
        assert_eq!(
            Rates::new(50, 0.8, 5),
            Rates {
                reads: 39,
                money: 9,
                creates: 4
            }
        );
        assert_eq!(Rates::new(200, 0.8, 40).creates, 39);
    }
}
