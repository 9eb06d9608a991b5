//! The `ops` target: operation sequences against a model, with I/O failures and crashes.
//!
//! Input: `[flags: u8]`, then up to [`OPS_MAX`] operations, each an opcode byte (taken modulo
//! 7) and its arguments, little-endian (see [`Op`]; a short input ends the list, missing
//! argument bytes read as zero). [`Plan::encode`] writes the format. Flags:
//! [`FLAG_BUFFERED`] acknowledges appends before `fdatasync` (`Durability::Buffered`);
//! [`FLAG_BACKGROUND_SEALING`] lets the sealer run concurrently (else the harness waits for
//! sealing after every append and open, which keeps I/O operation counts, and so fault
//! injection, deterministic); [`FLAG_NO_SEALING`] turns the sealer off (full segments stay
//! raw, and no seal's directory fsync makes other files' names durable by the way);
//! [`FLAG_PREALLOCATE`] keeps the 1 KiB zeroed tail of [`fuzz_config`] ahead of the active
//! segment's data (else none). Without it, data writes extend their file, which is what
//! `FaultIo`'s torn and reordered crash modes act on; with it, most data writes overwrite
//! durable zeros, which a `FaultIo` crash keeps or drops whole. [`FLAG_SPARES`] keeps one spare
//! segment: rolls then start in zeros or in the file of a sealed-away segment (a recycled
//! one, format version 2), and the harness waits for the zeroer wherever it waits for the
//! sealer.
//!
//! The engine runs on a `FaultIo` with tiny segments ([`fuzz_config`]), so a few appends roll
//! and seal. The model is the list of commits visible in the log, plus the commits whose
//! append failed since the last check ("maybe" commits: a failed write may or may not have
//! reached the disk). After every reopen and crash (and once more at the end, after a crash)
//! the log is read whole and checked:
//! - the engine and the log reopen (faults are healed first; a crash heals them too);
//! - sequence numbers run from 0 without gaps; every commit is whole and byte-identical;
//! - the commits are the visible ones in order, then some of the maybe ones, in order;
//! - nothing visible is lost, except, after a crash, a suffix not known to be durable. Known
//!   durable: in sync-data mode every acknowledged record (and everything before it); in
//!   buffered mode every segment but the active one (a roll syncs the full segment); in both,
//!   whatever a crash left. Not known durable: maybe commits that a clean reopen found and
//!   kept, which FORMAT.md 8.5 says v1 does not make durable (a failed `fdatasync` may leave
//!   them only in the page cache) until a later append syncs the file.
//!
//! Between checks, reads must return exactly the model's records, appends must get the
//! model's next sequence number, and without an armed fault appends and seals must succeed.

use std::{collections::HashMap, fmt, sync::Arc};

use annals_log::{
    testing::{CrashMode, FaultIo},
    Commit, Durability, Event, EventLogSequenceNumber, Log, LogConfig, LogStore, RecoveryMode,
};

use bytesize::ByteSize;

use crate::{commit, fuzz_config, Input, TENANT};

/// Flag: `Durability::Buffered`.
pub const FLAG_BUFFERED: u8 = 1;
/// Flag: sealing runs in the background instead of in step.
pub const FLAG_BACKGROUND_SEALING: u8 = 2;
/// Flag: no sealing at all.
pub const FLAG_NO_SEALING: u8 = 4;
/// Flag: preallocate the active segment's tail.
pub const FLAG_PREALLOCATE: u8 = 8;
/// Flag: one spare segment (zeros or a recycled file).
pub const FLAG_SPARES: u8 = 16;

/// At most this many operations per input.
pub const OPS_MAX: usize = 64;

