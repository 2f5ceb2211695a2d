//! The read node's Prometheus series (served on `metrics_listen`, see README "Operations").
//!
//! Lag per partition is the source's applied index (the highest any write node reports,
//! polled every `SOURCE_POLL_INTERVAL`) minus the index this node has projected. Everything
//! else is read at scrape time, off the fold thread.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;
use telemetry::grpc::GrpcMetrics;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

/// How often the write nodes are asked for their applied indexes (one GetClusterStatus each).
pub const SOURCE_POLL_INTERVAL: Duration = Duration::from_secs(2);

pub use crate::faults::PartitionLabels;

/// Upper bounds (seconds) of `wallet_commit_to_push_seconds`: 1 ms to 10 s.
const COMMIT_TO_PUSH_BUCKETS: [f64; 13] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// `wallet_commit_to_push_seconds`: from a change's commit (the leader-stamped `timestamp_ms`
/// of its block) to the moment a watch stream handed it to gRPC. Observed once per live update
/// pushed to one watcher (a change two watchers see counts twice; snapshots and history
/// replays are not pushes of a new commit and are not observed), so nothing is spent when
/// nobody watches. Cheap to clone.
#[derive(Clone, Debug)]
pub struct PushLatency {
    histogram: Histogram,
}

impl Default for PushLatency {
    fn default() -> PushLatency {
        PushLatency {
            histogram: Histogram::new(COMMIT_TO_PUSH_BUCKETS),
        }
    }
}

impl PushLatency {
    /// One update committed at `committed_ms` (Unix milliseconds) pushed now. A commit stamp
    /// ahead of this node's clock counts as 0.
    pub fn observe_pushed(&self, committed_ms: u64) {
        self.histogram
            .observe(seconds_since(committed_ms, SystemTime::now()));
    }
}

/// Seconds from `committed_ms` (Unix milliseconds) to `now`, 0 when `now` is earlier.
fn seconds_since(committed_ms: u64, now: SystemTime) -> f64 {
    let now_ms = now.duration_since(UNIX_EPOCH).map_or(0, |since| {
        since.as_millis().min(u128::from(u64::MAX)) as u64
    });
    now_ms.saturating_sub(committed_ms) as f64 / 1_000.0
}

/// Every series of a read node.
pub struct Metrics {
    pub registry: Registry,
    pub grpc: GrpcMetrics,
    /// Handed to the QueryService, which observes every push.
    pub push_latency: PushLatency,
    projected: Family<PartitionLabels, Gauge>,
    source: Family<PartitionLabels, Gauge>,
    lag: Family<PartitionLabels, Gauge>,
    stuck: Family<PartitionLabels, Gauge>,
    fold_errors: Family<PartitionLabels, Counter>,
    chain_mismatches: Family<PartitionLabels, Counter>,
    watchers: Gauge,
    process: Arc<telemetry::process::ProcessMetrics>,
    /// Highest applied index any write node reported, per partition.
    source_applied: Arc<Vec<AtomicU64>>,
}

impl Metrics {
    pub fn new(partitions: u32, faults: &crate::faults::Faults) -> anyhow::Result<Metrics> {
        let mut registry = Registry::default();
        let grpc = GrpcMetrics::register(&mut registry, proto::FILE_DESCRIPTOR_SET)?;
        let process = Arc::new(telemetry::process::ProcessMetrics::register(
            &mut registry,
            "read-node",
            env!("CARGO_PKG_VERSION"),
        ));
        let mut family = |name: &str, help: &str| {
            let family = Family::<PartitionLabels, Gauge>::default();
            registry.register(name, help, family.clone());
            family
        };
        let projected = family(
            "wallet_projection_applied_index",
            "Raft index of the partition's event log that this read node has projected",
        );
        let source = family(
            "wallet_projection_source_applied_index",
            "Highest applied index the write nodes report for the partition (polled)",
        );
        let lag = family(
            "wallet_projection_lag_entries",
            "Source applied index minus projected index: raft entries not yet projected",
        );
        let stuck = family(
            "wallet_read_partition_stuck",
            "1 while the fold has stopped the partition at a block it cannot apply (its \
             projections stay before that block; see the error log), else 0",
        );
        // prometheus-client appends `_total` to counters.
        registry.register(
            "wallet_read_fold_errors",
            "Event blocks the fold refused (each stops its partition until a restart)",
            faults.fold_errors().clone(),
        );
        registry.register(
            "wallet_read_chain_mismatches",
            "Event blocks received with a chain hash that does not follow from the previous \
             block (not folded; ingest fails over to another write node)",
            faults.chain_mismatches().clone(),
        );
        let watchers = Gauge::default();
        registry.register(
            "wallet_watchers",
            "WatchBalances and WatchTransfer streams this read node serves",
            watchers.clone(),
        );
        let push_latency = PushLatency::default();
        registry.register(
            "wallet_commit_to_push_seconds",
            "From a change's commit (its block's leader-stamped time) to its push to a \
             watcher, once per update pushed to each watcher (clamped at 0)",
            push_latency.histogram.clone(),
        );
        Ok(Metrics {
            registry,
            grpc,
            push_latency,
            process,
            projected,
            source,
            lag,
            stuck,
            fold_errors: faults.fold_errors().clone(),
            chain_mismatches: faults.chain_mismatches().clone(),
            watchers,
            source_applied: Arc::new((0..partitions).map(|_| AtomicU64::new(0)).collect()),
        })
    }

