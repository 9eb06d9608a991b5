//! The event store over gRPC against the real binary: what Commit, CommitForAggregate,
//! FetchForAggregate and FetchForAggregateInBatches return, every failure a head can provoke
//! (with nothing written), and bad requests that never spoil good ones committed with them.
#![allow(clippy::unwrap_used, reason = "tests")]

use annals_tests::proto::dolittle::runtime::events::event_store_client::EventStoreClient;
use annals_tests::proto::dolittle::runtime::events::fetch_for_aggregate_in_batches_request::Request as BatchKind;
use annals_tests::proto::dolittle::runtime::events::{
    Aggregate, CommitAggregateEventsResponse, FetchAllEventsForAggregateInBatchesRequest,
    FetchEventsForAggregateInBatchesRequest, FetchForAggregateInBatchesRequest,
    FetchForAggregateRequest, FetchForAggregateResponse,
};
use annals_tests::proto::dolittle::services::CallRequestContext;
use annals_tests::{
    aggregate_request, artifact, call_context, commit_request, failure_id, failures, id, uuid,
    Server, DEVELOPMENT,
};
use tonic::transport::Channel;
use uuid::Uuid;

const TYPE_A: Uuid = Uuid::from_u128(0xa);
const TYPE_B: Uuid = Uuid::from_u128(0xb);
const ROOT: Uuid = Uuid::from_u128(0x1234_5678_9abc_def0_1234_5678_9abc_def0);

fn fetch_request(tenant: Uuid, root: Uuid, es: &str) -> FetchForAggregateRequest {
    FetchForAggregateRequest {
        call_context: Some(call_context(tenant)),
        aggregate: Some(Aggregate {
            event_source_id: es.into(),
            aggregate_root_id: Some(id(root)),
        }),
    }
}

fn batches_request(
    tenant: Uuid,
    root: Uuid,
    es: &str,
    kind: Option<BatchKind>,
) -> FetchForAggregateInBatchesRequest {
    FetchForAggregateInBatchesRequest {
        call_context: Some(call_context(tenant)),
        aggregate: Some(Aggregate {
            event_source_id: es.into(),
            aggregate_root_id: Some(id(root)),
        }),
        request: kind,
    }
}

/// Commits `events` to the Development tenant's aggregate (ROOT, `event_source`) at `expected`.
async fn for_aggregate(
    client: &mut EventStoreClient<Channel>,
    event_source: &str,
    expected: u64,
    events: &[(Uuid, &str)],
) -> CommitAggregateEventsResponse {
    annals_tests::for_aggregate(client, ROOT, event_source, expected, events).await
}

async fn batches(
    client: &mut EventStoreClient<Channel>,
    request: FetchForAggregateInBatchesRequest,
) -> Vec<annals_tests::proto::dolittle::runtime::events::FetchForAggregateResponse> {
    let mut stream = client
        .fetch_for_aggregate_in_batches(request)
        .await
        .unwrap()
        .into_inner();
    let mut out = Vec::new();
    while let Some(r) = stream.message().await.unwrap() {
        out.push(r);
    }
    out
}

