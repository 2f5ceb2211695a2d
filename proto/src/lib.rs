//! The wallet's gRPC contract, generated from `proto/` at build time.

/// `wallet.v1`: the public API.
pub mod v1 {
    tonic::include_proto!("wallet.v1");
}

/// `wallet.internal.v1`: write-node to write-node transport. Not a client API.
pub mod internal {
    tonic::include_proto!("wallet.internal.v1");
}
