//! The auth layer: a tower layer in front of every gRPC service of a node. It decides by the
//! request path, before any handler runs:
//! - health and reflection: open;
//! - `wallet.internal.v1.PeerService`: only a TLS client certificate of a peer (when the node
//!   runs TLS; without TLS the node is on loopback or was started with `--insecure`);
//! - everything else: a bearer token with a scope the method needs (when the node has a
//!   tokens file). Unknown methods need `admin`, so a new RPC is closed until mapped here.
//!
//! The verified [`Caller`] (token name, scopes, account prefixes) goes to the handler as a
//! request extension, for the checks that need the request's content:
//! - a token bound to account prefixes is refused here on every method but those whose
//!   handlers check its accounts ([`checks_accounts`]), so a new RPC is closed to it too;
//! - handlers call [`check_account`] on each account the request names (the debited one for
//!   transfers), [`require_scope`] for a scope that depends on the request (the state digest
//!   of `GetClusterStatus` needs `admin`), and the write node's edge asks for `issue` before
//!   debiting an account that may go negative ([`issue_required`]).
//!
//! Without a tokens file no `Caller` is attached and these checks allow everything, as the
//! layer does (the node is on loopback, or `--insecure` said something else protects it).

use std::collections::{BTreeSet, HashMap};
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
/// Debiting an account opened with `allow_negative_balance` needs the `issue` scope.
pub const REASON_ISSUE_SCOPE_REQUIRED: &str = "ISSUE_SCOPE_REQUIRED";
/// The token is bound to account prefixes and the request names an account outside them, or
/// calls a method that is not about one account (which a bound token cannot use).
pub const REASON_ACCOUNT_PREFIX_DENIED: &str = "ACCOUNT_PREFIX_DENIED";
/// ErrorInfo metadata key naming the scope a call needs.
pub const METADATA_SCOPE: &str = "scope";

/// Who a request was authenticated as, for handlers (request extension; absent when the node
/// has no tokens file).
#[derive(Clone, Debug)]
pub struct Caller {
    pub token_name: String,
    pub scopes: BTreeSet<Scope>,
    /// `None`: every account; `Some`: only ids starting with one of these.
    pub account_prefixes: Option<Arc<[String]>>,
}

impl Caller {
    pub fn has(&self, scope: Scope) -> bool {
        self.scopes.contains(&scope)
    }

    pub fn allows_account(&self, account_id: &str) -> bool {
        crate::tokens::allows_account(self.account_prefixes.as_deref(), account_id)
    }
}

/// A refusal by a handler's check: PERMISSION_DENIED with ErrorInfo (domain
/// [`crate::ERROR_DOMAIN`]) `reason` and `metadata`. The write node copies the fields into its
/// own error type (SubmitTransfers reports them per transfer); `tonic::Status::from` gives
/// the unary answer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Denied {
    pub reason: &'static str,
    pub message: String,
    /// The request field naming the refused account, if any.
    pub field: Option<&'static str>,
    pub metadata: Vec<(&'static str, String)>,
}

impl From<Denied> for tonic::Status {
    fn from(denied: Denied) -> tonic::Status {
        error(
            Code::PermissionDenied,
            denied.reason,
            denied.message,
            denied
                .metadata
                .into_iter()
                .map(|(key, value)| (key.to_owned(), value))
                .collect(),
        )
    }
}

/// `Ok` when `caller` may touch `account_id` (named by request field `field`): no tokens, an
/// unbound token, or one of the token's prefixes. The account id is not echoed (it may be
/// another tenant's, and long).
pub fn check_account(
    caller: Option<&Caller>,
    field: &'static str,
    account_id: &str,
) -> Result<(), Denied> {
    match caller {
        Some(caller) if !caller.allows_account(account_id) => Err(Denied {
            reason: REASON_ACCOUNT_PREFIX_DENIED,
            message: format!(
                "token {:?} is bound to account prefixes, and {field} has none of them",
                caller.token_name
            ),
            field: Some(field),
            metadata: vec![("field", field.to_owned())],
        }),
        _ => Ok(()),
    }
}

