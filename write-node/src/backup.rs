//! Backups of a cluster's event logs, their offline check and the restore of a new cluster's
//! data from them (`walletctl backup | verify --backup | restore`).
//!
//! A backup is a directory (format [`FORMAT_VERSION`]):
//! - `manifest.json` ([`Manifest`]): the format, the cluster's partition count, and per
//!   partition the index it was backed up to, the chain head and state digest at that index,
//!   and the ledger's totals there (recomputed by replay when the backup was taken).
//! - `partition-NNNNN.blocks`, one per partition: a header (`FILE_MAGIC`, the format
//!   version and the partition, u32 BE each) then every event block of the partition from
//!   genesis to its index, in index order, each as `index u64 BE | length u32 BE | the block
//!   as a write node stores it` (`codec::encode_events`: version, chain hash, encoded block).
//!   Entries without events have no block, as in the `events` column family.
//!
//! A block is checked against the hash chain when it is written ([`PartitionWriter`]), when
//! a backup is verified ([`verify`]) and when it is restored ([`restore`]): the files carry
//! the chains, so a restored partition's digest is the source's at the backed-up index.
//!
//! A restore writes, for each new node, what a write node of this version would hold after
//! installing a raft snapshot at the backed-up index: the event blocks, the `records` of
//! every finished transfer (`replay::rebuild_records`), a stored snapshot of the replayed
//! ledger, and raft state whose log starts after that index (`PartitionStorage::
//! install_snapshot`), all through the node's own storage code.

use std::fs::File;
use std::io::{BufReader, BufWriter, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{Context, bail, ensure};
use ledger::{Currency, Ledger, format_minor};
use raft::eraftpb::HardState;
use rocksdb::WriteBatch;
use serde::{Deserialize, Serialize};

use crate::audit::{Broken, Folded, State, Until, apply_streamed_stored, conservation_problem};
use crate::codec::CHAIN_GENESIS;
use crate::replay;
use crate::storage::{CF_EVENTS, Db, PartitionStorage, SnapshotMeta, index_key};

/// Version of the backup layout (manifest and partition files); bumped on any change.
pub const FORMAT_VERSION: u32 = 1;
/// `format` field of every manifest.
const MANIFEST_FORMAT: &str = "wallet-backup";
/// The manifest's file name in a backup directory.
pub const MANIFEST_FILE: &str = "manifest.json";
/// First bytes of every partition file.
const FILE_MAGIC: &[u8; 8] = b"WLTBKUP\0";
/// Largest stored block a partition file may hold: a length above it is corruption, found
/// before anything that size is allocated. A block is one raft entry's events, which
/// `limits::ENTRY_BYTES_MAX` bounds far below this.
const BLOCK_BYTES_MAX: u32 = 64 * 1024 * 1024;
/// The raft term of every restored partition's starting point (a new cluster's history
/// starts there; its first election moves to the next term).
const RESTORED_TERM: u64 = 1;
/// Blocks written per RocksDB batch while restoring.
const RESTORE_BATCH_BLOCKS: usize = 4_096;

/// A backup's `manifest.json`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Manifest {
    /// Always `"wallet-backup"`.
    pub format: String,
    /// [`FORMAT_VERSION`] of the writer.
    pub version: u32,
    /// When the backup was taken, milliseconds since the Unix epoch.
    pub created_at_ms: u64,
    /// The cluster's partition count.
    pub partition_count: u32,
    /// The partitions backed up (all of them unless the backup was asked for fewer), in
    /// partition order.
    pub partitions: Vec<PartitionManifest>,
}

/// One partition of a backup, as the manifest describes it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PartitionManifest {
    pub partition: u32,
    /// The raft index the partition was backed up to (its state includes every entry up to
    /// it, with or without events).
    pub index: u64,
    /// Event blocks in the file.
    pub blocks: u64,
    /// Hex chain head at `index`.
    pub chain_head: String,
    /// Hex state digest at `index`, as `GetClusterStatus` reports it.
    pub state_digest: String,
    pub accounts: u64,
    /// Every transfer and credit record the partition ever decided.
    pub transfers: u64,
    /// Per currency: the sum of balances and the outflow (money in flight to other
    /// partitions), exact decimals.
    pub totals: Vec<CurrencyTotal>,
    /// The partition file's name in the backup directory.
    pub file: String,
}

