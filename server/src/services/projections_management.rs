//! `dolittle.runtime.events.processing.management.Projections` on the management port, as
//! Runtime 8 served it: the connected projections with their definitions and each tenant's
//! position and failure, and Replay (one tenant or all), which drops a tenant's states and
//! their history and rebuilds them from the start of the log. Only connected projections are
//! known here (the original's); the failures are the original's ids and reasons.

use std::sync::Arc;

use annals_contract::api::management;
use annals_engine::EventLogSequenceNumber;
use tonic::{Request, Response, Status};
use uuid::Uuid;

use crate::api::failure::{id, Failure};
use crate::api::ids;
use crate::processing::{failures, Kind, Registration};
use crate::projections::KeySelector;
use crate::proto::dolittle::artifacts::Artifact;
use crate::proto::dolittle::protobuf::Uuid as WireUuid;
use crate::proto::dolittle::runtime::events::processing::management::projections_server::Projections;
use crate::proto::dolittle::runtime::events::processing::management::{
    GetAllProjectionsRequest, GetAllProjectionsResponse, GetOneProjectionRequest,
    GetOneProjectionResponse, ProjectionStatus, ReplayProjectionRequest, ReplayProjectionResponse,
};
use crate::proto::dolittle::runtime::events::processing::projection_event_selector::Selector as WireSelector;
use crate::proto::dolittle::runtime::events::processing::{
    EventOccurredKeySelector, EventPropertyKeySelector, EventSourceIdKeySelector,
    PartitionIdKeySelector, ProjectionCopies, ProjectionEventSelector, StaticKeySelector,
};
use crate::runtime::Runtime;
use crate::services::platform::NO_ALIAS;
use crate::services::processing_management::{optional_tenant, tenant_statuses};
use crate::services::request;

/// The projection is not connected (the original's).
const NOT_REGISTERED: Uuid = Uuid::from_u128(0xa4ff_b5ba_b09f_48d5_8d70_43df_5f81_9de4);
/// The projection does not run for the tenant.
const NOT_REGISTERED_FOR_TENANT: Uuid = Uuid::from_u128(0xd04f_88e0_cd9c_4cf5_a095_914d_6577_f482);
/// A replay of the tenant is under way.
const ALREADY_REPLAYING: Uuid = Uuid::from_u128(0x6afa_fd6f_1eed_4065_ba02_f24c_89a5_48b4);

/// The management Projections service.
#[derive(Clone)]
pub(crate) struct ProjectionsManagement {
    runtime: Arc<Runtime>,
}

impl ProjectionsManagement {
    pub(crate) fn new(runtime: Arc<Runtime>) -> ProjectionsManagement {
        ProjectionsManagement { runtime }
    }

    /// The connected projection a request names.
    fn projection(
        &self,
        scope: Option<&WireUuid>,
        projection: Option<&WireUuid>,
    ) -> Result<Arc<Registration>, Failure> {
        let key = management::projection(scope, projection)?;
        let (scope, projection) = (key.scope, key.id);
        self.runtime.processors.get(&key).ok_or_else(|| {
            Failure::new(
                NOT_REGISTERED,
                format!("The projection {projection} in scope {scope} is not registered"),
            )
        })
    }
}

/// How the original names a projection's processor in its failures.
fn processor_name(registration: &Registration) -> String {
    format!(
        "Stream Processor: 'Scope: {} Event Processor Id: {} Source Stream: {}'",
        registration.key.scope,
        registration.key.id,
        Uuid::nil()
    )
}

/// Drops one tenant's states and starts its processor over from the first event.
async fn replay(registration: &Registration, tenant: Uuid) -> Result<(), Failure> {
    let handle = registration.tenants.get(&tenant).ok_or_else(|| {
        Failure::new(
            NOT_REGISTERED_FOR_TENANT,
            format!(
                "{} is not registered for tenant '{tenant}'",
                processor_name(registration)
            ),
        )
    })?;
    handle
        .reprocess(EventLogSequenceNumber::ZERO)
        .await
        .map_err(|failure| {
            if failure.id == failures::ALREADY_SETTING_POSITION {
                Failure::new(
                    ALREADY_REPLAYING,
                    format!(
                        "{} is already being set to a new position",
                        processor_name(registration)
                    ),
                )
            } else {
                Failure::new(id::OTHER, failure.reason)
            }
        })
}

