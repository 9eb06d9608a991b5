//! `dolittle.runtime.events.processing.EventHandlers/Connect`: a head registers an event
//! handler and the runtime pushes it the events of its types, per tenant, over the reverse
//! call (see `processing::processor` for the delivery rules).
//!
//! Registration: the handler id must not be the empty id (that is the event log's), the
//! event types must be well-formed ids, concurrency must not be negative. One connection per
//! (scope, handler id) at a time; another gets the original's "already registered" failure.

use std::collections::HashSet;
use std::sync::Arc;

use annals_engine::{EventLogSequenceNumber, EventType, EventView};
use tonic::{Request, Response, Status, Streaming};
use uuid::Uuid;

use crate::api::convert;
use crate::api::failure::Failure;
use crate::api::ids;
use crate::processing::processor::{Bounds, Outcome, StartFrom};
use crate::processing::{failures, Kind, Partitioning, ProcessorKey, PUBLIC_STREAMS_SCOPE};
use crate::proto::dolittle::protobuf::Uuid as WireUuid;
use crate::proto::dolittle::runtime::events::processing::event_handler_runtime_to_client_message::Message as ToHead;
use crate::proto::dolittle::runtime::events::processing::event_handlers_server::EventHandlers;
use crate::proto::dolittle::runtime::events::processing::{
    start_from, EventHandlerClientToRuntimeMessage, EventHandlerRegistrationRequest,
    EventHandlerResponse, EventHandlerRuntimeToClientMessage, HandleEventRequest, StreamEvent,
};
use crate::reverse_call::event_handlers::EventHandlerProtocol;
use crate::runtime::Runtime;
use crate::services::processor_session::{self, Question, Requests, Spec};

/// The most events a partitioned handler has in flight at once per tenant; a registration
/// asking for more gets this many (the bound on what a head that never answers can make the
/// runtime hold).
const CONCURRENCY_MAX: usize = 256;

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
            spec,
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

/// The registration, checked.
fn spec(request: &EventHandlerRegistrationRequest) -> Result<Spec, Failure> {
    let invalid = |reason: String| Failure::new(failures::EVENT_HANDLER_FAILED_TO_REGISTER, reason);
    let id = ids::required("eventHandlerId", request.event_handler_id.as_ref())
        .map_err(|f| invalid(f.reason))?;
    if id.is_nil() {
        return Err(Failure::new(
            failures::EVENT_HANDLER_ON_NON_WRITEABLE_STREAM,
            "the event handler id cannot be the empty id (it is the event log's)",
        ));
    }
    let scope = match request.scope_id.as_ref() {
        None => Uuid::nil(),
        Some(scope) => ids::from_wire("scopeId", scope).map_err(|f| invalid(f.reason))?,
    };
    let event_types = request
        .event_types
        .iter()
        .enumerate()
        .map(|(i, t)| convert::event_type(format!("eventTypes[{i}]"), Some(t)))
        .collect::<Result<Vec<EventType>, Failure>>()
        .map_err(|f| invalid(f.reason))?;
    let partitioning = Partitioning::from(request.partitioned);
    let concurrency = usize::try_from(request.concurrency).map_err(|_| {
        invalid(format!(
            "concurrency is {}; it must be 0 or more",
            request.concurrency
        ))
    })?;
    let mut bounds = Bounds {
        stop_at_ns: request.stop_at.as_ref().map(convert::timestamp_ns),
        ..Bounds::default()
    };
    match request
        .start_from
        .as_ref()
        .and_then(|s| s.selected.as_ref())
    {
        None => {}
        Some(start_from::Selected::Position(position)) => {
            bounds.start = match start_from::Position::try_from(*position) {
                Ok(start_from::Position::Start) => StartFrom::Start,
                Ok(start_from::Position::Latest) => StartFrom::Latest,
                Err(_) => {
                    return Err(invalid(format!(
                        "startFrom.position {position} is neither Start (0) nor Latest (1)"
                    )))
                }
            };
        }
        Some(start_from::Selected::Timestamp(at)) => {
            bounds.not_before_ns = Some(convert::timestamp_ns(at));
        }
        Some(start_from::Selected::EventLogSequenceNumber(n)) => {
            bounds.start = StartFrom::Position(EventLogSequenceNumber(*n));
        }
    }
    if scope == PUBLIC_STREAMS_SCOPE {
        return Err(invalid(format!(
            "scope {scope} is reserved for public streams"
        )));
    }
    Ok(Spec {
        key: ProcessorKey {
            kind: Kind::EventHandler,
            scope,
            id,
        },
        source_scope: scope,
        state_scope: scope,
        source_stream: id,
        event_types,
        partitioning,
        alias: request.alias.clone().filter(|a| !a.is_empty()),
        // Concurrency applies to partitioned handlers only (0 means 1), up to
        // CONCURRENCY_MAX: each event in flight is held in memory until answered.
        concurrency: match partitioning {
            Partitioning::Partitioned => concurrency.clamp(1, CONCURRENCY_MAX),
            Partitioning::Unpartitioned => 1,
        },
        bounds,
        target: None,
        projection: None,
    })
}
