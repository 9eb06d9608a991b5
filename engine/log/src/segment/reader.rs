//! Reading records from raw and sealed segments.
//!
//! Every frame returned from a raw segment is checked again (length bound, checksum bound to
//! its location, sequence number in order): the same checks the writer's encoder guarantees,
//! paired on the way back. Frames a raw read steps over (from the sparse-index entry to the
//! first record wanted, and between the records of a selected read) get the structural checks
//! only (FORMAT.md section 7). A sealed block is checked whole by its CRC-32, then each record
//! in it structurally: its frame (version 1) or its compact entry (version 3, FORMAT.md section
//! 6.5), whose payload is rebuilt into the batch's buffer.
//! A batch owns one buffer; events are decoded from it without copying ([`EventView`]).
//!
//! Invariants:
//! - a read of a raw segment never goes past the visible end and sequence number it loaded
//!   first, so it returns only published records;
//! - a batch's records are consecutive from where the read started;
//! - a sealed segment's block index is checked once, on load, to tile the file and the raw
//!   record area; reads then trust it. Whatever the disk holds becomes an `Error`, never a
//!   panic.

use std::{ops::Range, sync::Arc};

use super::{
    cache::BlockCache,
    compact::{expand, ENTRY_MIN_LEN},
    format::{
        check_frame_crc, parse_frame_in_verified_block, BlockEntry, FormatError, FrameParse,
        BLOCK_ENTRY_LEN, FRAME_HEADER_LEN, TRAILER_LEN,
    },
    RawSegment, SealedSegment,
};
use crate::{
    error::{Error, Result},
    event::{decode_payload, Event, EventView},
    ids::EventLogSequenceNumber,
};

/// Smallest and largest read from a raw segment in one call.
const RAW_READ_MIN_BYTES: usize = 4 << 10;
const RAW_READ_MAX_BYTES: usize = 16 << 20;
/// A read for a few records reads about this much per record (plus the stretch from the
/// sparse-index entry before the first), instead of as much as its byte limit allows: a fetch
/// of one event from a large active segment must not read the rest of the segment. A larger
/// record only costs one more read (the parser asks for it whole).
const RAW_READ_GUESS_PER_RECORD: usize = 1 << 10;
const RAW_READ_GUESS_SLACK: usize = 8 << 10;

/// Records read from a log: frames located in one buffer, decoded in place.
///
/// A batch can be reused ([`Log::read_into`](crate::Log::read_into)): its buffers keep their
/// capacity, so a catch-up reader allocates nothing after its first batch. Bounds: the
/// buffer holds at most the read's byte limit plus one raw read or one sealed block.
#[derive(Default)]
pub struct RecordBatch {
    /// Frames as read (raw) or decompressed (sealed); payloads are ranges into it. Only
    /// `buf[..used]` is meaningful; the rest is kept initialised so that reuse never has to
    /// zero it again.
    buf: Vec<u8>,
    used: usize,
    records: Vec<(EventLogSequenceNumber, Range<usize>)>,
    /// Payload bytes of `records`.
    payload_bytes: usize,
    /// Compressed block bytes, reused.
    scratch: Vec<u8>,
    /// A compact block decompressed, before its payloads are rebuilt into `buf`; reused.
    plain: Vec<u8>,
    /// Where each record of the block just loaded lies in `buf`; reused.
    block_payloads: Vec<Range<usize>>,
    /// zstd context, reused.
    decompressor: Option<zstd::bulk::Decompressor<'static>>,
}

impl std::fmt::Debug for RecordBatch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RecordBatch")
            .field("records", &self.records.len())
            .field("first", &self.first())
            .field("payload_bytes", &self.payload_bytes)
            .finish_non_exhaustive()
    }
}

impl RecordBatch {
    /// An empty batch.
    pub fn new() -> Self {
        Self::default()
    }

