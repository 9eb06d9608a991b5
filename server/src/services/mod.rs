//! The gRPC services, one module per area of the contract.

pub(crate) mod event_handlers;
pub(crate) mod event_store;
pub(crate) mod filters;
pub(crate) mod management;
pub(crate) mod platform;
pub(crate) mod processing_management;
