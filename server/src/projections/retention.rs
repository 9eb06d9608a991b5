//! The retention of projections' history (`annals:projections:historyRetention`): once a
//! minute, each tenant's projections have their history trimmed to the first event that
//! occurred within the retention (never past what the projection has processed), so the
//! states as of any point within it stay answerable and older points are refused.

use std::sync::Arc;
use std::time::Duration;

use annals_engine::Tenant;

use crate::blocking::blocking;
use crate::clock::now_ns;
use crate::projections::history::{first_after, processed};
use crate::runtime::Runtime;

/// How often the history is trimmed.
const EVERY: Duration = Duration::from_secs(60);

/// Trims every projection's history of every tenant to `retention` until the runtime stops.
pub(crate) async fn run(runtime: Arc<Runtime>, retention: Duration) {
    let mut stopping = runtime.stopping.clone();
    let retention_ns = i64::try_from(retention.as_nanos()).unwrap_or(i64::MAX);
    loop {
        for &tenant_id in runtime.tenant_ids() {
            let Ok(tenant) = runtime.tenant(tenant_id) else {
                continue;
            };
            let horizon_ns = now_ns().saturating_sub(retention_ns);
            match blocking(move || trim(&tenant, horizon_ns)).await {
                Ok(0) => {}
                Ok(removed) => tracing::info!(
                    tenant = %tenant_id,
                    removed,
                    "projection history older than the retention trimmed"
                ),
                Err(failure) => tracing::warn!(
                    tenant = %tenant_id,
                    reason = %failure.reason,
                    "trimming projection history failed; it is tried again later"
                ),
            }
        }
        tokio::select! {
            () = tokio::time::sleep(EVERY) => {}
            _ = stopping.changed() => return,
        }
    }
}

/// Trims a tenant's projections to the first event that occurred after `horizon_ns`.
fn trim(tenant: &Tenant, horizon_ns: i64) -> Result<u64, crate::api::failure::Failure> {
    let mut removed = 0;
    for (scope, projection, _) in tenant.projection_definitions()? {
        let floor =
            first_after(tenant, scope, horizon_ns)?.min(processed(tenant, scope, projection)?);
        removed += tenant.trim_projection_history(scope, projection, floor)?;
    }
    Ok(removed)
}
