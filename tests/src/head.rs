//! A scripted head for the reverse-call streams (EventHandlers/Connect, Filters/Connect,
//! ConnectPartitioned and ConnectPublic), built from our protos.
//!
//! A [`Head`] sends its first message (normally the registration) before the call is opened,
//! so the server always finds it first; the outbound stream is a bounded mpsc the test writes
//! into. A background task reads the server's messages: it counts pings and answers them
//! with pongs unless told not to, and queues everything else (the registration response,
//! requests, `disconnected`, and the end of the stream with its status) for the test, which
//! takes them with [`Head::next`] or [`Head::next_request`]. Answers echo the request's call
//! id in a `ReverseCallResponseContext`.
//!
//! Each head should get its own `Channel` (`server.private().await`), so that
//! [`Head::abort`] drops the whole connection, as a head process that dies would.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_stream::wrappers::ReceiverStream;
use tonic::codec::Streaming;
use tonic::transport::Channel;
use tonic::Status;
use uuid::Uuid;

use crate::proto::dolittle;
use crate::{artifact, execution_context, id, uuid, DEVELOPMENT};
use dolittle::execution::ExecutionContext;
use dolittle::protobuf::Failure;
use dolittle::runtime::events::processing;
use dolittle::runtime::events::CommittedEvent;
use dolittle::services::{Pong, ReverseCallArgumentsContext, ReverseCallResponseContext};
use processing::event_handler_client_to_runtime_message::Message as HandlerOut;
use processing::event_handler_runtime_to_client_message::Message as HandlerIn;
use processing::event_handlers_client::EventHandlersClient;
use processing::filter_client_to_runtime_message::Message as FilterOut;
use processing::filter_runtime_to_client_message::Message as FilterIn;
use processing::filters_client::FiltersClient;
use processing::partitioned_filter_client_to_runtime_message::Message as PartitionedOut;
use processing::public_filter_client_to_runtime_message::Message as PublicOut;
use processing::{
    EventHandlerClientToRuntimeMessage, EventHandlerRegistrationRequest, EventHandlerResponse,
    EventHandlerRuntimeToClientMessage, FilterClientToRuntimeMessage, FilterRegistrationRequest,
    FilterResponse, FilterRuntimeToClientMessage, InitiateDisconnect,
    PartitionedFilterClientToRuntimeMessage, PartitionedFilterRegistrationRequest,
    PartitionedFilterResponse, ProcessorFailure, PublicFilterClientToRuntimeMessage,
    PublicFilterRegistrationRequest, RetryProcessingState, StartFrom,
};

pub use processing::start_from::{Position, Selected};

/// How long to wait for something that must happen.
pub const MUST: Duration = Duration::from_secs(10);
/// How long to wait before concluding that something does not happen.
pub const QUIET: Duration = Duration::from_millis(800);

/// The reverse-call stream a head speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    EventHandler,
    Filter,
    PartitionedFilter,
    PublicFilter,
}

/// A message from the head to the server, of any of the four streams.
#[derive(Debug, Clone)]
pub enum ClientMessage {
    EventHandler(EventHandlerClientToRuntimeMessage),
    Filter(FilterClientToRuntimeMessage),
    PartitionedFilter(PartitionedFilterClientToRuntimeMessage),
    PublicFilter(PublicFilterClientToRuntimeMessage),
}

impl ClientMessage {
    pub fn kind(&self) -> Kind {
        match self {
            ClientMessage::EventHandler(_) => Kind::EventHandler,
            ClientMessage::Filter(_) => Kind::Filter,
            ClientMessage::PartitionedFilter(_) => Kind::PartitionedFilter,
            ClientMessage::PublicFilter(_) => Kind::PublicFilter,
        }
    }

    /// A message of `kind` with no oneof set.
    pub fn empty(kind: Kind) -> ClientMessage {
        match kind {
            Kind::EventHandler => {
                ClientMessage::EventHandler(EventHandlerClientToRuntimeMessage::default())
            }
            Kind::Filter => ClientMessage::Filter(FilterClientToRuntimeMessage::default()),
            Kind::PartitionedFilter => {
                ClientMessage::PartitionedFilter(PartitionedFilterClientToRuntimeMessage::default())
            }
            Kind::PublicFilter => {
                ClientMessage::PublicFilter(PublicFilterClientToRuntimeMessage::default())
            }
        }
    }

