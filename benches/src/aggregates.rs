//! `annals-bench aggregates`: commits for aggregates and fetches of aggregates, against a plain
//! commit of the same shape, RocksDB alone, and PostgreSQL 15, interleaved in one run.
//!
//! Workloads:
//! - `commit_aggregate` (WRITERS x 1 event): each writer owns `--aggregates-per-writer`
//!   aggregates and commits to them in turn at the version it knows (no conflicts, as for
//!   an application that loaded the aggregate). Systems: `annals` (`commit_for_aggregate`),
//!   `annals_plain` (a plain commit of the same events: what the version check and index
//!   cost), `rocksdb` (the same check done by hand: a lock per aggregate, read the version
//!   key, write events and version in one synced batch), `postgres` (one INSERT per event
//!   in autocommit mode, conflicts caught by the unique constraint). Every measurement starts
//!   from an empty store.
//! - `fetch_aggregate` (aggregates of `--fetch-sizes` events): one reader fetches random
//!   aggregates, whole and decoded, from a store filled once before the rounds with every size
//!   class, their commits interleaved so an aggregate's events are spread over the log.
//!   annals' store uses 8 MiB segments, so most of it is sealed (compressed) when read.
//!   Systems: `annals`, `rocksdb` (events stored under aggregate-ordered keys, read by a
//!   prefix scan), `postgres` (SELECT by the unique index).
//!
//! Output: the engine suite's JSON lines, then one `ratio` line per workload and a table.

use std::{
    path::Path,
    sync::Arc,
    time::{Duration, Instant},
};

use annals_engine::{
    uuid::Uuid, AggregateCommit, AggregateEvent, Commit, Durability, Engine, EngineConfig,
    ExecutionContext, LogConfig, Tenant, TenantId, UncommittedEvent,
};
use anyhow::{bail, ensure, Context, Result};
use bytesize::ByteSize;
use clap::{Args, ValueEnum};
use hdrhistogram::Histogram;
use parking_lot::Mutex;
use rand::{rngs::SmallRng, Rng, SeedableRng};
use rocksdb::{Options, WriteBatch, WriteOptions, DB};
use serde_json::{json, Value};

use crate::{
    data::EventFactory,
    driver::{run_appends, Window},
    pg::PgCluster,
    report::{emit, fixed, median, now_utc, percentiles_us, record, Measurement, Subject},
    suite::{self, SuiteArgs},
};

/// Options of `annals-bench aggregates`.
#[derive(Debug, Args)]
pub struct AggregatesArgs {
    #[command(flatten)]
    suite: SuiteArgs,
    /// Measured seconds per measurement (after a warm-up of 0.5, quick: 0.2). Default 4
    /// (quick: 1).
    #[arg(long)]
    seconds: Option<f64>,
    /// Concurrent writers of `commit_aggregate`. Default 16.
    #[arg(long, default_value_t = 16)]
    writers: usize,
    /// Aggregates each writer commits to in turn. Default 1000.
    #[arg(long, default_value_t = 1000)]
    aggregates_per_writer: usize,
    /// Sizes (events per aggregate) of the fetched aggregates, comma-separated.
    #[arg(long, value_delimiter = ',', default_value = "10,1000")]
    fetch_sizes: Vec<usize>,
    /// Events of each fetch size class in the store. Default 100 000 (quick: 20 000).
    #[arg(long)]
    fetch_events: Option<usize>,
    /// Systems, comma-separated.
    #[arg(
        long,
        value_enum,
        value_delimiter = ',',
        default_value = "annals,annals-plain,rocksdb,postgres"
    )]
    systems: Vec<System>,
    /// annals' `index.aggregate-versions-cached` for the commits (a diagnostic: 0 reads the
    /// index for every aggregate the indexer has passed). Default the engine's.
    #[arg(long, hide = true)]
    versions_cached: Option<usize>,
}

/// A system under test.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum System {
    Annals,
    AnnalsPlain,
    Rocksdb,
    Postgres,
}

