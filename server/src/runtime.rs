//! What every service shares: the engine, the configured tenants' handles, the platform
//! identity, the last handshake's build results, the metrics, and the event horizon's two
//! sides.
//!
//! Tenants are the configured ones, fixed at startup (as in the original): each is opened (and
//! created on first start) before the listeners open, so a call never waits for a tenant's
//! index to catch up, and a call for any other tenant is refused without touching disk.

use std::collections::HashMap;
use std::sync::Arc;

use annals_engine::{Engine, Tenant, TenantId};
use annals_replication::{Consumer, Producer};
use parking_lot::Mutex;
use tokio::sync::watch;
use uuid::Uuid;

use crate::api::failure::Failure;
use crate::config::RuntimeConfig;
use crate::metrics::Metrics;
use crate::processing::Processors;
use crate::proto::dolittle::runtime::client::BuildResults;

/// The runtime's shared state.
pub(crate) struct Runtime {
    pub(crate) engine: Arc<Engine>,
    pub(crate) config: RuntimeConfig,
    tenants: Arc<HashMap<Uuid, Arc<Tenant>>>,
    pub(crate) metrics: Metrics,
    /// What the console's plots show (sampled by `console::plots::run`).
    pub(crate) plots: crate::console::plots::Plots,
    /// The event horizon: this runtime's subscriptions and the public streams it serves.
    pub(crate) horizon: Horizon,
    /// The connected event handlers and filters.
    pub(crate) processors: Arc<Processors>,
    /// What the last head to handshake reported of its build (management Client service).
    pub(crate) build_results: Mutex<Option<BuildResults>>,
    /// Turns true when shutdown begins: long-running work (batch streams) ends early.
    pub(crate) stopping: watch::Receiver<bool>,
    /// The free space of the data directory's file system (`disk`).
    pub(crate) disk: crate::disk::DiskSpace,
    /// FetchForAggregate answers kept encoded (`services::fetch_answers`).
    pub(crate) fetch_answers: crate::services::fetch_answers::FetchAnswers,
}

/// The event horizon's two sides.
pub(crate) struct Horizon {
    /// Subscriptions of this runtime's tenants to other microservices' public streams.
    pub(crate) consumer: Arc<Consumer>,
    /// This runtime's public streams, served to other runtimes on the public port.
    pub(crate) producer: Producer,
}

impl Runtime {
    /// Opens (or creates) every configured tenant.
    pub(crate) fn open(
        engine: Arc<Engine>,
        config: RuntimeConfig,
        stopping: watch::Receiver<bool>,
    ) -> annals_engine::Result<Runtime> {
        let mut tenants = HashMap::new();
        for &id in &config.tenants {
            let tenant = engine.tenant_or_create(TenantId(id))?;
            let recovery = tenant.index_recovery();
            tracing::info!(tenant = %id, index = ?recovery, "tenant ready");
            tenants.insert(id, tenant);
        }
        let unconfigured: Vec<String> = engine
            .tenants()
            .into_iter()
            .filter(|t| !tenants.contains_key(&t.0))
            .map(|t| t.0.to_string())
            .collect();
        if !unconfigured.is_empty() {
            tracing::warn!(
                tenants = %unconfigured.join(", "),
                "the data directory holds tenants that are not configured; their data is kept but not served"
            );
        }
        let mut logs = Vec::new();
        for (&id, tenant) in &tenants {
            logs.push((id, tenant.event_log()?));
        }
        logs.sort_by_key(|(id, _)| *id);
        let processors = Arc::new(Processors::default());
        let tenants = Arc::new(tenants);
        let horizon_config = Arc::new(config.horizon.clone());
        let horizon = Horizon {
            consumer: Arc::new(Consumer::new(
                Arc::clone(&tenants),
                Arc::clone(&horizon_config),
                config.platform.microservice_id,
                config.platform.environment.clone(),
                stopping.clone(),
            )),
            producer: Producer::new(
                config.platform.clone(),
                Arc::clone(&tenants),
                horizon_config,
                stopping.clone(),
            ),
        };
        let metrics = Metrics::new(
            logs,
            Arc::clone(&processors),
            (Arc::clone(&horizon.consumer), horizon.producer.clone()),
        );
        for (id, alias) in engine.event_type_aliases()? {
            metrics.dolittle.event_type_alias(id, &alias);
        }
        for (id, alias) in engine.aggregate_root_aliases()? {
            metrics.dolittle.aggregate_root_alias(id, &alias);
        }
        let fetch_answers =
            crate::services::fetch_answers::FetchAnswers::new(config.fetch_cache_bytes);
        Ok(Runtime {
            engine,
            config,
            tenants,
            horizon,
            metrics,
            plots: crate::console::plots::Plots::default(),
            processors,
            build_results: Mutex::new(None),
            stopping,
            disk: crate::disk::DiskSpace::default(),
            fetch_answers,
        })
    }

    /// The handle of a configured tenant.
    pub(crate) fn tenant(&self, id: Uuid) -> Result<Arc<Tenant>, Failure> {
        self.tenants
            .get(&id)
            .cloned()
            .ok_or_else(|| Failure::unknown_tenant(id, &self.config.tenants))
    }

    /// The configured tenants, in id order.
    pub(crate) fn tenant_ids(&self) -> &[Uuid] {
        &self.config.tenants
    }
}
