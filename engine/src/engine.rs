//! The engine: the log store, the RocksDB index beside it, the tenants, and the indexer.
//!
//! Layout: `<data-dir>/LOCK`, `<data-dir>/tenants/<tenant>/logs/<scope>/` (the logs, see
//! engine/log/FORMAT.md) and `<data-dir>/index/` (RocksDB: one column family per tenant).
//!
//! The indexer is one background thread per engine. Every log publish marks its tenant dirty
//! (the log's publish hook); the indexer takes one step (up to `index.indexer-batch-events`
//! events) per dirty tenant in turn, so a busy tenant never starves a quiet one, and writes
//! the index entries together with the new recovery point in one RocksDB batch.

use std::{
    collections::{HashMap, HashSet},
    sync::Arc,
    thread::JoinHandle,
};

use annals_log::{
    select_backend, Error as LogError, IoEngine, LogStore, PublishHook, ScopeId, TenantId,
};
use parking_lot::{Condvar, Mutex, RwLock};
use uuid::Uuid;

use crate::{
    config::EngineConfig,
    db::{self, bad_state, rocks, tenant_cf_name, Db, DbOptions, IndexOpenReport, Wal},
    error::{Error, Result},
    keys,
    tenant::Tenant,
};

/// Tenants with unindexed records, and whether the engine is stopping.
#[derive(Debug, Default)]
struct Dirty {
    tenants: HashSet<TenantId>,
    stop: bool,
}

#[derive(Debug, Default)]
pub(crate) struct Wakeups {
    dirty: Mutex<Dirty>,
    changed: Condvar,
}

impl Wakeups {
    fn mark(&self, tenant: TenantId) {
        let mut dirty = self.dirty.lock();
        if dirty.tenants.insert(tenant) {
            self.changed.notify_one();
        }
    }
}

/// What the tenants of an engine share.
pub(crate) struct Shared {
    pub(crate) db: Db,
    pub(crate) config: Arc<EngineConfig>,
    wakeups: Arc<Wakeups>,
    #[cfg(any(test, feature = "test-util"))]
    pub(crate) indexer_held: std::sync::atomic::AtomicBool,
}

impl Shared {
    pub(crate) fn wake_indexer(&self, tenant: TenantId) {
        self.wakeups.mark(tenant);
    }
}

struct Inner {
    store: LogStore,
    shared: Arc<Shared>,
    options: DbOptions,
    tenants: RwLock<HashMap<TenantId, Arc<Tenant>>>,
    /// Serialises opening, creating and deleting tenants.
    lifecycle: Mutex<()>,
    report: IndexOpenReport,
}

/// An open engine: a data directory of tenants, each with its logs and its column family of
/// indexes and state.
pub struct Engine {
    inner: Arc<Inner>,
    indexer: Option<JoinHandle<()>>,
}

impl std::fmt::Debug for Engine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Engine")
            .field("data_dir", &self.inner.shared.config.log.data_dir)
            .field("tenants", &self.inner.store.tenants().len())
            .finish_non_exhaustive()
    }
}

impl Engine {
    /// Opens (or creates) the engine in `config.data_dir` with the configured I/O backend.
    pub fn open(config: EngineConfig) -> Result<Engine> {
        let io = select_backend(config.log.io_backend)?;
        Self::open_with_io(config, io)
    }

    /// Opens the engine on a given I/O backend for the logs (RocksDB does its own I/O).
    pub fn open_with_io(config: EngineConfig, io: Arc<dyn IoEngine>) -> Result<Engine> {
        config.validate()?;
        let wakeups = Arc::new(Wakeups::default());
        let hook: PublishHook = {
            let wakeups = Arc::clone(&wakeups);
            Arc::new(move |tenant, scope, _end| {
                if scope == ScopeId::DEFAULT {
                    wakeups.mark(tenant);
                }
            })
        };
        let store = LogStore::open_with_hook(config.log.clone(), io, Some(hook))?;
        let options = DbOptions::new(&config.index);
        let (db, report) = db::open(&config, &options, &store.tenants())?;
        let shared = Arc::new(Shared {
            db,
            config: Arc::new(config),
            wakeups: Arc::clone(&wakeups),
            #[cfg(any(test, feature = "test-util"))]
            indexer_held: std::sync::atomic::AtomicBool::new(false),
        });
        let inner = Arc::new(Inner {
            store,
            shared,
            options,
            tenants: RwLock::new(HashMap::new()),
            lifecycle: Mutex::new(()),
            report,
        });
        let indexer = {
            let inner = Arc::clone(&inner);
            std::thread::Builder::new()
                .name("annals-indexer".into())
                .spawn(move || indexer_loop(&inner, &wakeups))
        }
        .map_err(|e| LogError::Io {
            op: "spawn indexer thread",
            path: inner.shared.config.log.data_dir.clone(),
            source: e,
        })?;
        Ok(Engine {
            inner,
            indexer: Some(indexer),
        })
    }

