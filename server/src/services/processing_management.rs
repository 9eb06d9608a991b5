//! `dolittle.runtime.events.processing.management.EventHandlers` on the management port: the
//! connected event handlers with each tenant's status (position, failures), and resets
//! (reprocess from an event-log position, from the start, or from a point in time).
//!
//! Positions in requests are event-log sequence numbers (the original's v9 meaning); the
//! `streamPosition` in a status is the handler's own count of delivered events. A reset waits
//! until the new position is durable and the handler delivers from it.
//! ReprocessEventsFromTimestamp (which the original does not implement) reads its
//! `streamPosition` field as Unix time in milliseconds.

use std::sync::Arc;

use annals_contract::api::management;
use annals_engine::{EventLogSequenceNumber, StreamProcessorState};
use tonic::{Request, Response, Status};
use uuid::Uuid;

use crate::api::convert;
use crate::api::failure::Failure;
use crate::api::ids;
use crate::blocking::blocking;
use crate::processing::{failures, Kind, Partitioning, Registration, TenantHandle};
use crate::proto::dolittle::protobuf::Uuid as WireUuid;
use crate::proto::dolittle::runtime::events::processing::management::event_handlers_server::EventHandlers;
use crate::proto::dolittle::runtime::events::processing::management::{
    tenant_scoped_stream_processor_status, EventHandlerStatus, FailingPartition, GetAllRequest,
    GetAllResponse, GetOneRequest, GetOneResponse, PartitionedTenantScopedStreamProcessorStatus,
    ReprocessAllEventsRequest, ReprocessAllEventsResponse, ReprocessEventsFromRequest,
    ReprocessEventsFromResponse, ReprocessEventsFromTimestampRequest,
    ReprocessEventsFromTimestampResponse, TenantScopedStreamProcessorStatus,
    UnpartitionedTenantScopedStreamProcessorStatus,
};
use crate::runtime::Runtime;
use crate::services::platform::NO_ALIAS;
use crate::services::request;

/// The management EventHandlers service.
#[derive(Clone)]
pub(crate) struct EventHandlersManagement {
    runtime: Arc<Runtime>,
}

impl EventHandlersManagement {
    pub(crate) fn new(runtime: Arc<Runtime>) -> EventHandlersManagement {
        EventHandlersManagement { runtime }
    }

    fn handler(
        &self,
        scope: Option<&WireUuid>,
        id: Option<&WireUuid>,
    ) -> Result<Arc<Registration>, Failure> {
        let key = management::event_handler(scope, id)?;
        let (scope, id) = (key.scope, key.id);
        self.runtime.processors.get(&key).ok_or_else(|| {
            Failure::new(
                failures::NOT_REGISTERED,
                format!("Event handler {id} in scope {scope} is not registered"),
            )
        })
    }

    fn tenant_of(registration: &Registration, tenant: Uuid) -> Result<&Arc<TenantHandle>, Failure> {
        registration.tenants.get(&tenant).ok_or_else(|| {
            Failure::new(
                failures::NOT_REGISTERED_FOR_TENANT,
                format!(
                    "Event handler {} in scope {} is not registered for tenant {tenant}",
                    registration.key.id, registration.key.scope
                ),
            )
        })
    }
}

/// Resets one tenant's processor to `event_log_position`, which must not be past the log's end.
pub(crate) async fn reset(
    handle: &TenantHandle,
    event_log_position: EventLogSequenceNumber,
) -> Result<(), Failure> {
    let end = handle.log.next_sequence_number();
    if event_log_position > end {
        return Err(Failure::new(
            failures::CANNOT_REPROCESS_ABOVE_CURRENT,
            format!(
                "cannot reprocess from event-log position {event_log_position}: the event log \
                 ends at {end}"
            ),
        ));
    }
    handle.reprocess(event_log_position).await
}

