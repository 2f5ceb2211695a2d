//! Raft messages between write nodes: one long-lived client stream per peer node, fed by a
//! bounded queue that the store loop fills without ever waiting. A full queue or a broken
//! stream drops messages; raft's own retries (heartbeats, append probes) recover them.
//!
//! Why one file of this length: every peer conversation (raft streams both ways, credits,
//! snapshot fetches on both sides) shares the endpoint, TLS and frame limits made here; the
//! `PeerService` server half is what moves out first if it grows.

use std::collections::{BTreeMap, HashMap};
use std::time::Instant;

use proto::internal::peer_service_client::PeerServiceClient;
use proto::internal::peer_service_server::PeerService;
use proto::internal::snapshot_part::Part;
use proto::internal::{
    CreditRequest, CreditResponse, EventBlocks, FetchSnapshotRequest, LeadersRequest,
    LeadersResponse, LegsStepRequest, LegsStepResponse, PartitionLeader, RaftAck, RaftBatch,
    RaftEnvelope, ReadRecordRequest, ReadRecordResponse, SnapshotPart,
};
use protobuf::Message as _;
use raft::eraftpb::Message;
use tokio::sync::mpsc;
use tokio_stream::StreamExt as _;
use tokio_stream::wrappers::ReceiverStream;
use tokio_util::sync::CancellationToken;
use tonic::transport::{Channel, ClientTlsConfig, Endpoint};
use tonic::{Request, Response, Status, Streaming};

use std::sync::Arc;

use anyhow::{Context, ensure};
use rocksdb::WriteBatch;

use crate::api_error::{ApiError, WriteApiError as _};
use crate::codec::ChainHash;
use crate::limits;
use crate::snapshot::{self, SnapshotMeta};
use crate::storage::{CF_EVENTS, Db, index_key};
use crate::store::{self, FetchedSnapshot, InboundRaft, SnapshotRequest, StoreHandle};

/// The one place peer endpoints are made (raft streams, credits, snapshot fetches): `https`
/// with this node's peer certificate when `tls` is set (built once at start by
/// `security::prepare` and handed to every dialler), else `http`.
pub fn peer_endpoint(address: &str, tls: Option<&ClientTlsConfig>) -> anyhow::Result<Endpoint> {
    security::tls::endpoint(address, tls)
}

/// Lazily connected channels to every other node of `peers`, for calls whose answers wait at
/// most `call_timeout` (the saga's credits, forwarded writes): bounded here too, not only by
/// the server's grpc-timeout, so a peer that stopped answering on an open connection holds
/// nobody until the connection breaks. Keep-alive pings find a dead connection.
pub fn peer_channels(
    node_id: u64,
    peers: &BTreeMap<u64, String>,
    tls: Option<&ClientTlsConfig>,
    call_timeout: std::time::Duration,
) -> impl Iterator<Item = (u64, Channel)> {
    peers
        .iter()
        .filter(move |(id, _)| **id != node_id)
        .filter_map(move |(&id, address)| {
            let channel = peer_endpoint(address, tls)
                .ok()?
                .tcp_nodelay(true)
                .connect_timeout(limits::PEER_CONNECT_TIMEOUT)
                .timeout(call_timeout)
                .http2_keep_alive_interval(limits::PEER_KEEP_ALIVE_INTERVAL)
                .keep_alive_timeout(limits::PEER_KEEP_ALIVE_TIMEOUT)
                .connect_lazy();
            Some((id, channel))
        })
}

/// `PeerService` clients of every other node of `peers` (see [`peer_channels`]), taking the
/// peers' largest messages.
pub fn peer_clients(
    node_id: u64,
    peers: &BTreeMap<u64, String>,
    tls: Option<&ClientTlsConfig>,
    call_timeout: std::time::Duration,
) -> impl Iterator<Item = (u64, PeerServiceClient<Channel>)> {
    peer_channels(node_id, peers, tls, call_timeout).map(|(id, channel)| {
        let client = PeerServiceClient::new(channel)
            .max_decoding_message_size(limits::PEER_GRPC_MESSAGE_BYTES_MAX)
            .max_encoding_message_size(limits::PEER_GRPC_MESSAGE_BYTES_MAX);
        (id, client)
    })
}

/// The store loop's side: hands raft messages to the per-peer queues.
pub struct Outbox {
    node_id: u64,
    queues: HashMap<u64, mpsc::Sender<RaftEnvelope>>,
}

impl Outbox {
    pub fn send(&self, partition: u32, messages: Vec<Message>) {
        for message in messages {
            debug_assert_ne!(message.to, self.node_id, "raft never sends to itself");
            let Some(queue) = self.queues.get(&message.to) else {
                tracing::warn!(to = message.to, "raft message for an unknown node dropped");
                continue;
            };
            let bytes = match message.write_to_bytes() {
                Ok(bytes) => bytes,
                Err(error) => unreachable!("encoding a raft message cannot fail: {error}"),
            };
            if bytes.len() > limits::RAFT_MESSAGE_BYTES_MAX {
                // Cannot happen with the limits' asserts and raft's `max_size_per_msg`; sent,
                // it would fail the stream that every partition shares.
                tracing::error!(
                    to = message.to,
                    partition,
                    msg_type = ?message.get_msg_type(),
                    bytes = bytes.len(),
                    limit = limits::RAFT_MESSAGE_BYTES_MAX,
                    "raft message above the frame budget dropped"
                );
                continue;
            }
            if queue
                .try_send(RaftEnvelope {
                    partition,
                    message: bytes,
                })
                .is_err()
            {
                tracing::debug!(
                    to = message.to,
                    "peer queue full or closed; raft message dropped"
                );
            }
        }
    }
}