/// A currency's totals in one partition.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CurrencyTotal {
    pub currency: String,
    pub balances: String,
    pub outflow: String,
}

impl Manifest {
    /// A manifest of `partitions`, taken now.
    pub fn new(partition_count: u32, partitions: Vec<PartitionManifest>) -> Manifest {
        let created_at_ms = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |since| since.as_millis() as u64);
        Manifest {
            format: MANIFEST_FORMAT.into(),
            version: FORMAT_VERSION,
            created_at_ms,
            partition_count,
            partitions,
        }
    }

    /// Reads and checks a backup directory's manifest: its format and version, and
    /// partitions within the count, each once, in order.
    pub fn read(backup: &Path) -> anyhow::Result<Manifest> {
        let path = backup.join(MANIFEST_FILE);
        let text = std::fs::read_to_string(&path).with_context(|| {
            format!(
                "{} is not a backup: reading {MANIFEST_FILE}",
                backup.display()
            )
        })?;
        let manifest: Manifest = serde_json::from_str(&text)
            .with_context(|| format!("{} is not a valid backup manifest", path.display()))?;
        ensure!(
            manifest.format == MANIFEST_FORMAT,
            "{}: format {:?}, not {MANIFEST_FORMAT:?}",
            path.display(),
            manifest.format
        );
        ensure!(
            manifest.version == FORMAT_VERSION,
            "{}: backup format version {}, this binary reads version {FORMAT_VERSION}",
            path.display(),
            manifest.version
        );
        let numbers: Vec<u32> = manifest.partitions.iter().map(|p| p.partition).collect();
        ensure!(
            numbers.windows(2).all(|pair| pair[0] < pair[1])
                && numbers.iter().all(|&p| p < manifest.partition_count),
            "{}: partitions {numbers:?} are not distinct, ordered and below the count {}",
            path.display(),
            manifest.partition_count
        );
        Ok(manifest)
    }

    /// Writes the manifest into `dir` and syncs it.
    pub fn write(&self, dir: &Path) -> anyhow::Result<()> {
        let path = dir.join(MANIFEST_FILE);
        let text = serde_json::to_string_pretty(self).context("encoding the manifest")?;
        let mut file =
            File::create(&path).with_context(|| format!("creating {}", path.display()))?;
        file.write_all(text.as_bytes())
            .and_then(|()| file.sync_all())
            .with_context(|| format!("writing {}", path.display()))
    }
}

/// The file name of a partition's blocks.
pub fn partition_file_name(partition: u32) -> String {
    format!("partition-{partition:05}.blocks")
}

/// Lower-case hex of bytes (digests and chain heads in manifests and reports).
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|byte| format!("{byte:02x}")).collect()
}

/// What the manifest says of a partition whose state at `state.index` is `state`.
fn describe(partition: u32, state: &State, blocks: u64) -> PartitionManifest {
    let outflow = state.ledger.outflow_by_currency();
    let totals = state
        .ledger
        .totals_by_currency()
        .iter()
        .map(|(currency, total)| currency_total(*currency, *total, outflow))
        .collect();
    PartitionManifest {
        partition,
        index: state.index,
        blocks,
        chain_head: hex(&state.chain_head),
        state_digest: hex(&state.digest()),
        accounts: state.ledger.accounts_count() as u64,
        transfers: state.ledger.transfers_count(),
        totals,
        file: partition_file_name(partition),
    }
}

fn currency_total(
    currency: Currency,
    total: i128,
    outflow: &std::collections::BTreeMap<Currency, i128>,
) -> CurrencyTotal {
    CurrencyTotal {
        currency: currency.code().into(),
        balances: format_minor(total, currency),
        outflow: format_minor(outflow.get(&currency).copied().unwrap_or(0), currency),
    }
}

