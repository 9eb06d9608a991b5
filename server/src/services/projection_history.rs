//! `annals.projections.ProjectionHistory`: annals' own service (no Dolittle runtime had it),
//! on the private port beside the projection store: a projection's state for one key, or all
//! its states, as of an event-log position or a time (`projections::history`).

use std::sync::Arc;

use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status};

use crate::api::convert;
use crate::api::failure::Failure;
use crate::projections::history::{Point, Subject};
use crate::proto::annals::projections::as_of::Point as WirePoint;
use crate::proto::annals::projections::projection_history_server::ProjectionHistory;
use crate::proto::annals::projections::{
    AsOf, GetAllAtRequest, GetAllAtResponse, GetOneAtRequest, GetOneAtResponse,
};
use crate::proto::dolittle::runtime::projections::{
    ProjectionCurrentState, ProjectionCurrentStateType,
};
use crate::runtime::Runtime;
use crate::services::projection_store::{projection_of, send_in_batches, PAGE_STATES};
use crate::services::request::{with_call_context, Call};

with_call_context!(GetOneAtRequest, GetAllAtRequest);

/// The point an `AsOf` names; none: now.
fn point(at: Option<&AsOf>) -> Point {
    match at.and_then(|a| a.point.as_ref()) {
        None => Point::Now,
        Some(WirePoint::EventLogPosition(p)) => {
            Point::Position(annals_engine::EventLogSequenceNumber(*p))
        }
        Some(WirePoint::Time(t)) => Point::Time(convert::timestamp_ns(t)),
    }
}

fn state(key: String, state: String, persisted: bool) -> ProjectionCurrentState {
    ProjectionCurrentState {
        r#type: if persisted {
            ProjectionCurrentStateType::Persisted
        } else {
            ProjectionCurrentStateType::CreatedFromInitialState
        }
        .into(),
        key,
        state,
    }
}

/// The ProjectionHistory service.
#[derive(Clone)]
pub(crate) struct ProjectionHistoryService {
    runtime: Arc<Runtime>,
}

impl ProjectionHistoryService {
    pub(crate) fn new(runtime: Arc<Runtime>) -> ProjectionHistoryService {
        ProjectionHistoryService { runtime }
    }
}

fn failed_one(failure: &Failure) -> GetOneAtResponse {
    GetOneAtResponse {
        failure: Some(failure.to_wire()),
        ..GetOneAtResponse::default()
    }
}

fn failed_all(failure: &Failure) -> GetAllAtResponse {
    GetAllAtResponse {
        failure: Some(failure.to_wire()),
        ..GetAllAtResponse::default()
    }
}

#[tonic::async_trait]
impl ProjectionHistory for ProjectionHistoryService {
    async fn get_one_at(
        &self,
        request: Request<GetOneAtRequest>,
    ) -> Result<Response<GetOneAtResponse>, Status> {
        let mut call = Call::start("ProjectionHistory/GetOneAt");
        let request = request.into_inner();
        let work = async {
            let (_, tenant) = call.tenant(&self.runtime, request.call_context.as_ref())?;
            let (scope, projection) =
                projection_of(request.scope_id.as_ref(), request.projection_id.as_ref())?;
            let subject = Subject {
                tenant,
                scope,
                projection,
            };
            let at = subject.resolve(point(request.at.as_ref())).await?;
            let (text, persisted) = subject.state_at(request.key.clone(), at).await?;
            Ok(GetOneAtResponse {
                state: Some(state(request.key.clone(), text, persisted)),
                failure: None,
                event_log_position: at.0,
            })
        };
        let result: Result<GetOneAtResponse, Failure> = work.await;
        call.end(&self.runtime.metrics, result.as_ref().err());
        Ok(Response::new(result.unwrap_or_else(|f| failed_one(&f))))
    }

    async fn get_all_at(
        &self,
        request: Request<GetAllAtRequest>,
    ) -> Result<Response<tonic::codegen::BoxStream<GetAllAtResponse>>, Status> {
        let mut call = Call::start("ProjectionHistory/GetAllAt");
        let request = request.into_inner();
        let (sender, receiver) = mpsc::channel(2);
        let prepared = call
            .tenant(&self.runtime, request.call_context.as_ref())
            .and_then(|(_, tenant)| {
                let (scope, projection) =
                    projection_of(request.scope_id.as_ref(), request.projection_id.as_ref())?;
                Ok(Subject {
                    tenant,
                    scope,
                    projection,
                })
            });
        let runtime = Arc::clone(&self.runtime);
        let at = point(request.at.as_ref());
        tokio::spawn(async move {
            let result = match prepared {
                Ok(subject) => stream_states(&sender, &subject, at).await,
                Err(failure) => Err(failure),
            };
            if let Err(failure) = &result {
                let _ = sender.send(Ok(failed_all(failure))).await;
            }
            call.end(&runtime.metrics, result.err().as_ref());
        });
        Ok(Response::new(Box::pin(ReceiverStream::new(receiver))))
    }
}

/// Sends the states as of `point` in batches; `Ok` also when the reader went away.
async fn stream_states(
    sender: &mpsc::Sender<Result<GetAllAtResponse, Status>>,
    subject: &Subject,
    point: Point,
) -> Result<(), Failure> {
    let at = subject.resolve(point).await?;
    let respond = |states| GetAllAtResponse {
        states,
        failure: None,
        event_log_position: at.0,
    };
    let page = |after| subject.states_at(at, after, PAGE_STATES);
    send_in_batches(sender, page, respond).await
}
