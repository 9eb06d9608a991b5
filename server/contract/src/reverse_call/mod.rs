//! Reverse calls: the runtime calls the head over a bidirectional stream the head opened
//! (event handlers, filters, projections, and another runtime's event horizon consumer). One
//! [`ReverseCall`] per stream, shared by everything that sends requests on it.
//!
//! The protocol (the original runtime's, restated in dolittle.md 2.3):
//! 1. The head's first message carries the connect arguments with a call context holding its
//!    execution context and ping interval. Anything else is answered with a failed
//!    registration response and the stream ends. The execution context's microservice and
//!    environment must be this runtime's.
//! 2. The runtime answers with the registration response (failure or none), then sends
//!    requests, each with a fresh random call id; the head answers with the same call id, in
//!    any order. Many requests may be outstanding.
//! 3. With a ping interval of at least 1 s, the runtime pings every interval, and the head must
//!    send something (a pong, an answer) at least every 3 intervals or the call is ended.
//! 4. The head may initiate a disconnect with a grace period: no new requests, outstanding ones
//!    may still be answered until the grace period ends.
//!
//! Invariants and bounds:
//! - Outbound messages go through one bounded channel (`OUTBOUND_MESSAGES_MAX`) that the gRPC
//!   stream drains: a head that does not read its stream holds up senders (backpressure) and
//!   never makes the runtime buffer more.
//! - Outstanding calls are bounded by their callers (a processor has at most its concurrency in
//!   flight, the event horizon's producer its window); each is an entry in `pending` removed on
//!   answer or when its caller gives up (drops its [`Answer`] or its call's future).
//! - When either side goes away, `ended` is cancelled: every waiting call returns
//!   [`CallError::Ended`], and the callers keep their state (nothing is lost, the persisted
//!   position is the resume point).
//! - Malformed or out-of-order messages end the call with INVALID_ARGUMENT; they never panic.

pub mod event_handlers;

use std::collections::HashMap;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use annals_log::ExecutionContext;
use parking_lot::Mutex;
use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;
use tonic::{Status, Streaming};
use uuid::Uuid;

use crate::api::convert;
use crate::api::failure::Failure;
use crate::api::ids;
use crate::limits;
use crate::proto::dolittle::protobuf::{Failure as WireFailure, Uuid as WireUuid};
use crate::proto::dolittle::services::ReverseCallArgumentsContext;
use crate::Platform;

/// The calls waiting for their answers, by call id: looked up once per request and once per
/// answer, so hashed with aHash (keyed at random per map) rather than SipHash.
type Pending<R> = HashMap<Uuid, oneshot::Sender<R>, ahash::RandomState>;

/// Messages waiting to be written to the head: enough to keep a fast head busy, small enough
/// that a head that stops reading holds up its processors instead of growing memory.
pub const OUTBOUND_MESSAGES_MAX: usize = 64;

/// How long the head has to send its connect arguments after opening the stream.
const ARGUMENTS_WAIT: Duration = Duration::from_secs(30);

/// Grace period of a disconnect the head initiated without naming one (the original's).
const DEFAULT_GRACE: Duration = Duration::from_secs(20);

/// The longest grace period a head gets (a longer one is cut to this).
const GRACE_MAX: Duration = Duration::from_secs(3600);

/// The longest ping interval; a longer one turns keep-alive off.
const PING_INTERVAL_MAX: Duration = Duration::from_secs(86_400);

/// The reason of every failed connect, as the original words it (SDKs log it).
pub const ARGUMENTS_NOT_RECEIVED: &str = "Connection arguments were not received";

/// What a head's message is, for the machinery.
pub enum Incoming<A, R> {
    /// The connect arguments (registration).
    Arguments(A),
    /// An answer to a request.
    Response(R),
    /// An answer to a ping.
    Pong,
    /// The head asks to disconnect gracefully (its grace period, if it names one).
    InitiateDisconnect(Option<Duration>),
    /// No message set: the head sent something this runtime does not know.
    Empty,
}

