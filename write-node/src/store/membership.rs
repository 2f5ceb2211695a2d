//! Replicas that come and go: a replica move (`placement::next_step`, one raft membership
//! change at a time, planned from the applied membership on the partition's leader), a
//! replica created when a leader first sends this node a partition's log, and a replica
//! deleted once its group has removed this node.
//!
//! A partition's membership is raft's own conf state, changed only through its log, so it is
//! replicated and committed like the ledger: a move survives the loss of any minority of the
//! group, a crash of any node at any step, and a change of leader (the next leader plans again
//! from what is applied).

use std::collections::BTreeSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use raft::eraftpb::{
    ConfChangeSingle, ConfChangeTransition, ConfChangeType, ConfChangeV2, Message, MessageType,
};
use tokio::sync::watch;

use super::round::Store;
use super::{Members, MoveProgress, MoveRefused, StoreError, Tails};

/// What the loop shares about the replicas it holds, and what it needs to create one.
pub(super) struct Replicas {
    /// Where every partition was placed when the cluster was created: a replica created
    /// later starts from its group's first membership and applies the log (or a snapshot)
    /// from there.
    pub(super) placement: Arc<placement::Placement>,
    /// The cluster's write nodes: only they are sent replicas, and only their messages
    /// create one.
    pub(super) nodes: BTreeSet<u64>,
    pub(super) held: Arc<Vec<AtomicBool>>,
    pub(super) members_tx: watch::Sender<Vec<Members>>,
    pub(super) tails: Tails,
    pub(super) logger: slog::Logger,
}

/// Whether `message`, for a partition this node does not hold, is a leader's append,
/// heartbeat or snapshot, from a write node of the cluster, to this node: what creates a
/// replica (see `Store::replica_for`), unless the group removed this node before.
fn from_a_leader(message: &Message, node_id: u64, nodes: &BTreeSet<u64>) -> bool {
    let kind = message.get_msg_type();
    matches!(
        kind,
        MessageType::MsgAppend | MessageType::MsgHeartbeat | MessageType::MsgSnapshot
    ) && message.to == node_id
        && nodes.contains(&message.from)
}

/// Whether a leader's `message` shows its log reaching past the membership change that
/// removed this node at `removed_at`: an append committed past it, or a snapshot after it.
fn reaches_past(message: &Message, removed_at: u64) -> bool {
    match message.get_msg_type() {
        MessageType::MsgAppend => message.commit > removed_at,
        MessageType::MsgSnapshot => message.get_snapshot().get_metadata().index > removed_at,
        _ => false,
    }
}

impl Store {
    /// A message for a partition not held here: if it comes from a leader of the group (an
    /// append, a heartbeat or a snapshot), the leader has added this node, and its replica
    /// is created; otherwise it is dropped. Where the group removed this node before
    /// (`Db::removed_at`), only a leader whose log reaches past that removal recreates it: an
    /// append committed beyond it, or a snapshot after it. A stale leader that never learnt
    /// of the removal must not bring back, empty, a replica its own configuration counts as
    /// a voter (a raft id never comes back with empty state in a configuration that knew
    /// it with state).
    pub(super) fn replica_for(&mut self, partition: u32, message: &Message) -> Option<usize> {
        if self.replicas.placement.group(partition).is_err()
            || !from_a_leader(message, self.node_id, &self.replicas.nodes)
        {
            return None;
        }
        match self.db.removed_at(partition) {
            Ok(None) => {}
            Ok(Some(removed_at)) if reaches_past(message, removed_at) => {}
            Ok(Some(_)) => return None,
            Err(error) => {
                tracing::error!(partition, error = format!("{error:#}"), "reading a removal");
                return None;
            }
        }
        match self.create_replica(partition) {
            Ok(slot) => {
                tracing::info!(
                    partition,
                    leader = message.from,
                    "a leader sent this node the partition's log: replica created"
                );
                Some(slot)
            }
            Err(error) => {
                tracing::error!(
                    partition,
                    error = format!("{error:#}"),
                    "creating a replica failed"
                );
                None
            }
        }
    }

    fn create_replica(&mut self, id: u32) -> anyhow::Result<usize> {
        let group = self.replicas.placement.group(id)?;
        let partition = super::startup::open_partition(
            self.node_id,
            &self.db,
            id,
            super::startup::Place {
                group,
                // Leadership goes where the group's members send it, not here.
                campaign: false,
            },
            &self.replicas.logger,
            self.metrics.partitions[id as usize].clone(),
        )?;
        let slot = self
            .partitions
            .partition_point(|existing| existing.id < partition.id);
        self.replicas.tails.write().expect("no panics while held")[id as usize] =
            Some(partition.tail.sender.clone());
        self.partitions.insert(slot, partition);
        self.reindex();
        self.replicas.held[id as usize].store(true, Ordering::Release);
        self.publish_members();
        self.metrics.replica_created();
        Ok(slot)
    }

