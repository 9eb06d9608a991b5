//! The gRPC ceiling of this machine: a minimal tonic server built from the same protos as the
//! runtime, answering Commit, CommitForAggregate, FetchForAggregate and the EventHandlers
//! reverse call with answers of the same size as the runtime's, and doing no I/O at all.
//!
//! `annals-bench grpc` and `annals-bench delivery` drive it with the same clients, interleaved
//! with the runtime, so every figure of the runtime is also said as a share of what gRPC
//! itself allows here: what the runtime loses below that is its own, not the disk's.
//!
//! What it does per request is the least any server of this contract must do:
//! - Commit and CommitForAggregate move each event of the request into its committed form
//!   (sequence number, occurred time, the request's execution context per event), so the
//!   answer carries the same bytes as the runtime's;
//! - FetchForAggregate answers a canned aggregate given at start (a clone per request);
//! - Connect reads the registration, accepts it, then sends canned events (each with its
//!   own call id and execution context) with at most the registration's concurrency in
//!   flight, taking each answer by its call id, until the head hangs up.
//!
//! It runs on a runtime of its own with two workers, as the runtime's server does on this
//! machine, and sets the same HTTP/2 windows and `TCP_NODELAY`.
//!
//! The durable ceiling ([`Ceiling::start_durable`]) is the same server with one thing more: a
//! Commit is answered only once its events are on disk. Each Commit appends its events (each
//! encoded as the contract's message) to a queue, and one thread writes whatever has queued
//! with one `pwrite` and one `fdatasync` to a file laid out as the raw baseline's
//! ([`RawLog`]: pre-allocated, zeroed and synced), then completes the group's requests. No
//! gathering, no index, no checks: the least a gRPC server that keeps the contract's promise
//! (an acknowledged commit is durable) must add to the ceiling on this disk.

use std::collections::HashSet;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::SystemTime;

use annals_engine::Commit;
use annals_server::proto::dolittle;
use anyhow::{Context, Result};
use dolittle::runtime::events::event_store_server::{EventStore, EventStoreServer};
use dolittle::runtime::events::processing;
use dolittle::runtime::events::processing::event_handlers_server::{
    EventHandlers, EventHandlersServer,
};
use dolittle::runtime::events::{
    committed_aggregate_events::CommittedAggregateEvent, CommitAggregateEventsRequest,
    CommitAggregateEventsResponse, CommitEventsRequest, CommitEventsResponse,
    CommittedAggregateEvents, CommittedEvent, FetchForAggregateInBatchesRequest,
    FetchForAggregateRequest, FetchForAggregateResponse,
};
use parking_lot::{Condvar, Mutex};
use processing::event_handler_client_to_runtime_message::Message as FromHead;
use processing::event_handler_runtime_to_client_message::Message as ToHead;
use prost::Message as _;
use tokio::sync::{mpsc, oneshot};
use tokio_stream::wrappers::ReceiverStream;
use tokio_stream::StreamExt;
use tonic::{Request, Response, Status, Streaming};

use crate::cpu;
use crate::grpc::wire_execution_context;
use crate::raw::{RawLayout, RawLog};

/// The answers the ceiling gives that do not follow from the request.
#[derive(Clone)]
pub(crate) struct Canned {
    /// The answer to every FetchForAggregate.
    pub(crate) fetch: CommittedAggregateEvents,
    /// The events an event handler is sent, in turn (their sequence numbers are set as sent).
    pub(crate) handled: Arc<Vec<CommittedEvent>>,
}

impl Canned {
    /// The fetch answer for `aggregate` (its events as the runtime stores them: versions from
    /// 0, the commit's execution context on each), and `events` as committed events.
    #[expect(
        deprecated,
        reason = "the runtime fills the old version field too, so the ceiling's answer does"
    )]
    pub(crate) fn new(aggregate: &Commit, events: &[Commit]) -> Canned {
        let context = wire_execution_context(&aggregate.execution_context);
        let fetch = CommittedAggregateEvents {
            event_source_id: "aggregate-0".into(),
            aggregate_root_id: Some(annals_server::wire::uuid(uuid::Uuid::from_u128(0xfe7c))),
            aggregate_root_version: aggregate.events.len() as u64,
            current_aggregate_root_version: aggregate.events.len() as u64,
            events: aggregate
                .events
                .iter()
                .zip(0u64..)
                .map(|(e, version)| CommittedAggregateEvent {
                    event_log_sequence_number: version,
                    occurred: Some(now()),
                    execution_context: Some(context.clone()),
                    event_type: Some(artifact(e.event_type)),
                    public: e.public,
                    content: e.content.clone(),
                    aggregate_root_version: version,
                })
                .collect(),
        };
        let handled = events
            .iter()
            .flat_map(|commit| {
                let context = wire_execution_context(&commit.execution_context);
                commit.events.iter().map(move |e| CommittedEvent {
                    event_log_sequence_number: 0,
                    occurred: Some(now()),
                    event_source_id: e.event_source_id.clone(),
                    execution_context: Some(context.clone()),
                    event_type: Some(artifact(e.event_type)),
                    public: e.public,
                    content: e.content.clone(),
                    external: false,
                    external_event_log_sequence_number: 0,
                    external_event_received: None,
                })
            })
            .collect();
        Canned {
            fetch,
            handled: Arc::new(handled),
        }
    }
}

