//! The leader's write: what one group does to a log's files.
//!
//! Only the group-commit leader runs this (`group_commit.rs`), holding the writer lock. It gives
//! the group's commits consecutive sequence numbers, frames them into one buffer and writes it
//! to the active segment with one write (and one `fdatasync` in sync-data mode, linked into one
//! submission on io_uring); only then does it publish the new end to readers, wake tail
//! subscribers and complete the commits. A commit never spans segments: when the next one
//! would overflow the active segment, the leader flushes what it has, rolls to a new segment
//! and hands the full one to the sealer. Commits are validated and encoded before they are
//! queued, on the appender's thread ([`Log::encode`]).
//!
//! Invariants (asserted where they cost nothing measurable):
//! - only the leader touches the writer state and the active file's tail;
//! - a group's buffer holds exactly the frames between the offset it is written at and the
//!   writer's `write_offset`, and each frame's `group_back` fits its 32 bits;
//! - a record is visible to readers only after it is durable (sync-data) or written
//!   (buffered), and never beyond the end of its commit; the visible end only grows;
//! - a segment is rolled only once everything written to it is published;
//! - every commit of a group is completed once: with its receipt after its bytes are published,
//!   or with an error;
//! - the first failed write or sync poisons the log; nothing is retried.

use std::sync::{atomic::Ordering, Arc};

use super::{group_commit::Pending, CommitReceipt, Log};
use crate::{
    config::Durability,
    error::{Error, Result},
    event::{encode_execution_context, encode_payload, Commit, EventRef, ExecutionContext},
    ids::{EventLogSequenceNumber, FileOffset, SegmentId},
    segment::{
        format::{encode_frame, FRAME_HEADER_LEN, SEQUENCE_NUMBER_MAX},
        recovery::{adopt_spare, create_raw_segment, zero_range},
        RawSegment, Segment, FIRST_FRAME,
    },
};

/// A commit (or a unit of commits, `Log::append_all`) validated and encoded on the appender's
/// thread, ready to be framed as one commit chain.
pub(super) struct EncodedCommit {
    /// Payloads back to back.
    payloads: Vec<u8>,
    /// Length of each payload.
    lens: Vec<u32>,
    /// Whether any event was applied by an aggregate.
    aggregate: bool,
}

impl EncodedCommit {
    /// Bytes the commit takes in the log: its frames, headers included.
    pub(super) fn framed_len(&self) -> usize {
        self.payloads.len() + self.lens.len() * FRAME_HEADER_LEN
    }
}

/// Encodes the commits of one unit back to back, checking the record and commit limits as
/// the unit grows (so a huge unit is refused before it is all encoded).
struct Encoder {
    payloads: Vec<u8>,
    lens: Vec<u32>,
    aggregate: bool,
    record_max: usize,
    commit_max: usize,
    /// The unit holds several commits (errors then say which).
    several: bool,
}

impl Encoder {
    fn new(log: &Log, events_count: usize, several: bool) -> Encoder {
        Encoder {
            payloads: Vec::with_capacity(events_count * 256),
            lens: Vec::with_capacity(events_count),
            aggregate: false,
            record_max: log.config.record_bytes_max.as_u64() as usize,
            commit_max: log.config.commit_bytes_max.as_u64() as usize,
            several,
        }
    }

    /// Encodes commit `c` of the unit.
    fn commit<'e>(
        &mut self,
        c: usize,
        occurred_ns: i64,
        execution_context: &ExecutionContext,
        events: impl Iterator<Item = EventRef<'e>>,
    ) -> Result<()> {
        // Encoded once per source commit and copied into each of its records.
        let ec_bytes = encode_execution_context(execution_context);
        for (i, event) in events.enumerate() {
            let start = self.payloads.len();
            encode_payload(
                &mut self.payloads,
                occurred_ns,
                execution_context,
                &ec_bytes,
                &event,
            );
            let len = self.payloads.len() - start;
            if len > self.record_max {
                let which = if self.several {
                    format!("event {i} of commit {c}")
                } else {
                    format!("event {i}")
                };
                return Err(Error::InvalidRequest(format!(
                    "{which} encodes to {len} bytes, above the record limit of {}",
                    self.record_max
                )));
            }
            self.lens.push(len as u32);
            self.aggregate |= event.aggregate.is_some();
        }
        let framed = self.payloads.len() + self.lens.len() * FRAME_HEADER_LEN;
        if framed > self.commit_max {
            return Err(Error::InvalidRequest(format!(
                "{} encodes to at least {framed} bytes, above the commit limit of {}",
                if self.several {
                    "the unit of commits"
                } else {
                    "commit"
                },
                self.commit_max
            )));
        }
        Ok(())
    }

    fn finish(self) -> EncodedCommit {
        EncodedCommit {
            payloads: self.payloads,
            lens: self.lens,
            aggregate: self.aggregate,
        }
    }
}

