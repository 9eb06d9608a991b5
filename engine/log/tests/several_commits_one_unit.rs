//! `Log::append_all`: several commits (each with its own execution context and occurred time, as
//! events received over the event horizon are) written as one atomic unit. Scenarios: every
//! record reads back with its own commit's context; limits apply to the whole unit and bad
//! units are refused; a crash at every I/O operation of a workload of units leaves each unit
//! whole or absent; a unit whose last bytes are torn disappears whole on recovery.

#![allow(
    clippy::unwrap_used,
    reason = "test helpers fail loudly on the first unexpected error; `expect` would break as helpers move"
)]

mod common;

use std::{collections::HashMap, fs, sync::Arc};

use annals_log::{
    testing::{CrashMode, FaultIo},
    uuid::Uuid,
    Commit, Event, LogConfig, LogStore, StdIo,
};
use bytesize::ByteSize;
use common::*;

/// A unit of `commits` commits, tags `tag * 100 + k`, each with its own microservice, claims
/// and occurred time, of 1 to 3 events.
fn unit(r: &mut rand::rngs::SmallRng, tag: u64, commits: usize) -> Vec<Commit> {
    (0..commits)
        .map(|k| {
            let t = tag * 100 + k as u64;
            let mut c = commit(r, t, 1 + (t as usize % 3));
            c.execution_context.microservice_id = Uuid::from_u128(0x1000 + u128::from(t));
            c.execution_context.claims = vec![annals_log::Claim {
                key: format!("producer-{t}"),
                value: "v".into(),
                value_type: "t".into(),
            }];
            c.execution_context.span_id = (k % 2 == 0).then_some([k as u8; 8]);
            c
        })
        .collect()
}

/// Checks that `events[at..]` begins with the events of `unit`, each with its own commit's
/// context; returns the index after them.
fn assert_unit_at(events: &[Event], at: usize, unit: &[Commit], what: &str) -> usize {
    let mut k = at;
    for c in unit {
        for i in 0..c.events.len() {
            assert!(k < events.len(), "{what}: unit torn at the end");
            assert_event_matches(&events[k], c, i);
            k += 1;
        }
    }
    k
}

#[test]
fn every_record_of_a_unit_reads_back_with_its_own_commits_context() {
    let dir = tempfile::tempdir().unwrap();
    let config = small_config(dir.path());
    let mut r = rng(11);
    let first = unit(&mut r, 1, 4);
    let second = unit(&mut r, 2, 1);
    {
        let store = LogStore::open_with_io(config.clone(), Arc::new(StdIo)).unwrap();
        let log = test_log(&store);
        let before = log.append(&commit(&mut r, 7, 2)).unwrap();
        let receipt = log.append_all(&first).unwrap();
        let count: usize = first.iter().map(|c| c.events.len()).sum();
        assert_eq!(receipt.first, before.next());
        assert_eq!(receipt.count, count as u64);
        // A one-commit unit is exactly `append`.
        let one = log.append_all(&second).unwrap();
        assert_eq!(one.first, receipt.next());
        assert_eq!(
            log.stats()
                .commits
                .load(std::sync::atomic::Ordering::Relaxed),
            3
        );
    }
    // Read back after a reopen, so the records come from disk through recovery.
    let store = LogStore::open_with_io(config, Arc::new(StdIo)).unwrap();
    let log = test_log(&store);
    let events = read_all(&log);
    let at = assert_unit_at(&events, 2, &first, "first unit");
    let end = assert_unit_at(&events, at, &second, "second unit");
    assert_eq!(end, events.len());
    // The contexts really differ between the records of one unit.
    assert_ne!(
        events[2].execution_context,
        events[at - 1].execution_context
    );
}

