//! The platform and management services over gRPC against the real binary: Handshake (its
//! compatibility rule and failures), Tenants, registrations persisted across a restart, the
//! management services, Resources' failure, health and reflection on every gRPC port,
//! UNIMPLEMENTED for what is not served yet, and the web and metrics endpoints.
#![allow(clippy::unwrap_used, reason = "tests")]

use annals_tests::proto::dolittle;
use annals_tests::{
    aggregate_request, artifact, call_context, commit_request, failure_id, failures, id, uuid,
    Server, DEVELOPMENT,
};
use dolittle::runtime::aggregates::aggregate_roots_client::AggregateRootsClient;
use dolittle::runtime::aggregates::management::aggregate_roots_client::AggregateRootsClient as ManagementAggregateRootsClient;
use dolittle::runtime::client::management::client_client::ClientClient;
use dolittle::runtime::configuration::management::configuration_client::ConfigurationClient;
use dolittle::runtime::events::event_store_client::EventStoreClient;
use dolittle::runtime::events::event_types_client::EventTypesClient;
use dolittle::runtime::events::management::event_types_client::EventTypesClient as ManagementEventTypesClient;
use dolittle::runtime::handshake::handshake_client::HandshakeClient;
use dolittle::runtime::handshake::HandshakeRequest;
use dolittle::runtime::resources::resources_client::ResourcesClient;
use dolittle::runtime::tenancy::tenants_client::TenantsClient;
use dolittle::versioning::Version;
use uuid::Uuid;

fn version(major: i32, minor: i32, patch: i32) -> Version {
    Version {
        major,
        minor,
        patch,
        build: 0,
        pre_release_string: String::new(),
    }
}

fn handshake(contracts: Version) -> HandshakeRequest {
    HandshakeRequest {
        sdk_identifier: "JavaScript".into(),
        head_version: Some(version(1, 0, 0)),
        sdk_version: Some(version(24, 0, 0)),
        contracts_version: Some(contracts),
        attempt: 1,
        time_spent: Some(prost_types::Duration {
            seconds: 0,
            nanos: 5_000_000,
        }),
        build_results: Some(dolittle::runtime::client::BuildResults {
            event_types: vec![dolittle::runtime::client::ArtifactBuildResult {
                aritfact: Some(artifact(Uuid::from_u128(7))),
                alias: "OrderPlaced".into(),
                build_result: Some(dolittle::runtime::client::BuildResult {
                    message: "ok".into(),
                    r#type: 0,
                }),
            }],
            ..Default::default()
        }),
    }
}

#[tokio::test]
async fn handshake_reports_the_platform_and_checks_contracts() {
    let microservice = "6a3b2c1d-0000-4000-8000-000000000001";
    let server = Server::start_with(
        &[],
        &[
            "--microservice-id",
            microservice,
            "--environment",
            "Production",
        ],
        &[],
    )
    .await;
    let mut client = HandshakeClient::new(server.private().await);
    let r = client
        .handshake(handshake(version(7, 8, 0)))
        .await
        .unwrap()
        .into_inner();
    assert!(r.failure.is_none(), "{:?}", r.failure);
    assert_eq!(r.contracts_version.unwrap(), version(7, 8, 1));
    assert_eq!(
        uuid(r.microservice_id.as_ref().unwrap()).to_string(),
        microservice
    );
    assert_eq!(r.environment_name, "Production");
    assert!(r.runtime_version.is_some());

    for (contracts, expected) in [
        (version(7, 9, 0), failures::RUNTIME_MUST_UPDATE),
        (version(8, 0, 0), failures::RUNTIME_MUST_UPDATE),
        (version(6, 9, 9), failures::SDK_MUST_UPDATE),
    ] {
        let r = client
            .handshake(handshake(contracts.clone()))
            .await
            .unwrap()
            .into_inner();
        assert_eq!(
            failure_id(r.failure.as_ref()),
            Some(expected),
            "{contracts:?}"
        );
    }
    let mut missing = handshake(version(7, 8, 1));
    missing.time_spent = None;
    let r = client.handshake(missing).await.unwrap().into_inner();
    assert_eq!(
        failure_id(r.failure.as_ref()),
        Some(failures::HANDSHAKE_MISSING)
    );
    assert!(r.failure.unwrap().reason.ends_with("TimeSpent"));

    // The management Client service reports what the last complete handshake sent.
    let mut management = ClientClient::new(server.management().await);
    let results = management
        .get_build_results(dolittle::runtime::client::management::GetBuildResultsRequest {})
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        results.build_results.unwrap().event_types[0].alias,
        "OrderPlaced"
    );
}

