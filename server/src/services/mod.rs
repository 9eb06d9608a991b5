//! The gRPC services, one module per area of the contract. Every unary rpc goes through
//! `request` (tenant, metrics, in-band answer); the reverse-call services (event handlers,
//! filters) share one connect path, `processor_session`, which hands their streams to
//! `processing`. The event horizon's Subscriptions service hands its requests to
//! annals-replication.

pub(crate) mod embeddings;
pub(crate) mod event_handlers;
pub(crate) mod event_horizon;
pub(crate) mod event_store;
pub(crate) mod event_store_wire;
pub(crate) mod fetch_answers;
pub(crate) mod filters;
pub(crate) mod management;
pub(crate) mod platform;
pub(crate) mod processing_management;
pub(crate) mod processor_session;
pub(crate) mod projection_history;
pub(crate) mod projection_store;
pub(crate) mod projections;
pub(crate) mod projections_management;
pub(crate) mod request;