fn status(registration: &Registration, tenant: Option<Uuid>) -> ProjectionStatus {
    let definition = registration.projection.as_deref();
    ProjectionStatus {
        scope_id: Some(ids::to_wire(registration.key.scope)),
        projection_id: Some(ids::to_wire(registration.key.id)),
        events: definition
            .map(|d| {
                d.selectors
                    .iter()
                    .map(|s| ProjectionEventSelector {
                        event_type: Some(Artifact {
                            id: Some(ids::to_wire(s.event_type)),
                            generation: 1,
                        }),
                        selector: Some(match &s.key {
                            KeySelector::EventSourceId => {
                                WireSelector::EventSourceKeySelector(EventSourceIdKeySelector {})
                            }
                            KeySelector::PartitionId => {
                                WireSelector::PartitionKeySelector(PartitionIdKeySelector {})
                            }
                            KeySelector::Property(name) => {
                                WireSelector::EventPropertyKeySelector(EventPropertyKeySelector {
                                    property_name: name.clone(),
                                })
                            }
                            KeySelector::Static(key) => {
                                WireSelector::StaticKeySelector(StaticKeySelector {
                                    static_key: key.clone(),
                                })
                            }
                            KeySelector::Occurred(format) => {
                                WireSelector::EventOccurredKeySelector(EventOccurredKeySelector {
                                    format: format.clone(),
                                })
                            }
                        }),
                    })
                    .collect()
            })
            .unwrap_or_default(),
        initial_state: definition
            .map(|d| d.initial_state.clone())
            .unwrap_or_default(),
        copies: Some(ProjectionCopies::default()),
        alias: registration
            .alias
            .clone()
            .unwrap_or_else(|| NO_ALIAS.to_owned()),
        tenants: tenant_statuses(registration, tenant),
    }
}

#[tonic::async_trait]
impl Projections for ProjectionsManagement {
    async fn replay(
        &self,
        request: Request<ReplayProjectionRequest>,
    ) -> Result<Response<ReplayProjectionResponse>, Status> {
        let request = request.into_inner();
        let work = async {
            let registration =
                self.projection(request.scope_id.as_ref(), request.projection_id.as_ref())?;
            if let Some(tenant) = optional_tenant(request.tenant_id.as_ref())? {
                return replay(&registration, tenant).await;
            }
            let mut tenants: Vec<Uuid> = registration.tenants.keys().copied().collect();
            tenants.sort();
            let results =
                futures_util::future::join_all(tenants.iter().map(|t| replay(&registration, *t)))
                    .await;
            results.into_iter().collect()
        };
        request::unary(&self.runtime, "Projections/Replay", work).await
    }

    async fn get_all(
        &self,
        request: Request<GetAllProjectionsRequest>,
    ) -> Result<Response<GetAllProjectionsResponse>, Status> {
        let request = request.into_inner();
        let work = async {
            let tenant = optional_tenant(request.tenant_id.as_ref())?;
            let projections = self.runtime.processors.all(Kind::Projection);
            Ok(projections.iter().map(|r| status(r, tenant)).collect())
        };
        request::unary(&self.runtime, "Projections/GetAll", work).await
    }

    async fn get_one(
        &self,
        request: Request<GetOneProjectionRequest>,
    ) -> Result<Response<GetOneProjectionResponse>, Status> {
        let request = request.into_inner();
        let work = async {
            let registration =
                self.projection(request.scope_id.as_ref(), request.projection_id.as_ref())?;
            let tenant = optional_tenant(request.tenant_id.as_ref())?;
            Ok(status(&registration, tenant))
        };
        request::unary(&self.runtime, "Projections/GetOne", work).await
    }
}
