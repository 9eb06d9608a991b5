//! `annals-bench projections`: a projection replaying the whole log, against event handler
//! delivery of the same events in the same run (issue 14: projections with Runtime 8's
//! semantics, their states and each key's history written in batches with the position).
//!
//! Per round, a fresh server holds `--events` events (1 M; quick: 20 000) of 64 event types
//! over event sources of the data factory. Then, one after the other:
//! - `handler_catchup`: an unpartitioned event handler of every type catches up (the head
//!   answers at once), as `annals-bench delivery` measures it;
//! - `projection_replay`: a projection of every type keyed by event source replays from the
//!   first event; the head reads the current state's counter and answers the next state
//!   (`{"n":N+1}`); events/s from the registration's acceptance to the last answer.
//!
//! Both heads are tonic clients in this process. Each projection line also carries what the
//! history cost on disk: the growth of the data directory over the replay and the history's
//! entries and bytes (before compression) as the runtime reports them (`GET /projections`).

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use annals_server::proto::dolittle;
use anyhow::{bail, Context, Result};
use clap::Args;
use dolittle::runtime::events::processing;
use processing::projection_client_to_runtime_message::Message as FromHead;
use processing::projection_runtime_to_client_message::Message as ToHead;
use serde_json::json;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::transport::Channel;
use uuid::Uuid;

use crate::data::EventFactory;
use crate::delivery::{self, Shape, Target, ENVIRONMENT, MICROSERVICE};
use crate::grpc::{annals_binary, commit_request, http_get, ServerProcess};
use crate::report::{emit, median, now_utc, record, Measurement, Subject};
use crate::suite::SuiteArgs;

/// Options of `annals-bench projections`.
#[derive(Debug, Args)]
pub struct ProjectionsArgs {
    #[command(flatten)]
    suite: SuiteArgs,
    /// Events in the store. Default 1 000 000 (quick: 20 000).
    #[arg(long)]
    events: Option<u64>,
    /// The `annals` binary (default: next to this tool).
    #[arg(long)]
    annals_bin: Option<PathBuf>,
}

/// Runs the projections suite.
pub fn run(args: &ProjectionsArgs) -> Result<()> {
    let suite = &args.suite;
    let rounds = suite.rounds().max(1);
    let events = suite.or(args.events, 20_000, 1_000_000);
    let binary = annals_binary(args.annals_bin.as_deref())?;
    let date = now_utc();
    let started = Instant::now();
    let root = suite.data_dir()?;
    eprintln!(
        "annals-bench projections: {rounds} round(s), {events} events, server {}, data in {}",
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
    let fill_requests: std::sync::Arc<Vec<_>> = std::sync::Arc::new(
        (0..1000)
            .map(|_| commit_request(&factory.commit(100)))
            .collect(),
    );

    let mut measurements = Vec::new();
    for round in 0..rounds {
        let dir = root.path().join(format!("round-{round}"));
        let server = ServerProcess::start(&binary, &dir, tenant)?;
        delivery::fill(&runtime, server.private_port, &fill_requests, events)?;
        let shape = Shape {
            partitioned: false,
            concurrency: 1,
        };
        let handler = delivery::run_head(
            delivery::registration(
                server.private_port,
                tenant,
                event_types.clone(),
                shape,
                false,
            ),
            Target::Known(events),
        )
        .join()
        .map_err(|_| anyhow::anyhow!("the head panicked"))??;
        let m = measurement(
            "handler_catchup",
            round,
            &date,
            handler.events,
            handler.elapsed,
        );
        progress(rounds, &m);
        record(&mut measurements, m)?;

        let before = dir_bytes(&dir.join("data"));
        let ports = (server.private_port, server.web_port);
        let types = event_types.clone();
        let (answered, elapsed, history) = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .context("start the head's runtime")?;
            runtime.block_on(projection_head(ports, tenant, &types, events))
        })
        .join()
        .map_err(|_| anyhow::anyhow!("the head panicked"))??;
        let grown = dir_bytes(&dir.join("data")).saturating_sub(before);
        let mut m = measurement("projection_replay", round, &date, answered, elapsed);
        m.extra.insert("history_entries".into(), json!(history.0));
        m.extra.insert("history_bytes".into(), json!(history.1));
        m.extra.insert("data_dir_growth_bytes".into(), json!(grown));
        progress(rounds, &m);
        record(&mut measurements, m)?;
        server.stop()?;
        std::fs::remove_dir_all(&dir).context("remove the round's data")?;
    }
    summarise(&measurements)?;
    drop(runtime);
    root.close().context("remove the data directory")?;
    eprintln!("done in {:.1?}", started.elapsed());
    Ok(())
}

