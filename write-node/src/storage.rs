//! RocksDB layout and the raft-rs `Storage` of one partition.
//!
//! One RocksDB instance per node, column families:
//! - `raft_log`:   partition u32 BE | index u64 BE -> raft `Entry` (raft's protobuf encoding)
//! - `raft_state`: partition u32 BE | tag          -> hard state (`h`), conf state (`c`),
//!   applied index (`a`, u64 BE), compaction point (`t`: index and term of the last entry
//!   dropped from the log, 2 x u64 BE)
//! - `events`:     partition u32 BE | index u64 BE -> the ledger events that entry produced
//!   (see `codec::EventBlock`); the durable ledger, replayed on restart and streamed to readers
//! - `snapshots`:  partition u32 BE | index u64 BE | 0 -> `SnapshotMeta` (postcard), and
//!   partition u32 BE | index u64 BE | 1 | chunk u32 BE -> the serialized ledger, in chunks
//! - `records`:    partition u32 BE | transaction id u128 BE -> the id's finished transfer or
//!   credit record (see `records`)
//! - `meta`:       cluster identity: node id, partition count, format version
//!
//! Keys are big-endian so byte order is numeric order. Raft entries and hard state of every
//! partition are written in one synced batch per store round; the apply results (events,
//! applied index, hard state) go in one unsynced batch that the next synced write makes
//! durable, because RocksDB's WAL is one sequential file: state is never ahead of the log.
//!
//! Why one file of this length: it is the only code that knows the key layouts, and both
//! halves use them (`Db`: column families, writes, scans; `PartitionStorage`: raft-rs
//! `Storage` over them). The `Storage` implementation is what moves out first if it grows.

use std::collections::VecDeque;
use std::path::Path;
use std::sync::Arc;

use anyhow::{Context, bail};
use protobuf::Message as _;
use raft::eraftpb::{ConfState, Entry, HardState, Snapshot};
use raft::{GetEntriesContext, RaftState, StorageError};
use rocksdb::{
    ColumnFamilyDescriptor, DB, Direction, IteratorMode, Options, WriteBatch, WriteOptions,
};

use serde::{Deserialize, Serialize};

use crate::codec::ChainHash;
use crate::limits;

pub const CF_RAFT_LOG: &str = "raft_log";
pub const CF_RAFT_STATE: &str = "raft_state";
pub const CF_EVENTS: &str = "events";
pub const CF_META: &str = "meta";
pub const CF_SNAPSHOTS: &str = "snapshots";
pub const CF_RECORDS: &str = "records";
/// What accounts were opened with (reference and metadata), by (partition, account id); only
/// accounts opened with some have an entry. Written in the apply batch of the opening.
pub const CF_ACCOUNTS: &str = "accounts";
/// Every column family of a write node's database: opened together, each one's size reported
/// by the metrics.
pub const FAMILIES: [&str; 7] = [
    CF_RAFT_LOG,
    CF_RAFT_STATE,
    CF_EVENTS,
    CF_META,
    CF_SNAPSHOTS,
    CF_RECORDS,
    CF_ACCOUNTS,
];

/// 2: event blocks carry their hash-chain link. 3: transfer and credit records live in the
/// `records` column family rather than in snapshots (data of version 2 is migrated when the
/// store starts: `store::startup::migrate`, see [`Db::migrate_from`]). 4: records, events,
/// raft entries and snapshots may hold holds (`ledger::TransferStatus::Hold`, the hold
/// commands and events), which a release of format 3 cannot read; format-3 data is valid
/// format-4 data, so its migration only marks it. 5: account lifecycle (the account-change
/// command and event, the frozen and closed reject reasons in records, snapshots of state
/// format 5), which a release of format 4 cannot read; format-4 data is valid format-5 data,
/// marked the same way. 6: annotated transfers (reference and metadata: entries of format 2,
/// event blocks of format 3, tagged records, snapshots of state format 6; `ledger::wire`),
/// which a release of format 5 cannot read; format-5 data is valid format-6 data, marked.
/// 7: annotated accounts (the opening command and event in the annotated layout, the
/// `accounts` column family, snapshots of state format 7); format-6 data is valid format-7
/// data (without annotated accounts), marked.
const FORMAT_VERSION: u32 = 7;
/// The oldest format this binary migrates from.
const FORMAT_VERSION_MIGRATED: u32 = 2;
const META_FORMAT_VERSION: &[u8] = b"format_version";
const META_NODE_ID: &[u8] = b"node_id";
const META_PARTITIONS: &[u8] = b"partitions";
/// The placement the data was created with: the replica count (u32) then every write node's
/// id (u64), big-endian (see `Db::check_placement`).
const META_PLACEMENT: &[u8] = b"placement";
/// Per partition whose group removed this node: the index of the membership change that
/// did (u64 BE), under this prefix and the partition (u32 BE). See `Db::removed_at`.
const META_REMOVED_PREFIX: &[u8] = b"removed/";

/// This data directory's incarnation: 16 random bytes drawn when it was created (or first
/// opened by a release that keeps one). A node whose directory was lost comes back with a new
/// one, which its peers notice (`incarnation.rs`).
const META_INCARNATION: &[u8] = b"incarnation";
/// Per peer (u64 BE after the prefix): the incarnation it announced when first heard from.
const META_PEER_INCARNATION_PREFIX: &[u8] = b"peer_incarnation/";

fn peer_incarnation_key(node: u64) -> Vec<u8> {
    let mut key = META_PEER_INCARNATION_PREFIX.to_vec();
    key.extend(node.to_be_bytes());
    key
}

fn removed_key(partition: u32) -> Vec<u8> {
    let mut key = META_REMOVED_PREFIX.to_vec();
    key.extend(partition.to_be_bytes());
    key
}

const STATE_HARD: u8 = b'h';
const STATE_CONF: u8 = b'c';
const STATE_APPLIED: u8 = b'a';
const STATE_COMPACTED: u8 = b't';
/// The index of the entry that last changed the partition's membership (its conf state);
/// absent: none did (the membership is the one the group was created with).
const STATE_CONF_INDEX: u8 = b'i';

/// The header of a stored snapshot (`snapshots` column family; made and checked by
/// `snapshot`, which re-exports it).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SnapshotMeta {
    pub partition: u32,
    /// The last applied index the state includes, and its term.
    pub index: u64,
    pub term: u64,
    pub voters: Vec<u64>,
    /// The state's digest in its format's encoding (`Ledger::digest`, or `Ledger::digest_v2` for
    /// format 1: see `snapshot.rs`), checked whenever the state is loaded.
    pub digest: [u8; 32],
    /// Head of the partition's event hash chain at `index`.
    pub chain_head: ChainHash,
    pub chunks: u32,
    pub bytes: u64,
}

