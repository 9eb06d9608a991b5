//! A processor's position and its durable writes (at-least-once).
//!
//! Invariants:
//! - The stored position is the earliest event not yet processed: the low-water mark of
//!   everything read (buffered, queued, in flight), else the read cursor. It never passes an
//!   event the head has not answered; a crash redelivers at most what was answered since the
//!   last write.
//! - It is written at most every `FLUSH_INTERVAL` while events are processed (in the
//!   background: delivery goes on meanwhile), at once on a failure, after a partition's
//!   catch-up, and when the processor stops.
//! - A filter that has caught up (nothing in flight) writes the events it included as soon as
//!   `INCLUDED_FLUSH_INTERVAL` has passed since the last write started (and a write under way
//!   has landed): its stream, and the event horizon serving it, lags the log by milliseconds.
//!   A filter that is behind keeps to `FLUSH_INTERVAL`, so the writes do not take the time it
//!   needs to catch up.
//! - Writes land in the order they were made: one write at a time, and a write waits for the
//!   one under way before it starts.
//! - A filter writes the events it included and its position in one atomic write, so its
//!   stream never holds an event twice; a projection writes the states changed by the events
//!   before the position with it, so no event is applied to a state twice. The state is published to management only once it is
//!   durable.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use annals_engine::{
    EventLogSequenceNumber, StateBatch, StreamPosition, StreamProcessorId, StreamProcessorState,
    Tenant,
};
use parking_lot::Mutex;

use crate::api::failure::Failure;
use crate::blocking::blocking;
use crate::processing::processor::{Delivery, TargetStream};
use crate::processing::read::Selected;
use crate::processing::slot::{Pending, Slot};
use crate::processing::TenantStatus;
use crate::projections::states::{Sent, TenantStates};

/// How often positions are written while events are processed.
const FLUSH_INTERVAL: Duration = Duration::from_millis(100);
/// How often a caught-up filter's included events are written at most: short, as the
/// stream's readers (the event horizon above all) wait for them. Writes go one at a time, so
/// under load they batch whatever arrived during the synced write before (measured at 2 000
/// events/s through the event horizon: 1 ms against 5 ms took the live delay's median from
/// 5.4 to 4.5 ms, with the producer's commits no slower).
const INCLUDED_FLUSH_INTERVAL: Duration = Duration::from_millis(1);

/// Events a filter included (sequence number, stream partition), not yet written.
pub(crate) type Included = Vec<(EventLogSequenceNumber, String)>;

/// Writes a processor's state (and a filter's included events) durably.
#[derive(Clone)]
pub(crate) struct Writer {
    pub(crate) tenant: Arc<Tenant>,
    pub(crate) id: StreamProcessorId,
    /// Filters: where included events go.
    pub(crate) target: Option<TargetStream>,
    /// Where management sees the state once it is durable.
    pub(crate) status: Arc<Mutex<TenantStatus>>,
    /// Projections: the states the head's answers changed, written with the position.
    pub(crate) states: Option<Arc<TenantStates>>,
}

impl Writer {
    /// A write of `state` (a snapshot) and the included events (a projection's: the states
    /// changed by the events before its position), published to management once durable.
    pub(crate) fn write(
        &self,
        state: &StreamProcessorState,
        included: Included,
    ) -> Pending<Result<(), Failure>> {
        let mut batch = StateBatch::new();
        let sent = self
            .states
            .as_ref()
            .map(|states| states.send(state.event_log_position, &mut batch));
        self.write_batch(state, included, batch, sent)
    }

    /// A write of `state` that starts the processor over: a projection's states and their
    /// history are dropped with it.
    pub(crate) fn write_reset(&self, state: &StreamProcessorState) -> Pending<Result<(), Failure>> {
        let mut batch = StateBatch::new();
        if let Some(states) = &self.states {
            states.reset(&mut batch);
        }
        self.write_batch(state, Vec::new(), batch, None)
    }

    fn write_batch(
        &self,
        state: &StreamProcessorState,
        included: Included,
        mut batch: StateBatch,
        sent: Option<Sent>,
    ) -> Pending<Result<(), Failure>> {
        let tenant = Arc::clone(&self.tenant);
        let id = self.id;
        let target = self.target;
        let snapshot = state.clone();
        let status = Arc::clone(&self.status);
        let states = self.states.clone();
        Box::pin(async move {
            let published = snapshot.clone();
            blocking(move || {
                batch.put_stream_processor(&id, &snapshot);
                let entries: Vec<(EventLogSequenceNumber, &str)> = included
                    .iter()
                    .map(|(seq, partition)| (*seq, partition.as_str()))
                    .collect();
                match target {
                    None => tenant.write_state(batch)?,
                    Some(TargetStream::Scoped { scope, stream }) => {
                        let end = tenant.stream_end(scope, stream)?;
                        tenant.append_to_stream_with_state(scope, stream, end, &entries, batch)?;
                    }
                    Some(TargetStream::Public { stream }) => {
                        let end = tenant.public_stream_end(stream)?;
                        tenant.append_to_public_stream_with_state(stream, end, &entries, batch)?;
                    }
                }
                Ok(())
            })
            .await?;
            if let (Some(states), Some(sent)) = (states, sent) {
                states.landed(sent);
            }
            status.lock().state = published;
            Ok(())
        })
    }
}

