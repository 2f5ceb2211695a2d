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
use ledger::state::WithAccountAnnotations;
use tokio::sync::mpsc;

use crate::codec::ChainHash;
use crate::storage::Db;

/// The header of a stored snapshot: defined with the storage layout that keeps it.
pub use crate::storage::SnapshotMeta;

/// Bytes per stored chunk and per FetchSnapshot message (`limits::SNAPSHOT_CHUNK_BYTES`).
pub use crate::limits::SNAPSHOT_CHUNK_BYTES as CHUNK_BYTES;
use crate::limits::SNAPSHOTS_RETAINED;

/// State formats. 8: as 7, followed by the live multi-leg records (parts of sets across
/// partitions prepared, homes decided and not finished: `ledger::state::WithLiveLegs`);
/// written only when there are some. 7: as 6 (always in the annotated layout), followed by the hashes of what
/// accounts were opened with (`ledger::state::WithAccountAnnotations`); written only when an
/// account was opened with a reference or metadata. 6: as 5, in the annotated layout of `ledger::wire` (written only when a
/// live record carries annotations, so a node of the previous release reads every other
/// snapshot). 5: as 4, followed by the settings of the accounts whose lifecycle settings
/// are not the default (frozen, closed, an overdraft limit). 4: as 3, and the live records may be holds (pending, or being captured),
/// which a release that reads 3 at most cannot decode. 3: accounts, in-flight transfers,
/// outflow, and the counts and running sum
/// of every record (finished records live in the `records` column family); digest
/// `Ledger::digest`. 2: every record in the body; digest `Ledger::digest`. 1: as 2, digest
/// `Ledger::digest_v2` (one walk over the state). Formats 1 and 2 are still read (their
/// finished records are dropped from memory once the digest is checked: the data migration
/// put them on disk), so a node upgraded over its old data keeps its snapshots; new ones are
/// written in format 5 (format 3 bodies decode as format 4 ones, which are format 5 ones
/// without the settings).
const STATE_FORMAT_V1: u8 = 1;
const STATE_FORMAT_V2: u8 = 2;
const STATE_FORMAT_V3: u8 = 3;
const STATE_FORMAT_V4: u8 = 4;
const STATE_FORMAT_V5: u8 = 5;
const STATE_FORMAT_V6_ANNOTATED: u8 = 6;
const STATE_FORMAT_V7_ANNOTATED_ACCOUNTS: u8 = 7;
const STATE_FORMAT_V8_LIVE_LEGS: u8 = 8;

