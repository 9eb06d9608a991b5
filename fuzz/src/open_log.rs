//! The `open_log` target: opening and reading a log directory built from the input.
//!
//! Input: `[flags: u8]`, then up to [`FILES_MAX`] files, each `[tag: u8][base: u64][len: u16]`
//! and `len` content bytes (all little-endian; a short input ends the list). The files land in
//! the event log directory of [`TENANT`] on a fresh `FaultIo`:
//!
//! - `flags & 3` picks the recovery mode: [`MODE_TOLERATE`] (and 3) `tolerate-torn-tail`,
//!   [`MODE_STRICT`] `strict`, [`MODE_SALVAGE`] `salvage`; [`FLAG_NO_SEALING`] turns the sealer
//!   off (else full raw segments found at open are sealed, and the harness waits).
//! - `tag & 3` names the file from `base`: [`NAME_RAW`] `<base:020>.log`, [`NAME_SEALED`]
//!   `<base:020>.sealed`, [`NAME_SEALING`] `<base:020>.sealed.tmp`, [`NAME_STRAY`] a name the
//!   engine must refuse (or, for `.sealed.tmp`, remove), picked by `base`.
//! - [`TAG_HEADER`]: the content is prefixed with a valid header of the name's kind and base,
//!   so mutations of the content never fail the header check.
//! - [`TAG_RECYCLED`]: with [`TAG_HEADER`] on a raw name, the header is that of a raw segment
//!   in a recycled file (format version 2), whose bytes after the last commit may be stale.
//! - [`TAG_FIX_CHECKSUMS`]: after assembly, the harness recomputes the checksums a mutation
//!   breaks, so the fuzzer reaches the checks behind them: every frame CRC of a raw file (walking
//!   the length fields from the header on), and the block CRCs, index CRC and trailer CRC of a
//!   sealed file (found through its trailer fields).
//!
//! Checks: nothing panics and open errors are never I/O errors (the file system never fails
//! here). When the log opens: reading it from 0 returns consecutive sequence numbers up to its
//! end or an error, never an empty batch before the end; single-record reads at other
//! positions return the same payloads; an append succeeds and reads back; sealing whatever
//! recovery queued succeeds; and a reopen succeeds at the new end with nothing to truncate.

use std::sync::Arc;

use annals_log::{
    testing::{
        format::{
            BlockEntry, SealTrailer, SegmentHeader, SegmentKind, BLOCK_ENTRY_LEN, HEADER_LEN,
            TRAILER_LEN,
        },
        FaultIo,
    },
    Error, EventLogSequenceNumber, IoEngine, Log, LogConfig, LogStore, OpenMode, RecoveryMode,
    ScopeId,
};

use crate::{commit, decoders::fix_frame_crc, fuzz_config, log_dir, Input, TENANT};

/// Recovery mode (`flags & 3`): `tolerate-torn-tail`.
pub const MODE_TOLERATE: u8 = 0;
/// Recovery mode: `strict`.
pub const MODE_STRICT: u8 = 1;
/// Recovery mode: `salvage`.
pub const MODE_SALVAGE: u8 = 2;
/// Flag: no sealer.
pub const FLAG_NO_SEALING: u8 = 4;

/// Name kind (`tag & 3`): raw segment.
pub const NAME_RAW: u8 = 0;
/// Name kind: sealed segment.
pub const NAME_SEALED: u8 = 1;
/// Name kind: sealed segment being written.
pub const NAME_SEALING: u8 = 2;
/// Name kind: a name that is none of the above.
pub const NAME_STRAY: u8 = 3;
/// Tag bit: prefix a valid header.
pub const TAG_HEADER: u8 = 4;
/// Tag bit: recompute checksums after assembly.
pub const TAG_FIX_CHECKSUMS: u8 = 8;
/// Tag bit: a recycled raw segment's header (with [`TAG_HEADER`]).
pub const TAG_RECYCLED: u8 = 16;

