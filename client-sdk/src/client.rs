//! The client proper: channels to every write node, the leader cache, and the one retry
//! loop every call goes through.
//!
//! Why one file of this length: every call goes through the one retry loop and leader cache
//! here; splitting the calls from the loop would spread one piece of state over two files.

use std::collections::HashMap;
use std::future::Future;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};

use proto::v1::cluster_service_client::ClusterServiceClient;
use proto::v1::wallet_service_client::WalletServiceClient;
use proto::v1::{
    Account, AuthorizeTransferRequest, CaptureTransferRequest, GetAccountRequest,
    GetAccountResponse, GetClusterStatusRequest, GetClusterStatusResponse, GetTransferRequest,
    HoldResponse, OpenAccountRequest, TransferRequest, TransferResponse, VoidTransferRequest,
};
use tokio::time::Instant;
use tonic::Status;
use tonic::transport::Endpoint;
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;
use uuid::Uuid;

use crate::auth::{Conn, Credentials};
use crate::backoff;
use crate::config::{ClientConfig, normalize_endpoint_for};
use crate::error::{Action, Classified, Error, classify};
use crate::pipeline::{Counters, Pipe, PipelineStats, definite};
use crate::sync::lock;

/// The partition every call is routed to while the ledger has a single Raft group. The
/// leader cache is keyed by partition already, so routing by account can come later.
pub const DEFAULT_PARTITION: u32 = 0;

/// The gRPC health service name the write nodes report readiness under.
pub const WALLET_SERVICE_NAME: &str = "wallet.v1.WalletService";

/// How many nodes learnt from leader hints (addresses not in the configuration) the client
/// keeps channels to; beyond that, channels for such hints are made per use and dropped.
pub const DISCOVERED_ENDPOINTS_MAX: usize = 16;

/// A transfer to submit: the fields of a `TransferRequest`, with the idempotency key typed.
/// `reference` and `metadata` are optional (`..Default::default()`).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Transfer {
    /// The idempotency key. Keep it until the outcome is known: resubmitting the same
    /// transfer with the same id returns the original outcome instead of paying twice.
    pub transaction_id: Uuid,
    /// The account debited.
    pub from: String,
    /// The account credited.
    pub to: String,
    /// Decimal amount in the currency's major unit, e.g. `"12.34"`.
    pub amount: String,
    /// ISO 4217 code, which must match both accounts' currency.
    pub currency: String,
    /// Your own reference for the transfer (an order or invoice number); empty for none. At
    /// most 128 bytes without control characters (`INVALID_REFERENCE`). Stored and returned
    /// with the transfer; a retry must carry the same.
    pub reference: String,
    /// Key/value metadata: at most 16 entries, keys of 1 to 64 characters from
    /// `[A-Za-z0-9_.:-]`, values of at most 512 bytes without control characters, 4096 bytes
    /// in all (`INVALID_METADATA`). Stored and returned with the transfer; a retry must
    /// carry the same.
    pub metadata: std::collections::BTreeMap<String, String>,
}

impl From<&Transfer> for TransferRequest {
    fn from(t: &Transfer) -> Self {
        Self {
            transaction_id: t.transaction_id.hyphenated().to_string(),
            from_account: t.from.clone(),
            to_account: t.to.clone(),
            amount: t.amount.clone(),
            currency: t.currency.clone(),
            reference: t.reference.clone(),
            metadata: t.metadata.clone(),
        }
    }
}

/// A hold to authorize ([`WalletClient::authorize_transfer`]): a transfer's fields plus how
/// long the hold lasts. `transaction_id` names the hold in the capture and the void.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Hold {
    /// The hold's idempotency key, as a transfer's.
    pub transaction_id: Uuid,
    /// The account the amount is reserved on (and later debited).
    pub from: String,
    /// The account a capture credits.
    pub to: String,
    /// Decimal amount in the currency's major unit, e.g. `"12.34"`.
    pub amount: String,
    /// ISO 4217 code, which must match both accounts' currency.
    pub currency: String,
    /// How long the hold lasts from its authorization: whole milliseconds, 1 ms to 30 days
    /// (otherwise the node refuses it, `HOLD_TIMEOUT_OUT_OF_RANGE`).
    pub timeout: std::time::Duration,
    /// As [`Transfer::reference`].
    pub reference: String,
    /// As [`Transfer::metadata`].
    pub metadata: std::collections::BTreeMap<String, String>,
}

impl TryFrom<&Hold> for AuthorizeTransferRequest {
    type Error = Error;

    fn try_from(h: &Hold) -> Result<Self, Error> {
        let timeout = h
            .timeout
            .try_into()
            .map_err(|e| Error::config(format!("hold timeout {:?}: {e}", h.timeout)))?;
        Ok(Self {
            transaction_id: h.transaction_id.hyphenated().to_string(),
            from_account: h.from.clone(),
            to_account: h.to.clone(),
            amount: h.amount.clone(),
            currency: h.currency.clone(),
            timeout: Some(timeout),
            reference: h.reference.clone(),
            metadata: h.metadata.clone(),
        })
    }
}

/// A configured node: what the user wrote (for display) and the URI connected to.
#[derive(Debug, Clone)]
struct Target {
    display: String,
    uri: String,
}

/// A handle to the ledger's write nodes. Cheap to clone; clones share channels and the
/// leader cache, so one client can serve many concurrent tasks.
#[derive(Clone)]
pub struct WalletClient {
    inner: Arc<Inner>,
}

struct Inner {
    config: ClientConfig,
    targets: Vec<Target>,
    /// Channels by URI: one per configured node, plus a bounded number learnt from hints.
    channels: Mutex<HashMap<String, Conn>>,
    /// The token, attached to every call.
    credentials: Credentials,
    /// Set once `GetClusterStatus` is refused for lack of a scope: then routing relies on
    /// leader hints alone, instead of asking again on every call.
    discovery_refused: std::sync::atomic::AtomicBool,
    /// The last known leader URI of each partition.
    leaders: Mutex<HashMap<u32, String>>,
    /// The cluster's partition count, 0 until learnt.
    partitions: AtomicU32,
    /// Per node, the `SubmitTransfers` stream `transfer()` calls share.
    pipes: Mutex<HashMap<String, Arc<Pipe>>>,
    pipelined: Counters,
}

