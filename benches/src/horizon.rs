//! `annals-bench horizon`: the event horizon between two real `annals` processes, a producer
//! and a consumer (each with its own data directory, platform microservice id and free ports),
//! against the consumer's own commit rate measured in the same run.
//!
//! Workloads (the targets: a backlog at >= 50 000 events/s, live p99 <= 10 ms at
//! 2 000 events/s):
//! - `horizon_backlog`: the producer holds `--events` public events (committed in batches of
//!   `--batch` by `--clients` clients), all in one public stream partition written by a public
//!   filter (a head on `Filters/ConnectPublic` including every event), before the consumer
//!   subscribes; events/s from the `Subscriptions/Subscribe` call to the moment the consumer's
//!   metrics (`annals_horizon_subscription_position`, polled every 10 ms, so no handler's cost
//!   is in the figure) show the whole stream stored in its scoped log. Measured with the
//!   producer's window (`--window`, default the runtime's) and, as
//!   `horizon_backlog_stop_and_wait`, with a window of 1 (the original's protocol), interleaved.
//!   A measurement that does not finish within `--max-seconds` counts what arrived by then
//!   (`complete: false`).
//! - `consumer_commit`: the baseline: the same events committed to a fresh consumer with plain
//!   Commit, the same batches and clients; events/s from the first request to the last answer.
//! - `horizon_live`: with the backlog stored (after the default-window measurement), 16 clients
//!   commit one public event at a time to the producer, paced to `--live-rate` events/s for
//!   `--live-seconds`; a scoped event handler on the consumer (the delivery suite's head,
//!   partitioned with concurrency 16, registered at the tail) records each event's delay from
//!   its `occurred` (the producer's clock at commit, the same machine's clock) to its receipt.
//!   That delay includes the producer's commit, the public filter's round trip and write, the
//!   horizon and the consumer's write and delivery to the handler; it is also split where the
//!   consumer's writer takes the event (each received event carries the consumer's clock then,
//!   `externalEventReceived`), and the commits' own round trip is reported beside it.
//!
//! The producer's store is filled once per run and copied (stopped) for each measurement, so
//! every backlog holds exactly `--events` events and live events never leak into a later
//! backlog. Rounds alternate the order of the measurements (commit, stop-and-wait, window, then
//! the reverse). Both runtimes, both heads and the committers share the machine's 2 cores.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use annals_server::proto::dolittle;
use anyhow::{bail, ensure, Context, Result};
use clap::Args;
use dolittle::runtime::eventhorizon::subscriptions_client::SubscriptionsClient;
use dolittle::runtime::events::processing;
use dolittle::runtime::events::CommitEventsRequest;
use hdrhistogram::Histogram;
use processing::filter_runtime_to_client_message::Message as ToFilter;
use processing::public_filter_client_to_runtime_message::Message as FromFilter;
use serde_json::json;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::transport::Channel;
use uuid::Uuid;

use crate::data::EventFactory;
use crate::delivery::{commit_all, run_head, Registration, Shape, Target};
use crate::grpc::{annals_binary, commit_request, connect, ServerProcess};
use crate::report::{
    emit, fixed, median, now_utc, percentiles_us, record, to_f64, Measurement, Subject,
};
use crate::suite::SuiteArgs;

/// Options of `annals-bench horizon`.
#[derive(Debug, Args)]
pub struct HorizonArgs {
    #[command(flatten)]
    suite: SuiteArgs,
    /// Public events in the producer's backlog. Default 200 000 (quick: 20 000).
    #[arg(long)]
    events: Option<u64>,
    /// Events per Commit, on the producer and in the consumer's baseline.
    #[arg(long, default_value_t = 100)]
    batch: u64,
    /// Concurrent committing clients, on the producer and in the consumer's baseline.
    #[arg(long, default_value_t = 4)]
    clients: usize,
    /// The producer's window of events in flight (annals:eventHorizon:windowEvents, 1 to
    /// 100000), measured against 1 (stop-and-wait), and used for the live workload. Default:
    /// the runtime's.
    #[arg(long)]
    window: Option<usize>,
    /// Longest backlog measurement in seconds; a slower one counts what arrived by then.
    /// Default 60 (quick: 20).
    #[arg(long)]
    max_seconds: Option<f64>,
    /// Seconds of committing in `horizon_live`. Default 10 (quick: 3).
    #[arg(long)]
    live_seconds: Option<f64>,
    /// Public events committed per second on the producer in `horizon_live` (paced).
    #[arg(long, default_value_t = 2000)]
    live_rate: u32,
    /// The `annals` binary (default: next to this tool).
    #[arg(long)]
    annals_bin: Option<PathBuf>,
}

