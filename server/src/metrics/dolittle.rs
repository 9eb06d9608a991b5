//! The original's Prometheus series (`dolittle_*`), with its names, help texts, label names
//! and label values, for what annals does the original also does: a dashboard built for a
//! Dolittle Runtime 9 reads them unchanged. They are served beside annals' own `annals_*`.
//!
//! Ids are label values in the .NET text of a Guid (lower-case, hyphenated); an alias is the
//! registered one, or empty when none was registered. Series the original counts for parts
//! annals does differently (its committer actor's version cache, its reverse-call internals)
//! are not invented here. What the original exports only over OpenTelemetry, the event log's
//! offset and each stream processor's offset, processed count and consumer lag, is here as
//! Prometheus series under the same names, read at each scrape.
//!
//! | series | kind | labels |
//! |---|---|---|
//! | `dolittle_customer_runtime_events_store_committed_events_total` | counter | tenantId, eventTypeId, eventTypeAlias (every committed event, aggregate or not) |
//! | `dolittle_customer_runtime_events_store_committed_aggregate_events_total` | counter | the same, aggregateRootId, aggregateRootAlias |
//! | `dolittle_customer_runtime_events_store_aggregate_concurrency_conflicts_total` | counter | tenantId, aggregateRootId, aggregateRootAlias |
//! | `dolittle_system_runtime_events_store_commits_received_total`, `..._commits_for_aggregate_received_total` | counter | |
//! | `dolittle_system_runtime_events_store_batches_sent_total`, `..._batches_successfully_persisted_total` | counter | (group commits of every tenant's log) |
//! | `dolittle_system_runtime_events_store_batched_events_successfully_persisted_total` | counter | |
//! | `dolittle_customer_runtime_eventhandlers_registrations_total`, `..._failed_registrations_total` | counter | eventHandlerId, eventHandlerAlias |
//! | `dolittle_system_runtime_eventhandlers_registrations_total`, `..._failed_registrations_total` | counter | |
//! | `dolittle_customer_runtime_eventhandlers_event_processing_failures_total` | counter | scope, eventHandlerId, eventHandlerAlias, tenantId, eventTypeId, eventTypeAlias |
//! | `dolittle_customer_runtime_eventhandlers_event_processing_time_seconds` | histogram | the same |
//! | `dolittle_system_runtime_streamprocessors_{registrations,failed_registrations,initializations,starts,failed_event_processings}_total` | counter | eventProcessorKind (`Filter`, or `Actor` for event handlers as the original's) |
//! | `dolittle_system_runtime_streamprocessors_event_processing_time_seconds` | histogram | eventProcessorKind |
//! | `dolittle_shared_runtime_event_horizon_consumer_connected_subscriptions_current` | gauge | |
//! | `dolittle_shared_runtime_event_horizon_consumer_events_processed_total` | counter | |
//! | `dolittle_system_runtime_events_store_offset` | gauge | tenantId, scopeId (the last event's sequence number, -1 when empty) |
//! | `dolittle_customer_runtime_stream_processors_offset` | gauge | tenantId, scopeId, eventProcessorId, alias (the last event-log position passed) |
//! | `dolittle_customer_runtime_stream_processors_processed_total` | counter | the same (its stream position) |
//! | `dolittle_customer_runtime_stream_processor_consumer_lag` | gauge | the same (events of its log after it) |

#![allow(
    non_snake_case,
    reason = "label names are the fields' names, and the original's are camelCase"
)]

use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use annals_engine::Log;
use annals_replication::Consumer;
use parking_lot::RwLock;
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeLabelSet, EncodeMetric};
use prometheus_client::metrics::counter::{ConstCounter, Counter};
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::metrics::MetricType;
use uuid::Uuid;

use super::encode_series;
use super::handles::Handles;
use crate::processing::{Kind, Processors};

/// The original's buckets for processing times.
const PROCESSING_BUCKETS: [f64; 5] = [0.001, 0.01, 0.1, 1.0, 10.0];

/// The alias the original's registration stores when none is given (it labels it as empty).
const NOT_SET: &str = "No alias";

