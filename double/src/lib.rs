//! A Klarna double for Hosted Payment Page integrations.
//!
//! An HTTP server that behaves like the parts of Klarna an HPP integrator touches, at Klarna's
//! paths, so that an integration (in any language) is tested by changing only its base URL:
//!
//! - **Klarna's API** ([`api`]): Klarna Payments sessions, HPP sessions (create, read, disable),
//!   create-order from an authorization token; HTTP Basic credentials; Klarna's rate limiter
//!   ([`limiter`]); 500s on demand.
//! - **Consumers** ([`consumers`]): every HPP session created is played by the crate's
//!   simulator (a seeded history), on the double's [`clock::Clock`]: status callbacks sent to the
//!   merchant's `status_update` URL with Klarna's delivery behaviour and the simulator's
//!   faults (lost calls and events, delays, duplicates), redirects to the merchant's URLs, and
//!   forged callbacks and redirects from an adversary.
//! - **The merchant's shop** ([`shop`]): where the integration reports what it did with a
//!   session that needs no Klarna call (release a cart, record an order Klarna placed, hand a
//!   session to a person), so that every side effect is recorded outside the integration.
//! - **Ground truth** ([`admin`]): orders per session, disables, requests over the limit, the
//!   oracle's verdict per session; the clock, which the test may move forward.
//!
//! Where Klarna leaves a behaviour undocumented the double takes the harsher reading; the
//! README lists each.

pub mod admin;
pub mod api;
pub mod clock;
pub mod consumers;
pub mod limiter;
pub mod shop;
pub mod world;

use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use axum::Router;
use axum::routing::{delete, get, post};
use hpp_session::Timestamp;
use hpp_sim::SimConfig;
use hpp_sim::rng::Rng;

use clock::Clock;
use consumers::Jobs;
use limiter::Limiter;
use world::World;

/// How the double behaves.
#[derive(Clone, Debug)]
pub struct DoubleConfig {
    /// Seed of the consumers' histories and of the faults.
    pub seed: u64,
    /// Simulated seconds per wall-clock second.
    pub speed: f64,
    /// The double's clock at start.
    pub start: Timestamp,
    /// Requests a second per merchant for reads, disables and create-order together (Klarna:
    /// 50 in the playground, 200 live). The window is a wall-clock second.
    pub limit: u32,
    /// Creations a second per merchant, for each create call apart (Klarna: 5 in the
    /// playground, 40 live).
    pub create_limit: u32,
    /// The merchant's Basic credentials.
    pub username: String,
    /// The merchant's Basic credentials.
    pub password: String,
    /// The consumers' histories and the faults on callbacks and redirects (its `start`,
    /// `arrival_gap`, `read_failure` and `merchant_disables` are not used: sessions start when
    /// they are created, read failures are [`DoubleConfig::server_errors`], and only the
    /// merchant's `DELETE` disables a session).
    pub sim: SimConfig,
    /// Reads answered 500, per mille.
    pub server_errors: u16,
    /// Reads answered 429 on demand, per mille, as if another client of the merchant had
    /// filled the window (counted apart from the limiter's own refusals).
    pub throttled: u16,
    /// Created orders answered 500 all the same, per mille.
    pub lost_order_answers: u16,
    /// Create-order requests held this long before they are carried out, per mille
    /// ([`DoubleConfig::late_order_delay`]): an order that lands after the client gave up
    /// waiting (its timeout), as a request still in flight at Klarna does. A client that asks
    /// again before the late one landed orders twice.
    pub late_orders: u16,
    /// How long a late order is held (wall clock).
    pub late_order_delay: Duration,
    /// Reads answered slowly, per mille: held between [`DoubleConfig::slow_read`]'s bounds
    /// (wall clock) before they are answered.
    pub slow_reads: u16,
    /// How long a slow read is held: from, to (wall clock, uniformly).
    pub slow_read: (Duration, Duration),
    /// Reads never answered, per mille (held for a minute: the client times out).
    pub hung_reads: u16,
    /// The bearer credential sent with each consumer's checkout (`--checkout-url`), if any.
    pub checkout_token: Option<String>,
    /// How long the double waits for the merchant's 2xx to a callback (Klarna: 3 s). Wall clock.
    pub callback_timeout: Duration,
    /// Fractional digits of the timestamps it writes: 3 as Klarna's
    /// (`2019-05-13T14:52:57.540Z`); 0 or 9 to test a parser against other valid forms.
    pub timestamp_digits: TimestampDigits,
}

