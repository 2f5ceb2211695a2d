//! `wallet-write-node`: parses configuration, installs logging, runs the node.

use std::path::PathBuf;

use anyhow::Context;
use clap::Parser;
use tokio_util::sync::CancellationToken;
use write_node::Config;

/// mimalloc rather than the system allocator: the profile put about 15% of write-node CPU in
/// glibc malloc/free (BENCHMARKS.md, "Profile").
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// A wallet write node. Settings come from an optional TOML file (`--config`); flags and their
/// environment variables override it.
#[derive(Parser, Debug)]
#[command(version, about)]
struct Args {
    /// TOML file with the fields of the node configuration (see README).
    #[arg(long, env = "WALLET_CONFIG")]
    config: Option<PathBuf>,
    /// This node's id, a key of --peers.
    #[arg(long, env = "WALLET_NODE_ID")]
    node_id: Option<u64>,
    /// Take the node id from a StatefulSet pod name instead: its ordinal + 1
    /// (`wallet-write-0` is node 1). For Kubernetes, where every pod shares one spec.
    #[arg(long, env = "WALLET_NODE_ID_FROM_POD_NAME", conflicts_with = "node_id")]
    node_id_from_pod_name: Option<String>,
    /// Address to listen on, e.g. 127.0.0.1:50051.
    #[arg(long, env = "WALLET_LISTEN")]
    listen: Option<std::net::SocketAddr>,
    /// Every write node: ID=HOST:PORT,ID=HOST:PORT,...
    #[arg(long, env = "WALLET_PEERS")]
    peers: Option<String>,
    /// RocksDB data directory.
    #[arg(long, env = "WALLET_DATA_DIR")]
    data_dir: Option<PathBuf>,
    /// Number of account partitions (fixed at cluster creation; default 8).
    #[arg(long, env = "WALLET_PARTITIONS")]
    partitions: Option<u32>,
    /// Replicas of each partition (1, 3, 5, 7 or 9), placed on that many of the --peers
    /// (fixed at cluster creation; default: every node holds every partition).
    #[arg(long, env = "WALLET_REPLICAS")]
    replicas: Option<usize>,
    /// Snapshot a partition every this many applied raft entries (default 100000)...
    #[arg(long, env = "WALLET_SNAPSHOT_INTERVAL_ENTRIES")]
    snapshot_interval_entries: Option<u64>,
    /// ...or every this many applied events, whichever comes first (default 500000).
    #[arg(long, env = "WALLET_SNAPSHOT_INTERVAL_EVENTS")]
    snapshot_interval_events: Option<u64>,
    /// Raft entries kept behind the newest snapshot (default 5000).
    #[arg(long, env = "WALLET_LOG_RETAIN_ENTRIES")]
    log_retain_entries: Option<u64>,
    /// Prometheus /metrics address, or "off" (default: the listen port + 1000).
    #[arg(long, env = "WALLET_METRICS_LISTEN")]
    metrics_listen: Option<telemetry::MetricsListen>,
    /// OTLP/gRPC collector for trace export, e.g. http://otel-collector:4317 (needs the
    /// `otel` build feature; default: no export).
    #[arg(long, env = "WALLET_OTLP_ENDPOINT")]
    otlp_endpoint: Option<String>,
    /// Share (0.0 to 1.0) of the traces starting at this node that are exported; a call with a
    /// caller's traceparent follows the caller's sampling decision (default 1.0).
    #[arg(long, env = "WALLET_TRACE_SAMPLE_RATIO")]
    trace_sample_ratio: Option<f64>,
    /// Log as JSON lines instead of text.
    #[arg(long, env = "WALLET_LOG_JSON")]
    log_json: bool,
    #[command(flatten)]
    server_security: security::args::ServerArgs,
    #[command(flatten)]
    peer_security: write_node::security::PeerArgs,
}

/// Partitions of a new cluster when neither the file nor the flags say.
const DEFAULT_PARTITIONS: u32 = 8;

