//! The `stream-processor-states` document: where an event handler or filter is.
//!
//! Layout (Runtime v9.9.0, `Processing/Streams/AbstractStreamProcessorState.cs`,
//! `StreamProcessorState.cs`, `Partitioned/PartitionedStreamProcessorState.cs`,
//! `Partitioned/FailingPartitionState.cs`, `StreamProcessorStateDiscriminatorConvention.cs`;
//! dolittle.md sections 3.3 and 6):
//!
//! ```text
//! _id                        ObjectId (the server's, on the first upsert)
//! Partitioned                Boolean  (the discriminator, first: the classes have no _id)
//! EventProcessor             Binary(4)
//! SourceStream               Binary(4)
//! Position                   Decimal128  next stream position
//! EventLogPosition           Decimal128  next event-log sequence number
//! LastSuccessfullyProcessed  Date
//! unpartitioned: RetryTime Date, FailureReason String, ProcessingAttempts Int32, IsFailing Boolean
//! partitioned:   FailingPartitions { "<partition>": { EventLogPosition Decimal128,
//!                  Position Decimal128, RetryTime Date, Reason String,
//!                  ProcessingAttempts Int32, LastFailed Date } }
//! ```
//!
//! Translating annals' state into the original's conventions:
//! - "never" times: annals' `last_successfully_processed_ns == 0` is the original's
//!   `DateTimeOffset.MinValue`, and a retry time of `i64::MAX` (no retry) its
//!   `DateTimeOffset.MaxValue`; the driver writes those two as the extreme .NET dates in
//!   milliseconds (-62135596800000 and 253402300799999), so they are written so here;
//! - an unpartitioned processor that is not failing has `FailureReason` "", no attempts,
//!   `IsFailing` false and `RetryTime` equal to `LastSuccessfullyProcessed`, as the
//!   original's state after a success;
//! - `ProcessingAttempts` is a .NET `uint` stored as Int32: more than `i32::MAX` attempts
//!   cannot be stored (the driver would throw) and is an error.
//!
//! Invariants: a pure function of its arguments; a state that mixes the two kinds (failing
//! partitions on an unpartitioned processor, a processor-wide failure on a partitioned one)
//! is an error, never silently dropped.

use annals_engine::{ProcessingFailure, ScopeId, StreamProcessorId, StreamProcessorState};
use bson::{oid::ObjectId, Document};

use crate::{
    error::{Error, Result},
    values::{
        counter, date_from_unix_ns, guid, insert_failure_fields, retry_time, time_or_never,
        ATTEMPTS_BEYOND_INT32,
    },
};

/// The collection of a scope's stream processor states: `stream-processor-states`, or
/// `x-<scope>-stream-processor-states`.
pub fn stream_processor_states_collection(scope: ScopeId) -> String {
    if scope.is_default() {
        "stream-processor-states".to_owned()
    } else {
        format!("x-{}-stream-processor-states", scope.0.hyphenated())
    }
}

/// The document the original keeps for one stream processor. `partitioned` is the
/// processor's kind (from its registration); `id.scope` chooses the collection (see
/// [`stream_processor_states_collection`]) and is not stored.
pub fn stream_processor_state_document(
    object_id: ObjectId,
    id: &StreamProcessorId,
    partitioned: bool,
    state: &StreamProcessorState,
) -> Result<Document> {
    let refuse = |what| Error::ProcessorState {
        processor: id.processor,
        source_stream: id.source_stream,
        what,
    };
    let attempts = |failure: &ProcessingFailure| {
        i32::try_from(failure.processing_attempts).map_err(|_| refuse(ATTEMPTS_BEYOND_INT32))
    };

    let last_successfully_processed = time_or_never(state.last_successfully_processed_ns);

    let mut document = Document::new();
    document.insert("_id", object_id);
    document.insert("Partitioned", partitioned);
    document.insert("EventProcessor", guid(id.processor));
    document.insert("SourceStream", guid(id.source_stream));
    document.insert("Position", counter(state.position.0));
    document.insert(
        "EventLogPosition",
        counter(state.event_log_position.value()),
    );
    document.insert(
        "LastSuccessfullyProcessed",
        last_successfully_processed.clone(),
    );

    if partitioned {
        if state.failure.is_some() {
            return Err(refuse(
                "a partitioned processor with a processor-wide failure",
            ));
        }
        let mut failing = Document::new();
        for (partition, parked) in &state.failing_partitions {
            let mut entry = Document::new();
            entry.insert(
                "EventLogPosition",
                counter(parked.event_log_position.value()),
            );
            entry.insert("Position", counter(parked.position.0));
            entry.insert("RetryTime", retry_time(parked.failure.retry_time_ns));
            entry.insert("Reason", parked.failure.reason.as_str());
            entry.insert("ProcessingAttempts", attempts(&parked.failure)?);
            entry.insert(
                "LastFailed",
                date_from_unix_ns(parked.failure.last_failed_ns),
            );
            failing.insert(partition.as_str(), entry);
        }
        document.insert("FailingPartitions", failing);
    } else {
        if !state.failing_partitions.is_empty() {
            return Err(refuse("an unpartitioned processor with failing partitions"));
        }
        insert_failure_fields(
            &mut document,
            state.failure.as_ref(),
            last_successfully_processed,
        )
        .map_err(|_| refuse(ATTEMPTS_BEYOND_INT32))?;
    }
    Ok(document)
}

