//! Opening a log: checking what is on disk and finding where appends resume.
//!
//! Per segment file:
//! - sealed: header and trailer are checked (not the blocks: opening never scans sealed data);
//! - raw and not last (full, awaiting sealing): every frame is checked, it must end on a commit
//!   boundary, and it is queued for sealing again;
//! - raw and last (active): every frame is checked; a *torn tail* (an incomplete frame, an
//!   incomplete commit, or damage followed by no valid frame of a later write group) is
//!   truncated back to the last complete commit in [`RecoveryMode::TolerateTornTail`], cut at
//!   the first damage whatever follows in [`RecoveryMode::Salvage`], and is an error in
//!   [`RecoveryMode::Strict`]. Damage followed by a frame of a later write is never a torn
//!   tail: acknowledged data follows it, so it is reported with file, offset, expected and
//!   found.
//!
//! Leftovers of interrupted operations are cleaned up: `<base>.sealed.tmp` (interrupted seal)
//! is removed; a raw file beside its complete sealed twin (interrupted clean-up) is removed, and
//! a damaged sealed file beside its raw original is replaced by it; a last raw file of at most
//! a header's length whose header is damaged or missing (never misfiled or too new) is
//! rewritten (interrupted roll).
//!
//! Invariants of the scan of a raw segment (asserted once per segment, after the scan):
//! - it accepts whole commits only: the accepted end lies on a commit boundary within the bytes
//!   read, after the header, and the next sequence number is the one after its last record;
//! - the sparse index it builds is ascending and points below the accepted end;
//! - a torn tail, if any, starts at or after the accepted end.
//!
//! Damage found on disk is never asserted: it is an `Error` (or, in a torn tail, repaired).
//!
//! Memory: one raw segment is read at a time.

use std::{
    path::{Path, PathBuf},
    sync::{Arc, OnceLock},
};

use super::{
    cache::CacheId,
    format::{
        parse_frame, FormatError, FrameParse, SegmentHeader, SegmentKind, FRAME_HEADER_LEN,
        HEADER_LEN,
    },
    raw_name,
    reader::read_trailer,
    sealed_name, RawSegment, SealedSegment, Segment, FIRST_FRAME,
};
use crate::{
    config::{LogConfig, RecoveryMode},
    error::{Error, Result},
    ids::{EventLogSequenceNumber, FileOffset, ScopeId, SegmentId, TenantId},
    io::{IoEngine, IoFile, OpenMode},
    spare::Spare,
};

/// What opening a log found and did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RecoveryReport {
    /// Bytes cut from the active segment's torn tail.
    pub truncated_bytes: u64,
    /// Records of incomplete commits dropped with the tail.
    pub dropped_records: u64,
    /// Files removed as leftovers of interrupted operations.
    pub removed_files: Vec<String>,
    /// Segments opened (sealed and raw).
    pub segments_count: usize,
}

pub(crate) struct Recovered {
    pub(crate) segments: Vec<Segment>,
    pub(crate) active: Arc<RawSegment>,
    pub(crate) write_offset: FileOffset,
    pub(crate) next_seq: EventLogSequenceNumber,
    pub(crate) to_seal: Vec<Arc<RawSegment>>,
    pub(crate) report: RecoveryReport,
}

enum Name {
    Raw(SegmentId),
    Sealed(SegmentId),
    SealingTmp,
}

fn parse_name(name: &str) -> Option<Name> {
    let (stem, ext) = name.split_once('.')?;
    if stem.len() != 20 || !stem.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    if ext == "sealed.tmp" {
        return Some(Name::SealingTmp);
    }
    let base = EventLogSequenceNumber(stem.parse().ok()?);
    if base.0 > super::format::SEQUENCE_NUMBER_MAX {
        return None;
    }
    match ext {
        "log" => Some(Name::Raw(SegmentId(base))),
        "sealed" => Some(Name::Sealed(SegmentId(base))),
        _ => None,
    }
}

