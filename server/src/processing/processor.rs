//! One tenant's processor: reads the scope's event log from its position, asks the head about
//! each selected event through a [`Handler`], and keeps its position durably.
//!
//! Reading: the log is read in batches on a blocking thread (`READ_RECORDS_MAX` records) and
//! the selected events are decoded into wire events there; the loop keeps at most
//! `BUFFERED_EVENTS_MAX` of them ahead of what is in flight, and reads again only when below
//! that. When it is at the end of the log it waits for the next commit without polling, so
//! catch-up turns into live delivery at one position: no gap, no duplicate.
//!
//! Ordering and concurrency: an unpartitioned processor has one event in flight, in log
//! order. A partitioned one has up to `concurrency` in flight, never two of one partition (the
//! event source): a partition's later events wait in its queue (at most `QUEUED_EVENTS_MAX`
//! over all partitions).
//!
//! Failures: an unpartitioned processor retries an event the head failed with `retry` after
//! the head's timeout, for as long as it asks; a failure without retry stops this tenant's
//! processor until the head registers again (the event is retried then) or management resets
//! it. A partitioned processor parks the partition instead (a failing partition) and goes on
//! with the others; the parked partition's events are skipped by the main pass and delivered
//! by a catch-up of that partition alone when its retry time comes (or at the next
//! registration for a failure without retry). The catch-up runs with nothing else in flight,
//! from the failed event to where the main pass is, so no event of the partition is missed
//! or delivered twice.
//!
//! Positions (at-least-once): the stored position is the earliest event not yet processed
//! (the low-water mark of everything read), so it never passes an event the head has not
//! answered. It is written at most every `FLUSH_INTERVAL` while events are processed, at once
//! on a failure, and when the processor stops; a crash redelivers at most what was answered
//! since the last write. A filter writes the events it included and its position in one atomic
//! write, so its stream never holds an event twice.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use annals_engine::{
    EventLogSequenceNumber, EventView, FailingPartition, Log, ProcessingFailure, ScopeId,
    StateBatch, StreamProcessorId, StreamProcessorState, Tenant,
};
use futures_util::stream::{FuturesUnordered, StreamExt};
use parking_lot::Mutex;
use prometheus_client::metrics::counter::Counter;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use crate::api::convert;
use crate::api::failure::Failure;
use crate::api::ids;
use crate::processing::{Command, TenantStatus};
use crate::proto::dolittle::execution::ExecutionContext as WireExecutionContext;
use crate::proto::dolittle::runtime::events::processing::RetryProcessingState;
use crate::proto::dolittle::runtime::events::CommittedEvent;
use crate::reverse_call::CallError;

/// Records per read of the log.
const READ_RECORDS_MAX: usize = 512;
/// Payload bytes per read of the log.
const READ_BYTES_MAX: usize = 1 << 20;
/// Selected events read ahead of dispatch.
const BUFFERED_EVENTS_MAX: usize = 1024;
/// Events waiting behind an in-flight event of their partition, over all partitions.
const QUEUED_EVENTS_MAX: usize = 1024;
/// How often positions are written while events are processed.
const FLUSH_INTERVAL: Duration = Duration::from_millis(100);

/// An event to deliver.
#[derive(Debug, Clone)]
pub(crate) struct Delivery {
    /// Its event-log sequence number.
    pub(crate) sequence_number: u64,
    /// Its stream position (the count of selected events before it).
    pub(crate) position: u64,
    /// Its partition: the event source id.
    pub(crate) partition: String,
    /// The event's correlation id (the request's execution context carries it).
    pub(crate) correlation_id: Uuid,
    /// The event as the head sees it.
    pub(crate) event: Arc<CommittedEvent>,
}

/// What the head answered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Outcome {
    /// Processed; a filter says whether it included the event, and in which stream partition.
    Done { include: Option<String> },
    /// Failed: `retry_after` when the head asks to be asked again after that long.
    Failed {
        reason: String,
        retry_after: Option<Duration>,
    },
}

impl Outcome {
    /// A head's failure: retried after its timeout when it asks for a retry.
    pub(crate) fn failed(
        failure: crate::proto::dolittle::runtime::events::processing::ProcessorFailure,
    ) -> Outcome {
        Outcome::Failed {
            reason: failure.reason,
            retry_after: failure.retry.then(|| {
                crate::reverse_call::duration(failure.retry_timeout.as_ref()).unwrap_or_default()
            }),
        }
    }
}

/// Asks the head about one event (an event handler's handle request, a filter's filter
/// request).
pub(crate) trait Handler: Send + Sync + 'static {
    /// Whether the head is asked about this event at all (event types, public flag).
    fn selects(&self, event: &EventView<'_>) -> bool;

    /// Asks the head about `delivery` with the request's execution context; `retry` when the
    /// event failed before.
    fn handle(
        &self,
        execution_context: WireExecutionContext,
        delivery: &Delivery,
        retry: Option<RetryProcessingState>,
    ) -> impl Future<Output = Result<Outcome, CallError>> + Send;
}