/// A head's text with a line break and escape sequences (here its SDK identifier) is logged
/// escaped: it cannot start a log line of its own, and no control character reaches the log
/// raw.
#[tokio::test]
async fn client_text_cannot_forge_log_lines() {
    let mut server = Server::start().await;
    let forged = "2026-12-02T00:00:00.000000Z ERROR annals: the data is gone";
    let mut request = handshake(version(7, 8, 1));
    request.sdk_identifier = format!("JavaScript\n{forged}\r\x1b[2J\x1b[31mred\x07");
    let r = HandshakeClient::new(server.private().await)
        .handshake(request)
        .await
        .unwrap()
        .into_inner();
    assert!(r.failure.is_none(), "{:?}", r.failure);
    assert!(server.stop().await);
    let log = server.log();
    let connected = log
        .lines()
        .find(|l| l.contains("head connected"))
        .unwrap_or_else(|| panic!("no 'head connected' line in:\n{log}"));
    assert!(
        connected.contains(&format!("JavaScript\\n{forged}\\r")),
        "{connected}"
    );
    assert!(
        !log.lines().any(|l| l.starts_with(forged)),
        "a forged line:\n{log}"
    );
    let raw: Vec<char> = log
        .chars()
        .filter(|c| c.is_control() && *c != '\n' && *c != '\t')
        .collect();
    assert!(raw.is_empty(), "control characters {raw:?} in:\n{log}");
}

