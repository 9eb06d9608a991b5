//! `annals runtime ...`: the Dolittle CLI's runtime commands (`dolittle runtime ...` of Runtime
//! 9), against any runtime's management port (annals', or the original's): the same
//! subcommand names, arguments and options, the same tables (columns, status symbols) and
//! `--output json` shapes (PascalCase, as the original's CLI serialises its views), and the
//! original's failure texts. Event handlers and aggregate roots are named by id or alias, an
//! event handler optionally with `:scope`.
//!
//! Differences: without `--runtime`, the original looks for runtime containers in Docker;
//! annals connects to `localhost:51052`, the management port's default. An unreachable
//! runtime is said so in one line (the original prints gRPC's exception). The options may
//! stand anywhere after `runtime`.

use std::fmt::Write as _;
use std::time::Duration;

use annals_contract::projections::dotnet;
use clap::{Args, Subcommand, ValueEnum};
use serde_json::{json, Value};
use tonic::transport::{Channel, Endpoint};
use uuid::Uuid;

use crate::api::{convert, ids};
use crate::proto::dolittle::artifacts::Artifact;
use crate::proto::dolittle::protobuf::{Failure as WireFailure, Uuid as WireUuid};
use crate::proto::dolittle::runtime::aggregates::management as aggregates;
use crate::proto::dolittle::runtime::configuration::management as configuration;
use crate::proto::dolittle::runtime::events::management as event_types;
use crate::proto::dolittle::runtime::events::processing::management as handlers;
use handlers::tenant_scoped_stream_processor_status::Status as ProcessorStatus;

/// The management port's default, as the original's.
const DEFAULT_PORT: u16 = 51052;
/// The alias of what was registered without one, as the runtime answers it.
const NO_ALIAS: &str = "No alias";
/// The tenant of local development, the original's default for some commands.
const DEVELOPMENT: Uuid = Uuid::from_u128(0x445f_8ea8_1a6f_40d7_b2fc_796d_ba92_dc44);
/// How long a connection to the runtime may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

const YES: &str = "\u{2705}";
const NO: &str = "\u{274c}";
const PARTLY: &str = "\u{1f7e1}\u{fe0f}";

/// `annals runtime`: manage a running runtime through its management port.
#[derive(Args, Debug)]
pub struct RuntimeArgs {
    #[command(subcommand)]
    command: RuntimeCommand,
    #[command(flatten)]
    common: Common,
}

/// The options of every command (they may stand anywhere after `runtime`).
#[derive(Args, Debug)]
struct Common {
    /// The <host[:port]> to use to connect to the management endpoint of a Runtime
    /// [default: localhost:51052].
    #[arg(long, global = true, value_name = "HOST[:PORT]")]
    runtime: Option<String>,
    /// The output type.
    #[arg(short, long, global = true, value_enum, ignore_case = true, default_value_t = Output::Table)]
    output: Output,
    /// Whether the table output is wide or not.
    #[arg(short, long, global = true)]
    wide: bool,
}

/// The output type.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
#[value(rename_all = "PascalCase")]
enum Output {
    Table,
    Json,
}

#[derive(Subcommand, Debug)]
enum RuntimeCommand {
    /// Manage Aggregates
    Aggregates {
        #[command(subcommand)]
        command: AggregatesCommand,
    },
    /// Gets the configuration yaml
    Config,
    /// Manage Event Handlers
    Eventhandlers {
        #[command(subcommand)]
        command: EventHandlersCommand,
    },
    /// Manage Event Types
    Eventtypes {
        #[command(subcommand)]
        command: EventTypesCommand,
    },
}

#[derive(Subcommand, Debug)]
enum EventHandlersCommand {
    /// Make an Event Handler reprocess events
    Replay {
        #[command(subcommand)]
        command: ReplayCommand,
    },
    /// List all running Event Handlers
    #[command(visible_alias = "ls")]
    List {
        /// Only show Event Handler information for the specified Tenant
        #[arg(long)]
        tenant: Option<Uuid>,
    },
    /// Gets a running Event Handler
    Get {
        /// The Event Handler identifier of the Event Handler to get details for (id or alias,
        /// optionally followed by :scope)
        #[arg(value_name = "EventHandlerIdentifier")]
        event_handler: String,
        /// Only show Event Handler information for the specified Tenant
        #[arg(long)]
        tenant: Option<Uuid>,
    },
}

