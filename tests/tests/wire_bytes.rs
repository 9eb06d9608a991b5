//! Byte-level checks of encoded messages against bytes written by hand from the contract
//! (Dolittle Contracts v7.8.1): field numbers, wire types, the .NET Guid byte order, and the
//! deprecated field 3 of CommittedAggregateEvents. If a field number or type drifts in our
//! .proto files, these fail even where both sides of a round trip would agree.
#![allow(clippy::unwrap_used, reason = "tests")]

use annals_tests::proto::dolittle;
use annals_tests::{id, uuid};
use prost::Message;
use uuid::Uuid;

/// Guid("445f8ea8-1a6f-40d7-b2fc-796dba92dc44").ToByteArray(), by hand.
const DEVELOPMENT_DOTNET: [u8; 16] = [
    0xa8, 0x8e, 0x5f, 0x44, 0x6f, 0x1a, 0xd7, 0x40, 0xb2, 0xfc, 0x79, 0x6d, 0xba, 0x92, 0xdc, 0x44,
];

#[test]
fn uuid_and_failure() {
    // Uuid { bytes value = 1 }: tag 0x0a (field 1, length-delimited), length 16.
    let mut expected = vec![0x0a, 0x10];
    expected.extend_from_slice(&DEVELOPMENT_DOTNET);
    assert_eq!(id(annals_tests::DEVELOPMENT).encode_to_vec(), expected);

    // Failure { Uuid id = 1; string reason = 2; }
    let failure = dolittle::protobuf::Failure {
        id: Some(id(annals_tests::DEVELOPMENT)),
        reason: "no".into(),
    };
    let mut expected = vec![0x0a, 0x12, 0x0a, 0x10];
    expected.extend_from_slice(&DEVELOPMENT_DOTNET);
    expected.extend_from_slice(&[0x12, 0x02, b'n', b'o']);
    assert_eq!(failure.encode_to_vec(), expected);
}

#[test]
fn uncommitted_event_decodes_from_hand_written_bytes() {
    // UncommittedEvent { Artifact eventType = 1; string eventSourceId = 2; bool public = 3;
    // string content = 4; } with Artifact { Uuid id = 1; uint32 generation = 2; }.
    let mut bytes = vec![0x0a, 0x16, 0x0a, 0x12, 0x0a, 0x10];
    bytes.extend_from_slice(&DEVELOPMENT_DOTNET);
    bytes.extend_from_slice(&[0x10, 0x01]); // generation 1
    bytes.extend_from_slice(&[0x12, 0x02, b'e', b's']); // eventSourceId "es"
    bytes.extend_from_slice(&[0x18, 0x01]); // public true
    bytes.extend_from_slice(&[0x22, 0x02, b'{', b'}']); // content "{}"
    let event = dolittle::runtime::events::UncommittedEvent::decode(bytes.as_slice()).unwrap();
    let event_type = event.event_type.unwrap();
    assert_eq!(
        uuid(event_type.id.as_ref().unwrap()),
        annals_tests::DEVELOPMENT
    );
    assert_eq!(event_type.generation, 1);
    assert_eq!(event.event_source_id, "es");
    assert!(event.public);
    assert_eq!(event.content, "{}");
}

#[test]
fn committed_aggregate_events_header_fields() {
    #[allow(deprecated, reason = "field 3 is part of the wire contract")]
    let events = dolittle::runtime::events::CommittedAggregateEvents {
        event_source_id: "o".into(),
        aggregate_root_id: None,
        aggregate_root_version: 4,
        events: vec![
            dolittle::runtime::events::committed_aggregate_events::CommittedAggregateEvent {
                event_log_sequence_number: 300,
                aggregate_root_version: 4,
                ..Default::default()
            },
        ],
        current_aggregate_root_version: 5,
    };
    // 1: "o"; 3: varint 4; 4: { 1: varint 300 (0xac 0x02), 7: varint 4 }; 5: varint 5.
    let expected = [
        0x0a, 0x01, b'o', 0x18, 0x04, 0x22, 0x05, 0x08, 0xac, 0x02, 0x38, 0x04, 0x28, 0x05,
    ];
    assert_eq!(events.encode_to_vec(), expected);
}

#[test]
fn execution_context_span_id_is_optional_bytes_field_7() {
    let context = dolittle::execution::ExecutionContext {
        environment: "D".into(),
        span_id: Some(vec![1; 8]),
        ..Default::default()
    };
    // 6: "D"; 7: 8 bytes.
    let mut expected = vec![0x32, 0x01, b'D', 0x3a, 0x08];
    expected.extend_from_slice(&[1; 8]);
    assert_eq!(context.encode_to_vec(), expected);
    // Present but empty is still sent (proto3 optional), absent is not.
    let empty = dolittle::execution::ExecutionContext {
        span_id: Some(Vec::new()),
        ..Default::default()
    };
    assert_eq!(empty.encode_to_vec(), [0x3a, 0x00]);
    assert!(dolittle::execution::ExecutionContext::default()
        .encode_to_vec()
        .is_empty());
}

#[test]
fn fetch_in_batches_request_oneof_fields() {
    // FetchForAggregateInBatchesRequest: 3 fetchAllEvents {} / 4 fetchEvents { repeated Artifact eventTypes = 1 }.
    use dolittle::runtime::events::fetch_for_aggregate_in_batches_request::Request;
    let all = dolittle::runtime::events::FetchForAggregateInBatchesRequest {
        request: Some(Request::FetchAllEvents(
            dolittle::runtime::events::FetchAllEventsForAggregateInBatchesRequest::default(),
        )),
        ..Default::default()
    };
    assert_eq!(all.encode_to_vec(), [0x1a, 0x00]);
    let some = dolittle::runtime::events::FetchForAggregateInBatchesRequest {
        request: Some(Request::FetchEvents(
            dolittle::runtime::events::FetchEventsForAggregateInBatchesRequest {
                event_types: vec![dolittle::artifacts::Artifact {
                    id: None,
                    generation: 2,
                }],
            },
        )),
        ..Default::default()
    };
    assert_eq!(some.encode_to_vec(), [0x22, 0x04, 0x0a, 0x02, 0x10, 0x02]);
    let _ = Uuid::nil();
}
