//! Serving one subscription: the events of one partition of a public stream, in stream order,
//! from the position the consumer asked for.
//!
//! The original sends one event and waits for its acknowledgement before the next (one round
//! trip per event). Here up to `window` events are in flight: they are sent in order, and each
//! acknowledgement frees a place. A consumer that acknowledges each event at once (the
//! original) and one that acknowledges after its write is durable (annals) both work; a
//! window of 1 is the original's stop-and-wait.
//!
//! Invariants:
//! - Events go out in strictly increasing stream position, each once per connection.
//! - In flight is never more than `window` events (memory is bounded by the window).
//! - Waiting for new events never misses one: the listener is taken before the read that
//!   found nothing.
//! - An acknowledgement carrying a failure ends the subscription (as the original).

use std::collections::VecDeque;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::Duration;

use annals_contract::api::wire::request_context;
use annals_contract::api::{convert, ids};
use annals_contract::proto::dolittle::runtime::eventhorizon::{
    event_horizon_producer_to_consumer_message::Message as Outgoing, ConsumerRequest,
    ConsumerResponse, EventHorizonCommittedEvent, EventHorizonEvent,
    EventHorizonProducerToConsumerMessage,
};
use annals_contract::reverse_call::{Answer, ReverseCall};
use annals_engine::{Event, StreamPosition, Tenant};
use uuid::Uuid;

use super::HorizonProtocol;
use crate::blocking;
use crate::status::ServedStatus;

/// How long a caught-up subscription sleeps before it looks again even without a wake-up
/// (a safety net; appends wake it at once).
const IDLE_RECHECK: Duration = Duration::from_secs(60);

/// Payload bytes read per batch of events, at most (about; at least one event).
const READ_BYTES_MAX: usize = 4 << 20;

