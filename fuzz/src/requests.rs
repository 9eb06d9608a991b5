//! The runtime's request layer (`annals-contract`), which builds without RocksDB: the
//! conversion and validation of every request the event store and the processors take, and
//! the rewriting of Contracts 5.4 messages.
//!
//! Input: a kind byte, then the bytes of one protobuf message of that kind, decoded as tonic
//! would (a message prost cannot decode is tonic's INVALID_ARGUMENT and ends the run):
//!
//! | kind % 12 | message | what runs |
//! | --- | --- | --- |
//! | 0 | `CommitEventsRequest` | call context, events; the Commit rpc's one-pass decoding agrees |
//! | 1 | `CommitAggregateEventsRequest` | call context, aggregate root and event source, events; the answer prepared before the commit is acknowledged is the contract's |
//! | 2 | `FetchForAggregateRequest` | call context, aggregate |
//! | 3 | `EventHandlerRegistrationRequest` | the reverse call's context, then the registration's checks |
//! | 4 | `FetchForAggregateInBatchesRequest` | call context, aggregate, event types |
//! | 5 | any message of a 5.4 rpc (the next byte picks the route and direction) | the legacy rewrite |
//! | 6 | `HandshakeRequest` | the handshake's field and compatibility checks |
//! | 7 | a filter's registration (the next byte picks unpartitioned, partitioned or public) | the filter registration's checks |
//! | 8 | `ProjectionRegistrationRequest` | the projection registration's checks, its definition stored and read back |
//! | 9 | `Subscription` (the next byte says whether the head shares this runtime's identity and whether it is a 5.4 head) | call context, the event-horizon subscription's checks |
//! | 10 | `ConsumerSubscriptionRequest` | a consumer runtime's subscription arguments, as a producer checks them |
//! | 11 | a management request or a projection-store query (the next byte picks which) | what the service checks of it, in its order |
//!
//! Checks: nothing panics; every refusal is a Failure with a reason naming a field, and with
//! one of the original's failure ids for that request; whatever is accepted round-trips: an
//! execution context back to the wire and in again unchanged, each accepted event through the
//! log's record encoder and decoder unchanged, a projection's definition through its stored
//! form unchanged, and a 5.4 message rewritten to 7.8.1 rewrites back to 5.4 and again to the
//! same 7.8.1 bytes. What a registration is accepted as keeps what the request said: its id,
//! scope, kind, event types and partitioning; never the event log's id, never the public
//! streams' scope.

use annals_contract::api::commit_request::CommitRequest;
use annals_contract::api::committed::{self, PreparedAggregateAnswer};
use annals_contract::api::failure::{id, Failure, InBand};
use annals_contract::api::{convert, event_horizon, handshake as checks, ids, management};
use annals_contract::legacy::{self, Direction};
use annals_contract::processors::registration::Visibility;
use annals_contract::processors::{
    self, failures, Kind, Partitioning, ProcessorKey, Spec, TargetStream, PUBLIC_STREAMS_SCOPE,
};
use annals_contract::projections::{dotnet, Definition, KeySelector};
use annals_contract::proto::dolittle::protobuf::Uuid as WireUuid;
use annals_contract::proto::dolittle::runtime::eventhorizon::{
    ConsumerSubscriptionRequest, Subscription,
};
use annals_contract::proto::dolittle::runtime::events::fetch_for_aggregate_in_batches_request::Request;
use annals_contract::proto::dolittle::runtime::events::processing::{
    EventHandlerRegistrationRequest, FilterRegistrationRequest,
    PartitionedFilterRegistrationRequest, ProjectionRegistrationRequest,
    PublicFilterRegistrationRequest,
};
use annals_contract::proto::dolittle::runtime::events::{
    CommitAggregateEventsRequest, CommitAggregateEventsResponse, CommitEventsRequest,
    FetchForAggregateInBatchesRequest, FetchForAggregateRequest,
};
use annals_contract::proto::dolittle::runtime::handshake::HandshakeRequest;
use annals_contract::proto::dolittle::services::ReverseCallArgumentsContext;
use annals_contract::Platform;
use annals_engine_types::{AggregateCommit, AggregateCommitReceipt};
use annals_log::uuid::Uuid;
use annals_log::{
    testing::{decode_payload, encode_payload},
    AppliedByAggregate, Event, EventLogSequenceNumber, EventType, ExecutionContext, ScopeId,
};
use prost::Message;

