//! One partition on this node: its raft node and ledger, the callers waiting on it (commands
//! to propose and proposed, linearizable reads), its local snapshots, and its snapshot
//! catch-up state. The store loop (`round.rs`) owns every partition.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use anyhow::Context;
use ledger::{Command, EntryMeta, Ledger, Record};
use raft::eraftpb::{ConfChange, ConfChangeV2, Entry, EntryType, Message, MessageType};
use raft::{RawNode, ReadState, StateRole};
use rocksdb::WriteBatch;
use tokio::sync::broadcast;

use super::catch_up::{CatchUp, Event};
use super::{
    Applied, AppliedRound, PartitionStatus, ProposeReply, Query, QueryAnswer, ReadAnswer,
    ReadReply, StoreError,
};
use crate::codec::{self, EntryPayload, EventBlock};
use crate::limits;
use crate::snapshot::SnapshotMeta;
use crate::storage::{CF_EVENTS, Db, PartitionStorage, index_key};

/// A fetched snapshot's state, staged until raft restores it.
pub(super) type StagedState = (SnapshotMeta, Ledger);

pub(super) struct PendingEntry {
    term: u64,
    replies: Vec<ProposeReply>,
}

/// Commands from callers.
#[derive(Default)]
pub(super) struct Commands {
    /// Received this round, proposed together as one entry (group commit).
    pub(super) received: Vec<(Command, ProposeReply)>,
    /// Proposed entries awaiting apply, by log index.
    pub(super) pending: BTreeMap<u64, PendingEntry>,
}

/// Linearizable reads, through raft's ReadIndex.
pub(super) struct Reads {
    /// Received this round, one ReadIndex request for all.
    pub(super) waiting: Vec<(Query, ReadReply)>,
    /// By ReadIndex context, until raft answers with the index to wait for.
    in_flight: HashMap<u64, Vec<(Query, ReadReply)>>,
    /// Served once that index is applied.
    ready: Vec<(u64, Vec<(Query, ReadReply)>)>,
    ctx_next: u64,
}

impl Default for Reads {
    fn default() -> Self {
        Self {
            waiting: Vec::new(),
            in_flight: HashMap::new(),
            ready: Vec::new(),
            ctx_next: 1,
        }
    }
}

/// This node's own snapshots of the partition.
pub(super) struct Snapshots {
    /// Index of the newest durable snapshot.
    pub(super) index: u64,
    /// The snapshot worker is writing a newer one.
    pub(super) writing: bool,
    /// Events applied since the last snapshot was started: with `snapshot_interval_events`
    /// it bounds what a restart replays, whatever the number of commands per entry.
    pub(super) events_since: u64,
}

/// What `decide_with` sees of the records the ledger does not hold: those put into this
/// round's apply batch (earlier entries, and earlier commands of this entry), then the
/// entry's lookups on disk.
struct Recorded<'a> {
    unwritten: &'a HashMap<u128, Record>,
    on_disk: &'a HashMap<u128, Record>,
}

impl ledger::Stored for Recorded<'_> {
    fn record(&self, transaction_id: u128) -> Option<&Record> {
        self.unwritten
            .get(&transaction_id)
            .or_else(|| self.on_disk.get(&transaction_id))
    }
}

/// Leadership handed back to the partition's preferred leader (placement's, or after moves
/// the one `placement::Group::preferred_leader` derives from the applied voters): once that node
/// has been caught up for `LEADER_HANDOFF_SETTLE`, a leader that is not it transfers
/// leadership to it (raft-rs `transfer_leader`), so leaders spread over the nodes again after
/// a failover. raft-rs sends the transferee the rest of the log and drops new proposals
/// meanwhile (their callers are told NOT_LEADER, naming the transferee); what was proposed
/// before commits with the transferee's acknowledgement, so the hand-off leaves no outcome
/// unknown.
pub(super) struct Handoff {
    /// The partition's group as placement made it (its first voters and preferred leader).
    placed: placement::Group,
    /// Since when the preferred node has been caught up, while this node leads.
    caught_up_since: Option<std::time::Instant>,
}

impl Handoff {
    pub(super) fn new(placed: placement::Group) -> Handoff {
        Handoff {
            placed,
            caught_up_since: None,
        }
    }
}

