//! One subscription's task: connect, receive until the connection ends, back off, connect
//! again, until the runtime stops.
//!
//! The answer a head waits for is the outcome of the current connection attempt, as in the
//! original: while a connection is up, a head asking joins it at once (the consent id);
//! between attempts it waits for the next attempt's outcome.
//!
//! Invariants: the task never ends before the runtime stops (a refused or failed subscription
//! keeps trying, and says why in the log each time); the delay between attempts doubles from
//! `RETRY_DELAY_MIN` to `RETRY_DELAY_MAX` and starts again after a connection was accepted.

use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::Duration;

use annals_contract::api::failure::Failure;
use annals_engine::{ExecutionContext, SubscriptionId};
use parking_lot::Mutex;
use tokio::sync::oneshot;
use tracing::Instrument as _;
use uuid::Uuid;

use super::connection;
use super::Shared;
use crate::failures;
use crate::status::SubscriptionStatus;

/// The first delay before reconnecting.
const RETRY_DELAY_MIN: Duration = Duration::from_secs(1);
/// The longest delay between attempts (the original's cap).
const RETRY_DELAY_MAX: Duration = Duration::from_secs(60);

/// A running subscription, as the registry holds it.
pub(crate) struct Subscription {
    status: Arc<SubscriptionStatus>,
    outcome: Mutex<Outcome>,
}

/// What a head asking now gets.
#[derive(Default)]
struct Outcome {
    /// The consent of the connection that is up, if one is.
    connected: Option<Uuid>,
    /// Heads waiting for the current attempt.
    waiting: Vec<oneshot::Sender<Result<Uuid, Failure>>>,
}

impl Subscription {
    /// Starts the task of subscription `id` of tenant `context.tenant_id`.
    pub(crate) fn start(
        shared: Arc<Shared>,
        id: SubscriptionId,
        context: ExecutionContext,
    ) -> Arc<Subscription> {
        let subscription = Arc::new(Subscription {
            status: Arc::new(SubscriptionStatus::default()),
            outcome: Mutex::new(Outcome::default()),
        });
        // Every line the task logs names the subscription.
        let span = tracing::info_span!(
            "event_horizon_subscription",
            consumer_tenant = %context.tenant_id,
            producer_microservice = %id.producer_microservice,
            producer_tenant = %id.producer_tenant,
            stream = %id.stream,
            partition = %id.partition,
            scope = %id.scope,
        );
        tokio::spawn(run(shared, id, context, Arc::clone(&subscription)).instrument(span));
        subscription
    }

    pub(crate) fn status(&self) -> &SubscriptionStatus {
        &self.status
    }

    /// The consent of the connection that is up, or the outcome of the next attempt.
    pub(crate) async fn outcome(&self) -> Result<Uuid, Failure> {
        let waiting = {
            let mut outcome = self.outcome.lock();
            if let Some(consent) = outcome.connected {
                return Ok(consent);
            }
            let (tx, rx) = oneshot::channel();
            outcome.waiting.push(tx);
            rx
        };
        waiting.await.unwrap_or_else(|_| Err(cancelled()))
    }

    /// Answers every waiting head with the outcome of an attempt.
    fn resolve(&self, result: &Result<Uuid, Failure>) {
        let mut outcome = self.outcome.lock();
        outcome.connected = result.as_ref().ok().copied();
        for waiting in outcome.waiting.drain(..) {
            let _ = waiting.send(result.clone());
        }
    }

    /// The connection is gone: heads asking from now on wait for the next attempt.
    fn disconnected(&self) {
        self.outcome.lock().connected = None;
    }
}

fn cancelled() -> Failure {
    failures::failure(
        failures::SUBSCRIPTION_CANCELLED,
        "Event Horizon subscription was cancelled",
    )
}

async fn run(
    shared: Arc<Shared>,
    id: SubscriptionId,
    context: ExecutionContext,
    subscription: Arc<Subscription>,
) {
    tracing::info!("event horizon subscription started");
    let mut stopping = shared.stopping.clone();
    let mut delay = RETRY_DELAY_MIN;
    let mut attempts: u64 = 0;
    loop {
        if *stopping.borrow() {
            break;
        }
        attempts += 1;
        if attempts > 1 {
            subscription.status.reconnects.fetch_add(1, Relaxed);
        }
        let attempt = connection::connect(&shared, &id, &context).await;
        let reason = match attempt {
            Err(failure) => {
                subscription.resolve(&Err(failure.clone()));
                failure.reason
            }
            Ok(connected) => {
                let consent = connected.consent;
                subscription.status.connected.store(true, Relaxed);
                subscription.status.last_error.lock().take();
                subscription.resolve(&Ok(consent));
                tracing::info!(
                    consent = %consent,
                    from = %connected.position,
                    "event horizon subscription connected"
                );
                delay = RETRY_DELAY_MIN;
                let ended = connected.run(&shared, &id, &subscription.status).await;
                subscription.disconnected();
                ended
            }
        };
        subscription.status.failed(&reason);
        if *stopping.borrow() {
            break;
        }
        tracing::warn!(
            %reason,
            retry_in_ms = delay.as_millis() as u64,
            "event horizon subscription is not connected; retrying"
        );
        tokio::select! {
            () = tokio::time::sleep(delay) => {}
            _ = stopping.wait_for(|stopping| *stopping) => break,
        }
        delay = (delay * 2).min(RETRY_DELAY_MAX);
    }
    subscription.resolve(&Err(cancelled()));
}
