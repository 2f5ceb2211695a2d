//! The projection: RocksDB rows fronted by a moka cache, the fold thread that is their only
//! writer, and what it publishes after each block (applied positions, live updates).
//!
//! One thread folds every partition's blocks, so the projections have a single writer and the
//! cache can never be overwritten with an older row by a concurrent writer.
//!
//! A block the fold cannot apply does not stop the read node. Everything the write side
//! accepted must fold, so such a block means a bug here or a write node newer than this read
//! node; retrying it gives the same answer, and skipping it would silently lose money moves
//! (and break exactly-once for everything after it). So the fold stops *that partition* at the
//! block: nothing of it is written, the partition's checkpoint stays just before it, the
//! partition's queued and later blocks are dropped and its subscription ends; every other
//! partition is folded and served as usual (partitions fold independently: see `fold.rs`).
//! The stop is reported (`Faults`: error log naming partition and index,
//! `wallet_read_fold_errors_total` and `wallet_read_partition_stuck`, health `partition-<p>`
//! NOT_SERVING); reads waiting for a position beyond it in that partition fail fast with
//! UNAVAILABLE / PARTITION_STUCK. A restart tries the block again (a fixed read node goes on
//! from there). Only a RocksDB failure stops the whole node.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use anyhow::Context;
use moka::ops::compute::Op;
use proto::v1 as pb;
use proto::v1::LedgerEvent;
use rocksdb::WriteBatch;
use tokio::sync::{broadcast, mpsc, watch};
use tokio_util::sync::CancellationToken;

use crate::convert;
use crate::db::{BalanceRow, ChainHash, Checkpoint, HistoryRow, ProjectionDb, TransferRow};
use crate::faults::Faults;
use crate::fold::{self, BlockPosition, Rows, TransferKey};
use crate::limits;

/// One block of a partition's event log, as received from a write node (its chain link
/// already checked by ingest).
#[derive(Clone, Debug)]
pub struct Block {
    pub partition: u32,
    pub index: u64,
    pub timestamp_ms: u64,
    /// Empty for a progress marker: entries up to `index` produced no events.
    pub events: Vec<LedgerEvent>,
    /// The block's chain hash; None for a progress marker (not part of the chain).
    pub chain: Option<ChainHash>,
}

/// A live update for watchers, shared by all of them.
#[derive(Clone, Debug)]
pub enum Update {
    Balance(Arc<pb::BalanceUpdate>),
    /// A transfer row at its new version (watchers of its id convert it).
    Transfer(Arc<TransferRow>),
}

/// The projections and their live feeds.
pub struct Projection {
    db: ProjectionDb,
    cache: moka::sync::Cache<String, Arc<BalanceRow>>,
    partitions: u32,
    positions: watch::Sender<Vec<u64>>,
    /// The chain hash half of each partition's checkpoint (the index half is `positions`).
    /// Only the fold thread takes it.
    chains: std::sync::Mutex<Vec<ChainHash>>,
    updates: broadcast::Sender<Update>,
    faults: Faults,
}

impl Projection {
    pub fn open(path: &std::path::Path, partitions: u32) -> anyhow::Result<Projection> {
        let db = ProjectionDb::open(path, partitions)?;
        let checkpoints = db.checkpoints(partitions)?;
        Ok(Projection {
            db,
            cache: moka::sync::Cache::new(limits::BALANCE_CACHE_ENTRIES),
            partitions,
            positions: watch::Sender::new(checkpoints.iter().map(|c| c.index).collect()),
            chains: std::sync::Mutex::new(checkpoints.iter().map(|c| c.chain).collect()),
            updates: broadcast::Sender::new(limits::UPDATES_BROADCAST_CAPACITY),
            faults: Faults::new(partitions),
        })
    }

    pub fn partitions(&self) -> u32 {
        self.partitions
    }

    /// Partitions this node cannot follow (see `faults.rs`).
    pub fn faults(&self) -> &Faults {
        &self.faults
    }

    /// Each partition's checkpoint: where ingest resumes, and the chain it continues.
    pub fn checkpoints(&self) -> Vec<Checkpoint> {
        let chains = self.chains.lock().expect("chains lock");
        self.positions
            .borrow()
            .iter()
            .zip(chains.iter())
            .map(|(&index, &chain)| Checkpoint { index, chain })
            .collect()
    }

