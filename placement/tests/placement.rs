//! Placement: spread, balance after joins and drains, the moves planned, node ids, and the
//! membership steps of a move under crashes, leader changes and duplicate proposals.

use std::collections::BTreeSet;

use placement::{
    Membership, Move, MoveError, NodeId, NodeState, Placement, PlacementError, Step, abandon_step,
    next_step,
};
use proptest::prelude::*;

fn config() -> ProptestConfig {
    // ProptestConfig::default() reads PROPTEST_CASES; 256 when unset.
    ProptestConfig {
        failure_persistence: None,
        ..ProptestConfig::default()
    }
}

fn nodes(ids: impl IntoIterator<Item = NodeId>) -> BTreeSet<NodeId> {
    ids.into_iter().collect()
}

fn spread(counts: impl IntoIterator<Item = usize>) -> usize {
    let counts: Vec<usize> = counts.into_iter().collect();
    counts.iter().max().unwrap_or(&0) - counts.iter().min().unwrap_or(&0)
}

/// Every group has R distinct voters among the members, its preferred leader among them.
fn check_groups(placement: &Placement) {
    for (partition, group) in placement.groups().iter().enumerate() {
        assert_eq!(
            group.voters.len(),
            placement.replicas(),
            "partition {partition}"
        );
        assert!(
            group.voters.contains(&group.leader),
            "partition {partition}"
        );
        for node in &group.voters {
            assert!(
                placement.members().contains_key(node),
                "partition {partition}"
            );
        }
    }
}

/// Active members hold as many replicas as each other give or take one, and lead as many
/// partitions give or take one; draining members hold nothing.
fn check_balanced(placement: &Placement) {
    check_groups(placement);
    let active: Vec<NodeId> = placement
        .members()
        .iter()
        .filter(|(_, state)| **state == NodeState::Active)
        .map(|(&node, _)| node)
        .collect();
    let replicas = placement.replica_counts();
    let leaders = placement.leader_counts();
    assert!(
        spread(active.iter().map(|node| replicas[node])) <= 1,
        "replicas {replicas:?}"
    );
    assert!(
        spread(active.iter().map(|node| leaders[node])) <= 1,
        "leaders {leaders:?}"
    );
    for (node, state) in placement.members() {
        if *state == NodeState::Draining {
            assert_eq!(replicas[node], 0, "draining node {node}");
        }
    }
}

/// Carries out a plan: each move once, on the group it was planned from.
fn carry_out(placement: &mut Placement) -> Vec<Move> {
    let moves = placement.plan();
    for step in &moves {
        placement.apply_move(*step).expect("a planned move fits");
    }
    moves
}

#[test]
fn six_nodes_three_replicas_hold_half_the_partitions_each() {
    let placement = Placement::new(&nodes(1..=6), 64, 3).unwrap();
    check_balanced(&placement);
    // 64 x 3 replicas over 6 nodes: 32 each, every node half of the partitions.
    for (node, count) in placement.replica_counts() {
        assert_eq!(count, 32, "node {node}");
    }
    // Groups overlap as little as they can: no pair of nodes shares every partition.
    for a in 1..=6 {
        for b in (a + 1)..=6 {
            let shared = placement
                .groups()
                .iter()
                .filter(|group| group.voters.contains(&a) && group.voters.contains(&b))
                .count();
            assert!(shared < 32, "nodes {a} and {b} share {shared} partitions");
        }
    }
    assert!(placement.plan().is_empty(), "a new placement is balanced");
    assert_eq!(placement, Placement::new(&nodes(1..=6), 64, 3).unwrap());
}

#[test]
fn one_node_holds_and_leads_everything() {
    let placement = Placement::new(&nodes([1]), 4, 1).unwrap();
    for group in placement.groups() {
        assert_eq!((group.voters.clone(), group.leader), (nodes([1]), 1));
    }
}

#[test]
fn three_nodes_three_replicas_is_every_node_in_every_group() {
    let placement = Placement::new(&nodes([1, 2, 3]), 8, 3).unwrap();
    for group in placement.groups() {
        assert_eq!(group.voters, nodes([1, 2, 3]));
    }
    check_balanced(&placement);
}

