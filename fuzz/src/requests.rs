//! The runtime's request layer (`annals-contract`), which builds without RocksDB: the
//! conversion and validation of every request the event store and the processors take, and
//! the rewriting of Contracts 5.4 messages.
//!
//! Input: a kind byte, then the bytes of one protobuf message of that kind, decoded as tonic
//! would (a message prost cannot decode is tonic's INVALID_ARGUMENT and ends the run):
//!
//! | kind % 7 | message | what runs |
//! | --- | --- | --- |
//! | 0 | `CommitEventsRequest` | call context, events |
//! | 1 | `CommitAggregateEventsRequest` | call context, aggregate root and event source, events |
//! | 2 | `FetchForAggregateRequest` | call context, aggregate |
//! | 3 | `EventHandlerRegistrationRequest` | the reverse call's context, event types, grace and ping durations |
//! | 4 | `FetchForAggregateInBatchesRequest` | call context, aggregate, event types |
//! | 5 | any message of a 5.4 rpc (the next byte picks the route and direction) | the legacy rewrite |
//! | 6 | `HandshakeRequest` | the handshake's field and compatibility checks |
//!
//! Checks: nothing panics; every refusal is a Failure with a reason naming a field; whatever is
//! accepted round-trips: an execution context back to the wire and in again unchanged, each
//! accepted event through the log's record encoder and decoder unchanged, and a 5.4 message
//! rewritten to 7.8.1 rewrites back to 5.4 and again to the same 7.8.1 bytes.

use annals_contract::api::failure::{id, Failure};
use annals_contract::api::{convert, handshake as checks, ids};
use annals_contract::legacy::{self, Direction};
use annals_contract::proto::dolittle::runtime::events::fetch_for_aggregate_in_batches_request::Request;
use annals_contract::proto::dolittle::runtime::events::processing::EventHandlerRegistrationRequest;
use annals_contract::proto::dolittle::runtime::events::{
    CommitAggregateEventsRequest, CommitEventsRequest, FetchForAggregateInBatchesRequest,
    FetchForAggregateRequest,
};
use annals_contract::proto::dolittle::runtime::handshake::HandshakeRequest;
use annals_log::{
    testing::{decode_payload, encode_payload},
    AppliedByAggregate, Event, EventLogSequenceNumber, EventType, ExecutionContext,
};
use prost::Message;

use crate::Input;

/// The `requests` fuzz target (module documentation).
pub fn requests(data: &[u8]) {
    let mut input = Input::new(data);
    let kind = input.u8();
    match kind % 7 {
        0 => commit(input.rest()),
        1 => commit_for_aggregate(input.rest()),
        2 => fetch(input.rest()),
        3 => registration(input.rest()),
        4 => fetch_in_batches(input.rest()),
        5 => {
            let pick = input.u8();
            legacy_rewrite(pick, input.rest());
        }
        _ => handshake(input.rest()),
    }
}

/// A refusal must say what is wrong.
fn refused(failure: &Failure) {
    assert!(
        !failure.reason.trim().is_empty(),
        "a refusal without a reason: {failure:?}"
    );
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
                    serde_json::from_str::<serde_json::Map<String, serde_json::Value>>(&e.content)
                        .is_ok(),
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

fn registration(bytes: &[u8]) {
    let Ok(request) = EventHandlerRegistrationRequest::decode(bytes) else {
        return;
    };
    if let Some(context) = &request.call_context {
        // What the reverse call reads of the registration's context.
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
    for (i, t) in request.event_types.iter().enumerate() {
        if let Err(f) = convert::event_type(format!("eventTypes[{i}]"), Some(t)) {
            refused(&f);
        }
    }
    if let Some(id) = &request.event_handler_id {
        if let Ok(id) = ids::from_wire("eventHandlerId", id) {
            assert_eq!(
                ids::from_wire("again", &ids::to_wire(id)).ok(),
                Some(id),
                "an id changed on its round trip"
            );
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
