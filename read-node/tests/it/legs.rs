//! Multi-leg transfers seen from the read side, driven through the Rust SDK: every leg's
//! balance changes arrive together (one history entry per leg and account, in leg order,
//! under the set's transaction id), `WatchTransfer` shows the set with its legs, a refused
//! set shows its leg and moves nothing, and the read node never stops on either; a set across
//! partitions arrives from every part's log.

use futures::StreamExt as _;
use proto::v1::{TransferLeg, TransferLegsRequest, TransferStatus, TransferUpdate};
use testkit::{WAIT_MAX, accounts_in};
use wallet_client::{QueryClient, Transfer, new_transaction_id};

use crate::harness::SdkCluster;

fn leg(from: &str, to: &str, amount: &str) -> TransferLeg {
    TransferLeg {
        from_account: from.into(),
        to_account: to.into(),
        amount: amount.into(),
        currency: "USD".into(),
    }
}

/// The final update a WatchTransfer stream shows.
async fn final_update(query: &QueryClient, transaction_id: uuid::Uuid) -> TransferUpdate {
    let mut updates = query.watch_transfer(transaction_id).await.expect("watch");
    loop {
        let update = tokio::time::timeout(WAIT_MAX, updates.next())
            .await
            .expect("an update")
            .expect("a stream item")
            .expect("update");
        if update.is_final {
            return update;
        }
    }
}