fn header_error(path: &Path, e: FormatError) -> Error {
    match e {
        FormatError::Checksum { expected, actual } => Error::ChecksumMismatch {
            path: path.to_path_buf(),
            offset: 0,
            what: "segment header",
            expected,
            actual,
        },
        FormatError::TooNew { found } | FormatError::TooOld { found } => Error::UnsupportedFormat {
            path: path.to_path_buf(),
            found,
            supported: super::format::FORMAT_VERSION,
        },
        FormatError::Invalid(what) => Error::Corruption {
            path: path.to_path_buf(),
            offset: 0,
            what,
        },
    }
}

fn check_header(
    path: &Path,
    bytes: &[u8],
    kind: SegmentKind,
    tenant: TenantId,
    scope: ScopeId,
    id: SegmentId,
) -> Result<SegmentHeader> {
    let h = SegmentHeader::decode(bytes).map_err(|e| header_error(path, e))?;
    let base = id.base();
    let expected = format!("{kind:?} segment of tenant {tenant} scope {scope} base {base}");
    let found = format!(
        "{:?} segment of tenant {} scope {} base {}",
        h.kind, h.tenant, h.scope, h.base
    );
    if h.kind != kind || h.tenant != tenant || h.scope != scope || h.base != base {
        return Err(Error::Misfiled {
            path: path.to_path_buf(),
            expected,
            found,
        });
    }
    Ok(h)
}

struct RawScan {
    /// End of the last complete commit.
    commit_end: FileOffset,
    /// Sequence number after the last complete commit.
    next_seq: EventLogSequenceNumber,
    sparse: Vec<(EventLogSequenceNumber, FileOffset)>,
    /// Where and why the scan stopped before the end of the file's non-zero bytes, if it did.
    torn: Option<(FileOffset, String)>,
    /// End of the last non-zero byte after `commit_end` (= `commit_end` when only zeros, the
    /// preallocated tail, follow the last commit).
    dirty_end: FileOffset,
    /// Records after `next_seq` that belong to an incomplete commit.
    dropped_records: u64,
    /// End of the last frame that passed its check (= `commit_end` when no frame of an
    /// incomplete commit follows the last complete one).
    frames_end: FileOffset,
    /// `salvage` cut a recycled segment at damage that a valid frame of a later write follows:
    /// acknowledged records went with the cut.
    salvaged_over_later_write: bool,
}

impl RawScan {
    /// Whether, in a recycled file, the scan's stop is the clean end of the segment's own
    /// bytes: it stopped exactly at the end of a complete commit, no valid frame of a later
    /// write follows (the scan fails otherwise), and a segment that is not the last holds
    /// every record before the next one's base. What fails there is then either what the
    /// file held before (frames of another base never pass their checksum here, section 4.1)
    /// or a write lost whole, which took no part of any commit with it.
    fn stale_end(&self, next_base: Option<EventLogSequenceNumber>) -> bool {
        self.torn
            .as_ref()
            .is_none_or(|(at, _)| *at == self.commit_end)
            && self.dropped_records == 0
            && !self.salvaged_over_later_write
            && next_base.is_none_or(|next| next == self.next_seq)
    }
}

/// Looks, after damage at file offset `damage`, for a valid frame of a *later write group*
/// than the one the damage is in. Finding one means acknowledged data follows the damage, so
/// it cannot be a torn tail. Valid frames whose group started at or before the damage belong
/// to the same (last, unacknowledged) write, whose pages the kernel may have persisted out of
/// order; they do not count. Plausibility checks (sequence range, length) keep the scan linear
/// in practice.
fn frame_of_later_group(
    data: &[u8],
    from: usize,
    damage: FileOffset,
    id: SegmentId,
    expected_seq: EventLogSequenceNumber,
) -> Option<FileOffset> {
    let payload_max = super::format::RECORD_BYTES_LIMIT;
    let seq_max = expected_seq
        .0
        .saturating_add((data.len() / FRAME_HEADER_LEN) as u64);
    let mut at = from;
    while at + FRAME_HEADER_LEN <= data.len() {
        let b = &data[at..];
        let len = u32::from_le_bytes([b[0], b[1], b[2], b[3]]) as usize;
        let mut seq_raw = [0u8; 8];
        seq_raw.copy_from_slice(&b[8..16]);
        let seq = u64::from_le_bytes(seq_raw);
        if len > payload_max
            || len + FRAME_HEADER_LEN > b.len()
            || seq < expected_seq.0
            || seq > seq_max
        {
            at += 1;
            continue;
        }
        let offset = FIRST_FRAME + at as u64;
        if let FrameParse::Frame(f) = parse_frame(b, id.base(), offset.0, payload_max) {
            if offset - u64::from(f.group_back) > damage {
                return Some(offset);
            }
            at += f.total_len;
        } else {
            at += 1;
        }
    }
    None
}

