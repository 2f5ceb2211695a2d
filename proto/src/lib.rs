//! The wallet's gRPC contract, generated from `proto/` at build time.

/// `wallet.v1`: the public API.
pub mod v1 {
    tonic::include_proto!("wallet.v1");
}

/// `wallet.internal.v1`: write-node to write-node transport. Not a client API.
pub mod internal {
    tonic::include_proto!("wallet.internal.v1");
}

pub mod error;
pub mod guard;
pub mod reflection;
pub mod token;

/// The `google.rpc.ErrorInfo` domain of every wallet error, from every node and layer: the
/// one definition (the SDKs match on it).
pub const ERROR_DOMAIN: &str = "wallet.ledger";

/// Most transfers one `TransferBatch` call carries (the contract in `wallet.proto` says it
/// too): the one definition, for the write node's check and the SDKs' batching.
pub const TRANSFER_BATCH_MAX: usize = 1_024;

/// The encoded `google.protobuf.FileDescriptorSet` of every file in `proto/wallet/` (with
/// source comments), as served by gRPC server reflection.
pub const FILE_DESCRIPTOR_SET: &[u8] =
    include_bytes!(concat!(env!("OUT_DIR"), "/file_descriptor_set.bin"));