fn artifact(event_type: annals_engine::EventType) -> dolittle::artifacts::Artifact {
    dolittle::artifacts::Artifact {
        id: Some(annals_server::wire::uuid(event_type.id)),
        generation: event_type.generation,
    }
}

fn now() -> prost_types::Timestamp {
    prost_types::Timestamp::from(SystemTime::now())
}

/// A running ceiling server; stopped when dropped.
pub(crate) struct Ceiling {
    /// Its port on 127.0.0.1.
    pub(crate) port: u16,
    stop: Option<oneshot::Sender<()>>,
    runtime: Option<tokio::runtime::Runtime>,
    /// The prefix of its threads' names.
    threads: &'static str,
    /// The durable ceiling's log and its thread (None for the ceiling).
    log: Option<(Arc<SyncedLog>, JoinHandle<()>)>,
}

/// Name of the ceiling runtime's threads (the load tool reads their CPU time by it).
const THREADS: &str = "ceiling";

/// Name (prefix) of the durable ceiling's threads: its runtime's and its log's.
const DURABLE_THREADS: &str = "durable";

impl Ceiling {
    /// Starts the ceiling on a free port, on a runtime of its own with two workers.
    pub(crate) fn start(canned: Canned) -> Result<Ceiling> {
        Ceiling::serve(canned, THREADS, None)
    }

    /// Starts the durable ceiling: the ceiling whose Commit answers once its events are
    /// written and synced to a new file at `path` of `capacity_bytes` (written over from its
    /// start when full).
    pub(crate) fn start_durable(
        canned: Canned,
        path: &Path,
        capacity_bytes: u64,
    ) -> Result<Ceiling> {
        let raw = RawLog::create(path, RawLayout::Preallocated(capacity_bytes))
            .context("create the durable ceiling's file")?;
        let (log, thread) = SyncedLog::start(raw)?;
        let mut ceiling = Ceiling::serve(canned, DURABLE_THREADS, Some(Arc::clone(&log)))?;
        ceiling.log = Some((log, thread));
        Ok(ceiling)
    }

    /// Whose CPU time is this server's: its threads, by the prefix of their names.
    pub(crate) fn cpu_party(&self) -> cpu::Party {
        cpu::Party::OwnThreads(self.threads)
    }

    /// `fdatasync`s of the durable ceiling so far (0 for the ceiling).
    pub(crate) fn data_syncs(&self) -> u64 {
        self.log.as_ref().map_or(0, |(log, _)| log.raw.data_syncs())
    }

    fn serve(
        canned: Canned,
        threads: &'static str,
        log: Option<Arc<SyncedLog>>,
    ) -> Result<Ceiling> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name(threads)
            .enable_all()
            .build()
            .context("start the ceiling's runtime")?;
        let listener = runtime
            .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
            .context("bind the ceiling's port")?;
        let port = listener.local_addr()?.port();
        let (stop, stopped) = oneshot::channel::<()>();
        let service = Service {
            canned,
            next: Arc::new(AtomicU64::new(0)),
            log,
        };
        let incoming =
            tonic::transport::server::TcpIncoming::from(listener).with_nodelay(Some(true));
        let router = tonic::transport::Server::builder()
            .initial_stream_window_size(Some(4 << 20))
            .initial_connection_window_size(Some(16 << 20))
            .add_service(EventStoreServer::new(service.clone()).max_decoding_message_size(64 << 20))
            .add_service(EventHandlersServer::new(service).max_decoding_message_size(64 << 20));
        runtime.spawn(async move {
            let stopped = async {
                let _ = stopped.await;
            };
            if let Err(e) = router.serve_with_incoming_shutdown(incoming, stopped).await {
                eprintln!("the ceiling server stopped: {e}");
            }
        });
        Ok(Ceiling {
            port,
            stop: Some(stop),
            runtime: Some(runtime),
            threads,
            log: None,
        })
    }
}

