//! One endpoint is enough: a node forwards the writes of partitions it does not lead to their
//! leaders, once, passing back the leader's answer; a forwarded call goes no further; a
//! forward that gets no answer is indefinite, and its retry moves money once.

use proto::v1::{OpenAccountRequest, TransferBatchRequest, TransferRequest};
use tokio_stream::StreamExt as _;
use tonic::{Code, Request};
use tonic_types::StatusExt as _;
use write_node::forward::NO_FORWARD;

use testkit::{Cluster, accounts_in, reason, transfer_request};

use crate::id;

/// Every write of this test goes through `node` alone, a follower of most partitions.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_node_serves_every_write_by_forwarding_to_the_leaders() {
    let cluster = Cluster::start(3);
    let leaders = cluster.wait_leaders().await;
    let partitions = leaders.len() as u32;
    let node = 1;
    assert!(
        leaders.iter().any(|&leader| leader != node),
        "node {node} leads every partition: {leaders:?}"
    );
    let mut wallet = cluster.wallet(node).await;
    let accounts: Vec<String> = (0..partitions)
        .map(|p| accounts_in(p, partitions, "one-endpoint", 1).remove(0))
        .collect();
    let issuer = accounts_in(partitions - 1, partitions, "one-endpoint-issuer", 1).remove(0);

    // Unary and streamed openings.
    wallet
        .open_account(OpenAccountRequest {
            account_id: issuer.clone(),
            currency: "USD".into(),
            allow_negative_balance: true,
            ..Default::default()
        })
        .await
        .expect("issuer opened through node 1");
    let openings = accounts.iter().map(|account| OpenAccountRequest {
        account_id: account.clone(),
        currency: "USD".into(),
        allow_negative_balance: false,
        ..Default::default()
    });
    let opened: Vec<_> = wallet
        .open_accounts(tokio_stream::iter(openings.collect::<Vec<_>>()))
        .await
        .expect("OpenAccounts")
        .into_inner()
        .collect()
        .await;
    for result in &opened {
        let result = result.as_ref().expect("result");
        assert_eq!(result.status, "success", "{result:?}");
    }

    // Unary transfers: every account funded from the issuer (mostly across partitions); a
    // retry with the same id answers the same through the same node.
    let mut funding = Vec::new();
    for account in &accounts {
        let request = transfer_request(&id(), &issuer, account, "100.00", "USD");
        let answer = wallet.transfer(request.clone()).await.expect("funded");
        funding.push((request, answer.into_inner()));
    }
    for (request, first) in &funding {
        let again = wallet
            .transfer(request.clone())
            .await
            .expect("retry")
            .into_inner();
        // The same answer; `replayed` once the first is settled (a cross-partition one may
        // still be settling, then this call drives it and it is not a replay).
        assert!(!first.replayed);
        let same = proto::v1::TransferResponse {
            replayed: false,
            ..again
        };
        assert_eq!(same, *first);
    }

    // A batch and a stream, each moving 1.00 from every account to the next one.
    let ring = |amount: &str| -> Vec<TransferRequest> {
        (0..accounts.len())
            .map(|i| {
                let to = &accounts[(i + 1) % accounts.len()];
                transfer_request(&id(), &accounts[i], to, amount, "USD")
            })
            .collect()
    };
    let batch = wallet
        .transfer_batch(TransferBatchRequest {
            transfers: ring("1.00"),
        })
        .await
        .expect("TransferBatch")
        .into_inner();
    let streamed: Vec<_> = wallet
        .submit_transfers(tokio_stream::iter(ring("2.00")))
        .await
        .expect("SubmitTransfers")
        .into_inner()
        .collect()
        .await;
    for result in batch
        .results
        .iter()
        .chain(streamed.iter().map(|r| r.as_ref().expect("result")))
    {
        assert_eq!(result.status, "success", "{result:?}");
        assert!(!result.consistency_token.is_empty(), "{result:?}");
    }

    // Each account got its 100.00 and passed on as much as it received: every balance exact,
    // the issuer's too.
    for account in &accounts {
        assert_eq!(
            cluster.account_on(node, account).await.unwrap().balance,
            "100.00"
        );
    }
    let issued = -100 * accounts.len() as i64;
    assert_eq!(
        cluster
            .account_on(node, &issuer)
            .await
            .unwrap()
            .balance_minor,
        issued * 100
    );
    cluster.wait_replicas_agree().await;
}

/// Two accounts of partition 0, funded with 10.00 each, its leader and a follower.
struct Pair {
    leader: u64,
    follower: u64,
    a: String,
    b: String,
}

