//! `dolittle.runtime.events.processing.Projections/Connect`: a head registers a projection
//! (Runtime 8's semantics) and the runtime asks it, per tenant and one event at a time, for
//! the next state of the event's key, given the key's current state; the states and the
//! position are written together (`projections::states`).
//!
//! Registration is refused (the original's failure id, `eb82f4d3`) for a missing id, a
//! selector without a key or event type, an event type given twice, an occurred format .NET
//! refuses, an initial state that is not a JSON object (the original left such a projection
//! half-registered), MongoDB copies (annals keeps no read-model database), and a projection
//! connected already. Unlike the original, which checked only the first occurred format,
//! every occurred format is checked.

use std::collections::HashSet;
use std::sync::Arc;

use annals_engine::{EventType, EventView};
use tonic::{Request, Response, Status, Streaming};
use uuid::Uuid;

use crate::api::convert;
use crate::api::failure::Failure;
use crate::api::ids;
use crate::processing::processor::{Bounds, Delivery, Handler, Outcome};
use crate::processing::{Kind, Partitioning, ProcessorKey, PUBLIC_STREAMS_SCOPE};
use crate::projections::states::TenantStates;
use crate::projections::{dotnet, Definition, KeySelector, Selector, EVENT_LOG_PARTITION};
use crate::proto::dolittle::execution::ExecutionContext as WireExecutionContext;
use crate::proto::dolittle::protobuf::{Failure as WireFailure, Uuid as WireUuid};
use crate::proto::dolittle::runtime::events::processing::projection_client_to_runtime_message::Message as FromHead;
use crate::proto::dolittle::runtime::events::processing::projection_event_selector::Selector as WireSelector;
use crate::proto::dolittle::runtime::events::processing::projection_response::Response as Answer;
use crate::proto::dolittle::runtime::events::processing::projection_runtime_to_client_message::Message as ToHead;
use crate::proto::dolittle::runtime::events::processing::projections_server::Projections;
use crate::proto::dolittle::runtime::events::processing::{
    ProjectionClientToRuntimeMessage, ProjectionRegistrationRequest,
    ProjectionRegistrationResponse, ProjectionRequest, ProjectionResponse,
    ProjectionRuntimeToClientMessage, RetryProcessingState, StreamEvent,
};
use crate::proto::dolittle::runtime::projections::{
    ProjectionCurrentState, ProjectionCurrentStateType,
};
use crate::proto::dolittle::services::{Ping, ReverseCallArgumentsContext};
use crate::reverse_call::{CallError, Incoming, Protocol, ReverseCall};
use crate::runtime::Runtime;
use crate::services::processor_session::{self, Spec, StatesByTenant};

/// Every refusal of a registration (the original's).
pub(crate) const FAILED_TO_REGISTER: Uuid =
    Uuid::from_u128(0xeb82_f4d3_06e5_45cc_ac97_7d77_dd1e_5d07);

/// The .NET exception Runtime 8 named for an empty occurred format.
const EMPTY_FORMAT: &str = "Dolittle.Runtime.Events.Processing.Projections.\
                            OccurredFormatCannotBeNullOrEmpty: Occurred format cannot be null or empty";

/// The projection reverse call's messages.
pub(crate) struct ProjectionProtocol;

impl Protocol for ProjectionProtocol {
    type ClientMessage = ProjectionClientToRuntimeMessage;
    type ServerMessage = ProjectionRuntimeToClientMessage;
    type Arguments = ProjectionRegistrationRequest;
    type Response = ProjectionResponse;

    const FAILED_TO_CONNECT: Uuid = FAILED_TO_REGISTER;

    fn classify(message: Self::ClientMessage) -> Incoming<Self::Arguments, Self::Response> {
        match message.message {
            Some(FromHead::RegistrationRequest(arguments)) => Incoming::Arguments(arguments),
            Some(FromHead::HandleResult(response)) => Incoming::Response(response),
            Some(FromHead::Pong(_)) => Incoming::Pong,
            None => Incoming::Empty,
        }
    }

    fn arguments_context(arguments: &Self::Arguments) -> Option<&ReverseCallArgumentsContext> {
        arguments.call_context.as_ref()
    }

    fn response_call_id(response: &Self::Response) -> Option<&WireUuid> {
        response.call_context.as_ref()?.call_id.as_ref()
    }

    fn connect_response(failure: Option<WireFailure>) -> Self::ServerMessage {
        ProjectionRuntimeToClientMessage {
            message: Some(ToHead::RegistrationResponse(
                ProjectionRegistrationResponse { failure },
            )),
        }
    }