/// One operation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    /// Opcode 0, `[events: u8][pad: u8]`: append a commit of `1 + events % 8` events with
    /// `2 * pad` bytes of padding each.
    Append {
        /// Selects the number of events.
        events: u8,
        /// Half the padding per event.
        pad: u8,
    },
    /// Opcode 1, `[from: u16][records_max: u8]`: read from `from % (events + 1)`, at most
    /// `1 + records_max % 64` records, and compare with the model.
    Read {
        /// Selects the first sequence number.
        from: u16,
        /// Selects the record limit.
        records_max: u8,
    },
    /// Opcode 2: heal the file system, close and reopen the engine (a process restart).
    Reopen,
    /// Opcode 3: wait until queued seals have run.
    WaitForSealing,
    /// Opcode 4, `[mode: u8][seed: u32]`: power cut, then reopen. Durable bytes and names
    /// survive; of each file's unsynced tail, by `mode % 3`: nothing, a seed-chosen prefix
    /// (torn write), or all but a seed-chosen hole of zeros (pages written back out of order).
    Crash(CrashMode),
    /// Opcode 5, `[n: u8]`: every mutating I/O operation from the `n`-th on fails (EIO).
    FailAfterOps(u8),
    /// Opcode 6, `[bytes: u16]`: writes fail with ENOSPC after `bytes` more bytes (the write
    /// that crosses the limit lands partly).
    SpaceLeft(u16),
}

/// A decoded input.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plan {
    /// [`FLAG_BUFFERED`], [`FLAG_BACKGROUND_SEALING`], [`FLAG_NO_SEALING`],
    /// [`FLAG_PREALLOCATE`], [`FLAG_SPARES`].
    pub flags: u8,
    /// The operations.
    pub ops: Vec<Op>,
}

impl Plan {
    /// Reads the input format of the module docs.
    pub fn decode(data: &[u8]) -> Self {
        let mut input = Input::new(data);
        let flags = input.u8();
        let mut ops = Vec::new();
        while !input.is_empty() && ops.len() < OPS_MAX {
            let op = match input.u8() % 7 {
                0 => Op::Append {
                    events: input.u8(),
                    pad: input.u8(),
                },
                1 => Op::Read {
                    from: input.u16(),
                    records_max: input.u8(),
                },
                2 => Op::Reopen,
                3 => Op::WaitForSealing,
                4 => {
                    let mode = input.u8() % 3;
                    let seed = u64::from(input.u32());
                    Op::Crash(match mode {
                        0 => CrashMode::DropUnsynced,
                        1 => CrashMode::TornPrefix(seed),
                        _ => CrashMode::Reordered(seed),
                    })
                }
                5 => Op::FailAfterOps(input.u8()),
                _ => Op::SpaceLeft(input.u16()),
            };
            ops.push(op);
        }
        Self { flags, ops }
    }

    /// Writes the input format (for seeds).
    pub fn encode(&self) -> Vec<u8> {
        let mut out = vec![self.flags];
        for op in &self.ops {
            match *op {
                Op::Append { events, pad } => out.extend_from_slice(&[0, events, pad]),
                Op::Read { from, records_max } => {
                    out.push(1);
                    out.extend_from_slice(&from.to_le_bytes());
                    out.push(records_max);
                }
                Op::Reopen => out.push(2),
                Op::WaitForSealing => out.push(3),
                Op::Crash(mode) => {
                    let (mode, seed) = match mode {
                        CrashMode::DropUnsynced => (0, 0),
                        CrashMode::TornPrefix(seed) => (1, seed),
                        CrashMode::Reordered(seed) => (2, seed),
                    };
                    out.extend_from_slice(&[4, mode]);
                    out.extend_from_slice(&(seed as u32).to_le_bytes());
                }
                Op::FailAfterOps(n) => out.extend_from_slice(&[5, n]),
                Op::SpaceLeft(bytes) => {
                    out.push(6);
                    out.extend_from_slice(&bytes.to_le_bytes());
                }
            }
        }
        out
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Reopen {
    Clean,
    Crash,
}

impl fmt::Display for Reopen {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Reopen::Clean => "clean reopen",
            Reopen::Crash => "crash",
        })
    }
}

/// A visible commit: its tag and its first sequence number.
#[derive(Debug, Clone, Copy)]
struct Visible {
    tag: u64,
    first: u64,
    count: u64,
}

