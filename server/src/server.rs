//! Startup: open the engine and the configured tenants, bind every listener, serve until
//! SIGTERM or SIGINT, then stop in order (`shutdown`).
//!
//! Ports (defaults as the original): private 50053 (heads), public 50052 (other runtimes),
//! management 51052 (CLI), management-web 51152 (the same services over gRPC-Web on
//! HTTP/1.1, for browsers), web 8001 (`/healthz`, the console, the REST twin), metrics 9700
//! (`/metrics`); the two HTTP ones are served by `web`; and annals' own legacy port 50055 for
//! heads of Contracts 5.4 (JavaScript SDK 17), served by the same services through `legacy`
//! (`endpoints:private:contract: 5.4` makes the private port speak 5.4 instead). Every gRPC
//! port also serves `grpc.health.v1.Health` and server reflection (v1 and v1alpha), so grpcurl
//! works without the .proto files.
//!
//! Every listener is bound before any serves, and the ready file is written only once all are:
//! a supervisor that reads it can connect to every port it names.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use annals_contract::limits;
use annals_engine::Engine;
use annals_replication::Producer;
use anyhow::Context as _;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tonic::codegen::http;
use tonic::service::Routes;
use tonic::transport::server::{Router, TcpIncoming};
use tonic::transport::{Certificate, Identity as TlsIdentity, Server, ServerTlsConfig};
use tonic::Status;
use tower::layer::util::{Identity, Stack};
use tower::util::MapResponseLayer;

use crate::accept;
use crate::config::{Contract, Endpoint, RuntimeConfig};
use crate::connections::{self, ConnectionLimits};
use crate::legacy;
use crate::proto::annals::projections::projection_history_server::ProjectionHistoryServer;
use crate::proto::dolittle::runtime::aggregates::aggregate_roots_server::AggregateRootsServer;
use crate::proto::dolittle::runtime::aggregates::management::aggregate_roots_server::AggregateRootsServer as ManagementAggregateRootsServer;
use crate::proto::dolittle::runtime::client::management::client_server::ClientServer;
use crate::proto::dolittle::runtime::configuration::management::configuration_server::ConfigurationServer;
use crate::proto::dolittle::runtime::embeddings::embedding_store_server::EmbeddingStoreServer;
use crate::proto::dolittle::runtime::embeddings::embeddings_server::EmbeddingsServer;
use crate::proto::dolittle::runtime::eventhorizon::consumer_server::ConsumerServer;
use crate::proto::dolittle::runtime::eventhorizon::subscriptions_server::SubscriptionsServer;
use crate::proto::dolittle::runtime::events::event_store_server::EventStoreServer;
use crate::proto::dolittle::runtime::events::event_types_server::EventTypesServer;
use crate::proto::dolittle::runtime::events::management::event_types_server::EventTypesServer as ManagementEventTypesServer;
use crate::proto::dolittle::runtime::events::processing::filters_server::FiltersServer;
use crate::proto::dolittle::runtime::events::processing::management::event_handlers_server::EventHandlersServer as ManagementEventHandlersServer;
use crate::proto::dolittle::runtime::events::processing::management::projections_server::ProjectionsServer as ManagementProjectionsServer;
use crate::proto::dolittle::runtime::events::processing::projections_server::ProjectionsServer;
use crate::proto::dolittle::runtime::handshake::handshake_server::HandshakeServer;
use crate::proto::dolittle::runtime::projections::projections_server::ProjectionsServer as ProjectionStoreServer;
use crate::proto::dolittle::runtime::resources::resources_server::ResourcesServer;
use crate::proto::dolittle::runtime::tenancy::tenants_server::TenantsServer;
use crate::runtime::Runtime;
use crate::services::embeddings::EmbeddingsService;
use crate::services::event_handlers::EventHandlersWire;
use crate::services::event_horizon::SubscriptionsService;
use crate::services::event_store::EventStoreService;
use crate::services::event_store_wire::{EventStoreWire, MessageLimits as _};
use crate::services::filters::FiltersService;
use crate::services::management::ManagementServices;
use crate::services::platform::PlatformServices;
use crate::services::processing_management::EventHandlersManagement;
use crate::services::projection_history::ProjectionHistoryService;
use crate::services::projection_store::ProjectionStoreService;
use crate::services::projections::ProjectionsService;
use crate::services::projections_management::ProjectionsManagement;
use crate::{shutdown, web};

