//! The client-facing gRPC services of a write node: input validation at the edge (bad input
//! never reaches the log), routing to the partition, and outcome -> response mapping.
//!
//! Writes go to their partition's leader: a node that does not lead it forwards the call
//! there, once (`forward.rs`), so one address serves every client; a forwarded call that
//! finds its node no longer leading fails with UNAVAILABLE, reason NOT_LEADER, and the
//! leader's address in the ErrorInfo metadata, so the client goes there directly (smart
//! clients always do, a hop fewer). Invalid input is refused where it arrives.
//! Reads (`GetAccount`, `GetTransfer`) are linearizable on every node: raft's ReadIndex asks
//! the leader for the commit index, and the node answers once it has applied that far.
//!
//! Authorization at the edge (with a tokens file; the auth layer already checked the method's
//! scope and put the [`Caller`] in the request's extensions): before anything is proposed,
//! `Transfer` and every transfer of a `SubmitTransfers` stream go through
//! [`Api::authorize_transfer`] (the debited account within the token's prefixes; `issue` to
//! debit an account that may go negative, `transfer` for any other), a cross-partition
//! transfer included (its saga starts here, on the source's partition). `OpenAccount` and
//! `GetAccount` (and each item of `OpenAccounts`) check the account against the prefixes; the state digest of
//! `GetClusterStatus` needs `admin`.

use std::collections::BTreeMap;
use std::sync::Arc;

use event_codec::pb::{annotations_from_fields, annotations_to_fields};
use futures::stream::FuturesUnordered;
use ledger::{
    AccountChange, Command, Currency, EntryMeta, Hold, HoldRefusal, HoldState, Leg, LegsCommand,
    LegsDecision, LegsRecord, Malformed, Outcome, RejectReason, TransferCommand, TransferRecord,
    TransferStatus, partition_of,
};
use proto::internal::peer_service_client::PeerServiceClient;
use proto::v1::cluster_service_server::ClusterService;
use proto::v1::wallet_service_server::WalletService;
use proto::v1::{
    self as pb, GetAccountRequest, GetAccountResponse, GetClusterStatusRequest,
    GetClusterStatusResponse, GetTransferRequest, GetTransferResponse, OpenAccountRequest,
    OpenAccountResponse, TransferRequest, TransferResponse, TransferResult,
};
use security::auth::{Caller, Denied};
use security::tokens::Scope;
use tokio::sync::{mpsc, watch};
use tokio_stream::StreamExt as _;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Code, Request, Response, Status, Streaming};

use crate::api_error::{ApiError, WriteApiError as _};
use crate::features::{Feature, PeerLevels, Verdict};
use crate::forward::{AccountStep, Forwarder, HoldStep, Hop};
use crate::limits;
use crate::saga::{Decided, LegsDriven, Saga};
use crate::store::{Applied, Query, QueryAnswer, StoreHandle};

/// The positions a transfer's token names: where it moved money. Within a partition, its
/// entry; across partitions, the debit on the source and the credit on the target (not the
/// settle, which moves no money), so the token is the same whether it was given with the
/// early answer (`Decided::Credited`) or read back after the settle.
///
/// A hold names where its last step was decided: the capture (with the credit across
/// partitions), the void or the expiry; while pending, its authorization.
fn transfer_positions(record: &TransferRecord, partitions: u32) -> Vec<(u32, u64)> {
    let source = partition_of(&record.transfer.from, partitions);
    let debit_index = hold_step_meta(record).map_or(record.meta.index, |meta| meta.index);
    match record.settlement {
        None => vec![(source, debit_index)],
        Some(settlement) if record.status.hold().is_some() => cross_partition_positions(
            source,
            debit_index,
            partition_of(&record.transfer.to, partitions),
            settlement.credit_index,
        ),
        Some(settlement) => cross_partition_positions(
            source,
            record.meta.index,
            partition_of(&record.transfer.to, partitions),
            settlement.credit_index,
        ),
    }
}

/// Where a hold's last step (capture, void, expiry) was decided on its partition; `None`
/// for a pending or refused hold, and for a transfer.
fn hold_step_meta(record: &TransferRecord) -> Option<EntryMeta> {
    match record.status.hold()?.state {
        HoldState::Capturing { meta, .. }
        | HoldState::Captured { meta, .. }
        | HoldState::Voided { meta }
        | HoldState::Expired { meta } => Some(meta),
        HoldState::CaptureRefused { .. } => record.settlement.map(|settlement| settlement.meta),
        HoldState::Pending | HoldState::Refused(_) => None,
    }
}

fn cross_partition_positions(
    source: u32,
    debit_index: u64,
    target: u32,
    credit_index: u64,
) -> Vec<(u32, u64)> {
    vec![(source, debit_index), (target, credit_index)]
}

struct Shared {
    store: StoreHandle,
    saga: Arc<Saga>,
    partitions: u32,
    peers: BTreeMap<u64, String>,
    /// Leader per partition (0: unknown), as this node's raft groups know it: where a write
    /// this node does not lead goes.
    leaders: watch::Receiver<Vec<u64>>,
    forwarder: Forwarder,
    /// PeerService clients of the other nodes: GetTransfer reads the partitions placed
    /// elsewhere through them (`PeerService/ReadRecord`).
    peer_reads: BTreeMap<u64, PeerServiceClient<tonic::transport::Channel>>,
    /// account id -> allow_negative_balance, for [`Api::authorize_transfer`]: a flag never
    /// changes once the account is open, so an entry never goes stale, and an evicted one
    /// costs one linearizable read.
    account_flags: moka::sync::Cache<String, bool>,
    /// What each peer can decode: calls that need a newer feature wait for it.
    levels: Arc<PeerLevels>,
}

/// A handler check's refusal as an API error (PERMISSION_DENIED; SubmitTransfers reports it
/// per transfer).
fn denied(denied: Denied) -> ApiError {
    ApiError {
        field: denied.field,
        metadata: denied.metadata,
        ..ApiError::new(Code::PermissionDenied, denied.reason, denied.message)
    }
}

/// The ErrorInfo metadata key that marks a rejection an earlier entry decided (`"true"`), as
/// `TransferResponse.replayed` marks a success.
use proto::REPLAYED_METADATA;

/// Whether an earlier log entry decided the transfer this entry found: a final record whose
/// deciding index is not this entry's. A transfer found in flight is not a replay (this call
/// drives it to its end); two copies decided in one entry both count as the first.
fn replayed(applied: &Applied) -> bool {
    matches!(&applied.outcome, Outcome::Transfer(record)
        if record.meta.index != applied.index && record.status != TransferStatus::InFlight)
}

/// Whether an earlier entry decided the hold step this entry found: the step's own position
/// (the authorization's for a pending or refused hold) is not this entry's.
fn hold_step_replayed(applied: &Applied, record: &TransferRecord) -> bool {
    let decided_at = hold_step_meta(record).unwrap_or(record.meta);
    decided_at.index != applied.index
}

/// A write's failure: decided on this node, or the answer of the leader it was forwarded to,
/// passed on as that node gave it.
enum WriteError {
    Here(ApiError),
    Leader(Status),
}

impl WriteError {
    /// A rejection an earlier entry decided (`REPLAYED_METADATA`), here or on the leader.
    fn replayed(&self) -> bool {
        match self {
            WriteError::Here(error) => error
                .metadata
                .iter()
                .any(|(key, value)| *key == REPLAYED_METADATA && value == "true"),
            WriteError::Leader(status) => {
                use tonic_types::StatusExt as _;
                status.get_details_error_info().is_some_and(|info| {
                    info.metadata.get(REPLAYED_METADATA).map(String::as_str) == Some("true")
                })
            }
        }
    }
}

impl From<ApiError> for WriteError {
    fn from(error: ApiError) -> WriteError {
        WriteError::Here(error)
    }
}

impl From<WriteError> for Status {
    fn from(error: WriteError) -> Status {
        match error {
            WriteError::Here(error) => error.into(),
            WriteError::Leader(status) => status,
        }
    }
}

/// The caller the auth layer verified (none without a tokens file).
fn caller_of<T>(request: &Request<T>) -> Option<Caller> {
    request.extensions().get::<Caller>().cloned()
}
/// WalletService and ClusterService of one node.
#[derive(Clone)]
pub struct Api {
    shared: Arc<Shared>,
    node_id: u64,
}

impl Api {
    pub fn new(
        node_id: u64,
        store: StoreHandle,
        saga: Arc<Saga>,
        partitions: u32,
        peers: BTreeMap<u64, String>,
        peer_tls: Option<&tonic::transport::ClientTlsConfig>,
        levels: Arc<PeerLevels>,
    ) -> Api {
        Api {
            shared: Arc::new(Shared {
                leaders: store.leaders(),
                forwarder: Forwarder::new(node_id, &peers, peer_tls),
                peer_reads: crate::transport::peer_clients(
                    node_id,
                    &peers,
                    peer_tls,
                    limits::PEER_READ_CALL_TIMEOUT,
                )
                .collect(),
                store,
                saga,
                partitions,
                peers,
                account_flags: moka::sync::Cache::new(limits::ACCOUNT_FLAGS_CACHED_MAX),
                levels,
            }),
            node_id,
        }
    }

