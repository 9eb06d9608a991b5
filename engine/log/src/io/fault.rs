//! A fault-injecting, crash-simulating in-memory file system for tests.
//!
//! Every file has a *live* image (what reads see) and a *durable* image (what survives a
//! crash); `sync_data` copies live to durable. With [`FaultIo::model_fsyncgate`], a failed sync
//! drops the bytes it did not write from writeback (reads still see them), so a later
//! successful sync leaves them as the disk had them until they are written again. Directory entries likewise: creating, renaming
//! or removing changes the live namespace, and `sync_dir` makes the directory's live entries
//! durable. [`FaultIo::crash_with`] returns a new file system holding only what was durable,
//! with unsynced appends dropped, torn at a random point, or landed out of order with a hole
//! ([`CrashMode`]): the states a power cut may leave on a real disk with a journaling file
//! system. Directories themselves count as durable once created (the engine fsyncs their
//! parents; losing an empty directory loses no data).
//!
//! Faults are injected by countdown: after N more mutating operations (writes, syncs, directory
//! changes), every operation fails with EIO ("the disk is gone"), or writes fail with ENOSPC
//! after a byte budget. Counting operations lets a test enumerate every crash point of a
//! workload.

use std::{
    collections::{BTreeMap, HashMap},
    io,
    path::{Path, PathBuf},
    sync::Arc,
};

use parking_lot::Mutex;

use super::{IoEngine, IoFile, OpenMode};

type Inode = u64;

#[derive(Debug, Default, Clone)]
struct FileData {
    live: Vec<u8>,
    durable: Vec<u8>,
    /// Byte ranges whose writeback a failed sync gave up on ("fsyncgate"): the kernel marked
    /// those pages clean, so reads still see the new bytes but no later sync writes them,
    /// until they are written again. Ascending, disjoint.
    lost: Vec<(usize, usize)>,
}

impl FileData {
    /// A failed sync: every byte not yet durable is dropped from writeback.
    fn fail_writeback(&mut self) {
        let len = self.live.len().max(self.durable.len());
        let mut at = 0;
        let mut lost = Vec::new();
        while at < len {
            if self.durable.get(at) == self.live.get(at) {
                at += 1;
                continue;
            }
            let start = at;
            while at < len && self.durable.get(at) != self.live.get(at) {
                at += 1;
            }
            lost.push((start, at));
        }
        self.lost = merge(std::mem::take(&mut self.lost), lost);
    }

    /// A successful sync: the live image becomes durable, but for the lost ranges, which
    /// keep what the disk had (zeros past its old end).
    fn sync(&mut self) {
        let mut durable = self.live.clone();
        for &(start, end) in &self.lost {
            for (i, byte) in durable.iter_mut().enumerate().take(end).skip(start) {
                *byte = self.durable.get(i).copied().unwrap_or(0);
            }
        }
        self.durable = durable;
    }

    /// Bytes `[from, to)` were written again: they take part in writeback again.
    fn rewritten(&mut self, from: usize, to: usize) {
        let mut kept = Vec::with_capacity(self.lost.len());
        for &(start, end) in &self.lost {
            if end <= from || start >= to {
                kept.push((start, end));
                continue;
            }
            if start < from {
                kept.push((start, from));
            }
            if end > to {
                kept.push((to, end));
            }
        }
        self.lost = kept;
    }

    /// The file was cut to `len` bytes.
    fn truncated(&mut self, len: usize) {
        self.lost.retain(|&(start, _)| start < len);
        if let Some(last) = self.lost.last_mut() {
            last.1 = last.1.min(len);
        }
    }
}

/// The union of two sets of ascending, disjoint ranges.
fn merge(a: Vec<(usize, usize)>, b: Vec<(usize, usize)>) -> Vec<(usize, usize)> {
    let mut all: Vec<(usize, usize)> = a.into_iter().chain(b).collect();
    all.sort_unstable();
    let mut out: Vec<(usize, usize)> = Vec::with_capacity(all.len());
    for (start, end) in all {
        match out.last_mut() {
            Some(last) if start <= last.1 => last.1 = last.1.max(end),
            _ => out.push((start, end)),
        }
    }
    out
}

