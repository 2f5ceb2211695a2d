//! `wallet.v1.EventLogService/Subscribe`: the committed event log of one partition, streamed
//! to read nodes from any replica, leader or follower.
//!
//! Each subscriber is a task that reads the `events` column family at its own pace: a catch-up
//! scan from its `from_index` to the applied index, then, whenever the store loop publishes a
//! new applied index (`StoreHandle::applied`), the same scan again from where it stopped. The
//! store loop never waits for a subscriber and never holds data for one: a watch channel only
//! keeps the latest applied index, so a subscriber that stops reading just falls behind on
//! disk, and its bounded buffer is the only memory it pins.

use std::sync::Arc;

use event_codec::pb::event_to_pb;
use proto::v1::event_log_service_server::EventLogService;
use proto::v1::{SubscribeRequest, SubscribeResponse};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc, watch};
use tokio_stream::wrappers::ReceiverStream;
use tokio_util::sync::CancellationToken;
use tonic::{Code, Request, Response, Status};

use crate::api_error::ApiError;
use crate::codec;
use crate::limits::{
    SCAN_CHUNK_BLOCKS, SCAN_CHUNK_BYTES_MAX, SUBSCRIBE_RETRY_AFTER, SUBSCRIBER_BUFFER_BLOCKS,
    SUBSCRIBERS_MAX,
};
use crate::storage::{CF_EVENTS, Db};
use crate::store::StoreHandle;

/// The EventLogService of one node.
#[derive(Clone)]
pub struct EventLog {
    store: StoreHandle,
    partitions: u32,
    permits: Arc<Semaphore>,
    shutdown: CancellationToken,
}

impl EventLog {
    pub fn new(store: StoreHandle, partitions: u32, shutdown: CancellationToken) -> EventLog {
        EventLog {
            store,
            partitions,
            permits: Arc::new(Semaphore::new(SUBSCRIBERS_MAX)),
            shutdown,
        }
    }
}

impl EventLog {
    /// Subscribe streams being served now.
    pub fn subscribers(&self) -> usize {
        SUBSCRIBERS_MAX - self.permits.available_permits()
    }
}

type SubscribeItem = Result<SubscribeResponse, Status>;

#[tonic::async_trait]
impl EventLogService for EventLog {
    type SubscribeStream = ReceiverStream<SubscribeItem>;

    #[tracing::instrument(skip_all, fields(partition = request.get_ref().partition, from_index = request.get_ref().from_index))]
    async fn subscribe(
        &self,
        request: Request<SubscribeRequest>,
    ) -> Result<Response<Self::SubscribeStream>, Status> {
        let SubscribeRequest {
            partition,
            from_index,
        } = request.into_inner();
        if partition >= self.partitions {
            return Err(ApiError::invalid(
                "partition",
                "INVALID_PARTITION",
                format!(
                    "partition {partition} does not exist: this cluster has partitions 0..{}",
                    self.partitions
                ),
            )
            .into());
        }
        if from_index < 1 {
            return Err(ApiError::invalid(
                "from_index",
                "INVALID_FROM_INDEX",
                "from_index must be at least 1 (the first raft log index)",
            )
            .into());
        }
        let permit = self.permits.clone().try_acquire_owned().map_err(|_| {
            Status::from(
                ApiError::new(
                    Code::ResourceExhausted,
                    "TOO_MANY_SUBSCRIBERS",
                    format!(
                        "this node already serves {SUBSCRIBERS_MAX} event log subscribers; \
                         retry later or subscribe to another node"
                    ),
                )
                .retry_after(SUBSCRIBE_RETRY_AFTER),
            )
        })?;
        let (tx, rx) = mpsc::channel(SUBSCRIBER_BUFFER_BLOCKS);
        tokio::spawn(follow(
            self.store.db().clone(),
            self.store.applied(),
            partition,
            from_index,
            tx,
            self.shutdown.clone(),
            permit,
        ));
        Ok(Response::new(ReceiverStream::new(rx)))
    }
}

