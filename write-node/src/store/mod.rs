//! The store loop: one thread owns every partition's `RawNode` and ledger and runs rounds of
//! gather -> tick -> propose -> write the log (one write for all partitions, fsynced on
//! another thread when raft needs it, not waited for) -> send -> apply -> reply. No lock is shared
//! with the gRPC side: services talk to the loop through two bounded mailboxes (client
//! commands, inbound raft messages) and one-shot replies.
//!
//! Ready handling follows raft-rs's asynchronous contract (`advance_append_async`): leader
//! messages go out at once (replication overlaps the leader's own fsync), the entries and
//! hard state are written unsynced and made durable by the raft log's sync thread
//! (`log_sync.rs`), everything raft marks as "persisted messages" goes out only once that
//! sync has ended (`on_persist_ready`), raft hands out for applying only entries that are
//! durable, and nothing awaits between `ready()` and `advance_append_async()`.
//!
//! The module, by concern: this file holds the services' handle and the types they share with
//! the loop; `startup.rs` opens and recovers the partitions and starts the loop; `round.rs`
//! is the loop itself; `log_sync.rs` the raft log's sync thread; `partition.rs` one
//! partition's raft node, ledger and waiting callers; `catch_up.rs` snapshot catch-up as a
//! pure state machine the loop drives. The loop is given its network as a value (`Network`,
//! implemented in `transport.rs`): nothing here dials or serves peers.

mod catch_up;
mod log_sync;
mod membership;
mod partition;
mod round;
mod startup;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock, RwLock};

use futures::future::BoxFuture;
use ledger::{Account, Command, Ledger, Outcome, TransferCommand, TransferRecord};
use raft::eraftpb::Message;
use tokio::sync::{broadcast, mpsc, oneshot, watch};

use crate::codec::{ChainHash, EventBlock};
use crate::limits;
use crate::snapshot::SnapshotMeta;
use crate::storage::Db;

pub(crate) use round::now_ms;
pub use startup::start;

/// The store loop's network, given to `start` (`transport::PeerNetwork` is the node's).
pub trait Network: Send + 'static {
    /// Hands a partition's raft messages to the peers they are addressed to. Never waits: what
    /// cannot be queued is dropped, and raft's own retries recover it.
    fn send(&self, partition: u32, messages: Vec<Message>);

    /// Fetches a snapshot from node `from`, writing its event blocks and the snapshot to the
    /// local stores, and returns the verified state (see `transport::fetch_snapshot`). The
    /// loop runs it on the node's multi-threaded runtime, off the store thread.
    fn fetch_snapshot(
        &self,
        from: u64,
        request: SnapshotRequest,
    ) -> BoxFuture<'static, anyhow::Result<FetchedSnapshot>>;
}

/// A follower's request for snapshot `index` of `partition`, with the event blocks after its
/// applied index `events_after` (whose chain head is `chain_after`).
#[derive(Clone, Debug)]
pub struct SnapshotRequest {
    pub partition: u32,
    pub index: u64,
    pub events_after: u64,
    pub chain_after: ChainHash,
    /// The follower's ledger at `events_after` (an O(1) clone): the transfers in flight
    /// there, which settles among the fetched events finish (their records are not on disk
    /// while in flight).
    pub ledger_after: Ledger,
}

/// A snapshot a follower fetched and verified: its header, its state, and the highest leader
/// timestamp of the event blocks fetched with it (0 if none).
pub type FetchedSnapshot = (SnapshotMeta, Ledger, u64);

/// Live multi-leg sets of a home to drive on, and the last live record looked at (the next
/// batch resumes after it).
pub type LiveLegs = (Vec<ledger::LegsCommand>, Option<uuid::Uuid>);

