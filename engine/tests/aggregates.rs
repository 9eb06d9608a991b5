//! Commits for aggregates: versions, conflicts, fetches, and concurrency.

#![allow(
    clippy::unwrap_used,
    reason = "test helpers fail loudly on the first unexpected error; `expect` would break as helpers move"
)]

mod common;

use std::sync::{
    atomic::{AtomicU64, Ordering},
    Arc,
};

use annals_engine::{uuid::Uuid, Commit, Error, LogError, UncommittedEvent};
use common::*;

#[test]
fn versions_conflicts_and_fetch() {
    let dir = tempfile::tempdir().unwrap();
    let engine = open(dir.path());
    let tenant = engine.tenant_or_create(TENANT).unwrap();
    let root = Uuid::from_u128(10);

    let first = tenant
        .commit_for_aggregate(&aggregate_commit(
            root,
            "a",
            0,
            &[(1, "{\"n\":0}"), (2, "{\"n\":1}")],
        ))
        .unwrap();
    assert_eq!((first.version_before, first.current_version()), (0, 2));
    // A plain event between the aggregate's commits.
    tenant
        .commit(&Commit {
            events: vec![UncommittedEvent {
                event_source_id: "a".into(),
                content: "{}".into(),
                ..Default::default()
            }],
            ..Default::default()
        })
        .unwrap();

    let log_end = tenant.event_log().unwrap().next_sequence_number();
    let err = tenant
        .commit_for_aggregate(&aggregate_commit(root, "a", 1, &[(1, "{}")]))
        .unwrap_err();
    assert!(
        matches!(
            err,
            Error::WrongExpectedVersion {
                expected: 1,
                actual: 2
            }
        ),
        "{err}"
    );
    assert_eq!(
        tenant.event_log().unwrap().next_sequence_number(),
        log_end,
        "a conflict writes nothing"
    );

    tenant
        .commit_for_aggregate(&aggregate_commit(root, "a", 2, &[(1, "{\"n\":2}")]))
        .unwrap();
    let fetched = tenant.fetch_for_aggregate(root, "a", &[]).unwrap();
    assert_eq!(fetched.current_version, 3);
    let versions: Vec<_> = fetched
        .events
        .iter()
        .map(|e| e.aggregate.unwrap().version)
        .collect();
    assert_eq!(versions, [0, 1, 2]);
    let contents: Vec<_> = fetched.events.iter().map(|e| e.content.as_str()).collect();
    assert_eq!(contents, ["{\"n\":0}", "{\"n\":1}", "{\"n\":2}"]);
    assert_eq!(
        fetched
            .events
            .iter()
            .map(|e| e.sequence_number.0)
            .collect::<Vec<_>>(),
        [0, 1, 3]
    );

    // Only type 1.
    let only = tenant
        .fetch_for_aggregate(root, "a", &[Uuid::from_u128(1)])
        .unwrap();
    assert_eq!(
        only.events
            .iter()
            .map(|e| e.aggregate.unwrap().version)
            .collect::<Vec<_>>(),
        [0, 2]
    );
    assert_eq!(only.current_version, 3);

    // Another root with the same event source id, and an unknown aggregate.
    assert_eq!(
        tenant
            .fetch_for_aggregate(Uuid::from_u128(11), "a", &[])
            .unwrap()
            .events
            .len(),
        0
    );
    assert_eq!(
        tenant.aggregate_version(Uuid::from_u128(11), "a").unwrap(),
        0
    );
    assert_eq!(tenant.aggregate_version(root, "a").unwrap(), 3);
}

#[test]
fn bad_commits_are_refused_and_write_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let engine = open(dir.path());
    let tenant = engine.tenant_or_create(TENANT).unwrap();
    let root = Uuid::from_u128(10);
    assert!(matches!(
        tenant.commit_for_aggregate(&aggregate_commit(root, "a", 0, &[])),
        Err(Error::Log(LogError::InvalidRequest(_)))
    ));
    assert!(matches!(
        tenant.commit_for_aggregate(&aggregate_commit(root, "a", u64::MAX, &[(1, "{}")])),
        Err(Error::Log(LogError::InvalidRequest(_)) | Error::WrongExpectedVersion { .. })
    ));
    let mut sneaky = Commit::default();
    sneaky.events.push(UncommittedEvent {
        aggregate: Some(annals_engine::AppliedByAggregate {
            root_id: root,
            version: 0,
        }),
        ..Default::default()
    });
    assert!(matches!(
        tenant.commit(&sneaky),
        Err(Error::Log(LogError::InvalidRequest(_)))
    ));
    assert!(matches!(
        tenant.commit(&Commit::default()),
        Err(Error::Log(LogError::InvalidRequest(_)))
    ));
    assert_eq!(tenant.event_log().unwrap().next_sequence_number().0, 0);
    assert_eq!(tenant.aggregate_version(root, "a").unwrap(), 0);
}

