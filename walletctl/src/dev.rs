//! `walletctl dev`: a local cluster of three write nodes and one read node as child
//! processes, for trying the ledger out and for manual testing. Data and logs live under one directory, so running
//! it again resumes the same ledger.

use std::fs::OpenOptions;
use std::io::{Read, Seek, SeekFrom, Write as _};
use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};
use std::time::Duration;

use anyhow::{Context, bail};
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use serde_json::json;
use tokio::process::{Child, Command};
use tokio::signal::unix::{SignalKind, signal};
use tokio::time::Instant;
use wallet_client::{ClientConfig, WalletClient};

use crate::output::Output;

/// Name of the write node binary, looked up next to `walletctl`'s own executable.
const WRITE_NODE_BIN: &str = "wallet-write-node";

/// Overrides where the write node binary is.
const WRITE_NODE_BIN_ENV: &str = "WALLET_WRITE_NODE_BIN";

/// Name of the read node binary, looked up next to `walletctl` like the write node's.
const READ_NODE_BIN: &str = "wallet-read-node";

/// Overrides where the read node binary is.
const READ_NODE_BIN_ENV: &str = "WALLET_READ_NODE_BIN";

/// Where the read node listens (`walletctl --read-endpoint`'s default).
const READ_LISTEN: &str = wallet_client::DEFAULT_READ_ENDPOINT;

/// The health service name the read node reports readiness under.
const QUERY_SERVICE_NAME: &str = "wallet.v1.QueryService";

/// Most write nodes a dev cluster starts: their ports, 50051..=50059, stay below the read
/// node's.
pub const WRITE_NODES_MAX: u64 = 9;

/// Node `i` listens on `127.0.0.1:(WRITE_PORT_BASE + i)`, i.e. 50051, 50052, ...
const WRITE_PORT_BASE: u64 = 50050;

/// How long the nodes get to elect a leader and report SERVING.
const READY_TIMEOUT: Duration = Duration::from_secs(60);

/// How often readiness is polled.
const READY_POLL: Duration = Duration::from_millis(200);

/// Per-probe timeout of a readiness check, so one hung node cannot stall the loop.
const HEALTH_PROBE_TIMEOUT: Duration = Duration::from_secs(1);

/// How long the nodes get to stop after SIGTERM before they are killed.
const STOP_GRACE: Duration = Duration::from_secs(10);

/// How much of a failed node's log is shown, at most.
const LOG_TAIL_BYTES: u64 = 4096;

/// Settings of a dev cluster.
#[derive(Debug, Clone)]
pub struct DevConfig {
    /// Root of the nodes' data directories and log files.
    pub data_dir: PathBuf,
    /// Raft partitions of the cluster.
    pub partitions: u32,
    /// Write nodes (3 to `WRITE_NODES_MAX`).
    pub write_nodes: u64,
    /// Replicas of each partition, placed on that many of the write nodes.
    pub replicas: usize,
}

/// What kind of process a child is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Role {
    Write {
        node_id: u64,
    },
    /// Follows the write nodes' event log and serves the QueryService.
    Read,
}

/// Everything needed to start, watch and describe one child process.
#[derive(Debug, Clone)]
struct ChildSpec {
    name: String,
    role: Role,
    listen: String,
    program: PathBuf,
    args: Vec<String>,
    log: PathBuf,
}

/// A started child and the spec it came from.
struct Running {
    spec: ChildSpec,
    child: Child,
}

