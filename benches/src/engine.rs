//! `annals-bench engine`: the storage engine against the raw group-commit limit and RocksDB.
//!
//! Workloads (design.md section 7):
//! - `append`: for each shape (writers x events per commit), every writer commits in a closed
//!   loop for a warm-up and a measured window; per-commit latency and fdatasyncs are recorded.
//!   annals and RocksDB start each measurement from an empty store in a fresh directory; the
//!   raw baseline reuses its pre-allocated file.
//! - `catchup_read`: each system is filled once with the same N events (committed durably in
//!   1000-event commits, then settled: annals seals its full segments, RocksDB flushes and
//!   compacts), and each round reads everything from the start, from the page cache: an
//!   unmeasured pass right before the measured one brings back pages the host evicted.
//!
//! Every round runs every shape on every system, interleaved (round-robin, the systems' order
//! rotated each round), so disk noise hits all systems alike; the summary takes medians over
//! rounds. Data is generated before anything is measured.

use std::{
    collections::BTreeMap,
    path::{Path, PathBuf},
    time::Instant,
};

use annals_engine::{Durability, EngineConfig, IoBackendChoice, LogConfig};
use anyhow::{bail, Context, Result};
use clap::{Args, ValueEnum};
use serde_json::{json, Value};

use crate::{
    annals::{Annals, READ_RECORDS_MAX},
    data::{CommitPool, EventFactory, PreparedCommit},
    driver::{run_appends, AppendOutcome, Window},
    raw::{RawLayout, RawLog, RawReadFile},
    report::{
        emit, now_utc, percentiles_us, progress_line, ratio, record, summarise, to_f64,
        Measurement, Subject,
    },
    rocks::Rocks,
    suite::{parse_shape, SuiteArgs, WindowArgs},
};

/// Options of `annals-bench engine`.
#[derive(Debug, Args)]
pub struct EngineArgs {
    #[command(flatten)]
    suite: SuiteArgs,
    // The window of each append measurement.
    #[command(flatten)]
    window: WindowArgs,
    /// annals' I/O backend.
    #[arg(long, value_enum, default_value_t = IoArg::Auto)]
    io: IoArg,
    /// Events in the log read by the catch-up read. Default 1 000 000 (quick: 200 000).
    #[arg(long)]
    read_events: Option<u64>,
    /// Append shapes as WRITERSxBATCH, comma-separated.
    #[arg(
        long,
        value_delimiter = ',',
        value_parser = parse_shape,
        default_value = "16x1,16x100,1x100,1x1"
    )]
    shapes: Vec<(usize, usize)>,
    /// Systems to run, comma-separated.
    #[arg(
        long,
        value_enum,
        value_delimiter = ',',
        default_value = "annals,raw,rocksdb"
    )]
    systems: Vec<SystemName>,
    /// Size of the raw baseline's pre-allocated file in MiB. Default 256: small enough that
    /// the big shapes rewrite all of it every measurement, so it stays in the page cache (this
    /// host pages out file pages idle for 60 s, and overwriting part of an evicted page costs
    /// a disk read that appending to a new page never pays).
    #[arg(long)]
    raw_file_mib: Option<u64>,
    /// Whether annals seals full segments in the background (its default). `false` is a
    /// diagnostic: it shows what sealing costs appends and what reading raw segments gives.
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set)]
    seal: bool,
    /// Whether the raw baseline writes into a pre-allocated, pre-zeroed file (the physical
    /// limit; the default). `false` is a diagnostic: every write extends a fresh file, as a log
    /// segment without pre-allocation does.
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set)]
    raw_preallocate: bool,
}

/// annals' I/O backend, as on the command line.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum IoArg {
    Std,
    IoUring,
    Auto,
}

impl From<IoArg> for IoBackendChoice {
    fn from(io: IoArg) -> Self {
        match io {
            IoArg::Std => IoBackendChoice::Std,
            IoArg::IoUring => IoBackendChoice::IoUring,
            IoArg::Auto => IoBackendChoice::Auto,
        }
    }
}

