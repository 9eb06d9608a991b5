//! Commits: plain commits to the event log, commits received over the event horizon to a
//! scoped log, and commits for aggregates, which check the aggregate's version first.
//!
//! Invariants: a commit for an aggregate holds the aggregate's key lock across the version check
//! and the durable append, so two commits to one aggregate never both pass the check for the
//! same version; an aggregate's known version is set only under that lock, after the append;
//! nothing is appended when a check fails.

use std::sync::atomic::Ordering;

use annals_log::{AppliedByAggregate, Commit, CommitReceipt, Error as LogError, EventRef, ScopeId};
use uuid::Uuid;

use super::Tenant;
use crate::{
    aggregate::{AggregateCommit, AggregateCommitReceipt},
    error::{Error, Result},
    keys,
};

impl Tenant {
    /// Commits events to the event log; returns once they are durable. Events must not claim
    /// to be applied by an aggregate (use [`Tenant::commit_for_aggregate`]) nor to come over
    /// the event horizon (use [`Tenant::commit_to_scope`]).
    pub fn commit(&self, commit: &Commit) -> Result<CommitReceipt> {
        self.check_plain_commit(commit)?;
        Ok(self.event_log.append(commit)?)
    }

    /// [`Tenant::commit`] without blocking the caller's thread (for async servers): the
    /// future resolves once the events are durable. The commit is checked and encoded when
    /// called; the log's committer thread writes it with the group it lands in.
    pub async fn commit_async(&self, commit: &Commit) -> Result<CommitReceipt> {
        self.check_plain_commit(commit)?;
        Ok(self.event_log.append_async(commit).await?)
    }

    /// What [`Tenant::commit`] and [`Tenant::commit_async`] check before appending.
    fn check_plain_commit(&self, commit: &Commit) -> Result<()> {
        self.check_live()?;
        check_events(commit)?;
        if commit.events.iter().any(|e| e.event_horizon.is_some()) {
            return Err(invalid(
                "events received over the event horizon go to a scoped log",
            ));
        }
        Ok(())
    }

    /// Commits events received over the event horizon to the log of `scope` (not the default
    /// scope), without a subscription position; a subscription stores its events with
    /// [`Tenant::commit_received`]. Takes the scope's lock like it, so the two never
    /// interleave.
    pub fn commit_to_scope(&self, scope: ScopeId, commit: &Commit) -> Result<CommitReceipt> {
        self.check_live()?;
        if scope == ScopeId::DEFAULT {
            return Err(invalid("the default scope is the event log: use commit"));
        }
        check_events(commit)?;
        let log = self.logs.log(scope)?;
        let _held = self.lock_scope(scope)?;
        Ok(log.append(commit)?)
    }

    /// Commits events for an aggregate if it is still at `expected_version`; otherwise fails
    /// with [`Error::WrongExpectedVersion`] carrying both versions, and writes nothing.
    /// Commits to the same aggregate are serialised (the check and the durable append are one
    /// step for them); commits to different aggregates share group commits.
    pub fn commit_for_aggregate(&self, commit: &AggregateCommit) -> Result<AggregateCommitReceipt> {
        let (key, events) = self.aggregate_events(commit)?;
        let _held = self.aggregate_locks.lock(key.clone());
        self.check_version(&key, commit.expected_version)?;
        let receipt =
            self.event_log
                .append_events(commit.occurred_ns, &commit.execution_context, &events)?;
        Ok(self.aggregate_appended(key, commit, receipt))
    }

    /// [`Tenant::commit_for_aggregate`] without blocking the caller's thread (for async
    /// servers): it waits for the aggregate's lock and for the durable append as futures. The
    /// version check is one point read of the indexes.
    pub async fn commit_for_aggregate_async(
        &self,
        commit: &AggregateCommit,
    ) -> Result<AggregateCommitReceipt> {
        let (key, events) = self.aggregate_events(commit)?;
        let _held = self.aggregate_locks.lock_async(key.clone()).await;
        self.check_version(&key, commit.expected_version)?;
        let receipt = self
            .event_log
            .append_events_async(commit.occurred_ns, &commit.execution_context, &events)
            .await?;
        Ok(self.aggregate_appended(key, commit, receipt))
    }

