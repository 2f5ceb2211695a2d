//! Security shared by the write node, the read node and walletctl: TLS and mTLS settings
//! (rustls through tonic's `tls-ring`), the peer check that guards raft traffic, bearer
//! tokens with scopes, the auth layer that enforces them, and the rule that a node never
//! listens beyond loopback without TLS and tokens unless told `--insecure`.
//!
//! The model (ARCHITECTURE.md, "Security", says the same for operators):
//! - Client traffic (`WalletService`, `ClusterService`, `EventLogService`, `QueryService`)
//!   carries `authorization: Bearer <token>`; the node keeps only SHA-256 hashes of tokens,
//!   each with scopes and optionally account-id prefixes it is bound to. See
//!   [`auth::required_access`] for the RPC -> scope table, and [`auth`] for the checks
//!   handlers make with the request's content (account prefixes, `issue` for debiting an
//!   account that may go negative, `admin` for the state digest).
//! - Raft traffic (`wallet.internal.PeerService`) carries no token: it is accepted only on a
//!   TLS connection whose client certificate chains to the cluster's peer CA and names one of
//!   the configured peers (a DNS or IP SAN equal to a peer's host).
//! - `grpc.health.v1.Health` and server reflection stay open, for probes and tooling.

pub mod auth;
pub mod certs;
pub mod exposure;
pub mod server;
pub mod tls;
pub mod tokens;
pub mod web;

pub use auth::{
    AuthLayer, Caller, Denied, REASON_ACCOUNT_PREFIX_DENIED, REASON_INVALID_TOKEN,
    REASON_ISSUE_SCOPE_REQUIRED, REASON_MISSING_TOKEN, REASON_SCOPE_DENIED, check_account,
    require_scope,
};
pub use exposure::{Protection, check_exposure, tokens_for};
pub use server::Secured;
pub use tls::{ClientTls, PeerIdentity, PeerTls, PeerVerifier, ServerTls};
pub use tokens::{Scope, TokenTable};

/// The `google.rpc.ErrorInfo` domain of the auth errors: the wallet's one domain.
pub use proto::ERROR_DOMAIN;

pub mod args;
