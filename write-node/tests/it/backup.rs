//! Backup and restore: `walletctl backup` of a cluster under load, `walletctl verify
//! --backup`, `walletctl restore` into a new cluster on other ports, which starts at the
//! backup's state (digests, balances, idempotency records) and goes on taking transfers.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;
use tokio::sync::Mutex;
use tonic::Code;

use super::audit::{replay_partition_at, replayed, walletctl_json};
use super::{History, check_history, id, open_and_fund, run_load};
use testkit::{Cluster, transfer_request};

const PARTITIONS: u32 = 4;

fn walletctl(args: &[&str]) -> Output {
    Command::new(testkit::binary("walletctl"))
        .arg("--json")
        .args(args)
        .output()
        .expect("run walletctl")
}

/// Runs walletctl; its exit code and the JSON it printed (stdout, else stderr).
fn walletctl_value(args: &[&str]) -> (i32, Value) {
    let output = walletctl(args);
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    let text = if stdout.trim().is_empty() {
        stderr.trim()
    } else {
        stdout.trim()
    };
    let value = serde_json::from_str(text)
        .unwrap_or_else(|error| panic!("walletctl {args:?}: {error}\n{stdout}\n{stderr}"));
    (output.status.code().unwrap_or(-1), value)
}

fn path(path: &Path) -> &str {
    path.to_str().expect("UTF-8 path")
}

/// `walletctl backup` of `cluster` into `out`, which must succeed.
fn take_backup(cluster: &Cluster, out: &Path) -> Value {
    let endpoints = cluster.write_nodes();
    let (code, value) = walletctl_value(&["--endpoints", &endpoints, "backup", "--out", path(out)]);
    assert_eq!(code, 0, "{value}");
    value["manifest"].clone()
}

/// partition -> (index, state digest) from a manifest.
fn manifest_positions(manifest: &Value) -> Vec<(u64, String)> {
    manifest["partitions"]
        .as_array()
        .expect("partitions")
        .iter()
        .map(|entry| {
            let digest = entry["state_digest"].as_str().expect("digest").to_owned();
            (entry["index"].as_u64().expect("index"), digest)
        })
        .collect()
}

/// Every partition of a data directory replayed to the given indexes, with balances.
fn replay_at(data_dir: &Path, positions: &[(u64, String)]) -> Vec<Value> {
    positions
        .iter()
        .enumerate()
        .map(|(partition, (index, _))| replay_partition_at(data_dir, partition as u64, *index))
        .collect()
}