    /// The configuration in force.
    pub fn config(&self) -> &EngineConfig {
        &self.inner.shared.config
    }

    /// The log I/O backend's name (`io_uring`, `std` or `fault`).
    pub fn io_backend(&self) -> &'static str {
        self.inner.store.io_backend()
    }

    /// How the index was opened (created, damaged and moved aside, orphans dropped).
    pub fn index_open_report(&self) -> &IndexOpenReport {
        &self.inner.report
    }

    /// Every tenant, sorted.
    pub fn tenants(&self) -> Vec<TenantId> {
        self.inner.store.tenants()
    }

    /// Creates a tenant; fails with [`LogError::TenantExists`] if it exists.
    pub fn create_tenant(&self, id: TenantId) -> Result<Arc<Tenant>> {
        self.create(id, false)
    }

    /// Creates a tenant that an import is about to fill, like [`Engine::create_tenant`], but
    /// marked: until [`Engine::finish_import`] marks it complete, the next open removes it
    /// whole (its logs, indexes and state), so an interrupted import leaves no half-written
    /// tenant. An import that gives up deletes it with [`Engine::delete_tenant`].
    pub fn create_tenant_for_import(&self, id: TenantId) -> Result<Arc<Tenant>> {
        self.create(id, true)
    }

    /// Marks an imported tenant complete, durably, once every log and state it holds is
    /// durable (the index is derived and rebuilt from the logs when behind): from here on it
    /// opens like any other tenant.
    pub fn finish_import(&self, id: TenantId) -> Result<()> {
        let _lifecycle = self.inner.lifecycle.lock();
        self.inner
            .shared
            .db
            .flush_wal(true)
            .map_err(rocks("sync the write-ahead log"))?;
        Ok(self.inner.store.finish_import(id)?)
    }

    /// Tenants whose interrupted import was removed when the engine opened.
    pub fn interrupted_imports(&self) -> &[TenantId] {
        self.inner.store.interrupted_imports()
    }

    fn create(&self, id: TenantId, importing: bool) -> Result<Arc<Tenant>> {
        let _lifecycle = self.inner.lifecycle.lock();
        // The directory first (durably), then the family: a crash between leaves a directory
        // without a family, which the next open completes.
        let logs = if importing {
            self.inner.store.create_tenant_for_import(id)?
        } else {
            self.inner.store.create_tenant(id)?
        };
        let name = tenant_cf_name(id);
        self.inner
            .shared
            .db
            .create_cf(&name, &self.inner.options.family)
            .map_err(rocks("create column family"))?;
        self.publish(id, name, logs)
    }

    /// The tenant `id` (opened, and its index brought up to its log, on first use), or
    /// [`LogError::TenantUnknown`].
    pub fn tenant(&self, id: TenantId) -> Result<Arc<Tenant>> {
        if let Some(tenant) = self.inner.tenants.read().get(&id) {
            return Ok(Arc::clone(tenant));
        }
        let _lifecycle = self.inner.lifecycle.lock();
        if let Some(tenant) = self.inner.tenants.read().get(&id) {
            return Ok(Arc::clone(tenant));
        }
        let logs = self.inner.store.tenant(id)?;
        self.publish(id, tenant_cf_name(id), logs)
    }

    /// The tenant `id`, created if missing.
    pub fn tenant_or_create(&self, id: TenantId) -> Result<Arc<Tenant>> {
        match self.tenant(id) {
            Err(Error::Log(LogError::TenantUnknown(_))) => match self.create_tenant(id) {
                Err(Error::Log(LogError::TenantExists(_))) => self.tenant(id),
                other => other,
            },
            other => other,
        }
    }

    fn publish(
        &self,
        id: TenantId,
        cf_name: String,
        logs: Arc<annals_log::TenantLogs>,
    ) -> Result<Arc<Tenant>> {
        let tenant = Arc::new(Tenant::open(
            id,
            cf_name,
            Arc::clone(&self.inner.shared),
            logs,
        )?);
        self.inner.tenants.write().insert(id, Arc::clone(&tenant));
        // Commits that raced the catch-up are picked up by the indexer from here on.
        self.inner.shared.wake_indexer(id);
        Ok(tenant)
    }

    /// Deletes a tenant: its logs, its indexes and its state. Handles to it that callers still
    /// hold fail with [`LogError::TenantUnknown`] from then on.
    pub fn delete_tenant(&self, id: TenantId) -> Result<()> {
        let _lifecycle = self.inner.lifecycle.lock();
        let removed = self.inner.tenants.write().remove(&id);
        if let Some(tenant) = &removed {
            tenant.mark_deleted();
            tenant.quiesce();
        }
        // The directory first: a crash after it leaves a family without a directory, which
        // the next open drops.
        self.inner.store.delete_tenant(id)?;
        self.inner
            .shared
            .db
            .drop_cf(&tenant_cf_name(id))
            .map_err(rocks("drop column family"))
    }

    /// Blocks until every queued seal has run; returns the failures seen so far.
    pub fn wait_for_sealing(&self) -> Vec<String> {
        self.inner.store.wait_for_sealing()
    }

    /// Registers (or replaces) the alias of an event type; durable when it returns.
    pub fn register_event_type_alias(&self, event_type: Uuid, alias: &str) -> Result<()> {
        self.put_alias(keys::EVENT_TYPE_ALIAS, event_type, alias)
    }

    /// Registers (or replaces) the alias of an aggregate root; durable when it returns.
    pub fn register_aggregate_root_alias(&self, aggregate_root: Uuid, alias: &str) -> Result<()> {
        self.put_alias(keys::AGGREGATE_ROOT_ALIAS, aggregate_root, alias)
    }

    /// Every event type alias, by id.
    pub fn event_type_aliases(&self) -> Result<Vec<(Uuid, String)>> {
        self.aliases(keys::EVENT_TYPE_ALIAS)
    }

    /// Every aggregate root alias, by id.
    pub fn aggregate_root_aliases(&self) -> Result<Vec<(Uuid, String)>> {
        self.aliases(keys::AGGREGATE_ROOT_ALIAS)
    }

    fn put_alias(&self, kind: u8, id: Uuid, alias: &str) -> Result<()> {
        self.inner
            .shared
            .db
            .put_opt(
                keys::alias(kind, id),
                alias.as_bytes(),
                &Wal::Synced.options(),
            )
            .map_err(rocks("write alias"))
    }

    fn aliases(&self, kind: u8) -> Result<Vec<(Uuid, String)>> {
        let db = &self.inner.shared.db;
        let default = db
            .cf_handle(rocksdb::DEFAULT_COLUMN_FAMILY_NAME)
            .ok_or_else(|| Error::Index {
                op: "read aliases",
                detail: "the default column family is missing".into(),
            })?;
        db::scan(db, &default, &[kind], &[kind], usize::MAX)?
            .into_iter()
            .map(|(k, v)| {
                let id = k
                    .get(1..17)
                    .and_then(|b| Uuid::from_slice(b).ok())
                    .ok_or_else(|| bad_state(&k, "an alias key holds a 16-byte id"))?;
                let alias = String::from_utf8(v).map_err(|_| bad_state(&k, "an alias is UTF-8"))?;
                Ok((id, alias))
            })
            .collect()
    }

    #[cfg(any(test, feature = "test-util"))]
    pub(crate) fn shared(&self) -> &Shared {
        &self.inner.shared
    }

    /// Waits for every index step under way to end.
    #[cfg(any(test, feature = "test-util"))]
    pub(crate) fn quiesce_indexer(&self) {
        let tenants: Vec<Arc<Tenant>> = self.inner.tenants.read().values().cloned().collect();
        for tenant in tenants {
            tenant.quiesce();
        }
    }
}