/// A gRPC service with the runtime's message limits, the same on every port and service
/// (`annals_contract::limits`: 16 MiB in, with room for the envelope out; the original, on
/// ASP.NET, takes 4 MiB).
macro_rules! limited {
    ($service:expr) => {
        $service
            .max_decoding_message_size(limits::MESSAGE_BYTES_MAX)
            .max_encoding_message_size(limits::SENT_BYTES_MAX)
    };
}

/// HTTP/2 flow-control windows per stream and per connection.
const STREAM_WINDOW_BYTES: u32 = 4 * 1024 * 1024;
const CONNECTION_WINDOW_BYTES: u32 = 16 * 1024 * 1024;

/// Options of `annals serve` that are not configuration keys.
#[derive(Debug, Default, Clone)]
pub struct ServeOptions {
    /// Write the bound ports here (JSON) once every listener is open: for supervisors and
    /// tests that ask for port 0.
    pub ready_file: Option<PathBuf>,
}

/// The bound address of each listener (None when disabled).
#[derive(Debug, Clone, Copy, Default, serde::Serialize)]
pub struct BoundPorts {
    /// Private (heads).
    pub private: Option<u16>,
    /// Public (event horizon).
    pub public: Option<u16>,
    /// Management.
    pub management: Option<u16>,
    /// Management over gRPC-Web.
    pub management_web: Option<u16>,
    /// Web (`/healthz`).
    pub web: Option<u16>,
    /// Metrics.
    pub metrics: Option<u16>,
    /// Heads of Contracts 5.4.
    pub legacy: Option<u16>,
}

async fn bind(
    config: &RuntimeConfig,
    name: &str,
    endpoint: Endpoint,
) -> anyhow::Result<Option<TcpListener>> {
    if !endpoint.enabled {
        return Ok(None);
    }
    let address = SocketAddr::new(config.listen_address, endpoint.port);
    let listener = TcpListener::bind(address).await.with_context(|| {
        format!("binding the {name} endpoint to {address} (dolittle:runtime:endpoints:{name}:port)")
    })?;
    Ok(Some(listener))
}

fn port(listener: Option<&TcpListener>) -> Option<u16> {
    listener.and_then(|l| l.local_addr().ok()).map(|a| a.port())
}