/// What of a replayed partition must survive a restore: position, digest, balances, totals.
fn comparable(replayed: &[Value]) -> Vec<Value> {
    replayed
        .iter()
        .map(|partition| {
            serde_json::json!([
                partition["index"],
                partition["state_digest"],
                partition["chain_head"],
                partition["balances"],
                partition["totals"],
                partition["accounts"],
                partition["transfers"],
            ])
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backup_under_load_restores_into_a_fresh_cluster_at_the_backed_up_positions() {
    let node_args = [
        "--snapshot-interval-entries",
        "20",
        "--log-retain-entries",
        "5",
    ];
    let source = Arc::new(Cluster::start_partitioned(3, PARTITIONS, &node_args));
    source.wait_leaders().await;
    let accounts = open_and_fund(&source, 8).await;
    // Outcomes recorded before the backup: a retry on the restored cluster must get them.
    let completed = transfer_request(&id(), &accounts[0], &accounts[1], "1.25", "USD");
    let token = source
        .transfer(&completed)
        .await
        .expect("transfer")
        .consistency_token;
    let overdraft = transfer_request(&id(), &accounts[2], &accounts[3], "5000.00", "USD");
    let refused = source.transfer(&overdraft).await.expect_err("overdraft");
    assert_eq!(refused.code(), Code::FailedPrecondition);

    let history = Arc::new(Mutex::new(History::default()));
    let load = tokio::spawn(run_load(
        source.clone(),
        history.clone(),
        Arc::new(accounts.clone()),
        3,
        500,
    ));
    tokio::time::sleep(Duration::from_millis(200)).await;
    let acknowledged_before = history.lock().await.acknowledged.len();
    let work = tempfile::tempdir().expect("temp dir");
    let backup_dir = work.path().join("backup");
    let manifest = {
        let (source, backup_dir) = (source.clone(), backup_dir.clone());
        tokio::task::spawn_blocking(move || take_backup(&source, &backup_dir))
            .await
            .expect("backup")
    };
    let acknowledged_after = history.lock().await.acknowledged.len();
    assert!(
        acknowledged_before > 0 && acknowledged_after > acknowledged_before,
        "transfers completed during the backup: {acknowledged_before} then {acknowledged_after}"
    );
    load.await.expect("load");
    let mut history = history.lock().await;
    history.acknowledged.insert(
        completed.transaction_id.clone(),
        (completed.clone(), token.clone()),
    );
    check_source_balances(&source, &history, &accounts).await;

    let (code, verified) = walletctl_value(&["verify", "--backup", path(&backup_dir)]);
    assert_eq!(
        (code, &verified["ok"]),
        (0, &Value::Bool(true)),
        "{verified}"
    );
    let positions = manifest_positions(&manifest);
    assert_eq!(positions.len(), PARTITIONS as usize);

    // The source's own history at the backed-up positions: what the restore must reproduce.
    source.wait_no_in_flight().await;
    source.wait_replicas_agree().await;
    let source_at_backup = replay_at(&source.nodes[0].data_dir, &positions);
    assert_eq!(
        replayed(&serde_json::json!({ "partitions": source_at_backup })),
        positions,
        "the manifest's digests are the source's at the backed-up indexes"
    );

    // Restore into a new cluster on other ports.
    let restored = Cluster::create_with(3, &["--partitions", "4"]);
    let (code, value) = walletctl_value(&[
        "restore",
        "--backup",
        path(&backup_dir),
        "--out",
        path(restored.dir.path()),
        "--nodes",
        "3",
    ]);
    assert_eq!(code, 0, "{value}");
    for node in &restored.nodes {
        // Before any node starts: every partition at its backed-up index, same digest,
        // balances and totals as the source had there.
        assert_eq!(
            comparable(&replay_at(&node.data_dir, &positions)),
            comparable(&source_at_backup),
            "restored node {}",
            node.id
        );
    }
    for node in 1..=3 {
        restored.start_node(node);
    }
    restored.wait_leaders().await;
    check_restored_digests(&restored, &positions).await;

    // The restored cluster remembers outcomes from before the backup...
    let retried = restored.transfer(&completed).await.expect("retry");
    assert_eq!(retried.consistency_token, token, "the original outcome");
    let refused_again = restored.transfer(&overdraft).await.expect_err("retry");
    assert_eq!(refused_again.code(), Code::FailedPrecondition);
    // ... and takes new transfers.
    let before = restored
        .account(&accounts[4])
        .await
        .expect("account")
        .balance_minor;
    let new = transfer_request(&id(), &accounts[4], &accounts[5], "0.07", "USD");
    restored.transfer(&new).await.expect("new transfer");
    let after = restored
        .account(&accounts[4])
        .await
        .expect("account")
        .balance_minor;
    assert_eq!(before - after, 7);
    restored.wait_no_in_flight().await;
    restored.wait_replicas_agree().await;
    check_conserved(&restored, &accounts).await;

    // Both clusters' logs verify end to end (chain, conservation, snapshots).
    restored.stop(1);
    source.stop(1);
    for data_dir in [&restored.nodes[0].data_dir, &source.nodes[0].data_dir] {
        let (code, verified) = walletctl_json(&["verify"], data_dir);
        assert_eq!(
            (code, &verified["ok"]),
            (0, &Value::Bool(true)),
            "{verified}"
        );
    }
}

/// The load's acknowledged history holds on the source (the backup disturbed nothing).
async fn check_source_balances(source: &Cluster, history: &History, accounts: &[String]) {
    source.wait_no_in_flight().await;
    // `check_history` starts every account at the funding; the one transfer before the
    // load is in `history` like the load's.
    check_history(source, history, accounts).await;
}

/// Right after start, a restored partition with nothing left to settle reports the
/// manifest's digest; every one does once replayed to the backed-up index from its stream.
async fn check_restored_digests(restored: &Cluster, positions: &[(u64, String)]) {
    let status = restored.status(1).await.expect("status");
    for (partition, (index, digest)) in positions.iter().enumerate() {
        let live = &status.partitions[partition];
        assert!(
            live.applied_index >= *index,
            "partition {partition}: {live:?}"
        );
        let (partition_arg, index_arg) = (partition.to_string(), index.to_string());
        let output = walletctl(&[
            "replay",
            "--endpoint",
            &restored.endpoint(1),
            "--partition",
            &partition_arg,
            "--to-index",
            &index_arg,
        ]);
        let value: Value = serde_json::from_slice(&output.stdout).expect("replay JSON");
        assert_eq!(
            replayed(&value),
            vec![(*index, digest.clone())],
            "partition {partition} replayed from the restored node's stream"
        );
    }
}

/// Every USD balance of the restored cluster sums to zero, with nothing in flight.
async fn check_conserved(cluster: &Cluster, accounts: &[String]) {
    let mut total = cluster
        .account("issuer")
        .await
        .expect("issuer")
        .balance_minor;
    for account in accounts {
        total += cluster
            .account(account)
            .await
            .expect("account")
            .balance_minor;
    }
    assert_eq!(
        total, 0,
        "USD is not conserved across the restored partitions"
    );
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).expect("create");
    for entry in std::fs::read_dir(from).expect("read dir") {
        let entry = entry.expect("entry");
        std::fs::copy(entry.path(), to.join(entry.file_name())).expect("copy");
    }
}

/// A copy of the backup with one partition file changed by `damage`.
fn damaged_copy(backup: &Path, name: &str, damage: impl FnOnce(&Path)) -> PathBuf {
    let copy = backup.with_file_name(name);
    copy_dir(backup, &copy);
    damage(&copy.join("partition-00001.blocks"));
    copy
}

/// verify's verdict on a backup: exit code and the problem of partition 1.
fn verify_backup(backup: &Path) -> (i32, String) {
    let (code, value) = walletctl_value(&["verify", "--backup", path(backup)]);
    let problem = value["partitions"][1]["problem"]
        .as_str()
        .map_or_else(|| value.to_string(), str::to_owned);
    (code, problem)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backup_damage_is_found_by_verify_and_refused_by_restore() {
    let cluster = Cluster::start_partitioned(3, PARTITIONS, &[]);
    cluster.wait_leaders().await;
    open_and_fund(&cluster, 6).await;
    let work = tempfile::tempdir().expect("temp dir");
    let backup = work.path().join("backup");
    let manifest = tokio::task::block_in_place(|| take_backup(&cluster, &backup));
    assert!(
        manifest["partitions"][1]["blocks"]
            .as_u64()
            .expect("blocks")
            >= 2,
        "{manifest}"
    );
    assert_eq!(verify_backup(&backup).0, 0);

    // A backup never goes into an existing directory.
    let (code, value) = walletctl_value(&[
        "--endpoints",
        &cluster.write_nodes(),
        "backup",
        "--out",
        path(&backup),
    ]);
    assert_eq!(code, 1, "{value}");
    assert!(value.to_string().contains("exists"), "{value}");

    // Scheduled backups: dated directories, the newest `--keep` kept.
    let root = work.path().join("scheduled");
    for _ in 0..3 {
        let (code, value) = walletctl_value(&[
            "--endpoints",
            &cluster.write_nodes(),
            "backup",
            "--under",
            path(&root),
            "--keep",
            "2",
        ]);
        assert_eq!(code, 0, "{value}");
    }
    let kept: Vec<_> = std::fs::read_dir(&root)
        .expect("read dir")
        .map(|entry| {
            entry
                .expect("entry")
                .file_name()
                .to_string_lossy()
                .into_owned()
        })
        .collect();
    assert_eq!(kept.len(), 2, "{kept:?}");
    assert!(
        kept.iter().all(|name| name.starts_with("backup-")),
        "{kept:?}"
    );

    let truncated = damaged_copy(&backup, "truncated", |file| {
        let bytes = std::fs::read(file).expect("read");
        std::fs::write(file, &bytes[..bytes.len() - 5]).expect("write");
    });
    let (code, problem) = verify_backup(&truncated);
    assert_eq!(code, 1);
    assert!(problem.contains("truncated"), "{problem}");

    let flipped = damaged_copy(&backup, "flipped", |file| {
        let mut bytes = std::fs::read(file).expect("read");
        let middle = bytes.len() - 10;
        bytes[middle] ^= 0x40;
        std::fs::write(file, &bytes).expect("write");
    });
    let (code, problem) = verify_backup(&flipped);
    assert_eq!(code, 1);
    assert!(problem.contains("hash does not follow"), "{problem}");

    let missing = damaged_copy(&backup, "missing", |file| {
        std::fs::remove_file(file).expect("rm")
    });
    let (code, problem) = verify_backup(&missing);
    assert_eq!(code, 1);
    assert!(problem.contains("is missing"), "{problem}");

    // Restore refuses damaged backups and non-empty targets, and leaves nothing behind.
    let target = work.path().join("restored");
    for damaged in [&truncated, &flipped, &missing] {
        let (code, value) = walletctl_value(&[
            "restore",
            "--backup",
            path(damaged),
            "--out",
            path(&target),
            "--nodes",
            "3",
        ]);
        assert_eq!(code, 1, "{value}");
        assert!(!target.exists(), "a failed restore leaves no directory");
    }
    std::fs::create_dir_all(&target).expect("mkdir");
    std::fs::write(target.join("keep"), b"x").expect("write");
    let (code, value) = walletctl_value(&[
        "restore",
        "--backup",
        path(&backup),
        "--out",
        path(&target),
        "--nodes",
        "3",
    ]);
    assert_eq!(code, 1, "{value}");
    assert!(value.to_string().contains("not empty"), "{value}");
    // One directory per node (each write pod's volume): the restored data verifies.
    let volumes: Vec<PathBuf> = (1..=3)
        .map(|id| work.path().join(format!("volume-{id}")))
        .collect();
    let mut args = vec![
        "restore".to_owned(),
        "--backup".into(),
        path(&backup).into(),
    ];
    for (id, volume) in volumes.iter().enumerate() {
        std::fs::create_dir_all(volume).expect("mkdir");
        args.push("--node-dir".into());
        args.push(format!("{}={}/data", id + 1, path(volume)));
    }
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let (code, value) = walletctl_value(&args);
    assert_eq!(code, 0, "{value}");
    let (code, verified) = walletctl_json(&["verify"], &volumes[2].join("data"));
    assert_eq!(
        (code, &verified["ok"]),
        (0, &Value::Bool(true)),
        "{verified}"
    );
    let names: Vec<_> = std::fs::read_dir(work.path())
        .expect("read dir")
        .map(|entry| entry.expect("entry").file_name())
        .collect();
    assert!(
        names
            .iter()
            .all(|name| !name.to_string_lossy().starts_with('.')),
        "no partial directory left: {names:?}"
    );
}
