//! Group commit, fault policy and tail subscriptions on real backends (std and io_uring):
//! concurrent committers share writes and fdatasyncs; a failed write or fsync poisons the
//! log until reopen; a real full disk (size-limited tmpfs) is survived; subscribers wake on
//! commit without polling; reads keep working while segments are sealed.

#![allow(
    clippy::unwrap_used,
    reason = "test helpers fail loudly on the first unexpected error; `expect` would break as helpers move"
)]

mod common;

use std::{
    collections::BTreeSet,
    sync::{atomic::Ordering, Arc},
    time::Duration,
};

use annals_log::{testing::FaultIo, Error, EventLogSequenceNumber, IoEngine, LogStore};
use common::*;

/// Checks that the receipts' ranges are disjoint and cover 0.. without a gap; returns the
/// number of events they cover.
fn assert_gapless(receipts: impl Iterator<Item = annals_log::CommitReceipt>) -> u64 {
    let mut covered = BTreeSet::new();
    for receipt in receipts {
        for s in receipt.first.0..receipt.next().0 {
            assert!(covered.insert(s), "sequence {s} assigned twice");
        }
    }
    let total = covered.len() as u64;
    assert_eq!(
        covered.iter().copied().collect::<Vec<_>>(),
        (0..total).collect::<Vec<_>>()
    );
    total
}

#[test]
fn concurrent_commits_share_fdatasyncs_and_get_disjoint_gapless_ranges() {
    for io in real_backends() {
        let dir = tempfile::tempdir().unwrap();
        let config = small_config(dir.path());
        let engine = LogStore::open_with_io(config, Arc::clone(&io)).unwrap();
        let log = test_log(&engine);
        let receipts = std::sync::Mutex::new(Vec::new());
        std::thread::scope(|s| {
            for w in 0..16u64 {
                let (log, receipts) = (&log, &receipts);
                s.spawn(move || {
                    let mut r = rng(w);
                    for i in 0..40 {
                        let c = commit(&mut r, w * 100 + i, 1 + (i as usize % 3));
                        let receipt = log.append(&c).unwrap();
                        receipts.lock().unwrap().push((receipt, c));
                    }
                });
            }
        });
        let receipts = receipts.into_inner().unwrap();
        assert_gapless(receipts.iter().map(|(receipt, _)| *receipt));
        let events = read_all(&log);
        for (receipt, c) in &receipts {
            for i in 0..c.events.len() {
                assert_event_matches(&events[receipt.first.0 as usize + i], c, i);
            }
        }
        let stats = log.stats();
        let syncs = stats.data_syncs.load(Ordering::Relaxed);
        eprintln!(
            "{}: {} commits, {} fdatasyncs, {:.1} commits per fdatasync",
            io.name(),
            receipts.len(),
            syncs,
            receipts.len() as f64 / syncs as f64
        );
        assert!(syncs >= 1 && syncs <= receipts.len() as u64);
    }
}

/// Asynchronous appends (the committer thread leads for them) and blocking appends share
/// groups: every commit gets its own gapless range, its events as committed, and all of them
/// are there after a reopen.
#[test]
fn async_and_blocking_appends_share_groups_and_survive_a_reopen() {
    for io in real_backends() {
        let dir = tempfile::tempdir().unwrap();
        let config = small_config(dir.path());
        let receipts = std::sync::Mutex::new(Vec::new());
        {
            let engine = LogStore::open_with_io(config.clone(), Arc::clone(&io)).unwrap();
            let log = test_log(&engine);
            std::thread::scope(|s| {
                for w in 0..12u64 {
                    let (log, receipts) = (&log, &receipts);
                    s.spawn(move || {
                        let mut r = rng(w);
                        for i in 0..40 {
                            let c = commit(&mut r, w * 100 + i, 1 + (i as usize % 3));
                            // Even writers append asynchronously, odd ones block.
                            let receipt = if w % 2 == 0 {
                                block_on(log.append_async(&c)).unwrap()
                            } else {
                                log.append(&c).unwrap()
                            };
                            receipts.lock().unwrap().push((receipt, c));
                        }
                    });
                }
            });
            let syncs = log.stats().data_syncs.load(Ordering::Relaxed);
            let commits = receipts.lock().unwrap().len() as u64;
            assert!(
                syncs >= 1 && syncs <= commits,
                "{syncs} syncs for {commits} commits"
            );
        }
        let receipts = receipts.into_inner().unwrap();
        let total = assert_gapless(receipts.iter().map(|(receipt, _)| *receipt));
        let engine = LogStore::open_with_io(config, Arc::clone(&io)).unwrap();
        let log = test_log(&engine);
        let events = read_all(&log);
        assert_eq!(
            events.len() as u64,
            total,
            "{}: events after reopen",
            io.name()
        );
        for (receipt, c) in &receipts {
            for i in 0..c.events.len() {
                assert_event_matches(&events[receipt.first.0 as usize + i], c, i);
            }
        }
    }
}

