//! The reverse-call state machine (`annals_contract::reverse_call`) fed a head's message
//! sequence, as gRPC frames through tonic's own stream decoder, on the EventHandlers protocol.
//!
//! Input: a flags byte (bit 0: check the platform; bits 1-3: how many requests the runtime
//! sends once the head is registered), then frames until the input ends, each a compression
//! flag byte, a `u16` length and that many bytes of an `EventHandlerClientToRuntimeMessage`
//! (any bytes: the decoder decides). A length past the end leaves a frame cut short.
//!
//! Checks: nothing panics or hangs; a first message that does not decode is answered
//! INVALID_ARGUMENT; once registered, the first message that does not decode, is empty or is a
//! second registration ends the stream with INVALID_ARGUMENT; when the head's stream is over
//! the call is ended and every request still waiting gets its answer or `Ended`.
//!
//! The protocol is the runtime's own (`annals_contract::reverse_call::event_handlers`).

use std::sync::Arc;

use annals_contract::api::convert;
use annals_contract::api::wire::event_handler_to_head::Message as ToHead;
use annals_contract::api::wire::{EventHandlerRuntimeToClientMessageWire, HandleEventRequestWire};
use annals_contract::proto::dolittle::runtime::events::processing::event_handler_client_to_runtime_message::Message as FromHead;
use annals_contract::proto::dolittle::runtime::events::processing::EventHandlerClientToRuntimeMessage;
use annals_contract::reverse_call::event_handlers::EventHandlerProtocol;
use annals_contract::api::wire::request_context;
use annals_contract::reverse_call::ReverseCall;
use annals_contract::Platform;
use annals_log::uuid::Uuid;
use bytes::Bytes;
use prost::Message;
use tonic::codec::Codec;
use tonic::{Code, Status};

use crate::Input;

/// One frame of the head's stream.
struct Frame {
    compressed: bool,
    message: Vec<u8>,
    whole: bool,
}

/// What the machine must make of a frame.
enum Taken {
    /// A whole, plain frame holding this message.
    Message(Box<EventHandlerClientToRuntimeMessage>),
    /// A whole, plain frame that does not decode.
    Undecodable,
    /// Cut short or compressed (this stream has no encoding): tonic's error decides.
    TransportError,
}

impl Frame {
    fn taken(&self) -> Taken {
        if !self.whole || self.compressed {
            return Taken::TransportError;
        }
        match EventHandlerClientToRuntimeMessage::decode(self.message.as_slice()) {
            Ok(message) => Taken::Message(Box::new(message)),
            Err(_) => Taken::Undecodable,
        }
    }
}

/// The `reverse_call` fuzz target (module documentation).
pub fn reverse_call(data: &[u8]) {
    let mut input = Input::new(data);
    let flags = input.u8();
    let check_platform = flags & 1 == 1;
    let calls = usize::from((flags >> 1) & 7);
    let mut frames = Vec::new();
    let mut body = Vec::new();
    while !input.is_empty() {
        let flag = input.u8();
        let len = usize::from(input.u16());
        let message = input.bytes(len).to_vec();
        let whole = message.len() == len;
        body.push(flag);
        #[allow(
            clippy::big_endian_bytes,
            reason = "gRPC frames a message's length big-endian"
        )]
        let length = u32::try_from(len).unwrap_or(u32::MAX).to_be_bytes();
        body.extend_from_slice(&length);
        body.extend_from_slice(&message);
        frames.push(Frame {
            compressed: flag != 0,
            message,
            whole,
        });
    }
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap_or_else(|e| panic!("a tokio runtime: {e}"));
    runtime.block_on(run(&frames, body, check_platform, calls));
}

fn platform() -> Platform {
    Platform {
        customer_id: Uuid::from_u128(1),
        customer_name: "fuzz".into(),
        application_id: Uuid::from_u128(2),
        application_name: "fuzz".into(),
        microservice_id: Uuid::from_u128(3),
        microservice_name: "fuzz".into(),
        environment: "Development".into(),
    }
}

