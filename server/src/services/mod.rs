//! The gRPC services, one module per area of the contract.

pub(crate) mod event_store;
pub(crate) mod management;
pub(crate) mod platform;
