//! The event store's rpcs whose answers this runtime encodes itself: the generated EventStore
//! server can only answer with its contract messages, so [`EventStoreWire`] wraps it and
//! answers two rpcs with their own codecs, byte for byte what the contract message would be.
//! Every other rpc goes to the generated server unchanged.
//!
//! - `Commit` answers with the wire twin of CommitEventsResponse (`api::wire`): the commit's
//!   execution context and time are encoded once, not once per event.
//! - `FetchForAggregate` answers with bytes, kept from an earlier fetch when the aggregate has
//!   not changed since (`fetch_answers`).
//!
//! Both go through the same request step as every unary rpc (`request`): tenant, metrics,
//! failures in band.

use std::convert::Infallible;
use std::sync::Arc;
use std::task::{Context, Poll};

use annals_contract::api::wire::CommitEventsResponseWire;
use bytes::{BufMut, Bytes};
use prost::Message;
use tonic::body::Body;
use tonic::codec::{Codec, DecodeBuf, Decoder, EncodeBuf, Encoder};
use tonic::codegen::{http, BoxFuture, Service};
use tonic::server::{Grpc, NamedService, UnaryService};
use tonic::{Request, Response, Status};
use tonic_prost::ProstCodec;

use crate::proto::dolittle::runtime::events::event_store_server::{EventStore, EventStoreServer};
use crate::proto::dolittle::runtime::events::{CommitEventsRequest, FetchForAggregateRequest};
use crate::runtime::Runtime;
use crate::services::request::unary_for_tenant;
use crate::services::{event_store, fetch_answers};

const COMMIT: &str = "/dolittle.runtime.events.EventStore/Commit";
const FETCH_FOR_AGGREGATE: &str = "/dolittle.runtime.events.EventStore/FetchForAggregate";

/// The EventStore server `S`, with Commit and FetchForAggregate answered here.
#[derive(Clone)]
pub(crate) struct EventStoreWire<S> {
    inner: S,
    runtime: Arc<Runtime>,
    max_decoding_message_size: Option<usize>,
    max_encoding_message_size: Option<usize>,
}

impl<S> EventStoreWire<S> {
    pub(crate) fn new(inner: S, runtime: Arc<Runtime>) -> EventStoreWire<S> {
        EventStoreWire {
            inner,
            runtime,
            max_decoding_message_size: None,
            max_encoding_message_size: None,
        }
    }
}

/// The generated server's message limits, set on it and kept for the rpcs answered here (the
/// `limited!` of `server`).
pub(crate) trait MessageLimits {
    #[must_use]
    fn max_decoding_message_size(self, limit: usize) -> Self;
    #[must_use]
    fn max_encoding_message_size(self, limit: usize) -> Self;
}

impl<T: EventStore> MessageLimits for EventStoreWire<EventStoreServer<T>> {
    fn max_decoding_message_size(mut self, limit: usize) -> Self {
        self.inner = self.inner.max_decoding_message_size(limit);
        self.max_decoding_message_size = Some(limit);
        self
    }

    fn max_encoding_message_size(mut self, limit: usize) -> Self {
        self.inner = self.inner.max_encoding_message_size(limit);
        self.max_encoding_message_size = Some(limit);
        self
    }
}

impl<S: NamedService> NamedService for EventStoreWire<S> {
    const NAME: &'static str = S::NAME;
}

impl<S> Service<http::Request<Body>> for EventStoreWire<S>
where
    S: Service<http::Request<Body>, Response = http::Response<Body>, Error = Infallible>,
    S::Future: Send + 'static,
{
    type Response = http::Response<Body>;
    type Error = Infallible;
    type Future = BoxFuture<Self::Response, Infallible>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<Body>) -> Self::Future {
        let limits = (
            self.max_decoding_message_size,
            self.max_encoding_message_size,
        );
        let runtime = Arc::clone(&self.runtime);
        match request.uri().path() {
            COMMIT => Box::pin(async move {
                let codec = ProstCodec::<CommitEventsResponseWire, CommitEventsRequest>::default();
                let mut grpc = Grpc::new(codec).apply_max_message_size_config(limits.0, limits.1);
                Ok(grpc.unary(Commit(runtime), request).await)
            }),
            FETCH_FOR_AGGREGATE => Box::pin(async move {
                let mut grpc =
                    Grpc::new(EncodedCodec).apply_max_message_size_config(limits.0, limits.1);
                Ok(grpc.unary(Fetch(runtime), request).await)
            }),
            _ => Box::pin(self.inner.call(request)),
        }
    }
}

/// Commit, as tonic's unary server calls it.
struct Commit(Arc<Runtime>);

impl UnaryService<CommitEventsRequest> for Commit {
    type Response = CommitEventsResponseWire;
    type Future = BoxFuture<Response<CommitEventsResponseWire>, Status>;

    fn call(&mut self, request: Request<CommitEventsRequest>) -> Self::Future {
        let runtime = Arc::clone(&self.0);
        Box::pin(async move {
            let runtime = &runtime;
            runtime.metrics.dolittle.commit_received();
            unary_for_tenant(runtime, "Commit", request, |tenant, request| {
                event_store::commit_as(
                    runtime,
                    tenant,
                    request,
                    crate::api::committed::committed_events_wire,
                )
            })
            .await
        })
    }
}

/// FetchForAggregate, as tonic's unary server calls it.
struct Fetch(Arc<Runtime>);

impl UnaryService<FetchForAggregateRequest> for Fetch {
    type Response = Bytes;
    type Future = BoxFuture<Response<Bytes>, Status>;

    fn call(&mut self, request: Request<FetchForAggregateRequest>) -> Self::Future {
        let runtime = Arc::clone(&self.0);
        Box::pin(async move {
            let runtime = &runtime;
            let answer: Response<fetch_answers::Encoded> =
                unary_for_tenant(runtime, "FetchForAggregate", request, |tenant, request| {
                    fetch_answers::fetch(runtime, tenant, request)
                })
                .await?;
            Ok(answer.map(fetch_answers::Encoded::into_bytes))
        })
    }
}

/// FetchForAggregate's codec: requests decoded as prost decodes them; answers already
/// encoded.
#[derive(Debug, Clone, Copy, Default)]
struct EncodedCodec;

impl Codec for EncodedCodec {
    type Encode = Bytes;
    type Decode = FetchForAggregateRequest;
    type Encoder = EncodedCodec;
    type Decoder = EncodedCodec;

    fn encoder(&mut self) -> Self::Encoder {
        EncodedCodec
    }

    fn decoder(&mut self) -> Self::Decoder {
        EncodedCodec
    }
}

impl Encoder for EncodedCodec {
    type Item = Bytes;
    type Error = Status;

    fn encode(&mut self, item: Bytes, dst: &mut EncodeBuf<'_>) -> Result<(), Status> {
        dst.put_slice(&item);
        Ok(())
    }
}

impl Decoder for EncodedCodec {
    type Item = FetchForAggregateRequest;
    type Error = Status;

    fn decode(&mut self, src: &mut DecodeBuf<'_>) -> Result<Option<Self::Item>, Status> {
        FetchForAggregateRequest::decode(src)
            .map(Some)
            .map_err(|e| Status::internal(e.to_string()))
    }
}
