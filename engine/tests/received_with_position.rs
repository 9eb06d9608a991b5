//! Events received over the event horizon are stored in a scoped log together with their
//! subscription's position (`Tenant::commit_received`, the prepared-state protocol). Scenarios:
//! the position and the events land together; bad batches are refused and write nothing, and a
//! batch the log refuses is rolled back at once; a crash that loses the log append leaves the
//! previous state, reopening settles it, and a second subscription writing to the same scope
//! afterwards does not make the lost write look done; a batch whose fsync failed but whose bytes
//! stayed in the file keeps its state; a failed batch is healed while the engine runs (cut from
//! the log, its scope settled); a disk failure at every I/O operation of a workload, then
//! a crash or a plain reopen, keeps position and events in step; listing parses ids with odd
//! partitions; records as older versions wrote them read back as settled.

#![allow(
    clippy::unwrap_used,
    reason = "test helpers fail loudly on the first unexpected error; `expect` would break as helpers move"
)]

mod common;

use std::{path::Path, sync::Arc};

use annals_engine::{
    testing::{CrashMode, FaultIo},
    uuid::Uuid,
    Commit, Durability, Engine, EngineConfig, Error, Event, EventHorizonOrigin,
    EventLogSequenceNumber, EventType, ExecutionContext, LogError, ScopeId, StateBatch,
    StreamPosition, SubscriptionId, SubscriptionState, Tenant, UncommittedEvent,
};
use bytesize::ByteSize;
use common::*;

const SCOPE: ScopeId = ScopeId(Uuid::from_u128(0x5c0e));
const PRODUCER_TENANT: Uuid = Uuid::from_u128(0x9e7);

fn subscription(producer: u128, partition: &str) -> SubscriptionId {
    SubscriptionId {
        producer_microservice: Uuid::from_u128(producer),
        producer_tenant: PRODUCER_TENANT,
        scope: SCOPE.0,
        stream: Uuid::from_u128(0x57),
        partition: partition.into(),
    }
}