/// The producing microservice.
const PRODUCER: Uuid = Uuid::from_u128(0x5be0_0000_0000_4000_8000_0000_0000_0001);
/// The consuming microservice.
const CONSUMER: Uuid = Uuid::from_u128(0xcbe0_0000_0000_4000_8000_0000_0000_0001);
/// The public stream: the public filter's id.
const STREAM: Uuid = Uuid::from_u128(0x57e0_0000_0000_4000_8000_0000_0000_0001);
/// The consumer's scope the subscription writes to.
const SCOPE: Uuid = Uuid::from_u128(0x5c0e_0000_0000_4000_8000_0000_0000_0001);
/// The producer tenant's consent for the consumer.
const CONSENT: Uuid = Uuid::from_u128(0xc0_0000_0000_4000_8000_0000_0000_0001);
/// The one partition every event goes to.
const PARTITION: &str = "00000000-0000-0000-0000-000000000000";
/// The environment of both runtimes (their default); heads must carry it.
const ENVIRONMENT: &str = "Development";
/// Interval of the consumer's metrics polling in the backlog measurement.
const POLL: Duration = Duration::from_millis(10);
/// The live handler's shape: every event has its own event source, so none waits for another.
const LIVE_SHAPE: Shape = Shape {
    partitioned: true,
    concurrency: 16,
};
/// Committing clients in the live workload (one event per Commit each).
const LIVE_CLIENTS: u32 = 16;

/// The producer's `.dolittle/runtime.yml`: `tenant` consents to the consumer reading the
/// stream's one partition into the same tenant.
fn producer_yaml(tenant: Uuid) -> String {
    format!(
        "platform:\n  microserviceID: {PRODUCER}\ntenants:\n  {tenant}:\n    eventHorizons:\n      \
         {CONSUMER}:\n        consents:\n          - consumerTenant: {tenant}\n            \
         stream: {STREAM}\n            partition: \"{PARTITION}\"\n            consent: {CONSENT}\n"
    )
}

/// The consumer's `.dolittle/runtime.yml`: `tenant`, and the producer's public port if one
/// runs (the baseline has none).
fn consumer_yaml(tenant: Uuid, producer_port: Option<u16>) -> String {
    let producer = producer_port.map_or_else(String::new, |port| {
        format!("microservices:\n  {PRODUCER}:\n    host: 127.0.0.1\n    port: {port}\n")
    });
    format!("platform:\n  microserviceID: {CONSUMER}\ntenants:\n  {tenant}: {{}}\n{producer}")
}

/// A window of the backlog measurement.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Window {
    /// `--window`, or the runtime's default when `None`.
    Configured(Option<usize>),
    /// 1: the producer waits for each acknowledgement.
    StopAndWait,
}

impl Window {
    fn events(self) -> Option<usize> {
        match self {
            Window::Configured(n) => n,
            Window::StopAndWait => Some(1),
        }
    }

    fn workload(self) -> &'static str {
        match self {
            Window::Configured(_) => "horizon_backlog",
            Window::StopAndWait => "horizon_backlog_stop_and_wait",
        }
    }

    fn label(self) -> String {
        self.events()
            .map_or_else(|| "default".to_owned(), |n| n.to_string())
    }
}

/// One measurement of a round.
#[derive(Debug, Clone, Copy)]
enum Step {
    Commit,
    Backlog(Window),
}

/// What every measurement of the run shares.
struct Run {
    binary: PathBuf,
    root: PathBuf,
    runtime: tokio::runtime::Runtime,
    tenant: Uuid,
    events: u64,
    batch: u64,
    clients: usize,
    requests: Arc<Vec<CommitEventsRequest>>,
    live_requests: Arc<Vec<CommitEventsRequest>>,
    event_types: Vec<Uuid>,
    max_wait: Duration,
    live: (Duration, u32),
    date: String,
}

/// Runs the event horizon suite.
pub fn run(args: &HorizonArgs) -> Result<()> {
    let suite = &args.suite;
    let rounds = suite.rounds().max(1);
    let events = suite.or(args.events, 20_000, 200_000);
    ensure!(
        args.batch > 0 && events > 0 && events.is_multiple_of(args.batch),
        "--events {events} must be a positive multiple of --batch {}",
        args.batch
    );
    ensure!(args.clients > 0, "--clients must be positive");
    if let Some(w) = args.window {
        ensure!(
            (1..=100_000).contains(&w),
            "--window {w} is outside 1..=100000"
        );
    }
    let seconds = |v: f64, what: &str| {
        ensure!(
            (0.1..=3600.0).contains(&v),
            "--{what} {v} is outside 0.1..=3600"
        );
        Ok(Duration::from_secs_f64(v))
    };
    let max_wait = seconds(suite.or(args.max_seconds, 20.0, 60.0), "max-seconds")?;
    let live_seconds = seconds(suite.or(args.live_seconds, 3.0, 10.0), "live-seconds")?;
    ensure!(args.live_rate > 0, "--live-rate must be positive");
    let binary = annals_binary(args.annals_bin.as_deref())?;
    let started = Instant::now();
    let root = suite.data_dir()?;
    eprintln!(
        "annals-bench horizon: {rounds} round(s), {events} events in commits of {} by {} \
         clients, window {}, live {live_seconds:?} at {}/s, server {}, data in {}",
        args.batch,
        args.clients,
        Window::Configured(args.window).label(),
        args.live_rate,
        binary.display(),
        root.path().display()
    );
    let mut factory = EventFactory::new(suite.seed);
    let public = |commit: &annals_engine::Commit| {
        let mut request = commit_request(commit);
        for event in &mut request.events {
            event.public = true;
        }
        request
    };
    let commits = events / args.batch;
    let batch = usize::try_from(args.batch).context("--batch")?;
    let requests: Vec<CommitEventsRequest> = (0..commits)
        .map(|_| public(&factory.commit(batch)))
        .collect();
    let live_requests: Vec<CommitEventsRequest> =
        (0..4096).map(|_| public(&factory.commit(1))).collect();
    let tenant = factory.commit(1).execution_context.tenant_id;
    let mut event_types: Vec<Uuid> = requests
        .iter()
        .chain(&live_requests)
        .flat_map(|r| &r.events)
        .filter_map(|e| annals_server::wire::from_uuid(e.event_type.as_ref()?.id.as_ref()?))
        .collect();
    event_types.sort();
    event_types.dedup();
    let run = Run {
        binary,
        root: root.path().to_owned(),
        runtime: tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .context("start the client runtime")?,
        tenant,
        events,
        batch: args.batch,
        clients: args.clients,
        requests: Arc::new(requests),
        live_requests: Arc::new(live_requests),
        event_types,
        max_wait,
        live: (live_seconds, args.live_rate),
        date: now_utc(),
    };
    run.fill()?;

    let mut steps = vec![Step::Commit, Step::Backlog(Window::StopAndWait)];
    if args.window != Some(1) {
        steps.push(Step::Backlog(Window::Configured(args.window)));
    }
    let mut measurements = Vec::new();
    for round in 0..rounds {
        let mut order = steps.clone();
        if round % 2 == 1 {
            order.reverse();
        }
        for step in order {
            let taken = match step {
                Step::Commit => vec![run.measure_commit(round)?],
                Step::Backlog(window) => run.measure_backlog(window, round)?,
            };
            for m in taken {
                progress(rounds, &m);
                record(&mut measurements, m)?;
            }
        }
    }
    summarise(&measurements, &run.date)?;
    drop(run);
    root.close().context("remove the data directory")?;
    eprintln!("done in {:.1?}", started.elapsed());
    Ok(())
}

