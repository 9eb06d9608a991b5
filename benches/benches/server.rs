//! Criterion micro-benchmarks of the server path's CPU work per event that the gRPC ceiling
//! does not do, kept short (3 s per benchmark). The load tool (`annals-bench grpc`) measures
//! the whole path; these isolate one step each.
//!
//! - `content_check`: the check that each event's content is a JSON object (every Commit and
//!   CommitForAggregate makes it), the quick check against `serde_json` alone, over the load
//!   tool's 250-300-byte order-line contents.
//! - `commit_answer`: a Commit's answer for 100 of the load tool's events, built and encoded
//!   as the contract's messages against prepared while the commit is on its way to disk and
//!   numbered after (`prepare_and_encode`), and the part of that left once the commit is
//!   acknowledged (`after_the_ack`: numbering and writing the response's bytes).
//! - `aggregate_answer`: a CommitForAggregate's answer for 100 of the load tool's events,
//!   built and encoded as the contract's messages against prepared while the commit is on its
//!   way to disk and numbered after (`prepare_and_encode`,
//!   `api::committed::PreparedAggregateAnswer`).
//! - `commit_request`: a Commit request of 100 of the load tool's events decoded and its events
//!   checked, by prost into the contract's messages and then `convert` (`prost_then_convert`,
//!   what the generated server does) against the Commit rpc's one pass (`one_pass`,
//!   `api::commit_request`).
//!
//! Run with `cargo bench --profile dev -p annals-bench --bench server`;
//! `cargo test -p annals-bench --benches` runs each once as a smoke test.

use std::hint::black_box;

use annals_bench::data::EventFactory;
use annals_contract::api::commit_request::CommitRequest;
use annals_contract::api::committed::{self, PreparedAggregateAnswer, PreparedCommitAnswer};
use annals_contract::api::failure::InBand;
use annals_contract::api::{convert, ids};
use annals_contract::proto::dolittle::artifacts::Artifact;
use annals_contract::proto::dolittle::runtime::events::CommitEventsResponse;
use annals_contract::proto::dolittle::runtime::events::{
    CommitAggregateEventsResponse, CommitEventsRequest, UncommittedEvent as WireEvent,
};
use annals_contract::proto::dolittle::services::CallRequestContext;
use annals_engine::{
    AggregateCommit, AggregateCommitReceipt, AggregateEvent, CommitReceipt, EventLogSequenceNumber,
};
use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use prost::Message;

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

fn commit_answer(c: &mut Criterion) {
    let commit = EventFactory::new(7).commit(100);
    let receipt = CommitReceipt {
        first: EventLogSequenceNumber(1_000_000),
        count: 100,
    };
    let mut group = c.benchmark_group("commit_answer");
    group.throughput(Throughput::Elements(100));
    answered_both_ways(
        &mut group,
        &commit,
        |commit| CommitEventsResponse::ok(committed::committed_events(commit, receipt)),
        |commit, buf| {
            PreparedCommitAnswer::of(commit)
                .numbered(receipt)
                .encode(buf);
        },
    );
    group.bench_function("after_the_ack", |b| {
        encoding(
            b,
            || PreparedCommitAnswer::of(&commit),
            |prepared, buf| {
                prepared.numbered(receipt).encode(buf);
            },
        );
    });
    group.finish();
}

fn aggregate_answer(c: &mut Criterion) {
    let event = EventFactory::new(7).commit(100);
    let commit = AggregateCommit {
        occurred_ns: event.occurred_ns,
        execution_context: event.execution_context.clone(),
        aggregate_root: uuid::Uuid::from_u128(5),
        event_source_id: "aggregate-3".into(),
        expected_version: 1_000,
        events: event
            .events
            .iter()
            .map(|e| AggregateEvent {
                event_type: e.event_type,
                public: e.public,
                content: e.content.clone(),
            })
            .collect(),
    };
    let receipt = AggregateCommitReceipt {
        first: EventLogSequenceNumber(1_000_000),
        count: 100,
        version_before: 1_000,
    };
    let mut group = c.benchmark_group("aggregate_answer");
    group.throughput(Throughput::Elements(100));
    answered_both_ways(
        &mut group,
        &commit,
        |commit| {
            CommitAggregateEventsResponse::ok(committed::committed_aggregate_events(
                commit, receipt,
            ))
        },
        |commit, buf| {
            PreparedAggregateAnswer::of(commit)
                .numbered(receipt)
                .encode(buf);
        },
    );
    group.finish();
}

