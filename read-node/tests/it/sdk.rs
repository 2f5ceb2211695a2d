//! The Rust SDK against a live cluster: retries through a killed leader reuse the
//! transaction id and never pay twice; rejections are not retried; deadlines hold.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use tokio::sync::Mutex;
use wallet_client::{ClientConfig, Transfer, WalletClient, new_transaction_id};

use testkit::Cluster;

const ACCOUNTS: [&str; 3] = ["sdk-a", "sdk-b", "sdk-c"];

fn cents(amount: &str) -> i64 {
    let (units, fraction) = amount.split_once('.').expect("two decimals");
    units.parse::<i64>().expect("units") * 100 + fraction.parse::<i64>().expect("cents")
}

async fn client(cluster: &Cluster) -> WalletClient {
    let endpoints: Vec<String> = cluster
        .nodes
        .iter()
        .map(|node| format!("127.0.0.1:{}", node.port))
        .collect();
    WalletClient::connect(ClientConfig::new(endpoints))
        .await
        .expect("connect")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sdk_retries_through_a_killed_leader_reuse_the_id_and_never_pay_twice() {
    let cluster = Arc::new(Cluster::start_partitioned(3, 1, &[]));
    cluster.wait_leader().await;
    let sdk = Arc::new(client(&cluster).await);
    sdk.open_account("sdk-issuer", "USD", true)
        .await
        .expect("open");
    for account in ACCOUNTS {
        sdk.open_account(account, "USD", false).await.expect("open");
    }

    let acknowledged = Arc::new(Mutex::new(Vec::<Transfer>::new()));
    let retried_after_unknown = Arc::new(AtomicU64::new(0));
    let mut workers = Vec::new();
    for worker in 0..3u64 {
        let (sdk, acknowledged, retried) = (
            sdk.clone(),
            acknowledged.clone(),
            retried_after_unknown.clone(),
        );
        workers.push(tokio::spawn(async move {
            for n in 0..40u64 {
                let transfer = Transfer {
                    transaction_id: new_transaction_id(),
                    from: "sdk-issuer".into(),
                    to: ACCOUNTS[((worker + n) % 3) as usize].into(),
                    amount: format!("0.{:02}", 1 + (worker * 40 + n) % 99),
                    currency: "USD".into(),
                    ..Default::default()
                };
                // The SDK retries inside; an indefinite outcome is resolved the documented
                // way: the same transfer, same id, again.
                loop {
                    match sdk.transfer(&transfer).await {
                        Ok(_) => break,
                        Err(error) if !error.is_definite() => {
                            retried.fetch_add(1, Ordering::Relaxed);
                        }
                        Err(error) => panic!("definite failure {error:?}"),
                    }
                }
                acknowledged.lock().await.push(transfer);
            }
        }));
    }
    // Kill the leader while the workers run, then bring it back.
    let deadline = Instant::now() + Duration::from_secs(30);
    while acknowledged.lock().await.len() < 30 {
        assert!(Instant::now() < deadline, "no progress before the kill");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let leader = cluster.wait_leader().await;
    cluster.kill(leader);
    while acknowledged.lock().await.len() < 70 {
        assert!(
            Instant::now() < deadline + Duration::from_secs(30),
            "no progress after the kill"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    cluster.start_node(leader);
    for worker in workers {
        worker.await.expect("worker");
    }

    let acknowledged = acknowledged.lock().await;
    assert_eq!(acknowledged.len(), 120);
    // Exactly once: every balance is the sum of its acknowledged credits, and each id is a
    // committed transfer of its own amount.
    let mut expected: BTreeMap<&str, i64> = ACCOUNTS.iter().map(|account| (*account, 0)).collect();
    for transfer in acknowledged.iter() {
        *expected.get_mut(transfer.to.as_str()).expect("known") += cents(&transfer.amount);
        let stored = sdk
            .get_transfer(transfer.transaction_id)
            .await
            .expect("get transfer");
        assert_eq!(stored.amount, transfer.amount);
        // A retry now returns the recorded outcome and moves nothing.
        sdk.transfer(transfer).await.expect("idempotent");
    }
    for (account, cents) in &expected {
        let balance = sdk
            .get_account(account)
            .await
            .expect("account")
            .account
            .expect("account");
        assert_eq!(balance.balance_minor, *cents, "{account}");
    }
    let issuer = sdk
        .get_account("sdk-issuer")
        .await
        .expect("issuer")
        .account
        .expect("account");
    assert_eq!(issuer.balance_minor, -expected.values().sum::<i64>());
    eprintln!(
        "sdk: 120 transfers through a leader kill, {} resolved by resubmitting after an \
         indefinite outcome",
        retried_after_unknown.load(Ordering::Relaxed)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sdk_does_not_retry_rejections_and_honours_its_deadline() {
    let cluster = Cluster::start_partitioned(3, 1, &[]);
    cluster.wait_leader().await;
    let sdk = client(&cluster).await;
    sdk.open_account("poor", "USD", false).await.expect("open");
    sdk.open_account("rich", "USD", false).await.expect("open");
    let overdraft = Transfer {
        transaction_id: new_transaction_id(),
        from: "poor".into(),
        to: "rich".into(),
        amount: "5.00".into(),
        currency: "USD".into(),
        ..Default::default()
    };
    let started = Instant::now();
    let error = sdk
        .transfer(&overdraft)
        .await
        .expect_err("insufficient funds");
    assert!(error.is_definite(), "{error:?}");
    assert_eq!(error.reason(), "INSUFFICIENT_FUNDS");
    // One round trip, no backoff: a rejection is an answer, not a failure to retry.
    assert!(
        started.elapsed() < Duration::from_millis(500),
        "{:?}",
        started.elapsed()
    );

    // Nobody answers (every node is down): the call gives up at its total deadline, with an
    // indefinite error that says to retry with the same id.
    let mut config = ClientConfig::new(
        cluster
            .nodes
            .iter()
            .map(|node| format!("127.0.0.1:{}", node.port))
            .collect::<Vec<_>>(),
    );
    config.total_deadline = Duration::from_millis(1_500);
    config.call_timeout = Duration::from_millis(500);
    let impatient = WalletClient::connect(config).await.expect("connect");
    for node in [1, 2, 3] {
        cluster.kill(node);
    }
    let transfer = Transfer {
        transaction_id: new_transaction_id(),
        from: "rich".into(),
        to: "poor".into(),
        amount: "1.00".into(),
        currency: "USD".into(),
        ..Default::default()
    };
    let started = Instant::now();
    let error = impatient
        .transfer(&transfer)
        .await
        .expect_err("nobody answers");
    let elapsed = started.elapsed();
    assert!(!error.is_definite(), "{error:?}");
    // Refused connections fail fast, so the attempts may run out before the deadline; either
    // way the call never outlives the deadline (plus one connect timeout of slack).
    assert!(
        elapsed < Duration::from_millis(2_500),
        "gave up after {elapsed:?}, the deadline is 1.5 s"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sdk_transfer_pipelines_concurrent_calls_and_answers_each_as_its_own() {
    let cluster = Cluster::start_partitioned(3, 4, &[]);
    cluster.wait_leader().await;
    let sdk = client(&cluster).await;
    let accounts: Vec<String> = (0..8).map(|n| format!("lane-{n}")).collect();
    sdk.open_account("lane-issuer", "USD", true)
        .await
        .expect("open");
    for account in &accounts {
        sdk.open_account(account, "USD", false).await.expect("open");
        let funding = Transfer {
            transaction_id: new_transaction_id(),
            from: "lane-issuer".into(),
            to: account.clone(),
            amount: "10.00".into(),
            currency: "USD".into(),
            ..Default::default()
        };
        sdk.transfer(&funding).await.expect("fund");
    }
    let before = sdk.pipeline_stats();

    // 300 concurrent calls: within and across partitions, plus per 30 one that overdraws,
    // one with a bad amount and one sent twice at once (a retry racing the original).
    let mut calls: Vec<(Transfer, &str)> = Vec::new();
    for n in 0..240 {
        calls.push((
            Transfer {
                transaction_id: new_transaction_id(),
                from: accounts[n % 8].clone(),
                to: accounts[(n * 3 + 1) % 8].clone(),
                amount: "0.01".into(),
                currency: "USD".into(),
                ..Default::default()
            },
            "",
        ));
        if n % 4 == 0 {
            let (twin, _) = calls[calls.len() - 1].clone();
            calls.push((twin, ""));
        }
    }
    for n in 0..10 {
        calls.push((
            Transfer {
                transaction_id: new_transaction_id(),
                from: accounts[n % 8].clone(),
                to: accounts[(n + 1) % 8].clone(),
                amount: "500.00".into(),
                currency: "USD".into(),
                ..Default::default()
            },
            "INSUFFICIENT_FUNDS",
        ));
        calls.push((
            Transfer {
                transaction_id: new_transaction_id(),
                from: accounts[n % 8].clone(),
                to: accounts[(n + 1) % 8].clone(),
                amount: "0.001".into(),
                currency: "USD".into(),
                ..Default::default()
            },
            "INVALID_AMOUNT",
        ));
    }
    // Two different transfers under one id, at once: one of them is the transfer, the other
    // is refused as a reuse, and each caller hears its own answer.
    let conflicts: Vec<[Transfer; 2]> = (0..8)
        .map(|n| {
            let first = Transfer {
                transaction_id: new_transaction_id(),
                from: accounts[n].clone(),
                to: accounts[(n + 5) % 8].clone(),
                amount: "0.02".into(),
                currency: "USD".into(),
                ..Default::default()
            };
            let second = Transfer {
                amount: "0.03".into(),
                ..first.clone()
            };
            [first, second]
        })
        .collect();
    let mut winners: Option<Vec<usize>> = None;
    let expected_balances = |winners: &[usize]| {
        let mut cents: BTreeMap<String, i64> =
            accounts.iter().map(|a| (a.clone(), 1_000)).collect();
        for n in 0..240 {
            *cents.get_mut(&accounts[n % 8]).expect("known") -= 1;
            *cents.get_mut(&accounts[(n * 3 + 1) % 8]).expect("known") += 1;
        }
        for (pair, &winner) in conflicts.iter().zip(winners) {
            let moved = if winner == 0 { 2 } else { 3 };
            *cents.get_mut(&pair[winner].from).expect("known") -= moved;
            *cents.get_mut(&pair[winner].to).expect("known") += moved;
        }
        cents
    };
    for round in ["concurrent", "retried"] {
        let (outcomes, conflicted) = futures::future::join(
            futures::future::join_all(calls.iter().map(|(transfer, _)| sdk.transfer(transfer))),
            futures::future::join_all(conflicts.iter().flatten().map(|t| sdk.transfer(t))),
        )
        .await;
        let this_round: Vec<usize> = conflicted
            .chunks(2)
            .map(|pair| match pair {
                [Ok(_), Err(error)] | [Err(error), Ok(_)] => {
                    assert_eq!(error.reason(), "TRANSACTION_ID_REUSED", "{round}");
                    usize::from(pair[1].is_ok())
                }
                other => panic!("{round}: one of two transfers under one id, got {other:?}"),
            })
            .collect();
        let won = winners.get_or_insert_with(|| this_round.clone());
        assert_eq!(*won, this_round, "{round}: the same transfer holds the id");
        let mut tokens: BTreeMap<String, String> = BTreeMap::new();
        for ((transfer, rejection), outcome) in calls.iter().zip(outcomes) {
            match (outcome, *rejection) {
                (Ok(done), "") => {
                    assert_eq!(done.transaction_id, transfer.transaction_id.to_string());
                    let token = tokens
                        .entry(done.transaction_id.clone())
                        .or_insert(done.consistency_token.clone());
                    assert_eq!(*token, done.consistency_token, "one transfer, one position");
                }
                (Err(error), reason) if !reason.is_empty() => {
                    assert!(error.is_definite(), "{round}: {error:?}");
                    assert_eq!(error.reason(), reason, "{round}: {transfer:?}");
                }
                (outcome, reason) => {
                    panic!("{round}: {transfer:?} wanted {reason:?}, got {outcome:?}")
                }
            }
        }
        for (account, cents) in expected_balances(won) {
            let balance = sdk.get_account(&account).await.expect("account");
            assert_eq!(
                balance.account.expect("account").balance_minor,
                cents,
                "{round}: {account}"
            );
        }
    }
    let stats = sdk.pipeline_stats();
    let (streams, carried) = (
        stats.streams - before.streams,
        stats.transfers - before.transfers,
    );
    assert!(
        carried >= 2 * calls.len() as u64,
        "every call went down a stream: {stats:?}"
    );
    assert!(streams <= 3, "one stream per node: {stats:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sdk_submit_transfers_pipelines_across_partitions_and_answers_each() {
    let cluster = Cluster::start_partitioned(3, 4, &[]);
    cluster.wait_leader().await;
    let sdk = client(&cluster).await;
    let accounts: Vec<String> = (0..8).map(|n| format!("bulk-{n}")).collect();
    sdk.open_account("bulk-issuer", "USD", true)
        .await
        .expect("open");
    for account in &accounts {
        sdk.open_account(account, "USD", false).await.expect("open");
    }
    let mut batch: Vec<Transfer> = (0..400)
        .map(|n| Transfer {
            transaction_id: new_transaction_id(),
            from: if n < 200 {
                "bulk-issuer".into()
            } else {
                accounts[n % 8].clone()
            },
            to: accounts[(n + 1) % 8].clone(),
            amount: "0.10".into(),
            currency: "USD".into(),
            ..Default::default()
        })
        .collect();
    // One that must be rejected, and one sent twice (the second is a retry, not a payment).
    batch.push(Transfer {
        transaction_id: new_transaction_id(),
        from: accounts[0].clone(),
        to: accounts[1].clone(),
        amount: "1000000.00".into(),
        currency: "USD".into(),
        ..Default::default()
    });
    batch.push(batch[0].clone());
    let results = sdk.submit_transfers(&batch).await.expect("batch");
    assert_eq!(results.len(), batch.len());
    let rejected = results[400].as_ref().expect_err("overdraft");
    assert_eq!(rejected.reason(), "INSUFFICIENT_FUNDS");
    let first = results[0].as_ref().expect("first");
    let again = results[401].as_ref().expect("same id again");
    assert_eq!(first.consistency_token, again.consistency_token);
    let mut expected: BTreeMap<String, i64> = accounts.iter().map(|a| (a.clone(), 0)).collect();
    for (transfer, result) in batch.iter().zip(&results).take(400) {
        match result {
            Ok(response) => {
                assert_eq!(response.transaction_id, transfer.transaction_id.to_string());
                if transfer.from != "bulk-issuer" {
                    *expected.get_mut(&transfer.from).expect("known") -= 10;
                }
                *expected.get_mut(&transfer.to).expect("known") += 10;
            }
            // A transfer from an account the issuer had not yet funded may be refused.
            Err(error) => assert_eq!(error.reason(), "INSUFFICIENT_FUNDS", "{error:?}"),
        }
    }
    // Cross-partition transfers settle asynchronously after their answer on the source side
    // only when in flight; the answers above are final, so balances match now.
    for (account, cents) in &expected {
        let balance = sdk
            .get_account(account)
            .await
            .expect("account")
            .account
            .expect("account");
        assert_eq!(balance.balance_minor, *cents, "{account}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sdk_transfer_watch_survives_a_read_node_restart() {
    use futures::StreamExt as _;
    use wallet_client::QueryClient;

    use super::harness::ReadNode;

    let cluster = Cluster::start_partitioned(3, 2, &[]);
    cluster.wait_leader().await;
    let sdk = client(&cluster).await;
    sdk.open_account("watch-issuer", "USD", true)
        .await
        .expect("open");
    sdk.open_account("watch-target", "USD", false)
        .await
        .expect("open");
    let read = ReadNode::start(&cluster);
    read.wait_serving().await;
    let query = QueryClient::connect([read.endpoint()]).expect("query client");
    // Watched before it exists; the read node restarts before the transfer happens.
    let transfer = Transfer {
        transaction_id: new_transaction_id(),
        from: "watch-issuer".into(),
        to: "watch-target".into(),
        amount: "3.00".into(),
        currency: "USD".into(),
        ..Default::default()
    };
    let mut watch = query
        .watch_transfer(transfer.transaction_id)
        .await
        .expect("watch");
    tokio::time::sleep(Duration::from_millis(300)).await;
    read.kill();
    read.restart();
    sdk.transfer(&transfer).await.expect("transfer");
    let mut versions = Vec::new();
    loop {
        let update = tokio::time::timeout(Duration::from_secs(30), watch.next())
            .await
            .expect("pushed in time")
            .expect("an update")
            .expect("the watch resumes instead of failing");
        versions.push(update.version);
        if update.is_final {
            assert_eq!(update.amount, "3.00");
            break;
        }
    }
    // No state twice and none out of order, however the reconnect fell; a state that came
    // and went while the watch was disconnected (in flight, for a cross-partition transfer)
    // is not replayed, but the final one always arrives.
    assert!(
        versions.windows(2).all(|pair| pair[0] < pair[1]),
        "{versions:?}"
    );
    assert!(
        watch.next().await.is_none(),
        "the watch ends after the final state"
    );
}

/// One endpoint is enough: a client given only node 1 (a follower of most partitions) opens,
/// funds and pays across every partition through it, with the batch and bulk calls too; its
/// retries say they were replayed, rejections included. The same calls from a client given
/// every node route by leader hints and agree.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_sdk_through_one_endpoint_reaches_every_partition() {
    let cluster = Cluster::start(3);
    let leaders = cluster.wait_leaders().await;
    let partitions = leaders.len() as u32;
    assert!(leaders.iter().any(|&leader| leader != 1), "{leaders:?}");
    let one = WalletClient::connect(ClientConfig::new([format!(
        "127.0.0.1:{}",
        cluster.nodes[0].port
    )]))
    .await
    .expect("connect");
    let every = client(&cluster).await;

    let accounts: Vec<String> = (0..partitions)
        .map(|p| testkit::accounts_in(p, partitions, "sdk-one", 1).remove(0))
        .collect();
    let mut openings = vec![wallet_client::pb::OpenAccountRequest {
        account_id: "sdk-one-issuer".into(),
        currency: "USD".into(),
        allow_negative_balance: true,
        ..Default::default()
    }];
    openings.extend(
        accounts
            .iter()
            .map(|account| wallet_client::pb::OpenAccountRequest {
                account_id: account.clone(),
                currency: "USD".into(),
                allow_negative_balance: false,
                ..Default::default()
            }),
    );
    for opened in one.open_accounts(&openings).await.expect("OpenAccounts") {
        opened.expect("opened through one endpoint");
    }
    // The batch call: each account funded with 10.00 (mostly across partitions).
    let funding: Vec<Transfer> = accounts
        .iter()
        .map(|account| Transfer {
            transaction_id: new_transaction_id(),
            from: "sdk-one-issuer".into(),
            to: account.clone(),
            amount: "10.00".into(),
            currency: "USD".into(),
            ..Default::default()
        })
        .collect();
    for outcome in one.transfer_batch(&funding).await.expect("TransferBatch") {
        assert!(!outcome.expect("funded").replayed);
    }
    // The same batch from the client that routes by hints: every item replayed (the
    // cross-partition ones once settled), nothing moves twice.
    for transfer in &funding {
        let deadline = Instant::now() + Duration::from_secs(20);
        while every
            .get_transfer(transfer.transaction_id)
            .await
            .expect("transfer")
            .status
            != wallet_client::pb::TransferStatus::Completed as i32
        {
            assert!(Instant::now() < deadline, "not settled");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
    for outcome in every.transfer_batch(&funding).await.expect("TransferBatch") {
        assert!(outcome.expect("replayed").replayed);
    }
    // A rejection's retry says it was replayed too.
    let overdraft = Transfer {
        transaction_id: new_transaction_id(),
        from: accounts[0].clone(),
        to: accounts[1].clone(),
        amount: "1000.00".into(),
        currency: "USD".into(),
        ..Default::default()
    };
    let refused = one
        .transfer(&overdraft)
        .await
        .expect_err("insufficient funds");
    let again = one
        .transfer(&overdraft)
        .await
        .expect_err("insufficient funds");
    assert_eq!(
        (
            refused.reason(),
            refused.replayed(),
            again.reason(),
            again.replayed()
        ),
        ("INSUFFICIENT_FUNDS", false, "INSUFFICIENT_FUNDS", true)
    );
    for account in &accounts {
        let balance = one.get_account(account).await.expect("account");
        assert_eq!(balance.account.expect("account").balance, "10.00");
    }
}
