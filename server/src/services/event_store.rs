//! `dolittle.runtime.events.EventStore`: commits, commits for aggregates, and fetching an
//! aggregate's events (whole, or streamed in bounded batches).
//!
//! Every request is checked whole before anything is written, and a request that fails gets
//! its own Failure without touching others: unlike the original, whose commit actor fails
//! every request of a batch when one is bad, here each commit is validated and encoded on
//! its own before it joins a group commit, and a group only fails together when the disk
//! does (the log is then poisoned and every later commit fails too, by design).
//!
//! Failures are in-band (`failure` set, gRPC status OK), as the SDKs expect. The unary rpcs go
//! through the request step (`services::request`); a batch stream is recorded by the same
//! [`Call`] when it ends.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use annals_engine::{
    AggregateCommit, AggregateCommitReceipt, Commit, CommitReceipt, ExecutionContext, Tenant,
};
use bytes::Bytes;
use prost::Message;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status};
use uuid::Uuid;

use crate::api::commit_request::CommitRequest;
use crate::api::failure::{id, Failure, InBand};
use crate::api::{committed, convert, ids};
use crate::blocking::{self, blocking};
use crate::clock;
use crate::proto::dolittle::runtime::events::event_store_server::EventStore;
use crate::proto::dolittle::runtime::events::fetch_for_aggregate_in_batches_request::Request as BatchesRequest;
use crate::proto::dolittle::runtime::events::{
    CommitAggregateEventsRequest, CommitAggregateEventsResponse, CommitEventsRequest,
    CommitEventsResponse, CommittedAggregateEvents, FetchForAggregateInBatchesRequest,
    FetchForAggregateRequest, FetchForAggregateResponse,
};
use crate::runtime::Runtime;
use crate::services::fetch_answers::{self, CommittedEntries};
use crate::services::request::{self, with_call_context, Call};

/// The most a FetchForAggregateInBatches response carries (the original's 2 MiB), counted
/// as the engine estimates event sizes; one event larger than that still goes alone.
const BATCH_BYTES_MAX: usize = 2 * 1024 * 1024 - 64 * 1024;

/// Responses of one FetchForAggregateInBatches call buffered ahead of a slow reader: the
/// producer waits until they are taken (bounded memory per call, about 2 MiB each).
const BATCHES_AHEAD: usize = 2;

/// Commits to one aggregate in flight at once (running or waiting their turn); more are
/// refused. The original refuses every commit to an aggregate that has one in flight.
const AGGREGATE_WAITERS_MAX: usize = 16;

/// The commits in flight per aggregate (tenant, root, event source).
#[derive(Default)]
pub(crate) struct AggregateWaiters {
    counts: parking_lot::Mutex<HashMap<(Uuid, Uuid, String), usize>>,
}

/// A commit's place among its aggregate's; leaving it counts the commit out.
pub(crate) struct AggregateTurn<'w> {
    waiters: &'w AggregateWaiters,
    key: (Uuid, Uuid, String),
}

impl AggregateWaiters {
    fn enter(&self, tenant: Uuid, root: Uuid, event_source_id: &str) -> Option<AggregateTurn<'_>> {
        let key = (tenant, root, event_source_id.to_owned());
        let mut counts = self.counts.lock();
        let count = counts.entry(key.clone()).or_insert(0);
        if *count >= AGGREGATE_WAITERS_MAX {
            return None;
        }
        *count += 1;
        Some(AggregateTurn { waiters: self, key })
    }
}

impl Drop for AggregateTurn<'_> {
    fn drop(&mut self) {
        let mut counts = self.waiters.counts.lock();
        if let Some(count) = counts.get_mut(&self.key) {
            *count -= 1;
            if *count == 0 {
                counts.remove(&self.key);
            }
        }
    }
}

/// Aggregates of at most this many events are fetched on the request's own worker (when the
/// index needs no waiting for); larger ones on a blocking thread. The bound keeps the worker's
/// worst case (every event in another sealed block, none cached) to a few milliseconds.
const FETCH_INLINE_EVENTS_MAX: u64 = 32;

