//! `hpp-replay`: replays a log of what an integrator received from Klarna's Hosted Payment Page
//! through `hpp-session`. See `--help`.

use std::fs::File;
use std::io::{self, BufReader, BufWriter, IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use clap::CommandFactory as _;
use clap::{Args, Parser, Subcommand, ValueEnum};
use hpp_replay::{Callbacks, Config, Error, Format, Options, SAMPLE, Threads};
use hpp_session::diagram::Mermaid;
use hpp_session::{ReadPolicy, TrackerConfig};
use hpp_sim::{SimConfig, Simulator};

/// Replays a log of what an integrator received from Klarna's Hosted Payment Page (status
/// callbacks, reads, 404s) and shows, line by line, what happened, the confirmed status, and
/// what the merchant must do: place the order, record it, release the cart, read the session.
#[derive(Parser)]
#[command(
    name = "hpp-replay",
    version,
    args_conflicts_with_subcommands = true,
    after_help = "\
The log has one JSON object per line, `at` being when it was received:
  {\"at\": RFC3339, \"callback\": {\"event_id\": ID, \"session\": SESSION}}
  {\"at\": RFC3339, \"read\": SESSION}
  {\"at\": RFC3339, \"not_found\": true, \"session_id\": ID}
A line may give \"session_id\" next to a body without one. A line that is not of this form is
`rejected` and the replay goes on.

Exit status: 0 when the log was replayed (rejected lines included), 1 when the input cannot be
read or the output written (and for `check`, when a session differs), 2 on bad usage."
)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    #[command(flatten)]
    replay: ReplayArgs,
}

#[derive(Args)]
struct ReplayArgs {
    /// The log to replay, or `-` for standard input. Without it, the embedded sample.
    file: Option<PathBuf>,
    /// Write JSON: one object per input line, in order (with --summary, one object in all).
    #[arg(long)]
    json: bool,
    /// Write a summary at the end instead of a line per input line: sessions by status,
    /// actions by kind, conflicts, rejected lines, open sessions and when to read them.
    #[arg(long)]
    summary: bool,
    /// How to treat status callbacks: `hint` (unsigned claims that only ask for a read) or
    /// `verified` (you check a per-session secret, so they are evidence like reads).
    #[arg(long, value_enum, default_value_t = Trust::Hint)]
    trust: Trust,
    /// The longest line accepted, in bytes; longer lines are rejected without being stored.
    #[arg(long, default_value_t = 1 << 20, value_name = "BYTES")]
    max_line_bytes: usize,
    /// 1: read, check and apply every line on one thread. 2: read and check lines on a second
    /// thread while the first applies and writes them, in order (the same output, sooner).
    /// [default: 2 on a machine with two or more cores, unless a watched timeline is written
    /// line by line]
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u8).range(1..=2))]
    threads: Option<u8>,
    /// Print the session lifecycle as a Mermaid diagram and exit.
    #[arg(long, exclusive = true)]
    diagram: bool,
}

#[derive(Clone, Copy, ValueEnum)]
enum Trust {
    Hint,
    Verified,
}

#[derive(Subcommand)]
enum Command {
    /// Simulate sessions with Klarna's delivery behaviour and write the log an integrator would
    /// receive to standard output (the integrator reads when its tracker says, in a closed loop
    /// on a test clock). The same seed and options give the same bytes.
    Simulate(SimulateArgs),
    /// Replay LOG and compare each session's merchant actions with EXPECTED (as `simulate
    /// --expected` writes it). Exit status 1 when any session differs.
    Check {
        /// The log to replay.
        log: PathBuf,
        /// The expected actions, one JSON object per session.
        expected: PathBuf,
        /// How to treat status callbacks (see the replay's --trust).
        #[arg(long, value_enum, default_value_t = Trust::Hint)]
        trust: Trust,
        /// Threads to use (see the replay's --threads).
        #[arg(long, value_name = "N", value_parser = clap::value_parser!(u8).range(1..=2))]
        threads: Option<u8>,
    },
}