/// Starts one sender task per peer node and returns the outbox that feeds them.
pub fn start_senders(
    node_id: u64,
    incarnations: &Arc<crate::incarnation::Incarnations>,
    peers: &std::collections::BTreeMap<u64, String>,
    tls: Option<&ClientTlsConfig>,
    shutdown: CancellationToken,
) -> Outbox {
    let mut queues = HashMap::new();
    for (&peer_id, address) in peers {
        if peer_id == node_id {
            continue;
        }
        let (queue_tx, queue_rx) = mpsc::channel(limits::PEER_QUEUE_CAPACITY);
        queues.insert(peer_id, queue_tx);
        tokio::spawn(peer_sender(
            node_id,
            incarnations.clone(),
            peer_id,
            address.clone(),
            tls.cloned(),
            queue_rx,
            shutdown.clone(),
        ));
    }
    Outbox { node_id, queues }
}

/// The store loop's network (`store::Network`): raft messages through the outbox, snapshot
/// fetches from the peers' addresses (over TLS when `tls` is set).
pub struct PeerNetwork {
    outbox: Outbox,
    peers: BTreeMap<u64, String>,
    db: Arc<Db>,
    tls: Option<ClientTlsConfig>,
}

impl PeerNetwork {
    pub fn new(
        outbox: Outbox,
        peers: BTreeMap<u64, String>,
        db: Arc<Db>,
        tls: Option<ClientTlsConfig>,
    ) -> Self {
        Self {
            outbox,
            peers,
            db,
            tls,
        }
    }
}

impl store::Network for PeerNetwork {
    fn send(&self, partition: u32, messages: Vec<Message>) {
        self.outbox.send(partition, messages);
    }

    fn fetch_snapshot(
        &self,
        from: u64,
        request: SnapshotRequest,
    ) -> futures::future::BoxFuture<'static, anyhow::Result<FetchedSnapshot>> {
        // The peer service admits raft messages only from configured peers.
        let Some(address) = self.peers.get(&from).cloned() else {
            return Box::pin(async move { anyhow::bail!("node {from} is not a peer") });
        };
        let tls = self.tls.clone();
        let (node_id, db) = (self.outbox.node_id, self.db.clone());
        Box::pin(async move {
            fetch_snapshot(
                tls.as_ref(),
                node_id,
                address,
                request.partition,
                request.index,
                request.events_after,
                request.chain_after,
                request.ledger_after,
                db,
            )
            .await
        })
    }
}

async fn peer_sender(
    node_id: u64,
    incarnations: Arc<crate::incarnation::Incarnations>,
    peer_id: u64,
    address: String,
    tls: Option<ClientTlsConfig>,
    mut queue: mpsc::Receiver<RaftEnvelope>,
    shutdown: CancellationToken,
) {
    let endpoint = match peer_endpoint(&address, tls.as_ref()) {
        Ok(endpoint) => endpoint
            .tcp_nodelay(true)
            .connect_timeout(limits::PEER_CONNECT_TIMEOUT)
            .http2_keep_alive_interval(limits::PEER_KEEP_ALIVE_INTERVAL)
            .keep_alive_timeout(limits::PEER_KEEP_ALIVE_TIMEOUT)
            .initial_stream_window_size(Some(limits::PEER_STREAM_WINDOW_BYTES))
            .initial_connection_window_size(Some(limits::PEER_CONNECTION_WINDOW_BYTES)),
        Err(error) => {
            tracing::error!(
                peer_id,
                address,
                error = format!("{error:#}"),
                "invalid peer address; no raft traffic to it"
            );
            return;
        }
    };
    let mut backoff = limits::PEER_RECONNECT_BACKOFF_MIN;
    loop {
        let started = Instant::now();
        let mut client = PeerServiceClient::new(endpoint.connect_lazy())
            .max_decoding_message_size(limits::GRPC_MESSAGE_BYTES_MAX)
            .max_encoding_message_size(limits::PEER_GRPC_MESSAGE_BYTES_MAX);
        let (frames_tx, frames_rx) = mpsc::channel(limits::PEER_FRAMES_IN_FLIGHT_MAX);
        let frame = |messages| RaftBatch {
            from_node: node_id,
            messages,
            feature_level: crate::features::FEATURE_LEVEL,
            incarnation: incarnations.own(),
            to_incarnation: incarnations.known(peer_id),
        };
        // The stream opens with a frame of no messages: the peer learns (or refuses) this
        // node's incarnation even while no raft group sends it anything.
        let _ = frames_tx.try_send(frame(Vec::new()));
        let call = client.raft(ReceiverStream::new(frames_rx));
        tokio::pin!(call);
        // The message that did not fit in the previous frame: the next one starts with it.
        let mut carried: Option<RaftEnvelope> = None;
        loop {
            let first = match carried.take() {
                Some(first) => first,
                None => tokio::select! {
                    _ = shutdown.cancelled() => return,
                    result = &mut call => {
                        match result {
                            // The peer is unreachable (down, restarting): expected, and
                            // retried with backoff.
                            Err(status) if status.code() == tonic::Code::Unavailable => {
                                tracing::debug!(peer_id, message = status.message(), "peer unreachable");
                            }
                            // Anything else drops raft traffic for a reason worth seeing (an
                            // oversized frame used to fail it silently, on every retry).
                            Err(status) => {
                                tracing::warn!(peer_id, code = ?status.code(), message = status.message(), "peer stream failed: outbound raft frames broke off");
                            }
                            Ok(_) => {}
                        }
                        break;
                    }
                    first = queue.recv() => match first {
                        Some(first) => first,
                        None => return,
                    },
                },
            };
            let (messages, rest) = fill_frame(first, || queue.try_recv().ok());
            carried = rest;
            if frames_tx.send(frame(messages)).await.is_err() {
                break;
            }
        }
        if started.elapsed() > limits::PEER_RECONNECT_BACKOFF_MAX {
            backoff = limits::PEER_RECONNECT_BACKOFF_MIN;
        }
        // Drop what queued up while disconnected: raft resends what still matters.
        while queue.try_recv().is_ok() {}
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(backoff) => {}
        }
        backoff = (backoff * 2).min(limits::PEER_RECONNECT_BACKOFF_MAX);
    }
}

