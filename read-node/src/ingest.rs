//! Following the write nodes: one subscription per partition, from any write node, failing
//! over to the next one when the stream breaks or stalls, always resuming right after the last
//! block handed to the fold (so no block is skipped or delivered twice).
//!
//! Every block's `chain_hash` is checked against the chain hash of the partition's previous
//! event block (from the checkpoint at start, then from the blocks handed on; see `chain.rs`).
//! A block that fails is not handed on: it is reported (`Faults::chain_mismatch`) and the
//! subscription fails over to the next write node, from the same position. A partition the
//! fold has stopped (`Faults::stuck_at`) is no longer followed.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use proto::v1::cluster_service_client::ClusterServiceClient;
use proto::v1::event_log_service_client::EventLogServiceClient;
use proto::v1::{GetClusterStatusRequest, SubscribeRequest};
use security::ClientTls;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tonic::metadata::{Ascii, MetadataValue};
use tonic::transport::{Channel, ClientTlsConfig};

use crate::chain::{self, Link};
use crate::config::Config;
use crate::db::{ChainHash, Checkpoint};
use crate::faults::FaultKind;
use crate::limits;
use crate::projector::{Block, Projection};

/// The write nodes and how to reach them: their URIs, TLS and the bearer token (if any).
#[derive(Clone)]
pub struct Upstream {
    pub uris: Vec<String>,
    tls: Option<ClientTlsConfig>,
    token: Option<MetadataValue<Ascii>>,
}

impl Upstream {
    pub fn new(config: &Config) -> anyhow::Result<Upstream> {
        let tls = config
            .write_node_tls
            .as_ref()
            .map(ClientTls::client_config)
            .transpose()
            .context("write node TLS")?;
        let token = config
            .write_node_token_file
            .as_deref()
            .map(crate::security::bearer)
            .transpose()?;
        let uris = config
            .write_node_uris()?
            .into_iter()
            .map(|uri| {
                let authority = uri.strip_prefix("http://").unwrap_or(&uri);
                if tls.is_some() {
                    format!("https://{authority}")
                } else {
                    format!("http://{authority}")
                }
            })
            .collect();
        Ok(Upstream { uris, tls, token })
    }

    /// A request carrying the token.
    fn request<T>(&self, message: T) -> tonic::Request<T> {
        let mut request = tonic::Request::new(message);
        if let Some(token) = &self.token {
            request
                .metadata_mut()
                .insert("authorization", token.clone());
        }
        request
    }

    /// A lazily connecting channel to a write node, with keepalive so a dead peer is noticed
    /// even on an idle stream.
    pub fn channel(&self, uri: &str) -> anyhow::Result<Channel> {
        Ok(security::tls::endpoint(uri, self.tls.as_ref())?
            .connect_timeout(limits::WRITE_NODE_CALL_TIMEOUT)
            .tcp_nodelay(true)
            .http2_keep_alive_interval(Duration::from_secs(5))
            .keep_alive_timeout(Duration::from_secs(5))
            .keep_alive_while_idle(true)
            .connect_lazy())
    }
}

pub(crate) async fn cluster_status(
    upstream: &Upstream,
    uri: &str,
) -> anyhow::Result<proto::v1::GetClusterStatusResponse> {
    let mut client = ClusterServiceClient::new(upstream.channel(uri)?);
    let mut request = upstream.request(GetClusterStatusRequest {
        include_state_digest: false,
    });
    request.set_timeout(limits::WRITE_NODE_CALL_TIMEOUT);
    Ok(client.get_cluster_status(request).await?.into_inner())
}

