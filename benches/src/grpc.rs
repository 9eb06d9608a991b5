//! `annals-bench grpc`: the `annals` server over gRPC, driven like heads drive it, against the
//! raw group-commit limit and the gRPC ceiling (`ceiling`: the same clients against a tonic
//! server that answers in kind and does no I/O), all measured in the same run, interleaved,
//! the order turning round by round. Commits are also measured against the durable ceiling
//! (`durable`: the ceiling answering each Commit once its events are written and synced, with
//! the raw baseline's one `pwrite` and one `fdatasync` per group; `ceiling.rs`): what any
//! server that keeps the contract's promise can reach on this machine and this disk.
//!
//! Workloads (design.md section 7, issue 15):
//! - `grpc_commit`: for each shape (clients x events per Commit), every client commits in a
//!   closed loop over its own HTTP/2 connection; the raw baseline runs the same shape with the
//!   same events framed (`append` through the shared driver), the ceiling the same requests.
//! - `grpc_commit_aggregate`: 16 clients, each committing one event at a time to its own
//!   aggregate with the right expected version (CommitForAggregate); also said as a share of
//!   the runtime's Commit 16 x 1.
//! - `grpc_fetch`: 16 clients fetching random 10-event aggregates (FetchForAggregate) from a
//!   store filled before the window (the ceiling answers a canned aggregate of that size).
//!   None of them changes during the window, so after its first fetch each is answered with
//!   the answer the runtime kept (`annals:fetchCache`).
//! - `grpc_fetch_read`: the same with no answers kept (`annals:fetchCache: 0`), so every fetch
//!   reads the index and the log and encodes its answer; against the same round's ceiling
//!   fetch (one ceiling measurement, reported under both workloads).
//! - `grpc_fetch_batches`, `grpc_fetch_batches_read`: the same two through
//!   FetchForAggregateInBatches (all events), as the .NET SDK fetches; the ceiling has no such
//!   rpc, so these are annals' figures alone.
//! - `grpc_memory`: the runtime's resident memory idle, under 256 connections committing one
//!   event at a time, and after they hung up (bounded memory per connection).
//!
//! The server is the real binary (next to this tool, or `--annals-bin`), started fresh on an
//! empty data directory for each measurement, on free ports, with the default (durable)
//! settings, and stopped with SIGTERM afterwards. The load tool shares the machine (2 cores)
//! with it, as the target says.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use annals_engine::{Commit, EventType, ExecutionContext};
use annals_server::proto::dolittle;
use anyhow::{bail, Context, Result};
use clap::Args;
use hdrhistogram::Histogram;
use serde_json::json;
use std::sync::Arc;
use tonic::transport::Channel;

use crate::ceiling::{Canned, Ceiling};
use crate::cpu;
use crate::data::{CommitPool, EventFactory};
use crate::driver::{AppendOutcome, Window};
use crate::raw::{RawLayout, RawLog};
use crate::report::{
    emit, fixed, median, now_utc, paired_ratio, percentiles_us, progress_line, rate_in_round,
    ratio, record, shapes, summarise_against, to_f64, Measurement, Subject,
};
use crate::suite::{parse_shape, SuiteArgs, WindowArgs};

/// Options of `annals-bench grpc`.
#[derive(Debug, Args)]
pub struct GrpcArgs {
    #[command(flatten)]
    suite: SuiteArgs,
    #[command(flatten)]
    window: WindowArgs,
    /// Commit shapes as CLIENTSxBATCH, comma-separated.
    #[arg(long, value_delimiter = ',', value_parser = parse_shape, default_value = "16x1,16x100,1x100")]
    shapes: Vec<(usize, usize)>,
    /// The `annals` binary (default: next to this tool).
    #[arg(long)]
    annals_bin: Option<PathBuf>,
}

/// Counters read from a server's metrics.
#[derive(Debug, Clone, Copy)]
struct ServerCounters {
    fdatasyncs: u64,
    commit_seconds: f64,
    commits: u64,
}

/// A running server.
pub(crate) struct ServerProcess {
    child: Child,
    pub(crate) private_port: u16,
    pub(crate) public_port: u16,
    pub(crate) web_port: u16,
    metrics_port: u16,
}

impl ServerProcess {
    /// A server with the default configuration serving `tenant`, in `dir`.
    pub(crate) fn start(binary: &Path, dir: &Path, tenant: uuid::Uuid) -> Result<ServerProcess> {
        Self::launch(binary, dir, &["--tenant".to_owned(), tenant.to_string()])
    }

    /// A server configured by `runtime_yml` (written to `dir/.dolittle/runtime.yml`, which the
    /// server reads from its working directory) and `args` added to `annals serve`. Starting
    /// again in the same `dir` keeps its data.
    pub(crate) fn start_configured(
        binary: &Path,
        dir: &Path,
        runtime_yml: &str,
        args: &[String],
    ) -> Result<ServerProcess> {
        let config = dir.join(".dolittle");
        std::fs::create_dir_all(&config).with_context(|| format!("create {}", config.display()))?;
        std::fs::write(config.join("runtime.yml"), runtime_yml)
            .context("write the server's runtime.yml")?;
        Self::launch(binary, dir, args)
    }

