//! A model test of the index: random commits (right and wrong expected versions, plain
//! commits), fetches, reopens, reopens with the indexer held back (the index behind the log),
//! a lost index and a damaged one, all checked against a plain in-memory model.

#![allow(
    clippy::unwrap_used,
    reason = "test helpers fail loudly on the first unexpected error; `expect` would break as helpers move"
)]

mod common;

use std::{collections::BTreeMap, os::unix::fs::FileExt};

use annals_engine::{testing::hold_indexer, uuid::Uuid, Commit, Engine, Error, UncommittedEvent};
use common::*;
use rand::{rngs::SmallRng, Rng, SeedableRng};

/// (root, event source) -> the contents and type numbers of its events, in version order.
type Model = BTreeMap<(u128, String), Vec<(u128, String)>>;

fn check_aggregate(engine: &Engine, model: &Model, key: &(u128, String), types: &[Uuid]) {
    let tenant = engine.tenant(TENANT).unwrap();
    let fetched = tenant
        .fetch_for_aggregate(Uuid::from_u128(key.0), &key.1, types)
        .unwrap();
    let expected = model.get(key).cloned().unwrap_or_default();
    assert_eq!(fetched.current_version, expected.len() as u64, "{key:?}");
    let wanted: Vec<(u64, u128, String)> = expected
        .iter()
        .enumerate()
        .filter(|(_, (t, _))| types.is_empty() || types.contains(&Uuid::from_u128(*t)))
        .map(|(v, (t, c))| (v as u64, *t, c.clone()))
        .collect();
    let got: Vec<(u64, u128, String)> = fetched
        .events
        .iter()
        .map(|e| {
            (
                e.aggregate.unwrap().version,
                e.event_type.id.as_u128(),
                e.content.clone(),
            )
        })
        .collect();
    assert_eq!(got, wanted, "{key:?} types {types:?}");
    let mut seqs: Vec<u64> = fetched.events.iter().map(|e| e.sequence_number.0).collect();
    let sorted = {
        let mut s = seqs.clone();
        s.sort_unstable();
        s.dedup();
        s
    };
    assert_eq!(seqs, sorted, "log order, no duplicates");
    seqs.clear();
}

fn check_all(engine: &Engine, model: &Model) {
    for key in model.keys() {
        check_aggregate(engine, model, key, &[]);
    }
}

