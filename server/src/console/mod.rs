//! The web console on the web port: what an operator of the original finds in Dolittle
//! Studio and an EventStoreDB user in its admin UI, served as plain HTML from the runtime
//! itself (no build step, nothing fetched from elsewhere).
//!
//! - `/`: the runtime, its tenants, plots of commits per second and of each event handler's
//!   lag over the last hour, and the event horizon (subscriptions, public streams served).
//! - `/console/tenants/{tenant}/events`: a tenant's event log (or a scope's), newest first,
//!   paged both ways, filtered by event type, event source and time; each event whole at
//!   `.../events/{sequence number}`.
//! - `/console/tenants/{tenant}/aggregates`: aggregate roots, their instances and versions,
//!   and an instance's events.
//! - `/console/tenants/{tenant}/processors`: connected event handlers, filters and
//!   projections with their position, lag and failing partitions (with reasons), and a
//!   reprocess action behind a confirmation page.
//!
//! Every page works without JavaScript: links and forms do everything. With it, a small
//! inline script refreshes the page's content every two seconds without reloading (only
//! when it changed; paused while a form field has focus, or when unticked). The plots are SVG drawn here from
//! samples kept in bounded memory (`plots`).

use std::fmt::Write as _;
use std::sync::Arc;

use annals_engine::{Event, EventLogSequenceNumber, ScopeId};
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::routing::get;
use uuid::Uuid;

use crate::processing::{Kind, Registration};
use crate::runtime::Runtime;

pub(crate) mod plots;

/// Events on one page of the log.
const PAGE: usize = 50;
/// Events one request scans at most looking for matches of a filter (the page then links
/// to where it stopped).
const SCAN_MAX: u64 = 200_000;
/// Instances listed for one aggregate root.
const INSTANCES_MAX: usize = 1000;
/// Events of one aggregate instance listed.
const INSTANCE_EVENTS_MAX: usize = 1000;
/// Instances the aggregate roots page counts at most.
const ROOTS_SCAN_MAX: usize = 100_000;

/// The console's routes.
pub(crate) fn routes() -> axum::Router<Arc<Runtime>> {
    axum::Router::new()
        .route("/", get(home))
        .route("/console/tenants/{tenant}/events", get(events))
        .route("/console/tenants/{tenant}/events/{sequence}", get(event))
        .route("/console/tenants/{tenant}/aggregates", get(aggregate_roots))
        .route(
            "/console/tenants/{tenant}/aggregates/{root}",
            get(instances),
        )
        .route(
            "/console/tenants/{tenant}/aggregates/{root}/{event_source}",
            get(instance_events),
        )
        .route("/console/tenants/{tenant}/processors", get(processors))
        .route(
            "/console/tenants/{tenant}/processors/{scope}/{id}/reprocess",
            get(reprocess_confirm).post(reprocess),
        )
}

/// Escapes text for HTML (element content and quoted attributes).
pub(crate) fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// Escapes text for a URL's path segment or query value.
fn url(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for b in text.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(char::from(b));
        } else {
            let _ = write!(out, "%{b:02X}");
        }
    }
    out
}

/// A time (Unix nanoseconds) as UTC text.
fn time(ns: i64) -> String {
    crate::rest::utc_text(ns.div_euclid(1_000_000_000), ns.rem_euclid(1_000_000_000))
}

const STYLE: &str = "body{font:14px/1.4 system-ui,sans-serif;margin:0;color:#1d2430}\
header{background:#1d2430;color:#fff;padding:.6em 1em;display:flex;gap:1.2em;align-items:center;flex-wrap:wrap}\
header a{color:#cfe3ff;text-decoration:none}header strong{font-size:1.1em}\
main{padding:1em 1.4em}table{border-collapse:collapse;margin:.6em 0}\
th,td{border-bottom:1px solid #dde;padding:.25em .6em;text-align:left;vertical-align:top}\
th{background:#f3f5f9}code,pre{font-family:ui-monospace,monospace;font-size:12.5px}\
pre{background:#f6f8fa;padding:.6em;overflow:auto;max-width:100%}\
.failing{color:#a40000}.ok{color:#176b1b}.notice{background:#eef7ee;padding:.5em;border-left:4px solid #176b1b}\
.error{background:#fbeeee;padding:.5em;border-left:4px solid #a40000}\
form.filter{display:flex;gap:.6em;flex-wrap:wrap;align-items:end}form.filter label{display:flex;flex-direction:column;font-size:12px}\
nav.pages a{margin-right:1em}svg{background:#fbfcfe;border:1px solid #dde}#live{font-size:12px}";

/// The script of live updates: the page's `main` is fetched again and swapped in place.
const LIVE: &str = "(function(){var box=document.getElementById('live-on');\
if(!box)return;document.getElementById('live').hidden=false;\
function busy(){var a=document.activeElement;return a&&a!==box&&/^(INPUT|SELECT|TEXTAREA|BUTTON)$/.test(a.tagName)}\
function tick(){if(!box.checked||busy()||document.hidden){return setTimeout(tick,2000)}\
fetch(location.href,{headers:{'X-Console-Live':'1'},cache:'no-store'}).then(function(r){return r.text()})\
.then(function(t){var d=new DOMParser().parseFromString(t,'text/html');var m=d.querySelector('main');\
var cur=document.querySelector('main');if(m&&!busy()&&m.innerHTML!==cur.innerHTML){cur.innerHTML=m.innerHTML;\
document.body.setAttribute('data-refreshed',String(Date.now()))}}).catch(function(){})\
.then(function(){setTimeout(tick,2000)})}setTimeout(tick,2000)})();";

/// A whole page that updates live: the header with the runtime's name and links, then
/// `body` as `main`.
fn page(runtime: &Runtime, title: &str, tenant: Option<Uuid>, body: &str) -> Html<String> {
    page_as(runtime, (title, tenant), body, true)
}

/// A page that does not update live: what does not change, or costs more than a refresh
/// every two seconds should (a scan of every aggregate instance).
fn still(runtime: &Runtime, title: &str, tenant: Option<Uuid>, body: &str) -> Html<String> {
    page_as(runtime, (title, tenant), body, false)
}

