//! One connected processor, the connect path the event handler and filter services share:
//! registers it (one connection per kind, scope and id), runs a [`TenantProcessor`] per
//! configured tenant asking the [`Head`] over its reverse call, and ends the call when they
//! are done. A service says only what it asks the head and what the answers mean
//! ([`Requests`]).
//!
//! The processors end when the call ends (the head went away, keep-alive expired, bad input)
//! or drains (the head initiated a disconnect, the runtime is stopping); each writes its
//! position first. The registry place is freed only after that, so a head that reconnects at
//! once resumes from the written position.

use std::collections::HashMap;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;

use annals_engine::{
    EventType, EventView, ExecutionContext, ScopeId, StreamDefinition, StreamFilter,
    StreamProcessorId,
};
use parking_lot::Mutex;
use tokio::sync::mpsc;
use tokio::task::JoinSet;
use tokio_stream::wrappers::ReceiverStream;
use tonic::codegen::BoxStream;
use tonic::{Status, Streaming};
use uuid::Uuid;

use crate::api::convert;
use crate::api::failure::Failure;
use crate::api::ids;
use crate::blocking::blocking;
use crate::processing::processor::{
    Bounds, Delivery, Handler, Outcome, StartFrom, TargetStream, TenantProcessor,
};
#[cfg(doc)]
use crate::processing::PUBLIC_STREAMS_SCOPE;
use crate::processing::{
    Partitioning, ProcessorKey, Registered, Registration, TenantHandle, TenantStatus,
};
use crate::proto::dolittle::execution::ExecutionContext as WireExecutionContext;
use crate::proto::dolittle::runtime::events::processing::RetryProcessingState;
use crate::proto::dolittle::services::ReverseCallRequestContext;
use crate::reverse_call::{self, CallError, Connected, Protocol, ReverseCall};
use crate::runtime::Runtime;

/// What a registration asks for, checked.
pub(crate) struct Spec {
    pub(crate) key: ProcessorKey,
    /// The scope whose log it reads.
    pub(crate) source_scope: Uuid,
    /// The scope its position is kept under (public filters: [`PUBLIC_STREAMS_SCOPE`]).
    pub(crate) state_scope: Uuid,
    /// The stream it reads: the event handler's own id, nil for filters (the event log).
    pub(crate) source_stream: Uuid,
    pub(crate) event_types: Vec<EventType>,
    pub(crate) partitioning: Partitioning,
    pub(crate) alias: Option<String>,
    pub(crate) concurrency: usize,
    pub(crate) bounds: Bounds,
    /// Filters: where included events go.
    pub(crate) target: Option<TargetStream>,
}

/// What a kind of processor asks its head over protocol `P`, and what the answers mean.
pub(crate) trait Requests<P: Protocol>: Send + Sync + 'static {
    /// Whether the head is asked about this event at all (event types, public flag).
    fn selects(&self, event: &EventView<'_>) -> bool;

    /// The request about one event.
    fn request(&self, question: Question<'_>) -> P::ServerMessage;

    /// What the head's answer means.
    fn outcome(&self, answer: P::Response) -> Outcome;
}

/// One event to ask the head about.
pub(crate) struct Question<'a> {
    /// The request's call id and execution context.
    pub(crate) call_context: ReverseCallRequestContext,
    pub(crate) delivery: &'a Delivery,
    /// How the event failed before, when it did.
    pub(crate) retry: Option<RetryProcessingState>,
}

/// A connected processor's head, asked over its reverse call.
pub(crate) struct Head<P: Protocol, R> {
    call: Arc<ReverseCall<P>>,
    requests: R,
}

impl<P: Protocol, R: Requests<P>> Handler for Head<P, R> {
    fn selects(&self, event: &EventView<'_>) -> bool {
        self.requests.selects(event)
    }

