//! Spare segments on real backends (std and io_uring): rolls start their new segment in a spare
//! the zeroer made (zero-filled to a whole segment), the data reads back whole across them, a
//! reopen deletes what a previous run left among the spares, and a stranger there fails the
//! open. The crash tests (crash.rs) cover a crash at every operation of rolls into spares.

#![allow(
    clippy::unwrap_used,
    reason = "test helpers fail loudly on the first unexpected error; `expect` would break as helpers move"
)]

mod common;

use std::sync::{atomic::Ordering, Arc};

use annals_log::{Error, LogConfig, LogStore, StdIo};
use common::*;

/// Appends `n` commits, waiting for the zeroer after each so that every roll but the first
/// finds its spare; returns the commits.
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
        // The active segment came from a spare: zeros already cover a whole segment.
        let active = std::fs::read_dir(log.dir())
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| p.extension().is_some_and(|e| e == "log"))
            .max()
            .unwrap();
        assert_eq!(
            std::fs::metadata(&active).unwrap().len(),
            config.segment_bytes_max.as_u64(),
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
/// a spare and that everything reads back.
fn rolls_without_spares(config: &LogConfig) {
    let store = LogStore::open_with_io(config.clone(), Arc::new(StdIo)).unwrap();
    let commits = append_waiting_for_spares(&store, 60, 1);
    let log = test_log(&store);
    assert!(log.stats().rolls.load(Ordering::Relaxed) >= 3);
    assert_eq!(log.stats().spare_rolls.load(Ordering::Relaxed), 0);
    check_reads_back(&store, &commits);
}

#[test]
fn no_spares_when_turned_off() {
    let dir = tempfile::tempdir().unwrap();
    let config = LogConfig {
        spare_segments: 0,
        ..small_config(dir.path())
    };
    rolls_without_spares(&config);
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
    rolls_without_spares(&config);
    assert!(spare_files(&config).is_empty(), "no spare made");
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
