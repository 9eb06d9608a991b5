//! Compiles our .proto files into Rust with tonic and prost: `proto/` (wire-identical to
//! Dolittle Contracts v7.8.1) and `proto-v5/` (v5.4.0, the generation of JavaScript SDK 17;
//! into a module tree of its own, as its packages have the same names). protoc comes from the
//! protoc-bin-vendored crate, so nothing has to be installed on the machine; the descriptor
//! sets are kept for gRPC server reflection and for rewriting 5.4 messages.

use std::path::{Path, PathBuf};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("proto");
    let files = protos(&root)?;
    let out = PathBuf::from(std::env::var("OUT_DIR")?);
    let protoc = protoc_bin_vendored::protoc_bin_path()?;
    let include = protoc_bin_vendored::include_path()?;
    let mut config = tonic_prost_build::Config::new();
    config.protoc_executable(&protoc);
    tonic_prost_build::configure()
        .build_client(true)
        .build_server(true)
        // No `Client::connect(url)` constructors: the contract's reverse-call services have an
        // rpc named Connect, whose client method would clash with it. Clients are made with
        // `Client::new(channel)`.
        .build_transport(false)
        // Every rpc a service does not implement answers UNIMPLEMENTED.
        .generate_default_stubs(true)
        // One module tree (dolittle::runtime::events::...) in one file, so packages whose
        // services share a name (two EventHandlers, two Projections...) never clash.
        .include_file("dolittle.rs")
        .file_descriptor_set_path(out.join("dolittle_descriptor.bin"))
        .compile_with_config(config, &files, &[root, include.clone()])?;

    let root_v5 = Path::new(env!("CARGO_MANIFEST_DIR")).join("proto-v5");
    let files_v5 = protos(&root_v5)?;
    let out_v5 = out.join("v5");
    std::fs::create_dir_all(&out_v5)?;
    let mut config = tonic_prost_build::Config::new();
    config.protoc_executable(protoc);
    tonic_prost_build::configure()
        // The runtime serves 5.4 through the 7.8.1 services; clients are for tests.
        .build_client(true)
        .build_server(false)
        .build_transport(false)
        .out_dir(&out_v5)
        .include_file("dolittle_v5.rs")
        .file_descriptor_set_path(out.join("dolittle_v5_descriptor.bin"))
        .compile_with_config(config, &files_v5, &[root_v5, include])?;
    Ok(())
}

/// Every `.proto` file under `root`, sorted, each watched for changes.
fn protos(root: &Path) -> Result<Vec<PathBuf>, Box<dyn std::error::Error>> {
    let mut files = Vec::new();
    collect(root, &mut files)?;
    files.sort();
    println!("cargo:rerun-if-changed={}", root.display());
    for file in &files {
        println!("cargo:rerun-if-changed={}", file.display());
    }
    Ok(files)
}

/// Every `.proto` file under `dir`.
fn collect(dir: &Path, files: &mut Vec<PathBuf>) -> std::io::Result<()> {
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        if path.is_dir() {
            collect(&path, files)?;
        } else if path.extension().is_some_and(|e| e == "proto") {
            files.push(path);
        }
    }
    Ok(())
}
