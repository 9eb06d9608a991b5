//! Filters over the reverse-call stream against the real binary, driven by a scripted head:
//! registration failures of the three kinds, every event of the scope (public ones only for
//! public filters) requested one at a time in log order, the included ones written to the
//! filter's stream (read back from the data directory with annals-engine after the server
//! stopped), partitions as answered, retries, and no duplicate entry after a SIGKILL.
#![allow(clippy::unwrap_used, reason = "tests")]

use std::time::Duration;

use annals_engine::{Engine, EngineConfig, ScopeId, StreamEntry, StreamPosition, TenantId};
use annals_tests::head::{
    Answer, Answering, ClientMessage, Filter, Head, Kind, Request, MUST, QUIET,
};
use annals_tests::proto::dolittle;
use annals_tests::{commit, commit_request, failure_id, failures, Server, DEVELOPMENT};
use dolittle::runtime::events::event_store_client::EventStoreClient;
use dolittle::runtime::events::CommittedEvent;
use uuid::Uuid;

const TYPE_A: Uuid = Uuid::from_u128(0xa1);
const TYPE_B: Uuid = Uuid::from_u128(0xb1);
const NIL_PARTITION: &str = "00000000-0000-0000-0000-000000000000";
/// The entries of the filter's stream, read from the stopped server's data directory.
fn stream(server: &Server, scope: Uuid, filter: Uuid) -> Vec<StreamEntry> {
    let engine = Engine::open(EngineConfig::new(server.dir.join("data"))).unwrap();
    engine
        .tenant(TenantId(DEVELOPMENT))
        .unwrap()
        .read_stream(ScopeId(scope), filter, StreamPosition::ZERO, usize::MAX)
        .unwrap()
}

/// The entries of the public filter's public stream, read like [`stream`].
fn public_stream(server: &Server, filter: Uuid) -> Vec<StreamEntry> {
    let engine = Engine::open(EngineConfig::new(server.dir.join("data"))).unwrap();
    engine
        .tenant(TenantId(DEVELOPMENT))
        .unwrap()
        .read_public_stream(filter, StreamPosition::ZERO, usize::MAX)
        .unwrap()
}

/// (position, sequence number, partition) of each entry.
fn entries(stream: &[StreamEntry]) -> Vec<(u64, u64, String)> {
    stream
        .iter()
        .map(|e| {
            (
                e.position.0,
                e.event_log_sequence_number.0,
                e.partition.clone(),
            )
        })
        .collect()
}

async fn commit_mixed(server: &Server, n: usize) -> Vec<CommittedEvent> {
    let events: Vec<(Uuid, String)> = (0..n)
        .map(|i| {
            (
                if i % 3 == 0 { TYPE_B } else { TYPE_A },
                format!("es-{}", i % 2),
            )
        })
        .collect();
    let events: Vec<(Uuid, &str, &str)> = events
        .iter()
        .map(|(t, es)| (*t, es.as_str(), "{}"))
        .collect();
    commit(&server.private().await, DEVELOPMENT, &events).await
}

async fn refused(server: &Server, first: ClientMessage) -> dolittle::protobuf::Failure {
    let (mut head, response) = Head::register(server.private().await, first).await;
    let failure = response
        .expect("a registration response")
        .expect("the registration is refused");
    assert!(head.ended(MUST).await.is_some(), "the stream ends");
    failure
}

