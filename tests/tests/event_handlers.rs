//! Event handlers over the reverse-call stream against the real binary, driven by a scripted
//! head: registration and its failures, catch-up then live delivery in log order, one request
//! at a time or N partitions at once, start and stop positions, retries, failures that stop a
//! handler or park a partition, keep-alive, graceful disconnect, malformed input, resuming
//! after a dead head or a restarted server, and bounded memory under a slow head.
#![allow(clippy::unwrap_used, reason = "tests")]

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::time::Duration;

use annals_tests::head::{
    clock_past, registration_message, time, Answer, Answering, ClientMessage, EventHandler, Head,
    Incoming, Kind, Position, Request, Selected, MUST, QUIET,
};
use annals_tests::proto::dolittle;
use annals_tests::{commit, failure_id, failures, get_one, id, Server, DEVELOPMENT};
use dolittle::execution::ExecutionContext;
use dolittle::runtime::events::processing::event_handler_client_to_runtime_message::Message;
use dolittle::runtime::events::processing::management::tenant_scoped_stream_processor_status::Status as ProcessorStatus;
use dolittle::runtime::events::processing::EventHandlerClientToRuntimeMessage;
use dolittle::runtime::events::CommittedEvent;
use tonic::Code;
use uuid::Uuid;

const TYPE_A: Uuid = Uuid::from_u128(0xa1);
const TYPE_B: Uuid = Uuid::from_u128(0xb1);
const TYPE_OTHER: Uuid = Uuid::from_u128(0xc1);
const TENANT_A: Uuid = Uuid::from_u128(0x1111_1111_0000_4000_8000_0000_0000_0001);
const TENANT_B: Uuid = Uuid::from_u128(0x2222_2222_0000_4000_8000_0000_0000_0002);

