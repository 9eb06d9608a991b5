//! Spare segments on real backends (std and io_uring): rolls start their new segment in a spare
//! the zeroer made (zero-filled to a whole segment) or in the file of a sealed-away segment, the
//! data reads back whole across them, a reopen deletes what a previous run left among the
//! spares, a stranger there fails the open, and a recycled active segment's old bytes are its
//! clean end after a crash, strict mode included, while a commit torn in it is cut. The crash
//! tests (crash.rs) cover a crash at every operation of rolls into both kinds of spare.

#![allow(
    clippy::unwrap_used,
    reason = "test helpers fail loudly on the first unexpected error; `expect` would break as helpers move"
)]

mod common;

use std::sync::{atomic::Ordering, Arc};

use annals_log::{
    testing::format::{encode_frame, SegmentHeader, HEADER_LEN},
    Error, EventLogSequenceNumber, LogConfig, LogStore, RecoveryMode, StdIo,
};
use common::*;

/// Appends `n` commits, waiting for the sealer and the zeroer after each so that every roll
/// but the first finds its spare (a sealed-away file, or zeros); returns the commits.
fn append_waiting_for_spares(
    store: &LogStore,
    n: u64,
    tag_from: u64,
) -> Vec<Arc<annals_log::Commit>> {
    let log = test_log(store);
    let mut r = rng(tag_from);
    (tag_from..tag_from + n)
        .map(|tag| {
            let c = Arc::new(commit(&mut r, tag, 1 + (tag as usize % 5)));
            log.append(&c).unwrap();
            assert_eq!(store.wait_for_sealing(), Vec::<String>::new());
            store.wait_for_spares();
            c
        })
        .collect()
}

fn check_reads_back(store: &LogStore, commits: &[Arc<annals_log::Commit>]) {
    let events = read_all(&test_log(store));
    let mut k = 0;
    for c in commits {
        for i in 0..c.events.len() {
            assert_eq!(events[k].sequence_number.0, k as u64);
            assert_event_matches(&events[k], c, i);
            k += 1;
        }
    }
    assert_eq!(k, events.len(), "events beyond the commits");
}

fn spare_files(config: &LogConfig) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(config.data_dir.join("spares"))
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    names.sort();
    names
}

#[test]
fn rolls_start_in_spares_and_a_reopen_deletes_leftovers() {
    for io in real_backends() {
        let dir = tempfile::tempdir().unwrap();
        let config = small_config(dir.path());
        assert_eq!(config.spare_segments, 1, "the default keeps one spare");
        let store = LogStore::open_with_io(config.clone(), Arc::clone(&io)).unwrap();
        assert!(
            spare_files(&config).is_empty(),
            "no spare before the first roll"
        );
        let mut commits = append_waiting_for_spares(&store, 120, 1);
        let log = test_log(&store);
        let rolls = log.stats().rolls.load(Ordering::Relaxed);
        let spare_rolls = log.stats().spare_rolls.load(Ordering::Relaxed);
        assert!(rolls >= 5, "the workload should roll often, rolled {rolls}");
        assert_eq!(
            spare_rolls,
            rolls - 1,
            "{}: every roll after the first should find a spare",
            io.name()
        );
        assert_eq!(spare_files(&config).len(), 1, "one spare kept ready");
        // The active segment came from a spare: written blocks already cover a whole segment.
        let active = active_segment(&config.data_dir);
        assert!(
            std::fs::metadata(&active).unwrap().len() >= config.segment_bytes_max.as_u64(),
            "{}",
            active.display()
        );
        check_reads_back(&store, &commits);
        drop(log);
        drop(store);

        // A crash may leave spares, half-made ones too: the next open deletes them all.
        std::fs::write(config.data_dir.join("spares/999.spare"), b"\0\0\0").unwrap();
        let store = LogStore::open_with_io(config.clone(), Arc::clone(&io)).unwrap();
        assert!(spare_files(&config).is_empty(), "leftover spares deleted");
        check_reads_back(&store, &commits);
        commits.extend(append_waiting_for_spares(&store, 60, 1000));
        check_reads_back(&store, &commits);
        assert!(test_log(&store).stats().spare_rolls.load(Ordering::Relaxed) > 0);
    }
}

#[test]
fn a_stranger_among_the_spares_fails_the_open() {
    let dir = tempfile::tempdir().unwrap();
    let config = small_config(dir.path());
    drop(LogStore::open_with_io(config.clone(), Arc::new(StdIo)).unwrap());
    let stranger = config.data_dir.join("spares/notes.txt");
    std::fs::write(&stranger, b"mine").unwrap();
    match LogStore::open_with_io(config.clone(), Arc::new(StdIo)) {
        Err(Error::Corruption { path, .. }) => assert_eq!(path, stranger),
        other => panic!("expected Corruption naming the file, got {other:?}"),
    }
    assert!(stranger.exists(), "a file we did not make is never deleted");
}

