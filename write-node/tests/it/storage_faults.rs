//! Storage faults, injected with the `failpoints` feature (see `write_node::failpoints`): a
//! node whose RocksDB write or fsync fails stops with STORAGE_FAILURE and exits; the others
//! go on; nothing acknowledged is lost, nothing is applied twice, and the node restarted
//! without the fault recovers from what its disk holds, with an intact event log.
#![cfg(feature = "failpoints")]

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use proto::v1::{GetTransferRequest, TransferRequest, TransferStatus};
use tokio::sync::Mutex;
use tonic::Code;

use super::audit::{replayed, walletctl_json};
use super::{History, amount_text, check_history, id, open_and_fund, parse_cents, run_load};
use testkit::{Cluster, WAIT_MAX, reason, transfer_request};

/// One partition: one raft group, so "the leader" and "a follower" mean one node each.
const ONE_PARTITION: &[&str] = &["--partitions", "1"];

/// What the node logs when its store loop stops on a failed write.
const STORAGE_FAILURE_LOG: &str = "store loop stopped: storage failure";

/// Stops the node (killed: it already stopped serving) and checks its data directory with
/// `walletctl`: the hash chain and conservation hold at every entry (a missing or partial
/// event block breaks the chain), and a replay from genesis reaches the live `(index,
/// digest)` the replicas agreed on.
fn verify_data_dir(cluster: &Cluster, node: u64, live: (u64, String)) {
    cluster.kill(node);
    let data_dir = &cluster.nodes[node as usize - 1].data_dir;
    let (code, verified) = walletctl_json(&["verify"], data_dir);
    assert_eq!(
        (code, &verified["ok"]),
        (0, &serde_json::Value::Bool(true)),
        "node {node}: {verified}"
    );
    let (code, genesis) = walletctl_json(&["replay"], data_dir);
    assert_eq!(code, 0, "{genesis}");
    assert_eq!(
        replayed(&genesis),
        vec![live],
        "node {node}: replay from genesis"
    );
}