/// The bytes a message takes in a frame, bounded by `PEER_FRAME_BYTES_MAX` (the envelope's
/// few bytes of framing are in the limits' assert).
fn frame_bytes(envelope: &RaftEnvelope) -> usize {
    envelope.message.len()
}

/// One frame of the peer stream: `first`, then messages from `next` while the frame stays
/// within `PEER_FRAME_MESSAGES_MAX` messages and `PEER_FRAME_BYTES_MAX` bytes. Returns the
/// frame and the message taken from `next` that did not fit (the next frame's first). A
/// message is never split, and every one fits a frame alone (`RAFT_MESSAGE_BYTES_MAX`).
fn fill_frame(
    first: RaftEnvelope,
    mut next: impl FnMut() -> Option<RaftEnvelope>,
) -> (Vec<RaftEnvelope>, Option<RaftEnvelope>) {
    let mut bytes = frame_bytes(&first);
    let mut messages = vec![first];
    while messages.len() < limits::PEER_FRAME_MESSAGES_MAX {
        let Some(envelope) = next() else { break };
        let size = frame_bytes(&envelope);
        if bytes + size > limits::PEER_FRAME_BYTES_MAX {
            return (messages, Some(envelope));
        }
        bytes += size;
        messages.push(envelope);
    }
    (messages, None)
}

/// The receiving side: decodes frames and hands them to the store loop.
pub struct PeerServer {
    pub node_id: u64,
    pub partitions: u32,
    pub peers: Vec<u64>,
    pub store: StoreHandle,
    /// What each peer announces on its frames (`features`).
    pub levels: std::sync::Arc<crate::features::PeerLevels>,
    /// The data directory each peer speaks from (`incarnation`).
    pub incarnations: std::sync::Arc<crate::incarnation::Incarnations>,
}

fn not_a_peer(node_id: u64) -> Status {
    ApiError::new(
        tonic::Code::PermissionDenied,
        "NOT_A_PEER",
        format!("node {node_id} is not a peer"),
    )
    .into()
}

fn refused(node_id: u64, refusal: crate::incarnation::Refusal) -> Status {
    use crate::incarnation::Refusal;
    tracing::warn!(node_id, "{refusal}");
    match refusal {
        Refusal::Malformed { .. } => {
            ApiError::invalid("incarnation", "MALFORMED_MESSAGE", refusal.to_string())
        }
        Refusal::DataLost { .. } | Refusal::Forgotten { .. } => ApiError::new(
            tonic::Code::FailedPrecondition,
            "NODE_DATA_LOST",
            refusal.to_string(),
        ),
        Refusal::Storage(_) => ApiError::new(
            tonic::Code::Unavailable,
            "STORAGE_FAILURE",
            refusal.to_string(),
        ),
    }
    .into()
}

fn unknown_partition(partition: u32) -> Status {
    ApiError::invalid(
        "partition",
        "INVALID_PARTITION",
        format!("unknown partition {partition}"),
    )
    .into()
}

type SnapshotPartStream = ReceiverStream<Result<SnapshotPart, Status>>;

/// With TLS, the auth layer attached the node ids the caller's certificate names: a message
/// may only claim one of them. Without TLS there is no identity to check (loopback or
/// `--insecure`).
fn certified(identity: Option<&security::PeerIdentity>, from_node: u64) -> Result<(), Status> {
    match identity {
        Some(identity) if !identity.node_ids.contains(&from_node) => {
            Err(Status::permission_denied(format!(
                "the TLS certificate is not node {from_node}'s (it names nodes {:?})",
                identity.node_ids
            )))
        }
        _ => Ok(()),
    }
}

