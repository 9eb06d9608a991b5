//! Results: one JSON line per measurement on stdout, medians and ratios at the end.
//!
//! stdout carries only JSON lines (one object per line) so runs can be compared mechanically;
//! progress for people goes to stderr. Every ratio is computed from medians of the same run:
//! the disk here is shared and noisy, so only figures measured side by side mean anything.

use std::{
    collections::BTreeMap,
    io::Write,
    time::{SystemTime, UNIX_EPOCH},
};

use anyhow::{Context, Result};
use hdrhistogram::Histogram;
use serde::Serialize;
use serde_json::Value;

/// One measurement of one system on one workload shape in one round.
#[derive(Debug, Clone, Serialize)]
pub struct Measurement {
    /// `annals`, `raw`, `rocksdb`, `postgres` or `ceiling`.
    pub system: &'static str,
    /// `append` or `catchup_read`.
    pub workload: &'static str,
    /// Concurrent writer threads (1 for reads).
    pub writers: usize,
    /// Events per commit; `None` for reads.
    pub batch: Option<usize>,
    /// Round number, from 0.
    pub round: usize,
    /// Events counted in the measured window.
    pub events: u64,
    /// Measured window in seconds.
    pub seconds: f64,
    /// Events per second over the window.
    pub events_per_s: f64,
    /// Median latency in microseconds: per commit for appends, per read call for reads
    /// (`None` where the system has no read calls of its own to time).
    pub p50_us: Option<f64>,
    /// 99th-percentile latency, as `p50_us`.
    pub p99_us: Option<f64>,
    /// Data `fdatasync`s in the window, where the system reports them.
    pub fdatasyncs: Option<u64>,
    /// `events / fdatasyncs`.
    pub events_per_fdatasync: Option<f64>,
    /// The I/O path: the engine's backend for annals, `std` for raw, `posix` for RocksDB.
    pub io_backend: String,
    /// UTC start of the run (ISO 8601).
    pub date: String,
    /// System-specific figures (annals' seals and disk bytes, framed bytes per event, ...).
    #[serde(flatten)]
    pub extra: BTreeMap<String, Value>,
}

/// What a measurement is of: the system, the workload, its shape and the round.
#[derive(Debug, Clone, Copy)]
pub struct Subject {
    /// See [`Measurement::system`].
    pub system: &'static str,
    /// See [`Measurement::workload`].
    pub workload: &'static str,
    /// See [`Measurement::writers`].
    pub writers: usize,
    /// See [`Measurement::batch`].
    pub batch: Option<usize>,
    /// See [`Measurement::round`].
    pub round: usize,
}

impl Measurement {
    /// `events` measured over `seconds` of `subject` in the run started at `date`, with the
    /// latency percentiles `(p50_us, p99_us)`. The rest is empty, for the caller to fill in:
    /// no fdatasync figures, no I/O path, no extra figures.
    pub fn new(
        subject: Subject,
        date: &str,
        events: u64,
        seconds: f64,
        (p50_us, p99_us): (Option<f64>, Option<f64>),
    ) -> Self {
        Self {
            system: subject.system,
            workload: subject.workload,
            writers: subject.writers,
            batch: subject.batch,
            round: subject.round,
            events,
            seconds,
            events_per_s: to_f64(events) / seconds.max(f64::MIN_POSITIVE),
            p50_us,
            p99_us,
            fdatasyncs: None,
            events_per_fdatasync: None,
            io_backend: String::new(),
            date: date.to_owned(),
            extra: BTreeMap::new(),
        }
    }
}

/// Latency summary of a histogram of nanoseconds, in microseconds.
pub fn percentiles_us(hist: &Histogram<u64>) -> (Option<f64>, Option<f64>) {
    if hist.is_empty() {
        return (None, None);
    }
    let us = |q: f64| to_f64(hist.value_at_quantile(q)) / 1000.0;
    (Some(us(0.5)), Some(us(0.99)))
}

