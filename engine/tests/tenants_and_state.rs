//! Tenants (create, list, delete, isolation) and the state kept in their column families.

#![allow(
    clippy::unwrap_used,
    reason = "test helpers fail loudly on the first unexpected error; `expect` would break as helpers move"
)]

mod common;

use annals_engine::{
    uuid::Uuid, AppliedByAggregate, Commit, Error, EventLogSequenceNumber, ExecutionContext,
    FailingPartition, LogError, ProcessingFailure, ScopeId, StateBatch, StreamDefinition,
    StreamFilter, StreamPosition, StreamProcessorId, StreamProcessorState, SubscriptionId,
    SubscriptionState, Tenant, TenantId, UncommittedEvent,
};
use common::*;

const OTHER: TenantId = TenantId(Uuid::from_u128(0x7e7a_0000_0000_0000_0000_0000_0000_0002));

fn processor() -> StreamProcessorId {
    StreamProcessorId {
        scope: Uuid::nil(),
        processor: Uuid::from_u128(0xe1),
        source_stream: Uuid::nil(),
    }
}

fn failing_state() -> StreamProcessorState {
    let mut state = StreamProcessorState {
        position: StreamPosition(42),
        event_log_position: EventLogSequenceNumber(42),
        last_successfully_processed_ns: 7,
        ..Default::default()
    };
    state.failing_partitions.insert(
        "cart-1".into(),
        FailingPartition {
            position: StreamPosition(40),
            event_log_position: EventLogSequenceNumber(40),
            failure: ProcessingFailure {
                reason: "head said no".into(),
                retry_time_ns: 99,
                processing_attempts: 3,
                last_failed_ns: 8,
            },
        },
    );
    state
}

#[test]
fn tenants_are_created_listed_and_deleted_with_their_data() {
    let dir = tempfile::tempdir().unwrap();
    let engine = open(dir.path());
    assert!(engine.tenants().is_empty());
    let a = engine.create_tenant(TENANT).unwrap();
    assert!(matches!(
        engine.create_tenant(TENANT),
        Err(Error::Log(LogError::TenantExists(_)))
    ));
    engine.create_tenant(OTHER).unwrap();
    assert_eq!(engine.tenants(), vec![TENANT, OTHER]);
    assert!(matches!(
        engine.tenant(TenantId(Uuid::from_u128(5))),
        Err(Error::Log(LogError::TenantUnknown(_)))
    ));

    let root = Uuid::from_u128(10);
    a.commit_for_aggregate(&aggregate_commit(root, "x", 0, &[(1, "{}")]))
        .unwrap();
    a.put_stream_processor_state(&processor(), &failing_state())
        .unwrap();
    let tenant_dir = dir.path().join("tenants").join(TENANT.to_string());
    assert!(tenant_dir.exists());

    engine.delete_tenant(TENANT).unwrap();
    assert!(!tenant_dir.exists());
    assert_eq!(engine.tenants(), vec![OTHER]);
    // The old handle reaches nothing.
    assert!(matches!(
        a.fetch_for_aggregate(root, "x", &[]),
        Err(Error::Log(LogError::TenantUnknown(_)))
    ));
    assert!(matches!(
        a.stream_processor_state(&processor()),
        Err(Error::Log(LogError::TenantUnknown(_)))
    ));
    assert!(matches!(
        a.commit_for_aggregate(&aggregate_commit(root, "x", 1, &[(1, "{}")])),
        Err(Error::Log(LogError::TenantUnknown(_)))
    ));
    assert!(matches!(
        engine.delete_tenant(TENANT),
        Err(Error::Log(LogError::TenantUnknown(_)))
    ));

    // Created again, it starts empty: the column family went with it.
    let again = engine.create_tenant(TENANT).unwrap();
    assert_eq!(again.aggregate_version(root, "x").unwrap(), 0);
    assert_eq!(again.stream_processor_state(&processor()).unwrap(), None);
    drop((a, again));
    drop(engine);

    let engine = open(dir.path());
    assert_eq!(engine.tenants(), vec![TENANT, OTHER]);
    assert!(engine.index_open_report().orphans_dropped.is_empty());
}