fn page_as(
    runtime: &Runtime,
    (title, tenant): (&str, Option<Uuid>),
    body: &str,
    live: bool,
) -> Html<String> {
    let p = &runtime.config.platform;
    let mut nav = String::from("<a href=\"/\">Overview</a>");
    if let Some(t) = tenant {
        let _ = write!(
            nav,
            "<a href=\"/console/tenants/{t}/events\">Events</a>\
             <a href=\"/console/tenants/{t}/aggregates\">Aggregates</a>\
             <a href=\"/console/tenants/{t}/processors\">Processors</a>"
        );
    }
    nav.push_str("<a href=\"/healthz\">Health</a><a href=\"/swagger/v1/swagger.json\">REST API (OpenAPI)</a><a href=\"/metrics\">Metrics</a>");
    Html(format!(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width,initial-scale=1\">\
         <title>{title} - annals</title><style>{STYLE}</style></head><body>\
         <header><strong>annals {version}</strong><span>{name} <code>{microservice}</code> \
         &middot; {environment}{tenant_text}</span>{nav}\
         {live_switch}</header><main><h1>{title}</h1>{body}</main>{live_script}</body></html>",
        title = escape(title),
        live_switch = if live {
            "<label id=\"live\" hidden><input type=\"checkbox\" id=\"live-on\" checked> live</label>"
        } else {
            ""
        },
        live_script = if live {
            format!(
                "<noscript><p style=\"padding:0 1.4em\">JavaScript is off: reload the page for \
                 what changed.</p></noscript><script>{LIVE}</script>"
            )
        } else {
            String::new()
        },
        version = env!("CARGO_PKG_VERSION"),
        name = escape(&p.microservice_name),
        microservice = p.microservice_id,
        environment = escape(&p.environment),
        tenant_text = tenant.map_or_else(String::new, |t| format!(
            " &middot; tenant <code>{t}</code>"
        )),
    ))
}

/// A page that says what went wrong.
fn problem(runtime: &Runtime, code: StatusCode, text: &str) -> Response {
    let body = format!("<p class=\"error\">{}</p>", escape(text));
    (code, still(runtime, "Not shown", None, &body)).into_response()
}

/// The tenant named by the path, if this runtime serves it.
fn tenant_of(runtime: &Runtime, tenant: &str) -> Result<Uuid, Box<Response>> {
    tenant
        .parse::<Uuid>()
        .ok()
        .filter(|t| runtime.tenant_ids().contains(t))
        .ok_or_else(|| {
            Box::new(problem(
                runtime,
                StatusCode::NOT_FOUND,
                &format!("{tenant} is not a tenant this runtime serves"),
            ))
        })
}

/// Runs store reads on a blocking thread.
async fn read<T: Send + 'static>(
    work: impl FnOnce() -> Result<T, String> + Send + 'static,
) -> Result<T, String> {
    tokio::task::spawn_blocking(work)
        .await
        .map_err(|e| format!("the read failed: {e}"))?
}

// ---- overview ----------------------------------------------------------------------------

async fn home(State(runtime): State<Arc<Runtime>>) -> Html<String> {
    let mut body = String::new();
    body.push_str("<h2>Tenants</h2><table><tr><th>tenant</th><th>events</th><th></th></tr>");
    for &t in runtime.tenant_ids() {
        let events = runtime
            .tenant(t)
            .ok()
            .and_then(|tenant| tenant.event_log().ok())
            .map_or(0, |log| log.next_sequence_number().0);
        let _ = write!(
            body,
            "<tr><td><code>{t}</code></td><td>{events}</td><td>\
             <a href=\"/console/tenants/{t}/events\">events</a> &middot; \
             <a href=\"/console/tenants/{t}/aggregates\">aggregates</a> &middot; \
             <a href=\"/console/tenants/{t}/processors\">processors</a></td></tr>"
        );
    }
    body.push_str("</table>");
    body.push_str(&runtime.plots.render());
    body.push_str(&horizon(&runtime).await);
    page(&runtime, "Overview", None, &body)
}

/// The event horizon's subscriptions and the public streams this runtime serves.
async fn horizon(runtime: &Arc<Runtime>) -> String {
    let mut out = String::new();
    let subscriptions = runtime.horizon.consumer.subscriptions();
    if !subscriptions.is_empty() {
        out.push_str(
            "<h2>Event horizon subscriptions</h2><table><tr><th>tenant</th>\
             <th>producer microservice</th><th>producer tenant</th><th>stream</th>\
             <th>partition</th><th>scope</th><th>position</th><th>stored</th>\
             <th>connected</th><th>reconnects</th><th>last error</th></tr>",
        );
        for s in &subscriptions {
            let _ = write!(
                out,
                "<tr><td><code>{}</code></td><td><code>{}</code></td><td><code>{}</code></td>\
                 <td><code>{}</code></td><td>{}</td><td><code>{}</code></td><td>{}</td>\
                 <td>{}</td><td class=\"{}\">{}</td><td>{}</td><td>{}</td></tr>",
                s.consumer_tenant,
                s.producer_microservice,
                s.producer_tenant,
                s.stream,
                escape(&s.partition),
                s.scope,
                s.position,
                s.events_stored,
                if s.connected { "ok" } else { "failing" },
                if s.connected { "yes" } else { "no" },
                s.reconnects,
                escape(s.last_error.as_deref().unwrap_or("")),
            );
        }
        out.push_str("</table>");
    }
    let producer = runtime.horizon.producer.clone();
    let streams = tokio::task::spawn_blocking(move || producer.public_streams())
        .await
        .unwrap_or_default();
    if !streams.is_empty() {
        out.push_str(
            "<h2>Public streams</h2><table><tr><th>tenant</th><th>stream</th><th>events</th></tr>",
        );
        for (tenant, stream, end) in &streams {
            let _ = write!(
                out,
                "<tr><td><code>{tenant}</code></td><td><code>{stream}</code></td><td>{end}</td></tr>"
            );
        }
        out.push_str("</table>");
    }
    let served = runtime.horizon.producer.served();
    if !served.is_empty() {
        out.push_str(
            "<h2>Public streams served</h2><table><tr><th>consumer microservice</th>\
             <th>consumer tenant</th><th>tenant</th><th>stream</th><th>partition</th>\
             <th>sent up to</th><th>acknowledged up to</th><th>lag (at most)</th></tr>",
        );
        for s in &served {
            let _ = write!(
                out,
                "<tr><td><code>{}</code></td><td><code>{}</code></td><td><code>{}</code></td>\
                 <td><code>{}</code></td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
                s.consumer_microservice,
                s.consumer_tenant,
                s.producer_tenant,
                s.stream,
                escape(&s.partition),
                s.sent_position,
                s.acknowledged_position,
                s.lag_events,
            );
        }
        out.push_str("</table>");
    }
    out
}