/// Column `column` (0 is the field name) of the line of /proc/self/status that starts with
/// `field` (e.g. `"VmRSS:"`, 1 gives the kB figure).
pub fn proc_self_status(field: &str, column: usize) -> Option<String> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with(field))?;
    line.split_whitespace().nth(column).map(str::to_owned)
}

/// Runs this tool again as a fresh process with `args` (a hidden probe subcommand) and parses
/// the one JSON line it prints; fails with the probe's stderr if it failed.
pub fn run_probe(args: &[&std::ffi::OsStr]) -> anyhow::Result<serde_json::Value> {
    use anyhow::Context as _;
    let exe = std::env::current_exe().context("find this program")?;
    let output = std::process::Command::new(exe)
        .args(args)
        .output()
        .context("run the probe")?;
    anyhow::ensure!(
        output.status.success(),
        "the probe failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_slice(&output.stdout).context("parse the probe's line")
}

/// This process's `field` of /proc/self/status (`"VmRSS:"`, `"VmHWM:"`) in MiB; NaN if absent.
pub fn rss_mib(field: &str) -> f64 {
    proc_self_status(field, 1)
        .and_then(|kb| kb.parse::<f64>().ok())
        .map_or(f64::NAN, |kb| kb / 1024.0)
}

/// `a / b`, or `None` when `b` is zero.
pub fn ratio(a: u64, b: u64) -> Option<f64> {
    (b != 0).then(|| to_f64(a) / to_f64(b))
}

/// `u64` to `f64` for reporting.
#[expect(
    clippy::cast_precision_loss,
    reason = "counts below 2^52 are exact; reporting only"
)]
pub fn to_f64(x: u64) -> f64 {
    x as f64
}

/// The median of `values` (mean of the middle two for an even count); `None` when empty.
pub fn median(values: &[f64]) -> Option<f64> {
    let mut sorted: Vec<f64> = values.iter().copied().filter(|v| v.is_finite()).collect();
    if sorted.is_empty() {
        return None;
    }
    sorted.sort_by(f64::total_cmp);
    let mid = sorted.len() / 2;
    Some(if sorted.len().is_multiple_of(2) {
        f64::midpoint(sorted[mid - 1], sorted[mid])
    } else {
        sorted[mid]
    })
}

/// Writes one JSON line to stdout and flushes it, so a crash later still leaves the line.
pub fn emit(value: &impl Serialize) -> Result<()> {
    let line = serde_json::to_string(value).context("serialise a result line")?;
    let mut out = std::io::stdout().lock();
    writeln!(out, "{line}").context("write a result line to stdout")?;
    out.flush().context("flush stdout")
}

/// A progress line for people: `[round/rounds] workload WRITERSxBATCH system ev/s p50 p99`,
/// the workload and system padded to the suite's widths, then `tail`.
pub fn progress_line(
    m: &Measurement,
    rounds: usize,
    (workload_width, system_width): (usize, usize),
    tail: &str,
) -> String {
    let us = |v: Option<f64>| v.map_or_else(|| "-".to_owned(), |v| format!("{v:.0}us"));
    format!(
        "[{}/{}] {:<workload_width$} {:>3}x{:<4} {:<system_width$} {:>11.0} ev/s  p50 {:>8}  p99 {:>8}{tail}",
        m.round + 1,
        rounds,
        m.workload,
        m.writers,
        m.batch.map_or_else(|| "-".to_owned(), |b| b.to_string()),
        m.system,
        m.events_per_s,
        us(m.p50_us),
        us(m.p99_us),
    )
}

/// Prints `m` as its JSON line and keeps it for the run's summary.
pub fn record(measurements: &mut Vec<Measurement>, m: Measurement) -> Result<()> {
    emit(&m)?;
    measurements.push(m);
    Ok(())
}

/// The current time as `YYYY-MM-DDTHH:MM:SSZ`.
pub fn now_utc() -> String {
    let seconds = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    format!(
        "{}Z",
        utc_timestamp(i64::try_from(seconds).unwrap_or(i64::MAX))
    )
}

