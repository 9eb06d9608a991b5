//! Damage on disk: torn tails are truncated (and only they), everything else is reported with
//! file, offset, expected and found. Bit flips in headers, frames, sealed blocks and trailers
//! are all caught; misfiled and stray files are refused.

#![allow(
    clippy::unwrap_used,
    reason = "test helpers fail loudly on the first unexpected error; `expect` would break as helpers move"
)]

mod common;

use std::{fs, path::Path, sync::Arc};

use annals_log::{Error, EventLogSequenceNumber, LogConfig, LogStore, RecoveryMode, StdIo};
use bytesize::ByteSize;
use common::*;

fn open(config: &LogConfig) -> annals_log::Result<LogStore> {
    LogStore::open_with_io(config.clone(), Arc::new(StdIo))
}

/// Writes `commits` commits of 3 events; returns the config and the number of events.
fn populate(dir: &Path, commits: u64, seal: bool) -> (LogConfig, u64) {
    let config = LogConfig {
        seal_enabled: seal,
        ..small_config(dir)
    };
    let engine = open(&config).unwrap();
    let log = test_log(&engine);
    let mut r = rng(7);
    for t in 0..commits {
        log.append(&commit(&mut r, t + 1, 3)).unwrap();
    }
    assert!(engine.wait_for_sealing().is_empty());
    (config, commits * 3)
}

fn flip(path: &Path, offset: usize) {
    let mut bytes = fs::read(path).unwrap();
    bytes[offset] ^= 0x10;
    fs::write(path, bytes).unwrap();
}

fn count(engine: &LogStore) -> usize {
    read_all(&engine.tenant(TENANT).unwrap().event_log().unwrap()).len()
}

#[test]
fn garbage_after_the_last_commit_is_a_torn_tail() {
    let dir = tempfile::tempdir().unwrap();
    let (config, n) = populate(dir.path(), 5, false);
    let active = files(&log_dir(dir.path()), ".log").pop().unwrap();
    let original = fs::read(&active).unwrap();
    let end = data_end(&original);
    assert!(
        original.len() > end + 1000,
        "the active segment should be preallocated"
    );

    // Garbage inside the preallocated tail: zeroed again, the file keeps its size.
    let mut bytes = original.clone();
    bytes[end..end + 37].fill(0xAB);
    fs::write(&active, &bytes).unwrap();
    {
        let engine = open(&config).unwrap();
        let log = engine.tenant(TENANT).unwrap().event_log().unwrap();
        assert_eq!(log.recovery_report().truncated_bytes, 37);
        assert_eq!(read_all(&log).len() as u64, n);
    }
    assert_eq!(fs::read(&active).unwrap(), original);

    // Garbage beyond the end of the file: cut off.
    let mut bytes = original.clone();
    bytes.extend_from_slice(&[0xCD; 37]);
    fs::write(&active, &bytes).unwrap();
    let engine = open(&config).unwrap();
    let log = engine.tenant(TENANT).unwrap().event_log().unwrap();
    assert_eq!(
        log.recovery_report().truncated_bytes as usize,
        original.len() + 37 - end
    );
    assert_eq!(fs::metadata(&active).unwrap().len() as usize, end);
    assert_eq!(read_all(&log).len() as u64, n);
    let mut r = rng(3);
    assert_eq!(log.append(&commit(&mut r, 100, 2)).unwrap().first.0, n);
}

#[test]
fn a_commit_cut_short_is_dropped_whole() {
    let dir = tempfile::tempdir().unwrap();
    let (config, n) = populate(dir.path(), 4, false);
    let active = files(&log_dir(dir.path()), ".log").pop().unwrap();
    // The last write lost its last 10 bytes (they read back as the zeros preallocated there):
    // the last commit's last frame fails, so all 3 events of that commit go.
    let mut bytes = fs::read(&active).unwrap();
    let end = data_end(&bytes);
    bytes[end - 10..end].fill(0);
    fs::write(&active, &bytes).unwrap();
    let engine = open(&config).unwrap();
    let log = engine.tenant(TENANT).unwrap().event_log().unwrap();
    let events = read_all(&log);
    assert_eq!(
        events.len() as u64,
        n - 3,
        "exactly the torn commit is dropped"
    );
    assert_eq!(log.recovery_report().dropped_records, 2);
    // Appending continues right after.
    let mut r = rng(3);
    let receipt = log.append(&commit(&mut r, 100, 1)).unwrap();
    assert_eq!(receipt.first.0, events.len() as u64);
}