/// Where a call goes: the partition whose leader should get it, and whether it is a write
/// (only a successful write proves the target leads; reads are served by followers too).
#[derive(Clone, Copy, Debug)]
struct Route {
    partition: u32,
    write: bool,
}

impl Route {
    fn write(partition: u32) -> Route {
        Route {
            partition,
            write: true,
        }
    }

    fn read(partition: u32) -> Route {
        Route {
            partition,
            write: false,
        }
    }
}

/// Most transfers one [`WalletClient::submit_transfers`] call takes (the server keeps at most
/// this many of one stream in flight, too).
pub const SUBMIT_BATCH_MAX: usize = 4_096;

/// Bound on one partition-count discovery attempt.
const DISCOVERY_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(1);

impl std::fmt::Debug for WalletClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WalletClient")
            .field("endpoints", &self.inner.config.endpoints)
            .field("leader", &self.leader(DEFAULT_PARTITION))
            .finish()
    }
}

impl WalletClient {
    /// Validates `config` and prepares a lazily connected channel per endpoint. No network
    /// traffic happens here, so this succeeds while nodes are still starting.
    pub async fn connect(config: ClientConfig) -> Result<Self, Error> {
        config.validate()?;
        let mut targets: Vec<Target> = Vec::with_capacity(config.endpoints.len());
        for endpoint in &config.endpoints {
            let uri = normalize_endpoint_for(endpoint, config.tls.is_some())?;
            if !targets.iter().any(|target| target.uri == uri) {
                targets.push(Target {
                    display: endpoint.trim().to_owned(),
                    uri,
                });
            }
        }
        // Given every write node, the client routes by leader hints (a hop fewer); given one
        // address (a Service, a port-forward, a load balancer), the nodes forward.
        let credentials =
            Credentials::new(config.token.as_deref())?.routing_itself(targets.len() > 1);
        let mut channels = HashMap::new();
        for target in &targets {
            channels.insert(
                target.uri.clone(),
                make_channel(&target.uri, &config, &credentials)?,
            );
        }
        Ok(Self {
            inner: Arc::new(Inner {
                config,
                targets,
                channels: Mutex::new(channels),
                credentials,
                discovery_refused: std::sync::atomic::AtomicBool::new(false),
                leaders: Mutex::new(HashMap::new()),
                partitions: AtomicU32::new(0),
                pipes: Mutex::new(HashMap::new()),
                pipelined: Counters::default(),
            }),
        })
    }

    /// The configuration this client was built with.
    pub fn config(&self) -> &ClientConfig {
        &self.inner.config
    }

    /// The configured endpoints as given (duplicates removed), in routing order.
    pub fn endpoints(&self) -> Vec<String> {
        self.inner
            .targets
            .iter()
            .map(|t| t.display.clone())
            .collect()
    }

    /// The URI of the node last seen leading `partition`, if any: useful for diagnostics.
    pub fn leader(&self, partition: u32) -> Option<String> {
        lock(&self.inner.leaders).get(&partition).cloned()
    }

    /// Opens an account. Opening an existing account with the same parameters succeeds and
    /// returns it unchanged; with different parameters it is rejected with ALREADY_EXISTS.
    pub async fn open_account(
        &self,
        account_id: &str,
        currency: &str,
        allow_negative_balance: bool,
    ) -> Result<Account, Error> {
        self.open_account_with(OpenAccountRequest {
            account_id: account_id.to_owned(),
            currency: currency.to_owned(),
            allow_negative_balance,
            ..Default::default()
        })
        .await
    }

    /// Opens an account given the whole request: also its `reference` and `metadata`
    /// (optional; the limits of a transfer's, `INVALID_REFERENCE` / `INVALID_METADATA`), which
    /// are set once and returned by every read of the account. Opening it again succeeds only
    /// with the same parameters, these included (else ALREADY_EXISTS,
    /// `ACCOUNT_EXISTS_WITH_OTHER_PARAMETERS`).
    pub async fn open_account_with(&self, request: OpenAccountRequest) -> Result<Account, Error> {
        let partition = self.partition_of(&request.account_id).await;
        let response = self
            .call(
                "OpenAccount",
                Route::write(partition),
                request,
                |channel, request| async move {
                    WalletServiceClient::new(channel)
                        .open_account(request)
                        .await
                },
            )
            .await?;
        response
            .account
            .ok_or_else(|| Error::malformed("OpenAccount answered without an account"))
    }

    /// Moves many transfers at once over pipelined `SubmitTransfers` streams, one per source
    /// partition, to the partition's leader. Answers in the order of `transfers`, each
    /// exactly as [`WalletClient::transfer`] would (rejections are definite errors). A
    /// transfer the stream leaves without a definite outcome (the leader moved, the stream
    /// broke) is retried through `transfer` with the same `transaction_id`, so none is
    /// applied twice. At most [`SUBMIT_BATCH_MAX`] transfers per call.
    pub async fn submit_transfers(
        &self,
        transfers: &[Transfer],
    ) -> Result<Vec<Result<TransferResponse, Error>>, Error> {
        if transfers.len() > SUBMIT_BATCH_MAX {
            return Err(Error::config(format!(
                "submit_transfers takes at most {SUBMIT_BATCH_MAX} transfers, got {}",
                transfers.len()
            )));
        }
        let mut by_partition: HashMap<u32, Vec<usize>> = HashMap::new();
        for (position, transfer) in transfers.iter().enumerate() {
            let partition = self.partition_of(&transfer.from).await;
            by_partition.entry(partition).or_default().push(position);
        }
        let streams = by_partition
            .into_iter()
            .map(|(partition, positions)| async move {
                let outcomes = self.submit_stream(partition, transfers, &positions).await;
                positions.into_iter().zip(outcomes).collect::<Vec<_>>()
            });
        let mut results: Vec<Option<Result<TransferResponse, Error>>> =
            (0..transfers.len()).map(|_| None).collect();
        for (position, outcome) in futures::future::join_all(streams)
            .await
            .into_iter()
            .flatten()
        {
            results[position] = Some(match outcome {
                Some(outcome) => outcome,
                None => self.transfer(&transfers[position]).await,
            });
        }
        Ok(results
            .into_iter()
            .map(|result| result.expect("every position answered"))
            .collect())
    }

