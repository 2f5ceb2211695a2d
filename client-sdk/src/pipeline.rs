//! Transparent pipelining of [`crate::WalletClient::transfer`]: concurrent calls bound for the
//! same node share one long-lived `SubmitTransfers` stream, so they cost the node one stream
//! instead of one call each, and reach its store together (one raft entry carries them all).
//! Nothing waits to be gathered (no timer, no linger), and no call waits for another's answer:
//! each result goes back to its caller as soon as the node sends it.
//!
//! This module keeps a stream's callers (who waits for which transaction id); opening the
//! stream and reading its results are in `client.rs`.

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use proto::v1::{TransferRequest, TransferResponse, TransferResult};
use tokio::sync::{mpsc, oneshot};

use crate::error::Error;
use crate::sync::lock;

/// Requests a pipe holds before they are written to its stream. Beyond that (the node reads
/// slowly, or a client has this many calls waiting) a call goes its own way as a unary call.
pub const PIPE_QUEUE_MAX: usize = 1_024;

/// What a pipelined caller is told: `Some` definite outcome, or `None` (also: the sender was
/// dropped) when the stream gave none and the caller goes on through the unary path.
pub(crate) type Answer = oneshot::Receiver<Option<Result<TransferResponse, Error>>>;
type Reply = oneshot::Sender<Option<Result<TransferResponse, Error>>>;

/// A caller waiting for a result.
struct Waiter {
    /// The source partition (a success proves the node leads it).
    partition: u32,
    reply: Reply,
}

/// The callers waiting for one transaction id: several when the same transfer is in flight
/// more than once. Only the same transfer may share an id here: results name the id alone, so
/// the answers of two different transfers under one id could not be told apart.
struct SameId {
    request: TransferRequest,
    waiters: VecDeque<Waiter>,
}

#[derive(Default)]
struct Waiters {
    by_id: HashMap<String, SameId>,
    /// The stream ended: nobody may wait on it any more.
    closed: bool,
}

/// One node's stream, as its callers see it.
pub(crate) struct Pipe {
    requests: mpsc::Sender<TransferRequest>,
    waiters: Mutex<Waiters>,
}

impl Pipe {
    /// A pipe whose requests the stream reads from the returned receiver.
    pub fn new() -> (Pipe, mpsc::Receiver<TransferRequest>) {
        let (requests, receiver) = mpsc::channel(PIPE_QUEUE_MAX);
        let pipe = Pipe {
            requests,
            waiters: Mutex::new(Waiters::default()),
        };
        (pipe, receiver)
    }

    /// Sends `request` down the stream; the answer to wait on, or `None` if the pipe is full
    /// or closed, or another transfer under the same id is in flight here (the caller goes its
    /// own way).
    pub fn send(&self, partition: u32, request: TransferRequest) -> Option<Answer> {
        let (reply, answer) = oneshot::channel();
        let id = request.transaction_id.clone();
        {
            let mut waiters = lock(&self.waiters);
            if waiters.closed {
                return None;
            }
            let same = waiters.by_id.entry(id.clone()).or_insert_with(|| SameId {
                request: request.clone(),
                waiters: VecDeque::new(),
            });
            if same.request != request {
                return None;
            }
            same.waiters.push_back(Waiter { partition, reply });
        }
        if self.requests.try_send(request).is_err() {
            drop(answer);
            self.forget(&id);
            return None;
        }
        Some(answer)
    }

    /// Forgets the waiters of `id` that stopped waiting (a caller timed out, or its call was
    /// dropped); a result for them is then ignored.
    pub fn forget(&self, id: &str) {
        let mut waiters = lock(&self.waiters);
        if let Some(same) = waiters.by_id.get_mut(id) {
            same.waiters.retain(|waiter| !waiter.reply.is_closed());
            if same.waiters.is_empty() {
                waiters.by_id.remove(id);
            }
        }
    }

    /// Hands a result to the first caller waiting for its id; the partition it proved led by
    /// this node, if it is a success.
    pub fn resolve(&self, result: TransferResult) -> Option<u32> {
        let waiter = {
            let mut waiters = lock(&self.waiters);
            let same = waiters.by_id.get_mut(&result.transaction_id)?;
            let waiter = same.waiters.pop_front();
            if same.waiters.is_empty() {
                waiters.by_id.remove(&result.transaction_id);
            }
            waiter?
        };
        let outcome = definite(result);
        let led = matches!(outcome, Some(Ok(_))).then_some(waiter.partition);
        let _ = waiter.reply.send(outcome);
        led
    }

    /// The stream ended: every caller still waiting goes on alone, and no new one waits here.
    pub fn close(&self) {
        let orphans = {
            let mut waiters = lock(&self.waiters);
            waiters.closed = true;
            std::mem::take(&mut waiters.by_id)
        };
        drop(orphans);
    }

    pub fn is_closed(&self) -> bool {
        lock(&self.waiters).closed
    }
}