/// Runs the runtime until a shutdown signal.
pub async fn serve(config: RuntimeConfig, options: ServeOptions) -> anyhow::Result<()> {
    tracing::info!(
        data_dir = %config.data_dir.display(),
        tenants = config.tenants.len(),
        microservice = %config.platform.microservice_id,
        environment = %config.platform.environment,
        "starting annals"
    );
    // Every task below ends when `stop` turns true.
    let (stop_tx, stop_rx) = watch::channel(false);
    let engine_config = config.engine.clone();
    let stopping = stop_rx.clone();
    let runtime = tokio::task::spawn_blocking(move || -> anyhow::Result<Runtime> {
        let engine = Engine::open(engine_config).context("opening the data directory")?;
        tracing::info!(io = engine.io_backend(), "engine open");
        Runtime::open(Arc::new(engine), config, stopping).context("opening the configured tenants")
    })
    .await
    .context("opening the store")??;
    let runtime = Arc::new(runtime);
    let config = &runtime.config;

    let private = bind(config, "private", config.endpoints.private).await?;
    let public = bind(config, "public", config.endpoints.public).await?;
    let management = bind(config, "management", config.endpoints.management).await?;
    let management_web = bind(config, "managementweb", config.endpoints.management_web).await?;
    let web = bind(config, "web", config.endpoints.web).await?;
    let metrics = bind(config, "metrics", config.endpoints.metrics).await?;
    let legacy = bind(config, "legacy", config.endpoints.legacy).await?;
    let ports = BoundPorts {
        private: port(private.as_ref()),
        public: port(public.as_ref()),
        management: port(management.as_ref()),
        management_web: port(management_web.as_ref()),
        web: port(web.as_ref()),
        metrics: port(metrics.as_ref()),
        legacy: port(legacy.as_ref()),
    };

    let mut tasks = tokio::task::JoinSet::new();
    let stop_rx_web = stop_rx.clone();
    let platform = PlatformServices::new(Arc::clone(&runtime));
    let management_services = ManagementServices::new(Arc::clone(&runtime));
    if let Some(listener) = private {
        let routes = head_router(&runtime, &platform, config.endpoints.private_contract).await?;
        tasks.spawn(run_heads(
            "private",
            routes,
            listener,
            config.connections,
            stop_rx.clone(),
        ));
    }
    if let Some(listener) = legacy {
        let routes = head_router(&runtime, &platform, Contract::Legacy).await?;
        tasks.spawn(run_heads(
            "legacy",
            routes,
            listener,
            config.connections,
            stop_rx.clone(),
        ));
    }
    if let Some(listener) = public {
        let names = [name::<ConsumerServer<Producer>>()];
        let router = grpc_base(
            &names,
            public_tls(config),
            Contract::Current,
            config.connections,
        )
        .await?
        .add_service(limited!(runtime.horizon.producer.service()));
        tasks.spawn(run_grpc(
            "public",
            router,
            listener,
            config.connections,
            stop_rx.clone(),
        ));
    }
    // The management services, the same on the gRPC port and the gRPC-Web port.
    macro_rules! with_management {
        ($router:expr) => {
            $router
                .add_service(limited!(ManagementAggregateRootsServer::new(
                    management_services.clone()
                )))
                .add_service(limited!(ManagementEventTypesServer::new(
                    management_services.clone()
                )))
                .add_service(limited!(ClientServer::new(management_services.clone())))
                .add_service(limited!(ConfigurationServer::new(
                    management_services.clone()
                )))
                .add_service(limited!(ManagementEventHandlersServer::new(
                    EventHandlersManagement::new(Arc::clone(&runtime))
                )))
                .add_service(limited!(ManagementProjectionsServer::new(
                    ProjectionsManagement::new(Arc::clone(&runtime))
                )))
        };
    }
    let management_names = [
        name::<ManagementAggregateRootsServer<ManagementServices>>(),
        name::<ManagementEventTypesServer<ManagementServices>>(),
        name::<ClientServer<ManagementServices>>(),
        name::<ConfigurationServer<ManagementServices>>(),
        name::<ManagementEventHandlersServer<EventHandlersManagement>>(),
        name::<ManagementProjectionsServer<ProjectionsManagement>>(),
    ];
    if let Some(listener) = management {
        let router = grpc_base(
            &management_names,
            None,
            Contract::Current,
            config.connections,
        )
        .await?;
        tasks.spawn(run_grpc(
            "management",
            with_management!(router),
            listener,
            config.connections,
            stop_rx.clone(),
        ));
    }
    if let Some(listener) = management_web {
        let base = base_routes(&management_names, Contract::Current).await?;
        let router = Server::builder()
            // gRPC-Web is HTTP/1.1 (as the original's Kestrel endpoint); tonic-web
            // translates it to the services' gRPC, and answers CORS per
            // `endpoints:managementweb:allowedOrigins`.
            .accept_http1(true)
            .layer(tower::util::option_layer(management_web_cors(
                &config.management_web_origins,
            )))
            .layer(tonic_web::GrpcWebLayer::new())
            .layer(MapResponseLayer::new(
                clients_fault as fn(http::Response<tonic::body::Body>) -> _,
            ))
            .add_routes(base);
        let router = with_management!(router);
        let limits = config.connections;
        tasks.spawn(async move {
            let incoming = incoming("managementweb", listener, limits);
            router
                .serve_with_incoming_shutdown(incoming, shutdown::stopped(stop_rx_web))
                .await
                .context("serving the managementweb endpoint")
        });
    }
    if let Some(listener) = web {
        let app = web::web(Arc::clone(&runtime));
        tasks.spawn(web::run(
            "web",
            app,
            listener,
            config.connections,
            stop_rx.clone(),
        ));
    }
    if let Some(listener) = metrics {
        let app = web::metrics(Arc::clone(&runtime));
        tasks.spawn(web::run(
            "metrics",
            app,
            listener,
            config.connections,
            stop_rx.clone(),
        ));
    }
    // The routers hold their own handles now.
    drop((platform, management_services));
    tracing::info!(?ports, "listening");
    // Subscriptions a producer accepted before resume now, without waiting for a head.
    match runtime.horizon.consumer.resume() {
        Ok(0) => {}
        Ok(resumed) => tracing::info!(resumed, "event horizon subscriptions resumed"),
        Err(e) => tracing::error!(error = %e, "reading the persisted event horizon subscriptions"),
    }
    // The first reading before anyone can ask /healthz; then one every few seconds.
    crate::disk::refresh(&runtime);
    tokio::spawn(crate::console::plots::run(Arc::clone(&runtime)));
    tokio::spawn(crate::disk::watch(Arc::clone(&runtime)));
    // A tenant that refuses writes after an I/O failure is healed without a restart.
    tokio::spawn(crate::heal::watch(Arc::clone(&runtime)));
    if let Some(retention) = runtime.config.projection_history_retention {
        tokio::spawn(crate::projections::retention::run(
            Arc::clone(&runtime),
            retention,
        ));
    }
    if let Some(path) = &options.ready_file {
        write_ready_file(path, &ports)
            .with_context(|| format!("writing the ready file {}", path.display()))?;
    }

    let first_exit = tokio::select! {
        signal = shutdown::signal() => {
            tracing::info!(signal, "shutting down: finishing in-flight requests");
            None
        }
        ended = tasks.join_next() => ended,
    };
    let _ = stop_tx.send(true);
    let failure = match first_exit {
        Some(Ok(Err(e))) => Some(e),
        Some(Err(e)) => Some(anyhow::anyhow!("a listener task ended abnormally: {e}")),
        _ => None,
    };
    let closed = shutdown::close(tasks, runtime).await;
    match failure {
        Some(e) => Err(e),
        None if closed => Ok(()),
        None => Err(anyhow::anyhow!("the store was not closed cleanly")),
    }
}

