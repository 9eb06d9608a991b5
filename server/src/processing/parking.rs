//! Failures, and the parking and retries of a partitioned processor's failing partitions.
//!
//! An unpartitioned processor retries an event the head failed with `retry` after the head's
//! timeout, for as long as it asks (in flight: see `dispatch`); a failure without retry stops
//! this tenant's processor until the head registers again (the event is retried then) or
//! management resets it.
//!
//! A partitioned processor parks the failing partition instead and goes on with the others;
//! the parked partition's events are skipped by the main pass and delivered by a catch-up of
//! that partition alone when its retry time comes (or at the next registration, for a
//! failure without retry).
//!
//! Invariants:
//! - A catch-up runs with nothing else in flight, from the parked event to where the main
//!   pass is, in log order: no event of the partition is missed or delivered twice.
//! - A parked partition records the stream and event-log positions of its first event not
//!   yet processed; the failure's attempts count only failures of that same event (0 when
//!   the partition is only behind).
//! - A failure's retry time is `i64::MAX` (never) when the head did not ask for a retry.

use std::future::Future;
use std::time::Duration;

use annals_engine::{
    EventLogSequenceNumber, FailingPartition, ProcessingFailure, StreamPosition,
    StreamProcessorState,
};

use crate::api::failure::Failure;
use crate::clock::now_ns;
use crate::processing::dispatch::{Asker, Dispatch};
use crate::processing::positions::Included;
use crate::processing::processor::{Delivery, Handler, Outcome};
use crate::processing::read::Reader;
use crate::processing::{Command, Inbox};
use crate::proto::dolittle::runtime::events::processing::RetryProcessingState;
use crate::reverse_call::CallError;

/// A failure now, after `processing_attempts` attempts: retried after `retry_after` when the
/// head asks for a retry, else never.
pub(crate) fn failure(
    reason: String,
    retry_after: Option<Duration>,
    processing_attempts: u32,
) -> ProcessingFailure {
    let now = now_ns();
    ProcessingFailure {
        reason,
        retry_time_ns: retry_time(now, retry_after),
        processing_attempts,
        last_failed_ns: now,
    }
}

/// When a failure that asks for a retry after `after` is retried; never (`i64::MAX`) without.
fn retry_time(now_ns: i64, after: Option<Duration>) -> i64 {
    after.map_or(i64::MAX, |after| {
        now_ns.saturating_add(i64::try_from(after.as_nanos()).unwrap_or(i64::MAX))
    })
}

fn until(at_ns: i64) -> Duration {
    Duration::from_nanos(u64::try_from(at_ns.saturating_sub(now_ns())).unwrap_or(0))
}

/// Stored failures are retried now: a head that registers again may have been fixed.
pub(crate) fn retry_stored(state: &mut StreamProcessorState) {
    let now = now_ns();
    state.failure = None;
    for partition in state.failing_partitions.values_mut() {
        partition.failure.retry_time_ns = now;
    }
}

/// Parks `delivery`'s partition at `delivery`, which failed.
pub(crate) fn park(
    state: &mut StreamProcessorState,
    delivery: &Delivery,
    failure: ProcessingFailure,
) {
    state.failing_partitions.insert(
        delivery.partition.clone(),
        FailingPartition {
            position: delivery.position,
            event_log_position: delivery.sequence_number,
            failure,
        },
    );
}

/// A parked partition whose retry time has come (none while a partition is busy with it).
pub(crate) fn due(state: &StreamProcessorState, dispatch: &Dispatch) -> Option<String> {
    if state.failing_partitions.is_empty() {
        // (No clock read on every turn of a processor with nothing parked.)
        return None;
    }
    let now = now_ns();
    state
        .failing_partitions
        .iter()
        .filter(|(partition, p)| p.failure.retry_time_ns <= now && !dispatch.is_busy(partition))
        .min_by_key(|(_, p)| p.failure.retry_time_ns)
        .map(|(partition, _)| partition.clone())
}

