//! The consumer side of the event horizon: events received from a producer's public stream,
//! stored in a scoped log together with the subscription's position, so that a crash at any
//! point neither loses nor duplicates an event.
//!
//! The events go to the scoped log and the position to RocksDB: two stores, no shared
//! transaction. The prepared-state protocol makes them one step. For a batch of `count` events,
//! under the scope's lock (one writer per scoped log at a time):
//!
//! 1. read the scoped log's end `n`;
//! 2. write the subscription's record, synced: `{ state: next, pending: { valid_from_log_end:
//!    n + count, previous } }`, `previous` being the state in force before;
//! 3. append the batch to the scoped log as one atomic unit (`Log::append_all`).
//!
//! The record's `state` is in force once the scoped log's end reaches `n + count`, and
//! `previous` while it does not: the events and the position are both there or both not,
//! whichever store a crash interrupts. A crash before 2 leaves the old record; between 2 and 3,
//! or during 3 (the log cuts a torn unit whole, FORMAT.md 4.3), a log ending at `n`; after 3,
//! a log ending at `n + count`. The consumer resumes from the effective state's position and
//! gets exactly the events it lacks.
//!
//! A pending record must not outlive the log position it is judged by: were the write lost, a
//! later batch of another subscription to the same scope would move the log's end past `n +
//! count` and make the lost write look done. So:
//! - at open ([`Tenant::settle_subscriptions`], before the tenant is handed out and anything can
//!   write a scoped log), every pending record is rewritten as a settled one, `state` or
//!   `previous`, in one synced batch;
//! - while running, a failed append whose outcome is unknown (an I/O failure: the bytes may be
//!   in the file) leaves the scope *unsettled*: every later write to it is refused, as the
//!   log's poisoning refuses appends, until the engine is reopened and settles it, or the
//!   tenant is healed ([`Tenant::heal`]): the heal cuts the log back to what was acknowledged,
//!   so the failed unit is surely not in it, and then settles the scope under its lock. Only an
//!   append refused before it wrote anything (`InvalidRequest`) is rolled back at once, by
//!   writing `previous` back; if that write fails too, the scope is unsettled likewise. Writing
//!   `previous` back right after an I/O failure would be wrong: the unit may yet be in the log
//!   after a reopen, and the position would then be behind its events (duplicates).
//!
//! Everything that writes a scoped log takes the scope's lock ([`Tenant::commit_to_scope`] too).
//! `Tenant::scoped_log` hands out the log for reading; appending through it directly would
//! break the protocol.
//!
//! Invariants: a pending record's `previous` is a settled state (one level, never a chain); a
//! pending record whose batch reached the log stays pending, harmlessly, until the next open
//! settles it, since the log's end only grows while the engine runs (a heal never moves it); a
//! scope holds at most one batch of unknown outcome (the lock, then the refusal), and stays
//! refused until it is settled by a heal or a reopen.
//!
//! With `buffered` durability a machine crash can lose acknowledged appends; the record then
//! falls back one batch (`previous`), which is right for the last batch only.

use std::collections::BTreeMap;

use annals_log::{Commit, CommitReceipt, Error as LogError, EventLogSequenceNumber, ScopeId};
use rocksdb::WriteBatch;
use uuid::Uuid;

use super::{state::from_json, Tenant};
use crate::{
    db::{bad_state, Wal},
    error::{Error, Result},
    keys,
    locks::KeyGuard,
    state::{to_json, PendingReceive, SubscriptionId, SubscriptionRecord, SubscriptionState},
};