#[test]
fn what_cannot_be_placed_is_refused() {
    let check = |ids: &[NodeId], partitions, replicas, expected: PlacementError| {
        assert_eq!(
            Placement::new(&nodes(ids.iter().copied()), partitions, replicas),
            Err(expected)
        );
    };
    check(&[1, 2, 3], 8, 4, PlacementError::Replicas(4));
    check(
        &[1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11],
        8,
        11,
        PlacementError::Replicas(11),
    );
    check(&[1, 2, 3], 0, 3, PlacementError::Partitions(0));
    check(&[1, 2, 3], 257, 3, PlacementError::Partitions(257));
    check(&[0, 1, 2, 3], 8, 3, PlacementError::NodeIdZero);
    check(
        &[1, 2],
        8,
        3,
        PlacementError::TooFewNodes {
            active: 2,
            replicas: 3,
        },
    );
    check(
        &[1, 2, 3, 4],
        8,
        5,
        PlacementError::TooFewNodes {
            active: 4,
            replicas: 5,
        },
    );
}

#[test]
fn a_seventh_node_takes_its_share_and_nothing_else_moves() {
    let mut placement = Placement::new(&nodes(1..=6), 64, 3).unwrap();
    placement.add_node(7).unwrap();
    let moves = carry_out(&mut placement);
    check_balanced(&placement);
    // 192 replicas over 7 nodes: 27 or 28 each; every move goes to the new node.
    assert!(moves.iter().all(|step| step.to == 7), "{moves:?}");
    assert_eq!(moves.len(), placement.replica_counts()[&7]);
    assert!((27..=28).contains(&moves.len()));
    assert!(placement.plan().is_empty());
}

#[test]
fn a_drained_node_is_emptied_then_removed_and_its_id_never_returns() {
    let mut placement = Placement::new(&nodes(1..=6), 64, 3).unwrap();
    let held = placement.partitions_of(4).count();
    placement.drain_node(4).unwrap();
    placement.drain_node(4).unwrap();
    assert_eq!(
        placement.remove_node(4),
        Err(PlacementError::StillHolds {
            node: 4,
            replicas: held
        })
    );
    let moves = carry_out(&mut placement);
    assert!(moves.iter().all(|step| step.from == 4), "{moves:?}");
    assert_eq!(moves.len(), held, "each of its replicas moves once");
    check_balanced(&placement);
    placement.remove_node(4).unwrap();
    assert_eq!(placement.add_node(4), Err(PlacementError::Retired(4)));
    assert_eq!(placement.drain_node(4), Err(PlacementError::NotMember(4)));
    assert_eq!(placement.add_node(5), Err(PlacementError::AlreadyMember(5)));
    assert_eq!(placement.add_node(0), Err(PlacementError::NodeIdZero));
    check_balanced(&placement);
}

#[test]
fn a_node_whose_disk_was_lost_is_replaced_by_a_new_id() {
    // Node 2's data is gone: node 7 (a new id, empty) joins, node 2 is drained (its
    // replicas taken through the learner path, from the groups' other voters) and removed.
    let mut placement = Placement::new(&nodes(1..=6), 32, 3).unwrap();
    let lost: BTreeSet<u32> = placement.partitions_of(2).collect();
    placement.add_node(7).unwrap();
    placement.drain_node(2).unwrap();
    let moves = carry_out(&mut placement);
    let from_lost: BTreeSet<u32> = moves
        .iter()
        .filter(|step| step.from == 2)
        .map(|step| step.partition)
        .collect();
    assert_eq!(from_lost, lost);
    assert!(
        moves
            .iter()
            .filter(|step| step.from == 2)
            .all(|step| step.to == 7)
    );
    placement.remove_node(2).unwrap();
    check_balanced(&placement);
    assert_eq!(placement.replica_counts()[&7], lost.len());
}

#[test]
fn a_running_clusters_groups_are_drained_from_what_it_shows() {
    // The groups a cluster shows after some moves (not what `new` would place): a drain plans
    // from them, and a group in the middle of a move is refused until it settles.
    let mut groups: Vec<BTreeSet<NodeId>> = Placement::new(&nodes(1..=4), 8, 3)
        .unwrap()
        .groups()
        .iter()
        .map(|group| group.voters.clone())
        .collect();
    groups[0] = nodes([2, 3, 4]);
    groups[1] = nodes([1, 3, 4]);
    let mut placement = Placement::observed(&nodes(1..=4), 3, &groups).unwrap();
    check_groups(&placement);
    let shown: Vec<BTreeSet<NodeId>> = placement
        .groups()
        .iter()
        .map(|group| group.voters.clone())
        .collect();
    assert_eq!(shown, groups);
    let held = placement.partitions_of(3).count();
    placement.drain_node(3).unwrap();
    let moves = carry_out(&mut placement);
    assert_eq!(moves.iter().filter(|step| step.from == 3).count(), held);
    assert_eq!(placement.replica_counts()[&3], 0);
    check_balanced(&placement);

    let mut joint = groups.clone();
    joint[5].insert(9);
    assert_eq!(
        Placement::observed(&nodes(1..=4), 3, &joint),
        Err(PlacementError::Unsettled {
            partition: 5,
            voters: joint[5].clone()
        })
    );
    joint[5] = nodes([1, 2, 9]);
    assert!(matches!(
        Placement::observed(&nodes(1..=4), 3, &joint),
        Err(PlacementError::Unsettled { partition: 5, .. })
    ));
}

