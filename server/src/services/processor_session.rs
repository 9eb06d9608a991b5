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
    EventView, ExecutionContext, ScopeId, StateBatch, StreamDefinition, StreamFilter,
    StreamProcessorId, StreamProcessorState, Tenant,
};
use bytes::Bytes;
use parking_lot::Mutex;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::codegen::BoxStream;
use tonic::{Request, Status, Streaming};
use uuid::Uuid;

use crate::api::convert;
use crate::api::failure::Failure;
use crate::api::ids;
use crate::api::wire::RequestContexts;
use crate::blocking::blocking;
use crate::joint::Joint;
use crate::legacy;
use crate::processing::processor::{
    Delivery, Handler, Outcome, StartFrom, TargetStream, TenantProcessor,
};
use crate::processing::{ProcessorKey, Registered, Registration, TenantHandle, TenantStatus};
use crate::projections::states::TenantStates;
use crate::projections::Definition;
use crate::proto::dolittle::runtime::events::processing::RetryProcessingState;
use crate::proto::dolittle::services::ReverseCallRequestContext;
use crate::reverse_call::{self, CallError, Connected, Protocol, ReverseCall};
use crate::runtime::Runtime;
#[cfg(doc)]
use annals_contract::processors::PUBLIC_STREAMS_SCOPE;

/// What a registration asks for, checked (annals-contract's `processors::registration`).
pub(crate) use annals_contract::processors::Spec;

/// A projection's states per tenant, by tenant id (empty for other kinds).
pub(crate) type StatesByTenant = HashMap<Uuid, Arc<TenantStates>>;

/// What a kind of processor asks its head over protocol `P`, and what the answers mean.
pub(crate) trait Requests<P: Protocol>: Send + Sync + 'static {
    /// Whether the head is asked about this event at all (event types, public flag).
    fn selects(&self, event: &EventView<'_>) -> bool;

    /// Whether the requests carry the event encoded (see `Handler::encodes_events`).
    fn encodes_events(&self) -> bool {
        false
    }

    /// The request about one event.
    fn request(&self, question: Question<'_>) -> P::ServerMessage;

    /// What the head's answer means.
    fn outcome(&self, answer: P::Response) -> Outcome;
}

/// One event to ask the head about.
pub(crate) struct Question<'a> {
    /// The request's call id.
    pub(crate) call_id: Uuid,
    /// What the request's execution context is made from.
    pub(crate) contexts: &'a RequestContexts,
    pub(crate) delivery: &'a Delivery,
    /// How the event failed before, when it did.
    pub(crate) retry: Option<RetryProcessingState>,
}