impl Run {
    /// The producer's pristine store, which every measurement starts from a copy of.
    fn base(&self) -> PathBuf {
        self.root.join("producer-base")
    }

    fn start_producer(&self, dir: &Path, window: Option<usize>) -> Result<ServerProcess> {
        let args: Vec<String> = window
            .map(|w| {
                vec![
                    "--set".to_owned(),
                    format!("annals:eventHorizon:windowEvents={w}"),
                ]
            })
            .unwrap_or_default();
        ServerProcess::start_configured(&self.binary, dir, &producer_yaml(self.tenant), &args)
    }

    /// Commits the backlog to a producer and waits until its public filter has put every
    /// event in the public stream; then stops it, leaving the store in [`Run::base`].
    fn fill(&self) -> Result<()> {
        let producer = self.start_producer(&self.base(), None)?;
        let filter = PublicFilter::start(producer.private_port, self.tenant)?;
        let clients = connect(&self.runtime, producer.private_port, self.clients)?;
        let began = Instant::now();
        let committed = commit_all(
            &self.runtime,
            clients,
            &self.requests,
            self.requests.len() as u64,
        )?;
        eprintln!(
            "filled the producer: {} events committed in {committed:.1?} ({:.0} ev/s)",
            self.events,
            to_f64(self.events) / committed.as_secs_f64()
        );
        wait_for_progress(
            "the public filter",
            Duration::from_millis(50),
            || {
                Ok(metric(
                    &producer.metrics()?,
                    "annals_processor_position{",
                    &STREAM.to_string(),
                ))
            },
            self.events,
        )?;
        let filtered = began.elapsed();
        let answered = filter.stop()?;
        producer.stop()?;
        eprintln!(
            "public stream written: {} events filtered {filtered:.1?} after the first commit \
             ({:.0} ev/s, {answered} filter requests answered)",
            self.events,
            to_f64(self.events) / filtered.as_secs_f64()
        );
        emit(&json!({
            "workload": "horizon_fill",
            "events": self.events,
            "commit_seconds": committed.as_secs_f64(),
            "public_filter_seconds": filtered.as_secs_f64(),
            "date": self.date,
        }))
    }

    /// A fresh copy of the producer's filled store.
    fn producer_copy(&self, name: &str) -> Result<PathBuf> {
        let dir = self.root.join(name);
        let status = Command::new("cp")
            .arg("-a")
            .arg(self.base())
            .arg(&dir)
            .status()
            .context("run cp")?;
        ensure!(
            status.success(),
            "copying the producer's store failed: {status}"
        );
        Ok(dir)
    }

    fn subject(&self, workload: &'static str, round: usize) -> Subject {
        Subject {
            system: "annals",
            workload,
            writers: self.clients,
            batch: usize::try_from(self.batch).ok(),
            round,
        }
    }

    /// The baseline: the backlog's events committed to a fresh consumer.
    fn measure_commit(&self, round: usize) -> Result<Measurement> {
        let dir = self.root.join(format!("baseline-r{round}"));
        let consumer = ServerProcess::start_configured(
            &self.binary,
            &dir,
            &consumer_yaml(self.tenant, None),
            &[],
        )?;
        let clients = connect(&self.runtime, consumer.private_port, self.clients)?;
        let took = commit_all(
            &self.runtime,
            clients,
            &self.requests,
            self.requests.len() as u64,
        )?;
        consumer.stop()?;
        std::fs::remove_dir_all(&dir).context("remove the baseline's data")?;
        let mut m = Measurement::new(
            self.subject("consumer_commit", round),
            &self.date,
            self.events,
            took.as_secs_f64(),
            (None, None),
        );
        m.io_backend = "server".into();
        Ok(m)
    }

