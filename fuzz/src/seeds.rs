//! The seed corpus: a handful of inputs per target, made with the engine's own encoders (a real
//! log written on `FaultIo`) plus damaged variants of them.
//!
//! `cargo run --manifest-path fuzz/Cargo.toml --example gen_corpus` rewrites the `seed-*` files
//! of `fuzz/corpus/<target>/` from [`seed_corpus`]; other files there (inputs promoted from
//! fuzzing runs) are kept. Everything here is deterministic, so regenerating changes nothing
//! unless the format or the engine's output changed.

use std::sync::Arc;

use annals_log::{
    testing::{
        compact::{raw_span, CompactEncoder},
        decode_payload,
        format::{
            encode_frame, SegmentHeader, SegmentKind, FORMAT_VERSION, HEADER_LEN, SAMPLE_TRAILER,
            TRAILER_LEN,
        },
        CrashMode, FaultIo,
    },
    uuid::Uuid,
    AppliedByAggregate, Claim, Commit, EventHorizonOrigin, EventLogSequenceNumber, LogConfig,
    LogStore, ScopeId,
};

use annals_contract::api::handshake as checks;
use annals_contract::proto::dolittle::artifacts::Artifact;
use annals_contract::proto::dolittle::runtime::handshake::HandshakeRequest;
use annals_contract::proto::dolittle::execution::ExecutionContext as WireExecutionContext;
use annals_contract::proto::dolittle::protobuf::Uuid as WireUuid;
use annals_contract::proto::dolittle::runtime::events::fetch_for_aggregate_in_batches_request::Request as BatchRequest;
use annals_contract::proto::dolittle::runtime::events::processing::event_handler_client_to_runtime_message::Message as FromHead;
use annals_contract::proto::dolittle::runtime::events::processing::{
    EventHandlerClientToRuntimeMessage, EventHandlerRegistrationRequest, EventHandlerResponse,
    InitiateDisconnect,
};
use annals_contract::proto::dolittle::runtime::events::uncommitted_aggregate_events::UncommittedAggregateEvent;
use annals_contract::proto::dolittle::runtime::events::{
    Aggregate, CommitAggregateEventsRequest, CommitEventsRequest,
    FetchEventsForAggregateInBatchesRequest, FetchForAggregateInBatchesRequest,
    FetchForAggregateRequest, UncommittedAggregateEvents, UncommittedEvent as WireEvent,
};
use annals_contract::proto::dolittle::services::{
    CallRequestContext, Pong, ReverseCallArgumentsContext,
    ReverseCallResponseContext,
};
use prost::Message;

use crate::{
    commit, fuzz_config, log_dir,
    open_log::{
        FileSpec, LogDirSpec, FLAG_NO_SEALING, MODE_SALVAGE, MODE_STRICT, NAME_RAW, NAME_SEALED,
        NAME_SEALING, NAME_STRAY, TAG_FIX_CHECKSUMS, TAG_HEADER, TAG_RECYCLED,
    },
    ops::{self, Op, Plan, FLAG_BACKGROUND_SEALING, FLAG_BUFFERED},
    TENANT,
};

/// One seed file: `corpus/<target>/seed-<name>`.
#[derive(Debug, Clone)]
pub struct Seed {
    /// The fuzz target.
    pub target: &'static str,
    /// The file name after `seed-`.
    pub name: &'static str,
    /// The input.
    pub bytes: Vec<u8>,
}

/// A commit using every optional field of the payload (claims, span id, pre-release,
/// aggregate, event horizon), so the payload seeds cover every flag.
fn rich_commit(tag: u64) -> Commit {
    let mut c = commit(tag, 3, 4);
    c.execution_context.version.pre_release = "rc.1".into();
    c.execution_context.claims = vec![
        Claim {
            key: "sub".into(),
            value: "fuzz".into(),
            value_type: "string".into(),
        },
        Claim {
            key: "r\u{f6}le".into(),
            value: "\u{e4}dmin".into(),
            value_type: String::new(),
        },
    ];
    c.execution_context.span_id = Some([1, 2, 3, 4, 5, 6, 7, 8]);
    c.events[0].aggregate = Some(AppliedByAggregate {
        root_id: Uuid::from_u128(11),
        version: 4,
    });
    c.events[1].event_horizon = Some(EventHorizonOrigin {
        external_sequence_number: 77,
        received_ns: 1_700_000_000_000_000_123,
        consent_id: Uuid::from_u128(12),
    });
    c.events[2].aggregate = Some(AppliedByAggregate {
        root_id: Uuid::from_u128(13),
        version: 0,
    });
    c.events[2].event_horizon = Some(EventHorizonOrigin::default());
    c
}

/// A log written by the engine: the files of its directory (name, content) and the payloads of
/// its records.
struct Reference {
    files: Vec<(String, Vec<u8>)>,
    payloads: Vec<Vec<u8>>,
}

impl Reference {
    fn file(&self, suffix: &str, nth: usize) -> &(String, Vec<u8>) {
        self.files
            .iter()
            .filter(|(name, _)| name.ends_with(suffix))
            .nth(nth)
            .unwrap_or_else(|| panic!("the reference log has no file {nth} ending in {suffix}"))
    }

