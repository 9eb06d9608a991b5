//! The console's plots: commits per second, and each connected event handler's lag, over the
//! last hour. A sample is taken every `EVERY` into fixed rings (an hour of them), for at
//! most `SERIES_MAX` handlers: memory stays bounded however long the runtime runs and
//! however many handlers come and go. The plots are SVG drawn on the server.

use std::collections::{BTreeMap, VecDeque};
use std::fmt::Write as _;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;
use uuid::Uuid;

use crate::console::escape;
use crate::processing::Kind;
use crate::runtime::Runtime;

/// How often a sample is taken.
pub(crate) const EVERY: Duration = Duration::from_secs(5);
/// Samples in an hour.
const KEPT: usize = 720;
/// Handlers whose lag is kept (the first ones seen; a handler gone for an hour frees its place).
const SERIES_MAX: usize = 256;

const WIDTH: f64 = 720.0;
const HEIGHT: f64 = 140.0;
const COLOURS: [&str; 6] = [
    "#2060c0", "#c04020", "#208040", "#8040a0", "#a07010", "#1090a0",
];

/// A handler's lag series: tenant, scope, id.
type Key = (Uuid, Uuid, Uuid);

/// A handler's alias, and (Unix seconds, lag).
type Lags = (Option<String>, VecDeque<(i64, u64)>);

#[derive(Debug, Default)]
struct Samples {
    /// (Unix seconds, commits acknowledged by every tenant's log since the start).
    commits: VecDeque<(i64, u64)>,
    /// Per handler: its alias, and (Unix seconds, lag).
    lag: BTreeMap<Key, Lags>,
}

/// The sampled history behind the plots.
#[derive(Debug, Default)]
pub(crate) struct Plots {
    samples: Mutex<Samples>,
}

fn push<T>(ring: &mut VecDeque<T>, value: T) {
    if ring.len() == KEPT {
        ring.pop_front();
    }
    ring.push_back(value);
}

impl Plots {
    /// Takes one sample of `runtime` at `now` (Unix seconds).
    pub(crate) fn sample(&self, runtime: &Runtime, now: i64) {
        let commits: u64 = runtime
            .tenant_ids()
            .iter()
            .filter_map(|t| runtime.tenant(*t).ok())
            .filter_map(|t| t.event_log().ok())
            .map(|log| log.stats().commits.load(Ordering::Relaxed))
            .sum();
        let mut lags = Vec::new();
        for r in runtime.processors.all(Kind::EventHandler) {
            for (tenant, handle) in &r.tenants {
                let position = handle.status.lock().state.event_log_position.0;
                let end = handle.log.next_sequence_number().0;
                lags.push((
                    (*tenant, r.key.scope, r.key.id),
                    r.alias.clone(),
                    end.saturating_sub(position),
                ));
            }
        }
        let mut samples = self.samples.lock();
        push(&mut samples.commits, (now, commits));
        for (key, alias, lag) in lags {
            let full = samples.lag.len() >= SERIES_MAX;
            if full && !samples.lag.contains_key(&key) {
                continue;
            }
            let entry = samples.lag.entry(key).or_default();
            entry.0 = alias;
            push(&mut entry.1, (now, lag));
        }
        // Handlers not seen for the hour are let go.
        samples
            .lag
            .retain(|_, (_, ring)| ring.back().is_some_and(|(t, _)| now - t < 3600));
    }

    /// The commits-per-second plot.
    pub(crate) fn render(&self) -> String {
        let samples = self.samples.lock();
        let rates: Vec<(i64, f64)> = samples
            .commits
            .iter()
            .zip(samples.commits.iter().skip(1))
            .map(|((t0, c0), (t1, c1))| {
                let seconds = (t1 - t0).max(1) as f64;
                (*t1, c1.saturating_sub(*c0) as f64 / seconds)
            })
            .collect();
        let mut out = String::from("<h2>Commits per second, last hour</h2>");
        out.push_str(&svg("commits-plot", &[(String::from("commits/s"), rates)]));
        out
    }