    /// The edge's authorization of one transfer, before anything is proposed (Transfer, each
    /// transfer of SubmitTransfers, and so every cross-partition saga, which starts here).
    /// With a caller (tokens on): the debited account must be within the token's prefixes,
    /// and debiting needs `issue` when the account may go negative (debiting it creates
    /// money) and `transfer` otherwise.
    ///
    /// The flag comes from this node's cache, filled by a linearizable read the first time
    /// an account is debited here: it never changes after the account is opened, so a cached
    /// flag is exact, and the hot path makes no extra round trip. An account the read does not
    /// find is answered ACCOUNT_NOT_FOUND here, without proposing: proposing would race with
    /// an OpenAccount of the same id (with `allow_negative_balance`) ordered before the
    /// transfer, which would then debit it without `issue`. Such an answer is not recorded in
    /// the ledger (nothing was proposed): a retry after the account is opened is decided then.
    /// A caller holding both scopes needs no flag and keeps the ledger's recorded rejections.
    async fn authorize_transfer(
        &self,
        caller: Option<&Caller>,
        command: &TransferCommand,
    ) -> Result<(), ApiError> {
        self.authorize_debit(caller, &command.from).await
    }

    /// [`Api::authorize_transfer`] for any step that debits `from` (a transfer, a hold's
    /// authorization, capture or void).
    async fn authorize_debit(&self, caller: Option<&Caller>, from: &str) -> Result<(), ApiError> {
        let Some(caller) = caller else {
            return Ok(());
        };
        security::check_account(Some(caller), "from_account", from).map_err(denied)?;
        let (transfer, issue) = (caller.has(Scope::Transfer), caller.has(Scope::Issue));
        if transfer && issue {
            return Ok(());
        }
        match self.allows_negative(from).await? {
            None => Err(ApiError::rejected(RejectReason::FromAccountNotFound)),
            Some(true) if !issue => Err(denied(security::auth::issue_required(caller))),
            Some(false) if !transfer => Err(denied(security::auth::scope_denied(
                caller,
                Scope::Transfer,
                "debiting an account that cannot go negative",
            ))),
            Some(_) => Ok(()),
        }
    }

    /// Whether `account_id` was opened with `allow_negative_balance`; `None` if it does not
    /// exist at a linearizable read. Cached once known (see `authorize_transfer`).
    async fn allows_negative(&self, account_id: &str) -> Result<Option<bool>, ApiError> {
        if let Some(cached) = self.shared.account_flags.get(account_id) {
            return Ok(Some(cached));
        }
        let answer = self
            .read(account_id, Query::Account(account_id.to_owned()))
            .await?;
        let QueryAnswer::Account(account) = answer.answer else {
            unreachable!("an account query has an account answer")
        };
        let Some((account, _)) = account else {
            return Ok(None);
        };
        self.shared
            .account_flags
            .insert(account.account_id, account.allow_negative_balance);
        Ok(Some(account.allow_negative_balance))
    }
    fn store_error(&self, error: crate::store::StoreError) -> ApiError {
        ApiError::from_store(error, &self.shared.peers)
    }

    async fn propose(&self, partition: u32, command: Command) -> Result<Applied, ApiError> {
        self.shared
            .store
            .propose(partition, command)
            .await
            .map_err(|error| self.store_error(error))
    }

    /// The leader a write for `partition` is forwarded to, or `None` to decide it here.
    /// Refuses a call that needs `feature` while a node it reaches cannot decode it: the
    /// leader it is forwarded to, or (deciding here) every replica. A node not heard from
    /// since this one started is waited for, at most `limits::FEATURE_LEVEL_WAIT`. See
    /// `features`.
    async fn require(
        &self,
        feature: Option<Feature>,
        forward_to: Option<u64>,
    ) -> Result<(), ApiError> {
        let Some(feature) = feature else {
            return Ok(());
        };
        let deadline = tokio::time::Instant::now() + limits::FEATURE_LEVEL_WAIT;
        loop {
            match self.shared.levels.verdict(feature, forward_to) {
                Verdict::Allowed => return Ok(()),
                Verdict::Unheard if tokio::time::Instant::now() < deadline => {
                    tokio::time::sleep(limits::FEATURE_LEVEL_POLL).await;
                }
                Verdict::Older | Verdict::Unheard => {
                    return Err(ApiError::new(
                        Code::FailedPrecondition,
                        "CLUSTER_UPGRADING",
                        "not every write node runs a release that can decode this call yet; \
                         retry once the upgrade is complete",
                    ));
                }
            }
        }
    }

    fn forward_to(&self, hop: &Hop, partition: u32) -> Option<u64> {
        let leader = self.shared.leaders.borrow()[partition as usize];
        self.shared.forwarder.route(hop, leader)
    }

    /// One transfer as it arrives (Transfer, and each item of SubmitTransfers and
    /// TransferBatch): checked, then forwarded to its source partition's leader, or
    /// authorized and decided here.
    async fn transfer_edge(
        &self,
        hop: &Hop,
        caller: Option<&Caller>,
        request: TransferRequest,
    ) -> Result<TransferResponse, WriteError> {
        let command = validate_transfer(&request)?;
        let feature = command
            .annotations
            .is_some()
            .then_some(Feature::Annotations);
        let source = partition_of(&command.from, self.shared.partitions);
        if let Some(leader) = self.forward_to(hop, source) {
            self.require(feature, Some(leader)).await?;
            let forwarded = self.shared.forwarder.transfer(leader, hop, request);
            return forwarded.await.map_err(WriteError::Leader);
        }
        self.require(feature, None).await?;
        self.authorize_transfer(caller, &command).await?;
        Ok(self.decide_transfer(command).await?)
    }

    async fn decide_transfer(
        &self,
        command: TransferCommand,
    ) -> Result<TransferResponse, ApiError> {
        let source = partition_of(&command.from, self.shared.partitions);
        let target = partition_of(&command.to, self.shared.partitions);
        if source == target {
            let applied = self.propose(source, Command::Transfer(command)).await?;
            let replayed = replayed(&applied);
            return self.transfer_answer(applied.outcome, replayed);
        }
        // Cross-partition: debit on the source, then credit and settle (see saga.rs),
        // answered once the target credited (the settle follows) or the refund is settled. A
        // retry of an in-flight transfer lands here too and pushes it on.
        let applied = self.propose(source, Command::TransferOut(command)).await?;
        let replayed = replayed(&applied);
        match applied.outcome {
            Outcome::Transfer(record) if record.status == TransferStatus::InFlight => {
                let decided = self
                    .shared
                    .saga
                    .drive_to_decision(source, record.transfer.clone())
                    .await
                    .map_err(|error| self.store_error(error))?;
                match decided {
                    Decided::Credited { credit_index } => Ok(TransferResponse {
                        status: "success".into(),
                        transaction_id: record.transfer.transaction_id.hyphenated().to_string(),
                        consistency_token: proto::token::format(&cross_partition_positions(
                            source,
                            record.meta.index,
                            target,
                            credit_index,
                        )),
                        replayed,
                    }),
                    Decided::Settled(settled) => self.transfer_answer(settled.outcome, replayed),
                }
            }
            outcome => self.transfer_answer(outcome, replayed),
        }
    }

