//! MongoDB dumps in the tests: decoded and edited by pymongo's `bson` (an implementation
//! independent of annals, from `ANNALS_PYTHON`, which `.ci/run` points at a venv with it), and
//! `annals export` / `annals import` run as commands.
//!
//! Decoded values are tagged lists that keep BSON types and field order (see
//! tests/mongo/decode_dump.py); the constructors here build expected ones by hand.

use std::path::Path;
use std::process::Command;

use serde_json::{json, Value};
use uuid::Uuid;

use crate::binary;

// The tagged values of decode_dump.py, built by hand.
pub fn doc(fields: &[(&str, Value)]) -> Value {
    json!([
        "doc",
        fields
            .iter()
            .map(|(k, v)| json!([k, v]))
            .collect::<Vec<_>>()
    ])
}
pub fn array(items: &[Value]) -> Value {
    json!(["array", items])
}
pub fn dec(n: u64) -> Value {
    json!(["decimal128", n.to_string()])
}
pub fn guid(id: Uuid) -> Value {
    json!(["uuid", id.hyphenated().to_string()])
}
pub fn guid_text(id: &str) -> Value {
    json!(["uuid", id])
}
pub fn string(s: &str) -> Value {
    json!(["string", s])
}
pub fn int32(n: i32) -> Value {
    json!(["int32", n])
}
pub fn int64(n: i64) -> Value {
    json!(["int64", n])
}
pub fn boolean(b: bool) -> Value {
    json!(["bool", b])
}
pub fn date(ms: i64) -> Value {
    json!(["date", ms])
}
pub fn field<'a>(document: &'a Value, name: &str) -> &'a Value {
    document[1]
        .as_array()
        .unwrap()
        .iter()
        .find(|pair| pair[0] == name)
        .map_or_else(|| panic!("no field {name} in {document}"), |pair| &pair[1])
}

/// Every ObjectId replaced by a placeholder: the server would choose them.
pub fn without_object_ids(value: &Value) -> Value {
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
pub fn decode(dir: &Path) -> Value {
    let output = python("decode_dump.py", &[dir.as_os_str()]);
    serde_json::from_slice(&output).unwrap()
}

/// Runs one of tests/mongo/*.py with `args`; returns its stdout. Panics, with its stderr,
/// when it fails.
pub fn python(script: &str, args: &[&std::ffi::OsStr]) -> Vec<u8> {
    let python = std::env::var("ANNALS_PYTHON").unwrap_or_else(|_| "python3".into());
    let script = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("mongo")
        .join(script);
    let output = Command::new(&python)
        .arg(&script)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("running {python}: {e} (set ANNALS_PYTHON, see .ci/run)"));
    assert!(
        output.status.success(),
        "{python} {} failed (pymongo missing? .ci/run installs it into a venv and sets \
         ANNALS_PYTHON):\n{}",
        script.display(),
        String::from_utf8_lossy(&output.stderr)
    );
    output.stdout
}

pub fn documents<'a>(dump: &'a Value, collection: &str) -> &'a Vec<Value> {
    dump[collection]["documents"]
        .as_array()
        .unwrap_or_else(|| panic!("no collection {collection} in {}", collections(dump)))
}

pub fn collections(dump: &Value) -> String {
    let mut names: Vec<&String> = dump.as_object().unwrap().keys().collect();
    names.sort();
    format!("{names:?}")
}

/// Runs `annals export --data-dir DATA --tenant TENANT --out OUT` with `more` arguments;
/// returns (success, stdout, stderr).
pub fn export(data: &Path, tenant: Uuid, out: &Path, more: &[&str]) -> (bool, String, String) {
    let out = ["--out".as_ref(), out.as_os_str()];
    let more: Vec<&std::ffi::OsStr> = more.iter().map(std::ffi::OsStr::new).collect();
    annals("export", data, tenant, &[&out[..], &more].concat())
}

/// Runs `annals import --data-dir DATA --tenant TENANT DUMP`; returns (success, stdout,
/// stderr).
pub fn import(data: &Path, tenant: Uuid, dump: &Path) -> (bool, String, String) {
    import_with(data, tenant, dump, &[])
}

/// [`import`] with `more` arguments (`--archive`, `--gzip`).
pub fn import_with(
    data: &Path,
    tenant: Uuid,
    dump: &Path,
    more: &[&str],
) -> (bool, String, String) {
    let mut args: Vec<&std::ffi::OsStr> = more.iter().map(std::ffi::OsStr::new).collect();
    args.push(dump.as_os_str());
    annals("import", data, tenant, &args)
}

fn annals(
    command: &str,
    data: &Path,
    tenant: Uuid,
    more: &[&std::ffi::OsStr],
) -> (bool, String, String) {
    let tenant = tenant.to_string();
    let mut args: Vec<&std::ffi::OsStr> = vec![
        command.as_ref(),
        "--data-dir".as_ref(),
        data.as_os_str(),
        "--tenant".as_ref(),
        tenant.as_ref(),
    ];
    args.extend_from_slice(more);
    run_annals(&args)
}

/// Runs the `annals` binary with `args`; returns (success, stdout, stderr).
pub fn run_annals(args: &[&std::ffi::OsStr]) -> (bool, String, String) {
    let output = Command::new(binary())
        .args(args)
        .env_remove("RUST_LOG")
        .output()
        .unwrap();
    (
        output.status.success(),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}