/// `YYYY-MM-DDTHH:MM:SS` for Unix `seconds` (UTC, proleptic Gregorian).
pub fn utc_timestamp(seconds: i64) -> String {
    let days = seconds.div_euclid(86_400);
    let rest = seconds.rem_euclid(86_400);
    let (year, month, day) = civil_from_days(days);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}",
        rest / 3600,
        (rest % 3600) / 60,
        rest % 60
    )
}

/// Howard Hinnant's days-to-civil algorithm.
fn civil_from_days(days: i64) -> (i64, i64, i64) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

/// The target of design.md section 7 for a shape, as (vs raw, vs the peer: RocksDB for the
/// engine, the gRPC ceiling for the server).
pub fn targets(workload: &str, writers: usize, batch: Option<usize>) -> (Option<f64>, Option<f64>) {
    match (workload, writers, batch) {
        ("append", 16, Some(1)) => (Some(0.9), Some(2.0)),
        ("append", 16, Some(100)) => (Some(0.7), Some(10.0)),
        ("append", 1, Some(100)) => (Some(0.8), None),
        ("catchup_read", _, _) => (None, Some(5.0)),
        // Issue 15: against the raw group commit and the gRPC ceiling of the same run.
        ("grpc_commit", 16, Some(1)) => (Some(0.6), Some(0.6)),
        ("grpc_commit", 16 | 1, Some(100)) => (None, Some(0.6)),
        ("grpc_fetch" | "grpc_fetch_read", _, _) => (None, Some(0.8)),
        _ => (None, None),
    }
}

/// The stderr summary table's row format (header and rows alike).
macro_rules! row_format {
    () => {
        concat!(
            "{:<13} {:>7} {:>5} | {:>12} {:>12} {:>12} | ",
            "{:>6} {:>8} {:>8} {:>8} | {:>7} {:>7} {:>7}"
        )
    };
}

/// The shapes (workload, writers, batch) of `measurements`, in first-measured order.
pub(crate) fn shapes(measurements: &[Measurement]) -> Vec<(&'static str, usize, Option<usize>)> {
    let mut shapes = Vec::new();
    for m in measurements {
        let shape = (m.workload, m.writers, m.batch);
        if !shapes.contains(&shape) {
            shapes.push(shape);
        }
    }
    shapes
}

/// The events/s `system` reached at `shape` in `round`.
pub(crate) fn rate_in_round(
    measurements: &[Measurement],
    system: &str,
    shape: (&str, usize, Option<usize>),
    round: usize,
) -> Option<f64> {
    measurements
        .iter()
        .find(|m| {
            m.system == system && m.round == round && (m.workload, m.writers, m.batch) == shape
        })
        .map(|m| m.events_per_s)
}

/// `a`'s events/s over `b`'s at `shape`, within each round (the two ran seconds apart), then
/// the median of those: steadier than the ratio of medians when the disk drifts between rounds.
pub(crate) fn paired_ratio(
    measurements: &[Measurement],
    a: &str,
    b: &str,
    shape: (&str, usize, Option<usize>),
) -> Option<f64> {
    let ratios: Vec<f64> = measurements
        .iter()
        .filter(|m| m.system == a && (m.workload, m.writers, m.batch) == shape)
        .filter_map(|m| {
            rate_in_round(measurements, b, shape, m.round)
                .filter(|&theirs| theirs > 0.0)
                .map(|theirs| m.events_per_s / theirs)
        })
        .collect();
    median(&ratios)
}

/// A figure with `digits` decimals for the tables, or "-" where there is none.
pub(crate) fn fixed(value: Option<f64>, digits: usize) -> String {
    value.map_or_else(|| "-".to_owned(), |v| format!("{v:.digits$}"))
}

/// Prints the medians of each shape and its ratios to raw and RocksDB (one JSON line per
/// shape), and a table for people on stderr.
pub fn summarise(measurements: &[Measurement], date: &str) -> Result<()> {
    summarise_against(measurements, date, "rocksdb")
}