#[derive(Args)]
struct SimulateArgs {
    /// How many sessions.
    #[arg(long)]
    sessions: u64,
    /// The seed.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Write the expected merchant actions, one line per session, to this file.
    #[arg(long, value_name = "FILE")]
    expected: Option<PathBuf>,
    /// The probability that a callback call never reaches the integrator (Klarna calls again,
    /// up to 4 calls).
    #[arg(long, default_value_t = 0.1, value_parser = probability)]
    loss: f64,
    /// The probability that a call arrives but is acknowledged after Klarna's 3 s timeout, so
    /// Klarna calls again: a duplicate.
    #[arg(long, default_value_t = 0.1, value_parser = probability)]
    slow_ack: f64,
    /// The probability that all four calls of an event fail.
    #[arg(long, default_value_t = 0.02, value_parser = probability)]
    event_loss: f64,
    /// The longest network delay of a call, in seconds (calls overtake each other).
    #[arg(long, default_value_t = 10, value_name = "SECONDS")]
    max_delay: u64,
    /// How the simulated integrator takes status callbacks: as hints (unsigned), or as evidence
    /// once it checked each one's per-session secret (the adversary does not know it: its
    /// callbacks are refused and not logged). Check such a log with `check --trust verified`.
    #[arg(long, value_enum, default_value_t = Trust::Hint)]
    trust: Trust,
    /// The probability that a callback call arrives late, 1 minute to 2 hours after it was made
    /// (after the callbacks of later changes).
    #[arg(long, default_value_t = 0.0, value_parser = probability)]
    late: f64,
    /// The probability that an adversary posts 1–3 forged callbacks to a session.
    #[arg(long, default_value_t = 0.0, value_parser = probability)]
    forged: f64,
    /// The probability that a read fails with a 429 or 5xx (retried after a back-off).
    #[arg(long, default_value_t = 0.0, value_parser = probability)]
    read_failure: f64,
    /// The probability that a consumer's redirect (success, failure, back, cancel, error)
    /// reaches the merchant.
    #[arg(long, default_value_t = 0.5, value_parser = probability)]
    redirect: f64,
    /// The read schedule's guarantee: a `COMPLETED` is confirmed by a read within this many
    /// minutes of its `updated_at` when every callback and redirect is lost (under 60, the
    /// authorization token's life).
    #[arg(long, default_value_t = 45, value_name = "MINUTES")]
    detect_within: u64,
    /// The longest the integrator takes to make a read once it is due, in seconds: blind reads
    /// come that much sooner so the guarantee holds. Default 0, and 60 in fleet mode (reads wait
    /// for the rate budget there).
    #[arg(long, value_name = "SECONDS")]
    poll_lag: Option<u64>,
    /// Disable sessions (and release their carts) that showed no sign of life for this many
    /// minutes (the merchant's own time limit; default: never).
    #[arg(long, value_name = "MINUTES")]
    abandon_after: Option<u64>,
    /// Fleet mode: sessions arrive at this rate (e.g. `1.16/s`, about 100,000 a day) on one
    /// clock, against Klarna's per-merchant rate limiter; prints a report instead of a log, and
    /// exits 1 when the money guarantee was not kept (a token died, a money call was refused, a
    /// `COMPLETED` found late, a due read waited longer than the poll lag for budget, a session
    /// off its oracle or unsettled).
    #[arg(long, value_name = "PER_SECOND", value_parser = rate)]
    rate: Option<f64>,
    /// Fleet mode: Klarna's per-merchant limit on reads, order placement and disables a second
    /// (200 live, 50 in the playground).
    #[arg(long, default_value_t = 200, value_name = "PER_SECOND", value_parser = clap::value_parser!(u32).range(1..))]
    limit: u32,
    /// Fleet mode: the share of the limit the integrator spends on reads (the rest is kept for
    /// placing orders and disabling sessions).
    #[arg(long, default_value_t = 0.8, value_parser = probability)]
    read_share: f64,
    /// Fleet mode: every consumer opens the page at once (default: as people do: 70 % at once,
    /// 20 % 5 seconds to 3 hours later, 5 % twice, 5 % never).
    #[arg(long, requires = "rate")]
    all_open_at_once: bool,
    /// Fleet mode: the report as JSON.
    #[arg(long)]
    json: bool,
}

/// A rate of arrivals: `1.16/s` or `1.16`, above 0 and at most 1000.
fn rate(s: &str) -> Result<f64, String> {
    let number = s.strip_suffix("/s").unwrap_or(s);
    match number.parse::<f64>() {
        Ok(r) if r > 0.0 && r <= 1000.0 => Ok(r),
        _ => Err(format!(
            "{s:?} is not a rate like 1.16/s (above 0, at most 1000)"
        )),
    }
}

