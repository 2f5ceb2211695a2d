//! The store loop (see the module's documentation): rounds of gather -> tick -> propose ->
//! write the log -> send -> apply -> reply, the raft log's syncs that ended, the
//! mailboxes' requests, leadership changes, local snapshots, and the snapshot catch-up state
//! machine's actions (`catch_up.rs`).

use std::sync::{Arc, OnceLock};
use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::Context;
use raft::StateRole;
use raft::eraftpb::{Message, MessageType};
use rocksdb::WriteBatch;
use tokio::sync::{mpsc, watch};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::catch_up::{Action, Event, Staged};
use super::log_sync::{LogSync, Persisted, PersistedReady};
use super::partition::{Partition, StagedState};
use super::{
    Applied, ClientRequest, FetchedSnapshot, InboundRaft, Network, ProposeReply, SnapshotRequest,
    StoreError,
};
use crate::codec;
use crate::limits;
use crate::snapshot::{self, SnapshotMeta};
use crate::storage::Db;

/// The wall clock, in ms since the Unix epoch, as the leader stamps entries. Tests skew it
/// with the `clock::offset_ms` failpoint.
pub(crate) fn now_ms() -> u64 {
    let now_ms = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |elapsed| elapsed.as_millis() as u64);
    #[cfg(feature = "failpoints")]
    if let Some(offset_ms) = crate::failpoints::clock_offset_ms() {
        return now_ms.saturating_add_signed(offset_ms);
    }
    now_ms
}

/// A follower's snapshot fetch ended.
pub(super) struct Fetched {
    partition: u32,
    result: anyhow::Result<FetchedSnapshot>,
}

/// The loop's state; made by `startup::start`, run on its own thread.
pub(super) struct Store {
    pub(super) node_id: u64,
    pub(super) db: Arc<Db>,
    /// The raft log's sync thread (`log_sync.rs`).
    pub(super) log: LogSync,
    pub(super) network: Box<dyn Network>,
    /// The partitions this node holds a replica of, in id order.
    pub(super) partitions: Vec<Partition>,
    /// Per partition id, its index in `partitions` (`None`: held by other nodes).
    pub(super) slots: Vec<Option<usize>>,
    /// What the loop shares about the replicas it holds, and what it needs to create one
    /// (`membership.rs`).
    pub(super) replicas: super::membership::Replicas,
    pub(super) client_rx: mpsc::Receiver<ClientRequest>,
    pub(super) raft_rx: mpsc::Receiver<InboundRaft>,
    pub(super) leaders_tx: watch::Sender<Vec<u64>>,
    pub(super) applied_tx: watch::Sender<Vec<u64>>,
    pub(super) shutdown: CancellationToken,
    pub(super) snapshot_interval_entries: u64,
    pub(super) snapshot_interval_events: u64,
    pub(super) log_retain: u64,
    pub(super) snapshot_jobs: std::sync::mpsc::SyncSender<snapshot::Job>,
    pub(super) snapshot_done: mpsc::Receiver<anyhow::Result<SnapshotMeta>>,
    /// Joined when the loop ends (see `snapshot::start_worker`).
    pub(super) snapshot_worker: std::thread::JoinHandle<()>,
    pub(super) fetched_tx: mpsc::Sender<Fetched>,
    pub(super) fetched_rx: mpsc::Receiver<Fetched>,
    /// The node's multi-threaded runtime, for snapshot fetches (network and decoding stay off
    /// this thread).
    pub(super) runtime: tokio::runtime::Handle,
    pub(super) metrics: crate::metrics::StoreMetrics,
    pub(super) stopped: Arc<OnceLock<StoreError>>,
}

impl Store {
    pub(super) fn run(mut self) -> anyhow::Result<()> {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
            .context("store runtime")?;
        let result = runtime.block_on(self.rounds());
        self.log.stop();
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
        // The snapshot being written finishes (the queue ends with its sender), so the
        // process never exits with RocksDB in the middle of a write.
        let Store {
            snapshot_jobs,
            snapshot_worker,
            ..
        } = self;
        drop(snapshot_jobs);
        if snapshot_worker.join().is_err() {
            tracing::error!("the snapshot thread panicked");
        }
        result
    }

