//! End-to-end tests of the read side: real `wallet-write-node` and `wallet-read-node`
//! processes on loopback sockets, RocksDB in temporary directories, SIGKILL for crashes.
//! Build the binaries first (`cargo build --bins`; see harness.rs).

mod annotations;
mod bad_input;
mod bootstrap;
mod grpc_web;
mod harness;
mod holds;
mod id_reuse;
mod legs;
mod listing;
mod metrics;
mod overload;
mod placement;
mod reflection;
mod sdk;
mod security;

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use futures::StreamExt as _;
use harness::ReadNode;
use proto::v1::event_log_service_client::EventLogServiceClient;
use proto::v1::ledger_event::Event as PbEvent;
use proto::v1::{BalanceUpdate, SubscribeRequest, TransferStatus};
use testkit::{Cluster, WAIT_MAX, reason, transfer_request};
use tonic::Code;
use tonic::transport::Channel;
use uuid::Uuid;
use wallet_client::{BalanceAt, QueryClient};

fn id() -> String {
    Uuid::new_v4().to_string()
}

/// A small deterministic generator, so a failing workload can be replayed.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

async fn start_all(partitions: u32) -> (Cluster, ReadNode, QueryClient) {
    let cluster = Cluster::start_partitioned(3, partitions, &[]);
    cluster.wait_leader().await;
    let read = ReadNode::start(&cluster);
    read.wait_serving().await;
    let query = QueryClient::connect([read.endpoint()]).expect("query client");
    (cluster, read, query)
}

/// Opens accounts and funds the ordinary ones from an issuer per currency.
async fn open_accounts(cluster: &Cluster, accounts: &[(&str, &str, bool)]) {
    for (account, currency, issuer) in accounts {
        cluster
            .open_account(account, currency, *issuer)
            .await
            .expect("open");
    }
}

