//! The store loop: one thread owns every partition's `RawNode` and ledger and runs rounds of
//! gather -> tick -> propose -> persist (one synced RocksDB write for all partitions) ->
//! send -> apply -> reply. No lock is shared with the gRPC side: services talk to the loop
//! through two bounded mailboxes (client commands, inbound raft messages) and one-shot replies.
//!
//! Ready handling follows raft-rs's synchronous contract: leader messages go out before the
//! fsync (replication overlaps the leader's own write), everything raft marks as "persisted
//! messages" goes out only after the synced write, committed entries are applied after that,
//! and nothing awaits between `ready()` and `advance()`.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, OnceLock};
use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::Context;
use ledger::{Account, Command, EntryMeta, Ledger, Outcome, TransferCommand, TransferRecord};
use raft::eraftpb::{Entry, EntryType, Message, MessageType};
use raft::{RawNode, ReadState, SnapshotStatus, StateRole};
use rocksdb::WriteBatch;
use tokio::sync::{mpsc, oneshot, watch};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::codec::{self, EntryPayload, EventBlock};
use crate::config::Config;
use crate::limits;
use crate::replay;
use crate::snapshot::{self, SnapshotMeta};
use crate::storage::{CF_EVENTS, Db, PartitionStorage, index_key};
use crate::transport::{self, Outbox};

/// Why a command or read got no answer from the ledger. Each maps to UNAVAILABLE or
/// RESOURCE_EXHAUSTED at the API.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum StoreError {
    #[error("this node is not the partition leader")]
    NotLeader { leader_id: Option<u64> },
    #[error(
        "leadership changed while the command was in flight; it may or may not have been applied"
    )]
    OutcomeUnknown,
    #[error("the node is overloaded")]
    Overloaded,
    #[error("the node is shutting down")]
    ShuttingDown,
    /// The store loop stopped on a failed RocksDB write (or another storage error): the node
    /// accepts nothing more and exits. A command answered with this may or may not commit
    /// through the other replicas.
    #[error(
        "the node's storage failed; it stopped accepting writes and must be restarted \
         (a command in flight may or may not have been applied)"
    )]
    StorageFailed,
    #[error("the linearizable read did not complete in time")]
    ReadTimeout,
}

/// A command's answer: the ledger outcome and the log position that decided it.
#[derive(Clone, Debug)]
pub struct Applied {
    pub outcome: Outcome,
    pub partition: u32,
    pub index: u64,
}

/// A linearizable read.
#[derive(Clone, Debug)]
pub enum Query {
    Account(String),
    Transfer(uuid::Uuid),
}

#[derive(Clone, Debug)]
pub enum QueryAnswer {
    Account(Option<Account>),
    Transfer(Option<TransferRecord>),
}

/// A read's answer and the applied index it reflects.
#[derive(Clone, Debug)]
pub struct ReadAnswer {
    pub answer: QueryAnswer,
    pub partition: u32,
    pub index: u64,
}

/// One partition as this node sees it.
#[derive(Clone, Debug)]
pub struct PartitionStatus {
    pub partition: u32,
    pub leader_id: u64,
    pub term: u64,
    pub commit_index: u64,
    pub applied_index: u64,
    pub role: &'static str,
    pub state_digest: Option<[u8; 32]>,
    pub in_flight_transfers: u64,
    pub snapshot_index: u64,
    pub log_first_index: u64,
}

type ProposeReply = oneshot::Sender<Result<Applied, StoreError>>;
type ReadReply = oneshot::Sender<Result<ReadAnswer, StoreError>>;

enum ClientRequest {
    Propose {
        partition: u32,
        command: Command,
        reply: ProposeReply,
    },
    Read {
        partition: u32,
        query: Query,
        reply: ReadReply,
    },
    Status {
        with_digest: bool,
        reply: oneshot::Sender<Vec<PartitionStatus>>,
    },
    InFlight {
        partition: u32,
        after: Option<uuid::Uuid>,
        reply: oneshot::Sender<Result<Vec<TransferCommand>, StoreError>>,
    },
    /// This node (a leader) finished streaming a snapshot to follower `to`, or failed to.
    SnapshotServed { partition: u32, to: u64, ok: bool },
}

/// A snapshot this node (a follower) fetched, with the raft message that announced it.
struct Fetched {
    partition: u32,
    result: anyhow::Result<transport::FetchedSnapshot>,
    message: Message,
}

/// Raft messages received from one peer frame.
pub struct InboundRaft {
    pub messages: Vec<(u32, Message)>,
}

/// The services' handle on the store loop. Cheap to clone.
#[derive(Clone)]
pub struct StoreHandle {
    client_tx: mpsc::Sender<ClientRequest>,
    raft_tx: mpsc::Sender<InboundRaft>,
    leaders: watch::Receiver<Vec<u64>>,
    applied: watch::Receiver<Vec<u64>>,
    db: Arc<Db>,
    /// Why the loop stopped, set before its mailbox closes: what later callers are told.
    stopped: Arc<OnceLock<StoreError>>,
}

impl StoreHandle {
    /// The error for a request the loop will never see: its mailbox is closed.
    fn stopped(&self) -> StoreError {
        self.stopped
            .get()
            .cloned()
            .unwrap_or(StoreError::ShuttingDown)
    }

    /// Proposes a command and waits until it is applied (or definitely has no answer here).
    pub async fn propose(&self, partition: u32, command: Command) -> Result<Applied, StoreError> {
        let (reply, answer) = oneshot::channel();
        self.client_tx
            .try_send(ClientRequest::Propose {
                partition,
                command,
                reply,
            })
            .map_err(|error| match error {
                mpsc::error::TrySendError::Full(_) => StoreError::Overloaded,
                mpsc::error::TrySendError::Closed(_) => self.stopped(),
            })?;
        // A dropped reply means the loop stopped with the command possibly in the log.
        answer.await.unwrap_or(Err(StoreError::OutcomeUnknown))
    }

    /// A linearizable read through raft's ReadIndex (on the leader or, forwarded, from a
    /// follower), bounded by `READ_TIMEOUT`.
    pub async fn read(&self, partition: u32, query: Query) -> Result<ReadAnswer, StoreError> {
        let (reply, answer) = oneshot::channel();
        self.client_tx
            .try_send(ClientRequest::Read {
                partition,
                query,
                reply,
            })
            .map_err(|error| match error {
                mpsc::error::TrySendError::Full(_) => StoreError::Overloaded,
                mpsc::error::TrySendError::Closed(_) => self.stopped(),
            })?;
        match tokio::time::timeout(limits::READ_TIMEOUT, answer).await {
            Ok(answer) => answer.unwrap_or_else(|_| Err(self.stopped())),
            Err(_) => Err(StoreError::ReadTimeout),
        }
    }