    /// A final transfer outcome as the API answers it; `replayed` when an earlier entry
    /// decided it (see [`replayed`]).
    fn transfer_answer(
        &self,
        outcome: Outcome,
        replayed: bool,
    ) -> Result<TransferResponse, ApiError> {
        match outcome {
            Outcome::Transfer(record) => match record.status {
                TransferStatus::Completed => Ok(TransferResponse {
                    status: "success".into(),
                    transaction_id: record.transfer.transaction_id.hyphenated().to_string(),
                    consistency_token: proto::token::format(&transfer_positions(
                        &record,
                        self.shared.partitions,
                    )),
                    replayed,
                }),
                TransferStatus::Rejected(reason) => {
                    let mut error = ApiError::rejected(reason);
                    if replayed {
                        error.metadata.push((REPLAYED_METADATA, "true".into()));
                    }
                    Err(error)
                }
                TransferStatus::InFlight => {
                    unreachable!("answers are given once a transfer is final")
                }
                // The ledger answers a transfer under a hold's id as a conflict.
                TransferStatus::Hold(_) => {
                    Err(ApiError::conflict(ledger::Conflict::TransactionIdReused))
                }
            },
            Outcome::Conflict(conflict) => Err(ApiError::conflict(conflict)),
            Outcome::Malformed(malformed) => Err(ApiError::malformed(malformed)),
            other => unreachable!("a transfer command has a transfer outcome, not {other:?}"),
        }
    }
    /// A multi-leg transfer as it arrives: checked, then forwarded to the leader of its home
    /// partition (that of the first leg's `from`), or authorized (each debited account as a
    /// transfer's `from`) and decided here: in one entry when every account is in the home
    /// partition, else step by step across partitions (`saga::legs`).
    async fn transfer_legs_edge(
        &self,
        hop: &Hop,
        caller: Option<&Caller>,
        request: pb::TransferLegsRequest,
    ) -> Result<TransferResponse, WriteError> {
        let command = validate_legs(&request)?;
        let partitions = self.shared.partitions;
        let home = partition_of(&command.legs[0].from, partitions);
        let across = command
            .accounts()
            .any(|account_id| partition_of(account_id, partitions) != home);
        let feature = if across {
            Feature::MultiLegAcross
        } else {
            Feature::MultiLeg
        };
        if let Some(leader) = self.forward_to(hop, home) {
            self.require(Some(feature), Some(leader)).await?;
            let forwarded = self.shared.forwarder.transfer_legs(leader, hop, request);
            return forwarded.await.map_err(WriteError::Leader);
        }
        self.require(Some(feature), None).await?;
        let mut authorized = std::collections::BTreeSet::new();
        for (index, leg) in command.legs.iter().enumerate() {
            if authorized.insert(leg.from.as_str()) {
                self.authorize_debit(caller, &leg.from)
                    .await
                    .map_err(|error| at_leg(error, index))?;
            }
        }
        if !across {
            let applied = self.propose(home, Command::TransferLegs(command)).await?;
            return Ok(legs_answer(&applied)?);
        }
        let driven = self.shared.saga.drive_legs(home, command).await;
        match driven.map_err(|error| ApiError::from_store(error, &self.shared.peers))? {
            LegsDriven::Refused(applied) => Ok(legs_answer(&applied)?),
            LegsDriven::Decided {
                record,
                replayed,
                positions,
            } => Ok(legs_decision_answer(&record, replayed, &positions)?),
        }
    }

    /// One transfer of a SubmitTransfers stream or a TransferBatch, in its own span.
    #[tracing::instrument(level = "debug", name = "submit_transfer", skip_all, fields(transaction_id = %request.transaction_id))]
    async fn transfer_result(
        self,
        hop: Arc<Hop>,
        caller: Option<Arc<Caller>>,
        request: TransferRequest,
    ) -> TransferResult {
        let transaction_id = request.transaction_id.clone();
        let outcome = self.transfer_edge(&hop, caller.as_deref(), request).await;
        match outcome {
            Ok(response) => TransferResult {
                transaction_id,
                status: response.status,
                consistency_token: response.consistency_token,
                error: None,
                replayed: response.replayed,
            },
            Err(error) => {
                let replayed = error.replayed();
                let (status, error) = item_error(error);
                TransferResult {
                    transaction_id,
                    status: status.into(),
                    consistency_token: String::new(),
                    error: Some(error),
                    replayed,
                }
            }
        }
    }

    /// A hold step as it arrives (AuthorizeTransfer, CaptureTransfer, VoidTransfer):
    /// checked, then forwarded to the leader of its `from_account`'s partition, or
    /// authorized (like a debit of that account) and decided here.
    async fn hold_edge(
        &self,
        hop: &Hop,
        caller: Option<&Caller>,
        step: HoldStep,
    ) -> Result<pb::HoldResponse, WriteError> {
        let command = validate_hold_step(&step)?;
        let (from, feature) = match &command {
            HoldCommand::Authorize { transfer, .. } => (
                &transfer.from,
                transfer
                    .annotations
                    .is_some()
                    .then_some(Feature::Annotations),
            ),
            HoldCommand::Capture { from, .. } | HoldCommand::Void { from, .. } => (from, None),
        };
        let source = partition_of(from, self.shared.partitions);
        if let Some(leader) = self.forward_to(hop, source) {
            self.require(feature, Some(leader)).await?;
            let forwarded = self.shared.forwarder.hold(leader, hop, step);
            return forwarded.await.map_err(WriteError::Leader);
        }
        self.require(feature, None).await?;
        self.authorize_debit(caller, from).await?;
        Ok(self.decide_hold_step(source, command).await?)
    }

    async fn decide_hold_step(
        &self,
        source: u32,
        command: HoldCommand,
    ) -> Result<pb::HoldResponse, ApiError> {
        let command = match command {
            HoldCommand::Authorize {
                transfer,
                timeout_ms,
            } => Command::Authorize {
                cross_partition: partition_of(&transfer.to, self.shared.partitions) != source,
                transfer,
                timeout_ms,
            },
            HoldCommand::Capture {
                transaction_id,
                from,
                amount,
            } => {
                // The amount is in the hold's currency, which only its record names: read it
                // (linearizably; a currency never changes), and answer an unknown hold here.
                let answer = self
                    .shared
                    .store
                    .read(source, Query::Transfer(transaction_id))
                    .await
                    .map_err(|error| self.store_error(error))?;
                let QueryAnswer::Transfer(record) = answer.answer else {
                    unreachable!("a transfer query has a transfer answer")
                };
                let record = record
                    .filter(|record| record.transfer.from == from)
                    .ok_or_else(|| ApiError::hold_refused(HoldRefusal::NotFound))?;
                let amount_minor = match amount.as_str() {
                    "" => None,
                    text => Some(
                        ledger::parse_amount(text, record.transfer.currency)
                            .map_err(|error| ApiError::from_money("amount", &error))?,
                    ),
                };
                Command::Capture {
                    transaction_id,
                    from,
                    amount_minor,
                }
            }
            HoldCommand::Void {
                transaction_id,
                from,
            } => Command::Void {
                transaction_id,
                from,
            },
        };
        // An authorization (or its retry) answers the hold as it stands, whatever came after.
        let authorizing = matches!(command, Command::Authorize { .. });
        let applied = self.propose(source, command).await?;
        let record = match &applied.outcome {
            Outcome::Transfer(record) => record.clone(),
            Outcome::Hold(refusal) => return Err(ApiError::hold_refused(*refusal)),
            Outcome::Conflict(conflict) => return Err(ApiError::conflict(*conflict)),
            Outcome::Malformed(malformed) => return Err(ApiError::malformed(*malformed)),
            other => unreachable!("a hold step has a transfer outcome, not {other:?}"),
        };
        let replayed = hold_step_replayed(&applied, &record);
        let refused = |reason: RejectReason| {
            let mut error = ApiError::rejected(reason);
            if replayed {
                error.metadata.push((REPLAYED_METADATA, "true".into()));
            }
            error
        };
        let Some(hold) = record.status.hold().copied() else {
            // The ledger answers a hold step on a transfer with a refusal.
            return Err(ApiError::hold_refused(HoldRefusal::NotAHold));
        };
        let partitions = self.shared.partitions;
        let answer = |record: &TransferRecord, consistency_token| pb::HoldResponse {
            transfer: Some(transfer_to_pb(record, partitions)),
            replayed,
            consistency_token,
        };
        let answer_as_recorded = |record: &TransferRecord| {
            answer(
                record,
                proto::token::format(&transfer_positions(record, partitions)),
            )
        };
        match hold.state {
            HoldState::Refused(reason) => Err(refused(reason)),
            _ if authorizing => Ok(answer_as_recorded(&record)),
            HoldState::Pending | HoldState::Captured { .. } | HoldState::Voided { .. } => {
                Ok(answer_as_recorded(&record))
            }
            HoldState::CaptureRefused { reason, .. } => Err(refused(reason)),
            HoldState::Expired { .. } => Err(ApiError::hold_refused(HoldRefusal::Expired)),
            HoldState::Capturing { meta, .. } => {
                // Across partitions: credit and settle as a transfer's saga does.
                let decided = self
                    .shared
                    .saga
                    .drive_to_decision(source, record.credit_command())
                    .await
                    .map_err(|error| self.store_error(error))?;
                match decided {
                    Decided::Credited { credit_index } => {
                        let target = partition_of(&record.transfer.to, partitions);
                        let token = proto::token::format(&cross_partition_positions(
                            source,
                            meta.index,
                            target,
                            credit_index,
                        ));
                        Ok(answer(&record, token))
                    }
                    Decided::Settled(settled) => match settled.outcome {
                        Outcome::Transfer(TransferRecord {
                            status:
                                TransferStatus::Hold(Hold {
                                    state: HoldState::CaptureRefused { reason, .. },
                                    ..
                                }),
                            ..
                        }) => Err(refused(reason)),
                        Outcome::Transfer(settled) => Ok(answer_as_recorded(&settled)),
                        other => unreachable!("a settle has a transfer outcome, not {other:?}"),
                    },
                }
            }
        }
    }

