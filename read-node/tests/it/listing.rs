//! Listing and batch reads on a read node: ListAccounts by prefix in pages, BatchGetAccounts
//! and BatchGetTransfers (request order, repeats once, unknown ids listed, limits), and a
//! time range on ListTransfers; bad input gets its documented reason.

use std::time::Duration;

use proto::v1::query_service_client::QueryServiceClient;
use proto::v1::{
    BatchGetAccountsRequest, BatchGetTransfersRequest, ListAccountsRequest, ListTransfersRequest,
    TransferStatus,
};
use testkit::{Cluster, reason, transfer_request};
use tonic::Code;
use tonic::transport::Channel;

use crate::harness::ReadNode;
use crate::id;

fn timestamp(ms: u64) -> prost_types::Timestamp {
    prost_types::Timestamp {
        seconds: (ms / 1_000) as i64,
        nanos: ((ms % 1_000) * 1_000_000) as i32,
    }
}

#[track_caller]
fn refused<T: std::fmt::Debug>(result: Result<T, tonic::Status>, expected: &str) {
    let status = result.expect_err("refused");
    assert_eq!(
        (status.code(), reason(&status).as_str()),
        (Code::InvalidArgument, expected),
        "{status:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn accounts_list_by_prefix_batches_answer_in_order_and_history_filters_by_time() {
    let cluster = Cluster::start_partitioned(3, 4, &[]);
    cluster.wait_leader().await;
    let read = ReadNode::start(&cluster);
    read.wait_serving().await;
    let channel = Channel::from_shared(format!("http://{}", read.endpoint()))
        .expect("endpoint")
        .connect_lazy();
    let mut query = QueryServiceClient::new(channel);

    cluster
        .open_account("ls-bank", "USD", true)
        .await
        .expect("open");
    for account in ["ls/a", "ls/b", "ls/c", "other"] {
        cluster
            .open_account(account, "USD", false)
            .await
            .expect("open");
    }
    // Three payments to ls/a at distinct times; the last one's token makes the read node
    // current for everything before it in ls/a's partition.
    let mut ids = Vec::new();
    let mut token = String::new();
    for amount in ["1.00", "2.00", "3.00"] {
        let transaction_id = id();
        let answer = cluster
            .transfer(&transfer_request(
                &transaction_id,
                "ls-bank",
                "ls/a",
                amount,
                "USD",
            ))
            .await
            .expect("pay");
        ids.push(transaction_id);
        token = answer.consistency_token;
        tokio::time::sleep(Duration::from_millis(30)).await;
    }
    let balance = query
        .get_balance(proto::v1::GetBalanceRequest {
            account_id: "ls/a".into(),
            consistency_token: token,
        })
        .await
        .expect("caught up")
        .into_inner();
    assert_eq!(balance.balance.expect("balance").balance, "6.00");
    // Every opening has reached the read node too (openings come before the payments in
    // their partitions, but not every account shares ls/a's: wait for them).
    for account in ["ls/b", "ls/c", "other"] {
        let deadline = std::time::Instant::now() + testkit::WAIT_MAX;
        while query
            .get_balance(proto::v1::GetBalanceRequest {
                account_id: account.into(),
                consistency_token: String::new(),
            })
            .await
            .is_err()
        {
            assert!(
                std::time::Instant::now() < deadline,
                "{account} never arrived"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    // ListAccounts: by prefix, in id order, page by page.
    let list = |prefix: &str, page_token: String, page_size| ListAccountsRequest {
        prefix: prefix.into(),
        page_token,
        page_size,
    };
    let first = query
        .list_accounts(list("ls/", String::new(), 2))
        .await
        .expect("page 1")
        .into_inner();
    let names = |accounts: &[proto::v1::Balance]| -> Vec<String> {
        accounts
            .iter()
            .map(|account| account.account_id.clone())
            .collect()
    };
    assert_eq!(names(&first.accounts), ["ls/a", "ls/b"]);
    assert_eq!(first.accounts[0].balance, "6.00");
    assert!(!first.next_page_token.is_empty());
    let second = query
        .list_accounts(list("ls/", first.next_page_token.clone(), 2))
        .await
        .expect("page 2")
        .into_inner();
    assert_eq!(names(&second.accounts), ["ls/c"]);
    assert_eq!(second.next_page_token, "");
    let everything = query
        .list_accounts(list("", String::new(), 0))
        .await
        .expect("all")
        .into_inner();
    assert_eq!(
        names(&everything.accounts),
        ["ls-bank", "ls/a", "ls/b", "ls/c", "other"]
    );
    refused(
        query.list_accounts(list("ls/", "a1.zz".into(), 2)).await,
        "INVALID_PAGE_TOKEN",
    );
    // A token of another prefix's listing does not continue this one.
    refused(
        query
            .list_accounts(list("other", first.next_page_token, 2))
            .await,
        "INVALID_PAGE_TOKEN",
    );
    refused(
        query.list_accounts(list("ls/", String::new(), 1_001)).await,
        "PAGE_SIZE_TOO_LARGE",
    );
    refused(
        query.list_accounts(list("ls /", String::new(), 1)).await,
        "INVALID_ACCOUNT_ID",
    );

    // BatchGetAccounts: request order, a repeat once, unknown ids listed.
    let batch = query
        .batch_get_accounts(BatchGetAccountsRequest {
            account_ids: ["ls/b", "nobody", "ls/a", "ls/b"]
                .map(String::from)
                .to_vec(),
        })
        .await
        .expect("batch")
        .into_inner();
    assert_eq!(names(&batch.accounts), ["ls/b", "ls/a"]);
    assert_eq!(batch.not_found, ["nobody"]);
    let too_many = (0..1_001).map(|n| format!("acct-{n}")).collect();
    refused(
        query
            .batch_get_accounts(BatchGetAccountsRequest {
                account_ids: too_many,
            })
            .await,
        "TOO_MANY_ACCOUNTS",
    );
    refused(
        query
            .batch_get_accounts(BatchGetAccountsRequest {
                account_ids: vec![String::new()],
            })
            .await,
        "INVALID_ACCOUNT_ID",
    );

    // BatchGetTransfers.
    let unknown = id();
    let transfers = query
        .batch_get_transfers(BatchGetTransfersRequest {
            transaction_ids: vec![ids[2].clone(), unknown.clone(), ids[0].clone()],
        })
        .await
        .expect("batch")
        .into_inner();
    let found: Vec<(String, TransferStatus, String)> = transfers
        .transfers
        .iter()
        .map(|update| {
            (
                update.transaction_id.clone(),
                update.status(),
                update.amount.clone(),
            )
        })
        .collect();
    assert_eq!(
        found,
        [
            (ids[2].clone(), TransferStatus::Completed, "3.00".into()),
            (ids[0].clone(), TransferStatus::Completed, "1.00".into()),
        ]
    );
    assert_eq!(transfers.not_found, [unknown]);
    refused(
        query
            .batch_get_transfers(BatchGetTransfersRequest {
                transaction_ids: vec!["nope".into()],
            })
            .await,
        "INVALID_TRANSACTION_ID",
    );
    let too_many = (0..1_001).map(|_| id()).collect();
    refused(
        query
            .batch_get_transfers(BatchGetTransfersRequest {
                transaction_ids: too_many,
            })
            .await,
        "TOO_MANY_TRANSFERS",
    );

    // ListTransfers in a time range: exactly the middle payment, then the last two.
    let history = |start: Option<u64>, end: Option<u64>, page_token: String, page_size| {
        ListTransfersRequest {
            account_id: "ls/a".into(),
            page_token,
            page_size,
            start_time: start.map(timestamp),
            end_time: end.map(timestamp),
        }
    };
    let all = query
        .list_transfers(history(None, None, String::new(), 0))
        .await
        .expect("history")
        .into_inner()
        .entries;
    let stamps: Vec<u64> = all.iter().rev().map(|entry| entry.timestamp_ms).collect();
    assert_eq!(stamps.len(), 3);
    assert!(stamps[0] < stamps[1] && stamps[1] < stamps[2], "{stamps:?}");
    let middle = query
        .list_transfers(history(
            Some(stamps[1]),
            Some(stamps[1] + 1),
            String::new(),
            0,
        ))
        .await
        .expect("middle")
        .into_inner();
    assert_eq!(middle.entries.len(), 1);
    assert_eq!(middle.entries[0].transaction_id, ids[1]);
    assert_eq!(middle.next_page_token, "");
    let late = query
        .list_transfers(history(Some(stamps[1]), None, String::new(), 1))
        .await
        .expect("late, page 1")
        .into_inner();
    assert_eq!(late.entries[0].transaction_id, ids[2]);
    let late_2 = query
        .list_transfers(history(Some(stamps[1]), None, late.next_page_token, 1))
        .await
        .expect("late, page 2")
        .into_inner();
    assert_eq!(late_2.entries[0].transaction_id, ids[1]);
    assert_eq!(late_2.next_page_token, "", "the range ends there");
    refused(
        query
            .list_transfers(history(Some(stamps[2]), Some(stamps[0]), String::new(), 0))
            .await,
        "INVALID_TIME_RANGE",
    );
}