/// An asynchronous append to a poisoned log fails at once, like a blocking one.
#[test]
fn an_async_append_to_a_poisoned_log_fails() {
    let fs = FaultIo::new();
    let config = small_config("/data");
    let engine = open_fault(&fs, &config).unwrap();
    let log = test_log(&engine);
    let mut r = rng(7);
    block_on(log.append_async(&commit(&mut r, 1, 1))).unwrap();
    fs.fail_syncs_after_ops(0);
    let err = block_on(log.append_async(&commit(&mut r, 2, 1))).unwrap_err();
    assert!(
        matches!(
            err,
            Error::Io {
                op: "write+fdatasync",
                ..
            }
        ),
        "the append whose fsync failed fails: {err}"
    );
    fs.heal();
    let err = block_on(log.append_async(&commit(&mut r, 3, 1))).unwrap_err();
    assert!(
        matches!(err, Error::Poisoned { .. }),
        "later appends are refused: {err}"
    );
    assert_eq!(
        read_all(&log).len(),
        1,
        "what was acknowledged is still read"
    );
}

#[test]
fn a_failed_fsync_poisons_the_log_until_reopen() {
    let fs = FaultIo::new();
    let config = small_config("/data");
    let mut r = rng(9);
    let engine = open_fault(&fs, &config).unwrap();
    let log = test_log(&engine);
    let kept = commit(&mut r, 1, 2);
    log.append(&kept).unwrap();
    fs.fail_syncs_after_ops(0);
    let err = log.append(&commit(&mut r, 2, 2)).unwrap_err();
    assert!(
        matches!(
            err,
            Error::Io {
                op: "write+fdatasync",
                ..
            }
        ),
        "{err}"
    );
    // Even once the disk "recovers", the log refuses: the failed fsync may have lost pages.
    fs.heal();
    let err = log.append(&commit(&mut r, 3, 1)).unwrap_err();
    assert!(matches!(err, Error::Poisoned { .. }), "{err}");
    assert!(err.to_string().contains("reopen"), "{err}");
    // Reads of what was acknowledged still work.
    assert_eq!(read_all(&log).len(), 2);
    drop(log);
    drop(engine);
    // Reopen (after a crash dropping the unsynced write): the failed commit is gone whole.
    let fs = fs.crash(Some(5));
    let engine = open_fault(&fs, &config).unwrap();
    let log = engine.tenant(TENANT).unwrap().event_log().unwrap();
    let events = read_all(&log);
    assert_eq!(events.len(), 2);
    assert_event_matches(&events[0], &kept, 0);
    assert_eq!(log.append(&commit(&mut r, 4, 1)).unwrap().first.0, 2);
}