#[derive(Subcommand, Debug)]
enum ReplayCommand {
    /// Make an Event Handler reprocess all events
    All {
        /// The Event Handler identifier of the Event Handler to replay
        #[arg(value_name = "EventHandlerIdentifier")]
        event_handler: String,
    },
    /// Make an Event Handler reprocess events from a specific position for a tenant
    From {
        /// The Event Handler identifier of the Event Handler to replay
        #[arg(value_name = "EventHandlerIdentifier")]
        event_handler: String,
        /// The position to start replaying events from.
        #[arg(value_name = "Position")]
        position: u64,
        /// The tenant to replay events for. Defaults to the development tenant.
        #[arg(long)]
        tenant: Option<Uuid>,
    },
}

#[derive(Subcommand, Debug)]
enum AggregatesCommand {
    /// Gets all committed aggregate events for an aggregate root instance. When viewing in
    /// table mode it will only show the last 10 events
    Events {
        /// The Aggregate Root identifier of the Aggregate Root to get committed aggregate
        /// events for.
        #[arg(value_name = "AggregateRootIdentifier")]
        aggregate_root: String,
        /// The Event Source Id of the Aggregate Root Instance to get committed aggregate
        /// events for.
        #[arg(value_name = "EventSourceId")]
        event_source: String,
        /// Only show committed aggregate events for the specified Tenant. Defaults to the
        /// development Tenant
        #[arg(long)]
        tenant: Option<Uuid>,
    },
    /// Lists all registered Aggregate Roots
    List {
        /// Only show Aggregate Root information for the specified Tenant
        #[arg(long)]
        tenant: Option<Uuid>,
    },
    /// Gets a registered Aggregate Root
    Get {
        /// The Aggregate Root identifier of the Aggregate Root to get details for
        #[arg(value_name = "AggregateRootIdentifier")]
        aggregate_root: String,
        /// Only show Aggregate Root information for the specified Tenant
        #[arg(long)]
        tenant: Option<Uuid>,
    },
}

#[derive(Subcommand, Debug)]
enum EventTypesCommand {
    /// Lists all registered Event Types
    List,
}

/// Why a command failed: printed alone on stderr, exit code 1 (as the original).
#[derive(Debug)]
pub struct CliError(String);

impl std::fmt::Display for CliError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for CliError {}

fn fail<T>(message: impl Into<String>) -> Result<T, CliError> {
    Err(CliError(message.into()))
}

/// A failure in an answer, as the original's CLI words it.
fn check(failure: Option<WireFailure>, what: &str) -> Result<(), CliError> {
    match failure {
        Some(f) => fail(format!("{what} because {}", f.reason)),
        None => Ok(()),
    }
}

/// Runs `annals runtime ...`; prints what it answers on stdout.
pub fn run(args: RuntimeArgs) -> Result<(), CliError> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| CliError(format!("starting the async runtime: {e}")))?;
    let out = runtime.block_on(execute(args))?;
    if !out.is_empty() {
        println!("{out}");
    }
    Ok(())
}

/// `host[:port]`: a name or IPv4 address, or an IPv6 address (bracketed when a port
/// follows); an empty host is localhost, no port the management port's default.
fn address(text: &str) -> Result<(String, u16), CliError> {
    let invalid = || {
        CliError(format!(
            "The provided address '{text}' is not a valid <host:port> combination."
        ))
    };
    let (host, port) = if let Some(rest) = text.strip_prefix('[') {
        let (host, after) = rest.split_once(']').ok_or_else(invalid)?;
        match after {
            "" => (format!("[{host}]"), None),
            _ => (
                format!("[{host}]"),
                Some(after.strip_prefix(':').ok_or_else(invalid)?),
            ),
        }
    } else if text.matches(':').count() > 1 {
        (format!("[{text}]"), None)
    } else {
        match text.split_once(':') {
            Some((host, port)) => (host.to_owned(), Some(port)),
            None => (text.to_owned(), None),
        }
    };
    if host.contains(char::is_whitespace) || host.contains('/') {
        return Err(invalid());
    }
    let port = match port {
        None => DEFAULT_PORT,
        Some(port) => port.parse::<u16>().map_err(|_| invalid())?,
    };
    let host = if host.is_empty() {
        "localhost".to_owned()
    } else {
        host
    };
    Ok((host, if port == 0 { DEFAULT_PORT } else { port }))
}

async fn connect(runtime: Option<&str>) -> Result<Channel, CliError> {
    let (host, port) = address(runtime.unwrap_or("localhost"))?;
    let url = format!("http://{host}:{port}");
    let endpoint = Endpoint::from_shared(url.clone())
        .map_err(|e| CliError(format!("The runtime address {url} is not valid: {e}")))?
        .connect_timeout(CONNECT_TIMEOUT);
    endpoint.connect().await.map_err(|e| {
        let cause =
            std::error::Error::source(&e).map_or_else(|| e.to_string(), ToString::to_string);
        CliError(format!(
            "Could not connect to the management endpoint of a Runtime at {host}:{port} \
             ({cause}). Is it running? Give its address with --runtime <host[:port]>."
        ))
    })
}

