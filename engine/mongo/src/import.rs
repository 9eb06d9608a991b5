//! The original's documents read back into annals' values, one document at a time: events of
//! an event log, entries of a stream, aggregates, stream definitions, stream processor and
//! subscription states, event-log offsets. The layouts are the ones `event`, `aggregate`,
//! `definition`, `processor`, `subscription` and `offsets` write (Runtime v9.9.0), and the
//! older forms earlier runtimes left in databases that were never migrated:
//!
//! - `Metadata.EventSource` and a stream's `Partition` as a Binary GUID (before 9.0; the V9
//!   migration turns them into strings): read as the GUID's lowercase hyphenated text;
//! - GUIDs as Binary subtype 3 in the C# driver's legacy byte order;
//! - the default `Aggregate` (`WasAppliedByAggregate: false`) and `EventHorizon`
//!   (`FromEventHorizon: false`) sub-documents that runtimes before 9.2.2 wrote on every
//!   event: read as absent;
//! - stream processor states without `EventLogPosition` (before 9.0): the position in the
//!   processor's stream is returned for the caller to translate through that stream;
//! - counters as Int32 or Int64 instead of Decimal128.
//!
//! Invariants: pure functions of the document; anything they cannot read faithfully is a
//! [`FieldError`] naming the field, never a default silently put in its place; fields the
//! original does not write are ignored.

use std::collections::BTreeMap;

use annals_engine::{
    uuid::Uuid, AppliedByAggregate, Claim, EventHorizonOrigin, EventType, ExecutionContext,
    FailingPartition, ProcessingFailure, StreamDefinition, StreamFilter, UncommittedEvent, Version,
};
use bson::{RawBsonRef, RawDocument};

use crate::{
    decode::{Doc, Field, FieldError},
    json::document_to_json,
};

/// One event of an event log, as annals commits it.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct ImportedEvent {
    /// Its sequence number in its log (`_id`).
    pub sequence_number: u64,
    /// When it occurred (Unix nanoseconds, from the Date's milliseconds).
    pub occurred_ns: i64,
    /// The execution context it was committed in.
    pub execution_context: ExecutionContext,
    /// The event.
    pub event: UncommittedEvent,
    /// Whether the original had redacted it (`RedactedBy`); its content is kept as stored.
    pub redacted: bool,
}

/// The `_id` of a document as text for messages: its number, string or hex.
pub(crate) fn id_text(document: &RawDocument) -> String {
    match document.get("_id") {
        Ok(Some(RawBsonRef::Decimal128(d))) => d.to_string(),
        Ok(Some(RawBsonRef::Int32(v))) => v.to_string(),
        Ok(Some(RawBsonRef::Int64(v))) => v.to_string(),
        Ok(Some(RawBsonRef::String(s))) => format!("{s:?}"),
        Ok(Some(RawBsonRef::ObjectId(id))) => format!("ObjectId({})", id.to_hex()),
        Ok(Some(value @ RawBsonRef::Binary(_))) => crate::decode::guid_of(&value)
            .map_or_else(|| "a Binary".to_owned(), |id| id.to_string()),
        Ok(Some(other)) => format!("a {}", crate::decode::type_name(&other)),
        Ok(None) => "none".to_owned(),
        Err(_) => "unreadable".to_owned(),
    }
}

