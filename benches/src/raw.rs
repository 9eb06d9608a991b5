//! The raw baseline: the physical limit of group commit on this disk, as a tiny program.
//!
//! Appends go to a pre-allocated file whose blocks were all written with zeros and
//! `fdatasync`'d once, so later writes overwrite allocated blocks and never change the file's
//! size: an `fdatasync` then flushes data only, with no metadata to journal. Writers hand
//! pre-encoded records (annals' own frames, byte for byte) to a leader/follower group commit:
//! whoever finds no leader becomes it, takes everything waiting, issues one `pwrite` and one
//! `fdatasync`, and acknowledges the whole group. When the file is full, writing wraps to its
//! start (the data is never read back; only its cost matters).
//!
//! The catch-up read walks a separate file of back-to-back frames with large `pread`s,
//! touching each record's length and last byte: what reading a log costs before any checksum
//! or decoding.
//!
//! Bounds: the queue holds whatever the writers have handed in since the last group; with a
//! closed loop that is at most one commit per writer.

use std::{
    fs::{File, OpenOptions},
    os::unix::fs::FileExt,
    path::{Path, PathBuf},
    sync::atomic::{AtomicU64, Ordering},
    time::Instant,
};

use annals_engine::testing::format::FRAME_HEADER_LEN;
use anyhow::{bail, ensure, Context, Result};
use hdrhistogram::Histogram;
use parking_lot::{Condvar, Mutex};

use crate::{
    data::{CommitPool, PreparedCommit},
    driver::{run_appends, AppendOutcome, Window},
};

/// Bytes per zero-filling write and per catch-up read.
const CHUNK_BYTES: usize = 4 << 20;

/// How the raw baseline's append file is laid out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RawLayout {
    /// This many bytes, all written with zeros and synced before use; writes wrap at the end.
    Preallocated(u64),
    /// Empty; every write extends the file (never wraps).
    Extending,
}

/// A pre-allocated file with a leader/follower group commit.
#[derive(Debug)]
pub struct RawLog {
    path: PathBuf,
    file: File,
    capacity_bytes: u64,
    queue: Mutex<Queue>,
    /// Signalled when a group is durable (results are ready and leadership is free).
    group_done: Condvar,
    data_syncs: AtomicU64,
}

#[derive(Debug, Default)]
struct Queue {
    /// Records handed in and not yet taken by a leader, back to back.
    waiting: Vec<u8>,
    /// A cleared buffer to swap in for `waiting` (keeps its capacity between groups).
    spare: Vec<u8>,
    /// Tickets handed out: commit `n` of the file has ticket `n`.
    issued: u64,
    /// Every ticket up to this one is durable.
    durable: u64,
    leader: bool,
    write_offset: u64,
    failure: Option<String>,
}

impl RawLog {
    /// Creates the file at `path`. `Preallocated(capacity)`: sized `capacity` bytes, every
    /// block written with zeros and synced, writes wrap at the end. `Extending`: empty, every
    /// write extends it (a diagnostic: what the file-size and block-allocation metadata cost
    /// each `fdatasync`).
    pub fn create(path: &Path, layout: RawLayout) -> Result<Self> {
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .open(path)
            .with_context(|| format!("create {}", path.display()))?;
        let capacity_bytes = match layout {
            RawLayout::Extending => u64::MAX,
            RawLayout::Preallocated(capacity_bytes) => {
                file.set_len(capacity_bytes)
                    .with_context(|| format!("size {}", path.display()))?;
                let zeros = vec![0u8; CHUNK_BYTES];
                let mut offset = 0u64;
                while offset < capacity_bytes {
                    let len = (capacity_bytes - offset).min(CHUNK_BYTES as u64) as usize;
                    file.write_all_at(&zeros[..len], offset)
                        .with_context(|| format!("zero-fill {}", path.display()))?;
                    offset += len as u64;
                }
                capacity_bytes
            }
        };
        file.sync_all()
            .with_context(|| format!("fsync {}", path.display()))?;
        if let Some(dir) = path.parent() {
            File::open(dir)
                .and_then(|d| d.sync_all())
                .with_context(|| format!("fsync {}", dir.display()))?;
        }
        Ok(Self {
            path: path.to_path_buf(),
            file,
            capacity_bytes,
            queue: Mutex::new(Queue::default()),
            group_done: Condvar::new(),
            data_syncs: AtomicU64::new(0),
        })
    }

