//! TLS and tokens for the read node: its own server side (QueryService), and how it dials
//! the write nodes (`[write_node_tls]`, a token with the `replicate` scope).

use std::path::PathBuf;

use anyhow::Context;
use security::{AuthLayer, Secured, TokenTable};
use tonic::metadata::{Ascii, MetadataValue};
use tonic::transport::Server;

use crate::config::Config;

/// Flags for dialing the write nodes; flattened into the binary's `Args`.
#[derive(clap::Args, Debug, Clone, Default)]
pub struct WriteNodeArgs {
    /// PEM CA of the write nodes' certificates: dial them over TLS (config:
    /// [write_node_tls] ca).
    #[arg(long, env = "WALLET_WRITE_NODE_CA")]
    pub write_node_ca: Option<PathBuf>,
    /// PEM client certificate for write nodes that require one (config: [write_node_tls] cert).
    #[arg(long, env = "WALLET_WRITE_NODE_CERT", requires = "write_node_key")]
    pub write_node_cert: Option<PathBuf>,
    /// PEM private key of --write-node-cert (config: [write_node_tls] key).
    #[arg(long, env = "WALLET_WRITE_NODE_KEY", requires = "write_node_cert")]
    pub write_node_key: Option<PathBuf>,
    /// File holding the bearer token sent to the write nodes (scopes: replicate) (config:
    /// write_node_token_file).
    #[arg(long, env = "WALLET_WRITE_NODE_TOKEN_FILE")]
    pub write_node_token_file: Option<PathBuf>,
}

impl WriteNodeArgs {
    pub fn apply(&self, table: &mut toml::Table) {
        for (key, path) in [
            ("ca", &self.write_node_ca),
            ("cert", &self.write_node_cert),
            ("key", &self.write_node_key),
        ] {
            if let Some(path) = path {
                security::args::set_path(table, "write_node_tls", key, path);
            }
        }
        if let Some(path) = &self.write_node_token_file {
            security::args::set_path(table, "", "write_node_token_file", path);
        }
    }
}

/// Reads certificates and tokens, applies the exposure rule, returns the server builder and the auth layer.
pub fn prepare(config: &Config) -> anyhow::Result<Secured> {
    let tokens = security::tokens_for(
        config.listen,
        config.tls.is_some(),
        config.tokens_file.as_deref(),
        config.insecure,
    )?;
    let mut builder = Server::builder();
    if let Some(tls) = &config.tls {
        builder = builder
            .tls_config(tls.server_config(None).context("server TLS")?)
            .context("server TLS")?;
    }
    tracing::info!(
        tls = config.tls.is_some(),
        tokens = tokens.as_ref().map_or(0, TokenTable::len),
        write_node_tls = config.write_node_tls.is_some(),
        write_node_token = config.write_node_token_file.is_some(),
        "security"
    );
    Ok(Secured {
        server: builder,
        auth: AuthLayer::new(tokens, None),
        web_origins: config.grpc_web_origins.clone(),
    })
}

/// The `authorization` value (`Bearer <token>`, marked sensitive) for the token in `path`.
pub fn bearer(path: &std::path::Path) -> anyhow::Result<MetadataValue<Ascii>> {
    let mut value: MetadataValue<Ascii> = format!("Bearer {}", read_token(path)?)
        .parse()
        .with_context(|| format!("the token in {} is not ASCII", path.display()))?;
    value.set_sensitive(true);
    Ok(value)
}

/// Reads the token file for the write nodes: one line, surrounding whitespace ignored.
pub fn read_token(path: &std::path::Path) -> anyhow::Result<String> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("reading the token file {}", path.display()))?;
    let token = text.trim();
    anyhow::ensure!(
        !token.is_empty() && !token.contains(char::is_whitespace),
        "the token file {} must hold one token",
        path.display()
    );
    Ok(token.to_owned())
}