#[cfg(test)]
mod tests {
    //! Expected documents written from the layout above with `doc!`, values made without this
    //! crate's helpers, compared by their bytes (order and types).

    use std::collections::BTreeMap;

    use annals_engine::{uuid::Uuid, EventLogSequenceNumber, FailingPartition, StreamPosition};
    use bson::{doc, spec::BinarySubtype, Binary, Bson, DateTime, Decimal128};

    use super::*;

    const HANDLER: u128 = 0x1111_2222_3333_4444_5555_6666_7777_8888;

    fn guid_bytes(value: u128) -> Bson {
        // RFC order is the number's big-endian bytes, written out one by one.
        let bytes = (0..16).rev().map(|i| (value >> (8 * i)) as u8).collect();
        Bson::Binary(Binary {
            subtype: BinarySubtype::Uuid,
            bytes,
        })
    }

    fn decimal(text: &str) -> Bson {
        Bson::Decimal128(text.parse::<Decimal128>().unwrap())
    }

    fn bytes(document: &Document) -> Vec<u8> {
        document.to_vec().unwrap()
    }

    fn oid() -> ObjectId {
        ObjectId::from_bytes([0x65, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11])
    }

    fn handler() -> StreamProcessorId {
        StreamProcessorId {
            scope: Uuid::nil(),
            processor: Uuid::from_u128(HANDLER),
            source_stream: Uuid::from_u128(HANDLER),
        }
    }

    fn failure(retry_time_ns: i64, attempts: u32) -> ProcessingFailure {
        ProcessingFailure {
            reason: "boom".into(),
            retry_time_ns,
            processing_attempts: attempts,
            last_failed_ns: 1_700_000_002_000_000_000,
        }
    }

    fn running() -> StreamProcessorState {
        StreamProcessorState {
            position: StreamPosition(10),
            event_log_position: EventLogSequenceNumber(25),
            last_successfully_processed_ns: 1_700_000_000_500_000_000,
            failing_partitions: BTreeMap::new(),
            failure: None,
        }
    }

    #[test]
    fn an_unpartitioned_processor_that_is_running() {
        let got = stream_processor_state_document(oid(), &handler(), false, &running()).unwrap();
        let want = doc! {
            "_id": oid(),
            "Partitioned": false,
            "EventProcessor": guid_bytes(HANDLER),
            "SourceStream": guid_bytes(HANDLER),
            "Position": decimal("10"),
            "EventLogPosition": decimal("25"),
            "LastSuccessfullyProcessed": DateTime::from_millis(1_700_000_000_500),
            "RetryTime": DateTime::from_millis(1_700_000_000_500),
            "FailureReason": "",
            "ProcessingAttempts": 0_i32,
            "IsFailing": false,
        };
        assert_eq!(bytes(&got), bytes(&want), "\n got {got}\nwant {want}");
    }