#[test]
fn strict_mode_refuses_to_truncate() {
    let dir = tempfile::tempdir().unwrap();
    let (config, _) = populate(dir.path(), 3, false);
    let active = files(&log_dir(dir.path()), ".log").pop().unwrap();
    let mut bytes = fs::read(&active).unwrap();
    bytes.extend_from_slice(&[1, 2, 3]);
    fs::write(&active, &bytes).unwrap();
    let strict = LogConfig {
        recovery_mode: RecoveryMode::Strict,
        ..config.clone()
    };
    let err = open(&strict)
        .unwrap()
        .tenant(TENANT)
        .unwrap()
        .event_log()
        .unwrap_err();
    assert!(err.is_corruption(), "{err}");
    assert!(err.to_string().contains("torn tail"), "{err}");
    // The default mode still opens it.
    assert_eq!(count(&open(&config).unwrap()), 9);
}

#[test]
fn damage_followed_by_valid_records_is_corruption_not_a_torn_tail() {
    let dir = tempfile::tempdir().unwrap();
    let (config, _) = populate(dir.path(), 3, false);
    let active = files(&log_dir(dir.path()), ".log").pop().unwrap();
    // Flip a byte in the payload of the first frame (header 64 + frame header 24 + 10).
    flip(&active, 64 + 24 + 10);
    let err = open(&config)
        .unwrap()
        .tenant(TENANT)
        .unwrap()
        .event_log()
        .unwrap_err();
    match &err {
        Error::ChecksumMismatch {
            path,
            offset,
            expected,
            actual,
            ..
        } => {
            assert_eq!(path, &active);
            assert_eq!(*offset, 64);
            assert_ne!(expected, actual);
        }
        other => panic!("expected a checksum mismatch, got {other}"),
    }
    let text = err.to_string();
    assert!(
        text.contains(&active.display().to_string()) && text.contains("offset 64"),
        "{text}"
    );
}

#[test]
fn every_header_bit_flip_is_caught() {
    let dir = tempfile::tempdir().unwrap();
    let (config, _) = populate(dir.path(), 2, false);
    let active = files(&log_dir(dir.path()), ".log").pop().unwrap();
    let original = fs::read(&active).unwrap();
    for byte in (0..64).step_by(3) {
        let mut bytes = original.clone();
        bytes[byte] ^= 0x01;
        fs::write(&active, &bytes).unwrap();
        let result = open(&config).unwrap().tenant(TENANT).unwrap().event_log();
        let err = result.expect_err(&format!("header byte {byte} flip undetected"));
        assert!(
            err.is_corruption() || matches!(err, Error::UnsupportedFormat { .. }),
            "{err}"
        );
    }
    fs::write(&active, &original).unwrap();
    assert_eq!(count(&open(&config).unwrap()), 6);
}

#[test]
fn a_flipped_bit_in_a_sealed_block_fails_the_read_that_touches_it() {
    let dir = tempfile::tempdir().unwrap();
    let (config, n) = populate(dir.path(), 60, true);
    let sealed = files(&log_dir(dir.path()), ".sealed");
    assert!(
        sealed.len() >= 2,
        "expected sealed segments, got {sealed:?}"
    );
    flip(&sealed[1], 64 + 5); // inside the first block of the second sealed segment
    let engine = open(&config).unwrap(); // opening reads only headers and trailers
    let log = engine.tenant(TENANT).unwrap().event_log().unwrap();
    assert_eq!(log.next_sequence_number().0, n);
    // Events of the first segment read fine; the damaged block does not.
    assert!(!log
        .read(EventLogSequenceNumber(0), 1, 1 << 20)
        .unwrap()
        .is_empty());
    let mut from = EventLogSequenceNumber(0);
    let err = loop {
        match log.read(from, 1, 1 << 20) {
            Ok(b) if b.is_empty() => panic!("damage never detected"),
            Ok(b) => from = b.next().unwrap(),
            Err(e) => break e,
        }
    };
    match err {
        Error::ChecksumMismatch { path, what, .. } => {
            assert_eq!(path, sealed[1]);
            assert_eq!(what, "sealed block");
        }
        other => panic!("{other}"),
    }
}

