//! The plain-HTTP ports: the web port (`GET /healthz`, the console (`console`), `POST
//! /export` when an export directory is configured, and projections' states as of any
//! point under `/projections`) and the metrics port (`GET /metrics`,
//! Prometheus text). Nothing here changes the runtime: an export only reads it, and writes
//! its dump under the configured directory alone.
//!
//! Health runs each tenant's check on a blocking thread (it touches the store); the status
//! page escapes the configured names it shows.

use std::sync::Arc;

use anyhow::Context as _;
use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::IntoResponse;
use axum::routing::{get, post};
use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::api::failure::without_paths;
use crate::connections::{ConnectionLimits, GuardedListener};
use crate::runtime::Runtime;
use crate::shutdown;

/// The web port's routes: `/healthz`, exports, projections' states, the REST twin and the
/// console.
pub(crate) fn web(runtime: Arc<Runtime>) -> axum::Router {
    axum::Router::new()
        .route("/healthz", get(healthz))
        .route("/export", post(export))
        .route("/projections", get(projections))
        .route(
            "/projections/{tenant}/{scope}/{projection}/states",
            get(projection_states),
        )
        .merge(crate::rest::routes())
        .merge(crate::console::routes())
        .with_state(runtime)
}

/// A JSON error answer.
fn refusal(code: StatusCode, error: impl Into<String>) -> axum::response::Response {
    let error: String = error.into();
    (code, axum::Json(serde_json::json!({ "error": error }))).into_response()
}

