//! The engine's one error type: the log's errors, wrapped whole, and those of the indexes,
//! the state and the checks only the engine makes.
//!
//! The log's error keeps its own variants (I/O, corruption, tenants, requests, configuration);
//! the engine reports failures of those kinds with them too, so a caller branches on one variant
//! per kind whichever layer found it. Messages are the wrapped error's, unchanged.

use crate::state::StreamPosition;
use annals_log::Error as LogError;

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