/// What a pass's position writes want next.
pub(crate) enum Writes {
    /// A flush is due: something changed since the last write.
    Due,
    /// The background write under way has landed.
    Landed(Result<(), Failure>),
}

/// A pass's bookkeeping of what it read and what is done (what its position is derived
/// from), and its position writes.
pub(crate) struct Progress {
    /// Read but not finished (buffered, queued, in flight), by sequence number, with their
    /// stream positions: the lowest is the position to store.
    unfinished: BTreeMap<EventLogSequenceNumber, StreamPosition>,
    /// The next event-log position to read.
    cursor: EventLogSequenceNumber,
    /// The stream position the next selected event gets.
    next_position: StreamPosition,
    /// Included events not yet written (filters).
    included: Included,
    /// Something changed since the last write was made.
    dirty: bool,
    /// Paces the background writes.
    flush: tokio::time::Interval,
    /// When the last background write started (paces the writes of included events).
    flushed_at: tokio::time::Instant,
    /// A position write under way in the background.
    writing: Slot<Result<(), Failure>>,
    writer: Writer,
}

impl Progress {
    /// Starts at `state`'s position, nothing read yet.
    pub(crate) fn new(state: &StreamProcessorState, writer: Writer) -> Progress {
        let mut flush = tokio::time::interval(FLUSH_INTERVAL);
        flush.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        Progress {
            unfinished: BTreeMap::new(),
            cursor: state.event_log_position,
            next_position: state.position,
            included: Vec::new(),
            dirty: false,
            flush,
            flushed_at: tokio::time::Instant::now(),
            writing: Slot::empty(),
            writer,
        }
    }

    /// The next event-log position to read.
    pub(crate) fn cursor(&self) -> EventLogSequenceNumber {
        self.cursor
    }

    /// Gives a selected event just read its stream position; it is unfinished until done or
    /// forgotten.
    pub(crate) fn read(&mut self, selected: Selected) -> Delivery {
        self.unfinished
            .insert(selected.sequence_number, self.next_position);
        let delivery = selected.at(self.next_position);
        self.next_position = self.next_position.next();
        delivery
    }

    /// A read ended at `next`: the cursor moves there.
    pub(crate) fn read_to(&mut self, next: EventLogSequenceNumber) {
        if next != self.cursor {
            self.dirty = true;
        }
        self.cursor = next;
    }

    /// The head processed an event (a filter: and included it in `include`).
    pub(crate) fn done(
        &mut self,
        sequence_number: EventLogSequenceNumber,
        include: Option<String>,
    ) {
        self.unfinished.remove(&sequence_number);
        if let Some(partition) = include {
            self.included.push((sequence_number, partition));
        }
        self.dirty = true;
    }

    /// An event the main pass no longer delivers (its partition is parked: its catch-up
    /// delivers it).
    pub(crate) fn forget(&mut self, sequence_number: EventLogSequenceNumber) {
        self.unfinished.remove(&sequence_number);
    }

    /// Events a partition's catch-up included.
    pub(crate) fn include(&mut self, caught: Included) {
        self.included.extend(caught);
    }

    /// Nothing changed since the last write (it was just made): no flush until more is done.
    pub(crate) fn clean(&mut self) {
        self.dirty = false;
    }

    /// Whether `writes` has anything to wait for.
    pub(crate) fn has_writes(&self) -> bool {
        self.dirty || !self.writing.is_empty()
    }

    /// The next thing the position writes want: the write under way to land, else a flush:
    /// `INCLUDED_FLUSH_INTERVAL` after the last one when a filter included events and has
    /// `caught_up` (nothing in flight), else at the next tick (only while something changed:
    /// see `has_writes`).
    pub(crate) async fn writes(&mut self, caught_up: bool) -> Writes {
        if self.writing.is_empty() {
            if caught_up && !self.included.is_empty() {
                tokio::time::sleep_until(self.flushed_at + INCLUDED_FLUSH_INTERVAL).await;
            } else {
                self.flush.tick().await;
            }
            Writes::Due
        } else {
            Writes::Landed(self.writing.finished().await)
        }
    }

    /// Starts writing the position reached in the background: delivery goes on while it is
    /// synced.
    pub(crate) fn flush(&mut self, state: &mut StreamProcessorState) {
        self.advance(state);
        let write = self.writer.write(state, std::mem::take(&mut self.included));
        self.writing.put(write);
        self.flushed_at = tokio::time::Instant::now();
        self.dirty = false;
    }

    /// Waits for a position write under way to land (so writes stay in order).
    pub(crate) async fn written(&mut self) -> Result<(), Failure> {
        match self.writing.take() {
            Some(earlier) => earlier.await,
            None => Ok(()),
        }
    }

    /// Writes the position reached with the included events now (after a background write
    /// under way, so writes stay in order), and publishes it to management.
    pub(crate) async fn settle(&mut self, state: &mut StreamProcessorState) -> Result<(), Failure> {
        self.written().await?;
        self.advance(state);
        self.writer
            .write(state, std::mem::take(&mut self.included))
            .await
    }

    /// Sets the position to store: the earliest unfinished event, else the read cursor.
    fn advance(&self, state: &mut StreamProcessorState) {
        let (event_log_position, position) = self
            .unfinished
            .iter()
            .next()
            .map_or((self.cursor, self.next_position), |(&seq, &pos)| (seq, pos));
        state.event_log_position = event_log_position;
        state.position = position;
    }
}
