//! `annals-bench`: the load tool. Each subcommand is a suite that runs annals and its
//! baselines side by side, interleaved in one run, and prints one JSON line per measurement on
//! stdout (then one line of medians and ratios per shape); progress goes to stderr.

use annals_bench::{
    aggregates, delivery, engine, grpc, horizon, mongo, projections, reopen, tenants,
};
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
    /// Commits for aggregates and fetches of aggregates against a plain commit, RocksDB alone
    /// and PostgreSQL 15 (a throwaway cluster started by the tool).
    Aggregates(aggregates::AggregatesArgs),
    /// The `annals` server over gRPC: commits (N clients x B events), commits for aggregates
    /// and fetches, against the raw group-commit limit, the gRPC ceiling and the durable
    /// ceiling in the same run.
    Grpc(grpc::GrpcArgs),
    /// Event handler delivery to one head: catch-up and live, strictly ordered and with
    /// concurrency 16, and a catch-up of 1 M events.
    Delivery(delivery::DeliveryArgs),
    /// The event horizon between two servers: a backlog of public events (with the configured
    /// window and stop-and-wait) against the consumer's own commit rate, and live latency.
    Horizon(horizon::HorizonArgs),
    /// The MongoDB export (`annals export`) against the engine's catch-up read, with its
    /// peak memory at two sizes.
    Mongo(mongo::MongoArgs),
    /// A projection replaying the log against event handler delivery of the same events,
    /// with the disk cost of its states' history.
    Projections(projections::ProjectionsArgs),
    /// Opening time and resident memory of a store with 1, 100 and 1000 tenants.
    Tenants(tenants::TenantsArgs),
    /// (Internal) one probe of `tenants`, in a fresh process.
    #[command(hide = true)]
    TenantsProbe(tenants::ProbeArgs),
    /// Opening a store after a crash (SIGKILL during appends) and its first commit, with
    /// resident memory, at 1 M and 10 M events.
    Reopen(reopen::ReopenArgs),
    /// (Internal) one process of `reopen`: the appender that is killed, or the opener.
    #[command(hide = true)]
    ReopenProbe(reopen::ReopenProbeArgs),
}

fn main() -> Result<()> {
    let cli = Cli::parse();
    match cli.suite {
        Suite::Engine(args) => engine::run(&args),
        Suite::Aggregates(args) => aggregates::run(&args),
        Suite::Grpc(args) => grpc::run(&args),
        Suite::Delivery(args) => delivery::run(&args),
        Suite::Horizon(args) => horizon::run(&args),
        Suite::Mongo(args) => mongo::run(&args),
        Suite::Projections(args) => projections::run(&args),
        Suite::Tenants(args) => tenants::run(&args),
        Suite::TenantsProbe(args) => tenants::probe(&args),
        Suite::Reopen(args) => reopen::run(&args),
        Suite::ReopenProbe(args) => reopen::probe(&args),
    }
}