#[tonic::async_trait]
impl PeerService for PeerServer {
    type FetchSnapshotStream = SnapshotPartStream;

    async fn fetch_snapshot(
        &self,
        request: Request<FetchSnapshotRequest>,
    ) -> Result<Response<SnapshotPartStream>, Status> {
        let identity = request
            .extensions()
            .get::<security::PeerIdentity>()
            .cloned();
        let request = request.into_inner();
        certified(identity.as_ref(), request.from_node)?;
        if !self.peers.contains(&request.from_node) || request.from_node == self.node_id {
            return Err(not_a_peer(request.from_node));
        }
        if request.partition >= self.partitions {
            return Err(unknown_partition(request.partition));
        }
        let db = self.store.db().clone();
        let metas = db
            .snapshot_metas(request.partition)
            .map_err(|error| Status::internal(format!("{error:#}")))?;
        let Some(meta) = metas.into_iter().find(|meta| meta.index == request.index) else {
            // Raft waits to hear how its send to this follower ended: tell it now, so it sends
            // the newer snapshot at once instead of after SNAPSHOT_FETCH_TIMEOUT.
            self.store
                .snapshot_served(request.partition, request.from_node, false)
                .await;
            return Err(ApiError::not_found(
                "index",
                "SNAPSHOT_NOT_FOUND",
                format!(
                    "no snapshot {} of partition {} here (a newer one replaced it)",
                    request.index, request.partition
                ),
            )
            .into());
        };
        self.store
            .snapshot_fetch_started(request.partition, request.from_node)
            .await;
        let (tx, rx) = tokio::sync::mpsc::channel(4);
        let store = self.store.clone();
        tokio::spawn(async move {
            let (partition, to) = (meta.partition, request.from_node);
            let produce = tokio::task::spawn_blocking(move || {
                stream_snapshot(&db, &meta, request.events_after, &tx)
            });
            let ok = matches!(produce.await, Ok(Ok(())));
            store.snapshot_served(partition, to, ok).await;
        });
        Ok(Response::new(ReceiverStream::new(rx)))
    }

    async fn raft(
        &self,
        request: Request<Streaming<RaftBatch>>,
    ) -> Result<Response<RaftAck>, Status> {
        let identity = request
            .extensions()
            .get::<security::PeerIdentity>()
            .cloned();
        let mut frames = request.into_inner();
        while let Some(frame) = frames.next().await {
            let frame = frame.inspect_err(|status| {
                tracing::warn!(
                    code = ?status.code(),
                    message = status.message(),
                    "peer stream failed: inbound raft frames broke off"
                );
            })?;
            certified(identity.as_ref(), frame.from_node)?;
            if !self.peers.contains(&frame.from_node) || frame.from_node == self.node_id {
                return Err(not_a_peer(frame.from_node));
            }
            self.levels.heard(frame.from_node, frame.feature_level);
            self.incarnations
                .admit(frame.from_node, &frame.incarnation, || {
                    self.store.counting(frame.from_node)
                })
                .map_err(|refusal| refused(frame.from_node, refusal))?;
            self.incarnations
                .addressed(frame.from_node, &frame.to_incarnation)
                .map_err(|refusal| refused(frame.from_node, refusal))?;
            if frame.messages.is_empty() {
                continue;
            }
            let mut messages = Vec::with_capacity(frame.messages.len());
            for envelope in frame.messages {
                if envelope.partition >= self.partitions {
                    return Err(unknown_partition(envelope.partition));
                }
                let message = Message::parse_from_bytes(&envelope.message).map_err(|error| {
                    Status::from(ApiError::invalid(
                        "messages",
                        "MALFORMED_MESSAGE",
                        format!("undecodable raft message: {error}"),
                    ))
                })?;
                if message.to != self.node_id || message.from != frame.from_node {
                    return Err(ApiError::invalid(
                        "messages",
                        "MISADDRESSED_MESSAGE",
                        "raft message addressed to another node",
                    )
                    .into());
                }
                messages.push((envelope.partition, message));
            }
            self.store
                .step(InboundRaft { messages })
                .await
                .map_err(|error| Status::from(ApiError::from_store(error, &BTreeMap::new())))?;
        }
        Ok(Response::new(RaftAck {}))
    }

