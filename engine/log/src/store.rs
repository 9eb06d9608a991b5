//! The log store: a data directory of tenants, the I/O backend, and the sealer thread.
//!
//! Layout: `<data-dir>/LOCK` (held while open), `<data-dir>/tenants/<tenant>/logs/<scope>/`
//! with the segment files of one log (engine/log/FORMAT.md section 1).
//!
//! The sealer is one background thread per store; it seals full segments one at a time, so
//! sealing never takes more than one core, and its queue holds one small job per rolled
//! segment. It stops when the store drops; unsealed segments are queued again on reopen.
//!
//! The zeroer is a second background thread per store (unless `spare-segments` is 0): it keeps
//! spare segments zero-filled and synced for the next rolls, where the sealer's recycled files
//! do not (`spare.rs`).

use std::{
    collections::HashMap,
    path::{Path, PathBuf},
    sync::Arc,
    thread::JoinHandle,
};

use crossbeam_channel::{Receiver, Sender};
use parking_lot::{Condvar, Mutex, RwLock};

use crate::{
    config::LogConfig,
    error::{Error, Result},
    ids::TenantId,
    io::{select_backend, IoEngine, OpenMode},
    log::{PublishHook, SealJob},
    segment::cache::BlockCache,
    spare::Spares,
    tenant::TenantLogs,
};

/// A tenant directory renamed to this prefix is being deleted.
const DELETING_PREFIX: &str = ".deleting-";

/// The file inside a tenant's directory while an import fills it: a tenant holding it at open
/// is the remains of an interrupted import and is removed, so an import is visible only whole.
const IMPORTING_MARKER: &str = "IMPORTING";

/// What every tenant and log of a store shares.
pub(crate) struct Shared {
    pub(crate) io: Arc<dyn IoEngine>,
    pub(crate) config: Arc<LogConfig>,
    pub(crate) sealer: Option<SealQueue>,
    /// Spare segments for rolls (none when `spare-segments` is 0).
    pub(crate) spares: Option<Arc<Spares>>,
    pub(crate) on_publish: Option<PublishHook>,
    pub(crate) block_cache: Option<Arc<BlockCache>>,
}

impl std::fmt::Debug for Shared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Shared")
            .field("io", &self.io.name())
            .field("config", &self.config)
            .field("hook", &self.on_publish.is_some())
            .finish_non_exhaustive()
    }
}

/// Sealing progress, for `wait_for_sealing` and error reporting.
#[derive(Debug, Default)]
struct SealProgress {
    state: Mutex<SealState>,
    idle: Condvar,
}

#[derive(Debug, Default)]
struct SealState {
    /// Jobs sent and not yet finished (queued or running).
    queued: usize,
    failures: Vec<String>,
}

/// The sealer's queue as logs see it: sending counts the job before the sealer can see it,
/// so `wait_for_sealing` never mistakes a job in hand-over for no work.
#[derive(Debug, Clone)]
pub(crate) struct SealQueue {
    tx: Sender<SealJob>,
    progress: Arc<SealProgress>,
}

impl SealQueue {
    pub(crate) fn send(&self, job: SealJob) {
        self.progress.state.lock().queued += 1;
        if self.tx.send(job).is_err() {
            // The sealer is gone (store shutting down): the segment is sealed on next open.
            self.progress.state.lock().queued -= 1;
            self.progress.idle.notify_all();
        }
    }
}

/// An open log store: the logs of every tenant in one data directory.
#[derive(Debug)]
pub struct LogStore {
    shared: Arc<Shared>,
    tenants: RwLock<HashMap<TenantId, Arc<TenantLogs>>>,
    /// Tenants whose interrupted import was removed at open.
    interrupted_imports: Vec<TenantId>,
    /// Dropping it tells the sealer to stop.
    stop_tx: Option<Sender<()>>,
    seal_progress: Arc<SealProgress>,
    sealer_thread: Option<JoinHandle<()>>,
    zeroer_thread: Option<JoinHandle<()>>,
    /// A receiver kept to see how many seal jobs are queued.
    seal_queue: Receiver<SealJob>,
    _lock: Box<dyn std::any::Any + Send + Sync>,
}

impl LogStore {
    /// Opens (or creates) the store in `config.data_dir` with the configured I/O backend.
    pub fn open(config: LogConfig) -> Result<LogStore> {
        let io = select_backend(config.io_backend)?;
        Self::open_with_io(config, io)
    }

    /// Opens the store on a given I/O backend (tests use the fault-injecting one).
    pub fn open_with_io(config: LogConfig, io: Arc<dyn IoEngine>) -> Result<LogStore> {
        Self::open_with_hook(config, io, None)
    }

