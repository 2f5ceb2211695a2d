//! One replica move as raft membership changes. The driver (the group's leader) asks
//! [`next_step`] what to do given what raft has *applied*, does it, waits for it to apply, and
//! asks again; it keeps nothing else. A crash anywhere, a change of leader, or two drivers
//! proposing the same step therefore never leave a move half-understood: the next driver
//! reads the group's membership and goes on from there.
//!
//! A move of partition P from node A to node B, the group's voters going from {A, C, D} to
//! {B, C, D}:
//!
//! 1. `AddLearner(B)`: B receives the log, or a snapshot, and votes in nothing.
//! 2. `AwaitCatchUp(B)`: until B's matched index is close to the leader's (the driver's
//!    measure), so that promoting it does not stall commits while it catches up.
//! 3. `TransferLeader(C)` if A leads: a leader does not propose its own removal.
//! 4. `EnterJoint { promote: B, remove: A }`: one `ConfChangeV2` with an explicit
//!    transition; until it is left, every decision needs a majority of {A, C, D} *and* of
//!    {B, C, D}, so no moment has two disjoint majorities.
//! 5. `LeaveJoint`: the empty `ConfChangeV2`; {B, C, D} alone decide from here. A steps out
//!    (it gets no more entries; its data is deleted once placement retires its replica).
//! 6. `Done`.
//!
//! Never more than one conf change is in flight per group (raft-rs refuses a second one
//! until the first applies), and each step's precondition is what the previous one leaves,
//! so a step proposed twice applies once: raft-rs refuses the duplicate (the store logs the
//! refusal and goes on; it must not stop on it).

use std::collections::BTreeSet;

use crate::{Move, NodeId};

/// A group's membership as raft-rs has applied it (its `ConfState`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Membership {
    /// The voters (while in joint consensus: the incoming configuration's).
    pub voters: BTreeSet<NodeId>,
    /// Nodes that receive the log and do not vote.
    pub learners: BTreeSet<NodeId>,
    /// While in joint consensus, the outgoing configuration's voters (raft-rs
    /// `voters_outgoing`); empty otherwise.
    pub outgoing: BTreeSet<NodeId>,
}

impl Membership {
    /// Whether decisions need majorities of two configurations.
    pub fn is_joint(&self) -> bool {
        !self.outgoing.is_empty()
    }
}

/// What the driver of a move does next. Each is one raft operation, and the driver asks
/// again once it has applied (or failed).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Step {
    /// Propose `ConfChangeV2 { AddLearnerNode(node) }`.
    AddLearner(NodeId),
    /// Wait until the learner has caught up, then ask again.
    AwaitCatchUp(NodeId),
    /// Hand leadership to this voter (raft-rs `transfer_leader`), then ask again (on
    /// whichever node leads then).
    TransferLeader(NodeId),
    /// Propose `ConfChangeV2 { transition: Explicit, AddNode(promote), RemoveNode(remove) }`.
    EnterJoint { promote: NodeId, remove: NodeId },
    /// Propose the empty `ConfChangeV2`, which leaves joint consensus.
    LeaveJoint,
    /// Propose `ConfChangeV2 { RemoveNode(node) }` for a learner: undoes an abandoned move's
    /// first step (see [`abandon_step`]).
    RemoveLearner(NodeId),
    /// The move is complete: `to` votes and `from` is not in the group.
    Done,
}

/// Why a move cannot go on in the group as it is. Nothing is proposed; the planner plans
/// again from the group's membership.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum MoveError {
    #[error("neither node of the move is a voter: the group changed otherwise")]
    Stale,
    #[error("both nodes of the move are voters: the group changed otherwise")]
    BothVoters,
    #[error("the move's two nodes are the same node")]
    SameNode,
}

/// The next step of `step` in a group whose applied membership is `membership`, driven from
/// `leader` (the node that leads the group now and runs the driver). `caught_up(node)` is
/// whether a node's log is close to the leader's, by the driver's measure (raft's progress):
/// the learner is promoted only once caught up, and leadership is handed only to a voter
/// that is. See the module documentation.
pub fn next_step(
    membership: &Membership,
    leader: NodeId,
    step: Move,
    caught_up: impl Fn(NodeId) -> bool,
) -> Result<Step, MoveError> {
    let Move { from, to, .. } = step;
    if from == to {
        return Err(MoveError::SameNode);
    }
    let voters = &membership.voters;
    // Leadership goes to a voter of `voters` other than `leaving` that has caught up, or, if
    // none has, the driver waits for the first of them.
    let hand_over = |leaving: NodeId| {
        let mut others = voters.iter().copied().filter(|&voter| voter != leaving);
        let first = others.clone().next().ok_or(MoveError::Stale)?;
        Ok(match others.find(|&voter| caught_up(voter)) {
            Some(voter) => Step::TransferLeader(voter),
            None => Step::AwaitCatchUp(first),
        })
    };
    // Whatever joint configuration the group is in (this move's, or one a crashed driver of
    // another left), leaving it is safe and comes first: the incoming configuration decides.
    // A leader the incoming configuration drops (elected while joint) hands over first.
    if membership.is_joint() {
        if !voters.contains(&leader) {
            return hand_over(leader);
        }
        return Ok(Step::LeaveJoint);
    }
    match (voters.contains(&from), voters.contains(&to)) {
        (false, true) => Ok(Step::Done),
        (true, true) => Err(MoveError::BothVoters),
        (false, false) => Err(MoveError::Stale),
        (true, false) if !membership.learners.contains(&to) => Ok(Step::AddLearner(to)),
        (true, false) if !caught_up(to) => Ok(Step::AwaitCatchUp(to)),
        (true, false) if leader == from => hand_over(from),
        (true, false) => Ok(Step::EnterJoint {
            promote: to,
            remove: from,
        }),
    }
}

/// What undoes a move that will not finish (its learner lost, the plan changed): leave a
/// joint configuration first (which completes the move: the incoming configuration is the
/// move's), else remove the learner it added, else nothing (`Done`).
pub fn abandon_step(membership: &Membership, step: Move) -> Step {
    if membership.is_joint() {
        Step::LeaveJoint
    } else if membership.learners.contains(&step.to) && !membership.voters.contains(&step.to) {
        Step::RemoveLearner(step.to)
    } else {
        Step::Done
    }
}