/// Writes one partition's file while its blocks stream in from a node, folding them (chain
/// checked, as `audit::apply_streamed`) so the manifest can name the state at the end. Holds
/// the partition's ledger, never its log: each block goes to disk as it arrives.
pub struct PartitionWriter {
    partition: u32,
    path: PathBuf,
    file: BufWriter<File>,
    state: State,
    blocks: u64,
}

impl PartitionWriter {
    /// Creates the partition's file in `dir` (which must not hold one yet).
    pub fn create(dir: &Path, partition: u32) -> anyhow::Result<PartitionWriter> {
        let path = dir.join(partition_file_name(partition));
        let file =
            File::create_new(&path).with_context(|| format!("creating {}", path.display()))?;
        let mut file = BufWriter::new(file);
        let mut header = FILE_MAGIC.to_vec();
        header.extend(FORMAT_VERSION.to_be_bytes());
        header.extend(partition.to_be_bytes());
        file.write_all(&header)
            .with_context(|| format!("writing {}", path.display()))?;
        Ok(PartitionWriter {
            partition,
            path,
            file,
            state: State::genesis(),
            blocks: 0,
        })
    }

    /// Reopens a partition file this process wrote and [`finish`](Self::finish)ed, to append
    /// more blocks: its blocks are folded again (chain checked) to rebuild the state.
    pub fn resume(dir: &Path, partition: u32) -> anyhow::Result<PartitionWriter> {
        let path = dir.join(partition_file_name(partition));
        let mut state = State::genesis();
        let (mut blocks, mut last) = (0u64, 0u64);
        let reader = PartitionReader::open_file(path.clone(), partition)?;
        replay::fold_blocks(
            partition,
            &mut state,
            Until::Index(u64::MAX),
            reader,
            |folded, _| {
                blocks += 1;
                last = folded.index;
            },
        )?;
        // `fold_blocks` moves the index to its target; the last block's is the file's end.
        state.index = last;
        let file = std::fs::OpenOptions::new()
            .append(true)
            .open(&path)
            .with_context(|| format!("reopening {}", path.display()))?;
        Ok(PartitionWriter {
            partition,
            path,
            file: BufWriter::new(file),
            state,
            blocks,
        })
    }

    /// The last index written (0 before any block).
    pub fn index(&self) -> u64 {
        self.state.index
    }

    /// The partition's ledger after the last block written (transfers in flight included).
    pub fn ledger(&self) -> &Ledger {
        &self.state.ledger
    }

    /// Checks a streamed block against the chain and appends it. `Ok(Err)`: the block does
    /// not follow (nothing written; ask another node); `Err`: the file could not be written.
    pub fn append_streamed(
        &mut self,
        block: &proto::v1::SubscribeResponse,
    ) -> anyhow::Result<Result<Folded, Broken>> {
        if block.index <= self.state.index {
            return Ok(Err(Broken {
                index: block.index,
                problem: format!(
                    "block {} repeats or precedes {}",
                    block.index, self.state.index
                ),
                state_index: self.state.index,
            }));
        }
        let mut next = self.state.clone();
        let (folded, stored) = match apply_streamed_stored(&mut next, block) {
            Ok(applied) => applied,
            Err(broken) => return Ok(Err(broken)),
        };
        let length = u32::try_from(stored.len())
            .ok()
            .filter(|&length| length <= BLOCK_BYTES_MAX)
            .with_context(|| format!("block {} is {} bytes", block.index, stored.len()))?;
        let mut record = Vec::with_capacity(12 + stored.len());
        record.extend(block.index.to_be_bytes());
        record.extend(length.to_be_bytes());
        record.extend(stored);
        self.file
            .write_all(&record)
            .with_context(|| format!("writing {}", self.path.display()))?;
        self.state = next;
        self.blocks += 1;
        Ok(Ok(folded))
    }

