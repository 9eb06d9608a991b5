//! One connection to a producer: the subscription request, the producer's answer, then the
//! events, written to the scope's log in batches together with the subscription's position,
//! and acknowledged once durable.
//!
//! Two tasks share the connection: the reader takes the producer's messages (answering pings,
//! queueing events), the writer (the connection's own task) empties the queue into one engine
//! write at a time and sends the acknowledgements of what it wrote.
//!
//! Invariants:
//! - An event is acknowledged only after it is durable in the scoped log, and the position
//!   stored with it covers exactly what was written (`Tenant::commit_received`): a cut at any
//!   point loses nothing (the producer sends again from the stored position) and duplicates
//!   nothing (what was stored is not asked for again).
//! - An event at a position already stored is acknowledged and not written again.
//! - The queue between reader and writer holds at most `QUEUE_EVENTS_MAX` events; when it is
//!   full the reader stops reading, and gRPC's flow control holds up the producer.
//! - Without any message from the producer for 3 ping intervals the connection is over.

use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::Duration;

use annals_contract::api::failure::Failure;
use annals_contract::api::{convert, ids};
use annals_contract::clock;
use annals_contract::limits;
use annals_contract::proto::dolittle::protobuf::Uuid as WireUuid;
use annals_contract::proto::dolittle::runtime::eventhorizon::{
    consumer_client::ConsumerClient,
    event_horizon_consumer_to_producer_message::Message as Outgoing,
    event_horizon_producer_to_consumer_message::Message as Incoming, ConsumerRequest,
    ConsumerResponse, ConsumerSubscriptionRequest, EventHorizonConsumerToProducerMessage,
    EventHorizonProducerToConsumerMessage,
};
use annals_contract::proto::dolittle::services::{
    Pong, ReverseCallArgumentsContext, ReverseCallResponseContext,
};
use annals_engine::{
    Commit, EventHorizonOrigin, ExecutionContext, ScopeId, StreamPosition, SubscriptionId,
    SubscriptionState, Tenant, UncommittedEvent,
};
use tokio::sync::mpsc;
use tonic::transport::{Certificate, ClientTlsConfig, Identity};
use tonic::Streaming;
use uuid::Uuid;

use super::Shared;
use crate::blocking;
use crate::failures;
use crate::status::SubscriptionStatus;

/// The ping interval this runtime asks its producers for, in seconds (the original's).
const PING_INTERVAL_SECONDS: i64 = 10;
/// Silence after which the producer is taken for gone: 3 ping intervals.
const KEEPALIVE: Duration = Duration::from_secs(30);
/// How long connecting may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// Events queued between the reader and the writer, at most.
const QUEUE_EVENTS_MAX: usize = 4_096;
/// Events written in one engine write, at most.
const BATCH_EVENTS_MAX: usize = 2_048;
/// Messages waiting to go to the producer (acknowledgements, pongs), at most.
const OUTBOUND_MESSAGES_MAX: usize = 256;

/// A connection the producer accepted.
pub(super) struct Connected {
    /// The consent it was accepted under.
    pub(super) consent: Uuid,
    /// The position it was asked from.
    pub(super) position: StreamPosition,
    tenant: Arc<Tenant>,
    incoming: Streaming<EventHorizonProducerToConsumerMessage>,
    outbound: mpsc::Sender<EventHorizonConsumerToProducerMessage>,
}

fn could_not_connect(reason: impl Into<String>) -> Failure {
    failures::failure(failures::COULD_NOT_CONNECT, reason)
}

