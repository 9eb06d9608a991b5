//! Healing a poisoned log in place (`Log::heal`), without a reopen: after a failure at any
//! mutating operation of a workload (writes, syncs, rolls), while the disk still fails the heal
//! fails and the log keeps refusing; once it takes writes again the heal cuts the log back to
//! what was acknowledged, writes resume right after it, and a crash afterwards keeps exactly
//! the acknowledged commits. In `buffered` mode the acknowledged but unsynced commits that a
//! failed sync dropped from writeback are written again. A real full tmpfs is healed the same
//! way once it has room.

#![allow(
    clippy::unwrap_used,
    reason = "test helpers fail loudly on the first unexpected error; `expect` would break as helpers move"
)]

mod common;

use std::sync::Arc;

use annals_log::{
    testing::{CrashMode, FaultIo},
    Commit, Durability, Error, EventLogSequenceNumber, Log, LogConfig, LogStore,
};
use common::*;

/// Appends commits tagged `tags` until one fails; returns the failure (None if all passed).
fn append_until_failure(
    log: &Log,
    r: &mut rand::rngs::SmallRng,
    tags: std::ops::Range<u64>,
    acknowledged: &mut Vec<Commit>,
) -> Option<Error> {
    for tag in tags {
        let c = commit(r, tag, 1 + (tag % 4) as usize);
        let expected_first: u64 = acknowledged.iter().map(|c| c.events.len() as u64).sum();
        match log.append(&c) {
            Ok(receipt) => {
                assert_eq!(
                    receipt.first.0, expected_first,
                    "commit {tag} landed elsewhere"
                );
                acknowledged.push(c);
            }
            Err(e) => return Some(e),
        }
    }
    None
}

/// Checks that the log holds exactly the acknowledged commits' events, in order.
fn assert_holds_exactly(log: &Log, acknowledged: &[Commit], what: &str) {
    let events = read_all(log);
    let expected: usize = acknowledged.iter().map(|c| c.events.len()).sum();
    assert_eq!(events.len(), expected, "{what}: events in the log");
    let mut at = 0;
    for c in acknowledged {
        for i in 0..c.events.len() {
            assert_eq!(events[at].sequence_number.0, at as u64, "{what}");
            assert_event_matches(&events[at], c, i);
            at += 1;
        }
    }
}

/// A fault file system where a failed sync drops what it did not write from writeback, as
/// Linux does: a heal that only synced again would lose data on these.
fn fsyncgate() -> FaultIo {
    let fs = FaultIo::new();
    fs.model_fsyncgate();
    fs
}

fn unsealed(config: LogConfig) -> LogConfig {
    // No sealer thread and no zeroer: their operations would make the fault countdown
    // nondeterministic.
    LogConfig {
        seal_enabled: false,
        spare_segments: 0,
        ..config
    }
}

#[test]
fn a_log_poisoned_at_any_operation_heals_in_place() {
    let config = unsealed(small_config("/data"));
    let ops = {
        let fs = fsyncgate();
        let engine = open_fault(&fs, &config).unwrap();
        let log = test_log(&engine);
        let before = fs.ops_count();
        let mut acknowledged = Vec::new();
        assert!(append_until_failure(&log, &mut rng(1), 0..40, &mut acknowledged).is_none());
        assert!(
            log.segments().len() > 3,
            "the workload should roll segments"
        );
        fs.ops_count() - before
    };
    assert!(
        ops > 60,
        "the workload should do many operations, did {ops}"
    );
    for fail_at in 0..ops {
        for crash in [CrashMode::DropUnsynced, CrashMode::TornPrefix(fail_at + 1)] {
            let what = format!("disk fails at op {fail_at}/{ops}, crash {crash:?}");
            let fs = fsyncgate();
            let engine = open_fault(&fs, &config).unwrap();
            let log = test_log(&engine);
            let mut r = rng(1);
            let mut acknowledged = Vec::new();
            fs.fail_after_ops(fail_at);
            let failure = append_until_failure(&log, &mut r, 0..40, &mut acknowledged)
                .unwrap_or_else(|| panic!("{what}: nothing failed"));
            assert!(
                matches!(failure, Error::Io { .. }),
                "{what}: the first failure is the I/O error: {failure}"
            );
            // While the disk fails, healing fails too and the log keeps refusing.
            assert!(log.heal().is_err(), "{what}: healed on a failing disk");
            assert!(
                matches!(
                    log.append(&commit(&mut r, 99, 1)),
                    Err(Error::Poisoned { .. })
                ),
                "{what}"
            );
            assert_holds_exactly(&log, &acknowledged, &what);

            fs.heal();
            let healed = log
                .heal()
                .unwrap_or_else(|e| panic!("{what}: heal: {e}"))
                .unwrap_or_else(|| panic!("{what}: the log was not poisoned"));
            let end: u64 = acknowledged.iter().map(|c| c.events.len() as u64).sum();
            assert_eq!(healed.next, EventLogSequenceNumber(end), "{what}");
            assert_eq!(healed.cause, failure.to_string(), "{what}: the cause");
            assert!(log.heal().unwrap().is_none(), "{what}: healed twice");
            assert!(log.check_writable().is_ok(), "{what}");
            assert_eq!(
                log.stats().heals.load(std::sync::atomic::Ordering::Relaxed),
                1
            );
            // Writes resume right after the last acknowledged commit, across rolls.
            assert!(
                append_until_failure(&log, &mut r, 100..120, &mut acknowledged).is_none(),
                "{what}: a write after the heal failed"
            );
            assert_holds_exactly(&log, &acknowledged, &what);
            drop(log);
            drop(engine);

            // Everything acknowledged is durable, and nothing else is there.
            let disk = fs.crash_with(crash);
            let engine = open_fault(&disk, &config)
                .unwrap_or_else(|e| panic!("{what}: reopen after the heal: {e}"));
            let log = engine.tenant(TENANT).unwrap().event_log().unwrap();
            assert_holds_exactly(&log, &acknowledged, &format!("{what}, reopened"));
        }
    }
}

