//! Garbage and oversized messages against the real binary, sent as raw bytes so that no
//! client library tidies them up: a unary rpc answers INVALID_ARGUMENT for what it cannot
//! decode and RESOURCE_EXHAUSTED beyond the limit, a reverse-call stream ends with the same
//! statuses (never a silent OK), and every service takes messages up to the one documented
//! limit (16 MiB).
#![allow(clippy::unwrap_used, reason = "tests")]

use annals_tests::head::{ClientMessage, EventHandler, MUST};
use annals_tests::{commit_request, Server, DEVELOPMENT};
use prost::bytes::{Buf, BufMut};
use prost::Message;
use tokio_stream::StreamExt;
use tonic::codec::{Codec, DecodeBuf, Decoder, EncodeBuf, Encoder};
use tonic::transport::Channel;
use tonic::{Code, Status};
use uuid::Uuid;

/// Field 1 with wire type 7, which does not exist: no protobuf decoder takes it.
const GARBAGE: &[u8] = &[0x0f, 0xff, 0xff];
/// One runtime's limit for a message it receives (README, "Running the runtime").
const LIMIT: usize = 16 << 20;

/// Sends and receives messages as the bytes they are.
#[derive(Debug, Clone, Copy, Default)]
struct Raw;

impl Codec for Raw {
    type Encode = Vec<u8>;
    type Decode = Vec<u8>;
    type Encoder = Raw;
    type Decoder = Raw;
    fn encoder(&mut self) -> Raw {
        Raw
    }
    fn decoder(&mut self) -> Raw {
        Raw
    }
}

impl Encoder for Raw {
    type Item = Vec<u8>;
    type Error = Status;
    fn encode(&mut self, item: Vec<u8>, dst: &mut EncodeBuf<'_>) -> Result<(), Status> {
        dst.put_slice(&item);
        Ok(())
    }
}

impl Decoder for Raw {
    type Item = Vec<u8>;
    type Error = Status;
    fn decode(&mut self, src: &mut DecodeBuf<'_>) -> Result<Option<Vec<u8>>, Status> {
        let bytes = src.copy_to_bytes(src.remaining());
        Ok(Some(bytes.to_vec()))
    }
}

/// A unary call of `path` with `body` as the request's bytes.
async fn unary(channel: Channel, path: &'static str, body: Vec<u8>) -> Result<Vec<u8>, Status> {
    let mut grpc = tonic::client::Grpc::new(channel)
        .max_encoding_message_size(usize::MAX)
        .max_decoding_message_size(usize::MAX);
    grpc.ready().await.unwrap();
    grpc.unary(
        tonic::Request::new(body),
        tonic::codegen::http::uri::PathAndQuery::from_static(path),
        Raw,
    )
    .await
    .map(tonic::Response::into_inner)
}

/// A bidi call of `path` that sends `messages` and keeps its side open; the status the
/// runtime ends the call with (OK when it just closes).
async fn stream_status(channel: Channel, path: &'static str, messages: Vec<Vec<u8>>) -> Status {
    let mut grpc = tonic::client::Grpc::new(channel)
        .max_encoding_message_size(usize::MAX)
        .max_decoding_message_size(usize::MAX);
    grpc.ready().await.unwrap();
    let outbound = tokio_stream::iter(messages).chain(tokio_stream::pending());
    let call = grpc.streaming(
        tonic::Request::new(outbound),
        tonic::codegen::http::uri::PathAndQuery::from_static(path),
        Raw,
    );
    let ended = async {
        let mut inbound = match call.await {
            Ok(response) => response.into_inner(),
            Err(status) => return status,
        };
        loop {
            match inbound.message().await {
                Ok(Some(_)) => {}
                Ok(None) => return Status::ok("ended"),
                Err(status) => return status,
            }
        }
    };
    tokio::time::timeout(MUST, ended)
        .await
        .expect("the runtime ends the stream")
}

