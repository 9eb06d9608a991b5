//! Reading records from raw and sealed segments.
//!
//! Every frame read is checked again (length bound, checksum bound to its location, sequence
//! number in order): the same checks the writer's encoder guarantees, paired on the way back.
//! A batch owns one buffer; events are decoded from it without copying ([`EventView`]).

use std::{ops::Range, sync::Arc};

use super::{
    format::{
        parse_frame, BlockEntry, FormatError, FrameParse, BLOCK_ENTRY_LEN, FRAME_HEADER_LEN,
        TRAILER_LEN,
    },
    RawSegment, SealedSegment,
};
use crate::{
    error::{Error, Result},
    event::{decode_payload, Event, EventView},
    ids::EventLogSequenceNumber,
};

/// Bytes read from a raw segment per call when the batch has room.
const RAW_READ_CHUNK_BYTES: usize = 1 << 20;

/// Records read from a log: one buffer, frames located in it.
#[derive(Debug, Default)]
pub struct RecordBatch {
    buf: Vec<u8>,
    records: Vec<(EventLogSequenceNumber, Range<usize>)>,
}

impl RecordBatch {
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

    /// Bytes held.
    pub fn buffer_bytes(&self) -> usize {
        self.buf.len()
    }

    fn push(&mut self, seq: EventLogSequenceNumber, payload: &[u8]) {
        let start = self.buf.len();
        self.buf.extend_from_slice(payload);
        self.records.push((seq, start..self.buf.len()));
    }
}

/// Limits of one read.
#[expect(
    clippy::struct_field_names,
    reason = "units last: each field is a maximum"
)]
#[derive(Debug, Clone, Copy)]
pub(crate) struct ReadLimits {
    pub(crate) records_max: usize,
    pub(crate) bytes_max: usize,
    pub(crate) payload_max: usize,
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
        FormatError::TooNew { found } => Error::Corruption {
            path: path.to_path_buf(),
            offset,
            what: format!("unexpected version {found} in frame"),
        },
    }
}

/// Appends records `>= from` of `raw` (up to its visible end) to `batch`. Returns the next
/// sequence number to read.
pub(crate) fn read_raw(
    raw: &RawSegment,
    from: EventLogSequenceNumber,
    limits: ReadLimits,
    batch: &mut RecordBatch,
) -> Result<EventLogSequenceNumber> {
    let end = raw.visible_bytes();
    let end_seq = raw.visible_next();
    let mut offset = raw.seek(from);
    let mut next = from;
    let mut chunk = Vec::new();
    while offset < end && next < end_seq && batch.len() < limits.records_max {
        let room = limits
            .bytes_max
            .saturating_sub(batch.buffer_bytes())
            .max(FRAME_HEADER_LEN);
        let want = ((end - offset) as usize).min(RAW_READ_CHUNK_BYTES.max(room.min(64 << 20)));
        chunk.resize(want, 0);
        let got = raw
            .file
            .read_at(&mut chunk, offset)
            .map_err(|e| Error::io("read", &raw.path, e))?;
        chunk.truncate(got);
        let mut at = 0usize;
        let mut progressed = false;
        while at < chunk.len() && batch.len() < limits.records_max {
            match parse_frame(
                &chunk[at..],
                raw.base,
                offset + at as u64,
                limits.payload_max,
            ) {
                FrameParse::Frame(frame) => {
                    if frame.seq.0 >= end_seq.0 {
                        return Ok(next);
                    }
                    if frame.seq >= from {
                        if frame.seq != next {
                            return Err(Error::Corruption {
                                path: raw.path.clone(),
                                offset: offset + at as u64,
                                what: format!(
                                    "sequence number: expected {next}, found {}",
                                    frame.seq
                                ),
                            });
                        }
                        if !batch.is_empty()
                            && batch.buffer_bytes() + frame.payload.len() > limits.bytes_max
                        {
                            return Ok(next);
                        }
                        batch.push(frame.seq, frame.payload);
                        next = EventLogSequenceNumber(frame.seq.0 + 1);
                    }
                    at += frame.total_len;
                    progressed = true;
                }
                FrameParse::Incomplete(needed) => {
                    if offset + (at + needed) as u64 > end {
                        return Err(Error::Corruption {
                            path: raw.path.clone(),
                            offset: offset + at as u64,
                            what: format!(
                                "frame of {needed} bytes runs past the visible end {end}"
                            ),
                        });
                    }
                    if !progressed {
                        // A frame larger than the chunk: read exactly it next time round.
                        chunk.resize(needed, 0);
                        let got = raw
                            .file
                            .read_at(&mut chunk, offset + at as u64)
                            .map_err(|e| Error::io("read", &raw.path, e))?;
                        if got < needed {
                            return Err(Error::Corruption {
                                path: raw.path.clone(),
                                offset: offset + at as u64,
                                what: format!("file ends {got} bytes into a {needed}-byte frame"),
                            });
                        }
                        offset += at as u64;
                        at = 0;
                        continue;
                    }
                    break;
                }
                FrameParse::Bad(e) => return Err(frame_error(&raw.path, offset + at as u64, e)),
            }
        }
        offset += at as u64;
        if at == 0 {
            break;
        }
    }
    Ok(next)
}

