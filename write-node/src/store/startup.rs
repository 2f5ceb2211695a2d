//! Starting the store: every partition opened from storage (its newest usable snapshot plus
//! the events after it), its raft node configured, and the loop started on its own thread.

use std::sync::atomic::AtomicBool;
use std::sync::{Arc, OnceLock, RwLock};

use anyhow::Context;
use raft::RawNode;
use tokio::sync::{mpsc, watch};
use tokio_util::sync::CancellationToken;

use super::catch_up::CatchUp;
use super::log_sync::LogSync;
use super::membership::Replicas;
use super::partition::{Commands, Handoff, Partition, Reads, Snapshots, Tail};
use super::round::Store;
use super::{Members, Network, StoreHandle};
use crate::codec;
use crate::config::Config;
use crate::limits;
use crate::replay;
use crate::snapshot::{self, SnapshotMeta};
use crate::storage::{CF_EVENTS, Db, PartitionStorage};

/// Starts the store loop on its own thread. The loop stops when `shutdown` is cancelled or a
/// storage error makes continuing unsafe; the returned join handle carries that error.
pub fn start(
    config: &Config,
    db: Arc<Db>,
    network: impl Network,
    metrics: crate::metrics::StoreMetrics,
    shutdown: CancellationToken,
) -> anyhow::Result<(StoreHandle, std::thread::JoinHandle<anyhow::Result<()>>)> {
    let (snapshot_jobs, snapshot_done, snapshot_worker) =
        snapshot::start_worker(db.clone(), config.partitions as usize)?;
    let (fetched_tx, fetched_rx) = mpsc::channel(config.partitions as usize);
    let logger = crate::logging::raft_logger();
    migrate(&db, config.partitions)?;
    // At first start the node creates the partitions placed on it, each with its placed
    // voters; placement also picks each one's preferred leader, spread evenly (the same on
    // every node: it depends only on the configuration). From then on a node holds what its
    // data directory holds: replicas move with raft membership changes (`membership.rs`).
    let nodes: Vec<u64> = config.peers.keys().copied().collect();
    let placement = Arc::new(config.placement()?);
    let initial: Vec<(u32, Vec<u64>)> = (0..config.partitions)
        .filter_map(|id| placement.group(id).ok().map(|group| (id, group)))
        .filter(|(_, group)| group.voters.contains(&config.node_id))
        .map(|(id, group)| (id, group.voters.iter().copied().collect()))
        .collect();
    db.check_placement(&nodes, config.replicas(), &initial)?;
    let held_ids = db.held_partitions(config.partitions)?;
    let partitions = open_partitions(
        config,
        &db,
        &placement,
        &held_ids,
        &logger,
        &metrics.partitions,
    )?;
    let mut slots = vec![None; config.partitions as usize];
    let mut tails = vec![None; config.partitions as usize];
    let mut applied = vec![0; config.partitions as usize];
    let mut held: Vec<AtomicBool> = (0..config.partitions)
        .map(|_| AtomicBool::new(false))
        .collect();
    let mut members: Vec<Members> = (0..config.partitions)
        .map(|id| placement.group(id).map(Members::placed).unwrap_or_default())
        .collect();
    for (slot, partition) in partitions.iter().enumerate() {
        slots[partition.id as usize] = Some(slot);
        tails[partition.id as usize] = Some(partition.tail.sender.clone());
        applied[partition.id as usize] = partition.applied_index;
        held[partition.id as usize] = AtomicBool::new(true);
        members[partition.id as usize] = partition.membership();
    }
    let held = Arc::new(held);
    let tails = Arc::new(RwLock::new(tails));
    let (members_tx, _) = watch::channel(members);
    let (client_tx, client_rx) = mpsc::channel(limits::CLIENT_MAILBOX_CAPACITY);
    let (raft_tx, raft_rx) = mpsc::channel(limits::RAFT_MAILBOX_CAPACITY);
    let (leaders_tx, leaders) = watch::channel(vec![0; config.partitions as usize]);
    let (applied_tx, applied) = watch::channel(applied);
    let stopped = Arc::new(OnceLock::new());
    let handle = StoreHandle {
        node_id: config.node_id,
        placement: placement.clone(),
        held: held.clone(),
        members: members_tx.clone(),
        client_tx,
        raft_tx,
        leaders,
        leaders_tx: leaders_tx.clone(),
        applied,
        tails: tails.clone(),
        db: db.clone(),
        stopped: stopped.clone(),
    };
    let log = LogSync::spawn(db.clone())?;
    let store = Store {
        node_id: config.node_id,
        db,
        log,
        network: Box::new(network),
        partitions,
        slots,
        replicas: Replicas {
            placement,
            nodes: nodes.iter().copied().collect(),
            held,
            members_tx,
            tails,
            logger: logger.clone(),
        },
        client_rx,
        raft_rx,
        leaders_tx,
        applied_tx,
        shutdown,
        snapshot_interval_entries: config.snapshot_interval_entries,
        snapshot_interval_events: config.snapshot_interval_events,
        log_retain: config.log_retain_entries,
        snapshot_jobs,
        snapshot_done,
        snapshot_worker,
        fetched_tx,
        fetched_rx,
        runtime: tokio::runtime::Handle::current(),
        metrics,
        stopped,
    };
    let thread = std::thread::Builder::new()
        .name("store".into())
        .spawn(move || store.run())
        .context("spawning the store thread")?;
    Ok((handle, thread))
}

