//! `wallet-read-node`: parses configuration, installs logging, runs the node.

use std::path::PathBuf;

use anyhow::Context;
use clap::Parser;
use read_node::Config;
use tokio_util::sync::CancellationToken;

/// mimalloc rather than the system allocator: the profile put about 15% of write-node CPU in
/// glibc malloc/free (BENCHMARKS.md, "Profile").
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// A wallet read node. Settings come from an optional TOML file (`--config`); flags and their
/// environment variables override it.
#[derive(Parser, Debug)]
#[command(version, about)]
struct Args {
    /// TOML file with the fields of the read node configuration (see README).
    #[arg(long, env = "WALLET_READ_CONFIG")]
    config: Option<PathBuf>,
    /// Address to listen on, e.g. 127.0.0.1:50061.
    #[arg(long, env = "WALLET_READ_LISTEN")]
    listen: Option<std::net::SocketAddr>,
    /// Write nodes to follow: HOST:PORT,HOST:PORT,...
    #[arg(long, env = "WALLET_WRITE_NODES")]
    write_nodes: Option<String>,
    /// RocksDB data directory of the projections.
    #[arg(long, env = "WALLET_READ_DATA_DIR")]
    data_dir: Option<PathBuf>,
    /// A read node (HOST:PORT) to copy projections from when the data directory is empty,
    /// instead of folding the event log from genesis (config: bootstrap_from).
    #[arg(long, env = "WALLET_READ_BOOTSTRAP_FROM")]
    bootstrap_from: Option<String>,
    /// Prometheus /metrics address, or "off" (default: the listen port + 1000).
    #[arg(long, env = "WALLET_READ_METRICS_LISTEN")]
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
    write_node_security: read_node::security::WriteNodeArgs,
}

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
    if let Some(listen) = args.listen {
        table.insert("listen".into(), toml::Value::String(listen.to_string()));
    }
    if let Some(write_nodes) = &args.write_nodes {
        table.insert(
            "write_nodes".into(),
            toml::Value::Array(
                Config::parse_write_nodes(write_nodes)
                    .into_iter()
                    .map(toml::Value::String)
                    .collect(),
            ),
        );
    }
    if let Some(data_dir) = &args.data_dir {
        table.insert(
            "data_dir".into(),
            toml::Value::String(data_dir.display().to_string()),
        );
    }
    if let Some(source) = &args.bootstrap_from {
        table.insert("bootstrap_from".into(), toml::Value::String(source.clone()));
    }
    args.server_security.apply(&mut table);
    args.write_node_security.apply(&mut table);
    if let Some(metrics_listen) = args.metrics_listen {
        table.insert(
            "metrics_listen".into(),
            toml::Value::String(metrics_listen.to_string()),
        );
    }
    if let Some(endpoint) = &args.otlp_endpoint {
        table.insert(
            "otlp_endpoint".into(),
            toml::Value::String(endpoint.clone()),
        );
    }
    if let Some(ratio) = args.trace_sample_ratio {
        table.insert("trace_sample_ratio".into(), toml::Value::Float(ratio));
    }
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
            "info,h2=warn,tower=warn",
            config.otlp_endpoint(),
            config.trace_sample_ratio,
            "wallet-read-node",
        )?
    };
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
        read_node::run(config, listener, shutdown).await
    })
}