#[test]
fn after_moves_the_preferred_leader_is_derived_from_the_voters() {
    let group = placement::Group {
        voters: nodes([1, 2, 3]),
        leader: 2,
    };
    // The placed leader while it votes, wherever the others went.
    assert_eq!(group.preferred_leader(&[1, 2, 3]), Some(2));
    assert_eq!(group.preferred_leader(&[2, 4, 5]), Some(2));
    // Moved away: the node that took a placed replica's place (the lowest of them).
    assert_eq!(group.preferred_leader(&[1, 3, 4]), Some(4));
    assert_eq!(group.preferred_leader(&[3, 6, 4]), Some(4));
    // None when no voter qualifies (never with R voters).
    assert_eq!(group.preferred_leader(&[1, 3]), None);
    assert_eq!(group.preferred_leader(&[]), None);
}

#[test]
fn a_drain_that_would_leave_too_few_nodes_is_refused() {
    let mut placement = Placement::new(&nodes(1..=3), 8, 3).unwrap();
    let before = placement.clone();
    assert_eq!(
        placement.drain_node(1),
        Err(PlacementError::TooFewNodes {
            active: 2,
            replicas: 3
        })
    );
    assert_eq!(placement, before);
    assert_eq!(
        placement.apply_move(Move {
            partition: 0,
            from: 1,
            to: 2
        }),
        Err(PlacementError::MoveDoesNotFit {
            partition: 0,
            from: 1,
            to: 2
        })
    );
    assert_eq!(
        placement.apply_move(Move {
            partition: 9,
            from: 1,
            to: 4
        }),
        Err(PlacementError::NoSuchPartition(9))
    );
    assert_eq!(placement, before);
}

proptest! {
    #![proptest_config(config())]

    /// Any cluster, then any sequence of joins and drains (each followed by its plan, carried
    /// out, and removal of the emptied node): always balanced, each plan's moves as few as
    /// its balance needs (no replica moves twice in a plan), and deterministic.
    #[test]
    fn placement_stays_balanced_through_joins_and_drains(
        node_count in 3usize..10,
        partitions in 1u32..200,
        five in any::<bool>(),
        changes in prop::collection::vec((any::<bool>(), any::<prop::sample::Index>()), 0..8),
    ) {
        let replicas = if five && node_count >= 5 { 5 } else { 3 };
        let mut placement = Placement::new(&nodes(1..=node_count as u64), partitions, replicas).unwrap();
        prop_assert_eq!(
            &placement,
            &Placement::new(&nodes(1..=node_count as u64), partitions, replicas).unwrap()
        );
        check_balanced(&placement);
        let mut next_id = node_count as u64 + 1;
        for (join, pick) in changes {
            if join {
                placement.add_node(next_id).unwrap();
                next_id += 1;
            } else {
                let members: Vec<NodeId> = placement.members().keys().copied().collect();
                let node = *pick.get(&members);
                if placement.drain_node(node).is_err() {
                    continue;
                }
            }
            let plan = placement.plan();
            prop_assert_eq!(&plan, &placement.plan(), "a plan is deterministic");
            let moved: BTreeSet<(u32, NodeId)> = plan.iter().map(|m| (m.partition, m.from)).collect();
            prop_assert_eq!(moved.len(), plan.len(), "a replica moves once per plan");
            let arrived: BTreeSet<(u32, NodeId)> = plan.iter().map(|m| (m.partition, m.to)).collect();
            prop_assert!(moved.is_disjoint(&arrived), "a replica moved in is not moved on");
            carry_out(&mut placement);
            check_balanced(&placement);
            prop_assert!(placement.plan().is_empty());
            let drained: Vec<NodeId> = placement
                .members()
                .iter()
                .filter(|(_, state)| **state == NodeState::Draining)
                .map(|(&node, _)| node)
                .collect();
            for node in drained {
                placement.remove_node(node).unwrap();
            }
        }
    }
}