/// FetchForAggregateInBatches streams running at once; more wait for one to end.
const BATCH_STREAMS_MAX: usize = 64;

/// The event store service.
pub(crate) struct EventStoreService {
    runtime: Arc<Runtime>,
    /// Permits for running batch streams (each holds a blocking thread while it runs).
    streams: Arc<tokio::sync::Semaphore>,
    /// Commits in flight per aggregate.
    aggregate_waiters: AggregateWaiters,
}

impl EventStoreService {
    /// The runtime it serves.
    pub(crate) fn runtime(&self) -> &Arc<Runtime> {
        &self.runtime
    }

    pub(crate) fn new(runtime: Arc<Runtime>) -> EventStoreService {
        EventStoreService {
            runtime,
            streams: Arc::new(tokio::sync::Semaphore::new(BATCH_STREAMS_MAX)),
            aggregate_waiters: AggregateWaiters::default(),
        }
    }
}

/// Commit as its rpc runs (the generated server's and `event_store_wire`'s): counted as
/// received, then `commit_as` for the call's tenant, answered in band.
pub(crate) async fn commit_rpc<P, T, R: InBand<T>>(
    runtime: &Runtime,
    request: Request<CommitRequest>,
    prepare: fn(&Commit) -> P,
    answer: fn(P, Commit, CommitReceipt) -> T,
) -> Result<Response<R>, Status> {
    runtime.metrics.dolittle.commit_received();
    request::unary_for_tenant(runtime, "Commit", request, |tenant, request| {
        commit_as(runtime, tenant, request, prepare, answer)
    })
    .await
}

/// Commits the request's events; the acknowledged commit is answered as `answer` makes it
/// from what `prepare` made of the commit while it was on its way to disk (the commit is
/// queued for its group before `prepare` runs, so the two overlap).
async fn commit_as<P, T>(
    runtime: &Runtime,
    (context, tenant): (ExecutionContext, Arc<Tenant>),
    request: CommitRequest,
    prepare: fn(&Commit) -> P,
    answer: fn(P, Commit, CommitReceipt) -> T,
) -> Result<T, Failure> {
    // A failure comes with at least one event, so a request without any fails as having none.
    let events = request.events?;
    if events.is_empty() {
        return Err(Failure::no_events());
    }
    let commit = Commit {
        occurred_ns: clock::now_ns(),
        execution_context: context,
        events,
    };
    // `join` polls the commit first: its first poll checks, encodes and queues it.
    let (receipt, prepared) = blocking::engine(async {
        let (receipt, prepared) =
            futures_util::future::join(tenant.commit_async(&commit), async { prepare(&commit) })
                .await;
        Ok((receipt?, prepared))
    })
    .await?;
    runtime.metrics.committed(
        commit.execution_context.tenant_id,
        receipt.count,
        commit.events.iter().map(|e| e.event_type.id),
        None,
    );
    Ok(answer(prepared, commit, receipt))
}

/// CommitForAggregate as its rpc runs (the generated server's and `event_store_wire`'s):
/// counted as received, then `commit_for_aggregate_as` for the call's tenant, answered in
/// band.
pub(crate) async fn commit_for_aggregate_rpc<P, T: CommittedEntries, R: InBand<T>>(
    service: &EventStoreService,
    request: Request<CommitAggregateEventsRequest>,
    prepare: fn(&AggregateCommit) -> P,
    answer: fn(P, AggregateCommit, AggregateCommitReceipt) -> T,
) -> Result<Response<R>, Status> {
    let (runtime, waiting) = (&service.runtime, &service.aggregate_waiters);
    runtime.metrics.dolittle.commit_for_aggregate_received();
    request::unary_for_tenant(runtime, "CommitForAggregate", request, |tenant, request| {
        commit_for_aggregate_as(runtime, waiting, tenant, request, prepare, answer)
    })
    .await
}

