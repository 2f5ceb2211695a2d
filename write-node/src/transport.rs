//! Raft messages between write nodes: one long-lived client stream per peer node, fed by a
//! bounded queue that the store loop fills without ever waiting. A full queue or a broken
//! stream drops messages; raft's own retries (heartbeats, append probes) recover them.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use proto::internal::peer_service_client::PeerServiceClient;
use proto::internal::peer_service_server::PeerService;
use proto::internal::{CreditRequest, CreditResponse, RaftAck, RaftBatch, RaftEnvelope};
use protobuf::Message as _;
use raft::eraftpb::Message;
use tokio::sync::mpsc;
use tokio_stream::StreamExt as _;
use tokio_stream::wrappers::ReceiverStream;
use tokio_util::sync::CancellationToken;
use tonic::transport::Endpoint;
use tonic::{Request, Response, Status, Streaming};

use crate::limits;
use crate::store::{InboundRaft, StoreHandle};

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
    peers: &std::collections::BTreeMap<u64, String>,
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
            peer_id,
            address.clone(),
            queue_rx,
            shutdown.clone(),
        ));
    }
    Outbox { node_id, queues }
}

async fn peer_sender(
    node_id: u64,
    peer_id: u64,
    address: String,
    mut queue: mpsc::Receiver<RaftEnvelope>,
    shutdown: CancellationToken,
) {
    let endpoint = match Endpoint::from_shared(format!("http://{address}")) {
        Ok(endpoint) => endpoint
            .tcp_nodelay(true)
            .connect_timeout(Duration::from_secs(1))
            .http2_keep_alive_interval(Duration::from_secs(10))
            .keep_alive_timeout(Duration::from_secs(5))
            .initial_stream_window_size(Some(2 * 1024 * 1024))
            .initial_connection_window_size(Some(8 * 1024 * 1024)),
        Err(error) => {
            tracing::error!(peer_id, address, %error, "invalid peer address; no raft traffic to it");
            return;
        }
    };
    let mut backoff = limits::PEER_RECONNECT_BACKOFF_MIN;
    loop {
        let started = Instant::now();
        let mut client = PeerServiceClient::new(endpoint.connect_lazy())
            .max_decoding_message_size(limits::GRPC_MESSAGE_BYTES_MAX)
            .max_encoding_message_size(limits::GRPC_MESSAGE_BYTES_MAX * 4);
        let (frames_tx, frames_rx) = mpsc::channel(limits::PEER_FRAMES_IN_FLIGHT_MAX);
        let call = client.raft(ReceiverStream::new(frames_rx));
        tokio::pin!(call);
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => return,
                result = &mut call => {
                    if let Err(status) = result {
                        tracing::debug!(peer_id, code = ?status.code(), message = status.message(), "peer stream ended");
                    }
                    break;
                }
                first = queue.recv() => {
                    let Some(first) = first else { return };
                    let mut messages = vec![first];
                    while messages.len() < limits::PEER_FRAME_MESSAGES_MAX {
                        match queue.try_recv() {
                            Ok(message) => messages.push(message),
                            Err(_) => break,
                        }
                    }
                    if frames_tx.send(RaftBatch { from_node: node_id, messages }).await.is_err() {
                        break;
                    }
                }
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

/// The receiving side: decodes frames and hands them to the store loop.
pub struct PeerServer {
    pub node_id: u64,
    pub partitions: u32,
    pub peers: Vec<u64>,
    pub store: StoreHandle,
}

#[tonic::async_trait]
impl PeerService for PeerServer {
    async fn raft(
        &self,
        request: Request<Streaming<RaftBatch>>,
    ) -> Result<Response<RaftAck>, Status> {
        let mut frames = request.into_inner();
        while let Some(frame) = frames.next().await {
            let frame = frame?;
            if !self.peers.contains(&frame.from_node) || frame.from_node == self.node_id {
                return Err(Status::permission_denied(format!(
                    "node {} is not a peer",
                    frame.from_node
                )));
            }
            let mut messages = Vec::with_capacity(frame.messages.len());
            for envelope in frame.messages {
                if envelope.partition >= self.partitions {
                    return Err(Status::invalid_argument(format!(
                        "unknown partition {}",
                        envelope.partition
                    )));
                }
                let message = Message::parse_from_bytes(&envelope.message).map_err(|error| {
                    Status::invalid_argument(format!("undecodable raft message: {error}"))
                })?;
                if message.to != self.node_id || message.from != frame.from_node {
                    return Err(Status::invalid_argument(
                        "raft message addressed to another node",
                    ));
                }
                messages.push((envelope.partition, message));
            }
            self.store
                .step(InboundRaft { messages })
                .await
                .map_err(|_| Status::unavailable("node is shutting down"))?;
        }
        Ok(Response::new(RaftAck {}))
    }

    async fn credit(
        &self,
        request: Request<CreditRequest>,
    ) -> Result<Response<CreditResponse>, Status> {
        let request = request.into_inner();
        if request.partition >= self.partitions {
            return Err(Status::invalid_argument(format!(
                "unknown partition {}",
                request.partition
            )));
        }
        if request.transfers.len() > limits::CREDIT_BATCH_MAX {
            return Err(Status::invalid_argument(format!(
                "more than {} credits in one call",
                limits::CREDIT_BATCH_MAX
            )));
        }
        let mut transfers = Vec::with_capacity(request.transfers.len());
        for bytes in &request.transfers {
            let transfer: ledger::TransferCommand =
                postcard::from_bytes(bytes).map_err(|error| {
                    Status::invalid_argument(format!("undecodable transfer: {error}"))
                })?;
            if ledger::partition_of(&transfer.to, self.partitions) != request.partition {
                return Err(Status::invalid_argument(
                    "a credited account is not in this partition",
                ));
            }
            transfers.push(transfer);
        }
        // Proposed together, they land in one store round and so mostly in one raft entry.
        let proposals = transfers.into_iter().map(|transfer| {
            self.store
                .propose(request.partition, ledger::Command::Credit(transfer))
        });
        let records = futures::future::join_all(proposals)
            .await
            .into_iter()
            .map(|applied| match applied {
                Ok(applied) => match applied.outcome {
                    ledger::Outcome::Credit(record) => {
                        postcard::to_stdvec(&record).expect("serialising to a Vec cannot fail")
                    }
                    other => {
                        unreachable!("a credit command answers with a credit record, not {other:?}")
                    }
                },
                // No answer here (leadership moved): the caller retries this one.
                Err(_) => Vec::new(),
            })
            .collect();
        Ok(Response::new(CreditResponse { records }))
    }
}
