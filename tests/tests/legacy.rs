//! The legacy port (Contracts 5.4, the generation of JavaScript SDK 17) driven by clients
//! built from our `proto-v5/` files, beside 7.8.1 clients on the private port of the same
//! runtime:
//! - a 5.4 head's events (Guid event sources as Uuid messages) are the 7.8.1 heads' events
//!   (the same Guid as text), both ways, aggregates included, with 5.4's aggregate version;
//! - an event source that is no Guid reaches a 5.4 head as the same name-based id each time;
//! - a broken id or a broken message is answered INVALID_ARGUMENT naming the field;
//! - a 5.4 head is registered without comparing its microservice and environment (Runtime
//!   6's rule), while the private port still compares them;
//! - embeddings are refused in band with a reason;
//! - `endpoints:private:contract: 5.4` makes the private port speak 5.4.
#![allow(clippy::unwrap_used, reason = "tests")]

use std::time::Duration;

use annals_server::proto_v5::dolittle as v5;
use annals_tests::proto::dolittle;
use annals_tests::{aggregate_request, commit, id, Server, DEVELOPMENT};
use tokio_stream::StreamExt as _;
use tonic::transport::Channel;
use uuid::Uuid;

use v5::runtime::events::event_store_client::EventStoreClient as LegacyEventStore;

const SOURCE: Uuid = Uuid::from_u128(0x5c0e_0000_0000_4000_8000_0000_0000_0001);
const ROOT: Uuid = Uuid::from_u128(0xa990_0000_0000_4000_8000_0000_0000_0001);
const TYPE: Uuid = Uuid::from_u128(0x7e00_0000_0000_4000_8000_0000_0000_0001);
/// The System tenant, which JavaScript SDK 17 puts in its default execution context.
const SYSTEM: Uuid = Uuid::from_u128(0x0883_1584_e016_42f6_bc5e_c4f0_98fe_d42b);

fn v5_id(id: Uuid) -> v5::protobuf::Uuid {
    v5::protobuf::Uuid {
        value: id.to_bytes_le().to_vec(),
    }
}

fn v5_uuid(id: &v5::protobuf::Uuid) -> Uuid {
    Uuid::from_bytes_le(id.value.as_slice().try_into().unwrap())
}

/// An execution context as JavaScript SDK 17 sends it: its own microservice, environment
/// "Undetermined", version 0.0.0.0.
fn sdk17_context(tenant: Uuid) -> v5::execution::ExecutionContext {
    v5::execution::ExecutionContext {
        microservice_id: Some(v5_id(Uuid::from_u128(0xf39b_1f61))),
        tenant_id: Some(v5_id(tenant)),
        version: Some(v5::versioning::Version::default()),
        correlation_id: Some(v5_id(Uuid::new_v4())),
        claims: Vec::new(),
        environment: "Undetermined".into(),
    }
}

fn call_context(tenant: Uuid) -> v5::services::CallRequestContext {
    v5::services::CallRequestContext {
        execution_context: Some(sdk17_context(tenant)),
        head_id: None,
    }
}

fn artifact() -> v5::artifacts::Artifact {
    v5::artifacts::Artifact {
        id: Some(v5_id(TYPE)),
        generation: 1,
    }
}

async fn legacy(server: &Server) -> Channel {
    Server::channel(server.ports.legacy).await
}

