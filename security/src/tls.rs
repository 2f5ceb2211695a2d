//! TLS settings (PEM files) and what they turn into: tonic's server and client TLS configs,
//! and the peer check for raft traffic.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{Context, ensure};
use rustls_pki_types::pem::PemObject as _;
use rustls_pki_types::{CertificateDer, ServerName, UnixTime};
use serde::Deserialize;
use tokio_rustls::rustls::RootCertStore;
use tokio_rustls::rustls::server::WebPkiClientVerifier;
use tokio_rustls::rustls::server::danger::ClientCertVerifier;
use tonic::transport::{Certificate, ClientTlsConfig, Endpoint, Identity, ServerTlsConfig};

/// How long a TLS handshake may take before the server drops the connection, so half-open
/// handshakes cannot pile up.
pub const HANDSHAKE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

/// The TLS a node serves with: its certificate chain and key, and optionally a CA whose
/// client certificates are then required of every client (mTLS for client traffic).
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct ServerTls {
    /// PEM certificate chain, leaf first. Its SANs must name the host clients dial.
    pub cert: PathBuf,
    /// PEM private key (PKCS#8, PKCS#1 or SEC1).
    pub key: PathBuf,
    /// PEM CA(s) of client certificates. Set: every connection must present a certificate
    /// from this CA or the peer CA. Unset: client certificates are optional (peers still
    /// present theirs, and tokens authenticate clients).
    #[serde(default)]
    pub client_ca: Option<PathBuf>,
}

/// How a write node authenticates to and authenticates its peers: the cluster's peer CA,
/// and the certificate it presents when dialing them (its server certificate if unset; it
/// must then be valid for client authentication too, as `walletctl dev-certs` makes them).
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct PeerTls {
    /// PEM CA that signs every write node's certificate.
    pub ca: PathBuf,
    #[serde(default)]
    pub cert: Option<PathBuf>,
    #[serde(default)]
    pub key: Option<PathBuf>,
}

/// TLS for a client dialing nodes (the read node dialing write nodes, the SDK, walletctl).
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct ClientTls {
    /// PEM CA(s) trusted to sign the nodes' certificates.
    pub ca: PathBuf,
    /// PEM client certificate and key, for nodes that require client certificates.
    #[serde(default)]
    pub cert: Option<PathBuf>,
    #[serde(default)]
    pub key: Option<PathBuf>,
    /// Name to verify in the node's certificate instead of the host dialled.
    #[serde(default)]
    pub domain: Option<String>,
}

fn read(path: &Path, what: &str) -> anyhow::Result<Vec<u8>> {
    std::fs::read(path).with_context(|| format!("reading the {what} {}", path.display()))
}

/// Reads and checks a PEM certificate file (at least one certificate).
fn read_certs(path: &Path, what: &str) -> anyhow::Result<Vec<u8>> {
    let pem = read(path, what)?;
    let count = CertificateDer::pem_slice_iter(&pem)
        .collect::<Result<Vec<_>, _>>()
        .with_context(|| format!("the {what} {} is not PEM", path.display()))?
        .len();
    ensure!(
        count > 0,
        "the {what} {} holds no certificate",
        path.display()
    );
    Ok(pem)
}

fn identity(cert: &Path, key: &Path) -> anyhow::Result<Identity> {
    let cert = read_certs(cert, "certificate")?;
    let key_pem = read(key, "private key")?;
    rustls_pki_types::PrivateKeyDer::from_pem_slice(&key_pem)
        .with_context(|| format!("{} holds no PEM private key", key.display()))?;
    Ok(Identity::from_pem(cert, key_pem))
}

fn optional_identity(
    cert: Option<&PathBuf>,
    key: Option<&PathBuf>,
) -> anyhow::Result<Option<Identity>> {
    match (cert, key) {
        (Some(cert), Some(key)) => Ok(Some(identity(cert, key)?)),
        (None, None) => Ok(None),
        _ => anyhow::bail!("a client certificate needs both cert and key"),
    }
}