/// Where a processor without a stored position starts, and what it skips.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Bounds {
    /// The first event-log position when nothing is stored.
    pub(crate) start: StartFrom,
    /// Events that occurred before this (Unix ns) are not delivered.
    pub(crate) not_before_ns: Option<i64>,
    /// Events that occurred at or after this (Unix ns) are not delivered.
    pub(crate) stop_at_ns: Option<i64>,
}

/// Where a new processor starts.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) enum StartFrom {
    /// At the first event.
    #[default]
    Start,
    /// After the last event committed when it registers.
    Latest,
    /// At an event-log sequence number.
    Position(u64),
}

/// Where a filter writes what it includes.
#[derive(Debug, Clone, Copy)]
pub(crate) struct TargetStream {
    pub(crate) scope: ScopeId,
    pub(crate) stream: Uuid,
}

/// Everything one tenant's processor runs with.
pub(crate) struct TenantProcessor<H: Handler> {
    pub(crate) handler: Arc<H>,
    pub(crate) tenant: Arc<Tenant>,
    pub(crate) log: Arc<Log>,
    pub(crate) id: StreamProcessorId,
    pub(crate) partitioned: bool,
    /// Events in flight at most (1 for unpartitioned processors).
    pub(crate) concurrency: usize,
    pub(crate) bounds: Bounds,
    /// The registration's execution context with this tenant; each request gets the event's
    /// correlation id.
    pub(crate) execution_context: WireExecutionContext,
    pub(crate) target: Option<TargetStream>,
    pub(crate) status: Arc<Mutex<TenantStatus>>,
    pub(crate) commands: mpsc::Receiver<Command>,
    pub(crate) ended: CancellationToken,
    pub(crate) draining: CancellationToken,
    pub(crate) processed: Counter,
    pub(crate) failures: Counter,
}

/// Why a pass ended.
enum Exit {
    /// The call ended, or drained: stop.
    Stop,
    /// Management asked to start over.
    Reprocess(u64, tokio::sync::oneshot::Sender<Result<(), Failure>>),
}

/// A pass's bookkeeping of what it read and what is done: what its position is derived from.
struct Progress {
    /// Read but not finished (buffered, queued, in flight), by sequence number, with their
    /// stream positions: the lowest is the position to store.
    unfinished: BTreeMap<u64, u64>,
    /// The next event-log position to read.
    cursor: u64,
    /// The stream position the next selected event gets.
    next_position: u64,
    /// Included events not yet written (filters).
    included: Vec<(u64, String)>,
    /// A position write under way in the background.
    writing: Option<Writing>,
}

