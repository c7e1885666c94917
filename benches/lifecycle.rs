//! The lifecycle core against two baselines in the same groups: a bare `const` lookup table and
//! a naive `match`. Run: `cargo bench --bench lifecycle`.
//!
//! (a) `random_stream`: 100,000 uniformly random events on one session, reset to WAITING when it
//!     reaches a final status (most events are rejected: the error path is measured too).
//! (b) `journeys`: 10,000 realistic journeys: open, 0–3 retry loops, then authorize / cancel /
//!     disable (every event is accepted).

use std::hint::black_box;

use criterion::{
    BenchmarkGroup, Criterion, Throughput, criterion_group, criterion_main, measurement::WallTime,
};
use hpp_session::{Completion, Event, Session, Status, Timestamp, table};

/// A small deterministic generator (SplitMix64), so every run measures the same input.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

/// Baseline 1: the bare table, as an integrator would hand-write it (255 = no edge).
const BARE: [[u8; 9]; 10] = {
    const N: u8 = 255;
    // Columns: open, authorize, decline, back, cancel, error, timeout, id check, disable.
    [
        [1, N, N, N, N, N, N, N, 7], // WAITING
        [N, 2, 3, 5, 4, 6, 9, 8, 7], // IN_PROGRESS
        [N, N, N, N, N, N, N, N, N], // COMPLETED
        [1, N, N, N, N, N, N, N, 7], // FAILED
        [N, N, N, N, N, N, N, N, N], // CANCELLED
        [1, N, N, N, N, N, N, N, 7], // BACK
        [1, N, N, N, N, N, N, N, 7], // ERROR
        [N, N, N, N, N, N, N, N, N], // DISABLED
        [N, 2, 3, N, 4, 6, 9, N, 7], // MANUAL_ID_CHECK
        [1, N, N, N, N, N, N, N, 7], // TIMEOUT
    ]
};

fn bare_next(status: u8, event: u8) -> u8 {
    BARE[status as usize][event as usize]
}

/// Baseline 2: a naive `match` on (status, event).
fn match_next(status: Status, event: Event) -> Option<Status> {
    use Event as E;
    use Status as S;
    match (status, event) {
        (S::Completed | S::Cancelled | S::Disabled, _) => None,
        (_, E::Disable) => Some(S::Disabled),
        (S::Waiting | S::Failed | S::Back | S::Error | S::Timeout, E::Open) => Some(S::InProgress),
        (S::InProgress | S::ManualIdCheck, E::Authorize) => Some(S::Completed),
        (S::InProgress | S::ManualIdCheck, E::Decline) => Some(S::Failed),
        (S::InProgress, E::GoBack) => Some(S::Back),
        (S::InProgress | S::ManualIdCheck, E::Cancel) => Some(S::Cancelled),
        (S::InProgress | S::ManualIdCheck, E::PaymentError) => Some(S::Error),
        (S::InProgress | S::ManualIdCheck, E::InactivityTimeout) => Some(S::Timeout),
        (S::InProgress, E::RequestIdCheck) => Some(S::ManualIdCheck),
        _ => None,
    }
}

// Each workload is a function of its own, never inlined, so that the instructions of one pass
// can also be counted exactly: `valgrind --tool=callgrind` on this bench's binary (with
// `--bench --profile-time 1`) reports each function's instructions per call, deterministic
// where the times are not (see the README's performance section).

/// Baseline 1: every event through the bare table.
#[inline(never)]
fn bare_table(codes: &[u8]) -> (u8, u32) {
    let mut s = 0u8;
    let mut accepted = 0u32;
    for &e in codes {
        let to = bare_next(s, e);
        if to != 255 {
            s = to;
            accepted += 1;
            if s == 2 || s == 4 || s == 7 {
                s = 0;
            }
        }
    }
    (s, accepted)
}

/// Baseline 2: every event through the naive `match`.
#[inline(never)]
fn naive_match(events: &[Event]) -> (Status, u32) {
    let mut s = Status::Waiting;
    let mut accepted = 0u32;
    for &e in events {
        if let Some(to) = match_next(s, e) {
            s = if to.is_final() { Status::Waiting } else { to };
            accepted += 1;
        }
    }
    (s, accepted)
}

/// The crate's table.
#[inline(never)]
fn table_next(events: &[Event]) -> (Status, u32) {
    let mut s = Status::Waiting;
    let mut accepted = 0u32;
    for &e in events {
        if let Some(to) = table::next(s, e) {
            s = if to.is_final() { Status::Waiting } else { to };
            accepted += 1;
        }
    }
    (s, accepted)
}

/// A `Session`: each event applied with its typed rejection, an authorization with its
/// completion data (borrowed: copied only when accepted), a new session at each final status.
#[inline(never)]
fn session_apply(events: &[Event], token: &Completion, t0: Timestamp) -> (Status, u32) {
    let mut s = Session::new(t0);
    let mut accepted = 0u32;
    for &e in events {
        let step = if e == Event::Authorize {
            s.authorize(token, t0)
        } else {
            s.apply(e, t0)
        };
        if step.is_ok() {
            accepted += 1;
            if s.status().is_final() {
                s = Session::new(t0);
            }
        }
    }
    (s.status(), accepted)
}

fn run_group(g: &mut BenchmarkGroup<'_, WallTime>, events: &[Event]) {
    let t0 = Timestamp::parse("2019-05-13T14:52:57.540Z").unwrap();
    let token = Completion::authorized("a1a8f727-2756-6058-bd3c-40069be0994b").unwrap();
    let codes: Vec<u8> = events.iter().map(|&e| e as u8).collect();
    g.throughput(Throughput::Elements(events.len() as u64));
    // All four agree on what they accept: the same table, four ways.
    let accepted = bare_table(&codes).1;
    assert_eq!(naive_match(events).1, accepted);
    assert_eq!(table_next(events).1, accepted);
    assert_eq!(session_apply(events, &token, t0).1, accepted);

    g.bench_function("baseline_bare_table", |b| {
        b.iter(|| bare_table(black_box(&codes)));
    });
    g.bench_function("baseline_match", |b| {
        b.iter(|| naive_match(black_box(events)));
    });
    g.bench_function("table_next", |b| {
        b.iter(|| table_next(black_box(events)));
    });
    g.bench_function("session_apply", |b| {
        b.iter(|| session_apply(black_box(events), black_box(&token), t0));
    });
}

fn random_stream(c: &mut Criterion) {
    let mut rng = Rng(0x5EED);
    let events: Vec<Event> = (0..100_000)
        .map(|_| Event::ALL[rng.below(9) as usize])
        .collect();
    let mut g = c.benchmark_group("random_stream");
    run_group(&mut g, &events);
    g.finish();
}

fn journeys(c: &mut Criterion) {
    let mut rng = Rng(0x10_0000);
    let mut events = Vec::new();
    for _ in 0..10_000 {
        events.push(Event::Open);
        for _ in 0..rng.below(4) {
            let leave = [
                Event::Decline,
                Event::GoBack,
                Event::PaymentError,
                Event::InactivityTimeout,
            ];
            events.push(leave[rng.below(4) as usize]);
            events.push(Event::Open);
        }
        events.push([Event::Authorize, Event::Cancel, Event::Disable][rng.below(3) as usize]);
    }
    let mut g = c.benchmark_group("journeys");
    run_group(&mut g, &events);
    g.finish();
}

criterion_group!(benches, random_stream, journeys);
criterion_main!(benches);
