//! Segments: bounded files of a log, named by their first sequence number.
//!
//! A log is a chain of segments `[base, next)` with no gaps. All but the last are full and
//! immutable; a full segment is *raw* until the sealer rewrites it as a *sealed* (compressed)
//! file. The last segment is the *active* one: the only file ever appended to.
//!
//! Invariants:
//! - readers never read a raw segment past its `visible_bytes`, which only grows, and only
//!   after the bytes below it were written (and synced, in sync-data mode);
//! - a segment's records are exactly `[base, next_seq)`, consecutive;
//! - a sealed segment's blocks decompress to the raw segment's record area byte for byte.

pub(crate) mod cache;
pub mod format;
pub(crate) mod reader;
pub(crate) mod recovery;
pub(crate) mod seal;

use std::{
    path::PathBuf,
    sync::{
        atomic::{AtomicU64, Ordering},
        Arc, OnceLock,
    },
};

use parking_lot::RwLock;

use self::format::{BlockEntry, SealTrailer};
use crate::{ids::EventLogSequenceNumber, io::IoFile};

/// File name of a raw segment.
pub(crate) fn raw_name(base: EventLogSequenceNumber) -> String {
    format!("{:020}.log", base.0)
}

/// File name of a sealed segment.
pub(crate) fn sealed_name(base: EventLogSequenceNumber) -> String {
    format!("{:020}.sealed", base.0)
}

/// File name of a sealed segment being written.
pub(crate) fn sealing_name(base: EventLogSequenceNumber) -> String {
    format!("{:020}.sealed.tmp", base.0)
}

/// A raw segment: record frames after the header.
#[derive(Debug)]
pub(crate) struct RawSegment {
    pub(crate) path: PathBuf,
    pub(crate) file: Arc<dyn IoFile>,
    pub(crate) base: EventLogSequenceNumber,
    /// Bytes of the file readers may read (header included).
    visible_bytes: AtomicU64,
    /// Sequence number after the last visible record.
    visible_next: AtomicU64,
    /// Sparse index: (sequence number, file offset) of some frames, ascending, first frame
    /// always included. Bounded by segment size / sparse interval.
    sparse: RwLock<Vec<(u64, u64)>>,
}

impl RawSegment {
    pub(crate) fn new(
        path: PathBuf,
        file: Arc<dyn IoFile>,
        base: EventLogSequenceNumber,
        visible_bytes: u64,
        visible_next: EventLogSequenceNumber,
        sparse: Vec<(u64, u64)>,
    ) -> Self {
        Self {
            path,
            file,
            base,
            visible_bytes: AtomicU64::new(visible_bytes),
            visible_next: AtomicU64::new(visible_next.0),
            sparse: RwLock::new(sparse),
        }
    }

    pub(crate) fn visible_bytes(&self) -> u64 {
        self.visible_bytes.load(Ordering::Acquire)
    }

    pub(crate) fn visible_next(&self) -> EventLogSequenceNumber {
        EventLogSequenceNumber(self.visible_next.load(Ordering::Acquire))
    }

    /// Publishes newly written frames. Called by the single writer after the bytes are
    /// written (and synced, in sync-data mode).
    pub(crate) fn publish(&self, bytes: u64, next: EventLogSequenceNumber, sparse: &[(u64, u64)]) {
        if !sparse.is_empty() {
            self.sparse.write().extend_from_slice(sparse);
        }
        self.visible_bytes.store(bytes, Ordering::Release);
        self.visible_next.store(next.0, Ordering::Release);
    }

    /// The offset of the last sparse-index entry at or before `seq`.
    pub(crate) fn seek(&self, seq: EventLogSequenceNumber) -> u64 {
        let sparse = self.sparse.read();
        let i = sparse.partition_point(|(s, _)| *s <= seq.0);
        if i == 0 {
            format::HEADER_LEN as u64
        } else {
            sparse[i - 1].1
        }
    }
}

/// A sealed segment: zstd blocks, block index, trailer.
#[derive(Debug)]
pub(crate) struct SealedSegment {
    pub(crate) path: PathBuf,
    pub(crate) file: Arc<dyn IoFile>,
    pub(crate) base: EventLogSequenceNumber,
    pub(crate) trailer: SealTrailer,
    /// Loaded on first read, so opening a log reads only headers and trailers.
    pub(crate) blocks: OnceLock<Vec<BlockEntry>>,
    /// This open segment's key in the block cache.
    pub(crate) cache_id: u64,
}

/// One segment of a log.
#[derive(Debug, Clone)]
pub(crate) enum Segment {
    Raw(Arc<RawSegment>),
    Sealed(Arc<SealedSegment>),
}

impl Segment {
    pub(crate) fn base(&self) -> EventLogSequenceNumber {
        match self {
            Segment::Raw(s) => s.base,
            Segment::Sealed(s) => s.base,
        }
    }

    /// Bytes the segment takes on disk (visible part for raw).
    pub(crate) fn disk_bytes(&self) -> u64 {
        match self {
            Segment::Raw(s) => s.visible_bytes(),
            Segment::Sealed(s) => s.file.len().unwrap_or(0),
        }
    }
}