/// Rewrites block 0 of a sealed segment with `edit` applied to its decompressed bytes, with
/// every checksum, offset and length after it made to match, as a writer bug would leave it.
fn rewrite_first_block(path: &Path, edit: impl FnOnce(&mut Vec<u8>)) {
    use annals_log::testing::format::{BlockEntry, SealTrailer, BLOCK_ENTRY_LEN, TRAILER_LEN};
    let file = fs::read(path).unwrap();
    let trailer = SealTrailer::decode(&file[file.len() - TRAILER_LEN..]).unwrap();
    let index_at = trailer.index_offset as usize;
    let mut blocks: Vec<BlockEntry> = file[index_at..file.len() - TRAILER_LEN]
        .chunks_exact(BLOCK_ENTRY_LEN)
        .map(BlockEntry::decode)
        .collect();
    let first = blocks[0];
    let start = first.file_offset as usize;
    let end = start + first.compressed_len as usize;
    let mut plain = zstd::bulk::decompress(&file[start..end], 1 << 20).unwrap();
    edit(&mut plain);
    let compressed = zstd::bulk::compress(&plain, 1).unwrap();
    let mut out = file[..start].to_vec();
    out.extend_from_slice(&compressed);
    out.extend_from_slice(&file[end..index_at]);
    let old_len = u64::from(first.compressed_len);
    blocks[0].compressed_len = compressed.len() as u32;
    blocks[0].uncompressed_len = plain.len() as u32;
    blocks[0].crc = crc32fast::hash(&compressed);
    for b in &mut blocks[1..] {
        b.file_offset = b.file_offset - old_len + compressed.len() as u64;
    }
    let mut index = Vec::new();
    for b in &blocks {
        b.encode(&mut index);
    }
    let trailer = SealTrailer {
        index_offset: out.len() as u64,
        index_crc: crc32fast::hash(&index),
        ..trailer
    };
    out.extend_from_slice(&index);
    out.extend_from_slice(&trailer.encode());
    fs::write(path, out).unwrap();
}

/// An edit of a decompressed block.
type Edit = fn(&mut Vec<u8>);

#[test]
fn a_compact_block_that_does_not_expand_is_refused_with_its_entry() {
    let dir = tempfile::tempdir().unwrap();
    let (config, _) = populate(dir.path(), 60, true);
    let sealed = files(&log_dir(dir.path()), ".sealed");
    let read_first = |config: &LogConfig| {
        let engine = open(config).unwrap();
        let log = engine.tenant(TENANT).unwrap().event_log().unwrap();
        log.read(EventLogSequenceNumber(0), 1000, 1 << 20)
            .map(|b| b.len())
    };
    assert!(read_first(&config).unwrap() > 0);
    let original = fs::read(&sealed[0]).unwrap();
    let cases: [(&str, Edit); 3] = [
        ("shares a context before any whole entry", |b| b[0] = 1),
        ("bytes after the last entry", |b| b.push(0)),
        ("unknown tag", |b| b[0] = 7),
    ];
    for (expected, edit) in cases {
        fs::write(&sealed[0], &original).unwrap();
        rewrite_first_block(&sealed[0], edit);
        match read_first(&config).unwrap_err() {
            Error::Corruption { path, offset, what } => {
                assert_eq!(path, sealed[0]);
                assert_eq!(offset, 64, "{what}");
                assert!(what.contains(expected), "{what}");
                assert!(what.contains("compact entry"), "{what}");
            }
            other => panic!("{expected}: {other}"),
        }
    }
    // The rewrite itself keeps a good block readable.
    fs::write(&sealed[0], &original).unwrap();
    rewrite_first_block(&sealed[0], |_| {});
    assert!(read_first(&config).unwrap() > 0);
}

#[test]
fn a_damaged_seal_trailer_or_index_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let (config, _) = populate(dir.path(), 60, true);
    let sealed = files(&log_dir(dir.path()), ".sealed");
    let len = fs::metadata(&sealed[0]).unwrap().len() as usize;
    let original = fs::read(&sealed[0]).unwrap();
    flip(&sealed[0], len - 20);
    let err = open(&config)
        .unwrap()
        .tenant(TENANT)
        .unwrap()
        .event_log()
        .unwrap_err();
    assert!(err.is_corruption(), "{err}");
    // Damage in the block index is found on first read.
    fs::write(&sealed[0], &original).unwrap();
    flip(&sealed[0], len - 64 - 3);
    let engine = open(&config).unwrap();
    let log = engine.tenant(TENANT).unwrap().event_log().unwrap();
    let err = log
        .read(EventLogSequenceNumber(0), 10, 1 << 20)
        .unwrap_err();
    assert!(
        matches!(
            err,
            Error::ChecksumMismatch {
                what: "block index",
                ..
            }
        ),
        "{err}"
    );
}