    /// The transfer a read of `transaction_id` shows: `fold::preferred_transfer` of the rows
    /// of every source partition that holds one.
    pub fn transfer_by_id(&self, transaction_id: &str) -> anyhow::Result<Option<TransferRow>> {
        Ok(fold::preferred_transfer(self.db.transfers(transaction_id)?))
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

    /// Inserts unless the cache already holds the same or a newer row (by the log index that
    /// last changed it): a reader that read RocksDB just before the fold wrote must not put
    /// its older row over the fold's.
    fn cache_put(&self, row: Arc<BalanceRow>) {
        self.cache
            .entry(row.account_id.clone())
            .and_compute_with(|existing| match existing {
                Some(entry) if entry.value().touched_index >= row.touched_index => Op::Nop,
                _ => Op::Put(row),
            });
    }

    /// Folds `block` on top of what `pending` already holds (earlier blocks of the same
    /// write), adding its rows, changes and checkpoint to `pending`; nothing is written. An
    /// error is the fold's refusal of the block (that partition stops there, the others go
    /// on); `pending` is then left as it was.
    fn fold_into(&self, pending: &mut Pending, block: Block) -> anyhow::Result<()> {
        let slot = block.partition as usize;
        let checkpoint = match pending.checkpoints.get(&block.partition) {
            Some(checkpoint) => *checkpoint,
            None => {
                let index =
                    *self.positions.borrow().get(slot).with_context(|| {
                        format!("block of unknown partition {}", block.partition)
                    })?;
                let chain = self.chains.lock().expect("chains lock")[slot];
                Checkpoint { index, chain }
            }
        };
        // Exactly once: the subscriptions resume after the checkpoint, so a block at or below
        // it would be applied twice. That is a bug, not a condition to survive.
        assert!(
            block.index > checkpoint.index,
            "partition {} block {} is at or below the checkpoint {}",
            block.partition,
            block.index,
            checkpoint.index
        );
        let at = BlockPosition {
            partition: block.partition,
            index: block.index,
            timestamp_ms: block.timestamp_ms,
        };
        let rows = Overlay {
            projection: self,
            pending,
        };
        let out = fold::fold_block(&rows, at, self.partitions, &block.events)?;
        for row in out.transfers.values() {
            // What the write needs of an id (a UUID): a block with another is refused here.
            crate::db::transfer_key(&row.transaction_id, row.source_partition)?;
        }
        pending.checkpoints.insert(
            block.partition,
            Checkpoint {
                index: block.index,
                chain: block.chain.unwrap_or(checkpoint.chain),
            },
        );
        pending.balances.extend(out.balances);
        pending.transfers.extend(out.transfers);
        pending.changes.extend(out.changes);
        pending.transfer_changes.extend(out.transfer_changes);
        pending.account_annotations.extend(out.account_annotations);
        Ok(())
    }

    /// Writes what `pending` holds in one batch (rows and each partition's checkpoint), then
    /// updates the cache, the position watch and the live updates, in that order (a watcher
    /// woken by an update, or a reader woken by the position, finds the rows already
    /// readable).
    fn commit(&self, pending: Pending) -> anyhow::Result<()> {
        if pending.checkpoints.is_empty() {
            return Ok(());
        }
        let mut batch = WriteBatch::default();
        for row in pending.balances.values() {
            self.db.put_balance(&mut batch, row);
        }
        for (account_id, annotations) in &pending.account_annotations {
            self.db
                .put_account_annotations(&mut batch, account_id, annotations);
        }
        for (row, change) in &pending.changes {
            self.db.put_history(&mut batch, &row.account_id, change);
        }
        for row in pending.transfers.values() {
            self.db
                .put_transfer(&mut batch, row)
                .context("fold_into checked the id")?;
        }
        for (partition, checkpoint) in &pending.checkpoints {
            self.db.put_checkpoint(&mut batch, *partition, checkpoint);
        }
        let mut chains = self.chains.lock().expect("chains lock");
        self.db.write(batch)?;
        for (partition, checkpoint) in &pending.checkpoints {
            chains[*partition as usize] = checkpoint.chain;
        }
        drop(chains);
        for row in pending.balances.into_values() {
            self.cache_put(Arc::new(row));
        }
        self.positions.send_modify(|positions| {
            for (partition, checkpoint) in &pending.checkpoints {
                positions[*partition as usize] = checkpoint.index;
            }
        });
        // Push updates are built only while someone watches. A watcher subscribes before it
        // reads the projection, and these blocks are already in the projection: one that
        // subscribes after this check reads their changes instead of receiving them.
        if self.updates.receiver_count() == 0 {
            return Ok(());
        }
        for (row, change) in &pending.changes {
            // A watcher may have left meanwhile: no receivers is fine.
            let _ = self
                .updates
                .send(Update::Balance(Arc::new(convert::change(row, change))));
        }
        for row in pending.transfer_changes {
            let _ = self.updates.send(Update::Transfer(Arc::new(row)));
        }
        Ok(())
    }
}

/// What blocks folded for one write hold until it: each account's and transfer's latest row,
/// every change in order, and each partition's latest checkpoint.
#[derive(Default)]
struct Pending {
    balances: HashMap<String, BalanceRow>,
    transfers: HashMap<TransferKey, TransferRow>,
    changes: Vec<(BalanceRow, HistoryRow)>,
    transfer_changes: Vec<TransferRow>,
    account_annotations: Vec<(String, ledger::Annotations)>,
    checkpoints: BTreeMap<u32, Checkpoint>,
}

/// The rows a block folds against: those of earlier blocks of the same write, else the
/// projection's.
struct Overlay<'a> {
    projection: &'a Projection,
    pending: &'a Pending,
}

