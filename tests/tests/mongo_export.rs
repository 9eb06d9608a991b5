//! `annals export` against the real binary: a tenant with plain, public and aggregate events,
//! an event handler with a failing partition, a partitioned filter and a public filter is
//! exported, and the dump is decoded by pymongo's `bson` (tests/mongo/decode_dump.py, an
//! implementation independent of ours) and compared with documents written out by hand from
//! the original's schema (dolittle.md section 3; Runtime v9.9.0's MongoDB models): field
//! names, order and BSON types.
//!
//! The Python with pymongo comes from ANNALS_PYTHON (`.ci/run` makes a venv with it); a test
//! without it fails rather than pass untested.
#![allow(clippy::unwrap_used, reason = "tests")]

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use annals_tests::head::{Answer, EventHandler, Filter, Head, Kind, QUIET};
use annals_tests::proto::dolittle;
use annals_tests::{
    aggregate_request, binary, commit_request, send_commit, uuid, Server, DEVELOPMENT,
};
use dolittle::runtime::events::event_store_client::EventStoreClient;
use serde_json::{json, Value};
use uuid::Uuid;

const TYPE_A: Uuid = Uuid::from_u128(0x0a0a_0000_0000_4000_8000_0000_0000_00a1);
const TYPE_B: Uuid = Uuid::from_u128(0x0b0b_0000_0000_4000_8000_0000_0000_00b1);
const ROOT: Uuid = Uuid::from_u128(0x7007_0000_0000_4000_8000_0000_0000_0007);
const HANDLER: Uuid = Uuid::from_u128(0x4a4d_0000_0000_4000_8000_0000_0000_0001);
const FILTER: Uuid = Uuid::from_u128(0xf117_0000_0000_4000_8000_0000_0000_0002);
const PUBLIC_FILTER: Uuid = Uuid::from_u128(0xb0b1_0000_0000_4000_8000_0000_0000_0003);
const HEAD_MICROSERVICE: &str = "4a5d2bc3-543f-459a-ab0b-e8e924093260";

// The tagged values of decode_dump.py, built by hand.
fn doc(fields: &[(&str, Value)]) -> Value {
    json!([
        "doc",
        fields
            .iter()
            .map(|(k, v)| json!([k, v]))
            .collect::<Vec<_>>()
    ])
}
fn array(items: &[Value]) -> Value {
    json!(["array", items])
}
fn dec(n: u64) -> Value {
    json!(["decimal128", n.to_string()])
}
fn guid(id: Uuid) -> Value {
    json!(["uuid", id.hyphenated().to_string()])
}
fn guid_text(id: &str) -> Value {
    json!(["uuid", id])
}
fn string(s: &str) -> Value {
    json!(["string", s])
}
fn int32(n: i32) -> Value {
    json!(["int32", n])
}
fn int64(n: i64) -> Value {
    json!(["int64", n])
}
fn boolean(b: bool) -> Value {
    json!(["bool", b])
}
fn date(ms: i64) -> Value {
    json!(["date", ms])
}
fn field<'a>(document: &'a Value, name: &str) -> &'a Value {
    document[1]
        .as_array()
        .unwrap()
        .iter()
        .find(|pair| pair[0] == name)
        .map_or_else(|| panic!("no field {name} in {document}"), |pair| &pair[1])
}

/// Every ObjectId replaced by a placeholder: the server would choose them.
fn without_object_ids(value: &Value) -> Value {
    match value {
        Value::Array(items) if items.first() == Some(&json!("objectid")) => {
            json!(["objectid", "*"])
        }
        Value::Array(items) => Value::Array(items.iter().map(without_object_ids).collect()),
        Value::Object(fields) => Value::Object(
            fields
                .iter()
                .map(|(k, v)| (k.clone(), without_object_ids(v)))
                .collect(),
        ),
        other => other.clone(),
    }
}

/// The dump decoded by pymongo (see the module documentation).
fn decode(dir: &Path) -> Value {
    let python = std::env::var("ANNALS_PYTHON").unwrap_or_else(|_| "python3".into());
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("mongo/decode_dump.py");
    let output = Command::new(&python)
        .arg(&script)
        .arg(dir)
        .output()
        .unwrap_or_else(|e| panic!("running {python}: {e} (set ANNALS_PYTHON, see .ci/run)"));
    assert!(
        output.status.success(),
        "{python} {} failed (pymongo missing? .ci/run installs it into a venv and sets \
         ANNALS_PYTHON):\n{}",
        script.display(),
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_slice(&output.stdout).unwrap()
}

fn documents<'a>(dump: &'a Value, collection: &str) -> &'a Vec<Value> {
    dump[collection]["documents"]
        .as_array()
        .unwrap_or_else(|| panic!("no collection {collection} in {}", collections(dump)))
}

