//! The audit interface: everything `walletctl replay` and `walletctl verify` need from a write
//! node's code, and nothing more. A data directory is opened read-only
//! ([`open_read_only`]); each partition is rebuilt from genesis or a stored snapshot with the
//! same `replay::fold` (hash chain checked, the same `ledger::evolve`) a node starts with
//! ([`AuditedNode::replay`]), or checked end to end ([`AuditedNode::verify`]). A live node's
//! event stream is folded block by block with [`apply_streamed`].
//!
//! Storage, snapshots, the codec and the event log stay internal to the node: callers see
//! only the items below.

use std::path::Path;
use std::sync::Arc;

use anyhow::{Context, bail};

use crate::codec::{self, EventBlock};
pub use crate::replay::{Folded, ReplayError, State, Until};
use crate::snapshot::SnapshotMeta;
use crate::storage::Db;

/// A write node's data directory, opened read-only.
pub struct AuditedNode {
    db: Arc<Db>,
    partitions: u32,
}

/// Opens a write node's data directory read-only (a running node may keep writing it).
pub fn open_read_only(data_dir: &Path) -> anyhow::Result<AuditedNode> {
    let (db, partitions) = Db::open_read_only(data_dir)?;
    Ok(AuditedNode { db, partitions })
}

/// Where a replay starts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Start {
    Genesis,
    /// The newest stored snapshot at or below the target.
    Snapshot,
    /// The stored snapshot at exactly this index.
    SnapshotAt(u64),
}

/// A partition that passed [`AuditedNode::verify`].
#[derive(Clone, Debug)]
pub struct Verified {
    /// The state at the end of the stored log.
    pub state: State,
    /// Blocks folded from genesis.
    pub blocks: u64,
    /// Every stored snapshot checked, with the state digest at its index.
    pub snapshots: Vec<(u64, [u8; 32])>,
}

/// Where and why a partition failed [`AuditedNode::verify`] or [`apply_streamed`].
#[derive(Clone, Debug)]
pub struct Broken {
    /// The first index found wrong.
    pub index: u64,
    pub problem: String,
    /// The last index folded before the problem.
    pub state_index: u64,
}

impl AuditedNode {
    /// The partition count the data was created with.
    pub fn partitions(&self) -> u32 {
        self.partitions
    }

    /// The last index applied to `partition`'s stored state.
    pub fn applied_index(&self, partition: u32) -> anyhow::Result<u64> {
        self.db.stored_applied_index(partition)
    }

    /// The starting state for a replay of `partition` up to `target`, and the index of the
    /// snapshot it was loaded from (`None`: genesis).
    pub fn start(
        &self,
        partition: u32,
        start: Start,
        target: u64,
    ) -> anyhow::Result<(State, Option<u64>)> {
        let metas = self.db.snapshot_metas(partition)?;
        let meta: Option<&SnapshotMeta> = match start {
            Start::Genesis => None,
            Start::Snapshot => metas.iter().rev().find(|meta| meta.index <= target),
            Start::SnapshotAt(index) => Some(
                metas
                    .iter()
                    .find(|meta| meta.index == index)
                    .with_context(|| {
                        format!(
                            "partition {partition} has no snapshot at {index}; stored: {:?}",
                            metas.iter().map(|meta| meta.index).collect::<Vec<_>>()
                        )
                    })?,
            ),
        };
        match meta {
            Some(meta) if meta.index > target => bail!(
                "partition {partition}: snapshot {} is beyond the replay target {target}",
                meta.index
            ),
            Some(meta) => Ok((State::from_snapshot(&self.db, meta)?, Some(meta.index))),
            None => Ok((State::genesis(), None)),
        }
    }

    /// Folds `partition`'s stored blocks after `state.index` onto `state` until `until`,
    /// checking every chain link; `each` sees every block after it is applied.
    pub fn replay(
        &self,
        partition: u32,
        state: &mut State,
        until: Until,
        each: impl FnMut(Folded, &State),
    ) -> Result<(), ReplayError> {
        crate::replay::fold(&self.db, partition, state, until, each)
    }

