//! The management port's services (the Dolittle CLI's surface): AggregateRoots (registered
//! roots and their instances per tenant, an instance's events), EventTypes, Client (the last
//! handshake's build results) and Configuration (the effective configuration as YAML).
//!
//! Management calls name their tenant in a field of their own, not in an execution context
//! (their requests are recorded without a tenant). Failures use the Unknown id with the
//! reason, as the original's management services do.

use std::sync::Arc;

use annals_contract::api::management;
use tonic::{Request, Response, Status};
use uuid::Uuid;

use crate::api::failure::{id, Failure, InBand};
use crate::api::{committed, convert, ids};
use crate::blocking::blocking;
use crate::proto::dolittle::artifacts::Artifact;
use crate::proto::dolittle::runtime::aggregates::management::aggregate_roots_server::AggregateRoots;
use crate::proto::dolittle::runtime::aggregates::management::{
    AggregateRoot, GetAllRequest, GetAllResponse, GetEventsRequest, GetEventsResponse,
    GetOneRequest, GetOneResponse, TenantScopedEventSource,
};
use crate::proto::dolittle::runtime::client::management::client_server::Client;
use crate::proto::dolittle::runtime::client::management::{
    GetBuildResultsRequest, GetBuildResultsResponse,
};
use crate::proto::dolittle::runtime::configuration::management::configuration_server::Configuration;
use crate::proto::dolittle::runtime::configuration::management::{
    GetConfigurationYamlRequest, GetConfigurationYamlResponse,
};
use crate::proto::dolittle::runtime::events::management::event_types_server::EventTypes;
use crate::proto::dolittle::runtime::events::management::{
    EventType, GetAllRequest as GetAllEventTypesRequest, GetAllResponse as GetAllEventTypesResponse,
};
use crate::runtime::Runtime;
use crate::services::platform::NO_ALIAS;
use crate::services::request::{self, Call};

/// The management port's services (one value serves them all).
#[derive(Clone)]
pub(crate) struct ManagementServices {
    runtime: Arc<Runtime>,
}

impl ManagementServices {
    pub(crate) fn new(runtime: Arc<Runtime>) -> ManagementServices {
        ManagementServices { runtime }
    }

    /// The request step of a management call: `work` runs on a blocking thread (it reads the
    /// indexes), and a failure is answered with the Unknown id.
    async fn unary<T, R>(
        &self,
        rpc: &'static str,
        work: impl FnOnce(&Runtime) -> Result<T, Failure> + Send + 'static,
    ) -> Result<Response<R>, Status>
    where
        T: Send + 'static,
        R: InBand<T>,
    {
        let runtime = Arc::clone(&self.runtime);
        let work = blocking(move || work(&runtime));
        request::unary(&self.runtime, rpc, async { work.await.map_err(unknown) }).await
    }
}

fn artifact(id: Uuid) -> Artifact {
    Artifact {
        id: Some(ids::to_wire(id)),
        generation: 1,
    }
}

fn unknown(failure: Failure) -> Failure {
    Failure::new(id::UNKNOWN, failure.reason)
}

/// The configured tenants a management call covers: all, or the one it names (none when it
/// names a tenant that is not configured, as the original).
fn tenants_of(
    runtime: &Runtime,
    tenant: Option<&crate::proto::dolittle::protobuf::Uuid>,
) -> Result<Vec<Uuid>, Failure> {
    let all = runtime.tenant_ids().iter().copied();
    Ok(match management::optional_tenant(tenant)? {
        None => all.collect(),
        Some(t) => all.filter(|c| *c == t).collect(),
    })
}