/// Checks the frames of a raw segment file. `recycled`: its header says it is in a recycled
/// file, whose stop `salvage` then also classifies ([`RawScan::salvaged_over_later_write`]).
fn scan_raw(
    file: &dyn IoFile,
    path: &Path,
    id: SegmentId,
    config: &LogConfig,
    recycled: bool,
) -> Result<RawScan> {
    let len = file.len().map_err(|e| Error::io("stat", path, e))?;
    let mut data = vec![0u8; (len as usize).saturating_sub(HEADER_LEN)];
    let got = file
        .read_at(&mut data, FIRST_FRAME.0)
        .map_err(|e| Error::io("read", path, e))?;
    data.truncate(got);
    let payload_max = super::format::RECORD_BYTES_LIMIT;
    let interval = config.sparse_index_interval_bytes.as_u64();
    // Segments are preallocated with zeros: a stop at or after this point is a clean end.
    let nonzero_len = data.iter().rposition(|b| *b != 0).map_or(0, |i| i + 1);

    let base = id.base();
    let mut at = 0usize;
    let mut seq = base;
    let mut commit_end = FIRST_FRAME;
    let mut commit_next = base;
    let mut commit_rest_expected: Option<u32> = None;
    let mut sparse = Vec::new();
    let mut last_sparse: Option<FileOffset> = None;
    let mut torn = None;
    let mut salvaged_over_later_write = false;
    while at < data.len() {
        let offset = FIRST_FRAME + at as u64;
        match parse_frame(&data[at..], base, offset.0, payload_max) {
            FrameParse::Frame(f) => {
                if f.seq != seq {
                    return Err(Error::Corruption {
                        path: path.to_path_buf(),
                        offset: offset.0,
                        what: format!("sequence number: expected {seq}, found {}", f.seq),
                    });
                }
                if let Some(rest) = commit_rest_expected {
                    if f.commit_rest != rest {
                        return Err(Error::Corruption {
                            path: path.to_path_buf(),
                            offset: offset.0,
                            what: format!(
                                "commit framing: expected {rest} records to follow, found {}",
                                f.commit_rest
                            ),
                        });
                    }
                }
                if last_sparse.is_none_or(|l| offset - l >= interval)
                    && commit_rest_expected.is_none()
                {
                    sparse.push((seq, offset));
                    last_sparse = Some(offset);
                }
                at += f.total_len;
                seq = EventLogSequenceNumber(seq.0 + 1);
                if f.commit_rest == 0 {
                    commit_rest_expected = None;
                    commit_end = FIRST_FRAME + at as u64;
                    commit_next = seq;
                } else {
                    commit_rest_expected = Some(f.commit_rest - 1);
                }
            }
            FrameParse::Incomplete(_) | FrameParse::Bad(_) if at >= nonzero_len => break,
            FrameParse::Incomplete(needed) => {
                torn = Some((
                    offset,
                    format!(
                        "file ends {} bytes into a {needed}-byte frame",
                        data.len() - at
                    ),
                ));
                break;
            }
            FrameParse::Bad(e) => {
                if config.recovery_mode == RecoveryMode::Salvage {
                    torn = Some((offset, format!("{e:?}; salvage cuts here")));
                    // Salvage cuts whatever follows; whether acknowledged records went with
                    // the cut only matters to what a recycled segment reports.
                    salvaged_over_later_write = recycled
                        && frame_of_later_group(&data[..nonzero_len], at + 1, offset, id, seq)
                            .is_some();
                    break;
                }
                if let Some(later) =
                    frame_of_later_group(&data[..nonzero_len], at + 1, offset, id, seq)
                {
                    return Err(match e {
                        FormatError::Checksum { expected, actual } => Error::ChecksumMismatch {
                            path: path.to_path_buf(),
                            offset: offset.0,
                            what: "record frame (records of a later write follow, so this is not a torn tail)",
                            expected,
                            actual,
                        },
                        other => Error::Corruption {
                            path: path.to_path_buf(),
                            offset: offset.0,
                            what: format!("{other:?}; a frame of a later write follows at offset {later}, so this is not a torn tail"),
                        },
                    });
                }
                torn = Some((offset, format!("{e:?} with nothing valid after it")));
                break;
            }
        }
    }
    // Drop sparse entries past the last complete commit.
    sparse.retain(|(_, off)| *off < commit_end);
    if torn.is_none() && commit_rest_expected.is_some() {
        torn = Some((commit_end, "the last commit is incomplete".to_owned()));
    }
    let dirty_end = (FIRST_FRAME + nonzero_len as u64).max(commit_end);
    assert!(
        FIRST_FRAME <= commit_end && commit_end <= FIRST_FRAME + data.len() as u64,
        "the scan accepted bytes outside the record area"
    );
    assert!(
        commit_next <= seq,
        "the scan's commit end passed its last record"
    );
    assert!(
        sparse
            .windows(2)
            .all(|w| w[0].0 < w[1].0 && w[0].1 < w[1].1)
            && sparse.last().is_none_or(|(_, at)| *at < commit_end),
        "the scan's sparse index is out of order or past the accepted end"
    );
    assert!(
        torn.as_ref().is_none_or(|(at, _)| *at >= commit_end),
        "the scan tore below the accepted end"
    );
    Ok(RawScan {
        dirty_end,
        commit_end,
        next_seq: commit_next,
        sparse,
        torn,
        dropped_records: seq.0 - commit_next.0,
        frames_end: FIRST_FRAME + at.min(data.len()) as u64,
        salvaged_over_later_write,
    })
}