/// One subscriber: scan to the applied index, wait for it to move, repeat. Ends when the
/// subscriber goes away, the node shuts down or the log cannot be read.
async fn follow(
    db: Arc<Db>,
    mut applied: watch::Receiver<Vec<u64>>,
    partition: u32,
    mut next: u64,
    tx: mpsc::Sender<SubscribeItem>,
    shutdown: CancellationToken,
    // Held for the subscriber's lifetime: the slot frees when this task ends.
    _permit: OwnedSemaphorePermit,
) {
    // Every block streamed is checked against the hash chain: a corrupted block ends the
    // stream with DATA_LOSS instead of reaching a read node.
    let mut chain = match previous_chain(&db, partition, next).await {
        Ok(chain) => chain,
        Err(error) => {
            let _ = tx.send(Err(unreadable(next, &error))).await;
            return;
        }
    };
    loop {
        let target = applied
            .borrow_and_update()
            .get(partition as usize)
            .copied()
            .unwrap_or(0);
        while next <= target {
            let reader = db.clone();
            let from = next;
            // RocksDB reads block: keep them off the async workers.
            let chunk = tokio::task::spawn_blocking(move || {
                read_chunk(&reader, partition, from, target, chain)
            })
            .await
            .map_err(anyhow::Error::from);
            let (blocks, complete) = match chunk {
                Ok(Ok(chunk)) => chunk,
                Ok(Err(ChunkError::Corrupt { index, source })) => {
                    tracing::error!(partition, index, %source, "refusing to serve a corrupted event block");
                    let _ = tx
                        .send(Err(ApiError::new(
                            Code::DataLoss,
                            "EVENT_LOG_CORRUPT",
                            format!(
                                "the event block at index {index} of partition {partition} fails \
                                 its hash chain ({source}); this node will not serve it: \
                                 subscribe to another replica"
                            ),
                        )
                        .into()))
                        .await;
                    return;
                }
                Ok(Err(ChunkError::Storage(error))) | Err(error) => {
                    tracing::error!(
                        partition,
                        from,
                        error = format!("{error:#}"),
                        "reading the event log failed"
                    );
                    let _ = tx.send(Err(unreadable(from, &error))).await;
                    return;
                }
            };
            for (block, block_chain) in blocks {
                next = block.index + 1;
                chain = block_chain;
                // Awaiting here paces this subscriber only: nothing upstream waits for it.
                if tx.send(Ok(block)).await.is_err() {
                    return;
                }
            }
            if complete && next <= target {
                // The entries up to `target` produced no events: say how far the log goes, so
                // the subscriber's position (and read-your-writes on it) can move past them.
                let marker = SubscribeResponse {
                    partition,
                    index: target,
                    timestamp_ms: 0,
                    events: Vec::new(),
                    chain_hash: Vec::new(),
                };
                if tx.send(Ok(marker)).await.is_err() {
                    return;
                }
                next = target + 1;
            }
        }
        tokio::select! {
            changed = applied.changed() => if changed.is_err() { return },
            _ = tx.closed() => return,
            _ = shutdown.cancelled() => return,
        }
    }
}

fn unreadable(from: u64, error: &anyhow::Error) -> Status {
    ApiError::new(
        Code::Internal,
        "EVENT_LOG_UNREADABLE",
        format!("reading the event log at index {from} failed: {error:#}"),
    )
    .into()
}

/// The chain hash a stream starting at `from` continues: that of the last block before it.
async fn previous_chain(
    db: &Arc<Db>,
    partition: u32,
    from: u64,
) -> anyhow::Result<codec::ChainHash> {
    let db = db.clone();
    tokio::task::spawn_blocking(move || {
        match db.last_indexed_before(CF_EVENTS, partition, from)? {
            Some((_, bytes)) => Ok(codec::decode_events(&bytes)?.chain),
            None => Ok(codec::CHAIN_GENESIS),
        }
    })
    .await?
}

enum ChunkError {
    Corrupt {
        index: u64,
        source: codec::ChainError,
    },
    Storage(anyhow::Error),
}

type Chunk = (Vec<(SubscribeResponse, codec::ChainHash)>, bool);

/// Up to one chunk of event blocks in `[from, to]`, each checked to follow `chain`, and
/// whether the chunk reached `to` (false when a size bound cut it short).
fn read_chunk(
    db: &Db,
    partition: u32,
    from: u64,
    to: u64,
    mut chain: codec::ChainHash,
) -> Result<Chunk, ChunkError> {
    let mut blocks = Vec::new();
    let mut bytes = 0;
    for row in db.scan_indexed(CF_EVENTS, partition, from, to) {
        let (index, value) = row.map_err(ChunkError::Storage)?;
        bytes += value.len();
        let stored = codec::decode_linked(&chain, index, &value)
            .map_err(|source| ChunkError::Corrupt { index, source })?;
        chain = stored.chain;
        let block = stored.block;
        blocks.push((
            SubscribeResponse {
                partition,
                index,
                timestamp_ms: block.meta.timestamp_ms,
                events: block.events.iter().map(event_to_pb).collect(),
                chain_hash: stored.chain.to_vec(),
            },
            stored.chain,
        ));
        if blocks.len() >= SCAN_CHUNK_BLOCKS || bytes >= SCAN_CHUNK_BYTES_MAX {
            return Ok((blocks, false));
        }
    }
    Ok((blocks, true))
}
