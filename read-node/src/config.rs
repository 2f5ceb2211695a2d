//! The read node's configuration: a TOML file whose fields flags and environment override.

use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::{Context, ensure};
use serde::Deserialize;

/// Settings of one read node.
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Address the QueryService listens on.
    pub listen: SocketAddr,
    /// Write nodes to subscribe to (`host:port`). Each partition is followed from a listed
    /// node that holds a replica of it (one that does not is skipped).
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
    /// Origins whose pages may call this node with gRPC-web (CORS); `"*"` for any
    /// (`security::web`).
    #[serde(default)]
    pub grpc_web_origins: Vec<String>,
    /// TLS for dialing the write nodes (`[write_node_tls]` ca, cert, key, domain).
    #[serde(default)]
    pub write_node_tls: Option<security::ClientTls>,
    /// File with the token sent to the write nodes (it needs the `replicate` scope), and to
    /// the `bootstrap_from` read node.
    #[serde(default)]
    pub write_node_token_file: Option<PathBuf>,
    /// A read node (`host:port`) whose projections this node copies when its `data_dir` is
    /// empty, instead of folding the event log from genesis (`snapshot::fetch`). Unset: fold.
    #[serde(default)]
    pub bootstrap_from: Option<String>,
    /// TLS for dialing `bootstrap_from` (`[bootstrap_tls]` ca, cert, key, domain).
    #[serde(default)]
    pub bootstrap_tls: Option<security::ClientTls>,
    /// Calls served at once (a watch counts until it ends); more are shed with
    /// RESOURCE_EXHAUSTED / OVERLOADED. Default `limits::CALLS_IN_FLIGHT_MAX_DEFAULT`.
    #[serde(default = "default_calls_in_flight_max")]
    pub calls_in_flight_max: usize,
    /// Where Prometheus scrapes `/metrics`: "host:port", or "off". Unset: the `listen`
    /// address with the port + 1000 (`telemetry::METRICS_PORT_OFFSET`).
    #[serde(default)]
    pub metrics_listen: Option<telemetry::MetricsListen>,
    /// OpenTelemetry collector (OTLP/gRPC, e.g. "http://otel-collector:4317") that spans are
    /// exported to. "" (the default): no export. Needs a binary built with `--features otel`.
    #[serde(default)]
    pub otlp_endpoint: String,
    /// The share (0.0 to 1.0) of the traces starting at this node whose spans are exported; a
    /// call carrying a caller's W3C `traceparent` follows the caller's sampling decision.
    /// Default 1.0 (`telemetry::logs::TRACE_SAMPLE_RATIO_DEFAULT`).
    #[serde(default = "default_trace_sample_ratio")]
    pub trace_sample_ratio: f64,
}

/// `host:port`: a non-empty host, a u16 port, no path or whitespace.
fn is_host_port(authority: &str) -> bool {
    !authority.is_empty()
        && !authority.contains('/')
        && !authority.contains(char::is_whitespace)
        && authority
            .rsplit_once(':')
            .is_some_and(|(host, port)| !host.is_empty() && port.parse::<u16>().is_ok())
}

