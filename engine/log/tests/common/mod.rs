//! Shared helpers for the engine's integration tests: deterministic events, backends, and a
//! reopenable engine over the fault-injecting file system.
#![allow(dead_code)]

use std::sync::Arc;

use annals_log::{
    testing::FaultIo, uuid::Uuid, Commit, Event, EventType, ExecutionContext, IoEngine, LogConfig,
    LogStore, StdIo, TenantId, UncommittedEvent, UringIo, Version,
};
use bytesize::ByteSize;
use rand::{rngs::SmallRng, Rng, SeedableRng};

pub const TENANT: TenantId = TenantId(Uuid::from_u128(0x445f_8ea8_1a6f_40d7_b2fc_796d_ba92_dc44));

/// The real backends the suite runs against. io_uring must be there unless
/// ANNALS_ALLOW_NO_IO_URING=1 says this kernel forbids it.
pub fn real_backends() -> Vec<Arc<dyn IoEngine>> {
    let mut backends: Vec<Arc<dyn IoEngine>> = vec![Arc::new(StdIo)];
    match UringIo::new() {
        Ok(io) => backends.push(Arc::new(io)),
        Err(e) => {
            assert!(
                std::env::var("ANNALS_ALLOW_NO_IO_URING").is_ok_and(|v| v == "1"),
                "io_uring is unavailable ({e}); set ANNALS_ALLOW_NO_IO_URING=1 to run std only"
            );
        }
    }
    backends
}

/// A config with tiny segments and blocks so short tests roll and seal often.
pub fn small_config(dir: impl Into<std::path::PathBuf>) -> LogConfig {
    LogConfig {
        segment_bytes_max: ByteSize::kib(8),
        seal_block_bytes: ByteSize::kib(2),
        group_bytes_max: ByteSize::kib(16),
        sparse_index_interval_bytes: ByteSize::b(512),
        preallocate_bytes: ByteSize::kib(32),
        ..LogConfig::new(dir)
    }
}

/// A log on [`small_config`] in `dir` whose records take at most 1 KiB and commits 4 KiB, for
/// tests of the limits, opened with the plain I/O backend.
pub fn open_limited(dir: &std::path::Path) -> LogStore {
    let config = LogConfig {
        record_bytes_max: ByteSize::kib(1),
        commit_bytes_max: ByteSize::kib(4),
        ..small_config(dir)
    };
    LogStore::open_with_io(config, Arc::new(StdIo)).unwrap()
}

pub fn seed_from_env(default: u64) -> u64 {
    std::env::var("ANNALS_TEST_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(default)
}

/// A commit of `n` events with content that identifies it (`tag`).
pub fn commit(rng: &mut SmallRng, tag: u64, n: usize) -> Commit {
    Commit {
        occurred_ns: 1_700_000_000_000_000_000 + tag.cast_signed(),
        execution_context: ExecutionContext {
            microservice_id: Uuid::from_u128(0xabc),
            tenant_id: TENANT.0,
            version: Version {
                major: 1,
                minor: 2,
                patch: 3,
                build: 0,
                pre_release: String::new(),
            },
            correlation_id: Uuid::from_u128(u128::from(tag)),
            claims: Vec::new(),
            environment: "Test".into(),
            span_id: None,
        },
        events: (0..n)
            .map(|i| UncommittedEvent {
                event_source_id: format!("source-{}", rng.gen_range(0..20)),
                event_type: EventType {
                    id: Uuid::from_u128(7),
                    generation: 1,
                },
                public: i % 3 == 0,
                content: format!(
                    r#"{{"commit":{tag},"index":{i},"pad":"{}"}}"#,
                    "x".repeat(rng.gen_range(0..200))
                ),
                aggregate: None,
                event_horizon: None,
            })
            .collect(),
    }
}

/// The message of an `InvalidRequest`; any other outcome fails the test, saying `what`.
pub fn invalid_request<T: std::fmt::Debug>(result: annals_log::Result<T>, what: &str) -> String {
    match result {
        Err(annals_log::Error::InvalidRequest(m)) => m,
        other => panic!("{what}: expected InvalidRequest, got {other:?}"),
    }
}

/// Checks that `event` is event `index` of `commit`.
pub fn assert_event_matches(event: &Event, commit: &Commit, index: usize) {
    let expected = &commit.events[index];
    assert_eq!(
        event.content, expected.content,
        "content of {:?}",
        event.sequence_number
    );
    assert_eq!(event.event_source_id, expected.event_source_id);
    assert_eq!(event.occurred_ns, commit.occurred_ns);
    assert_eq!(event.execution_context, commit.execution_context);
    assert_eq!(event.public, expected.public);
}

/// The test tenant's event log, creating the tenant if needed.
pub fn test_log(engine: &LogStore) -> Arc<annals_log::Log> {
    engine
        .tenant_or_create(TENANT)
        .unwrap()
        .event_log()
        .unwrap()
}

/// Reads a whole log.
pub fn read_all(log: &annals_log::Log) -> Vec<Event> {
    let mut out = Vec::new();
    let mut from = annals_log::EventLogSequenceNumber(0);
    loop {
        let batch = log.read(from, 1000, 1 << 20).unwrap();
        if batch.is_empty() {
            break;
        }
        from = batch.next().unwrap();
        out.extend(batch.events().unwrap());
    }
    out
}

/// Opens an engine on the fault file system at "/data".
pub fn open_fault(fs: &FaultIo, config: &LogConfig) -> annals_log::Result<LogStore> {
    LogStore::open_with_io(config.clone(), Arc::new(fs.clone()))
}

pub fn rng(seed: u64) -> SmallRng {
    SmallRng::seed_from_u64(seed)
}

/// Runs a future to its end on this thread, parking between polls (the log's asynchronous
/// appends need no runtime: the committer thread wakes them).
pub fn block_on<F: std::future::Future>(future: F) -> F::Output {
    struct Unpark(std::thread::Thread);
    impl std::task::Wake for Unpark {
        fn wake(self: Arc<Self>) {
            self.0.unpark();
        }
    }
    let waker = std::task::Waker::from(Arc::new(Unpark(std::thread::current())));
    let mut cx = std::task::Context::from_waker(&waker);
    let mut future = std::pin::pin!(future);
    loop {
        if let std::task::Poll::Ready(output) = future.as_mut().poll(&mut cx) {
            return output;
        }
        std::thread::park();
    }
}

/// Unmounts a test's tmpfs when dropped.
pub struct Unmount(pub std::path::PathBuf);

impl Drop for Unmount {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount").arg(&self.0).status();
    }
}