/// Brings data of an earlier format to this binary's (see `storage::FORMAT_VERSION`): from
/// format 2, the `records` column family is rebuilt from each partition's event log, which
/// every replica keeps complete. Idempotent (a crash midway rebuilds again), once per data
/// directory, O(history).
fn migrate(db: &Db, partitions: u32) -> anyhow::Result<()> {
    let Some(version) = db.migrate_from() else {
        return Ok(());
    };
    let started = std::time::Instant::now();
    // Format 2 kept records in snapshots only: rebuild them from the event log. Formats 3
    // to 5 need nothing (format 4 only adds holds, 5 account lifecycle, 6 annotations).
    if version < 3 {
        let mut records = 0;
        for partition in 0..partitions {
            let genesis = (0, crate::codec::CHAIN_GENESIS, &ledger::Ledger::new());
            records += replay::rebuild_records(db, partition, genesis, u64::MAX)
                .with_context(|| format!("migrating partition {partition}"))?;
        }
        tracing::info!(
            from = version,
            records,
            ms = started.elapsed().as_millis() as u64,
            "data migrated: transfer records moved to the records column family"
        );
    }
    db.finish_migration()?;
    tracing::info!(from = version, "data format marked as the current one");
    Ok(())
}

/// Opens the partitions this node holds (`held`), replaying them on as many threads as there are
/// cores (each partition's replay is sequential, partitions are independent): restart time
/// divides by the core count. In partition id order.
fn open_partitions(
    config: &Config,
    db: &Arc<Db>,
    placement: &placement::Placement,
    held: &[u32],
    logger: &slog::Logger,
    metrics: &[crate::metrics::PartitionMetrics],
) -> anyhow::Result<Vec<Partition>> {
    use std::sync::atomic::{AtomicUsize, Ordering};
    let hosted: Vec<(u32, &placement::Group)> = held
        .iter()
        .map(|&id| Ok((id, placement.group(id)?)))
        .collect::<Result<Vec<_>, placement::PlacementError>>()?;
    let next = AtomicUsize::new(0);
    let threads = std::thread::available_parallelism()
        .map_or(1, |cores| cores.get())
        .min(hosted.len().max(1));
    let opened = std::sync::Mutex::new(Vec::new());
    std::thread::scope(|scope| {
        for _ in 0..threads {
            scope.spawn(|| {
                loop {
                    let Some(&(id, group)) = hosted.get(next.fetch_add(1, Ordering::Relaxed))
                    else {
                        return;
                    };
                    let place = Place {
                        group,
                        campaign: true,
                    };
                    let partition_metrics = metrics[id as usize].clone();
                    let partition =
                        open_partition(config.node_id, db, id, place, logger, partition_metrics);
                    opened
                        .lock()
                        .expect("no panics while held")
                        .push((id, partition));
                }
            });
        }
    });
    let mut opened = opened.into_inner().expect("no panics while held");
    opened.sort_by_key(|(id, _)| *id);
    opened.into_iter().map(|(_, partition)| partition).collect()
}