    /// Every partition as this node sees it; `with_digest` also hashes each partition's state
    /// (on the store thread, proportional to the state: only for comparing replicas).
    pub async fn status(&self, with_digest: bool) -> Result<Vec<PartitionStatus>, StoreError> {
        let (reply, answer) = oneshot::channel();
        self.client_tx
            .send(ClientRequest::Status { with_digest, reply })
            .await
            .map_err(|_| self.stopped())?;
        answer.await.map_err(|_| self.stopped())
    }

    /// Cross-partition transfers this node's leader replica holds in flight, for the saga
    /// driver to finish: at most `limits::RECOVERY_BATCH_MAX`, the first ones after `after`
    /// in transaction id order, wrapping around (`Ledger::in_flight_from`).
    pub async fn in_flight(
        &self,
        partition: u32,
        after: Option<uuid::Uuid>,
    ) -> Result<Vec<TransferCommand>, StoreError> {
        let (reply, answer) = oneshot::channel();
        self.client_tx
            .send(ClientRequest::InFlight {
                partition,
                after,
                reply,
            })
            .await
            .map_err(|_| self.stopped())?;
        answer.await.map_err(|_| self.stopped())?
    }

    /// Tells raft how sending a snapshot to follower `to` ended (it waits for this).
    pub async fn snapshot_served(&self, partition: u32, to: u64, ok: bool) {
        let _ = self
            .client_tx
            .send(ClientRequest::SnapshotServed { partition, to, ok })
            .await;
    }

    /// Inbound raft messages; waits when the loop is behind (back-pressure on the peer stream).
    pub async fn step(&self, inbound: InboundRaft) -> Result<(), StoreError> {
        self.raft_tx.send(inbound).await.map_err(|_| self.stopped())
    }

    /// Leader id per partition (0 = unknown), updated by the loop as leadership changes.
    pub fn leaders(&self) -> watch::Receiver<Vec<u64>> {
        self.leaders.clone()
    }

    /// Applied index per partition, updated after every apply round. Everything at or below
    /// it is readable from the `events` column family (`Db::scan_indexed`): the event log that
    /// subscribers follow.
    pub fn applied(&self) -> watch::Receiver<Vec<u64>> {
        self.applied.clone()
    }

    /// The node's RocksDB, for readers of the event log.
    pub fn db(&self) -> &Arc<Db> {
        &self.db
    }
}

struct PendingEntry {
    term: u64,
    replies: Vec<ProposeReply>,
}

struct Partition {
    id: u32,
    raw: RawNode<PartitionStorage>,
    ledger: Ledger,
    /// Commands received this round, proposed together as one entry (group commit).
    proposals: Vec<(Command, ProposeReply)>,
    /// Proposed entries awaiting apply, by log index.
    pending: BTreeMap<u64, PendingEntry>,
    reads_waiting: Vec<(Query, ReadReply)>,
    reads_in_flight: HashMap<u64, Vec<(Query, ReadReply)>>,
    reads_ready: Vec<(u64, Vec<(Query, ReadReply)>)>,
    read_ctx_next: u64,
    applied_index: u64,
    was_leader: bool,
    /// The highest leader timestamp of any entry this replica has had in its log (appended,
    /// applied, fetched with a snapshot, or found in storage at start). A leader stamps no
    /// entry below it, so entry times never go backwards in the log: not when the wall
    /// clock does, and not across leaders whose clocks disagree (a new leader's log holds
    /// every committed entry, so its bound covers them all).
    timestamp_ms_last: u64,
    /// Hash chain of the event log up to `applied_index` (see `codec::ChainHash`).
    chain_head: codec::ChainHash,
    /// Index of the newest durable snapshot, and whether the worker is writing a newer one.
    snapshot_index: u64,
    snapshot_writing: bool,
    /// Events applied since the last snapshot was started: with `snapshot_interval_events`
    /// it bounds what a restart replays, whatever the number of commands per entry.
    events_since_snapshot: u64,
    /// Leader: followers sent a snapshot and when; raft waits for `report_snapshot`.
    snapshot_sends: HashMap<u64, Instant>,
    /// Follower: a snapshot fetch is running, or its verified result waits for raft.
    snapshot_fetching: bool,
    /// Follower: the newest snapshot announced while a fetch was running, handled when that
    /// fetch ends. The leader waits for a fetch of every snapshot it announces; dropping one
    /// would stall replication to this follower until `SNAPSHOT_FETCH_TIMEOUT` (found by the
    /// nemesis: a leader compacting again during a fetch announced a second snapshot).
    snapshot_deferred: Option<Message>,
    snapshot_staged: Option<(SnapshotMeta, Ledger)>,
    metrics: crate::metrics::PartitionMetrics,
}

/// Starts the store loop on its own thread. The loop stops when `shutdown` is cancelled or a
/// storage error makes continuing unsafe; the returned join handle carries that error.
pub fn start(
    config: &Config,
    db: Arc<Db>,
    outbox: Outbox,
    metrics: crate::metrics::StoreMetrics,
    shutdown: CancellationToken,
) -> anyhow::Result<(StoreHandle, std::thread::JoinHandle<anyhow::Result<()>>)> {
    let voters: Vec<u64> = config.peers.keys().copied().collect();
    let (snapshot_jobs, snapshot_done) =
        snapshot::start_worker(db.clone(), config.partitions as usize)?;
    let (fetched_tx, fetched_rx) = mpsc::channel(config.partitions as usize);
    let logger = crate::logging::raft_logger();
    let partitions = open_partitions(config, &db, &voters, &logger, &metrics.partitions)?;
    let (client_tx, client_rx) = mpsc::channel(limits::CLIENT_MAILBOX_CAPACITY);
    let (raft_tx, raft_rx) = mpsc::channel(limits::RAFT_MAILBOX_CAPACITY);
    let (leaders_tx, leaders) = watch::channel(vec![0; partitions.len()]);
    let (applied_tx, applied) = watch::channel(
        partitions
            .iter()
            .map(|partition| partition.applied_index)
            .collect(),
    );
    let stopped = Arc::new(OnceLock::new());
    let handle = StoreHandle {
        client_tx,
        raft_tx,
        leaders,
        applied,
        db: db.clone(),
        stopped: stopped.clone(),
    };
    let store = Store {
        node_id: config.node_id,
        db,
        outbox,
        partitions,
        client_rx,
        raft_rx,
        leaders_tx,
        applied_tx,
        shutdown,
        peers: config.peers.clone(),
        snapshot_interval_entries: config.snapshot_interval_entries,
        snapshot_interval_events: config.snapshot_interval_events,
        log_retain: config.log_retain_entries,
        snapshot_jobs,
        snapshot_done,
        fetched_tx,
        fetched_rx,
        runtime: tokio::runtime::Handle::current(),
        metrics,
        stopped,
    };
    let thread = std::thread::Builder::new()
        .name("store".into())
        .spawn(move || store.run())
        .context("spawning the store thread")?;
    Ok((handle, thread))
}