#[test]
fn misfiled_and_stray_files_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let (config, _) = populate(dir.path(), 60, true);
    let logs = log_dir(dir.path());
    let sealed = files(&logs, ".sealed");
    // A segment renamed to another base is misfiled (its header names the real base).
    let renamed = logs.join("00000000000000999999.sealed");
    fs::rename(&sealed[0], &renamed).unwrap();
    let err = open(&config)
        .unwrap()
        .tenant(TENANT)
        .unwrap()
        .event_log()
        .unwrap_err();
    assert!(err.is_corruption(), "{err}");
    fs::rename(&renamed, &sealed[0]).unwrap();
    // A segment of another tenant is misfiled.
    let other_dir = tempfile::tempdir().unwrap();
    {
        let other = open(&small_config(other_dir.path())).unwrap();
        let t = other
            .tenant_or_create(annals_log::TenantId(annals_log::uuid::Uuid::from_u128(5)))
            .unwrap();
        let mut r = rng(1);
        t.event_log()
            .unwrap()
            .append(&commit(&mut r, 1, 1))
            .unwrap();
    }
    let foreign = fs::read_dir(other_dir.path().join("tenants"))
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
    let foreign_active = files(
        &foreign
            .join("logs")
            .join("00000000-0000-0000-0000-000000000000"),
        ".log",
    )
    .pop()
    .unwrap();
    let ours = files(&logs, ".log").pop().unwrap();
    let saved = fs::read(&ours).unwrap();
    fs::copy(&foreign_active, &ours).unwrap();
    let err = open(&config)
        .unwrap()
        .tenant(TENANT)
        .unwrap()
        .event_log()
        .unwrap_err();
    assert!(matches!(err, Error::Misfiled { .. }), "{err}");
    fs::write(&ours, saved).unwrap();
    // A stray file is refused by name.
    fs::write(logs.join("notes.txt"), b"hi").unwrap();
    let err = open(&config)
        .unwrap()
        .tenant(TENANT)
        .unwrap()
        .event_log()
        .unwrap_err();
    assert!(err.to_string().contains("notes.txt"), "{err}");
    fs::remove_file(logs.join("notes.txt")).unwrap();
    // A missing middle segment is a gap in the chain.
    fs::remove_file(&sealed[1]).unwrap();
    let err = open(&config)
        .unwrap()
        .tenant(TENANT)
        .unwrap()
        .event_log()
        .unwrap_err();
    assert!(err.to_string().contains("segment chain"), "{err}");
}

#[test]
fn a_second_engine_on_the_same_directory_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let config = small_config(dir.path());
    let _first = open(&config).unwrap();
    let err = open(&config).unwrap_err();
    assert!(err.to_string().contains("locked"), "{err}");
}

#[test]
fn salvage_cuts_at_the_first_damage_that_default_mode_refuses() {
    let dir = tempfile::tempdir().unwrap();
    let (config, _) = populate(dir.path(), 3, false);
    let active = files(&log_dir(dir.path()), ".log").pop().unwrap();
    flip(&active, 64 + 24 + 10);
    assert!(open(&config)
        .unwrap()
        .tenant(TENANT)
        .unwrap()
        .event_log()
        .is_err());
    let salvage = LogConfig {
        recovery_mode: RecoveryMode::Salvage,
        ..config
    };
    let engine = open(&salvage).unwrap();
    let log = engine.tenant(TENANT).unwrap().event_log().unwrap();
    assert_eq!(
        log.next_sequence_number().0,
        0,
        "everything from the first damage is cut"
    );
    assert!(log.recovery_report().truncated_bytes > 0);
}

#[test]
fn a_damaged_sealed_copy_falls_back_to_its_raw_original() {
    let dir = tempfile::tempdir().unwrap();
    let (config, n) = populate(dir.path(), 60, false);
    let logs = log_dir(dir.path());
    let first_raw = files(&logs, ".log").remove(0);
    let saved = fs::read(&first_raw).unwrap();
    {
        let sealing = LogConfig {
            seal_enabled: true,
            ..config.clone()
        };
        let engine = open(&sealing).unwrap();
        engine.tenant(TENANT).unwrap().event_log().unwrap();
        assert!(engine.wait_for_sealing().is_empty());
    }
    // The state an interrupted clean-up leaves, with the sealed copy damaged.
    fs::write(&first_raw, &saved).unwrap();
    let sealed = first_raw.with_extension("sealed");
    let len = fs::metadata(&sealed).unwrap().len() as usize;
    flip(&sealed, len - 10);
    let engine = open(&LogConfig {
        seal_enabled: true,
        ..config
    })
    .unwrap();
    let log = engine.tenant(TENANT).unwrap().event_log().unwrap();
    assert!(log
        .recovery_report()
        .removed_files
        .iter()
        .any(|f| f.ends_with(".sealed")));
    assert!(engine.wait_for_sealing().is_empty());
    assert_eq!(read_all(&log).len() as u64, n);
    assert!(!first_raw.exists(), "the raw original is sealed again");
}

