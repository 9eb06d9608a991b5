//! Rewrites the seed corpus: `cargo run --manifest-path fuzz/Cargo.toml --example gen_corpus`.
//!
//! Replaces every `corpus/<target>/seed-*` file with the output of
//! `annals_fuzz::seeds::seed_corpus()`; other files (inputs promoted from fuzzing runs,
//! regression inputs) are left alone.

use std::{collections::BTreeSet, fs, io, path::Path};

fn main() -> io::Result<()> {
    let corpus = Path::new(env!("CARGO_MANIFEST_DIR")).join("corpus");
    let seeds = annals_fuzz::seeds::seed_corpus();
    let targets: BTreeSet<&str> = seeds.iter().map(|s| s.target).collect();
    for target in &targets {
        let dir = corpus.join(target);
        fs::create_dir_all(&dir)?;
        for entry in fs::read_dir(&dir)? {
            let entry = entry?;
            if entry.file_name().to_string_lossy().starts_with("seed-") {
                fs::remove_file(entry.path())?;
            }
        }
    }
    let mut total_bytes = 0;
    for seed in &seeds {
        let path = corpus.join(seed.target).join(format!("seed-{}", seed.name));
        fs::write(&path, &seed.bytes)?;
        total_bytes += seed.bytes.len();
    }
    eprintln!(
        "wrote {} seeds for {} targets, {total_bytes} bytes, to {}",
        seeds.len(),
        targets.len(),
        corpus.display()
    );
    Ok(())
}
