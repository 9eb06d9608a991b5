//! The crash loop: the real `annals` SIGKILLed at random moments, again and again, under
//! concurrent commits, commits for aggregates, a partitioned event handler and a partitioned
//! filter, each answered as fast as a head can; after every kill the data directory is read
//! with annals-engine (the way the runtime itself opens it) and checked:
//! - the event log is gapless from 0, and no event appears twice (each carries an id of its
//!   own);
//! - every acknowledged commit is there, at the sequence numbers it was acknowledged with and
//!   with its content; every event is one some writer sent (acknowledged or cut off);
//! - each aggregate's versions are contiguous from 0 in log order, every acknowledged
//!   aggregate commit at its versions;
//! - the handler's stored position is never past an event its head did not answer, and the
//!   filter's never past an event not in its stream; the filter's stream holds each event at
//!   most once, in log order, with positions from 0 and no gap;
//!
//! and then the runtime is started again on the same directory. After the last cycle the
//! handler catches up and must have been given every event.
//!
//! `ANNALS_CRASH_CYCLES` sets the number of cycles (default 4, what `.ci/run` runs; the long
//! run is `ANNALS_CRASH_CYCLES=1000`), `ANNALS_CRASH_SEED` the seed of the kill moments and
//! batch sizes (printed, so a failure can be replayed).
#![allow(clippy::unwrap_used, reason = "tests")]

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use annals_engine::{
    Engine, EngineConfig, EventLogSequenceNumber, ScopeId, StreamPosition, TenantId,
};
use annals_tests::head::{Answer, Answering, EventHandler, Filter, Head, Kind, Request};
use annals_tests::proto::dolittle;
use annals_tests::{aggregate_request, commit_request, log_tail, Server, DEVELOPMENT};
use dolittle::runtime::events::event_store_client::EventStoreClient;
use tonic::transport::Channel;
use uuid::Uuid;

const TYPE: Uuid = Uuid::from_u128(0xc4a5_0000_0000_4000_8000_0000_0000_0001);
const ROOT: Uuid = Uuid::from_u128(0xc4a5_0000_0000_4000_8000_0000_0000_0002);
const HANDLER: Uuid = Uuid::from_u128(0xc4a5_0000_0000_4000_8000_0000_0000_0003);
const FILTER: Uuid = Uuid::from_u128(0xc4a5_0000_0000_4000_8000_0000_0000_0004);
/// Plain writers and aggregate writers (one aggregate each), all at once.
const WRITERS: usize = 4;
const AGGREGATES: usize = 3;

/// A small PRNG (xorshift64*), so the suite needs no crate for it.
struct Random(u64);

