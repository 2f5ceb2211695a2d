//! Generates the gRPC code with protox (a pure-Rust protobuf compiler): no system `protoc`.
//! Also writes the encoded `FileDescriptorSet` that the nodes serve over gRPC reflection.

use prost::Message as _;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let files = [
        "wallet/v1/wallet.proto",
        "wallet/v1/cluster.proto",
        "wallet/v1/event_log.proto",
        "wallet/v1/query.proto",
        "wallet/v1/errors.proto",
        "wallet/internal/v1/peer.proto",
        "wallet/internal/v1/read_snapshot.proto",
    ];
    for file in files {
        println!("cargo:rerun-if-changed={file}");
    }
    let descriptors = protox::compile(files, ["."])?;
    let out_dir = std::path::PathBuf::from(std::env::var("OUT_DIR")?);
    std::fs::write(
        out_dir.join("file_descriptor_set.bin"),
        descriptors.encode_to_vec(),
    )?;
    tonic_prost_build::configure()
        // Ordered maps: metadata is compared and hashed by key order, never by a hash
        // map's iteration order.
        .btree_map(".")
        .build_server(true)
        .build_client(true)
        .compile_fds(descriptors)?;
    Ok(())
}
