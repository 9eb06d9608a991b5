//! `dolittle.runtime.events.processing.EventHandlers/Connect`: a head registers an event
//! handler and the runtime pushes it the events of its types, per tenant, over the reverse
//! call (see `processing::processor` for the delivery rules).
//!
//! Registration: the handler id must not be the empty id (that is the event log's), the
//! event types must be well-formed ids, concurrency must not be negative. One connection per
//! (scope, handler id) at a time; another gets the original's "already registered" failure.

use std::collections::HashSet;
use std::sync::Arc;

use annals_contract::processors::registration;
use annals_engine::EventView;
use tonic::{Request, Response, Status, Streaming};
use uuid::Uuid;

use crate::api::failure::Failure;
use crate::api::ids;
use crate::processing::processor::Outcome;
use crate::processing::{failures, Partitioning};
use crate::proto::dolittle::protobuf::Uuid as WireUuid;
use crate::proto::dolittle::runtime::events::processing::event_handler_runtime_to_client_message::Message as ToHead;
use crate::proto::dolittle::runtime::events::processing::event_handlers_server::EventHandlers;
use crate::proto::dolittle::runtime::events::processing::{
    EventHandlerClientToRuntimeMessage, EventHandlerResponse, EventHandlerRuntimeToClientMessage,
    HandleEventRequest, StreamEvent,
};
use crate::reverse_call::event_handlers::EventHandlerProtocol;
use crate::runtime::Runtime;
use crate::services::processor_session::{self, Question, Requests};

/// Asks the head to handle events of its types.
pub(crate) struct EventHandlerRequests {
    types: HashSet<Uuid>,
    scope: WireUuid,
    partitioning: Partitioning,
}

impl Requests<EventHandlerProtocol> for EventHandlerRequests {
    fn selects(&self, event: &EventView<'_>) -> bool {
        self.types.contains(&event.event_type.id)
    }

    fn request(&self, question: Question<'_>) -> EventHandlerRuntimeToClientMessage {
        let delivery = question.delivery;
        EventHandlerRuntimeToClientMessage {
            message: Some(ToHead::HandleRequest(HandleEventRequest {
                call_context: Some(question.call_context),
                event: Some(StreamEvent {
                    event: Some((*delivery.event).clone()),
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

/// The EventHandlers service.
#[derive(Clone)]
pub(crate) struct EventHandlersService {
    runtime: Arc<Runtime>,
}

impl EventHandlersService {
    pub(crate) fn new(runtime: Arc<Runtime>) -> EventHandlersService {
        EventHandlersService { runtime }
    }
}

#[tonic::async_trait]
impl EventHandlers for EventHandlersService {
    async fn connect(
        &self,
        request: Request<Streaming<EventHandlerClientToRuntimeMessage>>,
    ) -> Result<Response<tonic::codegen::BoxStream<EventHandlerRuntimeToClientMessage>>, Status>
    {
        Ok(Response::new(processor_session::connect(
            Arc::clone(&self.runtime),
            request,
            registration::event_handler,
            |spec| EventHandlerRequests {
                types: spec.event_types.iter().map(|t| t.id).collect(),
                scope: ids::to_wire(spec.key.scope),
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
    }
}