    /// Rebuilds `slots` after `partitions` gained or lost one.
    fn reindex(&mut self) {
        self.slots.iter_mut().for_each(|slot| *slot = None);
        for (slot, partition) in self.partitions.iter().enumerate() {
            self.slots[partition.id as usize] = Some(slot);
        }
    }

    /// Deletes the replicas whose own applied membership no longer names this node (it
    /// applied its removal, and nothing after it).
    pub(super) fn leave_removed_groups(&mut self) -> anyhow::Result<()> {
        let removed: Vec<u32> = self
            .partitions
            .iter()
            .filter(|partition| partition.removed(self.node_id))
            .map(|partition| partition.id)
            .collect();
        for partition in removed {
            let removed_at = self
                .slot(partition)
                .map_or(0, |slot| self.partitions[slot].raw.store().conf_index());
            self.delete_replica(
                partition,
                removed_at,
                "the group applied this node's removal",
            )?;
        }
        Ok(())
    }

    /// A replica of the partition reported `members`, a membership without this node. A
    /// removed node often never learns of its removal from its own log: the leader stops
    /// sending to it once the change commits, before telling it the commit. The replica here
    /// is deleted if that membership is newer than the one it applied and no membership
    /// change after it is in its log: then nothing this node holds can make it a voter
    /// again, and nothing it acknowledged counts any more.
    pub(super) fn removed_by_report(
        &mut self,
        partition: u32,
        members: &Members,
    ) -> anyhow::Result<()> {
        let Some(slot) = self.slot(partition) else {
            return Ok(());
        };
        let replica = &self.partitions[slot];
        if members.contains(self.node_id)
            || members.conf_index <= replica.raw.store().conf_index()
            || replica.conf_change_in_log_after(members.conf_index)
        {
            return Ok(());
        }
        self.delete_replica(
            partition,
            members.conf_index,
            "a newer membership without this node was reported",
        )
    }

    fn delete_replica(&mut self, id: u32, removed_at: u64, why: &str) -> anyhow::Result<()> {
        let Some(slot) = self.slot(id) else {
            return Ok(());
        };
        let mut partition = self.partitions.remove(slot);
        self.reindex();
        self.replicas.held[id as usize].store(false, Ordering::Release);
        self.replicas.tails.write().expect("no panics while held")[id as usize] = None;
        let leader_id = partition.leader_hint();
        partition.fail_pending(
            StoreError::OutcomeUnknown,
            StoreError::NotHosted { leader_id },
        );
        for (_, reply) in partition.commands.received.drain(..) {
            let _ = reply.send(Err(StoreError::NotHosted { leader_id }));
        }
        let members = partition.membership();
        drop(partition);
        self.db.delete_partition(id, removed_at)?;
        self.replicas.members_tx.send_modify(|known| {
            known[id as usize] = members;
        });
        self.metrics.replica_deleted();
        tracing::info!(partition = id, why, "replica deleted");
        Ok(())
    }

    /// Publishes the applied membership of every partition held here.
    pub(super) fn publish_members(&mut self) {
        let partitions = &self.partitions;
        self.replicas.members_tx.send_if_modified(|known| {
            let mut changed = false;
            for partition in partitions {
                let known = &mut known[partition.id as usize];
                if known.conf_index != partition.raw.store().conf_index() {
                    let members = partition.membership();
                    if *known != members {
                        *known = members;
                        changed = true;
                    }
                }
            }
            changed
        });
    }

