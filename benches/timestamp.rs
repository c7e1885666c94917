//! Parsing timestamps: Klarna's own form (`YYYY-MM-DDTHH:MM:SS.mmmZ`, read at fixed positions)
//! and another RFC 3339 form (read by the general grammar), each next to the `time` crate's RFC
//! 3339 parser on the same text as the baseline. Run: `cargo bench --bench timestamp`.

use std::hint::black_box;

use criterion::{Criterion, criterion_group, criterion_main};
use hpp_session::Timestamp;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

fn parse(c: &mut Criterion) {
    for (name, text) in [
        ("klarna_form", "2019-05-13T14:54:04.675Z"),
        ("offset_form", "2019-05-13T16:54:04.675123+02:00"),
    ] {
        let mut g = c.benchmark_group(format!("timestamp_{name}"));
        g.bench_function("baseline_time_rfc3339", |b| {
            b.iter(|| OffsetDateTime::parse(black_box(text), &Rfc3339).unwrap());
        });
        g.bench_function("timestamp_parse", |b| {
            b.iter(|| Timestamp::parse(black_box(text)).unwrap());
        });
        g.finish();
    }
}

criterion_group!(benches, parse);
criterion_main!(benches);
