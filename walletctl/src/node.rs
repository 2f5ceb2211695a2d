//! `walletctl node drain`: moves every replica off a write node, one partition at a time,
//! each to the node placement picks (`placement::Placement::plan`: the node holding fewest
//! replicas that is not in the group yet). A replica that leaves takes its leadership with it
//! (the move hands leadership away first). `walletctl cluster rebalance`: the moves that
//! even out the replicas over every write node (after a drain, or once an emptied node is
//! back).
//!
//! The plan is made from the memberships the cluster shows, again after each round of moves,
//! and every move is a sequence of raft membership changes committed in its partition's log
//! (`partition::move_replica`): an interrupted drain, run again, goes on from where the groups
//! are. The drained node need not be running: a group moves with the quorum of its other
//! voters. This is how a node whose data directory was lost is emptied before it rejoins as a
//! new one (its peers refuse it until then: `NODE_DATA_LOST`).

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use anyhow::{Context, bail};
use placement::{Move, Placement};
use proto::v1::PartitionStatus;

use crate::partition::{Reach, move_replica};

/// How long one status call may take.
const STATUS_TIMEOUT: Duration = Duration::from_secs(10);
/// The pause before reading the memberships again while a group is between two of them.
const SETTLE_PAUSE: Duration = Duration::from_millis(500);

/// What the cluster shows of its partitions' groups.
struct View {
    nodes: BTreeSet<u64>,
    /// Per partition, in order: its voters (both configurations while joint) and learners.
    groups: Vec<(BTreeSet<u64>, BTreeSet<u64>)>,
}

impl View {
    /// The replica count: what a group has when no move is under way (a move adds a
    /// learner, then a voter, and removes one).
    fn replicas(&self) -> usize {
        self.groups
            .iter()
            .map(|(voters, _)| voters.len())
            .min()
            .unwrap_or(0)
    }

    /// The partitions whose group names `node`, as a voter or a learner.
    fn holding(&self, node: u64) -> Vec<u32> {
        (0..self.groups.len() as u32)
            .filter(|&partition| {
                let (voters, learners) = &self.groups[partition as usize];
                voters.contains(&node) || learners.contains(&node)
            })
            .collect()
    }

    /// The first group between two memberships (a learner, or more voters than the others).
    fn unsettled(&self) -> Option<u32> {
        let replicas = self.replicas();
        (0..self.groups.len() as u32).find(|&partition| {
            let (voters, learners) = &self.groups[partition as usize];
            !learners.is_empty() || voters.len() != replicas
        })
    }
}

/// What a rebalance does.
pub enum Goal {
    /// Move every replica of the node to the others (and nothing else).
    Drain(u64),
    /// Even the replicas out over every node but these, which are emptied first.
    Even { excluded: Vec<u64> },
}

impl Goal {
    /// The nodes that must end up holding nothing.
    fn emptied(&self) -> &[u64] {
        match self {
            Goal::Drain(node) => std::slice::from_ref(node),
            Goal::Even { excluded } => excluded,
        }
    }
}

