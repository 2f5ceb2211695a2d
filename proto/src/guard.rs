//! The gRPC server's front door, shared by write and read nodes: a global bound on the calls
//! in flight with load shedding, and documented errors for requests that never reach a handler
//! (undecodable or oversized messages).
//!
//! Shedding, not queueing: a call beyond `GuardConfig::calls_in_flight_max` is answered at once
//! with `RESOURCE_EXHAUSTED`, `google.rpc.ErrorInfo` reason `OVERLOADED` and a
//! `google.rpc.RetryInfo` delay, so a flood costs the node one small response per call instead
//! of a queue that grows with the flood. A call holds its slot until its response body ends,
//! so a server stream (a watch, a subscription, `SubmitTransfers`) counts for its lifetime.
//! Paths under `GuardConfig::exempt_path_prefixes` (health probes, raft traffic between write
//! nodes) are never shed: overload must neither fail probes nor cut replication.
//!
//! tonic answers a request it cannot decode before any handler runs: `INTERNAL` for bytes that
//! are not the protobuf message (prost's DecodeError, e.g. a string field holding invalid
//! UTF-8 or a wrong wire type) and `OUT_OF_RANGE` for a message above the decoding limit, both
//! without details. That is the client's fault, and retrying cannot help, so the guard rewrites
//! them to `INVALID_ARGUMENT` with reason `MALFORMED_MESSAGE` or `MESSAGE_TOO_LARGE`. It also
//! gives tonic's other bare answers a reason: `UNIMPLEMENTED` / `UNKNOWN_METHOD` for a path no
//! service serves, `UNIMPLEMENTED` / `UNSUPPORTED_COMPRESSION` for a `grpc-encoding` the
//! server does not accept.

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tonic::body::Body;
use tonic::{Code, Status};
use tonic_types::{ErrorDetails, StatusExt as _};

pub use crate::ERROR_DOMAIN;

/// The RetryInfo delay of every OVERLOADED answer, from every node: calls the guard sheds
/// (`GuardConfig::overload_retry_after`) and the write node's full command queue. The one
/// definition; the nodes' `limits` re-export it.
pub const OVERLOAD_RETRY_AFTER: Duration = Duration::from_millis(100);

/// What the guard enforces.
#[derive(Clone, Debug)]
pub struct GuardConfig {
    /// Calls (unary or streaming, until their response ends) served at once by the server.
    pub calls_in_flight_max: usize,
    /// The RetryInfo delay of an OVERLOADED answer.
    pub overload_retry_after: Duration,
    /// gRPC paths (`/package.Service/`) that are never shed.
    pub exempt_path_prefixes: &'static [&'static str],
}

/// The tower layer to give `tonic::transport::Server::builder().layer(...)`.
#[derive(Clone)]
pub struct GuardLayer {
    config: Arc<GuardConfig>,
    permits: Arc<Semaphore>,
}

impl GuardLayer {
    pub fn new(config: GuardConfig) -> GuardLayer {
        assert!(config.calls_in_flight_max > 0, "a server must admit calls");
        GuardLayer {
            permits: Arc::new(Semaphore::new(config.calls_in_flight_max)),
            config: Arc::new(config),
        }
    }
}

impl<S> tower::Layer<S> for GuardLayer {
    type Service = Guard<S>;

    fn layer(&self, inner: S) -> Guard<S> {
        Guard {
            inner,
            config: self.config.clone(),
            permits: self.permits.clone(),
        }
    }
}

/// The service `GuardLayer` wraps around the server's routes.
#[derive(Clone)]
pub struct Guard<S> {
    inner: S,
    config: Arc<GuardConfig>,
    permits: Arc<Semaphore>,
}

type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send + 'static>>;