impl Rows for Overlay<'_> {
    fn balance(&self, account_id: &str) -> anyhow::Result<Option<BalanceRow>> {
        match self.pending.balances.get(account_id) {
            Some(row) => Ok(Some(row.clone())),
            None => Rows::balance(self.projection, account_id),
        }
    }

    fn transfer(
        &self,
        transaction_id: &str,
        source_partition: u32,
    ) -> anyhow::Result<Option<TransferRow>> {
        let key = (transaction_id.to_string(), source_partition);
        match self.pending.transfers.get(&key) {
            Some(row) => Ok(Some(row.clone())),
            None => self.projection.transfer(transaction_id, source_partition),
        }
    }
}

impl Rows for Projection {
    fn balance(&self, account_id: &str) -> anyhow::Result<Option<BalanceRow>> {
        Ok(Projection::balance(self, account_id)?.map(|row| (*row).clone()))
    }

    fn transfer(
        &self,
        transaction_id: &str,
        source_partition: u32,
    ) -> anyhow::Result<Option<TransferRow>> {
        self.db.transfer(transaction_id, source_partition)
    }
}

/// Folds one block as the fold thread does (see [`fold_blocks`]).
pub fn fold_one(projection: &Projection, block: Block) -> anyhow::Result<()> {
    fold_blocks(projection, vec![block])
}

/// Folds blocks, in order, into as few RocksDB writes as it can: one, unless the fold
/// refuses a block. A block of a stopped partition is dropped (it comes after the one the
/// fold refused); a refused block stops its partition (reported in `faults`) after the blocks
/// before it are written; only a storage failure is an error. The projection ends as it
/// would folding the blocks one at a time.
pub fn fold_blocks(projection: &Projection, blocks: Vec<Block>) -> anyhow::Result<()> {
    let mut pending = Pending::default();
    for block in blocks {
        let (partition, index) = (block.partition, block.index);
        if let Some(stuck) = projection.faults.stuck_at(partition) {
            tracing::debug!(
                partition,
                index,
                stuck,
                "dropping a block of a stopped partition"
            );
            continue;
        }
        if let Err(error) = projection.fold_into(&mut pending, block) {
            projection
                .commit(std::mem::take(&mut pending))
                .context("writing the projections")?;
            projection.faults.fold_failed(partition, index, &error);
        }
    }
    projection
        .commit(pending)
        .context("writing the projections")
}

/// Starts the fold thread. It ends when every block sender is gone; when RocksDB fails it
/// cancels `shutdown` and returns the error. A block the fold refuses stops only its
/// partition (see the top of this file).
pub fn start(
    projection: Arc<Projection>,
    mut blocks: mpsc::Receiver<Block>,
    shutdown: CancellationToken,
) -> anyhow::Result<std::thread::JoinHandle<anyhow::Result<()>>> {
    std::thread::Builder::new()
        .name("fold".into())
        .spawn(move || {
            while let Some(block) = blocks.blocking_recv() {
                // What else is queued folds with it, into one write.
                let mut batch = vec![block];
                while batch.len() < limits::FOLD_BATCH_BLOCKS_MAX {
                    match blocks.try_recv() {
                        Ok(block) => batch.push(block),
                        Err(_) => break,
                    }
                }
                if let Err(error) = fold_blocks(&projection, batch) {
                    let error = error.context("stopping the read node");
                    tracing::error!(error = format!("{error:#}"), "projection write failed");
                    shutdown.cancel();
                    return Err(error);
                }
            }
            Ok(())
        })
        .context("starting the fold thread")
}