async fn balance(query: &QueryClient, account: &str, token: &str) -> String {
    query
        .balance(account, Some(token))
        .await
        .expect("balance")
        .balance
        .expect("balance")
        .balance
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_read_node_folds_every_leg_of_a_multi_leg_transfer_together() {
    let partitions = 2;
    let SdkCluster { query, sdk, .. } = &SdkCluster::start(partitions).await;
    let mut in_0 = accounts_in(0, partitions, "rl", 3);
    let (a, b, c) = (in_0.remove(0), in_0.remove(0), in_0.remove(0));
    sdk.open_account("rl-bank", "USD", true)
        .await
        .expect("open");
    for account in [&a, &b, &c] {
        sdk.open_account(account, "USD", false).await.expect("open");
    }
    sdk.transfer(&Transfer {
        transaction_id: new_transaction_id(),
        from: "rl-bank".into(),
        to: a.clone(),
        amount: "50.00".into(),
        currency: "USD".into(),
        ..Default::default()
    })
    .await
    .expect("fund");

    // b has nothing: it passes on what it receives in the same set.
    let paid = new_transaction_id();
    let legs = vec![
        leg(&a, &b, "20.00"),
        leg(&b, &c, "15.00"),
        leg(&a, &c, "5.00"),
    ];
    let response = sdk
        .transfer_legs(TransferLegsRequest {
            transaction_id: paid.hyphenated().to_string(),
            legs: legs.clone(),
            reference: "split-3".into(),
            ..Default::default()
        })
        .await
        .expect("legs");
    let token = response.consistency_token;
    assert_eq!(balance(query, &a, &token).await, "25.00");
    assert_eq!(balance(query, &b, &token).await, "5.00");
    assert_eq!(balance(query, &c, &token).await, "20.00");

    // One history entry per leg and account, under the set's id, in leg order.
    let history = query.history(&b, None, 0).await.expect("history").entries;
    let shown: Vec<(String, String, String)> = history
        .iter()
        .map(|entry| {
            (
                entry.transaction_id.clone(),
                entry.delta.clone(),
                entry.counterparty.clone(),
            )
        })
        .collect();
    let id = paid.hyphenated().to_string();
    assert_eq!(
        shown,
        vec![
            (id.clone(), "-15.00".into(), c.clone()),
            (id.clone(), "20.00".into(), a.clone()),
        ],
        "newest first"
    );

    // WatchTransfer shows the set with its legs, final at once.
    let update = final_update(query, paid).await;
    assert_eq!(update.status(), TransferStatus::Completed);
    assert_eq!(update.legs, legs);
    assert_eq!(
        (
            update.from_account.as_str(),
            update.amount.as_str(),
            update.reference.as_str()
        ),
        ("", "", "split-3")
    );

    // A refused set: recorded with its leg, nothing moves; the read node goes on.
    let refused = new_transaction_id();
    let error = sdk
        .transfer_legs(TransferLegsRequest {
            transaction_id: refused.hyphenated().to_string(),
            legs: vec![leg(&c, &a, "1.00"), leg(&b, &a, "6.00")],
            ..Default::default()
        })
        .await
        .expect_err("refused");
    assert_eq!(
        (error.reason(), error.leg()),
        ("INSUFFICIENT_FUNDS", Some(1))
    );
    let update = final_update(query, refused).await;
    assert_eq!(
        (
            update.status(),
            update.reject_reason.as_str(),
            update.rejected_leg
        ),
        (TransferStatus::Rejected, "INSUFFICIENT_FUNDS", Some(1))
    );
    let after = sdk
        .transfer(&Transfer {
            transaction_id: new_transaction_id(),
            from: a.clone(),
            to: c.clone(),
            amount: "1.00".into(),
            currency: "USD".into(),
            ..Default::default()
        })
        .await
        .expect("a transfer after");
    assert_eq!(balance(query, &a, &after.consistency_token).await, "24.00");
    assert_eq!(balance(query, &b, &after.consistency_token).await, "5.00");

    // A set across partitions: a (partition 0, the home) pays d (partition 1), which passes
    // some on to c. Each part's changes come from its own log; the token names both, so a
    // read of any of the accounts sees the set; WatchTransfer follows the home's record.
    let d = accounts_in(1, partitions, "rl", 1).remove(0);
    sdk.open_account(&d, "USD", false).await.expect("open");
    let across = new_transaction_id();
    let legs = vec![leg(&a, &d, "10.00"), leg(&d, &c, "4.00")];
    let response = sdk
        .transfer_legs(TransferLegsRequest {
            transaction_id: across.hyphenated().to_string(),
            legs: legs.clone(),
            ..Default::default()
        })
        .await
        .expect("legs across partitions");
    let token = response.consistency_token;
    assert_eq!(balance(query, &a, &token).await, "14.00");
    assert_eq!(balance(query, &d, &token).await, "6.00");
    assert_eq!(balance(query, &c, &token).await, "25.00");
    let update = final_update(query, across).await;
    assert_eq!(update.status(), TransferStatus::Completed);
    assert_eq!(update.legs, legs);
    // d's history: its net change, one entry, under the set's id.
    let history = query.history(&d, None, 0).await.expect("history").entries;
    let shown: Vec<(String, String)> = history
        .iter()
        .map(|entry| (entry.transaction_id.clone(), entry.delta.clone()))
        .collect();
    assert_eq!(
        shown,
        vec![(across.hyphenated().to_string(), "6.00".into())]
    );

    // Refused by d's part (10.00 more than it has): nothing moves on either side, and the
    // home's debit of a came back.
    let refused = new_transaction_id();
    let error = sdk
        .transfer_legs(TransferLegsRequest {
            transaction_id: refused.hyphenated().to_string(),
            legs: vec![leg(&a, &c, "1.00"), leg(&d, &a, "16.00")],
            ..Default::default()
        })
        .await
        .expect_err("refused across partitions");
    assert_eq!(
        (error.reason(), error.leg()),
        ("INSUFFICIENT_FUNDS", Some(1))
    );
    let update = final_update(query, refused).await;
    assert_eq!(
        (update.status(), update.rejected_leg),
        (TransferStatus::Rejected, Some(1))
    );
    let after = sdk
        .transfer(&Transfer {
            transaction_id: new_transaction_id(),
            from: d.clone(),
            to: a.clone(),
            amount: "1.00".into(),
            currency: "USD".into(),
            ..Default::default()
        })
        .await
        .expect("a transfer after");
    assert_eq!(balance(query, &a, &after.consistency_token).await, "15.00");
    assert_eq!(balance(query, &d, &after.consistency_token).await, "5.00");
    assert_eq!(balance(query, &c, &token).await, "25.00");
}