    /// One stream to the leader of `partition`: the definite outcome of each transfer at
    /// `positions`, or `None` where the stream gave none (the caller retries those).
    async fn submit_stream(
        &self,
        partition: u32,
        transfers: &[Transfer],
        positions: &[usize],
    ) -> Vec<Option<Result<TransferResponse, Error>>> {
        let mut outcomes: Vec<Option<Result<TransferResponse, Error>>> =
            positions.iter().map(|_| None).collect();
        let target = self
            .leader(partition)
            .unwrap_or_else(|| self.inner.targets[0].uri.clone());
        let Ok(channel) = self.channel(&target) else {
            return outcomes;
        };
        let index_of: HashMap<String, usize> = positions
            .iter()
            .enumerate()
            .map(|(slot, &position)| (transfers[position].transaction_id.to_string(), slot))
            .collect();
        let requests: Vec<TransferRequest> = positions
            .iter()
            .map(|&position| TransferRequest::from(&transfers[position]))
            .collect();
        let mut request = tonic::Request::new(tokio_stream::iter(requests));
        request.set_timeout(self.inner.config.total_deadline);
        let Ok(response) = WalletServiceClient::new(channel)
            .submit_transfers(request)
            .await
        else {
            return outcomes;
        };
        let mut results = response.into_inner();
        let mut committed_here = false;
        while let Ok(Some(result)) = results.message().await {
            let Some(&slot) = index_of.get(&result.transaction_id) else {
                continue;
            };
            let outcome = definite(result);
            committed_here |= matches!(outcome, Some(Ok(_)));
            outcomes[slot] = outcome;
        }
        if committed_here {
            self.set_leader(partition, &target);
        }
        outcomes
    }

    /// Moves money. Answers once the outcome is decided and durable (across partitions: once
    /// the debit and the credit are committed; the proto's `Transfer` says what a success
    /// then guarantees); every retry (automatic or by the
    /// caller) reuses `transfer.transaction_id`, so the transfer is applied at most once.
    ///
    /// # Pipelining
    ///
    /// Calls go down one long-lived `SubmitTransfers` stream per node, shared by every
    /// concurrent call on this client and its clones (unless
    /// [`ClientConfig::pipeline_transfers`] is off): a node then takes many calls' transfers
    /// in one raft entry, for the cost of one stream. Each call still has its own outcome,
    /// error and deadline, and waits for nobody else's answer; nothing waits to be gathered.
    /// A call the stream leaves without a definite outcome within `call_timeout` (the node
    /// does not lead the partition, the stream broke, its queue of [`PIPE_QUEUE_MAX`] is
    /// full) goes on alone through the unary `Transfer` path, with the same id, within what
    /// is left of its `total_deadline`; so does a call whose id another, different transfer
    /// has in flight on the stream (results name the id alone).
    ///
    /// [`PIPE_QUEUE_MAX`]: crate::PIPE_QUEUE_MAX
    pub async fn transfer(&self, transfer: &Transfer) -> Result<TransferResponse, Error> {
        let deadline = Instant::now() + self.inner.config.total_deadline;
        let request = TransferRequest::from(transfer);
        let route = Route::write(self.partition_of(&transfer.from).await);
        if self.inner.config.pipeline_transfers
            && let Some(outcome) = self
                .transfer_pipelined(route.partition, request.clone(), deadline)
                .await
        {
            return outcome;
        }
        self.call_until(
            "Transfer",
            route,
            request,
            deadline,
            |channel, request| async move {
                WalletServiceClient::new(channel).transfer(request).await
            },
        )
        .await
    }

    /// Moves money along every leg of `request` or along none (`TransferLegs`), exactly once
    /// per `transaction_id`: a retry with the same legs answers the original (`replayed`).
    /// Routed to the leader of the first leg's `from_account` (the set's home partition) and
    /// retried like [`WalletClient::transfer`]'s unary path, always with the same
    /// `transaction_id`. A refusal names its leg in [`Error::metadata`]`("leg")`.
    ///
    /// A set may span partitions. It is applied all or none, step by step: every partition's
    /// part is checked and its debits taken first, then the home partition decides, then every
    /// part is resolved; the answer comes once every part is. A refusal by any part refuses
    /// the whole set with that part's reason and leg, and nothing moves anywhere. The
    /// `consistency_token` names a position in every partition the set touches (a retry's may
    /// name other ones than the first answer's). Nodes before 0.3, which did not move sets
    /// across partitions, refuse such a set as `LEGS_SPAN_PARTITIONS`.
    pub async fn transfer_legs(
        &self,
        request: proto::v1::TransferLegsRequest,
    ) -> Result<TransferResponse, Error> {
        let first_from = request
            .legs
            .first()
            .map_or("", |leg| leg.from_account.as_str());
        let route = Route::write(self.partition_of(first_from).await);
        self.call(
            "TransferLegs",
            route,
            request,
            |channel, request| async move {
                WalletServiceClient::new(channel)
                    .transfer_legs(request)
                    .await
            },
        )
        .await
    }

    /// Reserves `hold.amount` on `hold.from` for `hold.timeout` (`AuthorizeTransfer`): the
    /// account's available amount drops, its balance does not, until the hold is captured
    /// ([`WalletClient::capture_transfer`]), voided ([`WalletClient::void_transfer`]) or
    /// expires. Answers the hold (`transfer`, status PENDING, `hold.expires_at`) and
    /// `replayed`. Routed to the leader of `hold.from`'s partition and retried like
    /// [`WalletClient::transfer`]'s unary path, always with the same `transaction_id` (the
    /// same hold again answers the original).
    pub async fn authorize_transfer(&self, hold: &Hold) -> Result<HoldResponse, Error> {
        let request = AuthorizeTransferRequest::try_from(hold)?;
        let route = Route::write(self.partition_of(&hold.from).await);
        self.call(
            "AuthorizeTransfer",
            route,
            request,
            |channel, request| async move {
                WalletServiceClient::new(channel)
                    .authorize_transfer(request)
                    .await
            },
        )
        .await
    }