    /// Opens the store with a hook that every log calls when it publishes new records
    /// (annals-engine's indexer uses it to learn which logs have grown).
    pub fn open_with_hook(
        config: LogConfig,
        io: Arc<dyn IoEngine>,
        on_publish: Option<PublishHook>,
    ) -> Result<LogStore> {
        config.validate()?;
        let data = config.data_dir.clone();
        let tenants_dir = data.join("tenants");
        if !io.exists(&tenants_dir) {
            io.create_dir_all(&tenants_dir)
                .map_err(|e| Error::io("create dir", &data, e))?;
            // Make the new directories' entries durable up to the data directory's parent.
            io.sync_dir(&data)
                .map_err(|e| Error::io("fsync dir", &data, e))?;
            if let Some(parent) = data.parent().filter(|p| !p.as_os_str().is_empty()) {
                io.sync_dir(parent)
                    .map_err(|e| Error::io("fsync dir", parent, e))?;
            }
        }
        let lock_path = data.join("LOCK");
        let lock = io
            .lock_exclusive(&lock_path)
            .map_err(|e| Error::io("lock", &lock_path, e))?;
        // Unbounded, but holds one small job per rolled segment.
        let (tx, rx) = crossbeam_channel::unbounded::<SealJob>();
        let (stop_tx, stop_rx) = crossbeam_channel::bounded::<()>(0);
        let seal_progress = Arc::new(SealProgress::default());
        let sealer_thread = if config.seal_enabled {
            let rx = rx.clone();
            let progress = Arc::clone(&seal_progress);
            Some(
                std::thread::Builder::new()
                    .name("annals-sealer".into())
                    .spawn(move || sealer_loop(&rx, &stop_rx, &progress))
                    .map_err(|e| Error::io("spawn sealer thread", &data, e))?,
            )
        } else {
            None
        };
        let (spares, zeroer_thread) = if config.spare_segments > 0 {
            let spares = Spares::open(Arc::clone(&io), &config)?;
            let zeroer = Arc::clone(&spares);
            let handle = std::thread::Builder::new()
                .name("annals-zeroer".into())
                .spawn(move || zeroer.run())
                .map_err(|e| Error::io("spawn zeroer thread", &data, e))?;
            (Some(spares), Some(handle))
        } else {
            (None, None)
        };
        let sealer = config.seal_enabled.then(|| SealQueue {
            tx: tx.clone(),
            progress: Arc::clone(&seal_progress),
        });
        let block_cache = BlockCache::new(config.read_cache_bytes.as_u64());
        let shared = Arc::new(Shared {
            io,
            config: Arc::new(config),
            sealer,
            spares,
            on_publish,
            block_cache,
        });
        let mut store = LogStore {
            shared,
            tenants: RwLock::new(HashMap::new()),
            interrupted_imports: Vec::new(),
            stop_tx: Some(stop_tx),
            seal_progress,
            sealer_thread,
            zeroer_thread,
            seal_queue: rx,
            _lock: lock,
        };
        store.interrupted_imports = store.load_tenants()?;
        Ok(store)
    }

    fn tenants_dir(&self) -> PathBuf {
        self.shared.config.data_dir.join("tenants")
    }

    fn load_tenants(&self) -> Result<Vec<TenantId>> {
        let dir = self.tenants_dir();
        let names = self
            .shared
            .io
            .read_dir(&dir)
            .map_err(|e| Error::io("read dir", &dir, e))?;
        let mut tenants = self.tenants.write();
        let mut interrupted = Vec::new();
        for name in names {
            if let Some(rest) = name.strip_prefix(DELETING_PREFIX) {
                // A delete that a crash interrupted after its rename: finish it.
                tracing::info!(tenant = rest, "finishing an interrupted tenant delete");
                let path = dir.join(&name);
                self.shared
                    .io
                    .remove_dir_all(&path)
                    .map_err(|e| Error::io("remove dir", &path, e))?;
                continue;
            }
            let id: TenantId = name.parse().map_err(|_| Error::Corruption {
                path: dir.join(&name),
                offset: 0,
                what: "a tenant directory must be named by a UUID".into(),
            })?;
            let path = dir.join(&name);
            if self.shared.io.exists(&path.join(IMPORTING_MARKER)) {
                tracing::warn!(tenant = %id, "removing the remains of an interrupted import");
                self.remove_dir_durably(&path, id)?;
                interrupted.push(id);
                continue;
            }
            tenants.insert(
                id,
                Arc::new(TenantLogs::new(
                    id,
                    dir.join(&name),
                    Arc::clone(&self.shared),
                )),
            );
        }
        Ok(interrupted)
    }