    /// Empties the batch, keeping its buffers' capacity.
    pub fn clear(&mut self) {
        self.used = 0;
        self.records.clear();
        self.payload_bytes = 0;
    }

    /// Number of records.
    pub fn len(&self) -> usize {
        self.records.len()
    }

    /// Whether the batch is empty.
    pub fn is_empty(&self) -> bool {
        self.records.is_empty()
    }

    /// Sequence number of the first record.
    pub fn first(&self) -> Option<EventLogSequenceNumber> {
        self.records.first().map(|(s, _)| *s)
    }

    /// Sequence number after the last record.
    pub fn next(&self) -> Option<EventLogSequenceNumber> {
        self.records
            .last()
            .map(|(s, _)| EventLogSequenceNumber(s.0 + 1))
    }

    /// The raw payloads with their sequence numbers.
    pub fn payloads(&self) -> impl Iterator<Item = (EventLogSequenceNumber, &[u8])> + '_ {
        self.records.iter().map(|(s, r)| (*s, &self.buf[r.clone()]))
    }

    /// The events, borrowed from the batch's buffer.
    pub fn views(&self) -> impl Iterator<Item = Result<EventView<'_>>> + '_ {
        self.payloads().map(|(seq, payload)| {
            decode_payload(seq, payload).map_err(|e| Error::UndecodableRecord {
                sequence_number: seq,
                what: e.0,
            })
        })
    }

    /// The events, owned.
    pub fn events(&self) -> Result<Vec<Event>> {
        self.views().map(|v| v.map(|v| v.to_event())).collect()
    }

    /// Payload bytes of the records.
    pub fn payload_bytes(&self) -> usize {
        self.payload_bytes
    }

    /// Makes `buf[start..start + len]` writable (zeroing only memory never used before) and
    /// returns it; `used` is not moved.
    fn space(&mut self, start: usize, len: usize) -> &mut [u8] {
        if self.buf.len() < start + len {
            self.buf.resize(start + len, 0);
        }
        &mut self.buf[start..start + len]
    }

    fn accept(&mut self, seq: EventLogSequenceNumber, payload: Range<usize>) {
        self.payload_bytes += payload.len();
        self.records.push((seq, payload));
    }

    /// Whether a payload of `len` more bytes would pass the limits (the first always does).
    fn has_room(&self, limits: ReadLimits, len: usize) -> bool {
        self.records.len() < limits.records_max
            && (self.records.is_empty() || self.payload_bytes + len <= limits.bytes_max)
    }
}

/// What a reader keeps of a parsed frame once it no longer borrows the buffer.
struct FrameInfo {
    seq: EventLogSequenceNumber,
    total_len: usize,
}

impl FrameInfo {
    fn of(frame: &super::format::Frame<'_>) -> Self {
        Self {
            seq: frame.seq,
            total_len: frame.total_len,
        }
    }
}

/// Limits of one read.
#[derive(Debug, Clone, Copy)]
pub(crate) struct ReadLimits {
    /// The log's end when the read began: no record at or after it is returned, though the
    /// active segment may already show it (the writer publishes a segment's end before the
    /// log's, so a read never returns what the log does not show yet).
    pub(crate) end: EventLogSequenceNumber,
    pub(crate) records_max: usize,
    pub(crate) bytes_max: usize,
    pub(crate) payload_max: usize,
    /// Whether blocks decompressed for this read go into the block cache.
    pub(crate) fill_cache: bool,
}

pub(crate) fn frame_error(path: &std::path::Path, offset: u64, e: FormatError) -> Error {
    match e {
        FormatError::Checksum { expected, actual } => Error::ChecksumMismatch {
            path: path.to_path_buf(),
            offset,
            what: "record frame",
            expected,
            actual,
        },
        FormatError::Invalid(what) => Error::Corruption {
            path: path.to_path_buf(),
            offset,
            what,
        },
        FormatError::TooNew { found } | FormatError::TooOld { found } => Error::Corruption {
            path: path.to_path_buf(),
            offset,
            what: format!("unexpected version {found} in frame"),
        },
    }
}