/// `Ok` when `caller` holds `scope` (or there are no tokens); else SCOPE_DENIED naming it, as
/// the layer answers. `what` says what needs it ("include_state_digest").
pub fn require_scope(caller: Option<&Caller>, scope: Scope, what: &str) -> Result<(), Denied> {
    match caller {
        Some(caller) if !caller.has(scope) => Err(scope_denied(caller, scope, what)),
        _ => Ok(()),
    }
}

/// SCOPE_DENIED: `caller` lacks `scope`, which `what` needs.
pub fn scope_denied(caller: &Caller, scope: Scope, what: &str) -> Denied {
    Denied {
        reason: REASON_SCOPE_DENIED,
        message: format!(
            "token {:?} lacks the scope {scope} that {what} needs",
            caller.token_name
        ),
        field: None,
        metadata: vec![(METADATA_SCOPE, scope.as_str().to_owned())],
    }
}

/// ISSUE_SCOPE_REQUIRED: `caller` asked to debit an account opened with
/// `allow_negative_balance` (debiting it creates money) without the `issue` scope.
pub fn issue_required(caller: &Caller) -> Denied {
    Denied {
        reason: REASON_ISSUE_SCOPE_REQUIRED,
        message: format!(
            "from_account may go negative (an issuer account: debiting it creates money); \
             token {:?} lacks the scope issue this needs",
            caller.token_name
        ),
        field: Some("from_account"),
        metadata: vec![
            (METADATA_SCOPE, Scope::Issue.as_str().to_owned()),
            ("field", "from_account".to_owned()),
        ],
    }
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
        // `transfer` debits ordinary accounts, `issue` accounts that may go negative: the
        // edge checks which one `from_account` is (write-node service.rs). A hold's steps
        // debit (or reserve on) `from_account` the same way, and a multi-leg transfer each
        // leg's `from_account`.
        (
            "wallet.v1.WalletService",
            "Transfer" | "SubmitTransfers" | "TransferBatch" | "TransferLegs" | "AuthorizeTransfer"
            | "CaptureTransfer" | "VoidTransfer",
        ) => Access::Token(&[Scope::Transfer, Scope::Issue]),
        // An account opened with allow_negative_balance can mint money: operators only. The
        // account lifecycle (FreezeAccount, UnfreezeAccount, CloseAccount, SetOverdraftLimit)
        // falls to the default below: operators only too.
        ("wallet.v1.WalletService", "OpenAccount" | "OpenAccounts") => {
            Access::Token(&[Scope::Admin])
        }
        ("wallet.v1.WalletService", "GetAccount" | "GetTransfer") => Access::Token(&[Scope::Read]),
        ("wallet.v1.QueryService", _) => Access::Token(&[Scope::Read]),
        ("wallet.v1.EventLogService", "Subscribe") => Access::Token(&[Scope::Replicate]),
        // A read node copying another's projections (bootstrap): every balance and transfer,
        // which the event log a `replicate` token reads carries too.
        ("wallet.internal.v1.ReadSnapshotService", _) => {
            Access::Token(&[Scope::Admin, Scope::Replicate])
        }
        // Read nodes learn the partition count here before they subscribe.
        ("wallet.v1.ClusterService", "GetClusterStatus") => {
            Access::Token(&[Scope::Admin, Scope::Replicate])
        }
        _ => Access::Token(&[Scope::Admin]),
    }
}

