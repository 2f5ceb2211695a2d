//! A rolling upgrade under load: a cluster of the previous release's write nodes (binaries
//! built from `scripts/previous-release` by `scripts/test-upgrade`, which points
//! `WALLET_PREVIOUS_BIN_DIR` at them) is upgraded one node at a time to this build's, each
//! stopped cleanly and restarted on its own data, while transfers keep flowing. Every
//! transfer's outcome is tracked exactly (a retry with the same id until it is definite), and
//! at the end every balance equals the one the outcomes add up to, money is conserved, each
//! node migrated its data to this release's format, and the replicas agree. Calls the
//! previous release cannot decode (an account change, an annotated transfer) are refused
//! with `CLUSTER_UPGRADING` while it still runs on a node, and work once none does.
//!
//! Ignored in the plain test run (it needs the other release's binaries); scripts/test runs
//! it through scripts/test-upgrade.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use testkit::{Cluster, reason, retryable, transfer_request};
use tokio::sync::Mutex;

use crate::id;

/// Ordinary accounts the load moves money between.
const ACCOUNTS: usize = 8;
/// What each starts with, in minor units (100.00).
const FUNDING_MINOR: i64 = 10_000;
/// Concurrent senders; each sends one transfer at a time.
const SENDERS: usize = 4;
/// How long the load runs on a cluster before and after each node's upgrade.
const LOAD_BETWEEN_STEPS: Duration = Duration::from_millis(1_500);
/// An account outside the load, for the calls this release brings.
const GATED: &str = "upgrade-gated";
/// The id of the annotated transfer into it (one id: a retry moves nothing twice).
const ANNOTATED_ID: &str = "6a1f3c7e-2b4d-4e8f-9a0b-1c2d3e4f5a6b";

/// Through `node`: an annotated transfer of 1.00 into [`GATED`], then a freeze of it; the
/// reason of each refusal, `None` for a success.
async fn newer_calls(cluster: &Cluster, node: u64, legs_target: &str) -> [Option<String>; 3] {
    let mut client = cluster.wallet(node).await;
    let annotated = client
        .transfer(proto::v1::TransferRequest {
            reference: "upgrade".into(),
            ..transfer_request(ANNOTATED_ID, "issuer", GATED, "1.00", "USD")
        })
        .await;
    let freeze = client
        .freeze_account(proto::v1::FreezeAccountRequest {
            account_id: GATED.into(),
        })
        .await;
    let legs = client
        .transfer_legs(proto::v1::TransferLegsRequest {
            transaction_id: LEGS_ID.into(),
            legs: vec![proto::v1::TransferLeg {
                from_account: "issuer".into(),
                to_account: legs_target.into(),
                amount: "1.00".into(),
                currency: "USD".into(),
            }],
            ..Default::default()
        })
        .await;
    [
        annotated.err().map(|status| reason(&status)),
        freeze.err().map(|status| reason(&status)),
        legs.err().map(|status| reason(&status)),
    ]
}

/// The multi-leg transfer `newer_calls` sends.
const LEGS_ID: &str = "0c5e2a9d-7f3b-4c1e-8d6a-2b9f0e4a7c13";

fn previous_release_binary() -> PathBuf {
    let dir = std::env::var_os("WALLET_PREVIOUS_BIN_DIR").expect(
        "WALLET_PREVIOUS_BIN_DIR: the previous release's binaries (run scripts/test-upgrade)",
    );
    let binary = PathBuf::from(dir).join("wallet-write-node");
    assert!(binary.is_file(), "{} is not built", binary.display());
    binary
}

