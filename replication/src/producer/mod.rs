//! The producer: serves this runtime's public streams to consumer runtimes over
//! `dolittle.runtime.eventhorizon.Consumer/Subscribe` on the public port.
//!
//! A consumer opens the stream and sends its subscription request: the producer tenant, the
//! public stream and partition, and the stream position to start from, with the consumer's
//! microservice and tenant in the execution context. The producer checks it (arguments, the
//! tenant, the consent, no identical subscription already served), answers with the consent
//! id or a failure, then sends the partition's events in stream order (`stream`).
//!
//! Invariants:
//! - At most one served subscription per identity (consumer microservice and tenant, producer
//!   tenant, stream, partition): `served` holds it from acceptance until its stream ends, and a
//!   second one is refused while it is there.
//! - Nothing is persisted here: the consumer owns its position and asks from it on every
//!   connect, so a producer restart loses nothing.

mod stream;

use std::collections::HashMap;
use std::pin::Pin;
use std::sync::Arc;

use annals_contract::api::event_horizon::{self, ConsumerArguments};
use annals_contract::api::failure::Failure;
use annals_contract::api::ids;
use annals_contract::proto::dolittle::runtime::eventhorizon::{
    consumer_server, event_horizon_consumer_to_producer_message::Message as Incoming,
    event_horizon_producer_to_consumer_message::Message as Outgoing, ConsumerResponse,
    ConsumerSubscriptionRequest, EventHorizonConsumerToProducerMessage,
    EventHorizonProducerToConsumerMessage, SubscriptionResponse,
};
use annals_contract::proto::dolittle::services::{Ping, ReverseCallArgumentsContext};
use annals_contract::reverse_call::{self, ReverseCall};
use annals_contract::Platform;
use annals_engine::StreamPosition;
use futures_util::Stream;
use parking_lot::Mutex;
use tokio::sync::{mpsc, watch};
use tonic::{Request, Response, Status, Streaming};
use tracing::Instrument as _;
use uuid::Uuid;

use crate::config::HorizonConfig;
use crate::failures;
use crate::status::{ServedSnapshot, ServedStatus};
use crate::Tenants;

/// Who is served what: the identity the original compares to refuse a second, identical
/// subscription.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct ServedKey {
    consumer_microservice: Uuid,
    consumer_tenant: Uuid,
    producer_tenant: Uuid,
    stream: Uuid,
    partition: String,
}

/// The producer side of the event horizon: a tonic service for the public port.
#[derive(Clone)]
pub struct Producer {
    inner: Arc<Inner>,
}

struct Inner {
    /// This runtime's identity (the reverse call wants it; a consumer is not compared with it).
    platform: Platform,
    tenants: Tenants,
    config: Arc<HorizonConfig>,
    served: Mutex<HashMap<ServedKey, Arc<ServedStatus>>>,
    stopping: watch::Receiver<bool>,
}

impl Producer {
    /// A producer of the microservice `platform` serving the public streams of `tenants`, with
    /// the consents of `config`; every stream ends when `stopping` turns true.
    pub fn new(
        platform: Platform,
        tenants: Tenants,
        config: Arc<HorizonConfig>,
        stopping: watch::Receiver<bool>,
    ) -> Producer {
        Producer {
            inner: Arc::new(Inner {
                platform,
                tenants,
                config,
                served: Mutex::new(HashMap::new()),
                stopping,
            }),
        }
    }

    /// The tonic service to add to the public port's router.
    pub fn service(&self) -> consumer_server::ConsumerServer<Producer> {
        consumer_server::ConsumerServer::new(self.clone())
    }

    /// Every public stream this runtime's tenants have (what consumers can subscribe to), with
    /// its end, by tenant.
    pub fn public_streams(&self) -> Vec<(Uuid, Uuid, u64)> {
        let mut all = Vec::new();
        for (&tenant_id, tenant) in self.inner.tenants.iter() {
            match tenant.public_streams() {
                Ok(streams) => {
                    all.extend(
                        streams
                            .into_iter()
                            .map(|(stream, end)| (tenant_id, stream, end.0)),
                    );
                }
                Err(e) => tracing::warn!(tenant = %tenant_id, error = %e, "listing public streams"),
            }
        }
        all.sort_unstable();
        all
    }

    /// Every subscription served now.
    pub fn served(&self) -> Vec<ServedSnapshot> {
        use std::sync::atomic::Ordering::Relaxed;
        let mut all: Vec<ServedSnapshot> = self
            .inner
            .served
            .lock()
            .iter()
            .map(|(key, status)| {
                let acknowledged = status.acknowledged_position.load(Relaxed);
                // The stream's end as stored now (one key read), else as last read.
                let end = self
                    .inner
                    .tenants
                    .get(&key.producer_tenant)
                    .and_then(|tenant| tenant.public_stream_end(key.stream).ok())
                    .map_or_else(|| status.stream_end.load(Relaxed), |end| end.0);
                ServedSnapshot {
                    consumer_microservice: key.consumer_microservice,
                    consumer_tenant: key.consumer_tenant,
                    producer_tenant: key.producer_tenant,
                    stream: key.stream,
                    partition: key.partition.clone(),
                    sent_position: status.sent_position.load(Relaxed),
                    acknowledged_position: acknowledged,
                    lag_events: end.saturating_sub(acknowledged),
                }
            })
            .collect();
        all.sort_by(|a, b| {
            (
                a.producer_tenant,
                a.stream,
                &a.partition,
                a.consumer_microservice,
            )
                .cmp(&(
                    b.producer_tenant,
                    b.stream,
                    &b.partition,
                    b.consumer_microservice,
                ))
        });
        all
    }
}