#[test]
fn a_delete_cut_short_is_finished_on_open() {
    let dir = tempfile::tempdir().unwrap();
    {
        let engine = open(dir.path());
        let t = engine.create_tenant(TENANT).unwrap();
        t.commit_for_aggregate(&aggregate_commit(Uuid::from_u128(1), "x", 0, &[(1, "{}")]))
            .unwrap();
        engine.create_tenant(OTHER).unwrap();
    }
    // What a crash after the delete's rename (and before the family drop) leaves.
    let tenants = dir.path().join("tenants");
    std::fs::rename(
        tenants.join(TENANT.to_string()),
        tenants.join(format!(".deleting-{TENANT}")),
    )
    .unwrap();
    let engine = open(dir.path());
    assert_eq!(engine.tenants(), vec![OTHER]);
    assert_eq!(
        engine.index_open_report().orphans_dropped,
        vec![format!("tenant-{TENANT}")]
    );
    assert!(!tenants.join(format!(".deleting-{TENANT}")).exists());
}

#[test]
fn an_import_is_seen_only_once_finished() {
    let dir = tempfile::tempdir().unwrap();
    let root = Uuid::from_u128(1);
    {
        let engine = open(dir.path());
        let done = engine.create_tenant_for_import(OTHER).unwrap();
        done.commit_for_aggregate(&aggregate_commit(root, "x", 0, &[(1, "{}")]))
            .unwrap();
        engine.finish_import(OTHER).unwrap();
        // Cut short: events and state written, never finished.
        let cut = engine.create_tenant_for_import(TENANT).unwrap();
        cut.commit_for_aggregate(&aggregate_commit(root, "x", 0, &[(1, "{}")]))
            .unwrap();
        cut.put_stream_processor_state(&processor(), &failing_state())
            .unwrap();
        assert!(matches!(
            engine.create_tenant_for_import(OTHER),
            Err(Error::Log(LogError::TenantExists(_)))
        ));
    }
    let engine = open(dir.path());
    assert_eq!(engine.tenants(), vec![OTHER]);
    assert_eq!(engine.interrupted_imports(), &[TENANT]);
    assert_eq!(
        engine.index_open_report().orphans_dropped,
        vec![format!("tenant-{TENANT}")]
    );
    assert_eq!(
        engine
            .tenant(OTHER)
            .unwrap()
            .aggregate_version(root, "x")
            .unwrap(),
        1
    );
    // The id is free again, and nothing of the cut import is in it.
    let again = engine.create_tenant(TENANT).unwrap();
    assert_eq!(again.aggregate_version(root, "x").unwrap(), 0);
    assert!(again.stream_processor_states().unwrap().is_empty());
    drop(again);
    drop(engine);
    assert!(open(dir.path()).interrupted_imports().is_empty());
}