#[cfg(test)]
mod tests {
    use proto::v1::ledger_event::Event as PbEvent;
    use proto::v1::{AccountOpened, TransferCompleted, TransferSettled};

    use super::*;
    use crate::faults::FaultKind;

    const PARTITIONS: u32 = 2;

    fn account_in(name: &str, partition: u32) -> String {
        (0..)
            .map(|n| format!("{name}-{n}"))
            .find(|account| ledger::partition_of(account, PARTITIONS) == partition)
            .expect("some name hashes to every partition")
    }

    fn event(event: PbEvent) -> LedgerEvent {
        LedgerEvent { event: Some(event) }
    }

    fn opened(account_id: &str) -> LedgerEvent {
        event(PbEvent::AccountOpened(AccountOpened {
            account_id: account_id.into(),
            currency: "USD".into(),
            allow_negative_balance: true,
            ..Default::default()
        }))
    }

    fn completed(tx: u128, from: &str, to: &str) -> LedgerEvent {
        event(PbEvent::TransferCompleted(TransferCompleted {
            transaction_id: uuid::Uuid::from_u128(tx).hyphenated().to_string(),
            from_account: from.into(),
            to_account: to.into(),
            amount: "1.00".into(),
            amount_minor: 100,
            currency: "USD".into(),
            ..Default::default()
        }))
    }

    fn block(partition: u32, index: u64, events: Vec<LedgerEvent>, chain: Option<u8>) -> Block {
        Block {
            partition,
            index,
            timestamp_ms: 1_000 + index,
            events,
            chain: chain.map(|byte| [byte; 32]),
        }
    }

    /// A block the fold refuses (a settle of a transfer never debited) stops its partition
    /// just before it, is reported, and leaves every other partition folding; the checkpoint
    /// (index and chain hash) on disk is the last good block's, so a restart retries it.
    #[test]
    fn a_bad_block_stops_only_its_partition_and_is_reported() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (a0, b0) = (account_in("a", 0), account_in("b", 0));
        let (a1, b1) = (account_in("a", 1), account_in("b", 1));
        let projection = Projection::open(dir.path(), PARTITIONS).expect("open");
        let fold = |block| fold_one(&projection, block).expect("no storage failure");
        fold(block(0, 1, vec![opened(&a0), opened(&b0)], Some(1)));
        fold(block(1, 1, vec![opened(&a1), opened(&b1)], Some(11)));
        // A progress marker moves the position, not the chain.
        fold(block(0, 2, vec![], None));
        let bad = event(PbEvent::TransferSettled(TransferSettled {
            transaction_id: uuid::Uuid::from_u128(99).hyphenated().to_string(),
            credit_index: 4,
        }));
        // The bad block carries a good transfer first: nothing of it may be written.
        fold(block(0, 3, vec![completed(1, &a0, &b0), bad], Some(2)));
        assert_eq!(projection.faults().stuck_at(0), Some(3));
        let fault = projection.faults().get(0).expect("fault");
        assert_eq!(fault.kind, FaultKind::FoldFailed);
        assert!(fault.detail.contains("without a debit"), "{}", fault.detail);
        assert_eq!(
            projection
                .faults()
                .fold_errors()
                .get_or_create(&crate::faults::PartitionLabels { partition: 0 })
                .get(),
            1
        );
        assert_eq!(projection.balance(&a0).unwrap().unwrap().balance_minor, 0);
        // A later, valid block of the stopped partition is not folded either.
        fold(block(0, 4, vec![completed(2, &a0, &b0)], Some(3)));
        assert_eq!(projection.balance(&a0).unwrap().unwrap().sequence, 0);
        // The other partition goes on.
        fold(block(1, 2, vec![completed(3, &a1, &b1)], Some(12)));
        assert_eq!(projection.balance(&b1).unwrap().unwrap().balance_minor, 100);
        assert_eq!(*projection.positions().borrow(), vec![2, 2]);
        assert_eq!(projection.faults().get(1), None);
        let tx3 = uuid::Uuid::from_u128(3).hyphenated().to_string();
        assert_eq!(
            projection
                .transfer_by_id(&tx3)
                .unwrap()
                .map(|row| row.source_partition),
            Some(1)
        );
        drop(projection);

