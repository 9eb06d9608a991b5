//! The event horizon against THE ORIGINAL (Dolittle Runtime 9 with Contracts 7) on the wire:
//! the test plays the other runtime itself, with our generated protos and tonic, against one
//! real `annals` process, and checks every field the original sends or expects
//! (/work/wt/horizon-facts.md).
//!
//! Scenarios:
//! 1. An original CONSUMER runtime (the test, a gRPC client of `Consumer/Subscribe` on the
//!    public port) against the annals PRODUCER, whose public filter puts events of Guid and text
//!    event sources into a Guid partition, others into a text partition and a third one:
//!    - `an_original_consumer_gets_its_partition_once_in_order_with_the_original_fields`: the
//!      subscription request exactly as the original sends it, acknowledged at once as the
//!      original does (before storing); the configured consent comes back, and every public
//!      event of the partition (backlog and live) arrives once, in stream order, with the
//!      original's `EventHorizonCommittedEvent` and call context;
//!    - `original_consumers_from_a_middle_position_get_exactly_the_rest`: from a position of
//!      the partition, and from a position of another partition (a gap);
//!    - `a_slow_original_consumer_never_has_more_than_the_window_outstanding`: with
//!      `annals:eventHorizon:windowEvents` 5 and a consumer that acknowledges one event at a
//!      time after a delay, never more than 5 requests are unanswered (and 5 are reached); an
//!      acknowledgement carrying a failure ends the stream;
//!    - `a_second_identical_subscription_is_refused_while_the_first_is_open`: 8ba0c1a1 with the
//!      original's reason; other partitions and tenants are other subscriptions; closing frees
//!      the identity;
//!    - `a_subscription_without_an_execution_context_is_refused_with_missing_arguments`: 3f88dfb6;
//!    - `the_producer_pings_at_the_consumer_interval_and_cuts_off_a_silent_consumer`: pings at
//!      the interval the consumer asked for (1 s here), and the end of a consumer silent for 3
//!      intervals;
//!    - `the_legacy_event_source_is_set_for_what_dotnet_parses_as_a_guid`: the legacy event
//!      source field exactly when .NET's `Guid.TryParse` takes the event source.
//! 2. An original PRODUCER runtime (the test, a tonic server on a free port serving
//!    `Consumer/Subscribe` stop-and-wait: one event in flight, the next only after its
//!    acknowledgement; pinging at the consumer's interval) against the annals CONSUMER, whose
//!    `microservices:<producer>` points at it, driven by a head calling
//!    `Subscriptions/Subscribe`:
//!    - `the_annals_consumer_subscribes_as_the_original_and_stores_every_event_once`: the
//!      subscription request is the original's, the consent reaches the head, pings are
//!      answered, every event (a Guid event source in both fields, a text one, one with only the
//!      legacy Guid as a Contracts 5 producer sends it) lands in the scoped log once with its
//!      external origin, each request gets an empty response; after the stream is dropped
//!      (once after an acknowledgement, once with an event in flight) annals comes back by
//!      itself after its 1 s backoff asking from the next position;
//!    - `the_annals_consumer_acknowledges_only_what_is_durable`: SIGKILLed right after an
//!      acknowledgement, the scoped log holds every acknowledged event; restarted, it resumes
//!      from after the last one (a text partition: no legacy partition field);
//!    - `refusals_of_the_producer_reach_the_head_verbatim`: the producer's failure id and reason
//!      are the head's answer; annals keeps trying (1 s, then 2 s), and a head asking
//!      meanwhile gets the next attempt's outcome.
//!
//! Each test has its own `annals` process. Waits for what must happen have a 10 s deadline;
//! nothing is asserted from a sleep but the absence of more messages.
#![allow(clippy::unwrap_used, reason = "tests")]

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use annals_tests::head::{duration, Answer, Answering, Filter, Head, Kind, MUST, QUIET};
use annals_tests::proto::dolittle;
use annals_tests::{
    commit_request, execution_context_in, failures, id, log_tail, read_scoped_log, send_commit,
    uuid, Server,
};
use dolittle::artifacts::Artifact;
use dolittle::execution::ExecutionContext;
use dolittle::protobuf::Failure;
use dolittle::runtime::eventhorizon::consumer_client::ConsumerClient;
use dolittle::runtime::eventhorizon::consumer_server::{Consumer, ConsumerServer};
use dolittle::runtime::eventhorizon::event_horizon_consumer_to_producer_message::Message as ToProducer;
use dolittle::runtime::eventhorizon::event_horizon_producer_to_consumer_message::Message as ToConsumer;
use dolittle::runtime::eventhorizon::subscriptions_client::SubscriptionsClient;
use dolittle::runtime::eventhorizon::{
    ConsumerRequest, ConsumerResponse, ConsumerSubscriptionRequest, EventHorizonCommittedEvent,
    EventHorizonConsumerToProducerMessage, EventHorizonEvent,
    EventHorizonProducerToConsumerMessage, Subscription, SubscriptionResponse,
};
use dolittle::runtime::events::CommittedEvent;
use dolittle::services::{
    CallRequestContext, Ping, Pong, ReverseCallArgumentsContext, ReverseCallRequestContext,
    ReverseCallResponseContext,
};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tokio_stream::wrappers::{ReceiverStream, TcpListenerStream};
use tonic::{Status, Streaming};
use uuid::Uuid;

/// The producing microservice.
const PRODUCER: Uuid = Uuid::from_u128(0x5000_0000_0000_4000_8000_0000_0000_00a1);
/// The consuming microservice.
const CONSUMER: Uuid = Uuid::from_u128(0xc000_0000_0000_4000_8000_0000_0000_00a1);
const PRODUCER_TENANT: Uuid = Uuid::from_u128(0x1111_0000_0000_4000_8000_0000_0000_00a1);
const CONSUMER_TENANT: Uuid = Uuid::from_u128(0x2222_0000_0000_4000_8000_0000_0000_00a1);
const CONSUMER_TENANT_2: Uuid = Uuid::from_u128(0x2222_0000_0000_4000_8000_0000_0000_00a2);
/// The public stream (the producer's public filter).
const STREAM: Uuid = Uuid::from_u128(0x5e5e_0000_0000_4000_8000_0000_0000_00a1);
/// The consumer's scope the received events go to.
const SCOPE: Uuid = Uuid::from_u128(0x5c0e_0000_0000_4000_8000_0000_0000_00a1);
/// A partition that is a Guid: the original sends it in the legacy field too.
const PARTITION: &str = "3c1f5a2e-8d4b-4f6a-9b7c-2e1d0f9a8b7c";
/// A partition that is not a Guid.
const TEXT_PARTITION: &str = "orders";
/// A partition nobody subscribes to.
const OTHER_PARTITION: &str = "elsewhere";
/// CONSUMER_TENANT's consent to PARTITION.
const CONSENT: Uuid = Uuid::from_u128(0xc0_0000_0000_4000_8000_0000_0000_00a1);
/// CONSUMER_TENANT_2's consent to PARTITION.
const CONSENT_2: Uuid = Uuid::from_u128(0xc0_0000_0000_4000_8000_0000_0000_00a2);
/// CONSUMER_TENANT's consent to TEXT_PARTITION.
const CONSENT_TEXT: Uuid = Uuid::from_u128(0xc0_0000_0000_4000_8000_0000_0000_00a3);
const TYPE_A: Uuid = Uuid::from_u128(0xa1);
const TYPE_B: Uuid = Uuid::from_u128(0xb1);
/// An event source that is a Guid in upper case (.NET and annals both parse it).
const GUID_SOURCE_UPPER: &str = "A1B2C3D4-E5F6-4789-8ABC-DEF012345678";
/// An event source that is a Guid.
const GUID_SOURCE: &str = "0f1e2d3c-4b5a-4697-8877-665544332211";
/// The ping interval the original consumer asks for.
const PING_INTERVAL: Duration = Duration::from_secs(10);
/// The producer's window in the slow-consumer test.
const WINDOW: usize = 5;
/// MissingSubscriptionArguments.
const MISSING_ARGUMENTS: Uuid = Uuid::from_u128(0x3f88_dfb6_93d6_40d3_9d28_8be1_49f9_e02d);
/// EventHorizonAlreadyRegistered.
const ALREADY_REGISTERED: Uuid = Uuid::from_u128(0x8ba0_c1a1_3a42_444b_9206_7090_3392_de17);