/// The cluster's applied index per partition (so also its partition count), from the first
/// write node that answers. Retries until one does (the write nodes may be starting too).
pub async fn discover_applied(upstream: &Upstream) -> Vec<u64> {
    let mut backoff = limits::RECONNECT_BACKOFF_MIN;
    loop {
        for uri in &upstream.uris {
            match cluster_status(upstream, uri).await {
                Ok(status) if !status.partitions.is_empty() => {
                    return status
                        .partitions
                        .iter()
                        .map(|partition| partition.applied_index)
                        .collect();
                }
                Ok(_) => tracing::warn!(%uri, "write node reported no partitions"),
                Err(error) => {
                    tracing::info!(%uri, error = format!("{error:#}"), "write node not reachable yet")
                }
            }
        }
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(limits::RECONNECT_BACKOFF_MAX);
    }
}

/// One task per partition, each resuming after its checkpoint. The tasks end on shutdown
/// (dropping their senders, which ends the fold thread once it has drained), and a
/// partition's task ends when the fold stops that partition.
pub fn spawn(
    upstream: Upstream,
    checkpoints: Vec<Checkpoint>,
    projection: Arc<Projection>,
    blocks: mpsc::Sender<Block>,
    shutdown: CancellationToken,
) -> Vec<JoinHandle<()>> {
    let uris = Arc::new(upstream.uris.clone());
    let upstream = Arc::new(upstream);
    checkpoints
        .into_iter()
        .enumerate()
        .map(|(partition, checkpoint)| {
            let follower = Follower {
                partition: partition as u32,
                uris: uris.clone(),
                upstream: upstream.clone(),
                // Spread partitions over the write nodes.
                source: partition % uris.len(),
                last: checkpoint.index,
                chain: checkpoint.chain,
                projection: projection.clone(),
                blocks: blocks.clone(),
            };
            let shutdown = shutdown.clone();
            let mut faults = projection.faults().subscribe();
            tokio::spawn(async move {
                let stopped = async {
                    let stuck = faults.wait_for(|faults| {
                        matches!(
                            faults.get(partition),
                            Some(Some(fault)) if fault.kind == FaultKind::FoldFailed
                        )
                    });
                    if stuck.await.is_err() {
                        std::future::pending::<()>().await;
                    }
                };
                tokio::select! {
                    () = follower.run() => {}
                    () = shutdown.cancelled() => {}
                    () = stopped => {
                        tracing::warn!(partition, "the fold stopped this partition: no longer following it");
                    }
                }
            })
        })
        .collect()
}

struct Follower {
    partition: u32,
    uris: Arc<Vec<String>>,
    upstream: Arc<Upstream>,
    source: usize,
    /// The last index handed to the fold: the next subscription starts at `last + 1`.
    last: u64,
    /// The chain hash of the last event block handed to the fold (or of the checkpoint).
    chain: ChainHash,
    projection: Arc<Projection>,
    blocks: mpsc::Sender<Block>,
}

/// A write node's refusal to serve a partition it holds no replica of (NOT_LEADER, which
/// Subscribe answers for nothing else: any replica serves the log).
fn placed_elsewhere(status: &tonic::Status) -> bool {
    use tonic_types::StatusExt as _;
    status.code() == tonic::Code::Unavailable
        && status
            .get_details_error_info()
            .is_some_and(|info| info.reason == "NOT_LEADER")
}

/// Why a subscription ended.
enum End {
    /// Stream broken, refused or stalled: try the next write node.
    Failover(String),
    /// The write node holds no replica of the partition (placement put it elsewhere): try the
    /// next one at once, without backing off.
    Elsewhere,
    /// The fold is gone (shutdown).
    Stop,
}

impl Follower {
    async fn run(mut self) {
        let mut backoff = limits::RECONNECT_BACKOFF_MIN;
        loop {
            let uri = self.uris[self.source].clone();
            let before = self.last;
            match self.follow(&uri).await {
                End::Stop => return,
                End::Elsewhere => {
                    tracing::debug!(partition = self.partition, %uri, "no replica there; next write node");
                    self.source = (self.source + 1) % self.uris.len();
                    tokio::time::sleep(limits::RECONNECT_BACKOFF_MIN).await;
                    continue;
                }
                End::Failover(why) => {
                    tracing::warn!(
                        partition = self.partition,
                        %uri,
                        resume_from = self.last + 1,
                        why,
                        "subscription ended; failing over"
                    );
                }
            }
            // Progress made: the source worked, so retry quickly; otherwise back off.
            if self.last > before {
                backoff = limits::RECONNECT_BACKOFF_MIN;
            }
            self.source = (self.source + 1) % self.uris.len();
            tokio::time::sleep(backoff).await;
            backoff = (backoff * 2).min(limits::RECONNECT_BACKOFF_MAX);
        }
    }

