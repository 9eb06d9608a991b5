//! annals-contract: the Dolittle Contracts v7.8.1 wire (the contract of Dolittle Runtime 9) as
//! annals speaks it, shared by everything that talks to heads or to other runtimes (the server,
//! and the event horizon in replication). It holds no state and opens no ports: the server
//! and replication own those.
//!
//! - `proto`: the generated wire types and service stubs, compiled by `build.rs` from our own
//!   files in `server/contract/proto/`.
//! - `api`: wire to domain and back, the one place for Guid byte order, Failures and
//!   committed events on the wire; stateless.
//! - `clock`: wall-clock time as the engine stores it (Unix nanoseconds).
//! - `legacy`, `proto_v5`: Contracts 5.4 heads (JavaScript SDK 17), served by the same
//!   services through one layer that rewrites their messages.
//! - `reverse_call`: the reverse-call protocol (the runtime calls the head over a stream the
//!   head opened): connect, pings, calls and answers, disconnects.
//! - [`Platform`]: this runtime's identity, which a reverse call's head must share.
//! - `processors`: what a stream processor is, and each kind's registration checked;
//!   `projections`: a projection's definition (key selectors, the .NET text of keys).
//!
//! Dependency direction: annals-server -> annals-replication -> annals-contract ->
//! annals-engine; nothing here knows the server.

#![warn(missing_docs)]
#![deny(unsafe_code)]

pub mod api;
pub mod clock;
pub mod legacy;
pub mod limits;
mod platform;
pub mod processors;
pub mod projections;
pub mod proto;
pub mod proto_v5;
pub mod reverse_call;

pub use crate::platform::Platform;
