//! The RocksDB database under `<data-dir>/index/`: one column family per tenant
//! (`tenant-<uuid>`) and the default family for engine-wide entries (aliases).
//!
//! Every family shares one WAL, one block cache and one write-buffer budget (RocksDB's
//! write-buffer manager), and each family's memtable is small, so a thousand tenants cost a
//! bounded amount of memory. Index and filter blocks live in the shared cache instead of
//! being pinned per table, for the same reason.

use std::path::{Path, PathBuf};

use annals_log::{Error as LogError, TenantId};
use rocksdb::{
    BlockBasedOptions, Cache, ColumnFamilyDescriptor, DBCompressionType, DBWithThreadMode,
    LruCacheOptions, MultiThreaded, Options, WriteBufferManager, WriteOptions,
};

use crate::{
    config::{EngineConfig, IndexConfig, IndexDamage},
    error::{Error, Result},
};

/// The database type: column families can be created and dropped through a shared handle.
pub(crate) type Db = DBWithThreadMode<MultiThreaded>;

const TENANT_CF_PREFIX: &str = "tenant-";

/// Maps a RocksDB error to the engine's.
pub(crate) fn rocks(op: &'static str) -> impl FnOnce(rocksdb::Error) -> Error {
    move |e| Error::Index {
        op,
        detail: e.into_string(),
    }
}

/// How a write reaches the disk, chosen by whether the log can rebuild what it writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Wal {
    /// Keys the log cannot rebuild (processing state, stream entries and ends, aliases, the
    /// index format stamp): written to the WAL, which is synced before the write returns.
    Synced,
    /// Keys derived from the log, with their recovery point in the same batch: the WAL is
    /// bypassed, so they reach the disk only when their memtable is flushed. The entries and
    /// the recovery point share a batch and so a memtable, so a crash loses both together,
    /// and reopening re-indexes from the recovery point that did survive (the log is the
    /// truth).
    Bypassed,
}

impl Wal {
    pub(crate) fn options(self) -> WriteOptions {
        let mut options = WriteOptions::default();
        match self {
            Wal::Synced => options.set_sync(true),
            Wal::Bypassed => options.disable_wal(true),
        }
        options
    }
}

pub(crate) fn tenant_cf_name(id: TenantId) -> String {
    format!("{TENANT_CF_PREFIX}{id}")
}

/// The options the database and every family are opened with.
pub(crate) struct DbOptions {
    pub(crate) db: Options,
    pub(crate) family: Options,
}

impl DbOptions {
    pub(crate) fn new(config: &IndexConfig) -> Self {
        // Four shards, not RocksDB's one per 512 KiB: a table's whole filter passes 512 KiB
        // once it holds about half a million keys, and a block larger than its shard is
        // evicted as soon as it is read, so every point read read the filter from the file
        // again (a quarter of the server's time in a projection's replay of a million events).
        let mut cache_options = LruCacheOptions::default();
        cache_options.set_capacity(config.block_cache_bytes.as_u64() as usize);
        cache_options.set_num_shard_bits(2);
        let cache = Cache::new_lru_cache_opts(&cache_options);
        let buffers = WriteBufferManager::new_write_buffer_manager(
            config.write_buffer_total_bytes.as_u64() as usize,
            false,
        );
        let mut table = BlockBasedOptions::default();
        table.set_block_cache(&cache);
        table.set_bloom_filter(10.0, false);
        table.set_cache_index_and_filter_blocks(true);
        table.set_pin_l0_filter_and_index_blocks_in_cache(true);
        table.set_cache_index_and_filter_blocks_with_high_priority(true);

        let mut family = Options::default();
        family.set_block_based_table_factory(&table);
        family.set_write_buffer_size(config.tenant_write_buffer_bytes.as_u64() as usize);
        family.set_max_write_buffer_number(2);
        // Index entries are small and mostly fresh: no compression while they are hot, zstd
        // (the one codec this build links) once they settle at the bottom level.
        family.set_compression_type(DBCompressionType::None);
        family.set_bottommost_compression_type(DBCompressionType::Zstd);

        let mut db = family.clone();
        db.create_if_missing(true);
        db.set_write_buffer_manager(&buffers);
        db.set_max_total_wal_size(config.wal_bytes_max.as_u64());
        db.set_max_background_jobs(2);
        db.set_max_open_files(1024);
        db.set_keep_log_file_num(4);
        db.set_max_log_file_size(4 << 20);
        db.set_skip_stats_update_on_db_open(true);
        db.set_wal_recovery_mode(rocksdb::DBRecoveryMode::PointInTime);
        Self { db, family }
    }
}