/// Why a command or read got no answer from the ledger. Each maps to UNAVAILABLE or
/// RESOURCE_EXHAUSTED at the API.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum StoreError {
    #[error("this node is not the partition leader")]
    NotLeader { leader_id: Option<u64> },
    /// The partition is placed on other nodes: its leader, if known, answers for it.
    #[error("this node holds no replica of the partition")]
    NotHosted { leader_id: Option<u64> },
    #[error(
        "leadership changed while the command was in flight; it may or may not have been applied"
    )]
    OutcomeUnknown,
    #[error("the node is overloaded")]
    Overloaded,
    #[error("the node is shutting down")]
    ShuttingDown,
    /// The store loop stopped on a failed RocksDB write (or another storage error): the node
    /// accepts nothing more and exits. A command answered with this may or may not commit
    /// through the other replicas.
    #[error(
        "the node's storage failed; it stopped accepting writes and must be restarted \
         (a command in flight may or may not have been applied)"
    )]
    StorageFailed,
    #[error("the linearizable read did not complete in time")]
    ReadTimeout,
}

/// A command's answer: the ledger outcome and the log position that decided it.
#[derive(Clone, Debug)]
pub struct Applied {
    pub outcome: Outcome,
    pub partition: u32,
    pub index: u64,
}

/// A linearizable read.
#[derive(Clone, Debug)]
pub enum Query {
    Account(String),
    Transfer(uuid::Uuid),
    /// The record a source keeps for the id: a transfer's (or hold's) or a multi-leg
    /// transfer's; not a credit's.
    Record(uuid::Uuid),
}

#[derive(Clone, Debug)]
pub enum QueryAnswer {
    /// The account and what pending holds reserve on it.
    Account(Option<(Account, i128)>),
    Transfer(Option<TransferRecord>),
    Record(Option<ledger::Record>),
}

/// A read's answer and the applied index it reflects.
#[derive(Clone, Debug)]
pub struct ReadAnswer {
    pub answer: QueryAnswer,
    pub partition: u32,
    pub index: u64,
}

/// What one store round applied to one partition, as caught-up subscribers get it
/// (`event_log`): entries `first..=last`, and the event blocks among them (entries without
/// events have none), each with the chain hash after it. Published once the round's apply
/// batch is written, so everything in it is also on disk.
#[derive(Debug)]
pub struct AppliedRound {
    pub first: u64,
    pub last: u64,
    pub blocks: Vec<(EventBlock, ChainHash)>,
}

/// A partition's membership: the nodes that vote (while in joint consensus, those of both
/// configurations), those that only learn, and the index of the entry that last changed it
/// (0: the membership the group was created with). For a partition held here it is this
/// replica's applied membership; for the others, the newest its replicas reported
/// (`directory.rs`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Members {
    pub conf_index: u64,
    /// The voters (while joint, the incoming configuration's), in id order.
    pub voters: Vec<u64>,
    /// While joint, the outgoing configuration's voters; empty otherwise.
    pub outgoing: Vec<u64>,
    pub learners: Vec<u64>,
}

impl Members {
    pub fn of(conf_state: &raft::eraftpb::ConfState, conf_index: u64) -> Members {
        let sorted = |ids: &[u64]| {
            let mut ids = ids.to_vec();
            ids.sort_unstable();
            ids
        };
        Members {
            conf_index,
            voters: sorted(&conf_state.voters),
            outgoing: sorted(&conf_state.voters_outgoing),
            learners: sorted(&conf_state.learners),
        }
    }

    /// The group's first membership, as placement made it.
    fn placed(group: &placement::Group) -> Members {
        Members {
            conf_index: 0,
            voters: group.voters.iter().copied().collect(),
            outgoing: Vec::new(),
            learners: Vec::new(),
        }
    }

    /// Every node that votes, in either configuration while joint, in id order.
    pub fn voting(&self) -> Vec<u64> {
        let mut voting: Vec<u64> = self.voters.iter().chain(&self.outgoing).copied().collect();
        voting.sort_unstable();
        voting.dedup();
        voting
    }

    /// Whether the node is in the group (voting or learning).
    pub fn contains(&self, node: u64) -> bool {
        self.voters.contains(&node)
            || self.outgoing.contains(&node)
            || self.learners.contains(&node)
    }