/// A call whose transport failed (the runtime went away, or the port is not a runtime's).
fn call_failed(what: &str, status: &tonic::Status) -> CliError {
    CliError(format!("{what} because {}", status.message()))
}

async fn execute(args: RuntimeArgs) -> Result<String, CliError> {
    let channel = connect(args.common.runtime.as_deref()).await?;
    let view = View {
        output: args.common.output,
        wide: args.common.wide,
    };
    match args.command {
        RuntimeCommand::Config => config(channel).await,
        RuntimeCommand::Eventtypes {
            command: EventTypesCommand::List,
        } => {
            let types = all_event_types(channel).await?;
            Ok(event_types_view(&types, view))
        }
        RuntimeCommand::Eventhandlers { command } => event_handlers(channel, command, view).await,
        RuntimeCommand::Aggregates { command } => aggregates(channel, command, view).await,
    }
}

/// How to show what was answered.
#[derive(Clone, Copy)]
struct View {
    output: Output,
    wide: bool,
}

async fn config(channel: Channel) -> Result<String, CliError> {
    let what = "Could not get configuration yaml";
    let mut client = configuration::configuration_client::ConfigurationClient::new(channel);
    let response = client
        .get_configuration_yaml(configuration::GetConfigurationYamlRequest {})
        .await
        .map_err(|s| call_failed(what, &s))?
        .into_inner();
    Ok(response.value)
}

fn id(wire: Option<&WireUuid>) -> Uuid {
    wire.and_then(|w| ids::from_wire("id", w).ok())
        .unwrap_or_default()
}

fn artifact_json(artifact: Option<&Artifact>) -> Value {
    json!({
        "Id": id(artifact.and_then(|a| a.id.as_ref())).to_string(),
        "Generation": artifact.map_or(0, |a| a.generation),
    })
}

/// A time as the original's CLI writes it in JSON (Newtonsoft's ISO form of a
/// `DateTimeOffset`), absent as `DateTimeOffset.MinValue`.
fn time_json(time: Option<&prost_types::Timestamp>) -> String {
    match time {
        Some(t) => dotnet::format_time(
            convert::timestamp_ns(t),
            "yyyy'-'MM'-'dd'T'HH':'mm':'ss.FFFFFFFzzz",
        )
        .unwrap_or_default(),
        None => "0001-01-01T00:00:00+00:00".to_owned(),
    }
}

/// A time as a table cell (the invariant culture's general form).
fn time_cell(time: Option<&prost_types::Timestamp>) -> String {
    match time {
        Some(t) => dotnet::format_time(convert::timestamp_ns(t), "MM/dd/yyyy HH:mm:ss zzz")
            .unwrap_or_default(),
        None => "01/01/0001 00:00:00 +00:00".to_owned(),
    }
}

/// Bytes as lowercase hex (how .NET prints a span id).
fn hex(bytes: &[u8]) -> String {
    bytes.iter().fold(String::new(), |mut out, b| {
        let _ = write!(out, "{b:02x}");
        out
    })
}

fn compact(value: &Value) -> String {
    value.to_string()
}

// Event handlers.

/// An event handler named on the command line: `id|alias[:scope]`.
#[derive(Debug)]
enum HandlerName {
    Id { scope: Uuid, id: Uuid },
    Alias(String),
}

fn handler_name(text: &str) -> Result<HandlerName, CliError> {
    let invalid = || {
        CliError(format!(
            "The provided Event Handler Id or Alias '{text}' is not valid. It needs to be either \
             a string with the Event Handler Id Guid or Alias, or the Event Handler Id Guid or \
             Alias and the Scope Id Guid separated by a ':'."
        ))
    };
    let parts: Vec<&str> = text.split(':').collect();
    let scope = match parts.as_slice() {
        [_] => Uuid::nil(),
        [_, scope] => Uuid::parse_str(scope).map_err(|_| invalid())?,
        _ => return Err(invalid()),
    };
    Ok(match Uuid::parse_str(parts[0]) {
        Ok(id) => HandlerName::Id { scope, id },
        // As the original: an alias names the first handler with it, whatever the scope.
        Err(_) => HandlerName::Alias(parts[0].to_owned()),
    })
}

type HandlersClient = handlers::event_handlers_client::EventHandlersClient<Channel>;

async fn all_handlers(
    client: &mut HandlersClient,
    tenant: Option<Uuid>,
) -> Result<Vec<handlers::EventHandlerStatus>, CliError> {
    let what = "Could not get all event handlers";
    let response = client
        .get_all(handlers::GetAllRequest {
            tenant_id: tenant.map(ids::to_wire),
        })
        .await
        .map_err(|s| call_failed(what, &s))?
        .into_inner();
    check(response.failure, what)?;
    Ok(response.event_handlers)
}