/// Key of an index-addressed record (`raft_log`, `events`).
pub fn index_key(partition: u32, index: u64) -> [u8; 12] {
    let mut key = [0u8; 12];
    key[..4].copy_from_slice(&partition.to_be_bytes());
    key[4..].copy_from_slice(&index.to_be_bytes());
    key
}

pub fn index_from_key(key: &[u8]) -> u64 {
    assert_eq!(key.len(), 12, "index keys are 12 bytes");
    u64::from_be_bytes(key[4..].try_into().expect("8 bytes"))
}

fn decode_compacted(bytes: &[u8]) -> anyhow::Result<(u64, u64)> {
    anyhow::ensure!(bytes.len() == 16, "{} bytes, not 16", bytes.len());
    Ok((
        u64::from_be_bytes(bytes[..8].try_into()?),
        u64::from_be_bytes(bytes[8..].try_into()?),
    ))
}

/// Key of an account's entry in `accounts`: the partition, then the id's bytes.
fn account_key(partition: u32, account_id: &str) -> Vec<u8> {
    let mut key = Vec::with_capacity(4 + account_id.len());
    key.extend_from_slice(&partition.to_be_bytes());
    key.extend_from_slice(account_id.as_bytes());
    key
}

/// A group's membership when it is created: `voters`, nothing else.
fn first_membership(voters: &[u64]) -> ConfState {
    ConfState {
        voters: voters.to_vec(),
        ..Default::default()
    }
}

fn state_key(partition: u32, tag: u8) -> [u8; 5] {
    let mut key = [0u8; 5];
    key[..4].copy_from_slice(&partition.to_be_bytes());
    key[4] = tag;
    key
}

/// The node's RocksDB.
pub struct Db {
    db: DB,
    /// Opened on data of an older format that the caller must migrate (see [`Db::open`]).
    migrate_from: Option<u32>,
}

/// Options of a column family.
fn family_options(name: &str) -> Options {
    let mut options = Options::default();
    match name {
        CF_EVENTS => options.set_compression_type(rocksdb::DBCompressionType::Lz4),
        CF_ACCOUNTS => {
            // Point lookups, most of them of accounts opened without annotations (every
            // GetAccount asks): a bloom filter answers those without reading a block.
            let mut table = rocksdb::BlockBasedOptions::default();
            table.set_bloom_filter(10.0, false);
            options.set_block_based_table_factory(&table);
            options.set_memtable_whole_key_filtering(true);
            options.set_memtable_prefix_bloom_ratio(0.05);
        }
        CF_RECORDS => {
            // Point lookups only, most of them of new ids: a bloom filter over whole keys in
            // the memtable and in every file answers those without searching the memtable's
            // skip list or reading a block (BENCHMARKS.md, "Records on disk").
            options.set_memtable_whole_key_filtering(true);
            options.set_memtable_prefix_bloom_ratio(0.05);
            options.set_write_buffer_size(limits::RECORDS_MEMTABLE_BYTES);
            let mut table = rocksdb::BlockBasedOptions::default();
            table.set_bloom_filter(10.0, false);
            table.set_block_cache(&rocksdb::Cache::new_lru_cache(
                limits::RECORDS_BLOCK_CACHE_BYTES,
            ));
            table.set_cache_index_and_filter_blocks(true);
            table.set_pin_l0_filter_and_index_blocks_in_cache(true);
            options.set_block_based_table_factory(&table);
            // Small values of ids and amounts: not worth the flush thread's time compressing.
            options.set_compression_type(rocksdb::DBCompressionType::None);
            // Written once, never overwritten, keys spread over the whole key space: leveled
            // compaction merges every few flushes into the whole of the level below (as many
            // bytes compacted as flushed in a 40 s run, more as the levels grow); universal
            // compaction merges whole sorted runs of similar size instead, for 6-8% less
            // write-node CPU per transfer (BENCHMARKS.md, "Universal compaction for the
            // records"). The price: a merge of the largest runs needs their size again in free
            // disk while it runs. Data written under leveled compaction opens as it is.
            options.set_compaction_style(rocksdb::DBCompactionStyle::Universal);
        }
        _ => {}
    }
    options
}

impl Db {
    /// Opens (or creates) the data directory and checks it belongs to this node and cluster
    /// shape: a node refuses data created with another node id or partition count.
    pub fn open(path: &Path, node_id: u64, partitions: u32) -> anyhow::Result<Arc<Db>> {
        std::fs::create_dir_all(path)
            .with_context(|| format!("creating data dir {}", path.display()))?;
        let mut options = Options::default();
        options.create_if_missing(true);
        options.create_missing_column_families(true);
        options.set_max_background_jobs(2);
        options.set_bytes_per_sync(1024 * 1024);
        // Memtables of every column family together: bounded by configuration, not by the
        // traffic (RocksDB flushes the largest when the sum reaches it).
        options.set_db_write_buffer_size(limits::ROCKSDB_MEMTABLES_BYTES_MAX);
        let families = FAMILIES
            .into_iter()
            .map(|name| ColumnFamilyDescriptor::new(name, family_options(name)));
        let db = DB::open_cf_descriptors(&options, path, families)
            .with_context(|| format!("opening RocksDB at {}", path.display()))?;
        let mut db = Db {
            db,
            migrate_from: None,
        };
        db.migrate_from = db.check_identity(node_id, partitions)?;
        Ok(Arc::new(db))
    }

    /// Opens a node's data directory read-only, for audits (`walletctl replay` and `verify`);
    /// works while the node runs. Returns the database and the partition count it was created
    /// with.
    pub fn open_read_only(path: &Path) -> anyhow::Result<(Arc<Db>, u32)> {
        anyhow::ensure!(
            path.join("CURRENT").exists(),
            "{} is not a write node's data directory (no RocksDB CURRENT file)",
            path.display()
        );
        let families = FAMILIES
            .into_iter()
            .map(|name| ColumnFamilyDescriptor::new(name, family_options(name)));
        let db = DB::open_cf_descriptors_read_only(&Options::default(), path, families, false)
            .with_context(|| format!("opening RocksDB at {} read-only", path.display()))?;
        let db = Db {
            db,
            migrate_from: None,
        };
        let meta = db.cf(CF_META);
        let version = db
            .db
            .get_cf(meta, META_FORMAT_VERSION)?
            .context("no format version: not a write node's data directory")?;
        let version = u32::from_be_bytes(version[..].try_into().context("format version")?);
        anyhow::ensure!(
            version == FORMAT_VERSION,
            "data format version {version}, this binary reads version {FORMAT_VERSION}"
        );
        let partitions = db
            .db
            .get_cf(meta, META_PARTITIONS)?
            .context("partition count missing")?;
        let partitions = u32::from_be_bytes(partitions[..].try_into().context("partition count")?);
        Ok((Arc::new(db), partitions))
    }