impl System {
    fn as_str(self) -> &'static str {
        match self {
            System::Annals => "annals",
            System::AnnalsPlain => "annals_plain",
            System::Rocksdb => "rocksdb",
            System::Postgres => "postgres",
        }
    }
}

const TENANT: TenantId = TenantId(Uuid::from_u128(0xA115));

/// Contents and types drawn from the engine suite's generator, reused round-robin.
struct Contents {
    events: Vec<UncommittedEvent>,
    execution_context: ExecutionContext,
}

impl Contents {
    fn new(seed: u64, n: usize) -> Self {
        let mut factory = EventFactory::new(seed);
        let commit = factory.commit(n);
        Self {
            events: commit.events,
            execution_context: commit.execution_context,
        }
    }

    fn get(&self, i: u64) -> &UncommittedEvent {
        &self.events[(i as usize) % self.events.len()]
    }
}

fn root_of(size_class: usize) -> Uuid {
    Uuid::from_u128(0xA66_0000 + size_class as u128)
}

fn event_source(writer: usize, aggregate: usize) -> String {
    format!("{writer:04}-{aggregate:08}")
}

fn now_ns() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_nanos()).unwrap_or(i64::MAX))
}

/// Runs the suite.
pub fn run(args: &AggregatesArgs) -> Result<()> {
    let rounds = args.suite.rounds();
    let window = suite::window(args.suite.quick, args.seconds, None)?;
    let measure = window.measure;
    let fetch_events = args.suite.or(args.fetch_events, 20_000, 100_000);
    ensure!(
        rounds > 0 && args.writers > 0 && args.aggregates_per_writer > 0,
        "--rounds, --writers and --aggregates-per-writer must be positive"
    );
    ensure!(
        args.fetch_sizes
            .iter()
            .all(|s| *s > 0 && *s <= fetch_events),
        "every fetch size must be in 1..=--fetch-events"
    );
    let run_dir = args.suite.data_dir()?;
    let parent = run_dir
        .path()
        .parent()
        .context("the run directory has a parent")?
        .to_path_buf();
    let date = now_utc();
    let contents = Contents::new(args.suite.seed, 4096);
    let mut systems = args.systems.clone();
    systems.dedup();
    let pg = if systems.contains(&System::Postgres) {
        eprintln!("starting a throwaway PostgreSQL cluster");
        let pg = PgCluster::start(&parent)?;
        eprintln!("PostgreSQL {}", pg.version()?);
        Some(pg)
    } else {
        None
    };

    // Fetch stores, filled once.
    eprintln!(
        "filling the fetch stores ({} size classes x {fetch_events} events)",
        args.fetch_sizes.len()
    );
    let fetch_stores = FetchStores::fill(
        run_dir.path(),
        &systems,
        pg.as_ref(),
        &contents,
        &args.fetch_sizes,
        fetch_events,
    )?;

    // Settle: the fills leave dirty pages (PostgreSQL's buffers above all) whose writeback
    // would land on the first measurements' fsyncs.
    if let Some(pg) = &pg {
        pg.connect()?
            .batch_execute("CHECKPOINT")
            .context("checkpoint PostgreSQL")?;
    }
    let status = std::process::Command::new("sync")
        .status()
        .context("run sync")?;
    ensure!(status.success(), "sync failed");

    let mut measurements = Vec::new();
    for round in 0..rounds {
        let mut order = systems.clone();
        let len = order.len();
        order.rotate_left(round % len);
        for &system in &order {
            let m = measure_commits(
                system,
                round,
                run_dir.path(),
                pg.as_ref(),
                &contents,
                args,
                window,
                &date,
            )?;
            progress(&format!("round {round} commit_aggregate"), &m);
            record(&mut measurements, m)?;
        }
        for &size in &args.fetch_sizes {
            for &system in &order {
                if system == System::AnnalsPlain {
                    continue;
                }
                let m =
                    fetch_stores.measure(system, size, round, measure, &date, args.suite.seed)?;
                progress(&format!("round {round} fetch_aggregate {size:>5}"), &m);
                record(&mut measurements, m)?;
            }
        }
    }
    summarise(&measurements, &date)
}

