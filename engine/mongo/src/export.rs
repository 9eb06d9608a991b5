//! Streaming one scope's event log into its collection file.
//!
//! The log is read in bounded batches ([`READ_BATCH_RECORDS_MAX`] records, about
//! [`READ_BATCH_BYTES_MAX`] bytes of payload) and each event is converted and written before
//! the next is looked at, so memory is one batch plus one document whatever the log's length.
//!
//! Consistency: the caller names the end (exclusive) up front, typically the log's next
//! sequence number when the export starts, so commits arriving meanwhile are left out and the
//! file is the log's prefix up to that end.
//!
//! Invariants: the file holds exactly the events `0..end`, in order, each once: a sequence
//! number other than the one expected (a gap or a repeat, which the log never gives) is an
//! error, as is an end beyond the log's.

use annals_engine::{EventLogSequenceNumber, Log, RecordBatch};

use crate::{
    dump::CollectionWriter,
    error::{Error, Result},
    event::event_document,
};

/// Records read from the log per batch.
pub const READ_BATCH_RECORDS_MAX: usize = 1024;
/// Payload bytes read from the log per batch (about; a batch holds at least one record).
pub const READ_BATCH_BYTES_MAX: usize = 4 * 1024 * 1024;

/// Writes the events `0..end` of `log` into `writer` (the log's `event-log` or
/// `x-<scope>-event-log` collection) and returns how many were written.
pub fn write_event_log(
    log: &Log,
    end: EventLogSequenceNumber,
    writer: &mut CollectionWriter,
) -> Result<u64> {
    let log_end = log.next_sequence_number();
    if end > log_end {
        return Err(Error::BeyondLogEnd {
            requested: end,
            log_end,
        });
    }
    let mut batch = RecordBatch::new();
    let mut next = EventLogSequenceNumber::ZERO;
    while next < end {
        log.read_into(
            next,
            READ_BATCH_RECORDS_MAX,
            READ_BATCH_BYTES_MAX,
            &mut batch,
        )
        .map_err(|source| Error::Read { at: next, source })?;
        if batch.is_empty() {
            // The log ended before `end`, which it reported as written.
            return Err(Error::BeyondLogEnd {
                requested: end,
                log_end: next,
            });
        }
        for view in batch.views() {
            let view = view.map_err(|source| Error::Read { at: next, source })?;
            if view.sequence_number >= end {
                break;
            }
            if view.sequence_number != next {
                return Err(Error::SequenceMismatch {
                    expected: next,
                    found: view.sequence_number,
                });
            }
            writer.write(&event_document(&view)?)?;
            next = EventLogSequenceNumber(next.value() + 1);
        }
    }
    Ok(next.value())
}

#[cfg(test)]
mod tests {
    use annals_engine::{
        uuid::Uuid, AggregateCommit, AggregateEvent, Commit, Engine, EngineConfig, EventType,
        ExecutionContext, ScopeId, TenantId, UncommittedEvent,
    };
    use bson::{doc, Bson, Document};

    use super::*;
    use crate::{event::event_log_collection, index::event_log_indexes};

    fn event(source: &str, content: &str) -> UncommittedEvent {
        UncommittedEvent {
            event_source_id: source.into(),
            event_type: EventType {
                id: Uuid::from_u128(0xe1),
                generation: 1,
            },
            content: content.into(),
            ..Default::default()
        }
    }

    /// The documents of a `.bson` file, split by their length prefixes.
    fn documents(bytes: &[u8]) -> Vec<Document> {
        let mut out = Vec::new();
        let mut at = 0;
        while at < bytes.len() {
            let len = u32::from_le_bytes(bytes[at..at + 4].try_into().unwrap()) as usize;
            out.push(Document::from_reader(&bytes[at..at + len]).unwrap());
            at += len;
        }
        out
    }

