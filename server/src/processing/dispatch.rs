//! Dispatch of a processor's events to its head: the read-ahead buffer, the partitions busy
//! with an event in flight and their waiting events, and the in-flight set; and the
//! [`Asker`] that asks the head about one event.
//!
//! Invariants:
//! - At most `concurrency` events are in flight (1 for an unpartitioned processor, so it
//!   delivers in log order), never two of one partition (the event source): a partition's
//!   later events wait in its queue, at most `QUEUED_EVENTS_MAX` over all partitions, and
//!   follow in log order.
//! - At most about `BUFFERED_EVENTS_MAX` selected events are read ahead of what is in flight:
//!   the loop reads again only when fewer than half that are buffered.
//! - An event of a parked partition is never dispatched: its catch-up delivers it.
//! - In-flight events are polled by the processor's own task (no task per event).

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::Arc;

use annals_engine::{EventLogSequenceNumber, FailingPartition};
use futures_util::stream::{FuturesUnordered, StreamExt};
use parking_lot::Mutex;
use prometheus_client::metrics::counter::Counter;
use tokio_util::sync::CancellationToken;

use crate::api::wire::RequestContexts;
use crate::metrics::Attempts;
use crate::processing::parking;
use crate::processing::positions::Progress;
use crate::processing::processor::{Delivery, Handler, Outcome};
use crate::processing::slot::Pending;
use crate::processing::{Partitioning, TenantStatus};
use crate::proto::dolittle::runtime::events::processing::RetryProcessingState;
use crate::reverse_call::CallError;

/// Selected events read ahead of dispatch.
const BUFFERED_EVENTS_MAX: usize = 1024;
/// Events waiting behind an in-flight event of their partition, over all partitions.
const QUEUED_EVENTS_MAX: usize = 1024;

/// An event in flight, and what the head answered.
type InFlight = Pending<(Delivery, Result<Outcome, CallError>)>;

/// Asks the head about events: what each request carries, what is counted, and when the call
/// is over.
pub(crate) struct Asker<H> {
    pub(crate) handler: Arc<H>,
    /// The registration's execution context with this tenant; each request gets the event's
    /// correlation id.
    pub(crate) contexts: RequestContexts,
    /// An unpartitioned processor retries a failing event in flight; a partitioned one parks
    /// its partition.
    pub(crate) partitioning: Partitioning,
    /// Where management sees a failure retried in flight.
    pub(crate) status: Arc<Mutex<TenantStatus>>,
    pub(crate) processed: Counter,
    pub(crate) failures: Counter,
    /// The original's series of each attempt.
    pub(crate) attempts: Attempts,
    /// Cancelled when the call is over.
    pub(crate) ended: CancellationToken,
    /// Cancelled when the call drains: nothing new is asked.
    pub(crate) draining: CancellationToken,
}

impl<H: Handler> Asker<H> {
    /// Asks the head about `delivery` once; `retry` when it failed before.
    pub(crate) async fn once(
        &self,
        delivery: &Delivery,
        retry: Option<RetryProcessingState>,
    ) -> Result<Outcome, CallError> {
        self.attempt(delivery, retry).await
    }

    /// One attempt at `delivery`, timed and recorded by its event type when the head
    /// answered.
    async fn attempt(
        &self,
        delivery: &Delivery,
        retry: Option<RetryProcessingState>,
    ) -> Result<Outcome, CallError> {
        let started = std::time::Instant::now();
        let outcome = self.handler.handle(&self.contexts, delivery, retry).await;
        if let Ok(answered) = &outcome {
            self.attempts.record(
                delivery.event_type,
                started.elapsed().as_secs_f64(),
                matches!(answered, Outcome::Done { .. }),
            );
        }
        outcome
    }

    /// Delivers `delivery` in flight, answering with it (one shared handle per event).
    fn in_flight(self: &Arc<Self>, delivery: Delivery) -> InFlight {
        let asker = Arc::clone(self);
        Box::pin(async move {
            let outcome = asker.deliver(&delivery).await;
            (delivery, outcome)
        })
    }