    /// The backlog with `window`, and after it the live workload if `window` is the
    /// configured one.
    fn measure_backlog(&self, window: Window, round: usize) -> Result<Vec<Measurement>> {
        let name = format!("r{round}-w{}", window.label());
        let producer_dir = self.producer_copy(&format!("producer-{name}"))?;
        let producer = self.start_producer(&producer_dir, window.events())?;
        let consumer_dir = self.root.join(format!("consumer-{name}"));
        let consumer = ServerProcess::start_configured(
            &self.binary,
            &consumer_dir,
            &consumer_yaml(self.tenant, Some(producer.public_port)),
            &[],
        )?;
        let scope = SCOPE.to_string();
        let began = Instant::now();
        let consent = self
            .runtime
            .block_on(subscribe(consumer.private_port, self.tenant))?;
        ensure!(
            consent == CONSENT,
            "accepted under consent {consent}, not {CONSENT}"
        );
        let accepted = began.elapsed();
        let (stored, elapsed) = loop {
            let stored = metric(
                &consumer.metrics()?,
                "annals_horizon_subscription_position{",
                &scope,
            );
            let elapsed = began.elapsed();
            if stored >= self.events || elapsed >= self.max_wait {
                break (stored, elapsed);
            }
            std::thread::sleep(POLL);
        };
        let mut backlog = Measurement::new(
            self.subject(window.workload(), round),
            &self.date,
            stored,
            elapsed.as_secs_f64(),
            (None, None),
        );
        backlog.io_backend = "server".into();
        backlog
            .extra
            .insert("window_events".into(), json!(window.label()));
        backlog
            .extra
            .insert("complete".into(), json!(stored >= self.events));
        backlog
            .extra
            .insert("subscribe_ms".into(), json!(accepted.as_secs_f64() * 1e3));
        let mut taken = vec![backlog];
        if stored < self.events && matches!(window, Window::Configured(_)) {
            eprintln!("the backlog did not finish within the time limit: no live measurement");
        }
        if stored >= self.events && matches!(window, Window::Configured(_)) {
            let mut live = self.measure_live(&producer, &consumer, round)?;
            live.extra
                .insert("window_events".into(), json!(window.label()));
            taken.push(live);
        }
        consumer.stop()?;
        producer.stop()?;
        std::fs::remove_dir_all(&consumer_dir).context("remove the consumer's data")?;
        std::fs::remove_dir_all(&producer_dir).context("remove the producer's data")?;
        Ok(taken)
    }

