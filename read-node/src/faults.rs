//! Partitions this read node cannot follow, and why: the fold refused a block (the partition
//! is stopped just before it), or ingest received a block that fails the event chain (ingest
//! fails over to another write node and tries again). Shown as metrics
//! (`wallet_read_fold_errors_total`, `wallet_read_chain_mismatches_total`,
//! `wallet_read_partition_stuck`), as the health of `partition-<p>` (NOT_SERVING while
//! faulty, see [`partition_health_service`]) and in error logs; every other partition is
//! followed and served as usual.

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use tokio::sync::watch;

/// Why a partition is not followed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum FaultKind {
    /// The fold refused the block at `index`: nothing at or after it is folded until a
    /// restart (a read node that can fold it then goes on). Sticky.
    FoldFailed,
    /// The block at `index` failed the chain check on the last attempt; ingest keeps failing
    /// over between write nodes. Cleared by the next block that passes.
    ChainMismatch,
}

/// A partition's fault: the first block it could not take, and the error.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Fault {
    pub kind: FaultKind,
    pub index: u64,
    pub detail: String,
}

/// The label of every per-partition series (the fault counters here, the gauges in
/// `metrics.rs`).
#[derive(Clone, Debug, Hash, PartialEq, Eq, prometheus_client::encoding::EncodeLabelSet)]
pub struct PartitionLabels {
    pub partition: u32,
}

/// The faults of every partition, shared by ingest, the fold thread, queries and metrics.
pub struct Faults {
    state: watch::Sender<Vec<Option<Fault>>>,
    fold_errors: Family<PartitionLabels, Counter>,
    chain_mismatches: Family<PartitionLabels, Counter>,
}

/// The health service name of one partition: SERVING while it is followed normally.
pub fn partition_health_service(partition: u32) -> String {
    format!("partition-{partition}")
}

impl Faults {
    pub fn new(partitions: u32) -> Faults {
        Faults {
            state: watch::Sender::new(vec![None; partitions as usize]),
            fold_errors: Family::default(),
            chain_mismatches: Family::default(),
        }
    }

    pub fn fold_errors(&self) -> &Family<PartitionLabels, Counter> {
        &self.fold_errors
    }

    pub fn chain_mismatches(&self) -> &Family<PartitionLabels, Counter> {
        &self.chain_mismatches
    }

    /// Every partition's fault (None = healthy); changes wake receivers.
    pub fn subscribe(&self) -> watch::Receiver<Vec<Option<Fault>>> {
        self.state.subscribe()
    }

    pub fn get(&self, partition: u32) -> Option<Fault> {
        self.state
            .borrow()
            .get(partition as usize)
            .cloned()
            .flatten()
    }

    /// The index of the block the fold stopped `partition` at, if it did.
    pub fn stuck_at(&self, partition: u32) -> Option<u64> {
        self.get(partition)
            .filter(|fault| fault.kind == FaultKind::FoldFailed)
            .map(|fault| fault.index)
    }

    /// The fold refused `partition`'s block `index`: the partition stops there.
    pub fn fold_failed(&self, partition: u32, index: u64, error: &anyhow::Error) {
        let detail = format!("{error:#}");
        tracing::error!(
            partition,
            index,
            error = detail,
            "cannot fold this event block: partition {partition} stops before index {index} \
             (every other partition goes on); the projections of partition {partition} stay \
             at index {} until a read node that can fold it restarts here",
            index.saturating_sub(1)
        );
        self.fold_errors
            .get_or_create(&PartitionLabels { partition })
            .inc();
        self.set(
            partition,
            Some(Fault {
                kind: FaultKind::FoldFailed,
                index,
                detail,
            }),
        );
    }

    /// A block from `source` failed the chain check: not folded, ingest fails over.
    pub fn chain_mismatch(&self, partition: u32, index: u64, source: &str, error: &anyhow::Error) {
        let detail = format!("from {source}: {error:#}");
        tracing::error!(
            partition,
            index,
            %source,
            error = format!("{error:#}"),
            "event block fails the hash chain: not folded; failing over to another write node"
        );
        self.chain_mismatches
            .get_or_create(&PartitionLabels { partition })
            .inc();
        if self.stuck_at(partition).is_none() {
            self.set(
                partition,
                Some(Fault {
                    kind: FaultKind::ChainMismatch,
                    index,
                    detail,
                }),
            );
        }
    }

    /// A block of `partition` passed the chain check: a past mismatch is over.
    pub fn chain_ok(&self, partition: u32) {
        let slot = partition as usize;
        self.state.send_if_modified(|state| match state.get(slot) {
            Some(Some(fault)) if fault.kind == FaultKind::ChainMismatch => {
                tracing::info!(partition, "event chain verified again after a mismatch");
                state[slot] = None;
                true
            }
            _ => false,
        });
    }

    fn set(&self, partition: u32, fault: Option<Fault>) {
        let slot = partition as usize;
        self.state.send_modify(|state| {
            if let Some(entry) = state.get_mut(slot) {
                *entry = fault;
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_fold_failure_is_sticky_and_a_chain_mismatch_clears() {
        let faults = Faults::new(3);
        faults.chain_mismatch(1, 7, "http://w1", &anyhow::anyhow!("bad link"));
        assert_eq!(
            faults.get(1).map(|fault| fault.kind),
            Some(FaultKind::ChainMismatch)
        );
        assert_eq!(faults.stuck_at(1), None);
        faults.chain_ok(1);
        assert_eq!(faults.get(1), None);
        faults.fold_failed(2, 9, &anyhow::anyhow!("unknown transfer"));
        assert_eq!(faults.stuck_at(2), Some(9));
        // A later chain report neither hides nor clears the stop.
        faults.chain_mismatch(2, 10, "http://w2", &anyhow::anyhow!("bad link"));
        faults.chain_ok(2);
        assert_eq!(faults.stuck_at(2), Some(9));
        assert_eq!(faults.get(0), None);
        let count = |family: &Family<PartitionLabels, Counter>, partition| {
            family.get_or_create(&PartitionLabels { partition }).get()
        };
        assert_eq!(count(faults.fold_errors(), 2), 1);
        assert_eq!(count(faults.chain_mismatches(), 1), 1);
        assert_eq!(count(faults.chain_mismatches(), 2), 1);
        assert_eq!(count(faults.fold_errors(), 0), 0);
    }
}