use crate::Input;

/// The `requests` fuzz target (module documentation).
pub fn requests(data: &[u8]) {
    let mut input = Input::new(data);
    let kind = input.u8();
    match kind % 12 {
        0 => commit(input.rest()),
        1 => commit_for_aggregate(input.rest()),
        2 => fetch(input.rest()),
        3 => registration(input.rest()),
        4 => fetch_in_batches(input.rest()),
        5 => {
            let pick = input.u8();
            legacy_rewrite(pick, input.rest());
        }
        6 => handshake(input.rest()),
        7 => {
            let pick = input.u8();
            filter_registration(pick, input.rest());
        }
        8 => projection_registration(input.rest()),
        9 => {
            let pick = input.u8();
            subscription(pick, input.rest());
        }
        10 => consumer_arguments(input.rest()),
        _ => {
            let pick = input.u8();
            management_request(pick, input.rest());
        }
    }
}

/// A refusal must say what is wrong.
fn refused(failure: &Failure) {
    assert!(
        !failure.reason.trim().is_empty(),
        "a refusal without a reason: {failure:?}"
    );
}

/// Whether `content` is one JSON object, by JSON's grammar: its members are read as raw JSON
/// values, since the grammar sets no range on numbers (`1e400` is JSON; an `f64` cannot hold
/// it, so reading into `serde_json::Value` would refuse it).
fn is_json_object(content: &str) -> bool {
    serde_json::from_str::<std::collections::HashMap<String, Box<serde_json::value::RawValue>>>(
        content,
    )
    .is_ok()
}

/// The call context, checked, and its round trip through the wire.
fn context_round_trips(context: &ExecutionContext) {
    let again =
        convert::execution_context("again", Some(&convert::execution_context_to_wire(context)))
            .unwrap_or_else(|f| {
                panic!("an accepted execution context is refused on its way back: {f:?}")
            });
    assert_eq!(
        &again, context,
        "an execution context changed on its round trip"
    );
}

/// An accepted event goes through the log's record format unchanged.
fn stored_unchanged(event: &Event) {
    let payload = encode_payload(event);
    let back = decode_payload(&payload)
        .unwrap_or_else(|e| panic!("an accepted event does not decode from its record: {e}"));
    assert_eq!(
        &back, event,
        "an accepted event changed in the log's record format"
    );
}

fn event(
    context: &ExecutionContext,
    event_source_id: String,
    event_type: EventType,
    public: bool,
    content: String,
    aggregate: Option<AppliedByAggregate>,
) -> Event {
    Event {
        sequence_number: EventLogSequenceNumber(0),
        occurred_ns: 1_700_000_000_000_000_000,
        execution_context: context.clone(),
        event_source_id,
        event_type,
        public,
        aggregate,
        event_horizon: None,
        content,
    }
}

fn commit(bytes: &[u8]) {
    // The Commit rpc's own decoding (events read and checked in one pass) says what prost and
    // the checks below say: the same decode error, or the same events or failure.
    let reference = CommitEventsRequest::decode(bytes)
        .map(CommitRequest::from)
        .map_err(|e| e.to_string());
    let decoded = CommitRequest::decode(bytes::Bytes::copy_from_slice(bytes));
    assert_eq!(
        decoded.map_err(|e| e.to_string()),
        reference,
        "the Commit rpc's decoding differs from prost's and the checks'"
    );
    let Ok(request) = CommitEventsRequest::decode(bytes) else {
        return;
    };
    let context = match convert::call_context(request.call_context.as_ref()) {
        Ok(context) => context,
        Err(f) => return refused(&f),
    };
    context_round_trips(&context);
    let count = request.events.len();
    match convert::uncommitted_events(request.events) {
        Ok(events) => {
            assert_eq!(events.len(), count, "an event was lost in conversion");
            for e in events {
                assert!(
                    is_json_object(&e.content),
                    "content that is not a JSON object was accepted: {:?}",
                    e.content
                );
                stored_unchanged(&event(
                    &context,
                    e.event_source_id,
                    e.event_type,
                    e.public,
                    e.content,
                    None,
                ));
            }
        }
        Err(f) => refused(&f),
    }
}

