//! `annals-bench delivery`: event handler delivery from the `annals` server to one head over
//! the EventHandlers reverse call (design.md section 7: >= 100 k events/s with concurrency,
//! >= 20 k/s strictly ordered).
//!
//! Workloads, each for an unpartitioned handler (strictly ordered: one event in flight) and
//! a partitioned one with concurrency 16:
//! - `delivery_catchup`: the store holds `--events` events before the handler registers; the
//!   head answers each request at once; events/s from the registration's acceptance to the
//!   last event.
//! - `delivery_live`: the handler registers on the tail (start from latest), then 16 clients
//!   commit one event at a time, paced to `--live-rate` events/s in all and staggered, so
//!   the events arrive evenly spread (at 2 000 events/s, one every 0.5 ms), for
//!   `--live-seconds`; latency is from the commit's `occurred` (the server's clock) to the
//!   head's receipt (same machine, same clock).
//! - `delivery_live_burst`: the same rate with the 16 clients in step: 16 events committed
//!   at the same instant every 8 ms (at 2 000 events/s), so a strictly ordered handler's
//!   16th event waits for the 15 before it.
//! - `delivery_catchup_1m`: as `delivery_catchup` over `--catch-up-events` (1 M) events, once.
//!
//! `delivery_catchup` also runs against the gRPC ceiling (`ceiling`: a tonic server sending
//! canned events of the same size over the same reverse call, with the same number in flight,
//! and doing no I/O), interleaved with the runtime, so its rate is said as a share of what the
//! reverse call itself allows here.
//!
//! The head is a tonic client in this process, built from our protos; it answers without
//! doing any work, so the figures are the runtime's delivery limit on this machine (head,
//! server and committers share the 2 cores).

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use annals_server::proto::dolittle;
use anyhow::{bail, Context, Result};
use clap::Args;
use dolittle::runtime::events::processing;
use hdrhistogram::Histogram;
use processing::event_handler_client_to_runtime_message::Message as FromHead;
use processing::event_handler_runtime_to_client_message::Message as ToHead;
use serde_json::json;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::transport::Channel;
use uuid::Uuid;

use crate::ceiling::{Canned, Ceiling};
use crate::data::EventFactory;
use crate::grpc::{annals_binary, commit_request, connect, ServerProcess, StoreClient};
use crate::report::{emit, median, now_utc, percentiles_us, record, Measurement, Subject};
use crate::suite::SuiteArgs;

/// Options of `annals-bench delivery`.
#[derive(Debug, Args)]
pub struct DeliveryArgs {
    #[command(flatten)]
    suite: SuiteArgs,
    /// Events in the store for `delivery_catchup`. Default 100 000 (quick: 10 000).
    #[arg(long)]
    events: Option<u64>,
    /// Events for `delivery_catchup_1m`; 0 skips it. Default 1 000 000 (quick: 0).
    #[arg(long)]
    catch_up_events: Option<u64>,
    /// Seconds of committing in `delivery_live`. Default 3 (quick: 1).
    #[arg(long)]
    live_seconds: Option<f64>,
    /// Events committed per second in `delivery_live` (paced; below what either handler
    /// keeps up with, so latency is delivery, not a growing queue). Default 2000.
    #[arg(long, default_value_t = 2000)]
    live_rate: u32,
    /// The `annals` binary (default: next to this tool).
    #[arg(long)]
    annals_bin: Option<PathBuf>,
}

/// The server's default platform: a head's registration must carry it.
pub(crate) const MICROSERVICE: Uuid = Uuid::from_u128(0x4a5d_2bc3_543f_459a_ab0b_e8e9_2409_3260);
pub(crate) const ENVIRONMENT: &str = "Development";

/// How the handler is registered.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Shape {
    pub(crate) partitioned: bool,
    pub(crate) concurrency: i32,
}

const SHAPES: [Shape; 2] = [
    Shape {
        partitioned: false,
        concurrency: 1,
    },
    Shape {
        partitioned: true,
        concurrency: 16,
    },
];