/// Checks that the raw segment in `file` reads as whole commits exactly up to `end` (records
/// before `next`) with nothing after them: what healing a poisoned log requires of its active
/// segment once the unacknowledged tail is cut.
pub(crate) fn check_raw_end(
    file: &dyn IoFile,
    path: &Path,
    id: SegmentId,
    config: &LogConfig,
    end: FileOffset,
    next: EventLogSequenceNumber,
) -> Result<()> {
    let scan = scan_raw(file, path, id, config, false)?;
    if scan.commit_end == end && scan.next_seq == next && scan.dirty_end == end {
        return Ok(());
    }
    Err(Error::Corruption {
        path: path.to_path_buf(),
        offset: end.0,
        what: format!(
            "cut to its last acknowledged commit (records before {next}, ending at offset \
             {end}), the segment reads as whole commits before {} ending at offset {}, with \
             bytes to offset {}{}",
            scan.next_seq,
            scan.commit_end,
            scan.dirty_end,
            scan.torn
                .map(|(at, why)| format!(", torn at offset {at}: {why}"))
                .unwrap_or_default()
        ),
    })
}

/// Opens a sealed segment: header and trailer checked, blocks not read.
fn open_sealed(
    io: &dyn IoEngine,
    path: &Path,
    tenant: TenantId,
    scope: ScopeId,
    id: SegmentId,
) -> Result<Arc<SealedSegment>> {
    let file = io
        .open(path, OpenMode::Read)
        .map_err(|e| Error::io("open", path, e))?;
    let mut header = [0u8; HEADER_LEN];
    let got = file
        .read_at(&mut header, 0)
        .map_err(|e| Error::io("read", path, e))?;
    let compact =
        check_header(path, &header[..got], SegmentKind::Sealed, tenant, scope, id)?.compact();
    let base = id.base();
    let trailer = read_trailer(file.as_ref(), path)?;
    if trailer.next_seq.0 <= base.0
        || trailer.next_seq.0 > super::format::SEQUENCE_NUMBER_MAX
        || trailer.records_count != trailer.next_seq.0 - base.0
    {
        return Err(Error::Corruption {
            path: path.to_path_buf(),
            offset: 0,
            what: format!(
                "trailer: {} records ending before {} do not fit base {base}",
                trailer.records_count, trailer.next_seq
            ),
        });
    }
    Ok(Arc::new(SealedSegment {
        path: path.to_path_buf(),
        file,
        id,
        trailer,
        compact,
        blocks: OnceLock::new(),
        cache_id: CacheId::next(),
    }))
}

