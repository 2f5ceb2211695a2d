//! A small OpenTelemetry collector for the tests of the nodes' `otel` feature: an OTLP/gRPC
//! trace service on a free loopback port, run inside the test, that keeps every span exported
//! to it. Point a node at it with `--otlp-endpoint` [`Collector::endpoint`].

use std::sync::{Arc, Mutex};
use std::time::Instant;

use opentelemetry_proto::tonic::collector::trace::v1::trace_service_server::{
    TraceService, TraceServiceServer,
};
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use opentelemetry_proto::tonic::common::v1::KeyValue;
pub use opentelemetry_proto::tonic::common::v1::any_value::Value;
pub use opentelemetry_proto::tonic::trace::v1::{Span, span::SpanKind};

use crate::{WAIT_MAX, free_port};

/// Spans kept at most: a test exports a handful; beyond this the collector refuses exports
/// (RESOURCE_EXHAUSTED) rather than grow without bound.
const SPANS_MAX: usize = 10_000;

/// One span as a node exported it, with the service that sent it.
#[derive(Clone, Debug)]
pub struct ExportedSpan {
    /// The resource's `service.name` (`wallet-write-node`, `wallet-read-node`).
    pub service_name: String,
    pub span: Span,
}

impl ExportedSpan {
    /// The trace id as W3C `traceparent` writes it: 32 lowercase hex digits.
    pub fn trace_id(&self) -> String {
        hex(&self.span.trace_id)
    }

    /// The parent's span id, 16 hex digits; "" for a root span.
    pub fn parent_span_id(&self) -> String {
        hex(&self.span.parent_span_id)
    }

    /// The value of attribute `key`, if the span has it.
    pub fn attribute(&self, key: &str) -> Option<&Value> {
        attribute(&self.span.attributes, key)
    }
}

fn attribute<'a>(attributes: &'a [KeyValue], key: &str) -> Option<&'a Value> {
    attributes
        .iter()
        .find(|attribute| attribute.key == key)?
        .value
        .as_ref()?
        .value
        .as_ref()
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|byte| format!("{byte:02x}")).collect()
}

/// The collector; stops serving when dropped.
pub struct Collector {
    port: u16,
    spans: Arc<Mutex<Vec<ExportedSpan>>>,
    server: tokio::task::JoinHandle<()>,
}

impl Collector {
    /// Starts serving on a free loopback port (call it inside a tokio runtime).
    pub async fn start() -> Collector {
        let port = free_port();
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", port))
            .await
            .expect("binding the collector's port");
        let spans = Arc::new(Mutex::new(Vec::new()));
        let service = TraceServiceServer::new(Sink {
            spans: Arc::clone(&spans),
        });
        let server = tokio::spawn(async move {
            tonic::transport::Server::builder()
                .add_service(service)
                .serve_with_incoming(tonic::transport::server::TcpIncoming::from(listener))
                .await
                .expect("collector serving");
        });
        Collector {
            port,
            spans,
            server,
        }
    }

    /// The `otlp_endpoint` of a node that should export here.
    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Every span received so far, in the order they arrived.
    pub fn spans(&self) -> Vec<ExportedSpan> {
        self.spans.lock().expect("lock").clone()
    }

    /// Waits (up to [`WAIT_MAX`]) for a span `matches` accepts; panics listing the spans
    /// received otherwise.
    pub async fn wait_for(&self, matches: impl Fn(&ExportedSpan) -> bool) -> ExportedSpan {
        let deadline = Instant::now() + WAIT_MAX;
        loop {
            if let Some(span) = self.spans().into_iter().find(|span| matches(span)) {
                return span;
            }
            assert!(
                Instant::now() < deadline,
                "no matching span within {WAIT_MAX:?}; received: {:#?}",
                self.spans()
            );
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
    }
}

impl Drop for Collector {
    fn drop(&mut self) {
        self.server.abort();
    }
}

struct Sink {
    spans: Arc<Mutex<Vec<ExportedSpan>>>,
}

#[tonic::async_trait]
impl TraceService for Sink {
    async fn export(
        &self,
        request: tonic::Request<ExportTraceServiceRequest>,
    ) -> Result<tonic::Response<ExportTraceServiceResponse>, tonic::Status> {
        let mut received = Vec::new();
        for resource_spans in request.into_inner().resource_spans {
            let service_name = resource_spans
                .resource
                .as_ref()
                .and_then(|resource| attribute(&resource.attributes, "service.name"))
                .and_then(|value| match value {
                    Value::StringValue(name) => Some(name.clone()),
                    _ => None,
                })
                .unwrap_or_default();
            for scope_spans in resource_spans.scope_spans {
                received.extend(scope_spans.spans.into_iter().map(|span| ExportedSpan {
                    service_name: service_name.clone(),
                    span,
                }));
            }
        }
        let mut spans = self.spans.lock().expect("lock");
        if spans.len() + received.len() > SPANS_MAX {
            return Err(tonic::Status::resource_exhausted(format!(
                "the test collector keeps at most {SPANS_MAX} spans"
            )));
        }
        spans.extend(received);
        Ok(tonic::Response::new(ExportTraceServiceResponse {
            partial_success: None,
        }))
    }
}
