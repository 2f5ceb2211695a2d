//! "Money safety first", item 5: a follower far behind catches up through the log in frames
//! the gRPC limit accepts; entry times never go backwards across leaders.

use std::time::{Duration, Instant};

use proto::v1::TransferRequest;
use proto::v1::TransferResult;
use tokio_stream::StreamExt as _;

use testkit::{Cluster, transfer_request};

/// An account id of `len` bytes in partition `partition` (of the default 8).
fn account_in(partition: u32, prefix: &str, len: usize) -> String {
    (0..)
        .map(|n| {
            let tail = format!("-{n}");
            format!("{}{tail}", prefix.repeat(len - tail.len()))
        })
        .find(|id| ledger::partition_of(id, 8) == partition)
        .expect("some id hashes to the partition")
}

/// Every node's log from the given byte offsets on.
fn logs_since(cluster: &Cluster, offsets: &[usize]) -> Vec<(u64, String)> {
    cluster
        .nodes
        .iter()
        .zip(offsets)
        .map(|(node, &offset)| {
            let log = cluster.log(node.id);
            (node.id, log.get(offset..).unwrap_or_default().to_owned())
        })
        .collect()
}

fn log_sizes(cluster: &Cluster) -> Vec<usize> {
    cluster
        .nodes
        .iter()
        .map(|node| cluster.log(node.id).len())
        .collect()
}

/// Submits `requests` over one SubmitTransfers stream to `node`; returns the results.
async fn submit(
    cluster: &Cluster,
    node: u64,
    requests: Vec<TransferRequest>,
) -> Vec<TransferResult> {
    let mut client = cluster.wallet(node).await;
    let count = requests.len();
    let mut results = client
        .submit_transfers(tokio_stream::iter(requests))
        .await
        .expect("SubmitTransfers")
        .into_inner();
    let mut out = Vec::with_capacity(count);
    while let Some(result) = results.next().await {
        out.push(result.expect("result"));
    }
    assert_eq!(out.len(), count, "a result per transfer");
    out
}