    /// The base sequence number in a segment file's name.
    fn base(name: &str) -> u64 {
        name[..20]
            .parse()
            .expect("segment names start with 20 digits")
    }

    /// The files as `open_log` specs: with `synth_header`, the header is left to the harness.
    fn specs(&self, synth_header: bool) -> Vec<FileSpec> {
        self.files
            .iter()
            .map(|(name, content)| {
                let kind = if name.ends_with(".sealed") {
                    NAME_SEALED
                } else {
                    NAME_RAW
                };
                spec(name, kind, content, synth_header)
            })
            .collect()
    }
}

fn spec(name: &str, kind: u8, content: &[u8], synth_header: bool) -> FileSpec {
    let base = Reference::base(name);
    if synth_header {
        FileSpec {
            tag: kind | TAG_HEADER,
            base,
            content: content[HEADER_LEN..].to_vec(),
        }
    } else {
        FileSpec {
            tag: kind,
            base,
            content: content.to_vec(),
        }
    }
}

/// Writes a log of 16 commits (4 segments of 4 KiB) with the engine, sealing full
/// segments when `seal`.
fn reference(seal: bool) -> Reference {
    let fs = FaultIo::new();
    let config = LogConfig {
        seal_enabled: seal,
        ..fuzz_config()
    };
    let engine = LogStore::open_with_io(config, Arc::new(fs.clone())).expect("engine opens");
    let log = engine
        .tenant_or_create(TENANT)
        .and_then(|t| t.event_log())
        .expect("log opens");
    for tag in 1..=14u64 {
        let c = if tag == 5 {
            rich_commit(tag)
        } else {
            commit(tag, 1 + (tag as usize % 4), 150)
        };
        log.append(&c).expect("append");
        assert!(
            engine.wait_for_sealing().is_empty(),
            "sealing the reference log"
        );
    }
    // Two small commits more, so the active segment holds several write groups.
    for tag in 15..=16u64 {
        log.append(&commit(tag, 1, 10)).expect("append");
    }
    let batch = log
        .read(EventLogSequenceNumber::ZERO, 1000, 1 << 20)
        .expect("read");
    let payloads = batch.payloads().map(|(_, p)| p.to_vec()).collect();
    drop(log);
    drop(engine);
    let dir = log_dir();
    let files = fs
        .list_files()
        .into_iter()
        .filter(|p| p.parent() == Some(dir.as_path()))
        .map(|p| {
            let name = p
                .file_name()
                .expect("file name")
                .to_string_lossy()
                .into_owned();
            let content = fs.read_file(&p).expect("listed file");
            (name, content)
        })
        .collect();
    Reference { files, payloads }
}

/// A harness input: the mode byte, then each field's bytes in order.
fn input(mode: u8, fields: &[&[u8]]) -> Vec<u8> {
    let mut out = vec![mode];
    for field in fields {
        out.extend_from_slice(field);
    }
    out
}

fn with_mode(mode: u8, bytes: &[u8]) -> Vec<u8> {
    input(mode, &[bytes])
}

fn flip(mut bytes: Vec<u8>, at: usize, mask: u8) -> Vec<u8> {
    bytes[at] ^= mask;
    bytes
}

fn header_seeds(sealed: &Reference, seeds: &mut Vec<Seed>) {
    let mut push = |name, bytes| {
        seeds.push(Seed {
            target: "segment_header",
            name,
            bytes,
        });
    };
    let raw = &sealed.file(".log", 0).1;
    let sealed_file = &sealed.file(".sealed", 0).1;
    push("raw", with_mode(0, &raw[..HEADER_LEN]));
    push("sealed", with_mode(0, &sealed_file[..HEADER_LEN]));
    push("raw-with-frames", with_mode(0, &raw[..raw.len().min(200)]));
    let mut too_new = SegmentHeader::new(
        SegmentKind::Raw,
        TENANT,
        ScopeId::DEFAULT,
        EventLogSequenceNumber(4096),
    );
    too_new.min_compatible_version = FORMAT_VERSION + 1;
    too_new.format_version = FORMAT_VERSION + 1;
    push("too-new", with_mode(0, &too_new.encode()));
    let recycled =
        SegmentHeader::new_recycled(TENANT, ScopeId::DEFAULT, EventLogSequenceNumber(4096));
    push("recycled-raw", with_mode(0, &recycled.encode()));
    push(
        "unknown-kind-crc-fixed",
        with_mode(1, &flip(raw[..HEADER_LEN].to_vec(), 12, 0x02)),
    );
    push(
        "reserved-set-crc-fixed",
        with_mode(1, &flip(raw[..HEADER_LEN].to_vec(), 14, 0x01)),
    );
    push(
        "bit-flip",
        with_mode(0, &flip(raw[..HEADER_LEN].to_vec(), 20, 0x10)),
    );
    push("short", with_mode(0, &raw[..40]));
}

fn frame_input(mode: u8, base: u64, offset: u64, payload_max: u32, frame: &[u8]) -> Vec<u8> {
    input(
        mode,
        &[
            &base.to_le_bytes(),
            &offset.to_le_bytes(),
            &payload_max.to_le_bytes(),
            frame,
        ],
    )
}

