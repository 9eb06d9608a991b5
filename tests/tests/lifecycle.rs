//! The server's life over restarts and its tenants apart: commits continue after a restart
//! where they left off, SIGTERM under load loses no acknowledged commit and exits cleanly,
//! and two tenants with the same ids never see each other's events or versions.
#![allow(clippy::unwrap_used, reason = "tests")]

use annals_tests::proto::dolittle::runtime::events::event_store_client::EventStoreClient;
use annals_tests::proto::dolittle::runtime::events::{Aggregate, FetchForAggregateRequest};
use annals_tests::{
    aggregate_request, call_context, commit_request, failure_id, failures, id, Server,
};
use uuid::Uuid;

/// The event store is unavailable (the original's failure id).
const EVENT_STORE_UNAVAILABLE: Uuid = Uuid::from_u128(0xb6fc_b5dd_a32b_435b_8bf4_ed96_e846_d460);

const TYPE: Uuid = Uuid::from_u128(0x77);
const ROOT: Uuid = Uuid::from_u128(0x88);
const TENANT_A: &str = "aaaaaaaa-0000-4000-8000-00000000000a";
const TENANT_B: &str = "bbbbbbbb-0000-4000-8000-00000000000b";

fn fetch(tenant: Uuid, es: &str) -> FetchForAggregateRequest {
    FetchForAggregateRequest {
        call_context: Some(call_context(tenant)),
        aggregate: Some(Aggregate {
            event_source_id: es.into(),
            aggregate_root_id: Some(id(ROOT)),
        }),
    }
}