impl Drop for Ceiling {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_timeout(std::time::Duration::from_secs(5));
        }
        if let Some((log, thread)) = self.log.take() {
            log.close();
            let _ = thread.join();
        }
    }
}

/// The durable ceiling's log: commits queue their bytes, one thread writes and syncs
/// whatever has queued, then completes those commits.
pub(crate) struct SyncedLog {
    raw: RawLog,
    queue: Mutex<SyncQueue>,
    /// Signalled when bytes queue, and on close.
    work: Condvar,
}

#[derive(Default)]
struct SyncQueue {
    /// The queued commits' bytes, back to back.
    bytes: Vec<u8>,
    /// Their requests, woken in order once the bytes are durable.
    waiting: Vec<oneshot::Sender<Result<(), String>>>,
    closed: bool,
}

impl SyncedLog {
    /// The log over `raw` and its thread (which ends once [`close`](Self::close)d).
    fn start(raw: RawLog) -> Result<(Arc<SyncedLog>, JoinHandle<()>)> {
        let log = Arc::new(SyncedLog {
            raw,
            queue: Mutex::new(SyncQueue::default()),
            work: Condvar::new(),
        });
        let writer = Arc::clone(&log);
        let thread = std::thread::Builder::new()
            .name(format!("{DURABLE_THREADS}-sync"))
            .spawn(move || writer.run())
            .context("start the durable ceiling's log thread")?;
        Ok((log, thread))
    }

    /// Queues `events` (each encoded as the contract's message, length-delimited); the
    /// receiver is completed once they are written and synced.
    fn append(
        &self,
        events: &[dolittle::runtime::events::UncommittedEvent],
    ) -> oneshot::Receiver<Result<(), String>> {
        let (done, durable) = oneshot::channel();
        let mut queue = self.queue.lock();
        if queue.closed {
            let _ = done.send(Err("the durable ceiling is closed".into()));
            return durable;
        }
        for event in events {
            event.encode_length_delimited(&mut queue.bytes).ok();
        }
        queue.waiting.push(done);
        // No system call unless the thread waits (parking_lot knows whether it does).
        self.work.notify_one();
        durable
    }

    /// The log thread: takes whatever has queued, writes it with one `pwrite` and one
    /// `fdatasync` ([`RawLog::write_group`]), completes it; until closed.
    fn run(&self) {
        let mut spare = Vec::new();
        let mut waiting = Vec::new();
        loop {
            let mut queue = self.queue.lock();
            while queue.waiting.is_empty() && !queue.closed {
                self.work.wait(&mut queue);
            }
            if queue.waiting.is_empty() {
                return;
            }
            let bytes = std::mem::replace(&mut queue.bytes, std::mem::take(&mut spare));
            std::mem::swap(&mut waiting, &mut queue.waiting);
            drop(queue);
            let result = self.raw.write_group(&bytes).map_err(|e| format!("{e:#}"));
            for done in waiting.drain(..) {
                let _ = done.send(result.clone());
            }
            spare = bytes;
            spare.clear();
        }
    }

    /// Tells the thread to end once what has queued is written.
    fn close(&self) {
        self.queue.lock().closed = true;
        self.work.notify_one();
    }
}

#[derive(Clone)]
struct Service {
    canned: Canned,
    /// The next sequence number to hand out.
    next: Arc<AtomicU64>,
    /// The durable ceiling's log (None: answers at once).
    log: Option<Arc<SyncedLog>>,
}

/// The execution context a request carries, as each of its events is stamped with.
fn context_of(
    call_context: Option<dolittle::services::CallRequestContext>,
) -> Result<dolittle::execution::ExecutionContext, Status> {
    call_context
        .and_then(|c| c.execution_context)
        .ok_or_else(|| Status::invalid_argument("no execution context"))
}

#[tonic::async_trait]
impl EventStore for Service {
    async fn commit(
        &self,
        request: Request<CommitEventsRequest>,
    ) -> Result<Response<CommitEventsResponse>, Status> {
        let request = request.into_inner();
        let context = context_of(request.call_context)?;
        if let Some(log) = &self.log {
            log.append(&request.events)
                .await
                .map_err(|_| Status::unavailable("the durable ceiling stopped"))?
                .map_err(Status::internal)?;
        }
        let first = self
            .next
            .fetch_add(request.events.len() as u64, Ordering::Relaxed);
        let occurred = now();
        let events = request
            .events
            .into_iter()
            .zip(first..)
            .map(|(e, sequence_number)| CommittedEvent {
                event_log_sequence_number: sequence_number,
                occurred: Some(occurred),
                event_source_id: e.event_source_id,
                execution_context: Some(context.clone()),
                event_type: e.event_type,
                public: e.public,
                content: e.content,
                external: false,
                external_event_log_sequence_number: 0,
                external_event_received: None,
            })
            .collect();
        Ok(Response::new(CommitEventsResponse {
            failure: None,
            events,
        }))
    }