    /// As the move planner sees it.
    pub fn membership(&self) -> placement::Membership {
        placement::Membership {
            voters: self.voters.iter().copied().collect(),
            learners: self.learners.iter().copied().collect(),
            outgoing: self.outgoing.iter().copied().collect(),
        }
    }
}

/// What a partition's leader did for one step of a replica move (`StoreHandle::move_step`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MoveProgress {
    /// The step raft was asked for, or what the move waits on.
    pub step: placement::Step,
    /// The membership the step was planned from.
    pub members: Members,
}

/// Why a replica move cannot go on.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum MoveRefused {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Plan(#[from] placement::MoveError),
}

/// `PartitionStatus::role` of a partition this node holds no replica of.
pub const ROLE_NOT_HOSTED: &str = "none";

/// One partition as this node sees it.
#[derive(Clone, Debug)]
pub struct PartitionStatus {
    pub partition: u32,
    pub leader_id: u64,
    pub term: u64,
    pub commit_index: u64,
    pub applied_index: u64,
    pub role: &'static str,
    pub state_digest: Option<[u8; 32]>,
    pub in_flight_transfers: u64,
    pub snapshot_index: u64,
    pub log_first_index: u64,
    /// Placement's preferred leader (see `partition::Handoff`).
    pub preferred_leader_id: u64,
    /// The partition's membership: its voters (`Members::voting`, both configurations
    /// while joint) and the learners receiving its log without a vote (a replica being
    /// moved there).
    pub members: Members,
}

type ProposeReply = oneshot::Sender<Result<Applied, StoreError>>;
type ReadReply = oneshot::Sender<Result<ReadAnswer, StoreError>>;

enum ClientRequest {
    Propose {
        partition: u32,
        command: Command,
        reply: ProposeReply,
    },
    Read {
        partition: u32,
        query: Query,
        reply: ReadReply,
    },
    Status {
        with_digest: bool,
        reply: oneshot::Sender<Vec<PartitionStatus>>,
    },
    InFlight {
        partition: u32,
        after: Option<uuid::Uuid>,
        reply: oneshot::Sender<Result<Vec<TransferCommand>, StoreError>>,
    },
    /// Multi-leg sets whose home is the partition and that are not finished (leader only).
    LiveLegs {
        partition: u32,
        after: Option<uuid::Uuid>,
        reply: oneshot::Sender<Result<LiveLegs, StoreError>>,
    },
    /// Pending holds due at `now_ms`, earliest first (leader only).
    DueHolds {
        partition: u32,
        now_ms: u64,
        reply: oneshot::Sender<Result<Vec<uuid::Uuid>, StoreError>>,
    },
    /// This node (a leader) finished streaming a snapshot to follower `to`, or failed to.
    SnapshotServed { partition: u32, to: u64, ok: bool },
    /// Follower `to` started fetching the snapshot this node (a leader) sent it.
    SnapshotFetchStarted { partition: u32, to: u64 },
    /// The next step of moving a replica of the partition from node `from` to node `to`
    /// (leader only): planned from the applied membership and started at once.
    Move {
        partition: u32,
        from: u64,
        to: u64,
        reply: oneshot::Sender<Result<MoveProgress, MoveRefused>>,
    },
    /// A replica of the partition reported a newer membership without this node: the loop
    /// deletes its replica if its own membership is older (`directory.rs`).
    Removed { partition: u32, members: Members },
}

/// Raft messages received from one peer frame.
pub struct InboundRaft {
    pub messages: Vec<(u32, Message)>,
}

/// Per partition held here, the sender of its applied rounds (`StoreHandle::tail`); the loop
/// sets and clears them as it gains and loses replicas.
type Tails = Arc<RwLock<Vec<Option<broadcast::Sender<Arc<AppliedRound>>>>>>;

