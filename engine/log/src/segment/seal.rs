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
//! Memory: one raw segment (`segment-bytes-max`) is held while sealing it.

use std::{
    path::Path,
    sync::{Arc, OnceLock},
};

use super::{
    cache::CacheId,
    format::{
        parse_frame, BlockEntry, FrameParse, SealTrailer, SegmentHeader, SegmentKind, HEADER_LEN,
    },
    reader::frame_error,
    sealed_name, sealing_name, RawSegment, SealedSegment, FIRST_FRAME,
};
use crate::{
    config::LogConfig,
    error::{Error, Result},
    ids::{EventLogSequenceNumber, ScopeId, TenantId},
    io::{IoEngine, OpenMode},
};

/// Seals `raw` (which must be full and immutable) in `dir`; returns the sealed segment.
pub(crate) fn seal_segment(
    io: &dyn IoEngine,
    config: &LogConfig,
    dir: &Path,
    tenant: TenantId,
    scope: ScopeId,
    raw: &RawSegment,
) -> Result<Arc<SealedSegment>> {
    let end = raw.visible_end();
    let next_seq = raw.visible_next();
    let base = raw.id.base();
    let mut area = vec![0u8; (end.0 as usize).saturating_sub(HEADER_LEN)];
    let got = raw
        .file
        .read_at(&mut area, FIRST_FRAME.0)
        .map_err(|e| Error::io("read", &raw.path, e))?;
    if got != area.len() {
        return Err(Error::Corruption {
            path: raw.path.clone(),
            offset: (FIRST_FRAME + got as u64).0,
            what: format!("raw segment shorter than its visible end {end}"),
        });
    }

    // Cut the record area into blocks at frame boundaries, checking every frame on the way.
    let block_target = config.seal_block_bytes.as_u64() as usize;
    let payload_max = super::format::RECORD_BYTES_LIMIT;
    let mut cuts: Vec<(usize, usize, EventLogSequenceNumber, u32)> = Vec::new(); // (start, end, first, count)
    let mut at = 0usize;
    let mut seq = base;
    let mut block_start = 0usize;
    let mut block_first = seq;
    let mut block_count = 0u32;
    while at < area.len() {
        let offset = (HEADER_LEN + at) as u64;
        match parse_frame(&area[at..], base, offset, payload_max) {
            FrameParse::Frame(f) if f.seq == seq => {
                at += f.total_len;
                seq = EventLogSequenceNumber(seq.0 + 1);
                block_count += 1;
                if at - block_start >= block_target {
                    cuts.push((block_start, at, block_first, block_count));
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
            FrameParse::Incomplete(n) => {
                return Err(Error::Corruption {
                    path: raw.path.clone(),
                    offset,
                    what: format!("full segment ends inside a {n}-byte frame"),
                })
            }
            FrameParse::Bad(e) => return Err(frame_error(&raw.path, offset, e)),
        }
    }
    if block_count > 0 {
        cuts.push((block_start, at, block_first, block_count));
    }
    if seq != next_seq || cuts.is_empty() {
        return Err(Error::Corruption {
            path: raw.path.clone(),
            offset: end.0,
            what: format!(
                "segment holds records up to {seq}, expected up to {next_seq} (and at least one)"
            ),
        });
    }

    // Compose the sealed image.
    let header = SegmentHeader::new(SegmentKind::Sealed, tenant, scope, base);
    let mut out = Vec::with_capacity(area.len() / 3 + 4096);
    out.extend_from_slice(&header.encode());
    let mut blocks = Vec::with_capacity(cuts.len());
    // One compression context for the whole segment.
    let mut compressor = zstd::bulk::Compressor::new(config.seal_zstd_level)
        .map_err(|e| Error::io("zstd context", &raw.path, e))?;
    for (start, stop, first, count) in cuts {
        let compressed = compressor
            .compress(&area[start..stop])
            .map_err(|e| Error::io("zstd compress", &raw.path, e))?;
        blocks.push(BlockEntry {
            first_seq: first,
            logical_offset: (HEADER_LEN + start) as u64,
            file_offset: out.len() as u64,
            compressed_len: compressed.len() as u32,
            uncompressed_len: (stop - start) as u32,
            records_count: count,
            crc: crc32fast::hash(&compressed),
        });
        out.extend_from_slice(&compressed);
    }
    let index_offset = out.len() as u64;
    let mut index = Vec::with_capacity(blocks.len() * super::format::BLOCK_ENTRY_LEN);
    for b in &blocks {
        b.encode(&mut index);
    }
    let trailer = SealTrailer {
        index_offset,
        blocks_count: blocks.len() as u32,
        records_count: next_seq.0 - base.0,
        next_seq,
        raw_len: area.len() as u64,
        index_crc: crc32fast::hash(&index),
    };
    out.extend_from_slice(&index);
    out.extend_from_slice(&trailer.encode());

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
    file.write_all_at_and_sync(&out, 0)
        .map_err(|e| Error::io("write+fdatasync", &tmp, e))?;
    drop(file);
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
        blocks: blocks_cell,
        cache_id: CacheId::next(),
    }))
}