/// Where a partition was placed: its first voters (a replica's membership starts there, if
/// it has none stored) and preferred leader, and whether this replica, if it is the
/// preferred leader, asks for votes at once (not a replica just created for a move).
pub(super) struct Place<'a> {
    pub(super) group: &'a placement::Group,
    pub(super) campaign: bool,
}

pub(super) fn open_partition(
    node_id: u64,
    db: &Arc<Db>,
    id: u32,
    place: Place<'_>,
    logger: &slog::Logger,
    metrics: crate::metrics::PartitionMetrics,
) -> anyhow::Result<Partition> {
    let voters: Vec<u64> = place.group.voters.iter().copied().collect();
    let mut storage = PartitionStorage::open(db.clone(), id, &voters)?;
    let applied_index = storage.applied_index();
    let replay_started = std::time::Instant::now();
    let (state, snapshot) = recover(db, id, applied_index, storage.first_log_index())?;
    let replay::State {
        mut ledger,
        chain_head,
        ..
    } = state;
    // Every finished record is on disk (`records`): memory holds accounts and transfers in
    // flight.
    ledger.keep_only_in_flight();
    let replay_ms = replay_started.elapsed().as_millis() as u64;
    let snapshot_index = snapshot.as_ref().map_or(0, |meta| meta.index);
    if let Some(meta) = snapshot {
        storage.set_snapshot(meta);
    }
    let raft_config = raft_config(node_id, applied_index);
    raft_config.validate().context("raft config")?;
    let logger = logger.new(slog::o!("partition" => id));
    let mut raw = RawNode::new(&raft_config, storage, &logger).context("starting raft")?;
    let timestamp_ms_last = stored_timestamp_ms(db, id, &raw)?;
    let removed_at = db.removed_at(id)?.unwrap_or(0);
    // Spread leaders: the preferred node of a partition asks for votes at once instead of
    // waiting out an election timeout. Pre-vote keeps this from disturbing a live leader
    // (which hands leadership back once this node has caught up: `Handoff`).
    let handoff = Handoff::new(place.group.clone());
    let voters = &raw.store().conf_state().voters;
    if place.campaign && place.group.preferred_leader(voters) == Some(node_id) {
        raw.campaign().context("campaign")?;
    }
    tracing::info!(
        partition = id,
        applied_index,
        snapshot_index,
        accounts = ledger.accounts_count(),
        transfers = ledger.transfers_count(),
        replay_ms,
        "partition opened"
    );
    let mut partition = Partition {
        id,
        raw,
        ledger,
        applied_index,
        was_leader: false,
        timestamp_ms_last,
        chain_head,
        commands: Commands::default(),
        reads: Reads::default(),
        snapshots: Snapshots {
            index: snapshot_index,
            writing: false,
            events_since: 0,
        },
        catch_up: CatchUp::new(
            limits::SNAPSHOT_FETCH_TIMEOUT,
            limits::SNAPSHOT_FETCH_START_TIMEOUT,
        ),
        unwritten: std::collections::HashMap::new(),
        tail: Tail::new(),
        handoff,
        member_seen: false,
        removed_at,
        metrics,
    };
    partition.member_seen = partition.named();
    Ok(partition)
}

