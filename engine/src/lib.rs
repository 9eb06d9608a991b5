//! annals-engine: the storage engine of annals, embeddable in any Rust program.
//!
//! Each tenant has its own append-only event log (and one log per event-horizon scope), kept
//! by `annals-log`: segmented, checksummed, group-committed, sealed into zstd blocks. Beside
//! the logs, one RocksDB database holds a column family per tenant with everything needed to
//! answer quickly and to resume processing: aggregate versions, the event-source index behind
//! fetching an aggregate, filtered and public stream positions, processor, projection and
//! subscription state. The log is the truth: what can be derived from it (aggregate versions
//! and the event-source index) is rebuilt from it when missing or behind.
//!
//! ```no_run
//! use annals_engine::{AggregateCommit, AggregateEvent, Engine, EngineConfig, TenantId, uuid::Uuid};
//!
//! let engine = Engine::open(EngineConfig::new("./data"))?;
//! let tenant = engine.tenant_or_create(TenantId(Uuid::new_v4()))?;
//! let cart = Uuid::new_v4(); // the aggregate root (type) id
//! tenant.commit_for_aggregate(&AggregateCommit {
//!     aggregate_root: cart,
//!     event_source_id: "cart-1".into(),
//!     expected_version: 0,
//!     events: vec![AggregateEvent { content: r#"{"item":"book"}"#.into(), ..Default::default() }],
//!     ..Default::default()
//! })?;
//! let fetched = tenant.fetch_for_aggregate(cart, "cart-1", &[])?;
//! assert_eq!(fetched.current_version, 1);
//! # Ok::<(), annals_engine::Error>(())
//! ```
//!
//! engine/README.md tells the design of the index; engine/log/FORMAT.md specifies the log's
//! bytes.

#![warn(missing_docs)]
#![deny(unsafe_code)]

mod aggregate;
mod config;
mod db;
mod engine;
mod error;
mod keys;
mod locks;
mod state;
mod tenant;

#[cfg(any(test, feature = "test-util"))]
pub mod testing;

pub use annals_log::{
    uuid, AppliedByAggregate, Claim, Commit, CommitReceipt, Durability, Error as LogError, Event,
    EventHorizonOrigin, EventLogSequenceNumber, EventType, EventView, ExecutionContext, Healed,
    IoBackendChoice, Log, LogConfig, LogStats, RecordBatch, RecoveryMode, ScopeId, TailReader,
    TenantId, UncommittedEvent, Version,
};

/// What [`Tenant::public_stream_appended`] returns (a `Future`), and the trait with its
/// blocking `wait`.
pub use event_listener::{EventListener, Listener};

pub use crate::{
    aggregate::{AggregateCommit, AggregateCommitReceipt, AggregateEvent, AggregateEvents},
    config::{EngineConfig, IndexConfig, IndexDamage},
    db::IndexOpenReport,
    engine::Engine,
    error::{Error, Result},
    state::{
        FailingPartition, ProcessingFailure, StateBatch, StreamDefinition, StreamFilter,
        StreamPosition, StreamProcessorId, StreamProcessorState, SubscriptionId, SubscriptionState,
    },
    tenant::{
        AggregateBatches, AggregateVersionCheck, AggregateVersionProblem, IndexRecovery,
        ProjectionHistorySize, StreamEntry, Tenant, TenantHealed,
    },
};
