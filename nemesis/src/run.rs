//! One nemesis run: start the cluster, set up the bank, run clients while the nemesis
//! follows the seed's schedule, heal, crash and restart the whole cluster, and check.
//!
//! Why one file of this length: the phases of a run, in the order they happen, share the
//! cluster, the clients' history and the schedule; each phase is a function of its own.

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use futures::StreamExt as _;
use proto::v1::TransferStatus;
use tokio::sync::RwLock;
use wallet_client::{Code, QueryClient, Transfer, WalletClient};

use crate::checker::{self, FinalHold, FinalTransfer, Held, HistoryRow, Report};
use crate::cluster::{Cluster, WRITE_NODES, find_binaries};
use crate::history::{AccountChange, History, Op, Phase};
use crate::proxy::LinkMode;
use crate::schedule::{self, Fault, MoveFault, Step, Target, Timing};
use crate::workload::{self, Clients, FUNDING_MINOR, Submission, accounts, issuer};

/// Bound on "the cluster serves again" after a fault heals: every partition has an agreed
/// leader, a linearizable read of every account succeeds and a transfer gets a definite
/// answer. A run that takes longer records an anomaly. Measured: see README (typically well
/// under 3 s: raft elections take 1-2 s with 100 ms ticks and 10-tick election timeouts).
pub const PROGRESS_BOUND: Duration = Duration::from_secs(20);
/// Bound on waits for the cluster to settle (no transfer in flight, replicas agreeing,
/// read node caught up) once nothing is faulty.
pub const SETTLE_MAX: Duration = Duration::from_secs(30);
/// Bound on the first start and on the restart after the final whole-cluster crash.
pub const START_MAX: Duration = Duration::from_secs(60);
/// How long a `move_replica` fault waits for the move to reach the step it hits.
const MOVE_STEP_WAIT: Duration = Duration::from_secs(5);
/// Pages of 1000 rows read per account from the read node's history (bounds a huge run).
const READ_HISTORY_PAGES_MAX: usize = 1000;
/// How long after a hold's expiry the cluster may take to expire it (its expiry pass runs
/// every `HOLD_EXPIRY_INTERVAL`, about 250 ms), plus slack for a loaded machine.
const HOLD_EXPIRY_GRACE: Duration = Duration::from_secs(2);
/// Bound on waiting for every hold to end once the clients stopped: the longest timeout the
/// workload gives, the grace, and an election's worth of settling.
const HOLDS_END_MAX: Duration =
    Duration::from_secs(workload::HOLD_TIMEOUT_MAX.as_secs() + HOLD_EXPIRY_GRACE.as_secs() + 10);
/// Bound on waiting for clients to finish their current operation when stopping.
const CLIENT_STOP_MAX: Duration = Duration::from_secs(60);

/// Settings of one run.
#[derive(Clone, Debug)]
pub struct Config {
    pub seed: u64,
    /// How long the workload runs under faults (at least the six required faults run).
    pub duration: Duration,
    /// Concurrent transfer workers.
    pub workers: usize,
    pub timing: Timing,
    /// Where `wallet-write-node` and `wallet-read-node` are; next to this executable if
    /// `None`.
    pub bin_dir: Option<PathBuf>,
    /// Keep the run directory even when the run passes.
    pub keep: bool,
    /// Extra flags for every write node (e.g. a small snapshot interval).
    pub node_args: Vec<String>,
    /// Write nodes (`WRITE_NODES` by default).
    pub write_nodes: u64,
    /// Replicas of each partition, placed on that many of the write nodes; `None`: every
    /// node holds every partition.
    pub replicas: Option<usize>,
    /// Print progress to stderr.
    pub verbose: bool,
}

impl Config {
    /// Whether the schedule moves replicas: only a cluster with more write nodes than
    /// replicas has a node to move one to.
    pub fn moves(&self) -> bool {
        self.replicas
            .is_some_and(|replicas| (replicas as u64) < self.write_nodes)
    }

    pub fn new(seed: u64, duration: Duration) -> Config {
        Config {
            seed,
            duration,
            workers: 4,
            timing: Timing {
                quiet_ms: (1000, 3000),
                hold_ms: (2000, 5000),
            },
            bin_dir: None,
            keep: false,
            // Snapshots every 200 entries and a short log, so a node that was down or cut
            // off catches up by installing a snapshot, not only by log replication.
            node_args: vec![
                "--snapshot-interval-entries".into(),
                "200".into(),
                "--log-retain-entries".into(),
                "100".into(),
            ],
            verbose: true,
            write_nodes: WRITE_NODES,
            replicas: None,
        }
    }
}

/// What a run produced.
pub struct Outcome {
    pub report: Report,
    /// The run directory (data dirs, logs, `history.json`, `report.json`), if kept.
    pub kept_dir: Option<PathBuf>,
    pub schedule: Vec<Step>,
}

struct Run {
    config: Config,
    cluster: Cluster,
    wallet: WalletClient,
    history: Arc<History>,
    gate: Arc<RwLock<()>>,
    /// Stops the two watchers once the run is checked.
    watchers_stop: Arc<AtomicBool>,
    report: Report,
    /// Per partition, the write nodes that hold a replica of it (updated by moves).
    replicas: Vec<Vec<u64>>,
    /// The replica move under way (`Fault::MoveReplica`): its partition and its driver.
    mover: Option<(u32, MoveDriver)>,
    /// Where the binaries are (the nodes', and walletctl, which drives replica moves).
    bin_dir: PathBuf,
}

/// A running `drive_move`: the partition's voters once the move is complete, or why not.
type MoveDriver = tokio::task::JoinHandle<Result<Vec<u64>, String>>;

