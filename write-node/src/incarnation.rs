//! Which life of its data directory a write node speaks from.
//!
//! Raft's safety rests on every replica remembering what it acknowledged: the entries it
//! holds and the votes it cast. A node whose data directory was lost, started again under the
//! same id, would vote and acknowledge as a replica that forgot both, and a quorum counting
//! it could lose committed transfers. So:
//!
//! - each data directory draws a random **incarnation** when it is created (`Db::incarnation`),
//!   and every raft frame the node sends carries it, with the incarnation it knows the
//!   receiver by; each stream opens with a frame of no messages, so peers hear a node's
//!   incarnation even while no raft group sends it anything;
//! - a receiver records, synced, the incarnation it first hears from each peer, before it
//!   steps anything that peer sent;
//! - a frame announcing another incarnation is refused (`FAILED_PRECONDITION`,
//!   `NODE_DATA_LOST`) while a partition held by the receiver still counts the sender in its
//!   applied membership. Once none does (the lost node's replicas were moved away:
//!   `walletctl node drain`), the new incarnation is recorded, and the node is a new, empty
//!   one: it gets replicas only through the learner path, as any node a replica moves to;
//! - the other way round, a node refuses frames addressed to another incarnation of it: the
//!   sender's raft state about it (what it acknowledged: raft-rs would even panic on a
//!   heartbeat committing past its empty log) belongs to the directory it lost.
//!
//! A release that announces no incarnation (before this one) has its frames taken as they
//! are: a rolling upgrade records each node's as it arrives.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use prometheus_client::metrics::counter::Counter;

use crate::storage::Db;

/// The length of an incarnation.
pub const INCARNATION_BYTES: usize = 16;

/// Why a peer's frames are refused.
#[derive(Debug)]
pub enum Refusal {
    /// The announced incarnation is not 16 bytes.
    Malformed { node: u64, len: usize },
    /// The peer speaks from another data directory than the one this node knows, and these
    /// partitions held here still count it as a member.
    DataLost { node: u64, partitions: Vec<u32> },
    /// The peer knows this node by another incarnation: this node's data was lost since,
    /// and what the peer holds about it (what it acknowledged) belongs to the lost one.
    Forgotten { node: u64, own_node: u64 },
    /// Recording a peer's incarnation failed.
    Storage(anyhow::Error),
}

impl std::fmt::Display for Refusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Refusal::Malformed { node, len } => write!(
                f,
                "node {node} announced an incarnation of {len} bytes (expected \
                 {INCARNATION_BYTES})"
            ),
            Refusal::DataLost { node, partitions } => write!(
                f,
                "node {node} speaks from another data directory than the one this node \
                 knows (its data was lost or replaced), and partitions {partitions:?} here \
                 still count it as a replica: it would vote having forgotten what it \
                 acknowledged. Move its replicas away (`walletctl node drain {node}`); it is \
                 then taken as a new, empty node"
            ),
            Refusal::Forgotten { node, own_node } => write!(
                f,
                "node {node} knows this node ({own_node}) by another data directory: this \
                 node's was lost or replaced, and what node {node} holds about it belongs to \
                 the lost one. Move this node's replicas away (`walletctl node drain \
                 {own_node}`); node {node} then takes it as a new, empty node"
            ),
            Refusal::Storage(error) => write!(f, "recording a peer's incarnation: {error:#}"),
        }
    }
}

/// This node's incarnation and the one it knows each peer by.
pub struct Incarnations {
    node_id: u64,
    own: [u8; INCARNATION_BYTES],
    known: Mutex<BTreeMap<u64, [u8; INCARNATION_BYTES]>>,
    db: Arc<Db>,
    refused: Counter,
}

impl Incarnations {
    /// Loads this node's incarnation (drawing it with `draw` on a directory without one) and
    /// the ones recorded for `peers`.
    pub fn open(
        node_id: u64,
        db: Arc<Db>,
        peers: impl IntoIterator<Item = u64>,
        draw: impl FnOnce() -> [u8; INCARNATION_BYTES],
        refused: Counter,
    ) -> anyhow::Result<Incarnations> {
        let own = db.incarnation(draw)?;
        let mut known = BTreeMap::new();
        for peer in peers {
            if let Some(incarnation) = db.peer_incarnation(peer)? {
                known.insert(peer, incarnation);
            }
        }
        Ok(Incarnations {
            node_id,
            own,
            known: Mutex::new(known),
            db,
            refused,
        })
    }

    /// What this node announces on its frames.
    pub fn own(&self) -> Vec<u8> {
        self.own.to_vec()
    }

    /// The incarnation `node` is known by here, for the frames sent to it (empty: none
    /// recorded yet).
    pub fn known(&self, node: u64) -> Vec<u8> {
        self.known
            .lock()
            .expect("no panics while held")
            .get(&node)
            .map_or_else(Vec::new, |incarnation| incarnation.to_vec())
    }