    /// Checks that the data was created with the same write nodes and replica count (or
    /// records them, on a new data directory or one from before they were recorded): both
    /// decide where the partitions were placed when the cluster was created, so a change
    /// would leave partitions behind or start them empty elsewhere (replicas move with
    /// `walletctl partition move` instead). On a new data directory the partitions placed here
    /// (`initial`: id and voters) are created in the same write, so a crash at first start
    /// leaves either nothing or all of them.
    pub fn check_placement(
        &self,
        nodes: &[u64],
        replicas: usize,
        initial: &[(u32, Vec<u64>)],
    ) -> anyhow::Result<()> {
        let mut placement = (replicas as u32).to_be_bytes().to_vec();
        for node in nodes {
            placement.extend(node.to_be_bytes());
        }
        let Some(stored) = self.db.get_cf(self.cf(CF_META), META_PLACEMENT)? else {
            let mut batch = WriteBatch::default();
            for (partition, voters) in initial {
                if self
                    .get(CF_RAFT_STATE, &state_key(*partition, STATE_CONF))?
                    .is_none()
                {
                    self.put_conf_state(&mut batch, *partition, &first_membership(voters))?;
                }
            }
            batch.put_cf(self.cf(CF_META), META_PLACEMENT, &placement);
            return self.write(batch, true);
        };
        if stored == placement {
            return Ok(());
        }
        let stored_replicas = stored
            .get(..4)
            .and_then(|bytes| bytes.try_into().ok())
            .map(u32::from_be_bytes);
        let stored_nodes: Vec<u64> = stored
            .get(4..)
            .unwrap_or_default()
            .chunks(8)
            .filter_map(|chunk| chunk.try_into().ok().map(u64::from_be_bytes))
            .collect();
        bail!(
            "the data directory was created for write nodes {stored_nodes:?} with {} replicas \
             of each partition; the configuration has nodes {nodes:?} with {replicas}: the \
             write nodes and the replica count are fixed when the cluster is created \
             (a replica moves to another node with `walletctl partition move`)",
            stored_replicas.map_or("?".to_owned(), |r| r.to_string())
        )
    }

    /// Puts a partition's membership (its raft conf state) into a batch.
    fn put_conf_state(
        &self,
        batch: &mut WriteBatch,
        partition: u32,
        conf_state: &ConfState,
    ) -> anyhow::Result<()> {
        batch.put_cf(
            self.cf(CF_RAFT_STATE),
            state_key(partition, STATE_CONF),
            conf_state.write_to_bytes()?,
        );
        Ok(())
    }

    /// The partitions this node holds a replica of: those with a stored membership (created
    /// at first start, or when a leader added this node to the group), in id order.
    pub fn held_partitions(&self, partitions: u32) -> anyhow::Result<Vec<u32>> {
        let mut held = Vec::new();
        for partition in 0..partitions {
            if self
                .get(CF_RAFT_STATE, &state_key(partition, STATE_CONF))?
                .is_some()
            {
                held.push(partition);
            }
        }
        Ok(held)
    }

    /// Deletes everything this node stores of a partition whose group removed it at
    /// membership change `removed_at` (raft log and state, events, records, snapshots,
    /// account annotations), and records that index (`removed_at`), in one synced write: the
    /// node no longer holds it (`held_partitions`).
    pub fn delete_partition(&self, partition: u32, removed_at: u64) -> anyhow::Result<()> {
        let start = partition.to_be_bytes().to_vec();
        let end = match partition.checked_add(1) {
            Some(next) => next.to_be_bytes().to_vec(),
            None => vec![0xff; 5],
        };
        let mut batch = WriteBatch::default();
        for family in FAMILIES.into_iter().filter(|&family| family != CF_META) {
            batch.delete_range_cf(self.cf(family), &start, &end);
        }
        batch.put_cf(
            self.cf(CF_META),
            removed_key(partition),
            removed_at.to_be_bytes(),
        );
        self.write(batch, true)
    }

    /// The index of the membership change that last removed this node from the partition's
    /// group, if one ever did: a leader whose log does not reach past it is a stale one that
    /// must not make this node a replica again (`store/membership.rs`).
    pub fn removed_at(&self, partition: u32) -> anyhow::Result<Option<u64>> {
        Ok(match self.get(CF_META, &removed_key(partition))? {
            Some(bytes) => Some(u64::from_be_bytes(
                bytes[..].try_into().context("removal index is corrupt")?,
            )),
            None => None,
        })
    }

    /// This data directory's incarnation; on a directory without one, `draw()` makes it and
    /// it is stored (synced) before it is returned.
    pub fn incarnation(&self, draw: impl FnOnce() -> [u8; 16]) -> anyhow::Result<[u8; 16]> {
        if let Some(bytes) = self.get(CF_META, META_INCARNATION)? {
            return bytes[..].try_into().context("the incarnation is corrupt");
        }
        let incarnation = draw();
        let mut batch = WriteBatch::default();
        batch.put_cf(self.cf(CF_META), META_INCARNATION, incarnation);
        self.write(batch, true)?;
        Ok(incarnation)
    }

    /// The incarnation `node` announced when this node first heard from it, if it did.
    pub fn peer_incarnation(&self, node: u64) -> anyhow::Result<Option<[u8; 16]>> {
        match self.get(CF_META, &peer_incarnation_key(node))? {
            Some(bytes) => Ok(Some(
                bytes[..]
                    .try_into()
                    .context("a peer's incarnation is corrupt")?,
            )),
            None => Ok(None),
        }
    }

    /// Records (synced) the incarnation `node` is known by from now on.
    pub fn put_peer_incarnation(&self, node: u64, incarnation: [u8; 16]) -> anyhow::Result<()> {
        let mut batch = WriteBatch::default();
        batch.put_cf(self.cf(CF_META), peer_incarnation_key(node), incarnation);
        self.write(batch, true)
    }

    /// The applied index of a partition as last stored.
    pub fn stored_applied_index(&self, partition: u32) -> anyhow::Result<u64> {
        match self.get(CF_RAFT_STATE, &state_key(partition, STATE_APPLIED))? {
            Some(bytes) => Ok(u64::from_be_bytes(
                bytes[..].try_into().context("applied index is corrupt")?,
            )),
            None => Ok(0),
        }
    }

    /// The format version of data opened for migration, if it was older than this binary's
    /// (the caller rebuilds the `records` column family from the event log, then calls
    /// [`Db::finish_migration`]).
    pub fn migrate_from(&self) -> Option<u32> {
        self.migrate_from
    }

    /// Marks the data as this binary's format, once a migration is complete.
    pub fn finish_migration(&self) -> anyhow::Result<()> {
        let mut batch = WriteBatch::default();
        batch.put_cf(
            self.cf(CF_META),
            META_FORMAT_VERSION,
            FORMAT_VERSION.to_be_bytes(),
        );
        self.write(batch, true)
    }

