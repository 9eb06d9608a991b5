//! The plain-HTTP ports: the web port (`GET /healthz`, a status page at `/`, and `POST
//! /export` when an export directory is configured) and the metrics port (`GET /metrics`,
//! Prometheus text). Nothing here changes the runtime: an export only reads it, and writes
//! its dump under the configured directory alone.
//!
//! Health runs each tenant's check on a blocking thread (it touches the store); the status
//! page escapes the configured names it shows.

use std::sync::Arc;

use anyhow::Context as _;
use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{Html, IntoResponse};
use axum::routing::{get, post};
use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::api::failure::without_paths;
use crate::runtime::Runtime;
use crate::shutdown;

/// The web port's routes: `/healthz` and the status page.
pub(crate) fn web(runtime: Arc<Runtime>) -> axum::Router {
    axum::Router::new()
        .route("/healthz", get(healthz))
        .route("/", get(status_page))
        .route("/export", post(export))
        .with_state(runtime)
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
    stop: watch::Receiver<bool>,
) -> anyhow::Result<()> {
    axum::serve(listener, app)
        .with_graceful_shutdown(shutdown::stopped(stop))
        .await
        .with_context(|| format!("serving the {name} endpoint"))
}

/// `GET /healthz`: 200 with a report when every configured tenant's store takes writes and
/// its index works, 503 naming the ones that do not. Shaped like the original's report (Status, Entries).
async fn healthz(State(runtime): State<Arc<Runtime>>) -> impl IntoResponse {
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
    let status = if healthy { "Healthy" } else { "Unhealthy" };
    let body = serde_json::json!({
        "Status": status,
        "Entries": {
            "EventStoreHealthCheck": {
                "Status": status,
                "Description": "Every configured tenant's event store takes writes and its index works",
                "Data": data,
            }
        }
    });
    let code = if healthy {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (code, axum::Json(body))
}

/// `GET /`: who this runtime is, which tenants it serves, and its event horizon (the
/// subscriptions it holds and the ones it serves).
async fn status_page(State(runtime): State<Arc<Runtime>>) -> Html<String> {
    use std::fmt::Write as _;
    let p = &runtime.config.platform;
    let mut tenants = String::new();
    for t in runtime.tenant_ids() {
        tenants.push_str("<li><code>");
        tenants.push_str(&t.to_string());
        tenants.push_str("</code></li>");
    }
    let mut horizon = String::new();
    let subscriptions = runtime.horizon.consumer.subscriptions();
    if !subscriptions.is_empty() {
        horizon.push_str(
            "<h2>Event horizon subscriptions</h2><table><tr><th>tenant</th>\
             <th>producer microservice</th><th>producer tenant</th><th>stream</th>\
             <th>partition</th><th>scope</th><th>position</th><th>stored</th>\
             <th>connected</th><th>reconnects</th><th>last error</th></tr>",
        );
        for s in &subscriptions {
            let _ = write!(
                horizon,
                "<tr><td><code>{}</code></td><td><code>{}</code></td><td><code>{}</code></td>\
                 <td><code>{}</code></td><td>{}</td><td><code>{}</code></td><td>{}</td>\
                 <td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
                s.consumer_tenant,
                s.producer_microservice,
                s.producer_tenant,
                s.stream,
                html_escape(&s.partition),
                s.scope,
                s.position,
                s.events_stored,
                if s.connected { "yes" } else { "no" },
                s.reconnects,
                html_escape(s.last_error.as_deref().unwrap_or("")),
            );
        }
        horizon.push_str("</table>");
    }
    let producer = runtime.horizon.producer.clone();
    let streams = tokio::task::spawn_blocking(move || producer.public_streams())
        .await
        .unwrap_or_default();
    if !streams.is_empty() {
        horizon.push_str(
            "<h2>Public streams</h2><table><tr><th>tenant</th><th>stream</th><th>events</th></tr>",
        );
        for (tenant, stream, end) in &streams {
            let _ = write!(
                horizon,
                "<tr><td><code>{tenant}</code></td><td><code>{stream}</code></td><td>{end}</td></tr>"
            );
        }
        horizon.push_str("</table>");
    }
    let served = runtime.horizon.producer.served();
    if !served.is_empty() {
        horizon.push_str(
            "<h2>Public streams served</h2><table><tr><th>consumer microservice</th>\
             <th>consumer tenant</th><th>tenant</th><th>stream</th><th>partition</th>\
             <th>sent up to</th><th>acknowledged up to</th><th>lag (at most)</th></tr>",
        );
        for s in &served {
            let _ = write!(
                horizon,
                "<tr><td><code>{}</code></td><td><code>{}</code></td><td><code>{}</code></td>\
                 <td><code>{}</code></td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
                s.consumer_microservice,
                s.consumer_tenant,
                s.producer_tenant,
                s.stream,
                html_escape(&s.partition),
                s.sent_position,
                s.acknowledged_position,
                s.lag_events,
            );
        }
        horizon.push_str("</table>");
    }
    Html(format!(
        "<!doctype html><title>annals</title><h1>annals {}</h1>\
         <p>Dolittle Contracts 7.8.1 runtime. Microservice <code>{}</code> ({}), environment {}.</p>\
         <h2>Tenants</h2><ul>{tenants}</ul>{horizon}\
         <p><a href=\"/healthz\">/healthz</a></p>",
        env!("CARGO_PKG_VERSION"),
        p.microservice_id,
        html_escape(&p.microservice_name),
        html_escape(&p.environment),
    ))
}

fn html_escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// `GET /metrics`: every series in the text exposition format.
async fn metrics_text(State(runtime): State<Arc<Runtime>>) -> impl IntoResponse {
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        runtime.metrics.encode(),
    )
}
