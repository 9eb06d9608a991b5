//! The boundary between the wire and the domain: every request is turned into engine types
//! (and checked) here on receipt, and every answer built here, so services hold no encoding
//! rules of their own. Nothing here holds state or touches the engine: these are conversions.
//!
//! - `convert`: requests to engine types (checked whole, a bad field named in a Failure), and
//!   the small values (execution contexts, event types, times) back to the wire.
//! - `commit_request`: a Commit request decoded and checked in one pass (prost and `convert`
//!   decide whatever it is not sure of).
//! - `committed`: committed events on the wire, the one place they are built.
//! - `wire`: twins of contract messages that carry a shared sub-message encoded once.
//! - `ids`: Guid byte order, the one place it is handled.
//! - `json_object`: the quick check that a content is a JSON object (`serde_json` decides
//!   whatever it is not sure of).
//! - `failure`: Dolittle Failures and in-band answers; engine errors become Failures here.
//! - `in_band`: which responses carry a Failure in band (one `InBand` impl each).
//! - `handshake`: the Handshake rpc's checks (fields, contracts compatibility).
//! - `management`: what management requests and projection-store queries name, checked.
//! - `event_horizon`: a head's subscription and a consumer runtime's arguments, checked.

pub mod commit_request;
pub mod committed;
pub mod convert;
pub mod event_horizon;
pub mod failure;
pub mod handshake;
pub mod ids;
mod in_band;
pub mod json_object;
pub mod management;
pub mod wire;