/// Connects to the producer and asks for the subscription from its stored position.
#[expect(
    deprecated,
    reason = "a producer of Contracts 5 reads the partition only from the legacy Guid field"
)]
pub(super) async fn connect(
    shared: &Shared,
    id: &SubscriptionId,
    context: &ExecutionContext,
) -> Result<Connected, Failure> {
    let tenant = shared
        .tenants
        .get(&context.tenant_id)
        .cloned()
        .ok_or_else(|| {
            Failure::unknown_tenant(
                context.tenant_id,
                &shared.tenants.keys().copied().collect::<Vec<_>>(),
            )
        })?;
    let address = shared
        .config
        .producers
        .get(&id.producer_microservice)
        .ok_or_else(|| failures::no_producer_address(id.producer_microservice))?;
    let position = {
        let tenant = Arc::clone(&tenant);
        let id = id.clone();
        blocking::run(move || tenant.subscription_state(&id))
            .await
            .map_err(|e| could_not_connect(format!("reading the subscription's position: {e}")))?
            .map_or(StreamPosition::ZERO, |state| state.position)
    };
    let scheme = if shared.config.consumer_tls.is_some() {
        "https"
    } else {
        "http"
    };
    let mut endpoint = tonic::transport::Endpoint::from_shared(format!(
        "{scheme}://{}:{}",
        address.host, address.port
    ))
    .map_err(|e| could_not_connect(format!("the producer's address is not valid: {e}")))?
    .connect_timeout(CONNECT_TIMEOUT)
    .tcp_nodelay(true);
    if let Some(tls) = &shared.config.consumer_tls {
        let mut config = ClientTlsConfig::new()
            .ca_certificate(Certificate::from_pem(&tls.certificate_authority_pem))
            .domain_name(address.host.clone());
        if let Some((certificate, key)) = &tls.identity_pem {
            config = config.identity(Identity::from_pem(certificate, key));
        }
        endpoint = endpoint
            .tls_config(config)
            .map_err(|e| could_not_connect(format!("the TLS configuration is not usable: {e}")))?;
    }
    let channel = endpoint.connect().await.map_err(|e| {
        could_not_connect(format!(
            "Could not connect to producer Runtime: {}",
            describe(&e)
        ))
    })?;
    let (outbound, outbound_rx) = mpsc::channel(OUTBOUND_MESSAGES_MAX);
    let partition_legacy = ids::parse_dotnet_guid(&id.partition).map(ids::to_wire);
    let request = ConsumerSubscriptionRequest {
        call_context: Some(ReverseCallArgumentsContext {
            execution_context: Some(convert::execution_context_to_wire(context)),
            head_id: None,
            ping_interval: Some(prost_types::Duration {
                seconds: PING_INTERVAL_SECONDS,
                nanos: 0,
            }),
        }),
        tenant_id: Some(ids::to_wire(id.producer_tenant)),
        stream_id: Some(ids::to_wire(id.stream)),
        partition_id_legacy: partition_legacy,
        stream_position: position.0,
        partition_id: Some(id.partition.clone()),
    };
    outbound
        .send(EventHorizonConsumerToProducerMessage {
            message: Some(Outgoing::SubscriptionRequest(request)),
        })
        .await
        .map_err(|_| could_not_connect("Could not connect to producer Runtime"))?;
    // Any event a producer took in a Commit fits, with what it wraps around it.
    let mut client = ConsumerClient::new(channel)
        .max_decoding_message_size(limits::SENT_BYTES_MAX)
        .max_encoding_message_size(limits::MESSAGE_BYTES_MAX);
    let mut incoming = client
        .subscribe(tokio_stream::wrappers::ReceiverStream::new(outbound_rx))
        .await
        .map_err(|status| {
            could_not_connect(format!(
                "Could not connect to producer Runtime: {}",
                status.message()
            ))
        })?
        .into_inner();
    // The first message that is not a ping answers the subscription request.
    loop {
        let message = match tokio::time::timeout(KEEPALIVE, incoming.message()).await {
            Err(_) => return Err(could_not_connect("the producer sent nothing for 30 s")),
            Ok(Err(status)) => {
                return Err(could_not_connect(format!(
                    "Could not connect to producer Runtime: {}",
                    status.message()
                )))
            }
            Ok(Ok(None)) => return Err(could_not_connect("Could not connect to producer Runtime")),
            Ok(Ok(Some(message))) => message,
        };
        match message.message {
            Some(Incoming::Ping(_)) => {
                let _ = outbound.try_send(pong());
            }
            Some(Incoming::SubscriptionResponse(response)) => {
                if let Some(failure) = response.failure {
                    let id = failure
                        .id
                        .as_ref()
                        .and_then(|id| ids::from_wire("failure.id", id).ok())
                        .unwrap_or(failures::COULD_NOT_CONNECT);
                    return Err(Failure::new(id, failure.reason));
                }
                let consent = response
                    .consent_id
                    .as_ref()
                    .and_then(|id| ids::from_wire("consentId", id).ok())
                    .ok_or_else(|| {
                        could_not_connect("the producer accepted without a consent id")
                    })?;
                return Ok(Connected {
                    consent,
                    position,
                    tenant,
                    incoming,
                    outbound,
                });
            }
            _ => return Err(could_not_connect("Could not connect to producer Runtime")),
        }
    }
}