/// Opens every partition, replaying them on as many threads as there are cores (each
/// partition's replay is sequential, partitions are independent): restart time divides by
/// the core count.
fn open_partitions(
    config: &Config,
    db: &Arc<Db>,
    voters: &[u64],
    logger: &slog::Logger,
    metrics: &[crate::metrics::PartitionMetrics],
) -> anyhow::Result<Vec<Partition>> {
    use std::sync::atomic::{AtomicU32, Ordering};
    let next = AtomicU32::new(0);
    let threads = std::thread::available_parallelism()
        .map_or(1, |cores| cores.get())
        .min(config.partitions as usize);
    let opened = std::sync::Mutex::new(Vec::new());
    std::thread::scope(|scope| {
        for _ in 0..threads {
            scope.spawn(|| {
                loop {
                    let id = next.fetch_add(1, Ordering::Relaxed);
                    if id >= config.partitions {
                        return;
                    }
                    let partition_metrics = metrics[id as usize].clone();
                    let partition =
                        open_partition(config, db, id, voters, logger, partition_metrics);
                    opened
                        .lock()
                        .expect("no panics while held")
                        .push((id, partition));
                }
            });
        }
    });
    let mut opened = opened.into_inner().expect("no panics while held");
    opened.sort_by_key(|(id, _)| *id);
    opened.into_iter().map(|(_, partition)| partition).collect()
}

fn open_partition(
    config: &Config,
    db: &Arc<Db>,
    id: u32,
    voters: &[u64],
    logger: &slog::Logger,
    metrics: crate::metrics::PartitionMetrics,
) -> anyhow::Result<Partition> {
    let mut storage = PartitionStorage::open(db.clone(), id, voters)?;
    let applied_index = storage.applied_index();
    let replay_started = std::time::Instant::now();
    let (state, snapshot) = recover(db, id, applied_index, storage.first_log_index())?;
    let replay::State {
        ledger, chain_head, ..
    } = state;
    let replay_ms = replay_started.elapsed().as_millis() as u64;
    let snapshot_index = snapshot.as_ref().map_or(0, |meta| meta.index);
    if let Some(meta) = snapshot {
        storage.set_snapshot(meta);
    }
    let raft_config = raft_config(config.node_id, applied_index);
    raft_config.validate().context("raft config")?;
    let logger = logger.new(slog::o!("partition" => id));
    let mut raw = RawNode::new(&raft_config, storage, &logger).context("starting raft")?;
    let timestamp_ms_last = stored_timestamp_ms(db, id, &raw)?;
    // Spread leaders: the preferred node of a partition asks for votes at once instead of
    // waiting out an election timeout. Pre-vote keeps this from disturbing a live leader.
    if voters[id as usize % voters.len()] == config.node_id {
        raw.campaign().context("campaign")?;
    }
    tracing::info!(
        partition = id,
        applied_index,
        snapshot_index,
        accounts = ledger.accounts_count(),
        transfers = ledger.transfers_count(),
        replay_ms,
        "partition opened"
    );
    Ok(Partition {
        id,
        raw,
        ledger,
        proposals: Vec::new(),
        pending: BTreeMap::new(),
        reads_waiting: Vec::new(),
        reads_in_flight: HashMap::new(),
        reads_ready: Vec::new(),
        read_ctx_next: 1,
        applied_index,
        was_leader: false,
        timestamp_ms_last,
        chain_head,
        snapshot_index,
        snapshot_writing: false,
        events_since_snapshot: 0,
        snapshot_sends: HashMap::new(),
        snapshot_fetching: false,
        snapshot_deferred: None,
        snapshot_staged: None,
        metrics,
    })
}

/// The highest entry timestamp stored for a partition: that of the last entry with a payload
/// in the raft log (entry times never decrease along the log), or, if the log holds none (all
/// compacted into a snapshot, or only a new leader's empty entries), that of the last event
/// block. A restarted leader stamps no entry below it.
fn stored_timestamp_ms(
    db: &Db,
    partition: u32,
    raw: &RawNode<PartitionStorage>,
) -> anyhow::Result<u64> {
    let log = &raw.raft.raft_log;
    let mut index = log.last_index();
    let mut in_log = 0;
    while index >= log.first_index() && index > 0 {
        let entries = log
            .entries(index, Some(1), raft::GetEntriesContext::empty(false))
            .with_context(|| format!("partition {partition}: reading log entry {index}"))?;
        if let Some(timestamp_ms) = entries
            .first()
            .and_then(|entry| codec::entry_timestamp_ms(&entry.data))
        {
            in_log = timestamp_ms;
            break;
        }
        index -= 1;
    }
    let in_events = match db.last_indexed_before(CF_EVENTS, partition, u64::MAX)? {
        Some((index, bytes)) => {
            codec::decode_events(&bytes)
                .with_context(|| format!("partition {partition}: event block {index}"))?
                .block
                .meta
                .timestamp_ms
        }
        None => 0,
    };
    Ok(in_log.max(in_events))
}

/// The wall clock, in ms since the Unix epoch, as the leader stamps entries. Tests skew it
/// with the `clock::offset_ms` failpoint.
fn now_ms() -> u64 {
    let now_ms = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |elapsed| elapsed.as_millis() as u64);
    #[cfg(feature = "failpoints")]
    if let Some(offset_ms) = crate::failpoints::clock_offset_ms() {
        return now_ms.saturating_add_signed(offset_ms);
    }
    now_ms
}

/// The raft configuration of every partition.
fn raft_config(node_id: u64, applied_index: u64) -> raft::Config {
    raft::Config {
        id: node_id,
        election_tick: limits::ELECTION_TICKS,
        heartbeat_tick: limits::HEARTBEAT_TICKS,
        applied: applied_index,
        // Bounds every append: no raft message exceeds `limits::RAFT_MESSAGE_BYTES_MAX`, so
        // every one fits a frame of the peer stream.
        max_size_per_msg: limits::RAFT_MSG_BYTES_MAX,
        max_inflight_msgs: limits::RAFT_INFLIGHT_MSGS_MAX,
        check_quorum: true,
        pre_vote: true,
        // Off: it merges a round's appends to one follower into one message without a size
        // bound, so a follower coming back far behind got one message of up to
        // `max_inflight_msgs` x `max_size_per_msg` (256 MiB), above the gRPC message limit:
        // the peer stream failed with OUT_OF_RANGE on every attempt. The store loop already
        // makes one entry per partition and round (group commit), so little is lost.
        batch_append: false,
        max_uncommitted_size: limits::RAFT_UNCOMMITTED_BYTES_MAX,
        max_committed_size_per_ready: limits::RAFT_COMMITTED_BYTES_PER_READY_MAX,
        ..Default::default()
    }
}