/// Which records a read returns.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Selection<'a> {
    /// Every record from where the read starts, consecutively.
    All,
    /// Only these (ascending, no repeats); the records between them are stepped over.
    Only(&'a [EventLogSequenceNumber]),
}

impl Selection<'_> {
    /// The first record wanted at or after `seq`; `None` when none is.
    pub(crate) fn at_or_after(self, seq: EventLogSequenceNumber) -> Option<EventLogSequenceNumber> {
        match self {
            Selection::All => Some(seq),
            Selection::Only(wanted) => wanted.get(wanted.partition_point(|w| *w < seq)).copied(),
        }
    }
}

/// Appends the selected records `>= from` of `raw` (up to its visible end) to `batch`, reading
/// straight into the batch's buffer; `from` is a selected record. Returns the sequence number
/// after the last record taken (`from` when none was).
pub(crate) fn read_raw(
    raw: &RawSegment,
    from: EventLogSequenceNumber,
    select: Selection<'_>,
    limits: ReadLimits,
    batch: &mut RecordBatch,
) -> Result<EventLogSequenceNumber> {
    // The sequence number first: the writer publishes the end before it, so every record
    // below `end_seq` lies before `end`. And no further than the log's end.
    let end_seq = raw.visible_next().min(limits.end);
    let end = raw.visible_end();
    let mut offset = raw.seek(from);
    let mut next = from;
    let mut want = from;
    let mut at_least = 0usize;
    let mut stop = false;
    while offset < end && want < end_seq && batch.has_room(limits, 0) {
        let room = limits.bytes_max.saturating_sub(batch.payload_bytes);
        let records_left = limits.records_max.saturating_sub(batch.len());
        let guess = records_left
            .saturating_mul(RAW_READ_GUESS_PER_RECORD)
            .saturating_add(RAW_READ_GUESS_SLACK);
        let want_bytes = room
            .saturating_add(room / 8)
            .min(guess)
            .clamp(RAW_READ_MIN_BYTES, RAW_READ_MAX_BYTES)
            .max(at_least)
            .min((end - offset) as usize);
        let start = batch.used;
        let got = raw
            .file
            .read_at(batch.space(start, want_bytes), offset.0)
            .map_err(|e| Error::io("read", &raw.path, e))?;
        let filled = start + got;
        let mut at = start;
        while at < filled {
            let frame_offset = offset + (at - start) as u64;
            // The frame's structure first; its checksum only once it is to be returned.
            let header = match parse_frame_in_verified_block(
                &batch.buf[at..filled],
                raw.id.base(),
                frame_offset.0,
                limits.payload_max,
            ) {
                FrameParse::Frame(frame) => FrameInfo::of(&frame),
                FrameParse::Incomplete(needed) => {
                    if frame_offset + needed as u64 > end {
                        return Err(Error::Corruption {
                            path: raw.path.clone(),
                            offset: frame_offset.0,
                            what: format!(
                                "frame of {needed} bytes runs past the visible end {end}"
                            ),
                        });
                    }
                    // Read again from this frame, at least whole.
                    at_least = needed;
                    break;
                }
                FrameParse::Bad(e) => return Err(frame_error(&raw.path, frame_offset.0, e)),
            };
            if header.seq < want {
                // Not wanted (before the first record wanted, or between selected ones):
                // stepped over by its length, not returned, so its checksum is not computed.
                // A damaged length cannot go unnoticed: it lands the walk where no frame with
                // its checksum starts (the next record returned fails its check there), past
                // the visible end (an error above), or at the end without the record wanted
                // (an error below).
                at += header.total_len;
                continue;
            }
            if !batch.has_room(limits, header.total_len - FRAME_HEADER_LEN) {
                stop = true;
                break;
            }
            check_frame_crc(
                &batch.buf[at..at + header.total_len],
                raw.id.base(),
                frame_offset.0,
            )
            .map_err(|e| frame_error(&raw.path, frame_offset.0, e))?;
            if header.seq >= end_seq {
                stop = true;
                break;
            }
            if header.seq != want {
                return Err(Error::Corruption {
                    path: raw.path.clone(),
                    offset: frame_offset.0,
                    what: format!("sequence number: expected {want}, found {}", header.seq),
                });
            }
            batch.accept(header.seq, at + FRAME_HEADER_LEN..at + header.total_len);
            at += header.total_len;
            next = EventLogSequenceNumber(header.seq.0 + 1);
            let Some(w) = select.at_or_after(next) else {
                stop = true;
                break;
            };
            want = w;
        }
        offset += (at - start) as u64;
        batch.used = at;
        if stop {
            break;
        }
    }
    if !stop && want < end_seq && offset >= end {
        // Every record below `end_seq` lies before `end`, so the walk missed `want`.
        return Err(Error::Corruption {
            path: raw.path.clone(),
            offset: end.0,
            what: format!("the frames run to the visible end without sequence number {want}"),
        });
    }
    Ok(next)
}

