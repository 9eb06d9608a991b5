//! The EventHandlers reverse call's messages: how the machine tells a head's messages apart and
//! builds the runtime's answers. Here rather than in the server's service, so the fuzz harness
//! of the machine (`fuzz/`, which builds without RocksDB) drives it with the same protocol.

use uuid::Uuid;

use crate::api::convert;
use crate::api::failure::id;
use crate::api::wire::event_handler_to_head::Message as ToHead;
use crate::api::wire::EventHandlerRuntimeToClientMessageWire;
use crate::proto::dolittle::protobuf::{Failure as WireFailure, Uuid as WireUuid};
use crate::proto::dolittle::runtime::events::processing::event_handler_client_to_runtime_message::Message as FromHead;
use crate::proto::dolittle::runtime::events::processing::{
    EventHandlerClientToRuntimeMessage, EventHandlerRegistrationRequest,
    EventHandlerRegistrationResponse, EventHandlerResponse,
};
use crate::proto::dolittle::services::{Ping, ReverseCallArgumentsContext};
use crate::reverse_call::{Incoming, Protocol};

/// The event handler reverse call's messages; the runtime's are the wire twin of the contract's
/// (`api::wire`), so requests carry their events encoded once.
pub struct EventHandlerProtocol;

impl Protocol for EventHandlerProtocol {
    type ClientMessage = EventHandlerClientToRuntimeMessage;
    type ServerMessage = EventHandlerRuntimeToClientMessageWire;
    type Arguments = EventHandlerRegistrationRequest;
    type Response = EventHandlerResponse;

    const FAILED_TO_CONNECT: Uuid = id::EVENT_HANDLER_FAILED_TO_REGISTER;

    fn classify(message: Self::ClientMessage) -> Incoming<Self::Arguments, Self::Response> {
        match message.message {
            Some(FromHead::RegistrationRequest(arguments)) => Incoming::Arguments(arguments),
            Some(FromHead::HandleResult(response)) => Incoming::Response(response),
            Some(FromHead::Pong(_)) => Incoming::Pong,
            Some(FromHead::InitiateDisconnect(disconnect)) => {
                Incoming::InitiateDisconnect(convert::duration(disconnect.grace_period.as_ref()))
            }
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
        EventHandlerRuntimeToClientMessageWire {
            message: Some(ToHead::RegistrationResponse(
                EventHandlerRegistrationResponse { failure },
            )),
        }
    }

    fn ping() -> Self::ServerMessage {
        EventHandlerRuntimeToClientMessageWire {
            message: Some(ToHead::Ping(Ping {})),
        }
    }
}