/// A partition's state at `applied_index`: its newest usable snapshot plus the events after
/// it, or (with no snapshot, or none that loads) every event from genesis. The event log is
/// complete on every replica, so genesis is always possible; `log_first_index` only tells
/// whether a snapshot must exist. A block that fails its hash-chain link stops the node.
fn recover(
    db: &Db,
    partition: u32,
    applied_index: u64,
    log_first_index: u64,
) -> anyhow::Result<(replay::State, Option<SnapshotMeta>)> {
    let metas = db.snapshot_metas(partition)?;
    for meta in metas
        .iter()
        .rev()
        .filter(|meta| meta.index <= applied_index)
    {
        match replay::State::from_snapshot(db, meta) {
            Ok(mut state) => {
                let until = replay::Until::Index(applied_index);
                replay::fold(db, partition, &mut state, until, |_, _| {})?;
                return Ok((state, Some(meta.clone())));
            }
            Err(error) => tracing::error!(
                partition,
                index = meta.index,
                error = format!("{error:#}"),
                "stored snapshot does not load; trying an older one"
            ),
        }
    }
    anyhow::ensure!(
        log_first_index <= 1 || !metas.is_empty(),
        "partition {partition}: the raft log was compacted but no snapshot is stored"
    );
    let mut state = replay::State::genesis();
    let until = replay::Until::Index(applied_index);
    replay::fold(db, partition, &mut state, until, |_, _| {})?;
    Ok((state, None))
}

struct Store {
    node_id: u64,
    db: Arc<Db>,
    outbox: Outbox,
    partitions: Vec<Partition>,
    client_rx: mpsc::Receiver<ClientRequest>,
    raft_rx: mpsc::Receiver<InboundRaft>,
    leaders_tx: watch::Sender<Vec<u64>>,
    applied_tx: watch::Sender<Vec<u64>>,
    shutdown: CancellationToken,
    peers: std::collections::BTreeMap<u64, String>,
    snapshot_interval_entries: u64,
    snapshot_interval_events: u64,
    log_retain: u64,
    snapshot_jobs: std::sync::mpsc::SyncSender<snapshot::Job>,
    snapshot_done: mpsc::Receiver<anyhow::Result<SnapshotMeta>>,
    fetched_tx: mpsc::Sender<Fetched>,
    fetched_rx: mpsc::Receiver<Fetched>,
    /// The node's multi-threaded runtime, for snapshot fetches (network and decoding stay off
    /// this thread).
    runtime: tokio::runtime::Handle,
    metrics: crate::metrics::StoreMetrics,
    stopped: Arc<OnceLock<StoreError>>,
}

impl Store {
    fn run(mut self) -> anyhow::Result<()> {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
            .context("store runtime")?;
        let result = runtime.block_on(self.rounds());
        // Callers whose command is in the log learn that its outcome is unknown; on a storage
        // failure everyone learns why the node stopped.
        let (in_log, error) = match &result {
            Ok(()) => (StoreError::OutcomeUnknown, StoreError::ShuttingDown),
            Err(error) => {
                tracing::error!(
                    error = format!("{error:#}"),
                    "store loop stopped: storage failure; the node stops and must be restarted"
                );
                (StoreError::StorageFailed, StoreError::StorageFailed)
            }
        };
        self.stopped
            .set(error.clone())
            .expect("the loop stops once");
        self.fail_everything(in_log, error);
        // A store failure stops the whole node rather than leave it half-working: after a
        // failed write (a failed fsync above all) nothing tells what reached the disk, so no
        // write is retried and the restart recovers from what is there.
        self.shutdown.cancel();
        result
    }

    async fn rounds(&mut self) -> anyhow::Result<()> {
        let mut tick_next = Instant::now() + limits::TICK_INTERVAL;
        let mut sample_next = Instant::now();
        loop {
            tokio::select! {
                biased;
                _ = self.shutdown.cancelled() => return Ok(()),
                inbound = self.raft_rx.recv() => match inbound {
                    Some(inbound) => self.on_raft(inbound),
                    None => return Ok(()),
                },
                request = self.client_rx.recv() => match request {
                    Some(request) => self.on_client(request),
                    None => return Ok(()),
                },
                written = self.snapshot_done.recv() => match written {
                    Some(written) => self.on_snapshot_written(written?)?,
                    None => anyhow::bail!("the snapshot worker stopped"),
                },
                Some(fetched) = self.fetched_rx.recv() => self.on_snapshot_fetched(fetched),
                _ = tokio::time::sleep_until(tick_next) => {}
            }
            self.metrics
                .queues(self.client_rx.len(), self.raft_rx.len());
            // Gather whatever else arrived, bounded so ticks and persistence keep their pace.
            let mut drained = 0;
            while drained < limits::ROUND_DRAIN_MAX {
                let Ok(inbound) = self.raft_rx.try_recv() else {
                    break;
                };
                self.on_raft(inbound);
                drained += 1;
            }
            while drained < limits::ROUND_DRAIN_MAX {
                let Ok(request) = self.client_rx.try_recv() else {
                    break;
                };
                self.on_client(request);
                drained += 1;
            }
            if Instant::now() >= tick_next {
                for partition in &mut self.partitions {
                    partition.raw.tick();
                    partition.expire_snapshot_sends();
                }
                tick_next = Instant::now() + limits::TICK_INTERVAL;
            }
            let now_ms = now_ms();
            for partition in &mut self.partitions {
                partition.propose(now_ms);
                partition.read_index();
            }
            self.handle_readies()?;
            self.check_leadership();
            self.start_snapshots();
            if Instant::now() >= sample_next {
                for partition in &mut self.partitions {
                    partition.metrics.sample(
                        &partition.raw.raft,
                        partition.applied_index,
                        &partition.ledger,
                    );
                }
                sample_next = Instant::now() + crate::metrics::SAMPLE_INTERVAL;
            }
        }
    }

    /// Hands a clone of every partition's ledger that is `snapshot_interval_entries` entries or
    /// `snapshot_interval_events` events past its
    /// last snapshot to the snapshot worker.
    fn start_snapshots(&mut self) {
        for partition in &mut self.partitions {
            let due = partition.applied_index
                >= partition.snapshot_index + self.snapshot_interval_entries
                || partition.events_since_snapshot >= self.snapshot_interval_events;
            if partition.snapshot_writing || !due {
                continue;
            }
            let index = partition.applied_index;
            let term = match partition.raw.raft.raft_log.term(index) {
                Ok(term) => term,
                Err(error) => unreachable!("the applied entry {index} is in the log: {error}"),
            };
            let job = snapshot::Job {
                partition: partition.id,
                index,
                term,
                voters: partition.raw.store().voters().to_vec(),
                ledger: partition.ledger.clone(),
                chain_head: partition.chain_head,
            };
            match self.snapshot_jobs.try_send(job) {
                Ok(()) => {
                    partition.snapshot_writing = true;
                    partition.events_since_snapshot = 0;
                }
                Err(std::sync::mpsc::TrySendError::Full(_)) => {}
                Err(std::sync::mpsc::TrySendError::Disconnected(_)) => {
                    tracing::error!("the snapshot worker stopped");
                }
            }
        }
    }

