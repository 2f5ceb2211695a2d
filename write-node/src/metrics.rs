//! The write node's Prometheus series (served on `metrics_listen`, see README "Operations").
//!
//! Three kinds, by where they are updated:
//! - on the store thread, per round or per applied entry: pre-registered handles (atomics and
//!   a histogram's lock-free-in-practice uncontended mutex), no allocation per transfer;
//! - on the store thread once per `SAMPLE_INTERVAL`: raft positions and the conservation sum
//!   per currency, from running totals (O(partitions x currencies), never O(accounts));
//! - at scrape time (`refresh`): subscribers and RocksDB sizes.

use std::sync::Arc;
use std::time::Duration;

use ledger::{Event, Ledger};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;
use telemetry::grpc::GrpcMetrics;

use crate::storage::{Db, FAMILIES};

/// How often the store thread samples raft positions and conservation
/// (`limits::METRICS_SAMPLE_INTERVAL`).
pub use crate::limits::METRICS_SAMPLE_INTERVAL as SAMPLE_INTERVAL;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct PartitionLabels {
    partition: u32,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct CurrencyLabels {
    partition: u32,
    currency: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct CfLabels {
    cf: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct SourceLabels {
    source: &'static str,
}

/// Event blocks streamed to subscribers, by where they came from: the in-memory tail of
/// recent rounds, or a disk scan (catch-up, or a subscriber that fell behind the tail).
#[derive(Clone)]
pub struct EventLogMetrics {
    pub from_memory: Counter,
    pub from_disk: Counter,
}

/// One partition's handles, owned by its `Partition` on the store thread.
#[derive(Clone)]
pub struct PartitionMetrics {
    partition: u32,
    transfers_committed: Counter,
    transfers_rejected: Counter,
    entry_commands: Histogram,
    term: Gauge,
    commit_index: Gauge,
    applied_index: Gauge,
    leader: Gauge,
    in_flight: Gauge,
    holds_pending: Gauge,
    leader_changes: Counter,
    conservation: Family<CurrencyLabels, Gauge>,
    /// Currencies this partition ever reported: a currency whose balances and outflow all
    /// return to zero drops out of the ledger's running totals, and its gauge must then say 0
    /// rather than keep its last value. Bounded by the currency table.
    currencies_seen: Vec<ledger::Currency>,
}

impl PartitionMetrics {
    /// This replica learnt of a new leader of the partition (itself or another node).
    pub fn leader_changed(&self) {
        self.leader_changes.inc();
    }

    /// An applied entry's commands (on every replica, leader or not).
    pub fn entry_applied(&self, commands: usize) {
        self.entry_commands.observe(commands as f64);
    }

    /// An applied event: counts the transfers that became final here.
    pub fn event_applied(&self, event: &Event) {
        match event {
            // Same-partition transfers complete at once; cross-partition ones settle on the
            // source partition once the target credited.
            // A multi-leg transfer counts once, whatever its legs.
            Event::TransferCompleted { .. }
            | Event::TransferSettled { .. }
            | Event::HoldCaptured { .. }
            | Event::LegsCompleted { .. } => {
                self.transfers_committed.inc();
            }
            Event::TransferRejected { .. }
            | Event::TransferRefunded { .. }
            | Event::LegsRejected { .. } => {
                self.transfers_rejected.inc();
            }
            // Across partitions, a set counts once, on its home, when decided.
            Event::LegsResolved { part, decision, .. } if part.is_home() => {
                match decision {
                    ledger::LegsDecision::Completed => self.transfers_committed.inc(),
                    ledger::LegsDecision::Rejected { .. } => self.transfers_rejected.inc(),
                };
            }
            Event::LegsPartRefused { part, .. } if part.is_home() => {
                self.transfers_rejected.inc();
            }
            _ => {}
        }
    }

    /// Raft positions and the conservation sum: once per `SAMPLE_INTERVAL`.
    pub fn sample(
        &mut self,
        raft: &raft::Raft<impl raft::Storage>,
        applied_index: u64,
        ledger: &Ledger,
    ) {
        let gauge = |value: u64| value.min(i64::MAX as u64) as i64;
        self.term.set(gauge(raft.term));
        self.commit_index.set(gauge(raft.raft_log.committed));
        self.applied_index.set(gauge(applied_index));
        self.leader
            .set(i64::from(raft.state == raft::StateRole::Leader));
        self.in_flight.set(gauge(
            (ledger.in_flight_count() + ledger.live_legs_count()) as u64,
        ));
        self.holds_pending
            .set(gauge(ledger.pending_holds_count() as u64));
        let mut sums: Vec<(ledger::Currency, i128)> = self
            .currencies_seen
            .iter()
            .map(|&currency| (currency, 0))
            .collect();
        for (currency, sum) in ledger.conservation_by_currency() {
            match sums.iter_mut().find(|(seen, _)| *seen == currency) {
                Some(slot) => slot.1 = sum,
                None => {
                    self.currencies_seen.push(currency);
                    sums.push((currency, sum));
                }
            }
        }
        for (currency, sum) in sums {
            let labels = CurrencyLabels {
                partition: self.partition,
                currency: currency.code().to_owned(),
            };
            self.conservation
                .get_or_create(&labels)
                .set(sum.clamp(i64::MIN as i128, i64::MAX as i128) as i64);
        }
    }
}

/// The store loop's node-wide handles.
#[derive(Clone)]
pub struct StoreMetrics {
    pub partitions: Vec<PartitionMetrics>,
    synced_write_entries: Histogram,
    synced_write_seconds: Histogram,
    unsynced_log_writes: Counter,
    proposal_queue_depth: Gauge,
    raft_queue_depth: Gauge,
    round_seconds: Histogram,
    round_longest_seconds: Gauge<f64, std::sync::atomic::AtomicU64>,
    /// The longest round since the last sample (store thread only).
    round_longest: Duration,
    snapshots_written: Counter,
    snapshot_fetch_failures: Counter,
    snapshots_installed: Counter,
    leader_handoffs: Counter,
    replicas_created: Counter,
    replicas_deleted: Counter,
}

impl StoreMetrics {
    /// A log write that needed no fsync (only commit indexes moved: raft's `must_sync` false).
    pub fn unsynced_log_write(&self) {
        self.unsynced_log_writes.inc();
    }

    /// A snapshot of a partition became durable here.
    pub fn snapshot_written(&self) {
        self.snapshots_written.inc();
    }

    /// A follower's fetch of a leader's snapshot failed (raft sends it again).
    pub fn snapshot_fetch_failed(&self) {
        self.snapshot_fetch_failures.inc();
    }

    /// A follower installed a snapshot fetched from its leader.
    pub fn snapshot_installed(&self) {
        self.snapshots_installed.inc();
    }

    /// A leader added this node to a partition's group: its replica was created.
    pub fn replica_created(&self) {
        self.replicas_created.inc();
    }

    /// A partition's group removed this node: its replica was deleted.
    pub fn replica_deleted(&self) {
        self.replicas_deleted.inc();
    }

    /// This node handed a partition's leadership to its preferred leader.
    pub fn leader_handed_off(&self) {
        self.leader_handoffs.inc();
    }

    /// One store round's duration.
    pub fn round(&mut self, duration: Duration) {
        self.round_seconds.observe(duration.as_secs_f64());
        self.round_longest = self.round_longest.max(duration);
    }

    /// Publishes the longest round since the previous sample, and starts over.
    pub fn sample_rounds(&mut self) {
        self.round_longest_seconds
            .set(self.round_longest.as_secs_f64());
        self.round_longest = Duration::ZERO;
    }

    /// One synced write (the fsync) of `entries` raft entries, all partitions together.
    pub fn synced_write(&self, entries: usize, duration: Duration) {
        self.synced_write_entries.observe(entries as f64);
        self.synced_write_seconds.observe(duration.as_secs_f64());
    }

    /// The mailboxes' depth at the start of a round.
    pub fn queues(&self, proposals: usize, raft: usize) {
        self.proposal_queue_depth.set(proposals as i64);
        self.raft_queue_depth.set(raft as i64);
    }
}

/// Every series of a write node.
pub struct Metrics {
    pub registry: Registry,
    pub grpc: GrpcMetrics,
    pub store: StoreMetrics,
    pub event_log: EventLogMetrics,
    /// Raft frame streams refused because the peer's data directory is not the one this
    /// node knows (`incarnation.rs`).
    pub peer_frames_refused: Counter,
    process: Arc<telemetry::process::ProcessMetrics>,
    subscribers: Gauge,
    sst_bytes: Family<CfLabels, Gauge>,
    live_bytes: Family<CfLabels, Gauge>,
}

impl Metrics {
    pub fn new(partitions: u32) -> anyhow::Result<Metrics> {
        let mut registry = Registry::default();
        let grpc = GrpcMetrics::register(&mut registry, proto::FILE_DESCRIPTOR_SET)?;
        let process = Arc::new(telemetry::process::ProcessMetrics::register(
            &mut registry,
            "write-node",
            env!("CARGO_PKG_VERSION"),
        ));

        let transfers_committed = Family::<PartitionLabels, Counter>::default();
        registry.register(
            "wallet_transfers_committed",
            "Transfers that became final with money moved, applied on this replica, by source partition",
            transfers_committed.clone(),
        );
        let transfers_rejected = Family::<PartitionLabels, Counter>::default();
        registry.register(
            "wallet_transfers_rejected",
            "Transfers that became final without moving money (rejected or refunded), applied on this replica",
            transfers_rejected.clone(),
        );
        // Commands per entry: 1 .. 4096 (limits::ENTRY_COMMANDS_MAX).
        let entry_commands = Histogram::new(exponential_buckets(1.0, 2.0, 13));
        registry.register(
            "wallet_raft_entry_commands",
            "Client commands per applied raft entry (group commit)",
            entry_commands.clone(),
        );
        let synced_write_entries = Histogram::new(exponential_buckets(1.0, 2.0, 12));
        registry.register(
            "wallet_synced_write_entries",
            "Raft entries made durable per fsync of the raft log (one fsync covers every partition's readies written since the previous one)",
            synced_write_entries.clone(),
        );
        // 50 µs .. ~1.6 s.
        let synced_write_seconds = Histogram::new(exponential_buckets(0.000_05, 2.0, 16));
        registry.register(
            "wallet_fsync_duration_seconds",
            "Duration of each fsync of the raft log (on its own thread: the store loop does not wait for it)",
            synced_write_seconds.clone(),
        );
        let unsynced_log_writes = Counter::default();
        registry.register(
            "wallet_unsynced_log_writes",
            "Raft log writes made durable without an fsync (only commit indexes moved, nothing behind them waiting for one)",
            unsynced_log_writes.clone(),
        );
        // 50 µs .. ~3.3 s.
        let round_seconds = Histogram::new(exponential_buckets(0.000_05, 2.0, 17));
        registry.register(
            "wallet_store_round_duration_seconds",
            "Duration of each store-loop round: proposals, raft messages, the log write, apply, replies",
            round_seconds.clone(),
        );
        let round_longest_seconds = Gauge::<f64, std::sync::atomic::AtomicU64>::default();
        registry.register(
            "wallet_store_round_longest_seconds",
            "The longest store-loop round in the last sample interval (1 s): what stalls raft ticks",
            round_longest_seconds.clone(),
        );
        let proposal_queue_depth = Gauge::default();
        registry.register(
            "wallet_proposal_queue_depth",
            "Client commands and reads waiting in the store loop's mailbox at the start of a round",
            proposal_queue_depth.clone(),
        );
        let raft_queue_depth = Gauge::default();
        registry.register(
            "wallet_raft_queue_depth",
            "Inbound raft message batches waiting in the store loop's mailbox at the start of a round",
            raft_queue_depth.clone(),
        );
        let snapshots_written = Counter::default();
        registry.register(
            "wallet_snapshots_written",
            "Partition snapshots written durably on this node (a failed write stops the node)",
            snapshots_written.clone(),
        );
        let snapshot_fetch_failures = Counter::default();
        registry.register(
            "wallet_snapshot_fetch_failures",
            "Snapshots this node (a follower catching up) failed to fetch or verify from a leader; raft sends them again",
            snapshot_fetch_failures.clone(),
        );
        let snapshots_installed = Counter::default();
        registry.register(
            "wallet_snapshots_installed",
            "Snapshots this node (a follower behind the leader's log, or a new replica) fetched, verified and installed",
            snapshots_installed.clone(),
        );
        let replicas_created = Counter::default();
        registry.register(
            "wallet_replicas_created",
            "Partition replicas created on this node because a leader added it to the group (a replica move)",
            replicas_created.clone(),
        );
        let replicas_deleted = Counter::default();
        registry.register(
            "wallet_replicas_deleted",
            "Partition replicas deleted from this node (data included) because the group removed it (a replica move)",
            replicas_deleted.clone(),
        );
        let peer_frames_refused = Counter::default();
        registry.register(
            "wallet_peer_frames_refused",
            "Raft frames refused because the peer speaks from another data directory than the one this node knows (lost or replaced) while a partition here counts it, or announced a malformed one",
            peer_frames_refused.clone(),
        );
        let leader_handoffs = Counter::default();
        registry.register(
            "wallet_leader_handoffs",
            "Partition leaderships this node handed to the partition's preferred leader (placement's) once it was caught up",
            leader_handoffs.clone(),
        );
        let gauges = |registry: &mut Registry, name: &str, help: &str| {
            let family = Family::<PartitionLabels, Gauge>::default();
            registry.register(name, help, family.clone());
            family
        };
        let term = gauges(&mut registry, "wallet_raft_term", "Raft term, by partition");
        let commit_index = gauges(
            &mut registry,
            "wallet_raft_commit_index",
            "Raft commit index known to this replica, by partition",
        );
        let applied_index = gauges(
            &mut registry,
            "wallet_raft_applied_index",
            "Raft index applied to this replica's ledger, by partition",
        );
        let leader = gauges(
            &mut registry,
            "wallet_raft_leader",
            "1 if this replica leads the partition, else 0",
        );
        let in_flight = gauges(
            &mut registry,
            "wallet_in_flight_transfers",
            "Cross-partition transfers debited on this (source) partition and not yet settled, and multi-leg parts prepared here and not yet resolved (on a set's home: not yet finished)",
        );
        let holds_pending = gauges(
            &mut registry,
            "wallet_holds_pending",
            "Holds authorized on this (source) partition and not yet captured, voided or expired",
        );
        let leader_changes = Family::<PartitionLabels, Counter>::default();
        registry.register(
            "wallet_raft_leader_changes",
            "Times this replica learnt of a new leader of the partition (elections, transfers of leadership), by partition",
            leader_changes.clone(),
        );
        let conservation = Family::<CurrencyLabels, Gauge>::default();
        registry.register(
            "wallet_ledger_conservation_minor",
            "Sum of balances plus outflow per currency and partition, in minor units: must be 0",
            conservation.clone(),
        );
        let partitions = (0..partitions)
            .map(|partition| {
                let labels = PartitionLabels { partition };
                PartitionMetrics {
                    partition,
                    transfers_committed: transfers_committed.get_or_create(&labels).clone(),
                    transfers_rejected: transfers_rejected.get_or_create(&labels).clone(),
                    entry_commands: entry_commands.clone(),
                    term: term.get_or_create(&labels).clone(),
                    commit_index: commit_index.get_or_create(&labels).clone(),
                    applied_index: applied_index.get_or_create(&labels).clone(),
                    leader: leader.get_or_create(&labels).clone(),
                    in_flight: in_flight.get_or_create(&labels).clone(),
                    holds_pending: holds_pending.get_or_create(&labels).clone(),
                    leader_changes: leader_changes.get_or_create(&labels).clone(),
                    conservation: conservation.clone(),
                    currencies_seen: Vec::new(),
                }
            })
            .collect();

        let subscribers = Gauge::default();
        registry.register(
            "wallet_event_log_subscribers",
            "EventLog.Subscribe streams this node serves",
            subscribers.clone(),
        );
        let event_log_blocks = Family::<SourceLabels, Counter>::default();
        registry.register(
            "wallet_event_log_blocks",
            "Event blocks streamed to EventLog.Subscribe streams, by source: memory (the tail of \
             recent rounds) or disk",
            event_log_blocks.clone(),
        );
        // One statement each: `get_or_create` returns a guard on the family, and a second
        // call while the first guard lives (a temporary of the same statement) deadlocks.
        let from_memory = event_log_blocks
            .get_or_create(&SourceLabels { source: "memory" })
            .clone();
        let from_disk = event_log_blocks
            .get_or_create(&SourceLabels { source: "disk" })
            .clone();
        let event_log = EventLogMetrics {
            from_memory,
            from_disk,
        };
        let sst_bytes = Family::<CfLabels, Gauge>::default();
        registry.register(
            "wallet_rocksdb_sst_files_bytes",
            "RocksDB rocksdb.total-sst-files-size, by column family",
            sst_bytes.clone(),
        );
        let live_bytes = Family::<CfLabels, Gauge>::default();
        registry.register(
            "wallet_rocksdb_live_data_bytes",
            "RocksDB rocksdb.estimate-live-data-size, by column family",
            live_bytes.clone(),
        );
        Ok(Metrics {
            registry,
            grpc,
            process,
            store: StoreMetrics {
                partitions,
                synced_write_entries,
                synced_write_seconds,
                unsynced_log_writes,
                proposal_queue_depth,
                raft_queue_depth,
                round_seconds,
                round_longest_seconds,
                round_longest: Duration::ZERO,
                snapshots_written,
                snapshot_fetch_failures,
                snapshots_installed,
                leader_handoffs,
                replicas_created,
                replicas_deleted,
            },
            event_log,
            peer_frames_refused,
            subscribers,
            sst_bytes,
            live_bytes,
        })
    }

    /// The scrape-time update: subscriber count and RocksDB sizes (in-memory properties).
    pub fn refresh(
        &self,
        db: Arc<Db>,
        subscribers: impl Fn() -> usize + Send + Sync + 'static,
    ) -> telemetry::http::Refresh {
        let gauge = self.subscribers.clone();
        let sst_bytes = self.sst_bytes.clone();
        let live_bytes = self.live_bytes.clone();
        let process = self.process.clone();
        Arc::new(move || {
            process.refresh();
            gauge.set(subscribers() as i64);
            for cf in FAMILIES {
                let labels = CfLabels { cf };
                let int = |value: Option<u64>| value.unwrap_or(0).min(i64::MAX as u64) as i64;
                sst_bytes
                    .get_or_create(&labels)
                    .set(int(db.property_int(cf, "rocksdb.total-sst-files-size")));
                live_bytes
                    .get_or_create(&labels)
                    .set(int(db.property_int(cf, "rocksdb.estimate-live-data-size")));
            }
        })
    }
}