/// Methods whose handlers call [`check_account`] on every account the request names: the only
/// ones a token bound to account prefixes may call. Not here, so refused to bound tokens:
/// `GetTransfer`, `WatchTransfer` and `BatchGetTransfers` (looked up by transaction id, not by account: a bound
/// token follows its transfers through the `Transfer` answer, a retry with the same
/// transaction id, `ListTransfers` or `WatchBalances`), `ClusterService`,
/// `EventLogService` (every account), and any method added later.
pub fn checks_accounts(path: &str) -> bool {
    matches!(
        path,
        "/wallet.v1.WalletService/Transfer"
            | "/wallet.v1.WalletService/SubmitTransfers"
            | "/wallet.v1.WalletService/TransferBatch"
            | "/wallet.v1.WalletService/TransferLegs"
            | "/wallet.v1.WalletService/AuthorizeTransfer"
            | "/wallet.v1.WalletService/CaptureTransfer"
            | "/wallet.v1.WalletService/VoidTransfer"
            | "/wallet.v1.WalletService/OpenAccount"
            | "/wallet.v1.WalletService/OpenAccounts"
            | "/wallet.v1.WalletService/GetAccount"
            | "/wallet.v1.WalletService/FreezeAccount"
            | "/wallet.v1.WalletService/UnfreezeAccount"
            | "/wallet.v1.WalletService/CloseAccount"
            | "/wallet.v1.WalletService/SetOverdraftLimit"
            | "/wallet.v1.QueryService/GetBalance"
            | "/wallet.v1.QueryService/WatchBalances"
            | "/wallet.v1.QueryService/ListTransfers"
            | "/wallet.v1.QueryService/GetBalanceAt"
            | "/wallet.v1.QueryService/ListAccounts"
            | "/wallet.v1.QueryService/BatchGetAccounts"
    )
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
                if entry.account_prefixes.is_some() && !checks_accounts(path) {
                    tracing::debug!(path, token_name = entry.name, "bound token refused");
                    return Err(error(
                        Code::PermissionDenied,
                        REASON_ACCOUNT_PREFIX_DENIED,
                        format!(
                            "token {:?} is bound to account prefixes; this method is not about \
                             one account, so only unbound tokens may call it",
                            entry.name
                        ),
                        HashMap::new(),
                    ));
                }
                Ok(Some(Verified::Caller(Caller {
                    token_name: entry.name.clone(),
                    scopes: entry.scopes.clone(),
                    account_prefixes: entry.account_prefixes.clone(),
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
                Access::Token(&[Transfer, Issue]),
            ),
            (
                "/wallet.v1.WalletService/SubmitTransfers",
                Access::Token(&[Transfer, Issue]),
            ),
            (
                "/wallet.v1.WalletService/TransferBatch",
                Access::Token(&[Transfer, Issue]),
            ),
            (
                "/wallet.v1.WalletService/TransferLegs",
                Access::Token(&[Transfer, Issue]),
            ),
            (
                "/wallet.v1.WalletService/AuthorizeTransfer",
                Access::Token(&[Transfer, Issue]),
            ),
            (
                "/wallet.v1.WalletService/CaptureTransfer",
                Access::Token(&[Transfer, Issue]),
            ),
            (
                "/wallet.v1.WalletService/VoidTransfer",
                Access::Token(&[Transfer, Issue]),
            ),
            (
                "/wallet.v1.WalletService/OpenAccount",
                Access::Token(&[Admin]),
            ),
            (
                "/wallet.v1.WalletService/OpenAccounts",
                Access::Token(&[Admin]),
            ),
            (
                "/wallet.v1.WalletService/GetAccount",
                Access::Token(&[Read]),
            ),
            (
                "/wallet.v1.WalletService/FreezeAccount",
                Access::Token(&[Admin]),
            ),
            (
                "/wallet.v1.WalletService/CloseAccount",
                Access::Token(&[Admin]),
            ),
            (
                "/wallet.v1.WalletService/SetOverdraftLimit",
                Access::Token(&[Admin]),
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
            (
                "/wallet.internal.v1.ReadSnapshotService/FetchProjectionSnapshot",
                Access::Token(&[Admin, Replicate]),
            ),
            ("/wallet.v1.WalletService/Unknown", Access::Token(&[Admin])),
            ("/x", Access::Token(&[Admin])),
        ] {
            assert_eq!(required_access(path), access, "{path}");
        }
    }

    #[test]
    fn bound_tokens_reach_only_methods_that_check_accounts() {
        for path in [
            "/wallet.v1.WalletService/Transfer",
            "/wallet.v1.WalletService/SubmitTransfers",
            "/wallet.v1.WalletService/TransferBatch",
            "/wallet.v1.WalletService/TransferLegs",
            "/wallet.v1.WalletService/AuthorizeTransfer",
            "/wallet.v1.WalletService/CaptureTransfer",
            "/wallet.v1.WalletService/VoidTransfer",
            "/wallet.v1.WalletService/OpenAccount",
            "/wallet.v1.WalletService/OpenAccounts",
            "/wallet.v1.WalletService/GetAccount",
            "/wallet.v1.WalletService/FreezeAccount",
            "/wallet.v1.WalletService/UnfreezeAccount",
            "/wallet.v1.WalletService/CloseAccount",
            "/wallet.v1.WalletService/SetOverdraftLimit",
            "/wallet.v1.QueryService/GetBalance",
            "/wallet.v1.QueryService/WatchBalances",
            "/wallet.v1.QueryService/ListTransfers",
            "/wallet.v1.QueryService/GetBalanceAt",
            "/wallet.v1.QueryService/ListAccounts",
            "/wallet.v1.QueryService/BatchGetAccounts",
        ] {
            assert!(checks_accounts(path), "{path}");
        }
        for path in [
            "/wallet.v1.WalletService/GetTransfer",
            "/wallet.v1.QueryService/WatchTransfer",
            "/wallet.v1.QueryService/BatchGetTransfers",
            "/wallet.v1.ClusterService/GetClusterStatus",
            "/wallet.v1.EventLogService/Subscribe",
            "/wallet.internal.v1.ReadSnapshotService/FetchProjectionSnapshot",
            "/wallet.v1.WalletService/Unknown",
        ] {
            assert!(!checks_accounts(path), "{path}");
        }
    }

    fn caller(scopes: &[Scope], prefixes: Option<&[&str]>) -> Caller {
        Caller {
            token_name: "t".into(),
            scopes: scopes.iter().copied().collect(),
            account_prefixes: prefixes
                .map(|prefixes| prefixes.iter().map(|p| (*p).to_owned()).collect()),
        }
    }

    #[test]
    fn handler_checks_allow_without_tokens_and_name_what_is_missing() {
        assert!(check_account(None, "account_id", "x").is_ok());
        assert!(require_scope(None, Scope::Admin, "it").is_ok());
        let free = caller(&[Scope::Read], None);
        assert!(check_account(Some(&free), "account_id", "anything").is_ok());
        let bound = caller(&[Scope::Read], Some(&["a/"]));
        assert!(check_account(Some(&bound), "account_id", "a/x").is_ok());
        let denied = check_account(Some(&bound), "from_account", "b/x").unwrap_err();
        assert_eq!(denied.reason, REASON_ACCOUNT_PREFIX_DENIED);
        assert_eq!(denied.field, Some("from_account"));
        assert!(!denied.message.contains("b/x"));
        let status = tonic::Status::from(denied);
        assert_eq!(status.code(), Code::PermissionDenied);
        let info = status.get_details_error_info().unwrap();
        assert_eq!(
            (info.reason.as_str(), info.domain.as_str()),
            (REASON_ACCOUNT_PREFIX_DENIED, crate::ERROR_DOMAIN)
        );
        let denied = require_scope(Some(&free), Scope::Admin, "include_state_digest").unwrap_err();
        assert_eq!(denied.reason, REASON_SCOPE_DENIED);
        assert_eq!(denied.metadata, vec![(METADATA_SCOPE, "admin".to_owned())]);
        let denied = issue_required(&free);
        assert_eq!(denied.reason, REASON_ISSUE_SCOPE_REQUIRED);
        assert!(
            denied
                .metadata
                .contains(&(METADATA_SCOPE, "issue".to_owned()))
        );
    }
}
