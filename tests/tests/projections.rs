//! Projections (Runtime 8's semantics) against the real binary, driven by a scripted
//! projection head: every key selector, created and persisted states, delete, refusals,
//! resuming after a restart with nothing re-sent, a changed definition replayed for every
//! tenant, a missing key property, failures and retries, management (status, replay), the
//! projection store, two tenants apart, the states as of positions and times, and a SIGKILL
//! during processing with the stored states equal to a fold of the log up to the stored
//! position.
#![allow(clippy::unwrap_used, reason = "tests")]

use std::collections::BTreeMap;
use std::time::Duration;

use annals_tests::head::{arguments, duration, MUST, QUIET};
use annals_tests::proto::annals::projections as history;
use annals_tests::proto::dolittle;
use annals_tests::{
    artifact, call_context, commit, execution_context, failure_id, id, uuid, Server, DEVELOPMENT,
};
use dolittle::protobuf::Failure;
use dolittle::runtime::events::processing;
use dolittle::runtime::events::processing::management;
use dolittle::runtime::projections as store;
use processing::projection_client_to_runtime_message::Message as Out;
use processing::projection_event_selector::Selector;
use processing::projection_runtime_to_client_message::Message as In;
use processing::{
    EventOccurredKeySelector, EventPropertyKeySelector, EventSourceIdKeySelector,
    PartitionIdKeySelector, ProcessorFailure, ProjectionClientToRuntimeMessage, ProjectionCopies,
    ProjectionCopyToMongoDb, ProjectionDeleteResponse, ProjectionEventSelector,
    ProjectionRegistrationRequest, ProjectionReplaceResponse, ProjectionRequest,
    ProjectionResponse, StaticKeySelector,
};
use store::ProjectionCurrentStateType as StateType;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::transport::Channel;
use uuid::Uuid;

const TYPE_A: Uuid = Uuid::from_u128(0xa1);
const TYPE_B: Uuid = Uuid::from_u128(0xb1);
const TYPE_C: Uuid = Uuid::from_u128(0xc1);
const TYPE_D: Uuid = Uuid::from_u128(0xd1);
const TYPE_E: Uuid = Uuid::from_u128(0xe1);
const TYPE_OTHER: Uuid = Uuid::from_u128(0xf1);
const TENANT_A: Uuid = Uuid::from_u128(0x1111_1111_0000_4000_8000_0000_0000_0001);
const TENANT_B: Uuid = Uuid::from_u128(0x2222_2222_0000_4000_8000_0000_0000_0002);
const NIL: &str = "00000000-0000-0000-0000-000000000000";

const FAILED_TO_REGISTER: Uuid = Uuid::from_u128(0xeb82_f4d3_06e5_45cc_ac97_7d77_dd1e_5d07);
const NO_DEFINITION: Uuid = Uuid::from_u128(0x0cbd_47f6_50b4_4488_afc3_6ba6_b02b_0dbd);
const NOT_REGISTERED: Uuid = Uuid::from_u128(0xa4ff_b5ba_b09f_48d5_8d70_43df_5f81_9de4);
const NOT_PROCESSED_YET: Uuid = Uuid::from_u128(0x5c1e_a7f4_9d2b_4c61_8e0a_3b7d_6f52_c914);

/// A projection registration.
#[derive(Clone)]
struct Projection {
    id: Uuid,
    scope: Uuid,
    selectors: Vec<(Uuid, Selector)>,
    initial_state: String,
    copies: Option<ProjectionCopies>,
    alias: Option<String>,
}

impl Projection {
    /// Counts events per event source: TYPE_A keyed by event source.
    fn new(id: Uuid) -> Projection {
        Projection {
            id,
            scope: Uuid::nil(),
            selectors: vec![(
                TYPE_A,
                Selector::EventSourceKeySelector(EventSourceIdKeySelector {}),
            )],
            initial_state: r#"{"n":0}"#.into(),
            copies: None,
            alias: None,
        }
    }

    fn message(&self) -> ProjectionClientToRuntimeMessage {
        ProjectionClientToRuntimeMessage {
            message: Some(Out::RegistrationRequest(ProjectionRegistrationRequest {
                call_context: Some(arguments(
                    &execution_context(DEVELOPMENT),
                    Some(Duration::from_secs(1)),
                )),
                scope_id: Some(id(self.scope)),
                projection_id: Some(id(self.id)),
                events: self
                    .selectors
                    .iter()
                    .map(|(t, s)| ProjectionEventSelector {
                        event_type: Some(artifact(*t)),
                        selector: Some(s.clone()),
                    })
                    .collect(),
                initial_state: self.initial_state.clone(),
                copies: self.copies.clone(),
                alias: self.alias.clone(),
            })),
        }
    }
}

/// A connected projection head: answers pings itself, hands requests to the test.
struct Head {
    outbound: mpsc::Sender<ProjectionClientToRuntimeMessage>,
    inbox: mpsc::UnboundedReceiver<Result<In, tonic::Status>>,
    reader: tokio::task::JoinHandle<()>,
}

impl Drop for Head {
    fn drop(&mut self) {
        self.reader.abort();
    }
}

impl Head {
    /// Connects and registers; the failure when refused.
    async fn connect(channel: Channel, projection: &Projection) -> (Head, Option<Failure>) {
        let (outbound, rx) = mpsc::channel(64);
        outbound.try_send(projection.message()).unwrap();
        let (inbox_tx, inbox) = mpsc::unbounded_channel();
        let pongs = outbound.clone();
        let reader = tokio::spawn(async move {
            let call = processing::projections_client::ProjectionsClient::new(channel)
                .connect(ReceiverStream::new(rx))
                .await;
            let mut stream = match call {
                Ok(response) => response.into_inner(),
                Err(status) => {
                    let _ = inbox_tx.send(Err(status));
                    return;
                }
            };
            loop {
                match stream.message().await {
                    Ok(Some(message)) => match message.message {
                        Some(In::Ping(_)) => {
                            let pong = ProjectionClientToRuntimeMessage {
                                message: Some(Out::Pong(dolittle::services::Pong {})),
                            };
                            let _ = pongs.send(pong).await;
                        }
                        Some(other) => {
                            let _ = inbox_tx.send(Ok(other));
                        }
                        None => {}
                    },
                    Ok(None) => {
                        let _ = inbox_tx.send(Err(tonic::Status::ok("ended")));
                        return;
                    }
                    Err(status) => {
                        let _ = inbox_tx.send(Err(status));
                        return;
                    }
                }
            }
        });
        let mut head = Head {
            outbound,
            inbox,
            reader,
        };
        let failure = match head.next(MUST).await {
            Some(Ok(In::RegistrationResponse(r))) => r.failure,
            other => panic!("expected a registration response, got {other:?}"),
        };
        (head, failure)
    }