    fn launch(binary: &Path, dir: &Path, args: &[String]) -> Result<ServerProcess> {
        std::fs::create_dir_all(dir).with_context(|| format!("create {}", dir.display()))?;
        let ready = dir.join("ready.json");
        // A ready file of an earlier start in the same directory names ports no longer bound.
        match std::fs::remove_file(&ready) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                return Err(e).context("remove an old ready file");
            }
            _ => {}
        }
        let log = std::fs::File::create(dir.join("annals.log")).context("create the server log")?;
        let mut child = Command::new(binary)
            .arg("serve")
            .args([
                "--listen-address",
                "127.0.0.1",
                "--private-port",
                "0",
                "--public-port",
                "0",
            ])
            .args([
                "--management-port",
                "0",
                "--management-web-port",
                "0",
                "--web-port",
                "0",
                "--metrics-port",
                "0",
                "--legacy-port",
                "0",
            ])
            .arg("--data-dir")
            .arg(dir.join("data"))
            .args(args)
            .arg("--ready-file")
            .arg(&ready)
            .current_dir(dir)
            .env("RUST_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .with_context(|| format!("start {}", binary.display()))?;
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Ok(text) = std::fs::read_to_string(&ready) {
                let ports: serde_json::Value =
                    serde_json::from_str(&text).context("read the ready file")?;
                let port = |name: &str| -> Result<u16> {
                    let port = ports[name]
                        .as_u64()
                        .with_context(|| format!("no {name} port"))?;
                    Ok(u16::try_from(port)?)
                };
                return Ok(ServerProcess {
                    private_port: port("private")?,
                    public_port: port("public")?,
                    web_port: port("web")?,
                    metrics_port: port("metrics")?,
                    child,
                });
            }
            if let Some(status) = child.try_wait()? {
                bail!(
                    "annals exited at startup ({status}); see {}",
                    dir.join("annals.log").display()
                );
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                bail!("annals did not start within 60 s");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// The server's process id.
    pub(crate) fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The text of the server's `/metrics`.
    pub(crate) fn metrics(&self) -> Result<String> {
        metrics_of(self.metrics_port)
    }

    /// Reads the server's `/metrics` from another thread.
    pub(crate) fn metrics_reader(&self) -> impl Fn() -> Result<String> + Send + 'static {
        let port = self.metrics_port;
        move || metrics_of(port)
    }

    /// From the server's metrics: its event-log data syncs so far, and the total seconds
    /// and count of the Commit requests it answered (to tell server time from round trip).
    fn counters(&self) -> Result<ServerCounters> {
        let text = self.metrics()?;
        let sum = |prefix: &str| -> f64 {
            text.lines()
                .filter(|l| l.starts_with(prefix))
                .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
                .sum()
        };
        #[expect(
            clippy::cast_sign_loss,
            clippy::cast_possible_truncation,
            reason = "counters read back from their text form: whole, non-negative numbers"
        )]
        Ok(ServerCounters {
            fdatasyncs: sum("annals_log_fdatasyncs_total") as u64,
            commit_seconds: sum("annals_request_duration_seconds_sum{rpc=\"Commit\""),
            commits: sum("annals_request_duration_seconds_count{rpc=\"Commit\"") as u64,
        })
    }

    pub(crate) fn stop(mut self) -> Result<()> {
        let pid = self.child.id().to_string();
        Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .context("signal the server")?;
        let status = self.child.wait().context("wait for the server")?;
        if !status.success() {
            bail!("annals exited with {status} after SIGTERM");
        }
        Ok(())
    }
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The text of `/metrics` on `port` of this machine.
/// A plain-HTTP GET of `path` on a local port: the whole response, headers and body.
pub(crate) fn http_get(port: u16, path: &str) -> Result<String> {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect(("127.0.0.1", port)).context("connect")?;
    stream.write_all(
        format!("GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n").as_bytes(),
    )?;
    let mut text = String::new();
    stream.read_to_string(&mut text)?;
    Ok(text)
}

fn metrics_of(port: u16) -> Result<String> {
    use std::io::{Read, Write};
    let mut stream =
        std::net::TcpStream::connect(("127.0.0.1", port)).context("connect to the metrics port")?;
    stream.write_all(b"GET /metrics HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")?;
    let mut text = String::new();
    stream.read_to_string(&mut text)?;
    Ok(text)
}

fn wire_uuid(id: uuid::Uuid) -> dolittle::protobuf::Uuid {
    annals_server::wire::uuid(id)
}

/// The wire form of an execution context (no claims).
pub(crate) fn wire_execution_context(
    context: &ExecutionContext,
) -> dolittle::execution::ExecutionContext {
    dolittle::execution::ExecutionContext {
        microservice_id: Some(wire_uuid(context.microservice_id)),
        tenant_id: Some(wire_uuid(context.tenant_id)),
        version: Some(dolittle::versioning::Version {
            major: context.version.major,
            minor: context.version.minor,
            patch: context.version.patch,
            build: context.version.build,
            pre_release_string: context.version.pre_release.clone(),
        }),
        correlation_id: Some(wire_uuid(context.correlation_id)),
        claims: Vec::new(),
        environment: context.environment.clone(),
        span_id: None,
    }
}

fn call_context(context: &ExecutionContext) -> dolittle::services::CallRequestContext {
    dolittle::services::CallRequestContext {
        execution_context: Some(wire_execution_context(context)),
        head_id: None,
    }
}

fn artifact(event_type: EventType) -> dolittle::artifacts::Artifact {
    dolittle::artifacts::Artifact {
        id: Some(wire_uuid(event_type.id)),
        generation: event_type.generation,
    }
}

/// A Commit request carrying exactly the events of a prepared commit.
pub(crate) fn commit_request(commit: &Commit) -> dolittle::runtime::events::CommitEventsRequest {
    dolittle::runtime::events::CommitEventsRequest {
        call_context: Some(call_context(&commit.execution_context)),
        events: commit
            .events
            .iter()
            .map(|e| dolittle::runtime::events::UncommittedEvent {
                event_type: Some(artifact(e.event_type)),
                event_source_id: e.event_source_id.clone(),
                public: e.public,
                content: e.content.clone(),
            })
            .collect(),
    }
}