    /// Checks the stored identity (or stores it on a new directory); returns the stored
    /// format version if the data needs migrating.
    fn check_identity(&self, node_id: u64, partitions: u32) -> anyhow::Result<Option<u32>> {
        let meta = self.cf(CF_META);
        let stored_version = self.db.get_cf(meta, META_FORMAT_VERSION)?;
        let Some(stored_version) = stored_version else {
            let mut batch = WriteBatch::default();
            batch.put_cf(meta, META_FORMAT_VERSION, FORMAT_VERSION.to_be_bytes());
            batch.put_cf(meta, META_NODE_ID, node_id.to_be_bytes());
            batch.put_cf(meta, META_PARTITIONS, partitions.to_be_bytes());
            self.write(batch, true)?;
            return Ok(None);
        };
        let read_u64 = |key: &[u8]| -> anyhow::Result<u64> {
            let bytes = self
                .db
                .get_cf(meta, key)?
                .with_context(|| format!("meta key {key:?} missing"))?;
            Ok(match bytes.len() {
                4 => u32::from_be_bytes(bytes[..].try_into()?) as u64,
                8 => u64::from_be_bytes(bytes[..].try_into()?),
                _ => bail!("meta key {key:?} is corrupt"),
            })
        };
        let version = u32::from_be_bytes(
            stored_version[..]
                .try_into()
                .context("format version is corrupt")?,
        );
        if !(FORMAT_VERSION_MIGRATED..=FORMAT_VERSION).contains(&version) {
            bail!(
                "data format version {version}: this binary reads version {FORMAT_VERSION} and \
                 migrates version {FORMAT_VERSION_MIGRATED}; run a release that reads it"
            );
        }
        let migrate_from = (version < FORMAT_VERSION).then_some(version);
        let stored_node = read_u64(META_NODE_ID)?;
        if stored_node != node_id {
            bail!("data directory belongs to node {stored_node}, not node {node_id}");
        }
        let stored_partitions = read_u64(META_PARTITIONS)?;
        if stored_partitions != partitions as u64 {
            bail!(
                "data directory was created with {stored_partitions} partitions; refusing to start \
                 with {partitions} (the partition count is fixed at cluster creation)"
            );
        }
        Ok(migrate_from)
    }

    pub fn cf(&self, name: &str) -> &rocksdb::ColumnFamily {
        self.db
            .cf_handle(name)
            .expect("column families are created at open")
    }

    /// An integer RocksDB property of one column family (e.g. `rocksdb.total-sst-files-size`),
    /// for metrics. Reads in-memory counters; never touches the disk.
    pub fn property_int(&self, cf: &str, property: &str) -> Option<u64> {
        self.db
            .property_int_value_cf(self.cf(cf), property)
            .ok()
            .flatten()
    }

    /// Writes a batch atomically; `sync` waits for the WAL to reach the disk. An error leaves
    /// the batch's durability unknown (a failed fsync may have written it or not), so callers
    /// never retry: the store loop stops and the node restarts from what is on disk.
    pub fn write(&self, batch: WriteBatch, sync: bool) -> anyhow::Result<()> {
        self.write_as(batch, sync, sync)
    }

    /// [`Db::write`] for the store round's raft log and hard states, unsynced: the raft log's
    /// sync thread makes it durable (`Db::sync_wal`) when raft needs it (`Ready::must_sync`).
    /// The `storage::write` failpoint counts it with the synced writes: it is the log round,
    /// not the apply results.
    pub fn write_log(&self, batch: WriteBatch) -> anyhow::Result<()> {
        self.write_as(batch, false, true)
    }

    /// Makes every write made before it durable: fsyncs RocksDB's write-ahead log, without
    /// holding up writes other threads make meanwhile (the raft log's sync thread,
    /// `store/log_sync.rs`). The `storage::fsync` failpoint counts it as a synced write.
    pub fn sync_wal(&self) -> anyhow::Result<()> {
        self.db
            .flush_wal(true)
            .context("syncing the write-ahead log")?;
        #[cfg(feature = "failpoints")]
        crate::failpoints::after_synced_write().context("syncing the write-ahead log")?;
        Ok(())
    }

    fn write_as(&self, batch: WriteBatch, sync: bool, log_round: bool) -> anyhow::Result<()> {
        #[cfg(feature = "failpoints")]
        crate::failpoints::before_write(log_round).context("RocksDB write")?;
        #[cfg(not(feature = "failpoints"))]
        let _ = log_round;
        let mut options = WriteOptions::default();
        options.set_sync(sync);
        self.db
            .write_opt(batch, &options)
            .context("RocksDB write")?;
        #[cfg(feature = "failpoints")]
        if sync {
            crate::failpoints::after_synced_write().context("RocksDB write")?;
        }
        Ok(())
    }

    /// Writes every column family's memtables to SST files, so the next open has no
    /// write-ahead log to replay (up to `ROCKSDB_MEMTABLES_BYTES_MAX` of it: seconds per node
    /// at 10M accounts). Called on a clean stop, once the store thread has stopped writing.
    pub fn flush(&self) -> anyhow::Result<()> {
        for name in FAMILIES {
            self.db
                .flush_cf(self.cf(name))
                .with_context(|| format!("flushing column family {name}"))?;
        }
        Ok(())
    }

    pub fn get(&self, cf: &str, key: &[u8]) -> anyhow::Result<Option<Vec<u8>>> {
        Ok(self.db.get_cf(self.cf(cf), key)?)
    }

    /// Adds a finished transfer or credit record to a batch.
    pub fn put_record(&self, batch: &mut WriteBatch, partition: u32, record: &ledger::Record) {
        debug_assert!(!record.is_live(), "live records stay in memory");
        let key = crate::records::key(partition, record.transaction_id().as_u128());
        batch.put_cf(self.cf(CF_RECORDS), key, crate::records::encode(record));
    }

    /// Adds what an account was opened with to a batch.
    pub fn put_account_annotations(
        &self,
        batch: &mut WriteBatch,
        partition: u32,
        account_id: &str,
        annotations: &ledger::Annotations,
    ) {
        batch.put_cf(
            self.cf(CF_ACCOUNTS),
            account_key(partition, account_id),
            postcard::to_stdvec(annotations).expect("serialising to a Vec cannot fail"),
        );
    }

    /// What an account of a partition was opened with, if it was opened with a reference or
    /// metadata.
    pub fn account_annotations(
        &self,
        partition: u32,
        account_id: &str,
    ) -> anyhow::Result<Option<ledger::Annotations>> {
        self.db
            .get_pinned_cf(self.cf(CF_ACCOUNTS), account_key(partition, account_id))?
            .map(|value| {
                postcard::from_bytes(&value)
                    .with_context(|| format!("annotations of account {account_id:?} are corrupt"))
            })
            .transpose()
    }

    /// The stored record of a transaction id in a partition, if any.
    pub fn record(
        &self,
        partition: u32,
        transaction_id: u128,
    ) -> anyhow::Result<Option<ledger::Record>> {
        let key = crate::records::key(partition, transaction_id);
        self.db
            .get_pinned_cf(self.cf(CF_RECORDS), key)?
            .map(|value| crate::records::decode(&value))
            .transpose()
    }