/// One reverse-call service's message types and how to take them apart and build them.
pub trait Protocol: Send + Sync + 'static {
    /// Head to runtime.
    type ClientMessage: Send + 'static;
    /// Runtime to head.
    type ServerMessage: Send + 'static;
    /// The connect arguments (registration request).
    type Arguments: Send + 'static;
    /// An answer to a request.
    type Response: Send + 'static;

    /// The failure id of a refused connect for this service.
    const FAILED_TO_CONNECT: Uuid;

    /// Whether the caller's execution context must name this runtime's microservice and
    /// environment. A head must (it belongs to this microservice); another runtime calling over
    /// the event horizon is another microservice and is not compared, as in the original.
    const CHECKS_PLATFORM: bool = true;

    /// What a message is.
    fn classify(message: Self::ClientMessage) -> Incoming<Self::Arguments, Self::Response>;
    /// The call context of the arguments.
    fn arguments_context(arguments: &Self::Arguments) -> Option<&ReverseCallArgumentsContext>;
    /// The call id an answer carries.
    fn response_call_id(response: &Self::Response) -> Option<&WireUuid>;
    /// The registration response (accepted when `failure` is none).
    fn connect_response(failure: Option<WireFailure>) -> Self::ServerMessage;
    /// A ping.
    fn ping() -> Self::ServerMessage;
}

/// Why a call got no answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CallError {
    /// The stream ended (the head went away, was cut off, or the runtime is stopping).
    Ended,
}

/// What a connect gives the service: the call and the head's arguments with its execution
/// context.
pub struct Connected<P: Protocol> {
    /// The stream, for sending requests and ending it.
    pub call: Arc<ReverseCall<P>>,
    /// The head's connect arguments (its registration), not yet answered.
    pub arguments: P::Arguments,
    /// The head's execution context from the arguments' call context, checked.
    pub execution_context: ExecutionContext,
    /// The reader: runs until the stream ends (the service polls it, on a task of its own or
    /// on the task of the callers it answers).
    pub reader: std::pin::Pin<Box<dyn Future<Output = ()> + Send>>,
}

/// One head's stream.
pub struct ReverseCall<P: Protocol> {
    /// Messages to the head (bounded: backpressure). `Err` ends the stream with that status.
    outbound: mpsc::Sender<Result<P::ServerMessage, Status>>,
    /// Outstanding requests by call id.
    pending: Mutex<Pending<P::Response>>,
    /// Cancelled when the stream is over, for whatever reason.
    ended: CancellationToken,
    /// Cancelled when no new requests may be sent (the head initiated a disconnect, or the
    /// runtime is stopping); outstanding ones may still be answered.
    draining: CancellationToken,
    /// Call ids: a random key per stream and a counter, mixed (see [`CallIds`]).
    call_ids: CallIds,
}

/// Random-looking call ids without a system call per request: a stream's ids are a bijective
/// mix (splitmix64's finaliser, keyed by a random 128-bit value drawn once per stream) of a
/// counter, so two outstanding calls never share an id and ids cannot be guessed from each
/// other without the key.
struct CallIds {
    key: u128,
    next: std::sync::atomic::AtomicU64,
}

impl CallIds {
    fn new() -> CallIds {
        CallIds {
            key: Uuid::new_v4().as_u128(),
            next: std::sync::atomic::AtomicU64::new(0),
        }
    }

    fn next(&self) -> Uuid {
        let n = self.next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let high = mix(n ^ (self.key >> 64) as u64);
        let low = mix(n.wrapping_add(self.key as u64));
        Uuid::from_u64_pair(high, low)
    }
}

