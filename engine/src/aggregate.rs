//! Commits for aggregates and what fetching an aggregate returns (the types are defined in
//! `annals-engine-types`, buildable without RocksDB), and how a fetch counts an event's size.

use annals_log::Event;

pub use annals_engine_types::{
    AggregateCommit, AggregateCommitReceipt, AggregateEvent, AggregateEvents,
};

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