    /// The stored records of several transaction ids of a partition (one batched lookup);
    /// ids without a record are absent from the answer.
    pub fn records(
        &self,
        partition: u32,
        transaction_ids: &[u128],
    ) -> anyhow::Result<std::collections::HashMap<u128, ledger::Record>> {
        let mut found = std::collections::HashMap::new();
        if transaction_ids.is_empty() {
            return Ok(found);
        }
        let keys: Vec<[u8; crate::records::KEY_BYTES]> = transaction_ids
            .iter()
            .map(|id| crate::records::key(partition, *id))
            .collect();
        let values = self
            .db
            .batched_multi_get_cf(self.cf(CF_RECORDS), &keys, false);
        for (id, value) in transaction_ids.iter().zip(values) {
            if let Some(value) = value? {
                found.insert(*id, crate::records::decode(&value)?);
            }
        }
        Ok(found)
    }

    /// Index-keyed records of one partition in `[from, to]`, in order.
    pub fn scan_indexed(
        &self,
        cf: &str,
        partition: u32,
        from: u64,
        to: u64,
    ) -> impl Iterator<Item = anyhow::Result<(u64, Box<[u8]>)>> + '_ {
        let start = index_key(partition, from);
        let end = index_key(partition, to);
        self.db
            .iterator_cf(self.cf(cf), IteratorMode::From(&start, Direction::Forward))
            .map(|item| item.map_err(anyhow::Error::from))
            .take_while(move |item| match item {
                Ok((key, _)) => key[..] <= end[..],
                Err(_) => true,
            })
            .map(|item| item.map(|(key, value)| (index_from_key(&key), value)))
    }

    /// The last index-keyed record of a partition below `index`, if any.
    pub fn last_indexed_before(
        &self,
        cf: &str,
        partition: u32,
        index: u64,
    ) -> anyhow::Result<Option<(u64, Box<[u8]>)>> {
        if index <= 1 {
            return Ok(None);
        }
        let end = index_key(partition, index - 1);
        let mut iter = self
            .db
            .iterator_cf(self.cf(cf), IteratorMode::From(&end, Direction::Reverse));
        match iter.next() {
            Some(item) => {
                let (key, value) = item?;
                Ok((key[..4] == partition.to_be_bytes()).then(|| (index_from_key(&key), value)))
            }
            None => Ok(None),
        }
    }

    /// Largest index stored for a partition in an index-keyed column family.
    fn last_index(&self, cf: &str, partition: u32) -> anyhow::Result<Option<u64>> {
        let end = index_key(partition, u64::MAX);
        let mut iter = self
            .db
            .iterator_cf(self.cf(cf), IteratorMode::From(&end, Direction::Reverse));
        match iter.next() {
            Some(item) => {
                let (key, _) = item?;
                Ok((key[..4] == partition.to_be_bytes()).then(|| index_from_key(&key)))
            }
            None => Ok(None),
        }
    }
}

impl Db {
    /// Stores a snapshot: its chunks, then its header (what makes it visible), in one write.
    pub fn put_snapshot(
        &self,
        meta: &SnapshotMeta,
        chunks: &[Vec<u8>],
        sync: bool,
    ) -> anyhow::Result<()> {
        assert_eq!(meta.chunks as usize, chunks.len(), "snapshot chunk count");
        let cf = self.cf(CF_SNAPSHOTS);
        let mut batch = WriteBatch::default();
        for (number, chunk) in chunks.iter().enumerate() {
            batch.put_cf(
                cf,
                snapshot_chunk_key(meta.partition, meta.index, number as u32),
                chunk,
            );
        }
        batch.put_cf(
            cf,
            snapshot_header_key(meta.partition, meta.index),
            postcard::to_stdvec(meta).expect("serialising to a Vec cannot fail"),
        );
        self.write(batch, sync)
    }

    /// Headers of a partition's stored snapshots, oldest first.
    pub fn snapshot_metas(&self, partition: u32) -> anyhow::Result<Vec<SnapshotMeta>> {
        let start = index_key(partition, 0);
        let mut metas = Vec::new();
        for item in self.db.iterator_cf(
            self.cf(CF_SNAPSHOTS),
            IteratorMode::From(&start, Direction::Forward),
        ) {
            let (key, value) = item?;
            if key[..4] != partition.to_be_bytes() {
                break;
            }
            if key.len() == 13 && key[12] == SNAPSHOT_HEADER {
                let meta: SnapshotMeta = postcard::from_bytes(&value).with_context(|| {
                    format!("partition {partition}: snapshot header is corrupt")
                })?;
                metas.push(meta);
            }
        }
        Ok(metas)
    }

    /// One chunk of a stored snapshot.
    pub fn snapshot_chunk(
        &self,
        partition: u32,
        index: u64,
        number: u32,
    ) -> anyhow::Result<Vec<u8>> {
        self.get(CF_SNAPSHOTS, &snapshot_chunk_key(partition, index, number))?
            .with_context(|| {
                format!("partition {partition}: chunk {number} of snapshot {index} is missing")
            })
    }

    /// Deletes a stored snapshot, header and chunks in one write.
    pub fn delete_snapshot(&self, partition: u32, index: u64) -> anyhow::Result<()> {
        let cf = self.cf(CF_SNAPSHOTS);
        let mut batch = WriteBatch::default();
        batch.delete_cf(cf, snapshot_header_key(partition, index));
        batch.delete_range_cf(
            cf,
            snapshot_chunk_key(partition, index, 0),
            snapshot_chunk_key(partition, index, u32::MAX),
        );
        batch.delete_cf(cf, snapshot_chunk_key(partition, index, u32::MAX));
        self.write(batch, false)
    }
}

const SNAPSHOT_HEADER: u8 = 0;
const SNAPSHOT_CHUNK: u8 = 1;

fn snapshot_header_key(partition: u32, index: u64) -> [u8; 13] {
    let mut key = [0u8; 13];
    key[..12].copy_from_slice(&index_key(partition, index));
    key[12] = SNAPSHOT_HEADER;
    key
}

fn snapshot_chunk_key(partition: u32, index: u64, number: u32) -> [u8; 17] {
    let mut key = [0u8; 17];
    key[..12].copy_from_slice(&index_key(partition, index));
    key[12] = SNAPSHOT_CHUNK;
    key[13..].copy_from_slice(&number.to_be_bytes());
    key
}