/// splitmix64's finaliser: a bijection on u64.
fn mix(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// "a <message>" for the messages a head sends on protocol `P`, for statuses.
fn client_message<P: Protocol>() -> String {
    let full = std::any::type_name::<P::ClientMessage>();
    let name = full.rsplit("::").next().unwrap_or(full);
    format!("a {name}")
}

impl<P: Protocol> ReverseCall<P> {
    /// Receives the head's connect arguments and checks them (against `platform`, when given
    /// and `P::CHECKS_PLATFORM`). On failure the head gets a
    /// failed registration response (or a status when it sent no message at all) and `None`
    /// comes back: the stream is over.
    pub async fn accept(
        mut incoming: Streaming<P::ClientMessage>,
        outbound: mpsc::Sender<Result<P::ServerMessage, Status>>,
        platform: Option<&Platform>,
        stopping: tokio::sync::watch::Receiver<bool>,
    ) -> Option<Connected<P>> {
        let mut shutdown = stopping.clone();
        let first = tokio::select! {
            first = tokio::time::timeout(ARGUMENTS_WAIT, incoming.message()) => first,
            () = async { drop(shutdown.wait_for(|stopping| *stopping).await) } => {
                // The runtime is stopping: a new registration is not taken.
                let _ = outbound.send(Err(Status::unavailable("the runtime is stopping"))).await;
                return None;
            }
        };
        let first = match first {
            Ok(Ok(Some(message))) => P::classify(message),
            Ok(Ok(None)) => return None,
            Ok(Err(status)) => {
                // Garbage or an oversized message: the head learns why its stream ended.
                if let Some(status) = limits::for_client(&status, &client_message::<P>()) {
                    let _ = outbound.send(Err(status)).await;
                }
                return None;
            }
            Err(_) => {
                refuse::<P>(&outbound, "the head sent nothing".into()).await;
                return None;
            }
        };
        let Incoming::Arguments(arguments) = first else {
            refuse::<P>(
                &outbound,
                "the first message is not the registration".into(),
            )
            .await;
            return None;
        };
        let checked = P::arguments_context(&arguments)
            .ok_or_else(|| "callContext is missing".to_owned())
            .and_then(|context| check_context(context, platform.filter(|_| P::CHECKS_PLATFORM)));
        let (execution_context, ping_interval) = match checked {
            Ok(checked) => checked,
            Err(reason) => {
                refuse::<P>(&outbound, reason).await;
                return None;
            }
        };
        let call = Arc::new(ReverseCall {
            outbound,
            pending: Mutex::new(Pending::default()),
            ended: CancellationToken::new(),
            draining: CancellationToken::new(),
            call_ids: CallIds::new(),
        });
        let reader = Box::pin(Arc::clone(&call).read(incoming, ping_interval, stopping));
        Some(Connected {
            call,
            arguments,
            execution_context,
            reader,
        })
    }

    /// Sends the registration response: accepted, or refused with `failure` (the stream then
    /// ends once the caller drops the call).
    pub async fn respond_to_connect(&self, failure: Option<Failure>) {
        let refused = failure.is_some();
        let _ = self
            .outbound
            .send(Ok(P::connect_response(failure.map(|f| f.to_wire()))))
            .await;
        if refused {
            self.end(None);
        }
    }

    /// Sends one request, which `request` builds with a fresh call id (its call context holds
    /// that id and the execution context: `api::wire::RequestContexts` or `api::wire::request_context`
    /// makes it), and waits for the answer. Waits for room when the head is slow to read.
    pub async fn call(
        &self,
        request: impl FnOnce(Uuid) -> P::ServerMessage,
    ) -> Result<P::Response, CallError> {
        // (Not `send_call(request).await?.await`: a call's future is kept for every request in
        // flight, and nesting one call's future in another makes it larger.)
        let (answer, waiting) = self.start(request)?;
        if let Some(waiting) = waiting {
            if !waiting.await {
                return Err(CallError::Ended);
            }
        }
        answer.await
    }

    /// Sends one message as it is (waiting for room when the other side is slow to read);
    /// `false` when the stream is over. For answers a service builds itself, such as an
    /// accepted registration that carries more than the absence of a failure.
    pub async fn send(&self, message: P::ServerMessage) -> bool {
        self.send_result(Ok(message)).await
    }

    /// Sends `message` when there is room; `false` when the stream is over first.
    async fn send_result(&self, message: Result<P::ServerMessage, Status>) -> bool {
        tokio::select! {
            biased;
            sent = self.outbound.send(message) => sent.is_ok(),
            () = self.ended.cancelled() => false,
        }
    }

    /// Sends one request like [`call`](Self::call) but does not wait for its answer: the
    /// returned [`Answer`] gives it, so a caller can keep many requests in flight and still
    /// send them in order (each is on the stream when this returns).
    pub async fn send_call(
        &self,
        request: impl FnOnce(Uuid) -> P::ServerMessage,
    ) -> Result<Answer<'_, P::Response>, CallError> {
        let (answer, waiting) = self.start(request)?;
        if let Some(waiting) = waiting {
            if !waiting.await {
                return Err(CallError::Ended);
            }
        }
        Ok(answer)
    }

    /// Books a call and puts its request on the stream when there is room (the usual case);
    /// when there is none, the send that waits for room comes back with the answer, boxed: it
    /// holds the message, and a call's future, kept for every request in flight, would
    /// otherwise be that much larger.
    #[allow(clippy::type_complexity)]
    fn start(
        &self,
        request: impl FnOnce(Uuid) -> P::ServerMessage,
    ) -> Result<
        (
            Answer<'_, P::Response>,
            Option<std::pin::Pin<Box<dyn Future<Output = bool> + Send + '_>>>,
        ),
        CallError,
    > {
        if self.ended.is_cancelled() {
            return Err(CallError::Ended);
        }
        let call_id = self.call_ids.next();
        let (answer_tx, answer_rx) = oneshot::channel();
        self.pending.lock().insert(call_id, answer_tx);
        // Removes the entry however the call ends (given up, not sent, dropped), unless its
        // answer took it out.
        let answer = Answer {
            receiver: answer_rx,
            pending: &self.pending,
            call_id,
            answered: false,
        };
        // `end` cancels, then drops every waiting sender: checked after inserting, a call
        // either sees the cancellation here or loses its sender (and ends) when awaited.
        if self.ended.is_cancelled() {
            return Err(CallError::Ended);
        }
        match self.outbound.try_send(Ok(request(call_id))) {
            Ok(()) => Ok((answer, None)),
            Err(mpsc::error::TrySendError::Closed(_)) => Err(CallError::Ended),
            Err(mpsc::error::TrySendError::Full(message)) => {
                Ok((answer, Some(Box::pin(self.send_result(message)))))
            }
        }
    }

    /// Cancelled when the stream is over.
    pub fn ended(&self) -> &CancellationToken {
        &self.ended
    }

    /// Cancelled when no new requests may be sent.
    pub fn draining(&self) -> &CancellationToken {
        &self.draining
    }

    /// Ends the stream: with OK when `status` is none, else with that status.
    pub fn end(&self, status: Option<Status>) {
        if let Some(status) = status {
            let _ = self.outbound.try_send(Err(status));
        }
        self.draining.cancel();
        self.ended.cancel();
        // Every waiting call gets `Ended` (their answers can no longer come).
        self.pending.lock().clear();
    }

    /// Reads the head's messages until the stream ends: answers go to their waiting calls,
    /// pongs keep the call alive, a disconnect request starts draining. Pings the head at its
    /// interval.
    async fn read(
        self: Arc<Self>,
        mut incoming: Streaming<P::ClientMessage>,
        ping_interval: Option<Duration>,
        mut stopping: tokio::sync::watch::Receiver<bool>,
    ) {
        // The deadline is 3 ping intervals after the last message; without pings, none.
        let keepalive = ping_interval.map(|i| i * 3);
        let mut pings = ping_interval.map(|i| {
            let mut timer = tokio::time::interval_at(tokio::time::Instant::now() + i, i);
            timer.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            timer
        });
        // One timer for the keep-alive deadline, moved only when it fires early: resetting a
        // timer on every message would cost a timer-wheel update per answer.
        let far = tokio::time::Instant::now() + Duration::from_secs(86_400 * 365);
        let mut heard = tokio::time::Instant::now();
        let expiry = tokio::time::sleep_until(keepalive.map_or(far, |k| heard + k));
        tokio::pin!(expiry);
        let grace = tokio::time::sleep_until(far);
        tokio::pin!(grace);
        let mut grace_set = false;
        let mut stop_seen = false;
        let ended = self.ended.clone();
        let ended = ended.cancelled();
        tokio::pin!(ended);
        // Made once: a fresh waiter per turn of the loop would lock the watch's waiter list
        // twice per message.
        let stop = stopping.wait_for(|stopping| *stopping);
        tokio::pin!(stop);
        'messages: loop {
            let ping = async {
                match pings.as_mut() {
                    Some(timer) => {
                        timer.tick().await;
                    }
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                () = &mut ended => break,
                message = incoming.message() => {
                    // This message and the ones already received after it, up to a bound,
                    // in one turn of the loop.
                    let mut message = message;
                    for _ in 0..READY_MESSAGES_MAX {
                        match self.take(message) {
                            Taken::Message => {}
                            Taken::Disconnect(period) => {
                                if !grace_set {
                                    grace_set = true;
                                    grace.as_mut().reset(tokio::time::Instant::now() + period);
                                }
                            }
                            Taken::Over => break 'messages,
                        }
                        match ready(incoming.message()) {
                            Some(next) => message = next,
                            None => break,
                        }
                    }
                    heard = tokio::time::Instant::now();
                }
                () = &mut expiry, if keepalive.is_some() => {
                    let due = heard + keepalive.unwrap_or_default();
                    if tokio::time::Instant::now() < due {
                        expiry.as_mut().reset(due);
                        continue;
                    }
                    tracing::info!(?keepalive, "the head did not answer pings in time; ending its stream");
                    self.end(Some(Status::deadline_exceeded(format!(
                        "no message from the head for 3 ping intervals ({:?})",
                        keepalive.unwrap_or_default()
                    ))));
                    break;
                }
                () = &mut grace, if grace_set => {
                    self.end(None);
                    break;
                }
                () = ping => {
                    // A full outbound queue already tells the head there is traffic; the
                    // ping is only for idle streams.
                    let _ = self.outbound.try_send(Ok(P::ping()));
                }
                _ = &mut stop, if !stop_seen => {
                    // The runtime is shutting down: finish what is outstanding, send nothing
                    // new, within the default grace period even if the head asked for a
                    // longer one. The processors end the stream once drained.
                    stop_seen = true;
                    self.draining.cancel();
                    let at = tokio::time::Instant::now() + DEFAULT_GRACE;
                    if !grace_set || grace.deadline() > at {
                        grace_set = true;
                        grace.as_mut().reset(at);
                    }
                }
            }
        }
    }

    /// What one received message (or the stream's end or failure) means for the call.
    fn take(&self, message: Result<Option<P::ClientMessage>, Status>) -> Taken {
        let message = match message {
            Ok(Some(message)) => message,
            Ok(None) => {
                tracing::debug!("the head closed its stream");
                self.end(None);
                return Taken::Over;
            }
            Err(status) => {
                tracing::debug!(%status, "the head's stream failed");
                self.end(limits::for_client(&status, &client_message::<P>()));
                return Taken::Over;
            }
        };
        match P::classify(message) {
            Incoming::Response(response) => self.answer(response),
            Incoming::Pong => {}
            Incoming::InitiateDisconnect(period) => {
                let period = period.unwrap_or(DEFAULT_GRACE).min(GRACE_MAX);
                tracing::debug!(?period, "the head initiated a disconnect");
                self.draining.cancel();
                return Taken::Disconnect(period);
            }
            Incoming::Arguments(_) => {
                self.end(Some(Status::invalid_argument(
                    "a registration arrived on a stream that is already registered",
                )));
                return Taken::Over;
            }
            Incoming::Empty => {
                self.end(Some(Status::invalid_argument(
                    "a message without content (no field of its oneof is set)",
                )));
                return Taken::Over;
            }
        }
        Taken::Message
    }

    fn answer(&self, response: P::Response) {
        let Some(call_id) =
            P::response_call_id(&response).and_then(|id| ids::from_wire("callId", id).ok())
        else {
            tracing::debug!("an answer without a usable call id; ignored");
            return;
        };
        let waiting = self.pending.lock().remove(&call_id);
        if let Some(waiting) = waiting {
            let _ = waiting.send(response);
        } else {
            tracing::debug!(%call_id, "an answer to no outstanding request; ignored");
        }
    }
}