    fn ping() -> Self::ServerMessage {
        ProjectionRuntimeToClientMessage {
            message: Some(ToHead::Ping(Ping {})),
        }
    }
}

/// A connected projection's head: asks it for the next state of each event's key.
struct ProjectionHead {
    call: Arc<ReverseCall<ProjectionProtocol>>,
    definition: Arc<Definition>,
    scope: WireUuid,
    projection: Uuid,
    states: StatesByTenant,
}

impl ProjectionHead {
    /// The states of the tenant a request's execution context names.
    fn states_of(&self, context: &WireExecutionContext) -> Option<&Arc<TenantStates>> {
        let tenant = context
            .tenant_id
            .as_ref()
            .and_then(|t| ids::from_wire("tenantId", t).ok())?;
        self.states.get(&tenant)
    }
}

/// A failure the runtime makes of an event: never retried (Runtime 8's).
fn stop(reason: String) -> Outcome {
    Outcome::Failed {
        reason,
        retry_after: None,
    }
}

impl Handler for ProjectionHead {
    fn selects(&self, event: &EventView<'_>) -> bool {
        self.definition.selector(event.event_type.id).is_some()
    }

    async fn handle(
        &self,
        execution_context: WireExecutionContext,
        delivery: &Delivery,
        retry: Option<RetryProcessingState>,
    ) -> Result<Outcome, CallError> {
        let event = &delivery.event;
        let Some(states) = self.states_of(&execution_context) else {
            return Ok(stop(
                "the request's tenant has no projection states".to_owned(),
            ));
        };
        let Ok(key) = self.definition.key(event) else {
            return Ok(stop(format!(
                "Could not get projection key from event on sequence number {} with content '{}'",
                delivery.sequence_number, event.content
            )));
        };
        let current = match states.current(&key) {
            Ok(Some(state)) => ProjectionCurrentState {
                r#type: ProjectionCurrentStateType::Persisted.into(),
                key: key.clone(),
                state,
            },
            Ok(None) => ProjectionCurrentState {
                r#type: ProjectionCurrentStateType::CreatedFromInitialState.into(),
                key: key.clone(),
                state: self.definition.initial_state.clone(),
            },
            Err(failure) => return Ok(stop(failure.reason)),
        };
        let answer = self
            .call
            .call(execution_context, |call_context| {
                ProjectionRuntimeToClientMessage {
                    message: Some(ToHead::HandleRequest(ProjectionRequest {
                        call_context: Some(call_context),
                        current_state: Some(current),
                        event: Some(StreamEvent {
                            event: Some((**event).clone()),
                            partition_id: EVENT_LOG_PARTITION.to_owned(),
                            scope_id: Some(self.scope.clone()),
                            partitioned: false,
                            stream_position: 0,
                        }),
                        retry_processing_state: retry,
                    })),
                }
            })
            .await?;
        let occurred_ns = event.occurred.as_ref().map_or(0, convert::timestamp_ns);
        Ok(match (answer.failure, answer.response) {
            (Some(failure), _) => Outcome::failed(
                crate::proto::dolittle::runtime::events::processing::ProcessorFailure {
                    reason: format!("Projection failed because ${}", failure.reason),
                    ..failure
                },
            ),
            (None, Some(Answer::Replace(replace))) => {
                if !is_json_object(&replace.state) {
                    return Ok(stop(format!(
                        "Failed to replace state for projection {} with key {key}: the head \
                         answered a state that is not a JSON object",
                        self.projection
                    )));
                }
                states.record(
                    key,
                    delivery.sequence_number,
                    occurred_ns,
                    Some(replace.state),
                );
                Outcome::Done { include: None }
            }
            (None, Some(Answer::Delete(_))) => {
                states.record(key, delivery.sequence_number, occurred_ns, None);
                Outcome::Done { include: None }
            }
            (None, None) => stop(format!(
                "The head answered neither a new state nor a delete for projection {} with key \
                 {key}",
                self.projection
            )),
        })
    }
}

/// Whether `text` is a JSON object.
fn is_json_object(text: &str) -> bool {
    text.trim_start().starts_with('{')
        && serde_json::from_str::<serde::de::IgnoredAny>(text).is_ok()
}

/// The Projections service.
#[derive(Clone)]
pub(crate) struct ProjectionsService {
    runtime: Arc<Runtime>,
}

impl ProjectionsService {
    pub(crate) fn new(runtime: Arc<Runtime>) -> ProjectionsService {
        ProjectionsService { runtime }
    }
}

