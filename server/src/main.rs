//! `annals`: the runtime server. `annals` alone (or `annals serve`) runs it with the
//! configuration of the working directory (see `annals serve --help`).

use std::path::PathBuf;

use annals_server::{mongo, RuntimeConfig, ServeOptions, Sources};
use anyhow::Context as _;
use clap::{Parser, Subcommand, ValueEnum};
use serde_json::Value;

/// annals: an event store and runtime that Dolittle heads (SDKs) connect to unchanged.
#[derive(Parser, Debug)]
#[command(version, about, long_about = None, args_conflicts_with_subcommands = true)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    #[command(flatten)]
    serve: ServeArgs,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Run the runtime (the default).
    Serve(ServeArgs),
    /// Write a tenant as the Dolittle Runtime's MongoDB database, in mongodump's layout
    /// (OUT/NAME/<collection>.bson and .metadata.json), for mongorestore. The runtime that
    /// uses the data directory must be stopped.
    Export(ExportArgs),
    /// Read a dump of the Dolittle Runtime's MongoDB event store (a directory as mongodump
    /// writes one database, plain or --gzip, or a mongodump --archive file) into a new or
    /// empty tenant. Events keep their
    /// sequence numbers; handlers resume where they were. The runtime that uses the data
    /// directory must be stopped.
    Import(ImportArgs),
    /// Show a projection's states as they were at any point of the event log (its
    /// history), or now, from a running runtime's web port, as JSON.
    Projection(ProjectionArgs),
    /// Manage a running Runtime through its management port, as the Dolittle CLI's
    /// `dolittle runtime` commands do (event handlers, aggregates, event types,
    /// configuration).
    Runtime(annals_server::cli::RuntimeArgs),
}

/// `annals projection`.
#[derive(clap::Args, Debug)]
struct ProjectionArgs {
    /// The running runtime's web port, e.g. http://localhost:8001.
    #[arg(long, value_name = "URL")]
    runtime: String,
    /// The tenant.
    #[arg(long, value_name = "UUID")]
    tenant: uuid::Uuid,
    /// The projection.
    #[arg(long, value_name = "UUID")]
    projection: uuid::Uuid,
    /// Its scope.
    #[arg(long, value_name = "UUID", default_value_t = uuid::Uuid::nil())]
    scope: uuid::Uuid,
    /// One key only [default: every key that had a state].
    #[arg(long, value_name = "KEY")]
    key: Option<String>,
    /// As of this event-log position: after the events before it.
    #[arg(long, value_name = "POSITION", conflicts_with = "time")]
    at: Option<u64>,
    /// As of this time: after the events that occurred at or before it (RFC 3339, e.g.
    /// 2026-12-01T09:30:00Z, or a date for midnight UTC).
    #[arg(long, value_name = "TIME")]
    time: Option<String>,
}

/// `annals import`.
#[derive(clap::Args, Debug)]
struct ImportArgs {
    /// The data directory [default: the configured annals:dataDirectory, else ./data].
    #[arg(long, value_name = "DIR")]
    data_dir: Option<PathBuf>,
    /// Read this configuration file instead of .dolittle/runtime.{json,yml,yaml}.
    #[arg(long, value_name = "PATH")]
    config: Option<PathBuf>,
    /// The tenant to import into (new, or without events and state).
    #[arg(long, value_name = "UUID")]
    tenant: uuid::Uuid,
    /// The dump of the tenant's database: DIR/NAME as mongodump --out DIR writes it (plain
    /// or --gzip), or with --archive the file mongodump --archive=FILE writes.
    #[arg(value_name = "DUMP")]
    source: PathBuf,
    /// DUMP is a mongodump --archive file.
    #[arg(long)]
    archive: bool,
    /// The archive is gzipped as a whole (mongodump --archive --gzip). A directory's
    /// gzipped files are recognised by their names.
    #[arg(long, requires = "archive")]
    gzip: bool,
    /// The database to read from an archive of several [default: its only one].
    #[arg(long, value_name = "NAME", requires = "archive")]
    database: Option<String>,
}

