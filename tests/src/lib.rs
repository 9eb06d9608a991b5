//! The harness of the end-to-end tests: starts the real `annals` binary on free ports with a
//! temporary data directory, and builds gRPC clients and requests from our protos.
//!
//! The binary is `$ANNALS_BIN`, or else `target/<profile>/annals` next to the test executable's
//! `deps/` folder (cargo builds it for the server package's own tests in the same run, with the
//! engine's test hooks, which a test build turns on). `.ci/run` sets `ANNALS_BIN` to the binary
//! as `cargo build --bin annals` makes it, without them: the one users get.

#![allow(
    clippy::unwrap_used,
    clippy::missing_panics_doc,
    missing_docs,
    reason = "test harness"
)]

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use annals_server::proto::dolittle;
use annals_server::wire;
use dolittle::artifacts::Artifact;
use dolittle::execution::ExecutionContext;
use dolittle::services::CallRequestContext;
use dolittle::versioning::Version;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::process::{Child, Command};
use tonic::transport::Channel;
use uuid::Uuid;

pub use annals_server::proto;

pub mod head;
pub mod mongo;
pub mod sdk17;
pub mod webdriver;

/// The Development tenant (the default configuration's only tenant).
pub const DEVELOPMENT: Uuid = Uuid::from_u128(0x445f_8ea8_1a6f_40d7_b2fc_796d_ba92_dc44);

/// The bound ports of a running server (from its ready file).
#[derive(Debug, Clone, Copy, serde::Deserialize)]
pub struct Ports {
    pub private: Option<u16>,
    pub public: Option<u16>,
    pub management: Option<u16>,
    pub management_web: Option<u16>,
    pub web: Option<u16>,
    pub metrics: Option<u16>,
    pub legacy: Option<u16>,
}

/// A running `annals` process.
pub struct Server {
    child: Option<Child>,
    pub ports: Ports,
    /// The working directory (holds `data/` and any `.dolittle/` configuration).
    pub dir: PathBuf,
    args: Vec<String>,
    env: Vec<(String, String)>,
    _temp: Option<tempfile::TempDir>,
}

/// Where the `annals` binary is.
pub fn binary() -> PathBuf {
    if let Some(path) = std::env::var_os("ANNALS_BIN") {
        return PathBuf::from(path);
    }
    let exe = std::env::current_exe().unwrap();
    let profile_dir = exe.parent().unwrap().parent().unwrap();
    let path = profile_dir.join("annals");
    assert!(
        path.is_file(),
        "{} is missing: build it with `cargo build --bin annals` (or run the whole workspace's tests)",
        path.display()
    );
    path
}

impl Server {
    /// Starts a server in a fresh temporary directory with the default configuration.
    pub async fn start() -> Server {
        Server::start_with(&[], &[], &[]).await
    }

    /// Starts a server in a fresh temporary directory; `files` are written into it first
    /// (e.g. `.dolittle/runtime.yml`), `args` and `env` are passed to `annals serve`.
    pub async fn start_with(files: &[(&str, &str)], args: &[&str], env: &[(&str, &str)]) -> Server {
        let temp = tempfile::tempdir().unwrap();
        for (name, text) in files {
            let path = temp.path().join(name);
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(path, text).unwrap();
        }
        let mut server = Server {
            child: None,
            ports: Ports {
                private: None,
                public: None,
                management: None,
                management_web: None,
                web: None,
                metrics: None,
                legacy: None,
            },
            dir: temp.path().to_owned(),
            args: args.iter().map(|a| (*a).to_owned()).collect(),
            env: env
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect(),
            _temp: Some(temp),
        };
        server.launch().await;
        server
    }