/// A probability from 0 to 1.
fn probability(s: &str) -> Result<f64, String> {
    match s.parse::<f64>() {
        Ok(p) if (0.0..=1.0).contains(&p) => Ok(p),
        _ => Err(format!("{s:?} is not a probability from 0 to 1")),
    }
}

/// A probability in per mille, as the simulator takes it.
fn permille(p: f64) -> u16 {
    // In 0..=1 (checked by `probability`), so in 0..=1000.
    #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
    let permille = (p * 1000.0).round() as u16;
    permille
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let stdout = io::stdout();
    let watched = stdout.is_terminal();
    let mut out = BufWriter::with_capacity(64 * 1024, stdout.lock());
    let result = match cli.command {
        Some(Command::Simulate(args)) => simulate(&args, &mut out),
        Some(Command::Check {
            log,
            expected,
            trust,
            threads,
        }) => check(&log, &expected, trust, threads, &mut out),
        None => run(&cli.replay, &mut out, watched).map(|()| ExitCode::SUCCESS),
    };
    match result {
        Ok(code) => code,
        // A reader that stopped early (`| head`) is not an error.
        Err(Error::Output(e)) if e.kind() == io::ErrorKind::BrokenPipe => ExitCode::SUCCESS,
        Err(Error::Output(e)) => {
            eprintln!("hpp-replay: cannot write the output: {e}");
            ExitCode::FAILURE
        }
        Err(Error::Input(e)) => {
            eprintln!("hpp-replay: cannot read the input: {e}");
            ExitCode::FAILURE
        }
    }
}

fn tracker_config(trust: Trust) -> Config {
    Config {
        tracker: TrackerConfig::DEFAULT,
        callbacks: match trust {
            Trust::Hint => Callbacks::Hints,
            Trust::Verified => Callbacks::Verified,
        },
    }
}

/// `--threads`, or the default for this machine.
fn threads_to_use(threads: Option<u8>, flush_each_line: bool) -> Threads {
    match threads {
        Some(1) => Threads::One,
        Some(_) => Threads::Two,
        None => Threads::by_default(flush_each_line),
    }
}

fn open(path: &Path) -> Result<BufReader<File>, Error> {
    File::open(path)
        .map(|f| BufReader::with_capacity(64 * 1024, f))
        .map_err(|e| Error::Input(io::Error::new(e.kind(), format!("{}: {e}", path.display()))))
}