    async fn credit(
        &self,
        request: Request<CreditRequest>,
    ) -> Result<Response<CreditResponse>, Status> {
        let request = request.into_inner();
        if request.partition >= self.partitions {
            return Err(unknown_partition(request.partition));
        }
        if request.transfers.len() > limits::CREDIT_BATCH_MAX {
            return Err(ApiError::invalid(
                "transfers",
                "TOO_MANY_CREDITS",
                format!("more than {} credits in one call", limits::CREDIT_BATCH_MAX),
            )
            .into());
        }
        let mut transfers = Vec::with_capacity(request.transfers.len());
        for bytes in &request.transfers {
            let transfer: ledger::TransferCommand = ledger::wire::from_tagged_slice(bytes)
                .map_err(|error| {
                    Status::from(ApiError::invalid(
                        "transfers",
                        "MALFORMED_MESSAGE",
                        format!("undecodable transfer: {error}"),
                    ))
                })?;
            // A peer is checked like a client: the shape the edge checks, and partitions
            // that make it a credit at all (the credited account here, the debited one in
            // another partition). Nothing invalid is proposed.
            transfer
                .shape()
                .map_err(|malformed| Status::from(ApiError::malformed(malformed)))?;
            if ledger::partition_of(&transfer.to, self.partitions) != request.partition {
                return Err(ApiError::invalid(
                    "transfers",
                    "WRONG_PARTITION",
                    "a credited account is not in this partition",
                )
                .into());
            }
            if ledger::partition_of(&transfer.from, self.partitions) == request.partition {
                return Err(ApiError::invalid(
                    "transfers",
                    "WRONG_PARTITION",
                    "a credit's debited account must be in another partition",
                )
                .into());
            }
            transfers.push(transfer);
        }
        // Proposed together, they land in one store round and so mostly in one raft entry.
        let proposals = transfers.into_iter().map(|transfer| {
            self.store
                .propose(request.partition, ledger::Command::Credit(transfer))
        });
        let mut records = Vec::with_capacity(request.transfers.len());
        for applied in futures::future::join_all(proposals).await {
            records.push(match applied {
                Ok(applied) => match applied.outcome {
                    ledger::Outcome::Credit(record) => ledger::wire::to_tagged_vec(&record),
                    // The ledger refused it (checked here first, so only a race with an
                    // account opened meanwhile gets this far): nothing was recorded.
                    ledger::Outcome::Malformed(malformed) => {
                        return Err(ApiError::malformed(malformed).into());
                    }
                    other => {
                        unreachable!("a credit command answers with a credit record, not {other:?}")
                    }
                },
                // No answer here (leadership moved): the caller retries this one.
                Err(_) => Vec::new(),
            });
        }
        Ok(Response::new(CreditResponse { records }))
    }

    async fn leaders(
        &self,
        _request: Request<LeadersRequest>,
    ) -> Result<Response<LeadersResponse>, Status> {
        let statuses = self
            .store
            .status(false)
            .await
            .map_err(|error| Status::from(ApiError::from_store(error, &BTreeMap::new())))?;
        let partitions = statuses
            .into_iter()
            .filter(|status| status.role != store::ROLE_NOT_HOSTED)
            .map(|status| PartitionLeader {
                partition: status.partition,
                leader_id: status.leader_id,
                term: status.term,
                voters: status.members.voters,
                outgoing: status.members.outgoing,
                learners: status.members.learners,
                conf_index: status.members.conf_index,
            })
            .collect();
        Ok(Response::new(LeadersResponse { partitions }))
    }

    async fn read_record(
        &self,
        request: Request<ReadRecordRequest>,
    ) -> Result<Response<ReadRecordResponse>, Status> {
        let request = request.into_inner();
        if request.partition >= self.partitions {
            return Err(unknown_partition(request.partition));
        }
        let transaction_id = uuid::Uuid::from_slice(&request.transaction_id).map_err(|_| {
            Status::from(ApiError::invalid(
                "transaction_id",
                "MALFORMED_MESSAGE",
                "transaction_id: not 16 bytes",
            ))
        })?;
        let answer = self
            .store
            .read(request.partition, store::Query::Record(transaction_id))
            .await
            .map_err(|error| Status::from(ApiError::from_store(error, &BTreeMap::new())))?;
        let record = match answer.answer {
            store::QueryAnswer::Record(Some(record)) => crate::records::encode(&record),
            _ => Vec::new(),
        };
        Ok(Response::new(ReadRecordResponse { record }))
    }

    async fn legs_step(
        &self,
        request: Request<LegsStepRequest>,
    ) -> Result<Response<LegsStepResponse>, Status> {
        let request = request.into_inner();
        if request.partition >= self.partitions {
            return Err(unknown_partition(request.partition));
        }
        let step: ledger::legs::LegsStep =
            ledger::wire::from_tagged_slice(&request.step).map_err(|error| {
                Status::from(ApiError::invalid(
                    "step",
                    "MALFORMED_MESSAGE",
                    format!("undecodable multi-leg step: {error}"),
                ))
            })?;
        // A peer is checked like a client: the set's shape, and a part of it in this
        // partition that is not the home's (the home's steps are its own leader's), computed
        // here from this node's partitioning.
        let legs = step.legs();
        legs.shape()
            .map_err(|(malformed, _)| Status::from(ApiError::malformed(malformed)))?;
        let partitions = self.partitions;
        let part = ledger::LegsPart::of(legs, |account_id| {
            ledger::partition_of(account_id, partitions) == request.partition
        });
        if !part.fits(legs) || part.is_home() {
            return Err(ApiError::invalid(
                "partition",
                "WRONG_PARTITION",
                "the set has no part in this partition, or this partition is its home",
            )
            .into());
        }
        let applied = self
            .store
            .propose(request.partition, step.command(part))
            .await
            .map_err(|error| Status::from(ApiError::from_store(error, &BTreeMap::new())))?;
        match applied.outcome {
            ledger::Outcome::Legs(record) => Ok(Response::new(LegsStepResponse {
                record: ledger::wire::to_tagged_vec(&record),
                index: applied.index,
            })),
            ledger::Outcome::Malformed(malformed) => Err(ApiError::malformed(malformed).into()),
            other => {
                unreachable!("a multi-leg step answers with a multi-leg record, not {other:?}")
            }
        }
    }
}