// ---------------------------------------------------------------------------------------------
// Scenario 1: the test is the original consumer, annals the producer.
// ---------------------------------------------------------------------------------------------

/// The producer's `.dolittle/runtime.yml`: PRODUCER_TENANT consents to CONSUMER reading
/// STREAM's PARTITION (CONSUMER_TENANT and CONSUMER_TENANT_2) and TEXT_PARTITION
/// (CONSUMER_TENANT).
fn producer_config() -> String {
    let consent = |tenant: Uuid, partition: &str, consent: Uuid| {
        format!(
            "          - consumerTenant: {tenant}\n            stream: {STREAM}\n            \
             partition: \"{partition}\"\n            consent: {consent}\n"
        )
    };
    format!(
        "platform:\n  microserviceID: {PRODUCER}\ntenants:\n  {PRODUCER_TENANT}:\n    \
         eventHorizons:\n      {CONSUMER}:\n        consents:\n{}{}{}",
        consent(CONSUMER_TENANT, PARTITION, CONSENT),
        consent(CONSUMER_TENANT_2, PARTITION, CONSENT_2),
        consent(CONSUMER_TENANT, TEXT_PARTITION, CONSENT_TEXT),
    )
}

/// An annals producer; `window` sets `annals:eventHorizon:windowEvents`.
async fn annals_producer(window: Option<usize>) -> Server {
    let set = window.map(|w| format!("annals:eventHorizon:windowEvents={w}"));
    let mut args = Vec::new();
    if let Some(set) = &set {
        args.extend(["--set", set.as_str()]);
    }
    Server::start_with(&[(".dolittle/runtime.yml", &producer_config())], &args, &[]).await
}

/// The partition the producer's public filter puts an event of `event_source` in.
fn partition_of(event_source: &str) -> &'static str {
    if event_source.starts_with("order") {
        TEXT_PARTITION
    } else if event_source.starts_with("elsewhere") {
        OTHER_PARTITION
    } else {
        PARTITION
    }
}

/// The producer's public filter on STREAM: includes every event it is given (public ones
/// only), in the partition of its event source.
async fn public_filter(producer: &Server) -> Answering {
    let mut filter = Filter::new(Kind::PublicFilter, STREAM);
    filter.execution_context = execution_context_in(PRODUCER, PRODUCER_TENANT);
    let head = Head::connect(producer.private().await, filter.message()).await;
    Answering::start(head, |r| Answer::Filter {
        included: true,
        partition: partition_of(r.event_source()).to_owned(),
    })
}

/// Commits events number `first..first + n` for PRODUCER_TENANT in one commit (whose execution
/// context carries a claim): event sources cycle through two Guids, a text source of
/// PARTITION, one of TEXT_PARTITION and one of OTHER_PARTITION; every third event is private.
async fn commit_pattern(producer: &Server, first: usize, n: usize) -> Vec<CommittedEvent> {
    const SOURCES: [&str; 5] = [
        GUID_SOURCE_UPPER,
        "plain-source",
        "order-1",
        GUID_SOURCE,
        "elsewhere-1",
    ];
    let events: Vec<(Uuid, String, String)> = (first..first + n)
        .map(|i| {
            (
                if i % 2 == 0 { TYPE_A } else { TYPE_B },
                SOURCES[i % SOURCES.len()].to_owned(),
                format!(r#"{{"i":{i}}}"#),
            )
        })
        .collect();
    let borrowed: Vec<(Uuid, &str, &str)> = events
        .iter()
        .map(|(t, es, c)| (*t, es.as_str(), c.as_str()))
        .collect();
    let mut request = commit_request(PRODUCER_TENANT, &borrowed);
    for (i, event) in (first..).zip(request.events.iter_mut()) {
        event.public = i % 3 != 1;
    }
    send_commit(&producer.private().await, request).await
}

/// A public event with its position in the public stream.
#[derive(Debug, Clone)]
struct Public {
    position: u64,
    event: CommittedEvent,
}

/// The public events of `committed` (every commit so far, in order) with their public stream
/// positions: the filter includes every public event, so the n-th is at position n.
fn public_positions(committed: &[CommittedEvent]) -> Vec<Public> {
    committed
        .iter()
        .filter(|e| e.public)
        .zip(0..)
        .map(|(event, position)| Public {
            position,
            event: event.clone(),
        })
        .collect()
}

/// The events of `all` in `partition`.
fn in_partition(all: &[Public], partition: &str) -> Vec<Public> {
    all.iter()
        .filter(|p| partition_of(&p.event.event_source_id) == partition)
        .cloned()
        .collect()
}

/// Waits until the public filter handled every public event of `all` and checks it saw them
/// in log order (which is what makes `public_positions` the stream's positions).
async fn filtered(filter: &Answering, all: &[Public]) {
    filter.wait_answered(all.len()).await;
    let seen: Vec<u64> = filter
        .answered()
        .iter()
        .map(annals_tests::head::Request::seq)
        .collect();
    let public: Vec<u64> = all
        .iter()
        .map(|p| p.event.event_log_sequence_number)
        .collect();
    assert_eq!(
        seen, public,
        "the public filter saw the public events in order"
    );
}

/// The execution context the original consumer presents: its head's (the consumer
/// microservice and tenant), here in another environment than the producer's, which the
/// original producer does not compare.
fn consumer_context(tenant: Uuid) -> ExecutionContext {
    let mut context = execution_context_in(CONSUMER, tenant);
    context.environment = "Production".into();
    context
}

/// The subscription request exactly as the original consumer sends it: its execution context,
/// a 10 s ping interval and no head id, the producer tenant, the stream, the partition as text
/// and, when it is a Guid, as the legacy Uuid too, and the position to start from.
#[expect(
    deprecated,
    reason = "the original sends the partition in the legacy field too when it is a Guid"
)]
fn original_subscription_request(
    consumer_tenant: Uuid,
    partition: &str,
    position: u64,
) -> ConsumerSubscriptionRequest {
    ConsumerSubscriptionRequest {
        call_context: Some(ReverseCallArgumentsContext {
            execution_context: Some(consumer_context(consumer_tenant)),
            head_id: None,
            ping_interval: Some(duration(PING_INTERVAL)),
        }),
        tenant_id: Some(id(PRODUCER_TENANT)),
        stream_id: Some(id(STREAM)),
        partition_id_legacy: Uuid::parse_str(partition).ok().map(id),
        stream_position: position,
        partition_id: Some(partition.to_owned()),
    }
}

/// What the annals producer sent, pings aside (the reader answers them).
#[derive(Debug)]
enum FromProducer {
    Response(SubscriptionResponse),
    Request(Box<ConsumerRequest>),
    /// The stream ended: OK, or with this status.
    End(Result<(), Status>),
}

/// The original consumer's side of one `Consumer/Subscribe` stream: a reader task answers
/// each ping with a pong at once and queues everything else for the test.
struct OriginalConsumer {
    /// Dropping it closes the request stream (as the original does when its subscription ends).
    outbound: Option<mpsc::Sender<EventHorizonConsumerToProducerMessage>>,
    inbox: mpsc::UnboundedReceiver<FromProducer>,
    reader: JoinHandle<()>,
    /// When each ping came.
    pings: Arc<Mutex<Vec<Instant>>>,
    /// Whether pings are answered (the original always answers them).
    answer_pings: Arc<AtomicBool>,
}

impl Drop for OriginalConsumer {
    fn drop(&mut self) {
        self.reader.abort();
    }
}

