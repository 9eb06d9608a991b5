//! `annals-bench reopen`: what opening a store costs after a crash, and whether that cost grows
//! with the log. For each size (default 1 M and 10 M events), a store is filled with commits
//! of 1 000 events and its full segments sealed; then, per round:
//! 1. a fresh process of this tool opens the store and appends commits of 100 events (durable,
//!    the default settings) until it is killed with SIGKILL in the middle of them;
//! 2. another fresh process opens the store (`Engine::open`: the log store's recovery of the
//!    active segment and RocksDB) and makes the first commit (opening the tenant, its index
//!    caught up with the log, one durable event), and reports both times and its resident
//!    memory after each step (and its peak), from /proc/self/status.
//!
//! Target (issue 18): at 10 M events, open plus first commit within 1 s, and neither time nor
//! memory growing with the sealed part of the log (the 10 M figures against the 1 M ones).

use std::{
    io::{BufRead, BufReader},
    path::{Path, PathBuf},
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use annals_engine::{uuid::Uuid, Commit, Engine, EngineConfig, TenantId, UncommittedEvent};
use anyhow::{ensure, Context, Result};
use clap::{Args, ValueEnum};
use serde_json::json;

use crate::{
    data::EventFactory,
    report::{emit, median, now_utc, rss_mib, run_probe},
};

/// Options of `annals-bench reopen`.
#[derive(Debug, Args)]
pub struct ReopenArgs {
    /// Store sizes in events, comma-separated. Default 1000000,10000000 (quick: 100000,1000000).
    #[arg(long, value_delimiter = ',')]
    sizes: Option<Vec<u64>>,
    /// Crash-and-reopen rounds per size.
    #[arg(long, default_value_t = 3)]
    rounds: usize,
    /// Small sizes that finish in a minute.
    #[arg(long)]
    quick: bool,
    /// How long the appender runs before it is killed, in milliseconds.
    #[arg(long, default_value_t = 300)]
    append_ms: u64,
    /// Parent of the run's directory (real disk). Default /var/tmp, else /tmp.
    #[arg(long)]
    dir: Option<PathBuf>,
}

/// What a probe process does.
#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum ProbeMode {
    /// Fills the store up to `--events`, seals it, says `ready`, then appends until killed.
    Append,
    /// Opens the store and commits once; prints one JSON line.
    Open,
}

/// Options of the hidden probe (run by `reopen` in a fresh process).
#[derive(Debug, Args)]
pub struct ReopenProbeArgs {
    /// The data directory.
    #[arg(long)]
    data: PathBuf,
    #[arg(long, value_enum)]
    mode: ProbeMode,
    /// Events the store holds before the appender says it is ready.
    #[arg(long, default_value_t = 0)]
    events: u64,
}

const TENANT: TenantId = TenantId(Uuid::from_u128(0x5e0_0e11));

/// Runs the suite.
pub fn run(args: &ReopenArgs) -> Result<()> {
    let sizes = args.sizes.clone().unwrap_or_else(|| {
        if args.quick {
            vec![100_000, 1_000_000]
        } else {
            vec![1_000_000, 10_000_000]
        }
    });
    let run_dir = crate::suite::data_dir(args.dir.as_deref())?;
    let date = now_utc();
    let exe = std::env::current_exe().context("find this program")?;
    eprintln!(
        "annals-bench reopen: sizes {sizes:?}, {} round(s), appender killed after {} ms, data in {}",
        args.rounds,
        args.append_ms,
        run_dir.path().display()
    );
    let mut medians: Vec<serde_json::Value> = Vec::new();
    for &size in &sizes {
        let data = run_dir.path().join(format!("reopen-{size}"));
        let mut lines: Vec<serde_json::Value> = Vec::new();
        for round in 0..args.rounds.max(1) {
            let filled = Instant::now();
            crash_while_appending(&exe, &data, size, Duration::from_millis(args.append_ms))?;
            if round == 0 {
                eprintln!(
                    "  {size} events: filled, sealed and crashed in {:.1?}",
                    filled.elapsed()
                );
            }
            let mut line = run_probe(&[
                "reopen-probe".as_ref(),
                "--mode".as_ref(),
                "open".as_ref(),
                "--data".as_ref(),
                data.as_os_str(),
            ])?;
            line["system"] = json!("annals");
            line["workload"] = json!("reopen");
            line["size"] = json!(size);
            line["round"] = json!(round);
            line["date"] = json!(date);
            emit(&line)?;
            let f = |k: &str| line[k].as_f64().unwrap_or(f64::NAN);
            eprintln!(
                "  [{}/{}] {size:>9} events (log {:>9}, {:>5.0} MiB sealed, {:>4.0} MiB raw): open {:>6.1} ms, first commit {:>6.1} ms, rss {:>5.1} / {:>5.1} MiB, peak {:>5.1} MiB",
                round + 1,
                args.rounds,
                f("log_events"),
                f("sealed_mib"),
                f("raw_mib"),
                f("open_ms"),
                f("first_commit_ms"),
                f("rss_open_mib"),
                f("rss_committed_mib"),
                f("rss_peak_mib"),
            );
            lines.push(line);
        }
        let med = |k: &str| {
            let values: Vec<f64> = lines.iter().filter_map(|l| l[k].as_f64()).collect();
            median(&values)
        };
        let summary = json!({
            "workload": "reopen_median",
            "size": size,
            "rounds": lines.len(),
            "open_ms": med("open_ms"),
            "first_commit_ms": med("first_commit_ms"),
            "total_ms": med("total_ms"),
            "rss_committed_mib": med("rss_committed_mib"),
            "rss_peak_mib": med("rss_peak_mib"),
            "date": date,
        });
        emit(&summary)?;
        medians.push(summary);
        let _ = std::fs::remove_dir_all(&data);
    }
    if let [small, .., large] = medians.as_slice() {
        let ratio = |k: &str| match (small[k].as_f64(), large[k].as_f64()) {
            (Some(s), Some(l)) if s > 0.0 => Some(l / s),
            _ => None,
        };
        let line = json!({
            "workload": "reopen_growth",
            "from_size": small["size"],
            "to_size": large["size"],
            "total_ratio": ratio("total_ms"),
            "rss_peak_ratio": ratio("rss_peak_mib"),
            "date": date,
        });
        emit(&line)?;
        eprintln!(
            "open + first commit: {:.1} ms at {}, {:.1} ms at {} ({:.2} x); peak memory {:.1} / {:.1} MiB ({:.2} x) (target: <= 1 s, flat in log size)",
            small["total_ms"].as_f64().unwrap_or(f64::NAN),
            small["size"],
            large["total_ms"].as_f64().unwrap_or(f64::NAN),
            large["size"],
            line["total_ratio"].as_f64().unwrap_or(f64::NAN),
            small["rss_peak_mib"].as_f64().unwrap_or(f64::NAN),
            large["rss_peak_mib"].as_f64().unwrap_or(f64::NAN),
            line["rss_peak_ratio"].as_f64().unwrap_or(f64::NAN),
        );
    }
    Ok(())
}

