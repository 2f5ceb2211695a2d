//! Real processes for the read side's end-to-end tests: a 3-node `wallet-write-node` cluster
//! (copied from write-node/tests/it/harness.rs) and a `wallet-read-node`, on loopback ports
//! with RocksDB in temporary directories, killed with SIGKILL and restarted on the same data.
//!
//! `wallet-write-node` belongs to another package, so cargo does not build it for these tests:
//! it is taken from the target directory this test executable runs from (`cargo build --bins`,
//! or `cargo build --workspace --all-targets` as scripts/test does, must run first; a plain
//! `cargo nextest run --workspace` builds it too, for the write node's own tests).

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use proto::v1::cluster_service_client::ClusterServiceClient;
use proto::v1::wallet_service_client::WalletServiceClient;
use proto::v1::{
    Account, GetAccountRequest, GetClusterStatusRequest, GetClusterStatusResponse,
    OpenAccountRequest, TransferRequest, TransferResponse,
};
use tonic::transport::Channel;
use tonic::{Code, Status};
use tonic_types::StatusExt as _;

/// Bound on every wait in the tests, so a broken cluster fails a test instead of hanging it.
pub const WAIT_MAX: Duration = Duration::from_secs(30);

pub struct Node {
    pub id: u64,
    pub port: u16,
    /// Where the node serves Prometheus `/metrics`.
    pub metrics_port: u16,
    pub data_dir: PathBuf,
    pub log_path: PathBuf,
    child: Mutex<Option<Child>>,
}

impl Node {
    fn running(&self) -> bool {
        self.child.lock().expect("lock").is_some()
    }
}

pub struct Cluster {
    pub dir: tempfile::TempDir,
    pub nodes: Vec<Node>,
    peers: String,
    partitions: u32,
    /// Passed to every write node after the harness's own flags (e.g. `--config FILE`).
    extra_args: Vec<String>,
}

/// `target/<profile>/wallet-write-node`, next to this test's `deps/` directory.
pub fn write_node_binary() -> PathBuf {
    let exe = std::env::current_exe().expect("test executable path");
    let profile_dir = exe
        .parent()
        .and_then(|deps| deps.parent())
        .expect("target/<profile>/deps/<test>");
    let binary = profile_dir.join("wallet-write-node");
    assert!(
        binary.is_file(),
        "{} not found: run `cargo build --bins` (or scripts/test) before these tests",
        binary.display()
    );
    binary
}