impl OriginalConsumer {
    /// Opens the stream on the producer's public port with `request` as its first message;
    /// returns the producer's answer to it (or the status the stream ended with).
    async fn open(
        producer: &Server,
        request: ConsumerSubscriptionRequest,
    ) -> (OriginalConsumer, Result<SubscriptionResponse, Status>) {
        let (outbound, outbound_rx) = mpsc::channel(64);
        outbound
            .send(EventHorizonConsumerToProducerMessage {
                message: Some(ToProducer::SubscriptionRequest(request)),
            })
            .await
            .unwrap();
        let (inbox_tx, inbox) = mpsc::unbounded_channel();
        let call = ConsumerClient::new(producer.public().await)
            .subscribe(ReceiverStream::new(outbound_rx))
            .await;
        let pongs = outbound.downgrade();
        let pings = Arc::new(Mutex::new(Vec::new()));
        let answer_pings = Arc::new(AtomicBool::new(true));
        let reader = {
            let pings = Arc::clone(&pings);
            let answer_pings = Arc::clone(&answer_pings);
            tokio::spawn(async move {
                let mut incoming = match call {
                    Ok(response) => response.into_inner(),
                    Err(status) => {
                        let _ = inbox_tx.send(FromProducer::End(Err(status)));
                        return;
                    }
                };
                loop {
                    let item = match incoming.message().await {
                        Ok(Some(message)) => match message.message {
                            Some(ToConsumer::Ping(Ping {})) => {
                                pings.lock().unwrap().push(Instant::now());
                                let answer = answer_pings.load(Ordering::SeqCst);
                                if let Some(pongs) = pongs.upgrade().filter(|_| answer) {
                                    let _ = pongs
                                        .send(EventHorizonConsumerToProducerMessage {
                                            message: Some(ToProducer::Pong(Pong {})),
                                        })
                                        .await;
                                }
                                continue;
                            }
                            Some(ToConsumer::SubscriptionResponse(r)) => FromProducer::Response(r),
                            Some(ToConsumer::Request(r)) => FromProducer::Request(Box::new(r)),
                            None => FromProducer::End(Err(Status::internal(
                                "the producer sent a message with no oneof set",
                            ))),
                        },
                        Ok(None) => FromProducer::End(Ok(())),
                        Err(status) => FromProducer::End(Err(status)),
                    };
                    let end = matches!(item, FromProducer::End(_));
                    if inbox_tx.send(item).is_err() || end {
                        return;
                    }
                }
            })
        };
        let mut consumer = OriginalConsumer {
            outbound: Some(outbound),
            inbox,
            reader,
            pings,
            answer_pings,
        };
        let answer = match consumer.next(MUST).await {
            Some(FromProducer::Response(response)) => Ok(response),
            Some(FromProducer::End(Err(status))) => Err(status),
            Some(FromProducer::End(Ok(()))) => Err(Status::unknown(
                "the stream ended (OK) without a subscription response",
            )),
            Some(other) => panic!("expected the subscription response first, got {other:?}"),
            None => panic!("no subscription response within {MUST:?}"),
        };
        (consumer, answer)
    }

    /// Opens the stream and asserts the producer accepted under `consent`.
    async fn accepted(
        producer: &Server,
        request: ConsumerSubscriptionRequest,
        consent: Uuid,
    ) -> OriginalConsumer {
        let (consumer, answer) = OriginalConsumer::open(producer, request).await;
        let answer = answer.unwrap_or_else(|status| {
            panic!(
                "the subscription failed: {status:?}\n{}",
                log_tail(&producer.log())
            )
        });
        assert_eq!(
            answer,
            SubscriptionResponse {
                failure: None,
                consent_id: Some(id(consent)),
            },
            "accepted under the configured consent"
        );
        consumer
    }

    /// The next message within `timeout`, pings aside.
    async fn next(&mut self, timeout: Duration) -> Option<FromProducer> {
        tokio::time::timeout(timeout, self.inbox.recv())
            .await
            .ok()
            .flatten()
    }

    /// The next request within 10 s; panics on anything else.
    async fn request(&mut self, producer: &Server) -> ConsumerRequest {
        match self.next(MUST).await {
            Some(FromProducer::Request(request)) => *request,
            other => panic!(
                "expected a request, got {other:?}; the producer's log ends:\n{}",
                log_tail(&producer.log())
            ),
        }
    }

    /// Answers `request`: an empty response with its call id, or one carrying `failure`.
    async fn respond(&self, request: &ConsumerRequest, failure: Option<Failure>) {
        let call_id = request
            .call_context
            .as_ref()
            .and_then(|c| c.call_id.clone());
        assert!(
            call_id.is_some(),
            "a request without a call id: {request:?}"
        );
        let response = EventHorizonConsumerToProducerMessage {
            message: Some(ToProducer::Response(ConsumerResponse {
                call_context: Some(ReverseCallResponseContext { call_id }),
                failure,
            })),
        };
        self.outbound
            .as_ref()
            .expect("the stream is open")
            .send(response)
            .await
            .unwrap();
    }

    /// Takes `n` requests, acknowledging each at once as the original does (it acknowledges
    /// before it stores).
    async fn receive_acknowledging(&mut self, producer: &Server, n: usize) -> Vec<ConsumerRequest> {
        let mut received = Vec::with_capacity(n);
        while received.len() < n {
            let request = self.request(producer).await;
            self.respond(&request, None).await;
            received.push(request);
        }
        received
    }

    /// Asserts nothing more comes within QUIET.
    async fn nothing_more(&mut self) {
        if let Some(more) = self.next(QUIET).await {
            panic!("expected nothing more, got {more:?}");
        }
    }

    /// Waits up to 10 s for the end of the stream; returns the requests that came before it
    /// and how it ended.
    async fn ended(&mut self) -> (Vec<ConsumerRequest>, Result<(), Status>) {
        let deadline = Instant::now() + MUST;
        let mut before = Vec::new();
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.next(left).await {
                Some(FromProducer::End(end)) => return (before, end),
                Some(FromProducer::Request(request)) => before.push(*request),
                Some(other) => panic!("expected the end of the stream, got {other:?}"),
                None => panic!("the stream did not end within {MUST:?}"),
            }
        }
    }

    /// Closes the request stream: the subscription is over for the producer.
    fn close(&mut self) {
        self.outbound = None;
    }
}

/// Positions of requests.
fn positions(requests: &[ConsumerRequest]) -> Vec<u64> {
    requests
        .iter()
        .map(|r| {
            r.event
                .as_ref()
                .map_or(u64::MAX, |e| e.stream_sequence_number)
        })
        .collect()
}

/// Asserts `request` is the original's request for the public event `sent`: the call context
/// holds a call id and the event's stored execution context as is (claims included); the event
/// carries the stream position and the committed event with the claims stripped from its
/// context, the event source as text and, only when it is a Guid, as the legacy Uuid, public,
/// and nothing of the external fields.
#[expect(
    deprecated,
    reason = "the original sets the legacy event source field when the event source is a Guid"
)]
fn assert_original_request(request: &ConsumerRequest, sent: &Public) {
    let stored = sent.event.execution_context.clone().unwrap();
    assert!(
        !stored.claims.is_empty(),
        "the committed events carry claims, so their stripping shows"
    );
    let call = request.call_context.as_ref().expect("callContext");
    assert!(call.call_id.is_some(), "a call id: {request:?}");
    assert_eq!(
        call.execution_context.as_ref(),
        Some(&stored),
        "the request's execution context is the stored event's, claims and all"
    );
    let horizon_event = request.event.as_ref().expect("event");
    assert_eq!(
        horizon_event.stream_sequence_number, sent.position,
        "the stream position of event {}",
        sent.event.event_log_sequence_number
    );
    let mut without_claims = stored;
    without_claims.claims.clear();
    let expected = EventHorizonCommittedEvent {
        event_log_sequence_number: sent.event.event_log_sequence_number,
        occurred: sent.event.occurred,
        event_source_id_legacy: Uuid::parse_str(&sent.event.event_source_id).ok().map(id),
        execution_context: Some(without_claims),
        event_type: sent.event.event_type.clone(),
        public: true,
        content: sent.event.content.clone(),
        external: false,
        external_event_log_sequence_number: 0,
        external_event_received: None,
        event_source_id: Some(sent.event.event_source_id.clone()),
    };
    assert_eq!(
        horizon_event.event.as_ref(),
        Some(&expected),
        "the EventHorizonCommittedEvent of stream position {}",
        sent.position
    );
}