#[test]
fn limits_apply_to_the_whole_unit_and_bad_units_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let store = open_limited(dir.path());
    let log = test_log(&store);
    let mut r = rng(5);

    invalid_request(log.append_all(&[]), "empty unit");
    let mut with_empty = unit(&mut r, 1, 3);
    with_empty[1].events.clear();
    let m = invalid_request(log.append_all(&with_empty), "empty commit");
    assert!(m.contains("commit 1"), "{m}");

    // Each commit alone is within the commit limit; together they are not.
    let small: Vec<Commit> = (0..8u64)
        .map(|t| {
            let mut c = commit(&mut r, t, 1);
            c.events[0].content = format!(r#""{}""#, "y".repeat(600));
            c
        })
        .collect();
    for c in &small {
        assert!(log.append_all(std::slice::from_ref(c)).is_ok());
    }
    let m = invalid_request(log.append_all(&small), "unit over the commit limit");
    assert!(m.contains("commit limit"), "{m}");

    // One record over the record limit fails the whole unit, naming it.
    let mut big = unit(&mut r, 2, 2);
    big[1].events[0].content = format!(r#""{}""#, "z".repeat(2000));
    let m = invalid_request(log.append_all(&big), "record over the limit");
    assert!(m.contains("event 0 of commit 1"), "{m}");

    // Nothing of a refused unit was written.
    assert_eq!(read_all(&log).len(), small.len());
}

/// Appends the units one by one, stopping at the first failure; returns those acknowledged
/// (with their first sequence number) and those attempted.
fn workload(fs: &FaultIo, config: &LogConfig, units: &[Vec<Commit>]) -> (Vec<(usize, u64)>, usize) {
    let mut acknowledged = Vec::new();
    let mut attempted = 0;
    let Ok(store) = open_fault(fs, config) else {
        return (acknowledged, attempted);
    };
    let Ok(tenant) = store.tenant_or_create(TENANT) else {
        return (acknowledged, attempted);
    };
    let Ok(log) = tenant.event_log() else {
        return (acknowledged, attempted);
    };
    for (u, commits) in units.iter().enumerate() {
        attempted += 1;
        match log.append_all(commits) {
            Ok(receipt) => acknowledged.push((u, receipt.first.0)),
            Err(_) => break,
        }
    }
    (acknowledged, attempted)
}

#[test]
fn a_crash_at_every_operation_leaves_each_unit_whole_or_absent() {
    let config = small_config("/data");
    let mut r = rng(seed_from_env(23));
    // Units of 1 to 5 commits; the small segments make several of them roll.
    let units: Vec<Vec<Commit>> = (0..24u64)
        .map(|t| unit(&mut r, t + 1, 1 + (t as usize % 5)))
        .collect();
    // Each unit is identified by the correlation id of its first commit.
    let by_tag: HashMap<u128, usize> = units
        .iter()
        .enumerate()
        .map(|(u, c)| (c[0].execution_context.correlation_id.as_u128(), u))
        .collect();

    let clean = FaultIo::new();
    let (acknowledged, _) = workload(&clean, &config, &units);
    assert_eq!(acknowledged.len(), units.len());
    let ops = clean.ops_count();
    assert!(
        ops > 30,
        "the workload should do many operations, did {ops}"
    );

    for crash_at in 0..ops {
        for mode in [
            CrashMode::DropUnsynced,
            CrashMode::TornPrefix(crash_at * 7 + 1),
            CrashMode::Reordered(crash_at * 13 + 5),
        ] {
            let fs = FaultIo::new();
            fs.fail_after_ops(crash_at);
            let (acknowledged, attempted) = workload(&fs, &config, &units);
            let what = format!("crash at op {crash_at}/{ops} {mode:?}");
            let crashed = fs.crash_with(mode);
            let store = open_fault(&crashed, &config)
                .unwrap_or_else(|e| panic!("{what}: reopen failed: {e}"));
            let Ok(tenant) = store.tenant(TENANT) else {
                assert!(acknowledged.is_empty(), "{what}: tenant lost");
                continue;
            };
            let log = tenant.event_log().unwrap();
            let events = read_all(&log);
            // The log is a sequence of whole units, in the order they were attempted.
            let mut k = 0;
            let mut present = 0;
            while k < events.len() {
                let tag = events[k].execution_context.correlation_id.as_u128();
                let u = *by_tag
                    .get(&tag)
                    .unwrap_or_else(|| panic!("{what}: event {k} does not start a unit"));
                assert_eq!(u, present, "{what}: units out of order");
                assert!(u < attempted, "{what}: a unit never attempted");
                k = assert_unit_at(&events, k, &units[u], &what);
                present += 1;
            }
            for (u, first) in &acknowledged {
                assert!(
                    *u < present,
                    "{what}: acknowledged unit {u} at {first} lost"
                );
            }
            // The log takes appends again.
            log.append_all(&unit(&mut rng(1), 999, 2))
                .unwrap_or_else(|e| panic!("{what}: append after recovery: {e}"));
        }
    }
}

#[test]
fn a_torn_unit_disappears_whole_on_recovery() {
    let dir = tempfile::tempdir().unwrap();
    // Large segments: everything stays in one active segment.
    let config = LogConfig {
        segment_bytes_max: ByteSize::mib(1),
        ..small_config(dir.path())
    };
    let mut r = rng(3);
    let kept = unit(&mut r, 1, 3);
    let torn = unit(&mut r, 2, 4);
    let torn_count: usize = torn.iter().map(|c| c.events.len()).sum();
    let kept_count = {
        let store = LogStore::open_with_io(config.clone(), Arc::new(StdIo)).unwrap();
        let log = test_log(&store);
        let receipt = log.append_all(&kept).unwrap();
        log.append_all(&torn).unwrap();
        receipt.count as usize
    };
    // The last write lost its last bytes: only the unit's last record fails, and its
    // first commits are intact frames, but the unit goes whole.
    let active = active_segment(dir.path());
    let mut bytes = fs::read(&active).unwrap();
    let end = data_end(&bytes);
    bytes[end - 10..end].fill(0);
    fs::write(&active, &bytes).unwrap();

    let store = LogStore::open_with_io(config, Arc::new(StdIo)).unwrap();
    let log = test_log(&store);
    let events = read_all(&log);
    assert_eq!(events.len(), kept_count, "exactly the torn unit is dropped");
    assert_eq!(assert_unit_at(&events, 0, &kept, "kept unit"), kept_count);
    assert_eq!(
        log.recovery_report().dropped_records as usize,
        torn_count - 1,
        "every intact record of the torn unit is dropped with it"
    );
    let receipt = log.append_all(&torn).unwrap();
    assert_eq!(receipt.first.0, kept_count as u64);
}
