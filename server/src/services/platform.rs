//! The small services of the private port: Handshake, Tenants, EventTypes (registration),
//! AggregateRoots (alias registration) and Resources.
//!
//! Registrations are persisted (the original keeps them in memory only and forgets them on
//! restart); as there, they are keyed by id, the last registration wins, and one without an
//! alias is listed as "No alias".

use std::sync::Arc;

use tonic::{Request, Response, Status};
use uuid::Uuid;

use crate::api::convert;
use crate::api::failure::{id, Failure, InBand};
use crate::api::handshake::{check_handshake, version, version_text, CONTRACTS_VERSION};
use crate::api::ids;
use crate::blocking::blocking;
use crate::proto::dolittle::artifacts::Artifact;
use crate::proto::dolittle::runtime::aggregates::aggregate_roots_server::AggregateRoots;
use crate::proto::dolittle::runtime::aggregates::{
    AggregateRootAliasRegistrationRequest, AggregateRootAliasRegistrationResponse,
};
use crate::proto::dolittle::runtime::events::event_types_server::EventTypes;
use crate::proto::dolittle::runtime::events::{
    EventTypeRegistrationRequest, EventTypeRegistrationResponse,
};
use crate::proto::dolittle::runtime::handshake::handshake_server::Handshake;
use crate::proto::dolittle::runtime::handshake::{HandshakeRequest, HandshakeResponse};
use crate::proto::dolittle::runtime::resources::resources_server::Resources;
use crate::proto::dolittle::runtime::resources::{GetMongoDbResponse, GetRequest};
use crate::proto::dolittle::runtime::tenancy::tenants_server::Tenants;
use crate::proto::dolittle::runtime::tenancy::{GetAllRequest, GetAllResponse, Tenant};
use crate::proto::dolittle::services::CallRequestContext;
use crate::proto::dolittle::versioning::Version;
use crate::runtime::Runtime;
use crate::services::request::{self, Call};

/// What an alias-less registration is listed as (the original's text).
pub(crate) const NO_ALIAS: &str = "No alias";

/// The private port's platform services (one value serves them all).
#[derive(Clone)]
pub(crate) struct PlatformServices {
    runtime: Arc<Runtime>,
}

impl PlatformServices {
    pub(crate) fn new(runtime: Arc<Runtime>) -> PlatformServices {
        PlatformServices { runtime }
    }

    /// Registers the alias of an artifact (an event type, an aggregate root) that a request
    /// names in its field `field`; a request without an alias registers [`NO_ALIAS`].
    async fn register_artifact<R: InBand<()>>(
        &self,
        rpc: &'static str,
        context: Option<&CallRequestContext>,
        (field, artifact): (&str, Option<&Artifact>),
        alias: Option<String>,
        register: fn(&Runtime, Uuid, &str) -> Result<(), Failure>,
    ) -> Result<Response<R>, Status> {
        let runtime = Arc::clone(&self.runtime);
        let work = async {
            // Registrations are not for one tenant, but their call context is checked all
            // the same.
            convert::call_context(context)?;
            let artifact = convert::event_type(field, artifact)?;
            let alias = alias.unwrap_or_else(|| NO_ALIAS.to_owned());
            blocking(move || register(&runtime, artifact.id, &alias)).await
        };
        request::unary(&self.runtime, rpc, work).await
    }
}

#[tonic::async_trait]
impl Handshake for PlatformServices {
    async fn handshake(
        &self,
        request: Request<HandshakeRequest>,
    ) -> Result<Response<HandshakeResponse>, Status> {
        let call = Call::start("Handshake/Handshake");
        let request = request.into_inner();
        let (major, minor, patch) = CONTRACTS_VERSION;
        let platform = &self.runtime.config.platform;
        let mut response = HandshakeResponse {
            failure: None,
            runtime_version: Some(runtime_version()),
            contracts_version: Some(version(major, minor, patch, "")),
            customer_id: Some(ids::to_wire(platform.customer_id)),
            customer_name: platform.customer_name.clone(),
            application_id: Some(ids::to_wire(platform.application_id)),
            application_name: platform.application_name.clone(),
            microservice_id: Some(ids::to_wire(platform.microservice_id)),
            microservice_name: platform.microservice_name.clone(),
            environment_name: platform.environment.clone(),
            otlp_endpoint: None,
        };
        let checked = check_handshake(&request);
        if !matches!(&checked, Err(f) if f.id == id::HANDSHAKE_MISSING_INFORMATION) {
            // As the original: the head's build results are kept once its fields are all
            // there, compatible or not.
            *self.runtime.build_results.lock() =
                Some(request.build_results.clone().unwrap_or_default());
        }
        match &checked {
            Ok(()) => tracing::info!(
                sdk = %request.sdk_identifier,
                sdk_version = %request.sdk_version.as_ref().map(version_text).unwrap_or_default(),
                head_version = %request.head_version.as_ref().map(version_text).unwrap_or_default(),
                attempt = request.attempt,
                "head connected"
            ),
            Err(f) => {
                tracing::warn!(sdk = %request.sdk_identifier, reason = %f.reason, "handshake refused");
                response.failure = Some(f.to_wire());
            }
        }
        call.end(&self.runtime.metrics, checked.as_ref().err());
        Ok(Response::new(response))
    }
}