/// The definite outcome a `SubmitTransfers` or `TransferBatch` result carries, as the unary
/// `Transfer` would give it; `None` for "unavailable" or a malformed result (retry the id).
pub(crate) fn definite(result: TransferResult) -> Option<Result<TransferResponse, Error>> {
    match (result.status.as_str(), result.error) {
        ("success", _) => Some(Ok(TransferResponse {
            status: result.status,
            transaction_id: result.transaction_id,
            consistency_token: result.consistency_token,
            replayed: result.replayed,
        })),
        ("rejected", Some(error)) => Some(Err(Error::from_item(error, result.replayed))),
        _ => None,
    }
}

/// How much a client pipelined.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PipelineStats {
    /// `SubmitTransfers` streams opened by `transfer()`.
    pub streams: u64,
    /// Transfers sent down them.
    pub transfers: u64,
}

#[derive(Default)]
pub(crate) struct Counters {
    streams: AtomicU64,
    transfers: AtomicU64,
}

impl Counters {
    pub fn stream_opened(&self) {
        self.streams.fetch_add(1, Ordering::Relaxed);
    }

    pub fn transfer_sent(&self) {
        self.transfers.fetch_add(1, Ordering::Relaxed);
    }

    pub fn stats(&self) -> PipelineStats {
        PipelineStats {
            streams: self.streams.load(Ordering::Relaxed),
            transfers: self.transfers.load(Ordering::Relaxed),
        }
    }
}

#[cfg(test)]
mod tests {
    use proto::v1::TransferError;

    use super::*;

    fn request(id: &str) -> TransferRequest {
        TransferRequest {
            transaction_id: id.into(),
            ..TransferRequest::default()
        }
    }

    fn result(id: &str, status: &str) -> TransferResult {
        TransferResult {
            transaction_id: id.into(),
            status: status.into(),
            consistency_token: if status == "success" {
                "0:1".into()
            } else {
                String::new()
            },
            error: (status != "success").then(|| TransferError {
                code: tonic::Code::FailedPrecondition as i32,
                reason: "INSUFFICIENT_FUNDS".into(),
                message: "m".into(),
                field: String::new(),
            }),
            replayed: false,
        }
    }

    #[tokio::test]
    async fn each_result_goes_to_its_caller_in_order_of_sending_per_id() {
        let (pipe, mut stream) = Pipe::new();
        let a = pipe.send(3, request("a")).expect("sent");
        let b1 = pipe.send(5, request("b")).expect("sent");
        let b2 = pipe.send(5, request("b")).expect("sent");
        let sent: Vec<String> = (0..3)
            .map(|_| stream.try_recv().expect("on the stream").transaction_id)
            .collect();
        assert_eq!(sent, ["a", "b", "b"]);

        // Results come in any order; an unknown id is ignored.
        assert_eq!(pipe.resolve(result("zzz", "success")), None);
        assert_eq!(pipe.resolve(result("b", "rejected")), None);
        assert_eq!(pipe.resolve(result("a", "success")), Some(3));
        assert_eq!(pipe.resolve(result("b", "unavailable")), None);

        let a = a.await.expect("answered").expect("definite");
        assert_eq!(a.expect("success").consistency_token, "0:1");
        let b1 = b1.await.expect("answered").expect("definite");
        assert_eq!(b1.expect_err("rejected").reason(), "INSUFFICIENT_FUNDS");
        assert!(
            b2.await.expect("answered").is_none(),
            "unavailable: retry alone"
        );

        // Another transfer under an id in flight does not share the stream: the two answers
        // could not be told apart.
        let _first = pipe.send(0, request("c")).expect("sent");
        let other = TransferRequest {
            amount: "2.00".into(),
            ..request("c")
        };
        assert!(pipe.send(0, other).is_none(), "goes its own way");
        assert!(
            pipe.send(0, request("c")).is_some(),
            "the same transfer again shares it"
        );
    }

    #[tokio::test]
    async fn a_closed_or_full_pipe_sends_nothing_and_its_waiters_go_on_alone() {
        let (pipe, stream) = Pipe::new();
        let waiting = pipe.send(0, request("w")).expect("sent");
        pipe.close();
        assert!(
            waiting.await.is_err(),
            "the reply is dropped: the caller goes on"
        );
        assert!(pipe.send(0, request("x")).is_none());
        assert!(pipe.is_closed());
        drop(stream);

        let (pipe, _stream) = Pipe::new();
        let answers: Vec<Answer> = (0..PIPE_QUEUE_MAX)
            .map(|n| pipe.send(0, request(&n.to_string())).expect("room"))
            .collect();
        assert!(pipe.send(0, request("one-too-many")).is_none());
        assert!(!lock(&pipe.waiters).by_id.contains_key("one-too-many"));
        // A caller that gives up is forgotten; its result is then ignored.
        drop(answers);
        pipe.forget("0");
        assert!(!lock(&pipe.waiters).by_id.contains_key("0"));
        assert_eq!(pipe.resolve(result("0", "success")), None);
    }
}