pub(crate) type StoreClient =
    dolittle::runtime::events::event_store_client::EventStoreClient<Channel>;

/// One connection per client, as separate heads would have.
pub(crate) fn connect(
    runtime: &tokio::runtime::Runtime,
    port: u16,
    clients: usize,
) -> Result<Vec<StoreClient>> {
    (0..clients)
        .map(|_| {
            let channel = runtime
                .block_on(
                    Channel::from_shared(format!("http://127.0.0.1:{port}"))?
                        .initial_stream_window_size(Some(4 << 20))
                        .initial_connection_window_size(Some(16 << 20))
                        .connect(),
                )
                .context("connect to the server")?;
            Ok(StoreClient::new(channel).max_decoding_message_size(64 << 20))
        })
        .collect()
}

/// The `annals` binary: `given`, else the one next to this tool.
pub(crate) fn annals_binary(given: Option<&Path>) -> Result<PathBuf> {
    let binary = match given {
        Some(b) => b.to_path_buf(),
        None => std::env::current_exe()?
            .parent()
            .context("the tool's directory")?
            .join("annals"),
    };
    if !binary.is_file() {
        bail!(
            "{} is missing: build it with `cargo build --bin annals` or pass --annals-bin",
            binary.display()
        );
    }
    Ok(binary)
}

/// Runs the gRPC suite.
pub fn run(args: &GrpcArgs) -> Result<()> {
    let quick = args.suite.quick;
    let rounds = args.suite.rounds().max(1);
    let window = args.window.window(quick)?;
    let binary = annals_binary(args.annals_bin.as_deref())?;
    let date = now_utc();
    let started = Instant::now();
    let root = args.suite.data_dir()?;
    eprintln!(
        "annals-bench grpc: {rounds} round(s), {:?} + {:?} warm-up each, server {}, data in {}",
        window.measure,
        window.warmup,
        binary.display(),
        root.path().display()
    );
    let mut factory = EventFactory::new(args.suite.seed);
    let scratch = root.path().join("scratch");
    let mut pools = Vec::new();
    for &(clients, batch) in &args.shapes {
        let per_writer = (2048 / batch).max(8);
        pools.push(
            factory
                .pool(clients, per_writer, batch, &scratch)
                .context("build the commit pool")?,
        );
    }
    let aggregate_events: Vec<Commit> = (0..64).map(|_| factory.commit(1)).collect();
    let tenant = pools
        .first()
        .map(|p| p.all()[0].commit.execution_context.tenant_id)
        .context("no shapes")?;
    let requests: Vec<Vec<dolittle::runtime::events::CommitEventsRequest>> = pools
        .iter()
        .map(|p| p.all().iter().map(|c| commit_request(&c.commit)).collect())
        .collect();
    let raw = RawLog::create(
        &root.path().join("raw-append.log"),
        RawLayout::Preallocated(256 << 20),
    )
    .context("create the raw baseline's file")?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name(CLIENT_THREADS)
        .enable_all()
        .build()
        .context("start the client runtime")?;

    let fetch_aggregate = factory.commit(FETCH_EVENTS_PER_AGGREGATE);
    let ceiling = Ceiling::start(Canned::new(&fetch_aggregate, &[]))?;
    let durable = Ceiling::start_durable(
        Canned::new(&fetch_aggregate, &[]),
        &root.path().join("durable-ceiling.log"),
        256 << 20,
    )?;
    let setup = Setup {
        binary: &binary,
        root: root.path(),
        runtime: &runtime,
        tenant,
        window,
        date: &date,
        ceiling: &ceiling,
        durable: &durable,
    };
    let mut measurements = Vec::new();
    for round in 0..rounds {
        // The systems take turns going first, round by round.
        let order = |systems: &[&'static str]| {
            let mut order = systems.to_vec();
            order.rotate_left(round % systems.len());
            order
        };
        for (shape_index, &(clients, batch)) in args.shapes.iter().enumerate() {
            for system in order(&["annals", "raw", "ceiling", "durable"]) {
                let m = if system == "raw" {
                    measure_raw(
                        &raw,
                        &pools[shape_index],
                        (clients, batch),
                        window,
                        round,
                        &date,
                    )?
                } else {
                    measure_commits(
                        &setup,
                        system,
                        &requests[shape_index],
                        (clients, batch),
                        round,
                    )?
                };
                progress(rounds, &m);
                record(&mut measurements, m)?;
            }
        }
        for system in order(&["annals", "ceiling"]) {
            let m = measure_aggregates(&setup, system, &aggregate_events, round)?;
            progress(rounds, &m);
            record(&mut measurements, m)?;
        }
        for system in order(&["annals", "ceiling"]) {
            let m = measure_fetch(&setup, system, &mut factory, round, quick, (true, false))?;
            progress(rounds, &m);
            if system == "ceiling" {
                let mut again = m.clone();
                again.workload = "grpc_fetch_read";
                record(&mut measurements, again)?;
            }
            record(&mut measurements, m)?;
        }
        // The rest have no ceiling: it has no FetchForAggregateInBatches.
        for kept_and_batches in [(false, false), (true, true), (false, true)] {
            let m = measure_fetch(
                &setup,
                "annals",
                &mut factory,
                round,
                quick,
                kept_and_batches,
            )?;
            progress(rounds, &m);
            record(&mut measurements, m)?;
        }
        let m = measure_memory(&setup, &aggregate_events, MEMORY_CLIENTS, round)?;
        progress(rounds, &m);
        eprintln!(
            "      server resident memory: {} MiB idle, {} MiB at most under {MEMORY_CLIENTS} clients (peak {} MiB), {} MiB after they left",
            m.extra["rss_idle_mib"], m.extra["rss_max_mib"], m.extra["rss_hwm_mib"], m.extra["rss_after_mib"]
        );
        record(&mut measurements, m)?;
    }
    summarise_against(&measurements, &date, "ceiling")?;
    commit_costs(&measurements)?;
    aggregate_vs_commit(&measurements)?;
    drop(ceiling);
    drop(durable);
    drop(raw);
    root.close().context("remove the data directory")?;
    eprintln!("done in {:.1?}", started.elapsed());
    Ok(())
}

