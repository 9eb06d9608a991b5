//! The log store's configuration: one serde struct, kebab-case keys, every field defaulted.
//!
//! `validate()` returns an error naming the key; there are no panicking setters. annals-engine's
//! configuration holds this one (its keys at the top level) beside its own index settings.

use std::path::PathBuf;

use bytesize::ByteSize;
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// When an append is acknowledged.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "kebab-case")]
pub enum Durability {
    /// Acknowledge after the group's data is on stable storage (`fdatasync`). The default.
    #[default]
    SyncData,
    /// Acknowledge after the write reaches the OS page cache. A process crash loses nothing;
    /// a power loss can lose the commits since the last roll, and since several unsynced
    /// writes may reach the disk out of order, recovery can then find damage it cannot prove
    /// to be a torn tail and refuse to open: open with [`RecoveryMode::Salvage`] in that case.
    /// Commits are never torn: whatever recovery keeps is whole commits.
    Buffered,
}

/// What opening a log does with damage it finds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "kebab-case")]
pub enum RecoveryMode {
    /// Truncate a torn tail of the active segment (an incomplete last write: damage followed by
    /// no frame of a later write) back to its last whole commit; every other inconsistency is
    /// an error. The default.
    #[default]
    TolerateTornTail,
    /// Any damage at all, including a torn tail, is an error; nothing is truncated.
    Strict,
    /// The active segment is cut at its first damage whatever follows it, keeping the whole
    /// commits before it; damage anywhere else is still an error. For logs written with
    /// `buffered` durability after a power loss, or an operator's explicit choice; what was
    /// cut is reported in the recovery report.
    Salvage,
}

/// Which I/O backend to use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "kebab-case")]
pub enum IoBackendChoice {
    /// io_uring when the kernel allows it, else std. The default.
    #[default]
    Auto,
    /// Positional reads and writes with std.
    Std,
    /// io_uring (a write and its `fdatasync` linked into one submission); opening fails if
    /// the kernel does not allow it.
    IoUring,
}

/// The log store's configuration.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", default, deny_unknown_fields)]
pub struct LogConfig {
    /// The data directory. Default `./data`.
    pub data_dir: PathBuf,
    /// When appends are acknowledged. Default `sync-data`.
    pub durability: Durability,
    /// What opening does with damage. Default `tolerate-torn-tail`.
    pub recovery_mode: RecoveryMode,
    /// I/O backend. Default `auto`.
    pub io_backend: IoBackendChoice,
    /// A segment is rolled and sealed once it holds this much. A single commit never spans
    /// segments, so one larger commit makes one larger segment. Default 64 MiB, minimum 4 KiB.
    pub segment_bytes_max: ByteSize,
    /// Largest encoded event record. Default 8 MiB, minimum 1 KiB, at most 1 GiB.
    pub record_bytes_max: ByteSize,
    /// Largest encoded commit. Default 64 MiB, at least `record-bytes-max`, at most 2 GiB.
    pub commit_bytes_max: ByteSize,
    /// Most bytes one group commit writes in one go; commits waiting beyond it form the next
    /// group. Default 4 MiB, range 4 KiB..=1 GiB.
    pub group_bytes_max: ByteSize,
    /// How long a group-commit leader may wait for the writers of the previous group to come
    /// back before writing, in microseconds. It waits only while fewer commits are queued
    /// than the previous group had writers, and never longer than half the last write's
    /// duration, so a lone writer never waits. 0 disables. Default 500, maximum 100000.
    pub group_commit_delay_max_us: u64,
    /// The active segment is kept this far ahead of its data with zeros already written (and
    /// synced with the next group), so appends overwrite allocated blocks and their
    /// `fdatasync` has no file-size change to journal: measured here, that makes each sync of
    /// a small append about 1.5x faster on ext4. 0 disables. Default 4 MiB, at most 1 GiB.
    pub preallocate_bytes: ByteSize,
    /// Segment files kept ready for the next rolls, so a new segment starts with every block
    /// allocated and written and no append of it waits for zeros: the raw files of sealed
    /// segments (recycled instead of deleted; a segment in one is of format version 2), or
    /// files zero-filled to `segment-bytes-max` and synced by a background thread. They live
    /// in `<data-dir>/spares/` and cost up to `segment-bytes-max` + `preallocate-bytes` of
    /// disk each; zeros are only made once a log rolls out of a segment written mostly in
    /// small groups (at most `preallocate-bytes` / 16, the groups the leader zeroes ahead for)
    /// and no sealed segment's file is on its way. 0 disables both. Default 1, at most 16.
    pub spare_segments: u32,
    /// Uncompressed size of one zstd block in a sealed segment. Default 64 KiB, minimum 1 KiB.
    pub seal_block_bytes: ByteSize,
    /// zstd level for sealing. Default 1, range 1..=19. On the log's records (JSON with ids in
    /// 64 KiB blocks) level 1 compressed 1.3 x faster than 3 and 2-3% smaller, and its blocks
    /// decompress faster; higher levels cost the appends' second core for little gain.
    pub seal_zstd_level: i32,
    /// Whether full segments are sealed (compressed) in the background. Default true.
    pub seal_enabled: bool,
    /// The active segment keeps one sparse-index entry per this many bytes. Default 4 KiB,
    /// minimum 256 B.
    pub sparse_index_interval_bytes: ByteSize,
    /// Decompressed sealed blocks kept for scattered reads (fetching aggregates), shared by
    /// every log. Default 64 MiB; 0 disables.
    pub read_cache_bytes: ByteSize,
}

