//! Wire twins: messages that put exactly the bytes of a contract message on the wire, with a
//! sub-message that many of them share carried as its encoded bytes. A length-delimited field
//! reads the same whether it was written as a message or as bytes, so a reader built from the
//! contract cannot tell them apart; the writer encodes the shared sub-message once instead of
//! once per request (an event handler's event, in every request about it, retries included).
//! (A Commit's answer is written without a twin: `api::committed::CommitAnswer`.)
//!
//! A request's call context is carried encoded too ([`RequestContexts`]): its execution context
//! is the same for every request of a processor's tenant but the correlation id, so it is
//! encoded once around that id, and each request copies those bytes with its call id and
//! correlation id between them.
//!
//! Invariants: a twin has the fields of its contract message with the same numbers, kinds and
//! order, and encodes byte for byte as that message would (the tests compare the two); the
//! encoded sub-messages are held as `Some`, which prost writes even when empty, as it writes a
//! present message.

use std::sync::Arc;

use bytes::Bytes;
use prost::Message as _;

use crate::api::ids;
use crate::proto::dolittle::execution::ExecutionContext;
use crate::proto::dolittle::runtime::events::processing::RetryProcessingState;
use crate::proto::dolittle::services::ReverseCallRequestContext;

/// A processor's execution context for one tenant, from which each request's call context is
/// made: the contract's message ([`call_context`](Self::call_context)) or its encoding
/// ([`encoded_call_context`](Self::encoded_call_context)), byte for byte the same.
#[derive(Clone, Debug)]
pub struct RequestContexts {
    /// The execution context, without a correlation id (each request has its event's).
    context: ExecutionContext,
    /// Its encoding around the correlation id, shared by the clones.
    encoded: Arc<Around>,
}

/// An execution context encoded without its correlation id (field 4): the fields before it
/// and after it. Prost writes fields in the order of their numbers, so the correlation id's
/// field between the two is the whole message's encoding.
#[derive(Debug)]
struct Around {
    before: Vec<u8>,
    after: Vec<u8>,
}

/// `ReverseCallRequestContext`'s call id and execution context, and `ExecutionContext`'s
/// correlation id.
const CALL_ID_FIELD: u32 = 1;
const EXECUTION_CONTEXT_FIELD: u32 = 2;
const CORRELATION_ID_FIELD: u32 = 4;

impl RequestContexts {
    /// The contexts of requests made in `context` (its correlation id is replaced by each
    /// event's).
    pub fn new(mut context: ExecutionContext) -> RequestContexts {
        context.correlation_id = None;
        let before = ExecutionContext {
            microservice_id: context.microservice_id.clone(),
            tenant_id: context.tenant_id.clone(),
            version: context.version.clone(),
            ..ExecutionContext::default()
        }
        .encode_to_vec();
        // Every field numbered after the correlation id, whichever the contract has.
        let after = ExecutionContext {
            microservice_id: None,
            tenant_id: None,
            version: None,
            ..context.clone()
        }
        .encode_to_vec();
        RequestContexts {
            context,
            encoded: Arc::new(Around { before, after }),
        }
    }

    /// The execution context, without a correlation id.
    pub fn context(&self) -> &ExecutionContext {
        &self.context
    }

    /// The call context of the request `call_id` about an event of `correlation_id`.
    pub fn call_context(
        &self,
        call_id: uuid::Uuid,
        correlation_id: uuid::Uuid,
    ) -> ReverseCallRequestContext {
        request_context(
            call_id,
            ExecutionContext {
                correlation_id: Some(ids::to_wire(correlation_id)),
                ..self.context.clone()
            },
        )
    }

    /// [`call_context`](Self::call_context) encoded, in one allocation and without building
    /// the message.
    pub fn encoded_call_context(&self, call_id: uuid::Uuid, correlation_id: uuid::Uuid) -> Bytes {
        use prost::encoding::{encode_key, encode_varint, encoded_len_varint, key_len, WireType};
        let uuid_field_len = |tag| {
            key_len(tag) + encoded_len_varint(ids::UUID_MESSAGE_LEN as u64) + ids::UUID_MESSAGE_LEN
        };
        let uuid_field = |tag, id, buf: &mut Vec<u8>| {
            encode_key(tag, WireType::LengthDelimited, buf);
            encode_varint(ids::UUID_MESSAGE_LEN as u64, buf);
            buf.extend_from_slice(&ids::uuid_message(id));
        };
        let Around { before, after } = &*self.encoded;
        let context_len = before.len() + uuid_field_len(CORRELATION_ID_FIELD) + after.len();
        let len = uuid_field_len(CALL_ID_FIELD)
            + key_len(EXECUTION_CONTEXT_FIELD)
            + encoded_len_varint(context_len as u64)
            + context_len;
        let mut buf = Vec::with_capacity(len);
        uuid_field(CALL_ID_FIELD, call_id, &mut buf);
        encode_key(EXECUTION_CONTEXT_FIELD, WireType::LengthDelimited, &mut buf);
        encode_varint(context_len as u64, &mut buf);
        buf.extend_from_slice(before);
        uuid_field(CORRELATION_ID_FIELD, correlation_id, &mut buf);
        buf.extend_from_slice(after);
        debug_assert_eq!(buf.len(), len);
        Bytes::from(buf)
    }
}