/// The (scope, id) of a named handler; an alias is looked up among the running handlers.
async fn resolve_handler(
    client: &mut HandlersClient,
    name: &str,
) -> Result<(Uuid, Uuid), CliError> {
    match handler_name(name)? {
        HandlerName::Id { scope, id } => Ok((scope, id)),
        HandlerName::Alias(alias) => all_handlers(client, None)
            .await?
            .into_iter()
            .find(|h| h.alias != NO_ALIAS && h.alias == alias)
            .map(|h| (id(h.scope_id.as_ref()), id(h.event_handler_id.as_ref())))
            .map_or_else(
                || {
                    fail(format!(
                        "There is no registered Event Handler with Alias '{alias}'"
                    ))
                },
                Ok,
            ),
    }
}

async fn event_handlers(
    channel: Channel,
    command: EventHandlersCommand,
    view: View,
) -> Result<String, CliError> {
    let mut client = HandlersClient::new(channel);
    match command {
        EventHandlersCommand::List { tenant } => {
            let all = all_handlers(&mut client, tenant).await?;
            Ok(handlers_view(&all, view))
        }
        EventHandlersCommand::Get {
            event_handler,
            tenant,
        } => {
            let (scope, handler) = resolve_handler(&mut client, &event_handler).await?;
            let what = format!("Could not get event handler {handler} in scope {scope}");
            let response = client
                .get_one(handlers::GetOneRequest {
                    scope_id: Some(ids::to_wire(scope)),
                    event_handler_id: Some(ids::to_wire(handler)),
                    tenant_id: tenant.map(ids::to_wire),
                })
                .await
                .map_err(|s| call_failed(&what, &s))?
                .into_inner();
            check(response.failure, &what)?;
            let status = response.event_handlers.unwrap_or_default();
            Ok(handler_view(&status, view))
        }
        EventHandlersCommand::Replay {
            command: ReplayCommand::All { event_handler },
        } => {
            let (scope, handler) = resolve_handler(&mut client, &event_handler).await?;
            let what = "Could not reprocess all events";
            let response = client
                .reprocess_all_events(handlers::ReprocessAllEventsRequest {
                    scope_id: Some(ids::to_wire(scope)),
                    event_handler_id: Some(ids::to_wire(handler)),
                })
                .await
                .map_err(|s| call_failed(what, &s))?
                .into_inner();
            check(response.failure, what)?;
            Ok(String::new())
        }
        EventHandlersCommand::Replay {
            command:
                ReplayCommand::From {
                    event_handler,
                    position,
                    tenant,
                },
        } => {
            let (scope, handler) = resolve_handler(&mut client, &event_handler).await?;
            let what = "Could not reprocess events from position";
            let response = client
                .reprocess_events_from(handlers::ReprocessEventsFromRequest {
                    tenant_id: Some(ids::to_wire(tenant.unwrap_or(DEVELOPMENT))),
                    scope_id: Some(ids::to_wire(scope)),
                    event_handler_id: Some(ids::to_wire(handler)),
                    stream_position: position,
                })
                .await
                .map_err(|s| call_failed(what, &s))?
                .into_inner();
            check(response.failure, what)?;
            Ok(String::new())
        }
    }
}

/// Whether a tenant's processor is failing (for a partitioned one: any partition).
fn failing(tenant: &handlers::TenantScopedStreamProcessorStatus) -> bool {
    match &tenant.status {
        Some(ProcessorStatus::Unpartitioned(u)) => u.is_failing,
        Some(ProcessorStatus::Partitioned(p)) => !p.failing_partitions.is_empty(),
        None => false,
    }
}

fn handler_name_cell(h: &handlers::EventHandlerStatus) -> String {
    if h.alias == NO_ALIAS || h.alias.is_empty() {
        id(h.event_handler_id.as_ref()).to_string()
    } else {
        h.alias.clone()
    }
}

fn scope_cell(scope: Uuid) -> String {
    if scope.is_nil() {
        "Default".to_owned()
    } else {
        scope.to_string()
    }
}

fn tick(yes: bool) -> String {
    (if yes { YES } else { NO }).to_owned()
}