fn collections(dump: &Value) -> String {
    let mut names: Vec<&String> = dump.as_object().unwrap().keys().collect();
    names.sort();
    format!("{names:?}")
}

/// Runs `annals export --data-dir DATA --tenant TENANT --out OUT` with `more` arguments;
/// returns (success, stdout, stderr).
fn export(data: &Path, tenant: Uuid, out: &Path, more: &[&str]) -> (bool, String, String) {
    let output = Command::new(binary())
        .arg("export")
        .arg("--data-dir")
        .arg(data)
        .args(["--tenant", &tenant.to_string()])
        .arg("--out")
        .arg(out)
        .args(more)
        .env_remove("RUST_LOG")
        .output()
        .unwrap();
    (
        output.status.success(),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

/// Sets up the tenant through the gRPC services and heads, then stops the server. Returns
/// the committed plain events (for their occurred times and correlation ids).
async fn populate(server: &mut Server) -> Vec<dolittle::runtime::events::CommittedEvent> {
    let channel = server.private().await;
    let mut request = commit_request(
        DEVELOPMENT,
        &[
            (
                TYPE_A,
                "es-0",
                r#"{"name":"Ada","n":1,"big":3000000000,"x":1.5,"list":[1,{"a":null}]}"#,
            ),
            (TYPE_B, "es-1", r#"{"when":{"$date":1700000000123}}"#),
        ],
    );
    request.events[1].public = true;
    let plain = send_commit(&channel, request).await;
    let response = EventStoreClient::new(channel.clone())
        .commit_for_aggregate(aggregate_request(
            DEVELOPMENT,
            ROOT,
            "cart-1",
            0,
            &[(TYPE_A, "{}"), (TYPE_A, r#"{"k":-0}"#)],
        ))
        .await
        .unwrap()
        .into_inner();
    assert!(response.failure.is_none(), "{:?}", response.failure);

    // A partitioned handler of TYPE_A: es-0 and cart-1 succeed, es-1 never reaches it (B).
    // Then TYPE_A on es-1 fails, parking that partition.
    let handler = EventHandler::new(HANDLER, &[TYPE_A]).partitioned(1);
    let mut head = Head::connect(channel.clone(), handler.message()).await;
    for _ in 0..3 {
        let r = head.request().await;
        assert!(head.succeed(&r).await);
    }
    send_commit(
        &channel,
        commit_request(DEVELOPMENT, &[(TYPE_A, "es-1", "{}")]),
    )
    .await;
    let r = head.request().await;
    assert_eq!(r.seq(), 4);
    let failure = Answer::failure("not today", true, Duration::from_secs(3600));
    assert!(head.answer(&r, failure).await);
    head.no_request(QUIET).await;

    // A partitioned filter including the events of es-0, and a public filter.
    let filter = Filter::new(Kind::PartitionedFilter, FILTER);
    let mut filter_head = Head::connect(channel.clone(), filter.message()).await;
    for _ in 0..5 {
        let r = filter_head.request().await;
        let included = r.event_source() == "es-0";
        assert!(filter_head.filter(&r, included, "part").await);
    }
    let public = Filter::new(Kind::PublicFilter, PUBLIC_FILTER);
    let mut public_head = Head::connect(channel.clone(), public.message()).await;
    let r = public_head.request().await;
    assert_eq!(r.seq(), 1);
    assert!(public_head.filter(&r, true, "pub").await);
    filter_head.no_request(QUIET).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    drop((head, filter_head, public_head));
    assert!(server.stop().await, "{}", server.log());
    plain
}

#[tokio::test]
async fn an_exported_tenant_is_the_originals_database() {
    let mut server = Server::start().await;
    let plain = populate(&mut server).await;
    let data = server.dir.join("data");
    let out = server.dir.join("dump");

    let (ok, stdout, stderr) = export(&data, DEVELOPMENT, &out, &[]);
    assert!(ok, "{stderr}");
    assert!(stdout.contains("default scope: 5"), "{stdout}");
    let dump = decode(&out.join("event_store"));
    assert!(
        !out.join(".event_store.partial").exists(),
        "the partial directory is renamed"
    );

    // event-log: the first event whole.
    let events = documents(&dump, "event-log");
    assert_eq!(events.len(), 5);
    let committed = &plain[0];
    let context = committed.execution_context.as_ref().unwrap();
    let occurred = committed.occurred.as_ref().unwrap();
    let occurred_ms = occurred.seconds * 1000 + i64::from(occurred.nanos) / 1_000_000;
    let execution_context = doc(&[
        (
            "Correlation",
            guid(uuid(context.correlation_id.as_ref().unwrap())),
        ),
        ("SpanId", json!(["binary", 0, "0000000000000000"])),
        ("Microservice", guid_text(HEAD_MICROSERVICE)),
        ("Tenant", guid(DEVELOPMENT)),
        (
            "Version",
            doc(&[
                ("Major", int32(1)),
                ("Minor", int32(2)),
                ("Patch", int32(3)),
                ("Build", int32(4)),
                ("PreRelease", string("rc")),
            ]),
        ),
        ("Environment", string("Development")),
        (
            "Claims",
            array(&[doc(&[
                ("Name", string("role")),
                ("Value", string("admin")),
                ("ValueType", string("string")),
            ])]),
        ),
    ]);
    let want = doc(&[
        ("_id", dec(0)),
        ("ExecutionContext", execution_context.clone()),
        (
            "Metadata",
            doc(&[
                ("Occurred", date(occurred_ms)),
                ("EventSource", string("es-0")),
                ("TypeId", guid(TYPE_A)),
                ("TypeGeneration", int64(1)),
                ("Public", boolean(false)),
            ]),
        ),
        (
            "Content",
            doc(&[
                ("name", string("Ada")),
                ("n", int32(1)),
                ("big", int64(3_000_000_000)),
                ("x", json!(["double", 1.5])),
                ("list", array(&[int32(1), doc(&[("a", json!(["null"]))])])),
            ]),
        ),
    ]);
    assert_eq!(events[0], want);
    // Extended JSON in content becomes its BSON type; the public flag is kept.
    assert_eq!(
        field(&events[1], "Content"),
        &doc(&[("when", date(1_700_000_000_123))])
    );
    assert_eq!(
        field(field(&events[1], "Metadata"), "Public"),
        &boolean(true)
    );
    // Aggregate events carry the Aggregate sub-document, after Metadata; others have none.
    let names = |d: &Value| -> Vec<String> {
        d[1].as_array()
            .unwrap()
            .iter()
            .map(|p| p[0].as_str().unwrap().to_owned())
            .collect()
    };
    assert_eq!(
        names(&events[3]),
        [
            "_id",
            "ExecutionContext",
            "Metadata",
            "Aggregate",
            "Content"
        ]
    );
    assert_eq!(
        names(&events[4]),
        ["_id", "ExecutionContext", "Metadata", "Content"]
    );
    assert_eq!(
        field(&events[3], "Aggregate"),
        &doc(&[
            ("WasAppliedByAggregate", boolean(true)),
            ("TypeId", guid(ROOT)),
            ("TypeGeneration", int64(1)),
            ("Version", dec(1)),
        ])
    );
    assert_eq!(field(&events[3], "Content"), &doc(&[("k", int32(0))]));

    // aggregates: the instance and its next version.
    assert_eq!(
        documents(&dump, "aggregates")
            .iter()
            .map(without_object_ids)
            .collect::<Vec<_>>(),
        [doc(&[
            ("_id", json!(["objectid", "*"])),
            ("EventSource", string("cart-1")),
            ("AggregateType", guid(ROOT)),
            ("Version", dec(2)),
        ])]
    );

    // The filter's stream: the one event of es-0, with the partition answered and the event's
    // log number last in Metadata.
    let stream = documents(&dump, &format!("stream-{FILTER}"));
    assert_eq!(stream.len(), 1);
    assert_eq!(
        names(&stream[0]),
        [
            "_id",
            "Partition",
            "ExecutionContext",
            "Metadata",
            "Content"
        ]
    );
    assert_eq!(field(&stream[0], "_id"), &dec(0));
    assert_eq!(field(&stream[0], "Partition"), &string("part"));
    assert_eq!(
        field(&stream[0], "Metadata"),
        &doc(&[
            ("Occurred", date(occurred_ms)),
            ("EventSource", string("es-0")),
            ("TypeId", guid(TYPE_A)),
            ("TypeGeneration", int64(1)),
            ("Public", boolean(false)),
            ("EventLogSequenceNumber", dec(0)),
        ])
    );
    let public_stream = documents(&dump, &format!("public-stream-{PUBLIC_FILTER}"));
    assert_eq!(public_stream.len(), 1);
    assert_eq!(field(&public_stream[0], "Partition"), &string("pub"));
    assert_eq!(
        field(
            field(&public_stream[0], "Metadata"),
            "EventLogSequenceNumber"
        ),
        &dec(1)
    );

    // stream-definitions: the handler's types, the filters' Remote, public ones partitioned.
    let definitions = documents(&dump, "stream-definitions");
    let definition = |id: Uuid| {
        definitions
            .iter()
            .find(|d| field(d, "_id") == &guid(id))
            .unwrap_or_else(|| panic!("no definition of {id}: {definitions:?}"))
    };
    assert_eq!(
        definition(HANDLER),
        &doc(&[
            ("_id", guid(HANDLER)),
            ("Partitioned", boolean(true)),
            ("Public", boolean(false)),
            (
                "Filter",
                doc(&[
                    ("Type", string("EventTypeId")),
                    ("Types", array(&[guid(TYPE_A)])),
                ])
            ),
        ])
    );
    assert_eq!(
        definition(FILTER),
        &doc(&[
            ("_id", guid(FILTER)),
            ("Partitioned", boolean(true)),
            ("Public", boolean(false)),
            ("Filter", doc(&[("Type", string("Remote"))])),
        ])
    );
    assert_eq!(field(definition(PUBLIC_FILTER), "Public"), &boolean(true));

    // stream-processor-states: the handler (id, id), partitioned, es-1 parked at event 4.
    let states = documents(&dump, "stream-processor-states");
    let state = |processor: Uuid| {
        let found = states
            .iter()
            .find(|d| field(d, "EventProcessor") == &guid(processor))
            .unwrap_or_else(|| panic!("no state of {processor}: {states:?}"));
        without_object_ids(found)
    };
    let handler = state(HANDLER);
    assert_eq!(
        names(&handler),
        [
            "_id",
            "Partitioned",
            "EventProcessor",
            "SourceStream",
            "Position",
            "EventLogPosition",
            "LastSuccessfullyProcessed",
            "FailingPartitions"
        ]
    );
    assert_eq!(field(&handler, "Partitioned"), &boolean(true));
    assert_eq!(field(&handler, "SourceStream"), &guid(HANDLER));
    assert_eq!(field(&handler, "Position"), &dec(4));
    assert_eq!(field(&handler, "EventLogPosition"), &dec(5));
    let parked = field(field(&handler, "FailingPartitions"), "es-1");
    assert_eq!(field(parked, "EventLogPosition"), &dec(4));
    assert_eq!(field(parked, "Position"), &dec(3));
    assert_eq!(field(parked, "Reason"), &string("not today"));
    assert_eq!(field(parked, "ProcessingAttempts"), &int32(1));
    // Filters read the event log: unpartitioned states, Position = EventLogPosition.
    let filter = state(FILTER);
    assert_eq!(field(&filter, "Partitioned"), &boolean(false));
    assert_eq!(field(&filter, "SourceStream"), &guid(Uuid::nil()));
    assert_eq!(field(&filter, "Position"), &dec(5));
    assert_eq!(field(&filter, "EventLogPosition"), &dec(5));
    assert_eq!(field(&filter, "IsFailing"), &boolean(false));
    assert_eq!(field(&state(PUBLIC_FILTER), "EventLogPosition"), &dec(5));

    // event-log-metadata: each collection's next offset.
    let offsets: Vec<Value> = documents(&dump, "event-log-metadata").clone();
    for (collection, next) in [
        ("event-log".to_owned(), 5),
        (format!("stream-{FILTER}"), 1),
        (format!("public-stream-{PUBLIC_FILTER}"), 1),
    ] {
        let want = doc(&[("_id", string(&collection)), ("NextEventOffset", dec(next))]);
        assert!(offsets.contains(&want), "{want} not in {offsets:?}");
    }
    let metadata = &documents(&dump, "metadata")[0];
    assert_eq!(field(metadata, "_id"), &string("database"));
    assert_eq!(field(metadata, "CurrentVersion"), &string("V9.0.0"));
    let updated = field(metadata, "UpdatedAt");
    assert_eq!(updated[1][1], int32(0), "offset minutes: {updated}");

    // Indexes as mongorestore reads them.
    assert_eq!(
        dump["event-log"]["metadata"],
        doc(&[
            (
                "indexes",
                array(&[
                    doc(&[
                        ("v", int32(2)),
                        ("key", doc(&[("_id", int32(1))])),
                        ("name", string("_id_")),
                    ]),
                    doc(&[
                        ("v", int32(2)),
                        ("key", doc(&[("Metadata.EventSource", int32(1))])),
                        ("name", string("Metadata.EventSource_1")),
                        ("unique", boolean(false)),
                    ]),
                    doc(&[
                        ("v", int32(2)),
                        (
                            "key",
                            doc(&[
                                ("Aggregate.TypeId", int32(1)),
                                ("Metadata.EventSource", int32(1)),
                                ("Aggregate.Version", int32(1)),
                            ])
                        ),
                        ("name", string("aggregate_version_index")),
                        ("unique", boolean(true)),
                        (
                            "partialFilterExpression",
                            doc(&[("Aggregate.WasAppliedByAggregate", boolean(true))])
                        ),
                    ]),
                ])
            ),
            ("collectionName", string("event-log")),
            ("type", string("collection")),
        ])
    );

    // The same export compressed: the same documents, ObjectIds aside.
    let zipped = server.dir.join("zipped");
    let (ok, _, stderr) = export(
        &data,
        DEVELOPMENT,
        &zipped,
        &["--database", "moved", "--gzip"],
    );
    assert!(ok, "{stderr}");
    assert!(zipped.join("moved/event-log.bson.gz").is_file());
    assert!(zipped.join("moved/event-log.metadata.json.gz").is_file());
    let unzipped = decode(&zipped.join("moved"));
    let mut plain_dump = without_object_ids(&dump);
    let mut zipped_dump = without_object_ids(&unzipped);
    // The metadata document holds the time of each export.
    plain_dump["metadata"] = Value::Null;
    zipped_dump["metadata"] = Value::Null;
    assert!(plain_dump == zipped_dump, "the compressed dump differs");
}

#[tokio::test]
async fn an_export_refuses_what_it_cannot_do_cleanly() {
    let mut server = Server::start().await;
    send_commit(
        &server.private().await,
        commit_request(DEVELOPMENT, &[(TYPE_A, "es", "{}")]),
    )
    .await;
    let data = server.dir.join("data");
    let out = server.dir.join("dump");

    // While the runtime holds the data directory.
    let (ok, _, stderr) = export(&data, DEVELOPMENT, &out, &[]);
    assert!(!ok);
    assert!(stderr.contains("must be stopped"), "{stderr}");
    assert!(!out.join("event_store").exists());
    assert!(server.stop().await);

    let (ok, _, stderr) = export(&data, Uuid::from_u128(9), &out, &[]);
    assert!(!ok);
    assert!(stderr.contains("has no tenant"), "{stderr}");

    let nothing = server.dir.join("nothing-here");
    let (ok, _, stderr) = export(&nothing, DEVELOPMENT, &out, &[]);
    assert!(!ok);
    assert!(stderr.contains("holds no annals data"), "{stderr}");

    let (ok, _, stderr) = export(&data, DEVELOPMENT, &out, &["--database", "a.b"]);
    assert!(!ok);
    assert!(
        stderr.contains("cannot be a MongoDB database name"),
        "{stderr}"
    );

    // What an interrupted run left is started over; a finished export is never overwritten.
    std::fs::create_dir_all(out.join(".event_store.partial")).unwrap();
    std::fs::write(out.join(".event_store.partial/event-log.bson"), b"junk").unwrap();
    let (ok, _, stderr) = export(&data, DEVELOPMENT, &out, &[]);
    assert!(ok, "{stderr}");
    let dump = decode(&out.join("event_store"));
    assert_eq!(documents(&dump, "event-log").len(), 1);
    let (ok, _, stderr) = export(&data, DEVELOPMENT, &out, &[]);
    assert!(!ok);
    assert!(stderr.contains("exists already"), "{stderr}");
}
