//! The data directory's free space (`annals:disk:lowSpace`): below the threshold the runtime
//! warns in its log, `/healthz` reports Degraded (still 200: it serves), and `annals_disk_low`
//! is 1; above it, Healthy and 0. Thresholds at the two ends (all of the file system, one
//! byte) make both cases certain on any disk.
#![allow(clippy::unwrap_used, reason = "tests")]

use annals_tests::{log_tail, metric, Server};

async fn report(server: &Server) -> (u16, serde_json::Value) {
    let (status, body) = Server::http_get(server.ports.web, "/healthz").await;
    (status, serde_json::from_str(&body).unwrap())
}

async fn metrics(server: &Server) -> String {
    Server::http_get(server.ports.metrics, "/metrics").await.1
}

#[tokio::test]
async fn a_low_disk_is_warned_of_degraded_and_counted() {
    let server = Server::start_with(&[], &["--set", "annals:disk:lowSpace=100%"], &[]).await;
    let (status, report) = report(&server).await;
    assert_eq!(status, 200, "{report}");
    assert_eq!(report["Status"], "Degraded", "{report}");
    let disk = &report["Entries"]["DiskSpaceHealthCheck"];
    assert_eq!(disk["Status"], "Degraded", "{report}");
    assert!(disk["Data"]["TotalBytes"].as_u64().unwrap() > 0, "{report}");
    assert_eq!(
        report["Entries"]["EventStoreHealthCheck"]["Status"],
        "Healthy"
    );
    let text = metrics(&server).await;
    assert_eq!(metric(&text, "annals_disk_low", &[]), Some(1.0), "{text}");
    assert!(metric(&text, "annals_disk_total_bytes", &[]).unwrap() > 0.0);
    let log = server.log();
    assert!(
        log.lines()
            .any(|l| l.contains("WARN") && l.contains("disk space low")),
        "{}",
        log_tail(&log)
    );
}

#[tokio::test]
async fn a_disk_with_room_is_healthy() {
    let server = Server::start_with(&[], &["--set", "annals:disk:lowSpace=1B"], &[]).await;
    let (status, report) = report(&server).await;
    assert_eq!(status, 200, "{report}");
    assert_eq!(report["Status"], "Healthy", "{report}");
    assert_eq!(
        report["Entries"]["DiskSpaceHealthCheck"]["Status"],
        "Healthy"
    );
    let text = metrics(&server).await;
    assert_eq!(metric(&text, "annals_disk_low", &[]), Some(0.0), "{text}");
    assert!(metric(&text, "annals_disk_free_bytes", &[]).unwrap() > 0.0);
    assert!(!server.log().contains("disk space low"));
}