/// The original consumer subscribes from 0 to the Guid partition: the configured consent comes
/// back, and the partition's public events committed before and after arrive once each, in
/// stream order, exactly as the original producer sends them.
#[tokio::test]
async fn an_original_consumer_gets_its_partition_once_in_order_with_the_original_fields() {
    let producer = annals_producer(None).await;
    let filter = public_filter(&producer).await;
    let mut committed = commit_pattern(&producer, 0, 30).await;
    filtered(&filter, &public_positions(&committed)).await;

    let mut consumer = OriginalConsumer::accepted(
        &producer,
        original_subscription_request(CONSUMER_TENANT, PARTITION, 0),
        CONSENT,
    )
    .await;
    committed.extend(commit_pattern(&producer, 30, 15).await);
    let all = public_positions(&committed);
    filtered(&filter, &all).await;
    let expected = in_partition(&all, PARTITION);
    assert!(
        expected
            .iter()
            .any(|p| Uuid::parse_str(&p.event.event_source_id).is_err())
            && expected
                .iter()
                .any(|p| p.event.event_source_id == GUID_SOURCE_UPPER),
        "the partition holds Guid and text event sources"
    );

    let received = consumer
        .receive_acknowledging(&producer, expected.len())
        .await;
    consumer.nothing_more().await;
    assert_eq!(
        positions(&received),
        expected.iter().map(|p| p.position).collect::<Vec<_>>(),
        "every event of the partition once, in stream order"
    );
    for (request, sent) in received.iter().zip(&expected) {
        assert_original_request(request, sent);
    }
    let call_ids: std::collections::HashSet<Vec<u8>> = received
        .iter()
        .map(|r| {
            r.call_context
                .as_ref()
                .unwrap()
                .call_id
                .clone()
                .unwrap()
                .value
        })
        .collect();
    assert_eq!(call_ids.len(), received.len(), "every call id is new");
}

/// Two original consumers (two consumer tenants) subscribe to the partition from the middle:
/// one from a position of the partition, one from a position that belongs to another
/// partition; each gets exactly the partition's events from there.
#[tokio::test]
async fn original_consumers_from_a_middle_position_get_exactly_the_rest() {
    let producer = annals_producer(None).await;
    let filter = public_filter(&producer).await;
    let committed = commit_pattern(&producer, 0, 45).await;
    let all = public_positions(&committed);
    filtered(&filter, &all).await;
    let expected = in_partition(&all, PARTITION);

    let at_event = expected[4].position;
    let in_gap = all
        .iter()
        .find(|p| {
            p.position > expected[2].position && partition_of(&p.event.event_source_id) != PARTITION
        })
        .unwrap()
        .position;
    let mut from_event = OriginalConsumer::accepted(
        &producer,
        original_subscription_request(CONSUMER_TENANT, PARTITION, at_event),
        CONSENT,
    )
    .await;
    let mut from_gap = OriginalConsumer::accepted(
        &producer,
        original_subscription_request(CONSUMER_TENANT_2, PARTITION, in_gap),
        CONSENT_2,
    )
    .await;

    for (consumer, from) in [(&mut from_event, at_event), (&mut from_gap, in_gap)] {
        let rest: Vec<&Public> = expected.iter().filter(|p| p.position >= from).collect();
        let received = consumer.receive_acknowledging(&producer, rest.len()).await;
        consumer.nothing_more().await;
        assert_eq!(
            positions(&received),
            rest.iter().map(|p| p.position).collect::<Vec<_>>(),
            "from position {from}"
        );
        for (request, sent) in received.iter().zip(rest) {
            assert_original_request(request, sent);
        }
    }
}

/// With a window of 5 events, an original consumer that acknowledges one event at a time after
/// a delay never has more than 5 requests unanswered, and the producer does fill its window;
/// the events still come once each, in order. A response carrying a failure then ends the
/// stream, with nothing sent beyond the window.
#[tokio::test]
async fn a_slow_original_consumer_never_has_more_than_the_window_outstanding() {
    let producer = annals_producer(Some(WINDOW)).await;
    let filter = public_filter(&producer).await;
    let committed = commit_pattern(&producer, 0, 45).await;
    let all = public_positions(&committed);
    filtered(&filter, &all).await;
    let expected = in_partition(&all, PARTITION);
    let fail_at = expected.len() - 3;
    assert!(fail_at > 2 * WINDOW, "enough events to slide the window");

    let mut consumer = OriginalConsumer::accepted(
        &producer,
        original_subscription_request(CONSUMER_TENANT, PARTITION, 0),
        CONSENT,
    )
    .await;
    let mut outstanding: VecDeque<ConsumerRequest> = VecDeque::new();
    let mut received: Vec<ConsumerRequest> = Vec::new();
    let mut most_outstanding = 0;
    let mut acknowledged = 0;
    loop {
        // Everything the producer sends until it is quiet for 100 ms: outstanding only grows
        // between two acknowledgements, so counting right before each one sees its maximum.
        while let Some(message) = consumer.next(Duration::from_millis(100)).await {
            match message {
                FromProducer::Request(request) => {
                    outstanding.push_back((*request).clone());
                    received.push(*request);
                }
                other => {
                    panic!("expected requests, got {other:?} after {acknowledged} acknowledgements")
                }
            }
        }
        most_outstanding = most_outstanding.max(outstanding.len());
        assert!(
            outstanding.len() <= WINDOW,
            "{} requests unanswered after {acknowledged} acknowledgements; the window is {WINDOW}",
            outstanding.len()
        );
        if acknowledged == fail_at {
            break;
        }
        let oldest = outstanding.pop_front().unwrap_or_else(|| {
            panic!(
                "no request outstanding after {acknowledged} acknowledgements; the producer's \
                 log ends:\n{}",
                log_tail(&producer.log())
            )
        });
        consumer.respond(&oldest, None).await;
        acknowledged += 1;
    }
    assert_eq!(most_outstanding, WINDOW, "the producer fills its window");
    assert_eq!(
        positions(&received),
        expected[..received.len()]
            .iter()
            .map(|p| p.position)
            .collect::<Vec<_>>(),
        "in stream order, once each"
    );
    for (request, sent) in received.iter().zip(&expected) {
        assert_original_request(request, sent);
    }

    let failed = outstanding.pop_front().unwrap();
    consumer
        .respond(
            &failed,
            Some(Failure {
                id: Some(id(Uuid::new_v4())),
                reason: "the consumer could not handle the event".into(),
            }),
        )
        .await;
    let (after, end) = consumer.ended().await;
    eprintln!(
        "after the failed acknowledgement: {} more requests, then the stream ended with {end:?}",
        after.len()
    );
    assert!(
        received.len() + after.len() <= acknowledged + WINDOW,
        "nothing beyond the window: {} received, {acknowledged} acknowledged",
        received.len() + after.len()
    );
}

