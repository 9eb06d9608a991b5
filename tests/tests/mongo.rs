//! `annals export` and `annals import` against the real binary.
//!
//! Export: a tenant with plain, public and aggregate events, an event handler with a failing
//! partition, a partitioned filter and a public filter is exported, and the dump is decoded
//! by pymongo's `bson` (tests/mongo/decode_dump.py, an implementation independent of ours)
//! and compared with documents written out by hand from the original's schema (dolittle.md
//! section 3; Runtime v9.9.0's MongoDB models): field names, order and BSON types.
//!
//! Import: that dump imported into another runtime's data directory and exported again gives
//! the same documents, and the runtime goes on from it (sequence numbers, aggregate versions,
//! a handler's position); a dump written by pymongo from the schema of a runtime before 9.0
//! (tests/mongo/write_legacy_dump.py) is imported and served; damaged dumps are refused,
//! naming collection, document and field, with nothing imported.
//!
//! The Python with pymongo comes from ANNALS_PYTHON (`.ci/run` makes a venv with it); a test
//! without it fails rather than pass untested.
#![allow(clippy::unwrap_used, reason = "tests")]

use std::path::Path;
use std::time::Duration;

use annals_tests::head::{Answer, EventHandler, Filter, Head, Kind, QUIET};
use annals_tests::mongo::{
    array, boolean, collections, date, dec, decode, doc, documents, export, field, guid, guid_text,
    import, import_with, int32, int64, python, run_annals, string, without_object_ids,
};
use annals_tests::proto::dolittle;
use annals_tests::{commit_request, send_commit, uuid, Server, DEVELOPMENT};
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
    let response = for_aggregate(
        &channel,
        "cart-1",
        0,
        &[(TYPE_A, "{}"), (TYPE_A, r#"{"k":-0}"#)],
    )
    .await;
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

/// A CommitForAggregate of `events` to ROOT's `event_source` at `expected`.
async fn for_aggregate(
    channel: &tonic::transport::Channel,
    event_source: &str,
    expected: u64,
    events: &[(Uuid, &str)],
) -> dolittle::runtime::events::CommitAggregateEventsResponse {
    let mut client = EventStoreClient::new(channel.clone());
    annals_tests::for_aggregate(&mut client, ROOT, event_source, expected, events).await
}

/// The failure id of a wrong expected aggregate version.
const CONFLICT: Uuid = annals_tests::failures::CONFLICT;

#[tokio::test]
async fn an_imported_dump_is_the_tenant_it_came_from() {
    let mut source = Server::start().await;
    populate(&mut source).await;
    let first = source.dir.join("first");
    let (ok, _, stderr) = export(&source.dir.join("data"), DEVELOPMENT, &first, &[]);
    assert!(ok, "{stderr}");

    // Into another runtime's directory, where the development tenant exists but is empty.
    let mut target = Server::start().await;
    assert!(target.stop().await);
    let data = target.dir.join("data");
    let (ok, stdout, stderr) = import(&data, DEVELOPMENT, &first.join("event_store"));
    assert!(ok, "{stderr}");
    assert!(stdout.contains("default scope: 5"), "{stdout}");
    assert!(stdout.contains("stream processors: 3"), "{stdout}");

    // Exported again: the same documents (ObjectIds and the export's own time aside).
    let second = target.dir.join("second");
    let (ok, _, stderr) = export(&data, DEVELOPMENT, &second, &[]);
    assert!(ok, "{stderr}");
    let (before, after) = (
        decode(&first.join("event_store")),
        decode(&second.join("event_store")),
    );
    assert_eq!(collections(&before), collections(&after));
    for name in before.as_object().unwrap().keys() {
        if name == "metadata" {
            continue;
        }
        assert_eq!(
            without_object_ids(&before[name]),
            without_object_ids(&after[name]),
            "collection {name}"
        );
    }

    // The runtime goes on where the original tenant was.
    target.relaunch().await;
    let channel = target.private().await;
    let committed = send_commit(
        &channel,
        commit_request(DEVELOPMENT, &[(TYPE_A, "es-9", "{}")]),
    )
    .await;
    assert_eq!(committed[0].event_log_sequence_number, 5);
    let stale = for_aggregate(&channel, "cart-1", 0, &[(TYPE_A, "{}")]).await;
    assert_eq!(
        annals_tests::failure_id(stale.failure.as_ref()),
        Some(CONFLICT)
    );
    let next = for_aggregate(&channel, "cart-1", 2, &[(TYPE_A, "{}")]).await;
    assert!(next.failure.is_none(), "{:?}", next.failure);
    // The handler resumes where it was: its parked partition first (a head that registers
    // again is retried at once), with the attempts it had; then the new events, nothing
    // it had processed.
    let handler = EventHandler::new(HANDLER, &[TYPE_A]).partitioned(1);
    let mut head = Head::connect(channel.clone(), handler.message()).await;
    let r = head.request().await;
    assert_eq!((r.seq(), r.event_source()), (4, "es-1"), "{r:?}");
    assert_eq!(r.retry_count(), 1, "{r:?}");
    assert!(head.succeed(&r).await);
    let r = head.request().await;
    assert_eq!((r.seq(), r.event_source()), (5, "es-9"), "{r:?}");
    assert!(head.succeed(&r).await);
    let r = head.request().await;
    assert_eq!((r.seq(), r.event_source()), (6, "cart-1"), "{r:?}");
}

const LEGACY_HANDLER: Uuid = Uuid::from_u128(0x4a4d_0000_0000_4000_8000_0000_0000_00f1);
const TYPE_C: Uuid = Uuid::from_u128(0x0c0c_0000_0000_4000_8000_0000_0000_00c1);

/// The dump tests/mongo/write_legacy_dump.py writes (see its documentation), in `dir`.
fn legacy_dump(dir: &Path) -> std::path::PathBuf {
    let dump = dir.join("legacy").join("event_store");
    python(
        "write_legacy_dump.py",
        &[dump.as_os_str(), DEVELOPMENT.to_string().as_ref()],
    );
    dump
}

#[tokio::test]
async fn a_dump_of_a_runtime_before_9_is_imported_and_served() {
    let mut server = Server::start().await;
    assert!(server.stop().await);
    let dump = legacy_dump(&server.dir);
    let (ok, stdout, stderr) = import(&server.dir.join("data"), DEVELOPMENT, &dump);
    assert!(ok, "{stderr}");
    assert!(stdout.contains("default scope: 6"), "{stdout}");
    assert!(stdout.contains("translated through stream-"), "{stdout}");
    assert!(stdout.contains("no migration record"), "{stdout}");
    // The filter's stream stops where its state does: the filter writes event 4 again.
    assert!(
        stdout.contains(
            "stream-f1170000-0000-4000-8000-0000000000f2: 1 entr(ies) past its \
                         filter's position left out"
        ),
        "{stdout}"
    );
    assert!(stdout.contains("stream entries: 2"), "{stdout}");
    server.relaunch().await;
    let channel = server.private().await;

    // The aggregate and its versions.
    let next = for_aggregate(&channel, "cart-1", 2, &[(TYPE_C, "{}")]).await;
    assert!(next.failure.is_none(), "{:?}", next.failure);
    assert_eq!(next.events.unwrap().events[0].aggregate_root_version, 2);

    // The handler's position was stream position 1 of its old stream: event 4.
    let handler = EventHandler::new(LEGACY_HANDLER, &[TYPE_A]).partitioned(1);
    let mut head = Head::connect(channel.clone(), handler.message()).await;
    let r = head.request().await;
    assert_eq!((r.seq(), r.event_source()), (4, "es-2"), "{r:?}");
    assert_eq!(
        serde_json::from_str::<Value>(&r.event.content).unwrap(),
        json!({"big": 7, "at": {"$date": 1_700_000_000_005_i64}})
    );
    assert!(head.succeed(&r).await);
    let r = head.request().await;
    assert_eq!((r.seq(), r.event_source()), (5, "es-3"), "{r:?}");

    // A new handler from the start: the Binary event source is its GUID's text, the default
    // Aggregate and EventHorizon sub-documents are gone.
    let fresh = EventHandler::new(Uuid::from_u128(0xf2e5), &[TYPE_A]).partitioned(1);
    let mut head = Head::connect(channel, fresh.message()).await;
    let r = head.request().await;
    assert_eq!(
        (r.seq(), r.event_source()),
        (0, "e5e50000-0000-4000-8000-0000000000e5"),
        "{r:?}"
    );
    assert!(!r.event.external, "{r:?}");
}

/// What an import reports, past its first line (which names the source and the time) and its
/// peak memory.
fn imported_summary(stdout: &str) -> Vec<&str> {
    stdout
        .lines()
        .skip(1)
        .filter(|l| !l.starts_with("peak resident memory"))
        .collect()
}

#[test]
fn an_archive_is_imported_as_its_directory_is() {
    let dir = tempfile::tempdir().unwrap();
    let dump = dir.path().join("event_store");
    let plain = dir.path().join("dump.archive");
    let gzipped = dir.path().join("dump.archive.gz");
    let tenant = DEVELOPMENT.to_string();
    python(
        "write_legacy_dump.py",
        &[dump.as_os_str(), tenant.as_ref(), plain.as_os_str()],
    );
    python(
        "write_legacy_dump.py",
        &[
            dump.as_os_str(),
            tenant.as_ref(),
            gzipped.as_os_str(),
            "--gzip".as_ref(),
        ],
    );
    let (ok, expected, stderr) = import(&dir.path().join("from-dir"), DEVELOPMENT, &dump);
    assert!(ok, "{stderr}");
    for (archive, more) in [
        (&plain, &["--archive"][..]),
        (&gzipped, &["--archive", "--gzip"]),
    ] {
        let data = dir.path().join("data").join(archive.file_name().unwrap());
        let (ok, stdout, stderr) = import_with(&data, DEVELOPMENT, archive, more);
        assert!(ok, "{stderr}");
        assert_eq!(imported_summary(&stdout), imported_summary(&expected));
    }
    let (ok, _, stderr) = import_with(
        &dir.path().join("wrong"),
        DEVELOPMENT,
        &gzipped,
        &["--archive"],
    );
    assert!(!ok);
    assert!(stderr.contains("add --gzip"), "{stderr}");
}

#[tokio::test]
async fn a_damaged_dump_is_refused_and_nothing_imported() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let tenant_dir = data.join("tenants").join(DEVELOPMENT.to_string());
    // (collection, edit arguments, what the refusal says)
    let cases: &[(&str, &[&str], &str)] = &[
        (
            "event-log",
            &["drop", "2"],
            "collection event-log, document 2 (_id 3), field _id: sequence number 3 where 2 \
             follows",
        ),
        (
            "event-log",
            &[
                "set",
                "3",
                "Aggregate.Version",
                r#"{"$numberDecimal": "5"}"#,
            ],
            "collection event-log, document 3 (_id 3), field Aggregate.Version: aggregate \
             70070000-0000-4000-8000-000000000007 instance \"cart-1\": version 5 where 1 follows",
        ),
        (
            "event-log",
            &["set", "1", "Metadata.TypeId", r#""not a guid""#],
            "collection event-log, document 1 (_id 1), field Metadata.TypeId: a GUID (Binary \
             subtype 4) expected, found String",
        ),
        (
            "event-log",
            &["set", "4", "Metadata.Occurred", r#"{"$numberLong": "5"}"#],
            "field Metadata.Occurred: Date expected, found Int64",
        ),
        (
            "aggregates",
            &["set", "0", "Version", r#"{"$numberDecimal": "3"}"#],
            "field Version: 3, but the event log holds 2 event(s) of aggregate",
        ),
        (
            "stream-processor-states",
            &[
                "set",
                "1",
                "EventLogPosition",
                r#"{"$numberDecimal": "99"}"#,
            ],
            "field EventLogPosition: 99 is beyond its event log, which ends at 6",
        ),
        (
            "stream-definitions",
            &["set", "0", "Filter.Type", r#""Mystery""#],
            "field Filter.Type: \"Mystery\" is not a filter annals keeps",
        ),
    ];
    for (index, (collection, edit, refusal)) in cases.iter().enumerate() {
        let dump = legacy_dump(&dir.path().join(index.to_string()));
        let mut args: Vec<&std::ffi::OsStr> = vec![dump.as_os_str(), collection.as_ref()];
        args.extend(edit.iter().map(std::ffi::OsStr::new));
        python("edit_dump.py", &args);
        let (ok, _, stderr) = import(&data, DEVELOPMENT, &dump);
        assert!(!ok, "{collection} {edit:?} was imported");
        assert!(stderr.contains(refusal), "{collection} {edit:?}: {stderr}");
        assert!(stderr.contains("nothing was imported"), "{stderr}");
        assert!(
            !tenant_dir.exists(),
            "{collection} {edit:?} left the tenant"
        );
    }

    // A file cut short inside a document.
    let dump = legacy_dump(&dir.path().join("cut"));
    let file = dump.join("event-log.bson");
    let length = std::fs::metadata(&file).unwrap().len();
    std::fs::OpenOptions::new()
        .write(true)
        .open(&file)
        .unwrap()
        .set_len(length - 10)
        .unwrap();
    let (ok, _, stderr) = import(&data, DEVELOPMENT, &dump);
    assert!(!ok);
    assert!(
        stderr.contains("event-log.bson: document 5 at byte") && stderr.contains("ends inside"),
        "{stderr}"
    );
    assert!(!tenant_dir.exists());

    // The undamaged dump goes in; a second import into the tenant is refused.
    let dump = legacy_dump(&dir.path().join("whole"));
    let (ok, _, stderr) = import(&data, DEVELOPMENT, &dump);
    assert!(ok, "{stderr}");
    let (ok, _, stderr) = import(&data, DEVELOPMENT, &dump);
    assert!(!ok);
    assert!(stderr.contains("already holds events"), "{stderr}");
}

/// `annals export --runtime URL ...` against `server`; returns (success, stdout, stderr).
fn export_running(server: &Server, out: &str) -> (bool, String, String) {
    export_at(
        &format!("http://127.0.0.1:{}", server.ports.web.unwrap()),
        out,
    )
}

/// `annals export --runtime URL --tenant DEVELOPMENT --out OUT`.
fn export_at(url: &str, out: &str) -> (bool, String, String) {
    let tenant = DEVELOPMENT.to_string();
    let args = [
        "export",
        "--runtime",
        url,
        "--tenant",
        &tenant,
        "--out",
        out,
    ];
    run_annals(&args.map(std::ffi::OsStr::new))
}

/// The number in `line` after `prefix` ("  default scope: 12" gives 12).
fn number_after(text: &str, prefix: &str) -> u64 {
    text.lines()
        .find_map(|l| l.trim().strip_prefix(prefix))
        .and_then(|n| n.trim().parse().ok())
        .unwrap_or_else(|| panic!("no {prefix:?} in {text}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_running_runtime_exports_a_consistent_snapshot_while_commits_go_on() {
    let mut server =
        Server::start_with(&[], &["--set", "annals:exportDirectory=exports"], &[]).await;
    let channel = server.private().await;
    // A log long enough for the export to take a while.
    for batch in 0..20 {
        let contents: Vec<String> = (0..500)
            .map(|i| format!(r#"{{"batch":{batch},"i":{i}}}"#))
            .collect();
        let events: Vec<(Uuid, &str, &str)> = contents
            .iter()
            .map(|c| (TYPE_A, "bulk", c.as_str()))
            .collect();
        send_commit(&channel, commit_request(DEVELOPMENT, &events)).await;
    }
    // Commits for ten aggregates go on during the export.
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let going = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let writer = {
        let (channel, stop) = (channel.clone(), std::sync::Arc::clone(&stop));
        let going = std::sync::Arc::clone(&going);
        tokio::spawn(async move {
            let mut versions = [0u64; 10];
            let mut round = 0usize;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let instance = round % 10;
                let response = for_aggregate(
                    &channel,
                    &format!("cart-{instance}"),
                    versions[instance],
                    &[(TYPE_A, "{}"), (TYPE_B, "{}")],
                )
                .await;
                assert!(response.failure.is_none(), "{:?}", response.failure);
                versions[instance] += 2;
                round += 1;
                going.store(round, std::sync::atomic::Ordering::Relaxed);
            }
            round
        })
    };
    // The export starts once the writer is under way.
    let deadline = tokio::time::Instant::now() + annals_tests::head::MUST;
    while going.load(std::sync::atomic::Ordering::Relaxed) < 10 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the writer never got going"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    // The command blocks: on a thread of its own, while the writer goes on.
    let url = format!("http://127.0.0.1:{}", server.ports.web.unwrap());
    let (ok, report, stderr) = tokio::task::spawn_blocking(move || export_at(&url, "snap"))
        .await
        .unwrap();
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let rounds = writer.await.unwrap();
    assert!(ok, "{stderr}");
    assert!(rounds > 0);
    let end = number_after(&report, "default scope:");
    // Commits came before the snapshot and after it: the export ran amid them.
    let after = send_commit(
        &channel,
        commit_request(DEVELOPMENT, &[(TYPE_A, "late", "{}")]),
    )
    .await[0]
        .event_log_sequence_number;
    assert!(
        end > 10_000 && after > end,
        "snapshot at {end}, log end {after}: {report}"
    );

    // A prefix of the log, each aggregate at the version its events in it give.
    let dump_dir = server.dir.join("exports/snap/event_store");
    let dump = decode(&dump_dir);
    let events = documents(&dump, "event-log");
    assert_eq!(events.len() as u64, end);
    let mut counted = std::collections::BTreeMap::<String, u64>::new();
    for (seq, event) in events.iter().enumerate() {
        assert_eq!(field(event, "_id"), &dec(seq as u64));
        let metadata = field(event, "Metadata");
        if let Some(aggregate) = event[1]
            .as_array()
            .unwrap()
            .iter()
            .find(|pair| pair[0] == "Aggregate")
        {
            let version = field(&aggregate[1], "Version");
            let source = field(metadata, "EventSource")[1]
                .as_str()
                .unwrap()
                .to_owned();
            let next = counted.entry(source).or_default();
            assert_eq!(version, &dec(*next));
            *next += 1;
        }
    }
    let aggregates = documents(&dump, "aggregates");
    assert_eq!(aggregates.len(), counted.len());
    for aggregate in aggregates {
        let source = field(aggregate, "EventSource")[1].as_str().unwrap();
        assert_eq!(
            field(aggregate, "Version"),
            &dec(counted[source]),
            "{source}"
        );
    }
    // And the snapshot imports cleanly (the import checks the same and more).
    let (ok, _, stderr) = import(&server.dir.join("imported"), DEVELOPMENT, &dump_dir);
    assert!(ok, "{stderr}");

    // Refusals: a path for a name, an export already there, no export directory.
    let (ok, _, stderr) = export_running(&server, "../elsewhere");
    assert!(!ok);
    assert!(stderr.contains("must be a plain name"), "{stderr}");
    let (ok, _, stderr) = export_running(&server, "snap");
    assert!(!ok);
    assert!(stderr.contains("exists already"), "{stderr}");
    assert!(server.stop().await);
    let mut plain = Server::start().await;
    let (ok, _, stderr) = export_running(&plain, "snap");
    assert!(!ok);
    assert!(stderr.contains("set annals:exportDirectory"), "{stderr}");
    assert!(plain.stop().await);
}