    /// Ends the file at `index` (at or after the last block: the entries after it had no
    /// events), synced; returns the partition's manifest entry.
    pub fn finish(mut self, index: u64) -> anyhow::Result<PartitionManifest> {
        ensure!(
            index >= self.state.index,
            "partition {}: ends at {index}, before its last block {}",
            self.partition,
            self.state.index
        );
        self.file
            .flush()
            .and_then(|()| self.file.get_ref().sync_all())
            .with_context(|| format!("syncing {}", self.path.display()))?;
        self.state.index = index;
        Ok(describe(self.partition, &self.state, self.blocks))
    }
}

/// The blocks of a partition file, in order: `(index, stored block)`.
struct PartitionReader {
    path: PathBuf,
    file: BufReader<File>,
    /// Bytes read so far (for messages).
    offset: u64,
    done: bool,
}

impl PartitionReader {
    fn open(backup: &Path, entry: &PartitionManifest) -> anyhow::Result<PartitionReader> {
        ensure!(
            entry.file == partition_file_name(entry.partition),
            "partition {}: the manifest names file {:?}",
            entry.partition,
            entry.file
        );
        PartitionReader::open_file(backup.join(&entry.file), entry.partition)
    }

    fn open_file(path: PathBuf, partition: u32) -> anyhow::Result<PartitionReader> {
        let file = File::open(&path)
            .with_context(|| format!("partition {partition}: {} is missing", path.display()))?;
        let mut reader = PartitionReader {
            path,
            file: BufReader::new(file),
            offset: 0,
            done: false,
        };
        let mut header = [0u8; FILE_MAGIC.len() + 8];
        ensure!(
            reader.read_exact_or_end(&mut header)?,
            "{} is empty",
            reader.path.display()
        );
        let version = u32::from_be_bytes(header[8..12].try_into().expect("4 bytes"));
        let found = u32::from_be_bytes(header[12..16].try_into().expect("4 bytes"));
        ensure!(
            &header[..8] == FILE_MAGIC && version == FORMAT_VERSION,
            "{} is not a partition file of backup format {FORMAT_VERSION}",
            reader.path.display()
        );
        ensure!(
            found == partition,
            "{} holds partition {found}, not {partition}",
            reader.path.display()
        );
        Ok(reader)
    }

    /// Fills `buffer`; `false` at a clean end of file (nothing read); an error when the file
    /// ends inside it.
    fn read_exact_or_end(&mut self, buffer: &mut [u8]) -> anyhow::Result<bool> {
        let mut filled = 0;
        while filled < buffer.len() {
            let read = self
                .file
                .read(&mut buffer[filled..])
                .with_context(|| format!("reading {}", self.path.display()))?;
            if read == 0 {
                ensure!(
                    filled == 0,
                    "{} is truncated at byte {}",
                    self.path.display(),
                    self.offset + filled as u64
                );
                return Ok(false);
            }
            filled += read;
        }
        self.offset += filled as u64;
        Ok(true)
    }

    fn next_block(&mut self) -> anyhow::Result<Option<(u64, Vec<u8>)>> {
        let mut head = [0u8; 12];
        if !self.read_exact_or_end(&mut head)? {
            return Ok(None);
        }
        let index = u64::from_be_bytes(head[..8].try_into().expect("8 bytes"));
        let length = u32::from_be_bytes(head[8..].try_into().expect("4 bytes"));
        ensure!(
            length <= BLOCK_BYTES_MAX,
            "{}: block {index} claims {length} bytes (at most {BLOCK_BYTES_MAX}): corrupt",
            self.path.display()
        );
        let mut block = vec![0u8; length as usize];
        if !self.read_exact_or_end(&mut block)? {
            bail!(
                "{} is truncated at byte {}",
                self.path.display(),
                self.offset
            );
        }
        Ok(Some((index, block)))
    }
}

impl Iterator for PartitionReader {
    type Item = anyhow::Result<(u64, Vec<u8>)>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.done {
            return None;
        }
        let item = self.next_block().transpose();
        self.done = !matches!(item, Some(Ok(_)));
        item
    }
}

