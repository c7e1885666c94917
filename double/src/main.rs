//! `klarna-double`: a Klarna double for HPP integrations, on loopback.

use std::time::Duration;

use clap::Parser;
use hpp_session::Timestamp;
use hpp_sim::SimConfig;
use klarna_double::DoubleConfig;

/// A Klarna double for Hosted Payment Page integrations: Klarna's paths and answers, simulated
/// consumers with callbacks and redirects, faults on demand, a test clock, and the ground truth
/// at `GET /admin/truth`.
#[derive(Debug, Parser)]
#[command(version)]
struct Args {
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:8090")]
    listen: String,
    /// Seed of the consumers' histories and of the faults.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Simulated seconds per wall-clock second (a 48-hour session lives 172.8 s at 1000).
    #[arg(long, default_value_t = 1.0)]
    speed: f64,
    /// The clock's start (RFC 3339); default: the system clock.
    #[arg(long)]
    start: Option<String>,
    /// Reads, disables and orders a second per merchant (Klarna: 50 playground, 200 live).
    #[arg(long, default_value_t = 50)]
    limit: u32,
    /// Session creations a second per merchant.
    #[arg(long, default_value_t = 40)]
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
    #[arg(long, default_value_t = 5.0)]
    rate: f64,
}

/// Consumers arrive at `url`, `rate` a second, and open the page they are sent to; then the
/// truth is printed every few seconds until every session settled.
async fn shop_at(url: String, checkouts: u32, rate: f64, truth: String) {
    let http = reqwest::Client::new();
    let gap = Duration::from_secs_f64(1.0 / rate.max(0.001));
    let mut sent = 0;
    while sent < checkouts {
        tokio::time::sleep(gap).await;
        let Ok(answer) = http.post(&url).send().await else {
            eprintln!("checkout: {url} does not answer yet");
            tokio::time::sleep(Duration::from_secs(1)).await;
            continue;
        };
        let location = answer
            .headers()
            .get("location")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        let body: serde_json::Value = answer.json().await.unwrap_or_default();
        let page = location.or_else(|| body["redirect_url"].as_str().map(str::to_owned));
        let Some(page) = page else {
            eprintln!("checkout: no redirect_url in the answer");
            continue;
        };
        let _opened = http.get(&page).send().await;
        sent += 1;
    }
    loop {
        tokio::time::sleep(Duration::from_secs(5)).await;
        let Ok(answer) = http.get(&truth).send().await else {
            continue;
        };
        let t: serde_json::Value = answer.json().await.unwrap_or_default();
        eprintln!(
            "{} sessions: paid {} (one order: {}), orders twice {}, paid released {}, \
             tokens expired {}, to release {} (released once: {}), unsettled {}, wrong {}",
            t["sessions"],
            t["paid"],
            t["paid_with_one_order"],
            t["orders_twice"],
            t["paid_released"],
            t["tokens_expired_unused"],
            t["to_release"],
            t["released_once"],
            t["unsettled"],
            t["wrong"]
        );
        if t["unsettled"] == 0 {
            return;
        }
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
    let config = DoubleConfig {
        seed: args.seed,
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
        ..DoubleConfig::default()
    };
    let listener = tokio::net::TcpListener::bind(&args.listen).await?;
    let (double, server) = klarna_double::serve(listener, config)?;
    eprintln!(
        "klarna-double on {} (speed {})",
        double.base_url,
        double.clock.speed()
    );
    if let Some(url) = args.checkout_url {
        let truth = format!("{}/admin/truth", double.base_url);
        tokio::spawn(shop_at(url, args.checkouts, args.rate, truth));
    }
    server.await?;
    Ok(())
}