        // On disk: partition 0 before the bad block with its last event block's chain,
        // partition 1 after its last block.
        let reopened = Projection::open(dir.path(), PARTITIONS).expect("reopen");
        assert_eq!(
            reopened.checkpoints(),
            vec![
                Checkpoint {
                    index: 2,
                    chain: [1; 32]
                },
                Checkpoint {
                    index: 2,
                    chain: [12; 32]
                },
            ]
        );
        // A restart retries the block at the checkpoint: one that folds now goes on from there.
        fold_one(
            &reopened,
            block(0, 3, vec![completed(1, &a0, &b0)], Some(2)),
        )
        .unwrap();
        assert_eq!(reopened.faults().get(0), None);
        assert_eq!(reopened.balance(&b0).unwrap().unwrap().balance_minor, 100);
    }

    /// Blocks folded into one write end exactly as folded one write each: every row, every
    /// history entry, the checkpoints, positions and faults, with a refused block in the
    /// middle (what came before it is written, its partition stops, the other goes on).
    #[test]
    fn blocks_folded_together_end_as_blocks_folded_one_at_a_time() {
        let (a0, b0) = (account_in("a", 0), account_in("b", 0));
        let (a1, b1) = (account_in("a", 1), account_in("b", 1));
        let bad = event(PbEvent::TransferSettled(TransferSettled {
            transaction_id: uuid::Uuid::from_u128(99).hyphenated().to_string(),
            credit_index: 4,
        }));
        let blocks = vec![
            block(0, 1, vec![opened(&a0), opened(&b0)], Some(1)),
            block(1, 1, vec![opened(&a1), opened(&b1)], Some(11)),
            block(
                0,
                2,
                vec![completed(1, &a0, &b0), completed(2, &b0, &a0)],
                Some(2),
            ),
            block(1, 2, vec![completed(3, &a1, &b1)], Some(12)),
            block(0, 3, vec![], None),
            block(0, 4, vec![completed(4, &a0, &b0)], Some(3)),
            block(
                1,
                3,
                vec![completed(5, &b1, &a1), completed(6, &a1, &b1)],
                Some(13),
            ),
            block(0, 5, vec![completed(7, &a0, &b0), bad], Some(4)),
            block(0, 6, vec![completed(8, &a0, &b0)], Some(5)),
            block(1, 4, vec![completed(9, &a1, &b1)], Some(14)),
        ];
        let one_dir = tempfile::tempdir().expect("tempdir");
        let one = Projection::open(one_dir.path(), PARTITIONS).expect("open");
        for block in blocks.clone() {
            fold_one(&one, block).expect("no storage failure");
        }
        let together_dir = tempfile::tempdir().expect("tempdir");
        let together = Projection::open(together_dir.path(), PARTITIONS).expect("open");
        // In two writes of several blocks each, the refused block inside the second.
        let (first, second) = blocks.split_at(4);
        fold_blocks(&together, first.to_vec()).expect("no storage failure");
        fold_blocks(&together, second.to_vec()).expect("no storage failure");

        for account in [&a0, &b0, &a1, &b1] {
            let row = |projection: &Projection| projection.db().balance(account).unwrap();
            assert_eq!(row(&one), row(&together), "{account}");
            let history = |projection: &Projection| {
                (0..=8)
                    .map(|sequence| projection.db().history(account, sequence).unwrap())
                    .collect::<Vec<_>>()
            };
            assert_eq!(history(&one), history(&together), "{account}");
        }
        assert_eq!(one.db().balance(&a1).unwrap().unwrap().sequence, 4);
        for tx in 1..=9 {
            let id = uuid::Uuid::from_u128(tx).hyphenated().to_string();
            let rows = |projection: &Projection| projection.db().transfers(&id).unwrap();
            assert_eq!(rows(&one), rows(&together), "transfer {tx}");
        }
        assert_eq!(one.checkpoints(), together.checkpoints());
        assert_eq!(*together.positions().borrow(), vec![4, 4]);
        assert_eq!(together.faults().stuck_at(0), Some(5));
        assert_eq!(one.faults().stuck_at(0), Some(5));
        drop((one, together));
        let reopened = Projection::open(together_dir.path(), PARTITIONS).expect("reopen");
        assert_eq!(
            reopened.checkpoints(),
            vec![
                Checkpoint {
                    index: 4,
                    chain: [3; 32]
                },
                Checkpoint {
                    index: 4,
                    chain: [14; 32]
                },
            ]
        );
    }
}
