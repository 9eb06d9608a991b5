//! Streaming one scope's event log into its collection file.
//!
//! The log is read in bounded batches ([`READ_BATCH_RECORDS_MAX`] records, about
//! [`READ_BATCH_BYTES_MAX`] bytes of payload) on the calling thread; [`CONVERT_THREADS`]
//! threads turn batches into BSON documents (the JSON content's conversion is most of an
//! export's work), and the calling thread writes their output in log order. At most
//! [`BATCHES_IN_FLIGHT`] batches are read and not yet written, so memory is bounded by a few
//! batches and their documents whatever the log's length.
//!
//! Consistency: the caller names the end (exclusive) up front, typically the log's next
//! sequence number when the export starts, so commits arriving meanwhile are left out and the
//! file is the log's prefix up to that end.
//!
//! Invariants: the file holds exactly the events `0..end`, in order, each once: a sequence
//! number other than the one expected (a gap or a repeat, which the log never gives) is an
//! error, as is an end beyond the log's. Output is written strictly in batch order.

use std::collections::BTreeMap;
use std::sync::{mpsc, Mutex};

use annals_engine::{EventLogSequenceNumber, Log, RecordBatch};

use crate::{
    dump::{CollectionWriter, BSON_DOCUMENT_SIZE_MAX},
    error::{Error, Result},
    event::write_event,
    raw::BsonWriter,
};

/// Records read from the log per batch.
pub const READ_BATCH_RECORDS_MAX: usize = 1024;
/// Payload bytes read from the log per batch (about; a batch holds at least one record).
pub const READ_BATCH_BYTES_MAX: usize = 4 * 1024 * 1024;
/// Threads converting batches.
pub const CONVERT_THREADS: usize = 2;
/// Batches read and not yet written, at most.
pub const BATCHES_IN_FLIGHT: usize = 2 * CONVERT_THREADS + 1;

/// One batch to convert: its place in the output, the events it must hold, and the batch.
struct Job {
    index: u64,
    first: EventLogSequenceNumber,
    end: EventLogSequenceNumber,
    batch: RecordBatch,
    /// An empty buffer for the documents (reused from an earlier batch).
    documents: Vec<u8>,
}

/// A converted batch: the documents one after the other, how many, and the batch (emptied,
/// for reuse).
struct Converted {
    documents: Vec<u8>,
    count: u64,
    batch: RecordBatch,
}

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
    let (jobs_tx, jobs_rx) = mpsc::channel::<Job>();
    let jobs_rx = Mutex::new(jobs_rx);
    let (done_tx, done_rx) = mpsc::channel::<(u64, Result<Converted>)>();
    std::thread::scope(|scope| {
        let mut started = 0;
        for _ in 0..CONVERT_THREADS {
            let done_tx = done_tx.clone();
            let jobs_rx = &jobs_rx;
            let converter = std::thread::Builder::new().name("annals-export-convert".into());
            let spawned = converter.spawn_scoped(scope, move || loop {
                // The lock is held only to take a job; a poisoned lock means a converter
                // panicked, and the others stop too.
                let job = match jobs_rx.lock() {
                    Ok(jobs) => jobs.recv(),
                    Err(_) => return,
                };
                let Ok(job) = job else { return };
                let index = job.index;
                if done_tx.send((index, convert(job))).is_err() {
                    return;
                }
            });
            started += usize::from(spawned.is_ok());
        }
        drop(done_tx);
        if started == 0 {
            return Err(converters_stopped());
        }
        let written = pump(log, end, writer, &jobs_tx, &done_rx);
        // Ends the converters (they see the channel closed) before the scope joins them.
        drop(jobs_tx);
        written
    })
}

/// Reads batches and hands them out, and writes the converted ones in order.
fn pump(
    log: &Log,
    end: EventLogSequenceNumber,
    writer: &mut CollectionWriter,
    jobs: &mpsc::Sender<Job>,
    done: &mpsc::Receiver<(u64, Result<Converted>)>,
) -> Result<u64> {
    let mut next_read = EventLogSequenceNumber::ZERO;
    let (mut sent, mut next_write) = (0u64, 0u64);
    let mut converted: BTreeMap<u64, Converted> = BTreeMap::new();
    let mut spare: Vec<(RecordBatch, Vec<u8>)> = Vec::new();
    let mut written = 0u64;
    loop {
        while next_read < end && sent - next_write < BATCHES_IN_FLIGHT as u64 {
            let (mut batch, documents) = spare.pop().unwrap_or_default();
            log.read_into(
                next_read,
                READ_BATCH_RECORDS_MAX,
                READ_BATCH_BYTES_MAX,
                &mut batch,
            )
            .map_err(|source| Error::Read {
                at: next_read,
                source,
            })?;
            let Some(after) = batch.next() else {
                // The log ended before `end`, which it reported as written.
                return Err(Error::BeyondLogEnd {
                    requested: end,
                    log_end: next_read,
                });
            };
            let job = Job {
                index: sent,
                first: next_read,
                end,
                batch,
                documents,
            };
            if jobs.send(job).is_err() {
                return Err(converters_stopped());
            }
            sent += 1;
            next_read = after.min(end);
        }
        if next_write == sent {
            return Ok(written);
        }
        let (index, result) = done.recv().map_err(|_| converters_stopped())?;
        converted.insert(index, result?);
        while let Some(ready) = converted.remove(&next_write) {
            writer.write_encoded_many(&ready.documents, ready.count)?;
            written += ready.count;
            next_write += 1;
            let (mut batch, mut documents) = (ready.batch, ready.documents);
            batch.clear();
            documents.clear();
            spare.push((batch, documents));
        }
    }
}

fn converters_stopped() -> Error {
    Error::Io {
        op: "convert",
        path: std::path::PathBuf::new(),
        source: std::io::Error::other("the converting threads stopped"),
    }
}

/// Converts a batch's events from `job.first` up to `job.end` (exclusive).
fn convert(job: Job) -> Result<Converted> {
    let mut documents = job.documents;
    documents.reserve(job.batch.payload_bytes() * 2);
    let mut encoded = BsonWriter::new();
    let mut expected = job.first;
    for view in job.batch.views() {
        let view = view.map_err(|source| Error::Read {
            at: expected,
            source,
        })?;
        if view.sequence_number >= job.end {
            break;
        }
        if view.sequence_number != expected {
            return Err(Error::SequenceMismatch {
                expected,
                found: view.sequence_number,
            });
        }
        encoded.clear();
        write_event(&view, None, &mut encoded)?;
        if encoded.bytes().len() > BSON_DOCUMENT_SIZE_MAX {
            return Err(Error::DocumentTooLarge {
                collection: String::new(),
                document_index: view.sequence_number.value(),
                size_bytes: encoded.bytes().len(),
                limit_bytes: BSON_DOCUMENT_SIZE_MAX,
            });
        }
        documents.extend_from_slice(encoded.bytes());
        expected = EventLogSequenceNumber(expected.value() + 1);
    }
    Ok(Converted {
        documents,
        count: expected.value() - job.first.value(),
        batch: job.batch,
    })
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