    /// Moves `amount` (at most the held amount; `None`: all of it) of the hold
    /// `transaction_id` of account `from` to its target and releases the rest
    /// (`CaptureTransfer`), exactly once: a retry with the same amount answers the capture
    /// (`replayed`). Refusals are definite errors with the reason (`HOLD_NOT_FOUND`,
    /// `CAPTURE_EXCEEDS_HOLD`, `HOLD_ALREADY_CAPTURED`, `HOLD_ALREADY_VOIDED`, `HOLD_EXPIRED`, ...).
    pub async fn capture_transfer(
        &self,
        transaction_id: Uuid,
        from: &str,
        amount: Option<&str>,
    ) -> Result<HoldResponse, Error> {
        let request = capture_request(transaction_id, from, amount);
        let route = Route::write(self.partition_of(from).await);
        self.call(
            "CaptureTransfer",
            route,
            request,
            |channel, request| async move {
                WalletServiceClient::new(channel)
                    .capture_transfer(request)
                    .await
            },
        )
        .await
    }

    /// Releases the pending hold `transaction_id` of account `from` (`VoidTransfer`; status
    /// VOIDED); a retry answers the void (`replayed`). `HOLD_ALREADY_CAPTURED` after a
    /// capture, `HOLD_EXPIRED` after the expiry, ...
    pub async fn void_transfer(
        &self,
        transaction_id: Uuid,
        from: &str,
    ) -> Result<HoldResponse, Error> {
        let request = VoidTransferRequest {
            transaction_id: transaction_id.hyphenated().to_string(),
            from_account: from.to_owned(),
        };
        let route = Route::write(self.partition_of(from).await);
        self.call(
            "VoidTransfer",
            route,
            request,
            |channel, request| async move {
                WalletServiceClient::new(channel)
                    .void_transfer(request)
                    .await
            },
        )
        .await
    }

    /// Freezes an account (`FreezeAccount`): it neither sends nor receives until unfrozen.
    /// Idempotent: freezing a frozen account answers it unchanged. Needs the admin scope.
    pub async fn freeze_account(&self, account_id: &str) -> Result<Account, Error> {
        let request = proto::v1::FreezeAccountRequest {
            account_id: account_id.to_owned(),
        };
        let route = Route::write(self.partition_of(account_id).await);
        let response = self
            .call(
                "FreezeAccount",
                route,
                request,
                |channel, request| async move {
                    WalletServiceClient::new(channel)
                        .freeze_account(request)
                        .await
                },
            )
            .await?;
        changed_account("FreezeAccount", response.account)
    }

    /// Unfreezes an account (`UnfreezeAccount`). Idempotent.
    pub async fn unfreeze_account(&self, account_id: &str) -> Result<Account, Error> {
        let request = proto::v1::UnfreezeAccountRequest {
            account_id: account_id.to_owned(),
        };
        let route = Route::write(self.partition_of(account_id).await);
        let response = self
            .call(
                "UnfreezeAccount",
                route,
                request,
                |channel, request| async move {
                    WalletServiceClient::new(channel)
                        .unfreeze_account(request)
                        .await
                },
            )
            .await?;
        changed_account("UnfreezeAccount", response.account)
    }

    /// Closes an account for good (`CloseAccount`): only at a zero balance, with no pending
    /// hold and no cross-partition transfer of it in flight (`ACCOUNT_NOT_EMPTY`,
    /// `ACCOUNT_HAS_PENDING_HOLDS`, `ACCOUNT_HAS_TRANSFERS_IN_FLIGHT`). Idempotent.
    pub async fn close_account(&self, account_id: &str) -> Result<Account, Error> {
        let request = proto::v1::CloseAccountRequest {
            account_id: account_id.to_owned(),
        };
        let route = Route::write(self.partition_of(account_id).await);
        let response = self
            .call(
                "CloseAccount",
                route,
                request,
                |channel, request| async move {
                    WalletServiceClient::new(channel)
                        .close_account(request)
                        .await
                },
            )
            .await?;
        changed_account("CloseAccount", response.account)
    }

    /// Sets how far below zero an ordinary account may go (`SetOverdraftLimit`; a decimal
    /// string in the account's `currency`, "0" for none). Idempotent.
    pub async fn set_overdraft_limit(
        &self,
        account_id: &str,
        overdraft_limit: &str,
        currency: &str,
    ) -> Result<Account, Error> {
        let request = proto::v1::SetOverdraftLimitRequest {
            account_id: account_id.to_owned(),
            overdraft_limit: overdraft_limit.to_owned(),
            currency: currency.to_owned(),
        };
        let route = Route::write(self.partition_of(account_id).await);
        let response = self
            .call(
                "SetOverdraftLimit",
                route,
                request,
                |channel, request| async move {
                    WalletServiceClient::new(channel)
                        .set_overdraft_limit(request)
                        .await
                },
            )
            .await?;
        changed_account("SetOverdraftLimit", response.account)
    }