#[tokio::test]
async fn tenants_come_from_the_configuration() {
    let a = "11111111-1111-4111-8111-111111111111";
    let b = "22222222-2222-4222-8222-222222222222";
    let yaml = format!("tenants:\n  {a}: {{}}\n  {b}:\n    resources: {{}}\n");
    let server = Server::start_with(&[(".dolittle/runtime.yml", &yaml)], &[], &[]).await;
    let mut client = TenantsClient::new(server.private().await);
    let r = client
        .get_all(dolittle::runtime::tenancy::GetAllRequest {
            call_context: Some(call_context(DEVELOPMENT)),
        })
        .await
        .unwrap()
        .into_inner();
    let ids: Vec<String> = r
        .tenants
        .iter()
        .map(|t| uuid(t.id.as_ref().unwrap()).to_string())
        .collect();
    assert_eq!(ids, [a, b]);
    // The Development tenant is only the default of a configuration without tenants.
    let mut store = EventStoreClient::new(server.private().await);
    let r = store
        .commit(commit_request(
            DEVELOPMENT,
            &[(Uuid::from_u128(1), "es", "{}")],
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(failure_id(r.failure.as_ref()), Some(failures::OTHER));
}

/// Every rpc that carries a call context checks it, also those that do not act for its
/// tenant (Tenants.GetAll, the registrations): missing, or with a head id that is no GUID,
/// it is refused in band with a reason naming the field, and nothing is registered.
#[tokio::test]
async fn every_call_context_is_checked() {
    let server = Server::start().await;
    let bad_head = || {
        let mut context = call_context(DEVELOPMENT);
        context.head_id = Some(dolittle::protobuf::Uuid {
            value: vec![1, 2, 3],
        });
        context
    };
    for (context, reason) in [
        (None, "callContext is missing".to_owned()),
        (
            Some(bad_head()),
            "callContext.headId is not a GUID: 3 bytes where 16 were expected".to_owned(),
        ),
    ] {
        let tenants = TenantsClient::new(server.private().await)
            .get_all(dolittle::runtime::tenancy::GetAllRequest {
                call_context: context.clone(),
            })
            .await
            .unwrap()
            .into_inner();
        let types = EventTypesClient::new(server.private().await)
            .register(dolittle::runtime::events::EventTypeRegistrationRequest {
                call_context: context.clone(),
                event_type: Some(artifact(Uuid::from_u128(0x0e))),
                alias: Some("Refused".into()),
            })
            .await
            .unwrap()
            .into_inner();
        let roots = AggregateRootsClient::new(server.private().await)
            .register_alias(
                dolittle::runtime::aggregates::AggregateRootAliasRegistrationRequest {
                    call_context: context.clone(),
                    aggregate_root: Some(artifact(Uuid::from_u128(0x0f))),
                    alias: Some("Refused".into()),
                },
            )
            .await
            .unwrap()
            .into_inner();
        let mut commit = commit_request(DEVELOPMENT, &[(Uuid::from_u128(1), "es", "{}")]);
        commit.call_context = context;
        let commit = EventStoreClient::new(server.private().await)
            .commit(commit)
            .await
            .unwrap()
            .into_inner();
        assert!(tenants.tenants.is_empty());
        for failure in [
            tenants.failure,
            types.failure,
            roots.failure,
            commit.failure,
        ] {
            let failure = failure.expect("refused");
            assert_eq!(failure_id(Some(&failure)), Some(failures::OTHER));
            assert!(failure.reason.contains(&reason), "{failure:?}");
        }
    }
    let aliases = ManagementEventTypesClient::new(server.management().await)
        .get_all(dolittle::runtime::events::management::GetAllRequest {})
        .await
        .unwrap()
        .into_inner();
    assert!(
        !format!("{aliases:?}").contains("Refused"),
        "nothing registered: {aliases:?}"
    );
}

#[tokio::test]
async fn registrations_persist_and_management_lists_them() {
    let mut server = Server::start().await;
    let root = Uuid::from_u128(0x00aa);
    let event_type = Uuid::from_u128(0x00bb);
    let unnamed = Uuid::from_u128(0x00cc);
    let mut types = EventTypesClient::new(server.private().await);
    let r = types
        .register(dolittle::runtime::events::EventTypeRegistrationRequest {
            call_context: Some(call_context(DEVELOPMENT)),
            event_type: Some(artifact(event_type)),
            alias: Some("OrderPlaced".into()),
        })
        .await
        .unwrap()
        .into_inner();
    assert!(r.failure.is_none());
    types
        .register(dolittle::runtime::events::EventTypeRegistrationRequest {
            call_context: Some(call_context(DEVELOPMENT)),
            event_type: Some(artifact(unnamed)),
            alias: None,
        })
        .await
        .unwrap();
    let r = types
        .register(dolittle::runtime::events::EventTypeRegistrationRequest {
            call_context: Some(call_context(DEVELOPMENT)),
            event_type: None,
            alias: None,
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(failure_id(r.failure.as_ref()), Some(failures::OTHER));
    let mut roots = AggregateRootsClient::new(server.private().await);
    let r = roots
        .register_alias(
            dolittle::runtime::aggregates::AggregateRootAliasRegistrationRequest {
                call_context: Some(call_context(DEVELOPMENT)),
                aggregate_root: Some(artifact(root)),
                alias: Some("Order".into()),
            },
        )
        .await
        .unwrap()
        .into_inner();
    assert!(r.failure.is_none());
    let mut store = EventStoreClient::new(server.private().await);
    for es in ["o-1", "o-2"] {
        store
            .commit_for_aggregate(aggregate_request(
                DEVELOPMENT,
                root,
                es,
                0,
                &[(event_type, "{}")],
            ))
            .await
            .unwrap();
    }
    store
        .commit_for_aggregate(aggregate_request(
            DEVELOPMENT,
            root,
            "o-2",
            1,
            &[(event_type, "{}")],
        ))
        .await
        .unwrap();

    server.restart().await;

    let mut management_types = ManagementEventTypesClient::new(server.management().await);
    let listed = management_types
        .get_all(dolittle::runtime::events::management::GetAllRequest {})
        .await
        .unwrap()
        .into_inner();
    let mut aliases: Vec<(Uuid, String)> = listed
        .event_types
        .iter()
        .map(|t| {
            (
                uuid(t.event_type.as_ref().unwrap().id.as_ref().unwrap()),
                t.alias.clone(),
            )
        })
        .collect();
    aliases.sort();
    assert_eq!(
        aliases,
        [
            (event_type, "OrderPlaced".to_owned()),
            (unnamed, "No alias".to_owned())
        ]
    );

    let mut management_roots = ManagementAggregateRootsClient::new(server.management().await);
    let all = management_roots
        .get_all(dolittle::runtime::aggregates::management::GetAllRequest { tenant_id: None })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(all.aggregate_roots.len(), 1);
    let listed = &all.aggregate_roots[0];
    assert_eq!(listed.alias, "Order");
    let instances: Vec<(String, u64)> = listed
        .event_sources
        .iter()
        .map(|e| (e.event_source_id.clone(), e.aggregate_root_version))
        .collect();
    assert_eq!(instances, [("o-1".to_owned(), 1), ("o-2".to_owned(), 2)]);
    assert_eq!(
        uuid(listed.event_sources[0].tenant_id.as_ref().unwrap()),
        DEVELOPMENT
    );

    let one = management_roots
        .get_one(dolittle::runtime::aggregates::management::GetOneRequest {
            aggregate_root_id: Some(id(root)),
            tenant_id: Some(id(DEVELOPMENT)),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(one.aggregate_root.unwrap().event_sources.len(), 2);
    let other_tenant = management_roots
        .get_one(dolittle::runtime::aggregates::management::GetOneRequest {
            aggregate_root_id: Some(id(root)),
            tenant_id: Some(id(Uuid::from_u128(9))),
        })
        .await
        .unwrap()
        .into_inner();
    assert!(other_tenant
        .aggregate_root
        .unwrap()
        .event_sources
        .is_empty());

    let events = management_roots
        .get_events(
            dolittle::runtime::aggregates::management::GetEventsRequest {
                aggregate: Some(dolittle::runtime::events::Aggregate {
                    event_source_id: "o-2".into(),
                    aggregate_root_id: Some(id(root)),
                }),
                tenant_id: Some(id(DEVELOPMENT)),
            },
        )
        .await
        .unwrap()
        .into_inner();
    assert_eq!(events.events.unwrap().events.len(), 2);
    let no_tenant = management_roots
        .get_events(
            dolittle::runtime::aggregates::management::GetEventsRequest {
                aggregate: Some(dolittle::runtime::events::Aggregate {
                    event_source_id: "o-2".into(),
                    aggregate_root_id: Some(id(root)),
                }),
                tenant_id: None,
            },
        )
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        failure_id(no_tenant.failure.as_ref()),
        Some(failures::UNKNOWN)
    );
}

#[tokio::test]
async fn resources_fail_clearly_and_configuration_reads_back() {
    let server = Server::start_with(
        &[],
        &[],
        &[("DOLITTLE__RUNTIME__PLATFORM__MICROSERVICENAME", "orders")],
    )
    .await;
    let mut resources = ResourcesClient::new(server.private().await);
    let r = resources
        .get_mongo_db(dolittle::runtime::resources::GetRequest {
            call_context: Some(call_context(DEVELOPMENT)),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(failure_id(r.failure.as_ref()), Some(failures::UNKNOWN));
    assert!(r.failure.unwrap().reason.contains("MongoDB"));
    assert!(r.connection_string.is_empty());

    let mut configuration = ConfigurationClient::new(server.management().await);
    let yaml = configuration
        .get_configuration_yaml(
            dolittle::runtime::configuration::management::GetConfigurationYamlRequest {},
        )
        .await
        .unwrap()
        .into_inner()
        .value;
    assert!(yaml.contains("MicroserviceName: orders"), "{yaml}");
    assert!(yaml.contains(&DEVELOPMENT.to_string()), "{yaml}");
}

#[tokio::test]
async fn every_grpc_port_has_health_and_reflection_and_the_rest_is_unimplemented() {
    use tonic::codegen::http::uri::PathAndQuery;
    let server = Server::start().await;
    for port in [
        server.ports.private,
        server.ports.public,
        server.ports.management,
    ] {
        let channel = Server::channel(port).await;
        // grpc.health.v1.Health/Check with an empty request (service ""): SERVING = 1.
        let mut grpc = tonic::client::Grpc::new(channel.clone());
        grpc.ready().await.unwrap();
        let response: tonic::Response<RawHealth> = grpc
            .unary(
                tonic::Request::new(RawHealthRequest::default()),
                PathAndQuery::from_static("/grpc.health.v1.Health/Check"),
                tonic_prost::ProstCodec::default(),
            )
            .await
            .unwrap();
        assert_eq!(response.into_inner().status, 1);
    }
    // Reflection on every port lists what that port serves (v1alpha, as grpcurl asks).
    for (port, service) in [
        (server.ports.private, "dolittle.runtime.events.EventStore"),
        (server.ports.public, "grpc.health.v1.Health"),
        (
            server.ports.management,
            "dolittle.runtime.configuration.management.Configuration",
        ),
    ] {
        let listed = list_services(Server::channel(port).await).await;
        assert!(listed.contains(&service.to_owned()), "{listed:?}");
        assert_eq!(
            listed.contains(&"dolittle.runtime.events.EventStore".to_owned()),
            port == server.ports.private,
            "the event store is served on the private port only: {listed:?}"
        );
        assert!(
            listed.contains(&"grpc.health.v1.Health".to_owned()),
            "{listed:?}"
        );
    }

    // An rpc no service has: UNIMPLEMENTED, never a hang or a crash.
    let mut grpc = tonic::client::Grpc::new(Server::channel(server.ports.management).await);
    grpc.ready().await.unwrap();
    let status = grpc
        .unary::<RawHealthRequest, RawHealth, _>(
            tonic::Request::new(RawHealthRequest::default()),
            PathAndQuery::from_static(
                "/dolittle.runtime.events.processing.management.Projections/GetNothing",
            ),
            tonic_prost::ProstCodec::default(),
        )
        .await
        .unwrap_err();
    assert_eq!(status.code(), tonic::Code::Unimplemented);
}

#[derive(Clone, PartialEq, prost::Message)]
struct RawHealthRequest {
    #[prost(string, tag = "1")]
    service: String,
}

#[derive(Clone, PartialEq, prost::Message)]
struct RawHealth {
    #[prost(int32, tag = "1")]
    status: i32,
}

/// grpc.reflection.v1alpha ServerReflectionInfo: list_services, by hand-written messages.
async fn list_services(channel: tonic::transport::Channel) -> Vec<String> {
    #[derive(Clone, PartialEq, prost::Message)]
    struct Request {
        #[prost(string, tag = "1")]
        host: String,
        #[prost(string, optional, tag = "7")]
        list_services: Option<String>,
    }
    #[derive(Clone, PartialEq, prost::Message)]
    struct Service {
        #[prost(string, tag = "1")]
        name: String,
    }
    #[derive(Clone, PartialEq, prost::Message)]
    struct ListServices {
        #[prost(message, repeated, tag = "1")]
        service: Vec<Service>,
    }
    #[derive(Clone, PartialEq, prost::Message)]
    struct Response {
        #[prost(message, optional, tag = "6")]
        list_services_response: Option<ListServices>,
    }
    let mut grpc = tonic::client::Grpc::new(channel);
    grpc.ready().await.unwrap();
    let request = Request {
        host: String::new(),
        list_services: Some(String::new()),
    };
    let mut stream = grpc
        .streaming::<_, Request, Response, _>(
            tonic::Request::new(tokio_stream::iter([request])),
            tonic::codegen::http::uri::PathAndQuery::from_static(
                "/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo",
            ),
            tonic_prost::ProstCodec::default(),
        )
        .await
        .unwrap()
        .into_inner();
    let response = stream.message().await.unwrap().unwrap();
    response
        .list_services_response
        .unwrap()
        .service
        .into_iter()
        .map(|s| s.name)
        .collect()
}

#[tokio::test]
async fn healthz_and_metrics() {
    let server = Server::start().await;
    let (status, body) = Server::http_get(server.ports.web, "/healthz").await;
    assert_eq!(status, 200, "{body}");
    let report: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(report["Status"], "Healthy");
    assert_eq!(
        report["Entries"]["EventStoreHealthCheck"]["Data"][DEVELOPMENT.to_string()],
        "Healthy"
    );

    let mut store = EventStoreClient::new(server.private().await);
    store
        .commit(commit_request(
            DEVELOPMENT,
            &[
                (Uuid::from_u128(1), "es", "{}"),
                (Uuid::from_u128(1), "es", "{}"),
            ],
        ))
        .await
        .unwrap();
    store
        .commit(commit_request(
            DEVELOPMENT,
            &[(Uuid::from_u128(1), "es", "nope")],
        ))
        .await
        .unwrap();
    let (status, text) = Server::http_get(server.ports.metrics, "/metrics").await;
    assert_eq!(status, 200);
    let tenant = DEVELOPMENT.to_string();
    assert!(
        text.contains(&format!(
            "annals_committed_events_total{{tenant=\"{tenant}\"}} 2"
        )),
        "{text}"
    );
    assert!(
        text.contains("annals_requests_total{rpc=\"Commit\""),
        "{text}"
    );
    assert!(text.contains("outcome=\"failure\""), "{text}");
    assert!(
        text.contains("annals_request_duration_seconds_bucket"),
        "{text}"
    );
}

/// The original's series (`dolittle_*`, names, labels and label values as Runtime 9's
/// prometheus-net exposes them) beside annals' own, and the whole exposition in the classic
/// format checked by Prometheus' own `promtool check metrics`; OpenMetrics when asked for.
#[tokio::test]
async fn the_originals_metric_names_pass_promtool() {
    let server = Server::start().await;
    let (placed, unnamed, root) = (
        Uuid::from_u128(0x0a01),
        Uuid::from_u128(0x0a02),
        Uuid::from_u128(0x0a03),
    );
    annals_tests::register_event_type(&server, placed, "OrderPlaced").await;
    annals_tests::register_aggregate_root(&server, root, "Order").await;
    let mut store = EventStoreClient::new(server.private().await);
    let r = store
        .commit(commit_request(
            DEVELOPMENT,
            &[
                (placed, "a", "{}"),
                (unnamed, "a", "{}"),
                (placed, "b", "{}"),
            ],
        ))
        .await
        .unwrap()
        .into_inner();
    assert!(r.failure.is_none());
    let events = [(placed, "{}"), (placed, "{}")];
    let r = store
        .commit_for_aggregate(aggregate_request(DEVELOPMENT, root, "o-1", 0, &events))
        .await
        .unwrap()
        .into_inner();
    assert!(r.failure.is_none());
    let r = store
        .commit_for_aggregate(aggregate_request(DEVELOPMENT, root, "o-1", 0, &events))
        .await
        .unwrap()
        .into_inner();
    assert!(r.failure.is_some());

    let (status, text) = Server::http_get(server.ports.metrics, "/metrics").await;
    assert_eq!(status, 200);
    let tenant = DEVELOPMENT.to_string();
    let (placed, unnamed, root) = (placed.to_string(), unnamed.to_string(), root.to_string());
    let value = |name: &str, labels: &[(&str, &str)]| annals_tests::metric(&text, name, labels);
    let committed = "dolittle_customer_runtime_events_store_committed_events_total";
    let by_type = |id: &str, alias: &str| {
        value(
            committed,
            &[
                ("tenantId", &tenant),
                ("eventTypeId", id),
                ("eventTypeAlias", alias),
            ],
        )
    };
    assert_eq!(by_type(&placed, "OrderPlaced"), Some(4.0), "{text}");
    assert_eq!(by_type(&unnamed, ""), Some(1.0), "{text}");
    assert_eq!(
        value(
            "dolittle_customer_runtime_events_store_committed_aggregate_events_total",
            &[
                ("tenantId", &tenant),
                ("eventTypeId", &placed),
                ("eventTypeAlias", "OrderPlaced"),
                ("aggregateRootId", &root),
                ("aggregateRootAlias", "Order"),
            ],
        ),
        Some(2.0),
        "{text}"
    );
    assert_eq!(
        value(
            "dolittle_customer_runtime_events_store_aggregate_concurrency_conflicts_total",
            &[
                ("tenantId", &tenant),
                ("aggregateRootId", &root),
                ("aggregateRootAlias", "Order")
            ],
        ),
        Some(1.0)
    );
    for (name, want) in [
        (
            "dolittle_system_runtime_events_store_commits_received_total",
            1.0,
        ),
        (
            "dolittle_system_runtime_events_store_commits_for_aggregate_received_total",
            2.0,
        ),
        (
            "dolittle_system_runtime_events_store_batched_events_successfully_persisted_total",
            5.0,
        ),
        (
            "dolittle_shared_runtime_event_horizon_consumer_connected_subscriptions_current",
            0.0,
        ),
    ] {
        assert_eq!(value(name, &[]), Some(want), "{name}\n{text}");
    }
    assert!(value(
        "dolittle_system_runtime_events_store_batches_successfully_persisted_total",
        &[]
    )
    .is_some_and(|n| (1.0..=2.0).contains(&n)));
    let nil = Uuid::nil().to_string();
    assert_eq!(
        value(
            "dolittle_system_runtime_events_store_offset",
            &[("tenantId", &tenant), ("scopeId", &nil)],
        ),
        Some(4.0)
    );
    // The original's help texts, word for word, on the classic format's family names.
    assert!(text.contains(&format!(
        "# HELP {committed} EventStore total number of committed events by type\n# TYPE {committed} counter\n"
    )), "{text}");
    assert!(!text.contains("# EOF"));

    // Prometheus' own check of the exposition: its parser and its lint rules. The one rule
    // the original's series break is its style rule for label names (Runtime 9 names them
    // in camelCase, and dashboards query them so); nothing else may be reported, and
    // annals' own series pass with nothing to say.
    let (ok, said) = promtool(&text);
    let camel = only_camel_case_labels(&said);
    assert!(
        camel,
        "promtool check metrics said more than the original's camelCase labels:\n{said}\n{text}"
    );
    assert!(ok || !said.is_empty());
    let own: String = text
        .lines()
        .filter(|l| {
            !l.starts_with("dolittle_")
                && !l.starts_with("# HELP dolittle_")
                && !l.starts_with("# TYPE dolittle_")
        })
        .flat_map(|l| [l, "\n"])
        .collect();
    assert!(own.contains("annals_committed_events_total"), "{own}");
    let (ok, said) = promtool(&own);
    assert!(
        ok && said.is_empty(),
        "promtool check metrics: {said}\n{own}"
    );

    // A scraper that asks for OpenMetrics gets it.
    let (_, headers, body) = http1_exchange(
        server.ports.metrics.unwrap(),
        b"GET /metrics HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\
          Accept: application/openmetrics-text;version=1.0.0,text/plain;q=0.5\r\n\r\n"
            .to_vec(),
    )
    .await;
    let body = String::from_utf8(body).unwrap();
    assert!(header(&headers, "content-type")
        .unwrap()
        .starts_with("application/openmetrics-text"));
    assert!(body.ends_with("# EOF\n"), "{body}");
    assert!(body.contains(&format!(
        "# TYPE {} counter",
        committed.trim_end_matches("_total")
    )));
}

/// `promtool check metrics` on `text`: whether it exited 0, and what it said.
fn promtool(text: &str) -> (bool, String) {
    let temp = tempfile::tempdir().unwrap();
    let path = temp.path().join("metrics.txt");
    std::fs::write(&path, text).unwrap();
    let checked = std::process::Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(std::fs::File::open(&path).unwrap())
        .output()
        .unwrap_or_else(|e| {
            panic!("running promtool: {e} (Debian's prometheus package; .ci/run installs it)")
        });
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&checked.stdout),
        String::from_utf8_lossy(&checked.stderr)
    );
    (checked.status.success(), said)
}

/// Whether every line promtool said is its camelCase rule for the label names of one of
/// the original's families.
fn only_camel_case_labels(said: &str) -> bool {
    said.lines().filter(|l| !l.trim().is_empty()).all(|line| {
        line.strip_suffix(" label names should be written in 'snake_case' not 'camelCase'")
            .is_some_and(|family| family.starts_with("dolittle_") && !family.contains(' '))
    })
}

/// One HTTP/1.1 exchange on a new connection: (status, lower-case headers, body de-chunked).
async fn http1_exchange(port: u16, request: Vec<u8>) -> (u16, Vec<(String, String)>, Vec<u8>) {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let mut stream = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .unwrap();
    stream.write_all(&request).await.unwrap();
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw).await.unwrap();
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("an HTTP answer");
    let head = String::from_utf8(raw[..split].to_vec()).unwrap();
    let mut body = raw[split + 4..].to_vec();
    let mut lines = head.split("\r\n");
    let status_line = lines.next().unwrap();
    assert!(status_line.starts_with("HTTP/1.1 "), "{status_line}");
    let status = status_line.split(' ').nth(1).unwrap().parse().unwrap();
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    if headers
        .iter()
        .any(|(k, v)| k == "transfer-encoding" && v.contains("chunked"))
    {
        let mut out = Vec::new();
        let mut rest = &body[..];
        loop {
            let end = rest.windows(2).position(|w| w == b"\r\n").unwrap();
            let size_text = std::str::from_utf8(&rest[..end]).unwrap();
            let size =
                usize::from_str_radix(size_text.split(';').next().unwrap().trim(), 16).unwrap();
            rest = &rest[end + 2..];
            if size == 0 {
                break;
            }
            out.extend_from_slice(&rest[..size]);
            rest = &rest[size + 2..];
        }
        body = out;
    }
    (status, headers, body)
}

fn header<'a>(headers: &'a [(String, String)], name: &str) -> Option<&'a str> {
    headers
        .iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
}

/// A gRPC-Web call over HTTP/1.1 (binary or base64 text): the message and the trailers.
#[allow(clippy::big_endian_bytes, reason = "gRPC frame lengths are big-endian")]
async fn grpc_web_call<M: prost::Message, R: prost::Message + Default>(
    port: u16,
    path: &str,
    message: &M,
    text: bool,
    extra_headers: &str,
) -> (u16, Vec<(String, String)>, Option<R>, String) {
    let encoded = message.encode_to_vec();
    let mut frame = vec![0u8];
    frame.extend_from_slice(&u32::try_from(encoded.len()).unwrap().to_be_bytes());
    frame.extend_from_slice(&encoded);
    // A text client asks for a text answer (as grpc-web's browser client does).
    let (content_type, body) = if text {
        (
            "application/grpc-web-text\r\nAccept: application/grpc-web-text",
            base64_encode(&frame).into_bytes(),
        )
    } else {
        ("application/grpc-web+proto", frame)
    };
    let mut request = format!(
        "POST {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\
         Content-Type: {content_type}\r\nX-Grpc-Web: 1\r\n{extra_headers}\
         Content-Length: {}\r\n\r\n",
        body.len()
    )
    .into_bytes();
    request.extend_from_slice(&body);
    let (status, headers, mut body) = http1_exchange(port, request).await;
    if text {
        body = base64_decode(std::str::from_utf8(&body).unwrap());
    }
    // Frames: 0x00 = a message, 0x80 = the trailers (as HTTP/1 header lines).
    let mut reply = None;
    let mut trailers = String::new();
    let mut rest = &body[..];
    while rest.len() >= 5 {
        let flag = rest[0];
        let len = u32::from_be_bytes(rest[1..5].try_into().unwrap()) as usize;
        let payload = &rest[5..5 + len];
        if flag & 0x80 == 0 {
            reply = Some(R::decode(payload).unwrap());
        } else {
            trailers.push_str(std::str::from_utf8(payload).unwrap());
        }
        rest = &rest[5 + len..];
    }
    (status, headers, reply, trailers)
}

fn base64_encode(bytes: &[u8]) -> String {
    const TABLE: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for chunk in bytes.chunks(3) {
        let n = chunk
            .iter()
            .enumerate()
            .fold(0u32, |n, (i, b)| n | u32::from(*b) << (16 - 8 * i));
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(TABLE[(n >> (18 - 6 * i) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

fn base64_decode(text: &str) -> Vec<u8> {
    const TABLE: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = Vec::new();
    let (mut n, mut bits) = (0u32, 0);
    for c in text.bytes() {
        if c == b'=' {
            // Padding ends a group; a text body may hold several (one per frame).
            n = 0;
            bits = 0;
            continue;
        }
        let Some(v) = TABLE.iter().position(|t| *t == c) else {
            continue;
        };
        n = n << 6 | v as u32;
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((n >> bits & 0xff) as u8);
        }
    }
    out
}

#[tokio::test]
async fn management_over_grpc_web_on_http1_as_the_original() {
    use dolittle::runtime::events::management::{GetAllRequest, GetAllResponse};
    use dolittle::runtime::events::processing::management::{GetOneRequest, GetOneResponse};
    let studio = "https://studio.example:8443";
    let server = Server::start_with(
        &[],
        &[
            "--set",
            &format!("endpoints:managementweb:allowedOrigins={studio}, http://localhost:3000"),
        ],
        &[],
    )
    .await;
    let web = server.ports.management_web.unwrap();
    EventTypesClient::new(server.private().await)
        .register(dolittle::runtime::events::EventTypeRegistrationRequest {
            call_context: Some(call_context(DEVELOPMENT)),
            event_type: Some(artifact(Uuid::from_u128(0x0b0b))),
            alias: Some("OrderShipped".into()),
        })
        .await
        .unwrap();
    let over_grpc = ManagementEventTypesClient::new(server.management().await)
        .get_all(GetAllRequest {})
        .await
        .unwrap()
        .into_inner();
    assert!(format!("{over_grpc:?}").contains("OrderShipped"));

    // The same rpc over gRPC-Web, binary and base64 text: the same answer, status 0 in the
    // trailers frame.
    for text in [false, true] {
        let (status, headers, reply, trailers) = grpc_web_call::<_, GetAllResponse>(
            web,
            "/dolittle.runtime.events.management.EventTypes/GetAll",
            &GetAllRequest {},
            text,
            "",
        )
        .await;
        assert_eq!(status, 200);
        let content_type = header(&headers, "content-type").unwrap();
        assert!(
            content_type.starts_with(if text {
                "application/grpc-web-text"
            } else {
                "application/grpc-web"
            }),
            "{content_type}"
        );
        assert_eq!(reply.as_ref(), Some(&over_grpc), "text: {text}");
        assert!(trailers.contains("grpc-status:0"), "{trailers:?}");
    }

    // A failure the service answers in band: an unknown event handler.
    let (status, _, reply, trailers) = grpc_web_call::<_, GetOneResponse>(
        web,
        "/dolittle.runtime.events.processing.management.EventHandlers/GetOne",
        &GetOneRequest {
            scope_id: Some(id(Uuid::nil())),
            event_handler_id: Some(id(Uuid::from_u128(0xdead))),
            tenant_id: None,
        },
        false,
        "",
    )
    .await;
    assert_eq!(status, 200);
    assert!(trailers.contains("grpc-status:0"), "{trailers:?}");
    assert!(reply.unwrap().failure.is_some());

    // Health on the same port, as the original's gRPC-Web host serves it.
    let (_, _, reply, trailers) = grpc_web_call::<_, RawHealth>(
        web,
        "/grpc.health.v1.Health/Check",
        &RawHealthRequest {
            service: String::new(),
        },
        false,
        "",
    )
    .await;
    assert_eq!(reply.map(|r| r.status), Some(1), "{trailers:?}");

    // CORS: a configured origin's preflight is answered for gRPC-Web's headers, and its call
    // may read the status; any other origin is not let in.
    let preflight = |origin: &str| {
        format!(
            "OPTIONS /dolittle.runtime.events.management.EventTypes/GetAll HTTP/1.1\r\n\
             Host: localhost\r\nConnection: close\r\nOrigin: {origin}\r\n\
             Access-Control-Request-Method: POST\r\n\
             Access-Control-Request-Headers: content-type,x-grpc-web,x-user-agent\r\n\r\n"
        )
        .into_bytes()
    };
    let (status, headers, _) = http1_exchange(web, preflight(studio)).await;
    assert!(status < 300, "{status} {headers:?}");
    assert_eq!(
        header(&headers, "access-control-allow-origin"),
        Some(studio)
    );
    let allowed = header(&headers, "access-control-allow-headers").unwrap_or_default();
    assert!(allowed.contains("x-grpc-web"), "{allowed}");
    let (_, headers, _) = http1_exchange(web, preflight("https://evil.example")).await;
    assert_eq!(header(&headers, "access-control-allow-origin"), None);
    let (_, headers, reply, _) = grpc_web_call::<_, GetAllResponse>(
        web,
        "/dolittle.runtime.events.management.EventTypes/GetAll",
        &GetAllRequest {},
        false,
        "Origin: http://localhost:3000\r\n",
    )
    .await;
    assert_eq!(reply.as_ref(), Some(&over_grpc));
    assert_eq!(
        header(&headers, "access-control-allow-origin"),
        Some("http://localhost:3000")
    );
    assert!(header(&headers, "access-control-expose-headers")
        .unwrap_or_default()
        .contains("grpc-status"));

    // Without configured origins (the default, as the original), no CORS answer at all.
    let plain = Server::start().await;
    let (_, headers, _) =
        http1_exchange(plain.ports.management_web.unwrap(), preflight(studio)).await;
    assert_eq!(header(&headers, "access-control-allow-origin"), None);
}