/// Registered aggregate roots (or only `only`) with their instances in `tenants`.
fn aggregate_roots(
    runtime: &Runtime,
    tenants: &[Uuid],
    only: Option<Uuid>,
) -> Result<Vec<AggregateRoot>, Failure> {
    let mut roots: Vec<(Uuid, String)> = runtime.engine.aggregate_root_aliases()?;
    if let Some(only) = only {
        roots.retain(|(id, _)| *id == only);
        if roots.is_empty() {
            roots.push((only, NO_ALIAS.to_owned()));
        }
    }
    let mut out: Vec<AggregateRoot> = roots
        .into_iter()
        .map(|(id, alias)| AggregateRoot {
            aggregate_root: Some(artifact(id)),
            alias,
            event_sources: Vec::new(),
        })
        .collect();
    for &tenant_id in tenants {
        let tenant = runtime.tenant(tenant_id)?;
        for (root, event_source_id, version) in tenant.aggregate_instances(only)? {
            let entry = out.iter_mut().find(|r| {
                r.aggregate_root.as_ref().and_then(|a| a.id.as_ref()) == Some(&ids::to_wire(root))
            });
            if let Some(entry) = entry {
                entry.event_sources.push(TenantScopedEventSource {
                    tenant_id: Some(ids::to_wire(tenant_id)),
                    event_source_id,
                    aggregate_root_version: version,
                });
            }
        }
    }
    Ok(out)
}

#[tonic::async_trait]
impl AggregateRoots for ManagementServices {
    async fn get_all(
        &self,
        request: Request<GetAllRequest>,
    ) -> Result<Response<GetAllResponse>, Status> {
        let request = request.into_inner();
        self.unary("AggregateRoots/GetAll", move |runtime| {
            let tenants = tenants_of(runtime, request.tenant_id.as_ref())?;
            aggregate_roots(runtime, &tenants, None)
        })
        .await
    }

    async fn get_one(
        &self,
        request: Request<GetOneRequest>,
    ) -> Result<Response<GetOneResponse>, Status> {
        let request = request.into_inner();
        self.unary("AggregateRoots/GetOne", move |runtime| {
            let root = ids::required("aggregateRootId", request.aggregate_root_id.as_ref())?;
            let tenants = tenants_of(runtime, request.tenant_id.as_ref())?;
            Ok(aggregate_roots(runtime, &tenants, Some(root))?
                .into_iter()
                .next())
        })
        .await
    }

    async fn get_events(
        &self,
        request: Request<GetEventsRequest>,
    ) -> Result<Response<GetEventsResponse>, Status> {
        let request = request.into_inner();
        self.unary("AggregateRoots/GetEvents", move |runtime| {
            let tenant_id = management::tenant(request.tenant_id.as_ref())?;
            let tenant = runtime.tenant(tenant_id)?;
            let (root, event_source_id) =
                convert::aggregate("aggregate", request.aggregate.as_ref())?;
            let fetched = tenant.fetch_for_aggregate(root, &event_source_id, &[])?;
            Ok(committed::aggregate_events(
                root,
                &event_source_id,
                fetched.current_version,
                &fetched.events,
            ))
        })
        .await
    }
}

#[tonic::async_trait]
impl EventTypes for ManagementServices {
    async fn get_all(
        &self,
        _request: Request<GetAllEventTypesRequest>,
    ) -> Result<Response<GetAllEventTypesResponse>, Status> {
        self.unary("EventTypes/GetAll", |runtime| {
            Ok(runtime
                .engine
                .event_type_aliases()?
                .into_iter()
                .map(|(id, alias)| EventType {
                    event_type: Some(artifact(id)),
                    alias,
                })
                .collect())
        })
        .await
    }
}

#[tonic::async_trait]
impl Client for ManagementServices {
    async fn get_build_results(
        &self,
        _request: Request<GetBuildResultsRequest>,
    ) -> Result<Response<GetBuildResultsResponse>, Status> {
        // Cannot fail: the answer has no failure to carry.
        let call = Call::start("Client/GetBuildResults");
        let build_results = self.runtime.build_results.lock().clone();
        call.end(&self.runtime.metrics, None);
        Ok(Response::new(GetBuildResultsResponse {
            build_results: Some(build_results.unwrap_or_default()),
        }))
    }
}

#[tonic::async_trait]
impl Configuration for ManagementServices {
    async fn get_configuration_yaml(
        &self,
        _request: Request<GetConfigurationYamlRequest>,
    ) -> Result<Response<GetConfigurationYamlResponse>, Status> {
        // Cannot fail: the answer has no failure to carry.
        let call = Call::start("Configuration/GetConfigurationYaml");
        let value = self.runtime.config.to_yaml();
        call.end(&self.runtime.metrics, None);
        Ok(Response::new(GetConfigurationYamlResponse { value }))
    }
}