    /// The scrape-time update from the projection's positions and the watcher count.
    pub fn refresh(
        &self,
        positions: watch::Receiver<Vec<u64>>,
        faults: watch::Receiver<Vec<Option<crate::faults::Fault>>>,
        watchers: impl Fn() -> usize + Send + Sync + 'static,
    ) -> telemetry::http::Refresh {
        let (projected, source, lag, stuck) = (
            self.projected.clone(),
            self.source.clone(),
            self.lag.clone(),
            self.stuck.clone(),
        );
        let (fold_errors, chain_mismatches) =
            (self.fold_errors.clone(), self.chain_mismatches.clone());
        let watchers_gauge = self.watchers.clone();
        let source_applied = self.source_applied.clone();
        let process = self.process.clone();
        Arc::new(move || {
            process.refresh();
            watchers_gauge.set(watchers() as i64);
            let positions = positions.borrow().clone();
            let faults = faults.borrow().clone();
            for (partition, &projected_index) in positions.iter().enumerate() {
                let labels = PartitionLabels {
                    partition: partition as u32,
                };
                let source_index = source_applied
                    .get(partition)
                    .map_or(0, |index| index.load(Ordering::Relaxed));
                let gauge = |value: u64| value.min(i64::MAX as u64) as i64;
                projected.get_or_create(&labels).set(gauge(projected_index));
                source.get_or_create(&labels).set(gauge(source_index));
                lag.get_or_create(&labels)
                    .set(gauge(source_index.saturating_sub(projected_index)));
                let stopped = matches!(
                    faults.get(partition),
                    Some(Some(fault)) if fault.kind == crate::faults::FaultKind::FoldFailed
                );
                stuck.get_or_create(&labels).set(i64::from(stopped));
                // Present (at 0) from the start, so alerts can rate() them.
                let _ = fold_errors.get_or_create(&labels);
                let _ = chain_mismatches.get_or_create(&labels);
            }
        })
    }

    /// Polls every write node's applied indexes until `shutdown`; a node that does not answer
    /// within the call timeout is skipped for that round.
    pub fn poll_sources(&self, upstream: crate::ingest::Upstream, shutdown: CancellationToken) {
        let source_applied = self.source_applied.clone();
        tokio::spawn(async move {
            loop {
                for uri in &upstream.uris {
                    let Ok(status) = crate::ingest::cluster_status(&upstream, uri).await else {
                        continue;
                    };
                    for partition in status.partitions {
                        if let Some(index) = source_applied.get(partition.partition as usize) {
                            index.fetch_max(partition.applied_index, Ordering::Relaxed);
                        }
                    }
                }
                tokio::select! {
                    () = tokio::time::sleep(SOURCE_POLL_INTERVAL) => {}
                    () = shutdown.cancelled() => return,
                }
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn push_latency_is_the_time_since_the_commit_clamped_at_zero() {
        let now = UNIX_EPOCH + Duration::from_millis(10_000);
        assert_eq!(seconds_since(7_500, now), 2.5);
        assert_eq!(seconds_since(10_000, now), 0.0);
        // A commit stamped ahead of this node's clock (skew): 0, not negative.
        assert_eq!(seconds_since(12_000, now), 0.0);
    }
}
