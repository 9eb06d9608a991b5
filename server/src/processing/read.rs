//! Reads of the scope's event log for a processor: a batch of at most `READ_RECORDS_MAX`
//! records (`READ_BYTES_MAX` payload bytes) at a time on a blocking thread, keeping the
//! events its handler selects within its bounds, decoded into wire events there.
//!
//! Invariants:
//! - A read's `next` is the event-log position after the last record it read: reading from
//!   there neither skips nor repeats a record.
//! - Stream positions count every selected event, also in a partition's catch-up, which
//!   decodes only its own partition's events.
//! - A live read first waits for the log to reach its start, without polling: catch-up turns
//!   into live delivery at one position, with no gap and no duplicate.

use std::sync::Arc;

use annals_engine::{EventLogSequenceNumber, Log, StreamPosition};
use bytes::Bytes;
use uuid::Uuid;

use crate::api::committed::{committed_event, CommittedEventEncoder};
use crate::api::failure::Failure;
use crate::blocking::blocking;
use crate::processing::processor::{Bounds, Delivery, Handler};
use crate::processing::slot::Slot;
use crate::proto::dolittle::runtime::events::CommittedEvent;

/// Records per read of the log.
const READ_RECORDS_MAX: usize = 512;
/// Payload bytes per read of the log.
const READ_BYTES_MAX: usize = 1 << 20;

/// The event of a delivery that carries none (see [`Selected::event`]), shared by all.
static NO_EVENT: std::sync::LazyLock<Arc<CommittedEvent>> =
    std::sync::LazyLock::new(|| Arc::new(CommittedEvent::default()));

/// A selected event, read but not yet given its stream position.
pub(crate) struct Selected {
    pub(crate) sequence_number: EventLogSequenceNumber,
    /// Its partition: the event source id.
    pub(crate) partition: String,
    pub(crate) correlation_id: Uuid,
    /// Its event type's id.
    pub(crate) event_type: Uuid,
    /// The wire event (none when a partition's catch-up reads another partition's event, or
    /// when the handler takes it encoded).
    pub(crate) event: Option<Arc<CommittedEvent>>,
    /// The wire event encoded, for a handler that takes it so (see `Handler::encodes_events`);
    /// else empty.
    pub(crate) encoded: Bytes,
}

impl Selected {
    /// The event to deliver at stream position `position`.
    pub(crate) fn at(self, position: StreamPosition) -> Delivery {
        Delivery {
            sequence_number: self.sequence_number,
            position,
            partition: self.partition,
            correlation_id: self.correlation_id,
            event_type: self.event_type,
            event: self.event.unwrap_or_else(|| Arc::clone(&NO_EVENT)),
            encoded: self.encoded,
        }
    }
}

/// One read: the selected events and the position after the read.
pub(crate) struct Read {
    pub(crate) events: Vec<Selected>,
    pub(crate) next: EventLogSequenceNumber,
}

/// The live read under way, kept across turns of the loop.
pub(crate) type Reading = Slot<Result<Read, Failure>>;

/// Reads a processor's events from its scope's log.
pub(crate) struct Reader<H> {
    pub(crate) log: Arc<Log>,
    pub(crate) handler: Arc<H>,
    pub(crate) bounds: Bounds,
}

impl<H: Handler> Reader<H> {
    /// Starts a read of selected events from `from` in `reading` (on a blocking thread, after
    /// waiting for the log to reach it).
    pub(crate) fn start(&self, reading: &mut Reading, from: EventLogSequenceNumber) {
        let log = Arc::clone(&self.log);
        let handler = Arc::clone(&self.handler);
        let bounds = self.bounds;
        reading.put(Box::pin(async move {
            log.wait_for_async(from).await;
            read_selected(log, handler, bounds, from, None).await
        }));
    }

    /// Reads one batch from `from` for the catch-up of `partition` (only its events are
    /// decoded; positions count every selected event).
    pub(crate) async fn partition(
        &self,
        from: EventLogSequenceNumber,
        partition: &str,
    ) -> Result<Read, Failure> {
        read_selected(
            Arc::clone(&self.log),
            Arc::clone(&self.handler),
            self.bounds,
            from,
            Some(partition.to_owned()),
        )
        .await
    }
}

/// Reads one batch from `from` and keeps the selected events (of `partition` only, when
/// given, though positions count every selected event), decoded for the wire.
async fn read_selected<H: Handler>(
    log: Arc<Log>,
    handler: Arc<H>,
    bounds: Bounds,
    from: EventLogSequenceNumber,
    partition: Option<String>,
) -> Result<Read, Failure> {
    blocking(move || {
        let batch = log.read(from, READ_RECORDS_MAX, READ_BYTES_MAX)?;
        let encodes = handler.encodes_events();
        let mut encoder = CommittedEventEncoder::default();
        let mut events = Vec::new();
        for view in batch.views() {
            let view = view?;
            if bounds.not_before_ns.is_some_and(|at| view.occurred_ns < at)
                || bounds.stop_at_ns.is_some_and(|at| view.occurred_ns >= at)
                || !handler.selects(&view)
            {
                continue;
            }
            let wanted = partition
                .as_deref()
                .is_none_or(|p| p == view.event_source_id);
            // A partition's catch-up counts every selected event for positions but decodes
            // only its own.
            let (event, encoded) = match (wanted, encodes) {
                (false, _) => (None, Bytes::new()),
                (true, false) => (Some(Arc::new(committed_event(&view))), Bytes::new()),
                // Encoded here, off the async workers, once for every request about it.
                (true, true) => (None, encoder.encode(&view)),
            };
            events.push(Selected {
                sequence_number: view.sequence_number,
                partition: view.event_source_id.to_owned(),
                correlation_id: view.correlation_id,
                event_type: view.event_type.id,
                event,
                encoded,
            });
        }
        Ok(Read {
            events,
            next: batch.next().unwrap_or(from),
        })
    })
    .await
}
