//! A real write cluster for tests: `wallet-write-node` processes on loopback ports, each with
//! a RocksDB in a temporary directory, killed with SIGKILL and restarted on the same data.
//! Serves the write node's, the read node's and the load test's integration tests.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use proto::v1::cluster_service_client::ClusterServiceClient;
use proto::v1::event_log_service_client::EventLogServiceClient;
use proto::v1::wallet_service_client::WalletServiceClient;
use proto::v1::{
    Account, GetAccountRequest, GetClusterStatusRequest, GetClusterStatusResponse,
    GetTransferRequest, OpenAccountRequest, PartitionStatus, SubscribeRequest, SubscribeResponse,
    Transfer, TransferRequest, TransferResponse,
};
use tonic::transport::Channel;
use tonic::{Code, Status};
use tonic_types::StatusExt as _;

use crate::free_port;

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
    /// Flags every node is started with, besides its identity and addresses.
    node_args: Vec<String>,
    /// The `ErrorInfo` reason of every failed call `on_leader` retried, counted (see
    /// `retried`).
    retried: Mutex<BTreeMap<String, u64>>,
}

impl Cluster {
    /// Starts `size` write nodes with fresh data directories.
    pub fn start(size: u64) -> Cluster {
        Cluster::start_with(size, &[])
    }

    /// Starts `size` write nodes with `partitions` partitions (the nodes' default otherwise),
    /// each also given `node_args`.
    pub fn start_partitioned(size: u64, partitions: u32, node_args: &[&str]) -> Cluster {
        let partitions = partitions.to_string();
        let mut args = vec!["--partitions", partitions.as_str()];
        args.extend_from_slice(node_args);
        Cluster::start_with(size, &args)
    }

    /// Starts `size` write nodes, each also given `node_args`.
    pub fn start_with(size: u64, node_args: &[&str]) -> Cluster {
        let cluster = Cluster::create_with(size, node_args);
        for id in 1..=size {
            cluster.start_node(id);
        }
        cluster
    }

    /// Lays out `size` write nodes (ports, data directories) without starting any.
    pub fn create(size: u64) -> Cluster {
        Cluster::create_with(size, &[])
    }

    /// `create`, each node to be given `node_args`.
    pub fn create_with(size: u64, node_args: &[&str]) -> Cluster {
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
        Cluster {
            dir,
            nodes,
            peers,
            node_args: node_args.iter().map(|arg| arg.to_string()).collect(),
            retried: Mutex::new(BTreeMap::new()),
        }
    }

    /// The reasons of the failed calls `on_leader` retried since the last call of this
    /// (a connection refused or broken has none: ""), each with its count; starts over.
    pub fn retried(&self) -> BTreeMap<String, u64> {
        std::mem::take(&mut *self.retried.lock().expect("lock"))
    }

    fn node(&self, id: u64) -> &Node {
        self.nodes
            .iter()
            .find(|node| node.id == id)
            .expect("node id")
    }

    pub fn start_node(&self, id: u64) {
        self.start_node_with_env(id, &[]);
    }

    /// Starts a node with extra environment variables, e.g. `FAILPOINTS`.
    pub fn start_node_with_env(&self, id: u64, env: &[(&str, &str)]) {
        // Looked up first: a missing binary panics before the node's lock is taken.
        self.start_node_binary(id, &crate::binary("wallet-write-node"), env);
    }

