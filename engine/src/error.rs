//! The engine's one error type, defined with its other plain types in `annals-engine-types`
//! (buildable without RocksDB) and used from here.

pub use annals_engine_types::{Error, Result};