// ---- the event log ----------------------------------------------------------------------

/// The event log page's query: scope, filters, and where the page is.
#[derive(Debug, Default, Clone, serde::Deserialize)]
pub(crate) struct LogQuery {
    #[serde(default)]
    scope: Option<String>,
    /// Event type id, or its alias.
    #[serde(default, rename = "type")]
    event_type: Option<String>,
    #[serde(default)]
    source: Option<String>,
    /// Occurred at or after (RFC 3339, or as a datetime-local field gives it: UTC).
    #[serde(default)]
    from: Option<String>,
    /// Occurred before.
    #[serde(default)]
    to: Option<String>,
    /// The page ends before this sequence number (older pages).
    #[serde(default)]
    before: Option<u64>,
    /// The page starts at this sequence number (newer pages).
    #[serde(default)]
    after: Option<u64>,
}

/// What an event must be to be listed.
struct Filter {
    event_type: Option<Uuid>,
    source: Option<String>,
    from_ns: Option<i64>,
    to_ns: Option<i64>,
}

impl Filter {
    fn is_empty(&self) -> bool {
        self.event_type.is_none()
            && self.source.is_none()
            && self.from_ns.is_none()
            && self.to_ns.is_none()
    }

    fn matches(&self, e: &Event) -> bool {
        self.event_type.is_none_or(|t| e.event_type.id == t)
            && self
                .source
                .as_deref()
                .is_none_or(|s| e.event_source_id == s)
            && self.from_ns.is_none_or(|f| e.occurred_ns >= f)
            && self.to_ns.is_none_or(|t| e.occurred_ns < t)
    }
}

/// A time field: RFC 3339, or a datetime-local field's `2026-12-03T10:15` (read as UTC).
fn field_time(text: &str) -> Option<i64> {
    let text = text.trim();
    let mut owned = text.to_owned();
    let has_zone = text.ends_with(['Z', 'z'])
        || text
            .rsplit_once('T')
            .is_some_and(|(_, clock)| clock.contains(['+', '-']));
    if text.len() == 16 && text.as_bytes().get(10) == Some(&b'T') {
        owned.push_str(":00");
    }
    if text.contains('T') && !has_zone {
        owned.push('Z');
    }
    crate::projections::history::parse_time(&owned)
}

/// One page of the log: the events (oldest first), whether older and newer ones exist
/// past it, and where a scan stopped short (a filter matched too few in `SCAN_MAX`).
struct LogPage {
    events: Vec<Event>,
    end: u64,
    older_from: Option<u64>,
    newer_from: Option<u64>,
}

fn read_range(
    log: &annals_engine::Log,
    from: u64,
    to: u64,
    out: &mut Vec<Event>,
) -> Result<(), String> {
    let mut at = from;
    while at < to {
        let batch = log
            .read(EventLogSequenceNumber(at), 4096, 8 << 20)
            .map_err(|e| e.to_string())?;
        let events = batch.events().map_err(|e| e.to_string())?;
        if events.is_empty() {
            break;
        }
        for e in events {
            if e.sequence_number.0 >= to {
                return Ok(());
            }
            at = e.sequence_number.0 + 1;
            out.push(e);
        }
    }
    Ok(())
}

fn log_page(
    log: &annals_engine::Log,
    filter: &Filter,
    before: Option<u64>,
    after: Option<u64>,
) -> Result<LogPage, String> {
    let end = log.next_sequence_number().0;
    let mut events = Vec::new();
    // Unfiltered, a page's worth is read at a time; filtered, larger chunks.
    let chunk = if filter.is_empty() { PAGE as u64 } else { 4096 };
    if let Some(after) = after {
        // Newer: forwards from `after`.
        let mut at = after.min(end);
        let stop = at.saturating_add(SCAN_MAX).min(end);
        while at < stop && events.len() < PAGE {
            let to = (at + chunk).min(stop);
            let mut chunk = Vec::new();
            read_range(log, at, to, &mut chunk)?;
            for e in chunk {
                if events.len() < PAGE && filter.matches(&e) {
                    at = e.sequence_number.0 + 1;
                    events.push(e);
                } else if events.len() < PAGE {
                    at = e.sequence_number.0 + 1;
                }
            }
            if events.len() < PAGE {
                at = to;
            }
        }
        let first = events.first().map_or(after, |e| e.sequence_number.0);
        return Ok(LogPage {
            end,
            older_from: (first > 0).then_some(first),
            newer_from: (at < end).then_some(at),
            events,
        });
    }
    // Older (or the newest page): backwards from `before`.
    let mut at = before.unwrap_or(end).min(end);
    let stop = at.saturating_sub(SCAN_MAX);
    while at > stop && events.len() < PAGE {
        let from = at.saturating_sub(chunk).max(stop);
        let mut chunk = Vec::new();
        read_range(log, from, at, &mut chunk)?;
        let mut matched: Vec<Event> = chunk.into_iter().filter(|e| filter.matches(e)).collect();
        let room = PAGE - events.len();
        if matched.len() > room {
            let cut = matched.len() - room;
            at = matched[cut].sequence_number.0;
            matched.drain(..cut);
        } else {
            at = from;
        }
        matched.append(&mut events);
        events = matched;
    }
    let last = events.last().map_or_else(
        || before.unwrap_or(at).min(end),
        |e| e.sequence_number.0 + 1,
    );
    Ok(LogPage {
        end,
        older_from: (at > 0).then_some(at),
        newer_from: (before.is_some() && last < end).then_some(last),
        events,
    })
}