/// The reverse-call protocol of `Consumer/Subscribe` (the consumer runtime is the client).
pub(crate) struct HorizonProtocol;

impl reverse_call::Protocol for HorizonProtocol {
    type ClientMessage = EventHorizonConsumerToProducerMessage;
    type ServerMessage = EventHorizonProducerToConsumerMessage;
    type Arguments = ConsumerSubscriptionRequest;
    type Response = ConsumerResponse;

    const FAILED_TO_CONNECT: Uuid = failures::MISSING_SUBSCRIPTION_ARGUMENTS;
    // A consumer is another microservice: its execution context names its own microservice
    // and environment, which the original does not compare with the producer's.
    const CHECKS_PLATFORM: bool = false;

    fn classify(
        message: EventHorizonConsumerToProducerMessage,
    ) -> reverse_call::Incoming<ConsumerSubscriptionRequest, ConsumerResponse> {
        match message.message {
            Some(Incoming::SubscriptionRequest(request)) => {
                reverse_call::Incoming::Arguments(request)
            }
            Some(Incoming::Response(response)) => reverse_call::Incoming::Response(response),
            Some(Incoming::Pong(_)) => reverse_call::Incoming::Pong,
            None => reverse_call::Incoming::Empty,
        }
    }

    fn arguments_context(
        arguments: &ConsumerSubscriptionRequest,
    ) -> Option<&ReverseCallArgumentsContext> {
        arguments.call_context.as_ref()
    }

    fn response_call_id(
        response: &ConsumerResponse,
    ) -> Option<&annals_contract::proto::dolittle::protobuf::Uuid> {
        response.call_context.as_ref()?.call_id.as_ref()
    }

    fn connect_response(
        failure: Option<annals_contract::proto::dolittle::protobuf::Failure>,
    ) -> EventHorizonProducerToConsumerMessage {
        EventHorizonProducerToConsumerMessage {
            message: Some(Outgoing::SubscriptionResponse(SubscriptionResponse {
                failure,
                consent_id: None,
            })),
        }
    }

    fn ping() -> EventHorizonProducerToConsumerMessage {
        EventHorizonProducerToConsumerMessage {
            message: Some(Outgoing::Ping(Ping {})),
        }
    }
}

/// A checked subscription request.
struct Accepted {
    key: ServedKey,
    consent: Uuid,
    from: StreamPosition,
}

impl Inner {
    /// The consent a consumer holds, found as the original looks for it (a matching consent
    /// counts even when consent is not required); the failure says which step found none.
    fn consent(
        &self,
        producer_tenant: Uuid,
        consumer_microservice: Uuid,
        consumer_tenant: Uuid,
        stream: Uuid,
        partition: &str,
    ) -> Result<Uuid, Failure> {
        let missing = |reason: String| failures::failure(failures::MISSING_CONSENT, reason);
        if !self.tenants.contains_key(&producer_tenant) {
            return Err(missing(format!(
                "There are no consents configured for Producer Tenant {producer_tenant}"
            )));
        }
        let mut given = self.config.consents.iter().filter(|c| {
            c.producer_tenant == producer_tenant && c.consumer_microservice == consumer_microservice
        });
        let mut any = false;
        for c in given.by_ref() {
            any = true;
            if c.consumer_tenant == consumer_tenant
                && c.stream == stream
                && c.partition == partition
            {
                return Ok(c.consent);
            }
        }
        if !any {
            return Err(missing(format!(
                "There are no consents configured for Consumer Microservice {consumer_microservice}"
            )));
        }
        Err(missing(format!(
            "There are no consents configured for Consumer Tenant {consumer_tenant} from Public Stream {stream} and Partition {partition}"
        )))
    }