/// Folds a partition file from genesis to the manifest's index (every chain link checked,
/// `each` after every block), then checks the file ends there: no block beyond the index.
fn fold_file(
    backup: &Path,
    entry: &PartitionManifest,
    mut each: impl FnMut(Folded, &State),
) -> Result<(State, u64), Broken> {
    let mut state = State::genesis();
    let broken = |index: u64, problem: String, state: &State| Broken {
        index,
        problem,
        state_index: state.index,
    };
    let reader = PartitionReader::open(backup, entry)
        .map_err(|error| broken(0, format!("{error:#}"), &state))?;
    let mut count = 0u64;
    let mut beyond = None;
    let mut blocks = reader.inspect(|item| {
        if let Ok((index, _)) = item
            && *index > entry.index
        {
            beyond.get_or_insert(*index);
        }
    });
    let folded = replay::fold_blocks(
        entry.partition,
        &mut state,
        Until::Index(entry.index),
        &mut blocks,
        |block, state| {
            count += 1;
            each(block, state);
        },
    );
    if let Err(error) = folded {
        let index = error.index().unwrap_or(state.index + 1);
        return Err(broken(index, error.to_string(), &state));
    }
    if let Some(index) = beyond {
        return Err(broken(
            index,
            format!("a block beyond the backed-up index {}", entry.index),
            &state,
        ));
    }
    Ok((state, count))
}

/// Compares what a partition's file replays to with its manifest entry.
fn check_against_manifest(
    entry: &PartitionManifest,
    state: &State,
    blocks: u64,
) -> Result<(), Broken> {
    let found = describe(entry.partition, state, blocks);
    if found == *entry {
        return Ok(());
    }
    Err(Broken {
        index: entry.index,
        problem: format!(
            "the blocks replay to another state than the manifest's (replayed: {} blocks, \
             chain head {}, digest {}; manifest: {} blocks, chain head {}, digest {})",
            found.blocks,
            found.chain_head,
            found.state_digest,
            entry.blocks,
            entry.chain_head,
            entry.state_digest
        ),
        state_index: state.index,
    })
}

/// One partition's verdict from [`verify`].
pub type PartitionVerdict = (u32, Result<PartitionManifest, Broken>);

/// Checks a backup offline: every partition the cluster has is present, every chain link,
/// conservation after every block, and that each file replays to its manifest entry (index,
/// chain head, digest, totals, counts). `Err` only when there is no readable manifest.
pub fn verify(
    backup: &Path,
    mut each: impl FnMut(u32, Folded),
) -> anyhow::Result<(Manifest, Vec<PartitionVerdict>)> {
    let manifest = Manifest::read(backup)?;
    let verdicts = manifest
        .partitions
        .iter()
        .map(|entry| {
            let mut imbalance = None;
            let folded = fold_file(backup, entry, |block, state| {
                if imbalance.is_none()
                    && let Some(problem) = conservation_problem(state)
                {
                    imbalance = Some((block.index, problem));
                }
                each(entry.partition, block);
            });
            let verdict = folded.and_then(|(state, blocks)| match imbalance {
                Some((index, problem)) => Err(Broken {
                    index,
                    problem,
                    state_index: state.index,
                }),
                None => check_against_manifest(entry, &state, blocks).map(|()| entry.clone()),
            });
            (entry.partition, verdict)
        })
        .collect();
    Ok((manifest, verdicts))
}

/// The partitions a backup misses, if it does not hold the whole cluster.
pub fn missing_partitions(manifest: &Manifest) -> Vec<u32> {
    (0..manifest.partition_count)
        .filter(|p| {
            !manifest
                .partitions
                .iter()
                .any(|entry| entry.partition == *p)
        })
        .collect()
}

/// A new node's data directory for [`restore`]: its node id and where its data goes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RestoredNode {
    pub node_id: u64,
    pub data_dir: PathBuf,
}

