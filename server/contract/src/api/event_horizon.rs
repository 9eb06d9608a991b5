//! The event horizon's two requests, checked: a head's `Subscriptions/Subscribe` (on the
//! consumer runtime) and a consumer runtime's subscription arguments (on the producer). What
//! follows the checks (the consent, the subscription itself) is annals-replication's.

use annals_log::ExecutionContext;
use uuid::Uuid;

use crate::api::failure::Failure;
use crate::api::ids;
use crate::proto::dolittle::runtime::eventhorizon::{ConsumerSubscriptionRequest, Subscription};
use crate::Platform;

/// Producer: the subscription request lacks what it needs (the original's id).
pub const MISSING_SUBSCRIPTION_ARGUMENTS: Uuid =
    Uuid::from_u128(0x3f88_dfb6_93d6_40d3_9d28_8be1_49f9_e02d);

/// A head's request to subscribe one of its tenants to a partition of another
/// microservice's public stream, checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SubscriptionRequest {
    /// The head's execution context: its tenant is the consumer tenant, and it is what this
    /// runtime presents to the producer.
    pub execution_context: ExecutionContext,
    /// The producer microservice.
    pub producer_microservice: Uuid,
    /// The producer tenant.
    pub producer_tenant: Uuid,
    /// The producer's public stream.
    pub stream: Uuid,
    /// Its partition.
    pub partition: String,
    /// The scope to write the events to here.
    pub scope: Uuid,
}

/// A head's `Subscribe`, checked after its call context (`context`): the head's identity
/// must be this runtime's, as the original requires. A 5.4 head (`legacy`) is taken as
/// Runtime 6 took it, without comparing its identity: its identity is not passed on either,
/// so the producer is asked by this runtime, as this microservice, whatever the head calls
/// itself.
pub fn subscription(
    request: &Subscription,
    mut context: ExecutionContext,
    platform: &Platform,
    legacy: bool,
) -> Result<SubscriptionRequest, Failure> {
    let conflict = if legacy {
        context.microservice_id = platform.microservice_id;
        context.environment.clone_from(&platform.environment);
        None
    } else if context.microservice_id != platform.microservice_id {
        Some((
            "Microservice",
            platform.microservice_id.to_string(),
            context.microservice_id.to_string(),
        ))
    } else if context.environment != platform.environment {
        Some((
            "Environment",
            platform.environment.clone(),
            context.environment.clone(),
        ))
    } else {
        None
    };
    if let Some((what, expected, requested)) = conflict {
        return Err(Failure::invalid(format!(
            "Failed to create event horizon subscription because execution context was invalid: \
             The requested ExecutionContext is not valid because {what} conflicts with the \
             configured value. Expected {expected}, requested {requested}"
        )));
    }
    Ok(SubscriptionRequest {
        producer_microservice: ids::required("microserviceId", request.microservice_id.as_ref())?,
        producer_tenant: ids::required("tenantId", request.tenant_id.as_ref())?,
        stream: ids::required("streamId", request.stream_id.as_ref())?,
        partition: request.partition_id.clone(),
        scope: ids::required("scopeId", request.scope_id.as_ref())?,
        execution_context: context,
    })
}

/// What a consumer runtime asks a producer for, checked in the original's order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConsumerArguments {
    /// The producer tenant.
    pub producer_tenant: Uuid,
    /// The public stream.
    pub stream: Uuid,
    /// The partition.
    pub partition: String,
    /// The stream position to serve from.
    pub stream_position: u64,
}

/// A consumer's subscription arguments: the producer tenant, the stream and the partition
/// must be there (the original's `MissingSubscriptionArguments` otherwise). The partition is
/// text since Contracts 7; older consumers send only the legacy Guid.
#[expect(
    deprecated,
    reason = "a consumer of Contracts 5 names the partition only by the legacy Guid field"
)]
pub fn consumer_arguments(
    request: &ConsumerSubscriptionRequest,
) -> Result<ConsumerArguments, Failure> {
    let missing = |what: &str| {
        Failure::new(
            MISSING_SUBSCRIPTION_ARGUMENTS,
            format!("Missing subscription arguments: {what} is missing"),
        )
    };
    let producer_tenant = request
        .tenant_id
        .as_ref()
        .ok_or_else(|| missing("tenantId"))
        .and_then(|id| ids::from_wire("tenantId", id))?;
    let stream = request
        .stream_id
        .as_ref()
        .ok_or_else(|| missing("streamId"))
        .and_then(|id| ids::from_wire("streamId", id))?;
    let partition = match (&request.partition_id, &request.partition_id_legacy) {
        (Some(text), _) => text.clone(),
        (None, Some(legacy)) => ids::from_wire("partitionIdLegacy", legacy)?.to_string(),
        (None, None) => return Err(missing("partitionId")),
    };
    Ok(ConsumerArguments {
        producer_tenant,
        stream,
        partition,
        stream_position: request.stream_position,
    })
}
