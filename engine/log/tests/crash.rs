//! Crash tests through the fault-injecting file system: for every mutating I/O operation of a
//! workload (appends that roll segments and seals), the disk "dies" at that operation and the
//! machine crashes, with unsynced bytes dropped, torn, or landed out of order with a hole.
//! Reopening must then succeed and show:
//! every acknowledged commit, every present commit whole, sequence numbers gapless from 0.
//! Covers crash mid-write, mid-commit, mid-roll (into a new file, into zeros and into a recycled
//! file) and mid-seal (and the recycling of the sealed-away file).

#![allow(
    clippy::unwrap_used,
    reason = "test helpers fail loudly on the first unexpected error; `expect` would break as helpers move"
)]

mod common;

use std::{
    collections::HashMap,
    sync::{atomic::Ordering, Arc},
};

use annals_log::{
    testing::{CrashMode, FaultIo},
    Commit, LogConfig,
};
use common::*;

struct Outcome {
    acknowledged: Vec<(Arc<Commit>, u64)>, // commit and its first sequence number
    attempted: Vec<Arc<Commit>>,
    /// Rolls whose new segment was a spare.
    spare_rolls: u64,
    /// Of those, rolls into the file of a sealed-away segment.
    recycled_rolls: u64,
}

/// Appends `commits` one by one (waiting for sealing after each when `seal_sync`), stopping at
/// the first failure, as a process would when its disk dies.
fn workload(fs: &FaultIo, config: &LogConfig, commits: &[Arc<Commit>], seal_sync: bool) -> Outcome {
    let mut out = Outcome {
        acknowledged: Vec::new(),
        attempted: Vec::new(),
        spare_rolls: 0,
        recycled_rolls: 0,
    };
    let Ok(engine) = open_fault(fs, config) else {
        return out;
    };
    let Ok(tenant) = engine.tenant_or_create(TENANT) else {
        return out;
    };
    let Ok(log) = tenant.event_log() else {
        return out;
    };
    for c in commits {
        out.attempted.push(Arc::clone(c));
        match log.append(c) {
            Ok(receipt) => out.acknowledged.push((Arc::clone(c), receipt.first.0)),
            Err(_) => break,
        }
        if seal_sync {
            engine.wait_for_sealing();
            engine.wait_for_spares();
        }
    }
    out.spare_rolls = log.stats().spare_rolls.load(Ordering::Relaxed);
    out.recycled_rolls = log.stats().recycled_rolls.load(Ordering::Relaxed);
    out
}

fn check_after_crash(fs: &FaultIo, config: &LogConfig, outcome: &Outcome, what: &str) {
    let engine = open_fault(fs, config).unwrap_or_else(|e| panic!("{what}: reopen failed: {e}"));
    let Ok(tenant) = engine.tenant(TENANT) else {
        assert!(
            outcome.acknowledged.is_empty(),
            "{what}: tenant lost with acknowledged commits"
        );
        return;
    };
    let log = tenant.event_log().unwrap();
    let events = read_all(&log);
    for (k, e) in events.iter().enumerate() {
        assert_eq!(
            e.sequence_number.0, k as u64,
            "{what}: gap in sequence numbers"
        );
    }
    // Group events by commit (the correlation id carries the commit's tag).
    let by_tag: HashMap<u128, &Arc<Commit>> = outcome
        .attempted
        .iter()
        .map(|c| (c.execution_context.correlation_id.as_u128(), c))
        .collect();
    let mut k = 0;
    while k < events.len() {
        let tag = events[k].execution_context.correlation_id.as_u128();
        let c = by_tag
            .get(&tag)
            .unwrap_or_else(|| panic!("{what}: event of an unknown commit"));
        assert!(
            k + c.events.len() <= events.len(),
            "{what}: commit {tag} torn at the end"
        );
        for i in 0..c.events.len() {
            assert_event_matches(&events[k + i], c, i);
        }
        k += c.events.len();
    }
    for (c, first) in &outcome.acknowledged {
        let first = *first as usize;
        assert!(
            first + c.events.len() <= events.len(),
            "{what}: acknowledged commit at {first} lost"
        );
        assert_event_matches(&events[first], c, 0);
    }
    // The log must accept appends again after recovery.
    let mut r = rng(1);
    log.append(&commit(&mut r, 999_999, 2))
        .unwrap_or_else(|e| panic!("{what}: append after recovery: {e}"));
    assert!(
        engine.wait_for_sealing().is_empty(),
        "{what}: sealing failed after recovery"
    );
}