#[tonic::async_trait]
impl Projections for ProjectionsService {
    async fn connect(
        &self,
        request: Request<Streaming<ProjectionClientToRuntimeMessage>>,
    ) -> Result<Response<tonic::codegen::BoxStream<ProjectionRuntimeToClientMessage>>, Status> {
        Ok(Response::new(processor_session::connect_with(
            Arc::clone(&self.runtime),
            request,
            spec,
            |spec: &Spec, call: &Arc<ReverseCall<ProjectionProtocol>>, states: &StatesByTenant| {
                ProjectionHead {
                    call: Arc::clone(call),
                    definition: spec
                        .projection
                        .clone()
                        .unwrap_or_else(|| unreachable!("a projection's spec has its definition")),
                    scope: ids::to_wire(spec.key.scope),
                    projection: spec.key.id,
                    states: states.clone(),
                }
            },
            |key| {
                Failure::new(
                    FAILED_TO_REGISTER,
                    format!(
                        "Failed to register Projection {id}. The projection {id} in scope {} is \
                         already registered",
                        key.scope,
                        id = key.id
                    ),
                )
            },
        )))
    }
}

/// The registration, checked.
fn spec(request: &ProjectionRegistrationRequest) -> Result<Spec, Failure> {
    let refuse = |reason: String| Failure::new(FAILED_TO_REGISTER, reason);
    let id = ids::required("projectionId", request.projection_id.as_ref())
        .map_err(|f| refuse(f.reason))?;
    let scope = match request.scope_id.as_ref() {
        None => Uuid::nil(),
        Some(scope) => ids::from_wire("scopeId", scope).map_err(|f| refuse(f.reason))?,
    };
    if scope == PUBLIC_STREAMS_SCOPE {
        return Err(refuse(format!(
            "scope {scope} is reserved for public streams"
        )));
    }
    let mut selectors = Vec::with_capacity(request.events.len());
    for (i, selector) in request.events.iter().enumerate() {
        let event_type = convert::event_type(
            format!("events[{i}].eventType"),
            selector.event_type.as_ref(),
        )
        .map_err(|f| refuse(f.reason))?;
        let key = match &selector.selector {
            Some(WireSelector::EventSourceKeySelector(_)) => KeySelector::EventSourceId,
            Some(WireSelector::PartitionKeySelector(_)) => KeySelector::PartitionId,
            Some(WireSelector::EventPropertyKeySelector(p)) => {
                KeySelector::Property(p.property_name.clone())
            }
            Some(WireSelector::StaticKeySelector(s)) => KeySelector::Static(s.static_key.clone()),
            Some(WireSelector::EventOccurredKeySelector(o)) => {
                KeySelector::Occurred(o.format.clone())
            }
            None => {
                return Err(refuse(format!(
                    "events[{i}] (event type {}) has no key selector",
                    event_type.id
                )))
            }
        };
        selectors.push(Selector {
            event_type: event_type.id,
            key,
        });
    }
    let mut seen = HashSet::new();
    if let Some(twice) = selectors.iter().find(|s| !seen.insert(s.event_type)) {
        return Err(refuse(format!(
            "Event {} was specified more than once",
            twice.event_type
        )));
    }
    for selector in &selectors {
        if let KeySelector::Occurred(format) = &selector.key {
            let error = if format.is_empty() {
                Some(EMPTY_FORMAT.to_owned())
            } else {
                dotnet::format_time(0, format).err()
            };
            if let Some(error) = error {
                return Err(refuse(format!(
                    "Event {} has key from event occurred selector with an invalid occurred \
                     format {format}. {error}",
                    selector.event_type
                )));
            }
        }
    }
    if !is_json_object(&request.initial_state) {
        return Err(refuse(format!(
            "Failed to register Projection {id}. The initial state is not a JSON object"
        )));
    }
    if request
        .copies
        .as_ref()
        .is_some_and(|c| c.mongo_db.is_some())
    {
        return Err(refuse(format!(
            "Failed to register Projection {id}. Copying projection read models to MongoDB is \
             not supported"
        )));
    }
    let event_types = selectors
        .iter()
        .map(|s| EventType {
            id: s.event_type,
            generation: 1,
        })
        .collect();
    let definition = Definition {
        selectors,
        initial_state: request.initial_state.clone(),
        alias: request.alias.clone(),
    };
    Ok(Spec {
        key: ProcessorKey {
            kind: Kind::Projection,
            scope,
            id,
        },
        source_scope: scope,
        state_scope: scope,
        // The event log, as the original's projection processors read it.
        source_stream: Uuid::nil(),
        event_types,
        partitioning: Partitioning::Unpartitioned,
        alias: request.alias.clone(),
        concurrency: 1,
        bounds: Bounds::default(),
        target: None,
        projection: Some(Arc::new(definition)),
    })
}
