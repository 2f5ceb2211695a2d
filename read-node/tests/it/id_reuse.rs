//! "Money safety first", item 2, end to end: a transaction id reused across partitions moves
//! money at most once through any partition that recorded it, in either order and whether the
//! first transfer completed or was rejected; the write and read nodes answer the id the same
//! way; and the read node keeps serving through it all (it used to meet the id's second
//! record, fail its fold, and crash-loop on the same block).

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use futures::StreamExt as _;
use proto::v1::GetTransferRequest;
use tonic::Code;
use uuid::Uuid;
use wallet_client::QueryClient;

use crate::harness::ReadNode;
use testkit::{Cluster, WAIT_MAX, reason, transfer_request};

const PARTITIONS: u32 = 4;

struct Scene {
    cluster: Cluster,
    read: ReadNode,
    query: QueryClient,
    accounts: Vec<String>,
}

impl Scene {
    /// Balances (minor units) on the write side, read linearizably through the leaders.
    async fn written(&self) -> BTreeMap<String, i64> {
        let mut balances = BTreeMap::new();
        for account in &self.accounts {
            let state = self.cluster.account(account).await.expect("GetAccount");
            balances.insert(account.clone(), state.balance_minor);
        }
        balances
    }

    /// Waits until the read node's balances equal the write side's, which must be `expected`.
    async fn check_balances(&self, expected: &BTreeMap<String, i64>, step: &str) {
        assert_eq!(&self.written().await, expected, "write side after {step}");
        let deadline = Instant::now() + WAIT_MAX;
        loop {
            let mut projected = BTreeMap::new();
            for account in &self.accounts {
                if let Ok(response) = self.query.balance(account, None).await {
                    let minor = response.balance.expect("balance").balance_minor;
                    projected.insert(account.clone(), minor);
                }
            }
            if &projected == expected {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "read node after {step}: {projected:?}, write side {expected:?}\n{}",
                self.read.log_tail()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// A transfer that must be refused as a reused id, moving nothing (checked on both sides).
    async fn refused(&self, id: &str, from: &str, to: &str, expected: &BTreeMap<String, i64>) {
        let step = format!("{id}: {from} -> {to}");
        for attempt in ["first", "retry"] {
            let status = self
                .cluster
                .transfer(&transfer_request(id, from, to, "0.10", "USD"))
                .await
                .expect_err("a reused id is refused");
            assert_eq!(
                (status.code(), reason(&status).as_str()),
                (Code::AlreadyExists, "TRANSACTION_ID_REUSED"),
                "{step} ({attempt}): {status:?}"
            );
            self.check_balances(expected, &step).await;
        }
    }

    /// The write node's GetTransfer and the read node's WatchTransfer name the same transfer.
    async fn same_answer(&self, id: &str) -> (String, String, String) {
        let written = self
            .cluster
            .on_leader(|mut client| async move {
                client
                    .get_transfer(GetTransferRequest {
                        transaction_id: id.to_owned(),
                    })
                    .await
            })
            .await
            .expect("GetTransfer")
            .into_inner()
            .transfer
            .expect("transfer");
        let uuid = Uuid::parse_str(id).expect("uuid");
        let deadline = Instant::now() + WAIT_MAX;
        loop {
            let mut watch = self.query.watch_transfer(uuid).await.expect("watch");
            let mut last = None;
            while let Ok(Some(Ok(update))) =
                tokio::time::timeout(Duration::from_secs(5), watch.next()).await
            {
                let is_final = update.is_final;
                last = Some(update);
                if is_final {
                    break;
                }
            }
            let last = last.expect("the read node knows the id");
            let projected = (last.from_account, last.to_account, last.reject_reason);
            let expected = (
                written.from_account.clone(),
                written.to_account.clone(),
                written.reject_reason.clone(),
            );
            if projected == expected {
                return expected;
            }
            assert!(
                Instant::now() < deadline,
                "{id}: read node answers {projected:?}, write node {expected:?}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reused_id_moves_money_once_and_the_read_node_keeps_serving() {
    let cluster = Cluster::start_partitioned(3, PARTITIONS, &[]);
    cluster.wait_leader().await;
    let read = ReadNode::start(&cluster);
    read.wait_serving().await;
    let query = QueryClient::connect([read.endpoint()]).expect("query client");

    // a and b share partition 0; c lives in 1, d in 2.
    let [a, b]: [String; 2] = testkit::accounts_in(0, PARTITIONS, "acct", 2)
        .try_into()
        .unwrap();
    let c = testkit::accounts_in(1, PARTITIONS, "acct", 1).remove(0);
    let d = testkit::accounts_in(2, PARTITIONS, "acct", 1).remove(0);
    cluster.open_funded_usd(&[&a, &b, &c, &d], "10.00").await;
    let scene = Scene {
        cluster,
        read,
        query,
        accounts: [&a, &b, &c, &d].map(String::clone).to_vec(),
    };
    let mut expected: BTreeMap<String, i64> = scene
        .accounts
        .iter()
        .map(|account| (account.clone(), 1000))
        .collect();
    scene.check_balances(&expected, "funding").await;
    let mut pay = |from: &str, to: &str, minor: i64| {
        *expected.get_mut(from).unwrap() -= minor;
        *expected.get_mut(to).unwrap() += minor;
        expected.clone()
    };

    // Inside partition 0 first, then across partitions through it, both directions.
    let x = Uuid::new_v4().to_string();
    scene
        .cluster
        .transfer(&transfer_request(&x, &a, &b, "1.00", "USD"))
        .await
        .expect("a -> b");
    let now = pay(&a, &b, 100);
    scene.check_balances(&now, "x: a -> b").await;
    scene.refused(&x, &c, &a, &now).await; // into the partition that recorded it
    scene.refused(&x, &b, &c, &now).await; // out of it

    // Across partitions first (1 -> 0), then inside either partition, or into one of them.
    let y = Uuid::new_v4().to_string();
    scene
        .cluster
        .transfer(&transfer_request(&y, &c, &a, "2.00", "USD"))
        .await
        .expect("c -> a");
    let now = pay(&c, &a, 200);
    scene.check_balances(&now, "y: c -> a").await;
    scene.refused(&y, &a, &b, &now).await; // inside the target
    scene.refused(&y, &d, &a, &now).await; // from a third partition into the target
    scene.refused(&y, &d, &c, &now).await; // from a third partition into the source

    // A rejected first transfer takes the id too; the retry of the rejection stays the same.
    let z = Uuid::new_v4().to_string();
    let rejected = scene
        .cluster
        .transfer(&transfer_request(&z, &a, &b, "1000.00", "USD"))
        .await
        .expect_err("insufficient funds");
    assert_eq!(reason(&rejected), "INSUFFICIENT_FUNDS");
    scene.refused(&z, &c, &a, &now).await;
    let again = scene
        .cluster
        .transfer(&transfer_request(&z, &a, &b, "1000.00", "USD"))
        .await
        .expect_err("the same rejection");
    assert_eq!(reason(&again), "INSUFFICIENT_FUNDS");
    // Both nodes answer z with the first transfer (c's refused attempt was recorded by
    // partition 1 as rejected with TRANSACTION_ID_REUSED, which never wins).
    assert_eq!(
        scene.same_answer(&z).await,
        (a.clone(), b.clone(), "INSUFFICIENT_FUNDS".to_string())
    );

    // The documented scope: partitions all different (0 -> 0, then 1 -> 2) are not compared.
    // Each moves money once; the read node folds both records and keeps serving; both
    // nodes answer the id with the lowest source partition's record.
    let w = Uuid::new_v4().to_string();
    scene
        .cluster
        .transfer(&transfer_request(&w, &a, &b, "0.50", "USD"))
        .await
        .expect("w: a -> b");
    pay(&a, &b, 50);
    scene
        .cluster
        .transfer(&transfer_request(&w, &c, &d, "0.25", "USD"))
        .await
        .expect("w: c -> d (disjoint partitions)");
    let now = pay(&c, &d, 25);
    scene.check_balances(&now, "w twice, disjoint").await;
    assert_eq!(
        scene.same_answer(&w).await,
        (a.clone(), b.clone(), String::new())
    );

    // The read node still serves and follows every partition: a new transfer's token is
    // honoured, and it reports SERVING.
    let done = scene
        .cluster
        .transfer(&transfer_request(
            &Uuid::new_v4().to_string(),
            &d,
            &a,
            "0.01",
            "USD",
        ))
        .await
        .expect("d -> a");
    let balance = scene
        .query
        .balance(&a, Some(&done.consistency_token))
        .await
        .expect("read-your-writes after the reuses")
        .balance
        .expect("balance");
    assert_eq!(balance.balance_minor, now[&a] + 1);
    scene.read.wait_serving().await;
}