    async fn follow(&mut self, uri: &str) -> End {
        let channel = match self.upstream.channel(uri) {
            Ok(channel) => channel,
            Err(error) => return End::Failover(format!("bad endpoint: {error}")),
        };
        let mut client = EventLogServiceClient::new(channel)
            .max_decoding_message_size(limits::SUBSCRIBE_MESSAGE_BYTES_MAX);
        let request = self.upstream.request(SubscribeRequest {
            partition: self.partition,
            from_index: self.last + 1,
        });
        let mut stream = match client.subscribe(request).await {
            Ok(response) => response.into_inner(),
            Err(status) if placed_elsewhere(&status) => return End::Elsewhere,
            Err(status) => return End::Failover(format!("subscribe refused: {status:?}")),
        };
        tracing::info!(partition = self.partition, %uri, from_index = self.last + 1, "subscribed");
        loop {
            let message =
                match tokio::time::timeout(limits::SUBSCRIPTION_STALL, stream.message()).await {
                    Ok(Ok(Some(message))) => message,
                    Ok(Ok(None)) => return End::Failover("stream ended".into()),
                    Ok(Err(status)) => return End::Failover(format!("stream broke: {status:?}")),
                    Err(_) => {
                        if let Some(ahead) = self.other_node_ahead(uri).await {
                            return End::Failover(format!(
                                "silent for {:?} while {ahead} has applied further",
                                limits::SUBSCRIPTION_STALL
                            ));
                        }
                        continue;
                    }
                };
            // The contract: this partition, strictly increasing. Anything else is a broken
            // source; resubscribing elsewhere from our own position is always safe.
            if message.partition != self.partition || message.index <= self.last {
                return End::Failover(format!(
                    "out-of-order block (partition {}, index {}) after index {}",
                    message.partition, message.index, self.last
                ));
            }
            let link = match chain::check(
                &self.chain,
                message.index,
                message.timestamp_ms,
                &message.events,
                &message.chain_hash,
            ) {
                Ok(link) => link,
                Err(error) => {
                    self.projection.faults().chain_mismatch(
                        self.partition,
                        message.index,
                        uri,
                        &error,
                    );
                    return End::Failover(format!("block {} fails the event chain", message.index));
                }
            };
            let chain = match link {
                Link::Event(chain) => Some(chain),
                Link::Marker => None,
            };
            let block = Block {
                partition: message.partition,
                index: message.index,
                timestamp_ms: message.timestamp_ms,
                events: message.events,
                chain,
            };
            // Bounded: when the fold is behind, this waits and the stream back-pressures.
            if self.blocks.send(block).await.is_err() {
                return End::Stop;
            }
            self.last = message.index;
            if let Some(chain) = chain {
                self.chain = chain;
                self.projection.faults().chain_ok(self.partition);
            }
        }
    }