/// Sleeps until the earliest retry time of a parked partition; for ever when none is retried.
pub(crate) fn next_retry(state: &StreamProcessorState) -> impl Future<Output = ()> {
    let retry_at = state
        .failing_partitions
        .values()
        .map(|p| p.failure.retry_time_ns)
        .min()
        .filter(|&at| at != i64::MAX);
    async move {
        match retry_at {
            Some(at) => tokio::time::sleep(until(at)).await,
            None => std::future::pending().await,
        }
    }
}

/// How a parked partition's catch-up ended.
pub(crate) enum CatchUp {
    /// It ran (to the end, or to a new failure); the events it included.
    Caught(Included),
    /// The call ended.
    Ended,
    /// Management asked to start over.
    Reprocess(Command),
}

/// Delivers a parked partition's events from its failed event up to `upto` (where the main
/// pass is), in order, hearing management meanwhile. The partition is unparked when all
/// succeeded, else its failure is updated. The included events are kept in memory until it
/// ends: at most one stretch of the log between the failed event and the main pass, and the
/// main pass waits meanwhile.
pub(crate) async fn catch_up<H: Handler>(
    asker: &Asker<H>,
    reader: &Reader<H>,
    inbox: &mut Inbox,
    state: &mut StreamProcessorState,
    partition: &str,
    upto: EventLogSequenceNumber,
) -> Result<CatchUp, Failure> {
    let Some(parked) = state.failing_partitions.get(partition).cloned() else {
        return Ok(CatchUp::Caught(Vec::new()));
    };
    let mut included = Vec::new();
    let mut from = parked.event_log_position;
    let mut position = parked.position;
    while from < upto {
        let read = reader.partition(from, partition).await?;
        let next = read.next.min(upto);
        for selected in read.events {
            let sequence_number = selected.sequence_number;
            if sequence_number >= upto {
                break;
            }
            let this_position = position;
            position = position.next();
            if selected.partition != partition {
                continue;
            }
            if asker.draining.is_cancelled() {
                // Nothing new once the call drains: the partition stays parked at this
                // event and is caught up after the head registers again.
                if let Some(parked) = state.failing_partitions.get_mut(partition) {
                    behind(parked, this_position, sequence_number);
                }
                return Ok(CatchUp::Caught(included));
            }
            let delivery = selected.at(this_position);
            let retry = (sequence_number == parked.event_log_position
                && parked.failure.processing_attempts > 0)
                .then(|| RetryProcessingState {
                    failure_reason: parked.failure.reason.clone(),
                    retry_count: parked.failure.processing_attempts,
                });
            let handling = asker.once(&delivery, retry);
            tokio::pin!(handling);
            // Management is heard while the head takes its time (a reset ends the
            // catch-up; the answer no longer matters).
            let outcome = tokio::select! {
                outcome = &mut handling => outcome,
                () = asker.ended.cancelled() => Err(CallError::Ended),
                command = inbox.next() => return Ok(CatchUp::Reprocess(command)),
            };
            match outcome {
                Err(CallError::Ended) => return Ok(CatchUp::Ended),
                Ok(Outcome::Done { include }) => {
                    asker.processed.inc();
                    state.last_successfully_processed_ns = now_ns();
                    if let Some(p) = include {
                        included.push((sequence_number, p));
                    }
                }
                Ok(Outcome::Failed {
                    reason,
                    retry_after,
                }) => {
                    asker.failures.inc();
                    let attempts = if sequence_number == parked.event_log_position {
                        parked.failure.processing_attempts.saturating_add(1)
                    } else {
                        1
                    };
                    park(state, &delivery, failure(reason, retry_after, attempts));
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

/// A catch-up stopped (the call drained) at the partition's event at `position` and
/// `sequence_number`: the partition stays parked there, due at once when the head registers
/// again.
fn behind(
    parked: &mut FailingPartition,
    position: StreamPosition,
    sequence_number: EventLogSequenceNumber,
) {
    if parked.event_log_position != sequence_number {
        // This event never failed: the partition is only behind.
        parked.failure.reason = "behind: its catch-up stopped when the head disconnected".into();
        parked.failure.processing_attempts = 0;
    }
    parked.position = position;
    parked.event_log_position = sequence_number;
    parked.failure.retry_time_ns = now_ns();
}
