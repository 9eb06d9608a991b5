//! The log crate's one error type. annals-engine wraps it in its own, beside the errors of
//! its indexes and state.
//!
//! Variants are structured so callers can branch on them and messages name the file, the
//! offset, the expected and the found value. Disk input never panics: whatever is read back is
//! checked and turned into one of these.

use std::{io, path::PathBuf};

use crate::ids::{EventLogSequenceNumber, ScopeId, TenantId};

/// Result alias for log operations.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can go wrong in the log store.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// An operating-system call failed.
    #[error("{op} {path}: {source}")]
    Io {
        /// What the store was doing ("write", "fdatasync", "open", ...).
        op: &'static str,
        /// The file or directory concerned.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: io::Error,
    },

    /// Stored bytes are not what the format says they must be.
    #[error("corruption in {path} at offset {offset}: {what}")]
    Corruption {
        /// The damaged file.
        path: PathBuf,
        /// Byte offset of the damage (in a sealed segment: of the damaged block).
        offset: u64,
        /// What was expected and what was found.
        what: String,
    },

    /// A checksum did not match.
    #[error("checksum mismatch in {path} at offset {offset} ({what}): expected {expected:#010x}, found {actual:#010x}")]
    ChecksumMismatch {
        /// The damaged file.
        path: PathBuf,
        /// Byte offset of the checksummed unit.
        offset: u64,
        /// The checksummed unit ("segment header", "record frame", "sealed block", ...).
        what: &'static str,
        /// The stored checksum.
        expected: u32,
        /// The checksum of the bytes found.
        actual: u32,
    },

    /// A file was written by a format version this build cannot read.
    #[error("{path} needs format version {found} but this build reads versions up to {supported}; upgrade annals")]
    UnsupportedFormat {
        /// The file.
        path: PathBuf,
        /// The file's minimum compatible version.
        found: u16,
        /// The newest version this build reads.
        supported: u16,
    },

    /// A segment belongs to another tenant, scope or position than where it was found.
    #[error("{path} is misfiled: expected {expected}, found {found}")]
    Misfiled {
        /// The file.
        path: PathBuf,
        /// What its location says.
        expected: String,
        /// What its header says.
        found: String,
    },

    /// No such tenant in this store.
    #[error("tenant {0} is not known to this engine")]
    TenantUnknown(TenantId),

    /// The tenant exists already.
    #[error("tenant {0} exists already")]
    TenantExists(TenantId),

    /// A write or fsync of this log failed earlier; the log refuses writes until it is healed
    /// ([`Log::heal`](crate::Log::heal)) or reopened.
    #[error("log of tenant {tenant} scope {scope} is poisoned by an earlier I/O failure ({cause}); writes resume once it is healed or the engine is reopened")]
    Poisoned {
        /// The tenant of the poisoned log.
        tenant: TenantId,
        /// The scope of the poisoned log.
        scope: ScopeId,
        /// The failure that poisoned it.
        cause: String,
    },

    /// The request is malformed (empty commit, oversized record, bad range, ...).
    #[error("invalid request: {0}")]
    InvalidRequest(String),

    /// A read asked for a position the log does not have yet.
    #[error("sequence number {requested} is beyond the end of the log ({end})")]
    BeyondEnd {
        /// The requested position.
        requested: EventLogSequenceNumber,
        /// The log's next sequence number.
        end: EventLogSequenceNumber,
    },

    /// The configuration is invalid.
    #[error("invalid configuration: {key}: {reason}")]
    InvalidConfig {
        /// The offending key (kebab-case, as in the config file).
        key: &'static str,
        /// Why.
        reason: String,
    },

    /// A record passed its checksum but its payload does not decode (written by a newer
    /// build, or a checksum collision over damage).
    #[error("record {sequence_number} passed its checksum but does not decode: {what}")]
    UndecodableRecord {
        /// The record.
        sequence_number: EventLogSequenceNumber,
        /// What the decoder found.
        what: String,
    },
}

impl Error {
    /// Wraps an I/O error with the operation and path.
    pub(crate) fn io(op: &'static str, path: impl Into<PathBuf>, source: io::Error) -> Self {
        Error::Io {
            op,
            path: path.into(),
            source,
        }
    }

    /// Whether this error means the stored data is damaged.
    pub fn is_corruption(&self) -> bool {
        matches!(
            self,
            Error::Corruption { .. }
                | Error::ChecksumMismatch { .. }
                | Error::Misfiled { .. }
                | Error::UndecodableRecord { .. }
        )
    }
}