/// The call context of the request `call_id` made in `execution_context` (as it is: for requests
/// whose execution context is not a processor's, such as the event horizon's, which carries each
/// event's own).
#[must_use]
pub fn request_context(
    call_id: uuid::Uuid,
    execution_context: ExecutionContext,
) -> ReverseCallRequestContext {
    ReverseCallRequestContext {
        call_id: Some(ids::to_wire(call_id)),
        execution_context: Some(execution_context),
    }
}

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

/// `dolittle.runtime.events.processing.HandleEventRequest`, with its call context and a
/// [`StreamEventWire`] encoded.
#[derive(Clone, PartialEq, prost::Message)]
pub struct HandleEventRequestWire {
    /// An encoded `dolittle.services.ReverseCallRequestContext`: the call id and execution
    /// context ([`RequestContexts::encoded_call_context`]).
    #[prost(bytes = "bytes", optional, tag = "1")]
    pub call_context: Option<Bytes>,
    /// The event.
    #[prost(message, optional, tag = "2")]
    pub event: Option<StreamEventWire>,
    /// How the event failed before, when it did.
    #[prost(message, optional, tag = "3")]
    pub retry_processing_state: Option<RetryProcessingState>,
}

/// `dolittle.runtime.events.processing.StreamEvent`, its committed event and scope encoded.
#[derive(Clone, PartialEq, prost::Message)]
pub struct StreamEventWire {
    /// An encoded `dolittle.runtime.events.CommittedEvent`.
    #[prost(bytes = "bytes", optional, tag = "1")]
    pub event: Option<Bytes>,
    /// The partition: the event source id.
    #[prost(string, tag = "2")]
    pub partition_id: String,
    /// The scope: an encoded `dolittle.protobuf.Uuid`, the same for every request of a
    /// processor.
    #[prost(bytes = "bytes", optional, tag = "3")]
    pub scope_id: Option<Bytes>,
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
    use crate::proto::dolittle::protobuf::Uuid;
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

    /// An execution context with every field set.
    fn full_context() -> ExecutionContext {
        ExecutionContext {
            microservice_id: Some(uuid(1)),
            tenant_id: Some(uuid(2)),
            version: Some(crate::proto::dolittle::versioning::Version {
                major: 1,
                minor: 2,
                patch: 3,
                build: 4,
                pre_release_string: "alpha".into(),
            }),
            correlation_id: Some(uuid(3)),
            claims: vec![crate::proto::dolittle::security::Claim {
                key: "k".into(),
                value: "v".repeat(200),
                value_type: "string".into(),
            }],
            environment: "Development".into(),
            span_id: Some(vec![5; 8]),
        }
    }

    #[test]
    fn an_encoded_call_context_is_the_contracts_call_context() {
        let call_id = uuid::Uuid::from_u128(0x0102_0304_0506_0708_090a_0b0c_0d0e_0f10);
        let correlation = uuid::Uuid::from_u128(77);
        for context in [
            full_context(),
            ExecutionContext::default(),
            ExecutionContext {
                environment: "Production".into(),
                ..ExecutionContext::default()
            },
            event().execution_context.unwrap(),
        ] {
            let contexts = RequestContexts::new(context.clone());
            assert_eq!(contexts.context().correlation_id, None);
            let contract = contexts.call_context(call_id, correlation);
            assert_eq!(
                contract.execution_context.as_ref().unwrap(),
                &ExecutionContext {
                    correlation_id: Some(ids::to_wire(correlation)),
                    ..context
                }
            );
            assert_eq!(
                contexts.encoded_call_context(call_id, correlation),
                contract.encode_to_vec()
            );
        }
    }

    #[test]
    fn an_event_handler_request_twin_is_the_contracts_request() {
        let contexts = RequestContexts::new(full_context());
        let (call_id, correlation) = (uuid::Uuid::from_u128(9), uuid::Uuid::from_u128(10));
        let call_context = contexts.call_context(call_id, correlation);
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
                        call_context: Some(contexts.encoded_call_context(call_id, correlation)),
                        event: Some(StreamEventWire {
                            event: Some(event.encode_to_vec().into()),
                            partition_id: partition.into(),
                            scope_id: Some(uuid(7).encode_to_vec().into()),
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
