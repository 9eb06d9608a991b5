//! `dolittle.runtime.events.processing.Filters`: Connect (unpartitioned), ConnectPartitioned
//! and ConnectPublic. The head is asked about every event of the scope's log (public filters:
//! every public event of the event log, and nothing else) and the events it includes are
//! written to the stream named by the filter id, in the filter's scope. Public filters write
//! public streams, which the engine keeps in a namespace of their own (no scope reaches it),
//! so a private filter with the same id never shares them; the event horizon serves them from
//! there. A public filter's position is kept under `PUBLIC_STREAMS_SCOPE`.
//!
//! Filters process one event at a time, in log order, so a stream lists its events in log
//! order (a partition parked by a failure is the exception: its events follow when it
//! recovers). The included events and the filter's position are written together, so a
//! filter that resumes never writes an event twice.

use std::sync::Arc;

use annals_contract::processors::registration::{self, FilterArguments, Visibility};
use annals_engine::EventView;
use tonic::{Request, Response, Status, Streaming};
use uuid::Uuid;

use crate::api::failure::Failure;
use crate::api::ids;
use crate::processing::processor::Outcome;
use crate::processing::{failures, Partitioning};
use crate::proto::dolittle::protobuf::{Failure as WireFailure, Uuid as WireUuid};
use crate::proto::dolittle::runtime::events::processing::filter_runtime_to_client_message::Message as ToHead;
use crate::proto::dolittle::runtime::events::processing::filters_server::Filters;
use crate::proto::dolittle::runtime::events::processing::{
    filter_client_to_runtime_message, partitioned_filter_client_to_runtime_message,
    public_filter_client_to_runtime_message, FilterClientToRuntimeMessage, FilterEventRequest,
    FilterRegistrationRequest, FilterRegistrationResponse, FilterResponse,
    FilterRuntimeToClientMessage, PartitionedFilterClientToRuntimeMessage,
    PartitionedFilterRegistrationRequest, PartitionedFilterResponse, ProcessorFailure,
    PublicFilterClientToRuntimeMessage, PublicFilterRegistrationRequest,
};
use crate::proto::dolittle::services::{
    Ping, ReverseCallArgumentsContext, ReverseCallResponseContext,
};
use crate::reverse_call::{Incoming, Protocol};
use crate::runtime::Runtime;
use crate::services::processor_session::{self, Question, Requests};

/// The partition of every entry of an unpartitioned filter's stream (the original's).
const UNPARTITIONED: &str = "00000000-0000-0000-0000-000000000000";

/// What the three filter kinds' answers have in common.
pub(crate) trait FilterAnswer: Send + 'static {
    fn call_context(&self) -> Option<&ReverseCallResponseContext>;
    /// (included, stream partition, failure).
    fn into_parts(self) -> (bool, Option<String>, Option<ProcessorFailure>);
}

impl FilterAnswer for FilterResponse {
    fn call_context(&self) -> Option<&ReverseCallResponseContext> {
        self.call_context.as_ref()
    }
    fn into_parts(self) -> (bool, Option<String>, Option<ProcessorFailure>) {
        (self.is_included, None, self.failure)
    }
}

impl FilterAnswer for PartitionedFilterResponse {
    fn call_context(&self) -> Option<&ReverseCallResponseContext> {
        self.call_context.as_ref()
    }
    fn into_parts(self) -> (bool, Option<String>, Option<ProcessorFailure>) {
        (self.is_included, Some(self.partition_id), self.failure)
    }
}

macro_rules! filter_protocol {
    ($protocol:ident, $client:ty, $message:ident, $arguments:ty, $response:ty) => {
        /// A filter reverse call's messages.
        pub(crate) struct $protocol;

        impl Protocol for $protocol {
            type ClientMessage = $client;
            type ServerMessage = FilterRuntimeToClientMessage;
            type Arguments = $arguments;
            type Response = $response;

            const FAILED_TO_CONNECT: Uuid = failures::FILTER_FAILED_TO_REGISTER;

            fn classify(message: $client) -> Incoming<$arguments, $response> {
                match message.message {
                    Some($message::Message::RegistrationRequest(arguments)) => {
                        Incoming::Arguments(arguments)
                    }
                    Some($message::Message::FilterResult(response)) => Incoming::Response(response),
                    Some($message::Message::Pong(_)) => Incoming::Pong,
                    None => Incoming::Empty,
                }
            }

            fn arguments_context(arguments: &$arguments) -> Option<&ReverseCallArgumentsContext> {
                FilterArguments::call_context(arguments)
            }

            fn response_call_id(response: &$response) -> Option<&WireUuid> {
                FilterAnswer::call_context(response)?.call_id.as_ref()
            }

            fn connect_response(failure: Option<WireFailure>) -> FilterRuntimeToClientMessage {
                FilterRuntimeToClientMessage {
                    message: Some(ToHead::RegistrationResponse(FilterRegistrationResponse {
                        failure,
                    })),
                }
            }

            fn ping() -> FilterRuntimeToClientMessage {
                FilterRuntimeToClientMessage {
                    message: Some(ToHead::Ping(Ping {})),
                }
            }
        }
    };
}

