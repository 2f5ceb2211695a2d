//! TLS, mTLS between write nodes, and tokens for this node: what `run` needs from the
//! configuration, prepared (files read and checked) before anything starts. The model is in
//! the `security` crate's docs and in ARCHITECTURE.md, "Security".

use std::path::PathBuf;

use anyhow::Context;
use security::{AuthLayer, Secured, TokenTable};
use tonic::transport::Server;

use crate::config::Config;

/// Flags of a write node's peer TLS; flattened into the binary's `Args`.
#[derive(clap::Args, Debug, Clone, Default)]
pub struct PeerArgs {
    /// PEM CA that signs every write node's certificate (config: [peer_tls] ca). Required
    /// with --tls-cert: raft traffic is accepted only from certificates of this CA.
    #[arg(long, env = "WALLET_PEER_CA")]
    pub peer_ca: Option<PathBuf>,
    /// PEM certificate this node presents to its peers (config: [peer_tls] cert); the
    /// --tls-cert one if unset.
    #[arg(long, env = "WALLET_PEER_CERT", requires = "peer_key")]
    pub peer_cert: Option<PathBuf>,
    /// PEM private key of --peer-cert (config: [peer_tls] key).
    #[arg(long, env = "WALLET_PEER_KEY", requires = "peer_cert")]
    pub peer_key: Option<PathBuf>,
}

impl PeerArgs {
    pub fn apply(&self, table: &mut toml::Table) {
        for (key, path) in [
            ("ca", &self.peer_ca),
            ("cert", &self.peer_cert),
            ("key", &self.peer_key),
        ] {
            if let Some(path) = path {
                security::args::set_path(table, "peer_tls", key, path);
            }
        }
    }
}

/// Checks the TLS settings' shape (files are read by [`prepare`]).
pub fn validate(config: &Config) -> anyhow::Result<()> {
    match (&config.tls, &config.peer_tls) {
        (Some(_), None) => anyhow::bail!(
            "TLS is on but [peer_tls] ca (--peer-ca) is not set: raft traffic between write \
             nodes must be authenticated by the cluster's peer CA"
        ),
        (None, Some(_)) => anyhow::bail!(
            "[peer_tls] (--peer-ca) needs TLS on: set [tls] cert and key (--tls-cert, --tls-key)"
        ),
        _ => Ok(()),
    }
}

/// Reads the certificates and tokens, applies the exposure rule, points the peer transport
/// at the peer TLS config, and returns the server builder and the auth layer.
pub fn prepare(config: &Config) -> anyhow::Result<Secured> {
    validate(config)?;
    let tokens = security::tokens_for(
        config.listen,
        config.tls.is_some(),
        config.tokens_file.as_deref(),
        config.insecure,
    )?;
    let mut builder = Server::builder();
    let mut peers = None;
    match (&config.tls, &config.peer_tls) {
        (Some(tls), Some(peer_tls)) => {
            let server_config = tls
                .server_config(Some(&peer_tls.ca))
                .context("server TLS")?;
            builder = builder.tls_config(server_config).context("server TLS")?;
            crate::transport::set_peer_tls(Some(peer_tls.client_config(tls).context("peer TLS")?));
            peers = Some(
                peer_tls
                    .verifier(
                        config
                            .peers
                            .iter()
                            .map(|(&id, address)| (id, address.as_str())),
                    )
                    .context("peer TLS")?,
            );
        }
        _ => crate::transport::set_peer_tls(None),
    }
    tracing::info!(
        tls = config.tls.is_some(),
        client_certificates_required = config
            .tls
            .as_ref()
            .is_some_and(|tls| tls.client_ca.is_some()),
        tokens = tokens.as_ref().map_or(0, TokenTable::len),
        "security"
    );
    Ok(Secured {
        server: builder,
        auth: AuthLayer::new(tokens, peers),
    })
}