/// Loads (once) and returns the block index of a sealed segment.
pub(crate) fn sealed_blocks(sealed: &SealedSegment) -> Result<&[BlockEntry]> {
    if let Some(blocks) = sealed.blocks.get() {
        return Ok(blocks);
    }
    let t = &sealed.trailer;
    let index_bytes = t.blocks_count as usize * BLOCK_ENTRY_LEN;
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
    let actual = crc32fast::hash(&buf);
    if actual != t.index_crc {
        return Err(Error::ChecksumMismatch {
            path: sealed.path.clone(),
            offset: t.index_offset,
            what: "block index",
            expected: t.index_crc,
            actual,
        });
    }
    let blocks: Vec<BlockEntry> = buf
        .chunks_exact(BLOCK_ENTRY_LEN)
        .map(BlockEntry::decode)
        .collect();
    // Check the index's own consistency once, so reads can trust it.
    // Blocks tile the data area and the raw record area exactly, in sequence order.
    let header_len = super::format::HEADER_LEN as u64;
    let mut expect_seq = sealed.base;
    let mut expect_file = header_len;
    let mut expect_logical = header_len;
    let mut records = 0u64;
    for (i, b) in blocks.iter().enumerate() {
        if b.first_seq != expect_seq
            || b.file_offset != expect_file
            || b.logical_offset != expect_logical
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
        expect_logical += u64::from(b.uncompressed_len);
        records += u64::from(b.records_count);
    }
    if expect_seq != t.next_seq
        || records != t.records_count
        || expect_file != t.index_offset
        || expect_logical - header_len != t.raw_len
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

/// Reads and decompresses one block, checking its checksum.
pub(crate) fn read_block(sealed: &SealedSegment, block: &BlockEntry) -> Result<Vec<u8>> {
    let mut compressed = vec![0u8; block.compressed_len as usize];
    let got = sealed
        .file
        .read_at(&mut compressed, block.file_offset)
        .map_err(|e| Error::io("read", &sealed.path, e))?;
    if got != compressed.len() {
        return Err(Error::Corruption {
            path: sealed.path.clone(),
            offset: block.file_offset,
            what: format!("block: expected {} bytes, found {got}", compressed.len()),
        });
    }
    let actual = crc32fast::hash(&compressed);
    if actual != block.crc {
        return Err(Error::ChecksumMismatch {
            path: sealed.path.clone(),
            offset: block.file_offset,
            what: "sealed block",
            expected: block.crc,
            actual,
        });
    }
    let data =
        zstd::bulk::decompress(&compressed, block.uncompressed_len as usize).map_err(|e| {
            Error::Corruption {
                path: sealed.path.clone(),
                offset: block.file_offset,
                what: format!("block does not decompress: {e}"),
            }
        })?;
    if data.len() != block.uncompressed_len as usize {
        return Err(Error::Corruption {
            path: sealed.path.clone(),
            offset: block.file_offset,
            what: format!(
                "block decompresses to {} bytes, index says {}",
                data.len(),
                block.uncompressed_len
            ),
        });
    }
    Ok(data)
}

/// Appends records `>= from` of a sealed segment to `batch`; returns the next sequence number.
pub(crate) fn read_sealed(
    sealed: &Arc<SealedSegment>,
    from: EventLogSequenceNumber,
    limits: ReadLimits,
    batch: &mut RecordBatch,
) -> Result<EventLogSequenceNumber> {
    let blocks = sealed_blocks(sealed)?;
    let mut i = blocks
        .partition_point(|b| b.first_seq <= from)
        .saturating_sub(1);
    let mut next = from;
    while i < blocks.len() && batch.len() < limits.records_max {
        let block = &blocks[i];
        let data = read_block(sealed, block)?;
        let mut at = 0usize;
        let mut seq = block.first_seq;
        for _ in 0..block.records_count {
            let offset = block.logical_offset + at as u64;
            match parse_frame(&data[at..], sealed.base, offset, limits.payload_max) {
                FrameParse::Frame(frame) => {
                    if frame.seq != seq {
                        return Err(Error::Corruption {
                            path: sealed.path.clone(),
                            offset: block.file_offset,
                            what: format!("sequence number: expected {seq}, found {}", frame.seq),
                        });
                    }
                    if frame.seq >= next && batch.len() < limits.records_max {
                        if !batch.is_empty()
                            && batch.buffer_bytes() + frame.payload.len() > limits.bytes_max
                        {
                            return Ok(next);
                        }
                        batch.push(frame.seq, frame.payload);
                        next = EventLogSequenceNumber(frame.seq.0 + 1);
                    }
                    at += frame.total_len;
                    seq = EventLogSequenceNumber(seq.0 + 1);
                }
                FrameParse::Incomplete(_) => {
                    return Err(Error::Corruption {
                        path: sealed.path.clone(),
                        offset: block.file_offset,
                        what: format!("block ends inside the frame of record {seq}"),
                    })
                }
                FrameParse::Bad(e) => return Err(frame_error(&sealed.path, block.file_offset, e)),
            }
        }
        if at != data.len() {
            return Err(Error::Corruption {
                path: sealed.path.clone(),
                offset: block.file_offset,
                what: format!(
                    "{} bytes after the last frame of the block",
                    data.len() - at
                ),
            });
        }
        i += 1;
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
        FormatError::TooNew { found } => Error::Corruption {
            path: path.to_path_buf(),
            offset: at,
            what: format!("seal trailer: unexpected version {found}"),
        },
    })
}