/// What the reader makes of one received message.
enum Taken {
    /// An answer or a pong: the call goes on.
    Message,
    /// The head initiated a disconnect with this grace period: no new requests.
    Disconnect(Duration),
    /// The stream is over (closed, failed, or ended for bad input).
    Over,
}

/// Messages the reader takes in one turn of its loop when they have arrived already (the
/// timers and the runtime's stop are looked at between turns).
const READY_MESSAGES_MAX: usize = 64;

/// The output of `future` if it is ready now, without waiting. (Polled with a waker that does
/// nothing: the reader's next turn polls its stream again with its own.)
fn ready<F: Future>(future: F) -> Option<F::Output> {
    let future = std::pin::pin!(future);
    match future.poll(&mut std::task::Context::from_waker(std::task::Waker::noop())) {
        std::task::Poll::Ready(output) => Some(output),
        std::task::Poll::Pending => None,
    }
}

/// A request on the stream, waiting for its answer: awaited, it gives the answer, or
/// [`CallError::Ended`] when the stream ends first. Dropped unanswered, it takes its call out
/// of the outstanding ones (a late answer is then ignored).
pub struct Answer<'a, R> {
    receiver: oneshot::Receiver<R>,
    pending: &'a Mutex<Pending<R>>,
    call_id: Uuid,
    /// The answer came, and took the call's entry out with it.
    answered: bool,
}

