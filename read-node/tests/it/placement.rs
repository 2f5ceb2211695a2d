//! A read node following a cluster whose partitions are placed on three of six write nodes:
//! it finds, for each partition, a node that holds it (the others refuse with NOT_LEADER and
//! are skipped at once), and projects every balance exactly.

use testkit::{Cluster, transfer_request};
use wallet_client::QueryClient;

use crate::harness::ReadNode;
use crate::{id, read_balance, wait_known};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_read_node_follows_partitions_placed_on_three_of_six_nodes() {
    let cluster = Cluster::start_with(6, &["--replicas", "3"]);
    let leaders = cluster.wait_leaders().await;
    let partitions = leaders.len() as u32;
    let read = ReadNode::start(&cluster);
    read.wait_serving().await;
    let query = QueryClient::connect([read.endpoint()]).expect("query client");

    let accounts: Vec<String> = (0..partitions)
        .map(|p| testkit::accounts_in(p, partitions, "placed-read", 1).remove(0))
        .collect();
    cluster
        .open_account("placed-issuer", "USD", true)
        .await
        .expect("issuer");
    for account in &accounts {
        cluster
            .open_account(account, "USD", false)
            .await
            .expect("open");
        let funding = transfer_request(&id(), "placed-issuer", account, "50", "USD");
        cluster.transfer(&funding).await.expect("fund");
    }
    // Every account pays the next one, across partitions.
    let mut last_token = String::new();
    for (i, from) in accounts.iter().enumerate() {
        let to = &accounts[(i + 1) % accounts.len()];
        let request = transfer_request(&id(), from, to, "7.50", "USD");
        last_token = cluster
            .transfer(&request)
            .await
            .expect("transfer")
            .consistency_token;
    }
    cluster.wait_no_in_flight().await;
    let known: Vec<&str> = accounts.iter().map(String::as_str).collect();
    wait_known(&query, &known).await;
    read_balance(&query, &accounts[0], Some(&last_token)).await;
    for account in accounts.iter().map(String::as_str).chain(["placed-issuer"]) {
        let authoritative = cluster.account(account).await.expect("GetAccount");
        let deadline = std::time::Instant::now() + testkit::WAIT_MAX;
        while read_balance(&query, account, None).await != authoritative.balance_minor {
            assert!(
                std::time::Instant::now() < deadline,
                "{account}: the read node never showed {}",
                authoritative.balance
            );
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
        if account != "placed-issuer" {
            assert_eq!(authoritative.balance_minor, 5_000, "{account}");
        }
    }
}