struct Harness {
    config: LogConfig,
    background_sealing: bool,
    fs: FaultIo,
    engine: Option<LogStore>,
    log: Option<Arc<Log>>,
    /// Every commit attempted, by tag (its correlation id).
    commits: HashMap<u64, Commit>,
    next_tag: u64,
    /// The commits readers see now, in log order.
    visible: Vec<Visible>,
    /// Records readers see now.
    visible_events: u64,
    /// Tags of commits whose append failed since the last check, in order.
    maybe: Vec<u64>,
    /// The records known durable: a prefix of the visible ones (module docs).
    durable_events: u64,
    /// A fault was armed since the last open.
    faults_armed: bool,
    /// Where we are, for messages.
    context: String,
}

impl Harness {
    fn new(flags: u8) -> Self {
        let durability = if flags & FLAG_BUFFERED != 0 {
            Durability::Buffered
        } else {
            Durability::SyncData
        };
        Self {
            config: LogConfig {
                durability,
                seal_enabled: flags & FLAG_NO_SEALING == 0,
                preallocate_bytes: if flags & FLAG_PREALLOCATE == 0 {
                    ByteSize::b(0)
                } else {
                    fuzz_config().preallocate_bytes
                },
                spare_segments: u32::from(flags & FLAG_SPARES != 0),
                ..fuzz_config()
            },
            background_sealing: flags & FLAG_BACKGROUND_SEALING != 0,
            fs: FaultIo::new(),
            engine: None,
            log: None,
            commits: HashMap::new(),
            next_tag: 1,
            visible: Vec::new(),
            visible_events: 0,
            maybe: Vec::new(),
            durable_events: 0,
            faults_armed: false,
            context: "initial open".to_owned(),
        }
    }

    fn buffered(&self) -> bool {
        self.config.durability == Durability::Buffered
    }

    fn engine(&self) -> &LogStore {
        self.engine
            .as_ref()
            .expect("the engine is open between operations")
    }

    fn log(&self) -> &Log {
        self.log
            .as_ref()
            .expect("the log is open between operations")
    }

    /// Opens engine and log on the current file system with `config`.
    fn try_open(&self, config: &LogConfig) -> annals_log::Result<(LogStore, Arc<Log>)> {
        let engine = LogStore::open_with_io(config.clone(), Arc::new(self.fs.clone()))?;
        let log = engine
            .tenant_or_create(TENANT)
            .and_then(|t| t.event_log())?;
        Ok((engine, log))
    }

    fn opened(&mut self, (engine, log): (LogStore, Arc<Log>)) {
        self.engine = Some(engine);
        self.log = Some(log);
        self.faults_armed = false;
        self.settle_sealing();
    }

    /// Opens engine and log on the current file system; both must open.
    fn open(&mut self) {
        let opened = self
            .try_open(&self.config)
            .unwrap_or_else(|e| panic!("{}: opening failed: {e}", self.context));
        self.opened(opened);
    }

    /// Opens after a power cut. Sync-data logs must open as they are. A buffered log may have
    /// lost unsynced pages out of order, which the default recovery mode refuses as damage
    /// (FORMAT.md 8.6); then it must open in salvage mode, as its documentation tells the
    /// operator to do.
    fn open_after_crash(&mut self) {
        match self.try_open(&self.config) {
            Ok(opened) => self.opened(opened),
            Err(e) if self.buffered() && e.is_corruption() => {
                let salvage = LogConfig {
                    recovery_mode: RecoveryMode::Salvage,
                    ..self.config.clone()
                };
                let opened = self.try_open(&salvage).unwrap_or_else(|e2| {
                    panic!(
                        "{}: opening failed ({e}), and in salvage mode too: {e2}",
                        self.context
                    )
                });
                self.opened(opened);
            }
            Err(e) => panic!("{}: opening after the crash failed: {e}", self.context),
        }
    }

    /// Closes the engine (the sealer finishes its current seal first).
    fn close(&mut self) {
        self.log = None;
        self.engine = None;
    }

    fn settle_sealing(&self) {
        if !self.background_sealing {
            self.wait_for_sealing();
            self.engine().wait_for_spares();
        }
    }

    fn wait_for_sealing(&self) {
        let failures = self.engine().wait_for_sealing();
        assert!(
            self.faults_armed || failures.is_empty(),
            "{}: sealing failed without an injected fault: {failures:?}",
            self.context
        );
    }

