//! The event store's rpcs whose answers this runtime encodes itself: the generated EventStore
//! server can only answer with its contract messages, so [`EventStoreWire`] wraps it and
//! answers four rpcs with their own codecs, byte for byte what the contract message would be.
//! Every other rpc goes to the generated server unchanged.
//!
//! - `Commit` decodes its request with its events checked in the same pass
//!   (`api::commit_request`: each event read from the request's bytes straight into the
//!   engine's event), and answers with its events written while the commit is on its way to disk
//!   (`api::committed::CommitAnswer`, numbered once the commit is acknowledged): the commit's
//!   execution context and time are encoded once, not once per event, and the events go
//!   straight into the response's buffer.
//! - `CommitForAggregate` answers the same way (`api::committed::AggregateAnswer`): its events
//!   written while the commit is on its way to disk, numbered once it is acknowledged, and
//!   added from those bytes to the FetchForAggregate answers kept for the aggregate.
//! - `FetchForAggregate` answers with bytes, kept from an earlier fetch when the aggregate has
//!   not changed since (`fetch_answers`).
//! - `FetchForAggregateInBatches` streams bytes: the kept answer of the selection asked for,
//!   or batches encoded as they are read (`event_store`).
//!
//! Both go through the same request step as every unary rpc (`request`): tenant, metrics,
//! failures in band.

use std::convert::Infallible;
use std::marker::PhantomData;
use std::sync::Arc;
use std::task::{Context, Poll};

use annals_contract::api::commit_request::CommitRequest;
use annals_contract::api::committed::{
    AggregateEventsAnswer, Answered, CommitEventsAnswer, EncodedEvents, PreparedAggregateAnswer,
    PreparedCommitAnswer,
};
use bytes::{Buf, BufMut, Bytes};
use tonic::body::Body;
use tonic::codec::{Codec, DecodeBuf, Decoder, EncodeBuf, Encoder};
use tonic::codegen::{http, BoxFuture, Service};
use tonic::server::{Grpc, NamedService, ServerStreamingService, UnaryService};
use tonic::{Request, Response, Status};
use tonic_prost::ProstDecoder;

use crate::proto::dolittle::runtime::events::event_store_server::{EventStore, EventStoreServer};
use crate::proto::dolittle::runtime::events::{
    CommitAggregateEventsRequest, FetchForAggregateInBatchesRequest, FetchForAggregateRequest,
};
use crate::runtime::Runtime;
use crate::services::event_store::{EncodedStream, EventStoreService};
use crate::services::request::unary_for_tenant;
use crate::services::{event_store, fetch_answers};

const COMMIT: &str = "/dolittle.runtime.events.EventStore/Commit";
const COMMIT_FOR_AGGREGATE: &str = "/dolittle.runtime.events.EventStore/CommitForAggregate";
const FETCH_FOR_AGGREGATE: &str = "/dolittle.runtime.events.EventStore/FetchForAggregate";
const FETCH_IN_BATCHES: &str = "/dolittle.runtime.events.EventStore/FetchForAggregateInBatches";

/// The EventStore server `S` of the event store, with Commit, FetchForAggregate and
/// FetchForAggregateInBatches answered here.
#[derive(Clone)]
pub(crate) struct EventStoreWire<S> {
    inner: S,
    service: Arc<EventStoreService>,
    max_decoding_message_size: Option<usize>,
    max_encoding_message_size: Option<usize>,
}

impl EventStoreWire<EventStoreServer<EventStoreService>> {
    /// The event store `service`, its generated server wrapped.
    pub(crate) fn new(service: EventStoreService) -> Self {
        let service = Arc::new(service);
        EventStoreWire {
            inner: EventStoreServer::from_arc(Arc::clone(&service)),
            service,
            max_decoding_message_size: None,
            max_encoding_message_size: None,
        }
    }
}

/// The message limits of a service that answers rpcs with its own codecs (the `limited!` of
/// `server`): set on the generated server it wraps, if any, and kept for the rpcs it answers
/// itself (`EventStoreWire` here, `EventHandlersWire` in `event_handlers`).
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
        let runtime = Arc::clone(self.service.runtime());
        match request.uri().path() {
            COMMIT => Box::pin(async move {
                let codec = EncodedCodec::<CommitDecoder, CommitEventsAnswer>::default();
                let mut grpc = Grpc::new(codec).apply_max_message_size_config(limits.0, limits.1);
                Ok(grpc.unary(Commit(runtime), request).await)
            }),
            COMMIT_FOR_AGGREGATE => {
                let service = Arc::clone(&self.service);
                Box::pin(async move {
                    let codec = EncodedCodec::<
                        ProstDecoder<CommitAggregateEventsRequest>,
                        AggregateEventsAnswer,
                    >::default();
                    let mut grpc =
                        Grpc::new(codec).apply_max_message_size_config(limits.0, limits.1);
                    Ok(grpc.unary(CommitForAggregate(service), request).await)
                })
            }
            FETCH_FOR_AGGREGATE => Box::pin(async move {
                let codec = EncodedCodec::<ProstDecoder<FetchForAggregateRequest>>::default();
                let mut grpc = Grpc::new(codec).apply_max_message_size_config(limits.0, limits.1);
                Ok(grpc.unary(Fetch(runtime), request).await)
            }),
            FETCH_IN_BATCHES => {
                let service = Arc::clone(&self.service);
                Box::pin(async move {
                    let codec =
                        EncodedCodec::<ProstDecoder<FetchForAggregateInBatchesRequest>>::default();
                    let mut grpc =
                        Grpc::new(codec).apply_max_message_size_config(limits.0, limits.1);
                    Ok(grpc.server_streaming(Batches(service), request).await)
                })
            }
            _ => Box::pin(self.inner.call(request)),
        }
    }
}

