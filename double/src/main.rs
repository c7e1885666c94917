//! `klarna-double`: a Klarna double for HPP integrations, on loopback.

use std::time::Duration;

use clap::Parser;
use hpp_session::Timestamp;
use hpp_sim::SimConfig;
use std::sync::Arc;

use hpp_sim::people::Opening;
use hpp_sim::rng::Rng;
use klarna_double::{Double, DoubleConfig, TimestampDigits};

/// A Klarna double for Hosted Payment Page integrations: Klarna's paths and answers, simulated
/// consumers with callbacks and redirects, faults on demand, a test clock, and the ground truth
/// at `GET /admin/truth`.
#[derive(Debug, Parser)]
#[command(version)]
struct Args {
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:8090")]
    listen: String,
    /// Seed of the consumers' histories, the ids and the faults; default: a fresh one, printed
    /// at start (so a second run makes new session ids; give it to repeat a run).
    #[arg(long)]
    seed: Option<u64>,
    /// Simulated seconds per wall-clock second (a 48-hour session lives 172.8 s at 1000).
    #[arg(long, default_value_t = 1.0)]
    speed: f64,
    /// The clock's start (RFC 3339); default: the system clock.
    #[arg(long)]
    start: Option<String>,
    /// "Other operations" a second per merchant: reads, disables, create-order, cancel
    /// authorization, payment-session reads (Klarna: 50 playground, 200 live).
    #[arg(long, default_value_t = 50)]
    limit: u32,
    /// Creations a second per merchant, for each create call apart (Klarna: 5 playground, 40
    /// live).
    #[arg(long, default_value_t = 5)]
    create_limit: u32,
    /// The merchant's Basic username.
    #[arg(long, default_value = "merchant")]
    username: String,
    /// The merchant's Basic password.
    #[arg(long, default_value = "secret")]
    password: String,
    /// Callback calls lost, per mille.
    #[arg(long, default_value_t = 100)]
    call_loss: u16,
    /// Callback calls acknowledged too late (so made again), per mille.
    #[arg(long, default_value_t = 100)]
    slow_ack: u16,
    /// Callback events lost outright, per mille.
    #[arg(long, default_value_t = 20)]
    event_loss: u16,
    /// Longest delay of a callback, simulated seconds (reorders them).
    #[arg(long, default_value_t = 10)]
    max_delay: u64,
    /// Sessions an adversary sends forged callbacks and redirects to, per mille.
    #[arg(long, default_value_t = 0)]
    forged: u16,
    /// Redirects that reach the merchant, per mille.
    #[arg(long, default_value_t = 500)]
    redirect: u16,
    /// Reads answered 500, per mille.
    #[arg(long, default_value_t = 0)]
    server_errors: u16,
    /// Created orders answered 500 all the same, per mille.
    #[arg(long, default_value_t = 0)]
    lost_order_answers: u16,
    /// Create-order requests held before they are carried out, per mille: the order lands
    /// after the client's timeout (see --late-order-delay-ms).
    #[arg(long, default_value_t = 0)]
    late_orders: u16,
    /// How long a late order is held, in milliseconds (longer than the client's timeout).
    #[arg(long, default_value_t = 12_000)]
    late_order_delay_ms: u64,
    /// Reads answered slowly (2 to 5 s, wall clock), per mille.
    #[arg(long, default_value_t = 0)]
    slow_reads: u16,
    /// Reads never answered (held a minute: the client times out), per mille.
    #[arg(long, default_value_t = 0)]
    hung_reads: u16,
    /// The bearer credential each consumer's checkout carries (--checkout-url), e.g. the
    /// service's `HPP_CHECKOUT_TOKEN`.
    #[arg(long, env = "HPP_CHECKOUT_TOKEN", hide_env_values = true)]
    checkout_token: Option<String>,
    /// Reads answered 429 on demand, per mille (as if another client filled the window).
    #[arg(long, default_value_t = 0)]
    throttled: u16,
    /// Consumers arrive at the merchant's shop: POST here to check out (the answer carries
    /// `redirect_url`, in a JSON body or a `Location` header), then open that page.
    #[arg(long)]
    checkout_url: Option<String>,
    /// How many consumers arrive (with --checkout-url).
    #[arg(long, default_value_t = 100)]
    checkouts: u32,
    /// Consumers arriving a second, wall clock (with --checkout-url).
    #[arg(long, default_value_t = 4.0)]
    rate: f64,
    /// With --checkout-url: every consumer opens the page at once (by default they behave as
    /// people do: most at once, some seconds to hours later, some twice, some never).
    #[arg(long)]
    all_open_at_once: bool,
    /// Fractional digits of the timestamps written (Klarna writes 3).
    #[arg(long, value_enum, default_value_t = TimestampDigits::Three)]
    timestamp_digits: TimestampDigits,
}