/// The log of `scope` (the event log for the nil scope), only if the tenant has it: a page
/// never creates a scope.
fn existing_log(
    tenant: &annals_engine::Tenant,
    scope: Uuid,
) -> Result<Arc<annals_engine::Log>, String> {
    if scope.is_nil() {
        return tenant.event_log().map_err(|e| e.to_string());
    }
    let scopes = tenant.scopes().map_err(|e| e.to_string())?;
    if !scopes.iter().any(|s| s.0 == scope) {
        return Err(format!("the tenant has no scope {scope}"));
    }
    tenant.scoped_log(ScopeId(scope)).map_err(|e| e.to_string())
}

/// The scope of a query (the event log when none).
fn scope_of(query: &LogQuery) -> Result<Uuid, String> {
    match query.scope.as_deref().map(str::trim) {
        None | Some("") => Ok(Uuid::nil()),
        Some(text) => text
            .parse()
            .map_err(|_| format!("{text} is not a scope id (a GUID)")),
    }
}

async fn events(
    State(runtime): State<Arc<Runtime>>,
    Path(tenant): Path<String>,
    Query(query): Query<LogQuery>,
) -> Response {
    let tenant = match tenant_of(&runtime, &tenant) {
        Ok(t) => t,
        Err(r) => return *r,
    };
    match events_body(&runtime, tenant, &query).await {
        // A filtered page may scan far for its matches: it is not refreshed live.
        Ok(body) if filter_is_empty(&query) => {
            page(&runtime, "Event log", Some(tenant), &body).into_response()
        }
        Ok(body) => still(&runtime, "Event log", Some(tenant), &body).into_response(),
        Err(text) => problem(&runtime, StatusCode::BAD_REQUEST, &text),
    }
}

async fn events_body(
    runtime: &Arc<Runtime>,
    tenant_id: Uuid,
    query: &LogQuery,
) -> Result<String, String> {
    let scope = scope_of(query)?;
    let engine = Arc::clone(&runtime.engine);
    let mut aliases = read(move || engine.event_type_aliases().map_err(|e| e.to_string())).await?;
    aliases.retain(|(_, alias)| alias != crate::services::platform::NO_ALIAS);
    let text = |v: &Option<String>| {
        v.as_deref()
            .map(str::trim)
            .filter(|t| !t.is_empty())
            .map(str::to_owned)
    };
    let event_type = match text(&query.event_type) {
        None => None,
        Some(t) => Some(match t.parse::<Uuid>() {
            Ok(id) => id,
            Err(_) => aliases
                .iter()
                .find(|(_, a)| *a == t)
                .map(|(id, _)| *id)
                .ok_or_else(|| format!("{t} is neither an event type id nor a registered alias"))?,
        }),
    };
    let time_of = |v: &Option<String>, name: &str| -> Result<Option<i64>, String> {
        text(v)
            .map(|t| {
                field_time(&t)
                    .ok_or_else(|| format!("{name} {t} is not a time (2026-12-03T10:15:00Z)"))
            })
            .transpose()
    };
    let filter = Filter {
        event_type,
        source: text(&query.source),
        from_ns: time_of(&query.from, "from")?,
        to_ns: time_of(&query.to, "to")?,
    };
    let tenant = runtime.tenant(tenant_id).map_err(|f| f.reason)?;
    let (before, after) = (query.before, query.after);
    let (scopes, page_read) = read(move || {
        let log = existing_log(&tenant, scope)?;
        let scopes = tenant.scopes().map_err(|e| e.to_string())?;
        Ok((scopes, log_page(&log, &filter, before, after)?))
    })
    .await?;
    let alias_of = |id: Uuid| {
        aliases
            .iter()
            .find(|(t, _)| *t == id)
            .map(|(_, a)| a.clone())
            .filter(|a| a != crate::services::platform::NO_ALIAS)
    };
    let mut body = String::new();
    // The filter form (GET: it works without JavaScript, and the URL keeps it).
    let value = |v: &Option<String>| escape(v.as_deref().unwrap_or(""));
    // A time field shows what its input type takes (UTC, to the second), whatever the link
    // gave (RFC 3339 with a zone, a fraction).
    let time_value = |v: &Option<String>| {
        v.as_deref()
            .and_then(field_time)
            .map_or_else(|| value(v), |ns| time(ns).chars().take(19).collect())
    };
    let mut scope_options = String::from("<option value=\"\">event log</option>");
    for s in scopes.iter().filter(|s| !s.0.is_nil()) {
        let _ = write!(
            scope_options,
            "<option value=\"{0}\"{1}>scope {0}</option>",
            s.0,
            if s.0 == scope { " selected" } else { "" }
        );
    }
    let _ = write!(
        body,
        "<form class=\"filter\" method=\"get\" action=\"/console/tenants/{tenant_id}/events\">\
         <label>log<select name=\"scope\">{scope_options}</select></label>\
         <label>event type (id or alias)<input name=\"type\" value=\"{}\" size=\"38\"></label>\
         <label>event source<input name=\"source\" value=\"{}\"></label>\
         <label>from (UTC)<input name=\"from\" type=\"datetime-local\" step=\"1\" value=\"{}\"></label>\
         <label>to (UTC)<input name=\"to\" type=\"datetime-local\" step=\"1\" value=\"{}\"></label>\
         <button type=\"submit\">Filter</button> <a href=\"/console/tenants/{tenant_id}/events\">clear</a></form>",
        value(&query.event_type),
        value(&query.source),
        time_value(&query.from),
        time_value(&query.to),
    );
    let page_read_end = page_read.end;
    let _ = write!(
        body,
        "<p>{} events in this log. Showing {} {}, newest first.</p>",
        page_read_end,
        page_read.events.len(),
        if filter_is_empty(query) {
            "events"
        } else {
            "matching events"
        },
    );
    // Links keep the filter and move the page.
    let mut kept = String::new();
    for (name, v) in [
        ("scope", &query.scope),
        ("type", &query.event_type),
        ("source", &query.source),
        ("from", &query.from),
        ("to", &query.to),
    ] {
        if let Some(v) = v.as_deref().filter(|v| !v.is_empty()) {
            let _ = write!(kept, "&amp;{name}={}", url(v));
        }
    }
    let base = format!("/console/tenants/{tenant_id}/events?");
    let mut nav = String::from("<nav class=\"pages\">");
    let _ = write!(nav, "<a href=\"{base}{kept}\">newest</a>");
    if let Some(n) = page_read.newer_from {
        let _ = write!(
            nav,
            "<a rel=\"prev\" href=\"{base}after={n}{kept}\">&larr; newer</a>"
        );
    }
    if let Some(o) = page_read.older_from {
        let _ = write!(
            nav,
            "<a rel=\"next\" href=\"{base}before={o}{kept}\">older &rarr;</a>"
        );
    }
    nav.push_str("</nav>");
    body.push_str(&nav);
    body.push_str(
        "<table id=\"events\"><tr><th>#</th><th>occurred (UTC)</th><th>event type</th>\
         <th>event source</th><th>aggregate</th><th>public</th><th>content</th></tr>",
    );
    let scope_part = if scope.is_nil() {
        String::new()
    } else {
        format!("?scope={scope}")
    };
    for e in page_read.events.iter().rev() {
        let mut content: String = e.content.chars().take(120).collect();
        if content.len() < e.content.len() {
            content.push_str("...");
        }
        let type_text = match alias_of(e.event_type.id) {
            Some(a) => format!(
                "{} <small><code>{}</code></small>",
                escape(&a),
                e.event_type.id
            ),
            None => format!("<code>{}</code>", e.event_type.id),
        };
        let aggregate = e.aggregate.as_ref().map_or_else(String::new, |a| {
            format!("<code>{}</code> v{}", a.root_id, a.version)
        });
        let _ = write!(
            body,
            "<tr class=\"event\" data-sequence=\"{seq}\"><td><a href=\"/console/tenants/{tenant_id}/events/{seq}{scope_part}\">{seq}</a></td>\
             <td>{}</td><td>{type_text}</td><td>{}</td><td>{aggregate}</td><td>{}</td><td><code>{}</code></td></tr>",
            time(e.occurred_ns),
            escape(&e.event_source_id),
            if e.public { "yes" } else { "" },
            escape(&content),
            seq = e.sequence_number.0,
        );
    }
    body.push_str("</table>");
    body.push_str(&nav);
    Ok(body)
}