/// Waits until the read node has folded the accounts' opening (OpenAccount returns no
/// token, and a watch of an account the read node does not know is NOT_FOUND).
async fn wait_known(query: &QueryClient, accounts: &[&str]) {
    let deadline = Instant::now() + WAIT_MAX;
    for account in accounts {
        while query.balance(account, None).await.is_err() {
            assert!(
                Instant::now() < deadline,
                "{account} never reached the read node"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

/// The balance on the read node once it has applied `token`.
async fn read_balance(query: &QueryClient, account: &str, token: Option<&str>) -> i64 {
    query
        .balance(account, token)
        .await
        .unwrap_or_else(|error| panic!("balance of {account}: {error}"))
        .balance
        .expect("balance")
        .balance_minor
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_clean_stop_leaves_no_write_ahead_log_to_replay() {
    let (cluster, read, query) = start_all(2).await;
    open_accounts(
        &cluster,
        &[("wal-issuer", "USD", true), ("wal-a", "USD", false)],
    )
    .await;
    let mut token = String::new();
    for _ in 0..20 {
        let request = transfer_request(&id(), "wal-issuer", "wal-a", "1.00", "USD");
        token = cluster
            .transfer(&request)
            .await
            .expect("transfer")
            .consistency_token;
    }
    assert_eq!(read_balance(&query, "wal-a", Some(&token)).await, 2_000);
    assert!(read.stop().success(), "a clean stop exits 0");
    // The projections were flushed on the way out: every write-ahead log is empty, so the
    // next start opens without replaying one.
    let logs = testkit::write_ahead_logs(&read.data_dir);
    assert!(!logs.is_empty(), "RocksDB keeps a write-ahead log file");
    assert!(logs.iter().all(|(_, bytes)| *bytes == 0), "{logs:?}");
    read.restart();
    read.wait_serving().await;
    assert_eq!(read_balance(&query, "wal-a", Some(&token)).await, 2_000);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn projection_equals_fold_and_reads_are_read_your_writes() {
    // Several partitions: most transfers cross partitions (debit, credit, settle).
    let (cluster, _read, query) = start_all(4).await;
    let accounts = [
        ("usd-issuer", "USD", true),
        ("u1", "USD", false),
        ("u2", "USD", false),
        ("u3", "USD", false),
        ("u4", "USD", false),
        ("jpy-issuer", "JPY", true),
        ("j1", "JPY", false),
        ("j2", "JPY", false),
    ];
    open_accounts(&cluster, &accounts).await;
    let usd = ["usd-issuer", "u1", "u2", "u3", "u4"];
    let jpy = ["jpy-issuer", "j1", "j2"];

    // Sequential random workload with a local model: after every acknowledged transfer the
    // read node, asked with its token, must show exactly the model's balances.
    let mut model: BTreeMap<&str, i64> = accounts.iter().map(|(a, _, _)| (*a, 0)).collect();
    let mut rng = Rng(0x5eed_1234);
    let mut recorded: Vec<(String, &str, i64)> = Vec::new();
    let mut rejected = 0;
    for round in 0..120 {
        let (group, currency, minor_per_unit) = if rng.below(3) == 0 {
            (&jpy[..], "JPY", 1)
        } else {
            (&usd[..], "USD", 100)
        };
        let from = group[rng.below(group.len() as u64) as usize];
        let mut to = group[rng.below(group.len() as u64) as usize];
        if to == from {
            to = group[(group.iter().position(|a| *a == from).unwrap() + 1) % group.len()];
        }
        let units = 1 + rng.below(if from.ends_with("issuer") { 500 } else { 120 }) as i64;
        let amount = if currency == "USD" {
            format!("{}.{:02}", units, round % 100)
        } else {
            units.to_string()
        };
        let minor = units * minor_per_unit + if currency == "USD" { round % 100 } else { 0 };
        let transaction_id = id();
        match cluster
            .transfer(&transfer_request(
                &transaction_id,
                from,
                to,
                &amount,
                currency,
            ))
            .await
        {
            Ok(response) => {
                *model.get_mut(from).unwrap() -= minor;
                *model.get_mut(to).unwrap() += minor;
                let token = response.consistency_token;
                for account in [from, to] {
                    assert_eq!(
                        read_balance(&query, account, Some(&token)).await,
                        model[account],
                        "read-your-writes: {account} after {token}"
                    );
                }
                recorded.push((token, to, model[to]));
            }
            Err(status) => {
                assert_eq!(reason(&status), "INSUFFICIENT_FUNDS", "{status:?}");
                rejected += 1;
            }
        }
    }
    assert!(
        recorded.len() > 60,
        "most transfers succeed ({rejected} rejected)"
    );

    // Projection equals fold: the read node agrees with the write nodes' ledger, and money
    // is conserved per currency.
    let mut sums: BTreeMap<&str, i64> = BTreeMap::new();
    for (account, currency, _) in accounts {
        let authoritative = cluster.account(account).await.expect("GetAccount");
        let projected = query.balance(account, None).await.expect("GetBalance");
        let projected = projected.balance.expect("balance");
        assert_eq!(
            projected.balance_minor, authoritative.balance_minor,
            "{account}"
        );
        assert_eq!(projected.balance, authoritative.balance, "{account}");
        assert_eq!(projected.balance_minor, model[account], "{account}");
        *sums.entry(currency).or_default() += projected.balance_minor;
    }
    assert!(
        sums.values().all(|sum| *sum == 0),
        "per-currency sums: {sums:?}"
    );

    // GetBalanceAt: every balance recorded during the workload, at its position.
    for (token, account, balance) in &recorded {
        let at = query
            .balance_at(account, BalanceAt::Position(token.clone()))
            .await
            .expect("balance_at");
        assert_eq!(at.balance_minor, *balance, "{account} at {token}");
    }

    // History: pages of 7, newest first, contiguous sequences, deltas adding up.
    let current = query.balance("u1", None).await.unwrap().balance.unwrap();
    let mut entries = Vec::new();
    let mut page_token: Option<String> = None;
    loop {
        let page = query
            .history("u1", page_token.as_deref(), 7)
            .await
            .expect("history");
        assert!(page.entries.len() <= 7);
        entries.extend(page.entries);
        if page.next_page_token.is_empty() {
            break;
        }
        page_token = Some(page.next_page_token);
    }
    let sequences: Vec<u64> = entries.iter().map(|entry| entry.sequence).collect();
    let expected: Vec<u64> = (1..=current.sequence).rev().collect();
    assert_eq!(sequences, expected);
    assert_eq!(
        entries.iter().map(|entry| entry.delta_minor).sum::<i64>(),
        current.balance_minor
    );
    // By timestamp: the last change of each millisecond is the balance at that time.
    for pair in entries.windows(2) {
        let (newer, older) = (&pair[0], &pair[1]);
        if newer.timestamp_ms > older.timestamp_ms {
            let at = query
                .balance_at("u1", BalanceAt::TimestampMs(older.timestamp_ms))
                .await
                .expect("balance_at time");
            assert_eq!(at.balance_minor, older.balance_after_minor);
            assert_eq!(at.sequence, older.sequence);
        }
    }

    // Bad input and limits get clear statuses.
    let error = query.balance("u1", Some("v1.zz")).await.unwrap_err();
    assert_eq!(
        (error.code(), error.reason(), error.field()),
        (
            Code::InvalidArgument,
            "INVALID_CONSISTENCY_TOKEN",
            Some("consistency_token")
        )
    );
    let error = query.balance("u1", Some("v1.7.1")).await.unwrap_err();
    assert_eq!(error.reason(), "INVALID_CONSISTENCY_TOKEN");
    let error = query.balance("nobody", None).await.unwrap_err();
    assert_eq!(
        (error.code(), error.reason()),
        (Code::NotFound, "ACCOUNT_NOT_FOUND")
    );
    let error = query.history("u1", None, 100_000).await.unwrap_err();
    assert_eq!(
        (error.code(), error.reason()),
        (Code::InvalidArgument, "PAGE_SIZE_TOO_LARGE")
    );
    let error = query.history("u1", Some("garbage"), 0).await.unwrap_err();
    assert_eq!(error.reason(), "INVALID_PAGE_TOKEN");
    let many: Vec<String> = (0..=read_node::limits::WATCH_ACCOUNTS_MAX)
        .map(|i| format!("a{i}"))
        .collect();
    let mut watch = query.watch_balances(many);
    let error = watch.next().await.expect("an error").unwrap_err();
    assert_eq!(
        (error.code(), error.reason()),
        (Code::InvalidArgument, "TOO_MANY_ACCOUNTS")
    );
    // A token far ahead of the log: bounded wait, then UNAVAILABLE with the reason.
    let started = Instant::now();
    let error = query
        .balance("u1", Some("v1.0.999999999"))
        .await
        .unwrap_err();
    assert_eq!(
        (error.code(), error.reason()),
        (Code::Unavailable, "CONSISTENCY_WAIT_TIMEOUT")
    );
    assert!(started.elapsed() < Duration::from_secs(15));

    // WatchTransfer: watched before it exists, pushed when it completes, then the end.
    let transaction_id = Uuid::new_v4();
    let mut watch = query.watch_transfer(transaction_id).await.expect("watch");
    cluster
        .transfer(&transfer_request(
            &transaction_id.to_string(),
            "usd-issuer",
            "u2",
            "1.00",
            "USD",
        ))
        .await
        .expect("transfer");
    // A cross-partition transfer is first in flight, then completed; one within a partition
    // completes in one step. Either way: versions 1, 2, ... and the last one final.
    let mut states = Vec::new();
    loop {
        let update = tokio::time::timeout(WAIT_MAX, watch.next())
            .await
            .expect("pushed in time")
            .expect("an update")
            .expect("ok");
        assert_eq!(update.version as usize, states.len() + 1);
        assert_eq!(update.amount, "1.00");
        states.push(update.status);
        if update.is_final {
            break;
        }
    }
    assert!(
        states == [TransferStatus::Completed as i32]
            || states
                == [
                    TransferStatus::InFlight as i32,
                    TransferStatus::Completed as i32
                ],
        "{states:?}"
    );
    assert!(
        watch.next().await.is_none(),
        "the stream ends after the final state"
    );
}

/// Per account: ordered, gap-free, duplicate-free, and each change consistent with the last.
fn assert_gap_free(updates: &[BalanceUpdate]) -> BTreeMap<String, (u64, i64)> {
    let mut last: BTreeMap<String, (u64, i64)> = BTreeMap::new();
    for update in updates {
        let balance = update.balance.as_ref().expect("balance");
        match last.get(&balance.account_id) {
            None => assert!(
                update.snapshot,
                "the first update is the snapshot: {update:?}"
            ),
            Some(&(sequence, minor)) => {
                assert!(!update.snapshot, "one snapshot per account: {update:?}");
                assert_eq!(
                    balance.sequence,
                    sequence + 1,
                    "{}: gap or duplicate after {sequence}",
                    balance.account_id
                );
                assert_eq!(
                    balance.balance_minor,
                    minor + update.delta_minor,
                    "{update:?}"
                );
            }
        }
        last.insert(
            balance.account_id.clone(),
            (balance.sequence, balance.balance_minor),
        );
    }
    last
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pushes_survive_read_node_restart_leader_kill_and_source_kill() {
    let (cluster, read, query) = start_all(2).await;
    open_accounts(
        &cluster,
        &[
            ("issuer", "USD", true),
            ("alice", "USD", false),
            ("bob", "USD", false),
        ],
    )
    .await;
    let cluster = Arc::new(cluster);
    let watched = vec!["alice".to_string(), "bob".to_string(), "issuer".to_string()];
    wait_known(&query, &["alice", "bob", "issuer"]).await;
    let mut watch = query.watch_balances(watched.clone());
    let received = Arc::new(tokio::sync::Mutex::new(Vec::new()));
    let collector = {
        let received = received.clone();
        tokio::spawn(async move {
            while let Some(update) = watch.next().await {
                received
                    .lock()
                    .await
                    .push(update.expect("the watch never fails"));
            }
        })
    };

    // A steady workload through every fault, retrying each transfer with its own id.
    let stop = Arc::new(AtomicBool::new(false));
    let done = Arc::new(AtomicU64::new(0));
    let workload = {
        let (cluster, stop, done) = (cluster.clone(), stop.clone(), done.clone());
        tokio::spawn(async move {
            let mut last_token = String::new();
            let mut round = 0u64;
            while !stop.load(Ordering::Relaxed) {
                round += 1;
                let (from, to) = match round % 3 {
                    0 => ("alice", "bob"),
                    1 => ("issuer", "alice"),
                    _ => ("bob", "issuer"),
                };
                let request = transfer_request(&id(), from, to, "0.50", "USD");
                match cluster.transfer(&request).await {
                    Ok(response) => {
                        last_token = response.consistency_token;
                        done.fetch_add(1, Ordering::Relaxed);
                    }
                    Err(status) => assert!(
                        reason(&status) == "INSUFFICIENT_FUNDS",
                        "unexpected failure {status:?}"
                    ),
                }
            }
            last_token
        })
    };
    let progress = |at_least: u64| {
        let done = done.clone();
        async move {
            let deadline = Instant::now() + WAIT_MAX;
            while done.load(Ordering::Relaxed) < at_least {
                assert!(Instant::now() < deadline, "workload stalled at {at_least}");
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
    };
    progress(20).await;

    // (a) The read node is killed and restarts on its data: it resumes from its checkpoint,
    // and the watch resumes from its last sequences.
    read.kill();
    progress(done.load(Ordering::Relaxed) + 10).await;
    read.restart();
    read.wait_serving().await;
    progress(done.load(Ordering::Relaxed) + 20).await;

    // (b) The write leader is killed.
    let leader = cluster.wait_leader().await;
    cluster.kill(leader);
    progress(done.load(Ordering::Relaxed) + 20).await;
    cluster.start_node(leader);
    progress(done.load(Ordering::Relaxed) + 10).await;

    // (c) The write node the read node follows is killed: it fails over to another.
    let source_port = read.source_port().expect("the read node logs its source");
    let source = cluster
        .node_with_port(source_port)
        .expect("the source is a cluster node");
    cluster.kill(source);
    progress(done.load(Ordering::Relaxed) + 20).await;
    cluster.start_node(source);
    progress(done.load(Ordering::Relaxed) + 10).await;

    stop.store(true, Ordering::Relaxed);
    let last_token = workload.await.expect("workload");
    // The read node catches up to the last acknowledged transfer, and so does the watch.
    let finals: HashMap<String, (u64, i64)> = {
        let mut finals = HashMap::new();
        for account in &watched {
            let balance = query
                .balance(account, Some(&last_token))
                .await
                .expect("balance")
                .balance
                .unwrap();
            finals.insert(account.clone(), (balance.sequence, balance.balance_minor));
        }
        finals
    };
    let deadline = Instant::now() + WAIT_MAX;
    loop {
        let seen = assert_gap_free(&received.lock().await);
        if watched
            .iter()
            .all(|account| seen.get(account) == finals.get(account))
        {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "watch did not reach {finals:?}: {seen:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    for account in &watched {
        let authoritative = cluster.account(account).await.expect("GetAccount");
        assert_eq!(finals[account].1, authoritative.balance_minor, "{account}");
    }
    collector.abort();
    let updates = received.lock().await.len();
    assert!(updates > 100, "{updates} updates pushed");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn commit_to_push_latency() {
    // One partition: the single-partition path, one leader to send every transfer to.
    let (cluster, read, query) = start_all(1).await;
    open_accounts(
        &cluster,
        &[("issuer", "USD", true), ("carol", "USD", false)],
    )
    .await;
    wait_known(&query, &["carol"]).await;
    let mut watch = query.watch_balances(vec!["carol".into()]);
    let snapshot = watch.next().await.expect("snapshot").expect("ok");
    assert!(snapshot.snapshot);
    let leader = cluster.wait_leader().await;
    let mut client = cluster.wallet(leader).await;
    let mut after_ack = Vec::new();
    let mut after_send = Vec::new();
    for _ in 0..150 {
        let request = transfer_request(&id(), "issuer", "carol", "0.01", "USD");
        let sent = Instant::now();
        // The push may arrive before the acknowledgement: race them.
        let mut call = Box::pin(client.transfer(request));
        let mut acked = None;
        let mut pushed = None;
        while acked.is_none() || pushed.is_none() {
            tokio::select! {
                response = &mut call, if acked.is_none() => {
                    response.expect("transfer");
                    acked = Some(Instant::now());
                }
                update = watch.next(), if pushed.is_none() => {
                    let update = update.expect("open stream").expect("ok");
                    assert!(!update.snapshot);
                    pushed = Some(Instant::now());
                }
            }
        }
        let (acked, pushed) = (acked.unwrap(), pushed.unwrap());
        after_send.push(pushed - sent);
        after_ack.push(pushed.saturating_duration_since(acked));
    }
    let percentile = |samples: &mut Vec<Duration>, p: f64| {
        samples.sort();
        samples[((samples.len() - 1) as f64 * p).round() as usize]
    };
    let (ack_p50, ack_p99) = (
        percentile(&mut after_ack, 0.50),
        percentile(&mut after_ack, 0.99),
    );
    let (send_p50, send_p99) = (
        percentile(&mut after_send, 0.50),
        percentile(&mut after_send, 0.99),
    );
    println!(
        "commit-to-push: ack->push p50 {ack_p50:?} p99 {ack_p99:?}; send->push p50 {send_p50:?} p99 {send_p99:?}"
    );
    assert!(
        ack_p99 < Duration::from_secs(1),
        "ack->push p99 {ack_p99:?}"
    );
    // The read node measured the same pushes: one observation per update pushed to the one
    // watcher (the snapshot is not a push), each at most the send->push time plus clock skew.
    let pushes = after_send.len() as f64;
    let deadline = Instant::now() + WAIT_MAX;
    let (count, sum) = loop {
        let scrape = testkit::metrics::scrape(read.metrics_port);
        let count = testkit::metrics::sum(&scrape, "wallet_commit_to_push_seconds_count", &[]);
        let sum = testkit::metrics::sum(&scrape, "wallet_commit_to_push_seconds_sum", &[]);
        // The observation follows the hand-off to the stream: the last may trail the client.
        if count >= pushes || Instant::now() > deadline {
            break (count, sum);
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(count, pushes, "wallet_commit_to_push_seconds_count");
    let slowest: Duration = after_send.iter().copied().max().unwrap_or_default();
    assert!(
        sum <= pushes * (slowest.as_secs_f64() + 1.0),
        "wallet_commit_to_push_seconds_sum {sum} for {pushes} pushes, the slowest {slowest:?}"
    );
}

/// An EventLog client. Its HTTP/2 windows are small (64 KiB) so that a subscriber that stops
/// reading is stalled after a little data; with the default windows (megabytes) the "stalled"
/// subscriber would keep receiving the live log into its socket buffers for a long while.
async fn event_log(cluster: &Cluster, node: u64) -> EventLogServiceClient<Channel> {
    EventLogServiceClient::new(
        Channel::from_shared(cluster.endpoint(node))
            .expect("uri")
            .initial_stream_window_size(Some(64 * 1024))
            .initial_connection_window_size(Some(64 * 1024))
            .connect_lazy(),
    )
}

/// Transfers completed within `window` by `workers` concurrent clients on the leader.
async fn throughput(cluster: &Arc<Cluster>, leader: u64, window: Duration, workers: usize) -> u64 {
    let done = Arc::new(AtomicU64::new(0));
    let deadline = Instant::now() + window;
    let tasks: Vec<_> = (0..workers)
        .map(|worker| {
            let (cluster, done) = (cluster.clone(), done.clone());
            tokio::spawn(async move {
                let mut client = cluster.wallet(leader).await;
                let to = format!("w{}", worker % 4);
                while Instant::now() < deadline {
                    let request = transfer_request(&id(), "issuer", &to, "0.01", "USD");
                    client.transfer(request).await.expect("transfer");
                    done.fetch_add(1, Ordering::Relaxed);
                }
            })
        })
        .collect();
    for task in tasks {
        task.await.expect("worker");
    }
    done.load(Ordering::Relaxed)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stalled_subscriber_does_not_slow_writes_and_catches_up_later() {
    // One partition, so "the leader" and "the log" are one each.
    let cluster = Arc::new(Cluster::start_partitioned(3, 1, &[]));
    let leader = cluster.wait_leader().await;
    cluster
        .open_account("issuer", "USD", true)
        .await
        .expect("open");
    for worker in 0..4 {
        cluster
            .open_account(&format!("w{worker}"), "USD", false)
            .await
            .expect("open");
    }
    // Bad requests are refused up front.
    let mut client = event_log(&cluster, leader).await;
    for (request, expected) in [
        (
            SubscribeRequest {
                partition: 0,
                from_index: 0,
            },
            "INVALID_FROM_INDEX",
        ),
        (
            SubscribeRequest {
                partition: 9,
                from_index: 1,
            },
            "INVALID_PARTITION",
        ),
    ] {
        let status = client.subscribe(request).await.expect_err("refused");
        assert_eq!(
            (status.code(), reason(&status).as_str()),
            (Code::InvalidArgument, expected)
        );
    }

    let window = Duration::from_secs(3);
    let workers = 16;
    // Warm-up: connections, caches and the first RocksDB flushes out of the measurement.
    throughput(&cluster, leader, Duration::from_secs(2), workers).await;
    let baseline = throughput(&cluster, leader, window, workers).await;

    // Stalled subscribers on every node: they subscribe from the start and never read.
    let mut stalled = Vec::new();
    for node in [1, 2, 3] {
        for _ in 0..4 {
            let mut client = event_log(&cluster, node).await;
            let stream = client
                .subscribe(SubscribeRequest {
                    partition: 0,
                    from_index: 1,
                })
                .await
                .expect("subscribe")
                .into_inner();
            stalled.push(stream);
        }
    }
    // Let them fill their bounded buffers and stall: the steady state is what is measured.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let with_stalled = throughput(&cluster, leader, window, workers).await;
    // As documented, the stalled subscriber simply reads on from where it stopped: every
    // block in index order, all the transfers, none twice.
    let status = cluster.status(leader).await.expect("status");
    let applied = status.partitions[0].applied_index;
    let mut stream = stalled.swap_remove(0);
    let mut last_index = 0;
    let mut completed = std::collections::HashSet::new();
    while last_index < applied {
        let block = tokio::time::timeout(WAIT_MAX, stream.message())
            .await
            .expect("stream moves")
            .expect("stream ok")
            .expect("stream open");
        assert!(
            block.index > last_index,
            "index order: {} after {last_index}",
            block.index
        );
        last_index = block.index;
        for event in block.events {
            if let Some(PbEvent::TransferCompleted(transfer)) = event.event {
                assert!(completed.insert(transfer.transaction_id), "no duplicate");
            }
        }
    }
    assert!(completed.len() as u64 >= baseline + with_stalled);

    // Without stalled subscribers again, so slow drift (log growth, RocksDB flushes) and
    // other tests sharing the machine weigh on both sides of the comparison.
    drop(stream);
    drop(stalled);
    let baseline_after = throughput(&cluster, leader, window, workers).await;
    let without = (baseline + baseline_after) as f64 / 2.0;
    let ratio = with_stalled as f64 / without.max(1.0);
    println!(
        "throughput: {baseline} and {baseline_after} transfers without, {with_stalled} with stalled subscribers (ratio {ratio:.2})"
    );
    assert!(
        ratio >= 0.7,
        "stalled subscribers slowed writes: {without} -> {with_stalled}"
    );

    // The per-node subscriber limit: refused with RESOURCE_EXHAUSTED and a clear reason.
    let node = 1;
    let mut extra = Vec::new();
    let refusal = loop {
        let mut client = event_log(&cluster, node).await;
        match client
            .subscribe(SubscribeRequest {
                partition: 0,
                from_index: 1,
            })
            .await
        {
            Ok(stream) => extra.push(stream.into_inner()),
            Err(status) => break status,
        }
        assert!(
            extra.len() <= write_node::limits::SUBSCRIBERS_MAX,
            "limit not enforced"
        );
    };
    assert_eq!(
        (refusal.code(), reason(&refusal).as_str()),
        (Code::ResourceExhausted, "TOO_MANY_SUBSCRIBERS")
    );
}
