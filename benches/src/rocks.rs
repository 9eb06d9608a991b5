//! The RocksDB peer: the same events stored as key = sequence number (big-endian, so keys
//! sort numerically), value = annals' encoded payload.
//!
//! Appends use `WriteOptions::sync = true` and one `WriteBatch` per commit; RocksDB
//! group-commits concurrent writers itself (its write thread leader merges waiting batches into
//! one WAL write and one sync). Sequence numbers come from an atomic counter. WAL syncs are
//! read from RocksDB's statistics (ticker `rocksdb.wal.synced`).
//!
//! Options are RocksDB's defaults apart from the above: compression stays off (RocksDB's
//! default when Snappy is not built in, as here), which favours its reads.

use std::{
    path::Path,
    sync::atomic::{AtomicU64, Ordering},
    time::{Duration, Instant},
};

use anyhow::{ensure, Context, Result};
use rocksdb::{
    statistics::StatsLevel, statistics::Ticker, DBCompressionType, Options, WriteBatch,
    WriteOptions, DB,
};

use crate::data::PreparedCommit;

/// An open RocksDB holding one log.
pub struct Rocks {
    db: DB,
    /// Kept to read the statistics.
    options: Options,
    write_options: WriteOptions,
    next_seq: AtomicU64,
}

impl std::fmt::Debug for Rocks {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Rocks")
            .field("path", &self.db.path())
            .finish_non_exhaustive()
    }
}

/// The sanctioned big-endian use (STYLE.md section I): keys must sort bytewise in numeric
/// order.
#[expect(
    clippy::big_endian_bytes,
    reason = "RocksDB keys must sort bytewise in numeric order"
)]
fn key(seq: u64) -> [u8; 8] {
    seq.to_be_bytes()
}

impl Rocks {
    /// Opens (creating) a database in `dir`.
    pub fn open(dir: &Path) -> Result<Self> {
        let mut options = Options::default();
        options.create_if_missing(true);
        options.set_compression_type(DBCompressionType::None);
        options.enable_statistics();
        options.set_statistics_level(StatsLevel::ExceptHistogramOrTimers);
        let db = DB::open(&options, dir)
            .with_context(|| format!("open RocksDB in {}", dir.display()))?;
        let mut write_options = WriteOptions::default();
        write_options.set_sync(true);
        Ok(Self {
            db,
            options,
            write_options,
            next_seq: AtomicU64::new(0),
        })
    }

    /// WAL syncs so far.
    pub fn wal_syncs(&self) -> u64 {
        self.options.get_ticker_count(Ticker::WalFileSynced)
    }

    /// Writes one commit as one synced batch.
    pub fn append(&self, prepared: &PreparedCommit) -> Result<u64> {
        let count = prepared.payloads.len() as u64;
        let first = self.next_seq.fetch_add(count, Ordering::Relaxed);
        let mut batch = WriteBatch::default();
        for (seq, payload) in (first..).zip(&prepared.payloads) {
            batch.put(key(seq), payload);
        }
        self.db
            .write_opt(batch, &self.write_options)
            .context("write a batch to RocksDB")?;
        Ok(count)
    }

    /// Flushes the memtable and compacts everything, so reads see a settled database.
    pub fn settle(&self) -> Result<()> {
        self.db.flush().context("flush RocksDB")?;
        self.db.compact_range(None::<&[u8]>, None::<&[u8]>);
        Ok(())
    }

    /// Iterates over every key in order, touching each value. Returns the events seen and
    /// the time taken.
    pub fn catch_up(&self) -> Result<(u64, Duration)> {
        let started = Instant::now();
        let mut iter = self.db.raw_iterator();
        iter.seek_to_first();
        let (mut records, mut touched) = (0u64, 0u64);
        while let (Some(k), Some(v)) = (iter.key(), iter.value()) {
            touched =
                touched.wrapping_add(v.len() as u64 + u64::from(k.last().copied().unwrap_or(0)));
            records += 1;
            iter.next();
        }
        iter.status().context("iterate over RocksDB")?;
        let elapsed = started.elapsed();
        std::hint::black_box(touched);
        let expected = self.next_seq.load(Ordering::Relaxed);
        ensure!(
            records == expected,
            "read {records} records back from RocksDB, wrote {expected}"
        );
        Ok((records, elapsed))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::EventFactory;

    #[test]
    fn appends_read_back_in_order() {
        let dir = tempfile::tempdir().unwrap();
        let pool = EventFactory::new(4)
            .pool(1, 2, 10, &dir.path().join("scratch"))
            .unwrap();
        let rocks = Rocks::open(&dir.path().join("db")).unwrap();
        let before = rocks.wal_syncs();
        for prepared in pool.all() {
            assert_eq!(rocks.append(prepared).unwrap(), 10);
        }
        assert!(rocks.wal_syncs() > before);
        rocks.settle().unwrap();
        assert_eq!(rocks.catch_up().unwrap().0, 20);
        assert!(key(1) < key(256));
    }
}
