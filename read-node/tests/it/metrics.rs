//! `/metrics` of a read node and of the write nodes it follows: projection lag, watchers,
//! event log subscribers, per-RPC counts; scraped over HTTP, read with a Prometheus parser.

use std::time::{Duration, Instant};

use futures::StreamExt as _;

use testkit::metrics::{scrape, series, sum};
use testkit::{WAIT_MAX, transfer_request};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn read_node_metrics_report_lag_watchers_and_subscribers() {
    const PARTITIONS: u32 = 2;
    let (cluster, read, query) = crate::start_all(PARTITIONS).await;
    crate::open_accounts(
        &cluster,
        &[
            ("issuer", "USD", true),
            ("alice", "USD", false),
            ("bob", "USD", false),
        ],
    )
    .await;
    crate::wait_known(&query, &["issuer", "alice", "bob"]).await;
    let mut watch = query.watch_balances(vec!["alice".into()]);
    watch
        .next()
        .await
        .expect("first update")
        .expect("alice's balance");
    let mut token = String::new();
    for (from, to) in [("issuer", "alice"), ("alice", "bob"), ("issuer", "bob")] {
        let request = transfer_request(&crate::id(), from, to, "2.50", "USD");
        token = cluster
            .transfer(&request)
            .await
            .expect("transfer")
            .consistency_token;
    }
    // Read-your-writes: the projection has applied the last transfer.
    crate::read_balance(&query, "bob", Some(&token)).await;

    let deadline = Instant::now() + WAIT_MAX;
    let read_scrape = loop {
        let scrape = scrape(read.metrics_port);
        let caught_up = (0..PARTITIONS).all(|partition| {
            let partition = partition.to_string();
            let labels = [("partition", partition.as_str())];
            let projected = sum(&scrape, "wallet_projection_applied_index", &labels);
            let source = sum(&scrape, "wallet_projection_source_applied_index", &labels);
            projected > 0.0
                && source >= projected
                && sum(&scrape, "wallet_projection_lag_entries", &labels) == 0.0
        });
        if caught_up {
            break scrape;
        }
        assert!(
            Instant::now() < deadline,
            "lag never reached 0: {:#?}",
            scrape.samples
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    for metric in [
        "wallet_projection_applied_index",
        "wallet_projection_source_applied_index",
        "wallet_projection_lag_entries",
    ] {
        assert_eq!(
            series(&read_scrape, metric, &[]).len(),
            PARTITIONS as usize,
            "{metric}"
        );
    }
    assert_eq!(sum(&read_scrape, "wallet_watchers", &[]), 1.0);
    let query_calls = |method: &str, code: &str| {
        sum(
            &read_scrape,
            "wallet_grpc_requests_total",
            &[
                ("service", "wallet.v1.QueryService"),
                ("method", method),
                ("code", code),
            ],
        )
    };
    assert!(query_calls("GetBalance", "OK") >= 1.0);
    assert!(
        sum(
            &read_scrape,
            "wallet_grpc_request_duration_seconds_count",
            &[
                ("service", "wallet.v1.QueryService"),
                ("method", "GetBalance"),
            ]
        ) >= 1.0
    );

    // The write nodes serve one Subscribe stream per partition to this read node, and count
    // them as running (a stream ends only when it does; its call is counted then).
    let subscribers: f64 = cluster
        .nodes
        .iter()
        .map(|node| {
            sum(
                &scrape(node.metrics_port),
                "wallet_event_log_subscribers",
                &[],
            )
        })
        .sum();
    assert_eq!(subscribers, f64::from(PARTITIONS));

    // A watch that ends is no longer counted.
    drop(watch);
    let deadline = Instant::now() + WAIT_MAX;
    while sum(&scrape(read.metrics_port), "wallet_watchers", &[]) != 0.0 {
        assert!(
            Instant::now() < deadline,
            "watcher still counted after the client left"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let read_scrape = scrape(read.metrics_port);
    testkit::metrics::assert_process_series(&read_scrape, "read-node", env!("CARGO_PKG_VERSION"));
    assert!(
        sum(
            &read_scrape,
            "wallet_grpc_requests_total",
            &[
                ("service", "wallet.v1.QueryService"),
                ("method", "WatchBalances"),
            ]
        ) >= 1.0,
        "the ended watch is counted with its code"
    );
}