    fn command(&self) -> Command {
        let mut command = Command::new(binary());
        command
            .arg("serve")
            .args(["--listen-address", "127.0.0.1"])
            .args([
                "--private-port",
                "0",
                "--public-port",
                "0",
                "--management-port",
                "0",
                "--management-web-port",
                "0",
            ])
            .args([
                "--web-port",
                "0",
                "--metrics-port",
                "0",
                "--legacy-port",
                "0",
            ])
            // The machine's own disk may be nearly full (a shared one often is): /healthz
            // would say Degraded in every test. `disk_space.rs` sets its own threshold.
            .args(["--set", "annals:disk:lowSpace=0"])
            .arg("--ready-file")
            .arg(self.dir.join("ready.json"))
            .args(&self.args)
            .current_dir(&self.dir)
            .env_remove("RUST_LOG")
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::from(
                std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(self.dir.join("annals.log"))
                    .unwrap(),
            ))
            .kill_on_drop(true);
        command
    }

    async fn launch(&mut self) {
        let ready = self.dir.join("ready.json");
        let _ = std::fs::remove_file(&ready);
        let mut child = self.command().spawn().unwrap();
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Ok(text) = std::fs::read_to_string(&ready) {
                self.ports = serde_json::from_str(&text).unwrap();
                break;
            }
            if let Some(status) = child.try_wait().unwrap() {
                panic!("annals exited at startup ({status}):\n{}", self.log());
            }
            assert!(
                Instant::now() < deadline,
                "annals did not start in 60 s:\n{}",
                self.log()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        self.child = Some(child);
    }

    /// The server's log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("annals.log")).unwrap_or_default()
    }

    /// Sends SIGTERM and waits for the exit; returns whether it exited with success.
    pub async fn stop(&mut self) -> bool {
        let Some(mut child) = self.child.take() else {
            return true;
        };
        let pid = child.id().unwrap();
        let status = std::process::Command::new("kill")
            .args(["-TERM", &pid.to_string()])
            .status()
            .unwrap();
        assert!(status.success());
        let exit = tokio::time::timeout(Duration::from_secs(60), child.wait())
            .await
            .unwrap()
            .unwrap();
        exit.success()
    }

    /// The process id of the running server.
    pub fn pid(&self) -> u32 {
        self.child
            .as_ref()
            .and_then(Child::id)
            .expect("the server is running")
    }

    /// The server's resident set size in bytes (VmRSS of /proc/<pid>/status).
    pub fn rss(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid())).unwrap();
        let line = status
            .lines()
            .find(|l| l.starts_with("VmRSS:"))
            .expect("VmRSS in /proc/<pid>/status");
        let kib: u64 = line
            .split_whitespace()
            .nth(1)
            .and_then(|n| n.parse().ok())
            .unwrap();
        kib * 1024
    }

    /// Sends SIGKILL and waits for the process to be gone.
    pub async fn kill(&mut self) {
        let Some(mut child) = self.child.take() else {
            return;
        };
        child.start_kill().unwrap();
        tokio::time::timeout(Duration::from_secs(60), child.wait())
            .await
            .unwrap()
            .unwrap();
    }

    /// Makes every later launch bind the public port this one bound, so that a runtime
    /// configured with this server's address (an event-horizon consumer) finds it again
    /// after a restart. `--set` is applied after `--public-port 0`, so it wins.
    pub fn keep_public_port(&mut self) {
        let port = self.ports.public.expect("the public endpoint is enabled");
        self.args.push("--set".to_owned());
        self.args.push(format!("endpoints:public:port={port}"));
    }

    /// Adds arguments to every later launch (after the ones it was started with).
    pub fn args_push(&mut self, args: &[&str]) {
        self.args.extend(args.iter().map(|a| (*a).to_owned()));
    }

    /// Starts the server again on the same directory (new ports) after `stop` or `kill`.
    pub async fn relaunch(&mut self) {
        assert!(self.child.is_none(), "the server is still running");
        self.launch().await;
    }

    /// Stops (SIGTERM) and starts again on the same directory (new ports).
    pub async fn restart(&mut self) {
        assert!(
            self.stop().await,
            "annals did not stop cleanly:\n{}",
            self.log()
        );
        self.launch().await;
    }

    pub async fn channel(port: Option<u16>) -> Channel {
        let port = port.expect("endpoint enabled");
        Channel::from_shared(format!("http://127.0.0.1:{port}"))
            .unwrap()
            .connect()
            .await
            .unwrap()
    }

    pub async fn private(&self) -> Channel {
        Server::channel(self.ports.private).await
    }

    pub async fn management(&self) -> Channel {
        Server::channel(self.ports.management).await
    }

    pub async fn public(&self) -> Channel {
        Server::channel(self.ports.public).await
    }

    /// `POST path` with `body` of `content_type` (none: no header) on a port over plain
    /// HTTP/1.1: (status code, body).
    pub async fn http_post(
        port: Option<u16>,
        path: &str,
        content_type: Option<&str>,
        body: &str,
    ) -> (u16, String) {
        let header = content_type
            .map(|c| format!("Content-Type: {c}\r\n"))
            .unwrap_or_default();
        Server::http(
            port,
            &format!(
                "POST {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n{header}\
                 Content-Length: {}\r\n\r\n{body}",
                body.len()
            ),
        )
        .await
    }

    /// `GET path` on a port over plain HTTP/1.1: (status code, body).
    pub async fn http_get(port: Option<u16>, path: &str) -> (u16, String) {
        Server::http(
            port,
            &format!("GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n"),
        )
        .await
    }

    /// Sends `request` on a new connection and reads the answer to its end.
    async fn http(port: Option<u16>, request: &str) -> (u16, String) {
        let mut stream = tokio::net::TcpStream::connect(("127.0.0.1", port.unwrap()))
            .await
            .unwrap();
        stream.write_all(request.as_bytes()).await.unwrap();
        let mut response = String::new();
        stream.read_to_string(&mut response).await.unwrap();
        let status = response
            .split(' ')
            .nth(1)
            .and_then(|s| s.parse().ok())
            .unwrap_or(0);
        let body = response
            .split_once("\r\n\r\n")
            .map(|(_, b)| b.to_owned())
            .unwrap_or_default();
        (status, body)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(child) = &mut self.child {
            let _ = child.start_kill();
        }
    }
}

