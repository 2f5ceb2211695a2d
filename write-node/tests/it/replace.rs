//! A write node whose data directory was lost comes back empty under its old id. Raft's
//! safety needs every voter to remember what it acknowledged, so its peers refuse its raft
//! frames (`NODE_DATA_LOST`) while a partition counts it as a replica; `walletctl node drain`
//! moves its replicas to the other nodes under load (the groups' other voters carry them);
//! it is then taken as a new, empty node, and `walletctl cluster rebalance` gives it its
//! share again through the learner path. Nothing acknowledged is lost or applied twice.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use testkit::Cluster;
use testkit::metrics::{scrape, sum};
use tokio::sync::Mutex;

use super::moves::{run_json, wait_everyone_sees, walletctl};
use super::{History, check_history, open_and_fund, run_load};

const NODES: u64 = 4;
const PARTITIONS: u32 = 4;
const LOST: u64 = 4;

fn counter(cluster: &Cluster, node: u64, metric: &str) -> f64 {
    sum(
        &scrape(cluster.nodes[node as usize - 1].metrics_port),
        metric,
        &[],
    )
}

/// The partitions whose groups name `node`, as every node but `node` itself shows them.
async fn named_by_peers(cluster: &Cluster, node: u64) -> BTreeSet<u32> {
    let mut named = BTreeSet::new();
    for peer in (1..=NODES).filter(|&peer| peer != node) {
        let status = cluster.status(peer).await.expect("status");
        for partition in status.partitions {
            if partition.replica_ids.contains(&node) || partition.learner_ids.contains(&node) {
                named.insert(partition.partition);
            }
        }
    }
    named
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_whose_data_was_lost_is_refused_until_drained_then_rejoins_empty() {
    let cluster = Arc::new(Cluster::start_partitioned(
        NODES,
        PARTITIONS,
        &["--replicas", "3"],
    ));
    cluster.wait_leaders().await;
    let accounts = open_and_fund(&cluster, 12).await;
    let held = named_by_peers(&cluster, LOST).await;
    assert!(!held.is_empty(), "node {LOST} holds replicas");
    let history = Arc::new(Mutex::new(History::default()));
    let load = tokio::spawn(run_load(
        cluster.clone(),
        history.clone(),
        Arc::new(accounts.clone()),
        3,
        250,
    ));
    let deadline = Instant::now() + Duration::from_secs(30);
    while history.lock().await.acknowledged.len() < 30 {
        assert!(Instant::now() < deadline, "the load never got going");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }

    // The disk is lost: the node starts again under its id, empty.
    cluster.kill(LOST);
    std::fs::remove_dir_all(&cluster.nodes[LOST as usize - 1].data_dir).expect("rm data dir");
    cluster.start_node(LOST);
    let refused = || {
        (1..=NODES)
            .filter(|&peer| peer != LOST)
            .map(|peer| counter(&cluster, peer, "wallet_peer_frames_refused_total"))
            .sum::<f64>()
    };
    let deadline = Instant::now() + Duration::from_secs(30);
    while refused() < 1.0 {
        assert!(
            Instant::now() < deadline,
            "no peer refused the node that lost its data\n{}",
            cluster.logs()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(
        cluster.log(LOST).contains("NODE_DATA_LOST")
            || cluster.log(LOST).contains("another data directory"),
        "the node that lost its data is told why it is refused\n{}",
        cluster.log(LOST)
    );

    load.await.expect("load");
    // Drained while three clients transfer: every replica it held moves to the other nodes.
    let load = tokio::spawn(run_load(
        cluster.clone(),
        history.clone(),
        Arc::new(accounts.clone()),
        3,
        600,
    ));
    let before = history.lock().await.acknowledged.len();
    let moved: BTreeSet<u32> = moves(&cluster, &["node", "drain", &LOST.to_string()])
        .iter()
        .map(|step| {
            assert_eq!(step["from"].as_u64(), Some(LOST), "{step}");
            assert_ne!(step["to"].as_u64(), Some(LOST), "{step}");
            step["partition"].as_u64().expect("partition") as u32
        })
        .collect();
    assert_eq!(moved, held, "each replica it held moved once");
    let during = history.lock().await.acknowledged.len() - before;
    assert!(during > 0, "no transfer was acknowledged during the drain");
    eprintln!("{during} transfers acknowledged during the drain of node {LOST}");
    load.await.expect("load");
    assert!(named_by_peers(&cluster, LOST).await.is_empty());

    // No membership counts it any more: its peers take it as a new node, and it deletes the
    // replicas it made up at its empty start once it learns the groups moved on.
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let status = cluster
            .status(LOST)
            .await
            .unwrap_or_else(|status| panic!("node {LOST}: {status}\n{}", cluster.log(LOST)));
        let holds: Vec<u32> = status
            .partitions
            .iter()
            .filter(|partition| partition.role != "none")
            .map(|partition| partition.partition)
            .collect();
        if holds.is_empty() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "node {LOST} still holds {holds:?}\n{}",
            cluster.logs()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    cluster.wait_no_in_flight().await;
    cluster.wait_replicas_agree().await;
    {
        let history = history.lock().await;
        check_history(&cluster, &history, &accounts).await;
    }

    // A rebalance that leaves it out finds the others even (four replicas each): nothing
    // moves. Back through the learner path, as to any new node: a rebalance over every node
    // gives it its share again (it holds none: three move to it).
    let rebalance = ["cluster", "rebalance"];
    let lost = LOST.to_string();
    let excluding = [&rebalance[..], &["--exclude", &lost]].concat();
    assert!(moves(&cluster, &excluding).is_empty());
    let back = moves(&cluster, &rebalance);
    assert_eq!(back.len(), 3, "{back:?}");
    for step in back {
        assert_eq!(step["to"].as_u64(), Some(LOST), "{step}");
        let partition = step["partition"].as_u64().expect("partition") as u32;
        let voters = named_voters(&cluster, partition).await;
        assert!(voters.contains(&LOST), "partition {partition}: {voters:?}");
        wait_everyone_sees(&cluster, partition, &voters).await;
    }
    // (Voters now: each leader promoted it once it had caught up, so its frames are taken.)
    assert_eq!(
        counter(&cluster, LOST, "wallet_replicas_created_total"),
        3.0
    );
    cluster.wait_replicas_agree().await;
    let history = history.lock().await;
    check_history(&cluster, &history, &accounts).await;
}

/// `walletctl ARGS` (a drain or a rebalance), to its end: the moves it made.
fn moves(cluster: &Cluster, args: &[&str]) -> Vec<serde_json::Value> {
    let mut command = walletctl(cluster);
    command.args(args).args(["--timeout-secs", "240"]);
    let answer = run_json(cluster, command);
    answer["moves"].as_array().expect("moves").clone()
}

/// The voters of `partition` as node 1 shows them.
async fn named_voters(cluster: &Cluster, partition: u32) -> BTreeSet<u64> {
    cluster.status(1).await.expect("status").partitions[partition as usize]
        .replica_ids
        .iter()
        .copied()
        .collect()
}
