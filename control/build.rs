//! Generates the gRPC code from `proto/sluice/v1/*.proto` with pure-Rust
//! tools: protox parses the files into a descriptor set (no `protoc`
//! binary anywhere), tonic-prost-build generates messages, client and server.

use std::path::PathBuf;

const PROTOS: &[&str] = &[
    "proto/sluice/v1/objects.proto",
    "proto/sluice/v1/stats.proto",
    "proto/sluice/v1/control.proto",
];

fn main() -> Result<(), Box<dyn std::error::Error>> {
    for p in PROTOS {
        println!("cargo:rerun-if-changed={p}");
    }
    let fds = protox::compile(PROTOS, ["proto"])?;
    let out = PathBuf::from(std::env::var("OUT_DIR")?);
    tonic_prost_build::configure()
        .out_dir(&out)
        .btree_map(".")
        .type_attribute(".", "#[derive(serde::Serialize)]")
        .compile_fds(fds)?;
    Ok(())
}