impl<R> Answer<'_, R> {
    /// The answer if it is in already, without waiting: `None` while it is not.
    pub fn try_take(&mut self) -> Option<Result<R, CallError>> {
        match self.receiver.try_recv() {
            Ok(response) => {
                self.answered = true;
                Some(Ok(response))
            }
            Err(oneshot::error::TryRecvError::Empty) => None,
            Err(oneshot::error::TryRecvError::Closed) => Some(Err(CallError::Ended)),
        }
    }
}

impl<R> Future for Answer<'_, R> {
    type Output = Result<R, CallError>;

    fn poll(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Self::Output> {
        let answer = std::task::ready!(std::pin::Pin::new(&mut self.receiver).poll(cx));
        self.answered = answer.is_ok();
        std::task::Poll::Ready(answer.map_err(|_| CallError::Ended))
    }
}

impl<R> Drop for Answer<'_, R> {
    fn drop(&mut self) {
        // Answered: `answer` took the entry out already.
        if !self.answered {
            self.pending.lock().remove(&self.call_id);
        }
    }
}

async fn refuse<P: Protocol>(
    outbound: &mpsc::Sender<Result<P::ServerMessage, Status>>,
    detail: String,
) {
    tracing::info!(%detail, "refused a reverse call");
    let failure = Failure::new(
        P::FAILED_TO_CONNECT,
        format!("{ARGUMENTS_NOT_RECEIVED}: {detail}"),
    );
    let _ = outbound
        .send(Ok(P::connect_response(Some(failure.to_wire()))))
        .await;
}