/// An error with its causes (tonic's transport errors say little at the top level: "transport
/// error"; the cause says "connection refused" or which certificate was not trusted).
fn describe(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut cause = error.source();
    while let Some(inner) = cause {
        text.push_str(": ");
        text.push_str(&inner.to_string());
        cause = inner.source();
    }
    text
}

fn pong() -> EventHorizonConsumerToProducerMessage {
    EventHorizonConsumerToProducerMessage {
        message: Some(Outgoing::Pong(Pong {})),
    }
}

fn acknowledgement(
    call_id: WireUuid,
    failure: Option<Failure>,
) -> EventHorizonConsumerToProducerMessage {
    EventHorizonConsumerToProducerMessage {
        message: Some(Outgoing::Response(ConsumerResponse {
            call_context: Some(ReverseCallResponseContext {
                call_id: Some(call_id),
            }),
            failure: failure.map(|f| f.to_wire()),
        })),
    }
}

/// An event received, ready to write.
struct Received {
    call_id: WireUuid,
    position: StreamPosition,
    commit: Commit,
}

/// What the reader hands the writer.
enum Queued {
    Event(Received),
    /// A request that cannot be written: answered with this failure (the producer then ends
    /// the subscription, as the original's does).
    Bad(WireUuid, Failure),
}

impl Connected {
    /// Receives and stores events until the connection ends; returns why it ended.
    pub(super) async fn run(
        self,
        shared: &Shared,
        id: &SubscriptionId,
        status: &SubscriptionStatus,
    ) -> String {
        let Connected {
            consent,
            position,
            tenant,
            mut incoming,
            outbound,
        } = self;
        status.position.store(position.0, Relaxed);
        // The subscription is persisted once accepted, so a restart resumes it.
        let persisted = {
            let tenant = Arc::clone(&tenant);
            let id = id.clone();
            blocking::run(move || {
                if tenant.subscription_state(&id)?.is_none() {
                    tenant.put_subscription_state(&id, &SubscriptionState::default())?;
                }
                Ok(())
            })
            .await
        };
        if let Err(e) = persisted {
            return format!("persisting the subscription: {e}");
        }
        let (queue, mut queued) = mpsc::channel::<Queued>(QUEUE_EVENTS_MAX);
        let pongs = outbound.clone();
        let mut stopping = shared.stopping.clone();
        let reader = async move {
            loop {
                let message = match tokio::time::timeout(KEEPALIVE, incoming.message()).await {
                    Err(_) => return "the producer sent nothing for 30 s".to_owned(),
                    Ok(Err(status)) => {
                        return format!("the producer's stream failed: {}", status.message())
                    }
                    Ok(Ok(None)) => return "the producer ended the stream".to_owned(),
                    Ok(Ok(Some(message))) => message,
                };
                match message.message {
                    Some(Incoming::Ping(_)) => {
                        let sent = pongs.send(pong()).await;
                        if sent.is_err() {
                            return "the connection closed".to_owned();
                        }
                    }
                    Some(Incoming::Request(request)) => {
                        let Some(item) = received(request, consent) else {
                            // A request without a call id cannot be answered (the original
                            // ignores it too).
                            continue;
                        };
                        if queue.send(item).await.is_err() {
                            return "the writer stopped".to_owned();
                        }
                    }
                    Some(Incoming::SubscriptionResponse(_)) => {
                        return "the producer answered the subscription twice".to_owned()
                    }
                    None => {}
                }
            }
        };
        let writer = write(&tenant, id, position, &mut queued, &outbound, status);
        tokio::select! {
            reason = reader => reason,
            reason = writer => reason,
            _ = stopping.wait_for(|stopping| *stopping) => "the runtime is stopping".to_owned(),
        }
    }
}

