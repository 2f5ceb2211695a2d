//! Where partitions live. Each account partition is one raft group with `replicas` (R, 3 or
//! 5) voters on a subset of the cluster's write nodes; this crate decides which nodes, which
//! of them should lead, and how a replica moves from one node to another. It is the state a
//! metadata raft group replicates and the planner its leader runs; the store loop carries
//! the decisions out with raft-rs membership changes.
//!
//! Pure, like `ledger`: no IO, no clock, no randomness, and every decision deterministic (the
//! same placement and the same request give the same plan on every node).
//!
//! - [`Placement`]: the members (active or draining), the retired ids, and per partition its
//!   voters and preferred leader. [`Placement::new`] spreads replicas and leaders evenly;
//!   [`Placement::plan`] lists the moves that empty draining nodes and even out the rest;
//!   [`Placement::apply_move`] records a move raft has finished.
//! - [`next_step`]: one move as a sequence of raft membership changes (learner, catch-up,
//!   joint consensus, leave), derived each time from the group's current membership, so a
//!   driver that crashes at any point, or two drivers at once, go on from whatever raft has
//!   committed.

mod membership;

use std::collections::{BTreeMap, BTreeSet, VecDeque};

pub use membership::{Membership, MoveError, Step, abandon_step, next_step};

/// A write node's raft id: never 0 (raft's "none"), never reused once retired.
pub type NodeId = u64;

/// Replica counts a cluster may be created with: odd (an even count adds no fault
/// tolerance), a group of R voters surviving the loss of (R - 1) / 2 of them. 3 or 5 in
/// production; 1 for a one-node development cluster.
pub const REPLICAS_ALLOWED: [usize; 5] = [1, 3, 5, 7, 9];

/// Partitions a cluster may have (fixed when it is created): the one definition the write
/// node and walletctl check against.
pub const PARTITIONS_MAX: u32 = 256;

/// Why a placement or a change to it is refused. The placement is unchanged.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum PlacementError {
    #[error("replicas = {0}: must be one of {REPLICAS_ALLOWED:?}")]
    Replicas(usize),
    #[error("partitions = {0}: must be between 1 and {PARTITIONS_MAX}")]
    Partitions(u32),
    #[error("node id 0 is reserved (raft's 'no node')")]
    NodeIdZero,
    #[error("{active} active write nodes cannot hold {replicas} replicas of each partition")]
    TooFewNodes { active: usize, replicas: usize },
    #[error("node {0} is already a member")]
    AlreadyMember(NodeId),
    #[error("node {0} was removed; its id is never reused (a new node takes a new id)")]
    Retired(NodeId),
    #[error("node {0} is not a member")]
    NotMember(NodeId),
    #[error("node {node} still holds replicas of {replicas} partitions; drain it first")]
    StillHolds { node: NodeId, replicas: usize },
    #[error("partition {0} does not exist")]
    NoSuchPartition(u32),
    #[error(
        "partition {partition} has voters {voters:?}: not the replica count among the \
         cluster's nodes (a move under way?)"
    )]
    Unsettled {
        partition: u32,
        voters: BTreeSet<NodeId>,
    },
    #[error("move of partition {partition} from {from} to {to} does not fit its voters")]
    MoveDoesNotFit {
        partition: u32,
        from: NodeId,
        to: NodeId,
    },
}

/// A member's role in placement.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NodeState {
    /// Holds replicas and is given more when it has fewer than others.
    Active,
    /// Is being emptied: gets no new replica, and every one it holds is planned away.
    Draining,
}

/// One partition's raft group as placed: its voters and the one that should lead it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Group {
    pub voters: BTreeSet<NodeId>,
    /// The preferred leader, one of `voters`: leadership is moved here when it is elsewhere,
    /// so that leaders (who do most of a partition's work) are spread like replicas.
    pub leader: NodeId,
}

impl Group {
    /// The node that should lead the group now that its voters are `voters` (after moves):
    /// the placed leader while it is a voter; else the lowest voter that was not placed in
    /// the group (one that took a placed replica's place); else none. A function of the
    /// placement and the applied membership only, so every replica, after a restart or
    /// from a snapshot, names the same one.
    pub fn preferred_leader(&self, voters: &[NodeId]) -> Option<NodeId> {
        if voters.contains(&self.leader) {
            return Some(self.leader);
        }
        voters
            .iter()
            .copied()
            .filter(|node| !self.voters.contains(node))
            .min()
    }
}

/// One replica to move: `to` joins `partition`'s group and `from` leaves it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Move {
    pub partition: u32,
    pub from: NodeId,
    pub to: NodeId,
}

/// The cluster's placement. See the crate documentation.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Placement {
    replicas: usize,
    members: BTreeMap<NodeId, NodeState>,
    retired: BTreeSet<NodeId>,
    groups: Vec<Group>,
}

