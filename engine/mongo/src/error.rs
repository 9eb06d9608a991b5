//! The crate's one error type: every failure names the collection, document or file it hit.
//!
//! Invariants: no variant carries free text where a structured field fits; I/O errors keep
//! the operation and path; content errors keep the event's sequence number and the byte offset
//! inside its JSON (see `content`).

use std::path::PathBuf;

use annals_engine::{uuid::Uuid, EventLogSequenceNumber, LogError};

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
    /// A document is larger than MongoDB stores (16 MiB), so a restore would refuse it.
    #[error(
        "collection {collection}: document {document_index} is {size_bytes} bytes, over \
         MongoDB's limit of {limit_bytes} bytes"
    )]
    DocumentTooLarge {
        /// The collection being written.
        collection: String,
        /// The document's index in the collection file (0-based).
        document_index: u64,
        /// Its encoded size.
        size_bytes: usize,
        /// The limit it exceeds.
        limit_bytes: usize,
    },
    /// The BSON library refused to encode a document.
    #[error("collection {collection}: cannot encode document {document_index} as BSON: {source}")]
    Encode {
        /// The collection being written.
        collection: String,
        /// The document's index in the collection file (0-based).
        document_index: u64,
        /// The library's reason.
        source: bson::error::Error,
    },
    /// A stream processor state that the original's layout cannot hold.
    #[error("stream processor {processor} reading {source_stream}: {what}")]
    ProcessorState {
        /// The event processor (event handler or filter) id.
        processor: Uuid,
        /// The stream it reads.
        source_stream: Uuid,
        /// What does not fit.
        what: &'static str,
    },
    /// An event-horizon subscription state that the original's layout cannot hold.
    #[error("subscription to stream {stream} partition {partition:?}: {what}")]
    SubscriptionState {
        /// The producer's stream.
        stream: Uuid,
        /// The partition.
        partition: String,
        /// What does not fit.
        what: &'static str,
    },
    /// A collection name that cannot be a dump file name.
    #[error("collection name {name:?} cannot name a dump file: {why}")]
    CollectionName {
        /// The name given.
        name: String,
        /// Why it is refused.
        why: &'static str,
    },
    /// An export asked for events the log does not have.
    #[error("the export ends at {requested} but the log ends at {log_end}")]
    BeyondLogEnd {
        /// The end asked for (exclusive).
        requested: EventLogSequenceNumber,
        /// Where the log ends.
        log_end: EventLogSequenceNumber,
    },
    /// Reading the log failed.
    #[error("reading the log at {at}: {source}")]
    Read {
        /// The sequence number being read.
        at: EventLogSequenceNumber,
        /// The log's error.
        source: LogError,
    },
    /// The log returned another event than the next one.
    #[error("the log returned event {found} where {expected} was next")]
    SequenceMismatch {
        /// The sequence number expected.
        expected: EventLogSequenceNumber,
        /// The one found.
        found: EventLogSequenceNumber,
    },
    /// The engine failed to read the tenant's state.
    #[error("reading the tenant: {source}")]
    Engine {
        /// The engine's error.
        source: annals_engine::Error,
    },
    /// A dump file holds something that is not a sequence of BSON documents.
    #[error("{}: document {document_index} at byte {offset}: {what}", .path.display())]
    Dump {
        /// The file.
        path: PathBuf,
        /// The document's index in the file (0-based).
        document_index: u64,
        /// Its byte offset in the (uncompressed) file.
        offset: u64,
        /// What is wrong.
        what: String,
    },
    /// A `mongodump --archive` file that cannot be read as one.
    #[error("{}: {what}", .path.display())]
    Archive {
        /// The archive.
        path: PathBuf,
        /// What is wrong.
        what: String,
    },
    /// A document of a dump that cannot be imported.
    #[error(
        "collection {collection}, document {document_index} (_id {id}), field {field}: {what}"
    )]
    Document {
        /// The collection.
        collection: String,
        /// The document's index in the collection (0-based).
        document_index: u64,
        /// Its `_id`, as text.
        id: String,
        /// The field at fault (dotted path).
        field: String,
        /// What is wrong.
        what: String,
    },
    /// A collection of a dump that cannot be imported as a whole.
    #[error("collection {collection}: {what}")]
    Collection {
        /// The collection (empty for the dump as a whole).
        collection: String,
        /// What is wrong.
        what: String,
    },
    /// Writing to the tenant failed.
    #[error("writing the tenant: {source}")]
    Write {
        /// The engine's error.
        source: annals_engine::Error,
    },
    /// A file operation failed.
    #[error("{op} {}: {source}", .path.display())]
    Io {
        /// What was being done ("create", "write", "sync", ...).
        op: &'static str,
        /// The file.
        path: PathBuf,
        /// The operating system's error.
        source: std::io::Error,
    },
}

/// The crate's result type.
pub type Result<T, E = Error> = std::result::Result<T, E>;
