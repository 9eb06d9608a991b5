//! Wire messages to engine types and the small values back (committed events are built in
//! `committed`). Requests are checked completely here, before anything is written: a field
//! that is missing or malformed becomes a [`Failure`] naming the field, and content that is
//! not a JSON object is refused (the original stores content as a BSON document, so only
//! objects are events).

use std::time::Duration;

use annals_engine_types::AggregateEvent;
use annals_log::{Claim, EventType, ExecutionContext, UncommittedEvent, Version};
use prost_types::Timestamp;
use serde::de::{Deserializer, IgnoredAny, MapAccess, Visitor};
use uuid::Uuid;

use crate::api::failure::Failure;
use crate::api::ids;
use crate::proto::dolittle::artifacts::Artifact;
use crate::proto::dolittle::execution::ExecutionContext as WireExecutionContext;
use crate::proto::dolittle::runtime::events::uncommitted_aggregate_events::UncommittedAggregateEvent;
use crate::proto::dolittle::runtime::events::{Aggregate, UncommittedEvent as WireEvent};
use crate::proto::dolittle::security::Claim as WireClaim;
use crate::proto::dolittle::services::CallRequestContext;
use crate::proto::dolittle::versioning::Version as WireVersion;

/// The execution context of a call: required, with a well-formed tenant, microservice and
/// correlation id.
pub fn call_context(context: Option<&CallRequestContext>) -> Result<ExecutionContext, Failure> {
    let context = context.ok_or_else(|| Failure::invalid("callContext is missing"))?;
    // Optional, but a GUID when given: no id of any length passes.
    if let Some(head) = &context.head_id {
        ids::from_wire("callContext.headId", head)?;
    }
    execution_context(
        "callContext.executionContext",
        context.execution_context.as_ref(),
    )
}

/// An execution context from the wire.
pub fn execution_context(
    field: &str,
    context: Option<&WireExecutionContext>,
) -> Result<ExecutionContext, Failure> {
    let context = context.ok_or_else(|| Failure::invalid(format!("{field} is missing")))?;
    let id = |name: &str, id| ids::required(format!("{field}.{name}"), id);
    let span_id = match &context.span_id {
        None => None,
        Some(bytes) if bytes.is_empty() => None,
        Some(bytes) => Some(<[u8; 8]>::try_from(bytes.as_slice()).map_err(|_| {
            Failure::invalid(format!(
                "{field}.spanId has {} bytes where 8 were expected",
                bytes.len()
            ))
        })?),
    };
    let version = context.version.clone().unwrap_or_default();
    Ok(ExecutionContext {
        microservice_id: id("microserviceId", context.microservice_id.as_ref())?,
        tenant_id: id("tenantId", context.tenant_id.as_ref())?,
        version: Version {
            major: version.major,
            minor: version.minor,
            patch: version.patch,
            build: version.build,
            pre_release: version.pre_release_string,
        },
        correlation_id: id("correlationId", context.correlation_id.as_ref())?,
        claims: context
            .claims
            .iter()
            .map(|c| Claim {
                key: c.key.clone(),
                value: c.value.clone(),
                value_type: c.value_type.clone(),
            })
            .collect(),
        environment: context.environment.clone(),
        span_id,
    })
}

/// The wire form of an execution context.
pub fn execution_context_to_wire(context: &ExecutionContext) -> WireExecutionContext {
    WireExecutionContext {
        microservice_id: Some(ids::to_wire(context.microservice_id)),
        tenant_id: Some(ids::to_wire(context.tenant_id)),
        version: Some(WireVersion {
            major: context.version.major,
            minor: context.version.minor,
            patch: context.version.patch,
            build: context.version.build,
            pre_release_string: context.version.pre_release.clone(),
        }),
        correlation_id: Some(ids::to_wire(context.correlation_id)),
        claims: context
            .claims
            .iter()
            .map(|c| WireClaim {
                key: c.key.clone(),
                value: c.value.clone(),
                value_type: c.value_type.clone(),
            })
            .collect(),
        environment: context.environment.clone(),
        span_id: context.span_id.map(|s| s.to_vec()),
    }
}

/// An event type (artifact) from the wire.
pub fn event_type(
    field: impl std::fmt::Display,
    artifact: Option<&Artifact>,
) -> Result<EventType, Failure> {
    let artifact = artifact.ok_or_else(|| Failure::invalid(format!("{field} is missing")))?;
    Ok(EventType {
        id: ids::required(Field::Id(&field), artifact.id.as_ref())?,
        generation: artifact.generation,
    })
}

/// A field's name in a failure's reason, written out only when a failure needs it (the
/// checks of every event of a commit would otherwise format names nobody reads).
pub(crate) enum Field<'a> {
    /// `<prefix>[<index>].<name>`: a field of one event of a list.
    Of(&'a str, usize, &'a str),
    /// `<field>.id`.
    Id(&'a dyn std::fmt::Display),
}

impl std::fmt::Display for Field<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Field::Of(prefix, index, name) => write!(f, "{prefix}[{index}].{name}"),
            Field::Id(field) => write!(f, "{field}.id"),
        }
    }
}

/// The wire form (artifact) of an event type.
pub fn event_type_to_wire(event_type: EventType) -> Artifact {
    Artifact {
        id: Some(ids::to_wire(event_type.id)),
        generation: event_type.generation,
    }
}

/// An event source id: any non-empty string (the original keeps them as strings since v7).
pub fn event_source_id(field: impl std::fmt::Display, id: &str) -> Result<String, Failure> {
    check_event_source_id(field, id)?;
    Ok(id.to_owned())
}