/// What a head saw: the events it handled, the time from the registration's acceptance to
/// the last of them, and each one's delay from its `occurred` to its receipt. For events
/// received over the event horizon (`externalEventReceived` set: the consumer's clock when its
/// writer took the event, just before writing it) that delay is also split in two there.
pub(crate) struct HeadOutcome {
    pub(crate) events: u64,
    pub(crate) elapsed: Duration,
    pub(crate) latency_ns: Histogram<u64>,
    pub(crate) to_consumer_ns: Histogram<u64>,
    pub(crate) consumer_to_head_ns: Histogram<u64>,
}

/// A wire timestamp as the time since the Unix epoch (negative parts as zero).
fn since_epoch(t: &prost_types::Timestamp) -> Duration {
    Duration::new(
        u64::try_from(t.seconds).unwrap_or(0),
        u32::try_from(t.nanos).unwrap_or(0),
    )
}

/// Records `later - earlier` in nanoseconds (at least 1, so a clock step cannot drop it).
fn record_between(hist: &mut Histogram<u64>, earlier: Duration, later: Duration) -> Result<()> {
    let ns = later.saturating_sub(earlier).as_nanos();
    hist.record(u64::try_from(ns).unwrap_or(u64::MAX).max(1))
        .context("record a latency")
}

/// An event handler a head registers: where, as whom, for what, from where.
#[derive(Debug, Clone)]
pub(crate) struct Registration {
    /// The runtime's private port.
    pub(crate) port: u16,
    /// The runtime's platform microservice id (a head must carry it).
    pub(crate) microservice: Uuid,
    pub(crate) tenant: Uuid,
    pub(crate) scope: Uuid,
    pub(crate) event_types: Vec<Uuid>,
    pub(crate) shape: Shape,
    /// Start from the latest event instead of the start of the scope's log.
    pub(crate) start_latest: bool,
}

/// Runs the delivery suite.
pub fn run(args: &DeliveryArgs) -> Result<()> {
    let suite = &args.suite;
    let rounds = suite.rounds().max(1);
    let events = suite.or(args.events, 10_000, 100_000);
    let big = suite.or(args.catch_up_events, 0, 1_000_000);
    let live = Duration::from_secs_f64(suite.or(args.live_seconds, 1.0, 3.0));
    let binary = annals_binary(args.annals_bin.as_deref())?;
    let date = now_utc();
    let started = Instant::now();
    let root = suite.data_dir()?;
    eprintln!(
        "annals-bench delivery: {rounds} round(s), {events} events, live {live:?}, 1M catch-up \
         {big} events, server {}, data in {}",
        binary.display(),
        root.path().display()
    );
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("start the client runtime")?;
    let mut factory = EventFactory::new(suite.seed);
    let tenant = factory.commit(1).execution_context.tenant_id;
    let event_types: Vec<Uuid> = {
        let mut types: Vec<Uuid> = (0..64).map(|_| factory.event().event_type.id).collect();
        types.sort();
        types.dedup();
        types
    };
    // Requests reused cyclically: 1000 commits of 100 events (30 MB), enough variety.
    let fill_requests: Arc<Vec<_>> = Arc::new(
        (0..1000)
            .map(|_| commit_request(&factory.commit(100)))
            .collect(),
    );
    let live_requests: Arc<Vec<_>> = Arc::new(
        (0..4096)
            .map(|_| commit_request(&factory.commit(1)))
            .collect(),
    );

    // The ceiling sends events of the same shapes as the store holds (10 000 of them, in turn).
    let canned: Vec<_> = (0..100).map(|_| factory.commit(100)).collect();
    let ceiling = Ceiling::start(Canned::new(&factory.commit(1), &canned))?;

    let mut measurements = Vec::new();
    for round in 0..rounds {
        let dir = root.path().join(format!("round-{round}"));
        let server = ServerProcess::start(&binary, &dir, tenant)?;
        fill(&runtime, server.private_port, &fill_requests, events)?;
        for shape in SHAPES {
            // The runtime and the ceiling take turns going first, round by round.
            let mut systems = [("annals", server.private_port), ("ceiling", ceiling.port)];
            systems.rotate_left(round % 2);
            for (system, port) in systems {
                let outcome = run_head(
                    registration(port, tenant, event_types.clone(), shape, false),
                    Target::Known(events),
                )
                .join()
                .map_err(|_| anyhow::anyhow!("the head panicked"))??;
                let m = measurement(
                    system,
                    "delivery_catchup",
                    shape,
                    round,
                    &date,
                    &outcome,
                    false,
                );
                progress(rounds, &m);
                record(&mut measurements, m)?;
            }
        }
        for (workload, pacing) in [
            ("delivery_live", Pacing::Staggered),
            ("delivery_live_burst", Pacing::InStep),
        ] {
            for shape in SHAPES {
                let outcome = measure_live(
                    &runtime,
                    server.private_port,
                    tenant,
                    &event_types,
                    shape,
                    &live_requests,
                    (live, args.live_rate, pacing),
                )?;
                let m = measurement("annals", workload, shape, round, &date, &outcome, true);
                progress(rounds, &m);
                record(&mut measurements, m)?;
            }
        }
        server.stop()?;
        std::fs::remove_dir_all(&dir).context("remove the round's data")?;
    }
    if big > 0 {
        let dir = root.path().join("catch-up");
        let server = ServerProcess::start(&binary, &dir, tenant)?;
        let filled = Instant::now();
        fill(&runtime, server.private_port, &fill_requests, big)?;
        eprintln!("committed {big} events in {:.1?}", filled.elapsed());
        for shape in SHAPES.iter().rev() {
            let outcome = run_head(
                registration(
                    server.private_port,
                    tenant,
                    event_types.clone(),
                    *shape,
                    false,
                ),
                Target::Known(big),
            )
            .join()
            .map_err(|_| anyhow::anyhow!("the head panicked"))??;
            let m = measurement(
                "annals",
                "delivery_catchup_1m",
                *shape,
                0,
                &date,
                &outcome,
                false,
            );
            progress(1, &m);
            record(&mut measurements, m)?;
        }
        server.stop()?;
    }
    summarise(&measurements)?;
    drop(ceiling);
    drop(runtime);
    root.close().context("remove the data directory")?;
    eprintln!("done in {:.1?}", started.elapsed());
    Ok(())
}