/// A system under test.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum SystemName {
    Annals,
    Raw,
    Rocksdb,
}

impl SystemName {
    fn as_str(self) -> &'static str {
        match self {
            SystemName::Annals => "annals",
            SystemName::Raw => "raw",
            SystemName::Rocksdb => "rocksdb",
        }
    }
}

/// The settings in force after defaults.
#[derive(Debug)]
struct Settings {
    rounds: usize,
    window: Window,
    read_events: u64,
    raw_file_bytes: u64,
    io: IoBackendChoice,
    shapes: Vec<(usize, usize)>,
    systems: Vec<SystemName>,
    seed: u64,
    seal: bool,
    raw_preallocate: bool,
}

impl Settings {
    fn from_args(args: &EngineArgs) -> Result<Self> {
        let window = args.window.window(args.suite.quick)?;
        let rounds = args.suite.rounds();
        if rounds == 0 || args.systems.is_empty() {
            bail!("nothing to run: --rounds and --systems must not be empty");
        }
        let raw_file_mib = args.raw_file_mib.unwrap_or(256);
        if raw_file_mib < 16 {
            bail!("--raw-file-mib {raw_file_mib} is below 16");
        }
        let mut systems = args.systems.clone();
        systems.dedup();
        Ok(Self {
            rounds,
            window,
            read_events: args.suite.or(args.read_events, 200_000, 1_000_000),
            raw_file_bytes: raw_file_mib << 20,
            io: args.io.into(),
            shapes: args.shapes.clone(),
            systems,
            seed: args.suite.seed,
            seal: args.seal,
            raw_preallocate: args.raw_preallocate,
        })
    }

    /// annals' configuration: the defaults (durable appends), with the chosen I/O backend.
    fn annals_config(&self, dir: PathBuf) -> EngineConfig {
        EngineConfig::from(LogConfig {
            durability: Durability::SyncData,
            io_backend: self.io,
            seal_enabled: self.seal,
            ..LogConfig::new(dir)
        })
    }

    fn has(&self, system: SystemName) -> bool {
        self.systems.contains(&system)
    }
}

/// Events per commit when filling the logs for the catch-up read.
const FILL_BATCH: usize = 1000;

/// The read-side stores, filled once per run.
struct ReadStores {
    annals: Option<Annals>,
    raw: Option<RawReadFile>,
    rocks: Option<Rocks>,
}

/// Runs the engine suite.
pub fn run(args: &EngineArgs) -> Result<()> {
    let settings = Settings::from_args(args)?;
    let date = now_utc();
    let started = Instant::now();
    let root = args.suite.data_dir()?;
    eprintln!(
        "annals-bench engine: {} round(s), {:?} + {:?} warm-up per append, {} events to read, \
         data in {}",
        settings.rounds,
        settings.window.measure,
        settings.window.warmup,
        settings.read_events,
        root.path().display()
    );

    // Data first, so generating it is never measured.
    let mut factory = EventFactory::new(settings.seed);
    let scratch = root.path().join("scratch");
    let mut pools = Vec::with_capacity(settings.shapes.len());
    for &(writers, batch) in &settings.shapes {
        let per_writer = (2048 / batch).max(8);
        pools.push(
            factory
                .pool(writers, per_writer, batch, &scratch)
                .context("build the commit pool")?,
        );
    }
    let read_pool = factory
        .pool(1, 16, FILL_BATCH, &scratch)
        .context("build the read pool")?;
    eprintln!(
        "data: {:.0} framed bytes per event; built in {:.1?}",
        read_pool.framed_bytes_per_event(),
        started.elapsed()
    );

    let raw_log = if settings.has(SystemName::Raw) && settings.raw_preallocate {
        let t = Instant::now();
        let layout = RawLayout::Preallocated(settings.raw_file_bytes);
        let log = RawLog::create(&root.path().join("raw-append.log"), layout)
            .context("create the raw baseline's file")?;
        eprintln!(
            "raw: pre-allocated {} MiB in {:.1?}",
            settings.raw_file_bytes >> 20,
            t.elapsed()
        );
        Some(log)
    } else {
        None
    };
    let reads = fill_read_stores(&settings, root.path(), &read_pool)?;

    let mut measurements = Vec::new();
    for round in 0..settings.rounds {
        let order = rotated(&settings.systems, round);
        for (&(writers, batch), pool) in settings.shapes.iter().zip(&pools) {
            for &system in &order {
                let m = measure_append(
                    &settings,
                    root.path(),
                    raw_log.as_ref(),
                    system,
                    pool,
                    (writers, batch),
                    round,
                    &date,
                )
                .with_context(|| {
                    format!("measure {} appends {writers}x{batch}", system.as_str())
                })?;
                progress(&settings, &m);
                record(&mut measurements, m)?;
            }
        }
        for &system in &order {
            if let Some(m) = measure_read(&settings, &reads, system, round, &date)
                .with_context(|| format!("measure the {} catch-up read", system.as_str()))?
            {
                progress(&settings, &m);
                record(&mut measurements, m)?;
            }
        }
    }
    summarise(&measurements, &date)?;
    drop(reads);
    drop(raw_log);
    let path = root.path().to_path_buf();
    root.close()
        .with_context(|| format!("remove the data directory {}", path.display()))?;
    eprintln!("done in {:.1?}", started.elapsed());
    Ok(())
}