/// Name (prefix) of the client runtime's threads, whose CPU time is the clients'.
const CLIENT_THREADS: &str = "grpc-client";

/// Connections of `grpc_memory`.
const MEMORY_CLIENTS: usize = 256;

/// A field of the server's `/proc/PID/status` (`VmRSS:`, `VmHWM:`) in MiB, to a tenth.
fn server_memory_mib(pid: u32, field: &str) -> Result<f64> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .context("read the server's status")?;
    let kib: f64 = text
        .lines()
        .find(|l| l.starts_with(field))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|kib| kib.parse().ok())
        .with_context(|| format!("no {field} in the server's status"))?;
    Ok((kib / 1024.0 * 10.0).round() / 10.0)
}

/// `grpc_memory`: a fresh annals server's resident memory idle, at most while `clients`
/// connections (one per head) each commit one event at a time for the window (sampled every
/// 20 ms; also the process's own peak, VmHWM), and a second after they all hung up.
fn measure_memory(
    setup: &Setup<'_>,
    events: &[Commit],
    clients: usize,
    round: usize,
) -> Result<Measurement> {
    let served = setup.serve("annals", &format!("grpc-memory-r{round}"))?;
    let pid = served
        .annals
        .as_ref()
        .map(|(server, _)| server.pid())
        .context("a memory measurement needs an annals server")?;
    let status = move |field: &str| server_memory_mib(pid, field);
    let idle = status("VmRSS:")?;
    let connections = Arc::new(connect(setup.runtime, served.port, clients)?);
    let requests: Arc<Vec<_>> = Arc::new(events.iter().map(commit_request).collect());
    let sampling = Arc::new(std::sync::atomic::AtomicBool::new(true));
    let sampler = {
        let sampling = Arc::clone(&sampling);
        std::thread::spawn(move || {
            let mut max = 0.0f64;
            while sampling.load(std::sync::atomic::Ordering::Relaxed) {
                if let Ok(rss) = status("VmRSS:") {
                    max = max.max(rss);
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            max
        })
    };
    let outcome = {
        let connections = Arc::clone(&connections);
        run_requests(
            setup.runtime,
            clients,
            setup.window,
            || {},
            move |w, i| {
                let mut client = connections[w].clone();
                let request = requests[(w + i as usize) % requests.len()].clone();
                async move {
                    let response = client.commit(request).await?.into_inner();
                    if let Some(f) = response.failure {
                        bail!("commit failed: {}", f.reason);
                    }
                    Ok(1)
                }
            },
        )
    };
    sampling.store(false, std::sync::atomic::Ordering::Relaxed);
    let max = sampler
        .join()
        .map_err(|_| anyhow::anyhow!("the memory sampler panicked"))?;
    let outcome = outcome?;
    let hwm = status("VmHWM:")?;
    drop(connections);
    std::thread::sleep(Duration::from_secs(1));
    let after = status("VmRSS:")?;
    let mut m = setup.finish(served, "grpc_memory", (clients, 1), round, &outcome)?;
    m.extra.insert("rss_idle_mib".into(), json!(idle));
    m.extra.insert("rss_max_mib".into(), json!(max));
    m.extra.insert("rss_hwm_mib".into(), json!(hwm));
    m.extra.insert("rss_after_mib".into(), json!(after));
    Ok(m)
}

/// Events of each aggregate `grpc_fetch` fetches.
const FETCH_EVENTS_PER_AGGREGATE: usize = 10;

/// `grpc_commit` of one shape against `system` (`annals`: a fresh server; `ceiling`).
fn measure_commits(
    setup: &Setup<'_>,
    system: &'static str,
    requests: &[dolittle::runtime::events::CommitEventsRequest],
    (clients, batch): (usize, usize),
    round: usize,
) -> Result<Measurement> {
    let served = setup.serve(system, &format!("grpc-r{round}-{clients}x{batch}"))?;
    let connections = Arc::new(connect(setup.runtime, served.port, clients)?);
    let reqs = Arc::new(requests.to_vec());
    let per_writer = reqs.len() / clients;
    let mut before = None;
    let cpu_of = served.cpu;
    let mut cpu_before = None;
    let mut durable_syncs = 0;
    let outcome = run_requests(
        setup.runtime,
        clients,
        setup.window,
        || {
            before = served.counters();
            durable_syncs = setup.durable.data_syncs();
            cpu_before = Some(cpu::Snapshot::take(
                cpu_of,
                cpu::Party::OwnThreads(CLIENT_THREADS),
            ));
        },
        move |w, i| {
            let mut client = connections[w].clone();
            let request = reqs[w * per_writer + (i as usize % per_writer)].clone();
            async move {
                let events = request.events.len() as u64;
                let response = client.commit(request).await?.into_inner();
                if let Some(f) = response.failure {
                    bail!("commit failed: {}", f.reason);
                }
                Ok(events)
            }
        },
    )?;
    let cpu_after = cpu::Snapshot::take(cpu_of, cpu::Party::OwnThreads(CLIENT_THREADS));
    let after = served.counters();
    let (syncs, server_us) = match (before, after) {
        (Some(b), Some(a)) => (
            Some(a.fdatasyncs.saturating_sub(b.fdatasyncs)),
            ratio_f(
                (a.commit_seconds - b.commit_seconds) * 1e6,
                a.commits.saturating_sub(b.commits),
            ),
        ),
        _ if system == "durable" => (
            Some(setup.durable.data_syncs().saturating_sub(durable_syncs)),
            None,
        ),
        _ => (None, None),
    };
    let mut m = setup.finish(served, "grpc_commit", (clients, batch), round, &outcome)?;
    m.fdatasyncs = syncs;
    m.events_per_fdatasync = syncs.and_then(|s| ratio(outcome.events, s));
    // The server's own time per Commit (receipt to answer), beside the round trip the
    // clients measured.
    if system == "annals" {
        m.extra.insert("server_mean_us".into(), json!(server_us));
    }
    if let Some(before) = cpu_before {
        let cost = before.per_request(&cpu_after, outcome.commits);
        m.extra
            .insert("server_cpu_us_per_request".into(), json!(cost.server_us));
        m.extra
            .insert("clients_cpu_us_per_request".into(), json!(cost.clients_us));
        m.extra.insert("cpu_cores_busy".into(), json!(cost.cores));
    }
    Ok(m)
}

/// CommitForAggregate 16 x 1 against its median Commit 16 x 1 (the target's ratio), one JSON
/// line and one line for people.
fn aggregate_vs_commit(measurements: &[Measurement]) -> Result<()> {
    let median_of = |workload: &str| {
        let values: Vec<f64> = measurements
            .iter()
            .filter(|m| {
                m.system == "annals"
                    && m.workload == workload
                    && (m.writers, m.batch) == (16, Some(1))
            })
            .map(|m| m.events_per_s)
            .collect();
        median(&values)
    };
    let (aggregate, commit) = (median_of("grpc_commit_aggregate"), median_of("grpc_commit"));
    let vs = aggregate.zip(commit).map(|(a, c)| a / c);
    emit(&json!({
        "workload": "ratio",
        "of_workload": "grpc_commit_aggregate_vs_commit",
        "writers": 16,
        "batch": 1,
        "annals_commit_aggregate_events_per_s": aggregate,
        "annals_commit_events_per_s": commit,
        "ratio": vs,
        "target": 0.85,
    }))?;
    eprintln!(
        "CommitForAggregate 16x1 vs Commit 16x1: {} (target 0.85)",
        fixed(vs, 2)
    );
    Ok(())
}

/// The closed loop of `run_appends` for async clients: `clients` tasks on the client runtime,
/// each awaiting `request(client, iteration)` (which returns the events it carried) before
/// sending the next; requests that start inside the window are counted and timed.
fn run_requests<F, Fut>(
    runtime: &tokio::runtime::Runtime,
    clients: usize,
    window: Window,
    at_window_start: impl FnOnce(),
    request: F,
) -> Result<AppendOutcome>
where
    F: Fn(usize, u64) -> Fut + Clone + Send + Sync + 'static,
    Fut: std::future::Future<Output = Result<u64>> + Send + 'static,
{
    let t0 = Instant::now() + Duration::from_millis(20);
    let counted_from = t0 + window.warmup;
    let end = counted_from + window.measure;
    let tasks: Vec<_> = (0..clients)
        .map(|client| {
            let request = request.clone();
            runtime.spawn(async move {
                tokio::time::sleep_until(t0.into()).await;
                let mut hist = Histogram::<u64>::new(3).context("create a histogram")?;
                let (mut events, mut requests) = (0u64, 0u64);
                for iteration in 0.. {
                    let began = Instant::now();
                    if began >= end {
                        break;
                    }
                    let n = request(client, iteration).await?;
                    if began >= counted_from {
                        let ns = u64::try_from(began.elapsed().as_nanos()).unwrap_or(u64::MAX);
                        hist.record(ns).context("record a latency")?;
                        events += n;
                        requests += 1;
                    }
                }
                anyhow::Ok((events, requests, hist))
            })
        })
        .collect();
    std::thread::sleep(counted_from.saturating_duration_since(Instant::now()));
    at_window_start();
    // Each client's (events, requests, latencies), joined in order.
    let clients = tasks
        .into_iter()
        .map(|task| runtime.block_on(task).context("a client task failed")?);
    let mut outcome = AppendOutcome::sum(Duration::ZERO, clients)?;
    outcome.elapsed = counted_from.elapsed();
    Ok(outcome)
}

/// `a / n`, None for no samples.
fn ratio_f(a: f64, n: u64) -> Option<f64> {
    (n > 0).then(|| a / to_f64(n))
}

fn measure_raw(
    raw: &RawLog,
    pool: &CommitPool,
    (writers, batch): (usize, usize),
    window: Window,
    round: usize,
    date: &str,
) -> Result<Measurement> {
    raw.rewind();
    let (outcome, syncs) = raw.run_appends(pool, writers, window)?;
    let mut m = measurement(
        "raw",
        "grpc_commit",
        (writers, batch),
        round,
        date,
        &outcome,
    );
    m.fdatasyncs = Some(syncs);
    m.events_per_fdatasync = ratio(outcome.events, syncs);
    m.io_backend = "std".into();
    Ok(m)
}

/// What every server measurement of a run shares.
struct Setup<'a> {
    /// The `annals` binary.
    binary: &'a Path,
    /// The run's data directory; each server gets a fresh directory below it.
    root: &'a Path,
    /// The clients' runtime.
    runtime: &'a tokio::runtime::Runtime,
    tenant: uuid::Uuid,
    window: Window,
    /// The run's date, stamped on every measurement.
    date: &'a str,
    /// The ceiling.
    ceiling: &'a Ceiling,
    /// The durable ceiling (Commit only).
    durable: &'a Ceiling,
}

/// What a measurement's clients talk to: a fresh `annals` server, the ceiling, or the durable
/// ceiling.
struct Served {
    system: &'static str,
    port: u16,
    /// Whose CPU time is the server's: the annals process, or a ceiling's threads.
    cpu: cpu::Party,
    /// The server and its directory (None for the ceilings).
    annals: Option<(ServerProcess, PathBuf)>,
}

impl Served {
    /// The server's counters, for annals.
    fn counters(&self) -> Option<ServerCounters> {
        self.annals.as_ref().and_then(|(s, _)| s.counters().ok())
    }
}

impl Setup<'_> {
    /// `system`'s port: a fresh annals server in `dir_name` below the run's directory, the
    /// ceiling or the durable ceiling.
    fn serve(&self, system: &'static str, dir_name: &str) -> Result<Served> {
        self.serve_configured(system, dir_name, "")
    }

    /// [`serve`](Self::serve) with `runtime_yml` as the server's configuration.
    fn serve_configured(
        &self,
        system: &'static str,
        dir_name: &str,
        runtime_yml: &str,
    ) -> Result<Served> {
        let ceiling = match system {
            "ceiling" => Some(self.ceiling),
            "durable" => Some(self.durable),
            _ => None,
        };
        if let Some(ceiling) = ceiling {
            return Ok(Served {
                system,
                port: ceiling.port,
                cpu: ceiling.cpu_party(),
                annals: None,
            });
        }
        let dir = self.root.join(dir_name);
        let args = ["--tenant".to_owned(), self.tenant.to_string()];
        let server = ServerProcess::start_configured(self.binary, &dir, runtime_yml, &args)?;
        Ok(Served {
            system,
            port: server.private_port,
            cpu: cpu::Party::Process(server.pid()),
            annals: Some((server, dir)),
        })
    }

    /// Runs `clients` clients in the closed loop of [`run_requests`] for the run's window.
    fn run_clients<F, Fut>(&self, clients: usize, request: F) -> Result<AppendOutcome>
    where
        F: Fn(usize, u64) -> Fut + Clone + Send + Sync + 'static,
        Fut: std::future::Future<Output = Result<u64>> + Send + 'static,
    {
        run_requests(self.runtime, clients, self.window, || {}, request)
    }

    /// Stops the server of an annals measurement and removes its directory, and makes the
    /// measurement of what its clients saw.
    fn finish(
        &self,
        served: Served,
        workload: &'static str,
        shape: (usize, usize),
        round: usize,
        outcome: &AppendOutcome,
    ) -> Result<Measurement> {
        if let Some((server, dir)) = served.annals {
            server.stop()?;
            std::fs::remove_dir_all(dir).ok();
        }
        Ok(measurement(
            served.system,
            workload,
            shape,
            round,
            self.date,
            outcome,
        ))
    }
}

