//! Rust client for the wallet ledger's write nodes.
//!
//! The write nodes form a Raft group; only the leader takes writes and linearizable reads,
//! and followers answer `UNAVAILABLE / NOT_LEADER` with the leader's address instead of
//! forwarding. [`WalletClient`] hides that: it remembers the leader, follows redirects,
//! moves on from unreachable or overloaded nodes with full-jitter backoff, and stops at a
//! bounded number of attempts and a total deadline.
//!
//! Errors are split by what the caller can conclude ([`Error::is_definite`]): a
//! [`Error::Rejected`] request was not applied and never will be as sent, while an
//! [`Error::Indefinite`] one may or may not have been. Transfers carry a client-chosen
//! `transaction_id` that the ledger deduplicates forever, so the answer to "did it
//! happen?" is always to send the same transfer again with the same id.
//!
//! ```no_run
//! use wallet_client::{ClientConfig, Transfer, WalletClient, new_transaction_id};
//!
//! # async fn run() -> Result<(), wallet_client::Error> {
//! let client = WalletClient::connect(ClientConfig::new(["127.0.0.1:50051", "127.0.0.1:50052"])).await?;
//! let transfer = Transfer {
//!     transaction_id: new_transaction_id(),
//!     from: "issuer".into(),
//!     to: "alice".into(),
//!     amount: "12.34".into(),
//!     currency: "USD".into(),
//!     // Optional: your reference and metadata, stored and returned with the transfer.
//!     reference: "order-1042".into(),
//!     ..Default::default()
//! };
//! match client.transfer(&transfer).await {
//!     Ok(done) => println!("final: {}", done.status),
//!     Err(e) if e.is_definite() => println!("rejected: {}", e.reason()),
//!     Err(_) => { /* unknown outcome: send `transfer` again later, same id */ }
//! }
//! # Ok(())
//! # }
//! ```

// Every public item is documented; the build says so when one is not.
#![warn(missing_docs)]

mod auth;
mod backoff;
mod client;
mod config;
mod endpoint;
mod error;
mod pipeline;
mod query;
mod sync;

pub use auth::{Conn, Credentials, TlsConfig, node_channel};
pub use backoff::{ceiling as backoff_ceiling, full_jitter};
pub use client::{
    DEFAULT_PARTITION, DISCOVERED_ENDPOINTS_MAX, Hold, SUBMIT_BATCH_MAX, Transfer,
    WALLET_SERVICE_NAME, WalletClient, new_transaction_id,
};
pub use config::{
    ATTEMPTS_MAX_LIMIT, ClientConfig, DEFAULT_ATTEMPTS_MAX, DEFAULT_BACKOFF_BASE,
    DEFAULT_BACKOFF_MAX, DEFAULT_CALL_TIMEOUT, DEFAULT_CONNECT_TIMEOUT, DEFAULT_TOTAL_DEADLINE,
    ENDPOINTS_MAX, normalize_endpoint, normalize_endpoint_for,
};
pub use error::{
    ERROR_DOMAIN, Error, METADATA_LEADER_ADDRESS, METADATA_LEADER_ID, METADATA_REPLAYED,
    REASON_DEADLINE_EXCEEDED, REASON_INVALID_CONFIG, REASON_MALFORMED_RESPONSE, REASON_NOT_LEADER,
    REASON_TRANSPORT, code_name, node_reason, reason_of,
};
pub use pipeline::{PIPE_QUEUE_MAX, PipelineStats};
/// The generated `wallet.v1` messages the client's methods return, re-exported so callers
/// need no direct dependency on the `proto` crate.
pub use proto::v1 as pb;
pub use query::{
    BalanceAt, DEFAULT_READ_ENDPOINT, QUERY_CALL_TIMEOUT, QUERY_CONNECT_TIMEOUT, QueryClient,
    WATCH_CLIENT_BUFFER, WATCH_RESUME_BACKOFF_MAX, WATCH_RESUME_BACKOFF_MIN,
};
/// The gRPC status code type used in [`Error`], re-exported for matching.
pub use tonic::Code;
/// The transaction id type, re-exported so callers can parse ids without depending on `uuid`.
pub use uuid::Uuid;