    /// A pong of `kind`.
    pub fn pong(kind: Kind) -> ClientMessage {
        match kind {
            Kind::EventHandler => ClientMessage::EventHandler(EventHandlerClientToRuntimeMessage {
                message: Some(HandlerOut::Pong(Pong {})),
            }),
            Kind::Filter => ClientMessage::Filter(FilterClientToRuntimeMessage {
                message: Some(FilterOut::Pong(Pong {})),
            }),
            Kind::PartitionedFilter => {
                ClientMessage::PartitionedFilter(PartitionedFilterClientToRuntimeMessage {
                    message: Some(PartitionedOut::Pong(Pong {})),
                })
            }
            Kind::PublicFilter => ClientMessage::PublicFilter(PublicFilterClientToRuntimeMessage {
                message: Some(PublicOut::Pong(Pong {})),
            }),
        }
    }
}

/// The arguments context of a registration: the Development execution context, a fresh head
/// id and `ping_interval` (none: the field is left out).
pub fn arguments(
    context: &ExecutionContext,
    ping_interval: Option<Duration>,
) -> ReverseCallArgumentsContext {
    ReverseCallArgumentsContext {
        execution_context: Some(context.clone()),
        head_id: Some(id(Uuid::new_v4())),
        ping_interval: ping_interval.map(duration),
    }
}

/// The wire form of a duration.
pub fn duration(d: Duration) -> prost_types::Duration {
    prost_types::Duration {
        seconds: i64::try_from(d.as_secs()).unwrap(),
        nanos: i32::try_from(d.subsec_nanos()).unwrap(),
    }
}

/// The wire form of a time.
pub fn timestamp(t: SystemTime) -> prost_types::Timestamp {
    prost_types::Timestamp::from(t)
}

/// The time of a wire timestamp.
pub fn time(t: &prost_types::Timestamp) -> SystemTime {
    SystemTime::try_from(*t).unwrap()
}

