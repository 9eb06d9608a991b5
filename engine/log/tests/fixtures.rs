//! Format fixtures: for every format version, a data directory written by it (sealed segments
//! and an active one, every record field in use) must open and read back exactly forever; a
//! deliberately corrupt copy must be refused with a precise error.
//!
//! The fixtures are checked in under tests/fixtures/v<version>/. Version 1's were written by
//! `cargo test -p annals-log --test fixtures_v1 -- --ignored write_fixtures` (this file's name
//! then), version 2's by `cargo test -p annals-log --test fixtures -- --ignored
//! write_v2_fixtures`: its active segment is in a recycled file, with an older segment's bytes
//! after its records. Version 3's (`write_v3_fixtures`) have sealed segments of compact
//! blocks. Never regenerate them for an existing version: a new format version gets a new
//! directory.

#![allow(
    clippy::unwrap_used,
    reason = "test helpers fail loudly on the first unexpected error; `expect` would break as helpers move"
)]

mod common;

use std::{
    fs,
    path::{Path, PathBuf},
    sync::Arc,
};

use annals_log::{
    testing::format::{SegmentHeader, HEADER_LEN},
    uuid::Uuid,
    AppliedByAggregate, Claim, Commit, Error, EventHorizonOrigin, EventType, ExecutionContext,
    LogConfig, LogStore, StdIo, UncommittedEvent, Version,
};
use common::*;

fn fixture_dir(version: u16, name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join(format!("tests/fixtures/v{version}"))
        .join(name)
}

fn config(dir: &Path) -> LogConfig {
    LogConfig {
        seal_enabled: true,
        ..small_config(dir)
    }
}

/// Non-ASCII content, written with escapes (sources stay ASCII).
const NOTE: &str = "\u{fc}n\u{ef}c\u{f8}d\u{e9} \u{2713}";

/// The fixture's commits: deterministic, every optional field used somewhere.
fn fixture_commits() -> Vec<Commit> {
    (0..40u64)
        .map(|t| Commit {
            occurred_ns: 1_750_000_000_000_000_000 + t.cast_signed() * 1_000_003,
            execution_context: ExecutionContext {
                microservice_id: Uuid::from_u128(0x1111),
                tenant_id: TENANT.0,
                version: Version {
                    major: 9,
                    minor: 9,
                    patch: 0,
                    build: t as i32,
                    pre_release: if t % 2 == 0 {
                        String::new()
                    } else {
                        "rc.1".into()
                    },
                },
                correlation_id: Uuid::from_u128(u128::from(t) + 1),
                claims: (0..t % 3)
                    .map(|c| Claim {
                        key: format!("k{c}"),
                        value: format!("v{t}"),
                        value_type: "string".into(),
                    })
                    .collect(),
                environment: "Production".into(),
                span_id: (t % 4 == 1).then_some([t as u8, 2, 3, 4, 5, 6, 7, 8]),
            },
            events: (0..=(t % 5))
                .map(|i| UncommittedEvent {
                    event_source_id: format!(
                        "{}",
                        Uuid::from_u128(u128::from(t % 7) << 64 | 0xfeed)
                    ),
                    event_type: EventType {
                        id: Uuid::from_u128(0xe0 + u128::from(i)),
                        generation: 1 + (i as u32 % 2),
                    },
                    public: i % 2 == 1,
                    content: format!(
                        r#"{{"order":{t},"line":{i},"sku":"SKU-{:05}","qty":{},"note":"{NOTE}"}}"#,
                        t * 31 + i,
                        i + 1
                    ),
                    aggregate: (t % 3 == 0).then_some(AppliedByAggregate {
                        root_id: Uuid::from_u128(0xa99),
                        version: t + i,
                    }),
                    event_horizon: (t % 5 == 4).then_some(EventHorizonOrigin {
                        external_sequence_number: 1000 + t,
                        received_ns: 1_750_000_000_500_000_000,
                        consent_id: Uuid::from_u128(0xc0),
                    }),
                })
                .collect(),
        })
        .collect()
}

