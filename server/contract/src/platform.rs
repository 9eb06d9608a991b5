//! This runtime's identity as the platform sees it: what the Handshake answers with, and what
//! a reverse call's head must match (its microservice and environment). The server reads it
//! from its configuration (`platform:*` keys); here it is only a value.

use uuid::Uuid;

/// Identity of this runtime as the platform sees it; reverse-call registrations must match
/// its microservice id and environment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Platform {
    /// `platform:customerID`.
    pub customer_id: Uuid,
    /// `platform:customerName`.
    pub customer_name: String,
    /// `platform:applicationID`.
    pub application_id: Uuid,
    /// `platform:applicationName`.
    pub application_name: String,
    /// `platform:microserviceID`.
    pub microservice_id: Uuid,
    /// `platform:microserviceName`.
    pub microservice_name: String,
    /// `platform:environment`.
    pub environment: String,
}