impl<S> tower::Service<http::Request<Body>> for Guard<S>
where
    S: tower::Service<http::Request<Body>, Response = http::Response<Body>>
        + Clone
        + Send
        + 'static,
    S::Future: Send + 'static,
{
    type Response = http::Response<GuardedBody>;
    type Error = S::Error;
    type Future = BoxFuture<Result<Self::Response, S::Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<Body>) -> Self::Future {
        let exempt = self
            .config
            .exempt_path_prefixes
            .iter()
            .any(|prefix| request.uri().path().starts_with(prefix));
        let permit = if exempt {
            None
        } else {
            match self.permits.clone().try_acquire_owned() {
                Ok(permit) => Some(permit),
                Err(_) => {
                    let response = overloaded(&self.config).into_http::<Body>();
                    return Box::pin(async move { Ok(response.map(GuardedBody::unguarded)) });
                }
            }
        };
        let path = request.uri().path().to_owned();
        // The ready service answers this call; the clone serves the next poll_ready.
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        Box::pin(async move {
            let response = inner.call(request).await?;
            let response = match Status::from_header_map(response.headers()).and_then(|status| {
                normalize_decode_error(&status).or_else(|| unknown_method(&status, &path))
            }) {
                // A trailers-only answer from tonic's decoder: replace it whole.
                Some(status) => status.into_http::<Body>(),
                None => response,
            };
            Ok(response.map(|body| GuardedBody {
                body,
                _permit: permit,
            }))
        })
    }
}

/// The OVERLOADED status a shed call gets.
pub fn overloaded(config: &GuardConfig) -> Status {
    let mut details = ErrorDetails::with_error_info("OVERLOADED", ERROR_DOMAIN, HashMap::new());
    details.set_retry_info(Some(config.overload_retry_after));
    Status::with_error_details(
        Code::ResourceExhausted,
        format!(
            "this node is serving its maximum of {} calls; retry after the RetryInfo delay or use another node",
            config.calls_in_flight_max
        ),
        details,
    )
}

/// The documented status for one of tonic's request-decoding errors, or None when `status` is
/// not one. Handlers of client-streaming calls see these errors in their input stream and use
/// this too.
pub fn normalize_decode_error(status: &Status) -> Option<Status> {
    let (reason, message) = match status.code() {
        Code::Internal
            if status
                .message()
                .starts_with("failed to decode Protobuf message") =>
        {
            (
                "MALFORMED_MESSAGE",
                format!(
                    "the request is not a valid protobuf message of this method's type ({})",
                    status.message()
                ),
            )
        }
        Code::OutOfRange
            if status
                .message()
                .contains("decoded message length too large") =>
        {
            (
                "MESSAGE_TOO_LARGE",
                format!(
                    "the request is larger than this server accepts ({})",
                    status.message()
                ),
            )
        }
        Code::Unimplemented if status.message().starts_with("Content is compressed with") => {
            // gRPC says UNIMPLEMENTED here, and the client needs the accepted encodings.
            let details = ErrorDetails::with_error_info(
                "UNSUPPORTED_COMPRESSION",
                ERROR_DOMAIN,
                HashMap::new(),
            );
            let mut normalized = Status::with_error_details(
                Code::Unimplemented,
                format!(
                    "{}; send uncompressed (identity) messages",
                    status.message()
                ),
                details,
            );
            if let Some(accepted) = status.metadata().get("grpc-accept-encoding") {
                normalized
                    .metadata_mut()
                    .insert("grpc-accept-encoding", accepted.clone());
            }
            return Some(normalized);
        }
        _ => return None,
    };
    let details = ErrorDetails::with_error_info(reason, ERROR_DOMAIN, HashMap::new());
    Some(Status::with_error_details(
        Code::InvalidArgument,
        message,
        details,
    ))
}

/// tonic answers a path no service serves with a bare, empty UNIMPLEMENTED.
fn unknown_method(status: &Status, path: &str) -> Option<Status> {
    if status.code() != Code::Unimplemented || !status.message().is_empty() {
        return None;
    }
    let details = ErrorDetails::with_error_info("UNKNOWN_METHOD", ERROR_DOMAIN, HashMap::new());
    let shown: String = path.chars().take(256).collect();
    Some(Status::with_error_details(
        Code::Unimplemented,
        format!("this node serves no method {shown:?} (server reflection lists the services)"),
        details,
    ))
}

/// A response body that holds the call's slot until it ends (or is dropped).
pub struct GuardedBody {
    body: Body,
    _permit: Option<OwnedSemaphorePermit>,
}

impl GuardedBody {
    fn unguarded(body: Body) -> GuardedBody {
        GuardedBody {
            body,
            _permit: None,
        }
    }
}

impl http_body::Body for GuardedBody {
    type Data = bytes::Bytes;
    type Error = tonic::Status;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<bytes::Bytes>, Self::Error>>> {
        Pin::new(&mut self.body).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.body.size_hint()
    }
}