fn measure_aggregates(
    setup: &Setup<'_>,
    system: &'static str,
    events: &[Commit],
    round: usize,
) -> Result<Measurement> {
    const CLIENTS: usize = 16;
    let served = setup.serve(system, &format!("grpc-aggregates-r{round}"))?;
    let connections = Arc::new(connect(setup.runtime, served.port, CLIENTS)?);
    let root_id = uuid::Uuid::from_u128(0xa66);
    let events = Arc::new(events.to_vec());
    let outcome = setup.run_clients(CLIENTS, move |w, i| {
            let mut client = connections[w].clone();
            let commit = &events[(w * 4 + i as usize) % events.len()];
            let event = &commit.events[0];
            // Each client owns its aggregate and commits one event per iteration: the
            // aggregate's version is the iteration.
            let request = dolittle::runtime::events::CommitAggregateEventsRequest {
            call_context: Some(call_context(&commit.execution_context)),
            events: Some(dolittle::runtime::events::UncommittedAggregateEvents {
                aggregate_root_id: Some(wire_uuid(root_id)),
                event_source_id: format!("aggregate-{w}"),
                expected_aggregate_root_version: i,
                events: vec![
                    dolittle::runtime::events::uncommitted_aggregate_events::UncommittedAggregateEvent {
                        event_type: Some(artifact(event.event_type)),
                        public: false,
                        content: event.content.clone(),
                    },
                ],
            }),
        };
            async move {
                let response = client.commit_for_aggregate(request).await?.into_inner();
                if let Some(f) = response.failure {
                    bail!("commit for aggregate failed: {}", f.reason);
                }
                Ok(1)
            }
    })?;
    setup.finish(
        served,
        "grpc_commit_aggregate",
        (CLIENTS, 1),
        round,
        &outcome,
    )
}

