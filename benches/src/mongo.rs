//! `annals-bench mongo`: the MongoDB export and import (`annals export`, `annals import`, the
//! real binary in its own process) against the engine's own catch-up read of the same log,
//! measured in the same run.
//!
//! Workloads (the targets: export >= 300 000 events/s, import >= 200 000 events/s,
//! resident memory under 200 MiB at 10 M events):
//! - `catchup_read`: the baseline: the tenant's event log read from 0 to its end through the
//!   engine, every event decoded (what any export must at least do), in this process.
//! - `mongo_export`: `annals export` of the tenant into a fresh directory, timed from spawn to
//!   exit (opening the store, converting every event's JSON content to BSON, writing and
//!   syncing the files); its peak resident memory is what the export reports (VmHWM).
//! - `mongo_import`: `annals import` of that export's dump into a fresh data directory, timed
//!   from spawn to exit (reading and checking every document, converting its content back to
//!   JSON, appending and syncing the log, checking the aggregate versions), with its peak
//!   resident memory.
//! - `mongo_export_small`, `mongo_import_small`: the same of a tenant of `--small-events`
//!   (default 10 000), for their peak memory beside the large one's: the memory must not grow
//!   with the log.
//!
//! The tenant is filled once per run through the engine (commits of `--batch` order-line
//! events of 250-300 bytes of JSON each, one in ten commits for an aggregate). Rounds alternate
//! the order of the workloads.

use std::path::Path;
use std::process::Command;
use std::time::Instant;

use annals_engine::{
    uuid::Uuid, AggregateCommit, AggregateEvent, Engine, EngineConfig, EventLogSequenceNumber,
    RecordBatch, ScopeId, TenantId,
};
use anyhow::{bail, ensure, Context, Result};
use clap::Args;
use serde_json::json;

use crate::data::EventFactory;
use crate::grpc::annals_binary;
use crate::report::{emit, median, now_utc, to_f64, Measurement, Subject};
use crate::suite::SuiteArgs;

/// The exported tenant.
const TENANT: TenantId = TenantId(Uuid::from_u128(0x3e3e_0000_0000_4000_8000_0000_0000_0001));

/// Options of `annals-bench mongo`.
#[derive(Debug, Args)]
pub struct MongoArgs {
    #[command(flatten)]
    suite: SuiteArgs,
    /// Events in the exported tenant. Default 1 000 000 (quick: 100 000).
    #[arg(long)]
    events: Option<u64>,
    /// Events in the small tenant whose export's memory is compared. Default 10 000.
    #[arg(long, default_value_t = 10_000)]
    small_events: u64,
    /// Events per commit while filling.
    #[arg(long, default_value_t = 1_000)]
    batch: usize,
    /// The `annals` binary [default: next to this tool].
    #[arg(long)]
    annals_bin: Option<std::path::PathBuf>,
    /// Keep the filled data directories (their path is printed), to profile an export.
    #[arg(long)]
    keep: bool,
}

/// Runs the suite.
pub fn run(args: &MongoArgs) -> Result<()> {
    let events = args.suite.or(args.events, 100_000, 1_000_000);
    let rounds = args.suite.rounds();
    let binary = annals_binary(args.annals_bin.as_deref())?;
    let date = now_utc();
    let run_dir = args.suite.data_dir()?;
    let large = run_dir.path().join("large");
    let small = run_dir.path().join("small");
    eprintln!("filling a tenant with {events} events");
    let filled = Instant::now();
    fill(&large, events, args.batch, args.suite.seed)?;
    eprintln!("filled in {:.1} s", filled.elapsed().as_secs_f64());
    fill(&small, args.small_events, args.batch, args.suite.seed)?;

    let mut results: Vec<Measurement> = Vec::new();
    let mut record = |m: Measurement| -> Result<()> {
        let peak = m
            .extra
            .get("peak_rss_kib")
            .and_then(serde_json::Value::as_u64)
            .map(|kib| format!("  peak {} MiB", kib / 1024));
        eprintln!(
            "[{}/{rounds}] {:<19}{:>11.0} ev/s{}",
            m.round + 1,
            m.workload,
            m.events_per_s,
            peak.unwrap_or_default()
        );
        emit(&m)?;
        results.push(m);
        Ok(())
    };
    for round in 0..rounds {
        let dumps_first = round % 2 == 1;
        for step in 0..2 {
            if (step == 0) == dumps_first {
                for m in export_and_import(&binary, &large, events, false, round, &date)? {
                    record(m)?;
                }
            } else {
                record(catch_up(&large, round, &date)?)?;
            }
        }
        for m in export_and_import(&binary, &small, args.small_events, true, round, &date)? {
            record(m)?;
        }
    }
    summarise(&results, events, args.small_events)?;
    if args.keep {
        eprintln!("kept {}", run_dir.keep().display());
    }
    Ok(())
}