#[test]
fn batches_are_bounded_and_add_up_to_the_whole() {
    let dir = tempfile::tempdir().unwrap();
    let engine = open(dir.path());
    let tenant = engine.tenant_or_create(TENANT).unwrap();
    let root = Uuid::from_u128(10);
    let body = format!("{{\"pad\":\"{}\"}}", "x".repeat(300));
    let mut version = 0;
    for i in 0..60u64 {
        // Interleave another aggregate so the events are not contiguous in the log.
        tenant
            .commit_for_aggregate(&aggregate_commit(root, "other", i, &[(3, "{}")]))
            .unwrap();
        let events: Vec<(u128, &str)> = (0..=(i % 4)).map(|_| (1, body.as_str())).collect();
        tenant
            .commit_for_aggregate(&aggregate_commit(root, "a", version, &events))
            .unwrap();
        version += events.len() as u64;
    }
    assert!(
        tenant.event_log().unwrap().segments().len() > 2,
        "spans sealed segments"
    );
    engine.wait_for_sealing();
    let whole = tenant.fetch_for_aggregate(root, "a", &[]).unwrap();
    assert_eq!(whole.events.len() as u64, version);

    let budget = 2000;
    let batches: Vec<_> = tenant
        .fetch_for_aggregate_in_batches(root, "a", &[], budget)
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    assert!(batches.len() > 10, "{} batches", batches.len());
    for batch in &batches {
        assert!(!batch.is_empty());
        // Never past the budget (the content alone is less than what the budget counts),
        // unless one event is too big on its own.
        let sizes: usize = batch.iter().map(|e| e.content.len()).sum();
        assert!(
            batch.len() == 1 || sizes <= budget,
            "batch of {} events, {sizes} bytes of content",
            batch.len()
        );
    }
    // An event bigger than the budget goes alone, and the events around it in batches of
    // their own.
    let big = format!("{{\"pad\":\"{}\"}}", "y".repeat(5000));
    tenant
        .commit_for_aggregate(&aggregate_commit(
            root,
            "b",
            0,
            &[(1, "{}"), (1, big.as_str()), (1, "{}")],
        ))
        .unwrap();
    let sizes: Vec<usize> = tenant
        .fetch_for_aggregate_in_batches(root, "b", &[], budget)
        .unwrap()
        .map(|b| b.unwrap().len())
        .collect();
    assert_eq!(sizes, [1, 1, 1]);
    let joined: Vec<_> = batches.into_iter().flatten().collect();
    assert_eq!(joined, whole.events);
}

#[test]
fn fetch_sees_every_acknowledged_commit_even_while_the_indexer_is_held() {
    let dir = tempfile::tempdir().unwrap();
    let engine = open(dir.path());
    let tenant = engine.tenant_or_create(TENANT).unwrap();
    let root = Uuid::from_u128(10);
    annals_engine::testing::hold_indexer(&engine);
    for v in 0..5 {
        tenant
            .commit_for_aggregate(&aggregate_commit(root, "a", v, &[(1, "{}")]))
            .unwrap();
    }
    // Versions come from the pending commits while the index lags.
    assert_eq!(tenant.aggregate_version(root, "a").unwrap(), 5);
    assert!(matches!(
        tenant.commit_for_aggregate(&aggregate_commit(root, "a", 4, &[(1, "{}")])),
        Err(Error::WrongExpectedVersion {
            expected: 4,
            actual: 5
        })
    ));
    // The fetch that does not wait declines while the index lags, and reads nothing.
    assert!(tenant
        .try_fetch_for_aggregate(root, "a", &[], 100)
        .is_none());
    let engine = Arc::new(engine);
    let fetcher = {
        let tenant = Arc::clone(&tenant);
        std::thread::spawn(move || tenant.fetch_for_aggregate(root, "a", &[]).unwrap())
    };
    std::thread::sleep(std::time::Duration::from_millis(50));
    annals_engine::testing::release_indexer(&engine);
    let fetched = fetcher.join().unwrap();
    assert_eq!(fetched.current_version, 5);
    assert_eq!(fetched.events.len(), 5);
    // Once the index covers the log it answers as the waiting fetch does, up to its bound.
    let now = tenant
        .try_fetch_for_aggregate(root, "a", &[], 5)
        .expect("the index covers every acknowledged commit")
        .unwrap();
    assert_eq!(now, fetched);
    assert!(tenant.try_fetch_for_aggregate(root, "a", &[], 4).is_none());
    let none = tenant
        .try_fetch_for_aggregate(root, "never-committed", &[], 0)
        .expect("nothing to wait for")
        .unwrap();
    assert_eq!((none.current_version, none.events.len()), (0, 0));
}