fn load_config(args: &Args) -> anyhow::Result<Config> {
    let mut table = match &args.config {
        Some(path) => {
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("reading {}", path.display()))?;
            text.parse::<toml::Table>()
                .with_context(|| format!("parsing {}", path.display()))?
        }
        None => toml::Table::new(),
    };
    let partitions_in_file = table.contains_key("partitions");
    let mut set = |key: &str, value: toml::Value| {
        table.insert(key.to_owned(), value);
    };
    let node_id = match &args.node_id_from_pod_name {
        Some(name) => Some(Config::node_id_from_pod_name(name)?),
        None => args.node_id,
    };
    if let Some(node_id) = node_id {
        set("node_id", toml::Value::Integer(node_id as i64));
    }
    if let Some(listen) = args.listen {
        set("listen", toml::Value::String(listen.to_string()));
    }
    if let Some(peers) = &args.peers {
        let peers = Config::parse_peers(peers)?;
        set(
            "peers",
            toml::Value::Table(
                peers
                    .into_iter()
                    .map(|(id, address)| (id.to_string(), toml::Value::String(address)))
                    .collect(),
            ),
        );
    }
    if let Some(data_dir) = &args.data_dir {
        set(
            "data_dir",
            toml::Value::String(data_dir.display().to_string()),
        );
    }
    let partitions = args.partitions.or(if partitions_in_file {
        None
    } else {
        Some(DEFAULT_PARTITIONS)
    });
    if let Some(partitions) = partitions {
        set("partitions", toml::Value::Integer(partitions as i64));
    }
    if let Some(replicas) = args.replicas {
        set("replicas", toml::Value::Integer(replicas as i64));
    }
    if let Some(entries) = args.snapshot_interval_entries {
        set(
            "snapshot_interval_entries",
            toml::Value::Integer(entries as i64),
        );
    }
    if let Some(events) = args.snapshot_interval_events {
        set(
            "snapshot_interval_events",
            toml::Value::Integer(events as i64),
        );
    }
    if let Some(entries) = args.log_retain_entries {
        set("log_retain_entries", toml::Value::Integer(entries as i64));
    }
    if let Some(metrics_listen) = args.metrics_listen {
        set(
            "metrics_listen",
            toml::Value::String(metrics_listen.to_string()),
        );
    }
    if let Some(endpoint) = &args.otlp_endpoint {
        set("otlp_endpoint", toml::Value::String(endpoint.clone()));
    }
    if let Some(ratio) = args.trace_sample_ratio {
        set("trace_sample_ratio", toml::Value::Float(ratio));
    }
    args.server_security.apply(&mut table);
    args.peer_security.apply(&mut table);
    let config: Config = table.try_into().context("invalid configuration")?;
    config.validate()?;
    Ok(config)
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let config = load_config(&args)?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    // Inside the runtime: the OTLP exporter (when configured) opens a gRPC channel.
    let _logs = {
        let _runtime = runtime.enter();
        telemetry::logs::init(
            args.log_json,
            "info,raft=warn,h2=warn,tower=warn",
            config.otlp_endpoint(),
            config.trace_sample_ratio,
            "wallet-write-node",
        )?
    };
    // After logging starts, so that the warning and the active failpoints are in the log.
    #[cfg(feature = "failpoints")]
    let _failpoints = write_node::failpoints::setup();
    runtime.block_on(async move {
        let listener = tokio::net::TcpListener::bind(config.listen)
            .await
            .with_context(|| format!("binding {}", config.listen))?;
        let shutdown = CancellationToken::new();
        let signals = shutdown.clone();
        tokio::spawn(async move {
            let mut terminate =
                tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
                    .expect("installing the SIGTERM handler");
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = terminate.recv() => {}
            }
            tracing::info!("stopping");
            signals.cancel();
        });
        write_node::run(config, listener, shutdown).await
    })
}