    #[expect(
        deprecated,
        reason = "the runtime fills the old version field too, so the ceiling's answer does"
    )]
    async fn commit_for_aggregate(
        &self,
        request: Request<CommitAggregateEventsRequest>,
    ) -> Result<Response<CommitAggregateEventsResponse>, Status> {
        let request = request.into_inner();
        let context = context_of(request.call_context)?;
        let aggregate = request
            .events
            .ok_or_else(|| Status::invalid_argument("no events"))?;
        let count = aggregate.events.len() as u64;
        let first = self.next.fetch_add(count, Ordering::Relaxed);
        let expected = aggregate.expected_aggregate_root_version;
        let occurred = now();
        let events = aggregate
            .events
            .into_iter()
            .zip(0u64..)
            .map(|(e, i)| CommittedAggregateEvent {
                event_log_sequence_number: first + i,
                occurred: Some(occurred),
                execution_context: Some(context.clone()),
                event_type: e.event_type,
                public: e.public,
                content: e.content,
                aggregate_root_version: expected + i,
            })
            .collect();
        Ok(Response::new(CommitAggregateEventsResponse {
            failure: None,
            events: Some(CommittedAggregateEvents {
                event_source_id: aggregate.event_source_id,
                aggregate_root_id: aggregate.aggregate_root_id,
                aggregate_root_version: expected + count,
                current_aggregate_root_version: expected + count,
                events,
            }),
        }))
    }

    async fn fetch_for_aggregate(
        &self,
        request: Request<FetchForAggregateRequest>,
    ) -> Result<Response<FetchForAggregateResponse>, Status> {
        let request = request.into_inner();
        context_of(request.call_context)?;
        Ok(Response::new(FetchForAggregateResponse {
            failure: None,
            events: Some(self.canned.fetch.clone()),
        }))
    }

    async fn fetch_for_aggregate_in_batches(
        &self,
        _request: Request<FetchForAggregateInBatchesRequest>,
    ) -> Result<Response<tonic::codegen::BoxStream<FetchForAggregateResponse>>, Status> {
        Err(Status::unimplemented("the ceiling does not stream batches"))
    }
}

type ToHeadStream = tonic::codegen::BoxStream<processing::EventHandlerRuntimeToClientMessage>;

#[tonic::async_trait]
impl EventHandlers for Service {
    async fn connect(
        &self,
        request: Request<Streaming<processing::EventHandlerClientToRuntimeMessage>>,
    ) -> Result<Response<ToHeadStream>, Status> {
        let mut inbound = request.into_inner();
        let registration = match inbound.next().await {
            Some(Ok(processing::EventHandlerClientToRuntimeMessage {
                message: Some(FromHead::RegistrationRequest(r)),
            })) => r,
            Some(Err(status)) => return Err(status),
            _ => return Err(Status::invalid_argument("expected a registration first")),
        };
        let (to_head, outbound) = mpsc::channel(64);
        to_head
            .send(Ok(message(ToHead::RegistrationResponse(
                processing::EventHandlerRegistrationResponse { failure: None },
            ))))
            .await
            .map_err(|_| Status::cancelled("the head went away"))?;
        let events = Arc::clone(&self.canned.handled);
        tokio::spawn(serve_head(registration, inbound, to_head, events));
        Ok(Response::new(Box::pin(ReceiverStream::new(outbound))))
    }
}

fn message(m: ToHead) -> processing::EventHandlerRuntimeToClientMessage {
    processing::EventHandlerRuntimeToClientMessage { message: Some(m) }
}