/// Serializes a ledger into stored chunks; returns the header and the chunks.
pub fn encode(
    partition: u32,
    index: u64,
    term: u64,
    voters: Vec<u64>,
    ledger: &Ledger,
    chain_head: ChainHash,
) -> (SnapshotMeta, Vec<Vec<u8>>) {
    let (format, body) = if ledger.live_legs_count() > 0 {
        let snapshot = ledger::state::WithLiveLegs(ledger.clone());
        (
            STATE_FORMAT_V8_LIVE_LEGS,
            ledger::wire::to_vec_annotated(&snapshot),
        )
    } else if ledger.annotated_accounts_count() > 0 {
        let snapshot = WithAccountAnnotations(ledger.clone());
        let body = ledger::wire::to_vec_annotated(&snapshot);
        (STATE_FORMAT_V7_ANNOTATED_ACCOUNTS, body)
    } else {
        match ledger::wire::to_vec(ledger) {
            (ledger::wire::Layout::Plain, body) => (STATE_FORMAT_V5, body),
            (ledger::wire::Layout::Annotated, body) => (STATE_FORMAT_V6_ANNOTATED, body),
        }
    };
    let mut bytes = Vec::with_capacity(1 + body.len());
    bytes.push(format);
    bytes.extend(body);
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
    let corrupt = "snapshot state is corrupt";
    let (mut ledger, digest) = match version {
        STATE_FORMAT_V1 | STATE_FORMAT_V2 => {
            let ledger::state::Format2(ledger) = postcard::from_bytes(body).context(corrupt)?;
            let digest = if version == STATE_FORMAT_V1 {
                ledger.digest_v2()
            } else {
                ledger.digest()
            };
            (ledger, digest)
        }
        STATE_FORMAT_V3 | STATE_FORMAT_V4 => {
            let ledger::state::Format4(ledger) = postcard::from_bytes(body).context(corrupt)?;
            let digest = ledger.digest();
            (ledger, digest)
        }
        STATE_FORMAT_V5 | STATE_FORMAT_V6_ANNOTATED => {
            let layout = if version == STATE_FORMAT_V5 {
                ledger::wire::Layout::Plain
            } else {
                ledger::wire::Layout::Annotated
            };
            let ledger: Ledger = ledger::wire::from_slice(layout, body).context(corrupt)?;
            let digest = ledger.digest();
            (ledger, digest)
        }
        STATE_FORMAT_V7_ANNOTATED_ACCOUNTS => {
            let WithAccountAnnotations(ledger) =
                ledger::wire::from_slice(ledger::wire::Layout::Annotated, body).context(corrupt)?;
            let digest = ledger.digest();
            (ledger, digest)
        }
        STATE_FORMAT_V8_LIVE_LEGS => {
            let ledger::state::WithLiveLegs(ledger) =
                ledger::wire::from_slice(ledger::wire::Layout::Annotated, body).context(corrupt)?;
            let digest = ledger.digest();
            (ledger, digest)
        }
        _ => anyhow::bail!(
            "snapshot {} of partition {}: state format {version} is newer than this node reads \
             (formats {STATE_FORMAT_V1} to {STATE_FORMAT_V8_LIVE_LEGS}); run a release that \
             reads it",
            meta.index,
            meta.partition
        ),
    };
    ensure!(
        digest == meta.digest,
        "snapshot {} of partition {}: the state does not match its digest",
        meta.index,
        meta.partition
    );
    ledger.keep_only_in_flight();
    Ok(ledger)
}

/// Follower side of a fetch: the event blocks the sender streams after the follower's applied
/// index must continue the follower's own hash chain, block by block, and end at the
/// snapshot's chain head. Checked before anything is written: a corrupt, dropped, reordered
/// or foreign block fails the fetch (raft sends the snapshot again, possibly from another
/// leader) instead of entering the local event log.
#[derive(Clone, Debug)]
pub struct FetchedEvents {
    partition: u32,
    /// Chain hash of the last block checked (the follower's head before the first).
    chain: ChainHash,
    /// Blocks must come in increasing index order, after this index.
    after: u64,
    /// The snapshot's index: no block beyond it.
    until: u64,
    /// Highest leader timestamp of the blocks checked (0 before any).
    timestamp_ms_max: u64,
}

impl FetchedEvents {
    /// `chain_after` is the follower's chain head at its applied index `events_after` (what
    /// it asked the blocks after), `until` the snapshot's index.
    pub fn new(partition: u32, chain_after: ChainHash, events_after: u64, until: u64) -> Self {
        FetchedEvents {
            partition,
            chain: chain_after,
            after: events_after,
            until,
            timestamp_ms_max: 0,
        }
    }

    /// Checks one message's blocks; all of them or none are accepted (the checker moves on
    /// only when every block links).
    pub fn check(&mut self, indexes: &[u64], blocks: &[Vec<u8>]) -> anyhow::Result<()> {
        ensure!(
            indexes.len() == blocks.len(),
            "event blocks and indexes differ in number"
        );
        let mut next = self.clone();
        for (&index, bytes) in indexes.iter().zip(blocks) {
            ensure!(
                index > next.after && index <= next.until,
                "event block {index} out of order (after {}, snapshot {})",
                next.after,
                next.until
            );
            let stored =
                crate::codec::decode_linked(&next.chain, index, bytes).map_err(|error| {
                    anyhow::anyhow!(
                        "partition {}: fetched event block {index} fails the hash chain: {error}",
                        next.partition
                    )
                })?;
            next.chain = stored.chain;
            next.after = index;
            next.timestamp_ms_max = next.timestamp_ms_max.max(stored.block.meta.timestamp_ms);
        }
        *self = next;
        Ok(())
    }