/// Many writers race on a few aggregates, each reading the version and committing at it:
/// every success must land at the version it expected (no lost update), every failure must
/// report the real version, and the aggregates end with gapless versions.
#[test]
fn racing_writers_never_lose_an_update() {
    let dir = tempfile::tempdir().unwrap();
    let engine = open(dir.path());
    let tenant = engine.tenant_or_create(TENANT).unwrap();
    let root = Uuid::from_u128(10);
    let sources = ["a", "b", "c"];
    let successes = Arc::new(AtomicU64::new(0));
    let conflicts = Arc::new(AtomicU64::new(0));
    let writers: Vec<_> = (0..12)
        .map(|w| {
            let (tenant, successes, conflicts) = (
                Arc::clone(&tenant),
                Arc::clone(&successes),
                Arc::clone(&conflicts),
            );
            std::thread::spawn(move || {
                for i in 0..60 {
                    let source = sources[(w + i) % sources.len()];
                    let expected = tenant.aggregate_version(root, source).unwrap();
                    let content = format!("{{\"w\":{w},\"i\":{i}}}");
                    match tenant.commit_for_aggregate(&aggregate_commit(
                        root,
                        source,
                        expected,
                        &[(1, &content), (2, &content)],
                    )) {
                        Ok(receipt) => {
                            assert_eq!(receipt.version_before, expected);
                            successes.fetch_add(1, Ordering::Relaxed);
                        }
                        Err(Error::WrongExpectedVersion {
                            expected: e,
                            actual,
                        }) => {
                            assert_eq!(e, expected);
                            assert!(actual > expected, "{actual} <= {expected}");
                            conflicts.fetch_add(1, Ordering::Relaxed);
                        }
                        Err(e) => panic!("{e}"),
                    }
                }
            })
        })
        .collect();
    for w in writers {
        w.join().unwrap();
    }
    let mut total = 0;
    for source in sources {
        let fetched = fetch_whole(&tenant, root, source);
        // Both events of a commit are adjacent in version and in the log.
        for pair in fetched.events.chunks(2) {
            assert_eq!(pair[0].content, pair[1].content);
            assert_eq!(pair[0].sequence_number.0 + 1, pair[1].sequence_number.0);
        }
        total += fetched.current_version;
    }
    assert_eq!(total, successes.load(Ordering::Relaxed) * 2);
    assert_eq!(
        successes.load(Ordering::Relaxed) + conflicts.load(Ordering::Relaxed),
        12 * 60
    );
}

/// Commits to different aggregates are not serialised by the aggregate locks: with the
/// default durability they share fdatasyncs.
#[test]
fn different_aggregates_share_group_commits() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = config(dir.path());
    config.log.durability = annals_engine::Durability::SyncData;
    let engine = annals_engine::Engine::open(config).unwrap();
    let tenant = engine.tenant_or_create(TENANT).unwrap();
    let writers: Vec<_> = (0..16u128)
        .map(|w| {
            let tenant = Arc::clone(&tenant);
            std::thread::spawn(move || {
                for v in 0..40 {
                    tenant
                        .commit_for_aggregate(&aggregate_commit(
                            Uuid::from_u128(w),
                            "x",
                            v,
                            &[(1, "{}")],
                        ))
                        .unwrap();
                }
            })
        })
        .collect();
    for w in writers {
        w.join().unwrap();
    }
    let log = tenant.event_log().unwrap();
    let stats = log.stats();
    let (commits, syncs) = (
        stats.commits.load(Ordering::Relaxed),
        stats.data_syncs.load(Ordering::Relaxed),
    );
    assert_eq!(commits, 16 * 40);
    assert!(syncs < commits, "{syncs} fdatasyncs for {commits} commits");
}