    /// Another write node that has applied this partition beyond our position, if any.
    async fn other_node_ahead(&self, current: &str) -> Option<String> {
        for uri in self.uris.iter().filter(|uri| uri.as_str() != current) {
            if let Ok(status) = cluster_status(&self.upstream, uri).await
                && status
                    .partitions
                    .iter()
                    .any(|p| p.partition == self.partition && p.applied_index > self.last)
            {
                return Some(uri.clone());
            }
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use std::pin::Pin;

    use event_codec::codec::{self, EventBlock};
    use futures::Stream;
    use proto::v1::SubscribeResponse;
    use proto::v1::event_log_service_server::{EventLogService, EventLogServiceServer};
    use tonic::{Request, Response, Status};

    use super::*;
    use crate::faults::PartitionLabels;

    /// A write node's event log that serves one block, with the chain hash given, then stays
    /// silent.
    struct FakeLog {
        block: SubscribeResponse,
    }

    #[tonic::async_trait]
    impl EventLogService for FakeLog {
        type SubscribeStream =
            Pin<Box<dyn Stream<Item = Result<SubscribeResponse, Status>> + Send + 'static>>;

        async fn subscribe(
            &self,
            request: Request<SubscribeRequest>,
        ) -> Result<Response<Self::SubscribeStream>, Status> {
            assert_eq!(request.get_ref().from_index, self.block.index);
            let block = self.block.clone();
            Ok(Response::new(Box::pin(
                futures::stream::iter([Ok(block)]).chain(futures::stream::pending()),
            )))
        }
    }

    async fn serve(log: FakeLog) -> String {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let uri = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(
            tonic::transport::Server::builder()
                .add_service(EventLogServiceServer::new(log))
                .serve_with_incoming(tokio_stream::wrappers::TcpListenerStream::new(listener)),
        );
        uri
    }

    use futures::StreamExt as _;

    /// A block whose chain hash does not follow from the checkpoint's is not handed to the
    /// fold: it is counted and reported, and ingest fails over to the next write node, whose
    /// genuine block goes through and clears the report.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_chain_mismatch_is_reported_and_ingest_fails_over() {
        let meta = ledger::EntryMeta {
            index: 1,
            timestamp_ms: 1_700_000_000_001,
        };
        let events = vec![ledger::Event::AccountOpened {
            account_id: "alice".into(),
            currency: ledger::Currency::parse("USD").unwrap(),
            allow_negative_balance: false,
            annotations: None,
        }];
        let pb_events: Vec<_> = events.iter().map(event_codec::pb::event_to_pb).collect();
        let (_, genuine) =
            codec::encode_events(&codec::CHAIN_GENESIS, &EventBlock { meta, events });
        let response = |chain_hash: Vec<u8>| SubscribeResponse {
            partition: 0,
            index: 1,
            timestamp_ms: meta.timestamp_ms,
            events: pb_events.clone(),
            chain_hash,
        };
        let mut forged = genuine;
        forged[0] ^= 1;
        let bad = serve(FakeLog {
            block: response(forged.to_vec()),
        })
        .await;
        let good = serve(FakeLog {
            block: response(genuine.to_vec()),
        })
        .await;
        let dir = tempfile::tempdir().unwrap();
        let projection = Arc::new(Projection::open(dir.path(), 1).unwrap());
        let upstream = Upstream {
            // Partition 0 starts with the first node: the one with the forged hash.
            uris: vec![bad, good],
            tls: None,
            token: None,
        };
        let (tx, mut rx) = mpsc::channel(4);
        let shutdown = CancellationToken::new();
        let tasks = spawn(
            upstream,
            projection.checkpoints(),
            projection.clone(),
            tx,
            shutdown.clone(),
        );
        let block = tokio::time::timeout(Duration::from_secs(20), rx.recv())
            .await
            .expect("a block within 20 s")
            .expect("a block");
        assert_eq!((block.index, block.chain), (1, Some(genuine)));
        let mismatches = projection
            .faults()
            .chain_mismatches()
            .get_or_create(&PartitionLabels { partition: 0 })
            .get();
        assert_eq!(mismatches, 1, "the forged block was counted once");
        // Cleared once the genuine block is handed on.
        let mut faults = projection.faults().subscribe();
        tokio::time::timeout(
            Duration::from_secs(5),
            faults.wait_for(|faults| faults[0].is_none()),
        )
        .await
        .expect("the mismatch report clears")
        .unwrap();
        // Nothing else arrived: the forged block never reached the fold.
        assert!(rx.try_recv().is_err());
        shutdown.cancel();
        for task in tasks {
            task.await.unwrap();
        }
    }
}
