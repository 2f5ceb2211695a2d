//! The command-line flags (and environment variables) every node shares for TLS, tokens and
//! `--insecure`, merged into the TOML table of the node's configuration before it is parsed,
//! so flags override the file key by key.

use std::path::{Path, PathBuf};

/// Flags of a node's server side. Flattened into each node's `Args`.
#[derive(clap::Args, Debug, Clone, Default)]
pub struct ServerArgs {
    /// PEM certificate chain this node serves TLS with (config: [tls] cert). With it, every
    /// connection is TLS.
    #[arg(long, env = "WALLET_TLS_CERT", requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,
    /// PEM private key of --tls-cert (config: [tls] key).
    #[arg(long, env = "WALLET_TLS_KEY", requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,
    /// PEM CA whose client certificates every client must present (mTLS; config: [tls]
    /// client_ca).
    #[arg(long, env = "WALLET_TLS_CLIENT_CA", requires = "tls_cert")]
    pub tls_client_ca: Option<PathBuf>,
    /// Tokens file: SHA-256 hashes of bearer tokens with their scopes (config: tokens_file).
    /// With it, client calls need `authorization: Bearer <token>`.
    #[arg(long, env = "WALLET_TOKENS_FILE")]
    pub tokens_file: Option<PathBuf>,
    /// Allow listening on a non-loopback address without TLS and tokens (config: insecure).
    /// Only behind a private network or a service mesh that provides both.
    #[arg(long, env = "WALLET_INSECURE")]
    pub insecure: bool,
    /// An origin (scheme://host[:port], or "*") whose pages may call this node with gRPC-web;
    /// repeatable (config: grpc_web_origins; the environment variable: comma-separated).
    #[arg(
        long = "grpc-web-origin",
        env = "WALLET_GRPC_WEB_ORIGINS",
        value_delimiter = ','
    )]
    pub grpc_web_origins: Vec<String>,
}

/// Sets `section.key` (or top-level `key` when `section` is empty) to a path.
pub fn set_path(table: &mut toml::Table, section: &str, key: &str, path: &Path) {
    let value = toml::Value::String(path.display().to_string());
    if section.is_empty() {
        table.insert(key.to_owned(), value);
        return;
    }
    let entry = table
        .entry(section.to_owned())
        .or_insert_with(|| toml::Value::Table(toml::Table::new()));
    if !entry.is_table() {
        *entry = toml::Value::Table(toml::Table::new());
    }
    if let toml::Value::Table(inner) = entry {
        inner.insert(key.to_owned(), value);
    }
}

impl ServerArgs {
    /// Writes the flags that were given into the configuration table.
    pub fn apply(&self, table: &mut toml::Table) {
        for (key, path) in [
            ("cert", &self.tls_cert),
            ("key", &self.tls_key),
            ("client_ca", &self.tls_client_ca),
        ] {
            if let Some(path) = path {
                set_path(table, "tls", key, path);
            }
        }
        if let Some(path) = &self.tokens_file {
            set_path(table, "", "tokens_file", path);
        }
        if self.insecure {
            table.insert("insecure".into(), toml::Value::Boolean(true));
        }
        if !self.grpc_web_origins.is_empty() {
            let origins = self
                .grpc_web_origins
                .iter()
                .cloned()
                .map(toml::Value::String);
            table.insert(
                "grpc_web_origins".into(),
                toml::Value::Array(origins.collect()),
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_override_the_file_key_by_key() {
        let mut table: toml::Table = "[tls]\ncert = 'a.crt'\nkey = 'a.key'\n".parse().unwrap();
        ServerArgs {
            tls_cert: Some("b.crt".into()),
            tokens_file: Some("t.toml".into()),
            insecure: true,
            ..ServerArgs::default()
        }
        .apply(&mut table);
        assert_eq!(table["tls"]["cert"].as_str(), Some("b.crt"));
        assert_eq!(table["tls"]["key"].as_str(), Some("a.key"));
        assert_eq!(table["tokens_file"].as_str(), Some("t.toml"));
        assert_eq!(table["insecure"].as_bool(), Some(true));
    }
}