#[test]
fn instances_are_walked_in_pages_in_the_order_of_the_whole_list() {
    let dir = tempfile::tempdir().unwrap();
    let engine = open(dir.path());
    let tenant = engine.tenant_or_create(TENANT).unwrap();
    // Event sources that are prefixes of each other, and two roots.
    for (root, source, events) in [
        (2, "ab", 1),
        (1, "a", 2),
        (1, "ab", 1),
        (2, "a", 3),
        (1, "b", 1),
    ] {
        let contents: Vec<(u128, &str)> = (0..events).map(|_| (1, "{}")).collect();
        tenant
            .commit_for_aggregate(&aggregate_commit(
                Uuid::from_u128(root),
                source,
                0,
                &contents,
            ))
            .unwrap();
    }
    let whole = tenant.aggregate_instances(None).unwrap();
    assert_eq!(whole.len(), 5);
    for page_size in 1..=6 {
        let mut walked = Vec::new();
        loop {
            let after = walked
                .last()
                .map(|(root, source, _): &(Uuid, String, u64)| (*root, source.as_str()));
            let page = tenant.aggregate_instances_after(after, page_size).unwrap();
            assert!(page.len() <= page_size);
            if page.is_empty() {
                break;
            }
            walked.extend(page);
        }
        assert_eq!(walked, whole, "pages of {page_size}");
    }
}

/// Versions as of a log position: what an export cut there holds.
#[test]
fn versions_as_of_a_position_count_the_events_below_it() {
    let dir = tempfile::tempdir().unwrap();
    let engine = open(dir.path());
    let tenant = engine.create_tenant(TENANT).unwrap();
    let root = Uuid::from_u128(0xab);
    // a at 0, 2, 3, 6; b at 1, 5; a plain event at 4.
    let mut versions = (0u64, 0u64);
    for (seq, who) in ["a", "b", "a", "a", "-", "b", "a"].iter().enumerate() {
        let version = match *who {
            "a" => &mut versions.0,
            "b" => &mut versions.1,
            _ => {
                tenant
                    .commit(&Commit {
                        events: vec![UncommittedEvent {
                            event_type: event_type(1),
                            content: "{}".into(),
                            ..UncommittedEvent::default()
                        }],
                        ..Commit::default()
                    })
                    .unwrap();
                continue;
            }
        };
        let receipt = tenant
            .commit_for_aggregate(&aggregate_commit(root, who, *version, &[(1, "{}")]))
            .unwrap();
        assert_eq!(receipt.first.value(), seq as u64);
        *version += 1;
    }
    let at = |end: u64| {
        tenant
            .aggregate_instances_at(annals_engine::EventLogSequenceNumber(end), None, 10)
            .unwrap()
            .into_iter()
            .map(|(_, source, version)| (source, version))
            .collect::<Vec<_>>()
    };
    let pair = |a: u64, b: u64| {
        [("a", a), ("b", b)]
            .into_iter()
            .filter(|(_, v)| *v > 0)
            .map(|(s, v)| (s.to_owned(), v))
            .collect::<Vec<_>>()
    };
    assert_eq!(at(0), pair(0, 0));
    assert_eq!(at(1), pair(1, 0));
    assert_eq!(at(2), pair(1, 1));
    assert_eq!(at(3), pair(2, 1));
    assert_eq!(at(4), pair(3, 1));
    assert_eq!(at(6), pair(3, 2));
    assert_eq!(at(7), pair(4, 2));
    assert_eq!(at(100), pair(4, 2));
    // Paged: one at a time, after the previous.
    let first = tenant
        .aggregate_instances_at(annals_engine::EventLogSequenceNumber(7), None, 1)
        .unwrap();
    assert_eq!(first.len(), 1);
    let rest = tenant
        .aggregate_instances_at(
            annals_engine::EventLogSequenceNumber(7),
            Some((first[0].0, first[0].1.as_str())),
            10,
        )
        .unwrap();
    assert_eq!(rest.iter().map(|r| r.1.as_str()).collect::<Vec<_>>(), ["b"]);
}

/// Fetches an aggregate and checks it is whole: every version from 0 to its current one.
fn fetch_whole(
    tenant: &annals_engine::Tenant,
    root: Uuid,
    source: &str,
) -> annals_engine::AggregateEvents {
    let fetched = tenant.fetch_for_aggregate(root, source, &[]).unwrap();
    let versions: Vec<u64> = fetched
        .events
        .iter()
        .map(|e| e.aggregate.unwrap().version)
        .collect();
    assert_eq!(versions, (0..fetched.current_version).collect::<Vec<_>>());
    fetched
}