/// Commits `events` events (in commits of 100) with 8 clients.
pub(crate) fn fill(
    runtime: &tokio::runtime::Runtime,
    port: u16,
    requests: &Arc<Vec<dolittle::runtime::events::CommitEventsRequest>>,
    events: u64,
) -> Result<()> {
    let clients = connect(runtime, port, 8)?;
    commit_all(runtime, clients, requests, events.div_ceil(100)).map(|_| ())
}

/// Sends `commits` Commit requests, taken from `requests` in turn (cycling), over `clients`
/// (connected beforehand, so the time is the commits' alone), each sending its next request
/// when the previous one is answered. Returns the time from the first request to the last
/// answer; fails if any commit fails.
pub(crate) fn commit_all(
    runtime: &tokio::runtime::Runtime,
    clients: Vec<StoreClient>,
    requests: &Arc<Vec<dolittle::runtime::events::CommitEventsRequest>>,
    commits: u64,
) -> Result<Duration> {
    let started = Instant::now();
    let next = Arc::new(AtomicU64::new(0));
    let tasks: Vec<_> = clients
        .into_iter()
        .map(|mut client| {
            let next = Arc::clone(&next);
            let requests = Arc::clone(requests);
            runtime.spawn(async move {
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    if i >= commits {
                        return anyhow::Ok(());
                    }
                    let request = requests[usize::try_from(i)? % requests.len()].clone();
                    let response = client.commit(request).await?.into_inner();
                    if let Some(failure) = response.failure {
                        bail!("a commit failed: {}", failure.reason);
                    }
                }
            })
        })
        .collect();
    for task in tasks {
        runtime.block_on(task).context("a committer failed")??;
    }
    Ok(started.elapsed())
}

/// When the head stops: after a known number of events, or after the number the committers
/// report once they are done.
pub(crate) enum Target {
    Known(u64),
    Reported(Arc<AtomicU64>),
}

impl Target {
    fn reached(&self, events: u64) -> bool {
        match self {
            Target::Known(n) => events >= *n,
            Target::Reported(n) => {
                let n = n.load(Ordering::Acquire);
                n != u64::MAX && events >= n
            }
        }
    }
}