pub(super) struct Partition {
    pub(super) id: u32,
    pub(super) raw: RawNode<PartitionStorage>,
    pub(super) ledger: Ledger,
    pub(super) applied_index: u64,
    pub(super) was_leader: bool,
    /// The highest leader timestamp of any entry this replica has had in its log (appended,
    /// applied, fetched with a snapshot, or found in storage at start). A leader stamps no
    /// entry below it, so entry times never go backwards in the log: not when the wall
    /// clock does, and not across leaders whose clocks disagree (a new leader's log holds
    /// every committed entry, so its bound covers them all).
    pub(super) timestamp_ms_last: u64,
    /// Hash chain of the event log up to `applied_index` (see `codec::ChainHash`).
    pub(super) chain_head: codec::ChainHash,
    pub(super) commands: Commands,
    pub(super) reads: Reads,
    pub(super) snapshots: Snapshots,
    /// Snapshot catch-up: a follower fetching snapshots, a leader waiting for fetches.
    pub(super) catch_up: CatchUp<StagedState>,
    /// Records put into the round's apply batch, by transaction id, until it is written (see
    /// `Recorded`). Bounded by the round's commands.
    pub(super) unwritten: HashMap<u128, Record>,
    /// This round's applied entries and event blocks, published to subscribers once written.
    pub(super) tail: Tail,
    pub(super) handoff: Handoff,
    /// This replica's applied membership has named this node (a replica a leader just
    /// created applies older memberships, without it, before the change that added it).
    /// Until then it grants no vote: its log is empty or short, so any candidate would
    /// look up to date to it, and a stale member whose configuration still counts this
    /// node as a voter could win with its vote (`round.rs`, `on_raft`).
    pub(super) member_seen: bool,
    /// The membership change that last removed this node from the group before this
    /// replica was created (`Db::removed_at`; 0: none did). Only a membership after it that
    /// names this node counts for `member_seen`.
    pub(super) removed_at: u64,
    pub(super) metrics: crate::metrics::PartitionMetrics,
}

/// The round being applied, for `AppliedRound`; the blocks are those of the apply batch
/// (bounded by the round's entries, `RAFT_COMMITTED_BYTES_PER_READY_MAX`).
pub(super) struct Tail {
    /// `StoreHandle::tail` subscribes to it.
    pub(super) sender: broadcast::Sender<Arc<AppliedRound>>,
    /// The first entry applied this round, if any.
    first: Option<u64>,
    blocks: Vec<(EventBlock, codec::ChainHash)>,
}

impl Tail {
    pub(super) fn new() -> Tail {
        let (sender, _) = broadcast::channel(limits::EVENT_TAIL_ROUNDS);
        Tail {
            sender,
            first: None,
            blocks: Vec::new(),
        }
    }
}

impl Partition {
    pub(super) fn leader_hint(&self) -> Option<u64> {
        Some(self.raw.raft.leader_id).filter(|&id| id != 0)
    }

    pub(super) fn is_leader(&self) -> bool {
        self.raw.raft.state == StateRole::Leader
    }

    /// `answer(self)` on the leader; elsewhere NOT_LEADER with the leader's id: for the
    /// leader-only requests (in-flight transfers, live sets, due holds).
    pub(super) fn leader_only<T>(&self, answer: impl FnOnce(&Self) -> T) -> Result<T, StoreError> {
        if self.is_leader() {
            Ok(answer(self))
        } else {
            Err(StoreError::NotLeader {
                leader_id: self.leader_hint(),
            })
        }
    }

    /// Notes the leader timestamp of an entry in this replica's log.
    pub(super) fn saw_timestamp(&mut self, timestamp_ms: u64) {
        self.timestamp_ms_last = self.timestamp_ms_last.max(timestamp_ms);
    }

