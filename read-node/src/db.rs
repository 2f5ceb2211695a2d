//! The read node's RocksDB: projection rows and the per-partition checkpoint.
//!
//! | column family | key | value |
//! |---|---|---|
//! | `balances` | account id | [`BalanceRow`] |
//! | `history` | account id, 0x00, sequence u64 BE | [`HistoryRow`] (one per balance change) |
//! | `transfers` | transaction id (16 bytes) | [`TransferRow`] |
//! | `positions` | partition u32 BE | applied index u64 BE: the checkpoint |
//! | `meta` | name | format version, partition count |
//!
//! Account ids never contain control characters (ledger rule), so the 0x00 separator keeps
//! one account's history keys apart from another's. Sequences are dense (1, 2, 3, ...), so
//! history is read with point lookups by sequence, newest first or by binary search.

use std::path::Path;

use anyhow::{Context, ensure};
use rocksdb::{ColumnFamilyDescriptor, DB, Options, WriteBatch, WriteOptions};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

pub const CF_BALANCES: &str = "balances";
pub const CF_HISTORY: &str = "history";
pub const CF_TRANSFERS: &str = "transfers";
pub const CF_POSITIONS: &str = "positions";
pub const CF_META: &str = "meta";

const ROW_FORMAT_V1: u8 = 1;
const META_FORMAT: &[u8] = b"format";
const META_PARTITIONS: &[u8] = b"partitions";
const DB_FORMAT_V1: &[u8] = b"read-node-v1";

/// An account as projected: its balance and where its last change sits in the log.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct BalanceRow {
    pub account_id: String,
    pub currency: String,
    pub allow_negative_balance: bool,
    pub balance_minor: i128,
    /// 0 when opened, +1 per balance change; equals the newest history row's sequence.
    pub sequence: u64,
    pub partition: u32,
    /// Position of the last change (of the opening while `sequence` is 0).
    pub index: u64,
    pub timestamp_ms: u64,
    pub opened_index: u64,
    pub opened_timestamp_ms: u64,
}

/// One balance change of one account.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct HistoryRow {
    pub sequence: u64,
    pub transaction_id: String,
    pub delta_minor: i128,
    pub balance_after_minor: i128,
    pub counterparty: String,
    pub partition: u32,
    pub index: u64,
    pub timestamp_ms: u64,
}

/// The state of a transfer; `Completed` and `Rejected` are final.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum TransferState {
    InFlight,
    Completed,
    Rejected,
}

impl TransferState {
    pub fn is_final(self) -> bool {
        matches!(self, TransferState::Completed | TransferState::Rejected)
    }
}

/// A transfer's latest state.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TransferRow {
    pub transaction_id: String,
    pub from_account: String,
    pub to_account: String,
    pub amount_minor: i64,
    pub currency: String,
    pub state: TransferState,
    pub reject_reason: String,
    /// 1 for the first state, +1 per change.
    pub version: u32,
    pub partition: u32,
    pub index: u64,
    pub timestamp_ms: u64,
}

pub fn encode<T: Serialize>(row: &T) -> Vec<u8> {
    let mut bytes = vec![ROW_FORMAT_V1];
    bytes.extend(postcard::to_stdvec(row).expect("serialising to a Vec cannot fail"));
    bytes
}

pub fn decode<T: DeserializeOwned>(bytes: &[u8]) -> anyhow::Result<T> {
    let (&version, body) = bytes.split_first().context("empty row")?;
    ensure!(version == ROW_FORMAT_V1, "unknown row format {version}");
    postcard::from_bytes(body).context("row is corrupt")
}

pub fn history_key(account_id: &str, sequence: u64) -> Vec<u8> {
    let mut key = Vec::with_capacity(account_id.len() + 9);
    key.extend_from_slice(account_id.as_bytes());
    key.push(0);
    key.extend_from_slice(&sequence.to_be_bytes());
    key
}

pub fn transfer_key(transaction_id: &str) -> anyhow::Result<[u8; 16]> {
    Ok(*uuid::Uuid::try_parse(transaction_id)
        .with_context(|| format!("transaction id {transaction_id:?} is not a UUID"))?
        .as_bytes())
}

/// The projection database.
pub struct ProjectionDb {
    db: DB,
}

