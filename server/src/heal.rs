//! The runtime heals its tenants itself after an I/O failure (a full disk, a failed fsync):
//! no restart, nothing acknowledged lost.
//!
//! Every `CHECK_INTERVAL` each configured tenant is asked whether it serves everything
//! ([`Tenant::check_healthy`]). A tenant that does not is logged at ERROR with the cause, its
//! `annals_tenant_unhealthy` gauge goes to 1, and it is healed ([`Tenant::heal`]: each
//! poisoned log cut back to its last acknowledged commit and probed with a synced write,
//! unsettled scopes settled, a failed indexer resumed) after a backoff that doubles from
//! `BACKOFF_FIRST` to `BACKOFF_MAX` while attempts fail, each failure logged at WARN with the
//! next attempt's delay. A failed fsync is never retried: a heal re-establishes the log from
//! what was acknowledged and checks the disk with new writes. Once the tenant serves
//! everything again, an INFO says so, with how long it refused and after how many attempts;
//! the engine has logged each part it mended at INFO with the failure it mended.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use uuid::Uuid;

use crate::runtime::Runtime;

/// How often tenants are checked.
const CHECK_INTERVAL: Duration = Duration::from_secs(1);
/// The wait before the first heal of a tenant found refusing work.
const BACKOFF_FIRST: Duration = Duration::from_secs(1);
/// The longest wait between two heals of one tenant.
const BACKOFF_MAX: Duration = Duration::from_secs(30);

/// A tenant found refusing work, being healed.
#[derive(Debug)]
struct Refusing {
    since: Instant,
    next_attempt: Instant,
    backoff: Duration,
    attempts: u32,
}

/// Checks and heals the configured tenants until the runtime stops.
pub(crate) async fn watch(runtime: Arc<Runtime>) {
    let mut stopping = runtime.stopping.clone();
    let mut refusing: HashMap<Uuid, Refusing> = HashMap::new();
    loop {
        tokio::select! {
            () = tokio::time::sleep(CHECK_INTERVAL) => {}
            _ = stopping.wait_for(|s| *s) => return,
        }
        let check = Arc::clone(&runtime);
        let state = std::mem::take(&mut refusing);
        match tokio::task::spawn_blocking(move || round(&check, state)).await {
            Ok(state) => refusing = state,
            Err(e) => tracing::error!(error = %e, "a round of tenant healing ended abnormally"),
        }
    }
}

/// One round: every tenant checked, the refusing ones whose time has come healed.
fn round(runtime: &Runtime, mut refusing: HashMap<Uuid, Refusing>) -> HashMap<Uuid, Refusing> {
    let now = Instant::now();
    for &id in runtime.tenant_ids() {
        let Ok(tenant) = runtime.tenant(id) else {
            continue;
        };
        let cause = match tenant.check_healthy() {
            Ok(()) => {
                if let Some(was) = refusing.remove(&id) {
                    // Mended between two rounds (by a heal of the round before that reported
                    // a failure of another part, since mended).
                    healed(runtime, id, &was);
                }
                continue;
            }
            Err(e) => e.to_string(),
        };
        let entry = refusing.entry(id).or_insert_with(|| {
            tracing::error!(
                tenant = %id,
                %cause,
                "the tenant refuses work after a storage failure; the runtime heals it, with backoff"
            );
            runtime.metrics.tenant_unhealthy(id, true);
            Refusing {
                since: now,
                next_attempt: now + BACKOFF_FIRST,
                backoff: BACKOFF_FIRST,
                attempts: 0,
            }
        });
        if now < entry.next_attempt {
            continue;
        }
        entry.attempts += 1;
        // A panic in one tenant's heal (an assertion about data on disk) fails that attempt
        // only, and the backoff state of every tenant is kept.
        let attempt = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            tenant
                .heal()
                .map_err(|e| e.to_string())
                .and_then(|_| tenant.check_healthy().map_err(|e| e.to_string()))
        }));
        let result = attempt.unwrap_or_else(|_| Err("the heal panicked (see above)".to_owned()));
        match result {
            Ok(()) => {
                if let Some(was) = refusing.remove(&id) {
                    healed(runtime, id, &was);
                }
            }
            Err(error) => {
                if let Some(entry) = refusing.get_mut(&id) {
                    entry.backoff = (entry.backoff * 2).min(BACKOFF_MAX);
                    entry.next_attempt = Instant::now() + entry.backoff;
                    tracing::warn!(
                        tenant = %id,
                        %error,
                        attempt = entry.attempts,
                        next_attempt_in = ?entry.backoff,
                        "healing the tenant failed; it keeps refusing writes"
                    );
                }
            }
        }
    }
    refusing
}

fn healed(runtime: &Runtime, id: Uuid, was: &Refusing) {
    runtime.metrics.tenant_unhealthy(id, false);
    tracing::info!(
        tenant = %id,
        refused_for = ?was.since.elapsed(),
        attempts = was.attempts,
        "the tenant is healed and takes writes again, without a restart"
    );
}
