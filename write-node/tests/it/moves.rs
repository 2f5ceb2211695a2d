//! Replica moves: a partition's replica goes from one write node to another under load, by
//! raft membership changes (learner, snapshot catch-up, joint consensus, leave), driven by
//! `walletctl partition move`. Nothing acknowledged is lost or applied twice, the new replica
//! agrees with the others, the old node deletes its copy, and both keep it that way across a
//! restart.

use std::collections::BTreeSet;
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use testkit::Cluster;
use testkit::metrics::{scrape, sum};
use tokio::sync::Mutex;

use super::{History, check_history, open_and_fund, run_load};

const NODES: u64 = 4;
const PARTITIONS: u32 = 4;
const MOVED: u32 = 0;

/// Waits until every node reports `partition` on `voters` with no learner, held by `voters`
/// and by nobody else.
pub(super) async fn wait_everyone_sees(cluster: &Cluster, partition: u32, voters: &BTreeSet<u64>) {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let mut views = Vec::new();
        for node in 1..=cluster.nodes.len() as u64 {
            let view = cluster.status(node).await.ok().map(|status| {
                let partition = &status.partitions[partition as usize];
                (
                    node,
                    partition.replica_ids.clone(),
                    partition.learner_ids.clone(),
                    partition.role.clone(),
                )
            });
            views.push(view);
        }
        let settled = views.iter().all(|view| {
            view.as_ref()
                .is_some_and(|(node, replicas, learners, role)| {
                    replicas.iter().copied().collect::<BTreeSet<_>>() == *voters
                        && learners.is_empty()
                        && (role == "none") != voters.contains(node)
                })
        });
        if settled {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "the nodes do not agree on partition {partition}'s replicas {voters:?}: {views:?}\n{}",
            cluster.logs()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// A four-node cluster with R = 3 (started with `node_args` too), funded accounts, and the
/// move to make: partition `MOVED`'s replica on its leader (the move hands leadership over
/// first) to the node that holds none.
struct Setup {
    cluster: Arc<Cluster>,
    accounts: Vec<String>,
    from: u64,
    to: u64,
    /// The partition's voters once moved.
    moved: BTreeSet<u64>,
}

async fn setup(node_args: &[&str]) -> Setup {
    let mut args = vec!["--replicas", "3"];
    args.extend_from_slice(node_args);
    let cluster = Arc::new(Cluster::start_partitioned(NODES, PARTITIONS, &args));
    let leaders = cluster.wait_leaders().await;
    let accounts = open_and_fund(&cluster, 12).await;
    let placed: BTreeSet<u64> = cluster.status(1).await.expect("status").partitions[MOVED as usize]
        .replica_ids
        .iter()
        .copied()
        .collect();
    let from = leaders[MOVED as usize];
    let to = (1..=NODES)
        .find(|node| !placed.contains(node))
        .expect("one node of four holds no replica");
    let mut moved = placed;
    moved.remove(&from);
    moved.insert(to);
    Setup {
        cluster,
        accounts,
        from,
        to,
        moved,
    }
}

/// `walletctl` with `--json` and every node as an endpoint.
pub(super) fn walletctl(cluster: &Cluster) -> Command {
    let endpoints: Vec<String> = (1..=cluster.nodes.len() as u64)
        .map(|node| cluster.endpoint(node))
        .collect();
    let mut command = Command::new(testkit::binary("walletctl"));
    command.args(["--json", "--endpoints", &endpoints.join(",")]);
    command
}

/// `walletctl partition move PARTITION --from FROM --to TO` against every node.
fn move_command(cluster: &Cluster, partition: u32, from: u64, to: u64) -> Command {
    let mut command = walletctl(cluster);
    command
        .args(["partition", "move", &partition.to_string()])
        .args(["--from", &from.to_string(), "--to", &to.to_string()])
        .args(["--timeout-secs", "120"]);
    command
}

/// Runs a walletctl `command` to its end, which must succeed; returns its JSON answer.
pub(super) fn run_json(cluster: &Cluster, mut command: Command) -> serde_json::Value {
    let output = command.output().expect("run walletctl");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{command:?}: {stdout}\n{}\n{}",
        String::from_utf8_lossy(&output.stderr),
        cluster.logs()
    );
    serde_json::from_str(stdout.trim()).expect("json")
}

/// Runs the move to its end; returns the voters walletctl printed.
fn run_move(cluster: &Cluster, partition: u32, from: u64, to: u64) -> BTreeSet<u64> {
    let answer = run_json(cluster, move_command(cluster, partition, from, to));
    answer["replica_ids"]
        .as_array()
        .expect("replica_ids")
        .iter()
        .map(|id| id.as_u64().expect("id"))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replica_moves_to_another_node_under_load_and_nothing_is_lost() {
    // Frequent snapshots and a short log: the new replica starts from a snapshot, which must
    // carry the membership that names it.
    let args = [
        "--snapshot-interval-entries",
        "40",
        "--log-retain-entries",
        "8",
    ];
    let Setup {
        cluster,
        accounts,
        from,
        to,
        moved,
    } = setup(&args).await;
    let history = Arc::new(Mutex::new(History::default()));
    let load = tokio::spawn(run_load(
        cluster.clone(),
        history.clone(),
        Arc::new(accounts.clone()),
        3,
        150,
    ));
    let deadline = Instant::now() + Duration::from_secs(30);
    while history.lock().await.acknowledged.len() < 30 {
        assert!(Instant::now() < deadline, "the load never got going");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    // The leader has compacted its log: the new replica cannot start from the log.
    while cluster.status(from).await.expect("status").partitions[MOVED as usize].log_first_index
        <= 1
    {
        assert!(Instant::now() < deadline, "the log was never compacted");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let preferred_before =
        cluster.status(from).await.expect("status").partitions[MOVED as usize].preferred_leader_id;
    let started = Instant::now();
    let answered = run_move(&cluster, MOVED, from, to);
    assert_eq!(answered, moved);
    eprintln!(
        "partition {MOVED} moved from node {from} to node {to} in {:?} under load",
        started.elapsed()
    );
    load.await.expect("load");

    wait_everyone_sees(&cluster, MOVED, &moved).await;
    // The new replica started from a snapshot (the log it needed was compacted); the old
    // node deleted its copy. (Counters of this run of each node: neither restarted yet.)
    let counter = |node: u64, metric: &str| {
        let port = cluster.nodes[node as usize - 1].metrics_port;
        sum(&scrape(port), metric, &[])
    };
    assert_eq!(counter(to, "wallet_replicas_created_total"), 1.0);
    assert!(counter(to, "wallet_snapshots_installed_total") >= 1.0);
    assert_eq!(counter(from, "wallet_replicas_deleted_total"), 1.0);
    let others = (1..=NODES).filter(|node| ![from, to].contains(node));
    for node in others {
        assert_eq!(
            counter(node, "wallet_replicas_created_total"),
            0.0,
            "node {node}"
        );
        assert_eq!(
            counter(node, "wallet_replicas_deleted_total"),
            0.0,
            "node {node}"
        );
    }
    cluster.wait_no_in_flight().await;
    let (applied, digests) = cluster.wait_replicas_agree().await;
    {
        let history = history.lock().await;
        check_history(&cluster, &history, &accounts).await;
        eprintln!(
            "{} acknowledged, {} rejected; replicas agree at {applied} ({digests})",
            history.acknowledged.len(),
            history.rejected
        );
    }

    // After a restart the old node still holds nothing of the partition (its copy was
    // deleted) and the new one still holds it; every replica names the same preferred
    // leader, derived from the voters: the new node where the old one was placement's.
    cluster.kill(from);
    cluster.kill(to);
    cluster.start_node(from);
    cluster.start_node(to);
    cluster.wait_leaders().await;
    wait_everyone_sees(&cluster, MOVED, &moved).await;
    let preferred = if preferred_before == from {
        to
    } else {
        preferred_before
    };
    for &node in &moved {
        let status = cluster.status(node).await.expect("status");
        assert_eq!(
            status.partitions[MOVED as usize].preferred_leader_id, preferred,
            "node {node}"
        );
    }
    cluster.wait_replicas_agree().await;
    let history = history.lock().await;
    check_history(&cluster, &history, &accounts).await;

    // And back: the node the group removed holds a replica again (a new one, created by a
    // leader whose log reaches past the removal), and everything still agrees.
    let placed: BTreeSet<u64> = moved
        .iter()
        .copied()
        .filter(|&node| node != to)
        .chain([from])
        .collect();
    assert_eq!(run_move(&cluster, MOVED, to, from), placed);
    wait_everyone_sees(&cluster, MOVED, &placed).await;
    cluster.wait_replicas_agree().await;
    check_history(&cluster, &history, &accounts).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_move_goes_on_after_its_learner_and_its_leader_are_killed() {
    let Setup {
        cluster,
        accounts,
        from,
        to,
        moved,
    } = setup(&[]).await;
    let history = Arc::new(Mutex::new(History::default()));
    let load = tokio::spawn(run_load(
        cluster.clone(),
        history.clone(),
        Arc::new(accounts.clone()),
        3,
        200,
    ));
    let mut mover = move_command(&cluster, MOVED, from, to)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("run walletctl");

    // The learner is killed once it holds its new replica, and restarted: it resumes from
    // what it stored.
    let created = |node: u64| {
        let port = cluster.nodes[node as usize - 1].metrics_port;
        sum(&scrape(port), "wallet_replicas_created_total", &[])
    };
    let deadline = Instant::now() + Duration::from_secs(30);
    while created(to) < 1.0 {
        if mover.try_wait().expect("walletctl").is_some() {
            let output = mover.wait_with_output().expect("walletctl");
            panic!(
                "walletctl ended before the learner was created: {}\n{}",
                String::from_utf8_lossy(&output.stdout),
                String::from_utf8_lossy(&output.stderr)
            );
        }
        assert!(Instant::now() < deadline, "the learner was never created");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    cluster.kill(to);
    tokio::time::sleep(Duration::from_millis(300)).await;
    cluster.start_node(to);
    // Then the partition's leader (the move has not handed leadership over before the
    // learner caught up) is killed while the learner restarts; the move goes on under the
    // next leader, planned again from the membership the group applied.
    cluster.kill(from);
    tokio::time::sleep(Duration::from_millis(300)).await;
    cluster.start_node(from);

    let output = mover.wait_with_output().expect("walletctl");
    assert!(
        output.status.success(),
        "walletctl partition move: {}\n{}\n{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr),
        cluster.logs()
    );
    load.await.expect("load");
    wait_everyone_sees(&cluster, MOVED, &moved).await;
    cluster.wait_no_in_flight().await;
    cluster.wait_replicas_agree().await;
    let history = history.lock().await;
    check_history(&cluster, &history, &accounts).await;
}