/// Awaits every future, each in its own task so they run at once; results in order.
pub async fn join_all<F>(futures: Vec<F>) -> Vec<F::Output>
where
    F: std::future::Future + Send + 'static,
    F::Output: Send + 'static,
{
    let tasks: Vec<_> = futures.into_iter().map(tokio::spawn).collect();
    let mut out = Vec::with_capacity(tasks.len());
    for task in tasks {
        out.push(task.await.unwrap());
    }
    out
}

/// A seed for a randomised test: the number in the environment variable `variable` (to replay
/// a failed run), else one from the clock; printed either way, odd (xorshift needs non-zero).
pub fn seed(variable: &str) -> u64 {
    let seed = std::env::var(variable).ok().map_or_else(
        || {
            let now = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap();
            u64::try_from(now.as_nanos() % u128::from(u64::MAX)).unwrap()
        },
        |v| {
            v.parse::<u64>()
                .unwrap_or_else(|_| panic!("{variable} is not a number"))
        },
    ) | 1;
    eprintln!("seed {seed} ({variable}={seed} replays it)");
    seed
}

/// The wire Uuid of an id.
pub fn id(id: Uuid) -> dolittle::protobuf::Uuid {
    wire::uuid(id)
}

/// The id in a wire Uuid.
pub fn uuid(id: &dolittle::protobuf::Uuid) -> Uuid {
    wire::from_uuid(id).unwrap()
}

/// A port on 127.0.0.1 that nothing listens on (bound, then released at once).
pub fn free_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.local_addr().unwrap().port()
}

/// An execution context for `tenant` of `microservice` (which reverse-call registrations must
/// match against the server's `platform:microserviceID`).
pub fn execution_context_in(microservice: Uuid, tenant: Uuid) -> ExecutionContext {
    let mut context = execution_context(tenant);
    context.microservice_id = Some(id(microservice));
    context
}

/// Every event of `tenant`'s log of `scope`, read with annals-engine from the data directory
/// of a stopped (or killed) server in `dir`.
pub fn read_scoped_log(dir: &Path, tenant: Uuid, scope: Uuid) -> Vec<annals_engine::Event> {
    use annals_engine::{Engine, EngineConfig, EventLogSequenceNumber, ScopeId, TenantId};
    let engine = Engine::open(EngineConfig::new(dir.join("data"))).unwrap();
    let log = engine
        .tenant(TenantId(tenant))
        .unwrap()
        .scoped_log(ScopeId(scope))
        .unwrap();
    let mut events = Vec::new();
    let mut from = EventLogSequenceNumber::ZERO;
    loop {
        let batch = log.read(from, 1024, 1 << 20).unwrap();
        let Some(next) = batch.next() else {
            return events;
        };
        events.extend(batch.events().unwrap());
        from = next;
    }
}