    fn run(&mut self, op: Op) {
        match op {
            Op::Append { events, pad } => self.append(1 + usize::from(events % 8), pad),
            Op::Read { from, records_max } => {
                let from = u64::from(from) % (self.visible_events + 1);
                self.read(from, 1 + usize::from(records_max % 64));
            }
            Op::Reopen => {
                self.close();
                self.fs.heal();
                self.open();
                self.check(Reopen::Clean);
            }
            Op::WaitForSealing => self.wait_for_sealing(),
            Op::Crash(mode) => {
                // The image is taken while the engine still runs (a background seal may be
                // mid-way), as a power cut would.
                let crashed = self.fs.crash_with(mode);
                self.close();
                self.fs = crashed;
                self.open_after_crash();
                self.check(Reopen::Crash);
            }
            Op::FailAfterOps(n) => {
                self.fs.fail_after_ops(u64::from(n));
                self.faults_armed = true;
            }
            Op::SpaceLeft(bytes) => {
                self.fs.set_space_left(u64::from(bytes));
                self.faults_armed = true;
            }
        }
    }

    fn append(&mut self, events_count: usize, pad: u8) {
        let tag = self.next_tag;
        self.next_tag += 1;
        let c = commit(tag, events_count, 2 * usize::from(pad));
        let result = self.log().append(&c);
        self.commits.insert(tag, c);
        match result {
            Ok(receipt) => {
                assert_eq!(
                    (receipt.first.0, receipt.count),
                    (self.visible_events, events_count as u64),
                    "{}: receipt of commit {tag}",
                    self.context
                );
                let count = events_count as u64;
                self.visible.push(Visible {
                    tag,
                    first: self.visible_events,
                    count,
                });
                self.visible_events += count;
                if self.buffered() {
                    // A roll syncs the full segment: only the active segment can lose
                    // acknowledged records in a power cut (FORMAT.md 8.6).
                    let active_base = self.log().segments().last().map_or(0, |(base, _)| base.0);
                    self.durable_events = self.durable_events.max(active_base);
                } else {
                    // The append's fdatasync made its file durable, and every file before it
                    // was durable whole when the log rolled past it.
                    self.durable_events = self.visible_events;
                }
            }
            Err(e) => {
                assert!(
                    self.faults_armed,
                    "{}: append failed without an injected fault: {e}",
                    self.context
                );
                self.maybe.push(tag);
            }
        }
        self.settle_sealing();
    }

    /// The visible commit holding record `seq`.
    fn commit_at(&self, seq: u64) -> (&Commit, usize) {
        let i = self.visible.partition_point(|v| v.first <= seq) - 1;
        let v = self.visible[i];
        (&self.commits[&v.tag], (seq - v.first) as usize)
    }

    fn read(&self, from: u64, records_max: usize) {
        let ctx = &self.context;
        let batch = self
            .log()
            .read(EventLogSequenceNumber(from), records_max, 1 << 20)
            .unwrap_or_else(|e| panic!("{ctx}: read at {from} failed: {e}"));
        let expected = (self.visible_events - from).min(records_max as u64);
        assert_eq!(
            batch.len() as u64,
            expected,
            "{ctx}: records read at {from}"
        );
        let events = batch
            .events()
            .unwrap_or_else(|e| panic!("{ctx}: decoding a read: {e}"));
        for (k, event) in events.iter().enumerate() {
            let seq = from + k as u64;
            assert_eq!(
                event.sequence_number.0, seq,
                "{ctx}: read at {from}, record {k}"
            );
            let (c, index) = self.commit_at(seq);
            assert_event_is(event, c, index, ctx);
        }
    }

