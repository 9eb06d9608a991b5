//! annals-server: the runtime Dolittle heads connect to. It speaks Dolittle Contracts v7.8.1
//! (the contract of Dolittle Runtime 9) over gRPC on top of the annals engine.
//!
//! A request comes in through `server` (listeners), is served by one of `services` (every
//! unary rpc through `services::request`), is checked and converted by `api`, and is carried
//! out against the engine with what `runtime` shares; event handlers and filters hand their
//! streams to `processing` over `reverse_call`.
//!
//! From annals-contract (the wire, shared with replication), re-exported under the same names:
//! - `proto`: the generated wire types and service stubs (public: clients in tests and the
//!   load tool are built from them).
//! - `api`: wire to domain and back, the one place for Guid byte order, Failures and
//!   committed events on the wire; stateless.
//! - `reverse_call`: the reverse-call protocol (the runtime calls the head over a stream the
//!   head opened): connect, pings, calls and answers, disconnects.
//!
//! The server's own modules:
//! - `services`: the gRPC services (event store, platform, management, event handlers and
//!   filters, processing management) and the request step the unary ones share.
//! - `processing`: event handlers and filters: the connected processors, their delivery
//!   loops, positions and failures.
//! - `runtime`: what every service shares (engine, configured tenants, metrics, processors).
//! - `metrics`: the Prometheus series.
//! - `clock` (from annals-contract, shared with the event horizon): wall-clock time as stored
//!   (Unix nanoseconds).
//! - `blocking`: runs the engine's blocking calls on tokio's blocking threads.
//! - `config`: configuration compatible with the original (files, environment, flags).
//! - `server`: start-up: listeners, gRPC health and reflection, the ready file.
//! - `web`: the HTTP ports: health, status page, metrics text.
//! - `mongo`: `annals export`, a tenant as the original's MongoDB database (annals-mongo).
//! - `disk`: the data directory's free space, watched and warned of before it runs out.
//! - `connections`: what one client may hold of a gRPC port (connections, silence, streams).
//! - `console`: the web console (web port): tenants, event logs, aggregates, processors,
//!   plots, the event horizon.
//! - `rest`: the original's REST twin of the event store and its OpenAPI document (web port).
//! - `shutdown`: graceful shutdown: signals, the grace period, closing the engine.

#![warn(missing_docs)]
#![deny(unsafe_code)]

mod accept;
mod blocking;
pub mod cli;
pub mod config;
mod connections;
mod console;
mod disk;
mod heal;
mod joint;
pub mod logging;
mod metrics;
pub mod mongo;
mod processing;
mod projections;
mod rest;
mod runtime;
mod server;
mod services;
mod shutdown;
mod web;

/// The id a 5.4 head sees for an event source or partition that is not a Guid.
pub use annals_contract::legacy::legacy_id;
/// The Dolittle Contracts v7.8.1 wire types and service stubs (annals-contract's), for
/// clients in tests and the load tool.
pub use annals_contract::proto;
/// The Dolittle Contracts v5.4.0 wire types and clients (JavaScript SDK 17's generation),
/// which the legacy port speaks; for clients in tests.
pub use annals_contract::proto_v5;
use annals_contract::{api, clock, legacy, reverse_call};

pub use crate::config::{ConfigError, RuntimeConfig, Sources};
pub use crate::connections::ConnectionLimits;
pub use crate::disk::LowSpace;
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
