//! The read node's configuration: a TOML file whose fields flags and environment override.

use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::{Context, ensure};
use serde::Deserialize;

/// Settings of one read node.
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Address the QueryService listens on.
    pub listen: SocketAddr,
    /// Write nodes to subscribe to (`host:port`); any of them serves every partition.
    pub write_nodes: Vec<String>,
    /// RocksDB directory of the projections and their checkpoint.
    pub data_dir: PathBuf,
    /// TLS for QueryService clients; `[tls]` cert, key, client_ca.
    #[serde(default)]
    pub tls: Option<security::ServerTls>,
    /// Bearer tokens (hashes and scopes) that QueryService calls must carry; open if unset.
    #[serde(default)]
    pub tokens_file: Option<PathBuf>,
    /// Listen beyond loopback without TLS and tokens (see `security::check_exposure`).
    #[serde(default)]
    pub insecure: bool,
    /// TLS for dialing the write nodes (`[write_node_tls]` ca, cert, key, domain).
    #[serde(default)]
    pub write_node_tls: Option<security::ClientTls>,
    /// File with the token sent to the write nodes (it needs the `replicate` scope).
    #[serde(default)]
    pub write_node_token_file: Option<PathBuf>,
    /// Calls served at once (a watch counts until it ends); more are shed with
    /// RESOURCE_EXHAUSTED / OVERLOADED. Default `limits::CALLS_IN_FLIGHT_MAX_DEFAULT`.
    #[serde(default = "default_calls_in_flight_max")]
    pub calls_in_flight_max: usize,
}

fn default_calls_in_flight_max() -> usize {
    crate::limits::CALLS_IN_FLIGHT_MAX_DEFAULT
}

impl Config {
    /// `host:port,host:port,...` into a list, trimmed, empty items dropped.
    pub fn parse_write_nodes(text: &str) -> Vec<String> {
        text.split(',')
            .map(str::trim)
            .filter(|item| !item.is_empty())
            .map(str::to_owned)
            .collect()
    }

    pub fn validate(&self) -> anyhow::Result<()> {
        ensure!(
            !self.write_nodes.is_empty(),
            "write_nodes is empty: name at least one write node (host:port)"
        );
        for node in &self.write_nodes {
            let authority = node.strip_prefix("http://").unwrap_or(node);
            ensure!(
                !authority.is_empty()
                    && !authority.contains('/')
                    && !authority.contains(char::is_whitespace)
                    && authority.rsplit_once(':').is_some_and(|(host, port)| {
                        !host.is_empty() && port.parse::<u16>().is_ok()
                    }),
                "write node {node:?} must be host:port"
            );
        }
        ensure!(
            !self.data_dir.as_os_str().is_empty(),
            "data_dir must not be empty"
        );
        ensure!(
            (crate::limits::CALLS_IN_FLIGHT_MAX_MIN..=crate::limits::CALLS_IN_FLIGHT_MAX_MAX)
                .contains(&self.calls_in_flight_max),
            "calls_in_flight_max = {}: must be between {} and {}",
            self.calls_in_flight_max,
            crate::limits::CALLS_IN_FLIGHT_MAX_MIN,
            crate::limits::CALLS_IN_FLIGHT_MAX_MAX
        );
        Ok(())
    }

    /// The write nodes as URIs tonic connects to.
    pub fn write_node_uris(&self) -> anyhow::Result<Vec<String>> {
        self.validate().context("invalid read node configuration")?;
        Ok(self
            .write_nodes
            .iter()
            .map(|node| {
                if node.starts_with("http://") {
                    node.clone()
                } else {
                    format!("http://{node}")
                }
            })
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn write_nodes_are_validated() {
        let mut config = Config {
            listen: "127.0.0.1:0".parse().unwrap(),
            write_nodes: Config::parse_write_nodes(" 127.0.0.1:1 ,, localhost:2"),
            data_dir: "/tmp/x".into(),
            tls: None,
            tokens_file: None,
            insecure: false,
            write_node_tls: None,
            write_node_token_file: None,
            calls_in_flight_max: crate::limits::CALLS_IN_FLIGHT_MAX_DEFAULT,
        };
        assert_eq!(config.write_nodes, ["127.0.0.1:1", "localhost:2"]);
        config.validate().unwrap();
        assert_eq!(
            config.write_node_uris().unwrap(),
            ["http://127.0.0.1:1", "http://localhost:2"]
        );
        config.write_nodes = vec!["no-port".into()];
        assert!(
            config
                .validate()
                .unwrap_err()
                .to_string()
                .contains("host:port")
        );
        config.write_nodes.clear();
        assert!(config.validate().is_err());
    }
}