#[test]
fn a_full_disk_heals_once_it_has_room_and_not_before() {
    let fs = fsyncgate();
    let config = unsealed(small_config("/data"));
    let engine = open_fault(&fs, &config).unwrap();
    let log = test_log(&engine);
    let mut r = rng(3);
    let mut acknowledged = Vec::new();
    fs.set_space_left(20_000);
    let failure = append_until_failure(&log, &mut r, 0..1000, &mut acknowledged).unwrap();
    assert!(failure.to_string().contains("No space"), "{failure}");
    // Still full: the cut frees the failed commit's bytes, but the probe finds no room.
    fs.set_space_left(0);
    let err = log.heal().unwrap_err();
    assert!(err.to_string().contains("probe"), "{err}");
    assert!(log.check_writable().is_err());
    // Room again.
    fs.heal();
    let healed = log.heal().unwrap().unwrap();
    assert!(healed.cause.contains("No space"), "{}", healed.cause);
    assert!(append_until_failure(&log, &mut r, 2000..2010, &mut acknowledged).is_none());
    assert_holds_exactly(&log, &acknowledged, "healed");
    drop(log);
    drop(engine);
    let engine = open_fault(&fs.crash_with(CrashMode::DropUnsynced), &config).unwrap();
    let log = engine.tenant(TENANT).unwrap().event_log().unwrap();
    assert_holds_exactly(&log, &acknowledged, "reopened");
}

/// `buffered` durability acknowledges commits written but not synced. A failed sync (at a
/// roll) drops them from writeback, as Linux does and `FaultIo` models, so a heal that only
/// synced again would lose them in a crash; the heal writes them again before its sync.
#[test]
fn a_buffered_log_keeps_what_it_acknowledged_across_a_failed_sync_and_a_heal() {
    let fs = fsyncgate();
    let config = LogConfig {
        durability: Durability::Buffered,
        ..unsealed(small_config("/data"))
    };
    let engine = open_fault(&fs, &config).unwrap();
    let log = test_log(&engine);
    let mut r = rng(5);
    let mut acknowledged = Vec::new();
    fs.fail_syncs_after_ops(0);
    let failure = append_until_failure(&log, &mut r, 0..1000, &mut acknowledged).unwrap();
    assert!(
        matches!(
            failure,
            Error::Io {
                op: "fdatasync",
                ..
            }
        ),
        "the roll's sync fails: {failure}"
    );
    assert!(
        acknowledged.len() > 3,
        "commits were acknowledged before the roll"
    );
    fs.heal();
    log.heal().unwrap().unwrap();
    assert_holds_exactly(&log, &acknowledged, "healed");
    drop(log);
    drop(engine);
    let engine = open_fault(&fs.crash_with(CrashMode::DropUnsynced), &config).unwrap();
    let log = engine.tenant(TENANT).unwrap().event_log().unwrap();
    assert_holds_exactly(&log, &acknowledged, "after a crash");
}

/// A real ENOSPC from the kernel, on both real backends: a 256 KiB tmpfs filled by commits,
/// healed in place once it is remounted larger.
#[test]
fn a_real_full_tmpfs_heals_in_place_once_it_has_room() {
    let Some((mount, _unmount)) = mount_tmpfs("256k", "annals-heal") else {
        return;
    };
    let point = mount.path().display().to_string();
    let remount = |size: &str| {
        let status = std::process::Command::new("mount")
            .args(["-o", &format!("remount,size={size}"), &point])
            .status()
            .unwrap();
        assert!(status.success(), "remount to {size}");
    };
    for io in real_backends() {
        let data = mount.path().join(io.name());
        let config = unsealed(small_config(&data));
        let mut r = rng(1);
        let mut acknowledged = Vec::new();
        {
            let engine = LogStore::open_with_io(config.clone(), Arc::clone(&io)).unwrap();
            let log = test_log(&engine);
            let failure =
                append_until_failure(&log, &mut r, 0..100_000, &mut acknowledged).unwrap();
            eprintln!(
                "{}: full after {} commits: {failure}",
                io.name(),
                acknowledged.len()
            );
            assert!(log.heal().is_err(), "{}: healed on a full disk", io.name());
            remount("4m");
            let healed = log.heal().unwrap().unwrap();
            eprintln!("{}: healed: {healed:?}", io.name());
            assert!(
                append_until_failure(&log, &mut r, 200_000..200_050, &mut acknowledged).is_none()
            );
            assert_holds_exactly(&log, &acknowledged, io.name());
        }
        let engine = LogStore::open_with_io(config, Arc::clone(&io)).unwrap();
        let log = engine.tenant(TENANT).unwrap().event_log().unwrap();
        assert_holds_exactly(&log, &acknowledged, io.name());
        drop(log);
        drop(engine);
        std::fs::remove_dir_all(&data).unwrap();
        remount("256k");
    }
}