/// Runs a head on a thread and runtime of its own, so the committers of the live workload do
/// not delay its answers (as separate processes would not).
pub(crate) fn run_head(
    registration: Registration,
    target: Target,
) -> std::thread::JoinHandle<Result<HeadOutcome>> {
    std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .context("start the head's runtime")?;
        runtime.block_on(head(&registration, target))
    })
}

/// The handler of the delivery workloads: the default platform and scope.
pub(crate) fn registration(
    port: u16,
    tenant: Uuid,
    event_types: Vec<Uuid>,
    shape: Shape,
    start_latest: bool,
) -> Registration {
    Registration {
        port,
        microservice: MICROSERVICE,
        tenant,
        scope: Uuid::nil(),
        event_types,
        shape,
        start_latest,
    }
}

/// A head: registers a fresh event handler as `registration` says, answers every request at
/// once and stops at `target`.
async fn head(registration: &Registration, target: Target) -> Result<HeadOutcome> {
    let Registration {
        port,
        microservice,
        tenant,
        scope,
        ref event_types,
        shape,
        start_latest,
    } = *registration;
    let channel = Channel::from_shared(format!("http://127.0.0.1:{port}"))?
        .initial_stream_window_size(Some(4 << 20))
        .initial_connection_window_size(Some(16 << 20))
        .connect()
        .await
        .context("connect the head")?;
    let mut client = processing::event_handlers_client::EventHandlersClient::new(channel)
        .max_decoding_message_size(64 << 20);
    let (to_runtime, outbound) = mpsc::channel(1024);
    let wire = annals_server::wire::uuid;
    let registration = processing::EventHandlerRegistrationRequest {
        call_context: Some(dolittle::services::ReverseCallArgumentsContext {
            execution_context: Some(dolittle::execution::ExecutionContext {
                microservice_id: Some(wire(microservice)),
                tenant_id: Some(wire(tenant)),
                version: Some(dolittle::versioning::Version::default()),
                correlation_id: Some(wire(Uuid::new_v4())),
                claims: Vec::new(),
                environment: ENVIRONMENT.into(),
                span_id: None,
            }),
            head_id: Some(wire(Uuid::new_v4())),
            ping_interval: Some(prost_types::Duration {
                seconds: 5,
                nanos: 0,
            }),
        }),
        scope_id: Some(wire(scope)),
        event_handler_id: Some(wire(Uuid::new_v4())),
        event_types: event_types
            .iter()
            .map(|id| dolittle::artifacts::Artifact {
                id: Some(wire(*id)),
                generation: 1,
            })
            .collect(),
        partitioned: shape.partitioned,
        alias: Some("bench".into()),
        start_from: start_latest.then_some(processing::StartFrom {
            selected: Some(processing::start_from::Selected::Position(
                processing::start_from::Position::Latest as i32,
            )),
        }),
        stop_at: None,
        concurrency: shape.concurrency,
    };
    to_runtime
        .send(processing::EventHandlerClientToRuntimeMessage {
            message: Some(FromHead::RegistrationRequest(registration)),
        })
        .await?;
    let mut inbound = client
        .connect(ReceiverStream::new(outbound))
        .await
        .context("open the reverse call")?
        .into_inner();
    match inbound.message().await?.and_then(|m| m.message) {
        Some(ToHead::RegistrationResponse(response)) => {
            if let Some(failure) = response.failure {
                bail!("registration refused: {}", failure.reason);
            }
        }
        other => bail!("expected the registration response, got {other:?}"),
    }
    let began = Instant::now();
    let mut latency_ns = Histogram::<u64>::new(3).context("create a histogram")?;
    let mut to_consumer_ns = latency_ns.clone();
    let mut consumer_to_head_ns = latency_ns.clone();
    let mut events = 0u64;
    let mut last_event = began;
    let mut idle_since = Instant::now();
    while !target.reached(events) {
        // Short waits: a reported target can be reached with nothing more to come.
        let Ok(message) = tokio::time::timeout(Duration::from_millis(20), inbound.message()).await
        else {
            if idle_since.elapsed() > Duration::from_secs(60) {
                bail!("no request for 60 s");
            }
            continue;
        };
        idle_since = Instant::now();
        let message = message?.context("the runtime ended the stream")?;
        match message.message {
            Some(ToHead::HandleRequest(request)) => {
                let now = SystemTime::now().duration_since(UNIX_EPOCH)?;
                let event = request.event.as_ref().and_then(|e| e.event.as_ref());
                if let Some(occurred) = event.and_then(|e| e.occurred.as_ref()) {
                    let occurred = since_epoch(occurred);
                    record_between(&mut latency_ns, occurred, now)?;
                    let received = event.and_then(|e| e.external_event_received.as_ref());
                    if let Some(received) = received {
                        let received = since_epoch(received);
                        record_between(&mut to_consumer_ns, occurred, received)?;
                        record_between(&mut consumer_to_head_ns, received, now)?;
                    }
                }
                events += 1;
                last_event = Instant::now();
                let call_id = request.call_context.and_then(|c| c.call_id);
                to_runtime
                    .send(processing::EventHandlerClientToRuntimeMessage {
                        message: Some(FromHead::HandleResult(processing::EventHandlerResponse {
                            call_context: Some(dolittle::services::ReverseCallResponseContext {
                                call_id,
                            }),
                            failure: None,
                        })),
                    })
                    .await?;
            }
            Some(ToHead::Ping(_)) => {
                to_runtime
                    .send(processing::EventHandlerClientToRuntimeMessage {
                        message: Some(FromHead::Pong(dolittle::services::Pong {})),
                    })
                    .await?;
            }
            other => bail!("unexpected message from the runtime: {other:?}"),
        }
    }
    Ok(HeadOutcome {
        events,
        elapsed: last_event.duration_since(began),
        latency_ns,
        to_consumer_ns,
        consumer_to_head_ns,
    })
}