/// A port that is free now, handed out once per process and below the kernel's ephemeral
/// range: asking the kernel for port 0 twice can give the same port twice (a node's gRPC and
/// metrics ports then collide), or one an outgoing connection takes before the node binds it.
/// The same allocator as write-node/tests/it/harness.rs.
pub fn free_port() -> u16 {
    use std::sync::atomic::{AtomicU16, Ordering};
    static NEXT: AtomicU16 = AtomicU16::new(0);
    if NEXT.load(Ordering::Relaxed) == 0 {
        // Spread concurrent test processes over the range by process id.
        let start = 20_000 + (std::process::id() % 600) as u16 * 20;
        let _ = NEXT.compare_exchange(0, start, Ordering::Relaxed, Ordering::Relaxed);
    }
    loop {
        let port = NEXT.fetch_add(1, Ordering::Relaxed);
        assert!(port < 32_768, "ran out of test ports");
        if std::net::TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
}

impl Cluster {
    /// Starts `size` write nodes with `partitions` partitions and fresh data directories.
    pub fn start(size: u64, partitions: u32) -> Cluster {
        Cluster::start_with(size, partitions, Vec::new())
    }

    /// `start`, with `extra_args` given to every write node.
    pub fn start_with(size: u64, partitions: u32, extra_args: Vec<String>) -> Cluster {
        let dir = tempfile::tempdir().expect("temp dir");
        let nodes: Vec<Node> = (1..=size)
            .map(|id| Node {
                id,
                port: free_port(),
                metrics_port: free_port(),
                data_dir: dir.path().join(format!("node-{id}")),
                log_path: dir.path().join(format!("node-{id}.log")),
                child: Mutex::new(None),
            })
            .collect();
        let peers = nodes
            .iter()
            .map(|node| format!("{}=127.0.0.1:{}", node.id, node.port))
            .collect::<Vec<_>>()
            .join(",");
        let cluster = Cluster {
            dir,
            nodes,
            peers,
            partitions,
            extra_args,
        };
        for id in 1..=size {
            cluster.start_node(id);
        }
        cluster
    }

    fn node(&self, id: u64) -> &Node {
        self.nodes
            .iter()
            .find(|node| node.id == id)
            .expect("node id")
    }

    pub fn start_node(&self, id: u64) {
        let peers = self.peers.clone();
        let node = self.node(id);
        let mut slot = node.child.lock().expect("lock");
        assert!(slot.is_none(), "node {id} is already running");
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&node.log_path)
            .expect("log file");
        let child = Command::new(write_node_binary())
            .args(["--node-id", &id.to_string()])
            .args(["--listen", &format!("127.0.0.1:{}", node.port)])
            .args(["--peers", &peers])
            .args(["--partitions", &self.partitions.to_string()])
            .args([
                "--metrics-listen",
                &format!("127.0.0.1:{}", node.metrics_port),
            ])
            .arg("--data-dir")
            .arg(&node.data_dir)
            .args(&self.extra_args)
            .env("RUST_LOG", "info,raft=info,h2=warn,tower=warn")
            .stdout(Stdio::from(log.try_clone().expect("log file")))
            .stderr(Stdio::from(log))
            .spawn()
            .expect("spawning wallet-write-node");
        *slot = Some(child);
    }

    /// SIGKILL: no shutdown code runs, like a power cut for the process.
    pub fn kill(&self, id: u64) {
        let mut child = self
            .node(id)
            .child
            .lock()
            .expect("lock")
            .take()
            .expect("node is running");
        child.kill().expect("kill");
        child.wait().expect("wait");
    }

    /// The process id of a running node.
    pub fn pid(&self, id: u64) -> Option<u32> {
        self.node(id)
            .child
            .lock()
            .expect("lock")
            .as_ref()
            .map(Child::id)
    }

    pub fn running(&self) -> Vec<u64> {
        self.nodes
            .iter()
            .filter(|node| node.running())
            .map(|node| node.id)
            .collect()
    }

    pub fn endpoint(&self, id: u64) -> String {
        let node = self
            .nodes
            .iter()
            .find(|node| node.id == id)
            .expect("node id");
        format!("http://127.0.0.1:{}", node.port)
    }

    pub async fn wallet(&self, id: u64) -> WalletServiceClient<Channel> {
        WalletServiceClient::new(
            Channel::from_shared(self.endpoint(id))
                .expect("uri")
                .connect_lazy(),
        )
    }

    pub async fn status(&self, id: u64) -> Result<GetClusterStatusResponse, Status> {
        let channel = Channel::from_shared(self.endpoint(id))
            .expect("uri")
            .connect_lazy();
        let mut client = ClusterServiceClient::new(channel);
        let mut request = tonic::Request::new(GetClusterStatusRequest {
            include_state_digest: false,
        });
        request.set_timeout(Duration::from_secs(2));
        client
            .get_cluster_status(request)
            .await
            .map(|response| response.into_inner())
    }

    /// Waits until the running nodes agree on one leader of partition 0; returns its id.
    pub async fn wait_leader(&self) -> u64 {
        let deadline = Instant::now() + WAIT_MAX;
        loop {
            let mut leaders = Vec::new();
            for node in self.nodes.iter().filter(|node| node.running()) {
                if let Ok(status) = self.status(node.id).await {
                    leaders.push((
                        status.partitions[0].leader_id,
                        status.partitions[0].role.clone(),
                        node.id,
                    ));
                }
            }
            let leader = leaders
                .iter()
                .find(|(_, role, _)| role == "leader")
                .map(|(_, _, id)| *id);
            if let Some(leader) = leader {
                let running = self.running().len();
                if leaders.len() == running
                    && leaders.iter().all(|(leader_id, _, _)| *leader_id == leader)
                {
                    return leader;
                }
            }
            assert!(
                Instant::now() < deadline,
                "no agreed leader within {WAIT_MAX:?}: {leaders:?}\n{}",
                self.logs()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    pub fn logs(&self) -> String {
        self.nodes
            .iter()
            .map(|node| {
                let text = std::fs::read_to_string(&node.log_path).unwrap_or_default();
                let tail: Vec<&str> = text.lines().rev().take(30).collect();
                format!(
                    "--- node {} log tail ---\n{}",
                    node.id,
                    tail.into_iter().rev().collect::<Vec<_>>().join("\n")
                )
            })
            .collect::<Vec<_>>()
            .join("\n")
    }

    /// Sends a write to whichever node leads, following NOT_LEADER hints and retrying
    /// UNAVAILABLE with the same request (so the same transaction_id) until `WAIT_MAX`.
    pub async fn on_leader<T, F, Fut>(&self, mut call: F) -> Result<T, Status>
    where
        F: FnMut(WalletServiceClient<Channel>) -> Fut,
        Fut: std::future::Future<Output = Result<T, Status>>,
    {
        let deadline = Instant::now() + WAIT_MAX;
        let running = self.running();
        let mut target = running[0];
        let mut attempt = 0usize;
        loop {
            let result = call(self.wallet(target).await).await;
            match result {
                Err(status) if retryable(&status) && Instant::now() < deadline => {
                    attempt += 1;
                    let hint = status
                        .get_details_error_info()
                        .and_then(|info| {
                            info.metadata
                                .get("leader_id")
                                .and_then(|id| id.parse::<u64>().ok())
                        })
                        .filter(|id| running.contains(id));
                    target = hint.unwrap_or(running[attempt % running.len()]);
                    if hint.is_none() {
                        tokio::time::sleep(Duration::from_millis(50)).await;
                    }
                }
                other => return other,
            }
        }
    }

    pub async fn open_account(
        &self,
        account_id: &str,
        currency: &str,
        allow_negative_balance: bool,
    ) -> Result<Account, Status> {
        let request = OpenAccountRequest {
            account_id: account_id.into(),
            currency: currency.into(),
            allow_negative_balance,
        };
        self.on_leader(|mut client| {
            let request = request.clone();
            async move { client.open_account(request).await }
        })
        .await
        .map(|response| response.into_inner().account.expect("account"))
    }

    pub async fn transfer(&self, request: &TransferRequest) -> Result<TransferResponse, Status> {
        self.on_leader(|mut client| {
            let request = request.clone();
            async move { client.transfer(request).await }
        })
        .await
        .map(|response| response.into_inner())
    }

    pub async fn account(&self, account_id: &str) -> Result<Account, Status> {
        self.on_leader(|mut client| {
            let account_id = account_id.to_owned();
            async move { client.get_account(GetAccountRequest { account_id }).await }
        })
        .await
        .map(|response| response.into_inner().account.expect("account"))
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for node in &self.nodes {
            if let Some(mut child) = node.child.lock().expect("lock").take() {
                let _ = child.kill();
                let _ = child.wait();
            }
        }
        if std::thread::panicking() {
            // Keep the evidence: data dirs and logs stay for inspection.
            let kept = self.dir.path().to_path_buf();
            eprintln!(
                "test failed; cluster data and logs kept in {}\n{}",
                kept.display(),
                self.logs()
            );
            let dir = std::mem::replace(&mut self.dir, tempfile::tempdir().expect("temp dir"));
            let _ = dir.keep();
        }
    }
}

pub fn retryable(status: &Status) -> bool {
    matches!(
        status.code(),
        Code::Unavailable | Code::ResourceExhausted | Code::DeadlineExceeded | Code::Unknown
    )
}

pub fn reason(status: &Status) -> String {
    status
        .get_details_error_info()
        .map(|info| info.reason)
        .unwrap_or_default()
}

pub fn transfer_request(
    transaction_id: &str,
    from: &str,
    to: &str,
    amount: &str,
    currency: &str,
) -> TransferRequest {
    TransferRequest {
        transaction_id: transaction_id.into(),
        from_account: from.into(),
        to_account: to.into(),
        amount: amount.into(),
        currency: currency.into(),
    }
}

impl Cluster {
    /// The write nodes as `host:port`, in node order (the read node's `--write-nodes`).
    pub fn write_nodes(&self) -> String {
        self.nodes
            .iter()
            .map(|node| format!("127.0.0.1:{}", node.port))
            .collect::<Vec<_>>()
            .join(",")
    }

    /// The node id listening on `port`.
    pub fn node_with_port(&self, port: u16) -> Option<u64> {
        self.nodes
            .iter()
            .find(|node| node.port == port)
            .map(|node| node.id)
    }
}

/// A `wallet-read-node` process following a [`Cluster`].
pub struct ReadNode {
    pub port: u16,
    /// Where the read node serves Prometheus `/metrics`.
    pub metrics_port: u16,
    pub data_dir: PathBuf,
    pub log_path: PathBuf,
    write_nodes: String,
    extra_args: Vec<String>,
    child: Mutex<Option<Child>>,
}

impl ReadNode {
    pub fn start(cluster: &Cluster) -> ReadNode {
        ReadNode::start_with(cluster, Vec::new())
    }

    /// `start`, with `extra_args` given to the read node.
    pub fn start_with(cluster: &Cluster, extra_args: Vec<String>) -> ReadNode {
        let node = ReadNode {
            port: free_port(),
            metrics_port: free_port(),
            data_dir: cluster.dir.path().join("read-node"),
            log_path: cluster.dir.path().join("read-node.log"),
            write_nodes: cluster.write_nodes(),
            extra_args,
            child: Mutex::new(None),
        };
        node.restart();
        node
    }

    /// Starts the process (again) on the same port and data directory.
    pub fn restart(&self) {
        let mut slot = self.child.lock().expect("lock");
        assert!(slot.is_none(), "read node is already running");
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log_path)
            .expect("log file");
        let child = Command::new(env!("CARGO_BIN_EXE_wallet-read-node"))
            .args(["--listen", &format!("127.0.0.1:{}", self.port)])
            .args(["--write-nodes", &self.write_nodes])
            .args([
                "--metrics-listen",
                &format!("127.0.0.1:{}", self.metrics_port),
            ])
            .arg("--data-dir")
            .arg(&self.data_dir)
            .args(&self.extra_args)
            .env("RUST_LOG", "info,h2=warn,tower=warn")
            .stdout(Stdio::from(log.try_clone().expect("log file")))
            .stderr(Stdio::from(log))
            .spawn()
            .expect("spawning wallet-read-node");
        *slot = Some(child);
    }

    /// SIGKILL.
    /// The process id, while running.
    pub fn pid(&self) -> Option<u32> {
        self.child.lock().expect("lock").as_ref().map(Child::id)
    }

    pub fn kill(&self) {
        let mut child = self
            .child
            .lock()
            .expect("lock")
            .take()
            .expect("read node is running");
        child.kill().expect("kill");
        child.wait().expect("wait");
    }

    pub fn endpoint(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// Waits until the read node answers health checks with SERVING.
    pub async fn wait_serving(&self) {
        use tonic_health::pb::health_check_response::ServingStatus;
        use tonic_health::pb::{HealthCheckRequest, health_client::HealthClient};
        let deadline = Instant::now() + WAIT_MAX;
        loop {
            let channel = Channel::from_shared(format!("http://{}", self.endpoint()))
                .expect("uri")
                .connect_lazy();
            let mut request = tonic::Request::new(HealthCheckRequest {
                service: "wallet.v1.QueryService".into(),
            });
            request.set_timeout(Duration::from_secs(1));
            if let Ok(response) = HealthClient::new(channel).check(request).await
                && response.into_inner().status == ServingStatus::Serving as i32
            {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "read node not serving within {WAIT_MAX:?}\n{}",
                self.log_tail()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// The port of the write node the read node last subscribed partition 0 to, from its log.
    pub fn source_port(&self) -> Option<u16> {
        let log = std::fs::read_to_string(&self.log_path).unwrap_or_default();
        log.lines()
            .rev()
            .find(|line| line.contains("subscribed") && line.contains("partition=0"))
            .and_then(|line| line.split("uri=http://127.0.0.1:").nth(1))
            .and_then(|rest| {
                rest.chars()
                    .take_while(char::is_ascii_digit)
                    .collect::<String>()
                    .parse()
                    .ok()
            })
    }

    pub fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(&self.log_path).unwrap_or_default();
        let tail: Vec<&str> = text.lines().rev().take(40).collect();
        format!(
            "--- read node log tail ---\n{}",
            tail.into_iter().rev().collect::<Vec<_>>().join("\n")
        )
    }
}

impl Drop for ReadNode {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.lock().expect("lock").take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        if std::thread::panicking() {
            eprintln!("{}", self.log_tail());
        }
    }
}
