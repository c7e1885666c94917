//! `hpp-service`: the reference HPP service, a sidecar beside the shop.

use std::sync::Arc;
use std::time::Duration;

use clap::Parser;
use hpp_service::clock::Clock;
use hpp_service::klarna::{Budget, Klarna, Rates};
use hpp_service::shop::Shop;
use hpp_service::store::{Options, Sabotage, Store};
use hpp_service::{App, http, worker};
use hpp_session::{ReadPolicy, TrackerConfig};

/// The reference service for Klarna's Hosted Payment Page, beside a shop in any language: a
/// checkout, the status-callback and redirect endpoints, a poller and an executor that calls the
/// shop's endpoints exactly once, on SQLite (one process) or PostgreSQL (several).
///
/// Every setting is a flag or an environment variable (`HPP_…`; Klarna's credentials
/// `KLARNA_USERNAME` and `KLARNA_PASSWORD`). SIGTERM or SIGINT drains: it stops claiming work,
/// finishes what is in hand within `--drain-timeout`, and exits 0.
#[derive(Debug, Parser)]
#[command(version)]
struct Args {
    /// Address to listen on.
    #[arg(long, env = "HPP_LISTEN", default_value = "127.0.0.1:8080")]
    listen: String,
    /// The URL Klarna and the consumers' browsers reach this service at (default: from --listen).
    #[arg(long, env = "HPP_PUBLIC_URL")]
    public_url: Option<String>,
    /// Klarna's API: `https://api.playground.klarna.com` (test), `https://api.klarna.com`
    /// (live, Europe), or the double's URL.
    #[arg(long, env = "HPP_KLARNA_URL", default_value = "http://127.0.0.1:8090")]
    klarna_url: String,
    /// Klarna API username.
    #[arg(long, env = "KLARNA_USERNAME", default_value = "merchant")]
    username: String,
    /// Klarna API password.
    #[arg(
        long,
        env = "KLARNA_PASSWORD",
        default_value = "secret",
        hide_env_values = true
    )]
    password: String,
    /// The credential `POST /checkout` must carry (`Authorization: Bearer …`); required: anyone
    /// who reaches the service could otherwise spend the merchant's Klarna budget.
    #[arg(long, env = "HPP_CHECKOUT_TOKEN", hide_env_values = true)]
    checkout_token: String,
    /// The merchant's shop (carts and order book); default: the Klarna URL (the double plays it).
    #[arg(long, env = "HPP_SHOP_URL")]
    shop_url: Option<String>,
    /// `postgres://…` for PostgreSQL (several processes may share it), else a SQLite file (one
    /// process: a second one is refused).
    #[arg(long, env = "HPP_DATABASE_URL", default_value = "hpp-service.db")]
    database_url: String,
    /// Take `now` from the Klarna double's clock (tests) instead of the system clock.
    #[arg(long, env = "HPP_DOUBLE_CLOCK")]
    double_clock: bool,
    /// Klarna's budget for reads, disables and create-order together, requests a second for
    /// the merchant (50 playground, 200 live); on PostgreSQL every process shares it.
    #[arg(long, env = "HPP_BUDGET", default_value_t = 50)]
    budget: u32,
    /// Klarna's budget for each create call (payment sessions, HPP sessions), a second (5
    /// playground, 40 live).
    #[arg(long, env = "HPP_CREATE_BUDGET", default_value_t = 5)]
    create_budget: u32,
    /// Share of the budget for reads; money calls get the rest.
    #[arg(long, env = "HPP_READ_SHARE", default_value_t = 0.8)]
    read_share: f64,
    /// How long a call to Klarna may take, in milliseconds.
    #[arg(long, env = "HPP_KLARNA_TIMEOUT_MS", default_value_t = 10_000)]
    klarna_timeout_ms: u64,
    /// How long after its timeout an order request may still land at Klarna, in milliseconds:
    /// no order is placed again before an earlier attempt's timeout plus this.
    #[arg(long, env = "HPP_ORDER_LANDING_MARGIN_MS", default_value_t = 20_000)]
    order_landing_margin_ms: u64,
    /// Disable a session after this many minutes without a status change (0: never). Applies
    /// to sessions already stored.
    #[arg(long, env = "HPP_ABANDON_AFTER", default_value_t = 120)]
    abandon_after: u64,
    /// How late a due read may be performed, in seconds (the guarantee allows for it). Applies
    /// to sessions already stored.
    #[arg(long, env = "HPP_POLL_LAG", default_value_t = 60)]
    poll_lag: u64,
    /// On SIGTERM or SIGINT, how long to finish the work in hand before exiting, in seconds
    /// (what is left is taken over by another process, or by this one when it starts again).
    #[arg(long, env = "HPP_DRAIN_TIMEOUT", default_value_t = 30)]
    drain_timeout: u64,
    /// On SIGTERM or SIGINT, how long to go on answering HTTP (callbacks, redirects, checkouts)
    /// with `/readyz` at 503 before the listener closes, in seconds: the time a load balancer
    /// takes to see it and route elsewhere. Within the drain timeout.
    #[arg(long, env = "HPP_DRAIN_GRACE", default_value_t = 5)]
    drain_grace: u64,
    /// Log as JSON lines (one object per event, with its session's span) instead of text.
    #[arg(long, env = "HPP_LOG_JSON")]
    log_json: bool,
    /// Test only: deliberately broken claims, for the end-to-end test's sabotage check.
    #[arg(long, value_enum, default_value_t = Sabotage::None, hide = true)]
    sabotage: Sabotage,
}