fn frame_seeds(unsealed: &Reference, seeds: &mut Vec<Seed>) {
    let mut push = |name, bytes| {
        seeds.push(Seed {
            target: "record_frame",
            name,
            bytes,
        });
    };
    let (name, raw) = unsealed.file(".log", 1);
    let base = Reference::base(name);
    let frames = &raw[HEADER_LEN..];
    push(
        "from-segment",
        frame_input(0, base, HEADER_LEN as u64, 1024, frames),
    );
    let payload = &unsealed.payloads[0];
    let mut one = Vec::new();
    // The third frame of a commit, 600 bytes into its write group.
    let (seq, commit_rest, group_back) = (EventLogSequenceNumber(42), 3, 600);
    encode_frame(
        &mut one,
        EventLogSequenceNumber(40),
        1000,
        seq,
        commit_rest,
        group_back,
        payload,
    );
    push("commit-rest-3", frame_input(0, 40, 1000, 1024, &one));
    let mut empty = Vec::new();
    encode_frame(
        &mut empty,
        EventLogSequenceNumber(0),
        64,
        EventLogSequenceNumber(0),
        0,
        0,
        &[],
    );
    push("empty-payload", frame_input(0, 0, 64, 1024, &empty));
    push("payload-over-limit", frame_input(0, 40, 1000, 16, &one));
    push(
        "incomplete",
        frame_input(0, 40, 1000, 1024, &one[..one.len() - 5]),
    );
    push(
        "payload-bit-flip",
        frame_input(0, 40, 1000, 1024, &flip(one.clone(), 40, 0x04)),
    );
    push("wrong-offset", frame_input(0, 40, 1001, 1024, &one));
    // group_back 600 + 0x400 reaches before the start of the file.
    push(
        "group-before-file-crc-fixed",
        frame_input(1, 40, 1000, 1024, &flip(one, 21, 0x04)),
    );
}

fn payload_seeds(unsealed: &Reference, seeds: &mut Vec<Seed>) {
    let mut push = |name, bytes| {
        seeds.push(Seed {
            target: "record_payload",
            name,
            bytes,
        });
    };
    let plain = unsealed.payloads[0].clone();
    // The rich commit's three records (its correlation id is its tag, 5).
    let rich: Vec<Vec<u8>> = unsealed
        .payloads
        .iter()
        .filter(|p| {
            decode_payload(p).is_ok_and(|e| e.execution_context.correlation_id.as_u128() == 5)
        })
        .cloned()
        .collect();
    assert_eq!(rich.len(), 3, "the rich commit's records");
    push("plain", plain.clone());
    push("rich-aggregate", rich[0].clone());
    push("rich-event-horizon", rich[1].clone());
    push("rich-both", rich[2].clone());
    push("truncated", rich[2][..rich[2].len() - 3].to_vec());
    let mut trailing = plain.clone();
    trailing.push(0);
    push("trailing-byte", trailing);
    push("version-2", flip(plain.clone(), 0, 0x03));
    push("unknown-flag", flip(plain.clone(), 1, 0x40));
    let invalid_utf8 = plain.len() - 3; // inside the content string
    push("invalid-utf8", flip(plain, invalid_utf8, 0x80));
}

fn trailer_seeds(sealed: &Reference, seeds: &mut Vec<Seed>) {
    let mut push = |name, bytes| {
        seeds.push(Seed {
            target: "seal_trailer",
            name,
            bytes,
        });
    };
    let file = &sealed.file(".sealed", 0).1;
    let real = file[file.len() - TRAILER_LEN..].to_vec();
    push("from-segment", with_mode(0, &real));
    push("constructed", with_mode(0, &SAMPLE_TRAILER.encode()));
    push("bit-flip", with_mode(0, &flip(real.clone(), 3, 0x20)));
    push(
        "reserved-set-crc-fixed",
        with_mode(1, &flip(real.clone(), 13, 0x01)),
    );
    push("magic-damaged", with_mode(1, &flip(real.clone(), 50, 0x01)));
    push("short", with_mode(0, &real[..TRAILER_LEN - 1]));
}

/// `[mode][count: u16][span: u32][bytes]` for the `compact_block` harness.
fn compact_input(mode: u8, count: usize, span: u64, bytes: &[u8]) -> Vec<u8> {
    let count = u16::try_from(count).expect("few records").to_le_bytes();
    let span = u32::try_from(span).expect("a small span").to_le_bytes();
    input(mode, &[&count, &span, bytes])
}