    /// One account opening (OpenAccount, and each item of OpenAccounts): checked, then
    /// forwarded to the account's partition leader, or decided here.
    async fn open_account_edge(
        &self,
        hop: &Hop,
        caller: Option<&Caller>,
        request: OpenAccountRequest,
    ) -> Result<pb::Account, WriteError> {
        let command = validate_open_account(&request)?;
        let partition = partition_of(&request.account_id, self.shared.partitions);
        let feature = match &command {
            Command::OpenAccount {
                annotations: Some(_),
                ..
            } => Some(Feature::AccountAnnotations),
            _ => None,
        };
        if let Some(leader) = self.forward_to(hop, partition) {
            self.require(feature, Some(leader)).await?;
            let forwarded = self.shared.forwarder.open_account(leader, hop, request);
            return forwarded.await.map_err(WriteError::Leader);
        }
        self.require(feature, None).await?;
        security::check_account(caller, "account_id", &request.account_id).map_err(denied)?;
        let account = self.open_account_here(partition, command).await?;
        // The account was opened with what this open carries: an open with other annotations
        // is refused.
        Ok(pb::Account {
            reference: request.reference,
            metadata: request.metadata,
            ..account
        })
    }

    /// One account change as it arrives: checked, then forwarded to the account's partition
    /// leader, or decided here; the account after it.
    async fn account_step_edge(
        &self,
        hop: &Hop,
        caller: Option<&Caller>,
        step: AccountStep,
    ) -> Result<pb::Account, WriteError> {
        let command = validate_account_step(&step)?;
        let feature = Some(Feature::AccountLifecycle);
        let partition = partition_of(step.account_id(), self.shared.partitions);
        if let Some(leader) = self.forward_to(hop, partition) {
            self.require(feature, Some(leader)).await?;
            let forwarded = self.shared.forwarder.account_step(leader, hop, step);
            return forwarded.await.map_err(WriteError::Leader)?.ok_or_else(|| {
                WriteError::Leader(Status::internal(
                    "the leader answered an account change without the account",
                ))
            });
        }
        self.require(feature, None).await?;
        security::check_account(caller, "account_id", step.account_id()).map_err(denied)?;
        let applied = self.propose(partition, command).await?;
        match applied.outcome {
            Outcome::Account(account) => {
                let annotations = self.account_annotations(partition, &account.account_id)?;
                Ok(account_to_pb(&account, annotations.as_ref()))
            }
            Outcome::AccountRefused(refusal) => Err(ApiError::account_refused(refusal).into()),
            Outcome::Malformed(malformed) => Err(ApiError::malformed(malformed).into()),
            other => unreachable!("an account change has an account outcome, not {other:?}"),
        }
    }

    async fn open_account_here(
        &self,
        partition: u32,
        command: Command,
    ) -> Result<pb::Account, ApiError> {
        let applied = self.propose(partition, command).await?;
        match applied.outcome {
            Outcome::Account(account) => Ok(account_to_pb(&account, None)),
            Outcome::Conflict(conflict) => Err(ApiError::conflict(conflict)),
            Outcome::Malformed(malformed) => Err(ApiError::malformed(malformed)),
            other => unreachable!("an open-account command has an account outcome, not {other:?}"),
        }
    }

    /// What an account was opened with, from this node's disk: for answers given once the
    /// node applied the account's opening (the `accounts` column family is written in the
    /// same batch, before any answer or read after it).
    fn account_annotations(
        &self,
        partition: u32,
        account_id: &str,
    ) -> Result<Option<ledger::Annotations>, ApiError> {
        self.shared
            .store
            .db()
            .account_annotations(partition, account_id)
            .map_err(|error| {
                tracing::error!(
                    partition,
                    error = format!("{error:#}"),
                    "reading an account's annotations failed"
                );
                self.store_error(crate::store::StoreError::StorageFailed)
            })
    }

    /// The record `partition` keeps for `transaction_id`, read linearizably: here if the
    /// partition is held here, else by one of its replicas (its leader as last learnt, or
    /// placement's preferred one).
    async fn record(
        &self,
        partition: u32,
        transaction_id: uuid::Uuid,
    ) -> Result<Option<ledger::Record>, Status> {
        let store = &self.shared.store;
        if store.hosts(partition) {
            let answer = store
                .read(partition, Query::Record(transaction_id))
                .await
                .map_err(|error| self.store_error(error))?;
            return Ok(match answer.answer {
                QueryAnswer::Record(record) => record,
                QueryAnswer::Account(_) | QueryAnswer::Transfer(_) => {
                    unreachable!("a record query has a record answer")
                }
            });
        }
        let leader = self.shared.leaders.borrow()[partition as usize];
        let voting = store.members(partition).voting();
        let replica = match voting.first() {
            _ if voting.contains(&leader) => leader,
            Some(&first) => first,
            None => {
                return Err(Status::internal(format!(
                    "partition {partition} has no replica"
                )));
            }
        };
        let Some(client) = self.shared.peer_reads.get(&replica) else {
            return Err(Status::internal(format!("no client of node {replica}")));
        };
        let request = proto::internal::ReadRecordRequest {
            partition,
            transaction_id: transaction_id.as_bytes().to_vec(),
        };
        let answer = client.clone().read_record(request).await?.into_inner();
        if answer.record.is_empty() {
            return Ok(None);
        }
        crate::records::decode(&answer.record)
            .map(Some)
            .map_err(|error| {
                Status::internal(format!(
                    "node {replica} sent an undecodable record of partition {partition}: {error:#}"
                ))
            })
    }

    async fn read(
        &self,
        account_id: &str,
        query: Query,
    ) -> Result<crate::store::ReadAnswer, ApiError> {
        let partition = partition_of(account_id, self.shared.partitions);
        self.shared
            .store
            .read(partition, query)
            .await
            .map_err(|error| self.store_error(error))
    }
}

/// Checks an OpenAccount request at the edge; the command to propose, or INVALID_ARGUMENT.
pub fn validate_open_account(request: &OpenAccountRequest) -> Result<Command, ApiError> {
    ledger::validate_account_id(&request.account_id)
        .map_err(|error| ApiError::from_id("account_id", &error))?;
    let currency = Currency::parse(&request.currency)
        .map_err(|error| ApiError::from_money("currency", &error))?;
    Ok(Command::OpenAccount {
        account_id: request.account_id.clone(),
        currency,
        allow_negative_balance: request.allow_negative_balance,
        annotations: checked_annotations(&request.reference, &request.metadata)?,
    })
}

/// A request's `reference` and `metadata` as the ledger holds them, checked against their
/// limits (INVALID_ARGUMENT / INVALID_REFERENCE or INVALID_METADATA).
fn checked_annotations(
    reference: &str,
    metadata: &BTreeMap<String, String>,
) -> Result<Option<Box<ledger::Annotations>>, ApiError> {
    let annotations = annotations_from_fields(reference, metadata);
    if let Some(annotations) = &annotations {
        annotations
            .check()
            .map_err(|error| ApiError::malformed(error.into()))?;
    }
    Ok(annotations)
}

/// Checks an account change at the edge; the command to propose, or INVALID_ARGUMENT.
pub fn validate_account_step(step: &AccountStep) -> Result<Command, ApiError> {
    let account_id = step.account_id();
    ledger::validate_account_id(account_id)
        .map_err(|error| ApiError::from_id("account_id", &error))?;
    let change = match step {
        AccountStep::Freeze(_) => AccountChange::Freeze,
        AccountStep::Unfreeze(_) => AccountChange::Unfreeze,
        AccountStep::Close(_) => AccountChange::Close,
        AccountStep::SetOverdraftLimit(request) => {
            let currency = Currency::parse(&request.currency)
                .map_err(|error| ApiError::from_money("currency", &error))?;
            let limit_minor = ledger::parse_non_negative_amount(&request.overdraft_limit, currency)
                .map_err(|error| ApiError::from_money("overdraft_limit", &error))?;
            AccountChange::SetOverdraftLimit {
                limit_minor,
                currency,
            }
        }
    };
    Ok(Command::ChangeAccount {
        account_id: account_id.to_owned(),
        change,
    })
}

/// Checks a transfer request at the edge (the same for Transfer and SubmitTransfers); the
/// command to propose, or INVALID_ARGUMENT naming the field and the reason.
pub fn validate_transfer(request: &TransferRequest) -> Result<TransferCommand, ApiError> {
    let transaction_id = ledger::parse_transaction_id(&request.transaction_id)
        .map_err(|error| ApiError::from_id("transaction_id", &error))?;
    ledger::validate_account_id(&request.from_account)
        .map_err(|error| ApiError::from_id("from_account", &error))?;
    ledger::validate_account_id(&request.to_account)
        .map_err(|error| ApiError::from_id("to_account", &error))?;
    if request.from_account == request.to_account {
        return Err(ApiError::invalid(
            "to_account",
            "SAME_ACCOUNT",
            "from_account and to_account must differ",
        ));
    }
    let currency = Currency::parse(&request.currency)
        .map_err(|error| ApiError::from_money("currency", &error))?;
    let amount_minor = ledger::parse_amount(&request.amount, currency)
        .map_err(|error| ApiError::from_money("amount", &error))?;
    let annotations = checked_annotations(&request.reference, &request.metadata)?;
    Ok(TransferCommand {
        transaction_id,
        from: request.from_account.clone(),
        to: request.to_account.clone(),
        amount_minor,
        currency,
        annotations,
    })
}

