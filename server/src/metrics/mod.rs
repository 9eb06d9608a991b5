//! Prometheus metrics, served as text on the metrics port (`GET /metrics`, default 9700):
//! annals' own series (`annals_*`, below) and the original's (`dolittle_*`, `dolittle`).
//! A scraper that asks for OpenMetrics gets it; any other gets the classic text format
//! (0.0.4), as the original's prometheus-net answers.
//!
//! Series are labelled by tenant and rpc; both sets are bounded (tenants come from the
//! configuration, rpcs from the contract), so the number of series is too. Every unary rpc is
//! counted (see `services::request`): the event store's by method (`Commit`,
//! `CommitForAggregate`, `FetchForAggregate`, `FetchForAggregateInBatches`), the others by
//! service and method (`Handshake/Handshake`, `EventHandlers/GetAll`, ...); the tenant is the
//! call context's, `none` for calls without one.
//!
//! | series | kind | labels |
//! |---|---|---|
//! | `annals_requests_total` | counter | rpc, tenant, outcome (`ok`, `failure`, `conflict`) |
//! | `annals_request_duration_seconds` | histogram | rpc, tenant |
//! | `annals_committed_events_total` | counter | tenant |
//! | `annals_fetched_events_total` | counter | tenant |
//! | `annals_fetch_answers_total` | counter | answer (`kept`: a FetchForAggregate or FetchForAggregateInBatches answered with the answer kept from an earlier fetch of the unchanged aggregate; `read`: from the store) |
//! | `annals_log_commits_total`, `annals_log_events_total` | counter | tenant |
//! | `annals_log_groups_total`, `annals_log_fdatasyncs_total` | counter | tenant (group commits and data syncs of the tenant's event log) |
//! | `annals_processor_events_processed_total` | counter | kind (`event_handler`, `filter`), processor, scope, tenant |
//! | `annals_processor_failures_total` | counter | the same (each failure the head reported, retried or not) |
//! | `annals_processor_position` | gauge | the same (the next event-log position to process, as last written) |
//! | `annals_processor_lag_events` | gauge | the same (events in the log past that position) |
//! | `annals_horizon_subscription_position` | gauge | tenant, producer_microservice, producer_tenant, stream, partition, scope (next position to receive) |
//! | `annals_horizon_subscription_events_stored_total` | counter | the same (events received and stored since the start) |
//! | `annals_horizon_subscription_connected` | gauge | the same (1 while a connection is accepted and up) |
//! | `annals_horizon_subscription_reconnects_total` | counter | the same |
//! | `annals_horizon_served_position` | gauge | consumer_microservice, consumer_tenant, tenant, stream, partition (after the last acknowledged event) |
//! | `annals_horizon_served_lag_events` | gauge | the same (events of the stream, all partitions, after it: an upper bound) |
//! | `annals_up` | gauge | |
//!
//! Processor series exist for processors that are connected (position and lag) or have been
//! since the start (counters). Counters are kept for every (processor, scope, tenant) a head
//! has registered since the start: a deployment registers a fixed set of handlers, but heads
//! that register fresh ids over and over grow this set until the runtime restarts.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use annals_engine::{Log, LogStats};
use annals_replication::{Consumer, Producer};
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeLabelSet, EncodeMetric};
use prometheus_client::metrics::counter::{ConstCounter, Counter};
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::{ConstGauge, Gauge};
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::Registry;
use uuid::Uuid;

use crate::processing::{Kind, Processors};

mod dolittle;
mod handles;

pub(crate) use dolittle::{Attempts, Dolittle};

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestLabels {
    rpc: &'static str,
    tenant: String,
    outcome: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct LatencyLabels {
    rpc: &'static str,
    tenant: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ProcessorLabels {
    kind: &'static str,
    processor: String,
    scope: String,
    tenant: String,
}

impl ProcessorLabels {
    fn new(kind: Kind, processor: Uuid, scope: Uuid, tenant: Uuid) -> ProcessorLabels {
        ProcessorLabels {
            kind: kind.label(),
            processor: processor.to_string(),
            scope: scope.to_string(),
            tenant: tenant.to_string(),
        }
    }
}

/// A processor's labels, position and lag.
type Row = (ProcessorLabels, u64, u64);

/// What a processor series reads of a row.
type ReadRow = fn(&Row) -> u64;

/// The processor collector's series: name, help, and what each reads of a row.
const PROCESSOR_SERIES: [(&str, &str, ReadRow); 2] = [
    (
        "processor_position",
        "Next event-log position a connected processor will process (as last written)",
        |row| row.1,
    ),
    (
        "processor_lag_events",
        "Events in the log past a connected processor's position",
        |row| row.2,
    ),
];

/// Where each connected processor is and how far behind its log, read at each scrape.
struct ProcessorCollector {
    processors: Arc<Processors>,
}

impl std::fmt::Debug for ProcessorCollector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ProcessorCollector")
    }
}