    /// Plans the next step of moving the partition's replica on node `from` to node `to`
    /// from its applied membership, and starts it (leader only). While a membership change
    /// is in flight (proposed, not applied), nothing new is proposed.
    pub(super) fn move_step(
        &mut self,
        id: u32,
        from: u64,
        to: u64,
    ) -> Result<MoveProgress, MoveRefused> {
        let Some(slot) = self.slot(id) else {
            return Err(StoreError::NotHosted { leader_id: None }.into());
        };
        let partition = &mut self.partitions[slot];
        if !partition.is_leader() {
            return Err(StoreError::NotLeader {
                leader_id: partition.leader_hint(),
            }
            .into());
        }
        let members = partition.membership();
        let step = placement::next_step(
            &members.membership(),
            self.node_id,
            placement::Move {
                partition: id,
                from,
                to,
            },
            |node| partition.caught_up(node),
        )?;
        // One change at a time: the one in flight applies first, then the plan moves on.
        let raft = &partition.raw.raft;
        let in_flight = raft.has_pending_conf() || raft.lead_transferee.is_some();
        if in_flight {
            return Ok(MoveProgress { step, members });
        }
        let single = |change_type: ConfChangeType, node_id: u64| {
            let mut single = ConfChangeSingle::default();
            single.set_change_type(change_type);
            single.node_id = node_id;
            single
        };
        let change = match step {
            placement::Step::AddLearner(node) => {
                Some(vec![single(ConfChangeType::AddLearnerNode, node)])
            }
            placement::Step::EnterJoint { promote, remove } => Some(vec![
                single(ConfChangeType::AddNode, promote),
                single(ConfChangeType::RemoveNode, remove),
            ]),
            placement::Step::LeaveJoint => Some(Vec::new()),
            placement::Step::RemoveLearner(node) => {
                Some(vec![single(ConfChangeType::RemoveNode, node)])
            }
            placement::Step::TransferLeader(node) => {
                tracing::info!(partition = id, to = node, "move: handing leadership over");
                partition.raw.transfer_leader(node);
                None
            }
            placement::Step::AwaitCatchUp(_) | placement::Step::Done => None,
        };
        if let Some(changes) = change {
            let mut change_v2 = ConfChangeV2::default();
            if changes.len() > 1 {
                // Joint consensus, left by the driver's own `LeaveJoint` step.
                change_v2.set_transition(ConfChangeTransition::Explicit);
            }
            change_v2.set_changes(changes.into());
            tracing::info!(partition = id, ?step, "move: proposing a membership change");
            if let Err(error) = partition.raw.propose_conf_change(Vec::new(), change_v2) {
                tracing::warn!(partition = id, %error, "move: membership change not proposed");
                return Err(StoreError::NotLeader {
                    leader_id: partition.leader_hint(),
                }
                .into());
            }
        }
        Ok(MoveProgress { step, members })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `Store::replica_for`'s decision, once the removal is read.
    fn creates_replica(
        message: &Message,
        node_id: u64,
        nodes: &BTreeSet<u64>,
        removed_at: Option<u64>,
    ) -> bool {
        from_a_leader(message, node_id, nodes)
            && removed_at.is_none_or(|removed_at| reaches_past(message, removed_at))
    }

    fn message(kind: MessageType, from: u64, to: u64, commit: u64) -> Message {
        let mut message = Message::default();
        message.set_msg_type(kind);
        (message.from, message.to, message.commit) = (from, to, commit);
        message.mut_snapshot().mut_metadata().index = commit;
        message
    }

    /// A leader's message creates a replica; a stale leader's does not bring back one the
    /// group removed (it would come back empty in a configuration that counts it a voter).
    #[test]
    fn a_replica_is_created_by_a_leader_and_never_brought_back_by_a_stale_one() {
        let nodes: BTreeSet<u64> = [1, 2, 3, 4].into();
        use MessageType::*;
        for kind in [MsgAppend, MsgHeartbeat, MsgSnapshot] {
            assert!(creates_replica(&message(kind, 1, 4, 0), 4, &nodes, None));
            // Not to this node, not from a write node of the cluster.
            assert!(!creates_replica(&message(kind, 1, 3, 0), 4, &nodes, None));
            assert!(!creates_replica(&message(kind, 9, 4, 0), 4, &nodes, None));
        }
        for kind in [
            MsgRequestVote,
            MsgRequestPreVote,
            MsgAppendResponse,
            MsgTimeoutNow,
        ] {
            assert!(!creates_replica(&message(kind, 1, 4, 0), 4, &nodes, None));
        }
        // Removed at index 50: only a leader whose log reaches past it.
        let removed = Some(50);
        assert!(!creates_replica(
            &message(MsgHeartbeat, 1, 4, 99),
            4,
            &nodes,
            removed
        ));
        assert!(!creates_replica(
            &message(MsgAppend, 1, 4, 50),
            4,
            &nodes,
            removed
        ));
        assert!(creates_replica(
            &message(MsgAppend, 1, 4, 51),
            4,
            &nodes,
            removed
        ));
        assert!(!creates_replica(
            &message(MsgSnapshot, 1, 4, 50),
            4,
            &nodes,
            removed
        ));
        assert!(creates_replica(
            &message(MsgSnapshot, 1, 4, 51),
            4,
            &nodes,
            removed
        ));
    }
}