fn rotated(systems: &[SystemName], round: usize) -> Vec<SystemName> {
    let mut order = systems.to_vec();
    order.rotate_left(round % systems.len());
    order
}

/// Fills each selected system with the same `read_events` events and lets it settle.
fn fill_read_stores(settings: &Settings, root: &Path, pool: &CommitPool) -> Result<ReadStores> {
    let n = settings.read_events;
    let commits = pool.all();
    // The commits to send: cycle through the pool; the last one is cut to size.
    let fill = |append: &mut dyn FnMut(&PreparedCommit) -> Result<u64>| -> Result<()> {
        let mut written = 0u64;
        for prepared in commits.iter().cycle() {
            if written >= n {
                break;
            }
            if written + prepared.events_count() > n {
                let keep = (n - written) as usize;
                let cut = cut_commit(prepared, keep);
                written += append(&cut)?;
            } else {
                written += append(prepared)?;
            }
        }
        Ok(())
    };
    let annals = if settings.has(SystemName::Annals) {
        let t = Instant::now();
        let annals = Annals::open(settings.annals_config(root.join("annals-read")))?;
        fill(&mut |c| annals.append(c))?;
        annals.settle()?;
        let (disk, sealed) = annals.disk_bytes();
        eprintln!(
            "annals: filled {n} events in {:.1?} ({} MiB on disk, {} MiB sealed)",
            t.elapsed(),
            disk >> 20,
            sealed >> 20
        );
        let (sealed_bytes, sealed_events, json_bytes) = annals.sealed_size()?;
        let size_ratio = ratio(sealed_bytes, json_bytes);
        eprintln!(
            "annals: {sealed_events} sealed events take {sealed_bytes} B for {json_bytes} B of JSON \
             (ratio {:.3}, target <= 0.3)",
            size_ratio.unwrap_or(f64::NAN)
        );
        emit(&serde_json::json!({
            "system": "annals",
            "workload": "sealed_size",
            "events": sealed_events,
            "sealed_bytes": sealed_bytes,
            "json_bytes": json_bytes,
            "sealed_vs_json": size_ratio,
            "target_vs_json": 0.3,
            "date": now_utc(),
        }))?;
        Some(annals)
    } else {
        None
    };
    let raw = if settings.has(SystemName::Raw) {
        let t = Instant::now();
        let raw = RawReadFile::fill(&root.join("raw-read.log"), commits, n)?;
        eprintln!("raw: filled {n} events in {:.1?}", t.elapsed());
        Some(raw)
    } else {
        None
    };
    let rocks = if settings.has(SystemName::Rocksdb) {
        let t = Instant::now();
        let rocks = Rocks::open(&root.join("rocksdb-read"))?;
        fill(&mut |c| rocks.append(c))?;
        rocks.settle()?;
        eprintln!(
            "rocksdb: filled {n} events in {:.1?} (flushed and compacted)",
            t.elapsed()
        );
        Some(rocks)
    } else {
        None
    };
    Ok(ReadStores { annals, raw, rocks })
}

