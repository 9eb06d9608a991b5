//! Processing state: what stream processors, projections and event-horizon subscriptions
//! keep between runs. None of it is in the log, so it is written durably (synced) before a
//! write returns, and several writes can share one sync through a [`StateBatch`].
//!
//! Values are JSON in RocksDB: small, read rarely (at start and by management calls), and
//! readable with RocksDB's own tools when something goes wrong.

use std::collections::BTreeMap;

use annals_log::EventLogSequenceNumber;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::keys;

pub use annals_engine_types::StreamPosition;

/// Why a processor (or one partition of it) is failing, and when it is retried.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProcessingFailure {
    /// The head's (or the runtime's) reason.
    pub reason: String,
    /// When to try again (Unix nanoseconds); `i64::MAX` means never (a non-retryable failure).
    pub retry_time_ns: i64,
    /// Attempts so far.
    pub processing_attempts: u32,
    /// When it last failed (Unix nanoseconds).
    pub last_failed_ns: i64,
}

/// A partition of a partitioned processor that failed and is parked: it is skipped until its
/// retry time while the other partitions go on.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FailingPartition {
    /// Stream position of the event that failed.
    pub position: StreamPosition,
    /// Its event-log sequence number.
    pub event_log_position: EventLogSequenceNumber,
    /// Why, and when it is retried.
    pub failure: ProcessingFailure,
}

/// Where a stream processor (event handler, filter) is.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct StreamProcessorState {
    /// Next stream position to process.
    pub position: StreamPosition,
    /// Next event-log sequence number to process (the same number as `position` when the
    /// processor reads the event log itself).
    pub event_log_position: EventLogSequenceNumber,
    /// When an event was last processed successfully (Unix nanoseconds, 0 when never).
    pub last_successfully_processed_ns: i64,
    /// Partitioned processors: the parked partitions, by partition id.
    pub failing_partitions: BTreeMap<String, FailingPartition>,
    /// Unpartitioned processors: the failure that stopped it, when it is stopped.
    pub failure: Option<ProcessingFailure>,
}

/// Where an event-horizon subscription is in the producer's public stream.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct SubscriptionState {
    /// Next position in the producer's stream.
    pub position: StreamPosition,
    /// When an event was last received and stored (Unix nanoseconds, 0 when never).
    pub last_successfully_processed_ns: i64,
    /// The failure it is waiting out, if any.
    pub failure: Option<ProcessingFailure>,
    /// The producer's event-log sequence number after the last event received (0 before
    /// any): the original's `EventLogSequence`. Records written before it was kept read as 0.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub next_producer_sequence_number: u64,
}

#[allow(
    clippy::trivially_copy_pass_by_ref,
    reason = "serde's skip_serializing_if passes a reference"
)]
fn is_zero(value: &u64) -> bool {
    *value == 0
}

/// What a registered processor selects from its source, kept so that its stream can be
/// described to others (the original's `stream-definitions`) and so that a change of it is
/// visible. Written when a processor registers, per tenant.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StreamDefinition {
    /// Whether the stream keeps the order of each partition apart (the registration's flag).
    pub partitioned: bool,
    /// Whether it is a public stream (a public filter's).
    pub public: bool,
    /// How events are chosen.
    pub filter: StreamFilter,
}

/// How a stream's events are chosen.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", content = "types")]
pub enum StreamFilter {
    /// By event type (event handlers): these type ids, in the registration's order.
    EventTypes(Vec<Uuid>),
    /// By the head's answer for each event (filters).
    Remote,
}

/// A subscription's record under its `H` key: its state, and while a received batch is in
/// flight, what the state was before it (the prepared-state protocol of `tenant/horizon.rs`).
///
/// The JSON is the plain [`SubscriptionState`] object, plus a `pending` member only while a
/// write is unsettled. So a settled record is byte for byte what versions before the protocol
/// wrote (they read it, and this version reads theirs as settled).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct SubscriptionRecord {
    /// The state once the write it belongs to is in the scoped log (at once when settled).
    #[serde(flatten)]
    pub(crate) state: SubscriptionState,
    /// Set while the events stored with `state` may not be in the log.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) pending: Option<PendingReceive>,
}

/// The unsettled part of a [`SubscriptionRecord`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct PendingReceive {
    /// The scoped log's end once the batch is in it: the record's `state` is in force when the
    /// log's end is at least this, `previous` otherwise.
    pub(crate) valid_from_log_end: u64,
    /// The state in force before the batch (`None`: the subscription had none).
    pub(crate) previous: Option<SubscriptionState>,
}