    /// After the last block: the chain must have reached the snapshot's head (no block left
    /// out at the end). Returns the highest block timestamp seen (0 if none).
    pub fn finish(&self, meta: &SnapshotMeta) -> anyhow::Result<u64> {
        ensure!(
            self.chain == meta.chain_head,
            "partition {}: the fetched event blocks do not end at snapshot {}'s chain head \
             (blocks missing, or the snapshot is not of this history)",
            self.partition,
            meta.index
        );
        Ok(self.timestamp_ms_max)
    }
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

/// The snapshot worker's job queue, its results, and its thread.
pub type Worker = (
    std::sync::mpsc::SyncSender<Job>,
    mpsc::Receiver<anyhow::Result<SnapshotMeta>>,
    std::thread::JoinHandle<()>,
);

/// Starts the snapshot worker thread. Jobs go in through a bounded queue (the loop has at most
/// one job per partition in flight); headers of durable snapshots come back. The thread ends
/// once the job sender is dropped and the queued jobs are written: join it before the process
/// exits, or RocksDB is torn down under a snapshot being written.
pub fn start_worker(db: Arc<Db>, capacity: usize) -> anyhow::Result<Worker> {
    let (job_tx, job_rx) = std::sync::mpsc::sync_channel::<Job>(capacity);
    let (done_tx, done_rx) = mpsc::channel(capacity);
    let worker = std::thread::Builder::new()
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
    Ok((job_tx, done_rx, worker))
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::codec::CHAIN_GENESIS;
    use crate::codec::test_blocks::chain_of;

    fn meta(index: u64, chain_head: ChainHash) -> SnapshotMeta {
        SnapshotMeta {
            partition: 0,
            index,
            term: 1,
            voters: vec![1],
            digest: [0; 32],
            chain_head,
            chunks: 0,
            bytes: 0,
        }
    }

    fn small_ledger() -> Ledger {
        let usd = ledger::Currency::parse("USD").expect("USD");
        let mut ledger = Ledger::new();
        for (index, (id, negative)) in [("issuer", true), ("alice", false)].iter().enumerate() {
            let command = ledger::Command::OpenAccount {
                account_id: (*id).into(),
                currency: usd,
                allow_negative_balance: *negative,
                annotations: None,
            };
            let meta = ledger::EntryMeta {
                index: index as u64 + 1,
                timestamp_ms: 1,
            };
            ledger.execute(&command, meta);
        }
        let transfer = ledger::TransferCommand {
            transaction_id: uuid::Uuid::from_u128(1),
            from: "issuer".into(),
            to: "alice".into(),
            amount_minor: 250,
            currency: usd,
            annotations: None,
        };
        let meta = ledger::EntryMeta {
            index: 3,
            timestamp_ms: 2,
        };
        ledger.execute(&ledger::Command::Transfer(transfer), meta);
        ledger
    }

    /// The body earlier releases wrote (state formats 1 and 2): every record, no counts.
    fn format_2_body(version: u8, ledger: &Ledger) -> Vec<u8> {
        #[derive(serde::Serialize)]
        struct Body<'a> {
            accounts: Vec<ledger::AccountRef<'a>>,
            transfers: Vec<&'a ledger::TransferRecord>,
            credits: Vec<&'a ledger::CreditRecord>,
            outflow: Vec<(ledger::Currency, i128)>,
        }
        let body = Body {
            accounts: ledger.accounts().collect(),
            transfers: ledger.transfers().collect(),
            credits: ledger.credits().collect(),
            outflow: ledger
                .outflow_by_currency()
                .iter()
                .map(|(currency, outflow)| (*currency, *outflow))
                .collect(),
        };
        let mut bytes = vec![version];
        bytes.extend(postcard::to_stdvec(&body).expect("serialize"));
        bytes
    }