/// Checks `bytes`, read at `offset` of `path`, against their stored CRC-32 `expected`.
fn check_crc(
    path: &std::path::Path,
    offset: u64,
    what: &'static str,
    bytes: &[u8],
    expected: u32,
) -> Result<()> {
    let actual = crc32fast::hash(bytes);
    if actual != expected {
        return Err(Error::ChecksumMismatch {
            path: path.to_path_buf(),
            offset,
            what,
            expected,
            actual,
        });
    }
    Ok(())
}

/// Loads (once) and returns the block index of a sealed segment.
pub(crate) fn sealed_blocks(sealed: &SealedSegment) -> Result<&[BlockEntry]> {
    if let Some(blocks) = sealed.blocks.get() {
        return Ok(blocks);
    }
    let t = &sealed.trailer;
    let index_bytes = t.blocks_count as usize * BLOCK_ENTRY_LEN;
    // The index must sit exactly between the blocks and the trailer: check before allocating.
    let file_len = sealed
        .file
        .len()
        .map_err(|e| Error::io("stat", &sealed.path, e))?;
    let index_end = t.index_offset.checked_add(index_bytes as u64);
    if index_end != file_len.checked_sub(TRAILER_LEN as u64) || t.blocks_count == 0 {
        return Err(Error::Corruption {
            path: sealed.path.clone(),
            offset: t.index_offset,
            what: format!(
                "block index of {} entries at {} does not end where the trailer starts ({} bytes file)",
                t.blocks_count, t.index_offset, file_len
            ),
        });
    }
    let mut buf = vec![0u8; index_bytes];
    let got = sealed
        .file
        .read_at(&mut buf, t.index_offset)
        .map_err(|e| Error::io("read", &sealed.path, e))?;
    if got != index_bytes {
        return Err(Error::Corruption {
            path: sealed.path.clone(),
            offset: t.index_offset,
            what: format!("block index: expected {index_bytes} bytes, found {got}"),
        });
    }
    check_crc(
        &sealed.path,
        t.index_offset,
        "block index",
        &buf,
        t.index_crc,
    )?;
    let blocks: Vec<BlockEntry> = buf
        .chunks_exact(BLOCK_ENTRY_LEN)
        .map(BlockEntry::decode)
        .collect();
    // Check the index's own consistency once, so reads can trust it.
    // Blocks tile the data area and the raw record area exactly, in sequence order.
    // A version-1 block's frames are the raw record area itself, so its logical offset follows
    // from the block before; a compact block's raw span is checked when it is expanded, and
    // here its logical offset must only leave each block before it room for its frames.
    let header_len = super::format::HEADER_LEN as u64;
    let mut expect_seq = sealed.id.base();
    let mut expect_file = header_len;
    let mut expect_logical = header_len;
    let mut records = 0u64;
    for (i, b) in blocks.iter().enumerate() {
        let logical_ok = if sealed.compact && i > 0 {
            b.logical_offset >= expect_logical
        } else {
            b.logical_offset == expect_logical
        };
        if b.first_seq != expect_seq
            || b.file_offset != expect_file
            || !logical_ok
            || b.records_count == 0
        {
            return Err(Error::Corruption {
                path: sealed.path.clone(),
                offset: t.index_offset + (i * BLOCK_ENTRY_LEN) as u64,
                what: format!(
                    "block {i}: expected first sequence {expect_seq} at file offset {expect_file} \
                     (raw offset {expect_logical}), found {b:?}"
                ),
            });
        }
        expect_seq = EventLogSequenceNumber(b.first_seq.0 + u64::from(b.records_count));
        expect_file += u64::from(b.compressed_len);
        expect_logical = if sealed.compact {
            b.logical_offset + FRAME_HEADER_LEN as u64 * u64::from(b.records_count)
        } else {
            expect_logical + u64::from(b.uncompressed_len)
        };
        records += u64::from(b.records_count);
    }
    let raw_ok = if sealed.compact {
        // The last block's records must fit in what is left of the raw record area.
        expect_logical - header_len <= t.raw_len
    } else {
        expect_logical - header_len == t.raw_len
    };
    if expect_seq != t.next_seq
        || records != t.records_count
        || expect_file != t.index_offset
        || !raw_ok
    {
        return Err(Error::Corruption {
            path: sealed.path.clone(),
            offset: t.index_offset,
            what: format!(
                "block index covers records up to {expect_seq} ({records}), data up to {expect_file} \
                 and {} raw bytes; trailer says {} ({}), index at {}, {} raw bytes",
                expect_logical - header_len,
                t.next_seq,
                t.records_count,
                t.index_offset,
                t.raw_len
            ),
        });
    }
    let _ = sealed.blocks.set(blocks);
    Ok(sealed.blocks.get().map_or(&[], Vec::as_slice))
}