/// [`restore`] into `out/node-<id>` for node ids 1 to `nodes`. `out` must be absent or an
/// empty directory; a failed restore leaves it as it was.
pub fn restore_under(backup: &Path, out: &Path, nodes: u64) -> anyhow::Result<Vec<RestoredNode>> {
    ensure!(nodes >= 1, "a cluster needs at least one node");
    refuse_non_empty(out)?;
    let created = !out.exists();
    std::fs::create_dir_all(out).with_context(|| format!("creating {}", out.display()))?;
    let targets: Vec<RestoredNode> = (1..=nodes)
        .map(|node_id| RestoredNode {
            node_id,
            data_dir: out.join(format!("node-{node_id}")),
        })
        .collect();
    let restored = restore(backup, &targets);
    if restored.is_err() && created {
        let _ = std::fs::remove_dir_all(out);
    }
    restored.map(|()| targets)
}

/// Builds the data directories of a new cluster whose voters are `nodes`' ids (start each
/// node with its id, the backup's partition count and its directory): every partition starts
/// at the backup's state. Each directory must be absent or empty; each is built beside its
/// place and moved there only once all are complete, so a failed restore leaves nothing. Every
/// block is checked again against the chain and every partition against its manifest entry.
pub fn restore(backup: &Path, nodes: &[RestoredNode]) -> anyhow::Result<()> {
    let mut ids: Vec<u64> = nodes.iter().map(|node| node.node_id).collect();
    ids.sort_unstable();
    ids.dedup();
    ensure!(
        !nodes.is_empty() && ids.len() == nodes.len() && ids[0] >= 1,
        "node ids must be distinct and at least 1: {:?}",
        nodes.iter().map(|node| node.node_id).collect::<Vec<_>>()
    );
    let manifest = Manifest::read(backup)?;
    let missing = missing_partitions(&manifest);
    ensure!(
        missing.is_empty(),
        "the backup lacks partitions {missing:?} of {}: a cluster is restored whole",
        manifest.partition_count
    );
    for node in nodes {
        refuse_non_empty(&node.data_dir)?;
    }
    let mut building = Vec::new();
    for node in nodes {
        building.push(RestoredNode {
            node_id: node.node_id,
            data_dir: sibling(&node.data_dir, "restoring")?,
        });
    }
    let restored = build_nodes(backup, &manifest, &building, &ids)
        .and_then(|()| move_into_place(&building, nodes));
    if restored.is_err() {
        for node in &building {
            let _ = std::fs::remove_dir_all(&node.data_dir);
        }
    }
    restored
}

/// Renames each built directory onto its (absent or empty) place.
/// If one fails, the ones already moved are deleted again: all or nothing.
fn move_into_place(building: &[RestoredNode], nodes: &[RestoredNode]) -> anyhow::Result<()> {
    for (moved, (built, node)) in building.iter().zip(nodes).enumerate() {
        let renamed = std::fs::remove_dir(&node.data_dir)
            .or_else(|error| match error.kind() {
                std::io::ErrorKind::NotFound => Ok(()),
                _ => Err(error),
            })
            .and_then(|()| std::fs::rename(&built.data_dir, &node.data_dir));
        if let Err(error) = renamed {
            for node in &nodes[..moved] {
                let _ = std::fs::remove_dir_all(&node.data_dir);
            }
            return Err(error).with_context(|| {
                format!(
                    "moving {} to {}",
                    built.data_dir.display(),
                    node.data_dir.display()
                )
            });
        }
    }
    Ok(())
}

/// Refuses a path that exists and is not an empty directory.
pub fn refuse_non_empty(path: &Path) -> anyhow::Result<()> {
    if !path.exists() {
        return Ok(());
    }
    let mut entries = std::fs::read_dir(path)
        .with_context(|| format!("{} exists and is not a directory", path.display()))?;
    ensure!(
        entries.next().is_none(),
        "{} is not empty: refusing to write into it",
        path.display()
    );
    Ok(())
}