/// The fractional digits of the double's timestamps.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum TimestampDigits {
    /// `2019-05-13T14:52:57Z`.
    #[value(name = "0")]
    Zero,
    /// `2019-05-13T14:52:57.540Z`, as Klarna writes them.
    #[default]
    #[value(name = "3")]
    Three,
    /// `2019-05-13T14:52:57.540000000Z`.
    #[value(name = "9")]
    Nine,
}

impl TimestampDigits {
    /// `at` in this form (truncated, never rounded up: a `0`-digit `expires_at` is never later
    /// than the real one).
    #[must_use]
    pub fn write(self, at: Timestamp) -> String {
        let text = at.to_string();
        // `YYYY-MM-DDTHH:MM:SS`, then `.fraction` (3, 6 or 9 digits) and `Z`.
        let (head, fraction) = text.split_at(19);
        let fraction = fraction.trim_start_matches('.').trim_end_matches('Z');
        let nine = format!("{fraction:0<9}");
        match self {
            Self::Zero => format!("{head}Z"),
            Self::Three => format!("{head}.{}Z", &nine[..3]),
            Self::Nine => format!("{head}.{nine}Z"),
        }
    }
}

impl Default for DoubleConfig {
    fn default() -> Self {
        Self {
            seed: 1,
            speed: 1.0,
            start: Timestamp::UNIX_EPOCH.saturating_add(Duration::from_secs(1_796_000_000)),
            limit: 50,
            create_limit: 5,
            username: "merchant".to_owned(),
            password: "secret".to_owned(),
            sim: SimConfig::DEFAULT,
            server_errors: 0,
            throttled: 0,
            lost_order_answers: 0,
            late_orders: 0,
            late_order_delay: Duration::from_secs(12),
            slow_reads: 0,
            slow_read: (Duration::from_secs(2), Duration::from_secs(5)),
            hung_reads: 0,
            checkout_token: None,
            callback_timeout: Duration::from_secs(3),
            timestamp_digits: TimestampDigits::Three,
        }
    }
}

/// A mutex that shrugs off poisoning: the double's state stays usable after a handler panic.
#[derive(Debug, Default)]
pub struct Shared<T>(Mutex<T>);

impl<T> Shared<T> {
    fn new(value: T) -> Self {
        Self(Mutex::new(value))
    }

    /// Locks it.
    pub fn lock(&self) -> MutexGuard<'_, T> {
        self.0.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// The running double's state.
#[derive(Debug)]
pub struct Double {
    /// Its configuration.
    pub config: DoubleConfig,
    /// Its clock.
    pub clock: Clock,
    /// Its URL, as the merchant reaches it.
    pub base_url: String,
    /// Sessions, orders and the ground truth.
    pub world: Shared<World>,
    /// "Other operations": reads, disables, create-order, cancel authorization.
    limiter: Shared<Limiter>,
    /// Each create call's own bucket.
    payment_create_limiter: Shared<Limiter>,
    hpp_create_limiter: Shared<Limiter>,
    pub(crate) rng: Shared<Rng>,
    jobs: Jobs,
    http: reqwest::Client,
}

impl Double {
    fn new(config: DoubleConfig, base_url: String) -> Self {
        let http = reqwest::Client::builder()
            .timeout(config.callback_timeout)
            .pool_max_idle_per_host(64)
            .build()
            .unwrap_or_default();
        Self {
            clock: Clock::new(config.start, config.speed),
            limiter: Shared::new(Limiter::new(config.limit)),
            payment_create_limiter: Shared::new(Limiter::new(config.create_limit)),
            hpp_create_limiter: Shared::new(Limiter::new(config.create_limit)),
            rng: Shared::new(Rng::derive(config.seed, u64::MAX)),
            world: Shared::default(),
            jobs: Jobs::default(),
            base_url,
            http,
            config,
        }
    }

