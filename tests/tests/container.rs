//! The container image, without a container daemon: `container/image.sh assemble` lays out the
//! image's files around the binary under test, which then runs from that layout as the image
//! runs it (working directory `/app`, the `serve` command, the shipped configuration); and the
//! Dockerfile, the compose file and the Kubernetes manifest must agree with that layout and
//! with the runtime's own default ports, so none of them can silently rot.

#![allow(clippy::unwrap_used, reason = "tests")]

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::time::Duration;

use annals_server::{RuntimeConfig, Sources};
use annals_tests::{binary, commit, Ports, DEVELOPMENT};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use uuid::Uuid;

fn repository() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_owned()
}

fn container_file(name: &str) -> String {
    std::fs::read_to_string(repository().join("container").join(name)).unwrap()
}

/// The runtime's configuration with no file at all.
fn defaults() -> RuntimeConfig {
    let empty = tempfile::tempdir().unwrap();
    RuntimeConfig::load(&Sources {
        working_dir: empty.path().to_owned(),
        ..Sources::default()
    })
    .unwrap()
}

/// The ports the runtime listens on by default.
fn default_ports() -> BTreeSet<u16> {
    let e = defaults().endpoints;
    [
        e.private.port,
        e.public.port,
        e.management.port,
        e.management_web.port,
        e.web.port,
        e.metrics.port,
        e.legacy.port,
    ]
    .into_iter()
    .collect()
}

/// `GET path` over HTTP/1.1; the status code.
async fn http_status(port: u16, path: &str) -> u16 {
    let mut stream = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .unwrap();
    let request = format!("GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut answer = String::new();
    stream.read_to_string(&mut answer).await.unwrap();
    answer
        .split_whitespace()
        .nth(1)
        .and_then(|code| code.parse().ok())
        .unwrap_or_else(|| panic!("not an HTTP answer: {answer}"))
}

#[tokio::test]
async fn the_assembled_image_runs_from_app_with_its_configuration_and_data() {
    let root = tempfile::tempdir().unwrap();
    let status = std::process::Command::new("bash")
        .arg(repository().join("container/image.sh"))
        .arg("assemble")
        .arg(binary())
        .arg(root.path())
        .status()
        .unwrap();
    assert!(status.success());
    let app = root.path().join("app");
    let annals = root.path().join("usr/local/bin/annals");
    assert!(annals.is_file());

    // The shipped configuration, read from /app as the image reads it.
    let config = RuntimeConfig::load(&Sources {
        working_dir: app.clone(),
        ..Sources::default()
    })
    .unwrap();
    assert_eq!(config.tenants, vec![DEVELOPMENT]);
    assert_eq!(config.data_dir, app.join("data"));

    // The image's command, with free ports instead of the defaults.
    let ready = root.path().join("ready.json");
    let mut child = tokio::process::Command::new(&annals)
        .arg("serve")
        .args(["--listen-address", "127.0.0.1"])
        .args(["--private-port", "0", "--public-port", "0"])
        .args(["--management-port", "0", "--management-web-port", "0"])
        .args(["--web-port", "0"])
        .args(["--metrics-port", "0", "--legacy-port", "0"])
        .args(["--set", "annals:disk:lowSpace=0"])
        .arg("--ready-file")
        .arg(&ready)
        .current_dir(&app)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    let ports: Ports = loop {
        if let Ok(text) = std::fs::read_to_string(&ready) {
            break serde_json::from_str(&text).unwrap();
        }
        assert!(child.try_wait().unwrap().is_none(), "annals exited");
        assert!(
            tokio::time::Instant::now() < deadline,
            "annals did not start"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert_eq!(http_status(ports.web.unwrap(), "/healthz").await, 200);
    let channel = tonic::transport::Endpoint::from_shared(format!(
        "http://127.0.0.1:{}",
        ports.private.unwrap()
    ))
    .unwrap()
    .connect()
    .await
    .unwrap();
    let committed = commit(&channel, DEVELOPMENT, &[(Uuid::from_u128(1), "es", "{}")]).await;
    assert_eq!(committed[0].event_log_sequence_number, 0);
    // The event store is under /app/data, the image's volume.
    let tenants = std::fs::read_dir(app.join("data/tenants")).unwrap();
    assert_eq!(
        tenants
            .map(|entry| entry.unwrap().file_name().into_string().unwrap())
            .collect::<Vec<_>>(),
        vec![DEVELOPMENT.to_string()]
    );
    child.kill().await.unwrap();
}

#[test]
fn the_dockerfile_compose_file_and_manifest_agree_with_the_runtime() {
    let ports = default_ports();
    let dockerfile = container_file("Dockerfile");
    let lines: Vec<&str> = dockerfile.lines().map(str::trim).collect();
    for wanted in [
        "RUN container/image.sh deps && container/image.sh build /out",
        "COPY --from=build /out/ /",
        "USER annals",
        "WORKDIR /app",
        "VOLUME /app/data",
        "ENTRYPOINT [\"/usr/local/bin/annals\"]",
        "CMD [\"serve\"]",
    ] {
        assert!(lines.contains(&wanted), "the Dockerfile lacks `{wanted}`");
    }
    let exposed: BTreeSet<u16> = lines
        .iter()
        .filter_map(|l| l.strip_prefix("EXPOSE "))
        .flat_map(|ports| ports.split_whitespace().map(|p| p.parse::<u16>().unwrap()))
        .collect();
    assert_eq!(exposed, ports, "EXPOSE and the default ports differ");

    let manifest = container_file("kubernetes.yaml");
    for port in &ports {
        assert!(
            manifest.contains(&format!("containerPort: {port} }}")),
            "the manifest does not name port {port}"
        );
    }
    assert_eq!(
        manifest
            .matches("httpGet: { path: /healthz, port: web }")
            .count(),
        2,
        "readiness and liveness on /healthz"
    );
    assert!(manifest.contains("runAsNonRoot: true"));
    assert!(manifest.contains("mountPath: /app/data"));

    let compose = container_file("compose.yaml");
    assert!(compose.contains("dockerfile: container/Dockerfile"));
    assert!(compose.contains("annals-data:/app/data"));
    let legacy = defaults().endpoints.legacy.port;
    assert!(compose.contains(&format!("ANNALS_PORT: \"{legacy}\"")));
}