impl Placement {
    /// A new cluster's placement: each of `partitions` groups gets `replicas` voters among
    /// `nodes`, every node holding as many replicas as any other give or take one, and
    /// preferred leaders spread the same way where the groups allow it. Deterministic.
    pub fn new(
        nodes: &BTreeSet<NodeId>,
        partitions: u32,
        replicas: usize,
    ) -> Result<Placement, PlacementError> {
        if !REPLICAS_ALLOWED.contains(&replicas) {
            return Err(PlacementError::Replicas(replicas));
        }
        if !(1..=PARTITIONS_MAX).contains(&partitions) {
            return Err(PlacementError::Partitions(partitions));
        }
        if nodes.contains(&0) {
            return Err(PlacementError::NodeIdZero);
        }
        if nodes.len() < replicas {
            return Err(PlacementError::TooFewNodes {
                active: nodes.len(),
                replicas,
            });
        }
        let mut placement = Placement {
            replicas,
            members: nodes
                .iter()
                .map(|&node| (node, NodeState::Active))
                .collect(),
            retired: BTreeSet::new(),
            groups: Vec::with_capacity(partitions as usize),
        };
        let mut held: BTreeMap<NodeId, usize> = nodes.iter().map(|&node| (node, 0)).collect();
        let mut led: BTreeMap<NodeId, usize> = held.clone();
        for partition in 0..partitions {
            // The least loaded nodes, ties broken by the rotation, so that groups overlap as
            // little as they can.
            let rotation = |node: &NodeId| placement.rotation(*node, partition);
            let mut candidates: Vec<NodeId> = nodes.iter().copied().collect();
            candidates.sort_by_key(|node| (held[node], rotation(node)));
            let voters: BTreeSet<NodeId> = candidates[..replicas].iter().copied().collect();
            let leader = *voters
                .iter()
                .min_by_key(|node| (led[*node], rotation(node)))
                .expect("replicas > 0");
            for node in &voters {
                *held.get_mut(node).expect("a listed node") += 1;
            }
            *led.get_mut(&leader).expect("a listed node") += 1;
            placement.groups.push(Group { voters, leader });
        }
        placement.balance_leaders();
        Ok(placement)
    }

    /// The placement a running cluster shows: `groups` are its partitions' voters, in
    /// partition order, as raft applied them (after any moves), every node of `nodes`
    /// active. Preferred leaders are spread as [`Placement::new`] spreads them. Refused when
    /// a group does not have `replicas` voters, all of them among `nodes` (a group in the
    /// middle of a move: finish it first).
    pub fn observed(
        nodes: &BTreeSet<NodeId>,
        replicas: usize,
        groups: &[BTreeSet<NodeId>],
    ) -> Result<Placement, PlacementError> {
        let mut placement = Placement::new(nodes, groups.len() as u32, replicas)?;
        for (partition, voters) in groups.iter().enumerate() {
            if voters.len() != replicas || !voters.is_subset(nodes) {
                return Err(PlacementError::Unsettled {
                    partition: partition as u32,
                    voters: voters.clone(),
                });
            }
            let group = &mut placement.groups[partition];
            group.leader = *voters.first().expect("replicas > 0");
            group.voters = voters.clone();
        }
        placement.balance_leaders();
        Ok(placement)
    }

    /// Voters per partition.
    pub fn replicas(&self) -> usize {
        self.replicas
    }

    /// Number of partitions.
    pub fn partitions(&self) -> u32 {
        self.groups.len() as u32
    }

    /// Partition `partition`'s group.
    pub fn group(&self, partition: u32) -> Result<&Group, PlacementError> {
        self.groups
            .get(partition as usize)
            .ok_or(PlacementError::NoSuchPartition(partition))
    }

    /// Every group, by partition.
    pub fn groups(&self) -> &[Group] {
        &self.groups
    }

    /// The members and their state, by id.
    pub fn members(&self) -> &BTreeMap<NodeId, NodeState> {
        &self.members
    }

    /// Ids that were members and were removed: never members again.
    pub fn retired(&self) -> &BTreeSet<NodeId> {
        &self.retired
    }