/// A port for heads: the platform, the event store, processing, projections and the event
/// horizon's Subscriptions, speaking `contract`. For 5.4 every service is wrapped in
/// `legacy::Legacy`, which rewrites the messages that differ, and embeddings (which 5.4 had
/// and Runtime 9 has not) are refused in band.
async fn head_router(
    runtime: &Arc<Runtime>,
    platform: &PlatformServices,
    contract: Contract,
) -> anyhow::Result<Routes> {
    let routes = match contract {
        Contract::Current => None,
        Contract::Legacy => Some(
            legacy::routes()
                .map_err(|e| anyhow::anyhow!("deriving the Contracts 5.4 rewrites: {e}"))?,
        ),
    };
    let mut names = vec![
        name::<HandshakeServer<PlatformServices>>(),
        name::<TenantsServer<PlatformServices>>(),
        name::<EventTypesServer<PlatformServices>>(),
        name::<AggregateRootsServer<PlatformServices>>(),
        name::<ResourcesServer<PlatformServices>>(),
        name::<EventStoreServer<EventStoreService>>(),
        name::<EventHandlersWire>(),
        name::<FiltersServer<FiltersService>>(),
        name::<SubscriptionsServer<SubscriptionsService>>(),
        name::<ProjectionsServer<ProjectionsService>>(),
        name::<ProjectionStoreServer<ProjectionStoreService>>(),
        name::<ProjectionHistoryServer<ProjectionHistoryService>>(),
    ];
    if routes.is_some() {
        names.push(name::<EmbeddingsServer<EmbeddingsService>>());
        names.push(name::<EmbeddingStoreServer<EmbeddingsService>>());
    }
    // Each service as this contract serves it.
    macro_rules! serve {
        ($router:expr, $service:expr) => {
            match routes {
                Some(routes) => {
                    $router.add_service(legacy::Legacy::new(limited!($service), routes))
                }
                None => $router.add_service(limited!($service)),
            }
        };
    }
    let mut router = base_routes(&names, contract).await?;
    router = serve!(router, HandshakeServer::new(platform.clone()));
    router = serve!(router, TenantsServer::new(platform.clone()));
    router = serve!(router, EventTypesServer::new(platform.clone()));
    router = serve!(router, AggregateRootsServer::new(platform.clone()));
    router = serve!(router, ResourcesServer::new(platform.clone()));
    router = serve!(
        router,
        EventStoreWire::new(EventStoreService::new(Arc::clone(runtime)))
    );
    router = serve!(router, EventHandlersWire::new(Arc::clone(runtime)));
    router = serve!(
        router,
        FiltersServer::new(FiltersService::new(Arc::clone(runtime)))
    );
    router = serve!(
        router,
        SubscriptionsServer::new(SubscriptionsService::new(Arc::clone(runtime)))
    );
    router = serve!(
        router,
        ProjectionsServer::new(ProjectionsService::new(Arc::clone(runtime)))
    );
    router = serve!(
        router,
        ProjectionStoreServer::new(ProjectionStoreService::new(Arc::clone(runtime)))
    );
    router = serve!(
        router,
        ProjectionHistoryServer::new(ProjectionHistoryService::new(Arc::clone(runtime)))
    );
    if routes.is_some() {
        router = serve!(router, EmbeddingsServer::new(EmbeddingsService));
        router = serve!(router, EmbeddingStoreServer::new(EmbeddingsService));
    }
    Ok(router)
}

