//! The original's REST twin of the event store on the web port, as Runtime 9.9's
//! `EventStoreController`: `POST /api/events/commit`, `/api/events/commitForAggregate` and
//! `/api/events/fetchForAggregate` with its JSON shapes (ASP.NET's camelCase, Guids as
//! lowercase text, times as ISO 8601 with `+00:00`, the failure object `{id, reason}`, HTTP
//! 500 with the body when the answer carries a failure), and the OpenAPI document where the
//! original serves its Swagger document (`/swagger/v1/swagger.json`).
//!
//! Each request is turned into the gRPC request and served by the same `EventStoreService`,
//! so the two answer alike. Where the original cannot answer, annals does what it meant:
//! - `claims` is taken as the array of `{name, value, valueType}` it writes (the original
//!   fails every request that carries one, `[]` included);
//! - a failure of CommitForAggregate or FetchForAggregate is the failure object with HTTP 500
//!   (the original fails on it with an empty 500).
//!
//! A body that is not the request (a missing field, an empty required text, a malformed Guid)
//! is answered 400 with a problem document naming the field, as ASP.NET's validation does.

use std::sync::Arc;

use axum::extract::rejection::JsonRejection;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Json;
use serde::{Deserialize, Serialize};
use tonic::Request;
use uuid::Uuid;

use crate::api::ids;
use crate::proto::dolittle;
use crate::proto::dolittle::runtime::events::event_store_server::EventStore as _;
use crate::runtime::Runtime;
use crate::services::event_store::EventStoreService;

/// The routes, for the web port's router.
pub(crate) fn routes() -> axum::Router<Arc<Runtime>> {
    axum::Router::new()
        .route("/api/events/commit", post(commit))
        .route("/api/events/commitForAggregate", post(commit_for_aggregate))
        .route("/api/events/fetchForAggregate", post(fetch_for_aggregate))
        .route("/swagger/v1/swagger.json", get(openapi))
}