#[derive(Debug, Default)]
struct FsState {
    files: HashMap<Inode, FileData>,
    next_inode: Inode,
    /// Live namespace: path -> inode (files) and the set of directories.
    live_names: BTreeMap<PathBuf, Inode>,
    /// Durable namespace.
    durable_names: BTreeMap<PathBuf, Inode>,
    dirs: std::collections::BTreeSet<PathBuf>,
    /// Mutating operations performed so far.
    ops_count: u64,
    /// Fail every mutating operation once `ops_count` reaches this.
    fail_at_op: Option<u64>,
    /// Remaining bytes before writes fail with ENOSPC.
    space_left_bytes: Option<u64>,
    /// Fail only syncs (writes still succeed) once `ops_count` reaches this.
    fail_sync_at_op: Option<u64>,
    /// Whether a failed sync drops the bytes it did not write from writeback (`fsyncgate`).
    fsyncgate: bool,
}

/// What a crash does to bytes appended but not yet synced.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CrashMode {
    /// They are lost.
    DropUnsynced,
    /// A pseudo-random prefix of them survives (seeded).
    TornPrefix(u64),
    /// They all survive but for a pseudo-random hole of zeros (pages written back out of
    /// order; seeded).
    Reordered(u64),
}

/// The in-memory file system; clones share it.
#[derive(Debug, Clone, Default)]
pub struct FaultIo {
    state: Arc<Mutex<FsState>>,
}

#[derive(Debug)]
struct FaultFile {
    state: Arc<Mutex<FsState>>,
    inode: Inode,
    writable: bool,
}

fn eio() -> io::Error {
    io::Error::from_raw_os_error(libc::EIO)
}

impl FsState {
    /// Counts a mutating operation and fails it if the countdown says so.
    fn mutate(&mut self) -> io::Result<()> {
        let op = self.ops_count;
        self.ops_count += 1;
        match self.fail_at_op {
            Some(at) if op >= at => Err(eio()),
            _ => Ok(()),
        }
    }
}

impl FaultIo {
    /// An empty file system.
    pub fn new() -> Self {
        Self::default()
    }

    /// Mutating operations performed so far.
    pub fn ops_count(&self) -> u64 {
        self.state.lock().ops_count
    }

    /// Fails every mutating operation from the `n`-th one counted from now (0 = the next).
    pub fn fail_after_ops(&self, n: u64) {
        let mut state = self.state.lock();
        state.fail_at_op = Some(state.ops_count + n);
    }

    /// Fails `sync_data` (only) from the `n`-th mutating operation counted from now.
    pub fn fail_syncs_after_ops(&self, n: u64) {
        let mut state = self.state.lock();
        state.fail_sync_at_op = Some(state.ops_count + n);
    }

    /// From now on a failed sync behaves as Linux's does ("fsyncgate"): the bytes it did not
    /// write are marked clean and dropped from writeback (reads still see them), so a later
    /// successful sync does not write them unless they are written again. Off by default:
    /// recovery within the same boot cannot tell such bytes apart (FORMAT.md 8.5), and the
    /// tests that reopen after a failed sync model the other outcome, writeback later.
    pub fn model_fsyncgate(&self) {
        self.state.lock().fsyncgate = true;
    }

    /// Writes fail with ENOSPC once `bytes` more bytes have been written.
    pub fn set_space_left(&self, bytes: u64) {
        self.state.lock().space_left_bytes = Some(bytes);
    }

    /// Clears all injected faults.
    pub fn heal(&self) {
        let mut state = self.state.lock();
        state.fail_at_op = None;
        state.fail_sync_at_op = None;
        state.space_left_bytes = None;
    }