#[tokio::test]
async fn commit_returns_what_was_committed_with_sequence_numbers_from_zero() {
    let server = Server::start().await;
    let mut client = EventStoreClient::new(server.private().await);
    let request = commit_request(
        DEVELOPMENT,
        &[
            (TYPE_A, "es-1", r#"{"a": 1}"#),
            (TYPE_B, "es-2", r#"{ "b" : "two" }"#),
        ],
    );
    let sent_context = request
        .call_context
        .clone()
        .unwrap()
        .execution_context
        .unwrap();
    let response = client.commit(request).await.unwrap().into_inner();
    assert!(response.failure.is_none(), "{:?}", response.failure);
    assert_eq!(response.events.len(), 2);
    let (first, second) = (&response.events[0], &response.events[1]);
    assert_eq!(
        (
            first.event_log_sequence_number,
            second.event_log_sequence_number
        ),
        (0, 1)
    );
    assert_eq!(first.event_source_id, "es-1");
    assert_eq!(
        second.content, r#"{ "b" : "two" }"#,
        "content is echoed as sent"
    );
    assert_eq!(
        uuid(first.event_type.as_ref().unwrap().id.as_ref().unwrap()),
        TYPE_A
    );
    assert_eq!(first.event_type.as_ref().unwrap().generation, 1);
    assert_eq!(first.occurred, second.occurred, "one occurred per commit");
    let occurred = first.occurred.unwrap();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let now = i64::try_from(now).unwrap();
    assert!((occurred.seconds - now).abs() < 60);
    assert_eq!(
        first.execution_context.as_ref(),
        Some(&sent_context),
        "the request's context is stored verbatim"
    );
    assert!(!first.external && !first.public);

    let response = client
        .commit(commit_request(DEVELOPMENT, &[(TYPE_A, "es-1", "{}")]))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(response.events[0].event_log_sequence_number, 2);
}

#[tokio::test]
async fn commit_for_aggregate_counts_versions_and_refuses_a_stale_expectation() {
    let server = Server::start().await;
    let mut client = EventStoreClient::new(server.private().await);
    let response = for_aggregate(
        &mut client,
        "order-1",
        0,
        &[(TYPE_A, "{}"), (TYPE_B, r#"{"x":2}"#)],
    )
    .await;
    assert!(response.failure.is_none(), "{:?}", response.failure);
    let events = response.events.unwrap();
    assert_eq!(events.event_source_id, "order-1");
    assert_eq!(uuid(events.aggregate_root_id.as_ref().unwrap()), ROOT);
    assert_eq!(events.current_aggregate_root_version, 2);
    #[allow(
        deprecated,
        reason = "the deprecated field is part of what the original sends"
    )]
    let deprecated = events.aggregate_root_version;
    assert_eq!(deprecated, 1, "the deprecated field is current - 1");
    let versions: Vec<u64> = events
        .events
        .iter()
        .map(|e| e.aggregate_root_version)
        .collect();
    assert_eq!(versions, [0, 1]);

    // Same expectation again: conflict, with both versions in the reason; nothing written.
    let response = for_aggregate(&mut client, "order-1", 0, &[(TYPE_A, "{}")]).await;
    assert_eq!(
        failure_id(response.failure.as_ref()),
        Some(failures::CONFLICT)
    );
    let reason = response.failure.unwrap().reason;
    assert!(
        reason.contains("expected aggregate root version 0")
            && reason.contains("current aggregate root version was 2"),
        "{reason}"
    );
    let fetched = client
        .fetch_for_aggregate(fetch_request(DEVELOPMENT, ROOT, "order-1"))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(fetched.events.unwrap().events.len(), 2);

    // A new aggregate expects 0; anything else conflicts.
    let response = for_aggregate(&mut client, "order-2", 5, &[(TYPE_A, "{}")]).await;
    assert_eq!(
        failure_id(response.failure.as_ref()),
        Some(failures::CONFLICT)
    );
    let response = for_aggregate(&mut client, "order-1", 2, &[(TYPE_A, "{}")]).await;
    assert!(response.failure.is_none());
    assert_eq!(
        response.events.unwrap().events[0].event_log_sequence_number,
        2
    );
}

/// FetchForAggregate answers by where they came from: (kept from an earlier fetch, read).
async fn fetch_answers(server: &Server) -> (f64, f64) {
    let (_, text) = Server::http_get(server.ports.metrics, "/metrics").await;
    let count = |answer| {
        annals_tests::metric(&text, "annals_fetch_answers_total", &[("answer", answer)]).unwrap()
    };
    (count("kept"), count("read"))
}

/// A fetch of an aggregate that has not changed since its last fetch gets the answer kept
/// then, the same as one read from the store; every commit to the aggregate is seen by the
/// next fetch (a commit at the kept version extends the kept answer), FetchForAggregateInBatches
/// keeps an answer per selection of event types, the same aggregate ids in another tenant are
/// another aggregate, and a restart starts with nothing kept.
#[tokio::test]
async fn fetches_of_an_unchanged_aggregate_reuse_the_kept_answer_and_see_every_commit() {
    const OTHER_TENANT: Uuid = Uuid::from_u128(0x0f7e_11a7_0000_4000_8000_0000_0000_0001);
    let yaml = format!("tenants:\n  {DEVELOPMENT}: {{}}\n  {OTHER_TENANT}: {{}}\n");
    let server = Server::start_with(&[(".dolittle/runtime.yml", &yaml)], &[], &[]).await;
    let mut client = EventStoreClient::new(server.private().await);
    let reader = client.clone();
    let fetch = async |tenant: Uuid| {
        let response = reader
            .clone()
            .fetch_for_aggregate(fetch_request(tenant, ROOT, "cart"))
            .await
            .unwrap()
            .into_inner();
        assert!(response.failure.is_none(), "{:?}", response.failure);
        response.events.unwrap()
    };

    // Nothing committed yet: an empty answer at version 0.
    let empty = fetch(DEVELOPMENT).await;
    assert!(empty.events.is_empty());
    assert_eq!(empty.current_aggregate_root_version, 0);

    let r = for_aggregate(
        &mut client,
        "cart",
        0,
        &[(TYPE_A, r#"{"n":1}"#), (TYPE_B, "{}")],
    )
    .await;
    assert!(r.failure.is_none(), "{:?}", r.failure);
    let other = client
        .commit_for_aggregate(aggregate_request(
            OTHER_TENANT,
            ROOT,
            "cart",
            0,
            &[(TYPE_A, r#"{"other":true}"#)],
        ))
        .await
        .unwrap()
        .into_inner();
    assert!(other.failure.is_none(), "{:?}", other.failure);

    let first = fetch(DEVELOPMENT).await;
    assert_eq!(first.events.len(), 2);
    assert_eq!(first.current_aggregate_root_version, 2);
    let (kept_before, read_before) = fetch_answers(&server).await;
    let again = fetch(DEVELOPMENT).await;
    assert_eq!(again, first);
    assert_eq!(
        fetch_answers(&server).await,
        (kept_before + 1.0, read_before)
    );

    // The other tenant's aggregate of the same ids is its own.
    let theirs = fetch(OTHER_TENANT).await;
    assert_eq!(theirs.events.len(), 1);
    assert_eq!(theirs.events[0].content, r#"{"other":true}"#);
    assert_eq!(fetch(DEVELOPMENT).await, first);

    // A commit at the kept answer's version extends it: the very next fetch sees the commit
    // without reading the store.
    let r = for_aggregate(&mut client, "cart", 2, &[(TYPE_A, r#"{"n":3}"#)]).await;
    assert!(r.failure.is_none(), "{:?}", r.failure);
    let (kept, read) = fetch_answers(&server).await;
    let after = fetch(DEVELOPMENT).await;
    assert_eq!(fetch_answers(&server).await, (kept + 1.0, read));
    assert_eq!(after.current_aggregate_root_version, 3);
    assert_eq!(after.events[..2], first.events[..]);
    assert_eq!(after.events[2].content, r#"{"n":3}"#);

    // FetchForAggregateInBatches gets the same kept answer for all events, in one response; a
    // selection of event types is read once and then kept on its own.
    let all = || {
        batches_request(
            DEVELOPMENT,
            ROOT,
            "cart",
            Some(BatchKind::FetchAllEvents(
                FetchAllEventsForAggregateInBatchesRequest {},
            )),
        )
    };
    let only_a = || {
        batches_request(
            DEVELOPMENT,
            ROOT,
            "cart",
            Some(BatchKind::FetchEvents(
                FetchEventsForAggregateInBatchesRequest {
                    event_types: vec![artifact(TYPE_A)],
                },
            )),
        )
    };
    let one = |responses: Vec<FetchForAggregateResponse>| {
        assert_eq!(responses.len(), 1, "{responses:?}");
        let response = responses.into_iter().next().unwrap();
        assert!(response.failure.is_none(), "{:?}", response.failure);
        response.events.unwrap()
    };
    let (kept, read) = fetch_answers(&server).await;
    assert_eq!(one(batches(&mut client, all()).await), after);
    assert_eq!(fetch_answers(&server).await, (kept + 1.0, read));
    let a = one(batches(&mut client, only_a()).await);
    assert_eq!(fetch_answers(&server).await, (kept + 1.0, read + 1.0));
    assert_eq!(a.current_aggregate_root_version, 3);
    let contents: Vec<_> = a.events.iter().map(|e| e.content.as_str()).collect();
    assert_eq!(contents, [r#"{"n":1}"#, r#"{"n":3}"#]);
    assert_eq!(one(batches(&mut client, only_a()).await), a);
    assert_eq!(fetch_answers(&server).await, (kept + 2.0, read + 1.0));

    // A commit of both types extends both answers, each with its own events.
    let r = for_aggregate(
        &mut client,
        "cart",
        3,
        &[(TYPE_B, r#"{"n":4}"#), (TYPE_A, r#"{"n":5}"#)],
    )
    .await;
    assert!(r.failure.is_none(), "{:?}", r.failure);
    let (kept, read) = fetch_answers(&server).await;
    let whole = fetch(DEVELOPMENT).await;
    let a = one(batches(&mut client, only_a()).await);
    assert_eq!(fetch_answers(&server).await, (kept + 2.0, read));
    assert_eq!(whole.current_aggregate_root_version, 5);
    assert_eq!(whole.events.len(), 5);
    assert_eq!(a.current_aggregate_root_version, 5);
    let contents: Vec<_> = a.events.iter().map(|e| e.content.as_str()).collect();
    assert_eq!(contents, [r#"{"n":1}"#, r#"{"n":3}"#, r#"{"n":5}"#]);

    // A restart keeps nothing: what is read from the store is what was kept.
    drop(client);
    drop(reader);
    let mut server = server;
    server.restart().await;
    let mut client = EventStoreClient::new(server.private().await);
    let response = client
        .fetch_for_aggregate(fetch_request(DEVELOPMENT, ROOT, "cart"))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(response.events.as_ref(), Some(&whole));
    assert_eq!(one(batches(&mut client, only_a()).await), a);
    assert_eq!(fetch_answers(&server).await, (0.0, 2.0));
}

#[tokio::test]
async fn fetches_whole_in_bounded_batches_and_by_event_type() {
    let server = Server::start().await;
    // The unary fetch below answers ~5 MiB in one message (the reason batches exist).
    let mut client =
        EventStoreClient::new(server.private().await).max_decoding_message_size(64 << 20);
    // 12 events of ~400 KiB: about 5 per 2 MiB batch.
    let big = format!(r#"{{"payload": "{}"}}"#, "x".repeat(400 * 1024));
    for version in 0..12u64 {
        let t = if version % 3 == 0 { TYPE_B } else { TYPE_A };
        let r = for_aggregate(&mut client, "big", version, &[(t, &big)]).await;
        assert!(r.failure.is_none(), "{:?}", r.failure);
    }
    // A plain commit and another aggregate in between must not show up.
    client
        .commit(commit_request(DEVELOPMENT, &[(TYPE_A, "big", "{}")]))
        .await
        .unwrap();
    client
        .commit_for_aggregate(aggregate_request(
            DEVELOPMENT,
            ROOT,
            "other",
            0,
            &[(TYPE_A, "{}")],
        ))
        .await
        .unwrap();

    let whole = client
        .fetch_for_aggregate(fetch_request(DEVELOPMENT, ROOT, "big"))
        .await
        .unwrap()
        .into_inner();
    let whole = whole.events.unwrap();
    assert_eq!(whole.events.len(), 12);
    assert_eq!(whole.current_aggregate_root_version, 12);

    let all = batches(
        &mut client,
        batches_request(
            DEVELOPMENT,
            ROOT,
            "big",
            Some(BatchKind::FetchAllEvents(
                FetchAllEventsForAggregateInBatchesRequest {},
            )),
        ),
    )
    .await;
    assert!(all.len() >= 3, "{} batches", all.len());
    let mut versions = Vec::new();
    for batch in &all {
        assert!(batch.failure.is_none());
        let events = batch.events.as_ref().unwrap();
        assert_eq!(
            events.current_aggregate_root_version, 12,
            "every batch repeats the header"
        );
        assert_eq!(events.event_source_id, "big");
        let size: usize = events.events.iter().map(|e| e.content.len()).sum();
        assert!(size <= 2 * 1024 * 1024, "a batch of {size} bytes");
        versions.extend(events.events.iter().map(|e| e.aggregate_root_version));
    }
    assert_eq!(versions, (0..12).collect::<Vec<_>>());

    let only_b = batches(
        &mut client,
        batches_request(
            DEVELOPMENT,
            ROOT,
            "big",
            Some(BatchKind::FetchEvents(
                FetchEventsForAggregateInBatchesRequest {
                    event_types: vec![artifact(TYPE_B)],
                },
            )),
        ),
    )
    .await;
    let versions: Vec<u64> = only_b
        .iter()
        .flat_map(|b| {
            b.events
                .as_ref()
                .unwrap()
                .events
                .iter()
                .map(|e| e.aggregate_root_version)
        })
        .collect();
    assert_eq!(versions, [0, 3, 6, 9]);

    // An empty type list selects nothing (as the original): one response, the header alone.
    let none = batches(
        &mut client,
        batches_request(
            DEVELOPMENT,
            ROOT,
            "big",
            Some(BatchKind::FetchEvents(
                FetchEventsForAggregateInBatchesRequest {
                    event_types: vec![],
                },
            )),
        ),
    )
    .await;
    assert_eq!(none.len(), 1);
    assert!(none[0].events.as_ref().unwrap().events.is_empty());
    assert_eq!(
        none[0]
            .events
            .as_ref()
            .unwrap()
            .current_aggregate_root_version,
        12
    );

    // An aggregate without events: one response, version 0.
    let empty = batches(
        &mut client,
        batches_request(
            DEVELOPMENT,
            ROOT,
            "nobody",
            Some(BatchKind::FetchAllEvents(
                FetchAllEventsForAggregateInBatchesRequest {},
            )),
        ),
    )
    .await;
    assert_eq!(empty.len(), 1);
    assert_eq!(
        empty[0]
            .events
            .as_ref()
            .unwrap()
            .current_aggregate_root_version,
        0
    );

    // Neither kind set: a failure.
    let neither = batches(&mut client, batches_request(DEVELOPMENT, ROOT, "big", None)).await;
    assert_eq!(
        failure_id(neither[0].failure.as_ref()),
        Some(failures::OTHER)
    );
}

#[tokio::test]
async fn bad_requests_get_failures_and_write_nothing() {
    let server = Server::start().await;
    let mut client = EventStoreClient::new(server.private().await);
    let unknown = Uuid::from_u128(0xdead);

    let r = client
        .commit(commit_request(unknown, &[(TYPE_A, "es", "{}")]))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(failure_id(r.failure.as_ref()), Some(failures::OTHER));
    let reason = r.failure.unwrap().reason;
    assert!(
        reason.contains(&unknown.to_string()) && reason.contains(&DEVELOPMENT.to_string()),
        "{reason}"
    );
    let r = client
        .fetch_for_aggregate(fetch_request(unknown, ROOT, "es"))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(failure_id(r.failure.as_ref()), Some(failures::OTHER));

    let r = client
        .commit(commit_request(DEVELOPMENT, &[]))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(failure_id(r.failure.as_ref()), Some(failures::NO_EVENTS));
    let r = for_aggregate(&mut client, "es", 0, &[]).await;
    assert_eq!(failure_id(r.failure.as_ref()), Some(failures::NO_EVENTS));

    for (content, what) in [
        ("[1,2]", "array"),
        ("42", "number"),
        ("{", "truncated"),
        ("", "empty"),
        ("{} x", "trailing"),
    ] {
        let r = client
            .commit(commit_request(
                DEVELOPMENT,
                &[(TYPE_A, "es", "{}"), (TYPE_A, "es", content)],
            ))
            .await
            .unwrap()
            .into_inner();
        assert_eq!(
            failure_id(r.failure.as_ref()),
            Some(failures::OTHER),
            "{what}"
        );
        assert!(
            r.failure
                .unwrap()
                .reason
                .contains("events[1].content is not a JSON object"),
            "{what}"
        );
        let r = for_aggregate(&mut client, "es", 0, &[(TYPE_A, content)]).await;
        assert_eq!(
            failure_id(r.failure.as_ref()),
            Some(failures::OTHER),
            "{what}"
        );
    }

    let mut missing_type = commit_request(DEVELOPMENT, &[(TYPE_A, "es", "{}")]);
    missing_type.events[0].event_type = None;
    let r = client.commit(missing_type).await.unwrap().into_inner();
    assert!(r
        .failure
        .unwrap()
        .reason
        .contains("events[0].eventType is missing"));

    let mut short_id = commit_request(DEVELOPMENT, &[(TYPE_A, "es", "{}")]);
    short_id.events[0]
        .event_type
        .as_mut()
        .unwrap()
        .id
        .as_mut()
        .unwrap()
        .value = vec![1, 2, 3];
    let r = client.commit(short_id).await.unwrap().into_inner();
    assert!(r
        .failure
        .unwrap()
        .reason
        .contains("events[0].eventType.id is not a GUID: 3 bytes"));

    let mut empty_source = commit_request(DEVELOPMENT, &[(TYPE_A, "", "{}")]);
    empty_source.events[0].event_source_id.clear();
    let r = client.commit(empty_source).await.unwrap().into_inner();
    assert!(r.failure.unwrap().reason.contains("eventSourceId is empty"));

    let mut no_context = commit_request(DEVELOPMENT, &[(TYPE_A, "es", "{}")]);
    no_context.call_context = None;
    let r = client.commit(no_context).await.unwrap().into_inner();
    assert!(r.failure.unwrap().reason.contains("callContext is missing"));
    let mut no_tenant = commit_request(DEVELOPMENT, &[(TYPE_A, "es", "{}")]);
    no_tenant.call_context = Some(CallRequestContext {
        execution_context: Some(annals_tests::execution_context(DEVELOPMENT)),
        head_id: None,
    });
    no_tenant
        .call_context
        .as_mut()
        .unwrap()
        .execution_context
        .as_mut()
        .unwrap()
        .tenant_id = None;
    let r = client.commit(no_tenant).await.unwrap().into_inner();
    assert!(r
        .failure
        .unwrap()
        .reason
        .contains("executionContext.tenantId is missing"));

    let mut no_root = aggregate_request(DEVELOPMENT, ROOT, "es", 0, &[(TYPE_A, "{}")]);
    no_root.events.as_mut().unwrap().aggregate_root_id = None;
    let r = client
        .commit_for_aggregate(no_root)
        .await
        .unwrap()
        .into_inner();
    assert!(r
        .failure
        .unwrap()
        .reason
        .contains("events.aggregateRootId is missing"));

    // Nothing of the above was written: the first good commit gets sequence number 0 and the
    // aggregate is still new.
    let r = client
        .commit(commit_request(DEVELOPMENT, &[(TYPE_A, "es", "{}")]))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(r.events[0].event_log_sequence_number, 0);
    let r = for_aggregate(&mut client, "es", 0, &[(TYPE_A, "{}")]).await;
    assert!(r.failure.is_none());
}

#[tokio::test]
async fn bad_commits_racing_good_ones_fail_alone() {
    let server = Server::start().await;
    let channel = server.private().await;
    let mut tasks = Vec::new();
    for i in 0..64u32 {
        let mut client = EventStoreClient::new(channel.clone());
        tasks.push(tokio::spawn(async move {
            let content = if i % 4 == 0 {
                "not json"
            } else {
                r#"{"n": 1}"#
            };
            let r = client
                .commit(commit_request(
                    DEVELOPMENT,
                    &[(TYPE_A, &format!("es-{i}"), content)],
                ))
                .await
                .unwrap()
                .into_inner();
            (i % 4 == 0, r)
        }));
    }
    let mut sequence_numbers = Vec::new();
    for task in tasks {
        let (bad, r) = task.await.unwrap();
        if bad {
            assert_eq!(failure_id(r.failure.as_ref()), Some(failures::OTHER));
        } else {
            assert!(r.failure.is_none(), "{:?}", r.failure);
            sequence_numbers.push(r.events[0].event_log_sequence_number);
        }
    }
    sequence_numbers.sort_unstable();
    assert_eq!(
        sequence_numbers,
        (0..48).collect::<Vec<_>>(),
        "48 good commits, gapless"
    );
}

/// Unmounts the test's tmpfs when dropped.
struct Unmount(std::path::PathBuf);

impl Drop for Unmount {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount").arg(&self.0).status();
    }
}

/// On a full disk (a 32 MiB tmpfs, filled by commits), a Commit fails with the persistence or
/// unavailability failure, whose reason does not show the server's data directory; later
/// commits are refused as unavailable (the log is poisoned) and /healthz reports the tenant
/// Unhealthy with 503; the server's log keeps the whole error, path included, at ERROR. Once
/// the file system has room again (remounted larger), the runtime heals the tenant itself,
/// without a restart: /healthz is Healthy again, the next commit lands right after the last
/// acknowledged event (the failed commit's events are gone), and the log says both at ERROR
/// and INFO; the data directory then holds exactly the acknowledged events.
#[tokio::test]
async fn a_full_disk_fails_commits_without_showing_the_servers_paths_and_heals_without_a_restart() {
    let mount = tempfile::tempdir().unwrap();
    let status = std::process::Command::new("mount")
        .args(["-t", "tmpfs", "-o", "size=32m", "annals-e2e"])
        .arg(mount.path())
        .status();
    if !status.is_ok_and(|s| s.success()) {
        assert!(
            std::env::var("ANNALS_ALLOW_NO_MOUNT").is_ok_and(|v| v == "1"),
            "mounting a tmpfs failed (needs root); set ANNALS_ALLOW_NO_MOUNT=1 to skip"
        );
        eprintln!("skipped: no tmpfs mount");
        return;
    }
    let _unmount = Unmount(mount.path().to_owned());
    let data = mount.path().join("data");
    let data_arg = data.display().to_string();
    let mut server = Server::start_with(&[], &["--data-dir", &data_arg], &[]).await;
    let mut client = EventStoreClient::new(server.private().await);
    // Events of 256 KiB until the disk is full (32 MiB: at most 128 commits get through).
    let content = format!(r#"{{"fill":"{}"}}"#, "x".repeat(256 << 10));
    let mut failure = None;
    let mut acknowledged = 0u64;
    for _ in 0..256 {
        let response = client
            .commit(commit_request(DEVELOPMENT, &[(TYPE_A, "es", &content)]))
            .await
            .unwrap()
            .into_inner();
        if let Some(f) = response.failure {
            assert!(response.events.is_empty());
            failure = Some(f);
            break;
        }
        assert_eq!(response.events[0].event_log_sequence_number, acknowledged);
        acknowledged += 1;
    }
    let failure = failure.expect("a commit fails once the disk is full");
    let reason = failure.reason.clone();
    assert!(
        [failures::PERSISTENCE, failures::UNAVAILABLE]
            .contains(&failure_id(Some(&failure)).unwrap()),
        "{failure:?}"
    );
    assert!(
        !reason.contains(&mount.path().display().to_string()) && !reason.contains("/tenants/"),
        "the reason shows a path: {reason}"
    );
    eprintln!("the full disk's failure: {reason}");

    // The log is poisoned now: the next commit is refused as unavailable, and /healthz says
    // so, neither showing the server's paths.
    let response = client
        .commit(commit_request(DEVELOPMENT, &[(TYPE_A, "es", "{}")]))
        .await
        .unwrap()
        .into_inner();
    let failure = response.failure.expect("a poisoned log refuses commits");
    assert_eq!(
        failure_id(Some(&failure)),
        Some(failures::UNAVAILABLE),
        "{failure:?}"
    );
    assert!(failure.reason.contains("poisoned"), "{failure:?}");
    assert!(
        !failure.reason.contains(&data_arg),
        "the reason shows a path: {failure:?}"
    );
    let (status, body) = Server::http_get(server.ports.web, "/healthz").await;
    assert_eq!(status, 503, "{body}");
    let report: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(report["Status"], "Unhealthy", "{body}");
    let entry = report["Entries"]["EventStoreHealthCheck"]["Data"][DEVELOPMENT.to_string()]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(entry.contains("poisoned"), "{body}");
    assert!(!body.contains(&data_arg), "/healthz shows a path: {body}");

    // Room again: the runtime heals the tenant by itself (its first attempts, on the full
    // disk, fail and back off: 1 s, 2 s, 4 s...).
    let remounted = std::process::Command::new("mount")
        .args(["-o", "remount,size=96m"])
        .arg(mount.path())
        .status()
        .unwrap();
    assert!(remounted.success());
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    loop {
        let (status, body) = Server::http_get(server.ports.web, "/healthz").await;
        if status == 200 {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "not healed within 60 s: {body}\n{}",
            server.log()
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    let response = client
        .commit(commit_request(
            DEVELOPMENT,
            &[(TYPE_A, "es", r#"{"after":"heal"}"#)],
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(response.failure, None);
    assert_eq!(
        response.events[0].event_log_sequence_number, acknowledged,
        "the commit after the heal follows the last acknowledged event"
    );

    assert!(server.stop().await);
    let log = server.log();
    assert!(
        log.lines()
            .any(|l| l.contains("ERROR") && l.contains(&data_arg) && l.contains("storage failure")),
        "the log keeps the full error at ERROR:\n{log}"
    );
    assert!(
        log.lines()
            .any(|l| l.contains("ERROR") && l.contains("refuses work after a storage failure")),
        "the refusal is logged at ERROR:\n{log}"
    );
    assert!(
        log.lines()
            .any(|l| l.contains("INFO") && l.contains("is healed") && l.contains("No space")),
        "the heal is logged at INFO with its cause:\n{log}"
    );
    // What is on disk: the acknowledged events, then the one after the heal, nothing else.
    let engine = annals_engine::Engine::open(annals_engine::EngineConfig::new(&data)).unwrap();
    let tenant = engine.tenant(annals_engine::TenantId(DEVELOPMENT)).unwrap();
    let events = tenant
        .event_log()
        .unwrap()
        .read(annals_engine::EventLogSequenceNumber(0), 10_000, usize::MAX)
        .unwrap()
        .events()
        .unwrap();
    assert_eq!(events.len() as u64, acknowledged + 1);
    assert!(events[..acknowledged as usize]
        .iter()
        .all(|e| e.content == content));
    assert_eq!(events[acknowledged as usize].content, r#"{"after":"heal"}"#);
}