/// One line for people on stderr.
fn progress(label: &str, m: &Measurement) {
    eprintln!(
        "{label} {:>12}: {:>9.0} ev/s p50 {:>7.0} us p99 {:>7.0} us",
        m.system,
        m.events_per_s,
        m.p50_us.unwrap_or(0.0),
        m.p99_us.unwrap_or(0.0)
    );
}

// ---- commits ------------------------------------------------------------------------------

#[expect(
    clippy::too_many_arguments,
    reason = "one call site; the settings of one measurement"
)]
fn measure_commits(
    system: System,
    round: usize,
    run_dir: &Path,
    pg: Option<&PgCluster>,
    contents: &Contents,
    args: &AggregatesArgs,
    window: Window,
    date: &str,
) -> Result<Measurement> {
    let dir = run_dir.join(format!("commit-{}-{round}", system.as_str()));
    let per_writer = args.aggregates_per_writer;
    // Writer w's iteration i commits an event of the pool to aggregate i % per_writer at
    // version i / per_writer.
    let writers = args.writers as u64;
    let at = |writer: usize, i: u64| {
        (
            event_source(writer, (i % per_writer as u64) as usize),
            i / per_writer as u64,
            contents.get(i * writers + writer as u64),
        )
    };
    let root = root_of(0);
    // Every system runs the same closed loop; only how it commits writer w's event differs.
    let drive = |commit: &(dyn Fn(usize, String, u64, &UncommittedEvent) -> Result<()> + Sync)| {
        run_appends(
            args.writers,
            window,
            || {},
            |writer, i| {
                let (source, version, event) = at(writer, i);
                commit(writer, source, version, event)?;
                Ok(1)
            },
        )
    };
    let outcome = match system {
        System::Annals | System::AnnalsPlain => {
            let mut config = EngineConfig::new(&dir);
            if let Some(cached) = args.versions_cached {
                config.index.aggregate_versions_cached = cached;
            }
            let engine = Engine::open(config).context("open annals")?;
            let tenant = engine.tenant_or_create(TENANT)?;
            let outcome = drive(&|_, source, version, event| {
                if system == System::Annals {
                    tenant
                        .commit_for_aggregate(&AggregateCommit {
                            occurred_ns: now_ns(),
                            execution_context: contents.execution_context.clone(),
                            aggregate_root: root,
                            event_source_id: source,
                            expected_version: version,
                            events: vec![AggregateEvent {
                                event_type: event.event_type,
                                public: false,
                                content: event.content.clone(),
                            }],
                        })
                        .context("commit for aggregate")?;
                } else {
                    tenant
                        .commit(&Commit {
                            occurred_ns: now_ns(),
                            execution_context: contents.execution_context.clone(),
                            events: vec![UncommittedEvent {
                                event_source_id: source,
                                ..event.clone()
                            }],
                        })
                        .context("commit")?;
                }
                Ok(())
            })?;
            drop(tenant);
            drop(engine);
            outcome
        }
        System::Rocksdb => {
            let store = RocksAggregates::open(&dir, true)?;
            drive(&|_, source, version, event| {
                store.commit(root, &source, version, &event.content)
            })?
        }
        System::Postgres => {
            let pg = pg.context("PostgreSQL is not running")?;
            let mut setup = pg.connect()?;
            setup
                .batch_execute(&format!("DROP TABLE IF EXISTS events; {PG_SCHEMA}"))
                .context("create the events table")?;
            let clients: Vec<Mutex<postgres::Client>> = (0..args.writers)
                .map(|_| pg.connect().map(Mutex::new))
                .collect::<Result<_>>()?;
            let statements: Vec<postgres::Statement> = clients
                .iter()
                .map(|c| c.lock().prepare(PG_INSERT).context("prepare the insert"))
                .collect::<Result<_>>()?;
            drive(&|writer, source, version, event| {
                clients[writer]
                    .lock()
                    .execute(
                        &statements[writer],
                        &[
                            &root,
                            &source,
                            &i64::try_from(version)?,
                            &event.event_type.id,
                            &event.content,
                        ],
                    )
                    .context("insert an event")?;
                Ok(())
            })?
        }
    };
    let _ = std::fs::remove_dir_all(&dir);
    let subject = Subject {
        system: system.as_str(),
        workload: "commit_aggregate",
        writers: args.writers,
        batch: Some(1),
        round,
    };
    Ok(Measurement::new(
        subject,
        date,
        outcome.events,
        outcome.elapsed.as_secs_f64(),
        percentiles_us(&outcome.latency_ns),
    ))
}

