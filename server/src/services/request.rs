//! The one step every unary rpc goes through: resolve the tenant (for calls that act for the
//! tenant of their call context), run the work, record the request, answer in band.
//!
//! Recording a request: one count in `annals_requests_total` by rpc, tenant and outcome (a
//! concurrency conflict counts apart from other failures), its time from receipt to answer in
//! `annals_request_duration_seconds`, and its failure logged at debug. The tenant label is the
//! call context's tenant once resolved against the configured tenants (so the series stay
//! bounded); `none` for calls that do not act for the tenant of a call context (handshake,
//! registrations, Resources, the management port) and for calls whose tenant is unknown.
//!
//! Failures are answered in band (`failure` set, gRPC status OK), as the SDKs expect; the
//! step itself never fails a call with a status.

use std::future::Future;
use std::sync::Arc;
use std::time::Instant;

use annals_engine::{ExecutionContext, Tenant};
use tonic::{Request, Response, Status};
use uuid::Uuid;

use crate::api::convert;
use crate::api::failure::{id, Failure, InBand};
use crate::metrics::{Metrics, Outcome};
use crate::proto::dolittle::services::CallRequestContext;
use crate::runtime::Runtime;

/// One request, from receipt to answer: what it is recorded under.
pub(crate) struct Call {
    rpc: &'static str,
    /// The configured tenant the call acts for, once resolved.
    tenant: Option<Uuid>,
    started: Instant,
}

impl Call {
    /// A request to `rpc` received now.
    pub(crate) fn start(rpc: &'static str) -> Call {
        Call {
            rpc,
            tenant: None,
            started: Instant::now(),
        }
    }

    /// The tenant of the call context, resolved against the configured tenants; the call is
    /// recorded under it from now on.
    pub(crate) fn tenant(
        &mut self,
        runtime: &Runtime,
        context: Option<&CallRequestContext>,
    ) -> Result<(ExecutionContext, Arc<Tenant>), Failure> {
        let context = convert::call_context(context)?;
        let tenant = runtime.tenant(context.tenant_id)?;
        self.tenant = Some(context.tenant_id);
        Ok((context, tenant))
    }

    /// Records the request as answered, with its failure if it failed.
    pub(crate) fn end(self, metrics: &Metrics, failure: Option<&Failure>) {
        let outcome = match failure {
            None => Outcome::Ok,
            Some(f) if f.id == id::AGGREGATE_ROOT_CONCURRENCY_CONFLICT => Outcome::Conflict,
            Some(_) => Outcome::Failure,
        };
        if let Some(f) = failure {
            tracing::debug!(rpc = self.rpc, tenant = ?self.tenant, failure = %f.reason, "request failed");
        }
        metrics.request(
            self.rpc,
            self.tenant,
            outcome,
            self.started.elapsed().as_secs_f64(),
        );
    }

    /// Records the request and answers it in band.
    #[expect(
        clippy::unnecessary_wraps,
        reason = "the result tonic's handlers return, so a handler can end with it"
    )]
    pub(crate) fn answer<T, R: InBand<T>>(
        self,
        metrics: &Metrics,
        result: Result<T, Failure>,
    ) -> Result<Response<R>, Status> {
        self.end(metrics, result.as_ref().err());
        Ok(Response::new(R::answer(result)))
    }
}

/// A unary rpc that acts for no tenant of a call context: runs `work`, records the request,
/// answers in band.
pub(crate) async fn unary<T, R: InBand<T>>(
    runtime: &Runtime,
    rpc: &'static str,
    work: impl Future<Output = Result<T, Failure>>,
) -> Result<Response<R>, Status> {
    let call = Call::start(rpc);
    let result = work.await;
    call.answer(&runtime.metrics, result)
}

/// A request that carries a call context (the tenant a call acts for).
pub(crate) trait WithCallContext {
    /// Takes the call context out of the request.
    fn take_call_context(&mut self) -> Option<CallRequestContext>;
}

/// `with_call_context!(Request, ...)`: requests whose call context is their `call_context`.
macro_rules! with_call_context {
    ($($request:ty),* $(,)?) => {$(
        impl $crate::services::request::WithCallContext for $request {
            fn take_call_context(
                &mut self,
            ) -> Option<$crate::proto::dolittle::services::CallRequestContext> {
                self.call_context.take()
            }
        }
    )*};
}
pub(crate) use with_call_context;

/// A unary rpc that acts for the tenant of its call context: resolves the tenant (a missing
/// or malformed context, or a tenant that is not configured, fails the call), runs `work` with
/// the execution context, the tenant and the request, records the request, answers in band.
pub(crate) async fn unary_for_tenant<Q, T, R, Fut>(
    runtime: &Runtime,
    rpc: &'static str,
    request: Request<Q>,
    work: impl FnOnce((ExecutionContext, Arc<Tenant>), Q) -> Fut,
) -> Result<Response<R>, Status>
where
    Q: WithCallContext,
    R: InBand<T>,
    Fut: Future<Output = Result<T, Failure>>,
{
    let mut call = Call::start(rpc);
    let mut request = request.into_inner();
    let call_context = request.take_call_context();
    let result = match call.tenant(runtime, call_context.as_ref()) {
        Ok(tenant) => work(tenant, request).await,
        Err(f) => Err(f),
    };
    call.answer(&runtime.metrics, result)
}
