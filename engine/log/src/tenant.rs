//! A tenant's logs: its own directory, its default event log and its scoped logs.
//!
//! A `TenantLogs` handle only ever resolves paths below its own directory, and every segment
//! header names the tenant, so no call through one tenant's handle can reach another's data.

use std::{collections::HashMap, path::PathBuf, sync::Arc};

use parking_lot::Mutex;

use crate::{
    error::{Error, Result},
    ids::{ScopeId, TenantId},
    log::Log,
    store::Shared,
};

/// One tenant of a log store: its directory and its logs.
#[derive(Debug)]
pub struct TenantLogs {
    id: TenantId,
    dir: PathBuf,
    shared: Arc<Shared>,
    /// Open logs by scope; opened on first use.
    logs: Mutex<HashMap<ScopeId, Arc<Log>>>,
}

impl TenantLogs {
    pub(crate) fn new(id: TenantId, dir: PathBuf, shared: Arc<Shared>) -> Self {
        Self {
            id,
            dir,
            shared,
            logs: Mutex::new(HashMap::new()),
        }
    }

    /// The tenant's id.
    pub fn id(&self) -> TenantId {
        self.id
    }

    /// The tenant's directory.
    pub fn dir(&self) -> &std::path::Path {
        &self.dir
    }

    fn logs_dir(&self) -> PathBuf {
        self.dir.join("logs")
    }

    /// The tenant's event log (the default scope).
    pub fn event_log(&self) -> Result<Arc<Log>> {
        self.log(ScopeId::DEFAULT)
    }

    /// The log of `scope`, opened (and recovered) on first use, created if new.
    pub fn log(&self, scope: ScopeId) -> Result<Arc<Log>> {
        let mut logs = self.logs.lock();
        if let Some(log) = logs.get(&scope) {
            return Ok(Arc::clone(log));
        }
        let logs_dir = self.logs_dir();
        let dir = logs_dir.join(scope.to_string());
        let existed = self.shared.io.exists(&dir);
        let log = Log::open(&self.shared, dir, self.id, scope)?;
        if !existed {
            self.shared
                .io
                .sync_dir(&logs_dir)
                .map_err(|e| Error::io("fsync dir", &logs_dir, e))?;
        }
        logs.insert(scope, Arc::clone(&log));
        Ok(log)
    }

    /// The logs opened so far (each scope's log opens on first use).
    pub fn open_logs(&self) -> Vec<Arc<Log>> {
        self.logs.lock().values().cloned().collect()
    }

    /// The scopes that have a log on disk.
    pub fn scopes(&self) -> Result<Vec<ScopeId>> {
        let dir = self.logs_dir();
        if !self.shared.io.exists(&dir) {
            return Ok(Vec::new());
        }
        let names = self
            .shared
            .io
            .read_dir(&dir)
            .map_err(|e| Error::io("read dir", &dir, e))?;
        names
            .iter()
            .map(|n| {
                n.parse::<ScopeId>().map_err(|_| Error::Corruption {
                    path: dir.join(n),
                    offset: 0,
                    what: "a scope directory must be named by a UUID".into(),
                })
            })
            .collect()
    }
}