fn simulate(args: &SimulateArgs, out: &mut impl Write) -> Result<ExitCode, Error> {
    let config = SimConfig {
        call_loss: permille(args.loss),
        slow_ack: permille(args.slow_ack),
        event_loss: permille(args.event_loss),
        max_delay: Duration::from_secs(args.max_delay),
        late: permille(args.late),
        forged: permille(args.forged),
        read_failure: permille(args.read_failure),
        redirect: permille(args.redirect),
        ..SimConfig::DEFAULT
    };
    // A usage error like clap's own: the message, the usage, exit status 2.
    let usage = |option: &str, e: hpp_session::PolicyError| -> ! {
        Cli::command()
            .error(
                clap::error::ErrorKind::ValueValidation,
                format!("invalid value for '{option}': {e}"),
            )
            .exit()
    };
    let poll_lag = args
        .poll_lag
        .unwrap_or(if args.rate.is_some() { 60 } else { 0 });
    let reads = ReadPolicy::DEFAULT
        .with_detect_within(Duration::from_secs(args.detect_within.saturating_mul(60)))
        .unwrap_or_else(|e| usage("--detect-within <MINUTES>", e))
        .with_poll_lag(Duration::from_secs(poll_lag))
        .unwrap_or_else(|e| usage("--poll-lag <SECONDS>", e));
    let tracker = TrackerConfig {
        reads,
        abandon_after: args
            .abandon_after
            .map(|m| Duration::from_secs(m.saturating_mul(60))),
        ..TrackerConfig::DEFAULT
    };
    let mut expected: Box<dyn Write> = match &args.expected {
        Some(path) => Box::new(BufWriter::new(File::create(path).map_err(|e| {
            Error::Output(io::Error::new(e.kind(), format!("{}: {e}", path.display())))
        })?)),
        None => Box::new(io::sink()),
    };
    if let Some(rate) = args.rate {
        let fleet = SimConfig {
            arrival_gap: Duration::from_secs_f64(1.0 / rate),
            // Reads fail here only by the fleet's own limiter.
            read_failure: 0,
            ..config
        };
        let report = hpp_replay::fleet::run(
            &Simulator::new(fleet, args.seed),
            hpp_replay::fleet::FleetConfig {
                sessions: args.sessions,
                limit: args.limit,
                read_share: args.read_share,
                money_first: true,
                all_open_at_once: args.all_open_at_once,
                tracker,
            },
        )
        .unwrap_or_else(|e| {
            Cli::command()
                .error(clap::error::ErrorKind::ValueValidation, e.to_string())
                .exit()
        });
        let written = if args.json {
            serde_json::to_writer_pretty(&mut *out, &report)
                .map_err(io::Error::other)
                .and_then(|()| writeln!(out))
        } else {
            write!(out, "{report}")
        };
        written.and_then(|()| out.flush()).map_err(Error::Output)?;
        // A broken guarantee fails the command, so that CI can run it as a check.
        return Ok(if report.kept_the_guarantee() {
            ExitCode::SUCCESS
        } else {
            ExitCode::FAILURE
        });
    }
    let simulator = Simulator::new(config, args.seed);
    let integrator = hpp_sim::drive::Integrator {
        tracker,
        callbacks: match args.trust {
            Trust::Hint => hpp_sim::drive::Callbacks::Hints,
            Trust::Verified => hpp_sim::drive::Callbacks::Verified { leaked: false },
        },
    };
    let stats =
        hpp_replay::simulate::simulate(&simulator, args.sessions, integrator, out, &mut expected)
            .map_err(Error::Output)?;
    eprintln!(
        "hpp-replay: {} sessions, {} lines: {} callbacks ({} forged), {} reads; \
         {} sessions where the closed loop missed the oracle",
        stats.sessions, stats.lines, stats.callbacks, stats.forged, stats.reads, stats.mismatched
    );
    Ok(ExitCode::SUCCESS)
}

fn check(
    log: &Path,
    expected: &Path,
    trust: Trust,
    threads: Option<u8>,
    out: &mut impl Write,
) -> Result<ExitCode, Error> {
    let threads = threads_to_use(threads, false);
    let config = tracker_config(trust);
    let report = hpp_replay::check::check(open(log)?, open(expected)?, config, 1 << 20, threads)?;
    report
        .write_human(out)
        .and_then(|()| out.flush())
        .map_err(Error::Output)?;
    Ok(if report.differing == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

fn run(args: &ReplayArgs, out: &mut impl Write, watched: bool) -> Result<(), Error> {
    if args.diagram {
        return write!(out, "{Mermaid}")
            .and_then(|()| out.flush())
            .map_err(Error::Output);
    }
    let format = match (args.summary, args.json) {
        (false, true) => Format::Json,
        (false, false) => Format::Human,
        (true, true) => Format::SummaryJson,
        (true, false) => Format::SummaryHuman,
    };
    let flush_each_line = Format::flush_each_line(format, watched);
    let options = Options {
        config: tracker_config(args.trust),
        format,
        max_line_bytes: args.max_line_bytes,
        flush_each_line,
        threads: threads_to_use(args.threads, flush_each_line),
    };
    let source = args.file.as_deref();
    if format == Format::Human {
        let name = match source {
            None => "the embedded sample (replay/sample.jsonl)".to_owned(),
            Some(p) if p.as_os_str() == "-" => "standard input".to_owned(),
            Some(p) => p.display().to_string(),
        };
        writeln!(out, "Replaying {name}\n").map_err(Error::Output)?;
    }
    match source {
        None => hpp_replay::replay(SAMPLE.as_bytes(), out, &options),
        Some(p) if p.as_os_str() == "-" => {
            let stdin = BufReader::with_capacity(64 * 1024, io::stdin());
            hpp_replay::replay(stdin, out, &options)
        }
        Some(path) => hpp_replay::replay(open(path)?, out, &options),
    }
    .map(drop)
}