/// Waits until the clock (the runtime's: same machine) is past `t`, so what is committed next
/// occurred strictly after it.
pub async fn clock_past(t: &prost_types::Timestamp) {
    let t = time(t);
    while SystemTime::now() <= t {
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
}

/// An event handler registration, with the defaults a head would send.
#[derive(Debug, Clone)]
pub struct EventHandler {
    pub scope: Uuid,
    pub id: Uuid,
    pub event_types: Vec<Uuid>,
    pub partitioned: bool,
    pub alias: Option<String>,
    pub start_from: Option<StartFrom>,
    pub stop_at: Option<SystemTime>,
    pub concurrency: i32,
    pub ping_interval: Option<Duration>,
    pub execution_context: ExecutionContext,
}

impl EventHandler {
    /// An unpartitioned handler of `event_types` in the default scope, pinged every 5 s.
    pub fn new(id: Uuid, event_types: &[Uuid]) -> EventHandler {
        EventHandler {
            scope: Uuid::nil(),
            id,
            event_types: event_types.to_vec(),
            partitioned: false,
            alias: None,
            start_from: None,
            stop_at: None,
            concurrency: 0,
            ping_interval: Some(Duration::from_secs(5)),
            execution_context: execution_context(DEVELOPMENT),
        }
    }

    #[must_use]
    pub fn partitioned(mut self, concurrency: i32) -> EventHandler {
        self.partitioned = true;
        self.concurrency = concurrency;
        self
    }

    #[must_use]
    pub fn scope(mut self, scope: Uuid) -> EventHandler {
        self.scope = scope;
        self
    }

    #[must_use]
    pub fn start_from(mut self, selected: Selected) -> EventHandler {
        self.start_from = Some(StartFrom {
            selected: Some(selected),
        });
        self
    }

    #[must_use]
    pub fn ping_interval(mut self, interval: Option<Duration>) -> EventHandler {
        self.ping_interval = interval;
        self
    }

    pub fn request(&self) -> EventHandlerRegistrationRequest {
        EventHandlerRegistrationRequest {
            call_context: Some(arguments(&self.execution_context, self.ping_interval)),
            scope_id: Some(id(self.scope)),
            event_handler_id: Some(id(self.id)),
            event_types: self.event_types.iter().map(|t| artifact(*t)).collect(),
            partitioned: self.partitioned,
            alias: self.alias.clone(),
            start_from: self.start_from,
            stop_at: self.stop_at.map(timestamp),
            concurrency: self.concurrency,
        }
    }

    pub fn message(&self) -> ClientMessage {
        registration_message(self.request())
    }
}

/// The first message carrying an event handler registration.
pub fn registration_message(request: EventHandlerRegistrationRequest) -> ClientMessage {
    ClientMessage::EventHandler(EventHandlerClientToRuntimeMessage {
        message: Some(HandlerOut::RegistrationRequest(request)),
    })
}

/// A filter registration of any of the three kinds (`scope` is not sent for public ones).
#[derive(Debug, Clone)]
pub struct Filter {
    pub kind: Kind,
    pub scope: Uuid,
    pub id: Uuid,
    pub ping_interval: Option<Duration>,
    pub execution_context: ExecutionContext,
}

impl Filter {
    pub fn new(kind: Kind, id: Uuid) -> Filter {
        assert_ne!(kind, Kind::EventHandler);
        Filter {
            kind,
            scope: Uuid::nil(),
            id,
            ping_interval: Some(Duration::from_secs(5)),
            execution_context: execution_context(DEVELOPMENT),
        }
    }

    pub fn message(&self) -> ClientMessage {
        let call_context = Some(arguments(&self.execution_context, self.ping_interval));
        match self.kind {
            Kind::Filter => ClientMessage::Filter(FilterClientToRuntimeMessage {
                message: Some(FilterOut::RegistrationRequest(FilterRegistrationRequest {
                    call_context,
                    scope_id: Some(id(self.scope)),
                    filter_id: Some(id(self.id)),
                })),
            }),
            Kind::PartitionedFilter => {
                ClientMessage::PartitionedFilter(PartitionedFilterClientToRuntimeMessage {
                    message: Some(PartitionedOut::RegistrationRequest(
                        PartitionedFilterRegistrationRequest {
                            call_context,
                            scope_id: Some(id(self.scope)),
                            filter_id: Some(id(self.id)),
                        },
                    )),
                })
            }
            Kind::PublicFilter => ClientMessage::PublicFilter(PublicFilterClientToRuntimeMessage {
                message: Some(PublicOut::RegistrationRequest(
                    PublicFilterRegistrationRequest {
                        call_context,
                        filter_id: Some(id(self.id)),
                    },
                )),
            }),
            Kind::EventHandler => unreachable!(),
        }
    }
}

/// One request of the server: a HandleEventRequest or a FilterEventRequest, flattened.
/// Its Debug form is a one-line summary (the full event is in `event`).
#[derive(Clone)]
pub struct Request {
    /// `callContext.callId` (None when the server left it out).
    pub call_id: Option<Uuid>,
    /// `callContext.executionContext`.
    pub execution_context: Option<ExecutionContext>,
    pub event: CommittedEvent,
    /// The stream event's partition (empty for filter requests).
    pub partition_id: String,
    pub scope_id: Option<Uuid>,
    /// The stream event's flag (false for filter requests).
    pub partitioned: bool,
    /// The stream event's position (0 for filter requests).
    pub stream_position: u64,
    pub retry: Option<RetryProcessingState>,
}

impl std::fmt::Debug for Request {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let tenant = self
            .execution_context
            .as_ref()
            .and_then(|c| c.tenant_id.as_ref())
            .map(uuid);
        write!(
            f,
            "Request {{ seq: {}, event_source: {:?}, stream_position: {}, partition: {:?}, \
             partitioned: {}, retry: {:?}, tenant: {tenant:?}, call_id: {:?} }}",
            self.seq(),
            self.event_source(),
            self.stream_position,
            self.partition_id,
            self.partitioned,
            self.retry
                .as_ref()
                .map(|r| (r.failure_reason.as_str(), r.retry_count)),
            self.call_id
        )
    }
}

impl Request {
    /// The event's event-log sequence number.
    pub fn seq(&self) -> u64 {
        self.event.event_log_sequence_number
    }