    /// One `TransferBatch` call of 1 to [`proto::TRANSFER_BATCH_MAX`] transfers, sent where
    /// the first transfer's source partition is led: one outcome per transfer, in order, each
    /// as [`WalletClient::transfer`] would give it (a batch is not atomic). An item the batch
    /// leaves without a definite outcome (another partition's, when this client routes by
    /// itself; the leader moved) goes on alone through `transfer` with the same id, so none
    /// is applied twice. Fails as a whole only for a batch of the wrong size or a call no node
    /// answered definitely.
    pub async fn transfer_batch(
        &self,
        transfers: &[Transfer],
    ) -> Result<Vec<Result<TransferResponse, Error>>, Error> {
        let Some(first) = transfers.first() else {
            return Err(Error::config("transfer_batch needs at least one transfer"));
        };
        if transfers.len() > proto::TRANSFER_BATCH_MAX {
            return Err(Error::config(format!(
                "transfer_batch takes at most {} transfers, got {}",
                proto::TRANSFER_BATCH_MAX,
                transfers.len()
            )));
        }
        let request = proto::v1::TransferBatchRequest {
            transfers: transfers.iter().map(TransferRequest::from).collect(),
        };
        let route = Route::write(self.partition_of(&first.from).await);
        let response = self
            .call(
                "TransferBatch",
                route,
                request,
                |channel, request| async move {
                    WalletServiceClient::new(channel)
                        .transfer_batch(request)
                        .await
                },
            )
            .await?;
        if response.results.len() != transfers.len() {
            return Err(Error::malformed(format!(
                "TransferBatch answered {} results for {} transfers",
                response.results.len(),
                transfers.len()
            )));
        }
        let mut outcomes = Vec::with_capacity(transfers.len());
        for (transfer, result) in transfers.iter().zip(response.results) {
            outcomes.push(match definite(result) {
                Some(outcome) => outcome,
                None => self.transfer(transfer).await,
            });
        }
        Ok(outcomes)
    }

    /// Opens many accounts over one `OpenAccounts` stream: one outcome per request, in order,
    /// each as [`WalletClient::open_account`] would give it. An account the stream leaves
    /// without a definite outcome goes on alone through `open_account` (opening is
    /// idempotent for identical parameters). At most [`SUBMIT_BATCH_MAX`] per call.
    pub async fn open_accounts(
        &self,
        accounts: &[OpenAccountRequest],
    ) -> Result<Vec<Result<Account, Error>>, Error> {
        if accounts.len() > SUBMIT_BATCH_MAX {
            return Err(Error::config(format!(
                "open_accounts takes at most {SUBMIT_BATCH_MAX} accounts, got {}",
                accounts.len()
            )));
        }
        let Some(first) = accounts.first() else {
            return Ok(Vec::new());
        };
        let route = Route::write(self.partition_of(&first.account_id).await);
        let results = self
            .call(
                "OpenAccounts",
                route,
                accounts.to_vec(),
                |channel, request| async move {
                    let response = WalletServiceClient::new(channel)
                        .open_accounts(request.map(tokio_stream::iter))
                        .await?;
                    let (metadata, mut stream, extensions) = response.into_parts();
                    let mut results = Vec::new();
                    while let Some(result) = stream.message().await? {
                        results.push(result);
                    }
                    Ok(tonic::Response::from_parts(metadata, results, extensions))
                },
            )
            .await?;
        // Results name their account and may come in any order: each request takes the first
        // unclaimed result for its id.
        let mut by_id: HashMap<String, Vec<proto::v1::OpenAccountResult>> = HashMap::new();
        for result in results.into_iter().rev() {
            by_id
                .entry(result.account_id.clone())
                .or_default()
                .push(result);
        }
        let mut outcomes = Vec::with_capacity(accounts.len());
        for request in accounts {
            let result = by_id.get_mut(&request.account_id).and_then(Vec::pop);
            let outcome = match result {
                Some(result) if result.status == "success" => result
                    .account
                    .ok_or_else(|| Error::malformed("OpenAccounts answered without an account")),
                Some(result) if result.status == "rejected" => {
                    Err(Error::from_item(result.error.unwrap_or_default(), false))
                }
                _ => self.open_account_with(request.clone()).await,
            };
            outcomes.push(outcome);
        }
        Ok(outcomes)
    }

    /// How many streams [`WalletClient::transfer`] opened and how many transfers went down
    /// them (shared by clones).
    pub fn pipeline_stats(&self) -> PipelineStats {
        self.inner.pipelined.stats()
    }

    /// `transfer` down the stream to the node it would go to: the definite outcome, or
    /// `None` if the stream gave none in time and the unary path must go on.
    async fn transfer_pipelined(
        &self,
        partition: u32,
        request: TransferRequest,
        deadline: Instant,
    ) -> Option<Result<TransferResponse, Error>> {
        let node = self
            .leader(partition)
            .unwrap_or_else(|| self.inner.targets[0].uri.clone());
        let pipe = self.pipe(&node)?;
        let id = request.transaction_id.clone();
        let answer = pipe.send(partition, request)?;
        self.inner.pipelined.transfer_sent();
        let wait_until = deadline.min(Instant::now() + self.inner.config.call_timeout);
        let outcome = tokio::time::timeout_at(wait_until, answer).await;
        if !matches!(outcome, Ok(Ok(Some(_)))) {
            pipe.forget(&id);
        }
        outcome.ok()?.ok()?
    }

    /// The open stream to `node`, or a new one (its reader task runs until the stream ends).
    fn pipe(&self, node: &str) -> Option<Arc<Pipe>> {
        let mut pipes = lock(&self.inner.pipes);
        if let Some(pipe) = pipes.get(node).filter(|pipe| !pipe.is_closed()) {
            return Some(pipe.clone());
        }
        let channel = self.channel(node).ok()?;
        let (pipe, requests) = Pipe::new();
        let pipe = Arc::new(pipe);
        pipes.insert(node.to_owned(), pipe.clone());
        self.inner.pipelined.stream_opened();
        tokio::spawn(read_pipe(
            Arc::downgrade(&self.inner),
            node.to_owned(),
            pipe.clone(),
            channel,
            requests,
        ));
        Some(pipe)
    }

    /// Reads an account linearizably through the leader, with the log position it reflects.
    pub async fn get_account(&self, account_id: &str) -> Result<GetAccountResponse, Error> {
        let request = GetAccountRequest {
            account_id: account_id.to_owned(),
        };
        let response = self
            .call(
                "GetAccount",
                Route::read(self.partition_of(account_id).await),
                request,
                |channel, request| async move {
                    WalletServiceClient::new(channel).get_account(request).await
                },
            )
            .await?;
        if response.account.is_none() {
            return Err(Error::malformed("GetAccount answered without an account"));
        }
        Ok(response)
    }