    /// Proposes this round's commands as as few entries as the limits allow.
    pub(super) fn propose(&mut self, now_ms: u64) {
        if self.commands.received.is_empty() {
            return;
        }
        let mut proposals = std::mem::take(&mut self.commands.received);
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
                self.commands
                    .pending
                    .insert(index, PendingEntry { term, replies });
            } else {
                // Dropped (e.g. leader transfer, uncommitted budget full): never in the log.
                // During a hand-off the node leadership is going to is the one to ask.
                let error = StoreError::NotLeader {
                    leader_id: self.raw.raft.lead_transferee.or(self.leader_hint()),
                };
                for reply in replies {
                    let _ = reply.send(Err(error.clone()));
                }
            }
        }
    }

    /// Starts one ReadIndex round for all reads received this round.
    pub(super) fn read_index(&mut self) {
        self.reads
            .in_flight
            .retain(|_, reads| reads.iter().any(|(_, reply)| !reply.is_closed()));
        if self.reads.waiting.is_empty() {
            return;
        }
        // Followers serve linearizable reads too: raft forwards the ReadIndex request to the
        // leader and hands back the index to wait for. Without a leader there is no one to ask.
        if self.leader_hint().is_none() {
            let error = StoreError::NotLeader { leader_id: None };
            for (_, reply) in self.reads.waiting.drain(..) {
                let _ = reply.send(Err(error.clone()));
            }
            return;
        }
        // raft-rs drops ReadIndex until the leader committed an entry of its term; keep the
        // reads until then (the caller's timeout bounds the wait).
        if self.is_leader() && !self.raw.raft.commit_to_current_term() {
            return;
        }
        let ctx = self.reads.ctx_next;
        self.reads.ctx_next += 1;
        self.raw.read_index(ctx.to_be_bytes().to_vec());
        self.reads
            .in_flight
            .insert(ctx, std::mem::take(&mut self.reads.waiting));
    }

    pub(super) fn on_read_states(&mut self, states: Vec<ReadState>) {
        for state in states {
            let Ok(ctx) = <[u8; 8]>::try_from(state.request_ctx.as_slice()) else {
                continue;
            };
            if let Some(reads) = self.reads.in_flight.remove(&u64::from_be_bytes(ctx)) {
                self.reads.ready.push((state.index, reads));
            }
        }
    }

    /// The records on disk of the commands' transaction ids that neither the ledger (it holds
    /// in-flight transfers only) nor this round's `unwritten` records hold: looked up before
    /// deciding, so `decide` stays pure.
    ///
    /// A record on disk created at or after `index` is left out: it is not history yet (a
    /// follower that fetched a snapshot stores the records of the fetched events, which may
    /// run ahead of what it applied).
    fn records_on_disk(
        &self,
        db: &Db,
        index: u64,
        commands: &[Command],
    ) -> anyhow::Result<HashMap<u128, Record>> {
        let ids: Vec<u128> = commands
            .iter()
            .filter_map(Command::transaction_id)
            .map(|id| id.as_u128())
            .filter(|id| !self.ledger.holds_record(*id) && !self.unwritten.contains_key(id))
            .collect();
        let mut on_disk = db
            .records(self.id, &ids)
            .with_context(|| format!("partition {}: reading transfer records", self.id))?;
        on_disk.retain(|_, record| record.created_at() < index);
        Ok(on_disk)
    }

    /// The round's apply batch is written: its records are readable in RocksDB.
    pub(super) fn apply_written(&mut self) {
        self.unwritten.clear();
        if let Some(first) = self.tail.first.take() {
            let round = AppliedRound {
                first,
                last: self.applied_index,
                blocks: std::mem::take(&mut self.tail.blocks),
            };
            if self.tail.sender.receiver_count() > 0 {
                // Fails only without receivers; a receiver too slow for the ring reads disk.
                let _ = self.tail.sender.send(Arc::new(round));
            }
        }
    }

    /// A transfer record as of the applied index: in memory, else on disk.
    fn transfer_record(
        &self,
        db: &Db,
        transaction_id: &uuid::Uuid,
    ) -> anyhow::Result<Option<ledger::TransferRecord>> {
        Ok(match self.source_record(db, transaction_id)? {
            Some(Record::Transfer(record)) => Some(record),
            _ => None,
        })
    }

    /// The record this partition keeps as a source for the id (a transfer's, a hold's, a
    /// multi-leg transfer's; not a credit's) as of the applied index: in memory, else on disk.
    fn source_record(
        &self,
        db: &Db,
        transaction_id: &uuid::Uuid,
    ) -> anyhow::Result<Option<Record>> {
        if let Some(record) = self.ledger.transfer(transaction_id) {
            return Ok(Some(Record::Transfer(record.clone())));
        }
        if let Some(record) = self.ledger.legs_record(transaction_id) {
            return Ok(Some(Record::Legs(record.clone())));
        }
        Ok(match db.record(self.id, transaction_id.as_u128())? {
            Some(record @ (Record::Transfer(_) | Record::Legs(_)))
                if record.created_at() <= self.applied_index =>
            {
                Some(record)
            }
            _ => None,
        })
    }

    pub(super) fn serve_ready_reads(&mut self, db: &Db) {
        let applied_index = self.applied_index;
        let mut ready = Vec::new();
        self.reads.ready.retain_mut(|(index, reads)| {
            if *index <= applied_index {
                ready.append(reads);
                false
            } else {
                true
            }
        });
        for (query, reply) in ready {
            let answer = match query {
                Query::Account(account_id) => QueryAnswer::Account(
                    self.ledger
                        .account_view(&account_id)
                        .map(|account| (account, self.ledger.held_minor(&account_id))),
                ),
                Query::Transfer(transaction_id) | Query::Record(transaction_id) => {
                    let found = match query {
                        Query::Transfer(_) => self
                            .transfer_record(db, &transaction_id)
                            .map(QueryAnswer::Transfer),
                        _ => self
                            .source_record(db, &transaction_id)
                            .map(QueryAnswer::Record),
                    };
                    match found {
                        Ok(answer) => answer,
                        Err(error) => {
                            tracing::error!(
                                partition = self.id,
                                error = format!("{error:#}"),
                                "reading a transfer record failed"
                            );
                            let _ = reply.send(Err(StoreError::StorageFailed));
                            continue;
                        }
                    }
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
    pub(super) fn apply(
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
            self.tail.first.get_or_insert(entry.index);
            // Anything we proposed below this index and did not see applied was overwritten.
            while let Some(first) = self.commands.pending.first_entry() {
                if *first.key() >= entry.index {
                    break;
                }
                for reply in first.remove().replies {
                    replies.push((reply, Err(StoreError::OutcomeUnknown)));
                }
            }
            let pending = self.commands.pending.remove(&entry.index);
            let membership_change = entry.get_entry_type() != EntryType::EntryNormal;
            if membership_change || entry.data.is_empty() {
                // A membership change (proposed by the move driver alone) or a new leader's
                // empty entry: whoever proposed commands at this index lost them.
                if membership_change {
                    self.apply_conf_change(&entry, batch)?;
                }
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
            let on_disk = self.records_on_disk(db, entry.index, &payload.commands)?;
            for command in &payload.commands {
                let stored = Recorded {
                    unwritten: &self.unwritten,
                    on_disk: &on_disk,
                };
                let (event, outcome) = self.ledger.execute_with(&stored, command, meta);
                self.snapshots.events_since += u64::from(event.is_some());
                if let Some(event) = &event {
                    self.metrics.event_applied(event);
                    if let ledger::Event::AccountOpened {
                        account_id,
                        annotations: Some(annotations),
                        ..
                    } = event
                    {
                        db.put_account_annotations(batch, self.id, account_id, annotations);
                    }
                    // The record the event finished goes to disk in this batch; until the
                    // batch is written, the entry's later commands and the round's later
                    // entries find it in `unwritten`. (A transfer in flight stays in the
                    // ledger until settled.)
                    if let Some(record) =
                        Record::of_outcome(&outcome).filter(|record| !record.is_live())
                    {
                        db.put_record(batch, self.id, &record);
                        self.unwritten
                            .insert(record.transaction_id().as_u128(), record);
                    }
                }
                events.extend(event);
                outcomes.push(outcome);
            }
            if !events.is_empty() {
                let block = EventBlock { meta, events };
                let (bytes, chain) = codec::encode_events(&self.chain_head, &block);
                self.chain_head = chain;
                batch.put_cf(db.cf(CF_EVENTS), index_key(self.id, entry.index), bytes);
                self.tail.blocks.push((block, chain));
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

    /// Applies a membership change entry: raft-rs takes it (a change it refuses, such as a
    /// step proposed twice by two drivers, changes nothing and is only logged), and the
    /// membership that results goes into the apply batch with the entry's index.
    fn apply_conf_change(&mut self, entry: &Entry, batch: &mut WriteBatch) -> anyhow::Result<()> {
        let change = match entry.get_entry_type() {
            EntryType::EntryConfChangeV2 => {
                <ConfChangeV2 as protobuf::Message>::parse_from_bytes(&entry.data)
            }
            // Never proposed here (the driver proposes V2 changes); read as its V2 form.
            _ => <ConfChange as protobuf::Message>::parse_from_bytes(&entry.data).map(|change| {
                let mut single = raft::eraftpb::ConfChangeSingle::default();
                single.set_change_type(change.get_change_type());
                single.node_id = change.node_id;
                let mut change_v2 = ConfChangeV2::default();
                change_v2.set_changes(vec![single].into());
                change_v2
            }),
        };
        let change = match change {
            Ok(change) => change,
            Err(error) => {
                tracing::error!(
                    partition = self.id,
                    index = entry.index,
                    %error,
                    "membership change entry does not decode; skipped"
                );
                return Ok(());
            }
        };
        match self.raw.apply_conf_change(&change) {
            Ok(conf_state) => {
                tracing::info!(
                    partition = self.id,
                    index = entry.index,
                    voters = ?conf_state.voters,
                    learners = ?conf_state.learners,
                    outgoing = ?conf_state.voters_outgoing,
                    "membership changed"
                );
                self.raw
                    .mut_store()
                    .set_conf_state(conf_state, entry.index, batch)?;
                self.member_seen |= self.named();
            }
            Err(error) => tracing::warn!(
                partition = self.id,
                index = entry.index,
                %error,
                "membership change refused by raft; nothing changed"
            ),
        }
        Ok(())
    }

    /// Once a tick (see [`Handoff`]): a leader that is not the preferred one hands leadership
    /// to it once it has been caught up for `LEADER_HANDOFF_SETTLE`; returns whether it did.
    pub(super) fn hand_off(&mut self, node_id: u64, now: std::time::Instant) -> bool {
        let preferred = self.preferred_leader();
        let caught_up = self.caught_up(preferred);
        let raft = &self.raw.raft;
        // Not while the membership changes: a move hands leadership away from the node it
        // empties (`placement::next_step`), which may be the preferred one.
        let conf_state = self.raw.store().conf_state();
        let settled = conf_state.voters.contains(&preferred)
            && conf_state.voters_outgoing.is_empty()
            && !raft.has_pending_conf();
        if preferred == node_id
            || !self.is_leader()
            || raft.lead_transferee.is_some()
            || !caught_up
            || !settled
        {
            self.handoff.caught_up_since = None;
            return false;
        }
        let since = *self.handoff.caught_up_since.get_or_insert(now);
        if now.duration_since(since) < limits::LEADER_HANDOFF_SETTLE {
            return false;
        }
        self.handoff.caught_up_since = None;
        tracing::info!(
            partition = self.id,
            term = raft.term,
            to = preferred,
            "handing leadership to the preferred leader"
        );
        self.raw.transfer_leader(preferred);
        true
    }

    pub(super) fn fail_pending(&mut self, proposals_error: StoreError, reads_error: StoreError) {
        for (_, pending) in std::mem::take(&mut self.commands.pending) {
            for reply in pending.replies {
                let _ = reply.send(Err(proposals_error.clone()));
            }
        }
        let reads = self
            .reads
            .waiting
            .drain(..)
            .chain(self.reads.in_flight.drain().flat_map(|(_, reads)| reads))
            .chain(self.reads.ready.drain(..).flat_map(|(_, reads)| reads));
        for (_, reply) in reads {
            let _ = reply.send(Err(reads_error.clone()));
        }
    }

    pub(super) fn status(&self, with_digest: bool) -> PartitionStatus {
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
            // Multi-leg parts prepared or homes decided and not finished are in flight too.
            in_flight_transfers: (self.ledger.in_flight_count() + self.ledger.live_legs_count())
                as u64,
            snapshot_index: self.snapshots.index,
            log_first_index: self.raw.store().first_log_index(),
            members: self.membership(),
            preferred_leader_id: self.preferred_leader(),
        }
    }

    /// The node that should lead the partition (0: none), the same on every replica: see
    /// `placement::Group::preferred_leader`.
    fn preferred_leader(&self) -> u64 {
        let voters = &self.raw.store().conf_state().voters;
        self.handoff.placed.preferred_leader(voters).unwrap_or(0)
    }

    /// Whether the applied membership names this node, and is newer than the change that
    /// last removed it (see `member_seen`).
    pub(super) fn named(&self) -> bool {
        let storage = self.raw.store();
        let newer = self.removed_at == 0 || storage.conf_index() > self.removed_at;
        newer && self.names(self.raw.raft.id)
    }

    /// Whether the applied membership has `node` in it (voting in either configuration, or
    /// learning). Allocates nothing: `removed` asks it every round.
    fn names(&self, node: u64) -> bool {
        let conf_state = self.raw.store().conf_state();
        [
            &conf_state.voters,
            &conf_state.voters_outgoing,
            &conf_state.learners,
            &conf_state.learners_next,
        ]
        .iter()
        .any(|ids| ids.contains(&node))
    }

    /// Whether follower `node` is caught up with this leader (by raft's progress: recently
    /// active, replicating, at most `LEADER_HANDOFF_LAG_ENTRIES_MAX` entries behind): what
    /// a leadership hand-off and a move's promotion wait for.
    pub(super) fn caught_up(&self, node: u64) -> bool {
        let raft = &self.raw.raft;
        raft.prs().get(node).is_some_and(|progress| {
            progress.recent_active
                && progress.state == raft::ProgressState::Replicate
                && progress.matched + limits::LEADER_HANDOFF_LAG_ENTRIES_MAX
                    >= raft.raft_log.last_index()
        })
    }

    /// The group's membership as this replica has applied it.
    pub(super) fn membership(&self) -> super::Members {
        super::Members::of(self.raw.store().conf_state(), self.raw.store().conf_index())
    }

    /// Whether this replica is out of its group: its applied membership no longer names it,
    /// and no membership change after it waits in its log (one could name it again).
    pub(super) fn removed(&self, node_id: u64) -> bool {
        self.member_seen
            && !self.names(node_id)
            && !self.conf_change_in_log_after(self.applied_index)
    }

    /// Whether this replica's log holds a membership change after `index` that it has not
    /// applied; true also when the unapplied tail is too long to look through
    /// (`limits::REMOVAL_LOG_SCAN_MAX`: a removed replica has a short one, if any).
    pub(super) fn conf_change_in_log_after(&self, index: u64) -> bool {
        let log = &self.raw.raft.raft_log;
        let (first, last) = (index.max(self.applied_index) + 1, log.last_index());
        if first > last {
            return false;
        }
        if last - first >= limits::REMOVAL_LOG_SCAN_MAX {
            return true;
        }
        match log.slice(first, last + 1, None, raft::GetEntriesContext::empty(false)) {
            Ok(entries) => entries
                .iter()
                .any(|entry| entry.get_entry_type() != EntryType::EntryNormal),
            Err(_) => true,
        }
    }

    /// Leader: notes the followers sent a snapshot, to time out fetches that never come.
    pub(super) fn note_snapshot_sends(&mut self, messages: &[Message]) {
        for message in messages {
            if message.get_msg_type() == MessageType::MsgSnapshot {
                tracing::info!(
                    partition = self.id,
                    to = message.to,
                    index = message.get_snapshot().get_metadata().index,
                    "follower is behind the log: sending a snapshot"
                );
                let now = std::time::Instant::now();
                let actions = self.catch_up.handle(Event::Sent {
                    to: message.to,
                    now,
                });
                debug_assert!(actions.is_empty(), "noting a send asks for nothing");
            }
        }
    }

    /// Follower: applied from the log past a staged snapshot, which is then dropped.
    pub(super) fn applied_past_staged(&mut self) {
        let applied_index = self.applied_index;
        let actions = self.catch_up.handle(Event::Applied { applied_index });
        debug_assert!(actions.is_empty(), "applying asks for nothing");
    }

    /// Follower: raft restored a snapshot; its state was fetched and verified before raft saw
    /// the message, so install it with the log reset into this round's synced write.
    pub(super) fn install_snapshot(
        &mut self,
        snapshot: &raft::eraftpb::Snapshot,
        batch: &mut WriteBatch,
    ) -> anyhow::Result<()> {
        let index = snapshot.get_metadata().index;
        let term = snapshot.get_metadata().term;
        let (meta, ledger) = match self.catch_up.install(index, term) {
            Ok(staged) => staged.state,
            Err(error) => anyhow::bail!("partition {}: {error}", self.id),
        };
        self.chain_head = meta.chain_head;
        let conf_state = snapshot.get_metadata().get_conf_state().clone();
        self.raw
            .mut_store()
            .install_snapshot(meta, conf_state, batch)?;
        self.member_seen |= self.named();
        // The snapshot holds no finished record: the fetch rebuilt those it covers on disk.
        self.ledger = ledger;
        self.ledger.keep_only_in_flight();
        self.applied_index = index;
        self.snapshots.index = index;
        tracing::info!(partition = self.id, index, "snapshot installed");
        Ok(())
    }
}