filter_protocol!(
    FilterProtocol,
    FilterClientToRuntimeMessage,
    filter_client_to_runtime_message,
    FilterRegistrationRequest,
    FilterResponse
);
filter_protocol!(
    PartitionedFilterProtocol,
    PartitionedFilterClientToRuntimeMessage,
    partitioned_filter_client_to_runtime_message,
    PartitionedFilterRegistrationRequest,
    PartitionedFilterResponse
);
filter_protocol!(
    PublicFilterProtocol,
    PublicFilterClientToRuntimeMessage,
    public_filter_client_to_runtime_message,
    PublicFilterRegistrationRequest,
    PartitionedFilterResponse
);

/// Asks the head whether to include each event.
pub(crate) struct FilterRequests {
    scope: WireUuid,
    visibility: Visibility,
}

impl<P> Requests<P> for FilterRequests
where
    P: Protocol<ServerMessage = FilterRuntimeToClientMessage>,
    P::Response: FilterAnswer,
{
    fn selects(&self, event: &EventView<'_>) -> bool {
        match self.visibility {
            Visibility::Private => true,
            Visibility::Public => event.public,
        }
    }

    fn request(&self, question: Question<'_>) -> FilterRuntimeToClientMessage {
        FilterRuntimeToClientMessage {
            message: Some(ToHead::FilterRequest(FilterEventRequest {
                call_context: Some(question.call_context()),
                event: Some((*question.delivery.event).clone()),
                scope_id: Some(self.scope.clone()),
                retry_processing_state: question.retry,
            })),
        }
    }

    fn outcome(&self, answer: P::Response) -> Outcome {
        let (included, partition, failure) = answer.into_parts();
        match failure {
            Some(failure) => Outcome::failed(failure),
            None => Outcome::Done {
                include: included.then(|| partition.unwrap_or_else(|| UNPARTITIONED.to_owned())),
            },
        }
    }
}

/// The Filters service.
#[derive(Clone)]
pub(crate) struct FiltersService {
    runtime: Arc<Runtime>,
}

impl FiltersService {
    pub(crate) fn new(runtime: Arc<Runtime>) -> FiltersService {
        FiltersService { runtime }
    }

    /// Accepts one filter connection of protocol `P` and serves it on a task of its own.
    fn connect<P>(
        &self,
        request: Request<Streaming<P::ClientMessage>>,
        partitioning: Partitioning,
        visibility: Visibility,
    ) -> tonic::codegen::BoxStream<FilterRuntimeToClientMessage>
    where
        P: Protocol<ServerMessage = FilterRuntimeToClientMessage>,
        P::Arguments: FilterArguments,
        P::Response: FilterAnswer,
    {
        processor_session::connect::<P, FilterRequests>(
            Arc::clone(&self.runtime),
            request,
            move |arguments| registration::filter(arguments, partitioning, visibility),
            move |spec| FilterRequests {
                scope: ids::to_wire(spec.key.scope),
                visibility,
            },
            |key| {
                Failure::new(
                    failures::FILTER_FAILED_TO_REGISTER,
                    format!(
                        "Failed to register filter {} in scope {}: it is already registered",
                        key.id, key.scope
                    ),
                )
            },
        )
    }
}

#[tonic::async_trait]
impl Filters for FiltersService {
    async fn connect(
        &self,
        request: Request<Streaming<FilterClientToRuntimeMessage>>,
    ) -> Result<Response<tonic::codegen::BoxStream<FilterRuntimeToClientMessage>>, Status> {
        Ok(Response::new(self.connect::<FilterProtocol>(
            request,
            Partitioning::Unpartitioned,
            Visibility::Private,
        )))
    }

    async fn connect_partitioned(
        &self,
        request: Request<Streaming<PartitionedFilterClientToRuntimeMessage>>,
    ) -> Result<Response<tonic::codegen::BoxStream<FilterRuntimeToClientMessage>>, Status> {
        Ok(Response::new(self.connect::<PartitionedFilterProtocol>(
            request,
            Partitioning::Partitioned,
            Visibility::Private,
        )))
    }

    async fn connect_public(
        &self,
        request: Request<Streaming<PublicFilterClientToRuntimeMessage>>,
    ) -> Result<Response<tonic::codegen::BoxStream<FilterRuntimeToClientMessage>>, Status> {
        Ok(Response::new(self.connect::<PublicFilterProtocol>(
            request,
            Partitioning::Partitioned,
            Visibility::Public,
        )))
    }
}
