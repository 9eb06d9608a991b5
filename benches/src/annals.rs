//! annals as a system under test: one engine, one tenant, the default-scope event log.
//!
//! Appends go through `Log::append` (which encodes, group-commits and `fdatasync`s); the
//! catch-up read goes through `Log::read_into` (one reused batch) in calls of up to 10 000
//! events / 4 MiB and decodes every event into an `EventView`, touching its content, as a
//! consumer would.

use std::{
    sync::{atomic::Ordering, Arc},
    time::{Duration, Instant},
};

use annals_engine::{
    uuid::Uuid, Engine, EngineConfig, EventLogSequenceNumber, EventView, Log, RecordBatch, TenantId,
};
use anyhow::{ensure, Context, Result};
use hdrhistogram::Histogram;

use crate::data::PreparedCommit;

/// Events per read call of the catch-up read.
pub const READ_RECORDS_MAX: usize = 10_000;
/// Bytes per read call of the catch-up read.
pub const READ_BYTES_MAX: usize = 4 << 20;

/// Write-path counters at one moment.
#[derive(Debug, Clone, Copy, Default)]
pub struct Counters {
    /// Data fdatasyncs.
    pub data_syncs: u64,
    /// Groups written.
    pub groups: u64,
    /// Segments rolled.
    pub rolls: u64,
    /// Rolls into a spare segment.
    pub spare_rolls: u64,
    /// Of those, rolls into the file of a sealed-away segment.
    pub recycled_rolls: u64,
    /// Segments sealed.
    pub seals: u64,
}

/// An open engine and its benchmark log.
#[derive(Debug)]
pub struct Annals {
    log: Arc<Log>,
    engine: Engine,
}

impl Annals {
    /// Opens an engine with `config` (its `data_dir` is where).
    pub fn open(config: EngineConfig) -> Result<Self> {
        let dir = config.log.data_dir.clone();
        let engine = Engine::open(config)
            .with_context(|| format!("open the engine in {}", dir.display()))?;
        let log = engine
            .tenant_or_create(TenantId(Uuid::from_u128(0xA115)))
            .and_then(|tenant| tenant.event_log())
            .context("open the tenant's event log")?;
        Ok(Self { log, engine })
    }

    /// The I/O backend in use (`io_uring` or `std`).
    pub fn io_backend(&self) -> &'static str {
        self.engine.io_backend()
    }

    /// The write-path counters now.
    pub fn counters(&self) -> Counters {
        let stats = self.log.stats();
        Counters {
            data_syncs: stats.data_syncs.load(Ordering::Relaxed),
            groups: stats.groups.load(Ordering::Relaxed),
            rolls: stats.rolls.load(Ordering::Relaxed),
            spare_rolls: stats.spare_rolls.load(Ordering::Relaxed),
            recycled_rolls: stats.recycled_rolls.load(Ordering::Relaxed),
            seals: stats.seals.load(Ordering::Relaxed),
        }
    }

    /// Appends one commit; returns its events count.
    pub fn append(&self, prepared: &PreparedCommit) -> Result<u64> {
        let receipt = self
            .log
            .append(&prepared.commit)
            .context("append a commit to annals")?;
        Ok(receipt.count)
    }

    /// Waits until every full segment is sealed; fails if a seal failed.
    pub fn settle(&self) -> Result<()> {
        let failures = self.engine.wait_for_sealing();
        ensure!(
            failures.is_empty(),
            "sealing failed: {}",
            failures.join("; ")
        );
        Ok(())
    }

    /// Bytes of the log on disk, and of that the part in sealed segments.
    pub fn disk_bytes(&self) -> (u64, u64) {
        self.log.disk_bytes()
    }

    /// Sealed size against the JSON it holds: the sealed segments' bytes on disk, the events
    /// in them and those events' JSON content bytes.
    pub fn sealed_size(&self) -> Result<(u64, u64, u64)> {
        let segments = self.log.segments();
        // Events below the first unsealed segment are sealed (segments seal in order).
        let sealed_upto = segments
            .iter()
            .find(|(_, sealed)| !*sealed)
            .map_or(self.log.next_sequence_number(), |(base, _)| *base);
        let mut batch = RecordBatch::new();
        let (mut next, mut json_bytes) = (EventLogSequenceNumber::ZERO, 0u64);
        while next < sealed_upto {
            let read = self.read_views(next, &mut batch, |view| {
                if view.sequence_number < sealed_upto {
                    json_bytes += view.content.len() as u64;
                }
            })?;
            let Some(after) = read else { break };
            next = after;
        }
        let (_, sealed_bytes) = self.log.disk_bytes();
        Ok((sealed_bytes, sealed_upto.0, json_bytes))
    }

    /// Reads one batch from `next` into `batch` and hands each of its events, decoded, to
    /// `visit`. Returns where the next read starts, or `None` at the end of the log.
    fn read_views(
        &self,
        next: EventLogSequenceNumber,
        batch: &mut RecordBatch,
        mut visit: impl FnMut(EventView<'_>),
    ) -> Result<Option<EventLogSequenceNumber>> {
        self.log
            .read_into(next, READ_RECORDS_MAX, READ_BYTES_MAX, batch)
            .with_context(|| format!("read the log from {next}"))?;
        let Some(after) = batch.next() else {
            return Ok(None);
        };
        for view in batch.views() {
            visit(view.context("decode an event")?);
        }
        Ok(Some(after))
    }

    /// Reads the whole log from sequence number 0, decoding every event. Returns the events
    /// read, the time taken, and the latency of each read call (read plus decode).
    pub fn catch_up(&self) -> Result<(u64, Duration, Histogram<u64>)> {
        let end = self.log.next_sequence_number();
        let mut hist = Histogram::<u64>::new(3).context("create a histogram")?;
        let (mut next, mut events, mut touched) = (EventLogSequenceNumber::ZERO, 0u64, 0u64);
        // One batch reused across calls, as a catch-up reader would (no allocation per call).
        let mut batch = RecordBatch::new();
        let started = Instant::now();
        loop {
            let call = Instant::now();
            let read = self.read_views(next, &mut batch, |view| {
                touched = touched.wrapping_add(view.content.len() as u64 + view.sequence_number.0);
                events += 1;
            })?;
            let Some(after) = read else { break };
            hist.record(u64::try_from(call.elapsed().as_nanos()).unwrap_or(u64::MAX))
                .context("record a latency")?;
            next = after;
        }
        let elapsed = started.elapsed();
        std::hint::black_box(touched);
        ensure!(
            events == end.0,
            "read {events} events back from annals, the log holds {}",
            end.0
        );
        Ok((events, elapsed, hist))
    }
}

#[cfg(test)]
mod tests {
    use annals_engine::{IoBackendChoice, LogConfig};

    use super::*;
    use crate::data::EventFactory;

    #[test]
    fn appends_and_reads_back() {
        let dir = tempfile::tempdir().unwrap();
        let pool = EventFactory::new(5)
            .pool(1, 3, 10, &dir.path().join("scratch"))
            .unwrap();
        let config = EngineConfig::from(LogConfig {
            io_backend: IoBackendChoice::Std,
            ..LogConfig::new(dir.path().join("engine"))
        });
        let annals = Annals::open(config).unwrap();
        for prepared in pool.all() {
            assert_eq!(annals.append(prepared).unwrap(), 10);
        }
        assert_eq!(annals.counters().data_syncs, 3);
        let (events, _, hist) = annals.catch_up().unwrap();
        assert_eq!(events, 30);
        assert_eq!(hist.len(), 1);
    }
}