    /// Starts a node from the `wallet-write-node` binary at `binary` (another release's, for
    /// upgrade tests), with extra environment variables.
    pub fn start_node_binary(&self, id: u64, binary: &Path, env: &[(&str, &str)]) {
        let mut command = Command::new(binary);
        let peers = self.peers.clone();
        let node = self.node(id);
        let mut slot = node.child.lock().expect("lock");
        assert!(slot.is_none(), "node {id} is already running");
        command
            .args(["--node-id", &id.to_string()])
            .args(["--listen", &format!("127.0.0.1:{}", node.port)])
            .args(["--peers", &peers])
            .args([
                "--metrics-listen",
                &format!("127.0.0.1:{}", node.metrics_port),
            ])
            .arg("--data-dir")
            .arg(&node.data_dir)
            .args(&self.node_args)
            .env("RUST_LOG", "info,raft=info,h2=warn,tower=warn")
            .envs(env.iter().copied());
        let child =
            crate::spawn_logged(&mut command, &node.log_path).expect("spawning wallet-write-node");
        *slot = Some(child);
    }

    /// SIGKILL: no shutdown code runs, like a power cut for the process.
    pub fn kill(&self, id: u64) {
        let mut child = self.take_child(id);
        child.kill().expect("kill");
        child.wait().expect("wait");
    }

    /// SIGTERM: a clean stop. Waits for the node to exit; how it exited.
    pub fn stop(&self, id: u64) -> std::process::ExitStatus {
        crate::terminate(&mut self.take_child(id))
    }