    /// Live events through a caught-up subscription to a scoped handler on the consumer.
    fn measure_live(
        &self,
        producer: &ServerProcess,
        consumer: &ServerProcess,
        round: usize,
    ) -> Result<Measurement> {
        let (window, rate) = self.live;
        let filter = PublicFilter::start(producer.private_port, self.tenant)?;
        let committed = Arc::new(AtomicU64::new(u64::MAX));
        let head = run_head(
            Registration {
                port: consumer.private_port,
                microservice: CONSUMER,
                tenant: self.tenant,
                scope: SCOPE,
                event_types: self.event_types.clone(),
                shape: LIVE_SHAPE,
                start_latest: true,
            },
            Target::Reported(Arc::clone(&committed)),
        );
        // Give the registration time to be accepted before committing (start from latest).
        std::thread::sleep(Duration::from_millis(300));
        let clients = connect(&self.runtime, producer.private_port, LIVE_CLIENTS as usize)?;
        let cpu_before = [
            cpu_seconds(producer.pid()),
            cpu_seconds(consumer.pid()),
            cpu_seconds(std::process::id()),
        ];
        let sampler = LagSampler::start(producer, consumer);
        let end = Instant::now() + window;
        let tasks: Vec<_> = clients
            .into_iter()
            .enumerate()
            .map(|(n, mut client)| {
                let requests = Arc::clone(&self.live_requests);
                self.runtime.spawn(async move {
                    let mut hist = Histogram::<u64>::new(3).context("create a histogram")?;
                    let mut i = n;
                    // Each client commits every LIVE_CLIENTS / rate seconds.
                    let mut pace = tokio::time::interval(Duration::from_secs_f64(
                        f64::from(LIVE_CLIENTS) / f64::from(rate),
                    ));
                    pace.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                    while Instant::now() < end {
                        pace.tick().await;
                        let sent = Instant::now();
                        let response = client.commit(requests[i % requests.len()].clone()).await?;
                        if let Some(failure) = response.into_inner().failure {
                            bail!("a commit failed: {}", failure.reason);
                        }
                        hist.record(u64::try_from(sent.elapsed().as_nanos()).unwrap_or(u64::MAX))?;
                        i += LIVE_CLIENTS as usize;
                    }
                    anyhow::Ok(hist)
                })
            })
            .collect();
        let mut commits = Histogram::<u64>::new(3).context("create a histogram")?;
        for task in tasks {
            let hist = self
                .runtime
                .block_on(task)
                .context("a committer failed")??;
            commits.add(&hist).context("merge latencies")?;
        }
        committed.store(commits.len(), Ordering::Release);
        let outcome = head
            .join()
            .map_err(|_| anyhow::anyhow!("the head panicked"))??;
        let cpu_after = [
            cpu_seconds(producer.pid()),
            cpu_seconds(consumer.pid()),
            cpu_seconds(std::process::id()),
        ];
        let lags = sampler.stop()?;
        let cpu: Vec<Option<f64>> = cpu_before
            .iter()
            .zip(&cpu_after)
            .map(|(b, a)| Some(a.as_ref()? - b.as_ref()?))
            .collect();
        let span = outcome.elapsed.as_secs_f64();
        filter.stop()?;
        let mut m = Measurement::new(
            self.subject("horizon_live", round),
            &self.date,
            outcome.events,
            window.as_secs_f64(),
            percentiles_us(&outcome.latency_ns),
        );
        m.writers = LIVE_CLIENTS as usize;
        m.batch = Some(1);
        m.io_backend = "server".into();
        let (commit_p50, commit_p99) = percentiles_us(&commits);
        m.extra.insert("rate".into(), json!(rate));
        m.extra.insert("commit_p50_us".into(), json!(commit_p50));
        m.extra.insert("commit_p99_us".into(), json!(commit_p99));
        m.extra.insert(
            "handler".into(),
            json!({"partitioned": LIVE_SHAPE.partitioned, "concurrency": LIVE_SHAPE.concurrency}),
        );
        // Where the delay is: up to the consumer's writer taking the event (the producer's
        // commit, its public filter, the horizon), then from there (the consumer's write
        // included) to the handler.
        let (consumer_p50, consumer_p99) = percentiles_us(&outcome.to_consumer_ns);
        let (head_p50, head_p99) = percentiles_us(&outcome.consumer_to_head_ns);
        m.extra
            .insert("to_consumer_p50_us".into(), json!(consumer_p50));
        m.extra
            .insert("to_consumer_p99_us".into(), json!(consumer_p99));
        m.extra
            .insert("consumer_to_handler_p50_us".into(), json!(head_p50));
        m.extra
            .insert("consumer_to_handler_p99_us".into(), json!(head_p99));
        m.extra.insert("committed".into(), json!(commits.len()));
        // From the handler's registration to its last event: a live run that keeps up ends
        // soon after the committing window.
        m.extra.insert("handler_span_s".into(), json!(span));
        m.extra.insert(
            "cpu_seconds".into(),
            json!({"producer": cpu[0], "consumer": cpu[1], "tool": cpu[2]}),
        );
        m.extra.insert(
            "max_lag_events".into(),
            json!({
                "public_filter": lags.public_filter,
                "horizon_unacknowledged": lags.horizon,
                "consumer_handler": lags.handler,
            }),
        );
        Ok(m)
    }
}

/// Asks the consumer (Subscriptions/Subscribe on its private port) to subscribe `tenant`'s
/// scope to the producer's stream; returns the consent it was accepted under.
async fn subscribe(port: u16, tenant: Uuid) -> Result<Uuid> {
    let wire = annals_server::wire::uuid;
    let channel = Channel::from_shared(format!("http://127.0.0.1:{port}"))?
        .connect()
        .await
        .context("connect to the consumer")?;
    let request = dolittle::runtime::eventhorizon::Subscription {
        call_context: Some(dolittle::services::CallRequestContext {
            execution_context: Some(execution_context(CONSUMER, tenant)),
            head_id: Some(wire(Uuid::new_v4())),
        }),
        microservice_id: Some(wire(PRODUCER)),
        tenant_id: Some(wire(tenant)),
        stream_id: Some(wire(STREAM)),
        partition_id: PARTITION.to_owned(),
        scope_id: Some(wire(SCOPE)),
    };
    let response = SubscriptionsClient::new(channel)
        .subscribe(request)
        .await
        .context("Subscribe")?
        .into_inner();
    if let Some(failure) = response.failure {
        bail!("the subscription was refused: {}", failure.reason);
    }
    let consent = response.consent_id.context("no consent id")?;
    annals_server::wire::from_uuid(&consent).context("the consent id is not 16 bytes")
}

fn execution_context(microservice: Uuid, tenant: Uuid) -> dolittle::execution::ExecutionContext {
    let wire = annals_server::wire::uuid;
    dolittle::execution::ExecutionContext {
        microservice_id: Some(wire(microservice)),
        tenant_id: Some(wire(tenant)),
        version: Some(dolittle::versioning::Version::default()),
        correlation_id: Some(wire(Uuid::new_v4())),
        claims: Vec::new(),
        environment: ENVIRONMENT.into(),
        span_id: None,
    }
}

/// The value of the first series of `name` (its name and opening brace) whose labels hold
/// `needle`; 0 when there is none yet.
fn metric(text: &str, name: &str, needle: &str) -> u64 {
    text.lines()
        .filter(|l| l.starts_with(name) && l.contains(needle))
        .find_map(|l| l.rsplit(' ').next()?.parse::<u64>().ok())
        .unwrap_or(0)
}

/// CPU seconds (user and system) process `pid` has used, from /proc/<pid>/stat, whose
/// figures are in USER_HZ (100 per second on Linux).
fn cpu_seconds(pid: u32) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) may hold spaces; fields after it are plain.
    let rest = stat.get(stat.rfind(')')? + 1..)?;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // Fields 14 (utime) and 15 (stime); `rest` starts at field 3.
    let ticks = fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?;
    Some(to_f64(ticks) / 100.0)
}