fn filter_is_empty(query: &LogQuery) -> bool {
    [&query.event_type, &query.source, &query.from, &query.to]
        .iter()
        .all(|v| v.as_deref().is_none_or(|t| t.trim().is_empty()))
}

#[derive(Debug, Default, serde::Deserialize)]
struct ScopeQuery {
    #[serde(default)]
    scope: Option<String>,
}

async fn event(
    State(runtime): State<Arc<Runtime>>,
    Path((tenant, sequence)): Path<(String, u64)>,
    Query(query): Query<ScopeQuery>,
) -> Response {
    let tenant_id = match tenant_of(&runtime, &tenant) {
        Ok(t) => t,
        Err(r) => return *r,
    };
    let log_query = LogQuery {
        scope: query.scope,
        ..LogQuery::default()
    };
    let scope = match scope_of(&log_query) {
        Ok(s) => s,
        Err(text) => return problem(&runtime, StatusCode::BAD_REQUEST, &text),
    };
    let tenant = match runtime.tenant(tenant_id) {
        Ok(t) => t,
        Err(f) => return problem(&runtime, StatusCode::NOT_FOUND, &f.reason),
    };
    let found = read(move || {
        let log = existing_log(&tenant, scope)?;
        let mut events = Vec::new();
        read_range(&log, sequence, sequence.saturating_add(1), &mut events)?;
        Ok(events.pop())
    })
    .await;
    let e = match found {
        Ok(Some(e)) => e,
        Ok(None) => {
            return problem(
                &runtime,
                StatusCode::NOT_FOUND,
                &format!("the log has no event {sequence}"),
            )
        }
        Err(text) => return problem(&runtime, StatusCode::INTERNAL_SERVER_ERROR, &text),
    };
    let content = serde_json::from_str::<serde_json::Value>(&e.content)
        .ok()
        .and_then(|v| serde_json::to_string_pretty(&v).ok())
        .unwrap_or_else(|| e.content.clone());
    let c = &e.execution_context;
    let mut claims = String::new();
    for claim in &c.claims {
        let _ = write!(
            claims,
            "<tr><td>{}</td><td>{}</td><td>{}</td></tr>",
            escape(&claim.key),
            escape(&claim.value),
            escape(&claim.value_type)
        );
    }
    let aggregate = e.aggregate.as_ref().map_or_else(
        || "<tr><th>aggregate</th><td>none</td></tr>".to_owned(),
        |a| {
            format!(
                "<tr><th>aggregate root</th><td><a href=\"/console/tenants/{tenant_id}/aggregates/{0}\"><code>{0}</code></a></td></tr>\
                 <tr><th>aggregate version</th><td>{1}</td></tr>",
                a.root_id, a.version
            )
        },
    );
    let horizon = e.event_horizon.as_ref().map_or_else(
        || "<tr><th>event horizon</th><td>none (committed here)</td></tr>".to_owned(),
        |h| {
            format!(
                "<tr><th>from the event horizon</th><td>producer position {}, received {}, consent <code>{}</code></td></tr>",
                h.external_sequence_number,
                time(h.received_ns),
                h.consent_id
            )
        },
    );
    let v = &c.version;
    let body = format!(
        "<table class=\"event-detail\">\
         <tr><th>sequence number</th><td id=\"sequence\">{seq}</td></tr>\
         <tr><th>occurred (UTC)</th><td>{occurred}</td></tr>\
         <tr><th>event type</th><td><code>{type_id}</code> generation {generation}</td></tr>\
         <tr><th>event source</th><td><code>{source}</code></td></tr>\
         <tr><th>public</th><td>{public}</td></tr>{aggregate}{horizon}</table>\
         <h2>Content</h2><pre id=\"content\">{content}</pre>\
         <h2>Execution context</h2><table id=\"execution-context\">\
         <tr><th>microservice</th><td><code>{microservice}</code></td></tr>\
         <tr><th>tenant</th><td><code>{tenant}</code></td></tr>\
         <tr><th>version</th><td>{major}.{minor}.{patch}.{build}{pre}</td></tr>\
         <tr><th>correlation</th><td><code>{correlation}</code></td></tr>\
         <tr><th>environment</th><td>{environment}</td></tr></table>\
         <h3>Claims</h3><table><tr><th>name</th><th>value</th><th>type</th></tr>{claims}</table>",
        seq = e.sequence_number.0,
        occurred = time(e.occurred_ns),
        type_id = e.event_type.id,
        generation = e.event_type.generation,
        source = escape(&e.event_source_id),
        public = if e.public { "yes" } else { "no" },
        content = escape(&content),
        microservice = c.microservice_id,
        tenant = c.tenant_id,
        major = v.major,
        minor = v.minor,
        patch = v.patch,
        build = v.build,
        pre = if v.pre_release.is_empty() {
            String::new()
        } else {
            format!("-{}", escape(&v.pre_release))
        },
        correlation = c.correlation_id,
        environment = escape(&c.environment),
    );
    still(
        &runtime,
        &format!("Event {sequence}"),
        Some(tenant_id),
        &body,
    )
    .into_response()
}

