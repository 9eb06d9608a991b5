//! Fuzz harnesses of the annals engine and of the runtime's request layer, as plain functions.
//!
//! Each `pub fn <target>(data: &[u8])` is one fuzz target: `fuzz_targets/<target>.rs` hands it
//! libFuzzer's input, and `tests/corpus.rs` runs it over every file of `corpus/<target>/` on
//! stable. A harness returns normally for any input the engine handles correctly (errors
//! included) and panics on a finding: an engine panic, or an assertion of the harness about an
//! invariant the engine promises.
//!
//! | target | input | checks |
//! | --- | --- | --- |
//! | [`segment_header`] | mode byte, header bytes | decode never panics; decoded => re-encodes to the same 64 bytes |
//! | [`record_frame`] | mode, base, offset, limit, frame bytes | parse never panics; parsed => re-encodes to the input prefix |
//! | [`record_payload`] | payload bytes | decode never panics; decoded => an independent encoder reproduces the input, and the indexer's decoder (`decode_index_fields`) gives the same fields; refused => the indexer's refuses too, unless only a string it steps over is not UTF-8 |
//! | [`seal_trailer`] | mode byte, trailer bytes | like the header |
//! | [`compact_block`] | mode, record count, raw span, block bytes or payloads | expanding a sealed block never panics or writes past the span; what expands re-encodes and expands to the same payloads; the sealer's encoder round-trips any payloads |
//! | [`open_log()`] | a log directory ([`mod@open_log`] module docs) | opening and reading never panic; an opened log reads gaplessly, accepts an append and reopens cleanly |
//! | [`ops()`] | an operation sequence ([`mod@ops`] module docs) | after every reopen and crash: acknowledged commits present, commits whole, sequence numbers gapless |
//! | [`requests()`] | a kind byte, a request message ([`mod@requests`] module docs) | conversion and validation never panic; refusals name a field; what is accepted round-trips to the wire and through the log's record format; 5.4 rewrites are stable |
//! | [`reverse_call()`] | a head's frames ([`mod@reverse_call`] module docs) | the reverse-call machine never panics or hangs, ends bad streams with INVALID_ARGUMENT, and leaves no request waiting |
//! | [`json_object()`] | an event's content | the quick JSON-object check never accepts what `serde_json` refuses; the commit's check gives `serde_json`'s verdict and reason |
//!
//! "Mode" bytes let the fuzzer ask the harness to recompute a checksum before decoding, so it
//! reaches the checks behind the checksum (reserved bytes, kinds, versions) instead of stopping
//! at the CRC every time. [`seeds`] writes the checked-in seed corpus.

#![deny(unsafe_code)]

mod decoders;
pub mod json_object;
pub mod open_log;
pub mod ops;
pub mod requests;
pub mod reverse_call;
pub mod seeds;

use std::path::PathBuf;

use annals_log::{
    uuid::Uuid, Commit, EventType, ExecutionContext, LogConfig, ScopeId, TenantId,
    UncommittedEvent, Version,
};
use bytesize::ByteSize;

pub use crate::{
    decoders::{compact_block, record_frame, record_payload, seal_trailer, segment_header},
    json_object::json_object,
    open_log::open_log,
    ops::ops,
    requests::requests,
    reverse_call::reverse_call,
};

/// Every harness's tenant.
pub const TENANT: TenantId = TenantId(Uuid::from_u128(0x7e5a_17c0_0000_4000_8000_00f0_22ed_0001));

/// The data directory every harness opens on its in-memory file system.
pub const DATA_DIR: &str = "/data";

/// The directory of [`TENANT`]'s event log below [`DATA_DIR`].
pub fn log_dir() -> PathBuf {
    PathBuf::from(DATA_DIR)
        .join("tenants")
        .join(TENANT.to_string())
        .join("logs")
        .join(ScopeId::DEFAULT.to_string())
}

