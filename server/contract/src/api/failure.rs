//! Dolittle Failures: the in-band errors of the contract (`dolittle.protobuf.Failure { id,
//! reason }`, absent means success). The ids are the original runtime's, so SDKs that branch
//! on them (a concurrency conflict above all) behave the same against annals. Engine errors
//! become Failures in exactly one place, `From<annals_engine::Error>`.

use annals_engine::{Error, LogError};
use uuid::Uuid;

use crate::api::ids;
use crate::proto::dolittle::protobuf::Failure as WireFailure;

/// The failure ids the runtime answers with (those of Dolittle Runtime 9).
pub mod id {
    use uuid::Uuid;

    /// Catch-all: bad requests and errors without an id of their own.
    pub const OTHER: Uuid = Uuid::from_u128(0x05cc_1d10_4efc_457b_84a6_a1be_0a5f_36ba);
    /// A failure that is only a reason (Resources).
    pub const UNKNOWN: Uuid = Uuid::from_u128(0x90e7_6603_b6ea_403e_a68e_b9b3_85b9_2b16);
    /// The event store cannot take the request now (shutting down, poisoned log).
    pub const EVENT_STORE_UNAVAILABLE: Uuid =
        Uuid::from_u128(0xb6fc_b5dd_a32b_435b_8bf4_ed96_e846_d460);
    /// The store found data it cannot trust.
    pub const EVENT_STORE_CONSISTENCY_ERROR: Uuid =
        Uuid::from_u128(0x6f0e_6cab_c7e5_402e_a502_e095_f954_5297);
    /// The store failed to write.
    pub const EVENT_STORE_PERSISTENCE_ERROR: Uuid =
        Uuid::from_u128(0xad55_fca7_476a_4f68_9411_1a3b_087a_b843);
    /// The aggregate is not at the expected version.
    pub const AGGREGATE_ROOT_CONCURRENCY_CONFLICT: Uuid =
        Uuid::from_u128(0xf25c_ccfb_3ae1_4969_bee6_9063_70ff_bc2d);
    /// A commit without events.
    pub const NO_EVENTS_TO_COMMIT: Uuid =
        Uuid::from_u128(0xef3f_1a42_9bc3_4d98_aa2a_942d_b7c5_6ac1);
    /// Handshake: a mandatory field is missing.
    pub const HANDSHAKE_MISSING_INFORMATION: Uuid =
        Uuid::from_u128(0x8f5b_a2c2_6543_47ce_b2a8_d92a_872e_7280);
    /// Handshake: the head's contracts are too old.
    pub const HANDSHAKE_SDK_MUST_BE_UPDATED: Uuid =
        Uuid::from_u128(0x3e2d_8368_4bca_4e0b_a9bf_8d1c_ccbc_ac21);
    /// Handshake: the head's contracts are newer than ours.
    pub const HANDSHAKE_RUNTIME_MUST_BE_UPDATED: Uuid =
        Uuid::from_u128(0xb46f_b8a0_4565_4f00_880c_022c_bb3b_babb);
}

/// A failure to put on the wire.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    /// One of [`id`].
    pub id: Uuid,
    /// What went wrong, for people.
    pub reason: String,
}

impl Failure {
    /// A failure with `id` (one of [`id`]) and `reason`.
    pub fn new(id: Uuid, reason: impl Into<String>) -> Failure {
        Failure {
            id,
            reason: reason.into(),
        }
    }

    /// A request that is malformed or incomplete (nothing was written).
    pub fn invalid(reason: impl Into<String>) -> Failure {
        Failure::new(id::OTHER, reason)
    }

    /// A call for a tenant this runtime is not configured for (the original's words, with
    /// the tenants it does know).
    pub fn unknown_tenant(tenant: Uuid, configured: &[Uuid]) -> Failure {
        let known: Vec<String> = configured.iter().map(Uuid::to_string).collect();
        Failure::new(
            id::OTHER,
            format!(
                "Tenant {tenant} is not configured in the 'dolittle:runtime:tenants' configuration. \
                 These are the tenants that the Runtime knows about: {}",
                known.join(", ")
            ),
        )
    }

