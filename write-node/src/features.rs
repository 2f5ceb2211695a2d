//! What each write node can decode, and the calls that wait until the nodes concerned can.
//!
//! A release adds commands (or encodings) a node of the previous release cannot decode; such
//! a command reaching one stops it applying that partition until it is upgraded (README,
//! "Upgrades"). So every node announces its [`FEATURE_LEVEL`] on each raft frame it sends,
//! every receiver remembers what each peer last announced, and a call that needs a newer
//! feature is refused (`FAILED_PRECONDITION` / `CLUSTER_UPGRADING`) while a node it would
//! reach is older:
//!
//! - a node about to forward the call checks the leader it forwards to (a leader of an older
//!   release would drop the fields it does not know, or refuse the method);
//! - the leader about to propose it checks every peer (each replica must apply it).
//!
//! Raft keeps both informed: every leader sends to every follower, and every follower
//! answers its leaders. After a restart, a peer not heard from yet is waited for, briefly
//! (`limits::FEATURE_LEVEL_WAIT`), then counted as the oldest release.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU32, Ordering};

/// The level of this release: what it can decode.
pub const FEATURE_LEVEL: u32 = Feature::ReplicaMoves as u32;

/// A feature a call may need, by the level that brought it. Release 0.1.0 announced nothing
/// (level 0) and had holds and everything before them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Feature {
    /// `ChangeAccount`: freeze, unfreeze, close, overdraft limits.
    AccountLifecycle = 1,
    /// Transfers and holds with a reference or metadata (`ledger::wire`'s annotated layout).
    Annotations = 2,
    /// Accounts opened with a reference or metadata (the opening in the annotated layout,
    /// snapshots of state format 7).
    AccountAnnotations = 3,
    /// Multi-leg transfers (`Command::TransferLegs`, their events and records).
    MultiLeg = 4,
    /// Multi-leg transfers across partitions (`Command::PrepareLegs`, `ResolveLegs`,
    /// `FinishLegs`, their events, `PeerService/LegsStep`, snapshots of state format 8).
    MultiLegAcross = 5,
    /// Membership-change entries in a partition's log (`ClusterService/MoveReplica`): a node
    /// of an earlier release stops on one.
    ReplicaMoves = 6,
}

impl Feature {
    fn level(self) -> u32 {
        self as u32
    }
}

/// Whether the nodes a call reaches can decode what it needs; for several nodes, the worst
/// (the greatest) of theirs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Verdict {
    Allowed,
    /// One of them has not been heard from since this node started (after a restart, until
    /// its first frame arrives).
    Unheard,
    /// One of them announced an older release (worse than unheard: certain).
    Older,
}

/// What a peer that has not sent a frame yet is recorded as.
const UNHEARD: u32 = u32::MAX;

/// The level each peer last announced.
pub struct PeerLevels {
    levels: BTreeMap<u64, AtomicU32>,
}

impl PeerLevels {
    /// Every peer unheard; `node_id` (this node) is left out.
    pub fn new(node_id: u64, peers: impl IntoIterator<Item = u64>) -> PeerLevels {
        PeerLevels {
            levels: peers
                .into_iter()
                .filter(|&peer| peer != node_id)
                .map(|peer| (peer, AtomicU32::new(UNHEARD)))
                .collect(),
        }
    }

    /// What `peer` announced on its latest frame (a restarted peer may announce less).
    pub fn heard(&self, peer: u64, level: u32) {
        if let Some(known) = self.levels.get(&peer) {
            known.store(level.min(UNHEARD - 1), Ordering::Relaxed);
        }
    }

    /// Whether `peer` (or, for `None`, every peer) can decode what `feature` needs.
    pub fn verdict(&self, feature: Feature, peer: Option<u64>) -> Verdict {
        let of = |known: &AtomicU32| match known.load(Ordering::Relaxed) {
            UNHEARD => Verdict::Unheard,
            level if level < feature.level() => Verdict::Older,
            _ => Verdict::Allowed,
        };
        let worst = match peer {
            Some(peer) => self.levels.get(&peer).map(of),
            None => self.levels.values().map(of).max(),
        };
        worst.unwrap_or(Verdict::Allowed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_feature_waits_for_the_nodes_it_reaches() {
        use Verdict::*;
        let levels = PeerLevels::new(1, [1, 2, 3]);
        assert_eq!(levels.verdict(Feature::AccountLifecycle, None), Unheard);
        assert_eq!(levels.verdict(Feature::AccountLifecycle, Some(2)), Unheard);
        levels.heard(2, FEATURE_LEVEL);
        assert_eq!(levels.verdict(Feature::Annotations, Some(2)), Allowed);
        assert_eq!(levels.verdict(Feature::Annotations, None), Unheard);
        // Release 0.1.0 announces nothing: level 0, older than anything gated.
        levels.heard(3, 0);
        assert_eq!(levels.verdict(Feature::AccountLifecycle, None), Older);
        levels.heard(3, Feature::AccountLifecycle as u32);
        assert_eq!(levels.verdict(Feature::AccountLifecycle, None), Allowed);
        assert_eq!(levels.verdict(Feature::Annotations, None), Older);
        assert_eq!(levels.verdict(Feature::Annotations, Some(3)), Older);
        levels.heard(3, Feature::Annotations as u32);
        assert_eq!(levels.verdict(Feature::Annotations, None), Allowed);
        assert_eq!(levels.verdict(Feature::AccountAnnotations, None), Older);
        levels.heard(3, FEATURE_LEVEL);
        assert_eq!(levels.verdict(Feature::AccountAnnotations, None), Allowed);
        // A peer rolled back to an older release is older again.
        levels.heard(2, 0);
        assert_eq!(levels.verdict(Feature::AccountLifecycle, None), Older);
        // This node itself is not a peer (always at its own level); an unknown id is
        // never recorded.
        assert_eq!(levels.verdict(Feature::Annotations, Some(1)), Allowed);
        levels.heard(9, 0);
        assert_eq!(levels.verdict(Feature::Annotations, Some(3)), Allowed);
    }
}