impl ServerTls {
    /// The server config: this node's identity; client certificates from `client_ca` and the
    /// peer CA are verified, and required if `client_ca` is set.
    pub fn server_config(&self, peer_ca: Option<&Path>) -> anyhow::Result<ServerTlsConfig> {
        let mut config = ServerTlsConfig::new()
            .identity(identity(&self.cert, &self.key)?)
            .timeout(HANDSHAKE_TIMEOUT);
        let mut roots = Vec::new();
        if let Some(path) = &self.client_ca {
            roots.extend(read_certs(path, "client CA")?);
            roots.push(b'\n');
        }
        if let Some(path) = peer_ca {
            roots.extend(read_certs(path, "peer CA")?);
        }
        if !roots.is_empty() {
            config = config
                .client_ca_root(Certificate::from_pem(roots))
                .client_auth_optional(self.client_ca.is_none());
        }
        Ok(config)
    }
}

impl PeerTls {
    /// The config a write node dials its peers with: the peer CA as the only trust root, and
    /// this node's certificate (`cert`/`key`, else the server's).
    pub fn client_config(&self, server: &ServerTls) -> anyhow::Result<ClientTlsConfig> {
        let identity = match optional_identity(self.cert.as_ref(), self.key.as_ref())? {
            Some(identity) => identity,
            None => identity(&server.cert, &server.key)?,
        };
        Ok(ClientTlsConfig::new()
            .ca_certificate(Certificate::from_pem(read_certs(&self.ca, "peer CA")?))
            .identity(identity)
            .timeout(HANDSHAKE_TIMEOUT))
    }

    /// The check PeerService applies to its callers; `peers` are (node id, host:port).
    pub fn verifier<'a>(
        &self,
        peers: impl IntoIterator<Item = (u64, &'a str)>,
    ) -> anyhow::Result<PeerVerifier> {
        PeerVerifier::new(&read_certs(&self.ca, "peer CA")?, peers)
    }
}

impl ClientTls {
    pub fn client_config(&self) -> anyhow::Result<ClientTlsConfig> {
        let mut config = ClientTlsConfig::new()
            .ca_certificate(Certificate::from_pem(read_certs(&self.ca, "CA")?))
            .timeout(HANDSHAKE_TIMEOUT);
        if let Some(identity) = optional_identity(self.cert.as_ref(), self.key.as_ref())? {
            config = config.identity(identity);
        }
        if let Some(domain) = &self.domain {
            config = config.domain_name(domain.clone());
        }
        Ok(config)
    }
}

/// `host:port` as an endpoint: `https://` with `tls`, else `http://`. An explicit scheme
/// must match.
pub fn endpoint(address: &str, tls: Option<&ClientTlsConfig>) -> anyhow::Result<Endpoint> {
    let scheme = if tls.is_some() { "https" } else { "http" };
    let uri = match address.split_once("://") {
        Some((given, _)) => {
            ensure!(
                given == scheme,
                "{address}: scheme {given}:// but TLS is {}",
                if tls.is_some() { "on" } else { "off" }
            );
            address.to_owned()
        }
        None => format!("{scheme}://{address}"),
    };
    let endpoint = Endpoint::from_shared(uri).with_context(|| format!("address {address:?}"))?;
    match tls {
        Some(tls) => endpoint
            .tls_config(tls.clone())
            .with_context(|| format!("TLS for {address}")),
        None => Ok(endpoint),
    }
}

/// Decides whether a TLS client certificate belongs to a peer: it chains to the peer CA and
/// has a DNS or IP SAN equal to the host of one of the configured peers.
pub struct PeerVerifier {
    verifier: Arc<dyn ClientCertVerifier>,
    peer_hosts: Vec<(u64, ServerName<'static>)>,
}

/// Which peers a verified certificate may speak for: the node ids whose host it names. Put
/// into the request's extensions by the auth layer, so PeerService can check that the node
/// id a message claims is one of them (with one certificate per node, exactly its own).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PeerIdentity {
    pub node_ids: Vec<u64>,
}