/// While one subscription is open, an identical one (same consumer microservice and tenant,
/// producer tenant, stream and partition; another position, correlation and ping interval) is
/// refused with the original's id and reason; another partition or another consumer tenant is
/// another subscription; once the first closes, its identity is free again.
#[tokio::test]
async fn a_second_identical_subscription_is_refused_while_the_first_is_open() {
    let producer = annals_producer(None).await;
    let mut first = OriginalConsumer::accepted(
        &producer,
        original_subscription_request(CONSUMER_TENANT, PARTITION, 0),
        CONSENT,
    )
    .await;

    let mut identical = original_subscription_request(CONSUMER_TENANT, PARTITION, 7);
    identical.call_context.as_mut().unwrap().ping_interval = Some(duration(Duration::from_secs(5)));
    let (mut second, answer) = OriginalConsumer::open(&producer, identical.clone()).await;
    let reason = format!(
        "Event horizon already registered for microservice: {CONSUMER} and tenant: \
         {CONSUMER_TENANT} with producer tenant: {PRODUCER_TENANT} in partition: {PARTITION} \
         in stream: {STREAM}"
    );
    assert_eq!(
        answer.unwrap(),
        SubscriptionResponse {
            failure: Some(Failure {
                id: Some(id(ALREADY_REGISTERED)),
                reason,
            }),
            consent_id: None,
        }
    );
    let (after, _) = second.ended().await;
    assert!(after.is_empty(), "a refused subscription gets no events");

    let _other_partition = OriginalConsumer::accepted(
        &producer,
        original_subscription_request(CONSUMER_TENANT, TEXT_PARTITION, 0),
        CONSENT_TEXT,
    )
    .await;
    let _other_tenant = OriginalConsumer::accepted(
        &producer,
        original_subscription_request(CONSUMER_TENANT_2, PARTITION, 0),
        CONSENT_2,
    )
    .await;

    // The producer frees the identity when it sees the stream end, as the original does when
    // the event horizon ends: until then an identical subscription is still refused.
    first.close();
    let deadline = Instant::now() + MUST;
    loop {
        let (_again, answer) = OriginalConsumer::open(&producer, identical.clone()).await;
        let answer = answer.unwrap();
        if answer.failure.is_none() {
            assert_eq!(answer.consent_id, Some(id(CONSENT)));
            break;
        }
        let refused = answer
            .failure
            .as_ref()
            .and_then(|f| f.id.as_ref())
            .map(uuid);
        assert_eq!(refused, Some(ALREADY_REGISTERED), "{answer:?}");
        assert!(
            Instant::now() < deadline,
            "the identity was not freed within {MUST:?} of closing"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A subscription request whose call context has a ping interval but no execution context is
/// refused with MissingSubscriptionArguments and the original's reason, and the stream ends.
#[tokio::test]
async fn a_subscription_without_an_execution_context_is_refused_with_missing_arguments() {
    let producer = annals_producer(None).await;
    let mut request = original_subscription_request(CONSUMER_TENANT, PARTITION, 0);
    request.call_context.as_mut().unwrap().execution_context = None;
    let (mut consumer, answer) = OriginalConsumer::open(&producer, request).await;
    let answer = answer.unwrap();
    assert_eq!(answer.consent_id, None, "{answer:?}");
    let failure = answer.failure.expect("a failure");
    eprintln!("refused: {:?}", failure.reason);
    assert_eq!(failure.id.as_ref().map(uuid), Some(MISSING_ARGUMENTS));
    assert!(
        failure
            .reason
            .starts_with("Connection arguments were not received"),
        "the original's reason: {failure:?}"
    );
    let (after, _) = consumer.ended().await;
    assert!(after.is_empty());
}

/// The producer honours the consumer's ping interval (here 1 s, the shortest that turns pings
/// on): a consumer answering with pongs gets a ping about every second and stays connected;
/// one that stops answering is cut off 3 intervals after its last message.
#[tokio::test]
async fn the_producer_pings_at_the_consumer_interval_and_cuts_off_a_silent_consumer() {
    let producer = annals_producer(None).await;
    let interval = Duration::from_secs(1);
    let mut request = original_subscription_request(CONSUMER_TENANT, PARTITION, 0);
    request.call_context.as_mut().unwrap().ping_interval = Some(duration(interval));
    let mut consumer = OriginalConsumer::accepted(&producer, request, CONSENT).await;
    let accepted = Instant::now();

    // Answering: nothing ends for 3.5 intervals, and about one ping per interval comes.
    if let Some(m) = consumer.next(interval * 7 / 2).await {
        panic!("expected nothing but pings while answering them, got {m:?}");
    }
    let pings = consumer.pings.lock().unwrap().clone();
    assert!(
        (3..=4).contains(&pings.len()),
        "{} pings in 3.5 s at an interval of 1 s",
        pings.len()
    );
    let first = pings[0] - accepted;
    assert!(
        first > interval / 2 && first < interval * 2,
        "the first ping came {first:?} after acceptance"
    );
    for pair in pings.windows(2) {
        let gap = pair[1] - pair[0];
        assert!(
            gap > interval / 2 && gap < interval * 2,
            "pings {gap:?} apart at an interval of {interval:?}"
        );
    }

    // Silent: the producer ends the stream within 3 intervals of the last pong (with some
    // slack), and not long before.
    consumer.answer_pings.store(false, Ordering::SeqCst);
    let silent = Instant::now();
    let (after, end) = consumer.ended().await;
    let lasted = silent.elapsed();
    assert!(after.is_empty());
    eprintln!("a silent consumer was cut off after {lasted:?} with {end:?}");
    assert!(
        lasted > interval * 2 && lasted < interval * 5,
        "a consumer that stopped answering was cut off after {lasted:?}; the keep-alive is \
         3 intervals"
    );
}

/// The legacy event source field is set exactly when the original's .NET `Guid.TryParse`
/// takes the event source: it trims white space and takes the "N", "D", "B", "P" and "X"
/// formats in any case, and nothing else (no "urn:uuid:" prefix).
#[tokio::test]
#[expect(
    deprecated,
    reason = "the legacy event source field is what this test is about"
)]
async fn the_legacy_event_source_is_set_for_what_dotnet_parses_as_a_guid() {
    let guid = Uuid::parse_str(GUID_SOURCE).unwrap();
    let dotnet_x = {
        let (a, b, c, d) = guid.as_fields();
        let tail: Vec<String> = d.iter().map(|x| format!("0x{x:02x}")).collect();
        format!("{{0x{a:08x},0x{b:04x},0x{c:04x},{{{}}}}}", tail.join(","))
    };
    let cases: Vec<(String, Option<Uuid>)> = vec![
        (guid.hyphenated().to_string(), Some(guid)),
        (guid.simple().to_string().to_uppercase(), Some(guid)),
        (guid.braced().to_string(), Some(guid)),
        (format!("({})", guid.hyphenated()), Some(guid)),
        (dotnet_x, Some(guid)),
        (format!("  {}\t", guid.hyphenated()), Some(guid)),
        (guid.urn().to_string(), None),
        ("not-a-guid".to_owned(), None),
    ];
    let producer = annals_producer(None).await;
    let filter = public_filter(&producer).await;
    let events: Vec<(Uuid, &str, &str)> = cases
        .iter()
        .map(|(source, _)| (TYPE_A, source.as_str(), "{}"))
        .collect();
    let mut request = commit_request(PRODUCER_TENANT, &events);
    for event in &mut request.events {
        event.public = true;
    }
    send_commit(&producer.private().await, request).await;
    filter.wait_answered(cases.len()).await;

    let mut consumer = OriginalConsumer::accepted(
        &producer,
        original_subscription_request(CONSUMER_TENANT, PARTITION, 0),
        CONSENT,
    )
    .await;
    let received = consumer.receive_acknowledging(&producer, cases.len()).await;
    let mut wrong = Vec::new();
    for (request, (source, legacy)) in received.iter().zip(&cases) {
        let event = request.event.as_ref().unwrap().event.as_ref().unwrap();
        assert_eq!(event.event_source_id.as_deref(), Some(source.as_str()));
        if event.event_source_id_legacy != legacy.map(id) {
            wrong.push(format!(
                "{source:?}: legacy {:?}, the original's {legacy:?}",
                event.event_source_id_legacy.as_ref().map(uuid)
            ));
        }
    }
    assert!(
        wrong.is_empty(),
        "the legacy event source differs from the original's for:\n{}",
        wrong.join("\n")
    );
}

// ---------------------------------------------------------------------------------------------
// Scenario 2: the test is the original producer, annals the consumer.
// ---------------------------------------------------------------------------------------------

/// What the annals consumer sent on a connection.
#[derive(Debug)]
enum FromConsumer {
    SubscriptionRequest(Box<ConsumerSubscriptionRequest>),
    Response(ConsumerResponse),
    Pong,
    /// A message with no oneof set.
    Empty,
    /// The request stream ended: OK, or with this status.
    End(#[expect(dead_code, reason = "shown in panic messages (Debug)")] Result<(), Status>),
}

/// The producer's side of one connection the annals consumer opened. Dropping it ends the
/// response stream (OK), as the original's does when its event horizon ends.
struct ProducerSide {
    inbox: mpsc::UnboundedReceiver<FromConsumer>,
    outbound: mpsc::Sender<Result<EventHorizonProducerToConsumerMessage, Status>>,
    reader: JoinHandle<()>,
    pinger: Option<JoinHandle<()>>,
    /// When the connection came in.
    opened: Instant,
}

impl Drop for ProducerSide {
    fn drop(&mut self) {
        self.reader.abort();
        if let Some(pinger) = &self.pinger {
            pinger.abort();
        }
    }
}

/// The fake producer runtime's `Consumer` service: hands every connection to the test.
struct FakeService {
    connections: mpsc::UnboundedSender<ProducerSide>,
}

#[tonic::async_trait]
impl Consumer for FakeService {
    async fn subscribe(
        &self,
        request: tonic::Request<Streaming<EventHorizonConsumerToProducerMessage>>,
    ) -> Result<
        tonic::Response<tonic::codegen::BoxStream<EventHorizonProducerToConsumerMessage>>,
        Status,
    > {
        let mut incoming = request.into_inner();
        let (outbound, outbound_rx) = mpsc::channel(16);
        let (inbox_tx, inbox) = mpsc::unbounded_channel();
        let reader = tokio::spawn(async move {
            loop {
                let item = match incoming.message().await {
                    Ok(Some(message)) => match message.message {
                        Some(ToProducer::SubscriptionRequest(request)) => {
                            FromConsumer::SubscriptionRequest(Box::new(request))
                        }
                        Some(ToProducer::Response(response)) => FromConsumer::Response(response),
                        Some(ToProducer::Pong(Pong {})) => FromConsumer::Pong,
                        None => FromConsumer::Empty,
                    },
                    Ok(None) => FromConsumer::End(Ok(())),
                    Err(status) => FromConsumer::End(Err(status)),
                };
                let end = matches!(item, FromConsumer::End(_));
                if inbox_tx.send(item).is_err() || end {
                    return;
                }
            }
        });
        let side = ProducerSide {
            inbox,
            outbound,
            reader,
            pinger: None,
            opened: Instant::now(),
        };
        if self.connections.send(side).is_err() {
            return Err(Status::unavailable("the test is over"));
        }
        Ok(tonic::Response::new(Box::pin(ReceiverStream::new(
            outbound_rx,
        ))))
    }
}

/// The original producer runtime, played by a tonic server on a free port.
struct FakeProducer {
    port: u16,
    connections: mpsc::UnboundedReceiver<ProducerSide>,
    server: JoinHandle<()>,
}

impl Drop for FakeProducer {
    fn drop(&mut self) {
        self.server.abort();
    }
}

impl FakeProducer {
    async fn start() -> FakeProducer {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let (connections_tx, connections) = mpsc::unbounded_channel();
        let service = ConsumerServer::new(FakeService {
            connections: connections_tx,
        });
        let server = tokio::spawn(async move {
            tonic::transport::Server::builder()
                .add_service(service)
                .serve_with_incoming(TcpListenerStream::new(listener))
                .await
                .unwrap();
        });
        FakeProducer {
            port,
            connections,
            server,
        }
    }

    /// The next connection annals opens, within 10 s.
    async fn connection(&mut self, annals: &Server) -> ProducerSide {
        match tokio::time::timeout(MUST, self.connections.recv()).await {
            Ok(Some(side)) => side,
            _ => panic!(
                "annals did not connect within {MUST:?}; its log ends:\n{}",
                log_tail(&annals.log())
            ),
        }
    }
}

impl ProducerSide {
    /// The next message within 10 s, or the end of the stream.
    async fn next(&mut self, annals: &Server) -> FromConsumer {
        let item = tokio::time::timeout(MUST, self.inbox.recv())
            .await
            .unwrap_or_else(|_| {
                panic!(
                    "annals sent nothing within {MUST:?}; its log ends:\n{}",
                    log_tail(&annals.log())
                )
            });
        item.unwrap_or_else(|| FromConsumer::End(Err(Status::unknown("the reader stopped"))))
    }

    /// The first message, which must be the subscription request.
    async fn subscription_request(&mut self, annals: &Server) -> ConsumerSubscriptionRequest {
        match self.next(annals).await {
            FromConsumer::SubscriptionRequest(request) => *request,
            other => panic!("expected the subscription request first, got {other:?}"),
        }
    }

    async fn send(&self, message: ToConsumer) {
        self.outbound
            .send(Ok(EventHorizonProducerToConsumerMessage {
                message: Some(message),
            }))
            .await
            .unwrap();
    }

    /// Accepts under `consent`, then pings every `ping_interval` (the consumer's), as the
    /// original does.
    async fn accept(&mut self, consent: Uuid, ping_interval: Duration) {
        self.send(ToConsumer::SubscriptionResponse(SubscriptionResponse {
            failure: None,
            consent_id: Some(id(consent)),
        }))
        .await;
        let outbound = self.outbound.clone();
        self.pinger = Some(tokio::spawn(async move {
            let mut pings = tokio::time::interval_at(Instant::now() + ping_interval, ping_interval);
            loop {
                pings.tick().await;
                let ping = EventHorizonProducerToConsumerMessage {
                    message: Some(ToConsumer::Ping(Ping {})),
                };
                if outbound.send(Ok(ping)).await.is_err() {
                    return;
                }
            }
        }));
    }

    /// Refuses with `failure`; the connection is then dropped, as the original's call ends.
    async fn refuse(self, failure: Failure) {
        self.send(ToConsumer::SubscriptionResponse(SubscriptionResponse {
            failure: Some(failure),
            consent_id: None,
        }))
        .await;
    }

    /// Sends a ping and asserts the next message is a pong.
    async fn ping_pong(&mut self, annals: &Server) {
        self.send(ToConsumer::Ping(Ping {})).await;
        match self.next(annals).await {
            FromConsumer::Pong => {}
            other => panic!("expected a pong, got {other:?}"),
        }
    }

    /// Sends `served` as the original does (a new call id; the stored execution context) and
    /// returns the call id.
    async fn send_event(&self, served: &Served) -> Uuid {
        let call_id = Uuid::new_v4();
        self.send(ToConsumer::Request(ConsumerRequest {
            call_context: Some(ReverseCallRequestContext {
                call_id: Some(id(call_id)),
                execution_context: Some(producer_context(true)),
            }),
            event: Some(EventHorizonEvent {
                stream_sequence_number: served.position,
                event: Some(served.event.clone()),
            }),
        }))
        .await;
        call_id
    }

    /// Stop-and-wait, as the original: sends `served` and waits for its response (pongs
    /// aside), which must carry its call id and no failure: nothing else may come meanwhile.
    async fn deliver(&mut self, served: &Served, annals: &Server) {
        let call_id = self.send_event(served).await;
        loop {
            match self.next(annals).await {
                FromConsumer::Pong => {}
                FromConsumer::Response(response) => {
                    assert_eq!(
                        response,
                        ConsumerResponse {
                            call_context: Some(ReverseCallResponseContext {
                                call_id: Some(id(call_id)),
                            }),
                            failure: None,
                        },
                        "the response to the event at stream position {}",
                        served.position
                    );
                    return;
                }
                other => panic!(
                    "expected the response to the event at stream position {}, got {other:?}; \
                     the log of annals ends:\n{}",
                    served.position,
                    log_tail(&annals.log())
                ),
            }
        }
    }
}

/// The producer's execution context, as the original stores it: another microservice, the
/// producer tenant, another environment; with a claim in the request's call context (stored
/// as is) and without in the event (stripped).
fn producer_context(claims: bool) -> ExecutionContext {
    ExecutionContext {
        microservice_id: Some(id(PRODUCER)),
        tenant_id: Some(id(PRODUCER_TENANT)),
        version: Some(dolittle::versioning::Version {
            major: 9,
            minor: 8,
            patch: 7,
            build: 6,
            pre_release_string: String::new(),
        }),
        correlation_id: Some(id(Uuid::from_u128(
            0xc077_0000_0000_4000_8000_0000_0000_00a1,
        ))),
        claims: if claims {
            vec![dolittle::security::Claim {
                key: "name".into(),
                value: "producer".into(),
                value_type: "string".into(),
            }]
        } else {
            Vec::new()
        },
        environment: "Production".into(),
        span_id: None,
    }
}

/// How an event names its event source on the wire.
#[derive(Debug, Clone, Copy)]
enum Source {
    /// A Guid: the original sends it as text and as the legacy Uuid.
    Guid(Uuid),
    /// Text: only the text field.
    Text(&'static str),
    /// Only the legacy Uuid, as a producer of Contracts 5 sends it.
    LegacyOnly(Uuid),
}

impl Source {
    /// The event source the consumer stores: the text, or the Guid in .NET's "D" format.
    fn stored(self) -> String {
        match self {
            Source::Guid(guid) | Source::LegacyOnly(guid) => guid.hyphenated().to_string(),
            Source::Text(text) => text.to_owned(),
        }
    }
}

/// An event the fake producer serves.
#[derive(Debug, Clone)]
struct Served {
    position: u64,
    source: Source,
    event: EventHorizonCommittedEvent,
}

/// The fake producer's public stream partition: positions with gaps (other partitions in
/// between), producer sequence numbers unlike the positions, event sources in all three
/// forms, two event types (one of generation 2).
#[expect(
    deprecated,
    reason = "the original sends the event source in the legacy field too when it is a Guid"
)]
fn served_events() -> Vec<Served> {
    let guid = Uuid::from_u128(0x0e5e_0000_0000_4000_8000_0000_0000_0001);
    let legacy = Uuid::from_u128(0x0e5e_0000_0000_4000_8000_0000_0000_0002);
    let sources = [
        Source::Guid(guid),
        Source::Text("text-source"),
        Source::LegacyOnly(legacy),
    ];
    [0_u64, 2, 3, 7, 8, 12, 13, 15, 20, 21]
        .into_iter()
        .enumerate()
        .map(|(i, position)| {
            let source = sources[i % sources.len()];
            let (text, legacy) = match source {
                Source::Guid(guid) => (Some(guid.to_string()), Some(id(guid))),
                Source::Text(text) => (Some(text.to_owned()), None),
                Source::LegacyOnly(guid) => (None, Some(id(guid))),
            };
            Served {
                position,
                source,
                event: EventHorizonCommittedEvent {
                    event_log_sequence_number: 1000 + position * 3,
                    occurred: Some(prost_types::Timestamp {
                        seconds: 1_700_000_000 + i64::try_from(position).unwrap(),
                        nanos: 250_000_000,
                    }),
                    event_source_id_legacy: legacy,
                    execution_context: Some(producer_context(false)),
                    event_type: Some(if i % 2 == 0 {
                        Artifact {
                            id: Some(id(TYPE_A)),
                            generation: 1,
                        }
                    } else {
                        Artifact {
                            id: Some(id(TYPE_B)),
                            generation: 2,
                        }
                    }),
                    public: true,
                    content: format!(r#"{{"position":{position}}}"#),
                    external: false,
                    external_event_log_sequence_number: 0,
                    external_event_received: None,
                    event_source_id: text,
                },
            }
        })
        .collect()
}

/// The annals consumer: CONSUMER with CONSUMER_TENANT, finding PRODUCER at the fake's port.
async fn annals_consumer(fake: &FakeProducer) -> Server {
    let yaml = format!(
        "platform:\n  microserviceID: {CONSUMER}\ntenants:\n  {CONSUMER_TENANT}: {{}}\n\
         microservices:\n  {PRODUCER}:\n    host: 127.0.0.1\n    port: {}\n",
        fake.port
    );
    Server::start_with(&[(".dolittle/runtime.yml", &yaml)], &[], &[]).await
}

/// A head of the consumer calls Subscriptions/Subscribe for CONSUMER_TENANT, in a task of its
/// own (the answer waits for the connection attempt); `context` is the head's.
async fn head_subscribes(
    annals: &Server,
    partition: &str,
    context: &ExecutionContext,
) -> JoinHandle<SubscriptionResponse> {
    let mut client = SubscriptionsClient::new(annals.private().await);
    let request = Subscription {
        call_context: Some(CallRequestContext {
            execution_context: Some(context.clone()),
            head_id: Some(id(Uuid::new_v4())),
        }),
        microservice_id: Some(id(PRODUCER)),
        tenant_id: Some(id(PRODUCER_TENANT)),
        stream_id: Some(id(STREAM)),
        partition_id: partition.to_owned(),
        scope_id: Some(id(SCOPE)),
    };
    tokio::spawn(async move {
        tokio::time::timeout(MUST, client.subscribe(request))
            .await
            .expect("Subscribe answered in time")
            .expect("Subscribe without a gRPC error")
            .into_inner()
    })
}

/// Asserts `request` is what the original consumer sends for the head whose execution context
/// is `context`: that context verbatim, a 10 s ping interval, no head id, the producer tenant,
/// the stream, the partition as text and (only when it is a Guid) as the legacy Uuid, and
/// `position`.
#[expect(
    deprecated,
    reason = "the original sends the partition in the legacy field too when it is a Guid"
)]
fn assert_subscription_request(
    request: &ConsumerSubscriptionRequest,
    context: &ExecutionContext,
    partition: &str,
    position: u64,
) {
    let expected = ConsumerSubscriptionRequest {
        call_context: Some(ReverseCallArgumentsContext {
            execution_context: Some(context.clone()),
            head_id: None,
            ping_interval: Some(duration(PING_INTERVAL)),
        }),
        tenant_id: Some(id(PRODUCER_TENANT)),
        stream_id: Some(id(STREAM)),
        partition_id_legacy: Uuid::parse_str(partition).ok().map(id),
        stream_position: position,
        partition_id: Some(partition.to_owned()),
    };
    assert_eq!(
        request, &expected,
        "the subscription request from {position}"
    );
}