impl Collector for ProcessorCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let mut rows = Vec::new();
        for registration in self.processors.every() {
            for (tenant, handle) in &registration.tenants {
                let position = handle.status.lock().state.event_log_position.0;
                let end = handle.log.next_sequence_number().0;
                let labels = ProcessorLabels::new(
                    registration.key.kind,
                    registration.key.id,
                    registration.key.scope,
                    *tenant,
                );
                rows.push((labels, position, end.saturating_sub(position)));
            }
        }
        for (name, help, read) in PROCESSOR_SERIES {
            let values = rows.iter().map(|row| {
                let value = i64::try_from(read(row)).unwrap_or(i64::MAX);
                (&row.0, ConstGauge::new(value))
            });
            encode_series(&mut encoder, (name, help), MetricType::Gauge, values)?;
        }
        Ok(())
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct SubscriptionLabels {
    tenant: String,
    producer_microservice: String,
    producer_tenant: String,
    stream: String,
    partition: String,
    scope: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ServedLabels {
    consumer_microservice: String,
    consumer_tenant: String,
    tenant: String,
    stream: String,
    partition: String,
}

/// The event horizon's subscriptions (both sides), read at each scrape. Their number is
/// bounded by configuration: consents on the producer side, the subscriptions heads ask for
/// (and producers accept) on the consumer side.
struct HorizonCollector {
    consumer: Arc<Consumer>,
    producer: Producer,
}

impl std::fmt::Debug for HorizonCollector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("HorizonCollector")
    }
}

fn gauge(value: u64) -> ConstGauge {
    ConstGauge::new(i64::try_from(value).unwrap_or(i64::MAX))
}

impl Collector for HorizonCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let subscriptions = self.consumer.subscriptions();
        let labels: Vec<SubscriptionLabels> = subscriptions
            .iter()
            .map(|s| SubscriptionLabels {
                tenant: s.consumer_tenant.to_string(),
                producer_microservice: s.producer_microservice.to_string(),
                producer_tenant: s.producer_tenant.to_string(),
                stream: s.stream.to_string(),
                partition: s.partition.clone(),
                scope: s.scope.to_string(),
            })
            .collect();
        let rows = || subscriptions.iter().zip(&labels);
        encode_series(
            &mut encoder,
            (
                "horizon_subscription_position",
                "Next stream position a subscription receives",
            ),
            MetricType::Gauge,
            rows().map(|(s, l)| (l, gauge(s.position))),
        )?;
        encode_series(
            &mut encoder,
            (
                "horizon_subscription_events_stored",
                "Events a subscription received and stored",
            ),
            MetricType::Counter,
            rows().map(|(s, l)| (l, ConstCounter::new(s.events_stored))),
        )?;
        encode_series(
            &mut encoder,
            (
                "horizon_subscription_connected",
                "1 while a subscription's connection is up",
            ),
            MetricType::Gauge,
            rows().map(|(s, l)| (l, gauge(u64::from(s.connected)))),
        )?;
        encode_series(
            &mut encoder,
            (
                "horizon_subscription_reconnects",
                "Connections a subscription made after its first",
            ),
            MetricType::Counter,
            rows().map(|(s, l)| (l, ConstCounter::new(s.reconnects))),
        )?;
        let served = self.producer.served();
        let labels: Vec<ServedLabels> = served
            .iter()
            .map(|s| ServedLabels {
                consumer_microservice: s.consumer_microservice.to_string(),
                consumer_tenant: s.consumer_tenant.to_string(),
                tenant: s.producer_tenant.to_string(),
                stream: s.stream.to_string(),
                partition: s.partition.clone(),
            })
            .collect();
        let rows = || served.iter().zip(&labels);
        encode_series(
            &mut encoder,
            (
                "horizon_served_position",
                "Stream position after the last event a consumer acknowledged",
            ),
            MetricType::Gauge,
            rows().map(|(s, l)| (l, gauge(s.acknowledged_position))),
        )?;
        encode_series(
            &mut encoder,
            (
                "horizon_served_lag_events",
                "Events of the stream after what a consumer acknowledged (at most)",
            ),
            MetricType::Gauge,
            rows().map(|(s, l)| (l, gauge(s.lag_events))),
        )?;
        Ok(())
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct TenantLabels {
    tenant: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct AnswerLabels {
    answer: &'static str,
}

/// How a request ended, for the `outcome` label.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum Outcome {
    Ok,
    Failure,
    Conflict,
}