/// Times a consumer presses the checkout button before giving up (one second apart).
const CHECKOUT_TRIES: u32 = 3;

/// One consumer at the merchant's checkout: presses the button up to [`CHECKOUT_TRIES`] times
/// until the shop answers with a page. `None`: no page (a failed checkout).
async fn check_out(http: &reqwest::Client, url: &str, token: Option<&str>) -> Option<String> {
    for _ in 0..CHECKOUT_TRIES {
        let mut request = http.post(url);
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        let page = match request.send().await {
            Ok(answer) if answer.status().is_success() || answer.status().is_redirection() => {
                let location = answer
                    .headers()
                    .get("location")
                    .and_then(|v| v.to_str().ok())
                    .map(str::to_owned);
                let body: serde_json::Value = answer.json().await.unwrap_or_default();
                location.or_else(|| body["redirect_url"].as_str().map(str::to_owned))
            }
            Ok(answer) => {
                eprintln!("checkout: {url} answered {}", answer.status());
                None
            }
            Err(e) => {
                eprintln!("checkout: {url}: {e}");
                None
            }
        };
        if page.is_some() {
            return page;
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    None
}

/// Consumers arrive at `url`, `rate` a second, and open the page they are sent to (as people
/// do, unless `at_once`); then the verdict ([`klarna_double::world::Truth::line`]) is printed
/// every few seconds until every page to be opened was, and every session opened settled.
async fn shop_at(double: Arc<Double>, url: String, checkouts: u32, rate: f64, at_once: bool) {
    // A shop that accepts the connection and never answers is a failed checkout, not a hang.
    // A shop may answer its checkout with a redirect: its `Location` is the page, not a page
    // for the client to follow.
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap_or_default();
    let gap = Duration::from_secs_f64(1.0 / rate.max(0.001));
    let mut rng = Rng::derive(double.config.seed, u64::MAX - 1);
    let mut failed = 0_u64;
    let mut openings = tokio::task::JoinSet::new();
    for _ in 0..checkouts {
        tokio::time::sleep(gap).await;
        let Some(page) = check_out(&http, &url, double.config.checkout_token.as_deref()).await
        else {
            failed += 1;
            continue;
        };
        let opening = if at_once {
            Opening::Now
        } else {
            Opening::draw(&mut rng)
        };
        let (double, http) = (Arc::clone(&double), http.clone());
        openings.spawn(async move {
            let _opened = double.open_as_a_person(&http, &page, opening).await;
        });
    }
    loop {
        tokio::time::sleep(Duration::from_secs(5)).await;
        while openings.try_join_next().is_some() {}
        let truth = double.world.lock().truth(double.clock.now(), false);
        let line = truth.line(failed);
        if truth.unsettled == 0 && openings.is_empty() {
            eprintln!("settled: {line}");
            return;
        }
        eprintln!("{line}");
    }
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args = Args::parse();
    let start = if let Some(text) = &args.start {
        Timestamp::parse(text)?
    } else {
        let since = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH)?;
        Timestamp::UNIX_EPOCH.saturating_add(since)
    };
    let seed = args.seed.unwrap_or_else(|| {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default();
        now.as_secs() ^ u64::from(now.subsec_nanos()).rotate_left(32)
    });
    let config = DoubleConfig {
        seed,
        speed: args.speed,
        start,
        limit: args.limit,
        create_limit: args.create_limit,
        username: args.username,
        password: args.password,
        sim: SimConfig {
            call_loss: args.call_loss,
            slow_ack: args.slow_ack,
            event_loss: args.event_loss,
            max_delay: Duration::from_secs(args.max_delay),
            forged: args.forged,
            redirect: args.redirect,
            ..SimConfig::DEFAULT
        },
        server_errors: args.server_errors,
        throttled: args.throttled,
        lost_order_answers: args.lost_order_answers,
        late_orders: args.late_orders,
        late_order_delay: Duration::from_millis(args.late_order_delay_ms),
        slow_reads: args.slow_reads,
        hung_reads: args.hung_reads,
        checkout_token: args.checkout_token.clone(),
        timestamp_digits: args.timestamp_digits,
        ..DoubleConfig::default()
    };
    let listener = tokio::net::TcpListener::bind(&args.listen).await?;
    let (double, server) = klarna_double::serve(listener, config)?;
    eprintln!(
        "klarna-double on {} (speed {}, seed {seed}; limits a second: {} other operations, {} \
         per create call)",
        double.base_url,
        double.clock.speed(),
        args.limit,
        args.create_limit,
    );
    if let Some(url) = args.checkout_url {
        let at_once = args.all_open_at_once;
        tokio::spawn(shop_at(
            Arc::clone(&double),
            url,
            args.checkouts,
            args.rate,
            at_once,
        ));
    }
    server.await?;
    Ok(())
}