/// raft-rs merged the appends of one round to a follower into one message (`batch_append`)
/// and frames were capped by message count only: a follower coming back more than the
/// 16 MiB gRPC message limit behind got one oversized frame, the stream failed with
/// OUT_OF_RANGE, reconnected, and failed again. With appends bounded by bytes
/// (`max_size_per_msg`, no merging) and frames bounded by bytes, it catches up through the
/// log with no stream failure.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn follower_more_than_a_grpc_message_behind_catches_up_through_the_log() {
    /// Above the peer stream's gRPC message limit (16 MiB) of raft entries in ONE partition.
    const LOG_BYTES_MIN: usize = 17 * 1024 * 1024;
    const ID_BYTES: usize = 256;
    // No snapshot during the test: the follower must catch up through the log.
    let cluster = Cluster::start_with(
        3,
        &[
            "--snapshot-interval-entries",
            "10000000",
            "--snapshot-interval-events",
            "100000000",
        ],
    );
    let leaders = cluster.wait_leaders().await;
    let leader = leaders[0];
    let issuer = account_in(0, "i", ID_BYTES);
    let holder = account_in(0, "h", ID_BYTES);
    cluster
        .open_account(&issuer, "USD", true)
        .await
        .expect("open issuer");
    cluster
        .open_account(&holder, "USD", false)
        .await
        .expect("open holder");
    let follower = (1..=3).find(|&node| node != leader).expect("a follower");
    cluster.wait_replicas_agree().await;
    cluster.kill(follower);

    // Each transfer puts both 256-byte ids (and more) into partition 0's log.
    let transfers = LOG_BYTES_MIN / (2 * ID_BYTES) + 1;
    let streams = 4;
    let started = Instant::now();
    let mut tasks = Vec::new();
    let cluster = std::sync::Arc::new(cluster);
    for stream in 0..streams {
        let requests: Vec<TransferRequest> = (stream..transfers)
            .step_by(streams)
            .map(|_| {
                transfer_request(
                    &uuid::Uuid::new_v4().to_string(),
                    &issuer,
                    &holder,
                    "0.01",
                    "USD",
                )
            })
            .collect();
        let cluster = cluster.clone();
        tasks.push(tokio::spawn(async move {
            submit(&cluster, leader, requests).await
        }));
    }
    let mut unavailable = Vec::new();
    for task in tasks {
        for result in task.await.expect("stream") {
            match result.status.as_str() {
                "success" => {}
                "unavailable" => unavailable.push(result.transaction_id),
                other => panic!(
                    "transfer {}: {other} {:?}",
                    result.transaction_id, result.error
                ),
            }
        }
    }
    assert!(
        unavailable.is_empty(),
        "{} transfers without an outcome: the leader should not have changed",
        unavailable.len()
    );
    eprintln!(
        "{transfers} transfers ({} MiB of ids) in {:?}",
        transfers * 2 * ID_BYTES / (1024 * 1024),
        started.elapsed()
    );
    let leader_status = cluster.status(leader).await.expect("leader status");
    assert_eq!(
        leader_status.partitions[0].snapshot_index, 0,
        "a snapshot was taken: the test would not exercise catch-up through the log"
    );

    cluster.start_node(follower);
    // Listening again: from here on no peer stream may fail.
    let deadline = Instant::now() + Duration::from_secs(20);
    while cluster.status(follower).await.is_err() {
        assert!(Instant::now() < deadline, "the follower did not come back");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let offsets = log_sizes(&cluster);
    let caught_up_started = Instant::now();
    let target = cluster.status(leader).await.expect("status").partitions[0].applied_index;
    loop {
        if let Ok(status) = cluster.status(follower).await
            && status.partitions[0].applied_index >= target
        {
            break;
        }
        assert!(
            caught_up_started.elapsed() < Duration::from_secs(30),
            "the follower did not catch up in 30 s:\n{}",
            cluster.logs()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    eprintln!("caught up in {:?}", caught_up_started.elapsed());
    cluster.wait_replicas_agree().await;

    for (node, log) in logs_since(&cluster, &offsets) {
        let failures: Vec<&str> = log
            .lines()
            .filter(|line| {
                line.contains("peer stream failed")
                    || line.contains("OutOfRange")
                    || line.contains("above the frame budget")
            })
            .collect();
        assert!(
            failures.is_empty(),
            "node {node}: peer stream failures during catch-up:\n{}",
            failures.join("\n")
        );
    }
    let follower_log = cluster.log(follower);
    assert!(
        !follower_log.contains("snapshot installed"),
        "the follower caught up by snapshot, not through the log"
    );
    let holder_on_follower = cluster.account_on(follower, &holder).await.expect("read");
    assert_eq!(holder_on_follower.balance_minor, transfers as i64);
}

/// (index, leader timestamp) of every event block of `partition` on `node`, up to where the
/// stream goes quiet.
#[cfg(feature = "failpoints")]
async fn entry_times(cluster: &Cluster, node: u64, partition: u32) -> Vec<(u64, u64)> {
    let mut stream = cluster.subscribe(node, partition).await;
    let mut times = Vec::new();
    while let Ok(Some(block)) = tokio::time::timeout(Duration::from_secs(1), stream.next())
        .await
        .map(|item| item.transpose().expect("event log"))
    {
        if !block.events.is_empty() {
            times.push((block.index, block.timestamp_ms));
        }
    }
    times
}

/// Opens `count` more accounts in `partition`: one entry each.
#[cfg(feature = "failpoints")]
async fn open_accounts(cluster: &Cluster, partition: u32, opened: &mut usize, count: usize) {
    for _ in 0..count {
        let account = account_in(partition, &format!("t{opened}"), 12);
        *opened += 1;
        cluster
            .open_account(&account, "USD", false)
            .await
            .expect("open");
    }
}

/// A new leader stamped entries with its own clock (and a restarted one started from 0), so
/// a leader whose clock is behind wrote times before those already in the log. Nodes 2 and 3
/// run an hour behind (`clock::offset_ms`): after node 1 (on time) led partition `p`, every
/// leader is skewed, also after a restart of both; entry times must still never decrease.
#[cfg(feature = "failpoints")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn entry_times_never_go_backwards_across_leaders_with_skewed_clocks() {
    const SKEWED: &[(&str, &str)] = &[("FAILPOINTS", "clock::offset_ms=return(-3600000)")];
    let cluster = Cluster::create(3);
    cluster.start_node(1);
    cluster.start_node_with_env(2, SKEWED);
    cluster.start_node_with_env(3, SKEWED);
    let leaders = cluster.wait_leaders().await;
    // Node 1 prefers partitions 0, 3 and 6 and campaigns for them at start.
    let partition = leaders
        .iter()
        .position(|&leader| leader == 1)
        .expect("node 1 leads a partition") as u32;
    let mut opened = 0;
    open_accounts(&cluster, partition, &mut opened, 3).await;
    // Leadership to a skewed node.
    cluster.kill(1);
    let leaders = cluster.wait_leaders().await;
    assert_ne!(leaders[partition as usize], 1);
    open_accounts(&cluster, partition, &mut opened, 3).await;
    // Both skewed nodes restart: the new leader knows the last time only from its storage.
    cluster.kill(2);
    cluster.kill(3);
    cluster.start_node_with_env(2, SKEWED);
    cluster.start_node_with_env(3, SKEWED);
    cluster.wait_leaders().await;
    open_accounts(&cluster, partition, &mut opened, 3).await;
    cluster.wait_replicas_agree().await;

    for node in [2, 3] {
        let times = entry_times(&cluster, node, partition).await;
        assert_eq!(times.len(), 9, "node {node}: one block per opened account");
        for pair in times.windows(2) {
            assert!(
                pair[0].1 <= pair[1].1,
                "node {node}, partition {partition}: entry {} stamped {} after entry {} \
                 stamped {}: {times:?}",
                pair[1].0,
                pair[1].1,
                pair[0].0,
                pair[0].1
            );
        }
    }
}
