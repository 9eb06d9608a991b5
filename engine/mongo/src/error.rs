//! The crate's one error type: every failure names the collection, document or file it hit.
//!
//! Invariants: no variant carries free text where a structured field fits; content errors keep
//! the event's sequence number and the byte offset inside its JSON (see `content`).

use annals_engine::EventLogSequenceNumber;

use crate::content::ContentError;

/// What can go wrong while building the original's documents or writing a dump.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// An event's content cannot become the `Content` document the original stores.
    #[error("event {sequence_number}: {source}")]
    Content {
        /// The event's sequence number in its log.
        sequence_number: EventLogSequenceNumber,
        /// What is wrong with its JSON.
        source: ContentError,
    },
}

/// The crate's result type.
pub type Result<T, E = Error> = std::result::Result<T, E>;