/// The head's execution context and ping interval (none: no pings), checked against the
/// platform: the microservice and environment must be this runtime's.
fn check_context(
    context: &ReverseCallArgumentsContext,
    platform: Option<&Platform>,
) -> Result<(ExecutionContext, Option<Duration>), String> {
    if let Some(head) = &context.head_id {
        ids::from_wire("callContext.headId", head).map_err(|f| f.reason)?;
    }
    let execution_context = convert::execution_context(
        "callContext.executionContext",
        context.execution_context.as_ref(),
    )
    .map_err(|f| f.reason)?;
    let interval = context
        .ping_interval
        .as_ref()
        .ok_or_else(|| "callContext.pingInterval is missing".to_owned())?;
    if let Some(platform) = platform {
        if execution_context.microservice_id != platform.microservice_id {
            return Err(format!(
                "the execution context's microservice {} is not this runtime's ({})",
                execution_context.microservice_id, platform.microservice_id
            ));
        }
        if execution_context.environment != platform.environment {
            return Err(format!(
                "the execution context's environment \"{}\" is not this runtime's (\"{}\")",
                execution_context.environment, platform.environment
            ));
        }
    }
    // Under 1 s (or negative) turns keep-alive off, as in the original; so does anything over
    // a day (the original's "largest Duration", and absurd values that would overflow clocks).
    let ping_interval = convert::duration(Some(interval))
        .filter(|d| (1..=PING_INTERVAL_MAX.as_secs()).contains(&d.as_secs()));
    Ok((execution_context, ping_interval))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::dolittle::execution::ExecutionContext as Wire;

    fn platform() -> Platform {
        Platform {
            customer_id: Uuid::nil(),
            customer_name: String::new(),
            application_id: Uuid::nil(),
            application_name: String::new(),
            microservice_id: Uuid::from_u128(7),
            microservice_name: String::new(),
            environment: "Production".into(),
        }
    }

    fn context(
        microservice: u128,
        environment: &str,
        ping_seconds: i64,
    ) -> ReverseCallArgumentsContext {
        ReverseCallArgumentsContext {
            execution_context: Some(Wire {
                microservice_id: Some(ids::to_wire(Uuid::from_u128(microservice))),
                tenant_id: Some(ids::to_wire(Uuid::from_u128(1))),
                correlation_id: Some(ids::to_wire(Uuid::from_u128(2))),
                environment: environment.into(),
                ..Wire::default()
            }),
            head_id: None,
            ping_interval: Some(prost_types::Duration {
                seconds: ping_seconds,
                nanos: 0,
            }),
        }
    }

    #[test]
    fn the_execution_context_must_be_this_runtimes() {
        let ok = check_context(&context(7, "Production", 5), Some(&platform())).unwrap();
        assert_eq!(ok.1, Some(Duration::from_secs(5)));
        let other = check_context(&context(8, "Production", 5), Some(&platform())).unwrap_err();
        assert!(other.contains("microservice"), "{other}");
        let env = check_context(&context(7, "Development", 5), Some(&platform())).unwrap_err();
        assert!(env.contains("environment"), "{env}");
        let mut missing = context(7, "Production", 5);
        missing.ping_interval = None;
        assert!(check_context(&missing, Some(&platform()))
            .unwrap_err()
            .contains("pingInterval"));
        let mut head = context(7, "Production", 5);
        head.head_id = Some(WireUuid { value: vec![7; 15] });
        assert_eq!(
            check_context(&head, Some(&platform())).unwrap_err(),
            "callContext.headId is not a GUID: 15 bytes where 16 were expected"
        );
        head.head_id = Some(WireUuid { value: vec![7; 16] });
        assert!(check_context(&head, Some(&platform())).is_ok());
    }

    #[test]
    fn call_ids_of_a_stream_are_distinct_and_differ_between_streams() {
        let ids = CallIds::new();
        let first: std::collections::HashSet<Uuid> = (0..100_000).map(|_| ids.next()).collect();
        assert_eq!(first.len(), 100_000);
        let other = CallIds::new();
        assert!((0..1000).all(|_| !first.contains(&other.next())));
    }

    #[test]
    fn short_or_huge_ping_intervals_turn_keepalive_off() {
        assert_eq!(
            check_context(&context(7, "Production", 0), Some(&platform()))
                .unwrap()
                .1,
            None
        );
        assert_eq!(
            check_context(&context(7, "Production", -3), Some(&platform()))
                .unwrap()
                .1,
            None
        );
        assert_eq!(
            check_context(&context(7, "Production", i64::MAX), Some(&platform()))
                .unwrap()
                .1,
            None
        );
    }

    /// The head's side of a stream in a test: its messages go to the runtime's reader as gRPC
    /// frames, when the test sends them.
    struct HeadBody(tokio::sync::mpsc::UnboundedReceiver<bytes::Bytes>);

    impl http_body::Body for HeadBody {
        type Data = bytes::Bytes;
        type Error = std::convert::Infallible;

        fn poll_frame(
            mut self: std::pin::Pin<&mut Self>,
            cx: &mut std::task::Context<'_>,
        ) -> std::task::Poll<Option<Result<http_body::Frame<bytes::Bytes>, Self::Error>>> {
            self.0
                .poll_recv(cx)
                .map(|data| data.map(|data| Ok(http_body::Frame::data(data))))
        }
    }

    /// `message` as one gRPC frame (uncompressed).
    fn frame(message: &impl prost::Message) -> bytes::Bytes {
        let encoded = message.encode_to_vec();
        let mut framed = vec![0];
        #[allow(
            clippy::big_endian_bytes,
            reason = "gRPC frames a message's length big-endian"
        )]
        framed.extend_from_slice(&u32::try_from(encoded.len()).unwrap().to_be_bytes());
        framed.extend_from_slice(&encoded);
        framed.into()
    }

    fn answer_to(call_id: Uuid) -> bytes::Bytes {
        use crate::proto::dolittle::runtime::events::processing::event_handler_client_to_runtime_message::Message as FromHead;
        use crate::proto::dolittle::runtime::events::processing::{
            EventHandlerClientToRuntimeMessage, EventHandlerResponse,
        };
        use crate::proto::dolittle::services::ReverseCallResponseContext;
        frame(&EventHandlerClientToRuntimeMessage {
            message: Some(FromHead::HandleResult(EventHandlerResponse {
                call_context: Some(ReverseCallResponseContext {
                    call_id: Some(ids::to_wire(call_id)),
                }),
                failure: None,
            })),
        })
    }

    #[tokio::test]
    async fn an_answer_dropped_unanswered_leaves_nothing_outstanding() {
        use crate::proto::dolittle::runtime::events::processing::event_handler_client_to_runtime_message::Message as FromHead;
        use crate::proto::dolittle::runtime::events::processing::{
            EventHandlerClientToRuntimeMessage, EventHandlerRegistrationRequest,
        };
        use event_handlers::EventHandlerProtocol;
        use tonic::codec::Codec as _;

        let (head, body) = tokio::sync::mpsc::unbounded_channel();
        head.send(frame(&EventHandlerClientToRuntimeMessage {
            message: Some(FromHead::RegistrationRequest(
                EventHandlerRegistrationRequest {
                    call_context: Some(context(7, "Production", 0)),
                    ..EventHandlerRegistrationRequest::default()
                },
            )),
        }))
        .unwrap();
        let decoder = tonic_prost::ProstCodec::<
            crate::api::wire::EventHandlerRuntimeToClientMessageWire,
            EventHandlerClientToRuntimeMessage,
        >::default()
        .decoder();
        let incoming = Streaming::new_request(decoder, HeadBody(body), None, None);
        let (outbound, _to_head) = mpsc::channel(OUTBOUND_MESSAGES_MAX);
        let (_stop, stopping) = tokio::sync::watch::channel(false);
        let connected =
            ReverseCall::<EventHandlerProtocol>::accept(incoming, outbound, None, stopping)
                .await
                .expect("registered");
        let reader = tokio::spawn(connected.reader);
        let call = connected.call;
        let outstanding = || call.pending.lock().len();
        let ping = <EventHandlerProtocol as Protocol>::ping;

        // Two requests out; the first given up before its answer.
        let mut sent = Vec::new();
        for _ in 0..2 {
            let mut call_id = Uuid::nil();
            let answer = call
                .send_call(|id| {
                    call_id = id;
                    ping()
                })
                .await
                .unwrap();
            sent.push((call_id, answer));
        }
        let (second_id, second) = sent.pop().unwrap();
        let (first_id, first) = sent.pop().unwrap();
        assert_eq!(outstanding(), 2);
        drop(first);
        assert_eq!(outstanding(), 1);

        // The second is answered; a late answer to the first is ignored.
        head.send(answer_to(second_id)).unwrap();
        head.send(answer_to(first_id)).unwrap();
        assert!(second.await.is_ok());
        assert_eq!(outstanding(), 0);

        // A call whose caller stops waiting leaves nothing behind either.
        let given_up = tokio::time::timeout(Duration::from_millis(20), call.call(|_| ping())).await;
        assert!(given_up.is_err(), "nobody answered it");
        assert_eq!(outstanding(), 0);

        // One still waiting when the head goes away ends with the stream.
        let waiting = call.send_call(|_| ping()).await.unwrap();
        drop(head);
        assert_eq!(waiting.await, Err(CallError::Ended));
        assert_eq!(outstanding(), 0);
        reader.await.unwrap();
        assert!(call.ended().is_cancelled());
    }
}