/// Fills `dir` with a tenant of `events` events.
fn fill(dir: &Path, events: u64, batch: usize, seed: u64) -> Result<()> {
    let engine = Engine::open(EngineConfig::new(dir)).context("open the engine to fill")?;
    let tenant = engine.tenant_or_create(TENANT)?;
    let mut factory = EventFactory::new(seed);
    let mut written = 0u64;
    let mut commits = 0u64;
    let mut versions: Vec<u64> = vec![0; 1000];
    while written < events {
        let count = usize::try_from((events - written).min(batch as u64))?;
        let commit = factory.commit(count);
        if commits % 10 == 9 {
            // An aggregate's commit: one of 1000 instances, its next version expected.
            let instance = usize::try_from(commits / 10 % 1000)?;
            let aggregate = AggregateCommit {
                occurred_ns: commit.occurred_ns,
                execution_context: commit.execution_context,
                aggregate_root: Uuid::from_u128(0xa99),
                event_source_id: format!("order-{instance}"),
                expected_version: versions[instance],
                events: commit
                    .events
                    .into_iter()
                    .map(|e| AggregateEvent {
                        event_type: e.event_type,
                        public: e.public,
                        content: e.content,
                    })
                    .collect(),
            };
            tenant.commit_for_aggregate(&aggregate)?;
            versions[instance] += count as u64;
        } else {
            tenant.commit(&commit)?;
        }
        written += count as u64;
        commits += 1;
    }
    Ok(())
}

/// The engine's catch-up read of the whole default log, every event decoded.
fn catch_up(dir: &Path, round: usize, date: &str) -> Result<Measurement> {
    let engine = Engine::open(EngineConfig::new(dir))?;
    let log = engine.tenant(TENANT)?.scoped_log(ScopeId::DEFAULT)?;
    let end = log.next_sequence_number();
    let mut batch = RecordBatch::new();
    let (mut next, mut touched) = (EventLogSequenceNumber::ZERO, 0u64);
    let started = Instant::now();
    while next < end {
        log.read_into(next, 1024, 4 << 20, &mut batch)?;
        ensure!(!batch.is_empty(), "the log ended at {next} before {end}");
        for view in batch.views() {
            let view = view?;
            touched = touched.wrapping_add(view.content.len() as u64);
            next = EventLogSequenceNumber(view.sequence_number.0 + 1);
        }
    }
    let elapsed = started.elapsed();
    std::hint::black_box(touched);
    let subject = Subject {
        system: "annals",
        workload: "catchup_read",
        writers: 1,
        batch: None,
        round,
    };
    Ok(Measurement::new(
        subject,
        date,
        end.0,
        elapsed.as_secs_f64(),
        (None, None),
    ))
}

