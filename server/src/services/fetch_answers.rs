//! FetchForAggregate answers kept encoded, so that fetching an aggregate that has not changed
//! since its last fetch costs neither an index scan, nor log reads, nor conversion, nor
//! encoding: the kept bytes go out as they are.
//!
//! An answer is kept under (tenant, aggregate root, event source) with the aggregate's version
//! it was fetched at. Events are never changed, so while the aggregate's version is the same
//! the kept answer is still the whole answer. Each fetch first asks the engine for the version
//! (without waiting: only when the index covers every acknowledged commit, the same condition
//! the engine's own fetch needs for read-your-writes) and uses the kept answer only at that
//! version; a commit to the aggregate makes the next fetch read it again and keep the new
//! answer. The answers share one bound in bytes (`dolittle:runtime:annals:fetchCache`, default
//! 32 MiB, `0` turns them off); the least used go first.
//!
//! The generated EventStore server can only answer with a message, so [`FetchAnswering`]
//! wraps it and answers `FetchForAggregate` itself, with a codec whose responses are bytes
//! already encoded (failures are encoded when they happen). Every other rpc of the service
//! goes to the generated server unchanged.

use std::convert::Infallible;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::{BufMut, Bytes};
use prost::Message;
use quick_cache::sync::Cache;
use quick_cache::{Equivalent, Weighter};
use tonic::body::Body;
use tonic::codec::{Codec, DecodeBuf, Decoder, EncodeBuf, Encoder};
use tonic::codegen::{http, BoxFuture, Service};
use tonic::server::{Grpc, NamedService, UnaryService};
use tonic::{Request, Response, Status};
use uuid::Uuid;

use crate::api::failure::{Failure, InBand};
use crate::proto::dolittle::runtime::events::{
    FetchForAggregateRequest, FetchForAggregateResponse,
};
use crate::runtime::Runtime;
use crate::services::event_store;

/// The gRPC path this module answers.
const PATH: &str = "/dolittle.runtime.events.EventStore/FetchForAggregate";

/// The largest answer kept, and at most this share of the bound each.
const ANSWER_BYTES_MAX: usize = 1 << 20;
const ANSWER_SHARE_OF_BOUND: u64 = 8;

/// Answers kept per estimated item, for sizing the cache's table.
const ESTIMATED_ANSWER_BYTES: u64 = 4096;

/// Where an answer is kept.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct Key {
    tenant: Uuid,
    root: Uuid,
    event_source: String,
}

/// A [`Key`] looked up without making one (it hashes alike: a `String` hashes as its `str`).
#[derive(Hash)]
struct KeyRef<'a> {
    tenant: Uuid,
    root: Uuid,
    event_source: &'a str,
}

impl Equivalent<Key> for KeyRef<'_> {
    fn equivalent(&self, key: &Key) -> bool {
        self.tenant == key.tenant && self.root == key.root && self.event_source == key.event_source
    }
}

/// A kept answer: the encoded FetchForAggregateResponse of the aggregate at `version`, which
/// holds `events` events.
#[derive(Debug, Clone)]
struct Answer {
    version: u64,
    events: u64,
    encoded: Bytes,
}

#[derive(Debug, Clone)]
struct AnswerWeight;

impl Weighter<Key, Answer> for AnswerWeight {
    fn weight(&self, key: &Key, answer: &Answer) -> u64 {
        // The bytes, the key's text, and about what the table and the two headers take.
        (answer.encoded.len() + key.event_source.len() + 96) as u64
    }
}

/// The kept answers of every tenant, under one bound.
pub(crate) struct FetchAnswers {
    cache: Option<Cache<Key, Answer, AnswerWeight>>,
    answer_bytes_max: usize,
}

impl FetchAnswers {
    /// Answers kept up to `bytes` in all; 0 keeps none.
    pub(crate) fn new(bytes: u64) -> FetchAnswers {
        if bytes == 0 {
            return FetchAnswers {
                cache: None,
                answer_bytes_max: 0,
            };
        }
        let items = usize::try_from(bytes / ESTIMATED_ANSWER_BYTES)
            .unwrap_or(usize::MAX)
            .max(16);
        let share = usize::try_from(bytes / ANSWER_SHARE_OF_BOUND).unwrap_or(usize::MAX);
        FetchAnswers {
            cache: Some(Cache::with_weighter(items, bytes, AnswerWeight)),
            answer_bytes_max: ANSWER_BYTES_MAX.min(share),
        }
    }

    /// The answer kept for the aggregate at `version`, if any.
    fn get(&self, tenant: Uuid, root: Uuid, event_source: &str, version: u64) -> Option<Answer> {
        let key = KeyRef {
            tenant,
            root,
            event_source,
        };
        self.cache
            .as_ref()?
            .get(&key)
            .filter(|answer| answer.version == version)
    }