/// Opens (or creates) the log in `dir`.
pub(crate) fn recover(
    io: &dyn IoEngine,
    config: &LogConfig,
    dir: &Path,
    tenant: TenantId,
    scope: ScopeId,
) -> Result<Recovered> {
    io.create_dir_all(dir)
        .map_err(|e| Error::io("create dir", dir, e))?;
    let mut report = RecoveryReport::default();
    let mut raws = std::collections::BTreeSet::new();
    let mut sealeds = std::collections::BTreeSet::new();
    for name in io
        .read_dir(dir)
        .map_err(|e| Error::io("read dir", dir, e))?
    {
        match parse_name(&name) {
            Some(Name::Raw(id)) => {
                raws.insert(id);
            }
            Some(Name::Sealed(id)) => {
                sealeds.insert(id);
            }
            Some(Name::SealingTmp) => {
                let path = dir.join(&name);
                io.remove_file(&path)
                    .map_err(|e| Error::io("remove", &path, e))?;
                report.removed_files.push(name);
            }
            None => return Err(Error::Corruption {
                path: dir.join(&name),
                offset: 0,
                what:
                    "unexpected file in a log directory (expected <20-digit base>.log or .sealed)"
                        .into(),
            }),
        }
    }

    let mut segments: Vec<Segment> = Vec::new();
    let mut to_seal = Vec::new();
    let all: Vec<SegmentId> = raws.union(&sealeds).copied().collect();
    let last = all.last().copied();
    let mut expected_base: Option<EventLogSequenceNumber> = None;
    let mut active: Option<(Arc<RawSegment>, FileOffset, EventLogSequenceNumber)> = None;
    for (i, &id) in all.iter().enumerate() {
        // Where this segment must end: at the next one's base (none for the last).
        let next_base = all.get(i + 1).map(|next| next.base());
        let base = id.base();
        if let Some(expected) = expected_base {
            if base != expected {
                let name = if sealeds.contains(&id) {
                    sealed_name(id)
                } else {
                    raw_name(id)
                };
                return Err(Error::Corruption {
                    path: dir.join(name),
                    offset: 0,
                    what: format!("segment chain: expected a segment starting at {expected}, found one at {base}"),
                });
            }
        }
        if sealeds.contains(&id) {
            let path = dir.join(sealed_name(id));
            match open_sealed(io, &path, tenant, scope, id) {
                Ok(sealed) => {
                    if raws.contains(&id) {
                        // Interrupted clean-up after a completed seal.
                        let raw = dir.join(raw_name(id));
                        io.remove_file(&raw)
                            .map_err(|e| Error::io("remove", &raw, e))?;
                        io.sync_dir(dir)
                            .map_err(|e| Error::io("fsync dir", dir, e))?;
                        report.removed_files.push(raw_name(id));
                    }
                    expected_base = Some(sealed.trailer.next_seq);
                    segments.push(Segment::Sealed(sealed));
                    continue;
                }
                Err(e)
                    if raws.contains(&id)
                        && matches!(
                            e,
                            Error::Corruption { .. } | Error::ChecksumMismatch { .. }
                        ) =>
                {
                    // The raw original is still there: it is the truth. Drop the damaged
                    // sealed copy; the raw segment is checked below and sealed again.
                    tracing::warn!(error = %e, "damaged sealed segment replaced by its raw original");
                    io.remove_file(&path)
                        .map_err(|e| Error::io("remove", &path, e))?;
                    io.sync_dir(dir)
                        .map_err(|e| Error::io("fsync dir", dir, e))?;
                    report.removed_files.push(sealed_name(id));
                }
                Err(e) => return Err(e),
            }
        }

        let path = dir.join(raw_name(id));
        let is_last = Some(id) == last;
        let file = io
            .open(&path, OpenMode::ReadWrite)
            .map_err(|e| Error::io("open", &path, e))?;
        let mut header = [0u8; HEADER_LEN];
        let got = file
            .read_at(&mut header, 0)
            .map_err(|e| Error::io("read", &path, e))?;
        let file_len = file.len().map_err(|e| Error::io("stat", &path, e))?;
        let header_check = check_header(&path, &header[..got], SegmentKind::Raw, tenant, scope, id);
        let header_torn = matches!(
            header_check,
            Err(Error::Corruption { .. } | Error::ChecksumMismatch { .. })
        );
        if is_last && file_len <= HEADER_LEN as u64 && header_torn {
            // Interrupted roll: the file exists but its header never became (wholly) durable.
            // Records are written only after the header is synced, so nothing is lost.
            if config.recovery_mode == RecoveryMode::Strict {
                return Err(Error::Corruption {
                    path,
                    offset: 0,
                    what: format!("active segment has no valid header ({file_len} bytes); strict recovery refuses to rewrite it"),
                });
            }
            file.set_len(0)
                .map_err(|e| Error::io("truncate", &path, e))?;
            let raw = start_raw_segment(path, file, tenant, scope, id, Vec::new())?;
            segments.push(Segment::Raw(Arc::clone(&raw)));
            active = Some((raw, FIRST_FRAME, base));
            expected_base = Some(base);
            continue;
        }
        let recycled = header_check?.recycled;
        let mut scan = scan_raw(file.as_ref(), &path, id, config, recycled)?;
        if recycled && scan.stale_end(next_base) {
            // Bytes of the segments the file held before follow the last commit: not a
            // torn tail, whatever the mode (FORMAT.md section 8.2).
            scan.torn = None;
        }
        if let Some((offset, why)) = &scan.torn {
            if !is_last || config.recovery_mode == RecoveryMode::Strict {
                return Err(Error::Corruption {
                    path,
                    offset: offset.0,
                    what: if is_last {
                        format!("torn tail ({why}); strict recovery refuses to truncate")
                    } else {
                        format!("full segment awaiting sealing is damaged: {why}")
                    },
                });
            }
        }
        if is_last && scan.dirty_end > scan.commit_end {
            // Remove the torn bytes so that nothing stale can ever be read back as a frame:
            // zero them where a preallocated tail follows (keeping its blocks), else truncate.
            // A recycled file is cut: what follows its last commit may be a whole segment of
            // older bytes, and none of them is worth a write.
            if !recycled && scan.dirty_end < FileOffset(file_len) {
                zero_range(file.as_ref(), scan.commit_end, scan.dirty_end)
                    .map_err(|e| Error::io("zero torn tail", &path, e))?;
            } else {
                file.set_len(scan.commit_end.0)
                    .map_err(|e| Error::io("truncate", &path, e))?;
            }
            file.sync_data()
                .map_err(|e| Error::io("fdatasync", &path, e))?;
            // In a recycled file only this segment's own bytes count: those of the frames of
            // an incomplete commit it cut, none at a clean end. Where salvage cut acknowledged
            // records, every non-zero byte cut counts, old ones included: at most that went.
            report.truncated_bytes = if recycled && !scan.salvaged_over_later_write {
                scan.frames_end - scan.commit_end
            } else {
                scan.dirty_end - scan.commit_end
            };
            report.dropped_records = scan.dropped_records;
        }
        // What recovery accepts must be durable before the log serves it: after a failed
        // fdatasync and a restart the page cache may hold bytes the disk never got.
        file.sync_data()
            .map_err(|e| Error::io("fdatasync", &path, e))?;
        // What an earlier life of a recycled file left in it is not known after a restart.
        let raw = Arc::new(
            RawSegment::new(path, file, id, scan.commit_end, scan.next_seq, scan.sparse)
                .holding((!recycled).then(Vec::new)),
        );
        segments.push(Segment::Raw(Arc::clone(&raw)));
        expected_base = Some(scan.next_seq);
        if is_last {
            active = Some((raw, scan.commit_end, scan.next_seq));
        } else {
            to_seal.push(raw);
        }
    }

    let (active, write_offset, next_seq) = if let Some(a) = active {
        a
    } else {
        // New log, or the last segment is sealed: start an active segment after it.
        let base = expected_base.unwrap_or(EventLogSequenceNumber::ZERO);
        let raw = create_raw_segment(io, dir, tenant, scope, SegmentId(base))?;
        segments.push(Segment::Raw(Arc::clone(&raw)));
        (raw, FIRST_FRAME, base)
    };
    // Likewise the directory entries (a segment created by a roll whose directory fsync failed).
    io.sync_dir(dir)
        .map_err(|e| Error::io("fsync dir", dir, e))?;
    report.segments_count = segments.len();
    Ok(Recovered {
        segments,
        active,
        write_offset,
        next_seq,
        to_seal,
        report,
    })
}