    /// Checks `partition` from genesis: every chain link, conservation after every block, and
    /// every stored snapshot against the state replayed to its index. `each` sees every block
    /// (for progress). `Err` only when the data cannot be read at all.
    pub fn verify(
        &self,
        partition: u32,
        mut each: impl FnMut(Folded, &State),
    ) -> anyhow::Result<Result<Verified, Broken>> {
        let metas = self.db.snapshot_metas(partition)?;
        let mut state = State::genesis();
        let mut blocks = 0u64;
        let mut imbalance: Option<(u64, String)> = None;
        let mut snapshots = Vec::new();
        let broken = |index: u64, problem: String, state: &State| Broken {
            index,
            problem,
            state_index: state.index,
        };
        // Fold up to each snapshot in turn, compare, then on to the end of the stored log.
        let stops = metas.iter().map(|meta| meta.index).chain([u64::MAX]);
        for stop in stops {
            let folded = self.replay(partition, &mut state, Until::Index(stop), |block, state| {
                blocks += 1;
                if imbalance.is_none()
                    && let Some(problem) = conservation_problem(state)
                {
                    imbalance = Some((block.index, problem));
                }
                each(block, state);
            });
            if let Err(error) = folded {
                let index = error.index().unwrap_or(state.index + 1);
                return Ok(Err(broken(index, error.to_string(), &state)));
            }
            if let Some((index, problem)) = imbalance.take() {
                return Ok(Err(broken(index, problem, &state)));
            }
            let Some(meta) = metas.iter().find(|meta| meta.index == stop) else {
                continue;
            };
            let problem = match State::from_snapshot(&self.db, meta) {
                Err(error) => Some(format!("snapshot {} does not load: {error:#}", meta.index)),
                Ok(loaded) if loaded.ledger != state.ledger => Some(format!(
                    "snapshot {} differs from the state replayed to its index",
                    meta.index
                )),
                Ok(loaded) if loaded.chain_head != state.chain_head => Some(format!(
                    "snapshot {} names another chain head than the log",
                    meta.index
                )),
                Ok(_) => None,
            };
            if let Some(problem) = problem {
                return Ok(Err(broken(meta.index, problem, &state)));
            }
            snapshots.push((meta.index, state.digest()));
        }
        Ok(Ok(Verified {
            state,
            blocks,
            snapshots,
        }))
    }
}

/// Why `state` breaks conservation (a currency's balances and outflow do not sum to zero),
/// if it does.
pub fn conservation_problem(state: &State) -> Option<String> {
    state.ledger.imbalance().map(|(currency, sum)| {
        format!("{currency} balances and outflow sum to {sum} minor units, not 0")
    })
}

/// Folds one block of a live node's event stream (`EventLogService/Subscribe`) onto `state`,
/// like `replay` folds a stored one: the events are converted back and re-encoded, and must
/// give the chain hash the node sent (so a stream that disagrees with its own events is
/// caught), then applied with the same `ledger::evolve`.
pub fn apply_streamed(
    state: &mut State,
    block: &proto::v1::SubscribeResponse,
) -> Result<Folded, Broken> {
    apply_streamed_stored(state, block).map(|(folded, _)| folded)
}

/// [`apply_streamed`], also returning the block in the form a write node stores it (the
/// `events` column family's value: version, chain hash, encoded block), which a backup keeps.
pub fn apply_streamed_stored(
    state: &mut State,
    block: &proto::v1::SubscribeResponse,
) -> Result<(Folded, Vec<u8>), Broken> {
    let broken = |problem: String, state: &State| Broken {
        index: block.index,
        problem,
        state_index: state.index,
    };
    let meta = ledger::EntryMeta {
        index: block.index,
        timestamp_ms: block.timestamp_ms,
    };
    let mut events = Vec::with_capacity(block.events.len());
    for event in &block.events {
        match event_codec::pb::event_from_pb(meta, event) {
            Ok(event) => events.push(event),
            Err(error) => return Err(broken(format!("{error:#}"), state)),
        }
    }
    let decoded = EventBlock { meta, events };
    let (stored, chain) = codec::encode_events(&state.chain_head, &decoded);
    if chain[..] != block.chain_hash[..] {
        return Err(broken(
            "the block's chain hash does not follow from the previous block and its events".into(),
            state,
        ));
    }
    let folded = Folded {
        index: block.index,
        timestamp_ms: block.timestamp_ms,
        events: decoded.events.len(),
    };
    for event in decoded.events {
        ledger::evolve_owned(&mut state.ledger, event);
    }
    state.chain_head = chain;
    state.index = block.index;
    Ok((folded, stored))
}