fn compact_seeds(unsealed: &Reference, seeds: &mut Vec<Seed>) {
    use crate::decoders::{COMPACT_EXPAND, COMPACT_ROUND_TRIP};
    let mut push = |name, bytes| {
        seeds.push(Seed {
            target: "compact_block",
            name,
            bytes,
        });
    };
    // The first commits (shared and changing contexts) and the rich one (every optional field).
    let mut payloads: Vec<Vec<u8>> = unsealed.payloads[..6].to_vec();
    payloads.extend(
        unsealed
            .payloads
            .iter()
            .filter(|p| {
                decode_payload(p).is_ok_and(|e| e.execution_context.correlation_id.as_u128() == 5)
            })
            .cloned(),
    );
    let span = raw_span(&payloads);
    let block = CompactEncoder::block_of(&payloads);
    let n = payloads.len();
    push("block", compact_input(COMPACT_EXPAND, n, span, &block));
    push(
        "block-span-short",
        compact_input(COMPACT_EXPAND, n, span - 1, &block),
    );
    push(
        "block-count-short",
        compact_input(COMPACT_EXPAND, n - 1, span, &block),
    );
    push(
        "block-shared-first",
        compact_input(COMPACT_EXPAND, n, span, &flip(block.clone(), 0, 0x01)),
    );
    push(
        "block-truncated",
        compact_input(COMPACT_EXPAND, n, span, &block[..block.len() - 2]),
    );
    // An opaque entry (a payload no walk accepts) among whole ones.
    let mut odd = payloads[..2].to_vec();
    odd.insert(1, b"not a record".to_vec());
    push(
        "block-opaque",
        compact_input(
            COMPACT_EXPAND,
            odd.len(),
            raw_span(&odd),
            &CompactEncoder::block_of(&odd),
        ),
    );
    let mut listed = Vec::new();
    for p in payloads.iter().take(4).chain(&odd) {
        listed.extend_from_slice(
            &u16::try_from(p.len())
                .expect("a small payload")
                .to_le_bytes(),
        );
        listed.extend_from_slice(p);
    }
    push(
        "round-trip",
        compact_input(COMPACT_ROUND_TRIP, 0, 0, &listed),
    );
}

fn open_log_seeds(sealed: &Reference, unsealed: &Reference, seeds: &mut Vec<Seed>) {
    let mut push = |name, spec: LogDirSpec| {
        seeds.push(Seed {
            target: "open_log",
            name,
            bytes: spec.encode(),
        });
    };
    let dir = |flags, files| LogDirSpec { flags, files };
    push("sealed-and-active", dir(0, sealed.specs(false)));
    push(
        "sealed-and-active-synth-headers",
        dir(0, sealed.specs(true)),
    );
    push(
        "full-segments-awaiting-sealing",
        dir(0, unsealed.specs(true)),
    );
    push("no-sealer", dir(FLAG_NO_SEALING, unsealed.specs(true)));

    // The active segment cut inside its last frame: a torn tail.
    let mut torn = sealed.specs(true);
    let active = torn.last_mut().expect("an active segment");
    active.content.truncate(active.content.len() - 7);
    push("torn-tail", dir(0, torn.clone()));
    push("torn-tail-strict", dir(MODE_STRICT, torn));

    // Recycled files (format version 2): the frames of other segments after the last commit
    // of the active segment and of a full one awaiting sealing are their clean ends.
    let stale = unsealed.specs(true)[0].content.clone();
    let mut recycled = sealed.specs(true);
    let active = recycled.last_mut().expect("an active segment");
    active.tag |= TAG_RECYCLED;
    active.content.extend_from_slice(&stale);
    push("recycled-active", dir(0, recycled.clone()));
    push("recycled-active-strict", dir(MODE_STRICT, recycled));
    let mut recycled = unsealed.specs(true);
    let other = recycled.last().expect("an active segment").content.clone();
    recycled[0].tag |= TAG_RECYCLED;
    recycled[0].content.extend_from_slice(&other);
    push("recycled-awaiting-sealing", dir(0, recycled));

    // Damage in the first frame of the active segment, valid frames after it: corruption.
    let mut damaged = unsealed.specs(true);
    let active = damaged.last_mut().expect("an active segment");
    active.content[30] ^= 0x08;
    push("damage-before-valid-frames", dir(0, damaged.clone()));
    push(
        "damage-before-valid-frames-salvage",
        dir(MODE_SALVAGE, damaged.clone()),
    );
    // The same with checksums recomputed: the frames are valid, the record decodes or not.
    damaged.last_mut().expect("an active segment").tag |= TAG_FIX_CHECKSUMS;
    push("damage-crc-fixed", dir(0, damaged));

    // An interrupted seal (a half-written `.sealed.tmp` beside its raw segment), and an
    // interrupted clean-up (a complete `.sealed` beside its raw segment).
    let mut files = unsealed.specs(true);
    let (name, content) = sealed.file(".sealed", 0);
    files.push(spec(
        name,
        NAME_SEALING,
        &content[..content.len() / 2],
        false,
    ));
    push("interrupted-seal", dir(0, files));
    let mut files = unsealed.specs(true);
    files.push(spec(name, NAME_SEALED, content, true));
    push("sealed-beside-raw", dir(0, files));

    // An interrupted roll: the newest segment exists but its header never became durable.
    let mut files = sealed.specs(true);
    let active = files.last_mut().expect("an active segment");
    *active = FileSpec {
        tag: NAME_RAW,
        base: active.base,
        content: vec![0; 30],
    };
    push("interrupted-roll", dir(0, files));

    // A stray file, and a misfiled segment (a raw segment under another base's name).
    let mut files = sealed.specs(true);
    files.push(FileSpec {
        tag: NAME_STRAY,
        base: 0,
        content: b"stray".to_vec(),
    });
    push("stray-file", dir(0, files));
    let mut files = unsealed.specs(false);
    files[0].base += 1;
    push("misfiled", dir(0, files));

    // Sealed segments whose block index is edited with checksums recomputed: the first
    // block's uncompressed length and the trailer's next sequence number.
    let mut files = sealed.specs(true);
    let first = &mut files[0];
    first.tag |= TAG_FIX_CHECKSUMS;
    let trailer_at = first.content.len() - TRAILER_LEN;
    let index_offset = u64::from_le_bytes(
        first.content[trailer_at..trailer_at + 8]
            .try_into()
            .expect("8 bytes"),
    ) as usize
        - HEADER_LEN;
    first.content[index_offset + 28] ^= 0x01; // uncompressed_len of block 0
    push("sealed-index-edited-crc-fixed", dir(0, files));
    let mut files = sealed.specs(true);
    files[0].tag |= TAG_FIX_CHECKSUMS;
    let len = files[0].content.len();
    files[0].content[len - TRAILER_LEN + 24] ^= 0x01; // next_seq
    push("sealed-trailer-edited-crc-fixed", dir(0, files));
}