/// How many bytes block `i`'s records took in the raw segment (frame headers included): up
/// to the next block's logical offset, or to the end of the raw record area.
fn raw_span(sealed: &SealedSegment, blocks: &[BlockEntry], i: usize) -> u64 {
    let end = blocks.get(i + 1).map_or(
        super::format::HEADER_LEN as u64 + sealed.trailer.raw_len,
        |next| next.logical_offset,
    );
    end.saturating_sub(blocks[i].logical_offset)
}

/// Loads block `i` of `sealed` into the batch: reads it, checks its checksum, sizes and every
/// record in it, and leaves each record's payload in `batch.buf` from `batch.used` on, their
/// ranges in `batch.block_payloads` (in sequence order from the block's `first_seq`).
fn load_block(
    sealed: &SealedSegment,
    blocks: &[BlockEntry],
    i: usize,
    batch: &mut RecordBatch,
    payload_max: usize,
) -> Result<()> {
    let block = &blocks[i];
    let corruption = |what: String| Error::Corruption {
        path: sealed.path.clone(),
        offset: block.file_offset,
        what,
    };
    batch.scratch.resize(block.compressed_len as usize, 0);
    let got = sealed
        .file
        .read_at(&mut batch.scratch, block.file_offset)
        .map_err(|e| Error::io("read", &sealed.path, e))?;
    if got != batch.scratch.len() {
        return Err(corruption(format!(
            "block: expected {} bytes, found {got}",
            batch.scratch.len()
        )));
    }
    check_crc(
        &sealed.path,
        block.file_offset,
        "sealed block",
        &batch.scratch,
        block.crc,
    )?;
    if batch.decompressor.is_none() {
        batch.decompressor = Some(
            zstd::bulk::Decompressor::new()
                .map_err(|e| Error::io("zstd context", &sealed.path, e))?,
        );
    }
    // Bound the allocation by what the compressed bytes can possibly expand to: a zstd block
    // decodes to at most 128 KiB and takes at least 4 bytes (an RLE block), so a frame of
    // `c` bytes decodes to at most `c * 32768`. A larger claim is corruption, caught before
    // allocating anything from it.
    let record_min = if sealed.compact {
        ENTRY_MIN_LEN
    } else {
        FRAME_HEADER_LEN
    };
    if u64::from(block.uncompressed_len) > u64::from(block.compressed_len) * 32_768
        || (block.uncompressed_len as usize) < block.records_count as usize * record_min
    {
        return Err(corruption(format!(
            "block of {} compressed bytes and {} records claims {} uncompressed bytes",
            block.compressed_len, block.records_count, block.uncompressed_len
        )));
    }
    let start = batch.used;
    let len = block.uncompressed_len as usize;
    let target = if sealed.compact {
        batch.plain.resize(len, 0);
        &mut batch.plain[..]
    } else {
        batch.space(start, len);
        &mut batch.buf[start..start + len]
    };
    let decompressed = match batch.decompressor.as_mut() {
        Some(d) => d.decompress_to_buffer(&batch.scratch, target),
        None => unreachable!("set above"),
    }
    .map_err(|e| corruption(format!("block does not decompress: {e}")))?;
    if decompressed != len {
        return Err(corruption(format!(
            "block decompresses to {decompressed} bytes, index says {len}"
        )));
    }
    batch.block_payloads.clear();
    if sealed.compact {
        let span = raw_span(sealed, blocks, i);
        batch.used = expand(
            &batch.plain,
            block.records_count,
            span,
            &mut batch.buf,
            start,
            &mut batch.block_payloads,
        )
        .map_err(|e| corruption(format!("{e} (records from {})", block.first_seq)))?;
        return Ok(());
    }
    let block_end = start + len;
    let mut at = start;
    let mut seq = block.first_seq;
    for _ in 0..block.records_count {
        let offset = block.logical_offset + (at - start) as u64;
        match parse_frame_in_verified_block(
            &batch.buf[at..block_end],
            sealed.id.base(),
            offset,
            payload_max,
        ) {
            FrameParse::Frame(frame) => {
                let frame = FrameInfo::of(&frame);
                if frame.seq != seq {
                    return Err(corruption(format!(
                        "sequence number: expected {seq}, found {}",
                        frame.seq
                    )));
                }
                batch
                    .block_payloads
                    .push(at + FRAME_HEADER_LEN..at + frame.total_len);
                at += frame.total_len;
                seq = EventLogSequenceNumber(seq.0 + 1);
            }
            FrameParse::Incomplete(_) => {
                return Err(corruption(format!(
                    "block ends inside the frame of record {seq}"
                )))
            }
            FrameParse::Bad(e) => return Err(frame_error(&sealed.path, block.file_offset, e)),
        }
    }
    if at != block_end {
        return Err(corruption(format!(
            "{} bytes after the last frame of the block",
            block_end - at
        )));
    }
    batch.used = block_end;
    Ok(())
}