/// `GET /projections`: every stored projection of every tenant, with the position it has
/// processed and what its history holds (entries, bytes before compression, where it
/// begins).
async fn projections(State(runtime): State<Arc<Runtime>>) -> axum::response::Response {
    let tenants: Result<Vec<_>, _> = runtime
        .tenant_ids()
        .iter()
        .map(|id| runtime.tenant(*id).map(|t| (*id, t)))
        .collect();
    let tenants = match tenants {
        Ok(tenants) => tenants,
        Err(failure) => return refusal(StatusCode::INTERNAL_SERVER_ERROR, failure.reason),
    };
    let listed =
        tokio::task::spawn_blocking(move || -> Result<serde_json::Value, annals_engine::Error> {
            let mut out = Vec::new();
            for (tenant_id, tenant) in tenants {
                for (scope, projection, _) in tenant.projection_definitions()? {
                    let position = tenant
                        .stream_processor_state(&annals_engine::StreamProcessorId {
                            scope: scope.0,
                            processor: projection,
                            source_stream: uuid::Uuid::nil(),
                        })?
                        .map_or(0, |s| s.event_log_position.0);
                    let history = tenant.projection_history_size(scope, projection)?;
                    out.push(serde_json::json!({
                        "tenant": tenant_id,
                        "scope": scope.0,
                        "projection": projection,
                        "eventLogPosition": position,
                        "history": {
                            "entries": history.entries,
                            "bytes": history.bytes,
                            "from": history.floor.0,
                        },
                    }));
                }
            }
            Ok(serde_json::Value::Array(out))
        })
        .await;
    match listed {
        Ok(Ok(list)) => axum::Json(serde_json::json!({ "projections": list })).into_response(),
        Ok(Err(e)) => refusal(
            StatusCode::INTERNAL_SERVER_ERROR,
            without_paths(&e.to_string()),
        ),
        Err(e) => refusal(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
    }
}

/// The decoded `name=value` pairs of a query string.
fn query_pairs(query: Option<&str>) -> Vec<(String, String)> {
    fn decode(text: &str) -> String {
        let bytes = text.as_bytes();
        let mut out = Vec::with_capacity(bytes.len());
        let mut i = 0;
        while i < bytes.len() {
            match bytes[i] {
                b'+' => out.push(b' '),
                b'%' => match bytes
                    .get(i + 1..i + 3)
                    .and_then(|hex| std::str::from_utf8(hex).ok())
                    .and_then(|hex| u8::from_str_radix(hex, 16).ok())
                {
                    Some(byte) => {
                        out.push(byte);
                        i += 2;
                    }
                    None => out.push(b'%'),
                },
                byte => out.push(byte),
            }
            i += 1;
        }
        String::from_utf8_lossy(&out).into_owned()
    }
    query
        .unwrap_or_default()
        .split('&')
        .filter(|pair| !pair.is_empty())
        .map(|pair| {
            let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
            (decode(name), decode(value))
        })
        .collect()
}

/// `GET /projections/{tenant}/{scope}/{projection}/states`: a projection's states as of a
/// point, as JSON. `key=K` asks for one key (its initial state when it had none then);
/// without it, the keys that had a state, `limit` (default 1000, at most 10000) after the
/// key `after`, with `next` naming the key to continue after when there are more. `at=N`
/// is an event-log position, `time=T` a time (RFC 3339, or a date for midnight UTC);
/// neither: what the projection has processed so far.
async fn projection_states(
    State(runtime): State<Arc<Runtime>>,
    axum::extract::Path((tenant, scope, projection)): axum::extract::Path<(String, String, String)>,
    axum::extract::RawQuery(query): axum::extract::RawQuery,
) -> axum::response::Response {
    use crate::projections::history::{parse_time, Point, Subject};
    let ids = (
        tenant.parse::<uuid::Uuid>(),
        scope.parse::<uuid::Uuid>(),
        projection.parse::<uuid::Uuid>(),
    );
    let (Ok(tenant_id), Ok(scope), Ok(projection)) = ids else {
        return refusal(
            StatusCode::BAD_REQUEST,
            "tenant, scope and projection are UUIDs",
        );
    };
    let mut key = None;
    let mut point = Point::Now;
    let mut after = None;
    let mut limit = 1000usize;
    for (name, value) in query_pairs(query.as_deref()) {
        match name.as_str() {
            "key" => key = Some(value),
            "after" => after = Some(value),
            "at" => match value.parse() {
                Ok(at) => point = Point::Position(annals_engine::EventLogSequenceNumber(at)),
                Err(_) => {
                    return refusal(
                        StatusCode::BAD_REQUEST,
                        format!("at={value} is not an event-log position"),
                    )
                }
            },
            "time" => match parse_time(&value) {
                Some(at) => point = Point::Time(at),
                None => {
                    return refusal(
                        StatusCode::BAD_REQUEST,
                        format!(
                            "time={value} is not an RFC 3339 time (2026-12-01T09:30:00Z) or a date"
                        ),
                    )
                }
            },
            "limit" => match value.parse::<usize>() {
                Ok(n) if (1..=10_000).contains(&n) => limit = n,
                _ => {
                    return refusal(
                        StatusCode::BAD_REQUEST,
                        format!("limit={value} is not from 1 to 10000"),
                    )
                }
            },
            other => {
                return refusal(
                    StatusCode::BAD_REQUEST,
                    format!("unknown parameter {other}"),
                )
            }
        }
    }
    let tenant = match runtime.tenant(tenant_id) {
        Ok(tenant) => tenant,
        Err(failure) => return refusal(StatusCode::NOT_FOUND, failure.reason),
    };
    let subject = Subject {
        tenant,
        scope: annals_engine::ScopeId(scope),
        projection,
    };
    let state_json = |text: &str| {
        serde_json::from_str::<serde_json::Value>(text)
            .unwrap_or_else(|_| serde_json::Value::String(text.to_owned()))
    };
    let answer = async {
        let at = subject.resolve(point).await?;
        let mut body = serde_json::json!({
            "tenant": tenant_id,
            "scope": scope,
            "projection": projection,
            "eventLogPosition": at.0,
        });
        if let Some(key) = key {
            let (state, persisted) = subject.state_at(key.clone(), at).await?;
            body["states"] = serde_json::json!([{
                "key": key,
                "type": if persisted { "PERSISTED" } else { "CREATED_FROM_INITIAL_STATE" },
                "state": state_json(&state),
            }]);
        } else {
            let page = subject.states_at(at, after, limit).await?;
            if page.len() == limit {
                body["next"] = serde_json::json!(page.last().map(|(k, _)| k.clone()));
            }
            body["states"] = page
                .iter()
                .map(|(key, state)| {
                    serde_json::json!({ "key": key, "type": "PERSISTED", "state": state_json(state) })
                })
                .collect();
        }
        Ok::<_, crate::api::failure::Failure>(body)
    };
    match answer.await {
        Ok(body) => axum::Json(body).into_response(),
        Err(failure) => {
            let code = if failure.id == crate::projections::history::NOT_PROCESSED_YET
                || failure.id == crate::projections::history::HISTORY_TRIMMED
            {
                StatusCode::CONFLICT
            } else if failure.id == crate::services::projection_store::NO_DEFINITION {
                StatusCode::NOT_FOUND
            } else {
                StatusCode::INTERNAL_SERVER_ERROR
            };
            (
                code,
                axum::Json(serde_json::json!({ "error": failure.reason, "failure": failure.id })),
            )
                .into_response()
        }
    }
}

/// What `POST /export` takes.
#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct ExportBody {
    /// The tenant to export.
    tenant: uuid::Uuid,
    /// The dump goes to `<export directory>/<out>/<database>`: a plain name.
    out: String,
    /// Default: the tenant's configured event-store database, else `event_store`.
    database: Option<String>,
    /// Compress as `mongodump --gzip`.
    #[serde(default)]
    gzip: bool,
}