/// How the database was opened.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct IndexOpenReport {
    /// No index existed (a new store, or one whose index was removed): everything derived
    /// from the logs is rebuilt as each tenant is opened.
    pub created: bool,
    /// The index was damaged and moved here; a new one is rebuilt from the logs.
    pub damaged_moved_to: Option<PathBuf>,
    /// Families of tenants with no directory (an interrupted create or delete), dropped.
    pub orphans_dropped: Vec<String>,
}

/// Opens (or creates) the database with a family for every tenant in `tenants`; drops the
/// families of tenants that have no directory.
pub(crate) fn open(
    config: &EngineConfig,
    options: &DbOptions,
    tenants: &[TenantId],
) -> Result<(Db, IndexOpenReport)> {
    let path = config.log.data_dir.join("index");
    let mut report = IndexOpenReport {
        created: !path.join("CURRENT").exists(),
        ..IndexOpenReport::default()
    };
    let (db, existing) = match open_families(&path, options) {
        Ok(opened) => opened,
        Err(e) if is_damage(&e) && config.index.on_damage == IndexDamage::Rebuild => {
            let aside = move_aside(&config.log.data_dir, &path)?;
            tracing::error!(
                error = %e,
                moved_to = %aside.display(),
                "the index is damaged: moved it aside and rebuilding from the logs; processor \
                 state, stream positions and aliases are not in the logs and start empty"
            );
            report.damaged_moved_to = Some(aside);
            report.created = true;
            open_families(&path, options).map_err(rocks("open"))?
        }
        Err(e) => return Err(rocks("open")(e)),
    };
    let wanted: std::collections::HashSet<String> =
        tenants.iter().map(|t| tenant_cf_name(*t)).collect();
    for name in existing {
        if name.starts_with(TENANT_CF_PREFIX) && !wanted.contains(&name) {
            db.drop_cf(&name)
                .map_err(rocks("drop orphan column family"))?;
            tracing::info!(family = %name, "dropped the index of a tenant that has no directory");
            report.orphans_dropped.push(name);
        }
    }
    for name in &wanted {
        if db.cf_handle(name).is_none() {
            db.create_cf(name, &options.family)
                .map_err(rocks("create column family"))?;
        }
    }
    Ok((db, report))
}

/// Opens the database with every family it has; returns it and the families' names.
fn open_families(
    path: &Path,
    options: &DbOptions,
) -> std::result::Result<(Db, Vec<String>), rocksdb::Error> {
    let names = if path.join("CURRENT").exists() {
        Db::list_cf(&options.db, path)?
    } else {
        vec![rocksdb::DEFAULT_COLUMN_FAMILY_NAME.to_owned()]
    };
    let families = names
        .iter()
        .map(|name| ColumnFamilyDescriptor::new(name, options.family.clone()));
    let db = Db::open_cf_descriptors(&options.db, path, families)?;
    Ok((db, names))
}

fn is_damage(e: &rocksdb::Error) -> bool {
    // RocksDB reports damage as corruption, and a missing table file as an I/O error naming
    // the file; both mean the files do not hold a consistent database.
    match e.kind() {
        rocksdb::ErrorKind::Corruption => true,
        rocksdb::ErrorKind::IOError => e.as_ref().contains("No such file"),
        _ => false,
    }
}

/// Key-value pairs of `prefix` in `cf`, from `start` (a key with that prefix) on, at most
/// `max`.
pub(crate) fn scan(
    db: &Db,
    cf: &impl rocksdb::AsColumnFamilyRef,
    prefix: &[u8],
    start: &[u8],
    max: usize,
) -> Result<Vec<(Vec<u8>, Vec<u8>)>> {
    let mut options = rocksdb::ReadOptions::default();
    options.set_iterate_upper_bound(crate::keys::prefix_end(prefix));
    let iter = db.iterator_cf_opt(
        cf,
        options,
        rocksdb::IteratorMode::From(start, rocksdb::Direction::Forward),
    );
    let mut out = Vec::new();
    for item in iter.take(max) {
        let (k, v) = item.map_err(rocks("iterate"))?;
        out.push((k.into_vec(), v.into_vec()));
    }
    Ok(out)
}

/// A stored entry that does not decode.
pub(crate) fn bad_state(key: &[u8], detail: &str) -> Error {
    Error::BadState {
        key: format!("{key:?}"),
        detail: detail.to_owned(),
    }
}

fn move_aside(data_dir: &Path, path: &Path) -> Result<PathBuf> {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let mut aside = data_dir.join(format!("index.damaged-{secs}"));
    let mut n = 1;
    while aside.exists() {
        aside = data_dir.join(format!("index.damaged-{secs}-{n}"));
        n += 1;
    }
    std::fs::rename(path, &aside).map_err(|e| LogError::Io {
        op: "move damaged index aside",
        path: path.to_owned(),
        source: e,
    })?;
    Ok(aside)
}
