//! What a management request or a projection-store query names, checked: the processor, the
//! tenant, the time. The server then looks the named things up (whether the processor is
//! connected, whether it runs for the tenant); it calls these in the original's order, so a
//! request with two faults is refused for the same one as there. Each function is one part of
//! a request, so the fuzz harness (`fuzz/`, no RocksDB) runs exactly what the services run.

use annals_log::ScopeId;
use uuid::Uuid;

use crate::api::failure::{id, Failure};
use crate::api::ids;
use crate::processors::{Kind, ProcessorKey};
use crate::proto::dolittle::protobuf::Uuid as WireUuid;

/// The event handler a request names: its scope (the default when absent) and id.
pub fn event_handler(
    scope: Option<&WireUuid>,
    event_handler: Option<&WireUuid>,
) -> Result<ProcessorKey, Failure> {
    let scope = match scope {
        None => Uuid::nil(),
        Some(scope) => ids::from_wire("scopeId", scope)?,
    };
    Ok(ProcessorKey {
        kind: Kind::EventHandler,
        scope,
        id: ids::required("eventHandlerId", event_handler)?,
    })
}

/// The projection a management request names: scope and id are both required (the
/// original's reasons when absent).
pub fn projection(
    scope: Option<&WireUuid>,
    projection: Option<&WireUuid>,
) -> Result<ProcessorKey, Failure> {
    let scope = scope
        .ok_or_else(|| {
            Failure::new(
                id::OTHER,
                "Scope id is missing in request (Parameter 'scope')",
            )
        })
        .and_then(|s| ids::from_wire("scopeId", s))?;
    let projection = projection
        .ok_or_else(|| {
            Failure::new(
                id::OTHER,
                "Projection id is missing in request (Parameter 'projection')",
            )
        })
        .and_then(|p| ids::from_wire("projectionId", p))?;
    Ok(ProcessorKey {
        kind: Kind::Projection,
        scope,
        id: projection,
    })
}

/// The projection a projection-store query names: its scope (the default when absent) and
/// id.
pub fn stored_projection(
    scope: Option<&WireUuid>,
    projection: Option<&WireUuid>,
) -> Result<(ScopeId, Uuid), Failure> {
    let scope = match scope {
        None => Uuid::nil(),
        Some(scope) => ids::from_wire("scopeId", scope)?,
    };
    Ok((ScopeId(scope), ids::required("projectionId", projection)?))
}

/// The tenant a request must name in its `tenantId`.
pub fn tenant(tenant: Option<&WireUuid>) -> Result<Uuid, Failure> {
    ids::required("tenantId", tenant)
}

/// The tenant a request names in its optional `tenantId`, if it names one.
pub fn optional_tenant(tenant: Option<&WireUuid>) -> Result<Option<Uuid>, Failure> {
    tenant.map(|t| ids::from_wire("tenantId", t)).transpose()
}

/// `ReprocessEventsFromTimestamp`'s `streamPosition`: a Unix time in milliseconds, as Unix
/// nanoseconds.
pub fn reprocess_time_ns(stream_position: u64) -> Result<i64, Failure> {
    i64::try_from(stream_position)
        .ok()
        .and_then(|ms| ms.checked_mul(1_000_000))
        .ok_or_else(|| {
            Failure::invalid(format!(
                "streamPosition {stream_position} is not a Unix time in milliseconds"
            ))
        })
}