    /// The file system as a crash leaves it: durable names and contents only. With
    /// `torn_seed`, each file whose live image extends its durable one keeps a pseudo-random
    /// prefix of the unsynced bytes (a torn write) instead of none.
    #[must_use]
    pub fn crash(&self, torn_seed: Option<u64>) -> FaultIo {
        self.crash_with(torn_seed.map_or(CrashMode::DropUnsynced, CrashMode::TornPrefix))
    }

    /// The file system as a crash leaves it, unsynced appends treated as `mode` says.
    #[must_use]
    pub fn crash_with(&self, mode: CrashMode) -> FaultIo {
        let state = self.state.lock();
        let seed = match mode {
            CrashMode::DropUnsynced => 1,
            CrashMode::TornPrefix(s) | CrashMode::Reordered(s) => s | 1,
        };
        let mut rng = seed;
        let mut next = move || {
            // xorshift64*: deterministic per seed, good enough to pick cut points.
            rng ^= rng >> 12;
            rng ^= rng << 25;
            rng ^= rng >> 27;
            rng.wrapping_mul(0x2545_F491_4F6C_DD1D)
        };
        let mut files = HashMap::new();
        for inode in state.durable_names.values() {
            let Some(data) = state.files.get(inode) else {
                continue;
            };
            let image = crash_image(&data.durable, &data.live, mode, &mut next);
            files.insert(
                *inode,
                FileData {
                    live: image.clone(),
                    durable: image,
                    lost: Vec::new(),
                },
            );
        }
        let fs = FsState {
            files,
            next_inode: state.next_inode,
            live_names: state.durable_names.clone(),
            durable_names: state.durable_names.clone(),
            dirs: state.dirs.clone(),
            ..FsState::default()
        };
        FaultIo {
            state: Arc::new(Mutex::new(fs)),
        }
    }

    /// A copy of a file's live content, for tests that damage files on purpose.
    pub fn read_file(&self, path: &Path) -> Option<Vec<u8>> {
        let state = self.state.lock();
        let inode = state.live_names.get(path)?;
        state.files.get(inode).map(|f| f.live.clone())
    }

    /// Replaces a file's content, live and durable (a test's way to flip bits on "disk").
    pub fn overwrite_file(&self, path: &Path, content: Vec<u8>) -> bool {
        let mut state = self.state.lock();
        let Some(inode) = state.live_names.get(path).copied() else {
            return false;
        };
        state.files.insert(
            inode,
            FileData {
                live: content.clone(),
                durable: content,
                lost: Vec::new(),
            },
        );
        true
    }

    /// Every live file path, sorted.
    pub fn list_files(&self) -> Vec<PathBuf> {
        self.state.lock().live_names.keys().cloned().collect()
    }
}

/// What a crash leaves of a file whose durable image is `durable` and live image `live`.
///
/// Unsynced changes are the bytes where the two differ (overwrites of durable bytes as well as
/// appends past them). Dropped: none survive. Torn: those before a random cut point survive.
/// Reordered: all survive but those in a random hole, which keeps its durable bytes (zeros
/// past the durable length).
fn crash_image(
    durable: &[u8],
    live: &[u8],
    mode: CrashMode,
    next: &mut impl FnMut() -> u64,
) -> Vec<u8> {
    let len = durable.len().max(live.len());
    let differs = |i: usize| durable.get(i) != live.get(i);
    let Some(first) = (0..len).find(|i| differs(*i)) else {
        return durable.to_vec();
    };
    let last = (0..len).rev().find(|i| differs(*i)).unwrap_or(first);
    let span = (last - first + 1) as u64;
    let (keep_from, keep_to, hole) = match mode {
        CrashMode::DropUnsynced => return durable.to_vec(),
        CrashMode::TornPrefix(_) => {
            let cut = first + (next() % (span + 1)) as usize;
            (first, cut, None)
        }
        CrashMode::Reordered(_) => {
            let start = first + (next() % span) as usize;
            let hole_len = 1 + (next() % (last + 1 - start) as u64) as usize;
            (first, last + 1, Some((start, start + hole_len)))
        }
    };
    // The file is as long as what survived of it reaches (never shorter than durable).
    let mut image = durable.to_vec();
    let survived_end = (keep_from..keep_to)
        .rev()
        .find(|i| hole.is_none_or(|(h0, h1)| *i < h0 || *i >= h1) && live.get(*i).is_some())
        .map_or(0, |i| i + 1);
    if image.len() < survived_end {
        image.resize(survived_end, 0);
    }
    for i in keep_from..keep_to.min(survived_end.max(durable.len())) {
        if hole.is_some_and(|(h0, h1)| i >= h0 && i < h1) {
            continue;
        }
        if let Some(byte) = live.get(i) {
            if i < image.len() {
                image[i] = *byte;
            }
        }
    }
    image
}