fn ops_seeds(seeds: &mut Vec<Seed>) {
    let mut push = |name, flags, ops: Vec<Op>| {
        seeds.push(Seed {
            target: "ops",
            name,
            bytes: Plan { flags, ops }.encode(),
        });
    };
    let append = |events, pad| Op::Append { events, pad };
    let read = |from, records_max| Op::Read { from, records_max };
    let mut roll_and_seal = vec![append(3, 100); 8];
    roll_and_seal.extend([
        read(0, 63),
        read(5, 3),
        Op::WaitForSealing,
        Op::Reopen,
        read(2, 20),
        append(7, 200),
        Op::Crash(CrashMode::TornPrefix(7)),
        read(0, 63),
    ]);
    push("roll-seal-reopen-crash", 0, roll_and_seal);
    push(
        "crash-torn",
        0,
        vec![
            append(1, 50),
            append(4, 120),
            append(2, 255),
            Op::Crash(CrashMode::Reordered(3)),
        ],
    );
    push(
        "disk-full-then-reopen",
        0,
        vec![
            append(2, 80),
            append(2, 80),
            Op::SpaceLeft(700),
            append(5, 150),
            append(1, 10),
            Op::Reopen,
            append(1, 10),
            read(0, 63),
        ],
    );
    push(
        "eio-then-crash",
        0,
        vec![
            append(6, 90),
            Op::FailAfterOps(0),
            append(2, 30),
            Op::Crash(CrashMode::TornPrefix(9)),
        ],
    );
    push(
        "buffered",
        FLAG_BUFFERED,
        vec![
            append(1, 20),
            append(2, 20),
            Op::Crash(CrashMode::Reordered(1)),
            append(1, 5),
            read(0, 10),
        ],
    );
    let mut raw_only = vec![append(4, 200); 10];
    raw_only.extend([
        read(0, 63),
        Op::Reopen,
        read(7, 40),
        Op::Crash(CrashMode::Reordered(5)),
    ]);
    push("no-sealing", ops::FLAG_NO_SEALING, raw_only.clone());
    push("preallocated", ops::FLAG_PREALLOCATE, raw_only.clone());
    push("spares", ops::FLAG_SPARES, raw_only);
    let mut background = vec![append(5, 180); 10];
    background.extend([read(0, 63), Op::Reopen, read(10, 5)]);
    push("background-sealing", FLAG_BACKGROUND_SEALING, background);
}

/// Every seed of every target.
pub fn seed_corpus() -> Vec<Seed> {
    let sealed = reference(true);
    let unsealed = reference(false);
    let mut seeds = Vec::new();
    header_seeds(&sealed, &mut seeds);
    frame_seeds(&unsealed, &mut seeds);
    payload_seeds(&unsealed, &mut seeds);
    trailer_seeds(&sealed, &mut seeds);
    compact_seeds(&unsealed, &mut seeds);
    open_log_seeds(&sealed, &unsealed, &mut seeds);
    ops_seeds(&mut seeds);
    request_seeds(&mut seeds);
    registration_seeds(&mut seeds);
    reverse_call_seeds(&mut seeds);
    json_object_seeds(&mut seeds);
    seeds
}

fn wire_id(n: u128) -> WireUuid {
    annals_contract::api::ids::to_wire(Uuid::from_u128(n))
}

/// A well-formed execution context on the wire, with claims and a span id.
fn wire_context() -> WireExecutionContext {
    let mut context = rich_commit(1).execution_context;
    context.microservice_id = Uuid::from_u128(3);
    context.environment = "Development".into();
    annals_contract::api::convert::execution_context_to_wire(&context)
}

fn call_context() -> CallRequestContext {
    CallRequestContext {
        head_id: Some(wire_id(0x4ead)),
        execution_context: Some(wire_context()),
    }
}

fn artifact(n: u128) -> Artifact {
    Artifact {
        id: Some(wire_id(n)),
        generation: 1,
    }
}