    /// Reads a transfer's final status by its id; NOT_FOUND if the ledger never saw it.
    pub async fn get_transfer(&self, transaction_id: Uuid) -> Result<proto::v1::Transfer, Error> {
        let request = GetTransferRequest {
            transaction_id: transaction_id.hyphenated().to_string(),
        };
        let response = self
            .call(
                "GetTransfer",
                Route::read(DEFAULT_PARTITION),
                request,
                |channel, request| async move {
                    WalletServiceClient::new(channel)
                        .get_transfer(request)
                        .await
                },
            )
            .await?;
        response
            .transfer
            .ok_or_else(|| Error::malformed("GetTransfer answered without a transfer"))
    }

    /// Asks every configured node, concurrently and without retries, what it knows about
    /// the cluster. Each node answers for itself, so an unreachable one shows up as an error
    /// next to the others' answers.
    ///
    /// `include_state_digest` also asks each node to hash every partition's state, which takes
    /// time proportional to the state on the node's raft thread: use it to compare replicas,
    /// not for routine polling.
    pub async fn cluster_status(
        &self,
        include_state_digest: bool,
    ) -> Vec<(String, Result<GetClusterStatusResponse, Error>)> {
        let timeout = self.inner.config.call_timeout;
        let calls = self.inner.targets.iter().map(|target| async move {
            let channel = match self.channel(&target.uri) {
                Ok(channel) => channel,
                Err(e) => return (target.display.clone(), Err(e)),
            };
            let mut request = tonic::Request::new(GetClusterStatusRequest {
                include_state_digest,
            });
            request.set_timeout(timeout);
            let result = ClusterServiceClient::new(channel)
                .get_cluster_status(request)
                .await
                .map(tonic::Response::into_inner)
                .map_err(|status| classify(&status).error);
            (target.display.clone(), result)
        });
        futures::future::join_all(calls).await
    }

    /// Whether the node at `endpoint` reports the wallet service as SERVING (it is ready to
    /// take calls). One attempt, bounded by `call_timeout`; an unreachable node is an error.
    pub async fn health(&self, endpoint: &str) -> Result<bool, Error> {
        let uri = normalize_endpoint_for(endpoint, self.inner.config.tls.is_some())?;
        let channel = self.channel(&uri)?;
        let mut request = tonic::Request::new(HealthCheckRequest {
            service: WALLET_SERVICE_NAME.to_owned(),
        });
        request.set_timeout(self.inner.config.call_timeout);
        let response = HealthClient::new(channel)
            .check(request)
            .await
            .map_err(|status| classify(&status).error)?;
        Ok(response.into_inner().status == ServingStatus::Serving as i32)
    }

    /// The shared routing and retry loop. Sends `message` to the cached leader (else the
    /// endpoints in order); follows NOT_LEADER hints at once; on transport errors,
    /// UNAVAILABLE, RESOURCE_EXHAUSTED and timeouts moves to the next node after a
    /// full-jitter backoff; returns anything else at once. Bounded by `attempts_max` and
    /// `total_deadline`. The same `message` (same transaction id) is sent every time, which
    /// is what makes retrying safe.
    async fn call<Req, Resp, F, Fut>(
        &self,
        operation: &'static str,
        route: Route,
        message: Req,
        send: F,
    ) -> Result<Resp, Error>
    where
        Req: Clone,
        F: FnMut(Conn, tonic::Request<Req>) -> Fut,
        Fut: Future<Output = Result<tonic::Response<Resp>, Status>>,
    {
        let deadline = Instant::now() + self.inner.config.total_deadline;
        self.call_until(operation, route, message, deadline, send)
            .await
    }

    /// [`WalletClient::call`] bounded by `deadline` instead of a fresh `total_deadline`.
    async fn call_until<Req, Resp, F, Fut>(
        &self,
        operation: &'static str,
        route: Route,
        message: Req,
        deadline: Instant,
        mut send: F,
    ) -> Result<Resp, Error>
    where
        Req: Clone,
        F: FnMut(Conn, tonic::Request<Req>) -> Fut,
        Fut: Future<Output = Result<tonic::Response<Resp>, Status>>,
    {
        let config = &self.inner.config;
        let tls = config.tls.is_some();
        let partition = route.partition;
        let mut target = self
            .leader(partition)
            .unwrap_or_else(|| self.inner.targets[0].uri.clone());
        let mut attempt: u32 = 0;
        loop {
            let remaining = deadline.saturating_duration_since(Instant::now());
            let mut request = tonic::Request::new(message.clone());
            request.set_timeout(config.call_timeout.min(remaining).max(MIN_ATTEMPT_TIMEOUT));
            let channel = self.channel(&target)?;
            let status = match send(channel, request).await {
                Ok(response) => {
                    // Reads succeed on followers too: only a write proves leadership.
                    if route.write {
                        self.set_leader(partition, &target);
                    }
                    return Ok(response.into_inner());
                }
                Err(status) => status,
            };
            attempt += 1;
            let Classified { error, action } = classify(&status);
            tracing::debug!(
                operation,
                attempt,
                target = %target,
                code = ?status.code(),
                reason = error.reason(),
                message = status.message(),
                "attempt failed"
            );
            let retry_after = match action {
                Action::Stop => return Err(error),
                _ if attempt >= config.attempts_max => return Err(error),
                Action::Redirect(address) => match normalize_endpoint_for(&address, tls) {
                    Ok(uri) if uri != target => {
                        self.set_leader(partition, &uri);
                        target = uri;
                        if Instant::now() >= deadline {
                            return Err(error);
                        }
                        continue;
                    }
                    // A stale or unusable hint: treat it like any other unavailability.
                    _ => None,
                },
                Action::Rotate { retry_after } => retry_after,
            };
            self.forget_leader(partition, &target);
            target = self.next_target(&target);
            let jitter = backoff::full_jitter(attempt - 1, config.backoff_base, config.backoff_max);
            let sleep = retry_after.map_or(jitter, |after| jitter.max(after));
            if Instant::now() + sleep >= deadline {
                return Err(error);
            }
            tokio::time::sleep(sleep).await;
        }
    }

