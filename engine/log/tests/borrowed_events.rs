//! `Log::append_events` and `Log::append_events_async`: a commit of borrowed events (what a
//! commit for an aggregate appends without copying its events) writes exactly the records the
//! same commit, owned, writes with `append`, shares groups with owned appends, and is refused
//! whole by the same limits.

#![allow(
    clippy::unwrap_used,
    reason = "test helpers fail loudly on the first unexpected error; `expect` would break as helpers move"
)]

mod common;

use std::sync::Arc;

use annals_log::{uuid::Uuid, AppliedByAggregate, Commit, EventRef, LogStore, StdIo};
use common::*;

/// The commit's events, borrowed, as applied by an aggregate from version `first_version`.
fn lend(commit: &Commit, first_version: u64) -> Vec<EventRef<'_>> {
    commit
        .events
        .iter()
        .zip(first_version..)
        .map(|(event, version)| EventRef {
            aggregate: Some(AppliedByAggregate {
                root_id: Uuid::from_u128(0xa66),
                version,
            }),
            ..EventRef::from(event)
        })
        .collect()
}

/// The owned commit that `lend(commit, first_version)` stands for.
fn owned(commit: &Commit, first_version: u64) -> Commit {
    let mut owned = commit.clone();
    for (event, version) in owned.events.iter_mut().zip(first_version..) {
        event.aggregate = Some(AppliedByAggregate {
            root_id: Uuid::from_u128(0xa66),
            version,
        });
    }
    owned
}

#[test]
fn borrowed_events_are_written_as_the_same_commit_owned() {
    let dir = tempfile::tempdir().unwrap();
    let config = small_config(dir.path());
    let mut r = rng(3);
    let commits: Vec<Commit> = (0..60u64)
        .map(|t| {
            let mut c = commit(&mut r, t, 1 + (t as usize % 4));
            c.execution_context.span_id = (t % 2 == 0).then_some([t as u8; 8]);
            c.execution_context.claims = vec![annals_log::Claim {
                key: format!("k{t}"),
                value: "v".into(),
                value_type: "t".into(),
            }];
            c
        })
        .collect();
    {
        let store = LogStore::open_with_io(config.clone(), Arc::new(StdIo)).unwrap();
        let log = test_log(&store);
        // Borrowed blocking, borrowed async and owned appends from several threads at once,
        // so they share groups.
        std::thread::scope(|s| {
            for lane in 0..3usize {
                let (log, commits) = (&log, &commits);
                s.spawn(move || {
                    for (t, c) in commits.iter().enumerate().filter(|(t, _)| t % 3 == lane) {
                        let receipt = match lane {
                            0 => log
                                .append_events(c.occurred_ns, &c.execution_context, &lend(c, 5))
                                .unwrap(),
                            1 => block_on(log.append_events_async(
                                c.occurred_ns,
                                &c.execution_context,
                                &lend(c, 5),
                            ))
                            .unwrap(),
                            _ => log.append(&owned(c, 5)).unwrap(),
                        };
                        assert_eq!(receipt.count, c.events.len() as u64, "commit {t}");
                    }
                });
            }
        });
    }
    // Read back after a reopen, so the records come from disk through recovery.
    let store = LogStore::open_with_io(config, Arc::new(StdIo)).unwrap();
    let log = test_log(&store);
    let events = read_all(&log);
    let total: usize = commits.iter().map(|c| c.events.len()).sum();
    assert_eq!(events.len(), total);
    // Each commit's events lie together, in order, whichever way it was appended.
    let mut at = 0;
    while at < events.len() {
        let tag = events[at].occurred_ns - 1_700_000_000_000_000_000;
        let c = owned(&commits[usize::try_from(tag).unwrap()], 5);
        for (i, expected) in c.events.iter().enumerate() {
            let event = &events[at + i];
            assert_event_matches(event, &c, i);
            assert_eq!(event.aggregate, expected.aggregate);
            assert_eq!(event.event_type, expected.event_type);
            assert_eq!(event.event_horizon, None);
        }
        at += c.events.len();
    }
}

#[test]
fn borrowed_events_are_refused_by_the_same_limits_and_write_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let store = open_limited(dir.path());
    let log = test_log(&store);
    let mut r = rng(9);
    let c = commit(&mut r, 1, 2);
    let m = invalid_request(
        log.append_events(c.occurred_ns, &c.execution_context, &[]),
        "no events",
    );
    assert!(m.contains("at least one event"), "{m}");
    let m = invalid_request(
        block_on(log.append_events_async(c.occurred_ns, &c.execution_context, &[])),
        "no events, async",
    );
    assert!(m.contains("at least one event"), "{m}");

    let big = "z".repeat(1100);
    let mut events = lend(&c, 0);
    events[1].content = &big;
    let m = invalid_request(
        log.append_events(c.occurred_ns, &c.execution_context, &events),
        "record over the limit",
    );
    assert!(m.contains("event 1") && m.contains("record limit"), "{m}");

    let mut many = commit(&mut r, 2, 8);
    for event in &mut many.events {
        event.content = format!(r#""{}""#, "y".repeat(600));
    }
    let m = invalid_request(
        block_on(log.append_events_async(
            many.occurred_ns,
            &many.execution_context,
            &lend(&many, 0),
        )),
        "commit over the limit",
    );
    assert!(m.contains("commit limit"), "{m}");

    assert_eq!(log.next_sequence_number().0, 0, "a refused commit wrote");
    let receipt = log
        .append_events(c.occurred_ns, &c.execution_context, &lend(&c, 0))
        .unwrap();
    assert_eq!((receipt.first.0, receipt.count), (0, 2));
}
