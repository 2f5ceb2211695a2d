//! Rebuilding a partition from its stored event log: at start, for `walletctl replay` and for
//! `walletctl verify`. One implementation, the same `ledger::evolve` the apply path runs, so a
//! replayed state is the live state.
//!
//! Every block's hash-chain link is checked before its events are applied: a changed,
//! dropped or reordered block stops the replay with the index and the reason, and a node
//! refuses to start on such data rather than serve a wrong state.
//!
//! Also the rebuild of the `records` column family from the event log: after a follower
//! fetched the events a snapshot covers, and when migrating data of format 2.

use std::collections::HashMap;

use anyhow::Context;
use ledger::{Event, Ledger, Record};
use rocksdb::WriteBatch;

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
    each: impl FnMut(Folded, &State),
) -> Result<(), ReplayError> {
    let (from, to) = (state.index + 1, until.index());
    if from > to {
        return Ok(());
    }
    let blocks = db.scan_indexed(CF_EVENTS, partition, from, to);
    fold_blocks(partition, state, until, blocks, each)
}

/// [`fold`] over blocks in their stored form from any source (a data directory's `events`,
/// a backup's partition file): `(index, stored block)` in increasing index order, none at or
/// below `state.index`; blocks beyond `until` end the fold.
pub fn fold_blocks<B: AsRef<[u8]>>(
    partition: u32,
    state: &mut State,
    until: Until,
    blocks: impl Iterator<Item = anyhow::Result<(u64, B)>>,
    mut each: impl FnMut(Folded, &State),
) -> Result<(), ReplayError> {
    // Finished records are on disk (`records`): memory holds accounts and transfers in
    // flight, however long the log.
    state.ledger.keep_only_in_flight();
    let to = until.index();
    for item in blocks {
        let (index, bytes) = item.map_err(|source| ReplayError::Storage { partition, source })?;
        if index > to {
            break;
        }
        if index <= state.index {
            return Err(ReplayError::Chain {
                partition,
                index,
                source: ChainError::Malformed(format!(
                    "block out of order: index {index} after {}",
                    state.index
                )),
            });
        }
        let bytes = bytes.as_ref();
        let stored = codec::decode_linked(&state.chain_head, index, bytes).map_err(|source| {
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

/// Records written per batch while rebuilding.
const REBUILD_BATCH_RECORDS: usize = 16_384;

/// Writes the record of every transfer the events of a partition's blocks in `(after,
/// until]` finish into the `records` column family, and what each account they open was
/// opened with into `accounts` (unsynced: the caller's next synced write
/// makes them durable), checking the chain from the head at `after`. `from` is `(after,
/// chain head at after, the ledger at after)`: a settle finds the in-flight transfer it
/// finishes among the range's debits or in that ledger (live records: in flight, pending
/// holds, are never on disk). Returns the number of records written. Memory: the transfers in flight in the
/// range.
pub fn rebuild_records(
    db: &Db,
    partition: u32,
    from: (u64, ChainHash, &Ledger),
    until: u64,
) -> anyhow::Result<u64> {
    let (after, mut chain, ledger_after) = from;
    let mut in_flight: HashMap<u128, Record> = HashMap::new();
    let mut batch = WriteBatch::default();
    let mut written = 0u64;
    if after >= until {
        return Ok(0);
    }
    for item in db.scan_indexed(CF_EVENTS, partition, after + 1, until) {
        let (index, bytes) = item?;
        let StoredBlock { block, chain: next } = codec::decode_linked(&chain, index, &bytes)
            .with_context(|| format!("partition {partition}, event block {index}"))?;
        chain = next;
        for event in &block.events {
            if let Event::AccountOpened {
                account_id,
                annotations: Some(annotations),
                ..
            } = event
            {
                db.put_account_annotations(&mut batch, partition, account_id, annotations);
            }
            let Some(id) = event.transaction_id() else {
                continue;
            };
            let previous = in_flight.remove(&id.as_u128()).or_else(|| {
                let transfer = ledger_after
                    .transfer(&id)
                    .filter(|record| record.status.is_live())
                    .cloned()
                    .map(Record::Transfer);
                transfer.or_else(|| {
                    ledger_after
                        .legs_record(&id)
                        .filter(|record| record.status.is_live())
                        .cloned()
                        .map(Record::Legs)
                })
            });
            let record = Record::after_event(event, previous.as_ref())
                .map_err(anyhow::Error::msg)
                .with_context(|| format!("partition {partition}, event block {index}"))?
                .context("a transfer event leaves a record")?;
            if record.is_live() {
                in_flight.insert(id.as_u128(), record);
                continue;
            }
            db.put_record(&mut batch, partition, &record);
            written += 1;
            if batch.len() >= REBUILD_BATCH_RECORDS {
                db.write(std::mem::take(&mut batch), false)?;
            }
        }
    }
    db.write(batch, false)?;
    Ok(written)
}