    /// Whether frames from `node`, which knows this node by `addressed` (empty: it recorded
    /// none), are meant for this incarnation of it.
    pub fn addressed(&self, node: u64, addressed: &[u8]) -> Result<(), Refusal> {
        if addressed.is_empty() || addressed == self.own {
            return Ok(());
        }
        self.refused.inc();
        Err(Refusal::Forgotten {
            node,
            own_node: self.node_id,
        })
    }

    /// Whether frames from `node` announcing `announced` are taken. `counted_in` lists the
    /// partitions held here whose applied membership names `node`; it is asked only when the
    /// incarnation changed. The first incarnation heard from a peer, and a changed one no
    /// membership here counts, are recorded (synced) before this returns.
    pub fn admit(
        &self,
        node: u64,
        announced: &[u8],
        counted_in: impl FnOnce() -> Vec<u32>,
    ) -> Result<(), Refusal> {
        if announced.is_empty() {
            return Ok(());
        }
        let announced: [u8; INCARNATION_BYTES] = announced.try_into().map_err(|_| {
            self.refused.inc();
            Refusal::Malformed {
                node,
                len: announced.len(),
            }
        })?;
        let mut known = self.known.lock().expect("no panics while held");
        match known.get(&node) {
            Some(recorded) if *recorded == announced => return Ok(()),
            Some(_) => {
                let partitions = counted_in();
                if !partitions.is_empty() {
                    self.refused.inc();
                    return Err(Refusal::DataLost { node, partitions });
                }
                tracing::warn!(
                    node,
                    "a peer speaks from a new data directory; no partition here counts it \
                     any more: taken as a new, empty node"
                );
            }
            None => {}
        }
        // Rare (a peer's first frame, or its return as a new node): a synced write while the
        // lock is held, so that no frame of it is stepped before its incarnation is durable.
        self.db
            .put_peer_incarnation(node, announced)
            .map_err(Refusal::Storage)?;
        known.insert(node, announced);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn open(dir: &std::path::Path, draw: u8) -> (Incarnations, Counter) {
        let db = Db::open(dir, 1, 4).expect("open");
        let refused = Counter::default();
        let incarnations =
            Incarnations::open(1, db, [2, 3], || [draw; INCARNATION_BYTES], refused.clone())
                .expect("incarnations");
        (incarnations, refused)
    }

    #[test]
    fn a_peer_that_lost_its_data_is_refused_while_a_membership_here_counts_it() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (incarnations, refused) = open(dir.path(), 7);
        assert_eq!(incarnations.own(), vec![7; INCARNATION_BYTES]);
        assert_eq!(incarnations.known(2), Vec::<u8>::new());
        let first = [1; INCARNATION_BYTES];
        let second = [2; INCARNATION_BYTES];
        let never = || -> Vec<u32> { panic!("asked although the incarnation is known") };

        // A release that announces none, then the first one heard: taken.
        incarnations.admit(2, &[], never).expect("no incarnation");
        incarnations.admit(2, &first, never).expect("first heard");
        incarnations
            .admit(2, &first, never)
            .expect("the same again");
        assert_eq!(incarnations.known(2), first.to_vec());
        // Another one while partitions 0 and 3 count node 2: refused, and nothing recorded.
        match incarnations.admit(2, &second, || vec![0, 3]) {
            Err(Refusal::DataLost {
                node: 2,
                partitions,
            }) => assert_eq!(partitions, [0, 3]),
            other => panic!("{other:?}"),
        }
        incarnations
            .admit(2, &first, never)
            .expect("still the first");
        assert!(matches!(
            incarnations.admit(3, &[1, 2, 3], never),
            Err(Refusal::Malformed { node: 3, len: 3 })
        ));
        assert_eq!(refused.get(), 2);
        // Frames addressed to this node: by none yet, or by its own; not by another.
        incarnations.addressed(2, &[]).expect("none recorded");
        incarnations
            .addressed(2, &[7; INCARNATION_BYTES])
            .expect("its own");
        assert!(matches!(
            incarnations.addressed(2, &first),
            Err(Refusal::Forgotten {
                node: 2,
                own_node: 1
            })
        ));
        assert_eq!(refused.get(), 3);

        // Records survive a restart, and so does this node's own incarnation (not drawn
        // again).
        drop(incarnations);
        let (incarnations, _) = open(dir.path(), 9);
        assert_eq!(incarnations.own(), vec![7; INCARNATION_BYTES]);
        assert!(matches!(
            incarnations.admit(2, &second, || vec![1]),
            Err(Refusal::DataLost { .. })
        ));
        // Once no membership here counts node 2, its new incarnation is taken and recorded.
        incarnations
            .admit(2, &second, Vec::new)
            .expect("no longer counted");
        incarnations.admit(2, &second, never).expect("recorded");
        drop(incarnations);
        let (incarnations, _) = open(dir.path(), 9);
        incarnations
            .admit(2, &second, never)
            .expect("recorded across a restart");
    }
}