/// The services' handle on the store loop. Cheap to clone.
#[derive(Clone)]
pub struct StoreHandle {
    node_id: u64,
    /// Where every partition was placed when the cluster was created.
    placement: Arc<placement::Placement>,
    /// Per partition, whether the loop holds a replica of it (set by the loop).
    held: Arc<Vec<AtomicBool>>,
    /// Per partition, its membership as this node knows it: the loop writes those it holds,
    /// `learn_groups` the others.
    members: watch::Sender<Vec<Members>>,
    client_tx: mpsc::Sender<ClientRequest>,
    raft_tx: mpsc::Sender<InboundRaft>,
    leaders: watch::Receiver<Vec<u64>>,
    /// The loop writes the leaders of the partitions it holds; `learn_leaders` the others'.
    leaders_tx: watch::Sender<Vec<u64>>,
    applied: watch::Receiver<Vec<u64>>,
    /// Per partition held here, the rounds it applied, kept for `limits::EVENT_TAIL_ROUNDS`
    /// rounds.
    tails: Tails,
    db: Arc<Db>,
    /// Why the loop stopped, set before its mailbox closes: what later callers are told.
    stopped: Arc<OnceLock<StoreError>>,
}

impl StoreHandle {
    /// The error for a request the loop will never see: its mailbox is closed.
    fn stopped(&self) -> StoreError {
        self.stopped
            .get()
            .cloned()
            .unwrap_or(StoreError::ShuttingDown)
    }

    /// Whether this node holds a replica of `partition`.
    pub fn hosts(&self, partition: u32) -> bool {
        self.held
            .get(partition as usize)
            .is_some_and(|held| held.load(Ordering::Acquire))
    }

    /// The partition count.
    pub fn partitions(&self) -> u32 {
        self.placement.partitions()
    }

    /// A partition's membership as this node knows it (see [`Members`]).
    pub fn members(&self, partition: u32) -> Members {
        self.members
            .borrow()
            .get(partition as usize)
            .cloned()
            .unwrap_or_default()
    }

    /// The partitions held here whose applied membership names `node` (as a voter, in either
    /// configuration while joint, or as a learner).
    pub fn counting(&self, node: u64) -> Vec<u32> {
        let members = self.members.borrow();
        (0..self.partitions())
            .filter(|&partition| {
                self.hosts(partition)
                    && members
                        .get(partition as usize)
                        .is_some_and(|group| group.contains(node))
            })
            .collect()
    }

    /// The answer for a partition this node holds no replica of: where its leader is, as far
    /// as this node has learnt.
    pub fn not_hosted(&self, partition: u32) -> StoreError {
        let leader = self
            .leaders
            .borrow()
            .get(partition as usize)
            .copied()
            .unwrap_or(0);
        StoreError::NotHosted {
            leader_id: Some(leader).filter(|&id| id != 0),
        }
    }

    /// Records the leaders and memberships of partitions this node does not hold, as their
    /// replicas report them (`directory.rs`: per partition the newest report, by membership
    /// change and term). For a partition held here, a report of a newer membership without
    /// this node tells the loop that its replica may have been removed (the loop checks).
    pub fn learn_groups(&self, learnt: &[(u32, u64, Members)]) {
        for (partition, _, members) in learnt {
            if self.hosts(*partition)
                && !members.contains(self.node_id)
                && members.conf_index > self.members(*partition).conf_index
            {
                let _ = self.client_tx.try_send(ClientRequest::Removed {
                    partition: *partition,
                    members: members.clone(),
                });
            }
        }
        self.leaders_tx.send_if_modified(|leaders| {
            let mut changed = false;
            for &(partition, leader, _) in learnt {
                if self.hosts(partition) {
                    continue;
                }
                if let Some(known) = leaders.get_mut(partition as usize)
                    && *known != leader
                {
                    *known = leader;
                    changed = true;
                }
            }
            changed
        });
        self.members.send_if_modified(|known| {
            let mut changed = false;
            for (partition, _, members) in learnt {
                if self.hosts(*partition) {
                    continue;
                }
                if let Some(known) = known.get_mut(*partition as usize)
                    && !members.voters.is_empty()
                    && known.conf_index <= members.conf_index
                    && known != members
                {
                    *known = members.clone();
                    changed = true;
                }
            }
            changed
        });
    }