    /// A snapshot is durable: raft may send it, and the log behind it (less the retained
    /// tail) is dropped.
    fn on_snapshot_written(&mut self, meta: SnapshotMeta) -> anyhow::Result<()> {
        let partition = &mut self.partitions[meta.partition as usize];
        partition.snapshot_writing = false;
        partition.snapshot_index = partition.snapshot_index.max(meta.index);
        let compact_to = meta.index.saturating_sub(self.log_retain);
        let storage = partition.raw.mut_store();
        storage.set_snapshot(meta);
        if compact_to >= storage.first_log_index() {
            let mut batch = WriteBatch::default();
            storage.compact(compact_to, &mut batch)?;
            self.db
                .write(batch, false)
                .context("compacting the raft log")?;
        }
        Ok(())
    }

    /// A follower's fetch ended: on success raft gets the message that announced the snapshot
    /// and installs it in the next ready; on failure the leader will send it again.
    fn on_snapshot_fetched(&mut self, fetched: Fetched) {
        let slot = fetched.partition as usize;
        let partition = &mut self.partitions[slot];
        partition.snapshot_fetching = false;
        match fetched.result {
            Ok((meta, ledger, timestamp_ms_max)) => {
                tracing::info!(
                    partition = partition.id,
                    index = meta.index,
                    "snapshot fetched and verified; installing"
                );
                partition.saw_timestamp(timestamp_ms_max);
                partition.snapshot_staged = Some((meta, ledger));
                if let Err(error) = partition.raw.step(fetched.message) {
                    tracing::debug!(partition = partition.id, %error, "raft step");
                }
            }
            Err(error) => tracing::warn!(
                partition = partition.id,
                error = format!("{error:#}"),
                "snapshot fetch failed; raft will send it again"
            ),
        }
        // Stepped now that the fetched one is installed: raft answers it if it is no longer
        // ahead, otherwise it is fetched in turn.
        if let Some(message) = partition.snapshot_deferred.take() {
            self.on_snapshot_message(slot, message);
        }
    }

    /// A snapshot announced by the leader: step it if it is stale (raft answers) or already
    /// fetched; otherwise fetch it first and hold the message until then.
    fn on_snapshot_message(&mut self, slot: usize, message: Message) {
        let partition = &mut self.partitions[slot];
        let index = message.get_snapshot().get_metadata().index;
        let staged = partition
            .snapshot_staged
            .as_ref()
            .is_some_and(|(meta, _)| meta.index == index);
        if staged || index <= partition.raw.raft.raft_log.committed {
            if let Err(error) = partition.raw.step(message) {
                tracing::debug!(partition = partition.id, %error, "raft step");
            }
            return;
        }
        if partition.snapshot_fetching {
            let newer = partition
                .snapshot_deferred
                .as_ref()
                .is_none_or(|deferred| deferred.get_snapshot().get_metadata().index < index);
            if newer {
                tracing::info!(
                    partition = partition.id,
                    index,
                    "a newer snapshot was announced during the fetch: fetching it next"
                );
                partition.snapshot_deferred = Some(message);
            }
            return;
        }
        let Some(address) = self.peers.get(&message.from).cloned() else {
            return;
        };
        partition.snapshot_fetching = true;
        tracing::info!(
            partition = partition.id,
            index,
            from = message.from,
            applied_index = partition.applied_index,
            "behind the leader's log: fetching its snapshot"
        );
        let fetch = transport::fetch_snapshot(
            self.node_id,
            address,
            partition.id,
            index,
            partition.applied_index,
            partition.chain_head,
            self.db.clone(),
        );
        let fetched_tx = self.fetched_tx.clone();
        let partition = partition.id;
        self.runtime.spawn(async move {
            let result = fetch.await;
            let _ = fetched_tx
                .send(Fetched {
                    partition,
                    result,
                    message,
                })
                .await;
        });
    }

    fn on_raft(&mut self, inbound: InboundRaft) {
        for (partition, message) in inbound.messages {
            if message.get_msg_type() == MessageType::MsgSnapshot
                && (partition as usize) < self.partitions.len()
            {
                self.on_snapshot_message(partition as usize, message);
                continue;
            }
            let Some(partition) = self.partitions.get_mut(partition as usize) else {
                tracing::warn!(partition, "raft message for an unknown partition dropped");
                continue;
            };
            if let Err(error) = partition.raw.step(message) {
                tracing::debug!(partition = partition.id, %error, "raft step");
            }
        }
    }

    fn on_client(&mut self, request: ClientRequest) {
        match request {
            ClientRequest::Propose {
                partition,
                command,
                reply,
            } => match self.partitions.get_mut(partition as usize) {
                Some(partition) => partition.proposals.push((command, reply)),
                None => unreachable!("the service routes to partitions below the configured count"),
            },
            ClientRequest::Read {
                partition,
                query,
                reply,
            } => match self.partitions.get_mut(partition as usize) {
                Some(partition) => partition.reads_waiting.push((query, reply)),
                None => unreachable!("the service routes to partitions below the configured count"),
            },
            ClientRequest::Status { with_digest, reply } => {
                let _ = reply.send(
                    self.partitions
                        .iter()
                        .map(|partition| partition.status(with_digest))
                        .collect(),
                );
            }
            ClientRequest::SnapshotServed { partition, to, ok } => {
                let partition = &mut self.partitions[partition as usize];
                if partition.snapshot_sends.remove(&to).is_some() {
                    let status = if ok {
                        SnapshotStatus::Finish
                    } else {
                        SnapshotStatus::Failure
                    };
                    partition.raw.report_snapshot(to, status);
                }
            }
            ClientRequest::InFlight {
                partition,
                after,
                reply,
            } => {
                let partition = &self.partitions[partition as usize];
                let answer = if partition.is_leader() {
                    let batch = partition.ledger.in_flight_from(after);
                    let batch = batch.take(limits::RECOVERY_BATCH_MAX);
                    Ok(batch.map(|record| record.transfer.clone()).collect())
                } else {
                    Err(StoreError::NotLeader {
                        leader_id: partition.leader_hint(),
                    })
                };
                let _ = reply.send(answer);
            }
        }
    }

