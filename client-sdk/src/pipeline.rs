//! Transparent batching of [`crate::WalletClient::transfer`]: the bookkeeping of the lanes,
//! one per node, that gather concurrent calls into `TransferBatch` calls.
//!
//! Per node, at most `batch_in_flight_max` batches are in flight. A call that finds fewer in
//! flight starts a sender at once, which takes it with whatever is queued for that node;
//! otherwise the call waits in the node's queue, and when a batch to the node returns, its
//! sender takes everything queued (at most [`proto::TRANSFER_BATCH_MAX`], in arrival order)
//! as the next batch. Nothing waits while the client is idle (no timer, no linger), and under
//! load batches grow by themselves. The sending itself is in `client.rs`.

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use proto::v1::{TransferRequest, TransferResponse};
use tokio::sync::oneshot;

use crate::error::Error;

/// Where a batched call's outcome goes: `Some` definite outcome, or `None` (also: the sender
/// dropped) when the batch gave none and the caller retries through the unary path.
pub(crate) type Reply = oneshot::Sender<Option<Result<TransferResponse, Error>>>;

/// A call waiting in a lane.
pub(crate) struct Waiting {
    /// The source partition (a success proves the node leads it).
    pub partition: u32,
    pub request: TransferRequest,
    pub reply: Reply,
}

#[derive(Default)]
struct Lane {
    queue: VecDeque<Waiting>,
    /// Senders running for this node.
    senders: usize,
}

/// How much batching a client did: `transfers / batches` is the mean batch size.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct BatchStats {
    /// `TransferBatch` calls sent.
    pub batches: u64,
    /// Transfers those calls carried.
    pub transfers: u64,
}

/// Every node's lane.
pub(crate) struct Lanes {
    senders_max: usize,
    lanes: Mutex<HashMap<String, Lane>>,
    batches: AtomicU64,
    transfers: AtomicU64,
}

impl Lanes {
    pub fn new(senders_max: usize) -> Lanes {
        Lanes {
            senders_max,
            lanes: Mutex::new(HashMap::new()),
            batches: AtomicU64::new(0),
            transfers: AtomicU64::new(0),
        }
    }

    /// Queues `waiting` for `node`. True if a sender slot was free and is now taken: the
    /// caller must start a sender for the node (it loops on [`Lanes::next_batch`]).
    pub fn enqueue(&self, node: &str, waiting: Waiting) -> bool {
        let mut lanes = crate::client::lock(&self.lanes);
        let lane = lanes.entry(node.to_owned()).or_default();
        lane.queue.push_back(waiting);
        if lane.senders < self.senders_max {
            lane.senders += 1;
            true
        } else {
            false
        }
    }

    /// The next batch a sender of `node` sends: what is queued, up to the batch limit, less
    /// the calls whose callers went away (nobody waits for their outcome). Empty when nothing
    /// is queued: the sender then stops, and its slot is free again (an idle lane is
    /// forgotten, so lanes never outnumber the nodes with calls waiting).
    pub fn next_batch(&self, node: &str) -> Vec<Waiting> {
        let mut lanes = crate::client::lock(&self.lanes);
        let Some(lane) = lanes.get_mut(node) else {
            return Vec::new();
        };
        let mut batch = Vec::new();
        while batch.len() < proto::TRANSFER_BATCH_MAX {
            let Some(waiting) = lane.queue.pop_front() else {
                break;
            };
            if !waiting.reply.is_closed() {
                batch.push(waiting);
            }
        }
        if batch.is_empty() {
            lane.senders -= 1;
            if lane.senders == 0 && lane.queue.is_empty() {
                lanes.remove(node);
            }
        } else {
            self.batches.fetch_add(1, Ordering::Relaxed);
            self.transfers
                .fetch_add(batch.len() as u64, Ordering::Relaxed);
        }
        batch
    }

    pub fn stats(&self) -> BatchStats {
        BatchStats {
            batches: self.batches.load(Ordering::Relaxed),
            transfers: self.transfers.load(Ordering::Relaxed),
        }
    }

    #[cfg(test)]
    fn lanes(&self) -> usize {
        crate::client::lock(&self.lanes).len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    type Answer = oneshot::Receiver<Option<Result<TransferResponse, Error>>>;

    fn waiting(n: usize) -> (Waiting, Answer) {
        let (reply, answer) = oneshot::channel();
        let request = TransferRequest {
            transaction_id: n.to_string(),
            ..TransferRequest::default()
        };
        (
            Waiting {
                partition: 0,
                request,
                reply,
            },
            answer,
        )
    }

    fn ids(batch: &[Waiting]) -> Vec<String> {
        batch
            .iter()
            .map(|w| w.request.transaction_id.clone())
            .collect()
    }

    #[test]
    fn calls_go_at_once_until_the_senders_are_busy_then_queue_in_order() {
        let lanes = Lanes::new(2);
        let mut answers = Vec::new();
        let mut started = Vec::new();
        for n in 0..5 {
            let (w, answer) = waiting(n);
            answers.push(answer);
            started.push(lanes.enqueue("a", w));
        }
        assert_eq!(started, [true, true, false, false, false]);
        // Another node has its own lane and slots.
        let (w, _other) = waiting(9);
        assert!(lanes.enqueue("b", w));

        // The two senders split what is queued; the first takes everything, in order.
        assert_eq!(ids(&lanes.next_batch("a")), ["0", "1", "2", "3", "4"]);
        assert!(lanes.next_batch("a").is_empty(), "the second sender stops");
        // One sender is still busy with its batch: a slot is free, so a call goes at once.
        let (w, _late) = waiting(5);
        assert!(lanes.enqueue("a", w));
        assert_eq!(ids(&lanes.next_batch("a")), ["5"]);
        assert!(lanes.next_batch("a").is_empty());
        assert!(lanes.next_batch("a").is_empty());
        assert_eq!(lanes.lanes(), 1, "an idle lane is forgotten");
        assert_eq!(
            lanes.stats(),
            BatchStats {
                batches: 2,
                transfers: 6
            }
        );
    }

    #[test]
    fn a_batch_is_at_most_the_limit_and_skips_callers_that_went_away() {
        let lanes = Lanes::new(1);
        let mut answers = Vec::new();
        for n in 0..proto::TRANSFER_BATCH_MAX + 10 {
            let (w, answer) = waiting(n);
            lanes.enqueue("a", w);
            answers.push(answer);
        }
        // Callers 1 and 2 gave up: their transfers are not sent.
        answers.remove(2);
        answers.remove(1);
        let first = lanes.next_batch("a");
        assert_eq!(first.len(), proto::TRANSFER_BATCH_MAX);
        assert_eq!(ids(&first[..3]), ["0", "3", "4"]);
        let second = lanes.next_batch("a");
        assert_eq!(second.len(), 8, "what the first batch left, less the two");
        assert!(lanes.next_batch("a").is_empty());
        assert_eq!(lanes.lanes(), 0);
    }
}
