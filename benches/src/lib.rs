//! The library half of `annals-bench`: the suites, systems under test, data and reporting,
//! shared by the load tool (`src/main.rs`) and the criterion benches (`benches/`).
//!
//! Suites: [`engine`] (the storage engine against the raw group-commit limit and RocksDB),
//! [`aggregates`] (commits for and fetches of aggregates, against RocksDB and PostgreSQL 15),
//! [`tenants`] (opening time and memory at 1, 100 and 1000 tenants), [`grpc`] (the `annals`
//! server over gRPC against the raw limit), [`delivery`] (event handler delivery to one head),
//! [`horizon`] (the event horizon between two servers against the consumer's own commits),
//! [`mongo`] (the MongoDB export against the engine's catch-up read), [`reopen`] (opening a
//! store after a crash, at two log sizes).
//! A new suite is a module with a clap `Args` struct
//! (flattening [`suite::SuiteArgs`] for the common options) and a `run` function, using
//! [`driver::run_appends`] for closed-loop load, [`data`] for events and [`report`] for
//! output; the systems ([`annals`], [`raw`], [`rocks`]) are reusable as they are.
//!
//! Figures are only comparable within one run (design.md section 7): the disk is shared and
//! noisy.

pub mod aggregates;
pub mod annals;
pub(crate) mod ceiling;
pub(crate) mod cpu;
pub mod data;
pub mod delivery;
pub mod driver;
pub mod engine;
pub mod grpc;
pub mod horizon;
pub mod mongo;
pub mod pg;
pub mod projections;
pub mod raw;
pub mod reopen;
pub mod report;
pub mod rocks;
pub mod suite;
pub mod tenants;
