//! Sealing segments larger than the sealer's read chunk: the sealer streams a raw segment a
//! chunk at a time, so blocks, and records bigger than a chunk, straddle its reads. Every record
//! must come back exactly from the sealed copy, and damage anywhere in the raw segment must fail
//! the seal with the damaged frame's file and offset.

#![allow(
    clippy::unwrap_used,
    reason = "test helpers fail loudly on the first unexpected error; `expect` would break as helpers move"
)]

mod common;

use std::{fs, path::Path, sync::Arc};

use annals_log::{Commit, IoEngine, LogConfig, LogStore};
use bytesize::ByteSize;
use common::*;
use rand::Rng;

/// Segments of 5 MiB (several of the sealer's 1 MiB reads) with the default 64 KiB blocks.
fn config(dir: &Path, seal: bool) -> LogConfig {
    LogConfig {
        segment_bytes_max: ByteSize::mib(5),
        seal_enabled: seal,
        ..LogConfig::new(dir)
    }
}

/// `count` commits of 1-12 events of up to 24 KiB each, and, at `big`, one of a single event of
/// 1.5 MiB (bigger than a read chunk and a block together).
fn commits(count: u64, big: u64) -> Vec<Commit> {
    let mut r = rng(11);
    (0..count)
        .map(|tag| {
            let n = if tag == big { 1 } else { r.gen_range(1..=12) };
            let mut c = commit(&mut r, tag, n);
            for (i, e) in c.events.iter_mut().enumerate() {
                let pad = if tag == big {
                    3 << 19
                } else {
                    r.gen_range(0..24 << 10)
                };
                e.content = format!(
                    r#"{{"commit":{tag},"index":{i},"pad":"{}"}}"#,
                    "y".repeat(pad)
                );
            }
            c
        })
        .collect()
}

fn append_all(io: Arc<dyn IoEngine>, dir: &Path, seal: bool, commits: &[Commit]) -> LogStore {
    let engine = LogStore::open_with_io(config(dir, seal), io).unwrap();
    let log = test_log(&engine);
    for c in commits {
        log.append(c).unwrap();
    }
    engine
}

#[test]
fn segments_of_many_read_chunks_seal_and_read_back_exactly() {
    let commits = commits(260, 97);
    for io in real_backends() {
        let dir = tempfile::tempdir().unwrap();
        let engine = append_all(io.clone(), dir.path(), true, &commits);
        assert!(engine.wait_for_sealing().is_empty());
        assert!(
            files(&log_dir(dir.path()), ".sealed").len() >= 2,
            "expected at least two sealed segments ({})",
            io.name()
        );
        let check = |engine: &LogStore| {
            let events = read_all(&test_log(engine));
            let mut at = 0;
            for c in &commits {
                for i in 0..c.events.len() {
                    assert_event_matches(&events[at], c, i);
                    at += 1;
                }
            }
            assert_eq!(at, events.len());
        };
        check(&engine);
        drop(engine);
        // Reopened, the sealed files alone (their raw originals are gone or recycled) serve it.
        let engine = LogStore::open_with_io(config(dir.path(), true), io).unwrap();
        check(&engine);
    }
}

#[test]
fn damage_past_the_first_read_chunk_fails_the_seal_at_its_frame() {
    use std::os::unix::fs::FileExt;
    let commits = commits(120, 40);
    let dir = tempfile::tempdir().unwrap();
    let engine =
        LogStore::open_with_io(config(dir.path(), true), Arc::new(annals_log::StdIo)).unwrap();
    let log = test_log(&engine);
    // Fill the first segment past 3.5 MiB, then damage the payload of its first frame past
    // 3 MiB behind the log's back (recovery would refuse it at open; a failing disk or a stray
    // write does it while the log runs), then fill on until it rolls and is sealed.
    let first = log_dir(dir.path()).join(format!("{:020}.log", 0));
    let mut rest = commits.iter();
    for c in rest.by_ref() {
        log.append(c).unwrap();
        if fs::metadata(&first).unwrap().len() > 4 << 20
            && data_end(&fs::read(&first).unwrap()) > 7 << 19
        {
            break;
        }
    }
    let bytes = fs::read(&first).unwrap();
    let mut at = 64usize;
    while at < 3 << 20 {
        let len = u32::from_le_bytes(bytes[at..at + 4].try_into().unwrap()) as usize;
        at += 24 + len;
    }
    let file = fs::OpenOptions::new().write(true).open(&first).unwrap();
    file.write_all_at(&[bytes[at + 24 + 3] ^ 0x40], (at + 24 + 3) as u64)
        .unwrap();
    drop(file);
    for c in rest {
        log.append(c).unwrap();
    }
    let failures = engine.wait_for_sealing();
    assert!(
        failures.iter().any(
            |f| f.contains(&first.display().to_string()) && f.contains(&format!("offset {at}"))
        ),
        "expected a failed seal of {} at offset {at}: {failures:?}",
        first.display()
    );
    let logs = log_dir(dir.path());
    assert!(
        !logs.join(format!("{:020}.sealed", 0)).exists()
            && !logs.join(format!("{:020}.sealed.tmp", 0)).exists(),
        "a failed seal leaves no sealed file behind"
    );
    assert!(first.exists(), "the raw segment stays");
}