/// A head registered at the tail while 16 clients commit one event at a time for `window`.
/// How the live workload's 16 clients are paced.
#[derive(Debug, Clone, Copy)]
enum Pacing {
    /// Each client's ticks are offset by 1/16 of the period from the one before: the events
    /// arrive evenly spread.
    Staggered,
    /// All 16 tick at the same instants: bursts of 16 events.
    InStep,
}

fn measure_live(
    runtime: &tokio::runtime::Runtime,
    port: u16,
    tenant: Uuid,
    event_types: &[Uuid],
    shape: Shape,
    requests: &Arc<Vec<dolittle::runtime::events::CommitEventsRequest>>,
    (window, rate, pacing): (Duration, u32, Pacing),
) -> Result<HeadOutcome> {
    let committed = Arc::new(AtomicU64::new(u64::MAX));
    let head = run_head(
        registration(port, tenant, event_types.to_vec(), shape, true),
        Target::Reported(Arc::clone(&committed)),
    );
    // Give the registration time to be accepted before committing (start from latest).
    std::thread::sleep(Duration::from_millis(300));
    let clients = connect(runtime, port, 16)?;
    let end = Instant::now() + window;
    // Each of the 16 clients commits every 16 / rate seconds.
    let period = Duration::from_secs_f64(16.0 / f64::from(rate.max(1)));
    let start = tokio::time::Instant::now();
    let tasks: Vec<_> = clients
        .into_iter()
        .enumerate()
        .map(|(n, mut client)| {
            let requests = Arc::clone(requests);
            runtime.spawn(async move {
                let mut count = 0u64;
                let mut i = n;
                let offset = match pacing {
                    Pacing::Staggered => period * u32::try_from(n).unwrap_or(0) / 16,
                    Pacing::InStep => Duration::ZERO,
                };
                let mut pace = tokio::time::interval_at(start + offset, period);
                pace.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                while Instant::now() < end {
                    pace.tick().await;
                    let response = client.commit(requests[i % requests.len()].clone()).await?;
                    if let Some(failure) = response.into_inner().failure {
                        bail!("a commit failed: {}", failure.reason);
                    }
                    count += 1;
                    i += 16;
                }
                anyhow::Ok(count)
            })
        })
        .collect();
    let mut total = 0;
    for task in tasks {
        total += runtime.block_on(task).context("a committer failed")??;
    }
    committed.store(total, Ordering::Release);
    head.join()
        .map_err(|_| anyhow::anyhow!("the head panicked"))?
}

