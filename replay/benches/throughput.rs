//! The replay tool's throughput on a simulated log of 100,000 sessions (as many as a shop's day:
//! 2.2 million lines, 452 MB with seed 1, far more than any cache holds), against a baseline in
//! the same run: `serde_json` parsing each line of the same log into `serde::de::IgnoredAny`
//! (the least any JSON-lines tool must do, on one thread). The replay is the binary's own code
//! path with `--json` output to a sink: on two threads (`--threads 2`, the second reading and
//! checking lines), and on one (`--threads 1`), which is also its cost in CPU time.
//!
//! Criterion times each; then the three are timed again in turn, three rounds, and the medians
//! are printed as ratios to the baseline of this run (a noisy machine moves all three alike).
//! Run: `cargo bench -p hpp-replay --bench throughput`. CI runs it once with `-- --test` (each
//! case once, no timing), so that a broken assumption below fails CI rather than rotting.

use std::hint::black_box;
use std::io;
use std::time::{Duration, Instant};

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use hpp_replay::{Format, Options, Threads, replay, simulate::simulate};
use hpp_session::TrackerConfig;
use hpp_sim::{SimConfig, Simulator};
use serde::de::IgnoredAny;

/// Sessions in the log: a day of a busy shop. Simulated sessions are mostly reads (the
/// integrator reads each open session every 10 s, backing off to every 10 min).
const SESSIONS: u64 = 100_000;

/// The log: every line a valid log line, and at least a million of them.
fn log() -> Vec<u8> {
    let mut log = Vec::new();
    let simulator = Simulator::new(SimConfig::DEFAULT, 1);
    let stats = simulate(
        &simulator,
        SESSIONS,
        TrackerConfig::DEFAULT,
        &mut log,
        &mut io::sink(),
    )
    .expect("writing to memory");
    assert!(stats.lines >= 1_000_000, "{} lines", stats.lines);
    eprintln!(
        "log: {SESSIONS} sessions, {} lines, {} bytes",
        stats.lines,
        log.len()
    );
    log
}

fn baseline(log: &[u8]) -> u64 {
    let mut lines = 0;
    for line in log.split(|&b| b == b'\n').filter(|l| !l.is_empty()) {
        black_box(serde_json::from_slice::<IgnoredAny>(line).expect("a JSON line"));
        lines += 1;
    }
    lines
}

fn replayed(log: &[u8], threads: Threads) -> u64 {
    let options = Options {
        config: TrackerConfig::DEFAULT.into(),
        format: Format::Json,
        max_line_bytes: 1 << 20,
        flush_each_line: false,
        threads,
    };
    let replayer = replay(log, &mut io::sink(), &options).expect("replaying to a sink");
    // Every line of the simulator's log is one the replay accepts.
    assert_eq!(replayer.rejected, 0, "{:?}", replayer.first_rejected);
    replayer.lines
}

type Case = (&'static str, fn(&[u8]) -> u64);

const CASES: [Case; 3] = [
    ("baseline_serde_json_ignored_any", baseline),
    ("replay_json_to_sink", |log| replayed(log, Threads::Two)),
    ("replay_json_to_sink_one_thread", |log| {
        replayed(log, Threads::One)
    }),
];

fn throughput(c: &mut Criterion) {
    let log = log();
    let lines = baseline(&log);
    let mut g = c.benchmark_group("replay");
    g.sample_size(10);
    g.throughput(Throughput::Bytes(log.len() as u64));
    for (name, case) in CASES {
        g.bench_function(name, |b| b.iter(|| assert_eq!(case(&log), lines)));
    }
    g.finish();
    // Only when benchmarking (`cargo bench` passes `--bench`; `-- --test` and `cargo test
    // --benches` time nothing).
    let args: Vec<String> = std::env::args().collect();
    if args.iter().any(|a| a == "--bench") && !args.iter().any(|a| a == "--test" || a == "--list") {
        ratios(&log);
    }
}

/// The three timed in turn, three rounds; each one's median and its ratio to the baseline's.
fn ratios(log: &[u8]) {
    let mut times: [Vec<Duration>; CASES.len()] = Default::default();
    for _ in 0..3 {
        for ((_, case), times) in CASES.iter().zip(&mut times) {
            let start = Instant::now();
            black_box(case(log));
            times.push(start.elapsed());
        }
    }
    let median = |t: &mut Vec<Duration>| {
        t.sort();
        t[t.len() / 2]
    };
    let base = median(&mut times[0]);
    for ((name, _), times) in CASES.iter().zip(&mut times) {
        let m = median(times);
        eprintln!(
            "replay/{name}: median {m:.2?} of 3 in turn, {:.2}x the baseline of this run",
            m.as_secs_f64() / base.as_secs_f64()
        );
    }
}

criterion_group!(benches, throughput);
criterion_main!(benches);
