//! `dolittle.runtime.events.EventStore`: commits, commits for aggregates, and fetching an
//! aggregate's events (whole, or streamed in bounded batches).
//!
//! Every request is checked whole before anything is written, and a request that fails gets
//! its own Failure without touching others: unlike the original, whose commit actor fails
//! every request of a batch when one is bad, here each commit is validated and encoded on
//! its own before it joins a group commit, and a group only fails together when the disk
//! does (the log is then poisoned and every later commit fails too, by design).
//!
//! Failures are in-band (`failure` set, gRPC status OK), as the SDKs expect.

use std::sync::Arc;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use annals_engine::{AggregateCommit, Commit, Event, Tenant};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status};
use uuid::Uuid;

use crate::api::convert;
use crate::api::failure::{id, Failure};
use crate::api::ids;
use crate::metrics::Outcome;
use crate::proto::dolittle::runtime::events::committed_aggregate_events::CommittedAggregateEvent;
use crate::proto::dolittle::runtime::events::event_store_server::EventStore;
use crate::proto::dolittle::runtime::events::fetch_for_aggregate_in_batches_request::Request as BatchesRequest;
use crate::proto::dolittle::runtime::events::{
    Aggregate, CommitAggregateEventsRequest, CommitAggregateEventsResponse, CommitEventsRequest,
    CommitEventsResponse, CommittedAggregateEvents, CommittedEvent,
    FetchForAggregateInBatchesRequest, FetchForAggregateRequest, FetchForAggregateResponse,
};
use crate::runtime::{blocking, Runtime};

/// The most a FetchForAggregateInBatches response carries (the original's 2 MiB), counted
/// as the engine estimates event sizes; one event larger than that still goes alone.
const BATCH_BYTES_MAX: usize = 2 * 1024 * 1024 - 64 * 1024;

/// Responses of one FetchForAggregateInBatches call buffered ahead of a slow reader: the
/// reader waits when they are taken (bounded memory per call, about 2 MiB each).
const BATCHES_AHEAD: usize = 2;

/// The event store service.
pub(crate) struct EventStoreService {
    runtime: Arc<Runtime>,
}

impl EventStoreService {
    pub(crate) fn new(runtime: Arc<Runtime>) -> EventStoreService {
        EventStoreService { runtime }
    }

    fn record(
        &self,
        rpc: &'static str,
        tenant: Option<Uuid>,
        failure: Option<&Failure>,
        started: Instant,
    ) {
        let outcome = match failure {
            None => Outcome::Ok,
            Some(f) if f.id == id::AGGREGATE_ROOT_CONCURRENCY_CONFLICT => Outcome::Conflict,
            Some(_) => Outcome::Failure,
        };
        if let Some(f) = failure {
            tracing::debug!(rpc, tenant = ?tenant, failure = %f.reason, "request failed");
        }
        self.runtime
            .metrics
            .request(rpc, tenant, outcome, started.elapsed().as_secs_f64());
    }
}

fn now_ns() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_nanos()).unwrap_or(i64::MAX))
}

/// The tenant of a call, from its execution context.
fn tenant_of(
    runtime: &Runtime,
    context: Option<&crate::proto::dolittle::services::CallRequestContext>,
) -> Result<(annals_engine::ExecutionContext, Arc<Tenant>), Failure> {
    let context = convert::call_context(context)?;
    let tenant = runtime.tenant(context.tenant_id)?;
    Ok((context, tenant))
}

async fn commit(
    runtime: &Runtime,
    request: CommitEventsRequest,
    tenant_id: &mut Option<Uuid>,
) -> Result<Vec<CommittedEvent>, Failure> {
    let (context, tenant) = tenant_of(runtime, request.call_context.as_ref())?;
    *tenant_id = Some(context.tenant_id);
    if request.events.is_empty() {
        return Err(Failure::no_events());
    }
    let events = convert::uncommitted_events(&request.events)?;
    let commit = Commit {
        occurred_ns: now_ns(),
        execution_context: context,
        events,
    };
    let (commit, receipt) = blocking(move || {
        let receipt = tenant.commit(&commit)?;
        Ok((commit, receipt))
    })
    .await?;
    runtime
        .metrics
        .committed(commit.execution_context.tenant_id, receipt.count);
    let occurred = convert::timestamp(commit.occurred_ns);
    let context = convert::execution_context_to_wire(&commit.execution_context);
    Ok(commit
        .events
        .into_iter()
        .zip(receipt.first.0..)
        .map(|(event, sequence_number)| CommittedEvent {
            event_log_sequence_number: sequence_number,
            occurred: Some(occurred),
            event_source_id: event.event_source_id,
            execution_context: Some(context.clone()),
            event_type: Some(convert::event_type_to_wire(event.event_type)),
            public: event.public,
            content: event.content,
            external: false,
            external_event_log_sequence_number: 0,
            external_event_received: None,
        })
        .collect())
}

