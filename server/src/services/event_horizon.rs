//! `dolittle.runtime.eventhorizon.Subscriptions` on the private port: a head asks this runtime
//! to subscribe one of its tenants to a partition of another microservice's public stream. The
//! request is checked here (the call context, as the original checks it); the subscription
//! itself is annals-replication's consumer.

use std::sync::Arc;

use annals_replication::SubscriptionRequest;
use tonic::{Request, Response, Status};

use crate::api::failure::Failure;
use crate::api::ids;
use crate::legacy;
use crate::proto::dolittle::runtime::eventhorizon::{
    subscriptions_server::Subscriptions, Subscription, SubscriptionResponse,
};
use crate::runtime::Runtime;
use crate::services::request::{self, with_call_context};

with_call_context!(Subscription);

/// The Subscriptions service.
#[derive(Clone)]
pub(crate) struct SubscriptionsService {
    runtime: Arc<Runtime>,
}

impl SubscriptionsService {
    pub(crate) fn new(runtime: Arc<Runtime>) -> SubscriptionsService {
        SubscriptionsService { runtime }
    }
}

#[tonic::async_trait]
impl Subscriptions for SubscriptionsService {
    async fn subscribe(
        &self,
        request: Request<Subscription>,
    ) -> Result<Response<SubscriptionResponse>, Status> {
        let runtime = &self.runtime;
        // A 5.4 head is taken as Runtime 6 took it, without comparing its identity.
        let legacy = legacy::is_legacy(&request);
        request::unary_for_tenant(runtime, "Subscribe", request, |(mut context, _), request| async move {
            // The head's identity must be this runtime's, as the original requires.
            let platform = &runtime.config.platform;
            let conflict = if legacy {
                // Its identity is not checked, so it is not passed on either: the producer is
                // asked by this runtime, as this microservice, whatever the head calls itself.
                context.microservice_id = platform.microservice_id;
                context.environment.clone_from(&platform.environment);
                None
            } else if context.microservice_id != platform.microservice_id {
                Some(("Microservice", platform.microservice_id.to_string(), context.microservice_id.to_string()))
            } else if context.environment != platform.environment {
                Some(("Environment", platform.environment.clone(), context.environment.clone()))
            } else {
                None
            };
            if let Some((what, expected, requested)) = conflict {
                return Err(Failure::invalid(format!(
                    "Failed to create event horizon subscription because execution context was invalid: The requested ExecutionContext is not valid because {what} conflicts with the configured value. Expected {expected}, requested {requested}"
                )));
            }
            let subscription = SubscriptionRequest {
                producer_microservice: ids::required("microserviceId", request.microservice_id.as_ref())?,
                producer_tenant: ids::required("tenantId", request.tenant_id.as_ref())?,
                stream: ids::required("streamId", request.stream_id.as_ref())?,
                partition: request.partition_id,
                scope: ids::required("scopeId", request.scope_id.as_ref())?,
                execution_context: context,
            };
            let consent = runtime.horizon.consumer.subscribe(subscription).await?;
            Ok(ids::to_wire(consent))
        })
        .await
    }
}