/// The highest entry timestamp stored for a partition: that of the last entry with a payload
/// in the raft log (entry times never decrease along the log), or, if the log holds none (all
/// compacted into a snapshot, or only a new leader's empty entries), that of the last event
/// block. A restarted leader stamps no entry below it.
fn stored_timestamp_ms(
    db: &Db,
    partition: u32,
    raw: &RawNode<PartitionStorage>,
) -> anyhow::Result<u64> {
    let log = &raw.raft.raft_log;
    let mut index = log.last_index();
    let mut in_log = 0;
    while index >= log.first_index() && index > 0 {
        let entries = log
            .entries(index, Some(1), raft::GetEntriesContext::empty(false))
            .with_context(|| format!("partition {partition}: reading log entry {index}"))?;
        if let Some(timestamp_ms) = entries
            .first()
            .filter(|entry| entry.get_entry_type() == raft::eraftpb::EntryType::EntryNormal)
            .and_then(|entry| codec::entry_timestamp_ms(&entry.data))
        {
            in_log = timestamp_ms;
            break;
        }
        index -= 1;
    }
    let in_events = match db.last_indexed_before(CF_EVENTS, partition, u64::MAX)? {
        Some((index, bytes)) => {
            codec::decode_events(&bytes)
                .with_context(|| format!("partition {partition}: event block {index}"))?
                .block
                .meta
                .timestamp_ms
        }
        None => 0,
    };
    Ok(in_log.max(in_events))
}

/// The raft configuration of every partition.
pub(super) fn raft_config(node_id: u64, applied_index: u64) -> raft::Config {
    raft::Config {
        id: node_id,
        election_tick: limits::ELECTION_TICKS,
        heartbeat_tick: limits::HEARTBEAT_TICKS,
        applied: applied_index,
        // Bounds every append: no raft message exceeds `limits::RAFT_MESSAGE_BYTES_MAX`, so
        // every one fits a frame of the peer stream.
        max_size_per_msg: limits::RAFT_MSG_BYTES_MAX,
        max_inflight_msgs: limits::RAFT_INFLIGHT_MSGS_MAX,
        check_quorum: true,
        pre_vote: true,
        // Off: it merges a round's appends to one follower into one message without a size
        // bound, so a follower coming back far behind got one message of up to
        // `max_inflight_msgs` x `max_size_per_msg` (256 MiB), above the gRPC message limit:
        // the peer stream failed with OUT_OF_RANGE on every attempt. The store loop already
        // makes one entry per partition and round (group commit), so little is lost.
        batch_append: false,
        max_uncommitted_size: limits::RAFT_UNCOMMITTED_BYTES_MAX,
        max_committed_size_per_ready: limits::RAFT_COMMITTED_BYTES_PER_READY_MAX,
        ..Default::default()
    }
}

/// A partition's state at `applied_index`: its newest usable snapshot plus the events after
/// it, or (with no snapshot, or none that loads) every event from genesis. The event log is
/// complete on every replica, so genesis is always possible; `log_first_index` only tells
/// whether a snapshot must exist. A block that fails its hash-chain link stops the node.
fn recover(
    db: &Db,
    partition: u32,
    applied_index: u64,
    log_first_index: u64,
) -> anyhow::Result<(replay::State, Option<SnapshotMeta>)> {
    let metas = db.snapshot_metas(partition)?;
    for meta in metas
        .iter()
        .rev()
        .filter(|meta| meta.index <= applied_index)
    {
        match replay::State::from_snapshot(db, meta) {
            Ok(mut state) => {
                let until = replay::Until::Index(applied_index);
                replay::fold(db, partition, &mut state, until, |_, _| {})?;
                return Ok((state, Some(meta.clone())));
            }
            Err(error) => tracing::error!(
                partition,
                index = meta.index,
                error = format!("{error:#}"),
                "stored snapshot does not load; trying an older one"
            ),
        }
    }
    anyhow::ensure!(
        log_first_index <= 1 || !metas.is_empty(),
        "partition {partition}: the raft log was compacted but no snapshot is stored"
    );
    let mut state = replay::State::genesis();
    let until = replay::Until::Index(applied_index);
    replay::fold(db, partition, &mut state, until, |_, _| {})?;
    Ok((state, None))
}

