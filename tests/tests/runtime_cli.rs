//! `annals runtime ...`, the Dolittle CLI's runtime commands, against a running runtime's
//! management port: what each command prints is checked against what was committed and
//! registered.

#![allow(clippy::unwrap_used, reason = "tests")]

use annals_tests::head::{EventHandler, Head};
use annals_tests::proto::dolittle;
use annals_tests::{binary, commit, for_aggregate, wait_position, Server, DEVELOPMENT};
use dolittle::runtime::events::event_store_client::EventStoreClient;
use serde_json::Value;
use uuid::Uuid;

const TYPE_A: Uuid = Uuid::from_u128(0x00a1);
const ROOT: Uuid = Uuid::from_u128(0x00aa);

/// What `annals ARGS` did: exit code, stdout, stderr.
async fn annals(args: &[&str]) -> (i32, String, String) {
    let output = tokio::process::Command::new(binary())
        .args(args)
        .output()
        .await
        .unwrap();
    (
        output.status.code().unwrap_or(-1),
        String::from_utf8(output.stdout).unwrap(),
        String::from_utf8(output.stderr).unwrap(),
    )
}

/// `annals runtime ARGS --runtime <the server's management port>`, which must succeed.
async fn runtime(server: &Server, args: &[&str]) -> String {
    let (code, out, err) = runtime_result(server, args).await;
    assert_eq!(code, 0, "annals runtime {args:?}: {err}");
    out
}

async fn runtime_result(server: &Server, args: &[&str]) -> (i32, String, String) {
    let address = format!("127.0.0.1:{}", server.ports.management.unwrap());
    let mut all = vec!["runtime"];
    all.extend(args);
    all.extend(["--runtime", &address]);
    annals(&all).await
}

fn json(text: &str) -> Value {
    serde_json::from_str(text).unwrap_or_else(|e| panic!("{e}: {text}"))
}

/// The table's rows (header and rule left out), each a list of trimmed cells.
fn rows(table: &str) -> Vec<Vec<String>> {
    table
        .lines()
        .skip(2)
        .map(|line| {
            line.trim_matches('|')
                .split('|')
                .map(|c| c.trim().to_owned())
                .collect()
        })
        .collect()
}

#[tokio::test]
async fn event_handlers_are_listed_got_and_replayed_by_id_or_alias() {
    let server = Server::start().await;
    let events: Vec<(Uuid, &str, &str)> = (0..3).map(|_| (TYPE_A, "es", "{}")).collect();
    commit(&server.private().await, DEVELOPMENT, &events).await;
    let handler_id = Uuid::new_v4();
    let mut handler = EventHandler::new(handler_id, &[TYPE_A]).partitioned(4);
    handler.alias = Some("shipping".into());
    let mut head = Head::connect(server.private().await, handler.message()).await;
    for _ in 0..3 {
        let r = head.request().await;
        assert!(head.succeed(&r).await);
    }
    wait_position(&server, handler_id, DEVELOPMENT, 3).await;

    let list = json(&runtime(&server, &["eventhandlers", "list", "--output", "json"]).await);
    let found = list
        .as_array()
        .unwrap()
        .iter()
        .find(|h| h["Id"]["EventHandler"] == handler_id.to_string())
        .unwrap_or_else(|| panic!("{list}"));
    assert_eq!(found["Alias"], "shipping");
    assert_eq!(found["HasAlias"], true);
    assert_eq!(found["IsInDefaultScope"], true);
    assert_eq!(found["Partitioned"], true);
    assert_eq!(found["EventTypes"][0]["Id"], TYPE_A.to_string());
    let state = &found["States"][0];
    assert_eq!(state["TenantId"], DEVELOPMENT.to_string());
    assert_eq!(state["Position"], 3);
    assert_eq!(state["FailingPartitions"], Value::Array(Vec::new()));

    let table = runtime(&server, &["eventhandlers", "ls"]).await;
    assert!(table.starts_with("| EventHandler "), "{table}");
    assert!(
        rows(&table).contains(&vec![
            "shipping".to_owned(),
            "Default".to_owned(),
            "\u{2705}".to_owned(),
            "\u{2705}".to_owned()
        ]),
        "{table}"
    );

    let one = json(&runtime(&server, &["eventhandlers", "get", "shipping", "-o", "json"]).await);
    assert_eq!(one["Id"]["EventHandler"], handler_id.to_string());
    let by_id = runtime(
        &server,
        &[
            "eventhandlers",
            "get",
            &format!("{handler_id}:{}", Uuid::nil()),
        ],
    )
    .await;
    assert_eq!(
        rows(&by_id),
        vec![vec![
            DEVELOPMENT.to_string(),
            "3".to_owned(),
            "\u{2705}".to_owned()
        ]],
        "{by_id}"
    );

    // Replayed from position 1: the head is asked about the events from there again.
    let replayed = runtime(
        &server,
        &["eventhandlers", "replay", "from", "shipping", "1"],
    )
    .await;
    assert!(replayed.is_empty(), "{replayed}");
    for seq in 1..3 {
        let r = head.request().await;
        assert_eq!(r.seq(), seq);
        assert!(head.succeed(&r).await);
    }
    // Stream positions start over at a reprocess: two events handled since.
    wait_position(&server, handler_id, DEVELOPMENT, 2).await;
    let replayed = runtime(&server, &["eventhandlers", "replay", "all", "shipping"]).await;
    assert!(replayed.is_empty(), "{replayed}");
    assert_eq!(head.request().await.seq(), 0);

    let (code, _, err) = runtime_result(&server, &["eventhandlers", "get", "billing"]).await;
    assert_eq!(code, 1);
    assert_eq!(
        err.trim(),
        "There is no registered Event Handler with Alias 'billing'"
    );
    let unknown = Uuid::new_v4();
    let (code, _, err) =
        runtime_result(&server, &["eventhandlers", "get", &unknown.to_string()]).await;
    assert_eq!(code, 1);
    assert!(
        err.starts_with(&format!(
            "Could not get event handler {unknown} in scope {} because",
            Uuid::nil()
        )),
        "{err}"
    );
}

