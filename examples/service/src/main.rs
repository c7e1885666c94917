//! `hpp-service`: the reference HPP service.

use std::sync::Arc;
use std::time::Duration;

use clap::Parser;
use hpp_service::clock::Clock;
use hpp_service::klarna::{Budget, Klarna};
use hpp_service::shop::Shop;
use hpp_service::store::{Sabotage, Store};
use hpp_service::{App, http, worker};
use hpp_session::{ReadPolicy, TrackerConfig};

/// The reference service for Klarna's Hosted Payment Page: a checkout, the status-callback and
/// redirect endpoints, a poller and an executor, on SQLite (one process) or PostgreSQL (several).
#[derive(Debug, Parser)]
#[command(version)]
struct Args {
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:8080")]
    listen: String,
    /// The URL Klarna and the consumers' browsers reach this service at (default: from --listen).
    #[arg(long)]
    public_url: Option<String>,
    /// Klarna's API (the double's URL in tests).
    #[arg(long, default_value = "http://127.0.0.1:8090")]
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
    /// The merchant's shop (carts and order book); default: the Klarna URL (the double plays it).
    #[arg(long)]
    shop_url: Option<String>,
    /// `postgres://…` for PostgreSQL (several processes may share it), else a SQLite file.
    #[arg(long, default_value = "hpp-service.db")]
    database_url: String,
    /// Take `now` from the Klarna double's clock (tests) instead of the system clock.
    #[arg(long)]
    double_clock: bool,
    /// Klarna's budget: requests a second for the merchant (50 playground, 200 live).
    #[arg(long, default_value_t = 50)]
    budget: u32,
    /// Share of the budget for reads; money calls get the rest.
    #[arg(long, default_value_t = 0.8)]
    read_share: f64,
    /// Processes sharing the budget (each takes an even part).
    #[arg(long, default_value_t = 1)]
    processes: u32,
    /// Disable a session after this many minutes without a status change (0: never).
    #[arg(long, default_value_t = 120)]
    abandon_after: u64,
    /// How late a due read may be performed, in seconds (the guarantee allows for it).
    #[arg(long, default_value_t = 60)]
    poll_lag: u64,
    /// Test only: deliberately broken claims, for the end-to-end test's sabotage check.
    #[arg(long, value_enum, default_value_t = Sabotage::None, hide = true)]
    sabotage: Sabotage,
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args = Args::parse();
    let listener = tokio::net::TcpListener::bind(&args.listen).await?;
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
    let app = Arc::new(App {
        store: Store::open(&args.database_url, args.sabotage, tracker).await?,
        klarna: Klarna::new(
            &args.klarna_url,
            &args.username,
            &args.password,
            Budget::new(args.budget, args.read_share, args.processes),
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
    tokio::spawn(worker::poll(Arc::clone(&app)));
    tokio::spawn(worker::execute(Arc::clone(&app)));
    eprintln!("hpp-service on {}", listener.local_addr()?);
    axum::serve(listener, http::router(app)).await?;
    Ok(())
}