/// The raft log and raft state of one partition: raft-rs reads it through `raft::Storage`,
/// the store loop writes it through `append` and `set_hard_state` into the round's batch.
///
/// Bookkeeping (hard state, conf state, first/last index) lives in memory; recent entries are
/// cached so building appends for followers rarely touches RocksDB.
pub struct PartitionStorage {
    db: Arc<Db>,
    partition: u32,
    hard_state: HardState,
    /// The membership as of the applied index, and the index of the entry that last changed
    /// it (0: the group's first membership).
    conf_state: ConfState,
    conf_index: u64,
    /// Raft asked for a snapshot this node's newest one cannot serve: it is older than the
    /// last membership change (a snapshot carries the membership at its index, and a node
    /// added since then would find itself missing from it). The loop takes a new one.
    snapshot_wanted: std::cell::Cell<bool>,
    /// Index and term of the last entry dropped from the log by compaction or replaced by an
    /// installed snapshot ((0, 0) while the log is whole). The log starts right after it.
    compacted: (u64, u64),
    /// The newest stored snapshot, what raft sends a follower behind the compaction point.
    snapshot: Option<SnapshotMeta>,
    first_index: u64,
    last_index: u64,
    /// Entries `cache[0].index ..= last_index`, contiguous.
    cache: VecDeque<Entry>,
    applied_index: u64,
}

impl PartitionStorage {
    /// Loads a partition's raft state, or bootstraps it with `voters` on first start. Every
    /// node bootstraps the same way (empty log, same voters), so no snapshot is needed to
    /// form the group. A replica created later (a leader added this node) bootstraps with the
    /// group's first voters too: it then applies the log, or installs a snapshot, from there.
    pub fn open(db: Arc<Db>, partition: u32, voters: &[u64]) -> anyhow::Result<PartitionStorage> {
        let hard_state = match db.get(CF_RAFT_STATE, &state_key(partition, STATE_HARD))? {
            Some(bytes) => HardState::parse_from_bytes(&bytes).context("hard state is corrupt")?,
            None => HardState::default(),
        };
        let conf_state = match db.get(CF_RAFT_STATE, &state_key(partition, STATE_CONF))? {
            Some(bytes) => ConfState::parse_from_bytes(&bytes).context("conf state is corrupt")?,
            None => {
                let conf_state = first_membership(voters);
                let mut batch = WriteBatch::default();
                db.put_conf_state(&mut batch, partition, &conf_state)?;
                db.write(batch, true)?;
                conf_state
            }
        };
        let conf_index = match db.get(CF_RAFT_STATE, &state_key(partition, STATE_CONF_INDEX))? {
            Some(bytes) => u64::from_be_bytes(
                bytes[..]
                    .try_into()
                    .context("membership change index is corrupt")?,
            ),
            None => 0,
        };
        let applied_index = match db.get(CF_RAFT_STATE, &state_key(partition, STATE_APPLIED))? {
            Some(bytes) => {
                u64::from_be_bytes(bytes[..].try_into().context("applied index is corrupt")?)
            }
            None => 0,
        };
        let compacted = match db.get(CF_RAFT_STATE, &state_key(partition, STATE_COMPACTED))? {
            Some(bytes) => decode_compacted(&bytes).context("compaction point is corrupt")?,
            None => (0, 0),
        };
        let last_index = db
            .last_index(CF_RAFT_LOG, partition)?
            .unwrap_or(0)
            .max(compacted.0);
        assert!(
            applied_index <= hard_state.commit,
            "partition {partition}: applied index {applied_index} is ahead of commit {}",
            hard_state.commit
        );
        assert!(
            hard_state.commit <= last_index,
            "partition {partition}: commit {} is beyond the last stored entry {last_index}",
            hard_state.commit
        );
        Ok(PartitionStorage {
            db,
            partition,
            hard_state,
            conf_state,
            conf_index,
            snapshot_wanted: std::cell::Cell::new(false),
            compacted,
            snapshot: None,
            first_index: compacted.0 + 1,
            last_index,
            cache: VecDeque::new(),
            applied_index,
        })
    }

    pub fn applied_index(&self) -> u64 {
        self.applied_index
    }

    /// The partition's membership as of the applied index.
    pub fn conf_state(&self) -> &ConfState {
        &self.conf_state
    }

    /// The index of the entry that last changed the membership (0: none did).
    pub fn conf_index(&self) -> u64 {
        self.conf_index
    }

    /// Records a membership change applied at `index` in the apply batch.
    pub fn set_conf_state(
        &mut self,
        conf_state: ConfState,
        index: u64,
        batch: &mut WriteBatch,
    ) -> anyhow::Result<()> {
        self.db.put_conf_state(batch, self.partition, &conf_state)?;
        batch.put_cf(
            self.db.cf(CF_RAFT_STATE),
            state_key(self.partition, STATE_CONF_INDEX),
            index.to_be_bytes(),
        );
        self.conf_state = conf_state;
        self.conf_index = index;
        Ok(())
    }

    /// Whether raft asked for a snapshot newer than the stored one (see `snapshot_wanted`);
    /// clears the request.
    pub fn take_snapshot_wanted(&self) -> bool {
        self.snapshot_wanted.replace(false)
    }

    /// First index still in the log (everything before it is covered by a snapshot).
    pub fn first_log_index(&self) -> u64 {
        self.first_index
    }

    /// The snapshot raft sends to followers behind the compaction point.
    pub fn snapshot_meta(&self) -> Option<&SnapshotMeta> {
        self.snapshot.as_ref()
    }

    /// Makes a durable snapshot available to raft (it must cover an applied index).
    pub fn set_snapshot(&mut self, meta: SnapshotMeta) {
        assert!(
            meta.index <= self.applied_index,
            "partition {}: snapshot {} is beyond the applied index {}",
            self.partition,
            meta.index,
            self.applied_index
        );
        if self
            .snapshot
            .as_ref()
            .is_none_or(|current| current.index < meta.index)
        {
            self.snapshot = Some(meta);
        }
    }

    /// Drops the log up to and including `index`, which a durable snapshot covers. The term
    /// of `index` is kept: raft checks the entry before the first one it sends.
    pub fn compact(&mut self, index: u64, batch: &mut WriteBatch) -> anyhow::Result<()> {
        assert!(
            self.snapshot
                .as_ref()
                .is_some_and(|snapshot| index <= snapshot.index),
            "partition {}: compacting to {index} beyond the snapshot",
            self.partition
        );
        if index < self.first_index {
            return Ok(());
        }
        let term = raft::Storage::term(self, index)
            .with_context(|| format!("partition {}: term of {index}", self.partition))?;
        batch.delete_range_cf(
            self.db.cf(CF_RAFT_LOG),
            index_key(self.partition, self.first_index),
            index_key(self.partition, index + 1),
        );
        self.set_compacted((index, term), batch);
        while self.cache.front().is_some_and(|entry| entry.index <= index) {
            self.cache.pop_front();
        }
        Ok(())
    }

