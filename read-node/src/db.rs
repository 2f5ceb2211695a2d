//! The read node's RocksDB: projection rows and the per-partition checkpoint.
//!
//! | column family | key | value |
//! |---|---|---|
//! | `balances` | account id | [`BalanceRow`] |
//! | `history` | account id, 0x00, sequence u64 BE | [`HistoryRow`] (one per balance change) |
//! | `transfers` | transaction id (16 bytes), source partition u32 BE | [`TransferRow`] |
//! | `positions` | partition u32 BE | applied index u64 BE, chain hash (32 bytes): the checkpoint |
//! | `meta` | name | format version, partition count |
//!
//! Account ids never contain control characters (ledger rule), so the 0x00 separator keeps
//! one account's history keys apart from another's. Sequences are dense (1, 2, 3, ...), so
//! history is read with point lookups by sequence, newest first or by binary search.
//!
//! A transaction id is unique per *source partition* only (the write side deduplicates ids in
//! the partition of `from`): two partitions may each hold a transfer under one id, so a
//! transfer row is keyed by (id, source partition). All rows of one id are adjacent, in
//! source partition order; [`ProjectionDb::transfers`] reads them with one prefix scan.
//!
//! The checkpoint holds, per partition, the last applied index and the chain hash of the last
//! event block folded (progress markers carry none and leave it as it was), written in the
//! same batch as the rows: ingest checks the next block's `chain_hash` against it.
//!
//! Format history (`meta/format`): `read-node-v1` keyed transfers by id alone and kept no
//! chain hash; `read-node-v2` had no held amount in balance rows. Both are refused (the
//! projections are derived data: delete the directory and the node rebuilds them from the
//! write nodes' event logs).

use std::path::Path;

use crate::limits;
use anyhow::{Context, ensure};
use rocksdb::{ColumnFamilyDescriptor, DB, Options, WriteBatch, WriteOptions};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

pub const CF_BALANCES: &str = "balances";
pub const CF_HISTORY: &str = "history";
pub const CF_TRANSFERS: &str = "transfers";
pub const CF_POSITIONS: &str = "positions";
pub const CF_META: &str = "meta";
/// What accounts were opened with (reference and metadata), by account id; only accounts
/// opened with some have an entry. They never change, so reads join them to balance rows
/// instead of every balance row carrying them.
pub const CF_ACCOUNTS: &str = "accounts";

const ROW_FORMAT_V1: u8 = 1;
/// Balance rows with the account's lifecycle settings (status, overdraft limit); transfer
/// rows with the transfer's annotations (reference, metadata).
const ROW_FORMAT_V2: u8 = 2;
/// Transfer rows with the legs of a multi-leg transfer.
const ROW_FORMAT_V3: u8 = 3;
const META_FORMAT: &[u8] = b"format";
const META_PARTITIONS: &[u8] = b"partitions";
const DB_FORMAT_V1: &[u8] = b"read-node-v1";
const DB_FORMAT_V2: &[u8] = b"read-node-v2";
const DB_FORMAT_V3: &[u8] = b"read-node-v3";
/// The format this read node reads and writes (`meta/format`), as projection snapshots name it.
pub const DB_FORMAT: &str = "read-node-v3";
const _: () = assert!(DB_FORMAT.len() == DB_FORMAT_V3.len());

/// A chain hash of the write nodes' event log (`event_codec::codec::ChainHash`).
pub type ChainHash = [u8; 32];
/// The chain value before a partition's first block (`event_codec::codec::CHAIN_GENESIS`).
pub const CHAIN_GENESIS: ChainHash = [0; 32];

/// Where the fold stands in one partition: everything up to `index` is in the rows, and
/// `chain` is the chain hash of the last event block at or below it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Checkpoint {
    pub index: u64,
    pub chain: ChainHash,
}

impl Checkpoint {
    pub const GENESIS: Checkpoint = Checkpoint {
        index: 0,
        chain: CHAIN_GENESIS,
    };
}