fn run(seed: u64, steps: usize) {
    let dir = tempfile::tempdir().unwrap();
    let mut rng = SmallRng::seed_from_u64(seed);
    let mut engine = open(dir.path());
    engine.tenant_or_create(TENANT).unwrap();
    let mut model = Model::new();
    let mut plain = 0u64;
    let sources = ["a", "b", "c", "d", ""];
    for step in 0..steps {
        let key = (
            rng.gen_range(1..=2u128),
            sources[rng.gen_range(0..sources.len())].to_owned(),
        );
        let version = model.get(&key).map_or(0, Vec::len) as u64;
        let tenant = engine.tenant(TENANT).unwrap();
        match rng.gen_range(0..100) {
            0..=44 => {
                let events: Vec<(u128, String)> = (0..rng.gen_range(1..4))
                    .map(|i| {
                        (
                            rng.gen_range(1..=3u128),
                            format!("{{\"s\":{step},\"i\":{i}}}"),
                        )
                    })
                    .collect();
                let refs: Vec<(u128, &str)> =
                    events.iter().map(|(t, c)| (*t, c.as_str())).collect();
                tenant
                    .commit_for_aggregate(&aggregate_commit(
                        Uuid::from_u128(key.0),
                        &key.1,
                        version,
                        &refs,
                    ))
                    .unwrap();
                model.entry(key).or_default().extend(events);
            }
            45..=54 => {
                let wrong = if version > 0 && rng.gen_bool(0.5) {
                    version - 1
                } else {
                    version + 1
                };
                let end = tenant.event_log().unwrap().next_sequence_number();
                let err = tenant
                    .commit_for_aggregate(&aggregate_commit(
                        Uuid::from_u128(key.0),
                        &key.1,
                        wrong,
                        &[(1, "{}")],
                    ))
                    .unwrap_err();
                assert!(
                    matches!(err, Error::WrongExpectedVersion { expected, actual } if expected == wrong && actual == version),
                    "{err}"
                );
                assert_eq!(tenant.event_log().unwrap().next_sequence_number(), end);
            }
            55..=64 => {
                plain += 1;
                tenant
                    .commit(&Commit {
                        events: vec![UncommittedEvent {
                            event_source_id: key.1.clone(),
                            content: format!("{{\"plain\":{plain}}}"),
                            ..Default::default()
                        }],
                        ..Default::default()
                    })
                    .unwrap();
            }
            65..=79 => {
                let types: Vec<Uuid> = (1..=3u128)
                    .filter(|_| rng.gen_bool(0.3))
                    .map(Uuid::from_u128)
                    .collect();
                check_aggregate(&engine, &model, &key, &types);
            }
            80..=86 => {
                drop(tenant);
                drop(engine);
                engine = open(dir.path());
                let recovery = engine.tenant(TENANT).unwrap().index_recovery().clone();
                assert!(
                    !recovery.rebuilt,
                    "a clean reopen does not rebuild: {recovery:?}"
                );
            }
            87..=92 => {
                // The index falls behind the log, then the process goes away.
                hold_indexer(&engine);
                for v in version..version + 2 {
                    tenant
                        .commit_for_aggregate(&aggregate_commit(
                            Uuid::from_u128(key.0),
                            &key.1,
                            v,
                            &[(2, "{\"held\":1}")],
                        ))
                        .unwrap();
                    model
                        .entry(key.clone())
                        .or_default()
                        .push((2, "{\"held\":1}".into()));
                }
                drop(tenant);
                drop(engine);
                engine = open(dir.path());
                let recovery = engine.tenant(TENANT).unwrap().index_recovery().clone();
                assert!(!recovery.rebuilt);
                assert!(recovery.to > recovery.from, "{recovery:?}");
            }
            93..=96 => {
                drop(tenant);
                drop(engine);
                std::fs::remove_dir_all(dir.path().join("index")).unwrap();
                engine = open(dir.path());
                assert!(engine.index_open_report().created);
                let recovery = engine.tenant(TENANT).unwrap().index_recovery().clone();
                // An empty log has nothing to rebuild.
                assert!(
                    (recovery.rebuilt || recovery.to.0 == 0) && recovery.from.0 == 0,
                    "{recovery:?}"
                );
            }
            _ => {
                drop(tenant);
                drop(engine);
                damage_index(&dir.path().join("index"));
                engine = open(dir.path());
                assert!(engine.index_open_report().damaged_moved_to.is_some());
                let recovery = engine.tenant(TENANT).unwrap().index_recovery().clone();
                assert!(recovery.rebuilt || recovery.to.0 == 0, "{recovery:?}");
            }
        }
    }
    check_all(&engine, &model);
}

/// Overwrites the middle of every table and manifest file of the index with garbage.
fn damage_index(index: &std::path::Path) {
    let mut damaged = 0;
    for entry in std::fs::read_dir(index).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        let table = path.extension().is_some_and(|e| e == "sst");
        if name.starts_with("MANIFEST") || table {
            let len = std::fs::metadata(&path).unwrap().len();
            let garbage = vec![0xa5u8; (len as usize / 2).max(1)];
            std::fs::OpenOptions::new()
                .write(true)
                .open(&path)
                .unwrap()
                .write_all_at(&garbage, len / 4)
                .unwrap();
            damaged += 1;
        }
    }
    assert!(damaged > 0);
}

#[test]
fn index_model() {
    for seed in 0..6 {
        run(seed, 300);
    }
}

#[test]
#[ignore = "soak: cargo test --workspace --test index_model -- --ignored"]
fn index_model_soak() {
    for seed in 100..160 {
        run(seed, 1500);
    }
}