/// The first event-log position whose event occurred at or after `at_ns` (the log's end when
/// none did).
async fn position_at(handle: &TenantHandle, at_ns: i64) -> Result<EventLogSequenceNumber, Failure> {
    let log = Arc::clone(&handle.log);
    blocking(move || {
        let end = log.next_sequence_number();
        let mut from = EventLogSequenceNumber::ZERO;
        while from < end {
            let batch = log.read(from, 4096, 4 << 20)?;
            for view in batch.views() {
                let view = view?;
                if view.occurred_ns >= at_ns {
                    return Ok(view.sequence_number);
                }
            }
            match batch.next() {
                Some(next) if next > from => from = next,
                _ => break,
            }
        }
        Ok(end)
    })
    .await
}

fn status(registration: &Registration, tenant: Option<Uuid>) -> EventHandlerStatus {
    EventHandlerStatus {
        scope_id: Some(ids::to_wire(registration.key.scope)),
        event_handler_id: Some(ids::to_wire(registration.key.id)),
        event_types: registration
            .event_types
            .iter()
            .map(|t| convert::event_type_to_wire(*t))
            .collect(),
        partitioned: registration.partitioning.is_partitioned(),
        alias: registration
            .alias
            .clone()
            .unwrap_or_else(|| NO_ALIAS.to_owned()),
        tenants: tenant_statuses(registration, tenant),
    }
}

/// The status of each tenant of a connected processor (only `tenant`'s when one is named), in
/// tenant order.
pub(crate) fn tenant_statuses(
    registration: &Registration,
    tenant: Option<Uuid>,
) -> Vec<TenantScopedStreamProcessorStatus> {
    let mut tenants: Vec<_> = registration
        .tenants
        .iter()
        .filter(|(id, _)| tenant.is_none_or(|t| t == **id))
        .collect();
    tenants.sort_by_key(|(id, _)| **id);
    tenants
        .into_iter()
        .map(|(id, handle)| {
            let status = handle.status.lock();
            tenant_status(
                *id,
                &status.state,
                status.retrying.as_ref(),
                registration.partitioning,
            )
        })
        .collect()
}

fn tenant_status(
    tenant: Uuid,
    state: &StreamProcessorState,
    retrying: Option<&annals_engine::ProcessingFailure>,
    partitioning: Partitioning,
) -> TenantScopedStreamProcessorStatus {
    let time = |ns: i64| (ns != i64::MAX && ns != 0).then(|| convert::timestamp(ns));
    let status = if partitioning.is_partitioned() {
        tenant_scoped_stream_processor_status::Status::Partitioned(
            PartitionedTenantScopedStreamProcessorStatus {
                failing_partitions: state
                    .failing_partitions
                    .iter()
                    .map(|(partition, p)| FailingPartition {
                        partition_id: partition.clone(),
                        stream_position: p.position.0,
                        failure_reason: p.failure.reason.clone(),
                        retry_count: p.failure.processing_attempts,
                        retry_time: Some(retry_time(p.failure.retry_time_ns)),
                        last_failed: time(p.failure.last_failed_ns),
                    })
                    .collect(),
            },
        )
    } else {
        let failure = state.failure.as_ref().or(retrying);
        tenant_scoped_stream_processor_status::Status::Unpartitioned(
            UnpartitionedTenantScopedStreamProcessorStatus {
                is_failing: failure.is_some(),
                failure_reason: failure.map(|f| f.reason.clone()).unwrap_or_default(),
                retry_count: failure.map_or(0, |f| f.processing_attempts),
                retry_time: failure.map(|f| retry_time(f.retry_time_ns)),
            },
        )
    };
    TenantScopedStreamProcessorStatus {
        tenant_id: Some(ids::to_wire(tenant)),
        stream_position: state.position.0,
        last_successfully_processed: time(state.last_successfully_processed_ns),
        status: Some(status),
    }
}