/// An event document of `event-log` or `x-<scope>-event-log`.
pub(crate) fn read_event(document: &RawDocument) -> Field<ImportedEvent> {
    let top = Doc::top(document)?;
    let sequence_number = top.counter("_id")?;
    let execution_context = read_execution_context(&top)?;
    let metadata = top.document("Metadata", "Metadata.")?;
    let occurred_ns = metadata.date_ns("Occurred")?;
    let event_source_id = metadata.id_text("EventSource")?;
    let event_type = EventType {
        id: metadata.guid("TypeId")?,
        generation: metadata.uint("TypeGeneration")?,
    };
    let public = metadata.boolean("Public")?;
    let aggregate = match top.optional_document("Aggregate", "Aggregate.")? {
        Some(aggregate) if aggregate.boolean("WasAppliedByAggregate")? => {
            Some(AppliedByAggregate {
                root_id: aggregate.guid("TypeId")?,
                version: aggregate.counter("Version")?,
            })
        }
        _ => None,
    };
    let event_horizon = match top.optional_document("EventHorizon", "EventHorizon.")? {
        Some(origin) if origin.boolean("FromEventHorizon")? => Some(EventHorizonOrigin {
            external_sequence_number: origin.counter("ExternalEventLogSequenceNumber")?,
            received_ns: origin.date_ns("Received")?,
            consent_id: origin.guid("Consent")?,
        }),
        _ => None,
    };
    let content = read_content(&top)?;
    let redacted = top.get("RedactedBy").is_some();
    Ok(ImportedEvent {
        sequence_number,
        occurred_ns,
        execution_context,
        event: UncommittedEvent {
            event_source_id,
            event_type,
            public,
            content,
            aggregate,
            event_horizon,
        },
        redacted,
    })
}

/// `Content`: an embedded document (or, in hand-made or very old data, its JSON text).
fn read_content(top: &Doc<'_>) -> Field<String> {
    match top.required("Content")? {
        RawBsonRef::Document(content) => {
            document_to_json(content).map_err(|what| top.error("Content", what))
        }
        RawBsonRef::String(text) => match serde_json::from_str::<serde_json::Value>(text) {
            Ok(serde_json::Value::Object(_)) => Ok(text.to_owned()),
            _ => Err(top.error("Content", "a String that is not a JSON object")),
        },
        other => Err(top.wrong_type("Content", "Document", &other)),
    }
}

fn read_execution_context(top: &Doc<'_>) -> Field<ExecutionContext> {
    let context = top.document("ExecutionContext", "ExecutionContext.")?;
    let version = context.document("Version", "ExecutionContext.Version.")?;
    let span_id = match context.get("SpanId") {
        None | Some(RawBsonRef::Null) => None,
        Some(RawBsonRef::Binary(b)) => {
            let bytes: [u8; 8] = b.bytes.try_into().map_err(|_| {
                context.error(
                    "SpanId",
                    format!("8 bytes expected, found {}", b.bytes.len()),
                )
            })?;
            (bytes != [0; 8]).then_some(bytes)
        }
        Some(other) => return Err(context.wrong_type("SpanId", "Binary", &other)),
    };
    let mut claims = Vec::new();
    for (index, claim) in context.array("Claims")?.into_iter().enumerate() {
        let field = |what: String| FieldError {
            field: format!("ExecutionContext.Claims.{index}"),
            what,
        };
        let claim = claim.map_err(|e| field(format!("does not parse: {e}")))?;
        let RawBsonRef::Document(claim) = claim else {
            return Err(field(format!(
                "Document expected, found {}",
                crate::decode::type_name(&claim)
            )));
        };
        let claim = Doc::top(claim).map_err(|e| field(e.what))?;
        let text = |name: &str| {
            claim
                .string(name)
                .map(str::to_owned)
                .map_err(|e| field(format!("{}: {}", e.field, e.what)))
        };
        claims.push(Claim {
            key: text("Name")?,
            value: text("Value")?,
            value_type: text("ValueType")?,
        });
    }
    Ok(ExecutionContext {
        correlation_id: context.guid("Correlation")?,
        span_id,
        microservice_id: context.guid("Microservice")?,
        tenant_id: context.guid("Tenant")?,
        version: Version {
            major: version.int32("Major")?,
            minor: version.int32("Minor")?,
            patch: version.int32("Patch")?,
            build: version.int32("Build")?,
            pre_release: version.optional_string("PreRelease")?.to_owned(),
        },
        environment: context.string("Environment")?.to_owned(),
        claims,
    })
}

/// One entry of a stream collection: its position, partition and event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ImportedStreamEntry {
    /// Its position in the stream (`_id`).
    pub position: u64,
    /// The partition the filter put it in.
    pub partition: String,
    /// The event's sequence number in its scope's log.
    pub event_log_sequence_number: u64,
}