/// A hold step checked at the edge, before the partition is known to be led here.
enum HoldCommand {
    Authorize {
        transfer: TransferCommand,
        timeout_ms: u64,
    },
    Capture {
        transaction_id: uuid::Uuid,
        from: String,
        /// As the client wrote it ("" for the whole hold): parsed in the hold's currency.
        amount: String,
    },
    Void {
        transaction_id: uuid::Uuid,
        from: String,
    },
}

/// Checks a hold step at the edge: ids, accounts, amount and currency as for a transfer,
/// the timeout in whole milliseconds within `1..=HOLD_TIMEOUT_MS_MAX`.
fn validate_hold_step(step: &HoldStep) -> Result<HoldCommand, ApiError> {
    let transaction_id = |text: &str| {
        ledger::parse_transaction_id(text)
            .map_err(|error| ApiError::from_id("transaction_id", &error))
    };
    let account = |text: &str| {
        ledger::validate_account_id(text)
            .map(|()| text.to_owned())
            .map_err(|error| ApiError::from_id("from_account", &error))
    };
    Ok(match step {
        HoldStep::Authorize(request) => {
            let transfer = validate_transfer(&TransferRequest {
                transaction_id: request.transaction_id.clone(),
                from_account: request.from_account.clone(),
                to_account: request.to_account.clone(),
                amount: request.amount.clone(),
                currency: request.currency.clone(),
                reference: request.reference.clone(),
                metadata: request.metadata.clone(),
            })?;
            let timeout_ms = request
                .timeout
                .and_then(|timeout| {
                    let seconds = u64::try_from(timeout.seconds).ok()?;
                    let nanos = u64::try_from(timeout.nanos).ok()?;
                    (nanos % 1_000_000 == 0).then_some(())?;
                    seconds.checked_mul(1_000)?.checked_add(nanos / 1_000_000)
                })
                .filter(|timeout_ms| (1..=ledger::HOLD_TIMEOUT_MS_MAX).contains(timeout_ms))
                .ok_or_else(|| ApiError::malformed(Malformed::HoldTimeoutOutOfRange))?;
            HoldCommand::Authorize {
                transfer,
                timeout_ms,
            }
        }
        HoldStep::Capture(request) => HoldCommand::Capture {
            transaction_id: transaction_id(&request.transaction_id)?,
            from: account(&request.from_account)?,
            amount: request.amount.clone(),
        },
        HoldStep::Void(request) => HoldCommand::Void {
            transaction_id: transaction_id(&request.transaction_id)?,
            from: account(&request.from_account)?,
        },
    })
}

/// The status word and error of a failed item (SubmitTransfers, TransferBatch, OpenAccounts):
/// "unavailable" where the outcome is unknown and a retry is the answer, "rejected" otherwise.
/// An item forwarded to its leader reports what the leader's status says.
fn item_error(error: WriteError) -> (&'static str, pb::TransferError) {
    let (code, reason, message, field) = match error {
        WriteError::Here(error) => {
            // The field the unary call's status would name (`ApiError` into `Status`): only
            // where the request got a field wrong or names something that does not exist.
            let field = match error.code {
                Code::InvalidArgument | Code::NotFound => error.field.unwrap_or_default(),
                _ => "",
            };
            (
                error.code,
                error.reason.to_owned(),
                error.message,
                field.to_owned(),
            )
        }
        WriteError::Leader(status) => {
            use tonic_types::StatusExt as _;
            let details = status.get_error_details();
            let reason = details.error_info().map(|info| info.reason.clone());
            let field = details
                .bad_request()
                .and_then(|bad_request| bad_request.field_violations.first())
                .map(|violation| violation.field.clone());
            let message = status.message().to_owned();
            (
                status.code(),
                reason.unwrap_or_default(),
                message,
                field.unwrap_or_default(),
            )
        }
    };
    let status = match code {
        Code::Unavailable | Code::ResourceExhausted | Code::DeadlineExceeded => "unavailable",
        _ => "rejected",
    };
    let error = pb::TransferError {
        code: code as i32,
        reason,
        message,
        field,
    };
    (status, error)
}

/// Serves a request stream whose items are independent (SubmitTransfers, OpenAccounts): up
/// to `SUBMIT_STREAM_IN_FLIGHT_MAX` items handled at once, each result sent as it is ready.
/// A frame that is not a request (or is too large) ends the input; the items already read
/// still get their results, then the stream ends with that error.
fn serve_items<Req, Res, F, Fut>(
    mut input: Streaming<Req>,
    handle: F,
) -> ReceiverStream<Result<Res, Status>>
where
    Req: Send + 'static,
    Res: Send + 'static,
    F: Fn(Req) -> Fut + Send + 'static,
    Fut: std::future::Future<Output = Res> + Send + 'static,
{
    let (results_tx, results_rx) = mpsc::channel(limits::SUBMIT_STREAM_IN_FLIGHT_MAX);
    tokio::spawn(async move {
        let mut in_flight = FuturesUnordered::new();
        let mut input_open = true;
        let mut input_error = None;
        loop {
            tokio::select! {
                item = input.next(), if input_open && in_flight.len() < limits::SUBMIT_STREAM_IN_FLIGHT_MAX => match item {
                    Some(Ok(request)) => in_flight.push(handle(request)),
                    Some(Err(status)) => {
                        tracing::debug!(code = ?status.code(), "request stream ended with an error");
                        input_error = proto::guard::normalize_decode_error(&status);
                        input_open = false;
                    }
                    None => input_open = false,
                },
                Some(result) = in_flight.next(), if !in_flight.is_empty() => {
                    if results_tx.send(Ok(result)).await.is_err() {
                        return; // The client went away.
                    }
                }
                else => {
                    if let Some(status) = input_error {
                        let _ = results_tx.send(Err(status)).await;
                    }
                    return;
                }
            }
        }
    });
    ReceiverStream::new(results_rx)
}

/// An account as GetAccount answers it, with what its pending holds reserve.
pub fn account_with_holds_to_pb(
    account: &ledger::Account,
    held_minor: i128,
    annotations: Option<&ledger::Annotations>,
) -> pb::Account {
    pb::Account {
        held: ledger::format_minor(held_minor, account.currency),
        available: ledger::format_minor(account.balance_minor - held_minor, account.currency),
        ..account_to_pb(account, annotations)
    }
}

/// An account as OpenAccount and the account changes answer it (`held` and `available` left
/// empty), with what it was opened with.
pub fn account_to_pb(
    account: &ledger::Account,
    annotations: Option<&ledger::Annotations>,
) -> pb::Account {
    let (reference, metadata) = annotations_to_fields(annotations);
    pb::Account {
        account_id: account.account_id.clone(),
        currency: account.currency.code().to_owned(),
        allow_negative_balance: account.allow_negative_balance,
        balance: ledger::format_minor(account.balance_minor, account.currency),
        // Balances are i128 internally; the API's minor-unit field saturates (the decimal
        // string is always exact).
        balance_minor: account
            .balance_minor
            .clamp(i64::MIN as i128, i64::MAX as i128) as i64,
        held: String::new(),
        available: String::new(),
        status: event_codec::pb::account_status_to_pb(account.settings.status) as i32,
        overdraft_limit: if account.allow_negative_balance {
            String::new()
        } else {
            ledger::format_minor(
                i128::from(account.settings.overdraft_limit_minor),
                account.currency,
            )
        },
        reference,
        metadata,
    }
}

/// The answer to a multi-leg transfer's entry: "success" with the entry's position, or the
/// recorded rejection (the leg in the `leg` metadata), `replayed` when an earlier entry
/// decided it.
fn legs_answer(applied: &Applied) -> Result<TransferResponse, ApiError> {
    match &applied.outcome {
        Outcome::Legs(record) => legs_decision_answer(
            record,
            record.meta.index != applied.index,
            &[(applied.partition, record.meta.index)],
        ),
        Outcome::Conflict(conflict) => Err(ApiError::conflict(*conflict)),
        Outcome::Malformed(malformed) => Err(ApiError::malformed(*malformed)),
        other => unreachable!("a multi-leg transfer has a multi-leg outcome, not {other:?}"),
    }
}