// ---- aggregates -------------------------------------------------------------------------

/// The registered aliases of aggregate roots (read on a blocking thread).
async fn root_aliases(runtime: &Runtime) -> Vec<(Uuid, String)> {
    let engine = Arc::clone(&runtime.engine);
    let mut aliases = read(move || engine.aggregate_root_aliases().map_err(|e| e.to_string()))
        .await
        .unwrap_or_default();
    aliases.retain(|(_, alias)| alias != crate::services::platform::NO_ALIAS);
    aliases
}

async fn aggregate_roots(
    State(runtime): State<Arc<Runtime>>,
    Path(tenant): Path<String>,
) -> Response {
    let tenant_id = match tenant_of(&runtime, &tenant) {
        Ok(t) => t,
        Err(r) => return *r,
    };
    let tenant = match runtime.tenant(tenant_id) {
        Ok(t) => t,
        Err(f) => return problem(&runtime, StatusCode::NOT_FOUND, &f.reason),
    };
    // Counted in pages, up to ROOTS_SCAN_MAX instances: beyond that the counts say "at least".
    let instances = read(move || {
        let mut all: Vec<(Uuid, String, u64)> = Vec::new();
        loop {
            let after = all.last().map(|(r, s, _)| (*r, s.as_str()));
            let page = tenant
                .aggregate_instances_after(after, 10_000)
                .map_err(|e| e.to_string())?;
            let done = page.len() < 10_000;
            all.extend(page);
            if done || all.len() >= ROOTS_SCAN_MAX {
                return Ok((all, !done));
            }
        }
    })
    .await;
    let (instances, more) = match instances {
        Ok(i) => i,
        Err(text) => return problem(&runtime, StatusCode::INTERNAL_SERVER_ERROR, &text),
    };
    let mut roots: Vec<(Uuid, usize, u64)> = Vec::new();
    for (root, _, version) in &instances {
        match roots.last_mut() {
            Some((r, n, events)) if r == root => {
                *n += 1;
                *events += version;
            }
            _ => roots.push((*root, 1, *version)),
        }
    }
    let aliases = root_aliases(&runtime).await;
    for (id, alias) in &aliases {
        if !roots.iter().any(|(r, _, _)| r == id) && alias != crate::services::platform::NO_ALIAS {
            roots.push((*id, 0, 0));
        }
    }
    let mut body = if more {
        format!(
            "<p>The counts are of the first {ROOTS_SCAN_MAX} instances (by root, then event \
             source): there are more.</p>"
        )
    } else {
        String::new()
    };
    body.push_str(
        "<table id=\"roots\"><tr><th>aggregate root</th><th>alias</th><th>instances</th><th>events</th></tr>",
    );
    for (root, n, events) in &roots {
        let alias = aliases
            .iter()
            .find(|(id, _)| id == root)
            .map(|(_, a)| a.as_str())
            .filter(|a| *a != crate::services::platform::NO_ALIAS)
            .unwrap_or("");
        let _ = write!(
            body,
            "<tr><td><a href=\"/console/tenants/{tenant_id}/aggregates/{root}\"><code>{root}</code></a></td>\
             <td>{}</td><td>{n}</td><td>{events}</td></tr>",
            escape(alias)
        );
    }
    body.push_str("</table>");
    still(&runtime, "Aggregate roots", Some(tenant_id), &body).into_response()
}

/// The tenant and the aggregate root a path names.
fn tenant_and_root(
    runtime: &Runtime,
    tenant: &str,
    root: &str,
) -> Result<(Uuid, Arc<annals_engine::Tenant>, Uuid), Box<Response>> {
    let tenant_id = tenant_of(runtime, tenant)?;
    let Ok(root) = root.parse::<Uuid>() else {
        return Err(Box::new(problem(
            runtime,
            StatusCode::BAD_REQUEST,
            &format!("{root} is not an aggregate root id"),
        )));
    };
    let tenant = runtime
        .tenant(tenant_id)
        .map_err(|f| Box::new(problem(runtime, StatusCode::NOT_FOUND, &f.reason)))?;
    Ok((tenant_id, tenant, root))
}

async fn instances(
    State(runtime): State<Arc<Runtime>>,
    Path((tenant, root)): Path<(String, String)>,
) -> Response {
    let (tenant_id, tenant, root) = match tenant_and_root(&runtime, &tenant, &root) {
        Ok(found) => found,
        Err(r) => return *r,
    };
    // The first INSTANCES_MAX of them, and whether there are more (the root's instances
    // begin after the key of its empty event source).
    let instances = read(move || {
        let page = tenant
            .aggregate_instances_after(Some((root, "")), INSTANCES_MAX + 1)
            .map_err(|e| e.to_string())?;
        Ok(page
            .into_iter()
            .take_while(|(r, _, _)| *r == root)
            .collect::<Vec<_>>())
    })
    .await;
    let instances = match instances {
        Ok(i) => i,
        Err(text) => return problem(&runtime, StatusCode::INTERNAL_SERVER_ERROR, &text),
    };
    let title = match root_aliases(&runtime)
        .await
        .into_iter()
        .find(|(id, _)| *id == root)
    {
        Some((_, a)) => format!("Aggregate root {a}"),
        None => format!("Aggregate root {root}"),
    };
    let mut body = format!(
        "<p>Root <code>{root}</code>: {}.</p><table id=\"instances\">\
         <tr><th>event source</th><th>version</th></tr>",
        if instances.len() > INSTANCES_MAX {
            format!("more than {INSTANCES_MAX} instances, the first {INSTANCES_MAX} shown")
        } else {
            format!("{} instances", instances.len())
        }
    );
    for (_, source, version) in instances.iter().take(INSTANCES_MAX) {
        let _ = write!(
            body,
            "<tr><td><a href=\"/console/tenants/{tenant_id}/aggregates/{root}/{}\">{}</a></td><td>{version}</td></tr>",
            url(source),
            escape(source)
        );
    }
    body.push_str("</table>");
    still(&runtime, &title, Some(tenant_id), &body).into_response()
}

