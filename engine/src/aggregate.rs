//! Commits for aggregates and what fetching an aggregate returns.

use annals_log::{Event, EventLogSequenceNumber, EventType, ExecutionContext};
use uuid::Uuid;

/// One event applied by an aggregate, before it is committed.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct AggregateEvent {
    /// Event type.
    pub event_type: EventType,
    /// Whether the event may leave the microservice through public streams.
    pub public: bool,
    /// Content: JSON text.
    pub content: String,
}

/// Events applied by one aggregate instance, committed only if the aggregate is still at
/// `expected_version`. Event `i` gets aggregate version `expected_version + i`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct AggregateCommit {
    /// When the commit happened (Unix nanoseconds).
    pub occurred_ns: i64,
    /// The execution context of the commit.
    pub execution_context: ExecutionContext,
    /// The aggregate root (type) id.
    pub aggregate_root: Uuid,
    /// The aggregate instance (event source) id.
    pub event_source_id: String,
    /// The number of events the aggregate has now (0 for a new one).
    pub expected_version: u64,
    /// The events, in order. Must not be empty.
    pub events: Vec<AggregateEvent>,
}

/// Where a commit for an aggregate landed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AggregateCommitReceipt {
    /// Sequence number of the first event.
    pub first: EventLogSequenceNumber,
    /// Number of events.
    pub count: u64,
    /// The aggregate's version before the commit (its first event's aggregate version).
    pub version_before: u64,
}

impl AggregateCommitReceipt {
    /// The aggregate's version after the commit (the number of events it has applied).
    pub fn current_version(&self) -> u64 {
        self.version_before + self.count
    }
}

/// All (or the selected types of) events of one aggregate instance.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct AggregateEvents {
    /// The aggregate root id.
    pub aggregate_root: Uuid,
    /// The event source id.
    pub event_source_id: String,
    /// The number of events the aggregate had applied when the fetch began.
    pub current_version: u64,
    /// The events in aggregate-version order.
    pub events: Vec<Event>,
}

/// The size an event is counted as against a batch's byte budget: its variable parts plus
/// a fixed allowance for the rest (ids, numbers, execution context).
pub(crate) fn budget_size(event: &Event) -> usize {
    const FIXED: usize = 160;
    FIXED
        + event.content.len()
        + event.event_source_id.len()
        + event
            .execution_context
            .claims
            .iter()
            .map(|c| c.key.len() + c.value.len() + c.value_type.len())
            .sum::<usize>()
}