impl Question<'_> {
    /// The request's call context: its call id and execution context, with the event's
    /// correlation id.
    pub(crate) fn call_context(&self) -> ReverseCallRequestContext {
        self.contexts
            .call_context(self.call_id, self.delivery.correlation_id)
    }

    /// [`call_context`](Self::call_context) encoded.
    pub(crate) fn encoded_call_context(&self) -> Bytes {
        self.contexts
            .encoded_call_context(self.call_id, self.delivery.correlation_id)
    }
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

    fn encodes_events(&self) -> bool {
        self.requests.encodes_events()
    }

    async fn handle(
        &self,
        contexts: &RequestContexts,
        delivery: &Delivery,
        retry: Option<RetryProcessingState>,
    ) -> Result<Outcome, CallError> {
        let answer = self
            .call
            .call(|call_id| {
                self.requests.request(Question {
                    call_id,
                    contexts,
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
/// `requests` (the call's reader and the processors of every tenant are polled together by
/// that one task: see `joint`). The returned stream is what the head reads (bounded: see `reverse_call`).
/// A 5.4 head (`legacy`) is not held to this runtime's microservice and environment, as
/// Runtime 6 did not hold it.
pub(crate) fn connect<P, R>(
    runtime: Arc<Runtime>,
    request: Request<Streaming<P::ClientMessage>>,
    spec: impl FnOnce(&P::Arguments) -> Result<Spec, Failure> + Send + 'static,
    requests: impl FnOnce(&Spec) -> R + Send + 'static,
    already: impl FnOnce(&ProcessorKey) -> Failure + Send + 'static,
) -> BoxStream<P::ServerMessage>
where
    P: Protocol,
    R: Requests<P>,
{
    let head = move |spec: &Spec, call: &Arc<ReverseCall<P>>, _: &StatesByTenant| Head {
        call: Arc::clone(call),
        requests: requests(spec),
    };
    connect_with(runtime, request, spec, head, already)
}

/// Like [`connect`], with a handler of its own: `handler` makes it from the registration,
/// the call and (projections) the states of each tenant.
pub(crate) fn connect_with<P, H>(
    runtime: Arc<Runtime>,
    request: Request<Streaming<P::ClientMessage>>,
    spec: impl FnOnce(&P::Arguments) -> Result<Spec, Failure> + Send + 'static,
    handler: impl FnOnce(&Spec, &Arc<ReverseCall<P>>, &StatesByTenant) -> H + Send + 'static,
    already: impl FnOnce(&ProcessorKey) -> Failure + Send + 'static,
) -> BoxStream<P::ServerMessage>
where
    P: Protocol,
    H: Handler,
{
    let (outbound, to_head) = mpsc::channel(reverse_call::OUTBOUND_MESSAGES_MAX);
    let legacy = legacy::is_legacy(&request);
    let incoming = request.into_inner();
    tokio::spawn(async move {
        let platform = (!legacy).then_some(&runtime.config.platform);
        let Some(connected) =
            ReverseCall::<P>::accept(incoming, outbound, platform, runtime.stopping.clone()).await
        else {
            return;
        };
        let spec = spec(&connected.arguments);
        serve(runtime, connected, spec, handler, already).await;
    });
    Box::pin(ReceiverStream::new(to_head))
}

/// Runs a connected processor until its call ends. `already` is the failure for a processor
/// another connection holds.
async fn serve<P: Protocol, H: Handler>(
    runtime: Arc<Runtime>,
    connected: Connected<P>,
    spec: Result<Spec, Failure>,
    handler: impl FnOnce(&Spec, &Arc<ReverseCall<P>>, &StatesByTenant) -> H,
    already: impl FnOnce(&ProcessorKey) -> Failure,
) {
    let Connected {
        call,
        arguments: _,
        execution_context,
        reader,
    } = connected;
    // The reader and the processors answer each other for every event: one task polls them
    // all (see `joint`).
    let mut joint = Joint::new();
    let reader = joint.push(reader);
    let registering = register(&runtime, spec, handler, already, &call, &execution_context);
    let (spec, registered, processors) = match joint.alongside(registering).await {
        Ok(accepted) => accepted,
        Err(failure) => {
            joint
                .alongside(call.respond_to_connect(Some(failure)))
                .await;
            joint.until(|joint| joint.is_finished(reader)).await;
            return;
        }
    };
    joint.alongside(call.respond_to_connect(None)).await;
    tracing::info!(
        kind = spec.key.kind.label(),
        id = %spec.key.id,
        scope = %spec.key.scope,
        partitioned = spec.partitioning.is_partitioned(),
        concurrency = spec.concurrency,
        "processor connected"
    );
    let processors: Vec<usize> = processors
        .into_iter()
        .map(|processor| joint.push(Box::pin(processor.run())))
        .collect();
    joint
        .until(|joint| processors.iter().all(|&p| joint.is_finished(p)))
        .await;
    drop(registered);
    if call.ended().is_cancelled() || call.draining().is_cancelled() {
        call.end(None);
    } else {
        call.end(Some(Status::unavailable(
            "the processor stopped on an error of the store; see the runtime's log",
        )));
    }
    joint.until(|joint| joint.is_finished(reader)).await;
    tracing::info!(kind = spec.key.kind.label(), id = %spec.key.id, "processor disconnected");
}

/// Checks the registration, builds its tenants' processors and takes its place in the
/// registry: the failure to answer with when any of that fails.
async fn register<P: Protocol, H: Handler>(
    runtime: &Arc<Runtime>,
    spec: Result<Spec, Failure>,
    handler: impl FnOnce(&Spec, &Arc<ReverseCall<P>>, &StatesByTenant) -> H,
    already: impl FnOnce(&ProcessorKey) -> Failure,
    call: &Arc<ReverseCall<P>>,
    execution_context: &ExecutionContext,
) -> Result<(Spec, Registered, Vec<TenantProcessor<H>>), Failure> {
    let spec = spec?;
    let dolittle = &runtime.metrics.dolittle;
    let (kind, id, alias) = (spec.key.kind, spec.key.id, spec.alias.clone());
    let alias = alias.as_deref();
    dolittle.registering(kind, id, alias);
    match take_place(runtime, spec, handler, already, call, execution_context).await {
        Ok(registered) => {
            dolittle.started(kind);
            Ok(registered)
        }
        Err((failure, is_already)) => {
            dolittle.registration_failed(kind, id, alias, is_already);
            Err(failure)
        }
    }
}

/// `register`'s work: the failure, and whether it is that the processor is registered
/// already.
async fn take_place<P: Protocol, H: Handler>(
    runtime: &Arc<Runtime>,
    spec: Spec,
    handler: impl FnOnce(&Spec, &Arc<ReverseCall<P>>, &StatesByTenant) -> H,
    already: impl FnOnce(&ProcessorKey) -> Failure,
    call: &Arc<ReverseCall<P>>,
    execution_context: &ExecutionContext,
) -> Result<(Spec, Registered, Vec<TenantProcessor<H>>), (Failure, bool)> {
    let mut states = StatesByTenant::new();
    if spec.projection.is_some() {
        for &tenant_id in runtime.tenant_ids() {
            let tenant = runtime.tenant(tenant_id).map_err(|f| (f, false))?;
            let tenant_states = TenantStates::new(tenant, ScopeId(spec.key.scope), spec.key.id);
            states.insert(tenant_id, Arc::new(tenant_states));
        }
    }
    let handler = Arc::new(handler(&spec, call, &states));
    let (handles, processors) = tenants(runtime, &spec, &handler, &states, call, execution_context)
        .await
        .map_err(|f| (f, false))?;
    let registration = Arc::new(Registration {
        key: spec.key,
        event_types: spec.event_types.clone(),
        partitioning: spec.partitioning,
        alias: spec.alias.clone(),
        tenants: handles,
        ended: call.ended().clone(),
        projection: spec.projection.clone(),
    });
    let Some(registered) = runtime.processors.register(registration).await else {
        return Err((already(&spec.key), true));
    };
    // Only once its place is taken are a projection's stored states compared and reset: a
    // second connection of the same projection is refused before it touches them.
    if let Some(projection) = &spec.projection {
        for processor in &processors {
            let tenant = Arc::clone(&processor.tenant);
            let (scope, id, projection) = (
                ScopeId(spec.key.scope),
                processor.id,
                Arc::clone(projection),
            );
            blocking(move || prepare_projection(&tenant, scope, id, &projection))
                .await
                .map_err(|f| (f, false))?;
        }
    }
    Ok((spec, registered, processors))
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
    states: &StatesByTenant,
    call: &Arc<ReverseCall<P>>,
    execution_context: &ExecutionContext,
) -> Result<Built<H>, Failure> {
    let mut handles = HashMap::new();
    let mut processors = Vec::new();
    for &tenant_id in runtime.tenant_ids() {
        let tenant = runtime.tenant(tenant_id)?;
        let scope = ScopeId(spec.source_scope);
        let (definition_scope, stream, definition) = stream_definition(spec);
        let processor_id = StreamProcessorId {
            scope: spec.state_scope,
            processor: spec.key.id,
            source_stream: spec.source_stream,
        };
        let log = {
            let tenant = Arc::clone(&tenant);
            // A projection reads the event log: no stream is defined for it.
            let defines_stream = spec.projection.is_none();
            blocking(move || {
                if defines_stream {
                    tenant.put_stream_definition(definition_scope, stream, &definition)?;
                }
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
        let attempts = runtime.metrics.dolittle.attempts(
            spec.key.kind,
            (spec.key.id, spec.key.scope, spec.alias.as_deref()),
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
            id: processor_id,
            partitioning: spec.partitioning,
            concurrency: spec.concurrency,
            bounds,
            execution_context: context,
            target: spec.target,
            states: states.get(&tenant_id).cloned(),
            status,
            commands,
            ended: call.ended().clone(),
            draining: call.draining().clone(),
            processed,
            failures,
            attempts,
        });
    }
    Ok((handles, processors))
}

/// Before a projection's processor starts for a tenant: when its stored definition differs
/// from the one it registers with, its states and their history are dropped and its position
/// goes back to the start, in one atomic write with the new definition (which is stored at
/// every registration, as the original does).
fn prepare_projection(
    tenant: &Tenant,
    scope: ScopeId,
    processor: StreamProcessorId,
    definition: &Definition,
) -> Result<(), Failure> {
    let stored = tenant.projection_definition(scope, processor.processor)?;
    let text = definition.to_stored();
    let changed = stored
        .as_deref()
        .and_then(Definition::from_stored)
        .and_then(|stored| definition.changed_from(&stored));
    let mut batch = StateBatch::new();
    if let Some(reason) = changed {
        tracing::info!(
            projection = %processor.processor,
            scope = %scope.0,
            tenant = %tenant.id().0,
            %reason,
            "the projection's definition changed: its states are rebuilt from the start"
        );
        batch.drop_projection_states(scope.0, processor.processor);
        batch.put_stream_processor(&processor, &StreamProcessorState::default());
    } else if stored.as_deref() == Some(text.as_str()) {
        return Ok(());
    }
    batch.put_projection_definition(scope.0, processor.processor, &text);
    tenant.write_state(batch)?;
    Ok(())
}