/// A commit of the producer `producer`'s events `first..first + n` as received: each commit its
/// own execution context and occurred time.
fn received_commit(producer: u128, first: u64, n: usize) -> Commit {
    Commit {
        occurred_ns: 1_600_000_000_000_000_000 + first.cast_signed(),
        execution_context: ExecutionContext {
            microservice_id: Uuid::from_u128(producer),
            tenant_id: PRODUCER_TENANT,
            correlation_id: Uuid::from_u128(u128::from(first) + 1),
            environment: "Production".into(),
            ..ExecutionContext::default()
        },
        events: (0..n as u64)
            .map(|i| UncommittedEvent {
                event_source_id: format!("source-{}", (first + i) % 3),
                event_type: EventType {
                    id: Uuid::from_u128(0xe7),
                    generation: 1,
                },
                public: false,
                content: format!(r#"{{"producer":{producer},"n":{}}}"#, first + i),
                aggregate: None,
                event_horizon: Some(EventHorizonOrigin {
                    external_sequence_number: first + i,
                    received_ns: 7,
                    consent_id: Uuid::nil(),
                }),
            })
            .collect(),
    }
}

/// The producer's events `from..` split into commits of `sizes`.
fn batch(producer: u128, from: u64, sizes: &[usize]) -> Vec<Commit> {
    let mut at = from;
    sizes
        .iter()
        .map(|n| {
            let c = received_commit(producer, at, *n);
            at += *n as u64;
            c
        })
        .collect()
}

fn state_at(position: u64) -> SubscriptionState {
    SubscriptionState {
        position: StreamPosition(position),
        last_successfully_processed_ns: position.cast_signed() * 10,
        failure: None,
        ..Default::default()
    }
}

/// Synced appends: these tests are about what survives a crash.
fn synced_config(dir: &Path) -> EngineConfig {
    let mut config = config(dir);
    config.log.durability = Durability::SyncData;
    config
}

fn read_scope(tenant: &Tenant) -> Vec<Event> {
    let log = tenant.scoped_log(SCOPE).unwrap();
    let mut out = Vec::new();
    let mut from = EventLogSequenceNumber(0);
    loop {
        let batch = log.read(from, 1000, 1 << 20).unwrap();
        if batch.is_empty() {
            return out;
        }
        from = batch.next().unwrap();
        out.extend(batch.events().unwrap());
    }
}

/// The producer events (producer, external sequence number) in the scoped log, in order.
fn origins(tenant: &Tenant) -> Vec<(Uuid, u64)> {
    read_scope(tenant)
        .iter()
        .map(|e| {
            (
                e.execution_context.microservice_id,
                e.event_horizon.unwrap().external_sequence_number,
            )
        })
        .collect()
}

fn expected_origins(producer: u128, range: std::ops::Range<u64>) -> Vec<(Uuid, u64)> {
    range.map(|n| (Uuid::from_u128(producer), n)).collect()
}

#[test]
fn the_position_and_the_events_land_together() {
    let dir = tempfile::tempdir().unwrap();
    let id = subscription(1, "");
    {
        let engine = Engine::open(synced_config(dir.path())).unwrap();
        let t = engine.create_tenant(TENANT).unwrap();
        // Created at position 0 before any event arrives.
        t.put_subscription_state(&id, &state_at(0)).unwrap();
        assert_eq!(t.subscription_state(&id).unwrap(), Some(state_at(0)));

        let first = batch(1, 0, &[2, 1, 3]);
        let receipt = t.commit_received(SCOPE, &id, &first, &state_at(6)).unwrap();
        assert_eq!((receipt.first.0, receipt.count), (0, 6));
        assert_eq!(t.subscription_state(&id).unwrap(), Some(state_at(6)));
        let receipt = t
            .commit_received(SCOPE, &id, &batch(1, 6, &[1]), &state_at(7))
            .unwrap();
        assert_eq!((receipt.first.0, receipt.count), (6, 1));

        // Each event keeps its own producer commit's context and occurred time.
        let events = read_scope(&t);
        assert_eq!(events.len(), 7);
        let mut k = 0;
        for c in &first {
            for e in &c.events {
                assert_eq!(events[k].execution_context, c.execution_context);
                assert_eq!(events[k].occurred_ns, c.occurred_ns);
                assert_eq!(events[k].event_horizon, e.event_horizon);
                assert_eq!(events[k].content, e.content);
                k += 1;
            }
        }
        // Nothing went to the event log.
        assert!(t.event_log().unwrap().next_sequence_number().0 == 0);
    }
    let engine = Engine::open(synced_config(dir.path())).unwrap();
    let t = engine.tenant(TENANT).unwrap();
    assert_eq!(t.subscription_state(&id).unwrap(), Some(state_at(7)));
    assert_eq!(t.subscriptions().unwrap(), vec![(id, state_at(7))]);
    assert_eq!(origins(&t), expected_origins(1, 0..7));
}

#[test]
fn bad_batches_are_refused_and_write_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = synced_config(dir.path());
    config.log.record_bytes_max = ByteSize::kib(1);
    config.log.commit_bytes_max = ByteSize::kib(2);
    let engine = Engine::open(config).unwrap();
    let t = engine.create_tenant(TENANT).unwrap();
    let id = subscription(1, "p");
    t.put_subscription_state(&id, &state_at(0)).unwrap();
    let good = batch(1, 0, &[1]);
    let refused = |result: annals_engine::Result<_>, what: &str| match result {
        Err(Error::Log(LogError::InvalidRequest(m))) => m,
        other => panic!("{what}: expected InvalidRequest, got {other:?}"),
    };

    refused(
        t.commit_received(ScopeId::DEFAULT, &id, &good, &state_at(1)),
        "default scope",
    );
    refused(
        t.commit_received(ScopeId(Uuid::from_u128(9)), &id, &good, &state_at(1)),
        "another scope than the subscription's",
    );
    refused(
        t.commit_received(SCOPE, &id, &[], &state_at(1)),
        "no commit",
    );
    let mut empty = batch(1, 0, &[1, 1]);
    empty[1].events.clear();
    refused(
        t.commit_received(SCOPE, &id, &empty, &state_at(1)),
        "an empty commit",
    );
    for (what, spoil) in [
        (
            "no origin",
            (|e: &mut UncommittedEvent| e.event_horizon = None) as fn(&mut _),
        ),
        ("public", |e| e.public = true),
        ("aggregate", |e| {
            e.aggregate = Some(annals_engine::AppliedByAggregate {
                root_id: Uuid::from_u128(1),
                version: 0,
            });
        }),
    ] {
        let mut bad = batch(1, 0, &[1, 2]);
        spoil(&mut bad[1].events[1]);
        let m = refused(t.commit_received(SCOPE, &id, &bad, &state_at(3)), what);
        assert!(m.contains("event 1 of commit 1"), "{what}: {m}");
    }
    assert_eq!(t.subscription_state(&id).unwrap(), Some(state_at(0)));
    assert!(read_scope(&t).is_empty());

    // The log refuses a batch over its commit limit after the prepared state is written: the
    // state is rolled back, and the scope takes the next batch at once.
    let mut huge = batch(1, 0, &[1, 1, 1, 1]);
    for c in &mut huge {
        c.events[0].content = format!(r#""{}""#, "x".repeat(600));
    }
    refused(
        t.commit_received(SCOPE, &id, &huge, &state_at(4)),
        "over the commit limit",
    );
    assert_eq!(t.subscription_state(&id).unwrap(), Some(state_at(0)));
    // A subscription that had no state has none again.
    let new = subscription(2, "p");
    refused(
        t.commit_received(SCOPE, &new, &huge, &state_at(4)),
        "over the limit, new",
    );
    assert_eq!(t.subscription_state(&new).unwrap(), None);
    t.commit_received(SCOPE, &id, &good, &state_at(1)).unwrap();
    assert_eq!(t.subscription_state(&id).unwrap(), Some(state_at(1)));
    assert_eq!(t.subscriptions().unwrap(), vec![(id, state_at(1))]);
}

/// What happens to the file system after a batch's fsync failed.
#[derive(Debug, Clone, Copy)]
enum After {
    /// The machine crashes, unsynced bytes treated as the mode says.
    Crash(CrashMode),
    /// No crash: the engine is reopened on the same disk, where the written (unsynced) bytes
    /// still are. The batch is then in the log, so its state must be too.
    Reopen,
}

#[test]
fn a_lost_append_leaves_the_previous_state_and_a_later_write_to_the_scope_does_not_revive_it() {
    // Dropped unsynced bytes: the batch is lost, so the state must be the one before it.
    assert_eq!(failed_sync_then(After::Crash(CrashMode::DropUnsynced)), 2);
    // Torn or reordered writes: the unit is cut whole on recovery, or kept whole.
    for seed in 1..6 {
        for mode in [CrashMode::TornPrefix(seed), CrashMode::Reordered(seed)] {
            failed_sync_then(After::Crash(mode));
        }
    }
}

#[test]
fn a_batch_whose_fsync_failed_but_which_reached_the_file_keeps_its_state() {
    // A rollback to the previous state here would make the batch's events arrive twice.
    assert_eq!(failed_sync_then(After::Reopen), 5);
}

/// The fsync of a received batch fails; the tenant is healed while the engine runs: the heal
/// fails while syncs do, then cuts the batch from the scoped log and settles the scope, whose
/// subscriptions write again from states that match their events, before and after a crash.
#[test]
fn a_failed_batch_is_healed_without_a_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let config = synced_config(dir.path());
    let first = subscription(1, "");
    let second = subscription(2, "");
    let fs = FaultIo::new();
    // A failed sync drops what it did not write from writeback, as Linux does.
    fs.model_fsyncgate();
    let engine = Engine::open_with_io(config.clone(), Arc::new(fs.clone())).unwrap();
    let t = engine.create_tenant(TENANT).unwrap();
    t.put_subscription_state(&first, &state_at(0)).unwrap();
    t.commit_received(SCOPE, &first, &batch(1, 0, &[2]), &state_at(2))
        .unwrap();
    fs.fail_syncs_after_ops(0);
    assert!(t
        .commit_received(SCOPE, &first, &batch(1, 2, &[1, 2]), &state_at(5))
        .is_err());
    assert!(
        t.check_healthy().is_err(),
        "an unsettled scope is not healthy"
    );

    // While syncs fail, the heal fails and the scope keeps refusing.
    assert!(t.heal().is_err());
    assert!(t.check_healthy().is_err());
    assert!(matches!(
        t.commit_received(SCOPE, &second, &batch(2, 0, &[4]), &state_at(4)),
        Err(Error::Log(LogError::Poisoned { .. }))
    ));

    fs.heal();
    let healed = t.heal().unwrap();
    assert_eq!(healed.logs.len(), 1, "{healed:?}");
    let (scope, log) = &healed.logs[0];
    assert_eq!(*scope, SCOPE);
    assert_eq!(log.dropped_events, 3, "the failed batch's events are cut");
    assert_eq!(log.next, EventLogSequenceNumber(2));
    assert_eq!(healed.scopes, vec![SCOPE]);
    t.check_healthy().unwrap();
    assert!(t.heal().unwrap().is_empty(), "nothing left to heal");
    // The cut batch is surely not in the log, so the state in force is the one before it.
    assert_eq!(t.subscription_state(&first).unwrap(), Some(state_at(2)));
    assert_eq!(origins(&t), expected_origins(1, 0..2));

    // Both subscriptions write again; the first resumes from its state, nothing twice.
    t.commit_received(SCOPE, &second, &batch(2, 0, &[3, 3]), &state_at(6))
        .unwrap();
    assert_eq!(t.subscription_state(&first).unwrap(), Some(state_at(2)));
    t.commit_received(SCOPE, &first, &batch(1, 2, &[1, 2]), &state_at(5))
        .unwrap();
    let mine = |t: &Tenant| -> Vec<(Uuid, u64)> {
        origins(t)
            .into_iter()
            .filter(|(p, _)| *p == Uuid::from_u128(1))
            .collect()
    };
    assert_eq!(mine(&t), expected_origins(1, 0..5));
    drop(t);
    drop(engine);

    let engine =
        Engine::open_with_io(config, Arc::new(fs.crash_with(CrashMode::DropUnsynced))).unwrap();
    let t = engine.tenant(TENANT).unwrap();
    assert_eq!(mine(&t), expected_origins(1, 0..5));
    assert_eq!(
        t.subscriptions().unwrap(),
        vec![(first, state_at(5)), (second, state_at(6))]
    );
}

