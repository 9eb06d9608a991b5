//! Wire twins: messages that put exactly the bytes of a contract message on the wire, with a
//! sub-message that many of them share carried as its encoded bytes. A length-delimited field
//! reads the same whether it was written as a message or as bytes, so a reader built from the
//! contract cannot tell them apart; the writer encodes the shared sub-message once instead of
//! once per event (a commit's execution context and time, in every event of its answer).
//!
//! Invariants: a twin has the fields of its contract message with the same numbers, kinds and
//! order, and encodes byte for byte as that message would (the tests compare the two); the
//! encoded sub-messages are held as `Some`, which prost writes even when empty, as it writes a
//! present message.

use bytes::Bytes;

use crate::proto::dolittle::artifacts::Artifact;
use crate::proto::dolittle::protobuf::Failure;
use crate::proto::dolittle::runtime::events::CommittedEvent;

/// `dolittle.runtime.events.CommittedEvent`, with its time and execution context encoded.
#[derive(Clone, PartialEq, prost::Message)]
pub struct CommittedEventWire {
    /// Position in the tenant's event log.
    #[prost(uint64, tag = "1")]
    pub event_log_sequence_number: u64,
    /// An encoded `google.protobuf.Timestamp`.
    #[prost(bytes = "bytes", optional, tag = "2")]
    pub occurred: Option<Bytes>,
    /// The event source.
    #[prost(string, tag = "3")]
    pub event_source_id: String,
    /// An encoded `dolittle.execution.ExecutionContext`.
    #[prost(bytes = "bytes", optional, tag = "4")]
    pub execution_context: Option<Bytes>,
    /// The event type.
    #[prost(message, optional, tag = "5")]
    pub event_type: Option<Artifact>,
    /// Whether the event may be shared with other microservices.
    #[prost(bool, tag = "6")]
    pub public: bool,
    /// The JSON content, as committed.
    #[prost(string, tag = "7")]
    pub content: String,
    /// Whether the event came over the event horizon.
    #[prost(bool, tag = "8")]
    pub external: bool,
    /// Its position in the producer's log, for an external event.
    #[prost(uint64, tag = "9")]
    pub external_event_log_sequence_number: u64,
    /// When an external event was received.
    #[prost(message, optional, tag = "10")]
    pub external_event_received: Option<prost_types::Timestamp>,
}

impl CommittedEventWire {
    /// `event`, built without its time and execution context, with them as `occurred` and
    /// `execution_context` encoded (shared by the events of one commit).
    pub fn sharing(event: CommittedEvent, occurred: &Bytes, execution_context: &Bytes) -> Self {
        debug_assert!(event.occurred.is_none() && event.execution_context.is_none());
        // Every field named, so a field added to the contract's message is not forgotten here.
        let CommittedEvent {
            event_log_sequence_number,
            occurred: _,
            event_source_id,
            execution_context: _,
            event_type,
            public,
            content,
            external,
            external_event_log_sequence_number,
            external_event_received,
        } = event;
        CommittedEventWire {
            event_log_sequence_number,
            occurred: Some(occurred.clone()),
            event_source_id,
            execution_context: Some(execution_context.clone()),
            event_type,
            public,
            content,
            external,
            external_event_log_sequence_number,
            external_event_received,
        }
    }
}

/// `dolittle.runtime.events.CommitEventsResponse`, with [`CommittedEventWire`] events.
#[derive(Clone, PartialEq, prost::Message)]
pub struct CommitEventsResponseWire {
    /// Why the commit failed, if it did.
    #[prost(message, optional, tag = "1")]
    pub failure: Option<Failure>,
    /// The committed events.
    #[prost(message, repeated, tag = "2")]
    pub events: Vec<CommittedEventWire>,
}