#[tokio::test]
async fn restart_and_continue() {
    let mut server = Server::start().await;
    let tenant = annals_tests::DEVELOPMENT;
    let mut client = EventStoreClient::new(server.private().await);
    for i in 0..10u64 {
        let r = client
            .commit(commit_request(tenant, &[(TYPE, "es", r#"{"i": 1}"#)]))
            .await
            .unwrap()
            .into_inner();
        assert_eq!(r.events[0].event_log_sequence_number, i);
    }
    client
        .commit_for_aggregate(aggregate_request(
            tenant,
            ROOT,
            "agg",
            0,
            &[(TYPE, "{}"), (TYPE, "{}")],
        ))
        .await
        .unwrap();

    server.restart().await;
    assert!(
        server.log().contains("store closed cleanly"),
        "{}",
        server.log()
    );

    let mut client = EventStoreClient::new(server.private().await);
    let r = client
        .commit(commit_request(tenant, &[(TYPE, "es", "{}")]))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(r.events[0].event_log_sequence_number, 12);
    let stale = client
        .commit_for_aggregate(aggregate_request(tenant, ROOT, "agg", 0, &[(TYPE, "{}")]))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(failure_id(stale.failure.as_ref()), Some(failures::CONFLICT));
    let next = client
        .commit_for_aggregate(aggregate_request(tenant, ROOT, "agg", 2, &[(TYPE, "{}")]))
        .await
        .unwrap()
        .into_inner();
    assert!(next.failure.is_none());
    let fetched = client
        .fetch_for_aggregate(fetch(tenant, "agg"))
        .await
        .unwrap()
        .into_inner()
        .events
        .unwrap();
    assert_eq!(fetched.events.len(), 3);
    assert_eq!(fetched.current_aggregate_root_version, 3);
}

#[tokio::test]
async fn sigterm_under_load_keeps_every_acknowledged_commit() {
    let mut server = Server::start().await;
    let tenant = annals_tests::DEVELOPMENT;
    let channel = server.private().await;
    let mut writers = Vec::new();
    // Acknowledged commits so far, over every writer: the stop comes under load.
    let so_far = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    for w in 0..8u32 {
        let mut client = EventStoreClient::new(channel.clone());
        let so_far = std::sync::Arc::clone(&so_far);
        writers.push(tokio::spawn(async move {
            // (sequence number, content) of each acknowledged event, and why the writer
            // stopped.
            let mut acknowledged = Vec::new();
            for n in 0..10_000 {
                let content = format!("{{\"w\":{w},\"n\":{n}}}");
                match client
                    .commit(commit_request(
                        tenant,
                        &[(TYPE, &format!("w{w}"), &content)],
                    ))
                    .await
                {
                    Ok(r) => {
                        let r = r.into_inner();
                        if let Some(failure) = r.failure {
                            return (
                                acknowledged,
                                format!("failure {}", failure_id(Some(&failure)).unwrap()),
                            );
                        }
                        acknowledged.push((r.events[0].event_log_sequence_number, content));
                        so_far.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    }
                    Err(status) => return (acknowledged, format!("status {:?}", status.code())),
                }
            }
            (acknowledged, "done".to_owned())
        }));
    }
    let deadline = tokio::time::Instant::now() + annals_tests::head::MUST;
    while so_far.load(std::sync::atomic::Ordering::Relaxed) < 200 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the writers got no load going:\n{}",
            server.log()
        );
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }
    assert!(
        server.stop().await,
        "annals did not exit cleanly:\n{}",
        server.log()
    );
    let mut acknowledged: Vec<(u64, String)> = Vec::new();
    for w in writers {
        let (events, stopped) = w.await.unwrap();
        acknowledged.extend(events);
        // A commit the stopping runtime did not take is refused as unavailable, in band or as
        // the status of a connection it no longer serves: never as a failure of the commit.
        assert!(
            ["status Unavailable", "status Cancelled"].contains(&stopped.as_str())
                || stopped == format!("failure {EVENT_STORE_UNAVAILABLE}"),
            "a writer stopped on {stopped}"
        );
    }
    acknowledged.sort_unstable();
    assert!(!acknowledged.is_empty());
    assert_eq!(
        acknowledged.iter().map(|(s, _)| *s).collect::<Vec<_>>(),
        (0..acknowledged.len() as u64).collect::<Vec<_>>(),
        "gapless acknowledgements"
    );
    // Every acknowledged event is in the stopped runtime's log, where and as acknowledged.
    let logged = annals_tests::read_scoped_log(&server.dir, tenant, Uuid::nil());
    assert!(logged.len() >= acknowledged.len());
    for (sequence, content) in &acknowledged {
        let event = &logged[usize::try_from(*sequence).unwrap()];
        assert_eq!(&event.content, content, "event {sequence}");
    }

    server.restart().await;
    let mut client = EventStoreClient::new(server.private().await);
    let r = client
        .commit(commit_request(tenant, &[(TYPE, "after", "{}")]))
        .await
        .unwrap()
        .into_inner();
    // Commits received but not answered may be there too; the next one comes after them all.
    assert_eq!(r.events[0].event_log_sequence_number, logged.len() as u64);
}

#[tokio::test]
async fn two_tenants_never_see_each_other() {
    let yaml = format!("tenants:\n  {TENANT_A}: {{}}\n  {TENANT_B}: {{}}\n");
    let server = Server::start_with(&[(".dolittle/runtime.yml", &yaml)], &[], &[]).await;
    let (a, b) = (
        Uuid::parse_str(TENANT_A).unwrap(),
        Uuid::parse_str(TENANT_B).unwrap(),
    );
    let mut client = EventStoreClient::new(server.private().await);
    for _ in 0..3 {
        client
            .commit(commit_request(a, &[(TYPE, "shared", r#"{"tenant": "a"}"#)]))
            .await
            .unwrap();
    }
    let r = client
        .commit(commit_request(b, &[(TYPE, "shared", r#"{"tenant": "b"}"#)]))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        r.events[0].event_log_sequence_number, 0,
        "each tenant has its own log"
    );

    // The same aggregate id in both: versions apart.
    let r = client
        .commit_for_aggregate(aggregate_request(
            a,
            ROOT,
            "same",
            0,
            &[(TYPE, r#"{"t":"a"}"#), (TYPE, r#"{"t":"a"}"#)],
        ))
        .await
        .unwrap()
        .into_inner();
    assert!(r.failure.is_none());
    let r = client
        .commit_for_aggregate(aggregate_request(
            b,
            ROOT,
            "same",
            0,
            &[(TYPE, r#"{"t":"b"}"#)],
        ))
        .await
        .unwrap()
        .into_inner();
    assert!(
        r.failure.is_none(),
        "tenant b's aggregate is new: {:?}",
        r.failure
    );
    let fetched_a = client
        .fetch_for_aggregate(fetch(a, "same"))
        .await
        .unwrap()
        .into_inner()
        .events
        .unwrap();
    let fetched_b = client
        .fetch_for_aggregate(fetch(b, "same"))
        .await
        .unwrap()
        .into_inner()
        .events
        .unwrap();
    assert_eq!(fetched_a.current_aggregate_root_version, 2);
    assert_eq!(fetched_b.current_aggregate_root_version, 1);
    assert!(fetched_a.events.iter().all(|e| e.content.contains("\"a\"")));
    assert!(fetched_b.events.iter().all(|e| e.content.contains("\"b\"")));
    for e in &fetched_b.events {
        let tenant = e
            .execution_context
            .as_ref()
            .unwrap()
            .tenant_id
            .as_ref()
            .unwrap();
        assert_eq!(annals_tests::uuid(tenant), b);
    }
}
