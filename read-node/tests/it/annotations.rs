//! A transfer's (and an account's) reference and metadata seen from the read side, sent through the Rust SDK:
//! `WatchTransfer` pushes them with every state (in the one transfer-status enum both
//! services use), and history entries (`ListTransfers`) carry them, for a transfer within a
//! partition, one across partitions and a hold, while a plain transfer shows none.

use std::collections::BTreeMap;
use std::time::Duration;

use futures::StreamExt as _;
use proto::v1::query_service_client::QueryServiceClient;
use proto::v1::{
    Balance, BatchGetAccountsRequest, ListAccountsRequest, OpenAccountRequest, TransferStatus,
};
use testkit::{WAIT_MAX, accounts_in};
use wallet_client::{BalanceAt, Hold, QueryClient, Transfer, new_transaction_id};

use crate::harness::SdkCluster;

fn metadata(entries: &[(&str, &str)]) -> BTreeMap<String, String> {
    entries
        .iter()
        .map(|(key, value)| (key.to_string(), value.to_string()))
        .collect()
}

/// What the last update of a WatchTransfer stream shows: (status, deprecated state number,
/// reference, metadata).
async fn watched(
    query: &QueryClient,
    transaction_id: wallet_client::Uuid,
) -> (TransferStatus, i32, String, BTreeMap<String, String>) {
    let mut updates = query.watch_transfer(transaction_id).await.expect("watch");
    loop {
        let update = tokio::time::timeout(WAIT_MAX, updates.next())
            .await
            .expect("an update")
            .expect("the stream goes on")
            .expect("update");
        if update.is_final {
            #[allow(deprecated)] // `state` stays filled for clients built before `status`
            let state = update.state;
            return (update.status(), state, update.reference, update.metadata);
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_read_node_returns_references_and_metadata_with_every_transfer() {
    let partitions = 4;
    let SdkCluster { query, sdk, .. } = &SdkCluster::start(partitions).await;
    let mut in_0 = accounts_in(0, partitions, "ra", 2);
    let (a, b) = (in_0.remove(0), in_0.remove(0));
    let c = accounts_in(1, partitions, "ra", 1).remove(0);
    sdk.open_account("ra-bank", "USD", true)
        .await
        .expect("open");
    for account in [&a, &b, &c] {
        sdk.open_account(account, "USD", false).await.expect("open");
    }
    let pay = |from: &str, to: &str, reference: &str, entries: &[(&str, &str)]| Transfer {
        transaction_id: new_transaction_id(),
        from: from.into(),
        to: to.into(),
        amount: "10.00".into(),
        currency: "USD".into(),
        reference: reference.into(),
        metadata: metadata(entries),
    };

    let funding = Transfer {
        amount: "100.00".into(),
        ..pay("ra-bank", &a, "", &[])
    };
    let local = pay(
        &a,
        &b,
        "order-1042",
        &[("channel", "app"), ("note", "ünïcode ✓")],
    );
    let cross = pay(&a, &c, "invoice 7", &[("k", "v")]);
    for transfer in [&funding, &local, &cross] {
        sdk.transfer(transfer).await.expect("transfer");
    }
    let hold = Hold {
        transaction_id: new_transaction_id(),
        from: a.clone(),
        to: c.clone(),
        amount: "5.00".into(),
        currency: "USD".into(),
        timeout: Duration::from_secs(60),
        reference: "booking-9".into(),
        metadata: metadata(&[("hotel", "2 nights")]),
    };
    sdk.authorize_transfer(&hold).await.expect("authorize");
    sdk.capture_transfer(hold.transaction_id, &a, None)
        .await
        .expect("capture");

    // Pushed with the final state, in both enums (the deprecated one keeps its numbering).
    for (transfer_id, reference, entries) in [
        (local.transaction_id, &local.reference, &local.metadata),
        (cross.transaction_id, &cross.reference, &cross.metadata),
        (hold.transaction_id, &hold.reference, &hold.metadata),
    ] {
        assert_eq!(
            watched(query, transfer_id).await,
            (
                TransferStatus::Completed,
                proto::v1::TransferState::Completed as i32,
                reference.clone(),
                entries.clone()
            )
        );
    }
    let plain = watched(query, funding.transaction_id).await;
    assert_eq!((plain.2.as_str(), plain.3.len()), ("", 0));

    // History entries carry them on both sides of each transfer (the credits' side folds
    // from its own partition's log: wait for it).
    let history_of = async |account: &str, entries: usize| {
        let deadline = std::time::Instant::now() + WAIT_MAX;
        loop {
            let page = query.history(account, None, 10).await.expect("history");
            if page.entries.len() >= entries {
                return page.entries;
            }
            assert!(std::time::Instant::now() < deadline, "{account}: {page:?}");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    };
    let history = history_of(&a, 4).await;
    let shown: Vec<(String, String, usize)> = history
        .iter()
        .map(|entry| {
            (
                entry.transaction_id.clone(),
                entry.reference.clone(),
                entry.metadata.len(),
            )
        })
        .collect();
    let id = |transfer_id: wallet_client::Uuid| transfer_id.hyphenated().to_string();
    assert_eq!(
        shown,
        [
            (id(hold.transaction_id), "booking-9".into(), 1),
            (id(cross.transaction_id), "invoice 7".into(), 1),
            (id(local.transaction_id), "order-1042".into(), 2),
            (id(funding.transaction_id), String::new(), 0),
        ]
    );
    let credited = history_of(&c, 2).await;
    assert_eq!(
        credited
            .iter()
            .map(|entry| (entry.reference.as_str(), entry.metadata.clone()))
            .collect::<Vec<_>>(),
        [
            ("booking-9", hold.metadata.clone()),
            ("invoice 7", cross.metadata.clone())
        ]
    );
}

/// An account's reference and metadata seen from the read side, set through the Rust SDK:
/// GetBalance, GetBalanceAt, ListAccounts, BatchGetAccounts and every WatchBalances update
/// (the snapshot and each change) carry them; an account opened without shows none.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_read_node_returns_an_accounts_reference_and_metadata_with_every_read() {
    let partitions = 4;
    let SdkCluster {
        query, sdk, read, ..
    } = &SdkCluster::start(partitions).await;
    let customer = accounts_in(0, partitions, "rc", 1).remove(0);
    let plain = accounts_in(1, partitions, "rc", 1).remove(0);
    let entries = metadata(&[("tier", "gold"), ("region", "eu")]);
    sdk.open_account("rc-bank", "USD", true)
        .await
        .expect("open");
    sdk.open_account_with(OpenAccountRequest {
        account_id: customer.clone(),
        currency: "USD".into(),
        reference: "cust-42".into(),
        metadata: entries.clone(),
        ..Default::default()
    })
    .await
    .expect("open annotated");
    sdk.open_account(&plain, "USD", false).await.expect("open");
    let expected = |account: &str| {
        if account == customer {
            ("cust-42".to_owned(), entries.clone())
        } else {
            Default::default()
        }
    };
    let shown = |balance: &Balance| (balance.reference.clone(), balance.metadata.clone());

    // GetBalance, once the read node has the accounts.
    for account in [&customer, &plain] {
        let deadline = std::time::Instant::now() + WAIT_MAX;
        let balance = loop {
            match query.balance(account, None).await {
                Ok(response) => break response.balance.expect("balance"),
                Err(error) => assert!(std::time::Instant::now() < deadline, "{error:?}"),
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        };
        assert_eq!(shown(&balance), expected(account));
    }

    // Every update of a watch: the snapshots, then the changes two transfers make.
    let mut watch = query.watch_balances(vec![customer.clone(), plain.clone()]);
    let mut next = async || {
        tokio::time::timeout(WAIT_MAX, watch.next())
            .await
            .expect("an update")
            .expect("the stream goes on")
            .expect("update")
    };
    for _ in 0..2 {
        let update = next().await;
        let balance = update.balance.expect("balance");
        assert!(update.snapshot);
        assert_eq!(shown(&balance), expected(&balance.account_id));
    }
    let mut last_token = String::new();
    for to in [&customer, &plain] {
        let transfer = Transfer {
            transaction_id: new_transaction_id(),
            from: "rc-bank".into(),
            to: to.clone(),
            amount: "7.00".into(),
            currency: "USD".into(),
            ..Default::default()
        };
        last_token = sdk
            .transfer(&transfer)
            .await
            .expect("fund")
            .consistency_token;
    }
    for _ in 0..2 {
        let update = next().await;
        let balance = update.balance.expect("balance");
        assert!(!update.snapshot);
        assert_eq!(balance.balance, "7.00");
        assert_eq!(shown(&balance), expected(&balance.account_id));
    }

    // GetBalanceAt, at the opening and after the change.
    let now = query
        .balance(&customer, Some(&last_token))
        .await
        .expect("balance")
        .balance
        .expect("balance");
    for position in [now.index - 1, now.index] {
        let at = query
            .balance_at(
                &customer,
                BalanceAt::Position(proto::token::position(now.partition, position)),
            )
            .await
            .expect("balance at");
        assert_eq!(shown(&at), expected(&customer));
    }

    // ListAccounts and BatchGetAccounts.
    let channel = tonic::transport::Channel::from_shared(format!("http://{}", read.endpoint()))
        .expect("endpoint")
        .connect_lazy();
    let mut raw = QueryServiceClient::new(channel);
    let listed = raw
        .list_accounts(ListAccountsRequest {
            prefix: "rc".into(),
            ..Default::default()
        })
        .await
        .expect("list")
        .into_inner()
        .accounts;
    let batch = raw
        .batch_get_accounts(BatchGetAccountsRequest {
            account_ids: vec![plain.clone(), customer.clone(), "rc-bank".into()],
        })
        .await
        .expect("batch get")
        .into_inner()
        .accounts;
    for accounts in [listed, batch] {
        assert_eq!(accounts.len(), 3);
        for balance in &accounts {
            assert_eq!(shown(balance), expected(&balance.account_id));
        }
    }
}