/// Commits `n` events of TYPE_A for the event source `es`, with content naming their index.
async fn commit_n(server: &Server, es: &str, n: usize) -> Vec<CommittedEvent> {
    let contents: Vec<String> = (0..n).map(|i| format!(r#"{{"i":{i}}}"#)).collect();
    let events: Vec<(Uuid, &str, &str)> =
        contents.iter().map(|c| (TYPE_A, es, c.as_str())).collect();
    commit(&server.private().await, DEVELOPMENT, &events).await
}

/// Answers the next `n` requests successfully; returns them.
async fn handle(head: &mut Head, n: usize) -> Vec<Request> {
    let mut out = Vec::new();
    for _ in 0..n {
        let r = head.request().await;
        assert!(head.succeed(&r).await);
        out.push(r);
    }
    out
}

fn seqs(requests: &[Request]) -> Vec<u64> {
    requests.iter().map(Request::seq).collect()
}

/// What the request's context should be: the registration's, with the tenant and the event's
/// correlation.
fn expected_context(
    registration: &EventHandler,
    tenant: Uuid,
    event: &CommittedEvent,
) -> ExecutionContext {
    let mut context = registration.execution_context.clone();
    context.tenant_id = Some(id(tenant));
    context
        .correlation_id
        .clone_from(&event.execution_context.as_ref().unwrap().correlation_id);
    context
}

async fn refused(server: &Server, first: ClientMessage) -> dolittle::protobuf::Failure {
    let (mut head, response) = Head::register(server.private().await, first).await;
    let failure = response
        .expect("a registration response")
        .expect("the registration is refused");
    assert!(
        head.ended(MUST).await.is_some(),
        "the stream ends after a refused registration"
    );
    failure
}

/// The scope annals keeps public streams' positions under (the largest Uuid) is no scope a
/// head may name: an event handler or a filter registered in it is refused, with the reason.
#[tokio::test]
async fn the_scope_reserved_for_public_streams_is_refused() {
    let server = Server::start().await;
    let handler = EventHandler::new(Uuid::new_v4(), &[TYPE_A]).scope(Uuid::max());
    let failure = refused(&server, handler.message()).await;
    assert_eq!(
        failure_id(Some(&failure)),
        Some(failures::HANDLER_ARGUMENTS)
    );
    assert!(
        failure.reason.contains("reserved for public streams"),
        "{failure:?}"
    );
    for kind in [Kind::Filter, Kind::PartitionedFilter] {
        let mut filter = annals_tests::head::Filter::new(kind, Uuid::new_v4());
        filter.scope = Uuid::max();
        let failure = refused(&server, filter.message()).await;
        assert_eq!(
            failure_id(Some(&failure)),
            Some(failures::FILTER_ARGUMENTS),
            "{kind:?}"
        );
        assert!(
            failure.reason.contains("reserved for public streams"),
            "{failure:?}"
        );
    }
}

/// A head whose first message is a pong is refused with the arguments failure.
#[tokio::test]
async fn first_message_not_a_registration_is_refused() {
    let server = Server::start().await;
    let failure = refused(&server, ClientMessage::pong(Kind::EventHandler)).await;
    assert_eq!(
        failure_id(Some(&failure)),
        Some(failures::HANDLER_ARGUMENTS)
    );
    assert!(
        failure
            .reason
            .starts_with("Connection arguments were not received"),
        "{}",
        failure.reason
    );
}

/// Registrations missing the call context, the execution context or the ping interval are
/// refused with the arguments failure.
#[tokio::test]
async fn registration_without_its_arguments_is_refused() {
    let server = Server::start().await;
    let handler = EventHandler::new(Uuid::new_v4(), &[TYPE_A]);
    let mut no_call_context = handler.request();
    no_call_context.call_context = None;
    let mut no_execution_context = handler.request();
    no_execution_context
        .call_context
        .as_mut()
        .unwrap()
        .execution_context = None;
    let no_ping_interval = handler.clone().ping_interval(None).request();
    for request in [no_call_context, no_execution_context, no_ping_interval] {
        let failure = refused(&server, registration_message(request.clone())).await;
        assert_eq!(
            failure_id(Some(&failure)),
            Some(failures::HANDLER_ARGUMENTS),
            "{request:?}"
        );
        assert!(
            failure
                .reason
                .starts_with("Connection arguments were not received"),
            "{}",
            failure.reason
        );
    }
    // None of them registered the handler.
    let _head = Head::connect(server.private().await, handler.message()).await;
}

/// A registration from another microservice or environment is refused, naming the mismatch.
#[tokio::test]
async fn registration_from_another_microservice_or_environment_is_refused() {
    let server = Server::start().await;
    let mut other_microservice = EventHandler::new(Uuid::new_v4(), &[TYPE_A]);
    other_microservice.execution_context.microservice_id = Some(id(Uuid::new_v4()));
    let mut other_environment = EventHandler::new(Uuid::new_v4(), &[TYPE_A]);
    other_environment.execution_context.environment = "Production".into();
    for (handler, named) in [
        (other_microservice, "icroservice"),
        (other_environment, "nvironment"),
    ] {
        let failure = refused(&server, handler.message()).await;
        assert_eq!(
            failure_id(Some(&failure)),
            Some(failures::HANDLER_ARGUMENTS)
        );
        assert!(
            failure
                .reason
                .starts_with("Connection arguments were not received"),
            "{}",
            failure.reason
        );
        assert!(
            failure.reason.contains(named),
            "the reason names the mismatch: {}",
            failure.reason
        );
    }
}

/// A second connection of a connected (scope, id) is refused; the same id in another scope is
/// not; once the first connection ends, the handler registers again.
#[tokio::test]
async fn a_connected_handler_cannot_register_twice_until_it_disconnects() {
    let server = Server::start().await;
    let handler = EventHandler::new(Uuid::new_v4(), &[TYPE_A]);
    let first = Head::connect(server.private().await, handler.message()).await;

    let failure = refused(&server, handler.message()).await;
    assert_eq!(
        failure_id(Some(&failure)),
        Some(failures::HANDLER_ALREADY_REGISTERED)
    );
    assert_eq!(
        failure.reason,
        format!(
            "The event handler {} in scope {} is already registered",
            handler.id,
            Uuid::nil()
        )
    );

    let other_scope = handler.clone().scope(Uuid::new_v4());
    let _other = Head::connect(server.private().await, other_scope.message()).await;

    first.abort();
    let mut again = Head::reconnect(server.private().await, handler.message()).await;
    commit_n(&server, "es", 1).await;
    assert_eq!(
        again.request().await.seq(),
        0,
        "the new connection is served"
    );
}

/// The nil Uuid is no event handler id.
#[tokio::test]
async fn nil_event_handler_id_is_refused() {
    let server = Server::start().await;
    let failure = refused(&server, EventHandler::new(Uuid::nil(), &[TYPE_A]).message()).await;
    assert_eq!(failure_id(Some(&failure)), Some(failures::HANDLER_NIL_ID));
}

/// Events committed before the registration are delivered first, then live ones: only the
/// registered types, in log order, each once, with the registration's context for the
/// tenant and the event's correlation, the committed event verbatim, and stream positions
/// counting the delivered events.
#[tokio::test]
async fn catch_up_then_live_in_log_order() {
    let server = Server::start().await;
    let channel = server.private().await;
    let mut committed = commit(
        &channel,
        DEVELOPMENT,
        &[
            (TYPE_A, "es-1", r#"{"n":0}"#),
            (TYPE_OTHER, "es-1", r#"{"n":1}"#),
            (TYPE_B, "es-2", r#"{"n":2}"#),
        ],
    )
    .await;
    let handler = EventHandler::new(Uuid::new_v4(), &[TYPE_A, TYPE_B]);
    let mut head = Head::connect(server.private().await, handler.message()).await;
    let mut delivered = handle(&mut head, 2).await;

    committed.extend(
        commit(
            &channel,
            DEVELOPMENT,
            &[
                (TYPE_OTHER, "es-3", r#"{"n":3}"#),
                (TYPE_B, "es-3", r#"{"n":4}"#),
            ],
        )
        .await,
    );
    committed.extend(commit(&channel, DEVELOPMENT, &[(TYPE_A, "es-1", r#"{"n":5}"#)]).await);
    delivered.extend(handle(&mut head, 2).await);
    head.no_request(QUIET).await;

    let matching: Vec<&CommittedEvent> = committed
        .iter()
        .filter(|e| {
            let t = annals_tests::uuid(e.event_type.as_ref().unwrap().id.as_ref().unwrap());
            t != TYPE_OTHER
        })
        .collect();
    assert_eq!(seqs(&delivered), vec![0, 2, 4, 5]);
    let mut call_ids = BTreeSet::new();
    for (position, (request, event)) in delivered.iter().zip(&matching).enumerate() {
        assert!(
            call_ids.insert(request.call_id.expect("a call id")),
            "call ids are unique"
        );
        assert_eq!(&request.event, *event, "the committed event verbatim");
        assert_eq!(
            request.execution_context.as_ref(),
            Some(&expected_context(&handler, DEVELOPMENT, event))
        );
        assert_eq!(request.partition_id, event.event_source_id);
        assert_eq!(request.scope_id, Some(Uuid::nil()));
        assert!(!request.partitioned);
        assert_eq!(request.stream_position, position as u64);
        assert!(request.retry.is_none());
    }
}

/// Every configured tenant's events reach the handler with that tenant in the context, each
/// tenant's in its own log order.
#[tokio::test]
async fn every_tenant_gets_its_own_events() {
    let yaml = format!("tenants:\n  {TENANT_A}: {{}}\n  {TENANT_B}: {{}}\n");
    let server = Server::start_with(&[(".dolittle/runtime.yml", &yaml)], &[], &[]).await;
    let channel = server.private().await;
    commit(
        &channel,
        TENANT_A,
        &[(TYPE_A, "a", "{}"), (TYPE_A, "a", "{}")],
    )
    .await;
    commit(&channel, TENANT_B, &[(TYPE_A, "b", "{}")]).await;
    let handler = EventHandler::new(Uuid::new_v4(), &[TYPE_A]);
    let mut head = Head::connect(server.private().await, handler.message()).await;
    let mut per_tenant: BTreeMap<Uuid, Vec<u64>> = BTreeMap::new();
    for r in handle(&mut head, 3).await {
        assert_eq!(
            r.event_source(),
            if r.tenant() == TENANT_A { "a" } else { "b" }
        );
        per_tenant.entry(r.tenant()).or_default().push(r.seq());
    }
    commit(&channel, TENANT_B, &[(TYPE_A, "b", "{}")]).await;
    let r = handle(&mut head, 1).await.remove(0);
    per_tenant.entry(r.tenant()).or_default().push(r.seq());
    head.no_request(QUIET).await;
    assert_eq!(per_tenant[&TENANT_A], vec![0, 1]);
    assert_eq!(per_tenant[&TENANT_B], vec![0, 1]);
}

/// An unpartitioned handler has one request outstanding at a time.
#[tokio::test]
async fn unpartitioned_handler_gets_one_request_at_a_time() {
    let server = Server::start().await;
    commit_n(&server, "es", 4).await;
    let handler = EventHandler::new(Uuid::new_v4(), &[TYPE_A]);
    let mut head = Head::connect(server.private().await, handler.message()).await;
    for expected in 0..4 {
        let r = head.request().await;
        assert_eq!(r.seq(), expected);
        head.no_request(QUIET / 2).await;
        assert!(head.succeed(&r).await);
    }
    head.no_request(QUIET).await;
}

/// A partitioned handler with concurrency 3 gets up to 3 requests at once, never two of one
/// event source, each source's in order, whatever order the head answers them in.
#[tokio::test]
async fn partitioned_handler_overlaps_event_sources_up_to_its_concurrency() {
    let server = Server::start().await;
    let sources = ["a", "b", "c", "d"];
    let mut events = Vec::new();
    for _ in 0..3 {
        for es in sources {
            events.push((TYPE_A, es, "{}"));
        }
    }
    commit(&server.private().await, DEVELOPMENT, &events).await;
    let handler = EventHandler::new(Uuid::new_v4(), &[TYPE_A]).partitioned(3);
    let mut head = Head::connect(server.private().await, handler.message()).await;

    let mut outstanding: Vec<Request> = Vec::new();
    let mut received: Vec<Request> = Vec::new();
    let mut most = 0;
    while received.len() < events.len() || !outstanding.is_empty() {
        let wait = if outstanding.is_empty() {
            MUST
        } else {
            Duration::from_millis(300)
        };
        while let Some(r) = head.next_request(wait).await {
            assert!(r.partitioned);
            assert_eq!(r.partition_id, r.event_source());
            assert!(
                outstanding
                    .iter()
                    .all(|o| o.event_source() != r.event_source()),
                "two requests of {} outstanding",
                r.event_source()
            );
            outstanding.push(r.clone());
            received.push(r);
            assert!(outstanding.len() <= 3, "more than 3 outstanding");
            if outstanding.len() == 3 {
                break;
            }
        }
        most = most.max(outstanding.len());
        // Answer the newest first: completion order differs from delivery order.
        let r = outstanding.pop().expect("a request");
        assert!(head.succeed(&r).await);
    }
    assert_eq!(most, 3, "concurrency 3 with 4 event sources waiting");
    let mut all = seqs(&received);
    all.sort_unstable();
    assert_eq!(all, (0..12).collect::<Vec<u64>>(), "each event once");
    for es in sources {
        let of_es: Vec<u64> = received
            .iter()
            .filter(|r| r.event_source() == es)
            .map(Request::seq)
            .collect();
        assert!(of_es.windows(2).all(|w| w[0] < w[1]), "{es}: {of_es:?}");
    }
    for r in &received {
        assert_eq!(
            r.stream_position,
            r.seq(),
            "all events match: position = seq"
        );
    }
    head.no_request(QUIET).await;
}

/// A handler in another scope sees nothing of the event log.
#[tokio::test]
async fn handler_in_another_scope_sees_nothing_of_the_event_log() {
    let server = Server::start().await;
    commit_n(&server, "es", 2).await;
    let handler = EventHandler::new(Uuid::new_v4(), &[TYPE_A]).scope(Uuid::new_v4());
    let mut head = Head::connect(server.private().await, handler.message()).await;
    commit_n(&server, "es", 1).await;
    head.no_request(QUIET).await;
}

/// startFrom Latest skips what was committed before the registration.
#[tokio::test]
async fn start_from_latest_skips_the_past() {
    let server = Server::start().await;
    commit_n(&server, "es", 3).await;
    let handler = EventHandler::new(Uuid::new_v4(), &[TYPE_A])
        .start_from(Selected::Position(Position::Latest as i32));
    let mut head = Head::connect(server.private().await, handler.message()).await;
    head.no_request(QUIET).await;
    commit_n(&server, "es", 2).await;
    assert_eq!(seqs(&handle(&mut head, 2).await), vec![3, 4]);
    head.no_request(QUIET).await;
}

/// startFrom an event-log sequence number starts there.
#[tokio::test]
async fn start_from_a_sequence_number() {
    let server = Server::start().await;
    commit_n(&server, "es", 5).await;
    let handler = EventHandler::new(Uuid::new_v4(), &[TYPE_A])
        .start_from(Selected::EventLogSequenceNumber(3));
    let mut head = Head::connect(server.private().await, handler.message()).await;
    assert_eq!(seqs(&handle(&mut head, 2).await), vec![3, 4]);
    head.no_request(QUIET).await;
}

/// startFrom a timestamp starts at the first event that occurred at or after it.
#[tokio::test]
async fn start_from_a_timestamp() {
    let server = Server::start().await;
    let early = commit_n(&server, "es", 2).await;
    clock_past(early[1].occurred.as_ref().unwrap()).await;
    let later = commit_n(&server, "es", 2).await;
    let handler = EventHandler::new(Uuid::new_v4(), &[TYPE_A])
        .start_from(Selected::Timestamp(later[0].occurred.unwrap()));
    let mut head = Head::connect(server.private().await, handler.message()).await;
    assert_eq!(seqs(&handle(&mut head, 2).await), vec![2, 3]);
    head.no_request(QUIET).await;
}

/// startFrom applies only to a handler without a stored position: a handler that handled
/// events resumes where it was, whatever its new startFrom says.
#[tokio::test]
async fn start_from_is_ignored_once_the_handler_has_a_position() {
    let server = Server::start().await;
    commit_n(&server, "es", 4).await;
    let handler = EventHandler::new(Uuid::new_v4(), &[TYPE_A]);
    let mut head = Head::connect(server.private().await, handler.message()).await;
    handle(&mut head, 2).await;
    let _ = head.request().await; // seq 2, never answered
    head.abort();
    let again = handler
        .clone()
        .start_from(Selected::EventLogSequenceNumber(3));
    let mut head = Head::reconnect(server.private().await, again.message()).await;
    assert_eq!(head.request().await.seq(), 2);
}

/// stopAt: events that occurred at or after it are not delivered, now or later.
#[tokio::test]
async fn stop_at_holds_back_later_events() {
    let server = Server::start().await;
    let early = commit_n(&server, "es", 2).await;
    clock_past(early[1].occurred.as_ref().unwrap()).await;
    let later = commit_n(&server, "es", 1).await;
    let mut handler = EventHandler::new(Uuid::new_v4(), &[TYPE_A]);
    handler.stop_at = Some(time(later[0].occurred.as_ref().unwrap()));
    let mut head = Head::connect(server.private().await, handler.message()).await;
    assert_eq!(seqs(&handle(&mut head, 2).await), vec![0, 1]);
    head.no_request(QUIET).await;
    commit_n(&server, "es", 1).await;
    head.no_request(QUIET).await;
}

/// A failure with retry: the same event comes again after the retry timeout, with the reason
/// and a growing retry count; nothing else is sent meanwhile; success moves on.
#[tokio::test]
async fn retryable_failure_sends_the_event_again_after_the_timeout() {
    let server = Server::start().await;
    commit_n(&server, "es", 2).await;
    let handler = EventHandler::new(Uuid::new_v4(), &[TYPE_A]);
    let mut head = Head::connect(server.private().await, handler.message()).await;
    let first = head.request().await;
    assert_eq!((first.seq(), first.retry_count()), (0, 0));
    let timeout = Duration::from_millis(1500);
    let fail = |reason: &str| Answer::failure(reason, true, timeout);
    assert!(head.answer(&first, fail("boom 1")).await);
    head.no_request(Duration::from_millis(700)).await;
    let retry = head.request().await;
    assert_eq!(retry.seq(), 0);
    assert_eq!(retry.event, first.event);
    assert_eq!(retry.stream_position, 0);
    assert_ne!(retry.call_id, first.call_id, "a new call");
    let state = retry.retry.clone().expect("a retry state");
    assert_eq!(
        (state.failure_reason.as_str(), state.retry_count),
        ("boom 1", 1)
    );

    assert!(head.answer(&retry, fail("boom 2")).await);
    let retry = head.request().await;
    let state = retry.retry.clone().expect("a retry state");
    assert_eq!(
        (
            retry.seq(),
            state.failure_reason.as_str(),
            state.retry_count
        ),
        (0, "boom 2", 2)
    );
    assert!(head.succeed(&retry).await);
    let next = head.request().await;
    assert_eq!((next.seq(), next.retry_count()), (1, 0));
}

/// A failure without retry stops an unpartitioned handler for the tenant (management shows
/// it failing, with the reason); a new registration retries the failed event.
#[tokio::test]
async fn non_retryable_failure_stops_an_unpartitioned_handler_until_it_registers_again() {
    let server = Server::start().await;
    commit_n(&server, "es", 3).await;
    let handler = EventHandler::new(Uuid::new_v4(), &[TYPE_A]);
    let mut head = Head::connect(server.private().await, handler.message()).await;
    handle(&mut head, 1).await;
    let failed = head.request().await;
    assert_eq!(failed.seq(), 1);
    let answer = Answer::failure("broken", false, Duration::ZERO);
    assert!(head.answer(&failed, answer).await);
    head.no_request(QUIET).await;
    commit_n(&server, "es", 1).await;
    head.no_request(QUIET).await;

    let status = get_one(&server, Uuid::nil(), handler.id, Some(DEVELOPMENT)).await;
    assert!(status.failure.is_none(), "{:?}", status.failure);
    let tenants = status.event_handlers.unwrap().tenants;
    assert_eq!(tenants.len(), 1);
    match &tenants[0].status {
        Some(ProcessorStatus::Unpartitioned(u)) => {
            assert!(u.is_failing);
            assert_eq!(u.failure_reason, "broken");
        }
        other => panic!("expected an unpartitioned status, got {other:?}"),
    }

    head.abort();
    let mut head = Head::reconnect(server.private().await, handler.message()).await;
    let again = head.request().await;
    assert_eq!(again.seq(), 1, "the failed event is tried again");
    assert!(head.succeed(&again).await);
    assert_eq!(seqs(&handle(&mut head, 2).await), vec![2, 3]);
}

/// Events a0 b0 a1 b1 a2 for a partitioned handler; `answer` for a0's failure.
async fn park_a(head: &mut Head, retry: bool, timeout: Duration) -> Request {
    let a0 = head.request().await;
    assert_eq!((a0.seq(), a0.event_source()), (0, "a"));
    let answer = Answer::failure("a is broken", retry, timeout);
    assert!(head.answer(&a0, answer).await);
    a0
}

async fn commit_interleaved(server: &Server) {
    commit(
        &server.private().await,
        DEVELOPMENT,
        &[
            (TYPE_A, "a", "{}"),
            (TYPE_A, "b", "{}"),
            (TYPE_A, "a", "{}"),
            (TYPE_A, "b", "{}"),
            (TYPE_A, "a", "{}"),
        ],
    )
    .await;
}

/// A non-retryable failure of a partitioned handler parks its event source only: the other
/// flows, management lists the failing partition, and the parked source resumes in order
/// when the head registers again.
#[tokio::test]
async fn partitioned_failure_parks_only_its_event_source() {
    let server = Server::start().await;
    commit_interleaved(&server).await;
    let handler = EventHandler::new(Uuid::new_v4(), &[TYPE_A]).partitioned(1);
    let mut head = Head::connect(server.private().await, handler.message()).await;
    park_a(&mut head, false, Duration::ZERO).await;
    let others = handle(&mut head, 2).await;
    assert_eq!(seqs(&others), vec![1, 3]);
    assert!(others.iter().all(|r| r.event_source() == "b"));
    head.no_request(QUIET).await;

    let status = get_one(&server, Uuid::nil(), handler.id, Some(DEVELOPMENT)).await;
    assert!(status.failure.is_none(), "{:?}", status.failure);
    let tenants = status.event_handlers.unwrap().tenants;
    match &tenants[0].status {
        Some(ProcessorStatus::Partitioned(p)) => {
            assert_eq!(p.failing_partitions.len(), 1, "{p:?}");
            let failing = &p.failing_partitions[0];
            assert_eq!(failing.partition_id, "a");
            assert_eq!(failing.stream_position, 0);
            assert_eq!(failing.failure_reason, "a is broken");
        }
        other => panic!("expected a partitioned status, got {other:?}"),
    }

    head.abort();
    let mut head = Head::reconnect(server.private().await, handler.message()).await;
    let resumed = handle(&mut head, 3).await;
    assert_eq!(seqs(&resumed), vec![0, 2, 4]);
    assert_eq!(
        resumed
            .iter()
            .map(|r| r.stream_position)
            .collect::<Vec<_>>(),
        vec![0, 2, 4]
    );
    head.no_request(QUIET).await;
}

/// A retryable failure of a partitioned handler parks its event source until the retry
/// timeout; the retry carries the retry state, and the held-back events follow in order.
#[tokio::test]
async fn partitioned_retry_resumes_the_parked_source_in_order() {
    let server = Server::start().await;
    commit_interleaved(&server).await;
    let handler = EventHandler::new(Uuid::new_v4(), &[TYPE_A]).partitioned(1);
    let mut head = Head::connect(server.private().await, handler.message()).await;
    park_a(&mut head, true, Duration::from_secs(2)).await;
    let mut order = Vec::new();
    for _ in 0..5 {
        let r = head.request().await;
        if r.event_source() == "a" && order.iter().all(|(s, _)| *s != 0) {
            assert_eq!(r.seq(), 0, "a's events wait for a0");
            let state = r.retry.clone().expect("a retry state");
            assert_eq!(
                (state.failure_reason.as_str(), state.retry_count),
                ("a is broken", 1)
            );
        }
        assert!(head.succeed(&r).await);
        order.push((r.seq(), r.event_source().to_owned()));
    }
    let of_a: Vec<u64> = order
        .iter()
        .filter(|(_, es)| es == "a")
        .map(|(s, _)| *s)
        .collect();
    let of_b: Vec<u64> = order
        .iter()
        .filter(|(_, es)| es == "b")
        .map(|(s, _)| *s)
        .collect();
    assert_eq!(of_a, vec![0, 2, 4]);
    assert_eq!(of_b, vec![1, 3]);
    assert_eq!(order[0].0, 1, "b flows while a is parked");
    head.no_request(QUIET).await;
}

/// A head that never pongs is pinged every interval and dropped (an error status) after
/// about three intervals without a message; a head that pongs stays.
#[tokio::test]
async fn a_head_that_never_pongs_is_dropped() {
    let server = Server::start().await;
    let interval = Some(Duration::from_secs(1));
    let silent_handler = EventHandler::new(Uuid::new_v4(), &[TYPE_A]).ping_interval(interval);
    let mut silent = Head::open(server.private().await, silent_handler.message(), false);
    assert_eq!(silent.registration().await.unwrap(), None);
    let ponging = EventHandler::new(Uuid::new_v4(), &[TYPE_A]).ping_interval(interval);
    let mut ponging = Head::connect(server.private().await, ponging.message()).await;

    assert!(
        silent.ended(Duration::from_millis(1500)).await.is_none(),
        "not dropped before three intervals"
    );
    let (seen, result) = silent.ended(MUST).await.expect("dropped");
    assert!(seen.is_empty(), "{seen:?}");
    assert!(result.is_err(), "an error status: {result:?}");
    assert!(silent.pings() >= 1, "pinged");

    assert!(
        ponging.pings() >= 2,
        "pinged every second: {}",
        ponging.pings()
    );
    commit_n(&server, "es", 1).await;
    assert_eq!(ponging.request().await.seq(), 0, "the ponging head stays");

    let mut again = Head::reconnect(server.private().await, silent_handler.message()).await;
    assert_eq!(
        again.request().await.seq(),
        0,
        "the dropped handler registers again"
    );
}

/// Any client message resets the keep-alive deadline: a head that sends answers (here to
/// unknown calls, which are ignored) instead of pongs stays connected.
#[tokio::test]
async fn any_client_message_keeps_the_stream_alive() {
    let server = Server::start().await;
    commit_n(&server, "es", 1).await;
    let handler =
        EventHandler::new(Uuid::new_v4(), &[TYPE_A]).ping_interval(Some(Duration::from_secs(1)));
    let mut head = Head::open(server.private().await, handler.message(), false);
    assert_eq!(head.registration().await.unwrap(), None);
    let r = head.request().await;
    for _ in 0..10 {
        let stray = head.answer_message(Some(Uuid::new_v4()), &r, Answer::Success);
        assert!(head.send(stray).await);
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    assert!(head.pings() >= 2);
    assert!(
        head.succeed(&r).await,
        "still connected after 5 s without a pong"
    );
    commit_n(&server, "es", 1).await;
    assert_eq!(head.request().await.seq(), 1);
}

/// A ping interval under a second disables pings: no ping, no drop.
#[tokio::test]
async fn a_ping_interval_under_a_second_disables_pings() {
    let server = Server::start().await;
    let handler = EventHandler::new(Uuid::new_v4(), &[TYPE_A])
        .ping_interval(Some(Duration::from_millis(300)));
    let mut head = Head::open(server.private().await, handler.message(), false);
    assert_eq!(head.registration().await.unwrap(), None);
    head.no_request(Duration::from_secs(3)).await;
    assert_eq!(head.pings(), 0);
    commit_n(&server, "es", 1).await;
    assert_eq!(head.request().await.seq(), 0);
}

/// initiateDisconnect: nothing new is sent, the outstanding answer is still taken (and its
/// position kept), and the stream ends with OK by the end of the grace period.
#[tokio::test]
async fn graceful_disconnect_takes_outstanding_answers_and_sends_nothing_new() {
    let server = Server::start().await;
    commit_n(&server, "es", 3).await;
    let handler = EventHandler::new(Uuid::new_v4(), &[TYPE_A]);
    let mut head = Head::connect(server.private().await, handler.message()).await;
    handle(&mut head, 1).await;
    let outstanding = head.request().await;
    assert!(head.initiate_disconnect(Some(Duration::from_secs(2))).await);
    commit_n(&server, "es", 1).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(head.succeed(&outstanding).await);
    let (seen, result) = head
        .ended(Duration::from_secs(2) + MUST)
        .await
        .expect("the stream ends after the grace period");
    assert!(
        seen.iter()
            .all(|m| matches!(m, Incoming::Disconnected(None))),
        "nothing but a disconnect confirmation: {seen:?}"
    );
    assert!(result.is_ok(), "{result:?}");

    let mut head = Head::reconnect(server.private().await, handler.message()).await;
    assert_eq!(
        head.request().await.seq(),
        2,
        "the answer given during the grace period was kept"
    );
}

/// A message with no oneof ends the stream with INVALID_ARGUMENT; the server serves others.
#[tokio::test]
async fn an_empty_message_ends_the_stream_with_invalid_argument() {
    let server = Server::start().await;
    commit_n(&server, "es", 1).await;
    let handler = EventHandler::new(Uuid::new_v4(), &[TYPE_A]);
    let mut head = Head::connect(server.private().await, handler.message()).await;
    let _ = head.request().await;
    assert!(head.send_empty().await);
    let (_, result) = head.ended(MUST).await.expect("the stream ends");
    assert_eq!(result.unwrap_err().code(), Code::InvalidArgument);

    let mut head = Head::reconnect(server.private().await, handler.message()).await;
    assert_eq!(handle(&mut head, 1).await[0].seq(), 0);
}

/// A second registration on a registered stream ends it with INVALID_ARGUMENT.
#[tokio::test]
async fn a_second_registration_ends_the_stream_with_invalid_argument() {
    let server = Server::start().await;
    let handler = EventHandler::new(Uuid::new_v4(), &[TYPE_A]);
    let mut head = Head::connect(server.private().await, handler.message()).await;
    assert!(head.send(handler.message()).await);
    let (_, result) = head.ended(MUST).await.expect("the stream ends");
    assert_eq!(result.unwrap_err().code(), Code::InvalidArgument);
    let _again = Head::reconnect(server.private().await, handler.message()).await;
}

/// An answer to a call that is not outstanding (unknown, or answered already) is ignored.
#[tokio::test]
async fn an_answer_to_an_unknown_call_is_ignored() {
    let server = Server::start().await;
    commit_n(&server, "es", 3).await;
    let handler = EventHandler::new(Uuid::new_v4(), &[TYPE_A]);
    let mut head = Head::connect(server.private().await, handler.message()).await;
    let first = head.request().await;
    let stray = head.answer_message(Some(Uuid::new_v4()), &first, Answer::Success);
    assert!(head.send(stray).await);
    let no_call_id = head.answer_message(None, &first, Answer::Success);
    assert!(head.send(no_call_id).await);
    let bad_call_id = ClientMessage::EventHandler(EventHandlerClientToRuntimeMessage {
        message: Some(Message::HandleResult(
            dolittle::runtime::events::processing::EventHandlerResponse {
                call_context: Some(dolittle::services::ReverseCallResponseContext {
                    call_id: Some(dolittle::protobuf::Uuid {
                        value: vec![1, 2, 3],
                    }),
                }),
                failure: None,
            },
        )),
    });
    assert!(head.send(bad_call_id).await);
    head.no_request(QUIET).await;
    assert!(head.succeed(&first).await);
    let second = head.request().await;
    assert_eq!(second.seq(), 1);
    assert!(head.succeed(&first).await, "answering twice");
    head.no_request(QUIET).await;
    assert!(head.succeed(&second).await);
    assert_eq!(head.request().await.seq(), 2);
}

/// Garbage on one stream never disturbs another handler.
#[tokio::test]
async fn garbage_on_one_stream_never_disturbs_another() {
    let server = Server::start().await;
    let good = EventHandler::new(Uuid::new_v4(), &[TYPE_A]);
    let mut good = Head::connect(server.private().await, good.message()).await;
    for _ in 0..3 {
        let bad = EventHandler::new(Uuid::new_v4(), &[TYPE_A]);
        let mut bad = Head::connect(server.private().await, bad.message()).await;
        let no_context = ClientMessage::EventHandler(EventHandlerClientToRuntimeMessage {
            message: Some(Message::HandleResult(
                dolittle::runtime::events::processing::EventHandlerResponse::default(),
            )),
        });
        assert!(bad.send(no_context).await);
        assert!(bad.send_empty().await);
        assert!(bad.ended(MUST).await.is_some());
    }
    commit_n(&server, "es", 2).await;
    assert_eq!(seqs(&handle(&mut good, 2).await), vec![0, 1]);
}

/// A head that dies with a request outstanding: registering again resumes at the unanswered
/// event, stream positions continuing.
#[tokio::test]
async fn a_head_dying_mid_batch_resumes_after_the_last_answered_event() {
    let server = Server::start().await;
    commit_n(&server, "es", 5).await;
    let handler = EventHandler::new(Uuid::new_v4(), &[TYPE_A]);
    let mut head = Head::connect(server.private().await, handler.message()).await;
    handle(&mut head, 3).await;
    let unanswered = head.request().await;
    assert_eq!(unanswered.seq(), 3);
    head.abort();
    let mut head = Head::reconnect(server.private().await, handler.message()).await;
    let resumed = handle(&mut head, 2).await;
    assert_eq!(seqs(&resumed), vec![3, 4]);
    assert_eq!(resumed[0].stream_position, 3);
    assert_eq!(resumed[0].event, unanswered.event);
    head.no_request(QUIET).await;
}

/// A partitioned head dying with three requests outstanding, one of them answered: every
/// unanswered event comes again, each source in order.
#[tokio::test]
async fn a_partitioned_head_dying_gets_every_unanswered_event_again() {
    let server = Server::start().await;
    let mut events = Vec::new();
    for _ in 0..2 {
        for es in ["a", "b", "c"] {
            events.push((TYPE_A, es, "{}"));
        }
    }
    commit(&server.private().await, DEVELOPMENT, &events).await;
    let handler = EventHandler::new(Uuid::new_v4(), &[TYPE_A]).partitioned(3);
    let mut head = Head::connect(server.private().await, handler.message()).await;
    let mut outstanding = vec![head.request().await];
    while let Some(r) = head.next_request(QUIET).await {
        outstanding.push(r);
    }
    assert!(outstanding.len() >= 2, "{outstanding:?}");
    let answered = outstanding.remove(1);
    // Whether the answer lands before the head dies or not, the checks below hold.
    assert!(head.succeed(&answered).await);
    head.abort();

    let mut head = Head::reconnect(server.private().await, handler.message()).await;
    let mut again = Vec::new();
    while let Some(r) = head
        .next_request(if again.is_empty() { MUST } else { QUIET })
        .await
    {
        assert!(head.succeed(&r).await);
        again.push(r);
    }
    let seen: BTreeSet<u64> = seqs(&again).into_iter().collect();
    for r in &outstanding {
        assert!(seen.contains(&r.seq()), "unanswered {} came again", r.seq());
    }
    let all: BTreeSet<u64> = seen.iter().copied().chain([answered.seq()]).collect();
    assert_eq!(all, (0..6).collect(), "nothing skipped");
    let mut by_source: HashMap<String, Vec<u64>> = HashMap::new();
    for r in &again {
        by_source
            .entry(r.event_source().to_owned())
            .or_default()
            .push(r.seq());
    }
    for (es, s) in by_source {
        assert!(s.windows(2).all(|w| w[0] < w[1]), "{es}: {s:?}");
    }
}

/// SIGTERM with a request outstanding, the head going away as its runtime stops: after the
/// restart the handler resumes at the unanswered event, skipping nothing, and live delivery
/// goes on.
#[tokio::test]
async fn a_stopped_server_resumes_the_handler_at_the_unanswered_event() {
    let mut server = Server::start().await;
    commit_n(&server, "es", 8).await;
    let handler = EventHandler::new(Uuid::new_v4(), &[TYPE_A]);
    let mut head = Head::connect(server.private().await, handler.message()).await;
    handle(&mut head, 5).await;
    let _unanswered = head.request().await;
    let (stopped, ()) = tokio::join!(server.stop(), async {
        tokio::time::sleep(Duration::from_millis(300)).await;
        head.abort();
    });
    assert!(stopped, "annals did not stop cleanly:\n{}", server.log());
    server.relaunch().await;
    commit_n(&server, "es", 2).await;
    let mut head = Head::reconnect(server.private().await, handler.message()).await;
    let resumed = handle(&mut head, 5).await;
    assert_eq!(seqs(&resumed), vec![5, 6, 7, 8, 9]);
    assert_eq!(resumed[0].stream_position, 5, "positions continue");
    head.no_request(QUIET).await;
}

/// Stops the server (SIGTERM, or SIGKILL when `kill`) while a head answers 3000 events as
/// fast as it can; after the restart, delivery resumes no later than just after the last
/// answered event and goes on to the end without a gap.
async fn stop_under_load(kill: bool) {
    let mut server = Server::start().await;
    let channel = server.private().await;
    let events: Vec<(Uuid, &str, &str)> = (0..500)
        .map(|i| (TYPE_A, ["a", "b"][i % 2], "{}"))
        .collect();
    for _ in 0..6 {
        commit(&channel, DEVELOPMENT, &events).await;
    }
    let handler = EventHandler::new(Uuid::new_v4(), &[TYPE_A]);
    let head = Head::connect(server.private().await, handler.message()).await;
    let answering = Answering::start(head, |_| Answer::Success);
    answering.wait_answered(1000).await;
    if kill {
        server.kill().await;
    } else {
        assert!(
            server.stop().await,
            "annals did not stop cleanly:\n{}",
            server.log()
        );
    }
    let (head, answered) = answering.stop().await;
    drop(head);
    let answered = seqs(&answered);
    assert_eq!(answered, (0..answered.len() as u64).collect::<Vec<_>>());
    server.relaunch().await;
    let mut head = Head::reconnect(server.private().await, handler.message()).await;
    let first = head.request().await;
    if kill {
        // At-least-once: a crash may redeliver what was answered since the last write of the
        // position, never skip.
        assert!(
            first.seq() <= answered.len() as u64,
            "resumed at {} after {} answered",
            first.seq(),
            answered.len()
        );
    } else {
        // A clean stop keeps every answer and writes the position: exactly the next one.
        assert_eq!(
            first.seq(),
            answered.len() as u64,
            "resumed after {} answered",
            answered.len()
        );
    }
    assert_eq!(first.stream_position, first.seq());
    assert!(head.succeed(&first).await);
    let rest = handle(&mut head, usize::try_from(2999 - first.seq()).unwrap()).await;
    assert_eq!(seqs(&rest), (first.seq() + 1..3000).collect::<Vec<_>>());
    head.no_request(QUIET).await;
}

/// SIGTERM while a head answers as fast as it can: nothing skipped after the restart.
#[tokio::test]
async fn a_server_stopped_under_load_skips_nothing() {
    stop_under_load(false).await;
}

/// SIGKILL while a head answers as fast as it can: nothing skipped after the restart.
#[tokio::test]
async fn a_server_killed_under_load_skips_nothing() {
    stop_under_load(true).await;
}

/// SIGKILL right after answers: answered events may come again, none is skipped.
#[tokio::test]
async fn a_killed_server_redelivers_but_never_skips() {
    let mut server = Server::start().await;
    commit_n(&server, "es", 8).await;
    let handler = EventHandler::new(Uuid::new_v4(), &[TYPE_A]);
    let mut head = Head::connect(server.private().await, handler.message()).await;
    handle(&mut head, 5).await;
    let _ = head.request().await;
    server.kill().await;
    drop(head);
    server.relaunch().await;
    let mut head = Head::reconnect(server.private().await, handler.message()).await;
    let first = head.request().await;
    assert!(first.seq() <= 5, "skipped to {}", first.seq());
    assert_eq!(first.stream_position, first.seq());
    assert!(head.succeed(&first).await);
    let rest = handle(&mut head, usize::try_from(7 - first.seq()).unwrap()).await;
    let expected: Vec<u64> = (first.seq() + 1..8).collect();
    assert_eq!(seqs(&rest), expected);
    head.no_request(QUIET).await;
}

/// 100 000 events of 2 KiB (about 200 MiB) and a head that answers slowly: the server reads
/// ahead only a bounded amount, so its memory grows by a small part of the log at most.
#[tokio::test]
async fn a_slow_head_over_a_long_log_keeps_memory_bounded() {
    let server = Server::start().await;
    let channel = server.private().await;
    let content = format!(r#"{{"pad":"{}"}}"#, "x".repeat(2048));
    let batch: Vec<(Uuid, &str, &str)> =
        (0..500).map(|_| (TYPE_A, "es", content.as_str())).collect();
    for _ in 0..200 {
        commit(&channel, DEVELOPMENT, &batch).await;
    }
    let before = server.rss();
    let handler = EventHandler::new(Uuid::new_v4(), &[TYPE_A]);
    let mut head = Head::connect(server.private().await, handler.message()).await;
    // 300 events answered 10 ms apart: the server could read the whole log ahead many times
    // over in that time, so what it holds is its read-ahead bound, not the head's pace.
    let mut most = before;
    for expected in 0..300 {
        let r = head.request().await;
        assert_eq!(r.seq(), expected);
        tokio::time::sleep(Duration::from_millis(10)).await;
        assert!(head.succeed(&r).await);
        most = most.max(server.rss());
    }
    let growth = most.saturating_sub(before);
    eprintln!(
        "RSS {} MiB before, at most {} MiB while 300 events were handled",
        before >> 20,
        most >> 20
    );
    // The log is about 200 MiB; the read-ahead must stay a small part of it.
    assert!(
        growth < 32 << 20,
        "RSS grew by {} MiB (from {} MiB)",
        growth >> 20,
        before >> 20
    );
}

/// Commits `batches` commits of `per_batch` TYPE_A events, round-robin over `sources`, from a
/// task of its own; returns its handle.
fn commit_in_background(
    channel: tonic::transport::Channel,
    batches: usize,
    per_batch: usize,
    sources: &'static [&'static str],
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        for b in 0..batches {
            let events: Vec<(Uuid, &str, &str)> = (0..per_batch)
                .map(|i| (TYPE_A, sources[(b * per_batch + i) % sources.len()], "{}"))
                .collect();
            commit(&channel, DEVELOPMENT, &events).await;
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
}

/// Commits racing the switch from catch-up to live delivery: every event exactly once, in
/// log order, stream positions without gaps, a call id of its own per request.
#[tokio::test]
async fn catch_up_meets_concurrent_commits_without_gap_or_duplicate() {
    let server = Server::start().await;
    let channel = server.private().await;
    commit_in_background(channel.clone(), 10, 30, &["es"])
        .await
        .unwrap();
    let handler = EventHandler::new(Uuid::new_v4(), &[TYPE_A]);
    let mut head = Head::connect(server.private().await, handler.message()).await;
    let writer = commit_in_background(channel, 60, 5, &["es"]);
    let delivered = handle(&mut head, 600).await;
    writer.await.unwrap();
    head.no_request(QUIET).await;
    assert_eq!(seqs(&delivered), (0..600).collect::<Vec<u64>>());
    let call_ids: BTreeSet<Uuid> = delivered.iter().map(|r| r.call_id.unwrap()).collect();
    assert_eq!(call_ids.len(), 600, "a call id per request");
    assert!(delivered.iter().all(|r| r.stream_position == r.seq()));
}

/// The same race for a partitioned handler with concurrency 4 over 6 event sources, the head
/// answering out of order: every event exactly once, each source in order.
#[tokio::test]
async fn partitioned_catch_up_meets_concurrent_commits_exactly_once() {
    const SOURCES: &[&str] = &["a", "b", "c", "d", "e", "f"];
    let server = Server::start().await;
    let channel = server.private().await;
    commit_in_background(channel.clone(), 10, 20, SOURCES)
        .await
        .unwrap();
    let handler = EventHandler::new(Uuid::new_v4(), &[TYPE_A]).partitioned(4);
    let mut head = Head::connect(server.private().await, handler.message()).await;
    let writer = commit_in_background(channel, 40, 5, SOURCES);
    let mut received: Vec<Request> = Vec::new();
    let mut outstanding: Vec<Request> = Vec::new();
    while received.len() < 400 || !outstanding.is_empty() {
        if outstanding.len() < 4 && received.len() < 400 {
            let wait = if outstanding.is_empty() {
                MUST
            } else {
                Duration::from_millis(10)
            };
            if let Some(r) = head.next_request(wait).await {
                head_push(&mut outstanding, &mut received, r);
                continue;
            }
            assert!(!outstanding.is_empty(), "no request within {MUST:?}");
        }
        // Answer the newest: completion order differs from delivery order.
        let r = outstanding.pop().unwrap();
        assert!(head.succeed(&r).await);
    }
    writer.await.unwrap();
    head.no_request(QUIET).await;
    let mut all = seqs(&received);
    all.sort_unstable();
    assert_eq!(all, (0..400).collect::<Vec<u64>>(), "each event once");
    for es in SOURCES {
        let of: Vec<u64> = received
            .iter()
            .filter(|r| r.event_source() == *es)
            .map(Request::seq)
            .collect();
        assert!(of.windows(2).all(|w| w[0] < w[1]), "{es}: {of:?}");
    }
}

fn head_push(outstanding: &mut Vec<Request>, received: &mut Vec<Request>, r: Request) {
    assert!(
        outstanding
            .iter()
            .all(|o| o.event_source() != r.event_source()),
        "two of {} outstanding",
        r.event_source()
    );
    outstanding.push(r.clone());
    received.push(r);
    assert!(outstanding.len() <= 4, "more than 4 outstanding");
}

/// A non-retryable failure in one tenant stops that tenant only.
#[tokio::test]
async fn a_failing_tenant_never_stops_another() {
    let yaml = format!("tenants:\n  {TENANT_A}: {{}}\n  {TENANT_B}: {{}}\n");
    let server = Server::start_with(&[(".dolittle/runtime.yml", &yaml)], &[], &[]).await;
    let channel = server.private().await;
    commit(
        &channel,
        TENANT_A,
        &[(TYPE_A, "a", "{}"), (TYPE_A, "a", "{}")],
    )
    .await;
    let handler = EventHandler::new(Uuid::new_v4(), &[TYPE_A]);
    let mut head = Head::connect(server.private().await, handler.message()).await;
    let r = head.request().await;
    assert_eq!((r.tenant(), r.seq()), (TENANT_A, 0));
    let answer = Answer::failure("tenant A is broken", false, Duration::ZERO);
    assert!(head.answer(&r, answer).await);
    head.no_request(QUIET).await;
    commit(
        &channel,
        TENANT_B,
        &[(TYPE_A, "b", "{}"), (TYPE_A, "b", "{}")],
    )
    .await;
    let of_b = handle(&mut head, 2).await;
    assert!(of_b.iter().all(|r| r.tenant() == TENANT_B));
    assert_eq!(seqs(&of_b), vec![0, 1]);
    head.no_request(QUIET).await;
}

/// A partition parked by a non-retryable failure stays parked over a restart and is retried,
/// with its held-back events in order, when the head registers again; the events of other
/// sources that were answered are not sent again.
#[tokio::test]
async fn a_parked_partition_survives_a_restart() {
    let mut server = Server::start().await;
    commit_interleaved(&server).await;
    let handler = EventHandler::new(Uuid::new_v4(), &[TYPE_A]).partitioned(1);
    let mut head = Head::connect(server.private().await, handler.message()).await;
    park_a(&mut head, false, Duration::ZERO).await;
    assert_eq!(seqs(&handle(&mut head, 2).await), vec![1, 3]);
    // A clean stop takes the answers already sent and writes the positions they reach.
    server.restart().await;
    drop(head);
    let mut head = Head::reconnect(server.private().await, handler.message()).await;
    let resumed = handle(&mut head, 3).await;
    assert_eq!(seqs(&resumed), vec![0, 2, 4]);
    head.no_request(QUIET).await;
}

/// An unpartitioned handler stopped by a non-retryable failure is tried again at the failed
/// event after a restart.
#[tokio::test]
async fn an_unpartitioned_failure_survives_a_restart() {
    let mut server = Server::start().await;
    commit_n(&server, "es", 3).await;
    let handler = EventHandler::new(Uuid::new_v4(), &[TYPE_A]);
    let mut head = Head::connect(server.private().await, handler.message()).await;
    handle(&mut head, 1).await;
    let failed = head.request().await;
    let answer = Answer::failure("broken", false, Duration::ZERO);
    assert!(head.answer(&failed, answer).await);
    head.no_request(QUIET).await;
    server.restart().await;
    drop(head);
    let mut head = Head::reconnect(server.private().await, handler.message()).await;
    assert_eq!(seqs(&handle(&mut head, 2).await), vec![1, 2]);
    head.no_request(QUIET).await;
}

/// A partitioned handler with concurrency 3 and a retrying partition: the other sources use
/// the free slots meanwhile, the parked source's events never overlap and stay in order.
#[tokio::test]
async fn a_retrying_partition_leaves_the_other_slots_working() {
    let server = Server::start().await;
    let mut events = Vec::new();
    for _ in 0..3 {
        for es in ["a", "b", "c", "d"] {
            events.push((TYPE_A, es, "{}"));
        }
    }
    commit(&server.private().await, DEVELOPMENT, &events).await;
    let handler = EventHandler::new(Uuid::new_v4(), &[TYPE_A]).partitioned(3);
    let mut head = Head::connect(server.private().await, handler.message()).await;
    let mut done: Vec<Request> = Vec::new();
    let mut failed_once = false;
    let mut outstanding: Vec<Request> = Vec::new();
    while done.len() < 12 {
        let wait = if outstanding.is_empty() {
            MUST
        } else {
            Duration::from_millis(200)
        };
        while let Some(r) = head.next_request(wait).await {
            assert!(
                outstanding
                    .iter()
                    .all(|o| o.event_source() != r.event_source()),
                "two of {} outstanding",
                r.event_source()
            );
            outstanding.push(r);
            assert!(outstanding.len() <= 3);
        }
        let r = outstanding.remove(0);
        if r.event_source() == "a" && !failed_once {
            failed_once = true;
            let answer = Answer::failure("a fails once", true, Duration::from_secs(1));
            assert!(head.answer(&r, answer).await);
        } else {
            assert!(head.succeed(&r).await);
            done.push(r);
        }
    }
    head.no_request(QUIET).await;
    let of_a: Vec<&Request> = done.iter().filter(|r| r.event_source() == "a").collect();
    assert_eq!(
        of_a.iter().map(|r| r.seq()).collect::<Vec<_>>(),
        vec![0, 4, 8]
    );
    assert_eq!(of_a[0].retry_count(), 1);
    let mut all = seqs(&done);
    all.sort_unstable();
    assert_eq!(all, (0..12).collect::<Vec<u64>>());
    let first_a = done.iter().position(|r| r.event_source() == "a").unwrap();
    assert!(
        first_a > 0,
        "other sources went on while a waited for its retry"
    );
}

/// startFrom a timestamp means "nothing that occurred before it", also for a handler with a
/// stored position (as in the original, which moves a stored position that is behind the
/// timestamp forward to it); a stored position past the timestamp is kept.
#[tokio::test]
async fn start_from_a_timestamp_moves_a_stored_position_forward_only() {
    let server = Server::start().await;
    let early = commit_n(&server, "es", 2).await;
    clock_past(early[1].occurred.as_ref().unwrap()).await;
    let later = commit_n(&server, "es", 3).await;
    let handler = EventHandler::new(Uuid::new_v4(), &[TYPE_A]);
    let mut head = Head::connect(server.private().await, handler.message()).await;
    handle(&mut head, 1).await;
    let unanswered = head.request().await;
    assert_eq!(unanswered.seq(), 1);
    head.abort();
    let again = handler
        .clone()
        .start_from(Selected::Timestamp(later[0].occurred.unwrap()));
    let mut head = Head::reconnect(server.private().await, again.message()).await;
    assert_eq!(
        seqs(&handle(&mut head, 2).await),
        vec![2, 3],
        "the stored position (1) is behind the timestamp: moved to event 2"
    );
    let _unanswered = head.request().await;
    head.abort();
    let earlier = handler
        .clone()
        .start_from(Selected::Timestamp(early[0].occurred.unwrap()));
    let mut head = Head::reconnect(server.private().await, earlier.message()).await;
    assert_eq!(
        head.request().await.seq(),
        4,
        "the stored position (4) is past the timestamp of event 0: kept"
    );
}

/// After initiateDisconnect nothing new is sent: an unpartitioned handler whose event failed
/// with retry does not send the retry during the grace period.
#[tokio::test]
async fn no_retry_is_sent_after_the_head_initiated_a_disconnect() {
    let server = Server::start().await;
    commit_n(&server, "es", 2).await;
    let handler = EventHandler::new(Uuid::new_v4(), &[TYPE_A]);
    let mut head = Head::connect(server.private().await, handler.message()).await;
    let first = head.request().await;
    let answer = Answer::failure("later", true, Duration::from_millis(300));
    assert!(head.answer(&first, answer).await);
    assert!(head.initiate_disconnect(Some(Duration::from_secs(3))).await);
    let (seen, result) = head.ended(MUST).await.expect("the stream ends");
    assert!(
        seen.iter()
            .all(|m| matches!(m, Incoming::Disconnected(None))),
        "nothing new after initiateDisconnect: {seen:?}"
    );
    assert!(result.is_ok(), "{result:?}");
}

/// After initiateDisconnect nothing new is sent: a parked partition whose retry time comes
/// during the grace period is not caught up then.
#[tokio::test]
async fn a_parked_partition_is_not_caught_up_after_the_head_initiated_a_disconnect() {
    let server = Server::start().await;
    commit_interleaved(&server).await;
    let handler = EventHandler::new(Uuid::new_v4(), &[TYPE_A]).partitioned(1);
    let mut head = Head::connect(server.private().await, handler.message()).await;
    park_a(&mut head, true, Duration::from_millis(500)).await;
    // b's events, then a0's retry: the catch-up of a starts.
    let mut retry = None;
    for _ in 0..3 {
        let r = head.request().await;
        if r.event_source() == "a" {
            retry = Some(r);
            break;
        }
        assert!(head.succeed(&r).await);
    }
    let retry = retry.expect("a0 is retried");
    assert_eq!(retry.seq(), 0);
    // The disconnect and the answer after it are read in the order sent (one stream).
    assert!(head.initiate_disconnect(Some(Duration::from_secs(3))).await);
    assert!(
        head.succeed(&retry).await,
        "an outstanding answer is still taken"
    );
    let (seen, result) = head.ended(MUST).await.expect("the stream ends");
    assert!(
        seen.iter()
            .all(|m| matches!(m, Incoming::Disconnected(None))),
        "nothing new after initiateDisconnect: {seen:?}"
    );
    assert!(result.is_ok(), "{result:?}");
}

/// startFrom Latest means "what is committed after the registration": an event committed
/// as soon as the registration is accepted is delivered (10 handlers, to catch a race).
#[tokio::test]
async fn an_event_committed_right_after_a_latest_registration_is_delivered() {
    let server = Server::start().await;
    let channel = server.private().await;
    commit_n(&server, "es", 1).await;
    let mut missed = Vec::new();
    for i in 0..10u64 {
        let handler = EventHandler::new(Uuid::new_v4(), &[TYPE_A])
            .start_from(Selected::Position(Position::Latest as i32));
        let mut head = Head::connect(server.private().await, handler.message()).await;
        commit(&channel, DEVELOPMENT, &[(TYPE_A, "es", "{}")]).await;
        let delivered = head.drain_requests(QUIET / 2).await;
        let expected = i + 1;
        if seqs(&delivered) != vec![expected] {
            missed.push((expected, seqs(&delivered)));
        }
        head.abort();
    }
    assert!(missed.is_empty(), "(committed, delivered): {missed:?}");
}

/// A ping interval far out of range (4e18 s) never wedges the handler: its answers are
/// still taken, and once the head goes away the handler registers again.
#[tokio::test]
async fn a_huge_ping_interval_never_wedges_a_handler() {
    let server = Server::start().await;
    commit_n(&server, "es", 3).await;
    let handler = EventHandler::new(Uuid::new_v4(), &[TYPE_A]);
    let mut request = handler.request();
    request.call_context.as_mut().unwrap().ping_interval = Some(prost_types::Duration {
        seconds: 4_000_000_000_000_000_000,
        nanos: 0,
    });
    let mut head = Head::connect(server.private().await, registration_message(request)).await;
    assert_eq!(seqs(&handle(&mut head, 2).await), vec![0, 1]);
    assert_eq!(head.request().await.seq(), 2, "the answers were taken");
    head.abort();
    let mut head = Head::reconnect(server.private().await, handler.message()).await;
    assert_eq!(head.request().await.seq(), 2);
}

/// A grace period far out of range (i64::MAX s) never wedges the handler: the outstanding
/// answer is taken, the call then ends (nothing is outstanding), and the handler registers
/// again.
#[tokio::test]
async fn a_huge_grace_period_never_wedges_a_handler() {
    let server = Server::start().await;
    commit_n(&server, "es", 2).await;
    let handler = EventHandler::new(Uuid::new_v4(), &[TYPE_A]);
    let mut head = Head::connect(server.private().await, handler.message()).await;
    let r = head.request().await;
    let disconnect = ClientMessage::EventHandler(EventHandlerClientToRuntimeMessage {
        message: Some(Message::InitiateDisconnect(
            dolittle::runtime::events::processing::InitiateDisconnect {
                grace_period: Some(prost_types::Duration {
                    seconds: i64::MAX,
                    nanos: 0,
                }),
            },
        )),
    });
    assert!(head.send(disconnect).await);
    assert!(head.succeed(&r).await);
    // With nothing outstanding, the runtime ends the call (the grace period does not hold it).
    let (seen, _) = head
        .ended(MUST)
        .await
        .expect("the call ends once nothing is outstanding");
    assert!(seen.is_empty(), "a request after the disconnect: {seen:?}");
    let mut head = Head::reconnect(server.private().await, handler.message()).await;
    assert_eq!(
        head.request().await.seq(),
        1,
        "the answer in the grace period was kept"
    );
}

/// Concurrency only widens partitioned handlers: an unpartitioned handler with concurrency
/// 5, and a partitioned one with concurrency 0, have one request outstanding at a time.
#[tokio::test]
async fn concurrency_applies_to_partitioned_handlers_above_one_only() {
    let server = Server::start().await;
    let events: Vec<(Uuid, &str, &str)> =
        (0..4).map(|i| (TYPE_A, ["a", "b"][i % 2], "{}")).collect();
    commit(&server.private().await, DEVELOPMENT, &events).await;
    let mut unpartitioned = EventHandler::new(Uuid::new_v4(), &[TYPE_A]);
    unpartitioned.concurrency = 5;
    let partitioned = EventHandler::new(Uuid::new_v4(), &[TYPE_A]).partitioned(0);
    for handler in [unpartitioned, partitioned] {
        let mut head = Head::connect(server.private().await, handler.message()).await;
        for expected in 0..4 {
            let r = head.request().await;
            assert_eq!(r.seq(), expected, "{handler:?}");
            head.no_request(QUIET / 2).await;
            assert!(head.succeed(&r).await);
        }
    }
}

/// A head that closes its half of the stream is let go: the stream ends, the answered
/// position is kept, and the handler registers again at once.
#[tokio::test]
async fn a_head_that_closes_its_stream_is_let_go() {
    let server = Server::start().await;
    commit_n(&server, "es", 3).await;
    let handler = EventHandler::new(Uuid::new_v4(), &[TYPE_A]);
    let mut head = Head::connect(server.private().await, handler.message()).await;
    handle(&mut head, 2).await;
    let _unanswered = head.request().await;
    head.half_close();
    let (seen, _) = head.ended(MUST).await.expect("the stream ends");
    assert!(
        seen.iter().all(|m| !matches!(m, Incoming::Request(_))),
        "{seen:?}"
    );
    let mut head = Head::reconnect(server.private().await, handler.message()).await;
    assert_eq!(head.request().await.seq(), 2);
}

/// Twenty handlers of the same events, each on its own connection: each gets every event
/// once, in order, whatever the others do.
#[tokio::test]
async fn many_handlers_each_get_every_event() {
    let server = Server::start().await;
    commit_n(&server, "es", 100).await;
    let mut running = Vec::new();
    for _ in 0..20 {
        let handler = EventHandler::new(Uuid::new_v4(), &[TYPE_A]);
        let head = Head::connect(server.private().await, handler.message()).await;
        running.push(Answering::start(head, |_| Answer::Success));
    }
    commit_n(&server, "es", 50).await;
    let deadline = tokio::time::Instant::now() + MUST;
    for answering in &running {
        while answering.answered().len() < 150 {
            assert!(
                tokio::time::Instant::now() < deadline,
                "{} of 150",
                answering.answered().len()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    tokio::time::sleep(QUIET).await;
    for answering in running {
        let (_, answered) = answering.stop().await;
        assert_eq!(seqs(&answered), (0..150).collect::<Vec<u64>>());
    }
}

/// Five heads registering the same handler at once: exactly one is accepted, the others get
/// the already-registered failure.
#[tokio::test]
async fn concurrent_registrations_of_one_handler_accept_exactly_one() {
    let server = Server::start().await;
    let handler = EventHandler::new(Uuid::new_v4(), &[TYPE_A]);
    let mut channels = Vec::new();
    for _ in 0..5 {
        channels.push(server.private().await);
    }
    let attempts = channels
        .into_iter()
        .map(|channel| Head::register(channel, handler.message()));
    let results = annals_tests::join_all(attempts.collect()).await;
    let mut accepted = 0;
    let mut heads = Vec::new();
    for (head, response) in results {
        match response {
            Ok(None) => accepted += 1,
            Ok(Some(failure)) => assert_eq!(
                failure_id(Some(&failure)),
                Some(failures::HANDLER_ALREADY_REGISTERED)
            ),
            Err(status) => panic!("{status:?}"),
        }
        heads.push(head);
    }
    assert_eq!(accepted, 1);
}

/// A parked partition whose retry fails again is retried again, the retry count growing.
#[tokio::test]
async fn a_partition_failing_again_counts_its_retries() {
    let server = Server::start().await;
    commit_interleaved(&server).await;
    let handler = EventHandler::new(Uuid::new_v4(), &[TYPE_A]).partitioned(2);
    let mut head = Head::connect(server.private().await, handler.message()).await;
    let mut retries = Vec::new();
    let mut done = Vec::new();
    while done.len() < 5 {
        let r = head.request().await;
        if r.seq() == 0 && retries.len() < 3 {
            retries.push(r.retry_count());
            let reason = format!("attempt {}", retries.len());
            let answer = Answer::failure(&reason, true, Duration::from_millis(300));
            assert!(head.answer(&r, answer).await);
            if let Some(state) = &r.retry {
                assert_eq!(
                    state.failure_reason,
                    format!("attempt {}", retries.len() - 1)
                );
            }
            continue;
        }
        assert!(head.succeed(&r).await);
        done.push(r);
    }
    assert_eq!(retries, vec![0, 1, 2]);
    let of_a: Vec<u64> = done
        .iter()
        .filter(|r| r.event_source() == "a")
        .map(Request::seq)
        .collect();
    assert_eq!(of_a, vec![0, 2, 4]);
    assert_eq!(done.iter().find(|r| r.seq() == 0).unwrap().retry_count(), 3);
    head.no_request(QUIET).await;
}

/// stopAt holds back the later events of a partitioned handler too.
#[tokio::test]
async fn stop_at_holds_back_a_partitioned_handler() {
    let server = Server::start().await;
    commit_interleaved(&server).await;
    tokio::time::sleep(Duration::from_millis(50)).await;
    let later = commit_n(&server, "b", 1).await;
    let mut handler = EventHandler::new(Uuid::new_v4(), &[TYPE_A]).partitioned(2);
    handler.stop_at = Some(time(later[0].occurred.as_ref().unwrap()));
    let head = Head::connect(server.private().await, handler.message()).await;
    let answering = Answering::start(head, |_| Answer::Success);
    answering.wait_answered(5).await;
    tokio::time::sleep(QUIET).await;
    let (_, answered) = answering.stop().await;
    let mut all = seqs(&answered);
    all.sort_unstable();
    assert_eq!(all, vec![0, 1, 2, 3, 4]);
}

/// SIGKILL while a partitioned handler with concurrency 4 works through 2000 events of 7
/// event sources: after the restart every event not answered before comes (again), each
/// source in order, and nothing is skipped.
#[tokio::test]
async fn a_partitioned_handler_killed_under_load_skips_nothing() {
    const SOURCES: [&str; 7] = ["a", "b", "c", "d", "e", "f", "g"];
    let mut server = Server::start().await;
    let channel = server.private().await;
    let events: Vec<(Uuid, &str, &str)> = (0..500)
        .map(|i| (TYPE_A, SOURCES[(i * 3 + i / 7) % 7], "{}"))
        .collect();
    for _ in 0..4 {
        commit(&channel, DEVELOPMENT, &events).await;
    }
    let handler = EventHandler::new(Uuid::new_v4(), &[TYPE_A]).partitioned(4);
    let head = Head::connect(server.private().await, handler.message()).await;
    let answering = Answering::start(head, |_| Answer::Success);
    answering.wait_answered(700).await;
    server.kill().await;
    let (head, before) = answering.stop().await;
    drop(head);
    server.relaunch().await;
    let head = Head::reconnect(server.private().await, handler.message()).await;
    let answering = Answering::start(head, |_| Answer::Success);
    let answered_before: BTreeSet<u64> = seqs(&before).into_iter().collect();
    let deadline = tokio::time::Instant::now() + MUST;
    loop {
        let after: BTreeSet<u64> = seqs(&answering.answered()).into_iter().collect();
        if (0..2000).all(|s| after.contains(&s) || answered_before.contains(&s)) {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{} answered after the restart, {} before",
            after.len(),
            answered_before.len()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    tokio::time::sleep(QUIET).await;
    let (_, after) = answering.stop().await;
    for session in [&before, &after] {
        for es in SOURCES {
            let of: Vec<u64> = session
                .iter()
                .filter(|r| r.event_source() == es)
                .map(Request::seq)
                .collect();
            assert!(of.windows(2).all(|w| w[0] < w[1]), "{es}: {of:?}");
        }
    }
    let mut after_seqs = seqs(&after);
    after_seqs.sort_unstable();
    after_seqs.dedup();
    assert_eq!(
        after_seqs.len(),
        after.len(),
        "no event twice after the restart"
    );
}

/// Two partitions parked at once with different retry timeouts, a third flowing: each is
/// retried in turn, and every event is delivered once, each source in order.
#[tokio::test]
async fn two_parked_partitions_recover_independently() {
    let server = Server::start().await;
    let events: Vec<(Uuid, &str, &str)> = (0..12)
        .map(|i| (TYPE_A, ["a", "b", "c"][i % 3], "{}"))
        .collect();
    commit(&server.private().await, DEVELOPMENT, &events).await;
    let handler = EventHandler::new(Uuid::new_v4(), &[TYPE_A]).partitioned(3);
    let mut head = Head::connect(server.private().await, handler.message()).await;
    let mut failed = BTreeSet::new();
    let mut done: Vec<Request> = Vec::new();
    while done.len() < 12 {
        let r = head.request().await;
        let es = r.event_source().to_owned();
        if (es == "a" || es == "b") && failed.insert(es.clone()) {
            let timeout = Duration::from_millis(if es == "a" { 400 } else { 900 });
            let answer = Answer::failure(&format!("{es} fails"), true, timeout);
            assert!(head.answer(&r, answer).await);
            continue;
        }
        assert!(head.succeed(&r).await);
        done.push(r);
    }
    head.no_request(QUIET).await;
    let mut all = seqs(&done);
    all.sort_unstable();
    assert_eq!(all, (0..12).collect::<Vec<u64>>());
    for es in ["a", "b", "c"] {
        let of: Vec<u64> = done
            .iter()
            .filter(|r| r.event_source() == es)
            .map(Request::seq)
            .collect();
        assert!(of.windows(2).all(|w| w[0] < w[1]), "{es}: {of:?}");
    }
    for (seq, reason) in [(0, "a fails"), (1, "b fails")] {
        let retried = done.iter().find(|r| r.seq() == seq).unwrap();
        let state = retried.retry.as_ref().expect("a retry state");
        assert_eq!(
            (state.failure_reason.as_str(), state.retry_count),
            (reason, 1)
        );
    }
}

/// Random sequences of odd but well-formed messages (pongs, empty messages, second
/// registrations, answers to unknown calls, failures with negative timeouts, disconnects with
/// negative grace periods, half-closes) on 30 streams never bring the server down: a
/// handler registered afterwards gets every event. The seed is printed, and taken from
/// ANNALS_TEST_SEED when set.
#[tokio::test]
async fn odd_message_sequences_never_crash_the_server() {
    let seed = annals_tests::seed("ANNALS_TEST_SEED");
    let mut state = seed;
    let mut next = move |n: u64| {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state % n
    };
    let server = Server::start().await;
    commit_n(&server, "es", 5).await;
    let negative = prost_types::Duration {
        seconds: -5,
        nanos: -1,
    };
    for _ in 0..30 {
        let handler = EventHandler::new(Uuid::new_v4(), &[TYPE_A]);
        let mut head = Head::open(server.private().await, handler.message(), next(2) == 0);
        for _ in 0..10 {
            let outstanding = match head.next(Duration::from_millis(20)).await {
                Some(Incoming::Request(r)) => Some(*r),
                Some(Incoming::End(_)) => break,
                _ => None,
            };
            let message = match next(8) {
                0 => ClientMessage::pong(Kind::EventHandler),
                1 => ClientMessage::empty(Kind::EventHandler),
                2 => handler.message(),
                3 => ClientMessage::EventHandler(EventHandlerClientToRuntimeMessage {
                    message: Some(Message::HandleResult(
                        dolittle::runtime::events::processing::EventHandlerResponse {
                            call_context: Some(dolittle::services::ReverseCallResponseContext {
                                call_id: Some(id(Uuid::new_v4())),
                            }),
                            failure: None,
                        },
                    )),
                }),
                4 => ClientMessage::EventHandler(EventHandlerClientToRuntimeMessage {
                    message: Some(Message::InitiateDisconnect(
                        dolittle::runtime::events::processing::InitiateDisconnect {
                            grace_period: Some(negative),
                        },
                    )),
                }),
                5 => {
                    head.half_close();
                    continue;
                }
                _ => match &outstanding {
                    Some(r) => {
                        let answer = if next(2) == 0 {
                            Answer::Success
                        } else {
                            Answer::Failure {
                                reason: "odd".into(),
                                retry: next(2) == 0,
                                retry_timeout: None,
                            }
                        };
                        let mut message = head.answer_message(r.call_id, r, answer);
                        if let ClientMessage::EventHandler(EventHandlerClientToRuntimeMessage {
                            message: Some(Message::HandleResult(response)),
                        }) = &mut message
                        {
                            if let Some(failure) = &mut response.failure {
                                failure.retry_timeout = Some(negative);
                            }
                        }
                        message
                    }
                    None => ClientMessage::pong(Kind::EventHandler),
                },
            };
            let _ = head.send(message).await;
        }
        head.abort();
    }
    let handler = EventHandler::new(Uuid::new_v4(), &[TYPE_A]);
    let mut head = Head::connect(server.private().await, handler.message()).await;
    assert_eq!(
        seqs(&handle(&mut head, 5).await),
        vec![0, 1, 2, 3, 4],
        "seed {seed}"
    );
    assert!(
        std::path::Path::new(&format!("/proc/{}", server.pid())).exists(),
        "seed {seed}"
    );
}