/// Asserts the scoped log read back holds `served`, each once, in order, numbered from 0, with
/// the producer's fields and its external origin under `consent`.
fn assert_stored(events: &[annals_engine::Event], served: &[Served], consent: Uuid) {
    let got: Vec<(u64, String)> = events
        .iter()
        .map(|e| {
            (
                e.event_horizon
                    .map_or(u64::MAX, |o| o.external_sequence_number),
                e.event_source_id.clone(),
            )
        })
        .collect();
    let want: Vec<(u64, String)> = served
        .iter()
        .map(|s| (s.event.event_log_sequence_number, s.source.stored()))
        .collect();
    assert_eq!(
        got, want,
        "the scoped log: (external sequence number, event source) of every event once, in order"
    );
    for (index, (event, s)) in events.iter().zip(served).enumerate() {
        assert_eq!(event.sequence_number.0, index as u64, "numbered from 0");
        let origin = event.event_horizon.unwrap();
        assert_eq!(origin.consent_id, consent, "{event:?}");
        assert!(origin.received_ns > 0, "{event:?}");
        assert!(!event.public, "a received event is not public: {event:?}");
        assert_eq!(event.content, s.event.content);
        let artifact = s.event.event_type.as_ref().unwrap();
        assert_eq!(event.event_type.id, uuid(artifact.id.as_ref().unwrap()));
        assert_eq!(event.event_type.generation, artifact.generation);
        let occurred = s.event.occurred.unwrap();
        assert_eq!(
            event.occurred_ns,
            occurred.seconds * 1_000_000_000 + i64::from(occurred.nanos),
            "the producer's occurred"
        );
        let context = &event.execution_context;
        let sent = producer_context(false);
        assert_eq!(context.microservice_id, PRODUCER, "{context:?}");
        assert_eq!(context.tenant_id, PRODUCER_TENANT, "{context:?}");
        assert_eq!(
            context.correlation_id,
            uuid(sent.correlation_id.as_ref().unwrap())
        );
        assert_eq!(context.environment, sent.environment);
        assert!(context.claims.is_empty(), "{context:?}");
        let version = &context.version;
        assert_eq!(
            (version.major, version.minor, version.patch, version.build),
            (9, 8, 7, 6)
        );
    }
}

