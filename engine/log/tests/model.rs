//! Model test: random sequences of appends, reads, waits for sealing and reopens, checked
//! against an in-memory `Vec` model, on every backend (std, io_uring, fault). Tiny segments
//! make the sequences roll and seal constantly, and roll into recycled files (format version 2)
//! that reopens then find. The seed is printed; rerun one with `ANNALS_TEST_SEED=<seed>`.

#![allow(
    clippy::unwrap_used,
    reason = "test helpers fail loudly on the first unexpected error; `expect` would break as helpers move"
)]

mod common;

use std::sync::{atomic::Ordering, Arc};

use annals_log::{testing::FaultIo, Commit, EventLogSequenceNumber, IoEngine, LogConfig, LogStore};
use common::*;
use rand::Rng;

fn run_model(io: &Arc<dyn IoEngine>, config: &LogConfig, seed: u64, ops: usize) {
    eprintln!("model: backend {} seed {seed}", io.name());
    let mut rng = rng(seed);
    let mut model: Vec<(Arc<Commit>, usize)> = Vec::new();
    let mut engine = Some(LogStore::open_with_io(config.clone(), Arc::clone(io)).unwrap());
    let mut tag = 0u64;
    let mut recycled_rolls = 0;
    for step in 0..ops {
        let e = engine.as_ref().unwrap();
        let log = test_log(e);
        match rng.gen_range(0..100) {
            0..=59 => {
                tag += 1;
                let n = rng.gen_range(1..=12);
                let c = Arc::new(commit(&mut rng, tag, n));
                let receipt = log.append(&c).unwrap();
                assert_eq!(
                    receipt.first.0,
                    model.len() as u64,
                    "seed {seed} step {step}"
                );
                assert_eq!(receipt.count, n as u64);
                model.extend((0..n).map(|i| (Arc::clone(&c), i)));
            }
            60..=84 => {
                let from = rng.gen_range(0..=model.len());
                let max = rng.gen_range(1..50);
                let batch = log
                    .read(EventLogSequenceNumber(from as u64), max, 1 << 20)
                    .unwrap();
                let expected = (model.len() - from).min(max);
                assert_eq!(batch.len(), expected, "seed {seed} step {step} from {from}");
                for (k, event) in batch.events().unwrap().iter().enumerate() {
                    assert_eq!(event.sequence_number.0, (from + k) as u64);
                    let (c, i) = &model[from + k];
                    assert_event_matches(event, c, *i);
                }
            }
            85..=89 => {
                assert!(
                    e.wait_for_sealing().is_empty(),
                    "seal failures, seed {seed}"
                );
            }
            90..=92 => {
                let beyond = log.read(EventLogSequenceNumber(model.len() as u64 + 1), 1, 1);
                assert!(beyond.is_err(), "reading beyond the end must fail");
            }
            _ => {
                recycled_rolls += log.stats().recycled_rolls.load(Ordering::Relaxed);
                drop(log);
                drop(engine.take());
                engine = Some(LogStore::open_with_io(config.clone(), Arc::clone(io)).unwrap());
                let log = engine
                    .as_ref()
                    .unwrap()
                    .tenant(TENANT)
                    .unwrap()
                    .event_log()
                    .unwrap();
                assert_eq!(
                    log.next_sequence_number().0,
                    model.len() as u64,
                    "seed {seed}"
                );
                assert_eq!(
                    log.recovery_report().truncated_bytes,
                    0,
                    "clean reopen truncated"
                );
            }
        }
    }
    let e = engine.as_ref().unwrap();
    assert!(e.wait_for_sealing().is_empty());
    let log = e.tenant(TENANT).unwrap().event_log().unwrap();
    let all = read_all(&log);
    assert_eq!(all.len(), model.len());
    for (k, event) in all.iter().enumerate() {
        assert_event_matches(event, &model[k].0, model[k].1);
    }
    assert!(
        log.segments().iter().any(|(_, sealed)| *sealed),
        "the model never sealed a segment"
    );
    recycled_rolls += log.stats().recycled_rolls.load(Ordering::Relaxed);
    assert!(
        recycled_rolls > 0,
        "the model never rolled into a recycled file"
    );
}

#[test]
fn model_on_real_backends() {
    let seed = seed_from_env(0x5eed_0001);
    for io in real_backends() {
        let dir = tempfile::tempdir().unwrap();
        run_model(&io, &small_config(dir.path()), seed, 400);
    }
}

#[test]
fn model_on_fault_backend_many_seeds() {
    let base = seed_from_env(0x5eed_1000);
    for k in 0..8 {
        let io: Arc<dyn IoEngine> = Arc::new(FaultIo::new());
        run_model(&io, &small_config("/data"), base + k, 300);
    }
}