/// `annals export`.
#[derive(clap::Args, Debug)]
struct ExportArgs {
    /// The data directory [default: the configured annals:dataDirectory, else ./data].
    #[arg(long, value_name = "DIR", conflicts_with = "runtime")]
    data_dir: Option<PathBuf>,
    /// Export from this running runtime instead (its web port, e.g. http://host:8001),
    /// while it serves: the runtime writes the dump under its annals:exportDirectory, in
    /// OUT/NAME there (OUT a plain name), as a consistent snapshot.
    #[arg(long, value_name = "URL")]
    runtime: Option<String>,
    /// Read this configuration file instead of .dolittle/runtime.{json,yml,yaml} (for the
    /// data directory, engine settings and the tenant's database name).
    #[arg(long, value_name = "PATH")]
    config: Option<PathBuf>,
    /// The tenant to export.
    #[arg(long, value_name = "UUID")]
    tenant: uuid::Uuid,
    /// Where the dump goes: the database is written to OUT/NAME (with --runtime: OUT is a
    /// name under the runtime's export directory).
    #[arg(long, value_name = "DIR")]
    out: PathBuf,
    /// The database's name [default: the tenant's configured
    /// resources:eventStore:database, else event_store].
    #[arg(long, value_name = "NAME")]
    database: Option<String>,
    /// Compress every file as mongodump --gzip does (.bson.gz, .metadata.json.gz).
    #[arg(long)]
    gzip: bool,
}

#[derive(ValueEnum, Clone, Copy, Debug, Default)]
enum LogFormat {
    /// Human-readable lines.
    #[default]
    Text,
    /// One JSON object per line.
    Json,
}

/// Flags override the configuration files and DOLITTLE__RUNTIME__* environment variables.
#[derive(clap::Args, Debug, Default)]
struct ServeArgs {
    /// Read this configuration file (JSON or YAML, the `dolittle:runtime` section's keys)
    /// instead of .dolittle/runtime.{json,yml,yaml} in the working directory.
    #[arg(long, value_name = "PATH")]
    config: Option<PathBuf>,
    /// Where events and state are kept [default: ./data] (annals:dataDirectory).
    #[arg(long, value_name = "DIR")]
    data_dir: Option<PathBuf>,
    /// Port for heads [default: 50053] (endpoints:private:port).
    #[arg(long, value_name = "PORT")]
    private_port: Option<u16>,
    /// Port for other runtimes' event horizon [default: 50052] (endpoints:public:port).
    #[arg(long, value_name = "PORT")]
    public_port: Option<u16>,
    /// Port for management (CLI) [default: 51052] (endpoints:management:port).
    #[arg(long, value_name = "PORT")]
    management_port: Option<u16>,
    /// Port for management over gRPC-Web (browsers, HTTP/1.1) [default: 51152]
    /// (endpoints:managementweb:port).
    #[arg(long, value_name = "PORT")]
    management_web_port: Option<u16>,
    /// Port for /healthz and the status page [default: 8001] (endpoints:web:port).
    #[arg(long, value_name = "PORT")]
    web_port: Option<u16>,
    /// Port for Prometheus /metrics [default: 9700] (endpoints:metrics:port).
    #[arg(long, value_name = "PORT")]
    metrics_port: Option<u16>,
    /// Port for heads of Contracts 5.4, such as JavaScript SDK 17 [default: 50055]
    /// (endpoints:legacy:port).
    #[arg(long, value_name = "PORT")]
    legacy_port: Option<u16>,
    /// Address every listener binds [default: 0.0.0.0] (annals:listenAddress).
    #[arg(long, value_name = "IP")]
    listen_address: Option<String>,
    /// Serve this tenant (repeatable; adds to the configured tenants) (tenants:<id>).
    #[arg(long = "tenant", value_name = "UUID")]
    tenants: Vec<String>,
    /// This microservice's id, which reverse-call heads must match (platform:microserviceID).
    #[arg(long, value_name = "UUID")]
    microservice_id: Option<String>,
    /// The environment, which reverse-call heads must match [default: Development]
    /// (platform:environment).
    #[arg(long, value_name = "NAME")]
    environment: Option<String>,
    /// Set any configuration key below dolittle:runtime, e.g. endpoints:web:enabled=false
    /// (repeatable).
    #[arg(long = "set", value_name = "KEY=VALUE")]
    set: Vec<String>,
    /// Write the bound ports as JSON to this file once listening (useful with port 0).
    #[arg(long, value_name = "PATH")]
    ready_file: Option<PathBuf>,
    /// Log format. The level comes from RUST_LOG [default: info].
    #[arg(long, value_enum, default_value_t)]
    log_format: LogFormat,
}