    /// One step of moving a replica of `partition` from node `from` to node `to`, on the
    /// partition's leader: the loop plans it from the applied membership
    /// (`placement::next_step`) and starts it. The caller asks again until `Step::Done`.
    pub async fn move_step(
        &self,
        partition: u32,
        from: u64,
        to: u64,
    ) -> Result<MoveProgress, MoveRefused> {
        if !self.hosts(partition) {
            return Err(self.not_hosted(partition).into());
        }
        let (reply, answer) = oneshot::channel();
        self.client_tx
            .send(ClientRequest::Move {
                partition,
                from,
                to,
                reply,
            })
            .await
            .map_err(|_| self.stopped())?;
        answer.await.map_err(|_| self.stopped())?
    }

    /// Proposes a command and waits until it is applied (or definitely has no answer here).
    pub async fn propose(&self, partition: u32, command: Command) -> Result<Applied, StoreError> {
        if !self.hosts(partition) {
            return Err(self.not_hosted(partition));
        }
        let (reply, answer) = oneshot::channel();
        self.client_tx
            .try_send(ClientRequest::Propose {
                partition,
                command,
                reply,
            })
            .map_err(|error| match error {
                mpsc::error::TrySendError::Full(_) => StoreError::Overloaded,
                mpsc::error::TrySendError::Closed(_) => self.stopped(),
            })?;
        // A dropped reply means the loop stopped with the command possibly in the log.
        answer.await.unwrap_or(Err(StoreError::OutcomeUnknown))
    }

    /// A linearizable read through raft's ReadIndex (on the leader or, forwarded, from a
    /// follower), bounded by `READ_TIMEOUT`.
    pub async fn read(&self, partition: u32, query: Query) -> Result<ReadAnswer, StoreError> {
        if !self.hosts(partition) {
            return Err(self.not_hosted(partition));
        }
        let (reply, answer) = oneshot::channel();
        self.client_tx
            .try_send(ClientRequest::Read {
                partition,
                query,
                reply,
            })
            .map_err(|error| match error {
                mpsc::error::TrySendError::Full(_) => StoreError::Overloaded,
                mpsc::error::TrySendError::Closed(_) => self.stopped(),
            })?;
        match tokio::time::timeout(limits::READ_TIMEOUT, answer).await {
            Ok(answer) => answer.unwrap_or_else(|_| Err(self.stopped())),
            Err(_) => Err(StoreError::ReadTimeout),
        }
    }

    /// Every partition as this node sees it, in id order; `with_digest` also hashes the state
    /// of each one held here. A partition held elsewhere has role "none" and only its
    /// placement and its leader as last learnt.
    pub async fn status(&self, with_digest: bool) -> Result<Vec<PartitionStatus>, StoreError> {
        let (reply, answer) = oneshot::channel();
        self.client_tx
            .send(ClientRequest::Status { with_digest, reply })
            .await
            .map_err(|_| self.stopped())?;
        let mut held = answer
            .await
            .map_err(|_| self.stopped())?
            .into_iter()
            .peekable();
        let leaders = self.leaders.borrow().clone();
        let mut statuses = Vec::with_capacity(leaders.len());
        for (partition, &leader_id) in (0..).zip(&leaders) {
            if let Some(status) = held.next_if(|status| status.partition == partition) {
                statuses.push(status);
                continue;
            }
            let members = self.members(partition);
            statuses.push(PartitionStatus {
                partition,
                leader_id,
                term: 0,
                commit_index: 0,
                applied_index: 0,
                role: ROLE_NOT_HOSTED,
                state_digest: None,
                in_flight_transfers: 0,
                snapshot_index: 0,
                log_first_index: 0,
                members,
                preferred_leader_id: self
                    .placement
                    .group(partition)
                    .map_or(0, |group| group.leader),
            });
        }
        Ok(statuses)
    }

