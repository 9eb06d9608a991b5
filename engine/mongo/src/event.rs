//! The event documents of `event-log` and `x-<scope>-event-log`, and of the streams filters
//! write (`stream-<id>`, `x-<scope>-stream-<id>`, `public-stream-<id>`), built from an engine
//! event.
//!
//! Layout (Runtime v9.9.0, `Events.Store.MongoDB/Events/Event.cs` and the classes it holds;
//! dolittle.md section 3.3), fields in this order, PascalCase:
//!
//! ```text
//! _id               Decimal128  event log sequence number (0-based)
//! ExecutionContext  { Correlation Binary(4), SpanId Binary(0) 8 bytes (zeros without a span),
//!                     Microservice Binary(4), Tenant Binary(4),
//!                     Version { Major, Minor, Patch, Build: Int32, PreRelease: String },
//!                     Environment String, Claims [ { Name, Value, ValueType: String } ] }
//! Metadata          { Occurred Date, EventSource String, TypeId Binary(4),
//!                     TypeGeneration Int64, Public Boolean }
//! Aggregate         { WasAppliedByAggregate true, TypeId Binary(4), TypeGeneration Int64 (1),
//!                     Version Decimal128 }                    only when applied by an aggregate
//! EventHorizon      { FromEventHorizon true, ExternalEventLogSequenceNumber Decimal128,
//!                     Received Date, Consent Binary(4) }      only when received over the horizon
//! Content           the committed JSON as an embedded document (see `content`)
//! ```
//!
//! The two optional sub-documents are absent, not defaulted, when they do not apply: the
//! original has written them that way since 9.2.2 and its V9 migration removes the defaults
//! older versions wrote. A scoped log holds the same document; only the collection differs.
//!
//! A stream's document (`StreamEvent.cs`) is the same with three differences: `_id` is the
//! stream position, `Partition` (String) follows it, and `Metadata` ends with
//! `EventLogSequenceNumber` (Decimal128), the event's number in its scope's log.
//!
//! Invariants: the builder is a pure function of the event; it fails only on content the
//! original could not have stored, naming the event.

use annals_engine::{uuid::Uuid, EventView, ScopeId, StreamPosition};
use bson::Document;

use crate::{
    content::write_content,
    error::{Error, Result},
    raw::{self, BsonWriter},
};

/// The generation the original gives every aggregate root: it commits aggregate events with
/// `ArtifactGeneration.First`, and annals does not store a generation for aggregate roots.
const AGGREGATE_ROOT_GENERATION: i64 = 1;

/// The name of the collection holding a scope's event log: `event-log` for the default scope,
/// `x-<scope>-event-log` (lowercase hyphenated GUID) for events received over the horizon.
pub fn event_log_collection(scope: ScopeId) -> String {
    if scope.is_default() {
        "event-log".to_owned()
    } else {
        format!("x-{}-event-log", scope.0.hyphenated())
    }
}

/// The name of the collection of a stream a private filter writes: `stream-<id>` in the
/// default scope, `x-<scope>-stream-<id>` in another.
pub fn stream_collection(scope: ScopeId, stream: Uuid) -> String {
    if scope.is_default() {
        format!("stream-{}", stream.hyphenated())
    } else {
        format!("x-{}-stream-{}", scope.0.hyphenated(), stream.hyphenated())
    }
}

/// The name of the collection of a public stream: `public-stream-<id>` (public streams have
/// no scope).
pub fn public_stream_collection(stream: Uuid) -> String {
    format!("public-stream-{}", stream.hyphenated())
}

/// The document the original keeps for one event of an event log.
pub fn event_document(event: &EventView<'_>) -> Result<Document> {
    read_back(event, None)
}

/// The document the original keeps for one entry of a filtered or public stream: the event
/// (from its scope's log) under its stream `position`, with the `partition` the filter chose
/// (the nil GUID's text for an unpartitioned filter) after `_id`, and the event's
/// `EventLogSequenceNumber` last in `Metadata` (`StreamEvent.cs`, `StreamEventMetadata.cs`).
pub fn stream_event_document(
    event: &EventView<'_>,
    position: StreamPosition,
    partition: &str,
) -> Result<Document> {
    read_back(event, Some((position, partition)))
}

/// The document written by [`write_event`], read back into a `Document`.
fn read_back(event: &EventView<'_>, stream: Option<(StreamPosition, &str)>) -> Result<Document> {
    let mut writer = BsonWriter::new();
    write_event(event, stream, &mut writer)?;
    Document::from_reader(writer.bytes()).map_err(|source| Error::Encode {
        collection: String::new(),
        document_index: event.sequence_number.value(),
        source,
    })
}

