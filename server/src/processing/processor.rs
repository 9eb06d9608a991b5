//! One tenant's processor: reads the scope's event log from its position, asks the head about
//! each selected event through a [`Handler`], and keeps its position durably. This module is
//! the loop; each concern it drives has one home:
//!
//! - `read`: reads of the log, in batches on a blocking thread; a live read waits for the
//!   next commit without polling, so catch-up turns into live delivery at one position.
//! - `dispatch`: the read-ahead buffer, the partition queues and the events in flight
//!   (ordering and concurrency), and asking the head (an unpartitioned processor's retries).
//! - `parking`: failures, failing partitions parked and caught up when their retry time comes.
//! - `positions`: what the stored position is derived from, and its durable writes.
//!
//! Invariants of the loop (a pass, from one position until it stops or is reset):
//! - Nothing new is taken from the read-ahead buffer while a failure stops the processor
//!   (unpartitioned), while a parked partition is due, or while the call drains. A due
//!   partition's catch-up runs once nothing is in flight; until then a busy partition's queued
//!   events still follow its answered ones. Draining stops that too: it ends once nothing is
//!   in flight, and queued events stay unfinished, where the stored position waits for them.
//! - A pass that stops (the call ends or drains) writes the position it reached first; a reset
//!   waits only for a position write under way, so that write cannot undo the reset's own; a
//!   store error ends the pass with the stored position behind (at-least-once).
//! - A reset starts over at its position: stream positions from 0, failures forgotten.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use annals_engine::{
    EventLogSequenceNumber, EventView, Log, StreamPosition, StreamProcessorId,
    StreamProcessorState, Tenant,
};
use bytes::Bytes;
use parking_lot::Mutex;
use prometheus_client::metrics::counter::Counter;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use crate::api::failure::Failure;
use crate::api::wire::RequestContexts;
use crate::blocking::blocking;
use crate::clock::now_ns;
use crate::metrics::Attempts;
use crate::processing::dispatch::{Asker, Dispatch};
use crate::processing::parking::{self, CatchUp};
use crate::processing::positions::{Progress, Writer, Writes};
use crate::processing::read::{Reader, Reading};
use crate::processing::{Command, Inbox, Partitioning, TenantStatus};
use crate::projections::states::TenantStates;
use crate::proto::dolittle::execution::ExecutionContext as WireExecutionContext;
use crate::proto::dolittle::runtime::events::processing::RetryProcessingState;
use crate::proto::dolittle::runtime::events::CommittedEvent;
use crate::reverse_call::CallError;

/// An event to deliver.
#[derive(Debug, Clone)]
pub(crate) struct Delivery {
    /// Its event-log sequence number.
    pub(crate) sequence_number: EventLogSequenceNumber,
    /// Its stream position (the count of selected events before it).
    pub(crate) position: StreamPosition,
    /// Its partition: the event source id.
    pub(crate) partition: String,
    /// The event's correlation id (the request's execution context carries it).
    pub(crate) correlation_id: Uuid,
    /// Its event type's id.
    pub(crate) event_type: Uuid,
    /// The event as the head sees it (empty when the handler takes it encoded).
    pub(crate) event: Arc<CommittedEvent>,
    /// The event encoded, when the handler takes it so (see `Handler::encodes_events`); else
    /// empty.
    pub(crate) encoded: Bytes,
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
                crate::api::convert::duration(failure.retry_timeout.as_ref()).unwrap_or_default()
            }),
        }
    }
}

/// Asks the head about one event. The runtime's implementation is
/// `services::processor_session::Head` (a handle request for event handlers, a filter request
/// for filters); the model tests below script one.
pub(crate) trait Handler: Send + Sync + 'static {
    /// Whether the head is asked about this event at all (event types, public flag).
    fn selects(&self, event: &EventView<'_>) -> bool;

    /// Whether this handler's requests carry the event encoded (`Delivery::encoded`, made
    /// where the log is read) rather than as a message (`Delivery::event`).
    fn encodes_events(&self) -> bool {
        false
    }

    /// Asks the head about `delivery`, its request's call context made from `contexts` with the
    /// event's correlation id; `retry` when the event failed before.
    fn handle(
        &self,
        contexts: &RequestContexts,
        delivery: &Delivery,
        retry: Option<RetryProcessingState>,
    ) -> impl Future<Output = Result<Outcome, CallError>> + Send;
}

pub(crate) use annals_contract::processors::{Bounds, StartFrom, TargetStream};

/// Everything one tenant's processor runs with.
pub(crate) struct TenantProcessor<H: Handler> {
    pub(crate) handler: Arc<H>,
    pub(crate) tenant: Arc<Tenant>,
    pub(crate) log: Arc<Log>,
    pub(crate) id: StreamProcessorId,
    pub(crate) partitioning: Partitioning,
    /// Events in flight at most (1 for unpartitioned processors).
    pub(crate) concurrency: usize,
    pub(crate) bounds: Bounds,
    /// The registration's execution context with this tenant; each request gets the event's
    /// correlation id.
    pub(crate) execution_context: WireExecutionContext,
    pub(crate) target: Option<TargetStream>,
    /// Projections: the states its head's answers change.
    pub(crate) states: Option<Arc<TenantStates>>,
    pub(crate) status: Arc<Mutex<TenantStatus>>,
    pub(crate) commands: mpsc::Receiver<Command>,
    pub(crate) ended: CancellationToken,
    pub(crate) draining: CancellationToken,
    pub(crate) processed: Counter,
    pub(crate) failures: Counter,
    /// The original's series of each attempt (`metrics::dolittle`).
    pub(crate) attempts: Attempts,
}

