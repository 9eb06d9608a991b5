//! Wire twins: messages that put exactly the bytes of a contract message on the wire, with a
//! sub-message that many of them share carried as its encoded bytes. A length-delimited field
//! reads the same whether it was written as a message or as bytes, so a reader built from the
//! contract cannot tell them apart; the writer encodes the shared sub-message once instead of
//! once per request (an event handler's event, in every request about it, retries included).
//! (A Commit's answer is written without a twin: `api::committed::CommitAnswer`.)
//!
//! Invariants: a twin has the fields of its contract message with the same numbers, kinds and
//! order, and encodes byte for byte as that message would (the tests compare the two); the
//! encoded sub-messages are held as `Some`, which prost writes even when empty, as it writes a
//! present message.

use bytes::Bytes;

use crate::proto::dolittle::protobuf::Uuid;
use crate::proto::dolittle::runtime::events::processing::RetryProcessingState;
use crate::proto::dolittle::services::ReverseCallRequestContext;

/// `dolittle.runtime.events.processing.EventHandlerRuntimeToClientMessage`, whose requests carry
/// their event encoded ([`HandleEventRequestWire`]): an event handler's events are encoded once,
/// where the log is read, and each request copies their bytes.
#[derive(Clone, PartialEq, prost::Message)]
pub struct EventHandlerRuntimeToClientMessageWire {
    /// What the message is.
    #[prost(oneof = "event_handler_to_head::Message", tags = "1, 2, 3")]
    pub message: Option<event_handler_to_head::Message>,
}

/// The messages of [`EventHandlerRuntimeToClientMessageWire`].
pub mod event_handler_to_head {
    use crate::proto::dolittle::runtime::events::processing::EventHandlerRegistrationResponse;
    use crate::proto::dolittle::services::Ping;

    /// The contract's oneof, with the request's twin.
    #[derive(Clone, PartialEq, prost::Oneof)]
    #[expect(
        clippy::large_enum_variant,
        reason = "requests are nearly every message; boxing them would allocate once more each"
    )]
    pub enum Message {
        /// The answer to the registration.
        #[prost(message, tag = "1")]
        RegistrationResponse(EventHandlerRegistrationResponse),
        /// An event to handle.
        #[prost(message, tag = "2")]
        HandleRequest(super::HandleEventRequestWire),
        /// A ping.
        #[prost(message, tag = "3")]
        Ping(Ping),
    }
}

/// `dolittle.runtime.events.processing.HandleEventRequest`, with a [`StreamEventWire`].
#[derive(Clone, PartialEq, prost::Message)]
pub struct HandleEventRequestWire {
    /// The call id and execution context.
    #[prost(message, optional, tag = "1")]
    pub call_context: Option<ReverseCallRequestContext>,
    /// The event.
    #[prost(message, optional, tag = "2")]
    pub event: Option<StreamEventWire>,
    /// How the event failed before, when it did.
    #[prost(message, optional, tag = "3")]
    pub retry_processing_state: Option<RetryProcessingState>,
}

/// `dolittle.runtime.events.processing.StreamEvent`, its committed event encoded.
#[derive(Clone, PartialEq, prost::Message)]
pub struct StreamEventWire {
    /// An encoded `dolittle.runtime.events.CommittedEvent`.
    #[prost(bytes = "bytes", optional, tag = "1")]
    pub event: Option<Bytes>,
    /// The partition: the event source id.
    #[prost(string, tag = "2")]
    pub partition_id: String,
    /// The scope.
    #[prost(message, optional, tag = "3")]
    pub scope_id: Option<Uuid>,
    /// Whether the stream is partitioned.
    #[prost(bool, tag = "4")]
    pub partitioned: bool,
    /// The event's position in the stream processed.
    #[prost(uint64, tag = "5")]
    pub stream_position: u64,
}

#[cfg(test)]
mod tests {
    use prost::Message as _;

