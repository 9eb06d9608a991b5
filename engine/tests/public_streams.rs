//! Public streams, in a namespace of their own: appended at an expected position with state in
//! one write, read by position and by partition, listed with their ends, apart from every
//! scoped stream of the same id, and announced to waiting producers without polling.

#![allow(
    clippy::unwrap_used,
    reason = "test helpers fail loudly on the first unexpected error; `expect` would break as helpers move"
)]

mod common;

use std::{
    future::Future,
    pin::pin,
    task::{Context, Poll, Waker},
    time::Duration,
};

use annals_engine::{
    uuid::Uuid, Error, EventLogSequenceNumber, Listener, LogError, ScopeId, StateBatch,
    StreamPosition, StreamProcessorId, StreamProcessorState,
};
use common::*;

fn seq(n: u64) -> EventLogSequenceNumber {
    EventLogSequenceNumber(n)
}

fn filter_state(position: u64) -> (StreamProcessorId, StreamProcessorState) {
    (
        StreamProcessorId {
            scope: Uuid::max(),
            processor: Uuid::from_u128(0xf1),
            source_stream: Uuid::nil(),
        },
        StreamProcessorState {
            position: StreamPosition(position),
            event_log_position: seq(position),
            ..StreamProcessorState::default()
        },
    )
}

#[test]
fn public_streams_are_written_read_and_listed_apart_from_scoped_streams() {
    let dir = tempfile::tempdir().unwrap();
    let a = Uuid::from_u128(0xa);
    let b = Uuid::from_u128(0xb);
    let (processor, state) = filter_state(3);
    {
        let engine = open(dir.path());
        let t = engine.create_tenant(TENANT).unwrap();
        assert_eq!(t.public_streams().unwrap(), vec![]);
        assert_eq!(t.public_stream_end(a).unwrap(), StreamPosition::ZERO);

        let mut batch = StateBatch::new();
        batch.put_stream_processor(&processor, &state);
        let end = t
            .append_to_public_stream_with_state(
                a,
                StreamPosition::ZERO,
                &[(seq(0), "p"), (seq(1), "q"), (seq(2), "p")],
                batch,
            )
            .unwrap();
        assert_eq!(end, StreamPosition(3));
        assert_eq!(
            t.stream_processor_state(&processor).unwrap(),
            Some(state.clone())
        );

        // A stale writer writes nothing, not even its state.
        let mut batch = StateBatch::new();
        batch.put_stream_processor(&processor, &filter_state(9).1);
        assert!(matches!(
            t.append_to_public_stream_with_state(a, StreamPosition(1), &[(seq(5), "p")], batch),
            Err(Error::WrongStreamPosition { expected, actual })
                if expected == StreamPosition(1) && actual == StreamPosition(3)
        ));
        assert_eq!(
            t.stream_processor_state(&processor).unwrap(),
            Some(state.clone())
        );

        t.append_to_public_stream_with_state(
            b,
            StreamPosition::ZERO,
            &[(seq(4), "r")],
            StateBatch::new(),
        )
        .unwrap();
        // Private streams of the same ids, in any scope, are other streams.
        t.append_to_stream(ScopeId::DEFAULT, a, StreamPosition::ZERO, &[(seq(9), "x")])
            .unwrap();
    }
    let engine = open(dir.path());
    let t = engine.tenant(TENANT).unwrap();
    assert_eq!(
        t.public_streams().unwrap(),
        vec![(a, StreamPosition(3)), (b, StreamPosition(1))]
    );
    let read: Vec<(u64, u64, String)> = t
        .read_public_stream(a, StreamPosition(1), 10)
        .unwrap()
        .into_iter()
        .map(|e| (e.position.0, e.event_log_sequence_number.0, e.partition))
        .collect();
    assert_eq!(read, vec![(1, 1, "q".into()), (2, 2, "p".into())]);
    let p: Vec<(u64, u64)> = t
        .read_public_stream_partition(a, "p", StreamPosition::ZERO, 10)
        .unwrap()
        .into_iter()
        .map(|e| (e.position.0, e.event_log_sequence_number.0))
        .collect();
    assert_eq!(p, vec![(0, 0), (2, 2)]);
    assert_eq!(
        t.read_public_stream(a, StreamPosition(0), 1).unwrap().len(),
        1
    );
    assert_eq!(
        t.read_stream(ScopeId::DEFAULT, a, StreamPosition::ZERO, 10)
            .unwrap()
            .len(),
        1
    );
    assert_eq!(
        t.stream_end(ScopeId(Uuid::from_u128(5)), a).unwrap(),
        StreamPosition::ZERO
    );
    // The scope older versions kept public streams under is closed to scoped streams.
    for result in [
        t.stream_end(ScopeId(Uuid::max()), a).map(|_| ()),
        t.append_to_stream(
            ScopeId(Uuid::max()),
            a,
            StreamPosition::ZERO,
            &[(seq(0), "p")],
        )
        .map(|_| ()),
        t.read_stream(ScopeId(Uuid::max()), a, StreamPosition::ZERO, 1)
            .map(|_| ()),
    ] {
        assert!(
            matches!(result, Err(Error::Log(LogError::InvalidRequest(_)))),
            "{result:?}"
        );
    }
}

#[test]
fn an_append_wakes_a_listener_taken_before_it_and_not_one_taken_after() {
    let dir = tempfile::tempdir().unwrap();
    let engine = open(dir.path());
    let t = engine.create_tenant(TENANT).unwrap();
    let stream = Uuid::from_u128(0xa);

    // Blocking: a thread appends while this one waits.
    let before = t.public_stream_appended();
    std::thread::scope(|s| {
        s.spawn(|| {
            std::thread::sleep(Duration::from_millis(20));
            t.append_to_public_stream_with_state(
                stream,
                StreamPosition::ZERO,
                &[(seq(0), "p")],
                StateBatch::new(),
            )
            .unwrap();
        });
        assert!(
            before.wait_timeout(Duration::from_secs(30)).is_some(),
            "the append woke nobody"
        );
    });
    // A listener taken after the append hears nothing of it: listen first, then check.
    let after = t.public_stream_appended();
    assert!(after.wait_timeout(Duration::from_millis(50)).is_none());

    // As a future: pending until an append, ready after it.
    let mut listener = pin!(t.public_stream_appended());
    let mut cx = Context::from_waker(Waker::noop());
    assert!(listener.as_mut().poll(&mut cx).is_pending());
    // An append of no entries (state only) announces nothing.
    let (processor, state) = filter_state(1);
    let mut batch = StateBatch::new();
    batch.put_stream_processor(&processor, &state);
    t.append_to_public_stream_with_state(stream, StreamPosition(1), &[], batch)
        .unwrap();
    assert!(listener.as_mut().poll(&mut cx).is_pending());
    t.append_to_public_stream_with_state(
        stream,
        StreamPosition(1),
        &[(seq(1), "p")],
        StateBatch::new(),
    )
    .unwrap();
    assert_eq!(listener.as_mut().poll(&mut cx), Poll::Ready(()));

    // Deleting the tenant wakes waiters too, so they find it gone.
    let waiting = t.public_stream_appended();
    engine.delete_tenant(TENANT).unwrap();
    assert!(waiting.wait_timeout(Duration::from_secs(30)).is_some());
    assert!(t.public_streams().is_err());
}