fn handlers_view(all: &[handlers::EventHandlerStatus], view: View) -> String {
    if view.output == Output::Json {
        return compact(&Value::Array(all.iter().map(handler_json).collect()));
    }
    let mut table = if view.wide {
        Table::new(&[
            "Alias",
            "EventHandler",
            "Scope",
            "Partitioned",
            "Status",
            "LastSuccessfullyProcessed",
        ])
    } else {
        Table::new(&["EventHandler", "Scope", "Partitioned", "Status"])
    };
    for h in all {
        let scope = scope_cell(id(h.scope_id.as_ref()));
        let status = tick(!h.tenants.iter().any(failing));
        let name = handler_name_cell(h);
        if view.wide {
            let last = h
                .tenants
                .iter()
                .filter_map(|t| t.last_successfully_processed.as_ref())
                .max_by_key(|t| (t.seconds, t.nanos));
            table.row(vec![
                h.alias.clone(),
                name,
                scope,
                tick(h.partitioned),
                status,
                time_cell(last),
            ]);
        } else {
            table.row(vec![name, scope, tick(h.partitioned), status]);
        }
    }
    table.render()
}

fn handler_json(h: &handlers::EventHandlerStatus) -> Value {
    let scope = id(h.scope_id.as_ref());
    let states: Vec<Value> = h
        .tenants
        .iter()
        .map(|t| {
            let mut state = match &t.status {
                Some(ProcessorStatus::Partitioned(p)) => json!({
                    "FailingPartitions": p.failing_partitions.iter().map(|f| json!({
                        "Id": f.partition_id,
                        "Position": f.stream_position,
                        "FailureReason": f.failure_reason,
                        "ProcessingAttempts": f.retry_count,
                        "RetryTime": time_json(f.retry_time.as_ref()),
                        "LastFailed": time_json(f.last_failed.as_ref()),
                    })).collect::<Vec<_>>(),
                }),
                Some(ProcessorStatus::Unpartitioned(u)) => json!({
                    "IsFailing": u.is_failing,
                    "FailureReason": u.failure_reason,
                    "ProcessingAttempts": u.retry_count,
                    "RetryTime": time_json(u.retry_time.as_ref()),
                }),
                None => json!({}),
            };
            if let Value::Object(fields) = &mut state {
                fields.insert(
                    "TenantId".into(),
                    id(t.tenant_id.as_ref()).to_string().into(),
                );
                fields.insert("Position".into(), t.stream_position.into());
                fields.insert(
                    "LastSuccessfullyProcessed".into(),
                    time_json(t.last_successfully_processed.as_ref()).into(),
                );
            }
            state
        })
        .collect();
    json!({
        "Id": {
            "Scope": scope.to_string(),
            "EventHandler": id(h.event_handler_id.as_ref()).to_string(),
        },
        "EventTypes": h.event_types.iter().map(|t| artifact_json(Some(t))).collect::<Vec<_>>(),
        "Partitioned": h.partitioned,
        "Alias": h.alias,
        "States": states,
        "HasAlias": h.alias != NO_ALIAS && !h.alias.is_empty(),
        "IsInDefaultScope": scope.is_nil(),
    })
}

fn handler_view(h: &handlers::EventHandlerStatus, view: View) -> String {
    if view.output == Output::Json {
        return compact(&handler_json(h));
    }
    if !view.wide {
        let mut table = Table::new(&["Tenant", "Position", "Status"]);
        for t in &h.tenants {
            table.row(vec![
                id(t.tenant_id.as_ref()).to_string(),
                t.stream_position.to_string(),
                tick(!failing(t)),
            ]);
        }
        return table.render();
    }
    if h.partitioned {
        let mut table = Table::new(&[
            "Tenant",
            "Position",
            "Status",
            "LastSuccessfulOrFailedProcessing",
            "Partition",
            "FailureReason",
            "RetryTime",
            "ProcessingAttempts",
        ]);
        for t in &h.tenants {
            let tenant = id(t.tenant_id.as_ref()).to_string();
            let partitions = match &t.status {
                Some(ProcessorStatus::Partitioned(p)) => p.failing_partitions.as_slice(),
                _ => &[],
            };
            table.row(vec![
                tenant.clone(),
                t.stream_position.to_string(),
                (if partitions.is_empty() { YES } else { PARTLY }).to_owned(),
                time_cell(t.last_successfully_processed.as_ref()),
                String::new(),
                String::new(),
                time_cell(None),
                "0".to_owned(),
            ]);
            for f in partitions {
                table.row(vec![
                    tenant.clone(),
                    f.stream_position.to_string(),
                    NO.to_owned(),
                    time_cell(f.last_failed.as_ref()),
                    f.partition_id.clone(),
                    f.failure_reason.clone(),
                    time_cell(f.retry_time.as_ref()),
                    f.retry_count.to_string(),
                ]);
            }
        }
        return table.render();
    }
    let mut table = Table::new(&[
        "Tenant",
        "Position",
        "Status",
        "FailureReason",
        "RetryTime",
        "ProcessingAttempts",
        "LastSuccessfullyProcessed",
    ]);
    for t in &h.tenants {
        let (reason, retry, attempts) = match &t.status {
            Some(ProcessorStatus::Unpartitioned(u)) => (
                u.failure_reason.clone(),
                time_cell(u.retry_time.as_ref()),
                u.retry_count,
            ),
            _ => (String::new(), time_cell(None), 0),
        };
        table.row(vec![
            id(t.tenant_id.as_ref()).to_string(),
            t.stream_position.to_string(),
            tick(!failing(t)),
            reason,
            retry,
            attempts.to_string(),
            time_cell(t.last_successfully_processed.as_ref()),
        ]);
    }
    table.render()
}

