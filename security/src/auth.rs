//! The auth layer: a tower layer in front of every gRPC service of a node. It decides by the
//! request path, before any handler runs:
//! - health and reflection: open;
//! - `wallet.internal.v1.PeerService`: only a TLS client certificate of a peer (when the node
//!   runs TLS; without TLS the node is on loopback or was started with `--insecure`);
//! - everything else: a bearer token with a scope the method needs (when the node has a
//!   tokens file). Unknown methods need `admin`, so a new RPC is closed until mapped here.

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use tonic::Code;
use tonic::transport::server::{TcpConnectInfo, TlsConnectInfo};
use tonic_types::{ErrorDetails, StatusExt as _};

use crate::tls::PeerVerifier;
use crate::tokens::{Scope, TokenTable};

/// ErrorInfo reasons of the auth errors.
pub const REASON_MISSING_TOKEN: &str = "MISSING_TOKEN";
pub const REASON_INVALID_TOKEN: &str = "INVALID_TOKEN";
pub const REASON_SCOPE_DENIED: &str = "SCOPE_DENIED";
pub const REASON_PEER_CERT_REQUIRED: &str = "PEER_CERT_REQUIRED";
/// ErrorInfo metadata key naming the scope a call needs.
pub const METADATA_SCOPE: &str = "scope";

/// The name a request was authenticated as, for handlers that want it (request extension).
#[derive(Clone, Debug)]
pub struct Caller {
    pub token_name: String,
}

/// Who a request was verified as.
enum Verified {
    Caller(Caller),
    Peer(crate::tls::PeerIdentity),
}

/// Who may call a method.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Access {
    /// Anyone: health checks and reflection.
    Open,
    /// Write nodes only, by TLS client certificate.
    Peer,
    /// A token holding any one of these scopes.
    Token(&'static [Scope]),
}

/// The method -> access table (the scope model; README "Security: TLS and tokens").
pub fn required_access(path: &str) -> Access {
    let (service, method) = path
        .strip_prefix('/')
        .and_then(|path| path.split_once('/'))
        .unwrap_or(("", ""));
    match (service, method) {
        ("grpc.health.v1.Health", _)
        | ("grpc.reflection.v1.ServerReflection", _)
        | ("grpc.reflection.v1alpha.ServerReflection", _) => Access::Open,
        ("wallet.internal.v1.PeerService", _) => Access::Peer,
        ("wallet.v1.WalletService", "Transfer" | "SubmitTransfers") => {
            Access::Token(&[Scope::Transfer])
        }
        // An account opened with allow_negative_balance can mint money: operators only.
        ("wallet.v1.WalletService", "OpenAccount") => Access::Token(&[Scope::Admin]),
        ("wallet.v1.WalletService", "GetAccount" | "GetTransfer") => Access::Token(&[Scope::Read]),
        ("wallet.v1.QueryService", _) => Access::Token(&[Scope::Read]),
        ("wallet.v1.EventLogService", "Subscribe") => Access::Token(&[Scope::Replicate]),
        // Read nodes learn the partition count here before they subscribe.
        ("wallet.v1.ClusterService", "GetClusterStatus") => {
            Access::Token(&[Scope::Admin, Scope::Replicate])
        }
        _ => Access::Token(&[Scope::Admin]),
    }
}

struct Policy {
    tokens: Option<TokenTable>,
    peers: Option<PeerVerifier>,
}

/// The layer; see the module doc. `tokens: None` leaves client methods open, `peers: None`
/// leaves PeerService open (no TLS).
#[derive(Clone)]
pub struct AuthLayer {
    policy: Arc<Policy>,
}

impl AuthLayer {
    pub fn new(tokens: Option<TokenTable>, peers: Option<PeerVerifier>) -> AuthLayer {
        AuthLayer {
            policy: Arc::new(Policy { tokens, peers }),
        }
    }
}

impl<S> tower::Layer<S> for AuthLayer {
    type Service = Auth<S>;

    fn layer(&self, inner: S) -> Auth<S> {
        Auth {
            inner,
            policy: self.policy.clone(),
        }
    }
}

#[derive(Clone)]
pub struct Auth<S> {
    inner: S,
    policy: Arc<Policy>,
}

fn error(
    code: Code,
    reason: &str,
    message: String,
    metadata: HashMap<String, String>,
) -> tonic::Status {
    tonic::Status::with_error_details(
        code,
        message,
        ErrorDetails::with_error_info(reason, crate::ERROR_DOMAIN, metadata),
    )
}