#[cfg(test)]
mod tests {
    use super::*;
    use raft::eraftpb::{Entry, HardState, Message, MessageType};
    use raft::storage::MemStorage;

    /// raft-rs with `batch_append` merged a round's appends to a follower into one message
    /// without any bound: a leader whose follower came back 30 MiB behind sent it a 30 MiB
    /// message, above the peer stream's gRPC limit. With the partitions' configuration every
    /// message stays within `RAFT_MESSAGE_BYTES_MAX` (and so fits a frame).
    #[test]
    fn appends_to_a_follower_far_behind_are_bounded_by_bytes() {
        const ENTRIES: u64 = 300;
        let storage = MemStorage::new_with_conf_state((vec![1, 2], vec![]));
        let entries: Vec<Entry> = (1..=ENTRIES)
            .map(|index| Entry {
                index,
                term: 1,
                data: vec![7u8; 100 * 1024].into(),
                ..Default::default()
            })
            .collect();
        storage.wl().append(&entries).expect("append");
        let hard_state = HardState {
            term: 1,
            commit: ENTRIES,
            ..Default::default()
        };
        storage.wl().set_hardstate(hard_state);
        let logger = slog::Logger::root(slog::Discard, slog::o!());
        let config = raft_config(1, ENTRIES);
        config.validate().expect("config");
        let mut raw = RawNode::new(&config, storage, &logger).expect("raft");
        raw.raft.become_candidate();
        raw.raft.become_leader();
        let mut sent = Vec::new();
        let round = |raw: &mut RawNode<MemStorage>, sent: &mut Vec<Message>| {
            let mut ready = raw.ready();
            raw.mut_store()
                .wl()
                .append(ready.entries())
                .expect("append");
            sent.extend(ready.take_messages());
            sent.extend(ready.take_persisted_messages());
            let mut light = raw.advance(ready);
            sent.extend(light.take_messages());
            raw.advance_apply();
        };
        round(&mut raw, &mut sent);
        let term = raw.raft.term;
        let probed = raw.raft.prs().get(2).expect("follower").next_idx - 1;
        // The follower has nothing: it rejects the leader's probe.
        let mut reject = Message::default();
        reject.set_msg_type(MessageType::MsgAppendResponse);
        (reject.from, reject.to, reject.term) = (2, 1, term);
        (reject.index, reject.reject, reject.reject_hint) = (probed, true, 0);
        raw.step(reject).expect("step");
        sent.clear();
        round(&mut raw, &mut sent);
        let probe_last = sent
            .iter()
            .filter(|message| message.get_msg_type() == MessageType::MsgAppend)
            .filter_map(|message| message.entries.last().map(|entry| entry.index))
            .max()
            .expect("the leader probes from the start");
        // It accepts: the leader sends everything it may at once (up to its in-flight window).
        let mut accept = Message::default();
        accept.set_msg_type(MessageType::MsgAppendResponse);
        (accept.from, accept.to, accept.term, accept.index) = (2, 1, term, probe_last);
        raw.step(accept).expect("step");
        sent.clear();
        round(&mut raw, &mut sent);
        let appended: usize = sent.iter().map(|message| message.entries.len()).sum();
        assert!(
            appended as u64 >= ENTRIES - probe_last,
            "sent {appended} entries"
        );
        for message in &sent {
            let bytes = protobuf::Message::compute_size(message) as usize;
            assert!(
                bytes <= limits::RAFT_MESSAGE_BYTES_MAX,
                "a {:?} of {bytes} bytes ({} entries) is above the frame budget",
                message.get_msg_type(),
                message.entries.len()
            );
        }
    }
}