/// One request of each kind the `requests` target takes, well formed and broken.
fn request_seeds(seeds: &mut Vec<Seed>) {
    let mut push = |name: &'static str, kind: u8, message: Vec<u8>| {
        let mut bytes = vec![kind];
        bytes.extend(message);
        seeds.push(Seed {
            target: "requests",
            name,
            bytes,
        });
    };
    let event = |content: &str, source: &str| WireEvent {
        event_type: Some(artifact(7)),
        event_source_id: source.into(),
        public: true,
        content: content.into(),
    };
    push(
        "commit",
        0,
        CommitEventsRequest {
            call_context: Some(call_context()),
            events: vec![
                event(r#"{"a":1,"b":[true,null,"x"]}"#, "source"),
                event("{}", "f6e2d4c1-0b6a-4e0e-9a8e-7d1b2c3a4f5e"),
            ],
        }
        .encode_to_vec(),
    );
    push(
        "commit-not-an-object",
        0,
        CommitEventsRequest {
            call_context: Some(call_context()),
            events: vec![event("[1,2]", "source")],
        }
        .encode_to_vec(),
    );
    let mut no_context = call_context();
    no_context.execution_context = None;
    push(
        "commit-no-execution-context",
        0,
        CommitEventsRequest {
            call_context: Some(no_context),
            events: vec![event("{}", "source")],
        }
        .encode_to_vec(),
    );
    push(
        "commit-for-aggregate",
        1,
        CommitAggregateEventsRequest {
            call_context: Some(call_context()),
            events: Some(UncommittedAggregateEvents {
                aggregate_root_id: Some(wire_id(0xa66)),
                event_source_id: "account-1".into(),
                expected_aggregate_root_version: 2,
                events: vec![UncommittedAggregateEvent {
                    event_type: Some(artifact(8)),
                    public: false,
                    content: r#"{"amount":12.5}"#.into(),
                }],
            }),
        }
        .encode_to_vec(),
    );
    push(
        "commit-for-aggregate-at-the-largest-version",
        1,
        CommitAggregateEventsRequest {
            call_context: Some(call_context()),
            events: Some(UncommittedAggregateEvents {
                aggregate_root_id: Some(wire_id(0xa66)),
                event_source_id: "account-1".into(),
                expected_aggregate_root_version: u64::MAX,
                events: vec![
                    UncommittedAggregateEvent {
                        event_type: Some(artifact(8)),
                        public: false,
                        content: "{}".into(),
                    };
                    2
                ],
            }),
        }
        .encode_to_vec(),
    );
    push(
        "fetch-for-aggregate",
        2,
        FetchForAggregateRequest {
            call_context: Some(call_context()),
            aggregate: Some(Aggregate {
                aggregate_root_id: Some(wire_id(0xa66)),
                event_source_id: "account-1".into(),
            }),
        }
        .encode_to_vec(),
    );
    push(
        "event-handler-registration",
        3,
        EventHandlerRegistrationRequest {
            call_context: Some(ReverseCallArgumentsContext {
                head_id: Some(wire_id(0x4ead)),
                execution_context: Some(wire_context()),
                ping_interval: Some(prost_types::Duration {
                    seconds: 5,
                    nanos: 0,
                }),
            }),
            event_handler_id: Some(wire_id(0xe4)),
            event_types: vec![artifact(7), artifact(8)],
            partitioned: true,
            scope_id: Some(wire_id(0)),
            alias: Some("fuzz".into()),
            ..Default::default()
        }
        .encode_to_vec(),
    );
    push(
        "fetch-in-batches",
        4,
        FetchForAggregateInBatchesRequest {
            call_context: Some(call_context()),
            aggregate: Some(Aggregate {
                aggregate_root_id: Some(wire_id(0xa66)),
                event_source_id: "account-1".into(),
            }),
            request: Some(BatchRequest::FetchEvents(
                FetchEventsForAggregateInBatchesRequest {
                    event_types: vec![artifact(7), artifact(9)],
                },
            )),
        }
        .encode_to_vec(),
    );
    let handshake = |contracts: (i32, i32, i32)| HandshakeRequest {
        sdk_identifier: "JavaScript".into(),
        head_version: Some(checks::version(1, 0, 0, "")),
        sdk_version: Some(checks::version(24, 0, 0, "")),
        contracts_version: Some(checks::version(contracts.0, contracts.1, contracts.2, "")),
        attempt: 1,
        time_spent: Some(prost_types::Duration {
            seconds: 0,
            nanos: 1000,
        }),
        build_results: None,
    };
    push("handshake", 6, handshake((7, 8, 1)).encode_to_vec());
    push(
        "handshake-runtime-too-old",
        6,
        handshake((7, 9, 0)).encode_to_vec(),
    );
    let mut missing = handshake((7, 8, 1));
    missing.sdk_identifier = " ".into();
    push("handshake-missing-sdk", 6, missing.encode_to_vec());
    // A 5.4 commit: the event source a Uuid message, as 5.4 heads send it.
    let mut legacy = Vec::new();
    let uuid = |n: u128| {
        let mut m = Vec::new();
        m.push(0x0a); // field 1, bytes
        m.push(16);
        m.extend_from_slice(Uuid::from_u128(n).as_bytes());
        m
    };
    let mut event = Vec::new();
    event.push(0x0a); // eventSourceId = 1
    let source = uuid(0x5);
    event.push(source.len() as u8);
    event.extend(source);
    event.extend([0x22, 2, b'{', b'}']); // content = 4
    legacy.extend([0x12, event.len() as u8]);
    legacy.extend(event);
    let routes = annals_contract::legacy::routes().unwrap_or_else(|e| panic!("routes: {e}"));
    let commit_route = routes
        .all()
        .iter()
        .position(|(path, _)| path.ends_with("EventStore/Commit"))
        .unwrap_or(0);
    let pick = u8::try_from(commit_route * 2).unwrap_or(0);
    let mut with_pick = vec![pick];
    with_pick.extend(&legacy);
    push("legacy-commit", 5, with_pick.clone());
    with_pick[0] |= 1; // the same bytes as an answer toward a 5.4 head
    push("legacy-commit-answer", 5, with_pick);
}

