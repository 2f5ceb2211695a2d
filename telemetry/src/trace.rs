//! The server span of each gRPC call (with the `otel` feature).
//!
//! The per-RPC layer (`grpc::GrpcMetrics`, the outermost layer after CORS and gRPC-web in
//! `security::server::Secured::layered`) opens one INFO span per call, named
//! `package.Service/Method` for OpenTelemetry, of kind server. When the request carries a W3C
//! `traceparent` (and `tracestate`), the span is made a child of that remote context before it
//! starts, so a client's trace links to the node's span; the sampler (`logs::init`) is
//! parent-based, so a trace the client sampled is always continued. The span is entered while
//! the handler runs and while each response frame is produced, so it lasts as long as the call
//! (a stream's whole life), and it is given the call's gRPC status code when it ends.
//!
//! Without the feature, `CallSpan` is a zero-sized type whose methods do nothing: such a build
//! opens no span and never looks at the trace headers.

#[cfg(feature = "otel")]
pub(crate) use otel::CallSpan;

#[cfg(not(feature = "otel"))]
pub(crate) use off::CallSpan;

#[cfg(feature = "otel")]
mod otel {
    use std::future::Future;

    use opentelemetry::propagation::{Extractor, TextMapPropagator as _};
    use opentelemetry::trace::TraceContextExt as _;
    use opentelemetry_sdk::propagation::TraceContextPropagator;
    use tracing::Instrument as _;
    use tracing_opentelemetry::OpenTelemetrySpanExt as _;

    /// gRPC codes that mark a server span as failed (OpenTelemetry's semantic conventions for
    /// gRPC: the server's own faults, not the caller's).
    const SERVER_ERRORS: [&str; 6] = [
        "UNKNOWN",
        "DEADLINE_EXCEEDED",
        "UNIMPLEMENTED",
        "INTERNAL",
        "UNAVAILABLE",
        "DATA_LOSS",
    ];

    /// One call's server span; clones are the same span, which ends when the last is dropped.
    #[derive(Clone)]
    pub(crate) struct CallSpan(tracing::Span);

    impl CallSpan {
        /// Opens the span of a call to `service`/`method`, a child of the caller's trace
        /// context if `headers` carry a valid one.
        pub(crate) fn open(
            headers: &http::HeaderMap,
            service: &'static str,
            method: &'static str,
        ) -> CallSpan {
            // `parent: None`: a call is a root in this process, whatever span the connection's
            // task happens to be in; its parent can only be the caller's.
            let span = tracing::info_span!(
                parent: None,
                "grpc",
                otel.name = %format_args!("{service}/{method}"),
                otel.kind = "server",
                otel.status_code = tracing::field::Empty,
                rpc.system = "grpc",
                rpc.service = service,
                rpc.method = method,
                rpc.grpc.status_code = tracing::field::Empty,
            );
            if let Some(parent) = remote_parent(headers) {
                // Must come before the span is first entered, which starts it. Fails harmlessly
                // (LayerNotFound) when no OTLP export is configured: nothing to link then.
                let _ = span.set_parent(parent);
            }
            CallSpan(span)
        }

        /// `future`, run inside the span (so the handler's own spans are its children).
        pub(crate) fn instrument<F: Future>(
            &self,
            future: F,
        ) -> tracing::instrument::Instrumented<F> {
            future.instrument(self.0.clone())
        }

        /// Enters the span while a response frame is produced: its end is the last exit.
        pub(crate) fn enter(&self) -> tracing::span::Entered<'_> {
            self.0.enter()
        }

        /// Records the call's final gRPC status code: its name (of `grpc::CODE_NAMES`) and
        /// its number.
        pub(crate) fn finish(&self, code: &'static str, number: i64) {
            self.0.record("rpc.grpc.status_code", number);
            if SERVER_ERRORS.contains(&code) {
                self.0.record("otel.status_code", "error");
            }
        }
    }

    /// The caller's span context from `traceparent`/`tracestate`, if valid.
    fn remote_parent(headers: &http::HeaderMap) -> Option<opentelemetry::Context> {
        // Most calls carry no trace context: skip the propagator for them.
        if !headers.contains_key("traceparent") {
            return None;
        }
        let context = TraceContextPropagator::new()
            .extract_with_context(&opentelemetry::Context::new(), &Headers(headers));
        let valid = context.span().span_context().is_valid();
        valid.then_some(context)
    }

    /// HTTP request headers as OpenTelemetry's propagators read them.
    struct Headers<'a>(&'a http::HeaderMap);

    impl Extractor for Headers<'_> {
        fn get(&self, key: &str) -> Option<&str> {
            self.0.get(key)?.to_str().ok()
        }

        fn keys(&self) -> Vec<&str> {
            self.0.keys().map(http::HeaderName::as_str).collect()
        }
    }

    #[cfg(test)]
    mod tests {
        use super::*;

        #[test]
        fn the_callers_context_comes_from_traceparent_and_tracestate() {
            let mut headers = http::HeaderMap::new();
            assert!(remote_parent(&headers).is_none());
            headers.insert(
                "traceparent",
                "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
                    .parse()
                    .unwrap(),
            );
            headers.insert("tracestate", "wallet=test".parse().unwrap());
            let context = remote_parent(&headers).expect("a valid traceparent");
            let span = context.span();
            let parent = span.span_context();
            assert_eq!(
                parent.trace_id().to_string(),
                "4bf92f3577b34da6a3ce929d0e0e4736"
            );
            assert_eq!(parent.span_id().to_string(), "00f067aa0ba902b7");
            assert!(parent.is_remote() && parent.is_sampled());
            assert_eq!(parent.trace_state().get("wallet"), Some("test"));
            // An all-zero trace id is invalid: the call starts a trace of its own.
            headers.insert(
                "traceparent",
                "00-00000000000000000000000000000000-00f067aa0ba902b7-01"
                    .parse()
                    .unwrap(),
            );
            assert!(remote_parent(&headers).is_none());
            headers.insert("traceparent", "nonsense".parse().unwrap());
            assert!(remote_parent(&headers).is_none());
        }
    }
}

#[cfg(not(feature = "otel"))]
mod off {
    use std::future::Future;

    /// No span: a zero-sized stand-in whose methods compile to nothing.
    #[derive(Clone)]
    pub(crate) struct CallSpan;

    /// What `enter` returns: nothing was entered.
    pub(crate) struct NotEntered;

    impl CallSpan {
        #[inline(always)]
        pub(crate) fn open(
            _headers: &http::HeaderMap,
            _service: &'static str,
            _method: &'static str,
        ) -> CallSpan {
            CallSpan
        }

        #[inline(always)]
        pub(crate) fn instrument<F: Future>(&self, future: F) -> F {
            future
        }

        #[inline(always)]
        pub(crate) fn enter(&self) -> NotEntered {
            NotEntered
        }

        #[inline(always)]
        pub(crate) fn finish(&self, _code: &'static str, _number: i64) {}
    }
}
