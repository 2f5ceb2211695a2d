//! Overload: a flood of calls beyond a node's `calls_in_flight_max` is shed with
//! RESOURCE_EXHAUSTED / OVERLOADED and RetryInfo, the node's memory stays bounded while it
//! happens, and the node serves normally once the flood is over. Both node types, real
//! processes, with a small limit (set through the TOML config file) so the flood is cheap.

use std::time::{Duration, Instant};

use futures::StreamExt as _;
use futures::stream::FuturesUnordered;
use proto::v1::query_service_client::QueryServiceClient;
use proto::v1::wallet_service_client::WalletServiceClient;
use proto::v1::{GetAccountRequest, GetBalanceRequest, TransferRequest, WatchBalancesRequest};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::transport::Channel;
use tonic::{Code, Status};
use tonic_types::StatusExt as _;

use crate::harness::ReadNode;
use testkit::{Cluster, transfer_request};

/// The limit both node types run with in this test.
const CALLS_IN_FLIGHT_MAX: usize = 64;
/// Calls thrown at a full node at once (unary, new streams, and large unary messages).
const FLOOD_UNARY: usize = 2_000;
const FLOOD_STREAMS: usize = 500;
const FLOOD_LARGE: usize = 32;
const LARGE_BYTES: usize = 3 * 1024 * 1024;
/// The documented bound (README, "Limits"): a node's resident memory grows by less than this
/// while it sheds a flood, whatever the flood's size.
const FLOOD_RSS_GROWTH_MAX_KIB: u64 = 64 * 1024;

fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("proc status");
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmRSS")
}

/// Samples the process's RSS every 20 ms until told to stop; returns the peak.
fn sample_rss(
    pid: u32,
) -> (
    tokio::sync::oneshot::Sender<()>,
    tokio::task::JoinHandle<u64>,
) {
    let (stop, mut stopped) = tokio::sync::oneshot::channel();
    let sampler = tokio::spawn(async move {
        let mut peak = rss_kib(pid);
        loop {
            tokio::select! {
                _ = &mut stopped => return peak,
                () = tokio::time::sleep(Duration::from_millis(20)) => peak = peak.max(rss_kib(pid)),
            }
        }
    });
    (stop, sampler)
}

/// Asserts the status is the documented shed answer.
#[track_caller]
fn assert_overloaded(status: &Status) {
    assert_eq!(status.code(), Code::ResourceExhausted, "{status:?}");
    let info = status.get_details_error_info().expect("ErrorInfo");
    assert_eq!(
        (info.reason.as_str(), info.domain.as_str()),
        ("OVERLOADED", "wallet.ledger")
    );
    let retry = status.get_details_retry_info().expect("RetryInfo");
    assert!(
        retry
            .retry_delay
            .is_some_and(|delay| delay > Duration::ZERO)
    );
}

fn config_file(cluster: &Cluster, name: &str) -> Vec<String> {
    let path = cluster.dir.path().join(name);
    std::fs::write(
        &path,
        format!("calls_in_flight_max = {CALLS_IN_FLIGHT_MAX}\n"),
    )
    .expect("config");
    vec!["--config".into(), path.display().to_string()]
}

/// A SubmitTransfers stream the test keeps open (its input never ends): it holds a call slot.
async fn hold_submit(
    channel: Channel,
) -> Result<
    (
        mpsc::Sender<TransferRequest>,
        tonic::Streaming<proto::v1::TransferResult>,
    ),
    Status,
