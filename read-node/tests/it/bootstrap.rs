//! A new read node bootstrapping from another read node's projection snapshot
//! (`--bootstrap-from`): it serves what the source serves and follows the log on from there;
//! a corrupted snapshot is refused and an unreachable source skipped, and the node then folds
//! from genesis.

use std::pin::Pin;
use std::time::{Duration, Instant};

use futures::{Stream, StreamExt as _};
use proto::internal::fetch_projection_snapshot_response::Part;
use proto::internal::read_snapshot_service_client::ReadSnapshotServiceClient;
use proto::internal::read_snapshot_service_server::{
    ReadSnapshotService, ReadSnapshotServiceServer,
};
use proto::internal::{FetchProjectionSnapshotRequest, FetchProjectionSnapshotResponse};
use proto::v1::query_service_client::QueryServiceClient;
use proto::v1::{BatchGetTransfersRequest, ListAccountsRequest, ListTransfersRequest};
use testkit::{Cluster, WAIT_MAX, free_port, transfer_request};
use tonic::transport::Channel;
use tonic::{Request, Response, Status};
use wallet_client::QueryClient;

use crate::harness::ReadNode;
use crate::{Rng, id};

/// What the logs say when a snapshot is installed, and when the node gives up on one.
const INSTALLED: &str = "bootstrapped from a read node's projection snapshot";
const FROM_GENESIS: &str = "folding the event log from genesis";

/// Accounts `bs-0`..`bs-<n>` (funded from `bs-issuer`) and `transfers` random payments
/// between them, several partitions apart. The transaction ids, in order.
async fn history(cluster: &Cluster, accounts: usize, transfers: usize) -> Vec<String> {
    let names: Vec<String> = (0..accounts).map(|i| format!("bs-{i}")).collect();
    cluster
        .open_account("bs-issuer", "USD", true)
        .await
        .expect("issuer");
    let mut ids = Vec::new();
    for name in &names {
        cluster
            .open_account(name, "USD", false)
            .await
            .expect("open");
        let funding = id();
        cluster
            .transfer(&transfer_request(
                &funding,
                "bs-issuer",
                name,
                "100.00",
                "USD",
            ))
            .await
            .expect("fund");
        ids.push(funding);
    }
    let mut rng = Rng(0x5eed_b007);
    for _ in 0..transfers {
        let from = &names[rng.below(accounts as u64) as usize];
        let to = &names[rng.below(accounts as u64) as usize];
        if from == to {
            continue;
        }
        let transaction = id();
        let amount = format!("0.{:02}", 1 + rng.below(99));
        cluster
            .transfer(&transfer_request(&transaction, from, to, &amount, "USD"))
            .await
            .expect("transfer");
        ids.push(transaction);
    }
    ids
}

/// Everything a read node serves about the history: every balance row, every account's
/// history page, every transfer by id.
async fn served(node: &ReadNode, transfer_ids: &[String]) -> String {
    let channel = Channel::from_shared(format!("http://{}", node.endpoint()))
        .expect("endpoint")
        .connect_lazy();
    let mut query = QueryServiceClient::new(channel);
    let accounts = query
        .list_accounts(ListAccountsRequest {
            prefix: "bs-".into(),
            page_size: 1_000,
            ..Default::default()
        })
        .await
        .expect("list accounts")
        .into_inner();
    let mut view = format!("{:?}\n", accounts.accounts);
    for account in &accounts.accounts {
        let history = query
            .list_transfers(ListTransfersRequest {
                account_id: account.account_id.clone(),
                page_size: 1_000,
                ..Default::default()
            })
            .await
            .expect("history")
            .into_inner();
        view.push_str(&format!("{:?}\n", history.entries));
    }
    let transfers = query
        .batch_get_transfers(BatchGetTransfersRequest {
            transaction_ids: transfer_ids.to_vec(),
        })
        .await
        .expect("transfers")
        .into_inner();
    view.push_str(&format!("{transfers:?}"));
    view
}