/// A tmpfs of `size` (such as `256k`) mounted on a fresh directory, unmounted when the guard
/// drops; `None` when mounting is not possible and `ANNALS_ALLOW_NO_MOUNT=1` allows skipping
/// (the test then says it skipped), a failure otherwise (mounting needs root).
pub fn mount_tmpfs(size: &str, name: &str) -> Option<(tempfile::TempDir, Unmount)> {
    let mount = tempfile::tempdir().unwrap();
    let mounted = std::process::Command::new("mount")
        .args(["-t", "tmpfs", "-o", &format!("size={size}"), name])
        .arg(mount.path())
        .status();
    if !mounted.is_ok_and(|s| s.success()) {
        assert!(
            std::env::var("ANNALS_ALLOW_NO_MOUNT").is_ok_and(|v| v == "1"),
            "mounting a tmpfs failed (needs root); set ANNALS_ALLOW_NO_MOUNT=1 to skip"
        );
        eprintln!("skipped: no tmpfs mount");
        return None;
    }
    let guard = Unmount(mount.path().to_path_buf());
    Some((mount, guard))
}

/// Copies a data directory, as a crash would leave it when the tests wrote synced data only
/// (the lock file, which a running store holds, is left out).
pub fn copy_dir(from: &std::path::Path, to: &std::path::Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &target);
        } else if entry.file_name() != "LOCK" {
            std::fs::copy(entry.path(), &target).unwrap();
        }
    }
}

/// The test tenant's event log directory in the data directory `data`.
pub fn log_dir(data: &std::path::Path) -> std::path::PathBuf {
    data.join("tenants")
        .join(TENANT.to_string())
        .join("logs")
        .join(Uuid::nil().to_string())
}

/// The newest raw segment file (the active one) of the test tenant's event log in `data`.
pub fn active_segment(data: &std::path::Path) -> std::path::PathBuf {
    std::fs::read_dir(log_dir(data))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "log"))
        .max()
        .unwrap()
}

/// The files in `dir` whose names end in `ext`, sorted.
pub fn files(dir: &std::path::Path, ext: &str) -> Vec<std::path::PathBuf> {
    let mut v: Vec<std::path::PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.to_string_lossy().ends_with(ext))
        .collect();
    v.sort();
    v
}

/// Where the data of a (preallocated, zero-tailed) raw segment's bytes end.
pub fn data_end(bytes: &[u8]) -> usize {
    bytes.iter().rposition(|b| *b != 0).map_or(0, |i| i + 1)
}