/// The largest lags seen during the live workload, in events.
#[derive(Debug, Default, Clone, Copy)]
struct Lags {
    /// The producer's public filter behind its event log.
    public_filter: u64,
    /// Events of the public stream the consumer has not acknowledged (an upper bound).
    horizon: u64,
    /// The consumer's event handler behind its scoped log.
    handler: u64,
}

/// Reads both servers' metrics every 100 ms on a thread of its own and keeps the largest
/// lags, to tell where live events wait.
struct LagSampler {
    stop: Arc<AtomicBool>,
    thread: std::thread::JoinHandle<Result<Lags>>,
}

impl LagSampler {
    fn start(producer: &ServerProcess, consumer: &ServerProcess) -> LagSampler {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = Arc::clone(&stop);
        let (producer, consumer) = (producer.metrics_reader(), consumer.metrics_reader());
        let thread = std::thread::spawn(move || {
            let stream = STREAM.to_string();
            let mut lags = Lags::default();
            while !flag.load(Ordering::Acquire) {
                let text = producer()?;
                let filter = metric(&text, "annals_processor_lag_events{", &stream);
                let horizon = metric(&text, "annals_horizon_served_lag_events{", &stream);
                let text = consumer()?;
                let handler = metric(
                    &text,
                    "annals_processor_lag_events{",
                    "kind=\"event_handler\"",
                );
                lags.public_filter = lags.public_filter.max(filter);
                lags.horizon = lags.horizon.max(horizon);
                lags.handler = lags.handler.max(handler);
                std::thread::sleep(Duration::from_millis(100));
            }
            Ok(lags)
        });
        LagSampler { stop, thread }
    }

    fn stop(self) -> Result<Lags> {
        self.stop.store(true, Ordering::Release);
        self.thread
            .join()
            .map_err(|_| anyhow::anyhow!("the lag sampler panicked"))?
    }
}

/// Polls `read` every `interval` until it reaches `target`; fails when it has not moved for
/// 60 s.
fn wait_for_progress(
    what: &str,
    interval: Duration,
    mut read: impl FnMut() -> Result<u64>,
    target: u64,
) -> Result<()> {
    let (mut last, mut moved) = (0, Instant::now());
    loop {
        let now = read()?;
        if now >= target {
            return Ok(());
        }
        if now != last {
            (last, moved) = (now, Instant::now());
        }
        ensure!(
            moved.elapsed() < Duration::from_secs(60),
            "{what} stayed at {now} of {target} for 60 s"
        );
        std::thread::sleep(interval);
    }
}

/// The producer's public filter: a head on Filters/ConnectPublic, on a thread and runtime of
/// its own, including every event in [`PARTITION`], until stopped.
struct PublicFilter {
    stop: Arc<AtomicBool>,
    thread: std::thread::JoinHandle<Result<u64>>,
}

impl PublicFilter {
    /// Connects the filter to the runtime at `port` and returns once its registration was
    /// accepted.
    fn start(port: u16, tenant: Uuid) -> Result<PublicFilter> {
        let stop = Arc::new(AtomicBool::new(false));
        let (registered, accepted) = std::sync::mpsc::channel();
        let flag = Arc::clone(&stop);
        let thread = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .context("start the filter's runtime")?;
            runtime.block_on(public_filter(port, tenant, &flag, registered))
        });
        if accepted.recv_timeout(Duration::from_secs(60)).is_ok() {
            return Ok(PublicFilter { stop, thread });
        }
        // The sender is gone (the filter failed) or it hung: either way it is over.
        stop.store(true, Ordering::Release);
        match thread.join() {
            Ok(Err(e)) => Err(e.context("the public filter")),
            Ok(Ok(_)) => bail!("the public filter was not registered within 60 s"),
            Err(_) => bail!("the public filter panicked"),
        }
    }

    /// Disconnects the filter; returns the requests it answered.
    fn stop(self) -> Result<u64> {
        self.stop.store(true, Ordering::Release);
        self.thread
            .join()
            .map_err(|_| anyhow::anyhow!("the public filter panicked"))?
    }
}