/// Bytes of the files under `dir`.
fn dir_bytes(dir: &Path) -> u64 {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    entries
        .filter_map(Result::ok)
        .map(|entry| match entry.metadata() {
            Ok(m) if m.is_dir() => dir_bytes(&entry.path()),
            Ok(m) => m.len(),
            Err(_) => 0,
        })
        .sum()
}

/// Waits until the runtime reports the projection's position at `events` (its states and
/// history durable); returns the history's entries and bytes.
fn wait_for_history(web_port: u16, projection: Uuid, events: u64) -> Result<(u64, u64)> {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let text = http_get(web_port, "/projections")?;
        let body = text.split_once("\r\n\r\n").map_or("", |(_, b)| b);
        let listed: serde_json::Value = serde_json::from_str(body).context("read /projections")?;
        let found = listed["projections"]
            .as_array()
            .and_then(|all| {
                all.iter()
                    .find(|p| p["projection"].as_str() == Some(&projection.to_string()))
            })
            .cloned();
        if let Some(p) = found {
            if p["eventLogPosition"].as_u64() >= Some(events) {
                let history = &p["history"];
                return Ok((
                    history["entries"].as_u64().unwrap_or(0),
                    history["bytes"].as_u64().unwrap_or(0),
                ));
            }
        }
        if Instant::now() > deadline {
            bail!("the projection's position did not reach {events} within 60 s: {text}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The counter of a state `{"n":N}`.
fn counter(state: &str) -> u64 {
    state.split_once("\"n\":").map_or(0, |(_, rest)| {
        rest.bytes()
            .take_while(u8::is_ascii_digit)
            .fold(0u64, |n, d| n * 10 + u64::from(d - b'0'))
    })
}

/// A projection head: registers a fresh projection of `event_types` keyed by event source,
/// answers every request with the next counter, and stops after `events` requests. Returns
/// the requests answered, the time from the registration's acceptance to the last answer,
/// and its history's entries and bytes, once the runtime reports its position at the end
/// (the head stays connected until then: its last answers are in flight).
async fn projection_head(
    (port, web_port): (u16, u16),
    tenant: Uuid,
    event_types: &[Uuid],
    events: u64,
) -> Result<(u64, Duration, (u64, u64))> {
    let channel = Channel::from_shared(format!("http://127.0.0.1:{port}"))?
        .initial_stream_window_size(Some(4 << 20))
        .initial_connection_window_size(Some(16 << 20))
        .connect()
        .await
        .context("connect the head")?;
    let mut client = processing::projections_client::ProjectionsClient::new(channel)
        .max_decoding_message_size(64 << 20);
    let (to_runtime, outbound) = mpsc::channel(1024);
    let wire = annals_server::wire::uuid;
    let projection = Uuid::new_v4();
    let registration = processing::ProjectionRegistrationRequest {
        call_context: Some(dolittle::services::ReverseCallArgumentsContext {
            execution_context: Some(dolittle::execution::ExecutionContext {
                microservice_id: Some(wire(MICROSERVICE)),
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
        scope_id: Some(wire(Uuid::nil())),
        projection_id: Some(wire(projection)),
        events: event_types
            .iter()
            .map(|id| processing::ProjectionEventSelector {
                event_type: Some(dolittle::artifacts::Artifact {
                    id: Some(wire(*id)),
                    generation: 1,
                }),
                selector: Some(
                    processing::projection_event_selector::Selector::EventSourceKeySelector(
                        processing::EventSourceIdKeySelector {},
                    ),
                ),
            })
            .collect(),
        initial_state: r#"{"n":0}"#.into(),
        copies: None,
        alias: Some("bench".into()),
    };
    to_runtime
        .send(processing::ProjectionClientToRuntimeMessage {
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
    let mut answered = 0u64;
    while answered < events {
        let Ok(message) = tokio::time::timeout(Duration::from_secs(60), inbound.message()).await
        else {
            bail!("no request for 60 s after {answered}");
        };
        match message?.context("the runtime ended the stream")?.message {
            Some(ToHead::HandleRequest(request)) => {
                let n = request
                    .current_state
                    .as_ref()
                    .map_or(0, |s| counter(&s.state));
                let call_id = request.call_context.and_then(|c| c.call_id);
                let response = processing::ProjectionResponse {
                    call_context: Some(dolittle::services::ReverseCallResponseContext { call_id }),
                    response: Some(processing::projection_response::Response::Replace(
                        processing::ProjectionReplaceResponse {
                            state: format!(r#"{{"n":{}}}"#, n + 1),
                        },
                    )),
                    failure: None,
                };
                to_runtime
                    .send(processing::ProjectionClientToRuntimeMessage {
                        message: Some(FromHead::HandleResult(response)),
                    })
                    .await?;
                answered += 1;
            }
            Some(ToHead::Ping(_)) => {
                to_runtime
                    .send(processing::ProjectionClientToRuntimeMessage {
                        message: Some(FromHead::Pong(dolittle::services::Pong {})),
                    })
                    .await?;
            }
            other => bail!("unexpected message from the runtime: {other:?}"),
        }
    }
    let elapsed = began.elapsed();
    let history =
        tokio::task::spawn_blocking(move || wait_for_history(web_port, projection, events))
            .await
            .context("wait for the history")??;
    drop(inbound);
    Ok((answered, elapsed, history))
}

fn measurement(
    workload: &'static str,
    round: usize,
    date: &str,
    events: u64,
    elapsed: Duration,
) -> Measurement {
    let subject = Subject {
        system: "annals",
        workload,
        writers: 1,
        batch: None,
        round,
    };
    let mut m = Measurement::new(subject, date, events, elapsed.as_secs_f64(), (None, None));
    m.io_backend = "server".into();
    m
}

fn progress(rounds: usize, m: &Measurement) {
    let extra = |name: &str| m.extra.get(name).and_then(serde_json::Value::as_u64);
    let history = match (
        extra("history_entries"),
        extra("history_bytes"),
        extra("data_dir_growth_bytes"),
    ) {
        (Some(entries), Some(bytes), Some(grown)) => format!(
            "  history {entries} entries, {:.1} MiB logical, data dir +{:.1} MiB",
            bytes as f64 / 1_048_576.0,
            grown as f64 / 1_048_576.0
        ),
        _ => String::new(),
    };
    eprintln!(
        "[{}/{}] {:<18} {:>9} events {:>11.0} ev/s{history}",
        m.round + 1,
        rounds,
        m.workload,
        m.events,
        m.events_per_s,
    );
}

/// Medians per workload and the projection's rate as a ratio of the handler's, paired per
/// round.
fn summarise(measurements: &[Measurement]) -> Result<()> {
    let rate = |workload: &str| -> Vec<f64> {
        measurements
            .iter()
            .filter(|m| m.workload == workload)
            .map(|m| m.events_per_s)
            .collect()
    };
    let (handler, projection) = (rate("handler_catchup"), rate("projection_replay"));
    let ratios: Vec<f64> = handler
        .iter()
        .zip(&projection)
        .map(|(h, p)| p / h)
        .collect();
    let growth: Vec<f64> = measurements
        .iter()
        .filter_map(|m| {
            m.extra
                .get("data_dir_growth_bytes")
                .and_then(serde_json::Value::as_f64)
        })
        .collect();
    let line = json!({
        "summary": true,
        "handler_catchup_events_per_s_median": median(&handler),
        "projection_replay_events_per_s_median": median(&projection),
        "projection_to_handler_median": median(&ratios),
        "data_dir_growth_bytes_median": median(&growth),
    });
    eprintln!(
        "\nmedians: handler catch-up {:.0} ev/s, projection replay {:.0} ev/s ({:.2} x the handler)",
        median(&handler).unwrap_or(0.0),
        median(&projection).unwrap_or(0.0),
        median(&ratios).unwrap_or(0.0)
    );
    emit(&line)
}
