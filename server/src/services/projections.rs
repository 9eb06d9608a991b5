//! `dolittle.runtime.events.processing.Projections/Connect`: a head registers a projection
//! (Runtime 8's semantics) and the runtime asks it, per tenant and one event at a time, for
//! the next state of the event's key, given the key's current state; the states and the
//! position are written together (`projections::states`).
//!
//! Registration is checked by annals-contract (`processors::registration::projection`, the
//! original's failure id `eb82f4d3`); a projection connected already is refused here with the
//! same id.

use std::sync::Arc;

use annals_contract::processors::registration::{self, is_json_object};
use annals_engine::EventView;
use tonic::{Request, Response, Status, Streaming};
use uuid::Uuid;

use crate::api::convert;
use crate::api::failure::Failure;
use crate::api::ids;
use crate::api::wire::RequestContexts;
use crate::processing::failures;
use crate::processing::processor::{Delivery, Handler, Outcome};
use crate::projections::states::TenantStates;
use crate::projections::{Definition, EVENT_LOG_PARTITION};
use crate::proto::dolittle::execution::ExecutionContext as WireExecutionContext;
use crate::proto::dolittle::protobuf::{Failure as WireFailure, Uuid as WireUuid};
use crate::proto::dolittle::runtime::events::processing::projection_client_to_runtime_message::Message as FromHead;
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
pub(crate) const FAILED_TO_REGISTER: Uuid = failures::PROJECTION_FAILED_TO_REGISTER;

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
        contexts: &RequestContexts,
        delivery: &Delivery,
        retry: Option<RetryProcessingState>,
    ) -> Result<Outcome, CallError> {
        let event = &delivery.event;
        let Some(states) = self.states_of(contexts.context()) else {
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
            .call(|call_id| ProjectionRuntimeToClientMessage {
                message: Some(ToHead::HandleRequest(ProjectionRequest {
                    call_context: Some(contexts.call_context(call_id, delivery.correlation_id)),
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
            registration::projection,
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