#[tokio::test]
async fn a_legacy_heads_events_are_the_current_heads_events_both_ways() {
    let server = Server::start().await;
    let mut old = LegacyEventStore::new(legacy(&server).await);

    // A 5.4 commit: the event source is a Uuid message.
    let response = old
        .commit(v5::runtime::events::CommitEventsRequest {
            call_context: Some(call_context(DEVELOPMENT)),
            events: vec![v5::runtime::events::UncommittedEvent {
                artifact: Some(artifact()),
                event_source_id: Some(v5_id(SOURCE)),
                public: false,
                content: "{\"n\":1}".into(),
            }],
        })
        .await
        .unwrap()
        .into_inner();
    assert!(response.failure.is_none(), "{:?}", response.failure);
    assert_eq!(response.events.len(), 1);
    assert_eq!(
        v5_uuid(response.events[0].event_source_id.as_ref().unwrap()),
        SOURCE
    );
    assert_eq!(response.events[0].r#type.as_ref().unwrap().generation, 1);

    // A 7.8.1 commit with the Guid as text, and one with text that is no Guid.
    let current = server.private().await;
    let committed = commit(
        &current,
        DEVELOPMENT,
        &[
            (TYPE, &SOURCE.to_string(), "{\"n\":2}"),
            (TYPE, "order-17", "{\"n\":3}"),
        ],
    )
    .await;
    assert_eq!(committed[0].event_log_sequence_number, 1);

    // A 5.4 aggregate commit, continued by a 7.8.1 head, fetched by both.
    let response = old
        .commit_for_aggregate(v5::runtime::events::CommitAggregateEventsRequest {
            call_context: Some(call_context(DEVELOPMENT)),
            events: Some(v5::runtime::events::UncommittedAggregateEvents {
                aggregate_root_id: Some(v5_id(ROOT)),
                event_source_id: Some(v5_id(SOURCE)),
                expected_aggregate_root_version: 0,
                events: (0..2)
                    .map(|n| {
                        v5::runtime::events::uncommitted_aggregate_events::UncommittedAggregateEvent {
                            artifact: Some(artifact()),
                            public: false,
                            content: format!("{{\"a\":{n}}}"),
                        }
                    })
                    .collect(),
            }),
        })
        .await
        .unwrap()
        .into_inner();
    assert!(response.failure.is_none(), "{:?}", response.failure);
    let events = response.events.unwrap();
    assert_eq!(v5_uuid(events.event_source_id.as_ref().unwrap()), SOURCE);
    // 5.4's aggregateRootVersion is the last event's (0-based) version.
    assert_eq!(events.aggregate_root_version, 1);
    assert_eq!(events.events.len(), 2);

    let mut now = dolittle::runtime::events::event_store_client::EventStoreClient::new(current);
    let response = now
        .commit_for_aggregate(aggregate_request(
            DEVELOPMENT,
            ROOT,
            &SOURCE.to_string(),
            2,
            &[(TYPE, "{\"a\":2}")],
        ))
        .await
        .unwrap()
        .into_inner();
    assert!(response.failure.is_none(), "{:?}", response.failure);

    let fetched = fetch(&mut old, SOURCE).await;
    assert!(fetched.failure.is_none(), "{:?}", fetched.failure);
    let events = fetched.events.unwrap();
    assert_eq!(v5_uuid(events.event_source_id.as_ref().unwrap()), SOURCE);
    assert_eq!(v5_uuid(events.aggregate_root_id.as_ref().unwrap()), ROOT);
    assert_eq!(events.aggregate_root_version, 2);
    let contents: Vec<&str> = events.events.iter().map(|e| e.content.as_str()).collect();
    assert_eq!(contents, ["{\"a\":0}", "{\"a\":1}", "{\"a\":2}"]);
    let sequence: Vec<u64> = events
        .events
        .iter()
        .map(|e| e.event_log_sequence_number)
        .collect();
    assert_eq!(sequence, [3, 4, 5]);

    // The 7.8.1 side reads the 5.4 events with the Guid as text.
    let fetched = now
        .fetch_for_aggregate(dolittle::runtime::events::FetchForAggregateRequest {
            call_context: Some(annals_tests::call_context(DEVELOPMENT)),
            aggregate: Some(dolittle::runtime::events::Aggregate {
                aggregate_root_id: Some(id(ROOT)),
                event_source_id: SOURCE.to_string(),
            }),
        })
        .await
        .unwrap()
        .into_inner();
    let events = fetched.events.unwrap();
    assert_eq!(events.event_source_id, SOURCE.to_string());
    assert_eq!(events.current_aggregate_root_version, 3);
    assert_eq!(events.events.len(), 3);

    // An aggregate a 7.8.1 head keeps under text that is no Guid: its events reach 5.4 heads
    // with the name-based id, but that id does not address it back (it is the 7.8.1 heads').
    let named = annals_server::legacy_id("order-17");
    let response = now
        .commit_for_aggregate(aggregate_request(
            DEVELOPMENT,
            ROOT,
            "order-17",
            0,
            &[(TYPE, "{}")],
        ))
        .await
        .unwrap()
        .into_inner();
    assert!(response.failure.is_none(), "{:?}", response.failure);
    assert_eq!(fetch(&mut old, named).await.events.unwrap().events.len(), 0);
    assert_eq!(
        fetch(&mut old, SOURCE).await.events.unwrap().events.len(),
        3
    );
}

/// FetchForAggregate of ROOT and `source` over the legacy port.
async fn fetch(
    old: &mut LegacyEventStore<Channel>,
    source: Uuid,
) -> v5::runtime::events::FetchForAggregateResponse {
    old.fetch_for_aggregate(v5::runtime::events::FetchForAggregateRequest {
        call_context: Some(call_context(DEVELOPMENT)),
        aggregate: Some(v5::runtime::events::Aggregate {
            aggregate_root_id: Some(v5_id(ROOT)),
            event_source_id: Some(v5_id(source)),
        }),
    })
    .await
    .unwrap()
    .into_inner()
}

#[tokio::test]
async fn broken_ids_and_messages_are_invalid_arguments_naming_the_field() {
    let server = Server::start().await;
    let mut old = LegacyEventStore::new(legacy(&server).await);
    let status = old
        .commit(v5::runtime::events::CommitEventsRequest {
            call_context: Some(call_context(DEVELOPMENT)),
            events: vec![v5::runtime::events::UncommittedEvent {
                artifact: Some(artifact()),
                event_source_id: Some(v5::protobuf::Uuid {
                    value: vec![1, 2, 3],
                }),
                public: false,
                content: "{}".into(),
            }],
        })
        .await
        .unwrap_err();
    assert_eq!(status.code(), tonic::Code::InvalidArgument, "{status:?}");
    assert_eq!(
        status.message(),
        "a CommitEventsRequest (Contracts 5.4) could not be read: UncommittedEvent.eventSourceId: \
         is not a GUID: 3 bytes where 16 were expected"
    );
    // Nothing was written.
    let committed = commit(&server.private().await, DEVELOPMENT, &[(TYPE, "x", "{}")]).await;
    assert_eq!(committed[0].event_log_sequence_number, 0);

    // A 7.8.1 commit sent to the legacy port: its text event source is no Uuid message.
    let mut wrong =
        dolittle::runtime::events::event_store_client::EventStoreClient::new(legacy(&server).await);
    let status = wrong
        .commit(annals_tests::commit_request(
            DEVELOPMENT,
            &[(TYPE, "not-a-guid", "{}")],
        ))
        .await
        .unwrap_err();
    assert_eq!(status.code(), tonic::Code::InvalidArgument, "{status:?}");
    assert!(
        status
            .message()
            .contains("UncommittedEvent.eventSourceId: is not a Uuid message"),
        "{}",
        status.message()
    );
}

fn registration(
    microservice: Uuid,
    environment: &str,
) -> v5::runtime::events::processing::EventHandlerClientToRuntimeMessage {
    use v5::runtime::events::processing as p;
    let mut context = sdk17_context(SYSTEM);
    context.microservice_id = Some(v5_id(microservice));
    context.environment = environment.into();
    p::EventHandlerClientToRuntimeMessage {
        message: Some(
            p::event_handler_client_to_runtime_message::Message::RegistrationRequest(
                p::EventHandlerRegistrationRequest {
                    call_context: Some(v5::services::ReverseCallArgumentsContext {
                        execution_context: Some(context),
                        head_id: Some(v5_id(Uuid::new_v4())),
                        ping_interval: Some(prost_types::Duration {
                            seconds: 1,
                            nanos: 0,
                        }),
                    }),
                    scope_id: Some(v5_id(Uuid::nil())),
                    event_handler_id: Some(v5_id(Uuid::new_v4())),
                    types: vec![artifact()],
                    partitioned: true,
                },
            ),
        ),
    }
}

/// Registers an event handler over `channel` and returns the registration's failure reason
/// (None: accepted) and, when accepted, the first event it is asked to handle.
async fn register(
    channel: Channel,
    microservice: Uuid,
    environment: &str,
) -> (
    Option<String>,
    Option<v5::runtime::events::processing::HandleEventRequest>,
) {
    use v5::runtime::events::processing as p;
    let (tx, rx) = tokio::sync::mpsc::channel(4);
    tx.send(registration(microservice, environment))
        .await
        .unwrap();
    let mut client = p::event_handlers_client::EventHandlersClient::new(channel);
    let mut incoming = client
        .connect(tokio_stream::wrappers::ReceiverStream::new(rx))
        .await
        .unwrap()
        .into_inner();
    let first = tokio::time::timeout(Duration::from_secs(30), incoming.next())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    let Some(p::event_handler_runtime_to_client_message::Message::RegistrationResponse(answer)) =
        first.message
    else {
        panic!("not a registration response: {first:?}");
    };
    if let Some(failure) = answer.failure {
        return (Some(failure.reason), None);
    }
    loop {
        let message = tokio::time::timeout(Duration::from_secs(30), incoming.next())
            .await
            .unwrap()
            .unwrap()
            .unwrap();
        if let Some(p::event_handler_runtime_to_client_message::Message::HandleRequest(request)) =
            message.message
        {
            drop(tx);
            return (None, Some(request));
        }
    }
}

#[tokio::test]
async fn legacy_heads_register_as_runtime_6_took_them_and_see_ids() {
    let server = Server::start().await;
    commit(
        &server.private().await,
        DEVELOPMENT,
        &[(TYPE, "order-17", "{\"n\":1}")],
    )
    .await;

    // A head of another microservice and environment "Undetermined", as SDK 17 sends by
    // default: accepted on the legacy port.
    let (refused, request) = register(legacy(&server).await, Uuid::new_v4(), "Undetermined").await;
    assert_eq!(refused, None);
    let event = request.unwrap().event.unwrap();
    assert!(event.partitioned);
    let committed = event.event.unwrap();
    let named = annals_server::legacy_id("order-17");
    assert_eq!(v5_uuid(committed.event_source_id.as_ref().unwrap()), named);
    assert_eq!(v5_uuid(event.partition_id.as_ref().unwrap()), named);
    assert_eq!(committed.content, "{\"n\":1}");
    assert_eq!(
        v5_uuid(committed.r#type.as_ref().unwrap().id.as_ref().unwrap()),
        TYPE
    );

    // The same registration on the private port (7.8.1 rules) is refused.
    let channel = server.private().await;
    let mut client =
        dolittle::runtime::events::processing::event_handlers_client::EventHandlersClient::new(
            channel,
        );
    let handler = annals_tests::head::EventHandler::new(Uuid::new_v4(), &[TYPE]);
    let mut request = handler.request();
    let context = request
        .call_context
        .as_mut()
        .unwrap()
        .execution_context
        .as_mut()
        .unwrap();
    context.environment = "Undetermined".into();
    let (tx, rx) = tokio::sync::mpsc::channel(4);
    tx.send(
        dolittle::runtime::events::processing::EventHandlerClientToRuntimeMessage {
            message: Some(
                dolittle::runtime::events::processing::event_handler_client_to_runtime_message::Message::RegistrationRequest(request),
            ),
        },
    )
    .await
    .unwrap();
    let mut incoming = client
        .connect(tokio_stream::wrappers::ReceiverStream::new(rx))
        .await
        .unwrap()
        .into_inner();
    let first = incoming.next().await.unwrap().unwrap();
    let Some(
        dolittle::runtime::events::processing::event_handler_runtime_to_client_message::Message::RegistrationResponse(answer),
    ) = first.message
    else {
        panic!("not a registration response: {first:?}");
    };
    let reason = answer.failure.unwrap().reason;
    assert!(reason.contains("environment \"Undetermined\""), "{reason}");
}

#[tokio::test]
async fn embeddings_are_refused_in_band_with_a_reason() {
    let server = Server::start().await;
    let mut embeddings =
        v5::runtime::embeddings::embeddings_client::EmbeddingsClient::new(legacy(&server).await);
    let response = embeddings
        .update(v5::runtime::embeddings::UpdateRequest {
            call_context: Some(call_context(DEVELOPMENT)),
            embedding_id: Some(v5_id(Uuid::new_v4())),
            key: "k".into(),
            state: "{}".into(),
        })
        .await
        .unwrap()
        .into_inner();
    let failure = response.failure.unwrap();
    assert_eq!(
        v5_uuid(failure.id.as_ref().unwrap()),
        Uuid::from_u128(0x3f4e_9b8a_21c7_4d55_8e0f_6a1d_c2b7_5e93)
    );
    assert!(
        failure.reason.starts_with("Embeddings are not supported"),
        "{}",
        failure.reason
    );
    let mut store = v5::runtime::embeddings::embedding_store_client::EmbeddingStoreClient::new(
        legacy(&server).await,
    );
    let response = store
        .get_keys(v5::runtime::embeddings::GetKeysRequest {
            call_context: Some(call_context(DEVELOPMENT)),
            embedding_id: Some(v5_id(Uuid::new_v4())),
        })
        .await
        .unwrap()
        .into_inner();
    assert!(response.failure.is_some());
    // The private port (7.8.1, as Runtime 9) has no embeddings at all.
    let mut current = v5::runtime::embeddings::embedding_store_client::EmbeddingStoreClient::new(
        server.private().await,
    );
    let status = current
        .get_keys(v5::runtime::embeddings::GetKeysRequest::default())
        .await
        .unwrap_err();
    assert_eq!(status.code(), tonic::Code::Unimplemented);
}

#[tokio::test]
async fn the_private_port_can_speak_5_4_instead() {
    let server = Server::start_with(&[], &["--set", "endpoints:private:contract=5.4"], &[]).await;
    let mut old = LegacyEventStore::new(server.private().await);
    let response = old
        .commit(v5::runtime::events::CommitEventsRequest {
            call_context: Some(call_context(DEVELOPMENT)),
            events: vec![v5::runtime::events::UncommittedEvent {
                artifact: Some(artifact()),
                event_source_id: Some(v5_id(SOURCE)),
                public: false,
                content: "{}".into(),
            }],
        })
        .await
        .unwrap()
        .into_inner();
    assert!(response.failure.is_none(), "{:?}", response.failure);
    assert_eq!(
        v5_uuid(response.events[0].event_source_id.as_ref().unwrap()),
        SOURCE
    );
}
