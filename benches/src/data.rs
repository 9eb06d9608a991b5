//! Benchmark data: realistic events, built once before anything is measured.
//!
//! Every event carries 250-300 bytes of JSON content (ids, amounts, names, timestamps), a UUID v4
//! event source id, and the execution context of its commit (microservice, tenant and
//! correlation ids, environment "Production", version 1.2.3). Values come from a seeded RNG, so
//! two runs with the same seed commit the same bytes.
//!
//! Each system gets the same events in the form it consumes: annals a [`Commit`], RocksDB the
//! encoded payload of each event (the bytes annals stores), the raw baseline the framed records
//! (payload plus frame header, byte-for-byte what annals writes). The encoded forms are obtained
//! by committing the events to a scratch engine and reading them back, so they stay exact when
//! the record format changes.
//!
//! Invariant: within one [`CommitPool`], `payloads[i].len() == commit.events.len()` and
//! `frames` is the concatenation of one frame per payload.

use std::path::Path;

use annals_engine::{
    testing::format::{encode_frame, FRAME_HEADER_LEN},
    uuid::{Builder, Uuid},
    Commit, Durability, Engine, EngineConfig, EventLogSequenceNumber, EventType, ExecutionContext,
    IoBackendChoice, LogConfig, TenantId, UncommittedEvent, Version,
};
use anyhow::{ensure, Context, Result};
use rand::{rngs::SmallRng, Rng, SeedableRng};

/// One commit in every form the systems under test consume.
#[derive(Debug)]
pub struct PreparedCommit {
    /// For annals.
    pub commit: Commit,
    /// The encoded payload of each event, as annals stores it (RocksDB values).
    pub payloads: Vec<Vec<u8>>,
    /// One record frame per event, back to back (the raw baseline's write).
    pub frames: Vec<u8>,
}

impl PreparedCommit {
    /// Events in the commit.
    pub fn events_count(&self) -> u64 {
        self.commit.events.len() as u64
    }
}

/// Pre-built commits for a number of writers; writer `w` cycles through its own slice.
#[derive(Debug)]
pub struct CommitPool {
    commits: Vec<PreparedCommit>,
    per_writer: usize,
}

impl CommitPool {
    /// The commit writer `writer` sends on its `iteration`-th call.
    pub fn get(&self, writer: usize, iteration: u64) -> &PreparedCommit {
        let slot = (iteration % self.per_writer as u64) as usize;
        &self.commits[writer * self.per_writer + slot]
    }

    /// Every commit of the pool.
    pub fn all(&self) -> &[PreparedCommit] {
        &self.commits
    }

    /// Mean framed bytes per event (what one event costs on disk in the active segment).
    pub fn framed_bytes_per_event(&self) -> f64 {
        let bytes: usize = self.commits.iter().map(|c| c.frames.len()).sum();
        let events: u64 = self.commits.iter().map(PreparedCommit::events_count).sum();
        crate::report::ratio(bytes as u64, events).unwrap_or(0.0)
    }
}

/// Makes events and commits from a seeded RNG.
#[derive(Debug)]
pub struct EventFactory {
    rng: SmallRng,
    microservice_id: Uuid,
    tenant_id: Uuid,
    event_types: [Uuid; 4],
    clock_ns: i64,
}

const FIRST_NAMES: [&str; 8] = [
    "Ada", "Grace", "Linus", "Margaret", "Ken", "Barbara", "Dennis", "Frances",
];
const LAST_NAMES: [&str; 8] = [
    "Lovelace", "Hopper", "Torvalds", "Hamilton", "Thompson", "Liskov", "Ritchie", "Allen",
];
const PRODUCTS: [&str; 8] = [
    "Ergonomic Steel Chair",
    "Rustic Oak Table",
    "Handmade Wool Blanket",
    "Compact Espresso Machine",
    "Noise Cancelling Headset",
    "Standing Desk Frame",
    "Cast Iron Skillet",
    "Ceramic Pour-Over Set",
];
const CURRENCIES: [&str; 3] = ["EUR", "NOK", "USD"];
const WAREHOUSES: [&str; 4] = ["Oslo-2", "Bergen-1", "Trondheim-3", "Stavanger-1"];