/// Carries out `goal`, one move at a time, planning again from the groups after each round;
/// returns the moves made, in order. `progress` is told of each as it completes.
pub async fn rebalance(
    reach: &Reach,
    goal: &Goal,
    timeout: Duration,
    mut progress: impl FnMut(&Move),
) -> anyhow::Result<Vec<Move>> {
    let deadline = tokio::time::Instant::now() + timeout;
    let mut done = Vec::new();
    loop {
        let view = view(reach, goal.emptied()).await?;
        for node in goal.emptied() {
            if !view.nodes.contains(node) {
                bail!(
                    "node {node} is not a write node of this cluster (nodes {:?})",
                    view.nodes
                );
            }
        }
        if let Goal::Drain(node) = goal
            && view.holding(*node).is_empty()
        {
            return Ok(done);
        }
        if let Some(partition) = view.unsettled() {
            if tokio::time::Instant::now() >= deadline {
                let (voters, learners) = &view.groups[partition as usize];
                bail!(
                    "partition {partition} is between two memberships (voters {voters:?}, \
                     learners {learners:?}): finish its move (`walletctl partition move`), \
                     then drain again"
                );
            }
            tokio::time::sleep(SETTLE_PAUSE).await;
            continue;
        }
        let voters: Vec<BTreeSet<u64>> = view.groups.iter().map(|(v, _)| v.clone()).collect();
        let mut placement = Placement::observed(&view.nodes, view.replicas(), &voters)?;
        for &node in goal.emptied() {
            placement
                .drain_node(node)
                .with_context(|| format!("emptying node {node}"))?;
        }
        let plan: Vec<Move> = placement
            .plan()
            .into_iter()
            .filter(|step| match goal {
                Goal::Drain(node) => step.from == *node,
                Goal::Even { .. } => true,
            })
            .collect();
        if plan.is_empty() {
            return Ok(done);
        }
        for step in plan {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            move_replica(reach, step.partition, step.from, step.to, left)
                .await
                .with_context(|| {
                    format!(
                        "moving partition {}'s replica from node {} to node {}",
                        step.partition, step.from, step.to
                    )
                })?;
            progress(&step);
            done.push(step);
        }
    }
}

/// The groups as the nodes other than `emptied` show them: per partition, the report of its
/// leader where one answered, else of a replica, else of any node (which learnt it from the
/// replicas). The emptied nodes' own views are left out: one may be a node that lost its
/// data.
async fn view(reach: &Reach, emptied: &[u64]) -> anyhow::Result<View> {
    let mut nodes = BTreeSet::new();
    let mut best: BTreeMap<u32, (u8, PartitionStatus)> = BTreeMap::new();
    let mut answered = 0;
    let mut last_error = anyhow::anyhow!("no endpoint given");
    for endpoint in &reach.endpoints {
        let status = match reach.status(endpoint, STATUS_TIMEOUT).await {
            Ok(status) => status,
            Err(error) => {
                last_error = error;
                continue;
            }
        };
        nodes.extend(status.nodes.iter().map(|known| known.node_id));
        if emptied.contains(&status.node_id) {
            continue;
        }
        answered += 1;
        for partition in status.partitions {
            let rank = match partition.role.as_str() {
                "leader" => 2,
                "none" => 0,
                _ => 1,
            };
            if best
                .get(&partition.partition)
                .is_none_or(|(known, _)| rank > *known)
            {
                best.insert(partition.partition, (rank, partition));
            }
        }
    }
    if answered == 0 {
        return Err(last_error.context("no node other than the ones emptied answered"));
    }
    let groups = best
        .into_values()
        .map(|(_, partition)| {
            (
                partition.replica_ids.into_iter().collect(),
                partition.learner_ids.into_iter().collect(),
            )
        })
        .collect();
    Ok(View { nodes, groups })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn group(voters: &[u64], learners: &[u64]) -> (BTreeSet<u64>, BTreeSet<u64>) {
        (
            voters.iter().copied().collect(),
            learners.iter().copied().collect(),
        )
    }

    #[test]
    fn a_view_names_the_partitions_a_node_holds_and_the_groups_under_way() {
        let view = View {
            nodes: (1..=4).collect(),
            groups: vec![
                group(&[1, 2, 3], &[]),
                group(&[2, 3, 4], &[1]),
                group(&[1, 2, 3, 4], &[]),
                group(&[2, 3, 4], &[]),
            ],
        };
        assert_eq!(view.replicas(), 3);
        assert_eq!(view.holding(1), [0, 1, 2]);
        assert_eq!(view.holding(4), [1, 2, 3]);
        assert_eq!(view.unsettled(), Some(1));
        let settled = View {
            nodes: (1..=4).collect(),
            groups: vec![group(&[1, 2, 3], &[]), group(&[2, 3, 4], &[])],
        };
        assert_eq!(settled.unsettled(), None);
    }
}
