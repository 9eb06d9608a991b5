//! `dolittle.runtime.projections.Projections`: the projection store, as Runtime 8 served it.
//! GetOne answers a key's stored state (PERSISTED) or, for a key without one, the initial
//! state of the stored definition (CREATED_FROM_INITIAL_STATE); without a stored definition
//! it fails (`0cbd47f6`). GetAll answers every stored state; GetAllInBatches streams them in
//! batches of at most 2 MiB of states, always ending with a batch (empty when there are
//! none). The store reads what is durable, whether or not the projection is connected.

use std::sync::Arc;

use annals_engine::{ScopeId, Tenant};
use prost::Message;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status};
use uuid::Uuid;

use crate::api::failure::{Failure, InBand};
use crate::blocking::blocking;
use crate::projections::Definition;
use crate::proto::dolittle::runtime::projections::projections_server::Projections;
use crate::proto::dolittle::runtime::projections::{
    GetAllRequest, GetAllResponse, GetOneRequest, GetOneResponse, ProjectionCurrentState,
    ProjectionCurrentStateType,
};
use crate::runtime::Runtime;
use crate::services::request::{self, with_call_context, Call};

with_call_context!(GetOneRequest, GetAllRequest);

/// No definition is stored for the projection (the original's).
pub(crate) const NO_DEFINITION: Uuid = Uuid::from_u128(0x0cbd_47f6_50b4_4488_afc3_6ba6_b02b_0dbd);

/// The most state bytes one GetAllInBatches response carries (the original's 2 MiB); one
/// larger state still goes alone.
const BATCH_BYTES_MAX: usize = 2 * 1024 * 1024;

/// States read from the store at a time while batches are streamed.
pub(crate) const PAGE_STATES: usize = 1024;

/// The projection a query names: its scope (the default when absent) and id.
pub(crate) use annals_contract::api::management::stored_projection as projection_of;

/// A stored state, as the store answers it.
fn persisted(key: String, state: String) -> ProjectionCurrentState {
    ProjectionCurrentState {
        r#type: ProjectionCurrentStateType::Persisted.into(),
        key,
        state,
    }
}

/// The stored definition's initial state.
pub(crate) fn initial_state(
    tenant: &Tenant,
    scope: ScopeId,
    projection: Uuid,
) -> Result<String, Failure> {
    let stored = tenant.projection_definition(scope, projection)?;
    stored
        .as_deref()
        .and_then(Definition::from_stored)
        .map(|definition| definition.initial_state)
        .ok_or_else(|| {
            Failure::new(
                NO_DEFINITION,
                format!(
                    "Projection definition for projection {projection} in scope {} does not exist",
                    scope.0
                ),
            )
        })
}

/// The projection store service.
#[derive(Clone)]
pub(crate) struct ProjectionStoreService {
    runtime: Arc<Runtime>,
}

impl ProjectionStoreService {
    pub(crate) fn new(runtime: Arc<Runtime>) -> ProjectionStoreService {
        ProjectionStoreService { runtime }
    }
}

type StatesStream = tonic::codegen::BoxStream<GetAllResponse>;

#[tonic::async_trait]
impl Projections for ProjectionStoreService {
    async fn get_one(
        &self,
        request: Request<GetOneRequest>,
    ) -> Result<Response<GetOneResponse>, Status> {
        request::unary_for_tenant(
            &self.runtime,
            "Projections/GetOne",
            request,
            |(_, tenant), request: GetOneRequest| async move {
                let (scope, projection) =
                    projection_of(request.scope_id.as_ref(), request.projection_id.as_ref())?;
                let key = request.key;
                blocking(move || {
                    Ok(match tenant.projection_state(scope, projection, &key)? {
                        Some(state) => persisted(key, state),
                        None => ProjectionCurrentState {
                            r#type: ProjectionCurrentStateType::CreatedFromInitialState.into(),
                            state: initial_state(&tenant, scope, projection)?,
                            key,
                        },
                    })
                })
                .await
            },
        )
        .await
    }