impl ProjectionDb {
    /// Opens (or creates) the database. A database made for another partition count is
    /// refused: its checkpoints would name the wrong partitions.
    pub fn open(path: &Path, partitions: u32) -> anyhow::Result<ProjectionDb> {
        let mut options = Options::default();
        options.create_if_missing(true);
        options.create_missing_column_families(true);
        let families = [CF_BALANCES, CF_HISTORY, CF_TRANSFERS, CF_POSITIONS, CF_META]
            .into_iter()
            .map(|name| ColumnFamilyDescriptor::new(name, Options::default()));
        let db = DB::open_cf_descriptors(&options, path, families)
            .with_context(|| format!("opening the read node database in {}", path.display()))?;
        let this = ProjectionDb { db };
        match this.get(CF_META, META_FORMAT)? {
            Some(format) => ensure!(
                format == DB_FORMAT_V1,
                "{} holds data of another format ({:?})",
                path.display(),
                String::from_utf8_lossy(&format)
            ),
            None => this
                .db
                .put_cf(this.cf(CF_META), META_FORMAT, DB_FORMAT_V1)?,
        }
        match this.get(CF_META, META_PARTITIONS)? {
            Some(stored) => {
                let stored = u32::from_be_bytes(
                    stored
                        .as_slice()
                        .try_into()
                        .context("corrupt partition count")?,
                );
                ensure!(
                    stored == partitions,
                    "{} was made for {stored} partitions but the cluster has {partitions}; \
                     use an empty data directory",
                    path.display()
                );
            }
            None => this
                .db
                .put_cf(this.cf(CF_META), META_PARTITIONS, partitions.to_be_bytes())?,
        }
        Ok(this)
    }

    pub fn cf(&self, name: &str) -> &rocksdb::ColumnFamily {
        self.db
            .cf_handle(name)
            .unwrap_or_else(|| panic!("column family {name} is created at open"))
    }

    fn get(&self, cf: &str, key: &[u8]) -> anyhow::Result<Option<Vec<u8>>> {
        Ok(self.db.get_cf(self.cf(cf), key)?)
    }

    /// Unsynced: RocksDB's WAL survives a process crash, and anything lost to a machine crash
    /// is fetched again from the write nodes, because the checkpoint is lost with it (they
    /// share one batch).
    pub fn write(&self, batch: WriteBatch) -> anyhow::Result<()> {
        let mut options = WriteOptions::default();
        options.set_sync(false);
        self.db
            .write_opt(batch, &options)
            .context("writing projections")
    }

    /// The checkpoint: applied index per partition (0 = nothing applied).
    pub fn positions(&self, partitions: u32) -> anyhow::Result<Vec<u64>> {
        (0..partitions)
            .map(|partition| {
                Ok(match self.get(CF_POSITIONS, &partition.to_be_bytes())? {
                    Some(bytes) => u64::from_be_bytes(
                        bytes.as_slice().try_into().context("corrupt checkpoint")?,
                    ),
                    None => 0,
                })
            })
            .collect()
    }

    pub fn put_position(&self, batch: &mut WriteBatch, partition: u32, index: u64) {
        batch.put_cf(
            self.cf(CF_POSITIONS),
            partition.to_be_bytes(),
            index.to_be_bytes(),
        );
    }

    pub fn balance(&self, account_id: &str) -> anyhow::Result<Option<BalanceRow>> {
        self.get(CF_BALANCES, account_id.as_bytes())?
            .map(|bytes| decode(&bytes))
            .transpose()
    }

    pub fn put_balance(&self, batch: &mut WriteBatch, row: &BalanceRow) {
        batch.put_cf(self.cf(CF_BALANCES), row.account_id.as_bytes(), encode(row));
    }

    pub fn history(&self, account_id: &str, sequence: u64) -> anyhow::Result<Option<HistoryRow>> {
        self.get(CF_HISTORY, &history_key(account_id, sequence))?
            .map(|bytes| decode(&bytes))
            .transpose()
    }

    /// History rows with the given sequences, in the given order; every one must exist.
    pub fn history_rows(
        &self,
        account_id: &str,
        sequences: impl IntoIterator<Item = u64>,
    ) -> anyhow::Result<Vec<HistoryRow>> {
        let cf = self.cf(CF_HISTORY);
        let keys: Vec<(u64, Vec<u8>)> = sequences
            .into_iter()
            .map(|sequence| (sequence, history_key(account_id, sequence)))
            .collect();
        let values = self
            .db
            .multi_get_cf(keys.iter().map(|(_, key)| (cf, key.as_slice())));
        keys.iter()
            .zip(values)
            .map(|((sequence, _), value)| {
                let bytes = value?.with_context(|| {
                    format!("history row {sequence} of account {account_id:?} is missing")
                })?;
                decode(&bytes)
            })
            .collect()
    }

    pub fn put_history(&self, batch: &mut WriteBatch, account_id: &str, row: &HistoryRow) {
        batch.put_cf(
            self.cf(CF_HISTORY),
            history_key(account_id, row.sequence),
            encode(row),
        );
    }

    pub fn transfer(&self, transaction_id: &str) -> anyhow::Result<Option<TransferRow>> {
        self.get(CF_TRANSFERS, &transfer_key(transaction_id)?)?
            .map(|bytes| decode(&bytes))
            .transpose()
    }

    pub fn put_transfer(&self, batch: &mut WriteBatch, row: &TransferRow) -> anyhow::Result<()> {
        batch.put_cf(
            self.cf(CF_TRANSFERS),
            transfer_key(&row.transaction_id)?,
            encode(row),
        );
        Ok(())
    }
}
