//! TLS and bearer tokens for the SDK's connections.

use std::path::Path;

use tonic::metadata::{Ascii, MetadataValue};
use tonic::service::Interceptor;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint, Identity};

use crate::error::Error;

/// TLS settings: the CA that signs the nodes' certificates, and optionally a client
/// certificate for nodes that require one (mTLS). `Debug` never shows the private key.
#[derive(Clone, PartialEq, Eq)]
pub struct TlsConfig {
    /// PEM certificate(s) of the CA(s) to trust.
    pub ca_pem: Vec<u8>,
    /// PEM client certificate chain and PEM private key.
    pub client_identity: Option<(Vec<u8>, Vec<u8>)>,
    /// Name to verify in the node's certificate instead of the host dialled.
    pub domain: Option<String>,
}

impl std::fmt::Debug for TlsConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TlsConfig")
            .field("ca_pem_bytes", &self.ca_pem.len())
            .field("client_identity", &self.client_identity.is_some())
            .field("domain", &self.domain)
            .finish()
    }
}

fn read(path: &Path, what: &str) -> Result<Vec<u8>, Error> {
    std::fs::read(path)
        .map_err(|e| Error::config(format!("reading the {what} {}: {e}", path.display())))
}

impl TlsConfig {
    /// Trusts the PEM CA in `path`.
    pub fn from_ca_file(path: impl AsRef<Path>) -> Result<Self, Error> {
        Ok(Self {
            ca_pem: read(path.as_ref(), "CA file")?,
            client_identity: None,
            domain: None,
        })
    }

    /// Adds a client certificate and key (PEM files), for nodes that require one.
    pub fn with_client_cert_files(
        mut self,
        cert: impl AsRef<Path>,
        key: impl AsRef<Path>,
    ) -> Result<Self, Error> {
        self.client_identity = Some((
            read(cert.as_ref(), "client certificate")?,
            read(key.as_ref(), "client key")?,
        ));
        Ok(self)
    }

    /// The tonic client TLS config these settings make.
    pub fn client_tls_config(&self) -> ClientTlsConfig {
        let mut config = ClientTlsConfig::new().ca_certificate(Certificate::from_pem(&self.ca_pem));
        if let Some((cert, key)) = &self.client_identity {
            config = config.identity(Identity::from_pem(cert, key));
        }
        if let Some(domain) = &self.domain {
            config = config.domain_name(domain.clone());
        }
        config
    }
}

/// Attaches `authorization: Bearer <token>` to every call, marked sensitive so tonic and
/// hyper never print it; and, for a client that routes writes by itself, the metadata that
/// asks write nodes for NOT_LEADER hints instead of forwarding (`proto::NO_FORWARD_METADATA`).
#[derive(Clone, Default)]
pub struct Credentials {
    token: Option<MetadataValue<Ascii>>,
    routes_itself: bool,
}

impl Credentials {
    pub(crate) fn new(token: Option<&str>) -> Result<Self, Error> {
        token
            .map(|token| {
                let token = token.trim();
                if token.is_empty() || token.contains(char::is_whitespace) {
                    return Err(Error::config("the token is empty or contains whitespace"));
                }
                let mut value: MetadataValue<Ascii> = format!("Bearer {token}")
                    .parse()
                    .map_err(|_| Error::config("the token must be printable ASCII"))?;
                value.set_sensitive(true);
                Ok(value)
            })
            .transpose()
            .map(|token| Credentials {
                token,
                routes_itself: false,
            })
    }

    /// Writes carry [`proto::NO_FORWARD_METADATA`]: the client follows leader hints itself
    /// (given several write endpoints, it can reach the leaders directly, a hop fewer).
    pub(crate) fn routing_itself(self, routes_itself: bool) -> Self {
        Credentials {
            routes_itself,
            ..self
        }
    }
}

impl Interceptor for Credentials {
    fn call(
        &mut self,
        mut request: tonic::Request<()>,
    ) -> Result<tonic::Request<()>, tonic::Status> {
        if let Some(value) = &self.token {
            request
                .metadata_mut()
                .insert("authorization", value.clone());
        }
        if self.routes_itself {
            request.metadata_mut().insert(
                proto::NO_FORWARD_METADATA,
                MetadataValue::from_static("sdk"),
            );
        }
        Ok(request)
    }
}

/// A channel to one node with the credentials attached.
pub type Conn = InterceptedService<Channel, Credentials>;

/// A lazily connecting channel to one node (`host:port`, `http://` or `https://`), with `tls`
/// and the bearer `token` applied as [`crate::WalletClient`] applies them: for tools that
/// call a node's other services directly (walletctl's `replay` and `verify --endpoint`).
pub fn node_channel(
    endpoint: &str,
    tls: Option<&TlsConfig>,
    token: Option<&str>,
) -> Result<Conn, Error> {
    let uri = crate::endpoint::normalize_endpoint_for(endpoint, tls.is_some())?;
    let endpoint = Endpoint::from_shared(uri.clone())
        .map_err(|e| Error::config(format!("endpoint {uri:?}: {e}")))?
        .tcp_nodelay(true);
    connect_lazy(endpoint, tls, &Credentials::new(token)?)
}

/// Applies `tls` to `endpoint` (an `https://` URI needs it; an `http://` one refuses it, so
/// TLS is never silently skipped) and connects lazily.
pub(crate) fn connect_lazy(
    endpoint: Endpoint,
    tls: Option<&TlsConfig>,
    credentials: &Credentials,
) -> Result<Conn, Error> {
    let https = endpoint.uri().scheme_str() == Some("https");
    let endpoint = match (https, tls) {
        (true, Some(tls)) => endpoint
            .tls_config(tls.client_tls_config())
            .map_err(|e| Error::config(format!("TLS settings: {e}")))?,
        (false, None) => endpoint,
        (true, None) => {
            return Err(Error::config(format!(
                "endpoint {} is https:// but no TLS settings (CA) are configured",
                endpoint.uri()
            )));
        }
        (false, Some(_)) => {
            return Err(Error::config(format!(
                "endpoint {} is http:// but TLS is configured: use host:port or https://",
                endpoint.uri()
            )));
        }
    };
    Ok(InterceptedService::new(
        endpoint.connect_lazy(),
        credentials.clone(),
    ))
}