    /// One round of readies for every partition: one synced write for all of their entries
    /// and hard states, then sends, applies and one unsynced write of the apply results.
    fn handle_readies(&mut self) -> anyhow::Result<()> {
        let mut log_batch = WriteBatch::default();
        let mut readies = Vec::new();
        let mut entries_count = 0;
        for (slot, partition) in self.partitions.iter_mut().enumerate() {
            if !partition.raw.has_ready() {
                continue;
            }
            let mut ready = partition.raw.ready();
            // Leaders send appends before their own fsync (raft thesis 10.2.1).
            let messages = ready.take_messages();
            partition.note_snapshot_sends(&messages);
            self.outbox.send(partition.id, messages);
            if !ready.snapshot().is_empty() {
                partition.install_snapshot(ready.snapshot(), &mut log_batch)?;
            }
            entries_count += ready.entries().len();
            for entry in ready.entries() {
                partition.saw_timestamp(codec::entry_timestamp_ms(&entry.data).unwrap_or(0));
            }
            partition
                .raw
                .mut_store()
                .append(ready.entries(), &mut log_batch)?;
            if let Some(hard_state) = ready.hs() {
                partition
                    .raw
                    .mut_store()
                    .set_hard_state(hard_state, &mut log_batch)?;
            }
            readies.push((slot, ready));
        }
        if readies.is_empty() {
            return Ok(());
        }
        if !log_batch.is_empty() {
            let started = std::time::Instant::now();
            self.db
                .write(log_batch, true)
                .context("persisting raft entries")?;
            self.metrics.synced_write(entries_count, started.elapsed());
        }
        let mut replies = Vec::new();
        let applied = self
            .apply_readies(readies, &mut replies)
            .and_then(|apply_batch| {
                // Unsynced: the next synced write makes it durable, and losing it only means
                // re-applying committed entries from the durable log on restart.
                self.db
                    .write(apply_batch, false)
                    .context("persisting apply results")
            });
        if let Err(error) = applied {
            // The in-memory ledgers are now ahead of the disk: nothing decided this round is
            // answered, served or streamed. The entries are committed, so they apply on the
            // other replicas and here after the restart; the callers learn only that the
            // outcome is unknown to this node.
            for (reply, _) in replies {
                let _ = reply.send(Err(StoreError::StorageFailed));
            }
            return Err(error);
        }
        for (reply, result) in replies {
            let _ = reply.send(result);
        }
        for partition in &mut self.partitions {
            partition.serve_ready_reads();
        }
        let applied: Vec<u64> = self
            .partitions
            .iter()
            .map(|partition| partition.applied_index)
            .collect();
        self.applied_tx.send_if_modified(|current| {
            let changed = *current != applied;
            *current = applied;
            changed
        });
        Ok(())
    }

    /// After the synced write: sends what raft held back until then, applies the committed
    /// entries to the in-memory ledgers and returns the batch of their results, with the
    /// callers' answers in `replies` (sent only once that batch is written).
    fn apply_readies(
        &mut self,
        readies: Vec<(usize, raft::Ready)>,
        replies: &mut Vec<(ProposeReply, Result<Applied, StoreError>)>,
    ) -> anyhow::Result<WriteBatch> {
        let mut apply_batch = WriteBatch::default();
        for (slot, mut ready) in readies {
            let partition = &mut self.partitions[slot];
            self.outbox
                .send(partition.id, ready.take_persisted_messages());
            partition.on_read_states(ready.take_read_states());
            partition.apply(
                ready.take_committed_entries(),
                &self.db,
                &mut apply_batch,
                replies,
            )?;
            let mut light = partition.raw.advance(ready);
            self.outbox.send(partition.id, light.take_messages());
            partition.apply(
                light.take_committed_entries(),
                &self.db,
                &mut apply_batch,
                replies,
            )?;
            partition.raw.advance_apply_to(partition.applied_index);
            if partition
                .snapshot_staged
                .as_ref()
                .is_some_and(|(meta, _)| meta.index <= partition.applied_index)
            {
                // Applied past it from the log: the staged state is no longer needed.
                partition.snapshot_staged = None;
            }
            let commit = partition.raw.raft.raft_log.committed;
            let applied_index = partition.applied_index;
            partition
                .raw
                .mut_store()
                .set_applied(applied_index, commit, &mut apply_batch)?;
        }
        Ok(apply_batch)
    }

    fn check_leadership(&mut self) {
        let leaders: Vec<u64> = self
            .partitions
            .iter()
            .map(|partition| partition.raw.raft.leader_id)
            .collect();
        for partition in &mut self.partitions {
            let is_leader = partition.raw.raft.state == StateRole::Leader;
            if partition.was_leader && !is_leader {
                tracing::info!(
                    partition = partition.id,
                    term = partition.raw.raft.term,
                    "lost leadership"
                );
                let leader_id = Some(partition.raw.raft.leader_id).filter(|&id| id != 0);
                partition.fail_pending(
                    StoreError::OutcomeUnknown,
                    StoreError::NotLeader { leader_id },
                );
            }
            if !partition.was_leader && is_leader {
                tracing::info!(
                    partition = partition.id,
                    term = partition.raw.raft.term,
                    node = self.node_id,
                    "became leader"
                );
            }
            partition.was_leader = is_leader;
        }
        self.leaders_tx.send_if_modified(|current| {
            let changed = *current != leaders;
            *current = leaders;
            changed
        });
    }

    /// Answers every caller once the loop has stopped: `in_log` for commands proposed (they
    /// may still commit), `error` for everything else.
    fn fail_everything(&mut self, in_log: StoreError, error: StoreError) {
        for partition in &mut self.partitions {
            partition.fail_pending(in_log.clone(), error.clone());
            for (_, reply) in partition.proposals.drain(..) {
                let _ = reply.send(Err(error.clone()));
            }
        }
        self.client_rx.close();
        while let Ok(request) = self.client_rx.try_recv() {
            match request {
                ClientRequest::Propose { reply, .. } => drop(reply.send(Err(error.clone()))),
                ClientRequest::Read { reply, .. } => drop(reply.send(Err(error.clone()))),
                ClientRequest::Status { .. } => {}
                ClientRequest::InFlight { reply, .. } => drop(reply.send(Err(error.clone()))),
                ClientRequest::SnapshotServed { .. } => {}
            }
        }
    }
}

impl Partition {
    fn leader_hint(&self) -> Option<u64> {
        Some(self.raw.raft.leader_id).filter(|&id| id != 0)
    }

    fn is_leader(&self) -> bool {
        self.raw.raft.state == StateRole::Leader
    }

    /// Notes the leader timestamp of an entry in this replica's log.
    fn saw_timestamp(&mut self, timestamp_ms: u64) {
        self.timestamp_ms_last = self.timestamp_ms_last.max(timestamp_ms);
    }

