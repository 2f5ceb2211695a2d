//! One endpoint is enough: a write that reaches a node which does not lead its partition is
//! forwarded to the leader, once, and the leader's answer is passed back as it was given.
//!
//! - Once: the forwarded call carries [`NO_FORWARD`]; a node that receives such a call and
//!   does not lead the partition (leadership moved meanwhile) answers NOT_LEADER with its own
//!   hint, and the caller's retry goes on from there. A write therefore takes at most one
//!   extra hop, and no loop can form.
//! - Smart clients opt out: a client that routes by itself (the SDKs, given more than one
//!   write endpoint) sends [`NO_FORWARD`] too, and gets NOT_LEADER with the leader's address
//!   instead of a forward, so it learns where to go and saves the hop from then on.
//! - No hidden retry: the forwarding node calls the leader once. If that call fails without
//!   an answer from the leader (connection refused or broken, its deadline), the outcome is
//!   unknown and the caller hears UNAVAILABLE, reason FORWARD_FAILED: a retry with the same
//!   transaction id is the answer, as for any indefinite failure.
//! - The caller's deadline: the forwarded call carries the caller's `grpc-timeout` (the server
//!   drops the handler, and with it the forwarded call, when it passes), and no forwarded call
//!   waits longer than [`limits::FORWARD_CALL_TIMEOUT`](crate::limits::FORWARD_CALL_TIMEOUT).
//! - The caller's identity: the leader authorizes the call itself, from the caller's token
//!   (`authorization` is carried on); over TLS the forwarding node dials with its peer
//!   certificate, as for every call between write nodes.
//! - Bounded: a forwarded call is one of the calls the guard layer admits on this node
//!   (`calls_in_flight_max`), and again on the leader.
//!
//! A client behind one address (a Kubernetes Service, a port-forward, a load balancer, or an
//! SDK given one endpoint) reaches every partition through it. Reads need no forwarding where
//! the node holds a replica (it answers linearizably, ReadIndex); `GetAccount` of a partition
//! placed on other nodes is forwarded to its leader the same way as a write.

use std::collections::BTreeMap;

use proto::v1::wallet_service_client::WalletServiceClient;
use proto::v1::{
    self as pb, GetAccountRequest, GetAccountResponse, OpenAccountRequest, TransferRequest,
    TransferResponse,
};
use tonic::metadata::{AsciiMetadataValue, MetadataMap};
use tonic::transport::{Channel, ClientTlsConfig};
use tonic::{Code, Request, Status};

use crate::api_error::ApiError;
use crate::limits;

/// Request metadata that asks a node not to forward the write (on a forwarded call, naming
/// the node that forwarded it).
pub use proto::NO_FORWARD_METADATA as NO_FORWARD;

/// The caller's metadata a forwarded call carries on: its token, its deadline and its trace
/// context.
const CARRIED: [&str; 3] = ["authorization", "grpc-timeout", "traceparent"];

/// What an incoming write brings to a forwarded copy of itself.
#[derive(Clone, Debug, Default)]
pub struct Hop {
    carried: Vec<(&'static str, AsciiMetadataValue)>,
    /// Neither forwarded already nor sent by a client that routes by itself.
    may_forward: bool,
}

impl Hop {
    pub fn of(metadata: &MetadataMap) -> Hop {
        Hop {
            carried: CARRIED
                .iter()
                .filter_map(|&key| Some((key, metadata.get(key)?.clone())))
                .collect(),
            may_forward: !metadata.contains_key(NO_FORWARD),
        }
    }
}

/// A hold step as a client sent it.
pub enum HoldStep {
    Authorize(pb::AuthorizeTransferRequest),
    Capture(pb::CaptureTransferRequest),
    Void(pb::VoidTransferRequest),
}

/// An account change as a client sent it.
pub enum AccountStep {
    Freeze(pb::FreezeAccountRequest),
    Unfreeze(pb::UnfreezeAccountRequest),
    Close(pb::CloseAccountRequest),
    SetOverdraftLimit(pb::SetOverdraftLimitRequest),
}

impl AccountStep {
    /// The account the step changes.
    pub fn account_id(&self) -> &str {
        match self {
            AccountStep::Freeze(request) => &request.account_id,
            AccountStep::Unfreeze(request) => &request.account_id,
            AccountStep::Close(request) => &request.account_id,
            AccountStep::SetOverdraftLimit(request) => &request.account_id,
        }
    }
}

/// WalletService clients of the other write nodes, for forwarding.
pub struct Forwarder {
    node_id: AsciiMetadataValue,
    clients: BTreeMap<u64, WalletServiceClient<Channel>>,
}

impl Forwarder {
    /// Clients of every other node in `peers` (connected on first use).
    pub fn new(
        node_id: u64,
        peers: &BTreeMap<u64, String>,
        peer_tls: Option<&ClientTlsConfig>,
    ) -> Forwarder {
        let clients =
            crate::transport::peer_channels(node_id, peers, peer_tls, limits::FORWARD_CALL_TIMEOUT)
                .map(|(id, channel)| {
                    let client = WalletServiceClient::new(channel)
                        .max_decoding_message_size(limits::GRPC_MESSAGE_BYTES_MAX)
                        .max_encoding_message_size(limits::GRPC_MESSAGE_BYTES_MAX);
                    (id, client)
                })
                .collect();
        Forwarder {
            node_id: node_id.to_string().parse().expect("a number is ASCII"),
            clients,
        }
    }

    /// The node a write for a partition led by `leader` (0: unknown) goes to from here: the
    /// leader, when it is another node this one can call and the write may be forwarded;
    /// `None` decides it here (proposing, or answering NOT_LEADER / NO_LEADER).
    pub fn route(&self, hop: &Hop, leader: u64) -> Option<u64> {
        (hop.may_forward && self.clients.contains_key(&leader)).then_some(leader)
    }

