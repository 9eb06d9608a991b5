//! The embedded engine without gRPC: open, commit, commit for an aggregate (and lose a race),
//! fetch the aggregate, read the log, follow the tail, and keep a processor's position.
//!
//! Run it from the workspace root, with the target dir `.ci/run` builds RocksDB into:
//! `CARGO_TARGET_DIR=~/.cache/annals/target cargo run --example quickstart -- /tmp/annals-quickstart`
//! (run it twice: the second run continues where the first left off).

use std::time::Duration;

use annals_engine::{
    uuid::Uuid, AggregateCommit, AggregateEvent, Commit, Engine, EngineConfig, Error,
    EventLogSequenceNumber, EventType, StreamProcessorId, TenantId, UncommittedEvent,
};

const TENANT: TenantId = TenantId(Uuid::from_u128(0x445f_8ea8_1a6f_40d7_b2fc_796d_ba92_dc44));
const CART: Uuid = Uuid::from_u128(0xca27);
const ITEM_ADDED: EventType = EventType {
    id: Uuid::from_u128(0x1a),
    generation: 1,
};

fn main() -> Result<(), Error> {
    let dir = std::env::args().nth(1).unwrap_or_else(|| "./data".into());
    let engine = Engine::open(EngineConfig::new(&dir))?;
    let tenant = engine.tenant_or_create(TENANT)?;
    println!(
        "opened {dir}: tenants {:?}, index caught up {:?}",
        engine.tenants(),
        tenant.index_recovery()
    );

    // A plain commit: returns once durable.
    let receipt = tenant.commit(&Commit {
        events: vec![UncommittedEvent {
            event_source_id: "visitor-7".into(),
            content: r#"{"page":"/books"}"#.into(),
            ..UncommittedEvent::default()
        }],
        ..Commit::default()
    })?;
    println!("committed {} event(s) at {}", receipt.count, receipt.first);

    // A commit for an aggregate at the version we know.
    let version = tenant.aggregate_version(CART, "cart-42")?;
    let added = tenant.commit_for_aggregate(&AggregateCommit {
        aggregate_root: CART,
        event_source_id: "cart-42".into(),
        expected_version: version,
        events: vec![AggregateEvent {
            event_type: ITEM_ADDED,
            content: r#"{"item":"book","quantity":1}"#.into(),
            ..AggregateEvent::default()
        }],
        ..AggregateCommit::default()
    })?;
    println!(
        "cart-42 went from version {} to {}",
        added.version_before,
        added.current_version()
    );

    // Someone with a stale version loses, and nothing is written.
    let stale = tenant.commit_for_aggregate(&AggregateCommit {
        aggregate_root: CART,
        event_source_id: "cart-42".into(),
        expected_version: version,
        events: vec![AggregateEvent::default()],
        ..AggregateCommit::default()
    });
    match stale {
        Err(Error::WrongExpectedVersion { expected, actual }) => {
            println!("stale commit refused: expected {expected}, actual {actual}");
        }
        other => println!("unexpected: {other:?}"),
    }

    let cart = tenant.fetch_for_aggregate(CART, "cart-42", &[ITEM_ADDED.id])?;
    println!("cart-42 has {} event(s):", cart.current_version);
    for event in &cart.events {
        println!(
            "  v{} #{} {}",
            event.aggregate.map_or(0, |a| a.version),
            event.sequence_number,
            event.content
        );
    }

    // A processor reads the log from its stored position and stores the new one durably.
    let processor = StreamProcessorId {
        scope: Uuid::nil(),
        processor: Uuid::from_u128(0xb0),
        source_stream: Uuid::nil(),
    };
    let mut state = tenant
        .stream_processor_state(&processor)?
        .unwrap_or_default();
    let log = tenant.event_log()?;
    // This processor reads the event log itself, so its stream position counts the same
    // events as the log's sequence numbers.
    let batch = log.read(state.event_log_position, 1000, 1 << 20)?;
    for event in batch.views() {
        let event = event?;
        println!(
            "processor sees #{} {}",
            event.sequence_number, event.content
        );
        state.event_log_position = EventLogSequenceNumber(event.sequence_number.0 + 1);
        state.position = state.position.next();
    }
    tenant.put_stream_processor_state(&processor, &state)?;

    // Follow the tail: wakes on the next commit, or times out.
    let mut tail = log.subscribe(log.next_sequence_number());
    let next = tail.next_batch(10, Some(Duration::from_millis(100)))?;
    println!("tail: {} new event(s) within 100 ms", next.len());
    Ok(())
}
