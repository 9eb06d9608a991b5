//! Stream processing: event handlers and filters, each a processor per tenant that reads the
//! scope's event log, asks the head about each event over its reverse call, and keeps its
//! position durably.
//!
//! - [`processor`] is the per-tenant loop shared by every kind: catch-up then live without a
//!   gap, ordering, concurrency, retries, parked partitions, batched durable positions. Its
//!   concerns each have a module of their own: `read` (reads of the log), `dispatch`
//!   (the buffer, partition queues and events in flight; asking the head), `parking`
//!   (failures, parked partitions and their catch-up), `positions` (the position and its
//!   durable writes); `slot` keeps a read or a write under way across turns of the loop.
//!   The events the head sees are built by `api::committed`, as every other answer's.
//! - This module keeps the registry of connected processors (one per kind, scope and id at a
//!   time), what management reads and commands through it, and what metrics read.
//!
//! Processing knows nothing of the runtime's shared state: the services connect a head's
//! reverse call to it (`services::processor_session`).

mod dispatch;
mod parking;
mod positions;
pub(crate) mod processor;
mod read;
mod slot;

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use annals_engine::{
    EventLogSequenceNumber, EventType, Log, ProcessingFailure, StreamProcessorState,
};
use parking_lot::Mutex;
use tokio::sync::{mpsc, oneshot};
use uuid::Uuid;

use crate::api::failure::Failure;

/// How long a registration waits for an ended connection of the same processor to finish.
const RELEASE_WAIT: std::time::Duration = std::time::Duration::from_secs(30);

/// The scope public filters' positions (their processor state) are kept under, so a private
/// filter with the same id in the default scope never shares its position (the original keeps
/// `public-stream-<id>` apart from `stream-<id>` the same way). Public streams themselves are
/// in the engine's own namespace (`Tenant::append_to_public_stream_with_state`); older
/// versions kept them under this scope too, and the engine moves them out when a tenant
/// opens. No event-horizon scope is this id: scopes are producer microservice ids chosen by
/// consumers, and the all-ones id is refused as a scope at registration.
pub(crate) const PUBLIC_STREAMS_SCOPE: Uuid = Uuid::max();

/// What a processor is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub(crate) enum Kind {
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
    pub(crate) fn label(self) -> &'static str {
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
pub(crate) struct ProcessorKey {
    pub(crate) kind: Kind,
    pub(crate) scope: Uuid,
    pub(crate) id: Uuid,
}

/// Whether a processor keeps the order of each partition (the event source) apart.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Partitioning {
    /// One event in flight, in log order; a failing event stops the processor (retried in
    /// flight while the head asks for a retry).
    Unpartitioned,
    /// Up to its concurrency in flight, never two of one partition; a failing partition is
    /// parked while the others go on.
    Partitioned,
}