/// A fresh path beside `path` (same file system, so a rename moves it into place), named
/// after it: `.<name>.<purpose>-<pid>`.
pub fn sibling(path: &Path, purpose: &str) -> anyhow::Result<PathBuf> {
    let name = path
        .file_name()
        .with_context(|| format!("{} names no directory", path.display()))?
        .to_string_lossy();
    let parent = path
        .parent()
        .filter(|parent| !parent.as_os_str().is_empty());
    let sibling = parent
        .unwrap_or(Path::new("."))
        .join(format!(".{name}.{purpose}-{}", std::process::id()));
    ensure!(
        !sibling.exists(),
        "{} exists (a run that did not finish?): remove it",
        sibling.display()
    );
    Ok(sibling)
}

fn build_nodes(
    backup: &Path,
    manifest: &Manifest,
    nodes: &[RestoredNode],
    voters: &[u64],
) -> anyhow::Result<()> {
    let mut dbs = Vec::new();
    for node in nodes {
        dbs.push(Db::open(
            &node.data_dir,
            node.node_id,
            manifest.partition_count,
        )?);
    }
    for entry in &manifest.partitions {
        restore_partition(backup, entry, &dbs, voters)
            .with_context(|| format!("restoring partition {}", entry.partition))?;
    }
    for db in &dbs {
        db.flush()?;
    }
    Ok(())
}

/// Writes one partition into every new node's database: its blocks (checked on the way),
/// the records they finish, a snapshot of the replayed state at the backed-up index, and the
/// raft state of a log that starts after it.
fn restore_partition(
    backup: &Path,
    entry: &PartitionManifest,
    dbs: &[Arc<Db>],
    voters: &[u64],
) -> anyhow::Result<()> {
    if entry.index == 0 {
        return Ok(());
    }
    // First the whole file is checked (chain, manifest), then copied into every database.
    let (state, blocks) = fold_file(backup, entry, |_, _| {})
        .map_err(|broken| anyhow::anyhow!("index {}: {}", broken.index, broken.problem))?;
    check_against_manifest(entry, &state, blocks)
        .map_err(|broken| anyhow::anyhow!("{}", broken.problem))?;
    copy_blocks(backup, entry, dbs)?;
    let (meta, chunks) = crate::snapshot::encode(
        entry.partition,
        entry.index,
        RESTORED_TERM,
        voters.to_vec(),
        &state.ledger,
        state.chain_head,
    );
    let genesis = Ledger::new();
    for db in dbs {
        replay::rebuild_records(
            db,
            entry.partition,
            (0, CHAIN_GENESIS, &genesis),
            entry.index,
        )?;
        write_start_point(db, &meta, &chunks, voters)?;
    }
    Ok(())
}

/// Copies a (checked) partition file's blocks into every database's `events`.
fn copy_blocks(backup: &Path, entry: &PartitionManifest, dbs: &[Arc<Db>]) -> anyhow::Result<()> {
    let mut sink = BlockSink::new(dbs, entry.partition);
    for item in PartitionReader::open(backup, entry)? {
        let (index, bytes) = item?;
        sink.put(index, &bytes)?;
    }
    sink.finish()
}

/// Stores the snapshot and the raft state a node has after installing it: the log starts
/// after the snapshot, which is committed and applied, at [`RESTORED_TERM`].
fn write_start_point(
    db: &Arc<Db>,
    meta: &SnapshotMeta,
    chunks: &[Vec<u8>],
    voters: &[u64],
) -> anyhow::Result<()> {
    db.put_snapshot(meta, chunks, false)?;
    let mut storage = PartitionStorage::open(db.clone(), meta.partition, voters)?;
    let mut batch = WriteBatch::default();
    let conf_state = raft::eraftpb::ConfState {
        voters: voters.to_vec(),
        ..Default::default()
    };
    storage.install_snapshot(meta.clone(), conf_state, &mut batch)?;
    let hard_state = HardState {
        term: RESTORED_TERM,
        commit: meta.index,
        ..Default::default()
    };
    storage.set_hard_state(&hard_state, &mut batch)?;
    db.write(batch, true)
}