/// Leader side of FetchSnapshot: the header, the state chunks, then the event blocks in
/// `(events_after, meta.index]`, each message at most about one chunk. Runs on a blocking
/// thread; the bounded channel paces it to the follower.
fn stream_snapshot(
    db: &Db,
    meta: &SnapshotMeta,
    events_after: u64,
    tx: &mpsc::Sender<Result<SnapshotPart, Status>>,
) -> anyhow::Result<()> {
    let send = |part: Part| {
        tx.blocking_send(Ok(SnapshotPart { part: Some(part) }))
            .map_err(|_| anyhow::anyhow!("the follower went away"))
    };
    send(Part::Header(
        postcard::to_stdvec(meta).expect("serialising to a Vec cannot fail"),
    ))?;
    for number in 0..meta.chunks {
        send(Part::StateChunk(db.snapshot_chunk(
            meta.partition,
            meta.index,
            number,
        )?))?;
    }
    let mut blocks = EventBlocks::default();
    let mut bytes = 0;
    for item in db.scan_indexed(CF_EVENTS, meta.partition, events_after + 1, meta.index) {
        let (index, block) = item?;
        bytes += block.len();
        blocks.indexes.push(index);
        blocks.blocks.push(block.into_vec());
        if blocks.indexes.len() >= limits::SNAPSHOT_EVENTS_PER_MESSAGE
            || bytes >= snapshot::CHUNK_BYTES
        {
            send(Part::Events(std::mem::take(&mut blocks)))?;
            bytes = 0;
        }
    }
    if !blocks.indexes.is_empty() {
        send(Part::Events(blocks))?;
    }
    Ok(())
}

