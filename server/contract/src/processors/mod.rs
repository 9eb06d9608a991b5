//! Stream processors as a head registers them (event handlers, filters, projections): what a
//! processor is, its identity, and the checks of each kind's registration request
//! ([`registration`]), which turn the request into the [`Spec`] the runtime runs. Pure values
//! and checks, so they build without RocksDB and are fuzzed (`fuzz/`'s `requests` target);
//! the processors themselves run in the server (`annals-server`'s `processing`).

pub mod registration;

use std::sync::Arc;

use annals_log::{EventLogSequenceNumber, EventType, ScopeId};
use uuid::Uuid;

use crate::projections::Definition;

/// The scope public filters' positions (their processor state) are kept under, so a private
/// filter with the same id in the default scope never shares its position (the original keeps
/// `public-stream-<id>` apart from `stream-<id>` the same way). Public streams themselves are
/// in the engine's own namespace (`Tenant::append_to_public_stream_with_state`); older
/// versions kept them under this scope too, and the engine moves them out when a tenant
/// opens. No event-horizon scope is this id: scopes are producer microservice ids chosen by
/// consumers, and the all-ones id is refused as a scope at registration.
pub const PUBLIC_STREAMS_SCOPE: Uuid = Uuid::max();

/// What a processor is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Kind {
    /// An event handler (reads the event log, writes nothing).
    EventHandler,
    /// A private filter: writes the events the head includes to its stream.
    Filter,
    /// A public filter: public events only, written to a public stream (what the event
    /// horizon serves), kept apart from private streams of the same id.
    PublicFilter,
    /// A projection: reads the event log, keeps a state per key.
    Projection,
}

impl Kind {
    /// The `kind` label of its metrics.
    pub fn label(self) -> &'static str {
        match self {
            Kind::EventHandler => "event_handler",
            Kind::Filter => "filter",
            Kind::PublicFilter => "public_filter",
            Kind::Projection => "projection",
        }
    }
}

/// A processor's identity: at most one connection holds it at a time.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ProcessorKey {
    /// What it is.
    pub kind: Kind,
    /// Its scope (the default scope is the nil id).
    pub scope: Uuid,
    /// Its id.
    pub id: Uuid,
}

/// Whether a processor keeps the order of each partition (the event source) apart.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Partitioning {
    /// One event in flight, in log order; a failing event stops the processor (retried in
    /// flight while the head asks for a retry).
    Unpartitioned,
    /// Up to its concurrency in flight, never two of one partition; a failing partition is
    /// parked while the others go on.
    Partitioned,
}

impl Partitioning {
    /// The wire's `partitioned` flag.
    pub fn is_partitioned(self) -> bool {
        self == Partitioning::Partitioned
    }
}

impl From<bool> for Partitioning {
    /// From the wire's `partitioned` flag.
    fn from(partitioned: bool) -> Partitioning {
        if partitioned {
            Partitioning::Partitioned
        } else {
            Partitioning::Unpartitioned
        }
    }
}

/// Where a processor without a stored position starts, and what it skips.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Bounds {
    /// The first event-log position when nothing is stored.
    pub start: StartFrom,
    /// Events that occurred before this (Unix ns) are not delivered.
    pub not_before_ns: Option<i64>,
    /// Events that occurred at or after this (Unix ns) are not delivered.
    pub stop_at_ns: Option<i64>,
}

/// Where a new processor starts.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum StartFrom {
    /// At the first event.
    #[default]
    Start,
    /// After the last event committed when it registers.
    Latest,
    /// At an event-log sequence number.
    Position(EventLogSequenceNumber),
}

/// Where a filter writes what it includes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TargetStream {
    /// A private filter's stream, in its scope.
    Scoped {
        /// The filter's scope.
        scope: ScopeId,
        /// The stream: the filter's id.
        stream: Uuid,
    },
    /// A public filter's public stream: the engine keeps public streams in a namespace of
    /// their own, which no scope reaches (what the event horizon serves).
    Public {
        /// The stream: the filter's id.
        stream: Uuid,
    },
}

/// What a registration asks for, checked.
#[derive(Debug, Clone, PartialEq)]
pub struct Spec {
    /// The processor's identity.
    pub key: ProcessorKey,
    /// The scope whose log it reads.
    pub source_scope: Uuid,
    /// The scope its position is kept under (public filters: [`PUBLIC_STREAMS_SCOPE`]).
    pub state_scope: Uuid,
    /// The stream it reads: the event handler's own id, nil for filters (the event log).
    pub source_stream: Uuid,
    /// The event types it takes (every type when empty: filters).
    pub event_types: Vec<EventType>,
    /// Whether partitions are kept apart.
    pub partitioning: Partitioning,
    /// Its alias, shown by management.
    pub alias: Option<String>,
    /// The most events in flight per tenant (1 unless partitioned).
    pub concurrency: usize,
    /// Where it starts and what it skips.
    pub bounds: Bounds,
    /// Filters: where included events go.
    pub target: Option<TargetStream>,
    /// Projections: what it was registered with.
    pub projection: Option<Arc<Definition>>,
}

/// The failure ids of processors' registrations and of their management (the original's).
pub mod failures {
    use uuid::Uuid;

    /// Event handlers: no registration arrived, or it was not valid.
    pub const EVENT_HANDLER_FAILED_TO_REGISTER: Uuid =
        crate::api::failure::id::EVENT_HANDLER_FAILED_TO_REGISTER;
    /// Event handlers: the handler (scope, id) is connected already.
    pub const EVENT_HANDLER_ALREADY_REGISTERED: Uuid =
        Uuid::from_u128(0x19dc_6254_1732_4625_90af_4447_32bc_e795);
    /// Event handlers: the id cannot be a stream's (the empty id is the event log's).
    pub const EVENT_HANDLER_ON_NON_WRITEABLE_STREAM: Uuid =
        Uuid::from_u128(0x45b4_c918_37a5_405c_9865_d032_869b_1d24);
    /// Filters: the id cannot be a stream's.
    pub const FILTER_ON_NON_WRITEABLE_STREAM: Uuid =
        Uuid::from_u128(0x2cdb_6143_4f3d_49cb_bd58_68fd_1376_dab1);
    /// Filters: no registration arrived, it was not valid, or the filter is connected already.
    pub const FILTER_FAILED_TO_REGISTER: Uuid =
        Uuid::from_u128(0xf048_0899_8aed_4191_b339_5121_f4d9_f2e2);
    /// Projections: every refusal of a registration.
    pub const PROJECTION_FAILED_TO_REGISTER: Uuid =
        Uuid::from_u128(0xeb82_f4d3_06e5_45cc_ac97_7d77_dd1e_5d07);
    /// Management: the event handler is not connected.
    pub const NOT_REGISTERED: Uuid = Uuid::from_u128(0x0006_69b7_2ad3_4c4c_a245_55ba_33c4_8a4d);
    /// Management: the event handler does not run for that tenant.
    pub const NOT_REGISTERED_FOR_TENANT: Uuid =
        Uuid::from_u128(0x7bc3_40c0_c0e1_4ef6_9c44_2030_4bfc_2ef2);
    /// Management: a reset of the same processor is under way.
    pub const ALREADY_SETTING_POSITION: Uuid =
        Uuid::from_u128(0xf5d9_c2db_c6e3_4d12_848c_c298_1c4f_fb85);
    /// Management: the position is past the end of the log.
    pub const CANNOT_REPROCESS_ABOVE_CURRENT: Uuid =
        Uuid::from_u128(0xd3a0_bafc_4746_41ed_b4a4_e67b_5055_9703);
}