fn commit_for_aggregate(bytes: &[u8]) {
    let Ok(request) = CommitAggregateEventsRequest::decode(bytes) else {
        return;
    };
    let context = match convert::call_context(request.call_context.as_ref()) {
        Ok(context) => context,
        Err(f) => return refused(&f),
    };
    let Some(aggregate) = request.events else {
        return;
    };
    let root = match ids::required(
        "events.aggregateRootId",
        aggregate.aggregate_root_id.as_ref(),
    ) {
        Ok(root) => root,
        Err(f) => return refused(&f),
    };
    let event_source_id =
        match convert::event_source_id("events.eventSourceId", &aggregate.event_source_id) {
            Ok(id) => id,
            Err(f) => return refused(&f),
        };
    match convert::aggregate_events(aggregate.events) {
        Ok(events) => {
            let expected = aggregate.expected_aggregate_root_version;
            let commit = AggregateCommit {
                occurred_ns: 1_700_000_000_000_000_000,
                execution_context: context.clone(),
                aggregate_root: root,
                event_source_id: event_source_id.clone(),
                expected_version: expected,
                events: events.clone(),
            };
            // The answer prepared while the commit is on its way to disk is the contract's, for
            // a commit the engine would take (its versions fit).
            let prepared = PreparedAggregateAnswer::of(&commit);
            if expected.checked_add(events.len() as u64).is_some() {
                let receipt = AggregateCommitReceipt {
                    first: EventLogSequenceNumber(expected.wrapping_mul(31)),
                    count: events.len() as u64,
                    version_before: expected,
                };
                let mut encoded = Vec::new();
                prepared.numbered(receipt).encode(&mut encoded);
                let contract = CommitAggregateEventsResponse::ok(
                    committed::committed_aggregate_events(commit, receipt),
                )
                .encode_to_vec();
                assert_eq!(
                    encoded, contract,
                    "a prepared aggregate answer is not the contract's"
                );
            }
            for (i, e) in (0u64..).zip(events) {
                // Versions past the largest are the engine's to refuse, not this layer's.
                let Some(version) = aggregate.expected_aggregate_root_version.checked_add(i) else {
                    break;
                };
                stored_unchanged(&event(
                    &context,
                    event_source_id.clone(),
                    e.event_type,
                    e.public,
                    e.content,
                    Some(AppliedByAggregate {
                        root_id: root,
                        version,
                    }),
                ));
            }
        }
        Err(f) => refused(&f),
    }
}

fn fetch(bytes: &[u8]) {
    let Ok(request) = FetchForAggregateRequest::decode(bytes) else {
        return;
    };
    if let Err(f) = convert::call_context(request.call_context.as_ref()) {
        return refused(&f);
    }
    if let Err(f) = convert::aggregate("aggregate", request.aggregate.as_ref()) {
        refused(&f);
    }
}

fn fetch_in_batches(bytes: &[u8]) {
    let Ok(request) = FetchForAggregateInBatchesRequest::decode(bytes) else {
        return;
    };
    if let Err(f) = convert::call_context(request.call_context.as_ref()) {
        return refused(&f);
    }
    if let Err(f) = convert::aggregate("aggregate", request.aggregate.as_ref()) {
        return refused(&f);
    }
    if let Some(Request::FetchEvents(fetch)) = &request.request {
        for (i, t) in fetch.event_types.iter().enumerate() {
            match convert::event_type(format!("fetchEvents.eventTypes[{i}]"), Some(t)) {
                Ok(event_type) => {
                    let wire = convert::event_type_to_wire(event_type);
                    assert_eq!(
                        convert::event_type("again", Some(&wire)).ok(),
                        Some(event_type),
                        "an event type changed on its round trip"
                    );
                }
                Err(f) => refused(&f),
            }
        }
    }
}