/// Commit, as tonic's unary server calls it.
struct Commit(Arc<Runtime>);

impl UnaryService<CommitRequest> for Commit {
    type Response = CommitEventsAnswer;
    type Future = BoxFuture<Response<CommitEventsAnswer>, Status>;

    fn call(&mut self, request: Request<CommitRequest>) -> Self::Future {
        let runtime = Arc::clone(&self.0);
        Box::pin(async move {
            event_store::commit_rpc(
                &runtime,
                request,
                PreparedCommitAnswer::of,
                |prepared, _, receipt| prepared.numbered(receipt),
            )
            .await
        })
    }
}

/// CommitForAggregate, as tonic's unary server calls it.
struct CommitForAggregate(Arc<EventStoreService>);

impl UnaryService<CommitAggregateEventsRequest> for CommitForAggregate {
    type Response = AggregateEventsAnswer;
    type Future = BoxFuture<Response<AggregateEventsAnswer>, Status>;

    fn call(&mut self, request: Request<CommitAggregateEventsRequest>) -> Self::Future {
        let service = Arc::clone(&self.0);
        Box::pin(async move {
            event_store::commit_for_aggregate_rpc(
                &service,
                request,
                PreparedAggregateAnswer::of,
                |prepared, _, receipt| prepared.numbered(receipt),
            )
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

/// FetchForAggregateInBatches, as tonic's streaming server calls it.
struct Batches(Arc<EventStoreService>);

impl ServerStreamingService<FetchForAggregateInBatchesRequest> for Batches {
    type Response = Bytes;
    type ResponseStream = EncodedStream;
    type Future = BoxFuture<Response<EncodedStream>, Status>;

    fn call(&mut self, request: Request<FetchForAggregateInBatchesRequest>) -> Self::Future {
        let service = Arc::clone(&self.0);
        Box::pin(async move { service.fetch_batches(request).await })
    }
}

/// An answer this runtime writes into tonic's buffer itself: bytes already encoded (the
/// fetches), a Commit's events (`CommitEventsAnswer`) or a CommitForAggregate's
/// (`AggregateEventsAnswer`).
trait WrittenAnswer: Send + 'static {
    fn write_to(self, dst: &mut EncodeBuf<'_>);
}

impl WrittenAnswer for Bytes {
    fn write_to(self, dst: &mut EncodeBuf<'_>) {
        dst.put_slice(&self);
    }
}

impl<A: EncodedEvents + Send + 'static> WrittenAnswer for Answered<A> {
    fn write_to(self, dst: &mut EncodeBuf<'_>) {
        dst.reserve(self.encoded_len());
        self.encode(dst);
    }
}

/// The codec of the rpcs answered here: requests decoded by `D` (prost's own decoder, as the
/// generated server decodes them, or [`CommitDecoder`]); answers `A` written as they are.
struct EncodedCodec<D, A = Bytes>(PhantomData<fn() -> (D, A)>);

impl<D, A> Default for EncodedCodec<D, A> {
    fn default() -> Self {
        EncodedCodec(PhantomData)
    }
}

impl<D, A> Codec for EncodedCodec<D, A>
where
    D: Decoder<Error = Status> + Default + Send + 'static,
    D::Item: Send + 'static,
    A: WrittenAnswer,
{
    type Encode = A;
    type Decode = D::Item;
    type Encoder = EncodedCodec<D, A>;
    type Decoder = D;

    fn encoder(&mut self) -> Self::Encoder {
        EncodedCodec::default()
    }

    fn decoder(&mut self) -> Self::Decoder {
        D::default()
    }
}

impl<D: Send + 'static, A: WrittenAnswer> Encoder for EncodedCodec<D, A> {
    type Item = A;
    type Error = Status;

    fn encode(&mut self, item: A, dst: &mut EncodeBuf<'_>) -> Result<(), Status> {
        item.write_to(dst);
        Ok(())
    }
}

/// Decodes a Commit request with its events checked (`api::commit_request`): the request's
/// bytes are taken from tonic's buffer without a copy. A request prost cannot decode fails
/// with the status prost's decoder gives it (`INTERNAL`, prost's reason).
#[derive(Default)]
struct CommitDecoder;

impl Decoder for CommitDecoder {
    type Item = CommitRequest;
    type Error = Status;

    fn decode(&mut self, buf: &mut DecodeBuf<'_>) -> Result<Option<CommitRequest>, Status> {
        let encoded = buf.copy_to_bytes(buf.remaining());
        CommitRequest::decode(encoded)
            .map(Some)
            .map_err(|e| Status::internal(e.to_string()))
    }
}
