//! Node configuration: a TOML file, overridden by flags (and their environment variables).

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::{Context, ensure};

use crate::limits;
use serde::Deserialize;

/// Configuration of one write node. Every field is explicit; `validate` explains what is wrong.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// This node's id: a key of `peers`, never 0 (raft reserves 0 for "none").
    pub node_id: u64,
    /// Address the gRPC server binds (client API and peer transport share it).
    pub listen: SocketAddr,
    /// Every write node of the cluster, this one included: id -> "host:port" that others dial.
    #[serde(deserialize_with = "peers_table")]
    pub peers: BTreeMap<u64, String>,
    /// RocksDB data directory; created on first start.
    pub data_dir: PathBuf,
    /// Raft groups (account partitions), 8 when not given. Fixed at cluster creation and
    /// stored; a node refuses data created with another count.
    pub partitions: u32,
    /// Replicas of each partition (R: 1, 3, 5, 7 or 9), placed on that many of `peers` by
    /// `placement::Placement::new`: a node hosts, applies and stores only the partitions
    /// placed on it. Unset: every node holds every partition (R = the node count). Fixed at
    /// cluster creation, like the node set: a node refuses data placed otherwise.
    #[serde(default)]
    pub replicas: Option<usize>,
    /// A partition is snapshotted every this many applied raft entries, or every
    /// `snapshot_interval_events` applied events, whichever comes first (an entry carries a
    /// batch of commands). Bounds restart time and the raft log's length.
    #[serde(default = "default_snapshot_interval_entries")]
    pub snapshot_interval_entries: u64,
    /// See `snapshot_interval_entries`: a restart replays at most about this many events per
    /// partition on top of its snapshot.
    #[serde(default = "default_snapshot_interval_events")]
    pub snapshot_interval_events: u64,
    /// Raft entries kept behind the newest snapshot, so a follower that is briefly behind
    /// catches up from the log; one further behind is sent the snapshot.
    #[serde(default = "default_log_retain_entries")]
    pub log_retain_entries: u64,
    /// TLS for every connection (clients and peers); `[tls]` cert, key, client_ca.
    #[serde(default)]
    pub tls: Option<security::ServerTls>,
    /// The cluster's peer CA and this node's peer certificate; required with `tls`.
    #[serde(default)]
    pub peer_tls: Option<security::PeerTls>,
    /// Bearer tokens (hashes and scopes) that client calls must carry; open if unset.
    #[serde(default)]
    pub tokens_file: Option<PathBuf>,
    /// Listen beyond loopback without TLS and tokens (see `security::check_exposure`).
    #[serde(default)]
    pub insecure: bool,
    /// Origins whose pages may call this node with gRPC-web (CORS); `"*"` for any
    /// (`security::web`).
    #[serde(default)]
    pub grpc_web_origins: Vec<String>,
    /// Client calls served at once (a stream counts until it ends); more are shed with
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

fn default_trace_sample_ratio() -> f64 {
    telemetry::logs::TRACE_SAMPLE_RATIO_DEFAULT
}

fn default_calls_in_flight_max() -> usize {
    limits::CALLS_IN_FLIGHT_MAX_DEFAULT
}

fn default_snapshot_interval_entries() -> u64 {
    limits::SNAPSHOT_INTERVAL_ENTRIES_DEFAULT
}

fn default_snapshot_interval_events() -> u64 {
    limits::SNAPSHOT_INTERVAL_EVENTS_DEFAULT
}

fn default_log_retain_entries() -> u64 {
    limits::LOG_RETAIN_ENTRIES_DEFAULT
}

/// TOML table keys are strings: `[peers]` `1 = "host:port"` arrives as "1".
fn peers_table<'de, D: serde::Deserializer<'de>>(
    deserializer: D,
) -> Result<BTreeMap<u64, String>, D::Error> {
    let table = BTreeMap::<String, String>::deserialize(deserializer)?;
    table
        .into_iter()
        .map(|(id, address)| {
            let id = id
                .parse::<u64>()
                .map_err(|_| serde::de::Error::custom(format!("peer id {id:?} is not a number")))?;
            Ok((id, address))
        })
        .collect()
}