/// A follower's write of `kind` (`synced`: the raft log round; `unsynced`: the apply results,
/// after its ledger already moved ahead in memory) fails: it exits non-zero, the other two
/// keep taking transfers, and restarted without the fault it catches up with a log that
/// replays to the cluster's state.
async fn follower_write_fails(kind: &str) {
    let cluster = Arc::new(Cluster::start_with(3, ONE_PARTITION));
    let leader = cluster.wait_leader().await;
    let accounts = open_and_fund(&cluster, 6).await;
    let follower = (1..=3).find(|&node| node != leader).expect("a follower");
    cluster.kill(follower);
    let failpoints = format!("storage::write=20*off->return({kind})");
    cluster.start_node_with_env(follower, &[("FAILPOINTS", &failpoints)]);

    let history = Arc::new(Mutex::new(History::default()));
    // Load until the follower has written enough to reach the failpoint: how many writes a
    // fixed number of transfers takes depends on how the rounds batch them.
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let load = tokio::spawn({
        let (cluster, history, accounts, stop) = (
            cluster.clone(),
            history.clone(),
            Arc::new(accounts.clone()),
            stop.clone(),
        );
        async move {
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                run_load(cluster.clone(), history.clone(), accounts.clone(), 2, 10).await;
            }
        }
    });
    let exit = cluster.wait_exit(follower).await;
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    assert!(!exit.success(), "node {follower} exited with {exit}");
    let log = cluster.log(follower);
    assert!(log.contains("failpoints are compiled in"), "{log}");
    assert!(log.contains(STORAGE_FAILURE_LOG), "{log}");
    assert!(
        log.contains("injected failure (failpoint storage::write)"),
        "{log}"
    );
    let failed_write = match kind {
        "synced" => "persisting raft entries",
        _ => "persisting apply results",
    };
    assert!(log.contains(failed_write), "{log}");
    load.await.expect("load");
    // With the follower gone, the two others take transfers on their own.
    let answered = |history: &History| history.acknowledged.len() + history.rejected;
    let answered_before = answered(&*history.lock().await);
    run_load(
        cluster.clone(),
        history.clone(),
        Arc::new(accounts.clone()),
        2,
        20,
    )
    .await;
    let history = history.lock().await;
    assert_eq!(
        answered(&history),
        answered_before + 40,
        "every transfer answered"
    );

    cluster.start_node(follower);
    check_history(&cluster, &history, &accounts).await;
    let live = cluster.wait_replicas_agree().await;
    verify_data_dir(&cluster, follower, live);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn follower_raft_log_write_fails_then_restart_catches_up() {
    follower_write_fails("synced").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn follower_apply_write_fails_then_restart_leaves_no_half_batch() {
    follower_write_fails("unsynced").await;
}

/// What one client saw from the failing leader.
struct Sent {
    request: TransferRequest,
    result: Result<String, tonic::Status>,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn leader_fsync_fails_mid_load_and_retries_apply_each_transfer_once() {
    let cluster = Arc::new(Cluster::create_with(3, ONE_PARTITION));
    // Nodes 2 and 3 first; node 1, the partition's preferred leader, asks for votes as soon
    // as it starts, long before their election timeout (1 s at the least): it leads.
    cluster.start_node(2);
    cluster.start_node(3);
    for node in [2, 3] {
        let deadline = Instant::now() + WAIT_MAX;
        while cluster.status(node).await.is_err() {
            assert!(Instant::now() < deadline, "node {node} does not answer");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
    // Passes the first 100 synced writes (start, election, setup), then fails every fsync.
    cluster.start_node_with_env(1, &[("FAILPOINTS", "storage::fsync=100*off->return")]);
    assert_eq!(
        cluster.wait_leader().await,
        1,
        "node 1 leads\n{}",
        cluster.logs()
    );
    let accounts = open_and_fund(&cluster, 4).await;
    assert!(
        cluster.running().contains(&1) && cluster.status(1).await.is_ok(),
        "node 1 failed during the setup: raise the failpoint's count\n{}",
        cluster.logs()
    );

    // Clients send to the leader until it fails them.
    let mut clients = Vec::new();
    for worker in 0..4usize {
        let (cluster, accounts) = (cluster.clone(), accounts.clone());
        clients.push(tokio::spawn(async move {
            let mut client = cluster.wallet(1).await;
            let mut sent = Vec::new();
            for turn in 0..5_000usize {
                let from = &accounts[(worker + turn) % accounts.len()];
                let to = &accounts[(worker + turn + 1) % accounts.len()];
                let amount = amount_text(1 + (turn % 50) as u64);
                let request = transfer_request(&id(), from, to, &amount, "USD");
                let result = client
                    .transfer(request.clone())
                    .await
                    .map(|response| response.into_inner().consistency_token);
                let failed = result.is_err();
                sent.push(Sent { request, result });
                if failed {
                    break;
                }
            }
            sent
        }));
    }
    let exit = cluster.wait_exit(1).await;
    let mut sent = Vec::new();
    for client in clients {
        sent.extend(client.await.expect("client"));
    }
    assert!(!exit.success(), "node 1 exited with {exit}");
    let log = cluster.log(1);
    assert!(log.contains(STORAGE_FAILURE_LOG), "{log}");
    assert!(log.contains("failpoint storage::fsync"), "{log}");

    // Every error is indefinite: STORAGE_FAILURE from the node, or a broken connection once
    // it stopped; never a definite answer, and at least the calls in flight were told why.
    let mut storage_failures = 0;
    for Sent { result, request } in &sent {
        let Err(status) = result else { continue };
        match reason(status).as_str() {
            "STORAGE_FAILURE" => {
                assert_eq!(status.code(), Code::Unavailable, "{status:?}");
                storage_failures += 1;
            }
            "" => assert!(
                matches!(
                    status.code(),
                    Code::Unavailable | Code::Cancelled | Code::Unknown
                ),
                "{}: {status:?}",
                request.transaction_id
            ),
            other => panic!("{}: unexpected {other}: {status:?}", request.transaction_id),
        }
    }
    assert!(
        storage_failures >= 1,
        "no caller was told STORAGE_FAILURE: {:?}",
        sent.iter()
            .filter_map(|sent| sent.result.as_ref().err())
            .collect::<Vec<_>>()
    );
    let acknowledged = sent.iter().filter(|sent| sent.result.is_ok()).count();
    assert!(acknowledged > 0, "the load ran before the failure");
    eprintln!(
        "{} transfers sent, {acknowledged} acknowledged, {storage_failures} STORAGE_FAILURE",
        sent.len()
    );

    // The two others take over. A retry by the same id answers every transfer: the original
    // outcome for an acknowledged one, and each is applied exactly once.
    let mut expected: BTreeMap<String, i64> = accounts
        .iter()
        .map(|account| (account.clone(), 100_000))
        .collect();
    let new_leader = cluster.wait_leader().await;
    let mut client = cluster.wallet(new_leader).await;
    for Sent { request, result } in &sent {
        let retried = match client.transfer(request.clone()).await {
            Ok(response) => response.into_inner(),
            // A leader change since: find the new one.
            Err(_) => cluster.transfer(request).await.expect("retry"),
        };
        if let Ok(token) = result {
            assert_eq!(&retried.consistency_token, token, "the original outcome");
        }
        let transaction_id = request.transaction_id.clone();
        let transfer = match client
            .get_transfer(GetTransferRequest { transaction_id })
            .await
        {
            Ok(response) => response.into_inner().transfer.expect("transfer"),
            Err(_) => cluster
                .get_transfer(&request.transaction_id)
                .await
                .expect("get"),
        };
        assert_eq!(transfer.status, TransferStatus::Completed as i32);
        let cents = parse_cents(&request.amount);
        *expected.get_mut(&request.from_account).expect("known") -= cents;
        *expected.get_mut(&request.to_account).expect("known") += cents;
    }
    let check_balances = async |node: Option<u64>| {
        for (account, balance) in &expected {
            let state = match node {
                Some(node) => cluster.account_on(node, account).await,
                None => cluster.account(account).await,
            }
            .expect("account");
            assert_eq!(state.balance_minor, *balance, "{account} on {node:?}");
        }
    };
    check_balances(None).await;
    let total: i64 = expected.values().sum();
    let issuer = cluster
        .account("issuer")
        .await
        .expect("issuer")
        .balance_minor;
    assert_eq!(total + issuer, 0, "USD is not conserved");

    // Restarted without the fault, node 1 recovers from whatever its disk holds.
    cluster.start_node(1);
    let live = cluster.wait_replicas_agree().await;
    check_balances(Some(1)).await;
    verify_data_dir(&cluster, 1, live);
}