/// Every series the runtime exports.
pub(crate) struct Metrics {
    registry: Registry,
    /// The original's series.
    pub(crate) dolittle: Arc<Dolittle>,
    requests: Family<RequestLabels, Counter>,
    latency: Family<LatencyLabels, Histogram>,
    committed: Family<TenantLabels, Counter>,
    fetched: Family<TenantLabels, Counter>,
    /// The series of `requests` and `latency` by rpc, tenant and outcome.
    request_series: handles::Handles<RequestKey, (Counter, Histogram)>,
    /// The series of `committed` by tenant.
    committed_series: handles::Handles<Uuid, Counter>,
    /// The series of `fetched` by tenant.
    fetched_series: handles::Handles<Uuid, Counter>,
    /// FetchForAggregate and FetchForAggregateInBatches answers: [kept, read].
    fetch_answers: [Counter; 2],
    processed: Family<ProcessorLabels, Counter>,
    processor_failures: Family<ProcessorLabels, Counter>,
    disk_free: Gauge<i64>,
    disk_total: Gauge<i64>,
    disk_low: Gauge<i64>,
    unhealthy: Family<TenantLabels, Gauge<i64>>,
}

/// What labels a request's series: its rpc, tenant and outcome.
type RequestKey = (&'static str, Option<Uuid>, Outcome);

/// A tenant's series of `family`.
fn tenant_series(family: &Family<TenantLabels, Counter>, tenant: Uuid) -> Counter {
    family
        .get_or_create(&TenantLabels {
            tenant: tenant.to_string(),
        })
        .clone()
}

/// The counter of a log's stats a log series reads.
type ReadStats = fn(&LogStats) -> &AtomicU64;

/// The log collector's series: name, help, and the counter of the log's stats each reads.
#[rustfmt::skip] // a table: one series a row
const LOG_SERIES: [(&str, &str, ReadStats); 5] = [
    ("log_commits", "Commits acknowledged by the tenant's event log", |s| &s.commits),
    ("log_events", "Events acknowledged by the tenant's event log", |s| &s.events),
    ("log_groups", "Group commits (one write each) of the tenant's event log", |s| &s.groups),
    ("log_fdatasyncs", "Data syncs of the tenant's event log", |s| &s.data_syncs),
    ("log_heals", "Heals of the tenant's event log after an I/O failure", |s| &s.heals),
];

/// Encodes one series read at this scrape: each value under its labels.
pub(super) fn encode_series<'l, L: EncodeLabelSet + 'l, M: EncodeMetric>(
    encoder: &mut DescriptorEncoder<'_>,
    (name, help): (&str, &str),
    metric_type: MetricType,
    values: impl IntoIterator<Item = (&'l L, M)>,
) -> Result<(), std::fmt::Error> {
    let mut family = encoder.encode_descriptor(name, help, None, metric_type)?;
    for (labels, value) in values {
        value.encode(family.encode_family(labels)?)?;
    }
    Ok(())
}

/// The write path's counters of each tenant's event log, read at each scrape.
#[derive(Debug)]
struct LogCollector {
    logs: Vec<(Uuid, Arc<Log>)>,
}

impl Collector for LogCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let tenants: Vec<TenantLabels> = self
            .logs
            .iter()
            .map(|(tenant, _)| TenantLabels {
                tenant: tenant.to_string(),
            })
            .collect();
        for (name, help, read) in LOG_SERIES {
            let values = self.logs.iter().zip(&tenants).map(|((_, log), labels)| {
                (
                    labels,
                    ConstCounter::new(read(log.stats()).load(Ordering::Relaxed)),
                )
            });
            encode_series(&mut encoder, (name, help), MetricType::Counter, values)?;
        }
        Ok(())
    }
}