/// Fails unless `id` is an event source id (see [`event_source_id`]).
fn check_event_source_id(field: impl std::fmt::Display, id: &str) -> Result<(), Failure> {
    if id.is_empty() {
        return Err(Failure::invalid(format!("{field} is empty")));
    }
    Ok(())
}

/// Content must be a JSON object. Checked without building a tree: by the quick check of
/// `json_object` first, and by `serde_json` (which says why) for any text it is not sure of.
pub fn content(field: impl std::fmt::Display, content: &str) -> Result<(), Failure> {
    if super::json_object::surely_object(content) {
        return Ok(());
    }
    content_by_serde(field, content)
}

/// [`content`]'s check by `serde_json` alone: the reference the quick check agrees with.
pub fn content_by_serde(field: impl std::fmt::Display, content: &str) -> Result<(), Failure> {
    struct ObjectOnly;
    impl<'de> Visitor<'de> for ObjectOnly {
        type Value = ();
        fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
            f.write_str("a JSON object")
        }
        fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
            while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
            Ok(())
        }
    }
    let mut de = serde_json::Deserializer::from_str(content);
    de.deserialize_map(ObjectOnly)
        .and_then(|()| de.end())
        .map_err(|e| Failure::invalid(format!("{field} is not a JSON object: {e}")))
}

/// The events of a Commit request, checked. (Collected into a list of their count: a
/// collect of results cannot know its length and would grow the list by copying.)
pub fn uncommitted_events(events: Vec<WireEvent>) -> Result<Vec<UncommittedEvent>, Failure> {
    let mut checked = Vec::with_capacity(events.len());
    for (i, e) in events.into_iter().enumerate() {
        let event_type = checked_event(i, &e.content, &e.event_source_id, |field| {
            event_type(field, e.event_type.as_ref())
        })?;
        checked.push(UncommittedEvent {
            event_type,
            event_source_id: e.event_source_id,
            public: e.public,
            content: e.content,
            aggregate: None,
            event_horizon: None,
        });
    }
    Ok(checked)
}

/// The checks of the `i`-th event of a Commit request, in their order: its content, its event
/// source, then its type, which `event_type` reads from the wire given the field's name (for
/// the failure's reason). The event type when all pass. (`commit_request` reads events without
/// their wire messages and checks them here too.)
pub(crate) fn checked_event(
    i: usize,
    content_text: &str,
    event_source_id: &str,
    event_type: impl FnOnce(Field<'static>) -> Result<EventType, Failure>,
) -> Result<EventType, Failure> {
    let at = |name| Field::Of("events", i, name);
    content(at("content"), content_text)?;
    check_event_source_id(at("eventSourceId"), event_source_id)?;
    event_type(at("eventType"))
}

/// The events of a CommitForAggregate request, checked (collected as [`uncommitted_events`]).
pub fn aggregate_events(
    events: Vec<UncommittedAggregateEvent>,
) -> Result<Vec<AggregateEvent>, Failure> {
    let mut checked = Vec::with_capacity(events.len());
    for (i, e) in events.into_iter().enumerate() {
        let at = |name| Field::Of("events.events", i, name);
        content(at("content"), &e.content)?;
        checked.push(AggregateEvent {
            event_type: event_type(at("eventType"), e.event_type.as_ref())?,
            public: e.public,
            content: e.content,
        });
    }
    Ok(checked)
}

/// A timestamp from Unix nanoseconds.
pub fn timestamp(ns: i64) -> Timestamp {
    Timestamp {
        seconds: ns.div_euclid(1_000_000_000),
        nanos: ns.rem_euclid(1_000_000_000) as i32,
    }
}

/// Unix nanoseconds from a timestamp (saturating at the ends of `i64`), the inverse of
/// [`timestamp`].
pub fn timestamp_ns(at: &Timestamp) -> i64 {
    at.seconds
        .saturating_mul(1_000_000_000)
        .saturating_add(i64::from(at.nanos))
}

/// The aggregate instance a request names (its root and event source).
pub fn aggregate(field: &str, aggregate: Option<&Aggregate>) -> Result<(Uuid, String), Failure> {
    let aggregate = aggregate.ok_or_else(|| Failure::invalid(format!("{field} is missing")))?;
    Ok((
        ids::required(
            format!("{field}.aggregateRootId"),
            aggregate.aggregate_root_id.as_ref(),
        )?,
        event_source_id(format!("{field}.eventSourceId"), &aggregate.event_source_id)?,
    ))
}

/// A Duration from the wire, at least 0.
pub fn duration(d: Option<&prost_types::Duration>) -> Option<Duration> {
    let d = d?;
    let seconds = u64::try_from(d.seconds).unwrap_or(0);
    let nanos = u32::try_from(d.nanos).unwrap_or(0);
    Some(Duration::new(seconds, nanos.min(999_999_999)))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "tests")]
    use super::*;

    #[test]
    fn content_must_be_one_json_object() {
        assert!(content("c", r#"{"a": [1, {"b": null}], "c": "x"}"#).is_ok());
        assert!(content("c", " {} ").is_ok());
        for bad in [
            "", "[]", "1", "\"x\"", "null", "{", "{} {}", "{\"a\":}", "{}x",
        ] {
            let e = content("events[0].content", bad).unwrap_err();
            assert!(
                e.reason
                    .starts_with("events[0].content is not a JSON object"),
                "{bad}: {}",
                e.reason
            );
        }
    }

    #[test]
    fn timestamps_before_and_after_1970() {
        for ns in [0, 1, -1, 1_700_000_000_123_456_789, -1_500_000_000] {
            let t = timestamp(ns);
            assert!((0..1_000_000_000).contains(&t.nanos));
            assert_eq!(
                i128::from(t.seconds) * 1_000_000_000 + i128::from(t.nanos),
                i128::from(ns)
            );
        }
    }
}