/// An account as projected: its balance and where its last change sits in the log.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct BalanceRow {
    pub account_id: String,
    pub currency: String,
    pub allow_negative_balance: bool,
    pub balance_minor: i128,
    /// What the account's pending holds reserve (the available amount is the balance minus
    /// this). A hold changes it without a balance change: no sequence, no history row.
    pub held_minor: i128,
    /// Log index of the last block that changed the row (balance or held): orders two
    /// versions of a row (the sequence alone does not see a hold).
    pub touched_index: u64,
    /// 0 when opened, +1 per balance change; equals the newest history row's sequence.
    pub sequence: u64,
    pub partition: u32,
    /// Position of the last change (of the opening while `sequence` is 0).
    pub index: u64,
    pub timestamp_ms: u64,
    pub opened_index: u64,
    pub opened_timestamp_ms: u64,
    /// Status and overdraft limit (`AccountChanged` events): an ordinary account may go as
    /// far below zero as its limit.
    pub settings: ledger::AccountSettings,
}

/// A balance row as row format 1 stored it (before account settings): read, never written.
#[derive(Deserialize)]
struct BalanceRowV1 {
    account_id: String,
    currency: String,
    allow_negative_balance: bool,
    balance_minor: i128,
    held_minor: i128,
    touched_index: u64,
    sequence: u64,
    partition: u32,
    index: u64,
    timestamp_ms: u64,
    opened_index: u64,
    opened_timestamp_ms: u64,
}

impl From<BalanceRowV1> for BalanceRow {
    fn from(row: BalanceRowV1) -> BalanceRow {
        BalanceRow {
            account_id: row.account_id,
            currency: row.currency,
            allow_negative_balance: row.allow_negative_balance,
            balance_minor: row.balance_minor,
            held_minor: row.held_minor,
            touched_index: row.touched_index,
            sequence: row.sequence,
            partition: row.partition,
            index: row.index,
            timestamp_ms: row.timestamp_ms,
            opened_index: row.opened_index,
            opened_timestamp_ms: row.opened_timestamp_ms,
            // Settings came with row format 2; an account of a format-1 row never changed.
            settings: ledger::AccountSettings::default(),
        }
    }
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
    /// A hold, authorized: its amount is reserved.
    Pending,
    /// A hold released by a void.
    Voided,
    /// A hold released at its expiry.
    Expired,
}

impl TransferState {
    pub fn is_final(self) -> bool {
        matches!(
            self,
            TransferState::Completed
                | TransferState::Rejected
                | TransferState::Voided
                | TransferState::Expired
        )
    }
}

/// A transfer's latest state.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TransferRow {
    pub transaction_id: String,
    /// `ledger::partition_of(from_account)`: the partition whose log drives this transfer.
    /// With the id, the row's key.
    pub source_partition: u32,
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
    /// The client's reference and metadata, as the first event of the transfer carried them.
    pub annotations: Option<Box<ledger::Annotations>>,
    /// A multi-leg transfer's legs (empty for any other); its row's `from_account` is the
    /// first leg's (which names the partition), `to_account` empty, `amount_minor` 0.
    pub legs: Vec<LegRow>,
    /// For a rejected multi-leg transfer, the first leg refused.
    pub rejected_leg: Option<u32>,
}

/// One leg of a multi-leg transfer.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LegRow {
    pub from_account: String,
    pub to_account: String,
    pub amount_minor: i64,
}

/// A transfer row as row format 2 stored it (before multi-leg transfers): read, never
/// written.
#[derive(Deserialize)]
struct TransferRowV2 {
    transaction_id: String,
    source_partition: u32,
    from_account: String,
    to_account: String,
    amount_minor: i64,
    currency: String,
    state: TransferState,
    reject_reason: String,
    version: u32,
    partition: u32,
    index: u64,
    timestamp_ms: u64,
    annotations: Option<Box<ledger::Annotations>>,
}

impl From<TransferRowV2> for TransferRow {
    fn from(row: TransferRowV2) -> TransferRow {
        TransferRow {
            transaction_id: row.transaction_id,
            source_partition: row.source_partition,
            from_account: row.from_account,
            to_account: row.to_account,
            amount_minor: row.amount_minor,
            currency: row.currency,
            state: row.state,
            reject_reason: row.reject_reason,
            version: row.version,
            partition: row.partition,
            index: row.index,
            timestamp_ms: row.timestamp_ms,
            annotations: row.annotations,
            // Legs came with row format 3.
            legs: Vec::new(),
            rejected_leg: None,
        }
    }
}

