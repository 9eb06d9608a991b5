//! Segments: bounded files of a log, named by their first sequence number.
//!
//! A log is a chain of segments `[base, next)` with no gaps. All but the last are full and
//! immutable; a full segment is *raw* until the sealer rewrites it as a *sealed* (compressed)
//! file. The last segment is the *active* one: the only file ever appended to.
//!
//! A segment is named by its [`SegmentId`] (its base); positions in its files are
//! [`FileOffset`]s, kept apart from sequence numbers and from lengths (plain integers). Raw
//! `u64`s are left to the byte codec ([`format`]) and the I/O seam.
//!
//! Invariants:
//! - readers never read a raw segment past its visible end, which only grows (asserted at each
//!   publish), and only after the bytes below it were written (and synced, in sync-data mode);
//! - a raw segment's sparse index is ascending, and what a publish adds lies at or beyond the
//!   end published before it (asserted);
//! - a segment's records are exactly `[base, next_seq)`, consecutive;
//! - a sealed segment's blocks hold the raw segment's records, every payload byte for byte:
//!   as the raw record area itself (version 1) or as compact entries (version 3).

pub(crate) mod cache;
pub mod compact;
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

use self::{
    cache::CacheId,
    format::{BlockEntry, SealTrailer},
};
use crate::{
    ids::{EventLogSequenceNumber, FileOffset, SegmentId},
    io::IoFile,
};

/// Where every segment's first frame (or first sealed block) starts: right after the header.
pub(crate) const FIRST_FRAME: FileOffset = FileOffset(format::HEADER_LEN as u64);

/// File name of a raw segment.
pub(crate) fn raw_name(id: SegmentId) -> String {
    format!("{id}.log")
}

/// File name of a sealed segment.
pub(crate) fn sealed_name(id: SegmentId) -> String {
    format!("{id}.sealed")
}

/// File name of a sealed segment being written.
pub(crate) fn sealing_name(id: SegmentId) -> String {
    format!("{id}.sealed.tmp")
}

/// A raw segment: record frames after the header.
#[derive(Debug)]
pub(crate) struct RawSegment {
    pub(crate) path: PathBuf,
    pub(crate) file: Arc<dyn IoFile>,
    pub(crate) id: SegmentId,
    /// Where the visible frames end: readers may read the file up to here (header included).
    visible_end: AtomicU64,
    /// Sequence number after the last visible record.
    visible_next: AtomicU64,
    /// Sparse index: (sequence number, file offset) of some frames, ascending, first frame
    /// always included. Bounded by segment size / sparse interval.
    sparse: RwLock<Vec<(EventLogSequenceNumber, FileOffset)>>,
    /// The bases of the segments whose bytes the file may still hold after this one's end,
    /// when known: empty for a file that held nothing else, `None` for a recycled segment
    /// found at open (such a file is never recycled again, see `spare.rs`).
    pub(crate) held_before: Option<Vec<EventLogSequenceNumber>>,
}

impl RawSegment {
    pub(crate) fn new(
        path: PathBuf,
        file: Arc<dyn IoFile>,
        id: SegmentId,
        visible_end: FileOffset,
        visible_next: EventLogSequenceNumber,
        sparse: Vec<(EventLogSequenceNumber, FileOffset)>,
    ) -> Self {
        Self {
            path,
            file,
            id,
            visible_end: AtomicU64::new(visible_end.0),
            visible_next: AtomicU64::new(visible_next.0),
            sparse: RwLock::new(sparse),
            held_before: Some(Vec::new()),
        }
    }

    /// The same segment, in a file that may hold the bytes of the segments `held_before`.
    pub(crate) fn holding(mut self, held_before: Option<Vec<EventLogSequenceNumber>>) -> Self {
        self.held_before = held_before;
        self
    }

    /// Where the visible frames end.
    pub(crate) fn visible_end(&self) -> FileOffset {
        FileOffset(self.visible_end.load(Ordering::Acquire))
    }

    pub(crate) fn visible_next(&self) -> EventLogSequenceNumber {
        EventLogSequenceNumber(self.visible_next.load(Ordering::Acquire))
    }

    /// Publishes newly written frames, which end at `end`. Called by the single writer after
    /// the bytes are written (and synced, in sync-data mode).
    pub(crate) fn publish(
        &self,
        end: FileOffset,
        next: EventLogSequenceNumber,
        sparse: &[(EventLogSequenceNumber, FileOffset)],
    ) {
        // Only this writer stores these: its own last stores are what Relaxed loads see.
        let end_before = self.visible_end.load(Ordering::Relaxed);
        assert!(
            end.0 >= end_before && next.0 >= self.visible_next.load(Ordering::Relaxed),
            "a segment's visible end moves back"
        );
        assert!(
            sparse.first().is_none_or(|(_, at)| at.0 >= end_before),
            "a sparse-index entry below the visible end"
        );
        if !sparse.is_empty() {
            self.sparse.write().extend_from_slice(sparse);
        }
        self.visible_end.store(end.0, Ordering::Release);
        self.visible_next.store(next.0, Ordering::Release);
    }

    /// The offset of the last sparse-index entry at or before `seq`.
    pub(crate) fn seek(&self, seq: EventLogSequenceNumber) -> FileOffset {
        let sparse = self.sparse.read();
        let i = sparse.partition_point(|(s, _)| *s <= seq);
        if i == 0 {
            FIRST_FRAME
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
    pub(crate) id: SegmentId,
    pub(crate) trailer: SealTrailer,
    /// Whether its blocks are compact (format version 3, FORMAT.md section 6.5) rather than
    /// raw frames.
    pub(crate) compact: bool,
    /// Loaded on first read, so opening a log reads only headers and trailers.
    pub(crate) blocks: OnceLock<Vec<BlockEntry>>,
    /// This open segment's key in the block cache.
    pub(crate) cache_id: CacheId,
}

/// One segment of a log.
#[derive(Debug, Clone)]
pub(crate) enum Segment {
    Raw(Arc<RawSegment>),
    Sealed(Arc<SealedSegment>),
}

impl Segment {
    pub(crate) fn id(&self) -> SegmentId {
        match self {
            Segment::Raw(s) => s.id,
            Segment::Sealed(s) => s.id,
        }
    }

    /// The sequence number of the segment's first record.
    pub(crate) fn base(&self) -> EventLogSequenceNumber {
        self.id().base()
    }

    /// Bytes the segment takes on disk (visible part for raw).
    pub(crate) fn disk_bytes(&self) -> u64 {
        match self {
            // An offset from the start of the file: the length of what is before it.
            Segment::Raw(s) => s.visible_end().0,
            Segment::Sealed(s) => s.file.len().unwrap_or(0),
        }
    }
}
