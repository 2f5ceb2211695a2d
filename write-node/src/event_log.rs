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
use std::time::Duration;

use ledger::{Event, TransferCommand, format_minor};
use proto::v1::event_log_service_server::EventLogService;
use proto::v1::ledger_event::Event as PbEvent;
use proto::v1::{
    AccountOpened, CreditRefused, LedgerEvent, SubscribeRequest, SubscribeResponse,
    TransferCompleted, TransferCredited, TransferDebited, TransferRefunded, TransferRejected,
    TransferSettled,
};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc, watch};
use tokio_stream::wrappers::ReceiverStream;
use tokio_util::sync::CancellationToken;
use tonic::{Code, Request, Response, Status};

use crate::api_error::ApiError;
use crate::codec;
use crate::storage::{CF_EVENTS, Db};
use crate::store::StoreHandle;

/// Concurrent Subscribe streams per node. Each costs a task, a buffer and disk reads; read
/// nodes need one per partition, so this leaves room for many read nodes.
pub const SUBSCRIBERS_MAX: usize = 64;
/// Event blocks buffered per subscriber between the disk reader and the gRPC stream. One block
/// is one raft entry (up to `ENTRY_COMMANDS_MAX` events), so this bounds memory per subscriber.
pub const SUBSCRIBER_BUFFER_BLOCKS: usize = 32;
/// Blocks read from RocksDB per disk read: the iterator is dropped between reads so a slow
/// subscriber never pins memtables or SST files for long.
pub const SCAN_CHUNK_BLOCKS: usize = 256;
/// Encoded bytes read per disk read, whichever of the two bounds comes first.
pub const SCAN_CHUNK_BYTES_MAX: usize = 4 * 1024 * 1024;
/// What a refused subscriber is told to wait before retrying.
pub const SUBSCRIBE_RETRY_AFTER: Duration = Duration::from_secs(1);

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
            Status::from(ApiError {
                retry_after: Some(SUBSCRIBE_RETRY_AFTER),
                ..ApiError::new(
                    Code::ResourceExhausted,
                    "TOO_MANY_SUBSCRIBERS",
                    format!(
                        "this node already serves {SUBSCRIBERS_MAX} event log subscribers; \
                         retry later or subscribe to another node"
                    ),
                )
            })
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

/// The wire form of a ledger event. Every `ledger::Event` variant needs one arm here, one
/// message in `event_log.proto` and one arm in the read node's fold.
pub fn event_to_pb(event: &Event) -> LedgerEvent {
    let event = match event {
        Event::AccountOpened {
            account_id,
            currency,
            allow_negative_balance,
        } => PbEvent::AccountOpened(AccountOpened {
            account_id: account_id.clone(),
            currency: currency.code().to_owned(),
            allow_negative_balance: *allow_negative_balance,
        }),
        Event::TransferCompleted { transfer, .. } => {
            let (transaction_id, amount, currency) = transfer_fields(transfer);
            PbEvent::TransferCompleted(TransferCompleted {
                transaction_id,
                from_account: transfer.from.clone(),
                to_account: transfer.to.clone(),
                amount,
                amount_minor: transfer.amount_minor,
                currency,
            })
        }
        Event::TransferRejected {
            transfer, reason, ..
        } => {
            let (transaction_id, amount, currency) = transfer_fields(transfer);
            PbEvent::TransferRejected(TransferRejected {
                transaction_id,
                from_account: transfer.from.clone(),
                to_account: transfer.to.clone(),
                amount,
                amount_minor: transfer.amount_minor,
                currency,
                reason: reason.reason().to_owned(),
                field: reason.field().to_owned(),
            })
        }
        Event::TransferDebited { transfer, .. } => {
            let (transaction_id, amount, currency) = transfer_fields(transfer);
            PbEvent::TransferDebited(TransferDebited {
                transaction_id,
                from_account: transfer.from.clone(),
                to_account: transfer.to.clone(),
                amount,
                amount_minor: transfer.amount_minor,
                currency,
            })
        }
        Event::TransferCredited { transfer, .. } => {
            let (transaction_id, amount, currency) = transfer_fields(transfer);
            PbEvent::TransferCredited(TransferCredited {
                transaction_id,
                from_account: transfer.from.clone(),
                to_account: transfer.to.clone(),
                amount,
                amount_minor: transfer.amount_minor,
                currency,
            })
        }
        Event::CreditRefused {
            transfer, reason, ..
        } => {
            let (transaction_id, amount, currency) = transfer_fields(transfer);
            PbEvent::CreditRefused(CreditRefused {
                transaction_id,
                from_account: transfer.from.clone(),
                to_account: transfer.to.clone(),
                amount,
                amount_minor: transfer.amount_minor,
                currency,
                reason: reason.reason().to_owned(),
                field: reason.field().to_owned(),
            })
        }
        Event::TransferSettled {
            transaction_id,
            credit_index,
            ..
        } => PbEvent::TransferSettled(TransferSettled {
            transaction_id: transaction_id.hyphenated().to_string(),
            credit_index: *credit_index,
        }),
        Event::TransferRefunded {
            transaction_id,
            reason,
            credit_index,
            ..
        } => PbEvent::TransferRefunded(TransferRefunded {
            transaction_id: transaction_id.hyphenated().to_string(),
            reason: reason.reason().to_owned(),
            field: reason.field().to_owned(),
            credit_index: *credit_index,
        }),
    };
    LedgerEvent { event: Some(event) }
}

