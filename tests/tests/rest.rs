//! The original's REST twin of the event store on the web port (`/api/events/...`), with its
//! JSON shapes, beside the gRPC event store on the same tenant, and the OpenAPI document at
//! the original's Swagger address.
#![allow(clippy::unwrap_used, reason = "tests")]

use annals_tests::{commit, Server, DEVELOPMENT};
use serde_json::{json, Value};
use uuid::Uuid;

const TYPE: &str = "1844473f-d714-4327-8b7f-5b3c2bdfc26a";
const ROOT: &str = "0b7e5f2a-3c4d-4e5f-8a9b-1c2d3e4f5a6b";

fn call_context(tenant: Uuid) -> Value {
    json!({
        "executionContext": {
            "microservice": "00000000-0000-0000-0000-000000000000",
            "tenant": tenant,
            "version": { "major": 1, "minor": 2, "patch": 3, "build": 0, "preReleaseString": "" },
            "environment": "Development",
            "correlationId": "3f2c9a1e-7b5d-4c1a-9e2f-0a1b2c3d4e5f",
            "claims": [{ "name": "role", "value": "admin", "valueType": "string" }],
        },
        "headId": "8a7b6c5d-1e2f-4a3b-9c8d-7e6f5a4b3c2d",
    })
}

async fn post(server: &Server, path: &str, body: &Value) -> (u16, Value) {
    let (status, text) = Server::http_post(
        server.ports.web,
        path,
        Some("application/json"),
        &body.to_string(),
    )
    .await;
    let value = serde_json::from_str(&text).unwrap_or_else(|_| json!({ "raw": text }));
    (status, value)
}

#[tokio::test]
async fn commits_and_aggregates_in_the_originals_json() {
    let server = Server::start().await;
    let (status, answer) = post(
        &server,
        "/api/events/commit",
        &json!({
            "callContext": call_context(DEVELOPMENT),
            "events": [
                { "eventSource": "customer-42", "type": { "id": TYPE, "generation": 1 },
                  "public": false, "content": "{\"name\":\"Jane\"}" },
                { "eventSource": "customer-43", "type": { "id": TYPE, "generation": 1 },
                  "public": true, "content": "{\"name\":\"Joe\"}" },
            ],
        }),
    )
    .await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["failure"], Value::Null, "{answer}");
    let first = &answer["events"][0];
    assert_eq!(first["eventLogSequenceNumber"], 0);
    assert_eq!(first["eventSource"], "customer-42");
    assert_eq!(first["type"], json!({ "id": TYPE, "generation": 1 }));
    assert_eq!(first["public"], false);
    assert_eq!(first["content"], "{\"name\":\"Jane\"}");
    assert!(
        first["occurred"].as_str().unwrap().ends_with("+00:00"),
        "{answer}"
    );
    let context = &first["executionContext"];
    assert_eq!(context["tenant"], DEVELOPMENT.to_string());
    assert_eq!(context["environment"], "Development");
    assert_eq!(
        context["version"],
        json!({ "major": 1, "minor": 2, "patch": 3, "build": 0, "preReleaseString": "", "isPreRelease": false })
    );
    assert_eq!(
        context["claims"],
        json!([{ "name": "role", "value": "admin", "valueType": "string" }])
    );
    assert_eq!(answer["events"][1]["eventLogSequenceNumber"], 1);
    assert_eq!(answer["events"][1]["public"], true);

    // The gRPC event store goes on after them: one log.
    let committed = commit(
        &server.private().await,
        DEVELOPMENT,
        &[(Uuid::parse_str(TYPE).unwrap(), "x", "{}")],
    )
    .await;
    assert_eq!(committed[0].event_log_sequence_number, 2);

    // An aggregate: its events, then a concurrency conflict as the failure object with 500.
    let aggregate = |expected: u64| {
        json!({
            "callContext": call_context(DEVELOPMENT),
            "aggregateEvents": {
                "eventSource": "customer-42", "aggregateRoot": ROOT,
                "aggregateRootVersion": expected,
                "events": [
                    { "type": { "id": TYPE, "generation": 1 }, "public": false, "content": "{\"x\":1}" },
                    { "type": { "id": TYPE, "generation": 1 }, "public": false, "content": "{\"x\":2}" },
                ],
            },
        })
    };
    let (status, answer) = post(&server, "/api/events/commitForAggregate", &aggregate(0)).await;
    assert_eq!(status, 200, "{answer}");
    let events = &answer["events"];
    assert_eq!(events["eventSourceId"], "customer-42");
    assert_eq!(events["aggregateRoot"], ROOT);
    // The original's backward-compatible version: the last event's.
    assert_eq!(events["aggregateRootVersion"], 1);
    assert_eq!(events["events"][1]["eventLogSequenceNumber"], 4);
    assert_eq!(events["events"][1]["content"], "{\"x\":2}");
    let (status, answer) = post(&server, "/api/events/commitForAggregate", &aggregate(0)).await;
    assert_eq!(status, 500, "{answer}");
    assert_eq!(
        answer["failure"]["id"], "f25cccfb-3ae1-4969-bee6-906370ffbc2d",
        "{answer}"
    );
    assert_eq!(answer["events"], Value::Null);

    let (status, answer) = post(
        &server,
        "/api/events/fetchForAggregate",
        &json!({ "callContext": call_context(DEVELOPMENT), "aggregateRoot": ROOT, "eventSource": "customer-42" }),
    )
    .await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["events"]["aggregateRootVersion"], 1);
    assert_eq!(answer["events"]["events"].as_array().unwrap().len(), 2);
    assert_eq!(answer["failure"], Value::Null);
}