/// The corrupt copy of `good`: one byte flipped in the first record of the active segment,
/// with valid records after it (not a torn tail).
fn write_corrupt_copy(good: &Path, corrupt: &Path) {
    copy_dir(good, corrupt);
    let active = active_segment(corrupt);
    let mut bytes = fs::read(&active).unwrap();
    assert!(
        bytes.len() > 400,
        "active segment should hold several records"
    );
    bytes[64 + 24 + 30] ^= 0x40;
    fs::write(&active, bytes).unwrap();
}

/// Writes the good fixture of `version` with this build (`spares`: wait for the recycled file
/// of the segment just sealed after every commit, so that each roll takes one); returns its
/// directory.
fn write_good_fixture(version: u16, spares: bool) -> PathBuf {
    let good = fixture_dir(version, "good");
    assert!(
        !good.exists(),
        "fixtures of a released version are never rewritten"
    );
    {
        let engine = LogStore::open_with_io(config(&good), Arc::new(StdIo)).unwrap();
        let log = engine.create_tenant(TENANT).unwrap().event_log().unwrap();
        for c in fixture_commits() {
            log.append(&c).unwrap();
            assert!(engine.wait_for_sealing().is_empty());
            if spares {
                engine.wait_for_spares();
            }
        }
    }
    fs::remove_file(good.join("LOCK")).unwrap();
    // Spares are deleted at open anyway: keep the fixture small.
    let _ = fs::remove_dir_all(good.join("spares"));
    good
}

#[test]
#[ignore = "wrote the checked-in fixtures of version 2; never run again"]
fn write_v2_fixtures() {
    let good = write_good_fixture(2, true);
    let active = fs::read(active_segment(&good)).unwrap();
    let header = SegmentHeader::decode(&active[..HEADER_LEN]).unwrap();
    assert!(header.recycled && header.format_version == 2, "{header:?}");
    write_corrupt_copy(&good, &fixture_dir(2, "corrupt-active-frame"));
}

#[test]
#[ignore = "wrote the checked-in fixtures of version 3; never run again"]
fn write_v3_fixtures() {
    let good = write_good_fixture(3, false);
    for sealed in sealed_segments(&good) {
        let header = SegmentHeader::decode(&fs::read(sealed).unwrap()[..HEADER_LEN]).unwrap();
        assert!(header.compact() && header.format_version == 3, "{header:?}");
    }
    write_corrupt_copy(&good, &fixture_dir(3, "corrupt-active-frame"));
}

/// The sealed segments of the fixture's log.
fn sealed_segments(dir: &Path) -> Vec<PathBuf> {
    fs::read_dir(log_dir(dir))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "sealed"))
        .collect()
}

fn fixture_opens_and_reads_back_exactly(version: u16) {
    let tmp = tempfile::tempdir().unwrap();
    copy_dir(&fixture_dir(version, "good"), tmp.path());
    let names: Vec<String> = fs::read_dir(log_dir(tmp.path()))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert!(
        names.iter().any(|n| n.ends_with(".sealed")),
        "fixture lacks sealed segments: {names:?}"
    );
    assert!(
        names
            .iter()
            .any(|n| Path::new(n).extension().is_some_and(|e| e == "log")),
        "fixture lacks an active segment: {names:?}"
    );
    for io in real_backends() {
        let engine = LogStore::open_with_io(config(tmp.path()), io).unwrap();
        let log = engine.tenant(TENANT).unwrap().event_log().unwrap();
        assert_eq!(log.recovery_report().truncated_bytes, 0);
        let events = read_all(&log);
        let commits = fixture_commits();
        let mut k = 0;
        for c in &commits {
            for (i, expected) in c.events.iter().enumerate() {
                let e = &events[k];
                assert_eq!(e.sequence_number.0, k as u64);
                assert_event_matches(e, c, i);
                assert_eq!(e.event_type, expected.event_type);
                assert_eq!(e.aggregate, expected.aggregate);
                assert_eq!(e.event_horizon, expected.event_horizon);
                k += 1;
            }
        }
        assert_eq!(k, events.len());
    }
}