/// A transfer row as row format 1 stored it (before annotations): read, never written.
#[derive(Deserialize)]
struct TransferRowV1 {
    transaction_id: String,
    source_partition: u32,
    from_account: String,
    to_account: String,
    amount_minor: i64,
    currency: String,
    state: TransferState,
    reject_reason: String,
    version: u32,
    partition: u32,
    index: u64,
    timestamp_ms: u64,
}

impl From<TransferRowV1> for TransferRow {
    fn from(row: TransferRowV1) -> TransferRow {
        TransferRow {
            transaction_id: row.transaction_id,
            source_partition: row.source_partition,
            from_account: row.from_account,
            to_account: row.to_account,
            amount_minor: row.amount_minor,
            currency: row.currency,
            state: row.state,
            reject_reason: row.reject_reason,
            version: row.version,
            partition: row.partition,
            index: row.index,
            timestamp_ms: row.timestamp_ms,
            // Annotations came with row format 2; no transfer of a format-1 row had any.
            annotations: None,
            legs: Vec::new(),
            rejected_leg: None,
        }
    }
}

/// A stored row type: the row format it is written in, and the older ones it still reads
/// (rows carry their format in their first byte, so a database holds rows of several).
pub trait Row: Serialize + DeserializeOwned {
    /// The format rows of this type are written in.
    const FORMAT: u8 = ROW_FORMAT_V1;

    /// A row of an older format, or `None` if this type never had one of `version`.
    fn decode_older(_version: u8, _body: &[u8]) -> Option<anyhow::Result<Self>> {
        None
    }
}

impl Row for BalanceRow {
    const FORMAT: u8 = ROW_FORMAT_V2;

    fn decode_older(version: u8, body: &[u8]) -> Option<anyhow::Result<Self>> {
        (version == ROW_FORMAT_V1).then(|| {
            postcard::from_bytes::<BalanceRowV1>(body)
                .map(BalanceRow::from)
                .context("row is corrupt")
        })
    }
}

impl Row for HistoryRow {}

impl Row for TransferRow {
    const FORMAT: u8 = ROW_FORMAT_V3;

    fn decode_older(version: u8, body: &[u8]) -> Option<anyhow::Result<Self>> {
        match version {
            ROW_FORMAT_V1 => Some(
                postcard::from_bytes::<TransferRowV1>(body)
                    .map(TransferRow::from)
                    .context("row is corrupt"),
            ),
            ROW_FORMAT_V2 => Some(
                postcard::from_bytes::<TransferRowV2>(body)
                    .map(TransferRow::from)
                    .context("row is corrupt"),
            ),
            _ => None,
        }
    }
}

pub fn encode<T: Row>(row: &T) -> Vec<u8> {
    let mut bytes = vec![T::FORMAT];
    bytes.extend(postcard::to_stdvec(row).expect("serialising to a Vec cannot fail"));
    bytes
}

pub fn decode<T: Row>(bytes: &[u8]) -> anyhow::Result<T> {
    let (&version, body) = bytes.split_first().context("empty row")?;
    if version == T::FORMAT {
        return postcard::from_bytes(body).context("row is corrupt");
    }
    T::decode_older(version, body)
        .unwrap_or_else(|| Err(anyhow::anyhow!("unknown row format {version}")))
}

pub fn history_key(account_id: &str, sequence: u64) -> Vec<u8> {
    let mut key = Vec::with_capacity(account_id.len() + 9);
    key.extend_from_slice(account_id.as_bytes());
    key.push(0);
    key.extend_from_slice(&sequence.to_be_bytes());
    key
}

fn transfer_id_key(transaction_id: &str) -> anyhow::Result<[u8; 16]> {
    Ok(*uuid::Uuid::try_parse(transaction_id)
        .with_context(|| format!("transaction id {transaction_id:?} is not a UUID"))?
        .as_bytes())
}