const PG_SCHEMA: &str = "CREATE TABLE events (
    seq bigserial PRIMARY KEY,
    aggregate_root uuid NOT NULL,
    event_source text NOT NULL,
    version bigint NOT NULL,
    event_type uuid NOT NULL,
    occurred timestamptz NOT NULL DEFAULT now(),
    content jsonb NOT NULL,
    UNIQUE (aggregate_root, event_source, version)
);";

const PG_INSERT: &str =
    "INSERT INTO events (aggregate_root, event_source, version, event_type, content) \
     VALUES ($1, $2, $3, $4, $5::text::jsonb)";

/// Aggregates in RocksDB alone: `e` root source version -> content, `v` root source -> count.
struct RocksAggregates {
    db: DB,
    write: WriteOptions,
    locks: Vec<Mutex<()>>,
}

impl RocksAggregates {
    fn open(dir: &Path, sync: bool) -> Result<Self> {
        let mut options = Options::default();
        options.create_if_missing(true);
        let db = DB::open(&options, dir).context("open RocksDB")?;
        let mut write = WriteOptions::default();
        write.set_sync(sync);
        Ok(Self {
            db,
            write,
            locks: (0..1024).map(|_| Mutex::new(())).collect(),
        })
    }

    fn key(kind: u8, root: Uuid, source: &str) -> Vec<u8> {
        let mut key = Vec::with_capacity(21 + source.len() + 8);
        key.push(kind);
        key.extend_from_slice(root.as_bytes());
        key.extend_from_slice(
            &u32::try_from(source.len())
                .unwrap_or(u32::MAX)
                .to_le_bytes(),
        );
        key.extend_from_slice(source.as_bytes());
        key
    }

    /// Checks the version and writes the event and the new version in one batch.
    fn commit(&self, root: Uuid, source: &str, expected: u64, content: &str) -> Result<()> {
        let version_key = Self::key(b'v', root, source);
        let stripe = version_key.iter().fold(0usize, |h, b| {
            h.wrapping_mul(31).wrapping_add(usize::from(*b))
        });
        let _held = self.locks[stripe % self.locks.len()].lock();
        let actual = self
            .db
            .get(&version_key)
            .context("read a version")?
            .and_then(|v| v.as_slice().try_into().ok().map(u64::from_le_bytes))
            .unwrap_or(0);
        if actual != expected {
            bail!("concurrency conflict: expected {expected}, actual {actual}");
        }
        let mut event_key = Self::key(b'e', root, source);
        #[expect(
            clippy::big_endian_bytes,
            reason = "keys sort bytewise: versions in order"
        )]
        event_key.extend_from_slice(&expected.to_be_bytes());
        let mut batch = WriteBatch::default();
        batch.put(event_key, content.as_bytes());
        batch.put(version_key, (expected + 1).to_le_bytes());
        self.db
            .write_opt(batch, &self.write)
            .context("write to RocksDB")
    }

    /// Every event of an aggregate, by prefix scan.
    fn fetch(&self, root: Uuid, source: &str) -> Result<Vec<Vec<u8>>> {
        let prefix = Self::key(b'e', root, source);
        let mut iter = self.db.raw_iterator();
        iter.seek(&prefix);
        let mut out = Vec::new();
        while let (Some(k), Some(v)) = (iter.key(), iter.value()) {
            if !k.starts_with(&prefix) {
                break;
            }
            out.push(v.to_vec());
            iter.next();
        }
        iter.status().context("iterate over RocksDB")?;
        Ok(out)
    }
}