impl Tenant {
    /// Stores events received over the event horizon for subscription `id` in the log of
    /// `scope`, with the subscription's state after them (`next`), as one atomic step: after a
    /// crash at any point, [`subscription_state`](Self::subscription_state) is `next` exactly
    /// when the events are in the log, and the state before otherwise.
    ///
    /// The commits keep their producers' execution contexts and occurred times and are written
    /// as one unit (all events present or none). Every event must carry its event-horizon
    /// origin, and none may be applied by an aggregate or be public (received events are never
    /// public again). `scope` must be the subscription's scope and not the default one.
    ///
    /// Writes to one scope are serialised. After an I/O failure the scope refuses writes
    /// (`Poisoned`) until it is healed ([`Tenant::heal`]) or the engine is reopened (module
    /// documentation).
    pub fn commit_received(
        &self,
        scope: ScopeId,
        id: &SubscriptionId,
        commits: &[Commit],
        next: &SubscriptionState,
    ) -> Result<CommitReceipt> {
        self.check_live()?;
        if scope == ScopeId::DEFAULT {
            return Err(invalid(
                "events received over the event horizon go to a scope, not the default one",
            ));
        }
        if id.scope != scope.0 {
            return Err(invalid(format!(
                "subscription {id:?} stores its events in scope {}, not {}",
                id.scope, scope.0
            )));
        }
        if commits.is_empty() {
            return Err(invalid("a received batch needs at least one commit"));
        }
        for (c, commit) in commits.iter().enumerate() {
            check_received(c, commit)?;
        }
        let count: u64 = commits.iter().map(|c| c.events.len() as u64).sum();
        let log = self.logs.log(scope)?;
        let key = id.key();
        let _held = self.lock_scope(scope)?;
        let n = log.next_sequence_number().0;
        let previous = self.record(&key)?.and_then(|r| r.effective(n));
        let valid_from_log_end = n
            .checked_add(count)
            .ok_or_else(|| invalid("the scoped log's end plus the batch overflows"))?;
        let prepared = SubscriptionRecord {
            state: next.clone(),
            pending: Some(PendingReceive {
                valid_from_log_end,
                previous: previous.clone(),
            }),
        };
        if let Err(e) = self.put_record(&key, Some(&prepared)) {
            // The record may have landed; only settling at open can tell it from the log.
            self.unsettle(
                scope,
                format!("storing a subscription's prepared state failed: {e}"),
            );
            return Err(e);
        }
        match log.append_all(commits) {
            Ok(receipt) => {
                if receipt.first.0 != n {
                    // Something appended to the scoped log without the scope's lock. This
                    // batch is durable and its record in force, but the protocol's guarantee
                    // for a lost batch needs every writer to take the lock.
                    tracing::warn!(
                        tenant = %self.id,
                        scope = %scope.0,
                        expected = n,
                        found = receipt.first.0,
                        "the scoped log was appended to outside commit_received/commit_to_scope"
                    );
                }
                Ok(receipt)
            }
            Err(e) => {
                self.settle_failed(scope, &key, previous, &e);
                Err(e.into())
            }
        }
    }

    /// Sets a subscription's state, durably, as a settled record (for a subscription being
    /// created, at position 0, so it is known before any event arrives). Waits for a
    /// [`commit_received`](Self::commit_received) to the same scope under way, and is refused
    /// while the scope is unsettled.
    pub fn put_subscription_state(
        &self,
        id: &SubscriptionId,
        state: &SubscriptionState,
    ) -> Result<()> {
        self.check_live()?;
        if id.scope.is_nil() {
            return Err(invalid(
                "a subscription stores its events in a scope, not the default one",
            ));
        }
        let _held = self.lock_scope(ScopeId(id.scope))?;
        self.put_record(&id.key(), Some(&SubscriptionRecord::settled(state.clone())))
    }

    /// An event-horizon subscription's state in force: that of its last batch in the scoped
    /// log (or the one last set), `None` if it has none.
    pub fn subscription_state(&self, id: &SubscriptionId) -> Result<Option<SubscriptionState>> {
        let key = id.key();
        match self.record(&key)? {
            None => Ok(None),
            Some(record) => self.in_force(ScopeId(id.scope), record),
        }
    }

    /// A scope's log end and the subscriptions storing into it, read together under the
    /// scope's lock, so that no received batch is half way between them: every event below
    /// the end is covered by the states, and no state covers an event beyond it. What an
    /// export of a running tenant takes of a scope.
    pub fn scope_snapshot(
        &self,
        scope: ScopeId,
    ) -> Result<(
        EventLogSequenceNumber,
        Vec<(SubscriptionId, SubscriptionState)>,
    )> {
        self.check_live()?;
        let log = self.logs.log(scope)?;
        let _held = self.lock_scope(scope)?;
        let end = log.next_sequence_number();
        let subscriptions = self
            .subscriptions()?
            .into_iter()
            .filter(|(id, _)| id.scope == scope.0)
            .collect();
        Ok((end, subscriptions))
    }