async fn public_filter(
    port: u16,
    tenant: Uuid,
    stop: &AtomicBool,
    registered: std::sync::mpsc::Sender<()>,
) -> Result<u64> {
    let wire = annals_server::wire::uuid;
    let channel = Channel::from_shared(format!("http://127.0.0.1:{port}"))?
        .initial_stream_window_size(Some(4 << 20))
        .initial_connection_window_size(Some(16 << 20))
        .connect()
        .await
        .context("connect the public filter")?;
    let mut client =
        processing::filters_client::FiltersClient::new(channel).max_decoding_message_size(64 << 20);
    let (to_runtime, outbound) = mpsc::channel(1024);
    let registration = processing::PublicFilterRegistrationRequest {
        call_context: Some(dolittle::services::ReverseCallArgumentsContext {
            execution_context: Some(execution_context(PRODUCER, tenant)),
            head_id: Some(wire(Uuid::new_v4())),
            ping_interval: Some(prost_types::Duration {
                seconds: 5,
                nanos: 0,
            }),
        }),
        filter_id: Some(wire(STREAM)),
    };
    to_runtime
        .send(processing::PublicFilterClientToRuntimeMessage {
            message: Some(FromFilter::RegistrationRequest(registration)),
        })
        .await?;
    let mut inbound = client
        .connect_public(ReceiverStream::new(outbound))
        .await
        .context("open the public filter's reverse call")?
        .into_inner();
    match inbound.message().await?.and_then(|m| m.message) {
        Some(ToFilter::RegistrationResponse(response)) => {
            if let Some(failure) = response.failure {
                bail!("registration refused: {}", failure.reason);
            }
        }
        other => bail!("expected the registration response, got {other:?}"),
    }
    // The receiver may have given up waiting; then `start` reports the failure.
    let _ = registered.send(());
    let mut answered = 0u64;
    while !stop.load(Ordering::Acquire) {
        // Short waits, so a stop is seen soon with nothing coming.
        let Ok(message) = tokio::time::timeout(Duration::from_millis(20), inbound.message()).await
        else {
            continue;
        };
        let message = message?.context("the runtime ended the filter's stream")?;
        let answer = match message.message {
            Some(ToFilter::FilterRequest(request)) => {
                answered += 1;
                FromFilter::FilterResult(processing::PartitionedFilterResponse {
                    call_context: Some(dolittle::services::ReverseCallResponseContext {
                        call_id: request.call_context.and_then(|c| c.call_id),
                    }),
                    is_included: true,
                    partition_id: PARTITION.to_owned(),
                    failure: None,
                })
            }
            Some(ToFilter::Ping(_)) => FromFilter::Pong(dolittle::services::Pong {}),
            other => bail!("unexpected message from the runtime: {other:?}"),
        };
        to_runtime
            .send(processing::PublicFilterClientToRuntimeMessage {
                message: Some(answer),
            })
            .await?;
    }
    Ok(answered)
}

fn progress(rounds: usize, m: &Measurement) {
    let us = |v: Option<f64>| v.map_or_else(|| "-".to_owned(), |v| format!("{v:.0}us"));
    let window = m
        .extra
        .get("window_events")
        .and_then(serde_json::Value::as_str)
        .map_or_else(String::new, |w| format!("  window {w}"));
    let partial = if m.extra.get("complete") == Some(&json!(false)) {
        "  (incomplete: time limit)"
    } else {
        ""
    };
    eprintln!(
        "[{}/{}] {:<30} {:>9} events {:>8.2} s {:>10.0} ev/s  p50 {:>8}  p99 {:>8}{window}{partial}",
        m.round + 1,
        rounds,
        m.workload,
        m.events,
        m.seconds,
        m.events_per_s,
        us(m.p50_us),
        us(m.p99_us),
    );
    if m.workload == "horizon_live" {
        let extra = |key: &str| {
            m.extra
                .get(key)
                .map_or_else(String::new, ToString::to_string)
        };
        eprintln!(
            "      committed {}, commit p50 {} us p99 {} us; occurred to consumer p50 {} us p99 \
             {} us, consumer to handler p50 {} us p99 {} us; CPU s {}, max lag {}",
            extra("committed"),
            extra("commit_p50_us"),
            extra("commit_p99_us"),
            extra("to_consumer_p50_us"),
            extra("to_consumer_p99_us"),
            extra("consumer_to_handler_p50_us"),
            extra("consumer_to_handler_p99_us"),
            extra("cpu_seconds"),
            extra("max_lag_events"),
        );
    }
}

/// The targets: the backlog's events/s, the live p99 in microseconds.
const TARGET_BACKLOG_EVENTS_PER_S: f64 = 50_000.0;
const TARGET_LIVE_P99_US: f64 = 10_000.0;