/// What the reverse call reads of a registration's context before the registration's own
/// checks run.
fn arguments_context(context: Option<&ReverseCallArgumentsContext>) {
    let Some(context) = context else {
        return;
    };
    let _ = convert::duration(context.ping_interval.as_ref());
    match convert::execution_context(
        "callContext.executionContext",
        context.execution_context.as_ref(),
    ) {
        Ok(context) => context_round_trips(&context),
        Err(f) => refused(&f),
    }
    if let Some(head) = &context.head_id {
        if let Err(f) = ids::from_wire("callContext.headId", head) {
            refused(&f);
        }
    }
}

/// A refusal carries one of `ids`.
fn refused_with(failure: &Failure, ids: &[Uuid], what: &str) {
    refused(failure);
    assert!(
        ids.contains(&failure.id),
        "{what} refused with another failure id: {failure:?}"
    );
}

/// What any accepted registration keeps: the id it asked for (never the event log's), a
/// scope other than the public streams', the id and scope round-trip.
fn accepted_key(spec: &Spec, kind: Kind, id: Option<&WireUuid>, scope: Option<&WireUuid>) {
    assert_eq!(spec.key.kind, kind, "registered as another kind: {spec:?}");
    assert_eq!(
        id.map(|id| ids::from_wire("id", id).ok()),
        Some(Some(spec.key.id)),
        "registered under another id: {spec:?}"
    );
    let asked_scope = scope.map_or(Some(Uuid::nil()), |s| ids::from_wire("scope", s).ok());
    assert_eq!(
        asked_scope,
        Some(spec.key.scope),
        "registered in another scope: {spec:?}"
    );
    assert_ne!(
        spec.key.scope, PUBLIC_STREAMS_SCOPE,
        "registered in the public streams' scope"
    );
    assert_eq!(
        ids::from_wire("again", &ids::to_wire(spec.key.id)).ok(),
        Some(spec.key.id),
        "an id changed on its round trip"
    );
}

fn registration(bytes: &[u8]) {
    let Ok(request) = EventHandlerRegistrationRequest::decode(bytes) else {
        return;
    };
    arguments_context(request.call_context.as_ref());
    match processors::registration::event_handler(&request) {
        Ok(spec) => {
            accepted_key(
                &spec,
                Kind::EventHandler,
                request.event_handler_id.as_ref(),
                request.scope_id.as_ref(),
            );
            assert!(!spec.key.id.is_nil(), "an event handler on the event log");
            assert_eq!(spec.source_stream, spec.key.id);
            assert_eq!(
                spec.event_types.len(),
                request.event_types.len(),
                "an event type was lost"
            );
            for (t, wire) in spec.event_types.iter().zip(&request.event_types) {
                assert_eq!(
                    convert::event_type("again", Some(&convert::event_type_to_wire(*t))).ok(),
                    Some(*t),
                    "an event type changed on its round trip"
                );
                assert_eq!(
                    Some(convert::event_type_to_wire(*t)),
                    Some(wire.clone()),
                    "an event type is not the one asked for"
                );
            }
            assert_eq!(spec.partitioning.is_partitioned(), request.partitioned);
            let most = if request.partitioned {
                processors::registration::CONCURRENCY_MAX
            } else {
                1
            };
            assert!(
                (1..=most).contains(&spec.concurrency),
                "concurrency {} for {request:?}",
                spec.concurrency
            );
        }
        Err(f) => refused_with(
            &f,
            &[
                failures::EVENT_HANDLER_FAILED_TO_REGISTER,
                failures::EVENT_HANDLER_ON_NON_WRITEABLE_STREAM,
            ],
            "an event handler",
        ),
    }
}

