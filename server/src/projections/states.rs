//! One tenant's projection states between the head's answers and the store.
//!
//! Invariants:
//! - What the head is asked with is the key's latest state: the latest change not yet
//!   durable, else the stored state.
//! - A write takes the changes of the events before the position it writes, in log order,
//!   and writes them (the current state of each key and an entry of its history) in the same
//!   atomic batch as the position: the states never hold an event the position says is not
//!   processed, and never miss one it says is, so a crash applies no event twice.
//! - A change stays readable here until its write has landed; a key's later change is never
//!   dropped by an earlier write landing.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;

use annals_engine::{EventLogSequenceNumber, ScopeId, StateBatch, Tenant};
use parking_lot::Mutex;
use uuid::Uuid;

use crate::api::failure::Failure;

/// One tenant's states of one projection, on their way to the store.
pub(crate) struct TenantStates {
    tenant: Arc<Tenant>,
    scope: ScopeId,
    projection: Uuid,
    inner: Mutex<Inner>,
}

#[derive(Default)]
struct Inner {
    /// The latest change of each key not yet durable: its event and the state (`None`:
    /// deleted).
    latest: HashMap<String, (EventLogSequenceNumber, Option<Arc<str>>)>,
    /// Changes not yet handed to a write, in log order.
    unsent: VecDeque<Change>,
}

/// What the head made of one event.
struct Change {
    key: String,
    position: EventLogSequenceNumber,
    occurred_ns: i64,
    state: Option<Arc<str>>,
}

/// The changes one write took: each key and the event of its change.
pub(crate) struct Sent(Vec<(String, EventLogSequenceNumber)>);

impl TenantStates {
    pub(crate) fn new(tenant: Arc<Tenant>, scope: ScopeId, projection: Uuid) -> TenantStates {
        TenantStates {
            tenant,
            scope,
            projection,
            inner: Mutex::new(Inner::default()),
        }
    }

    /// The state of `key` now: `None` when it has none (deleted, or never set).
    ///
    /// The stored state is read on the caller's thread: a point read of RocksDB, served from
    /// its block cache for keys in use, is cheaper than a hop to a blocking thread per event.
    pub(crate) fn current(&self, key: &str) -> Result<Option<String>, Failure> {
        if let Some((_, state)) = self.inner.lock().latest.get(key) {
            return Ok(state.as_deref().map(str::to_owned));
        }
        Ok(self
            .tenant
            .projection_state(self.scope, self.projection, key)?)
    }

    /// The head answered the event at `position` (occurred at `occurred_ns`) with `state`
    /// for `key` (`None`: delete it).
    pub(crate) fn record(
        &self,
        key: String,
        position: EventLogSequenceNumber,
        occurred_ns: i64,
        state: Option<String>,
    ) {
        let state: Option<Arc<str>> = state.map(Arc::from);
        let mut inner = self.inner.lock();
        inner.latest.insert(key.clone(), (position, state.clone()));
        inner.unsent.push_back(Change {
            key,
            position,
            occurred_ns,
            state,
        });
    }

    /// Adds the changes of the events before `before` not yet written to `batch`: each key's
    /// state and its history entry.
    pub(crate) fn send(&self, before: EventLogSequenceNumber, batch: &mut StateBatch) -> Sent {
        let mut inner = self.inner.lock();
        let mut sent = Vec::new();
        while inner
            .unsent
            .front()
            .is_some_and(|change| change.position < before)
        {
            let Some(change) = inner.unsent.pop_front() else {
                break;
            };
            let (scope, projection) = (self.scope.0, self.projection);
            match change.state.as_deref() {
                Some(state) => batch.put_projection(scope, projection, &change.key, state),
                None => batch.delete_projection(scope, projection, &change.key),
            }
            batch.record_projection_history(
                scope,
                projection,
                &change.key,
                change.position,
                change.occurred_ns,
                change.state.as_deref(),
            );
            sent.push((change.key, change.position));
        }
        Sent(sent)
    }

    /// A write of `sent` has landed: the store has those states now.
    pub(crate) fn landed(&self, sent: Sent) {
        let mut inner = self.inner.lock();
        for (key, position) in sent.0 {
            if inner
                .latest
                .get(&key)
                .is_some_and(|(at, _)| *at == position)
            {
                inner.latest.remove(&key);
            }
        }
    }

    /// Forgets every change and adds the drop of every state and its history to `batch`.
    pub(crate) fn reset(&self, batch: &mut StateBatch) {
        let mut inner = self.inner.lock();
        inner.latest.clear();
        inner.unsent.clear();
        batch.drop_projection_states(self.scope.0, self.projection);
    }
}