    #[test]
    fn snapshots_of_earlier_formats_are_read_and_new_ones_are_format_5() {
        let ledger = small_ledger();
        let mut evicted = ledger.clone();
        evicted.evict_all_finished();
        let (meta, chunks) = encode(0, 3, 1, vec![1], &ledger, CHAIN_GENESIS);
        assert_eq!(chunks[0][0], STATE_FORMAT_V5);
        assert_eq!(meta.digest, ledger.digest());
        let read = decode(&meta, &chunks.concat()).expect("format 5");
        assert_eq!(
            read, evicted,
            "finished records stay on disk, not in snapshots"
        );
        assert_eq!(read.transfers_count(), 1);

        // Formats 4 (the previous release) and 3: the same body without the account settings
        // (format 5 ends with their list, here empty: one byte, its length 0).
        let mut format_4 = chunks.concat();
        assert_eq!(format_4.pop(), Some(0), "an empty settings list");
        let format_4_meta = SnapshotMeta {
            bytes: format_4.len() as u64,
            ..meta.clone()
        };
        format_4[0] = STATE_FORMAT_V4;
        assert_eq!(
            decode(&format_4_meta, &format_4).expect("format 4 is read"),
            evicted
        );
        let mut format_3 = format_4.clone();
        format_3[0] = STATE_FORMAT_V3;
        assert_eq!(
            decode(&format_4_meta, &format_3).expect("format 3 is read"),
            evicted
        );

        // A pending hold travels in the snapshot and reserves its amount after the install.
        let mut holding = ledger.clone();
        let hold = ledger::Command::Authorize {
            transfer: ledger::TransferCommand {
                transaction_id: uuid::Uuid::from_u128(2),
                from: "alice".into(),
                to: "issuer".into(),
                amount_minor: 100,
                currency: ledger::Currency::parse("USD").expect("USD"),
                annotations: None,
            },
            timeout_ms: 1_000,
            cross_partition: false,
        };
        holding.execute(
            &hold,
            ledger::EntryMeta {
                index: 4,
                timestamp_ms: 3,
            },
        );
        let (meta_held, chunks_held) = encode(0, 4, 1, vec![1], &holding, CHAIN_GENESIS);
        let read = decode(&meta_held, &chunks_held.concat()).expect("format 4 with a hold");
        assert_eq!(read.held_minor("alice"), 100);
        assert_eq!(read.next_hold_expiry(), Some(1_003));
        assert_eq!(read.digest(), holding.digest());

        // Format 2 (the previous release): every record in the body, the running digest.
        let format_2 = format_2_body(STATE_FORMAT_V2, &ledger);
        let meta_2 = SnapshotMeta {
            bytes: format_2.len() as u64,
            ..meta.clone()
        };
        let read = decode(&meta_2, &format_2).expect("format 2 is read");
        assert_eq!(read, evicted);
        assert_eq!(read.digest(), ledger.digest());

        // Format 1: the same body, with the digest of the full walk in the header.
        let format_1 = format_2_body(STATE_FORMAT_V1, &ledger);
        let meta_1 = SnapshotMeta {
            digest: ledger.digest_v2(),
            ..meta_2.clone()
        };
        let read = decode(&meta_1, &format_1).expect("format 1 is read");
        assert_eq!(read.digest(), ledger.digest());
        // A format-1 header with the new digest does not pass: each format is checked by its own.
        let error = decode(&meta_2, &format_1).expect_err("digest of the other format");
        assert!(
            format!("{error:#}").contains("does not match its digest"),
            "{error:#}"
        );

        // An annotated transfer in flight: format 6, the annotated layout, read back whole.
        let mut annotated = ledger.clone();
        let transfer_out = ledger::Command::TransferOut(ledger::TransferCommand {
            transaction_id: uuid::Uuid::from_u128(3),
            from: "alice".into(),
            to: "carol".into(),
            amount_minor: 10,
            currency: ledger::Currency::parse("USD").expect("USD"),
            annotations: ledger::Annotations {
                reference: "order 5".into(),
                metadata: [("k".to_owned(), "v".to_owned())].into(),
            }
            .boxed(),
        });
        annotated.execute(
            &transfer_out,
            ledger::EntryMeta {
                index: 4,
                timestamp_ms: 3,
            },
        );
        let (meta_6, chunks_6) = encode(0, 4, 1, vec![1], &annotated, CHAIN_GENESIS);
        assert_eq!(chunks_6[0][0], STATE_FORMAT_V6_ANNOTATED);
        let read = decode(&meta_6, &chunks_6.concat()).expect("format 6");
        assert_eq!(read.digest(), annotated.digest());
        let ledger::Command::TransferOut(sent) = &transfer_out else {
            unreachable!()
        };
        assert_eq!(
            read.in_flight().next().map(|record| &record.transfer),
            Some(sent)
        );

        // An account opened with annotations: format 7, their hashes after the ledger; a
        // re-open is compared with them after the round trip.
        let mut with_account = annotated.clone();
        let open = |reference: &str| ledger::Command::OpenAccount {
            account_id: "dora".into(),
            currency: ledger::Currency::parse("USD").expect("USD"),
            allow_negative_balance: false,
            annotations: ledger::Annotations {
                reference: reference.into(),
                ..ledger::Annotations::default()
            }
            .boxed(),
        };
        let at = |index| ledger::EntryMeta {
            index,
            timestamp_ms: 4,
        };
        with_account.execute(&open("cust-1"), at(5));
        let (meta_7, chunks_7) = encode(0, 5, 1, vec![1], &with_account, CHAIN_GENESIS);
        assert_eq!(chunks_7[0][0], STATE_FORMAT_V7_ANNOTATED_ACCOUNTS);
        let mut read = decode(&meta_7, &chunks_7.concat()).expect("format 7");
        assert_eq!(read.digest(), with_account.digest());
        assert_eq!(read.annotated_accounts_count(), 1);
        assert!(matches!(
            read.execute(&open("cust-1"), at(6)).1,
            ledger::Outcome::Account(_)
        ));
        assert!(matches!(
            read.execute(&open("cust-2"), at(7)).1,
            ledger::Outcome::Conflict(_)
        ));

        // A part of a multi-leg transfer across partitions prepared here: format 8, the live
        // record after the ledger; after the install the account cannot close and the
        // resolve completes the part.
        let mut preparing = with_account.clone();
        let usd = ledger::Currency::parse("USD").expect("USD");
        let legs = ledger::LegsCommand {
            transaction_id: uuid::Uuid::from_u128(9),
            currency: usd,
            legs: vec![ledger::Leg {
                from: "alice".into(),
                to: "elsewhere".into(),
                amount_minor: 40,
            }],
            annotations: None,
        };
        let part = ledger::LegsPart::of(&legs, |account_id| account_id == "alice");
        let prepare = ledger::Command::PrepareLegs {
            legs: legs.clone(),
            part,
        };
        assert!(matches!(
            preparing.execute(&prepare, at(8)).0,
            Some(ledger::Event::LegsPrepared { .. })
        ));
        let (meta_8, chunks_8) = encode(0, 8, 1, vec![1], &preparing, CHAIN_GENESIS);
        assert_eq!(chunks_8[0][0], STATE_FORMAT_V8_LIVE_LEGS);
        let mut read = decode(&meta_8, &chunks_8.concat()).expect("format 8");
        assert_eq!(read.digest(), preparing.digest());
        assert_eq!(read.live_legs_count(), 1);
        assert_eq!(read.annotated_accounts_count(), 1);
        let resolve = ledger::Command::ResolveLegs {
            legs,
            part,
            decision: ledger::LegsDecision::Rejected {
                leg: 0,
                reason: ledger::RejectReason::ToAccountNotFound,
            },
        };
        let before = read.account("alice").expect("alice").balance_minor;
        assert!(matches!(
            read.execute(&resolve, at(9)).0,
            Some(ledger::Event::LegsResolved { .. })
        ));
        assert_eq!(
            read.account("alice").expect("alice").balance_minor,
            before + 40,
            "the rejected part's debit came back"
        );
        // The home's part (alice is the first leg's `from`): decided, final once finished.
        let finish = ledger::Command::FinishLegs {
            transaction_id: uuid::Uuid::from_u128(9),
        };
        assert!(matches!(
            read.execute(&finish, at(10)).0,
            Some(ledger::Event::LegsFinished { .. })
        ));
        assert_eq!(read.live_legs_count(), 0);

        let mut future = chunks.concat();
        future[0] = 9;
        let error = decode(&meta, &future).expect_err("a format from a later release");
        assert!(
            format!("{error:#}").contains("state format 9 is newer than this node reads"),
            "{error:#}"
        );
    }