fn measure_fetch(
    setup: &Setup<'_>,
    system: &'static str,
    factory: &mut EventFactory,
    round: usize,
    quick: bool,
    (keep_answers, in_batches): (bool, bool),
) -> Result<Measurement> {
    const CLIENTS: usize = 16;
    const EVENTS_PER_AGGREGATE: usize = FETCH_EVENTS_PER_AGGREGATE;
    let aggregates: usize = if quick { 200 } else { 2000 };
    let (workload, runtime_yml) = match (keep_answers, in_batches) {
        (true, false) => ("grpc_fetch", ""),
        (false, false) => ("grpc_fetch_read", "annals:\n  fetchCache: 0\n"),
        (true, true) => ("grpc_fetch_batches", ""),
        (false, true) => ("grpc_fetch_batches_read", "annals:\n  fetchCache: 0\n"),
    };
    let served = setup.serve_configured(system, &format!("{workload}-r{round}"), runtime_yml)?;
    let mut connections = connect(setup.runtime, served.port, CLIENTS)?;
    let root_id = uuid::Uuid::from_u128(0xfe7c);
    let context = factory.commit(1).execution_context;
    // The ceiling answers a canned aggregate of the same size: nothing to fill.
    for a in 0..if system == "annals" { aggregates } else { 0 } {
        let commit = factory.commit(EVENTS_PER_AGGREGATE);
        let request = dolittle::runtime::events::CommitAggregateEventsRequest {
            call_context: Some(call_context(&context)),
            events: Some(dolittle::runtime::events::UncommittedAggregateEvents {
                aggregate_root_id: Some(wire_uuid(root_id)),
                event_source_id: format!("aggregate-{a}"),
                expected_aggregate_root_version: 0,
                events: commit
                    .events
                    .iter()
                    .map(|e| dolittle::runtime::events::uncommitted_aggregate_events::UncommittedAggregateEvent {
                        event_type: Some(artifact(e.event_type)),
                        public: false,
                        content: e.content.clone(),
                    })
                    .collect(),
            }),
        };
        let response = setup
            .runtime
            .block_on(connections[0].commit_for_aggregate(request))?
            .into_inner();
        if let Some(f) = response.failure {
            bail!("filling aggregates failed: {}", f.reason);
        }
    }
    let shared = Arc::new(connections);
    let clients = Arc::clone(&shared);
    let outcome = setup.run_clients(CLIENTS, move |w, i| {
        let mut client = clients[w].clone();
        let a = (w * 7919 + i as usize * 104_729) % aggregates;
        let aggregate = dolittle::runtime::events::Aggregate {
            event_source_id: format!("aggregate-{a}"),
            aggregate_root_id: Some(wire_uuid(root_id)),
        };
        let context = call_context(&context);
        async move {
            let responses = if in_batches {
                use dolittle::runtime::events::fetch_for_aggregate_in_batches_request::Request;
                let request = dolittle::runtime::events::FetchForAggregateInBatchesRequest {
                    call_context: Some(context),
                    aggregate: Some(aggregate),
                    request: Some(Request::FetchAllEvents(
                        dolittle::runtime::events::FetchAllEventsForAggregateInBatchesRequest {},
                    )),
                };
                let mut stream = client
                    .fetch_for_aggregate_in_batches(request)
                    .await?
                    .into_inner();
                let mut responses = Vec::new();
                while let Some(response) = stream.message().await? {
                    responses.push(response);
                }
                responses
            } else {
                let request = dolittle::runtime::events::FetchForAggregateRequest {
                    call_context: Some(context),
                    aggregate: Some(aggregate),
                };
                vec![client.fetch_for_aggregate(request).await?.into_inner()]
            };
            if let Some(f) = responses.iter().find_map(|r| r.failure.as_ref()) {
                bail!("fetch failed: {}", f.reason);
            }
            let n: usize = responses
                .iter()
                .map(|r| r.events.as_ref().map_or(0, |e| e.events.len()))
                .sum();
            if n != EVENTS_PER_AGGREGATE {
                bail!("fetched {n} events of aggregate-{a}, expected {EVENTS_PER_AGGREGATE}");
            }
            Ok(n as u64)
        }
    })?;
    drop(shared);
    // What the server holds after the window (the kept answers among it).
    let rss = match &served.annals {
        Some((server, _)) => Some(server_memory_mib(server.pid(), "VmRSS:")?),
        None => None,
    };
    let mut m = setup.finish(
        served,
        workload,
        (CLIENTS, EVENTS_PER_AGGREGATE),
        round,
        &outcome,
    )?;
    m.extra.insert("aggregates".into(), json!(aggregates));
    if let Some(rss) = rss {
        m.extra.insert("rss_after_mib".into(), json!(rss));
    }
    Ok(m)
}

