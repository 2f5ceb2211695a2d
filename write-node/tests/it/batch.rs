//! TransferBatch: one result per item, in request order, each decided as the unary Transfer
//! would decide it; a retried batch moves no money twice; a batch of the wrong size changes
//! nothing.

use proto::v1::{TransferBatchRequest, TransferRequest, TransferResult};
use tonic::Code;

use testkit::{Cluster, reason, transfer_request};

use crate::{Spread, id};

async fn batch(
    cluster: &Cluster,
    node: u64,
    transfers: Vec<TransferRequest>,
) -> Vec<TransferResult> {
    let count = transfers.len();
    let results = cluster
        .wallet(node)
        .await
        .transfer_batch(TransferBatchRequest { transfers })
        .await
        .expect("TransferBatch")
        .into_inner()
        .results;
    assert_eq!(results.len(), count, "a result per request");
    results
}

/// (status, reason) of a result.
fn verdict(result: &TransferResult) -> (&str, &str) {
    let reason = result.error.as_ref().map_or("", |e| e.reason.as_str());
    (result.status.as_str(), reason)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_answers_every_item_as_transfer_would_and_a_retry_moves_nothing_twice() {
    // `c`'s partition is led by another node: the cross-partition leg, and the item this
    // node forwards to that leader.
    let spread = Spread::start("batch").await;
    let (cluster, leader) = (&spread.cluster, spread.leader());
    let (a, b, c) = (&spread.a, &spread.b, &spread.c);

    let first = id();
    let cross = id();
    let elsewhere = id();
    let items = vec![
        transfer_request(&first, a, b, "1.00", "USD"),
        // The same transfer again in the same batch: the same outcome, applied once.
        transfer_request(&first, a, b, "1.00", "USD"),
        transfer_request(&id(), a, b, "1.001", "USD"),
        transfer_request(&id(), a, b, "1000.00", "USD"),
        transfer_request(&cross, a, c, "2.00", "USD"),
        // The first id with other parameters.
        transfer_request(&first, a, b, "3.00", "USD"),
        // Debits an account of a partition this node does not lead.
        transfer_request(&elsewhere, c, a, "0.50", "USD"),
        transfer_request(&id(), a, b, "1.00", "EUR"),
    ];
    let expected = [
        ("success", ""),
        ("success", ""),
        ("rejected", "INVALID_AMOUNT"),
        ("rejected", "INSUFFICIENT_FUNDS"),
        ("success", ""),
        ("rejected", "TRANSACTION_ID_REUSED"),
        ("success", ""),
        ("rejected", "CURRENCY_MISMATCH"),
    ];
    let balances = async || {
        let mut out = Vec::new();
        for account in [&a, &b, &c] {
            out.push(cluster.account(account).await.expect("account").balance);
        }
        out
    };
    // Which results an earlier entry decided: on the retry, everything recorded (success and
    // rejection, the forwarded item too), not what the edge refused or the conflict; the
    // second copy of `first` and the cross-partition item (its settle may still be in flight)
    // are left out.
    let replayed_on_retry = [
        Some(true),
        None,
        Some(false),
        Some(true),
        None,
        Some(false),
        Some(true),
        Some(true),
    ];
    for round in ["first", "retry"] {
        let results = batch(cluster, leader, items.clone()).await;
        for (i, (result, want)) in results.iter().zip(replayed_on_retry).enumerate() {
            let want = if round == "first" {
                want.map(|_| false)
            } else {
                want
            };
            if let Some(want) = want {
                assert_eq!(result.replayed, want, "{round} item {i}: {result:?}");
            }
        }
        for ((result, request), want) in results.iter().zip(&items).zip(expected) {
            assert_eq!(result.transaction_id, request.transaction_id, "{round}");
            assert_eq!(verdict(result), want, "{round}: {request:?} -> {result:?}");
            assert_eq!(
                result.consistency_token.is_empty(),
                result.status != "success",
                "{round}: {result:?}"
            );
        }
        // a: 100 - 1 - 2 + 0.5; b: 100 + 1; c: 100 + 2 - 0.5, whatever the number of batches.
        assert_eq!(balances().await, ["97.50", "101.00", "101.50"], "{round}");
        assert_eq!(
            results[0].consistency_token, results[1].consistency_token,
            "one transfer, one position"
        );
    }
    let forwarded = cluster.get_transfer(&elsewhere).await.expect("forwarded");
    assert_eq!(
        forwarded.status,
        proto::v1::TransferStatus::Completed as i32
    );

    // Empty and oversized batches are refused whole, and decide nothing.
    let mut wallet = cluster.wallet(leader).await;
    let empty = wallet
        .transfer_batch(TransferBatchRequest { transfers: vec![] })
        .await
        .expect_err("empty");
    assert_eq!(
        (empty.code(), reason(&empty).as_str()),
        (Code::InvalidArgument, "INVALID_BATCH_SIZE")
    );
    let oversized: Vec<TransferRequest> = (0..=proto::TRANSFER_BATCH_MAX)
        .map(|_| transfer_request(&id(), a, b, "0.01", "USD"))
        .collect();
    let probe = oversized[0].transaction_id.clone();
    let refused = wallet
        .transfer_batch(TransferBatchRequest {
            transfers: oversized,
        })
        .await
        .expect_err("oversized");
    assert_eq!(
        (refused.code(), reason(&refused).as_str()),
        (Code::InvalidArgument, "INVALID_BATCH_SIZE")
    );
    assert_eq!(
        cluster
            .get_transfer(&probe)
            .await
            .expect_err("not decided")
            .code(),
        Code::NotFound
    );
    assert_eq!(balances().await, ["97.50", "101.00", "101.50"]);
    cluster.wait_replicas_agree().await;
}
