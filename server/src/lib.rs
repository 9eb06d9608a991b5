//! annals-server: the runtime Dolittle heads connect to. It speaks Dolittle Contracts v7.8.1
//! (the contract of Dolittle Runtime 9) over gRPC on top of the annals engine.
//!
//! - `proto`: the generated wire types and service stubs (public: clients in tests and the
//!   load tool are built from them).
//! - `api`: wire to domain and back, the one place for Guid byte order and Failures.
//! - `services`: the event store, platform and management services.
//! - `config`: configuration compatible with the original (files, environment, flags).
//! - `server`: listeners, health, reflection, metrics, graceful shutdown.

#![warn(missing_docs)]
#![deny(unsafe_code)]

mod api;
mod clock;
pub mod config;
mod metrics;
mod processing;
pub mod proto;
mod reverse_call;
mod runtime;
mod server;
mod services;

pub use crate::config::{ConfigError, RuntimeConfig, Sources};
pub use crate::server::{serve, BoundPorts, ServeOptions};

/// Converts between domain UUIDs and the wire's `dolittle.protobuf.Uuid` (.NET Guid byte
/// order), for clients built from [`proto`].
pub mod wire {
    use crate::proto::dolittle::protobuf::Uuid as WireUuid;

    /// The wire form of an id.
    pub fn uuid(id: uuid::Uuid) -> WireUuid {
        crate::api::ids::to_wire(id)
    }

    /// The id of a wire Uuid, if it has 16 bytes.
    pub fn from_uuid(id: &WireUuid) -> Option<uuid::Uuid> {
        crate::api::ids::from_wire("id", id).ok()
    }
}