    /// The partition that owns `account_id`, with the cluster's stable hash; the partition
    /// count is learnt once from `GetClusterStatus`. Until it is known, every account maps to
    /// [`DEFAULT_PARTITION`] (routing still works through NOT_LEADER hints, one hop longer).
    async fn partition_of(&self, account_id: &str) -> u32 {
        let mut partitions = self.inner.partitions.load(Ordering::Relaxed);
        if partitions == 0 {
            partitions = self.discover_partitions().await;
        }
        if partitions == 0 {
            DEFAULT_PARTITION
        } else {
            ledger::partition_of(account_id, partitions)
        }
    }

    /// Asks the configured nodes in order, one short attempt each, for the partition count.
    async fn discover_partitions(&self) -> u32 {
        if self.inner.discovery_refused.load(Ordering::Relaxed) {
            return 0;
        }
        for target in &self.inner.targets {
            let Ok(channel) = self.channel(&target.uri) else {
                continue;
            };
            let mut request = tonic::Request::new(GetClusterStatusRequest {
                include_state_digest: false,
            });
            request.set_timeout(DISCOVERY_TIMEOUT.min(self.inner.config.call_timeout));
            match ClusterServiceClient::new(channel)
                .get_cluster_status(request)
                .await
            {
                Ok(status) => {
                    let partitions = status.into_inner().partitions.len() as u32;
                    if partitions > 0 {
                        self.inner.partitions.store(partitions, Ordering::Relaxed);
                        return partitions;
                    }
                }
                Err(status)
                    if matches!(
                        status.code(),
                        tonic::Code::PermissionDenied | tonic::Code::Unauthenticated
                    ) =>
                {
                    tracing::debug!(
                        code = ?status.code(),
                        "cluster status refused (the token lacks the admin scope); routing by leader hints"
                    );
                    self.inner.discovery_refused.store(true, Ordering::Relaxed);
                    return 0;
                }
                Err(_) => {}
            }
        }
        0
    }

    /// The configured node after `current` in order (the first one if `current` was
    /// learnt from a hint), so consecutive failures walk the whole cluster.
    fn next_target(&self, current: &str) -> String {
        let targets = &self.inner.targets;
        let next = targets
            .iter()
            .position(|t| t.uri == current)
            .map_or(0, |i| (i + 1) % targets.len());
        targets[next].uri.clone()
    }

    fn set_leader(&self, partition: u32, uri: &str) {
        lock(&self.inner.leaders).insert(partition, uri.to_owned());
    }

    fn forget_leader(&self, partition: u32, uri: &str) {
        let mut leaders = lock(&self.inner.leaders);
        if leaders.get(&partition).is_some_and(|cached| cached == uri) {
            leaders.remove(&partition);
        }
    }

    /// The channel to `uri`, created lazily. Channels for unconfigured nodes are cached up
    /// to [`DISCOVERED_ENDPOINTS_MAX`]; beyond that they are built per use.
    fn channel(&self, uri: &str) -> Result<Conn, Error> {
        let mut channels = lock(&self.inner.channels);
        if let Some(channel) = channels.get(uri) {
            return Ok(channel.clone());
        }
        let channel = make_channel(uri, &self.inner.config, &self.inner.credentials)?;
        if channels.len() < self.inner.targets.len() + DISCOVERED_ENDPOINTS_MAX {
            channels.insert(uri.to_owned(), channel.clone());
        }
        Ok(channel)
    }
}

/// Reads the results of the `SubmitTransfers` stream to `node` until it ends, handing each
/// to its caller; then forgets the pipe (the next call opens a new stream) and lets the
/// callers still waiting go on alone. Holds the client weakly: once the client is dropped,
/// its pipes' request queues close, the streams end and so does this task.
async fn read_pipe(
    inner: std::sync::Weak<Inner>,
    node: String,
    pipe: Arc<Pipe>,
    channel: Conn,
    requests: tokio::sync::mpsc::Receiver<TransferRequest>,
) {
    let stream = tokio_stream::wrappers::ReceiverStream::new(requests);
    match WalletServiceClient::new(channel)
        .submit_transfers(stream)
        .await
    {
        Ok(response) => {
            let mut results = response.into_inner();
            loop {
                match results.message().await {
                    Ok(Some(result)) => {
                        if let Some(partition) = pipe.resolve(result)
                            && let Some(inner) = inner.upgrade()
                        {
                            WalletClient { inner }.set_leader(partition, &node);
                        }
                    }
                    Ok(None) => break,
                    Err(status) => {
                        tracing::debug!(node, code = ?status.code(), message = status.message(), "transfer stream ended");
                        break;
                    }
                }
            }
        }
        Err(status) => {
            tracing::debug!(node, code = ?status.code(), message = status.message(), "transfer stream refused");
        }
    }
    pipe.close();
    if let Some(inner) = inner.upgrade() {
        let mut pipes = lock(&inner.pipes);
        if pipes
            .get(&node)
            .is_some_and(|open| Arc::ptr_eq(open, &pipe))
        {
            pipes.remove(&node);
        }
    }
}

/// Floor on a per-attempt timeout, so the last attempt before the total deadline still has
/// a usable amount of time rather than a zero timeout that fails at once.
const MIN_ATTEMPT_TIMEOUT: std::time::Duration = std::time::Duration::from_millis(50);

/// The `CaptureTransferRequest` of [`WalletClient::capture_transfer`] (`None`: the whole hold).
fn capture_request(
    transaction_id: Uuid,
    from: &str,
    amount: Option<&str>,
) -> CaptureTransferRequest {
    CaptureTransferRequest {
        transaction_id: transaction_id.hyphenated().to_string(),
        from_account: from.to_owned(),
        amount: amount.unwrap_or_default().to_owned(),
    }
}

