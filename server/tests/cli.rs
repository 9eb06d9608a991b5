//! The `annals` command line: help, and configuration errors that stop startup with a message
//! naming the key (before any port is bound or any file written).
#![allow(clippy::unwrap_used, reason = "tests")]

use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

fn annals(dir: &std::path::Path) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_annals"));
    command
        .current_dir(dir)
        .env_remove("RUST_LOG")
        // Were a bad configuration accepted, the server would start: keep it off the
        // default ports of anything else on the machine.
        .args([
            "--private-port",
            "0",
            "--public-port",
            "0",
            "--management-port",
            "0",
        ])
        .args(["--web-port", "0", "--metrics-port", "0"]);
    command
}

/// Runs to the end, or fails the test after 30 s (a configuration error that is not raised
/// would leave the server running).
fn run(command: &mut Command) -> Output {
    let mut child = command
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    while child.try_wait().unwrap().is_none() {
        if Instant::now() > deadline {
            child.kill().unwrap();
            panic!("annals was still running after 30 s");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    child.wait_with_output().unwrap()
}

#[test]
fn help_lists_the_serve_flags() {
    let out = run(Command::new(env!("CARGO_BIN_EXE_annals")).args(["serve", "--help"]));
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout).unwrap();
    for flag in [
        "--data-dir",
        "--private-port",
        "--public-port",
        "--management-port",
        "--web-port",
        "--metrics-port",
        "--config",
        "--tenant",
    ] {
        assert!(text.contains(flag), "{flag} missing from:\n{text}");
    }
}

#[test]
fn bad_values_in_the_environment_name_their_key() {
    for (variable, value, key) in [
        (
            "DOLITTLE__RUNTIME__ENDPOINTS__PUBLIC__ENABLED",
            "maybe",
            "dolittle:runtime:endpoints:public:enabled",
        ),
        (
            "DOLITTLE__RUNTIME__PLATFORM__MICROSERVICEID",
            "orders",
            "dolittle:runtime:platform:microserviceID",
        ),
        (
            "DOLITTLE__RUNTIME__ANNALS__LISTENADDRESS",
            "here",
            "dolittle:runtime:annals:listenAddress",
        ),
    ] {
        let dir = tempfile::tempdir().unwrap();
        let out = run(annals(dir.path()).env(variable, value));
        assert!(!out.status.success(), "{variable}={value} was accepted");
        let text = String::from_utf8_lossy(&out.stderr);
        assert!(text.contains(key), "{key} missing from:\n{text}");
        assert!(
            !dir.path().join("data").exists(),
            "nothing is written for a bad configuration"
        );
    }
}

#[test]
fn a_port_flag_that_is_not_a_port_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let out = run(Command::new(env!("CARGO_BIN_EXE_annals"))
        .current_dir(dir.path())
        .args(["serve", "--private-port", "70000"]));
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("--private-port"));
}

#[test]
fn a_bad_file_names_the_file_and_a_bad_tenant_its_key() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join(".dolittle")).unwrap();
    std::fs::write(
        dir.path().join(".dolittle/runtime.yml"),
        "tenants:\n  not-a-guid: {}\n",
    )
    .unwrap();
    let out = run(&mut annals(dir.path()));
    assert!(!out.status.success());
    let text = String::from_utf8_lossy(&out.stderr);
    assert!(
        text.contains("dolittle:runtime:tenants:not-a-guid"),
        "{text}"
    );

    std::fs::write(dir.path().join(".dolittle/runtime.yml"), "tenants: [").unwrap();
    let out = run(&mut annals(dir.path()));
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("runtime.yml"));
}