/// Waits until `node` serves what `reference` serves (both follow the same log; nothing is
/// written meanwhile) and returns it.
async fn converged(reference: &ReadNode, node: &ReadNode, transfer_ids: &[String]) -> String {
    let deadline = Instant::now() + WAIT_MAX;
    loop {
        let (expected, actual) = (
            served(reference, transfer_ids).await,
            served(node, transfer_ids).await,
        );
        if expected == actual {
            return actual;
        }
        assert!(
            Instant::now() < deadline,
            "{} never served what {} serves\n{}",
            node.endpoint(),
            reference.endpoint(),
            node.log_tail()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bootstrap_from_a_read_node_serves_the_same_and_pushes_what_follows() {
    let cluster = Cluster::start_partitioned(3, 4, &[]);
    cluster.wait_leader().await;
    let a = ReadNode::start_named(&cluster, "read-a", Vec::new());
    a.wait_serving().await;
    let mut ids = history(&cluster, 24, 300).await;

    let started = Instant::now();
    let b = ReadNode::start_named(
        &cluster,
        "read-b",
        vec!["--bootstrap-from".into(), a.endpoint()],
    );
    b.wait_serving().await;
    println!(
        "read node B SERVING {:?} after its start (bootstrapped)",
        started.elapsed()
    );
    assert!(b.log().contains(INSTALLED), "{}", b.log_tail());
    assert!(!b.log().contains(FROM_GENESIS), "{}", b.log_tail());
    let view = converged(&a, &b, &ids).await;
    assert!(
        view.contains("bs-23"),
        "the view covers the accounts: {view:.300}"
    );
    // The source removed its checkpoint once served; the receiver its staging directory.
    assert_eq!(
        std::fs::read_dir(a.data_dir.with_extension("snapshots"))
            .map(|dir| dir.count())
            .unwrap_or(0),
        0
    );
    assert!(!b.data_dir.with_extension("bootstrap").exists());

    // A transfer after B started is pushed to a watcher on B, chained on the snapshot's hash.
    let query_b = QueryClient::connect([b.endpoint()]).expect("query client");
    let mut watch = query_b.watch_balances(vec!["bs-1".into()]);
    let snapshot = watch.next().await.expect("snapshot").expect("ok");
    assert!(snapshot.snapshot);
    let after = id();
    cluster
        .transfer(&transfer_request(
            &after,
            "bs-issuer",
            "bs-1",
            "1.23",
            "USD",
        ))
        .await
        .expect("transfer after the bootstrap");
    let pushed = tokio::time::timeout(WAIT_MAX, watch.next())
        .await
        .expect("pushed in time")
        .expect("open stream")
        .expect("ok");
    assert_eq!(
        (
            pushed.transaction_id.as_str(),
            pushed.delta_minor,
            pushed.snapshot
        ),
        (after.as_str(), 123, false)
    );
    ids.push(after);
    converged(&a, &b, &ids).await;
    // No chain mismatch: the first block B folded chained on the snapshot's last hash.
    let scrape = testkit::metrics::scrape(b.metrics_port);
    assert_eq!(
        testkit::metrics::sum(&scrape, "wallet_read_chain_mismatches_total", &[]),
        0.0
    );
}

/// Forwards `FetchProjectionSnapshot` to a read node, flipping one bit of the first chunk.
struct CorruptingProxy {
    upstream: String,
}

type SnapshotStream =
    Pin<Box<dyn Stream<Item = Result<FetchProjectionSnapshotResponse, Status>> + Send>>;

#[tonic::async_trait]
impl ReadSnapshotService for CorruptingProxy {
    type FetchProjectionSnapshotStream = SnapshotStream;

    async fn fetch_projection_snapshot(
        &self,
        request: Request<FetchProjectionSnapshotRequest>,
    ) -> Result<Response<SnapshotStream>, Status> {
        let channel = Channel::from_shared(format!("http://{}", self.upstream))
            .expect("endpoint")
            .connect_lazy();
        let upstream = ReadSnapshotServiceClient::new(channel)
            .max_decoding_message_size(4 << 20)
            .fetch_projection_snapshot(request.into_inner())
            .await?
            .into_inner();
        let mut flipped = false;
        let corrupted = upstream.map(move |message| {
            message.map(|mut message| {
                if let Some(Part::Chunk(bytes)) = &mut message.part
                    && !flipped
                    && !bytes.is_empty()
                {
                    let middle = bytes.len() / 2;
                    bytes[middle] ^= 0x10;
                    flipped = true;
                }
                message
            })
        });
        Ok(Response::new(Box::pin(corrupted)))
    }
}

/// Serves a [`CorruptingProxy`] of `upstream` on a loopback port; its address.
async fn corrupting_proxy(upstream: String) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let address = listener.local_addr().expect("address").to_string();
    let service = ReadSnapshotServiceServer::new(CorruptingProxy { upstream })
        .max_encoding_message_size(4 << 20);
    tokio::spawn(
        tonic::transport::Server::builder()
            .add_service(service)
            .serve_with_incoming(tokio_stream::wrappers::TcpListenerStream::new(listener)),
    );
    address
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bootstrap_refuses_a_corrupted_snapshot_and_skips_an_unreachable_source() {
    let cluster = Cluster::start_partitioned(3, 2, &[]);
    cluster.wait_leader().await;
    let a = ReadNode::start_named(&cluster, "read-a", Vec::new());
    a.wait_serving().await;
    let ids = history(&cluster, 8, 60).await;

    let proxy = corrupting_proxy(a.endpoint()).await;
    let corrupted = ReadNode::start_named(
        &cluster,
        "read-corrupted",
        vec!["--bootstrap-from".into(), proxy],
    );
    let unreachable = ReadNode::start_named(
        &cluster,
        "read-unreachable",
        vec![
            "--bootstrap-from".into(),
            format!("127.0.0.1:{}", free_port()),
        ],
    );
    for node in [&corrupted, &unreachable] {
        node.wait_serving().await;
        let log = node.log();
        assert!(log.contains(FROM_GENESIS), "{}", node.log_tail());
        assert!(!log.contains(INSTALLED), "{}", node.log_tail());
        // Every attempt failed and left nothing behind; the fold from genesis got it all.
        assert_eq!(
            log.matches("bootstrap from a projection snapshot failed")
                .count(),
            read_node::limits::BOOTSTRAP_ATTEMPTS as usize,
            "{}",
            node.log_tail()
        );
        assert!(!node.data_dir.with_extension("bootstrap").exists());
        converged(&a, node, &ids).await;
    }
    assert!(
        corrupted.log().contains("do not match the file's digest"),
        "{}",
        corrupted.log_tail()
    );
}