/// Crates whose debug logs would carry secrets (statement parameters with trackers and tokens,
/// create-order's URL with its token): held at `info` whatever `HPP_LOG` says.
const QUIET: [&str; 5] = [
    "tokio_postgres=info",
    "reqwest=info",
    "hyper=info",
    "hyper_util=info",
    "h2=info",
];

fn logs(json: bool) {
    let mut filter = tracing_subscriber::EnvFilter::try_from_env("HPP_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    for directive in QUIET {
        if let Ok(d) = directive.parse() {
            filter = filter.add_directive(d);
        }
    }
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    if json {
        builder.json().with_current_span(true).init();
    } else {
        builder.init();
    }
}

/// SIGTERM or SIGINT.
async fn stop_signal() {
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    tokio::select! {
        () = term => tracing::info!("SIGTERM: draining"),
        _ = tokio::signal::ctrl_c() => tracing::info!("SIGINT: draining"),
    }
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let args = Args::parse();
    logs(args.log_json);
    // Asked to stop from the start: while migrating too.
    let (stop, stopping) = tokio::sync::watch::channel(false);
    tokio::spawn(async move {
        stop_signal().await;
        let _ = stop.send(true);
    });
    match run(args, stopping).await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!(error = %e, "hpp-service stopped");
            std::process::ExitCode::FAILURE
        }
    }
}

async fn run(
    args: Args,
    mut stopping: tokio::sync::watch::Receiver<bool>,
) -> Result<(), Box<dyn std::error::Error>> {
    if args.checkout_token.trim().is_empty() {
        return Err(
            "HPP_CHECKOUT_TOKEN (--checkout-token) is empty: set a long random credential".into(),
        );
    }
    let listener = tokio::net::TcpListener::bind(&args.listen)
        .await
        .map_err(|e| format!("cannot listen on {}: {e}", args.listen))?;
    let public_url = args
        .public_url
        .unwrap_or_else(|| format!("http://{}", args.listen));
    let reads = ReadPolicy::DEFAULT.with_poll_lag(Duration::from_secs(args.poll_lag))?;
    let tracker = TrackerConfig {
        reads,
        abandon_after: (args.abandon_after > 0)
            .then(|| Duration::from_secs(args.abandon_after * 60)),
        ..TrackerConfig::DEFAULT
    };
    let timeout = Duration::from_millis(args.klarna_timeout_ms);
    let margin = Duration::from_millis(args.order_landing_margin_ms);
    let options = Options {
        config: tracker,
        // Longer than a read or a Klarna call takes, short beside a token's hour: a frozen
        // process's claims are taken over after it (a holder taken over is fenced at its
        // attempt, so a shorter lease than an action repeats work, never an order).
        lease: timeout.saturating_mul(2) + margin,
        sabotage: args.sabotage,
    };
    let store = tokio::select! {
        store = Store::open(&args.database_url, options) => store?,
        _ = stopping.wait_for(|s| *s) => {
            tracing::info!("stopped before the store was open");
            return Ok(());
        }
    };
    let rates = Rates::new(args.budget, args.read_share, args.create_budget);
    let budget = match store.shared_budget() {
        Some(budget) => Budget::Shared { budget, rates },
        None => Budget::process(rates),
    };
    let app = Arc::new(App {
        health: hpp_service::Health::default(),
        checkout_token: args.checkout_token,
        order_landing_margin: margin,
        metrics: Some(hpp_service::metrics::install()?),
        store,
        klarna: Klarna::new(
            &args.klarna_url,
            &args.username,
            &args.password,
            budget,
            timeout,
        ),
        shop: Shop::new(args.shop_url.as_deref().unwrap_or(&args.klarna_url)),
        clock: if args.double_clock {
            Clock::double(&args.klarna_url)
        } else {
            Clock::System
        },
        tracker,
        public_url,
        sabotage: args.sabotage,
    });
    let poller = tokio::spawn(worker::poll(Arc::clone(&app), stopping.clone()));
    let executor = tokio::spawn(worker::execute(Arc::clone(&app), stopping.clone()));
    tracing::info!(
        listen = %listener.local_addr()?,
        database = if args.database_url.starts_with("postgres") { "postgresql" } else { "sqlite" },
        reads_per_s = rates.reads,
        money_per_s = rates.money,
        creates_per_s = rates.creates,
        "hpp-service started"
    );
    let mut http_stopping = stopping.clone();
    // Draining, the listener stays open for the grace (readyz says 503 meanwhile), so a load
    // balancer routes elsewhere before connections are refused.
    let grace = Duration::from_secs(args.drain_grace.min(args.drain_timeout));
    let server =
        axum::serve(listener, http::router(Arc::clone(&app))).with_graceful_shutdown(async move {
            let _ = http_stopping.wait_for(|s| *s).await;
            tokio::time::sleep(grace).await;
            tracing::info!("closing the listener");
        });
    let server = tokio::spawn(async move { server.await });
    let _ = stopping.wait_for(|s| *s).await;
    app.health.drain();
    let drain = Duration::from_secs(args.drain_timeout);
    let drained = tokio::time::timeout(drain, async {
        let _ = poller.await;
        let _ = executor.await;
        let _ = server.await;
    })
    .await;
    if drained.is_ok() {
        tracing::info!("drained: exiting");
    } else {
        tracing::warn!(
            seconds = args.drain_timeout,
            "drain timed out: what is still in hand is left to be claimed again (at once on \
             PostgreSQL, when this process's liveness lock goes with it)"
        );
    }
    Ok(())
}