/// Aggregate events (instance, version) in log order.
type AggregateEvents<'a> = &'a [(&'a str, u64)];
/// The problem expected: sequence number, version, part of the message.
type Expected<'a> = Option<(u64, u64, &'a str)>;

/// Aggregate events written to the log directly (as an import does), and what the check
/// finds.
#[test]
fn aggregate_versions_that_do_not_follow_are_found() {
    let root = Uuid::from_u128(0xa1);
    let cases: &[(AggregateEvents<'_>, Expected<'_>)] = &[
        (&[("a", 0), ("b", 0), ("a", 1), ("b", 1), ("a", 2)], None),
        // A gap: a's version 1 is missing.
        (&[("a", 0), ("a", 2)], Some((1, 2, "where 1 follows"))),
        // Not from 0.
        (&[("b", 0), ("a", 1)], Some((1, 1, "where 0 follows"))),
        // Out of order: version 1 before version 0.
        (
            &[("a", 1), ("a", 0)],
            Some((0, 1, "comes before version 0")),
        ),
        // Twice the same version: the first is found, the later one named.
        (
            &[("a", 0), ("a", 1), ("a", 1)],
            Some((1, 1, "claimed again by event 2")),
        ),
    ];
    for (events, expected) in cases {
        let dir = tempfile::tempdir().unwrap();
        let engine = open(dir.path());
        let tenant = engine.create_tenant_for_import(TENANT).unwrap();
        let commits: Vec<Commit> = events
            .iter()
            .map(|(source, version)| Commit {
                occurred_ns: 1,
                execution_context: ExecutionContext::default(),
                events: vec![UncommittedEvent {
                    event_source_id: (*source).into(),
                    event_type: event_type(5),
                    content: "{}".into(),
                    aggregate: Some(AppliedByAggregate {
                        root_id: root,
                        version: *version,
                    }),
                    ..UncommittedEvent::default()
                }],
            })
            .collect();
        tenant.event_log().unwrap().append_all(&commits).unwrap();
        let check = tenant
            .verify_aggregate_versions(events.len() as u64)
            .unwrap();
        match expected {
            None => {
                assert_eq!(check.problem, None, "{events:?}");
                assert_eq!((check.instances, check.events), (2, 5));
            }
            Some((seq, version, what)) => {
                let problem = check
                    .problem
                    .unwrap_or_else(|| panic!("{events:?}: no problem"));
                assert_eq!(problem.aggregate_root, root);
                assert_eq!(
                    (problem.sequence_number.value(), problem.version),
                    (*seq, *version),
                    "{events:?}: {problem:?}"
                );
                assert!(problem.what.contains(what), "{events:?}: {}", problem.what);
            }
        }
    }
}

/// Two tenants use the same aggregate, stream, processor and projection ids: nothing written
/// through one handle is visible through the other.
#[test]
fn tenants_cannot_see_each_other() {
    let dir = tempfile::tempdir().unwrap();
    let engine = open(dir.path());
    let a = engine.create_tenant(TENANT).unwrap();
    let b = engine.create_tenant(OTHER).unwrap();
    let root = Uuid::from_u128(10);
    let stream = Uuid::from_u128(20);
    let projection = Uuid::from_u128(30);

    a.commit_for_aggregate(&aggregate_commit(root, "x", 0, &[(1, "{\"t\":\"a\"}")]))
        .unwrap();
    a.append_to_stream(
        ScopeId::DEFAULT,
        stream,
        StreamPosition(0),
        &[(EventLogSequenceNumber(0), "x")],
    )
    .unwrap();
    a.put_stream_processor_state(&processor(), &failing_state())
        .unwrap();
    let mut batch = StateBatch::new();
    batch.put_projection(Uuid::nil(), projection, "k", "{\"a\":1}");
    a.write_state(batch).unwrap();

    assert_eq!(b.aggregate_version(root, "x").unwrap(), 0);
    assert!(b
        .fetch_for_aggregate(root, "x", &[])
        .unwrap()
        .events
        .is_empty());
    assert_eq!(b.event_log().unwrap().next_sequence_number().0, 0);
    assert_eq!(
        b.stream_end(ScopeId::DEFAULT, stream).unwrap(),
        StreamPosition(0)
    );
    assert!(b
        .read_stream(ScopeId::DEFAULT, stream, StreamPosition(0), 10)
        .unwrap()
        .is_empty());
    assert_eq!(b.stream_processor_state(&processor()).unwrap(), None);
    assert!(b.stream_processor_states().unwrap().is_empty());
    assert_eq!(
        b.projection_state(ScopeId::DEFAULT, projection, "k")
            .unwrap(),
        None
    );

    // b commits the same aggregate from version 0: its own history.
    b.commit_for_aggregate(&aggregate_commit(root, "x", 0, &[(1, "{\"t\":\"b\"}")]))
        .unwrap();
    assert_eq!(
        a.fetch_for_aggregate(root, "x", &[]).unwrap().events[0].content,
        "{\"t\":\"a\"}"
    );
    assert_eq!(
        b.fetch_for_aggregate(root, "x", &[]).unwrap().events[0].content,
        "{\"t\":\"b\"}"
    );
}

#[test]
fn streams_are_written_at_their_end_and_read_by_position_and_partition() {
    let dir = tempfile::tempdir().unwrap();
    let stream = Uuid::from_u128(20);
    let scope = ScopeId(Uuid::from_u128(3));
    {
        let engine = open(dir.path());
        let t = engine.create_tenant(TENANT).unwrap();
        let end = t
            .append_to_stream(
                scope,
                stream,
                StreamPosition(0),
                &[
                    (EventLogSequenceNumber(3), "p"),
                    (EventLogSequenceNumber(5), "q"),
                    (EventLogSequenceNumber(9), "p"),
                ],
            )
            .unwrap();
        assert_eq!(end, StreamPosition(3));
        // A writer resuming from a stale position cannot write twice.
        assert!(matches!(
            t.append_to_stream(
                scope,
                stream,
                StreamPosition(1),
                &[(EventLogSequenceNumber(5), "q")]
            ),
            Err(Error::WrongStreamPosition {
                expected: StreamPosition(1),
                actual: StreamPosition(3)
            })
        ));
        t.append_to_stream(
            scope,
            stream,
            StreamPosition(3),
            &[(EventLogSequenceNumber(12), "q")],
        )
        .unwrap();
    }
    let engine = open(dir.path());
    let t = engine.tenant(TENANT).unwrap();
    assert_eq!(t.stream_end(scope, stream).unwrap(), StreamPosition(4));
    let all = t.read_stream(scope, stream, StreamPosition(1), 10).unwrap();
    assert_eq!(
        all.iter()
            .map(|e| (
                e.position.0,
                e.event_log_sequence_number.0,
                e.partition.as_str()
            ))
            .collect::<Vec<_>>(),
        [(1, 5, "q"), (2, 9, "p"), (3, 12, "q")]
    );
    let p = t
        .read_stream_partition(scope, stream, "p", StreamPosition(0), 10)
        .unwrap();
    assert_eq!(
        p.iter()
            .map(|e| (e.position.0, e.event_log_sequence_number.0))
            .collect::<Vec<_>>(),
        [(0, 3), (2, 9)]
    );
    let q = t
        .read_stream_partition(scope, stream, "q", StreamPosition(2), 1)
        .unwrap();
    assert_eq!(q.iter().map(|e| e.position.0).collect::<Vec<_>>(), [3]);
    // The same stream id in another scope is another stream.
    assert_eq!(
        t.stream_end(ScopeId::DEFAULT, stream).unwrap(),
        StreamPosition(0)
    );
}

#[test]
fn state_and_aliases_survive_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let projection = Uuid::from_u128(30);
    let subscription = SubscriptionId {
        producer_microservice: Uuid::from_u128(1),
        producer_tenant: Uuid::from_u128(2),
        scope: Uuid::from_u128(3),
        stream: Uuid::from_u128(4),
        partition: String::new(),
    };
    let subscription_state = SubscriptionState {
        position: StreamPosition(17),
        last_successfully_processed_ns: 5,
        failure: None,
        ..Default::default()
    };
    let second = StreamProcessorId {
        processor: Uuid::from_u128(0xe2),
        ..processor()
    };
    {
        let engine = open(dir.path());
        let t = engine.create_tenant(TENANT).unwrap();
        let mut batch = StateBatch::new();
        batch.put_stream_processor(&processor(), &failing_state());
        batch.put_stream_processor(&second, &StreamProcessorState::default());
        batch.put_projection(Uuid::nil(), projection, "b", "{\"n\":2}");
        batch.put_projection(Uuid::nil(), projection, "a", "{\"n\":1}");
        batch.put_projection(Uuid::nil(), Uuid::from_u128(31), "a", "{}");
        batch.put_subscription(&subscription, &subscription_state);
        t.write_state(batch).unwrap();
        let mut batch = StateBatch::new();
        batch.delete_stream_processor(&second);
        batch.delete_projection(Uuid::nil(), projection, "b");
        t.write_state(batch).unwrap();
        engine
            .register_event_type_alias(Uuid::from_u128(7), "ItemAdded")
            .unwrap();
        engine
            .register_aggregate_root_alias(Uuid::from_u128(8), "Cart")
            .unwrap();
        engine
            .register_event_type_alias(Uuid::from_u128(7), "ItemAddedV2")
            .unwrap();
    }
    let engine = open(dir.path());
    let t = engine.tenant(TENANT).unwrap();
    assert_eq!(
        t.stream_processor_state(&processor()).unwrap(),
        Some(failing_state())
    );
    assert_eq!(
        t.stream_processor_states().unwrap(),
        vec![(processor(), failing_state())]
    );
    assert_eq!(
        t.projection_states(ScopeId::DEFAULT, projection).unwrap(),
        vec![("a".to_owned(), "{\"n\":1}".to_owned())]
    );
    assert_eq!(
        t.subscription_state(&subscription).unwrap(),
        Some(subscription_state)
    );
    assert_eq!(
        engine.event_type_aliases().unwrap(),
        vec![(Uuid::from_u128(7), "ItemAddedV2".to_owned())]
    );
    assert_eq!(
        engine.aggregate_root_aliases().unwrap(),
        vec![(Uuid::from_u128(8), "Cart".to_owned())]
    );
}