impl SubscriptionRecord {
    /// A settled record.
    pub(crate) fn settled(state: SubscriptionState) -> Self {
        Self {
            state,
            pending: None,
        }
    }

    /// The state in force when the scoped log ends at `log_end`.
    pub(crate) fn effective(self, log_end: u64) -> Option<SubscriptionState> {
        match self.pending {
            None => Some(self.state),
            Some(p) if p.valid_from_log_end <= log_end => Some(self.state),
            Some(p) => p.previous,
        }
    }
}

/// Identifies a stream processor: the scope of its source, its own id (event handler or
/// filter id) and the stream it reads (the event log is the nil stream id).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct StreamProcessorId {
    /// Scope of the source stream.
    pub scope: Uuid,
    /// Event processor id.
    pub processor: Uuid,
    /// Source stream id.
    pub source_stream: Uuid,
}

/// Identifies an event-horizon subscription of this tenant (the consumer).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SubscriptionId {
    /// Producer microservice.
    pub producer_microservice: Uuid,
    /// Producer tenant.
    pub producer_tenant: Uuid,
    /// Scope the events are stored in here.
    pub scope: Uuid,
    /// Producer's public stream.
    pub stream: Uuid,
    /// Partition of that stream.
    pub partition: String,
}

impl StreamProcessorId {
    pub(crate) fn key(&self) -> Vec<u8> {
        keys::stream_processor(self.scope, self.processor, self.source_stream)
    }
}

impl SubscriptionId {
    pub(crate) fn key(&self) -> Vec<u8> {
        keys::subscription(
            self.producer_microservice,
            self.producer_tenant,
            self.scope,
            self.stream,
            &self.partition,
        )
    }
}

/// Several state writes that become durable together with one sync, applied in the order
/// they were added (a later write to a key wins over an earlier one).
#[derive(Debug, Default)]
pub struct StateBatch {
    pub(crate) ops: Vec<StateOp>,
}

/// One write of a [`StateBatch`].
#[derive(Debug)]
pub(crate) enum StateOp {
    Put(Vec<u8>, Vec<u8>),
    Delete(Vec<u8>),
    /// Every key from the first up to (not including) the second.
    DeleteRange(Vec<u8>, Vec<u8>),
}

impl StateBatch {
    /// An empty batch.
    pub fn new() -> Self {
        Self::default()
    }

    /// Whether the batch holds no write.
    pub fn is_empty(&self) -> bool {
        self.ops.is_empty()
    }

    fn put(&mut self, key: Vec<u8>, value: Vec<u8>) {
        self.ops.push(StateOp::Put(key, value));
    }

    fn delete(&mut self, key: Vec<u8>) {
        self.ops.push(StateOp::Delete(key));
    }

    fn delete_prefix(&mut self, prefix: Vec<u8>) {
        let end = keys::prefix_end(&prefix);
        self.ops.push(StateOp::DeleteRange(prefix, end));
    }

    /// Sets a stream processor's state.
    pub fn put_stream_processor(&mut self, id: &StreamProcessorId, state: &StreamProcessorState) {
        self.put(id.key(), to_json(state));
    }

    /// Removes a stream processor's state.
    pub fn delete_stream_processor(&mut self, id: &StreamProcessorId) {
        self.delete(id.key());
    }

    /// Sets a projection's state for one key (`state` is the projection's JSON text).
    pub fn put_projection(&mut self, scope: Uuid, projection: Uuid, key: &str, state: &str) {
        self.put(
            keys::projection(scope, projection, key),
            state.as_bytes().to_vec(),
        );
    }

    /// Removes a projection's state for one key.
    pub fn delete_projection(&mut self, scope: Uuid, projection: Uuid, key: &str) {
        self.delete(keys::projection(scope, projection, key));
    }

    /// Records what a projection's state for `key` became after the event at `position`
    /// (which occurred at `occurred_ns`): the new state, or `None` when the key was deleted.
    /// This is the key's history, read by [`Tenant::projection_state_at`]; the current state
    /// is set apart, with [`StateBatch::put_projection`] or [`StateBatch::delete_projection`].
    ///
    /// [`Tenant::projection_state_at`]: crate::Tenant::projection_state_at
    pub fn record_projection_history(
        &mut self,
        scope: Uuid,
        projection: Uuid,
        key: &str,
        position: EventLogSequenceNumber,
        occurred_ns: i64,
        state: Option<&str>,
    ) {
        self.put(
            keys::projection_history(scope, projection, key, position.0),
            projection_history_value(occurred_ns, state),
        );
    }