    /// Replaces the whole log by a snapshot received from the leader: the log restarts after
    /// the snapshot's index, which is also the new commit and applied index.
    pub fn install_snapshot(
        &mut self,
        meta: SnapshotMeta,
        conf_state: ConfState,
        batch: &mut WriteBatch,
    ) -> anyhow::Result<()> {
        self.set_conf_state(conf_state, meta.index, batch)?;
        batch.delete_range_cf(
            self.db.cf(CF_RAFT_LOG),
            index_key(self.partition, self.first_index),
            index_key(self.partition, self.last_index + 1),
        );
        self.set_compacted((meta.index, meta.term), batch);
        self.cache.clear();
        self.last_index = meta.index;
        let mut hard_state = self.hard_state.clone();
        hard_state.commit = hard_state.commit.max(meta.index);
        self.set_hard_state(&hard_state, batch)?;
        self.applied_index = meta.index;
        batch.put_cf(
            self.db.cf(CF_RAFT_STATE),
            state_key(self.partition, STATE_APPLIED),
            meta.index.to_be_bytes(),
        );
        self.snapshot = Some(meta);
        Ok(())
    }

    fn set_compacted(&mut self, compacted: (u64, u64), batch: &mut WriteBatch) {
        self.compacted = compacted;
        self.first_index = compacted.0 + 1;
        let mut bytes = [0u8; 16];
        bytes[..8].copy_from_slice(&compacted.0.to_be_bytes());
        bytes[8..].copy_from_slice(&compacted.1.to_be_bytes());
        batch.put_cf(
            self.db.cf(CF_RAFT_STATE),
            state_key(self.partition, STATE_COMPACTED),
            bytes,
        );
    }

    /// Appends entries from a Ready, replacing any conflicting suffix.
    pub fn append(&mut self, entries: &[Entry], batch: &mut WriteBatch) -> anyhow::Result<()> {
        let Some(first) = entries.first() else {
            return Ok(());
        };
        let last = entries.last().expect("non-empty").index;
        assert!(
            first.index >= self.first_index && first.index <= self.last_index + 1,
            "partition {}: append at {} leaves a gap after {}",
            self.partition,
            first.index,
            self.last_index
        );
        let cf = self.db.cf(CF_RAFT_LOG);
        if first.index <= self.last_index {
            // A new leader overwrote our uncommitted suffix: drop it.
            batch.delete_range_cf(
                cf,
                index_key(self.partition, first.index),
                index_key(self.partition, self.last_index + 1),
            );
            while self
                .cache
                .back()
                .is_some_and(|entry| entry.index >= first.index)
            {
                self.cache.pop_back();
            }
        }
        for entry in entries {
            batch.put_cf(
                cf,
                index_key(self.partition, entry.index),
                entry.write_to_bytes()?,
            );
        }
        if self
            .cache
            .back()
            .is_some_and(|entry| entry.index + 1 != first.index)
        {
            self.cache.clear();
        }
        self.cache.extend(entries.iter().cloned());
        while self.cache.len() > limits::ENTRY_CACHE_ENTRIES_MAX {
            self.cache.pop_front();
        }
        self.last_index = last;
        Ok(())
    }

    pub fn set_hard_state(
        &mut self,
        hard_state: &HardState,
        batch: &mut WriteBatch,
    ) -> anyhow::Result<()> {
        self.hard_state = hard_state.clone();
        batch.put_cf(
            self.db.cf(CF_RAFT_STATE),
            state_key(self.partition, STATE_HARD),
            hard_state.write_to_bytes()?,
        );
        Ok(())
    }

    /// Records the applied index (and the commit index it implies) in the apply batch, so the
    /// durable applied index never exceeds the durable commit index.
    pub fn set_applied(
        &mut self,
        applied_index: u64,
        commit: u64,
        batch: &mut WriteBatch,
    ) -> anyhow::Result<()> {
        assert!(
            applied_index <= commit,
            "applied {applied_index} > commit {commit}"
        );
        assert!(
            applied_index >= self.applied_index,
            "applied index went backwards"
        );
        self.applied_index = applied_index;
        if commit > self.hard_state.commit {
            let mut hard_state = self.hard_state.clone();
            hard_state.commit = commit;
            self.set_hard_state(&hard_state, batch)?;
        }
        batch.put_cf(
            self.db.cf(CF_RAFT_STATE),
            state_key(self.partition, STATE_APPLIED),
            applied_index.to_be_bytes(),
        );
        Ok(())
    }

    fn cached(&self, index: u64) -> Option<&Entry> {
        let front = self.cache.front()?.index;
        if index < front {
            return None;
        }
        self.cache.get((index - front) as usize)
    }

    fn read_entry(&self, index: u64) -> raft::Result<Entry> {
        if let Some(entry) = self.cached(index) {
            return Ok(entry.clone());
        }
        let bytes = self
            .db
            .get(CF_RAFT_LOG, &index_key(self.partition, index))
            .map_err(|error| raft::Error::Store(StorageError::Other(error.into())))?
            .ok_or(raft::Error::Store(StorageError::Unavailable))?;
        let entry = Entry::parse_from_bytes(&bytes).map_err(raft::Error::CodecError)?;
        assert_eq!(
            entry.index, index,
            "raft log entry stored under the wrong key"
        );
        Ok(entry)
    }
}

impl raft::Storage for PartitionStorage {
    fn initial_state(&self) -> raft::Result<RaftState> {
        Ok(RaftState {
            hard_state: self.hard_state.clone(),
            conf_state: self.conf_state.clone(),
        })
    }

    fn entries(
        &self,
        low: u64,
        high: u64,
        max_size: impl Into<Option<u64>>,
        _context: GetEntriesContext,
    ) -> raft::Result<Vec<Entry>> {
        if low < self.first_index {
            return Err(raft::Error::Store(StorageError::Compacted));
        }
        assert!(
            high <= self.last_index + 1,
            "entries [{low}, {high}) beyond last index {}",
            self.last_index
        );
        let max_size = max_size.into().unwrap_or(u64::MAX);
        let mut entries = Vec::new();
        let mut size = 0u64;
        for index in low..high {
            let entry = self.read_entry(index)?;
            size += protobuf::Message::compute_size(&entry) as u64;
            // Always return at least one entry, then stop at the size budget.
            if !entries.is_empty() && size > max_size {
                break;
            }
            entries.push(entry);
        }
        Ok(entries)
    }

    fn term(&self, index: u64) -> raft::Result<u64> {
        if index == self.compacted.0 {
            return Ok(self.compacted.1);
        }
        if index < self.first_index {
            return Err(raft::Error::Store(StorageError::Compacted));
        }
        if index > self.last_index {
            return Err(raft::Error::Store(StorageError::Unavailable));
        }
        Ok(self.read_entry(index)?.term)
    }

    fn first_index(&self) -> raft::Result<u64> {
        Ok(self.first_index)
    }

    fn last_index(&self) -> raft::Result<u64> {
        Ok(self.last_index)
    }

