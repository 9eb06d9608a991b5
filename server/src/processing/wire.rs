//! What processing sends a head on the wire: a committed event as the head sees it, and the
//! wall clock (Unix nanoseconds) processing stamps successes and failures with.
//!
//! Invariant: the wire event carries the event exactly as stored (sequence number, times,
//! execution context, event horizon origin); nothing here reads or writes the store.

use annals_engine::EventView;

use crate::api::convert;
use crate::proto::dolittle::runtime::events::CommittedEvent;

/// The wire form of a committed event.
pub(crate) fn committed_event(view: &EventView<'_>) -> CommittedEvent {
    let event = view.to_event();
    CommittedEvent {
        event_log_sequence_number: event.sequence_number.0,
        occurred: Some(convert::timestamp(event.occurred_ns)),
        event_source_id: event.event_source_id,
        execution_context: Some(convert::execution_context_to_wire(&event.execution_context)),
        event_type: Some(convert::event_type_to_wire(event.event_type)),
        public: event.public,
        content: event.content,
        external: event.event_horizon.is_some(),
        external_event_log_sequence_number: event
            .event_horizon
            .as_ref()
            .map_or(0, |h| h.external_sequence_number),
        external_event_received: event
            .event_horizon
            .as_ref()
            .map(|h| convert::timestamp(h.received_ns)),
    }
}

pub(crate) fn now_ns() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_nanos()).unwrap_or(i64::MAX))
}