/// A subscription stores events 0..2, then the fsync of its batch 2..5 fails. After `after`,
/// its state is where its events end, a second subscription writing to the same scope does not
/// change that, and it resumes without losing or repeating an event. Returns the first
/// subscription's position after the reopen.
fn failed_sync_then(after: After) -> u64 {
    let dir = tempfile::tempdir().unwrap();
    let config = synced_config(dir.path());
    let first = subscription(1, "");
    let second = subscription(2, "");
    let fs = FaultIo::new();
    {
        let engine = Engine::open_with_io(config.clone(), Arc::new(fs.clone())).unwrap();
        let t = engine.create_tenant(TENANT).unwrap();
        t.put_subscription_state(&first, &state_at(0)).unwrap();
        t.commit_received(SCOPE, &first, &batch(1, 0, &[2]), &state_at(2))
            .unwrap();
        // The batch's state is prepared and its bytes are written; their fsync fails.
        fs.fail_syncs_after_ops(0);
        let failed = t.commit_received(SCOPE, &first, &batch(1, 2, &[1, 2]), &state_at(5));
        assert!(failed.is_err());
        // Not in the log as far as readers know: the state in force is the one before.
        assert_eq!(t.subscription_state(&first).unwrap(), Some(state_at(2)));
        // The scope is unsettled: nothing more is written to it until reopen.
        for result in [
            t.commit_received(SCOPE, &second, &batch(2, 0, &[4]), &state_at(4)),
            t.commit_to_scope(SCOPE, &batch(2, 0, &[1])[0]),
        ] {
            assert!(
                matches!(result, Err(Error::Log(LogError::Poisoned { .. }))),
                "{result:?}"
            );
        }
        assert!(matches!(
            t.put_subscription_state(&second, &state_at(0)),
            Err(Error::Log(LogError::Poisoned { .. }))
        ));
    }
    // The index (RocksDB, synced) keeps the prepared record either way.
    let disk = match after {
        After::Crash(mode) => fs.crash_with(mode),
        After::Reopen => {
            fs.heal();
            fs
        }
    };
    let engine = Engine::open_with_io(config, Arc::new(disk)).unwrap();
    let t = engine.tenant(TENANT).unwrap();
    let present = origins(&t);
    let position = t.subscription_state(&first).unwrap().unwrap().position.0;
    assert!(position == 2 || position == 5, "{after:?}: {position}");
    assert_eq!(present, expected_origins(1, 0..position), "{after:?}");

    // Another subscription moves the scope's end well past where the failed batch would have
    // ended; the first subscription's state stays where its events are.
    t.commit_received(SCOPE, &second, &batch(2, 0, &[3, 3]), &state_at(6))
        .unwrap();
    assert_eq!(
        t.subscription_state(&first).unwrap(),
        Some(state_at(position)),
        "{after:?}: a later write to the scope changed the first subscription's state"
    );
    assert_eq!(
        t.subscriptions().unwrap(),
        vec![(first.clone(), state_at(position)), (second, state_at(6))]
    );
    // The first subscription resumes from its state: nothing lost, nothing twice.
    if position < 5 {
        t.commit_received(SCOPE, &first, &batch(1, position, &[1, 2]), &state_at(5))
            .unwrap();
    }
    let mine: Vec<_> = origins(&t)
        .into_iter()
        .filter(|(p, _)| *p == Uuid::from_u128(1))
        .collect();
    assert_eq!(mine, expected_origins(1, 0..5), "{after:?}");
    assert_eq!(t.subscription_state(&first).unwrap(), Some(state_at(5)));
    position
}