/// A gRPC router with health and reflection (what every gRPC port serves). Health answers
/// SERVING for the server as a whole ("") and for each of `services` by name; reflection
/// describes `contract`.
async fn grpc_base(
    services: &[&str],
    tls: Option<ServerTlsConfig>,
    contract: Contract,
    limits: ConnectionLimits,
) -> anyhow::Result<GrpcRouter> {
    let base = base_routes(services, contract).await?;
    let mut server = Server::builder().layer(MapResponseLayer::new(
        clients_fault as fn(http::Response<tonic::body::Body>) -> _,
    ));
    if let Some(tls) = tls {
        server = server
            .tls_config(tls)
            .context("configuring TLS on the public port")?;
    }
    Ok(server
        // Room for a whole commit of many events or a 2 MiB fetch batch in flight without
        // waiting for window updates (HTTP/2's default is 64 KiB).
        .initial_stream_window_size(Some(STREAM_WINDOW_BYTES))
        .initial_connection_window_size(Some(CONNECTION_WINDOW_BYTES))
        // A connection's streams, and pings that find a peer that is gone (`connections`).
        .max_concurrent_streams(Some(limits.max_concurrent_streams))
        .http2_keepalive_interval(Some(limits.keep_alive_interval))
        .http2_keepalive_timeout(Some(limits.keep_alive_timeout))
        .add_routes(base))
}

/// What every gRPC port serves: health (SERVING for the server as a whole, "", and for each of
/// `services` by name) and reflection (v1, v1alpha) describing `contract`.
async fn base_routes(services: &[&str], contract: Contract) -> anyhow::Result<Routes> {
    let descriptors = match contract {
        Contract::Current => crate::proto::FILE_DESCRIPTOR_SET,
        Contract::Legacy => annals_contract::proto_v5::FILE_DESCRIPTOR_SET,
    };
    let (reporter, health) = tonic_health::server::health_reporter();
    for name in services {
        reporter
            .set_service_status(*name, tonic_health::ServingStatus::Serving)
            .await;
    }
    // Reflection advertises what this port serves (the descriptors describe every service of
    // the contract, served here or not).
    let reflection = || {
        let mut builder = tonic_reflection::server::Builder::configure()
            .register_encoded_file_descriptor_set(descriptors)
            .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
            .with_service_name("grpc.health.v1.Health");
        for name in services {
            builder = builder.with_service_name(*name);
        }
        builder
    };
    let reflection_v1 = reflection()
        .build_v1()
        .context("building gRPC reflection")?;
    let reflection_v1alpha = reflection()
        .build_v1alpha()
        .context("building gRPC reflection")?;
    Ok(Routes::new(limited!(health))
        .add_service(limited!(reflection_v1))
        .add_service(limited!(reflection_v1alpha)))
}

/// The gRPC-Web port's CORS answers: none without configured origins (a browser then calls
/// it only from a page of its own origin), else preflights and responses that let pages of
/// those origins send gRPC-Web and read its status.
fn management_web_cors(origins: &[String]) -> Option<tower_http::cors::CorsLayer> {
    use tower_http::cors::{AllowOrigin, CorsLayer};
    if origins.is_empty() {
        return None;
    }
    let allow = if origins.iter().any(|o| o == "*") {
        AllowOrigin::any()
    } else {
        AllowOrigin::list(
            origins
                .iter()
                .filter_map(|o| http::HeaderValue::from_str(o).ok()),
        )
    };
    Some(
        CorsLayer::new()
            .allow_origin(allow)
            .allow_methods([http::Method::POST, http::Method::OPTIONS])
            .allow_headers([
                http::header::CONTENT_TYPE,
                http::HeaderName::from_static("x-grpc-web"),
                http::HeaderName::from_static("x-user-agent"),
                http::HeaderName::from_static("grpc-timeout"),
                http::HeaderName::from_static("authorization"),
            ])
            .expose_headers([
                http::HeaderName::from_static("grpc-status"),
                http::HeaderName::from_static("grpc-message"),
                http::HeaderName::from_static("grpc-status-details-bin"),
            ])
            .max_age(std::time::Duration::from_secs(24 * 3600)),
    )
}

