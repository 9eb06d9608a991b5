//! The layer that puts a 5.4 head in front of the 7.8.1 services: [`Legacy`] wraps one
//! generated tonic server, marks every request as a 5.4 head's ([`LegacyHead`]), and rewrites
//! the gRPC messages of the request and response bodies as they stream by (unary and
//! streaming rpcs alike: a body is a sequence of length-prefixed messages either way).

use std::convert::Infallible;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::{Buf, BufMut, Bytes, BytesMut};
use http_body::Frame;
use tonic::body::Body;
use tonic::codegen::{http, BoxFuture, Service};
use tonic::server::NamedService;
use tonic::Status;

use crate::legacy::plan::{Plan, Routes};
use crate::legacy::wire::{self, Direction};
use crate::legacy::LegacyHead;
use crate::limits;

/// A generated tonic server `S` serving 5.4 heads.
#[derive(Clone)]
pub struct Legacy<S> {
    inner: S,
    routes: &'static Routes,
}

impl<S> Legacy<S> {
    /// Wraps `inner`, rewriting the rpcs `routes` knows.
    pub fn new(inner: S, routes: &'static Routes) -> Legacy<S> {
        Legacy { inner, routes }
    }
}

impl<S: NamedService> NamedService for Legacy<S> {
    const NAME: &'static str = S::NAME;
}

impl<S> Service<http::Request<Body>> for Legacy<S>
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

    fn call(&mut self, mut request: http::Request<Body>) -> Self::Future {
        request.extensions_mut().insert(LegacyHead);
        let route = self
            .routes
            .get(request.uri().path())
            .cloned()
            .unwrap_or_default();
        if let Some(plan) = route.request {
            request =
                request.map(|body| Body::new(Rewriting::new(body, plan, Direction::FromLegacy)));
        }
        let response = self.inner.call(request);
        Box::pin(async move {
            let response = response.await?;
            Ok(match route.response {
                Some(plan) => {
                    response.map(|body| Body::new(Rewriting::new(body, plan, Direction::ToLegacy)))
                }
                None => response,
            })
        })
    }
}

/// The gRPC message prefix: a compressed flag and a big-endian length.
const PREFIX_BYTES: usize = 5;

/// A body whose gRPC messages are rewritten one by one; trailers pass through.
struct Rewriting {
    inner: Body,
    plan: Arc<Plan>,
    direction: Direction,
    /// Bytes of messages not yet whole.
    buffered: BytesMut,
    /// The body is over (ended, or failed and said so).
    over: bool,
}

impl Rewriting {
    fn new(inner: Body, plan: Arc<Plan>, direction: Direction) -> Rewriting {
        Rewriting {
            inner,
            plan,
            direction,
            buffered: BytesMut::new(),
            over: false,
        }
    }

    /// The next whole message, rewritten and framed; None until one is buffered.
    fn next_message(&mut self) -> Result<Option<Bytes>, Status> {
        if self.buffered.len() < PREFIX_BYTES {
            return Ok(None);
        }
        let compressed = self.buffered[0] != 0;
        #[allow(
            clippy::big_endian_bytes,
            reason = "gRPC's message prefix is big-endian"
        )]
        let length = u32::from_be_bytes([
            self.buffered[1],
            self.buffered[2],
            self.buffered[3],
            self.buffered[4],
        ]) as usize;
        if self.direction == Direction::FromLegacy && length > limits::MESSAGE_BYTES_MAX {
            return Err(Status::resource_exhausted(format!(
                "a {} of {length} bytes is larger than the {} bytes this runtime accepts",
                self.plan.message(),
                limits::MESSAGE_BYTES_MAX
            )));
        }
        if self.buffered.len() < PREFIX_BYTES + length {
            self.buffered
                .reserve(PREFIX_BYTES + length - self.buffered.len());
            return Ok(None);
        }
        let mut message = self.buffered.split_to(PREFIX_BYTES + length);
        if compressed {
            // Not ours to read: tonic refuses compression it was not configured for.
            return Ok(Some(message.freeze()));
        }
        message.advance(PREFIX_BYTES);
        let mut rewritten = Vec::with_capacity(PREFIX_BYTES + length + 64);
        rewritten.extend_from_slice(&[0; PREFIX_BYTES]);
        wire::rewrite(&self.plan, self.direction, &message, &mut rewritten).map_err(
            |e| match self.direction {
                Direction::FromLegacy => Status::invalid_argument(format!(
                    "a {} (Contracts 5.4) could not be read: {e}",
                    self.plan.message()
                )),
                Direction::ToLegacy => {
                    tracing::error!(error = %e, "a message to a 5.4 head could not be rewritten");
                    Status::internal(format!(
                        "a {} could not be written as Contracts 5.4: {e}",
                        self.plan.message()
                    ))
                }
            },
        )?;
        let length = u32::try_from(rewritten.len() - PREFIX_BYTES)
            .map_err(|_| Status::resource_exhausted("a rewritten message is over 4 GiB"))?;
        let mut prefix = &mut rewritten[..PREFIX_BYTES];
        prefix.put_u8(0);
        prefix.put_u32(length);
        Ok(Some(Bytes::from(rewritten)))
    }

    fn fail(&mut self, status: Status) -> Poll<Option<Result<Frame<Bytes>, Status>>> {
        self.over = true;
        self.buffered.clear();
        Poll::Ready(Some(Err(status)))
    }
}

impl http_body::Body for Rewriting {
    type Data = Bytes;
    type Error = Status;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Status>>> {
        let this = &mut *self;
        loop {
            if this.over {
                return Poll::Ready(None);
            }
            match this.next_message() {
                Ok(Some(message)) => return Poll::Ready(Some(Ok(Frame::data(message)))),
                Ok(None) => {}
                Err(status) => return this.fail(status),
            }
            match Pin::new(&mut this.inner).poll_frame(cx) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(Some(Ok(frame))) => match frame.into_data() {
                    Ok(data) => this.buffered.extend_from_slice(&data),
                    Err(trailers) => {
                        if !this.buffered.is_empty() {
                            return this.fail(cut_short(&this.plan));
                        }
                        return Poll::Ready(Some(Ok(trailers)));
                    }
                },
                Poll::Ready(Some(Err(status))) => return this.fail(status),
                Poll::Ready(None) => {
                    if !this.buffered.is_empty() {
                        return this.fail(cut_short(&this.plan));
                    }
                    this.over = true;
                    return Poll::Ready(None);
                }
            }
        }
    }
}

fn cut_short(plan: &Plan) -> Status {
    Status::invalid_argument(format!(
        "a {} was cut short: the stream ended inside it",
        plan.message()
    ))
}