/// Runs an appender process on `data` (filling it to `size` events first) and kills it with
/// SIGKILL `append` after it said it was appending.
fn crash_while_appending(exe: &Path, data: &Path, size: u64, append: Duration) -> Result<()> {
    let mut child = Command::new(exe)
        .args(["reopen-probe", "--mode", "append", "--events"])
        .arg(size.to_string())
        .arg("--data")
        .arg(data)
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .context("start the appender")?;
    let stdout = child.stdout.take().context("the appender's output")?;
    let mut line = String::new();
    BufReader::new(stdout)
        .read_line(&mut line)
        .context("read the appender's output")?;
    if line.trim() != "ready" {
        let _ = child.kill();
        let status = child.wait()?;
        anyhow::bail!("the appender ended before it was ready ({status})");
    }
    std::thread::sleep(append);
    // Child::kill sends SIGKILL: no destructor, no flush, no clean close.
    child.kill().context("kill the appender")?;
    child.wait().context("reap the appender")?;
    Ok(())
}

/// The probe, in a fresh process.
pub fn probe(args: &ReopenProbeArgs) -> Result<()> {
    match args.mode {
        ProbeMode::Append => append_until_killed(&args.data, args.events),
        ProbeMode::Open => open_and_commit(&args.data),
    }
}

fn append_until_killed(data: &Path, events: u64) -> Result<()> {
    let engine = Engine::open(EngineConfig::new(data)).context("open the store")?;
    let tenant = engine.tenant_or_create(TENANT)?;
    let log = tenant.event_log()?;
    let mut factory = EventFactory::new(11);
    let fill: Vec<Commit> = (0..16).map(|_| factory.commit(1000)).collect();
    let mut i = 0usize;
    while log.next_sequence_number().0 < events {
        tenant.commit(&fill[i % fill.len()])?;
        i += 1;
    }
    let failures = engine.wait_for_sealing();
    ensure!(
        failures.is_empty(),
        "sealing failed: {}",
        failures.join("; ")
    );
    let appending: Vec<Commit> = (0..16).map(|_| factory.commit(100)).collect();
    println!("ready");
    loop {
        tenant.commit(&appending[i % appending.len()])?;
        i += 1;
    }
}

fn open_and_commit(data: &Path) -> Result<()> {
    let rss_base = rss_mib("VmRSS:");
    let started = Instant::now();
    let engine = Engine::open(EngineConfig::new(data)).context("open the store")?;
    let open = started.elapsed();
    let rss_open = rss_mib("VmRSS:");
    let commit_started = Instant::now();
    let tenant = engine.tenant(TENANT)?;
    let receipt = tenant.commit(&Commit {
        events: vec![UncommittedEvent {
            event_source_id: "reopen".into(),
            content: "{\"reopened\":true}".into(),
            ..UncommittedEvent::default()
        }],
        ..Commit::default()
    })?;
    let first_commit = commit_started.elapsed();
    let rss_committed = rss_mib("VmRSS:");
    let log = tenant.event_log()?;
    let (disk, sealed) = log.disk_bytes();
    let line = json!({
        "open_ms": open.as_secs_f64() * 1000.0,
        "first_commit_ms": first_commit.as_secs_f64() * 1000.0,
        "total_ms": (open + first_commit).as_secs_f64() * 1000.0,
        "log_events": receipt.first.0 + 1,
        "sealed_mib": crate::report::to_f64(sealed) / 1_048_576.0,
        "raw_mib": crate::report::to_f64(disk.saturating_sub(sealed)) / 1_048_576.0,
        "rss_base_mib": rss_base,
        "rss_open_mib": rss_open,
        "rss_committed_mib": rss_committed,
        "rss_peak_mib": rss_mib("VmHWM:"),
    });
    println!("{line}");
    Ok(())
}