/// Zeros held in memory once, for preallocation and tail cleaning.
static ZEROS: [u8; 64 << 10] = [0; 64 << 10];

/// Writes zeros over `[from, to)`.
pub(crate) fn zero_range(
    file: &dyn IoFile,
    from: FileOffset,
    to: FileOffset,
) -> std::io::Result<()> {
    let mut at = from;
    while at < to {
        let n = (to - at).min(ZEROS.len() as u64) as usize;
        file.write_all_at(&ZEROS[..n], at.0)?;
        at += n as u64;
    }
    Ok(())
}

/// Creates a new raw segment durably: header written and synced, directory synced.
pub(crate) fn create_raw_segment(
    io: &dyn IoEngine,
    dir: &Path,
    tenant: TenantId,
    scope: ScopeId,
    id: SegmentId,
) -> Result<Arc<RawSegment>> {
    let path = dir.join(raw_name(id));
    let file = io
        .open(&path, OpenMode::CreateNew)
        .map_err(|e| Error::io("create", &path, e))?;
    let raw = start_raw_segment(path, file, tenant, scope, id, Vec::new())?;
    io.sync_dir(dir)
        .map_err(|e| Error::io("fsync dir", dir, e))?;
    Ok(raw)
}

/// Makes `spare` (zeros, synced, or a recycled file, whose header then says so) the new raw
/// segment `id` of `dir` durably: header written and synced while it is still a spare, then
/// renamed into place and the directory synced, so the segment's name never appears without
/// its header (FORMAT.md section 8.3). The caller ([`crate::spare::Spares::take`]) checks that
/// a recycled file goes to its own tenant at a base that does not check alike with one it held
/// (section 4.1).
pub(crate) fn adopt_spare(
    io: &dyn IoEngine,
    dir: &Path,
    tenant: TenantId,
    scope: ScopeId,
    id: SegmentId,
    spare: Spare,
) -> Result<Arc<RawSegment>> {
    let path = dir.join(raw_name(id));
    let started = if io.exists(&path) {
        // A rename would replace it; creating a segment is exclusive.
        Err(Error::io(
            "create",
            &path,
            std::io::Error::from(std::io::ErrorKind::AlreadyExists),
        ))
    } else {
        start_raw_segment(path.clone(), spare.file, tenant, scope, id, spare.held).and_then(|raw| {
            io.rename(&spare.path, &path)
                .map_err(|e| Error::io("rename a spare segment to", &path, e))?;
            Ok(raw)
        })
    };
    let raw = match started {
        Ok(raw) => raw,
        Err(e) => {
            // Still a spare, and no longer counted as one: nothing may keep it.
            let _ = io.remove_file(&spare.path);
            return Err(e);
        }
    };
    io.sync_dir(dir)
        .map_err(|e| Error::io("fsync dir", dir, e))?;
    Ok(raw)
}

/// Writes and syncs a raw segment's header at the start of `file`; returns the empty segment.
fn start_raw_segment(
    path: PathBuf,
    file: Arc<dyn IoFile>,
    tenant: TenantId,
    scope: ScopeId,
    id: SegmentId,
    held_before: Vec<EventLogSequenceNumber>,
) -> Result<Arc<RawSegment>> {
    let header = if held_before.is_empty() {
        SegmentHeader::new(SegmentKind::Raw, tenant, scope, id.base())
    } else {
        SegmentHeader::new_recycled(tenant, scope, id.base())
    }
    .encode();
    file.write_all_at_and_sync(&header, 0)
        .map_err(|e| Error::io("write+fdatasync", &path, e))?;
    Ok(Arc::new(
        RawSegment::new(path, file, id, FIRST_FRAME, id.base(), Vec::new())
            .holding(Some(held_before)),
    ))
}