    async fn rounds(&mut self) -> anyhow::Result<()> {
        let mut tick_next = Instant::now() + limits::TICK_INTERVAL;
        let mut sample_next = Instant::now();
        // A partition still holds a ready (committed entries past one apply batch,
        // `RAFT_COMMITTED_BYTES_PER_READY_MAX`): the next round starts without waiting.
        let mut pending_ready = false;
        // Notified when a sync of the raft log ends.
        let log_wake = self.log.wake();
        loop {
            tokio::select! {
                biased;
                _ = self.shutdown.cancelled() => return Ok(()),
                _ = log_wake.notified() => {}
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
                _ = std::future::ready(()), if pending_ready => {}
                _ = tokio::time::sleep_until(tick_next) => {}
            }
            // A round: from the wake-up to the end of its writes and replies (waiting for
            // work is not part of it). The longest per sample interval is exported.
            let round_started = std::time::Instant::now();
            self.metrics
                .queues(self.client_rx.len(), self.raft_rx.len());
            self.collect_persisted()?;
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
                let now = std::time::Instant::now();
                for slot in 0..self.partitions.len() {
                    // Before the tick: an election timeout's tick clears raft's "recently
                    // active" marks, which the followers' next responses set again.
                    if self.partitions[slot].hand_off(self.node_id, now) {
                        self.metrics.leader_handed_off();
                    }
                    self.partitions[slot].raw.tick();
                    self.catch_up(slot, Event::Tick { now });
                }
                tick_next = Instant::now() + limits::TICK_INTERVAL;
            }
            let drained_at = std::time::Instant::now();
            let now_ms = now_ms();
            // While a sync is in flight, a leader's commands wait for it to end (up to a full
            // entry) and go into one entry together: the fsync's own time fills the next
            // entry, as a round blocked on its fsync used to, while the loop goes on applying,
            // answering and serving the other partitions.
            let syncing = self.log.syncing();
            for partition in &mut self.partitions {
                if !syncing || partition.commands.received.len() >= limits::ENTRY_COMMANDS_MAX {
                    partition.propose(now_ms);
                }
                partition.read_index();
            }
            let proposed_at = std::time::Instant::now();
            self.handle_readies()?;
            self.sync_log()?;
            let persisted_at = std::time::Instant::now();
            self.check_leadership();
            self.leave_removed_groups()?;
            self.start_snapshots();
            pending_ready = self.partitions.iter().any(|p| p.raw.has_ready());
            let round = round_started.elapsed();
            self.metrics.round(round);
            if round >= limits::ROUND_SLOW {
                // What a slow round spent its time on (it delays every partition's ticks).
                tracing::warn!(
                    round_ms = round.as_millis() as u64,
                    drain_and_tick_ms = (drained_at - round_started).as_millis() as u64,
                    propose_ms = (proposed_at - drained_at).as_millis() as u64,
                    persist_and_apply_ms = (persisted_at - proposed_at).as_millis() as u64,
                    "slow store round"
                );
            }
            if Instant::now() >= sample_next {
                for partition in &mut self.partitions {
                    partition.metrics.sample(
                        &partition.raw.raft,
                        partition.applied_index,
                        &partition.ledger,
                    );
                }
                self.metrics.sample_rounds();
                sample_next = Instant::now() + crate::metrics::SAMPLE_INTERVAL;
            }
        }
    }

    /// Hands a clone of every partition's ledger that is `snapshot_interval_entries` entries or
    /// `snapshot_interval_events` events past its
    /// last snapshot to the snapshot worker.
    fn start_snapshots(&mut self) {
        for partition in &mut self.partitions {
            // A snapshot raft could not send (older than the last membership change) is
            // replaced by a new one now.
            let wanted = partition.raw.store().take_snapshot_wanted();
            let due = wanted
                || partition.applied_index
                    >= partition.snapshots.index + self.snapshot_interval_entries
                || partition.snapshots.events_since >= self.snapshot_interval_events;
            if partition.snapshots.writing || !due {
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
                voters: partition.raw.store().conf_state().voters.clone(),
                ledger: partition.ledger.clone(),
                chain_head: partition.chain_head,
            };
            match self.snapshot_jobs.try_send(job) {
                Ok(()) => {
                    partition.snapshots.writing = true;
                    partition.snapshots.events_since = 0;
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
        self.metrics.snapshot_written();
        let Some(slot) = self.slot(meta.partition) else {
            // Its replica was removed while it was being written.
            return self.db.delete_snapshot(meta.partition, meta.index);
        };
        let partition = &mut self.partitions[slot];
        partition.snapshots.writing = false;
        partition.snapshots.index = partition.snapshots.index.max(meta.index);
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
        let Some(slot) = self.slot(fetched.partition) else {
            return;
        };
        let partition = &mut self.partitions[slot];
        let event = match fetched.result {
            Ok((meta, ledger, timestamp_ms_max)) => {
                tracing::info!(
                    partition = partition.id,
                    index = meta.index,
                    "snapshot fetched and verified; installing"
                );
                partition.saw_timestamp(timestamp_ms_max);
                Event::Fetched(Staged {
                    index: meta.index,
                    term: meta.term,
                    state: (meta, ledger),
                })
            }
            Err(error) => {
                self.metrics.snapshot_fetch_failed();
                tracing::warn!(
                    partition = partition.id,
                    error = format!("{error:#}"),
                    "snapshot fetch failed; raft will send it again"
                );
                Event::FetchFailed
            }
        };
        self.catch_up(slot, event);
    }

    /// A snapshot announced by the leader (`MsgSnapshot`), for the catch-up state machine.
    fn on_snapshot_message(&mut self, slot: usize, message: Message) {
        let committed = self.partitions[slot].raw.raft.raft_log.committed;
        self.catch_up(slot, Event::Announced { message, committed });
    }

    /// Feeds an event to a partition's snapshot catch-up state machine and performs the
    /// actions it asks for, in order.
    fn catch_up(&mut self, slot: usize, event: Event<StagedState>) {
        let actions = self.partitions[slot].catch_up.handle(event);
        for action in actions {
            let partition = &mut self.partitions[slot];
            match action {
                Action::Step(message) => {
                    if let Err(error) = partition.raw.step(message) {
                        tracing::debug!(partition = partition.id, %error, "raft step");
                    }
                }
                Action::Fetch { from, index } => {
                    tracing::info!(
                        partition = partition.id,
                        index,
                        from,
                        applied_index = partition.applied_index,
                        "behind the leader's log: fetching its snapshot"
                    );
                    let fetch = self.network.fetch_snapshot(
                        from,
                        SnapshotRequest {
                            partition: partition.id,
                            index,
                            events_after: partition.applied_index,
                            chain_after: partition.chain_head,
                            ledger_after: partition.ledger.clone(),
                        },
                    );
                    let fetched_tx = self.fetched_tx.clone();
                    let partition = partition.id;
                    self.runtime.spawn(async move {
                        let result = fetch.await;
                        let _ = fetched_tx.send(Fetched { partition, result }).await;
                    });
                }
                Action::Deferred { index } => tracing::info!(
                    partition = partition.id,
                    index,
                    "a newer snapshot was announced during the fetch: fetching it next"
                ),
                // Stepped now that the fetched one is installed: raft answers it if it is no
                // longer ahead, otherwise it is fetched in turn.
                Action::Reconsider(message) => self.on_snapshot_message(slot, message),
                Action::Report { to, status } => partition.raw.report_snapshot(to, status),
            }
        }
    }

    /// The index in `partitions` of partition `id`, if it is held here.
    pub(super) fn slot(&self, id: u32) -> Option<usize> {
        self.slots.get(id as usize).copied().flatten()
    }

    /// `Partition::leader_only` on partition `id`; NOT_HOSTED if it is not held here.
    fn leader_only<T>(
        &self,
        id: u32,
        answer: impl FnOnce(&Partition) -> T,
    ) -> Result<T, StoreError> {
        match self.slot(id) {
            Some(slot) => self.partitions[slot].leader_only(answer),
            None => Err(StoreError::NotHosted { leader_id: None }),
        }
    }

    fn on_raft(&mut self, inbound: InboundRaft) {
        for (partition, message) in inbound.messages {
            let Some(slot) = self
                .slot(partition)
                .or_else(|| self.replica_for(partition, &message))
            else {
                tracing::debug!(
                    partition,
                    "raft message for a partition not held here dropped"
                );
                continue;
            };
            if message.get_msg_type() == MessageType::MsgSnapshot {
                self.on_snapshot_message(slot, message);
                continue;
            }
            let partition = &mut self.partitions[slot];
            let vote = matches!(
                message.get_msg_type(),
                MessageType::MsgRequestVote | MessageType::MsgRequestPreVote
            );
            if vote && !partition.member_seen {
                tracing::debug!(
                    partition = partition.id,
                    from = message.from,
                    "a replica not yet named by its membership grants no vote"
                );
                continue;
            }
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
            } => match self.slot(partition) {
                Some(slot) => self.partitions[slot]
                    .commands
                    .received
                    .push((command, reply)),
                None => drop(reply.send(Err(StoreError::NotHosted { leader_id: None }))),
            },
            ClientRequest::Read {
                partition,
                query,
                reply,
            } => match self.slot(partition) {
                Some(slot) => self.partitions[slot].reads.waiting.push((query, reply)),
                None => drop(reply.send(Err(StoreError::NotHosted { leader_id: None }))),
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
                if let Some(slot) = self.slot(partition) {
                    self.catch_up(slot, Event::Served { to, ok });
                }
            }
            ClientRequest::SnapshotFetchStarted { partition, to } => {
                if let Some(slot) = self.slot(partition) {
                    let now = std::time::Instant::now();
                    self.catch_up(slot, Event::FetchStarted { to, now });
                }
            }
            ClientRequest::Move {
                partition,
                from,
                to,
                reply,
            } => {
                let _ = reply.send(self.move_step(partition, from, to));
            }
            ClientRequest::Removed { partition, members } => {
                if let Err(error) = self.removed_by_report(partition, &members) {
                    tracing::error!(
                        partition,
                        error = format!("{error:#}"),
                        "deleting a removed replica failed"
                    );
                }
            }
            ClientRequest::InFlight {
                partition,
                after,
                reply,
            } => {
                let answer = self.leader_only(partition, |partition| {
                    let batch = partition.ledger.in_flight_from(after);
                    let batch = batch.take(limits::RECOVERY_BATCH_MAX);
                    batch.map(ledger::TransferRecord::credit_command).collect()
                });
                let _ = reply.send(answer);
            }
            ClientRequest::LiveLegs {
                partition,
                after,
                reply,
            } => {
                let answer = self.leader_only(partition, |partition| {
                    // At most a batch of live records looked at; the home's among them (a
                    // part elsewhere waits for its home), and the last one looked at.
                    let batch: Vec<&ledger::LegsRecord> = partition
                        .ledger
                        .live_legs_from(after)
                        .take(limits::RECOVERY_BATCH_MAX)
                        .collect();
                    let last = batch.last().map(|record| record.command.transaction_id);
                    let homes = batch.into_iter().filter(|record| {
                        !matches!(record.status, ledger::LegsStatus::Prepared { part } if !part.is_home())
                    });
                    (homes.map(|record| record.command.clone()).collect(), last)
                });
                let _ = reply.send(answer);
            }
            ClientRequest::DueHolds {
                partition,
                now_ms,
                reply,
            } => {
                let answer = self.leader_only(partition, |partition| {
                    let due = partition
                        .ledger
                        .due_holds(now_ms, limits::HOLD_EXPIRY_BATCH_MAX);
                    due.collect()
                });
                let _ = reply.send(answer);
            }
        }
    }

    /// One round of readies for every partition: their entries and hard states in one
    /// unsynced write (the sync thread, `log_sync.rs`, makes it durable; the loop does not
    /// wait), their committed entries (durable here: raft-rs hands out nothing it has not been
    /// told is persisted) applied, and the apply results written, unsynced, before anyone is
    /// answered.
    fn handle_readies(&mut self) -> anyhow::Result<()> {
        // A snapshot replaces a partition's log and state; raft takes it as applied only once
        // it is durable, so a round that installs one syncs before it applies anything.
        let snapshot_round = self.partitions.iter().any(|partition| {
            partition
                .raw
                .snap()
                .is_some_and(|snapshot| !snapshot.is_empty())
        });
        let mut log_batch = WriteBatch::default();
        let mut apply_batch = WriteBatch::default();
        let mut replies = Vec::new();
        let applied = self
            .take_readies(&mut log_batch, &mut apply_batch, &mut replies)
            .and_then(|taken| {
                if !taken {
                    return Ok(false);
                }
                if !log_batch.is_empty() {
                    self.db
                        .write_log(log_batch)
                        .context("persisting raft entries")?;
                }
                if snapshot_round {
                    self.flush_log()?;
                    for partition in &mut self.partitions {
                        if partition.raw.raft.raft_log.applied < partition.applied_index {
                            partition.raw.advance_apply_to(partition.applied_index);
                        }
                    }
                }
                // Unsynced: the next sync makes it durable, and losing it only means
                // re-applying committed entries from the durable log on restart. The log
                // write before it precedes it in RocksDB's write-ahead log, so a durable
                // applied index never passes a durable commit index.
                self.db
                    .write(apply_batch, false)
                    .context("persisting apply results")?;
                Ok(true)
            });
        match applied {
            Ok(true) => {}
            Ok(false) => return Ok(()),
            Err(error) => {
                // The in-memory ledgers are now ahead of the disk: nothing decided this round
                // is answered, served or streamed. The entries are committed, so they apply
                // on the other replicas and here after the restart; the callers learn only
                // that the outcome is unknown to this node.
                for (reply, _) in replies {
                    let _ = reply.send(Err(StoreError::StorageFailed));
                }
                return Err(error);
            }
        }
        for (reply, result) in replies {
            let _ = reply.send(result);
        }
        for partition in &mut self.partitions {
            partition.apply_written();
            partition.serve_ready_reads(&self.db);
        }
        self.publish_members();
        let partitions = &self.partitions;
        self.applied_tx.send_if_modified(|applied| {
            let mut changed = false;
            for partition in partitions {
                let index = &mut applied[partition.id as usize];
                changed |= *index != partition.applied_index;
                *index = partition.applied_index;
            }
            changed
        });
        Ok(())
    }

    /// Takes every partition's ready: sends what may go before the fsync (a leader's appends,
    /// raft thesis 10.2.1), puts entries and hard state into `log_batch` and the ready, with
    /// the messages held back until it is durable, into the sync's queue, applies the
    /// committed entries into `apply_batch` with the callers' answers in `replies` (sent only
    /// once that batch is written), and advances raft. Returns whether any partition had a
    /// ready.
    fn take_readies(
        &mut self,
        log_batch: &mut WriteBatch,
        apply_batch: &mut WriteBatch,
        replies: &mut Vec<(ProposeReply, Result<Applied, StoreError>)>,
    ) -> anyhow::Result<bool> {
        let mut taken = false;
        for partition in &mut self.partitions {
            if !partition.raw.has_ready() {
                continue;
            }
            taken = true;
            let mut ready = partition.raw.ready();
            let messages = ready.take_messages();
            partition.note_snapshot_sends(&messages);
            self.network.send(partition.id, messages);
            let installs = !ready.snapshot().is_empty();
            if installs {
                partition.install_snapshot(ready.snapshot(), log_batch)?;
                self.metrics.snapshot_installed();
            }
            for entry in ready.entries() {
                if entry.get_entry_type() == raft::eraftpb::EntryType::EntryNormal {
                    partition.saw_timestamp(codec::entry_timestamp_ms(&entry.data).unwrap_or(0));
                }
            }
            // Raft reads the entries from the storage's entry cache from here on, before they
            // are on disk, as `advance_append_async` requires.
            partition
                .raw
                .mut_store()
                .append(ready.entries(), log_batch)?;
            if let Some(hard_state) = ready.hs() {
                partition
                    .raw
                    .mut_store()
                    .set_hard_state(hard_state, log_batch)?;
            }
            let persisted = PersistedReady {
                partition: partition.id,
                number: ready.number(),
                messages: ready.take_persisted_messages(),
            };
            self.log
                .add(persisted, ready.must_sync(), ready.entries().len());
            partition.on_read_states(ready.take_read_states());
            partition.apply(
                ready.take_committed_entries(),
                &self.db,
                apply_batch,
                replies,
            )?;
            partition.raw.advance_append_async(ready);
            if !installs {
                partition.raw.advance_apply_to(partition.applied_index);
            }
            partition.applied_past_staged();
            let commit = partition.raw.raft.raft_log.committed;
            let applied_index = partition.applied_index;
            partition
                .raw
                .mut_store()
                .set_applied(applied_index, commit, apply_batch)?;
        }
        Ok(taken)
    }

    /// Tells raft which readies the sync that ended made durable (the next sync starts at the
    /// end of the round, covering this round's readies too).
    fn collect_persisted(&mut self) -> anyhow::Result<()> {
        while let Some(persisted) = self.log.try_persisted()? {
            self.on_persisted(persisted);
        }
        Ok(())
    }

    /// Starts the next sync if none is in flight.
    fn sync_log(&mut self) -> anyhow::Result<()> {
        if let Some(persisted) = self.log.sync_waiting()? {
            self.on_persisted(persisted);
        }
        Ok(())
    }

    /// Syncs everything written to the log so far, and waits for it.
    fn flush_log(&mut self) -> anyhow::Result<()> {
        while let Some(persisted) = self.log.wait_persisted()? {
            self.on_persisted(persisted);
        }
        self.sync_log()?;
        while let Some(persisted) = self.log.wait_persisted()? {
            self.on_persisted(persisted);
        }
        Ok(())
    }

    /// Readies are durable: raft may count and apply their entries (`on_persist_ready`) and
    /// the messages they held back go out.
    fn on_persisted(&mut self, persisted: Persisted) {
        match persisted.synced {
            Some(elapsed) => self.metrics.synced_write(persisted.entries, elapsed),
            None => self.metrics.unsynced_log_write(),
        }
        for ready in persisted.readies {
            let Some(slot) = self.slot(ready.partition) else {
                continue;
            };
            let partition = &mut self.partitions[slot];
            self.network.send(partition.id, ready.messages);
            partition.raw.on_persist_ready(ready.number);
        }
    }

    fn check_leadership(&mut self) {
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
        let (partitions, metrics) = (&self.partitions, &self.metrics);
        self.leaders_tx.send_if_modified(|leaders| {
            let mut changed = false;
            for partition in partitions {
                let (known, now) = (
                    &mut leaders[partition.id as usize],
                    partition.raw.raft.leader_id,
                );
                if *known != now {
                    if now != 0 {
                        metrics.partitions[partition.id as usize].leader_changed();
                    }
                    *known = now;
                    changed = true;
                }
            }
            changed
        });
    }

    /// Answers every caller once the loop has stopped: `in_log` for commands proposed (they
    /// may still commit), `error` for everything else.
    fn fail_everything(&mut self, in_log: StoreError, error: StoreError) {
        for partition in &mut self.partitions {
            partition.fail_pending(in_log.clone(), error.clone());
            for (_, reply) in partition.commands.received.drain(..) {
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
                ClientRequest::LiveLegs { reply, .. } => drop(reply.send(Err(error.clone()))),
                ClientRequest::DueHolds { reply, .. } => drop(reply.send(Err(error.clone()))),
                ClientRequest::Move { reply, .. } => drop(reply.send(Err(error.clone().into()))),
                ClientRequest::SnapshotServed { .. }
                | ClientRequest::SnapshotFetchStarted { .. }
                | ClientRequest::Removed { .. } => {}
            }
        }
    }
}