fn filter_registration(pick: u8, bytes: &[u8]) {
    let (result, id, scope, partitioning, visibility) = match pick % 3 {
        0 => {
            let Ok(request) = FilterRegistrationRequest::decode(bytes) else {
                return;
            };
            arguments_context(request.call_context.as_ref());
            let result = processors::registration::filter(
                &request,
                Partitioning::Unpartitioned,
                Visibility::Private,
            );
            (
                result,
                request.filter_id,
                request.scope_id,
                Partitioning::Unpartitioned,
                Visibility::Private,
            )
        }
        1 => {
            let Ok(request) = PartitionedFilterRegistrationRequest::decode(bytes) else {
                return;
            };
            arguments_context(request.call_context.as_ref());
            let result = processors::registration::filter(
                &request,
                Partitioning::Partitioned,
                Visibility::Private,
            );
            (
                result,
                request.filter_id,
                request.scope_id,
                Partitioning::Partitioned,
                Visibility::Private,
            )
        }
        _ => {
            let Ok(request) = PublicFilterRegistrationRequest::decode(bytes) else {
                return;
            };
            arguments_context(request.call_context.as_ref());
            let result = processors::registration::filter(
                &request,
                Partitioning::Partitioned,
                Visibility::Public,
            );
            (
                result,
                request.filter_id,
                None,
                Partitioning::Partitioned,
                Visibility::Public,
            )
        }
    };
    match result {
        Ok(spec) => {
            let kind = match visibility {
                Visibility::Private => Kind::Filter,
                Visibility::Public => Kind::PublicFilter,
            };
            accepted_key(&spec, kind, id.as_ref(), scope.as_ref());
            assert!(!spec.key.id.is_nil(), "a filter writing the event log");
            assert_eq!(spec.partitioning, partitioning);
            assert!(
                spec.event_types.is_empty(),
                "a filter takes every event type"
            );
            assert_eq!(
                spec.source_stream,
                Uuid::nil(),
                "a filter reads the event log"
            );
            let expected = match visibility {
                Visibility::Private => TargetStream::Scoped {
                    scope: ScopeId(spec.key.scope),
                    stream: spec.key.id,
                },
                Visibility::Public => TargetStream::Public {
                    stream: spec.key.id,
                },
            };
            assert_eq!(
                spec.target,
                Some(expected),
                "a filter writes another stream"
            );
            let state_scope = match visibility {
                Visibility::Private => spec.key.scope,
                Visibility::Public => PUBLIC_STREAMS_SCOPE,
            };
            assert_eq!(
                spec.state_scope, state_scope,
                "a filter's position elsewhere"
            );
        }
        Err(f) => refused_with(
            &f,
            &[
                failures::FILTER_FAILED_TO_REGISTER,
                failures::FILTER_ON_NON_WRITEABLE_STREAM,
            ],
            "a filter",
        ),
    }
}

fn projection_registration(bytes: &[u8]) {
    let Ok(request) = ProjectionRegistrationRequest::decode(bytes) else {
        return;
    };
    arguments_context(request.call_context.as_ref());
    match processors::registration::projection(&request) {
        Ok(spec) => {
            accepted_key(
                &spec,
                Kind::Projection,
                request.projection_id.as_ref(),
                request.scope_id.as_ref(),
            );
            let definition = spec
                .projection
                .as_ref()
                .unwrap_or_else(|| panic!("a projection accepted without its definition"));
            assert_eq!(
                definition.selectors.len(),
                request.events.len(),
                "a selector was lost"
            );
            let mut seen = std::collections::HashSet::new();
            for selector in &definition.selectors {
                assert!(
                    seen.insert(selector.event_type),
                    "an event type taken twice"
                );
                if let KeySelector::Occurred(format) = &selector.key {
                    assert!(
                        dotnet::format_time(0, format).is_ok(),
                        "an occurred format .NET refuses was accepted: {format:?}"
                    );
                }
            }
            assert!(
                is_json_object(&definition.initial_state),
                "an initial state that is not a JSON object: {:?}",
                definition.initial_state
            );
            let stored = Definition::from_stored(&definition.to_stored())
                .unwrap_or_else(|| panic!("a stored definition does not read back"));
            assert_eq!(
                stored.changed_from(definition),
                None,
                "a definition changed in its stored form"
            );
            assert_eq!(stored.selectors, definition.selectors);
        }
        Err(f) => refused_with(
            &f,
            &[failures::PROJECTION_FAILED_TO_REGISTER],
            "a projection",
        ),
    }
}