    /// Sets a projection's definition (the caller's own text: the engine only keeps it).
    pub fn put_projection_definition(&mut self, scope: Uuid, projection: Uuid, definition: &str) {
        self.put(
            keys::projection_definition(scope, projection),
            definition.as_bytes().to_vec(),
        );
    }

    /// Removes every state of a projection and its whole history (its definition stays).
    pub fn drop_projection_states(&mut self, scope: Uuid, projection: Uuid) {
        self.delete_prefix(keys::projection_prefix(scope, projection));
        self.delete_prefix(keys::projection_history_prefix(scope, projection));
        self.delete(keys::projection_history_floor(scope, projection));
    }

    /// Sets an event-horizon subscription's state. Unlike
    /// [`Tenant::put_subscription_state`](crate::Tenant::put_subscription_state), a batch does
    /// not wait for a [`Tenant::commit_received`](crate::Tenant::commit_received) to the
    /// subscription's scope under way: use it only while none can run.
    pub fn put_subscription(&mut self, id: &SubscriptionId, state: &SubscriptionState) {
        self.put(id.key(), to_json(state));
    }
}

/// A history entry's value: 1 and the state, or 0 for a deleted key, after the event's
/// occurred time (i64 little-endian).
fn projection_history_value(occurred_ns: i64, state: Option<&str>) -> Vec<u8> {
    let mut value = Vec::with_capacity(9 + state.map_or(0, str::len));
    value.push(u8::from(state.is_some()));
    value.extend_from_slice(&occurred_ns.to_le_bytes());
    if let Some(state) = state {
        value.extend_from_slice(state.as_bytes());
    }
    value
}

pub(crate) fn to_json<T: Serialize>(value: &T) -> Vec<u8> {
    // Serialising these plain structs to a Vec cannot fail (no maps with non-string keys,
    // no custom serialisers); an empty object is never written instead.
    serde_json::to_vec(value).unwrap_or_else(|e| unreachable!("state serialises: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn state(position: u64) -> SubscriptionState {
        SubscriptionState {
            position: StreamPosition(position),
            last_successfully_processed_ns: 5,
            failure: Some(ProcessingFailure {
                reason: "producer gone".into(),
                retry_time_ns: 9,
                processing_attempts: 2,
                last_failed_ns: 4,
            }),
            next_producer_sequence_number: 12,
        }
    }

    #[test]
    fn a_settled_record_is_the_plain_state_both_ways() {
        let plain = to_json(&state(17));
        assert_eq!(to_json(&SubscriptionRecord::settled(state(17))), plain);
        let read: SubscriptionRecord = serde_json::from_slice(&plain).unwrap();
        assert_eq!(read, SubscriptionRecord::settled(state(17)));
        // As older versions wrote it, field by field.
        let old = br#"{"position":3,"last_successfully_processed_ns":0,"failure":null}"#;
        let read: SubscriptionRecord = serde_json::from_slice(old).unwrap();
        assert_eq!(
            read,
            SubscriptionRecord::settled(SubscriptionState {
                position: StreamPosition(3),
                ..SubscriptionState::default()
            })
        );
    }

    #[test]
    fn a_pending_record_round_trips_and_resolves_by_the_log_end() {
        let record = SubscriptionRecord {
            state: state(20),
            pending: Some(PendingReceive {
                valid_from_log_end: 100,
                previous: Some(state(17)),
            }),
        };
        let json = to_json(&record);
        let read: SubscriptionRecord = serde_json::from_slice(&json).unwrap();
        assert_eq!(read, record);
        // A version before the protocol ignores `pending` and takes `state`: right once the
        // batch is in the log, wrong for one a crash lost (engine/README.md, downgrades).
        let old: SubscriptionState = serde_json::from_slice(&json).unwrap();
        assert_eq!(old, state(20));
        assert_eq!(record.clone().effective(99), Some(state(17)));
        assert_eq!(record.clone().effective(100), Some(state(20)));
        let first = SubscriptionRecord {
            pending: Some(PendingReceive {
                valid_from_log_end: 1,
                previous: None,
            }),
            ..record
        };
        assert_eq!(first.effective(0), None);
    }
}
