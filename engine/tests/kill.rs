//! A real process, killed with SIGKILL between a commit's log fsync and its index write (the
//! indexer is held, so every acknowledged commit is in the log and not in the index), and
//! killed at random moments of a commit loop: reopening loses nothing and duplicates nothing.
//!
//! The child is this same test binary, run with `ANNALS_KILL_CHILD` set: it commits and
//! prints one line per acknowledged commit; the parent kills it and checks the store.

#![allow(
    clippy::unwrap_used,
    reason = "test helpers fail loudly on the first unexpected error; `expect` would break as helpers move"
)]

mod common;

use std::{
    io::{BufRead, BufReader},
    process::{Command, Stdio},
    time::Duration,
};

use annals_engine::{testing::hold_indexer, uuid::Uuid, Durability, Engine, UncommittedEvent};
use common::*;

const CHILD_ENV: &str = "ANNALS_KILL_CHILD";
/// The child's `reindex-after-crash-max-events`.
const REINDEX_BOUND: u64 = 1000;
const ROOT: Uuid = Uuid::from_u128(0xa66);

/// The child's body: commits for aggregates, acknowledging each on stdout.
#[test]
fn kill_child() {
    let Ok(spec) = std::env::var(CHILD_ENV) else {
        return; // Only does something as the child of the tests below.
    };
    let (dir, mode) = spec.split_once(';').unwrap();
    let mut config = config(std::path::Path::new(dir));
    // Durable at the fsync: the point of the test is the gap between it and the index.
    config.log.durability = Durability::SyncData;
    config.index.reindex_after_crash_max_events = REINDEX_BOUND;
    let engine = Engine::open(config).unwrap();
    let tenant = engine.tenant_or_create(TENANT).unwrap();
    if mode == "hold" {
        hold_indexer(&engine);
    }
    if mode == "plain" {
        // Plain commits of 100 events: nothing to index but the recovery point.
        let events: Vec<UncommittedEvent> = (0..100)
            .map(|_| UncommittedEvent {
                event_source_id: "p".into(),
                content: "{}".into(),
                ..Default::default()
            })
            .collect();
        let commit = annals_engine::Commit {
            events,
            ..Default::default()
        };
        for i in 0u64.. {
            let receipt = tenant.commit(&commit).unwrap();
            println!("ACK p {} {i}", receipt.first.0);
        }
    }
    let sources = ["a", "b", "c"];
    for i in 0u64.. {
        let source = sources[(i % 3) as usize];
        let version = tenant.aggregate_version(ROOT, source).unwrap();
        let content = format!("{{\"i\":{i}}}");
        tenant
            .commit_for_aggregate(&aggregate_commit(
                ROOT,
                source,
                version,
                &[(1, &content), (2, &content)],
            ))
            .unwrap();
        println!("ACK {source} {version} {i}");
    }
}

/// An acknowledged commit: event source, version before it, and its number in the child.
type Ack = (String, u64, u64);

fn run_child(dir: &std::path::Path, mode: &str, acks_before_kill: usize) -> Vec<Ack> {
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "kill_child", "--nocapture", "--test-threads=1"])
        .env(CHILD_ENV, format!("{};{mode}", dir.display()))
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let lines = BufReader::new(stdout).lines();
    let mut acks = Vec::new();
    let mut killed = false;
    // Read until the kill point, kill, then read what the child printed before it died.
    for line in lines {
        let line = line.unwrap();
        // The harness's "test kill_child ... " has no newline: the first ACK follows it.
        if let Some(rest) = line.find("ACK ").map(|at| &line[at + 4..]) {
            let mut parts = rest.split(' ');
            let (Some(source), Some(version), Some(i)) = (parts.next(), parts.next(), parts.next())
            else {
                panic!("bad line {line:?}");
            };
            acks.push((
                source.to_owned(),
                version.parse().unwrap(),
                i.parse().unwrap(),
            ));
            if acks.len() == acks_before_kill && !killed {
                child.kill().unwrap(); // SIGKILL
                killed = true;
            }
        }
    }
    child.wait().unwrap();
    assert!(killed, "the child ended before {acks_before_kill} commits");
    acks
}