    pub fn event_source(&self) -> &str {
        &self.event.event_source_id
    }

    pub fn event_type(&self) -> Uuid {
        uuid(
            self.event
                .event_type
                .as_ref()
                .and_then(|t| t.id.as_ref())
                .unwrap(),
        )
    }

    /// The tenant of the request's execution context.
    pub fn tenant(&self) -> Uuid {
        uuid(
            self.execution_context
                .as_ref()
                .and_then(|c| c.tenant_id.as_ref())
                .unwrap(),
        )
    }

    /// The retry count, 0 on a first attempt.
    pub fn retry_count(&self) -> u32 {
        self.retry.as_ref().map_or(0, |r| r.retry_count)
    }
}

/// What the server sent, pings aside.
#[derive(Debug)]
pub enum Incoming {
    Registration(Option<Failure>),
    Request(Box<Request>),
    Disconnected(Option<Failure>),
    /// A message with no oneof set.
    Empty,
    /// The end of the stream: Ok for a status OK (or a clean end), the status otherwise.
    End(Result<(), Status>),
}

/// How a head answers a request.
#[derive(Debug, Clone)]
pub enum Answer {
    /// Handled; for filters: included, in the event source's partition.
    Success,
    /// A filter verdict (the partition is sent only by partitioned and public filters).
    Filter { included: bool, partition: String },
    /// A processor failure.
    Failure {
        reason: String,
        retry: bool,
        retry_timeout: Option<Duration>,
    },
}

impl Answer {
    pub fn failure(reason: &str, retry: bool, retry_timeout: Duration) -> Answer {
        Answer::Failure {
            reason: reason.to_owned(),
            retry,
            retry_timeout: Some(retry_timeout),
        }
    }
}

/// The outbound half of a call: the sender of its bounded mpsc.
#[derive(Clone)]
enum Outbound {
    EventHandler(mpsc::Sender<EventHandlerClientToRuntimeMessage>),
    Filter(mpsc::Sender<FilterClientToRuntimeMessage>),
    PartitionedFilter(mpsc::Sender<PartitionedFilterClientToRuntimeMessage>),
    PublicFilter(mpsc::Sender<PublicFilterClientToRuntimeMessage>),
}

impl Outbound {
    /// Sends `message`; false when the call is gone.
    async fn send(&self, message: ClientMessage) -> bool {
        match (self, message) {
            (Outbound::EventHandler(tx), ClientMessage::EventHandler(m)) => {
                tx.send(m).await.is_ok()
            }
            (Outbound::Filter(tx), ClientMessage::Filter(m)) => tx.send(m).await.is_ok(),
            (Outbound::PartitionedFilter(tx), ClientMessage::PartitionedFilter(m)) => {
                tx.send(m).await.is_ok()
            }
            (Outbound::PublicFilter(tx), ClientMessage::PublicFilter(m)) => {
                tx.send(m).await.is_ok()
            }
            (_, m) => panic!("{m:?} does not belong on this stream"),
        }
    }
}

/// What the reader task shares with the head.
struct Shared {
    /// The outbound sender; None once the head half-closed its stream.
    outbound: Mutex<Option<Outbound>>,
    auto_pong: AtomicBool,
    pings: AtomicUsize,
}

impl Shared {
    fn outbound(&self) -> Option<Outbound> {
        self.outbound.lock().unwrap().clone()
    }
}

/// A head connected over one reverse-call stream.
pub struct Head {
    pub kind: Kind,
    shared: Arc<Shared>,
    inbox: mpsc::UnboundedReceiver<Incoming>,
    /// Messages taken from the inbox while looking for something else.
    pending: VecDeque<Incoming>,
    reader: JoinHandle<()>,
    ended: bool,
}

impl Drop for Head {
    fn drop(&mut self) {
        self.reader.abort();
    }
}

