//! The wallet's gRPC contract, generated from `proto/` at build time.

/// `wallet.v1`: the public API.
pub mod v1 {
    tonic::include_proto!("wallet.v1");
}

/// `wallet.internal.v1`: write-node to write-node transport, and read-node to read-node
/// projection snapshots (`ReadSnapshotService`). Not a client API.
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

/// Request metadata (any value) asking a write node not to forward a write it does not lead
/// to the leader, but to answer NOT_LEADER with the leader's address: sent by clients that
/// route by themselves (the SDKs, given more than one write endpoint) and on every forwarded
/// call, so a write is forwarded at most once. The one definition (`wallet.proto` documents
/// it for every SDK).
pub const NO_FORWARD_METADATA: &str = "wallet-no-forward";

/// `ErrorInfo` metadata marking a rejection an earlier log entry decided (`"true"`).
pub const REPLAYED_METADATA: &str = "replayed";

/// `ErrorInfo` metadata naming the leg (0-based index) a `TransferLegs` refusal is about.
pub const LEG_METADATA: &str = "leg";

/// Most transfers one `TransferBatch` call carries (the contract in `wallet.proto` says it
/// too): the one definition, for the write node's check and the SDKs' batching.
pub const TRANSFER_BATCH_MAX: usize = 1_024;

/// The encoded `google.protobuf.FileDescriptorSet` of every file in `proto/wallet/` (with
/// source comments), as served by gRPC server reflection.
pub const FILE_DESCRIPTOR_SET: &[u8] =
    include_bytes!(concat!(env!("OUT_DIR"), "/file_descriptor_set.bin"));
