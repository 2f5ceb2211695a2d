//! Holds seen from the read side, driven through the Rust SDK: the read node projects what
//! pending holds reserve (`held`, `available`) next to the balance, `WatchTransfer` shows a
//! hold PENDING and then its end (COMPLETED with the captured amount, VOIDED, or the
//! cross-partition path through IN_FLIGHT), and balances move by the captured part only;
//! and the account lifecycle (overdrafts folded, status and limit shown).

use std::time::{Duration, Instant};

use futures::StreamExt as _;
use proto::v1::TransferStatus;
use testkit::{Cluster, WAIT_MAX, accounts_in};
use wallet_client::{ClientConfig, Hold, QueryClient, Transfer, WalletClient, new_transaction_id};

use crate::harness::{ReadNode, SdkCluster};

/// (balance, held, available) on the read node once it has applied `token`.
async fn projected(
    query: &QueryClient,
    account: &str,
    token: Option<&str>,
) -> (String, String, String) {
    let balance = query
        .balance(account, token)
        .await
        .unwrap_or_else(|error| panic!("balance of {account}: {error}"))
        .balance
        .expect("balance");
    (balance.balance, balance.held, balance.available)
}

/// Waits until the read node shows `expected` for `account` (a hold alone gives no token
/// that names where the read node must be).
async fn wait_projected(query: &QueryClient, account: &str, expected: (&str, &str, &str)) {
    let deadline = Instant::now() + WAIT_MAX;
    loop {
        let now = projected(query, account, None).await;
        if (now.0.as_str(), now.1.as_str(), now.2.as_str()) == expected {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{account}: {now:?}, expected {expected:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The states a WatchTransfer stream shows, in order, until the final one.
async fn states(query: &QueryClient, transaction_id: uuid::Uuid) -> Vec<(TransferStatus, String)> {
    let mut updates = query.watch_transfer(transaction_id).await.expect("watch");
    let mut seen = Vec::new();
    while let Some(update) = tokio::time::timeout(WAIT_MAX, updates.next())
        .await
        .expect("an update")
    {
        let update = update.expect("update");
        seen.push((update.status(), update.amount.clone()));
        if update.is_final {
            break;
        }
    }
    seen
}

fn hold(from: &str, to: &str, amount: &str) -> Hold {
    Hold {
        transaction_id: new_transaction_id(),
        from: from.into(),
        to: to.into(),
        amount: amount.into(),
        currency: "USD".into(),
        timeout: Duration::from_secs(60),
        ..Default::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_read_node_projects_holds_and_watches_show_their_states() {
    let partitions = 4;
    let SdkCluster { query, sdk, .. } = &SdkCluster::start(partitions).await;

    let mut in_0 = accounts_in(0, partitions, "rh", 2);
    let (a, b) = (in_0.remove(0), in_0.remove(0));
    let c = accounts_in(1, partitions, "rh", 1).remove(0);
    sdk.open_account("rh-bank", "USD", true)
        .await
        .expect("open");
    for account in [&a, &b, &c] {
        sdk.open_account(account, "USD", false).await.expect("open");
    }
    let funding = sdk
        .transfer(&Transfer {
            transaction_id: new_transaction_id(),
            from: "rh-bank".into(),
            to: a.clone(),
            amount: "100.00".into(),
            currency: "USD".into(),
            ..Default::default()
        })
        .await
        .expect("fund");
    assert_eq!(
        projected(query, &a, Some(&funding.consistency_token)).await,
        ("100.00".into(), "0.00".into(), "100.00".into())
    );

    // Within a partition: held, then captured in part.
    let first = hold(&a, &b, "30.00");
    let held = sdk.authorize_transfer(&first).await.expect("authorize");
    assert!(!held.replayed);
    wait_projected(query, &a, ("100.00", "30.00", "70.00")).await;
    let captured = sdk
        .capture_transfer(first.transaction_id, &a, Some("12.50"))
        .await
        .expect("capture");
    assert_eq!(
        projected(query, &a, Some(&captured.consistency_token)).await,
        ("87.50".into(), "0.00".into(), "87.50".into())
    );
    assert_eq!(
        projected(query, &b, Some(&captured.consistency_token))
            .await
            .0,
        "12.50"
    );
    assert_eq!(
        states(query, first.transaction_id).await.last().cloned(),
        Some((TransferStatus::Completed, "12.50".to_owned()))
    );

    // Voided: released, nothing moved.
    let second = hold(&a, &b, "20.00");
    sdk.authorize_transfer(&second).await.expect("authorize");
    let watch = {
        let query = query.clone();
        let id = second.transaction_id;
        tokio::spawn(async move { states(&query, id).await })
    };
    wait_projected(query, &a, ("87.50", "20.00", "67.50")).await;
    sdk.void_transfer(second.transaction_id, &a)
        .await
        .expect("void");
    wait_projected(query, &a, ("87.50", "0.00", "87.50")).await;
    let seen = watch.await.expect("watch task");
    assert_eq!(
        seen.first().map(|state| state.0),
        Some(TransferStatus::Pending),
        "{seen:?}"
    );
    assert_eq!(
        seen.last().map(|state| state.0),
        Some(TransferStatus::Voided),
        "{seen:?}"
    );

    // Across partitions: the capture goes through IN_FLIGHT to COMPLETED, and the target's
    // balance moves on its own partition.
    let third = hold(&a, &c, "7.00");
    sdk.authorize_transfer(&third).await.expect("authorize");
    let captured = sdk
        .capture_transfer(third.transaction_id, &a, None)
        .await
        .expect("capture across");
    assert_eq!(
        projected(query, &c, Some(&captured.consistency_token))
            .await
            .0,
        "7.00"
    );
    let ended = states(query, third.transaction_id).await;
    assert_eq!(
        ended.last().cloned(),
        Some((TransferStatus::Completed, "7.00".to_owned())),
        "{ended:?}"
    );
    wait_projected(query, &a, ("80.50", "0.00", "80.50")).await;
}

/// Account lifecycle seen from the read side: an ordinary account below zero within its
/// overdraft limit folds (the read node checks debits against the limit it folded), and
/// `GetBalance` shows the status and the limit.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_read_node_folds_overdrafts_and_shows_the_lifecycle() {
    let cluster = Cluster::start_partitioned(3, 2, &[]);
    cluster.wait_leader().await;
    let read = ReadNode::start(&cluster);
    read.wait_serving().await;
    let query = QueryClient::connect([read.endpoint()]).expect("query client");
    let sdk = WalletClient::connect(ClientConfig::new(
        [cluster.nodes[0].port]
            .iter()
            .map(|port| format!("127.0.0.1:{port}"))
            .collect::<Vec<_>>(),
    ))
    .await
    .expect("connect");
    sdk.open_account("rl-bank", "USD", true)
        .await
        .expect("open");
    sdk.open_account("rl-alice", "USD", false)
        .await
        .expect("open");
    let limited = sdk
        .set_overdraft_limit("rl-alice", "50.00", "USD")
        .await
        .expect("limit");
    assert_eq!(limited.overdraft_limit, "50.00");
    let spent = sdk
        .transfer(&Transfer {
            transaction_id: new_transaction_id(),
            from: "rl-alice".into(),
            to: "rl-bank".into(),
            amount: "30.00".into(),
            currency: "USD".into(),
            ..Default::default()
        })
        .await
        .expect("within the limit");
    sdk.freeze_account("rl-alice").await.expect("freeze");
    let balance = query
        .balance("rl-alice", Some(&spent.consistency_token))
        .await
        .expect("balance")
        .balance
        .expect("balance");
    assert_eq!(
        (balance.balance.as_str(), balance.overdraft_limit.as_str()),
        ("-30.00", "50.00")
    );
    let deadline = Instant::now() + WAIT_MAX;
    loop {
        let balance = query.balance("rl-alice", None).await.expect("balance");
        let status = balance.balance.expect("balance").status();
        if status == proto::v1::AccountStatus::Frozen {
            break;
        }
        assert!(Instant::now() < deadline, "still {status:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let bank = query.balance("rl-bank", None).await.expect("bank");
    assert_eq!(
        bank.balance.expect("balance").overdraft_limit,
        "",
        "no limit"
    );
}