impl Head {
    /// Opens the stream `first` belongs to on `channel`, with `first` as its first message.
    /// Pongs are sent automatically when `auto_pong`.
    pub fn open(channel: Channel, first: ClientMessage, auto_pong: bool) -> Head {
        let kind = first.kind();
        let (inbox_tx, inbox) = mpsc::unbounded_channel();
        macro_rules! stream {
            ($variant:ident) => {{
                let (tx, rx) = mpsc::channel(64);
                let ClientMessage::$variant(m) = first else {
                    unreachable!()
                };
                tx.try_send(m).unwrap();
                (Outbound::$variant(tx), ReceiverStream::new(rx))
            }};
        }
        let shared;
        let reader = match kind {
            Kind::EventHandler => {
                let (outbound, rx) = stream!(EventHandler);
                shared = shared_state(outbound, auto_pong);
                let shared = Arc::clone(&shared);
                tokio::spawn(async move {
                    let call = EventHandlersClient::new(channel).connect(rx).await;
                    read(
                        call,
                        &shared,
                        &inbox_tx,
                        Kind::EventHandler,
                        handler_incoming,
                    )
                    .await;
                })
            }
            Kind::Filter => {
                let (outbound, rx) = stream!(Filter);
                shared = shared_state(outbound, auto_pong);
                let shared = Arc::clone(&shared);
                tokio::spawn(async move {
                    let call = FiltersClient::new(channel).connect(rx).await;
                    read(call, &shared, &inbox_tx, Kind::Filter, filter_incoming).await;
                })
            }
            Kind::PartitionedFilter => {
                let (outbound, rx) = stream!(PartitionedFilter);
                shared = shared_state(outbound, auto_pong);
                let shared = Arc::clone(&shared);
                tokio::spawn(async move {
                    let call = FiltersClient::new(channel).connect_partitioned(rx).await;
                    let kind = Kind::PartitionedFilter;
                    read(call, &shared, &inbox_tx, kind, filter_incoming).await;
                })
            }
            Kind::PublicFilter => {
                let (outbound, rx) = stream!(PublicFilter);
                shared = shared_state(outbound, auto_pong);
                let shared = Arc::clone(&shared);
                tokio::spawn(async move {
                    let call = FiltersClient::new(channel).connect_public(rx).await;
                    read(
                        call,
                        &shared,
                        &inbox_tx,
                        Kind::PublicFilter,
                        filter_incoming,
                    )
                    .await;
                })
            }
        };
        Head {
            kind,
            shared,
            inbox,
            pending: VecDeque::new(),
            reader,
            ended: false,
        }
    }

    /// Opens a stream with `registration` and waits for the registration response:
    /// the failure if refused, the status if the stream ended without a response.
    pub async fn register(
        channel: Channel,
        registration: ClientMessage,
    ) -> (Head, Result<Option<Failure>, Status>) {
        let mut head = Head::open(channel, registration, true);
        let response = head.registration().await;
        (head, response)
    }