/// A tenant's processor while it runs, in parts that each own what they touch.
struct Running<H: Handler> {
    /// Asks the head; counts; knows when the call ends or drains.
    asker: Arc<Asker<H>>,
    /// Reads the log.
    reader: Reader<H>,
    /// Writes positions (and a filter's included events).
    writer: Writer,
    /// Management's commands.
    inbox: Inbox,
    /// Events in flight at most.
    concurrency: usize,
}

/// Why a pass ended.
enum Exit {
    /// The call ended, or drained: stop.
    Stop,
    /// Management asked to start over.
    Reprocess(Command),
}

impl<H: Handler> TenantProcessor<H> {
    /// Runs until the call ends or drains; the position reached is durable when it returns.
    pub(crate) async fn run(self) {
        let TenantProcessor {
            handler,
            tenant,
            log,
            id,
            partitioning,
            concurrency,
            bounds,
            execution_context,
            target,
            states,
            status,
            commands,
            ended,
            draining,
            processed,
            failures,
            attempts,
        } = self;
        let mut running = Running {
            asker: Arc::new(Asker {
                handler: Arc::clone(&handler),
                contexts: RequestContexts::new(execution_context),
                partitioning,
                status: Arc::clone(&status),
                processed,
                failures,
                attempts,
                ended,
                draining,
            }),
            reader: Reader {
                log,
                handler,
                bounds,
            },
            writer: Writer {
                tenant,
                id,
                target,
                status,
                states,
            },
            inbox: Inbox::new(commands),
            concurrency,
        };
        running.run().await;
    }
}