/// At most this many files per input.
pub const FILES_MAX: usize = 16;

/// One file of the directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileSpec {
    /// Name kind and bits, as described in the module docs.
    pub tag: u8,
    /// The base sequence number the name (and a synthesized header) carries.
    pub base: u64,
    /// The content (after the synthesized header, if any).
    pub content: Vec<u8>,
}

/// A log directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogDirSpec {
    /// Recovery mode and [`FLAG_NO_SEALING`].
    pub flags: u8,
    /// The files, in creation order (a repeated name overwrites).
    pub files: Vec<FileSpec>,
}

impl LogDirSpec {
    /// Reads the input format of the module docs.
    pub fn decode(data: &[u8]) -> Self {
        let mut input = Input::new(data);
        let flags = input.u8();
        let mut files = Vec::new();
        while !input.is_empty() && files.len() < FILES_MAX {
            let tag = input.u8();
            let base = input.u64();
            let len = input.u16();
            let content = input.bytes(usize::from(len)).to_vec();
            files.push(FileSpec { tag, base, content });
        }
        Self { flags, files }
    }

    /// Writes the input format (for seeds); contents longer than 64 KiB are cut.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = vec![self.flags];
        for f in &self.files {
            let len = u16::try_from(f.content.len()).unwrap_or(u16::MAX);
            out.push(f.tag);
            out.extend_from_slice(&f.base.to_le_bytes());
            out.extend_from_slice(&len.to_le_bytes());
            out.extend_from_slice(&f.content[..usize::from(len)]);
        }
        out
    }
}

/// The file name a spec gets.
pub fn file_name(tag: u8, base: u64) -> String {
    match tag & 3 {
        NAME_RAW => format!("{base:020}.log"),
        NAME_SEALED => format!("{base:020}.sealed"),
        NAME_SEALING => format!("{base:020}.sealed.tmp"),
        _ => match base % 7 {
            0 => "LOCK".to_owned(),
            1 => "99999999999999999999.log".to_owned(), // 20 digits, above u64::MAX
            2 => format!("{base}.log"),
            3 => format!("{base:020}.LOG"),
            4 => format!("{base:020}"),
            5 => format!("{base:020}.sealed.tmp.old"),
            _ => ".sealed.tmp".to_owned(), // a temporary name without a base
        },
    }
}

fn le_u64(b: &[u8], at: usize) -> u64 {
    let mut raw = [0u8; 8];
    raw.copy_from_slice(&b[at..at + 8]);
    u64::from_le_bytes(raw)
}