/// A document of `stream-<id>`, `x-<scope>-stream-<id>` or `public-stream-<id>`.
pub(crate) fn read_stream_entry(document: &RawDocument) -> Field<ImportedStreamEntry> {
    let top = Doc::top(document)?;
    let metadata = top.document("Metadata", "Metadata.")?;
    Ok(ImportedStreamEntry {
        position: top.counter("_id")?,
        partition: top.id_text("Partition")?,
        event_log_sequence_number: metadata.counter("EventLogSequenceNumber")?,
    })
}

/// A document of `aggregates`: root, event source, version.
pub(crate) fn read_aggregate(document: &RawDocument) -> Field<(Uuid, String, u64)> {
    let top = Doc::top(document)?;
    Ok((
        top.guid("AggregateType")?,
        top.id_text("EventSource")?,
        top.counter("Version")?,
    ))
}

/// A document of `stream-definitions`: the stream's id and definition.
pub(crate) fn read_stream_definition(document: &RawDocument) -> Field<(Uuid, StreamDefinition)> {
    let top = Doc::top(document)?;
    let stream = top.guid("_id")?;
    let filter = top.document("Filter", "Filter.")?;
    let filter = match filter.string("Type")? {
        "EventTypeId" => {
            let mut types = Vec::new();
            for (index, value) in filter.array("Types")?.into_iter().enumerate() {
                let value =
                    value.map_err(|e| filter.error("Types", format!("does not parse: {e}")))?;
                types.push(crate::decode::guid_of(&value).ok_or_else(|| {
                    filter.error(
                        &format!("Types.{index}"),
                        "a GUID (Binary subtype 4) expected",
                    )
                })?);
            }
            StreamFilter::EventTypes(types)
        }
        "Remote" => StreamFilter::Remote,
        other => {
            return Err(filter.error(
                "Type",
                format!("{other:?} is not a filter annals keeps (EventTypeId or Remote)"),
            ))
        }
    };
    Ok((
        stream,
        StreamDefinition {
            partitioned: top.boolean("Partitioned")?,
            public: top.boolean("Public")?,
            filter,
        },
    ))
}

/// A document of `stream-processor-states`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ImportedProcessorState {
    /// The event processor (handler or filter).
    pub processor: Uuid,
    /// The stream it reads (the nil GUID: the event log).
    pub source_stream: Uuid,
    /// Whether it is partitioned.
    pub partitioned: bool,
    /// Next position in its stream.
    pub position: u64,
    /// Next event-log sequence number; `None` in states written before 9.0, to be found
    /// through the stream.
    pub event_log_position: Option<u64>,
    /// Last success (Unix ns, 0 for never).
    pub last_successfully_processed_ns: i64,
    /// Unpartitioned: the failure that stopped it.
    pub failure: Option<ProcessingFailure>,
    /// Partitioned: parked partitions; their event-log positions are `None` when the state
    /// predates 9.0.
    pub failing_partitions: BTreeMap<String, (u64, Option<u64>, ProcessingFailure)>,
}