    /// The partitions `node` holds a replica of, in order.
    pub fn partitions_of(&self, node: NodeId) -> impl Iterator<Item = u32> + '_ {
        self.groups
            .iter()
            .enumerate()
            .filter(move |(_, group)| group.voters.contains(&node))
            .map(|(partition, _)| partition as u32)
    }

    /// Replicas each member holds (0 for a member that holds none).
    pub fn replica_counts(&self) -> BTreeMap<NodeId, usize> {
        let mut counts: BTreeMap<NodeId, usize> =
            self.members.keys().map(|&node| (node, 0)).collect();
        for group in &self.groups {
            for node in &group.voters {
                *counts.entry(*node).or_default() += 1;
            }
        }
        counts
    }

    /// Partitions each member is the preferred leader of.
    pub fn leader_counts(&self) -> BTreeMap<NodeId, usize> {
        let mut counts: BTreeMap<NodeId, usize> =
            self.members.keys().map(|&node| (node, 0)).collect();
        for group in &self.groups {
            *counts.entry(group.leader).or_default() += 1;
        }
        counts
    }

    /// A new, empty node joins: it is active and the next [`plan`](Placement::plan) gives it
    /// its share. Its id must be new (not a member, not retired, not 0).
    pub fn add_node(&mut self, node: NodeId) -> Result<(), PlacementError> {
        if node == 0 {
            return Err(PlacementError::NodeIdZero);
        }
        if self.retired.contains(&node) {
            return Err(PlacementError::Retired(node));
        }
        if self.members.contains_key(&node) {
            return Err(PlacementError::AlreadyMember(node));
        }
        self.members.insert(node, NodeState::Active);
        Ok(())
    }

    /// `node` is to be emptied: it gets no new replica, and the next plan moves every replica
    /// it holds to the active nodes. Refused when the active nodes left could not hold R
    /// replicas of a partition. Draining a draining node changes nothing.
    pub fn drain_node(&mut self, node: NodeId) -> Result<(), PlacementError> {
        match self.members.get(&node) {
            None => Err(PlacementError::NotMember(node)),
            Some(NodeState::Draining) => Ok(()),
            Some(NodeState::Active) => {
                let active = self.active_nodes().count() - 1;
                if active < self.replicas {
                    return Err(PlacementError::TooFewNodes {
                        active,
                        replicas: self.replicas,
                    });
                }
                self.members.insert(node, NodeState::Draining);
                Ok(())
            }
        }
    }

    /// `node`, which holds no replica any more, leaves the cluster; its id is retired.
    pub fn remove_node(&mut self, node: NodeId) -> Result<(), PlacementError> {
        if !self.members.contains_key(&node) {
            return Err(PlacementError::NotMember(node));
        }
        let replicas = self.partitions_of(node).count();
        if replicas > 0 {
            return Err(PlacementError::StillHolds { node, replicas });
        }
        if self.members[&node] == NodeState::Active
            && self.active_nodes().count() - 1 < self.replicas
        {
            return Err(PlacementError::TooFewNodes {
                active: self.active_nodes().count() - 1,
                replicas: self.replicas,
            });
        }
        self.members.remove(&node);
        self.retired.insert(node);
        Ok(())
    }

    /// The moves that take this placement to a balanced one: first every replica on a
    /// draining node, each to the active node holding fewest that is not in the group yet;
    /// then, while an active node holds two or more replicas beyond another, one of its
    /// replicas to that node. Each replica moves at most once, and no more moves are planned
    /// than the balance needs. Deterministic; empty when balanced.
    pub fn plan(&self) -> Vec<Move> {
        let mut planned = self.clone();
        let mut moves = Vec::new();
        let draining: Vec<NodeId> = self
            .members
            .iter()
            .filter(|(_, state)| **state == NodeState::Draining)
            .map(|(&node, _)| node)
            .collect();
        for from in draining {
            for partition in self.partitions_of(from).collect::<Vec<_>>() {
                let counts = planned.replica_counts();
                let group = &planned.groups[partition as usize];
                let to = planned
                    .active_nodes()
                    .filter(|node| !group.voters.contains(node))
                    .min_by_key(|node| (counts[node], planned.rotation(*node, partition)))
                    .expect("drain_node keeps at least R active nodes");
                let step = Move {
                    partition,
                    from,
                    to,
                };
                planned.apply_move(step).expect("planned from the group");
                moves.push(step);
            }
        }
        let mut moved: BTreeSet<(u32, NodeId)> =
            moves.iter().map(|m| (m.partition, m.to)).collect();
        loop {
            let counts = planned.replica_counts();
            let active: Vec<(NodeId, usize)> = planned
                .active_nodes()
                .map(|node| (node, counts[&node]))
                .collect();
            let (Some(&(most, most_count)), Some(&(fewest, fewest_count))) = (
                active
                    .iter()
                    .max_by_key(|(node, count)| (*count, u64::MAX - node)),
                active.iter().min_by_key(|(node, count)| (*count, *node)),
            ) else {
                break;
            };
            if most_count < fewest_count + 2 {
                break;
            }
            // A group of the busiest node that the idlest is not in, preferring one the busiest
            // does not lead and one not moved already (a replica moves at most once).
            let Some(partition) = planned
                .partitions_of(most)
                .filter(|&partition| {
                    !planned.groups[partition as usize].voters.contains(&fewest)
                        && !moved.contains(&(partition, most))
                })
                .min_by_key(|&partition| {
                    (planned.groups[partition as usize].leader == most, partition)
                })
            else {
                break;
            };
            let step = Move {
                partition,
                from: most,
                to: fewest,
            };
            planned.apply_move(step).expect("planned from the group");
            moved.insert((partition, fewest));
            moves.push(step);
        }
        moves
    }

    /// Records a finished move: raft has committed a membership in which `to` is a voter of
    /// `partition` and `from` is not. A preferred leader that left is replaced, and leaders
    /// are evened out again; returns the partitions whose preferred leader changed.
    pub fn apply_move(&mut self, step: Move) -> Result<Vec<u32>, PlacementError> {
        let Move {
            partition,
            from,
            to,
        } = step;
        let does_not_fit = PlacementError::MoveDoesNotFit {
            partition,
            from,
            to,
        };
        let group = self
            .groups
            .get(partition as usize)
            .ok_or(PlacementError::NoSuchPartition(partition))?;
        if !group.voters.contains(&from)
            || group.voters.contains(&to)
            || self.members.get(&to) != Some(&NodeState::Active)
        {
            return Err(does_not_fit);
        }
        let before: Vec<NodeId> = self.groups.iter().map(|group| group.leader).collect();
        let group = &mut self.groups[partition as usize];
        group.voters.remove(&from);
        group.voters.insert(to);
        if group.leader == from {
            group.leader = to;
        }
        self.balance_leaders();
        Ok(self
            .groups
            .iter()
            .zip(before)
            .enumerate()
            .filter(|(_, (group, leader))| group.leader != *leader)
            .map(|(partition, _)| partition as u32)
            .collect())
    }

    fn active_nodes(&self) -> impl Iterator<Item = NodeId> + '_ {
        self.members
            .iter()
            .filter(|(_, state)| **state == NodeState::Active)
            .map(|(&node, _)| node)
    }

    /// A node's place in a rotation that starts one member further on for each partition:
    /// the tie-break that spreads equal choices over the members.
    fn rotation(&self, node: NodeId, partition: u32) -> usize {
        let members = self.members.len().max(1);
        let position = self.members.range(..node).count();
        (position + members - partition as usize % members) % members
    }

    /// Moves preferred leaders, within their groups, until no member is the preferred
    /// leader of two or more partitions more than another member it could hand one to
    /// through a chain of groups (augmenting paths: a leader moves from `a` to `b` in a group
    /// of both, from `b` to `c` in another, ...). Draining nodes lead nothing where a group
    /// has an active voter to take over.
    fn balance_leaders(&mut self) {
        for partition in 0..self.groups.len() {
            let group = &self.groups[partition];
            if self.members.get(&group.leader) != Some(&NodeState::Active)
                && let Some(&active) = group
                    .voters
                    .iter()
                    .find(|node| self.members.get(node) == Some(&NodeState::Active))
            {
                self.groups[partition].leader = active;
            }
        }
        // Each round shifts one leadership along a path from a most-loaded node to one with
        // at least two fewer: the sum of squared counts falls, so this ends.
        loop {
            let counts = self.leader_counts();
            let eligible = |node: &NodeId| self.members.get(node) == Some(&NodeState::Active);
            let Some(path) = counts
                .iter()
                .filter(|(node, _)| eligible(node))
                .map(|(&node, &count)| (count, node))
                .collect::<BTreeSet<_>>()
                .into_iter()
                .rev()
                .find_map(|(count, start)| self.leader_path(start, count, &counts))
            else {
                return;
            };
            for (partition, to) in path {
                self.groups[partition as usize].leader = to;
            }
        }
    }

    /// A shortest chain of leadership hand-overs from `start` (leading `count`) to an active
    /// node leading `count - 2` or fewer: (partition, new leader) per hop.
    fn leader_path(
        &self,
        start: NodeId,
        count: usize,
        counts: &BTreeMap<NodeId, usize>,
    ) -> Option<Vec<(u32, NodeId)>> {
        let mut came_from: BTreeMap<NodeId, (u32, NodeId)> = BTreeMap::new();
        let mut queue = VecDeque::from([start]);
        while let Some(node) = queue.pop_front() {
            for (partition, group) in self.groups.iter().enumerate() {
                if group.leader != node {
                    continue;
                }
                for &next in &group.voters {
                    if next == start
                        || came_from.contains_key(&next)
                        || self.members.get(&next) != Some(&NodeState::Active)
                    {
                        continue;
                    }
                    came_from.insert(next, (partition as u32, node));
                    if counts[&next] + 2 <= count {
                        let mut path = Vec::new();
                        let mut at = next;
                        while at != start {
                            let (partition, previous) = came_from[&at];
                            path.push((partition, at));
                            at = previous;
                        }
                        return Some(path);
                    }
                    queue.push_back(next);
                }
            }
        }
        None
    }
}