/// The answer a multi-leg record's decision gets: "success" with a consistency token naming
/// `positions`, or the rejection (the leg in the `leg` metadata); `replayed` when an earlier
/// call decided it. A set across partitions not decided yet is in flight: a retry with the
/// same id learns the outcome (UNAVAILABLE / OUTCOME_UNKNOWN).
fn legs_decision_answer(
    record: &LegsRecord,
    replayed: bool,
    positions: &[(u32, u64)],
) -> Result<TransferResponse, ApiError> {
    let Some(decision) = record.status.decision() else {
        return Err(ApiError::from_store(
            crate::store::StoreError::OutcomeUnknown,
            &BTreeMap::new(),
        ));
    };
    match decision {
        LegsDecision::Completed => Ok(TransferResponse {
            status: "success".into(),
            transaction_id: record.command.transaction_id.hyphenated().to_string(),
            consistency_token: proto::token::format(positions),
            replayed,
        }),
        LegsDecision::Rejected { leg, reason } => {
            let mut error = at_leg(ApiError::rejected(reason), leg as usize);
            if replayed {
                error.metadata.push((REPLAYED_METADATA, "true".into()));
            }
            Err(error)
        }
    }
}

/// `error`, about the leg at `index`.
fn at_leg(mut error: ApiError, index: usize) -> ApiError {
    error
        .metadata
        .push((proto::LEG_METADATA, index.to_string()));
    error
}

/// Checks a multi-leg transfer at the edge: the id, 1 to `LEGS_MAX` legs, each leg's
/// accounts, currency and amount as a transfer's (field `legs`, the leg's index in the `leg`
/// metadata), one currency for all (MIXED_CURRENCIES), no repeated leg, the annotations.
pub fn validate_legs(request: &pb::TransferLegsRequest) -> Result<LegsCommand, ApiError> {
    let transaction_id = ledger::parse_transaction_id(&request.transaction_id)
        .map_err(|error| ApiError::from_id("transaction_id", &error))?;
    if !(1..=ledger::LEGS_MAX).contains(&request.legs.len()) {
        return Err(ApiError::malformed(Malformed::LegsOutOfRange));
    }
    let mut currency = None;
    let mut legs = Vec::with_capacity(request.legs.len());
    for (index, leg) in request.legs.iter().enumerate() {
        let checked = validate_leg(leg, &mut currency).map_err(|error| at_leg(error, index))?;
        legs.push(checked);
    }
    let command = LegsCommand {
        transaction_id,
        currency: currency.expect("at least one leg"),
        legs,
        annotations: checked_annotations(&request.reference, &request.metadata)?,
    };
    command.shape().map_err(|(malformed, leg)| {
        let error = ApiError::malformed(malformed);
        match leg {
            // A leg's own fault names the leg, in the field every leg error names.
            Some(index) => at_leg(
                ApiError {
                    field: Some("legs"),
                    ..error
                },
                index,
            ),
            None => error,
        }
    })?;
    Ok(command)
}

/// One leg checked as a transfer's fields (field `legs`), in the currency of the legs before
/// it (`currency`, set by the first).
fn validate_leg(leg: &pb::TransferLeg, currency: &mut Option<Currency>) -> Result<Leg, ApiError> {
    ledger::validate_account_id(&leg.from_account)
        .map_err(|error| ApiError::from_id("legs", &error))?;
    ledger::validate_account_id(&leg.to_account)
        .map_err(|error| ApiError::from_id("legs", &error))?;
    let leg_currency =
        Currency::parse(&leg.currency).map_err(|error| ApiError::from_money("legs", &error))?;
    if *currency.get_or_insert(leg_currency) != leg_currency {
        return Err(ApiError::invalid(
            "legs",
            "MIXED_CURRENCIES",
            "every leg of a multi-leg transfer is in the same currency",
        ));
    }
    let amount_minor = ledger::parse_amount(&leg.amount, leg_currency)
        .map_err(|error| ApiError::from_money("legs", &error))?;
    Ok(Leg {
        from: leg.from_account.clone(),
        to: leg.to_account.clone(),
        amount_minor,
    })
}

/// A multi-leg transfer's record as the API shows it: `legs` set, `from_account`,
/// `to_account` and `amount` empty.
pub fn legs_to_pb(record: &LegsRecord, partition: u32) -> pb::Transfer {
    use pb::TransferStatus as Status;
    let command = &record.command;
    let (reference, metadata) = annotations_to_fields(command.annotations.as_deref());
    // Across partitions: in flight until the home decides; its decision is final.
    let (status, reject_reason, rejected_leg) = match record.status.decision() {
        None => (Status::InFlight, String::new(), None),
        Some(LegsDecision::Completed) => (Status::Completed, String::new(), None),
        Some(LegsDecision::Rejected { leg, reason }) => {
            (Status::Rejected, reason.reason().to_owned(), Some(leg))
        }
    };
    pb::Transfer {
        transaction_id: command.transaction_id.hyphenated().to_string(),
        currency: command.currency.code().to_owned(),
        status: status as i32,
        reject_reason,
        committed_at_unix_ms: record.meta.timestamp_ms,
        consistency_token: proto::token::format(&[(partition, record.meta.index)]),
        reference,
        metadata,
        legs: command
            .legs
            .iter()
            .map(|leg| pb::TransferLeg {
                from_account: leg.from.clone(),
                to_account: leg.to.clone(),
                amount: ledger::format_minor(i128::from(leg.amount_minor), command.currency),
                currency: command.currency.code().to_owned(),
            })
            .collect(),
        rejected_leg,
        ..pb::Transfer::default()
    }
}

pub fn transfer_to_pb(record: &TransferRecord, partitions: u32) -> pb::Transfer {
    use pb::TransferStatus as Status;
    let (reference, metadata) = annotations_to_fields(record.transfer.annotations.as_deref());
    let none = String::new;
    let (status, reject_reason) = match record.status {
        TransferStatus::Completed => (Status::Completed, none()),
        TransferStatus::Rejected(reason) => (Status::Rejected, reason.reason().to_owned()),
        TransferStatus::InFlight => (Status::InFlight, none()),
        TransferStatus::Hold(hold) => match hold.state {
            HoldState::Pending => (Status::Pending, none()),
            HoldState::Refused(reason) | HoldState::CaptureRefused { reason, .. } => {
                (Status::Rejected, reason.reason().to_owned())
            }
            HoldState::Capturing { .. } => (Status::InFlight, none()),
            HoldState::Captured { .. } => (Status::Completed, none()),
            HoldState::Voided { .. } => (Status::Voided, none()),
            HoldState::Expired { .. } => (Status::Expired, none()),
        },
    };
    let hold = record.status.hold().map(|hold| {
        let captured_minor = match hold.state {
            HoldState::Capturing { amount_minor, .. }
            | HoldState::Captured { amount_minor, .. } => Some(amount_minor),
            _ => None,
        };
        let source = partition_of(&record.transfer.from, partitions);
        pb::HoldInfo {
            expires_at: Some(timestamp_of_ms(hold.expires_at_ms)),
            captured_amount: captured_minor.map_or_else(String::new, |amount_minor| {
                ledger::format_minor(i128::from(amount_minor), record.transfer.currency)
            }),
            resolved_at: hold_step_meta(record).map_or_else(String::new, |meta| {
                proto::token::format(&[(source, meta.index)])
            }),
        }
    });
    let transfer = &record.transfer;
    pb::Transfer {
        transaction_id: transfer.transaction_id.hyphenated().to_string(),
        from_account: transfer.from.clone(),
        to_account: transfer.to.clone(),
        amount: ledger::format_minor(transfer.amount_minor as i128, transfer.currency),
        currency: transfer.currency.code().to_owned(),
        status: status as i32,
        reject_reason,
        committed_at_unix_ms: record.meta.timestamp_ms,
        consistency_token: proto::token::format(&transfer_positions(record, partitions)),
        hold,
        reference,
        metadata,
        legs: Vec::new(),
        rejected_leg: None,
    }
}

/// Milliseconds since the Unix epoch as a `google.protobuf.Timestamp`.
fn timestamp_of_ms(ms: u64) -> prost_types::Timestamp {
    prost_types::Timestamp {
        seconds: i64::try_from(ms / 1_000).unwrap_or(i64::MAX),
        nanos: ((ms % 1_000) * 1_000_000) as i32,
    }
}

#[tonic::async_trait]
impl WalletService for Api {
    #[tracing::instrument(level = "debug", skip_all, fields(account_id = %request.get_ref().account_id))]
    async fn open_account(
        &self,
        request: Request<OpenAccountRequest>,
    ) -> Result<Response<OpenAccountResponse>, Status> {
        let (hop, caller) = (Hop::of(request.metadata()), caller_of(&request));
        let account = self
            .open_account_edge(&hop, caller.as_ref(), request.into_inner())
            .await?;
        Ok(Response::new(OpenAccountResponse {
            account: Some(account),
        }))
    }

    #[tracing::instrument(level = "debug", skip_all, fields(transaction_id = %request.get_ref().transaction_id))]
    async fn transfer_legs(
        &self,
        request: Request<pb::TransferLegsRequest>,
    ) -> Result<Response<TransferResponse>, Status> {
        let (hop, caller) = (Hop::of(request.metadata()), caller_of(&request));
        let response = self
            .transfer_legs_edge(&hop, caller.as_ref(), request.into_inner())
            .await?;
        Ok(Response::new(response))
    }

