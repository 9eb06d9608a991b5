//! Spare segments: files whose blocks are already allocated and written, so that a roll starts
//! the next segment in them. Two kinds: files the store's zeroer thread zero-fills to a whole
//! segment and syncs ahead of time, and *recycled* files, the raw segment files of sealed-away
//! segments, which the sealer moves here instead of deleting them.
//!
//! Why: an `fdatasync` that only overwrites written blocks has no file-size or extent change to
//! journal, which on ext4 makes it much faster (`preallocate-bytes` in config.rs). The leader
//! could only afford zeros for small groups, and paid for a whole stretch inside one of them
//! (that group was the 1 x 100 shape's p99). Zeroing in the background in the active file
//! itself does not work either: an `fdatasync` waits for every dirty page of its file, so each
//! of the leader's syncs would carry the zeros written since the last one (measured: the
//! 1 x 100 shape's median latency doubled). A spare is a different file until the roll. A
//! recycled file costs no write at all, where zeros cost a segment's worth each: in the engine
//! benchmark (five pairs), 1 x 100 went from 0.59-0.70 to 0.71-0.90 x raw with recycling and
//! 16 x 100 from 0.30-0.34 to 0.34-0.49.
//!
//! Layout: `<data-dir>/spares/<n>.spare`. A spare holds no records of any log (a recycled one
//! only old bytes past them): every one found at open is deleted. A roll ([`crate::segment::recovery::adopt_spare`]) writes the segment header
//! into the spare and syncs it, renames it to `<next>.log` in the log directory and syncs that
//! directory, so the name appears only with its header durable (FORMAT.md section 8.3). The
//! header of a segment in a recycled file is of format version 2 and says so, because the old
//! segment's bytes follow its records (FORMAT.md sections 4 and 8.2).
//!
//! Who asks for zeros: a roll, when most groups written to the segment it leaves were small
//! enough for the leader to zero ahead for (`preallocate-bytes` / 16); those are the appends a
//! growing file slows. Large groups amortise the journal, and zeros would only add the zeroer's
//! writes to theirs (measured: 16 writers x 100 events about 15% slower with zeroed spares for
//! every roll). No zeros are written while a full segment is being sealed whose file may come
//! back instead ([`Spares::expect_recycled`]). A ready spare of either kind is used by any roll.
//!
//! Safety of recycling: a frame's checksum binds its segment's base and offset, so the old
//! frames in a recycled file fail their checks in a segment at any base that does not check
//! alike ([`checks_alike`]). A spare carries the bases of every segment it held, and never
//! starts a segment at a base that checks alike with one of them (it is deleted instead); a
//! recycled file holds its tenant's data, so it only goes to that tenant's logs, and deleting the
//! tenant deletes it; a file is recycled only once no reader holds its raw segment (readers keep
//! reading through their descriptor, which would then see the new segment's bytes).
//!
//! Bounds: at most `spare-segments` spares exist, each at most `segment-bytes-max` +
//! `preallocate-bytes` long, and a recycled one for at most 64 segments. No zeros are made
//! before a roll asks, so a store whose logs never fill a segment keeps none, and no spare of
//! either kind is kept while the file system has less than 8 times a spare's size free: on a
//! filling disk the room goes to the logs' own appends.

use std::{
    path::{Path, PathBuf},
    sync::{
        atomic::{AtomicBool, AtomicUsize, Ordering},
        Arc,
    },
};

use crossbeam_channel::{Receiver, Sender};
use parking_lot::{Condvar, Mutex};