/// A group as the membership tests simulate it: what raft-rs has applied, who leads, and
/// whether the learner has caught up.
#[derive(Clone, Debug)]
struct Group {
    membership: Membership,
    leader: NodeId,
    caught_up: bool,
}

impl Group {
    /// Applies a committed conf change as raft-rs would: one that does not fit the current
    /// membership is refused and changes nothing.
    fn apply(&mut self, step: Step) {
        let m = &mut self.membership;
        match step {
            Step::AddLearner(node) if !m.voters.contains(&node) && !m.is_joint() => {
                m.learners.insert(node);
            }
            Step::EnterJoint { promote, remove }
                if !m.is_joint() && m.voters.contains(&remove) && !m.voters.contains(&promote) =>
            {
                m.outgoing = m.voters.clone();
                m.voters.remove(&remove);
                m.voters.insert(promote);
                m.learners.remove(&promote);
            }
            Step::LeaveJoint if m.is_joint() => m.outgoing.clear(),
            Step::RemoveLearner(node) if !m.is_joint() => {
                m.learners.remove(&node);
            }
            Step::TransferLeader(node) if m.voters.contains(&node) => self.leader = node,
            _ => {}
        }
    }

    /// What raft guarantees at every moment: R voters (in both configurations while joint),
    /// the two configurations one swap apart, a leader that votes.
    fn check(&self, replicas: usize) {
        let m = &self.membership;
        assert_eq!(m.voters.len(), replicas, "{m:?}");
        if m.is_joint() {
            assert_eq!(m.outgoing.len(), replicas, "{m:?}");
            assert_eq!(m.voters.difference(&m.outgoing).count(), 1, "{m:?}");
        }
        assert!(
            m.voters.contains(&self.leader) || m.outgoing.contains(&self.leader),
            "{self:?}"
        );
        assert!(m.learners.is_disjoint(&m.voters), "{m:?}");
    }
}

/// What happens to a step the driver proposed.
#[derive(Clone, Copy, Debug)]
enum Fate {
    /// Committed and applied.
    Applied,
    /// Lost: the driver crashed, or its leadership ended before the entry committed.
    Lost,
    /// Applied, and proposed again by a second driver, whose copy raft-rs refuses or applies
    /// on top.
    Twice,
}

fn fate() -> impl Strategy<Value = Fate> {
    prop_oneof![
        3 => Just(Fate::Applied),
        1 => Just(Fate::Lost),
        1 => Just(Fate::Twice),
    ]
}

#[test]
fn a_move_goes_learner_catch_up_leadership_joint_leave() {
    let step = Move {
        partition: 0,
        from: 1,
        to: 4,
    };
    let mut group = Group {
        membership: Membership {
            voters: nodes([1, 2, 3]),
            ..Membership::default()
        },
        leader: 1,
        caught_up: false,
    };
    let mut seen = Vec::new();
    loop {
        let next = next_step(&group.membership, group.leader, step, |node| {
            node != 4 || group.caught_up
        })
        .unwrap();
        seen.push(next);
        match next {
            Step::Done => break,
            Step::AwaitCatchUp(_) => group.caught_up = true,
            other => group.apply(other),
        }
        group.check(3);
    }
    assert_eq!(
        seen,
        [
            Step::AddLearner(4),
            Step::AwaitCatchUp(4),
            Step::TransferLeader(2),
            Step::EnterJoint {
                promote: 4,
                remove: 1
            },
            Step::LeaveJoint,
            Step::Done,
        ]
    );
    assert_eq!(group.membership.voters, nodes([2, 3, 4]));
    assert!(group.membership.learners.is_empty());
}

