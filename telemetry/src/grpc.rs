//! Per-RPC metrics for a tonic server: a tower layer that counts every call by method and gRPC
//! status code and times it until its last frame (so a stream is timed over its whole life).
//! With the `otel` feature the same layer opens each call's server span (`crate::trace`),
//! which ends with the call and carries its status code.
//!
//! The status code is read where gRPC puts it: the response headers of a trailers-only answer
//! (tonic's errors), else the trailers at the end of the body. A body dropped before its
//! trailers (the client went away) counts as CANCELLED.
//!
//! Label values are `&'static str` from a table built once from the proto descriptors, so a
//! call costs no allocation for its labels and clients cannot create series: a path not in
//! the table counts as service "unknown", method "unknown".

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Instant;

use http::{HeaderMap, Request, Response};
use http_body::{Body, Frame, SizeHint};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;
use prost::Message as _;

use crate::trace::CallSpan;

/// Labels of the request counter.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct CallLabels {
    pub service: &'static str,
    pub method: &'static str,
    pub code: &'static str,
}

/// Labels of the latency histogram.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct MethodLabels {
    pub service: &'static str,
    pub method: &'static str,
}

/// gRPC status code names, indexed by code (the grpc-status header value).
const CODE_NAMES: [&str; 17] = [
    "OK",
    "CANCELLED",
    "UNKNOWN",
    "INVALID_ARGUMENT",
    "DEADLINE_EXCEEDED",
    "NOT_FOUND",
    "ALREADY_EXISTS",
    "PERMISSION_DENIED",
    "RESOURCE_EXHAUSTED",
    "FAILED_PRECONDITION",
    "ABORTED",
    "OUT_OF_RANGE",
    "UNIMPLEMENTED",
    "INTERNAL",
    "UNAVAILABLE",
    "DATA_LOSS",
    "UNAUTHENTICATED",
];

fn code_name(headers: &HeaderMap) -> Option<&'static str> {
    let value = headers.get("grpc-status")?;
    let code: usize = value.to_str().ok()?.parse().ok()?;
    Some(CODE_NAMES.get(code).copied().unwrap_or("UNKNOWN"))
}

/// The number of a code named in `CODE_NAMES` (2, UNKNOWN, for any other name).
fn code_number(name: &str) -> i64 {
    CODE_NAMES
        .iter()
        .position(|&known| known == name)
        .unwrap_or(2) as i64
}

/// Services every node serves besides those in the proto crate's descriptor set.
const STANDARD_METHODS: [&str; 4] = [
    "/grpc.health.v1.Health/Check",
    "/grpc.health.v1.Health/Watch",
    "/grpc.reflection.v1.ServerReflection/ServerReflectionInfo",
    "/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo",
];

/// `grpc_requests_total` and `grpc_request_duration_seconds`, shared by every connection.
#[derive(Clone)]
pub struct GrpcMetrics {
    requests: Family<CallLabels, Counter>,
    durations: Family<MethodLabels, Histogram, fn() -> Histogram>,
    /// "/package.Service/Method" -> its labels; built once, never grows.
    methods: Arc<HashMap<String, MethodLabels>>,
}

fn latency_histogram() -> Histogram {
    // 100 µs .. ~26 s.
    Histogram::new(exponential_buckets(0.000_1, 2.0, 19))
}

impl GrpcMetrics {
    /// Registers the two families and learns the method paths of every service in
    /// `descriptor_set` (an encoded `FileDescriptorSet`) plus health and reflection.
    pub fn register(registry: &mut Registry, descriptor_set: &[u8]) -> anyhow::Result<GrpcMetrics> {
        let set = prost_types::FileDescriptorSet::decode(descriptor_set)?;
        let mut paths: Vec<String> = STANDARD_METHODS.iter().map(|&p| p.to_owned()).collect();
        for file in &set.file {
            for service in &file.service {
                for method in &service.method {
                    paths.push(format!(
                        "/{}.{}/{}",
                        file.package(),
                        service.name(),
                        method.name()
                    ));
                }
            }
        }
        // Leaked once at start: a bounded set of names that label values borrow for the life
        // of the process.
        let methods = paths
            .into_iter()
            .map(|path| {
                let (service, method) = path[1..].split_once('/').expect("built as /S/M");
                let labels = MethodLabels {
                    service: Box::leak(service.to_owned().into_boxed_str()),
                    method: Box::leak(method.to_owned().into_boxed_str()),
                };
                (path, labels)
            })
            .collect();
        let metrics = GrpcMetrics {
            requests: Family::default(),
            durations: Family::new_with_constructor(latency_histogram),
            methods: Arc::new(methods),
        };
        registry.register(
            "wallet_grpc_requests",
            "gRPC calls finished, by service, method and status code",
            metrics.requests.clone(),
        );
        registry.register(
            "wallet_grpc_request_duration_seconds",
            "gRPC call duration until the last response frame (a stream's whole life), by method",
            metrics.durations.clone(),
        );
        Ok(metrics)
    }