impl Metrics {
    /// The metrics; `logs` are the configured tenants' event logs; the event horizon's two
    /// sides report their subscriptions.
    pub(crate) fn new(
        logs: Vec<(Uuid, Arc<Log>)>,
        processors: Arc<Processors>,
        (consumer, producer): (Arc<Consumer>, Producer),
    ) -> Metrics {
        let mut root = Registry::default();
        let dolittle = Arc::new(Dolittle::default());
        root.register_collector(Box::new(dolittle::DolittleCollector {
            dolittle: Arc::clone(&dolittle),
            logs: logs.clone(),
            processors: Arc::clone(&processors),
            consumer: Arc::clone(&consumer),
        }));
        let registry = root.sub_registry_with_prefix("annals");
        registry.register_collector(Box::new(LogCollector { logs }));
        registry.register_collector(Box::new(ProcessorCollector { processors }));
        registry.register_collector(Box::new(HorizonCollector { consumer, producer }));
        let processed = Family::<ProcessorLabels, Counter>::default();
        let processor_failures = Family::<ProcessorLabels, Counter>::default();
        registry.register(
            "processor_events_processed",
            "Events a processor's head processed successfully",
            processed.clone(),
        );
        registry.register(
            "processor_failures",
            "Failures a processor's head reported (each attempt)",
            processor_failures.clone(),
        );
        let requests = Family::<RequestLabels, Counter>::default();
        // 50 us .. ~1.6 s in 16 doublings: a group commit on a quiet disk up to a stall.
        let latency = Family::<LatencyLabels, Histogram>::new_with_constructor(|| {
            Histogram::new(exponential_buckets(0.000_05, 2.0, 16))
        });
        let committed = Family::<TenantLabels, Counter>::default();
        let fetched = Family::<TenantLabels, Counter>::default();
        registry.register(
            "requests",
            "Requests answered, by rpc, tenant and outcome",
            requests.clone(),
        );
        registry.register(
            "request_duration_seconds",
            "Time from receipt to answer, by rpc and tenant",
            latency.clone(),
        );
        registry.register(
            "committed_events",
            "Events committed (durable), by tenant",
            committed.clone(),
        );
        registry.register(
            "fetched_events",
            "Events returned by fetches for aggregates, by tenant",
            fetched.clone(),
        );
        let answers = Family::<AnswerLabels, Counter>::default();
        let fetch_answers =
            ["kept", "read"].map(|answer| answers.get_or_create_owned(&AnswerLabels { answer }));
        registry.register(
            "fetch_answers",
            "FetchForAggregate and FetchForAggregateInBatches answers, by where they came from: \
             kept from an earlier fetch of the unchanged aggregate, or read from the store",
            answers,
        );
        let up = Gauge::<i64>::default();
        up.set(1);
        registry.register("up", "1 while the runtime serves", up);
        let (disk_free, disk_total, disk_low) = (
            Gauge::<i64>::default(),
            Gauge::<i64>::default(),
            Gauge::<i64>::default(),
        );
        registry.register(
            "disk_free_bytes",
            "Bytes free on the data directory's file system (for this runtime's user)",
            disk_free.clone(),
        );
        registry.register(
            "disk_total_bytes",
            "Size of the data directory's file system",
            disk_total.clone(),
        );
        registry.register(
            "disk_low",
            "1 while the data directory's free space is below annals:disk:lowSpace",
            disk_low.clone(),
        );
        let unhealthy = Family::<TenantLabels, Gauge<i64>>::default();
        registry.register(
            "tenant_unhealthy",
            "1 while a tenant refuses writes after an I/O failure (healed with backoff)",
            unhealthy.clone(),
        );
        Metrics {
            registry: root,
            dolittle,
            requests,
            latency,
            committed,
            fetched,
            request_series: handles::Handles::default(),
            committed_series: handles::Handles::default(),
            fetched_series: handles::Handles::default(),
            fetch_answers,
            processed,
            processor_failures,
            disk_free,
            disk_total,
            disk_low,
            unhealthy,
        }
    }

    /// Whether a tenant refuses writes after an I/O failure.
    pub(crate) fn tenant_unhealthy(&self, tenant: Uuid, unhealthy: bool) {
        self.unhealthy
            .get_or_create(&TenantLabels {
                tenant: tenant.to_string(),
            })
            .set(i64::from(unhealthy));
    }

    /// The latest reading of the data directory's free space.
    pub(crate) fn record_disk(&self, reading: crate::disk::Reading) {
        let bytes = |b: u64| i64::try_from(b).unwrap_or(i64::MAX);
        self.disk_free.set(bytes(reading.free_bytes));
        self.disk_total.set(bytes(reading.total_bytes));
        self.disk_low.set(i64::from(reading.low));
    }