/// Runs batches of a subscription until the first failure; returns the position of the last
/// acknowledged one.
fn receive_until_failure(fs: &FaultIo, config: &EngineConfig, id: &SubscriptionId) -> u64 {
    let Ok(engine) = Engine::open_with_io(config.clone(), Arc::new(fs.clone())) else {
        return 0;
    };
    let Ok(t) = engine.tenant_or_create(TENANT) else {
        return 0;
    };
    if t.put_subscription_state(id, &state_at(0)).is_err() {
        return 0;
    }
    let mut position = 0;
    for k in 0..6u64 {
        let sizes = [1 + (k as usize % 3), 2];
        let count: u64 = sizes.iter().map(|n| *n as u64).sum();
        let next = state_at(position + count);
        match t.commit_received(SCOPE, id, &batch(1, position, &sizes), &next) {
            Ok(_) => position += count,
            Err(_) => break,
        }
    }
    position
}

#[test]
fn a_failure_at_every_log_operation_keeps_the_position_and_the_events_in_step() {
    let id = subscription(1, "");
    let config_of = |dir: &Path| {
        let mut config = synced_config(dir);
        config.log.segment_bytes_max = ByteSize::kib(4);
        config
    };
    let clean_dir = tempfile::tempdir().unwrap();
    let clean = FaultIo::new();
    let all = receive_until_failure(&clean, &config_of(clean_dir.path()), &id);
    assert_eq!(all, 24);
    let ops = clean.ops_count();
    assert!(
        ops > 20,
        "the workload should do many operations, did {ops}"
    );

    for crash_at in 0..ops {
        for after in [
            After::Crash(CrashMode::DropUnsynced),
            After::Crash(CrashMode::TornPrefix(crash_at * 7 + 1)),
            After::Reopen,
        ] {
            let what = format!("disk fails at op {crash_at}/{ops}, then {after:?}");
            let dir = tempfile::tempdir().unwrap();
            let config = config_of(dir.path());
            let fs = FaultIo::new();
            fs.fail_after_ops(crash_at);
            let acknowledged = receive_until_failure(&fs, &config, &id);
            let disk = match after {
                After::Crash(mode) => fs.crash_with(mode),
                After::Reopen => {
                    fs.heal();
                    fs
                }
            };
            let engine = Engine::open_with_io(config, Arc::new(disk))
                .unwrap_or_else(|e| panic!("{what}: reopen failed: {e}"));
            let Ok(t) = engine.tenant(TENANT) else {
                assert_eq!(acknowledged, 0, "{what}: tenant lost");
                continue;
            };
            let position = t
                .subscription_state(&id)
                .unwrap()
                .map_or(0, |s| s.position.0);
            assert!(position >= acknowledged, "{what}: acknowledged batch lost");
            assert_eq!(
                origins(&t),
                expected_origins(1, 0..position),
                "{what}: the log and the position disagree"
            );
            // Resuming from the position completes the stream exactly.
            if position < all {
                t.commit_received(
                    SCOPE,
                    &id,
                    &batch(1, position, &[(all - position) as usize]),
                    &state_at(all),
                )
                .unwrap_or_else(|e| panic!("{what}: resume: {e}"));
            }
            assert_eq!(origins(&t), expected_origins(1, 0..all), "{what}");
        }
    }
}