/// The gRPC name of a generated server type.
fn name<S: tonic::server::NamedService>() -> &'static str {
    S::NAME
}

async fn run_grpc(
    name: &'static str,
    router: GrpcRouter,
    listener: TcpListener,
    limits: ConnectionLimits,
    stop: watch::Receiver<bool>,
) -> anyhow::Result<()> {
    router
        .serve_with_incoming_shutdown(incoming(name, listener, limits), shutdown::stopped(stop))
        .await
        .with_context(|| format!("serving the {name} endpoint"))
}

/// The connections a gRPC port accepts, within its limits. No Nagle: a commit's answer is one
/// small write that must leave at once (with Nagle and the peer's delayed ACK, each
/// request/response would wait ~40 ms).
fn incoming(
    name: &'static str,
    listener: TcpListener,
    limits: ConnectionLimits,
) -> impl futures_util::Stream<Item = std::io::Result<connections::Guarded>> {
    connections::guarded(
        name,
        TcpIncoming::from(listener).with_nodelay(Some(true)),
        limits,
    )
}

/// The public port's TLS, when configured: this runtime's identity and, when set, the
/// authorities client certificates must chain to (a client without one is refused).
fn public_tls(config: &RuntimeConfig) -> Option<ServerTlsConfig> {
    let tls = config.public_tls.as_ref()?;
    let mut server =
        ServerTlsConfig::new().identity(TlsIdentity::from_pem(&tls.certificate_pem, &tls.key_pem));
    if let Some(authority) = &tls.client_certificate_authority_pem {
        server = server
            .client_ca_root(Certificate::from_pem(authority))
            .client_auth_optional(false);
    }
    Some(server)
}

/// A heads' port (private, legacy): `routes` on our own accept loop (`accept`), whose HTTP/2
/// stream tasks do not wake themselves through the scheduler for every message they send,
/// with the port's limits and tonic's answers to bad requests said as the client's fault.
async fn run_heads(
    name: &'static str,
    routes: Routes,
    listener: TcpListener,
    limits: ConnectionLimits,
    stop: watch::Receiver<bool>,
) -> anyhow::Result<()> {
    let service = tower::ServiceBuilder::new()
        .layer(MapResponseLayer::new(
            clients_fault as fn(http::Response<tonic::body::Body>) -> _,
        ))
        .service(routes.prepare());
    let settings = accept::Settings {
        stream_window: STREAM_WINDOW_BYTES,
        connection_window: CONNECTION_WINDOW_BYTES,
        max_concurrent_streams: limits.max_concurrent_streams,
        keep_alive_interval: limits.keep_alive_interval,
        keep_alive_timeout: limits.keep_alive_timeout,
    };
    let incoming = incoming(name, listener, limits);
    accept::serve(name, service, incoming, settings, shutdown::stopped(stop)).await;
    Ok(())
}

/// A gRPC port's routes, with tonic's answers to bad requests said as the client's fault.
type GrpcRouter = Router<
    Stack<
        MapResponseLayer<
            fn(http::Response<tonic::body::Body>) -> http::Response<tonic::body::Body>,
        >,
        Identity,
    >,
>;

/// tonic answers a unary request it cannot decode (INTERNAL) or one over the size limit
/// (OUT_OF_RANGE) itself, before any service sees it, with a trailers-only response: its
/// status is rewritten as the client's fault (`limits::for_client`). Streams are answered by
/// the reverse calls, which see such errors themselves.
fn clients_fault(
    mut response: http::Response<tonic::body::Body>,
) -> http::Response<tonic::body::Body> {
    let better = Status::from_header_map(response.headers())
        .and_then(|status| limits::for_client(&status, "the request"));
    if let Some(better) = better {
        let headers = response.headers_mut();
        headers.remove("grpc-message");
        headers.remove("grpc-status-details-bin");
        if better.add_header(headers).is_err() {
            tracing::warn!("could not rewrite the status of an undecodable request");
        }
    }
    response
}

fn write_ready_file(path: &std::path::Path, ports: &BoundPorts) -> std::io::Result<()> {
    let text = serde_json::to_string(ports).map_err(std::io::Error::other)?;
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, text)?;
    std::fs::rename(&tmp, path)
}