    #[tracing::instrument(level = "debug", skip_all, fields(transaction_id = %request.get_ref().transaction_id))]
    async fn transfer(
        &self,
        request: Request<TransferRequest>,
    ) -> Result<Response<TransferResponse>, Status> {
        let (hop, caller) = (Hop::of(request.metadata()), caller_of(&request));
        let response = self
            .transfer_edge(&hop, caller.as_ref(), request.into_inner())
            .await?;
        Ok(Response::new(response))
    }

    type SubmitTransfersStream = ReceiverStream<Result<TransferResult, Status>>;

    async fn submit_transfers(
        &self,
        request: Request<Streaming<TransferRequest>>,
    ) -> Result<Response<Self::SubmitTransfersStream>, Status> {
        // Every transfer of the stream is authorized (or forwarded) on its own.
        let hop = Arc::new(Hop::of(request.metadata()));
        let caller = caller_of(&request).map(Arc::new);
        let api = self.clone();
        Ok(Response::new(serve_items(
            request.into_inner(),
            move |request| {
                api.clone()
                    .transfer_result(hop.clone(), caller.clone(), request)
            },
        )))
    }

    async fn transfer_batch(
        &self,
        request: Request<pb::TransferBatchRequest>,
    ) -> Result<Response<pb::TransferBatchResponse>, Status> {
        // Every transfer of the batch is authorized (or forwarded) on its own, and decided on
        // its own: the items go to the store together, so they share its rounds.
        let hop = Arc::new(Hop::of(request.metadata()));
        let caller = caller_of(&request).map(Arc::new);
        let transfers = request.into_inner().transfers;
        if transfers.is_empty() || transfers.len() > proto::TRANSFER_BATCH_MAX {
            return Err(ApiError::invalid(
                "transfers",
                "INVALID_BATCH_SIZE",
                format!(
                    "a batch carries 1 to {} transfers, this one {}",
                    proto::TRANSFER_BATCH_MAX,
                    transfers.len()
                ),
            )
            .into());
        }
        let results = futures::future::join_all(transfers.into_iter().map(|request| {
            self.clone()
                .transfer_result(hop.clone(), caller.clone(), request)
        }))
        .await;
        Ok(Response::new(pb::TransferBatchResponse { results }))
    }

    type OpenAccountsStream = ReceiverStream<Result<pb::OpenAccountResult, Status>>;

    async fn open_accounts(
        &self,
        request: Request<Streaming<OpenAccountRequest>>,
    ) -> Result<Response<Self::OpenAccountsStream>, Status> {
        // Every account of the stream is checked (or forwarded) on its own.
        let hop = Arc::new(Hop::of(request.metadata()));
        let caller = caller_of(&request).map(Arc::new);
        let api = self.clone();
        Ok(Response::new(serve_items(
            request.into_inner(),
            move |request| {
                let (api, hop, caller) = (api.clone(), hop.clone(), caller.clone());
                async move {
                    let account_id = request.account_id.clone();
                    match api
                        .open_account_edge(&hop, caller.as_deref(), request)
                        .await
                    {
                        Ok(account) => pb::OpenAccountResult {
                            account_id,
                            status: "success".into(),
                            account: Some(account),
                            error: None,
                        },
                        Err(error) => {
                            let (status, error) = item_error(error);
                            pb::OpenAccountResult {
                                account_id,
                                status: status.into(),
                                account: None,
                                error: Some(error),
                            }
                        }
                    }
                }
            },
        )))
    }

    #[tracing::instrument(level = "debug", skip_all, fields(transaction_id = %request.get_ref().transaction_id))]
    async fn authorize_transfer(
        &self,
        request: Request<pb::AuthorizeTransferRequest>,
    ) -> Result<Response<pb::HoldResponse>, Status> {
        let (hop, caller) = (Hop::of(request.metadata()), caller_of(&request));
        let step = HoldStep::Authorize(request.into_inner());
        Ok(Response::new(
            self.hold_edge(&hop, caller.as_ref(), step).await?,
        ))
    }

    #[tracing::instrument(level = "debug", skip_all, fields(transaction_id = %request.get_ref().transaction_id))]
    async fn capture_transfer(
        &self,
        request: Request<pb::CaptureTransferRequest>,
    ) -> Result<Response<pb::HoldResponse>, Status> {
        let (hop, caller) = (Hop::of(request.metadata()), caller_of(&request));
        let step = HoldStep::Capture(request.into_inner());
        Ok(Response::new(
            self.hold_edge(&hop, caller.as_ref(), step).await?,
        ))
    }

    #[tracing::instrument(level = "debug", skip_all, fields(transaction_id = %request.get_ref().transaction_id))]
    async fn void_transfer(
        &self,
        request: Request<pb::VoidTransferRequest>,
    ) -> Result<Response<pb::HoldResponse>, Status> {
        let (hop, caller) = (Hop::of(request.metadata()), caller_of(&request));
        let step = HoldStep::Void(request.into_inner());
        Ok(Response::new(
            self.hold_edge(&hop, caller.as_ref(), step).await?,
        ))
    }

    async fn freeze_account(
        &self,
        request: Request<pb::FreezeAccountRequest>,
    ) -> Result<Response<pb::FreezeAccountResponse>, Status> {
        let (hop, caller) = (Hop::of(request.metadata()), caller_of(&request));
        let step = AccountStep::Freeze(request.into_inner());
        let account = self.account_step_edge(&hop, caller.as_ref(), step).await?;
        Ok(Response::new(pb::FreezeAccountResponse {
            account: Some(account),
        }))
    }

    async fn unfreeze_account(
        &self,
        request: Request<pb::UnfreezeAccountRequest>,
    ) -> Result<Response<pb::UnfreezeAccountResponse>, Status> {
        let (hop, caller) = (Hop::of(request.metadata()), caller_of(&request));
        let step = AccountStep::Unfreeze(request.into_inner());
        let account = self.account_step_edge(&hop, caller.as_ref(), step).await?;
        Ok(Response::new(pb::UnfreezeAccountResponse {
            account: Some(account),
        }))
    }

    async fn close_account(
        &self,
        request: Request<pb::CloseAccountRequest>,
    ) -> Result<Response<pb::CloseAccountResponse>, Status> {
        let (hop, caller) = (Hop::of(request.metadata()), caller_of(&request));
        let step = AccountStep::Close(request.into_inner());
        let account = self.account_step_edge(&hop, caller.as_ref(), step).await?;
        Ok(Response::new(pb::CloseAccountResponse {
            account: Some(account),
        }))
    }

    async fn set_overdraft_limit(
        &self,
        request: Request<pb::SetOverdraftLimitRequest>,
    ) -> Result<Response<pb::SetOverdraftLimitResponse>, Status> {
        let (hop, caller) = (Hop::of(request.metadata()), caller_of(&request));
        let step = AccountStep::SetOverdraftLimit(request.into_inner());
        let account = self.account_step_edge(&hop, caller.as_ref(), step).await?;
        Ok(Response::new(pb::SetOverdraftLimitResponse {
            account: Some(account),
        }))
    }

    async fn get_account(
        &self,
        request: Request<GetAccountRequest>,
    ) -> Result<Response<GetAccountResponse>, Status> {
        let (hop, caller) = (Hop::of(request.metadata()), caller_of(&request));
        let request = request.into_inner();
        ledger::validate_account_id(&request.account_id)
            .map_err(|error| ApiError::from_id("account_id", &error))?;
        security::check_account(caller.as_ref(), "account_id", &request.account_id)?;
        // A partition placed elsewhere is read by its leader, as a write would be decided
        // there (one endpoint is enough); a client that routes by itself hears NOT_LEADER.
        let partition = partition_of(&request.account_id, self.shared.partitions);
        if !self.shared.store.hosts(partition)
            && let Some(leader) = self.forward_to(&hop, partition)
        {
            let forwarded = self.shared.forwarder.get_account(leader, &hop, request);
            return Ok(Response::new(forwarded.await?));
        }
        let answer = self
            .read(
                &request.account_id,
                Query::Account(request.account_id.clone()),
            )
            .await?;
        match answer.answer {
            QueryAnswer::Account(Some((account, held_minor))) => {
                let annotations =
                    self.account_annotations(answer.partition, &account.account_id)?;
                Ok(Response::new(GetAccountResponse {
                    account: Some(account_with_holds_to_pb(
                        &account,
                        held_minor,
                        annotations.as_ref(),
                    )),
                    position: proto::token::position(answer.partition, answer.index),
                }))
            }
            QueryAnswer::Account(None) => Err(ApiError::not_found(
                "account_id",
                "ACCOUNT_NOT_FOUND",
                format!("account {:?} does not exist", request.account_id),
            )
            .into()),
            QueryAnswer::Transfer(_) | QueryAnswer::Record(_) => {
                unreachable!("an account query has an account answer")
            }
        }
    }