/// The leader's state; locked only by the leader (and by the sealer swapping segments).
pub(super) struct Writer {
    pub(super) active: Arc<RawSegment>,
    /// Where the next frame goes in the active segment.
    pub(super) write_offset: FileOffset,
    /// The active file is zero-filled (written, to be synced with the next group) up to here.
    pub(super) prealloc_end: FileOffset,
    /// Groups written to the active segment that were small enough for the leader to zero
    /// ahead for (at most `preallocate-bytes` / 16), and the others: a roll asks for spare
    /// segments when most were small.
    pub(super) small_groups: u64,
    pub(super) large_groups: u64,
    /// The sequence number the next frame gets.
    pub(super) next_seq: EventLogSequenceNumber,
    pub(super) last_sparse_offset: Option<FileOffset>,
    /// Frames of a commit with aggregate events are written and not yet published.
    pub(super) unpublished_aggregate: bool,
}

impl Log {
    /// Validates and encodes `commits` as one unit (no lock held): their events, in order,
    /// become one commit chain in the log, so they get consecutive sequence numbers and are
    /// durable (and survive a crash) all together or not at all. Each record carries its own
    /// commit's occurred time and execution context. `append` passes one commit.
    ///
    /// The record and commit byte limits apply to the unit as a whole; an empty unit or an
    /// empty commit in it is an invalid request.
    pub(super) fn encode(&self, commits: &[Commit]) -> Result<EncodedCommit> {
        if commits.is_empty() {
            return Err(Error::InvalidRequest(
                "an append needs at least one commit".into(),
            ));
        }
        if let Some(c) = commits.iter().position(|c| c.events.is_empty()) {
            return Err(Error::InvalidRequest(if commits.len() == 1 {
                "a commit needs at least one event".into()
            } else {
                format!("commit {c} of the unit has no event; a commit needs at least one")
            }));
        }
        let events_count: usize = commits.iter().map(|c| c.events.len()).sum();
        let mut encoder = Encoder::new(self, events_count, commits.len() > 1);
        for (c, commit) in commits.iter().enumerate() {
            encoder.commit(
                c,
                commit.occurred_ns,
                &commit.execution_context,
                commit.events.iter().map(EventRef::from),
            )?;
        }
        let encoded = encoder.finish();
        assert_eq!(encoded.lens.len(), events_count, "an event left unencoded");
        Ok(encoded)
    }