fn default_trace_sample_ratio() -> f64 {
    telemetry::logs::TRACE_SAMPLE_RATIO_DEFAULT
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
        security::web::validate_origins(&self.grpc_web_origins)?;
        ensure!(
            !self.write_nodes.is_empty(),
            "write_nodes is empty: name at least one write node (host:port)"
        );
        for node in &self.write_nodes {
            let authority = node.strip_prefix("http://").unwrap_or(node);
            ensure!(
                is_host_port(authority),
                "write node {node:?} must be host:port"
            );
        }
        if let Some(source) = &self.bootstrap_from {
            ensure!(
                is_host_port(source),
                "bootstrap_from = {source:?} must be host:port"
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
        self.metrics_address()?;
        telemetry::logs::check_otlp_endpoint(self.otlp_endpoint())?;
        telemetry::logs::check_trace_sample_ratio(self.trace_sample_ratio)?;
        Ok(())
    }

    /// Where spans are exported, if anywhere.
    pub fn otlp_endpoint(&self) -> Option<&str> {
        Some(self.otlp_endpoint.as_str()).filter(|endpoint| !endpoint.is_empty())
    }

    /// The address `/metrics` binds, or `None` when `metrics_listen = "off"`.
    pub fn metrics_address(&self) -> anyhow::Result<Option<SocketAddr>> {
        telemetry::MetricsListen::resolve(self.metrics_listen, self.listen)
            .map_err(anyhow::Error::msg)
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

    const EXAMPLE: &str = include_str!("../config.example.toml");

    /// The documented example sets every field, parses and validates.
    #[test]
    fn example_config_parses_validates_and_sets_every_field() {
        let config: Config = toml::from_str(EXAMPLE).expect("config.example.toml parses");
        config.validate().expect("config.example.toml validates");
        let keys = EXAMPLE.parse::<toml::Table>().unwrap();
        let mut keys: Vec<&str> = keys.keys().map(String::as_str).collect();
        keys.sort_unstable();
        assert_eq!(
            keys,
            [
                "calls_in_flight_max",
                "data_dir",
                "grpc_web_origins",
                "insecure",
                "listen",
                "metrics_listen",
                "otlp_endpoint",
                "trace_sample_ratio",
                "write_nodes"
            ]
        );
        // Optional files the example can only show commented out (they must exist).
        for shown in [
            "# tokens_file = ",
            "# [tls]",
            "# write_node_token_file = ",
            "# [write_node_tls]",
            "# bootstrap_from = ",
            "# [bootstrap_tls]",
        ] {
            assert!(
                EXAMPLE.contains(shown),
                "{shown:?} missing from the example"
            );
        }
        assert_eq!(
            config.metrics_address().unwrap(),
            Some("127.0.0.1:51061".parse().unwrap())
        );
        let mut off = config.clone();
        off.metrics_listen = Some(telemetry::MetricsListen::Off);
        assert_eq!(off.metrics_address().unwrap(), None);
        assert_eq!(
            config.trace_sample_ratio,
            telemetry::logs::TRACE_SAMPLE_RATIO_DEFAULT
        );
        let mut bad = config.clone();
        bad.otlp_endpoint = "not a url".into();
        let error = bad.validate().unwrap_err().to_string();
        assert!(error.contains("otlp_endpoint"), "{error}");
        for ratio in [1.5, -0.5, f64::NAN] {
            let mut bad = config.clone();
            bad.trace_sample_ratio = ratio;
            let error = bad.validate().unwrap_err().to_string();
            assert!(
                error.contains("trace_sample_ratio") && error.contains("between 0.0 and 1.0"),
                "{error}"
            );
        }
    }

    #[test]
    fn write_nodes_are_validated() {
        let mut config = Config {
            listen: "127.0.0.1:0".parse().unwrap(),
            write_nodes: Config::parse_write_nodes(" 127.0.0.1:1 ,, localhost:2"),
            data_dir: "/tmp/x".into(),
            tls: None,
            tokens_file: None,
            insecure: false,
            grpc_web_origins: Vec::new(),
            write_node_tls: None,
            write_node_token_file: None,
            bootstrap_from: None,
            bootstrap_tls: None,
            calls_in_flight_max: crate::limits::CALLS_IN_FLIGHT_MAX_DEFAULT,
            metrics_listen: None,
            otlp_endpoint: String::new(),
            trace_sample_ratio: telemetry::logs::TRACE_SAMPLE_RATIO_DEFAULT,
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
        config.write_nodes = vec!["localhost:2".into()];
        config.bootstrap_from = Some("read-0.read:50061".into());
        config.validate().unwrap();
        config.bootstrap_from = Some("read-0.read".into());
        assert!(
            config
                .validate()
                .unwrap_err()
                .to_string()
                .contains("bootstrap_from")
        );
        config.bootstrap_from = None;
        config.write_nodes.clear();
        assert!(config.validate().is_err());
    }
}