/// Each kind of filter: a first message that is no registration, the nil filter id and a
/// second connection of a connected filter are refused.
#[tokio::test]
async fn filter_registration_failures() {
    let server = Server::start().await;
    for kind in [Kind::Filter, Kind::PartitionedFilter, Kind::PublicFilter] {
        let failure = refused(&server, ClientMessage::pong(kind)).await;
        assert_eq!(
            failure_id(Some(&failure)),
            Some(failures::FILTER_ARGUMENTS),
            "{kind:?}"
        );
        assert!(
            failure
                .reason
                .starts_with("Connection arguments were not received"),
            "{kind:?}: {}",
            failure.reason
        );

        let failure = refused(&server, Filter::new(kind, Uuid::nil()).message()).await;
        assert_eq!(
            failure_id(Some(&failure)),
            Some(failures::FILTER_NIL_ID),
            "{kind:?}"
        );

        let mut no_ping = Filter::new(kind, Uuid::new_v4());
        no_ping.ping_interval = None;
        let failure = refused(&server, no_ping.message()).await;
        assert_eq!(
            failure_id(Some(&failure)),
            Some(failures::FILTER_ARGUMENTS),
            "{kind:?}"
        );

        let filter = Filter::new(kind, Uuid::new_v4());
        let first = Head::connect(server.private().await, filter.message()).await;
        let failure = refused(&server, filter.message()).await;
        assert_eq!(
            failure_id(Some(&failure)),
            Some(failures::FILTER_ARGUMENTS),
            "{kind:?}"
        );
        first.abort();
        let _again = Head::reconnect(server.private().await, filter.message()).await;
    }
}

/// An unpartitioned filter is asked about every event of the log (any type), before and after
/// it registered, one at a time in log order; the included ones are its stream, in order,
/// in the nil partition.
#[tokio::test]
async fn unpartitioned_filter_writes_the_included_events_in_order() {
    let mut server = Server::start().await;
    let mut committed = commit_mixed(&server, 4).await;
    let filter = Filter::new(Kind::Filter, Uuid::new_v4());
    let mut head = Head::connect(server.private().await, filter.message()).await;
    let mut asked: Vec<Request> = Vec::new();
    for _ in 0..2 {
        let r = head.request().await;
        head.no_request(QUIET / 2).await;
        assert!(head.filter(&r, r.seq() % 2 == 0, "ignored").await);
        asked.push(r);
    }
    committed.extend(commit_mixed(&server, 4).await);
    while asked.len() < committed.len() {
        let r = head.request().await;
        assert!(head.filter(&r, r.seq() % 2 == 0, "ignored").await);
        asked.push(r);
    }
    head.no_request(QUIET).await;
    for (r, event) in asked.iter().zip(&committed) {
        assert_eq!(&r.event, event, "every event, verbatim, in log order");
        assert_eq!(r.scope_id, Some(Uuid::nil()));
        assert_eq!(r.tenant(), DEVELOPMENT);
        assert!(r.call_id.is_some());
        assert!(r.retry.is_none());
    }
    head.close().await;
    assert!(server.stop().await);
    let expected: Vec<(u64, u64, String)> = [0u64, 2, 4, 6]
        .iter()
        .enumerate()
        .map(|(p, s)| (p as u64, *s, NIL_PARTITION.to_owned()))
        .collect();
    assert_eq!(entries(&stream(&server, Uuid::nil(), filter.id)), expected);
}

/// A partitioned filter is asked one event at a time, in log order; its stream keeps the
/// partition each answer named.
#[tokio::test]
async fn partitioned_filter_writes_the_answered_partitions() {
    let mut server = Server::start().await;
    commit_mixed(&server, 5).await;
    let filter = Filter::new(Kind::PartitionedFilter, Uuid::new_v4());
    let mut head = Head::connect(server.private().await, filter.message()).await;
    for expected in 0..5 {
        let r = head.request().await;
        assert_eq!(r.seq(), expected);
        head.no_request(QUIET / 4).await;
        let partition = format!("p-{}-{}", r.event_source(), r.seq());
        assert!(head.filter(&r, r.seq() != 1, &partition).await);
    }
    head.no_request(QUIET).await;
    head.close().await;
    assert!(server.stop().await);
    let expected = vec![
        (0, 0, "p-es-0-0".to_owned()),
        (1, 2, "p-es-0-2".to_owned()),
        (2, 3, "p-es-1-3".to_owned()),
        (3, 4, "p-es-0-4".to_owned()),
    ];
    assert_eq!(entries(&stream(&server, Uuid::nil(), filter.id)), expected);
}

