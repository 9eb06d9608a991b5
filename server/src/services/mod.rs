//! The gRPC services, one module per area of the contract. Every unary rpc goes through
//! `request` (tenant, metrics, in-band answer); the reverse-call services (event handlers,
//! filters) hand their streams to `processing`.

pub(crate) mod event_handlers;
pub(crate) mod event_store;
pub(crate) mod filters;
pub(crate) mod management;
pub(crate) mod platform;
pub(crate) mod processing_management;
pub(crate) mod request;