impl EventFactory {
    /// A factory; the same seed gives the same events.
    pub fn new(seed: u64) -> Self {
        let mut rng = SmallRng::seed_from_u64(seed);
        let microservice_id = random_uuid(&mut rng);
        let tenant_id = random_uuid(&mut rng);
        let event_types = [
            random_uuid(&mut rng),
            random_uuid(&mut rng),
            random_uuid(&mut rng),
            random_uuid(&mut rng),
        ];
        Self {
            rng,
            microservice_id,
            tenant_id,
            event_types,
            clock_ns: 1_717_000_000_000_000_000,
        }
    }

    /// One event of an order-line kind, with 250-300 bytes of JSON content.
    pub fn event(&mut self) -> UncommittedEvent {
        let rng = &mut self.rng;
        self.clock_ns += rng.gen_range(1_000..5_000_000);
        let quantity: u32 = rng.gen_range(1..20);
        let unit_cents: u64 = rng.gen_range(199..99_999);
        let total_cents = unit_cents * u64::from(quantity);
        let seconds = self.clock_ns / 1_000_000_000;
        let millis = (self.clock_ns / 1_000_000) % 1000;
        let content = format!(
            concat!(
                r#"{{"orderId":"{}","customerNo":{},"sku":"SKU-{:06}","#,
                r#""product":"{}","quantity":{},"unitPrice":{}.{:02},"amount":{}.{:02},"#,
                r#""currency":"{}","customer":"{} {}","warehouse":"{}","placedAt":"{}.{:03}Z"}}"#
            ),
            random_uuid(rng).hyphenated(),
            rng.gen_range(10_000..10_000_000),
            rng.gen_range(0..1_000_000),
            PRODUCTS[rng.gen_range(0..PRODUCTS.len())],
            quantity,
            unit_cents / 100,
            unit_cents % 100,
            total_cents / 100,
            total_cents % 100,
            CURRENCIES[rng.gen_range(0..CURRENCIES.len())],
            FIRST_NAMES[rng.gen_range(0..FIRST_NAMES.len())],
            LAST_NAMES[rng.gen_range(0..LAST_NAMES.len())],
            WAREHOUSES[rng.gen_range(0..WAREHOUSES.len())],
            crate::report::utc_timestamp(seconds),
            millis,
        );
        UncommittedEvent {
            event_source_id: random_uuid(rng).hyphenated().to_string(),
            event_type: EventType {
                id: self.event_types[rng.gen_range(0..self.event_types.len())],
                generation: 1,
            },
            public: false,
            content,
            aggregate: None,
            event_horizon: None,
        }
    }

    /// A commit of `events_count` events with a fresh correlation id.
    pub fn commit(&mut self, events_count: usize) -> Commit {
        let events = (0..events_count).map(|_| self.event()).collect();
        Commit {
            occurred_ns: self.clock_ns,
            execution_context: ExecutionContext {
                microservice_id: self.microservice_id,
                tenant_id: self.tenant_id,
                version: Version {
                    major: 1,
                    minor: 2,
                    patch: 3,
                    build: 0,
                    pre_release: String::new(),
                },
                correlation_id: random_uuid(&mut self.rng),
                claims: Vec::new(),
                environment: "Production".into(),
                span_id: None,
            },
            events,
        }
    }

    /// A pool of `writers * per_writer` commits of `batch` events each, in every encoded form.
    /// `scratch` is an empty directory used (and emptied) to obtain the exact encodings.
    pub fn pool(
        &mut self,
        writers: usize,
        per_writer: usize,
        batch: usize,
        scratch: &Path,
    ) -> Result<CommitPool> {
        let commits: Vec<Commit> = (0..writers * per_writer)
            .map(|_| self.commit(batch))
            .collect();
        let commits = encode_with_engine(commits, scratch)?;
        Ok(CommitPool {
            commits,
            per_writer,
        })
    }
}