impl std::fmt::Debug for PeerVerifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PeerVerifier")
            .field("peer_hosts", &self.peer_hosts)
            .finish_non_exhaustive()
    }
}

/// The host of `host:port` (`[v6]:port` too), without a scheme.
pub fn host_of(address: &str) -> &str {
    let address = address.split_once("://").map_or(address, |(_, rest)| rest);
    let host = address.rsplit_once(':').map_or(address, |(host, _)| host);
    host.trim_start_matches('[').trim_end_matches(']')
}

impl PeerVerifier {
    pub fn new<'a>(
        ca_pem: &[u8],
        peers: impl IntoIterator<Item = (u64, &'a str)>,
    ) -> anyhow::Result<PeerVerifier> {
        let mut roots = RootCertStore::empty();
        for cert in CertificateDer::pem_slice_iter(ca_pem) {
            roots
                .add(cert.context("peer CA is not PEM")?)
                .context("peer CA certificate is not usable as a trust root")?;
        }
        ensure!(!roots.is_empty(), "peer CA holds no certificate");
        let verifier = WebPkiClientVerifier::builder_with_provider(
            Arc::new(roots),
            Arc::new(tokio_rustls::rustls::crypto::ring::default_provider()),
        )
        .build()
        .context("building the peer certificate verifier")?;
        let peer_hosts = peers
            .into_iter()
            .map(|(id, address)| {
                ServerName::try_from(host_of(address).to_owned())
                    .map(|host| (id, host))
                    .with_context(|| format!("peer {id}: address {address:?} has no valid host"))
            })
            .collect::<anyhow::Result<Vec<_>>>()?;
        Ok(PeerVerifier {
            verifier,
            peer_hosts,
        })
    }

    /// The peers `chain` (leaf first, as the TLS handshake presented it) may speak for; the
    /// error says why it is no peer's, for the UNAUTHENTICATED message.
    pub fn verify(
        &self,
        chain: Option<&[CertificateDer<'static>]>,
    ) -> Result<PeerIdentity, String> {
        let Some((leaf, intermediates)) = chain.and_then(<[_]>::split_first) else {
            return Err(
                "no client certificate: PeerService needs the peer's TLS client certificate".into(),
            );
        };
        self.verifier
            .verify_client_cert(leaf, intermediates, UnixTime::now())
            .map_err(|error| format!("client certificate is not from the peer CA: {error}"))?;
        let leaf = webpki::EndEntityCert::try_from(leaf)
            .map_err(|error| format!("unreadable client certificate: {error}"))?;
        let node_ids: Vec<u64> = self
            .peer_hosts
            .iter()
            .filter(|(_, host)| leaf.verify_is_valid_for_subject_name(host).is_ok())
            .map(|(id, _)| *id)
            .collect();
        if node_ids.is_empty() {
            Err("client certificate names none of the configured peers".into())
        } else {
            Ok(PeerIdentity { node_ids })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hosts_of_addresses() {
        assert_eq!(host_of("127.0.0.1:50051"), "127.0.0.1");
        assert_eq!(host_of("https://w-0.w.ns.svc:50051"), "w-0.w.ns.svc");
        assert_eq!(host_of("[::1]:1"), "::1");
    }

    #[test]
    fn endpoints_follow_tls() {
        assert!(endpoint("a:1", None).is_ok());
        assert!(endpoint("https://a:1", None).is_err());
        let tls = ClientTlsConfig::new();
        assert_eq!(
            endpoint("a:1", Some(&tls)).unwrap().uri().scheme_str(),
            Some("https")
        );
        assert!(endpoint("http://a:1", Some(&tls)).is_err());
    }
}