/// Commits the request's events to its aggregate; the acknowledged commit is answered as
/// `answer` makes it from what `prepare` made of the commit while it was on its way to disk
/// (as `commit_as` does). Answers to FetchForAggregate kept for the aggregate at the version
/// the commit expected get its events.
async fn commit_for_aggregate_as<P, T: CommittedEntries>(
    runtime: &Runtime,
    waiting: &AggregateWaiters,
    (context, tenant): (ExecutionContext, Arc<Tenant>),
    request: CommitAggregateEventsRequest,
    prepare: fn(&AggregateCommit) -> P,
    answer: fn(P, AggregateCommit, AggregateCommitReceipt) -> T,
) -> Result<T, Failure> {
    let aggregate = request
        .events
        .ok_or_else(|| Failure::invalid("events is missing"))?;
    let aggregate_root = ids::required(
        "events.aggregateRootId",
        aggregate.aggregate_root_id.as_ref(),
    )?;
    let event_source_id =
        convert::event_source_id("events.eventSourceId", &aggregate.event_source_id)?;
    if aggregate.events.is_empty() {
        return Err(Failure::no_events());
    }
    let events = convert::aggregate_events(aggregate.events)?;
    // Commits to one aggregate run one at a time (each waits for the aggregate's lock): past
    // a bound, refuse as the original does for any second one.
    let _turn = waiting
        .enter(context.tenant_id, aggregate_root, &event_source_id)
        .ok_or_else(|| {
            Failure::invalid(format!(
                "There are already events for aggregate with root type {aggregate_root} and \
                 event source {event_source_id}: {AGGREGATE_WAITERS_MAX} commits to it are in \
                 flight"
            ))
        })?;
    let commit = AggregateCommit {
        occurred_ns: clock::now_ns(),
        execution_context: context,
        aggregate_root,
        event_source_id,
        expected_version: aggregate.expected_aggregate_root_version,
        events,
    };
    // `join` polls the commit first: its first poll checks and queues it (or waits for the
    // aggregate's lock) before the answer is prepared.
    let (receipt, prepared) = blocking::engine(async {
        let (receipt, prepared) =
            futures_util::future::join(tenant.commit_for_aggregate_async(&commit), async {
                prepare(&commit)
            })
            .await;
        match receipt {
            Ok(receipt) => Ok((receipt, prepared)),
            Err(annals_engine::Error::WrongExpectedVersion { expected, actual }) => {
                runtime
                    .metrics
                    .dolittle
                    .concurrency_conflict(commit.execution_context.tenant_id, aggregate_root);
                Err(Failure::concurrency_conflict(
                    &commit.event_source_id,
                    aggregate_root,
                    expected,
                    actual,
                ))
            }
            Err(e) => Err(e.into()),
        }
    })
    .await?;
    runtime.metrics.committed(
        commit.execution_context.tenant_id,
        receipt.count,
        commit.events.iter().map(|e| e.event_type.id),
        Some(aggregate_root),
    );
    let (tenant_id, version_before) = (commit.execution_context.tenant_id, receipt.version_before);
    let event_types: Vec<Uuid> = commit.events.iter().map(|e| e.event_type.id).collect();
    let committed = answer(prepared, commit, receipt);
    runtime.fetch_answers.committed(
        tenant_id,
        aggregate_root,
        version_before,
        &committed,
        &event_types,
    );
    Ok(committed)
}

async fn fetch(
    runtime: &Runtime,
    tenant: (ExecutionContext, Arc<Tenant>),
    request: FetchForAggregateRequest,
) -> Result<CommittedAggregateEvents, Failure> {
    let (root, event_source_id) = convert::aggregate("aggregate", request.aggregate.as_ref())?;
    fetch_events(runtime, tenant, root, &event_source_id).await
}

