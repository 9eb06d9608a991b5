//! Compiles our .proto files (wire-identical to Dolittle Contracts v7.8.1) into Rust with
//! tonic and prost. protoc comes from the protoc-bin-vendored crate, so nothing has to be
//! installed on the machine; the descriptor set is kept for gRPC server reflection.

use std::path::{Path, PathBuf};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("proto");
    let mut files = Vec::new();
    collect(&root, &mut files)?;
    files.sort();
    println!("cargo:rerun-if-changed={}", root.display());
    for file in &files {
        println!("cargo:rerun-if-changed={}", file.display());
    }
    let out = PathBuf::from(std::env::var("OUT_DIR")?);
    let protoc = protoc_bin_vendored::protoc_bin_path()?;
    let include = protoc_bin_vendored::include_path()?;
    let mut config = tonic_prost_build::Config::new();
    config.protoc_executable(protoc);
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
        .compile_with_config(config, &files, &[root, include])?;
    Ok(())
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