// Aggregates and event types.

type AggregatesClient = aggregates::aggregate_roots_client::AggregateRootsClient<Channel>;

async fn all_roots(
    client: &mut AggregatesClient,
    tenant: Option<Uuid>,
) -> Result<Vec<aggregates::AggregateRoot>, CliError> {
    let what = "Could not get all aggregate roots";
    let response = client
        .get_all(aggregates::GetAllRequest {
            tenant_id: tenant.map(ids::to_wire),
        })
        .await
        .map_err(|s| call_failed(what, &s))?
        .into_inner();
    check(response.failure, what)?;
    Ok(response.aggregate_roots)
}

/// The id of a named aggregate root; an alias is looked up among the registered roots.
async fn resolve_root(client: &mut AggregatesClient, name: &str) -> Result<Uuid, CliError> {
    if let Ok(root) = Uuid::parse_str(name) {
        return Ok(root);
    }
    all_roots(client, None)
        .await?
        .into_iter()
        .find(|r| r.alias != NO_ALIAS && r.alias == name)
        .map(|r| id(r.aggregate_root.as_ref().and_then(|a| a.id.as_ref())))
        .map_or_else(
            || {
                fail(format!(
                    "There is no registered Aggregate Root with Alias '{name}'"
                ))
            },
            Ok,
        )
}

async fn all_event_types(channel: Channel) -> Result<Vec<event_types::EventType>, CliError> {
    let what = "Could not get all event types";
    let mut client = event_types::event_types_client::EventTypesClient::new(channel);
    let response = client
        .get_all(event_types::GetAllRequest {})
        .await
        .map_err(|s| call_failed(what, &s))?
        .into_inner();
    check(response.failure, what)?;
    Ok(response.event_types)
}

fn root_id(root: &aggregates::AggregateRoot) -> Uuid {
    id(root.aggregate_root.as_ref().and_then(|a| a.id.as_ref()))
}

fn root_cell(root: &aggregates::AggregateRoot) -> String {
    if root.alias == NO_ALIAS || root.alias.is_empty() {
        root_id(root).to_string()
    } else {
        root.alias.clone()
    }
}

fn root_json(root: &aggregates::AggregateRoot) -> Value {
    let identifier = artifact_json(root.aggregate_root.as_ref());
    json!({
        "AggregateRoot": { "Identifier": identifier, "Alias": root.alias },
        "Aggregates": root.event_sources.iter().map(|s| json!({
            "Tenant": id(s.tenant_id.as_ref()).to_string(),
            "Instance": {
                "Identifier": identifier,
                "EventSource": s.event_source_id,
                "Version": s.aggregate_root_version,
            },
        })).collect::<Vec<_>>(),
    })
}

async fn aggregates(
    channel: Channel,
    command: AggregatesCommand,
    view: View,
) -> Result<String, CliError> {
    let mut client = AggregatesClient::new(channel.clone());
    match command {
        AggregatesCommand::List { tenant } => {
            let roots = all_roots(&mut client, tenant).await?;
            if view.output == Output::Json {
                return Ok(compact(&Value::Array(
                    roots.iter().map(root_json).collect(),
                )));
            }
            let mut table = if view.wide {
                Table::new(&["AggregateRootAlias", "AggregateRootId", "Instances"])
            } else {
                Table::new(&["AggregateRoot", "Instances"])
            };
            for r in &roots {
                let instances = r.event_sources.len().to_string();
                table.row(if view.wide {
                    vec![r.alias.clone(), root_id(r).to_string(), instances]
                } else {
                    vec![root_cell(r), instances]
                });
            }
            Ok(table.render())
        }
        AggregatesCommand::Get {
            aggregate_root,
            tenant,
        } => {
            let root = resolve_root(&mut client, &aggregate_root).await?;
            let what = "Could not get one aggregate root";
            let response = client
                .get_one(aggregates::GetOneRequest {
                    aggregate_root_id: Some(ids::to_wire(root)),
                    tenant_id: tenant.map(ids::to_wire),
                })
                .await
                .map_err(|s| call_failed(what, &s))?
                .into_inner();
            check(response.failure, what)?;
            let root = response.aggregate_root.unwrap_or_default();
            if view.output == Output::Json {
                return Ok(compact(&root_json(&root)));
            }
            let mut table = if view.wide {
                Table::new(&["Tenant", "EventSource", "AggregateRootVersion"])
            } else {
                Table::new(&["EventSource"])
            };
            for s in &root.event_sources {
                table.row(if view.wide {
                    vec![
                        id(s.tenant_id.as_ref()).to_string(),
                        s.event_source_id.clone(),
                        s.aggregate_root_version.to_string(),
                    ]
                } else {
                    vec![s.event_source_id.clone()]
                });
            }
            Ok(table.render())
        }
        AggregatesCommand::Events {
            aggregate_root,
            event_source,
            tenant,
        } => {
            let types = all_event_types(channel).await?;
            let root = resolve_root(&mut client, &aggregate_root).await?;
            let what = "Could not get events";
            let response = client
                .get_events(aggregates::GetEventsRequest {
                    aggregate: Some(crate::proto::dolittle::runtime::events::Aggregate {
                        aggregate_root_id: Some(ids::to_wire(root)),
                        event_source_id: event_source,
                    }),
                    tenant_id: Some(ids::to_wire(tenant.unwrap_or(DEVELOPMENT))),
                })
                .await
                .map_err(|s| call_failed(what, &s))?
                .into_inner();
            check(response.failure, what)?;
            let events = response.events.unwrap_or_default();
            Ok(aggregate_events_view(root, &events, &types, view))
        }
    }
}

