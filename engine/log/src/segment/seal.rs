//! Sealing: rewriting a full raw segment as independent zstd blocks with an index.
//!
//! Crash safety: the sealed image is written to `<base>.sealed.tmp`, synced, renamed to
//! `<base>.sealed` and the directory synced; only then is the raw `<base>.log` removed.
//! Recovery therefore sees either no sealed file (the raw one is still whole), a `.tmp` (an
//! interrupted seal: deleted), or a complete `.sealed` beside a leftover `.log` (deleted).
//! Readers keep reading the raw file, through their open handle, until the log swaps the
//! sealed segment in.
//!
//! Invariants:
//! - the sealed image holds every record of the raw segment up to its visible end, checked
//!   frame by frame on the way, or sealing fails with an `Error` and the raw segment stays;
//! - `<base>.sealed` exists only complete and durable (written and synced before the rename).
//!
//! Blocks are compact (format version 3, FORMAT.md section 6.5): each frame's checksum is
//! verified here, then its payload goes into the block without the frame header and without an
//! execution context the record before it in the block already holds ([`CompactEncoder`]).
//!
//! Memory: a sealer streams: about 1 MiB of the raw segment, one block and 1 MiB of compressed
//! output at a time (more for a record larger than that), whatever `segment-bytes-max` is.

use std::{
    path::Path,
    sync::{Arc, OnceLock},
};

use super::{
    cache::CacheId,
    compact::CompactEncoder,
    format::{parse_frame, BlockEntry, FrameParse, SealTrailer, SegmentHeader, HEADER_LEN},
    reader::frame_error,
    sealed_name, sealing_name, RawSegment, SealedSegment, FIRST_FRAME,
};
use crate::{
    config::LogConfig,
    error::{Error, Result},
    ids::{EventLogSequenceNumber, ScopeId, TenantId},
    io::{IoEngine, IoFile, OpenMode},
};

/// Raw segment bytes read at a time (more only for a frame that does not fit).
const READ_CHUNK: usize = 1 << 20;
/// Compressed bytes gathered before they are written to the sealed file.
const WRITE_CHUNK: usize = 1 << 20;

/// Seals `raw` (which must be full and immutable) in `dir`; returns the sealed segment.
pub(crate) fn seal_segment(
    io: &dyn IoEngine,
    config: &LogConfig,
    dir: &Path,
    tenant: TenantId,
    scope: ScopeId,
    raw: &RawSegment,
) -> Result<Arc<SealedSegment>> {
    // Write, sync, rename, sync the directory.
    let tmp = dir.join(sealing_name(raw.id));
    let dst = dir.join(sealed_name(raw.id));
    if io.exists(&tmp) {
        io.remove_file(&tmp)
            .map_err(|e| Error::io("remove", &tmp, e))?;
    }
    let file = io
        .open(&tmp, OpenMode::CreateNew)
        .map_err(|e| Error::io("create", &tmp, e))?;
    let written = SealedWriter::write(file.as_ref(), &tmp, config, tenant, scope, raw);
    drop(file);
    let (blocks, trailer) = match written {
        Ok(done) => done,
        Err(e) => {
            // Recovery deletes a `.tmp` too; this only spares the disk until then.
            let _ = io.remove_file(&tmp);
            return Err(e);
        }
    };
    io.rename(&tmp, &dst)
        .map_err(|e| Error::io("rename", &dst, e))?;
    io.sync_dir(dir)
        .map_err(|e| Error::io("fsync dir", dir, e))?;
    let file = io
        .open(&dst, OpenMode::Read)
        .map_err(|e| Error::io("open", &dst, e))?;
    let blocks_cell = OnceLock::new();
    let _ = blocks_cell.set(blocks);
    Ok(Arc::new(SealedSegment {
        path: dst,
        file,
        id: raw.id,
        trailer,
        compact: true,
        blocks: blocks_cell,
        cache_id: CacheId::next(),
    }))
}

/// Streams a raw segment into a sealed file: reads the record area a chunk at a time, checks
/// every frame, gathers the records into compact blocks cut at record boundaries, compresses
/// each and writes the compressed blocks out as they gather, then the block index and the
/// trailer, and syncs.
///
/// Memory: one read chunk (grown to hold a frame larger than it), one block and one write
/// chunk, whatever the segment's size.
struct SealedWriter<'a> {
    file: &'a dyn IoFile,
    path: &'a Path,
    compressor: zstd::bulk::Compressor<'static>,
    /// The block under way.
    encoder: CompactEncoder,
    /// One block's compressed bytes.
    scratch: Vec<u8>,
    /// Compressed bytes not yet written, which start at `written` in the file.
    pending: Vec<u8>,
    written: u64,
}