/// Follower side: fetches snapshot `index` of `partition` from the node at `address`, writes
/// the event blocks after `events_after` into the local event log and the snapshot into the
/// local snapshot store (the install's synced write makes both durable), and returns the
/// verified state. Every event block is checked against the hash chain, continuing from
/// `chain_after` (the local chain head at `events_after`), before its message is written,
/// and the blocks must end at the snapshot's chain head: a block that fails fails the fetch.
/// `tls` is the peer TLS config (`None`: plain text).
#[allow(clippy::too_many_arguments)]
pub async fn fetch_snapshot(
    tls: Option<&ClientTlsConfig>,
    node_id: u64,
    address: String,
    partition: u32,
    index: u64,
    events_after: u64,
    chain_after: ChainHash,
    ledger_after: ledger::Ledger,
    db: Arc<Db>,
) -> anyhow::Result<FetchedSnapshot> {
    let endpoint = peer_endpoint(&address, tls)?
        .connect_timeout(limits::SNAPSHOT_CONNECT_TIMEOUT)
        .timeout(limits::SNAPSHOT_FETCH_TIMEOUT);
    let mut client = PeerServiceClient::new(endpoint.connect().await?)
        .max_decoding_message_size(limits::PEER_GRPC_MESSAGE_BYTES_MAX);
    let mut parts = client
        .fetch_snapshot(FetchSnapshotRequest {
            from_node: node_id,
            partition,
            index,
            events_after,
        })
        .await?
        .into_inner();
    let mut meta: Option<SnapshotMeta> = None;
    let mut state = Vec::new();
    let mut events = snapshot::FetchedEvents::new(partition, chain_after, events_after, index);
    while let Some(part) = parts.next().await {
        match part?.part.context("empty snapshot part")? {
            Part::Header(bytes) => {
                ensure!(meta.is_none(), "two snapshot headers");
                let header: SnapshotMeta =
                    postcard::from_bytes(&bytes).context("snapshot header is corrupt")?;
                ensure!(
                    header.partition == partition && header.index == index,
                    "asked for snapshot {index} of partition {partition}, got {} of {}",
                    header.index,
                    header.partition
                );
                state.reserve(header.bytes as usize);
                meta = Some(header);
            }
            Part::StateChunk(chunk) => {
                let header = meta.as_ref().context("state before the snapshot header")?;
                ensure!(
                    (state.len() + chunk.len()) as u64 <= header.bytes,
                    "more state than the header says"
                );
                state.extend(chunk);
            }
            Part::Events(blocks) => {
                // Verified before written: nothing of a message with a bad block is stored.
                // (Earlier messages' blocks, each verified, may stay if a later one fails: they
                // are the leader's own blocks, and the next fetch writes them again.)
                events.check(&blocks.indexes, &blocks.blocks)?;
                let mut batch = WriteBatch::default();
                for (&block_index, block) in blocks.indexes.iter().zip(&blocks.blocks) {
                    batch.put_cf(db.cf(CF_EVENTS), index_key(partition, block_index), block);
                }
                db.write(batch, false)?;
            }
        }
    }
    let meta = meta.context("no snapshot header")?;
    let timestamp_ms_max = events.finish(&meta)?;
    // Tests widen the window between the leader seeing this fetch end and this node installing
    // the snapshot, in which the leader may announce the next one.
    #[cfg(feature = "failpoints")]
    if let Some(delay) = crate::failpoints::snapshot_fetched_delay() {
        tokio::time::sleep(delay).await;
    }
    let db_for_decode = db.clone();
    tokio::task::spawn_blocking(move || {
        let ledger = snapshot::decode(&meta, &state)?;
        // The snapshot carries no finished record: the ones it covers follow from the fetched
        // events. Written before the install (whose synced write makes them durable); records
        // ahead of what this node applied are ignored by `decide` until it gets there.
        let records = crate::replay::rebuild_records(
            &db_for_decode,
            partition,
            (events_after, chain_after, &ledger_after),
            meta.index,
        )?;
        tracing::debug!(
            partition,
            records,
            "records rebuilt from the fetched events"
        );
        let chunks: Vec<Vec<u8>> = state
            .chunks(snapshot::CHUNK_BYTES)
            .map(<[u8]>::to_vec)
            .collect();
        ensure!(chunks.len() as u32 == meta.chunks, "snapshot chunk count");
        db_for_decode.put_snapshot(&meta, &chunks, false)?;
        Ok((meta, ledger, timestamp_ms_max))
    })
    .await?
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::codec::{self, CHAIN_GENESIS};
    use ledger::Ledger;
    use proto::internal::peer_service_server::PeerServiceServer;

    fn envelope(bytes: usize) -> RaftEnvelope {
        RaftEnvelope {
            partition: 0,
            message: vec![0; bytes],
        }
    }

    #[test]
    fn frames_are_bounded_by_bytes_and_by_messages() {
        // A follower catching up: a queue of 1 MiB appends (raft's `max_size_per_msg`).
        let mut queue: std::collections::VecDeque<RaftEnvelope> = (0..40)
            .map(|_| envelope(limits::RAFT_MSG_BYTES_MAX as usize))
            .collect();
        let mut frames = Vec::new();
        let mut carried = None;
        while let Some(first) = carried.take().or_else(|| queue.pop_front()) {
            let (frame, rest) = fill_frame(first, || queue.pop_front());
            carried = rest;
            frames.push(frame);
        }
        assert_eq!(
            frames.iter().map(Vec::len).sum::<usize>(),
            40,
            "nothing lost"
        );
        assert!(frames.len() > 1);
        for frame in &frames {
            let batch = RaftBatch {
                from_node: 1,
                messages: frame.clone(),
                feature_level: crate::features::FEATURE_LEVEL,
                incarnation: vec![0; crate::incarnation::INCARNATION_BYTES],
                to_incarnation: vec![0; crate::incarnation::INCARNATION_BYTES],
            };
            assert!(
                prost::Message::encoded_len(&batch) <= limits::PEER_GRPC_MESSAGE_BYTES_MAX,
                "a frame above the gRPC limit"
            );
            assert!(frame.iter().map(frame_bytes).sum::<usize>() <= limits::PEER_FRAME_BYTES_MAX);
        }
        // The largest message there can be fits a frame alone, and the frame the limit.
        let largest = || envelope(limits::RAFT_MESSAGE_BYTES_MAX);
        let (frame, rest) = fill_frame(largest(), || Some(largest()));
        assert_eq!(
            (frame.len(), rest.map(|rest| rest.message.len())),
            (1, Some(limits::RAFT_MESSAGE_BYTES_MAX))
        );
        let batch = RaftBatch {
            from_node: 1,
            messages: frame,
            feature_level: crate::features::FEATURE_LEVEL,
            incarnation: vec![0; crate::incarnation::INCARNATION_BYTES],
            to_incarnation: vec![0; crate::incarnation::INCARNATION_BYTES],
        };
        assert!(prost::Message::encoded_len(&batch) <= limits::PEER_GRPC_MESSAGE_BYTES_MAX);
        // Small messages: bounded by count.
        let (frame, rest) = fill_frame(envelope(10), || Some(envelope(10)));
        assert_eq!(frame.len(), limits::PEER_FRAME_MESSAGES_MAX);
        assert!(rest.is_none());
    }

    /// A leader that serves one canned FetchSnapshot stream.
    struct CannedLeader {
        parts: Vec<SnapshotPart>,
    }

    #[tonic::async_trait]
    impl PeerService for CannedLeader {
        type FetchSnapshotStream = SnapshotPartStream;

        async fn fetch_snapshot(
            &self,
            _request: Request<FetchSnapshotRequest>,
        ) -> Result<Response<SnapshotPartStream>, Status> {
            let (tx, rx) = mpsc::channel(self.parts.len().max(1));
            for part in &self.parts {
                tx.send(Ok(part.clone())).await.expect("buffered");
            }
            Ok(Response::new(ReceiverStream::new(rx)))
        }

        async fn raft(
            &self,
            _request: Request<Streaming<RaftBatch>>,
        ) -> Result<Response<RaftAck>, Status> {
            Err(Status::unimplemented("raft"))
        }

        async fn credit(
            &self,
            _request: Request<CreditRequest>,
        ) -> Result<Response<CreditResponse>, Status> {
            Err(Status::unimplemented("credit"))
        }

        async fn legs_step(
            &self,
            _request: Request<LegsStepRequest>,
        ) -> Result<Response<LegsStepResponse>, Status> {
            Err(Status::unimplemented("legs_step"))
        }

        async fn leaders(
            &self,
            _request: Request<LeadersRequest>,
        ) -> Result<Response<LeadersResponse>, Status> {
            Err(Status::unimplemented("leaders"))
        }

        async fn read_record(
            &self,
            _request: Request<ReadRecordRequest>,
        ) -> Result<Response<ReadRecordResponse>, Status> {
            Err(Status::unimplemented("read_record"))
        }
    }

    /// Snapshot 3 of partition 0 (an empty ledger) and the stored event blocks 1..=3 that
    /// lead to it.
    fn snapshot_and_blocks() -> (SnapshotMeta, Vec<Vec<u8>>, Vec<Vec<u8>>) {
        let (blocks, heads) = codec::test_blocks::chain_of(CHAIN_GENESIS, &[1, 2, 3]);
        let (meta, chunks) = snapshot::encode(0, 3, 1, vec![1, 2], &Ledger::new(), heads[2]);
        (meta, chunks, blocks)
    }

    /// Serves `parts` from a canned leader and fetches snapshot 3 into a fresh data dir.
    async fn fetch_from(
        parts: Vec<SnapshotPart>,
    ) -> (anyhow::Result<FetchedSnapshot>, Arc<Db>, tempfile::TempDir) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let address = listener.local_addr().expect("address").to_string();
        let server = tokio::spawn(
            tonic::transport::Server::builder()
                .add_service(PeerServiceServer::new(CannedLeader { parts }))
                .serve_with_incoming(tokio_stream::wrappers::TcpListenerStream::new(listener)),
        );
        let dir = tempfile::tempdir().expect("temp dir");
        let db = Db::open(dir.path(), 2, 1).expect("db");
        let result = fetch_snapshot(
            None,
            2,
            address,
            0,
            3,
            0,
            CHAIN_GENESIS,
            Ledger::new(),
            db.clone(),
        )
        .await;
        server.abort();
        (result, db, dir)
    }

    fn parts(meta: &SnapshotMeta, chunks: &[Vec<u8>], blocks: &[Vec<u8>]) -> Vec<SnapshotPart> {
        let mut parts = vec![Part::Header(postcard::to_stdvec(meta).expect("header"))];
        parts.extend(chunks.iter().cloned().map(Part::StateChunk));
        parts.push(Part::Events(EventBlocks {
            indexes: (1..=blocks.len() as u64).collect(),
            blocks: blocks.to_vec(),
        }));
        parts
            .into_iter()
            .map(|part| SnapshotPart { part: Some(part) })
            .collect()
    }

    fn stored_blocks(db: &Db) -> Vec<u64> {
        db.scan_indexed(CF_EVENTS, 0, 1, u64::MAX)
            .map(|item| item.expect("read").0)
            .collect()
    }

    #[tokio::test]
    async fn a_fetched_snapshot_with_intact_blocks_is_written() {
        let (meta, chunks, blocks) = snapshot_and_blocks();
        let (result, db, _dir) = fetch_from(parts(&meta, &chunks, &blocks)).await;
        let (fetched, _, timestamp_ms_max) = result.expect("fetch");
        assert_eq!(fetched, meta);
        assert_eq!(timestamp_ms_max, 1_700_000_000_003);
        assert_eq!(stored_blocks(&db), [1, 2, 3]);
    }

    #[tokio::test]
    async fn a_fetched_block_that_fails_the_chain_fails_the_fetch_and_is_never_written() {
        let (meta, chunks, mut blocks) = snapshot_and_blocks();
        let last = blocks[1].len() - 1;
        blocks[1][last] ^= 0x01;
        let (result, db, _dir) = fetch_from(parts(&meta, &chunks, &blocks)).await;
        let error = result.expect_err("a corrupt block must fail the fetch");
        assert!(
            format!("{error:#}").contains("fails the hash chain"),
            "{error:#}"
        );
        assert!(stored_blocks(&db).is_empty(), "corrupt blocks were written");
        assert!(db.snapshot_metas(0).expect("metas").is_empty());

        // A block left out at the end: every link holds, but the chain misses the
        // snapshot's head.
        let (meta, chunks, blocks) = snapshot_and_blocks();
        let (result, db, _dir) = fetch_from(parts(&meta, &chunks, &blocks[..2])).await;
        assert!(result.is_err(), "a fetch missing its last block must fail");
        assert!(db.snapshot_metas(0).expect("metas").is_empty());
    }

    #[test]
    fn a_peer_certificate_speaks_only_for_the_nodes_it_names() {
        let node_2 = security::PeerIdentity { node_ids: vec![2] };
        assert!(certified(Some(&node_2), 2).is_ok());
        let status = certified(Some(&node_2), 3).unwrap_err();
        assert_eq!(status.code(), tonic::Code::PermissionDenied);
        // No TLS: nothing to check.
        assert!(certified(None, 3).is_ok());
    }
}
