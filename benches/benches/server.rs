//! Criterion micro-benchmarks of the server path's CPU work per event that the gRPC ceiling
//! does not do, kept short (3 s per benchmark). The load tool (`annals-bench grpc`) measures
//! the whole path; these isolate one step each.
//!
//! - `content_check`: the check that each event's content is a JSON object (every Commit and
//!   CommitForAggregate makes it), the quick check against `serde_json` alone, over the load
//!   tool's 250-300-byte order-line contents.
//!
//! Run with `cargo bench --profile dev -p annals-bench --bench server`;
//! `cargo test -p annals-bench --benches` runs each once as a smoke test.

use std::hint::black_box;

use annals_bench::data::EventFactory;
use annals_contract::api::convert;
use criterion::{criterion_group, criterion_main, Criterion, Throughput};

mod common;

fn content_check(c: &mut Criterion) {
    let mut factory = EventFactory::new(7);
    let contents: Vec<String> = (0..1_000).map(|_| factory.event().content).collect();
    let bytes: usize = contents.iter().map(String::len).sum();
    let mut group = c.benchmark_group("content_check");
    group.throughput(Throughput::Bytes(u64::try_from(bytes).unwrap_or(u64::MAX)));
    group.bench_function("quick_then_serde", |b| {
        b.iter(|| {
            for content in &contents {
                black_box(convert::content("content", black_box(content))).expect("an object");
            }
        });
    });
    group.bench_function("serde_json_alone", |b| {
        b.iter(|| {
            for content in &contents {
                black_box(convert::content_by_serde("content", black_box(content)))
                    .expect("an object");
            }
        });
    });
    group.finish();
}

criterion_group! {
    name = benches;
    config = common::config();
    targets = content_check
}
criterion_main!(benches);