#[test]
fn a_full_disk_fails_the_commit_poisons_and_recovers_after_reopen() {
    let fs = FaultIo::new();
    let config = small_config("/data");
    let mut r = rng(11);
    let engine = open_fault(&fs, &config).unwrap();
    let log = test_log(&engine);
    let mut acknowledged = 0;
    fs.set_space_left(3000);
    let err = loop {
        match log.append(&commit(&mut r, acknowledged + 1, 3)) {
            Ok(_) => acknowledged += 1,
            Err(e) => break e,
        }
    };
    assert!(
        err.to_string().contains("No space left") || matches!(err, Error::Io { .. }),
        "{err}"
    );
    assert!(matches!(
        log.append(&commit(&mut r, 99, 1)).unwrap_err(),
        Error::Poisoned { .. }
    ));
    drop(log);
    drop(engine);
    fs.heal();
    // The partial write of the failed commit is on "disk" (live image): reopen truncates it.
    let engine = open_fault(&fs, &config).unwrap();
    let log = engine.tenant(TENANT).unwrap().event_log().unwrap();
    assert_eq!(read_all(&log).len() as u64, acknowledged * 3);
    log.append(&commit(&mut r, 100, 1)).unwrap();
}

/// A real ENOSPC from the kernel: a 256 KiB tmpfs, filled until the commit fails.
#[test]
fn a_real_full_tmpfs_is_survived() {
    let Some((mount, _unmount)) = mount_tmpfs("256k", "annals-test") else {
        return;
    };
    for io in real_backends() {
        let data = mount.path().join(io.name());
        let config = annals_log::LogConfig {
            seal_enabled: false,
            ..small_config(&data)
        };
        let mut r = rng(1);
        let mut acknowledged = 0u64;
        {
            let engine = LogStore::open_with_io(config.clone(), Arc::clone(&io)).unwrap();
            let log = test_log(&engine);
            let err = loop {
                match log.append(&commit(&mut r, acknowledged + 1, 4)) {
                    Ok(_) => acknowledged += 1,
                    Err(e) => break e,
                }
                assert!(acknowledged < 100_000, "the disk never filled");
            };
            eprintln!("{}: full after {acknowledged} commits: {err}", io.name());
            assert!(matches!(
                log.append(&commit(&mut r, 0, 1)).unwrap_err(),
                Error::Poisoned { .. }
            ));
        }
        // Free room (remove the other backend's data) and grow the mount, then reopen.
        let _ = std::process::Command::new("mount")
            .args(["-o", "remount,size=4m", &mount.path().display().to_string()])
            .status();
        let engine = LogStore::open_with_io(config, Arc::clone(&io)).unwrap();
        let log = engine.tenant(TENANT).unwrap().event_log().unwrap();
        assert_eq!(
            read_all(&log).len() as u64,
            acknowledged * 4,
            "{}",
            io.name()
        );
        log.append(&commit(&mut r, 1, 1)).unwrap();
        drop(log);
        drop(engine);
        std::fs::remove_dir_all(&data).unwrap();
        let _ = std::process::Command::new("mount")
            .args([
                "-o",
                "remount,size=256k",
                &mount.path().display().to_string(),
            ])
            .status();
    }
}

#[test]
fn subscribers_wake_on_commit_and_see_every_event_once() {
    for io in real_backends() {
        let dir = tempfile::tempdir().unwrap();
        let engine = LogStore::open_with_io(small_config(dir.path()), Arc::clone(&io)).unwrap();
        let log = test_log(&engine);
        let total = 300u64;
        std::thread::scope(|s| {
            let mut subscription = log.subscribe(EventLogSequenceNumber(0));
            let reader = s.spawn(move || {
                let mut seen = Vec::new();
                while (seen.len() as u64) < total {
                    // No timeout: this blocks until a commit wakes it.
                    let batch = subscription.next_batch(64, None).unwrap();
                    assert!(!batch.is_empty());
                    for e in batch.events().unwrap() {
                        seen.push(e.sequence_number.0);
                    }
                }
                seen
            });
            let mut r = rng(2);
            for t in 0..total / 3 {
                log.append(&commit(&mut r, t, 3)).unwrap();
                if t % 20 == 0 {
                    std::thread::sleep(Duration::from_millis(2));
                }
            }
            let seen = reader.join().unwrap();
            assert_eq!(seen, (0..total).collect::<Vec<_>>(), "{}", io.name());
        });
        // A timeout returns an empty batch at the end of the log.
        let mut at_end = log.subscribe(log.next_sequence_number());
        assert!(at_end
            .next_batch(10, Some(Duration::from_millis(20)))
            .unwrap()
            .is_empty());
    }
}

