//! Healing a tenant after an I/O failure, without a reopen.
//!
//! Three things refuse work after a failed write until they are healed: a poisoned log (its
//! appends), an unsettled scope (its received batches, `horizon`), and a failed indexer (the
//! index, and with it /healthz). [`Tenant::heal`] takes them in that order, since settling a
//! scope needs its log to be whole first. Each step is safe to repeat; a step that fails
//! leaves its part refusing, to be healed by a later call (the runtime calls it with backoff).
//!
//! Invariants: a heal never moves a log's published end; a scope is settled only once its log
//! takes writes; the indexer resumes from its stored recovery point, rewriting the same entries
//! a failed step may have written.

use annals_log::{Healed, ScopeId};

use super::Tenant;
use crate::error::{Error, Result};

/// What [`Tenant::heal`] mended.
#[derive(Debug, Default)]
pub struct TenantHealed {
    /// Logs that were poisoned and take writes again, by scope.
    pub logs: Vec<(ScopeId, Healed)>,
    /// Scopes whose subscription states were settled, taking received batches again.
    pub scopes: Vec<ScopeId>,
    /// The failure the indexer had stopped on, when it was set going again.
    pub indexer: Option<String>,
}

impl TenantHealed {
    /// Whether anything was mended.
    pub fn is_empty(&self) -> bool {
        self.logs.is_empty() && self.scopes.is_empty() && self.indexer.is_none()
    }
}

impl Tenant {
    /// Heals what an I/O failure left refusing work (module documentation): heals every
    /// poisoned log of the tenant ([`Log::heal`](annals_log::Log::heal)), settles every
    /// unsettled scope whose log takes writes, and sets a failed indexer going again. Each
    /// mend is logged at INFO with the failure it mends.
    ///
    /// Returns what was mended, or the first failure of a part still refusing once every part
    /// was tried (what was mended before it stays mended); [`check_healthy`](Self::check_healthy)
    /// says afterwards whether the tenant serves everything.
    pub fn heal(&self) -> Result<TenantHealed> {
        self.check_live()?;
        let mut healed = TenantHealed::default();
        let mut first_failure: Option<Error> = None;
        for log in self.logs.open_logs() {
            match log.heal() {
                Ok(Some(done)) => {
                    tracing::info!(
                        tenant = %self.id,
                        scope = %log.scope().0,
                        cause = %done.cause,
                        dropped_events = done.dropped_events,
                        next = done.next.0,
                        "a log poisoned by an I/O failure is healed: cut back to its last \
                         acknowledged commit, and writes resume"
                    );
                    healed.logs.push((log.scope(), done));
                }
                Ok(None) => {}
                Err(e) => {
                    first_failure.get_or_insert(e.into());
                }
            }
        }
        let (scopes, failure) = self.settle_unsettled();
        healed.scopes = scopes;
        if let Some(e) = failure {
            first_failure.get_or_insert(e);
        }
        if self.event_log.check_writable().is_ok() {
            match self.resume_indexer() {
                Ok(resumed) => healed.indexer = resumed,
                Err(e) => {
                    first_failure.get_or_insert(e);
                }
            }
        }
        match first_failure {
            Some(e) => Err(e),
            None => Ok(healed),
        }
    }
}