/// An engine keeping at most `cached` aggregate versions in memory, and its test tenant.
fn open_keeping_versions(
    dir: &std::path::Path,
    cached: usize,
) -> (annals_engine::Engine, Arc<annals_engine::Tenant>) {
    let mut config = config(dir);
    config.index.aggregate_versions_cached = cached;
    let engine = annals_engine::Engine::open(config).unwrap();
    let tenant = engine.tenant_or_create(TENANT).unwrap();
    (engine, tenant)
}

/// The versions the commit path keeps in memory are trimmed at random past
/// `index.aggregate-versions-cached`: commits and fetches stay exact with a bound far below
/// the aggregates in use, and with none at all.
#[test]
fn versions_stay_exact_however_few_are_kept_in_memory() {
    for cached in [0, 4, 16_384] {
        let dir = tempfile::tempdir().unwrap();
        let (_engine, tenant) = open_keeping_versions(dir.path(), cached);
        let root = Uuid::from_u128(10);
        let sources: Vec<String> = (0..40).map(|i| format!("agg-{i}")).collect();
        for round in 0..4u64 {
            for source in &sources {
                let stale = tenant.commit_for_aggregate(&aggregate_commit(
                    root,
                    source,
                    round + 1,
                    &[(1, "{}")],
                ));
                assert!(
                    matches!(
                        stale,
                        Err(Error::WrongExpectedVersion { expected, actual })
                            if expected == round + 1 && actual == round
                    ),
                    "bound {cached}, round {round}, {source}: {stale:?}"
                );
                let receipt = tenant
                    .commit_for_aggregate(&aggregate_commit(root, source, round, &[(1, "{}")]))
                    .unwrap();
                assert_eq!(receipt.current_version(), round + 1);
            }
            // Lets the index pass the round's commits, so the next round trims.
            let fetched = tenant.fetch_for_aggregate(root, &sources[0], &[]).unwrap();
            assert_eq!(fetched.current_version, round + 1);
        }
        for source in &sources {
            assert_eq!(tenant.aggregate_version(root, source).unwrap(), 4);
            assert_eq!(
                tenant
                    .fetch_for_aggregate(root, source, &[])
                    .unwrap()
                    .events
                    .len(),
                4
            );
        }
    }
}

/// Writers on their own aggregates, with the index trailing them and the kept versions trimmed
/// under them all the while: every commit at the version the writer knows succeeds, so no
/// version the index does not hold yet is ever dropped.
#[test]
fn trimming_never_drops_a_version_the_index_lacks() {
    for cached in [0, 4] {
        let dir = tempfile::tempdir().unwrap();
        let (_engine, tenant) = open_keeping_versions(dir.path(), cached);
        let root = Uuid::from_u128(10);
        let writers: Vec<_> = (0..4)
            .map(|w| {
                let tenant = Arc::clone(&tenant);
                std::thread::spawn(move || {
                    for version in 0..150u64 {
                        for a in 0..10 {
                            let source = format!("w{w}-{a}");
                            tenant
                                .commit_for_aggregate(&aggregate_commit(
                                    root,
                                    &source,
                                    version,
                                    &[(1, "{}")],
                                ))
                                .unwrap_or_else(|e| panic!("bound {cached}, {source}: {e}"));
                        }
                    }
                })
            })
            .collect();
        for writer in writers {
            writer.join().unwrap();
        }
    }
}

/// A fetch racing commits to the same aggregate sees a whole aggregate every time: its version
/// and the events the index holds for it always agree, even when a commit lands between the
/// fetch's wait for the index and its read of the version.
#[test]
fn fetches_racing_commits_see_whole_aggregates() {
    let dir = tempfile::tempdir().unwrap();
    let engine = open(dir.path());
    let tenant = engine.tenant_or_create(TENANT).unwrap();
    let root = Uuid::from_u128(10);
    let done = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let fetchers: Vec<_> = (0..2)
        .map(|_| {
            let (tenant, done) = (Arc::clone(&tenant), Arc::clone(&done));
            std::thread::spawn(move || {
                let mut fetches = 0u64;
                while !done.load(Ordering::Acquire) {
                    fetch_whole(&tenant, root, "a");
                    fetches += 1;
                }
                fetches
            })
        })
        .collect();
    for version in 0..2000 {
        tenant
            .commit_for_aggregate(&aggregate_commit(root, "a", version, &[(1, "{}")]))
            .unwrap();
    }
    done.store(true, Ordering::Release);
    for fetcher in fetchers {
        assert!(fetcher.join().unwrap() > 0);
    }
}