/// A public filter is asked only about public events; its stream is a public stream, kept
/// apart from a private stream of the same id (the original's `public-stream-<id>`).
#[tokio::test]
async fn public_filter_sees_only_public_events() {
    let mut server = Server::start().await;
    let mut request = commit_request(
        DEVELOPMENT,
        &[
            (TYPE_A, "es", "{}"),
            (TYPE_A, "es", "{}"),
            (TYPE_B, "es", "{}"),
            (TYPE_A, "other", "{}"),
            (TYPE_B, "es", "{}"),
        ],
    );
    for i in [1, 2, 4] {
        request.events[i].public = true;
    }
    let response = EventStoreClient::new(server.private().await)
        .commit(request)
        .await
        .unwrap()
        .into_inner();
    assert!(response.failure.is_none());
    let filter = Filter::new(Kind::PublicFilter, Uuid::new_v4());
    let mut head = Head::connect(server.private().await, filter.message()).await;
    let mut asked = Vec::new();
    for _ in 0..3 {
        let r = head.request().await;
        assert!(r.event.public);
        head.no_request(QUIET / 4).await;
        assert!(head.filter(&r, r.seq() != 2, "public").await);
        asked.push(r.seq());
    }
    head.no_request(QUIET).await;
    assert_eq!(asked, vec![1, 2, 4]);
    head.close().await;
    assert!(server.stop().await);
    let expected = vec![(0, 1, "public".to_owned()), (1, 4, "public".to_owned())];
    assert_eq!(entries(&public_stream(&server, filter.id)), expected);
    assert!(
        stream(&server, Uuid::nil(), filter.id).is_empty(),
        "no private stream of the same id"
    );
}

/// A filter in another scope is asked about nothing of the event log.
#[tokio::test]
async fn filter_in_another_scope_sees_nothing_of_the_event_log() {
    let server = Server::start().await;
    commit_mixed(&server, 2).await;
    let mut filter = Filter::new(Kind::Filter, Uuid::new_v4());
    filter.scope = Uuid::new_v4();
    let mut head = Head::connect(server.private().await, filter.message()).await;
    head.no_request(QUIET).await;
}

/// A failing filter with retry is asked again after the timeout, with the retry state, and
/// the event is written once.
#[tokio::test]
async fn a_retried_filter_event_is_written_once() {
    let mut server = Server::start().await;
    commit_mixed(&server, 2).await;
    let filter = Filter::new(Kind::Filter, Uuid::new_v4());
    let mut head = Head::connect(server.private().await, filter.message()).await;
    let first = head.request().await;
    let answer = Answer::failure("not yet", true, Duration::from_millis(500));
    assert!(head.answer(&first, answer).await);
    let retry = head.request().await;
    assert_eq!(retry.seq(), 0);
    let state = retry.retry.clone().expect("a retry state");
    assert_eq!(
        (state.failure_reason.as_str(), state.retry_count),
        ("not yet", 1)
    );
    assert!(head.filter(&retry, true, "").await);
    let second = head.request().await;
    assert_eq!((second.seq(), second.retry_count()), (1, 0));
    assert!(head.filter(&second, true, "").await);
    head.no_request(QUIET).await;
    head.close().await;
    assert!(server.stop().await);
    let seqs: Vec<u64> = stream(&server, Uuid::nil(), filter.id)
        .iter()
        .map(|e| e.event_log_sequence_number.0)
        .collect();
    assert_eq!(seqs, vec![0, 1]);
}

/// A filter head that dies resumes, on registering again, at the first unanswered event.
#[tokio::test]
async fn a_filter_resumes_after_its_head_died() {
    let server = Server::start().await;
    commit_mixed(&server, 5).await;
    let filter = Filter::new(Kind::PartitionedFilter, Uuid::new_v4());
    let mut head = Head::connect(server.private().await, filter.message()).await;
    for _ in 0..3 {
        let r = head.request().await;
        assert!(head.filter(&r, true, "p").await);
    }
    let unanswered = head.request().await;
    assert_eq!(unanswered.seq(), 3);
    head.abort();
    let mut head = Head::reconnect(server.private().await, filter.message()).await;
    let r = head.request().await;
    assert_eq!(r.seq(), 3, "resumes at the unanswered event");
}

