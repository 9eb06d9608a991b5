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

pub(crate) use annals_contract::processors::{failures, Kind, Partitioning, ProcessorKey};

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