    /// Connects once the projection's place is free: a head that has just gone away keeps it
    /// until its connection has written its position, so a refusal is tried again until MUST.
    async fn connect_when_free(server: &Server, projection: &Projection) -> Head {
        let deadline = tokio::time::Instant::now() + MUST;
        loop {
            let (head, failure) = Head::connect(server.private().await, projection).await;
            match failure {
                None => return head,
                Some(failure) => assert!(
                    tokio::time::Instant::now() < deadline,
                    "still refused: {failure:?}"
                ),
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    async fn next(&mut self, timeout: Duration) -> Option<Result<In, tonic::Status>> {
        tokio::time::timeout(timeout, self.inbox.recv())
            .await
            .ok()
            .flatten()
    }

    async fn request(&mut self) -> ProjectionRequest {
        match self.next(MUST).await {
            Some(Ok(In::HandleRequest(request))) => request,
            other => panic!("expected a request, got {other:?}"),
        }
    }

    async fn no_request(&mut self) {
        if let Some(m) = self.next(QUIET).await {
            panic!("expected nothing, got {m:?}");
        }
    }

    async fn answer(
        &self,
        request: &ProjectionRequest,
        response: Option<processing::projection_response::Response>,
        failure: Option<ProcessorFailure>,
    ) {
        let call_id = request.call_context.as_ref().unwrap().call_id.clone();
        let message = ProjectionClientToRuntimeMessage {
            message: Some(Out::HandleResult(ProjectionResponse {
                call_context: Some(dolittle::services::ReverseCallResponseContext { call_id }),
                response,
                failure,
            })),
        };
        self.outbound.send(message).await.unwrap();
    }

    async fn replace(&self, request: &ProjectionRequest, state: &str) {
        let replace =
            processing::projection_response::Response::Replace(ProjectionReplaceResponse {
                state: state.to_owned(),
            });
        self.answer(request, Some(replace), None).await;
    }

    async fn delete(&self, request: &ProjectionRequest) {
        let delete = processing::projection_response::Response::Delete(ProjectionDeleteResponse {});
        self.answer(request, Some(delete), None).await;
    }

    /// Answers every request with `fold` until the test stops it; returns the requests.
    fn fold_in_background(mut self, fold: fn(&str, &ProjectionRequest) -> String) -> Folding {
        let (stop_tx, mut stop) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            let mut seen = Vec::new();
            loop {
                tokio::select! {
                    _ = &mut stop => return (self, seen),
                    message = self.inbox.recv() => match message {
                        Some(Ok(In::HandleRequest(request))) => {
                            let current = request.current_state.as_ref().unwrap().state.clone();
                            let next = fold(&current, &request);
                            self.replace(&request, &next).await;
                            seen.push(request);
                        }
                        Some(_) => {}
                        None => return (self, seen),
                    },
                }
            }
        });
        Folding {
            stop: stop_tx,
            task,
        }
    }
}

struct Folding {
    stop: tokio::sync::oneshot::Sender<()>,
    task: tokio::task::JoinHandle<(Head, Vec<ProjectionRequest>)>,
}

impl Folding {
    async fn stop(self) -> (Head, Vec<ProjectionRequest>) {
        let _ = self.stop.send(());
        self.task.await.unwrap()
    }
}

/// n + 1, and the last sequence number seen.
fn count(state: &str, request: &ProjectionRequest) -> String {
    let value: serde_json::Value = serde_json::from_str(state).unwrap();
    let n = value["n"].as_u64().unwrap();
    let seq = request
        .event
        .as_ref()
        .unwrap()
        .event
        .as_ref()
        .unwrap()
        .event_log_sequence_number;
    format!(r#"{{"n":{},"last":{seq}}}"#, n + 1)
}

fn seq(request: &ProjectionRequest) -> u64 {
    request
        .event
        .as_ref()
        .unwrap()
        .event
        .as_ref()
        .unwrap()
        .event_log_sequence_number
}

fn current(request: &ProjectionRequest) -> (StateType, &str, &str) {
    let state = request.current_state.as_ref().unwrap();
    (
        StateType::try_from(state.r#type).unwrap(),
        state.key.as_str(),
        state.state.as_str(),
    )
}

fn request_tenant(request: &ProjectionRequest) -> Uuid {
    uuid(
        request
            .call_context
            .as_ref()
            .unwrap()
            .execution_context
            .as_ref()
            .unwrap()
            .tenant_id
            .as_ref()
            .unwrap(),
    )
}

async fn get_one(
    server: &Server,
    tenant: Uuid,
    projection: Uuid,
    key: &str,
) -> store::GetOneResponse {
    store::projections_client::ProjectionsClient::new(server.private().await)
        .get_one(store::GetOneRequest {
            call_context: Some(call_context(tenant)),
            scope_id: Some(id(Uuid::nil())),
            projection_id: Some(id(projection)),
            key: key.to_owned(),
        })
        .await
        .unwrap()
        .into_inner()
}

/// GetOne's (type, state), panicking on a failure.
async fn state_of(
    server: &Server,
    tenant: Uuid,
    projection: Uuid,
    key: &str,
) -> (StateType, String) {
    let response = get_one(server, tenant, projection, key).await;
    assert!(response.failure.is_none(), "{:?}", response.failure);
    let state = response.state.unwrap();
    assert_eq!(state.key, key);
    (StateType::try_from(state.r#type).unwrap(), state.state)
}

/// Every state of the projection, read with GetAll and with GetAllInBatches, which must
/// agree. While the projection is still processing, states may move between the reads: the
/// two forms are compared only when GetAll answers the same before and after the batched
/// read.
async fn all_states(server: &Server, tenant: Uuid, projection: Uuid) -> BTreeMap<String, String> {
    let mut client = store::projections_client::ProjectionsClient::new(server.private().await);
    let request = store::GetAllRequest {
        call_context: Some(call_context(tenant)),
        scope_id: Some(id(Uuid::nil())),
        projection_id: Some(id(projection)),
    };
    let deadline = tokio::time::Instant::now() + MUST;
    loop {
        let before = unbatched(&mut client, &request).await;
        let mut stream = client
            .get_all_in_batches(request.clone())
            .await
            .unwrap()
            .into_inner();
        let mut batched = BTreeMap::new();
        let mut responses = 0;
        while let Some(batch) = stream.message().await.unwrap() {
            assert!(batch.failure.is_none());
            responses += 1;
            for state in batch.states {
                assert_eq!(state.r#type, i32::from(StateType::Persisted));
                batched.insert(state.key, state.state);
            }
        }
        assert!(responses >= 1, "GetAllInBatches always sends a batch");
        if unbatched(&mut client, &request).await == before {
            assert_eq!(batched, before);
            return batched;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the states never held still for a read"
        );
    }
}

/// GetAll's states by key.
async fn unbatched(
    client: &mut store::projections_client::ProjectionsClient<tonic::transport::Channel>,
    request: &store::GetAllRequest,
) -> BTreeMap<String, String> {
    let all = client.get_all(request.clone()).await.unwrap().into_inner();
    assert!(all.failure.is_none());
    all.states.into_iter().map(|s| (s.key, s.state)).collect()
}

/// Waits until GetOne answers `want` (the states are written shortly after the answers).
async fn eventually_state(server: &Server, tenant: Uuid, projection: Uuid, key: &str, want: &str) {
    let deadline = tokio::time::Instant::now() + MUST;
    loop {
        let (kind, state) = state_of(server, tenant, projection, key).await;
        if state == want {
            assert_eq!(kind, StateType::Persisted);
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{key}: {state}, want {want}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn management_one(server: &Server, projection: Uuid) -> management::GetOneProjectionResponse {
    management::projections_client::ProjectionsClient::new(server.management().await)
        .get_one(management::GetOneProjectionRequest {
            scope_id: Some(id(Uuid::nil())),
            projection_id: Some(id(projection)),
            tenant_id: None,
        })
        .await
        .unwrap()
        .into_inner()
}

async fn refused(server: &Server, projection: &Projection) -> Failure {
    let (_head, failure) = Head::connect(server.private().await, projection).await;
    let failure = failure.expect("refused");
    assert_eq!(
        failure_id(Some(&failure)),
        Some(FAILED_TO_REGISTER),
        "{}",
        failure.reason
    );
    failure
}

#[tokio::test]
async fn every_key_selector_and_the_states_the_store_serves() {
    let server = Server::start().await;
    let projection = Uuid::new_v4();
    let mut registration = Projection::new(projection);
    registration.selectors = vec![
        (
            TYPE_A,
            Selector::EventSourceKeySelector(EventSourceIdKeySelector {}),
        ),
        (
            TYPE_B,
            Selector::PartitionKeySelector(PartitionIdKeySelector {}),
        ),
        (
            TYPE_C,
            Selector::EventPropertyKeySelector(EventPropertyKeySelector {
                property_name: "id".into(),
            }),
        ),
        (
            TYPE_D,
            Selector::StaticKeySelector(StaticKeySelector {
                static_key: "all".into(),
            }),
        ),
        (
            TYPE_E,
            Selector::EventOccurredKeySelector(EventOccurredKeySelector {
                format: "yyyy".into(),
            }),
        ),
    ];
    // Before anything is registered, the store knows no such projection.
    let unknown = get_one(&server, DEVELOPMENT, projection, "x").await;
    assert_eq!(failure_id(unknown.failure.as_ref()), Some(NO_DEFINITION));
    assert_eq!(
        unknown.failure.unwrap().reason,
        format!("Projection definition for projection {projection} in scope {NIL} does not exist")
    );

    let (mut head, failure) = Head::connect(server.private().await, &registration).await;
    assert_eq!(failure, None);
    let channel = server.private().await;
    let committed = commit(
        &channel,
        DEVELOPMENT,
        &[
            (TYPE_A, "cart-1", "{}"),
            (TYPE_OTHER, "cart-1", "{}"),
            (TYPE_B, "cart-2", "{}"),
            (TYPE_C, "cart-3", r#"{"id":42}"#),
            (TYPE_C, "cart-3", r#"{"id":"x-1","other":true}"#),
            (TYPE_D, "cart-4", "{}"),
            (TYPE_E, "cart-5", "{}"),
            (TYPE_A, "cart-1", "{}"),
        ],
    )
    .await;
    let year = {
        let occurred = committed[6].occurred.as_ref().unwrap();
        let days = occurred.seconds.div_euclid(86_400);
        // The civil year of the day (proleptic Gregorian), as .NET's "yyyy".
        let z = days + 719_468;
        let era = z.div_euclid(146_097);
        let doe = z.rem_euclid(146_097);
        let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
        let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
        let mp = (5 * doy + 2) / 153;
        let month = if mp < 10 { mp + 3 } else { mp - 9 };
        yoe + era * 400 + i64::from(month <= 2)
    };
    let want = [
        (0, "cart-1".to_owned(), StateType::CreatedFromInitialState),
        (2, NIL.to_owned(), StateType::CreatedFromInitialState),
        (3, "42".to_owned(), StateType::CreatedFromInitialState),
        (4, "x-1".to_owned(), StateType::CreatedFromInitialState),
        (5, "all".to_owned(), StateType::CreatedFromInitialState),
        (6, year.to_string(), StateType::CreatedFromInitialState),
        (7, "cart-1".to_owned(), StateType::Persisted),
    ];
    for (want_seq, want_key, want_type) in want {
        let request = head.request().await;
        assert_eq!(
            seq(&request),
            want_seq,
            "the event of another type is skipped"
        );
        let (kind, key, state) = current(&request);
        assert_eq!((kind, key), (want_type, want_key.as_str()));
        if want_type == StateType::CreatedFromInitialState {
            assert_eq!(state, r#"{"n":0}"#);
        } else {
            assert_eq!(state, r#"{"n":1,"last":0}"#);
        }
        let event = request.event.as_ref().unwrap();
        assert_eq!(event.partition_id, NIL);
        assert!(!event.partitioned);
        assert_eq!(event.stream_position, 0);
        assert_eq!(uuid(event.scope_id.as_ref().unwrap()), Uuid::nil());
        assert_eq!(
            event.event.as_ref().unwrap(),
            &committed[usize::try_from(want_seq).unwrap()]
        );
        let context = request
            .call_context
            .as_ref()
            .unwrap()
            .execution_context
            .as_ref()
            .unwrap();
        assert_eq!(
            context.correlation_id,
            committed[usize::try_from(want_seq).unwrap()]
                .execution_context
                .as_ref()
                .unwrap()
                .correlation_id
        );
        let next = count(state, &request);
        head.replace(&request, &next).await;
    }
    head.no_request().await;

    eventually_state(
        &server,
        DEVELOPMENT,
        projection,
        "cart-1",
        r#"{"n":2,"last":7}"#,
    )
    .await;
    assert_eq!(
        state_of(&server, DEVELOPMENT, projection, "42").await,
        (StateType::Persisted, r#"{"n":1,"last":3}"#.to_owned())
    );
    // A key without a state: the initial state, with the key asked for.
    assert_eq!(
        state_of(&server, DEVELOPMENT, projection, "nobody").await,
        (StateType::CreatedFromInitialState, r#"{"n":0}"#.to_owned())
    );
    let all = all_states(&server, DEVELOPMENT, projection).await;
    let keys: Vec<&str> = all.keys().map(String::as_str).collect();
    let mut want_keys = vec![NIL, "42", "x-1", "all", "cart-1"];
    let year = year.to_string();
    want_keys.push(&year);
    want_keys.sort_unstable();
    assert_eq!(keys, want_keys);
}

#[tokio::test]
async fn a_deleted_key_answers_its_initial_state_again() {
    let server = Server::start().await;
    let projection = Uuid::new_v4();
    let (mut head, _) = Head::connect(server.private().await, &Projection::new(projection)).await;
    let channel = server.private().await;
    commit(
        &channel,
        DEVELOPMENT,
        &[
            (TYPE_A, "k", "{}"),
            (TYPE_A, "k", "{}"),
            (TYPE_A, "k", "{}"),
        ],
    )
    .await;
    let first = head.request().await;
    head.replace(&first, r#"{"n":1}"#).await;
    let second = head.request().await;
    assert_eq!(current(&second).0, StateType::Persisted);
    head.delete(&second).await;
    let third = head.request().await;
    assert_eq!(
        current(&third),
        (StateType::CreatedFromInitialState, "k", r#"{"n":0}"#)
    );
    head.delete(&third).await;
    let deadline = tokio::time::Instant::now() + MUST;
    while all_states(&server, DEVELOPMENT, projection)
        .await
        .contains_key("k")
    {
        assert!(tokio::time::Instant::now() < deadline);
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(
        state_of(&server, DEVELOPMENT, projection, "k").await,
        (StateType::CreatedFromInitialState, r#"{"n":0}"#.to_owned())
    );
}

#[tokio::test]
async fn registrations_the_original_refused_are_refused() {
    let server = Server::start().await;
    let base = Projection::new(Uuid::new_v4());

    let mut twice = base.clone();
    twice.selectors.push((
        TYPE_A,
        Selector::StaticKeySelector(StaticKeySelector {
            static_key: "s".into(),
        }),
    ));
    assert_eq!(
        refused(&server, &twice).await.reason,
        format!("Event {TYPE_A} was specified more than once")
    );

    let mut empty_format = base.clone();
    empty_format.selectors = vec![(
        TYPE_B,
        Selector::EventOccurredKeySelector(EventOccurredKeySelector {
            format: String::new(),
        }),
    )];
    assert_eq!(
        refused(&server, &empty_format).await.reason,
        format!(
            "Event {TYPE_B} has key from event occurred selector with an invalid occurred format . \
             Dolittle.Runtime.Events.Processing.Projections.OccurredFormatCannotBeNullOrEmpty: \
             Occurred format cannot be null or empty"
        )
    );
    for format in ["x", "U", "'open", "ffffffff"] {
        let mut bad = base.clone();
        bad.selectors = vec![(
            TYPE_B,
            Selector::EventOccurredKeySelector(EventOccurredKeySelector {
                format: format.into(),
            }),
        )];
        let reason = refused(&server, &bad).await.reason;
        assert!(
            reason.starts_with(&format!(
                "Event {TYPE_B} has key from event occurred selector with an invalid occurred format {format}. System.FormatException: "
            )),
            "{reason}"
        );
    }

    let mut not_an_object = base.clone();
    not_an_object.initial_state = "[1]".into();
    assert!(refused(&server, &not_an_object)
        .await
        .reason
        .contains("not a JSON object"));

    let mut copies = base.clone();
    copies.copies = Some(ProjectionCopies {
        mongo_db: Some(ProjectionCopyToMongoDb {
            collection: "read_models".into(),
            conversions: vec![],
        }),
    });
    assert_eq!(
        refused(&server, &copies).await.reason,
        format!("Failed to register Projection {}. Copying projection read models to MongoDB is not supported", base.id)
    );
    // Copies present but empty mean no copy, as in the original.
    let mut empty_copies = base.clone();
    empty_copies.copies = Some(ProjectionCopies::default());
    let (_connected, failure) = Head::connect(server.private().await, &empty_copies).await;
    assert_eq!(failure, None);
    // The same projection again, while connected.
    assert_eq!(
        refused(&server, &base).await.reason,
        format!(
            "Failed to register Projection {id}. The projection {id} in scope {NIL} is already registered",
            id = base.id
        )
    );

    // Another microservice's execution context: the arguments failure.
    let mut foreign = base.message();
    let Some(Out::RegistrationRequest(request)) = &mut foreign.message else {
        unreachable!()
    };
    request.projection_id = Some(id(Uuid::new_v4()));
    request
        .call_context
        .as_mut()
        .unwrap()
        .execution_context
        .as_mut()
        .unwrap()
        .microservice_id = Some(id(Uuid::new_v4()));
    let (outbound, rx) = mpsc::channel(4);
    outbound.try_send(foreign).unwrap();
    let mut stream = processing::projections_client::ProjectionsClient::new(server.private().await)
        .connect(ReceiverStream::new(rx))
        .await
        .unwrap()
        .into_inner();
    let Some(In::RegistrationResponse(response)) = stream.message().await.unwrap().unwrap().message
    else {
        panic!("a registration response")
    };
    let failure = response.failure.unwrap();
    assert_eq!(failure_id(Some(&failure)), Some(FAILED_TO_REGISTER));
    assert!(
        failure
            .reason
            .starts_with("Connection arguments were not received"),
        "{}",
        failure.reason
    );
}

#[tokio::test]
async fn a_restarted_runtime_resumes_with_nothing_sent_again() {
    let mut server = Server::start().await;
    let projection = Uuid::new_v4();
    let (head, _) = Head::connect(server.private().await, &Projection::new(projection)).await;
    let folding = head.fold_in_background(count);
    let channel = server.private().await;
    for i in 0..5 {
        commit(
            &channel,
            DEVELOPMENT,
            &[(TYPE_A, "k", "{}"), (TYPE_OTHER, &format!("o{i}"), "{}")],
        )
        .await;
    }
    eventually_state(&server, DEVELOPMENT, projection, "k", r#"{"n":5,"last":8}"#).await;
    let (head, seen) = folding.stop().await;
    assert_eq!(seen.len(), 5);
    drop(head);
    server.restart().await;
    let (mut head, failure) =
        Head::connect(server.private().await, &Projection::new(projection)).await;
    assert_eq!(failure, None);
    head.no_request().await;
    commit(&server.private().await, DEVELOPMENT, &[(TYPE_A, "k", "{}")]).await;
    let request = head.request().await;
    assert_eq!(seq(&request), 10);
    assert_eq!(
        current(&request),
        (StateType::Persisted, "k", r#"{"n":5,"last":8}"#)
    );
}

#[tokio::test]
async fn a_changed_definition_rebuilds_every_tenants_states_and_tenants_stay_apart() {
    let yaml = format!("tenants:\n  {TENANT_A}: {{}}\n  {TENANT_B}: {{}}\n");
    let server = Server::start_with(&[(".dolittle/runtime.yml", &yaml)], &[], &[]).await;
    let projection = Uuid::new_v4();
    let registration = Projection::new(projection);
    let (head, _) = Head::connect(server.private().await, &registration).await;
    let folding = head.fold_in_background(count);
    let channel = server.private().await;
    commit(
        &channel,
        TENANT_A,
        &[(TYPE_A, "k", "{}"), (TYPE_A, "k", "{}")],
    )
    .await;
    commit(&channel, TENANT_B, &[(TYPE_A, "k", "{}")]).await;
    eventually_state(&server, TENANT_A, projection, "k", r#"{"n":2,"last":1}"#).await;
    eventually_state(&server, TENANT_B, projection, "k", r#"{"n":1,"last":0}"#).await;
    let (head, _) = folding.stop().await;
    drop(head);

    // The same definition again (reordered, another alias): nothing is replayed.
    let mut same = registration.clone();
    same.alias = Some("renamed".into());
    let mut head = Head::connect_when_free(&server, &same).await;
    head.no_request().await;
    drop(head);

    let mut changed = registration.clone();
    changed.initial_state = r#"{"n":100}"#.into();
    let mut head = Head::connect_when_free(&server, &changed).await;
    let mut replayed = Vec::new();
    for _ in 0..3 {
        let request = head.request().await;
        replayed.push((request_tenant(&request), seq(&request), current(&request).0));
        let next = count(current(&request).2, &request);
        head.replace(&request, &next).await;
    }
    replayed.sort();
    assert_eq!(
        replayed,
        vec![
            (TENANT_A, 0, StateType::CreatedFromInitialState),
            (TENANT_A, 1, StateType::Persisted),
            (TENANT_B, 0, StateType::CreatedFromInitialState),
        ]
    );
    eventually_state(&server, TENANT_A, projection, "k", r#"{"n":102,"last":1}"#).await;
    eventually_state(&server, TENANT_B, projection, "k", r#"{"n":101,"last":0}"#).await;
}

#[tokio::test]
async fn a_missing_key_property_fails_the_event_without_retry() {
    let server = Server::start().await;
    let projection = Uuid::new_v4();
    let mut registration = Projection::new(projection);
    registration.selectors = vec![(
        TYPE_C,
        Selector::EventPropertyKeySelector(EventPropertyKeySelector {
            property_name: "id".into(),
        }),
    )];
    let (mut head, _) = Head::connect(server.private().await, &registration).await;
    commit(
        &server.private().await,
        DEVELOPMENT,
        &[(TYPE_C, "s", r#"{"Id":1}"#), (TYPE_C, "s", r#"{"id":1}"#)],
    )
    .await;
    head.no_request().await;
    let status = management_one(&server, projection)
        .await
        .projection
        .unwrap();
    let tenant = &status.tenants[0];
    let Some(management::tenant_scoped_stream_processor_status::Status::Unpartitioned(
        unpartitioned,
    )) = &tenant.status
    else {
        panic!("an unpartitioned status")
    };
    assert!(unpartitioned.is_failing);
    assert_eq!(
        unpartitioned.failure_reason,
        r#"Could not get projection key from event on sequence number 0 with content '{"Id":1}'"#
    );
    assert_eq!(tenant.stream_position, 0);
}

#[tokio::test]
async fn a_failure_with_retry_is_asked_again_with_its_reason() {
    let server = Server::start().await;
    let projection = Uuid::new_v4();
    let (mut head, _) = Head::connect(server.private().await, &Projection::new(projection)).await;
    commit(&server.private().await, DEVELOPMENT, &[(TYPE_A, "k", "{}")]).await;
    let request = head.request().await;
    assert!(request.retry_processing_state.is_none());
    let failure = ProcessorFailure {
        reason: "not yet".into(),
        retry: true,
        retry_timeout: Some(duration(Duration::from_millis(100))),
    };
    head.answer(&request, None, Some(failure)).await;
    let again = head.request().await;
    assert_eq!(seq(&again), 0);
    let retry = again.retry_processing_state.as_ref().unwrap();
    assert_eq!(retry.failure_reason, "Projection failed because $not yet");
    head.replace(&again, r#"{"n":1}"#).await;
    eventually_state(&server, DEVELOPMENT, projection, "k", r#"{"n":1}"#).await;
}

#[tokio::test]
async fn management_shows_connected_projections_and_replays_them() {
    let yaml = format!("tenants:\n  {TENANT_A}: {{}}\n  {TENANT_B}: {{}}\n");
    let server = Server::start_with(&[(".dolittle/runtime.yml", &yaml)], &[], &[]).await;
    let projection = Uuid::new_v4();
    let mut client =
        management::projections_client::ProjectionsClient::new(server.management().await);
    let not_connected = management_one(&server, projection).await;
    assert_eq!(
        failure_id(not_connected.failure.as_ref()),
        Some(NOT_REGISTERED)
    );
    assert_eq!(
        not_connected.failure.unwrap().reason,
        format!("The projection {projection} in scope {NIL} is not registered")
    );

    let mut registration = Projection::new(projection);
    registration.selectors.push((
        TYPE_B,
        Selector::EventPropertyKeySelector(EventPropertyKeySelector {
            property_name: "p".into(),
        }),
    ));
    let (head, _) = Head::connect(server.private().await, &registration).await;
    let folding = head.fold_in_background(count);
    commit(
        &server.private().await,
        TENANT_A,
        &[(TYPE_A, "k", "{}"), (TYPE_A, "k", "{}")],
    )
    .await;
    eventually_state(&server, TENANT_A, projection, "k", r#"{"n":2,"last":1}"#).await;

    let all = client
        .get_all(management::GetAllProjectionsRequest { tenant_id: None })
        .await
        .unwrap()
        .into_inner();
    let status = all
        .projections
        .iter()
        .find(|p| uuid(p.projection_id.as_ref().unwrap()) == projection)
        .unwrap();
    assert_eq!(status.alias, "No alias");
    assert_eq!(status.initial_state, r#"{"n":0}"#);
    assert_eq!(status.copies, Some(ProjectionCopies::default()));
    assert_eq!(status.events.len(), 2);
    assert_eq!(
        status.events[1].selector,
        Some(Selector::EventPropertyKeySelector(
            EventPropertyKeySelector {
                property_name: "p".into()
            }
        ))
    );
    assert_eq!(status.tenants.len(), 2);
    let tenant_a = status
        .tenants
        .iter()
        .find(|t| uuid(t.tenant_id.as_ref().unwrap()) == TENANT_A)
        .unwrap();
    assert_eq!(tenant_a.stream_position, 2);

    // Replay one tenant: its states are dropped and rebuilt from the first event.
    let (head, seen) = folding.stop().await;
    assert_eq!(seen.len(), 2);
    let folding = head.fold_in_background(count);
    let replay = client
        .replay(management::ReplayProjectionRequest {
            scope_id: Some(id(Uuid::nil())),
            projection_id: Some(id(projection)),
            tenant_id: Some(id(TENANT_A)),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(replay.failure, None);
    eventually_state(&server, TENANT_A, projection, "k", r#"{"n":2,"last":1}"#).await;
    let (_head, seen) = folding.stop().await;
    let replayed: Vec<(u64, StateType)> = seen.iter().map(|r| (seq(r), current(r).0)).collect();
    assert_eq!(
        replayed,
        vec![
            (0, StateType::CreatedFromInitialState),
            (1, StateType::Persisted)
        ]
    );
    let unknown_tenant = client
        .replay(management::ReplayProjectionRequest {
            scope_id: Some(id(Uuid::nil())),
            projection_id: Some(id(projection)),
            tenant_id: Some(id(Uuid::new_v4())),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        failure_id(unknown_tenant.failure.as_ref()),
        Some(Uuid::from_u128(0xd04f_88e0_cd9c_4cf5_a095_914d_6577_f482))
    );
}

async fn state_at(
    server: &Server,
    projection: Uuid,
    key: &str,
    at: history::as_of::Point,
) -> history::GetOneAtResponse {
    history::projection_history_client::ProjectionHistoryClient::new(server.private().await)
        .get_one_at(history::GetOneAtRequest {
            call_context: Some(call_context(DEVELOPMENT)),
            scope_id: Some(id(Uuid::nil())),
            projection_id: Some(id(projection)),
            key: key.to_owned(),
            at: Some(history::AsOf { point: Some(at) }),
        })
        .await
        .unwrap()
        .into_inner()
}

async fn states_at(
    server: &Server,
    projection: Uuid,
    at: history::as_of::Point,
) -> BTreeMap<String, String> {
    let mut stream =
        history::projection_history_client::ProjectionHistoryClient::new(server.private().await)
            .get_all_at(history::GetAllAtRequest {
                call_context: Some(call_context(DEVELOPMENT)),
                scope_id: Some(id(Uuid::nil())),
                projection_id: Some(id(projection)),
                at: Some(history::AsOf { point: Some(at) }),
            })
            .await
            .unwrap()
            .into_inner();
    let mut states = BTreeMap::new();
    while let Some(batch) = stream.message().await.unwrap() {
        assert!(batch.failure.is_none(), "{:?}", batch.failure);
        states.extend(batch.states.into_iter().map(|s| (s.key, s.state)));
    }
    states
}

#[tokio::test]
async fn states_as_of_positions_and_times_before_between_and_after_changes() {
    use history::as_of::Point;
    let server = Server::start().await;
    let projection = Uuid::new_v4();
    let (mut head, _) = Head::connect(server.private().await, &Projection::new(projection)).await;
    let channel = server.private().await;
    // Positions: 0 a, 1 other, 2 b, 3 a (deleted), 4 a.
    let mut committed = Vec::new();
    for (t, es) in [
        (TYPE_A, "a"),
        (TYPE_OTHER, "x"),
        (TYPE_A, "b"),
        (TYPE_A, "a"),
        (TYPE_A, "a"),
    ] {
        committed.extend(commit(&channel, DEVELOPMENT, &[(t, es, "{}")]).await);
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    for _ in 0..4 {
        let request = head.request().await;
        if seq(&request) == 3 {
            head.delete(&request).await;
        } else {
            let next = count(current(&request).2, &request);
            head.replace(&request, &next).await;
        }
    }
    eventually_state(&server, DEVELOPMENT, projection, "a", r#"{"n":1,"last":4}"#).await;
    let a = |at: u64| state_at(&server, projection, "a", Point::EventLogPosition(at));
    let initial = (
        i32::from(StateType::CreatedFromInitialState),
        r#"{"n":0}"#.to_owned(),
    );
    let persisted = |s: &str| (i32::from(StateType::Persisted), s.to_owned());
    let got = |r: history::GetOneAtResponse| {
        assert!(r.failure.is_none(), "{:?}", r.failure);
        let s = r.state.unwrap();
        (s.r#type, s.state)
    };
    assert_eq!(got(a(0).await), initial);
    assert_eq!(got(a(1).await), persisted(r#"{"n":1,"last":0}"#));
    assert_eq!(got(a(3).await), persisted(r#"{"n":1,"last":0}"#));
    assert_eq!(got(a(4).await), initial, "deleted by the event at 3");
    assert_eq!(got(a(5).await), persisted(r#"{"n":1,"last":4}"#));
    let beyond = a(6).await;
    assert_eq!(failure_id(beyond.failure.as_ref()), Some(NOT_PROCESSED_YET));

    let expect = |pairs: &[(&str, &str)]| -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    };
    assert_eq!(
        states_at(&server, projection, Point::EventLogPosition(0)).await,
        expect(&[])
    );
    assert_eq!(
        states_at(&server, projection, Point::EventLogPosition(3)).await,
        expect(&[("a", r#"{"n":1,"last":0}"#), ("b", r#"{"n":1,"last":2}"#)])
    );
    assert_eq!(
        states_at(&server, projection, Point::EventLogPosition(4)).await,
        expect(&[("b", r#"{"n":1,"last":2}"#)])
    );

    // Times: just before the first event, at the third, and long after the last.
    let occurred = |i: usize| committed[i].occurred.unwrap();
    let mut before_first = occurred(0);
    before_first.nanos -= 1;
    if before_first.nanos < 0 {
        before_first.seconds -= 1;
        before_first.nanos += 1_000_000_000;
    }
    assert_eq!(
        states_at(&server, projection, Point::Time(before_first)).await,
        expect(&[])
    );
    assert_eq!(
        states_at(&server, projection, Point::Time(occurred(2))).await,
        expect(&[("a", r#"{"n":1,"last":0}"#), ("b", r#"{"n":1,"last":2}"#)])
    );
    let at_third = state_at(&server, projection, "a", Point::Time(occurred(3))).await;
    assert_eq!(at_third.event_log_position, 4);
    assert_eq!(got(at_third), initial);
    let mut later = occurred(4);
    later.seconds += 3600;
    // An hour after the last event: as of the log's end, which the projection has processed.
    assert_eq!(
        states_at(&server, projection, Point::Time(later)).await,
        expect(&[("a", r#"{"n":1,"last":4}"#), ("b", r#"{"n":1,"last":2}"#)])
    );
}

/// The stored position and states of a projection, read with annals-engine from the data
/// directory of a killed server.
fn stored(server: &Server, projection: Uuid) -> (u64, BTreeMap<String, String>) {
    use annals_engine::{Engine, EngineConfig, ScopeId, StreamProcessorId, TenantId};
    let engine = Engine::open(EngineConfig::new(server.dir.join("data"))).unwrap();
    let tenant = engine.tenant(TenantId(DEVELOPMENT)).unwrap();
    let position = tenant
        .stream_processor_state(&StreamProcessorId {
            scope: Uuid::nil(),
            processor: projection,
            source_stream: Uuid::nil(),
        })
        .unwrap()
        .map_or(0, |s| s.event_log_position.0);
    let states = tenant
        .projection_states(ScopeId::DEFAULT, projection)
        .unwrap()
        .into_iter()
        .collect();
    (position, states)
}

/// What `count` makes of the events before `upto`: per event source, n and the last one.
fn fold(events: &[(String, u64)], upto: u64) -> BTreeMap<String, String> {
    let mut states: BTreeMap<String, (u64, u64)> = BTreeMap::new();
    for (source, seq) in events.iter().filter(|(_, seq)| *seq < upto) {
        let entry = states.entry(source.clone()).or_insert((0, 0));
        *entry = (entry.0 + 1, *seq);
    }
    states
        .into_iter()
        .map(|(k, (n, last))| (k, format!(r#"{{"n":{n},"last":{last}}}"#)))
        .collect()
}

#[tokio::test]
async fn killed_while_processing_the_states_are_a_fold_of_the_log_up_to_the_stored_position() {
    let mut server = Server::start().await;
    let projection = Uuid::new_v4();
    let channel = server.private().await;
    let mut events = Vec::new();
    for batch in 0..30u64 {
        let sources: Vec<String> = (0..100u64)
            .map(|i| format!("s{}", (batch * 100 + i) % 7))
            .collect();
        let commits: Vec<(Uuid, &str, &str)> =
            sources.iter().map(|s| (TYPE_A, s.as_str(), "{}")).collect();
        for event in commit(&channel, DEVELOPMENT, &commits).await {
            events.push((
                event.event_source_id.clone(),
                event.event_log_sequence_number,
            ));
        }
    }
    let (head, _) = Head::connect(server.private().await, &Projection::new(projection)).await;
    let folding = head.fold_in_background(count);
    // Kill once a good part is processed, with the head still answering.
    let deadline = tokio::time::Instant::now() + MUST;
    loop {
        let status = management_one(&server, projection)
            .await
            .projection
            .unwrap();
        if status.tenants[0].stream_position >= 800 {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "too slow: {}",
            status.tenants[0].stream_position
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    server.kill().await;
    let (_head, seen) = folding.stop().await;
    let (position, states) = stored(&server, projection);
    assert!(position >= 800, "stored position {position}");
    let mut asked: Vec<u64> = seen.iter().map(seq).collect();
    asked.sort_unstable();
    let twice: Vec<u64> = asked
        .windows(2)
        .filter(|w| w[0] == w[1])
        .map(|w| w[0])
        .collect();
    assert_eq!(
        states,
        fold(&events, position),
        "the states at stored position {position} (events the head was asked about twice: \
         {twice:?}; the last it was asked about: {:?})",
        seen.last().map(seq)
    );
    assert!(seen.len() as u64 >= position);

    server.relaunch().await;
    let (mut head, failure) =
        Head::connect(server.private().await, &Projection::new(projection)).await;
    assert_eq!(failure, None);
    if position < 3000 {
        let first = head.request().await;
        assert_eq!(
            seq(&first),
            position,
            "resumes at the stored position, nothing before it again"
        );
        let next = count(current(&first).2, &first);
        head.replace(&first, &next).await;
    }
    let folding = head.fold_in_background(count);
    let all = fold(&events, 3000);
    let deadline = tokio::time::Instant::now() + MUST;
    while all_states(&server, DEVELOPMENT, projection).await != all {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the replay did not finish"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    folding.stop().await;
}

/// Processes `sources` (one TYPE_A event each, in order) with `count`; returns once the last
/// state is durable.
async fn project(server: &Server, projection: Uuid, sources: &[&str]) {
    let (head, failure) = Head::connect(server.private().await, &Projection::new(projection)).await;
    assert_eq!(failure, None);
    let folding = head.fold_in_background(count);
    let channel = server.private().await;
    let mut last = BTreeMap::new();
    for source in sources {
        let event = commit(&channel, DEVELOPMENT, &[(TYPE_A, source, "{}")]).await;
        let n = last.get(*source).map_or(0, |(n, _)| *n) + 1;
        last.insert(
            (*source).to_owned(),
            (n, event[0].event_log_sequence_number),
        );
    }
    for (source, (n, seq)) in &last {
        let want = format!(r#"{{"n":{n},"last":{seq}}}"#);
        eventually_state(server, DEVELOPMENT, projection, source, &want).await;
    }
    folding.stop().await;
}

#[tokio::test]
async fn the_web_port_and_the_cli_answer_states_as_of_a_point() {
    let server = Server::start().await;
    let projection = Uuid::new_v4();
    project(&server, projection, &["a", "b", "a", "c w"]).await;
    let base = format!(
        "/projections/{DEVELOPMENT}/{}/{projection}/states",
        Uuid::nil()
    );
    let get = |query: String| {
        let path = format!("{base}?{query}");
        async move { Server::http_get(server.ports.web, &path).await }
    };
    let (status, body) = get("key=a&at=2".into()).await;
    assert_eq!(status, 200, "{body}");
    let json: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(json["eventLogPosition"], 2);
    assert_eq!(
        json["states"][0]["state"],
        serde_json::json!({"n": 1, "last": 0})
    );
    assert_eq!(json["states"][0]["type"], "PERSISTED");
    let (_, body) = get("key=c%20w&at=3".into()).await;
    let json: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(json["states"][0]["type"], "CREATED_FROM_INITIAL_STATE");
    assert_eq!(json["states"][0]["key"], "c w");
    // Every key, two per page.
    let (_, body) = get("limit=2".into()).await;
    let json: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(json["eventLogPosition"], 4);
    assert_eq!(json["states"].as_array().unwrap().len(), 2);
    let next = json["next"].as_str().unwrap().to_owned();
    let (_, body) = get(format!("limit=2&after={}", next.replace(' ', "%20"))).await;
    let json: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(json["states"].as_array().unwrap().len(), 1);
    let (status, body) = get("at=99".into()).await;
    assert_eq!(status, 409, "{body}");
    let (status, _) = get("time=yesterday".into()).await;
    assert_eq!(status, 400);
    let (status, body) = Server::http_get(server.ports.web, "/projections").await;
    assert_eq!(status, 200);
    let listed: serde_json::Value = serde_json::from_str(&body).unwrap();
    let entry = &listed["projections"][0];
    assert_eq!(entry["eventLogPosition"], 4);
    assert_eq!(entry["history"]["entries"], 4);

    // The CLI reads the same, every key as of position 3.
    let output = std::process::Command::new(annals_tests::binary())
        .args(["projection", "--runtime"])
        .arg(format!("http://127.0.0.1:{}", server.ports.web.unwrap()))
        .args([
            "--tenant",
            &DEVELOPMENT.to_string(),
            "--projection",
            &projection.to_string(),
            "--at",
            "3",
        ])
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let json: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(json["eventLogPosition"], 3);
    let keys: Vec<&str> = json["states"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["key"].as_str().unwrap())
        .collect();
    assert_eq!(keys, ["a", "b"]);
    assert_eq!(
        json["states"][0]["state"],
        serde_json::json!({"n": 2, "last": 2})
    );
}

#[tokio::test]
async fn the_retention_trims_history_but_every_kept_point_still_answers() {
    use history::as_of::Point;
    let mut server = Server::start().await;
    let projection = Uuid::new_v4();
    project(&server, projection, &["a", "b", "a"]).await;
    assert!(server.stop().await);
    // Everything committed so far is older than the retention now.
    tokio::time::sleep(Duration::from_millis(2100)).await;
    server.args_push(&["--set", "annals:projections:historyRetention=2s"]);
    server.relaunch().await;
    // Trimmed at start-up to the end of what was processed: the current states still answer.
    let deadline = tokio::time::Instant::now() + MUST;
    loop {
        let old = state_at(&server, projection, "a", Point::EventLogPosition(1)).await;
        if let Some(failure) = old.failure {
            assert_eq!(
                failure_id(Some(&failure)),
                Some(Uuid::from_u128(0x2f8b_d4c7_61a3_4e95_b0d2_7c4e_9a13_f6b8)),
                "{}",
                failure.reason
            );
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "nothing was trimmed"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let now = state_at(&server, projection, "a", Point::EventLogPosition(3)).await;
    assert_eq!(now.state.unwrap().state, r#"{"n":2,"last":2}"#);
    let b = state_at(&server, projection, "b", Point::EventLogPosition(3)).await;
    assert_eq!(b.state.unwrap().state, r#"{"n":1,"last":1}"#);
    assert!(server
        .log()
        .contains("projection history older than the retention trimmed"));
}
