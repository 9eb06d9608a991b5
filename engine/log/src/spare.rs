//! Spare segments: files zero-filled to a whole segment and synced ahead of time, by the
//! store's zeroer thread, so that a roll starts the next segment in blocks that are already
//! allocated and written.
//!
//! Why: an `fdatasync` that only overwrites such blocks has no file-size or extent change to
//! journal, which on ext4 makes it much faster (`preallocate-bytes` in config.rs). The leader
//! could only afford those zeros for small groups, and paid for a whole stretch inside one of
//! them (that group was the 1 x 100 shape's p99). Zeroing in the background in the active file
//! itself does not work either: an `fdatasync` waits for every dirty page of its file, so each
//! of the leader's syncs would carry the zeros written since the last one (measured: the
//! 1 x 100 shape's median latency doubled). A spare is a different file until the roll.
//!
//! Layout: `<data-dir>/spares/<n>.spare`. A spare holds nothing: every one found at open is
//! deleted. A roll ([`crate::segment::recovery::adopt_spare`]) writes the segment header into
//! the spare and syncs it, renames it to `<next>.log` in the log directory and syncs that
//! directory, so the name appears only with its header durable (FORMAT.md section 8.3).
//!
//! Who asks: a roll, when most groups written to the segment it leaves were small enough for
//! the leader to zero ahead for (`preallocate-bytes` / 16); those are the appends a growing
//! file slows. Large groups amortise the journal, and spares would only add the zeroer's writes
//! to theirs (measured: 16 writers x 100 events about 15% slower with spares, 1 x 100 about 6%
//! faster, its p99 from 4.5 to 1.5 ms). A ready spare is used by any roll.
//!
//! Bounds: at most `spare-segments` spares exist, each `segment-bytes-max` long. None is made
//! before a roll asks, so a store whose logs never fill a segment keeps none, and none while
//! the file system has less than 8 times a spare's size free: on a filling disk the room goes
//! to the logs' own appends.

use std::{
    path::{Path, PathBuf},
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc,
    },
};

use crossbeam_channel::{Receiver, Sender};
use parking_lot::{Condvar, Mutex};

use crate::{
    config::LogConfig,
    error::{Error, Result},
    ids::FileOffset,
    io::{IoEngine, IoFile, OpenMode},
    segment::recovery::zero_range,
};

/// The spares' directory, under the data directory.
pub(crate) const SPARES_DIR: &str = "spares";

const EXTENSION: &str = ".spare";

/// A spare is made only while the file system keeps at least this many times its size free,
/// so that on a filling disk the zeroer never takes the room the logs' own appends need.
const FREE_SPACE_FACTOR: u64 = 8;

/// Zeros are written and synced this many bytes at a time: a leader's `fdatasync` ends with a
/// cache flush that waits for whatever the device is writing, so the zeroer keeps each of its
/// bursts short (measured on the 1 x 100 shape: p99 about 2.8 ms with 4 MiB chunks, 2.1 ms
/// with 1 MiB, against 4.5 ms with the leader zeroing inline).
const CHUNK_BYTES: u64 = 1 << 20;

/// A file ready to become a segment: `len` bytes of zeros, written and synced.
#[derive(Debug)]
pub(crate) struct Spare {
    pub(crate) path: PathBuf,
    pub(crate) file: Arc<dyn IoFile>,
    pub(crate) len: u64,
}

/// The store's spares and the zeroer's wake-up.
#[derive(Debug)]
pub(crate) struct Spares {
    io: Arc<dyn IoEngine>,
    dir: PathBuf,
    len: u64,
    target: usize,
    state: Mutex<State>,
    /// Notified when the zeroer finishes what it was asked for.
    idle: Condvar,
    /// Wakes the zeroer ([`Spares::run`]): a roll asked, or the store is closing. At most one
    /// wake-up waits, since the zeroer refills everything each time it wakes.
    wake: Sender<()>,
    woken: Receiver<()>,
    /// The store is closing: the zeroer stops after the chunk it is writing.
    stopping: AtomicBool,
}

#[derive(Debug, Default)]
struct State {
    ready: Vec<Spare>,
    /// Names are never reused within one open store.
    next_name: u64,
    /// Times a roll asked for spares (from the first on, the zeroer keeps `target` of them
    /// ready), and how many of those asks the zeroer has answered.
    asked: u64,
    answered: u64,
}

impl Spares {
    /// Opens the spares' directory (creating it, or deleting the spares a previous run left)
    /// for `config.spare_segments` spares.
    pub(crate) fn open(io: Arc<dyn IoEngine>, config: &LogConfig) -> Result<Arc<Spares>> {
        let dir = config.data_dir.join(SPARES_DIR);
        if io.exists(&dir) {
            let names = io
                .read_dir(&dir)
                .map_err(|e| Error::io("read dir", &dir, e))?;
            for name in names {
                let path = dir.join(&name);
                if !is_spare_name(&name) {
                    return Err(Error::Corruption {
                        path,
                        offset: 0,
                        what: "unexpected file among the spare segments (expected <n>.spare)"
                            .into(),
                    });
                }
                io.remove_file(&path)
                    .map_err(|e| Error::io("remove", &path, e))?;
            }
        } else {
            io.create_dir_all(&dir)
                .map_err(|e| Error::io("create dir", &dir, e))?;
            io.sync_dir(&config.data_dir)
                .map_err(|e| Error::io("fsync dir", &config.data_dir, e))?;
        }
        let (wake, woken) = crossbeam_channel::bounded(1);
        Ok(Arc::new(Spares {
            io,
            dir,
            len: config.segment_bytes_max.as_u64(),
            target: config.spare_segments as usize,
            state: Mutex::new(State::default()),
            idle: Condvar::new(),
            wake,
            woken,
            stopping: AtomicBool::new(false),
        }))
    }