    async fn handle(
        &self,
        execution_context: WireExecutionContext,
        delivery: &Delivery,
        retry: Option<RetryProcessingState>,
    ) -> Result<Outcome, CallError> {
        let answer = self
            .call
            .call(execution_context, |call_context| {
                self.requests.request(Question {
                    call_context,
                    delivery,
                    retry,
                })
            })
            .await?;
        Ok(self.requests.outcome(answer))
    }
}

/// Serves one reverse call of protocol `P` on a task of its own: takes the head's
/// registration, checks it with `spec`, and runs the processor asking the head with
/// `requests`. The returned stream is what the head reads (bounded: see `reverse_call`).
pub(crate) fn connect<P, R>(
    runtime: Arc<Runtime>,
    incoming: Streaming<P::ClientMessage>,
    spec: impl FnOnce(&P::Arguments) -> Result<Spec, Failure> + Send + 'static,
    requests: impl FnOnce(&Spec) -> R + Send + 'static,
    already: impl FnOnce(&ProcessorKey) -> Failure + Send + 'static,
) -> BoxStream<P::ServerMessage>
where
    P: Protocol,
    R: Requests<P>,
{
    let (outbound, to_head) = mpsc::channel(reverse_call::OUTBOUND_MESSAGES_MAX);
    tokio::spawn(async move {
        let Some(connected) = ReverseCall::<P>::accept(
            incoming,
            outbound,
            &runtime.config.platform,
            runtime.stopping.clone(),
        )
        .await
        else {
            return;
        };
        let spec = spec(&connected.arguments);
        serve(runtime, connected, spec, requests, already).await;
    });
    Box::pin(ReceiverStream::new(to_head))
}

/// Runs a connected processor until its call ends. `already` is the failure for a processor
/// another connection holds.
async fn serve<P: Protocol, R: Requests<P>>(
    runtime: Arc<Runtime>,
    connected: Connected<P>,
    spec: Result<Spec, Failure>,
    requests: impl FnOnce(&Spec) -> R,
    already: impl FnOnce(&ProcessorKey) -> Failure,
) {
    let Connected {
        call,
        arguments: _,
        execution_context,
        reader,
    } = connected;
    let reader = tokio::spawn(reader);
    let (spec, registered, processors) =
        match register(&runtime, spec, requests, already, &call, &execution_context).await {
            Ok(accepted) => accepted,
            Err(failure) => {
                call.respond_to_connect(Some(failure)).await;
                let _ = reader.await;
                return;
            }
        };
    call.respond_to_connect(None).await;
    tracing::info!(
        kind = spec.key.kind.label(),
        id = %spec.key.id,
        scope = %spec.key.scope,
        partitioned = spec.partitioning.is_partitioned(),
        concurrency = spec.concurrency,
        "processor connected"
    );
    let mut running = JoinSet::new();
    for processor in processors {
        running.spawn(processor.run());
    }
    while running.join_next().await.is_some() {}
    drop(registered);
    if call.ended().is_cancelled() || call.draining().is_cancelled() {
        call.end(None);
    } else {
        call.end(Some(Status::unavailable(
            "the processor stopped on an error of the store; see the runtime's log",
        )));
    }
    let _ = reader.await;
    tracing::info!(kind = spec.key.kind.label(), id = %spec.key.id, "processor disconnected");
}

/// Checks the registration, builds its tenants' processors and takes its place in the
/// registry: the failure to answer with when any of that fails.
async fn register<P: Protocol, R: Requests<P>>(
    runtime: &Arc<Runtime>,
    spec: Result<Spec, Failure>,
    requests: impl FnOnce(&Spec) -> R,
    already: impl FnOnce(&ProcessorKey) -> Failure,
    call: &Arc<ReverseCall<P>>,
    execution_context: &ExecutionContext,
) -> Result<(Spec, Registered, Vec<TenantProcessor<Head<P, R>>>), Failure> {
    let spec = spec?;
    let handler = Arc::new(Head {
        call: Arc::clone(call),
        requests: requests(&spec),
    });
    let (handles, processors) = tenants(runtime, &spec, &handler, call, execution_context).await?;
    let registration = Arc::new(Registration {
        key: spec.key,
        event_types: spec.event_types.clone(),
        partitioning: spec.partitioning,
        alias: spec.alias.clone(),
        tenants: handles,
        ended: call.ended().clone(),
    });
    match runtime.processors.register(registration).await {
        Some(registered) => Ok((spec, registered, processors)),
        None => Err(already(&spec.key)),
    }
}