impl SealedWriter<'_> {
    /// Where the next byte appended goes in the file.
    fn position(&self) -> u64 {
        self.written + self.pending.len() as u64
    }

    /// Writes what has gathered once it is a chunk's worth.
    fn flush(&mut self) -> Result<()> {
        if self.pending.len() < WRITE_CHUNK {
            return Ok(());
        }
        self.file
            .write_all_at(&self.pending, self.written)
            .map_err(|e| Error::io("write", self.path, e))?;
        self.written += self.pending.len() as u64;
        self.pending.clear();
        Ok(())
    }

    /// Compresses the block under way (records `first..first + count`, whose frames started
    /// at `logical_offset` in the raw segment), appends it and starts the next.
    fn block(
        &mut self,
        logical_offset: u64,
        first: EventLogSequenceNumber,
        count: u32,
    ) -> Result<BlockEntry> {
        let records = self.encoder.block();
        // zstd writes from the start of the buffer, within its capacity.
        self.scratch.clear();
        self.scratch
            .reserve(zstd::zstd_safe::compress_bound(records.len()));
        self.compressor
            .compress_to_buffer(records, &mut self.scratch)
            .map_err(|e| Error::io("zstd compress", self.path, e))?;
        let entry = BlockEntry {
            first_seq: first,
            logical_offset,
            file_offset: self.position(),
            compressed_len: self.scratch.len() as u32,
            uncompressed_len: records.len() as u32,
            records_count: count,
            crc: crc32fast::hash(&self.scratch),
        };
        self.encoder.clear();
        self.pending.extend_from_slice(&self.scratch);
        self.flush()?;
        Ok(entry)
    }

    /// Writes the whole sealed image of `raw` into `file` (at `path`) and syncs it; returns
    /// its blocks and trailer.
    fn write(
        file: &dyn IoFile,
        path: &Path,
        config: &LogConfig,
        tenant: TenantId,
        scope: ScopeId,
        raw: &RawSegment,
    ) -> Result<(Vec<BlockEntry>, SealTrailer)> {
        let mut this = SealedWriter {
            file,
            path,
            compressor: zstd::bulk::Compressor::new(config.seal_zstd_level)
                .map_err(|e| Error::io("zstd context", &raw.path, e))?,
            encoder: CompactEncoder::new(),
            scratch: Vec::new(),
            pending: Vec::with_capacity(WRITE_CHUNK + (WRITE_CHUNK >> 2)),
            written: 0,
        };
        let end = raw.visible_end();
        let next_seq = raw.visible_next();
        let base = raw.id.base();
        let area_len = (end.0 as usize).saturating_sub(HEADER_LEN);
        let header = SegmentHeader::new_compact_sealed(tenant, scope, base);
        this.pending.extend_from_slice(&header.encode());

        let block_target = config.seal_block_bytes.as_u64() as usize;
        let payload_max = super::format::RECORD_BYTES_LIMIT;
        let mut blocks = Vec::new();
        // The record area from `buf_at` lies in `buf[..filled]` (the first read sizes it).
        let mut buf = Vec::new();
        let (mut buf_at, mut filled) = (0usize, 0usize);
        // The next frame starts at `at`, the block under way at `block_start` (area offsets).
        let (mut at, mut block_start) = (0usize, 0usize);
        let mut seq = base;
        let mut block_first = seq;
        let mut block_count = 0u32;
        while at < area_len {
            let offset = (HEADER_LEN + at) as u64;
            match parse_frame(&buf[at - buf_at..filled], base, offset, payload_max) {
                FrameParse::Frame(f) if f.seq == seq => {
                    this.encoder.push(f.payload);
                    at += f.total_len;
                    seq = EventLogSequenceNumber(seq.0 + 1);
                    block_count += 1;
                    // A block ends once it is big enough, and with the segment's last record.
                    if this.encoder.len() >= block_target || at == area_len {
                        blocks.push(this.block(
                            (HEADER_LEN + block_start) as u64,
                            block_first,
                            block_count,
                        )?);
                        block_start = at;
                        block_first = seq;
                        block_count = 0;
                    }
                }
                FrameParse::Frame(f) => {
                    return Err(Error::Corruption {
                        path: raw.path.clone(),
                        offset,
                        what: format!("sequence number: expected {seq}, found {}", f.seq),
                    })
                }
                FrameParse::Incomplete(n) if buf_at + filled == area_len => {
                    return Err(Error::Corruption {
                        path: raw.path.clone(),
                        offset,
                        what: format!("full segment ends inside a {n}-byte frame"),
                    })
                }
                FrameParse::Incomplete(n) => {
                    // Keep what there is of the frame, make room for it (and a chunk), read on.
                    let keep = at - buf_at;
                    buf.copy_within(keep..filled, 0);
                    filled -= keep;
                    buf_at = at;
                    let room = n.max(READ_CHUNK);
                    let room = room.min(area_len - buf_at);
                    if buf.len() < room {
                        buf.resize(room, 0);
                    }
                    let want = room - filled;
                    let got = raw
                        .file
                        .read_at(
                            &mut buf[filled..filled + want],
                            FIRST_FRAME.0 + (buf_at + filled) as u64,
                        )
                        .map_err(|e| Error::io("read", &raw.path, e))?;
                    if got != want {
                        return Err(Error::Corruption {
                            path: raw.path.clone(),
                            offset: (FIRST_FRAME + (buf_at + filled + got) as u64).0,
                            what: format!("raw segment shorter than its visible end {end}"),
                        });
                    }
                    filled += got;
                }
                FrameParse::Bad(e) => return Err(frame_error(&raw.path, offset, e)),
            }
        }
        if seq != next_seq || blocks.is_empty() {
            return Err(Error::Corruption {
                path: raw.path.clone(),
                offset: end.0,
                what: format!(
                    "segment holds records up to {seq}, expected up to {next_seq} (and at least one)"
                ),
            });
        }

        let index_offset = this.position();
        let mut index = Vec::with_capacity(blocks.len() * super::format::BLOCK_ENTRY_LEN);
        for b in &blocks {
            b.encode(&mut index);
        }
        let trailer = SealTrailer {
            index_offset,
            blocks_count: blocks.len() as u32,
            records_count: next_seq.0 - base.0,
            next_seq,
            raw_len: area_len as u64,
            index_crc: crc32fast::hash(&index),
        };
        this.pending.extend_from_slice(&index);
        this.pending.extend_from_slice(&trailer.encode());
        this.file
            .write_all_at_and_sync(&this.pending, this.written)
            .map_err(|e| Error::io("write+fdatasync", this.path, e))?;
        Ok((blocks, trailer))
    }
}
