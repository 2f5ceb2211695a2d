//! gRPC-web, for browsers: every node accepts gRPC-web calls (`application/grpc-web*`, over
//! HTTP/1.1 or HTTP/2), which tonic-web turns into the gRPC call the services see, behind
//! the same metrics, overload guard and auth as any other call. A page served from another
//! origin may call a node only if the node's configuration lists that origin
//! (`grpc_web_origins`; `"*"` for any): the CORS preflight is answered here, before
//! anything else, and the headers a gRPC-web client sends and reads are allowed and exposed.

use std::time::Duration;

use anyhow::{Context as _, ensure};
use http::{HeaderName, HeaderValue, Method};
use tower_http::cors::{AllowOrigin, CorsLayer};

/// How long a browser may cache a preflight's answer.
const PREFLIGHT_MAX_AGE: Duration = Duration::from_secs(600);

/// Request headers a gRPC-web client may send across origins: the call's framing and
/// deadline, the bearer token, the trace context, and the routing opt-out.
const ALLOWED_HEADERS: [&str; 7] = [
    "content-type",
    "x-grpc-web",
    "x-user-agent",
    "grpc-timeout",
    "authorization",
    "traceparent",
    proto::NO_FORWARD_METADATA,
];

/// Response headers a gRPC-web client must read: the status and its details (trailers
/// arrive in the body, but a call that fails at once answers in headers).
const EXPOSED_HEADERS: [&str; 3] = ["grpc-status", "grpc-message", "grpc-status-details-bin"];

/// Checks `grpc_web_origins`: each `"*"` or an origin as browsers send it
/// (`scheme://host[:port]`, scheme http or https, no path).
pub fn validate_origins(origins: &[String]) -> anyhow::Result<()> {
    for origin in origins {
        if origin == "*" {
            continue;
        }
        let uri: http::Uri = origin
            .parse()
            .with_context(|| format!("grpc_web_origins: {origin:?} is not an origin"))?;
        ensure!(
            matches!(uri.scheme_str(), Some("http" | "https"))
                && uri.host().is_some()
                && !origin.ends_with('/')
                && uri
                    .path_and_query()
                    .is_none_or(|p| p.as_str().is_empty() || p == "/"),
            "grpc_web_origins: {origin:?} must be \"*\" or scheme://host[:port] (http or https, no path)"
        );
    }
    Ok(())
}

/// The CORS layer for `origins` (checked by [`validate_origins`]): none listed, no page of
/// another origin can call the node.
pub fn cors(origins: &[String]) -> CorsLayer {
    let allow_origin = if origins.iter().any(|origin| origin == "*") {
        AllowOrigin::any()
    } else {
        AllowOrigin::list(
            origins
                .iter()
                .filter_map(|origin| HeaderValue::from_str(origin).ok()),
        )
    };
    CorsLayer::new()
        .allow_origin(allow_origin)
        .allow_methods([Method::POST])
        .allow_headers(ALLOWED_HEADERS.map(HeaderName::from_static))
        .expose_headers(EXPOSED_HEADERS.map(HeaderName::from_static))
        .max_age(PREFLIGHT_MAX_AGE)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn origins_are_star_or_scheme_host_port() {
        let ok = |origins: &[&str]| {
            validate_origins(&origins.iter().map(|o| o.to_string()).collect::<Vec<_>>())
        };
        assert!(ok(&[]).is_ok());
        assert!(ok(&["*", "http://127.0.0.1:8080", "https://wallet.example.com"]).is_ok());
        for bad in [
            "wallet.example.com",
            "ftp://x.example",
            "https://x.example/app",
            "https://x.example/",
            "not an origin",
        ] {
            let error = ok(&[bad]).expect_err(bad).to_string();
            assert!(error.contains("grpc_web_origins"), "{error}");
        }
    }
}
