//! Partition snapshots: a partition's ledger at an applied index, stored in the `snapshots`
//! column family so that the raft log behind it can be dropped.
//!
//! - Taking one: the store loop clones the ledger (the only work on its thread) and hands it to
//!   the snapshot worker, which serializes it, hashes it and writes it with one synced write,
//!   then tells the loop, which compacts the raft log up to `log_retain_entries` behind it.
//! - Restarting: a node loads its newest snapshot and replays only the events after it.
//! - Catching up a follower behind the compaction point: raft's `MsgSnapshot` carries only the
//!   position (index, term); the follower fetches the chunks and the events it lacks from the
//!   sender (`PeerService.FetchSnapshot`), checks the state digest, and only then lets raft
//!   install it. The `events` column family therefore stays complete on every replica.

use std::sync::Arc;

use anyhow::{Context, ensure};
use ledger::Ledger;
use serde::{Deserialize, Serialize};
use tokio::sync::mpsc;

use crate::codec::ChainHash;
use crate::storage::Db;

/// Bytes per stored chunk and per FetchSnapshot message.
pub const CHUNK_BYTES: usize = 1024 * 1024;
/// Snapshots kept per partition: the newest one serves restarts and followers; older ones
/// are kept for audits (replay from a snapshot) until newer ones replace them.
pub const SNAPSHOTS_RETAINED: usize = 2;

const STATE_FORMAT_V1: u8 = 1;

/// The header of a stored snapshot.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SnapshotMeta {
    pub partition: u32,
    /// The last applied index the state includes, and its term.
    pub index: u64,
    pub term: u64,
    pub voters: Vec<u64>,
    /// `Ledger::digest` of the state, checked whenever the state is loaded.
    pub digest: [u8; 32],
    /// Head of the partition's event hash chain at `index`.
    pub chain_head: ChainHash,
    pub chunks: u32,
    pub bytes: u64,
}

/// Serializes a ledger into stored chunks; returns the header and the chunks.
pub fn encode(
    partition: u32,
    index: u64,
    term: u64,
    voters: Vec<u64>,
    ledger: &Ledger,
    chain_head: ChainHash,
) -> (SnapshotMeta, Vec<Vec<u8>>) {
    let mut bytes = vec![STATE_FORMAT_V1];
    bytes.extend(postcard::to_stdvec(ledger).expect("serialising to a Vec cannot fail"));
    let chunks: Vec<Vec<u8>> = bytes.chunks(CHUNK_BYTES).map(<[u8]>::to_vec).collect();
    let meta = SnapshotMeta {
        partition,
        index,
        term,
        voters,
        digest: ledger.digest(),
        chain_head,
        chunks: chunks.len() as u32,
        bytes: bytes.len() as u64,
    };
    (meta, chunks)
}

/// Rebuilds the ledger from a snapshot's bytes and checks it against the header's digest.
pub fn decode(meta: &SnapshotMeta, bytes: &[u8]) -> anyhow::Result<Ledger> {
    ensure!(
        bytes.len() as u64 == meta.bytes,
        "snapshot {} of partition {}: {} bytes, the header says {}",
        meta.index,
        meta.partition,
        bytes.len(),
        meta.bytes
    );
    let (&version, body) = bytes.split_first().context("empty snapshot")?;
    ensure!(
        version == STATE_FORMAT_V1,
        "unknown snapshot format {version}"
    );
    let ledger: Ledger = postcard::from_bytes(body).context("snapshot state is corrupt")?;
    ensure!(
        ledger.digest() == meta.digest,
        "snapshot {} of partition {}: the state does not match its digest",
        meta.index,
        meta.partition
    );
    Ok(ledger)
}

/// Reads and checks a stored snapshot.
pub fn load(db: &Db, meta: &SnapshotMeta) -> anyhow::Result<Ledger> {
    let mut bytes = Vec::with_capacity(meta.bytes as usize);
    for number in 0..meta.chunks {
        bytes.extend(db.snapshot_chunk(meta.partition, meta.index, number)?);
    }
    decode(meta, &bytes)
}

/// A snapshot to write: the ledger cloned at `index`.
pub struct Job {
    pub partition: u32,
    pub index: u64,
    pub term: u64,
    pub voters: Vec<u64>,
    pub ledger: Ledger,
    pub chain_head: ChainHash,
}

/// Starts the snapshot worker thread. Jobs go in through a bounded queue (the loop has at most
/// one job per partition in flight); headers of durable snapshots come back.
pub fn start_worker(
    db: Arc<Db>,
    capacity: usize,
) -> anyhow::Result<(
    std::sync::mpsc::SyncSender<Job>,
    mpsc::Receiver<anyhow::Result<SnapshotMeta>>,
)> {
    let (job_tx, job_rx) = std::sync::mpsc::sync_channel::<Job>(capacity);
    let (done_tx, done_rx) = mpsc::channel(capacity);
    std::thread::Builder::new()
        .name("snapshots".into())
        .spawn(move || {
            for job in job_rx {
                let result = write(&db, job);
                if done_tx.blocking_send(result).is_err() {
                    break;
                }
            }
        })
        .context("spawning the snapshot thread")?;
    Ok((job_tx, done_rx))
}

fn write(db: &Db, job: Job) -> anyhow::Result<SnapshotMeta> {
    let started = std::time::Instant::now();
    let (meta, chunks) = encode(
        job.partition,
        job.index,
        job.term,
        job.voters,
        &job.ledger,
        job.chain_head,
    );
    drop(job.ledger);
    #[cfg(feature = "failpoints")]
    crate::failpoints::before_snapshot_write()?;
    db.put_snapshot(&meta, &chunks, true)?;
    let metas = db.snapshot_metas(meta.partition)?;
    for old in metas.iter().rev().skip(SNAPSHOTS_RETAINED) {
        db.delete_snapshot(old.partition, old.index)?;
    }
    tracing::info!(
        partition = meta.partition,
        index = meta.index,
        bytes = meta.bytes,
        elapsed_ms = started.elapsed().as_millis() as u64,
        "snapshot written"
    );
    Ok(meta)
}