/// Medians per workload, the backlog's ratios to the consumer's own commit rate and to
/// stop-and-wait (of medians, and paired within rounds), and the targets; one JSON line each.
fn summarise(measurements: &[Measurement], date: &str) -> Result<()> {
    let mut groups: BTreeMap<&str, Vec<&Measurement>> = BTreeMap::new();
    for m in measurements {
        groups.entry(m.workload).or_default().push(m);
    }
    let rate_median = |workload: &str| {
        let values: Vec<f64> = groups
            .get(workload)
            .into_iter()
            .flatten()
            .map(|m| m.events_per_s)
            .collect();
        median(&values)
    };
    // The ratio a / b within each round, then their median.
    let paired = |a: &str, b: &str| {
        let in_round = |workload: &str, round: usize| {
            measurements
                .iter()
                .find(|m| m.workload == workload && m.round == round)
                .map(|m| m.events_per_s)
        };
        let ratios: Vec<f64> = measurements
            .iter()
            .filter(|m| m.workload == a)
            .filter_map(|m| Some(m.events_per_s / in_round(b, m.round)?))
            .collect();
        median(&ratios)
    };
    let ratio = |a: Option<f64>, b: Option<f64>| a.zip(b).map(|(a, b)| a / b);
    eprintln!("\nmedians:");
    for (workload, ms) in &groups {
        let pick = |f: fn(&Measurement) -> Option<f64>| {
            let values: Vec<f64> = ms.iter().filter_map(|m| f(m)).collect();
            median(&values)
        };
        let events_per_s = pick(|m| Some(m.events_per_s));
        let p99 = pick(|m| m.p99_us);
        let (target, met) = match *workload {
            "horizon_backlog" => (
                Some(format!(">= {TARGET_BACKLOG_EVENTS_PER_S} events/s")),
                events_per_s.map(|v| v >= TARGET_BACKLOG_EVENTS_PER_S),
            ),
            "horizon_live" => (
                Some(format!("p99 <= {TARGET_LIVE_P99_US} us")),
                p99.map(|v| v <= TARGET_LIVE_P99_US),
            ),
            _ => (None, None),
        };
        let incomplete = ms
            .iter()
            .filter(|m| m.extra.get("complete") == Some(&json!(false)))
            .count();
        let line = json!({
            "summary": true,
            "workload": workload,
            "rounds": ms.len(),
            "incomplete": incomplete,
            "events_per_s_median": events_per_s,
            "p50_us_median": pick(|m| m.p50_us),
            "p99_us_median": p99,
            "commit_p99_us_median": pick(|m| m.extra.get("commit_p99_us")?.as_f64()),
            "to_consumer_p50_us_median": pick(|m| m.extra.get("to_consumer_p50_us")?.as_f64()),
            "to_consumer_p99_us_median": pick(|m| m.extra.get("to_consumer_p99_us")?.as_f64()),
            "consumer_to_handler_p50_us_median":
                pick(|m| m.extra.get("consumer_to_handler_p50_us")?.as_f64()),
            "consumer_to_handler_p99_us_median":
                pick(|m| m.extra.get("consumer_to_handler_p99_us")?.as_f64()),
            "target": target,
            "target_met": met,
            "date": date,
        });
        eprintln!(
            "  {workload:<30} {:>10.0} ev/s  p50 {}  p99 {}{}{}",
            events_per_s.unwrap_or(0.0),
            pick(|m| m.p50_us).map_or_else(|| "-".to_owned(), |v| format!("{v:.0}us")),
            p99.map_or_else(|| "-".to_owned(), |v| format!("{v:.0}us")),
            if incomplete > 0 {
                format!("  ({incomplete} stopped at the time limit)")
            } else {
                String::new()
            },
            target.map_or_else(String::new, |t| format!(
                "  (target {t}: {})",
                if met == Some(true) { "met" } else { "NOT met" }
            )),
        );
        emit(&line)?;
    }
    let commit = rate_median("consumer_commit");
    for backlog in ["horizon_backlog", "horizon_backlog_stop_and_wait"] {
        let rate = rate_median(backlog);
        if rate.is_none() {
            continue;
        }
        let (vs, vs_paired) = (ratio(rate, commit), paired(backlog, "consumer_commit"));
        eprintln!(
            "  {backlog} / consumer_commit: {} (paired {})",
            fixed(vs, 2),
            fixed(vs_paired, 2),
        );
        emit(&json!({
            "workload": "ratio",
            "of_workload": backlog,
            "to_workload": "consumer_commit",
            "ratio": vs,
            "ratio_paired": vs_paired,
            "date": date,
        }))?;
    }
    let window = ratio(
        rate_median("horizon_backlog"),
        rate_median("horizon_backlog_stop_and_wait"),
    );
    if let Some(v) = window {
        let v_paired = paired("horizon_backlog", "horizon_backlog_stop_and_wait");
        eprintln!(
            "  horizon_backlog / stop-and-wait: {v:.2} (paired {})",
            fixed(v_paired, 2)
        );
        emit(&json!({
            "workload": "ratio",
            "of_workload": "horizon_backlog",
            "to_workload": "horizon_backlog_stop_and_wait",
            "ratio": v,
            "ratio_paired": v_paired,
            "date": date,
        }))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metrics_are_read_by_name_and_id() {
        let text = format!(
            "# TYPE annals_horizon_subscription_position gauge\n\
             annals_horizon_subscription_position{{tenant=\"t\",scope=\"{}\"}} 7\n\
             annals_horizon_subscription_position{{tenant=\"t\",scope=\"{SCOPE}\"}} 42\n",
            Uuid::nil()
        );
        assert_eq!(
            metric(
                &text,
                "annals_horizon_subscription_position{",
                &SCOPE.to_string()
            ),
            42
        );
        assert_eq!(
            metric(&text, "annals_processor_position{", &SCOPE.to_string()),
            0
        );
    }

    #[test]
    fn configurations_name_both_sides() {
        let tenant = Uuid::from_u128(7);
        let producer = producer_yaml(tenant);
        assert!(producer.contains(&format!("microserviceID: {PRODUCER}")));
        assert!(producer.contains(&format!("{CONSUMER}:\n        consents:")));
        assert!(producer.contains(&format!("consumerTenant: {tenant}")));
        let consumer = consumer_yaml(tenant, Some(4242));
        assert!(consumer.contains("port: 4242"));
        assert!(!consumer_yaml(tenant, None).contains("microservices"));
    }

    #[test]
    fn progress_waits_return_at_the_target() {
        let mut n = 0;
        wait_for_progress(
            "counting",
            Duration::ZERO,
            || {
                n += 1;
                Ok(n)
            },
            5,
        )
        .unwrap();
        assert_eq!(n, 5);
    }
}
