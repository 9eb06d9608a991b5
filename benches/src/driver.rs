//! The closed-loop append driver shared by every suite: `writers` threads each commit as fast
//! as they can for a warm-up and then a measured window, timing every commit.
//!
//! A commit counts when it *starts* inside the measured window; the window ends when the last
//! writer has finished its last commit, so no counted commit is cut short. The callback
//! `at_window_start` runs on the driving thread when the window opens, to snapshot counters
//! such as fdatasyncs; the caller snapshots them again after `run_appends` returns.
//!
//! Bounds: one hdrhistogram per writer (auto-resizing, 3 significant digits, a few tens of KiB).

use std::time::{Duration, Instant};

use anyhow::{anyhow, Context, Result};
use hdrhistogram::Histogram;
use parking_lot::{Condvar, Mutex};

/// What the writers did in the measured window.
#[derive(Debug)]
pub struct AppendOutcome {
    /// Events in counted commits.
    pub events: u64,
    /// Counted commits.
    pub commits: u64,
    /// From the window's start until the last writer finished.
    pub elapsed: Duration,
    /// Per-commit latency in nanoseconds.
    pub latency_ns: Histogram<u64>,
}

impl AppendOutcome {
    /// Adds up what each writer counted: its events, commits and latencies, in writer order.
    /// The first writer's error, if any, is the outcome's.
    pub fn sum(
        elapsed: Duration,
        writers: impl IntoIterator<Item = Result<(u64, u64, Histogram<u64>)>>,
    ) -> Result<Self> {
        let mut outcome = AppendOutcome {
            events: 0,
            commits: 0,
            elapsed,
            latency_ns: Histogram::new(3).context("create a histogram")?,
        };
        for writer in writers {
            let (events, commits, hist) = writer?;
            outcome.events += events;
            outcome.commits += commits;
            outcome
                .latency_ns
                .add(&hist)
                .context("merge latency histograms")?;
        }
        Ok(outcome)
    }
}

/// Durations of one append measurement.
#[derive(Debug, Clone, Copy)]
pub struct Window {
    /// Run but not counted (caches, segment creation, thread start-up).
    pub warmup: Duration,
    /// Counted.
    pub measure: Duration,
}

/// Runs `writers` threads calling `commit(writer, iteration)` (which returns the events it
/// committed) until the window closes.
pub fn run_appends<F>(
    writers: usize,
    window: Window,
    at_window_start: impl FnOnce(),
    commit: F,
) -> Result<AppendOutcome>
where
    F: Fn(usize, u64) -> Result<u64> + Sync,
{
    // The start gate: writers wait until the driving thread sets the start time, so they all
    // begin together whether or not every thread could be spawned.
    let gate = (Mutex::new(None::<Instant>), Condvar::new());
    let commit = &commit;
    let (results, window_start) = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..writers)
            .map(|writer| {
                let gate = &gate;
                std::thread::Builder::new()
                    .name(format!("writer-{writer}"))
                    .spawn_scoped(scope, move || -> Result<(u64, u64, Histogram<u64>)> {
                        let mut hist = Histogram::<u64>::new(3).context("create a histogram")?;
                        let t0 = {
                            let mut start = gate.0.lock();
                            loop {
                                if let Some(t0) = *start {
                                    break t0;
                                }
                                gate.1.wait(&mut start);
                            }
                        };
                        let counted_from = t0 + window.warmup;
                        let end = counted_from + window.measure;
                        let (mut events, mut commits) = (0u64, 0u64);
                        for iteration in 0.. {
                            let began = Instant::now();
                            if began >= end {
                                break;
                            }
                            let n = commit(writer, iteration)?;
                            if began >= counted_from {
                                let ns =
                                    u64::try_from(began.elapsed().as_nanos()).unwrap_or(u64::MAX);
                                hist.record(ns).context("record a latency")?;
                                events += n;
                                commits += 1;
                            }
                        }
                        Ok((events, commits, hist))
                    })
                    .context("spawn a writer thread")
            })
            .collect();
        let t0 = Instant::now();
        *gate.0.lock() = Some(t0);
        gate.1.notify_all();
        let window_start = t0 + window.warmup;
        std::thread::sleep(window_start.saturating_duration_since(Instant::now()));
        at_window_start();
        let results: Vec<Result<(u64, u64, Histogram<u64>)>> = handles
            .into_iter()
            .map(|h| match h {
                Ok(h) => h.join().map_err(|_| anyhow!("a writer thread panicked"))?,
                Err(e) => Err(e),
            })
            .collect();
        (results, window_start)
    });
    let elapsed = window_start.elapsed();
    AppendOutcome::sum(elapsed, results)
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicU64, Ordering};

    use super::*;

    #[test]
    fn counts_only_commits_started_in_the_window() {
        let calls = AtomicU64::new(0);
        let window = Window {
            warmup: Duration::from_millis(30),
            measure: Duration::from_millis(60),
        };
        let outcome = run_appends(
            3,
            window,
            || {},
            |_, _| {
                calls.fetch_add(1, Ordering::Relaxed);
                std::thread::sleep(Duration::from_millis(2));
                Ok(5)
            },
        )
        .unwrap();
        assert!(outcome.commits > 0);
        assert!(outcome.commits < calls.load(Ordering::Relaxed));
        assert_eq!(outcome.events, outcome.commits * 5);
        assert_eq!(outcome.latency_ns.len(), outcome.commits);
        assert!(outcome.elapsed >= Duration::from_millis(55));
    }

    #[test]
    fn a_failing_commit_fails_the_run() {
        let window = Window {
            warmup: Duration::ZERO,
            measure: Duration::from_millis(20),
        };
        let err = run_appends(2, window, || {}, |_, _| Err(anyhow!("disk on fire"))).unwrap_err();
        assert!(err.to_string().contains("disk on fire"));
    }
}