/// Why the cluster is being stopped.
enum StopCause {
    Signal(&'static str),
    ChildExited {
        index: usize,
        status: std::io::Result<ExitStatus>,
    },
}

/// Security settings of the nodes that `walletctl dev` removes from their environment.
const DEV_CLEARED_ENV: [&str; 12] = [
    "WALLET_TLS_CERT",
    "WALLET_TLS_KEY",
    "WALLET_TLS_CLIENT_CA",
    "WALLET_TOKENS_FILE",
    "WALLET_INSECURE",
    "WALLET_PEER_CA",
    "WALLET_PEER_CERT",
    "WALLET_PEER_KEY",
    "WALLET_WRITE_NODE_CA",
    "WALLET_WRITE_NODE_CERT",
    "WALLET_WRITE_NODE_KEY",
    "WALLET_WRITE_NODE_TOKEN_FILE",
];

/// Starts the cluster, waits until it is ready, then until Ctrl-C / SIGTERM or a node dies;
/// always stops every node it started before returning.
pub async fn run(config: DevConfig, out: &Output) -> anyhow::Result<()> {
    let write_bin = sibling_binary(WRITE_NODE_BIN, WRITE_NODE_BIN_ENV, "write-node")?;
    let read_bin = sibling_binary(READ_NODE_BIN, READ_NODE_BIN_ENV, "read-node")?;
    let specs = child_specs(&config, &write_bin, &read_bin);
    for spec in &specs {
        ensure_port_free(&spec.listen)?;
    }
    std::fs::create_dir_all(&config.data_dir)
        .with_context(|| format!("creating data directory {}", config.data_dir.display()))?;
    let mut sigterm = signal(SignalKind::terminate()).context("installing the SIGTERM handler")?;
    // A closed terminal (SIGHUP) must stop the nodes too: they run in their own process
    // group, so nothing else would.
    let mut sighup = signal(SignalKind::hangup()).context("installing the SIGHUP handler")?;

    if !out.is_json() {
        println!(
            "walletctl dev: plain text, no tokens, loopback only (127.0.0.1); for TLS and tokens see README \"Security\""
        );
    }
    let mut running: Vec<Running> = Vec::with_capacity(specs.len());
    for spec in specs {
        match spawn(&spec) {
            Ok(child) => running.push(Running { spec, child }),
            Err(e) => {
                stop_all(&mut running).await;
                return Err(e);
            }
        }
    }

    let ready = tokio::select! {
        result = wait_ready(&mut running) => result.map(|()| None),
        _ = tokio::signal::ctrl_c() => Ok(Some("Ctrl-C")),
        _ = sigterm.recv() => Ok(Some("SIGTERM")),
        _ = sighup.recv() => Ok(Some("SIGHUP")),
    };
    match ready {
        Ok(None) => {}
        Ok(Some(signal)) => {
            // The terminal may be gone (SIGHUP): a failed write must not stop the shutdown.
            let _ = writeln!(
                std::io::stderr(),
                "{signal} received while starting: stopping the nodes"
            );
            stop_all(&mut running).await;
            return Ok(());
        }
        Err(e) => {
            stop_all(&mut running).await;
            return Err(e);
        }
    }
    announce(&config, &running, out);

    let cause = {
        let exits =
            futures::future::select_all(running.iter_mut().map(|r| Box::pin(r.child.wait())));
        tokio::select! {
            (status, index, _) = exits => StopCause::ChildExited { index, status },
            _ = tokio::signal::ctrl_c() => StopCause::Signal("Ctrl-C"),
            _ = sigterm.recv() => StopCause::Signal("SIGTERM"),
            _ = sighup.recv() => StopCause::Signal("SIGHUP"),
        }
    };
    match cause {
        StopCause::Signal(signal) => {
            if !out.is_json() {
                let _ = writeln!(std::io::stderr(), "{signal} received: stopping the nodes");
            }
            stop_all(&mut running).await;
            if out.is_json() {
                out.json_line(&json!({ "event": "stopped", "cause": signal }));
            } else {
                eprintln!("stopped; run `walletctl dev` again with the same --data-dir to resume");
            }
            Ok(())
        }
        StopCause::ChildExited { index, status } => {
            let spec = running[index].spec.clone();
            stop_all(&mut running).await;
            let status = status.map_or_else(|e| format!("wait failed: {e}"), |s| s.to_string());
            bail!(
                "{} exited unexpectedly ({status}); the others were stopped. Log: {}{}",
                spec.name,
                spec.log.display(),
                log_tail(&spec.log)
            )
        }
    }
}

/// The processes of a dev cluster: the write nodes, then the read node following them.
fn child_specs(config: &DevConfig, write_bin: &Path, read_bin: &Path) -> Vec<ChildSpec> {
    let peers = (1..=config.write_nodes)
        .map(|i| format!("{i}={}", write_listen(i)))
        .collect::<Vec<_>>()
        .join(",");
    let write_nodes = (1..=config.write_nodes)
        .map(write_listen)
        .collect::<Vec<_>>()
        .join(",");
    let mut specs: Vec<ChildSpec> = (1..=config.write_nodes)
        .map(|node_id| {
            let name = format!("node-{node_id}");
            let listen = write_listen(node_id);
            let data = config.data_dir.join(&name);
            ChildSpec {
                role: Role::Write { node_id },
                program: write_bin.to_path_buf(),
                args: vec![
                    "--node-id".into(),
                    node_id.to_string(),
                    "--listen".into(),
                    listen.clone(),
                    "--peers".into(),
                    peers.clone(),
                    "--data-dir".into(),
                    data.display().to_string(),
                    "--partitions".into(),
                    config.partitions.to_string(),
                    "--replicas".into(),
                    config.replicas.to_string(),
                ],
                log: config.data_dir.join(format!("{name}.log")),
                listen,
                name,
            }
        })
        .collect();
    let name = "read-node".to_owned();
    specs.push(ChildSpec {
        role: Role::Read,
        program: read_bin.to_path_buf(),
        args: vec![
            "--listen".into(),
            READ_LISTEN.into(),
            "--write-nodes".into(),
            write_nodes,
            "--data-dir".into(),
            config.data_dir.join(&name).display().to_string(),
        ],
        log: config.data_dir.join(format!("{name}.log")),
        listen: READ_LISTEN.into(),
        name,
    });
    specs
}

fn write_listen(node_id: u64) -> String {
    format!("127.0.0.1:{}", WRITE_PORT_BASE + node_id)
}

/// `$<env>`, else the binary `name` beside this executable (where cargo puts all of the
/// workspace's binaries).
fn sibling_binary(name: &str, env: &str, package: &str) -> anyhow::Result<PathBuf> {
    let path = match std::env::var_os(env) {
        Some(path) => PathBuf::from(path),
        None => {
            let exe = std::env::current_exe().context("locating walletctl's own executable")?;
            let dir = exe
                .parent()
                .context("walletctl's executable has no parent directory")?;
            dir.join(name)
        }
    };
    if !path.is_file() {
        bail!(
            "{name} not found at {} (build it with `cargo build -p {package}`, or point {env} \
             at it)",
            path.display()
        );
    }
    Ok(path)
}

/// Refuses to start over a running cluster (or anything else on our ports) with a clear
/// message, instead of letting a node fail to bind and die in its log.
fn ensure_port_free(listen: &str) -> anyhow::Result<()> {
    match std::net::TcpListener::bind(listen) {
        Ok(listener) => {
            drop(listener);
            Ok(())
        }
        Err(e) => bail!(
            "{listen} is already in use ({e}); is another `walletctl dev` or write node running?"
        ),
    }
}

fn spawn(spec: &ChildSpec) -> anyhow::Result<Child> {
    let log = OpenOptions::new()
        .create(true)
        .append(true)
        .open(&spec.log)
        .with_context(|| format!("opening log file {}", spec.log.display()))?;
    let stderr = log.try_clone().context("duplicating the log file handle")?;
    let mut command = Command::new(&spec.program);
    // The dev cluster is plain text and open on loopback, whatever this shell exports.
    for variable in DEV_CLEARED_ENV {
        command.env_remove(variable);
    }
    let child = command
        .args(&spec.args)
        .stdin(Stdio::null())
        .stdout(Stdio::from(log))
        .stderr(Stdio::from(stderr))
        // Own process group: Ctrl-C reaches only walletctl, which then stops the nodes in
        // order instead of them all dying at once mid-write.
        .process_group(0)
        .kill_on_drop(true)
        .spawn()
        .with_context(|| format!("starting {} ({})", spec.name, spec.program.display()))?;
    tracing::info!(node = %spec.name, pid = ?child.id(), role = ?spec.role, "started");
    Ok(child)
}

/// Polls every node's health until all report SERVING, failing early if one exits and at
/// [`READY_TIMEOUT`].
async fn wait_ready(running: &mut [Running]) -> anyhow::Result<()> {
    let endpoints: Vec<String> = running.iter().map(|r| r.spec.listen.clone()).collect();
    let mut client_config = ClientConfig::new(endpoints);
    client_config.call_timeout = HEALTH_PROBE_TIMEOUT;
    client_config.connect_timeout = HEALTH_PROBE_TIMEOUT;
    let client = WalletClient::connect(client_config).await?;
    let deadline = Instant::now() + READY_TIMEOUT;
    let mut ready = vec![false; running.len()];
    loop {
        for (i, node) in running.iter_mut().enumerate() {
            if let Some(status) = node.child.try_wait().context("checking a node process")? {
                bail!(
                    "{} exited during start-up ({status}). Log: {}{}",
                    node.spec.name,
                    node.spec.log.display(),
                    log_tail(&node.spec.log)
                );
            }
            if !ready[i] {
                ready[i] = match node.spec.role {
                    Role::Write { .. } => {
                        matches!(client.health(&node.spec.listen).await, Ok(true))
                    }
                    Role::Read => read_node_serving(&node.spec.listen).await,
                };
            }
        }
        if ready.iter().all(|r| *r) {
            return Ok(());
        }
        if Instant::now() >= deadline {
            let waiting: Vec<String> = running
                .iter()
                .zip(&ready)
                .filter(|(_, r)| !**r)
                .map(|(n, _)| format!("{} (log {})", n.spec.name, n.spec.log.display()))
                .collect();
            bail!(
                "not SERVING after {}s: {}",
                READY_TIMEOUT.as_secs(),
                waiting.join(", ")
            );
        }
        tokio::time::sleep(READY_POLL).await;
    }
}

/// Whether the read node at `listen` reports its QueryService as SERVING.
async fn read_node_serving(listen: &str) -> bool {
    use tonic_health::pb::health_check_response::ServingStatus;
    use tonic_health::pb::{HealthCheckRequest, health_client::HealthClient};
    let Ok(endpoint) = tonic::transport::Endpoint::from_shared(format!("http://{listen}")) else {
        return false;
    };
    let Ok(channel) = endpoint
        .connect_timeout(HEALTH_PROBE_TIMEOUT)
        .connect()
        .await
    else {
        return false;
    };
    let mut request = tonic::Request::new(HealthCheckRequest {
        service: QUERY_SERVICE_NAME.into(),
    });
    request.set_timeout(HEALTH_PROBE_TIMEOUT);
    matches!(
        HealthClient::new(channel).check(request).await,
        Ok(response) if response.get_ref().status == ServingStatus::Serving as i32
    )
}

fn announce(config: &DevConfig, running: &[Running], out: &Output) {
    if out.is_json() {
        let nodes: Vec<_> = running
            .iter()
            .map(|r| {
                let (role, node_id) = match r.spec.role {
                    Role::Write { node_id } => ("write", Some(node_id)),
                    Role::Read => ("read", None),
                };
                json!({
                    "node_id": node_id,
                    "role": role,
                    "endpoint": r.spec.listen,
                    "log": r.spec.log.display().to_string(),
                    "pid": r.child.id(),
                })
            })
            .collect();
        out.json_line(&json!({
            "event": "ready",
            "data_dir": config.data_dir.display().to_string(),
            "partitions": config.partitions,
            "replicas": config.replicas,
            "nodes": nodes,
        }));
        return;
    }
    println!(
        "wallet dev cluster ready: {} write nodes and a read node, {} partition(s) of {} \
         replicas, data in {}",
        config.write_nodes,
        config.partitions,
        config.replicas,
        config.data_dir.display()
    );
    for r in running {
        println!(
            "  {}  {}  log {}",
            r.spec.name,
            r.spec.listen,
            r.spec.log.display()
        );
    }
    println!();
    println!("try:");
    println!("  walletctl account open issuer --currency USD --allow-negative-balance");
    println!("  walletctl account open alice --currency USD");
    println!("  walletctl transfer --from issuer --to alice --amount 12.34 --currency USD");
    println!("  walletctl account get alice");
    println!("  walletctl balance alice          # from the read node ({READ_LISTEN})");
    println!("  walletctl watch alice            # pushed updates until Ctrl-C");
    println!("  walletctl history alice");
    println!("  walletctl cluster status");
    println!();
    println!("Ctrl-C stops the cluster; `walletctl dev` on the same --data-dir resumes it.");
}

/// SIGTERM to every node still running, up to [`STOP_GRACE`] for all of them to exit, then
/// SIGKILL for the rest.
async fn stop_all(running: &mut [Running]) {
    for node in running.iter_mut() {
        if let Ok(None) = node.child.try_wait()
            && let Some(pid) = node.child.id().and_then(|id| i32::try_from(id).ok())
            && let Err(e) = kill(Pid::from_raw(pid), Signal::SIGTERM)
        {
            tracing::warn!(node = %node.spec.name, error = %e, "SIGTERM failed");
        }
    }
    let deadline = Instant::now() + STOP_GRACE;
    for node in running.iter_mut() {
        let remaining = deadline.saturating_duration_since(Instant::now());
        match tokio::time::timeout(remaining, node.child.wait()).await {
            Ok(_) => {}
            Err(_) => {
                eprintln!(
                    "{} did not stop within {}s: killing it",
                    node.spec.name,
                    STOP_GRACE.as_secs()
                );
                if let Err(e) = node.child.kill().await {
                    tracing::warn!(node = %node.spec.name, error = %e, "kill failed");
                }
            }
        }
    }
}

/// The end of a log file, to show next to a failure without sending the user hunting.
fn log_tail(path: &Path) -> String {
    let read = || -> std::io::Result<String> {
        let mut file = std::fs::File::open(path)?;
        let len = file.metadata()?.len();
        file.seek(SeekFrom::Start(len.saturating_sub(LOG_TAIL_BYTES)))?;
        let mut bytes = Vec::new();
        file.take(LOG_TAIL_BYTES).read_to_end(&mut bytes)?;
        Ok(String::from_utf8_lossy(&bytes).into_owned())
    };
    match read() {
        Ok(tail) if !tail.trim().is_empty() => {
            let lines: Vec<&str> = tail.lines().collect();
            let last = &lines[lines.len().saturating_sub(20)..];
            format!(
                "\n--- last lines of {} ---\n{}",
                path.display(),
                last.join("\n")
            )
        }
        _ => String::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn specs_follow_the_documented_command_line() {
        let config = DevConfig {
            data_dir: PathBuf::from("/tmp/dev"),
            partitions: 4,
            write_nodes: 3,
            replicas: 3,
        };
        let specs = child_specs(
            &config,
            Path::new("/bin/wallet-write-node"),
            Path::new("/bin/wallet-read-node"),
        );
        assert_eq!(specs.len(), 4);
        let read = &specs[3];
        assert_eq!(read.role, Role::Read);
        assert_eq!(read.listen, "127.0.0.1:50061");
        assert_eq!(
            read.args,
            [
                "--listen",
                "127.0.0.1:50061",
                "--write-nodes",
                "127.0.0.1:50051,127.0.0.1:50052,127.0.0.1:50053",
                "--data-dir",
                "/tmp/dev/read-node",
            ]
        );
        let second = &specs[1];
        assert_eq!(second.listen, "127.0.0.1:50052");
        assert_eq!(second.log, PathBuf::from("/tmp/dev/node-2.log"));
        assert_eq!(
            second.args,
            [
                "--node-id",
                "2",
                "--listen",
                "127.0.0.1:50052",
                "--peers",
                "1=127.0.0.1:50051,2=127.0.0.1:50052,3=127.0.0.1:50053",
                "--data-dir",
                "/tmp/dev/node-2",
                "--partitions",
                "4",
                "--replicas",
                "3",
            ]
        );
    }

    #[test]
    fn busy_port_is_refused() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let address = listener.local_addr().unwrap().to_string();
        let err = ensure_port_free(&address).unwrap_err();
        assert!(err.to_string().contains("already in use"), "{err}");
    }
}
