//! The end-to-end harness: the Klarna double (in this process), the reference service as real
//! processes, consumers checking out, and a killer that `kill -9`s them.

#![allow(dead_code)]

pub mod postgres;
pub mod proxy;

use std::fmt::Write as _;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use hpp_sim::SimConfig;
use hpp_sim::people::Opening;
use hpp_sim::rng::Rng;
use klarna_double::DoubleConfig;
use serde_json::Value;

/// One end-to-end run.
#[derive(Clone, Debug)]
pub struct Run {
    /// Sessions checked out.
    pub sessions: u32,
    /// Service processes.
    pub workers: u32,
    /// `postgres://…` or a SQLite path.
    pub database_url: String,
    /// `kill -9` a random process this often (none: never).
    pub kill_every: Option<Duration>,
    /// Checkouts a second (none: as fast as 32 clients go).
    pub rate: Option<f64>,
    /// The double's clock speed.
    pub speed: f64,
    /// Klarna's budget a second (the double's limit and the service's).
    pub budget: u32,
    /// Sessions with forged callbacks and redirects, per mille.
    pub forged: u16,
    /// Reads answered 500, per mille.
    pub server_errors: u16,
    /// Reads answered 429 on demand, per mille.
    pub throttled: u16,
    /// Created orders answered 500, per mille.
    pub lost_order_answers: u16,
    /// The service's hidden sabotage setting.
    pub sabotage: Option<&'static str>,
    /// Give up waiting for every session to settle after this long (wall clock).
    pub settle_within: Duration,
    /// Seed.
    pub seed: u64,
    /// Every consumer opens the page at once (else as people do: later, twice, or never).
    pub all_open_at_once: bool,
    /// The service's timeout on Klarna's calls.
    pub klarna_timeout: Duration,
    /// The service's margin for an order landing after its timeout.
    pub order_landing_margin: Duration,
    /// Create-order requests the double holds past the service's timeout before carrying them
    /// out, per mille (they land within the margin).
    pub late_orders: u16,
    /// Reads the double answers in 2–5 s, and reads it never answers, per mille.
    pub slow_reads: u16,
    /// Reads the double never answers (the service's timeout ends them), per mille.
    pub hung_reads: u16,
    /// The processes sit behind one public URL (a round-robin proxy with health checks) that
    /// Klarna's callbacks and the consumers go through.
    pub behind_a_proxy: bool,
    /// Faults on a schedule (wall clock from the first checkout).
    pub faults: Vec<(Duration, Fault)>,
}