    /// Cross-partition transfers this node's leader replica holds in flight, for the saga
    /// driver to finish: at most `limits::RECOVERY_BATCH_MAX`, the first ones after `after`
    /// in transaction id order, wrapping around (`Ledger::in_flight_from`).
    pub async fn in_flight(
        &self,
        partition: u32,
        after: Option<uuid::Uuid>,
    ) -> Result<Vec<TransferCommand>, StoreError> {
        let (reply, answer) = oneshot::channel();
        self.client_tx
            .send(ClientRequest::InFlight {
                partition,
                after,
                reply,
            })
            .await
            .map_err(|_| self.stopped())?;
        answer.await.map_err(|_| self.stopped())?
    }

    /// The multi-leg sets whose home is `partition` and that are not finished (prepared or
    /// decided there), at most `limits::RECOVERY_BATCH_MAX` after `after` in id order,
    /// wrapping around (leader only): what the recovery pass drives on; and the id to resume
    /// after.
    pub async fn live_legs(
        &self,
        partition: u32,
        after: Option<uuid::Uuid>,
    ) -> Result<LiveLegs, StoreError> {
        let (reply, answer) = oneshot::channel();
        self.client_tx
            .send(ClientRequest::LiveLegs {
                partition,
                after,
                reply,
            })
            .await
            .map_err(|_| self.stopped())?;
        answer.await.map_err(|_| self.stopped())?
    }

    /// Pending holds of `partition` whose expiry is at or before `now_ms` (leader only): at
    /// most `limits::HOLD_EXPIRY_BATCH_MAX`, the earliest first (`Ledger::due_holds`).
    pub async fn due_holds(
        &self,
        partition: u32,
        now_ms: u64,
    ) -> Result<Vec<uuid::Uuid>, StoreError> {
        let (reply, answer) = oneshot::channel();
        self.client_tx
            .send(ClientRequest::DueHolds {
                partition,
                now_ms,
                reply,
            })
            .await
            .map_err(|_| self.stopped())?;
        answer.await.map_err(|_| self.stopped())?
    }

    /// Notes that follower `to` started fetching the snapshot this node sent it (until then
    /// the send times out after `SNAPSHOT_FETCH_START_TIMEOUT`).
    pub async fn snapshot_fetch_started(&self, partition: u32, to: u64) {
        let _ = self
            .client_tx
            .send(ClientRequest::SnapshotFetchStarted { partition, to })
            .await;
    }

    /// Tells raft how sending a snapshot to follower `to` ended (it waits for this).
    pub async fn snapshot_served(&self, partition: u32, to: u64, ok: bool) {
        let _ = self
            .client_tx
            .send(ClientRequest::SnapshotServed { partition, to, ok })
            .await;
    }

    /// Inbound raft messages; waits when the loop is behind (back-pressure on the peer stream).
    pub async fn step(&self, inbound: InboundRaft) -> Result<(), StoreError> {
        self.raft_tx.send(inbound).await.map_err(|_| self.stopped())
    }

    /// Leader id per partition (0 = unknown), updated by the loop as leadership changes.
    pub fn leaders(&self) -> watch::Receiver<Vec<u64>> {
        self.leaders.clone()
    }

    /// Applied index per partition, updated after every apply round. Everything at or below
    /// it is readable from the `events` column family (`Db::scan_indexed`): the event log that
    /// subscribers follow.
    pub fn applied(&self) -> watch::Receiver<Vec<u64>> {
        self.applied.clone()
    }

    /// The rounds `partition` applies from now on (the last `limits::EVENT_TAIL_ROUNDS` of
    /// them are held for a receiver that is behind; one further behind learns it has lagged
    /// and reads the disk). `None` for a partition the node does not have.
    pub fn tail(&self, partition: u32) -> Option<broadcast::Receiver<Arc<AppliedRound>>> {
        self.tails
            .read()
            .expect("no panics while held")
            .get(partition as usize)?
            .as_ref()
            .map(broadcast::Sender::subscribe)
    }

    /// The node's RocksDB, for readers of the event log.
    pub fn db(&self) -> &Arc<Db> {
        &self.db
    }
}
