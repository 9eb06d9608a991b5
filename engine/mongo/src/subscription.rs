//! The `x-<scope>-subscription-states` document: where an event-horizon subscription is.
//!
//! Layout (Runtime v9.9.0, `Processing/Streams/EventHorizon/SubscriptionState.cs`, written by
//! `SubscriptionStateRepository.cs` as a replace-upsert, so the server adds the `_id`):
//!
//! ```text
//! _id                        ObjectId
//! Microservice               Binary(4)  producer microservice
//! Tenant                     Binary(4)  producer tenant
//! Stream                     Binary(4)  producer's public stream
//! Partition                  String
//! Position                   Decimal128 next public-stream position to ask for
//! EventLogSequence           Decimal128 producer's sequence number after the last received
//! LastSuccessfullyProcessed  Date       (DateTimeOffset.MinValue before any)
//! RetryTime                  Date       = LastSuccessfullyProcessed when not failing
//! FailureReason              String     "" when not failing
//! ProcessingAttempts         Int32      0 when not failing
//! IsFailing                  Boolean
//! ```
//!
//! The collection is always scoped, the default scope too (the consumer's scope names it).
//!
//! Invariants: a pure function of its arguments; attempts beyond Int32 are an error.

use annals_engine::{ScopeId, SubscriptionId, SubscriptionState};
use bson::{oid::ObjectId, Document};

use crate::{
    error::{Error, Result},
    values::{counter, guid, insert_failure_fields, time_or_never, ATTEMPTS_BEYOND_INT32},
};

/// The collection of a scope's subscription states: `x-<scope>-subscription-states`.
pub fn subscription_states_collection(scope: ScopeId) -> String {
    format!("x-{}-subscription-states", scope.0.hyphenated())
}

/// The document the original keeps for one subscription (`id.scope` chooses the collection
/// and is not stored).
pub fn subscription_state_document(
    object_id: ObjectId,
    id: &SubscriptionId,
    state: &SubscriptionState,
) -> Result<Document> {
    let last_success = time_or_never(state.last_successfully_processed_ns);
    let mut document = Document::new();
    document.insert("_id", object_id);
    document.insert("Microservice", guid(id.producer_microservice));
    document.insert("Tenant", guid(id.producer_tenant));
    document.insert("Stream", guid(id.stream));
    document.insert("Partition", id.partition.as_str());
    document.insert("Position", counter(state.position.0));
    document.insert(
        "EventLogSequence",
        counter(state.next_producer_sequence_number),
    );
    document.insert("LastSuccessfullyProcessed", last_success.clone());
    insert_failure_fields(&mut document, state.failure.as_ref(), last_success).map_err(|_| {
        Error::SubscriptionState {
            stream: id.stream,
            partition: id.partition.clone(),
            what: ATTEMPTS_BEYOND_INT32,
        }
    })?;
    Ok(document)
}

#[cfg(test)]
mod tests {
    use annals_engine::{uuid::Uuid, ProcessingFailure, StreamPosition};
    use bson::{doc, spec::BinarySubtype, Binary, Bson, DateTime, Decimal128};

    use super::*;

    fn guid_bytes(value: u128) -> Bson {
        Bson::Binary(Binary {
            subtype: BinarySubtype::Uuid,
            // RFC order is the number's most significant byte first.
            bytes: (0..16).rev().map(|i| (value >> (8 * i)) as u8).collect(),
        })
    }

    fn decimal(text: &str) -> Bson {
        Bson::Decimal128(text.parse::<Decimal128>().unwrap())
    }

    fn id() -> SubscriptionId {
        SubscriptionId {
            producer_microservice: Uuid::from_u128(1),
            producer_tenant: Uuid::from_u128(2),
            scope: Uuid::from_u128(3),
            stream: Uuid::from_u128(4),
            partition: "p-1".into(),
        }
    }

    #[test]
    fn a_new_a_receiving_and_a_failing_subscription() {
        let object_id = ObjectId::from_bytes([7; 12]);
        let new = subscription_state_document(object_id, &id(), &SubscriptionState::default());
        let want = doc! {
            "_id": object_id,
            "Microservice": guid_bytes(1),
            "Tenant": guid_bytes(2),
            "Stream": guid_bytes(4),
            "Partition": "p-1",
            "Position": decimal("0"),
            "EventLogSequence": decimal("0"),
            "LastSuccessfullyProcessed": DateTime::from_millis(-62_135_596_800_000),
            "RetryTime": DateTime::from_millis(-62_135_596_800_000),
            "FailureReason": "",
            "ProcessingAttempts": 0_i32,
            "IsFailing": false,
        };
        assert_eq!(new.unwrap().to_vec().unwrap(), want.to_vec().unwrap());

        let mut state = SubscriptionState {
            position: StreamPosition(10),
            last_successfully_processed_ns: 1_700_000_000_999_999_999,
            failure: Some(ProcessingFailure {
                reason: "producer gone".into(),
                retry_time_ns: 1_700_000_005_000_000_000,
                processing_attempts: 3,
                last_failed_ns: 1_700_000_004_000_000_000,
            }),
            next_producer_sequence_number: 25,
        };
        let failing = subscription_state_document(object_id, &id(), &state).unwrap();
        let want = doc! {
            "_id": object_id,
            "Microservice": guid_bytes(1),
            "Tenant": guid_bytes(2),
            "Stream": guid_bytes(4),
            "Partition": "p-1",
            "Position": decimal("10"),
            "EventLogSequence": decimal("25"),
            "LastSuccessfullyProcessed": DateTime::from_millis(1_700_000_000_999),
            "RetryTime": DateTime::from_millis(1_700_000_005_000),
            "FailureReason": "producer gone",
            "ProcessingAttempts": 3_i32,
            "IsFailing": true,
        };
        assert_eq!(failing.to_vec().unwrap(), want.to_vec().unwrap());

        state.failure.as_mut().unwrap().processing_attempts = u32::MAX;
        assert!(matches!(
            subscription_state_document(object_id, &id(), &state),
            Err(Error::SubscriptionState { .. })
        ));
    }

    #[test]
    fn the_collection_is_always_scoped() {
        assert_eq!(
            subscription_states_collection(ScopeId::DEFAULT),
            "x-00000000-0000-0000-0000-000000000000-subscription-states"
        );
    }
}