/// The transfer row key: the id's 16 bytes, then the source partition (u32 BE), so the rows
/// of one id sort together, by source partition.
pub fn transfer_key(transaction_id: &str, source_partition: u32) -> anyhow::Result<[u8; 20]> {
    let mut key = [0; 20];
    key[..16].copy_from_slice(&transfer_id_key(transaction_id)?);
    key[16..].copy_from_slice(&source_partition.to_be_bytes());
    Ok(key)
}

fn encode_checkpoint(checkpoint: &Checkpoint) -> [u8; 40] {
    let mut value = [0; 40];
    value[..8].copy_from_slice(&checkpoint.index.to_be_bytes());
    value[8..].copy_from_slice(&checkpoint.chain);
    value
}

fn decode_checkpoint(bytes: &[u8]) -> anyhow::Result<Checkpoint> {
    ensure!(
        bytes.len() == 40,
        "corrupt checkpoint ({} bytes)",
        bytes.len()
    );
    let (index, chain) = bytes.split_at(8);
    Ok(Checkpoint {
        index: u64::from_be_bytes(index.try_into().expect("8 bytes")),
        chain: chain.try_into().expect("32 bytes"),
    })
}

/// Options of a column family; `cache` is the block cache all of them share.
fn family_options(name: &str, cache: &rocksdb::Cache) -> Options {
    let mut options = Options::default();
    let mut table = rocksdb::BlockBasedOptions::default();
    table.set_block_cache(cache);
    if matches!(name, CF_BALANCES | CF_HISTORY | CF_TRANSFERS) {
        options.set_write_buffer_size(limits::RANDOM_KEYS_MEMTABLE_BYTES);
    }
    if name == CF_BALANCES || name == CF_TRANSFERS || name == CF_ACCOUNTS {
        // The fold looks up every account and transfer an event names, and an opening or a
        // transfer's first event names one that does not exist yet: a bloom filter over whole
        // keys, in every file and in the memtable, answers those without reading a block or
        // searching the skip list. Small rows, rewritten often: not worth compressing.
        table.set_bloom_filter(10.0, false);
        options.set_memtable_whole_key_filtering(true);
        options.set_memtable_prefix_bloom_ratio(0.05);
        options.set_compression_type(rocksdb::DBCompressionType::None);
    } else if name == CF_HISTORY {
        // Append-only, read in ranges: compressed.
        options.set_compression_type(rocksdb::DBCompressionType::Lz4);
    }
    options.set_block_based_table_factory(&table);
    options
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
        options.set_max_background_jobs(2);
        // Memtables of every column family together: bounded by configuration, not by the
        // traffic (RocksDB flushes the largest when the sum reaches it).
        options.set_db_write_buffer_size(limits::ROCKSDB_MEMTABLES_BYTES_MAX);
        let cache = rocksdb::Cache::new_lru_cache(limits::ROCKSDB_BLOCK_CACHE_BYTES);
        // A database of this format made before `accounts` existed gets it here, empty:
        // nothing had been opened with annotations then.
        let families = [
            CF_BALANCES,
            CF_HISTORY,
            CF_TRANSFERS,
            CF_POSITIONS,
            CF_META,
            CF_ACCOUNTS,
        ]
        .into_iter()
        .map(|name| ColumnFamilyDescriptor::new(name, family_options(name, &cache)));
        let db = DB::open_cf_descriptors(&options, path, families)
            .with_context(|| format!("opening the read node database in {}", path.display()))?;
        let this = ProjectionDb { db };
        match this.get(CF_META, META_FORMAT)? {
            Some(format) if format == DB_FORMAT_V3 => {}
            Some(format) if format == DB_FORMAT_V1 || format == DB_FORMAT_V2 => anyhow::bail!(
                "{} holds projections of an older read node (format {}: {}); this read node \
                 needs format read-node-v3. The projections are derived data: delete the \
                 directory and this node rebuilds them from the write nodes' event logs",
                path.display(),
                String::from_utf8_lossy(&format),
                if format == DB_FORMAT_V1 {
                    "transfers keyed by transaction id alone, no event chain hash in the checkpoint"
                } else {
                    "balance rows without the amount held by pending holds"
                },
            ),
            Some(format) => anyhow::bail!(
                "{} holds data of another format ({:?}); this read node reads read-node-v3",
                path.display(),
                String::from_utf8_lossy(&format)
            ),
            None => {
                // A new database: nothing else may be in it yet (a directory of some other
                // RocksDB with our column family names, say).
                ensure!(
                    this.db
                        .iterator_cf(this.cf(CF_POSITIONS), rocksdb::IteratorMode::Start)
                        .next()
                        .is_none(),
                    "{} has checkpoints but no format marker; use an empty data directory",
                    path.display()
                );
                this.db
                    .put_cf(this.cf(CF_META), META_FORMAT, DB_FORMAT_V3)?
            }
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

    /// Writes every column family's memtables to SST files, so the next open has no
    /// write-ahead log to replay (a clean restart opens in a fraction of a second instead of
    /// seconds of WAL recovery). Called once the fold has stopped.
    pub fn flush(&self) -> anyhow::Result<()> {
        for name in [CF_BALANCES, CF_HISTORY, CF_TRANSFERS, CF_POSITIONS, CF_META] {
            let cf = self.cf(name);
            self.db
                .flush_cf(cf)
                .with_context(|| format!("flushing column family {name}"))?;
        }
        Ok(())
    }

    /// A consistent copy of every column family in `path` (which must not exist yet), on the
    /// same filesystem: SST files hard-linked, the rest copied, memtables flushed first. The
    /// rows and the checkpoint are written in one batch, so the copy's checkpoint matches its
    /// rows exactly.
    pub fn copy_to(&self, path: &Path) -> anyhow::Result<()> {
        rocksdb::checkpoint::Checkpoint::new(&self.db)
            .and_then(|checkpoint| checkpoint.create_checkpoint(path))
            .with_context(|| format!("creating a RocksDB checkpoint in {}", path.display()))
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

    /// The checkpoint per partition (index 0 and the genesis chain = nothing applied).
    pub fn checkpoints(&self, partitions: u32) -> anyhow::Result<Vec<Checkpoint>> {
        (0..partitions)
            .map(|partition| {
                Ok(match self.get(CF_POSITIONS, &partition.to_be_bytes())? {
                    Some(bytes) => decode_checkpoint(&bytes)
                        .with_context(|| format!("checkpoint of partition {partition}"))?,
                    None => Checkpoint::GENESIS,
                })
            })
            .collect()
    }

    pub fn put_checkpoint(&self, batch: &mut WriteBatch, partition: u32, checkpoint: &Checkpoint) {
        batch.put_cf(
            self.cf(CF_POSITIONS),
            partition.to_be_bytes(),
            encode_checkpoint(checkpoint),
        );
    }

    pub fn balance(&self, account_id: &str) -> anyhow::Result<Option<BalanceRow>> {
        self.get(CF_BALANCES, account_id.as_bytes())?
            .map(|bytes| decode(&bytes))
            .transpose()
    }

    /// At most `limit` balance rows whose account id starts with `prefix` and sorts after
    /// `after` (exclusive; `None`: from the first), in byte order of the id.
    pub fn balances_from(
        &self,
        prefix: &str,
        after: Option<&str>,
        limit: usize,
    ) -> anyhow::Result<Vec<BalanceRow>> {
        // The smallest key after `after` is `after` and a zero byte.
        let start: Vec<u8> = match after {
            Some(after) => [after.as_bytes(), &[0]].concat(),
            None => prefix.as_bytes().to_vec(),
        };
        let iterator = self.db.iterator_cf(
            self.cf(CF_BALANCES),
            rocksdb::IteratorMode::From(&start, rocksdb::Direction::Forward),
        );
        let mut rows = Vec::new();
        for item in iterator {
            let (key, value) = item?;
            if rows.len() == limit || !key.starts_with(prefix.as_bytes()) {
                break;
            }
            rows.push(decode(&value)?);
        }
        Ok(rows)
    }

    pub fn put_account_annotations(
        &self,
        batch: &mut WriteBatch,
        account_id: &str,
        annotations: &ledger::Annotations,
    ) {
        batch.put_cf(
            self.cf(CF_ACCOUNTS),
            account_id.as_bytes(),
            postcard::to_stdvec(annotations).expect("serialising to a Vec cannot fail"),
        );
    }

    /// What each account was opened with (`None`: without annotations), in the order asked,
    /// in one batched lookup.
    pub fn account_annotations<'a>(
        &self,
        account_ids: impl IntoIterator<Item = &'a str>,
    ) -> anyhow::Result<Vec<Option<ledger::Annotations>>> {
        let keys: Vec<&[u8]> = account_ids.into_iter().map(str::as_bytes).collect();
        self.db
            .batched_multi_get_cf(self.cf(CF_ACCOUNTS), &keys, false)
            .into_iter()
            .map(|value| {
                value?
                    .map(|bytes| {
                        postcard::from_bytes(&bytes).context("stored annotations are corrupt")
                    })
                    .transpose()
            })
            .collect()
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

    /// The transfer `transaction_id` from `source_partition`.
    pub fn transfer(
        &self,
        transaction_id: &str,
        source_partition: u32,
    ) -> anyhow::Result<Option<TransferRow>> {
        self.get(
            CF_TRANSFERS,
            &transfer_key(transaction_id, source_partition)?,
        )?
        .map(|bytes| decode(&bytes))
        .transpose()
    }

    /// Every transfer under `transaction_id` (one per source partition that holds one), in
    /// source partition order. See [`crate::fold::preferred_transfer`] for the one to show.
    pub fn transfers(&self, transaction_id: &str) -> anyhow::Result<Vec<TransferRow>> {
        let prefix = transfer_id_key(transaction_id)?;
        let mut rows = Vec::new();
        let iterator = self.db.iterator_cf(
            self.cf(CF_TRANSFERS),
            rocksdb::IteratorMode::From(&prefix, rocksdb::Direction::Forward),
        );
        for item in iterator {
            let (key, value) = item?;
            if !key.starts_with(&prefix) {
                break;
            }
            rows.push(decode(&value)?);
        }
        Ok(rows)
    }

    pub fn put_transfer(&self, batch: &mut WriteBatch, row: &TransferRow) -> anyhow::Result<()> {
        batch.put_cf(
            self.cf(CF_TRANSFERS),
            transfer_key(&row.transaction_id, row.source_partition)?,
            encode(row),
        );
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(transaction_id: &str, source_partition: u32) -> TransferRow {
        TransferRow {
            transaction_id: transaction_id.into(),
            source_partition,
            from_account: format!("from-{source_partition}"),
            to_account: "to".into(),
            amount_minor: 1,
            currency: "USD".into(),
            state: TransferState::Completed,
            reject_reason: String::new(),
            version: 1,
            partition: source_partition,
            index: 1,
            timestamp_ms: 1,
            annotations: None,
            legs: Vec::new(),
            rejected_leg: None,
        }
    }

    /// Transfer rows written before multi-leg transfers (row format 2) are still read, as
    /// rows without legs; new rows are written in format 3 with their legs.
    #[test]
    fn transfer_rows_of_format_2_are_read_and_legs_travel_in_format_3() {
        let mut written = row("00000000-0000-0000-0000-0000000000aa", 0);
        let mut format_2 = vec![ROW_FORMAT_V2];
        format_2.extend(
            postcard::to_stdvec(&(
                &written.transaction_id,
                written.source_partition,
                &written.from_account,
                &written.to_account,
                written.amount_minor,
                &written.currency,
                &written.state,
                &written.reject_reason,
                written.version,
                written.partition,
                written.index,
                written.timestamp_ms,
                &written.annotations,
            ))
            .unwrap(),
        );
        assert_eq!(decode::<TransferRow>(&format_2).unwrap(), written);
        written.legs = vec![LegRow {
            from_account: "a".into(),
            to_account: "b".into(),
            amount_minor: 3,
        }];
        written.rejected_leg = Some(0);
        let bytes = encode(&written);
        assert_eq!(bytes[0], ROW_FORMAT_V3);
        assert_eq!(decode::<TransferRow>(&bytes).unwrap(), written);
    }

    #[test]
    fn transfer_rows_of_one_id_are_kept_apart_and_read_together() {
        let dir = tempfile::tempdir().expect("tempdir");
        let db = ProjectionDb::open(dir.path(), 300).expect("open");
        let x = "00000000-0000-0000-0000-0000000000aa";
        // Neighbours on both sides of x's key range.
        let before = "00000000-0000-0000-0000-0000000000a9";
        let after = "00000000-0000-0000-0000-0000000000ab";
        let mut batch = WriteBatch::default();
        for row in [
            row(after, 0),
            row(x, 258),
            row(x, 3),
            row(before, 299),
            row(x, 1),
        ] {
            db.put_transfer(&mut batch, &row).expect("uuid");
        }
        db.write(batch).expect("write");
        let found: Vec<u32> = db
            .transfers(x)
            .expect("read")
            .iter()
            .map(|row| row.source_partition)
            .collect();
        // Source partitions in numeric order (u32 BE keys), 258 after 3.
        assert_eq!(found, [1, 3, 258]);
        assert_eq!(db.transfer(x, 3).unwrap(), Some(row(x, 3)));
        assert_eq!(db.transfer(x, 2).unwrap(), None);
        assert!(
            db.transfers("00000000-0000-0000-0000-0000000000ff")
                .unwrap()
                .is_empty()
        );
    }

    /// Balance rows written before account settings (row format 1) are still read, as
    /// accounts with the default settings; new rows are written in format 2.
    #[test]
    fn balance_rows_of_format_1_are_read_with_default_settings() {
        let row = BalanceRow {
            account_id: "alice".into(),
            currency: "USD".into(),
            allow_negative_balance: false,
            balance_minor: 1_234,
            held_minor: 34,
            touched_index: 7,
            sequence: 3,
            partition: 2,
            index: 7,
            timestamp_ms: 1_007,
            opened_index: 1,
            opened_timestamp_ms: 1_001,
            settings: ledger::AccountSettings::default(),
        };
        let mut format_1 = vec![ROW_FORMAT_V1];
        format_1.extend(
            postcard::to_stdvec(&(
                &row.account_id,
                &row.currency,
                row.allow_negative_balance,
                row.balance_minor,
                row.held_minor,
                row.touched_index,
                row.sequence,
                row.partition,
                row.index,
                row.timestamp_ms,
                row.opened_index,
                row.opened_timestamp_ms,
            ))
            .unwrap(),
        );
        assert_eq!(decode::<BalanceRow>(&format_1).unwrap(), row);
        let written = encode(&row);
        assert_eq!(written[0], ROW_FORMAT_V2);
        assert_eq!(decode::<BalanceRow>(&written).unwrap(), row);
        assert!(decode::<BalanceRow>(&[9, 0]).is_err(), "an unknown format");
    }

    #[test]
    fn a_data_directory_of_a_previous_format_is_refused_with_a_clear_message() {
        for (format, name) in [
            (DB_FORMAT_V1, "read-node-v1"),
            (DB_FORMAT_V2, "read-node-v2"),
        ] {
            let dir = tempfile::tempdir().expect("tempdir");
            {
                let db = ProjectionDb::open(dir.path(), 2).expect("open");
                // What an older node left: its marker and a checkpoint.
                db.db.put_cf(db.cf(CF_META), META_FORMAT, format).unwrap();
                db.db
                    .put_cf(db.cf(CF_POSITIONS), 0u32.to_be_bytes(), 7u64.to_be_bytes())
                    .unwrap();
            }
            let error = ProjectionDb::open(dir.path(), 2).err().expect("refused");
            let message = format!("{error:#}");
            assert!(message.contains(name), "{message}");
            assert!(message.contains("delete the directory"), "{message}");
        }
    }

    #[test]
    fn checkpoints_keep_index_and_chain() {
        let dir = tempfile::tempdir().expect("tempdir");
        let db = ProjectionDb::open(dir.path(), 2).expect("open");
        assert_eq!(db.checkpoints(2).unwrap(), vec![Checkpoint::GENESIS; 2]);
        let mut batch = WriteBatch::default();
        let checkpoint = Checkpoint {
            index: 41,
            chain: [9; 32],
        };
        db.put_checkpoint(&mut batch, 1, &checkpoint);
        db.write(batch).unwrap();
        drop(db);
        let db = ProjectionDb::open(dir.path(), 2).expect("reopen");
        assert_eq!(
            db.checkpoints(2).unwrap(),
            vec![Checkpoint::GENESIS, checkpoint]
        );
    }
}