/// Sends one transfer until its outcome is definite: `Some(amount)` moved, `None` refused.
async fn settle_one(cluster: &Cluster, from: &str, to: &str, minor: i64) -> Option<i64> {
    let amount = format!("{}.{:02}", minor / 100, minor % 100);
    let request = transfer_request(&id(), from, to, &amount, "USD");
    loop {
        match cluster.transfer(&request).await {
            Ok(_) => return Some(minor),
            Err(status) if reason(&status) == "INSUFFICIENT_FUNDS" => return None,
            // Nodes restart under the load: an answer that is not definite is retried with
            // the same transaction id until it is.
            Err(status) if retryable(&status) => {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            Err(status) => panic!("transfer {from} -> {to}: {status:?}"),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs the previous release's binaries: scripts/test-upgrade"]
async fn a_rolling_upgrade_under_load_loses_and_repeats_nothing() {
    let previous = previous_release_binary();
    let current = testkit::binary("wallet-write-node");
    let cluster = Arc::new(Cluster::create(3));
    for node in 1..=3 {
        cluster.start_node_binary(node, &previous, &[]);
    }
    cluster.wait_leaders().await;
    let accounts: Vec<String> = (0..ACCOUNTS).map(|n| format!("upgrade-{n}")).collect();
    let names: Vec<&str> = accounts.iter().map(String::as_str).collect();
    cluster.open_funded_usd(&names, "100.00").await;
    cluster
        .open_account(GATED, "USD", false)
        .await
        .expect("open");
    // A multi-leg transfer's accounts are in one partition: the issuer's.
    let partitions = cluster.wait_leaders().await.len() as u32;
    let legs_target = testkit::accounts_in(
        ledger::partition_of("issuer", partitions),
        partitions,
        "upgrade-legs",
        1,
    )
    .remove(0);
    cluster
        .open_account(&legs_target, "USD", false)
        .await
        .expect("open");
    let expected: Arc<Mutex<BTreeMap<String, i64>>> = Arc::new(Mutex::new(
        accounts
            .iter()
            .map(|account| (account.clone(), FUNDING_MINOR))
            .collect(),
    ));

    let running = Arc::new(AtomicBool::new(true));
    let senders: Vec<_> = (0..SENDERS)
        .map(|sender| {
            let (cluster, expected, running, accounts) = (
                cluster.clone(),
                expected.clone(),
                running.clone(),
                accounts.clone(),
            );
            tokio::spawn(async move {
                let mut step = sender;
                let mut moved = 0;
                while running.load(Ordering::Relaxed) {
                    step += SENDERS;
                    let from = &accounts[step % ACCOUNTS];
                    let to = &accounts[(step * 7 + 3) % ACCOUNTS];
                    if from == to {
                        continue;
                    }
                    let minor = 1 + (step as i64 * 37) % 2_500;
                    if let Some(minor) = settle_one(&cluster, from, to, minor).await {
                        let mut expected = expected.lock().await;
                        *expected.get_mut(from).expect("known") -= minor;
                        *expected.get_mut(to).expect("known") += minor;
                        moved += 1;
                    }
                }
                moved
            })
        })
        .collect();

    tokio::time::sleep(LOAD_BETWEEN_STEPS).await;
    for node in 1..=3 {
        let exit = cluster.stop(node);
        assert!(exit.success(), "node {node} stopped cleanly: {exit:?}");
        cluster.start_node_binary(node, &current, &[]);
        cluster.wait_leaders().await;
        if node == 1 {
            // Nodes 2 and 3 cannot decode them yet, whoever leads: refused, nothing sent.
            let refused = Some("CLUSTER_UPGRADING".to_owned());
            assert_eq!(
                newer_calls(&cluster, 1, &legs_target).await,
                [refused.clone(), refused.clone(), refused]
            );
        }
        tokio::time::sleep(LOAD_BETWEEN_STEPS).await;
    }
    running.store(false, Ordering::Relaxed);
    let mut moved = 0;
    for sender in senders {
        moved += sender.await.expect("sender");
    }
    assert!(
        moved > 50,
        "only {moved} transfers moved money during the upgrade"
    );

    // Every node runs this release: the calls go through (once each peer's frames said so).
    let deadline = std::time::Instant::now() + testkit::WAIT_MAX;
    loop {
        match newer_calls(&cluster, 1, &legs_target).await {
            [None, None, None] => break,
            answers => assert!(
                std::time::Instant::now() < deadline
                    && answers
                        .iter()
                        .flatten()
                        .all(|reason| reason == "CLUSTER_UPGRADING"),
                "{answers:?}"
            ),
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let gated = cluster.get_transfer(ANNOTATED_ID).await.expect("annotated");
    assert_eq!(gated.reference, "upgrade");

    cluster.wait_no_in_flight().await;
    let expected = expected.lock().await.clone();
    let mut total = cluster.account(GATED).await.expect("gated").balance_minor
        + cluster
            .account(&legs_target)
            .await
            .expect("legs target")
            .balance_minor;
    for (account, balance) in &expected {
        let read = cluster.account(account).await.expect("account");
        assert_eq!(read.balance_minor, *balance, "{account}");
        total += read.balance_minor;
    }
    let issuer = cluster.account("issuer").await.expect("issuer");
    assert_eq!(
        total + issuer.balance_minor,
        0,
        "money created or destroyed"
    );
    for node in 1..=3 {
        let log = cluster.log(node);
        assert!(
            log.contains("data format marked as the current one"),
            "node {node} did not migrate its data:\n{log}"
        );
    }
    cluster.wait_replicas_agree().await;
}
