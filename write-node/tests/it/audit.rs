//! Audit: `walletctl replay` and `walletctl verify` on real data directories reproduce the
//! live state, and a flipped byte in a stored event is found and never served.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

use proto::v1::GetAccountRequest;
use serde_json::Value;
use tokio::sync::Mutex;
use tonic::Code;

use super::{History, id, open_and_fund, run_load};
use testkit::{Cluster, transfer_request};

/// `target/<profile>/walletctl`, built with the workspace (scripts/test builds it first).
pub(crate) fn walletctl() -> PathBuf {
    testkit::binary("walletctl")
}

/// Runs walletctl with `--json` on a data directory; returns its exit code and JSON line.
pub(crate) fn walletctl_json(args: &[&str], data_dir: &Path) -> (i32, Value) {
    let mut command = Command::new(walletctl());
    command
        .arg("--json")
        .args(args)
        .arg("--data-dir")
        .arg(data_dir);
    walletctl_output(command, args)
}

/// One partition of a data directory replayed to `index`, with every balance.
pub(crate) fn replay_partition_at(data_dir: &Path, partition: u64, index: u64) -> Value {
    let (partition, index) = (partition.to_string(), index.to_string());
    let args = [
        "replay",
        "--partition",
        &partition,
        "--to-index",
        &index,
        "--balances",
    ];
    let (code, value) = walletctl_json(&args, data_dir);
    assert_eq!(code, 0, "{value}");
    value["partitions"][0].clone()
}

/// The same against a live node's event stream.
fn walletctl_live(args: &[&str], endpoint: &str) -> (i32, Value) {
    let mut command = Command::new(walletctl());
    command
        .arg("--json")
        .args(args)
        .args(["--endpoint", endpoint]);
    walletctl_output(command, args)
}

/// Runs walletctl with `--json` against the write nodes `endpoints` (comma-separated).
pub(crate) fn walletctl_on_cluster(args: &[&str], endpoints: &str) -> (i32, Value) {
    let mut command = Command::new(walletctl());
    command
        .arg("--json")
        .args(["--endpoints", endpoints])
        .args(args);
    walletctl_output(command, args)
}

fn walletctl_output(mut command: Command, args: &[&str]) -> (i32, Value) {
    let output = command.output().expect("run walletctl");
    let stdout = String::from_utf8_lossy(&output.stdout);
    // A result's JSON line goes to stdout, an error's to stderr.
    let line = if stdout.trim().is_empty() {
        String::from_utf8_lossy(&output.stderr)
    } else {
        stdout.clone()
    };
    let value = serde_json::from_str(line.trim()).unwrap_or_else(|error| {
        panic!(
            "walletctl {args:?}: {error}\nstdout: {stdout}\nstderr: {}",
            String::from_utf8_lossy(&output.stderr)
        )
    });
    (output.status.code().unwrap_or(-1), value)
}

/// partition -> (applied index, state digest) as the live node reports it.
async fn live_digests(cluster: &Cluster, node: u64) -> Vec<(u64, String)> {
    let status = cluster.status(node).await.expect("status");
    status
        .partitions
        .iter()
        .map(|partition| (partition.applied_index, partition.state_digest.clone()))
        .collect()
}

pub(crate) fn replayed(value: &Value) -> Vec<(u64, String)> {
    value["partitions"]
        .as_array()
        .expect("partitions")
        .iter()
        .map(|partition| {
            (
                partition["index"].as_u64().expect("index"),
                partition["state_digest"]
                    .as_str()
                    .expect("digest")
                    .to_owned(),
            )
        })
        .collect()
}

