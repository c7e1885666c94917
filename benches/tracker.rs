//! The tracker: observing one parsed snapshot, and parsing a callback body then observing it,
//! next to parsing alone as the baseline in the same group. Run: `cargo bench --bench tracker`.

use std::hint::black_box;

use criterion::{BatchSize, Criterion, criterion_group, criterion_main};
use hpp_session::wire::CallbackBody;
use hpp_session::{Snapshot, Timestamp, Tracker, TrackerConfig};

/// The merchant's policy, held next to the trackers.
const CFG: TrackerConfig = TrackerConfig::DEFAULT;

const CALLBACK: &str = r#"{"event_id":"27ba32b0-644b-4b22-94a9-dac503bcae18","session":{"session_id":"39a1c773-bafd-754d-af1f-b30c592f1267","status":"COMPLETED","authorization_token":"a1a8f727-2756-6058-bd3c-40069be0994b","updated_at":"2019-05-13T14:54:04.675Z","expires_at":"2019-05-15T13:51:43.507Z"}}"#;
const IN_PROGRESS: &str = r#"{"session_id":"39a1c773-bafd-754d-af1f-b30c592f1267","status":"IN_PROGRESS","updated_at":"2019-05-13T14:52:57.540Z","expires_at":"2019-05-15T13:51:43.507Z"}"#;

fn parse(json: &str) -> Snapshot {
    serde_json::from_str::<hpp_session::wire::SessionBody<'_>>(json)
        .unwrap()
        .snapshot()
        .unwrap()
}

fn observe(c: &mut Criterion) {
    let now = Timestamp::parse("2019-05-13T14:54:05Z").unwrap();
    let completed = serde_json::from_str::<CallbackBody<'_>>(CALLBACK)
        .unwrap()
        .session
        .snapshot()
        .unwrap();
    let mut in_progress = Tracker::default();
    let _ = in_progress
        .observe_read(&CFG, &parse(IN_PROGRESS), now)
        .unwrap();
    let mut done = in_progress.clone();
    let _ = done.observe_read(&CFG, &completed, now).unwrap();

    let mut g = c.benchmark_group("observe");
    // Baseline: copying the tracker, which `advance` below pays for in its (unmeasured) setup
    // and drop.
    g.bench_function("baseline_clone_tracker", |b| {
        b.iter(|| black_box(in_progress.clone()))
    });
    g.bench_function("duplicate_read", |b| {
        let mut t = done.clone();
        b.iter(|| {
            black_box(
                t.observe_read(&CFG, black_box(&completed), now)
                    .unwrap()
                    .outcome(),
            )
        });
    });
    g.bench_function("advance_to_completed", |b| {
        b.iter_batched_ref(
            || in_progress.clone(),
            |t| {
                let r = t.observe_read(&CFG, black_box(&completed), now).unwrap();
                black_box((r.outcome(), t.actions().count()))
            },
            BatchSize::SmallInput,
        );
    });
    g.finish();
}

fn parse_and_observe(c: &mut Criterion) {
    let now = Timestamp::parse("2019-05-13T14:54:05Z").unwrap();
    let mut in_progress = Tracker::default();
    let _ = in_progress
        .observe_read(&CFG, &parse(IN_PROGRESS), now)
        .unwrap();

    let mut g = c.benchmark_group("callback");
    g.bench_function("baseline_parse_serde_json", |b| {
        b.iter(|| {
            black_box(serde_json::from_str::<CallbackBody<'_>>(black_box(CALLBACK)).unwrap())
        });
    });
    g.bench_function("parse_validate_observe_serde_json", |b| {
        b.iter_batched_ref(
            || in_progress.clone(),
            |t| {
                let body = serde_json::from_str::<CallbackBody<'_>>(black_box(CALLBACK)).unwrap();
                let s = body.session.snapshot().unwrap();
                black_box(
                    t.observe_callback(&CFG, body.event_id(), &s, now)
                        .unwrap()
                        .outcome(),
                )
            },
            BatchSize::SmallInput,
        );
    });
    g.bench_function("baseline_parse_serde_json_core", |b| {
        b.iter(|| {
            black_box(serde_json_core::from_str::<CallbackBody<'_>>(black_box(CALLBACK)).unwrap())
        });
    });
    g.bench_function("parse_validate_observe_serde_json_core", |b| {
        b.iter_batched_ref(
            || in_progress.clone(),
            |t| {
                let (body, _) =
                    serde_json_core::from_str::<CallbackBody<'_>>(black_box(CALLBACK)).unwrap();
                let s = body.session.snapshot().unwrap();
                black_box(
                    t.observe_callback(&CFG, body.event_id(), &s, now)
                        .unwrap()
                        .outcome(),
                )
            },
            BatchSize::SmallInput,
        );
    });
    g.finish();
}

criterion_group!(benches, observe, parse_and_observe);
criterion_main!(benches);
