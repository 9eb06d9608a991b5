//! Healing a poisoned log in place, without a reopen.
//!
//! A failed write or `fdatasync` poisons the log (`poison.rs`): the failed group's bytes may be
//! partly in the file, partly only in the page cache, or gone, and retrying the sync proves
//! nothing. In `sync-data` mode everything *published* before the failure was written and
//! synced by an earlier group whose sync succeeded, so it is on disk. Healing therefore starts
//! over from there:
//!
//! 1. a segment file a failed roll left behind (it holds no published record) is removed;
//! 2. the active segment is cut back to its published end, dropping the failed group's bytes
//!    whatever became of them (a restart's recovery might keep a failed commit that happened
//!    to land whole; a heal never does, since its writer was told it failed);
//! 3. in `buffered` mode, where published bytes were written but not synced, they are written
//!    again from the page cache: a failed sync may have dropped them from writeback, and the
//!    next sync would then not carry them (in `sync-data` mode every published byte was synced
//!    by a group whose sync succeeded);
//! 4. a probe writes zeros after the end, as preallocation does, and syncs the file: the cut
//!    becomes durable and the disk has shown that it takes writes again (a full disk still
//!    fails here, and the log stays poisoned; the probe is cut again);
//! 5. the segment is read back and must be whole commits exactly up to the published end;
//! 6. the writer resumes at the published end and the poison is cleared.
//!
//! A step that fails leaves the log poisoned, to be healed again later (the caller backs off).
//! Readers are never disturbed: they read below the published end, which does not move.
//!
//! Invariants: healing holds the writer lock, so no group is written meanwhile; it never moves
//! the published end; the writer state it leaves is the one a reopen would build for the same
//! bytes (the sparse index restarts at the next frame).

use std::sync::atomic::Ordering;

use super::Log;
use crate::{
    config::Durability,
    error::{Error, Result},
    ids::{EventLogSequenceNumber, SegmentId},
    io::IoFile,
    segment::{
        raw_name,
        recovery::{check_raw_end, zero_range},
        FIRST_FRAME,
    },
};

/// The smallest stretch of zeros the heal's probe writes after the end (more when the log
/// preallocates more).
const PROBE_BYTES: u64 = 64 << 10;

/// What [`Log::heal`] did to a poisoned log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Healed {
    /// The failure that had poisoned the log.
    pub cause: String,
    /// Events framed after the last acknowledged one by the failed write, and cut: their
    /// commits had been answered with the failure.
    pub dropped_events: u64,
    /// Where writes resume: the sequence number after the last acknowledged event.
    pub next: EventLogSequenceNumber,
}

impl Log {
    /// Heals the log if a failed write or sync poisoned it (module documentation): cuts it
    /// back to its last acknowledged commit, checks with a synced probe write that the disk
    /// takes writes again, re-reads it and clears the poison. `Ok(None)` when the log was not
    /// poisoned; an error (the log stays poisoned) when the disk still fails or what is on it
    /// is not the acknowledged log. Safe to call at any time, from any thread.
    pub fn heal(&self) -> Result<Option<Healed>> {
        let mut w = self.writer.lock();
        let Some(cause) = self.poison.cause() else {
            return Ok(None);
        };
        let active = std::sync::Arc::clone(&w.active);
        let end = active.visible_end();
        let next = active.visible_next();
        assert_eq!(
            next,
            self.next_sequence_number(),
            "the active segment does not hold the log's published end"
        );
        // 1. A segment a failed roll began (named by the next sequence number, never
        // published). The directory is synced even when the file is gone: an earlier heal may
        // have removed it and failed to sync.
        if active.id.base() != next {
            let stray = self.dir.join(raw_name(SegmentId(next)));
            if self.io.exists(&stray) {
                self.io
                    .remove_file(&stray)
                    .map_err(|e| Error::io("remove", &stray, e))?;
            }
            self.io
                .sync_dir(&self.dir)
                .map_err(|e| Error::io("fsync dir", &self.dir, e))?;
        }
        // 2-4. Cut, (rewrite,) probe, sync.
        let file = active.file.as_ref();
        let path = &active.path;
        file.set_len(end.0)
            .map_err(|e| Error::io("truncate", path, e))?;
        if self.config.durability == Durability::Buffered {
            // Published bytes were written, not synced: a failed sync may have dropped them
            // from writeback. Writing them again (from the page cache, which still holds
            // them) makes the probe's sync carry them to the disk.
            rewrite(file, path, end)?;
        }
        let probe_end = end + self.config.preallocate_bytes.as_u64().max(PROBE_BYTES);
        let probed = zero_range(file, end, probe_end).and_then(|()| file.sync_data());
        if let Err(e) = probed {
            // Give back what the probe took; the next heal cuts again anyway.
            let _ = file.set_len(end.0);
            return Err(Error::io("probe (write+fdatasync)", path, e));
        }
        // 5. What is on disk now is the acknowledged log, and nothing more.
        check_raw_end(file, path, active.id, &self.config, end, next)?;
        // 6. Resume.
        let dropped_events = w.next_seq.0 - next.0;
        w.write_offset = end;
        w.prealloc_end = probe_end;
        w.next_seq = next;
        w.last_sparse_offset = None;
        w.unpublished_aggregate = false;
        self.poison.clear();
        self.stats.heals.fetch_add(1, Ordering::Relaxed);
        assert!(
            w.write_offset >= FIRST_FRAME,
            "a heal put the writer inside the segment header"
        );
        Ok(Some(Healed {
            cause,
            dropped_events,
            next,
        }))
    }
}

/// Writes the record area of a raw segment up to `end` again, as it reads.
fn rewrite(file: &dyn IoFile, path: &std::path::Path, end: crate::ids::FileOffset) -> Result<()> {
    let mut buf = vec![0u8; 1 << 20];
    let mut at = FIRST_FRAME.0;
    while at < end.0 {
        let n = usize::try_from((end.0 - at).min(buf.len() as u64)).unwrap_or(buf.len());
        let got = file
            .read_at(&mut buf[..n], at)
            .map_err(|e| Error::io("read", path, e))?;
        if got == 0 {
            return Err(Error::Corruption {
                path: path.to_path_buf(),
                offset: at,
                what: format!("the segment ends before its published end {end}"),
            });
        }
        file.write_all_at(&buf[..got], at)
            .map_err(|e| Error::io("write", path, e))?;
        at += got as u64;
    }
    Ok(())
}