impl ServeArgs {
    fn overrides(&self) -> anyhow::Result<Vec<(String, Value)>> {
        let text = |v: &dyn ToString| Value::String(v.to_string());
        let mut out = Vec::new();
        if let Some(d) = &self.data_dir {
            out.push(("annals:dataDirectory".into(), text(&d.display())));
        }
        for (name, port) in [
            ("private", self.private_port),
            ("public", self.public_port),
            ("management", self.management_port),
            ("managementweb", self.management_web_port),
            ("web", self.web_port),
            ("metrics", self.metrics_port),
            ("legacy", self.legacy_port),
        ] {
            if let Some(p) = port {
                out.push((format!("endpoints:{name}:port"), text(&p)));
            }
        }
        if let Some(a) = &self.listen_address {
            out.push(("annals:listenAddress".into(), text(a)));
        }
        for t in &self.tenants {
            out.push((
                format!("tenants:{t}"),
                Value::Object(serde_json::Map::new()),
            ));
        }
        if let Some(m) = &self.microservice_id {
            out.push(("platform:microserviceID".into(), text(m)));
        }
        if let Some(e) = &self.environment {
            out.push(("platform:environment".into(), text(e)));
        }
        for s in &self.set {
            let (key, value) = s
                .split_once('=')
                .with_context(|| format!("--set {s}: expected KEY=VALUE"))?;
            let key = key.trim();
            let key = match key.get(..17) {
                Some(prefix) if prefix.eq_ignore_ascii_case("dolittle:runtime:") => &key[17..],
                _ => key,
            };
            out.push((key.to_owned(), text(&value)));
        }
        Ok(out)
    }
}

/// The configuration sources of the working directory and environment, with overrides.
fn sources(
    config_file: Option<PathBuf>,
    overrides: Vec<(String, Value)>,
) -> anyhow::Result<Sources> {
    Ok(Sources {
        working_dir: std::env::current_dir().context("reading the working directory")?,
        config_file,
        // Variables that are not UTF-8 cannot be configuration keys or values of ours.
        env: std::env::vars_os()
            .filter_map(|(k, v)| Some((k.into_string().ok()?, v.into_string().ok()?)))
            .collect(),
        overrides,
    })
}

/// The configuration of a command that works on a data directory (`--data-dir` overriding).
fn data_dir_config(
    config: Option<PathBuf>,
    data_dir: Option<&PathBuf>,
) -> anyhow::Result<RuntimeConfig> {
    let overrides = data_dir
        .iter()
        .map(|d| {
            (
                "annals:dataDirectory".to_owned(),
                Value::String(d.display().to_string()),
            )
        })
        .collect();
    RuntimeConfig::load(&sources(config, overrides)?).context("invalid configuration")
}

fn import(args: ImportArgs) -> anyhow::Result<()> {
    init_logging(LogFormat::Text);
    let config = data_dir_config(args.config, args.data_dir.as_ref())?;
    let request = mongo::ImportRequest {
        engine: config.engine,
        tenant: args.tenant,
        source: args.source,
        archive: args.archive.then_some((args.gzip, args.database)),
    };
    let started = std::time::Instant::now();
    let summary = mongo::import(&request)?;
    print!(
        "{}",
        mongo::import_report(&request, &summary, started.elapsed())
    );
    Ok(())
}

/// Calls the web port of a running runtime: `body` is POSTed as JSON, else it is a GET.
/// Returns the status and the JSON answer (an `error` member when it is not JSON).
fn call_runtime(uri: &str, body: Option<&Value>) -> anyhow::Result<(hyper::StatusCode, Value)> {
    use http_body_util::{BodyExt as _, Full};
    let request = match body {
        Some(body) => hyper::Request::post(uri)
            .header("content-type", "application/json")
            .body(Full::new(hyper::body::Bytes::from(body.to_string()))),
        None => hyper::Request::get(uri).body(Full::new(hyper::body::Bytes::new())),
    }
    .with_context(|| format!("{uri} is not a URL"))?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    let (status, answer) = runtime.block_on(async {
        let client =
            hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
                .build_http();
        let response = client
            .request(request)
            .await
            .with_context(|| format!("calling {uri}"))?;
        let status = response.status();
        let bytes = response
            .into_body()
            .collect()
            .await
            .with_context(|| format!("reading the answer of {uri}"))?
            .to_bytes();
        anyhow::Ok((status, bytes))
    })?;
    let answer: Value = serde_json::from_slice(&answer)
        .unwrap_or_else(|_| serde_json::json!({ "error": String::from_utf8_lossy(&answer) }));
    Ok((status, answer))
}