    /// The zeroer thread's loop: makes the missing spares each time it is woken, until
    /// [`Spares::stop`].
    pub(crate) fn run(&self) {
        while self.woken.recv().is_ok() && !self.stopping.load(Ordering::Relaxed) {
            self.fill();
        }
    }

    /// A ready spare, if there is one; with `ask`, asks the zeroer for more.
    pub(crate) fn take(&self, ask: bool) -> Option<Spare> {
        let spare = {
            let mut state = self.state.lock();
            if ask {
                state.asked += 1;
            }
            state.ready.pop()
        };
        if ask {
            let _ = self.wake.try_send(());
        }
        spare
    }

    /// Makes spares until `target` are ready. Gives up on the first error (a full disk): the
    /// rolls create their segments as before until the next wake-up tries again.
    fn fill(&self) {
        let asked = self.state.lock().asked;
        self.make_missing();
        let mut state = self.state.lock();
        state.answered = state.answered.max(asked);
        drop(state);
        self.idle.notify_all();
    }

    /// Waits until the zeroer has finished what rolls asked of it so far (tests, benchmarks).
    pub(crate) fn wait_idle(&self) {
        let mut state = self.state.lock();
        while state.answered < state.asked && !self.stopping.load(Ordering::Relaxed) {
            self.idle.wait(&mut state);
        }
    }

    fn make_missing(&self) {
        loop {
            {
                let state = self.state.lock();
                if state.asked == 0 || state.ready.len() >= self.target {
                    return;
                }
            }
            if let Some(free) = free_bytes(&self.dir) {
                if free < self.len.saturating_mul(FREE_SPACE_FACTOR) {
                    tracing::debug!(
                        free,
                        "too little free space to keep a spare segment; rolls create theirs"
                    );
                    return;
                }
            }
            let name = {
                let mut state = self.state.lock();
                state.next_name += 1;
                format!("{}{EXTENSION}", state.next_name)
            };
            let path = self.dir.join(name);
            match self.make(&path) {
                Ok(file) => self.state.lock().ready.push(Spare {
                    path,
                    file,
                    len: self.len,
                }),
                Err(_) if self.stopping.load(Ordering::Relaxed) => {
                    let _ = self.io.remove_file(&path);
                    return;
                }
                Err(e) => {
                    tracing::warn!(
                        path = %path.display(),
                        error = %e,
                        "making a spare segment failed; rolls create their segments meanwhile"
                    );
                    let _ = self.io.remove_file(&path);
                    return;
                }
            }
        }
    }

    /// Stops the zeroer: after the chunk it is writing, or at once if it waits.
    pub(crate) fn stop(&self) {
        self.stopping.store(true, Ordering::Relaxed);
        let _ = self.wake.try_send(());
    }

    fn make(&self, path: &Path) -> std::io::Result<Arc<dyn IoFile>> {
        let file = self.io.open(path, OpenMode::CreateNew)?;
        let mut at = 0;
        while at < self.len {
            if self.stopping.load(Ordering::Relaxed) {
                return Err(std::io::Error::other("the store is closing"));
            }
            let to = (at + CHUNK_BYTES).min(self.len);
            zero_range(file.as_ref(), FileOffset(at), FileOffset(to))?;
            file.sync_data()?;
            at = to;
        }
        self.io.sync_dir(&self.dir)?;
        Ok(file)
    }
}

/// Bytes free for unprivileged writers on the file system of `dir`; `None` when it cannot be
/// read (a directory that only exists in a test's simulated file system).
#[expect(
    unsafe_code,
    reason = "statvfs fills a struct we own from a NUL-terminated path we own"
)]
fn free_bytes(dir: &Path) -> Option<u64> {
    use std::os::unix::ffi::OsStrExt as _;
    let path = std::ffi::CString::new(dir.as_os_str().as_bytes()).ok()?;
    let mut stats = std::mem::MaybeUninit::<libc::statvfs>::uninit();
    // SAFETY: `path` is a valid NUL-terminated string and `stats` points to writable memory
    // of the struct's size; statvfs initialises it when it returns 0, and only then is it read.
    let stats = unsafe {
        if libc::statvfs(path.as_ptr(), stats.as_mut_ptr()) != 0 {
            return None;
        }
        stats.assume_init()
    };
    Some(stats.f_bavail.saturating_mul(stats.f_frsize))
}

fn is_spare_name(name: &str) -> bool {
    name.strip_suffix(EXTENSION)
        .is_some_and(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn free_space_of_a_real_and_a_missing_directory() {
        let dir = tempfile::tempdir().unwrap();
        assert!(free_bytes(dir.path()).is_some_and(|b| b > 0));
        assert_eq!(free_bytes(&dir.path().join("missing")), None);
    }

    #[test]
    fn spare_names() {
        assert!(is_spare_name("1.spare"));
        assert!(is_spare_name("12345.spare"));
        assert!(!is_spare_name(".spare"));
        assert!(!is_spare_name("1.spare.tmp"));
        assert!(!is_spare_name("a.spare"));
        assert!(!is_spare_name("00000000000000000000.log"));
    }
}
