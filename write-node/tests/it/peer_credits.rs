//! "Money safety first", item 3: `PeerService/Credit` checks what a peer sends exactly as the
//! public edge checks a client (amount range, ids, `from != to`, the credited account in the
//! partition asked, the debited one elsewhere). A malformed credit used to reach the log and
//! panic every replica on apply, again on every restart; now it is answered INVALID_ARGUMENT
//! and nothing reaches the log. (The cluster here runs without TLS, as `walletctl dev` does,
//! so the peer port is open to this test like to any process on the pod network.)

use std::time::Duration;

use ledger::{Currency, TransferCommand};
use proto::internal::CreditRequest;
use proto::internal::peer_service_client::PeerServiceClient;
use tonic::Code;
use tonic::transport::Endpoint;
use uuid::Uuid;

use testkit::{Cluster, reason};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_peer_credits_are_refused_and_change_nothing() {
    let cluster = Cluster::start(3);
    cluster.wait_leaders().await;
    let [to, local]: [String; 2] = testkit::accounts_in(3, 8, "peer", 2).try_into().unwrap();
    let remote = testkit::accounts_in(5, 8, "peer", 1).remove(0);
    cluster
        .open_funded_usd(&[&to, &local, &remote], "1.00")
        .await;
    cluster.wait_no_in_flight().await;
    let before = cluster.wait_replicas_agree().await;

    let usd = Currency::parse("USD").unwrap();
    let good = TransferCommand {
        transaction_id: Uuid::new_v4(),
        from: remote.clone(),
        to: to.clone(),
        amount_minor: 100,
        currency: usd,
        annotations: None,
    };
    let encode = |transfer: &TransferCommand| postcard::to_stdvec(transfer).unwrap();
    let cases: Vec<(Vec<u8>, &str)> = vec![
        (
            encode(&TransferCommand {
                amount_minor: 0,
                ..good.clone()
            }),
            "AMOUNT_OUT_OF_RANGE",
        ),
        (
            encode(&TransferCommand {
                amount_minor: -100,
                ..good.clone()
            }),
            "AMOUNT_OUT_OF_RANGE",
        ),
        (
            encode(&TransferCommand {
                amount_minor: ledger::AMOUNT_MINOR_MAX + 1,
                ..good.clone()
            }),
            "AMOUNT_OUT_OF_RANGE",
        ),
        (
            encode(&TransferCommand {
                from: to.clone(),
                ..good.clone()
            }),
            "SAME_ACCOUNT",
        ),
        (
            encode(&TransferCommand {
                transaction_id: Uuid::nil(),
                ..good.clone()
            }),
            "NIL_TRANSACTION_ID",
        ),
        (
            encode(&TransferCommand {
                from: "bad id".into(),
                ..good.clone()
            }),
            "INVALID_ACCOUNT_ID",
        ),
        (
            encode(&TransferCommand {
                from: String::new(),
                ..good.clone()
            }),
            "INVALID_ACCOUNT_ID",
        ),
        // A credit from an account of the credited partition is not a credit at all: it
        // would mint money with no debit anywhere.
        (
            encode(&TransferCommand {
                from: local.clone(),
                ..good.clone()
            }),
            "WRONG_PARTITION",
        ),
        // The credited account must live in the partition asked.
        (
            encode(&TransferCommand {
                to: remote.clone(),
                from: to.clone(),
                ..good.clone()
            }),
            "WRONG_PARTITION",
        ),
        (vec![0xff; 7], "MALFORMED_MESSAGE"),
    ];
    for node in 1..=3 {
        let channel = Endpoint::from_shared(cluster.endpoint(node))
            .unwrap()
            .timeout(Duration::from_secs(10))
            .connect_lazy();
        let mut peer = PeerServiceClient::new(channel);
        for (bytes, expected) in &cases {
            // Alone, and behind a well-formed credit in the same batch: the whole batch is
            // refused before anything is proposed.
            for transfers in [vec![bytes.clone()], vec![encode(&good), bytes.clone()]] {
                let status = peer
                    .credit(CreditRequest {
                        partition: 3,
                        transfers,
                    })
                    .await
                    .expect_err("a malformed credit is refused");
                assert_eq!(
                    (status.code(), reason(&status).as_str()),
                    (Code::InvalidArgument, *expected),
                    "node {node}: {status:?}"
                );
            }
        }
    }
    // Nothing reached any log: every partition's applied index and state digest are as they
    // were, and every node is alive (a committed malformed credit used to panic them all).
    let after = cluster.wait_replicas_agree().await;
    assert_eq!(after, before, "malformed credits changed replicated state");
    assert_eq!(cluster.running().len(), 3, "{}", cluster.logs());
    assert_eq!(cluster.account(&to).await.expect("to").balance_minor, 100);
}
