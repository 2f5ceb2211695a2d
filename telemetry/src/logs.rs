//! The process's tracing subscriber: text or JSON lines on stdout, filtered by `RUST_LOG`
//! (else `default_filter`), and, with the `otel` feature and an `otlp_endpoint`, spans
//! exported over OTLP/gRPC: every trace a caller sampled (its W3C `traceparent` says so), and
//! `trace_sample_ratio` of the traces that start at the node. Only binaries call this;
//! libraries just emit.

use tracing_subscriber::Layer as _;
use tracing_subscriber::layer::SubscriberExt as _;
use tracing_subscriber::util::SubscriberInitExt as _;

/// Whether this build can export traces (`--features otel`).
pub const OTEL_BUILT: bool = cfg!(feature = "otel");

/// Validates the `otlp_endpoint` setting: an http(s) URL, and a binary that can export.
pub fn check_otlp_endpoint(endpoint: Option<&str>) -> anyhow::Result<()> {
    let Some(endpoint) = endpoint else {
        return Ok(());
    };
    anyhow::ensure!(
        (endpoint.starts_with("http://") || endpoint.starts_with("https://"))
            && endpoint.len() > "https://".len()
            && !endpoint.contains(char::is_whitespace),
        "otlp_endpoint {endpoint:?} must be an http:// or https:// URL, e.g. http://otel-collector:4317"
    );
    anyhow::ensure!(
        OTEL_BUILT,
        "otlp_endpoint is set but this binary was built without the `otel` feature \
         (cargo build --features otel); remove otlp_endpoint or rebuild"
    );
    Ok(())
}

/// Default of the `trace_sample_ratio` setting: every trace that starts at a node is exported.
/// Export is off unless `otlp_endpoint` is set, and whoever sets it wants to see traces at once
/// (it is also OpenTelemetry's default, parent-based always-on); a busy cluster lowers it. The
/// batch exporter's queue is bounded (2,048 spans, OpenTelemetry's default) and drops spans
/// rather than slowing calls when the collector falls behind.
pub const TRACE_SAMPLE_RATIO_DEFAULT: f64 = 1.0;

/// Validates the `trace_sample_ratio` setting: a share from 0.0 to 1.0.
pub fn check_trace_sample_ratio(ratio: f64) -> anyhow::Result<()> {
    anyhow::ensure!(
        (0.0..=1.0).contains(&ratio),
        "trace_sample_ratio {ratio} must be between 0.0 and 1.0: the share of calls without a \
         caller's trace context (traceparent) whose traces are exported, e.g. 0.01 for 1%; \
         calls with one follow their caller's sampling decision"
    );
    Ok(())
}

/// Flushes exported spans when dropped: keep it alive until the process ends.
pub struct LogGuard {
    #[cfg(feature = "otel")]
    provider: Option<opentelemetry_sdk::trace::SdkTracerProvider>,
}

impl Drop for LogGuard {
    fn drop(&mut self) {
        #[cfg(feature = "otel")]
        if let Some(provider) = self.provider.take()
            && let Err(error) = provider.shutdown()
        {
            eprintln!("flushing OpenTelemetry spans: {error}");
        }
    }
}

/// Installs the global subscriber. With `otlp_endpoint` (e.g. `http://otel-collector:4317`),
/// call it inside the tokio runtime: the exporter's gRPC channel needs it. `trace_sample_ratio`
/// (checked by `check_trace_sample_ratio`) is the share of the traces starting here that are
/// exported.
pub fn init(
    json: bool,
    default_filter: &str,
    otlp_endpoint: Option<&str>,
    trace_sample_ratio: f64,
    service_name: &'static str,
) -> anyhow::Result<LogGuard> {
    check_trace_sample_ratio(trace_sample_ratio)?;
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default_filter));
    let output = if json {
        tracing_subscriber::fmt::layer()
            .json()
            .with_current_span(true)
            .boxed()
    } else {
        tracing_subscriber::fmt::layer().with_ansi(false).boxed()
    };
    let registry = tracing_subscriber::registry().with(filter).with(output);
    #[cfg(feature = "otel")]
    {
        let (layer, provider) = match otlp_endpoint {
            Some(endpoint) => {
                let (layer, provider) = otel::layer(endpoint, trace_sample_ratio, service_name)?;
                (Some(layer), Some(provider))
            }
            None => (None, None),
        };
        registry.with(layer).try_init()?;
        Ok(LogGuard { provider })
    }
    #[cfg(not(feature = "otel"))]
    {
        let _ = service_name;
        check_otlp_endpoint(otlp_endpoint)?;
        registry.try_init()?;
        Ok(LogGuard {})
    }
}

#[cfg(feature = "otel")]
mod otel {
    use opentelemetry::trace::TracerProvider as _;
    use opentelemetry_otlp::WithExportConfig as _;
    use opentelemetry_sdk::trace::{Sampler, SdkTracerProvider};

    pub fn layer<S>(
        endpoint: &str,
        sample_ratio: f64,
        service_name: &'static str,
    ) -> anyhow::Result<(
        tracing_opentelemetry::OpenTelemetryLayer<S, opentelemetry_sdk::trace::Tracer>,
        SdkTracerProvider,
    )>
    where
        S: tracing::Subscriber + for<'span> tracing_subscriber::registry::LookupSpan<'span>,
    {
        let exporter = opentelemetry_otlp::SpanExporter::builder()
            .with_tonic()
            .with_endpoint(endpoint)
            .build()?;
        let resource = opentelemetry_sdk::Resource::builder()
            .with_service_name(service_name)
            .build();
        // Parent-based: a call whose caller sampled its trace is always exported, a call whose
        // caller did not sample it never is, and only traces starting here are sampled by the
        // ratio (by trace id, so every node keeps or drops the same trace). Set here, it
        // overrides OTEL_TRACES_SAMPLER.
        let sampler = Sampler::ParentBased(Box::new(Sampler::TraceIdRatioBased(sample_ratio)));
        let provider = SdkTracerProvider::builder()
            .with_sampler(sampler)
            .with_batch_exporter(exporter)
            .with_resource(resource)
            .build();
        let tracer = provider.tracer(service_name);
        Ok((tracing_opentelemetry::layer().with_tracer(tracer), provider))
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn trace_sample_ratio_is_a_share() {
        let check = |ratio: f64, valid: bool| {
            let checked = super::check_trace_sample_ratio(ratio);
            assert_eq!(checked.is_ok(), valid, "{ratio}: {checked:?}");
            if let Err(error) = checked {
                let error = error.to_string();
                assert!(error.contains("trace_sample_ratio"), "{error}");
                assert!(error.contains("between 0.0 and 1.0"), "{error}");
            }
        };
        for valid in [0.0, 0.01, 0.5, 1.0, super::TRACE_SAMPLE_RATIO_DEFAULT] {
            check(valid, true);
        }
        for invalid in [
            -0.1,
            1.01,
            100.0,
            f64::NAN,
            f64::INFINITY,
            f64::NEG_INFINITY,
        ] {
            check(invalid, false);
        }
    }
}