async fn instance_events(
    State(runtime): State<Arc<Runtime>>,
    Path((tenant, root, source)): Path<(String, String, String)>,
) -> Response {
    let (tenant_id, tenant, root) = match tenant_and_root(&runtime, &tenant, &root) {
        Ok(found) => found,
        Err(r) => return *r,
    };
    let source_for_read = source.clone();
    let fetched = read(move || {
        tenant
            .fetch_for_aggregate(root, &source_for_read, &[])
            .map_err(|e| e.to_string())
    })
    .await;
    let fetched = match fetched {
        Ok(f) => f,
        Err(text) => return problem(&runtime, StatusCode::INTERNAL_SERVER_ERROR, &text),
    };
    let mut body = format!(
        "<p>Root <a href=\"/console/tenants/{tenant_id}/aggregates/{root}\"><code>{root}</code></a>, \
         event source <code>{}</code>: version <span id=\"version\">{}</span>.</p>\
         <table id=\"instance-events\"><tr><th>version</th><th>#</th><th>occurred (UTC)</th>\
         <th>event type</th><th>content</th></tr>",
        escape(&source),
        fetched.current_version
    );
    if fetched.events.len() > INSTANCE_EVENTS_MAX {
        let _ = write!(
            body,
            "<p>The first {INSTANCE_EVENTS_MAX} of its {} events are shown.</p>",
            fetched.events.len()
        );
    }
    for e in fetched.events.iter().take(INSTANCE_EVENTS_MAX) {
        let _ = write!(
            body,
            "<tr><td>{}</td><td><a href=\"/console/tenants/{tenant_id}/events/{seq}\">{seq}</a></td>\
             <td>{}</td><td><code>{}</code></td><td><code>{}</code></td></tr>",
            e.aggregate.as_ref().map_or(0, |a| a.version),
            time(e.occurred_ns),
            e.event_type.id,
            escape(&e.content),
            seq = e.sequence_number.0,
        );
    }
    body.push_str("</table>");
    still(
        &runtime,
        &format!("Instance {source}"),
        Some(tenant_id),
        &body,
    )
    .into_response()
}

// ---- processors -------------------------------------------------------------------------

#[derive(Debug, Default, serde::Deserialize)]
struct Notice {
    /// The event handler reprocessing was asked of, and from where.
    #[serde(default)]
    reprocessed: Option<Uuid>,
    #[serde(default)]
    from: Option<u64>,
}

fn kind_text(kind: Kind) -> &'static str {
    match kind {
        Kind::EventHandler => "event handler",
        Kind::Filter => "filter",
        Kind::PublicFilter => "public filter",
        Kind::Projection => "projection",
    }
}

async fn processors(
    State(runtime): State<Arc<Runtime>>,
    Path(tenant): Path<String>,
    Query(notice): Query<Notice>,
) -> Response {
    let tenant_id = match tenant_of(&runtime, &tenant) {
        Ok(t) => t,
        Err(r) => return *r,
    };
    let mut body = String::new();
    if let (Some(handler), Some(from)) = (notice.reprocessed, notice.from) {
        let _ = write!(
            body,
            "<p class=\"notice\">Event handler <code>{handler}</code> reprocesses from \
             event-log position {from}.</p>"
        );
    }
    let registrations = runtime.processors.every();
    if registrations.is_empty() {
        body.push_str("<p>No event handler, filter or projection is connected.</p>");
    }
    body.push_str(
        "<table id=\"processors\"><tr><th>kind</th><th>id</th><th>alias</th><th>scope</th>\
         <th>position</th><th>log end</th><th>lag</th><th>status</th><th></th></tr>",
    );
    let mut failing_rows = String::new();
    for r in &registrations {
        let Some(handle) = r.tenants.get(&tenant_id) else {
            continue;
        };
        let (state, retrying) = {
            let status = handle.status.lock();
            (status.state.clone(), status.retrying.clone())
        };
        let end = handle.log.next_sequence_number().0;
        let position = state.event_log_position.0;
        let failing = state.failing_partitions.len()
            + usize::from(retrying.is_some() || state.failure.is_some());
        let status = if failing == 0 {
            "<span class=\"ok\">processing</span>".to_owned()
        } else {
            format!("<span class=\"failing\">{failing} failing</span>")
        };
        let reprocess = if r.key.kind == Kind::EventHandler {
            format!(
                "<a href=\"/console/tenants/{tenant_id}/processors/{}/{}/reprocess\">reprocess&hellip;</a>",
                r.key.scope, r.key.id
            )
        } else {
            String::new()
        };
        let _ = write!(
            body,
            "<tr class=\"processor\" data-id=\"{id}\"><td>{}</td><td><code>{id}</code></td><td>{}</td>\
             <td><code>{}</code></td><td class=\"position\">{position}</td><td>{end}</td>\
             <td class=\"lag\">{}</td><td>{status}</td><td>{reprocess}</td></tr>",
            kind_text(r.key.kind),
            escape(r.alias.as_deref().unwrap_or("")),
            r.key.scope,
            end.saturating_sub(position),
            id = r.key.id,
        );
        let name = r.alias.clone().unwrap_or_else(|| r.key.id.to_string());
        for (partition, p) in &state.failing_partitions {
            let _ = write!(
                failing_rows,
                "<tr class=\"failing-partition\"><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td class=\"reason\">{}</td><td>{}</td></tr>",
                escape(&name),
                escape(partition),
                p.event_log_position.0,
                p.failure.processing_attempts,
                escape(&p.failure.reason),
                time(p.failure.retry_time_ns),
            );
        }
        if let Some(f) = retrying.as_ref().or(state.failure.as_ref()) {
            let _ = write!(
                failing_rows,
                "<tr class=\"failing-partition\"><td>{}</td><td>(unpartitioned)</td><td>{position}</td><td>{}</td><td class=\"reason\">{}</td><td>{}</td></tr>",
                escape(&name),
                f.processing_attempts,
                escape(&f.reason),
                time(f.retry_time_ns),
            );
        }
    }
    body.push_str("</table>");
    if !failing_rows.is_empty() {
        let _ = write!(
            body,
            "<h2>Failing partitions</h2><table id=\"failing\"><tr><th>processor</th><th>partition</th>\
             <th>at position</th><th>attempts</th><th>reason</th><th>retry (UTC)</th></tr>{failing_rows}</table>"
        );
    }
    body.push_str(&runtime.plots.render_lag(tenant_id));
    page(&runtime, "Processors", Some(tenant_id), &body).into_response()
}