/// The account an account change answers with, or the error of an answer without one.
fn changed_account(method: &str, account: Option<Account>) -> Result<Account, Error> {
    account.ok_or_else(|| Error::malformed(format!("{method} answered without an account")))
}

/// A new identifier for a transfer: a random (v4) UUID. Generate it once per intended
/// transfer and keep it for every retry.
pub fn new_transaction_id() -> Uuid {
    Uuid::new_v4()
}

fn make_channel(
    uri: &str,
    config: &ClientConfig,
    credentials: &Credentials,
) -> Result<Conn, Error> {
    let endpoint = Endpoint::from_shared(uri.to_owned())
        .map_err(|e| Error::config(format!("endpoint {uri:?}: {e}")))?
        .connect_timeout(config.connect_timeout)
        .tcp_nodelay(true);
    crate::auth::connect_lazy(endpoint, config.tls.as_ref(), credentials)
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn config(endpoints: &[&str]) -> ClientConfig {
        let mut config = ClientConfig::new(endpoints.iter().copied());
        config.total_deadline = Duration::from_millis(500);
        config.call_timeout = Duration::from_millis(200);
        config.backoff_base = Duration::from_millis(1);
        config.backoff_max = Duration::from_millis(5);
        config
    }

    #[tokio::test]
    async fn connect_is_lazy_and_dedupes() {
        let client = WalletClient::connect(config(&[
            "127.0.0.1:1",
            "http://127.0.0.1:1",
            "127.0.0.1:2",
        ]))
        .await
        .unwrap();
        assert_eq!(client.endpoints(), vec!["127.0.0.1:1", "127.0.0.1:2"]);
        assert_eq!(
            client.next_target("http://127.0.0.1:1"),
            "http://127.0.0.1:2"
        );
        assert_eq!(
            client.next_target("http://127.0.0.1:2"),
            "http://127.0.0.1:1"
        );
        assert_eq!(
            client.next_target("http://elsewhere:9"),
            "http://127.0.0.1:1"
        );
    }

    #[tokio::test]
    async fn connect_rejects_bad_config() {
        let err = WalletClient::connect(config(&["https://a:1"]))
            .await
            .unwrap_err();
        assert!(matches!(err, Error::Config(_)));
        assert!(err.is_definite());
    }

    #[tokio::test]
    async fn unreachable_cluster_is_indefinite_and_bounded() {
        // Port 1 on localhost refuses connections: every attempt is a transport error.
        let mut cfg = config(&["127.0.0.1:1"]);
        cfg.attempts_max = 3;
        let client = WalletClient::connect(cfg).await.unwrap();
        let transfer = Transfer {
            transaction_id: new_transaction_id(),
            from: "a".into(),
            to: "b".into(),
            amount: "1.00".into(),
            currency: "USD".into(),
            ..Default::default()
        };
        let started = std::time::Instant::now();
        let err = client.transfer(&transfer).await.unwrap_err();
        assert!(started.elapsed() < Duration::from_secs(5));
        assert!(!err.is_definite(), "{err}");
        assert_eq!(err.code(), tonic::Code::Unavailable);
        assert!(client.leader(DEFAULT_PARTITION).is_none());
    }

    fn hold(timeout: Duration) -> Hold {
        Hold {
            transaction_id: Uuid::parse_str("3F2504E0-4F89-11D3-9A0C-0305E82C3301").unwrap(),
            from: "alice".into(),
            to: "bob".into(),
            amount: "10.00".into(),
            currency: "USD".into(),
            timeout,
            ..Default::default()
        }
    }

    #[test]
    fn hold_requests_carry_the_fields() {
        let request =
            AuthorizeTransferRequest::try_from(&hold(Duration::from_millis(90_500))).unwrap();
        assert_eq!(
            request.transaction_id,
            "3f2504e0-4f89-11d3-9a0c-0305e82c3301"
        );
        assert_eq!(
            (
                request.from_account.as_str(),
                request.to_account.as_str(),
                request.amount.as_str(),
                request.currency.as_str()
            ),
            ("alice", "bob", "10.00", "USD")
        );
        let timeout = request.timeout.unwrap();
        assert_eq!((timeout.seconds, timeout.nanos), (90, 500_000_000));
        let id = hold(Duration::ZERO).transaction_id;
        let part = capture_request(id, "alice", Some("4.00"));
        assert_eq!(
            (
                part.transaction_id.as_str(),
                part.from_account.as_str(),
                part.amount.as_str()
            ),
            ("3f2504e0-4f89-11d3-9a0c-0305e82c3301", "alice", "4.00")
        );
        assert_eq!(capture_request(id, "alice", None).amount, "");
    }

    #[tokio::test]
    async fn hold_calls_go_through_the_retry_loop() {
        // Port 1 on localhost refuses connections: every attempt is a transport error, and
        // each call is retried (same request) until attempts_max, then indefinite.
        let mut cfg = config(&["127.0.0.1:1"]);
        cfg.attempts_max = 2;
        let client = WalletClient::connect(cfg).await.unwrap();
        let h = hold(Duration::from_secs(60));
        let errors = [
            client.authorize_transfer(&h).await.unwrap_err(),
            client
                .capture_transfer(h.transaction_id, &h.from, Some("1.00"))
                .await
                .unwrap_err(),
            client
                .void_transfer(h.transaction_id, &h.from)
                .await
                .unwrap_err(),
        ];
        for err in errors {
            assert!(!err.is_definite(), "{err}");
            assert_eq!(err.code(), tonic::Code::Unavailable);
        }
    }

    #[test]
    fn transfer_request_uses_canonical_uuid() {
        let id = Uuid::parse_str("3F2504E0-4F89-11D3-9A0C-0305E82C3301").unwrap();
        let request = TransferRequest::from(&Transfer {
            transaction_id: id,
            from: "a".into(),
            to: "b".into(),
            amount: "1".into(),
            currency: "USD".into(),
            ..Default::default()
        });
        assert_eq!(
            request.transaction_id,
            "3f2504e0-4f89-11d3-9a0c-0305e82c3301"
        );
        assert_eq!(new_transaction_id().get_version_num(), 4);
    }
}
