//! Following the write nodes: one subscription per partition, from any write node, failing
//! over to the next one when the stream breaks or stalls, always resuming right after the last
//! block handed to the fold (so no block is skipped or delivered twice).

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

use crate::config::Config;
use crate::limits;
use crate::projector::Block;

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
        let token = match &config.write_node_token_file {
            Some(path) => {
                let mut value: MetadataValue<Ascii> =
                    format!("Bearer {}", crate::security::read_token(path)?)
                        .parse()
                        .with_context(|| format!("the token in {} is not ASCII", path.display()))?;
                value.set_sensitive(true);
                Some(value)
            }
            None => None,
        };
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

/// One task per partition, each resuming after `positions[partition]`. The tasks end on
/// shutdown (dropping their senders, which ends the fold thread once it has drained).
pub fn spawn(
    upstream: Upstream,
    positions: Vec<u64>,
    blocks: mpsc::Sender<Block>,
    shutdown: CancellationToken,
) -> Vec<JoinHandle<()>> {
    let uris = Arc::new(upstream.uris.clone());
    let upstream = Arc::new(upstream);
    positions
        .into_iter()
        .enumerate()
        .map(|(partition, applied)| {
            let follower = Follower {
                partition: partition as u32,
                uris: uris.clone(),
                upstream: upstream.clone(),
                // Spread partitions over the write nodes.
                source: partition % uris.len(),
                last: applied,
                blocks: blocks.clone(),
            };
            let shutdown = shutdown.clone();
            tokio::spawn(async move {
                tokio::select! {
                    () = follower.run() => {}
                    () = shutdown.cancelled() => {}
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
    blocks: mpsc::Sender<Block>,
}

/// Why a subscription ended.
enum End {
    /// Stream broken, refused or stalled: try the next write node.
    Failover(String),
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
            let block = Block {
                partition: message.partition,
                index: message.index,
                timestamp_ms: message.timestamp_ms,
                events: message.events,
            };
            // Bounded: when the fold is behind, this waits and the stream back-pressures.
            if self.blocks.send(block).await.is_err() {
                return End::Stop;
            }
            self.last = message.index;
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