/// Sends the partition's events from `from` until the stream ends. `Err` carries why it ended
/// abnormally (a failed read, a failure from the consumer).
pub(super) async fn serve(
    call: &Arc<ReverseCall<HorizonProtocol>>,
    tenant: &Arc<Tenant>,
    stream: Uuid,
    partition: &str,
    from: StreamPosition,
    window: usize,
    status: &ServedStatus,
) -> Result<(), String> {
    let mut next = from;
    status.sent_position.store(next.0, Relaxed);
    status.acknowledged_position.store(next.0, Relaxed);
    let mut in_flight: VecDeque<(StreamPosition, Answer<'_, ConsumerResponse>)> =
        VecDeque::with_capacity(window);
    loop {
        if call.ended().is_cancelled() {
            return Ok(());
        }
        let room = window - in_flight.len();
        let mut sent_any = false;
        let mut listener = None;
        if room > 0 && !call.draining().is_cancelled() {
            // Listen before reading, so an append between the read and the wait wakes us.
            listener = Some(tenant.public_stream_appended());
            let events = read(tenant, stream, partition, next, room)
                .await
                .map_err(|e| format!("reading public stream {stream}: {e}"))?;
            if let Some((end, _)) = events.last() {
                status.stream_end.fetch_max(end.0 + 1, Relaxed);
            }
            for (position, event) in events {
                let request = horizon_event(position, &event);
                // The request's context is the event's as stored (claims and all), as the
                // original sends it; the event itself goes without claims.
                let context = convert::execution_context_to_wire(&event.execution_context);
                let Ok(answer) = call
                    .send_call(|call_id| EventHorizonProducerToConsumerMessage {
                        message: Some(Outgoing::Request(ConsumerRequest {
                            call_context: Some(request_context(call_id, context)),
                            event: Some(request),
                        })),
                    })
                    .await
                else {
                    return Ok(());
                };
                in_flight.push_back((position, answer));
                next = position.next();
                status.sent_position.store(next.0, Relaxed);
                sent_any = true;
            }
        }
        if sent_any {
            // Fill the window before waiting on anything.
            if in_flight.len() < window {
                continue;
            }
        }
        // Wait for the oldest acknowledgement, or new events, or the end.
        tokio::select! {
            biased;
            () = call.ended().cancelled() => return Ok(()),
            answer = async {
                match in_flight.front_mut() {
                    Some((_, answer)) => answer.await.ok(),
                    None => std::future::pending().await,
                }
            } => {
                let Some(answer) = answer else { return Ok(()) };
                let Some((position, _)) = in_flight.pop_front() else { return Ok(()) };
                acknowledged(position, &answer, status)?;
                // Acknowledgements that arrived meanwhile are taken without waiting.
                while let Some((position, answer)) = in_flight.front_mut() {
                    match answer.try_take() {
                        Some(Ok(answer)) => {
                            acknowledged(*position, &answer, status)?;
                            in_flight.pop_front();
                        }
                        None => break,
                        Some(Err(_)) => return Ok(()),
                    }
                }
            }
            () = async {
                match listener {
                    Some(listener) if !sent_any => {
                        let _ = tokio::time::timeout(IDLE_RECHECK, listener).await;
                    }
                    _ => std::future::pending().await,
                }
            } => {}
        }
    }
}

/// Takes the consumer's answer to the event at `position`: an acknowledgement moves the
/// acknowledged position past it; a failure ends the subscription (`Err` says why).
fn acknowledged(
    position: StreamPosition,
    answer: &ConsumerResponse,
    status: &ServedStatus,
) -> Result<(), String> {
    if let Some(failure) = &answer.failure {
        return Err(format!(
            "the consumer failed the event at stream position {position}: {}",
            failure.reason
        ));
    }
    status.acknowledged_position.store(position.0 + 1, Relaxed);
    Ok(())
}

/// Up to `max` events of the partition from stream position `from`, with their positions.
async fn read(
    tenant: &Arc<Tenant>,
    stream: Uuid,
    partition: &str,
    from: StreamPosition,
    max: usize,
) -> Result<Vec<(StreamPosition, Event)>, annals_engine::Error> {
    let tenant = Arc::clone(tenant);
    let partition = partition.to_owned();
    blocking::run(move || {
        let entries = tenant.read_public_stream_partition(stream, &partition, from, max)?;
        if entries.is_empty() {
            return Ok(Vec::new());
        }
        let log = tenant.event_log()?;
        let mut events = Vec::with_capacity(entries.len());
        // Entries of one partition are often neighbours in the log: read runs of consecutive
        // sequence numbers with one read each.
        let mut batch = annals_engine::RecordBatch::new();
        let mut at = 0;
        let mut bytes = 0;
        while at < entries.len() {
            let start = entries[at].event_log_sequence_number;
            let mut run = 1;
            while at + run < entries.len()
                && entries[at + run].event_log_sequence_number.0 == start.0 + run as u64
            {
                run += 1;
            }
            // A read returns fewer records than asked only at its byte limit (at least one):
            // the rest of the run is read by the next turn.
            log.read_into_cached(start, run, READ_BYTES_MAX, &mut batch)?;
            let read = batch.events()?;
            if read.is_empty() {
                return Err(annals_engine::Error::Log(
                    annals_engine::LogError::InvalidRequest(format!(
                        "public stream {stream} refers to event {start}, which the event log does not have"
                    )),
                ));
            }
            for event in read {
                let entry = &entries[at];
                if event.sequence_number != entry.event_log_sequence_number {
                    return Err(annals_engine::Error::Log(
                        annals_engine::LogError::InvalidRequest(format!(
                            "public stream {stream} at {} refers to event {}, the log gave {}",
                            entry.position, entry.event_log_sequence_number, event.sequence_number
                        )),
                    ));
                }
                events.push((entry.position, event));
                at += 1;
            }
            bytes += batch.payload_bytes();
            if bytes >= READ_BYTES_MAX {
                break;
            }
        }
        Ok(events)
    })
    .await
}

/// The event as the original sends it: claims stripped, the event source as text and, where it
/// is a Guid, also as the legacy Uuid.
#[expect(
    deprecated,
    reason = "consumers of Contracts 5 read the event source only from the legacy Guid field"
)]
fn horizon_event(position: StreamPosition, event: &Event) -> EventHorizonEvent {
    let mut context = event.execution_context.clone();
    context.claims.clear();
    EventHorizonEvent {
        stream_sequence_number: position.0,
        event: Some(EventHorizonCommittedEvent {
            event_log_sequence_number: event.sequence_number.0,
            occurred: Some(convert::timestamp(event.occurred_ns)),
            event_source_id_legacy: ids::parse_dotnet_guid(&event.event_source_id)
                .map(ids::to_wire),
            execution_context: Some(convert::execution_context_to_wire(&context)),
            event_type: Some(convert::event_type_to_wire(event.event_type)),
            public: event.public,
            content: event.content.clone(),
            // Public streams hold events of the event log only (received events are never
            // public), and the original never sets these.
            external: false,
            external_event_log_sequence_number: 0,
            external_event_received: None,
            event_source_id: Some(event.event_source_id.clone()),
        }),
    }
}