    /// The lag plot of a tenant's event handlers.
    pub(crate) fn render_lag(&self, tenant: Uuid) -> String {
        let samples = self.samples.lock();
        let series: Vec<(String, Vec<(i64, f64)>)> = samples
            .lag
            .iter()
            .filter(|((t, _, _), _)| *t == tenant)
            .map(|((_, _, id), (alias, ring))| {
                (
                    alias.clone().unwrap_or_else(|| id.to_string()),
                    ring.iter().map(|(t, v)| (*t, *v as f64)).collect(),
                )
            })
            .collect();
        let mut out = String::from("<h2>Event handler lag (events), last hour</h2>");
        out.push_str(&svg("lag-plot", &series));
        out
    }
}

/// Lines over the last hour, each (name, (Unix seconds, value)), with a legend.
fn svg(id: &str, series: &[(String, Vec<(i64, f64)>)]) -> String {
    let now = series
        .iter()
        .filter_map(|(_, points)| points.last().map(|(t, _)| *t))
        .max()
        .unwrap_or(0);
    let max = series
        .iter()
        .flat_map(|(_, points)| points.iter().map(|(_, v)| *v))
        .fold(0.0_f64, f64::max);
    let top = if max <= 0.0 { 1.0 } else { max * 1.1 };
    let mut out = format!(
        "<svg id=\"{id}\" role=\"img\" width=\"{}\" height=\"{}\" viewBox=\"0 0 {} {}\" \
         xmlns=\"http://www.w3.org/2000/svg\"><title>{id}</title>\
         <text x=\"4\" y=\"12\" font-size=\"11\">{}</text>\
         <text x=\"4\" y=\"{}\" font-size=\"11\">0</text>\
         <text x=\"{}\" y=\"{}\" font-size=\"11\" text-anchor=\"end\">now</text>",
        WIDTH + 60.0,
        HEIGHT + 20.0,
        WIDTH + 60.0,
        HEIGHT + 20.0,
        number(max),
        HEIGHT,
        WIDTH + 56.0,
        HEIGHT + 16.0,
    );
    if series.iter().all(|(_, points)| points.is_empty()) {
        out.push_str("<text x=\"60\" y=\"70\" font-size=\"12\">no samples yet</text>");
    }
    let mut legend = String::from("<p class=\"legend\">");
    for (i, (name, points)) in series.iter().enumerate() {
        let colour = COLOURS[i % COLOURS.len()];
        let mut line = String::new();
        for (t, v) in points {
            let x = 50.0 + WIDTH * (1.0 - (now - t) as f64 / 3600.0);
            let y = HEIGHT - HEIGHT * 0.9 * (v / top) + 4.0;
            let _ = write!(line, "{x:.1},{y:.1} ");
        }
        let _ = write!(
            out,
            "<polyline class=\"series\" data-name=\"{name}\" fill=\"none\" stroke=\"{colour}\" \
             stroke-width=\"1.5\" points=\"{line}\"/>",
            name = escape(name),
        );
        let _ = write!(
            legend,
            "<span style=\"color:{colour};margin-right:1em\">&#9632; {}</span>",
            escape(name)
        );
    }
    out.push_str("</svg>");
    legend.push_str("</p>");
    out.push_str(&legend);
    out
}

fn number(value: f64) -> String {
    if value >= 100.0 || value.fract() == 0.0 {
        format!("{value:.0}")
    } else {
        format!("{value:.2}")
    }
}

/// Samples the runtime every `EVERY` until it stops (it lets go of the runtime then, which
/// shutdown closes once nobody holds it).
pub(crate) async fn run(runtime: Arc<Runtime>) {
    let mut stopping = runtime.stopping.clone();
    let mut ticks = tokio::time::interval(EVERY);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = ticks.tick() => {}
            _ = stopping.wait_for(|s| *s) => return,
        }
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX));
        runtime.plots.sample(&runtime, now);
    }
}