/// Every acknowledged commit is fetched exactly once, versions are gapless, and the next
/// commit at the fetched version succeeds.
fn check(dir: &std::path::Path, acks: &[Ack], children: u64) {
    let engine = open(dir);
    let tenant = engine.tenant(TENANT).unwrap();
    let recovery = tenant.index_recovery().clone();
    for source in ["a", "b", "c"] {
        let fetched = tenant.fetch_for_aggregate(ROOT, source, &[]).unwrap();
        let versions: Vec<u64> = fetched
            .events
            .iter()
            .map(|e| e.aggregate.unwrap().version)
            .collect();
        assert_eq!(
            versions,
            (0..fetched.current_version).collect::<Vec<_>>(),
            "{source}: {recovery:?}"
        );
        let acked = acks.iter().filter(|(s, _, _)| s == source).count() as u64;
        // Acknowledged commits are all there, plus at most one per child that was durable
        // but not yet printed when it died.
        assert!(
            (acked * 2..=acked * 2 + 2 * children).contains(&fetched.current_version),
            "{source}: {} events for {acked} acknowledged commits",
            fetched.current_version
        );
        for (_, v, i) in acks.iter().filter(|(s, _, _)| s == source) {
            let content = format!("{{\"i\":{i}}}");
            assert_eq!(fetched.events[*v as usize].content, content);
            assert_eq!(fetched.events[*v as usize + 1].content, content);
        }
        tenant
            .commit_for_aggregate(&aggregate_commit(
                ROOT,
                source,
                fetched.current_version,
                &[(1, "{}")],
            ))
            .unwrap();
    }
}

#[test]
fn killed_between_log_fsync_and_index_write() {
    let dir = tempfile::tempdir().unwrap();
    let acks = run_child(dir.path(), "hold", 30);
    assert!(acks.len() >= 30);
    {
        let engine = open(dir.path());
        let recovery = engine.tenant(TENANT).unwrap().index_recovery().clone();
        assert!(!recovery.rebuilt);
        assert!(
            recovery.to.0 >= 60 && recovery.from.0 < recovery.to.0,
            "re-indexed the tail: {recovery:?}"
        );
    }
    check(dir.path(), &acks, 1);
}

#[test]
fn killed_at_random_moments() {
    let dir = tempfile::tempdir().unwrap();
    let mut all = Vec::new();
    for round in 0..4 {
        let acks = run_child(dir.path(), "run", 5 + round * 17);
        // Rounds continue where the last left off; versions of later rounds are higher.
        all.extend(acks);
        std::thread::sleep(Duration::from_millis(5));
    }
    check(dir.path(), &all, 4);
}

/// A log of plain commits gives the index nothing to write but its recovery point, so its
/// memtable never fills and is never flushed on its own: killed after 30 000 events, the store
/// must still re-index only about `reindex-after-crash-max-events` of them, not the whole log.
#[test]
fn a_crash_re_indexes_a_bounded_tail() {
    let dir = tempfile::tempdir().unwrap();
    let acks = run_child(dir.path(), "plain", 300);
    let acked_end = acks.last().unwrap().1 + 100;
    let engine = open(dir.path());
    let tenant = engine.tenant(TENANT).unwrap();
    let recovery = tenant.index_recovery().clone();
    assert!(!recovery.rebuilt, "{recovery:?}");
    assert!(
        recovery.to.0 >= acked_end,
        "{recovery:?} short of {acked_end}"
    );
    // The bound, plus what one step and the indexer's lag at the kill can add.
    assert!(
        recovery.to.0 - recovery.from.0 < 10 * REINDEX_BOUND,
        "re-indexed {} of {} events: {recovery:?}",
        recovery.to.0 - recovery.from.0,
        recovery.to.0
    );
    assert_eq!(
        tenant.event_log().unwrap().next_sequence_number(),
        recovery.to
    );
}
