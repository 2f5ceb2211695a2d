//! The read node's Prometheus series (served on `metrics_listen`, see README "Operations").
//!
//! Lag per partition is the source's applied index (the highest any write node reports,
//! polled every `SOURCE_POLL_INTERVAL`) minus the index this node has projected. Everything
//! else is read at scrape time, off the fold thread.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use telemetry::grpc::GrpcMetrics;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

/// How often the write nodes are asked for their applied indexes (one GetClusterStatus each).
pub const SOURCE_POLL_INTERVAL: Duration = Duration::from_secs(2);

pub use crate::faults::PartitionLabels;

/// Every series of a read node.
pub struct Metrics {
    pub registry: Registry,
    pub grpc: GrpcMetrics,
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
        Ok(Metrics {
            registry,
            grpc,
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
