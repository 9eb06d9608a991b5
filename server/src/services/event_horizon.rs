//! `dolittle.runtime.eventhorizon.Subscriptions` on the private port: a head asks this runtime
//! to subscribe one of its tenants to a partition of another microservice's public stream. The
//! request is checked here (the call context, then annals-contract's `api::event_horizon`, as
//! the original checks it); the subscription itself is annals-replication's consumer.

use std::sync::Arc;

use annals_contract::api::event_horizon;
use tonic::{Request, Response, Status};

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
        request::unary_for_tenant(
            runtime,
            "Subscribe",
            request,
            |(context, _), request| async move {
                let subscription = event_horizon::subscription(
                    &request,
                    context,
                    &runtime.config.platform,
                    legacy,
                )?;
                let consent = runtime.horizon.consumer.subscribe(subscription).await?;
                Ok(ids::to_wire(consent))
            },
        )
        .await
    }
}