#[test]
fn leadership_goes_to_a_voter_that_has_caught_up() {
    let membership = Membership {
        voters: nodes([1, 2, 3]),
        learners: nodes([4]),
        ..Membership::default()
    };
    let step = Move {
        partition: 0,
        from: 1,
        to: 4,
    };
    // Node 2 is behind (or down): leadership goes to 3.
    let next = next_step(&membership, 1, step, |node| node != 2);
    assert_eq!(next, Ok(Step::TransferLeader(3)));
    // Nobody but the learner is: wait, rather than hand the group to a node behind.
    let next = next_step(&membership, 1, step, |node| node == 4);
    assert_eq!(next, Ok(Step::AwaitCatchUp(2)));
    // Joint, led by the node leaving: to an incoming voter that has caught up.
    let joint = Membership {
        voters: nodes([2, 3, 4]),
        learners: nodes([]),
        outgoing: nodes([1, 2, 3]),
    };
    let next = next_step(&joint, 1, step, |node| node != 2);
    assert_eq!(next, Ok(Step::TransferLeader(3)));
    assert_eq!(next_step(&joint, 4, step, |_| true), Ok(Step::LeaveJoint));
}

#[test]
fn moves_that_do_not_fit_the_group_are_refused() {
    let membership = Membership {
        voters: nodes([1, 2, 3]),
        ..Membership::default()
    };
    let check = |from, to, expected| {
        let step = Move {
            partition: 0,
            from,
            to,
        };
        assert_eq!(next_step(&membership, 2, step, |_| true), Err(expected));
    };
    check(1, 1, MoveError::SameNode);
    check(1, 2, MoveError::BothVoters);
    check(5, 4, MoveError::Stale);
    let added = Membership {
        learners: nodes([4]),
        ..membership.clone()
    };
    let step = Move {
        partition: 0,
        from: 1,
        to: 4,
    };
    assert_eq!(abandon_step(&added, step), Step::RemoveLearner(4));
    assert_eq!(abandon_step(&membership, step), Step::Done);
}

proptest! {
    #![proptest_config(config())]

    /// A move driven through any interleaving of lost and duplicated proposals, leader
    /// changes and a learner that catches up late: raft's invariants hold after every
    /// applied change, the learner is promoted only once caught up, a leader is never in
    /// the change that removes it, and the move ends with `to` in place of `from`.
    #[test]
    fn a_move_survives_crashes_leader_changes_and_duplicate_proposals(
        five in any::<bool>(),
        events in prop::collection::vec((fate(), any::<prop::sample::Index>(), 0u8..4), 1..60),
    ) {
        let replicas = if five { 5 } else { 3 };
        let voters = nodes(1..=replicas as u64);
        let to = replicas as u64 + 1;
        let step = Move { partition: 0, from: 1, to };
        let mut group = Group {
            membership: Membership { voters: voters.clone(), ..Membership::default() },
            leader: 1,
            caught_up: false,
        };
        let mut done = false;
        // The events, then calm: every proposal applies and the learner keeps up.
        let mut events = events.into_iter();
        for _ in 0..200 {
            let (fate, pick, happening) = match events.next() {
                Some((fate, pick, happening)) => (fate, Some(pick), happening),
                None => (Fate::Applied, None, 1),
            };
            match (happening, pick) {
                // Another voter wins an election.
                (0, Some(pick)) => {
                    let candidates: Vec<NodeId> = group
                        .membership
                        .voters
                        .union(&group.membership.outgoing)
                        .copied()
                        .collect();
                    group.leader = *pick.get(&candidates);
                }
                // The learner's log catches up.
                (1, _) => group.caught_up = group.membership.learners.contains(&to),
                _ => {}
            }
            let learner_caught_up = group.caught_up;
            let next = next_step(&group.membership, group.leader, step, |node| {
                node != to || learner_caught_up
            });
            let next = next.expect("a move in progress always has a next step");
            if let Step::EnterJoint { promote, remove } = next {
                prop_assert!(group.caught_up, "promoted before catching up");
                prop_assert_ne!(remove, group.leader, "a leader proposing its own removal");
                prop_assert_eq!((promote, remove), (to, 1));
            }
            match (next, fate) {
                (Step::Done, _) => {
                    done = true;
                    break;
                }
                (Step::AwaitCatchUp(_), _) | (_, Fate::Lost) => {}
                (other, Fate::Applied) => group.apply(other),
                (other, Fate::Twice) => {
                    group.apply(other);
                    group.apply(other);
                }
            }
            group.check(replicas);
        }
        prop_assert!(done, "the move did not finish: {:?}", group);
        let mut expected = voters;
        expected.remove(&1);
        expected.insert(to);
        prop_assert_eq!(&group.membership.voters, &expected);
        prop_assert!(!group.membership.is_joint());
        prop_assert!(group.membership.learners.is_empty());
    }
}