    /// Every subscription with a state, with the state in force, in key order (producer
    /// microservice, producer tenant, scope, stream, partition).
    pub fn subscriptions(&self) -> Result<Vec<(SubscriptionId, SubscriptionState)>> {
        let prefix = [keys::SUBSCRIPTION];
        let mut out = Vec::new();
        for (k, v) in self.scan(&prefix, &prefix, usize::MAX)? {
            let id = subscription_id(&k)?;
            let record: SubscriptionRecord = from_json(&k, &v)?;
            if let Some(state) = self.in_force(ScopeId(id.scope), record)? {
                out.push((id, state));
            }
        }
        Ok(out)
    }

    /// Rewrites every pending subscription record as a settled one (the state in force by its
    /// scoped log's end), in one synced batch. Run at open, before the tenant is handed out:
    /// nothing can write a scoped log meanwhile. Returns how many records were settled.
    pub(super) fn settle_subscriptions(&self) -> Result<usize> {
        self.settle_pending(None)
    }

    /// Settles the pending records of `only` (every scope with `None`), by their scoped logs'
    /// ends. The caller makes sure nothing writes those logs meanwhile.
    fn settle_pending(&self, only: Option<ScopeId>) -> Result<usize> {
        let prefix = [keys::SUBSCRIPTION];
        let mut settled: Vec<(Vec<u8>, Option<SubscriptionState>)> = Vec::new();
        let mut ends: BTreeMap<Uuid, u64> = BTreeMap::new();
        for (k, v) in self.scan(&prefix, &prefix, usize::MAX)? {
            let record: SubscriptionRecord = from_json(&k, &v)?;
            if record.pending.is_none() {
                continue;
            }
            let scope = subscription_id(&k)?.scope;
            if only.is_some_and(|only| only.0 != scope) {
                continue;
            }
            let end = if let Some(end) = ends.get(&scope) {
                *end
            } else {
                let end = self.logs.log(ScopeId(scope))?.next_sequence_number().0;
                ends.insert(scope, end);
                end
            };
            settled.push((k, record.effective(end)));
        }
        if settled.is_empty() {
            return Ok(0);
        }
        let cf = self.cf()?;
        let mut batch = WriteBatch::default();
        for (key, state) in &settled {
            match state {
                Some(state) => {
                    batch.put_cf(
                        &cf,
                        key,
                        to_json(&SubscriptionRecord::settled(state.clone())),
                    );
                }
                None => batch.delete_cf(&cf, key),
            }
        }
        drop(cf);
        self.write(batch, Wal::Synced)?;
        tracing::info!(
            tenant = %self.id,
            records = settled.len(),
            "settled subscription states left pending by a failed or interrupted write"
        );
        Ok(settled.len())
    }

    /// Settles the scopes left unsettled by a failed write, once their logs take writes again
    /// (healed): under each scope's lock its pending records are judged by the log's end, which
    /// holds exactly the acknowledged batches after a heal, and the scope takes writes again.
    /// A scope whose log is still poisoned, or whose settling write fails, is left as it is
    /// and the others are settled. Returns the scopes settled, and the first failure.
    pub(super) fn settle_unsettled(&self) -> (Vec<ScopeId>, Option<Error>) {
        let scopes: Vec<ScopeId> = self.unsettled.lock().keys().copied().collect();
        let mut done = Vec::new();
        let mut first_failure = None;
        for scope in scopes {
            let writable = self.logs.log(scope).and_then(|log| log.check_writable());
            if let Err(e) = writable {
                first_failure.get_or_insert(e.into());
                continue;
            }
            let _held = self.scope_locks.lock(scope.0.as_bytes().to_vec());
            if let Err(e) = self.settle_pending(Some(scope)) {
                first_failure.get_or_insert(e);
                continue;
            }
            if let Some(cause) = self.unsettled.lock().remove(&scope) {
                tracing::info!(
                    tenant = %self.id,
                    scope = %scope.0,
                    %cause,
                    "a scope's subscription state is settled again: writes to it resume"
                );
            }
            done.push(scope);
        }
        (done, first_failure)
    }

    /// `Poisoned` naming the first unsettled scope, if any is.
    pub(super) fn check_settled(&self) -> Result<()> {
        match self.unsettled.lock().iter().next() {
            Some((scope, cause)) => Err(self.unsettled_error(*scope, cause)),
            None => Ok(()),
        }
    }