/// This runtime's identity, for the subscription checks.
fn platform(microservice_id: Uuid, environment: String) -> Platform {
    Platform {
        customer_id: Uuid::from_u128(1),
        customer_name: "customer".into(),
        application_id: Uuid::from_u128(2),
        application_name: "application".into(),
        microservice_id,
        microservice_name: "microservice".into(),
        environment,
    }
}

/// `pick` bit 0: the runtime shares the head's identity (so the checks past it are reached);
/// bit 1: a 5.4 head.
fn subscription(pick: u8, bytes: &[u8]) {
    let Ok(request) = Subscription::decode(bytes) else {
        return;
    };
    let context = match convert::call_context(request.call_context.as_ref()) {
        Ok(context) => context,
        Err(f) => return refused(&f),
    };
    let platform = if pick & 1 == 1 {
        platform(context.microservice_id, context.environment.clone())
    } else {
        platform(Uuid::from_u128(3), "Development".into())
    };
    let legacy = pick & 2 == 2;
    let shares = context.microservice_id == platform.microservice_id
        && context.environment == platform.environment;
    match event_horizon::subscription(&request, context.clone(), &platform, legacy) {
        Ok(accepted) => {
            assert!(legacy || shares, "a head of another identity subscribed");
            assert_eq!(
                accepted.execution_context.microservice_id, platform.microservice_id,
                "the producer is asked as another microservice"
            );
            assert_eq!(accepted.execution_context.environment, platform.environment);
            assert_eq!(
                accepted.execution_context.tenant_id, context.tenant_id,
                "the subscription is for another tenant"
            );
            assert_eq!(accepted.partition, request.partition_id);
            for (field, id) in [
                (
                    request.microservice_id.as_ref(),
                    accepted.producer_microservice,
                ),
                (request.tenant_id.as_ref(), accepted.producer_tenant),
                (request.stream_id.as_ref(), accepted.stream),
                (request.scope_id.as_ref(), accepted.scope),
            ] {
                assert_eq!(
                    field.map(|f| ids::from_wire("id", f).ok()),
                    Some(Some(id)),
                    "a subscription names another id"
                );
            }
        }
        Err(f) => refused_with(&f, &[id::OTHER], "a subscription"),
    }
}

fn consumer_arguments(bytes: &[u8]) {
    let Ok(request) = ConsumerSubscriptionRequest::decode(bytes) else {
        return;
    };
    arguments_context(request.call_context.as_ref());
    match event_horizon::consumer_arguments(&request) {
        Ok(arguments) => {
            #[expect(deprecated, reason = "the legacy partition is what Contracts 5 sends")]
            let legacy = request.partition_id_legacy.as_ref();
            match (&request.partition_id, legacy) {
                (Some(text), _) => assert_eq!(&arguments.partition, text),
                (None, Some(legacy)) => assert_eq!(
                    ids::from_wire("legacy", legacy).ok().map(|p| p.to_string()),
                    Some(arguments.partition.clone()),
                    "a legacy partition read as another"
                ),
                (None, None) => panic!("a subscription without a partition was accepted"),
            }
            assert_eq!(arguments.stream_position, request.stream_position);
        }
        Err(f) => refused_with(
            &f,
            &[event_horizon::MISSING_SUBSCRIPTION_ARGUMENTS, id::OTHER],
            "a consumer's subscription",
        ),
    }
}

/// A part of a request checked; a refusal must say why.
fn part<T>(result: Result<T, Failure>) -> Option<T> {
    result.map_err(|f| refused(&f)).ok()
}

/// An accepted key names what the request named.
fn names(key: &ProcessorKey, kind: Kind, scope: Option<&WireUuid>, id: Option<&WireUuid>) {
    assert_eq!(key.kind, kind);
    assert_eq!(
        scope.map_or(Some(Uuid::nil()), |s| ids::from_wire("scope", s).ok()),
        Some(key.scope)
    );
    assert_eq!(id.map(|i| ids::from_wire("id", i).ok()), Some(Some(key.id)));
}

