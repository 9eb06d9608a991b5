//! annals-replication: the event horizon. A microservice's public streams are served to other
//! runtimes (the producer side), and this runtime's subscriptions to other microservices'
//! public streams are written into scoped event logs of its tenants (the consumer side).
//!
//! - `producer`: `dolittle.runtime.eventhorizon.Consumer/Subscribe` on the public port: a
//!   consumer runtime asks for one partition of a public stream from a position; the producer
//!   checks its consent and sends the events, several ahead of the acknowledgements.
//! - `consumer`: subscriptions a head asks for (`dolittle.runtime.eventhorizon.Subscriptions`),
//!   each a task that connects to the producer, writes what it receives into the scope's log
//!   together with its position, acknowledges what is durable, and reconnects after any cut.
//! - `config`: consents, producer addresses and the window, in the original's terms.
//! - `failures`: the original's failure ids and reasons.
//! - `status`: what each side reports of its subscriptions (metrics, the status page).
//!
//! Dependency direction: the server uses this crate; this crate uses the engine's public API
//! and the wire types and reverse-call machinery of annals-contract, never the server.

#![warn(missing_docs)]
#![deny(unsafe_code)]

mod blocking;
mod config;
mod consumer;
mod failures;
mod producer;
mod status;

use std::collections::HashMap;
use std::sync::Arc;

use annals_engine::Tenant;
use uuid::Uuid;

pub use crate::config::{Consent, ConsumerTls, HorizonConfig, ProducerAddress};
pub use crate::consumer::{Consumer, SubscriptionRequest};
pub use crate::producer::Producer;
pub use crate::status::{ServedSnapshot, SubscriptionSnapshot};

/// This runtime's configured tenants, by id: the only tenants either side serves.
pub type Tenants = Arc<HashMap<Uuid, Arc<Tenant>>>;