    fn unsettled_error(&self, scope: ScopeId, cause: &str) -> Error {
        Error::Log(LogError::Poisoned {
            tenant: self.id,
            scope,
            cause: format!(
                "a received batch's outcome is unknown until the scope is healed ({cause})"
            ),
        })
    }

    /// Takes the scope's write lock; refused while the scope is unsettled.
    pub(super) fn lock_scope(&self, scope: ScopeId) -> Result<KeyGuard<'_>> {
        let held = self.scope_locks.lock(scope.0.as_bytes().to_vec());
        if let Some(cause) = self.unsettled.lock().get(&scope) {
            return Err(self.unsettled_error(scope, cause));
        }
        Ok(held)
    }

    /// After a failed append of a prepared batch: roll the record back when the log wrote
    /// nothing, else leave the scope unsettled until a heal or a reopen.
    fn settle_failed(
        &self,
        scope: ScopeId,
        key: &[u8],
        previous: Option<SubscriptionState>,
        error: &LogError,
    ) {
        if matches!(error, LogError::InvalidRequest(_)) {
            // Refused before anything was queued: the batch is not in the log.
            let rolled_back = previous.map(SubscriptionRecord::settled);
            if let Err(e) = self.put_record(key, rolled_back.as_ref()) {
                self.unsettle(scope, format!("rolling a refused batch back failed: {e}"));
            }
            return;
        }
        self.unsettle(scope, format!("appending a received batch failed: {error}"));
    }

    fn unsettle(&self, scope: ScopeId, cause: String) {
        tracing::error!(
            tenant = %self.id,
            scope = %scope.0,
            %cause,
            "a scope's subscription state is unsettled: writes to it are refused until it is healed or reopened"
        );
        self.unsettled.lock().entry(scope).or_insert(cause);
    }

    /// The state a record puts in force, judged by its scope's log when it is pending.
    fn in_force(
        &self,
        scope: ScopeId,
        record: SubscriptionRecord,
    ) -> Result<Option<SubscriptionState>> {
        if record.pending.is_none() {
            return Ok(Some(record.state));
        }
        let end = self.logs.log(scope)?.next_sequence_number().0;
        Ok(record.effective(end))
    }

    fn record(&self, key: &[u8]) -> Result<Option<SubscriptionRecord>> {
        self.get(key)?.map(|v| from_json(key, &v)).transpose()
    }

    /// Puts (or with `None` deletes) a subscription record, synced.
    fn put_record(&self, key: &[u8], record: Option<&SubscriptionRecord>) -> Result<()> {
        let cf = self.cf()?;
        let mut batch = WriteBatch::default();
        match record {
            Some(record) => batch.put_cf(&cf, key, to_json(record)),
            None => batch.delete_cf(&cf, key),
        }
        drop(cf);
        self.write(batch, Wal::Synced)
    }
}

/// The subscription an `H` key names.
fn subscription_id(key: &[u8]) -> Result<SubscriptionId> {
    let (producer_microservice, producer_tenant, scope, stream, partition) =
        keys::split_subscription(key).ok_or_else(|| {
            bad_state(
                key,
                "a subscription key is 65 bytes of ids and a UTF-8 partition",
            )
        })?;
    Ok(SubscriptionId {
        producer_microservice,
        producer_tenant,
        scope,
        stream,
        partition,
    })
}

/// Checks that commit `c` of a received batch holds only what the event horizon delivers.
fn check_received(c: usize, commit: &Commit) -> Result<()> {
    if commit.events.is_empty() {
        return Err(invalid(format!(
            "commit {c} of the received batch has no event; a commit needs at least one"
        )));
    }
    for (i, event) in commit.events.iter().enumerate() {
        let wrong = if event.event_horizon.is_none() {
            "has no event-horizon origin"
        } else if event.aggregate.is_some() {
            "is applied by an aggregate"
        } else if event.public {
            "is public (received events are never public)"
        } else {
            continue;
        };
        return Err(invalid(format!(
            "event {i} of commit {c} of the received batch {wrong}"
        )));
    }
    Ok(())
}

/// A request the engine refuses as malformed.
fn invalid(reason: impl Into<String>) -> Error {
    Error::Log(LogError::InvalidRequest(reason.into()))
}