/// The stream a registration describes, as the original's `stream-definitions` keeps it:
/// an event handler selects event types from its scope's log (its own id is the stream's), a
/// filter asks its head and writes the stream its target names.
fn stream_definition(spec: &Spec) -> (ScopeId, Uuid, StreamDefinition) {
    let partitioned = spec.partitioning.is_partitioned();
    let remote = |public| StreamDefinition {
        partitioned,
        public,
        filter: StreamFilter::Remote,
    };
    match spec.target {
        Some(TargetStream::Scoped { scope, stream }) => (scope, stream, remote(false)),
        Some(TargetStream::Public { stream }) => (ScopeId::DEFAULT, stream, remote(true)),
        None => (
            ScopeId(spec.source_scope),
            spec.key.id,
            StreamDefinition {
                partitioned,
                public: false,
                filter: StreamFilter::EventTypes(spec.event_types.iter().map(|t| t.id).collect()),
            },
        ),
    }
}

type Built<H> = (HashMap<Uuid, Arc<TenantHandle>>, Vec<TenantProcessor<H>>);

async fn tenants<P: Protocol, H: Handler>(
    runtime: &Arc<Runtime>,
    spec: &Spec,
    handler: &Arc<H>,
    call: &Arc<ReverseCall<P>>,
    execution_context: &ExecutionContext,
) -> Result<Built<H>, Failure> {
    let mut handles = HashMap::new();
    let mut processors = Vec::new();
    for &tenant_id in runtime.tenant_ids() {
        let tenant = runtime.tenant(tenant_id)?;
        let scope = ScopeId(spec.source_scope);
        let (definition_scope, stream, definition) = stream_definition(spec);
        let log = {
            let tenant = Arc::clone(&tenant);
            blocking(move || {
                tenant.put_stream_definition(definition_scope, stream, &definition)?;
                Ok(tenant.scoped_log(scope)?)
            })
            .await?
        };
        let (commands_tx, commands) = mpsc::channel(1);
        let status = Arc::new(Mutex::new(TenantStatus::default()));
        let (processed, failures) = runtime.metrics.processor_counters(
            spec.key.kind,
            spec.key.id,
            spec.key.scope,
            tenant_id,
        );
        handles.insert(
            tenant_id,
            Arc::new(TenantHandle {
                status: Arc::clone(&status),
                commands: commands_tx,
                log: Arc::clone(&log),
                resetting: AtomicBool::new(false),
            }),
        );
        // "Latest" is the log's end now, before the head hears it is registered: what it
        // commits after that is delivered.
        let mut bounds = spec.bounds;
        if let StartFrom::Latest = bounds.start {
            bounds.start = StartFrom::Position(log.next_sequence_number());
        }
        let mut context = convert::execution_context_to_wire(execution_context);
        context.tenant_id = Some(ids::to_wire(tenant_id));
        processors.push(TenantProcessor {
            handler: Arc::clone(handler),
            tenant,
            log,
            id: StreamProcessorId {
                scope: spec.state_scope,
                processor: spec.key.id,
                source_stream: spec.source_stream,
            },
            partitioning: spec.partitioning,
            concurrency: spec.concurrency,
            bounds,
            execution_context: context,
            target: spec.target,
            status,
            commands,
            ended: call.ended().clone(),
            draining: call.draining().clone(),
            processed,
            failures,
        });
    }
    Ok((handles, processors))
}
