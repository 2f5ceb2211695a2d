//! Partitions placed on a subset of the write nodes: six nodes, three replicas of each
//! partition. Each node holds and applies only its partitions, and still answers for every
//! one (forwarding writes, reading records from the replicas, telling callers where to go).

use std::collections::{BTreeMap, BTreeSet};

use proto::v1::{GetAccountRequest, GetTransferRequest, OpenAccountRequest};
use testkit::metrics::{scrape, sum};
use testkit::{Cluster, accounts_in, reason, transfer_request};
use tonic::Code;
use tonic_types::StatusExt as _;
use write_node::forward::NO_FORWARD;

use crate::id;

const NODES: u64 = 6;
const REPLICAS: usize = 3;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn six_nodes_hold_three_replicas_each_and_apply_half_of_the_entries() {
    let cluster = Cluster::start_with(NODES, &["--replicas", "3"]);
    let leaders = cluster.wait_leaders().await;
    let partitions = leaders.len() as u32;

    // Placement: every partition on exactly three nodes, the same on every node's view, each
    // node holding its share (8 x 3 / 6 = 4), every leader one of the partition's replicas.
    let mut statuses = BTreeMap::new();
    for node in 1..=NODES {
        statuses.insert(node, cluster.status(node).await.expect("status").partitions);
    }
    let mut held: BTreeMap<u64, usize> = BTreeMap::new();
    let mut replicas_of = Vec::new();
    for partition in 0..partitions as usize {
        let replicas: BTreeSet<u64> = statuses[&1][partition]
            .replica_ids
            .iter()
            .copied()
            .collect();
        assert_eq!(
            replicas.len(),
            REPLICAS,
            "partition {partition}: {replicas:?}"
        );
        assert!(replicas.contains(&leaders[partition]));
        for (&node, view) in &statuses {
            let status = &view[partition];
            assert_eq!(status.replica_ids, statuses[&1][partition].replica_ids);
            assert_eq!(status.leader_id, leaders[partition]);
            let holds = status.role != "none";
            assert_eq!(
                holds,
                replicas.contains(&node),
                "node {node}, partition {partition}"
            );
            if holds {
                *held.entry(node).or_default() += 1;
            } else {
                assert_eq!(status.applied_index, 0);
            }
        }
        replicas_of.push(replicas);
    }
    let share = partitions as usize * REPLICAS / NODES as usize;
    assert_eq!(held.len(), NODES as usize, "{held:?}");
    assert!(held.values().all(|&count| count == share), "{held:?}");

    // A node that holds neither side of a transfer when there is one (two groups of three
    // among six may cover every node), and never the first partition named (the source):
    // calls go through it.
    let outsider = |partitions_touched: &[u32]| {
        (1..=NODES)
            .filter(|node| !replicas_of[partitions_touched[0] as usize].contains(node))
            .min_by_key(|node| {
                partitions_touched
                    .iter()
                    .filter(|&&p| replicas_of[p as usize].contains(node))
                    .count()
            })
            .expect("three of six nodes hold no replica of a partition")
    };
    let accounts: Vec<String> = (0..partitions)
        .map(|p| accounts_in(p, partitions, "placed", 1).remove(0))
        .collect();
    let issuer = accounts_in(0, partitions, "placed-issuer", 1).remove(0);
    let mut wallet = cluster.wallet(outsider(&[0])).await;
    let opened = wallet
        .open_account(OpenAccountRequest {
            account_id: issuer.clone(),
            currency: "USD".into(),
            allow_negative_balance: true,
            ..Default::default()
        })
        .await;
    opened.expect("issuer opened through a node without its partition");
    for (partition, account) in (0..).zip(&accounts) {
        let mut wallet = cluster.wallet(outsider(&[partition])).await;
        wallet
            .open_account(OpenAccountRequest {
                account_id: account.clone(),
                currency: "USD".into(),
                ..Default::default()
            })
            .await
            .expect("account opened through a node without its partition");
    }

    // Funding and transfers within and across partitions, each sent to a node holding
    // neither the source nor the target: forwarded to the source's leader, credits sent to
    // the target's leader wherever it is.
    let mut expected: BTreeMap<String, i64> = BTreeMap::new();
    let mut cross_id = None;
    for (partition, account) in (0..).zip(&accounts) {
        let mut wallet = cluster.wallet(outsider(&[0, partition])).await;
        let funded = wallet
            .transfer(transfer_request(&id(), &issuer, account, "100", "USD"))
            .await;
        assert_eq!(funded.expect("funded").into_inner().status, "success");
        *expected.entry(account.clone()).or_default() += 10_000;
        *expected.entry(issuer.clone()).or_default() -= 10_000;
    }
    for round in 0..4 {
        for from in 0..partitions {
            let to = (from + 1 + round) % partitions;
            let (source, target) = (&accounts[from as usize], &accounts[to as usize]);
            let mut wallet = cluster.wallet(outsider(&[from, to])).await;
            let transaction_id = id();
            let answer = wallet
                .transfer(transfer_request(
                    &transaction_id,
                    source,
                    target,
                    "1.25",
                    "USD",
                ))
                .await
                .expect("transfer");
            assert_eq!(
                answer.into_inner().status,
                "success",
                "{source} -> {target}"
            );
            *expected.entry(source.clone()).or_default() -= 125;
            *expected.entry(target.clone()).or_default() += 125;
            if from != to {
                cross_id = Some((transaction_id, from, to));
            }
        }
    }
    cluster.wait_no_in_flight().await;
    let (applied_total, _) = cluster.wait_replicas_agree().await;

    // Reads: a node without the partition forwards GetAccount to the leader (one endpoint
    // is enough), or, asked not to forward (a client that routes by itself), says where to
    // go: NOT_LEADER and the leader. GetTransfer works anywhere (records read from the
    // replicas).
    for (partition, account) in (0..).zip(&accounts) {
        let mut outside = cluster.wallet(outsider(&[partition])).await;
        let forwarded = outside
            .get_account(GetAccountRequest {
                account_id: account.clone(),
            })
            .await
            .expect("read through a node without the partition")
            .into_inner()
            .account
            .expect("account");
        assert_eq!(forwarded.balance_minor, expected[account], "{account}");
        let mut routed = tonic::Request::new(GetAccountRequest {
            account_id: account.clone(),
        });
        routed
            .metadata_mut()
            .insert(NO_FORWARD, "client".parse().expect("ascii"));
        let refused = outside
            .get_account(routed)
            .await
            .expect_err("told where the partition is");
        assert_eq!(
            (refused.code(), reason(&refused)),
            (Code::Unavailable, "NOT_LEADER".into())
        );
        let hint = refused
            .get_details_error_info()
            .and_then(|info| info.metadata.get("leader_id").cloned());
        assert_eq!(hint, Some(leaders[partition as usize].to_string()));
        let replica = *replicas_of[partition as usize].first().expect("replicas");
        let balance = cluster.account_on(replica, account).await.expect("balance");
        assert_eq!(
            balance.balance_minor, expected[account],
            "{account} on node {replica}"
        );
    }
    let (cross_id, from, to) = cross_id.expect("a cross-partition transfer");
    let mut outside = cluster.wallet(outsider(&[from, to])).await;
    let transfer = outside
        .get_transfer(GetTransferRequest {
            transaction_id: cross_id.clone(),
        })
        .await
        .expect("GetTransfer through a node holding neither side")
        .into_inner()
        .transfer
        .expect("transfer");
    assert_eq!(transfer.transaction_id, cross_id);
    assert_eq!(transfer.amount, "1.25");
    let total: i64 = expected.values().sum();
    assert_eq!(total, 0, "money is conserved: {expected:?}");

    // Each node applies the entries of its partitions only: about R / N = half of all
    // entries (the partitions' traffic is even here, so within a wide margin).
    // The gauges are sampled every second: wait until each shows what the node applied.
    for node in &cluster.nodes {
        let status = cluster.status(node.id).await.expect("status");
        let applied_here: u64 = status.partitions.iter().map(|p| p.applied_index).sum();
        let deadline = std::time::Instant::now() + testkit::WAIT_MAX;
        let applied = loop {
            let applied = sum(&scrape(node.metrics_port), "wallet_raft_applied_index", &[]);
            if applied as u64 == applied_here || std::time::Instant::now() > deadline {
                break applied;
            }
            tokio::time::sleep(std::time::Duration::from_millis(200)).await;
        };
        let share = applied / applied_total as f64;
        assert!(
            (0.3..=0.7).contains(&share),
            "node {} applied {applied} of {applied_total} entries ({share:.2})",
            node.id
        );
    }
}