impl Config {
    /// Replicas of each partition: `replicas`, or every node when it is unset.
    pub fn replicas(&self) -> usize {
        self.replicas.unwrap_or(self.peers.len())
    }

    /// Where every partition lives: the same on every node, derived from the node set and
    /// the replica count alone (both fixed at creation).
    pub fn placement(&self) -> anyhow::Result<placement::Placement> {
        placement::Placement::new(
            &self.peers.keys().copied().collect(),
            self.partitions,
            self.replicas(),
        )
        .context("placement")
    }

    pub fn validate(&self) -> anyhow::Result<()> {
        security::web::validate_origins(&self.grpc_web_origins)?;
        ensure!(
            self.node_id != 0,
            "node_id must not be 0 (raft reserves 0 for 'no node')"
        );
        ensure!(
            self.peers.contains_key(&self.node_id),
            "peers must include this node (node_id {}); got ids {:?}",
            self.node_id,
            self.peers.keys().collect::<Vec<_>>()
        );
        ensure!(!self.peers.contains_key(&0), "peer id 0 is reserved");
        let replicas = self.replicas();
        ensure!(
            placement::REPLICAS_ALLOWED.contains(&replicas),
            "replicas = {replicas}: a partition may have {:?} replicas (an even count adds no \
             fault tolerance){}",
            placement::REPLICAS_ALLOWED,
            if self.replicas.is_none() {
                " and, with `replicas` unset, every write node holds every partition"
            } else {
                ""
            }
        );
        ensure!(
            replicas <= self.peers.len(),
            "replicas = {replicas}: more than the {} write nodes in peers",
            self.peers.len()
        );
        for (id, address) in &self.peers {
            ensure!(
                address
                    .rsplit_once(':')
                    .is_some_and(|(host, port)| !host.is_empty() && port.parse::<u16>().is_ok()),
                "peer {id}: address {address:?} is not host:port"
            );
        }
        ensure!(
            (1..=limits::PARTITIONS_MAX).contains(&self.partitions),
            "partitions = {}: must be between 1 and {}",
            self.partitions,
            limits::PARTITIONS_MAX
        );
        ensure!(
            (limits::SNAPSHOT_INTERVAL_ENTRIES_MIN..=limits::SNAPSHOT_INTERVAL_ENTRIES_MAX)
                .contains(&self.snapshot_interval_entries),
            "snapshot_interval_entries = {}: must be between {} and {}",
            self.snapshot_interval_entries,
            limits::SNAPSHOT_INTERVAL_ENTRIES_MIN,
            limits::SNAPSHOT_INTERVAL_ENTRIES_MAX
        );
        ensure!(
            (limits::SNAPSHOT_INTERVAL_ENTRIES_MIN..=limits::SNAPSHOT_INTERVAL_EVENTS_MAX)
                .contains(&self.snapshot_interval_events),
            "snapshot_interval_events = {}: must be between {} and {}",
            self.snapshot_interval_events,
            limits::SNAPSHOT_INTERVAL_ENTRIES_MIN,
            limits::SNAPSHOT_INTERVAL_EVENTS_MAX
        );
        ensure!(
            self.log_retain_entries <= limits::LOG_RETAIN_ENTRIES_MAX,
            "log_retain_entries = {}: must be at most {}",
            self.log_retain_entries,
            limits::LOG_RETAIN_ENTRIES_MAX
        );
        ensure!(
            (limits::CALLS_IN_FLIGHT_MAX_MIN..=limits::CALLS_IN_FLIGHT_MAX_MAX)
                .contains(&self.calls_in_flight_max),
            "calls_in_flight_max = {}: must be between {} and {}",
            self.calls_in_flight_max,
            limits::CALLS_IN_FLIGHT_MAX_MIN,
            limits::CALLS_IN_FLIGHT_MAX_MAX
        );
        self.validate_tls()?;
        self.metrics_address()?;
        telemetry::logs::check_otlp_endpoint(self.otlp_endpoint())?;
        telemetry::logs::check_trace_sample_ratio(self.trace_sample_ratio)?;
        Ok(())
    }