impl IoFile for FaultFile {
    fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<usize> {
        let state = self.state.lock();
        let data = state.files.get(&self.inode).ok_or_else(eio)?;
        let start = (offset as usize).min(data.live.len());
        let n = buf.len().min(data.live.len() - start);
        buf[..n].copy_from_slice(&data.live[start..start + n]);
        Ok(n)
    }

    fn write_all_at(&self, buf: &[u8], offset: u64) -> io::Result<()> {
        if !self.writable {
            return Err(io::Error::from_raw_os_error(libc::EBADF));
        }
        let mut state = self.state.lock();
        state.mutate()?;
        if let Some(left) = state.space_left_bytes {
            if (buf.len() as u64) > left {
                // Like a real full disk: part of the write may land before ENOSPC.
                state.space_left_bytes = Some(0);
                let partial = left as usize;
                let data = state.files.get_mut(&self.inode).ok_or_else(eio)?;
                write_into(&mut data.live, &buf[..partial], offset);
                data.rewritten(offset as usize, offset as usize + partial);
                return Err(io::Error::from_raw_os_error(libc::ENOSPC));
            }
            state.space_left_bytes = Some(left - buf.len() as u64);
        }
        let data = state.files.get_mut(&self.inode).ok_or_else(eio)?;
        write_into(&mut data.live, buf, offset);
        data.rewritten(offset as usize, offset as usize + buf.len());
        Ok(())
    }

    fn sync_data(&self) -> io::Result<()> {
        let mut state = self.state.lock();
        let op = state.ops_count;
        let failed = state.mutate().is_err();
        if failed || matches!(state.fail_sync_at_op, Some(at) if op >= at) {
            if state.fsyncgate {
                // The pages that failed writeback are marked clean and dropped from it, so a
                // retried sync would report success without writing them.
                state
                    .files
                    .get_mut(&self.inode)
                    .ok_or_else(eio)?
                    .fail_writeback();
            }
            return Err(eio());
        }
        let data = state.files.get_mut(&self.inode).ok_or_else(eio)?;
        data.sync();
        Ok(())
    }

    fn len(&self) -> io::Result<u64> {
        let state = self.state.lock();
        Ok(state.files.get(&self.inode).ok_or_else(eio)?.live.len() as u64)
    }

    fn set_len(&self, len: u64) -> io::Result<()> {
        let mut state = self.state.lock();
        state.mutate()?;
        let data = state.files.get_mut(&self.inode).ok_or_else(eio)?;
        let before = data.live.len();
        data.live.resize(len as usize, 0);
        data.truncated(len as usize);
        if (len as usize) > before {
            // Extending writes zeros, which take part in writeback like any write.
            data.rewritten(before, len as usize);
        }
        Ok(())
    }
}

