//! `annals-bench tenants`: what tenants cost. For each tenant count, a store is filled (each
//! tenant gets commits for aggregates and plain commits), closed, and then probed by a fresh
//! process of this tool, so the figures are the process's own:
//! - `open_ms`: `Engine::open` (the log store, and RocksDB with one column family per tenant);
//! - `touch_ms`: then opening every tenant (its log recovered, its index caught up), one
//!   commit for an aggregate and one fetch of it per tenant;
//! - `rss_*_mib`: resident memory after each step (and the peak), from /proc/self/status;
//! - the index's size on disk and file count.
//!
//! Memory per tenant is bounded by design: every tenant's column family shares one block
//! cache, one write-buffer budget and one WAL (engine/README.md, "Indexes and state").

use std::{
    path::{Path, PathBuf},
    time::Instant,
};

use annals_engine::{
    uuid::Uuid, AggregateCommit, AggregateEvent, Commit, Durability, Engine, EngineConfig,
    LogConfig, TenantId, UncommittedEvent,
};
use anyhow::{ensure, Context, Result};
use clap::Args;
use serde_json::json;

use crate::{
    data::EventFactory,
    report::{emit, now_utc, rss_mib, run_probe},
};

/// Options of `annals-bench tenants`.
#[derive(Debug, Args)]
pub struct TenantsArgs {
    /// Tenant counts, comma-separated.
    #[arg(long, value_delimiter = ',', default_value = "1,100,1000")]
    counts: Vec<usize>,
    /// Events committed to each tenant before probing (half for aggregates).
    #[arg(long, default_value_t = 100)]
    events_per_tenant: usize,
    /// Parent of the run's directory (real disk). Default /var/tmp, else /tmp.
    #[arg(long)]
    dir: Option<PathBuf>,
}

/// Options of the hidden probe (run by `tenants` in a fresh process).
#[derive(Debug, Args)]
pub struct ProbeArgs {
    /// The data directory to open.
    #[arg(long)]
    data: PathBuf,
}

const ROOT: Uuid = Uuid::from_u128(0xA66);

fn tenant_id(i: usize) -> TenantId {
    TenantId(Uuid::from_u128(0x7e_0000_0000 + i as u128))
}

/// Runs the suite.
pub fn run(args: &TenantsArgs) -> Result<()> {
    let run_dir = crate::suite::data_dir(args.dir.as_deref())?;
    let date = now_utc();
    eprintln!(
        "{:>7} | {:>8} {:>9} | {:>9} {:>10} {:>9} {:>9} | {:>9} {:>6}",
        "tenants",
        "open ms",
        "touch ms",
        "rss base",
        "rss open",
        "rss all",
        "peak",
        "index MiB",
        "files"
    );
    for &count in &args.counts {
        let data = run_dir.path().join(format!("t{count}"));
        fill(&data, count, args.events_per_tenant)?;
        let mut line = run_probe(&[
            "tenants-probe".as_ref(),
            "--data".as_ref(),
            data.as_os_str(),
        ])?;
        line["workload"] = json!("tenants");
        line["tenants"] = json!(count);
        line["events_per_tenant"] = json!(args.events_per_tenant);
        line["date"] = json!(date);
        emit(&line)?;
        let f = |k: &str| line[k].as_f64().unwrap_or(f64::NAN);
        eprintln!(
            "{count:>7} | {:>8.0} {:>9.0} | {:>9.1} {:>10.1} {:>9.1} {:>9.1} | {:>9.1} {:>6}",
            f("open_ms"),
            f("touch_ms"),
            f("rss_base_mib"),
            f("rss_open_mib"),
            f("rss_touched_mib"),
            f("rss_peak_mib"),
            f("index_mib"),
            f("index_files"),
        );
        let _ = std::fs::remove_dir_all(&data);
    }
    Ok(())
}

fn fill(data: &Path, count: usize, events: usize) -> Result<()> {
    let config = EngineConfig::from(LogConfig {
        durability: Durability::Buffered,
        ..LogConfig::new(data)
    });
    let engine = Engine::open(config).context("open the store to fill")?;
    let mut factory = EventFactory::new(7);
    let per_commit = 10usize;
    for t in 0..count {
        let tenant = engine.create_tenant(tenant_id(t))?;
        let commits = events.div_ceil(per_commit);
        for c in 0..commits {
            let commit = factory.commit(per_commit);
            if c % 2 == 0 {
                tenant.commit_for_aggregate(&AggregateCommit {
                    occurred_ns: commit.occurred_ns,
                    execution_context: commit.execution_context,
                    aggregate_root: ROOT,
                    event_source_id: format!("agg-{}", c % 4),
                    expected_version: tenant.aggregate_version(ROOT, &format!("agg-{}", c % 4))?,
                    events: commit
                        .events
                        .into_iter()
                        .map(|e| AggregateEvent {
                            event_type: e.event_type,
                            public: false,
                            content: e.content,
                        })
                        .collect(),
                })?;
            } else {
                tenant.commit(&commit)?;
            }
        }
    }
    Ok(())
}

/// The probe: opens the store, touches every tenant, prints one JSON line.
pub fn probe(args: &ProbeArgs) -> Result<()> {
    let rss_base = rss_mib("VmRSS:");
    let started = Instant::now();
    let engine = Engine::open(EngineConfig::new(&args.data)).context("open the store")?;
    let open_ms = started.elapsed().as_secs_f64() * 1000.0;
    let rss_open = rss_mib("VmRSS:");
    let started = Instant::now();
    let mut tenants = Vec::new();
    for id in engine.tenants() {
        let tenant = engine.tenant(id)?;
        let version = tenant.aggregate_version(ROOT, "probe")?;
        tenant.commit_for_aggregate(&AggregateCommit {
            aggregate_root: ROOT,
            event_source_id: "probe".into(),
            expected_version: version,
            events: vec![AggregateEvent {
                content: "{\"probe\":true}".into(),
                ..AggregateEvent::default()
            }],
            ..AggregateCommit::default()
        })?;
        let fetched = tenant.fetch_for_aggregate(ROOT, "agg-0", &[])?;
        ensure!(!fetched.events.is_empty(), "tenant {id} lost its aggregate");
        // A plain commit too, so every tenant's log has been written since open.
        tenant.commit(&Commit {
            events: vec![UncommittedEvent {
                event_source_id: "probe".into(),
                content: "{}".into(),
                ..UncommittedEvent::default()
            }],
            ..Commit::default()
        })?;
        tenants.push(tenant);
    }
    let touch_ms = started.elapsed().as_secs_f64() * 1000.0;
    let rss_touched = rss_mib("VmRSS:");
    let (mut index_bytes, mut index_files) = (0u64, 0u64);
    for entry in std::fs::read_dir(args.data.join("index")).context("list the index")? {
        let meta = entry?.metadata()?;
        index_bytes += meta.len();
        index_files += 1;
    }
    let line = json!({
        "open_ms": open_ms,
        "touch_ms": touch_ms,
        "rss_base_mib": rss_base,
        "rss_open_mib": rss_open,
        "rss_touched_mib": rss_touched,
        "rss_peak_mib": rss_mib("VmHWM:"),
        "index_mib": crate::report::to_f64(index_bytes) / 1_048_576.0,
        "index_files": index_files,
    });
    println!("{line}");
    drop(tenants);
    drop(engine);
    Ok(())
}
