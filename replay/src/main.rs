//! `hpp-replay`: replays a log of what an integrator received from Klarna's Hosted Payment Page
//! through `hpp-session`. See `--help`.

use std::fs::File;
use std::io::{self, BufReader, BufWriter, IsTerminal, Write};
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand, ValueEnum};
use hpp_replay::{Error, Format, Options, SAMPLE};
use hpp_session::diagram::Mermaid;
use hpp_session::{CallbackTrust, TrackerConfig};

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
read or the output written, 2 on bad usage."
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
    /// Write a deterministic synthetic log (for benchmarks and trials) to standard output.
    Generate {
        /// How many sessions.
        #[arg(long)]
        sessions: u64,
        /// The seed: the same seed gives the same bytes.
        #[arg(long, default_value_t = 1)]
        seed: u64,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let stdout = io::stdout();
    let watched = stdout.is_terminal();
    let mut out = BufWriter::with_capacity(64 * 1024, stdout.lock());
    let result = match cli.command {
        Some(Command::Generate { sessions, seed }) => {
            hpp_replay::generate::generate(&mut out, sessions, seed)
                .and_then(|_| out.flush())
                .map_err(Error::Output)
        }
        None => run(&cli.replay, &mut out, watched),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
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
    let trust = match args.trust {
        Trust::Hint => CallbackTrust::Hint,
        Trust::Verified => CallbackTrust::Verified,
    };
    let options = Options {
        config: TrackerConfig {
            trust,
            ..TrackerConfig::DEFAULT
        },
        format,
        max_line_bytes: args.max_line_bytes,
        flush_each_line: watched && format == Format::Human,
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
        Some(p) if p.as_os_str() == "-" => hpp_replay::replay(io::stdin().lock(), out, &options),
        Some(path) => {
            let file = File::open(path).map_err(|e| {
                Error::Input(io::Error::new(e.kind(), format!("{}: {e}", path.display())))
            })?;
            hpp_replay::replay(BufReader::with_capacity(64 * 1024, file), out, &options)
        }
    }
    .map(drop)
}