fn processing_time() -> Histogram {
    Histogram::new(PROCESSING_BUCKETS)
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct EventTypeLabels {
    tenantId: String,
    eventTypeId: String,
    eventTypeAlias: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct AggregateEventLabels {
    tenantId: String,
    eventTypeId: String,
    eventTypeAlias: String,
    aggregateRootId: String,
    aggregateRootAlias: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct AggregateLabels {
    tenantId: String,
    aggregateRootId: String,
    aggregateRootAlias: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct HandlerLabels {
    eventHandlerId: String,
    eventHandlerAlias: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct HandlerEventLabels {
    scope: String,
    eventHandlerId: String,
    eventHandlerAlias: String,
    tenantId: String,
    eventTypeId: String,
    eventTypeAlias: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct KindLabels {
    eventProcessorKind: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OffsetLabels {
    tenantId: String,
    scopeId: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ProcessorOffsetLabels {
    tenantId: String,
    scopeId: String,
    eventProcessorId: String,
    alias: String,
}

/// The original's `eventProcessorKind` of a processor: its actor event handlers are
/// "Actor", its filters "Filter" (projections, which Runtime 9 no longer runs, count as
/// actors).
fn kind_label(kind: Kind) -> &'static str {
    match kind {
        Kind::Filter | Kind::PublicFilter => "Filter",
        Kind::EventHandler | Kind::Projection => "Actor",
    }
}

/// The aliases registered with the platform services, as labels take them.
#[derive(Debug, Default)]
struct Aliases {
    event_types: RwLock<HashMap<Uuid, String>>,
    aggregate_roots: RwLock<HashMap<Uuid, String>>,
}

fn alias_of(map: &RwLock<HashMap<Uuid, String>>, id: Uuid) -> String {
    map.read().get(&id).cloned().unwrap_or_default()
}

fn remember(map: &RwLock<HashMap<Uuid, String>>, id: Uuid, alias: &str) {
    let alias = if alias == NOT_SET { "" } else { alias };
    map.write().insert(id, alias.to_owned());
}

type Times<L> = Family<L, Histogram, fn() -> Histogram>;

/// The series that are counted as things happen.
#[derive(Debug)]
struct Counted {
    committed_events: Family<EventTypeLabels, Counter>,
    committed_aggregate_events: Family<AggregateEventLabels, Counter>,
    concurrency_conflicts: Family<AggregateLabels, Counter>,
    commits_received: Counter,
    commits_for_aggregate_received: Counter,
    handler_registrations: Family<HandlerLabels, Counter>,
    handler_registrations_all: Counter,
    handler_failed_registrations: Family<HandlerLabels, Counter>,
    handler_failed_registrations_all: Counter,
    handler_failures: Family<HandlerEventLabels, Counter>,
    handler_time: Times<HandlerEventLabels>,
    registrations: Family<KindLabels, Counter>,
    failed_registrations: Family<KindLabels, Counter>,
    initializations: Family<KindLabels, Counter>,
    starts: Family<KindLabels, Counter>,
    failed_processings: Family<KindLabels, Counter>,
    time: Times<KindLabels>,
}

impl Default for Counted {
    fn default() -> Counted {
        Counted {
            committed_events: Family::default(),
            committed_aggregate_events: Family::default(),
            concurrency_conflicts: Family::default(),
            commits_received: Counter::default(),
            commits_for_aggregate_received: Counter::default(),
            handler_registrations: Family::default(),
            handler_registrations_all: Counter::default(),
            handler_failed_registrations: Family::default(),
            handler_failed_registrations_all: Counter::default(),
            handler_failures: Family::default(),
            handler_time: Family::new_with_constructor(processing_time),
            registrations: Family::default(),
            failed_registrations: Family::default(),
            initializations: Family::default(),
            starts: Family::default(),
            failed_processings: Family::default(),
            time: Family::new_with_constructor(processing_time),
        }
    }
}

/// The original's series: counted by the services, read from the logs, processors and event
/// horizon at each scrape.
#[derive(Debug, Default)]
pub(crate) struct Dolittle {
    aliases: Aliases,
    counted: Counted,
    /// The series of `committed_events` and `committed_aggregate_events` a commit counts, by
    /// tenant, event type and aggregate root; forgotten when an alias changes (labels carry
    /// them).
    committed_series: Handles<CommittedKey, CommittedSeries>,
}

/// What labels a commit's series: tenant, event type, aggregate root.
type CommittedKey = (Uuid, Uuid, Option<Uuid>);

/// A commit's series: `committed_events`, and `committed_aggregate_events` for an aggregate's.
type CommittedSeries = (Counter, Option<Counter>);

impl Dolittle {
    /// An event type's alias, as registered (at startup, and at each registration).
    pub(crate) fn event_type_alias(&self, event_type: Uuid, alias: &str) {
        remember(&self.aliases.event_types, event_type, alias);
        self.committed_series.forget();
    }

    /// An aggregate root's alias, as registered.
    pub(crate) fn aggregate_root_alias(&self, aggregate_root: Uuid, alias: &str) {
        remember(&self.aliases.aggregate_roots, aggregate_root, alias);
        self.committed_series.forget();
    }

    /// The series a commit of `event_type`'s events counts: `committed_events`, and
    /// `committed_aggregate_events` when an aggregate root applied them.
    fn committed_series_of(
        &self,
        tenant: Uuid,
        event_type: Uuid,
        aggregate_root: Option<Uuid>,
    ) -> CommittedSeries {
        let labels = EventTypeLabels {
            tenantId: tenant.to_string(),
            eventTypeId: event_type.to_string(),
            eventTypeAlias: alias_of(&self.aliases.event_types, event_type),
        };
        let events = self.counted.committed_events.get_or_create(&labels).clone();
        let aggregate_events = aggregate_root.map(|root| {
            let labels = AggregateEventLabels {
                tenantId: labels.tenantId,
                eventTypeId: labels.eventTypeId,
                eventTypeAlias: labels.eventTypeAlias,
                aggregateRootId: root.to_string(),
                aggregateRootAlias: alias_of(&self.aliases.aggregate_roots, root),
            };
            self.counted
                .committed_aggregate_events
                .get_or_create(&labels)
                .clone()
        });
        (events, aggregate_events)
    }

    /// A `Commit` request arrived.
    pub(crate) fn commit_received(&self) {
        self.counted.commits_received.inc();
    }

    /// A `CommitForAggregate` request arrived.
    pub(crate) fn commit_for_aggregate_received(&self) {
        self.counted.commits_for_aggregate_received.inc();
    }

    /// Events were committed for `tenant`, of these types, applied by `aggregate_root` if
    /// any: each type counted once per commit, by how many.
    pub(crate) fn committed(
        &self,
        tenant: Uuid,
        event_types: impl IntoIterator<Item = Uuid>,
        aggregate_root: Option<Uuid>,
    ) {
        let mut by_type: Vec<(Uuid, u64)> = Vec::new();
        for event_type in event_types {
            match by_type.iter_mut().find(|(t, _)| *t == event_type) {
                Some((_, n)) => *n += 1,
                None => by_type.push((event_type, 1)),
            }
        }
        for (event_type, count) in by_type {
            self.committed_series.with(
                (tenant, event_type, aggregate_root),
                || self.committed_series_of(tenant, event_type, aggregate_root),
                |(events, aggregate_events)| {
                    events.inc_by(count);
                    if let Some(aggregate_events) = aggregate_events {
                        aggregate_events.inc_by(count);
                    }
                },
            );
        }
    }

    /// A commit for `aggregate_root` was refused: it was not at the expected version.
    pub(crate) fn concurrency_conflict(&self, tenant: Uuid, aggregate_root: Uuid) {
        self.counted
            .concurrency_conflicts
            .get_or_create(&AggregateLabels {
                tenantId: tenant.to_string(),
                aggregateRootId: aggregate_root.to_string(),
                aggregateRootAlias: alias_of(&self.aliases.aggregate_roots, aggregate_root),
            })
            .inc();
    }

    /// A head asked to register a processor (its arguments made sense).
    pub(crate) fn registering(&self, kind: Kind, id: Uuid, alias: Option<&str>) {
        match kind {
            Kind::EventHandler => {
                self.counted
                    .handler_registrations
                    .get_or_create(&handler_labels(id, alias))
                    .inc();
                self.counted.handler_registrations_all.inc();
            }
            Kind::Filter | Kind::PublicFilter => {
                self.counted
                    .registrations
                    .get_or_create(&KindLabels {
                        eventProcessorKind: kind_label(kind),
                    })
                    .inc();
            }
            Kind::Projection => {}
        }
    }

    /// A registration failed; `already` when the processor is registered already.
    pub(crate) fn registration_failed(
        &self,
        kind: Kind,
        id: Uuid,
        alias: Option<&str>,
        already: bool,
    ) {
        match kind {
            // The original counts only a second registration of the same event handler.
            Kind::EventHandler if already => {
                self.counted
                    .handler_failed_registrations
                    .get_or_create(&handler_labels(id, alias))
                    .inc();
                self.counted.handler_failed_registrations_all.inc();
            }
            Kind::Filter | Kind::PublicFilter => {
                self.counted
                    .failed_registrations
                    .get_or_create(&KindLabels {
                        eventProcessorKind: kind_label(kind),
                    })
                    .inc();
            }
            Kind::EventHandler | Kind::Projection => {}
        }
    }

    /// A processor was registered and starts for every tenant (projections, which Runtime 9
    /// no longer runs, are not counted).
    pub(crate) fn started(&self, kind: Kind) {
        if kind == Kind::Projection {
            return;
        }
        let labels = KindLabels {
            eventProcessorKind: kind_label(kind),
        };
        self.counted.initializations.get_or_create(&labels).inc();
        if matches!(kind, Kind::Filter | Kind::PublicFilter) {
            self.counted.starts.get_or_create(&labels).inc();
        }
    }

    /// What one tenant's processor records of each attempt its head makes at an event.
    pub(crate) fn attempts(
        self: &Arc<Self>,
        kind: Kind,
        (id, scope, alias): (Uuid, Uuid, Option<&str>),
        tenant: Uuid,
    ) -> Attempts {
        let labels = KindLabels {
            eventProcessorKind: kind_label(kind),
        };
        Attempts {
            dolittle: Arc::clone(self),
            time: self.counted.time.get_or_create(&labels).clone(),
            failed: self
                .counted
                .failed_processings
                .get_or_create(&labels)
                .clone(),
            handler: (kind == Kind::EventHandler).then(|| HandlerAttempts {
                scope: scope.to_string(),
                id: id.to_string(),
                alias: alias.unwrap_or_default().to_owned(),
                tenant: tenant.to_string(),
                by_type: Handles::default(),
            }),
        }
    }
}

fn handler_labels(id: Uuid, alias: Option<&str>) -> HandlerLabels {
    HandlerLabels {
        eventHandlerId: id.to_string(),
        eventHandlerAlias: alias.unwrap_or_default().to_owned(),
    }
}

/// An event handler's series for one tenant, by event type (labels built once per type).
#[derive(Debug)]
struct HandlerAttempts {
    scope: String,
    id: String,
    alias: String,
    tenant: String,
    /// The (time, failures) series by event type, made at the type's first attempt.
    by_type: Handles<Uuid, (Histogram, Counter)>,
}

/// Records each attempt a head makes at an event: how long it took, and whether it failed.
#[derive(Debug)]
pub(crate) struct Attempts {
    dolittle: Arc<Dolittle>,
    time: Histogram,
    failed: Counter,
    handler: Option<HandlerAttempts>,
}

impl Attempts {
    /// One attempt at an event of `event_type` that took `seconds`.
    pub(crate) fn record(&self, event_type: Uuid, seconds: f64, succeeded: bool) {
        self.time.observe(seconds);
        if !succeeded {
            self.failed.inc();
        }
        let Some(handler) = &self.handler else {
            return;
        };
        handler.by_type.with(
            event_type,
            || {
                let labels = HandlerEventLabels {
                    scope: handler.scope.clone(),
                    eventHandlerId: handler.id.clone(),
                    eventHandlerAlias: handler.alias.clone(),
                    tenantId: handler.tenant.clone(),
                    eventTypeId: event_type.to_string(),
                    eventTypeAlias: alias_of(&self.dolittle.aliases.event_types, event_type),
                };
                let counted = &self.dolittle.counted;
                (
                    counted.handler_time.get_or_create(&labels).clone(),
                    counted.handler_failures.get_or_create(&labels).clone(),
                )
            },
            |(time, failures)| {
                time.observe(seconds);
                if !succeeded {
                    failures.inc();
                }
            },
        );
    }
}

/// Encodes the original's series at a scrape, with its help texts as they are.
pub(crate) struct DolittleCollector {
    pub(crate) dolittle: Arc<Dolittle>,
    pub(crate) logs: Vec<(Uuid, Arc<Log>)>,
    pub(crate) processors: Arc<Processors>,
    pub(crate) consumer: Arc<Consumer>,
}

impl std::fmt::Debug for DolittleCollector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("DolittleCollector")
    }
}

/// One family: its descriptor, then its series.
fn family(
    encoder: &mut DescriptorEncoder<'_>,
    name: &str,
    help: &str,
    metric: &impl EncodeMetric,
) -> Result<(), std::fmt::Error> {
    let family = encoder.encode_descriptor(name, help, None, metric.metric_type())?;
    metric.encode(family)
}

fn signed(value: u64) -> i64 {
    i64::try_from(value).unwrap_or(i64::MAX)
}

#[rustfmt::skip] // a table: one family a line
impl Collector for DolittleCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let e = &mut encoder;
        let c = &self.dolittle.counted;
        // Counters the prometheus crate names with `_total` itself.
        family(e, "dolittle_customer_runtime_events_store_committed_events", "EventStore total number of committed events by type", &c.committed_events)?;
        family(e, "dolittle_customer_runtime_events_store_committed_aggregate_events", "EventStore total number of committed events by type", &c.committed_aggregate_events)?;
        family(e, "dolittle_customer_runtime_events_store_aggregate_concurrency_conflicts", "EventStore total number of aggregate concurrency conflicts by aggregate root", &c.concurrency_conflicts)?;
        family(e, "dolittle_system_runtime_events_store_commits_received", "EventStore total number of non-aggregate commits received", &c.commits_received)?;
        family(e, "dolittle_system_runtime_events_store_commits_for_aggregate_received", "EventStore total number of commits for aggregate received", &c.commits_for_aggregate_received)?;
        let sum = |read: fn(&annals_engine::LogStats) -> u64| {
            self.logs.iter().map(|(_, log)| read(log.stats())).sum::<u64>()
        };
        let groups = sum(|s| s.groups.load(Ordering::Relaxed));
        let events = sum(|s| s.events.load(Ordering::Relaxed));
        family(e, "dolittle_system_runtime_events_store_batches_sent", "EventStore total number of batches that has been sent to the event store", &ConstCounter::new(groups))?;
        family(e, "dolittle_system_runtime_events_store_batches_successfully_persisted", "EventStore total number of batches that has been successfully persisted", &ConstCounter::new(groups))?;
        family(e, "dolittle_system_runtime_events_store_batched_events_successfully_persisted", "EventStore total number of batched events that has been successfully persisted", &ConstCounter::new(events))?;
        family(e, "dolittle_customer_runtime_eventhandlers_registrations", "Total number of event handler registrations", &c.handler_registrations)?;
        family(e, "dolittle_system_runtime_eventhandlers_registrations", "Total number of event handler registrations", &c.handler_registrations_all)?;
        family(e, "dolittle_customer_runtime_eventhandlers_failed_registrations", "Total number of failed event handler registrations", &c.handler_failed_registrations)?;
        family(e, "dolittle_system_runtime_eventhandlers_failed_registrations", "Total number of failed event handler registrations", &c.handler_failed_registrations_all)?;
        family(e, "dolittle_customer_runtime_eventhandlers_event_processing_failures", "Total number of failed event processing attempts by an event handler", &c.handler_failures)?;
        family(e, "dolittle_customer_runtime_eventhandlers_event_processing_time_seconds", "The processing time of events processed by event handlers", &c.handler_time)?;
        family(e, "dolittle_system_runtime_streamprocessors_registrations", "Total number of stream processors registration attempts per event processor kind", &c.registrations)?;
        family(e, "dolittle_system_runtime_streamprocessors_failed_registrations", "Total number of failed stream processor registrations per event processor kind.", &c.failed_registrations)?;
        family(e, "dolittle_system_runtime_streamprocessors_initializations", "Total number of stream processor initializations per event processor kind.", &c.initializations)?;
        family(e, "dolittle_system_runtime_streamprocessors_starts", "Total number of stream processor starts per event processor kind.", &c.starts)?;
        family(e, "dolittle_system_runtime_streamprocessors_event_processing_time_seconds", "The time spent processing events per event processor kind.", &c.time)?;
        family(e, "dolittle_system_runtime_streamprocessors_failed_event_processings", "Total number of event processing attempts per event processor kind.", &c.failed_processings)?;

        let subscriptions = self.consumer.subscriptions();
        let connected = subscriptions.iter().filter(|s| s.connected).count();
        let stored: u64 = subscriptions.iter().map(|s| s.events_stored).sum();
        family(e, "dolittle_shared_runtime_event_horizon_consumer_connected_subscriptions_current", "Subscription total number of connected subscriptions", &ConstGauge::new(signed(connected as u64)))?;
        family(e, "dolittle_shared_runtime_event_horizon_consumer_events_processed", "EventProcessor total number of event horizon events processed", &ConstCounter::new(stored))?;

        // What the original exports over OpenTelemetry only.
        let offsets: Vec<(OffsetLabels, i64)> = self.logs.iter().map(|(tenant, log)| (
            OffsetLabels { tenantId: tenant.to_string(), scopeId: Uuid::nil().to_string() },
            signed(log.next_sequence_number().0) - 1,
        )).collect();
        encode_series(e, ("dolittle_system_runtime_events_store_offset", "The current offset of the event log"), MetricType::Gauge, offsets.iter().map(|(l, v)| (l, ConstGauge::new(*v))))?;
        let mut rows: Vec<(ProcessorOffsetLabels, u64, u64, u64)> = Vec::new();
        for registration in self.processors.every() {
            for (tenant, handle) in &registration.tenants {
                let (position, processed) = {
                    let status = handle.status.lock();
                    (status.state.event_log_position.0, status.state.position.0)
                };
                let end = handle.log.next_sequence_number().0;
                rows.push((
                    ProcessorOffsetLabels {
                        tenantId: tenant.to_string(),
                        scopeId: registration.key.scope.to_string(),
                        eventProcessorId: registration.key.id.to_string(),
                        alias: registration.alias.clone().unwrap_or_default(),
                    },
                    position,
                    processed,
                    end.saturating_sub(position),
                ));
            }
        }
        encode_series(e, ("dolittle_customer_runtime_stream_processors_offset", "The current offset of the stream processor"), MetricType::Gauge, rows.iter().map(|r| (&r.0, ConstGauge::new(signed(r.1) - 1))))?;
        encode_series(e, ("dolittle_customer_runtime_stream_processors_processed", "The total number of events processed by the stream processor"), MetricType::Counter, rows.iter().map(|r| (&r.0, ConstCounter::new(r.2))))?;
        encode_series(e, ("dolittle_customer_runtime_stream_processor_consumer_lag", "The number of events in the log the stream processor has not passed"), MetricType::Gauge, rows.iter().map(|r| (&r.0, ConstGauge::new(signed(r.3)))))?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TENANT: Uuid = Uuid::from_u128(1);
    const PLACED: Uuid = Uuid::from_u128(2);
    const ORDER: Uuid = Uuid::from_u128(3);

    fn by_type(metrics: &Dolittle, alias: &str) -> u64 {
        metrics
            .counted
            .committed_events
            .get_or_create(&EventTypeLabels {
                tenantId: TENANT.to_string(),
                eventTypeId: PLACED.to_string(),
                eventTypeAlias: alias.to_owned(),
            })
            .get()
    }

    fn by_aggregate(metrics: &Dolittle, alias: &str, root_alias: &str) -> u64 {
        metrics
            .counted
            .committed_aggregate_events
            .get_or_create(&AggregateEventLabels {
                tenantId: TENANT.to_string(),
                eventTypeId: PLACED.to_string(),
                eventTypeAlias: alias.to_owned(),
                aggregateRootId: ORDER.to_string(),
                aggregateRootAlias: root_alias.to_owned(),
            })
            .get()
    }

    #[test]
    fn commits_are_counted_under_the_aliases_of_their_time() {
        let metrics = Dolittle::default();
        metrics.committed(TENANT, [PLACED, PLACED], None);
        metrics.committed(TENANT, [PLACED], Some(ORDER));
        metrics.event_type_alias(PLACED, "OrderPlaced");
        metrics.committed(TENANT, [PLACED], Some(ORDER));
        metrics.aggregate_root_alias(ORDER, "Order");
        metrics.committed(TENANT, [PLACED, PLACED, PLACED], Some(ORDER));
        metrics.committed(TENANT, [PLACED], None);
        assert_eq!(by_type(&metrics, ""), 3);
        assert_eq!(by_type(&metrics, "OrderPlaced"), 5);
        assert_eq!(by_aggregate(&metrics, "", ""), 1);
        assert_eq!(by_aggregate(&metrics, "OrderPlaced", ""), 1);
        assert_eq!(by_aggregate(&metrics, "OrderPlaced", "Order"), 3);
    }
}