#[test]
fn listing_parses_ids_with_odd_partitions() {
    let dir = tempfile::tempdir().unwrap();
    let partitions = [
        "",
        "p",
        "\u{e6}\u{f8}\u{e5}",
        "\u{1f600} with spaces",
        "\0nul",
        "a partition of some length, longer than any id in the key",
    ];
    let ids: Vec<SubscriptionId> = partitions
        .iter()
        .enumerate()
        .map(|(k, p)| SubscriptionId {
            producer_microservice: Uuid::from_u128(u128::MAX - k as u128),
            ..subscription(1, p)
        })
        .collect();
    {
        let engine = open(dir.path());
        let t = engine.create_tenant(TENANT).unwrap();
        for (k, id) in ids.iter().enumerate() {
            t.put_subscription_state(id, &state_at(k as u64)).unwrap();
        }
    }
    let engine = open(dir.path());
    let t = engine.tenant(TENANT).unwrap();
    let mut expected: Vec<(SubscriptionId, SubscriptionState)> = ids
        .iter()
        .enumerate()
        .map(|(k, id)| (id.clone(), state_at(k as u64)))
        .collect();
    // Listed in key order: producer microservice first.
    expected.sort_by_key(|a| a.0.producer_microservice);
    assert_eq!(t.subscriptions().unwrap(), expected);
}

#[test]
fn records_as_older_versions_wrote_them_read_back_as_settled() {
    // `StateBatch::put_subscription` writes the plain state object, as versions before the
    // prepared-state protocol did.
    let dir = tempfile::tempdir().unwrap();
    let id = subscription(1, "old");
    {
        let engine = open(dir.path());
        let t = engine.create_tenant(TENANT).unwrap();
        let mut batch = StateBatch::new();
        batch.put_subscription(&id, &state_at(3));
        t.write_state(batch).unwrap();
    }
    let engine = open(dir.path());
    let t = engine.tenant(TENANT).unwrap();
    assert_eq!(t.subscription_state(&id).unwrap(), Some(state_at(3)));
    assert_eq!(t.subscriptions().unwrap(), vec![(id.clone(), state_at(3))]);
    // And the protocol takes over from there.
    t.commit_received(SCOPE, &id, &batch(1, 3, &[2]), &state_at(5))
        .unwrap();
    assert_eq!(t.subscription_state(&id).unwrap(), Some(state_at(5)));
}