/// The first `keep` events of a prepared commit.
fn cut_commit(prepared: &PreparedCommit, keep: usize) -> PreparedCommit {
    let mut commit = prepared.commit.clone();
    commit.events.truncate(keep);
    let payloads: Vec<Vec<u8>> = prepared.payloads[..keep].to_vec();
    let frames_len: usize = payloads
        .iter()
        .map(|p| p.len() + annals_engine::testing::format::FRAME_HEADER_LEN)
        .sum();
    PreparedCommit {
        commit,
        payloads,
        frames: prepared.frames[..frames_len].to_vec(),
    }
}

#[expect(
    clippy::too_many_arguments,
    reason = "one call site; a struct would only rename them"
)]
fn measure_append(
    settings: &Settings,
    root: &Path,
    raw_log: Option<&RawLog>,
    system: SystemName,
    pool: &CommitPool,
    (writers, batch): (usize, usize),
    round: usize,
    date: &str,
) -> Result<Measurement> {
    let dir = root.join(format!(
        "{}-append-r{round}-{writers}x{batch}",
        system.as_str()
    ));
    let mut extra = BTreeMap::new();
    extra.insert(
        "framed_bytes_per_event".to_owned(),
        json!(pool.framed_bytes_per_event()),
    );
    let (outcome, fdatasyncs, io_backend) = match system {
        SystemName::Annals => {
            let annals = Annals::open(settings.annals_config(dir.clone()))?;
            let mut before = None;
            let outcome = run_appends(
                writers,
                settings.window,
                || before = Some(annals.counters()),
                |w, i| annals.append(pool.get(w, i)),
            )?;
            let after = annals.counters();
            let before = before.unwrap_or_default();
            extra.insert("groups".to_owned(), json!(after.groups - before.groups));
            extra.insert("rolls".to_owned(), json!(after.rolls - before.rolls));
            extra.insert(
                "spare_rolls".to_owned(),
                json!(after.spare_rolls - before.spare_rolls),
            );
            extra.insert(
                "recycled_rolls".to_owned(),
                json!(after.recycled_rolls - before.recycled_rolls),
            );
            extra.insert("seals".to_owned(), json!(after.seals - before.seals));
            let backend = annals.io_backend();
            drop(annals);
            (outcome, Some(after.data_syncs - before.data_syncs), backend)
        }
        SystemName::Raw => {
            let fresh;
            let raw = if let Some(raw) = raw_log {
                raw.rewind();
                extra.insert("raw_layout".to_owned(), json!("preallocated"));
                raw
            } else {
                std::fs::create_dir_all(&dir)
                    .with_context(|| format!("create {}", dir.display()))?;
                fresh = RawLog::create(&dir.join("raw.log"), RawLayout::Extending)?;
                extra.insert("raw_layout".to_owned(), json!("extending"));
                &fresh
            };
            let (outcome, syncs) = raw.run_appends(pool, writers, settings.window)?;
            (outcome, Some(syncs), "std")
        }
        SystemName::Rocksdb => {
            let rocks = Rocks::open(&dir)?;
            let mut before = 0;
            let outcome = run_appends(
                writers,
                settings.window,
                || before = rocks.wal_syncs(),
                |w, i| rocks.append(pool.get(w, i)),
            )?;
            let syncs = rocks.wal_syncs() - before;
            drop(rocks);
            (outcome, Some(syncs), "posix")
        }
    };
    if dir.exists() {
        std::fs::remove_dir_all(&dir).with_context(|| format!("remove {}", dir.display()))?;
    }
    Ok(append_measurement(
        system,
        (writers, batch),
        round,
        date,
        &outcome,
        fdatasyncs,
        io_backend,
        extra,
    ))
}