    /// The original's checks, in its order: the arguments, then the consent (with the
    /// producer tenant); the caller then checks that no identical subscription is served.
    fn check(
        &self,
        request: &ConsumerSubscriptionRequest,
        consumer: &annals_engine::ExecutionContext,
    ) -> Result<Accepted, Failure> {
        let ConsumerArguments {
            producer_tenant,
            stream,
            partition,
            stream_position,
        } = event_horizon::consumer_arguments(request)?;
        let consent = self.consent(
            producer_tenant,
            consumer.microservice_id,
            consumer.tenant_id,
            stream,
            &partition,
        );
        let consent = match consent {
            Ok(consent) => consent,
            Err(failure) if self.config.require_consent => return Err(failure),
            // Without required consent, any configured tenant serves, under no consent.
            Err(_) if self.tenants.contains_key(&producer_tenant) => Uuid::nil(),
            Err(_) => {
                return Err(failures::failure(
                    failures::MISSING_PRODUCER_TENANT,
                    format!("Producer tenant '{producer_tenant}' does not exist"),
                ))
            }
        };
        Ok(Accepted {
            key: ServedKey {
                consumer_microservice: consumer.microservice_id,
                consumer_tenant: consumer.tenant_id,
                producer_tenant,
                stream,
                partition,
            },
            consent,
            from: StreamPosition(stream_position),
        })
    }
}

/// Removes a served subscription from the registry when its stream ends.
struct ServedGuard {
    inner: Arc<Inner>,
    key: ServedKey,
}

impl Drop for ServedGuard {
    fn drop(&mut self) {
        self.inner.served.lock().remove(&self.key);
    }
}

type OutboundStream =
    Pin<Box<dyn Stream<Item = Result<EventHorizonProducerToConsumerMessage, Status>> + Send>>;

#[tonic::async_trait]
impl consumer_server::Consumer for Producer {
    async fn subscribe(
        &self,
        request: Request<Streaming<EventHorizonConsumerToProducerMessage>>,
    ) -> Result<Response<OutboundStream>, Status> {
        let incoming = request.into_inner();
        let (outbound_tx, outbound_rx) = mpsc::channel(reverse_call::OUTBOUND_MESSAGES_MAX);
        let inner = Arc::clone(&self.inner);
        tokio::spawn(async move {
            let Some(connected) = ReverseCall::<HorizonProtocol>::accept(
                incoming,
                outbound_tx,
                Some(&inner.platform),
                inner.stopping.clone(),
            )
            .await
            else {
                return;
            };
            let reverse_call::Connected {
                call,
                arguments,
                execution_context,
                reader,
            } = connected;
            let reader = tokio::spawn(reader);
            let accepted = inner.check(&arguments, &execution_context).and_then(|accepted| {
                let mut served = inner.served.lock();
                if served.contains_key(&accepted.key) {
                    return Err(failures::failure(
                        failures::SUBSCRIPTION_ALREADY_ACTIVE,
                        format!(
                            "Event horizon already registered for microservice: {} and tenant: {} with producer tenant: {} in partition: {} in stream: {}",
                            accepted.key.consumer_microservice,
                            accepted.key.consumer_tenant,
                            accepted.key.producer_tenant,
                            accepted.key.partition,
                            accepted.key.stream
                        ),
                    ));
                }
                served.insert(accepted.key.clone(), Arc::new(ServedStatus::default()));
                Ok(accepted)
            });
            let accepted = match accepted {
                Ok(accepted) => accepted,
                Err(failure) => {
                    tracing::warn!(
                        consumer_microservice = %execution_context.microservice_id,
                        consumer_tenant = %execution_context.tenant_id,
                        reason = %failure.reason,
                        "event horizon subscription refused"
                    );
                    call.respond_to_connect(Some(failure)).await;
                    reader.abort();
                    return;
                }
            };
            let status = inner
                .served
                .lock()
                .get(&accepted.key)
                .cloned()
                .unwrap_or_default();
            let _guard = ServedGuard {
                inner: Arc::clone(&inner),
                key: accepted.key.clone(),
            };
            let Some(tenant) = inner.tenants.get(&accepted.key.producer_tenant).cloned() else {
                return;
            };
            call.send(EventHorizonProducerToConsumerMessage {
                message: Some(Outgoing::SubscriptionResponse(SubscriptionResponse {
                    failure: None,
                    consent_id: Some(ids::to_wire(accepted.consent)),
                })),
            })
            .await;
            // Every line logged while it is served names the subscription.
            let span = tracing::info_span!(
                "event_horizon_served",
                consumer_microservice = %accepted.key.consumer_microservice,
                consumer_tenant = %accepted.key.consumer_tenant,
                producer_tenant = %accepted.key.producer_tenant,
                stream = %accepted.key.stream,
                partition = %accepted.key.partition,
            );
            let window = inner.config.window_events.max(1);
            async {
                tracing::info!(from = %accepted.from, "event horizon subscription accepted");
                let outcome = stream::serve(
                    &call,
                    &tenant,
                    accepted.key.stream,
                    &accepted.key.partition,
                    accepted.from,
                    window,
                    &status,
                )
                .await;
                match outcome {
                    Ok(()) => tracing::info!("event horizon subscription ended"),
                    // The stream ends as the original ends it, without an error status: the
                    // consumer reconnects either way, and the reason is in the log here.
                    Err(reason) => tracing::warn!(%reason, "event horizon subscription ended"),
                }
            }
            .instrument(span)
            .await;
            call.end(None);
            reader.abort();
        });
        Ok(Response::new(Box::pin(
            tokio_stream::wrappers::ReceiverStream::new(outbound_rx),
        )))
    }
}
