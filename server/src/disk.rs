//! Free space of the data directory's file system, watched so an operator learns the disk is
//! filling before commits fail on a full one: checked at startup and every
//! `CHECK_INTERVAL`; below the threshold (`annals:disk:lowSpace`, a share of the file system
//! such as `5%` or a size such as `2 GiB`) the runtime logs a WARN once, `/healthz` reports
//! Degraded, and `annals_disk_low` is 1; back above it, an INFO says so. The free and total
//! bytes are the metrics `annals_disk_free_bytes` and `annals_disk_total_bytes`.

use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytesize::ByteSize;

use crate::runtime::Runtime;

/// How often the free space is read.
const CHECK_INTERVAL: Duration = Duration::from_secs(5);

/// Below how much free space the disk counts as low.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LowSpace {
    /// A share of the file system's size, in percent (0 to 100).
    Percent(u8),
    /// A number of bytes.
    Bytes(u64),
}

impl Default for LowSpace {
    fn default() -> LowSpace {
        LowSpace::Percent(5)
    }
}

impl LowSpace {
    /// `5%` or a size (`2 GiB`, `500MB`, `1024`); None for anything else.
    pub fn parse(text: &str) -> Option<LowSpace> {
        let text = text.trim();
        if let Some(percent) = text.strip_suffix('%') {
            return percent
                .trim()
                .parse::<u8>()
                .ok()
                .filter(|p| *p <= 100)
                .map(LowSpace::Percent);
        }
        text.parse::<ByteSize>()
            .ok()
            .map(|size| LowSpace::Bytes(size.as_u64()))
    }

    /// The free bytes below which a file system of `total` bytes is low.
    fn bytes(self, total: u64) -> u64 {
        match self {
            LowSpace::Percent(percent) => {
                u64::try_from(u128::from(total) * u128::from(percent) / 100).unwrap_or(u64::MAX)
            }
            LowSpace::Bytes(bytes) => bytes,
        }
    }

    /// As configured.
    pub fn describe(self) -> String {
        match self {
            LowSpace::Percent(percent) => format!("{percent}%"),
            LowSpace::Bytes(bytes) => ByteSize::b(bytes).to_string(),
        }
    }
}

/// The last reading.
#[derive(Debug, Default)]
pub(crate) struct DiskSpace {
    free_bytes: AtomicU64,
    total_bytes: AtomicU64,
    low: AtomicBool,
    /// Whether a reading was ever taken (a file system that cannot be read is not reported
    /// as low).
    read: AtomicBool,
}

/// One reading, for `/healthz`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Reading {
    pub(crate) free_bytes: u64,
    pub(crate) total_bytes: u64,
    pub(crate) low: bool,
}

impl DiskSpace {
    /// The last reading, if any.
    pub(crate) fn reading(&self) -> Option<Reading> {
        self.read.load(Ordering::Acquire).then(|| Reading {
            free_bytes: self.free_bytes.load(Ordering::Relaxed),
            total_bytes: self.total_bytes.load(Ordering::Relaxed),
            low: self.low.load(Ordering::Relaxed),
        })
    }

    /// Reads the file system holding `path`, records it, and says so when it crossed the
    /// threshold.
    pub(crate) fn check(&self, path: &Path, threshold: LowSpace) -> Option<Reading> {
        let stats = match rustix::fs::statvfs(path) {
            Ok(stats) => stats,
            Err(e) => {
                tracing::warn!(error = %e, "cannot read the free space of the data directory's file system");
                return None;
            }
        };
        let free_bytes = stats.f_bavail.saturating_mul(stats.f_frsize);
        let total_bytes = stats.f_blocks.saturating_mul(stats.f_frsize);
        let low = free_bytes < threshold.bytes(total_bytes);
        self.free_bytes.store(free_bytes, Ordering::Relaxed);
        self.total_bytes.store(total_bytes, Ordering::Relaxed);
        let was_low = self.low.swap(low, Ordering::Relaxed);
        let first = !self.read.swap(true, Ordering::AcqRel);
        let free = ByteSize::b(free_bytes);
        let total = ByteSize::b(total_bytes);
        if low && (first || !was_low) {
            tracing::warn!(
                %free,
                %total,
                threshold = %threshold.describe(),
                "disk space low on the data directory's file system: commits fail once it is \
                 full (annals:disk:lowSpace)"
            );
        } else if !low && was_low && !first {
            tracing::info!(%free, %total, "disk space no longer low");
        }
        Some(Reading {
            free_bytes,
            total_bytes,
            low,
        })
    }
}

/// Reads the free space of the runtime's data directory into its `DiskSpace` and metrics.
pub(crate) fn refresh(runtime: &Runtime) {
    if let Some(reading) = runtime
        .disk
        .check(&runtime.config.data_dir, runtime.config.disk_low_space)
    {
        runtime.metrics.record_disk(reading);
    }
}

/// Reads the free space every `CHECK_INTERVAL` until the runtime stops (the first reading
/// is the caller's, at startup).
pub(crate) async fn watch(runtime: Arc<Runtime>) {
    let mut stopping = runtime.stopping.clone();
    loop {
        tokio::select! {
            () = tokio::time::sleep(CHECK_INTERVAL) => {}
            _ = stopping.wait_for(|s| *s) => return,
        }
        let runtime = Arc::clone(&runtime);
        let _ = tokio::task::spawn_blocking(move || refresh(&runtime)).await;
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "tests")]
    use super::*;

    #[test]
    fn thresholds_are_a_share_or_a_size() {
        assert_eq!(LowSpace::parse("5%"), Some(LowSpace::Percent(5)));
        assert_eq!(LowSpace::parse(" 100 % "), Some(LowSpace::Percent(100)));
        assert_eq!(LowSpace::parse("101%"), None);
        assert_eq!(LowSpace::parse("2 GiB"), Some(LowSpace::Bytes(2 << 30)));
        assert_eq!(LowSpace::parse("1024"), Some(LowSpace::Bytes(1024)));
        assert_eq!(LowSpace::parse("lots"), None);
        assert_eq!(LowSpace::Percent(5).bytes(1000), 50);
        assert_eq!(LowSpace::Percent(100).bytes(u64::MAX), u64::MAX);
    }

    #[test]
    fn a_reading_of_a_real_file_system() {
        let dir = tempfile::tempdir().unwrap();
        let space = DiskSpace::default();
        assert!(space.reading().is_none());
        let all = space.check(dir.path(), LowSpace::Percent(100)).unwrap();
        assert!(all.total_bytes > 0);
        assert!(all.low, "below 100% of the file system is always low");
        let none = space.check(dir.path(), LowSpace::Bytes(0)).unwrap();
        assert!(!none.low);
        assert_eq!(space.reading().unwrap(), none);
    }
}