/// The head subscribes to the Guid partition; annals connects as the original consumer does,
/// the consent reaches the head, a ping is answered with a pong, and the events served
/// stop-and-wait are each answered with an empty response. The fake producer drops the stream
/// after an acknowledgement: annals comes back after its 1 s backoff asking from the next
/// position; it drops it again with an event in flight: annals asks from that event or the
/// one after, whichever it stored. The scoped log then holds every event once.
#[tokio::test]
async fn the_annals_consumer_subscribes_as_the_original_and_stores_every_event_once() {
    let mut fake = FakeProducer::start().await;
    let mut annals = annals_consumer(&fake).await;
    let head = execution_context_in(CONSUMER, CONSUMER_TENANT);
    let answer = head_subscribes(&annals, PARTITION, &head).await;

    let mut side = fake.connection(&annals).await;
    let request = side.subscription_request(&annals).await;
    assert_subscription_request(&request, &head, PARTITION, 0);
    // The original may ping before it answers; the consumer answers pings meanwhile too.
    side.ping_pong(&annals).await;
    side.accept(CONSENT, PING_INTERVAL).await;
    assert_eq!(
        answer.await.unwrap(),
        SubscriptionResponse {
            failure: None,
            consent_id: Some(id(CONSENT)),
        },
        "the producer's consent reaches the head"
    );
    side.ping_pong(&annals).await;

    let events = served_events();
    for served in &events[..5] {
        side.deliver(served, &annals).await;
    }
    let dropped = Instant::now();
    drop(side);

    let mut side = fake.connection(&annals).await;
    let waited = side.opened - dropped;
    eprintln!("annals came back {waited:?} after the stream was dropped");
    assert!(
        waited >= Duration::from_millis(900) && waited < Duration::from_millis(1900),
        "annals came back after {waited:?}; its backoff starts at 1 s"
    );
    let request = side.subscription_request(&annals).await;
    assert_subscription_request(&request, &head, PARTITION, events[4].position + 1);
    side.accept(CONSENT, PING_INTERVAL).await;
    side.ping_pong(&annals).await;
    let rest: Vec<&Served> = events
        .iter()
        .filter(|s| s.position >= request.stream_position)
        .collect();
    assert_eq!(rest.len(), 5);
    for served in &rest[..2] {
        side.deliver(served, &annals).await;
    }
    let in_flight = rest[2];
    side.send_event(in_flight).await;
    let dropped = Instant::now();
    drop(side);

    let mut side = fake.connection(&annals).await;
    let waited = side.opened - dropped;
    eprintln!("annals came back {waited:?} after the stream was dropped");
    assert!(
        waited >= Duration::from_millis(900) && waited < Duration::from_millis(1900),
        "annals came back after {waited:?}; a connection was accepted, so its backoff is 1 s again"
    );
    let request = side.subscription_request(&annals).await;
    let from = request.stream_position;
    assert!(
        from == in_flight.position || from == in_flight.position + 1,
        "asked from {from}: the event in flight at {} was stored or not",
        in_flight.position
    );
    assert_subscription_request(&request, &head, PARTITION, from);
    side.accept(CONSENT, PING_INTERVAL).await;
    for served in events.iter().filter(|s| s.position >= from) {
        side.deliver(served, &annals).await;
    }

    assert!(annals.stop().await, "{}", log_tail(&annals.log()));
    let stored = read_scoped_log(&annals.dir, CONSUMER_TENANT, SCOPE);
    assert_stored(&stored, &events, CONSENT);
}