    /// The bucket `call` counts against.
    pub(crate) fn limiter_of(&self, call: api::Call) -> &Shared<Limiter> {
        match call {
            api::Call::CreatePaymentSession => &self.payment_create_limiter,
            api::Call::CreateHppSession => &self.hpp_create_limiter,
            _ => &self.limiter,
        }
    }

    /// A fresh UUID-shaped id.
    pub(crate) fn uuid(&self) -> String {
        self.rng.lock().uuid().to_string()
    }

    /// A timestamp as the double writes it ([`DoubleConfig::timestamp_digits`]).
    pub(crate) fn stamp(&self, at: impl AsRef<str>) -> String {
        let text = at.as_ref();
        Timestamp::parse(text).map_or_else(
            |_| text.to_owned(),
            |t| self.config.timestamp_digits.write(t),
        )
    }

    /// A session body's `updated_at` and `expires_at`, as the double writes timestamps.
    pub(crate) fn restamp(&self, body: &mut serde_json::Value) {
        for key in ["updated_at", "expires_at"] {
            if let Some(serde_json::Value::String(text)) = body.get_mut(key) {
                *text = self.stamp(&*text);
            }
        }
    }

    /// A fault drawn with probability `per_mille`.
    pub(crate) fn fault(&self, per_mille: u16) -> bool {
        per_mille > 0 && self.rng.lock().chance(per_mille)
    }
}

/// The double's routes.
pub fn router(double: Arc<Double>) -> Router {
    Router::new()
        .route("/payments/v1/sessions", post(api::create_payment_session))
        .route("/payments/v1/sessions/{id}", get(api::read_payment_session))
        .route(
            "/payments/v1/authorizations/{token}/order",
            post(api::create_order),
        )
        .route(
            "/payments/v1/authorizations/{token}",
            delete(api::cancel_authorization),
        )
        .route("/hpp/v1/sessions", post(api::create_session))
        .route(
            "/hpp/v1/sessions/{id}",
            get(api::read_session).merge(delete(api::disable_session)),
        )
        .route("/hpp/{id}", get(api::open_page))
        .route("/shop/carts/{id}/release", post(shop::release))
        .route("/shop/orders/{id}/record", post(shop::record_order))
        .route("/shop/reviews/{id}", post(shop::review))
        .route("/admin/clock", get(admin::clock))
        .route("/admin/clock/advance", post(admin::advance))
        .route("/admin/truth", get(admin::truth))
        .layer(axum::middleware::from_fn_with_state(
            Arc::clone(&double),
            api::gate,
        ))
        .with_state(double)
}

/// Serves the double on `listener` until the process ends, with its consumers running.
///
/// # Errors
/// The listener's.
pub fn serve(
    listener: tokio::net::TcpListener,
    config: DoubleConfig,
) -> std::io::Result<(Arc<Double>, tokio::task::JoinHandle<()>)> {
    let addr: SocketAddr = listener.local_addr()?;
    let double = Arc::new(Double::new(config, format!("http://{addr}")));
    tokio::spawn(consumers::run(Arc::clone(&double)));
    let app = router(Arc::clone(&double));
    // Header names in Klarna's case (`Content-Type`, `X-Ratelimit-Limit`): Klarna's PHP SDK looks
    // `Content-Type` up case-sensitively, and hyper writes lower case unless told otherwise.
    let server = tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                // Out of file descriptors, say: wait rather than spin.
                tokio::time::sleep(std::time::Duration::from_millis(10)).await;
                continue;
            };
            let service = hyper_util::service::TowerToHyperService::new(app.clone());
            tokio::spawn(async move {
                let _served = hyper::server::conn::http1::Builder::new()
                    .title_case_headers(true)
                    .serve_connection(hyper_util::rt::TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    Ok((double, server))
}
