//! `wallet.v1.EventLogService/Subscribe`: the committed event log of one partition, streamed
//! to read nodes from any replica, leader or follower.
//!
//! Each subscriber is a task that reads at its own pace: a catch-up scan of the `events`
//! column family from its `from_index` to the applied index, then the rounds the store loop
//! applies from memory (`StoreHandle::tail`: the blocks it just wrote, without a disk read or a
//! chain check of bytes that never left memory), and the disk again whenever it is not at the
//! tail (it lagged more than `EVENT_TAIL_ROUNDS` rounds, or a snapshot install skipped
//! entries): a new applied index (`StoreHandle::applied`) sends it to the disk for what the
//! tail did not give it. The store loop never waits for a subscriber: the tail is a bounded
//! ring that overwrites the oldest round, so a subscriber that stops reading just falls behind
//! on disk, and its bounded buffer is the only memory it pins.

use std::sync::Arc;

use event_codec::pb::event_to_pb;
use proto::v1::event_log_service_server::EventLogService;
use proto::v1::{SubscribeRequest, SubscribeResponse};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, broadcast, mpsc, watch};
use tokio_stream::wrappers::ReceiverStream;
use tokio_util::sync::CancellationToken;
use tonic::{Code, Request, Response, Status};

use crate::api_error::{ApiError, WriteApiError as _};
use crate::codec;
use crate::limits::{
    SCAN_CHUNK_BLOCKS, SCAN_CHUNK_BYTES_MAX, SUBSCRIBE_RETRY_AFTER, SUBSCRIBER_BUFFER_BLOCKS,
    SUBSCRIBERS_MAX,
};
use crate::metrics::EventLogMetrics;
use crate::storage::{CF_EVENTS, Db};
use crate::store::{AppliedRound, StoreHandle};

/// The EventLogService of one node.
#[derive(Clone)]
pub struct EventLog {
    store: StoreHandle,
    partitions: u32,
    permits: Arc<Semaphore>,
    metrics: EventLogMetrics,
    shutdown: CancellationToken,
}

impl EventLog {
    pub fn new(
        store: StoreHandle,
        partitions: u32,
        metrics: EventLogMetrics,
        shutdown: CancellationToken,
    ) -> EventLog {
        EventLog {
            store,
            partitions,
            permits: Arc::new(Semaphore::new(SUBSCRIBERS_MAX)),
            metrics,
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
        if !self.store.hosts(partition) {
            let error = self.store.not_hosted(partition);
            return Err(ApiError::from_store(error, &std::collections::BTreeMap::new()).into());
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
        // Subscribed before the catch-up scan, so no round falls between the two.
        let Some(tail) = self.store.tail(partition) else {
            unreachable!("partition {partition} was checked against the partition count");
        };
        tokio::spawn(follow(
            self.store.db().clone(),
            self.store.applied(),
            tail,
            Subscriber {
                partition,
                tx,
                metrics: self.metrics.clone(),
            },
            from_index,
            self.shutdown.clone(),
            permit,
        ));
        Ok(Response::new(ReceiverStream::new(rx)))
    }
}

/// One subscriber: serve the tail while it continues where the subscriber is, else scan the
/// disk to the applied index; wait for either to move; repeat. Ends when the subscriber goes
/// away, the node shuts down or the log cannot be read.
async fn follow(
    db: Arc<Db>,
    mut applied: watch::Receiver<Vec<u64>>,
    mut tail: broadcast::Receiver<Arc<AppliedRound>>,
    subscriber: Subscriber,
    mut next: u64,
    shutdown: CancellationToken,
    // Held for the subscriber's lifetime: the slot frees when this task ends.
    _permit: OwnedSemaphorePermit,
) {
    let Subscriber {
        partition,
        tx,
        metrics,
    } = subscriber;
    // Every block streamed from disk is checked against the hash chain: a corrupted block
    // ends the stream with DATA_LOSS instead of reaching a read node.
    let mut chain = match previous_chain(&db, partition, next).await {
        Ok(chain) => chain,
        Err(error) => {
            let _ = tx.send(Err(unreadable(next, &error))).await;
            return;
        }
    };
    let mut received: Option<Arc<AppliedRound>> = None;
    loop {
        // From memory: every round held that continues where the subscriber is.
        loop {
            let round = match received.take() {
                Some(round) => round,
                None => match tail.try_recv() {
                    Ok(round) => round,
                    // Rounds were overwritten: the disk scan below serves them.
                    Err(broadcast::error::TryRecvError::Lagged(_)) => continue,
                    Err(broadcast::error::TryRecvError::Empty) => break,
                    Err(broadcast::error::TryRecvError::Closed) => return,
                },
            };
            if round.last < next {
                continue;
            }
            if round.first > next {
                // A gap (rounds overwritten, or a snapshot install): the disk scan fills it.
                break;
            }
            for (block, block_chain) in &round.blocks {
                if block.meta.index < next {
                    continue;
                }
                next = block.meta.index + 1;
                chain = *block_chain;
                metrics.from_memory.inc();
                if tx
                    .send(Ok(response(partition, block, block_chain)))
                    .await
                    .is_err()
                {
                    return;
                }
            }
            if next <= round.last {
                if tx.send(Ok(marker(partition, round.last))).await.is_err() {
                    return;
                }
                next = round.last + 1;
            }
        }
        // From disk: whatever the tail did not give, up to the applied index.
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
            metrics.from_disk.inc_by(blocks.len() as u64);
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
                if tx.send(Ok(marker(partition, target))).await.is_err() {
                    return;
                }
                next = target + 1;
            }
        }
        // The tail first: a round is published before the applied index that covers it.
        tokio::select! {
            biased;
            round = tail.recv() => match round {
                Ok(round) => received = Some(round),
                Err(broadcast::error::RecvError::Lagged(_)) => {}
                Err(broadcast::error::RecvError::Closed) => return,
            },
            changed = applied.changed() => if changed.is_err() { return },
            _ = tx.closed() => return,
            _ = shutdown.cancelled() => return,
        }
    }
}

/// Who a `follow` task streams to.
struct Subscriber {
    partition: u32,
    tx: mpsc::Sender<SubscribeItem>,
    metrics: EventLogMetrics,
}

/// A block as the stream carries it.
fn response(
    partition: u32,
    block: &codec::EventBlock,
    chain: &codec::ChainHash,
) -> SubscribeResponse {
    SubscribeResponse {
        partition,
        index: block.meta.index,
        timestamp_ms: block.meta.timestamp_ms,
        events: block.events.iter().map(event_to_pb).collect(),
        chain_hash: chain.to_vec(),
    }
}

/// Says the log goes up to `index` with no further events: no block, no chain hash.
fn marker(partition: u32, index: u64) -> SubscribeResponse {
    SubscribeResponse {
        partition,
        index,
        timestamp_ms: 0,
        events: Vec::new(),
        chain_hash: Vec::new(),
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
        blocks.push((
            response(partition, &stored.block, &stored.chain),
            stored.chain,
        ));
        if blocks.len() >= SCAN_CHUNK_BLOCKS || bytes >= SCAN_CHUNK_BYTES_MAX {
            return Ok((blocks, false));
        }
    }
    Ok((blocks, true))
}