#[expect(
    clippy::too_many_arguments,
    reason = "a plain constructor of the output record"
)]
fn append_measurement(
    system: SystemName,
    (writers, batch): (usize, usize),
    round: usize,
    date: &str,
    outcome: &AppendOutcome,
    fdatasyncs: Option<u64>,
    io_backend: &str,
    mut extra: BTreeMap<String, Value>,
) -> Measurement {
    let (p50_us, p99_us) = percentiles_us(&outcome.latency_ns);
    let hist = &outcome.latency_ns;
    if !hist.is_empty() {
        extra.insert(
            "p999_us".to_owned(),
            json!(to_f64(hist.value_at_quantile(0.999)) / 1000.0),
        );
        extra.insert("max_us".to_owned(), json!(to_f64(hist.max()) / 1000.0));
    }
    extra.insert("commits".to_owned(), json!(outcome.commits));
    let subject = Subject {
        system: system.as_str(),
        workload: "append",
        writers,
        batch: Some(batch),
        round,
    };
    let seconds = outcome.elapsed.as_secs_f64();
    let mut m = Measurement::new(subject, date, outcome.events, seconds, (p50_us, p99_us));
    m.fdatasyncs = fdatasyncs;
    m.events_per_fdatasync = fdatasyncs.and_then(|s| ratio(outcome.events, s));
    m.io_backend = io_backend.into();
    m.extra = extra;
    m
}

fn measure_read(
    settings: &Settings,
    reads: &ReadStores,
    system: SystemName,
    round: usize,
    date: &str,
) -> Result<Option<Measurement>> {
    let mut extra = BTreeMap::new();
    let (events, elapsed, hist, io_backend) = match system {
        SystemName::Annals => {
            let Some(annals) = &reads.annals else {
                return Ok(None);
            };
            annals.catch_up().context("warm the page cache")?;
            let (events, elapsed, hist) = annals.catch_up()?;
            let (disk, sealed) = annals.disk_bytes();
            extra.insert("disk_bytes".to_owned(), json!(disk));
            extra.insert("sealed_bytes".to_owned(), json!(sealed));
            extra.insert("read_records_max".to_owned(), json!(READ_RECORDS_MAX));
            (events, elapsed, Some(hist), annals.io_backend())
        }
        SystemName::Raw => {
            let Some(raw) = &reads.raw else {
                return Ok(None);
            };
            raw.catch_up().context("warm the page cache")?;
            let (events, elapsed, hist) = raw.catch_up()?;
            extra.insert("read_bytes_max".to_owned(), json!(4 << 20));
            (events, elapsed, Some(hist), "std")
        }
        SystemName::Rocksdb => {
            let Some(rocks) = &reads.rocks else {
                return Ok(None);
            };
            rocks.catch_up().context("warm the page cache")?;
            let (events, elapsed) = rocks.catch_up()?;
            (events, elapsed, None, "posix")
        }
    };
    let percentiles = hist.as_ref().map_or((None, None), percentiles_us);
    extra.insert("read_events".to_owned(), json!(settings.read_events));
    let subject = Subject {
        system: system.as_str(),
        workload: "catchup_read",
        writers: 1,
        batch: None,
        round,
    };
    let mut m = Measurement::new(subject, date, events, elapsed.as_secs_f64(), percentiles);
    m.io_backend = io_backend.into();
    m.extra = extra;
    Ok(Some(m))
}

fn progress(settings: &Settings, m: &Measurement) {
    let syncs = m
        .events_per_fdatasync
        .map_or_else(String::new, |e| format!("{e:.1} ev/fdatasync"));
    eprintln!(
        "{}",
        progress_line(m, settings.rounds, (12, 8), &format!("  {syncs}"))
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rotation_changes_who_goes_first() {
        let all = [SystemName::Annals, SystemName::Raw, SystemName::Rocksdb];
        assert_eq!(rotated(&all, 1)[0], SystemName::Raw);
        assert_eq!(rotated(&all, 3), all.to_vec());
    }
}
