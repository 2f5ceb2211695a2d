//! Endpoints as users write them (`host:port`, `http://host:port`, `https://host:port`) and
//! the URIs tonic connects to.

use crate::error::Error;

/// Turns a user-supplied endpoint into the URI tonic connects to: `host:port` gains an
/// `http://` scheme, a trailing `/` is dropped, and schemes other than `http://` and
/// `https://` are refused. [`normalize_endpoint_for`] with `tls` makes `host:port` https.
pub fn normalize_endpoint(endpoint: &str) -> Result<String, Error> {
    normalize_endpoint_for(endpoint, false)
}

/// [`normalize_endpoint`], where `host:port` becomes `https://host:port` if `tls`.
pub fn normalize_endpoint_for(endpoint: &str, tls: bool) -> Result<String, Error> {
    let trimmed = endpoint.trim().trim_end_matches('/');
    if trimmed.is_empty() {
        return Err(Error::config("empty endpoint"));
    }
    let (scheme, rest) = match trimmed.split_once("://") {
        Some((scheme @ ("http" | "https"), rest)) => (scheme, rest),
        Some(_) => {
            return Err(Error::config(format!(
                "endpoint {endpoint:?}: only http:// and https:// are supported"
            )));
        }
        None => (if tls { "https" } else { "http" }, trimmed),
    };
    let uri = format!("{scheme}://{rest}");
    let authority = rest;
    if authority.is_empty() || authority.contains('/') || authority.chars().any(char::is_whitespace)
    {
        return Err(Error::config(format!(
            "endpoint {endpoint:?} must be host:port or http://host:port"
        )));
    }
    match authority.rsplit_once(':') {
        Some((host, port)) if !host.is_empty() && port.parse::<u16>().is_ok() => {}
        _ => {
            return Err(Error::config(format!(
                "endpoint {endpoint:?} needs an explicit port (host:port)"
            )));
        }
    }
    tonic::transport::Endpoint::from_shared(uri.clone())
        .map_err(|e| Error::config(format!("endpoint {endpoint:?}: {e}")))?;
    Ok(uri)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_port_gains_a_scheme() {
        assert_eq!(
            normalize_endpoint("127.0.0.1:50051").unwrap(),
            "http://127.0.0.1:50051"
        );
        assert_eq!(
            normalize_endpoint(" localhost:1/ ").unwrap(),
            "http://localhost:1"
        );
    }

    #[test]
    fn http_uri_is_kept() {
        assert_eq!(
            normalize_endpoint("http://node-1.internal:50051").unwrap(),
            "http://node-1.internal:50051"
        );
        assert_eq!(
            normalize_endpoint("http://[::1]:50051").unwrap(),
            "http://[::1]:50051"
        );
        assert_eq!(
            normalize_endpoint("https://node-1.internal:50051").unwrap(),
            "https://node-1.internal:50051"
        );
        assert_eq!(
            normalize_endpoint_for("node-1:50051", true).unwrap(),
            "https://node-1:50051"
        );
    }

    #[test]
    fn bad_endpoints_are_refused() {
        for bad in [
            "",
            "  ",
            "grpc://a:1",
            "a",
            "a:",
            ":1",
            "a:99999",
            "http://a:1/x",
        ] {
            assert!(
                normalize_endpoint(bad).is_err(),
                "{bad:?} should be refused"
            );
        }
    }
}
