//! annals-log: the log half of the annals engine.
//!
//! Programs use it through `annals-engine`, which adds the RocksDB indexes and state on top
//! and re-exports what a user needs from here.
//!
//! Each tenant has its own directory with one append-only log per scope. A log is a chain of
//! bounded segments of checksummed record frames; concurrent commits are group-committed
//! into one write and one `fdatasync`; full segments are sealed into independent zstd blocks
//! with an index; opening recovers from crashes by truncating a torn tail of the active
//! segment only. engine/log/FORMAT.md specifies the bytes; engine/log/README.md tells the design.
//!
//! ```no_run
//! use annals_log::{Commit, EventLogSequenceNumber, LogConfig, LogStore, TenantId, UncommittedEvent};
//!
//! let store = LogStore::open(LogConfig::new("./data"))?;
//! let tenant = store.tenant_or_create(TenantId(uuid::Uuid::new_v4()))?;
//! let log = tenant.event_log()?;
//! let receipt = log.append(&Commit {
//!     events: vec![UncommittedEvent { event_source_id: "cart-1".into(), content: "{}".into(), ..Default::default() }],
//!     ..Default::default()
//! })?;
//! for event in log.read(EventLogSequenceNumber::ZERO, 100, 1 << 20)?.views() {
//!     println!("{} {}", event?.sequence_number, receipt.count);
//! }
//! # Ok::<(), annals_log::Error>(())
//! ```

#![warn(missing_docs)]
#![deny(unsafe_code)]
#![deny(clippy::undocumented_unsafe_blocks)]

mod config;
mod error;
mod event;
mod ids;
mod io;
mod log;
mod poison;
mod segment;
mod spare;
mod store;
mod tenant;

#[cfg(any(test, feature = "test-util"))]
pub mod testing;

pub use crate::{
    config::{Durability, IoBackendChoice, LogConfig, RecoveryMode},
    error::{Error, Result},
    event::{
        decode_index_fields, decode_payload, payload_applied_by_aggregate, AppliedByAggregate,
        Claim, Commit, DecodeError, Event, EventHorizonOrigin, EventRef, EventType, EventView,
        ExecutionContext, IndexFields, UncommittedEvent, Version,
    },
    ids::{EventLogSequenceNumber, FileOffset, ScopeId, SegmentId, TenantId},
    io::{select_backend, IoEngine, IoFile, OpenMode, StdIo, UringIo},
    log::{CommitReceipt, Healed, Log, LogStats, PublishHook, TailReader},
    segment::{reader::RecordBatch, recovery::RecoveryReport},
    store::LogStore,
    tenant::TenantLogs,
};

/// Re-exported so callers can build ids without naming the uuid crate.
pub use uuid;