/// `seal_sync`: wait for the sealer and the zeroer after each commit, else they run in the
/// background (or, with `sealing` false, not at all: every spare is then one of zeros).
fn crash_every_op(seal_sync: bool, sealing: bool) {
    let config = LogConfig {
        seal_enabled: sealing,
        ..small_config("/data")
    };
    let mut r = rng(seed_from_env(42));
    let commits: Vec<Arc<Commit>> = (0..40)
        .map(|t| Arc::new(commit(&mut r, t + 1, 1 + (t as usize % 7))))
        .collect();

    // A clean run counts the operations.
    let clean = FaultIo::new();
    let outcome = workload(&clean, &config, &commits, seal_sync);
    assert_eq!(outcome.acknowledged.len(), commits.len());
    if seal_sync {
        assert!(
            outcome.spare_rolls > 0,
            "the workload should roll into spares"
        );
        // With sealing, the files of sealed-away segments; without, zeros.
        assert_eq!(
            outcome.recycled_rolls > 0,
            sealing,
            "{} rolls into spares, {} of them recycled",
            outcome.spare_rolls,
            outcome.recycled_rolls
        );
    }
    let ops = clean.ops_count();
    assert!(
        ops > 100,
        "the workload should do many operations, did {ops}"
    );
    check_after_crash(&clean.crash(None), &config, &outcome, "clean run");

    for crash_at in 0..ops {
        for mode in [
            CrashMode::DropUnsynced,
            CrashMode::TornPrefix(crash_at * 7 + 1),
            CrashMode::Reordered(crash_at * 13 + 5),
        ] {
            let fs = FaultIo::new();
            fs.fail_after_ops(crash_at);
            let outcome = workload(&fs, &config, &commits, seal_sync);
            let what = format!("crash at op {crash_at}/{ops} {mode:?} seal_sync {seal_sync}");
            check_after_crash(&fs.crash_with(mode), &config, &outcome, &what);
        }
    }
}

#[test]
fn crash_at_every_operation_with_sealing_in_step() {
    crash_every_op(true, true);
}

#[test]
fn crash_at_every_operation_without_sealing() {
    crash_every_op(true, false);
}

#[test]
fn crash_at_every_operation_with_background_sealing() {
    crash_every_op(false, true);
}

#[test]
fn crash_mid_group_commit_of_concurrent_writers() {
    // Many threads commit at once; the disk dies at a random operation; whatever reopens must
    // hold every acknowledged commit whole.
    for crash_at in [3u64, 10, 25, 60, 120] {
        let config = small_config("/data");
        let fs = FaultIo::new();
        let engine = open_fault(&fs, &config).unwrap();
        let log = test_log(&engine);
        fs.fail_after_ops(crash_at);
        let acknowledged = std::sync::Mutex::new(Vec::new());
        let attempted = std::sync::Mutex::new(Vec::new());
        std::thread::scope(|s| {
            for w in 0..8u64 {
                let log = &log;
                let acknowledged = &acknowledged;
                let attempted = &attempted;
                s.spawn(move || {
                    let mut r = rng(w);
                    for i in 0..20u64 {
                        let c = Arc::new(commit(&mut r, w * 1000 + i + 1, 1 + (i as usize % 4)));
                        attempted.lock().unwrap().push(Arc::clone(&c));
                        match log.append(&c) {
                            Ok(receipt) => acknowledged.lock().unwrap().push((c, receipt.first.0)),
                            Err(_) => break,
                        }
                    }
                });
            }
        });
        drop(log);
        drop(engine);
        let outcome = Outcome {
            acknowledged: acknowledged.into_inner().unwrap(),
            attempted: attempted.into_inner().unwrap(),
            spare_rolls: 0,
            recycled_rolls: 0,
        };
        check_after_crash(
            &fs.crash(Some(crash_at)),
            &config,
            &outcome,
            &format!("concurrent crash at {crash_at}"),
        );
    }
}