fn aggregate_events_view(
    root: Uuid,
    events: &crate::proto::dolittle::runtime::events::CommittedAggregateEvents,
    types: &[event_types::EventType],
    view: View,
) -> String {
    if view.output == Output::Json {
        let all: Vec<Value> = events
            .events
            .iter()
            .map(|e| {
                let context = e.execution_context.clone().unwrap_or_default();
                let version = context.version.unwrap_or_default();
                json!({
                    "AggregateRoot": { "Id": root.to_string(), "Generation": 1 },
                    "AggregateRootVersion": e.aggregate_root_version,
                    "EventLogSequenceNumber": e.event_log_sequence_number,
                    "Occurred": time_json(e.occurred.as_ref()),
                    "ExecutionContext": {
                        "Microservice": id(context.microservice_id.as_ref()).to_string(),
                        "Tenant": id(context.tenant_id.as_ref()).to_string(),
                        "Version": {
                            "Major": version.major,
                            "Minor": version.minor,
                            "Patch": version.patch,
                            "Build": version.build,
                            "PreReleaseString": version.pre_release_string,
                        },
                        "Environment": context.environment,
                        "CorrelationId": id(context.correlation_id.as_ref()).to_string(),
                        "SpanId": context.span_id.as_deref().map(hex).unwrap_or_default(),
                        "Claims": context.claims.iter().map(|c| json!({
                            "Name": c.key,
                            "Value": c.value,
                            "ValueType": c.value_type,
                        })).collect::<Vec<_>>(),
                    },
                    "EventSource": events.event_source_id,
                    "Type": artifact_json(e.event_type.as_ref()),
                    "Public": e.public,
                    "Content": e.content,
                })
            })
            .collect();
        return compact(&Value::Array(all));
    }
    let type_cell = |artifact: Option<&Artifact>| {
        let type_id = id(artifact.and_then(|a| a.id.as_ref()));
        types
            .iter()
            .find(|t| {
                id(t.event_type.as_ref().and_then(|a| a.id.as_ref())) == type_id
                    && t.alias != NO_ALIAS
                    && !t.alias.is_empty()
            })
            .map_or_else(|| type_id.to_string(), |t| t.alias.clone())
    };
    let mut columns = vec![
        "AggregateRootVersion",
        "EventLogSequenceNumber",
        "EventType",
    ];
    if view.wide {
        columns.extend(["Public", "Occurred"]);
    }
    let mut table = Table::new(&columns);
    let last = events.events.len().saturating_sub(10);
    for e in &events.events[last..] {
        let mut row = vec![
            e.aggregate_root_version.to_string(),
            e.event_log_sequence_number.to_string(),
            type_cell(e.event_type.as_ref()),
        ];
        if view.wide {
            row.push(if e.public { "True" } else { "False" }.to_owned());
            row.push(time_cell(e.occurred.as_ref()));
        }
        table.row(row);
    }
    table.render()
}