/// A balance read during the run, with the log position (partition, index) it reflects.
struct Sample {
    account: String,
    partition: u64,
    index: u64,
    balance: String,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replay_and_verify_reproduce_the_live_state_and_find_a_flipped_byte() {
    let cluster = Arc::new(Cluster::start_with(
        3,
        &[
            "--snapshot-interval-entries",
            "15",
            "--log-retain-entries",
            "5",
        ],
    ));
    cluster.wait_leader().await;
    let accounts = open_and_fund(&cluster, 8).await;

    // Balances read while transfers (cross-partition ones included) run.
    let sampling = Arc::new(std::sync::atomic::AtomicBool::new(true));
    let sampler = {
        let (cluster, accounts, sampling) = (cluster.clone(), accounts.clone(), sampling.clone());
        tokio::spawn(async move {
            let mut samples = Vec::new();
            let mut turn = 0;
            while sampling.load(std::sync::atomic::Ordering::Relaxed) {
                let account = accounts[turn % accounts.len()].clone();
                turn += 1;
                let response = cluster
                    .on_leader(|mut client| {
                        let account_id = account.clone();
                        async move { client.get_account(GetAccountRequest { account_id }).await }
                    })
                    .await
                    .expect("read")
                    .into_inner();
                // "v1.<partition>.<index>"
                let parts: Vec<&str> = response.position.split('.').collect();
                samples.push(Sample {
                    account,
                    partition: parts[1].parse().expect("partition"),
                    index: parts[2].parse().expect("index"),
                    balance: response.account.expect("account").balance,
                });
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            samples
        })
    };
    let history = Arc::new(Mutex::new(History::default()));
    run_load(
        cluster.clone(),
        history.clone(),
        Arc::new(accounts.clone()),
        3,
        60,
    )
    .await;
    // A rejection and a retry belong in the log too.
    let overdraft = transfer_request(&id(), &accounts[0], &accounts[1], "1000000.00", "USD");
    let rejected = cluster
        .transfer(&overdraft)
        .await
        .expect_err("insufficient funds");
    assert_eq!(rejected.code(), Code::FailedPrecondition);
    let (retried, _) = history
        .lock()
        .await
        .acknowledged
        .values()
        .next()
        .cloned()
        .expect("one");
    cluster.transfer(&retried).await.expect("idempotent retry");
    sampling.store(false, std::sync::atomic::Ordering::Relaxed);
    let samples = sampler.await.expect("sampler");
    assert!(samples.len() >= 10, "{} samples", samples.len());

    cluster.wait_no_in_flight().await;
    cluster.wait_replicas_agree().await;
    let live = live_digests(&cluster, 1).await;
    // From each live node's event stream: the same digests, and the chain checks out.
    for node in [1, 2, 3] {
        let endpoint = cluster.endpoint(node);
        let (code, streamed) = walletctl_live(&["replay"], &endpoint);
        assert_eq!(code, 0, "{streamed}");
        assert_eq!(replayed(&streamed), live, "replay of node {node}'s stream");
        let (code, verified) = walletctl_live(&["verify"], &endpoint);
        assert_eq!(
            (code, &verified["ok"]),
            (0, &Value::Bool(true)),
            "{verified}"
        );
    }
    for node in [1, 2, 3] {
        cluster.kill(node);
    }

    for node in &cluster.nodes {
        // From genesis, on every replica: the live digest at the live index.
        let (code, genesis) = walletctl_json(&["replay"], &node.data_dir);
        assert_eq!(code, 0, "{genesis}");
        assert_eq!(
            replayed(&genesis),
            live,
            "replay from genesis, node {}",
            node.id
        );
        // verify: chain, conservation at every entry, each snapshot against the replay.
        let (code, verified) = walletctl_json(&["verify"], &node.data_dir);
        assert_eq!(code, 0, "{verified}");
        assert_eq!(verified["ok"], true);
        let mut snapshots = 0;
        for (partition, result) in verified["partitions"]
            .as_array()
            .expect("list")
            .iter()
            .enumerate()
        {
            for snapshot in result["snapshots"].as_array().expect("snapshots") {
                snapshots += 1;
                let from = format!("snapshot:{}", snapshot["index"]);
                let partition = partition.to_string();
                let (code, value) = walletctl_json(
                    &["replay", "--partition", &partition, "--from", &from],
                    &node.data_dir,
                );
                assert_eq!(code, 0, "{value}");
                let (index, digest) = &live[partition.parse::<usize>().expect("number")];
                assert_eq!(value["partitions"][0]["index"], *index);
                assert_eq!(
                    value["partitions"][0]["state_digest"],
                    digest.as_str(),
                    "{from}"
                );
            }
        }
        assert!(
            snapshots >= 4,
            "node {}: only {snapshots} snapshots",
            node.id
        );
    }

    // Replay to index i gives the balance a linearizable read returned at i.
    let data_dir = &cluster.nodes[1].data_dir;
    for sample in samples.iter().step_by((samples.len() / 12).max(1)) {
        let (partition, index) = (sample.partition, sample.index);
        let replayed = replay_partition_at(data_dir, partition, index);
        let balance = replayed["balances"]
            .as_array()
            .expect("balances")
            .iter()
            .find(|row| row["account_id"] == sample.account.as_str())
            .expect("account replayed")["balance"]
            .clone();
        assert_eq!(
            balance,
            sample.balance.as_str(),
            "{} at {partition}.{index}",
            sample.account
        );
    }

    // Flip one byte of one stored event: verify names the index; the node will not serve it.
    let node = &cluster.nodes[0];
    let (partition, index) = corrupt_one_event(&node.data_dir);
    let (code, value) = walletctl_json(&["verify"], &node.data_dir);
    assert_eq!(code, 1, "{value}");
    let broken = &value["partitions"][partition as usize];
    assert_eq!(broken["ok"], false, "{value}");
    assert_eq!(broken["broken_index"], index, "{value}");
    cluster.start_node(1);
    let error = subscribe_error(&cluster, 1, partition).await;
    assert_eq!(error.code(), Code::DataLoss, "{error:?}");
    assert!(
        error.message().contains(&format!("index {index} ")),
        "{error:?}"
    );
}

/// Flips one byte in the middle of a stored event block of the partition with the most
/// blocks; returns its partition and index.
fn corrupt_one_event(data_dir: &Path) -> (u32, u64) {
    use write_node::storage::{CF_EVENTS, Db, index_key};
    let db = Db::open(data_dir, 1, 8).expect("open");
    let (partition, blocks) = (0..8)
        .map(|partition| {
            let blocks: Vec<(u64, Box<[u8]>)> = db
                .scan_indexed(CF_EVENTS, partition, 1, u64::MAX)
                .map(|row| row.expect("row"))
                .collect();
            (partition, blocks)
        })
        .max_by_key(|(_, blocks)| blocks.len())
        .expect("partitions");
    let (index, value) = &blocks[blocks.len() / 2];
    let mut value = value.to_vec();
    let middle = value.len() - 5;
    value[middle] ^= 0x20;
    let mut batch = rocksdb::WriteBatch::default();
    batch.put_cf(db.cf(CF_EVENTS), index_key(partition, *index), value);
    db.write(batch, true).expect("write");
    (partition, *index)
}

async fn subscribe_error(cluster: &Cluster, node: u64, partition: u32) -> tonic::Status {
    use proto::v1::SubscribeRequest;
    use proto::v1::event_log_service_client::EventLogServiceClient;
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        let client = EventLogServiceClient::connect(cluster.endpoint(node)).await;
        if let Ok(mut client) = client {
            let request = SubscribeRequest {
                partition,
                from_index: 1,
            };
            if let Ok(response) = client.subscribe(request).await {
                let mut stream = response.into_inner();
                loop {
                    match tokio::time::timeout(Duration::from_secs(5), stream.message()).await {
                        Ok(Ok(Some(_))) => continue,
                        Ok(Err(status)) => return status,
                        other => panic!("the stream served past the corrupted block: {other:?}"),
                    }
                }
            }
        }
        assert!(
            std::time::Instant::now() < deadline,
            "node {node} never answered"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}