    /// Only the snapshot's position travels in the raft message; the follower fetches the
    /// state itself (`PeerService.FetchSnapshot`) before it lets raft install it.
    /// The membership sent is the current one, which is the snapshot's as long as no change
    /// applied after it; otherwise a newer snapshot is asked for (`snapshot_wanted`).
    fn snapshot(&self, request_index: u64, _to: u64) -> raft::Result<Snapshot> {
        let Some(meta) = self.snapshot.as_ref().filter(|snapshot| {
            snapshot.index >= request_index && snapshot.index >= self.conf_index
        }) else {
            self.snapshot_wanted.set(true);
            return Err(raft::Error::Store(
                StorageError::SnapshotTemporarilyUnavailable,
            ));
        };
        let mut snapshot = Snapshot::default();
        let metadata = snapshot.mut_metadata();
        metadata.index = meta.index;
        metadata.term = meta.term;
        metadata.set_conf_state(self.conf_state.clone());
        Ok(snapshot)
    }
}

/// A failed write is all or nothing: `storage::write` leaves no key of the batch, a failed
/// fsync (`storage::fsync`) every key, before and after reopening the database.
#[cfg(all(test, feature = "failpoints"))]
mod failpoint_tests {
    use super::*;
    use crate::failpoints::{STORAGE_FSYNC, STORAGE_WRITE};

    /// A batch like a store round's: raft entries and hard state, events, applied index.
    fn round_batch(db: &Db) -> (WriteBatch, Vec<(&'static str, Vec<u8>)>) {
        let keys = vec![
            (CF_RAFT_LOG, index_key(0, 7).to_vec()),
            (CF_RAFT_LOG, index_key(0, 8).to_vec()),
            (CF_RAFT_STATE, state_key(0, STATE_HARD).to_vec()),
            (CF_EVENTS, index_key(0, 7).to_vec()),
            (CF_RAFT_STATE, state_key(0, STATE_APPLIED).to_vec()),
        ];
        let mut batch = WriteBatch::default();
        for (cf, key) in &keys {
            batch.put_cf(db.cf(cf), key, b"value");
        }
        (batch, keys)
    }

    fn present(db: &Db, keys: &[(&str, Vec<u8>)]) -> usize {
        keys.iter()
            .filter(|(cf, key)| db.get(cf, key).expect("read").is_some())
            .count()
    }

    fn fail_one_write(failpoint: &str, action: &str, sync: bool) -> usize {
        let dir = tempfile::tempdir().expect("temp dir");
        let scenario = fail::FailScenario::setup();
        let db = Db::open(dir.path(), 1, 1).expect("open");
        let (batch, keys) = round_batch(&db);
        fail::cfg(failpoint, action).expect("failpoint");
        let error = db.write(batch, sync).expect_err("the injected failure");
        assert!(format!("{error:#}").contains(failpoint), "{error:#}");
        scenario.teardown();
        let visible = present(&db, &keys);
        drop(db);
        let reopened = Db::open(dir.path(), 1, 1).expect("reopen");
        assert_eq!(
            present(&reopened, &keys),
            visible,
            "the same after reopening"
        );
        assert!(
            visible == 0 || visible == keys.len(),
            "{visible} of {} keys",
            keys.len()
        );
        visible
    }

    #[test]
    fn failed_write_writes_nothing() {
        assert_eq!(fail_one_write(STORAGE_WRITE, "return", true), 0);
        assert_eq!(fail_one_write(STORAGE_WRITE, "return(unsynced)", false), 0);
    }

    #[test]
    fn failed_fsync_leaves_the_whole_batch_written() {
        assert_eq!(fail_one_write(STORAGE_FSYNC, "return", true), 5);
    }

    #[test]
    fn kind_argument_spares_the_other_kind() {
        let dir = tempfile::tempdir().expect("temp dir");
        let scenario = fail::FailScenario::setup();
        let db = Db::open(dir.path(), 1, 1).expect("open");
        fail::cfg(STORAGE_WRITE, "return(synced)").expect("failpoint");
        let (batch, keys) = round_batch(&db);
        db.write(batch, false).expect("unsynced writes pass");
        assert_eq!(present(&db, &keys), keys.len());
        let (batch, _) = round_batch(&db);
        db.write(batch, true).expect_err("synced writes fail");
        scenario.teardown();
    }
}

#[cfg(test)]
mod tests {
    use ledger::{Currency, EntryMeta, Record, TransferCommand, TransferRecord, TransferStatus};
    use rocksdb::DBCompactionStyle;

    use super::*;

    fn record(id: u128) -> Record {
        Record::Transfer(TransferRecord {
            transfer: TransferCommand {
                transaction_id: uuid::Uuid::from_u128(id),
                from: format!("a-{id}"),
                to: "b".into(),
                amount_minor: 5,
                currency: Currency::parse("USD").expect("USD"),
                annotations: None,
            },
            status: TransferStatus::Completed,
            meta: EntryMeta {
                index: 3,
                timestamp_ms: 1,
            },
            settlement: None,
        })
    }

    fn put_records(db: &Db, ids: std::ops::Range<u128>) {
        let mut batch = WriteBatch::default();
        for id in ids {
            db.put_record(&mut batch, 0, &record(id));
        }
        db.write(batch, true).expect("write");
    }

    /// `records` moved from leveled to universal compaction: what a node wrote under leveled
    /// compaction, compacted into the bottom level, opens and reads back as it is, and new
    /// records go on next to it.
    #[test]
    fn records_written_under_leveled_compaction_open_under_universal() {
        let dir = tempfile::tempdir().expect("temp dir");
        drop(Db::open(dir.path(), 1, 1).expect("create"));
        {
            let families = FAMILIES.into_iter().map(|name| {
                let mut options = family_options(name);
                if name == CF_RECORDS {
                    options.set_compaction_style(DBCompactionStyle::Level);
                }
                ColumnFamilyDescriptor::new(name, options)
            });
            let leveled = Db {
                db: DB::open_cf_descriptors(&Options::default(), dir.path(), families)
                    .expect("leveled"),
                migrate_from: None,
            };
            put_records(&leveled, 0..2_000);
            leveled
                .db
                .compact_range_cf(leveled.cf(CF_RECORDS), None::<&[u8]>, None::<&[u8]>);
            let in_levels: u64 = (1..7)
                .filter_map(|level| {
                    leveled.property_int(CF_RECORDS, &format!("rocksdb.num-files-at-level{level}"))
                })
                .sum();
            assert!(in_levels > 0, "the leveled files left level 0");
        }
        let db = Db::open(dir.path(), 1, 1).expect("reopen under universal compaction");
        put_records(&db, 2_000..4_000);
        db.db
            .compact_range_cf(db.cf(CF_RECORDS), None::<&[u8]>, None::<&[u8]>);
        let ids: Vec<u128> = (0..4_000).collect();
        let found = db.records(0, &ids).expect("read");
        assert_eq!(found.len(), ids.len());
        for id in [0, 1_999, 2_000, 3_999] {
            assert_eq!(db.record(0, id).expect("read"), Some(record(id)));
        }
        assert_eq!(db.record(0, 4_000).expect("read"), None);
    }
}