fn write_into(image: &mut Vec<u8>, buf: &[u8], offset: u64) {
    let offset = offset as usize;
    if image.len() < offset + buf.len() {
        image.resize(offset + buf.len(), 0);
    }
    image[offset..offset + buf.len()].copy_from_slice(buf);
}

fn not_found(path: &Path) -> io::Error {
    io::Error::new(
        io::ErrorKind::NotFound,
        format!("{} not found", path.display()),
    )
}

impl IoEngine for FaultIo {
    fn name(&self) -> &'static str {
        "fault"
    }

    fn open(&self, path: &Path, mode: OpenMode) -> io::Result<Arc<dyn IoFile>> {
        let mut state = self.state.lock();
        let inode = match (mode, state.live_names.get(path).copied()) {
            (OpenMode::CreateNew, Some(_)) => {
                return Err(io::Error::new(
                    io::ErrorKind::AlreadyExists,
                    path.display().to_string(),
                ))
            }
            (OpenMode::CreateNew, None) => {
                let parent = path.parent().unwrap_or(Path::new(""));
                if !state.dirs.contains(parent) {
                    return Err(not_found(parent));
                }
                state.mutate()?;
                let inode = state.next_inode;
                state.next_inode += 1;
                state.files.insert(inode, FileData::default());
                state.live_names.insert(path.to_path_buf(), inode);
                inode
            }
            (_, Some(inode)) => inode,
            (_, None) => return Err(not_found(path)),
        };
        Ok(Arc::new(FaultFile {
            state: Arc::clone(&self.state),
            inode,
            writable: mode != OpenMode::Read,
        }))
    }

    fn create_dir_all(&self, path: &Path) -> io::Result<()> {
        // Directories are modelled as always durable once made: the engine fsyncs the parent
        // after creating one, and losing an empty directory loses no data.
        let mut state = self.state.lock();
        let mut current = PathBuf::new();
        for part in path.components() {
            current.push(part);
            state.dirs.insert(current.clone());
        }
        Ok(())
    }

    fn read_dir(&self, path: &Path) -> io::Result<Vec<String>> {
        let state = self.state.lock();
        if !state.dirs.contains(path) {
            return Err(not_found(path));
        }
        let mut names: Vec<String> = state
            .live_names
            .keys()
            .chain(state.dirs.iter())
            .filter(|p| p.parent() == Some(path))
            .filter_map(|p| p.file_name().map(|n| n.to_string_lossy().into_owned()))
            .collect();
        names.sort();
        names.dedup();
        Ok(names)
    }

    fn exists(&self, path: &Path) -> bool {
        let state = self.state.lock();
        state.live_names.contains_key(path) || state.dirs.contains(path)
    }

    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        let mut state = self.state.lock();
        state.mutate()?;
        let inode = state
            .live_names
            .remove(from)
            .ok_or_else(|| not_found(from))?;
        state.live_names.insert(to.to_path_buf(), inode);
        Ok(())
    }

    fn remove_file(&self, path: &Path) -> io::Result<()> {
        let mut state = self.state.lock();
        state.mutate()?;
        state
            .live_names
            .remove(path)
            .ok_or_else(|| not_found(path))?;
        Ok(())
    }

    fn remove_dir_all(&self, path: &Path) -> io::Result<()> {
        let mut state = self.state.lock();
        state.mutate()?;
        state.live_names.retain(|p, _| !p.starts_with(path));
        state.durable_names.retain(|p, _| !p.starts_with(path));
        state.dirs.retain(|p| !p.starts_with(path));
        Ok(())
    }

    fn sync_dir(&self, path: &Path) -> io::Result<()> {
        let mut state = self.state.lock();
        state.mutate()?;
        let live: Vec<(PathBuf, Inode)> = state
            .live_names
            .iter()
            .filter(|(p, _)| p.parent() == Some(path))
            .map(|(p, i)| (p.clone(), *i))
            .collect();
        state.durable_names.retain(|p, _| p.parent() != Some(path));
        state.durable_names.extend(live);
        Ok(())
    }

    fn lock_exclusive(&self, _path: &Path) -> io::Result<Box<dyn std::any::Any + Send + Sync>> {
        // One process owns the in-memory file system by construction.
        Ok(Box::new(()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_failed_sync_drops_what_it_did_not_write_until_it_is_written_again() {
        let fs = FaultIo::new();
        fs.model_fsyncgate();
        let dir = Path::new("/d");
        fs.create_dir_all(dir).unwrap();
        let a = fs.open(&dir.join("a"), OpenMode::CreateNew).unwrap();
        fs.sync_dir(dir).unwrap();
        a.write_all_at(b"0123456789", 0).unwrap();
        a.sync_data().unwrap();
        a.write_all_at(b"abcdef", 2).unwrap();
        fs.fail_syncs_after_ops(0);
        assert!(a.sync_data().is_err());
        fs.heal();
        // Reads see the new bytes; a sync that succeeds does not write them.
        let mut buf = [0u8; 10];
        a.read_at(&mut buf, 0).unwrap();
        assert_eq!(&buf, b"01abcdef89");
        a.sync_data().unwrap();
        let crashed = fs.crash(None);
        assert_eq!(crashed.read_file(&dir.join("a")).unwrap(), b"0123456789");
        // Written again (in part), they are synced again; the rest stays lost.
        a.write_all_at(b"cd", 4).unwrap();
        a.sync_data().unwrap();
        let crashed = fs.crash(None);
        assert_eq!(crashed.read_file(&dir.join("a")).unwrap(), b"0123cd6789");
        // A cut drops lost bytes past it; bytes appended after it are synced as usual.
        a.set_len(3).unwrap();
        a.write_all_at(b"XYZ", 3).unwrap();
        a.sync_data().unwrap();
        let crashed = fs.crash(None);
        assert_eq!(crashed.read_file(&dir.join("a")).unwrap(), b"012XYZ");
    }

    #[test]
    fn unsynced_data_and_names_vanish_in_a_crash() {
        let fs = FaultIo::new();
        let dir = Path::new("/d");
        fs.create_dir_all(dir).unwrap();
        let a = fs.open(&dir.join("a"), OpenMode::CreateNew).unwrap();
        a.write_all_at(b"durable", 0).unwrap();
        a.sync_data().unwrap();
        fs.sync_dir(dir).unwrap();
        a.write_all_at(b"+lost", 7).unwrap();
        let b = fs.open(&dir.join("b"), OpenMode::CreateNew).unwrap();
        b.write_all_at(b"x", 0).unwrap();
        b.sync_data().unwrap(); // data synced, but the name never was

        let after = fs.crash(None);
        assert_eq!(after.read_file(&dir.join("a")).unwrap(), b"durable");
        assert!(after.read_file(&dir.join("b")).is_none());
    }

    #[test]
    fn countdown_fails_every_later_mutation() {
        let fs = FaultIo::new();
        fs.create_dir_all(Path::new("/d")).unwrap();
        let f = fs.open(Path::new("/d/f"), OpenMode::CreateNew).unwrap();
        fs.fail_after_ops(1);
        f.write_all_at(b"ok", 0).unwrap();
        assert!(f.sync_data().is_err());
        assert!(f.write_all_at(b"no", 2).is_err());
        fs.heal();
        f.sync_data().unwrap();
    }

    #[test]
    fn disk_full_writes_a_prefix_then_enospc() {
        let fs = FaultIo::new();
        fs.create_dir_all(Path::new("/d")).unwrap();
        let f = fs.open(Path::new("/d/f"), OpenMode::CreateNew).unwrap();
        fs.set_space_left(3);
        let err = f.write_all_at(b"hello", 0).unwrap_err();
        assert_eq!(err.raw_os_error(), Some(libc::ENOSPC));
        assert_eq!(f.len().unwrap(), 3);
    }
}