/// `annals export --runtime URL`: asks the running runtime to export (`POST /export`).
fn export_running(url: &str, args: &ExportArgs) -> anyhow::Result<()> {
    let body = serde_json::json!({
        "tenant": args.tenant,
        "out": args.out.display().to_string(),
        "database": args.database,
        "gzip": args.gzip,
    });
    let uri = format!("{}/export", url.trim_end_matches('/'));
    let (status, answer) = call_runtime(&uri, Some(&body))?;
    if !status.is_success() {
        anyhow::bail!(
            "the runtime refused the export ({status}): {}",
            answer["error"].as_str().unwrap_or("no reason given")
        );
    }
    print!("{}", answer["report"].as_str().unwrap_or_default());
    Ok(())
}

/// `annals projection`: a projection's states as of a point, from a running runtime.
fn projection(args: &ProjectionArgs) -> anyhow::Result<()> {
    fn encode(text: &str) -> String {
        text.bytes()
            .map(|b| {
                if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
                    char::from(b).to_string()
                } else {
                    format!("%{b:02X}")
                }
            })
            .collect()
    }
    let mut query = Vec::new();
    if let Some(key) = &args.key {
        query.push(format!("key={}", encode(key)));
    }
    if let Some(at) = args.at {
        query.push(format!("at={at}"));
    }
    if let Some(time) = &args.time {
        query.push(format!("time={}", encode(time)));
    }
    let mut after: Option<String> = None;
    let mut states = Vec::new();
    let mut first: Option<Value> = None;
    loop {
        let mut page = query.clone();
        if let Some(after) = &after {
            page.push(format!("after={}", encode(after)));
        }
        let uri = format!(
            "{}/projections/{}/{}/{}/states?{}",
            args.runtime.trim_end_matches('/'),
            args.tenant,
            args.scope,
            args.projection,
            page.join("&")
        );
        let (status, mut answer) = call_runtime(&uri, None)?;
        if !status.is_success() {
            anyhow::bail!(
                "{status}: {}",
                answer["error"].as_str().unwrap_or("no reason given")
            );
        }
        if let Some(Value::Array(page)) = answer.get_mut("states").map(Value::take) {
            states.extend(page);
        }
        after = answer["next"].as_str().map(str::to_owned);
        first.get_or_insert(answer);
        if after.is_none() {
            break;
        }
    }
    let mut answer = first.unwrap_or_default();
    answer["states"] = Value::Array(states);
    if let Some(object) = answer.as_object_mut() {
        object.remove("next");
    }
    println!("{}", serde_json::to_string_pretty(&answer)?);
    Ok(())
}

fn export(args: ExportArgs) -> anyhow::Result<()> {
    init_logging(LogFormat::Text);
    if let Some(url) = &args.runtime {
        return export_running(url, &args);
    }
    let config = data_dir_config(args.config, args.data_dir.as_ref())?;
    let request = mongo::ExportRequest {
        database: args
            .database
            .or_else(|| mongo::configured_database(&config.merged, args.tenant))
            .unwrap_or_else(|| mongo::DEFAULT_DATABASE.to_owned()),
        engine: config.engine,
        tenant: args.tenant,
        out: args.out,
        gzip: args.gzip,
    };
    let started = std::time::Instant::now();
    let summary = mongo::export(&request)?;
    print!("{}", mongo::report(&request, &summary, started.elapsed()));
    Ok(())
}

fn init_logging(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    // Colours only for a person at a terminal, not in files and log collectors.
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(ansi);
    match format {
        // Client text in a field must not forge lines or reach the terminal raw.
        LogFormat::Text => builder
            .with_writer(annals_server::logging::EscapedStderr { ansi })
            .init(),
        LogFormat::Json => builder.json().with_writer(std::io::stderr).init(),
    }
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let args = match cli.command {
        Some(Command::Serve(args)) => args,
        Some(Command::Export(args)) => return export(args),
        Some(Command::Import(args)) => return import(args),
        Some(Command::Projection(args)) => return projection(&args),
        Some(Command::Runtime(args)) => {
            if let Err(e) = annals_server::cli::run(args) {
                eprintln!("{e}");
                std::process::exit(1);
            }
            return Ok(());
        }
        None => cli.serve,
    };
    init_logging(args.log_format);
    let sources = sources(args.config.clone(), args.overrides()?)?;
    let config = RuntimeConfig::load(&sources).context("invalid configuration")?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("annals")
        .build()
        .context("starting the async runtime")?;
    let result = runtime.block_on(annals_server::serve(
        config,
        ServeOptions {
            ready_file: args.ready_file,
        },
    ));
    if let Err(e) = &result {
        tracing::error!(error = format!("{e:#}"), "annals stopped");
    }
    result
}