/// A request naming a processor, then perhaps a tenant: the processor is checked first (a
/// projection's scope is required there), and what it names must be what was asked.
fn key_then_tenant(
    key: Result<ProcessorKey, Failure>,
    (kind, scope, id): (Kind, Option<&WireUuid>, Option<&WireUuid>),
    tenant: Option<&WireUuid>,
) {
    if let Some(key) = part(key) {
        if kind == Kind::Projection {
            assert!(scope.is_some(), "a projection named without its scope");
        }
        names(&key, kind, scope, id);
        part(management::optional_tenant(tenant));
    }
}

/// The management services' requests and the projection store's queries, each checked as its
/// service checks it, in its order.
fn management_request(pick: u8, bytes: &[u8]) {
    use annals_contract::proto::dolittle::runtime::aggregates::management as aggregates;
    use annals_contract::proto::dolittle::runtime::events::processing::management as processing;
    use annals_contract::proto::dolittle::runtime::projections as store;
    match pick % 10 {
        0 => {
            let Ok(r) = processing::ReprocessEventsFromRequest::decode(bytes) else {
                return;
            };
            if let Some(key) = part(management::event_handler(
                r.scope_id.as_ref(),
                r.event_handler_id.as_ref(),
            )) {
                names(
                    &key,
                    Kind::EventHandler,
                    r.scope_id.as_ref(),
                    r.event_handler_id.as_ref(),
                );
                part(management::tenant(r.tenant_id.as_ref()));
            }
        }
        1 => {
            let Ok(r) = processing::ReprocessEventsFromTimestampRequest::decode(bytes) else {
                return;
            };
            if let Some(key) = part(management::event_handler(
                r.scope_id.as_ref(),
                r.event_handler_id.as_ref(),
            )) {
                names(
                    &key,
                    Kind::EventHandler,
                    r.scope_id.as_ref(),
                    r.event_handler_id.as_ref(),
                );
                if let Some(at_ns) = part(management::reprocess_time_ns(r.stream_position)) {
                    assert_eq!(
                        u64::try_from(at_ns / 1_000_000).ok(),
                        Some(r.stream_position),
                        "a reprocess time changed"
                    );
                    part(management::optional_tenant(r.tenant_id.as_ref()));
                }
            }
        }
        2 => {
            let Ok(r) = processing::ReprocessAllEventsRequest::decode(bytes) else {
                return;
            };
            part(management::event_handler(
                r.scope_id.as_ref(),
                r.event_handler_id.as_ref(),
            ));
        }
        3 => {
            let Ok(r) = processing::GetOneRequest::decode(bytes) else {
                return;
            };
            let (scope, id) = (r.scope_id.as_ref(), r.event_handler_id.as_ref());
            key_then_tenant(
                management::event_handler(scope, id),
                (Kind::EventHandler, scope, id),
                r.tenant_id.as_ref(),
            );
        }
        4 => {
            let Ok(r) = processing::GetAllRequest::decode(bytes) else {
                return;
            };
            part(management::optional_tenant(r.tenant_id.as_ref()));
        }
        5 => {
            let Ok(r) = processing::ReplayProjectionRequest::decode(bytes) else {
                return;
            };
            let (scope, id) = (r.scope_id.as_ref(), r.projection_id.as_ref());
            key_then_tenant(
                management::projection(scope, id),
                (Kind::Projection, scope, id),
                r.tenant_id.as_ref(),
            );
        }
        6 => {
            let Ok(r) = processing::GetOneProjectionRequest::decode(bytes) else {
                return;
            };
            let (scope, id) = (r.scope_id.as_ref(), r.projection_id.as_ref());
            key_then_tenant(
                management::projection(scope, id),
                (Kind::Projection, scope, id),
                r.tenant_id.as_ref(),
            );
        }
        7 => {
            let Ok(r) = store::GetOneRequest::decode(bytes) else {
                return;
            };
            if part(convert::call_context(r.call_context.as_ref())).is_some() {
                if let Some((scope, projection)) = part(management::stored_projection(
                    r.scope_id.as_ref(),
                    r.projection_id.as_ref(),
                )) {
                    let key = ProcessorKey {
                        kind: Kind::Projection,
                        scope: scope.0,
                        id: projection,
                    };
                    names(
                        &key,
                        Kind::Projection,
                        r.scope_id.as_ref(),
                        r.projection_id.as_ref(),
                    );
                }
            }
        }
        8 => {
            let Ok(r) = aggregates::GetEventsRequest::decode(bytes) else {
                return;
            };
            if part(management::tenant(r.tenant_id.as_ref())).is_some() {
                part(convert::aggregate("aggregate", r.aggregate.as_ref()));
            }
        }
        _ => {
            let Ok(r) = aggregates::GetOneRequest::decode(bytes) else {
                return;
            };
            if part(ids::required(
                "aggregateRootId",
                r.aggregate_root_id.as_ref(),
            ))
            .is_some()
            {
                part(management::optional_tenant(r.tenant_id.as_ref()));
            }
        }
    }
}