/// Writes the event's document (of an event log, or with `stream` = (position, partition) of
/// a stream) into `writer`, which must be empty.
pub(crate) fn write_event(
    event: &EventView<'_>,
    stream: Option<(StreamPosition, &str)>,
    w: &mut BsonWriter,
) -> Result<()> {
    w.start_document();
    match stream {
        None => w.counter("_id", event.sequence_number.value()),
        Some((position, partition)) => {
            w.counter("_id", position.0);
            w.string("Partition", partition);
        }
    }

    w.document("ExecutionContext");
    w.guid("Correlation", event.correlation_id);
    // A byte array, so generic binary; the original stores eight zero bytes without a span.
    w.bytes_value("SpanId", &event.span_id.unwrap_or([0; 8]));
    w.guid("Microservice", event.microservice_id);
    w.guid("Tenant", event.tenant_id);
    let [major, minor, patch, build] = event.version;
    w.document("Version");
    w.int32("Major", major);
    w.int32("Minor", minor);
    w.int32("Patch", patch);
    w.int32("Build", build);
    w.string("PreRelease", event.pre_release);
    w.end_document();
    w.string("Environment", event.environment);
    w.array("Claims");
    for (index, (name, value, value_type)) in event.claims.iter().enumerate() {
        w.index_header(raw::kind::DOCUMENT, index);
        w.start_document();
        w.string("Name", name);
        w.string("Value", value);
        w.string("ValueType", value_type);
        w.end_document();
    }
    w.end_document();
    w.end_document();

    w.document("Metadata");
    w.date_from_unix_ns("Occurred", event.occurred_ns);
    w.string("EventSource", event.event_source_id);
    w.guid("TypeId", event.event_type.id);
    w.int64("TypeGeneration", i64::from(event.event_type.generation));
    w.boolean("Public", event.public);
    if stream.is_some() {
        w.counter("EventLogSequenceNumber", event.sequence_number.value());
    }
    w.end_document();

    if let Some(aggregate) = &event.aggregate {
        w.document("Aggregate");
        w.boolean("WasAppliedByAggregate", true);
        w.guid("TypeId", aggregate.root_id);
        w.int64("TypeGeneration", AGGREGATE_ROOT_GENERATION);
        w.counter("Version", aggregate.version);
        w.end_document();
    }
    if let Some(origin) = &event.event_horizon {
        w.document("EventHorizon");
        w.boolean("FromEventHorizon", true);
        w.counter(
            "ExternalEventLogSequenceNumber",
            origin.external_sequence_number,
        );
        w.date_from_unix_ns("Received", origin.received_ns);
        w.guid("Consent", origin.consent_id);
        w.end_document();
    }
    w.header(raw::kind::DOCUMENT, "Content");
    write_content(event.content, w).map_err(|source| Error::Content {
        sequence_number: event.sequence_number,
        source,
    })?;
    w.end_document();
    Ok(())
}

#[cfg(test)]
mod tests {
    //! The expected documents are written out from the field list of dolittle.md section 3.3
    //! with `doc!`, their values made without this crate's helpers (Decimal128 from its decimal
    //! text, GUID bytes from their hex text), and compared by their encoded bytes, which fixes
    //! order and types (`Document`'s `==` ignores order).

    use annals_engine::{
        uuid::Uuid, AppliedByAggregate, EventHorizonOrigin, EventLogSequenceNumber, EventType,
    };
    use bson::{doc, spec::BinarySubtype, Binary, Bson, DateTime, Decimal128};

    use super::*;
    use crate::content::ContentFault;

    const MICROSERVICE: &str = "7a7d7b7c-1111-4222-8333-944455556666";
    const TENANT: &str = "445f8ea8-1a6f-40d7-b2fc-796dba92dc44";
    const CORRELATION: &str = "c0ffee00-0000-4000-8000-00000000beef";
    const EVENT_TYPE: &str = "9b1e7c46-3f0a-4c55-9f8e-2a7d3d1c0b01";
    const AGGREGATE_ROOT: &str = "ab5d5b7e-0c1e-4a2b-8d3c-4e5f60718293";
    const CONSENT: &str = "0f0e0d0c-0b0a-4908-8706-050403020100";

    /// Binary subtype 4 from the GUID's text: its hex digits in the order written.
    fn guid_bytes(text: &str) -> Bson {
        let hex: Vec<u8> = text
            .bytes()
            .filter(|b| *b != b'-')
            .map(|b| u8::try_from(char::from(b).to_digit(16).unwrap()).unwrap())
            .collect();
        Bson::Binary(Binary {
            subtype: BinarySubtype::Uuid,
            bytes: hex.chunks(2).map(|p| p[0] * 16 + p[1]).collect(),
        })
    }

    fn decimal(text: &str) -> Bson {
        Bson::Decimal128(text.parse::<Decimal128>().unwrap())
    }

    fn uuid(text: &str) -> Uuid {
        Uuid::parse_str(text).unwrap()
    }