fn random_uuid(rng: &mut SmallRng) -> Uuid {
    Builder::from_random_bytes(rng.gen()).into_uuid()
}

/// Commits `commits` to a throwaway engine and reads back each event's payload, then frames
/// them as annals does.
fn encode_with_engine(commits: Vec<Commit>, scratch: &Path) -> Result<Vec<PreparedCommit>> {
    let config = EngineConfig::from(LogConfig {
        durability: Durability::Buffered,
        seal_enabled: false,
        // Small buffered writes are cheapest through std (io_uring hands them to a worker).
        io_backend: IoBackendChoice::Std,
        ..LogConfig::new(scratch)
    });
    let engine = Engine::open(config).context("open the scratch engine")?;
    let log = engine
        .tenant_or_create(TenantId(Uuid::from_u128(1)))
        .and_then(|t| t.event_log())
        .context("open the scratch log")?;
    let mut prepared = Vec::with_capacity(commits.len());
    for commit in commits {
        let receipt = log.append(&commit).context("append to the scratch log")?;
        let mut payloads = Vec::with_capacity(commit.events.len());
        let mut next = receipt.first;
        while next < receipt.next() {
            let remaining = (receipt.next().0 - next.0) as usize;
            let batch = log
                .read(next, remaining, 64 << 20)
                .context("read the scratch log")?;
            ensure!(
                !batch.is_empty(),
                "the scratch log ended at {next} before {}",
                receipt.next()
            );
            payloads.extend(batch.payloads().map(|(_, p)| p.to_vec()));
            next = batch.next().unwrap_or(next);
        }
        let mut frames =
            Vec::with_capacity(payloads.iter().map(|p| p.len() + FRAME_HEADER_LEN).sum());
        for (k, payload) in payloads.iter().enumerate() {
            let rest = (payloads.len() - 1 - k) as u32;
            let offset = frames.len() as u64;
            encode_frame(
                &mut frames,
                EventLogSequenceNumber::ZERO,
                offset,
                EventLogSequenceNumber(k as u64),
                rest,
                // Each commit is its own write group in the raw baseline.
                offset as u32,
                payload,
            );
        }
        prepared.push(PreparedCommit {
            commit,
            payloads,
            frames,
        });
    }
    drop(log);
    drop(engine);
    std::fs::remove_dir_all(scratch).context("remove the scratch engine directory")?;
    Ok(prepared)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn content_is_250_to_300_bytes_of_json() {
        let mut factory = EventFactory::new(7);
        for _ in 0..2000 {
            let event = factory.event();
            let len = event.content.len();
            assert!((250..=300).contains(&len), "{len}: {}", event.content);
            let _: serde_json::Value = serde_json::from_str(&event.content).unwrap();
            assert_eq!(
                Uuid::parse_str(&event.event_source_id)
                    .unwrap()
                    .get_version_num(),
                4
            );
        }
    }

    #[test]
    fn same_seed_same_events() {
        assert_eq!(
            EventFactory::new(3).commit(5),
            EventFactory::new(3).commit(5)
        );
    }

    #[test]
    fn pool_encodings_match_the_events() {
        let dir = tempfile::tempdir().unwrap();
        let pool = EventFactory::new(1)
            .pool(2, 3, 4, &dir.path().join("scratch"))
            .unwrap();
        assert_eq!(pool.all().len(), 6);
        for prepared in pool.all() {
            assert_eq!(prepared.payloads.len(), 4);
            let framed: usize = prepared
                .payloads
                .iter()
                .map(|p| p.len() + FRAME_HEADER_LEN)
                .sum();
            assert_eq!(prepared.frames.len(), framed);
            let decoded = annals_engine::testing::decode_payload(&prepared.payloads[0]).unwrap();
            assert_eq!(decoded.content, prepared.commit.events[0].content);
        }
        assert!(std::ptr::eq(pool.get(1, 4), pool.get(1, 1)));
        assert!(pool.framed_bytes_per_event() > 300.0);
    }
}
