//! The system under test as real processes: three `wallet-write-node`s whose peer traffic
//! goes through the harness's proxies, and one `wallet-read-node`, on loopback ports with
//! RocksDB in one run directory. Nodes are killed with SIGKILL, paused with SIGSTOP and
//! resumed with SIGCONT, and restarted on the same data.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::time::Duration;

use anyhow::Context as _;
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use proto::v1::GetClusterStatusRequest;
use proto::v1::GetClusterStatusResponse;
use proto::v1::cluster_service_client::ClusterServiceClient;
use tonic::transport::Channel;

use testkit::free_port;

use crate::proxy::{LinkMode, Network};

/// Write nodes in the cluster unless the run asks for more (`Config::write_nodes`).
pub const WRITE_NODES: u64 = 3;

/// Timeout of one `GetClusterStatus` call of the harness.
const STATUS_TIMEOUT: Duration = Duration::from_secs(2);

/// Where the binaries are: `dir` must hold `wallet-write-node`, `wallet-read-node` and
/// `walletctl` (which drives replica moves);
/// without `explicit`, the target directory of `wallet-nemesis` or of the test executable.
pub fn find_binaries(explicit: Option<&Path>) -> anyhow::Result<PathBuf> {
    testkit::find_binaries(
        explicit,
        &["wallet-write-node", "wallet-read-node", "walletctl"],
    )
    .map_err(|message| anyhow::anyhow!("{message}, or pass --bin-dir"))
}

/// One process the harness runs, started and stopped many times.
struct Process {
    name: String,
    log_path: PathBuf,
    child: Option<Child>,
    paused: bool,
}

impl Process {
    fn new(name: String, log_path: PathBuf) -> Process {
        Process {
            name,
            log_path,
            child: None,
            paused: false,
        }
    }

    fn spawn(&mut self, command: &mut Command) -> anyhow::Result<()> {
        anyhow::ensure!(self.child.is_none(), "{} is already running", self.name);
        let child = testkit::spawn_logged(
            command.env("RUST_LOG", "info,raft=info,h2=warn,tower=warn"),
            &self.log_path,
        )?;
        self.child = Some(child);
        self.paused = false;
        Ok(())
    }

    /// SIGKILL and reap: no shutdown code runs, like a power cut for the process. A stopped
    /// process dies from SIGKILL too.
    fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        self.paused = false;
    }

    fn signal(&mut self, signal: Signal) -> anyhow::Result<()> {
        let child = self
            .child
            .as_ref()
            .ok_or_else(|| anyhow::anyhow!("{} is not running", self.name))?;
        kill(Pid::from_raw(child.id() as i32), signal)?;
        self.paused = signal == Signal::SIGSTOP;
        Ok(())
    }

    fn running(&self) -> bool {
        self.child.is_some()
    }
}

/// The cluster. Dropping it kills every process (the run directory is the caller's).
pub struct Cluster {
    pub dir: PathBuf,
    bin_dir: PathBuf,
    /// Node id → real client/peer port.
    pub ports: BTreeMap<u64, u16>,
    pub read_port: u16,
    pub network: Network,
    write: BTreeMap<u64, Process>,
    read: Process,
    node_args: Vec<String>,
}

impl Cluster {
    /// Lays out the cluster in `dir`, starts the proxies and every process.
    pub async fn start(
        dir: &Path,
        bin_dir: &Path,
        node_args: Vec<String>,
        write_nodes: u64,
    ) -> anyhow::Result<Cluster> {
        let ports: BTreeMap<u64, u16> = (1..=write_nodes).map(|id| (id, free_port())).collect();
        let addresses: Vec<(u64, SocketAddr)> = ports
            .iter()
            .map(|(&id, &port)| (id, SocketAddr::from(([127, 0, 0, 1], port))))
            .collect();
        let network = Network::start(&addresses).await?;
        let write = ports
            .keys()
            .map(|&id| {
                let process = Process::new(
                    format!("write node {id}"),
                    dir.join(format!("node-{id}.log")),
                );
                (id, process)
            })
            .collect();
        let mut cluster = Cluster {
            dir: dir.to_path_buf(),
            bin_dir: bin_dir.to_path_buf(),
            ports,
            read_port: free_port(),
            network,
            write,
            read: Process::new("read node".into(), dir.join("read-node.log")),
            node_args,
        };
        for id in cluster.nodes() {
            cluster.start_node(id)?;
        }
        cluster.start_read_node()?;
        Ok(cluster)
    }

    pub fn endpoint(&self, id: u64) -> String {
        format!("127.0.0.1:{}", self.ports[&id])
    }

    /// Every write node's id, in order.
    pub fn nodes(&self) -> Vec<u64> {
        self.ports.keys().copied().collect()
    }

    pub fn endpoints(&self) -> Vec<String> {
        self.ports.keys().map(|&id| self.endpoint(id)).collect()
    }

    pub fn read_endpoint(&self) -> String {
        format!("127.0.0.1:{}", self.read_port)
    }