// ---- fetches ------------------------------------------------------------------------------

struct FetchStores {
    annals: Option<(Engine, Arc<Tenant>)>,
    rocks: Option<RocksAggregates>,
    pg: Option<(Mutex<postgres::Client>, postgres::Statement)>,
    /// Aggregates per size class.
    counts: Vec<(usize, usize)>,
}

impl FetchStores {
    fn fill(
        dir: &Path,
        systems: &[System],
        pg: Option<&PgCluster>,
        contents: &Contents,
        sizes: &[usize],
        events_per_class: usize,
    ) -> Result<Self> {
        let counts: Vec<(usize, usize)> = sizes
            .iter()
            .map(|&size| (size, (events_per_class / size).max(1)))
            .collect();
        // Interleave: every aggregate of every class gets a chunk of its events in turn.
        let mut plan: Vec<(usize, usize, u64, usize)> = Vec::new(); // (size, aggregate, version, n)
        let chunk = |size: usize| (size / 10).clamp(1, 10);
        let max_chunks = counts
            .iter()
            .map(|(s, _)| s.div_ceil(chunk(*s)))
            .max()
            .unwrap_or(0);
        for c in 0..max_chunks {
            for &(size, aggregates) in &counts {
                let n = chunk(size);
                let version = (c * n) as u64;
                if version as usize >= size {
                    continue;
                }
                let n = n.min(size - version as usize);
                for a in 0..aggregates {
                    plan.push((size, a, version, n));
                }
            }
        }
        let annals = if systems.contains(&System::Annals) {
            let config = EngineConfig::from(LogConfig {
                durability: Durability::Buffered,
                segment_bytes_max: ByteSize::mib(8),
                ..LogConfig::new(dir.join("fetch-annals"))
            });
            let engine = Engine::open(config)?;
            let tenant = engine.tenant_or_create(TENANT)?;
            for (i, &(size, a, version, n)) in plan.iter().enumerate() {
                tenant.commit_for_aggregate(&AggregateCommit {
                    occurred_ns: now_ns(),
                    execution_context: contents.execution_context.clone(),
                    aggregate_root: root_of(size),
                    event_source_id: event_source(0, a),
                    expected_version: version,
                    events: (0..n)
                        .map(|k| {
                            let e = contents.get((i * 10 + k) as u64);
                            AggregateEvent {
                                event_type: e.event_type,
                                public: false,
                                content: e.content.clone(),
                            }
                        })
                        .collect(),
                })?;
            }
            let failures = engine.wait_for_sealing();
            ensure!(failures.is_empty(), "sealing failed: {failures:?}");
            Some((engine, tenant))
        } else {
            None
        };
        let rocks = if systems.contains(&System::Rocksdb) {
            let store = RocksAggregates::open(&dir.join("fetch-rocksdb"), false)?;
            for (i, &(size, a, version, n)) in plan.iter().enumerate() {
                for k in 0..n {
                    // The value is the event as annals encodes it, so both decode the same.
                    store.commit(
                        root_of(size),
                        &event_source(0, a),
                        version + k as u64,
                        &encoded_event(contents, i * 10 + k, size, a, version + k as u64),
                    )?;
                }
            }
            store.db.flush().context("flush RocksDB")?;
            store.db.compact_range(None::<&[u8]>, None::<&[u8]>);
            Some(store)
        } else {
            None
        };
        let pg = match (systems.contains(&System::Postgres), pg) {
            (true, Some(pg)) => {
                let mut client = pg.connect()?;
                client
                    .batch_execute(&format!(
                        "DROP TABLE IF EXISTS fetch_events; {}",
                        PG_SCHEMA.replace("events", "fetch_events")
                    ))
                    .context("create the fetch table")?;
                let mut tx = client.transaction()?;
                let insert = tx.prepare(&PG_INSERT.replace("events", "fetch_events"))?;
                for (i, &(size, a, version, n)) in plan.iter().enumerate() {
                    for k in 0..n {
                        let e = contents.get((i * 10 + k) as u64);
                        tx.execute(
                            &insert,
                            &[
                                &root_of(size),
                                &event_source(0, a),
                                &i64::try_from(version + k as u64)?,
                                &e.event_type.id,
                                &e.content,
                            ],
                        )?;
                    }
                }
                tx.commit()?;
                client.batch_execute("VACUUM ANALYZE fetch_events")?;
                let select = client.prepare(
                    "SELECT seq, version, event_type, occurred, content::text FROM fetch_events \
                     WHERE aggregate_root = $1 AND event_source = $2 ORDER BY version",
                )?;
                Some((Mutex::new(client), select))
            }
            _ => None,
        };
        Ok(Self {
            annals,
            rocks,
            pg,
            counts,
        })
    }