    pub async fn transfer(
        &self,
        leader: u64,
        hop: &Hop,
        request: TransferRequest,
    ) -> Result<TransferResponse, Status> {
        let mut client = self.client(leader);
        let answer = client.transfer(self.request(hop, request)).await;
        answer
            .map(tonic::Response::into_inner)
            .map_err(|status| forward_failed(leader, status))
    }

    pub async fn transfer_legs(
        &self,
        leader: u64,
        hop: &Hop,
        request: pb::TransferLegsRequest,
    ) -> Result<TransferResponse, Status> {
        let mut client = self.client(leader);
        let answer = client.transfer_legs(self.request(hop, request)).await;
        answer
            .map(tonic::Response::into_inner)
            .map_err(|status| forward_failed(leader, status))
    }

    pub async fn open_account(
        &self,
        leader: u64,
        hop: &Hop,
        request: OpenAccountRequest,
    ) -> Result<pb::Account, Status> {
        let mut client = self.client(leader);
        let answer = client.open_account(self.request(hop, request)).await;
        match answer {
            Ok(response) => response.into_inner().account.ok_or_else(|| {
                forward_failed(
                    leader,
                    Status::internal("the leader answered OpenAccount without the account"),
                )
            }),
            Err(status) => Err(forward_failed(leader, status)),
        }
    }

    /// A hold step (AuthorizeTransfer, CaptureTransfer, VoidTransfer), forwarded as it came.
    pub async fn hold(
        &self,
        leader: u64,
        hop: &Hop,
        step: HoldStep,
    ) -> Result<pb::HoldResponse, Status> {
        let mut client = self.client(leader);
        let answer = match step {
            HoldStep::Authorize(request) => {
                client.authorize_transfer(self.request(hop, request)).await
            }
            HoldStep::Capture(request) => client.capture_transfer(self.request(hop, request)).await,
            HoldStep::Void(request) => client.void_transfer(self.request(hop, request)).await,
        };
        answer
            .map(tonic::Response::into_inner)
            .map_err(|status| forward_failed(leader, status))
    }

    /// An account change (FreezeAccount, UnfreezeAccount, CloseAccount, SetOverdraftLimit),
    /// forwarded as it came; the account after it.
    pub async fn account_step(
        &self,
        leader: u64,
        hop: &Hop,
        step: AccountStep,
    ) -> Result<Option<pb::Account>, Status> {
        let mut client = self.client(leader);
        let answer = match step {
            AccountStep::Freeze(request) => client
                .freeze_account(self.request(hop, request))
                .await
                .map(|response| response.into_inner().account),
            AccountStep::Unfreeze(request) => client
                .unfreeze_account(self.request(hop, request))
                .await
                .map(|response| response.into_inner().account),
            AccountStep::Close(request) => client
                .close_account(self.request(hop, request))
                .await
                .map(|response| response.into_inner().account),
            AccountStep::SetOverdraftLimit(request) => client
                .set_overdraft_limit(self.request(hop, request))
                .await
                .map(|response| response.into_inner().account),
        };
        answer.map_err(|status| forward_failed(leader, status))
    }

    /// GetAccount of a partition this node holds no replica of, read by its leader.
    pub async fn get_account(
        &self,
        leader: u64,
        hop: &Hop,
        request: GetAccountRequest,
    ) -> Result<GetAccountResponse, Status> {
        let mut client = self.client(leader);
        let answer = client.get_account(self.request(hop, request)).await;
        answer
            .map(tonic::Response::into_inner)
            .map_err(|status| read_forward_failed(leader, status))
    }

    fn client(&self, leader: u64) -> WalletServiceClient<Channel> {
        self.clients
            .get(&leader)
            .expect("route() picks only nodes with a client")
            .clone()
    }

    fn request<T>(&self, hop: &Hop, message: T) -> Request<T> {
        let mut request = Request::new(message);
        let metadata = request.metadata_mut();
        for (key, value) in &hop.carried {
            metadata.insert(*key, value.clone());
        }
        metadata.insert(NO_FORWARD, self.node_id.clone());
        request
    }
}

/// [`forward_failed`] for a read: nothing can have changed, a retry is all it takes.
fn read_forward_failed(leader: u64, status: Status) -> Status {
    use tonic_types::StatusExt as _;
    if status.get_details_error_info().is_some() {
        return status;
    }
    let mut error = ApiError::new(
        Code::Unavailable,
        "FORWARD_FAILED",
        format!(
            "this node holds no replica of the account's partition, forwarded the read to its \
             leader (node {leader}) and got no answer ({}): retry",
            status.message()
        ),
    );
    error.metadata.push(("leader_id", leader.to_string()));
    error.into()
}

/// The leader's answer as it gave it (every answer of a node carries an `ErrorInfo` reason);
/// a failure without an answer (connection, deadline) as FORWARD_FAILED, indefinite.
fn forward_failed(leader: u64, status: Status) -> Status {
    use tonic_types::StatusExt as _;
    if status.get_details_error_info().is_some() {
        return status;
    }
    tracing::debug!(leader, code = ?status.code(), message = status.message(), "forwarded write failed");
    let code = match status.code() {
        Code::DeadlineExceeded => Code::DeadlineExceeded,
        _ => Code::Unavailable,
    };
    let mut error = ApiError::new(
        code,
        "FORWARD_FAILED",
        format!(
            "this node forwarded the write to the partition leader (node {leader}) and got no \
             answer ({}): it may or may not have been applied; retry with the same \
             transaction_id",
            status.message()
        ),
    );
    error.metadata.push(("leader_id", leader.to_string()));
    error.into()
}