#[test]
fn reads_stay_correct_while_segments_are_sealed() {
    let io: Arc<dyn IoEngine> = real_backends().pop().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let engine = LogStore::open_with_io(small_config(dir.path()), io).unwrap();
    let log = test_log(&engine);
    let stop = std::sync::atomic::AtomicBool::new(false);
    std::thread::scope(|s| {
        let (log_r, stop_r) = (&log, &stop);
        let reader = s.spawn(move || {
            let mut passes = 0;
            while !stop_r.load(Ordering::Relaxed) {
                let events = read_all(log_r);
                for (k, e) in events.iter().enumerate() {
                    assert_eq!(e.sequence_number.0, k as u64);
                    assert!(e.content.contains(&format!("\"index\":{}", k % 2)));
                }
                passes += 1;
            }
            passes
        });
        let mut r = rng(4);
        for t in 0..400 {
            log.append(&commit(&mut r, t, 2)).unwrap();
        }
        assert!(engine.wait_for_sealing().is_empty());
        stop.store(true, Ordering::Relaxed);
        assert!(reader.join().unwrap() > 0);
    });
    assert!(log.stats().seals.load(Ordering::Relaxed) > 5);
    let (all, sealed) = log.disk_bytes();
    assert!(sealed > 0 && sealed < all);
}

#[test]
fn tenants_are_apart() {
    let dir = tempfile::tempdir().unwrap();
    let config = small_config(dir.path());
    let other = annals_log::TenantId(annals_log::uuid::Uuid::from_u128(77));
    {
        let engine = LogStore::open_with_io(config.clone(), Arc::new(annals_log::StdIo)).unwrap();
        assert!(matches!(
            engine.tenant(TENANT),
            Err(Error::TenantUnknown(_))
        ));
        let a = engine.create_tenant(TENANT).unwrap().event_log().unwrap();
        let b = engine.create_tenant(other).unwrap().event_log().unwrap();
        assert!(matches!(
            engine.create_tenant(other),
            Err(Error::TenantExists(_))
        ));
        let mut r = rng(5);
        a.append(&commit(&mut r, 1, 3)).unwrap();
        b.append(&commit(&mut r, 2, 1)).unwrap();
        assert_eq!(read_all(&a).len(), 3);
        assert_eq!(read_all(&b).len(), 1);
    }
    let engine = LogStore::open_with_io(config, Arc::new(annals_log::StdIo)).unwrap();
    assert_eq!(engine.tenants(), vec![other, TENANT], "sorted by id");
    assert_eq!(
        read_all(&engine.tenant(other).unwrap().event_log().unwrap()).len(),
        1
    );
    let scope = annals_log::ScopeId(annals_log::uuid::Uuid::from_u128(3));
    let scoped = engine.tenant(TENANT).unwrap().log(scope).unwrap();
    assert_eq!(
        scoped.next_sequence_number().0,
        0,
        "a scope has its own sequence numbers"
    );
    assert_eq!(engine.tenant(TENANT).unwrap().scopes().unwrap().len(), 2);
}

/// Reads take "no limit" (usize::MAX bytes) as a limit, from raw and sealed segments alike.
#[test]
fn reads_accept_unbounded_byte_limits() {
    let dir = tempfile::tempdir().unwrap();
    let engine = LogStore::open(small_config(dir.path())).unwrap();
    let log = test_log(&engine);
    let mut rng = rng(7);
    for tag in 0..40 {
        log.append(&commit(&mut rng, tag, 3)).unwrap();
    }
    engine.wait_for_sealing();
    let end = log.next_sequence_number().0;
    for from in [0, end / 2, end - 1] {
        let batch = log
            .read(EventLogSequenceNumber(from), usize::MAX, usize::MAX)
            .unwrap();
        assert!(!batch.is_empty(), "from {from}");
        assert_eq!(batch.first(), Some(EventLogSequenceNumber(from)));
    }
}