/// An execution context for `tenant` as a head would send it.
pub fn execution_context(tenant: Uuid) -> ExecutionContext {
    ExecutionContext {
        microservice_id: Some(id(Uuid::from_u128(
            0x4a5d_2bc3_543f_459a_ab0b_e8e9_2409_3260,
        ))),
        tenant_id: Some(id(tenant)),
        version: Some(Version {
            major: 1,
            minor: 2,
            patch: 3,
            build: 4,
            pre_release_string: "rc".into(),
        }),
        correlation_id: Some(id(Uuid::new_v4())),
        claims: vec![dolittle::security::Claim {
            key: "role".into(),
            value: "admin".into(),
            value_type: "string".into(),
        }],
        environment: "Development".into(),
        span_id: None,
    }
}

pub fn call_context(tenant: Uuid) -> CallRequestContext {
    CallRequestContext {
        execution_context: Some(execution_context(tenant)),
        head_id: Some(id(Uuid::new_v4())),
    }
}

pub fn artifact(id_: Uuid) -> Artifact {
    Artifact {
        id: Some(id(id_)),
        generation: 1,
    }
}

/// A Commit request of `events` (event type, event source, content) for `tenant`.
pub fn commit_request(
    tenant: Uuid,
    events: &[(Uuid, &str, &str)],
) -> dolittle::runtime::events::CommitEventsRequest {
    dolittle::runtime::events::CommitEventsRequest {
        call_context: Some(call_context(tenant)),
        events: events
            .iter()
            .map(
                |(t, es, content)| dolittle::runtime::events::UncommittedEvent {
                    event_type: Some(artifact(*t)),
                    event_source_id: (*es).to_owned(),
                    public: false,
                    content: (*content).to_owned(),
                },
            )
            .collect(),
    }
}

/// Registers an event type's alias on the server's private port; panics on a failure.
pub async fn register_event_type(server: &Server, event_type: Uuid, alias: &str) {
    use dolittle::runtime::events::event_types_client::EventTypesClient;
    let r = EventTypesClient::new(server.private().await)
        .register(dolittle::runtime::events::EventTypeRegistrationRequest {
            call_context: Some(call_context(DEVELOPMENT)),
            event_type: Some(artifact(event_type)),
            alias: Some(alias.to_owned()),
        })
        .await
        .unwrap()
        .into_inner();
    assert!(r.failure.is_none(), "{:?}", r.failure);
}

/// Registers an aggregate root's alias on the server's private port; panics on a failure.
pub async fn register_aggregate_root(server: &Server, root: Uuid, alias: &str) {
    use dolittle::runtime::aggregates::aggregate_roots_client::AggregateRootsClient;
    let r = AggregateRootsClient::new(server.private().await)
        .register_alias(
            dolittle::runtime::aggregates::AggregateRootAliasRegistrationRequest {
                call_context: Some(call_context(DEVELOPMENT)),
                aggregate_root: Some(artifact(root)),
                alias: Some(alias.to_owned()),
            },
        )
        .await
        .unwrap()
        .into_inner();
    assert!(r.failure.is_none(), "{:?}", r.failure);
}

/// Commits `events` (event type, event source, content) for `tenant` over `channel` and
/// returns the committed events; panics on a failure.
pub async fn commit(
    channel: &Channel,
    tenant: Uuid,
    events: &[(Uuid, &str, &str)],
) -> Vec<dolittle::runtime::events::CommittedEvent> {
    send_commit(channel, commit_request(tenant, events)).await
}

/// Sends `request` (a Commit request built with [`commit_request`] and then changed, e.g. to
/// make events public) over `channel` and returns the committed events; panics on a failure.
pub async fn send_commit(
    channel: &Channel,
    request: dolittle::runtime::events::CommitEventsRequest,
) -> Vec<dolittle::runtime::events::CommittedEvent> {
    let mut client =
        dolittle::runtime::events::event_store_client::EventStoreClient::new(channel.clone());
    let response = client.commit(request).await.unwrap().into_inner();
    assert!(response.failure.is_none(), "{:?}", response.failure);
    response.events
}

/// The last 4000 characters of a server's log: enough to say why a test failed without
/// drowning its message.
pub fn log_tail(log: &str) -> &str {
    let mut start = log.len().saturating_sub(4000);
    while !log.is_char_boundary(start) {
        start += 1;
    }
    &log[start..]
}

