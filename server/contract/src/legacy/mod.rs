//! Heads of the Contracts 5.4 generation (JavaScript SDK 17, the generation of Runtime 6),
//! served by the same services as 7.8.1 heads through one layer that rewrites their messages.
//!
//! The two generations share every package, service and rpc path, and nearly every message:
//! where they differ on the wire, 5.4 carries an event source or partition as a
//! `dolittle.protobuf.Uuid` and 7.8.1 as text (see `../shared/dolittle.md` section 7). So a
//! port that serves 5.4 heads wraps each service in [`Legacy`], which
//! - rewrites those fields in every message both ways (`wire`), at the places `plan` derives
//!   from our two descriptor sets (`proto-v5/` and `proto/`), so the services, the engine and
//!   the processors see one generation and a 5.4 and a 7.8.1 head see the same events;
//! - marks each request with [`LegacyHead`], which the services read for the one rule that
//!   differs: Runtime 6 did not compare a head's microservice and environment with its own.
//!
//! Invariants: a 5.4 id becomes the lowercase hyphenated text 7.8.1 heads write for a Guid;
//! text that is a Guid becomes that Guid toward a 5.4 head, and any other text the same
//! name-based id every time ([`legacy_id`]).

mod plan;
mod transport;
mod wire;

use std::sync::OnceLock;

pub use plan::{Action, Plan, Route, Routes};
pub use transport::Legacy;
pub use wire::{legacy_id, rewrite, Direction, WireError, LEGACY_ID_NAMESPACE};

/// Marks a request that came from a 5.4 head (through [`Legacy`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LegacyHead;

/// Whether `request` came from a 5.4 head.
pub fn is_legacy<T>(request: &tonic::Request<T>) -> bool {
    request.extensions().get::<LegacyHead>().is_some()
}

