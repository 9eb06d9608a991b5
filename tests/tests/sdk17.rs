//! The real JavaScript SDK 17.0.1 (`@dolittle/sdk` from npm, Contracts 5.4) against the real
//! `annals` binary, on its legacy port: heads written by Dolittle, not by us.
//! - our `proto-v5/` files are the wire the SDK's own generated code writes, field for field;
//! - commits (single and batch), an aggregate root committed and reloaded, a partitioned
//!   event handler and a private filter receiving the events in order, a projection's state
//!   read through the SDK's projection store, and a 7.8.1 client on the same tenant seeing
//!   the SDK's events and the SDK seeing the 7.8.1 client's;
//! - a restart of the runtime under a connected head: the SDK registers again by itself and
//!   nothing acknowledged is delivered twice;
//! - a public filter and an event-horizon subscription between two runtimes, each with an
//!   SDK head.
//!
//! The head is `tests/sdk17/head.js`, steered through `annals_tests::sdk17::SdkHead`. Waits
//! end on what the head prints, with a 60 s deadline.
#![allow(clippy::unwrap_used, reason = "tests")]

use std::collections::BTreeMap;

use annals_server::proto_v5;
use annals_tests::proto::dolittle;
use annals_tests::sdk17::{sdk_dir, SdkHead};
use annals_tests::{commit, id, Server};
use prost::Message as _;
use prost_types::field_descriptor_proto::{Label, Type};
use serde_json::{json, Value};
use uuid::Uuid;

const TENANT: Uuid = Uuid::from_u128(0x7e5a_0000_0000_4000_8000_0000_0000_0017);

/// One field as the SDK's generated code writes it: number, jspb writer, message type.
type JsField = (u64, String, Option<String>);

/// The jspb writer the SDK's generated code uses for a field of ours.
fn writer(field: &prost_types::FieldDescriptorProto) -> String {
    let base = match field.r#type() {
        Type::String => "String",
        Type::Bytes => "Bytes",
        Type::Bool => "Bool",
        Type::Uint64 => "Uint64",
        Type::Uint32 => "Uint32",
        Type::Int64 => "Int64",
        Type::Int32 => "Int32",
        Type::Sint64 => "Sint64",
        Type::Sint32 => "Sint32",
        Type::Double => "Double",
        Type::Float => "Float",
        Type::Enum => "Enum",
        Type::Message => "Message",
        other => panic!("a field of type {other:?} in proto-v5"),
    };
    let repeated = field.label() == Label::Repeated;
    let packed = matches!(
        field.r#type(),
        Type::Bool
            | Type::Uint64
            | Type::Uint32
            | Type::Int64
            | Type::Int32
            | Type::Sint64
            | Type::Sint32
            | Type::Double
            | Type::Float
            | Type::Enum
    );
    match (repeated, packed) {
        (false, _) => format!("write{base}"),
        (true, true) => format!("writePacked{base}"),
        (true, false) => format!("writeRepeated{base}"),
    }
}

