//! Account lifecycle on a real cluster: freeze and unfreeze, overdraft limits, close, each
//! call through a node that does not lead the account's partition (forwarded) as well as
//! the leader; a credit from another partition into a frozen account refunded; every
//! refusal with its documented code and reason and nothing changed; the settings survive a
//! restart of every node, and the replicas agree.

use proto::v1::{
    Account, AccountStatus, CloseAccountRequest, FreezeAccountRequest, SetOverdraftLimitRequest,
    UnfreezeAccountRequest,
};
use testkit::{Cluster, reason, transfer_request};
use tonic::{Code, Status};

use crate::{Spread, id, refused};

/// The lifecycle calls, each answered with the account after it.
enum Change<'a> {
    Freeze(&'a str),
    Unfreeze(&'a str),
    Close(&'a str),
    Limit(&'a str, &'a str, &'a str),
}

async fn change(cluster: &Cluster, node: u64, change: Change<'_>) -> Result<Account, Status> {
    let mut client = cluster.wallet(node).await;
    let account = match change {
        Change::Freeze(account_id) => {
            client
                .freeze_account(FreezeAccountRequest {
                    account_id: account_id.into(),
                })
                .await?
                .into_inner()
                .account
        }
        Change::Unfreeze(account_id) => {
            client
                .unfreeze_account(UnfreezeAccountRequest {
                    account_id: account_id.into(),
                })
                .await?
                .into_inner()
                .account
        }
        Change::Close(account_id) => {
            client
                .close_account(CloseAccountRequest {
                    account_id: account_id.into(),
                })
                .await?
                .into_inner()
                .account
        }
        Change::Limit(account_id, limit, currency) => {
            client
                .set_overdraft_limit(SetOverdraftLimitRequest {
                    account_id: account_id.into(),
                    overdraft_limit: limit.into(),
                    currency: currency.into(),
                })
                .await?
                .into_inner()
                .account
        }
    };
    Ok(account.expect("an account change answers with the account"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn accounts_freeze_take_overdrafts_and_close_for_good() {
    let spread = Spread::start("life").await;
    let (cluster, leader, follower) = (&spread.cluster, spread.leader(), spread.follower());
    let (a, b, c) = (&spread.a, &spread.b, &spread.c);
    let pay = async |from: &str, to: &str, amount: &str| {
        cluster
            .transfer(&transfer_request(&id(), from, to, amount, "USD"))
            .await
    };

    // Freeze (forwarded from a follower): the account neither sends nor receives, within
    // its partition or from another one; the answers name the side.
    let frozen = change(cluster, follower, Change::Freeze(a))
        .await
        .expect("freeze");
    assert_eq!(frozen.status(), AccountStatus::Frozen);
    assert_eq!(
        cluster.account(a).await.unwrap().status(),
        AccountStatus::Frozen
    );
    let sent = pay(a, b, "1.00").await;
    refused(sent, Code::FailedPrecondition, "ACCOUNT_FROZEN");
    let received = pay(b, a, "1.00").await.expect_err("frozen");
    assert_eq!(reason(&received), "ACCOUNT_FROZEN");
    let credit = pay(c, a, "5.00").await.expect_err("credit refused");
    assert_eq!(reason(&credit), "ACCOUNT_FROZEN");
    cluster.wait_no_in_flight().await;
    assert_eq!(
        cluster.account(c).await.unwrap().balance,
        "100.00",
        "refunded"
    );
    // Freezing again answers the account and changes nothing.
    let again = change(cluster, leader, Change::Freeze(a)).await.unwrap();
    assert_eq!(
        (again.status(), again.balance, again.overdraft_limit),
        (
            AccountStatus::Frozen,
            "100.00".to_owned(),
            "0.00".to_owned()
        )
    );
    change(cluster, leader, Change::Unfreeze(a))
        .await
        .expect("unfreeze");
    pay(a, b, "10.00").await.expect("active again");

    // An overdraft limit: the account may go that far below zero, no further.
    let limited = change(cluster, follower, Change::Limit(a, "50.00", "USD"))
        .await
        .expect("limit");
    assert_eq!(limited.overdraft_limit, "50.00");
    let too_far = pay(a, b, "140.01").await;
    refused(too_far, Code::FailedPrecondition, "INSUFFICIENT_FUNDS");
    pay(a, b, "140.00").await.expect("within the limit");
    assert_eq!(cluster.account(a).await.unwrap().balance, "-50.00");
    refused(
        change(cluster, leader, Change::Limit("issuer", "5.00", "USD")).await,
        Code::FailedPrecondition,
        "OVERDRAFT_UNLIMITED",
    );
    refused(
        change(cluster, leader, Change::Limit(a, "5.00", "EUR")).await,
        Code::FailedPrecondition,
        "CURRENCY_MISMATCH",
    );
    for bad in ["-1.00", "abc", "1.001", "", "10000000000000.01"] {
        let answer = change(cluster, leader, Change::Limit(a, bad, "USD")).await;
        assert_eq!(
            answer.expect_err(bad).code(),
            Code::InvalidArgument,
            "{bad:?}"
        );
    }

    // Close: only when empty; then final.
    refused(
        change(cluster, follower, Change::Close(a)).await,
        Code::FailedPrecondition,
        "ACCOUNT_NOT_EMPTY",
    );
    pay(b, a, "50.00").await.expect("pay the debt back");
    let unlimited = change(cluster, leader, Change::Limit(a, "0", "USD"))
        .await
        .expect("no overdraft");
    assert_eq!(unlimited.overdraft_limit, "0.00");
    let closed = change(cluster, follower, Change::Close(a))
        .await
        .expect("close at zero");
    assert_eq!(closed.status(), AccountStatus::Closed);
    refused(
        change(cluster, leader, Change::Unfreeze(a)).await,
        Code::FailedPrecondition,
        "ACCOUNT_CLOSED",
    );
    refused(
        pay(b, a, "1.00").await,
        Code::FailedPrecondition,
        "ACCOUNT_CLOSED",
    );
    refused(
        change(cluster, leader, Change::Freeze("nobody-at-all")).await,
        Code::NotFound,
        "ACCOUNT_NOT_FOUND",
    );
    refused(
        change(cluster, leader, Change::Freeze("has space")).await,
        Code::InvalidArgument,
        "INVALID_ACCOUNT_ID",
    );
    let before = (
        cluster.account(a).await.unwrap(),
        cluster.account(b).await.unwrap(),
    );

    // Settings survive a restart of every node (snapshot or replay), and replicas agree.
    change(cluster, leader, Change::Freeze(c))
        .await
        .expect("freeze c");
    for node in 1..=3 {
        cluster.kill(node);
    }
    for node in 1..=3 {
        cluster.start_node(node);
    }
    cluster.wait_leaders().await;
    let after = (
        cluster.account(a).await.unwrap(),
        cluster.account(b).await.unwrap(),
    );
    assert_eq!(after, before);
    assert_eq!(
        cluster.account(c).await.unwrap().status(),
        AccountStatus::Frozen
    );
    cluster.wait_replicas_agree().await;
}