    /// Like [`Head::connect`], but while the server still holds a previous connection of the
    /// same processor (a dropped head it has not noticed yet), tries again for up to 10 s.
    pub async fn reconnect(channel: Channel, registration: ClientMessage) -> Head {
        let deadline = tokio::time::Instant::now() + MUST;
        loop {
            let (head, response) = Head::register(channel.clone(), registration.clone()).await;
            match response {
                Ok(None) => return head,
                Ok(Some(_)) if tokio::time::Instant::now() < deadline => {
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                other => panic!("the registration was not accepted in {MUST:?}: {other:?}"),
            }
        }
    }

    /// Opens a stream with `registration` and asserts the server accepted it.
    pub async fn connect(channel: Channel, registration: ClientMessage) -> Head {
        let (head, response) = Head::register(channel, registration).await;
        match response {
            Ok(None) => head,
            Ok(Some(failure)) => panic!("the registration was refused: {failure:?}"),
            Err(status) => panic!("the stream ended without a registration response: {status:?}"),
        }
    }

    /// Waits (10 s) for the registration response.
    pub async fn registration(&mut self) -> Result<Option<Failure>, Status> {
        match self.next(MUST).await {
            Some(Incoming::Registration(failure)) => Ok(failure),
            Some(Incoming::End(Err(status))) => Err(status),
            Some(Incoming::End(Ok(()))) => Err(Status::unknown(
                "the stream ended (OK) without a registration response",
            )),
            Some(other) => panic!("expected the registration response first, got {other:?}"),
            None => panic!("no registration response within {MUST:?}"),
        }
    }

    /// The next message other than a ping within `timeout`.
    pub async fn next(&mut self, timeout: Duration) -> Option<Incoming> {
        if let Some(m) = self.pending.pop_front() {
            return Some(m);
        }
        if self.ended {
            return None;
        }
        match tokio::time::timeout(timeout, self.inbox.recv()).await {
            Ok(Some(m)) => {
                if matches!(m, Incoming::End(_)) {
                    self.ended = true;
                }
                Some(m)
            }
            Ok(None) => {
                self.ended = true;
                Some(Incoming::End(Err(Status::unknown("the reader task ended"))))
            }
            Err(_) => None,
        }
    }

    /// The next request within `timeout`; None if none came. Panics when something else
    /// arrives instead (the end of the stream included), naming it.
    pub async fn next_request(&mut self, timeout: Duration) -> Option<Request> {
        match self.next(timeout).await? {
            Incoming::Request(r) => Some(*r),
            other => panic!("expected a request, got {other:?}"),
        }
    }

    /// The next request; panics if none comes within 10 s.
    pub async fn request(&mut self) -> Request {
        match self.next_request(MUST).await {
            Some(r) => r,
            None => panic!("no request within {MUST:?}"),
        }
    }

    /// Asserts no request (nor anything else) comes within `timeout`.
    pub async fn no_request(&mut self, timeout: Duration) {
        if let Some(m) = self.next(timeout).await {
            panic!("expected nothing within {timeout:?}, got {m:?}");
        }
    }

    /// Waits up to `timeout` for the end of the stream; returns what came before it (pings
    /// aside) and the end's result, or None if it did not end in time.
    pub async fn ended(
        &mut self,
        timeout: Duration,
    ) -> Option<(Vec<Incoming>, Result<(), Status>)> {
        let deadline = tokio::time::Instant::now() + timeout;
        let mut seen = Vec::new();
        loop {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            match self.next(left).await {
                Some(Incoming::End(result)) => return Some((seen, result)),
                Some(m) => seen.push(m),
                None => {
                    self.pending.extend(seen);
                    return None;
                }
            }
        }
    }

    /// Sends any message on the stream; false when the call is gone.
    pub async fn send(&self, message: ClientMessage) -> bool {
        match self.shared.outbound() {
            Some(outbound) => outbound.send(message).await,
            None => false,
        }
    }

    /// Answers `request` (echoing its call id).
    pub async fn answer(&self, request: &Request, answer: Answer) -> bool {
        self.send(self.answer_message(request.call_id, request, answer))
            .await
    }

    /// Answers `request` successfully (filters: included, partition = event source).
    pub async fn succeed(&self, request: &Request) -> bool {
        self.answer(request, Answer::Success).await
    }

    /// A filter verdict for `request`.
    pub async fn filter(&self, request: &Request, included: bool, partition: &str) -> bool {
        let answer = Answer::Filter {
            included,
            partition: partition.to_owned(),
        };
        self.answer(request, answer).await
    }

    /// The message answering `request` with `answer`, with `call_id` as its call id.
    pub fn answer_message(
        &self,
        call_id: Option<Uuid>,
        request: &Request,
        answer: Answer,
    ) -> ClientMessage {
        let call_context = Some(ReverseCallResponseContext {
            call_id: call_id.map(id),
        });
        let (included, partition, failure) = match answer {
            Answer::Success => (true, request.event.event_source_id.clone(), None),
            Answer::Filter {
                included,
                partition,
            } => (included, partition, None),
            Answer::Failure {
                reason,
                retry,
                retry_timeout,
            } => (
                false,
                String::new(),
                Some(ProcessorFailure {
                    reason,
                    retry,
                    retry_timeout: retry_timeout.map(duration),
                }),
            ),
        };
        match self.kind {
            Kind::EventHandler => ClientMessage::EventHandler(EventHandlerClientToRuntimeMessage {
                message: Some(HandlerOut::HandleResult(EventHandlerResponse {
                    call_context,
                    failure,
                })),
            }),
            Kind::Filter => ClientMessage::Filter(FilterClientToRuntimeMessage {
                message: Some(FilterOut::FilterResult(FilterResponse {
                    call_context,
                    is_included: included,
                    failure,
                })),
            }),
            Kind::PartitionedFilter => {
                ClientMessage::PartitionedFilter(PartitionedFilterClientToRuntimeMessage {
                    message: Some(PartitionedOut::FilterResult(PartitionedFilterResponse {
                        call_context,
                        is_included: included,
                        partition_id: partition,
                        failure,
                    })),
                })
            }
            Kind::PublicFilter => ClientMessage::PublicFilter(PublicFilterClientToRuntimeMessage {
                message: Some(PublicOut::FilterResult(PartitionedFilterResponse {
                    call_context,
                    is_included: included,
                    partition_id: partition,
                    failure,
                })),
            }),
        }
    }

    /// Sends a pong.
    pub async fn pong(&self) -> bool {
        self.send(ClientMessage::pong(self.kind)).await
    }

    /// Sends a message with no oneof set.
    pub async fn send_empty(&self) -> bool {
        self.send(ClientMessage::empty(self.kind)).await
    }

    /// Sends `initiateDisconnect` (event handlers only).
    pub async fn initiate_disconnect(&self, grace_period: Option<Duration>) -> bool {
        assert_eq!(self.kind, Kind::EventHandler);
        self.send(ClientMessage::EventHandler(
            EventHandlerClientToRuntimeMessage {
                message: Some(HandlerOut::InitiateDisconnect(InitiateDisconnect {
                    grace_period: grace_period.map(duration),
                })),
            },
        ))
        .await
    }

    /// Whether pings are answered from now on.
    pub fn set_auto_pong(&self, on: bool) {
        self.shared.auto_pong.store(on, Ordering::SeqCst);
    }

    /// How many pings have arrived.
    pub fn pings(&self) -> usize {
        self.shared.pings.load(Ordering::SeqCst)
    }

    /// Ends the head's half of the stream (a clean end of the client stream); reading goes on.
    pub fn half_close(&self) {
        self.shared.outbound.lock().unwrap().take();
    }

    /// Ends the head's half of the stream and waits (up to `MUST`) for the runtime to end its
    /// half, which it does once it has taken everything the head sent before and its
    /// processors on the stream have stopped, their positions written: how a test leaves a
    /// stream whose last answers must be stored, without guessing how long that takes.
    pub async fn close(mut self) {
        self.half_close();
        assert!(
            self.ended(MUST).await.is_some(),
            "the runtime did not end the stream within {MUST:?} of the head's end"
        );
    }

    /// Drops the call and its connection at once, as a head process that dies would.
    pub fn abort(self) {
        self.reader.abort();
        self.shared.outbound.lock().unwrap().take();
    }

    /// Takes every request already queued or arriving within `timeout` of the previous one.
    pub async fn drain_requests(&mut self, timeout: Duration) -> Vec<Request> {
        let mut out = Vec::new();
        while let Some(r) = self.next_request(timeout).await {
            out.push(r);
        }
        out
    }
}

fn shared_state(outbound: Outbound, auto_pong: bool) -> Arc<Shared> {
    Arc::new(Shared {
        outbound: Mutex::new(Some(outbound)),
        auto_pong: AtomicBool::new(auto_pong),
        pings: AtomicUsize::new(0),
    })
}

/// A message of the server, as the reader sorts it.
enum Parsed {
    Ping,
    Incoming(Incoming),
}

fn handler_incoming(m: EventHandlerRuntimeToClientMessage) -> Parsed {
    Parsed::Incoming(match m.message {
        None => Incoming::Empty,
        Some(HandlerIn::Ping(_)) => return Parsed::Ping,
        Some(HandlerIn::RegistrationResponse(r)) => Incoming::Registration(r.failure),
        Some(HandlerIn::Disconnected(d)) => Incoming::Disconnected(d.failure),
        Some(HandlerIn::HandleRequest(r)) => {
            let context = r.call_context.unwrap_or_default();
            let event = r.event.unwrap_or_default();
            Incoming::Request(Box::new(Request {
                call_id: context.call_id.as_ref().map(uuid),
                execution_context: context.execution_context,
                event: event.event.unwrap_or_default(),
                partition_id: event.partition_id,
                scope_id: event.scope_id.as_ref().map(uuid),
                partitioned: event.partitioned,
                stream_position: event.stream_position,
                retry: r.retry_processing_state,
            }))
        }
    })
}

fn filter_incoming(m: FilterRuntimeToClientMessage) -> Parsed {
    Parsed::Incoming(match m.message {
        None => Incoming::Empty,
        Some(FilterIn::Ping(_)) => return Parsed::Ping,
        Some(FilterIn::RegistrationResponse(r)) => Incoming::Registration(r.failure),
        Some(FilterIn::FilterRequest(r)) => {
            let context = r.call_context.unwrap_or_default();
            Incoming::Request(Box::new(Request {
                call_id: context.call_id.as_ref().map(uuid),
                execution_context: context.execution_context,
                event: r.event.unwrap_or_default(),
                partition_id: String::new(),
                scope_id: r.scope_id.as_ref().map(uuid),
                partitioned: false,
                stream_position: 0,
                retry: r.retry_processing_state,
            }))
        }
    })
}

/// The reader task: answers pings, queues the rest, and queues the end of the stream.
async fn read<M>(
    call: Result<tonic::Response<Streaming<M>>, Status>,
    shared: &Shared,
    inbox: &mpsc::UnboundedSender<Incoming>,
    kind: Kind,
    parse: fn(M) -> Parsed,
) {
    let mut stream = match call {
        Ok(response) => response.into_inner(),
        Err(status) => {
            let _ = inbox.send(Incoming::End(Err(status)));
            return;
        }
    };
    loop {
        match stream.message().await {
            Ok(Some(m)) => match parse(m) {
                Parsed::Ping => {
                    shared.pings.fetch_add(1, Ordering::SeqCst);
                    if shared.auto_pong.load(Ordering::SeqCst) {
                        if let Some(outbound) = shared.outbound() {
                            let _ = outbound.send(ClientMessage::pong(kind)).await;
                        }
                    }
                }
                Parsed::Incoming(m) => {
                    let _ = inbox.send(m);
                }
            },
            Ok(None) => {
                let _ = inbox.send(Incoming::End(Ok(())));
                return;
            }
            Err(status) => {
                let _ = inbox.send(Incoming::End(Err(status)));
                return;
            }
        }
    }
}

/// A head answering every request in a task of its own (as a live head would), recording
/// what it answered, until stopped or the stream ends.
pub struct Answering {
    stop: Arc<AtomicBool>,
    answered: Arc<Mutex<Vec<Request>>>,
    task: JoinHandle<Head>,
}

impl Answering {
    /// Starts answering each request of `head` with `answer`.
    pub fn start(
        mut head: Head,
        answer: impl Fn(&Request) -> Answer + Send + 'static,
    ) -> Answering {
        let stop = Arc::new(AtomicBool::new(false));
        let answered = Arc::new(Mutex::new(Vec::new()));
        let task = {
            let stop = Arc::clone(&stop);
            let answered = Arc::clone(&answered);
            tokio::spawn(async move {
                while !stop.load(Ordering::SeqCst) {
                    match head.next(Duration::from_millis(50)).await {
                        Some(Incoming::Request(r)) => {
                            if !head.answer(&r, answer(&r)).await {
                                break;
                            }
                            answered.lock().unwrap().push(*r);
                        }
                        Some(Incoming::End(_)) => break,
                        Some(_) | None => {}
                    }
                }
                head
            })
        };
        Answering {
            stop,
            answered,
            task,
        }
    }

    /// What was answered so far.
    pub fn answered(&self) -> Vec<Request> {
        self.answered.lock().unwrap().clone()
    }

    /// Waits (10 s) until at least `n` requests were answered.
    pub async fn wait_answered(&self, n: usize) {
        let deadline = tokio::time::Instant::now() + MUST;
        while self.answered.lock().unwrap().len() < n {
            assert!(
                tokio::time::Instant::now() < deadline,
                "{} of {n} answered in {MUST:?}",
                self.answered.lock().unwrap().len()
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// Stops answering; returns the head and what it answered.
    pub async fn stop(self) -> (Head, Vec<Request>) {
        self.stop.store(true, Ordering::SeqCst);
        let head = self.task.await.unwrap();
        let answered = self.answered.lock().unwrap().clone();
        (head, answered)
    }
}
