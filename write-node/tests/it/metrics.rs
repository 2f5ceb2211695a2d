//! `/metrics`: scraped over HTTP from real nodes and read with a Prometheus text parser.

use std::time::{Duration, Instant};

use prometheus_parse::{Scrape, Value};

use testkit::metrics::{http_get, number, scrape, series, sum};
use testkit::{Cluster, WAIT_MAX, transfer_request};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_endpoint_reports_requests_raft_fsync_and_conservation() {
    let cluster = Cluster::start(3);
    cluster.wait_leader().await;
    cluster
        .open_account("issuer", "USD", true)
        .await
        .expect("open");
    cluster
        .open_account("alice", "USD", false)
        .await
        .expect("open");
    cluster
        .open_account("bob", "USD", false)
        .await
        .expect("open");
    const TRANSFERS: usize = 6;
    // The issuer ends below zero, so its partition has a USD total to report.
    let moves = [("issuer", "alice"), ("alice", "bob"), ("issuer", "bob")];
    for round in 0..TRANSFERS {
        let (from, to) = moves[round % moves.len()];
        let request = transfer_request(&uuid::Uuid::new_v4().to_string(), from, to, "1.00", "USD");
        // issuer -> alice comes first, so every transfer is covered.
        cluster.transfer(&request).await.expect("transfer");
    }
    let overdraft = transfer_request(
        &uuid::Uuid::new_v4().to_string(),
        "alice",
        "bob",
        "1000.00",
        "USD",
    );
    let rejected = cluster.transfer(&overdraft).await.unwrap_err();
    assert_eq!(rejected.code(), tonic::Code::FailedPrecondition);
    let malformed = transfer_request("not-a-uuid", "alice", "bob", "1.00", "USD");
    let invalid = cluster.transfer(&malformed).await.unwrap_err();
    assert_eq!(invalid.code(), tonic::Code::InvalidArgument);

    // Every replica applies every entry; gauges are sampled each second: poll, bounded.
    let deadline = Instant::now() + WAIT_MAX;
    let scrapes = loop {
        let scrapes: Vec<Scrape> = cluster
            .nodes
            .iter()
            .map(|node| scrape(node.metrics_port))
            .collect();
        let settled = scrapes.iter().all(|scrape| {
            sum(scrape, "wallet_transfers_committed_total", &[]) >= TRANSFERS as f64
                && sum(scrape, "wallet_transfers_rejected_total", &[]) >= 1.0
                && series(scrape, "wallet_raft_applied_index", &[])
                    .iter()
                    .all(|sample| number(sample) > 0.0)
                && !series(
                    scrape,
                    "wallet_ledger_conservation_minor",
                    &[("currency", "USD")],
                )
                .is_empty()
        });
        if settled {
            break scrapes;
        }
        if Instant::now() >= deadline {
            for (node, scrape) in scrapes.iter().enumerate() {
                eprintln!("node {}: {:#?}", node + 1, scrape.samples);
            }
        }
        assert!(Instant::now() < deadline, "metrics never caught up");
        tokio::time::sleep(Duration::from_millis(200)).await;
    };

    let partitions = 8;
    for (node, scrape) in scrapes.iter().enumerate() {
        let node = node + 1;
        // Raft positions: one series per partition, every partition applied its leader's
        // first entry, commit >= applied.
        for metric in [
            "wallet_raft_term",
            "wallet_raft_commit_index",
            "wallet_raft_applied_index",
            "wallet_raft_leader",
            "wallet_in_flight_transfers",
            "wallet_holds_pending",
        ] {
            assert_eq!(
                series(scrape, metric, &[]).len(),
                partitions,
                "node {node}: {metric}"
            );
        }
        for partition in 0..partitions {
            let partition = partition.to_string();
            let labels = [("partition", partition.as_str())];
            let applied = sum(scrape, "wallet_raft_applied_index", &labels);
            let commit = sum(scrape, "wallet_raft_commit_index", &labels);
            assert!(
                applied > 0.0 && commit >= applied,
                "node {node} p{partition}: {applied} {commit}"
            );
            assert!(sum(scrape, "wallet_raft_term", &labels) >= 1.0);
        }
        // Conservation: every (partition, currency) sums to zero.
        let conservation = series(scrape, "wallet_ledger_conservation_minor", &[]);
        assert!(!conservation.is_empty());
        for sample in conservation {
            assert_eq!(number(sample), 0.0, "node {node}: {sample:?}");
        }
        // The synced write of every round with entries: the fsync histogram and batch sizes.
        for histogram in [
            "wallet_fsync_duration_seconds",
            "wallet_synced_write_entries",
            "wallet_raft_entry_commands",
        ] {
            let count = sum(scrape, &format!("{histogram}_count"), &[]);
            assert!(count > 0.0, "node {node}: {histogram}_count = {count}");
            let buckets = series(scrape, histogram, &[]);
            assert_eq!(buckets.len(), 1, "node {node}: {histogram} buckets");
            let Value::Histogram(buckets) = &buckets[0].value else {
                panic!("{histogram} is not a histogram");
            };
            assert_eq!(
                buckets.last().map(|b| b.count),
                Some(count),
                "+Inf bucket == count"
            );
        }
        // Scrape-time gauges exist.
        assert_eq!(sum(scrape, "wallet_event_log_subscribers", &[]), 0.0);
        testkit::metrics::assert_process_series(scrape, "write-node", env!("CARGO_PKG_VERSION"));
        assert!(series(scrape, "wallet_proposal_queue_depth", &[]).len() == 1);
        for cf in ["raft_log", "events", "snapshots", "records", "accounts"] {
            assert_eq!(
                series(scrape, "wallet_rocksdb_sst_files_bytes", &[("cf", cf)]).len(),
                1,
                "{cf}"
            );
            assert_eq!(
                series(scrape, "wallet_rocksdb_live_data_bytes", &[("cf", cf)]).len(),
                1,
                "{cf}"
            );
        }
    }
    // Exactly one leader per partition among the replicas.
    for partition in 0..partitions {
        let partition = partition.to_string();
        let leaders: f64 = scrapes
            .iter()
            .map(|scrape| {
                sum(
                    scrape,
                    "wallet_raft_leader",
                    &[("partition", partition.as_str())],
                )
            })
            .sum();
        assert!(leaders <= 1.0, "partition {partition}: {leaders} leaders");
        // Every replica learnt of this term's leader at least once.
        for scrape in &scrapes {
            let changes = sum(
                scrape,
                "wallet_raft_leader_changes_total",
                &[("partition", partition.as_str())],
            );
            assert!(
                changes >= 1.0,
                "partition {partition}: {changes} leader changes"
            );
        }
    }
    // Requests by method and code, over the three nodes (the client finds each leader).
    let requests = |method: &str, code: &str| -> f64 {
        scrapes
            .iter()
            .map(|scrape| {
                sum(
                    scrape,
                    "wallet_grpc_requests_total",
                    &[
                        ("service", "wallet.v1.WalletService"),
                        ("method", method),
                        ("code", code),
                    ],
                )
            })
            .sum()
    };
    assert!(requests("Transfer", "OK") >= TRANSFERS as f64);
    assert!(requests("Transfer", "FAILED_PRECONDITION") >= 1.0);
    assert!(requests("Transfer", "INVALID_ARGUMENT") >= 1.0);
    assert!(requests("OpenAccount", "OK") >= 3.0);
    let latency_count: f64 = scrapes
        .iter()
        .map(|scrape| {
            sum(
                scrape,
                "wallet_grpc_request_duration_seconds_count",
                &[
                    ("service", "wallet.v1.WalletService"),
                    ("method", "Transfer"),
                ],
            )
        })
        .sum();
    assert!(latency_count >= TRANSFERS as f64 + 2.0, "{latency_count}");

    // Anything but /metrics is a 404.
    let (status, _, _) = http_get(cluster.nodes[0].metrics_port, "/other");
    assert!(status.contains(" 404 "), "{status}");
}