    /// No events in a commit.
    pub fn no_events() -> Failure {
        Failure::new(
            id::NO_EVENTS_TO_COMMIT,
            "No events to commit: the commit holds no events",
        )
    }

    /// The original's concurrency-conflict reason, word for word (tools match on it).
    pub fn concurrency_conflict(
        event_source_id: &str,
        aggregate_root: Uuid,
        expected: u64,
        actual: u64,
    ) -> Failure {
        Failure::new(
            id::AGGREGATE_ROOT_CONCURRENCY_CONFLICT,
            format!(
                "Tried to commit events to event source {event_source_id} on aggregate root \
                 {aggregate_root} with expected aggregate root version {expected}, but current \
                 aggregate root version was {actual}. The expected aggregate root version needs \
                 to be the same as the current aggregate root version"
            ),
        )
    }

    /// The wire form, for a response's `failure` field.
    pub fn to_wire(&self) -> WireFailure {
        WireFailure {
            id: Some(ids::to_wire(self.id)),
            reason: self.reason.clone(),
        }
    }
}

impl From<Error> for Failure {
    fn from(error: Error) -> Failure {
        let reason = error.to_string();
        match error {
            // The event store builds the original's words itself (it knows the aggregate);
            // this is for any other caller.
            Error::WrongExpectedVersion { .. } => {
                Failure::new(id::AGGREGATE_ROOT_CONCURRENCY_CONFLICT, reason)
            }
            // The store cannot serve until it is reopened (poisoned log) or its index works
            // again: the request was fine.
            Error::Log(LogError::Poisoned { .. }) | Error::Index { .. } => {
                Failure::new(id::EVENT_STORE_UNAVAILABLE, reason)
            }
            Error::Log(LogError::Io { .. }) => {
                Failure::new(id::EVENT_STORE_PERSISTENCE_ERROR, reason)
            }
            Error::Log(
                LogError::Corruption { .. }
                | LogError::ChecksumMismatch { .. }
                | LogError::UnsupportedFormat { .. }
                | LogError::Misfiled { .. }
                | LogError::UndecodableRecord { .. },
            )
            | Error::BadState { .. } => Failure::new(id::EVENT_STORE_CONSISTENCY_ERROR, reason),
            // Invalid requests, unknown or existing tenants, and anything else.
            _ => Failure::new(id::OTHER, reason),
        }
    }
}

/// Reads of a `Log` fail with the log's error, which the engine's wraps: mapped by the one
/// `From<Error>` above.
impl From<LogError> for Failure {
    fn from(error: LogError) -> Failure {
        Failure::from(Error::Log(error))
    }
}

/// A response message that carries a failure in band: either its payload or its failure.
/// Implemented in `api::in_band` for every such response this runtime answers with.
pub trait InBand<T>: Sized {
    /// The response for a success.
    fn ok(payload: T) -> Self;
    /// The response for a failure.
    fn failed(failure: &Failure) -> Self;
    /// The response for either.
    fn answer(result: Result<T, Failure>) -> Self {
        match result {
            Ok(payload) => Self::ok(payload),
            Err(failure) => Self::failed(&failure),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn conflicts_carry_both_versions_and_the_conflict_id() {
        let f = Failure::from(Error::WrongExpectedVersion {
            expected: 3,
            actual: 5,
        });
        assert_eq!(f.id, id::AGGREGATE_ROOT_CONCURRENCY_CONFLICT);
        assert!(
            f.reason.contains('5') && f.reason.contains('3'),
            "{}",
            f.reason
        );
        let f = Failure::concurrency_conflict("order-1", Uuid::nil(), 3, 5);
        assert!(f.reason.contains(
            "expected aggregate root version 3, but current aggregate root version was 5"
        ));
    }

    #[test]
    fn a_broken_index_is_unavailability_not_a_bad_request() {
        let f = Failure::from(Error::Index {
            op: "index the event log",
            detail: "disk full".into(),
        });
        assert_eq!(f.id, id::EVENT_STORE_UNAVAILABLE);
    }
}