fn corrupt_fixture_is_refused_with_file_and_offset(version: u16) {
    let tmp = tempfile::tempdir().unwrap();
    copy_dir(&fixture_dir(version, "corrupt-active-frame"), tmp.path());
    let engine = LogStore::open_with_io(config(tmp.path()), Arc::new(StdIo)).unwrap();
    let err = engine.tenant(TENANT).unwrap().event_log().unwrap_err();
    match &err {
        Error::ChecksumMismatch {
            path, offset, what, ..
        } => {
            assert!(path.extension().is_some_and(|e| e == "log"), "{err}");
            assert_eq!(*offset, 64);
            assert!(what.contains("record frame"), "{err}");
        }
        other => panic!("expected a checksum mismatch, got {other}"),
    }
}

/// A store of version 1 keeps working after an upgrade: appends roll and seal new segments
/// (of version 3) behind the version-1 ones, and the log reads back whole across both, before
/// and after a reopen. The version-1 sealed segments are left as they were.
#[test]
fn a_v1_store_seals_new_segments_in_version_3_and_reads_across_both() {
    let tmp = tempfile::tempdir().unwrap();
    copy_dir(&fixture_dir(1, "good"), tmp.path());
    let old_sealed: Vec<(PathBuf, Vec<u8>)> = sealed_segments(tmp.path())
        .into_iter()
        .map(|p| {
            let bytes = fs::read(&p).unwrap();
            (p, bytes)
        })
        .collect();
    let commits = fixture_commits();
    let fixture_events: usize = commits.iter().map(|c| c.events.len()).sum();
    {
        let engine = LogStore::open_with_io(config(tmp.path()), Arc::new(StdIo)).unwrap();
        let log = engine.tenant(TENANT).unwrap().event_log().unwrap();
        // The fixture's commits once more: enough to roll and seal at least two new segments.
        for c in &commits {
            log.append(c).unwrap();
        }
        assert!(engine.wait_for_sealing().is_empty());
    }
    let compact = sealed_segments(tmp.path())
        .into_iter()
        .filter(|p| {
            SegmentHeader::decode(&fs::read(p).unwrap()[..HEADER_LEN])
                .unwrap()
                .compact()
        })
        .count();
    assert!(compact >= 2, "{compact} sealed segments of version 3");
    for (path, bytes) in &old_sealed {
        assert_eq!(
            &fs::read(path).unwrap(),
            bytes,
            "{} changed",
            path.display()
        );
    }
    for io in real_backends() {
        let engine = LogStore::open_with_io(config(tmp.path()), io).unwrap();
        let log = engine.tenant(TENANT).unwrap().event_log().unwrap();
        let events = read_all(&log);
        assert_eq!(events.len(), 2 * fixture_events);
        let mut k = 0;
        for c in commits.iter().chain(&commits) {
            for i in 0..c.events.len() {
                assert_eq!(events[k].sequence_number.0, k as u64);
                assert_event_matches(&events[k], c, i);
                k += 1;
            }
        }
    }
}

#[test]
fn v1_fixture_opens_and_reads_back_exactly() {
    fixture_opens_and_reads_back_exactly(1);
}

#[test]
fn v1_corrupt_fixture_is_refused_with_file_and_offset() {
    corrupt_fixture_is_refused_with_file_and_offset(1);
}

#[test]
fn v2_fixture_opens_and_reads_back_exactly() {
    let active = fs::read(active_segment(&fixture_dir(2, "good"))).unwrap();
    let header = SegmentHeader::decode(&active[..HEADER_LEN]).unwrap();
    assert!(
        header.recycled,
        "the v2 fixture's active segment is recycled: {header:?}"
    );
    fixture_opens_and_reads_back_exactly(2);
}

#[test]
fn v2_corrupt_fixture_is_refused_with_file_and_offset() {
    corrupt_fixture_is_refused_with_file_and_offset(2);
}

#[test]
fn v3_fixture_opens_and_reads_back_exactly() {
    let sealed = sealed_segments(&fixture_dir(3, "good"));
    assert!(sealed.len() >= 3, "{sealed:?}");
    for path in sealed {
        let header = SegmentHeader::decode(&fs::read(&path).unwrap()[..HEADER_LEN]).unwrap();
        assert!(header.compact(), "{}: {header:?}", path.display());
    }
    fixture_opens_and_reads_back_exactly(3);
}

#[test]
fn v3_corrupt_fixture_is_refused_with_file_and_offset() {
    corrupt_fixture_is_refused_with_file_and_offset(3);
}
