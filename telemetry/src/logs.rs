//! The process's tracing subscriber: text or JSON lines on stdout, filtered by `RUST_LOG`
//! (else `default_filter`), and, with the `otel` feature and an `otlp_endpoint`, every span
//! exported over OTLP/gRPC. Only binaries call this; libraries just emit.

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
/// call it inside the tokio runtime: the exporter's gRPC channel needs it.
pub fn init(
    json: bool,
    default_filter: &str,
    otlp_endpoint: Option<&str>,
    service_name: &'static str,
) -> anyhow::Result<LogGuard> {
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
                let (layer, provider) = otel::layer(endpoint, service_name)?;
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
    use opentelemetry_sdk::trace::SdkTracerProvider;

    pub fn layer<S>(
        endpoint: &str,
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
        let provider = SdkTracerProvider::builder()
            .with_batch_exporter(exporter)
            .with_resource(resource)
            .build();
        let tracer = provider.tracer(service_name);
        Ok((tracing_opentelemetry::layer().with_tracer(tracer), provider))
    }
}