    #[test]
    fn fetched_blocks_that_continue_the_chain_are_accepted() {
        // The follower applied up to 2 (blocks 1, 2); the snapshot is at 9.
        let (_, local) = chain_of(CHAIN_GENESIS, &[1, 2]);
        let (blocks, heads) = chain_of(local[1], &[3, 5, 6, 9]);
        let mut fetched = FetchedEvents::new(0, local[1], 2, 9);
        fetched.check(&[3, 5], &blocks[..2]).expect("first message");
        fetched
            .check(&[6, 9], &blocks[2..])
            .expect("second message");
        assert_eq!(
            fetched
                .finish(&meta(9, heads[3]))
                .expect("ends at the head"),
            1_700_000_000_009
        );
        // Nothing fetched: the follower's head must be the snapshot's.
        let empty = FetchedEvents::new(0, heads[3], 9, 9);
        assert_eq!(empty.finish(&meta(9, heads[3])).expect("same head"), 0);
    }

    #[test]
    fn a_corrupt_missing_or_foreign_block_fails_the_fetch() {
        let (blocks, heads) = chain_of(CHAIN_GENESIS, &[1, 2, 3]);
        // A flipped byte in the body of a block: the message is refused as a whole, and the
        // checker stays where it was (nothing of the message counts as verified).
        let mut corrupt = blocks.clone();
        let last = corrupt[1].len() - 1;
        corrupt[1][last] ^= 0x01;
        let mut fetched = FetchedEvents::new(0, CHAIN_GENESIS, 0, 3);
        let error = fetched
            .check(&[1, 2, 3], &corrupt)
            .expect_err("corrupt block");
        assert!(format!("{error:#}").contains("block 2"), "{error:#}");
        fetched
            .check(&[1, 2, 3], &blocks)
            .expect("the intact blocks from the same position");
        fetched.finish(&meta(3, heads[2])).expect("complete");

        // A block left out in the middle breaks the next link.
        let mut fetched = FetchedEvents::new(0, CHAIN_GENESIS, 0, 3);
        assert!(
            fetched
                .check(&[1, 3], &[blocks[0].clone(), blocks[2].clone()])
                .is_err()
        );
        // A block left out at the end: every link holds, the head does not.
        let mut fetched = FetchedEvents::new(0, CHAIN_GENESIS, 0, 3);
        fetched.check(&[1, 2], &blocks[..2]).expect("links hold");
        assert!(fetched.finish(&meta(3, heads[2])).is_err());
        // Blocks of another history (not continuing the follower's chain).
        let (_, other) = chain_of(CHAIN_GENESIS, &[7]);
        let mut fetched = FetchedEvents::new(0, other[0], 0, 3);
        assert!(fetched.check(&[1], &blocks[..1]).is_err());
        // Out of range or out of order.
        let mut fetched = FetchedEvents::new(0, CHAIN_GENESIS, 0, 2);
        assert!(fetched.check(&[1, 2, 3], &blocks).is_err());
        let mut fetched = FetchedEvents::new(0, CHAIN_GENESIS, 0, 3);
        assert!(
            fetched
                .check(&[2, 1], &[blocks[1].clone(), blocks[0].clone()])
                .is_err()
        );
        assert!(fetched.check(&[1], &[]).is_err());
    }
}
