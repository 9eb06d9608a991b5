//! `annals-bench`: the load tool. Each subcommand is a suite that runs annals and its
//! baselines side by side, interleaved in one run, and prints one JSON line per measurement on
//! stdout (then one line of medians and ratios per shape); progress goes to stderr.

use annals_bench::engine;
use anyhow::Result;
use clap::{Parser, Subcommand};

/// annals load tool: benchmarks annals against baselines measured in the same run.
#[derive(Debug, Parser)]
#[command(name = "annals-bench", version)]
struct Cli {
    #[command(subcommand)]
    suite: Suite,
}

#[derive(Debug, Subcommand)]
enum Suite {
    /// The storage engine: appends (group commit) and catch-up reads against the raw
    /// group-commit limit and RocksDB.
    Engine(engine::EngineArgs),
}

fn main() -> Result<()> {
    let cli = Cli::parse();
    match cli.suite {
        Suite::Engine(args) => engine::run(&args),
    }
}