/// The rewrites of every 5.4 rpc, derived once from the compiled descriptor sets; an error
/// names each field the two generations disagree on in a way this layer cannot rewrite.
pub fn routes() -> Result<&'static Routes, &'static str> {
    static ROUTES: OnceLock<Result<Routes, String>> = OnceLock::new();
    ROUTES
        .get_or_init(|| {
            Routes::derive(
                crate::proto_v5::FILE_DESCRIPTOR_SET,
                crate::proto::FILE_DESCRIPTOR_SET,
            )
        })
        .as_ref()
        .map_err(String::as_str)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "tests")]

    use prost::Message;
    use uuid::Uuid;

    use super::*;
    use crate::api::ids;
    use crate::proto::dolittle as current;
    use crate::proto_v5::dolittle as v5;

    fn rewritten<M: Message + Default>(
        path: &str,
        direction: Direction,
        bytes: &[u8],
    ) -> Result<M, WireError> {
        let route = routes().unwrap().get(path).unwrap();
        let plan = match direction {
            Direction::FromLegacy => route.request.as_ref(),
            Direction::ToLegacy => route.response.as_ref(),
        }
        .unwrap();
        let mut out = Vec::new();
        rewrite(plan, direction, bytes, &mut out)?;
        Ok(M::decode(out.as_slice()).unwrap())
    }

    fn v5_id(id: Uuid) -> v5::protobuf::Uuid {
        v5::protobuf::Uuid {
            value: id.to_bytes_le().to_vec(),
        }
    }

    /// Every id field below `plan`, as `Message.field`.
    fn ids_in(plan: &Plan, out: &mut Vec<String>) {
        for number in 1..=32 {
            match plan.action(number) {
                Some(Action::Id { field }) => out.push(format!("{}.{field}", plan.message())),
                Some(Action::Nested(inner)) => ids_in(inner, out),
                None => {}
            }
        }
    }

    const SOURCE: Uuid = Uuid::from_u128(0x445f_8ea8_1a6f_40d7_b2fc_796d_ba92_dc44);

    #[test]
    fn the_rewrites_are_derived_from_the_descriptors_and_are_exactly_the_ids() {
        let routes = routes().unwrap();
        // Every rpc JavaScript SDK 17 calls is known.
        for path in [
            "/dolittle.runtime.events.EventStore/Commit",
            "/dolittle.runtime.events.EventStore/CommitForAggregate",
            "/dolittle.runtime.events.EventStore/FetchForAggregate",
            "/dolittle.runtime.events.processing.EventHandlers/Connect",
            "/dolittle.runtime.events.processing.Filters/Connect",
            "/dolittle.runtime.events.processing.Filters/ConnectPartitioned",
            "/dolittle.runtime.events.processing.Filters/ConnectPublic",
            "/dolittle.runtime.events.processing.Projections/Connect",
            "/dolittle.runtime.projections.Projections/GetOne",
            "/dolittle.runtime.projections.Projections/GetAll",
            "/dolittle.runtime.embeddings.Embeddings/Connect",
            "/dolittle.runtime.embeddings.EmbeddingStore/GetAll",
            "/dolittle.runtime.eventhorizon.Subscriptions/Subscribe",
        ] {
            assert!(routes.get(path).is_some(), "{path}");
        }
        // The id fields each rpc rewrites, by message, in both directions.
        let mut seen = Vec::new();
        for (_, route) in routes.all() {
            for plan in [&route.request, &route.response].into_iter().flatten() {
                ids_in(plan, &mut seen);
            }
        }
        seen.sort();
        seen.dedup();
        assert_eq!(
            seen,
            [
                "Aggregate.eventSourceId",
                "CommittedAggregateEvents.eventSourceId",
                "CommittedEvent.eventSourceId",
                "PartitionedFilterResponse.partitionId",
                "StreamEvent.partitionId",
                "Subscription.partitionId",
                "UncommittedAggregateEvents.eventSourceId",
                "UncommittedEvent.eventSourceId",
            ]
        );
        // Handshake and the other rpcs 5.4 never had are passed through.
        assert!(routes
            .get("/dolittle.runtime.handshake.Handshake/Handshake")
            .is_none());
    }

    #[test]
    fn a_legacy_commit_reads_as_text_and_its_answer_as_ids() {
        let request = v5::runtime::events::CommitEventsRequest {
            call_context: None,
            events: vec![
                v5::runtime::events::UncommittedEvent {
                    artifact: None,
                    event_source_id: Some(v5_id(SOURCE)),
                    public: true,
                    content: "{\"a\":1}".into(),
                },
                v5::runtime::events::UncommittedEvent {
                    artifact: None,
                    event_source_id: Some(v5_id(Uuid::nil())),
                    public: false,
                    content: "{}".into(),
                },
            ],
        };
        let path = "/dolittle.runtime.events.EventStore/Commit";
        let read: current::runtime::events::CommitEventsRequest =
            rewritten(path, Direction::FromLegacy, &request.encode_to_vec()).unwrap();
        assert_eq!(
            read.events[0].event_source_id,
            "445f8ea8-1a6f-40d7-b2fc-796dba92dc44"
        );
        assert!(read.events[0].public);
        assert_eq!(read.events[0].content, "{\"a\":1}");
        assert_eq!(
            read.events[1].event_source_id,
            "00000000-0000-0000-0000-000000000000"
        );

        let answer = current::runtime::events::CommitEventsResponse {
            failure: None,
            events: vec![
                current::runtime::events::CommittedEvent {
                    event_log_sequence_number: 7,
                    event_source_id: "445F8EA8-1A6F-40D7-B2FC-796DBA92DC44".into(),
                    content: "{}".into(),
                    ..Default::default()
                },
                current::runtime::events::CommittedEvent {
                    event_log_sequence_number: 8,
                    event_source_id: "order 17".into(),
                    ..Default::default()
                },
            ],
        };
        let sent: v5::runtime::events::CommitEventsResponse =
            rewritten(path, Direction::ToLegacy, &answer.encode_to_vec()).unwrap();
        let events = sent.events;
        assert_eq!(events[0].event_log_sequence_number, 7);
        assert_eq!(
            ids::from_wire("", &to_current(events[0].event_source_id.as_ref().unwrap())).unwrap(),
            SOURCE
        );
        // Text that is no Guid: the same name-based id every time.
        let named =
            ids::from_wire("", &to_current(events[1].event_source_id.as_ref().unwrap())).unwrap();
        assert_eq!(named, legacy_id("order 17"));
        assert_eq!(named.get_version_num(), 5);
        assert_ne!(named, legacy_id("order 18"));
    }

    fn to_current(id: &v5::protobuf::Uuid) -> current::protobuf::Uuid {
        current::protobuf::Uuid {
            value: id.value.clone(),
        }
    }

    #[test]
    fn events_to_a_legacy_handler_carry_ids_and_partitioned_filter_answers_text() {
        use current::runtime::events::processing as now;
        use v5::runtime::events::processing as old;
        let request = now::EventHandlerRuntimeToClientMessage {
            message: Some(
                now::event_handler_runtime_to_client_message::Message::HandleRequest(
                    now::HandleEventRequest {
                        call_context: None,
                        event: Some(now::StreamEvent {
                            event: Some(current::runtime::events::CommittedEvent {
                                event_source_id: SOURCE.to_string(),
                                content: "{\"x\":true}".into(),
                                ..Default::default()
                            }),
                            partition_id: SOURCE.to_string(),
                            scope_id: None,
                            partitioned: true,
                            stream_position: 3,
                        }),
                        retry_processing_state: None,
                    },
                ),
            ),
        };
        let sent: old::EventHandlerRuntimeToClientMessage = rewritten(
            "/dolittle.runtime.events.processing.EventHandlers/Connect",
            Direction::ToLegacy,
            &request.encode_to_vec(),
        )
        .unwrap();
        let Some(old::event_handler_runtime_to_client_message::Message::HandleRequest(handle)) =
            sent.message
        else {
            panic!("not a handle request");
        };
        let event = handle.event.unwrap();
        assert!(event.partitioned);
        assert_eq!(event.partition_id.unwrap().value, SOURCE.to_bytes_le());
        let committed = event.event.unwrap();
        assert_eq!(
            committed.event_source_id.unwrap().value,
            SOURCE.to_bytes_le()
        );
        assert_eq!(committed.content, "{\"x\":true}");

        let answer = old::PartitionedFilterClientToRuntimeMessage {
            message: Some(
                old::partitioned_filter_client_to_runtime_message::Message::FilterResult(
                    old::PartitionedFilterResponse {
                        call_context: None,
                        is_included: true,
                        partition_id: Some(v5_id(SOURCE)),
                        failure: None,
                    },
                ),
            ),
        };
        let read: now::PartitionedFilterClientToRuntimeMessage = rewritten(
            "/dolittle.runtime.events.processing.Filters/ConnectPartitioned",
            Direction::FromLegacy,
            &answer.encode_to_vec(),
        )
        .unwrap();
        let Some(now::partitioned_filter_client_to_runtime_message::Message::FilterResult(result)) =
            read.message
        else {
            panic!("not a filter result");
        };
        assert!(result.is_included);
        assert_eq!(result.partition_id, SOURCE.to_string());
    }

    #[test]
    fn a_broken_legacy_id_is_named() {
        let request = v5::runtime::events::FetchForAggregateRequest {
            call_context: None,
            aggregate: Some(v5::runtime::events::Aggregate {
                event_source_id: Some(v5::protobuf::Uuid {
                    value: vec![1, 2, 3],
                }),
                aggregate_root_id: None,
            }),
        };
        let error = rewritten::<current::runtime::events::FetchForAggregateRequest>(
            "/dolittle.runtime.events.EventStore/FetchForAggregate",
            Direction::FromLegacy,
            &request.encode_to_vec(),
        )
        .unwrap_err();
        assert_eq!(error.field, "Aggregate.eventSourceId");
        assert_eq!(
            error.reason,
            "is not a GUID: 3 bytes where 16 were expected"
        );
        // Bytes that are not protobuf at all.
        let error = rewritten::<current::runtime::events::FetchForAggregateRequest>(
            "/dolittle.runtime.events.EventStore/FetchForAggregate",
            Direction::FromLegacy,
            &[0x0a, 0x7f, 0x01],
        )
        .unwrap_err();
        assert_eq!(error.field, "FetchForAggregateRequest");
        assert!(error.reason.contains("cut short"), "{}", error.reason);
    }

    #[test]
    fn unknown_and_unchanged_fields_pass_through_byte_for_byte() {
        // A CommittedEvent with fields 5.4 lacks (none here) and an unknown field 99: the
        // only bytes that change are the event source's.
        let mut bytes = current::runtime::events::CommittedEvent {
            event_log_sequence_number: 1,
            event_source_id: SOURCE.to_string(),
            public: true,
            content: "{}".into(),
            ..Default::default()
        }
        .encode_to_vec();
        bytes.extend_from_slice(&[0x98, 0x06, 0x2a]); // field 99, varint 42
        let plan = routes()
            .unwrap()
            .get("/dolittle.runtime.events.EventStore/Commit")
            .unwrap()
            .response
            .clone()
            .unwrap();
        let Some(Action::Nested(event)) = plan.action(2) else {
            panic!("CommitEventsResponse.events is not descended into")
        };
        let mut out = Vec::new();
        rewrite(event, Direction::ToLegacy, &bytes, &mut out).unwrap();
        assert!(out.ends_with(&[0x98, 0x06, 0x2a]));
        let back = v5::runtime::events::CommittedEvent::decode(out.as_slice()).unwrap();
        assert_eq!(back.event_log_sequence_number, 1);
        assert!(back.public);
        let mut again = Vec::new();
        rewrite(event, Direction::FromLegacy, &out, &mut again).unwrap();
        assert_eq!(again, bytes, "a round trip gives the same bytes back");
    }
}
