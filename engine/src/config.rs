//! The engine's configuration: the log store's settings ([`LogConfig`], its keys at the top
//! level) and the RocksDB index's under `index`. One serde struct, kebab-case keys, every field
//! defaulted.
//!
//! `validate()` checks both halves and returns an error naming the key (`index.` before the
//! index's keys); there are no panicking setters.

use std::path::PathBuf;

use annals_log::{Error as LogError, LogConfig};
use bytesize::ByteSize;
use serde::{Deserialize, Serialize};

use crate::error::Result;

/// Engine configuration: the log's settings, and the index's under `index`.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", default, deny_unknown_fields)]
pub struct EngineConfig {
    /// The logs: data directory, durability, segments, sealing (each key at the top level).
    #[serde(flatten)]
    pub log: LogConfig,
    /// The RocksDB indexes and state.
    pub index: IndexConfig,
}

/// What opening does when the RocksDB index cannot be opened because it is damaged.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "kebab-case")]
pub enum IndexDamage {
    /// Move the damaged index aside (`index.damaged-<unix seconds>`), and rebuild what the log
    /// holds (aggregate versions, the event-source index). Processor state, stream positions
    /// and aliases are not in the log: processors start again from the beginning (at least
    /// once), and this is logged as an error.
    #[default]
    Rebuild,
    /// Refuse to open.
    Fail,
}

/// The RocksDB side of the engine: one column family per tenant in one database, sharing one
/// WAL, one block cache and one write-buffer budget, so memory stays bounded as tenants grow.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", default, deny_unknown_fields)]
pub struct IndexConfig {
    /// Block cache shared by every tenant. Default 32 MiB.
    pub block_cache_bytes: ByteSize,
    /// Memtables of all tenants together (RocksDB's write-buffer manager); reaching it flushes
    /// the largest. Default 64 MiB, minimum 1 MiB.
    pub write_buffer_total_bytes: ByteSize,
    /// One tenant's memtable. Default 4 MiB, minimum 64 KiB.
    pub tenant_write_buffer_bytes: ByteSize,
    /// The shared WAL is kept below this by flushing the column families that hold it back.
    /// Default 64 MiB, minimum 1 MiB.
    pub wal_bytes_max: ByteSize,
    /// Most events the indexer reads from a log per index write. Default 4096, minimum 1.
    pub indexer_batch_events: usize,
    /// What to do with a damaged index. Default `rebuild`.
    pub on_damage: IndexDamage,
    /// Most events the index may run ahead of its recovery point on disk: past this the
    /// indexer flushes the tenant's index, so reopening after a crash re-indexes at most about
    /// this many events however long the log. Default 1 000 000, minimum 1.
    pub reindex_after_crash_max_events: u64,
    /// Aggregate versions each tenant keeps in memory once the index holds them, so that a
    /// commit for an aggregate committed to recently checks its version without reading the
    /// index (about 100 bytes each). Past this, half of them are dropped at random. 0 keeps
    /// only the versions the index does not hold yet. Default 16 384.
    pub aggregate_versions_cached: usize,
}

impl Default for IndexConfig {
    fn default() -> Self {
        Self {
            block_cache_bytes: ByteSize::mib(32),
            write_buffer_total_bytes: ByteSize::mib(64),
            tenant_write_buffer_bytes: ByteSize::mib(4),
            wal_bytes_max: ByteSize::mib(64),
            indexer_batch_events: 4096,
            on_damage: IndexDamage::Rebuild,
            reindex_after_crash_max_events: 1_000_000,
            aggregate_versions_cached: 16_384,
        }
    }
}

impl From<LogConfig> for EngineConfig {
    /// These log settings with the default index settings.
    fn from(log: LogConfig) -> Self {
        Self {
            log,
            index: IndexConfig::default(),
        }
    }
}

impl EngineConfig {
    /// A default configuration rooted at `data_dir`.
    pub fn new(data_dir: impl Into<PathBuf>) -> Self {
        Self::from(LogConfig::new(data_dir))
    }

    /// Checks every bound; the error names the key.
    pub fn validate(&self) -> Result<()> {
        self.log.validate()?;
        let index = &self.index;
        for (key, value, min) in [
            (
                "index.write-buffer-total-bytes",
                index.write_buffer_total_bytes,
                ByteSize::mib(1),
            ),
            (
                "index.tenant-write-buffer-bytes",
                index.tenant_write_buffer_bytes,
                ByteSize::kib(64),
            ),
            ("index.wal-bytes-max", index.wal_bytes_max, ByteSize::mib(1)),
        ] {
            if value < min {
                return Err(LogError::InvalidConfig {
                    key,
                    reason: format!("{value} is below {min}"),
                }
                .into());
            }
        }
        if index.reindex_after_crash_max_events == 0 {
            return Err(LogError::InvalidConfig {
                key: "index.reindex-after-crash-max-events",
                reason: "must be at least 1".into(),
            }
            .into());
        }
        if index.indexer_batch_events == 0 {
            return Err(LogError::InvalidConfig {
                key: "index.indexer-batch-events",
                reason: "must be at least 1".into(),
            }
            .into());
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_is_valid() {
        EngineConfig::default().validate().unwrap();
    }

    #[test]
    fn log_and_index_keys_parse_where_they_always_were() {
        let config: EngineConfig = serde_json::from_str(
            r#"{"segment-bytes-max":"16 MiB","durability":"buffered",
                "index":{"indexer-batch-events":7,"on-damage":"fail"}}"#,
        )
        .unwrap();
        assert_eq!(config.log.segment_bytes_max, ByteSize::mib(16));
        assert_eq!(config.log.durability, annals_log::Durability::Buffered);
        assert_eq!(config.index.indexer_batch_events, 7);
        assert_eq!(config.index.on_damage, IndexDamage::Fail);
        assert_eq!(
            config.log.record_bytes_max,
            LogConfig::default().record_bytes_max
        );
        config.validate().unwrap();
        let err = serde_json::from_str::<EngineConfig>(r#"{"no-such-setting":1}"#).unwrap_err();
        assert!(err.to_string().contains("no-such-setting"), "{err}");
        let err = serde_json::from_str::<EngineConfig>(r#"{"index":{"nope":1}}"#).unwrap_err();
        assert!(err.to_string().contains("nope"), "{err}");
    }

    #[test]
    fn bad_index_values_name_their_key() {
        let mut config = EngineConfig::new("./data");
        config.index.indexer_batch_events = 0;
        let err = config.validate().unwrap_err().to_string();
        assert!(err.contains("index.indexer-batch-events"), "{err}");
        let mut config = EngineConfig::new("./data");
        config.log.seal_zstd_level = 40;
        let err = config.validate().unwrap_err().to_string();
        assert!(err.contains("seal-zstd-level"), "{err}");
    }
}