impl Random {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

/// What the clients sent and what they were told, across every cycle.
#[derive(Default)]
struct Record {
    /// Event id -> the sequence number it was acknowledged at.
    acknowledged: HashMap<String, u64>,
    /// Ids sent in commits whose outcome the client never learnt (the kill cut them off).
    cut_off: BTreeSet<String>,
    /// Aggregate event source -> (version, sequence number) of each acknowledged event.
    aggregates: BTreeMap<String, Vec<(u64, u64)>>,
    /// Sequence numbers the handler's head answered, and the filter's.
    handler_answered: BTreeSet<u64>,
    filter_answered: BTreeSet<u64>,
}

fn content(id: &str) -> String {
    format!("{{\"id\":\"{id}\"}}")
}

fn id_of(content: &str) -> String {
    let value: serde_json::Value = serde_json::from_str(content).unwrap();
    value["id"].as_str().unwrap().to_owned()
}

/// A plain writer: commits of 1 to 3 events until the server goes away.
async fn plain_writer(channel: Channel, writer: usize, cycle: usize, record: Arc<Mutex<Record>>) {
    let mut client = EventStoreClient::new(channel);
    for n in 0.. {
        let ids: Vec<String> = (0..=(n % 3))
            .map(|i| format!("p{writer}-{cycle}-{n}-{i}"))
            .collect();
        let contents: Vec<String> = ids.iter().map(|id| content(id)).collect();
        let events: Vec<(Uuid, &str, &str)> = contents
            .iter()
            .enumerate()
            .map(|(i, c)| (TYPE, if i % 2 == 0 { "even" } else { "odd" }, c.as_str()))
            .collect();
        let Ok(response) = client.commit(commit_request(DEVELOPMENT, &events)).await else {
            record.lock().unwrap().cut_off.extend(ids);
            return;
        };
        let response = response.into_inner();
        assert!(response.failure.is_none(), "{:?}", response.failure);
        let mut record = record.lock().unwrap();
        for (id, event) in ids.iter().zip(&response.events) {
            record
                .acknowledged
                .insert(id.clone(), event.event_log_sequence_number);
        }
    }
}

/// An aggregate writer: commits of 1 or 2 events to its own aggregate, at the version it
/// learns from the server first (a cut-off commit may or may not have been written).
async fn aggregate_writer(
    channel: Channel,
    aggregate: usize,
    cycle: usize,
    record: Arc<Mutex<Record>>,
) {
    let source = format!("aggregate-{aggregate}");
    let mut client = EventStoreClient::new(channel);
    let Ok(fetched) = client
        .fetch_for_aggregate(dolittle::runtime::events::FetchForAggregateRequest {
            call_context: Some(annals_tests::call_context(DEVELOPMENT)),
            aggregate: Some(dolittle::runtime::events::Aggregate {
                aggregate_root_id: Some(annals_tests::id(ROOT)),
                event_source_id: source.clone(),
            }),
        })
        .await
    else {
        return;
    };
    let mut version = fetched
        .into_inner()
        .events
        .unwrap()
        .current_aggregate_root_version;
    for n in 0.. {
        let ids: Vec<String> = (0..=(n % 2))
            .map(|i| format!("a{aggregate}-{cycle}-{n}-{i}"))
            .collect();
        let contents: Vec<String> = ids.iter().map(|id| content(id)).collect();
        let events: Vec<(Uuid, &str)> = contents.iter().map(|c| (TYPE, c.as_str())).collect();
        let request = aggregate_request(DEVELOPMENT, ROOT, &source, version, &events);
        let Ok(response) = client.commit_for_aggregate(request).await else {
            record.lock().unwrap().cut_off.extend(ids);
            return;
        };
        let response = response.into_inner();
        assert!(response.failure.is_none(), "{:?}", response.failure);
        let committed = response.events.unwrap();
        let mut record = record.lock().unwrap();
        for (i, (id, event)) in ids.iter().zip(&committed.events).enumerate() {
            record
                .acknowledged
                .insert(id.clone(), event.event_log_sequence_number);
            record
                .aggregates
                .entry(source.clone())
                .or_default()
                .push((version + i as u64, event.event_log_sequence_number));
        }
        version += ids.len() as u64;
    }
}

/// Checks the stopped server's data directory against what the clients were told.
fn check(server: &Server, record: &Record, cycle: usize) {
    let engine = Engine::open(EngineConfig::new(server.dir.join("data"))).unwrap();
    let tenant = engine.tenant(TenantId(DEVELOPMENT)).unwrap();
    let log = tenant.event_log().unwrap();
    let mut events = Vec::new();
    let mut from = EventLogSequenceNumber::ZERO;
    loop {
        let batch = log.read(from, 4096, 4 << 20).unwrap();
        let Some(next) = batch.next() else { break };
        events.extend(batch.events().unwrap());
        from = next;
    }
    let context = |what: &str| format!("cycle {cycle}: {what}");
    // Gapless, and no event twice.
    let mut seen = HashMap::new();
    for (index, event) in events.iter().enumerate() {
        assert_eq!(
            event.sequence_number.0,
            index as u64,
            "{}",
            context("a gap")
        );
        let id = id_of(&event.content);
        assert!(
            record.acknowledged.contains_key(&id) || record.cut_off.contains(&id),
            "{}",
            context(&format!("event {index} ({id}) was never sent"))
        );
        if let Some(earlier) = seen.insert(id.clone(), index) {
            panic!("{}", context(&format!("{id} at {earlier} and {index}")));
        }
    }
    // Every acknowledged event where it was acknowledged.
    for (id, &sequence) in &record.acknowledged {
        assert_eq!(
            seen.get(id),
            Some(&usize::try_from(sequence).unwrap()),
            "{}",
            context(&format!("acknowledged {id} at {sequence}"))
        );
    }
    // Aggregates: versions contiguous from 0 in log order, acknowledged ones in place.
    let mut versions: BTreeMap<&str, Vec<(u64, u64)>> = BTreeMap::new();
    for event in &events {
        if let Some(aggregate) = &event.aggregate {
            versions
                .entry(event.event_source_id.as_str())
                .or_default()
                .push((aggregate.version, event.sequence_number.0));
        }
    }
    for (source, found) in &versions {
        let expected: Vec<u64> = (0..found.len() as u64).collect();
        let got: Vec<u64> = found.iter().map(|(v, _)| *v).collect();
        assert_eq!(
            got,
            expected,
            "{}",
            context(&format!("versions of {source}"))
        );
    }
    for (source, acknowledged) in &record.aggregates {
        for pair in acknowledged {
            assert!(
                versions[source.as_str()].contains(pair),
                "{}",
                context(&format!(
                    "{source}: acknowledged (version, sequence) {pair:?}"
                ))
            );
        }
    }
    // Positions never past what the heads answered; the filter's stream once each.
    let states = tenant.stream_processor_states().unwrap();
    let position = |processor: Uuid| {
        states
            .iter()
            .find(|(id, _)| id.processor == processor)
            .map_or(0, |(_, state)| state.event_log_position.0)
    };
    let handler = position(HANDLER);
    for sequence in 0..handler {
        assert!(
            record.handler_answered.contains(&sequence),
            "{}",
            context(&format!(
                "the handler's position {handler} is past unanswered {sequence}"
            ))
        );
    }
    let stream = tenant
        .read_stream(
            ScopeId(Uuid::nil()),
            FILTER,
            StreamPosition::ZERO,
            usize::MAX,
        )
        .unwrap();
    let mut last = None;
    for (index, entry) in stream.iter().enumerate() {
        assert_eq!(
            entry.position.0,
            index as u64,
            "{}",
            context("a gap in the stream")
        );
        let sequence = entry.event_log_sequence_number.0;
        assert!(
            last < Some(sequence),
            "{}",
            context("the stream is out of log order")
        );
        assert!(
            record.filter_answered.contains(&sequence),
            "{}",
            context(&format!(
                "{sequence} is in the stream but was never filtered"
            ))
        );
        last = Some(sequence);
    }
    let filter = position(FILTER);
    let in_stream: BTreeSet<u64> = stream
        .iter()
        .map(|e| e.event_log_sequence_number.0)
        .collect();
    for sequence in 0..filter {
        assert!(
            in_stream.contains(&sequence),
            "{}",
            context(&format!(
                "the filter's position {filter} is past {sequence}, not in its stream"
            ))
        );
    }
    eprintln!(
        "cycle {cycle}: {} events, {} acknowledged, handler at {handler}, filter at {filter} \
         with {} in its stream",
        events.len(),
        record.acknowledged.len(),
        stream.len()
    );
}

fn handler_head() -> EventHandler {
    EventHandler::new(HANDLER, &[TYPE]).partitioned(4)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_at_random_under_load_nothing_acknowledged_is_lost_moved_or_repeated() {
    let cycles: usize = std::env::var("ANNALS_CRASH_CYCLES")
        .ok()
        .map_or(4, |v| v.parse().expect("ANNALS_CRASH_CYCLES is a number"));
    let seed = annals_tests::seed("ANNALS_CRASH_SEED");
    eprintln!("crash loop: {cycles} cycles");
    let mut random = Random(seed);
    let record = Arc::new(Mutex::new(Record::default()));
    let mut server = Server::start().await;
    let started = Instant::now();
    for cycle in 0..cycles {
        let handler = Head::connect(server.private().await, handler_head().message()).await;
        let handler = Answering::start(handler, |_| Answer::Success);
        let filter = Head::connect(
            server.private().await,
            Filter::new(Kind::PartitionedFilter, FILTER).message(),
        )
        .await;
        let filter = Answering::start(filter, |r| Answer::Filter {
            included: true,
            partition: r.event_source().to_owned(),
        });
        let mut writers = Vec::new();
        for writer in 0..WRITERS {
            let channel = server.private().await;
            writers.push(tokio::spawn(plain_writer(
                channel,
                writer,
                cycle,
                Arc::clone(&record),
            )));
        }
        for aggregate in 0..AGGREGATES {
            let channel = server.private().await;
            writers.push(tokio::spawn(aggregate_writer(
                channel,
                aggregate,
                cycle,
                Arc::clone(&record),
            )));
        }
        // Kill at a random moment of the load.
        tokio::time::sleep(Duration::from_millis(50 + random.below(450))).await;
        server.kill().await;
        for writer in writers {
            writer.await.unwrap();
        }
        let (_, handled) = handler.stop().await;
        let (_, filtered) = filter.stop().await;
        {
            let mut record = record.lock().unwrap();
            record
                .handler_answered
                .extend(handled.iter().map(Request::seq));
            record
                .filter_answered
                .extend(filtered.iter().map(Request::seq));
            check(&server, &record, cycle);
        }
        server.relaunch().await;
    }
    // Caught up at the end: the handler is given every event there is.
    let total = {
        let engine_events = record.lock().unwrap().acknowledged.len();
        assert!(
            engine_events > 0,
            "nothing was acknowledged in {cycles} cycles"
        );
        let mut client = EventStoreClient::new(server.private().await);
        // A last commit marks the end of the log.
        let response = client
            .commit(commit_request(
                DEVELOPMENT,
                &[(TYPE, "last", &content("last"))],
            ))
            .await
            .unwrap()
            .into_inner();
        response.events[0].event_log_sequence_number + 1
    };
    let handler = Head::connect(server.private().await, handler_head().message()).await;
    let handler = Answering::start(handler, |_| Answer::Success);
    let mut missing: BTreeSet<u64> = {
        let record = record.lock().unwrap();
        (0..total)
            .filter(|s| !record.handler_answered.contains(s))
            .collect()
    };
    let catch_up = Instant::now();
    let lag = missing.len();
    // The handler lags the writers in every cycle: a minute, and a second per 10 000 events.
    let deadline = Instant::now() + Duration::from_secs(60 + total / 10_000);
    let mut seen = 0;
    while !missing.is_empty() {
        assert!(
            Instant::now() < deadline,
            "the handler was not given {} of {total} events (first {:?})\n{}",
            missing.len(),
            missing.first(),
            log_tail(&server.log())
        );
        // Seldom, and only what is new: the answering task shares the runtime.
        tokio::time::sleep(Duration::from_millis(200)).await;
        let answered = handler.answered();
        for request in &answered[seen..] {
            missing.remove(&request.seq());
        }
        seen = answered.len();
    }
    eprintln!(
        "crash loop: the handler caught up {lag} events it had not answered in {:.1} s",
        catch_up.elapsed().as_secs_f64()
    );
    let _ = handler.stop().await;
    eprintln!(
        "crash loop: {cycles} cycles, {total} events in {:.1} s",
        started.elapsed().as_secs_f64()
    );
}
