//! The `annals` command line: help, and configuration errors that stop startup with a message
//! naming the key (before any port is bound or any file written).
#![allow(clippy::unwrap_used, reason = "tests")]

use std::process::Command;

fn annals(dir: &std::path::Path) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_annals"));
    command.current_dir(dir).env_remove("RUST_LOG");
    command
}

#[test]
fn help_lists_the_serve_flags() {
    let dir = tempfile::tempdir().unwrap();
    let out = annals(dir.path())
        .args(["serve", "--help"])
        .output()
        .unwrap();
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
fn a_bad_port_in_the_environment_names_its_key() {
    let dir = tempfile::tempdir().unwrap();
    let out = annals(dir.path())
        .env("DOLITTLE__RUNTIME__ENDPOINTS__PRIVATE__PORT", "fifty")
        .output()
        .unwrap();
    assert!(!out.status.success());
    let text = String::from_utf8_lossy(&out.stderr);
    assert!(
        text.contains("dolittle:runtime:endpoints:private:port"),
        "{text}"
    );
    assert!(
        !dir.path().join("data").exists(),
        "nothing is written for a bad configuration"
    );
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
    let out = annals(dir.path()).output().unwrap();
    assert!(!out.status.success());
    let text = String::from_utf8_lossy(&out.stderr);
    assert!(
        text.contains("dolittle:runtime:tenants:not-a-guid"),
        "{text}"
    );

    std::fs::write(dir.path().join(".dolittle/runtime.yml"), "tenants: [").unwrap();
    let out = annals(dir.path()).output().unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("runtime.yml"));
}