    /// Waits until the zeroer has made the spare segments that rolls asked for so far
    /// (`spare-segments`); returns at once when there are none. For tests and benchmarks that
    /// want rolls to find their spare.
    pub fn wait_for_spares(&self) {
        if let Some(spares) = &self.shared.spares {
            spares.wait_idle();
        }
    }

    /// The configuration in force.
    pub fn config(&self) -> &LogConfig {
        &self.shared.config
    }

    /// The I/O backend's name (`io_uring`, `std` or `fault`).
    pub fn io_backend(&self) -> &'static str {
        self.shared.io.name()
    }

    /// Creates a tenant; fails if it exists.
    pub fn create_tenant(&self, id: TenantId) -> Result<Arc<TenantLogs>> {
        self.create(id, false)
    }

    /// Creates a tenant that an import is about to fill: until [`LogStore::finish_import`],
    /// the next open removes it (an interrupted import leaves nothing behind). Fails if the
    /// tenant exists.
    pub fn create_tenant_for_import(&self, id: TenantId) -> Result<Arc<TenantLogs>> {
        self.create(id, true)
    }

    /// Marks a tenant created by [`LogStore::create_tenant_for_import`] complete, durably:
    /// from here on it opens like any other. The caller has made its logs durable first.
    pub fn finish_import(&self, id: TenantId) -> Result<()> {
        let tenant = self.tenant(id)?;
        let marker = tenant.dir().join(IMPORTING_MARKER);
        let io = &self.shared.io;
        io.remove_file(&marker)
            .map_err(|e| Error::io("remove", &marker, e))?;
        io.sync_dir(tenant.dir())
            .map_err(|e| Error::io("fsync dir", tenant.dir(), e))
    }

    /// Tenants whose interrupted import this open removed.
    pub fn interrupted_imports(&self) -> &[TenantId] {
        &self.interrupted_imports
    }

    fn create(&self, id: TenantId, importing: bool) -> Result<Arc<TenantLogs>> {
        let mut tenants = self.tenants.write();
        if tenants.contains_key(&id) {
            return Err(Error::TenantExists(id));
        }
        let dir = self.tenants_dir().join(id.to_string());
        let io = &self.shared.io;
        io.create_dir_all(&dir.join("logs"))
            .map_err(|e| Error::io("create dir", &dir, e))?;
        if importing {
            // Durable before the directory's entry is: a crash can leave an empty tenant
            // without the marker, never a partly imported one.
            let marker = dir.join(IMPORTING_MARKER);
            io.open(&marker, OpenMode::CreateNew)
                .and_then(|file| {
                    file.write_all_at_and_sync(b"an import is filling this tenant\n", 0)
                })
                .map_err(|e| Error::io("create", &marker, e))?;
        }
        io.sync_dir(&dir)
            .map_err(|e| Error::io("fsync dir", &dir, e))?;
        let parent = self.tenants_dir();
        io.sync_dir(&parent)
            .map_err(|e| Error::io("fsync dir", &parent, e))?;
        let tenant = Arc::new(TenantLogs::new(id, dir, Arc::clone(&self.shared)));
        tenants.insert(id, Arc::clone(&tenant));
        Ok(tenant)
    }

    /// The tenant `id`, or [`Error::TenantUnknown`].
    pub fn tenant(&self, id: TenantId) -> Result<Arc<TenantLogs>> {
        self.tenants
            .read()
            .get(&id)
            .cloned()
            .ok_or(Error::TenantUnknown(id))
    }

    /// The tenant `id`, created if missing.
    pub fn tenant_or_create(&self, id: TenantId) -> Result<Arc<TenantLogs>> {
        match self.tenant(id) {
            Err(Error::TenantUnknown(_)) => match self.create_tenant(id) {
                Err(Error::TenantExists(_)) => self.tenant(id),
                other => other,
            },
            other => other,
        }
    }

    /// Deletes a tenant and every log of it. The directory is first renamed out of the way
    /// (durably), so a crash leaves either the whole tenant or none of it; the next open
    /// finishes removing a renamed directory. Handles to the tenant's logs that callers still
    /// hold keep their open files but no longer reach anything on disk; the caller stops
    /// using them. Waits for running seals to finish first.
    pub fn delete_tenant(&self, id: TenantId) -> Result<()> {
        let mut tenants = self.tenants.write();
        if !tenants.contains_key(&id) {
            return Err(Error::TenantUnknown(id));
        }
        drop(tenants);
        // A seal of one of its segments would otherwise race the removal.
        self.wait_for_sealing();
        tenants = self.tenants.write();
        let Some(tenant) = tenants.remove(&id) else {
            return Err(Error::TenantUnknown(id));
        };
        let doomed = match self.rename_for_removal(tenant.dir(), id) {
            Ok(doomed) => doomed,
            Err(e) => {
                tenants.insert(id, tenant);
                return Err(e);
            }
        };
        drop(tenants);
        if let Some(spares) = &self.shared.spares {
            spares.forget_tenant(id);
        }
        self.remove_renamed(&doomed)
    }

    /// Removes a tenant's directory so that a crash leaves all of it or none: renamed out of
    /// the way durably first, removed after (the next open finishes a renamed one).
    fn remove_dir_durably(&self, dir: &Path, id: TenantId) -> Result<()> {
        let doomed = self.rename_for_removal(dir, id)?;
        self.remove_renamed(&doomed)
    }

    fn rename_for_removal(&self, dir: &Path, id: TenantId) -> Result<PathBuf> {
        let parent = self.tenants_dir();
        let doomed = parent.join(format!("{DELETING_PREFIX}{id}"));
        let io = &self.shared.io;
        io.rename(dir, &doomed)
            .map_err(|e| Error::io("rename", dir, e))?;
        io.sync_dir(&parent)
            .map_err(|e| Error::io("fsync dir", &parent, e))?;
        Ok(doomed)
    }

    fn remove_renamed(&self, doomed: &Path) -> Result<()> {
        let parent = self.tenants_dir();
        let io = &self.shared.io;
        io.remove_dir_all(doomed)
            .map_err(|e| Error::io("remove dir", doomed, e))?;
        io.sync_dir(&parent)
            .map_err(|e| Error::io("fsync dir", &parent, e))
    }

    /// Every tenant, sorted.
    pub fn tenants(&self) -> Vec<TenantId> {
        let mut ids: Vec<TenantId> = self.tenants.read().keys().copied().collect();
        ids.sort();
        ids
    }

    /// Blocks until every queued seal has run; returns the failures seen so far.
    pub fn wait_for_sealing(&self) -> Vec<String> {
        let mut state = self.seal_progress.state.lock();
        while state.queued > 0 {
            self.seal_progress
                .idle
                .wait_for(&mut state, std::time::Duration::from_millis(50));
        }
        state.failures.clone()
    }
}