/// Runs `walletctl partition move` (`walletctl` is its binary): it finds the partition's
/// leader, calls `ClusterService/MoveReplica` there and calls again, wherever leadership
/// goes, until the move is complete or `bound` passes. Returns the partition's voters.
async fn drive_move(
    walletctl: PathBuf,
    endpoints: Vec<String>,
    partition: u32,
    (from, to): (u64, u64),
    bound: Duration,
) -> Result<Vec<u64>, String> {
    let (partition, from, to) = (partition.to_string(), from.to_string(), to.to_string());
    let answer = run_walletctl(
        walletctl,
        &endpoints,
        &[
            "partition",
            "move",
            &partition,
            "--from",
            &from,
            "--to",
            &to,
        ],
        bound,
    )
    .await?;
    answer["replica_ids"]
        .as_array()
        .and_then(|ids| ids.iter().map(serde_json::Value::as_u64).collect())
        .ok_or_else(|| format!("no replica ids in {answer}"))
}

/// Runs `walletctl --json` with `args` against `endpoints`, giving it `bound` to finish;
/// returns its JSON answer, or what went wrong.
async fn run_walletctl(
    walletctl: PathBuf,
    endpoints: &[String],
    args: &[&str],
    bound: Duration,
) -> Result<serde_json::Value, String> {
    let output = tokio::process::Command::new(walletctl)
        .args(["--json", "--endpoints", &endpoints.join(",")])
        .args(args)
        .args(["--timeout-secs", &bound.as_secs().to_string()])
        .kill_on_drop(true)
        .output()
        .await
        .map_err(|error| format!("running walletctl: {error}"))?;
    let stdout = String::from_utf8_lossy(&output.stdout);
    if !output.status.success() {
        return Err(format!(
            "walletctl {}: {} {}",
            args.join(" "),
            stdout.trim(),
            String::from_utf8_lossy(&output.stderr).trim()
        ));
    }
    serde_json::from_str(stdout.trim()).map_err(|error| format!("{error}: {stdout}"))
}

/// The replicas of every partition as the cluster reports them (waiting for it to answer).
async fn placed_replicas(cluster: &Cluster) -> anyhow::Result<Vec<Vec<u64>>> {
    let deadline = Instant::now() + START_MAX;
    loop {
        match cluster.status(1, false).await {
            Ok(status) if !status.partitions.is_empty() => {
                return Ok(status
                    .partitions
                    .iter()
                    .map(|partition| partition.replica_ids.clone())
                    .collect());
            }
            _ if Instant::now() < deadline => tokio::time::sleep(Duration::from_millis(100)).await,
            answer => anyhow::bail!("no placement from node 1 within {START_MAX:?}: {answer:?}"),
        }
    }
}

impl Run {
    fn log(&self, message: impl AsRef<str>) {
        if self.config.verbose {
            eprintln!(
                "[nemesis seed={} t={:.1}s] {}",
                self.config.seed,
                self.history.elapsed_ms() as f64 / 1000.0,
                message.as_ref()
            );
        }
    }

    fn nemesis(&self, phase: Phase, fault: &str, node: String, detail: String) {
        self.history.record(
            "nemesis",
            phase,
            Op::Nemesis {
                fault: fault.to_owned(),
                node,
                detail,
            },
        );
    }