fn measurement(
    system: &'static str,
    workload: &'static str,
    (writers, batch): (usize, usize),
    round: usize,
    date: &str,
    outcome: &AppendOutcome,
) -> Measurement {
    let subject = Subject {
        system,
        workload,
        writers,
        batch: Some(batch),
        round,
    };
    let mut m = Measurement::new(
        subject,
        date,
        outcome.events,
        outcome.elapsed.as_secs_f64(),
        percentiles_us(&outcome.latency_ns),
    );
    m.io_backend = match system {
        "annals" => "server".into(),
        "ceiling" => "none".into(),
        _ => "std".into(),
    };
    m.extra
        .insert("requests".to_owned(), json!(outcome.commits));
    m
}

fn progress(rounds: usize, m: &Measurement) {
    let figure = |key: &str| m.extra.get(key).and_then(serde_json::Value::as_f64);
    let mut server =
        figure("server_mean_us").map_or_else(String::new, |v| format!("  server mean {v:.0}us"));
    if let (Some(s), Some(c), Some(cores)) = (
        figure("server_cpu_us_per_request"),
        figure("clients_cpu_us_per_request"),
        figure("cpu_cores_busy"),
    ) {
        let _ = write!(
            server,
            "  cpu/request server {s:.1}us clients {c:.1}us, {cores:.2} cores"
        );
    }
    eprintln!("{}", progress_line(m, rounds, (22, 7), &server));
}