impl Policy {
    /// `Ok(caller)` or the status to answer with. Never puts the token in a message or log.
    fn check<B>(&self, request: &http::Request<B>) -> Result<Option<Verified>, tonic::Status> {
        let path = request.uri().path();
        match required_access(path) {
            Access::Open => Ok(None),
            Access::Peer => {
                let Some(peers) = &self.peers else {
                    return Ok(None);
                };
                let chain = request
                    .extensions()
                    .get::<TlsConnectInfo<TcpConnectInfo>>()
                    .and_then(TlsConnectInfo::peer_certs);
                let identity =
                    peers
                        .verify(chain.as_deref().map(Vec::as_slice))
                        .map_err(|why| {
                            tracing::warn!(path, why, "peer call refused");
                            error(
                                Code::Unauthenticated,
                                REASON_PEER_CERT_REQUIRED,
                                format!("PeerService is for write nodes: {why}"),
                                HashMap::new(),
                            )
                        })?;
                Ok(Some(Verified::Peer(identity)))
            }
            Access::Token(scopes) => {
                let Some(tokens) = &self.tokens else {
                    return Ok(None);
                };
                let scope_metadata =
                    || HashMap::from([(METADATA_SCOPE.to_owned(), scopes[0].as_str().to_owned())]);
                let Some(header) = request.headers().get(http::header::AUTHORIZATION) else {
                    return Err(error(
                        Code::Unauthenticated,
                        REASON_MISSING_TOKEN,
                        "this call needs a token: send 'authorization: Bearer <token>'".into(),
                        scope_metadata(),
                    ));
                };
                let token = header
                    .to_str()
                    .ok()
                    .and_then(|value| {
                        let (scheme, token) = value.split_once(' ')?;
                        scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
                    })
                    .ok_or_else(|| {
                        error(
                            Code::Unauthenticated,
                            REASON_INVALID_TOKEN,
                            "the authorization header must be 'Bearer <token>'".into(),
                            scope_metadata(),
                        )
                    })?;
                let Some(entry) = tokens.authenticate(token) else {
                    tracing::debug!(path, "unknown token refused");
                    return Err(error(
                        Code::Unauthenticated,
                        REASON_INVALID_TOKEN,
                        "unknown token".into(),
                        scope_metadata(),
                    ));
                };
                if !scopes.iter().any(|scope| entry.scopes.contains(scope)) {
                    tracing::debug!(path, token_name = entry.name, "scope denied");
                    let needed = scopes
                        .iter()
                        .map(|scope| scope.as_str())
                        .collect::<Vec<_>>()
                        .join(" or ");
                    return Err(error(
                        Code::PermissionDenied,
                        REASON_SCOPE_DENIED,
                        format!(
                            "token {:?} lacks the scope {needed} this call needs",
                            entry.name
                        ),
                        scope_metadata(),
                    ));
                }
                Ok(Some(Verified::Caller(Caller {
                    token_name: entry.name.clone(),
                })))
            }
        }
    }
}

type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send + 'static>>;

impl<S, B, ResBody> tower::Service<http::Request<B>> for Auth<S>
where
    S: tower::Service<http::Request<B>, Response = http::Response<ResBody>>,
    S::Future: Send + 'static,
    S::Error: Send + 'static,
    ResBody: Default + Send + 'static,
{
    type Response = http::Response<ResBody>;
    type Error = S::Error;
    type Future = BoxFuture<Result<http::Response<ResBody>, S::Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: http::Request<B>) -> Self::Future {
        match self.policy.check(&request) {
            Ok(verified) => {
                match verified {
                    Some(Verified::Caller(caller)) => {
                        request.extensions_mut().insert(caller);
                    }
                    Some(Verified::Peer(identity)) => {
                        request.extensions_mut().insert(identity);
                    }
                    None => {}
                }
                Box::pin(self.inner.call(request))
            }
            Err(status) => {
                let response = status.into_http::<ResBody>();
                Box::pin(async move { Ok(response) })
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_public_method_has_its_scope() {
        use Scope::*;
        for (path, access) in [
            ("/grpc.health.v1.Health/Check", Access::Open),
            ("/grpc.health.v1.Health/Watch", Access::Open),
            (
                "/grpc.reflection.v1.ServerReflection/ServerReflectionInfo",
                Access::Open,
            ),
            ("/wallet.internal.v1.PeerService/Raft", Access::Peer),
            ("/wallet.internal.v1.PeerService/Credit", Access::Peer),
            (
                "/wallet.v1.WalletService/Transfer",
                Access::Token(&[Transfer]),
            ),
            (
                "/wallet.v1.WalletService/SubmitTransfers",
                Access::Token(&[Transfer]),
            ),
            (
                "/wallet.v1.WalletService/OpenAccount",
                Access::Token(&[Admin]),
            ),
            (
                "/wallet.v1.WalletService/GetAccount",
                Access::Token(&[Read]),
            ),
            (
                "/wallet.v1.WalletService/GetTransfer",
                Access::Token(&[Read]),
            ),
            (
                "/wallet.v1.QueryService/WatchBalances",
                Access::Token(&[Read]),
            ),
            (
                "/wallet.v1.QueryService/GetBalanceAt",
                Access::Token(&[Read]),
            ),
            (
                "/wallet.v1.EventLogService/Subscribe",
                Access::Token(&[Replicate]),
            ),
            (
                "/wallet.v1.ClusterService/GetClusterStatus",
                Access::Token(&[Admin, Replicate]),
            ),
            ("/wallet.v1.WalletService/Unknown", Access::Token(&[Admin])),
            ("/x", Access::Token(&[Admin])),
        ] {
            assert_eq!(required_access(path), access, "{path}");
        }
    }
}