/// Where record `seq` is among the `records` of `block`, if it is in it.
fn index_in_block(
    seq: EventLogSequenceNumber,
    block: &BlockEntry,
    records: usize,
) -> Option<usize> {
    seq.0
        .checked_sub(block.first_seq.0)
        .and_then(|k| usize::try_from(k).ok())
        .filter(|k| *k < records)
}

/// Appends records `>= from` of a sealed segment to `batch`; returns the next sequence number.
pub(crate) fn read_sealed(
    sealed: &Arc<SealedSegment>,
    from: EventLogSequenceNumber,
    select: Selection<'_>,
    limits: ReadLimits,
    batch: &mut RecordBatch,
    cache: Option<&BlockCache>,
) -> Result<EventLogSequenceNumber> {
    let blocks = sealed_blocks(sealed)?;
    let block_of = |seq: EventLogSequenceNumber| {
        blocks
            .partition_point(|b| b.first_seq <= seq)
            .saturating_sub(1)
    };
    let mut i = block_of(from);
    let mut next = from;
    let mut want = Some(from);
    while i < blocks.len() && batch.has_room(limits, 0) {
        let block = &blocks[i];
        let mut stop = false;
        if let Some(cached) = cache.and_then(|c| c.get(sealed.cache_id, i as u32)) {
            // A verified block: jump to each wanted record and copy only the payloads taken.
            while let Some(w) = want {
                let Some(k) = index_in_block(w, block, cached.records()) else {
                    break;
                };
                let payload = cached.payload(k);
                if !batch.has_room(limits, payload.len()) {
                    stop = true;
                    break;
                }
                let at = batch.used;
                batch.space(at, payload.len()).copy_from_slice(payload);
                batch.used = at + payload.len();
                batch.accept(w, at..at + payload.len());
                next = EventLogSequenceNumber(w.0 + 1);
                want = select.at_or_after(next);
            }
        } else {
            let start = batch.used;
            load_block(sealed, blocks, i, batch, limits.payload_max)?;
            if let Some(cache) = cache.filter(|_| limits.fill_cache) {
                // Every record of the block has just been checked: it is cached with its place.
                cache.insert(
                    sealed.cache_id,
                    i as u32,
                    &batch.buf[start..batch.used],
                    start,
                    &batch.block_payloads,
                );
            }
            while let Some(w) = want {
                let Some(k) = index_in_block(w, block, batch.block_payloads.len()) else {
                    break;
                };
                let payload = batch.block_payloads[k].clone();
                if !batch.has_room(limits, payload.len()) {
                    stop = true;
                    break;
                }
                batch.accept(w, payload);
                next = EventLogSequenceNumber(w.0 + 1);
                want = select.at_or_after(next);
            }
        }
        let Some(w) = want.filter(|_| !stop) else {
            break;
        };
        i = block_of(w).max(i + 1);
    }
    Ok(next)
}