/// Whether an export is running: one at a time.
static EXPORTING: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// Clears [`EXPORTING`] when the export ends, held by the blocking export itself: also when
/// the client goes away and the request's future is dropped mid-way.
struct Exporting;

impl Drop for Exporting {
    fn drop(&mut self) {
        EXPORTING.store(false, std::sync::atomic::Ordering::Release);
    }
}

/// `POST /export`: writes a tenant of the running runtime as the original's MongoDB database
/// (mongodump's layout) under the configured export directory, while commits go on, as a
/// consistent snapshot; answers with the report (what each log covers). 404 when no export
/// directory is configured, 409 while another export runs.
async fn export(
    State(runtime): State<Arc<Runtime>>,
    axum::Json(body): axum::Json<ExportBody>,
) -> axum::response::Response {
    use std::sync::atomic::Ordering;
    let refuse = |code: StatusCode, error: String| {
        (code, axum::Json(serde_json::json!({ "error": error }))).into_response()
    };
    let Some(dir) = runtime.config.export_dir.clone() else {
        return refuse(
            StatusCode::NOT_FOUND,
            "exports of the running runtime are off: set annals:exportDirectory".into(),
        );
    };
    let plain = !body.out.is_empty()
        && body.out.len() <= 100
        && !body.out.starts_with('.')
        && body
            .out
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
    if !plain {
        return refuse(
            StatusCode::BAD_REQUEST,
            format!(
                "out {:?} must be a plain name (letters, digits, - _ .), not a path",
                body.out
            ),
        );
    }
    let tenant = match runtime.tenant(body.tenant) {
        Ok(tenant) => tenant,
        Err(failure) => return refuse(StatusCode::NOT_FOUND, failure.reason),
    };
    if EXPORTING.swap(true, Ordering::AcqRel) {
        return refuse(StatusCode::CONFLICT, "another export is running".into());
    }
    let database = body
        .database
        .or_else(|| crate::mongo::configured_database(&runtime.config.merged, body.tenant))
        .unwrap_or_else(|| crate::mongo::DEFAULT_DATABASE.to_owned());
    let out = dir.join(&body.out);
    let started = std::time::Instant::now();
    let result = tokio::task::spawn_blocking(move || {
        let _exporting = Exporting;
        let written = crate::mongo::write_dump(&tenant, &out, &database, body.gzip);
        (written, out, database)
    })
    .await;
    match result {
        Ok((Ok(summary), out, database)) => {
            let request = crate::mongo::ExportRequest {
                engine: runtime.config.engine.clone(),
                tenant: body.tenant,
                out,
                database,
                gzip: body.gzip,
            };
            let report = crate::mongo::report(&request, &summary, started.elapsed());
            tracing::info!(tenant = %body.tenant, "exported: {report}");
            axum::Json(serde_json::json!({ "report": report })).into_response()
        }
        Ok((Err(e), _, _)) => refuse(StatusCode::INTERNAL_SERVER_ERROR, format!("{e:#}")),
        Err(e) => refuse(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
    }
}

/// The metrics port's route: `/metrics`.
pub(crate) fn metrics(runtime: Arc<Runtime>) -> axum::Router {
    axum::Router::new()
        .route("/metrics", get(metrics_text))
        .with_state(runtime)
}

/// Serves `app` on `listener` until `stop` turns true, finishing requests under way.
pub(crate) async fn run(
    name: &'static str,
    app: axum::Router,
    listener: TcpListener,
    limits: ConnectionLimits,
    stop: watch::Receiver<bool>,
) -> anyhow::Result<()> {
    axum::serve(GuardedListener::new(name, listener, limits), app)
        .with_graceful_shutdown(shutdown::stopped(stop))
        .await
        .with_context(|| format!("serving the {name} endpoint"))
}

/// `GET /healthz`: 200 with a report when every configured tenant's store takes writes and
/// its index works, 503 naming the ones that do not. Shaped like the original's report (Status, Entries).
async fn healthz(State(runtime): State<Arc<Runtime>>) -> impl IntoResponse {
    let disk = runtime.disk.reading();
    let low_space = runtime.config.disk_low_space;
    let checks = tokio::task::spawn_blocking(move || {
        runtime
            .tenant_ids()
            .iter()
            .map(|&id| {
                let state = runtime
                    .tenant(id)
                    .map_err(|f| f.reason)
                    .and_then(|t| t.check_healthy().map_err(|e| e.to_string()))
                    // Anyone who reaches the port reads this: no server paths (the log has
                    // them).
                    .map_err(|e| without_paths(&e));
                (id, state)
            })
            .collect::<Vec<_>>()
    })
    .await
    .unwrap_or_default();
    let healthy = !checks.is_empty() && checks.iter().all(|(_, s)| s.is_ok());
    let data: serde_json::Map<String, serde_json::Value> = checks
        .iter()
        .map(|(id, s)| {
            let text = match s {
                Ok(()) => "Healthy".to_owned(),
                Err(e) => e.clone(),
            };
            (id.to_string(), serde_json::Value::String(text))
        })
        .collect();
    let store = if healthy { "Healthy" } else { "Unhealthy" };
    // A disk running out of space degrades the runtime before it fails commits.
    let disk_low = disk.is_some_and(|d| d.low);
    let status = match (healthy, disk_low) {
        (false, _) => "Unhealthy",
        (true, true) => "Degraded",
        (true, false) => "Healthy",
    };
    let disk_entry = match disk {
        Some(reading) => serde_json::json!({
            "Status": if reading.low { "Degraded" } else { "Healthy" },
            "Description": format!(
                "Free space of the data directory's file system (low below {})",
                low_space.describe()
            ),
            "Data": {
                "FreeBytes": reading.free_bytes,
                "TotalBytes": reading.total_bytes,
            },
        }),
        None => serde_json::json!({
            "Status": "Healthy",
            "Description": "The free space of the data directory's file system could not be read",
            "Data": {},
        }),
    };
    let body = serde_json::json!({
        "Status": status,
        "Entries": {
            "EventStoreHealthCheck": {
                "Status": store,
                "Description": "Every configured tenant's event store takes writes and its index works",
                "Data": data,
            },
            "DiskSpaceHealthCheck": disk_entry,
        }
    });
    let code = if healthy {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (code, axum::Json(body))
}

/// `GET /metrics`: every series, in OpenMetrics when the scraper accepts it (Prometheus
/// asks for it first), else in the classic text format.
async fn metrics_text(
    State(runtime): State<Arc<Runtime>>,
    headers: axum::http::HeaderMap,
) -> impl IntoResponse {
    let open_metrics = headers
        .get_all(header::ACCEPT)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .any(|v| v.contains("application/openmetrics-text"));
    if open_metrics {
        (
            [(
                header::CONTENT_TYPE,
                "application/openmetrics-text; version=1.0.0; charset=utf-8",
            )],
            runtime.metrics.encode(),
        )
    } else {
        (
            [(
                header::CONTENT_TYPE,
                "text/plain; version=0.0.4; charset=utf-8",
            )],
            runtime.metrics.encode_classic(),
        )
    }
}
