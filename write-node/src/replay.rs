//! Rebuilding a partition from its stored event log: at start, for `walletctl replay` and for
//! `walletctl verify`. One implementation, the same `ledger::evolve` the apply path runs, so a
//! replayed state is the live state.
//!
//! Every block's hash-chain link is checked before its events are applied: a changed,
//! dropped or reordered block stops the replay with the index and the reason, and a node
//! refuses to start on such data rather than serve a wrong state.

use ledger::Ledger;

use crate::codec::{self, CHAIN_GENESIS, ChainError, ChainHash, StoredBlock};
use crate::snapshot::{self, SnapshotMeta};
use crate::storage::{CF_EVENTS, Db};

/// A partition's state as of `index`: the ledger, and the event chain that produced it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct State {
    pub ledger: Ledger,
    pub chain_head: ChainHash,
    /// The last index folded (the snapshot's index when nothing was folded on top yet).
    pub index: u64,
}

impl State {
    pub fn genesis() -> State {
        State {
            ledger: Ledger::new(),
            chain_head: CHAIN_GENESIS,
            index: 0,
        }
    }

    /// Loads a stored snapshot (checking its digest) as a starting state.
    pub fn from_snapshot(db: &Db, meta: &SnapshotMeta) -> anyhow::Result<State> {
        Ok(State {
            ledger: snapshot::load(db, meta)?,
            chain_head: meta.chain_head,
            index: meta.index,
        })
    }

    /// What replicas compare (`ClusterService` state_digest): ledger and chain together.
    pub fn digest(&self) -> [u8; 32] {
        codec::partition_digest(&self.ledger.digest(), &self.chain_head)
    }
}

/// Why a replay stopped early.
#[derive(Debug, thiserror::Error)]
pub enum ReplayError {
    #[error("partition {partition}, index {index}: {source}")]
    Chain {
        partition: u32,
        index: u64,
        source: ChainError,
    },
    #[error("partition {partition}: reading the event log: {source:#}")]
    Storage {
        partition: u32,
        source: anyhow::Error,
    },
}

impl ReplayError {
    /// The index of the block that failed its check, if one did.
    pub fn index(&self) -> Option<u64> {
        match self {
            ReplayError::Chain { index, .. } => Some(*index),
            ReplayError::Storage { .. } => None,
        }
    }
}

/// Where a replay stops.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Until {
    /// After the last block at or below this index.
    Index(u64),
    /// Before the first block stamped later than this time (ms since the Unix epoch), and at
    /// the latest after `Index`.
    Time { timestamp_ms: u64, index: u64 },
}

impl Until {
    fn index(self) -> u64 {
        match self {
            Until::Index(index) | Until::Time { index, .. } => index,
        }
    }
}

/// What `fold` tells its caller about each block it applied.
#[derive(Clone, Copy, Debug)]
pub struct Folded {
    pub index: u64,
    pub timestamp_ms: u64,
    pub events: usize,
}

/// Folds the stored blocks after `state.index` onto `state` until `until`, checking each
/// link. `each` sees every block after it is applied (for checks and progress).
pub fn fold(
    db: &Db,
    partition: u32,
    state: &mut State,
    until: Until,
    mut each: impl FnMut(Folded, &State),
) -> Result<(), ReplayError> {
    let (from, to) = (state.index + 1, until.index());
    if from > to {
        return Ok(());
    }
    for item in db.scan_indexed(CF_EVENTS, partition, from, to) {
        let (index, bytes) = item.map_err(|source| ReplayError::Storage { partition, source })?;
        let stored = codec::decode_linked(&state.chain_head, index, &bytes).map_err(|source| {
            ReplayError::Chain {
                partition,
                index,
                source,
            }
        })?;
        if let Until::Time { timestamp_ms, .. } = until
            && stored.block.meta.timestamp_ms > timestamp_ms
        {
            return Ok(());
        }
        let StoredBlock { block, chain } = stored;
        let folded = Folded {
            index,
            timestamp_ms: block.meta.timestamp_ms,
            events: block.events.len(),
        };
        for event in block.events {
            ledger::evolve_owned(&mut state.ledger, event);
        }
        state.chain_head = chain;
        state.index = index;
        each(folded, state);
    }
    if matches!(until, Until::Index(_)) {
        state.index = state.index.max(to);
    }
    Ok(())
}