    /// Keeps `answer`, unless it is too large or the one kept is newer.
    fn keep(&self, tenant: Uuid, root: Uuid, event_source: &str, answer: Answer) {
        let Some(cache) = &self.cache else { return };
        if answer.encoded.len() > self.answer_bytes_max {
            return;
        }
        let key = KeyRef {
            tenant,
            root,
            event_source,
        };
        if cache
            .peek(&key)
            .is_some_and(|kept| kept.version >= answer.version)
        {
            return;
        }
        let key = Key {
            tenant,
            root,
            event_source: event_source.to_owned(),
        };
        cache.insert(key, answer);
    }
}

/// A FetchForAggregateResponse, encoded.
pub(crate) struct Encoded(Bytes);

impl InBand<Bytes> for Encoded {
    fn ok(encoded: Bytes) -> Self {
        Encoded(encoded)
    }

    fn failed(failure: &Failure) -> Self {
        Encoded(
            FetchForAggregateResponse::failed(failure)
                .encode_to_vec()
                .into(),
        )
    }
}

/// The aggregate's events, encoded as a FetchForAggregateResponse: the kept answer when the
/// aggregate has not changed since it was kept, else fetched, encoded and kept.
pub(crate) async fn fetch(
    runtime: &Runtime,
    (context, tenant): (annals_engine::ExecutionContext, Arc<annals_engine::Tenant>),
    request: FetchForAggregateRequest,
) -> Result<Bytes, Failure> {
    let (root, event_source) =
        crate::api::convert::aggregate("aggregate", request.aggregate.as_ref())?;
    let tenant_id = context.tenant_id;
    let answers = &runtime.fetch_answers;
    // An error finding the version is the fetch's to report, below.
    if let Some(Ok(version)) = tenant.try_aggregate_version(root, &event_source) {
        if let Some(answer) = answers.get(tenant_id, root, &event_source, version) {
            runtime.metrics.fetch_answer(true);
            runtime.metrics.fetched(tenant_id, answer.events);
            return Ok(answer.encoded);
        }
    }
    runtime.metrics.fetch_answer(false);
    let events = event_store::fetch_events(runtime, (context, tenant), root, &event_source).await?;
    let answer = Answer {
        version: events.current_aggregate_root_version,
        events: events.events.len() as u64,
        encoded: FetchForAggregateResponse::ok(events).encode_to_vec().into(),
    };
    answers.keep(tenant_id, root, &event_source, answer.clone());
    Ok(answer.encoded)
}

/// Answers FetchForAggregate with encoded responses; every other rpc of the wrapped
/// EventStore server `S` goes to it.
#[derive(Clone)]
pub(crate) struct FetchAnswering<S> {
    inner: S,
    runtime: Arc<Runtime>,
    max_decoding_message_size: Option<usize>,
    max_encoding_message_size: Option<usize>,
}

impl<S> FetchAnswering<S> {
    pub(crate) fn new(inner: S, runtime: Arc<Runtime>) -> FetchAnswering<S> {
        FetchAnswering {
            inner,
            runtime,
            max_decoding_message_size: None,
            max_encoding_message_size: None,
        }
    }
}

/// The generated server's limits, set on both (the `limited!` of `server`).
pub(crate) trait MessageLimits {
    #[must_use]
    fn max_decoding_message_size(self, limit: usize) -> Self;
    #[must_use]
    fn max_encoding_message_size(self, limit: usize) -> Self;
}

impl<T: crate::proto::dolittle::runtime::events::event_store_server::EventStore> MessageLimits
    for FetchAnswering<
        crate::proto::dolittle::runtime::events::event_store_server::EventStoreServer<T>,
    >
{
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

impl<S: NamedService> NamedService for FetchAnswering<S> {
    const NAME: &'static str = S::NAME;
}

impl<S> Service<http::Request<Body>> for FetchAnswering<S>
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
        if request.uri().path() != PATH {
            return Box::pin(self.inner.call(request));
        }
        let (decoding, encoding) = (
            self.max_decoding_message_size,
            self.max_encoding_message_size,
        );
        let method = Fetch(Arc::clone(&self.runtime));
        Box::pin(async move {
            let mut grpc =
                Grpc::new(EncodedCodec).apply_max_message_size_config(decoding, encoding);
            Ok(grpc.unary(method, request).await)
        })
    }
}

/// The rpc, as tonic's unary server calls it.
struct Fetch(Arc<Runtime>);

impl UnaryService<FetchForAggregateRequest> for Fetch {
    type Response = Bytes;
    type Future = BoxFuture<Response<Bytes>, Status>;

    fn call(&mut self, request: Request<FetchForAggregateRequest>) -> Self::Future {
        let runtime = Arc::clone(&self.0);
        Box::pin(async move {
            let runtime = &runtime;
            let answer: Response<Encoded> = crate::services::request::unary_for_tenant(
                runtime,
                "FetchForAggregate",
                request,
                |tenant, request| fetch(runtime, tenant, request),
            )
            .await?;
            Ok(answer.map(|Encoded(bytes)| bytes))
        })
    }
}

/// Requests decoded as prost decodes them; responses already encoded.
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
            .map_err(|e| Status::internal(format!("could not decode the request: {e}")))
    }
}