/// The nodes outside a group learn its new leader after a failover (`directory.rs`) and route
/// there: a transfer sent through such a node after the leader is killed commits once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nodes_outside_a_group_follow_its_failover() {
    let cluster = Cluster::start_with(NODES, &["--replicas", "3"]);
    let leaders = cluster.wait_leaders().await;
    let partitions = leaders.len() as u32;
    let status = cluster.status(1).await.expect("status");
    let replicas: BTreeSet<u64> = status.partitions[0].replica_ids.iter().copied().collect();
    let outsider = (1..=NODES)
        .find(|node| !replicas.contains(node))
        .expect("three nodes outside");
    let (payer, payee) = {
        let mut two = accounts_in(0, partitions, "failover", 2);
        (two.remove(0), two.remove(0))
    };
    cluster.open_funded_usd(&[&payer, &payee], "10").await;
    let killed = leaders[0];
    cluster.kill(killed);

    // Retried with the same id until the outsider knows the new leader.
    let transaction_id = id();
    let deadline = std::time::Instant::now() + testkit::WAIT_MAX;
    let mut wallet = cluster.wallet(outsider).await;
    loop {
        let request = transfer_request(&transaction_id, &payer, &payee, "2.50", "USD");
        match wallet.transfer(request).await {
            Ok(answer) => {
                assert_eq!(answer.into_inner().status, "success");
                break;
            }
            Err(status) if testkit::retryable(&status) => {
                assert!(
                    std::time::Instant::now() < deadline,
                    "no success through node {outsider}: {status:?}"
                );
                tokio::time::sleep(std::time::Duration::from_millis(100)).await;
            }
            Err(status) => panic!("{status:?}"),
        }
    }
    let learnt = cluster.status(outsider).await.expect("status").partitions[0].leader_id;
    assert!(
        learnt != killed && replicas.contains(&learnt),
        "node {outsider} routes partition 0 to {learnt} (killed {killed}, replicas {replicas:?})"
    );
    for (account, balance) in [(&payer, 750), (&payee, 1_250)] {
        let read = cluster.account_on(learnt, account).await.expect("account");
        assert_eq!(read.balance_minor, balance, "{account}");
    }
}

/// The node set and the replica count are fixed at creation: a node restarted with another
/// replica count (which places its partitions elsewhere) refuses to start, saying why, and
/// changes nothing: restarted as created, it serves again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_restarted_with_another_replica_count_refuses_to_start() {
    let cluster = Cluster::start(3);
    cluster.wait_leaders().await;
    cluster.stop(1);
    cluster.start_node_with_env(1, &[("WALLET_REPLICAS", "1")]);
    let exit = cluster.wait_exit(1).await;
    assert!(!exit.success(), "{exit:?}");
    let log = cluster.log(1);
    assert!(
        log.contains(
            "created for write nodes [1, 2, 3] with 3 replicas of each partition; the \
             configuration has nodes [1, 2, 3] with 1"
        ) && log.contains("fixed when the cluster is created"),
        "{log}"
    );
    cluster.start_node(1);
    let leaders = cluster.wait_leaders().await;
    assert_eq!(leaders.len(), 8);
    cluster.wait_replicas_agree().await;
}