    /// `fdatasync`s issued by group commits so far.
    pub fn data_syncs(&self) -> u64 {
        self.data_syncs.load(Ordering::Relaxed)
    }

    /// Starts writing at the file's beginning again (between measurements).
    pub fn rewind(&self) {
        self.queue.lock().write_offset = 0;
    }

    /// Runs the closed loop ([`run_appends`]) on this file: writer `w`'s commits are `pool`'s
    /// for that writer, in turn. Returns the outcome and the `fdatasync`s of the window.
    pub fn run_appends(
        &self,
        pool: &CommitPool,
        writers: usize,
        window: Window,
    ) -> Result<(AppendOutcome, u64)> {
        let mut before = 0;
        let outcome = run_appends(
            writers,
            window,
            || before = self.data_syncs(),
            |w, i| {
                let prepared = pool.get(w, i);
                self.append(&prepared.frames)
                    .map(|()| prepared.events_count())
            },
        )?;
        Ok((outcome, self.data_syncs() - before))
    }

    /// Appends one commit's records; returns once they are durable.
    pub fn append(&self, records: &[u8]) -> Result<()> {
        self.check_fits(records)?;
        let mut queue = self.queue.lock();
        queue.waiting.extend_from_slice(records);
        queue.issued += 1;
        let ticket = queue.issued;
        loop {
            if queue.durable >= ticket {
                return Ok(());
            }
            if let Some(failure) = &queue.failure {
                bail!("the raw log failed earlier: {failure}");
            }
            if !queue.leader {
                break;
            }
            self.group_done.wait(&mut queue);
        }
        // Leader: take everything waiting (our own records included) and write it.
        queue.leader = true;
        let spare = std::mem::take(&mut queue.spare);
        let group = std::mem::replace(&mut queue.waiting, spare);
        let last = queue.issued;
        let offset = self.reserve(&mut queue, group.len());
        drop(queue);

        let result = self.write_synced(&group, offset);

        let mut queue = self.queue.lock();
        let mut group = group;
        group.clear();
        queue.spare = group;
        queue.leader = false;
        match &result {
            Ok(()) => queue.durable = last,
            Err(e) => queue.failure = Some(format!("{e:#}")),
        }
        drop(queue);
        self.group_done.notify_all();
        result
    }

    /// Writes `group` (records back to back) with one `pwrite` and one `fdatasync`, for a
    /// caller that gathers its own groups and is this file's only writer.
    pub fn write_group(&self, group: &[u8]) -> Result<()> {
        self.check_fits(group)?;
        let offset = self.reserve(&mut self.queue.lock(), group.len());
        self.write_synced(group, offset)
    }

    fn check_fits(&self, records: &[u8]) -> Result<()> {
        ensure!(
            records.len() as u64 <= self.capacity_bytes,
            "a commit of {} bytes does not fit the {}-byte raw file",
            records.len(),
            self.capacity_bytes
        );
        Ok(())
    }

    /// Where a group of `len` bytes goes: at the write offset, or the file's start when it
    /// would not fit before the end.
    fn reserve(&self, queue: &mut Queue, len: usize) -> u64 {
        let len = len as u64;
        let offset = if queue.write_offset + len > self.capacity_bytes {
            0
        } else {
            queue.write_offset
        };
        queue.write_offset = offset + len;
        offset
    }

    fn write_synced(&self, group: &[u8], offset: u64) -> Result<()> {
        self.file
            .write_all_at(group, offset)
            .and_then(|()| {
                self.data_syncs.fetch_add(1, Ordering::Relaxed);
                self.file.sync_data()
            })
            .with_context(|| format!("pwrite+fdatasync {}", self.path.display()))
    }
}

/// A file of back-to-back frames for the catch-up read.
#[derive(Debug)]
pub struct RawReadFile {
    path: PathBuf,
    records_count: u64,
}

