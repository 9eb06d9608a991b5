//! `dolittle.runtime.events.processing.EventHandlers/Connect`: a head registers an event
//! handler and the runtime pushes it the events of its types, per tenant, over the reverse
//! call (see `processing::processor` for the delivery rules).
//!
//! Registration: the handler id must not be the empty id (that is the event log's), the
//! event types must be well-formed ids, concurrency must not be negative. One connection per
//! (scope, handler id) at a time; another gets the original's "already registered" failure.

use std::collections::HashSet;
use std::convert::Infallible;
use std::sync::Arc;
use std::task::{Context, Poll};

use annals_contract::api::wire::event_handler_to_head::Message as ToHead;
use annals_contract::api::wire::{
    EventHandlerRuntimeToClientMessageWire, HandleEventRequestWire, StreamEventWire,
};
use annals_contract::processors::registration;
use annals_engine::EventView;
use bytes::Bytes;
use tonic::body::Body;
use tonic::codegen::{http, BoxFuture, BoxStream, Service};
use tonic::server::{Grpc, NamedService, StreamingService};
use tonic::{Request, Response, Status, Streaming};
use tonic_prost::ProstCodec;
use uuid::Uuid;

use crate::api::failure::Failure;
use crate::api::ids;
use crate::processing::processor::Outcome;
use crate::processing::{failures, Partitioning};
use crate::proto::dolittle::runtime::events::processing::{
    EventHandlerClientToRuntimeMessage, EventHandlerResponse,
};
use crate::reverse_call::event_handlers::EventHandlerProtocol;
use crate::runtime::Runtime;
use crate::services::event_store_wire::MessageLimits;
use crate::services::processor_session::{self, Question, Requests};

/// Asks the head to handle events of its types.
pub(crate) struct EventHandlerRequests {
    types: HashSet<Uuid>,
    /// The scope's id, encoded once for every request.
    scope: Bytes,
    partitioning: Partitioning,
}

impl Requests<EventHandlerProtocol> for EventHandlerRequests {
    fn selects(&self, event: &EventView<'_>) -> bool {
        self.types.contains(&event.event_type.id)
    }

    fn encodes_events(&self) -> bool {
        true
    }

    fn request(&self, question: Question<'_>) -> EventHandlerRuntimeToClientMessageWire {
        let delivery = question.delivery;
        EventHandlerRuntimeToClientMessageWire {
            message: Some(ToHead::HandleRequest(HandleEventRequestWire {
                call_context: Some(question.encoded_call_context()),
                event: Some(StreamEventWire {
                    event: Some(delivery.encoded.clone()),
                    partition_id: delivery.partition.clone(),
                    scope_id: Some(self.scope.clone()),
                    partitioned: self.partitioning.is_partitioned(),
                    stream_position: delivery.position.0,
                }),
                retry_processing_state: question.retry,
            })),
        }
    }

    fn outcome(&self, answer: EventHandlerResponse) -> Outcome {
        match answer.failure {
            None => Outcome::Done { include: None },
            Some(failure) => Outcome::failed(failure),
        }
    }
}

/// The EventHandlers service: its one rpc, Connect, answered with the wire twin of the
/// contract's messages (`api::wire`), so each request carries its event as the bytes encoded
/// where the log was read. The generated server can only send the contract's messages, so this
/// serves the rpc itself, as tonic's generated code would (same codec for the head's messages,
/// same limits, UNIMPLEMENTED for any other method).
#[derive(Clone)]
pub(crate) struct EventHandlersWire {
    runtime: Arc<Runtime>,
    max_decoding_message_size: Option<usize>,
    max_encoding_message_size: Option<usize>,
}

const CONNECT: &str = "/dolittle.runtime.events.processing.EventHandlers/Connect";

impl EventHandlersWire {
    pub(crate) fn new(runtime: Arc<Runtime>) -> EventHandlersWire {
        EventHandlersWire {
            runtime,
            max_decoding_message_size: None,
            max_encoding_message_size: None,
        }
    }
}

impl MessageLimits for EventHandlersWire {
    fn max_decoding_message_size(mut self, limit: usize) -> Self {
        self.max_decoding_message_size = Some(limit);
        self
    }

    fn max_encoding_message_size(mut self, limit: usize) -> Self {
        self.max_encoding_message_size = Some(limit);
        self
    }
}

impl NamedService for EventHandlersWire {
    const NAME: &'static str = "dolittle.runtime.events.processing.EventHandlers";
}

impl Service<http::Request<Body>> for EventHandlersWire {
    type Response = http::Response<Body>;
    type Error = Infallible;
    type Future = BoxFuture<Self::Response, Infallible>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: http::Request<Body>) -> Self::Future {
        if request.uri().path() != CONNECT {
            return Box::pin(async { Ok(Status::unimplemented("").into_http()) });
        }
        let (decoding, encoding) = (
            self.max_decoding_message_size,
            self.max_encoding_message_size,
        );
        let connect = Connect(Arc::clone(&self.runtime));
        Box::pin(async move {
            let codec = ProstCodec::<
                EventHandlerRuntimeToClientMessageWire,
                EventHandlerClientToRuntimeMessage,
            >::default();
            let mut grpc = Grpc::new(codec).apply_max_message_size_config(decoding, encoding);
            Ok(grpc.streaming(connect, request).await)
        })
    }
}

/// Connect, as tonic's streaming server calls it.
struct Connect(Arc<Runtime>);

impl StreamingService<EventHandlerClientToRuntimeMessage> for Connect {
    type Response = EventHandlerRuntimeToClientMessageWire;
    type ResponseStream = BoxStream<EventHandlerRuntimeToClientMessageWire>;
    type Future = BoxFuture<Response<Self::ResponseStream>, Status>;

    fn call(
        &mut self,
        request: Request<Streaming<EventHandlerClientToRuntimeMessage>>,
    ) -> Self::Future {
        let runtime = Arc::clone(&self.0);
        Box::pin(async move {
            Ok(Response::new(processor_session::connect(
                runtime,
                request,
                registration::event_handler,
                |spec| EventHandlerRequests {
                    types: spec.event_types.iter().map(|t| t.id).collect(),
                    scope: Bytes::copy_from_slice(&ids::uuid_message(spec.key.scope)),
                    partitioning: spec.partitioning,
                },
                |key| {
                    Failure::new(
                        failures::EVENT_HANDLER_ALREADY_REGISTERED,
                        format!(
                            "The event handler {} in scope {} is already registered",
                            key.id, key.scope
                        ),
                    )
                },
            )))
        })
    }
}