/// The head subscribes to a text partition (no legacy partition field). Right after the third
/// acknowledgement annals is SIGKILLed: the scoped log holds the three events. Started again,
/// it resumes the subscription by itself (under its own identity) from after the third event.
#[tokio::test]
async fn the_annals_consumer_acknowledges_only_what_is_durable() {
    let mut fake = FakeProducer::start().await;
    let mut annals = annals_consumer(&fake).await;
    let head = execution_context_in(CONSUMER, CONSUMER_TENANT);
    let answer = head_subscribes(&annals, TEXT_PARTITION, &head).await;
    let mut side = fake.connection(&annals).await;
    let request = side.subscription_request(&annals).await;
    assert_subscription_request(&request, &head, TEXT_PARTITION, 0);
    side.accept(CONSENT_TEXT, PING_INTERVAL).await;
    assert_eq!(answer.await.unwrap().consent_id, Some(id(CONSENT_TEXT)));

    let events = served_events();
    for served in &events[..3] {
        side.deliver(served, &annals).await;
    }
    annals.kill().await;
    drop(side);
    let stored = read_scoped_log(&annals.dir, CONSUMER_TENANT, SCOPE);
    assert_stored(&stored, &events[..3], CONSENT_TEXT);

    annals.relaunch().await;
    let mut side = fake.connection(&annals).await;
    let request = side.subscription_request(&annals).await;
    let context = request
        .call_context
        .as_ref()
        .and_then(|c| c.execution_context.clone())
        .expect("an execution context");
    assert_eq!(context.microservice_id, Some(id(CONSUMER)));
    assert_eq!(context.tenant_id, Some(id(CONSUMER_TENANT)));
    assert_subscription_request(&request, &context, TEXT_PARTITION, events[2].position + 1);
    side.accept(CONSENT_TEXT, PING_INTERVAL).await;
    for served in &events[3..5] {
        side.deliver(served, &annals).await;
    }
    assert!(annals.stop().await, "{}", log_tail(&annals.log()));
    let stored = read_scoped_log(&annals.dir, CONSUMER_TENANT, SCOPE);
    assert_stored(&stored, &events[..5], CONSENT_TEXT);
}

/// The fake producer refuses with the original's missing-consent failure: the head's answer
/// carries that id and reason. annals keeps trying: a head asking meanwhile gets the next
/// attempt's outcome (another refusal, passed on verbatim), and a later acceptance's consent.
#[tokio::test]
async fn refusals_of_the_producer_reach_the_head_verbatim() {
    let mut fake = FakeProducer::start().await;
    let annals = annals_consumer(&fake).await;
    let head = execution_context_in(CONSUMER, CONSUMER_TENANT);
    let missing = Failure {
        id: Some(id(failures::MISSING_CONSENT)),
        reason: format!(
            "There are no consents configured for Consumer Tenant {CONSUMER_TENANT} from Public \
             Stream {STREAM} and Partition {PARTITION}"
        ),
    };
    let other = Failure {
        id: Some(id(Uuid::from_u128(
            0xfa11_0000_0000_4000_8000_0000_0000_00a1,
        ))),
        reason: "The producer runtime could not serve the subscription".into(),
    };
    // Each attempt: what the producer answers (a refusal, or None: the consent), and how long
    // annals must have waited since the last refusal. It waits before trying again, so the
    // head's request of an attempt is there before the attempt; after a second refusal it
    // waits twice as long.
    let attempts = [
        (Some(missing), Duration::ZERO),
        (Some(other), Duration::from_millis(900)),
        (None, Duration::from_millis(1900)),
    ];
    let mut refused = Instant::now();
    for (refusal, back_off) in attempts {
        let answer = head_subscribes(&annals, PARTITION, &head).await;
        let mut side = fake.connection(&annals).await;
        assert!(
            side.opened - refused >= back_off,
            "annals tried again after {:?}, not after at least {back_off:?}",
            side.opened - refused
        );
        assert_subscription_request(
            &side.subscription_request(&annals).await,
            &head,
            PARTITION,
            0,
        );
        let expected = if let Some(failure) = refusal {
            side.refuse(failure.clone()).await;
            refused = Instant::now();
            SubscriptionResponse {
                failure: Some(failure),
                consent_id: None,
            }
        } else {
            side.accept(CONSENT, PING_INTERVAL).await;
            SubscriptionResponse {
                failure: None,
                consent_id: Some(id(CONSENT)),
            }
        };
        assert_eq!(answer.await.unwrap(), expected);
    }
}