fn event_types_view(types: &[event_types::EventType], view: View) -> String {
    if view.output == Output::Json {
        return compact(&Value::Array(
            types
                .iter()
                .map(|t| json!({ "Identifier": artifact_json(t.event_type.as_ref()), "Alias": t.alias }))
                .collect(),
        ));
    }
    let mut table = if view.wide {
        Table::new(&["EventTypeAlias", "EventTypeId"])
    } else {
        Table::new(&["EventType"])
    };
    for t in types {
        let type_id = id(t.event_type.as_ref().and_then(|a| a.id.as_ref())).to_string();
        table.row(if view.wide {
            vec![t.alias.clone(), type_id]
        } else if t.alias == NO_ALIAS || t.alias.is_empty() {
            vec![type_id]
        } else {
            vec![t.alias.clone()]
        });
    }
    table.render()
}

/// A table as the original's CLI prints one: a header, a rule, one line a row, cells padded
/// to their column's width and set between `|`.
struct Table {
    header: Vec<String>,
    rows: Vec<Vec<String>>,
}

impl Table {
    fn new(header: &[&str]) -> Table {
        Table {
            header: header.iter().map(|h| (*h).to_owned()).collect(),
            rows: Vec::new(),
        }
    }

    fn row(&mut self, row: Vec<String>) {
        self.rows.push(row);
    }

    fn render(&self) -> String {
        let mut widths: Vec<usize> = self.header.iter().map(|h| width(h)).collect();
        for row in &self.rows {
            for (w, cell) in widths.iter_mut().zip(row) {
                *w = (*w).max(width(cell));
            }
        }
        let mut out = String::new();
        let line = |out: &mut String, cells: &[String]| {
            out.push('|');
            for (cell, w) in cells.iter().zip(&widths) {
                let pad = w - width(cell);
                let _ = write!(out, " {cell}{} |", " ".repeat(pad));
            }
            out.push('\n');
        };
        line(&mut out, &self.header);
        out.push('|');
        for w in &widths {
            let _ = write!(out, "{}|", "-".repeat(w + 2));
        }
        out.push('\n');
        for row in &self.rows {
            line(&mut out, row);
        }
        out.truncate(out.trim_end().len());
        out
    }
}

/// Columns a cell takes in a terminal: control characters are shown escaped, the status
/// symbols take two, a variation selector none.
fn width(cell: &str) -> usize {
    cell.chars()
        .map(|c| match c {
            '\u{fe0f}' => 0,
            '\u{2705}' | '\u{274c}' | '\u{1f7e1}' => 2,
            _ => 1,
        })
        .sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_read_as_the_original_reads_them() {
        assert_eq!(address("").unwrap(), ("localhost".into(), DEFAULT_PORT));
        assert_eq!(address("host").unwrap(), ("host".into(), DEFAULT_PORT));
        assert_eq!(address("host:123").unwrap(), ("host".into(), 123));
        assert_eq!(address(":9").unwrap(), ("localhost".into(), 9));
        assert_eq!(address("[::1]:7").unwrap(), ("[::1]".into(), 7));
        assert_eq!(address("::1").unwrap(), ("[::1]".into(), DEFAULT_PORT));
        for bad in ["host:port", "host:99999", "[::1", "a b:1"] {
            assert_eq!(
                address(bad).unwrap_err().0,
                format!("The provided address '{bad}' is not a valid <host:port> combination.")
            );
        }
    }

    #[test]
    fn handler_names_are_ids_or_aliases_with_an_optional_scope() {
        let scope = "6f3a8d1e-0000-4000-8000-000000000001";
        assert!(matches!(
            handler_name(&format!("{DEVELOPMENT}:{scope}")).unwrap(),
            HandlerName::Id { scope: s, id } if s.to_string() == scope && id == DEVELOPMENT
        ));
        assert!(
            matches!(handler_name("shipping").unwrap(), HandlerName::Alias(a) if a == "shipping")
        );
        assert!(handler_name("shipping:not-a-guid")
            .unwrap_err()
            .0
            .starts_with(
                "The provided Event Handler Id or Alias 'shipping:not-a-guid' is not valid."
            ));
        assert!(handler_name("a:b:c").is_err());
    }

    #[test]
    fn tables_pad_every_column_and_count_the_symbols_as_two() {
        let mut table = Table::new(&["A", "Status"]);
        table.row(vec!["long value".into(), YES.into()]);
        table.row(vec!["x".into(), PARTLY.into()]);
        assert_eq!(
            table.render(),
            format!(
                "| A          | Status |\n|------------|--------|\n| long value | {YES}     |\n| x          | {PARTLY}     |"
            )
        );
    }

    #[test]
    fn times_are_written_as_the_original_writes_them() {
        let t = prost_types::Timestamp {
            seconds: 1_764_761_400,
            nanos: 120_000_000,
        };
        assert_eq!(time_json(Some(&t)), "2025-12-03T11:30:00.12+00:00");
        assert_eq!(time_json(None), "0001-01-01T00:00:00+00:00");
        assert_eq!(time_cell(Some(&t)), "12/03/2025 11:30:00 +00:00");
    }
}