    fn bytes(document: &Document) -> Vec<u8> {
        document.to_vec().unwrap()
    }

    /// A plain event: claims, a span, a non-GUID event source, nested content.
    fn plain_event(content: &str) -> EventView<'_> {
        EventView {
            sequence_number: EventLogSequenceNumber(41),
            occurred_ns: 1_700_000_000_123_456_789,
            microservice_id: uuid(MICROSERVICE),
            tenant_id: uuid(TENANT),
            version: [1, 2, 3, 4],
            pre_release: "rc.1",
            correlation_id: uuid(CORRELATION),
            claims: vec![
                ("role", "admin", "string"),
                ("http://x/claims/id", "42", "int"),
            ],
            environment: "Production",
            span_id: Some([1, 2, 3, 4, 5, 6, 7, 8]),
            event_source_id: "customer/17",
            event_type: EventType {
                id: uuid(EVENT_TYPE),
                generation: 3,
            },
            public: true,
            aggregate: None,
            event_horizon: None,
            content,
        }
    }

    fn execution_context(claims: Vec<Bson>, span: [u8; 8]) -> Document {
        doc! {
            "Correlation": guid_bytes(CORRELATION),
            "SpanId": Binary { subtype: BinarySubtype::Generic, bytes: span.to_vec() },
            "Microservice": guid_bytes(MICROSERVICE),
            "Tenant": guid_bytes(TENANT),
            "Version": {
                "Major": 1_i32, "Minor": 2_i32, "Patch": 3_i32, "Build": 4_i32,
                "PreRelease": "rc.1",
            },
            "Environment": "Production",
            "Claims": claims,
        }
    }

    #[test]
    fn a_plain_event_with_claims_span_and_nested_content() {
        let content = r#"{"name":"Ada","age":36,"balance":-12.5,"big":3000000000,
            "tags":["a",{"deep":[1,2.0,null]}],"address":{"street":"Main","no":7}}"#;
        let got = event_document(&plain_event(content)).unwrap();
        let want = doc! {
            "_id": decimal("41"),
            "ExecutionContext": execution_context(
                vec![
                    doc! { "Name": "role", "Value": "admin", "ValueType": "string" }.into(),
                    doc! { "Name": "http://x/claims/id", "Value": "42", "ValueType": "int" }
                        .into(),
                ],
                [1, 2, 3, 4, 5, 6, 7, 8],
            ),
            "Metadata": {
                "Occurred": DateTime::from_millis(1_700_000_000_123),
                "EventSource": "customer/17",
                "TypeId": guid_bytes(EVENT_TYPE),
                "TypeGeneration": 3_i64,
                "Public": true,
            },
            "Content": {
                "name": "Ada",
                "age": 36_i32,
                "balance": -12.5_f64,
                "big": 3_000_000_000_i64,
                "tags": ["a", { "deep": [1_i32, 2.0_f64, Bson::Null] }],
                "address": { "street": "Main", "no": 7_i32 },
            },
        };
        assert_eq!(bytes(&got), bytes(&want), "\n got {got}\nwant {want}");
    }

    #[test]
    fn no_span_is_eight_zero_bytes_and_no_claims_an_empty_array() {
        let mut event = plain_event("{}");
        event.span_id = None;
        event.claims = Vec::new();
        event.public = false;
        let got = event_document(&event).unwrap();
        let want = doc! {
            "_id": decimal("41"),
            "ExecutionContext": execution_context(Vec::new(), [0; 8]),
            "Metadata": {
                "Occurred": DateTime::from_millis(1_700_000_000_123),
                "EventSource": "customer/17",
                "TypeId": guid_bytes(EVENT_TYPE),
                "TypeGeneration": 3_i64,
                "Public": false,
            },
            "Content": {},
        };
        assert_eq!(bytes(&got), bytes(&want), "\n got {got}\nwant {want}");
    }

    #[test]
    fn an_aggregate_event_has_the_aggregate_sub_document() {
        let mut event = plain_event(r#"{"item":"book"}"#);
        event.claims = Vec::new();
        event.event_source_id = "0b5e1a4e-2f3d-4c5b-9a69-78d8e7f6a5b4";
        event.aggregate = Some(AppliedByAggregate {
            root_id: uuid(AGGREGATE_ROOT),
            version: 5,
        });
        let got = event_document(&event).unwrap();
        let want = doc! {
            "_id": decimal("41"),
            "ExecutionContext": execution_context(Vec::new(), [1, 2, 3, 4, 5, 6, 7, 8]),
            "Metadata": {
                "Occurred": DateTime::from_millis(1_700_000_000_123),
                // A GUID event source stays the string it was committed as.
                "EventSource": "0b5e1a4e-2f3d-4c5b-9a69-78d8e7f6a5b4",
                "TypeId": guid_bytes(EVENT_TYPE),
                "TypeGeneration": 3_i64,
                "Public": true,
            },
            "Aggregate": {
                "WasAppliedByAggregate": true,
                "TypeId": guid_bytes(AGGREGATE_ROOT),
                "TypeGeneration": 1_i64,
                "Version": decimal("5"),
            },
            "Content": { "item": "book" },
        };
        assert_eq!(bytes(&got), bytes(&want), "\n got {got}\nwant {want}");
    }

    #[test]
    fn an_event_received_over_the_event_horizon_has_its_origin() {
        let mut event = plain_event(r#"{"n":1}"#);
        event.sequence_number = EventLogSequenceNumber(0);
        event.claims = Vec::new();
        event.public = false;
        event.event_horizon = Some(EventHorizonOrigin {
            external_sequence_number: 9_007_199_254_740_993,
            received_ns: 1_700_000_001_000_999_999,
            consent_id: uuid(CONSENT),
        });
        let got = event_document(&event).unwrap();
        let want = doc! {
            "_id": decimal("0"),
            "ExecutionContext": execution_context(Vec::new(), [1, 2, 3, 4, 5, 6, 7, 8]),
            "Metadata": {
                "Occurred": DateTime::from_millis(1_700_000_000_123),
                "EventSource": "customer/17",
                "TypeId": guid_bytes(EVENT_TYPE),
                "TypeGeneration": 3_i64,
                "Public": false,
            },
            "EventHorizon": {
                "FromEventHorizon": true,
                "ExternalEventLogSequenceNumber": decimal("9007199254740993"),
                "Received": DateTime::from_millis(1_700_000_001_000),
                "Consent": guid_bytes(CONSENT),
            },
            "Content": { "n": 1_i32 },
        };
        assert_eq!(bytes(&got), bytes(&want), "\n got {got}\nwant {want}");
    }

    #[test]
    fn a_stream_entry_has_its_position_partition_and_log_number() {
        let mut event = plain_event(r#"{"n":1}"#);
        event.claims = Vec::new();
        event.aggregate = Some(AppliedByAggregate {
            root_id: uuid(AGGREGATE_ROOT),
            version: 0,
        });
        let got = stream_event_document(&event, StreamPosition(7), "customer/17").unwrap();
        let want = doc! {
            "_id": decimal("7"),
            "Partition": "customer/17",
            "ExecutionContext": execution_context(Vec::new(), [1, 2, 3, 4, 5, 6, 7, 8]),
            "Metadata": {
                "Occurred": DateTime::from_millis(1_700_000_000_123),
                "EventSource": "customer/17",
                "TypeId": guid_bytes(EVENT_TYPE),
                "TypeGeneration": 3_i64,
                "Public": true,
                "EventLogSequenceNumber": decimal("41"),
            },
            "Aggregate": {
                "WasAppliedByAggregate": true,
                "TypeId": guid_bytes(AGGREGATE_ROOT),
                "TypeGeneration": 1_i64,
                "Version": decimal("0"),
            },
            "Content": { "n": 1_i32 },
        };
        assert_eq!(bytes(&got), bytes(&want), "\n got {got}\nwant {want}");
    }

    #[test]
    fn stream_collections_by_scope_and_kind() {
        let stream = uuid("F00D0000-0000-4000-8000-0000000000AB");
        assert_eq!(
            stream_collection(ScopeId::DEFAULT, stream),
            "stream-f00d0000-0000-4000-8000-0000000000ab"
        );
        assert_eq!(
            stream_collection(
                ScopeId(uuid("8C3A1B2D-0000-4000-8000-0000000000AB")),
                stream
            ),
            "x-8c3a1b2d-0000-4000-8000-0000000000ab-stream-f00d0000-0000-4000-8000-0000000000ab"
        );
        assert_eq!(
            public_stream_collection(stream),
            "public-stream-f00d0000-0000-4000-8000-0000000000ab"
        );
    }

    #[test]
    fn event_log_collections_by_scope() {
        assert_eq!(event_log_collection(ScopeId::DEFAULT), "event-log");
        assert_eq!(
            event_log_collection(ScopeId(uuid("8C3A1B2D-0000-4000-8000-0000000000AB"))),
            "x-8c3a1b2d-0000-4000-8000-0000000000ab-event-log"
        );
    }

    #[test]
    fn content_the_original_could_not_store_names_the_event() {
        let error = event_document(&plain_event(r#"{"a":1,"a":2}"#)).unwrap_err();
        let Error::Content {
            sequence_number,
            source,
        } = error
        else {
            panic!("{error}")
        };
        assert_eq!(sequence_number, EventLogSequenceNumber(41));
        assert_eq!(source.fault, ContentFault::DuplicateKey("a".into()));
        assert_eq!((source.line, source.column), (1, 10));
    }
}