    /// A processor's (processed, failures) counters for one tenant; the same across
    /// reconnects.
    pub(crate) fn processor_counters(
        &self,
        kind: Kind,
        processor: Uuid,
        scope: Uuid,
        tenant: Uuid,
    ) -> (Counter, Counter) {
        let labels = ProcessorLabels::new(kind, processor, scope, tenant);
        (
            self.processed.get_or_create(&labels).clone(),
            self.processor_failures.get_or_create(&labels).clone(),
        )
    }

    /// Records one answered request.
    pub(crate) fn request(
        &self,
        rpc: &'static str,
        tenant: Option<Uuid>,
        outcome: Outcome,
        seconds: f64,
    ) {
        self.request_series.with(
            (rpc, tenant, outcome),
            || {
                let tenant = tenant.map_or_else(|| "none".to_owned(), |t| t.to_string());
                let outcome = match outcome {
                    Outcome::Ok => "ok",
                    Outcome::Failure => "failure",
                    Outcome::Conflict => "conflict",
                };
                let requests = self
                    .requests
                    .get_or_create(&RequestLabels {
                        rpc,
                        tenant: tenant.clone(),
                        outcome,
                    })
                    .clone();
                let latency = self
                    .latency
                    .get_or_create(&LatencyLabels { rpc, tenant })
                    .clone();
                (requests, latency)
            },
            |(requests, latency)| {
                requests.inc();
                latency.observe(seconds);
            },
        );
    }

    /// A commit of `events` events for `tenant`, of these types, applied by
    /// `aggregate_root` if any: annals' series and the original's.
    pub(crate) fn committed(
        &self,
        tenant: Uuid,
        events: u64,
        event_types: impl IntoIterator<Item = Uuid>,
        aggregate_root: Option<Uuid>,
    ) {
        self.committed_series.with(
            tenant,
            || tenant_series(&self.committed, tenant),
            |committed| {
                committed.inc_by(events);
            },
        );
        self.dolittle.committed(tenant, event_types, aggregate_root);
    }

    /// One fetch for an aggregate answered: with the answer kept from an earlier fetch, or read.
    pub(crate) fn fetch_answer(&self, kept: bool) {
        self.fetch_answers[usize::from(!kept)].inc();
    }

    pub(crate) fn fetched(&self, tenant: Uuid, events: u64) {
        self.fetched_series.with(
            tenant,
            || tenant_series(&self.fetched, tenant),
            |fetched| {
                fetched.inc_by(events);
            },
        );
    }

    /// The OpenMetrics text format.
    pub(crate) fn encode(&self) -> String {
        let mut text = String::new();
        if let Err(e) = prometheus_client::encoding::text::encode(&mut text, &self.registry) {
            tracing::error!(error = %e, "could not encode metrics");
        }
        text
    }

    /// The classic Prometheus text format (0.0.4).
    pub(crate) fn encode_classic(&self) -> String {
        classic(&self.encode())
    }
}

/// OpenMetrics text as the classic format: a counter family is named as its samples are
/// (`x_total`, where OpenMetrics names the family `x`), and the `# EOF` and `# UNIT` lines
/// the classic format does not have are left out. Nothing else differs for what is encoded
/// here (no exemplars, no `_created` samples, no info or state sets).
fn classic(open_metrics: &str) -> String {
    let mut out = String::with_capacity(open_metrics.len() + open_metrics.len() / 16);
    let mut counters = std::collections::HashSet::new();
    for line in open_metrics.lines() {
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            if let Some(name) = rest.strip_suffix(" counter") {
                counters.insert(name.to_owned());
            }
        }
    }
    for line in open_metrics.lines() {
        if line == "# EOF" || line.starts_with("# UNIT ") {
            continue;
        }
        let descriptor = line
            .strip_prefix("# HELP ")
            .map(|rest| ("# HELP ", rest))
            .or_else(|| line.strip_prefix("# TYPE ").map(|rest| ("# TYPE ", rest)));
        match descriptor {
            Some((kind, rest)) => {
                let (name, tail) = rest.split_once(' ').unwrap_or((rest, ""));
                out.push_str(kind);
                out.push_str(name);
                if counters.contains(name) {
                    out.push_str("_total");
                }
                if !tail.is_empty() {
                    out.push(' ');
                    out.push_str(tail);
                }
            }
            None => out.push_str(line),
        }
        out.push('\n');
    }
    out
}