/// Every event of an aggregate instance, as the answer carries them.
pub(crate) async fn fetch_events(
    runtime: &Runtime,
    (context, tenant): (ExecutionContext, Arc<Tenant>),
    root: Uuid,
    event_source_id: &str,
) -> Result<CommittedAggregateEvents, Failure> {
    // A small aggregate whose fetch needs no wait for the indexer is read here: a few index
    // and log reads cost less than the hop to a blocking thread and back.
    let fetched = if let Some(fetched) =
        tenant.try_fetch_for_aggregate(root, event_source_id, &[], FETCH_INLINE_EVENTS_MAX)
    {
        fetched?
    } else {
        let event_source_id = event_source_id.to_owned();
        blocking(move || Ok(tenant.fetch_for_aggregate(root, &event_source_id, &[])?)).await?
    };
    runtime
        .metrics
        .fetched(context.tenant_id, fetched.events.len() as u64);
    Ok(committed::aggregate_events(
        root,
        &fetched.event_source_id,
        fetched.current_version,
        &fetched.events,
    ))
}

with_call_context!(
    CommitRequest,
    CommitAggregateEventsRequest,
    FetchForAggregateRequest
);

#[tonic::async_trait]
impl EventStore for EventStoreService {
    async fn commit(
        &self,
        request: Request<CommitEventsRequest>,
    ) -> Result<Response<CommitEventsResponse>, Status> {
        commit_rpc(
            &self.runtime,
            request.map(CommitRequest::from),
            |_| (),
            |(), commit, receipt| committed::committed_events(commit, receipt),
        )
        .await
    }

    async fn commit_for_aggregate(
        &self,
        request: Request<CommitAggregateEventsRequest>,
    ) -> Result<Response<CommitAggregateEventsResponse>, Status> {
        commit_for_aggregate_rpc(
            self,
            request,
            |_| (),
            |(), commit, receipt| committed::committed_aggregate_events(commit, receipt),
        )
        .await
    }

    async fn fetch_for_aggregate(
        &self,
        request: Request<FetchForAggregateRequest>,
    ) -> Result<Response<FetchForAggregateResponse>, Status> {
        let runtime = &self.runtime;
        request::unary_for_tenant(runtime, "FetchForAggregate", request, |tenant, request| {
            fetch(runtime, tenant, request)
        })
        .await
    }
}

/// The encoded responses of a FetchForAggregateInBatches call.
pub(crate) type EncodedStream = tonic::codegen::BoxStream<Bytes>;

impl EventStoreService {
    /// FetchForAggregateInBatches, its responses encoded (`event_store_wire` serves it): the
    /// answer kept for the aggregate's selection when it has not changed since (one response),
    /// else batches read from the store on a blocking thread, the whole answer kept when it
    /// came in one batch.
    pub(crate) async fn fetch_batches(
        &self,
        request: Request<FetchForAggregateInBatchesRequest>,
    ) -> Result<Response<EncodedStream>, Status> {
        let mut call = Call::start("FetchForAggregateInBatches");
        let request = request.into_inner();
        // One slot more than the batches buffered ahead: the last word of a stream that has to
        // end early (a failure, shutdown, a reader that stopped reading) always has room.
        let (sender, receiver) = mpsc::channel(BATCHES_AHEAD + 1);
        let stream = |receiver| -> Result<Response<EncodedStream>, Status> {
            Ok(Response::new(Box::pin(ReceiverStream::new(receiver))))
        };
        let prepared = batches_request(&self.runtime, &mut call, &request);
        let (tenant, root, event_source_id, event_types) = match prepared {
            Ok(p) => p,
            Err(f) => {
                call.end(&self.runtime.metrics, Some(&f));
                // The channel is fresh and has room for this one message.
                let _ = sender.try_send(Ok(encoded(&FetchForAggregateResponse::failed(&f))));
                return stream(receiver);
            }
        };
        let selection = fetch_answers::selection(event_types.as_deref());
        // An empty selection is answered without reading any event (stream_batches).
        if event_types.as_ref().is_none_or(|types| !types.is_empty()) {
            let aggregate = (root, event_source_id.as_str());
            let runtime = &self.runtime;
            if let Some(answer) =
                fetch_answers::kept_answer(runtime, &tenant, aggregate, &selection)
            {
                call.end(&runtime.metrics, None);
                // The channel is fresh and has room for this one message.
                let _ = sender.try_send(Ok(answer.encoded()));
                return stream(receiver);
            }
        }
        let Ok(last_word) = sender.clone().try_reserve_owned() else {
            return Err(Status::internal("a fresh channel has no room"));
        };
        // Each stream holds a blocking thread while it runs: a bounded number of them, so
        // readers that stop reading cannot take the threads commits need.
        let Ok(permit) = Arc::clone(&self.streams).acquire_owned().await else {
            return Err(Status::unavailable("the runtime is shutting down"));
        };
        let runtime = Arc::clone(&self.runtime);
        let handle = tokio::runtime::Handle::current();
        tokio::task::spawn_blocking(move || {
            let _permit = permit;
            let mut out = Batches {
                handle: &handle,
                sender: &sender,
                stopping: runtime.stopping.clone(),
            };
            let ended = stream_batches(
                &runtime,
                &tenant,
                (root, &event_source_id),
                (event_types.as_deref(), selection),
                &mut out,
            );
            let failure = match ended {
                Ended::Done | Ended::ReaderGone => None,
                Ended::Failed(f) => {
                    last_word.send(Ok(encoded(&FetchForAggregateResponse::failed(&f))));
                    Some(f)
                }
                Ended::Aborted(status) => {
                    let f = Failure::new(id::EVENT_STORE_UNAVAILABLE, status.message());
                    last_word.send(Err(status));
                    Some(f)
                }
            };
            call.end(&runtime.metrics, failure.as_ref());
        });
        stream(receiver)
    }
}

