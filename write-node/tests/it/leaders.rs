//! Leaders follow placement: each partition's preferred leader (`placement::Placement`)
//! campaigns first at start, and after a failover the node that took over hands leadership
//! back once the preferred one has caught up, under load, losing and repeating nothing, and
//! without an OUTCOME_UNKNOWN for the commands in the log at that moment.

use std::collections::BTreeSet;
use std::sync::Arc;

use testkit::Cluster;
use testkit::metrics::{scrape, sum};
use tokio::sync::Mutex;

use super::{History, check_history, open_and_fund, run_load};

const PARTITIONS: u32 = 6;

/// Placement's preferred leader of each partition of a 3-node cluster.
fn preferred_leaders() -> Vec<u64> {
    let nodes: BTreeSet<u64> = (1..=3).collect();
    placement::Placement::new(&nodes, PARTITIONS, 3)
        .expect("placement")
        .groups()
        .iter()
        .map(|group| group.leader)
        .collect()
}

/// Leaderships nodes 2 and 3 handed off so far.
fn handoffs(cluster: &Cluster) -> f64 {
    cluster.nodes[1..]
        .iter()
        .map(|node| {
            sum(
                &scrape(node.metrics_port),
                "wallet_leader_handoffs_total",
                &[],
            )
        })
        .sum()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn leadership_returns_to_the_preferred_leaders_after_a_failover() {
    let preferred = preferred_leaders();
    for node in 1..=3 {
        let led = preferred.iter().filter(|&&leader| leader == node).count();
        assert_eq!(led, 2, "placement spreads leaders: {preferred:?}");
    }
    let cluster = Arc::new(Cluster::start_partitioned(3, PARTITIONS, &[]));
    cluster
        .wait_leaders_until("leaders as placed", |leaders| leaders == preferred)
        .await;
    let accounts = Arc::new(open_and_fund(&cluster, 8).await);

    // Node 1 dies; nodes 2 and 3 take over its partitions.
    cluster.kill(1);
    cluster
        .wait_leaders_until("failover", |leaders| !leaders.contains(&1))
        .await;
    let handed_off_before = handoffs(&cluster);

    // Node 1 comes back under load: once it has caught up, the others hand its partitions
    // back, with transfers in flight. Every call is answered (run_load fails on any outcome
    // that is not a success or a definite rejection), and nothing is lost or applied twice.
    let history = Arc::new(Mutex::new(History::default()));
    cluster.retried();
    let load = tokio::spawn(run_load(
        cluster.clone(),
        history.clone(),
        accounts.clone(),
        3,
        1_000,
    ));
    cluster.start_node(1);
    cluster
        .wait_leaders_until("hand-back", |leaders| leaders == preferred)
        .await;
    assert!(!load.is_finished(), "the hand-back happened under load");
    load.await.expect("load");
    // A hand-off answers the commands that were in the log: callers were told where the
    // leader went (NOT_LEADER) or waited, and never heard that an outcome was unknown.
    let retried = cluster.retried();
    assert!(
        !retried.contains_key("OUTCOME_UNKNOWN"),
        "retried after a hand-off: {retried:?}"
    );
    let handed_off = handoffs(&cluster) - handed_off_before;
    // Node 1's two partitions, once each (again only if raft-rs gave a transfer up).
    assert!(handed_off >= 2.0, "{handed_off} hand-offs");
    cluster.wait_replicas_agree().await;
    let history = history.lock().await;
    assert!(
        history.acknowledged.len() > 100,
        "{} acknowledged",
        history.acknowledged.len()
    );
    check_history(&cluster, &history, &accounts).await;
}
