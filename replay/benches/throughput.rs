//! The replay tool's throughput on a generated log of at least a million lines, against a
//! baseline in the same run: `serde_json` parsing each line of the same log into
//! `serde::de::IgnoredAny` (the least any JSON-lines tool must do, on one thread). The replay is
//! the binary's own code path with `--json` output to a sink: as the binary runs it on two or
//! more cores (`--threads 2`, the second thread reading and checking lines), and on one thread
//! (`--threads 1`), which is also its cost in CPU time. Run: `cargo bench -p hpp-replay`.

use std::hint::black_box;
use std::io;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use hpp_replay::{Format, Options, Threads, replay, simulate::simulate};
use hpp_session::TrackerConfig;
use hpp_sim::{SimConfig, Simulator};
use serde::de::IgnoredAny;

/// Sessions in the log: 1.10 million lines (217 MB) with seed 1; simulated sessions are mostly
/// reads (the integrator reads each open session every 10 s, backing off to every 10 min).
const SESSIONS: u64 = 11_000;

fn throughput(c: &mut Criterion) {
    let mut log = Vec::new();
    let simulator = Simulator::new(SimConfig::DEFAULT, 1);
    let config = TrackerConfig::DEFAULT;
    let lines = simulate(&simulator, SESSIONS, config, &mut log, &mut io::sink())
        .unwrap()
        .lines;
    assert!(lines >= 1_000_000, "{lines} lines");
    eprintln!(
        "log: {SESSIONS} sessions, {lines} lines, {} bytes",
        log.len()
    );
    let mut g = c.benchmark_group("replay");
    g.sample_size(10);
    g.throughput(Throughput::Bytes(log.len() as u64));
    g.bench_function("baseline_serde_json_ignored_any", |b| {
        b.iter(|| {
            for line in log.split(|&b| b == b'\n').filter(|l| !l.is_empty()) {
                black_box(serde_json::from_slice::<IgnoredAny>(line).unwrap());
            }
        });
    });
    for (name, threads) in [
        ("replay_json_to_sink", Threads::Two),
        ("replay_json_to_sink_one_thread", Threads::One),
    ] {
        let options = Options {
            config: TrackerConfig::DEFAULT.into(),
            format: Format::Json,
            max_line_bytes: 1 << 20,
            flush_each_line: false,
            threads,
        };
        g.bench_function(name, |b| {
            b.iter(|| {
                let r = replay(&log[..], &mut io::sink(), &options).ok().unwrap();
                black_box(r.lines)
            });
        });
    }
    g.finish();
}

criterion_group!(benches, throughput);
criterion_main!(benches);