    use super::*;
    use crate::proto::dolittle::artifacts::Artifact;
    use crate::proto::dolittle::execution::ExecutionContext;
    use crate::proto::dolittle::runtime::events::CommittedEvent;
    use crate::proto::dolittle::runtime::events::processing::event_handler_runtime_to_client_message::Message as ToHead;
    use crate::proto::dolittle::runtime::events::processing::{
        EventHandlerRegistrationResponse, EventHandlerRuntimeToClientMessage, HandleEventRequest,
        StreamEvent,
    };
    use crate::proto::dolittle::services::Ping;

    fn uuid(n: u8) -> Uuid {
        Uuid { value: vec![n; 16] }
    }

    fn event() -> CommittedEvent {
        CommittedEvent {
            event_log_sequence_number: 300,
            occurred: Some(prost_types::Timestamp {
                seconds: 1_700_000_000,
                nanos: 5,
            }),
            event_source_id: "source".into(),
            execution_context: Some(ExecutionContext {
                microservice_id: Some(uuid(1)),
                tenant_id: Some(uuid(2)),
                correlation_id: Some(uuid(3)),
                environment: "Development".into(),
                ..ExecutionContext::default()
            }),
            event_type: Some(Artifact {
                id: Some(uuid(4)),
                generation: 2,
            }),
            public: true,
            content: "{\"a\":1}".into(),
            ..CommittedEvent::default()
        }
    }

    #[test]
    fn an_event_handler_request_twin_is_the_contracts_request() {
        let call_context = ReverseCallRequestContext {
            call_id: Some(uuid(9)),
            execution_context: event().execution_context,
        };
        for (retry, partition, partitioned, event) in [
            (None, "source", true, event()),
            (
                Some(RetryProcessingState {
                    failure_reason: "no".into(),
                    retry_count: 3,
                }),
                "",
                false,
                event(),
            ),
            (None, "", false, CommittedEvent::default()),
        ] {
            let contract = EventHandlerRuntimeToClientMessage {
                message: Some(ToHead::HandleRequest(HandleEventRequest {
                    call_context: Some(call_context.clone()),
                    event: Some(StreamEvent {
                        event: Some(event.clone()),
                        partition_id: partition.into(),
                        scope_id: Some(uuid(7)),
                        partitioned,
                        stream_position: 12,
                    }),
                    retry_processing_state: retry.clone(),
                })),
            };
            let twin = EventHandlerRuntimeToClientMessageWire {
                message: Some(event_handler_to_head::Message::HandleRequest(
                    HandleEventRequestWire {
                        call_context: Some(call_context.clone()),
                        event: Some(StreamEventWire {
                            event: Some(event.encode_to_vec().into()),
                            partition_id: partition.into(),
                            scope_id: Some(uuid(7)),
                            partitioned,
                            stream_position: 12,
                        }),
                        retry_processing_state: retry,
                    },
                )),
            };
            assert_eq!(twin.encode_to_vec(), contract.encode_to_vec());
        }
    }

    #[test]
    fn an_event_handler_registration_answer_and_ping_twin_are_the_contracts() {
        let answer = EventHandlerRuntimeToClientMessage {
            message: Some(ToHead::RegistrationResponse(
                EventHandlerRegistrationResponse { failure: None },
            )),
        };
        let twin = EventHandlerRuntimeToClientMessageWire {
            message: Some(event_handler_to_head::Message::RegistrationResponse(
                EventHandlerRegistrationResponse { failure: None },
            )),
        };
        assert_eq!(twin.encode_to_vec(), answer.encode_to_vec());
        let ping = EventHandlerRuntimeToClientMessage {
            message: Some(ToHead::Ping(Ping {})),
        };
        let twin = EventHandlerRuntimeToClientMessageWire {
            message: Some(event_handler_to_head::Message::Ping(Ping {})),
        };
        assert_eq!(twin.encode_to_vec(), ping.encode_to_vec());
    }
}