fn measurement(
    system: &'static str,
    workload: &'static str,
    shape: Shape,
    round: usize,
    date: &str,
    outcome: &HeadOutcome,
    latency: bool,
) -> Measurement {
    let (p50_us, p99_us) = if latency {
        percentiles_us(&outcome.latency_ns)
    } else {
        (None, None)
    };
    let subject = Subject {
        system,
        workload,
        writers: usize::try_from(shape.concurrency).unwrap_or(1),
        batch: None,
        round,
    };
    let seconds = outcome.elapsed.as_secs_f64();
    let mut m = Measurement::new(subject, date, outcome.events, seconds, (p50_us, p99_us));
    m.io_backend = if system == "annals" { "server" } else { "none" }.into();
    m.extra
        .insert("partitioned".to_owned(), json!(shape.partitioned));
    m
}

fn progress(rounds: usize, m: &Measurement) {
    let us = |v: Option<f64>| v.map_or_else(|| "-".to_owned(), |v| format!("{v:.0}us"));
    eprintln!(
        "[{}/{}] {:<20} {:<7} concurrency {:>2}  {:>9} events {:>11.0} ev/s  delivery p50 {:>8}  p99 {:>8}",
        m.round + 1,
        rounds,
        m.workload,
        m.system,
        m.writers,
        m.events,
        m.events_per_s,
        us(m.p50_us),
        us(m.p99_us),
    );
}

/// Medians per workload, concurrency and system, against design.md's and issue 15's targets
/// (one JSON line each); the runtime's catch-up also as a share of the ceiling's, paired per
/// round.
fn summarise(measurements: &[Measurement]) -> Result<()> {
    let mut groups: BTreeMap<(&str, usize, &str), Vec<&Measurement>> = BTreeMap::new();
    for m in measurements {
        groups
            .entry((m.workload, m.writers, m.system))
            .or_default()
            .push(m);
    }
    eprintln!("\nmedians:");
    for ((workload, concurrency, system), ms) in groups {
        let pick = |f: fn(&Measurement) -> Option<f64>| {
            let values: Vec<f64> = ms.iter().filter_map(|m| f(m)).collect();
            median(&values)
        };
        let events_per_s = pick(|m| Some(m.events_per_s));
        let target = if workload.starts_with("delivery_catchup") && system == "annals" {
            Some(if concurrency > 1 { 100_000.0 } else { 20_000.0 })
        } else {
            None
        };
        let met = target.zip(events_per_s).map(|(t, v)| v >= t);
        // The runtime's rate over the ceiling's of the same round, then the median of those.
        let vs_ceiling = (system == "annals")
            .then(|| {
                let ratios: Vec<f64> = ms
                    .iter()
                    .filter_map(|m| {
                        let ceiling = measurements.iter().find(|c| {
                            c.system == "ceiling"
                                && (c.workload, c.writers, c.round)
                                    == (m.workload, m.writers, m.round)
                        })?;
                        (ceiling.events_per_s > 0.0).then(|| m.events_per_s / ceiling.events_per_s)
                    })
                    .collect();
                median(&ratios)
            })
            .flatten();
        let line = json!({
            "summary": true,
            "system": system,
            "workload": workload,
            "concurrency": concurrency,
            "rounds": ms.len(),
            "events_per_s_median": events_per_s,
            "p50_us_median": pick(|m| m.p50_us),
            "p99_us_median": pick(|m| m.p99_us),
            "target_events_per_s": target,
            "target_met": met,
            "vs_ceiling_paired": vs_ceiling,
        });
        eprintln!(
            "  {workload:<20} {system:<7} concurrency {concurrency:>2}: {:>9.0} ev/s{}{}",
            events_per_s.unwrap_or(0.0),
            vs_ceiling.map_or_else(String::new, |v| format!("  {v:.2} x the ceiling")),
            target.map_or_else(String::new, |t| format!(
                "  (target {t:.0}: {})",
                if met == Some(true) { "met" } else { "NOT met" }
            ))
        );
        emit(&line)?;
    }
    Ok(())
}