    #[test]
    fn an_unpartitioned_processor_stopped_for_good_that_never_succeeded() {
        let mut state = running();
        state.last_successfully_processed_ns = 0;
        state.failure = Some(failure(i64::MAX, 3));
        let filter = StreamProcessorId {
            source_stream: Uuid::nil(),
            ..handler()
        };
        let got = stream_processor_state_document(oid(), &filter, false, &state).unwrap();
        let want = doc! {
            "_id": oid(),
            "Partitioned": false,
            "EventProcessor": guid_bytes(HANDLER),
            "SourceStream": guid_bytes(0),
            "Position": decimal("10"),
            "EventLogPosition": decimal("25"),
            // 0001-01-01 and 9999-12-31T23:59:59.999, the .NET extremes.
            "LastSuccessfullyProcessed": DateTime::from_millis(-62_135_596_800_000),
            "RetryTime": DateTime::from_millis(253_402_300_799_999),
            "FailureReason": "boom",
            "ProcessingAttempts": 3_i32,
            "IsFailing": true,
        };
        assert_eq!(bytes(&got), bytes(&want), "\n got {got}\nwant {want}");
    }

    #[test]
    fn a_partitioned_processor_with_failing_partitions() {
        let mut state = running();
        state.failing_partitions.insert(
            "customer/1".into(),
            FailingPartition {
                position: StreamPosition(4),
                event_log_position: EventLogSequenceNumber(9),
                failure: failure(1_700_000_003_000_000_000, 2),
            },
        );
        state.failing_partitions.insert(
            "customer/2".into(),
            FailingPartition {
                position: StreamPosition(6),
                event_log_position: EventLogSequenceNumber(14),
                failure: failure(i64::MAX, 1),
            },
        );
        let got = stream_processor_state_document(oid(), &handler(), true, &state).unwrap();
        let want = doc! {
            "_id": oid(),
            "Partitioned": true,
            "EventProcessor": guid_bytes(HANDLER),
            "SourceStream": guid_bytes(HANDLER),
            "Position": decimal("10"),
            "EventLogPosition": decimal("25"),
            "LastSuccessfullyProcessed": DateTime::from_millis(1_700_000_000_500),
            "FailingPartitions": {
                "customer/1": {
                    "EventLogPosition": decimal("9"),
                    "Position": decimal("4"),
                    "RetryTime": DateTime::from_millis(1_700_000_003_000),
                    "Reason": "boom",
                    "ProcessingAttempts": 2_i32,
                    "LastFailed": DateTime::from_millis(1_700_000_002_000),
                },
                "customer/2": {
                    "EventLogPosition": decimal("14"),
                    "Position": decimal("6"),
                    "RetryTime": DateTime::from_millis(253_402_300_799_999),
                    "Reason": "boom",
                    "ProcessingAttempts": 1_i32,
                    "LastFailed": DateTime::from_millis(1_700_000_002_000),
                },
            },
        };
        assert_eq!(bytes(&got), bytes(&want), "\n got {got}\nwant {want}");
        // Without failing partitions the dictionary is an empty document.
        let got = stream_processor_state_document(oid(), &handler(), true, &running()).unwrap();
        assert_eq!(got.get_document("FailingPartitions").unwrap(), &doc! {});
    }

    #[test]
    fn states_the_layout_cannot_hold_are_refused() {
        let mut mixed = running();
        mixed.failure = Some(failure(0, 1));
        let refused = |partitioned, state: &StreamProcessorState| {
            matches!(
                stream_processor_state_document(oid(), &handler(), partitioned, state),
                Err(Error::ProcessorState { processor, .. }) if processor == Uuid::from_u128(HANDLER)
            )
        };
        assert!(refused(true, &mixed));
        let mut mixed = running();
        mixed.failing_partitions.insert(
            "p".into(),
            FailingPartition {
                position: StreamPosition(0),
                event_log_position: EventLogSequenceNumber(0),
                failure: failure(0, 1),
            },
        );
        assert!(refused(false, &mixed));
        let mut many = running();
        many.failure = Some(failure(0, u32::MAX));
        assert!(refused(false, &many));
    }

    #[test]
    fn collections_by_scope() {
        assert_eq!(
            stream_processor_states_collection(ScopeId::DEFAULT),
            "stream-processor-states"
        );
        assert_eq!(
            stream_processor_states_collection(ScopeId(Uuid::from_u128(0xab))),
            "x-00000000-0000-0000-0000-0000000000ab-stream-processor-states"
        );
    }
}