impl Progress {
    /// Waits for a position write under way to land (so writes stay in order).
    async fn written(&mut self) -> Result<(), Failure> {
        match self.writing.take() {
            Some(earlier) => earlier.await,
            None => Ok(()),
        }
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

/// How a parked partition's catch-up ended.
enum CatchUp {
    /// It ran (to the end, or to a new failure); the events it included.
    Caught(Vec<(u64, String)>),
    /// The call ended.
    Ended,
    /// Management asked to start over.
    Reprocess(u64, tokio::sync::oneshot::Sender<Result<(), Failure>>),
}

/// One read: the selected events and the position after the read.
struct Read {
    events: Vec<(u64, String, Uuid, CommittedEvent)>,
    next: u64,
}

type Reading = Pin<Box<dyn Future<Output = Result<Read, Failure>> + Send>>;
/// An event in flight, polled by the processor's own task (no task per event).
type InFlight = Pin<Box<dyn Future<Output = (Delivery, Result<Outcome, CallError>)> + Send>>;
/// A position write under way in the background.
type Writing = Pin<Box<dyn Future<Output = Result<(), Failure>> + Send>>;

impl<H: Handler> TenantProcessor<H> {
    /// Runs until the call ends or drains; the position reached is durable when it returns.
    pub(crate) async fn run(mut self) {
        let mut state = match self.load().await {
            Ok(state) => state,
            Err(failure) => {
                tracing::error!(reason = %failure.reason, "cannot read a processor's state");
                return;
            }
        };
        loop {
            let exit = self.pass(&mut state).await;
            match exit {
                Ok(Exit::Stop) => return,
                Ok(Exit::Reprocess(event_log_position, done)) => {
                    state.position = 0;
                    state.event_log_position = event_log_position;
                    state.failure = None;
                    state.failing_partitions.clear();
                    self.status.lock().retrying = None;
                    let written = self.write_later(&state, Vec::new()).await;
                    let _ = done.send(written.clone());
                    if let Err(failure) = written {
                        tracing::error!(reason = %failure.reason, "cannot reset a processor");
                        return;
                    }
                }
                Err(failure) => {
                    tracing::error!(
                        processor = %self.id.processor,
                        tenant = %self.tenant.id().0,
                        reason = %failure.reason,
                        "a processor stopped on an error of the store"
                    );
                    return;
                }
            }
        }
    }

    /// The stored state, or a new one. Failures stored are retried now: a head that
    /// registers again may have been fixed.
    async fn load(&self) -> Result<StreamProcessorState, Failure> {
        let tenant = Arc::clone(&self.tenant);
        let id = self.id;
        let stored =
            crate::runtime::blocking(move || Ok(tenant.stream_processor_state(&id)?)).await?;
        let now = now_ns();
        let state = match stored {
            Some(mut state) => {
                state.failure = None;
                for partition in state.failing_partitions.values_mut() {
                    partition.failure.retry_time_ns = now;
                }
                state
            }
            None => StreamProcessorState {
                event_log_position: match self.bounds.start {
                    StartFrom::Start => 0,
                    StartFrom::Latest => self.log.next_sequence_number().0,
                    StartFrom::Position(position) => position,
                },
                ..StreamProcessorState::default()
            },
        };
        self.status.lock().state = state.clone();
        Ok(state)
    }

    /// Processes from `state` until the call ends, drains, or management resets it. `state`
    /// is written before returning.
    async fn pass(&mut self, state: &mut StreamProcessorState) -> Result<Exit, Failure> {
        let mut progress = Progress {
            unfinished: BTreeMap::new(),
            cursor: state.event_log_position,
            next_position: state.position,
            included: Vec::new(),
            writing: None,
        };
        let mut buffer: VecDeque<Delivery> = VecDeque::new();
        // Partitions with an event in flight, and their waiting events.
        let mut busy: HashMap<String, VecDeque<Delivery>> = HashMap::new();
        let mut queued = 0usize;
        let mut in_flight: FuturesUnordered<InFlight> = FuturesUnordered::new();
        let mut reading: Option<Reading> = None;
        let mut stopped = state.failure.is_some();
        let mut dirty = false;
        let mut commands_open = true;
        // Registered once: a fresh waiter per turn of the loop would cost a lock each time.
        let ended = self.ended.clone().cancelled_owned();
        tokio::pin!(ended);
        let drained = self.draining.clone().cancelled_owned();
        tokio::pin!(drained);
        let mut flush = tokio::time::interval(FLUSH_INTERVAL);
        flush.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);

        loop {
            let draining = self.draining.is_cancelled();
            let due = Self::due_partition(state, &busy);
            if !stopped && !draining && due.is_none() {
                while in_flight.len() < self.concurrency && queued < QUEUED_EVENTS_MAX {
                    let Some(delivery) = buffer.pop_front() else {
                        break;
                    };
                    if state.failing_partitions.contains_key(&delivery.partition) {
                        // Parked: its catch-up delivers it.
                        progress.unfinished.remove(&delivery.sequence_number);
                        continue;
                    }
                    if let Some(waiting) = busy.get_mut(&delivery.partition) {
                        waiting.push_back(delivery);
                        queued += 1;
                        continue;
                    }
                    busy.insert(delivery.partition.clone(), VecDeque::new());
                    self.spawn(&mut in_flight, delivery);
                }
            }
            if in_flight.is_empty() {
                if draining {
                    self.settle(state, &mut progress).await?;
                    return Ok(Exit::Stop);
                }
                if let Some(partition) = due {
                    let upto = buffer
                        .front()
                        .map_or(progress.cursor, |d| d.sequence_number);
                    match self.catch_up(state, &partition, upto).await? {
                        CatchUp::Caught(caught) => progress.included.extend(caught),
                        CatchUp::Ended => {
                            self.settle(state, &mut progress).await?;
                            return Ok(Exit::Stop);
                        }
                        CatchUp::Reprocess(event_log_position, done) => {
                            progress.written().await?;
                            return Ok(Exit::Reprocess(event_log_position, done));
                        }
                    }
                    self.settle(state, &mut progress).await?;
                    continue;
                }
            }
            if reading.is_none() && !stopped && buffer.len() < BUFFERED_EVENTS_MAX / 2 {
                reading = Some(self.read_from(progress.cursor));
            }
            let retry_at = state
                .failing_partitions
                .values()
                .map(|p| p.failure.retry_time_ns)
                .min()
                .filter(|&at| at != i64::MAX);
            let retry_sleep = async {
                match retry_at {
                    Some(at) => tokio::time::sleep(until(at)).await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                biased;
                () = &mut ended => {
                    self.settle(state, &mut progress).await?;
                    return Ok(Exit::Stop);
                }
                command = self.commands.recv(), if commands_open => {
                    // No sender left: nobody can command it any more (not a reason to stop).
                    let Some(Command::Reprocess { event_log_position, done }) = command else {
                        commands_open = false;
                        continue;
                    };
                    // A position write under way must land before the reset's, or it would
                    // undo it.
                    progress.written().await?;
                    return Ok(Exit::Reprocess(event_log_position, done));
                }
                Some((delivery, outcome)) = in_flight.next(), if !in_flight.is_empty() => {
                    let Ok(outcome) = outcome else {
                        // The call is over (its stream may have closed before the reader
                        // noticed): end it for everyone, the next turn stops.
                        self.ended.cancel();
                        continue;
                    };
                    match outcome {
                        Outcome::Done { include } => {
                            progress.unfinished.remove(&delivery.sequence_number);
                            self.processed.inc();
                            state.last_successfully_processed_ns = now_ns();
                            if let Some(partition) = include {
                                progress.included.push((delivery.sequence_number, partition));
                            }
                            dirty = true;
                            if !self.draining.is_cancelled() {
                                // (Draining: queued events stay progress.unfinished, where the stored
                                // position waits for them.)
                                let next =
                                    busy.get_mut(&delivery.partition).and_then(VecDeque::pop_front);
                                match next {
                                    Some(next) => {
                                        queued -= 1;
                                        self.spawn(&mut in_flight, next);
                                    }
                                    None => {
                                        busy.remove(&delivery.partition);
                                    }
                                }
                            }
                        }
                        Outcome::Failed { reason, retry_after } => {
                            self.failures.inc();
                            let now = now_ns();
                            let failure = ProcessingFailure {
                                reason,
                                retry_time_ns: retry_time(now, retry_after),
                                processing_attempts: 1,
                                last_failed_ns: now,
                            };
                            if self.partitioned {
                                for waiting in busy.remove(&delivery.partition).unwrap_or_default() {
                                    progress.unfinished.remove(&waiting.sequence_number);
                                    queued -= 1;
                                }
                                progress.unfinished.remove(&delivery.sequence_number);
                                state.failing_partitions.insert(
                                    delivery.partition.clone(),
                                    FailingPartition {
                                        position: delivery.position,
                                        event_log_position: delivery.sequence_number,
                                        failure,
                                    },
                                );
                            } else {
                                tracing::warn!(
                                    processor = %self.id.processor,
                                    tenant = %self.tenant.id().0,
                                    reason = %failure.reason,
                                    "the head failed an event without retry: this tenant's \
                                     processor stops until the head registers again"
                                );
                                busy.remove(&delivery.partition);
                                state.failure = Some(failure);
                                stopped = true;
                            }
                            self.status.lock().retrying = None;
                            self.settle(state, &mut progress).await?;
                            dirty = false;
                        }
                    }
                }
                read = in_slot(&mut reading), if reading.is_some() => {
                    reading = None;
                    let read = read?;
                    for (sequence_number, partition, correlation_id, event) in read.events {
                        progress.unfinished.insert(sequence_number, progress.next_position);
                        buffer.push_back(Delivery {
                            sequence_number,
                            position: progress.next_position,
                            partition,
                            correlation_id,
                            event: Arc::new(event),
                        });
                        progress.next_position += 1;
                    }
                    if read.next != progress.cursor {
                        dirty = true;
                    }
                    progress.cursor = read.next;
                }
                // Only while nothing is due: a due partition waits for the events in flight,
                // whose completions wake the loop (a past deadline here would spin it).
                () = retry_sleep, if due.is_none() && !draining => {}
                _ = flush.tick(), if dirty && progress.writing.is_none() => {
                    // In the background: delivery goes on while the position is synced.
                    progress.advance(state);
                    progress.writing = Some(self.write_later(state, std::mem::take(&mut progress.included)));
                    dirty = false;
                }
                written = in_slot(&mut progress.writing), if progress.writing.is_some() => {
                    progress.writing = None;
                    written?;
                }
                () = &mut drained, if !draining => {}
            }
        }
    }

    /// A parked partition whose retry time has come (none while a partition is busy with it).
    fn due_partition(
        state: &StreamProcessorState,
        busy: &HashMap<String, VecDeque<Delivery>>,
    ) -> Option<String> {
        let now = now_ns();
        state
            .failing_partitions
            .iter()
            .filter(|(partition, p)| {
                p.failure.retry_time_ns <= now && !busy.contains_key(*partition)
            })
            .min_by_key(|(_, p)| p.failure.retry_time_ns)
            .map(|(partition, _)| partition.clone())
    }

    fn spawn(&self, in_flight: &mut FuturesUnordered<InFlight>, delivery: Delivery) {
        let handler = Arc::clone(&self.handler);
        let context = self.context_for(&delivery);
        let status = Arc::clone(&self.status);
        let failures = self.failures.clone();
        let ended = self.ended.clone();
        let draining = self.draining.clone();
        let retries = !self.partitioned;
        in_flight.push(Box::pin(async move {
            let outcome = deliver(
                &*handler, context, &delivery, None, retries, &status, &failures, &ended, &draining,
            )
            .await;
            (delivery, outcome)
        }));
    }

    fn context_for(&self, delivery: &Delivery) -> WireExecutionContext {
        let mut context = self.execution_context.clone();
        context.correlation_id = Some(ids::to_wire(delivery.correlation_id));
        context
    }

    /// Delivers a parked partition's events from its failed event up to `upto` (where the
    /// main pass is), in order, hearing management meanwhile. The partition is unparked when
    /// all succeeded, else its failure is updated. The included events are kept in memory
    /// until it ends: at most one stretch of the log between the failed event and the main
    /// pass, and the main pass waits meanwhile.
    async fn catch_up(
        &mut self,
        state: &mut StreamProcessorState,
        partition: &str,
        upto: u64,
    ) -> Result<CatchUp, Failure> {
        let Some(parked) = state.failing_partitions.get(partition).cloned() else {
            return Ok(CatchUp::Caught(Vec::new()));
        };
        let mut included = Vec::new();
        let mut commands_open = true;
        let mut from = parked.event_log_position;
        let mut position = parked.position;
        while from < upto {
            let read = self.read(from, Some(partition)).await?;
            let next = read.next.min(upto);
            for (sequence_number, event_partition, correlation_id, event) in read.events {
                if sequence_number >= upto {
                    break;
                }
                let this_position = position;
                position += 1;
                if event_partition != partition {
                    continue;
                }
                if self.draining.is_cancelled() {
                    // Nothing new once the call drains: the partition stays parked at this
                    // event and is caught up after the head registers again.
                    if let Some(parked) = state.failing_partitions.get_mut(partition) {
                        if parked.event_log_position != sequence_number {
                            // This event never failed: the partition is only behind.
                            parked.failure.reason =
                                "behind: its catch-up stopped when the head disconnected".into();
                            parked.failure.processing_attempts = 0;
                        }
                        parked.position = this_position;
                        parked.event_log_position = sequence_number;
                        parked.failure.retry_time_ns = now_ns();
                    }
                    return Ok(CatchUp::Caught(included));
                }
                let delivery = Delivery {
                    sequence_number,
                    position: this_position,
                    partition: event_partition,
                    correlation_id,
                    event: Arc::new(event),
                };
                let retry = (sequence_number == parked.event_log_position
                    && parked.failure.processing_attempts > 0)
                    .then(|| RetryProcessingState {
                        failure_reason: parked.failure.reason.clone(),
                        retry_count: parked.failure.processing_attempts,
                    });
                let context = self.context_for(&delivery);
                let handling = self.handler.handle(context, &delivery, retry);
                tokio::pin!(handling);
                // Management is heard while the head takes its time (a reset ends the
                // catch-up; the answer no longer matters).
                let outcome = loop {
                    tokio::select! {
                        outcome = &mut handling => break outcome,
                        () = self.ended.cancelled() => break Err(CallError::Ended),
                        command = self.commands.recv(), if commands_open => match command {
                            Some(Command::Reprocess { event_log_position, done }) => {
                                return Ok(CatchUp::Reprocess(event_log_position, done));
                            }
                            None => commands_open = false,
                        },
                    }
                };
                match outcome {
                    Err(CallError::Ended) => return Ok(CatchUp::Ended),
                    Ok(Outcome::Done { include }) => {
                        self.processed.inc();
                        state.last_successfully_processed_ns = now_ns();
                        if let Some(p) = include {
                            included.push((sequence_number, p));
                        }
                    }
                    Ok(Outcome::Failed {
                        reason,
                        retry_after,
                    }) => {
                        self.failures.inc();
                        let now = now_ns();
                        let attempts = if sequence_number == parked.event_log_position {
                            parked.failure.processing_attempts.saturating_add(1)
                        } else {
                            1
                        };
                        state.failing_partitions.insert(
                            partition.to_owned(),
                            FailingPartition {
                                position: delivery.position,
                                event_log_position: sequence_number,
                                failure: ProcessingFailure {
                                    reason,
                                    retry_time_ns: retry_time(now, retry_after),
                                    processing_attempts: attempts,
                                    last_failed_ns: now,
                                },
                            },
                        );
                        return Ok(CatchUp::Caught(included));
                    }
                }
            }
            if next <= from {
                break;
            }
            from = next;
        }
        state.failing_partitions.remove(partition);
        Ok(CatchUp::Caught(included))
    }

    /// Starts a read of selected events from `from` (on a blocking thread, after waiting for
    /// the log to reach it).
    fn read_from(&self, from: u64) -> Reading {
        let log = Arc::clone(&self.log);
        let handler = Arc::clone(&self.handler);
        let bounds = self.bounds;
        Box::pin(async move {
            log.wait_for_async(EventLogSequenceNumber(from)).await;
            read_selected(log, handler, bounds, from, None).await
        })
    }

    async fn read(&self, from: u64, partition: Option<&str>) -> Result<Read, Failure> {
        read_selected(
            Arc::clone(&self.log),
            Arc::clone(&self.handler),
            self.bounds,
            from,
            partition.map(str::to_owned),
        )
        .await
    }

    /// Writes the position reached with the included events now (after a background write
    /// under way, so writes stay in order), and publishes it to management.
    async fn settle(
        &self,
        state: &mut StreamProcessorState,
        progress: &mut Progress,
    ) -> Result<(), Failure> {
        progress.written().await?;
        progress.advance(state);
        self.write_later(state, std::mem::take(&mut progress.included))
            .await
    }

    /// A write of `state` (a snapshot) and the included events, published to management once
    /// durable.
    fn write_later(&self, state: &StreamProcessorState, included: Vec<(u64, String)>) -> Writing {
        let tenant = Arc::clone(&self.tenant);
        let id = self.id;
        let target = self.target;
        let snapshot = state.clone();
        let status = Arc::clone(&self.status);
        Box::pin(async move {
            let published = snapshot.clone();
            crate::runtime::blocking(move || {
                let mut batch = StateBatch::new();
                batch.put_stream_processor(&id, &snapshot);
                match target {
                    None => tenant.write_state(batch)?,
                    Some(target) => {
                        let end = tenant.stream_end(target.scope, target.stream)?;
                        let entries: Vec<(EventLogSequenceNumber, &str)> = included
                            .iter()
                            .map(|(seq, partition)| {
                                (EventLogSequenceNumber(*seq), partition.as_str())
                            })
                            .collect();
                        tenant.append_to_stream_with_state(
                            target.scope,
                            target.stream,
                            end,
                            &entries,
                            batch,
                        )?;
                    }
                }
                Ok(())
            })
            .await?;
            status.lock().state = published;
            Ok(())
        })
    }
}

/// Delivers one event; an unpartitioned processor (`retries`) asks again after the head's
/// timeout for as long as the head fails with retry, showing the failure to management
/// meanwhile.
#[expect(
    clippy::too_many_arguments,
    reason = "the pieces of one in-flight task"
)]
async fn deliver<H: Handler>(
    handler: &H,
    context: WireExecutionContext,
    delivery: &Delivery,
    mut retry: Option<RetryProcessingState>,
    retries: bool,
    status: &Mutex<TenantStatus>,
    failures: &Counter,
    ended: &CancellationToken,
    draining: &CancellationToken,
) -> Result<Outcome, CallError> {
    let mut attempts = 0u32;
    loop {
        // The call's end answers every outstanding request with `Ended`.
        let outcome = handler
            .handle(context.clone(), delivery, retry.take())
            .await?;
        match outcome {
            Outcome::Failed {
                reason,
                retry_after: Some(after),
            } if retries => {
                failures.inc();
                attempts = attempts.saturating_add(1);
                let now = now_ns();
                status.lock().retrying = Some(ProcessingFailure {
                    reason: reason.clone(),
                    retry_time_ns: retry_time(now, Some(after)),
                    processing_attempts: attempts,
                    last_failed_ns: now,
                });
                // Nothing new is sent once the call drains, not even a retry: the event stays
                // unprocessed and is the next one after the head registers again.
                tokio::select! {
                    () = tokio::time::sleep(after) => {}
                    () = ended.cancelled() => return Err(CallError::Ended),
                    () = draining.cancelled() => return Err(CallError::Ended),
                }
                retry = Some(RetryProcessingState {
                    failure_reason: reason,
                    retry_count: attempts,
                });
            }
            outcome => {
                if attempts > 0 {
                    status.lock().retrying = None;
                }
                return Ok(outcome);
            }
        }
    }
}