/// The value of the Prometheus sample `name` whose labels include every one of `labels`
/// (`key="value"` pairs), summed over the matching samples; None if none matches.
pub fn metric(text: &str, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    let mut found = None;
    for line in text.lines().filter(|l| !l.starts_with('#')) {
        let Some((series, value)) = line.rsplit_once(' ') else {
            continue;
        };
        let (sample, label_text) = match series.split_once('{') {
            Some((sample, rest)) => (sample, rest.trim_end_matches('}')),
            None => (series, ""),
        };
        if sample != name {
            continue;
        }
        let all = labels
            .iter()
            .all(|(k, v)| label_text.split(',').any(|l| l == format!("{k}=\"{v}\"")));
        if all {
            if let Ok(value) = value.parse::<f64>() {
                *found.get_or_insert(0.0) += value;
            }
        }
    }
    found
}

/// The management view of one event handler (GetOne on the management port).
pub async fn get_one(
    server: &Server,
    scope: Uuid,
    handler: Uuid,
    tenant: Option<Uuid>,
) -> dolittle::runtime::events::processing::management::GetOneResponse {
    use dolittle::runtime::events::processing::management as m;
    let mut client = m::event_handlers_client::EventHandlersClient::new(server.management().await);
    client
        .get_one(m::GetOneRequest {
            scope_id: Some(id(scope)),
            event_handler_id: Some(id(handler)),
            tenant_id: tenant.map(id),
        })
        .await
        .unwrap()
        .into_inner()
}

