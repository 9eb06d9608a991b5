//! Every harness over every file of its checked-in corpus (`fuzz/corpus/<target>/`), on stable:
//! the seeds and any inputs promoted from fuzzing runs stay regression tests without
//! libFuzzer. Also runs bit-flipped variants of the decoder seeds, a cheap deterministic fuzz.
//!
//! A panic on an engine thread (the sealer) is caught by a panic hook and fails the test too:
//! the engine joins that thread without looking at its result. Like libFuzzer's
//! `-malloc_limit_mb`, the test binary's allocator refuses any single allocation above
//! [`ALLOCATION_BYTES_MAX`], which aborts the run: no input of these small harnesses needs that
//! much, so a length read from the input must have been trusted.
//!
//! `fuzz/regressions/<target>/` holds inputs that reproduce engine bugs not fixed yet; the
//! ignored test [`open_engine_bugs_are_fixed`] runs them (see `fuzz/regressions/README.md`).

use std::{
    alloc::{GlobalAlloc, Layout, System},
    fs,
    panic::{self, AssertUnwindSafe},
    path::{Path, PathBuf},
    sync::{
        atomic::{AtomicUsize, Ordering},
        Once,
    },
};

type Harness = fn(&[u8]);

/// The largest single allocation the harnesses may make (libFuzzer's default limit is 2 GiB;
/// the harnesses' configuration keeps every legitimate buffer far below this).
const ALLOCATION_BYTES_MAX: usize = 256 << 20;

/// The system allocator, failing allocations above [`ALLOCATION_BYTES_MAX`].
struct CappedAllocator;