/// A stream processor state document; `now_ns` stands for the time of a failure the original
/// does not record (an unpartitioned processor's last failure).
pub(crate) fn read_processor_state(
    document: &RawDocument,
    now_ns: i64,
) -> Field<ImportedProcessorState> {
    let top = Doc::top(document)?;
    let failing = top.optional_document("FailingPartitions", "FailingPartitions.")?;
    let partitioned = match top.get("Partitioned") {
        Some(RawBsonRef::Boolean(b)) => b,
        None => failing.is_some(),
        Some(other) => return Err(top.wrong_type("Partitioned", "Boolean", &other)),
    };
    let mut state = ImportedProcessorState {
        processor: top.guid("EventProcessor")?,
        source_stream: top.guid("SourceStream")?,
        partitioned,
        position: top.counter("Position")?,
        event_log_position: top.optional_counter("EventLogPosition")?,
        last_successfully_processed_ns: top.time_or_never_ns("LastSuccessfullyProcessed")?,
        failure: None,
        failing_partitions: BTreeMap::new(),
    };
    if partitioned {
        let Some(failing) = failing else {
            return Err(top.error("FailingPartitions", "missing on a partitioned state"));
        };
        for element in failing.raw() {
            let (partition, value) = element
                .map_err(|e| top.error("FailingPartitions", format!("does not parse: {e}")))?;
            let partition = partition.as_str();
            let RawBsonRef::Document(entry) = value else {
                return Err(failing.wrong_type(partition, "Document", &value));
            };
            let path = format!("FailingPartitions.{partition}.");
            let prefixed = |e: FieldError| FieldError {
                field: format!("{path}{}", e.field),
                what: e.what,
            };
            let entry = Doc::top(entry).map_err(prefixed)?;
            let read = || -> Field<(u64, Option<u64>, ProcessingFailure)> {
                Ok((
                    entry.counter("Position")?,
                    entry.optional_counter("EventLogPosition")?,
                    ProcessingFailure {
                        reason: entry.string("Reason")?.to_owned(),
                        retry_time_ns: entry.retry_time_ns("RetryTime")?,
                        processing_attempts: entry.uint("ProcessingAttempts")?,
                        last_failed_ns: entry.time_or_never_ns("LastFailed")?,
                    },
                ))
            };
            state
                .failing_partitions
                .insert(partition.to_owned(), read().map_err(prefixed)?);
        }
    } else if top.boolean("IsFailing")? {
        state.failure = Some(ProcessingFailure {
            reason: top.string("FailureReason")?.to_owned(),
            retry_time_ns: top.retry_time_ns("RetryTime")?,
            processing_attempts: top.uint("ProcessingAttempts")?,
            last_failed_ns: now_ns,
        });
    }
    Ok(state)
}

/// The parked partitions of a state whose event-log positions are all known.
pub(crate) fn failing_partitions(
    parked: BTreeMap<String, (u64, u64, ProcessingFailure)>,
) -> BTreeMap<String, FailingPartition> {
    parked
        .into_iter()
        .map(|(partition, (position, event_log_position, failure))| {
            (
                partition,
                FailingPartition {
                    position: annals_engine::StreamPosition(position),
                    event_log_position: annals_engine::EventLogSequenceNumber(event_log_position),
                    failure,
                },
            )
        })
        .collect()
}

/// A document of `x-<scope>-subscription-states`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ImportedSubscription {
    /// Producer microservice.
    pub microservice: Uuid,
    /// Producer tenant.
    pub tenant: Uuid,
    /// Producer's public stream.
    pub stream: Uuid,
    /// Its partition.
    pub partition: String,
    /// Next position in the public stream.
    pub position: u64,
    /// The producer's next event-log sequence number (0 where not kept).
    pub event_log_sequence: u64,
    /// Last success (Unix ns, 0 for never).
    pub last_successfully_processed_ns: i64,
    /// The failure it waits out.
    pub failure: Option<ProcessingFailure>,
}

/// A subscription state document; `now_ns` as for [`read_processor_state`].
pub(crate) fn read_subscription_state(
    document: &RawDocument,
    now_ns: i64,
) -> Field<ImportedSubscription> {
    let top = Doc::top(document)?;
    let event_log_sequence = top.optional_counter("EventLogSequence")?.unwrap_or(0);
    let failure = if top.boolean("IsFailing")? {
        Some(ProcessingFailure {
            reason: top.string("FailureReason")?.to_owned(),
            retry_time_ns: top.retry_time_ns("RetryTime")?,
            processing_attempts: top.uint("ProcessingAttempts")?,
            last_failed_ns: now_ns,
        })
    } else {
        None
    };
    Ok(ImportedSubscription {
        microservice: top.guid("Microservice")?,
        tenant: top.guid("Tenant")?,
        stream: top.guid("Stream")?,
        partition: top.id_text("Partition")?,
        position: top.counter("Position")?,
        event_log_sequence,
        last_successfully_processed_ns: top.time_or_never_ns("LastSuccessfullyProcessed")?,
        failure,
    })
}

/// A document of `event-log-metadata`: collection name and next offset.
pub(crate) fn read_offset(document: &RawDocument) -> Field<(String, u64)> {
    let top = Doc::top(document)?;
    Ok((
        top.string("_id")?.to_owned(),
        top.counter("NextEventOffset")?,
    ))
}