    /// Validates and encodes one commit of borrowed events, as [`Log::encode`] does an owned
    /// one.
    pub(super) fn encode_events(
        &self,
        occurred_ns: i64,
        execution_context: &ExecutionContext,
        events: &[EventRef<'_>],
    ) -> Result<EncodedCommit> {
        if events.is_empty() {
            return Err(Error::InvalidRequest(
                "a commit needs at least one event".into(),
            ));
        }
        let mut encoder = Encoder::new(self, events.len(), false);
        encoder.commit(0, occurred_ns, execution_context, events.iter().copied())?;
        Ok(encoder.finish())
    }

    /// Writes one group; sets every member's result. The publish hook (the engine's indexer
    /// wake-up) is called once the members are completed and the writer is unlocked: it is
    /// nobody's answer, so it waits behind them.
    pub(super) fn write_group(&self, group: &[Arc<Pending>]) {
        let mut w = self.writer.lock();
        let before = self.visible_next.load(Ordering::Relaxed);
        self.write_group_locked(&mut w, group);
        let after = self.visible_next.load(Ordering::Relaxed);
        drop(w);
        if let (Some(hook), true) = (&self.on_publish, after > before) {
            hook(self.tenant, self.scope, EventLogSequenceNumber(after));
        }
    }

    fn write_group_locked(&self, w: &mut Writer, group: &[Arc<Pending>]) {
        if let Some(cause) = self.poison.cause() {
            for p in group {
                p.complete(Err(self.poisoned(cause.clone())));
            }
            return;
        }
        let segment_max = self.config.segment_bytes_max.as_u64();
        let mut buf = Vec::with_capacity(group.iter().map(|p| p.commit.framed_len()).sum());
        let mut buf_start = w.write_offset;
        let mut receipts: Vec<(usize, CommitReceipt)> = Vec::with_capacity(group.len());
        let mut sparse = Vec::new();
        let mut flushed = 0usize; // members of `group` whose bytes are durable and published
        let mut refused = 0usize; // members refused before framing
        for (i, p) in group.iter().enumerate() {
            let framed = p.commit.framed_len() as u64;
            let count = p.commit.lens.len() as u64;
            if w.next_seq.0 + count > SEQUENCE_NUMBER_MAX {
                p.complete(Err(Error::InvalidRequest(format!(
                    "the log has reached its largest sequence number ({SEQUENCE_NUMBER_MAX})"
                ))));
                refused += 1;
                continue;
            }
            if (w.write_offset + framed).0 > segment_max && w.write_offset > FIRST_FRAME {
                if let Err(e) = self.flush(w, &buf, buf_start, &sparse) {
                    return self.fail_from(group, e);
                }
                self.finish(group, &mut flushed, &receipts);
                buf.clear();
                sparse.clear();
                if let Err(e) = self.roll(w) {
                    return self.fail_from(group, e);
                }
                buf_start = w.write_offset;
            }
            let first = w.next_seq;
            w.unpublished_aggregate |= p.commit.aggregate;
            let count = p.commit.lens.len();
            let mut at = 0usize;
            for (k, len) in p.commit.lens.iter().enumerate() {
                let offset = w.write_offset;
                let interval = self.config.sparse_index_interval_bytes.as_u64();
                if w.last_sparse_offset.is_none_or(|l| offset - l >= interval) {
                    sparse.push((w.next_seq, offset));
                    w.last_sparse_offset = Some(offset);
                }
                let payload = &p.commit.payloads[at..at + *len as usize];
                at += *len as usize;
                let before = buf.len();
                // Bounded by group-bytes-max + commit-bytes-max < 4 GiB (config.rs).
                let group_back = offset - buf_start;
                assert!(u32::try_from(group_back).is_ok(), "group_back overflows");
                encode_frame(
                    &mut buf,
                    w.active.id.base(),
                    offset.0,
                    w.next_seq,
                    (count - 1 - k) as u32,
                    group_back as u32,
                    payload,
                );
                w.write_offset += (buf.len() - before) as u64;
                w.next_seq = EventLogSequenceNumber(w.next_seq.0 + 1);
            }
            receipts.push((
                i,
                CommitReceipt {
                    first,
                    count: count as u64,
                },
            ));
        }
        if let Err(e) = self.flush(w, &buf, buf_start, &sparse) {
            return self.fail_from(group, e);
        }
        self.finish(group, &mut flushed, &receipts);
        assert_eq!(
            flushed + refused,
            group.len(),
            "a commit of the group left pending"
        );
    }

    /// Completes the members whose receipts are recorded and not yet completed.
    fn finish(
        &self,
        group: &[Arc<Pending>],
        flushed: &mut usize,
        receipts: &[(usize, CommitReceipt)],
    ) {
        for (i, receipt) in &receipts[*flushed..] {
            group[*i].complete(Ok(*receipt));
        }
        let newly = (receipts.len() - *flushed) as u64;
        self.stats.commits.fetch_add(newly, Ordering::Relaxed);
        *flushed = receipts.len();
    }

    /// Poisons the log and fails every member not yet completed.
    fn fail_from(&self, group: &[Arc<Pending>], e: Error) {
        let cause = e.to_string();
        self.poison.set(cause.clone());
        let mut first = Some(e);
        for p in group {
            p.fail_unless_complete(|| first.take().unwrap_or_else(|| self.poisoned(cause.clone())));
        }
    }

    /// Writes `buf` at `offset` of the active segment (and syncs), then publishes it.
    fn flush(
        &self,
        w: &mut Writer,
        buf: &[u8],
        offset: FileOffset,
        sparse: &[(EventLogSequenceNumber, FileOffset)],
    ) -> Result<()> {
        if buf.is_empty() {
            return Ok(());
        }
        let file = &w.active.file;
        let end = offset + buf.len() as u64;
        assert_eq!(
            end, w.write_offset,
            "a group's buffer ends where the writer is"
        );
        assert!(
            sparse.iter().all(|(_, o)| (offset..end).contains(o)),
            "a sparse-index entry outside the group's bytes"
        );
        let prealloc = self.config.preallocate_bytes.as_u64();
        let small = (buf.len() as u64) <= prealloc / 16;
        if small {
            w.small_groups += 1;
        } else {
            w.large_groups += 1;
        }
        if prealloc > 0 && end > w.prealloc_end && small {
            // Zero the next stretch now; the group's fdatasync below makes it durable together
            // with the data, so only one sync per `preallocate-bytes` journals a size change.
            // Only for small writes: their syncs are dominated by that journal commit, while
            // large writes amortise it and would pay double bandwidth for the zeros (measured:
            // 16 writers x 100 events ran at 445k events/s zeroing ahead, 847k without).
            let to = end + prealloc;
            zero_range(file.as_ref(), w.prealloc_end.max(end), to)
                .map_err(|e| Error::io("preallocate", &w.active.path, e))?;
            w.prealloc_end = to;
        }
        let result = match self.config.durability {
            Durability::SyncData => file
                .write_all_at_and_sync(buf, offset.0)
                .map_err(|e| Error::io("write+fdatasync", &w.active.path, e)),
            Durability::Buffered => file
                .write_all_at(buf, offset.0)
                .map_err(|e| Error::io("write", &w.active.path, e)),
        };
        if let Err(e) = result {
            // The bytes may be partly on disk; the writer state still says they are not. The
            // log is poisoned, and a reopen truncates whatever incomplete commit landed.
            w.write_offset = offset;
            return Err(e);
        }
        self.stats.groups.fetch_add(1, Ordering::Relaxed);
        if self.config.durability == Durability::SyncData {
            self.stats.data_syncs.fetch_add(1, Ordering::Relaxed);
        }
        w.active.publish(w.write_offset, w.next_seq, sparse);
        let visible = self.visible_next.load(Ordering::Relaxed);
        assert!(w.next_seq.0 > visible, "a flush of bytes without records");
        let events = w.next_seq.0 - visible;
        self.stats.events.fetch_add(events, Ordering::Relaxed);
        if std::mem::take(&mut w.unpublished_aggregate) {
            // Before the end moves (Release below): see `aggregate_end`.
            self.aggregate_end.store(w.next_seq.0, Ordering::Relaxed);
        }
        self.visible_next.store(w.next_seq.0, Ordering::Release);
        self.tail.notify(usize::MAX);
        Ok(())
    }

    /// Starts a new active segment at the writer's next sequence number.
    fn roll(&self, w: &mut Writer) -> Result<()> {
        assert!(
            w.active.visible_end() == w.write_offset && w.active.visible_next() == w.next_seq,
            "a segment rolled with frames not published"
        );
        if self.config.durability == Durability::Buffered {
            // A full segment is never left with unsynced bytes: recovery requires every
            // segment but the last to be whole.
            w.active
                .file
                .sync_data()
                .map_err(|e| Error::io("fdatasync", &w.active.path, e))?;
        }
        let id = SegmentId(w.next_seq);
        // Zeros pay where the leader zeroes inline: for small groups. Large ones amortise a
        // growing file's journal and would only pay the zeroer's writes (measured: 16 writers
        // x 100 events ran about 15% slower rolling into zeroed spares, 1 x 100 about 6%
        // faster). Any roll takes a ready spare, recycled ones included.
        let ask = w.small_groups > w.large_groups;
        w.small_groups = 0;
        w.large_groups = 0;
        // Before asking: a zeroer woken by the ask must already count the full segment, whose
        // file may become a spare once it is sealed.
        self.announce_seal();
        let spare = self
            .spares
            .as_ref()
            .and_then(|s| s.take(ask, self.tenant, id.base()));
        let started = match spare {
            Some(spare) => {
                let len = spare.len;
                let recycled = !spare.held.is_empty();
                adopt_spare(
                    self.io.as_ref(),
                    &self.dir,
                    self.tenant,
                    self.scope,
                    id,
                    spare,
                )
                .map(|raw| {
                    self.stats.spare_rolls.fetch_add(1, Ordering::Relaxed);
                    if recycled {
                        self.stats.recycled_rolls.fetch_add(1, Ordering::Relaxed);
                    }
                    (raw, FileOffset(len))
                })
            }
            None => create_raw_segment(self.io.as_ref(), &self.dir, self.tenant, self.scope, id)
                .map(|raw| (raw, FIRST_FRAME)),
        };
        let (raw, zeroed_to) = match started {
            Ok(started) => started,
            Err(e) => {
                // The full segment stays active, and is announced again by the next roll.
                self.announced_seal_done();
                return Err(e);
            }
        };
        self.segments.write().push(Segment::Raw(Arc::clone(&raw)));
        let full = std::mem::replace(&mut w.active, raw);
        w.write_offset = FIRST_FRAME;
        w.prealloc_end = zeroed_to.max(FIRST_FRAME);
        w.last_sparse_offset = None;
        self.stats.rolls.fetch_add(1, Ordering::Relaxed);
        self.queue_seal(full, true);
        Ok(())
    }
}
