//! The event handlers' management service on the management port against the real binary:
//! GetAll and GetOne show connected handlers with their progress per tenant, and the
//! reprocess calls send a running handler events again from a sequence number, a time, or
//! the start, with the failures for unknown handlers, tenants and positions.
#![allow(clippy::unwrap_used, reason = "tests")]

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use annals_tests::head::{time, Answer, Answering, EventHandler, Head, Request, MUST, QUIET};
use annals_tests::proto::dolittle;
use annals_tests::{
    artifact, commit, failure_id, failures, get_one, id, uuid, wait_position, Server, DEVELOPMENT,
};
use dolittle::runtime::events::processing::management as m;
use m::event_handlers_client::EventHandlersClient;
use m::tenant_scoped_stream_processor_status::Status as ProcessorStatus;
use m::{
    EventHandlerStatus, GetAllRequest, ReprocessAllEventsRequest, ReprocessEventsFromRequest,
    ReprocessEventsFromTimestampRequest,
};
use tonic::transport::Channel;
use uuid::Uuid;

const TYPE_A: Uuid = Uuid::from_u128(0xa1);
const TYPE_B: Uuid = Uuid::from_u128(0xb1);
const TENANT_A: Uuid = Uuid::from_u128(0x1111_1111_0000_4000_8000_0000_0000_0001);
const TENANT_B: Uuid = Uuid::from_u128(0x2222_2222_0000_4000_8000_0000_0000_0002);

async fn client(server: &Server) -> EventHandlersClient<Channel> {
    EventHandlersClient::new(server.management().await)
}

async fn get_all(server: &Server, tenant: Option<Uuid>) -> Vec<EventHandlerStatus> {
    let response = client(server)
        .await
        .get_all(GetAllRequest {
            tenant_id: tenant.map(id),
        })
        .await
        .unwrap()
        .into_inner();
    assert!(response.failure.is_none(), "{:?}", response.failure);
    response.event_handlers
}

fn find(all: &[EventHandlerStatus], handler: Uuid) -> Option<&EventHandlerStatus> {
    all.iter()
        .find(|h| h.event_handler_id.as_ref().map(uuid) == Some(handler))
}

async fn commit_n(server: &Server, tenant: Uuid, n: usize) {
    let events: Vec<(Uuid, &str, &str)> = (0..n).map(|_| (TYPE_A, "es", "{}")).collect();
    commit(&server.private().await, tenant, &events).await;
}

async fn handle(head: &mut Head, n: usize) -> Vec<Request> {
    let mut out = Vec::new();
    for _ in 0..n {
        let r = head.request().await;
        assert!(head.succeed(&r).await);
        out.push(r);
    }
    out
}

fn two_tenants() -> String {
    format!("tenants:\n  {TENANT_A}: {{}}\n  {TENANT_B}: {{}}\n")
}

