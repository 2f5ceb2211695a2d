//! The projection: RocksDB rows fronted by a moka cache, the fold thread that is their only
//! writer, and what it publishes after each block (applied positions, live updates).
//!
//! One thread folds every partition's blocks, so rows touched by several partitions (a
//! cross-partition transfer's state) have a single writer and the cache can never be
//! overwritten with an older row by a concurrent writer.

use std::sync::Arc;

use anyhow::Context;
use moka::ops::compute::Op;
use proto::v1 as pb;
use proto::v1::LedgerEvent;
use rocksdb::WriteBatch;
use tokio::sync::{broadcast, mpsc, watch};
use tokio_util::sync::CancellationToken;

use crate::convert;
use crate::db::{BalanceRow, ProjectionDb, TransferRow};
use crate::fold::{self, BlockPosition, Rows};
use crate::limits;

/// One block of a partition's event log, as received from a write node.
#[derive(Clone, Debug)]
pub struct Block {
    pub partition: u32,
    pub index: u64,
    pub timestamp_ms: u64,
    /// Empty for a progress marker: entries up to `index` produced no events.
    pub events: Vec<LedgerEvent>,
}

/// A live update for watchers, shared by all of them.
#[derive(Clone, Debug)]
pub enum Update {
    Balance(Arc<pb::BalanceUpdate>),
    Transfer(Arc<pb::TransferUpdate>),
}

/// The projections and their live feeds.
pub struct Projection {
    db: ProjectionDb,
    cache: moka::sync::Cache<String, Arc<BalanceRow>>,
    partitions: u32,
    positions: watch::Sender<Vec<u64>>,
    updates: broadcast::Sender<Update>,
}

impl Projection {
    pub fn open(path: &std::path::Path, partitions: u32) -> anyhow::Result<Projection> {
        let db = ProjectionDb::open(path, partitions)?;
        let positions = db.positions(partitions)?;
        Ok(Projection {
            db,
            cache: moka::sync::Cache::new(limits::BALANCE_CACHE_ENTRIES),
            partitions,
            positions: watch::Sender::new(positions),
            updates: broadcast::Sender::new(limits::UPDATES_BROADCAST_CAPACITY),
        })
    }

    pub fn partitions(&self) -> u32 {
        self.partitions
    }

    pub fn db(&self) -> &ProjectionDb {
        &self.db
    }

    /// Applied index per partition; everything at or below it is in the projections.
    pub fn positions(&self) -> watch::Receiver<Vec<u64>> {
        self.positions.subscribe()
    }

    /// Live updates from the next block on. Subscribe before reading the current state, and
    /// nothing between the two is missed.
    pub fn subscribe_updates(&self) -> broadcast::Receiver<Update> {
        self.updates.subscribe()
    }

    /// An account's current row: moka first, RocksDB on a miss.
    pub fn balance(&self, account_id: &str) -> anyhow::Result<Option<Arc<BalanceRow>>> {
        if let Some(row) = self.cache.get(account_id) {
            return Ok(Some(row));
        }
        let Some(row) = self.db.balance(account_id)? else {
            return Ok(None);
        };
        let row = Arc::new(row);
        self.cache_put(row.clone());
        Ok(Some(row))
    }

    /// Inserts unless the cache already holds the same or a newer row: a reader that read
    /// RocksDB just before the fold wrote must not put its older row over the fold's.
    fn cache_put(&self, row: Arc<BalanceRow>) {
        self.cache
            .entry(row.account_id.clone())
            .and_compute_with(|existing| match existing {
                Some(entry) if entry.value().sequence >= row.sequence => Op::Nop,
                _ => Op::Put(row),
            });
    }

    /// Folds one block: rows and the partition's position in one batch, then the cache, the
    /// position watch and the live updates, in that order (a watcher woken by an update, or a
    /// reader woken by the position, finds the rows already readable).
    fn apply(&self, block: Block) -> anyhow::Result<()> {
        let slot = block.partition as usize;
        let checkpoint = *self
            .positions
            .borrow()
            .get(slot)
            .with_context(|| format!("block of unknown partition {}", block.partition))?;
        // Exactly once: the subscriptions resume after the checkpoint, so a block at or below
        // it would be applied twice. That is a bug, not a condition to survive.
        assert!(
            block.index > checkpoint,
            "partition {} block {} is at or below the checkpoint {checkpoint}",
            block.partition,
            block.index
        );
        let at = BlockPosition {
            partition: block.partition,
            index: block.index,
            timestamp_ms: block.timestamp_ms,
        };
        let out = fold::fold_block(self, at, &block.events)?;
        let mut batch = WriteBatch::default();
        for row in out.balances.values() {
            self.db.put_balance(&mut batch, row);
        }
        for (row, change) in &out.changes {
            self.db.put_history(&mut batch, &row.account_id, change);
        }
        for row in out.transfers.values() {
            self.db.put_transfer(&mut batch, row)?;
        }
        self.db
            .put_position(&mut batch, block.partition, block.index);
        self.db.write(batch)?;
        for row in out.balances.into_values() {
            self.cache_put(Arc::new(row));
        }
        self.positions
            .send_modify(|positions| positions[slot] = block.index);
        for (row, change) in &out.changes {
            // No receivers is fine: nobody watches.
            let _ = self
                .updates
                .send(Update::Balance(Arc::new(convert::change(row, change))));
        }
        for row in &out.transfer_changes {
            let _ = self
                .updates
                .send(Update::Transfer(Arc::new(convert::transfer_update(row))));
        }
        Ok(())
    }
}

impl Rows for Projection {
    fn balance(&self, account_id: &str) -> anyhow::Result<Option<BalanceRow>> {
        Ok(Projection::balance(self, account_id)?.map(|row| (*row).clone()))
    }

    fn transfer(&self, transaction_id: &str) -> anyhow::Result<Option<TransferRow>> {
        self.db.transfer(transaction_id)
    }
}

/// Starts the fold thread. It ends when every block sender is gone; on an error (the log and
/// the projections disagree, or RocksDB fails) it cancels `shutdown` and returns the error.
pub fn start(
    projection: Arc<Projection>,
    mut blocks: mpsc::Receiver<Block>,
    shutdown: CancellationToken,
) -> anyhow::Result<std::thread::JoinHandle<anyhow::Result<()>>> {
    std::thread::Builder::new()
        .name("fold".into())
        .spawn(move || {
            while let Some(block) = blocks.blocking_recv() {
                let (partition, index) = (block.partition, block.index);
                if let Err(error) = projection.apply(block) {
                    let error = error.context(format!(
                        "folding partition {partition} index {index}; stopping the read node"
                    ));
                    tracing::error!(error = format!("{error:#}"), "fold failed");
                    shutdown.cancel();
                    return Err(error);
                }
            }
            Ok(())
        })
        .context("starting the fold thread")
}