/// Takes a request apart; `None` when it has no call id to answer.
#[expect(
    deprecated,
    reason = "a producer of Contracts 5 sends the event source only as the legacy Guid"
)]
fn received(request: ConsumerRequest, consent: Uuid) -> Option<Queued> {
    let call_id = request.call_context?.call_id?;
    let converted = (|| {
        let event = request
            .event
            .ok_or_else(|| Failure::invalid("request.event is missing"))?;
        let committed = event
            .event
            .ok_or_else(|| Failure::invalid("request.event.event is missing"))?;
        let event_source_id = match (
            &committed.event_source_id,
            &committed.event_source_id_legacy,
        ) {
            (Some(text), _) => text.clone(),
            (None, Some(legacy)) => ids::from_wire("eventSourceIdLegacy", legacy)?.to_string(),
            (None, None) => return Err(Failure::invalid("the event has no event source id")),
        };
        let execution_context = convert::execution_context(
            "event.executionContext",
            committed.execution_context.as_ref(),
        )?;
        let event_type = convert::event_type("event.eventType", committed.event_type.as_ref())?;
        let occurred_ns = committed.occurred.as_ref().map_or(0, convert::timestamp_ns);
        Ok(Received {
            call_id: call_id.clone(),
            position: StreamPosition(event.stream_sequence_number),
            commit: Commit {
                occurred_ns,
                execution_context,
                events: vec![UncommittedEvent {
                    event_source_id,
                    event_type,
                    public: false,
                    content: committed.content,
                    aggregate: None,
                    event_horizon: Some(EventHorizonOrigin {
                        external_sequence_number: committed.event_log_sequence_number,
                        received_ns: 0,
                        consent_id: consent,
                    }),
                }],
            },
        })
    })();
    Some(match converted {
        Ok(received) => Queued::Event(received),
        Err(failure) => Queued::Bad(
            call_id,
            failures::failure(failures::ERROR_HANDLING_EVENT, failure.reason),
        ),
    })
}

/// The writer: empties the queue into engine writes and acknowledges what they made durable.
/// Returns why it stopped.
async fn write(
    tenant: &Arc<Tenant>,
    id: &SubscriptionId,
    from: StreamPosition,
    queued: &mut mpsc::Receiver<Queued>,
    outbound: &mpsc::Sender<EventHorizonConsumerToProducerMessage>,
    status: &SubscriptionStatus,
) -> String {
    let mut next = from;
    let mut batch: Vec<Queued> = Vec::with_capacity(BATCH_EVENTS_MAX);
    loop {
        if queued.recv_many(&mut batch, BATCH_EVENTS_MAX).await == 0 {
            return "the reader stopped".to_owned();
        }
        let received_ns = clock::now_ns();
        let mut commits = Vec::with_capacity(batch.len());
        let mut acknowledge = Vec::with_capacity(batch.len());
        let mut bad = None;
        let mut after = next;
        for item in batch.drain(..) {
            match item {
                Queued::Bad(call_id, failure) => {
                    bad = Some((call_id, failure));
                    break;
                }
                Queued::Event(mut received) => {
                    if received.position < after {
                        // Stored already (sent again after a cut): acknowledged, not written.
                        acknowledge.push(received.call_id);
                        continue;
                    }
                    for event in &mut received.commit.events {
                        if let Some(origin) = &mut event.event_horizon {
                            origin.received_ns = received_ns;
                        }
                    }
                    after = received.position.next();
                    commits.push(received.commit);
                    acknowledge.push(received.call_id);
                }
            }
        }
        if !commits.is_empty() {
            let count = commits.len() as u64;
            let next_producer_sequence_number = commits
                .iter()
                .flat_map(|commit| &commit.events)
                .filter_map(|event| event.event_horizon.as_ref())
                .map(|origin| origin.external_sequence_number + 1)
                .next_back()
                .unwrap_or(0);
            let state = SubscriptionState {
                position: after,
                last_successfully_processed_ns: received_ns,
                failure: None,
                next_producer_sequence_number,
            };
            let written = {
                let tenant = Arc::clone(tenant);
                let id = id.clone();
                blocking::run(move || {
                    tenant.commit_received(ScopeId(id.scope), &id, &commits, &state)
                })
                .await
            };
            if let Err(e) = written {
                // Nothing is acknowledged: the producer sends it all again on the next
                // connection, from the stored position.
                return format!("writing received events to scope {}: {e}", id.scope);
            }
            next = after;
            status.position.store(next.0, Relaxed);
            status.events_stored.fetch_add(count, Relaxed);
        }
        for call_id in acknowledge {
            if outbound.send(acknowledgement(call_id, None)).await.is_err() {
                return "the connection closed".to_owned();
            }
        }
        if let Some((call_id, failure)) = bad {
            tracing::error!(reason = %failure.reason, "a received event cannot be stored");
            let reason = failure.reason.clone();
            let _ = outbound.send(acknowledgement(call_id, Some(failure))).await;
            return format!("a received event cannot be stored: {reason}");
        }
    }
}