fn ours() -> BTreeMap<String, Vec<JsField>> {
    fn add(
        scope: &str,
        message: &prost_types::DescriptorProto,
        out: &mut BTreeMap<String, Vec<JsField>>,
    ) {
        let name = format!("{scope}.{}", message.name());
        let mut fields: Vec<JsField> = message
            .field
            .iter()
            .map(|f| {
                let kind = (f.r#type() == Type::Message)
                    .then(|| f.type_name().trim_start_matches('.').to_owned());
                (u64::try_from(f.number()).unwrap(), writer(f), kind)
            })
            .collect();
        fields.sort();
        for nested in &message.nested_type {
            add(&name, nested, out);
        }
        out.insert(name, fields);
    }
    let set = prost_types::FileDescriptorSet::decode(proto_v5::FILE_DESCRIPTOR_SET).unwrap();
    let mut out = BTreeMap::new();
    for file in &set.file {
        if file.package().starts_with("google.") {
            continue;
        }
        for message in &file.message_type {
            add(file.package(), message, &mut out);
        }
    }
    out
}

#[test]
fn our_5_4_protos_are_the_wire_the_sdks_generated_code_writes() {
    let output = std::process::Command::new("node")
        .arg(sdk_dir().join("contract-fields.js"))
        .output()
        .expect("running node");
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let js: BTreeMap<String, Vec<Value>> = serde_json::from_slice(&output.stdout).unwrap();
    let js: BTreeMap<String, Vec<JsField>> = js
        .into_iter()
        .filter(|(name, _)| !name.starts_with("google."))
        .map(|(name, fields)| {
            let mut fields: Vec<JsField> = fields
                .iter()
                .map(|f| {
                    (
                        f["number"].as_u64().unwrap(),
                        f["writer"].as_str().unwrap().to_owned(),
                        f["type"].as_str().map(str::to_owned),
                    )
                })
                .collect();
            fields.sort();
            (name, fields)
        })
        .collect();
    let ours = ours();
    assert!(
        js.len() > 90,
        "the SDK's contracts list {} messages",
        js.len()
    );
    let missing: Vec<&String> = js.keys().filter(|k| !ours.contains_key(*k)).collect();
    let extra: Vec<&String> = ours.keys().filter(|k| !js.contains_key(*k)).collect();
    assert!(
        missing.is_empty(),
        "messages of the SDK we lack: {missing:?}"
    );
    assert!(
        extra.is_empty(),
        "messages we have that the SDK lacks: {extra:?}"
    );
    for (name, fields) in &js {
        assert_eq!(&ours[name], fields, "{name}");
    }
}

/// A runtime with TENANT, and an SDK head on its legacy port.
async fn runtime_and_head(env: &[(&str, &str)]) -> (Server, SdkHead) {
    let server = Server::start_with(&[], &["--tenant", &TENANT.to_string()], &[]).await;
    let head = SdkHead::start(server.ports.legacy.unwrap(), TENANT, env).await;
    (server, head)
}

fn numbers(lines: &[Value]) -> Vec<u64> {
    lines
        .iter()
        .map(|l| l["sequenceNumber"].as_u64().unwrap())
        .collect()
}

#[tokio::test]
async fn an_sdk_17_head_commits_handles_filters_projects_and_aggregates() {
    let (server, mut head) = runtime_and_head(&[]).await;
    let a = Uuid::from_u128(0xa);
    let b = Uuid::from_u128(0xb);

    // One event, then a batch of three in one commit.
    let single = head
        .commit(json!([{ "eventSourceId": a, "content": { "n": 0 }, "public": false }]))
        .await;
    assert_eq!(numbers(&single), [0]);
    let batch = head
        .commit(json!([
            { "eventSourceId": b, "content": { "n": 1 }, "public": false },
            { "eventSourceId": a, "content": { "n": 2 }, "public": false },
            { "eventSourceId": b, "content": { "n": 3 }, "public": false },
        ]))
        .await;
    assert_eq!(numbers(&batch), [1, 2, 3]);
    assert_eq!(batch[1]["eventSourceId"], json!(a.to_string()));

    // A 7.8.1 client on the same tenant commits too: one Guid source, one that is no Guid.
    let current = server.private().await;
    let e1 = head.id("E1");
    let committed = commit(
        &current,
        TENANT,
        &[
            (e1, &a.to_string(), "{\"n\":4}"),
            (e1, "order-17", "{\"n\":5}"),
        ],
    )
    .await;
    assert_eq!(committed[0].event_log_sequence_number, 4);

    // The partitioned handler and the private filter see all six in order, with the SDK's
    // Guid for each event source.
    let handled = head.take("handled", 6).await;
    assert_eq!(numbers(&handled), [0, 1, 2, 3, 4, 5]);
    let sources: Vec<&str> = handled
        .iter()
        .map(|h| h["eventSourceId"].as_str().unwrap())
        .collect();
    let named = annals_server::legacy_id("order-17").to_string();
    assert_eq!(
        sources,
        [
            a.to_string(),
            b.to_string(),
            a.to_string(),
            b.to_string(),
            a.to_string(),
            named.clone()
        ]
    );
    assert_eq!(handled[4]["content"], json!({ "n": 4 }));
    // The handler is partitioned by event source: each event's partition is its source.
    assert!(handled
        .iter()
        .all(|h| h["partitionId"] == h["eventSourceId"]));
    let filtered = head.take("filtered", 6).await;
    assert_eq!(numbers(&filtered), [0, 1, 2, 3, 4, 5]);

    // The projection (keyed by event source) read through the SDK's projection store.
    let projected = head.take("projected", 6).await;
    assert_eq!(projected.len(), 6);
    // The runtime stores a projection's states with its position (every 100 ms), so a read
    // right after the head's on() may still see the earlier state: read until it is there.
    let deadline = tokio::time::Instant::now() + annals_tests::sdk17::WAIT;
    let state = loop {
        let state = head.command(json!({ "projection": { "key": a } })).await;
        if state["state"]["count"] == json!(3) || tokio::time::Instant::now() > deadline {
            break state;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    };
    assert_eq!(state["state"]["count"], json!(3), "{state}");
    assert_eq!(state["state"]["last"], json!({ "n": 4 }), "{state}");
    assert_eq!(state["createdFromInitialState"], json!(false), "{state}");
    let unknown = head
        .command(json!({ "projection": { "key": Uuid::from_u128(0xdead) } }))
        .await;
    assert_eq!(unknown["state"]["count"], json!(0), "{unknown}");
    assert_eq!(unknown["createdFromInitialState"], json!(true), "{unknown}");

    // An aggregate root: two performs, then a fresh instance reloads it from its events.
    let score = Uuid::from_u128(0x5c);
    head.command(json!({ "aggregate": { "eventSourceId": score, "add": [1, 2, 3] } }))
        .await;
    head.command(json!({ "aggregate": { "eventSourceId": score, "add": [4] } }))
        .await;
    let reloaded = head
        .command(json!({ "reload": { "eventSourceId": score } }))
        .await;
    assert_eq!(reloaded["total"], json!(10), "{reloaded}");
    assert_eq!(reloaded["count"], json!(4), "{reloaded}");
    assert_eq!(reloaded["version"], json!(4), "{reloaded}");

    // The 7.8.1 side reads the SDK's aggregate: four events, versions 0 to 3.
    let mut client =
        dolittle::runtime::events::event_store_client::EventStoreClient::new(current.clone());
    let fetched = client
        .fetch_for_aggregate(dolittle::runtime::events::FetchForAggregateRequest {
            call_context: Some(annals_tests::call_context(TENANT)),
            aggregate: Some(dolittle::runtime::events::Aggregate {
                aggregate_root_id: Some(id(head.id("Score"))),
                event_source_id: score.to_string(),
            }),
        })
        .await
        .unwrap()
        .into_inner();
    let events = fetched.events.unwrap();
    assert_eq!(events.current_aggregate_root_version, 4);
    let versions: Vec<u64> = events
        .events
        .iter()
        .map(|e| e.aggregate_root_version)
        .collect();
    assert_eq!(versions, [0, 1, 2, 3]);
    head.exit().await;
}

#[tokio::test]
async fn an_sdk_17_head_registers_again_after_a_runtime_restart_and_nothing_acknowledged_repeats() {
    let (mut server, mut head) = runtime_and_head(&[]).await;
    let source = Uuid::from_u128(0x1);
    let events = |from: u64, count: u64| -> Value {
        (from..from + count)
            .map(|n| json!({ "eventSourceId": source, "content": { "n": n }, "public": false }))
            .collect()
    };
    head.commit(events(0, 3)).await;
    assert_eq!(numbers(&head.take("handled", 3).await), [0, 1, 2]);
    assert_eq!(numbers(&head.take("filtered", 3).await), [0, 1, 2]);

    // The same legacy port after the restart, where the head keeps calling.
    let port = server.ports.legacy.unwrap();
    server.args_push(&["--set", &format!("endpoints:legacy:port={port}")]);
    server.restart().await;
    assert_eq!(server.ports.legacy, Some(port));

    // Commits through the head succeed again once its connection is back; the handler and
    // the filter get exactly the new events: none of 0..3 again.
    let deadline = tokio::time::Instant::now() + annals_tests::sdk17::WAIT;
    loop {
        let answer = head.try_command(json!({ "commit": events(3, 2) })).await;
        if answer.get("committed").is_some() {
            assert_eq!(numbers(answer["committed"].as_array().unwrap()), [3, 4]);
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the SDK head cannot commit after the restart: {answer}\n{}",
            head.log()
        );
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
    assert_eq!(numbers(&head.take("handled", 2).await), [3, 4]);
    assert_eq!(numbers(&head.take("filtered", 2).await), [3, 4]);
    // A last event marks the end: everything printed before it is accounted for above.
    head.commit(events(5, 1)).await;
    assert_eq!(numbers(&head.take("handled", 1).await), [5]);
    assert_eq!(numbers(&head.take("filtered", 1).await), [5]);
    assert!(head.drain("handled").is_empty());
    assert!(head.drain("filtered").is_empty());
    head.exit().await;
}

#[tokio::test]
async fn a_public_filter_and_an_event_horizon_subscription_between_two_sdk_17_heads() {
    let producer_ms = Uuid::from_u128(0x9d00_0000_0000_4000_8000_0000_0000_0001);
    let consumer_ms = Uuid::from_u128(0xc500_0000_0000_4000_8000_0000_0000_0001);
    let producer_tenant = Uuid::from_u128(0x9d7e_0000_0000_4000_8000_0000_0000_0001);
    let consumer_tenant = Uuid::from_u128(0xc57e_0000_0000_4000_8000_0000_0000_0001);
    let consent = Uuid::from_u128(0xc0c0_0000_0000_4000_8000_0000_0000_0001);
    let scope = Uuid::from_u128(0x5c0b_0000_0000_4000_8000_0000_0000_0001);
    let source = Uuid::from_u128(0x50);
    let other = Uuid::from_u128(0x51);
    // The stream is the SDK head's public filter.
    let stream = Uuid::parse_str("5d17f2f2-0000-4000-8000-000000000006").unwrap();

    let producer_yaml = format!(
        "platform:\n  microserviceID: {producer_ms}\ntenants:\n  {producer_tenant}:\n    \
         eventHorizons:\n      {consumer_ms}:\n        consents:\n          - consumerTenant: \
         {consumer_tenant}\n            stream: {stream}\n            partition: \"{source}\"\n\
         \x20           consent: {consent}\n"
    );
    let producer = Server::start_with(&[(".dolittle/runtime.yml", &producer_yaml)], &[], &[]).await;
    let mut producing = SdkHead::start(
        producer.ports.legacy.unwrap(),
        producer_tenant,
        &[("ANNALS_PUBLIC_FILTER", "1")],
    )
    .await;
    assert_eq!(producing.id("PF"), stream);

    let consumer_yaml = format!(
        "platform:\n  microserviceID: {consumer_ms}\ntenants:\n  {consumer_tenant}: {{}}\n\
         microservices:\n  {producer_ms}:\n    host: 127.0.0.1\n    port: {}\n",
        producer.ports.public.unwrap()
    );
    let consumer = Server::start_with(&[(".dolittle/runtime.yml", &consumer_yaml)], &[], &[]).await;
    let subscription = json!({
        "microservice": producer_ms,
        "tenant": producer_tenant,
        "stream": stream,
        "partition": source,
        "scope": scope,
    })
    .to_string();
    let mut consuming = SdkHead::start(
        consumer.ports.legacy.unwrap(),
        consumer_tenant,
        &[("ANNALS_SUBSCRIBE", &subscription)],
    )
    .await;

    // Public events of the subscribed partition, one of another partition, one private.
    let committed = producing
        .commit(json!([
            { "eventSourceId": source, "content": { "n": 0 }, "public": true },
            { "eventSourceId": other, "content": { "n": 1 }, "public": true },
            { "eventSourceId": source, "content": { "n": 2 }, "public": false },
            { "eventSourceId": source, "content": { "n": 3 }, "public": true },
        ]))
        .await;
    assert_eq!(numbers(&committed), [0, 1, 2, 3]);
    let public = producing.take("publicFiltered", 3).await;
    assert_eq!(numbers(&public), [0, 1, 3]);

    // The consumer's scoped handler gets the subscribed partition's public events, in order,
    // with the producer's event source.
    let scoped = consuming.take("scoped", 2).await;
    let contents: Vec<&Value> = scoped.iter().map(|s| &s["content"]).collect();
    assert_eq!(contents, [&json!({ "n": 0 }), &json!({ "n": 3 })]);
    assert!(scoped
        .iter()
        .all(|s| s["eventSourceId"] == json!(source.to_string())));
    // More later: the subscription is live, not a one-off catch-up.
    producing
        .commit(json!([{ "eventSourceId": source, "content": { "n": 4 }, "public": true }]))
        .await;
    let scoped = consuming.take("scoped", 1).await;
    assert_eq!(scoped[0]["content"], json!({ "n": 4 }));
    assert!(consuming.drain("scoped").is_empty());
    producing.exit().await;
    consuming.exit().await;
}