/// Opens a store on `config`, appends across several rolls and checks that none of them took
/// a spare of zeros and that everything reads back; returns the rolls into recycled files.
fn rolls_without_zeroed_spares(config: &LogConfig) -> u64 {
    let store = LogStore::open_with_io(config.clone(), Arc::new(StdIo)).unwrap();
    let commits = append_waiting_for_spares(&store, 60, 1);
    let log = test_log(&store);
    assert!(log.stats().rolls.load(Ordering::Relaxed) >= 3);
    let recycled = log.stats().recycled_rolls.load(Ordering::Relaxed);
    assert_eq!(log.stats().spare_rolls.load(Ordering::Relaxed), recycled);
    check_reads_back(&store, &commits);
    recycled
}

#[test]
fn no_spares_when_turned_off() {
    let dir = tempfile::tempdir().unwrap();
    let config = LogConfig {
        spare_segments: 0,
        ..small_config(dir.path())
    };
    assert_eq!(rolls_without_zeroed_spares(&config), 0);
    assert!(!config.data_dir.join("spares").exists());
}

#[test]
fn rolls_out_of_large_groups_do_not_ask_for_spares() {
    let dir = tempfile::tempdir().unwrap();
    let config = LogConfig {
        // Every group is above preallocate-bytes / 16 = 64 bytes.
        preallocate_bytes: bytesize::ByteSize::kib(1),
        ..small_config(dir.path())
    };
    // Nothing asks the zeroer; sealed-away files may still start later segments.
    rolls_without_zeroed_spares(&config);
}

#[test]
fn spare_segments_above_16_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let config = LogConfig {
        spare_segments: 17,
        ..small_config(dir.path())
    };
    match LogStore::open_with_io(config, Arc::new(StdIo)) {
        Err(e) => assert!(e.to_string().contains("spare-segments"), "{e}"),
        Ok(_) => panic!("17 spare segments accepted"),
    }
}