/// Why the commit rates are where they are, per shape (medians over the rounds): what one
/// request cost the server and the clients in CPU, annals against the ceiling, and how many
/// of the two cores they kept busy; for one client, also the serial bound: a server that
/// did nothing but the ceiling's answer and the raw write of the same events, one after the
/// other (one request in flight), would reach 1 / (1/ceiling + 1/raw) events/s, so
/// raw / (raw + ceiling) of the ceiling (paired per round). Then the durable ceiling: its CPU
/// per request, where it stands against the ceiling (what the disk costs the least durable
/// server) and annals against it, paired per round.
fn commit_costs(measurements: &[Measurement]) -> Result<()> {
    eprintln!();
    eprintln!(
        "cpu per Commit request (us), server / clients, and cores busy; medians of the rounds"
    );
    for shape in shapes(measurements) {
        let (workload, writers, batch) = shape;
        if workload != "grpc_commit" {
            continue;
        }
        let of = |system: &'static str| {
            measurements
                .iter()
                .filter(move |m| m.system == system && (m.workload, m.writers, m.batch) == shape)
        };
        let median_by = |system: &'static str, field: fn(&Measurement) -> Option<f64>| {
            let values: Vec<f64> = of(system).filter_map(field).collect();
            median(&values)
        };
        let median_of = |system: &'static str, key: &str| {
            let values: Vec<f64> = of(system)
                .filter_map(|m| m.extra.get(key).and_then(serde_json::Value::as_f64))
                .collect();
            median(&values)
        };
        let in_round =
            |system: &'static str, round: usize| rate_in_round(measurements, system, shape, round);
        // One request in flight: the ceiling's round trip and the raw write add up.
        let (bound, annals_vs_bound) = if writers == 1 {
            let mut bounds = Vec::new();
            let mut reached = Vec::new();
            for m in of("annals") {
                if let (Some(c), Some(r)) = (in_round("ceiling", m.round), in_round("raw", m.round))
                {
                    if c > 0.0 && r > 0.0 {
                        let rate = 1.0 / (1.0 / c + 1.0 / r);
                        bounds.push(rate / c);
                        reached.push(m.events_per_s / rate);
                    }
                }
            }
            (median(&bounds), median(&reached))
        } else {
            (None, None)
        };
        let (durable_vs_ceiling, annals_vs_durable) = (
            paired_ratio(measurements, "durable", "ceiling", shape),
            paired_ratio(measurements, "annals", "durable", shape),
        );
        let rate = median_by("durable", |m| Some(m.events_per_s));
        let per_sync = median_by("durable", |m| m.events_per_fdatasync);
        let line = json!({
            "workload": "cost",
            "of_workload": "grpc_commit",
            "writers": writers,
            "batch": batch,
            "annals_server_cpu_us_per_request": median_of("annals", "server_cpu_us_per_request"),
            "annals_clients_cpu_us_per_request": median_of("annals", "clients_cpu_us_per_request"),
            "annals_cpu_cores_busy": median_of("annals", "cpu_cores_busy"),
            "ceiling_server_cpu_us_per_request": median_of("ceiling", "server_cpu_us_per_request"),
            "ceiling_clients_cpu_us_per_request": median_of("ceiling", "clients_cpu_us_per_request"),
            "ceiling_cpu_cores_busy": median_of("ceiling", "cpu_cores_busy"),
            "serial_bound_vs_ceiling_paired": bound,
            "annals_vs_serial_bound_paired": annals_vs_bound,
            "durable_events_per_s": rate,
            "durable_events_per_fdatasync": per_sync,
            "durable_server_cpu_us_per_request": median_of("durable", "server_cpu_us_per_request"),
            "durable_clients_cpu_us_per_request": median_of("durable", "clients_cpu_us_per_request"),
            "durable_cpu_cores_busy": median_of("durable", "cpu_cores_busy"),
            "durable_vs_ceiling_paired": durable_vs_ceiling,
            "annals_vs_durable_paired": annals_vs_durable,
        });
        emit(&line)?;
        let mut text = format!(
            "  {writers}x{}: annals {} / {}, {} cores; ceiling {} / {}, {} cores",
            batch.map_or_else(|| "-".to_owned(), |b| b.to_string()),
            fixed(median_of("annals", "server_cpu_us_per_request"), 1),
            fixed(median_of("annals", "clients_cpu_us_per_request"), 1),
            fixed(median_of("annals", "cpu_cores_busy"), 2),
            fixed(median_of("ceiling", "server_cpu_us_per_request"), 1),
            fixed(median_of("ceiling", "clients_cpu_us_per_request"), 1),
            fixed(median_of("ceiling", "cpu_cores_busy"), 2),
        );
        if writers == 1 {
            let _ = write!(
                text,
                "; serial bound {} of the ceiling, annals at {} of it",
                fixed(bound, 2),
                fixed(annals_vs_bound, 2)
            );
        }
        let _ = write!(
            text,
            "\n        durable ceiling {} ev/s ({} ev/sync), {} / {}, {} cores: {} of the ceiling; annals at {} of it (paired)",
            fixed(rate, 0),
            fixed(per_sync, 1),
            fixed(median_of("durable", "server_cpu_us_per_request"), 1),
            fixed(median_of("durable", "clients_cpu_us_per_request"), 1),
            fixed(median_of("durable", "cpu_cores_busy"), 2),
            fixed(durable_vs_ceiling, 2),
            fixed(annals_vs_durable, 2),
        );
        eprintln!("{text}");
    }
    Ok(())
}