    /// Reads the whole log and checks it against the model (module docs); then makes what
    /// was found the model.
    fn check(&mut self, how: Reopen) {
        let ctx = format!("{} ({how})", self.context);
        let log = Arc::clone(self.log.as_ref().expect("open after a reopen"));
        let events = read_all(&log, &ctx);
        let mut found: Vec<Visible> = Vec::new();
        let mut k = 0usize;
        let mut next_visible = 0usize; // index into self.visible
        let mut next_maybe = 0usize; // index into self.maybe
        while k < events.len() {
            let e = &events[k];
            let tag = u64::try_from(e.execution_context.correlation_id.as_u128())
                .ok()
                .filter(|t| self.commits.contains_key(t))
                .unwrap_or_else(|| panic!("{ctx}: record {k} belongs to no commit made"));
            let c = &self.commits[&tag];
            assert!(
                k + c.events.len() <= events.len(),
                "{ctx}: commit {tag} torn: {} of its {} records present",
                events.len() - k,
                c.events.len()
            );
            for (i, event) in events[k..k + c.events.len()].iter().enumerate() {
                assert_event_is(event, c, i, &ctx);
            }
            if self.visible.get(next_visible).is_some_and(|v| v.tag == tag) {
                next_visible += 1;
            } else {
                // Not the next visible commit: it must be a later maybe commit, and nothing
                // visible may be missing before it.
                assert!(
                    next_visible == self.visible.len(),
                    "{ctx}: commit {tag} at record {k}, where visible commit {} should be",
                    self.visible[next_visible].tag
                );
                let at = self.maybe[next_maybe..]
                    .iter()
                    .position(|m| *m == tag)
                    .unwrap_or_else(|| {
                        panic!("{ctx}: commit {tag} at record {k} is repeated or out of order")
                    });
                next_maybe += at + 1;
            }
            found.push(Visible {
                tag,
                first: k as u64,
                count: c.events.len() as u64,
            });
            k += c.events.len();
        }
        if let Some(lost) = self.visible.get(next_visible) {
            let may_lose = how == Reopen::Crash && lost.first >= self.durable_events;
            assert!(
                may_lose,
                "{ctx}: commit {} (records {}..{}) was visible and is lost; {} records remain, \
                 {} were known durable",
                lost.tag,
                lost.first,
                lost.first + lost.count,
                events.len(),
                self.durable_events,
            );
        }
        self.visible = found;
        self.visible_events = events.len() as u64;
        self.maybe.clear();
        if how == Reopen::Crash {
            // Whatever survives a crash is on disk.
            self.durable_events = self.visible_events;
        }
        self.durable_events = self.durable_events.min(self.visible_events);
    }
}

fn read_all(log: &Log, ctx: &str) -> Vec<Event> {
    let end = log.next_sequence_number().0;
    let mut events = Vec::new();
    while (events.len() as u64) < end {
        let from = events.len() as u64;
        let batch = log
            .read(EventLogSequenceNumber(from), 1000, 1 << 20)
            .unwrap_or_else(|e| panic!("{ctx}: reading at {from} failed: {e}"));
        assert!(
            !batch.is_empty(),
            "{ctx}: read at {from} returned nothing, end is {end}"
        );
        let read = batch
            .events()
            .unwrap_or_else(|e| panic!("{ctx}: decoding at {from}: {e}"));
        for (k, e) in read.iter().enumerate() {
            assert_eq!(
                e.sequence_number.0,
                from + k as u64,
                "{ctx}: gap in sequence numbers"
            );
        }
        events.extend(read);
    }
    events
}

fn assert_event_is(event: &Event, c: &Commit, index: usize, ctx: &str) {
    let seq = event.sequence_number;
    let expected = &c.events[index];
    // Each field checked apart, so a failure names it.
    macro_rules! same {
        ($found:expr, $wanted:expr, $what:literal) => {
            assert_eq!(
                $found, $wanted,
                concat!("{}: ", $what, " of {:?}"),
                ctx, seq
            )
        };
    }
    same!(event.content, expected.content, "content");
    same!(event.event_source_id, expected.event_source_id, "source");
    same!(event.public, expected.public, "public flag");
    same!(event.occurred_ns, c.occurred_ns, "occurred");
    same!(event.execution_context, c.execution_context, "context");
}

/// The harness; see the module docs.
pub fn ops(data: &[u8]) {
    let plan = Plan::decode(data);
    let mut h = Harness::new(plan.flags);
    h.open();
    for (step, op) in plan.ops.iter().enumerate() {
        h.context = format!("step {step} {op:?} (flags {:#04x})", plan.flags);
        h.run(*op);
    }
    h.context = format!(
        "final crash after {} steps (flags {:#04x})",
        plan.ops.len(),
        plan.flags
    );
    h.run(Op::Crash(CrashMode::DropUnsynced));
}