/// Event blocks on their way into every new node's `events`, in bounded batches.
struct BlockSink<'a> {
    dbs: &'a [Arc<Db>],
    partition: u32,
    batches: Vec<WriteBatch>,
}

impl<'a> BlockSink<'a> {
    fn new(dbs: &'a [Arc<Db>], partition: u32) -> Self {
        BlockSink {
            dbs,
            partition,
            batches: dbs.iter().map(|_| WriteBatch::default()).collect(),
        }
    }

    fn put(&mut self, index: u64, stored: &[u8]) -> anyhow::Result<()> {
        for (db, batch) in self.dbs.iter().zip(&mut self.batches) {
            batch.put_cf(db.cf(CF_EVENTS), index_key(self.partition, index), stored);
        }
        if self.batches[0].len() >= RESTORE_BATCH_BLOCKS {
            self.write()?;
        }
        Ok(())
    }

    fn write(&mut self) -> anyhow::Result<()> {
        for (db, batch) in self.dbs.iter().zip(&mut self.batches) {
            db.write(std::mem::take(batch), false)?;
        }
        Ok(())
    }

    fn finish(mut self) -> anyhow::Result<()> {
        self.write()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::codec::{self, EventBlock};
    use ledger::{EntryMeta, Event};

    /// Streamed blocks 1..=count, each opening one account, chained from genesis.
    fn streamed(count: u64) -> Vec<proto::v1::SubscribeResponse> {
        let mut chain = CHAIN_GENESIS;
        (1..=count)
            .map(|index| {
                let meta = EntryMeta {
                    index,
                    timestamp_ms: 1_000 + index,
                };
                let events = vec![Event::AccountOpened {
                    account_id: format!("acct-{index}"),
                    currency: Currency::parse("USD").expect("USD"),
                    allow_negative_balance: false,
                    annotations: None,
                }];
                let pb = events.iter().map(event_codec::pb::event_to_pb).collect();
                (_, chain) = codec::encode_events(&chain, &EventBlock { meta, events });
                proto::v1::SubscribeResponse {
                    partition: 0,
                    index,
                    timestamp_ms: meta.timestamp_ms,
                    events: pb,
                    chain_hash: chain.to_vec(),
                }
            })
            .collect()
    }

    fn append_all(writer: &mut PartitionWriter, blocks: &[proto::v1::SubscribeResponse]) {
        for block in blocks {
            writer
                .append_streamed(block)
                .expect("written")
                .expect("chained");
        }
    }

    #[test]
    fn a_resumed_file_continues_the_chain_and_verifies() {
        let dir = tempfile::tempdir().expect("temp dir");
        let blocks = streamed(5);
        let mut writer = PartitionWriter::create(dir.path(), 0).expect("create");
        append_all(&mut writer, &blocks[..3]);
        // A block out of order or off the chain is refused, nothing written.
        let refused = writer.append_streamed(&blocks[4]).expect("no IO error");
        assert!(refused.is_err());
        let first = writer.finish(3).expect("finish");
        assert_eq!((first.index, first.blocks, first.accounts), (3, 3, 3));

        let mut resumed = PartitionWriter::resume(dir.path(), 0).expect("resume");
        assert_eq!(resumed.index(), 3);
        assert_eq!(resumed.ledger().accounts_count(), 3);
        append_all(&mut resumed, &blocks[3..]);
        let entry = resumed.finish(7).expect("finish");
        assert_eq!((entry.index, entry.blocks, entry.accounts), (7, 5, 5));

        let manifest = Manifest::new(1, vec![entry.clone()]);
        manifest.write(dir.path()).expect("manifest");
        let (_, verdicts) = verify(dir.path(), |_, _| {}).expect("verify");
        assert!(
            matches!(&verdicts[..], [(0, Ok(found))] if *found == entry),
            "{verdicts:?}"
        );
    }
}
