//! The gRPC services, one module per area of the contract; `processor_session` is the
//! connect path the event handler and filter services share.

pub(crate) mod event_handlers;
pub(crate) mod event_store;
pub(crate) mod filters;
pub(crate) mod management;
pub(crate) mod platform;
pub(crate) mod processing_management;
pub(crate) mod processor_session;
