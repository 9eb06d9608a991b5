//! The event horizon between two real `annals` processes: a PRODUCER microservice whose public
//! filter writes a public stream, and a CONSUMER microservice that a head asks (Subscriptions/
//! Subscribe on its private port) to subscribe one of its tenants to that stream; the consumer
//! connects to the producer's public port and writes what it receives into its tenant's log of
//! the subscription's scope, where a scoped event handler sees it.
//!
//! Scenarios:
//! - the whole flow: only public events arrive, in order, marked external, under the
//!   configured consent; a repeated Subscribe joins the running subscription;
//! - refusals: no consent, unknown producer tenant, no address, unreachable producer; and
//!   acceptance without consent when the producer does not require it;
//! - partitions kept apart: a subscription to one partition gets nothing of another;
//! - two producer tenants feeding one consumer scope;
//! - exactly once across crashes: the consumer SIGKILLed mid-stream (it resumes its persisted
//!   subscription without any head), the producer SIGKILLed mid-stream (restarted on the same
//!   public port, the consumer reconnects by itself), and the connection cut and restored by a
//!   proxy under continuous commits. Each reads the consumer's scoped log back with
//!   annals-engine after the consumer stopped: every public event once, in order.
//!
//! Waits poll with a 60 s deadline; nothing is asserted from a sleep but the absence of more
//! events after everything expected arrived.
#![allow(clippy::unwrap_used, reason = "tests")]

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use annals_tests::head::{Answer, Answering, EventHandler, Filter, Head, Kind, Request, QUIET};
use annals_tests::proto::dolittle;
use annals_tests::{
    commit_request, execution_context_in, failure_id, failures, free_port, id, log_tail,
    read_scoped_log, send_commit, uuid, Server,
};
use dolittle::runtime::eventhorizon::subscriptions_client::SubscriptionsClient;
use dolittle::runtime::eventhorizon::{Subscription, SubscriptionResponse};
use dolittle::runtime::events::CommittedEvent;
use dolittle::services::CallRequestContext;
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tonic::transport::Channel;
use uuid::Uuid;

/// The producing microservice (P).
const PRODUCER: Uuid = Uuid::from_u128(0x5000_0000_0000_4000_8000_0000_0000_0001);
/// A second producing microservice that does not require consent.
const PRODUCER_NO_CONSENT: Uuid = Uuid::from_u128(0x5000_0000_0000_4000_8000_0000_0000_0002);
/// A producing microservice whose configured address nothing listens on.
const PRODUCER_UNREACHABLE: Uuid = Uuid::from_u128(0x5000_0000_0000_4000_8000_0000_0000_0003);
/// The consuming microservice (C).
const CONSUMER: Uuid = Uuid::from_u128(0xc000_0000_0000_4000_8000_0000_0000_0001);
const PRODUCER_TENANT: Uuid = Uuid::from_u128(0x1111_0000_0000_4000_8000_0000_0000_0001);
const PRODUCER_TENANT_2: Uuid = Uuid::from_u128(0x1111_0000_0000_4000_8000_0000_0000_0002);
const CONSUMER_TENANT: Uuid = Uuid::from_u128(0x2222_0000_0000_4000_8000_0000_0000_0001);
const CONSENT: Uuid = Uuid::from_u128(0xc0_0000_0000_4000_8000_0000_0000_0001);
const CONSENT_2: Uuid = Uuid::from_u128(0xc0_0000_0000_4000_8000_0000_0000_0002);
const TYPE_A: Uuid = Uuid::from_u128(0xa1);
const TYPE_B: Uuid = Uuid::from_u128(0xb1);
/// The partition a head names for "the whole stream".
const NIL_PARTITION: &str = "00000000-0000-0000-0000-000000000000";
/// How long anything that must happen may take.
const WAIT: Duration = Duration::from_secs(60);

/// One consent of the producer's configuration, for the consumer microservice.
struct Consent<'a> {
    consumer_tenant: Uuid,
    stream: Uuid,
    partition: &'a str,
    id: Uuid,
}

