//! The `/metrics` endpoint: a small HTTP/1.1 server (hyper) on its own port, so scraping never
//! competes with gRPC connection limits and can be exposed or firewalled separately.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use prometheus_client::registry::Registry;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;

/// Scrapes served at once; further connections wait in the listen backlog.
pub const CONNECTIONS_MAX: usize = 16;
/// A connection (with its requests) that lasts longer than this is closed.
pub const CONNECTION_DURATION_MAX: Duration = Duration::from_secs(30);

/// The OpenMetrics text format that `prometheus_client` writes; Prometheus reads it.
const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// Updates the gauges that are read at scrape time (queue depths, RocksDB sizes, ...).
pub type Refresh = Arc<dyn Fn() + Send + Sync>;

/// Serves `GET /metrics` on `listener` until `shutdown` is cancelled.
pub async fn serve(
    listener: TcpListener,
    registry: Arc<Registry>,
    refresh: Refresh,
    shutdown: CancellationToken,
) {
    let permits = Arc::new(Semaphore::new(CONNECTIONS_MAX));
    loop {
        let permit = tokio::select! {
            permit = permits.clone().acquire_owned() => match permit {
                Ok(permit) => permit,
                Err(_) => return,
            },
            () = shutdown.cancelled() => return,
        };
        let stream = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                Err(error) => {
                    tracing::warn!(%error, "metrics listener: accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
            () = shutdown.cancelled() => return,
        };
        let registry = registry.clone();
        let refresh = refresh.clone();
        let shutdown = shutdown.clone();
        tokio::spawn(async move {
            let _permit = permit;
            let service = hyper::service::service_fn(move |request| {
                let answer = answer(&request, &registry, &refresh);
                async move { Ok::<_, Infallible>(answer) }
            });
            let connection = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service);
            tokio::select! {
                _ = tokio::time::timeout(CONNECTION_DURATION_MAX, connection) => {}
                () = shutdown.cancelled() => {}
            }
        });
    }
}

fn answer<B>(
    request: &Request<B>,
    registry: &Registry,
    refresh: &Refresh,
) -> Response<Full<Bytes>> {
    let plain = |status: StatusCode, text: &'static str| {
        let mut response = Response::new(Full::new(Bytes::from_static(text.as_bytes())));
        *response.status_mut() = status;
        response
    };
    if request.uri().path() != "/metrics" {
        return plain(
            StatusCode::NOT_FOUND,
            "not found: metrics are at /metrics\n",
        );
    }
    if request.method() != Method::GET && request.method() != Method::HEAD {
        return plain(StatusCode::METHOD_NOT_ALLOWED, "use GET\n");
    }
    refresh();
    let mut text = String::with_capacity(16 * 1024);
    if prometheus_client::encoding::text::encode(&mut text, registry).is_err() {
        return plain(
            StatusCode::INTERNAL_SERVER_ERROR,
            "encoding the metrics failed\n",
        );
    }
    let mut response = Response::new(Full::new(Bytes::from(text)));
    response.headers_mut().insert(
        hyper::header::CONTENT_TYPE,
        hyper::header::HeaderValue::from_static(CONTENT_TYPE),
    );
    response
}

/// Binds `metrics_listen` (nodes do it before anything else starts, so a taken port stops the
/// node at once with a clear message). `None`: metrics are off.
pub async fn bind(address: Option<std::net::SocketAddr>) -> anyhow::Result<Option<TcpListener>> {
    let Some(address) = address else {
        tracing::info!("metrics_listen = \"off\": no /metrics endpoint");
        return Ok(None);
    };
    let listener = TcpListener::bind(address)
        .await
        .map_err(|error| anyhow::anyhow!("binding metrics_listen {address}: {error}"))?;
    tracing::info!(address = %listener.local_addr()?, "metrics serving at /metrics");
    Ok(Some(listener))
}