/// The `requests` target's registrations, event-horizon requests and management requests
/// (kinds 7 to 11), well formed and broken.
fn registration_seeds(seeds: &mut Vec<Seed>) {
    use annals_contract::proto::dolittle::runtime::aggregates::management::GetEventsRequest;
    use annals_contract::proto::dolittle::runtime::eventhorizon::{
        ConsumerSubscriptionRequest, Subscription,
    };
    use annals_contract::proto::dolittle::runtime::events::processing::management::{
        ReplayProjectionRequest, ReprocessEventsFromTimestampRequest,
    };
    use annals_contract::proto::dolittle::runtime::events::processing::projection_event_selector::Selector;
    use annals_contract::proto::dolittle::runtime::events::processing::{
        EventOccurredKeySelector, EventPropertyKeySelector, EventSourceIdKeySelector,
        FilterRegistrationRequest, PartitionedFilterRegistrationRequest, ProjectionEventSelector,
        ProjectionRegistrationRequest, PublicFilterRegistrationRequest, StaticKeySelector,
    };

    let mut push = |name: &'static str, head: &[u8], message: Vec<u8>| {
        let mut bytes = head.to_vec();
        bytes.extend(message);
        seeds.push(Seed {
            target: "requests",
            name,
            bytes,
        });
    };
    let arguments = || {
        Some(ReverseCallArgumentsContext {
            head_id: Some(wire_id(0x4ead)),
            execution_context: Some(wire_context()),
            ping_interval: Some(prost_types::Duration {
                seconds: 5,
                nanos: 0,
            }),
        })
    };
    push(
        "filter-registration",
        &[7, 0],
        FilterRegistrationRequest {
            call_context: arguments(),
            filter_id: Some(wire_id(0xf1)),
            scope_id: Some(wire_id(0x5c)),
        }
        .encode_to_vec(),
    );
    push(
        "partitioned-filter-on-the-event-log",
        &[7, 1],
        PartitionedFilterRegistrationRequest {
            call_context: arguments(),
            filter_id: Some(wire_id(0)),
            scope_id: None,
        }
        .encode_to_vec(),
    );
    push(
        "public-filter-registration",
        &[7, 2],
        PublicFilterRegistrationRequest {
            call_context: arguments(),
            filter_id: Some(wire_id(0xf2)),
        }
        .encode_to_vec(),
    );
    let selector = |n: u128, selector: Selector| ProjectionEventSelector {
        event_type: Some(artifact(n)),
        selector: Some(selector),
    };
    let projection = |occurred: &str| ProjectionRegistrationRequest {
        call_context: arguments(),
        projection_id: Some(wire_id(0x9e)),
        scope_id: None,
        events: vec![
            selector(
                7,
                Selector::EventSourceKeySelector(EventSourceIdKeySelector {}),
            ),
            selector(
                8,
                Selector::EventPropertyKeySelector(EventPropertyKeySelector {
                    property_name: "id".into(),
                }),
            ),
            selector(
                9,
                Selector::StaticKeySelector(StaticKeySelector {
                    static_key: "all".into(),
                }),
            ),
            selector(
                10,
                Selector::EventOccurredKeySelector(EventOccurredKeySelector {
                    format: occurred.into(),
                }),
            ),
        ],
        initial_state: r#"{"count":0}"#.into(),
        copies: None,
        alias: Some("fuzz".into()),
    };
    push(
        "projection-registration",
        &[8],
        projection("yyyy-MM-dd HH:mm:ss.fff").encode_to_vec(),
    );
    push(
        "projection-bad-occurred-format",
        &[8],
        projection("yyyy-'MM").encode_to_vec(),
    );
    let subscription = Subscription {
        call_context: Some(call_context()),
        microservice_id: Some(wire_id(0x9d)),
        tenant_id: Some(wire_id(0x7e)),
        stream_id: Some(wire_id(0x5a)),
        partition_id: "partition".into(),
        scope_id: Some(wire_id(0x9d)),
    };
    push("subscription", &[9, 1], subscription.encode_to_vec());
    push(
        "subscription-from-another-microservice",
        &[9, 0],
        subscription.encode_to_vec(),
    );
    push("subscription-legacy", &[9, 2], subscription.encode_to_vec());
    #[expect(deprecated, reason = "the legacy partition is what Contracts 5 sends")]
    let consumer = ConsumerSubscriptionRequest {
        call_context: arguments(),
        tenant_id: Some(wire_id(0x7e)),
        stream_id: Some(wire_id(0x5a)),
        partition_id: None,
        partition_id_legacy: Some(wire_id(0x11)),
        stream_position: 42,
    };
    push("consumer-legacy-partition", &[10], consumer.encode_to_vec());
    push(
        "reprocess-from-timestamp",
        &[11, 1],
        ReprocessEventsFromTimestampRequest {
            scope_id: None,
            event_handler_id: Some(wire_id(0xe4)),
            tenant_id: Some(wire_id(0x7e)),
            stream_position: 1_700_000_000_000,
        }
        .encode_to_vec(),
    );
    push(
        "replay-projection-without-scope",
        &[11, 5],
        ReplayProjectionRequest {
            scope_id: None,
            projection_id: Some(wire_id(0x9e)),
            tenant_id: None,
        }
        .encode_to_vec(),
    );
    push(
        "aggregate-events",
        &[11, 8],
        GetEventsRequest {
            tenant_id: Some(wire_id(0x7e)),
            aggregate: Some(Aggregate {
                aggregate_root_id: Some(wire_id(0xa66)),
                event_source_id: "account-1".into(),
            }),
        }
        .encode_to_vec(),
    );
}