#[test]
fn stream_definitions_and_the_streams_written_are_listed_and_survive_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let scope = ScopeId(Uuid::from_u128(0x5c));
    let handler = StreamDefinition {
        partitioned: true,
        public: false,
        filter: StreamFilter::EventTypes(vec![Uuid::from_u128(2), Uuid::from_u128(1)]),
    };
    let public = StreamDefinition {
        partitioned: false,
        public: true,
        filter: StreamFilter::Remote,
    };
    {
        let engine = open(dir.path());
        let tenant = engine.tenant_or_create(TENANT).unwrap();
        assert!(tenant.stream_definitions().unwrap().is_empty());
        let id = Uuid::from_u128(0xa);
        assert_eq!(
            tenant.put_stream_definition(scope, id, &handler).unwrap(),
            None
        );
        // The same again changes nothing; another replaces it and says what it was.
        assert_eq!(
            tenant.put_stream_definition(scope, id, &handler).unwrap(),
            None
        );
        let narrower = StreamDefinition {
            filter: StreamFilter::EventTypes(vec![Uuid::from_u128(2)]),
            ..handler.clone()
        };
        assert_eq!(
            tenant.put_stream_definition(scope, id, &narrower).unwrap(),
            Some(handler.clone())
        );
        tenant.put_stream_definition(scope, id, &handler).unwrap();
        tenant
            .put_stream_definition(ScopeId::DEFAULT, Uuid::from_u128(0xb), &public)
            .unwrap();
        tenant
            .append_to_stream(
                scope,
                Uuid::from_u128(0xf),
                StreamPosition(0),
                &[
                    (EventLogSequenceNumber(0), "p"),
                    (EventLogSequenceNumber(3), "q"),
                ],
            )
            .unwrap();
        tenant
            .append_to_stream(
                ScopeId::DEFAULT,
                Uuid::from_u128(0xe),
                StreamPosition(0),
                &[(EventLogSequenceNumber(1), "p")],
            )
            .unwrap();
        // Another tenant's are not listed.
        let other = engine.tenant_or_create(OTHER).unwrap();
        other
            .put_stream_definition(scope, Uuid::from_u128(0xc), &public)
            .unwrap();
    }
    let engine = open(dir.path());
    let tenant = engine.tenant(TENANT).unwrap();
    assert_eq!(
        tenant.stream_definitions().unwrap(),
        vec![
            (ScopeId::DEFAULT, Uuid::from_u128(0xb), public),
            (scope, Uuid::from_u128(0xa), handler),
        ]
    );
    assert_eq!(
        tenant.streams().unwrap(),
        vec![
            (ScopeId::DEFAULT, Uuid::from_u128(0xe), StreamPosition(1)),
            (scope, Uuid::from_u128(0xf), StreamPosition(2)),
        ]
    );
}