/// The producer's `.dolittle/runtime.yml`: its microservice id, `requireConsent`, and each
/// tenant with its consents for CONSUMER (a tenant without consents is configured empty).
fn producer_config(
    microservice: Uuid,
    require_consent: bool,
    tenants: &[(Uuid, &[Consent<'_>])],
) -> String {
    let mut yaml = format!(
        "platform:\n  microserviceID: {microservice}\neventHorizon:\n  requireConsent: \
         {require_consent}\ntenants:\n"
    );
    for (tenant, consents) in tenants {
        if consents.is_empty() {
            writeln!(yaml, "  {tenant}: {{}}").unwrap();
            continue;
        }
        writeln!(
            yaml,
            "  {tenant}:\n    eventHorizons:\n      {CONSUMER}:\n        consents:"
        )
        .unwrap();
        for c in *consents {
            writeln!(
                yaml,
                "          - consumerTenant: {}\n            stream: {}\n            \
                 partition: \"{}\"\n            consent: {}",
                c.consumer_tenant, c.stream, c.partition, c.id
            )
            .unwrap();
        }
    }
    yaml
}

/// The consumer's `.dolittle/runtime.yml`: its microservice id, CONSUMER_TENANT, and the
/// address (127.0.0.1 and a port) of each producer microservice.
fn consumer_config(producers: &[(Uuid, u16)]) -> String {
    let mut yaml = format!(
        "platform:\n  microserviceID: {CONSUMER}\ntenants:\n  {CONSUMER_TENANT}: {{}}\n\
         microservices:\n"
    );
    for (microservice, port) in producers {
        writeln!(
            yaml,
            "  {microservice}:\n    host: 127.0.0.1\n    port: {port}"
        )
        .unwrap();
    }
    yaml
}

async fn start(yaml: &str) -> Server {
    Server::start_with(&[(".dolittle/runtime.yml", yaml)], &[], &[]).await
}

/// A producer with one consent: CONSUMER_TENANT may read `stream`'s `partition` of
/// PRODUCER_TENANT under CONSENT.
async fn start_producer(stream: Uuid, partition: &str) -> Server {
    let consent = Consent {
        consumer_tenant: CONSUMER_TENANT,
        stream,
        partition,
        id: CONSENT,
    };
    start(&producer_config(
        PRODUCER,
        true,
        &[(PRODUCER_TENANT, &[consent])],
    ))
    .await
}

/// A consumer that finds PRODUCER at `port`.
async fn start_consumer(port: u16) -> Server {
    start(&consumer_config(&[(PRODUCER, port)])).await
}

fn public_port(server: &Server) -> u16 {
    server.ports.public.expect("the public endpoint is enabled")
}

/// Connects the producer's public filter `stream`, which includes every public event in the
/// partition `partition` names, answering in a task of its own.
async fn public_filter(
    producer: &Server,
    stream: Uuid,
    partition: fn(&Request) -> String,
) -> Answering {
    let mut filter = Filter::new(Kind::PublicFilter, stream);
    filter.execution_context = execution_context_in(PRODUCER, PRODUCER_TENANT);
    let head = Head::reconnect(producer.private().await, filter.message()).await;
    Answering::start(head, move |r| Answer::Filter {
        included: true,
        partition: partition(r),
    })
}

fn nil_partition(_: &Request) -> String {
    NIL_PARTITION.to_owned()
}

fn event_source_partition(r: &Request) -> String {
    r.event_source().to_owned()
}

/// An event to commit on the producer.
#[derive(Debug, Clone)]
struct Planned {
    event_type: Uuid,
    event_source: String,
    content: String,
    public: bool,
}

/// `n` public events of TYPE_A for `event_source`, their contents numbered from `first`.
fn public_events(event_source: &str, first: usize, n: usize) -> Vec<Planned> {
    (first..first + n)
        .map(|i| Planned {
            event_type: TYPE_A,
            event_source: event_source.to_owned(),
            content: format!(r#"{{"es":"{event_source}","i":{i}}}"#),
            public: true,
        })
        .collect()
}

/// Commits `events` for `tenant` over a producer's private channel; panics on a failure.
async fn commit_events(channel: &Channel, tenant: Uuid, events: &[Planned]) -> Vec<CommittedEvent> {
    let borrowed: Vec<(Uuid, &str, &str)> = events
        .iter()
        .map(|e| (e.event_type, e.event_source.as_str(), e.content.as_str()))
        .collect();
    let mut request = commit_request(tenant, &borrowed);
    for (event, planned) in request.events.iter_mut().zip(events) {
        event.public = planned.public;
    }
    send_commit(channel, request).await
}

/// What a head asks the consumer to subscribe CONSUMER_TENANT to.
#[derive(Debug, Clone)]
struct Horizon {
    producer: Uuid,
    producer_tenant: Uuid,
    stream: Uuid,
    partition: String,
    scope: Uuid,
}

impl Horizon {
    /// PRODUCER_TENANT of PRODUCER, `stream`'s `partition`, into `scope`.
    fn new(stream: Uuid, partition: &str, scope: Uuid) -> Horizon {
        Horizon {
            producer: PRODUCER,
            producer_tenant: PRODUCER_TENANT,
            stream,
            partition: partition.to_owned(),
            scope,
        }
    }

    fn request(&self) -> Subscription {
        Subscription {
            call_context: Some(CallRequestContext {
                execution_context: Some(execution_context_in(CONSUMER, CONSUMER_TENANT)),
                head_id: Some(id(Uuid::new_v4())),
            }),
            microservice_id: Some(id(self.producer)),
            tenant_id: Some(id(self.producer_tenant)),
            stream_id: Some(id(self.stream)),
            partition_id: self.partition.clone(),
            scope_id: Some(id(self.scope)),
        }
    }

    /// Subscriptions/Subscribe on the consumer's private port; panics on a gRPC error.
    async fn subscribe(&self, consumer: &Server) -> SubscriptionResponse {
        let mut client = SubscriptionsClient::new(consumer.private().await);
        let call = client.subscribe(self.request());
        let answer = tokio::time::timeout(WAIT, call)
            .await
            .unwrap_or_else(|_| panic!("Subscribe {self:?} was not answered in {WAIT:?}"));
        match answer {
            Ok(response) => response.into_inner(),
            Err(status) => panic!("Subscribe {self:?} failed: {status:?}"),
        }
    }

    /// Subscribes and asserts it was accepted; returns the consent id.
    async fn accepted(&self, consumer: &Server) -> Uuid {
        let response = self.subscribe(consumer).await;
        assert!(
            response.failure.is_none(),
            "Subscribe {self:?} was refused: {:?}\nconsumer log:\n{}",
            response.failure,
            log_tail(&consumer.log())
        );
        uuid(response.consent_id.as_ref().expect("a consent id"))
    }
}

/// A scoped event handler of TYPE_A and TYPE_B on the consumer, in `scope`, answering every
/// request in a task of its own.
async fn scoped_handler(consumer: &Server, scope: Uuid) -> Answering {
    let mut handler = EventHandler::new(Uuid::new_v4(), &[TYPE_A, TYPE_B]).scope(scope);
    handler.execution_context = execution_context_in(CONSUMER, CONSUMER_TENANT);
    let head = Head::connect(consumer.private().await, handler.message()).await;
    Answering::start(head, |_| Answer::Success)
}

/// Polls `check` until it returns Ok, for at most 60 s; the panic names `what`, the last
/// progress `check` reported and the end of `server`'s log.
async fn wait_until(what: &str, server: &Server, mut check: impl FnMut() -> Result<(), String>) {
    let deadline = Instant::now() + WAIT;
    loop {
        let progress = match check() {
            Ok(()) => return,
            Err(progress) => progress,
        };
        assert!(
            Instant::now() < deadline,
            "{what}: not within {WAIT:?} ({progress}); the log of the server ends:\n{}",
            log_tail(&server.log())
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Waits until `answering` handled at least `n` requests; returns them.
async fn handled(answering: &Answering, server: &Server, n: usize) -> Vec<Request> {
    wait_until(&format!("{n} events handled"), server, || {
        let count = answering.answered().len();
        if count >= n {
            Ok(())
        } else {
            Err(format!("{count} handled"))
        }
    })
    .await;
    answering.answered()
}

/// Asserts `answering` handles nothing beyond its first `n` requests within QUIET.
async fn nothing_more(answering: &Answering, n: usize) {
    tokio::time::sleep(QUIET).await;
    let answered = answering.answered();
    assert_eq!(
        answered.len(),
        n,
        "more events than expected arrived: {:?}",
        &answered[n.min(answered.len())..]
    );
}

/// Stops the consumer and asserts that its scoped log of `scope` holds exactly the events
/// with external sequence numbers `expected` (see `assert_exactly_once`).
async fn stopped_holding_exactly_once(consumer: &mut Server, scope: Uuid, expected: &[u64]) {
    assert!(consumer.stop().await, "{}", log_tail(&consumer.log()));
    assert_exactly_once(
        &read_scoped_log(&consumer.dir, CONSUMER_TENANT, scope),
        expected,
    );
}

/// Asserts the scoped log read back holds the events with external sequence numbers
/// `expected`, each exactly once and in this order, numbered from 0 without gaps, each
/// marked as received over the event horizon (not public).
fn assert_exactly_once(events: &[annals_engine::Event], expected: &[u64]) {
    let external: Vec<u64> = events
        .iter()
        .map(|e| {
            e.event_horizon
                .as_ref()
                .map_or(u64::MAX, |o| o.external_sequence_number)
        })
        .collect();
    if external != expected {
        let mut counts: BTreeMap<u64, usize> = BTreeMap::new();
        for s in &external {
            *counts.entry(*s).or_default() += 1;
        }
        let duplicated: Vec<u64> = counts
            .iter()
            .filter(|(_, c)| **c > 1)
            .map(|(s, _)| *s)
            .take(20)
            .collect();
        let missing: Vec<u64> = expected
            .iter()
            .filter(|s| !counts.contains_key(s))
            .copied()
            .take(20)
            .collect();
        let out_of_order = external.windows(2).position(|w| w[0] >= w[1]);
        panic!(
            "the scoped log does not hold every public event exactly once in order: {} events, \
             {} expected; duplicated (first 20) {duplicated:?}; missing (first 20) {missing:?}; \
             first out of order at index {out_of_order:?}",
            external.len(),
            expected.len()
        );
    }
    let numbers: Vec<u64> = events.iter().map(|e| e.sequence_number.0).collect();
    let from_zero: Vec<u64> = (0..events.len() as u64).collect();
    assert_eq!(
        numbers, from_zero,
        "the scoped log's own numbers from 0 without gaps"
    );
    assert!(
        events.iter().all(|e| !e.public),
        "received events are not public"
    );
}

/// The producer's sequence numbers of `committed`'s public events, in order.
fn public_sequence_numbers(committed: &[CommittedEvent]) -> Vec<u64> {
    committed
        .iter()
        .filter(|e| e.public)
        .map(|e| e.event_log_sequence_number)
        .collect()
}

/// The producer commits public and private events before and after the subscription; a
/// scoped handler on the consumer gets exactly the public ones, in order, marked external
/// with the producer's fields, and the scoped log keeps the configured consent.
#[tokio::test]
async fn public_events_flow_to_a_scoped_handler_of_the_consumer() {
    let stream = Uuid::new_v4();
    let scope = Uuid::new_v4();
    let producer = start_producer(stream, NIL_PARTITION).await;
    let _filter = public_filter(&producer, stream, nil_partition).await;
    let planned: Vec<Planned> = (0..20)
        .map(|i| Planned {
            event_type: if i % 2 == 0 { TYPE_A } else { TYPE_B },
            event_source: format!("source-{}", i % 4),
            content: format!(r#"{{"i":{i}}}"#),
            public: i % 3 != 1,
        })
        .collect();
    let channel = producer.private().await;
    let mut committed = commit_events(&channel, PRODUCER_TENANT, &planned[..10]).await;

    let mut consumer = start_consumer(public_port(&producer)).await;
    let handler = scoped_handler(&consumer, scope).await;
    let horizon = Horizon::new(stream, NIL_PARTITION, scope);
    assert_eq!(horizon.accepted(&consumer).await, CONSENT);
    assert_eq!(
        horizon.accepted(&consumer).await,
        CONSENT,
        "a repeated Subscribe joins the running subscription"
    );
    committed.extend(commit_events(&channel, PRODUCER_TENANT, &planned[10..]).await);

    let public: Vec<&CommittedEvent> = committed.iter().filter(|e| e.public).collect();
    let received = handled(&handler, &consumer, public.len()).await;
    nothing_more(&handler, public.len()).await;
    for (index, (r, sent)) in received.iter().zip(&public).enumerate() {
        let event = &r.event;
        assert_eq!(r.seq(), index as u64, "the scoped log's own numbers: {r:?}");
        assert_eq!(r.tenant(), CONSUMER_TENANT);
        assert_eq!(r.scope_id, Some(scope));
        assert!(event.external, "{r:?}");
        assert_eq!(
            event.external_event_log_sequence_number, sent.event_log_sequence_number,
            "the producer's sequence number"
        );
        assert!(event.external_event_received.is_some(), "{r:?}");
        assert!(!event.public, "a received event is not public again");
        assert_eq!(event.event_source_id, sent.event_source_id);
        assert_eq!(event.event_type, sent.event_type);
        assert_eq!(event.content, sent.content);
    }

    // Both sides report the subscription: metrics and the status page.
    let labels = format!(
        "tenant=\"{CONSUMER_TENANT}\",producer_microservice=\"{PRODUCER}\",producer_tenant=\"{PRODUCER_TENANT}\",stream=\"{stream}\",partition=\"{NIL_PARTITION}\",scope=\"{scope}\""
    );
    let (_, metrics) = Server::http_get(consumer.ports.metrics, "/metrics").await;
    for series in [
        format!(
            "annals_horizon_subscription_position{{{labels}}} {}",
            public.len()
        ),
        format!("annals_horizon_subscription_connected{{{labels}}} 1"),
        format!(
            "annals_horizon_subscription_events_stored_total{{{labels}}} {}",
            public.len()
        ),
    ] {
        assert!(metrics.contains(&series), "{series} in {metrics}");
    }
    let (_, page) = Server::http_get(producer.ports.web, "/").await;
    assert!(
        page.contains("Public streams served") && page.contains(&stream.to_string()),
        "{page}"
    );
    let (_, page) = Server::http_get(consumer.ports.web, "/").await;
    assert!(page.contains("Event horizon subscriptions"), "{page}");

    drop(handler);
    assert!(consumer.stop().await, "{}", log_tail(&consumer.log()));
    let events = read_scoped_log(&consumer.dir, CONSUMER_TENANT, scope);
    assert_exactly_once(&events, &public_sequence_numbers(&committed));
    for (event, sent) in events.iter().zip(&public) {
        let origin = event.event_horizon.unwrap();
        assert_eq!(origin.consent_id, CONSENT);
        assert!(origin.received_ns > 0);
        assert_eq!(event.event_source_id, sent.event_source_id);
        assert_eq!(event.content, sent.content);
    }
}

/// Subscriptions that cannot be made are refused with the contract's failure ids: no consent
/// (for that stream or partition), an unknown producer tenant, no address for the producer, an
/// unreachable producer; a producer that does not require consent accepts with the empty
/// consent id (but still refuses an unknown tenant, then as a missing producer tenant).
#[tokio::test]
async fn subscriptions_are_refused_with_the_contract_failure_ids() {
    let stream = Uuid::new_v4();
    let scope = Uuid::new_v4();
    let producer = start_producer(stream, NIL_PARTITION).await;
    let open = start(&producer_config(
        PRODUCER_NO_CONSENT,
        false,
        &[(PRODUCER_TENANT, &[])],
    ))
    .await;
    let consumer = start(&consumer_config(&[
        (PRODUCER, public_port(&producer)),
        (PRODUCER_NO_CONSENT, public_port(&open)),
        (PRODUCER_UNREACHABLE, free_port()),
    ]))
    .await;

    let consented = Horizon::new(stream, NIL_PARTITION, scope);
    assert_eq!(consented.accepted(&consumer).await, CONSENT);

    let other_partition = Horizon {
        partition: "not-consented".to_owned(),
        ..consented.clone()
    };
    let other_stream = Horizon {
        stream: Uuid::new_v4(),
        ..consented.clone()
    };
    let unknown_tenant = Horizon {
        producer_tenant: Uuid::new_v4(),
        ..consented.clone()
    };
    let no_address = Horizon {
        producer: Uuid::new_v4(),
        ..consented.clone()
    };
    let unreachable = Horizon {
        producer: PRODUCER_UNREACHABLE,
        ..consented.clone()
    };
    let open_unknown_tenant = Horizon {
        producer: PRODUCER_NO_CONSENT,
        producer_tenant: Uuid::new_v4(),
        ..consented.clone()
    };
    for (case, horizon, expected) in [
        (
            "no consent for the partition",
            other_partition,
            failures::MISSING_CONSENT,
        ),
        (
            "no consent for the stream",
            other_stream,
            failures::MISSING_CONSENT,
        ),
        (
            // The original looks for consents first, and a tenant it does not have has none.
            "unknown producer tenant",
            unknown_tenant,
            failures::MISSING_CONSENT,
        ),
        (
            "no address for the producer",
            no_address,
            failures::NO_PRODUCER_ADDRESS,
        ),
        (
            "unreachable producer",
            unreachable,
            failures::PRODUCER_UNREACHABLE,
        ),
        (
            "unknown tenant, consent not required",
            open_unknown_tenant,
            failures::PRODUCER_TENANT_MISSING,
        ),
    ] {
        let response = horizon.subscribe(&consumer).await;
        assert_eq!(
            failure_id(response.failure.as_ref()),
            Some(expected),
            "{case}: {response:?}"
        );
    }

    let without_consent = Horizon {
        producer: PRODUCER_NO_CONSENT,
        ..consented
    };
    assert_eq!(
        without_consent.accepted(&consumer).await,
        Uuid::nil(),
        "accepted without consent: the empty consent id"
    );
}

/// The public filter puts each event in the partition of its event source; a subscription to
/// partition "a" gets the "a" events only, and one to "b" (no consent) is refused.
#[tokio::test]
async fn a_subscription_gets_only_its_partition() {
    let stream = Uuid::new_v4();
    let scope = Uuid::new_v4();
    let producer = start_producer(stream, "a").await;
    let _filter = public_filter(&producer, stream, event_source_partition).await;
    let planned: Vec<Planned> = (0..20)
        .flat_map(|i| public_events(if i % 2 == 0 { "a" } else { "b" }, i, 1))
        .collect();
    let committed = commit_events(&producer.private().await, PRODUCER_TENANT, &planned).await;
    let expected: Vec<u64> = committed
        .iter()
        .filter(|e| e.event_source_id == "a")
        .map(|e| e.event_log_sequence_number)
        .collect();

    let consumer = start_consumer(public_port(&producer)).await;
    let handler = scoped_handler(&consumer, scope).await;
    assert_eq!(
        Horizon::new(stream, "a", scope).accepted(&consumer).await,
        CONSENT
    );
    let refused = Horizon::new(stream, "b", Uuid::new_v4())
        .subscribe(&consumer)
        .await;
    assert_eq!(
        failure_id(refused.failure.as_ref()),
        Some(failures::MISSING_CONSENT)
    );

    let received = handled(&handler, &consumer, expected.len()).await;
    nothing_more(&handler, expected.len()).await;
    assert!(
        received.iter().all(|r| r.event_source() == "a"),
        "{received:?}"
    );
    let external: Vec<u64> = received
        .iter()
        .map(|r| r.event.external_event_log_sequence_number)
        .collect();
    assert_eq!(external, expected);
}

/// Two producer tenants, each with its own consent, feed one consumer tenant's scope: every
/// event of both arrives once, each subscription's in its own order, each under its consent.
#[tokio::test]
async fn two_producer_tenants_feed_one_scope() {
    let stream = Uuid::new_v4();
    let scope = Uuid::new_v4();
    let consent = |id| Consent {
        consumer_tenant: CONSUMER_TENANT,
        stream,
        partition: NIL_PARTITION,
        id,
    };
    let mut producer = start(&producer_config(
        PRODUCER,
        true,
        &[
            (PRODUCER_TENANT, &[consent(CONSENT)]),
            (PRODUCER_TENANT_2, &[consent(CONSENT_2)]),
        ],
    ))
    .await;
    let filter = public_filter(&producer, stream, nil_partition).await;
    let channel = producer.private().await;
    let mut one = commit_events(&channel, PRODUCER_TENANT, &public_events("one", 0, 20)).await;
    let mut two = commit_events(&channel, PRODUCER_TENANT_2, &public_events("two", 0, 20)).await;

    let mut consumer = start_consumer(public_port(&producer)).await;
    let handler = scoped_handler(&consumer, scope).await;
    let first = Horizon::new(stream, NIL_PARTITION, scope);
    let second = Horizon {
        producer_tenant: PRODUCER_TENANT_2,
        ..first.clone()
    };
    assert_eq!(first.accepted(&consumer).await, CONSENT);
    assert_eq!(second.accepted(&consumer).await, CONSENT_2);
    one.extend(commit_events(&channel, PRODUCER_TENANT, &public_events("one", 20, 10)).await);
    two.extend(commit_events(&channel, PRODUCER_TENANT_2, &public_events("two", 20, 10)).await);

    let total = one.len() + two.len();
    let received = handled(&handler, &consumer, total).await;
    nothing_more(&handler, total).await;
    let seqs: Vec<u64> = received.iter().map(Request::seq).collect();
    assert_eq!(seqs, (0..total as u64).collect::<Vec<u64>>());
    for (source, sent) in [("one", &one), ("two", &two)] {
        let got: Vec<(u64, &str)> = received
            .iter()
            .filter(|r| r.event_source() == source)
            .map(|r| {
                (
                    r.event.external_event_log_sequence_number,
                    r.event.content.as_str(),
                )
            })
            .collect();
        let want: Vec<(u64, &str)> = sent
            .iter()
            .map(|e| (e.event_log_sequence_number, e.content.as_str()))
            .collect();
        assert_eq!(got, want, "the events of {source}, in order");
    }

    drop(handler);
    drop(filter);
    assert!(consumer.stop().await, "{}", log_tail(&consumer.log()));
    assert!(producer.stop().await);
    let events = read_scoped_log(&consumer.dir, CONSUMER_TENANT, scope);
    assert_eq!(events.len(), total);
    for event in &events {
        let origin = event
            .event_horizon
            .expect("received over the event horizon");
        let expected = if event.event_source_id == "one" {
            CONSENT
        } else {
            CONSENT_2
        };
        assert_eq!(origin.consent_id, expected, "{event:?}");
    }
}

/// The producer commits `n` public events in commits of 500 and its public filter writes
/// them all to `stream` before this returns; returns the producer's sequence numbers.
async fn backlog(producer: &Server, filter: &Answering, n: usize) -> Vec<u64> {
    let channel = producer.private().await;
    let mut committed = Vec::new();
    let mut first = 0;
    while first < n {
        let count = 500.min(n - first);
        let events = public_events("backlog", first, count);
        committed.extend(commit_events(&channel, PRODUCER_TENANT, &events).await);
        first += count;
    }
    wait_until("the public filter wrote the backlog", producer, || {
        let count = filter.answered().len();
        if count >= n {
            Ok(())
        } else {
            Err(format!("{count} filtered"))
        }
    })
    .await;
    public_sequence_numbers(&committed)
}

/// The consumer is SIGKILLed while a backlog of 2000 events replicates and started again on
/// the same directory; no head subscribes again, yet every public event ends up in the scoped
/// log exactly once, in order.
#[tokio::test]
async fn a_killed_consumer_resumes_its_subscription_exactly_once() {
    let stream = Uuid::new_v4();
    let scope = Uuid::new_v4();
    let producer = start_producer(stream, NIL_PARTITION).await;
    let filter = public_filter(&producer, stream, nil_partition).await;
    let expected = backlog(&producer, &filter, 2000).await;

    let mut consumer = start_consumer(public_port(&producer)).await;
    let handler = scoped_handler(&consumer, scope).await;
    assert_eq!(
        Horizon::new(stream, NIL_PARTITION, scope)
            .accepted(&consumer)
            .await,
        CONSENT
    );
    handled(&handler, &consumer, 1).await;
    consumer.kill().await;
    let before_kill = handler.stop().await.1.len();
    eprintln!("the consumer was killed after its handler saw {before_kill} events");

    consumer.relaunch().await;
    let handler = scoped_handler(&consumer, scope).await;
    handled(&handler, &consumer, expected.len()).await;
    drop(handler);
    assert!(consumer.stop().await, "{}", log_tail(&consumer.log()));
    let events = read_scoped_log(&consumer.dir, CONSUMER_TENANT, scope);
    assert_exactly_once(&events, &expected);
    assert!(events
        .iter()
        .all(|e| e.event_horizon.unwrap().consent_id == CONSENT));
}

/// The producer is SIGKILLed while a backlog of 2000 events replicates and started again on
/// the same public port with more events to come; the consumer reconnects by itself and its
/// scoped log holds every public event exactly once, in order.
#[tokio::test]
async fn a_killed_producer_is_resumed_exactly_once() {
    let stream = Uuid::new_v4();
    let scope = Uuid::new_v4();
    let mut producer = start_producer(stream, NIL_PARTITION).await;
    producer.keep_public_port();
    let filter = public_filter(&producer, stream, nil_partition).await;
    let mut expected = backlog(&producer, &filter, 2000).await;

    let mut consumer = start_consumer(public_port(&producer)).await;
    let handler = scoped_handler(&consumer, scope).await;
    assert_eq!(
        Horizon::new(stream, NIL_PARTITION, scope)
            .accepted(&consumer)
            .await,
        CONSENT
    );
    handled(&handler, &consumer, 1).await;
    let port = public_port(&producer);
    producer.kill().await;
    eprintln!(
        "the producer was killed after the consumer's handler saw {} events",
        handler.answered().len()
    );
    drop(filter.stop().await);

    producer.relaunch().await;
    assert_eq!(public_port(&producer), port, "the same public port");
    let filter = public_filter(&producer, stream, nil_partition).await;
    let more = public_events("after-restart", 2000, 200);
    let committed = commit_events(&producer.private().await, PRODUCER_TENANT, &more).await;
    expected.extend(public_sequence_numbers(&committed));

    handled(&handler, &consumer, expected.len()).await;
    drop(handler);
    drop(filter);
    stopped_holding_exactly_once(&mut consumer, scope, &expected).await;
}

/// A TCP proxy in front of the producer's public port: forwards each connection both ways,
/// and on `cut` closes every live connection and closes new ones as soon as they are
/// accepted, until `restore`.
struct Proxy {
    port: u16,
    state: Arc<ProxyState>,
    accept: JoinHandle<()>,
}

struct ProxyState {
    /// While set, accepted connections are closed at once. Read and written under
    /// `connections`' lock, so no connection accepted before a cut outlives it.
    cut: AtomicBool,
    /// The forwarding tasks of the connections; aborting one drops both of its sockets.
    connections: Mutex<Vec<JoinHandle<()>>>,
    /// How many connections were forwarded.
    forwarded: AtomicUsize,
}

impl Proxy {
    async fn start(upstream: u16) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let state = Arc::new(ProxyState {
            cut: AtomicBool::new(false),
            connections: Mutex::new(Vec::new()),
            forwarded: AtomicUsize::new(0),
        });
        let accept = {
            let state = Arc::clone(&state);
            tokio::spawn(async move {
                while let Ok((mut inbound, _)) = listener.accept().await {
                    let mut connections = state.connections.lock().unwrap();
                    if state.cut.load(Ordering::SeqCst) {
                        drop(inbound);
                        continue;
                    }
                    state.forwarded.fetch_add(1, Ordering::SeqCst);
                    connections.retain(|task| !task.is_finished());
                    connections.push(tokio::spawn(async move {
                        let Ok(mut outbound) = TcpStream::connect(("127.0.0.1", upstream)).await
                        else {
                            return;
                        };
                        let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                    }));
                }
            })
        };
        Proxy {
            port,
            state,
            accept,
        }
    }

    fn cut(&self) {
        let mut connections = self.state.connections.lock().unwrap();
        self.state.cut.store(true, Ordering::SeqCst);
        for task in connections.drain(..) {
            task.abort();
        }
    }

    fn restore(&self) {
        let _connections = self.state.connections.lock().unwrap();
        self.state.cut.store(false, Ordering::SeqCst);
    }

    fn forwarded(&self) -> usize {
        self.state.forwarded.load(Ordering::SeqCst)
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.accept.abort();
        for task in self.state.connections.lock().unwrap().drain(..) {
            task.abort();
        }
    }
}

/// While the producer commits continuously, the connection between the runtimes is cut for
/// two seconds and restored: the consumer reconnects through the proxy by itself and its
/// scoped log holds every public event exactly once, in order.
#[tokio::test]
async fn a_cut_connection_is_resumed_exactly_once() {
    let stream = Uuid::new_v4();
    let scope = Uuid::new_v4();
    let producer = start_producer(stream, NIL_PARTITION).await;
    let _filter = public_filter(&producer, stream, nil_partition).await;
    let proxy = Proxy::start(public_port(&producer)).await;
    let mut consumer = start_consumer(proxy.port).await;
    let handler = scoped_handler(&consumer, scope).await;
    assert_eq!(
        Horizon::new(stream, NIL_PARTITION, scope)
            .accepted(&consumer)
            .await,
        CONSENT
    );

    let channel = producer.private().await;
    let committer = tokio::spawn(async move {
        let mut committed = Vec::new();
        for batch in 0..100 {
            let events = public_events("live", batch * 10, 10);
            committed.extend(commit_events(&channel, PRODUCER_TENANT, &events).await);
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        public_sequence_numbers(&committed)
    });
    handled(&handler, &consumer, 50).await;
    let forwarded = proxy.forwarded();
    proxy.cut();
    let at_cut = handler.answered().len();
    tokio::time::sleep(Duration::from_secs(2)).await;
    proxy.restore();
    let expected = committer.await.unwrap();
    eprintln!(
        "the connection was cut after {at_cut} of {} events",
        expected.len()
    );

    handled(&handler, &consumer, expected.len()).await;
    assert!(
        proxy.forwarded() > forwarded,
        "the consumer connected again through the proxy after the cut"
    );
    drop(handler);
    stopped_holding_exactly_once(&mut consumer, scope, &expected).await;
}

/// A certificate authority and the certificates it signed for one test: the producer's
/// (for 127.0.0.1 and localhost) and a consumer's client certificate, all PEM.
struct Pki {
    authority: String,
    server: String,
    server_key: String,
    client: String,
    client_key: String,
}

impl Pki {
    fn new() -> Pki {
        use rcgen::{BasicConstraints, CertificateParams, IsCa, KeyPair};
        let authority_key = KeyPair::generate().unwrap();
        let mut authority = CertificateParams::new(Vec::<String>::new()).unwrap();
        authority.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        let authority = authority.self_signed(&authority_key).unwrap();
        let server_key = KeyPair::generate().unwrap();
        let server = CertificateParams::new(vec!["127.0.0.1".to_owned(), "localhost".to_owned()])
            .unwrap()
            .signed_by(&server_key, &authority, &authority_key)
            .unwrap();
        let client_key = KeyPair::generate().unwrap();
        let client = CertificateParams::new(vec!["consumer".to_owned()])
            .unwrap()
            .signed_by(&client_key, &authority, &authority_key)
            .unwrap();
        Pki {
            authority: authority.pem(),
            server: server.pem(),
            server_key: server_key.serialize_pem(),
            client: client.pem(),
            client_key: client_key.serialize_pem(),
        }
    }
}

/// The public port over TLS that requires client certificates: a consumer that trusts the
/// authority and presents its certificate replicates; a plaintext consumer and one without a
/// client certificate cannot connect (the head is told so), and nothing leaks to them.
#[tokio::test]
async fn the_event_horizon_crosses_tls_with_client_certificates() {
    let pki = Pki::new();
    let stream = Uuid::new_v4();
    let scope = Uuid::new_v4();
    let consent = Consent {
        consumer_tenant: CONSUMER_TENANT,
        stream,
        partition: NIL_PARTITION,
        id: CONSENT,
    };
    let producer_yaml = producer_config(PRODUCER, true, &[(PRODUCER_TENANT, &[consent])])
        + "annals:\n  tls:\n    public:\n      certificate: tls/server.pem\n      \
           key: tls/server-key.pem\n      clientCertificateAuthority: tls/ca.pem\n";
    let producer = Server::start_with(
        &[
            (".dolittle/runtime.yml", producer_yaml.as_str()),
            ("tls/server.pem", pki.server.as_str()),
            ("tls/server-key.pem", pki.server_key.as_str()),
            ("tls/ca.pem", pki.authority.as_str()),
        ],
        &[],
        &[],
    )
    .await;
    let _filter = public_filter(&producer, stream, nil_partition).await;
    let planned = public_events("tls", 0, 5);
    let committed = commit_events(&producer.private().await, PRODUCER_TENANT, &planned).await;
    let port = public_port(&producer);

    let consumer_yaml = consumer_config(&[(PRODUCER, port)])
        + "annals:\n  tls:\n    consumer:\n      certificateAuthority: tls/ca.pem\n      \
           certificate: tls/client.pem\n      key: tls/client-key.pem\n";
    let consumer = Server::start_with(
        &[
            (".dolittle/runtime.yml", consumer_yaml.as_str()),
            ("tls/ca.pem", pki.authority.as_str()),
            ("tls/client.pem", pki.client.as_str()),
            ("tls/client-key.pem", pki.client_key.as_str()),
        ],
        &[],
        &[],
    )
    .await;
    let handler = scoped_handler(&consumer, scope).await;
    let horizon = Horizon::new(stream, NIL_PARTITION, scope);
    assert_eq!(
        horizon.accepted(&consumer).await,
        CONSENT,
        "{}",
        log_tail(&consumer.log())
    );
    let received = handled(&handler, &consumer, committed.len()).await;
    for (r, sent) in received.iter().zip(&committed) {
        assert_eq!(
            r.event.external_event_log_sequence_number,
            sent.event_log_sequence_number
        );
    }

    let plaintext = start_consumer(port).await;
    let answer = horizon.subscribe(&plaintext).await;
    assert_eq!(
        failure_id(answer.failure.as_ref()),
        Some(failures::PRODUCER_UNREACHABLE),
        "a plaintext consumer: {answer:?}"
    );

    let no_certificate_yaml = consumer_config(&[(PRODUCER, port)])
        + "annals:\n  tls:\n    consumer:\n      certificateAuthority: tls/ca.pem\n";
    let no_certificate = Server::start_with(
        &[
            (".dolittle/runtime.yml", no_certificate_yaml.as_str()),
            ("tls/ca.pem", pki.authority.as_str()),
        ],
        &[],
        &[],
    )
    .await;
    let answer = horizon.subscribe(&no_certificate).await;
    assert_eq!(
        failure_id(answer.failure.as_ref()),
        Some(failures::PRODUCER_UNREACHABLE),
        "a consumer without a client certificate: {answer:?}"
    );
}