/// `annals export` of the tenant in `dir`, then `annals import` of its dump into a fresh
/// data directory: one measurement each (`mongo_export`, `mongo_import`, `_small` for the
/// small tenant).
fn export_and_import(
    binary: &Path,
    dir: &Path,
    events: u64,
    small: bool,
    round: usize,
    date: &str,
) -> Result<Vec<Measurement>> {
    let out = dir.join(format!("dump-{round}"));
    let imported = dir.with_extension(format!("imported-{round}"));
    let tenant = TENANT.0.to_string();
    let data = dir.as_os_str();
    let mut export = run_annals(
        binary,
        &[
            "export".as_ref(),
            "--data-dir".as_ref(),
            data,
            "--tenant".as_ref(),
            tenant.as_ref(),
            "--out".as_ref(),
            out.as_os_str(),
        ],
        events,
        if small {
            "mongo_export_small"
        } else {
            "mongo_export"
        },
        (round, date),
    )?;
    let dump = out.join("event_store");
    export
        .extra
        .insert("dump_bytes".into(), json!(dir_bytes(&dump)?));
    let import = run_annals(
        binary,
        &[
            "import".as_ref(),
            "--data-dir".as_ref(),
            imported.as_os_str(),
            "--tenant".as_ref(),
            tenant.as_ref(),
            dump.as_os_str(),
        ],
        events,
        if small {
            "mongo_import_small"
        } else {
            "mongo_import"
        },
        (round, date),
    )?;
    std::fs::remove_dir_all(&out)?;
    std::fs::remove_dir_all(&imported)?;
    Ok(vec![export, import])
}

/// One run of `annals` with `args`, timed from spawn to exit; its report must say it moved
/// `events` events and give its peak memory.
fn run_annals(
    binary: &Path,
    args: &[&std::ffi::OsStr],
    events: u64,
    workload: &'static str,
    (round, date): (usize, &str),
) -> Result<Measurement> {
    let started = Instant::now();
    let output = Command::new(binary)
        .args(args)
        .env_remove("RUST_LOG")
        .output()
        .with_context(|| format!("run annals {args:?}"))?;
    let elapsed = started.elapsed();
    if !output.status.success() {
        bail!(
            "annals {args:?} failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
    }
    let report = String::from_utf8_lossy(&output.stdout);
    let peak_kib: u64 = report
        .lines()
        .find_map(|l| l.strip_prefix("peak resident memory: "))
        .and_then(|rest| rest.strip_suffix(" KiB"))
        .and_then(|kib| kib.parse().ok())
        .context("the report gives the peak memory")?;
    ensure!(
        report.contains(&format!("({events} events,")),
        "annals {args:?} moved another number of events than {events}:\n{report}"
    );
    let subject = Subject {
        system: "annals",
        workload,
        writers: 1,
        batch: None,
        round,
    };
    let mut m = Measurement::new(subject, date, events, elapsed.as_secs_f64(), (None, None));
    m.extra.insert("peak_rss_kib".into(), json!(peak_kib));
    Ok(m)
}

fn dir_bytes(dir: &Path) -> Result<u64> {
    let mut total = 0;
    for entry in std::fs::read_dir(dir)? {
        total += entry?.metadata()?.len();
    }
    Ok(total)
}

/// Medians of each workload and the ratio of the export to the catch-up read.
fn summarise(results: &[Measurement], events: u64, small_events: u64) -> Result<()> {
    let rate = |workload: &str| {
        let rates: Vec<f64> = results
            .iter()
            .filter(|m| m.workload == workload)
            .map(|m| m.events_per_s)
            .collect();
        median(&rates)
    };
    let peak = |workload: &str| {
        let peaks: Vec<f64> = results
            .iter()
            .filter(|m| m.workload == workload)
            .filter_map(|m| m.extra["peak_rss_kib"].as_u64())
            .map(to_f64)
            .collect();
        median(&peaks).map(|kib| kib / 1024.0)
    };
    let export = rate("mongo_export");
    let import = rate("mongo_import");
    let read = rate("catchup_read");
    let summary = json!({
        "summary": "mongo",
        "events": events,
        "small_events": small_events,
        "export_events_per_s": export,
        "catchup_read_events_per_s": read,
        "export_to_catchup_read": export.zip(read).map(|(e, r)| e / r),
        "export_peak_rss_mib": peak("mongo_export"),
        "export_small_peak_rss_mib": peak("mongo_export_small"),
        "export_target_events_per_s": 300_000,
        "export_peak_rss_target_mib": 200,
        "import_events_per_s": import,
        "import_to_catchup_read": import.zip(read).map(|(i, r)| i / r),
        "import_peak_rss_mib": peak("mongo_import"),
        "import_small_peak_rss_mib": peak("mongo_import_small"),
        "import_target_events_per_s": 200_000,
    });
    emit(&summary)?;
    Ok(())
}