/// SIGKILL in the middle of filtering, then a restart: the stream holds every included event
/// exactly once, in log order, positions without gaps.
#[tokio::test]
async fn a_killed_server_never_duplicates_stream_entries() {
    let mut server = Server::start().await;
    commit_mixed(&server, 30).await;
    let filter = Filter::new(Kind::Filter, Uuid::new_v4());
    let mut head = Head::connect(server.private().await, filter.message()).await;
    let included = |r: &Request| r.seq() % 3 != 1;
    for _ in 0..15 {
        let r = head.request().await;
        assert!(head.filter(&r, included(&r), "").await);
    }
    server.kill().await;
    drop(head);
    server.relaunch().await;
    let mut head = Head::reconnect(server.private().await, filter.message()).await;
    let first = head.request().await;
    assert!(first.seq() <= 15, "skipped to {}", first.seq());
    assert!(head.filter(&first, included(&first), "").await);
    let mut last = first.seq();
    while last < 29 {
        let r = head.request().await;
        assert_eq!(r.seq(), last + 1);
        assert!(head.filter(&r, included(&r), "").await);
        last = r.seq();
    }
    head.no_request(QUIET).await;
    head.close().await;
    assert!(server.stop().await);
    let stream = stream(&server, Uuid::nil(), filter.id);
    let expected: Vec<(u64, u64, String)> = (0..30u64)
        .filter(|s| s % 3 != 1)
        .enumerate()
        .map(|(p, s)| (p as u64, s, NIL_PARTITION.to_owned()))
        .collect();
    assert_eq!(entries(&stream), expected);
}