/// Sends `events` in turn with at most the registration's concurrency in flight, taking each
/// answer by its call id, until the head hangs up.
async fn serve_head(
    registration: processing::EventHandlerRegistrationRequest,
    mut inbound: Streaming<processing::EventHandlerClientToRuntimeMessage>,
    to_head: mpsc::Sender<Result<processing::EventHandlerRuntimeToClientMessage, Status>>,
    events: Arc<Vec<CommittedEvent>>,
) {
    if events.is_empty() {
        return;
    }
    let concurrency = usize::try_from(registration.concurrency.max(1)).unwrap_or(1);
    let execution_context = registration.call_context.and_then(|c| c.execution_context);
    let scope_id = registration.scope_id;
    let partitioned = registration.partitioned;
    let mut in_flight: HashSet<u128> = HashSet::new();
    let mut sent = 0u64;
    loop {
        while in_flight.len() < concurrency {
            let index = usize::try_from(sent).unwrap_or(0) % events.len();
            let mut event = events[index].clone();
            event.event_log_sequence_number = sent;
            let call_id = uuid::Uuid::from_u128(u128::from(sent) + 1);
            let request = processing::HandleEventRequest {
                call_context: Some(dolittle::services::ReverseCallRequestContext {
                    call_id: Some(annals_server::wire::uuid(call_id)),
                    execution_context: execution_context.clone(),
                }),
                event: Some(processing::StreamEvent {
                    partition_id: if partitioned {
                        event.event_source_id.clone()
                    } else {
                        "00000000-0000-0000-0000-000000000000".into()
                    },
                    event: Some(event),
                    scope_id: scope_id.clone(),
                    partitioned,
                    stream_position: sent,
                }),
                retry_processing_state: None,
            };
            if to_head
                .send(Ok(message(ToHead::HandleRequest(request))))
                .await
                .is_err()
            {
                return;
            }
            in_flight.insert(call_id.as_u128());
            sent += 1;
        }
        match inbound.next().await {
            Some(Ok(processing::EventHandlerClientToRuntimeMessage {
                message: Some(FromHead::HandleResult(result)),
            })) => {
                let call_id = result
                    .call_context
                    .and_then(|c| c.call_id)
                    .and_then(|id| annals_server::wire::from_uuid(&id));
                match call_id {
                    Some(id) if in_flight.remove(&id.as_u128()) => {}
                    _ => {
                        let _ = to_head
                            .send(Err(Status::invalid_argument("an answer to no request")))
                            .await;
                        return;
                    }
                }
            }
            Some(Ok(_)) => {}
            Some(Err(_)) | None => return,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::EventFactory;
    use crate::grpc::{commit_request, connect};
    use dolittle::runtime::events::UncommittedEvent;

    /// The events encoded back to back at the start of `file` (its zeroed rest ends them).
    /// Read while the log writes, a group being copied in may read torn: `whole` says there
    /// is none, so anything undecodable fails the test.
    fn events_in(file: &Path, whole: bool) -> Vec<UncommittedEvent> {
        let bytes = std::fs::read(file).unwrap();
        let mut rest = &bytes[..];
        let mut events = Vec::new();
        while rest.first().is_some_and(|&b| b != 0) {
            match UncommittedEvent::decode_length_delimited(&mut rest) {
                Ok(event) => events.push(event),
                Err(e) => {
                    assert!(
                        !whole,
                        "undecodable bytes in the durable ceiling's file: {e}"
                    );
                    break;
                }
            }
        }
        events
    }

    #[test]
    fn the_durable_ceiling_answers_a_commit_once_its_events_are_written() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("durable");
        let mut factory = EventFactory::new(5);
        let ceiling =
            Ceiling::start_durable(Canned::new(&factory.commit(2), &[]), &path, 1 << 20).unwrap();
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        let clients = connect(&runtime, ceiling.port, 4).unwrap();
        let requests: Vec<Vec<_>> = (0..4)
            .map(|_| {
                (0..10)
                    .map(|i| commit_request(&factory.commit(1 + i % 3)))
                    .collect()
            })
            .collect();
        let answered: Vec<_> = clients
            .into_iter()
            .zip(requests.clone())
            .map(|(mut client, requests)| {
                let path = path.clone();
                runtime.spawn(async move {
                    let mut answered = 0;
                    for request in requests {
                        let events = request.events.clone();
                        let response = client.commit(request).await.unwrap().into_inner();
                        assert!(response.failure.is_none());
                        assert_eq!(response.events.len(), events.len());
                        // Answered: its events are in the file already.
                        let written = events_in(&path, false);
                        assert!(events.iter().all(|e| written.contains(e)));
                        answered += events.len();
                    }
                    answered
                })
            })
            .collect();
        let answered: usize = answered
            .into_iter()
            .map(|task| runtime.block_on(task).unwrap())
            .sum();
        let syncs = ceiling.data_syncs();
        drop(ceiling);
        let written = events_in(&path, true);
        assert_eq!(written.len(), answered);
        for e in requests.iter().flatten().flat_map(|r| &r.events) {
            assert!(written.contains(e));
        }
        assert!((1..=40).contains(&syncs), "{syncs} syncs for 40 commits");
    }
}