#[allow(
    deprecated,
    reason = "the original still fills the deprecated aggregateRootVersion"
)]
async fn commit_for_aggregate(
    runtime: &Runtime,
    request: CommitAggregateEventsRequest,
    tenant_id: &mut Option<Uuid>,
) -> Result<CommittedAggregateEvents, Failure> {
    let (context, tenant) = tenant_of(runtime, request.call_context.as_ref())?;
    *tenant_id = Some(context.tenant_id);
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
    let events = convert::aggregate_events(&aggregate.events)?;
    let commit = AggregateCommit {
        occurred_ns: now_ns(),
        execution_context: context,
        aggregate_root,
        event_source_id,
        expected_version: aggregate.expected_aggregate_root_version,
        events,
    };
    let (commit, receipt) = blocking(move || match tenant.commit_for_aggregate(commit.clone()) {
        Ok(receipt) => Ok((commit, receipt)),
        Err(annals_engine::Error::WrongExpectedVersion { expected, actual }) => {
            Err(Failure::concurrency_conflict(
                &commit.event_source_id,
                aggregate_root,
                expected,
                actual,
            ))
        }
        Err(e) => Err(e.into()),
    })
    .await?;
    runtime
        .metrics
        .committed(commit.execution_context.tenant_id, receipt.count);
    let occurred = convert::timestamp(commit.occurred_ns);
    let context = convert::execution_context_to_wire(&commit.execution_context);
    let current = receipt.current_version();
    Ok(CommittedAggregateEvents {
        event_source_id: commit.event_source_id,
        aggregate_root_id: Some(ids::to_wire(aggregate_root)),
        aggregate_root_version: convert::deprecated_aggregate_root_version(current),
        events: commit
            .events
            .into_iter()
            .zip(receipt.first.0..)
            .zip(receipt.version_before..)
            .map(
                |((event, sequence_number), version)| CommittedAggregateEvent {
                    event_log_sequence_number: sequence_number,
                    occurred: Some(occurred),
                    execution_context: Some(context.clone()),
                    event_type: Some(convert::event_type_to_wire(event.event_type)),
                    public: event.public,
                    content: event.content,
                    aggregate_root_version: version,
                },
            )
            .collect(),
        current_aggregate_root_version: current,
    })
}

/// The aggregate instance a fetch names.
pub(crate) fn aggregate_of(
    field: &str,
    aggregate: Option<&Aggregate>,
) -> Result<(Uuid, String), Failure> {
    let aggregate = aggregate.ok_or_else(|| Failure::invalid(format!("{field} is missing")))?;
    Ok((
        ids::required(
            &format!("{field}.aggregateRootId"),
            aggregate.aggregate_root_id.as_ref(),
        )?,
        convert::event_source_id(
            &format!("{field}.eventSourceId"),
            &aggregate.event_source_id,
        )?,
    ))
}

/// The response header and events of (a batch of) an aggregate's events.
#[allow(
    deprecated,
    reason = "the original still fills the deprecated aggregateRootVersion"
)]
pub(crate) fn aggregate_events(
    root: Uuid,
    event_source_id: &str,
    current: u64,
    events: &[Event],
) -> CommittedAggregateEvents {
    CommittedAggregateEvents {
        event_source_id: event_source_id.to_owned(),
        aggregate_root_id: Some(ids::to_wire(root)),
        aggregate_root_version: convert::deprecated_aggregate_root_version(current),
        events: events
            .iter()
            .map(convert::committed_aggregate_event)
            .collect(),
        current_aggregate_root_version: current,
    }
}

async fn fetch(
    runtime: &Runtime,
    request: FetchForAggregateRequest,
    tenant_id: &mut Option<Uuid>,
) -> Result<CommittedAggregateEvents, Failure> {
    let (context, tenant) = tenant_of(runtime, request.call_context.as_ref())?;
    *tenant_id = Some(context.tenant_id);
    let (root, event_source_id) = aggregate_of("aggregate", request.aggregate.as_ref())?;
    let fetched =
        blocking(move || Ok(tenant.fetch_for_aggregate(root, &event_source_id, &[])?)).await?;
    runtime
        .metrics
        .fetched(context.tenant_id, fetched.events.len() as u64);
    Ok(aggregate_events(
        root,
        &fetched.event_source_id,
        fetched.current_version,
        &fetched.events,
    ))
}

type BatchStream = tonic::codegen::BoxStream<FetchForAggregateResponse>;

#[tonic::async_trait]
impl EventStore for EventStoreService {
    async fn commit(
        &self,
        request: Request<CommitEventsRequest>,
    ) -> Result<Response<CommitEventsResponse>, Status> {
        let started = Instant::now();
        let mut tenant = None;
        let result = commit(&self.runtime, request.into_inner(), &mut tenant).await;
        self.record("Commit", tenant, result.as_ref().err(), started);
        Ok(Response::new(match result {
            Ok(events) => CommitEventsResponse {
                failure: None,
                events,
            },
            Err(f) => CommitEventsResponse {
                failure: Some(f.to_wire()),
                events: Vec::new(),
            },
        }))
    }