/// Tiny segments and blocks, so short inputs roll and seal: 4 KiB segments, 1 KiB seal blocks
/// and records, 256 B sparse index interval (every bound at its minimum), and a 1 KiB zeroed
/// tail ahead of the active segment's data (the default 4 MiB would make every file of every
/// input megabytes long). No group-commit delay: the harnesses append from one thread, and
/// waiting would only slow them down. No spare segments: their background thread would make
/// the order of operations, and so the crash points, differ from run to run.
pub fn fuzz_config() -> LogConfig {
    LogConfig {
        group_commit_delay_max_us: 0,
        preallocate_bytes: ByteSize::kib(1),
        spare_segments: 0,
        segment_bytes_max: ByteSize::kib(4),
        record_bytes_max: ByteSize::kib(1),
        commit_bytes_max: ByteSize::kib(64),
        group_bytes_max: ByteSize::kib(4),
        seal_block_bytes: ByteSize::kib(1),
        sparse_index_interval_bytes: ByteSize::b(256),
        ..LogConfig::new(DATA_DIR)
    }
}

/// A commit of `events_count` events whose correlation id is `tag`, so events read back name
/// their commit; `pad_bytes` of padding per event (keep it below ~700 to stay under the 1 KiB
/// record limit of [`fuzz_config`]).
pub fn commit(tag: u64, events_count: usize, pad_bytes: usize) -> Commit {
    Commit {
        occurred_ns: 1_700_000_000_000_000_000 + tag.cast_signed(),
        execution_context: ExecutionContext {
            microservice_id: Uuid::from_u128(0xabc),
            tenant_id: TENANT.0,
            version: Version {
                major: 1,
                minor: 2,
                patch: 3,
                build: 4,
                pre_release: String::new(),
            },
            correlation_id: Uuid::from_u128(u128::from(tag)),
            claims: Vec::new(),
            environment: "Fuzz".into(),
            span_id: None,
        },
        events: (0..events_count)
            .map(|i| UncommittedEvent {
                event_source_id: format!("source-{}", (tag + i as u64) % 5),
                event_type: EventType {
                    id: Uuid::from_u128(7),
                    generation: 1,
                },
                public: i % 2 == 0,
                content: format!(
                    r#"{{"commit":{tag},"index":{i},"pad":"{}"}}"#,
                    "x".repeat(pad_bytes)
                ),
                aggregate: None,
                event_horizon: None,
            })
            .collect(),
    }
}

/// Reads a fuzz input front to back; past its end every read yields zeros, so any input
/// (including the empty one) decodes to something.
#[derive(Debug)]
pub struct Input<'a> {
    data: &'a [u8],
    at: usize,
}

impl<'a> Input<'a> {
    /// Starts at the beginning of `data`.
    pub fn new(data: &'a [u8]) -> Self {
        Self { data, at: 0 }
    }

    /// Whether every byte has been consumed.
    pub fn is_empty(&self) -> bool {
        self.at >= self.data.len()
    }

    /// Up to `n` bytes (fewer at the end).
    pub fn bytes(&mut self, n: usize) -> &'a [u8] {
        let start = self.at.min(self.data.len());
        let end = start.saturating_add(n).min(self.data.len());
        self.at = end;
        &self.data[start..end]
    }

    /// Everything not consumed yet.
    pub fn rest(&mut self) -> &'a [u8] {
        self.bytes(usize::MAX)
    }

    fn array<const N: usize>(&mut self) -> [u8; N] {
        let mut out = [0u8; N];
        let got = self.bytes(N);
        out[..got.len()].copy_from_slice(got);
        out
    }

    /// One byte.
    pub fn u8(&mut self) -> u8 {
        self.array::<1>()[0]
    }

    /// A little-endian `u16`.
    pub fn u16(&mut self) -> u16 {
        u16::from_le_bytes(self.array())
    }

    /// A little-endian `u32`.
    pub fn u32(&mut self) -> u32 {
        u32::from_le_bytes(self.array())
    }

    /// A little-endian `u64`.
    pub fn u64(&mut self) -> u64 {
        u64::from_le_bytes(self.array())
    }
}