    /// Delivers one event; an unpartitioned processor asks again after the head's timeout
    /// for as long as the head fails with retry, showing the failure to management meanwhile.
    async fn deliver(&self, delivery: &Delivery) -> Result<Outcome, CallError> {
        let mut retry = None;
        let mut attempts = 0u32;
        loop {
            // The call's end answers every outstanding request with `Ended`.
            let outcome = self.attempt(delivery, retry.take()).await?;
            match outcome {
                Outcome::Failed {
                    reason,
                    retry_after: Some(after),
                } if self.partitioning == Partitioning::Unpartitioned => {
                    self.failures.inc();
                    attempts = attempts.saturating_add(1);
                    self.status.lock().retrying =
                        Some(parking::failure(reason.clone(), Some(after), attempts));
                    // Nothing new is sent once the call drains, not even a retry: the event
                    // stays unprocessed and is the next one after the head registers again.
                    tokio::select! {
                        () = tokio::time::sleep(after) => {}
                        () = self.ended.cancelled() => return Err(CallError::Ended),
                        () = self.draining.cancelled() => return Err(CallError::Ended),
                    }
                    retry = Some(RetryProcessingState {
                        failure_reason: reason,
                        retry_count: attempts,
                    });
                }
                outcome => {
                    if attempts > 0 {
                        self.status.lock().retrying = None;
                    }
                    return Ok(outcome);
                }
            }
        }
    }
}

/// A pass's events between the read and the head's answer.
pub(crate) struct Dispatch {
    /// Read ahead of dispatch, in log order.
    buffer: VecDeque<Delivery>,
    /// Partitions with an event in flight, and their waiting events.
    /// (Hashed with aHash, keyed at random per map: two lookups per event, on ids the heads
    /// choose.)
    busy: HashMap<String, VecDeque<Delivery>, ahash::RandomState>,
    /// Events waiting in `busy`, over all partitions.
    queued: usize,
    in_flight: FuturesUnordered<InFlight>,
    /// Events in flight at most.
    concurrency: usize,
}

impl Dispatch {
    pub(crate) fn new(concurrency: usize) -> Dispatch {
        Dispatch {
            buffer: VecDeque::new(),
            busy: HashMap::default(),
            queued: 0,
            in_flight: FuturesUnordered::new(),
            concurrency,
        }
    }

    /// Sends buffered events to the head while there is room in flight and in the partition
    /// queues. A parked partition's events are dropped from `progress` (its catch-up
    /// delivers them); a busy partition's wait in its queue.
    pub(crate) fn fill<H: Handler>(
        &mut self,
        asker: &Arc<Asker<H>>,
        parked: &BTreeMap<String, FailingPartition>,
        progress: &mut Progress,
    ) {
        while self.in_flight.len() < self.concurrency && self.queued < QUEUED_EVENTS_MAX {
            let Some(delivery) = self.buffer.pop_front() else {
                break;
            };
            if parked.contains_key(&delivery.partition) {
                // Parked: its catch-up delivers it.
                progress.forget(delivery.sequence_number);
                continue;
            }
            if let Some(waiting) = self.busy.get_mut(&delivery.partition) {
                waiting.push_back(delivery);
                self.queued += 1;
                continue;
            }
            self.busy
                .insert(delivery.partition.clone(), VecDeque::new());
            self.in_flight.push(asker.in_flight(delivery));
        }
    }

    /// Whether nothing is in flight.
    pub(crate) fn is_idle(&self) -> bool {
        self.in_flight.is_empty()
    }

    /// Whether `partition` has an event in flight (or had, while draining).
    pub(crate) fn is_busy(&self, partition: &str) -> bool {
        self.busy.contains_key(partition)
    }

    /// The first buffered event's sequence number: where the main pass is.
    pub(crate) fn next_buffered(&self) -> Option<EventLogSequenceNumber> {
        self.buffer.front().map(|d| d.sequence_number)
    }

    /// Whether to read ahead: fewer than half of `BUFFERED_EVENTS_MAX` are buffered.
    pub(crate) fn wants_read(&self) -> bool {
        self.buffer.len() < BUFFERED_EVENTS_MAX / 2
    }

    /// Buffers an event just read.
    pub(crate) fn buffer(&mut self, delivery: Delivery) {
        self.buffer.push_back(delivery);
    }

    /// The next event the head answered about (none while nothing is in flight).
    pub(crate) async fn answered(&mut self) -> Option<(Delivery, Result<Outcome, CallError>)> {
        self.in_flight.next().await
    }

    /// `partition`'s event is done: its next waiting event goes in flight, else it is free.
    pub(crate) fn next_of<H: Handler>(&mut self, asker: &Arc<Asker<H>>, partition: &str) {
        match self.busy.get_mut(partition).and_then(VecDeque::pop_front) {
            Some(next) => {
                self.queued -= 1;
                self.in_flight.push(asker.in_flight(next));
            }
            None => {
                self.busy.remove(partition);
            }
        }
    }

    /// `partition` is parked: it is free, and its waiting events are given back (its
    /// catch-up delivers them).
    pub(crate) fn park(&mut self, partition: &str) -> VecDeque<Delivery> {
        let waiting = self.busy.remove(partition).unwrap_or_default();
        self.queued -= waiting.len();
        waiting
    }

    /// `partition` is free (nothing waits for it).
    pub(crate) fn free(&mut self, partition: &str) {
        self.busy.remove(partition);
    }
}