/// A response, encoded.
pub(crate) fn encoded(response: &FetchForAggregateResponse) -> Bytes {
    response.encode_to_vec().into()
}

/// A checked FetchForAggregateInBatches request: tenant, aggregate, and the event types
/// (None for all; an empty list selects nothing, as in the original).
type BatchesRequestParts = (Arc<Tenant>, Uuid, String, Option<Vec<Uuid>>);

fn batches_request(
    runtime: &Runtime,
    call: &mut Call,
    request: &FetchForAggregateInBatchesRequest,
) -> Result<BatchesRequestParts, Failure> {
    let (_, tenant) = call.tenant(runtime, request.call_context.as_ref())?;
    let (root, event_source_id) = convert::aggregate("aggregate", request.aggregate.as_ref())?;
    let event_types = match &request.request {
        None => {
            return Err(Failure::invalid(
                "the request sets neither fetchAllEvents nor fetchEvents",
            ))
        }
        Some(BatchesRequest::FetchAllEvents(_)) => None,
        Some(BatchesRequest::FetchEvents(f)) => Some(
            f.event_types
                .iter()
                .enumerate()
                .map(|(i, t)| {
                    convert::event_type(format!("fetchEvents.eventTypes[{i}]"), Some(t))
                        .map(|t| t.id)
                })
                .collect::<Result<Vec<_>, _>>()?,
        ),
    };
    Ok((tenant, root, event_source_id, event_types))
}

/// How a batch stream ended.
enum Ended {
    /// Every batch was sent.
    Done,
    /// The reader went away.
    ReaderGone,
    /// The fetch failed: the failure goes in band.
    Failed(Failure),
    /// Cut short (shutdown, or a reader that stopped reading): a gRPC status.
    Aborted(Status),
}

/// Where a blocking batch producer sends: waits for room without holding up shutdown, and
/// gives up on a reader that takes nothing for [`READER_STALL_MAX`].
struct Batches<'a> {
    handle: &'a tokio::runtime::Handle,
    sender: &'a mpsc::Sender<Result<Bytes, Status>>,
    stopping: tokio::sync::watch::Receiver<bool>,
}

/// How long a batch stream waits for its reader to take a batch.
const READER_STALL_MAX: Duration = Duration::from_secs(60);