async fn run(frames: &[Frame], body: Vec<u8>, check_platform: bool, calls: usize) {
    let decoder = tonic_prost::ProstCodec::<
        EventHandlerRuntimeToClientMessageWire,
        EventHandlerClientToRuntimeMessage,
    >::default()
    .decoder();
    let incoming = tonic::Streaming::new_request(
        decoder,
        http_body_util::Full::new(Bytes::from(body)),
        None,
        Some(annals_contract::limits::MESSAGE_BYTES_MAX),
    );
    let (outbound, mut to_head) =
        tokio::sync::mpsc::channel(annals_contract::reverse_call::OUTBOUND_MESSAGES_MAX);
    // The head's side: everything the runtime sent it, drained as a head would.
    let sent = tokio::spawn(async move {
        let mut sent = Vec::new();
        while let Some(message) = to_head.recv().await {
            sent.push(message);
        }
        sent
    });
    let (_stop_tx, stopping) = tokio::sync::watch::channel(false);
    let platform = platform();
    let connected = ReverseCall::<EventHandlerProtocol>::accept(
        incoming,
        outbound,
        check_platform.then_some(&platform),
        stopping,
    )
    .await;
    let registered = connected.is_some();
    if let Some(connected) = connected {
        let call = Arc::clone(&connected.call);
        let reader = tokio::spawn(connected.reader);
        call.respond_to_connect(None).await;
        let mut waiting = Vec::new();
        for _ in 0..calls {
            let context = convert::execution_context_to_wire(&connected.execution_context);
            match call
                .send_call(|call_id| EventHandlerRuntimeToClientMessageWire {
                    message: Some(ToHead::HandleRequest(HandleEventRequestWire {
                        call_context: Some(
                            request_context(call_id, context).encode_to_vec().into(),
                        ),
                        event: None,
                        retry_processing_state: None,
                    })),
                })
                .await
            {
                Ok(answer) => waiting.push(answer),
                Err(_) => assert!(
                    call.ended().is_cancelled(),
                    "a call refused on a live stream"
                ),
            }
        }
        reader
            .await
            .unwrap_or_else(|e| panic!("the reader panicked: {e}"));
        assert!(
            call.ended().is_cancelled(),
            "the head's stream is over but the call is not ended"
        );
        for mut answer in waiting {
            assert!(
                answer.try_take().is_some(),
                "a request still waits after the stream ended"
            );
        }
        drop(call);
    }
    let sent = sent
        .await
        .unwrap_or_else(|e| panic!("the head's side panicked: {e}"));
    check_ending(frames, registered, &sent);
}

/// The stream must end with INVALID_ARGUMENT at the first frame the machine cannot take.
fn check_ending(
    frames: &[Frame],
    registered: bool,
    sent: &[Result<EventHandlerRuntimeToClientMessageWire, Status>],
) {
    let invalid = || {
        sent.iter()
            .any(|m| matches!(m, Err(status) if status.code() == Code::InvalidArgument))
    };
    let Some(first) = frames.first() else {
        return;
    };
    match first.taken() {
        Taken::Undecodable => {
            assert!(!registered, "an undecodable registration was taken");
            assert!(invalid(), "an undecodable first message got {sent:?}");
            return;
        }
        Taken::Message(_) => {}
        Taken::TransportError => return,
    }
    if !registered {
        return;
    }
    for frame in &frames[1..] {
        match frame.taken() {
            Taken::TransportError => return,
            Taken::Undecodable => {
                assert!(invalid(), "an undecodable message got {sent:?}");
                return;
            }
            Taken::Message(message) => match message.message {
                None | Some(FromHead::RegistrationRequest(_)) => {
                    assert!(
                        invalid(),
                        "an empty message or a second registration got {sent:?}"
                    );
                    return;
                }
                // Its grace period may end the stream (with OK) before the next one is read.
                Some(FromHead::InitiateDisconnect(_)) => return,
                Some(_) => {}
            },
        }
    }
}