/// The sealer's nice value: sealing (compressing a full segment) is background work that
/// yields the cores to appends and reads when they are busy, as RocksDB's compactions run in
/// a low-priority pool. Raw segments are durable and readable as they are; sealing only
/// catches up later.
const SEALER_NICE: libc::c_int = 10;

/// Lowers the calling thread's scheduling priority to [`SEALER_NICE`] (best effort: a thread
/// that cannot lower it runs at the normal priority).
#[expect(
    unsafe_code,
    reason = "setpriority on the calling thread: no memory is touched"
)]
fn lower_this_threads_priority() {
    // SAFETY: gettid and setpriority take plain integers and touch no memory of ours; on
    // Linux, PRIO_PROCESS with a thread id sets that one thread's nice value.
    let result = unsafe {
        let tid = libc::gettid();
        libc::setpriority(libc::PRIO_PROCESS, tid.unsigned_abs(), SEALER_NICE)
    };
    if result != 0 {
        tracing::debug!(
            error = %std::io::Error::last_os_error(),
            "the sealer runs at the normal priority"
        );
    }
}

fn sealer_loop(rx: &Receiver<SealJob>, stop: &Receiver<()>, progress: &SealProgress) {
    lower_this_threads_priority();
    loop {
        let job = crossbeam_channel::select! {
            recv(stop) -> _ => return,
            recv(rx) -> job => match job {
                Ok(job) => job,
                Err(_) => return,
            },
        };
        let result = job.log.seal(&job.raw);
        let mut state = progress.state.lock();
        state.queued -= 1;
        if let Err(e) = result {
            // The raw segment stays in place and readable; the next open queues it again.
            tracing::warn!(error = %e, "sealing a segment failed");
            state.failures.push(e.to_string());
        }
        drop(state);
        progress.idle.notify_all();
    }
}

impl Drop for LogStore {
    fn drop(&mut self) {
        // Disconnecting the stop channel ends the sealer after the seal it is running, if any;
        // queued jobs are dropped and their segments are queued again on the next open. The
        // zeroer stops after the chunk it is writing; the next open deletes the spares.
        if let Some(spares) = &self.shared.spares {
            spares.stop();
        }
        self.stop_tx = None;
        if let Some(handle) = self.sealer_thread.take() {
            let _ = handle.join();
        }
        if let Some(handle) = self.zeroer_thread.take() {
            let _ = handle.join();
        }
        while self.seal_queue.try_recv().is_ok() {}
    }
}