/// As [`summarise`], with `peer` (a system of the measurements) in RocksDB's place: its
/// figures and the ratios to it under `<peer>_...` and `annals_vs_<peer>...`.
pub fn summarise_against(measurements: &[Measurement], date: &str, peer: &str) -> Result<()> {
    eprintln!();
    eprintln!(
        row_format!(),
        "workload",
        "writers",
        "batch",
        "annals ev/s",
        "raw ev/s",
        format!("{peer} ev/s"),
        "vs raw",
        "(paired)",
        format!("vs {}", &peer[..peer.len().min(5)]),
        "(paired)",
        "ev/sync",
        "raw",
        &peer[..peer.len().min(5)]
    );
    for (workload, writers, batch) in shapes(measurements) {
        let of = |system: &str, field: fn(&Measurement) -> Option<f64>| {
            let values: Vec<f64> = measurements
                .iter()
                .filter(|m| {
                    m.system == system
                        && (m.workload, m.writers, m.batch) == (workload, writers, batch)
                })
                .filter_map(field)
                .collect();
            median(&values)
        };
        let rate = |m: &Measurement| Some(m.events_per_s);
        let per_sync = |m: &Measurement| m.events_per_fdatasync;
        let p99 = |m: &Measurement| m.p99_us;
        let (annals, raw, peer_rate) = (of("annals", rate), of("raw", rate), of(peer, rate));
        let vs = |a: Option<f64>, b: Option<f64>| match (a, b) {
            (Some(a), Some(b)) if b > 0.0 => Some(a / b),
            _ => None,
        };
        let paired =
            |other: &str| paired_ratio(measurements, "annals", other, (workload, writers, batch));
        let (target_vs_raw, target_vs_peer) = targets(workload, writers, batch);
        let rounds = measurements
            .iter()
            .filter(|m| {
                m.system == "annals"
                    && (m.workload, m.writers, m.batch) == (workload, writers, batch)
            })
            .count();
        let mut line = serde_json::json!({
            "workload": "ratio",
            "of_workload": workload,
            "writers": writers,
            "batch": batch,
            "rounds": rounds,
            "annals_events_per_s": annals,
            "raw_events_per_s": raw,
            "annals_vs_raw": vs(annals, raw),
            "annals_vs_raw_paired": paired("raw"),
            "target_vs_raw": target_vs_raw,
            "annals_events_per_fdatasync": of("annals", per_sync),
            "raw_events_per_fdatasync": of("raw", per_sync),
            "annals_p99_us": of("annals", p99),
            "raw_p99_us": of("raw", p99),
            "date": date,
        });
        for (key, value) in [
            (format!("{peer}_events_per_s"), peer_rate),
            (format!("annals_vs_{peer}"), vs(annals, peer_rate)),
            (format!("annals_vs_{peer}_paired"), paired(peer)),
            (format!("target_vs_{peer}"), target_vs_peer),
            (format!("{peer}_events_per_fdatasync"), of(peer, per_sync)),
            (format!("{peer}_p99_us"), of(peer, p99)),
        ] {
            line[key] = serde_json::json!(value);
        }
        emit(&line)?;
        eprintln!(
            row_format!(),
            workload,
            writers,
            batch.map_or_else(|| "-".to_owned(), |b| b.to_string()),
            fixed(annals, 0),
            fixed(raw, 0),
            fixed(peer_rate, 0),
            fixed(vs(annals, raw), 2),
            fixed(paired("raw"), 2),
            fixed(vs(annals, peer_rate), 2),
            fixed(paired(peer), 2),
            fixed(of("annals", per_sync), 1),
            fixed(of("raw", per_sync), 1),
            fixed(of(peer, per_sync), 1),
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn median_of_odd_and_even() {
        assert_eq!(median(&[3.0, 1.0, 2.0]), Some(2.0));
        assert_eq!(median(&[4.0, 1.0, 2.0, 3.0]), Some(2.5));
        assert_eq!(median(&[]), None);
    }

    #[test]
    fn timestamps_are_utc_civil_dates() {
        assert_eq!(utc_timestamp(0), "1970-01-01T00:00:00");
        assert_eq!(utc_timestamp(951_782_400), "2000-02-29T00:00:00");
        assert_eq!(utc_timestamp(1_717_000_000), "2024-05-29T16:26:40");
    }
}