    fn labels(&self, path: &str) -> MethodLabels {
        self.methods.get(path).cloned().unwrap_or(MethodLabels {
            service: "unknown",
            method: "unknown",
        })
    }

    fn finish(&self, labels: &MethodLabels, code: &'static str, started: Instant) {
        self.requests
            .get_or_create(&CallLabels {
                service: labels.service,
                method: labels.method,
                code,
            })
            .inc();
        self.durations
            .get_or_create(labels)
            .observe(started.elapsed().as_secs_f64());
    }
}

impl<S> tower::Layer<S> for GrpcMetrics {
    type Service = MeteredService<S>;

    fn layer(&self, inner: S) -> MeteredService<S> {
        MeteredService {
            inner,
            metrics: self.clone(),
        }
    }
}

#[derive(Clone)]
pub struct MeteredService<S> {
    inner: S,
    metrics: GrpcMetrics,
}

type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send>>;

impl<S, ReqBody, ResBody> tower::Service<Request<ReqBody>> for MeteredService<S>
where
    S: tower::Service<Request<ReqBody>, Response = Response<ResBody>> + Clone + Send + 'static,
    S::Future: Send + 'static,
    ReqBody: Send + 'static,
{
    type Response = Response<MeteredBody<ResBody>>;
    type Error = S::Error;
    type Future = BoxFuture<Result<Self::Response, S::Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request<ReqBody>) -> Self::Future {
        // The clone is the one that is ready; keep it and leave a fresh clone in its place.
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        let metrics = self.metrics.clone();
        let labels = metrics.labels(request.uri().path());
        let started = Instant::now();
        let span = CallSpan::open(request.headers(), labels.service, labels.method);
        Box::pin(span.clone().instrument(async move {
            let mut call = Call {
                metrics,
                labels,
                started,
                code: "CANCELLED",
                span,
            };
            let response = match inner.call(request).await {
                Ok(response) => response,
                Err(error) => {
                    call.code = "UNKNOWN";
                    return Err(error);
                }
            };
            if let Some(code) = code_name(response.headers()) {
                // Trailers-only: the status is known already; the body is empty.
                call.code = code;
            } else {
                // The status arrives in the trailers; until then a drop means CANCELLED.
                call.code = "CANCELLED";
            }
            Ok(response.map(|inner| MeteredBody {
                inner,
                span: call.span.clone(),
                call: Some(call),
            }))
        }))
    }
}

/// One call being measured; recorded when dropped, with the code known by then.
struct Call {
    metrics: GrpcMetrics,
    labels: MethodLabels,
    started: Instant,
    code: &'static str,
    span: CallSpan,
}

impl Drop for Call {
    fn drop(&mut self) {
        self.metrics.finish(&self.labels, self.code, self.started);
        self.span.finish(self.code, code_number(self.code));
    }
}

pin_project_lite::pin_project! {
    /// A response body that records its call once the trailers pass (or it is dropped).
    pub struct MeteredBody<B> {
        #[pin]
        inner: B,
        call: Option<Call>,
        span: CallSpan,
    }
}

impl<B: Body> Body for MeteredBody<B> {
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<B::Data>, B::Error>>> {
        let this = self.project();
        let _entered = this.span.enter();
        let polled = this.inner.poll_frame(cx);
        match &polled {
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(trailers) = frame.trailers_ref()
                    && let Some(mut call) = this.call.take()
                {
                    call.code = code_name(trailers).unwrap_or("UNKNOWN");
                }
            }
            Poll::Ready(Some(Err(_))) => {
                if let Some(mut call) = this.call.take() {
                    call.code = "INTERNAL";
                }
            }
            // The end: a trailers-only answer keeps the code from its headers.
            Poll::Ready(None) => drop(this.call.take()),
            Poll::Pending => {}
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}