/// When a failure is retried: "never" (`i64::MAX`) shows as the largest timestamp protobuf
/// allows (9999-12-31T23:59:59Z), as the original shows a partition that is not retried.
fn retry_time(retry_time_ns: i64) -> prost_types::Timestamp {
    if retry_time_ns == i64::MAX {
        prost_types::Timestamp {
            seconds: 253_402_300_799,
            nanos: 0,
        }
    } else {
        convert::timestamp(retry_time_ns)
    }
}

#[tonic::async_trait]
impl EventHandlers for EventHandlersManagement {
    async fn reprocess_events_from(
        &self,
        request: Request<ReprocessEventsFromRequest>,
    ) -> Result<Response<ReprocessEventsFromResponse>, Status> {
        let request = request.into_inner();
        let work = async {
            let registration =
                self.handler(request.scope_id.as_ref(), request.event_handler_id.as_ref())?;
            let tenant = management::tenant(request.tenant_id.as_ref())?;
            let handle = Self::tenant_of(&registration, tenant)?;
            reset(handle, EventLogSequenceNumber(request.stream_position)).await
        };
        request::unary(&self.runtime, "EventHandlers/ReprocessEventsFrom", work).await
    }

    async fn reprocess_events_from_timestamp(
        &self,
        request: Request<ReprocessEventsFromTimestampRequest>,
    ) -> Result<Response<ReprocessEventsFromTimestampResponse>, Status> {
        let request = request.into_inner();
        let work = async {
            let registration =
                self.handler(request.scope_id.as_ref(), request.event_handler_id.as_ref())?;
            let at_ns = management::reprocess_time_ns(request.stream_position)?;
            let handles: Vec<&Arc<TenantHandle>> =
                match optional_tenant(request.tenant_id.as_ref())? {
                    Some(tenant) => vec![Self::tenant_of(&registration, tenant)?],
                    None => registration.tenants.values().collect(),
                };
            for handle in handles {
                let position = position_at(handle, at_ns).await?;
                reset(handle, position).await?;
            }
            Ok(())
        };
        let rpc = "EventHandlers/ReprocessEventsFromTimestamp";
        request::unary(&self.runtime, rpc, work).await
    }

    async fn reprocess_all_events(
        &self,
        request: Request<ReprocessAllEventsRequest>,
    ) -> Result<Response<ReprocessAllEventsResponse>, Status> {
        let request = request.into_inner();
        let work = async {
            let registration =
                self.handler(request.scope_id.as_ref(), request.event_handler_id.as_ref())?;
            let mut tenants: Vec<_> = registration.tenants.iter().collect();
            tenants.sort_by_key(|(id, _)| **id);
            for (_, handle) in tenants {
                reset(handle, EventLogSequenceNumber::ZERO).await?;
            }
            Ok(())
        };
        request::unary(&self.runtime, "EventHandlers/ReprocessAllEvents", work).await
    }

    async fn get_all(
        &self,
        request: Request<GetAllRequest>,
    ) -> Result<Response<GetAllResponse>, Status> {
        let request = request.into_inner();
        let work = async {
            let tenant = optional_tenant(request.tenant_id.as_ref())?;
            if let Some(tenant) = tenant {
                self.runtime.tenant(tenant)?;
            }
            let handlers = self.runtime.processors.all(Kind::EventHandler);
            Ok(handlers.iter().map(|r| status(r, tenant)).collect())
        };
        request::unary(&self.runtime, "EventHandlers/GetAll", work).await
    }

    async fn get_one(
        &self,
        request: Request<GetOneRequest>,
    ) -> Result<Response<GetOneResponse>, Status> {
        let request = request.into_inner();
        let work = async {
            let registration =
                self.handler(request.scope_id.as_ref(), request.event_handler_id.as_ref())?;
            let tenant = optional_tenant(request.tenant_id.as_ref())?;
            if let Some(tenant) = tenant {
                Self::tenant_of(&registration, tenant)?;
            }
            Ok(status(&registration, tenant))
        };
        request::unary(&self.runtime, "EventHandlers/GetOne", work).await
    }
}

pub(crate) use annals_contract::api::management::optional_tenant;