#[test]
fn an_interrupted_roll_with_a_partial_header_is_rewritten() {
    let dir = tempfile::tempdir().unwrap();
    let (config, n) = populate(dir.path(), 3, false);
    let next = log_dir(dir.path()).join(format!("{n:020}.log"));
    fs::write(&next, [0x89, b'A', b'N', 7, 7, 7]).unwrap();
    let strict = LogConfig {
        recovery_mode: RecoveryMode::Strict,
        ..config.clone()
    };
    assert!(open(&strict)
        .unwrap()
        .tenant(TENANT)
        .unwrap()
        .event_log()
        .is_err());
    let engine = open(&config).unwrap();
    let log = engine.tenant(TENANT).unwrap().event_log().unwrap();
    assert_eq!(log.next_sequence_number().0, n);
    let mut r = rng(1);
    assert_eq!(log.append(&commit(&mut r, 1, 1)).unwrap().first.0, n);
    assert_eq!(read_all(&log).len() as u64, n + 1);
}

/// Frames a raw read steps over (between the sparse-index entry and the first record wanted)
/// are not checksummed, but what a read returns always is, and a damaged length among the
/// frames stepped over is an error, never a wrong or short answer. The damage is made while
/// the log is open, past recovery's checks, as a failing disk or a stray write would.
#[test]
fn a_read_steps_over_frames_without_missing_damage_in_them() {
    use std::os::unix::fs::FileExt;
    let dir = tempfile::tempdir().unwrap();
    let config = LogConfig {
        seal_enabled: false,
        segment_bytes_max: ByteSize::mib(1),
        sparse_index_interval_bytes: ByteSize::kib(64),
        ..small_config(dir.path())
    };
    let engine = open(&config).unwrap();
    let log = test_log(&engine);
    let mut r = rng(11);
    for t in 0..10 {
        log.append(&commit(&mut r, t + 1, 3)).unwrap();
    }
    let whole = read_all(&log);
    assert_eq!(whole.len(), 30);
    let active = files(&log_dir(dir.path()), ".log").pop().unwrap();
    // Frame offsets, walked by their lengths from the first (offset 64).
    let bytes = fs::read(&active).unwrap();
    let mut offsets = vec![64usize];
    for _ in 0..30 {
        let at = *offsets.last().unwrap();
        let len = u32::from_le_bytes(bytes[at..at + 4].try_into().unwrap()) as usize;
        offsets.push(at + 24 + len);
    }
    let file = fs::OpenOptions::new().write(true).open(&active).unwrap();
    let read_from = |from: u64| {
        log.read(EventLogSequenceNumber(from), 1000, 1 << 20)
            .and_then(|batch| batch.events())
    };

    // A damaged payload in a frame stepped over: the records after it read exactly; the
    // damaged record itself fails its checksum.
    let payload_byte = offsets[2] + 30;
    file.write_all_at(&[bytes[payload_byte] ^ 0x10], payload_byte as u64)
        .unwrap();
    assert_eq!(read_from(5).unwrap(), whole[5..]);
    let err = read_from(2).unwrap_err();
    assert!(matches!(err, Error::ChecksumMismatch { .. }), "{err}");
    file.write_all_at(&bytes[payload_byte..=payload_byte], payload_byte as u64)
        .unwrap();

    // A damaged length in a frame stepped over: it lands the walk inside another frame, or
    // on a later frame boundary (past a record), or past the end; a read either fails or
    // returns exactly the records asked for.
    let len_at = offsets[2];
    let spans = [
        offsets[3] - offsets[2] - 24 + 8,  // inside frame 3
        offsets[4] - offsets[2] - 24,      // frame 4's boundary, as if frame 3 were not there
        offsets[30] - offsets[2] - 24,     // exactly at the visible end
        offsets[30] - offsets[2] - 24 + 4, // past the visible end
    ];
    for span in spans {
        file.write_all_at(&(span as u32).to_le_bytes(), len_at as u64)
            .unwrap();
        for from in 2..8 {
            match read_from(from) {
                Err(e) => assert!(e.is_corruption(), "length {span}, from {from}: {e}"),
                // Only records the walk reaches at their own, checked, frames.
                Ok(events) => assert_eq!(events, whole[from as usize..], "length {span}"),
            }
        }
        // The damaged record, and the one the walk would step past, are never read.
        for from in [2, 3] {
            assert!(read_from(from).is_err(), "length {span}, from {from}");
        }
        file.write_all_at(&bytes[len_at..len_at + 4], len_at as u64)
            .unwrap();
    }
    assert_eq!(read_all(&log), whole);
}