    #[test]
    fn a_log_exported_up_to_an_end_is_that_prefix_in_order() {
        let data = tempfile::tempdir().unwrap();
        let engine = Engine::open(EngineConfig::new(data.path())).unwrap();
        let tenant = engine
            .tenant_or_create(TenantId(Uuid::from_u128(7)))
            .unwrap();
        let context = ExecutionContext {
            microservice_id: Uuid::from_u128(1),
            tenant_id: Uuid::from_u128(7),
            environment: "Development".into(),
            ..Default::default()
        };
        tenant
            .commit(&Commit {
                occurred_ns: 1_700_000_000_000_000_000,
                execution_context: context.clone(),
                events: vec![event("a", r#"{"n":0}"#), event("b", r#"{"n":1}"#)],
            })
            .unwrap();
        tenant
            .commit_for_aggregate(&AggregateCommit {
                occurred_ns: 1_700_000_001_000_000_000,
                execution_context: context.clone(),
                aggregate_root: Uuid::from_u128(0xa9),
                event_source_id: "cart-1".into(),
                expected_version: 0,
                events: vec![AggregateEvent {
                    content: r#"{"n":2}"#.into(),
                    ..Default::default()
                }],
            })
            .unwrap();
        let log = tenant.event_log().unwrap();
        let end = log.next_sequence_number();
        // Committed after the export's end: not in the file.
        tenant
            .commit(&Commit {
                occurred_ns: 1_700_000_002_000_000_000,
                execution_context: context,
                events: vec![event("c", r#"{"n":3}"#)],
            })
            .unwrap();

        let out = tempfile::tempdir().unwrap();
        let collection = event_log_collection(ScopeId::DEFAULT);
        let mut writer =
            CollectionWriter::create(out.path(), &collection, event_log_indexes(ScopeId::DEFAULT))
                .unwrap();
        assert_eq!(write_event_log(&log, end, &mut writer).unwrap(), 3);
        assert_eq!(writer.finish().unwrap().documents_count, 3);

        let bytes = std::fs::read(out.path().join("event-log.bson")).unwrap();
        let docs = documents(&bytes);
        assert_eq!(docs.len(), 3);
        for (i, document) in docs.iter().enumerate() {
            let Some(Bson::Decimal128(id)) = document.get("_id") else {
                panic!("{document}")
            };
            assert_eq!(id.to_string(), i.to_string());
            assert_eq!(
                document.get_document("Content").unwrap(),
                &doc! { "n": i32::try_from(i).unwrap() }
            );
        }
        // Only the aggregate's event has the Aggregate sub-document; none has EventHorizon.
        let has = |key: &str| docs.iter().map(|d| d.contains_key(key)).collect::<Vec<_>>();
        assert_eq!(has("Aggregate"), [false, false, true]);
        assert_eq!(has("EventHorizon"), [false, false, false]);
        let aggregate = docs[2].get_document("Aggregate").unwrap();
        assert_eq!(aggregate.get("Version").unwrap().to_string(), "0");
        assert_eq!(
            docs[2]
                .get_document("Metadata")
                .unwrap()
                .get_str("EventSource")
                .unwrap(),
            "cart-1"
        );
    }

    #[test]
    fn an_end_beyond_the_log_is_refused() {
        let data = tempfile::tempdir().unwrap();
        let engine = Engine::open(EngineConfig::new(data.path())).unwrap();
        let tenant = engine
            .tenant_or_create(TenantId(Uuid::from_u128(8)))
            .unwrap();
        let log = tenant.event_log().unwrap();
        let out = tempfile::tempdir().unwrap();
        let mut writer = CollectionWriter::create(out.path(), "event-log", Vec::new()).unwrap();
        let error = write_event_log(&log, EventLogSequenceNumber(1), &mut writer).unwrap_err();
        assert!(
            matches!(
                error,
                Error::BeyondLogEnd { requested, log_end }
                    if requested == EventLogSequenceNumber(1) && log_end == EventLogSequenceNumber(0)
            ),
            "{error}"
        );
        assert_eq!(
            write_event_log(&log, EventLogSequenceNumber(0), &mut writer).unwrap(),
            0
        );
    }
}
