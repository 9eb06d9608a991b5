//! The annals engine's plain types, without RocksDB: its one error type, commits for
//! aggregates and what fetching one returns, and stream positions. `annals-engine` re-exports
//! every one of them (use them from there); this crate exists so that code which only speaks to
//! the engine, the contract's request layer above all, builds without RocksDB, as the fuzz
//! workspace does.
//!
//! The error wraps the log's errors whole, and adds those of the indexes, the state and the
//! checks only the engine makes. The log's error keeps its own variants (I/O, corruption,
//! tenants, requests, configuration); the engine reports failures of those kinds with them too,
//! so a caller branches on one variant per kind whichever layer found it. Messages are the
//! wrapped error's, unchanged.

use std::fmt;

use annals_log::{Error as LogError, Event, EventLogSequenceNumber, EventType, ExecutionContext};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// Result alias for engine operations.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can go wrong in the engine.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A failure of the log store, or one of a kind it shares with the engine (I/O,
    /// corruption, an unknown tenant, an invalid request or configuration).
    #[error(transparent)]
    Log(#[from] LogError),

    /// A commit for an aggregate expected another aggregate root version.
    #[error("wrong expected aggregate root version: expected {expected}, actual {actual}")]
    WrongExpectedVersion {
        /// The version the caller expected.
        expected: u64,
        /// The version the aggregate is at.
        actual: u64,
    },

    /// The RocksDB index failed.
    #[error("index: {op}: {detail}")]
    Index {
        /// What the engine was doing.
        op: &'static str,
        /// RocksDB's message.
        detail: String,
    },

    /// Stored state does not decode.
    #[error("stored state under {key} does not decode: {detail}")]
    BadState {
        /// The key, printed.
        key: String,
        /// What the decoder said.
        detail: String,
    },

    /// A stream append expected another next position (a writer raced or resumed stale).
    #[error("wrong expected stream position: expected {expected}, actual {actual}")]
    WrongStreamPosition {
        /// The position the caller expected to write at.
        expected: StreamPosition,
        /// The stream's next position.
        actual: StreamPosition,
    },

    /// A projection's state was asked for as of a position whose history its retention has
    /// trimmed.
    #[error(
        "the projection's history before event-log position {floor} has been trimmed by its \
         retention; position {requested} is before it"
    )]
    HistoryTrimmed {
        /// The position asked for.
        requested: u64,
        /// Where the kept history begins.
        floor: u64,
    },
}

impl Error {
    /// Whether this error means the stored log data is damaged.
    pub fn is_corruption(&self) -> bool {
        matches!(self, Error::Log(e) if e.is_corruption())
    }
}

/// One event applied by an aggregate, before it is committed.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct AggregateEvent {
    /// Event type.
    pub event_type: EventType,
    /// Whether the event may leave the microservice through public streams.
    pub public: bool,
    /// Content: JSON text.
    pub content: String,
}

/// Events applied by one aggregate instance, committed only if the aggregate is still at
/// `expected_version`. Event `i` gets aggregate version `expected_version + i`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct AggregateCommit {
    /// When the commit happened (Unix nanoseconds).
    pub occurred_ns: i64,
    /// The execution context of the commit.
    pub execution_context: ExecutionContext,
    /// The aggregate root (type) id.
    pub aggregate_root: Uuid,
    /// The aggregate instance (event source) id.
    pub event_source_id: String,
    /// The number of events the aggregate has now (0 for a new one).
    pub expected_version: u64,
    /// The events, in order. Must not be empty.
    pub events: Vec<AggregateEvent>,
}

/// Where a commit for an aggregate landed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AggregateCommitReceipt {
    /// Sequence number of the first event.
    pub first: EventLogSequenceNumber,
    /// Number of events.
    pub count: u64,
    /// The aggregate's version before the commit (its first event's aggregate version).
    pub version_before: u64,
}

impl AggregateCommitReceipt {
    /// The aggregate's version after the commit (the number of events it has applied).
    pub fn current_version(&self) -> u64 {
        self.version_before + self.count
    }
}

/// All (or the selected types of) events of one aggregate instance.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct AggregateEvents {
    /// The aggregate root id.
    pub aggregate_root: Uuid,
    /// The event source id.
    pub event_source_id: String,
    /// The number of events the aggregate had applied when the fetch began.
    pub current_version: u64,
    /// The events in aggregate-version order.
    pub events: Vec<Event>,
}

/// A position in a stream: gapless, from 0. A stream processor reads a stream (the event log
/// itself, read as a stream, or a filtered or public stream) and counts the events it selects
/// by their stream position; an event's place in its log is its [`EventLogSequenceNumber`],
/// another number wherever a stream skips events. Serialised as its number.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default, Serialize, Deserialize)]
#[serde(transparent)]
pub struct StreamPosition(pub u64);

impl StreamPosition {
    /// The first position of every stream.
    pub const ZERO: Self = Self(0);

    /// The position after this one.
    #[must_use]
    pub fn next(self) -> Self {
        Self(self.0 + 1)
    }
}

impl fmt::Display for StreamPosition {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.0, f)
    }
}

impl fmt::Debug for StreamPosition {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "pos#{}", self.0)
    }
}