    async fn commit_for_aggregate(
        &self,
        request: Request<CommitAggregateEventsRequest>,
    ) -> Result<Response<CommitAggregateEventsResponse>, Status> {
        let started = Instant::now();
        let mut tenant = None;
        let result = commit_for_aggregate(&self.runtime, request.into_inner(), &mut tenant).await;
        self.record("CommitForAggregate", tenant, result.as_ref().err(), started);
        Ok(Response::new(match result {
            Ok(events) => CommitAggregateEventsResponse {
                failure: None,
                events: Some(events),
            },
            Err(f) => CommitAggregateEventsResponse {
                failure: Some(f.to_wire()),
                events: None,
            },
        }))
    }

    async fn fetch_for_aggregate(
        &self,
        request: Request<FetchForAggregateRequest>,
    ) -> Result<Response<FetchForAggregateResponse>, Status> {
        let started = Instant::now();
        let mut tenant = None;
        let result = fetch(&self.runtime, request.into_inner(), &mut tenant).await;
        self.record("FetchForAggregate", tenant, result.as_ref().err(), started);
        Ok(Response::new(match result {
            Ok(events) => FetchForAggregateResponse {
                failure: None,
                events: Some(events),
            },
            Err(f) => FetchForAggregateResponse {
                failure: Some(f.to_wire()),
                events: None,
            },
        }))
    }

    async fn fetch_for_aggregate_in_batches(
        &self,
        request: Request<FetchForAggregateInBatchesRequest>,
    ) -> Result<Response<BatchStream>, Status> {
        let started = Instant::now();
        let request = request.into_inner();
        let (sender, receiver) = mpsc::channel(BATCHES_AHEAD);
        let prepared = (|| {
            let (context, tenant) = tenant_of(&self.runtime, request.call_context.as_ref())?;
            let (root, event_source_id) = aggregate_of("aggregate", request.aggregate.as_ref())?;
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
                            convert::event_type(&format!("fetchEvents.eventTypes[{i}]"), Some(t))
                                .map(|t| t.id)
                        })
                        .collect::<Result<Vec<_>, _>>()?,
                ),
            };
            Ok((
                context.tenant_id,
                tenant,
                root,
                event_source_id,
                event_types,
            ))
        })();
        let (tenant_id, tenant, root, event_source_id, event_types) = match prepared {
            Ok(p) => p,
            Err(f) => {
                self.record("FetchForAggregateInBatches", None, Some(&f), started);
                let response = FetchForAggregateResponse {
                    failure: Some(f.to_wire()),
                    events: None,
                };
                // The channel is fresh and has room for this one message.
                let _ = sender.try_send(Ok(response));
                return Ok(Response::new(Box::pin(ReceiverStream::new(receiver))));
            }
        };
        let runtime = Arc::clone(&self.runtime);
        tokio::task::spawn_blocking(move || {
            let failure = stream_batches(
                &runtime,
                &tenant,
                root,
                &event_source_id,
                event_types.as_deref(),
                &sender,
            );
            if let Some(f) = &failure {
                // The reader may be gone; then nobody is left to tell.
                let _ = sender.blocking_send(Ok(FetchForAggregateResponse {
                    failure: Some(f.to_wire()),
                    events: None,
                }));
            }
            let outcome = if failure.is_some() {
                Outcome::Failure
            } else {
                Outcome::Ok
            };
            runtime.metrics.request(
                "FetchForAggregateInBatches",
                Some(tenant_id),
                outcome,
                started.elapsed().as_secs_f64(),
            );
        });
        Ok(Response::new(Box::pin(ReceiverStream::new(receiver))))
    }
}

/// Sends an aggregate's events in batches; a failure (or None) to report last. Stops early,
/// without a failure, when the reader has gone. `event_types` None means every type; an
/// empty list selects nothing (as in the original: the header alone).
fn stream_batches(
    runtime: &Runtime,
    tenant: &Tenant,
    root: Uuid,
    event_source_id: &str,
    event_types: Option<&[Uuid]>,
    sender: &mpsc::Sender<Result<FetchForAggregateResponse, Status>>,
) -> Option<Failure> {
    let event_types = match event_types {
        Some([]) => {
            let current = match tenant.aggregate_version(root, event_source_id) {
                Ok(v) => v,
                Err(e) => return Some(e.into()),
            };
            let response = FetchForAggregateResponse {
                failure: None,
                events: Some(aggregate_events(root, event_source_id, current, &[])),
            };
            let _ = sender.blocking_send(Ok(response));
            return None;
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
        Err(e) => return Some(e.into()),
    };
    let current = batches.current_version();
    let mut sent = 0usize;
    loop {
        let events = match batches.next() {
            None if sent > 0 => return None,
            // No events: one response with the header and an empty list.
            None => Vec::new(),
            Some(Ok(events)) => events,
            Some(Err(e)) => return Some(e.into()),
        };
        runtime.metrics.fetched(tenant.id().0, events.len() as u64);
        let response = FetchForAggregateResponse {
            failure: None,
            events: Some(aggregate_events(root, event_source_id, current, &events)),
        };
        if sender.blocking_send(Ok(response)).is_err() {
            return None;
        }
        if events.is_empty() {
            return None;
        }
        sent += 1;
    }
}
