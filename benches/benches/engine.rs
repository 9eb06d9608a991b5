//! Criterion micro-benchmarks of the engine's CPU paths, kept short (3 s per benchmark).
//!
//! Appends use `Durability::Buffered` in a temp dir, so they measure encoding, framing and the
//! group-commit hand-off rather than the disk (the load tool `annals-bench engine` measures
//! durable appends against baselines). Sealing is off so the background compressor does not
//! compete for the CPU. Appends run on both I/O backends (io_uring and std). Reads come from
//! the page cache. Run with `cargo bench --profile dev -p annals-bench`;
//! `cargo test -p annals-bench --benches` runs each once as a smoke test.

use std::{hint::black_box, sync::Arc};

use annals_bench::data::{CommitPool, EventFactory};
use annals_engine::{
    testing::{
        decode_payload,
        format::{encode_frame, parse_frame, FrameParse},
    },
    uuid::Uuid,
    Durability, Engine, EngineConfig, EventLogSequenceNumber, IoBackendChoice, Log, LogConfig,
    RecordBatch, TenantId,
};
use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};

mod common;

/// An engine in a temp dir with buffered appends and no sealing.
struct Fixture {
    log: Arc<Log>,
    _engine: Engine,
    _dir: tempfile::TempDir,
}

fn fixture(io: IoBackendChoice) -> Fixture {
    let dir = tempfile::tempdir().expect("create a temp dir");
    let config = EngineConfig::from(LogConfig {
        durability: Durability::Buffered,
        seal_enabled: false,
        io_backend: io,
        ..LogConfig::new(dir.path().join("engine"))
    });
    let engine = Engine::open(config).expect("open the engine");
    let log = engine
        .tenant_or_create(TenantId(Uuid::from_u128(1)))
        .and_then(|t| t.event_log())
        .expect("open the log");
    Fixture {
        log,
        _engine: engine,
        _dir: dir,
    }
}

fn pool(batch: usize, commits: usize) -> CommitPool {
    let dir = tempfile::tempdir().expect("create a temp dir");
    EventFactory::new(11)
        .pool(1, commits, batch, &dir.path().join("scratch"))
        .expect("build the commit pool")
}

fn append(c: &mut Criterion) {
    let mut group = c.benchmark_group("append_buffered");
    // Both backends: io_uring (the default where the kernel allows it) and std, whose costs
    // differ most for small buffered writes.
    for (io, io_name) in [
        (IoBackendChoice::Auto, "auto"),
        (IoBackendChoice::Std, "std"),
    ] {
        for batch in [1usize, 100] {
            let pool = pool(batch, 64);
            let fx = fixture(io);
            let mut i = 0usize;
            group.throughput(Throughput::Elements(batch as u64));
            group.bench_function(format!("{batch}_events/{io_name}"), |b| {
                b.iter(|| {
                    let prepared = &pool.all()[i % pool.all().len()];
                    i += 1;
                    black_box(fx.log.append(&prepared.commit).expect("append"))
                });
            });
        }
    }
    group.finish();
}

fn read(c: &mut Criterion) {
    const EVENTS: usize = 10_000;
    let pool = pool(1000, EVENTS / 1000);
    let fx = fixture(IoBackendChoice::Auto);
    for prepared in pool.all() {
        fx.log.append(&prepared.commit).expect("append");
    }
    let mut group = c.benchmark_group("read_page_cache");
    group.throughput(Throughput::Elements(EVENTS as u64));
    group.bench_function("10k_events_decoded", |b| {
        // One batch reused across reads, as a catch-up reader does.
        let mut batch = RecordBatch::new();
        b.iter(|| {
            fx.log
                .read_into(EventLogSequenceNumber::ZERO, EVENTS, 64 << 20, &mut batch)
                .expect("read");
            let mut touched = 0usize;
            for view in batch.views() {
                touched += view.expect("decode").content.len();
            }
            assert_eq!(batch.len(), EVENTS);
            black_box(touched)
        });
    });
    group.bench_function("10k_events_fresh_batch_payloads", |b| {
        b.iter(|| {
            let batch = fx
                .log
                .read(EventLogSequenceNumber::ZERO, EVENTS, 64 << 20)
                .expect("read");
            black_box(batch.payloads().map(|(_, p)| p.len()).sum::<usize>())
        });
    });
    // Decoding alone: the batch is read once, outside the timing.
    let batch = fx
        .log
        .read(EventLogSequenceNumber::ZERO, EVENTS, 64 << 20)
        .expect("read");
    group.bench_function("10k_views_decode_only", |b| {
        b.iter(|| {
            let mut touched = 0usize;
            for view in batch.views() {
                touched += view.expect("decode").event_source_id.len();
            }
            black_box(touched)
        });
    });
    group.finish();
}

fn codec(c: &mut Criterion) {
    let pool = pool(100, 1);
    let payload = pool.all()[0].payloads[0].clone();
    let mut group = c.benchmark_group("codec");
    group.throughput(Throughput::Elements(1));
    group.bench_function("frame_encode", |b| {
        b.iter_batched_ref(
            || Vec::with_capacity(payload.len() + 64),
            |out| {
                encode_frame(
                    out,
                    EventLogSequenceNumber(0),
                    64,
                    EventLogSequenceNumber(7),
                    0,
                    0,
                    &payload,
                );
                black_box(out.len())
            },
            BatchSize::SmallInput,
        );
    });
    let mut frame = Vec::new();
    encode_frame(
        &mut frame,
        EventLogSequenceNumber(0),
        64,
        EventLogSequenceNumber(7),
        0,
        0,
        &payload,
    );
    group.bench_function("frame_parse", |b| {
        b.iter(
            || match parse_frame(black_box(&frame), EventLogSequenceNumber(0), 64, 1 << 20) {
                FrameParse::Frame(f) => black_box(f.payload.len()),
                other => panic!("the frame does not parse: {other:?}"),
            },
        );
    });
    group.bench_function("payload_decode_owned", |b| {
        b.iter(|| {
            black_box(
                decode_payload(black_box(&payload))
                    .expect("decode")
                    .content
                    .len(),
            )
        });
    });
    group.finish();
}

criterion_group! {
    name = benches;
    config = common::config();
    targets = append, read, codec
}
criterion_main!(benches);