    fn measure(
        &self,
        system: System,
        size: usize,
        round: usize,
        measure: Duration,
        date: &str,
        seed: u64,
    ) -> Result<Measurement> {
        let aggregates = self
            .counts
            .iter()
            .find(|(s, _)| *s == size)
            .map_or(1, |(_, n)| *n);
        let root = root_of(size);
        let mut rng = SmallRng::seed_from_u64(seed ^ ((round as u64) << 8) ^ size as u64);
        let mut hist = Histogram::<u64>::new(3).context("create a histogram")?;
        let (mut events, mut fetches) = (0u64, 0u64);
        let started = Instant::now();
        while started.elapsed() < measure {
            let source = event_source(0, rng.gen_range(0..aggregates));
            let began = Instant::now();
            let n = match system {
                System::Annals => {
                    let (_, tenant) = self.annals.as_ref().context("annals store")?;
                    let fetched = tenant.fetch_for_aggregate(root, &source, &[])?;
                    std::hint::black_box(&fetched);
                    fetched.events.len()
                }
                System::Rocksdb => {
                    let store = self.rocks.as_ref().context("rocksdb store")?;
                    let values = store.fetch(root, &source)?;
                    let decoded = values
                        .iter()
                        .map(|v| serde_json::from_slice::<StoredEvent>(v))
                        .collect::<Result<Vec<_>, _>>()
                        .context("decode an event stored in RocksDB")?;
                    std::hint::black_box(&decoded);
                    decoded.len()
                }
                System::Postgres => {
                    let (client, select) = self.pg.as_ref().context("postgres store")?;
                    let rows = client.lock().query(select, &[&root, &source])?;
                    let decoded: Vec<(i64, i64, Uuid, String)> = rows
                        .iter()
                        .map(|r| (r.get(0), r.get(1), r.get(2), r.get(4)))
                        .collect();
                    std::hint::black_box(&decoded);
                    decoded.len()
                }
                System::AnnalsPlain => bail!("annals_plain has no fetch"),
            };
            ensure!(
                n == size,
                "{} fetched {n} events of an aggregate of {size}",
                system.as_str()
            );
            hist.record(u64::try_from(began.elapsed().as_nanos()).unwrap_or(u64::MAX))
                .context("record a latency")?;
            events += n as u64;
            fetches += 1;
        }
        let seconds = started.elapsed().as_secs_f64();
        let subject = Subject {
            system: system.as_str(),
            workload: "fetch_aggregate",
            writers: 1,
            batch: Some(size),
            round,
        };
        let mut m = Measurement::new(subject, date, events, seconds, percentiles_us(&hist));
        m.extra.insert(
            "fetches_per_s".to_owned(),
            json!(crate::report::to_f64(fetches) / seconds),
        );
        m.extra.insert("aggregate_events".to_owned(), json!(size));
        Ok(m)
    }
}