/// A fault the harness causes at a moment of the run.
#[derive(Clone, Copy, Debug)]
pub enum Fault {
    /// PostgreSQL restarted: `fast` or `immediate`.
    RestartPostgres(&'static str),
    /// Process `i` killed for good (`kill -9`, never started again).
    KillForGood(usize),
    /// Process `i` frozen (`SIGSTOP`) for this long, then continued.
    Freeze(usize, Duration),
    /// Process `i` sent `SIGTERM`: it must drain and exit 0; started again after.
    Terminate(usize),
}

/// The credential the harness's consumers present at the checkout.
pub const CHECKOUT_TOKEN: &str = "e2e-checkout-credential";

impl Run {
    /// The defaults of the run: loss, duplicates, reordering, forged callbacks, 5xx,
    /// lost order answers, kills every 3 s, a 200× clock.
    pub fn new(database_url: &str, sessions: u32, workers: u32) -> Self {
        let var = |name: &str| std::env::var(name).ok().and_then(|v| v.parse::<f64>().ok());
        Self {
            sessions,
            workers,
            database_url: database_url.to_owned(),
            // E2E_KILL_MS=0: no kills; E2E_RATE=0: as fast as 32 clients go.
            kill_every: match var("E2E_KILL_MS") {
                Some(ms) if ms <= 0.0 => None,
                Some(ms) => Some(Duration::from_secs_f64(ms / 1_000.0)),
                None => Some(Duration::from_secs(3)),
            },
            rate: match var("E2E_RATE") {
                Some(r) if r <= 0.0 => None,
                Some(r) => Some(r),
                None => Some(60.0),
            },
            speed: 200.0,
            // E2E_BUDGET: Klarna's budget a second (the double's limit and the service's).
            #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
            budget: var("E2E_BUDGET").map_or(3_000, |b| b as u32),
            forged: 200,
            server_errors: 30,
            throttled: 30,
            lost_order_answers: 50,
            sabotage: None,
            // E2E_SETTLE_S: how long to wait for every session to settle (default 3 min).
            settle_within: Duration::from_secs_f64(var("E2E_SETTLE_S").unwrap_or(180.0)),
            seed: 16,
            // E2E_AT_ONCE=1: every consumer opens the page at once.
            all_open_at_once: var("E2E_AT_ONCE").is_some_and(|v| v > 0.0),
            // Short, for a clock 200 times faster than the wall's: 2 s of wall clock is
            // about 7 simulated minutes of a token's 60.
            klarna_timeout: Duration::from_secs(2),
            order_landing_margin: Duration::from_secs(1),
            late_orders: 20,
            slow_reads: 0,
            hung_reads: 0,
            behind_a_proxy: false,
            faults: Vec::new(),
        }
    }
}

/// What a run measured. The verdict is the double's, not the service's.
#[derive(Debug)]
pub struct Report {
    /// The double's ground truth (`GET /admin/truth`).
    pub truth: Value,
    /// Processes killed with `kill -9`.
    pub killed: u32,
    /// Checkouts that failed for good (after retries).
    pub lost_checkouts: u32,
    /// Sessions whose merchant URLs ask Klarna for the authorization token.
    pub urls_with_a_token: usize,
    /// Consumers who checked out and never opened their page (as drawn, or the page did not
    /// answer).
    pub never_opened: u32,
    /// Wall time from the first checkout to the last checkout.
    pub checkout_time: Duration,
    /// Wall time from the first checkout until every session settled (or the wait gave up).
    pub settle_time: Duration,
    /// The service processes' logs, kept when the run went wrong.
    pub logs: Option<std::path::PathBuf>,
    /// Lines the service processes logged.
    pub log_lines: usize,
    /// Log lines that carry an authorization token the double issued.
    pub log_lines_with_a_token: usize,
    /// What the faults did, in order: one line each.
    pub faults: Vec<String>,
    /// `SIGTERM`s answered by exit status 0 within the drain timeout, of those sent.
    pub terminated_cleanly: (u32, u32),
    /// From `/metrics` during the run: the most due reads and pending actions seen, and the
    /// last scrape's (the backlog rose and fell), and how many scrapes answered.
    pub backlog: Backlog,
}

/// The backlog as `/metrics` showed it during a run.
#[derive(Clone, Debug, Default)]
pub struct Backlog {
    /// Scrapes that answered.
    pub scrapes: u32,
    /// The most `hpp_reads_due` seen.
    pub max_due_reads: f64,
    /// The most pending actions (all kinds) seen.
    pub max_pending: f64,
    /// The last scrape's due reads.
    pub last_due_reads: f64,
    /// The last scrape's pending actions.
    pub last_pending: f64,
    /// Each scrape: seconds since the run started, Klarna reads the double answered by then
    /// (its own count, not the service's), and the due reads the service reported.
    pub samples: Vec<(f64, u64, f64)>,
}

impl Backlog {
    /// Klarna reads a second after `since` (seconds into the run), in the half-second intervals
    /// that began and ended with reads due (so the work was there, and the budget or the service
    /// bound the pace): the median, and how many intervals.
    #[must_use]
    pub fn reads_per_second_since(&self, since: f64) -> Option<(f64, usize)> {
        #[allow(clippy::cast_precision_loss)]
        let mut rates: Vec<f64> = self
            .samples
            .windows(2)
            .filter(|w| w[0].0 >= since && w[0].2 >= 1.0 && w[1].2 >= 1.0)
            .map(|w| (w[1].1 - w[0].1) as f64 / (w[1].0 - w[0].0))
            .collect();
        rates.sort_by(f64::total_cmp);
        rates.get(rates.len() / 2).map(|m| (*m, rates.len()))
    }
}

/// The due reads and pending actions in a `/metrics` text.
fn backlog_of(text: &str) -> (f64, f64) {
    let value = |line: &str| {
        line.rsplit(' ')
            .next()
            .and_then(|v| v.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    let due = text
        .lines()
        .filter(|l| l.starts_with("hpp_reads_due "))
        .map(value)
        .sum();
    let pending = text
        .lines()
        .filter(|l| l.starts_with("hpp_actions_pending{"))
        .map(value)
        .sum();
    (due, pending)
}

impl Report {
    /// A field of the truth, as a number.
    pub fn n(&self, field: &str) -> u64 {
        self.truth[field].as_u64().unwrap_or(u64::MAX)
    }

    /// Sessions whose page was first opened 5 minutes or more after creation, that were paid
    /// (an order placed, or Klarna's recorded) and judged right, from the per-session verdicts.
    pub fn late_openers_paid(&self) -> usize {
        let verdicts = self.truth["verdicts"]
            .as_array()
            .map_or(&[][..], Vec::as_slice);
        verdicts
            .iter()
            .filter(|v| v["opened_after_s"].as_f64().is_some_and(|s| s >= 300.0))
            .filter(|v| v["ok"] == true)
            .filter(|v| {
                let expected = v["expected"].as_str().unwrap_or("");
                expected.starts_with("place_order") || expected.starts_with("record_order")
            })
            .count()
    }
}

struct Workers {
    ports: Vec<u16>,
    children: Vec<Option<Child>>,
    args: Vec<String>,
    logs: std::path::PathBuf,
}

impl Workers {
    fn spawn(&mut self, i: usize) {
        let port = self.ports[i];
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.logs.join(format!("worker-{i}.log")))
            .expect("a log file");
        let child = Command::new(env!("CARGO_BIN_EXE_hpp-service"))
            .arg("--listen")
            .arg(format!("127.0.0.1:{port}"))
            .args(&self.args)
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("the service starts");
        self.children[i] = Some(child);
    }

    /// Sends `signal` (`STOP`, `CONT`, `TERM`) to process `i`.
    fn signal(&self, i: usize, signal: &str) {
        if let Some(child) = &self.children[i] {
            let _ = Command::new("kill")
                .arg(format!("-{signal}"))
                .arg(child.id().to_string())
                .status();
        }
    }

    /// Whether process `i` exited, and how: then it is gone.
    fn exited(&mut self, i: usize) -> Option<std::process::ExitStatus> {
        let child = self.children[i].as_mut()?;
        let status = child.try_wait().ok()??;
        self.children[i] = None;
        Some(status)
    }

    fn kill(&mut self, i: usize) {
        if let Some(mut child) = self.children[i].take() {
            // SIGKILL: `kill -9`.
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for Workers {
    fn drop(&mut self) {
        for i in 0..self.children.len() {
            self.kill(i);
        }
    }
}

/// Sessions whose merchant URLs (as the service gave them to Klarna) ask for the
/// authorization token: a token in a URL lands in every access log and proxy on the way.
fn urls_with_a_token(double: &klarna_double::Double) -> usize {
    let world = double.world.lock();
    let with_token = |url: &Option<String>| {
        url.as_deref()
            .is_some_and(|u| u.contains("authorization_token"))
    };
    world
        .sessions
        .values()
        .filter(|s| {
            let u = &s.urls;
            [
                &u.status_update,
                &u.success,
                &u.failure,
                &u.back,
                &u.cancel,
                &u.error,
            ]
            .into_iter()
            .any(with_token)
        })
        .count()
}

/// Every line the service processes logged, and how many carry an authorization token the
/// double issued (any of them, anywhere in the line).
fn tokens_in_logs(double: &klarna_double::Double, logs: &std::path::Path) -> (usize, usize) {
    let tokens: Vec<String> = double.world.lock().tokens.keys().cloned().collect();
    let mut lines = 0;
    let mut with_a_token = 0;
    for entry in std::fs::read_dir(logs).into_iter().flatten().flatten() {
        let text = std::fs::read_to_string(entry.path()).unwrap_or_default();
        for line in text.lines() {
            lines += 1;
            if tokens.iter().any(|t| line.contains(t.as_str())) {
                with_a_token += 1;
            }
        }
    }
    (lines, with_a_token)
}

/// Causes `faults` at their moments from `started`: lines saying what each did, and the
/// `SIGTERM`s answered by exit 0 within the drain timeout, of those sent.
async fn cause_faults(
    faults: Vec<(Duration, Fault)>,
    workers: Arc<Mutex<Workers>>,
    pg: Option<Arc<postgres::Postgres>>,
    started: Instant,
) -> (Vec<String>, (u32, u32)) {
    let mut said = Vec::new();
    let mut terminated = (0, 0);
    for (at, fault) in faults {
        tokio::time::sleep_until((started + at).into()).await;
        let t = started.elapsed().as_secs_f64();
        match fault {
            Fault::RestartPostgres(mode) => {
                if let Some(pg) = pg.clone() {
                    let began = Instant::now();
                    let _ = tokio::task::spawn_blocking(move || pg.restart(mode)).await;
                    said.push(format!(
                        "{t:.1} s: PostgreSQL restarted ({mode}), accepting again after {:.1} s",
                        began.elapsed().as_secs_f64()
                    ));
                }
            }
            Fault::KillForGood(i) => {
                workers.lock().expect("workers").kill(i);
                said.push(format!("{t:.1} s: process {i} killed for good"));
            }
            Fault::Freeze(i, long) => {
                workers.lock().expect("workers").signal(i, "STOP");
                let workers = Arc::clone(&workers);
                tokio::spawn(async move {
                    tokio::time::sleep(long).await;
                    workers.lock().expect("workers").signal(i, "CONT");
                });
                said.push(format!(
                    "{t:.1} s: process {i} frozen for {:.0} s",
                    long.as_secs_f64()
                ));
            }
            Fault::Terminate(i) => {
                workers.lock().expect("workers").signal(i, "TERM");
                let asked = Instant::now();
                let mut code = None;
                while asked.elapsed() < DRAIN_TIMEOUT + Duration::from_secs(5) {
                    if let Some(exit) = workers.lock().expect("workers").exited(i) {
                        code = exit.code();
                        break;
                    }
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
                let took = asked.elapsed();
                {
                    let mut w = workers.lock().expect("workers");
                    w.kill(i);
                    w.spawn(i);
                }
                terminated.1 += 1;
                if code == Some(0) && took <= DRAIN_TIMEOUT {
                    terminated.0 += 1;
                }
                said.push(format!(
                    "{t:.1} s: process {i} sent SIGTERM: exit {code:?} after {:.2} s, started again",
                    took.as_secs_f64()
                ));
            }
        }
    }
    (said, terminated)
}

/// The service processes' drain timeout in these runs.
pub const DRAIN_TIMEOUT: Duration = Duration::from_secs(10);

/// Scrapes `/metrics` at `url` every half second until `done`.
async fn scrape(
    url: String,
    done: Arc<std::sync::atomic::AtomicBool>,
    double: Arc<klarna_double::Double>,
    started: Instant,
) -> Backlog {
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(2))
        .build()
        .expect("a client");
    let mut backlog = Backlog::default();
    while !done.load(std::sync::atomic::Ordering::Relaxed) {
        if let Ok(r) = http.get(&url).send().await
            && r.status().is_success()
            && let Ok(text) = r.text().await
        {
            let (due, pending) = backlog_of(&text);
            backlog.scrapes += 1;
            backlog.max_due_reads = backlog.max_due_reads.max(due);
            backlog.max_pending = backlog.max_pending.max(pending);
            backlog.last_due_reads = due;
            backlog.last_pending = pending;
            let reads = double.world.lock().reads;
            backlog
                .samples
                .push((started.elapsed().as_secs_f64(), reads, due));
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    backlog
}

/// Runs it, with no PostgreSQL restarts.
pub async fn run(cfg: &Run) -> Report {
    run_with(cfg, None).await
}

/// Runs it; `pg` is the server the faults restart.
#[allow(clippy::too_many_lines)]
pub async fn run_with(cfg: &Run, pg: Option<Arc<postgres::Postgres>>) -> Report {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("a port for the double");
    let double_config = DoubleConfig {
        seed: cfg.seed,
        speed: cfg.speed,
        limit: cfg.budget,
        create_limit: 100_000,
        sim: SimConfig {
            forged: cfg.forged,
            ..SimConfig::DEFAULT
        },
        server_errors: cfg.server_errors,
        throttled: cfg.throttled,
        lost_order_answers: cfg.lost_order_answers,
        late_orders: cfg.late_orders,
        // Past the service's timeout, within its margin.
        late_order_delay: cfg.klarna_timeout + cfg.order_landing_margin / 2,
        slow_reads: cfg.slow_reads,
        hung_reads: cfg.hung_reads,
        ..DoubleConfig::default()
    };
    let (double, _server) = klarna_double::serve(listener, double_config).expect("the double");
    let klarna = double.base_url.clone();
    // One directory per run: the runs of one test binary come one after another.
    let logs = std::env::temp_dir().join(format!(
        "hpp-e2e-logs-{}-{}",
        std::process::id(),
        postgres::free_port()
    ));
    std::fs::create_dir_all(&logs).expect("a log directory");
    let mut args = vec![
        "--klarna-url".to_owned(),
        klarna.clone(),
        "--database-url".to_owned(),
        cfg.database_url.clone(),
        "--double-clock".to_owned(),
        "--budget".to_owned(),
        cfg.budget.to_string(),
        "--create-budget".to_owned(),
        "100000".to_owned(),
        "--checkout-token".to_owned(),
        CHECKOUT_TOKEN.to_owned(),
        "--klarna-timeout-ms".to_owned(),
        cfg.klarna_timeout.as_millis().to_string(),
        "--order-landing-margin-ms".to_owned(),
        cfg.order_landing_margin.as_millis().to_string(),
        "--log-json".to_owned(),
        "--abandon-after".to_owned(),
        "60".to_owned(),
        "--poll-lag".to_owned(),
        "300".to_owned(),
        "--drain-timeout".to_owned(),
        DRAIN_TIMEOUT.as_secs().to_string(),
        // Behind the harness's proxy, which fails over on a refused connection.
        "--drain-grace".to_owned(),
        "2".to_owned(),
    ];
    if let Some(s) = cfg.sabotage {
        args.extend(["--sabotage".to_owned(), s.to_owned()]);
    }
    let n = cfg.workers as usize;
    let ports: Vec<u16> = (0..n).map(|_| postgres::free_port()).collect();
    // Behind one public URL: Klarna's callbacks and the consumers come through the proxy.
    let entrances = if cfg.behind_a_proxy {
        let proxy = proxy::start(ports.clone()).await;
        args.extend([
            "--public-url".to_owned(),
            format!("http://127.0.0.1:{proxy}"),
        ]);
        vec![proxy]
    } else {
        ports.clone()
    };
    let mut workers = Workers {
        ports,
        children: (0..n).map(|_| None).collect(),
        args,
        logs: logs.clone(),
    };
    for i in 0..n {
        workers.spawn(i);
    }
    let ports = entrances;
    let workers = Arc::new(Mutex::new(workers));
    let started = Instant::now();
    let done = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let faults = tokio::spawn(cause_faults(
        cfg.faults.clone(),
        Arc::clone(&workers),
        pg,
        started,
    ));
    let scraper = tokio::spawn(scrape(
        format!("http://127.0.0.1:{}/metrics", ports[0]),
        Arc::clone(&done),
        Arc::clone(&double),
        started,
    ));
    let killer = cfg.kill_every.map(|every| {
        tokio::spawn(killer(
            Arc::clone(&workers),
            Arc::clone(&done),
            every,
            cfg.seed,
        ))
    });
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(5))
        .build()
        .expect("a client");
    let (lost_checkouts, never_opened) = check_out(cfg, &double, &http, &ports, started).await;
    let checkout_time = started.elapsed();
    let truth_url = format!("{klarna}/admin/truth");
    let mut truth = settled(&http, &truth_url, cfg).await;
    let settle_time = started.elapsed();
    done.store(true, std::sync::atomic::Ordering::Relaxed);
    let kills = match killer {
        Some(k) => k.await.unwrap_or(0),
        None => 0,
    };
    let (faults, terminated_cleanly) = faults.await.unwrap_or_default();
    let backlog = scraper.await.unwrap_or_default();
    // A last look, with every session's verdict, once the dust settled.
    if let Ok(r) = http.get(format!("{truth_url}?sessions=true")).send().await
        && let Ok(t) = r.json::<Value>().await
    {
        truth = t;
    }
    drop(workers);
    let (log_lines, log_lines_with_a_token) = tokens_in_logs(&double, &logs);
    // The processes' logs are kept for a run that went wrong, and removed otherwise.
    let logs = if truth["wrong"] == 0 && truth["unsettled"] == 0 {
        let _ = std::fs::remove_dir_all(&logs);
        None
    } else {
        eprintln!("the service processes' logs: {}", logs.display());
        Some(logs)
    };
    Report {
        logs,
        truth,
        urls_with_a_token: urls_with_a_token(&double),
        log_lines,
        log_lines_with_a_token,
        faults,
        terminated_cleanly,
        backlog,
        killed: kills,
        lost_checkouts,
        never_opened,
        checkout_time,
        settle_time,
    }
}

/// `kill -9`s a random process every few seconds (the period, give or take half of it) and
/// starts it again, until `done`; how many it killed.
async fn killer(
    workers: Arc<Mutex<Workers>>,
    done: Arc<std::sync::atomic::AtomicBool>,
    every: Duration,
    seed: u64,
) -> u32 {
    let mut rng = Rng::new(seed);
    let mut killed = 0;
    while !done.load(std::sync::atomic::Ordering::Relaxed) {
        let jitter =
            every.mul_f64(f64::from(u32::try_from(rng.range(0, 1000)).unwrap_or(0)) / 1000.0);
        tokio::time::sleep(every / 2 + jitter).await;
        let mut w = workers.lock().expect("workers");
        let i = usize::try_from(rng.range(0, w.children.len() as u64)).unwrap_or(0);
        w.kill(i);
        w.spawn(i);
        killed += 1;
    }
    killed
}

/// Consumers check out at the rate, on any process (a load balancer's round robin, moving on
/// when one does not answer), and open the page they are sent to as people do
/// ([`hpp_sim::Simulator::opening`]: at once, hours later, twice, or never); returns how many
/// gave up, and how many checked out and never opened their page. It returns once every page
/// to be opened was.
async fn check_out(
    cfg: &Run,
    double: &Arc<klarna_double::Double>,
    http: &reqwest::Client,
    ports: &[u16],
    started: Instant,
) -> (u32, u32) {
    let ports = ports.to_vec();
    let lost = Arc::new(std::sync::atomic::AtomicU32::new(0));
    let limit = Arc::new(tokio::sync::Semaphore::new(32));
    let mut checkouts = tokio::task::JoinSet::new();
    let never = Arc::new(std::sync::atomic::AtomicU32::new(0));
    // The simulator's people, apart from the double's histories (which take the same seed).
    let people = hpp_sim::Simulator::new(SimConfig::DEFAULT, cfg.seed);
    for i in 0..cfg.sessions {
        if let Some(rate) = cfg.rate {
            let due = started + Duration::from_secs_f64(f64::from(i) / rate);
            tokio::time::sleep_until(due.into()).await;
        }
        let opening = if cfg.all_open_at_once {
            Opening::Now
        } else {
            people.opening(u64::from(i))
        };
        let permit = Arc::clone(&limit).acquire_owned().await.expect("a permit");
        let (http, ports, lost) = (http.clone(), ports.clone(), Arc::clone(&lost));
        let never = Arc::clone(&never);
        let double = Arc::clone(double);
        checkouts.spawn(async move {
            for attempt in 0..50_usize {
                let port = ports[(i as usize + attempt) % ports.len()];
                let answer = http
                    .post(format!("http://127.0.0.1:{port}/checkout"))
                    .bearer_auth(CHECKOUT_TOKEN)
                    .send()
                    .await;
                let Ok(answer) = answer else {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                };
                if answer.status().as_u16() != 201 {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
                let Ok(body) = answer.json::<Value>().await else {
                    continue;
                };
                let Some(url) = body["redirect_url"].as_str() else {
                    continue;
                };
                // Checked out: the next consumer may press the button while this one opens
                // the page, perhaps hours later.
                drop(permit);
                if !double.open_as_a_person(&http, url, opening).await {
                    never.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                }
                return;
            }
            lost.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        });
    }
    checkouts.join_all().await;
    let never = never.load(std::sync::atomic::Ordering::Relaxed);
    (lost.load(std::sync::atomic::Ordering::Relaxed), never)
}

/// The double's truth once every session the consumers opened has settled (or the wait gave
/// up: then the last truth seen).
async fn settled(http: &reqwest::Client, truth_url: &str, cfg: &Run) -> Value {
    let deadline = Instant::now() + cfg.settle_within;
    let mut truth = Value::Null;
    while Instant::now() < deadline {
        if let Ok(r) = http.get(truth_url).send().await
            && let Ok(t) = r.json::<Value>().await
        {
            // Settled; or a session is wrong already, and no wait will mend it.
            let settled = t["unsettled"].as_u64() == Some(0) || t["wrong"].as_u64() > Some(0);
            truth = t;
            if settled {
                break;
            }
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    truth
}

/// The report as the table, plus what went wrong, per session.
pub fn describe(cfg: &Run, r: &Report) -> String {
    let t = &r.truth;
    let mut s = format!(
        "{} sessions, {} processes on {}, {} killed with kill -9; checkouts took {:.1} s, \
         all settled after {:.1} s\n",
        cfg.sessions,
        cfg.workers,
        if cfg.database_url.starts_with("postgres") {
            "PostgreSQL"
        } else {
            "SQLite"
        },
        r.killed,
        r.checkout_time.as_secs_f64(),
        r.settle_time.as_secs_f64(),
    );
    for field in [
        "sessions",
        "not_opened",
        "paid",
        "paid_with_one_order",
        "orders_twice",
        "paid_released",
        "tokens_expired_unused",
        "to_release",
        "released_once",
        "klarna_orders",
        "reviews",
        "unsettled",
        "wrong",
        "over_limit",
        "order_delay_s",
        "reads",
        "throttled",
        "callbacks",
        "callbacks_acknowledged",
        "redirects",
    ] {
        let _ = writeln!(s, "  {field}: {}", t[field]);
    }
    let _ = writeln!(s, "  lost checkouts: {}", r.lost_checkouts);
    let _ = writeln!(
        s,
        "  log lines: {}, with a token: {}",
        r.log_lines, r.log_lines_with_a_token
    );
    let _ = writeln!(s, "  callback_ms (p50, p99, max): {}", t["callback_ms"]);
    let b = &r.backlog;
    let _ = writeln!(
        s,
        "  /metrics ({} scrapes): due reads max {}, last {}; pending actions max {}, last {}",
        b.scrapes, b.max_due_reads, b.last_due_reads, b.max_pending, b.last_pending
    );
    for fault in &r.faults {
        let _ = writeln!(s, "  fault: {fault}");
    }
    let died = cfg.faults.iter().find_map(|(at, fault)| match fault {
        Fault::KillForGood(process) => Some((at.as_secs_f64(), *process)),
        _ => None,
    });
    if let Some((since, process)) = died
        && let Some((rate, intervals)) = r.backlog.reads_per_second_since(since)
    {
        let _ = writeln!(
            s,
            "  Klarna reads a second after process {process} died, while reads were due: median \
             {rate:.1} ({intervals} half-second intervals; the budget {} a second)",
            cfg.budget
        );
    }
    let _ = writeln!(s, "  never opened (as drawn): {}", r.never_opened);
    if let Some(verdicts) = t["verdicts"].as_array() {
        for v in verdicts
            .iter()
            .filter(|v| v["ok"] != Value::Bool(true))
            .take(10)
        {
            let _ = writeln!(s, "  not ok: {v}");
        }
    }
    s
}