    #[tracing::instrument(level = "debug", skip_all, fields(transaction_id = %request.get_ref().transaction_id))]
    async fn get_transfer(
        &self,
        request: Request<GetTransferRequest>,
    ) -> Result<Response<GetTransferResponse>, Status> {
        let request = request.into_inner();
        let transaction_id = ledger::parse_transaction_id(&request.transaction_id)
            .map_err(|error| ApiError::from_id("transaction_id", &error))?;
        // A transfer is recorded by its source account's partition, which the id alone does
        // not name: ask every partition (one ReadIndex round each, concurrently).
        let reads = (0..self.shared.partitions).map(|partition| async move {
            (partition, self.record(partition, transaction_id).await)
        });
        let mut records = Vec::new();
        let partitions = self.shared.partitions;
        for (partition, answer) in futures::future::join_all(reads).await {
            match answer? {
                // A multi-leg transfer across partitions is recorded by every part; its home
                // (the first leg's `from`'s partition, which recorded it first) answers.
                Some(ledger::Record::Legs(record))
                    if partition_of(&record.command.legs[0].from, partitions) != partition => {}
                Some(record) => records.push((partition, record)),
                None => {}
            }
        }
        // The answer for the id, ranked as `ledger::transfer_answer_rank` says (a multi-leg
        // transfer as a transfer not refused as reused); a source keeps its records, so the
        // partition read is the record's source.
        let answer = records.into_iter().min_by_key(|(partition, record)| {
            let reused = matches!(record, ledger::Record::Transfer(transfer)
                if transfer.status == TransferStatus::Rejected(RejectReason::TransactionIdReused));
            ledger::transfer_answer_rank(*partition, reused)
        });
        match answer.and_then(|(partition, record)| match record {
            ledger::Record::Transfer(record) => Some(transfer_to_pb(&record, partitions)),
            ledger::Record::Legs(record) => Some(legs_to_pb(&record, partition)),
            ledger::Record::Credit(_) => None,
        }) {
            Some(transfer) => Ok(Response::new(GetTransferResponse {
                transfer: Some(transfer),
            })),
            None => Err(ApiError::not_found(
                "transaction_id",
                "TRANSFER_NOT_FOUND",
                format!("no transfer with transaction_id {transaction_id}"),
            )
            .into()),
        }
    }
}

#[tonic::async_trait]
impl ClusterService for Api {
    async fn get_cluster_status(
        &self,
        request: Request<GetClusterStatusRequest>,
    ) -> Result<Response<GetClusterStatusResponse>, Status> {
        // The digest hashes every partition's whole state on the store thread: operators only
        // (a read node's replicate token gets the status without it).
        if request.get_ref().include_state_digest {
            security::require_scope(
                caller_of(&request).as_ref(),
                Scope::Admin,
                "include_state_digest",
            )?;
        }
        let partitions = self
            .shared
            .store
            .status(request.get_ref().include_state_digest)
            .await
            .map_err(|error| self.store_error(error))?;
        Ok(Response::new(GetClusterStatusResponse {
            node_id: self.node_id,
            nodes: self
                .shared
                .peers
                .iter()
                .map(|(&node_id, address)| pb::Node {
                    node_id,
                    address: address.clone(),
                })
                .collect(),
            partitions: partitions
                .into_iter()
                .map(|status| pb::PartitionStatus {
                    partition: status.partition,
                    leader_id: status.leader_id,
                    term: status.term,
                    commit_index: status.commit_index,
                    applied_index: status.applied_index,
                    role: status.role.into(),
                    state_digest: status
                        .state_digest
                        .map(|digest| digest.iter().map(|byte| format!("{byte:02x}")).collect())
                        .unwrap_or_default(),
                    in_flight_transfers: status.in_flight_transfers,
                    snapshot_index: status.snapshot_index,
                    log_first_index: status.log_first_index,
                    replica_ids: status.members.voting(),
                    preferred_leader_id: status.preferred_leader_id,
                    learner_ids: status.members.learners,
                })
                .collect(),
        }))
    }

    /// Drives one replica move on the partition's leader (`store::StoreHandle::move_step`,
    /// one step per `MOVE_STEP_INTERVAL`) until it is done or `MOVE_CALL_DEADLINE` passes.
    async fn move_replica(
        &self,
        request: Request<pb::MoveReplicaRequest>,
    ) -> Result<Response<pb::MoveReplicaResponse>, Status> {
        security::require_scope(caller_of(&request).as_ref(), Scope::Admin, "MoveReplica")?;
        let pb::MoveReplicaRequest {
            partition,
            from_node_id: from,
            to_node_id: to,
        } = request.into_inner();
        if partition >= self.shared.store.partitions() {
            return Err(ApiError::invalid(
                "partition",
                "INVALID_PARTITION",
                format!("unknown partition {partition}"),
            )
            .into());
        }
        for (field, node) in [("from_node_id", from), ("to_node_id", to)] {
            if !self.shared.peers.contains_key(&node) {
                return Err(Status::invalid_argument(format!(
                    "{field}: {node} is not a write node of this cluster (nodes {:?})",
                    self.shared.peers.keys().collect::<Vec<_>>()
                )));
            }
        }
        if from == to {
            return Err(Status::invalid_argument(
                "from_node_id and to_node_id are the same node",
            ));
        }
        // Every replica applies the membership changes. A peer not heard from since this
        // node started (one restarting) is a reason to call again, not a refusal.
        if self.shared.levels.verdict(Feature::ReplicaMoves, None) == Verdict::Unheard {
            return Err(Status::unavailable(
                "a write node has not been heard from since this one started; call again",
            ));
        }
        self.require(Some(Feature::ReplicaMoves), None).await?;
        let deadline = tokio::time::Instant::now() + limits::MOVE_CALL_DEADLINE;
        loop {
            match self.shared.store.move_step(partition, from, to).await {
                Ok(progress) if progress.step == placement::Step::Done => {
                    return Ok(Response::new(pb::MoveReplicaResponse {
                        replica_ids: progress.members.voting(),
                    }));
                }
                Ok(_) => {}
                Err(crate::store::MoveRefused::Store(error)) => {
                    return Err(self.store_error(error).into());
                }
                Err(crate::store::MoveRefused::Plan(error)) => {
                    return Err(Status::failed_precondition(format!(
                        "partition {partition}: moving the replica of node {from} to node {to}: \
                         {error}"
                    )));
                }
            }
            if tokio::time::Instant::now() >= deadline {
                return Err(Status::deadline_exceeded(format!(
                    "partition {partition}: the move of node {from}'s replica to node {to} is \
                     still under way; call again to follow it"
                )));
            }
            tokio::time::sleep(limits::MOVE_STEP_INTERVAL).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// partition_of(["alice", "bob", "issuer", "acct-000", "acct-001"], 8), computed once and
    /// frozen: the map from accounts to partitions must never change.
    const PINNED_PARTITIONS: [u32; 5] = [1, 4, 3, 3, 7];

    #[test]
    fn partition_hash_is_stable() {
        // Pinned values: if this changes, accounts would move between partitions.
        let pinned: Vec<u32> = ["alice", "bob", "issuer", "acct-000", "acct-001"]
            .iter()
            .map(|account| partition_of(account, 8))
            .collect();
        assert_eq!(pinned, PINNED_PARTITIONS);
        assert_eq!(partition_of("alice", 1), 0);
        let spread: std::collections::BTreeSet<u32> = (0..64)
            .map(|i| partition_of(&format!("account-{i}"), 8))
            .collect();
        assert_eq!(spread.len(), 8, "64 accounts cover all 8 partitions");
    }

    fn request(amount: &str, currency: &str) -> TransferRequest {
        TransferRequest {
            transaction_id: "6f1c1a3e-8a51-4c4e-9d7a-0a8c7d1f2b3c".into(),
            from_account: "alice".into(),
            to_account: "bob".into(),
            amount: amount.into(),
            currency: currency.into(),
            ..Default::default()
        }
    }

    #[test]
    fn validation_reports_field_and_reason() {
        let check = |request: TransferRequest, field: &str, reason: &str| {
            let error = validate_transfer(&request).expect_err("invalid");
            assert_eq!(
                (error.code, error.field, error.reason),
                (Code::InvalidArgument, Some(field), reason)
            );
        };
        check(request("1.005", "USD"), "amount", "INVALID_AMOUNT");
        check(request("1", "ZZZ"), "currency", "UNKNOWN_CURRENCY");
        check(
            TransferRequest {
                to_account: "alice".into(),
                ..request("1", "USD")
            },
            "to_account",
            "SAME_ACCOUNT",
        );
        check(
            TransferRequest {
                transaction_id: "42".into(),
                ..request("1", "USD")
            },
            "transaction_id",
            "INVALID_TRANSACTION_ID",
        );
        check(
            TransferRequest {
                from_account: String::new(),
                ..request("1", "USD")
            },
            "from_account",
            "INVALID_ACCOUNT_ID",
        );
        assert!(validate_transfer(&request("1.00", "USD")).is_ok());
    }
}
