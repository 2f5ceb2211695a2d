//! TLS, mTLS between write nodes, and tokens for this node: what `run` needs from the
//! configuration, prepared (files read and checked) before anything starts. The model is in
//! the `security` crate's docs and in ARCHITECTURE.md, "Security".

use std::path::PathBuf;

use anyhow::Context;
use security::{AuthLayer, Secured, TokenTable};
use tonic::transport::{ClientTlsConfig, Server};

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

/// What `run` starts the node with: the server builder and auth layer, and the TLS config
/// peers are dialled with (`None`: plain text), built once here and handed to whoever dials a
/// peer (the raft senders, the saga's credit clients, snapshot fetches).
pub struct Prepared {
    pub secured: Secured,
    pub peer_tls: Option<ClientTlsConfig>,
}

/// Reads the certificates and tokens, applies the exposure rule, and returns the server
/// builder, the auth layer and the peer client TLS config.
pub fn prepare(config: &Config) -> anyhow::Result<Prepared> {
    config.validate_tls()?;
    let tokens = security::tokens_for(
        config.listen,
        config.tls.is_some(),
        config.tokens_file.as_deref(),
        config.insecure,
    )?;
    let mut builder = Server::builder();
    let mut peers = None;
    let mut peer_tls_client = None;
    if let (Some(tls), Some(peer_tls)) = (&config.tls, &config.peer_tls) {
        let server_config = tls
            .server_config(Some(&peer_tls.ca))
            .context("server TLS")?;
        builder = builder.tls_config(server_config).context("server TLS")?;
        peer_tls_client = Some(peer_tls.client_config(tls).context("peer TLS")?);
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
    tracing::info!(
        tls = config.tls.is_some(),
        client_certificates_required = config
            .tls
            .as_ref()
            .is_some_and(|tls| tls.client_ca.is_some()),
        tokens = tokens.as_ref().map_or(0, TokenTable::len),
        "security"
    );
    Ok(Prepared {
        secured: Secured {
            server: builder,
            auth: AuthLayer::new(tokens, peers),
            web_origins: config.grpc_web_origins.clone(),
        },
        peer_tls: peer_tls_client,
    })
}