#[tokio::test]
async fn bad_bodies_and_failures_are_answered_as_the_original() {
    let server = Server::start().await;
    let event =
        json!({ "eventSource": "s", "type": { "id": TYPE, "generation": 1 }, "content": "{}" });
    // A tenant this runtime does not serve: the failure object with 500.
    let (status, answer) = post(
        &server,
        "/api/events/commit",
        &json!({ "callContext": call_context(Uuid::from_u128(7)), "events": [event] }),
    )
    .await;
    assert_eq!(status, 500, "{answer}");
    assert!(
        answer["failure"]["reason"]
            .as_str()
            .unwrap()
            .contains("00000000-0000-0000-0000-000000000007"),
        "{answer}"
    );
    assert_eq!(answer["events"], json!([]));
    // A required text left empty: 400 naming it.
    let mut context = call_context(DEVELOPMENT);
    context["executionContext"]["environment"] = json!(" ");
    let (status, answer) = post(
        &server,
        "/api/events/commit",
        &json!({ "callContext": context, "events": [event] }),
    )
    .await;
    assert_eq!(status, 400, "{answer}");
    assert_eq!(
        answer["errors"]["CallContext.ExecutionContext.Environment"],
        json!(["The Environment field is required."])
    );
    // A malformed Guid: 400.
    let mut context = call_context(DEVELOPMENT);
    context["headId"] = json!("not-a-guid");
    let (status, answer) = post(
        &server,
        "/api/events/commit",
        &json!({ "callContext": context, "events": [event] }),
    )
    .await;
    assert_eq!(status, 400, "{answer}");
    assert_eq!(answer["title"], "One or more validation errors occurred.");
    // No JSON content type: 415.
    let (status, _) = Server::http_post(server.ports.web, "/api/events/commit", None, "{}").await;
    assert_eq!(status, 415);
    // Nothing was committed.
    let committed = commit(
        &server.private().await,
        DEVELOPMENT,
        &[(Uuid::parse_str(TYPE).unwrap(), "x", "{}")],
    )
    .await;
    assert_eq!(committed[0].event_log_sequence_number, 0);
}

#[tokio::test]
async fn the_openapi_document_is_where_the_original_serves_its_swagger() {
    let server = Server::start().await;
    let (status, text) = Server::http_get(server.ports.web, "/swagger/v1/swagger.json").await;
    assert_eq!(status, 200);
    let document: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(document["openapi"], "3.0.1");
    for path in [
        "/api/events/commit",
        "/api/events/commitForAggregate",
        "/api/events/fetchForAggregate",
    ] {
        let operation = &document["paths"][path]["post"];
        let reference = operation["requestBody"]["content"]["application/json"]["schema"]["$ref"]
            .as_str()
            .unwrap();
        let name = reference.trim_start_matches("#/components/schemas/");
        assert!(
            document["components"]["schemas"][name].is_object(),
            "{path}: {reference}"
        );
    }
    // Every reference resolves.
    for reference in text.split("\"$ref\":\"").skip(1) {
        let name = reference
            .split('"')
            .next()
            .unwrap()
            .trim_start_matches("#/components/schemas/");
        assert!(
            document["components"]["schemas"][name].is_object(),
            "{name}"
        );
    }
}