#[tokio::test]
async fn aggregates_event_types_and_the_configuration_are_shown() {
    let server = Server::start().await;
    annals_tests::register_event_type(&server, TYPE_A, "OrderPlaced").await;
    annals_tests::register_aggregate_root(&server, ROOT, "Order").await;
    let mut store = EventStoreClient::new(server.private().await);
    let committed = for_aggregate(
        &mut store,
        ROOT,
        "order-1",
        0,
        &[(TYPE_A, r#"{"n":1}"#), (TYPE_A, r#"{"n":2}"#)],
    )
    .await;
    assert!(committed.failure.is_none());

    let roots = json(&runtime(&server, &["aggregates", "list", "-o", "json"]).await);
    let order = roots
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["AggregateRoot"]["Alias"] == "Order")
        .unwrap_or_else(|| panic!("{roots}"));
    assert_eq!(order["AggregateRoot"]["Identifier"]["Id"], ROOT.to_string());
    let instance = &order["Aggregates"][0];
    assert_eq!(instance["Tenant"], DEVELOPMENT.to_string());
    assert_eq!(instance["Instance"]["EventSource"], "order-1");
    assert_eq!(instance["Instance"]["Version"], 2);

    let table = runtime(&server, &["aggregates", "list"]).await;
    assert!(
        rows(&table).contains(&vec!["Order".to_owned(), "1".to_owned()]),
        "{table}"
    );
    let wide = runtime(&server, &["aggregates", "get", "Order", "--wide"]).await;
    assert_eq!(
        rows(&wide),
        vec![vec![
            DEVELOPMENT.to_string(),
            "order-1".to_owned(),
            "2".to_owned()
        ]],
        "{wide}"
    );

    // Each event at the version the aggregate was at when it was applied (from 0).
    let events = runtime(&server, &["aggregates", "events", "Order", "order-1"]).await;
    assert_eq!(
        rows(&events),
        vec![
            vec!["0".to_owned(), "0".to_owned(), "OrderPlaced".to_owned()],
            vec!["1".to_owned(), "1".to_owned(), "OrderPlaced".to_owned()],
        ],
        "{events}"
    );
    let events = json(
        &runtime(
            &server,
            &[
                "aggregates",
                "events",
                &ROOT.to_string(),
                "order-1",
                "-o",
                "json",
            ],
        )
        .await,
    );
    let events = events.as_array().unwrap();
    assert_eq!(events.len(), 2);
    assert_eq!(events[1]["Content"], r#"{"n":2}"#);
    assert_eq!(events[1]["EventSource"], "order-1");
    assert_eq!(
        events[1]["ExecutionContext"]["Tenant"],
        DEVELOPMENT.to_string()
    );
    assert_eq!(events[1]["Type"]["Id"], TYPE_A.to_string());

    let types = runtime(&server, &["eventtypes", "list", "--wide"]).await;
    assert!(
        rows(&types).contains(&vec!["OrderPlaced".to_owned(), TYPE_A.to_string()]),
        "{types}"
    );
    let config = runtime(&server, &["config"]).await;
    assert!(!config.trim().is_empty());
}

#[tokio::test]
async fn an_unreachable_runtime_and_a_bad_address_are_said_plainly() {
    let port = annals_tests::free_port();
    let address = format!("127.0.0.1:{port}");
    let (code, out, err) = annals(&["runtime", "eventtypes", "list", "--runtime", &address]).await;
    assert_eq!(code, 1, "{out}");
    assert!(
        err.starts_with(&format!(
            "Could not connect to the management endpoint of a Runtime at {address}"
        )),
        "{err}"
    );
    let (code, _, err) = annals(&["runtime", "eventtypes", "list", "--runtime", "host:port"]).await;
    assert_eq!(code, 1);
    assert_eq!(
        err.trim(),
        "The provided address 'host:port' is not a valid <host:port> combination."
    );
}