impl Default for LogConfig {
    fn default() -> Self {
        Self {
            data_dir: PathBuf::from("./data"),
            durability: Durability::SyncData,
            recovery_mode: RecoveryMode::TolerateTornTail,
            io_backend: IoBackendChoice::Auto,
            segment_bytes_max: ByteSize::mib(64),
            record_bytes_max: ByteSize::mib(8),
            commit_bytes_max: ByteSize::mib(64),
            group_bytes_max: ByteSize::mib(4),
            group_commit_delay_max_us: 500,
            preallocate_bytes: ByteSize::mib(4),
            spare_segments: 1,
            seal_block_bytes: ByteSize::kib(64),
            seal_zstd_level: 1,
            seal_enabled: true,
            sparse_index_interval_bytes: ByteSize::kib(4),
            read_cache_bytes: ByteSize::mib(64),
        }
    }
}

impl LogConfig {
    /// A default configuration rooted at `data_dir`.
    pub fn new(data_dir: impl Into<PathBuf>) -> Self {
        Self {
            data_dir: data_dir.into(),
            ..Self::default()
        }
    }

    /// Checks every bound; the error names the key.
    pub fn validate(&self) -> Result<()> {
        fn bad(key: &'static str, reason: String) -> Result<()> {
            Err(Error::InvalidConfig { key, reason })
        }
        if self.segment_bytes_max.as_u64() < 4096 {
            return bad(
                "segment-bytes-max",
                format!("{} is below 4 KiB", self.segment_bytes_max),
            );
        }
        let record = self.record_bytes_max.as_u64();
        if !(1024..=(1 << 30)).contains(&record) {
            return bad(
                "record-bytes-max",
                format!("{} is outside 1 KiB..=1 GiB", self.record_bytes_max),
            );
        }
        if self.commit_bytes_max.as_u64() < record || self.commit_bytes_max.as_u64() > (2 << 30) {
            return bad(
                "commit-bytes-max",
                format!(
                    "{} must be at least record-bytes-max and at most 2 GiB",
                    self.commit_bytes_max
                ),
            );
        }
        if !(4096..=(1 << 30)).contains(&self.group_bytes_max.as_u64()) {
            return bad(
                "group-bytes-max",
                format!("{} is outside 4 KiB..=1 GiB", self.group_bytes_max),
            );
        }
        if self.preallocate_bytes.as_u64() > (1 << 30) {
            return bad(
                "preallocate-bytes",
                format!("{} is above 1 GiB", self.preallocate_bytes),
            );
        }
        if self.spare_segments > 16 {
            return bad(
                "spare-segments",
                format!("{} is above 16", self.spare_segments),
            );
        }
        if self.group_commit_delay_max_us > 100_000 {
            return bad(
                "group-commit-delay-max-us",
                format!("{} is above 100000", self.group_commit_delay_max_us),
            );
        }
        if !(1024..=(64 << 20)).contains(&self.seal_block_bytes.as_u64()) {
            return bad(
                "seal-block-bytes",
                format!("{} is outside 1 KiB..=64 MiB", self.seal_block_bytes),
            );
        }
        if !(1..=19).contains(&self.seal_zstd_level) {
            return bad(
                "seal-zstd-level",
                format!("{} is outside 1..=19", self.seal_zstd_level),
            );
        }
        if self.sparse_index_interval_bytes.as_u64() < 256 {
            return bad(
                "sparse-index-interval-bytes",
                format!("{} is below 256 B", self.sparse_index_interval_bytes),
            );
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_is_valid() {
        LogConfig::default().validate().unwrap();
    }

    #[test]
    fn bad_values_name_their_key() {
        let config = LogConfig {
            seal_zstd_level: 40,
            ..LogConfig::default()
        };
        let err = config.validate().unwrap_err().to_string();
        assert!(err.contains("seal-zstd-level"), "{err}");
        let config = LogConfig {
            segment_bytes_max: ByteSize::b(10),
            ..LogConfig::default()
        };
        assert!(config
            .validate()
            .unwrap_err()
            .to_string()
            .contains("segment-bytes-max"));
    }

    #[test]
    fn parses_kebab_case_with_readable_sizes() {
        let config: LogConfig = serde_json::from_str(
            r#"{"segment-bytes-max":"16 MiB","durability":"buffered","io-backend":"std"}"#,
        )
        .unwrap();
        assert_eq!(config.segment_bytes_max, ByteSize::mib(16));
        assert_eq!(config.durability, Durability::Buffered);
        assert_eq!(config.io_backend, IoBackendChoice::Std);
        config.validate().unwrap();
    }
}
