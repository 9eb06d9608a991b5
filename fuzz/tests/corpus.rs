//! Every harness over every file of its checked-in corpus (`fuzz/corpus/<target>/`), on stable:
//! the seeds and any inputs promoted from fuzzing runs stay regression tests without
//! libFuzzer. Also runs bit-flipped variants of the decoder seeds, a cheap deterministic fuzz.
//!
//! A panic on an engine thread (the sealer) is caught by a panic hook and fails the test too:
//! the engine joins that thread without looking at its result.

use std::{
    fs,
    panic::{self, AssertUnwindSafe},
    path::{Path, PathBuf},
    sync::{
        atomic::{AtomicUsize, Ordering},
        Once,
    },
};

type Harness = fn(&[u8]);

/// Every fuzz target and its harness; `fuzz_targets/` must list the same names.
const TARGETS: &[(&str, Harness)] = &[
    ("segment_header", annals_fuzz::segment_header),
    ("record_frame", annals_fuzz::record_frame),
    ("record_payload", annals_fuzz::record_payload),
    ("seal_trailer", annals_fuzz::seal_trailer),
    ("open_log", annals_fuzz::open_log),
    ("ops", annals_fuzz::ops),
];

static ENGINE_THREAD_PANICS: AtomicUsize = AtomicUsize::new(0);

fn watch_engine_threads() {
    static HOOK: Once = Once::new();
    HOOK.call_once(|| {
        let default = panic::take_hook();
        panic::set_hook(Box::new(move |info| {
            if std::thread::current().name().is_some_and(|n| n.starts_with("annals-")) {
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
    let dir = manifest_dir().join("corpus").join(target);
    let mut files: Vec<PathBuf> = fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("reading {}: {e}", dir.display()))
        .map(|entry| entry.expect("directory entry").path())
        .filter(|p| p.is_file() && !p.file_name().is_some_and(|n| n.to_string_lossy().starts_with('.')))
        .collect();
    files.sort();
    assert!(!files.is_empty(), "{} holds no corpus files", dir.display());
    files
}

/// Runs `harness` on `data`; a panic (here or on an engine thread) fails with `what`.
fn run_one(harness: Harness, data: &[u8], what: &dyn Fn() -> String) {
    watch_engine_threads();
    let before = ENGINE_THREAD_PANICS.load(Ordering::SeqCst);
    if panic::catch_unwind(AssertUnwindSafe(|| harness(data))).is_err() {
        panic!("{} panicked (message above)", what());
    }
    assert_eq!(
        ENGINE_THREAD_PANICS.load(Ordering::SeqCst),
        before,
        "an engine thread panicked while running {} (message above)",
        what()
    );
}

fn run_corpus(target: &str) {
    let harness = TARGETS.iter().find(|(t, _)| *t == target).expect("a listed target").1;
    for path in corpus_files(target) {
        let data = fs::read(&path).expect("reading a corpus file");
        run_one(harness, &data, &|| format!("{target} on {}", path.display()));
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
fn open_log_corpus() {
    run_corpus("open_log");
}

#[test]
fn ops_corpus() {
    run_corpus("ops");
}

#[test]
fn every_fuzz_target_has_a_harness_and_a_corpus() {
    let dir = manifest_dir().join("fuzz_targets");
    let mut names: Vec<String> = fs::read_dir(&dir)
        .expect("reading fuzz_targets/")
        .map(|e| e.expect("directory entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "rs"))
        .map(|p| p.file_stem().expect("a file name").to_string_lossy().into_owned())
        .collect();
    names.sort();
    let mut listed: Vec<String> = TARGETS.iter().map(|(t, _)| (*t).to_owned()).collect();
    listed.sort();
    assert_eq!(names, listed, "fuzz_targets/ and TARGETS disagree");
    for name in &names {
        assert!(Path::new(&manifest_dir().join("corpus").join(name)).is_dir(), "no corpus for {name}");
    }
}

/// Single and double bit flips of every decoder seed (the mode byte included), a few thousand
/// inputs per target: a quick deterministic fuzz that runs wherever the tests do.
#[test]
fn decoders_survive_bit_flips_of_their_seeds() {
    for (target, harness) in &TARGETS[..4] {
        for path in corpus_files(target) {
            let seed = fs::read(&path).expect("reading a corpus file");
            let bits = seed.len() * 8;
            for bit in 0..bits {
                let mut data = seed.clone();
                data[bit / 8] ^= 1 << (bit % 8);
                let other = (bit * 7919 + 13) % bits;
                run_one(*harness, &data, &|| format!("{target} on {} with bit {bit} flipped", path.display()));
                data[other / 8] ^= 1 << (other % 8);
                run_one(*harness, &data, &|| {
                    format!("{target} on {} with bits {bit} and {other} flipped", path.display())
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
        assert!(seeds.iter().any(|s| s.target == *target), "no seeds for {target}");
    }
    let total: usize = seeds.iter().map(|s| s.bytes.len()).sum();
    assert!(total < 200 << 10, "the seed corpus grew to {total} bytes");
}