/// GetAll lists each connected handler with its registration and, per tenant, the stream
/// position, the time of the last success and its (unpartitioned or partitioned) status; a
/// handler that disconnected is no longer listed.
#[tokio::test]
async fn get_all_lists_connected_handlers_with_their_progress() {
    let server = Server::start().await;
    commit_n(&server, DEVELOPMENT, 3).await;
    let mut shipping = EventHandler::new(Uuid::new_v4(), &[TYPE_A, TYPE_B]);
    shipping.alias = Some("Shipping".into());
    let mut head = Head::connect(server.private().await, shipping.message()).await;
    let partitioned = EventHandler::new(Uuid::new_v4(), &[TYPE_B]).partitioned(2);
    let other = Head::connect(server.private().await, partitioned.message()).await;
    let before = SystemTime::now() - Duration::from_secs(1);
    handle(&mut head, 3).await;
    wait_position(&server, shipping.id, DEVELOPMENT, 3).await;

    let all = get_all(&server, None).await;
    let status = find(&all, shipping.id).expect("the handler is listed");
    assert_eq!(status.scope_id.as_ref().map(uuid), Some(Uuid::nil()));
    assert_eq!(status.event_types, vec![artifact(TYPE_A), artifact(TYPE_B)]);
    assert!(!status.partitioned);
    assert_eq!(status.alias, "Shipping");
    assert_eq!(status.tenants.len(), 1);
    let tenant = &status.tenants[0];
    assert_eq!(tenant.tenant_id.as_ref().map(uuid), Some(DEVELOPMENT));
    assert_eq!(tenant.stream_position, 3);
    let last = time(tenant.last_successfully_processed.as_ref().expect("a time"));
    assert!(last >= before && last <= SystemTime::now() + Duration::from_secs(1));
    match &tenant.status {
        Some(ProcessorStatus::Unpartitioned(u)) => assert!(!u.is_failing, "{u:?}"),
        s => panic!("expected an unpartitioned status, got {s:?}"),
    }

    let status = find(&all, partitioned.id).expect("the partitioned handler is listed");
    assert!(status.partitioned);
    assert_eq!(status.tenants[0].stream_position, 0);
    match &status.tenants[0].status {
        Some(ProcessorStatus::Partitioned(p)) => assert!(p.failing_partitions.is_empty()),
        s => panic!("expected a partitioned status, got {s:?}"),
    }

    other.abort();
    let deadline = tokio::time::Instant::now() + MUST;
    while find(&get_all(&server, None).await, partitioned.id).is_some() {
        assert!(tokio::time::Instant::now() < deadline, "still listed");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(find(&get_all(&server, None).await, shipping.id).is_some());
}

/// GetAll and GetOne with a tenant show only that tenant; without one, every tenant.
#[tokio::test]
async fn a_tenant_narrows_the_status_to_that_tenant() {
    let server = Server::start_with(&[(".dolittle/runtime.yml", &two_tenants())], &[], &[]).await;
    commit_n(&server, TENANT_B, 2).await;
    let handler = EventHandler::new(Uuid::new_v4(), &[TYPE_A]);
    let mut head = Head::connect(server.private().await, handler.message()).await;
    handle(&mut head, 2).await;
    wait_position(&server, handler.id, TENANT_B, 2).await;

    let all = get_all(&server, None).await;
    let mut tenants: Vec<Uuid> = find(&all, handler.id)
        .unwrap()
        .tenants
        .iter()
        .map(|t| uuid(t.tenant_id.as_ref().unwrap()))
        .collect();
    tenants.sort();
    assert_eq!(tenants, vec![TENANT_A, TENANT_B]);

    for (tenant, position) in [(TENANT_A, 0), (TENANT_B, 2)] {
        let all = get_all(&server, Some(tenant)).await;
        let status = find(&all, handler.id).unwrap();
        assert_eq!(status.tenants.len(), 1);
        assert_eq!(status.tenants[0].tenant_id.as_ref().map(uuid), Some(tenant));
        assert_eq!(status.tenants[0].stream_position, position);

        let one = get_one(&server, Uuid::nil(), handler.id, Some(tenant)).await;
        assert!(one.failure.is_none(), "{:?}", one.failure);
        let one = one.event_handlers.unwrap();
        assert_eq!(one.tenants.len(), 1);
        assert_eq!(one.tenants[0].stream_position, position);
    }
    let one = get_one(&server, Uuid::nil(), handler.id, None).await;
    assert_eq!(one.event_handlers.unwrap().tenants.len(), 2);
}

/// GetOne of a handler that is not connected (or in another scope) fails with the
/// not-registered failure.
#[tokio::test]
async fn get_one_of_an_unknown_handler_fails() {
    let server = Server::start().await;
    let handler = EventHandler::new(Uuid::new_v4(), &[TYPE_A]);
    let _head = Head::connect(server.private().await, handler.message()).await;
    for (scope, handler) in [(Uuid::nil(), Uuid::new_v4()), (Uuid::new_v4(), handler.id)] {
        let response = get_one(&server, scope, handler, None).await;
        assert_eq!(
            failure_id(response.failure.as_ref()),
            Some(failures::HANDLER_NOT_REGISTERED)
        );
    }
}

/// ReprocessEventsFrom an event-log sequence number: the running handler gets the events
/// from there again, stream positions starting over at 0, then live events follow.
#[tokio::test]
async fn reprocess_events_from_a_sequence_number() {
    let server = Server::start().await;
    commit_n(&server, DEVELOPMENT, 5).await;
    let handler = EventHandler::new(Uuid::new_v4(), &[TYPE_A]);
    let mut head = Head::connect(server.private().await, handler.message()).await;
    handle(&mut head, 5).await;
    wait_position(&server, handler.id, DEVELOPMENT, 5).await;
    let response = client(&server)
        .await
        .reprocess_events_from(ReprocessEventsFromRequest {
            tenant_id: Some(id(DEVELOPMENT)),
            scope_id: Some(id(Uuid::nil())),
            event_handler_id: Some(id(handler.id)),
            stream_position: 2,
        })
        .await
        .unwrap()
        .into_inner();
    assert!(response.failure.is_none(), "{:?}", response.failure);
    let again = handle(&mut head, 3).await;
    assert_eq!(
        again.iter().map(Request::seq).collect::<Vec<_>>(),
        vec![2, 3, 4]
    );
    assert_eq!(
        again.iter().map(|r| r.stream_position).collect::<Vec<_>>(),
        vec![0, 1, 2]
    );
    head.no_request(QUIET).await;
    commit_n(&server, DEVELOPMENT, 1).await;
    assert_eq!(handle(&mut head, 1).await[0].seq(), 5);
}

/// Reprocess calls for one processor at the same time: each either sets the position or is
/// refused with the original's "already setting position" failure while another is under way;
/// nothing else. Rounds of 8 simultaneous calls go on until a round shows the refusal (one
/// call's reset takes a durable write, so the others overlap it). Every round ends with the
/// handler at the position asked for, given the events again from there.
#[tokio::test]
async fn concurrent_reprocess_calls_set_the_position_once_and_refuse_the_others() {
    let server = Server::start().await;
    commit_n(&server, DEVELOPMENT, 5).await;
    let handler = EventHandler::new(Uuid::new_v4(), &[TYPE_A]);
    let head = Head::connect(server.private().await, handler.message()).await;
    let answering = Answering::start(head, |_| Answer::Success);
    answering.wait_answered(5).await;
    wait_position(&server, handler.id, DEVELOPMENT, 5).await;
    let management = server.management().await;
    let mut refused_seen = 0;
    for round in 0..20 {
        let calls = (0..8).map(|_| {
            let mut client = EventHandlersClient::new(management.clone());
            let request = ReprocessEventsFromRequest {
                tenant_id: Some(id(DEVELOPMENT)),
                scope_id: Some(id(Uuid::nil())),
                event_handler_id: Some(id(handler.id)),
                stream_position: 3,
            };
            async move { client.reprocess_events_from(request).await }
        });
        let answers = annals_tests::join_all(calls.collect()).await;
        let mut set = 0;
        for answer in answers {
            match answer.unwrap().into_inner().failure {
                None => set += 1,
                Some(f) => {
                    assert_eq!(
                        failure_id(Some(&f)),
                        Some(failures::ALREADY_SETTING_POSITION),
                        "round {round}: {f:?}"
                    );
                    assert!(!f.reason.is_empty());
                    refused_seen += 1;
                }
            }
        }
        assert!(set >= 1, "round {round}: no call set the position");
        // The handler is given events 3 and 4 again: its stream, restarted at event 3, is at
        // position 2 once they are handled.
        wait_position(&server, handler.id, DEVELOPMENT, 2).await;
        if refused_seen > 0 && round >= 2 {
            break;
        }
    }
    assert!(
        refused_seen > 0,
        "20 rounds of 8 simultaneous reprocess calls never overlapped"
    );
    let (_, answered) = answering.stop().await;
    assert!(answered.len() > 5, "the events were given again");
    assert!(
        answered[5..].iter().all(|r| r.seq() >= 3),
        "redelivered from before the position asked for"
    );
}

/// ReprocessEventsFrom fails beyond the end of the log, for a handler that is not connected
/// and for a tenant that is not configured; the handler gets nothing again.
#[tokio::test]
async fn reprocess_events_from_refuses_what_does_not_exist() {
    let server = Server::start().await;
    commit_n(&server, DEVELOPMENT, 2).await;
    let handler = EventHandler::new(Uuid::new_v4(), &[TYPE_A]);
    let mut head = Head::connect(server.private().await, handler.message()).await;
    handle(&mut head, 2).await;
    let request = |tenant: Uuid, handler: Uuid, position: u64| ReprocessEventsFromRequest {
        tenant_id: Some(id(tenant)),
        scope_id: Some(id(Uuid::nil())),
        event_handler_id: Some(id(handler)),
        stream_position: position,
    };
    for (request, expected) in [
        (request(DEVELOPMENT, handler.id, 10), failures::BEYOND_END),
        (
            request(DEVELOPMENT, Uuid::new_v4(), 0),
            failures::HANDLER_NOT_REGISTERED,
        ),
        (
            request(Uuid::new_v4(), handler.id, 0),
            failures::UNKNOWN_TENANT,
        ),
    ] {
        let response = client(&server)
            .await
            .reprocess_events_from(request.clone())
            .await
            .unwrap()
            .into_inner();
        assert_eq!(
            failure_id(response.failure.as_ref()),
            Some(expected),
            "{request:?}: {:?}",
            response.failure
        );
    }
    head.no_request(QUIET).await;
}

/// ReprocessAllEvents starts the handler over from 0 for every tenant.
#[tokio::test]
async fn reprocess_all_events_starts_every_tenant_over() {
    let server = Server::start_with(&[(".dolittle/runtime.yml", &two_tenants())], &[], &[]).await;
    commit_n(&server, TENANT_A, 2).await;
    commit_n(&server, TENANT_B, 1).await;
    let handler = EventHandler::new(Uuid::new_v4(), &[TYPE_A]);
    let mut head = Head::connect(server.private().await, handler.message()).await;
    handle(&mut head, 3).await;
    wait_position(&server, handler.id, TENANT_A, 2).await;
    wait_position(&server, handler.id, TENANT_B, 1).await;
    let response = client(&server)
        .await
        .reprocess_all_events(ReprocessAllEventsRequest {
            scope_id: Some(id(Uuid::nil())),
            event_handler_id: Some(id(handler.id)),
        })
        .await
        .unwrap()
        .into_inner();
    assert!(response.failure.is_none(), "{:?}", response.failure);
    let mut again: Vec<(Uuid, u64)> = handle(&mut head, 3)
        .await
        .iter()
        .map(|r| (r.tenant(), r.seq()))
        .collect();
    again.sort();
    assert_eq!(again, vec![(TENANT_A, 0), (TENANT_A, 1), (TENANT_B, 0)]);
    head.no_request(QUIET).await;

    let response = client(&server)
        .await
        .reprocess_all_events(ReprocessAllEventsRequest {
            scope_id: Some(id(Uuid::nil())),
            event_handler_id: Some(id(Uuid::new_v4())),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        failure_id(response.failure.as_ref()),
        Some(failures::HANDLER_NOT_REGISTERED)
    );
}

/// ReprocessEventsFromTimestamp (Unix milliseconds) starts at the first event that occurred
/// at or after that time.
#[tokio::test]
async fn reprocess_events_from_a_timestamp() {
    let server = Server::start().await;
    commit_n(&server, DEVELOPMENT, 2).await;
    tokio::time::sleep(Duration::from_millis(50)).await;
    let later = commit(
        &server.private().await,
        DEVELOPMENT,
        &[(TYPE_A, "es", "{}"), (TYPE_A, "es", "{}")],
    )
    .await;
    let handler = EventHandler::new(Uuid::new_v4(), &[TYPE_A]);
    let mut head = Head::connect(server.private().await, handler.message()).await;
    handle(&mut head, 4).await;
    wait_position(&server, handler.id, DEVELOPMENT, 4).await;
    let occurred = time(later[0].occurred.as_ref().unwrap());
    let millis = occurred.duration_since(UNIX_EPOCH).unwrap().as_millis();
    for tenant in [Some(DEVELOPMENT), None] {
        let response = client(&server)
            .await
            .reprocess_events_from_timestamp(ReprocessEventsFromTimestampRequest {
                tenant_id: tenant.map(id),
                scope_id: Some(id(Uuid::nil())),
                event_handler_id: Some(id(handler.id)),
                stream_position: u64::try_from(millis).unwrap(),
            })
            .await
            .unwrap()
            .into_inner();
        assert!(response.failure.is_none(), "{:?}", response.failure);
        let again = handle(&mut head, 2).await;
        assert_eq!(
            again.iter().map(Request::seq).collect::<Vec<_>>(),
            vec![2, 3]
        );
        head.no_request(QUIET).await;
    }
}

/// The metrics of a processor by kind, processor, scope and tenant: events processed,
/// failures, position and lag follow what the head answered.
#[tokio::test]
async fn processor_metrics_follow_the_answers() {
    let server = Server::start().await;
    commit_n(&server, DEVELOPMENT, 3).await;
    let mut handler = EventHandler::new(Uuid::new_v4(), &[TYPE_A]);
    handler.alias = Some("Orders".into());
    let mut head = Head::connect(server.private().await, handler.message()).await;
    handle(&mut head, 2).await;
    let third = head.request().await;
    let fail = Answer::failure("once", true, Duration::from_millis(200));
    assert!(head.answer(&third, fail).await);
    handle(&mut head, 1).await;
    let processor = handler.id.to_string();
    let tenant = DEVELOPMENT.to_string();
    let scope = Uuid::nil().to_string();
    let labels = [
        ("kind", "event_handler"),
        ("processor", processor.as_str()),
        ("scope", scope.as_str()),
        ("tenant", tenant.as_str()),
    ];
    let expect = |name: &'static str, value: f64| (name, value);
    wait_metrics(
        &server,
        &labels,
        &[
            expect("annals_processor_events_processed_total", 3.0),
            expect("annals_processor_failures_total", 1.0),
            expect("annals_processor_position", 3.0),
            expect("annals_processor_lag_events", 0.0),
        ],
    )
    .await;
    // The original's series: each attempt (three successes, one failure) by event type, the
    // registration, the stream processor kind ("Actor" for event handlers), and what it
    // exports over OpenTelemetry only (offset, processed, lag).
    let type_a = TYPE_A.to_string();
    let handler_event = [
        ("scope", scope.as_str()),
        ("eventHandlerId", processor.as_str()),
        ("eventHandlerAlias", "Orders"),
        ("tenantId", tenant.as_str()),
        ("eventTypeId", type_a.as_str()),
        ("eventTypeAlias", ""),
    ];
    wait_metrics(
        &server,
        &handler_event,
        &[
            expect(
                "dolittle_customer_runtime_eventhandlers_event_processing_time_seconds_count",
                4.0,
            ),
            expect(
                "dolittle_customer_runtime_eventhandlers_event_processing_failures_total",
                1.0,
            ),
        ],
    )
    .await;
    wait_metrics(
        &server,
        &[
            ("eventHandlerId", processor.as_str()),
            ("eventHandlerAlias", "Orders"),
        ],
        &[expect(
            "dolittle_customer_runtime_eventhandlers_registrations_total",
            1.0,
        )],
    )
    .await;
    wait_metrics(
        &server,
        &[("eventProcessorKind", "Actor")],
        &[
            expect(
                "dolittle_system_runtime_streamprocessors_initializations_total",
                1.0,
            ),
            expect(
                "dolittle_system_runtime_streamprocessors_event_processing_time_seconds_count",
                4.0,
            ),
            expect(
                "dolittle_system_runtime_streamprocessors_failed_event_processings_total",
                1.0,
            ),
        ],
    )
    .await;
    let offsets = [
        ("tenantId", tenant.as_str()),
        ("scopeId", scope.as_str()),
        ("eventProcessorId", processor.as_str()),
        ("alias", "Orders"),
    ];
    wait_metrics(
        &server,
        &offsets,
        &[
            expect("dolittle_customer_runtime_stream_processors_offset", 2.0),
            expect(
                "dolittle_customer_runtime_stream_processors_processed_total",
                3.0,
            ),
            expect(
                "dolittle_customer_runtime_stream_processor_consumer_lag",
                0.0,
            ),
        ],
    )
    .await;

    commit_n(&server, DEVELOPMENT, 3).await;
    let _outstanding = head.request().await;
    wait_metrics(
        &server,
        &labels,
        &[
            expect("annals_processor_events_processed_total", 3.0),
            expect("annals_processor_position", 3.0),
            expect("annals_processor_lag_events", 3.0),
        ],
    )
    .await;
    wait_metrics(
        &server,
        &offsets,
        &[expect(
            "dolittle_customer_runtime_stream_processor_consumer_lag",
            3.0,
        )],
    )
    .await;
}

/// Polls /metrics until every (name, value) is met for `labels`.
async fn wait_metrics(server: &Server, labels: &[(&str, &str)], expected: &[(&str, f64)]) {
    let deadline = tokio::time::Instant::now() + MUST;
    loop {
        let (status, text) = Server::http_get(server.ports.metrics, "/metrics").await;
        assert_eq!(status, 200);
        let got: Vec<Option<f64>> = expected
            .iter()
            .map(|(name, _)| annals_tests::metric(&text, name, labels))
            .collect();
        if expected
            .iter()
            .zip(&got)
            .all(|((_, want), got)| *got == Some(*want))
        {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "wanted {expected:?} for {labels:?}, got {got:?}:\n{}",
            text.lines()
                .filter(|l| l.starts_with("annals_processor") || l.contains("processor"))
                .collect::<Vec<_>>()
                .join("\n")
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// While an unpartitioned handler waits to retry, GetOne shows it failing with the reason;
/// once the retry succeeds, it is no longer failing.
#[tokio::test]
async fn get_one_shows_a_retrying_handler_failing_until_it_succeeds() {
    let server = Server::start().await;
    commit_n(&server, DEVELOPMENT, 2).await;
    let handler = EventHandler::new(Uuid::new_v4(), &[TYPE_A]);
    let mut head = Head::connect(server.private().await, handler.message()).await;
    let r = head.request().await;
    let fail = Answer::failure("later", true, Duration::from_secs(2));
    assert!(head.answer(&r, fail).await);
    tokio::time::sleep(Duration::from_millis(300)).await;
    let status = get_one(&server, Uuid::nil(), handler.id, Some(DEVELOPMENT)).await;
    match &status.event_handlers.unwrap().tenants[0].status {
        Some(ProcessorStatus::Unpartitioned(u)) => {
            assert!(u.is_failing);
            assert_eq!(u.failure_reason, "later");
        }
        s => panic!("expected an unpartitioned status, got {s:?}"),
    }
    let retry = head.request().await;
    assert_eq!(retry.seq(), 0);
    assert!(head.succeed(&retry).await);
    handle(&mut head, 1).await;
    wait_position(&server, handler.id, DEVELOPMENT, 2).await;
    let status = get_one(&server, Uuid::nil(), handler.id, Some(DEVELOPMENT)).await;
    match &status.event_handlers.unwrap().tenants[0].status {
        Some(ProcessorStatus::Unpartitioned(u)) => assert!(!u.is_failing, "{u:?}"),
        s => panic!("expected an unpartitioned status, got {s:?}"),
    }
}

/// A partitioned handler's failing partition is listed with its retry count while parked,
/// and no longer once its retry succeeded.
#[tokio::test]
async fn get_one_lists_a_failing_partition_until_it_recovers() {
    let server = Server::start().await;
    let events = [
        (TYPE_A, "a", "{}"),
        (TYPE_A, "b", "{}"),
        (TYPE_A, "a", "{}"),
    ];
    commit(&server.private().await, DEVELOPMENT, &events).await;
    let handler = EventHandler::new(Uuid::new_v4(), &[TYPE_A]).partitioned(2);
    let mut head = Head::connect(server.private().await, handler.message()).await;
    let mut parked = None;
    for _ in 0..2 {
        let r = head.request().await;
        if r.event_source() == "a" {
            let fail = Answer::failure("a waits", true, Duration::from_secs(2));
            assert!(head.answer(&r, fail).await);
            parked = Some(r);
        } else {
            assert!(head.succeed(&r).await);
        }
    }
    let parked = parked.expect("a0 was requested");
    tokio::time::sleep(Duration::from_millis(300)).await;
    let status = get_one(&server, Uuid::nil(), handler.id, Some(DEVELOPMENT)).await;
    match &status.event_handlers.unwrap().tenants[0].status {
        Some(ProcessorStatus::Partitioned(p)) => {
            assert_eq!(p.failing_partitions.len(), 1, "{p:?}");
            let f = &p.failing_partitions[0];
            assert_eq!(f.partition_id, "a");
            assert_eq!(f.stream_position, parked.stream_position);
            assert_eq!(f.failure_reason, "a waits");
        }
        s => panic!("expected a partitioned status, got {s:?}"),
    }
    let retry = head.request().await;
    assert_eq!((retry.seq(), retry.retry_count()), (0, 1));
    assert!(head.succeed(&retry).await);
    assert_eq!(handle(&mut head, 1).await[0].seq(), 2);
    // The position passed the parked partition when it was parked; its recovery is written
    // a moment after the last answer.
    let deadline = tokio::time::Instant::now() + MUST;
    loop {
        let status = get_one(&server, Uuid::nil(), handler.id, Some(DEVELOPMENT)).await;
        match &status.event_handlers.unwrap().tenants[0].status {
            Some(ProcessorStatus::Partitioned(p)) if p.failing_partitions.is_empty() => break,
            Some(ProcessorStatus::Partitioned(p)) => assert!(
                tokio::time::Instant::now() < deadline,
                "still failing: {p:?}"
            ),
            s => panic!("expected a partitioned status, got {s:?}"),
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// ReprocessAllEvents of a handler registered with startFrom a timestamp starts over at that
/// time: events that occurred before it are never delivered to that registration (as in the
/// original, which moves a stored position forward to the timestamp).
#[tokio::test]
async fn reprocess_all_events_of_a_handler_started_from_a_timestamp_starts_at_the_timestamp() {
    let server = Server::start().await;
    commit_n(&server, DEVELOPMENT, 2).await;
    tokio::time::sleep(Duration::from_millis(50)).await;
    let later = commit(
        &server.private().await,
        DEVELOPMENT,
        &[(TYPE_A, "es", "{}")],
    )
    .await;
    let handler = EventHandler::new(Uuid::new_v4(), &[TYPE_A]).start_from(
        annals_tests::head::Selected::Timestamp(later[0].occurred.unwrap()),
    );
    let mut head = Head::connect(server.private().await, handler.message()).await;
    assert_eq!(handle(&mut head, 1).await[0].seq(), 2);
    wait_position(&server, handler.id, DEVELOPMENT, 1).await;
    let response = client(&server)
        .await
        .reprocess_all_events(ReprocessAllEventsRequest {
            scope_id: Some(id(Uuid::nil())),
            event_handler_id: Some(id(handler.id)),
        })
        .await
        .unwrap()
        .into_inner();
    assert!(response.failure.is_none(), "{:?}", response.failure);
    let mut again = Vec::new();
    while let Some(r) = head.next_request(QUIET * 2).await {
        assert!(head.succeed(&r).await);
        again.push(r.seq());
    }
    assert_eq!(again, vec![2]);
}

/// A reprocess request never waits for the head: it succeeds while the head holds an
/// outstanding request, unpartitioned or a parked partition's retry, and the events come
/// again from the new position.
#[tokio::test]
async fn reprocess_never_waits_for_an_outstanding_request() {
    let server = Server::start().await;
    let events = [
        (TYPE_A, "a", "{}"),
        (TYPE_A, "b", "{}"),
        (TYPE_A, "a", "{}"),
    ];
    commit(&server.private().await, DEVELOPMENT, &events).await;
    for partitioned in [false, true] {
        let mut handler = EventHandler::new(Uuid::new_v4(), &[TYPE_A]);
        if partitioned {
            handler = handler.partitioned(1);
        }
        let mut head = Head::connect(server.private().await, handler.message()).await;
        let first = head.request().await;
        let held = if partitioned {
            // a0 fails and is parked; b0 goes through; a0's retry is the held request.
            let fail = Answer::failure("a waits", true, Duration::from_millis(300));
            assert!(head.answer(&first, fail).await);
            let b0 = head.request().await;
            assert!(head.succeed(&b0).await);
            head.request().await
        } else {
            first
        };
        assert_eq!(held.seq(), 0, "partitioned: {partitioned}");
        let mut management = client(&server).await;
        let reprocess = management.reprocess_events_from(ReprocessEventsFromRequest {
            tenant_id: Some(id(DEVELOPMENT)),
            scope_id: Some(id(Uuid::nil())),
            event_handler_id: Some(id(handler.id)),
            stream_position: 1,
        });
        let response = tokio::time::timeout(MUST, reprocess)
            .await
            .unwrap_or_else(|_| panic!("partitioned {partitioned}: no answer in {MUST:?}"))
            .unwrap()
            .into_inner();
        assert!(response.failure.is_none(), "{:?}", response.failure);
        let again = head.request().await;
        assert_eq!(again.seq(), 1, "partitioned: {partitioned}");
        assert_eq!(again.stream_position, 0);
    }
}

/// Filters are no event handlers: GetAll does not list them and GetOne does not find them.
#[tokio::test]
async fn filters_are_not_listed_as_event_handlers() {
    use annals_tests::head::{Filter, Kind};
    let server = Server::start().await;
    let filter = Filter::new(Kind::Filter, Uuid::new_v4());
    let _filter = Head::connect(server.private().await, filter.message()).await;
    let handler = EventHandler::new(Uuid::new_v4(), &[TYPE_A]);
    let _handler = Head::connect(server.private().await, handler.message()).await;
    let all = get_all(&server, None).await;
    assert!(find(&all, handler.id).is_some());
    assert!(find(&all, filter.id).is_none(), "{all:?}");
    let one = get_one(&server, Uuid::nil(), filter.id, None).await;
    assert_eq!(
        failure_id(one.failure.as_ref()),
        Some(failures::HANDLER_NOT_REGISTERED)
    );
}

/// A reprocess restarts a handler that a failure stopped: an unpartitioned handler stopped
/// by a non-retryable failure, and a partitioned one with a parked partition, get the events
/// from the new position again.
#[tokio::test]
async fn reprocess_restarts_a_failed_handler() {
    let server = Server::start().await;
    let events = [
        (TYPE_A, "a", "{}"),
        (TYPE_A, "b", "{}"),
        (TYPE_A, "a", "{}"),
    ];
    commit(&server.private().await, DEVELOPMENT, &events).await;
    for partitioned in [false, true] {
        let mut handler = EventHandler::new(Uuid::new_v4(), &[TYPE_A]);
        if partitioned {
            handler = handler.partitioned(1);
        }
        let mut head = Head::connect(server.private().await, handler.message()).await;
        let first = head.request().await;
        let fail = Answer::failure("stuck", false, Duration::ZERO);
        assert!(head.answer(&first, fail).await);
        // Partitioned: b0 goes on, a is parked. Unpartitioned: nothing more.
        let rest: Vec<u64> = head
            .drain_requests(QUIET)
            .await
            .iter()
            .map(Request::seq)
            .collect();
        assert_eq!(rest, if partitioned { vec![1] } else { vec![] });
        let response = client(&server)
            .await
            .reprocess_events_from(ReprocessEventsFromRequest {
                tenant_id: Some(id(DEVELOPMENT)),
                scope_id: Some(id(Uuid::nil())),
                event_handler_id: Some(id(handler.id)),
                stream_position: 0,
            })
            .await
            .unwrap()
            .into_inner();
        assert!(response.failure.is_none(), "{:?}", response.failure);
        let mut again = Vec::new();
        while let Some(r) = head.next_request(QUIET * 2).await {
            assert!(head.succeed(&r).await);
            again.push(r.seq());
        }
        assert_eq!(again, vec![0, 1, 2], "partitioned: {partitioned}");
    }
}

/// The position a handler reached is shown again after a restart, as soon as it registers.
#[tokio::test]
async fn the_position_survives_a_restart() {
    let mut server = Server::start().await;
    commit_n(&server, DEVELOPMENT, 4).await;
    let handler = EventHandler::new(Uuid::new_v4(), &[TYPE_A]);
    let mut head = Head::connect(server.private().await, handler.message()).await;
    handle(&mut head, 4).await;
    wait_position(&server, handler.id, DEVELOPMENT, 4).await;
    let (stopped, ()) = tokio::join!(server.stop(), async {
        tokio::time::sleep(Duration::from_millis(300)).await;
        head.abort();
    });
    assert!(stopped);
    server.relaunch().await;
    let mut head = Head::reconnect(server.private().await, handler.message()).await;
    wait_position(&server, handler.id, DEVELOPMENT, 4).await;
    head.no_request(QUIET).await;
}

/// ReprocessEventsFrom for one tenant leaves the other tenant's position alone.
#[tokio::test]
async fn reprocess_of_one_tenant_leaves_the_other_alone() {
    let server = Server::start_with(&[(".dolittle/runtime.yml", &two_tenants())], &[], &[]).await;
    commit_n(&server, TENANT_A, 2).await;
    commit_n(&server, TENANT_B, 2).await;
    let handler = EventHandler::new(Uuid::new_v4(), &[TYPE_A]);
    let mut head = Head::connect(server.private().await, handler.message()).await;
    handle(&mut head, 4).await;
    wait_position(&server, handler.id, TENANT_A, 2).await;
    wait_position(&server, handler.id, TENANT_B, 2).await;
    let response = client(&server)
        .await
        .reprocess_events_from(ReprocessEventsFromRequest {
            tenant_id: Some(id(TENANT_B)),
            scope_id: Some(id(Uuid::nil())),
            event_handler_id: Some(id(handler.id)),
            stream_position: 0,
        })
        .await
        .unwrap()
        .into_inner();
    assert!(response.failure.is_none(), "{:?}", response.failure);
    let again: Vec<(Uuid, u64)> = handle(&mut head, 2)
        .await
        .iter()
        .map(|r| (r.tenant(), r.seq()))
        .collect();
    assert_eq!(again, vec![(TENANT_B, 0), (TENANT_B, 1)]);
    head.no_request(QUIET).await;
    wait_position(&server, handler.id, TENANT_A, 2).await;
}

/// Thirty heads in a row that die with a request outstanding: each next one registers, gets
/// the same unanswered event, and the registry holds only the live connection.
#[tokio::test]
async fn dying_heads_leave_nothing_behind() {
    let server = Server::start().await;
    commit_n(&server, DEVELOPMENT, 1).await;
    let handler = EventHandler::new(Uuid::new_v4(), &[TYPE_A]);
    for _ in 0..30 {
        let mut head = Head::reconnect(server.private().await, handler.message()).await;
        assert_eq!(head.request().await.seq(), 0);
        head.abort();
    }
    let mut head = Head::reconnect(server.private().await, handler.message()).await;
    handle(&mut head, 1).await;
    let all = get_all(&server, None).await;
    assert_eq!(all.len(), 1, "{all:?}");
    wait_position(&server, handler.id, DEVELOPMENT, 1).await;
}

/// ReprocessEventsFromTimestamp without a tenant resets every tenant, each at its own first
/// event at or after the time.
#[tokio::test]
async fn reprocess_from_a_timestamp_without_a_tenant_resets_every_tenant() {
    let server = Server::start_with(&[(".dolittle/runtime.yml", &two_tenants())], &[], &[]).await;
    commit_n(&server, TENANT_A, 2).await;
    commit_n(&server, TENANT_B, 1).await;
    tokio::time::sleep(Duration::from_millis(50)).await;
    let channel = server.private().await;
    let later = commit(&channel, TENANT_A, &[(TYPE_A, "es", "{}")]).await;
    commit(&channel, TENANT_B, &[(TYPE_A, "es", "{}")]).await;
    let handler = EventHandler::new(Uuid::new_v4(), &[TYPE_A]);
    let mut head = Head::connect(server.private().await, handler.message()).await;
    handle(&mut head, 5).await;
    wait_position(&server, handler.id, TENANT_A, 3).await;
    wait_position(&server, handler.id, TENANT_B, 2).await;
    let occurred = time(later[0].occurred.as_ref().unwrap());
    let millis = occurred.duration_since(UNIX_EPOCH).unwrap().as_millis();
    let response = client(&server)
        .await
        .reprocess_events_from_timestamp(ReprocessEventsFromTimestampRequest {
            tenant_id: None,
            scope_id: Some(id(Uuid::nil())),
            event_handler_id: Some(id(handler.id)),
            stream_position: u64::try_from(millis).unwrap(),
        })
        .await
        .unwrap()
        .into_inner();
    assert!(response.failure.is_none(), "{:?}", response.failure);
    let mut again: Vec<(Uuid, u64)> = Vec::new();
    while let Some(r) = head.next_request(QUIET * 2).await {
        assert!(head.succeed(&r).await);
        again.push((r.tenant(), r.seq()));
    }
    again.sort();
    assert_eq!(again, vec![(TENANT_A, 2), (TENANT_B, 1)]);
}

/// A reprocess while an unpartitioned handler waits to retry a failed event: the retry is
/// dropped and the events come from the new position.
#[tokio::test]
async fn reprocess_during_a_retry_wait_starts_over() {
    let server = Server::start().await;
    commit_n(&server, DEVELOPMENT, 3).await;
    let handler = EventHandler::new(Uuid::new_v4(), &[TYPE_A]);
    let mut head = Head::connect(server.private().await, handler.message()).await;
    handle(&mut head, 1).await;
    let failing = head.request().await;
    assert_eq!(failing.seq(), 1);
    let fail = Answer::failure("slow", true, Duration::from_secs(30));
    assert!(head.answer(&failing, fail).await);
    tokio::time::sleep(Duration::from_millis(200)).await;
    let response = client(&server)
        .await
        .reprocess_events_from(ReprocessEventsFromRequest {
            tenant_id: Some(id(DEVELOPMENT)),
            scope_id: Some(id(Uuid::nil())),
            event_handler_id: Some(id(handler.id)),
            stream_position: 0,
        })
        .await
        .unwrap()
        .into_inner();
    assert!(response.failure.is_none(), "{:?}", response.failure);
    let again = handle(&mut head, 3).await;
    assert_eq!(
        again.iter().map(Request::seq).collect::<Vec<_>>(),
        vec![0, 1, 2]
    );
    assert!(again.iter().all(|r| r.retry.is_none()), "{again:?}");
    let status = get_one(&server, Uuid::nil(), handler.id, Some(DEVELOPMENT)).await;
    match &status.event_handlers.unwrap().tenants[0].status {
        Some(ProcessorStatus::Unpartitioned(u)) => assert!(!u.is_failing, "{u:?}"),
        s => panic!("expected an unpartitioned status, got {s:?}"),
    }
}