    /// Waits for agreed leaders, at most `bound`.
    async fn leaders(&self, bound: Duration) -> Option<Vec<u64>> {
        let deadline = Instant::now() + bound;
        loop {
            if let Some(leaders) = self.cluster.agreed_leaders().await {
                return Some(leaders);
            }
            if Instant::now() >= deadline {
                return None;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    fn resolve(&self, target: Target, leaders: &[u64]) -> u64 {
        match target {
            Target::Leader { partition } => leaders[partition as usize],
            Target::Follower { partition, pick } => {
                let followers: Vec<u64> = self.replicas[partition as usize]
                    .iter()
                    .copied()
                    .filter(|&id| id != leaders[partition as usize])
                    .collect();
                followers[pick as usize % followers.len()]
            }
        }
    }

    /// The leader of `partition` according to the write nodes other than `node` that answer
    /// (the first that names one); `None` if none does.
    async fn leader_seen_by_others(&self, node: u64, partition: u32) -> Option<u64> {
        let replicas = self.replicas[partition as usize].clone();
        for other in replicas.into_iter().filter(|&other| other != node) {
            if let Ok(status) = self.cluster.status(other, false).await
                && let Some(view) = status.partitions.get(partition as usize)
                && view.leader_id != 0
            {
                return Some(view.leader_id);
            }
        }
        None
    }

    /// The partition's leader and whether the move of a replica to `to` has reached `joint`
    /// (both configurations vote) or, if not asked for that, made `to` a learner, as a
    /// replica of the partition reports them.
    async fn move_view(&self, partition: u32, to: u64, joint: bool) -> Option<(u64, bool)> {
        for &node in &self.replicas[partition as usize] {
            let Ok(status) = self.cluster.status(node, false).await else {
                continue;
            };
            let view = status.partitions.get(partition as usize)?;
            let reached = if joint {
                view.replica_ids.len() > self.replicas[partition as usize].len()
            } else {
                view.learner_ids.contains(&to) || view.replica_ids.contains(&to)
            };
            return Some((view.leader_id, reached));
        }
        None
    }

    /// Starts moving the replica of `partition` on its leader to a node outside its group,
    /// waits (a bounded time) for the step `during` needs, then injects it; returns the node
    /// it hit.
    async fn start_move(
        &mut self,
        partition: u32,
        pick: u32,
        during: MoveFault,
        leaders: &[u64],
    ) -> anyhow::Result<u64> {
        let group = &self.replicas[partition as usize];
        let outside: Vec<u64> = self
            .cluster
            .nodes()
            .into_iter()
            .filter(|node| !group.contains(node))
            .collect();
        anyhow::ensure!(
            !outside.is_empty(),
            "harness bug: a move on a cluster without room (every node holds partition {partition})"
        );
        let (from, to) = (
            leaders[partition as usize],
            outside[pick as usize % outside.len()],
        );
        let walletctl = self.bin_dir.join("walletctl");
        let endpoints = self.cluster.endpoints();
        let driver = drive_move(
            walletctl,
            endpoints,
            partition,
            (from, to),
            PROGRESS_BOUND * 3,
        );
        self.mover = Some((partition, tokio::spawn(driver)));
        let joint = matches!(
            during,
            MoveFault::IsolateLeaderWhileJoint | MoveFault::SplitWhileJoint
        );
        let deadline = Instant::now() + MOVE_STEP_WAIT;
        let mut leader = from;
        while Instant::now() < deadline {
            if let Some((now, reached)) = self.move_view(partition, to, joint).await {
                leader = if now != 0 { now } else { leader };
                if reached {
                    break;
                }
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        self.log(format!(
            "move of partition {partition}'s replica from node {from} to node {to}: {during:?}"
        ));
        Ok(match during {
            MoveFault::KillLeader => {
                self.cluster.kill_node(leader);
                leader
            }
            MoveFault::KillLearner => {
                self.cluster.kill_node(to);
                to
            }
            MoveFault::IsolateLeaderWhileJoint => {
                self.cluster.isolate(leader, LinkMode::Drop);
                leader
            }
            MoveFault::SplitWhileJoint => {
                // The leaving replica with a voter that stays (the leader, if it is one):
                // a majority of the old configuration, a minority of the new.
                let staying = if leader != from && leader != to {
                    Some(leader)
                } else {
                    self.replicas[partition as usize]
                        .iter()
                        .copied()
                        .find(|&node| node != from && node != to)
                };
                let side: Vec<u64> = [from].into_iter().chain(staying).collect();
                self.cluster.network.split(&side, LinkMode::Drop);
                from
            }
        })
    }

    /// Waits for the move under way to complete (the fault it ran into healed); records its
    /// partition's new replicas, or an anomaly.
    async fn finish_move(&mut self) {
        let Some((partition, driver)) = self.mover.take() else {
            return;
        };
        match driver.await {
            Ok(Ok(voters)) => {
                self.log(format!("partition {partition} moved: replicas {voters:?}"));
                self.replicas[partition as usize] = voters;
                self.report.replica_moves += 1;
            }
            Ok(Err(error)) => self.report.anomaly(format!(
                "the move of a replica of partition {partition}: {error}"
            )),
            Err(error) => self
                .report
                .anomaly(format!("harness bug: the move driver failed: {error}")),
        }
    }

    /// Drains a node that lost its data (`walletctl node drain`): every replica it held moves
    /// to another node (its peers refuse it until then). Records the partitions' new
    /// replicas, or an anomaly.
    async fn drain(&mut self, node: u64) {
        let answer = run_walletctl(
            self.bin_dir.join("walletctl"),
            &self.cluster.endpoints(),
            &["node", "drain", &node.to_string()],
            PROGRESS_BOUND * 3,
        )
        .await;
        let moves = match answer {
            Ok(answer) => answer["moves"].as_array().cloned().unwrap_or_default(),
            Err(error) => {
                self.report.anomaly(error);
                return;
            }
        };
        for step in &moves {
            let (Some(partition), Some(from), Some(to)) = (
                step["partition"].as_u64(),
                step["from"].as_u64(),
                step["to"].as_u64(),
            ) else {
                self.report
                    .anomaly(format!("walletctl node drain {node}: a move {step}"));
                continue;
            };
            let replicas = &mut self.replicas[partition as usize];
            replicas.retain(|&replica| replica != from);
            replicas.push(to);
            replicas.sort_unstable();
            self.report.replica_moves += 1;
        }
        self.log(format!(
            "node {node} (lost its data) drained: {} replicas moved",
            moves.len()
        ));
        if self
            .replicas
            .iter()
            .any(|replicas| replicas.contains(&node))
        {
            self.report.anomaly(format!(
                "node {node} still holds replicas after its drain: {:?}",
                self.replicas
            ));
        }
    }

    /// Injects `fault`; returns the nodes it hit (0 stands for the read node).
    async fn inject(&mut self, fault: Fault, leaders: &[u64]) -> anyhow::Result<Vec<u64>> {
        Ok(match fault {
            Fault::MoveReplica {
                partition,
                pick,
                during,
            } => vec![self.start_move(partition, pick, during, leaders).await?],
            Fault::Kill { target } => {
                let node = self.resolve(target, leaders);
                self.cluster.kill_node(node);
                vec![node]
            }
            Fault::LoseDisk { target } => {
                let node = self.resolve(target, leaders);
                self.cluster.lose_disk(node)?;
                vec![node]
            }
            Fault::Isolate { target, mode } => {
                let node = self.resolve(target, leaders);
                self.cluster.isolate(node, mode);
                vec![node]
            }
            Fault::Slow { target, delay_ms } => {
                let node = self.resolve(target, leaders);
                self.cluster.isolate(node, LinkMode::Delay { ms: delay_ms });
                vec![node]
            }
            Fault::Pause { target } => {
                let node = self.resolve(target, leaders);
                self.cluster.pause_node(node)?;
                vec![node]
            }
            Fault::KillReadNode => {
                self.cluster.kill_read_node();
                vec![0]
            }
            Fault::KillMajority { partition, pick } => {
                let nodes = vec![
                    self.resolve(Target::Leader { partition }, leaders),
                    self.resolve(Target::Follower { partition, pick }, leaders),
                ];
                for &node in &nodes {
                    self.cluster.kill_node(node);
                }
                nodes
            }
            Fault::IsolateAll { mode } => {
                for node in self.cluster.nodes() {
                    self.cluster.isolate(node, mode);
                }
                self.cluster.nodes()
            }
        })
    }

    fn heal(&mut self, fault: Fault, nodes: &[u64]) -> anyhow::Result<()> {
        match fault {
            Fault::Kill { .. }
            | Fault::KillMajority { .. }
            | Fault::MoveReplica {
                during: MoveFault::KillLeader | MoveFault::KillLearner,
                ..
            } => {
                for &node in nodes {
                    self.cluster.start_node(node)?;
                }
                Ok(())
            }
            Fault::Isolate { .. }
            | Fault::Slow { .. }
            | Fault::IsolateAll { .. }
            | Fault::MoveReplica {
                during: MoveFault::IsolateLeaderWhileJoint | MoveFault::SplitWhileJoint,
                ..
            } => {
                self.cluster.network.heal();
                Ok(())
            }
            Fault::Pause { .. } => self.cluster.resume_node(nodes[0]),
            // The node runs, empty; `drain` follows.
            Fault::LoseDisk { .. } => Ok(()),
            Fault::KillReadNode => self.cluster.start_read_node(),
        }
    }

    /// Time until the cluster serves again: agreed leaders, a full linearizable sweep, the
    /// read node answering, and a definite answer to a transfer (a probe too large to
    /// succeed: it is rejected for insufficient funds, which still needs the source
    /// partition's leader to commit the rejection). `None` if not within `PROGRESS_BOUND`.
    async fn recovery(&self) -> Option<Duration> {
        let started = Instant::now();
        let deadline = started + PROGRESS_BOUND;
        let query = QueryClient::connect([self.cluster.read_endpoint()]).ok()?;
        let account = workload::ordinary("USD", 0);
        while Instant::now() < deadline {
            if self.cluster.agreed_leaders().await.is_some()
                && workload::sweep(&self.wallet).await.is_some()
                && query.balance(&account, None).await.is_ok()
            {
                let probe = Transfer {
                    transaction_id: wallet_client::new_transaction_id(),
                    from: workload::ordinary("USD", 0),
                    to: workload::ordinary("USD", 1),
                    amount: workload::format_minor(1_000_000_000),
                    currency: "USD".into(),
                    ..Default::default()
                };
                let phase = workload::transfer(
                    &self.wallet,
                    &self.history,
                    "probe",
                    &probe,
                    1_000_000_000,
                    Submission::New,
                )
                .await;
                if phase != Phase::Unknown {
                    return Some(started.elapsed()).filter(|took| *took <= PROGRESS_BOUND);
                }
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        None
    }

    /// Sum of in-flight cross-partition transfers over every running node, if all answer.
    async fn in_flight(&self) -> Option<u64> {
        let mut total = 0;
        for node in self.cluster.running() {
            let status = self.cluster.status(node, false).await.ok()?;
            total += status
                .partitions
                .iter()
                .map(|p| p.in_flight_transfers)
                .sum::<u64>();
        }
        Some(total)
    }

    async fn wait_no_in_flight(&self) -> bool {
        let deadline = Instant::now() + SETTLE_MAX;
        while Instant::now() < deadline {
            if self.in_flight().await == Some(0) {
                return true;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        false
    }

    /// A conservation check: stops every client, waits until nothing is in flight, and
    /// records a sweep that two consecutive reads agree on.
    async fn quiescent_sweep(&mut self, label: &str) -> Option<BTreeMap<String, i64>> {
        let gate = Arc::clone(&self.gate);
        let _exclusive = gate.write().await;
        if !self.wait_no_in_flight().await {
            self.report.anomaly(format!(
                "{label}: transfers still in flight after {SETTLE_MAX:?}"
            ));
            return None;
        }
        for _ in 0..5 {
            let (Some(first), Some(second)) = (
                workload::sweep(&self.wallet).await,
                workload::sweep(&self.wallet).await,
            ) else {
                continue;
            };
            if first == second && self.in_flight().await == Some(0) {
                self.history.record(
                    "checker",
                    Phase::Ok,
                    Op::Read {
                        balances: second.clone(),
                        quiescent: true,
                    },
                );
                return Some(second.into_iter().collect());
            }
        }
        self.report
            .anomaly(format!("{label}: no stable quiescent sweep in 5 tries"));
        None
    }

    /// Waits until every node has applied all it committed, with equal indexes and state
    /// digests per partition; returns the digests.
    async fn replicas_agree(&mut self, label: &str) -> Option<Vec<String>> {
        let deadline = Instant::now() + SETTLE_MAX;
        let mut last = String::new();
        while Instant::now() < deadline {
            // Per partition, (commit, applied, digest) of each replica that answered.
            let mut views: Vec<Vec<(u64, u64, String)>> = vec![Vec::new(); self.replicas.len()];
            let mut answered = 0;
            for node in self.cluster.nodes() {
                if let Ok(status) = self.cluster.status(node, true).await {
                    answered += 1;
                    for p in status.partitions.iter().filter(|p| p.role != "none") {
                        if let Some(view) = views.get_mut(p.partition as usize) {
                            view.push((p.commit_index, p.applied_index, p.state_digest.clone()));
                        }
                    }
                }
            }
            let agreed = views.iter().all(|replicas| {
                replicas.first().is_some_and(|first| {
                    first.0 == first.1 && replicas.iter().all(|replica| replica == first)
                })
            });
            if answered == self.cluster.nodes().len() && agreed {
                return Some(views.iter().map(|replicas| replicas[0].2.clone()).collect());
            }
            last = format!("{views:?}");
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        self.report.anomaly(format!(
            "{label}: replicas did not agree within {SETTLE_MAX:?}: {last}"
        ));
        None
    }

    /// `GetTransfer` for every id in the history, retrying unknown outcomes.
    async fn finals(&mut self) -> HashMap<String, Option<FinalTransfer>> {
        let ids: std::collections::BTreeSet<String> = self
            .history
            .snapshot()
            .into_iter()
            .filter_map(|entry| match entry.op {
                Op::Transfer { transaction_id, .. }
                | Op::Hold { transaction_id, .. }
                | Op::Legs { transaction_id, .. } => Some(transaction_id),
                _ => None,
            })
            .collect();
        // Sixteen lookups at a time: a long run has tens of thousands of ids.
        let wallet = &self.wallet;
        let answers: Vec<(String, Option<Option<FinalTransfer>>)> = futures::stream::iter(ids)
            .map(|id| async move {
                let answer = final_transfer(wallet, &id).await;
                (id, answer)
            })
            .buffer_unordered(16)
            .collect()
            .await;
        let mut finals = HashMap::new();
        for (id, answer) in answers {
            match answer {
                Some(answer) => {
                    finals.insert(id, answer);
                }
                None => self
                    .report
                    .anomaly(format!("{id}: GetTransfer kept failing")),
            }
        }
        finals
    }

    /// Waits until no hold of the history is PENDING (the cluster expires what nobody
    /// resolved), at most [`HOLDS_END_MAX`]; a hold still pending then is reported by the
    /// checker from the final `GetTransfer`.
    async fn wait_holds_ended(&mut self) {
        let ids: std::collections::BTreeSet<String> = self.history.with_entries(|entries| {
            entries
                .iter()
                .filter_map(|entry| match &entry.op {
                    Op::Hold { transaction_id, .. } => Some(transaction_id.clone()),
                    _ => None,
                })
                .collect()
        });
        let deadline = Instant::now() + HOLDS_END_MAX;
        let mut pending: Vec<String> = ids.into_iter().collect();
        while !pending.is_empty() && Instant::now() < deadline {
            let wallet = &self.wallet;
            let still: Vec<Option<String>> = futures::stream::iter(pending.clone())
                .map(|id| async move {
                    match final_transfer(wallet, &id).await {
                        Some(Some(state)) if state.status != TransferStatus::Pending => None,
                        Some(None) => None,
                        _ => Some(id),
                    }
                })
                .buffer_unordered(16)
                .collect()
                .await;
            pending = still.into_iter().flatten().collect();
            if !pending.is_empty() {
                tokio::time::sleep(Duration::from_millis(250)).await;
            }
        }
        self.log(format!(
            "holds ended ({} still pending; waited at most {HOLDS_END_MAX:?})",
            pending.len()
        ));
    }

    /// Unfreezes every ordinary account still frozen at the end (a freeze with an unknown
    /// outcome may have applied late), recorded like the freezer's calls.
    async fn unfreeze_all(&mut self) {
        for (account, _, _) in accounts() {
            let frozen = match self.wallet.get_account(&account).await {
                Ok(response) => response
                    .account
                    .is_some_and(|a| a.status == wallet_client::pb::AccountStatus::Frozen as i32),
                Err(e) => {
                    self.report
                        .anomaly(format!("{account}: status unreadable at the end: {e}"));
                    continue;
                }
            };
            if frozen {
                let phase = workload::change_account(
                    &self.wallet,
                    &self.history,
                    "harness",
                    AccountChange::Unfreeze,
                    &account,
                    workload::UNFREEZE_ATTEMPTS_MAX,
                )
                .await;
                if phase != Phase::Ok {
                    self.report.anomaly(format!(
                        "{account}: could not unfreeze at the end: {phase:?}"
                    ));
                }
            }
        }
    }

    /// What every account holds, on the write side (`GetAccount`) and the read side
    /// (`Balance.held`, waited for until it matches the write side, at most `SETTLE_MAX`).
    async fn held(&mut self) -> BTreeMap<String, Held> {
        let mut held = BTreeMap::new();
        let Ok(query) = QueryClient::connect([self.cluster.read_endpoint()]) else {
            return held;
        };
        let deadline = Instant::now() + SETTLE_MAX;
        for (account, _, _) in accounts() {
            let Ok(response) = self.wallet.get_account(&account).await else {
                continue;
            };
            let write_minor = response
                .account
                .map_or(-1, |a| workload::parse_minor_or_zero(&a.held));
            let mut read_minor = -1;
            loop {
                if let Ok(response) = query.balance(&account, None).await
                    && let Some(balance) = response.balance
                {
                    read_minor = workload::parse_minor_or_zero(&balance.held);
                }
                if read_minor == write_minor || Instant::now() >= deadline {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            held.insert(
                account,
                Held {
                    write_minor,
                    read_minor,
                },
            );
        }
        held
    }

    /// Every account's history on the read node (`ListTransfers`, all pages), oldest first.
    /// An account whose history cannot be read is left out (the checker reports it).
    async fn read_history(&self) -> BTreeMap<String, Vec<HistoryRow>> {
        let Ok(query) = QueryClient::connect([self.cluster.read_endpoint()]) else {
            return BTreeMap::new();
        };
        let mut all = BTreeMap::new();
        'accounts: for (account, _, _) in accounts() {
            let mut rows = Vec::new();
            let mut token = String::new();
            for _ in 0..READ_HISTORY_PAGES_MAX {
                let Ok(page) = query.history(&account, Some(&token), 1000).await else {
                    continue 'accounts;
                };
                rows.extend(page.entries.into_iter().map(|entry| HistoryRow {
                    sequence: entry.sequence,
                    transaction_id: entry.transaction_id,
                    delta_minor: entry.delta_minor,
                    balance_after_minor: entry.balance_after_minor,
                }));
                if page.next_page_token.is_empty() {
                    rows.reverse(); // Pages come newest first.
                    all.insert(account, rows);
                    continue 'accounts;
                }
                token = page.next_page_token;
            }
        }
        all
    }

    /// Waits until both watchers' last pushed balances equal `balances`.
    async fn watchers_caught_up(&mut self, balances: &BTreeMap<String, i64>) {
        let deadline = Instant::now() + SETTLE_MAX;
        let mut behind = Vec::new();
        while Instant::now() < deadline {
            let last: BTreeMap<(String, String), i64> = self.history.with_entries(|entries| {
                let mut last = BTreeMap::new();
                for entry in entries {
                    if let Op::Push {
                        watcher,
                        account_id,
                        balance_minor,
                        ..
                    } = &entry.op
                    {
                        last.insert((watcher.clone(), account_id.clone()), *balance_minor);
                    }
                }
                last
            });
            behind = ["watcher-sdk", "watcher-raw"]
                .iter()
                .flat_map(|watcher| {
                    balances
                        .iter()
                        .filter(|(account, balance)| {
                            last.get(&(watcher.to_string(), account.to_string())) != Some(balance)
                        })
                        .map(move |(account, _)| format!("{watcher}/{account}"))
                })
                .collect();
            if behind.is_empty() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        self.report.anomaly(format!(
            "watchers not caught up with the final balances within {SETTLE_MAX:?}: {behind:?}"
        ));
    }
}

/// `GetTransfer` for one id: `Some(None)` when NOT_FOUND, `None` when it kept failing.
async fn final_transfer(wallet: &WalletClient, id: &str) -> Option<Option<FinalTransfer>> {
    let uuid = wallet_client::Uuid::parse_str(id).expect("the harness's own uuid");
    for _ in 0..5 {
        match wallet.get_transfer(uuid).await {
            Ok(transfer) => {
                return Some(Some(FinalTransfer {
                    status: TransferStatus::try_from(transfer.status)
                        .unwrap_or(TransferStatus::Unspecified),
                    from: transfer.from_account,
                    to: transfer.to_account,
                    amount_minor: if transfer.legs.is_empty() {
                        parse_minor(&transfer.amount)
                    } else {
                        0
                    },
                    currency: transfer.currency,
                    hold: transfer.hold.map(|hold| FinalHold {
                        captured_minor: workload::parse_minor_or_zero(&hold.captured_amount),
                        expires_at_unix_ms: hold.expires_at.map_or(0, |at| {
                            (at.seconds * 1000 + i64::from(at.nanos) / 1_000_000) as u64
                        }),
                    }),
                    legs: transfer
                        .legs
                        .iter()
                        .map(|leg| {
                            (
                                leg.from_account.clone(),
                                leg.to_account.clone(),
                                parse_minor(&leg.amount),
                            )
                        })
                        .collect(),
                    rejected_leg: transfer.rejected_leg,
                }));
            }
            Err(e) if e.code() == Code::NotFound => return Some(None),
            Err(_) => tokio::time::sleep(Duration::from_millis(500)).await,
        }
    }
    None
}

/// `"123.45"` → 12345 (two minor digits, as both currencies of the bank have).
fn parse_minor(amount: &str) -> i64 {
    let (units, fraction) = amount.split_once('.').unwrap_or((amount, ""));
    let fraction = format!("{fraction:0<2}");
    units.parse::<i64>().unwrap_or(i64::MIN) * 100 + fraction[..2].parse::<i64>().unwrap_or(0)
}

/// Runs the whole scenario for `config.seed`. Errors are harness failures (a binary missing,
/// a setup step impossible); what the system under test does wrong ends up in the report.
pub async fn run(config: Config) -> anyhow::Result<Outcome> {
    let bin_dir = find_binaries(config.bin_dir.as_deref())?;
    let dir = tempfile::Builder::new()
        .prefix(&format!("nemesis-seed-{}-", config.seed))
        .tempdir()?;
    let mut node_args = config.node_args.clone();
    if let Some(replicas) = config.replicas {
        node_args.extend(["--replicas".to_owned(), replicas.to_string()]);
    }
    let cluster = Cluster::start(dir.path(), &bin_dir, node_args, config.write_nodes).await?;
    // Placement is fixed at creation: the replicas of each partition, from node 1's view.
    let replicas = placed_replicas(&cluster).await?;
    let wallet = workload::wallet_client(cluster.endpoints()).await?;
    let mut run = Run {
        config: config.clone(),
        cluster,
        wallet,
        history: Arc::new(History::new()),
        gate: Arc::new(RwLock::new(())),
        watchers_stop: Arc::new(AtomicBool::new(false)),
        report: Report::default(),
        replicas,
        mover: None,
        bin_dir: bin_dir.clone(),
    };
    let partitions = workload::PARTITIONS;
    let steps = schedule::schedule(
        config.seed,
        config.duration,
        partitions,
        config.timing,
        config.moves(),
    );
    let result = scenario(&mut run, &steps).await;
    // Whatever happened, keep the evidence: the history and the report next to the data.
    let history_path = dir.path().join("history.json");
    run.history.write_json(&history_path)?;
    if let Err(e) = &result {
        run.report.anomaly(format!("run aborted: {e:#}"));
    }
    std::fs::write(
        dir.path().join("report.json"),
        serde_json::to_vec_pretty(&run.report)?,
    )?;
    let failed = !run.report.ok();
    if failed {
        eprintln!("{}", run.cluster.log_tails(20));
    }
    drop(run.cluster);
    let kept_dir = if failed || config.keep {
        let kept = dir.keep();
        eprintln!(
            "nemesis seed {}: {}; history, report, logs and data kept in {}\n\
             replay: cargo run -p nemesis --bin wallet-nemesis -- --seed {} --duration {}s",
            config.seed,
            if failed { "FAILED" } else { "passed" },
            kept.display(),
            config.seed,
            config.duration.as_secs()
        );
        Some(kept)
    } else {
        None
    };
    Ok(Outcome {
        report: run.report,
        kept_dir,
        schedule: steps,
    })
}

async fn scenario(run: &mut Run, steps: &[Step]) -> anyhow::Result<()> {
    anyhow::ensure!(
        run.leaders(START_MAX).await.is_some(),
        "no agreed leaders within {START_MAX:?} of the start"
    );
    run.log("cluster up; opening and funding accounts");
    setup(run).await?;

    let stop = Arc::new(AtomicBool::new(false));
    let clients = Arc::new(Clients {
        wallet: run.wallet.clone(),
        impatient: workload::impatient_client(run.cluster.endpoints()).await?,
        history: Arc::clone(&run.history),
        gate: Arc::clone(&run.gate),
        stop: Arc::clone(&stop),
    });
    let mut tasks = Vec::new();
    for index in 0..run.config.workers {
        tasks.push(tokio::spawn(workload::worker(
            Arc::clone(&clients),
            run.config.seed,
            index,
        )));
    }
    tasks.push(tokio::spawn(workload::reader(Arc::clone(&clients))));
    tasks.push(tokio::spawn(workload::freezer(
        Arc::clone(&clients),
        run.config.seed,
    )));

    // The nemesis: one fault at a time, each on a healthy cluster.
    let started = Instant::now();
    for (index, step) in steps.iter().enumerate() {
        let required = 6 + if run.config.moves() {
            schedule::MOVES.len()
        } else {
            0
        };
        if started.elapsed() >= run.config.duration && index >= required {
            break;
        }
        tokio::time::sleep(Duration::from_millis(step.quiet_before_ms)).await;
        let Some(leaders) = run.leaders(PROGRESS_BOUND).await else {
            run.report
                .anomaly(format!("step {index}: no agreed leaders before the fault"));
            continue;
        };
        let nodes = run.inject(step.fault, &leaders).await?;
        let node = nodes
            .iter()
            .map(u64::to_string)
            .collect::<Vec<_>>()
            .join("+");
        let name = step.fault.name();
        let detail = serde_json::to_string(&step.fault)?;
        run.nemesis(Phase::Invoke, name, node.clone(), detail.clone());
        run.log(format!(
            "inject {name} on node {node} for {}ms: {detail}",
            step.hold_ms
        ));
        run.report.faults_injected += 1;
        *run.report.fault_kinds.entry(name.to_owned()).or_default() += 1;
        tokio::time::sleep(Duration::from_millis(step.hold_ms)).await;
        // Evidence that the fault bit: did the rest of the cluster move the leadership away
        // from a leader that was killed, cut off or paused?
        let effect = match step.fault {
            Fault::Kill {
                target: Target::Leader { partition },
            }
            | Fault::Isolate {
                target: Target::Leader { partition },
                ..
            }
            | Fault::Pause {
                target: Target::Leader { partition },
            } => {
                let moved_to = run.leader_seen_by_others(nodes[0], partition).await;
                if moved_to.is_some_and(|leader| leader != nodes[0] && leader != 0) {
                    run.report.leader_moves += 1;
                }
                format!("healed; partition {partition} leader seen by the others: {moved_to:?}")
            }
            _ => "healed".to_owned(),
        };
        run.heal(step.fault, &nodes)?;
        run.finish_move().await;
        if let Fault::LoseDisk { .. } = step.fault {
            run.drain(nodes[0]).await;
        }
        run.nemesis(Phase::Ok, name, node.clone(), effect);
        match run.recovery().await {
            Some(took) => {
                run.log(format!("healed {name}; serving again after {took:?}"));
                run.report.recovery_ms.push(took.as_millis() as u64);
            }
            None => run.report.anomaly(format!(
                "step {index} ({name} on node {node}): not serving {PROGRESS_BOUND:?} after the heal"
            )),
        }
        run.quiescent_sweep(&format!("after step {index} ({name})"))
            .await;
    }

    run.log("schedule done; stopping clients");
    run.cluster.heal_all()?;
    stop.store(true, Ordering::Relaxed);
    for task in tasks {
        match tokio::time::timeout(CLIENT_STOP_MAX, task).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => run
                .report
                .anomaly(format!("harness bug: a client task failed: {e}")),
            Err(_) => run.report.anomaly("a client did not stop within its bound"),
        }
    }
    if !run.wait_no_in_flight().await {
        run.report
            .anomaly("transfers still in flight after the clients stopped");
    }
    // Before the digests: expiries and unfreezes change the state.
    run.unfreeze_all().await;
    run.wait_holds_ended().await;
    let before = run.replicas_agree("after healing").await;

    // Durability: a power cut of the whole write cluster, then a restart on the same data.
    run.log("killing every write node (SIGKILL) and restarting");
    for node in run.cluster.nodes() {
        run.cluster.kill_node(node);
    }
    for node in run.cluster.nodes() {
        run.cluster.start_node(node)?;
    }
    let restarted = Instant::now();
    if run.leaders(START_MAX).await.is_none() {
        run.report
            .anomaly("no leaders after the whole-cluster restart");
    }
    run.log(format!(
        "restarted; leaders after {:?}",
        restarted.elapsed()
    ));
    if !run.wait_no_in_flight().await {
        run.report.anomaly("transfers in flight after the restart");
    }
    let after = run.replicas_agree("after the final restart").await;
    if let (Some(before), Some(after)) = (&before, &after)
        && before != after
    {
        run.report.anomaly(format!(
            "state digests changed across the final restart: {before:?} -> {after:?}"
        ));
    }

    let Some(balances) = run.quiescent_sweep("final").await else {
        anyhow::bail!("no final quiescent sweep");
    };
    let finals = run.finals().await;
    run.log("waiting for the watchers to catch up");
    run.watchers_caught_up(&balances).await;
    run.watchers_stop.store(true, Ordering::Relaxed);
    let read_history = run.read_history().await;
    let held = run.held().await;
    let history = run.history.snapshot();
    checker::check(
        &history,
        &finals,
        &balances,
        &read_history,
        &held,
        &mut run.report,
    );
    run.log(format!(
        "checked: {} transfers ({} acknowledged, {} rejected, {} unknown of which {} applied), \
         {} reused ids ({} refused, {} unknown), \
         {} multi-leg sets ({} acknowledged, {} refused, {} unknown of which {} applied, \
         {} with an unknown attempt; \
         {} COMPLETED moving {} legs ({} across partitions), {} REJECTED), \
         {} holds ({} authorized: {} captured of which {} in part, {} voided, {} expired, \
         {} rejected; {} captures refused; {} capture+void), {} freezes ({} ACCOUNT_FROZEN \
         refusals, {} operations inside a frozen period), \
         {} reads ({} quiescent), {} pushes, {} read-node history rows; {} faults; \
         anomalies: {}",
        run.report.transfers_attempted,
        run.report.transfers_acknowledged,
        run.report.transfers_rejected,
        run.report.transfers_unknown,
        run.report.transfers_unknown_applied,
        run.report.reuses_attempted,
        run.report.reuses_refused,
        run.report.reuses_unknown,
        run.report.legs_attempted,
        run.report.legs_acknowledged,
        run.report.legs_refused,
        run.report.legs_unknown,
        run.report.legs_unknown_applied,
        run.report.legs_resubmitted,
        run.report.legs_completed,
        run.report.legs_moved,
        run.report.legs_completed_across,
        run.report.legs_rejected,
        run.report.holds_attempted,
        run.report.holds_authorized,
        run.report.holds_captured,
        run.report.holds_captured_partially,
        run.report.holds_voided,
        run.report.holds_expired,
        run.report.holds_rejected,
        run.report.captures_refused,
        run.report.hold_capture_and_void,
        run.report.freezes_acknowledged,
        run.report.frozen_refusals,
        run.report.frozen_windows_checked,
        run.report.reads_checked,
        run.report.quiescent_reads_checked,
        run.report.pushes_checked,
        run.report.history_rows_checked,
        run.report.faults_injected,
        run.report.anomalies_total
    ));
    Ok(())
}

/// Opens every account, waits until the read node knows them, starts the watchers (so they
/// see every change from sequence 0), then funds every ordinary account from its issuer.
async fn setup(run: &mut Run) -> anyhow::Result<()> {
    for (account, currency, is_issuer) in accounts() {
        let mut opened = false;
        for _ in 0..10 {
            match run.wallet.open_account(&account, currency, is_issuer).await {
                Ok(_) => {
                    opened = true;
                    break;
                }
                Err(e) if e.is_definite() => anyhow::bail!("opening {account}: {e}"),
                Err(_) => tokio::time::sleep(Duration::from_millis(300)).await,
            }
        }
        anyhow::ensure!(opened, "could not open {account}");
    }
    let query = QueryClient::connect([run.cluster.read_endpoint()])?;
    let deadline = Instant::now() + START_MAX;
    for (account, _, _) in accounts() {
        while query.balance(&account, None).await.is_err() {
            anyhow::ensure!(
                Instant::now() < deadline,
                "the read node does not know {account}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    tokio::spawn(workload::sdk_watcher(
        run.cluster.read_endpoint(),
        Arc::clone(&run.history),
        Arc::clone(&run.watchers_stop),
    ));
    tokio::spawn(workload::raw_watcher(
        run.cluster.read_endpoint(),
        Arc::clone(&run.history),
        Arc::clone(&run.watchers_stop),
    ));
    for (account, currency, is_issuer) in accounts() {
        if is_issuer {
            continue;
        }
        let funding = Transfer {
            transaction_id: wallet_client::new_transaction_id(),
            from: issuer(currency),
            to: account.clone(),
            amount: workload::format_minor(FUNDING_MINOR),
            currency: currency.to_owned(),
            ..Default::default()
        };
        let phase = workload::transfer(
            &run.wallet,
            &run.history,
            "setup",
            &funding,
            FUNDING_MINOR,
            Submission::New,
        )
        .await;
        anyhow::ensure!(phase == Phase::Ok, "funding {account}: {phase:?}");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #[test]
    fn parse_minor_reads_two_digit_amounts() {
        assert_eq!(super::parse_minor("123.45"), 12345);
        assert_eq!(super::parse_minor("0.05"), 5);
        assert_eq!(super::parse_minor("7"), 700);
        assert_eq!(super::parse_minor("7.5"), 750);
    }
}