/// Head streams for the `reverse_call` target: a registration, then answers, pongs, a
/// disconnect; and broken ones.
fn reverse_call_seeds(seeds: &mut Vec<Seed>) {
    let frame = |message: &[u8]| {
        let mut f = vec![0u8];
        f.extend((message.len() as u16).to_le_bytes());
        f.extend_from_slice(message);
        f
    };
    let registration = EventHandlerClientToRuntimeMessage {
        message: Some(FromHead::RegistrationRequest(
            EventHandlerRegistrationRequest {
                call_context: Some(ReverseCallArgumentsContext {
                    head_id: Some(wire_id(0x4ead)),
                    execution_context: Some(wire_context()),
                    ping_interval: Some(prost_types::Duration {
                        seconds: 1,
                        nanos: 0,
                    }),
                }),
                event_handler_id: Some(wire_id(0xe4)),
                event_types: vec![artifact(7)],
                ..Default::default()
            },
        )),
    }
    .encode_to_vec();
    let answer = EventHandlerClientToRuntimeMessage {
        message: Some(FromHead::HandleResult(EventHandlerResponse {
            call_context: Some(ReverseCallResponseContext {
                call_id: Some(wire_id(0xca11)),
            }),
            failure: None,
        })),
    }
    .encode_to_vec();
    let pong = EventHandlerClientToRuntimeMessage {
        message: Some(FromHead::Pong(Pong {})),
    }
    .encode_to_vec();
    let disconnect = EventHandlerClientToRuntimeMessage {
        message: Some(FromHead::InitiateDisconnect(InitiateDisconnect {
            grace_period: Some(prost_types::Duration {
                seconds: 0,
                nanos: 1000,
            }),
        })),
    }
    .encode_to_vec();
    let mut push = |name: &'static str, flags: u8, messages: &[&[u8]]| {
        let mut bytes = vec![flags];
        for m in messages {
            bytes.extend(frame(m));
        }
        seeds.push(Seed {
            target: "reverse_call",
            name,
            bytes,
        });
    };
    push(
        "registered-answers-pongs",
        0b0110,
        &[&registration, &answer, &pong, &answer],
    );
    push("platform-checked", 0b0011, &[&registration, &pong]);
    push("disconnect", 0b0100, &[&registration, &disconnect, &answer]);
    push("garbage-first", 0, &[&[0xff, 0xff, 0xff]]);
    push(
        "garbage-later",
        0b0010,
        &[&registration, &pong, &[0x0a, 0x80]],
    );
    push("empty-later", 0b0010, &[&registration, &[]]);
    push(
        "second-registration",
        0b0010,
        &[&registration, &registration],
    );
    let mut cut = vec![0b0010];
    cut.extend(frame(&registration));
    cut.extend([0, 200, 0, 1, 2]); // a frame of 200 bytes, cut at 2
    seeds.push(Seed {
        target: "reverse_call",
        name: "cut-short",
        bytes: cut,
    });
}

/// Contents for the `json_object` target: objects the quick check accepts, and texts it
/// leaves to `serde_json` (accepted or refused there).
fn json_object_seeds(seeds: &mut Vec<Seed>) {
    for (name, text) in [
        ("empty", "{}"),
        (
            "order-line",
            r#"{"orderId":"5f0c9a57-3c1e-4c7e-9d43-1b2a3c4d5e6f","customerNo":1234567,"sku":"SKU-000042","quantity":3,"unitPrice":19.99,"amount":59.97,"currency":"NOK","placedAt":"2026-12-05T05:00:00.123Z"}"#,
        ),
        (
            "nested",
            r#" {"a": [1, -2.5e+3, {"b": null, "c": [true, false]}], "d": {}} "#,
        ),
        (
            "escapes",
            "{\"s\": \"\\\" \\\\ \\/ \\b \\f \\n \\r \\t \\u00e9 \u{e9} \u{65e5}\u{672c}\"}",
        ),
        ("surrogate-pair", r#"{"s": "\ud83d\ude00"}"#),
        ("lone-surrogate-key", r#"{"\udc00": 1}"#),
        ("trailing-comma", r#"{"a": 1,}"#),
        ("leading-zero", r#"{"a": 01}"#),
        ("control-character", "{\"a\": \"\u{1}\"}"),
        ("array", "[1, 2]"),
        ("two-objects", "{} {}"),
    ] {
        seeds.push(Seed {
            target: "json_object",
            name,
            bytes: text.as_bytes().to_vec(),
        });
    }
}