/// Polls GetOne until the default scope's handler `handler` is at stream position `position`
/// for `tenant` (positions may be saved a moment after the answer).
pub async fn wait_position(server: &Server, handler: Uuid, tenant: Uuid, position: u64) {
    let deadline = tokio::time::Instant::now() + head::MUST;
    loop {
        let status = get_one(server, Uuid::nil(), handler, Some(tenant)).await;
        let at = status
            .event_handlers
            .as_ref()
            .and_then(|h| h.tenants.first())
            .map(|t| t.stream_position);
        if at == Some(position) {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "position {at:?}, waiting for {position}: {status:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// A CommitForAggregate request.
pub fn aggregate_request(
    tenant: Uuid,
    root: Uuid,
    event_source: &str,
    expected: u64,
    events: &[(Uuid, &str)],
) -> dolittle::runtime::events::CommitAggregateEventsRequest {
    use dolittle::runtime::events::uncommitted_aggregate_events::UncommittedAggregateEvent;
    dolittle::runtime::events::CommitAggregateEventsRequest {
        call_context: Some(call_context(tenant)),
        events: Some(dolittle::runtime::events::UncommittedAggregateEvents {
            aggregate_root_id: Some(id(root)),
            event_source_id: event_source.to_owned(),
            expected_aggregate_root_version: expected,
            events: events
                .iter()
                .map(|(t, content)| UncommittedAggregateEvent {
                    event_type: Some(artifact(*t)),
                    public: false,
                    content: (*content).to_owned(),
                })
                .collect(),
        }),
    }
}

/// Commits `events` to the Development tenant's aggregate (`root`, `event_source`) at
/// `expected` through `client`; returns the response (a failure included).
pub async fn for_aggregate(
    client: &mut dolittle::runtime::events::event_store_client::EventStoreClient<Channel>,
    root: Uuid,
    event_source: &str,
    expected: u64,
    events: &[(Uuid, &str)],
) -> dolittle::runtime::events::CommitAggregateEventsResponse {
    client
        .commit_for_aggregate(aggregate_request(
            DEVELOPMENT,
            root,
            event_source,
            expected,
            events,
        ))
        .await
        .unwrap()
        .into_inner()
}

/// The failure id in a response's failure, if any.
pub fn failure_id(failure: Option<&dolittle::protobuf::Failure>) -> Option<Uuid> {
    failure.map(|f| uuid(f.id.as_ref().unwrap()))
}

/// Well-known failure ids of the contract.
pub mod failures {
    use uuid::Uuid;
    pub const OTHER: Uuid = Uuid::from_u128(0x05cc_1d10_4efc_457b_84a6_a1be_0a5f_36ba);
    pub const UNKNOWN: Uuid = Uuid::from_u128(0x90e7_6603_b6ea_403e_a68e_b9b3_85b9_2b16);
    pub const CONFLICT: Uuid = Uuid::from_u128(0xf25c_ccfb_3ae1_4969_bee6_9063_70ff_bc2d);
    pub const NO_EVENTS: Uuid = Uuid::from_u128(0xef3f_1a42_9bc3_4d98_aa2a_942d_b7c5_6ac1);
    pub const HANDSHAKE_MISSING: Uuid = Uuid::from_u128(0x8f5b_a2c2_6543_47ce_b2a8_d92a_872e_7280);
    pub const SDK_MUST_UPDATE: Uuid = Uuid::from_u128(0x3e2d_8368_4bca_4e0b_a9bf_8d1c_ccbc_ac21);
    pub const RUNTIME_MUST_UPDATE: Uuid =
        Uuid::from_u128(0xb46f_b8a0_4565_4f00_880c_022c_bb3b_babb);

    /// Event handlers: the first message was no registration, or its arguments were wrong.
    pub const HANDLER_ARGUMENTS: Uuid = Uuid::from_u128(0xdbfd_fa15_e727_49f6_bed8_7a78_7954_a4c6);
    /// Event handlers: (scope, id) is already connected.
    pub const HANDLER_ALREADY_REGISTERED: Uuid =
        Uuid::from_u128(0x19dc_6254_1732_4625_90af_4447_32bc_e795);
    /// Event handlers: the id is the nil Uuid.
    pub const HANDLER_NIL_ID: Uuid = Uuid::from_u128(0x45b4_c918_37a5_405c_9865_d032_869b_1d24);
    /// Filters: bad arguments, or the filter is already connected.
    pub const FILTER_ARGUMENTS: Uuid = Uuid::from_u128(0xf048_0899_8aed_4191_b339_5121_f4d9_f2e2);
    /// Filters: the id is the nil Uuid.
    pub const FILTER_NIL_ID: Uuid = Uuid::from_u128(0x2cdb_6143_4f3d_49cb_bd58_68fd_1376_dab1);
    /// Management: the event handler is not registered (connected).
    pub const HANDLER_NOT_REGISTERED: Uuid =
        Uuid::from_u128(0x0006_69b7_2ad3_4c4c_a245_55ba_33c4_8a4d);
    /// Management: the position is beyond the end of the stream.
    /// Management: a reprocess of the processor is already under way.
    pub const ALREADY_SETTING_POSITION: Uuid =
        Uuid::from_u128(0xf5d9_c2db_c6e3_4d12_848c_c298_1c4f_fb85);
    pub const BEYOND_END: Uuid = Uuid::from_u128(0xd3a0_bafc_4746_41ed_b4a4_e67b_5055_9703);
    /// Management: the tenant is not configured.
    pub const UNKNOWN_TENANT: Uuid = Uuid::from_u128(0x7bc3_40c0_c0e1_4ef6_9c44_2030_4bfc_2ef2);
    /// Event horizon consumer: no `microservices:<id>` address for the producer.
    pub const NO_PRODUCER_ADDRESS: Uuid =
        Uuid::from_u128(0x9b74_482a_8eaa_47ab_ac1c_53d7_04e4_e77d);
    /// Event horizon consumer: the producer could not be reached.
    pub const PRODUCER_UNREACHABLE: Uuid =
        Uuid::from_u128(0x2e6b_926a_a213_4175_a597_df64_aee4_a497);
    /// Event horizon producer: no consent for this consumer, stream and partition.
    pub const MISSING_CONSENT: Uuid = Uuid::from_u128(0xbe1b_a4e6_81e3_49c4_bec2_6c7e_262b_fb77);
    /// Event horizon producer: the producer tenant is not configured.
    pub const PRODUCER_TENANT_MISSING: Uuid =
        Uuid::from_u128(0x733d_0c4f_fc25_4b60_acdf_cac5_ee66_1f23);
    /// EventStoreUnavailable: the store cannot take requests now (a poisoned log).
    pub const UNAVAILABLE: Uuid = Uuid::from_u128(0xb6fc_b5dd_a32b_435b_8bf4_ed96_e846_d460);
    /// EventStorePersistenceError: the store failed to write.
    pub const PERSISTENCE: Uuid = Uuid::from_u128(0xad55_fca7_476a_4f68_9411_1a3b_087a_b843);
}

/// Reads a file of the working directory, for assertions on what the server wrote.
pub fn read(dir: &Path, name: &str) -> String {
    std::fs::read_to_string(dir.join(name)).unwrap_or_default()
}