impl<H: Handler> Running<H> {
    /// Passes until the call ends or drains, starting over on each reset.
    async fn run(&mut self) {
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
                Ok(Exit::Reprocess(Command::Reprocess {
                    event_log_position,
                    done,
                })) => {
                    state.position = StreamPosition::ZERO;
                    state.event_log_position = event_log_position;
                    state.failure = None;
                    state.failing_partitions.clear();
                    self.writer.status.lock().retrying = None;
                    let written = self.writer.write_reset(&state).await;
                    let _ = done.send(written.clone());
                    if let Err(failure) = written {
                        tracing::error!(reason = %failure.reason, "cannot reset a processor");
                        return;
                    }
                }
                Err(failure) => {
                    tracing::error!(
                        processor = %self.writer.id.processor,
                        tenant = %self.writer.tenant.id().0,
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
        let tenant = Arc::clone(&self.writer.tenant);
        let id = self.writer.id;
        let stored = blocking(move || Ok(tenant.stream_processor_state(&id)?)).await?;
        let state = match stored {
            Some(mut state) => {
                parking::retry_stored(&mut state);
                state
            }
            None => StreamProcessorState {
                event_log_position: match self.reader.bounds.start {
                    StartFrom::Start => EventLogSequenceNumber::ZERO,
                    StartFrom::Latest => self.reader.log.next_sequence_number(),
                    StartFrom::Position(position) => position,
                },
                ..StreamProcessorState::default()
            },
        };
        self.writer.status.lock().state = state.clone();
        Ok(state)
    }

    /// Processes from `state` until the call ends, drains, or management resets it. When the
    /// call ends or drains, `state` is written before returning; a reset waits for a write
    /// under way and writes its own position.
    async fn pass(&mut self, state: &mut StreamProcessorState) -> Result<Exit, Failure> {
        let mut progress = Progress::new(state, self.writer.clone());
        let mut dispatch = Dispatch::new(self.concurrency);
        let mut reading = Reading::empty();
        // Registered once: a fresh waiter per turn of the loop would cost a lock each time.
        let ended = self.asker.ended.clone().cancelled_owned();
        tokio::pin!(ended);
        let drained = self.asker.draining.clone().cancelled_owned();
        tokio::pin!(drained);

        loop {
            let draining = self.asker.draining.is_cancelled();
            let due = parking::due(state, &dispatch);
            if !stopped(state) && !draining && due.is_none() {
                dispatch.fill(&self.asker, &state.failing_partitions, &mut progress);
            }
            if dispatch.is_idle() {
                if draining {
                    progress.settle(state).await?;
                    return Ok(Exit::Stop);
                }
                if let Some(partition) = due {
                    let upto = dispatch.next_buffered().unwrap_or(progress.cursor());
                    let caught = parking::catch_up(
                        &self.asker,
                        &self.reader,
                        &mut self.inbox,
                        state,
                        &partition,
                        upto,
                    );
                    match caught.await? {
                        CatchUp::Caught(caught) => progress.include(caught),
                        CatchUp::Ended => {
                            progress.settle(state).await?;
                            return Ok(Exit::Stop);
                        }
                        CatchUp::Reprocess(command) => {
                            progress.written().await?;
                            return Ok(Exit::Reprocess(command));
                        }
                    }
                    progress.settle(state).await?;
                    continue;
                }
            }
            if reading.is_empty() && !stopped(state) && dispatch.wants_read() {
                self.reader.start(&mut reading, progress.cursor());
            }
            let retry_sleep = parking::next_retry(state);
            // A filter with nothing in flight writes what it included soon (see `positions`).
            let caught_up = dispatch.is_idle();
            tokio::select! {
                biased;
                () = &mut ended => {
                    progress.settle(state).await?;
                    return Ok(Exit::Stop);
                }
                command = self.inbox.next() => {
                    // A position write under way must land before the reset's, or it would
                    // undo it.
                    progress.written().await?;
                    return Ok(Exit::Reprocess(command));
                }
                Some((delivery, outcome)) = dispatch.answered(), if !dispatch.is_idle() => {
                    let Ok(outcome) = outcome else {
                        // The call is over (its stream may have closed before the reader
                        // noticed): end it for everyone, the next turn stops.
                        self.asker.ended.cancel();
                        continue;
                    };
                    self.answered(state, &mut progress, &mut dispatch, &delivery, outcome)
                        .await?;
                }
                read = reading.finished(), if !reading.is_empty() => {
                    let read = read?;
                    for selected in read.events {
                        dispatch.buffer(progress.read(selected));
                    }
                    progress.read_to(read.next);
                }
                // Only while nothing is due: a due partition waits for the events in flight,
                // whose completions wake the loop (a past deadline here would spin it).
                () = retry_sleep, if due.is_none() && !draining => {}
                writes = progress.writes(caught_up), if progress.has_writes() => match writes {
                    Writes::Due => progress.flush(state),
                    Writes::Landed(written) => written?,
                },
                () = &mut drained, if !draining => {}
            }
        }
    }

    /// Books what the head answered about `delivery`.
    async fn answered(
        &self,
        state: &mut StreamProcessorState,
        progress: &mut Progress,
        dispatch: &mut Dispatch,
        delivery: &Delivery,
        outcome: Outcome,
    ) -> Result<(), Failure> {
        match outcome {
            Outcome::Done { include } => {
                progress.done(delivery.sequence_number, include);
                self.asker.processed.inc();
                state.last_successfully_processed_ns = now_ns();
                if !self.asker.draining.is_cancelled() {
                    // (Draining: queued events stay unfinished, where the stored position
                    // waits for them.)
                    dispatch.next_of(&self.asker, &delivery.partition);
                }
            }
            Outcome::Failed {
                reason,
                retry_after,
            } => {
                self.asker.failures.inc();
                let failure = parking::failure(reason, retry_after, 1);
                match self.asker.partitioning {
                    Partitioning::Partitioned => {
                        for waiting in dispatch.park(&delivery.partition) {
                            progress.forget(waiting.sequence_number);
                        }
                        progress.forget(delivery.sequence_number);
                        parking::park(state, delivery, failure);
                    }
                    Partitioning::Unpartitioned => {
                        tracing::warn!(
                            processor = %self.writer.id.processor,
                            tenant = %self.writer.tenant.id().0,
                            reason = %failure.reason,
                            "the head failed an event without retry: this tenant's \
                             processor stops until the head registers again"
                        );
                        dispatch.free(&delivery.partition);
                        state.failure = Some(failure);
                    }
                }
                self.writer.status.lock().retrying = None;
                progress.settle(state).await?;
                progress.clean();
            }
        }
        Ok(())
    }
}

/// Whether a failure stops this tenant's processor (unpartitioned, failed without retry):
/// nothing more is read or dispatched until the head registers again or management resets it.
fn stopped(state: &StreamProcessorState) -> bool {
    state.failure.is_some()
}

#[cfg(test)]
mod tests {
    //! The processor loop against a real engine and an in-process head that fails and delays
    //! at random (seeded): every event is processed, once per run, in order within its
    //! partition, never more than `concurrency` at once, and a processor stopped at a random
    //! point and started again skips nothing.

    use std::collections::{BTreeSet, HashMap};
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
            _: &RequestContexts,
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
                .push((delivery.sequence_number.0, delivery.partition.clone()));
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
            partitioning: partitioned.into(),
            concurrency,
            bounds: Bounds::default(),
            execution_context: WireExecutionContext::default(),
            target: None,
            states: None,
            status: Arc::new(Mutex::new(TenantStatus::default())),
            commands,
            ended: ended.clone(),
            draining: CancellationToken::new(),
            processed: Counter::default(),
            failures: Counter::default(),
            attempts: Arc::new(crate::metrics::Dolittle::default()).attempts(
                crate::processing::Kind::EventHandler,
                (Uuid::from_u128(5), Uuid::nil(), None),
                Uuid::nil(),
            ),
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
