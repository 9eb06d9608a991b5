//! Projections with Runtime 8's semantics: a head folds the events of its types into a
//! read-model state per key, and the runtime keeps the states, serves them, and keeps each
//! key's history so it can answer what a projection said as of any event-log position.
//!
//! - The definition a head registers (key selectors, initial state), how it is stored and
//!   compared, and how an event's key is found are annals-contract's `projections` (pure
//!   values, fuzzed without RocksDB), re-exported here.
//! - `states` holds one tenant's states not yet durable, and writes them with the position.
//! - `history` keeps each key's past states; `retention` trims them.
//!
//! A projection is a processor of kind `Projection` over the scope's event log, run by
//! `processing` like event handlers and filters: one unpartitioned processor per tenant,
//! one event in flight, its position and the states it changed written in one atomic batch.

pub(crate) mod history;
pub(crate) mod retention;
pub(crate) mod states;

pub(crate) use annals_contract::projections::{
    dotnet, Definition, KeySelector, EVENT_LOG_PARTITION,
};
