//! What one client may hold of a gRPC port (`annals:connections:*`): connections that never
//! send anything are closed after the handshake timeout, one over the limit is closed at once
//! and the refusal logged, and neither keeps a real head out for longer than the timeout; the
//! HTTP ports close silent connections alike.
#![allow(clippy::unwrap_used, reason = "tests")]

use std::time::Duration;

use annals_tests::{commit, log_tail, Server, DEVELOPMENT};
use tokio::io::AsyncReadExt as _;
use tokio::net::TcpStream;
use tokio::time::Instant;
use uuid::Uuid;

/// How long anything that must happen may take.
const WAIT: Duration = Duration::from_secs(30);

/// Reads until the server closes `stream` (end or reset); fails after WAIT.
async fn closed_by_server(stream: &mut TcpStream) {
    let mut buffer = [0u8; 256];
    let deadline = Instant::now() + WAIT;
    loop {
        match tokio::time::timeout_at(deadline, stream.read(&mut buffer)).await {
            Err(elapsed) => panic!("the server kept a silent connection open ({elapsed})"),
            Ok(Ok(0) | Err(_)) => return,
            // HTTP/2 settings the server sends first: keep reading.
            Ok(Ok(_)) => {}
        }
    }
}

#[tokio::test]
async fn silent_connections_are_closed_and_do_not_keep_heads_out() {
    let server = Server::start_with(
        &[],
        &[
            "--set",
            "annals:connections:maxPerPort=4",
            "--set",
            "annals:connections:handshakeTimeout=1s",
        ],
        &[],
    )
    .await;
    let port = server.ports.private.unwrap();
    // Four connections that never send a byte take every place on the port.
    let mut silent = Vec::new();
    for _ in 0..4 {
        silent.push(TcpStream::connect(("127.0.0.1", port)).await.unwrap());
    }
    // One more is closed at once, and the operator is told why.
    let mut over = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
    closed_by_server(&mut over).await;
    let deadline = Instant::now() + WAIT;
    while !server.log().contains("refusing connections") {
        assert!(Instant::now() < deadline, "{}", log_tail(&server.log()));
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // The silent ones are closed by the server once their time is up...
    for stream in &mut silent {
        closed_by_server(stream).await;
    }
    // ...so a head gets in: its commit goes through.
    let channel = Server::channel(Some(port)).await;
    let committed = commit(&channel, DEVELOPMENT, &[(Uuid::from_u128(1), "s", "{}")]).await;
    assert_eq!(committed.len(), 1);
    // The HTTP ports stand behind the same gate: a silent connection to /healthz's port is
    // closed too, and the port still answers.
    let mut web = TcpStream::connect(("127.0.0.1", server.ports.web.unwrap()))
        .await
        .unwrap();
    closed_by_server(&mut web).await;
    let (status, _) = Server::http_get(server.ports.web, "/healthz").await;
    assert_eq!(status, 200);
    // Only the connection over the limit was refused.
    assert_eq!(
        server.log().matches("refusing connections").count(),
        1,
        "{}",
        log_tail(&server.log())
    );
}
