//! A read node following a cluster whose partitions are placed on three of six write nodes:
//! it finds, for each partition, a node that holds it (the others refuse with NOT_LEADER and
//! are skipped at once), and projects every balance exactly; and one following a partition
//! whose replica moves to another node while money moves.

use testkit::{Cluster, transfer_request};
use wallet_client::QueryClient;

use crate::harness::ReadNode;
use crate::{id, read_balance, wait_known};

/// Opens `issuer` (allowed below zero) and `accounts`, each funded with 50.00 USD.
async fn open_and_fund(cluster: &Cluster, issuer: &str, accounts: &[String]) {
    cluster
        .open_account(issuer, "USD", true)
        .await
        .expect("issuer");
    for account in accounts {
        cluster
            .open_account(account, "USD", false)
            .await
            .expect("open");
        let funding = transfer_request(&id(), issuer, account, "50", "USD");
        cluster.transfer(&funding).await.expect("fund");
    }
}

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
    open_and_fund(&cluster, "placed-issuer", &accounts).await;
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

/// The read node's balance of every account reaches the write nodes' (`GetAccount`).
async fn wait_projected(cluster: &Cluster, query: &QueryClient, accounts: &[String]) {
    for account in accounts {
        let authoritative = cluster.account(account).await.expect("GetAccount");
        let deadline = std::time::Instant::now() + testkit::WAIT_MAX;
        while read_balance(query, account, None).await != authoritative.balance_minor {
            assert!(
                std::time::Instant::now() < deadline,
                "{account}: the read node never showed {}",
                authoritative.balance
            );
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_read_node_follows_a_partition_whose_replica_moves() {
    use proto::v1::MoveReplicaRequest;
    use proto::v1::cluster_service_client::ClusterServiceClient;
    const PARTITIONS: u32 = 4;
    let cluster = Cluster::start_partitioned(4, PARTITIONS, &["--replicas", "3"]);
    let leaders = cluster.wait_leaders().await;
    let read = ReadNode::start(&cluster);
    read.wait_serving().await;
    let query = QueryClient::connect([read.endpoint()]).expect("query client");
    let accounts: Vec<String> = testkit::accounts_in(0, PARTITIONS, "moved-read", 3)
        .into_iter()
        .chain(testkit::accounts_in(1, PARTITIONS, "moved-read", 1))
        .collect();
    open_and_fund(&cluster, "moved-issuer", &accounts).await;
    let pay_round = |round: usize| {
        let cluster = &cluster;
        let accounts = &accounts;
        async move {
            for (i, from) in accounts.iter().enumerate() {
                let to = &accounts[(i + 1 + round) % accounts.len()];
                if to != from {
                    let request = transfer_request(&id(), from, to, "1.25", "USD");
                    cluster.transfer(&request).await.expect("transfer");
                }
            }
        }
    };
    pay_round(0).await;
    let mut all = accounts.clone();
    all.push("moved-issuer".into());
    wait_projected(&cluster, &query, &all).await;

    // Partition 0's replica on its leader moves to the node holding none, while money moves
    // in and out of it; the node it left deletes its copy (a subscription there ends).
    let status = cluster.status(1).await.expect("status");
    let replicas = &status.partitions[0].replica_ids;
    let (from, to) = (
        leaders[0],
        (1..=4)
            .find(|node| !replicas.contains(node))
            .expect("a fourth node"),
    );
    let mover = async {
        let deadline = std::time::Instant::now() + testkit::WAIT_MAX;
        loop {
            let leader = cluster.wait_leaders().await[0];
            let channel = tonic::transport::Channel::from_shared(cluster.endpoint(leader))
                .expect("uri")
                .connect_lazy();
            let answer = ClusterServiceClient::new(channel)
                .move_replica(MoveReplicaRequest {
                    partition: 0,
                    from_node_id: from,
                    to_node_id: to,
                })
                .await;
            match answer {
                Ok(answer) => return answer.into_inner().replica_ids,
                Err(status) => assert!(
                    std::time::Instant::now() < deadline,
                    "the move did not complete: {status:?}"
                ),
            }
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
    };
    let (voters, ()) = tokio::join!(mover, async {
        for round in 1..=4 {
            pay_round(round).await;
        }
    });
    assert!(
        voters.contains(&to) && !voters.contains(&from),
        "{voters:?}"
    );
    for round in 5..=8 {
        pay_round(round).await;
    }
    cluster.wait_no_in_flight().await;
    wait_projected(&cluster, &query, &all).await;
}
