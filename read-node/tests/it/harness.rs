//! A `wallet-read-node` process for the read side's end-to-end tests, following a write
//! cluster from the test kit ([`testkit::Cluster`]: `wallet-write-node` processes on loopback
//! ports with RocksDB in temporary directories), killed with SIGKILL and restarted on the same
//! data.
//!
//! `wallet-write-node` belongs to another package, so cargo does not build it for these tests:
//! the test kit takes it from the target directory this test executable runs from (`cargo
//! build --bins`, or `cargo build --workspace --all-targets` as scripts/test does, must run
//! first; a plain `cargo nextest run --workspace` builds it too, for the write node's own
//! tests).

use std::path::PathBuf;
use std::process::{Child, Command};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use testkit::{Cluster, WAIT_MAX, free_port};
use tonic::transport::Channel;

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
        ReadNode::start_named(cluster, "read-node", extra_args)
    }

    /// A read node of its own, `name`: data directory and log named after it, so several can
    /// follow one cluster.
    pub fn start_named(cluster: &Cluster, name: &str, extra_args: Vec<String>) -> ReadNode {
        let node = ReadNode {
            port: free_port(),
            metrics_port: free_port(),
            data_dir: cluster.dir.path().join(name),
            log_path: cluster.dir.path().join(format!("{name}.log")),
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
        let mut command = Command::new(env!("CARGO_BIN_EXE_wallet-read-node"));
        command
            .args(["--listen", &format!("127.0.0.1:{}", self.port)])
            .args(["--write-nodes", &self.write_nodes])
            .args([
                "--metrics-listen",
                &format!("127.0.0.1:{}", self.metrics_port),
            ])
            .arg("--data-dir")
            .arg(&self.data_dir)
            .args(&self.extra_args)
            .env("RUST_LOG", "info,h2=warn,tower=warn");
        let child =
            testkit::spawn_logged(&mut command, &self.log_path).expect("spawning wallet-read-node");
        *slot = Some(child);
    }

    /// The process id, while running.
    pub fn pid(&self) -> Option<u32> {
        self.child.lock().expect("lock").as_ref().map(Child::id)
    }

    /// SIGKILL.
    pub fn kill(&self) {
        let mut child = self.take_child();
        child.kill().expect("kill");
        child.wait().expect("wait");
    }

    /// SIGTERM (a clean stop), then waits for the process to exit; its exit status.
    pub fn stop(&self) -> std::process::ExitStatus {
        testkit::terminate(&mut self.take_child())
    }

    /// The running process, which the caller then ends.
    fn take_child(&self) -> Child {
        let child = self.child.lock().expect("lock").take();
        child.expect("read node is running")
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

    /// The read node's log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log_path).unwrap_or_default()
    }

    pub fn log_tail(&self) -> String {
        format!(
            "--- read node log tail ---\n{}",
            testkit::log_tail(&self.log_path, 40)
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

/// A cluster of three write nodes with `partitions` partitions, a read node caught up with
/// it, and the Rust SDK's clients of both: what tests driven through the SDK start with.
pub struct SdkCluster {
    /// Held so the nodes run as long as the test does (dropping them stops them).
    #[allow(dead_code)]
    pub cluster: Cluster,
    #[allow(dead_code)]
    pub read: ReadNode,
    pub query: wallet_client::QueryClient,
    pub sdk: wallet_client::WalletClient,
}

impl SdkCluster {
    pub async fn start(partitions: u32) -> SdkCluster {
        let cluster = Cluster::start_partitioned(3, partitions, &[]);
        cluster.wait_leader().await;
        let read = ReadNode::start(&cluster);
        read.wait_serving().await;
        let query = wallet_client::QueryClient::connect([read.endpoint()]).expect("query client");
        let endpoints: Vec<String> = cluster
            .nodes
            .iter()
            .map(|node| format!("127.0.0.1:{}", node.port))
            .collect();
        let sdk = wallet_client::WalletClient::connect(wallet_client::ClientConfig::new(endpoints))
            .await
            .expect("connect");
        SdkCluster {
            cluster,
            read,
            query,
            sdk,
        }
    }
}