    /// Checks a commit for an aggregate and lends its events as the log encodes them (nothing
    /// copied), with the aggregate's key. They are built before the aggregate's lock is taken:
    /// their versions follow from the expected version alone, and commits to the aggregate
    /// wait only for the check and the append.
    fn aggregate_events<'c>(
        &self,
        commit: &'c AggregateCommit,
    ) -> Result<(Vec<u8>, Vec<EventRef<'c>>)> {
        self.check_live()?;
        self.index_failure()?;
        if commit.events.is_empty() {
            return Err(invalid("a commit needs at least one event"));
        }
        let count = commit.events.len() as u64;
        let expected = commit.expected_version;
        if expected.checked_add(count).is_none() {
            return Err(invalid(format!(
                "expected version {expected} plus {count} events overflows"
            )));
        }
        let root = commit.aggregate_root;
        let key = keys::aggregate(root, &commit.event_source_id);
        let events = commit
            .events
            .iter()
            .zip(expected..)
            .map(|(event, version)| EventRef {
                event_source_id: &commit.event_source_id,
                event_type: event.event_type,
                public: event.public,
                content: &event.content,
                aggregate: Some(AppliedByAggregate {
                    root_id: root,
                    version,
                }),
                event_horizon: None,
            })
            .collect();
        Ok((key, events))
    }

    /// Fails unless the aggregate (whose lock the caller holds) is at `expected`.
    fn check_version(&self, key: &[u8], expected: u64) -> Result<()> {
        let actual = self.version_of(key)?;
        if actual != expected {
            return Err(Error::WrongExpectedVersion { expected, actual });
        }
        Ok(())
    }

    /// Records the aggregate's new version after its commit was appended (under its lock).
    fn aggregate_appended(
        &self,
        key: Vec<u8>,
        commit: &AggregateCommit,
        receipt: CommitReceipt,
    ) -> AggregateCommitReceipt {
        let (expected, count) = (commit.expected_version, commit.events.len() as u64);
        assert_eq!(
            receipt.count, count,
            "the log appended another number of events"
        );
        let after = receipt.next().0;
        // Until the indexer passes the commit, this entry is the aggregate's version; after
        // it, it spares the next commit a read of the index.
        let replaced = self.versions.lock().insert(key, (expected + count, after));
        // Only this lock's holder sets entries, so one still there is the version it read.
        assert!(
            replaced.is_none_or(|(version, _)| version == expected),
            "a known aggregate version changed under the aggregate's lock"
        );
        AggregateCommitReceipt {
            first: receipt.first,
            count,
            version_before: expected,
        }
    }

    /// The aggregate's version for a caller that holds its lock (or accepts a racing value).
    fn version_of(&self, key: &[u8]) -> Result<u64> {
        if let Some((version, _)) = self.versions.lock().get(key) {
            return Ok(*version);
        }
        // Not known: either not committed since open, or dropped once indexed; only a holder
        // of the aggregate's lock sets an entry, and the indexer writes before it drops one.
        Ok(self.get_u64(key)?.unwrap_or(0))
    }

    /// The aggregate's version as the index has it (for readers of the index, which must not
    /// see a version whose events the index does not hold yet).
    pub(super) fn indexed_version_of(&self, key: &[u8]) -> Result<u64> {
        let indexed = self.indexed.load(Ordering::Acquire);
        if let Some(&(version, after)) = self.versions.lock().get(key) {
            if after <= indexed {
                return Ok(version);
            }
        }
        Ok(self.get_u64(key)?.unwrap_or(0))
    }

    /// The number of events the aggregate has applied.
    pub fn aggregate_version(&self, aggregate_root: Uuid, event_source_id: &str) -> Result<u64> {
        self.check_live()?;
        self.version_of(&keys::aggregate(aggregate_root, event_source_id))
    }
}

fn check_events(commit: &Commit) -> Result<()> {
    if commit.events.is_empty() {
        return Err(invalid("a commit needs at least one event"));
    }
    if commit.events.iter().any(|e| e.aggregate.is_some()) {
        return Err(invalid(
            "events applied by an aggregate are committed with commit_for_aggregate",
        ));
    }
    Ok(())
}

/// A request the engine refuses as malformed (the log's `InvalidRequest`, as the log's own).
fn invalid(reason: impl Into<String>) -> Error {
    Error::Log(LogError::InvalidRequest(reason.into()))
}