/// Reads one batch from `from` and keeps the selected events (of `partition` only, when
/// given, though positions count every selected event), decoded for the wire.
async fn read_selected<H: Handler>(
    log: Arc<Log>,
    handler: Arc<H>,
    bounds: Bounds,
    from: u64,
    partition: Option<String>,
) -> Result<Read, Failure> {
    crate::runtime::blocking(move || {
        let batch = log.read(
            EventLogSequenceNumber(from),
            READ_RECORDS_MAX,
            READ_BYTES_MAX,
        )?;
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
            let event = if wanted {
                committed_event(&view)
            } else {
                CommittedEvent::default()
            };
            events.push((
                view.sequence_number.0,
                view.event_source_id.to_owned(),
                view.correlation_id,
                event,
            ));
        }
        Ok(Read {
            events,
            next: batch.next().map_or(from, |n| n.0),
        })
    })
    .await
}

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

/// Awaits the future in `slot` (a read or a write kept across turns of the loop); pending
/// for ever while the slot is empty.
async fn in_slot<T>(slot: &mut Option<Pin<Box<dyn Future<Output = T> + Send>>>) -> T {
    match slot.as_mut() {
        Some(future) => future.await,
        None => std::future::pending().await,
    }
}

/// When a failure that asks for a retry after `after` is retried; never (`i64::MAX`) without.
fn retry_time(now_ns: i64, after: Option<Duration>) -> i64 {
    after.map_or(i64::MAX, |after| {
        now_ns.saturating_add(i64::try_from(after.as_nanos()).unwrap_or(i64::MAX))
    })
}