    /// Proposes this round's commands as as few entries as the limits allow.
    fn propose(&mut self, now_ms: u64) {
        if self.proposals.is_empty() {
            return;
        }
        let mut proposals = std::mem::take(&mut self.proposals);
        if !self.is_leader() {
            let error = StoreError::NotLeader {
                leader_id: self.leader_hint(),
            };
            for (_, reply) in proposals {
                let _ = reply.send(Err(error.clone()));
            }
            return;
        }
        let timestamp_ms = now_ms.max(self.timestamp_ms_last);
        self.timestamp_ms_last = timestamp_ms;
        while !proposals.is_empty() {
            let rest = proposals.split_off(proposals.len().min(limits::ENTRY_COMMANDS_MAX));
            let (commands, replies): (Vec<Command>, Vec<ProposeReply>) =
                std::mem::replace(&mut proposals, rest).into_iter().unzip();
            let data = codec::encode_entry(&EntryPayload {
                timestamp_ms,
                commands,
            });
            let index_before = self.raw.raft.raft_log.last_index();
            let proposed = self.raw.propose(vec![], data);
            let index = self.raw.raft.raft_log.last_index();
            if proposed.is_ok() && index == index_before + 1 {
                let term = self.raw.raft.term;
                self.pending.insert(index, PendingEntry { term, replies });
            } else {
                // Dropped (e.g. leader transfer, uncommitted budget full): never in the log.
                let error = StoreError::NotLeader {
                    leader_id: self.leader_hint(),
                };
                for reply in replies {
                    let _ = reply.send(Err(error.clone()));
                }
            }
        }
    }

    /// Starts one ReadIndex round for all reads received this round.
    fn read_index(&mut self) {
        self.reads_in_flight
            .retain(|_, reads| reads.iter().any(|(_, reply)| !reply.is_closed()));
        if self.reads_waiting.is_empty() {
            return;
        }
        // Followers serve linearizable reads too: raft forwards the ReadIndex request to the
        // leader and hands back the index to wait for. Without a leader there is no one to ask.
        if self.leader_hint().is_none() {
            let error = StoreError::NotLeader { leader_id: None };
            for (_, reply) in self.reads_waiting.drain(..) {
                let _ = reply.send(Err(error.clone()));
            }
            return;
        }
        // raft-rs drops ReadIndex until the leader committed an entry of its term; keep the
        // reads until then (the caller's timeout bounds the wait).
        if self.is_leader() && !self.raw.raft.commit_to_current_term() {
            return;
        }
        let ctx = self.read_ctx_next;
        self.read_ctx_next += 1;
        self.raw.read_index(ctx.to_be_bytes().to_vec());
        self.reads_in_flight
            .insert(ctx, std::mem::take(&mut self.reads_waiting));
    }

    fn on_read_states(&mut self, states: Vec<ReadState>) {
        for state in states {
            let Ok(ctx) = <[u8; 8]>::try_from(state.request_ctx.as_slice()) else {
                continue;
            };
            if let Some(reads) = self.reads_in_flight.remove(&u64::from_be_bytes(ctx)) {
                self.reads_ready.push((state.index, reads));
            }
        }
    }

    fn serve_ready_reads(&mut self) {
        let applied_index = self.applied_index;
        let mut ready = Vec::new();
        self.reads_ready.retain_mut(|(index, reads)| {
            if *index <= applied_index {
                ready.append(reads);
                false
            } else {
                true
            }
        });
        for (query, reply) in ready {
            let answer = match query {
                Query::Account(account_id) => {
                    QueryAnswer::Account(self.ledger.account(&account_id).cloned())
                }
                Query::Transfer(transaction_id) => {
                    QueryAnswer::Transfer(self.ledger.transfer(&transaction_id).cloned())
                }
            };
            let _ = reply.send(Ok(ReadAnswer {
                answer,
                partition: self.id,
                index: applied_index,
            }));
        }
    }

    /// Applies committed entries in order: decide + evolve every command, one event block per
    /// entry into the apply batch, and the callers' answers into `replies`.
    fn apply(
        &mut self,
        entries: Vec<Entry>,
        db: &Db,
        batch: &mut WriteBatch,
        replies: &mut Vec<(ProposeReply, Result<Applied, StoreError>)>,
    ) -> anyhow::Result<()> {
        for entry in entries {
            assert_eq!(
                entry.index,
                self.applied_index + 1,
                "partition {}: entries applied out of order",
                self.id
            );
            self.applied_index = entry.index;
            // Anything we proposed below this index and did not see applied was overwritten.
            while let Some(first) = self.pending.first_entry() {
                if *first.key() >= entry.index {
                    break;
                }
                for reply in first.remove().replies {
                    replies.push((reply, Err(StoreError::OutcomeUnknown)));
                }
            }
            let pending = self.pending.remove(&entry.index);
            assert_eq!(
                entry.get_entry_type(),
                EntryType::EntryNormal,
                "membership changes are never proposed"
            );
            if entry.data.is_empty() {
                // A new leader's empty entry.
                if let Some(pending) = pending {
                    replies.extend(
                        pending
                            .replies
                            .into_iter()
                            .map(|reply| (reply, Err(StoreError::OutcomeUnknown))),
                    );
                }
                continue;
            }
            let payload = codec::decode_entry(&entry.data)
                .with_context(|| format!("partition {} entry {}", self.id, entry.index))?;
            let meta = EntryMeta {
                index: entry.index,
                timestamp_ms: payload.timestamp_ms,
            };
            self.saw_timestamp(payload.timestamp_ms);
            let mut events = Vec::new();
            let mut outcomes = Vec::with_capacity(payload.commands.len());
            self.metrics.entry_applied(payload.commands.len());
            for command in &payload.commands {
                let (event, outcome) = self.ledger.execute(command, meta);
                self.events_since_snapshot += u64::from(event.is_some());
                if let Some(event) = &event {
                    self.metrics.event_applied(event);
                }
                events.extend(event);
                outcomes.push(outcome);
            }
            if !events.is_empty() {
                let block = EventBlock { meta, events };
                let (bytes, chain) = codec::encode_events(&self.chain_head, &block);
                self.chain_head = chain;
                batch.put_cf(db.cf(CF_EVENTS), index_key(self.id, entry.index), bytes);
            }
            match pending {
                Some(pending) if pending.term == entry.term => {
                    assert_eq!(
                        pending.replies.len(),
                        outcomes.len(),
                        "an entry's commands and callers diverged"
                    );
                    for (reply, outcome) in pending.replies.into_iter().zip(outcomes) {
                        replies.push((
                            reply,
                            Ok(Applied {
                                outcome,
                                partition: self.id,
                                index: entry.index,
                            }),
                        ));
                    }
                }
                Some(pending) => {
                    replies.extend(
                        pending
                            .replies
                            .into_iter()
                            .map(|reply| (reply, Err(StoreError::OutcomeUnknown))),
                    );
                }
                None => {}
            }
        }
        Ok(())
    }