/// The connected event handler named by the path, and its processor for the tenant.
fn handler_of(
    runtime: &Runtime,
    tenant: Uuid,
    scope: &str,
    id: &str,
) -> Result<Arc<Registration>, String> {
    let (Ok(scope), Ok(id)) = (scope.parse::<Uuid>(), id.parse::<Uuid>()) else {
        return Err("the scope and the event handler are GUIDs".to_owned());
    };
    runtime
        .processors
        .all(Kind::EventHandler)
        .into_iter()
        .find(|r| r.key.scope == scope && r.key.id == id && r.tenants.contains_key(&tenant))
        .ok_or_else(|| {
            format!("event handler {id} in scope {scope} is not connected for tenant {tenant}")
        })
}

#[derive(Debug, Default, serde::Deserialize)]
struct ReprocessForm {
    #[serde(default)]
    position: Option<String>,
    #[serde(default)]
    confirm: Option<String>,
}

async fn reprocess_confirm(
    State(runtime): State<Arc<Runtime>>,
    Path((tenant, scope, id)): Path<(String, String, String)>,
) -> Response {
    let tenant_id = match tenant_of(&runtime, &tenant) {
        Ok(t) => t,
        Err(r) => return *r,
    };
    let registration = match handler_of(&runtime, tenant_id, &scope, &id) {
        Ok(r) => r,
        Err(text) => return problem(&runtime, StatusCode::NOT_FOUND, &text),
    };
    let name = registration
        .alias
        .clone()
        .unwrap_or_else(|| registration.key.id.to_string());
    let body = format!(
        "<p>Reprocessing makes event handler <strong>{name}</strong> handle again, for tenant \
         <code>{tenant_id}</code>, every event it selects from the position given on. Its head \
         must be able to handle events twice.</p>\
         <form method=\"post\" id=\"reprocess\">\
         <label>from event-log position <input name=\"position\" value=\"0\" size=\"8\"></label>\
         <input type=\"hidden\" name=\"confirm\" value=\"yes\">\
         <button type=\"submit\">Reprocess</button> \
         <a href=\"/console/tenants/{tenant_id}/processors\">cancel</a></form>",
        name = escape(&name)
    );
    still(&runtime, "Reprocess?", Some(tenant_id), &body).into_response()
}

/// Whether a request came from a page of another site: its `Sec-Fetch-Site` says so, or
/// its `Origin` is not the host it was sent to. A form of another site could otherwise
/// make an operator's browser reprocess.
fn cross_site(headers: &axum::http::HeaderMap) -> bool {
    let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    if header("sec-fetch-site").is_some_and(|site| site.eq_ignore_ascii_case("cross-site")) {
        return true;
    }
    match (header("origin"), header("host")) {
        (Some(origin), Some(host)) => origin
            .split_once("://")
            .is_none_or(|(_, origin_host)| !origin_host.eq_ignore_ascii_case(host)),
        (Some(_), None) => true,
        (None, _) => false,
    }
}

async fn reprocess(
    State(runtime): State<Arc<Runtime>>,
    Path((tenant, scope, id)): Path<(String, String, String)>,
    headers: axum::http::HeaderMap,
    axum::Form(form): axum::Form<ReprocessForm>,
) -> Response {
    let tenant_id = match tenant_of(&runtime, &tenant) {
        Ok(t) => t,
        Err(r) => return *r,
    };
    if cross_site(&headers) {
        return problem(
            &runtime,
            StatusCode::FORBIDDEN,
            "reprocessing is only asked from this console's own pages",
        );
    }
    if form.confirm.as_deref() != Some("yes") {
        return problem(
            &runtime,
            StatusCode::BAD_REQUEST,
            "reprocessing is only done from its confirmation page",
        );
    }
    let position = match form
        .position
        .as_deref()
        .map_or("0", str::trim)
        .parse::<u64>()
    {
        Ok(p) => EventLogSequenceNumber(p),
        Err(_) => {
            return problem(
                &runtime,
                StatusCode::BAD_REQUEST,
                "the position is a whole number (an event-log sequence number)",
            )
        }
    };
    let registration = match handler_of(&runtime, tenant_id, &scope, &id) {
        Ok(r) => r,
        Err(text) => return problem(&runtime, StatusCode::NOT_FOUND, &text),
    };
    let Some(handle) = registration.tenants.get(&tenant_id) else {
        return problem(
            &runtime,
            StatusCode::NOT_FOUND,
            "not connected for this tenant",
        );
    };
    match crate::services::processing_management::reset(handle, position).await {
        Ok(()) => {
            tracing::info!(tenant = %tenant_id, handler = %registration.key.id, position = position.0, "reprocessing asked from the console");
            Redirect::to(&format!(
                "/console/tenants/{tenant_id}/processors?reprocessed={}&from={}",
                registration.key.id, position.0
            ))
            .into_response()
        }
        Err(failure) => problem(&runtime, StatusCode::CONFLICT, &failure.reason),
    }
}