/// A filter's metrics: events processed and its position, labelled kind="filter".
#[tokio::test]
async fn filter_metrics_count_the_answers() {
    let server = Server::start().await;
    commit_mixed(&server, 3).await;
    let filter = Filter::new(Kind::Filter, Uuid::new_v4());
    let mut head = Head::connect(server.private().await, filter.message()).await;
    for _ in 0..3 {
        let r = head.request().await;
        assert!(head.filter(&r, true, "").await);
    }
    let processor = filter.id.to_string();
    let tenant = DEVELOPMENT.to_string();
    let labels = [
        ("kind", "filter"),
        ("processor", processor.as_str()),
        ("tenant", tenant.as_str()),
    ];
    let deadline = tokio::time::Instant::now() + MUST;
    loop {
        let (_, text) = Server::http_get(server.ports.metrics, "/metrics").await;
        let processed =
            annals_tests::metric(&text, "annals_processor_events_processed_total", &labels);
        let position = annals_tests::metric(&text, "annals_processor_position", &labels);
        if (processed, position) == (Some(3.0), Some(3.0)) {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "processed {processed:?}, position {position:?}:\n{text}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// A filter head that never pongs is dropped; a message with no oneof or a second
/// registration ends a filter stream with INVALID_ARGUMENT.
#[tokio::test]
async fn filter_streams_end_on_silence_and_garbage() {
    let server = Server::start().await;
    let mut silent = Filter::new(Kind::Filter, Uuid::new_v4());
    silent.ping_interval = Some(Duration::from_secs(1));
    let mut silent = Head::open(server.private().await, silent.message(), false);
    assert_eq!(silent.registration().await.unwrap(), None);
    for kind in [Kind::Filter, Kind::PartitionedFilter, Kind::PublicFilter] {
        let filter = Filter::new(kind, Uuid::new_v4());
        let mut head = Head::connect(server.private().await, filter.message()).await;
        assert!(head.send_empty().await);
        let (_, result) = head.ended(MUST).await.expect("the stream ends");
        assert_eq!(
            result.unwrap_err().code(),
            tonic::Code::InvalidArgument,
            "{kind:?}"
        );

        let mut head = Head::reconnect(server.private().await, filter.message()).await;
        assert!(head.send(filter.message()).await);
        let (_, result) = head.ended(MUST).await.expect("the stream ends");
        assert_eq!(
            result.unwrap_err().code(),
            tonic::Code::InvalidArgument,
            "{kind:?}"
        );
    }
    let (_, result) = silent
        .ended(MUST)
        .await
        .expect("the silent head is dropped");
    assert!(result.is_err());
    assert!(silent.pings() >= 1);
}

/// SIGTERM with a filter request outstanding: after the restart the filter resumes at the
/// unanswered event and its stream holds each included event once.
#[tokio::test]
async fn a_stopped_server_resumes_the_filter() {
    let mut server = Server::start().await;
    commit_mixed(&server, 6).await;
    let filter = Filter::new(Kind::PartitionedFilter, Uuid::new_v4());
    let mut head = Head::connect(server.private().await, filter.message()).await;
    for _ in 0..3 {
        let r = head.request().await;
        assert!(head.filter(&r, true, "p").await);
    }
    let unanswered = head.request().await;
    server.restart().await;
    drop(head);
    let mut head = Head::reconnect(server.private().await, filter.message()).await;
    for expected in unanswered.seq()..6 {
        let r = head.request().await;
        assert_eq!(r.seq(), expected);
        assert!(head.filter(&r, true, "p").await);
    }
    head.no_request(QUIET).await;
    head.close().await;
    assert!(server.stop().await);
    let seqs: Vec<u64> = stream(&server, Uuid::nil(), filter.id)
        .iter()
        .map(|e| e.event_log_sequence_number.0)
        .collect();
    assert_eq!(seqs, (0..6).collect::<Vec<u64>>());
}

/// Commits racing a filter's catch-up: each event asked once, in order, and written once.
#[tokio::test]
async fn filter_catch_up_meets_concurrent_commits() {
    let mut server = Server::start().await;
    commit_mixed(&server, 100).await;
    let filter = Filter::new(Kind::Filter, Uuid::new_v4());
    let mut head = Head::connect(server.private().await, filter.message()).await;
    let channel = server.private().await;
    let writer = tokio::spawn(async move {
        for _ in 0..40 {
            commit(
                &channel,
                DEVELOPMENT,
                &[(TYPE_A, "x", "{}"), (TYPE_B, "y", "{}")],
            )
            .await;
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    });
    for expected in 0..180 {
        let r = head.request().await;
        assert_eq!(r.seq(), expected);
        assert!(head.filter(&r, r.seq() % 2 == 1, "").await);
    }
    writer.await.unwrap();
    head.no_request(QUIET).await;
    head.close().await;
    assert!(server.stop().await);
    let stream = stream(&server, Uuid::nil(), filter.id);
    let expected: Vec<(u64, u64, String)> = (0..180u64)
        .filter(|s| s % 2 == 1)
        .enumerate()
        .map(|(p, s)| (p as u64, s, NIL_PARTITION.to_owned()))
        .collect();
    assert_eq!(entries(&stream), expected);
}

/// SIGKILL while a head filters as fast as it can, then a restart: the stream holds every
/// included event exactly once, in log order.
#[tokio::test]
async fn a_server_killed_under_load_never_duplicates_stream_entries() {
    let mut server = Server::start().await;
    let channel = server.private().await;
    let events: Vec<(Uuid, &str, &str)> = (0..500).map(|_| (TYPE_A, "es", "{}")).collect();
    for _ in 0..4 {
        commit(&channel, DEVELOPMENT, &events).await;
    }
    let included = |r: &Request| r.seq() % 4 != 3;
    let answer = move |r: &Request| Answer::Filter {
        included: included(r),
        partition: format!("p{}", r.seq() % 5),
    };
    let filter = Filter::new(Kind::PartitionedFilter, Uuid::new_v4());
    let head = Head::connect(server.private().await, filter.message()).await;
    let answering = Answering::start(head, answer);
    answering.wait_answered(700).await;
    server.kill().await;
    let (head, answered) = answering.stop().await;
    drop(head);
    server.relaunch().await;
    let head = Head::reconnect(server.private().await, filter.message()).await;
    let answering = Answering::start(head, answer);
    let deadline = tokio::time::Instant::now() + MUST;
    while answering.answered().last().map(Request::seq) != Some(1999) {
        assert!(
            tokio::time::Instant::now() < deadline,
            "not at the end in {MUST:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let (head, after) = answering.stop().await;
    let first = after[0].seq();
    assert!(
        first <= answered.len() as u64,
        "resumed at {first} after {} answered",
        answered.len()
    );
    head.close().await;
    assert!(server.stop().await);
    let expected: Vec<(u64, u64, String)> = (0..2000u64)
        .filter(|s| s % 4 != 3)
        .enumerate()
        .map(|(p, s)| (p as u64, s, format!("p{}", s % 5)))
        .collect();
    assert_eq!(entries(&stream(&server, Uuid::nil(), filter.id)), expected);
}

/// A partitioned filter whose head fails one event source's event with retry: every included
/// event is written once, each partition's in log order.
#[tokio::test]
async fn a_partitioned_filter_failure_writes_each_included_event_once() {
    let mut server = Server::start().await;
    let events: Vec<(Uuid, &str, &str)> = (0..12)
        .map(|i| (TYPE_A, ["a", "b", "c"][i % 3], "{}"))
        .collect();
    commit(&server.private().await, DEVELOPMENT, &events).await;
    let filter = Filter::new(Kind::PartitionedFilter, Uuid::new_v4());
    let mut head = Head::connect(server.private().await, filter.message()).await;
    let mut failed = false;
    let mut answered = Vec::new();
    while answered.len() < 12 {
        let r = head.request().await;
        if r.event_source() == "a" && r.seq() == 3 && !failed {
            failed = true;
            let answer = Answer::failure("a later", true, Duration::from_millis(500));
            assert!(head.answer(&r, answer).await);
            continue;
        }
        assert!(head.filter(&r, true, r.event_source()).await);
        answered.push(r.seq());
    }
    head.no_request(QUIET).await;
    head.close().await;
    assert!(server.stop().await);
    let stream = stream(&server, Uuid::nil(), filter.id);
    let positions: Vec<u64> = stream.iter().map(|e| e.position.0).collect();
    assert_eq!(positions, (0..12).collect::<Vec<u64>>());
    let mut seqs: Vec<u64> = stream
        .iter()
        .map(|e| e.event_log_sequence_number.0)
        .collect();
    for es in ["a", "b", "c"] {
        let of: Vec<u64> = stream
            .iter()
            .filter(|e| e.partition == es)
            .map(|e| e.event_log_sequence_number.0)
            .collect();
        assert!(of.windows(2).all(|w| w[0] < w[1]), "{es}: {of:?}");
        assert!(of
            .iter()
            .all(|s| events[usize::try_from(*s).unwrap()].1 == es));
    }
    seqs.sort_unstable();
    assert_eq!(
        seqs,
        (0..12).collect::<Vec<u64>>(),
        "each included event once"
    );
}

/// SIGTERM with a filter request outstanding, answered (included) while the server drains:
/// after a restart the stream holds every included event once.
#[tokio::test]
async fn an_answer_during_shutdown_is_written_at_most_once() {
    let mut server = Server::start().await;
    commit_mixed(&server, 4).await;
    let filter = Filter::new(Kind::Filter, Uuid::new_v4());
    let mut head = Head::connect(server.private().await, filter.message()).await;
    let first = head.request().await;
    assert!(head.filter(&first, true, "").await);
    let outstanding = head.request().await;
    let (stopped, ()) = tokio::join!(server.stop(), async {
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert!(head.filter(&outstanding, true, "").await);
        let _ = head.ended(MUST).await;
    });
    assert!(stopped);
    server.relaunch().await;
    let mut head = Head::reconnect(server.private().await, filter.message()).await;
    let first = head.request().await;
    assert!(first.seq() <= 2, "resumed at {}", first.seq());
    assert!(head.filter(&first, true, "").await);
    for expected in first.seq() + 1..4 {
        let r = head.request().await;
        assert_eq!(r.seq(), expected);
        assert!(head.filter(&r, true, "").await);
    }
    head.no_request(QUIET).await;
    head.close().await;
    assert!(server.stop().await);
    let seqs: Vec<u64> = stream(&server, Uuid::nil(), filter.id)
        .iter()
        .map(|e| e.event_log_sequence_number.0)
        .collect();
    assert_eq!(seqs, vec![0, 1, 2, 3]);
}

/// Each configured tenant is filtered on its own: its own requests, its own stream.
#[tokio::test]
async fn each_tenant_gets_its_own_filtered_stream() {
    let tenant_a = Uuid::from_u128(0x1111_1111_0000_4000_8000_0000_0000_0001);
    let tenant_b = Uuid::from_u128(0x2222_2222_0000_4000_8000_0000_0000_0002);
    let yaml = format!("tenants:\n  {tenant_a}: {{}}\n  {tenant_b}: {{}}\n");
    let mut server = Server::start_with(&[(".dolittle/runtime.yml", &yaml)], &[], &[]).await;
    let channel = server.private().await;
    commit(
        &channel,
        tenant_a,
        &[(TYPE_A, "a", "{}"), (TYPE_B, "a", "{}")],
    )
    .await;
    commit(&channel, tenant_b, &[(TYPE_B, "b", "{}")]).await;
    let filter = Filter::new(Kind::PartitionedFilter, Uuid::new_v4());
    let mut head = Head::connect(server.private().await, filter.message()).await;
    let mut asked = Vec::new();
    for _ in 0..3 {
        let r = head.request().await;
        let tenant = r.tenant();
        assert!(head.filter(&r, true, &tenant.to_string()).await);
        asked.push((tenant, r.seq()));
    }
    head.no_request(QUIET).await;
    asked.sort();
    assert_eq!(asked, vec![(tenant_a, 0), (tenant_a, 1), (tenant_b, 0)]);
    head.close().await;
    assert!(server.stop().await);
    let engine = Engine::open(EngineConfig::new(server.dir.join("data"))).unwrap();
    for (tenant, expected) in [(tenant_a, vec![0, 1]), (tenant_b, vec![0])] {
        let stream = engine
            .tenant(TenantId(tenant))
            .unwrap()
            .read_stream(
                ScopeId(Uuid::nil()),
                filter.id,
                StreamPosition::ZERO,
                usize::MAX,
            )
            .unwrap();
        let seqs: Vec<u64> = stream
            .iter()
            .map(|e| e.event_log_sequence_number.0)
            .collect();
        assert_eq!(seqs, expected);
        assert!(stream.iter().all(|e| e.partition == tenant.to_string()));
    }
}

/// An unpartitioned filter failing without retry stops; registering again retries the
/// failed event and the stream stays in log order.
#[tokio::test]
async fn a_filter_failing_without_retry_stops_until_it_registers_again() {
    let mut server = Server::start().await;
    commit_mixed(&server, 3).await;
    let filter = Filter::new(Kind::Filter, Uuid::new_v4());
    let mut head = Head::connect(server.private().await, filter.message()).await;
    let first = head.request().await;
    assert!(head.filter(&first, true, "").await);
    let failed = head.request().await;
    assert_eq!(failed.seq(), 1);
    let answer = Answer::failure("no", false, Duration::ZERO);
    assert!(head.answer(&failed, answer).await);
    head.no_request(QUIET).await;
    head.abort();
    let mut head = Head::reconnect(server.private().await, filter.message()).await;
    for expected in 1..3 {
        let r = head.request().await;
        assert_eq!(r.seq(), expected);
        assert!(head.filter(&r, true, "").await);
    }
    head.no_request(QUIET).await;
    head.close().await;
    assert!(server.stop().await);
    let seqs: Vec<u64> = stream(&server, Uuid::nil(), filter.id)
        .iter()
        .map(|e| e.event_log_sequence_number.0)
        .collect();
    assert_eq!(seqs, vec![0, 1, 2]);
}