/// An event as the RocksDB-only store keeps it: one JSON document (as a document store would).
#[derive(Debug, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
#[expect(dead_code, reason = "decoded to be measured, not read")]
struct StoredEvent {
    event_source_id: String,
    aggregate_root: String,
    version: u64,
    event_type: String,
    content: String,
}

/// The document `StoredEvent` decodes.
fn encoded_event(
    contents: &Contents,
    i: usize,
    size: usize,
    aggregate: usize,
    version: u64,
) -> String {
    let e = contents.get(i as u64);
    json!({
        "eventSourceId": event_source(0, aggregate),
        "aggregateRoot": root_of(size).to_string(),
        "version": version,
        "eventType": e.event_type.id.to_string(),
        "content": e.content,
    })
    .to_string()
}

// ---- summary ------------------------------------------------------------------------------

fn summarise(measurements: &[Measurement], date: &str) -> Result<()> {
    let mut shapes: Vec<(&'static str, Option<usize>)> = Vec::new();
    for m in measurements {
        if !shapes.contains(&(m.workload, m.batch)) {
            shapes.push((m.workload, m.batch));
        }
    }
    eprintln!();
    eprintln!(
        "{:<17} {:>5} | {:>11} {:>12} {:>11} {:>11} | {:>8} {:>8} {:>8}",
        "workload",
        "size",
        "annals",
        "annals_plain",
        "rocksdb",
        "postgres",
        "/plain",
        "/rocks",
        "/pg"
    );
    for (workload, batch) in shapes {
        // The median of one figure of one system over the rounds of this shape.
        let median_of = |system: &str, figure: fn(&Measurement) -> Option<f64>| {
            let values: Vec<f64> = measurements
                .iter()
                .filter(|m| m.system == system && m.workload == workload && m.batch == batch)
                .filter_map(figure)
                .collect();
            median(&values)
        };
        let of = |system: &str| median_of(system, |m| Some(m.events_per_s));
        let p99 = |system: &str| median_of(system, |m| m.p99_us);
        let vs = |other: &str| match (of("annals"), of(other)) {
            (Some(a), Some(b)) if b > 0.0 => Some(a / b),
            _ => None,
        };
        let (target_plain, target_pg) = if workload == "commit_aggregate" {
            (Some(0.8), Some(3.0))
        } else {
            (None, None)
        };
        let line: Value = json!({
            "workload": "ratio",
            "of_workload": workload,
            "batch": batch,
            "annals_events_per_s": of("annals"),
            "annals_plain_events_per_s": of("annals_plain"),
            "rocksdb_events_per_s": of("rocksdb"),
            "postgres_events_per_s": of("postgres"),
            "annals_vs_plain": vs("annals_plain"),
            "annals_vs_rocksdb": vs("rocksdb"),
            "annals_vs_postgres": vs("postgres"),
            "target_vs_plain": target_plain,
            "target_vs_postgres": target_pg,
            "annals_p99_us": p99("annals"),
            "rocksdb_p99_us": p99("rocksdb"),
            "postgres_p99_us": p99("postgres"),
            "date": date,
        });
        emit(&line)?;
        eprintln!(
            "{:<17} {:>5} | {:>11} {:>12} {:>11} {:>11} | {:>8} {:>8} {:>8}",
            workload,
            batch.map_or_else(|| "-".to_owned(), |b| b.to_string()),
            fixed(of("annals"), 0),
            fixed(of("annals_plain"), 0),
            fixed(of("rocksdb"), 0),
            fixed(of("postgres"), 0),
            fixed(vs("annals_plain"), 2),
            fixed(vs("rocksdb"), 2),
            fixed(vs("postgres"), 2),
        );
    }
    Ok(())
}