async fn pair_in_partition_0(prefix: &str) -> (Cluster, Pair) {
    let cluster = Cluster::start(3);
    let leaders = cluster.wait_leaders().await;
    let leader = leaders[0];
    let follower = (1..=3).find(|&node| node != leader).expect("a follower");
    let mut in_p = accounts_in(0, leaders.len() as u32, prefix, 2);
    let (a, b) = (in_p.remove(0), in_p.remove(0));
    cluster.open_funded_usd(&[&a, &b], "10.00").await;
    let pair = Pair {
        leader,
        follower,
        a,
        b,
    };
    (cluster, pair)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_forwarded_write_goes_no_further_and_bad_input_stays_where_it_arrived() {
    let (
        cluster,
        Pair {
            leader,
            follower,
            a,
            b,
        },
    ) = pair_in_partition_0("no-further").await;

    // A call that was itself forwarded (or whose client routes by itself), reaching a node
    // that does not lead: NOT_LEADER, with the leader's address, and nothing proposed.
    let transaction_id = id();
    let mut request = Request::new(transfer_request(&transaction_id, &a, &b, "1.00", "USD"));
    request
        .metadata_mut()
        .insert(NO_FORWARD, "9".parse().expect("ascii"));
    let refused = cluster
        .wallet(follower)
        .await
        .transfer(request)
        .await
        .expect_err("goes no further");
    assert_eq!(
        (refused.code(), reason(&refused).as_str()),
        (Code::Unavailable, "NOT_LEADER")
    );
    let info = refused.get_details_error_info().expect("error info");
    assert_eq!(info.metadata.get("leader_id"), Some(&leader.to_string()));
    let address = cluster.endpoint(leader);
    let address = address.trim_start_matches("http://");
    assert_eq!(
        info.metadata.get("leader_address").map(String::as_str),
        Some(address)
    );
    let missing = cluster
        .get_transfer(&transaction_id)
        .await
        .expect_err("not proposed");
    assert_eq!(missing.code(), Code::NotFound);

    // Invalid input is refused by the node it reaches, with the field at fault, as the leader
    // would refuse it.
    let invalid = cluster
        .wallet(follower)
        .await
        .transfer(transfer_request(&id(), &a, &b, "1.001", "USD"))
        .await
        .expect_err("invalid amount");
    assert_eq!(
        (invalid.code(), reason(&invalid).as_str()),
        (Code::InvalidArgument, "INVALID_AMOUNT")
    );
    let field = invalid.get_details_bad_request().expect("bad request");
    assert_eq!(field.field_violations[0].field, "amount");

    // A definite refusal by the leader comes back as the leader gave it, and its retry says
    // the refusal was decided before (ErrorInfo metadata `replayed`).
    let overdraft = transfer_request(&id(), &a, &b, "1000.00", "USD");
    let mut replays = Vec::new();
    for _ in 0..2 {
        let broke = cluster
            .wallet(follower)
            .await
            .transfer(overdraft.clone())
            .await
            .expect_err("insufficient funds");
        assert_eq!(
            (broke.code(), reason(&broke).as_str()),
            (Code::FailedPrecondition, "INSUFFICIENT_FUNDS")
        );
        let info = broke.get_details_error_info().expect("error info");
        replays.push(info.metadata.get("replayed").cloned());
    }
    assert_eq!(replays, [None, Some("true".to_owned())]);
    // A success's retry says so in the response.
    let paid = transfer_request(&id(), &a, &b, "1.00", "USD");
    let mut wallet = cluster.wallet(follower).await;
    let first = wallet
        .transfer(paid.clone())
        .await
        .expect("paid")
        .into_inner();
    let again = wallet.transfer(paid).await.expect("replayed").into_inner();
    assert_eq!((first.replayed, again.replayed), (false, true));
    assert_eq!(first.consistency_token, again.consistency_token);
    assert_eq!(
        cluster.account_on(follower, &a).await.unwrap().balance,
        "9.00"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_write_forwarded_to_a_killed_leader_is_indefinite_and_its_retry_moves_money_once() {
    let (
        cluster,
        Pair {
            leader,
            follower,
            a,
            b,
        },
    ) = pair_in_partition_0("forward-kill").await;
    let mut wallet = cluster.wallet(follower).await;
    // The follower's connection to the leader is up (the first forward made it).
    let warm = transfer_request(&id(), &a, &b, "1.00", "USD");
    wallet.transfer(warm).await.expect("forwarded");

    cluster.kill(leader);
    // The follower still names the dead node as leader until an election: its forward gets
    // no answer, so the outcome is unknown to it.
    let request = transfer_request(&id(), &a, &b, "2.00", "USD");
    let lost = wallet
        .transfer(request.clone())
        .await
        .expect_err("leader gone");
    assert_eq!(
        (lost.code(), reason(&lost).as_str()),
        (Code::Unavailable, "FORWARD_FAILED"),
        "{lost:?}"
    );
    // The caller retries with the same id (here always through the same node) until a new
    // leader answers: the money moves once.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    let answer = loop {
        match wallet.transfer(request.clone()).await {
            Ok(answer) => break answer.into_inner(),
            Err(status) if status.code() == Code::Unavailable => {
                assert!(
                    std::time::Instant::now() < deadline,
                    "no leader: {status:?}"
                );
                tokio::time::sleep(std::time::Duration::from_millis(100)).await;
            }
            Err(status) => panic!("{status:?}"),
        }
    };
    assert_eq!(answer.status, "success");
    assert_eq!(
        cluster.account_on(follower, &a).await.unwrap().balance,
        "7.00"
    );
    assert_eq!(
        cluster.account_on(follower, &b).await.unwrap().balance,
        "13.00"
    );
}