pub(crate) fn now_ns() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_nanos()).unwrap_or(i64::MAX))
}

fn until(at_ns: i64) -> Duration {
    Duration::from_nanos(u64::try_from(at_ns.saturating_sub(now_ns())).unwrap_or(0))
}

#[cfg(test)]
mod tests {
    //! The processor loop against a real engine and an in-process head that fails and delays
    //! at random (seeded): every event is processed, once per run, in order within its
    //! partition, never more than `concurrency` at once, and a processor stopped at a random
    //! point and started again skips nothing.

    use std::collections::BTreeSet;
    use std::sync::atomic::{AtomicUsize, Ordering};

    use annals_engine::{
        Commit, Durability, Engine, EngineConfig, EventType, ExecutionContext, TenantId,
        UncommittedEvent,
    };

    use super::*;

    /// xorshift64*: enough randomness for scheduling, reproducible from the seed.
    struct Rng(u64);

    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 >> 12;
            self.0 ^= self.0 << 25;
            self.0 ^= self.0 >> 27;
            self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
        }
    }

    /// A head that answers after a random delay and fails some events (with retry).
    struct ScriptedHead {
        rng: parking_lot::Mutex<Rng>,
        in_flight: AtomicUsize,
        in_flight_max: AtomicUsize,
        busy_partitions: parking_lot::Mutex<HashSet<String>>,
        /// (sequence number, partition) of each success, in completion order.
        done: parking_lot::Mutex<Vec<(u64, String)>>,
        failure_percent: u64,
    }

    use std::collections::HashSet;

    impl Handler for ScriptedHead {
        fn selects(&self, _: &EventView<'_>) -> bool {
            true
        }

        async fn handle(
            &self,
            _: WireExecutionContext,
            delivery: &Delivery,
            _: Option<RetryProcessingState>,
        ) -> Result<Outcome, CallError> {
            let now = self.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
            self.in_flight_max.fetch_max(now, Ordering::SeqCst);
            assert!(
                self.busy_partitions
                    .lock()
                    .insert(delivery.partition.clone()),
                "two events of partition {} in flight",
                delivery.partition
            );
            let (delay_us, fail) = {
                let mut rng = self.rng.lock();
                (rng.next() % 300, rng.next() % 100 < self.failure_percent)
            };
            tokio::time::sleep(Duration::from_micros(delay_us)).await;
            self.busy_partitions.lock().remove(&delivery.partition);
            self.in_flight.fetch_sub(1, Ordering::SeqCst);
            if fail {
                return Ok(Outcome::Failed {
                    reason: "scripted".into(),
                    retry_after: Some(Duration::from_millis(2)),
                });
            }
            self.done
                .lock()
                .push((delivery.sequence_number, delivery.partition.clone()));
            Ok(Outcome::Done { include: None })
        }
    }

    fn store(events: u64, partitions: u64) -> (tempfile::TempDir, Arc<Tenant>) {
        let dir = tempfile::tempdir().unwrap();
        let mut config = EngineConfig::new(dir.path());
        config.log.durability = Durability::Buffered;
        let engine = Engine::open(config).unwrap();
        let tenant = engine
            .tenant_or_create(TenantId(Uuid::from_u128(1)))
            .unwrap();
        for chunk in 0..events / 100 {
            let commit = Commit {
                occurred_ns: 1,
                execution_context: ExecutionContext::default(),
                events: (0..100)
                    .map(|i| UncommittedEvent {
                        event_source_id: format!("source-{}", (chunk * 100 + i) % partitions),
                        event_type: EventType {
                            id: Uuid::from_u128(9),
                            generation: 1,
                        },
                        content: "{}".into(),
                        ..UncommittedEvent::default()
                    })
                    .collect(),
            };
            tenant.commit(&commit).unwrap();
        }
        // The engine stays open through the tenant's handle.
        std::mem::forget(engine);
        (dir, tenant)
    }

    fn processor(
        tenant: &Arc<Tenant>,
        head: &Arc<ScriptedHead>,
        partitioned: bool,
        concurrency: usize,
        ended: &CancellationToken,
    ) -> TenantProcessor<ScriptedHead> {
        let (_, commands) = mpsc::channel(1);
        TenantProcessor {
            handler: Arc::clone(head),
            tenant: Arc::clone(tenant),
            log: tenant.event_log().unwrap(),
            id: StreamProcessorId {
                scope: Uuid::nil(),
                processor: Uuid::from_u128(5),
                source_stream: Uuid::from_u128(5),
            },
            partitioned,
            concurrency,
            bounds: Bounds::default(),
            execution_context: WireExecutionContext::default(),
            target: None,
            status: Arc::new(Mutex::new(TenantStatus::default())),
            commands,
            ended: ended.clone(),
            draining: CancellationToken::new(),
            processed: Counter::default(),
            failures: Counter::default(),
        }
    }

    fn head(seed: u64, failure_percent: u64) -> Arc<ScriptedHead> {
        Arc::new(ScriptedHead {
            rng: parking_lot::Mutex::new(Rng(seed | 1)),
            in_flight: AtomicUsize::new(0),
            in_flight_max: AtomicUsize::new(0),
            busy_partitions: parking_lot::Mutex::new(HashSet::new()),
            done: parking_lot::Mutex::new(Vec::new()),
            failure_percent,
        })
    }

    /// Runs a processor until `head` has `count` successes (or `stop_after` of them, then
    /// stops it as a disconnect would).
    async fn run_until(
        tenant: &Arc<Tenant>,
        head: &Arc<ScriptedHead>,
        partitioned: bool,
        concurrency: usize,
        count: usize,
    ) {
        run_while(tenant, head, partitioned, concurrency, |done| {
            done.len() < count
        })
        .await;
    }

    /// Runs a processor while `going(successes so far)`, then stops it as a disconnect would.
    async fn run_while(
        tenant: &Arc<Tenant>,
        head: &Arc<ScriptedHead>,
        partitioned: bool,
        concurrency: usize,
        going: impl Fn(&[(u64, String)]) -> bool,
    ) {
        let ended = CancellationToken::new();
        let running = tokio::spawn(processor(tenant, head, partitioned, concurrency, &ended).run());
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        while going(&head.done.lock()) {
            assert!(
                tokio::time::Instant::now() < deadline,
                "processing stalled after {} events",
                head.done.lock().len()
            );
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        ended.cancel();
        running.await.unwrap();
    }

    fn check_partition_order(done: &[(u64, String)]) {
        let mut last: HashMap<&str, u64> = HashMap::new();
        for (seq, partition) in done {
            if let Some(before) = last.insert(partition, *seq) {
                assert!(before < *seq, "partition {partition}: {seq} after {before}");
            }
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn partitioned_with_concurrency_processes_everything_in_partition_order() {
        for seed in [1u64, 7, 42] {
            let (_dir, tenant) = store(3000, 37);
            let head = head(seed, 10);
            run_until(&tenant, &head, true, 8, 3000).await;
            let done = head.done.lock().clone();
            let distinct: BTreeSet<u64> = done.iter().map(|(seq, _)| *seq).collect();
            assert_eq!(distinct.len(), 3000, "seed {seed}: every event once");
            assert_eq!(done.len(), 3000, "seed {seed}: no event twice in one run");
            check_partition_order(&done);
            let max = head.in_flight_max.load(Ordering::SeqCst);
            assert!(max <= 8 && max > 1, "seed {seed}: {max} in flight at most");
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn unpartitioned_processes_in_log_order_one_at_a_time() {
        let (_dir, tenant) = store(1000, 13);
        let head = head(3, 10);
        run_until(&tenant, &head, false, 1, 1000).await;
        let done: Vec<u64> = head.done.lock().iter().map(|(seq, _)| *seq).collect();
        assert_eq!(done, (0..1000).collect::<Vec<_>>());
        assert_eq!(head.in_flight_max.load(Ordering::SeqCst), 1);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_processor_stopped_at_random_points_skips_nothing() {
        for (seed, partitioned, concurrency) in [(11u64, true, 8), (12, false, 1), (13, true, 3)] {
            let (_dir, tenant) = store(2000, 23);
            let mut rng = Rng(seed);
            let mut seen = BTreeSet::new();
            let mut runs = 0;
            while seen.len() < 2000 {
                runs += 1;
                assert!(runs < 50, "seed {seed}: no progress");
                let head = head(rng.next(), 5);
                let stop_after = usize::try_from(rng.next() % 700 + 1).unwrap();
                let before = seen.clone();
                run_while(&tenant, &head, partitioned, concurrency, |done| {
                    // Until `stop_after` successes, or until every event has been seen.
                    done.len() < stop_after
                        && (0..2000)
                            .any(|s| !before.contains(&s) && !done.iter().any(|(seq, _)| *seq == s))
                })
                .await;
                let done = head.done.lock().clone();
                check_partition_order(&done);
                // Resuming starts at or before the first event not yet processed: nothing in
                // between is skipped.
                let first_missing = (0..2000).find(|s| !seen.contains(s)).unwrap();
                let resumed_at = done.iter().map(|(seq, _)| *seq).min().unwrap();
                assert!(
                    resumed_at <= first_missing,
                    "seed {seed}: resumed at {resumed_at}, but {first_missing} was never processed"
                );
                seen.extend(done.iter().map(|(seq, _)| *seq));
            }
        }
    }
}