fn le_u32(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

/// Recomputes every frame CRC of a raw segment file, walking the length fields.
fn fix_raw(file: &mut [u8], base: u64) {
    let mut at = HEADER_LEN;
    while at < file.len() {
        match fix_frame_crc(&mut file[at..], EventLogSequenceNumber(base), at as u64) {
            Some(len) => at += len,
            None => break,
        }
    }
}

/// Recomputes the block CRCs, the index CRC and the trailer CRC of a sealed segment file from
/// the trailer's fields (the magic and the reserved bytes are rewritten as well).
fn fix_sealed(file: &mut [u8]) {
    let Some(trailer_at) = file
        .len()
        .checked_sub(TRAILER_LEN)
        .filter(|t| *t >= HEADER_LEN)
    else {
        return;
    };
    // Trailer fields (FORMAT.md, seal trailer): index offset u64, blocks count u32, reserved,
    // records count u64, next sequence number u64, raw length u64, index CRC u32.
    let t = &file[trailer_at..];
    let mut trailer = SealTrailer {
        index_offset: le_u64(t, 0),
        blocks_count: le_u32(t, 8),
        records_count: le_u64(t, 16),
        next_seq: EventLogSequenceNumber(le_u64(t, 24)),
        raw_len: le_u64(t, 32),
        index_crc: le_u32(t, 40),
    };
    let index = usize::try_from(trailer.index_offset)
        .ok()
        .and_then(|start| {
            let len = (trailer.blocks_count as usize).checked_mul(BLOCK_ENTRY_LEN)?;
            Some(start..start.checked_add(len).filter(|end| *end <= trailer_at)?)
        });
    if let Some(index) = index {
        for entry_at in index.clone().step_by(BLOCK_ENTRY_LEN) {
            let entry_bytes = &file[entry_at..entry_at + BLOCK_ENTRY_LEN];
            let mut entry = BlockEntry::decode(entry_bytes);
            let block = usize::try_from(entry.file_offset)
                .ok()
                .and_then(|start| Some(start..start.checked_add(entry.compressed_len as usize)?));
            if let Some(block) = block.filter(|b| b.end <= file.len()) {
                entry.crc = crc32fast::hash(&file[block]);
                let mut encoded = Vec::with_capacity(BLOCK_ENTRY_LEN);
                entry.encode(&mut encoded);
                file[entry_at..entry_at + BLOCK_ENTRY_LEN].copy_from_slice(&encoded);
            }
        }
        trailer.index_crc = crc32fast::hash(&file[index]);
    }
    file[trailer_at..].copy_from_slice(&trailer.encode());
}

/// The bytes a spec's file holds.
pub fn assemble(spec: &FileSpec) -> Vec<u8> {
    let name_kind = spec.tag & 3;
    let mut file = Vec::with_capacity(HEADER_LEN + spec.content.len());
    if spec.tag & TAG_HEADER != 0 {
        let kind = if name_kind == NAME_SEALED {
            SegmentKind::Sealed
        } else {
            SegmentKind::Raw
        };
        let base = EventLogSequenceNumber(spec.base);
        let header = if kind == SegmentKind::Raw && spec.tag & TAG_RECYCLED != 0 {
            SegmentHeader::new_recycled(TENANT, ScopeId::DEFAULT, base)
        } else {
            SegmentHeader::new(kind, TENANT, ScopeId::DEFAULT, base)
        };
        file.extend_from_slice(&header.encode());
    }
    file.extend_from_slice(&spec.content);
    if spec.tag & TAG_FIX_CHECKSUMS != 0 {
        match name_kind {
            NAME_RAW => fix_raw(&mut file, spec.base),
            NAME_SEALED => fix_sealed(&mut file),
            _ => {}
        }
    }
    file
}

/// Builds the directory on a fresh file system, every byte and name durable.
pub fn build(spec: &LogDirSpec) -> FaultIo {
    let fs = FaultIo::new();
    let dir = log_dir();
    fs.create_dir_all(&dir)
        .expect("the in-memory file system creates directories");
    for f in &spec.files {
        let path = dir.join(file_name(f.tag, f.base));
        let content = assemble(f);
        match fs.open(&path, OpenMode::CreateNew) {
            Ok(file) => {
                file.write_all_at(&content, 0).expect("no fault is armed");
                file.sync_data().expect("no fault is armed");
            }
            Err(_) => {
                // A repeated name: the later file wins.
                assert!(
                    fs.overwrite_file(&path, content),
                    "{} exists",
                    path.display()
                );
            }
        }
    }
    fs.sync_dir(&dir).expect("no fault is armed");
    fs
}

fn config(flags: u8) -> LogConfig {
    LogConfig {
        recovery_mode: match flags & 3 {
            MODE_STRICT => RecoveryMode::Strict,
            MODE_SALVAGE => RecoveryMode::Salvage,
            _ => RecoveryMode::TolerateTornTail,
        },
        seal_enabled: flags & FLAG_NO_SEALING == 0,
        ..fuzz_config()
    }
}

fn assert_not_io(e: &Error, what: &str) {
    assert!(
        !matches!(e, Error::Io { .. }),
        "{what} failed with an I/O error although the file system never fails here: {e}"
    );
}

/// Reads `log` from 0 in batches until its end or the first error; returns the payloads read.
fn read_from_start(log: &Log, end: u64) -> Vec<Vec<u8>> {
    let mut payloads: Vec<Vec<u8>> = Vec::new();
    let mut from = 0u64;
    while from < end {
        let batch = match log.read(EventLogSequenceNumber(from), 64, 64 << 10) {
            Ok(batch) => batch,
            Err(e) => {
                assert_not_io(&e, "reading");
                break;
            }
        };
        assert!(
            !batch.is_empty(),
            "read at {from} returned nothing, but the log ends at {end}"
        );
        assert!(
            batch.len() <= 64,
            "read returned {} records, asked for 64",
            batch.len()
        );
        for (k, (seq, payload)) in batch.payloads().enumerate() {
            assert_eq!(
                seq.0,
                from + k as u64,
                "read at {from}: gap or disorder at record {k}"
            );
            payloads.push(payload.to_vec());
        }
        // Decoding may fail (a payload can pass its checksum and still be garbage); it must
        // not panic.
        for view in batch.views() {
            let _ = view.map(|v| v.to_event());
        }
        from += batch.len() as u64;
    }
    payloads
}

/// The harness; see the module docs.
pub fn open_log(data: &[u8]) {
    let spec = LogDirSpec::decode(data);
    let fs = build(&spec);
    let config = config(spec.flags);
    let engine = LogStore::open_with_io(config.clone(), Arc::new(fs.clone()))
        .expect("the engine opens: only the log directory is fuzzed");
    let tenant = engine.tenant(TENANT).expect("the tenant directory exists");
    let log = match tenant.event_log() {
        Ok(log) => log,
        Err(e) => {
            assert_not_io(&e, "opening the log");
            return;
        }
    };
    let end = log.next_sequence_number().0;
    let payloads = read_from_start(&log, end);

    // Other read paths (sparse index seeks, block lookups) must agree with the scan.
    let read = payloads.len() as u64;
    for at in [read / 2, read / 3, read.saturating_sub(1)] {
        if at >= read {
            continue;
        }
        let batch = log
            .read(EventLogSequenceNumber(at), 1, 1)
            .unwrap_or_else(|e| panic!("record {at} read in a scan, not alone: {e}"));
        let got: Vec<_> = batch.payloads().collect();
        assert_eq!(got.len(), 1, "single read at {at}");
        assert_eq!(got[0].0, EventLogSequenceNumber(at));
        assert_eq!(
            got[0].1,
            &payloads[at as usize][..],
            "record {at} differs between reads"
        );
    }

    // The recovered log takes appends where it ends.
    let receipt = log
        .append(&commit(1, 1, 8))
        .unwrap_or_else(|e| panic!("append to a recovered log ending at {end}: {e}"));
    assert_eq!(receipt.first.0, end, "append after recovery");
    let batch = log
        .read(receipt.first, 10, 1 << 20)
        .unwrap_or_else(|e| panic!("reading back the append at {end}: {e}"));
    assert_eq!(batch.len(), 1, "reading back the append at {end}");
    let failures = engine.wait_for_sealing();
    assert!(
        failures.is_empty(),
        "sealing segments recovery accepted: {failures:?}"
    );
    drop(log);
    drop(tenant);
    drop(engine);

    // Recovery is idempotent: what it accepted (plus the append) opens again, untouched.
    let engine =
        LogStore::open_with_io(config, Arc::new(fs.clone())).expect("reopening the engine");
    let log = engine
        .tenant(TENANT)
        .and_then(|t| t.event_log())
        .unwrap_or_else(|e| panic!("a log that opened once fails to reopen: {e}"));
    assert_eq!(log.next_sequence_number().0, end + 1, "end after reopening");
    assert_eq!(
        log.recovery_report().truncated_bytes,
        0,
        "the second open truncated"
    );
}