// ---- requests ------------------------------------------------------------------------------

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct CommitEventsRequest {
    call_context: CallRequestContext,
    events: Vec<UncommittedEvent>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct CommitForAggregateRequest {
    call_context: CallRequestContext,
    aggregate_events: UncommittedAggregateEvents,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct FetchForAggregateRequest {
    call_context: CallRequestContext,
    #[serde(default)]
    aggregate_root: Uuid,
    event_source: String,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct CallRequestContext {
    execution_context: ExecutionContext,
    #[serde(default)]
    head_id: Uuid,
}

#[derive(Deserialize, Serialize, Clone)]
#[serde(rename_all = "camelCase")]
struct ExecutionContext {
    #[serde(default)]
    microservice: Uuid,
    #[serde(default)]
    tenant: Uuid,
    version: Version,
    environment: String,
    #[serde(default)]
    correlation_id: Uuid,
    claims: Vec<Claim>,
}

#[derive(Deserialize, Serialize, Clone)]
#[serde(rename_all = "camelCase")]
struct Version {
    #[serde(default)]
    major: i32,
    #[serde(default)]
    minor: i32,
    #[serde(default)]
    patch: i32,
    #[serde(default)]
    build: i32,
    #[serde(default)]
    pre_release_string: String,
    /// Written, never read.
    #[serde(default, skip_deserializing)]
    is_pre_release: bool,
}

#[derive(Deserialize, Serialize, Clone)]
#[serde(rename_all = "camelCase")]
struct Claim {
    name: String,
    value: String,
    value_type: String,
}

#[derive(Deserialize, Serialize, Clone, Copy)]
#[serde(rename_all = "camelCase")]
struct Artifact {
    #[serde(default)]
    id: Uuid,
    #[serde(default)]
    generation: u32,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct UncommittedEvent {
    event_source: String,
    #[serde(rename = "type")]
    event_type: Artifact,
    #[serde(default)]
    public: bool,
    content: String,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct UncommittedAggregateEvents {
    event_source: String,
    #[serde(default)]
    aggregate_root: Uuid,
    /// The version the aggregate is expected to be at before these events.
    #[serde(default)]
    aggregate_root_version: u64,
    events: Vec<UncommittedAggregateEvent>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct UncommittedAggregateEvent {
    #[serde(rename = "type")]
    event_type: Artifact,
    #[serde(default)]
    public: bool,
    content: String,
}

// ---- responses -----------------------------------------------------------------------------

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct CommitResponse {
    events: Vec<CommittedEvent>,
    failure: Option<Failure>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct AggregateResponse {
    events: Option<CommittedAggregateEvents>,
    failure: Option<Failure>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct CommittedEvent {
    event_log_sequence_number: u64,
    occurred: String,
    event_source: String,
    execution_context: ExecutionContext,
    #[serde(rename = "type")]
    event_type: Artifact,
    public: bool,
    content: String,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct CommittedAggregateEvents {
    event_source_id: String,
    aggregate_root: Uuid,
    /// The last event's version (the current version less one, 0 for none), as the original
    /// writes its backward-compatible field.
    aggregate_root_version: u64,
    events: Vec<CommittedAggregateEvent>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct CommittedAggregateEvent {
    event_log_sequence_number: u64,
    occurred: String,
    execution_context: ExecutionContext,
    #[serde(rename = "type")]
    event_type: Artifact,
    public: bool,
    content: String,
}

#[derive(Serialize)]
struct Failure {
    id: Uuid,
    reason: String,
}

// ---- handlers ------------------------------------------------------------------------------

async fn commit(
    State(runtime): State<Arc<Runtime>>,
    body: Result<Json<CommitEventsRequest>, JsonRejection>,
) -> Response {
    let request = match body {
        Ok(Json(request)) => request,
        Err(rejection) => return bad_request(&rejection),
    };
    if let Some(field) = missing_text(&request.call_context.execution_context, "CallContext")
        .or_else(|| {
            request.events.iter().enumerate().find_map(|(i, e)| {
                blank(&e.event_source, &format!("Events[{i}].EventSource"))
                    .or_else(|| blank(&e.content, &format!("Events[{i}].Content")))
            })
        })
    {
        return required(&field);
    }
    let wire = dolittle::runtime::events::CommitEventsRequest {
        call_context: Some(request.call_context.to_wire()),
        events: request
            .events
            .into_iter()
            .map(|e| dolittle::runtime::events::UncommittedEvent {
                event_type: Some(e.event_type.to_wire()),
                event_source_id: e.event_source,
                public: e.public,
                content: e.content,
            })
            .collect(),
    };
    let service = EventStoreService::new(runtime);
    let response = match service.commit(Request::new(wire)).await {
        Ok(response) => response.into_inner(),
        Err(status) => return status_failure(&status),
    };
    let failed = response.failure.is_some();
    let body = CommitResponse {
        events: response.events.into_iter().map(committed_event).collect(),
        failure: response.failure.map(failure),
    };
    answer(failed, &body)
}

async fn commit_for_aggregate(
    State(runtime): State<Arc<Runtime>>,
    body: Result<Json<CommitForAggregateRequest>, JsonRejection>,
) -> Response {
    let request = match body {
        Ok(Json(request)) => request,
        Err(rejection) => return bad_request(&rejection),
    };
    let events = &request.aggregate_events;
    if let Some(field) = missing_text(&request.call_context.execution_context, "CallContext")
        .or_else(|| blank(&events.event_source, "AggregateEvents.EventSource"))
        .or_else(|| {
            events.events.iter().enumerate().find_map(|(i, e)| {
                blank(&e.content, &format!("AggregateEvents.Events[{i}].Content"))
            })
        })
    {
        return required(&field);
    }
    let events = request.aggregate_events;
    let wire = dolittle::runtime::events::CommitAggregateEventsRequest {
        call_context: Some(request.call_context.to_wire()),
        events: Some(dolittle::runtime::events::UncommittedAggregateEvents {
            aggregate_root_id: Some(ids::to_wire(events.aggregate_root)),
            event_source_id: events.event_source,
            expected_aggregate_root_version: events.aggregate_root_version,
            events: events
                .events
                .into_iter()
                .map(|e| {
                    dolittle::runtime::events::uncommitted_aggregate_events::UncommittedAggregateEvent {
                        event_type: Some(e.event_type.to_wire()),
                        public: e.public,
                        content: e.content,
                    }
                })
                .collect(),
        }),
    };
    let service = EventStoreService::new(runtime);
    match service.commit_for_aggregate(Request::new(wire)).await {
        Ok(response) => {
            let response = response.into_inner();
            aggregate_answer(response.events, response.failure)
        }
        Err(status) => status_failure(&status),
    }
}

async fn fetch_for_aggregate(
    State(runtime): State<Arc<Runtime>>,
    body: Result<Json<FetchForAggregateRequest>, JsonRejection>,
) -> Response {
    let request = match body {
        Ok(Json(request)) => request,
        Err(rejection) => return bad_request(&rejection),
    };
    if let Some(field) = missing_text(&request.call_context.execution_context, "CallContext")
        .or_else(|| blank(&request.event_source, "EventSource"))
    {
        return required(&field);
    }
    let wire = dolittle::runtime::events::FetchForAggregateRequest {
        call_context: Some(request.call_context.to_wire()),
        aggregate: Some(dolittle::runtime::events::Aggregate {
            aggregate_root_id: Some(ids::to_wire(request.aggregate_root)),
            event_source_id: request.event_source,
        }),
    };
    let service = EventStoreService::new(runtime);
    match service.fetch_for_aggregate(Request::new(wire)).await {
        Ok(response) => {
            let response = response.into_inner();
            aggregate_answer(response.events, response.failure)
        }
        Err(status) => status_failure(&status),
    }
}

// ---- conversions ---------------------------------------------------------------------------

impl CallRequestContext {
    fn to_wire(&self) -> dolittle::services::CallRequestContext {
        dolittle::services::CallRequestContext {
            head_id: Some(ids::to_wire(self.head_id)),
            execution_context: Some(self.execution_context.to_wire()),
        }
    }
}

impl ExecutionContext {
    fn to_wire(&self) -> dolittle::execution::ExecutionContext {
        dolittle::execution::ExecutionContext {
            microservice_id: Some(ids::to_wire(self.microservice)),
            tenant_id: Some(ids::to_wire(self.tenant)),
            version: Some(dolittle::versioning::Version {
                major: self.version.major,
                minor: self.version.minor,
                patch: self.version.patch,
                build: self.version.build,
                pre_release_string: self.version.pre_release_string.clone(),
            }),
            correlation_id: Some(ids::to_wire(self.correlation_id)),
            claims: self
                .claims
                .iter()
                .map(|c| dolittle::security::Claim {
                    key: c.name.clone(),
                    value: c.value.clone(),
                    value_type: c.value_type.clone(),
                })
                .collect(),
            environment: self.environment.clone(),
            span_id: None,
        }
    }

    fn from_wire(wire: Option<dolittle::execution::ExecutionContext>) -> ExecutionContext {
        let wire = wire.unwrap_or_default();
        let version = wire.version.unwrap_or_default();
        ExecutionContext {
            microservice: id_or_nil(wire.microservice_id.as_ref()),
            tenant: id_or_nil(wire.tenant_id.as_ref()),
            version: Version {
                major: version.major,
                minor: version.minor,
                patch: version.patch,
                build: version.build,
                is_pre_release: !version.pre_release_string.is_empty(),
                pre_release_string: version.pre_release_string,
            },
            environment: wire.environment,
            correlation_id: id_or_nil(wire.correlation_id.as_ref()),
            claims: wire
                .claims
                .into_iter()
                .map(|c| Claim {
                    name: c.key,
                    value: c.value,
                    value_type: c.value_type,
                })
                .collect(),
        }
    }
}

impl Artifact {
    fn to_wire(self) -> dolittle::artifacts::Artifact {
        dolittle::artifacts::Artifact {
            id: Some(ids::to_wire(self.id)),
            generation: self.generation,
        }
    }

    fn from_wire(wire: Option<dolittle::artifacts::Artifact>) -> Artifact {
        let wire = wire.unwrap_or_default();
        Artifact {
            id: id_or_nil(wire.id.as_ref()),
            generation: wire.generation,
        }
    }
}

fn committed_event(e: dolittle::runtime::events::CommittedEvent) -> CommittedEvent {
    CommittedEvent {
        event_log_sequence_number: e.event_log_sequence_number,
        occurred: occurred(e.occurred.as_ref()),
        event_source: e.event_source_id,
        execution_context: ExecutionContext::from_wire(e.execution_context),
        event_type: Artifact::from_wire(e.event_type),
        public: e.public,
        content: e.content,
    }
}

fn aggregate_answer(
    events: Option<dolittle::runtime::events::CommittedAggregateEvents>,
    wire_failure: Option<dolittle::protobuf::Failure>,
) -> Response {
    let failed = wire_failure.is_some();
    let events = events
        .filter(|_| !failed)
        .map(|events| CommittedAggregateEvents {
            aggregate_root: id_or_nil(events.aggregate_root_id.as_ref()),
            aggregate_root_version: events.current_aggregate_root_version.saturating_sub(1),
            event_source_id: events.event_source_id,
            events: events
                .events
                .into_iter()
                .map(|e| CommittedAggregateEvent {
                    event_log_sequence_number: e.event_log_sequence_number,
                    occurred: occurred(e.occurred.as_ref()),
                    execution_context: ExecutionContext::from_wire(e.execution_context),
                    event_type: Artifact::from_wire(e.event_type),
                    public: e.public,
                    content: e.content,
                })
                .collect(),
        });
    answer(
        failed,
        &AggregateResponse {
            events,
            failure: wire_failure.map(failure),
        },
    )
}

/// An id the runtime wrote (always a Guid), the nil Guid when absent, as ASP.NET writes an
/// unset `Guid`.
fn id_or_nil(id: Option<&dolittle::protobuf::Uuid>) -> Uuid {
    id.and_then(|id| ids::from_wire("id", id).ok())
        .unwrap_or_default()
}

fn failure(wire: dolittle::protobuf::Failure) -> Failure {
    Failure {
        id: id_or_nil(wire.id.as_ref()),
        reason: wire.reason,
    }
}

/// 200 with the body, or 500 with it when it carries a failure (as the original).
fn answer(failed: bool, body: &impl Serialize) -> Response {
    let code = if failed {
        StatusCode::INTERNAL_SERVER_ERROR
    } else {
        StatusCode::OK
    };
    (code, Json(body)).into_response()
}

/// A gRPC status (never raised by the event store, which answers in band) as the failure.
fn status_failure(status: &tonic::Status) -> Response {
    let body = CommitResponse {
        events: Vec::new(),
        failure: Some(Failure {
            id: crate::api::failure::id::OTHER,
            reason: format!("Error: {}", status.message()),
        }),
    };
    answer(true, &body)
}

/// The time of an event as ASP.NET writes a `DateTimeOffset` in UTC: seconds with up to seven
/// fraction digits, trailing zeros dropped, and `+00:00`.
fn occurred(at: Option<&prost_types::Timestamp>) -> String {
    let (seconds, nanos) = at.map_or((0, 0), |t| (t.seconds, t.nanos));
    utc_text(seconds, i64::from(nanos))
}

/// A UTC time (Unix seconds and nanoseconds) as ASP.NET writes it.
pub(crate) fn utc_text(seconds: i64, nanos: i64) -> String {
    let days = seconds.div_euclid(86_400);
    let in_day = seconds.rem_euclid(86_400);
    let (year, month, day) = civil_from_days(days);
    let mut text = format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}",
        in_day / 3600,
        in_day % 3600 / 60,
        in_day % 60
    );
    let ticks = nanos.clamp(0, 999_999_999) / 100;
    if ticks > 0 {
        let fraction = format!("{ticks:07}");
        text.push('.');
        text.push_str(fraction.trim_end_matches('0'));
    }
    text.push_str("+00:00");
    text
}

/// Year, month and day of the `days`th day after 1970-01-01 (proleptic Gregorian).
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let day_of_era = z.rem_euclid(146_097);
    let year_of_era =
        (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let mp = (5 * day_of_year + 2) / 153;
    let day = u32::try_from(day_of_year - (153 * mp + 2) / 5 + 1).unwrap_or(1);
    let month = u32::try_from(if mp < 10 { mp + 3 } else { mp - 9 }).unwrap_or(1);
    let year = year_of_era + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

// ---- validation ----------------------------------------------------------------------------

/// ASP.NET's required text: missing, empty or only white space.
fn blank(text: &str, field: &str) -> Option<String> {
    text.trim().is_empty().then(|| field.to_owned())
}

fn missing_text(context: &ExecutionContext, prefix: &str) -> Option<String> {
    blank(
        &context.environment,
        &format!("{prefix}.ExecutionContext.Environment"),
    )
}

fn required(field: &str) -> Response {
    let name = field.rsplit('.').next().unwrap_or(field);
    problem(field, &format!("The {name} field is required."))
}

fn bad_request(rejection: &JsonRejection) -> Response {
    match rejection {
        JsonRejection::MissingJsonContentType(_) => (
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            [("content-type", "application/problem+json")],
            serde_json::json!({
                "type": "https://tools.ietf.org/html/rfc9110#section-15.5.16",
                "title": "Unsupported Media Type",
                "status": 415,
            })
            .to_string(),
        )
            .into_response(),
        other => problem("$", &other.body_text()),
    }
}

/// A 400 problem document with one error, as ASP.NET's validation writes it.
fn problem(field: &str, message: &str) -> Response {
    let mut errors = serde_json::Map::new();
    errors.insert(field.to_owned(), serde_json::json!([message]));
    (
        StatusCode::BAD_REQUEST,
        [("content-type", "application/problem+json")],
        serde_json::json!({
            "type": "https://tools.ietf.org/html/rfc9110#section-15.5.1",
            "title": "One or more validation errors occurred.",
            "status": 400,
            "errors": errors,
        })
        .to_string(),
    )
        .into_response()
}

// ---- the OpenAPI document ------------------------------------------------------------------

/// The schemas, named as the original names them (full .NET type names).
const NS: &str = "Dolittle.Runtime.Events.Store.Services.WebAPI";

async fn openapi() -> Response {
    use serde_json::json;
    let reference = |name: &str| json!({ "$ref": format!("#/components/schemas/{name}") });
    let api = |name: &str| reference(&format!("{NS}.{name}"));
    let array = |items: serde_json::Value| json!({ "type": "array", "items": items });
    let uuid = json!({ "type": "string", "format": "uuid" });
    let text = json!({ "type": "string" });
    let boolean = json!({ "type": "boolean" });
    let uint64 = json!({ "type": "integer", "format": "int64" });
    let int32 = json!({ "type": "integer", "format": "int32" });
    let time = json!({ "type": "string", "format": "date-time" });
    let object = |properties: serde_json::Value| json!({ "type": "object", "properties": properties, "additionalProperties": false });
    let operation = |request: &str, response: &str| {
        json!({
            "post": {
                "tags": ["EventStore"],
                "requestBody": { "content": {
                    "application/json": { "schema": api(request) },
                    "text/json": { "schema": api(request) },
                    "application/*+json": { "schema": api(request) },
                }},
                "responses": {
                    "200": { "description": "OK", "content": {
                        "application/json": { "schema": api(response) } } },
                    "500": { "description": "The answer carries a failure", "content": {
                        "application/json": { "schema": api(response) } } },
                    "400": { "description": "The body is not the request" },
                }
            }
        })
    };
    let execution_context = object(json!({
        "microservice": uuid, "tenant": uuid,
        "version": reference("Dolittle.Runtime.Domain.Platform.Version"),
        "environment": text, "correlationId": uuid,
        "claims": array(reference("Dolittle.Runtime.Execution.Claim")),
    }));
    let document = json!({
        "openapi": "3.0.1",
        "info": { "title": "Dolittle.Runtime.Server", "version": "1.0" },
        "paths": {
            "/api/events/commit": operation("CommitEventsRequest", "CommitResponse"),
            "/api/events/commitForAggregate":
                operation("CommitForAggregateRequest", "CommitForAggregateResponse"),
            "/api/events/fetchForAggregate":
                operation("FetchForAggregateRequest", "FetchForAggregateResponse"),
        },
        "components": { "schemas": {
            format!("{NS}.CommitEventsRequest"): object(json!({
                "callContext": api("CallRequestContext"),
                "events": array(api("UncommittedEvent")) })),
            format!("{NS}.CommitForAggregateRequest"): object(json!({
                "callContext": api("CallRequestContext"),
                "aggregateEvents": api("UncommittedAggregateEvents") })),
            format!("{NS}.FetchForAggregateRequest"): object(json!({
                "callContext": api("CallRequestContext"),
                "aggregateRoot": uuid, "eventSource": text })),
            format!("{NS}.CallRequestContext"): object(json!({
                "executionContext": api("ExecutionContext"), "headId": uuid })),
            format!("{NS}.ExecutionContext"): execution_context,
            "Dolittle.Runtime.Domain.Platform.Version": object(json!({
                "major": int32, "minor": int32, "patch": int32, "build": int32,
                "preReleaseString": text,
                "isPreRelease": { "type": "boolean", "readOnly": true } })),
            "Dolittle.Runtime.Execution.Claim": object(json!({
                "name": text, "value": text, "valueType": text })),
            format!("{NS}.Artifact"): object(json!({
                "id": uuid, "generation": { "type": "integer", "format": "int32" } })),
            format!("{NS}.UncommittedEvent"): object(json!({
                "eventSource": text, "type": api("Artifact"), "public": boolean,
                "content": text })),
            format!("{NS}.UncommittedAggregateEvents"): object(json!({
                "eventSource": text, "aggregateRoot": uuid, "aggregateRootVersion": uint64,
                "events": array(api("UncommittedAggregateEvent")) })),
            format!("{NS}.UncommittedAggregateEvent"): object(json!({
                "type": api("Artifact"), "public": boolean, "content": text })),
            format!("{NS}.CommitResponse"): object(json!({
                "events": array(api("CommittedEvent")), "failure": api("Failure") })),
            format!("{NS}.CommitForAggregateResponse"): object(json!({
                "events": api("CommittedAggregateEvents"), "failure": api("Failure") })),
            format!("{NS}.FetchForAggregateResponse"): object(json!({
                "events": api("CommittedAggregateEvents"), "failure": api("Failure") })),
            format!("{NS}.CommittedEvent"): object(json!({
                "eventLogSequenceNumber": uint64, "occurred": time, "eventSource": text,
                "executionContext": api("ExecutionContext"), "type": api("Artifact"),
                "public": boolean, "content": text })),
            format!("{NS}.CommittedAggregateEvents"): object(json!({
                "eventSourceId": text, "aggregateRoot": uuid, "aggregateRootVersion": uint64,
                "events": array(api("CommittedAggregateEvent")) })),
            format!("{NS}.CommittedAggregateEvent"): object(json!({
                "eventLogSequenceNumber": uint64, "occurred": time,
                "executionContext": api("ExecutionContext"), "type": api("Artifact"),
                "public": boolean, "content": text })),
            format!("{NS}.Failure"): object(json!({ "id": uuid, "reason": text })),
        }},
    });
    Json(document).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_as_aspnet_writes_them() {
        let at = |seconds, nanos| occurred(Some(&prost_types::Timestamp { seconds, nanos }));
        assert_eq!(at(0, 0), "1970-01-01T00:00:00+00:00");
        assert_eq!(
            at(1_736_159_463, 123_456_700),
            "2025-01-06T10:31:03.1234567+00:00"
        );
        assert_eq!(
            at(1_736_159_463, 120_000_000),
            "2025-01-06T10:31:03.12+00:00"
        );
        assert_eq!(at(951_782_400, 0), "2000-02-29T00:00:00+00:00");
        assert_eq!(at(-1, 0), "1969-12-31T23:59:59+00:00");
    }
}