/// Reads the trailer of a sealed file.
pub(crate) fn read_trailer(
    file: &dyn crate::io::IoFile,
    path: &std::path::Path,
) -> Result<super::format::SealTrailer> {
    let len = file.len().map_err(|e| Error::io("stat", path, e))?;
    if len < (super::format::HEADER_LEN + TRAILER_LEN) as u64 {
        return Err(Error::Corruption {
            path: path.to_path_buf(),
            offset: 0,
            what: format!("sealed segment of {len} bytes is shorter than header and trailer"),
        });
    }
    let mut buf = [0u8; TRAILER_LEN];
    let at = len - TRAILER_LEN as u64;
    let got = file
        .read_at(&mut buf, at)
        .map_err(|e| Error::io("read", path, e))?;
    if got != TRAILER_LEN {
        return Err(Error::Corruption {
            path: path.to_path_buf(),
            offset: at,
            what: format!("seal trailer: expected {TRAILER_LEN} bytes, read {got}"),
        });
    }
    super::format::SealTrailer::decode(&buf).map_err(|e| match e {
        FormatError::Checksum { expected, actual } => Error::ChecksumMismatch {
            path: path.to_path_buf(),
            offset: at,
            what: "seal trailer",
            expected,
            actual,
        },
        FormatError::Invalid(what) => Error::Corruption {
            path: path.to_path_buf(),
            offset: at,
            what: format!("seal trailer (no valid trailer means the seal never completed): {what}"),
        },
        FormatError::TooNew { found } | FormatError::TooOld { found } => Error::Corruption {
            path: path.to_path_buf(),
            offset: at,
            what: format!("seal trailer: unexpected version {found}"),
        },
    })
}