    /// Node `id`'s peer list: itself at its real address, every other node at the proxy
    /// of the link from `id` to it.
    fn peers_of(&self, id: u64) -> String {
        self.ports
            .iter()
            .map(|(&peer, &port)| {
                let address = if peer == id {
                    SocketAddr::from(([127, 0, 0, 1], port))
                } else {
                    self.network.address(id, peer)
                };
                format!("{peer}={address}")
            })
            .collect::<Vec<_>>()
            .join(",")
    }

    pub fn start_node(&mut self, id: u64) -> anyhow::Result<()> {
        let mut command = Command::new(self.bin_dir.join("wallet-write-node"));
        command
            .args(["--node-id", &id.to_string()])
            .args(["--listen", &self.endpoint(id)])
            .args(["--peers", &self.peers_of(id)])
            .arg("--data-dir")
            .arg(self.dir.join(format!("node-{id}")))
            // The default metrics port (listen port + 1000) could be another test's port.
            .args(["--metrics-listen", "off"])
            .args(&self.node_args);
        self.write
            .get_mut(&id)
            .expect("node id")
            .spawn(&mut command)
    }

    /// SIGKILL node `id`, delete its data directory, and start it again (empty).
    pub fn lose_disk(&mut self, id: u64) -> anyhow::Result<()> {
        self.kill_node(id);
        let data = self.dir.join(format!("node-{id}"));
        std::fs::remove_dir_all(&data).with_context(|| format!("deleting {}", data.display()))?;
        self.start_node(id)
    }

    pub fn kill_node(&mut self, id: u64) {
        self.write.get_mut(&id).expect("node id").kill();
    }

    pub fn pause_node(&mut self, id: u64) -> anyhow::Result<()> {
        self.write
            .get_mut(&id)
            .expect("node id")
            .signal(Signal::SIGSTOP)
    }

    pub fn resume_node(&mut self, id: u64) -> anyhow::Result<()> {
        self.write
            .get_mut(&id)
            .expect("node id")
            .signal(Signal::SIGCONT)
    }

    pub fn start_read_node(&mut self) -> anyhow::Result<()> {
        let mut command = Command::new(self.bin_dir.join("wallet-read-node"));
        command
            .args(["--listen", &self.read_endpoint()])
            .args(["--write-nodes", &self.endpoints().join(",")])
            .arg("--data-dir")
            .arg(self.dir.join("read-node"))
            .args(["--metrics-listen", "off"]);
        self.read.spawn(&mut command)
    }

    pub fn kill_read_node(&mut self) {
        self.read.kill();
    }

    /// Write nodes with a live process (paused ones included).
    pub fn running(&self) -> Vec<u64> {
        self.write
            .iter()
            .filter(|(_, process)| process.running())
            .map(|(&id, _)| id)
            .collect()
    }

    /// Whether everything runs, unpaused, with every link passing.
    pub fn whole(&self) -> bool {
        self.write.values().all(|p| p.running() && !p.paused)
            && self.read.running()
            && self.network.healed()
    }

    /// Heals everything: resumes paused nodes, restarts dead ones, heals every link.
    pub fn heal_all(&mut self) -> anyhow::Result<()> {
        self.network.heal();
        for id in self.nodes() {
            let process = self.write.get_mut(&id).expect("node id");
            if process.paused {
                process.signal(Signal::SIGCONT)?;
            }
            if !process.running() {
                self.start_node(id)?;
            }
        }
        if !self.read.running() {
            self.start_read_node()?;
        }
        Ok(())
    }

    pub fn isolate(&self, id: u64, mode: LinkMode) {
        self.network.set_node(id, mode);
    }

    /// One node's view of the cluster (`include_state_digest` hashes every partition).
    pub async fn status(
        &self,
        id: u64,
        include_state_digest: bool,
    ) -> Result<GetClusterStatusResponse, tonic::Status> {
        let channel = Channel::from_shared(format!("http://{}", self.endpoint(id)))
            .expect("uri")
            .connect_timeout(STATUS_TIMEOUT)
            .connect_lazy();
        let mut request = tonic::Request::new(GetClusterStatusRequest {
            include_state_digest,
        });
        request.set_timeout(STATUS_TIMEOUT);
        ClusterServiceClient::new(channel)
            .get_cluster_status(request)
            .await
            .map(tonic::Response::into_inner)
    }

    /// The leader of each partition if every running, unpaused node answers and all agree
    /// (and each named leader itself holds the role); `None` otherwise.
    pub async fn agreed_leaders(&self) -> Option<Vec<u64>> {
        let mut views = BTreeMap::new();
        for (&id, process) in &self.write {
            if !process.running() || process.paused {
                continue;
            }
            views.insert(id, self.status(id, false).await.ok()?.partitions);
        }
        testkit::agreed_leaders(&views)
    }

    /// The last lines of every log, for failure reports.
    pub fn log_tails(&self, lines: usize) -> String {
        let mut out = String::new();
        for process in self.write.values().chain(std::iter::once(&self.read)) {
            let tail = testkit::log_tail(&process.log_path, lines);
            out.push_str(&format!(
                "--- {} ({}) ---\n",
                process.name,
                process.log_path.display()
            ));
            out.push_str(&tail);
            if !tail.is_empty() {
                out.push('\n');
            }
        }
        out
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for process in self.write.values_mut() {
            process.kill();
        }
        self.read.kill();
    }
}