/// Adds the two ways of answering `commit` to `group`: `contract_messages`, the contract's
/// messages built by `contract` and encoded by prost, and `prepare_and_encode`, the answer
/// `prepared` writes. Each routine gets its own commit, cloned outside the timing just before
/// it (so in cache, as a request just decoded is), and hands back what holds the events'
/// strings, so that neither pays for freeing them: the server frees them after answering
/// either way.
fn answered_both_ways<C: Clone, R: Message>(
    group: &mut criterion::BenchmarkGroup<'_, criterion::measurement::WallTime>,
    commit: &C,
    contract: impl Fn(C) -> R,
    prepared: impl Fn(&C, &mut Vec<u8>),
) {
    group.bench_function("contract_messages", |b| {
        encoding(
            b,
            || commit.clone(),
            |commit, buf| {
                let response = contract(commit);
                response.encode(buf).expect("room");
                response
            },
        );
    });
    group.bench_function("prepare_and_encode", |b| {
        encoding(
            b,
            || commit.clone(),
            |commit, buf| {
                prepared(&commit, buf);
                commit
            },
        );
    });
}

fn commit_request(c: &mut Criterion) {
    let commit = EventFactory::new(7).commit(100);
    let request = CommitEventsRequest {
        call_context: Some(CallRequestContext {
            execution_context: Some(convert::execution_context_to_wire(
                &commit.execution_context,
            )),
            ..CallRequestContext::default()
        }),
        events: commit
            .events
            .iter()
            .map(|e| WireEvent {
                event_type: Some(Artifact {
                    id: Some(ids::to_wire(e.event_type.id)),
                    generation: e.event_type.generation,
                }),
                event_source_id: e.event_source_id.clone(),
                public: e.public,
                content: e.content.clone(),
            })
            .collect(),
    };
    let encoded = bytes::Bytes::from(request.encode_to_vec());
    let mut group = c.benchmark_group("commit_request");
    group.throughput(Throughput::Elements(100));
    // What each hands back (the events) is dropped outside the timing: the server frees them
    // after answering either way.
    group.bench_function("prost_then_convert", |b| {
        b.iter_batched(
            || encoded.clone(),
            |encoded| {
                let request = CommitEventsRequest::decode(encoded).expect("decodes");
                convert::uncommitted_events(request.events).expect("valid events")
            },
            BatchSize::SmallInput,
        );
    });
    group.bench_function("one_pass", |b| {
        b.iter_batched(
            || encoded.clone(),
            |encoded| {
                CommitRequest::decode(encoded)
                    .expect("decodes")
                    .events
                    .expect("valid events")
            },
            BatchSize::SmallInput,
        );
    });
    group.finish();
}

/// Times `encode` writing what `setup` made (made just before each run, so in cache) into one
/// reused buffer; what `encode` hands back is dropped outside the timing.
fn encoding<I, O>(
    b: &mut criterion::Bencher<'_>,
    mut setup: impl FnMut() -> I,
    mut encode: impl FnMut(I, &mut Vec<u8>) -> O,
) {
    let mut buf = Vec::with_capacity(1 << 16);
    b.iter_batched(
        &mut setup,
        |input| {
            buf.clear();
            let kept = encode(input, &mut buf);
            black_box(&buf);
            kept
        },
        BatchSize::PerIteration,
    );
}

criterion_group! {
    name = benches;
    config = common::config();
    targets = content_check, commit_answer, aggregate_answer, commit_request
}
criterion_main!(benches);