    /// Checks the TLS settings' shape (the files are read by `security::prepare`).
    pub fn validate_tls(&self) -> anyhow::Result<()> {
        match (&self.tls, &self.peer_tls) {
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

    /// Where spans are exported, if anywhere.
    pub fn otlp_endpoint(&self) -> Option<&str> {
        Some(self.otlp_endpoint.as_str()).filter(|endpoint| !endpoint.is_empty())
    }

    /// The address `/metrics` binds, or `None` when `metrics_listen = "off"`.
    pub fn metrics_address(&self) -> anyhow::Result<Option<SocketAddr>> {
        telemetry::MetricsListen::resolve(self.metrics_listen, self.listen)
            .map_err(anyhow::Error::msg)
    }

    /// The node id of a Kubernetes StatefulSet pod: its ordinal (the number after the last
    /// `-` of its name) + 1, because raft reserves id 0. `wallet-write-2` is node 3. This lets
    /// every pod share one configuration file and one pod template.
    pub fn node_id_from_pod_name(name: &str) -> anyhow::Result<u64> {
        let ordinal = name
            .rsplit_once('-')
            .map(|(_, ordinal)| ordinal)
            .filter(|ordinal| !ordinal.is_empty() && ordinal.bytes().all(|b| b.is_ascii_digit()))
            .with_context(|| {
                format!("pod name {name:?} does not end in -ORDINAL (e.g. wallet-write-0)")
            })?;
        let ordinal: u64 = ordinal
            .parse()
            .with_context(|| format!("pod name {name:?}: ordinal out of range"))?;
        ordinal
            .checked_add(1)
            .with_context(|| format!("pod name {name:?}: ordinal out of range"))
    }

    /// Parses `1=127.0.0.1:50051,2=...` as given on the command line.
    pub fn parse_peers(text: &str) -> anyhow::Result<BTreeMap<u64, String>> {
        let mut peers = BTreeMap::new();
        for item in text.split(',').filter(|item| !item.is_empty()) {
            let (id, address) = item
                .split_once('=')
                .with_context(|| format!("peer {item:?} is not ID=HOST:PORT"))?;
            let id: u64 = id
                .trim()
                .parse()
                .with_context(|| format!("peer id {id:?} is not a number"))?;
            ensure!(
                peers.insert(id, address.trim().to_owned()).is_none(),
                "peer id {id} given twice"
            );
        }
        Ok(peers)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const EXAMPLE: &str = include_str!("../config.example.toml");

    fn example() -> Config {
        toml::from_str(EXAMPLE).expect("config.example.toml parses")
    }

    /// The documented example sets every field, parses and validates; a field added to
    /// `Config` without an entry there fails here.
    #[test]
    fn example_config_parses_validates_and_sets_every_field() {
        let config = example();
        config.validate().expect("config.example.toml validates");
        let keys: Vec<String> = EXAMPLE
            .parse::<toml::Table>()
            .unwrap()
            .keys()
            .cloned()
            .collect();
        for field in [
            "node_id",
            "listen",
            "peers",
            "data_dir",
            "partitions",
            "replicas",
            "snapshot_interval_entries",
            "snapshot_interval_events",
            "log_retain_entries",
            "calls_in_flight_max",
            "metrics_listen",
            "otlp_endpoint",
            "trace_sample_ratio",
            "insecure",
            "grpc_web_origins",
        ] {
            assert!(
                keys.iter().any(|key| key == field),
                "{field} missing from the example"
            );
        }
        // Optional files the example can only show commented out (they must exist).
        for shown in [
            "# tokens_file = ",
            "# [tls]",
            "# [peer_tls]",
            "# client_ca = ",
        ] {
            assert!(
                EXAMPLE.contains(shown),
                "{shown:?} missing from the example"
            );
        }
        assert_eq!(
            keys.len(),
            15,
            "a field of the example is not in this list: {keys:?}"
        );
        assert_eq!(
            config.metrics_address().unwrap(),
            Some("127.0.0.1:51051".parse().unwrap())
        );
        assert_eq!(config.otlp_endpoint(), None);
        assert_eq!(
            config.trace_sample_ratio,
            telemetry::logs::TRACE_SAMPLE_RATIO_DEFAULT
        );
    }

    /// Bad values are refused with a message naming the field.
    #[test]
    fn invalid_values_are_refused_with_the_field_named() {
        let check = |edit: &dyn Fn(&mut Config), expected: &str| {
            let mut config = example();
            edit(&mut config);
            let error = format!("{:#}", config.validate().unwrap_err());
            assert!(error.contains(expected), "{expected:?} not in {error:?}");
        };
        check(&|c| c.node_id = 0, "node_id must not be 0");
        check(&|c| c.node_id = 9, "peers must include this node");
        check(&|c| c.partitions = 0, "partitions = 0");
        check(
            &|c| {
                c.replicas = None;
                c.peers = (1..=11)
                    .map(|id| (id, format!("127.0.0.1:{}", 5000 + id)))
                    .collect()
            },
            "replicas = 11",
        );
        check(&|c| c.replicas = Some(4), "replicas = 4");
        check(&|c| c.replicas = Some(5), "more than the 3 write nodes");
        // Any node count holds a placed replica count.
        let mut six = example();
        six.peers = (1..=6)
            .map(|id| (id, format!("127.0.0.1:{}", 5000 + id)))
            .collect();
        six.replicas = Some(3);
        six.validate().expect("six nodes, three replicas");
        check(
            &|c| c.snapshot_interval_entries = 1,
            "snapshot_interval_entries = 1",
        );
        check(&|c| c.log_retain_entries = u64::MAX, "log_retain_entries");
        check(
            &|c| c.metrics_listen = Some(telemetry::MetricsListen::At(c.listen)),
            "metrics_listen",
        );
        check(
            &|c| c.otlp_endpoint = "collector:4317".into(),
            "otlp_endpoint",
        );
        check(
            &|c| c.trace_sample_ratio = 1.5,
            "trace_sample_ratio 1.5 must be between 0.0 and 1.0",
        );
        check(&|c| c.trace_sample_ratio = -0.5, "trace_sample_ratio");
        check(&|c| c.trace_sample_ratio = f64::NAN, "trace_sample_ratio");
        let unknown = format!("{EXAMPLE}\nmetrics_port = 1\n");
        let error = toml::from_str::<Config>(&unknown).unwrap_err().to_string();
        assert!(error.contains("metrics_port"), "{error}");
        let bad_listen = EXAMPLE.replace(
            "metrics_listen = \"127.0.0.1:51051\"",
            "metrics_listen = \"nowhere\"",
        );
        let error = toml::from_str::<Config>(&bad_listen)
            .unwrap_err()
            .to_string();
        assert!(error.contains("neither \"off\" nor an address"), "{error}");
    }

    #[test]
    fn node_id_is_the_pod_ordinal_plus_one() {
        assert_eq!(Config::node_id_from_pod_name("wallet-write-0").unwrap(), 1);
        assert_eq!(
            Config::node_id_from_pod_name("my-release-wallet-write-4").unwrap(),
            5
        );
        for bad in ["wallet", "wallet-", "wallet-x1", "wallet-+1", "-"] {
            let error = Config::node_id_from_pod_name(bad).unwrap_err().to_string();
            assert!(error.contains("ORDINAL"), "{bad}: {error}");
        }
        let too_big = format!("w-{}", u64::MAX);
        assert!(Config::node_id_from_pod_name(&too_big).is_err());
    }
}