> {
    let (tx, rx) = mpsc::channel(1);
    let response = WalletServiceClient::new(channel)
        .submit_transfers(ReceiverStream::new(rx))
        .await?;
    Ok((tx, response.into_inner()))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn floods_are_shed_with_overloaded_and_nodes_recover() {
    // The write nodes get their limit from a config file in a directory the cluster creates,
    // so start with a placeholder path written before the processes read it.
    let dir = tempfile::tempdir().expect("dir");
    let write_config = dir.path().join("write.toml");
    std::fs::write(
        &write_config,
        format!("calls_in_flight_max = {CALLS_IN_FLIGHT_MAX}\n"),
    )
    .expect("config");
    let write_config = write_config.display().to_string();
    let cluster = Cluster::start_partitioned(3, 2, &["--config", &write_config]);
    cluster.wait_leader().await;
    let read = ReadNode::start_with(&cluster, config_file(&cluster, "read.toml"));
    read.wait_serving().await;
    for (account, issuer) in [("issuer", true), ("alice", false)] {
        cluster
            .open_account(account, "USD", issuer)
            .await
            .expect("open");
    }
    let funded = cluster
        .transfer(&transfer_request(
            &uuid::Uuid::new_v4().to_string(),
            "issuer",
            "alice",
            "10.00",
            "USD",
        ))
        .await
        .expect("fund");

    // --- Write node 1.
    let write = Channel::from_shared(cluster.endpoint(1))
        .expect("uri")
        .connect_lazy();
    let pid = cluster.pid(1).expect("node 1 runs");
    let rss_before = rss_kib(pid);
    // Fill every slot with streams (read-node subscriptions may hold a few already).
    let mut held = Vec::new();
    let refused = loop {
        match hold_submit(write.clone()).await {
            Ok(stream) => held.push(stream),
            Err(status) => break status,
        }
        assert!(
            held.len() <= CALLS_IN_FLIGHT_MAX,
            "the limit admitted more than {CALLS_IN_FLIGHT_MAX} calls"
        );
    };
    assert_overloaded(&refused);
    let (stop, sampler) = sample_rss(pid);
    let mut flood = FuturesUnordered::new();
    for i in 0..FLOOD_UNARY {
        let mut client = WalletServiceClient::new(write.clone());
        flood.push(tokio::spawn(async move {
            client
                .get_account(GetAccountRequest {
                    account_id: format!("alice-{i}"),
                })
                .await
                .map(drop)
        }));
    }
    for _ in 0..FLOOD_STREAMS {
        let channel = write.clone();
        flood.push(tokio::spawn(
            async move { hold_submit(channel).await.map(drop) },
        ));
    }
    for _ in 0..FLOOD_LARGE {
        let mut client = WalletServiceClient::new(write.clone());
        flood.push(tokio::spawn(async move {
            client
                .get_account(GetAccountRequest {
                    account_id: "x".repeat(LARGE_BYTES),
                })
                .await
                .map(drop)
        }));
    }
    let mut shed = 0;
    let mut refused_streams = 0;
    while let Some(result) = flood.next().await {
        let status = result
            .expect("task")
            .expect_err("a full node admits nothing");
        // Beyond the per-connection stream cap HTTP/2 itself may refuse the stream
        // (REFUSED_STREAM, which the client sees as UNAVAILABLE and may retry): also shed,
        // just one layer lower. Which layer answers depends on timing.
        if status.code() == Code::Unavailable && format!("{status:?}").contains("REFUSED_STREAM") {
            refused_streams += 1;
        } else {
            assert_overloaded(&status);
        }
        shed += 1;
    }
    eprintln!("flood: {shed} shed, {refused_streams} of them refused by HTTP/2");
    stop.send(()).expect("sampler");
    let peak = sampler.await.expect("sampler");
    assert_eq!(shed, FLOOD_UNARY + FLOOD_STREAMS + FLOOD_LARGE);
    assert!(
        peak.saturating_sub(rss_before) < FLOOD_RSS_GROWTH_MAX_KIB,
        "write node RSS grew from {rss_before} KiB to {peak} KiB during the flood"
    );
    eprintln!("write node: {shed} calls shed; RSS {rss_before} KiB before, peak {peak} KiB");
    // The held streams still work: a transfer through one of them completes.
    let (tx, mut results) = held.pop().expect("held stream");
    let transaction_id = uuid::Uuid::new_v4().to_string();
    tx.send(transfer_request(
        &transaction_id,
        "issuer",
        "alice",
        "1.00",
        "USD",
    ))
    .await
    .expect("send");
    let result = results.next().await.expect("result").expect("result");
    // Decided by node 1 or, when another node leads the source partition, forwarded there.
    assert_eq!(
        (result.transaction_id.as_str(), result.status.as_str()),
        (transaction_id.as_str(), "success"),
        "{result:?}"
    );
    drop((tx, results));
    // Release the slots: the node serves normally again.
    drop(held);
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let answer = WalletServiceClient::new(write.clone())
            .get_account(GetAccountRequest {
                account_id: "alice".into(),
            })
            .await;
        match answer {
            Ok(account) => {
                // Funded with 10.00, then 1.00 through the held stream.
                assert_eq!(
                    account.into_inner().account.expect("account").balance,
                    "11.00"
                );
                break;
            }
            Err(status)
                if status.code() == Code::ResourceExhausted && Instant::now() < deadline =>
            {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            Err(status) => panic!("write node does not recover: {status:?}"),
        }
    }
    cluster
        .transfer(&transfer_request(
            &uuid::Uuid::new_v4().to_string(),
            "issuer",
            "alice",
            "1.00",
            "USD",
        ))
        .await
        .expect("transfers work after the flood");

    // --- Read node.
    let read_channel = Channel::from_shared(format!("http://{}", read.endpoint()))
        .expect("uri")
        .connect_lazy();
    let pid = read.pid().expect("read node runs");
    let rss_before = rss_kib(pid);
    let watch = |channel: Channel| async move {
        QueryServiceClient::new(channel)
            .watch_balances(WatchBalancesRequest {
                account_ids: vec!["alice".into()],
                resume_after_sequence: Default::default(),
            })
            .await
            .map(|response| response.into_inner())
    };
    let mut watches = Vec::new();
    let refused = loop {
        match watch(read_channel.clone()).await {
            Ok(stream) => watches.push(stream),
            Err(status) => break status,
        }
        assert!(watches.len() <= CALLS_IN_FLIGHT_MAX);
    };
    assert_overloaded(&refused);
    assert_eq!(
        watches.len(),
        CALLS_IN_FLIGHT_MAX,
        "only the watches hold slots"
    );
    let (stop, sampler) = sample_rss(pid);
    let mut flood = FuturesUnordered::new();
    for _ in 0..FLOOD_UNARY {
        let mut client = QueryServiceClient::new(read_channel.clone());
        let funded = funded.clone();
        flood.push(tokio::spawn(async move {
            client
                .get_balance(GetBalanceRequest {
                    account_id: "alice".into(),
                    consistency_token: funded.consistency_token.clone(),
                })
                .await
                .map(drop)
        }));
    }
    for _ in 0..FLOOD_STREAMS {
        let channel = read_channel.clone();
        flood.push(tokio::spawn(async move { watch(channel).await.map(drop) }));
    }
    let mut shed = 0;
    while let Some(result) = flood.next().await {
        assert_overloaded(
            &result
                .expect("task")
                .expect_err("a full node admits nothing"),
        );
        shed += 1;
    }
    stop.send(()).expect("sampler");
    let peak = sampler.await.expect("sampler");
    assert!(
        peak.saturating_sub(rss_before) < FLOOD_RSS_GROWTH_MAX_KIB,
        "read node RSS grew from {rss_before} KiB to {peak} KiB during the flood"
    );
    eprintln!("read node: {shed} calls shed; RSS {rss_before} KiB before, peak {peak} KiB");
    // The watches admitted before the flood still push: each got its snapshot.
    for stream in &mut watches {
        let first = stream.next().await.expect("snapshot").expect("snapshot");
        assert!(first.snapshot);
    }
    drop(watches);
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let answer = QueryServiceClient::new(read_channel.clone())
            .get_balance(GetBalanceRequest {
                account_id: "alice".into(),
                consistency_token: String::new(),
            })
            .await;
        match answer {
            Ok(_) => break,
            Err(status)
                if status.code() == Code::ResourceExhausted && Instant::now() < deadline =>
            {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            Err(status) => panic!("read node does not recover: {status:?}"),
        }
    }
}