/// A 5.4 message rewritten for this runtime, back, and again: the layer's normal form is
/// stable, and what it produced it can always take back.
fn legacy_rewrite(pick: u8, bytes: &[u8]) {
    let routes = legacy::routes().unwrap_or_else(|e| panic!("the 5.4 routes: {e}"));
    let all = routes.all();
    if all.is_empty() {
        return;
    }
    let (_, route) = all[usize::from(pick >> 1) % all.len()];
    let plan = if pick & 1 == 0 {
        route.request.as_ref()
    } else {
        route.response.as_ref()
    };
    let Some(plan) = plan else {
        return;
    };
    let (there, back) = if pick & 1 == 0 {
        (Direction::FromLegacy, Direction::ToLegacy)
    } else {
        (Direction::ToLegacy, Direction::FromLegacy)
    };
    let mut first = Vec::new();
    if let Err(e) = legacy::rewrite(plan, there, bytes, &mut first) {
        assert!(!e.field.is_empty() && !e.reason.is_empty(), "{e:?}");
        return;
    }
    let mut returned = Vec::new();
    legacy::rewrite(plan, back, &first, &mut returned).unwrap_or_else(|e| {
        panic!(
            "the layer cannot take back what it wrote ({:?}): {e}",
            plan.message()
        )
    });
    let mut again = Vec::new();
    legacy::rewrite(plan, there, &returned, &mut again)
        .unwrap_or_else(|e| panic!("a round trip of {} fails: {e}", plan.message()));
    assert_eq!(
        again,
        first,
        "{}: the rewrite's output changes on a round trip",
        plan.message()
    );
}

fn handshake(bytes: &[u8]) {
    let Ok(request) = HandshakeRequest::decode(bytes) else {
        return;
    };
    for v in [
        &request.head_version,
        &request.sdk_version,
        &request.contracts_version,
    ]
    .into_iter()
    .flatten()
    {
        let _ = checks::version_text(v);
    }
    match checks::check_handshake(&request) {
        Ok(()) => {
            let (major, minor, _) = checks::CONTRACTS_VERSION;
            let head = request
                .contracts_version
                .as_ref()
                .unwrap_or_else(|| panic!("a handshake without contracts was accepted"));
            assert!(
                head.major == major && head.minor <= minor,
                "contracts {head:?} were accepted"
            );
            assert!(
                !request.sdk_identifier.trim().is_empty()
                    && request.head_version.is_some()
                    && request.sdk_version.is_some()
                    && request.time_spent.is_some(),
                "a handshake missing a field was accepted"
            );
        }
        Err(f) => {
            refused(&f);
            assert!(
                [
                    id::HANDSHAKE_MISSING_INFORMATION,
                    id::HANDSHAKE_SDK_MUST_BE_UPDATED,
                    id::HANDSHAKE_RUNTIME_MUST_BE_UPDATED,
                ]
                .contains(&f.id),
                "a handshake refused with another failure: {f:?}"
            );
        }
    }
}