impl Batches<'_> {
    fn send(&mut self, response: Bytes) -> Result<(), Ended> {
        let (sender, stopping) = (self.sender, &mut self.stopping);
        self.handle.block_on(async move {
            tokio::select! {
                sent = sender.send(Ok(response)) => sent.map_err(|_| Ended::ReaderGone),
                _ = stopping.wait_for(|s| *s) => {
                    Err(Ended::Aborted(Status::unavailable("the runtime is shutting down")))
                }
                () = tokio::time::sleep(READER_STALL_MAX) => Err(Ended::Aborted(
                    Status::deadline_exceeded("the reader took no batch for 60 s"),
                )),
            }
        })
    }
}

/// Sends an aggregate's events in batches (`types`: the event types asked for, None for all,
/// and the selection they make). A fetch whose first batch is its whole answer keeps it.
fn stream_batches(
    runtime: &Runtime,
    tenant: &Tenant,
    (root, event_source_id): (Uuid, &str),
    (event_types, selection): (Option<&[Uuid]>, fetch_answers::Selection),
    out: &mut Batches<'_>,
) -> Ended {
    let event_types = match event_types {
        Some([]) => {
            let current = match tenant.aggregate_version(root, event_source_id) {
                Ok(v) => v,
                Err(e) => return Ended::Failed(e.into()),
            };
            let header = committed::aggregate_events(root, event_source_id, current, &[]);
            return match out.send(encoded(&FetchForAggregateResponse::ok(header))) {
                Ok(()) => Ended::Done,
                Err(ended) => ended,
            };
        }
        Some(types) => types,
        None => &[],
    };
    let mut batches = match tenant.fetch_for_aggregate_in_batches(
        root,
        event_source_id,
        event_types,
        BATCH_BYTES_MAX,
    ) {
        Ok(b) => b,
        Err(e) => return Ended::Failed(e.into()),
    };
    let current = batches.current_version();
    let mut selection = Some(selection);
    let mut sent = 0usize;
    let mut next = batches.next();
    loop {
        let events = match next.take() {
            None if sent > 0 => return Ended::Done,
            // No events: one response with the header and an empty list.
            None => Vec::new(),
            Some(Ok(events)) => events,
            Some(Err(e)) => return Ended::Failed(e.into()),
        };
        // The next batch is read before this one is sent, so the first batch is known to be
        // the whole answer when it is.
        if !events.is_empty() {
            next = batches.next();
        }
        runtime.metrics.fetched(tenant.id().0, events.len() as u64);
        let answer = committed::aggregate_events(root, event_source_id, current, &events);
        let response = match selection.take() {
            Some(selection) if next.is_none() => {
                let answer = fetch_answers::Answer::of(answer);
                let aggregate = (tenant.id().0, root, event_source_id);
                runtime
                    .fetch_answers
                    .keep(aggregate, selection, answer.clone());
                answer.encoded()
            }
            _ => encoded(&FetchForAggregateResponse::ok(answer)),
        };
        if let Err(ended) = out.send(response) {
            return ended;
        }
        if events.is_empty() {
            return Ended::Done;
        }
        sent += 1;
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "tests")]
    use super::*;

    #[test]
    fn an_aggregate_takes_a_bounded_number_of_commits_in_flight() {
        let waiters = AggregateWaiters::default();
        let (tenant, root) = (Uuid::from_u128(1), Uuid::from_u128(2));
        let turns: Vec<_> = (0..AGGREGATE_WAITERS_MAX)
            .map(|_| waiters.enter(tenant, root, "a").unwrap())
            .collect();
        assert!(waiters.enter(tenant, root, "a").is_none());
        assert!(
            waiters.enter(tenant, root, "b").is_some(),
            "other aggregates go on"
        );
        assert!(
            waiters.enter(Uuid::from_u128(3), root, "a").is_some(),
            "other tenants too"
        );
        drop(turns);
        assert!(waiters.enter(tenant, root, "a").is_some());
        assert!(waiters.counts.lock().is_empty(), "every turn counted out");
    }
}