use crate::{
    config::LogConfig,
    error::{Error, Result},
    ids::{EventLogSequenceNumber, FileOffset, TenantId},
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

/// A recycled file is kept for at most this many segments, so that the bases it may hold
/// (which no segment of the same base may be given) stay a short list.
const HELD_MAX: usize = 64;

/// A file ready to become a segment: `len` bytes of zeros, written and synced, or a recycled
/// segment file of tenant `tenant` whose bytes are those of the segments of bases `held`.
#[derive(Debug)]
pub(crate) struct Spare {
    pub(crate) path: PathBuf,
    pub(crate) file: Arc<dyn IoFile>,
    pub(crate) len: u64,
    /// Empty for zeros.
    pub(crate) held: Vec<EventLogSequenceNumber>,
    /// Whose bytes a recycled file holds (`None` for zeros).
    pub(crate) tenant: Option<TenantId>,
}

impl Spare {
    /// Whether a segment of `tenant` at `base` may start in this file: zeros may start any; a
    /// recycled file only one of the same tenant (its old bytes are that tenant's data), and
    /// only at a base none of whose frames would pass a check of the segments it held.
    fn fits(&self, tenant: TenantId, base: EventLogSequenceNumber) -> bool {
        self.tenant.is_none_or(|t| t == tenant)
            && !self.held.iter().any(|held| checks_alike(*held, base))
    }
}

/// Whether frames of segments at bases `a` and `b` get the same checksum wherever their other
/// bytes are the same. A frame's CRC-32 covers the base first (FORMAT.md section 4.1), and CRC-32
/// is linear: two bases check alike exactly when their XOR is a multiple of the CRC polynomial,
/// which is when their own 8-byte CRCs are equal. Equal bases do, and so do some far apart (0 and
/// 7 976 584 769, say).
pub(crate) fn checks_alike(a: EventLogSequenceNumber, b: EventLogSequenceNumber) -> bool {
    crc32fast::hash(&a.0.to_le_bytes()) == crc32fast::hash(&b.0.to_le_bytes())
}

/// The store's spares and the zeroer's wake-up.
#[derive(Debug)]
pub(crate) struct Spares {
    io: Arc<dyn IoEngine>,
    dir: PathBuf,
    len: u64,
    /// The longest segment file a roll may leave: the leader zeroes up to `preallocate-bytes`
    /// past the data, so a segment created without a spare can end that far past `len`.
    recycle_len_max: u64,
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
    /// Full segments queued for sealing, each of which may come back recycled: the zeroer
    /// writes no zeros for a spare that one of them will be.
    incoming: AtomicUsize,
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
            recycle_len_max: config.segment_bytes_max.as_u64() + config.preallocate_bytes.as_u64(),
            target: config.spare_segments as usize,
            state: Mutex::new(State::default()),
            idle: Condvar::new(),
            wake,
            woken,
            stopping: AtomicBool::new(false),
            incoming: AtomicUsize::new(0),
        }))
    }

    /// The zeroer thread's loop: makes the missing spares each time it is woken, until
    /// [`Spares::stop`].
    pub(crate) fn run(&self) {
        while self.woken.recv().is_ok() && !self.stopping.load(Ordering::Relaxed) {
            self.fill();
        }
    }

    /// A ready spare for a segment of `tenant` at `base`, if there is one ([`Spare::fits`]);
    /// with `ask`, asks the zeroer for more. When none fits, one that does not is deleted, so
    /// that the room it took goes to a spare that will.
    pub(crate) fn take(
        &self,
        ask: bool,
        tenant: TenantId,
        base: EventLogSequenceNumber,
    ) -> Option<Spare> {
        let (spare, unfit) = {
            let mut state = self.state.lock();
            if ask {
                state.asked += 1;
            }
            match state.ready.iter().position(|s| s.fits(tenant, base)) {
                Some(i) => (Some(state.ready.swap_remove(i)), None),
                None => (None, state.ready.pop()),
            }
        };
        if let Some(unfit) = unfit {
            let _ = self.io.remove_file(&unfit.path);
        }
        if ask {
            let _ = self.wake.try_send(());
        }
        spare
    }

    /// A full segment was queued for sealing: it may come back as a spare ([`Self::recycle`]).
    pub(crate) fn expect_recycled(&self) {
        self.incoming.fetch_add(1, Ordering::Relaxed);
    }

    /// The segment [`Self::expect_recycled`] announced was sealed, or failed to be. If it
    /// did not become a spare and rolls have asked for them, the zeroer makes the one missing.
    pub(crate) fn expected_recycled_done(&self) {
        let coming = self.incoming.fetch_sub(1, Ordering::Relaxed) - 1;
        let mut state = self.state.lock();
        if state.asked > 0 && state.ready.len() + coming < self.target {
            state.asked += 1;
            drop(state);
            let _ = self.wake.try_send(());
        }
    }

    /// Offers the file of a raw segment of `tenant` at `base` whose sealed copy is durable and
    /// which nobody reads any more, `file` open on `path` in the log directory `log_dir`, which
    /// held the segments of bases `held_before` before it, as a spare. `Ok(true)` when it moved
    /// it into the spares; `Ok(false)` when no spare is wanted (the caller deletes it as before).
    ///
    /// Kept only while fewer than `spare-segments` spares are ready, the file system has room
    /// to spare (as for zeros) and the file is no longer than a roll leaves one; the log
    /// directory is synced before the file can be used, so that its old name never comes back.
    pub(crate) fn recycle(
        &self,
        log_dir: &Path,
        path: &Path,
        file: Arc<dyn IoFile>,
        (tenant, base): (TenantId, EventLogSequenceNumber),
        held_before: &[EventLogSequenceNumber],
    ) -> Result<bool> {
        let len = file.len().map_err(|e| Error::io("stat", path, e))?;
        let wanted = !self.stopping.load(Ordering::Relaxed)
            && self.state.lock().ready.len() < self.target
            && held_before.len() < HELD_MAX
            && len <= self.recycle_len_max
            && self.has_room();
        if !wanted {
            return Ok(false);
        }
        let spare_path = self.next_path();
        self.io
            .rename(path, &spare_path)
            .map_err(|e| Error::io("rename a sealed-away segment to", &spare_path, e))?;
        let synced = self
            .io
            .sync_dir(log_dir)
            .map_err(|e| Error::io("fsync dir", log_dir, e))
            .and_then(|()| {
                self.io
                    .sync_dir(&self.dir)
                    .map_err(|e| Error::io("fsync dir", &self.dir, e))
            });
        if let Err(e) = synced {
            let _ = self.io.remove_file(&spare_path);
            return Err(e);
        }
        let mut held = held_before.to_vec();
        held.push(base);
        self.keep(Spare {
            path: spare_path,
            file,
            len,
            held,
            tenant: Some(tenant),
        });
        Ok(true)
    }

    /// A new name in the spares' directory.
    fn next_path(&self) -> PathBuf {
        let mut state = self.state.lock();
        state.next_name += 1;
        self.dir.join(format!("{}{EXTENSION}", state.next_name))
    }

    /// Whether the file system keeps room for one more spare ([`FREE_SPACE_FACTOR`]); yes when
    /// its free space cannot be read.
    fn has_room(&self) -> bool {
        free_bytes(&self.dir).is_none_or(|free| free >= self.len.saturating_mul(FREE_SPACE_FACTOR))
    }

    /// Makes `spare` ready if fewer than `target` are, else deletes it (one came meanwhile from
    /// the sealer or the zeroer). Whether it was kept.
    fn keep(&self, spare: Spare) -> bool {
        let mut state = self.state.lock();
        if state.ready.len() < self.target {
            state.ready.push(spare);
            true
        } else {
            drop(state);
            let _ = self.io.remove_file(&spare.path);
            false
        }
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
                let coming = self.incoming.load(Ordering::Relaxed);
                if state.asked == 0 || state.ready.len() + coming >= self.target {
                    return;
                }
            }
            if !self.has_room() {
                tracing::debug!(
                    "too little free space to keep a spare segment; rolls create theirs"
                );
                return;
            }
            let path = self.next_path();
            match self.make(&path) {
                Ok(file) => {
                    let zeros = Spare {
                        path,
                        file,
                        len: self.len,
                        held: Vec::new(),
                        tenant: None,
                    };
                    if !self.keep(zeros) {
                        // A recycled file came while these zeros were written.
                        return;
                    }
                }
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

    /// Deletes the recycled spares that hold bytes of `tenant`, which is being deleted.
    pub(crate) fn forget_tenant(&self, tenant: TenantId) {
        let gone: Vec<Spare> = {
            let mut state = self.state.lock();
            let (gone, kept) = std::mem::take(&mut state.ready)
                .into_iter()
                .partition(|s| s.tenant == Some(tenant));
            state.ready = kept;
            gone
        };
        for spare in gone {
            let _ = self.io.remove_file(&spare.path);
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
    fn bases_whose_frames_check_alike() {
        let seq = EventLogSequenceNumber;
        assert!(checks_alike(seq(42), seq(42)));
        assert!(!checks_alike(seq(0), seq(1)));
        // 0x1_DB71_0641 is the CRC-32 polynomial (bit-reflected, with its x^32 term).
        assert!(checks_alike(seq(0), seq(0x1_DB71_0641)));
        assert!(checks_alike(seq(5), seq(5 ^ (0x1_DB71_0641 << 3))));
    }

    #[test]
    fn a_recycled_file_goes_only_to_its_tenant_and_never_to_a_base_that_checks_alike() {
        let dir = tempfile::tempdir().unwrap();
        let config = LogConfig::new(dir.path());
        let io: Arc<dyn IoEngine> = Arc::new(crate::io::StdIo);
        let spares = Spares::open(Arc::clone(&io), &config).unwrap();
        let logs = dir.path().join("logs");
        std::fs::create_dir_all(&logs).unwrap();
        let sealed_away = |name: &str| {
            let path = logs.join(name);
            std::fs::write(&path, [7u8; 4096]).unwrap();
            let file = io.open(&path, OpenMode::ReadWrite).unwrap();
            (path, file)
        };
        let seq = EventLogSequenceNumber;
        let (a, b) = (TenantId::from_bytes([1; 16]), TenantId::from_bytes([2; 16]));
        let recycle = |name: &str, base: u64| {
            let (path, file) = sealed_away(name);
            assert!(spares
                .recycle(&logs, &path, file, (a, seq(base)), &[seq(7)])
                .unwrap());
            assert!(!path.exists(), "moved into the spares");
            spares.state.lock().ready[0].path.clone()
        };

        // A file that held the segments of bases 7 and 100 goes to no segment at either base,
        // nor at one whose frames check alike: it is deleted instead.
        for base in [100, 7, 0x1_DB71_0641 ^ 0x64] {
            let spare_path = recycle("a.log", 100);
            assert!(spares.take(false, a, seq(base)).is_none(), "base {base}");
            assert!(!spare_path.exists(), "an unfit spare is deleted");
        }
        // Nor to another tenant's segment.
        let spare_path = recycle("b.log", 100);
        assert!(spares.take(false, b, seq(200)).is_none());
        assert!(!spare_path.exists());
        // Its own tenant's segment at any other base takes it, with what it held.
        recycle("c.log", 100);
        let spare = spares.take(false, a, seq(200)).unwrap();
        assert_eq!(
            (spare.held, spare.tenant),
            (vec![seq(7), seq(100)], Some(a))
        );
        assert_eq!(spare.len, 4096);
        // Deleting the tenant deletes its recycled spares.
        let spare_path = recycle("d.log", 300);
        spares.forget_tenant(b);
        assert!(spare_path.exists());
        spares.forget_tenant(a);
        assert!(!spare_path.exists());
        assert!(spares.state.lock().ready.is_empty());

        // No more than `spare-segments` are kept; a file longer than a roll leaves one, or one
        // that has held too many segments, is not kept either: the caller deletes those.
        recycle("e.log", 300);
        let (path, file) = sealed_away("f.log");
        assert!(!spares
            .recycle(&logs, &path, file, (a, seq(400)), &[])
            .unwrap());
        assert!(path.exists(), "left to the caller");
        assert!(spares.take(false, a, seq(500)).is_some());
        let long = logs.join("g.log");
        std::fs::write(&long, vec![7u8; (spares.recycle_len_max + 1) as usize]).unwrap();
        let file = io.open(&long, OpenMode::ReadWrite).unwrap();
        assert!(!spares
            .recycle(&logs, &long, file, (a, seq(600)), &[])
            .unwrap());
        let held: Vec<_> = (0..HELD_MAX as u64).map(seq).collect();
        let file = io.open(&path, OpenMode::ReadWrite).unwrap();
        assert!(!spares
            .recycle(&logs, &path, file, (a, seq(700)), &held)
            .unwrap());
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