    fn fail_pending(&mut self, proposals_error: StoreError, reads_error: StoreError) {
        for (_, pending) in std::mem::take(&mut self.pending) {
            for reply in pending.replies {
                let _ = reply.send(Err(proposals_error.clone()));
            }
        }
        let reads = self
            .reads_waiting
            .drain(..)
            .chain(self.reads_in_flight.drain().flat_map(|(_, reads)| reads))
            .chain(self.reads_ready.drain(..).flat_map(|(_, reads)| reads));
        for (_, reply) in reads {
            let _ = reply.send(Err(reads_error.clone()));
        }
    }

    fn status(&self, with_digest: bool) -> PartitionStatus {
        let role = match self.raw.raft.state {
            StateRole::Leader => "leader",
            StateRole::Follower => "follower",
            StateRole::Candidate => "candidate",
            StateRole::PreCandidate => "pre_candidate",
        };
        PartitionStatus {
            partition: self.id,
            leader_id: self.raw.raft.leader_id,
            term: self.raw.raft.term,
            commit_index: self.raw.raft.raft_log.committed,
            applied_index: self.applied_index,
            role,
            state_digest: with_digest
                .then(|| codec::partition_digest(&self.ledger.digest(), &self.chain_head)),
            in_flight_transfers: self.ledger.in_flight_count() as u64,
            snapshot_index: self.snapshot_index,
            log_first_index: self.raw.store().first_log_index(),
        }
    }

    /// Leader: remembers followers sent a snapshot, to time out fetches that never come.
    fn note_snapshot_sends(&mut self, messages: &[Message]) {
        for message in messages {
            if message.get_msg_type() == MessageType::MsgSnapshot {
                tracing::info!(
                    partition = self.id,
                    to = message.to,
                    index = message.get_snapshot().get_metadata().index,
                    "follower is behind the log: sending a snapshot"
                );
                self.snapshot_sends.insert(message.to, Instant::now());
            }
        }
    }

    fn expire_snapshot_sends(&mut self) {
        let expired: Vec<u64> = self
            .snapshot_sends
            .iter()
            .filter(|(_, sent)| sent.elapsed() > limits::SNAPSHOT_FETCH_TIMEOUT)
            .map(|(&to, _)| to)
            .collect();
        for to in expired {
            self.snapshot_sends.remove(&to);
            self.raw.report_snapshot(to, SnapshotStatus::Failure);
        }
    }

    /// Follower: raft restored a snapshot; its state was fetched and verified before raft saw
    /// the message, so install it with the log reset into this round's synced write.
    fn install_snapshot(
        &mut self,
        snapshot: &raft::eraftpb::Snapshot,
        batch: &mut WriteBatch,
    ) -> anyhow::Result<()> {
        let index = snapshot.get_metadata().index;
        let Some((meta, ledger)) = self.snapshot_staged.take() else {
            anyhow::bail!(
                "partition {}: raft restored snapshot {index}, which was never fetched",
                self.id
            );
        };
        anyhow::ensure!(
            meta.index == index && meta.term == snapshot.get_metadata().term,
            "partition {}: raft restored snapshot {index}, the fetched one is {}",
            self.id,
            meta.index
        );
        self.chain_head = meta.chain_head;
        self.raw.mut_store().install_snapshot(meta, batch)?;
        self.ledger = ledger;
        self.applied_index = index;
        self.snapshot_index = index;
        tracing::info!(partition = self.id, index, "snapshot installed");
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use raft::eraftpb::HardState;
    use raft::storage::MemStorage;

    /// raft-rs with `batch_append` merged a round's appends to a follower into one message
    /// without any bound: a leader whose follower came back 30 MiB behind sent it a 30 MiB
    /// message, above the peer stream's gRPC limit. With the partitions' configuration every
    /// message stays within `RAFT_MESSAGE_BYTES_MAX` (and so fits a frame).
    #[test]
    fn appends_to_a_follower_far_behind_are_bounded_by_bytes() {
        const ENTRIES: u64 = 300;
        let storage = MemStorage::new_with_conf_state((vec![1, 2], vec![]));
        let entries: Vec<Entry> = (1..=ENTRIES)
            .map(|index| {
                let mut entry = Entry::default();
                entry.index = index;
                entry.term = 1;
                entry.data = vec![7u8; 100 * 1024].into();
                entry
            })
            .collect();
        storage.wl().append(&entries).expect("append");
        let mut hard_state = HardState::default();
        hard_state.term = 1;
        hard_state.commit = ENTRIES;
        storage.wl().set_hardstate(hard_state);
        let logger = slog::Logger::root(slog::Discard, slog::o!());
        let config = raft_config(1, ENTRIES);
        config.validate().expect("config");
        let mut raw = RawNode::new(&config, storage, &logger).expect("raft");
        raw.raft.become_candidate();
        raw.raft.become_leader();
        let mut sent = Vec::new();
        let round = |raw: &mut RawNode<MemStorage>, sent: &mut Vec<Message>| {
            let mut ready = raw.ready();
            raw.mut_store()
                .wl()
                .append(ready.entries())
                .expect("append");
            sent.extend(ready.take_messages());
            sent.extend(ready.take_persisted_messages());
            let mut light = raw.advance(ready);
            sent.extend(light.take_messages());
            raw.advance_apply();
        };
        round(&mut raw, &mut sent);
        let term = raw.raft.term;
        let probed = raw.raft.prs().get(2).expect("follower").next_idx - 1;
        // The follower has nothing: it rejects the leader's probe.
        let mut reject = Message::default();
        reject.set_msg_type(MessageType::MsgAppendResponse);
        (reject.from, reject.to, reject.term) = (2, 1, term);
        (reject.index, reject.reject, reject.reject_hint) = (probed, true, 0);
        raw.step(reject).expect("step");
        sent.clear();
        round(&mut raw, &mut sent);
        let probe_last = sent
            .iter()
            .filter(|message| message.get_msg_type() == MessageType::MsgAppend)
            .filter_map(|message| message.entries.last().map(|entry| entry.index))
            .max()
            .expect("the leader probes from the start");
        // It accepts: the leader sends everything it may at once (up to its in-flight window).
        let mut accept = Message::default();
        accept.set_msg_type(MessageType::MsgAppendResponse);
        (accept.from, accept.to, accept.term, accept.index) = (2, 1, term, probe_last);
        raw.step(accept).expect("step");
        sent.clear();
        round(&mut raw, &mut sent);
        let appended: usize = sent.iter().map(|message| message.entries.len()).sum();
        assert!(
            appended as u64 >= ENTRIES - probe_last,
            "sent {appended} entries"
        );
        for message in &sent {
            let bytes = protobuf::Message::compute_size(message) as usize;
            assert!(
                bytes <= limits::RAFT_MESSAGE_BYTES_MAX,
                "a {:?} of {bytes} bytes ({} entries) is above the frame budget",
                message.get_msg_type(),
                message.entries.len()
            );
        }
    }
}