impl Partitioning {
    /// The wire's `partitioned` flag.
    pub(crate) fn is_partitioned(self) -> bool {
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

/// A command to a tenant's processor, from management.
pub(crate) enum Command {
    /// Start over from an event-log position (stream positions restart at 0, failures are
    /// forgotten).
    Reprocess {
        event_log_position: EventLogSequenceNumber,
        done: oneshot::Sender<Result<(), Failure>>,
    },
}

/// A tenant's processor's end of management's commands.
pub(crate) struct Inbox {
    commands: mpsc::Receiver<Command>,
    /// False once no sender is left: nobody can command it any more (not a reason to stop).
    open: bool,
}

impl Inbox {
    pub(crate) fn new(commands: mpsc::Receiver<Command>) -> Inbox {
        Inbox {
            commands,
            open: true,
        }
    }

    /// The next command; pending for ever once no sender is left.
    pub(crate) async fn next(&mut self) -> Command {
        if self.open {
            if let Some(command) = self.commands.recv().await {
                return command;
            }
            self.open = false;
        }
        std::future::pending().await
    }
}

/// What management and metrics see of one tenant's processor.
#[derive(Debug, Default)]
pub(crate) struct TenantStatus {
    /// The state as last written (positions, failures).
    pub(crate) state: StreamProcessorState,
    /// An unpartitioned processor's failure it is retrying now (not yet stopped).
    pub(crate) retrying: Option<ProcessingFailure>,
}

/// One tenant's processor of a connected processor.
pub(crate) struct TenantHandle {
    pub(crate) status: Arc<Mutex<TenantStatus>>,
    pub(crate) commands: mpsc::Sender<Command>,
    pub(crate) log: Arc<Log>,
    /// Set while a reprocess command is under way (a second one is refused).
    pub(crate) resetting: AtomicBool,
}

/// A connected processor.
pub(crate) struct Registration {
    pub(crate) key: ProcessorKey,
    pub(crate) event_types: Vec<EventType>,
    pub(crate) partitioning: Partitioning,
    pub(crate) alias: Option<String>,
    /// By tenant id; fixed when registered (the configured tenants).
    pub(crate) tenants: HashMap<Uuid, Arc<TenantHandle>>,
    /// Cancelled when its connection has ended (its processors may still be writing their
    /// positions).
    pub(crate) ended: tokio_util::sync::CancellationToken,
    /// Projections: what it was registered with.
    pub(crate) projection: Option<Arc<crate::projections::Definition>>,
}

/// The connected processors.
#[derive(Default)]
pub(crate) struct Processors {
    active: Mutex<HashMap<ProcessorKey, Arc<Registration>>>,
}

/// Holds a processor's place in the registry; dropping it frees the place.
pub(crate) struct Registered {
    processors: Arc<Processors>,
    key: ProcessorKey,
}

impl Drop for Registered {
    fn drop(&mut self) {
        self.processors.active.lock().remove(&self.key);
    }
}

impl Processors {
    /// Takes the place of `registration`; `None` when another live connection holds it. A
    /// connection that has ended but is still writing its positions is waited for (up to
    /// `RELEASE_WAIT`): a head that reconnects at once resumes where the last one stopped.
    pub(crate) async fn register(
        self: &Arc<Self>,
        registration: Arc<Registration>,
    ) -> Option<Registered> {
        let key = registration.key;
        let deadline = tokio::time::Instant::now() + RELEASE_WAIT;
        loop {
            let holder = {
                let mut active = self.active.lock();
                match active.get(&key) {
                    None => {
                        active.insert(key, registration);
                        return Some(Registered {
                            processors: Arc::clone(self),
                            key,
                        });
                    }
                    Some(holder) => Arc::clone(holder),
                }
            };
            if !holder.ended.is_cancelled() || tokio::time::Instant::now() >= deadline {
                return None;
            }
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
    }

    /// A connected processor.
    pub(crate) fn get(&self, key: &ProcessorKey) -> Option<Arc<Registration>> {
        self.active.lock().get(key).cloned()
    }

    /// Every connected processor, by kind, scope and id.
    pub(crate) fn every(&self) -> Vec<Arc<Registration>> {
        let mut all: Vec<_> = self.active.lock().values().cloned().collect();
        all.sort_by_key(|r| r.key);
        all
    }

    /// Every connected processor of a kind, by scope and id.
    pub(crate) fn all(&self, kind: Kind) -> Vec<Arc<Registration>> {
        let mut all = self.every();
        all.retain(|r| r.key.kind == kind);
        all
    }
}

impl TenantHandle {
    /// Asks the processor to start over from `event_log_position`; returns once the new
    /// position is durable.
    pub(crate) async fn reprocess(
        &self,
        event_log_position: EventLogSequenceNumber,
    ) -> Result<(), Failure> {
        if self.resetting.swap(true, Ordering::AcqRel) {
            return Err(Failure::new(
                failures::ALREADY_SETTING_POSITION,
                "the processor is already being set to a new position",
            ));
        }
        // Cleared however this ends, also when the management call is cancelled mid-way.
        let _resetting = ClearOnDrop(&self.resetting);
        let (done, answer) = oneshot::channel();
        let sent = self
            .commands
            .send(Command::Reprocess {
                event_log_position,
                done,
            })
            .await;
        let gone = || {
            Failure::new(
                failures::NOT_REGISTERED,
                "the processor disconnected before it was reset",
            )
        };
        match sent {
            Ok(()) => answer.await.unwrap_or_else(|_| Err(gone())),
            Err(_) => Err(gone()),
        }
    }
}

struct ClearOnDrop<'a>(&'a AtomicBool);

impl Drop for ClearOnDrop<'_> {
    fn drop(&mut self) {
        self.0.store(false, Ordering::Release);
    }
}

/// Failure ids of processing (the original's).
pub(crate) mod failures {
    use uuid::Uuid;

    /// Event handlers: no registration arrived, or it was not valid.
    pub(crate) const EVENT_HANDLER_FAILED_TO_REGISTER: Uuid =
        crate::api::failure::id::EVENT_HANDLER_FAILED_TO_REGISTER;
    /// Event handlers: the handler (scope, id) is connected already.
    pub(crate) const EVENT_HANDLER_ALREADY_REGISTERED: Uuid =
        Uuid::from_u128(0x19dc_6254_1732_4625_90af_4447_32bc_e795);
    /// Event handlers: the id cannot be a stream's (the empty id is the event log's).
    pub(crate) const EVENT_HANDLER_ON_NON_WRITEABLE_STREAM: Uuid =
        Uuid::from_u128(0x45b4_c918_37a5_405c_9865_d032_869b_1d24);
    /// Filters: the id cannot be a stream's.
    pub(crate) const FILTER_ON_NON_WRITEABLE_STREAM: Uuid =
        Uuid::from_u128(0x2cdb_6143_4f3d_49cb_bd58_68fd_1376_dab1);
    /// Filters: no registration arrived, it was not valid, or the filter is connected already.
    pub(crate) const FILTER_FAILED_TO_REGISTER: Uuid =
        Uuid::from_u128(0xf048_0899_8aed_4191_b339_5121_f4d9_f2e2);
    /// Management: the event handler is not connected.
    pub(crate) const NOT_REGISTERED: Uuid =
        Uuid::from_u128(0x0006_69b7_2ad3_4c4c_a245_55ba_33c4_8a4d);
    /// Management: the event handler does not run for that tenant.
    pub(crate) const NOT_REGISTERED_FOR_TENANT: Uuid =
        Uuid::from_u128(0x7bc3_40c0_c0e1_4ef6_9c44_2030_4bfc_2ef2);
    /// Management: a reset of the same processor is under way.
    pub(crate) const ALREADY_SETTING_POSITION: Uuid =
        Uuid::from_u128(0xf5d9_c2db_c6e3_4d12_848c_c298_1c4f_fb85);
    /// Management: the position is past the end of the log.
    pub(crate) const CANNOT_REPROCESS_ABOVE_CURRENT: Uuid =
        Uuid::from_u128(0xd3a0_bafc_4746_41ed_b4a4_e67b_5055_9703);
}