fn transfer_fields(transfer: &TransferCommand) -> (String, String, String) {
    (
        transfer.transaction_id.hyphenated().to_string(),
        format_minor(i128::from(transfer.amount_minor), transfer.currency),
        transfer.currency.code().to_owned(),
    )
}

/// The inverse of [`event_to_pb`] for one event of the block at `meta`: what an auditor
/// replaying a live event stream (`walletctl replay --endpoint`) feeds to `ledger::evolve`,
/// and re-encodes to check the block's chain hash.
pub fn event_from_pb(meta: ledger::EntryMeta, event: &LedgerEvent) -> anyhow::Result<Event> {
    use anyhow::Context as _;
    let currency = |code: &str| {
        ledger::Currency::parse(code).with_context(|| format!("unknown currency {code:?}"))
    };
    let id = |text: &str| {
        uuid::Uuid::parse_str(text).with_context(|| format!("bad transaction id {text:?}"))
    };
    let reason = |reason: &str, field: &str| {
        ledger::RejectReason::from_reason_and_field(reason, field)
            .with_context(|| format!("unknown reject reason {reason:?} / {field:?}"))
    };
    let transfer = |transaction_id: &str, from: &str, to: &str, amount_minor: i64, code: &str| {
        anyhow::Ok(TransferCommand {
            transaction_id: id(transaction_id)?,
            from: from.to_owned(),
            to: to.to_owned(),
            amount_minor,
            currency: currency(code)?,
        })
    };
    Ok(match event.event.as_ref().context("empty event")? {
        PbEvent::AccountOpened(e) => Event::AccountOpened {
            account_id: e.account_id.clone(),
            currency: currency(&e.currency)?,
            allow_negative_balance: e.allow_negative_balance,
        },
        PbEvent::TransferCompleted(e) => Event::TransferCompleted {
            transfer: transfer(
                &e.transaction_id,
                &e.from_account,
                &e.to_account,
                e.amount_minor,
                &e.currency,
            )?,
            meta,
        },
        PbEvent::TransferRejected(e) => Event::TransferRejected {
            transfer: transfer(
                &e.transaction_id,
                &e.from_account,
                &e.to_account,
                e.amount_minor,
                &e.currency,
            )?,
            reason: reason(&e.reason, &e.field)?,
            meta,
        },
        PbEvent::TransferDebited(e) => Event::TransferDebited {
            transfer: transfer(
                &e.transaction_id,
                &e.from_account,
                &e.to_account,
                e.amount_minor,
                &e.currency,
            )?,
            meta,
        },
        PbEvent::TransferCredited(e) => Event::TransferCredited {
            transfer: transfer(
                &e.transaction_id,
                &e.from_account,
                &e.to_account,
                e.amount_minor,
                &e.currency,
            )?,
            meta,
        },
        PbEvent::CreditRefused(e) => Event::CreditRefused {
            transfer: transfer(
                &e.transaction_id,
                &e.from_account,
                &e.to_account,
                e.amount_minor,
                &e.currency,
            )?,
            reason: reason(&e.reason, &e.field)?,
            meta,
        },
        PbEvent::TransferSettled(e) => Event::TransferSettled {
            transaction_id: id(&e.transaction_id)?,
            credit_index: e.credit_index,
            meta,
        },
        PbEvent::TransferRefunded(e) => Event::TransferRefunded {
            transaction_id: id(&e.transaction_id)?,
            reason: reason(&e.reason, &e.field)?,
            credit_index: e.credit_index,
            meta,
        },
    })
}
