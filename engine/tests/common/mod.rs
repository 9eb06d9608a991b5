//! Helpers shared by the engine's tests.
#![allow(
    dead_code,
    clippy::unwrap_used,
    reason = "shared by several test binaries, each using some; helpers fail loudly"
)]

use annals_engine::{
    uuid::Uuid, AggregateCommit, AggregateEvent, Durability, Engine, EngineConfig, EventType,
    TenantId,
};
use bytesize::ByteSize;

pub const TENANT: TenantId = TenantId(Uuid::from_u128(0x7e7a_0000_0000_0000_0000_0000_0000_0001));

/// Small segments (so fetches cross sealed segments) and buffered appends (the tests here are
/// about the index; the log's durability has its own tests).
pub fn config(dir: &std::path::Path) -> EngineConfig {
    let mut config = EngineConfig::new(dir);
    config.log.segment_bytes_max = ByteSize::kib(16);
    config.log.seal_block_bytes = ByteSize::kib(4);
    config.log.durability = Durability::Buffered;
    config.log.preallocate_bytes = ByteSize::b(0);
    config.index.indexer_batch_events = 7;
    config
}

pub fn open(dir: &std::path::Path) -> Engine {
    Engine::open(config(dir)).unwrap()
}

pub fn event_type(n: u128) -> EventType {
    EventType {
        id: Uuid::from_u128(n),
        generation: 1,
    }
}

pub fn aggregate_commit(
    root: Uuid,
    source: &str,
    expected: u64,
    contents: &[(u128, &str)],
) -> AggregateCommit {
    AggregateCommit {
        occurred_ns: 1_700_000_000_000_000_000,
        aggregate_root: root,
        event_source_id: source.into(),
        expected_version: expected,
        events: contents
            .iter()
            .map(|(t, c)| AggregateEvent {
                event_type: event_type(*t),
                public: false,
                content: (*c).into(),
            })
            .collect(),
        ..AggregateCommit::default()
    }
}
