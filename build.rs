//! Generates the gRPC code and the reflection descriptor set from `proto/`
//! with protox, a pure-Rust protobuf compiler, so no system `protoc` is needed.

use std::{env, fs, path::PathBuf};

use prost::Message;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    println!("cargo:rerun-if-changed=proto");
    let proto_files: Vec<PathBuf> = fs::read_dir("proto/roster/v1")?
        .map(|entry| entry.map(|e| e.path()))
        .collect::<Result<_, _>>()?;
    let mut proto_files: Vec<PathBuf> = proto_files
        .into_iter()
        .filter(|path| path.extension().is_some_and(|ext| ext == "proto"))
        .collect();
    proto_files.sort();

    let mut compiler = protox::Compiler::new(["proto"])?;
    // Reflection answers for the well-known types too, so grpcurl needs no proto files.
    compiler.include_imports(true).include_source_info(true);
    compiler.open_files(&proto_files)?;
    let descriptors = compiler.file_descriptor_set();

    let out_dir = PathBuf::from(env::var("OUT_DIR")?);
    fs::write(
        out_dir.join("roster_descriptor.bin"),
        descriptors.encode_to_vec(),
    )?;

    tonic_prost_build::configure()
        .build_client(true)
        .build_server(true)
        .compile_fds(descriptors)?;
    Ok(())
}