// SAFETY: every method forwards to `System` unchanged or returns null, which `GlobalAlloc`
// allows for any allocation request; deallocation always forwards.
unsafe impl GlobalAlloc for CappedAllocator {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if layout.size() > ALLOCATION_BYTES_MAX {
            return std::ptr::null_mut();
        }
        // SAFETY: the caller upholds `alloc`'s contract for `layout`; it is passed on as is.
        unsafe { System.alloc(layout) }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        if layout.size() > ALLOCATION_BYTES_MAX {
            return std::ptr::null_mut();
        }
        // SAFETY: as in `alloc`.
        unsafe { System.alloc_zeroed(layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        if new_size > ALLOCATION_BYTES_MAX {
            return std::ptr::null_mut();
        }
        // SAFETY: `ptr` was allocated by `System` with `layout` (every allocation of this
        // allocator is), and the caller upholds `realloc`'s contract.
        unsafe { System.realloc(ptr, layout, new_size) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: `ptr` was allocated by `System` with `layout`.
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static ALLOCATOR: CappedAllocator = CappedAllocator;

/// Every fuzz target and its harness; `fuzz_targets/` must list the same names.
const TARGETS: &[(&str, Harness)] = &[
    ("segment_header", annals_fuzz::segment_header),
    ("record_frame", annals_fuzz::record_frame),
    ("record_payload", annals_fuzz::record_payload),
    ("seal_trailer", annals_fuzz::seal_trailer),
    ("compact_block", annals_fuzz::compact_block),
    ("open_log", annals_fuzz::open_log),
    ("ops", annals_fuzz::ops),
    ("requests", annals_fuzz::requests),
    ("reverse_call", annals_fuzz::reverse_call),
    ("json_object", annals_fuzz::json_object),
];

static ENGINE_THREAD_PANICS: AtomicUsize = AtomicUsize::new(0);

fn watch_engine_threads() {
    static HOOK: Once = Once::new();
    HOOK.call_once(|| {
        let default = panic::take_hook();
        panic::set_hook(Box::new(move |info| {
            if std::thread::current()
                .name()
                .is_some_and(|n| n.starts_with("annals-"))
            {
                ENGINE_THREAD_PANICS.fetch_add(1, Ordering::SeqCst);
            }
            default(info);
        }));
    });
}

fn manifest_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn corpus_files(target: &str) -> Vec<PathBuf> {
    let files = input_files(&manifest_dir().join("corpus").join(target));
    assert!(!files.is_empty(), "the corpus of {target} holds no files");
    files
}

/// The files of `dir` (none when it does not exist), sorted, dot files skipped.
fn input_files(dir: &Path) -> Vec<PathBuf> {
    if !dir.exists() {
        return Vec::new();
    }
    let mut files: Vec<PathBuf> = fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("reading {}: {e}", dir.display()))
        .map(|entry| entry.expect("directory entry").path())
        .filter(|p| {
            p.is_file()
                && !p
                    .file_name()
                    .is_some_and(|n| n.to_string_lossy().starts_with('.'))
        })
        .collect();
    files.sort();
    files
}

/// Runs `harness` on `data`; a panic (here or on an engine thread) fails with `what`.
fn run_one(harness: Harness, data: &[u8], what: &dyn Fn() -> String) {
    watch_engine_threads();
    let before = ENGINE_THREAD_PANICS.load(Ordering::SeqCst);
    let outcome = panic::catch_unwind(AssertUnwindSafe(|| harness(data)));
    assert!(outcome.is_ok(), "{} panicked (message above)", what());
    assert_eq!(
        ENGINE_THREAD_PANICS.load(Ordering::SeqCst),
        before,
        "an engine thread panicked while running {} (message above)",
        what()
    );
}

fn run_corpus(target: &str) {
    let harness = TARGETS
        .iter()
        .find(|(t, _)| *t == target)
        .expect("a listed target")
        .1;
    for path in corpus_files(target) {
        let data = fs::read(&path).expect("reading a corpus file");
        run_one(harness, &data, &|| {
            format!("{target} on {}", path.display())
        });
    }
}

#[test]
fn segment_header_corpus() {
    run_corpus("segment_header");
}

#[test]
fn record_frame_corpus() {
    run_corpus("record_frame");
}

#[test]
fn record_payload_corpus() {
    run_corpus("record_payload");
}

#[test]
fn seal_trailer_corpus() {
    run_corpus("seal_trailer");
}

#[test]
fn compact_block_corpus() {
    run_corpus("compact_block");
}

#[test]
fn open_log_corpus() {
    run_corpus("open_log");
}

#[test]
fn ops_corpus() {
    run_corpus("ops");
}

#[test]
fn requests_corpus() {
    run_corpus("requests");
}

#[test]
fn reverse_call_corpus() {
    run_corpus("reverse_call");
}

#[test]
fn json_object_corpus() {
    run_corpus("json_object");
}

#[test]
fn every_fuzz_target_has_a_harness_and_a_corpus() {
    let dir = manifest_dir().join("fuzz_targets");
    let mut names: Vec<String> = fs::read_dir(&dir)
        .expect("reading fuzz_targets/")
        .map(|e| e.expect("directory entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "rs"))
        .map(|p| {
            p.file_stem()
                .expect("a file name")
                .to_string_lossy()
                .into_owned()
        })
        .collect();
    names.sort();
    let mut listed: Vec<String> = TARGETS.iter().map(|(t, _)| (*t).to_owned()).collect();
    listed.sort();
    assert_eq!(names, listed, "fuzz_targets/ and TARGETS disagree");
    for name in &names {
        assert!(
            Path::new(&manifest_dir().join("corpus").join(name)).is_dir(),
            "no corpus for {name}"
        );
    }
}

/// Single and double bit flips of every decoder seed (the mode byte included), a few thousand
/// inputs per target: a quick deterministic fuzz that runs wherever the tests do.
#[test]
fn decoders_survive_bit_flips_of_their_seeds() {
    for (target, harness) in &TARGETS[..5] {
        for path in corpus_files(target) {
            let seed = fs::read(&path).expect("reading a corpus file");
            let bits = seed.len() * 8;
            for bit in 0..bits {
                let mut data = seed.clone();
                data[bit / 8] ^= 1 << (bit % 8);
                let other = (bit * 7919 + 13) % bits;
                run_one(*harness, &data, &|| {
                    format!("{target} on {} with bit {bit} flipped", path.display())
                });
                data[other / 8] ^= 1 << (other % 8);
                run_one(*harness, &data, &|| {
                    format!(
                        "{target} on {} with bits {bit} and {other} flipped",
                        path.display()
                    )
                });
            }
        }
    }
}

/// The seed generator still runs (it is only invoked by hand otherwise) and yields seeds
/// for every target.
#[test]
fn seed_generator_covers_every_target() {
    let seeds = annals_fuzz::seeds::seed_corpus();
    for (target, _) in TARGETS {
        assert!(
            seeds.iter().any(|s| s.target == *target),
            "no seeds for {target}"
        );
    }
    let total: usize = seeds.iter().map(|s| s.bytes.len()).sum();
    assert!(total < 200 << 10, "the seed corpus grew to {total} bytes");
}

/// Inputs that reproduce engine bugs found by fuzzing and not fixed yet. Each must pass once
/// its bug is fixed; then move it into `fuzz/corpus/<target>/`, where the corpus tests and
/// libFuzzer keep it as a regression seed (a crashing corpus file would stop every libFuzzer
/// run at start-up, and fail the corpus tests, hence the separate directory).
#[test]
#[ignore = "reproduces open engine bugs, see fuzz/regressions/README.md"]
fn open_engine_bugs_are_fixed() {
    let mut failing = Vec::new();
    // Backwards, so the `ops` inputs report before the `open_log` one aborts the run at the
    // allocation cap.
    for (target, harness) in TARGETS.iter().rev() {
        for path in input_files(&manifest_dir().join("regressions").join(target)) {
            let data = fs::read(&path).expect("reading a regression input");
            let outcome = panic::catch_unwind(AssertUnwindSafe(|| harness(&data)));
            if outcome.is_err() {
                failing.push(path.display().to_string());
            }
        }
    }
    assert!(
        failing.is_empty(),
        "still failing (messages above):\n{}",
        failing.join("\n")
    );
}