    async fn get_all(
        &self,
        request: Request<GetAllRequest>,
    ) -> Result<Response<GetAllResponse>, Status> {
        request::unary_for_tenant(
            &self.runtime,
            "Projections/GetAll",
            request,
            |(_, tenant), request: GetAllRequest| async move {
                let (scope, projection) =
                    projection_of(request.scope_id.as_ref(), request.projection_id.as_ref())?;
                blocking(move || {
                    Ok(tenant
                        .projection_states(scope, projection)?
                        .into_iter()
                        .map(|(key, state)| persisted(key, state))
                        .collect())
                })
                .await
            },
        )
        .await
    }

    async fn get_all_in_batches(
        &self,
        request: Request<GetAllRequest>,
    ) -> Result<Response<StatesStream>, Status> {
        let mut call = Call::start("Projections/GetAllInBatches");
        let request = request.into_inner();
        let (sender, receiver) = mpsc::channel(2);
        let prepared = call
            .tenant(&self.runtime, request.call_context.as_ref())
            .and_then(|(_, tenant)| {
                let (scope, projection) =
                    projection_of(request.scope_id.as_ref(), request.projection_id.as_ref())?;
                Ok((tenant, scope, projection))
            });
        let runtime = Arc::clone(&self.runtime);
        tokio::spawn(async move {
            let result = match prepared {
                Ok((tenant, scope, projection)) => {
                    stream_states(&sender, tenant, scope, projection).await
                }
                Err(failure) => Err(failure),
            };
            if let Err(failure) = &result {
                let _ = sender.send(Ok(GetAllResponse::failed(failure))).await;
            }
            call.end(&runtime.metrics, result.err().as_ref());
        });
        Ok(Response::new(Box::pin(ReceiverStream::new(receiver))))
    }
}

/// Sends every state of a projection in batches; `Ok` also when the reader went away.
async fn stream_states(
    sender: &mpsc::Sender<Result<GetAllResponse, Status>>,
    tenant: Arc<Tenant>,
    scope: ScopeId,
    projection: Uuid,
) -> Result<(), Failure> {
    let page = |after: Option<String>| {
        let tenant = Arc::clone(&tenant);
        blocking(move || {
            Ok(tenant.projection_states_page(scope, projection, after.as_deref(), PAGE_STATES)?)
        })
    };
    send_in_batches(sender, page, GetAllResponse::ok).await
}

/// Sends states read `PAGE_STATES` at a time by `page` (the states after a key), as
/// responses `respond` makes of at most `BATCH_BYTES_MAX` of them, and always a last one
/// (empty when there are none); `Ok` also when the reader went away.
pub(crate) async fn send_in_batches<R, Page>(
    sender: &mpsc::Sender<Result<R, Status>>,
    page: impl Fn(Option<String>) -> Page,
    respond: impl Fn(Vec<ProjectionCurrentState>) -> R,
) -> Result<(), Failure>
where
    Page: std::future::Future<Output = Result<Vec<(String, String)>, Failure>>,
{
    let mut after: Option<String> = None;
    let mut batch = Vec::new();
    let mut bytes = 0usize;
    loop {
        let read = page(after.clone()).await?;
        let last_page = read.len() < PAGE_STATES;
        after = read.last().map(|(key, _)| key.clone());
        for (key, state) in read {
            let state = persisted(key, state);
            let size = state.encoded_len();
            if !batch.is_empty() && bytes + size > BATCH_BYTES_MAX {
                if sender
                    .send(Ok(respond(std::mem::take(&mut batch))))
                    .await
                    .is_err()
                {
                    return Ok(());
                }
                bytes = 0;
            }
            bytes += size;
            batch.push(state);
        }
        if last_page {
            let _ = sender.send(Ok(respond(batch))).await;
            return Ok(());
        }
    }
}