impl RawReadFile {
    /// Writes `events_count` records, cycling through `commits`, and syncs them.
    pub fn fill(path: &Path, commits: &[PreparedCommit], events_count: u64) -> Result<Self> {
        let file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(path)
            .with_context(|| format!("create {}", path.display()))?;
        let mut buf = Vec::with_capacity(CHUNK_BYTES * 2);
        let (mut written, mut offset) = (0u64, 0u64);
        'fill: for prepared in commits.iter().cycle() {
            ensure!(!prepared.payloads.is_empty(), "an empty commit in the pool");
            let mut at = 0usize;
            for payload in &prepared.payloads {
                if written == events_count {
                    break 'fill;
                }
                let len = FRAME_HEADER_LEN + payload.len();
                buf.extend_from_slice(&prepared.frames[at..at + len]);
                at += len;
                written += 1;
            }
            if buf.len() >= CHUNK_BYTES {
                file.write_all_at(&buf, offset)
                    .with_context(|| format!("write {}", path.display()))?;
                offset += buf.len() as u64;
                buf.clear();
            }
        }
        file.write_all_at(&buf, offset)
            .with_context(|| format!("write {}", path.display()))?;
        file.sync_all()
            .with_context(|| format!("fsync {}", path.display()))?;
        Ok(Self {
            path: path.to_path_buf(),
            records_count: written,
        })
    }

    /// Reads the whole file from the start with large `pread`s and walks every record.
    /// Returns the records seen, the time taken, and per-`pread` latency.
    pub fn catch_up(&self) -> Result<(u64, std::time::Duration, Histogram<u64>)> {
        let file =
            File::open(&self.path).with_context(|| format!("open {}", self.path.display()))?;
        let mut hist = Histogram::<u64>::new(3).context("create a histogram")?;
        let mut buf = vec![0u8; CHUNK_BYTES];
        let (mut carry, mut offset, mut records, mut touched) = (0usize, 0u64, 0u64, 0u64);
        let started = Instant::now();
        loop {
            let call = Instant::now();
            let got = read_full_at(&file, &mut buf[carry..], offset)
                .with_context(|| format!("read {}", self.path.display()))?;
            hist.record(u64::try_from(call.elapsed().as_nanos()).unwrap_or(u64::MAX))
                .context("record a latency")?;
            if got == 0 {
                break;
            }
            offset += got as u64;
            let available = carry + got;
            let mut at = 0usize;
            while at + FRAME_HEADER_LEN <= available {
                let len =
                    u32::from_le_bytes([buf[at], buf[at + 1], buf[at + 2], buf[at + 3]]) as usize;
                let total = FRAME_HEADER_LEN + len;
                if at + total > available {
                    break;
                }
                touched = touched.wrapping_add(len as u64 + u64::from(buf[at + total - 1]));
                records += 1;
                at += total;
            }
            buf.copy_within(at..available, 0);
            carry = available - at;
            if carry == buf.len() {
                buf.resize(buf.len() * 2, 0);
            }
        }
        let elapsed = started.elapsed();
        std::hint::black_box(touched);
        ensure!(
            carry == 0,
            "{carry} bytes of a torn record at the end of {}",
            self.path.display()
        );
        ensure!(
            records == self.records_count,
            "read {records} records back from {}, wrote {}",
            self.path.display(),
            self.records_count
        );
        Ok((records, elapsed, hist))
    }
}

fn read_full_at(file: &File, buf: &mut [u8], offset: u64) -> std::io::Result<usize> {
    let mut done = 0;
    while done < buf.len() {
        match file.read_at(&mut buf[done..], offset + done as u64) {
            Ok(0) => break,
            Ok(n) => done += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(done)
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::data::EventFactory;

    #[test]
    fn group_commit_acknowledges_every_writer() {
        let dir = tempfile::tempdir().unwrap();
        let log = Arc::new(
            RawLog::create(&dir.path().join("raw"), RawLayout::Preallocated(1 << 20)).unwrap(),
        );
        let record = vec![7u8; 300];
        std::thread::scope(|s| {
            for _ in 0..8 {
                let log = &log;
                let record = &record;
                s.spawn(move || {
                    for _ in 0..200 {
                        log.append(record).unwrap();
                    }
                });
            }
        });
        let syncs = log.data_syncs();
        assert!((1..=1600).contains(&syncs), "{syncs}");
        assert_eq!(
            std::fs::metadata(dir.path().join("raw")).unwrap().len(),
            1 << 20
        );
    }

    #[test]
    fn catch_up_reads_back_every_record() {
        let dir = tempfile::tempdir().unwrap();
        let pool = EventFactory::new(2)
            .pool(1, 3, 7, &dir.path().join("scratch"))
            .unwrap();
        let file = RawReadFile::fill(&dir.path().join("read"), pool.all(), 100).unwrap();
        let (records, _, hist) = file.catch_up().unwrap();
        assert_eq!(records, 100);
        assert!(!hist.is_empty());
    }
}