    /// The running node's process, which the caller then ends.
    fn take_child(&self, id: u64) -> Child {
        let child = self.node(id).child.lock().expect("lock").take();
        child.expect("node is running")
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

    /// Waits (up to `WAIT_MAX`) for a node to exit by itself; returns how it exited.
    pub async fn wait_exit(&self, id: u64) -> std::process::ExitStatus {
        let deadline = Instant::now() + WAIT_MAX;
        loop {
            {
                let mut slot = self.node(id).child.lock().expect("lock");
                let child = slot.as_mut().expect("node is running");
                if let Some(status) = child.try_wait().expect("try_wait") {
                    *slot = None;
                    return status;
                }
            }
            assert!(
                Instant::now() < deadline,
                "node {id} still runs after {WAIT_MAX:?}\n{}",
                self.logs()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// A node's whole log.
    pub fn log(&self, id: u64) -> String {
        std::fs::read_to_string(&self.node(id).log_path).unwrap_or_default()
    }

    pub fn running(&self) -> Vec<u64> {
        self.nodes
            .iter()
            .filter(|node| node.running())
            .map(|node| node.id)
            .collect()
    }

    pub fn endpoint(&self, id: u64) -> String {
        format!("http://127.0.0.1:{}", self.node(id).port)
    }

    /// The write nodes as `host:port`, in node order (the read node's `--write-nodes`, the
    /// load test's `--endpoints`).
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

    /// `partition`'s committed event blocks from node `id`, from the first one on.
    pub async fn subscribe(&self, id: u64, partition: u32) -> tonic::Streaming<SubscribeResponse> {
        let mut client = EventLogServiceClient::connect(self.endpoint(id))
            .await
            .expect("connect");
        let request = SubscribeRequest {
            partition,
            from_index: 1,
        };
        client
            .subscribe(request)
            .await
            .expect("subscribe")
            .into_inner()
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
            include_state_digest: true,
        });
        request.set_timeout(Duration::from_secs(2));
        client
            .get_cluster_status(request)
            .await
            .map(|response| response.into_inner())
    }

    /// Waits until the running nodes agree on one leader for every partition; returns the
    /// leader of each partition.
    pub async fn wait_leaders(&self) -> Vec<u64> {
        self.wait_leaders_until("agreed leaders", |_| true).await
    }

    /// Waits until the running nodes agree on one leader for every partition and those
    /// leaders satisfy `done`; returns them. `what` names the wait in the failure message.
    pub async fn wait_leaders_until(&self, what: &str, done: impl Fn(&[u64]) -> bool) -> Vec<u64> {
        let deadline = Instant::now() + WAIT_MAX;
        let mut last = None;
        loop {
            let running = self.running();
            let mut views = BTreeMap::new();
            for &node in &running {
                if let Ok(status) = self.status(node).await {
                    views.insert(node, status.partitions);
                }
            }
            if views.len() == running.len()
                && let Some(leaders) = agreed_leaders(&views)
            {
                if done(&leaders) {
                    return leaders;
                }
                last = Some(leaders);
            }
            assert!(
                Instant::now() < deadline,
                "no {what} within {WAIT_MAX:?} (last agreed leaders: {last:?})\n{}",
                self.logs()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// The agreed leader of partition 0.
    pub async fn wait_leader(&self) -> u64 {
        self.wait_leaders().await[0]
    }
    /// Waits until, for every partition, every running node that holds a replica of it has
    /// applied all it committed, the same index as the others, with the same state digest;
    /// returns the total applied index over partitions and the digests joined.
    pub async fn wait_replicas_agree(&self) -> (u64, String) {
        let deadline = Instant::now() + WAIT_MAX;
        loop {
            let running = self.running();
            // Partition -> (node, commit, applied, digest) of each replica that answered.
            let mut views: BTreeMap<u32, Vec<(u64, u64, u64, String)>> = BTreeMap::new();
            let mut answered = 0;
            for &node in &running {
                if let Ok(status) = self.status(node).await {
                    answered += 1;
                    for partition in status.partitions.iter().filter(|p| p.role != "none") {
                        views.entry(partition.partition).or_default().push((
                            node,
                            partition.commit_index,
                            partition.applied_index,
                            partition.state_digest.clone(),
                        ));
                    }
                }
            }
            let agreed: Option<Vec<(u64, String)>> = views
                .values()
                .map(|replicas| {
                    let (_, commit, applied, digest) = &replicas[0];
                    let same = replicas.iter().all(|(_, c, a, d)| {
                        c == commit && a == applied && d == digest && commit == applied
                    });
                    same.then(|| (*applied, digest.clone()))
                })
                .collect();
            if answered == running.len()
                && !views.is_empty()
                && let Some(agreed) = agreed
            {
                let applied = agreed.iter().map(|(applied, _)| applied).sum();
                let digests = agreed
                    .iter()
                    .map(|(_, digest)| digest.as_str())
                    .collect::<Vec<_>>()
                    .join(",");
                return (applied, digests);
            }
            assert!(
                Instant::now() < deadline,
                "replicas did not converge: {views:?}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    /// Waits until no partition on any running node holds a cross-partition transfer in
    /// flight (every saga settled).
    pub async fn wait_no_in_flight(&self) {
        let deadline = Instant::now() + WAIT_MAX;
        loop {
            let mut in_flight = 0;
            let mut answered = 0;
            for node in self.running() {
                if let Ok(status) = self.status(node).await {
                    answered += 1;
                    in_flight += status
                        .partitions
                        .iter()
                        .map(|partition| partition.in_flight_transfers)
                        .sum::<u64>();
                }
            }
            if answered == self.running().len() && in_flight == 0 {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "{in_flight} transfers still in flight\n{}",
                self.logs()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// The last lines of every node's log, for failure messages.
    pub fn logs(&self) -> String {
        self.nodes
            .iter()
            .map(|node| {
                format!(
                    "--- node {} log tail ---\n{}",
                    node.id,
                    log_tail(&node.log_path, 30)
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
        // Like a real client: it knows every node's address, not which ones are up.
        let nodes: Vec<u64> = self.nodes.iter().map(|node| node.id).collect();
        let mut target = nodes[0];
        let mut attempt = 0usize;
        loop {
            let result = call(self.wallet(target).await).await;
            match result {
                Err(status) if retryable(&status) && Instant::now() < deadline => {
                    *self
                        .retried
                        .lock()
                        .expect("lock")
                        .entry(reason(&status))
                        .or_default() += 1;
                    attempt += 1;
                    let hint = status
                        .get_details_error_info()
                        .and_then(|info| {
                            info.metadata
                                .get("leader_id")
                                .and_then(|id| id.parse::<u64>().ok())
                        })
                        .filter(|id| nodes.contains(id));
                    target = hint.unwrap_or(nodes[attempt % nodes.len()]);
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
            ..Default::default()
        };
        self.on_leader(|mut client| {
            let request = request.clone();
            async move { client.open_account(request).await }
        })
        .await
        .map(|response| response.into_inner().account.expect("account"))
    }

    /// Opens the USD issuer `issuer` (may go negative) and the ordinary USD `accounts`, and
    /// funds each with `amount` from the issuer.
    pub async fn open_funded_usd(&self, accounts: &[&str], amount: &str) {
        self.open_account("issuer", "USD", true)
            .await
            .expect("issuer");
        for account in accounts {
            self.open_account(account, "USD", false)
                .await
                .expect("open");
            let id = uuid::Uuid::new_v4().to_string();
            let funding = transfer_request(&id, "issuer", account, amount, "USD");
            self.transfer(&funding).await.expect("fund");
        }
    }

    pub async fn transfer(&self, request: &TransferRequest) -> Result<TransferResponse, Status> {
        self.on_leader(|mut client| {
            let request = request.clone();
            async move { client.transfer(request).await }
        })
        .await
        .map(|response| response.into_inner())
    }

    /// A linearizable read of an account from one specific node.
    pub async fn account_on(&self, node: u64, account_id: &str) -> Result<Account, Status> {
        let mut client = self.wallet(node).await;
        client
            .get_account(GetAccountRequest {
                account_id: account_id.into(),
            })
            .await
            .map(|response| response.into_inner().account.expect("account"))
    }

    pub async fn account(&self, account_id: &str) -> Result<Account, Status> {
        self.on_leader(|mut client| {
            let account_id = account_id.to_owned();
            async move { client.get_account(GetAccountRequest { account_id }).await }
        })
        .await
        .map(|response| response.into_inner().account.expect("account"))
    }

    pub async fn get_transfer(&self, transaction_id: &str) -> Result<Transfer, Status> {
        self.on_leader(|mut client| {
            let transaction_id = transaction_id.to_owned();
            async move {
                client
                    .get_transfer(GetTransferRequest { transaction_id })
                    .await
            }
        })
        .await
        .map(|response| response.into_inner().transfer.expect("transfer"))
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

/// The leader of each partition if the nodes' views (node id → its partitions) all name the
/// same leaders and each named leader is among them and itself holds the leader role; `None`
/// otherwise (no views included).
pub fn agreed_leaders(views: &BTreeMap<u64, Vec<PartitionStatus>>) -> Option<Vec<u64>> {
    let first = views.values().next()?;
    let leaders: Vec<u64> = first.iter().map(|partition| partition.leader_id).collect();
    let agreed = views.values().all(|view| {
        view.iter()
            .map(|partition| partition.leader_id)
            .eq(leaders.iter().copied())
    });
    let confirmed = leaders.iter().enumerate().all(|(partition, leader)| {
        views
            .get(leader)
            .is_some_and(|view| view[partition].role == "leader")
    });
    (agreed && confirmed).then_some(leaders)
}

/// The last `lines` lines of a log file (empty if it cannot be read).
pub fn log_tail(path: &Path, lines: usize) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let tail: Vec<&str> = text.lines().rev().take(lines).collect();
    tail.into_iter().rev().collect::<Vec<_>>().join("\n")
}

/// Whether a failed call may be retried with the same request (its outcome is unknown or it
/// was not executed).
pub fn retryable(status: &Status) -> bool {
    // CANCELLED: the connection closed mid-call (a killed node), so the outcome is unknown.
    matches!(
        status.code(),
        Code::Unavailable
            | Code::ResourceExhausted
            | Code::DeadlineExceeded
            | Code::Unknown
            | Code::Cancelled
    )
}

/// The `ErrorInfo` reason of a status (empty if none).
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
        ..Default::default()
    }
}