/// This runtime's version: annals' own, marked so a head's log says which runtime it met.
fn runtime_version() -> Version {
    let mut parts = env!("CARGO_PKG_VERSION")
        .split('.')
        .map(|p| p.parse::<i32>().unwrap_or(0));
    let (major, minor, patch) = (
        parts.next().unwrap_or(0),
        parts.next().unwrap_or(0),
        parts.next().unwrap_or(0),
    );
    version(major, minor, patch, "annals")
}

#[tonic::async_trait]
impl Tenants for PlatformServices {
    async fn get_all(
        &self,
        request: Request<GetAllRequest>,
    ) -> Result<Response<GetAllResponse>, Status> {
        let request = request.into_inner();
        let tenants: Vec<Tenant> = self
            .runtime
            .tenant_ids()
            .iter()
            .map(|&t| Tenant {
                id: Some(ids::to_wire(t)),
            })
            .collect();
        // The call context is checked, though its tenant need not be configured: a head asks
        // which tenants there are.
        let work = async {
            convert::call_context(request.call_context.as_ref())?;
            Ok(tenants)
        };
        request::unary(&self.runtime, "Tenants/GetAll", work).await
    }
}

#[tonic::async_trait]
impl EventTypes for PlatformServices {
    async fn register(
        &self,
        request: Request<EventTypeRegistrationRequest>,
    ) -> Result<Response<EventTypeRegistrationResponse>, Status> {
        let request = request.into_inner();
        let artifact = ("eventType", request.event_type.as_ref());
        self.register_artifact(
            "EventTypes/Register",
            request.call_context.as_ref(),
            artifact,
            request.alias,
            |r, id, alias| {
                r.engine.register_event_type_alias(id, alias)?;
                r.metrics.dolittle.event_type_alias(id, alias);
                Ok(())
            },
        )
        .await
    }
}

#[tonic::async_trait]
impl AggregateRoots for PlatformServices {
    async fn register_alias(
        &self,
        request: Request<AggregateRootAliasRegistrationRequest>,
    ) -> Result<Response<AggregateRootAliasRegistrationResponse>, Status> {
        let request = request.into_inner();
        let artifact = ("aggregateRoot", request.aggregate_root.as_ref());
        let rpc = "AggregateRoots/RegisterAlias";
        let context = request.call_context.as_ref();
        self.register_artifact(rpc, context, artifact, request.alias, |r, id, alias| {
            r.engine.register_aggregate_root_alias(id, alias)?;
            r.metrics.dolittle.aggregate_root_alias(id, alias);
            Ok(())
        })
        .await
    }
}

#[tonic::async_trait]
impl Resources for PlatformServices {
    async fn get_mongo_db(
        &self,
        request: Request<GetRequest>,
    ) -> Result<Response<GetMongoDbResponse>, Status> {
        let request = request.into_inner();
        let tenant = convert::call_context(request.call_context.as_ref())
            .map_or_else(|_| "(none)".to_owned(), |c| c.tenant_id.to_string());
        let reason = format!(
            "annals has no MongoDB read-model resource: it stores events in its own engine and \
             does not provide a MongoDB database for read models (tenant {tenant}). Configure \
             read-model storage in the head instead."
        );
        let work = async { Err::<String, _>(Failure::new(id::UNKNOWN, reason)) };
        request::unary(&self.runtime, "Resources/GetMongoDb", work).await
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "tests")]
    use super::*;
    use prost_types::Duration;

    fn request(contracts: (i32, i32, i32)) -> HandshakeRequest {
        HandshakeRequest {
            sdk_identifier: "JavaScript".into(),
            head_version: Some(version(1, 0, 0, "")),
            sdk_version: Some(version(24, 0, 0, "")),
            contracts_version: Some(version(contracts.0, contracts.1, contracts.2, "")),
            attempt: 1,
            time_spent: Some(Duration::default()),
            build_results: None,
        }
    }

    #[test]
    fn compatibility_follows_major_and_minor_only() {
        assert!(check_handshake(&request((7, 8, 1))).is_ok());
        assert!(check_handshake(&request((7, 8, 99))).is_ok());
        assert!(check_handshake(&request((7, 0, 0))).is_ok());
        assert_eq!(
            check_handshake(&request((7, 9, 0))).unwrap_err().id,
            id::HANDSHAKE_RUNTIME_MUST_BE_UPDATED
        );
        assert_eq!(
            check_handshake(&request((8, 0, 0))).unwrap_err().id,
            id::HANDSHAKE_RUNTIME_MUST_BE_UPDATED
        );
        assert_eq!(
            check_handshake(&request((6, 9, 0))).unwrap_err().id,
            id::HANDSHAKE_SDK_MUST_BE_UPDATED
        );
    }

    #[test]
    fn missing_fields_are_named_in_the_original_order() {
        let mut r = request((7, 8, 1));
        r.time_spent = None;
        r.sdk_version = None;
        let f = check_handshake(&r).unwrap_err();
        assert_eq!(f.id, id::HANDSHAKE_MISSING_INFORMATION);
        assert_eq!(
            f.reason,
            "The received handshake is missing the field SdkVersion"
        );
        r.sdk_identifier = " ".into();
        assert!(check_handshake(&r)
            .unwrap_err()
            .reason
            .ends_with("SdkIdentifier"));
    }
}