/// A projection's history against a model: random changes (keys that are prefixes of each
/// other among them) written in random batches, each key's state and all keys' states as of
/// every position, then a trim and a drop.
#[test]
fn projection_history_answers_every_position_before_and_after_a_trim() {
    use std::collections::BTreeMap;

    let dir = tempfile::tempdir().unwrap();
    let engine = open(dir.path());
    let t = engine.create_tenant(TENANT).unwrap();
    let (scope, projection) = (ScopeId(Uuid::from_u128(5)), Uuid::from_u128(30));
    let keys = ["", "a", "ab", "b", "a\u{0}", "\u{e9}t\u{e9}"];
    // The model: for each position, the states after the event there.
    let mut states: BTreeMap<&str, String> = BTreeMap::new();
    let mut after: Vec<BTreeMap<&str, String>> = Vec::new();
    let mut rng = 0x9e37_79b9_7f4a_7c15u64;
    let mut next = |n: u64| {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        rng % n
    };
    let mut batch = StateBatch::new();
    for position in 0..400u64 {
        // About one event in four changes nothing (another event type).
        if next(4) > 0 {
            let key = keys[usize::try_from(next(keys.len() as u64)).unwrap()];
            let state = (next(5) > 0).then(|| format!("{{\"at\":{position}}}"));
            if let Some(state) = &state {
                batch.put_projection(scope.0, projection, key, state);
                states.insert(key, state.clone());
            } else {
                batch.delete_projection(scope.0, projection, key);
                states.remove(key);
            }
            let occurred = i64::try_from(position).unwrap();
            let seq = EventLogSequenceNumber(position);
            batch.record_projection_history(
                scope.0,
                projection,
                key,
                seq,
                occurred,
                state.as_deref(),
            );
        }
        after.push(states.clone());
        if next(10) == 0 {
            t.write_state(std::mem::take(&mut batch)).unwrap();
        }
    }
    t.write_state(batch).unwrap();
    let as_of = |p: u64| -> BTreeMap<&str, String> {
        p.checked_sub(1)
            .map(|p| after[usize::try_from(p).unwrap()].clone())
            .unwrap_or_default()
    };
    let all_at = |t: &Tenant, p: u64, page: usize| -> Result<Vec<(String, String)>, Error> {
        let mut out: Vec<(String, String)> = Vec::new();
        loop {
            let last = out.last().map(|(k, _)| k.clone());
            let got = t.projection_states_at(
                scope,
                projection,
                EventLogSequenceNumber(p),
                last.as_deref(),
                page,
            )?;
            let done = got.len() < page;
            out.extend(got);
            if done {
                return Ok(out);
            }
        }
    };
    let check = |t: &Tenant, from: u64| {
        for p in from..=400 {
            let model = as_of(p);
            for key in keys {
                assert_eq!(
                    t.projection_state_at(scope, projection, key, EventLogSequenceNumber(p))
                        .unwrap(),
                    model.get(key).cloned(),
                    "key {key:?} as of {p}"
                );
            }
            for page in [1, 4, 100] {
                let mut got = all_at(t, p, page).unwrap();
                got.sort();
                let want: Vec<(String, String)> = model
                    .iter()
                    .map(|(k, v)| ((*k).to_owned(), v.clone()))
                    .collect();
                assert_eq!(got, want, "all keys as of {p}, pages of {page}");
            }
        }
    };
    check(&t, 0);
    // The current states are those after the last event, in key order.
    let current: Vec<(String, String)> = after[399]
        .iter()
        .map(|(k, v)| ((*k).to_owned(), v.clone()))
        .collect();
    assert_eq!(t.projection_states(scope, projection).unwrap(), current);
    let mut paged = Vec::new();
    loop {
        let last = paged.last().map(|(k, _): &(String, String)| k.clone());
        let page = t
            .projection_states_page(scope, projection, last.as_deref(), 2)
            .unwrap();
        if page.is_empty() {
            break;
        }
        paged.extend(page);
    }
    assert_eq!(paged, current);

    let before = t.projection_history_size(scope, projection).unwrap();
    let removed = t
        .trim_projection_history(scope, projection, EventLogSequenceNumber(250))
        .unwrap();
    let trimmed = t.projection_history_size(scope, projection).unwrap();
    assert!(removed > 0);
    assert_eq!(trimmed.entries, before.entries - removed);
    assert_eq!(trimmed.floor, EventLogSequenceNumber(250));
    check(&t, 250);
    assert!(matches!(
        t.projection_state_at(scope, projection, "a", EventLogSequenceNumber(249)),
        Err(Error::HistoryTrimmed {
            requested: 249,
            floor: 250
        })
    ));
    // A lower floor changes nothing.
    assert_eq!(
        t.trim_projection_history(scope, projection, EventLogSequenceNumber(10))
            .unwrap(),
        0
    );
    drop(t);
    drop(engine);

    let engine = open(dir.path());
    let t = engine.tenant(TENANT).unwrap();
    check(&t, 250);
    let mut batch = StateBatch::new();
    batch.put_projection_definition(scope.0, projection, "v2");
    batch.drop_projection_states(scope.0, projection);
    // In the same batch, after the drop: the first state of the new definition.
    batch.put_projection(scope.0, projection, "a", "{}");
    t.write_state(batch).unwrap();
    assert_eq!(
        t.projection_states(scope, projection).unwrap(),
        vec![("a".to_owned(), "{}".to_owned())]
    );
    assert_eq!(
        t.projection_history_size(scope, projection).unwrap(),
        annals_engine::ProjectionHistorySize::default()
    );
    assert_eq!(
        t.projection_definitions().unwrap(),
        vec![(scope, projection, "v2".to_owned())]
    );
    assert_eq!(
        t.projection_state_at(scope, projection, "a", EventLogSequenceNumber(400))
            .unwrap(),
        None
    );
}

/// The writes of one batch apply in order: a key set then deleted ends deleted, deleted then
/// set ends set.
#[test]
fn a_state_batch_applies_its_writes_in_order() {
    let dir = tempfile::tempdir().unwrap();
    let engine = open(dir.path());
    let t = engine.create_tenant(TENANT).unwrap();
    let projection = Uuid::from_u128(30);
    let mut batch = StateBatch::new();
    batch.put_projection(Uuid::nil(), projection, "gone", "{}");
    batch.delete_projection(Uuid::nil(), projection, "gone");
    batch.delete_projection(Uuid::nil(), projection, "kept");
    batch.put_projection(Uuid::nil(), projection, "kept", "{\"n\":1}");
    t.write_state(batch).unwrap();
    assert_eq!(
        t.projection_states(ScopeId::DEFAULT, projection).unwrap(),
        vec![("kept".to_owned(), "{\"n\":1}".to_owned())]
    );
}