fn indexer_loop(inner: &Inner, wakeups: &Wakeups) {
    loop {
        let batch: Vec<TenantId> = {
            let mut dirty = wakeups.dirty.lock();
            while dirty.tenants.is_empty() && !dirty.stop {
                wakeups.changed.wait(&mut dirty);
            }
            if dirty.stop {
                return;
            }
            dirty.tenants.drain().collect()
        };
        #[cfg(any(test, feature = "test-util"))]
        if inner
            .shared
            .indexer_held
            .load(std::sync::atomic::Ordering::Acquire)
        {
            // Held by a test: the work stays marked for when it is released.
            let mut dirty = wakeups.dirty.lock();
            dirty.tenants.extend(batch);
            wakeups
                .changed
                .wait_for(&mut dirty, std::time::Duration::from_millis(20));
            continue;
        }
        for id in batch {
            let Some(tenant) = inner.tenants.read().get(&id).cloned() else {
                // Not opened yet: opening catches up with the log itself.
                continue;
            };
            match tenant.background_index_step() {
                Ok(true) => wakeups.mark(id),
                Ok(false) | Err(Error::Log(LogError::TenantUnknown(_))) => {}
                Err(e) => {
                    tracing::error!(tenant = %id, error = %e, "indexing failed; commits for aggregates and fetches of this tenant fail until it is reopened");
                }
            }
        }
    }
}

impl Drop for Engine {
    fn drop(&mut self) {
        self.inner.shared.wakeups.dirty.lock().stop = true;
        self.inner.shared.wakeups.changed.notify_all();
        if let Some(handle) = self.indexer.take() {
            let _ = handle.join();
        }
        self.inner.tenants.write().clear();
    }
}