#[test]
fn sealed_away_segments_start_later_segments_and_their_old_bytes_are_no_torn_tail() {
    for io in real_backends() {
        let dir = tempfile::tempdir().unwrap();
        let config = small_config(dir.path().join("a"));
        let store = LogStore::open_with_io(config.clone(), Arc::clone(&io)).unwrap();
        let commits = append_waiting_for_spares(&store, 120, 1);
        let log = test_log(&store);
        let rolls = log.stats().rolls.load(Ordering::Relaxed);
        let recycled = log.stats().recycled_rolls.load(Ordering::Relaxed);
        assert!(
            recycled * 2 >= rolls,
            "{}: most rolls should land in sealed-away files: {recycled} of {rolls}",
            io.name()
        );
        // The active segment is one: a version-2 header with the recycled flag.
        let active = active_segment(&config.data_dir);
        let bytes = std::fs::read(&active).unwrap();
        let header = SegmentHeader::decode(&bytes[..HEADER_LEN]).unwrap();
        assert!(header.recycled && header.format_version == 2, "{header:?}");
        check_reads_back(&store, &commits);

        // A crash now. The copy opens and is cut to its own records.
        let crashed = LogConfig {
            data_dir: dir.path().join("b"),
            ..config.clone()
        };
        copy_dir(&config.data_dir, &crashed.data_dir);
        let next = {
            let store = LogStore::open_with_io(crashed.clone(), Arc::clone(&io)).unwrap();
            check_reads_back(&store, &commits);
            test_log(&store).next_sequence_number()
        };
        let active = active_segment(&crashed.data_dir);
        let end = std::fs::metadata(&active).unwrap().len();
        assert!(end < bytes.len() as u64, "the old bytes are cut");
        let base = header.base;

        // What a recycled file holds after the end: frames of another segment, valid there.
        // They are its clean end in every mode, strict included, and nothing of them is counted
        // as torn.
        let mut stale = Vec::new();
        let other = EventLogSequenceNumber(base.0 + 1_000_000);
        encode_frame(
            &mut stale,
            other,
            end,
            other,
            0,
            0,
            b"a record of another segment",
        );
        append_bytes(&active, &stale);
        for mode in [RecoveryMode::Strict, RecoveryMode::TolerateTornTail] {
            let store = LogStore::open_with_io(
                LogConfig {
                    recovery_mode: mode,
                    ..crashed.clone()
                },
                Arc::clone(&io),
            )
            .unwrap_or_else(|e| panic!("{}: {mode:?}: {e}", io.name()));
            let log = test_log(&store);
            let report = log.recovery_report();
            assert_eq!((report.truncated_bytes, report.dropped_records), (0, 0));
            assert_eq!(log.next_sequence_number(), next);
            check_reads_back(&store, &commits);
            assert_eq!(std::fs::metadata(&active).unwrap().len(), end);
            drop(log);
            drop(store);
            append_bytes(&active, &stale);
        }

        // A commit torn in it: its first record written, not the second, old bytes after it.
        // Strict recovery refuses it; the default cuts it.
        std::fs::OpenOptions::new()
            .write(true)
            .open(&active)
            .unwrap()
            .set_len(end)
            .unwrap();
        let mut torn = Vec::new();
        encode_frame(&mut torn, base, end, next, 1, 0, b"half of a commit");
        append_bytes(&active, &torn);
        append_bytes(&active, &stale);
        let strict = LogConfig {
            recovery_mode: RecoveryMode::Strict,
            ..crashed.clone()
        };
        let opened = LogStore::open_with_io(strict, Arc::clone(&io))
            .and_then(|s| s.tenant(TENANT))
            .and_then(|t| t.event_log());
        match opened {
            Err(Error::Corruption { what, .. }) => assert!(what.contains("torn tail"), "{what}"),
            other => panic!("strict recovery cut a torn commit: {other:?}"),
        }
        let store = LogStore::open_with_io(crashed.clone(), Arc::clone(&io)).unwrap();
        let log = test_log(&store);
        assert_eq!(log.recovery_report().dropped_records, 1);
        assert_eq!(log.recovery_report().truncated_bytes, torn.len() as u64);
        assert_eq!(std::fs::metadata(&active).unwrap().len(), end);
        check_reads_back(&store, &commits);
        let mut all = commits.clone();
        all.extend(append_waiting_for_spares(&store, 40, 5000));
        check_reads_back(&store, &all);
        drop(log);
        drop(store);

        // Damage to a commit that a later write follows is corruption, as in any segment;
        // salvage cuts there and counts what it cut, old bytes included.
        let crashed = LogConfig {
            data_dir: dir.path().join("c"),
            ..config.clone()
        };
        copy_dir(&config.data_dir, &crashed.data_dir);
        // A first open cuts the old bytes after the records, so the file is the segment's own.
        test_log(&LogStore::open_with_io(crashed.clone(), Arc::clone(&io)).unwrap());
        let active = active_segment(&crashed.data_dir);
        let mut file = std::fs::read(&active).unwrap();
        let starts = commit_starts(&file);
        assert!(
            starts.len() >= 3,
            "the active segment holds several commits"
        );
        let damaged = starts[starts.len() - 2];
        file[damaged + 30] ^= 0x40;
        std::fs::write(&active, &file).unwrap();
        let opened = LogStore::open_with_io(crashed.clone(), Arc::clone(&io))
            .and_then(|s| s.tenant(TENANT))
            .and_then(|t| t.event_log());
        assert!(
            matches!(opened, Err(Error::ChecksumMismatch { offset, .. }) if offset == damaged as u64),
            "{opened:?}"
        );
        let salvage = LogConfig {
            recovery_mode: RecoveryMode::Salvage,
            ..crashed.clone()
        };
        let store = LogStore::open_with_io(salvage, Arc::clone(&io)).unwrap();
        let log = test_log(&store);
        assert!(log.recovery_report().truncated_bytes > (file.len() - damaged) as u64 / 2);
        assert_eq!(std::fs::metadata(&active).unwrap().len(), damaged as u64);
    }
}

/// File offsets of the first frames of the commits in a raw segment's bytes (frames walked by
/// their lengths from offset 64 while their sequence numbers follow on; FORMAT.md section 4).
fn commit_starts(file: &[u8]) -> Vec<usize> {
    let u32_at = |at: usize| u32::from_le_bytes(file[at..at + 4].try_into().unwrap());
    let u64_at = |at: usize| u64::from_le_bytes(file[at..at + 8].try_into().unwrap());
    let base = u64_at(48);
    let (mut at, mut seq, mut starts, mut in_commit) = (HEADER_LEN, base, Vec::new(), false);
    while at + 24 <= file.len() && u64_at(at + 8) == seq {
        if !in_commit {
            starts.push(at);
        }
        in_commit = u32_at(at + 16) != 0;
        at += 24 + u32_at(at) as usize;
        seq += 1;
    }
    starts
}

fn append_bytes(path: &std::path::Path, bytes: &[u8]) {
    use std::io::Write as _;
    let mut file = std::fs::OpenOptions::new().append(true).open(path).unwrap();
    file.write_all(bytes).unwrap();
}
