//! Security shared by the write node, the read node and walletctl: TLS and mTLS settings
//! (rustls through tonic's `tls-ring`), the peer check that guards raft traffic, bearer
//! tokens with scopes, the auth layer that enforces them, and the rule that a node never
//! listens beyond loopback without TLS and tokens unless told `--insecure`.
//!
//! The model (ARCHITECTURE.md, "Security", says the same for operators):
//! - Client traffic (`WalletService`, `ClusterService`, `EventLogService`, `QueryService`)
//!   carries `authorization: Bearer <token>`; the node keeps only SHA-256 hashes of tokens,
//!   each with scopes. See [`auth::required_scopes`] for the RPC -> scope table.
//! - Raft traffic (`wallet.internal.PeerService`) carries no token: it is accepted only on a
//!   TLS connection whose client certificate chains to the cluster's peer CA and names one of
//!   the configured peers (a DNS or IP SAN equal to a peer's host).
//! - `grpc.health.v1.Health` and server reflection stay open, for probes and tooling.

pub mod auth;
pub mod certs;
pub mod exposure;
pub mod tls;
pub mod tokens;

pub use auth::{AuthLayer, REASON_INVALID_TOKEN, REASON_MISSING_TOKEN, REASON_SCOPE_DENIED};
pub use exposure::{Protection, check_exposure, tokens_for};
pub use tls::{ClientTls, PeerIdentity, PeerTls, PeerVerifier, ServerTls};
pub use tokens::{Scope, TokenTable};

/// The `google.rpc.ErrorInfo` domain of the auth errors; the same as the ledger's.
pub const ERROR_DOMAIN: &str = "wallet.ledger";

pub mod args;