/// Scattered reads through the block cache return exactly what plain reads return, on the
/// first read of a block (filled) and on later ones (served from the cache).
#[test]
fn cached_reads_match_plain_reads() {
    let dir = tempfile::tempdir().unwrap();
    let engine = LogStore::open(small_config(dir.path())).unwrap();
    let log = test_log(&engine);
    let mut rng = rng(11);
    for tag in 0..60 {
        log.append(&commit(&mut rng, tag, 3)).unwrap();
    }
    engine.wait_for_sealing();
    assert!(log.segments().iter().filter(|(_, sealed)| *sealed).count() >= 2);
    let end = log.next_sequence_number().0;
    let mut plain = annals_log::RecordBatch::new();
    let mut cached = annals_log::RecordBatch::new();
    for pass in 0..2 {
        for from in (0..end).rev().step_by(7) {
            log.read_into(EventLogSequenceNumber(from), 2, usize::MAX, &mut plain)
                .unwrap();
            log.read_into_cached(EventLogSequenceNumber(from), 2, usize::MAX, &mut cached)
                .unwrap();
            assert_eq!(
                plain.events().unwrap(),
                cached.events().unwrap(),
                "pass {pass} from {from}"
            );
            assert_eq!(cached.first(), Some(EventLogSequenceNumber(from)));
        }
    }
}

/// Selected reads return exactly the records asked for, in order, across raw and sealed
/// segments, on a block's first read (filling the cache) and on later ones (from it); they stop
/// at their byte budget after at least one record, ignore what lies past the log's end, and
/// refuse a selection that does not ascend.
#[test]
fn selected_reads_return_exactly_the_records_asked_for() {
    use rand::Rng;
    let dir = tempfile::tempdir().unwrap();
    let engine = LogStore::open(small_config(dir.path())).unwrap();
    let log = test_log(&engine);
    let mut r = rng(13);
    for tag in 0..60 {
        log.append(&commit(&mut r, tag, 3)).unwrap();
    }
    engine.wait_for_sealing();
    let segments = log.segments();
    assert!(segments.iter().any(|(_, sealed)| *sealed));
    assert!(segments.iter().any(|(_, sealed)| !*sealed));
    let whole = read_all(&log);
    let end = whole.len() as u64;
    let mut batch = annals_log::RecordBatch::new();
    for pass in 0..3 {
        for _ in 0..200 {
            let first = r.gen_range(0..end);
            let mut wanted = vec![EventLogSequenceNumber(first)];
            let mut at = first;
            for _ in 0..r.gen_range(0..12) {
                at += r.gen_range(1..40);
                wanted.push(EventLogSequenceNumber(at));
            }
            log.read_selected_into(&wanted, usize::MAX, &mut batch)
                .unwrap();
            let expected: Vec<_> = wanted
                .iter()
                .filter(|w| w.0 < end)
                .map(|w| whole[w.0 as usize].clone())
                .collect();
            assert_eq!(batch.events().unwrap(), expected, "pass {pass}, {wanted:?}");
        }
    }
    // A budget of one byte still takes the first record, and only it.
    let wanted = [EventLogSequenceNumber(3), EventLogSequenceNumber(90)];
    log.read_selected_into(&wanted, 1, &mut batch).unwrap();
    assert_eq!(batch.events().unwrap(), [whole[3].clone()]);
    for bad in [
        vec![EventLogSequenceNumber(5), EventLogSequenceNumber(5)],
        vec![EventLogSequenceNumber(9), EventLogSequenceNumber(2)],
    ] {
        let err = log
            .read_selected_into(&bad, usize::MAX, &mut batch)
            .unwrap_err();
        assert!(matches!(err, Error::InvalidRequest(_)), "{err}");
    }
    log.read_selected_into(&[], usize::MAX, &mut batch).unwrap();
    assert!(batch.is_empty());
}
