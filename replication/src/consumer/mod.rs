//! The consumer: subscriptions of this runtime's tenants to other microservices' public
//! streams.
//!
//! A head asks (`Subscriptions/Subscribe` on the private port, served by the server through
//! [`Consumer::subscribe`]); the subscription is identified as the original identifies it
//! (consumer tenant, producer microservice and tenant, scope, stream, partition), and a second
//! request for the same identity joins the running one. Each subscription is a task
//! (`subscription`) that connects to the producer, stores what it receives together with its
//! position (`connection`), and reconnects after any cut, forever, until the runtime stops.
//!
//! Unlike the original:
//! - a subscription the producer accepted once is persisted (its state is written at
//!   acceptance), so a restarted runtime resumes it at once ([`Consumer::resume`]) without
//!   waiting for a head to ask again;
//! - events are acknowledged after they are durable, and their position is stored in the same
//!   atomic step as the events, so no cut or crash loses or duplicates one.
//!
//! Invariants: at most one task per identity (`subscriptions` is the registry; an entry is
//! removed only when its task ends, at shutdown); every task ends when `stopping` turns true.

mod connection;
mod subscription;

use std::collections::HashMap;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;

use annals_contract::api::failure::Failure;
use annals_engine::{ExecutionContext, SubscriptionId};
use parking_lot::Mutex;
use tokio::sync::watch;
use uuid::Uuid;

use crate::config::HorizonConfig;
use crate::failures;
use crate::status::SubscriptionSnapshot;
use crate::Tenants;

use self::subscription::Subscription;

pub use annals_contract::api::event_horizon::SubscriptionRequest;

/// One subscription's identity: the consumer tenant and the engine's subscription id.
type Key = (Uuid, SubscriptionId);

/// The consumer side of the event horizon.
pub struct Consumer {
    shared: Arc<Shared>,
    subscriptions: Mutex<HashMap<Key, Arc<Subscription>>>,
}

/// What every subscription task uses.
pub(crate) struct Shared {
    pub(crate) tenants: Tenants,
    pub(crate) config: Arc<HorizonConfig>,
    /// This runtime's microservice and environment (the identity a resumed subscription
    /// presents to its producer).
    pub(crate) microservice: Uuid,
    pub(crate) environment: String,
    pub(crate) stopping: watch::Receiver<bool>,
}

impl Consumer {
    /// A consumer for `tenants`, reaching producers at the addresses of `config`, as the
    /// microservice `microservice` in `environment`; every subscription ends when `stopping`
    /// turns true.
    pub fn new(
        tenants: Tenants,
        config: Arc<HorizonConfig>,
        microservice: Uuid,
        environment: String,
        stopping: watch::Receiver<bool>,
    ) -> Consumer {
        Consumer {
            shared: Arc::new(Shared {
                tenants,
                config,
                microservice,
                environment,
                stopping,
            }),
            subscriptions: Mutex::new(HashMap::new()),
        }
    }

    /// Subscribes (or joins the running subscription) and answers as the original does once the
    /// current connection attempt resolves: the consent id, or why it failed.
    pub async fn subscribe(&self, request: SubscriptionRequest) -> Result<Uuid, Failure> {
        if !self
            .shared
            .config
            .producers
            .contains_key(&request.producer_microservice)
        {
            return Err(failures::no_producer_address(request.producer_microservice));
        }
        let consumer_tenant = request.execution_context.tenant_id;
        let id = SubscriptionId {
            producer_microservice: request.producer_microservice,
            producer_tenant: request.producer_tenant,
            scope: request.scope,
            stream: request.stream,
            partition: request.partition.clone(),
        };
        let subscription = self.get_or_start(consumer_tenant, id, request.execution_context);
        subscription.outcome().await
    }

    /// Starts every subscription persisted in this runtime's tenants (those a producer accepted
    /// before), presenting this runtime's own identity to their producers.
    pub fn resume(&self) -> annals_engine::Result<usize> {
        let mut resumed = 0;
        for (&tenant_id, tenant) in self.shared.tenants.iter() {
            for (id, _) in tenant.subscriptions()? {
                let context = self.shared.own_context(tenant_id);
                self.get_or_start(tenant_id, id, context);
                resumed += 1;
            }
        }
        Ok(resumed)
    }

    fn get_or_start(
        &self,
        consumer_tenant: Uuid,
        id: SubscriptionId,
        context: ExecutionContext,
    ) -> Arc<Subscription> {
        let mut subscriptions = self.subscriptions.lock();
        let key = (consumer_tenant, id);
        if let Some(running) = subscriptions.get(&key) {
            return Arc::clone(running);
        }
        let subscription = Subscription::start(Arc::clone(&self.shared), key.1.clone(), context);
        subscriptions.insert(key, Arc::clone(&subscription));
        subscription
    }

    /// Every subscription as it is now.
    pub fn subscriptions(&self) -> Vec<SubscriptionSnapshot> {
        let mut all: Vec<SubscriptionSnapshot> = self
            .subscriptions
            .lock()
            .iter()
            .map(|((tenant, id), subscription)| {
                let status = subscription.status();
                SubscriptionSnapshot {
                    consumer_tenant: *tenant,
                    producer_microservice: id.producer_microservice,
                    producer_tenant: id.producer_tenant,
                    stream: id.stream,
                    partition: id.partition.clone(),
                    scope: id.scope,
                    position: status.position.load(Relaxed),
                    events_stored: status.events_stored.load(Relaxed),
                    connected: status.connected.load(Relaxed),
                    reconnects: status.reconnects.load(Relaxed),
                    last_error: status.last_error.lock().clone(),
                }
            })
            .collect();
        all.sort_by(|a, b| {
            (
                a.consumer_tenant,
                a.producer_microservice,
                a.producer_tenant,
                a.stream,
                &a.partition,
            )
                .cmp(&(
                    b.consumer_tenant,
                    b.producer_microservice,
                    b.producer_tenant,
                    b.stream,
                    &b.partition,
                ))
        });
        all
    }
}

impl Shared {
    /// The execution context this runtime presents for `tenant` when no head asked (a resumed
    /// subscription).
    fn own_context(&self, tenant: Uuid) -> ExecutionContext {
        ExecutionContext {
            microservice_id: self.microservice,
            tenant_id: tenant,
            correlation_id: Uuid::new_v4(),
            environment: self.environment.clone(),
            ..ExecutionContext::default()
        }
    }
}
