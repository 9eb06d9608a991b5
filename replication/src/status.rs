//! What each side knows of its subscriptions, for metrics and the status page: kept in
//! atomics and one small lock per subscription, updated by the task that owns the
//! subscription, read by whoever asks for a snapshot.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use parking_lot::Mutex;
use uuid::Uuid;

/// A consumer subscription as it is now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SubscriptionSnapshot {
    /// The consumer tenant (this runtime's).
    pub consumer_tenant: Uuid,
    /// The producer microservice.
    pub producer_microservice: Uuid,
    /// The producer tenant.
    pub producer_tenant: Uuid,
    /// The producer's public stream.
    pub stream: Uuid,
    /// Its partition.
    pub partition: String,
    /// The scope the events are written to here.
    pub scope: Uuid,
    /// The next position to receive (everything before it is stored here).
    pub position: u64,
    /// Events received and stored since this runtime started.
    pub events_stored: u64,
    /// Whether a connection to the producer is up and accepted.
    pub connected: bool,
    /// Connections made after the first (cuts, refusals, restarts of the producer).
    pub reconnects: u64,
    /// Why the last connection ended or failed, if it did.
    pub last_error: Option<String>,
}

/// A subscription this runtime serves as the producer, as it is now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServedSnapshot {
    /// The consumer microservice.
    pub consumer_microservice: Uuid,
    /// The consumer tenant.
    pub consumer_tenant: Uuid,
    /// This runtime's tenant whose stream is served.
    pub producer_tenant: Uuid,
    /// The public stream.
    pub stream: Uuid,
    /// Its partition.
    pub partition: String,
    /// The next stream position to send.
    pub sent_position: u64,
    /// The position after the last event the consumer acknowledged.
    pub acknowledged_position: u64,
    /// Events of the stream (all partitions) after the acknowledged position: an upper bound
    /// of what the consumer lacks.
    pub lag_events: u64,
}

/// The live counters of one consumer subscription.
#[derive(Debug, Default)]
pub(crate) struct SubscriptionStatus {
    pub(crate) position: AtomicU64,
    pub(crate) events_stored: AtomicU64,
    pub(crate) connected: AtomicBool,
    pub(crate) reconnects: AtomicU64,
    pub(crate) last_error: Mutex<Option<String>>,
}

impl SubscriptionStatus {
    pub(crate) fn failed(&self, error: &str) {
        self.connected.store(false, Ordering::Relaxed);
        *self.last_error.lock() = Some(error.to_owned());
    }
}

/// The live counters of one served subscription.
#[derive(Debug, Default)]
pub(crate) struct ServedStatus {
    pub(crate) sent_position: AtomicU64,
    pub(crate) acknowledged_position: AtomicU64,
    pub(crate) stream_end: AtomicU64,
}