const COMMIT: &str = "/dolittle.runtime.events.EventStore/Commit";
const HANDSHAKE: &str = "/dolittle.runtime.handshake.Handshake/Handshake";
const HANDLERS_CONNECT: &str = "/dolittle.runtime.events.processing.EventHandlers/Connect";

#[tokio::test]
async fn a_request_that_cannot_be_decoded_is_an_invalid_argument() {
    let server = Server::start().await;
    for path in [COMMIT, HANDSHAKE] {
        let status = unary(server.private().await, path, GARBAGE.to_vec())
            .await
            .unwrap_err();
        assert_eq!(status.code(), Code::InvalidArgument, "{path}: {status:?}");
        assert!(
            status
                .message()
                .starts_with("the request could not be decoded: "),
            "{path}: {status:?}"
        );
    }
    // The runtime goes on serving.
    let ok = commit_request(DEVELOPMENT, &[(Uuid::from_u128(1), "es", "{}")]);
    unary(server.private().await, COMMIT, ok.encode_to_vec())
        .await
        .unwrap();
}

/// A Commit above the limit is refused as RESOURCE_EXHAUSTED naming the limit; one event of
/// nearly 8 MiB (the engine's record limit) in a Commit fits, and so does a Handshake of 5 MiB (above tonic's default of 4 MiB):
/// every service has the same limit.
#[tokio::test]
async fn one_message_limit_on_every_service() {
    let server = Server::start().await;
    let big = format!(r#"{{"x":"{}"}}"#, "y".repeat(LIMIT + 1024));
    let over = commit_request(DEVELOPMENT, &[(Uuid::from_u128(1), "es", &big)]);
    let status = unary(server.private().await, COMMIT, over.encode_to_vec())
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::ResourceExhausted, "{status:?}");
    assert!(status.message().contains(&LIMIT.to_string()), "{status:?}");

    // The engine's own limit for one event's record is 8 MiB, its metadata included.
    let eight = format!(r#"{{"x":"{}"}}"#, "y".repeat((8 << 20) - 4096));
    let fits = commit_request(DEVELOPMENT, &[(Uuid::from_u128(1), "es", &eight)]);
    let answer = unary(server.private().await, COMMIT, fits.encode_to_vec())
        .await
        .unwrap();
    let answer =
        annals_tests::proto::dolittle::runtime::events::CommitEventsResponse::decode(&answer[..])
            .unwrap();
    assert!(answer.failure.is_none(), "{:?}", answer.failure);
    assert_eq!(answer.events.len(), 1);

    let handshake = annals_tests::proto::dolittle::runtime::handshake::HandshakeRequest {
        sdk_identifier: "z".repeat(5 << 20),
        ..Default::default()
    };
    let answer = unary(server.private().await, HANDSHAKE, handshake.encode_to_vec()).await;
    assert!(answer.is_ok(), "a 5 MiB Handshake is decoded: {answer:?}");
}

/// A reverse-call stream whose first message, or a later one, cannot be decoded ends with
/// INVALID_ARGUMENT naming the message, not with OK.
#[tokio::test]
async fn a_stream_with_garbage_ends_with_invalid_argument() {
    let server = Server::start().await;
    let status = stream_status(
        server.private().await,
        HANDLERS_CONNECT,
        vec![GARBAGE.to_vec()],
    )
    .await;
    assert_eq!(status.code(), Code::InvalidArgument, "{status:?}");
    assert!(
        status
            .message()
            .starts_with("a EventHandlerClientToRuntimeMessage could not be decoded: "),
        "{status:?}"
    );

    // Registered first, then garbage.
    let ClientMessage::EventHandler(registration) =
        EventHandler::new(Uuid::new_v4(), &[Uuid::from_u128(1)]).message()
    else {
        unreachable!("an event handler's registration")
    };
    let registration = registration.encode_to_vec();
    let status = stream_status(
        server.private().await,
        HANDLERS_CONNECT,
        vec![registration, GARBAGE.to_vec()],
    )
    .await;
    assert_eq!(status.code(), Code::InvalidArgument, "{status:?}");
}
