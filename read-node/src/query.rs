//! `wallet.v1.QueryService`: reads and watches over the projections.
//!
//! Authorization: the auth layer checked the method's scope; a token bound to account
//! prefixes reaches only the handlers that check every account they are asked about
//! (`security::check_account`, first thing): GetBalance, WatchBalances, ListTransfers,
//! GetBalanceAt. WatchTransfer (by transaction id) is refused to bound tokens by the layer.
//!
//! Why one file of this length: one handler per `QueryService` method, each short, sharing
//! the authorization check and the projection reads above them.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use event_codec::pb::annotations_to_fields;
use proto::v1 as pb;
use proto::v1::query_service_server::QueryService;
use tokio::sync::{OwnedSemaphorePermit, Semaphore, broadcast, mpsc};
use tokio_stream::wrappers::ReceiverStream;
use tokio_util::sync::CancellationToken;
use tonic::{Code, Request, Response, Status};

use crate::convert::{self, token};
use crate::db::{BalanceRow, HistoryRow, TransferRow};
use crate::error::{ApiError, ReadApiError as _};
use crate::faults::FaultKind;
use crate::fold::preferred_transfer;
use crate::limits;
use crate::metrics::PushLatency;
use crate::projector::{Projection, Update};

/// The page token format: `h1.<sequence>`, the newest sequence the page starts at.
const PAGE_TOKEN_PREFIX: &str = "h1.";
/// ListAccounts page tokens: this prefix, then the last account id listed, in hex.
const ACCOUNTS_PAGE_TOKEN_PREFIX: &str = "a1.";

/// A page size as ListTransfers and ListAccounts take it (0: the default).
fn page_size(requested: u32) -> Result<u32, ApiError> {
    match requested {
        0 => Ok(limits::PAGE_SIZE_DEFAULT),
        size if size > limits::PAGE_SIZE_MAX => Err(ApiError::invalid(
            "page_size",
            "PAGE_SIZE_TOO_LARGE",
            format!(
                "page_size {size} is above the maximum {}",
                limits::PAGE_SIZE_MAX
            ),
        )),
        size => Ok(size),
    }
}

fn invalid_page_token() -> ApiError {
    ApiError::invalid(
        "page_token",
        "INVALID_PAGE_TOKEN",
        "page_token is not one this service returned",
    )
}

fn account_page_token(last: &str) -> String {
    let hex: String = last.bytes().map(|byte| format!("{byte:02x}")).collect();
    format!("{ACCOUNTS_PAGE_TOKEN_PREFIX}{hex}")
}

/// The last account id of a ListAccounts page token.
fn account_of_page_token(token: &str) -> Option<String> {
    let hex = token.strip_prefix(ACCOUNTS_PAGE_TOKEN_PREFIX)?;
    if hex.is_empty() || hex.len() % 2 != 0 || hex.len() > 2 * ledger::ACCOUNT_ID_BYTES_MAX {
        return None;
    }
    let bytes = (0..hex.len())
        .step_by(2)
        .map(|at| u8::from_str_radix(hex.get(at..at + 2)?, 16).ok())
        .collect::<Option<Vec<u8>>>()?;
    String::from_utf8(bytes).ok()
}

/// A `google.protobuf.Timestamp` in milliseconds since the Unix epoch (`field` names it in
/// the error for one before the epoch or out of range).
fn timestamp_ms(field: &'static str, at: &prost_types::Timestamp) -> Result<u64, ApiError> {
    let seconds = u64::try_from(at.seconds).ok();
    let nanos = u64::try_from(at.nanos)
        .ok()
        .filter(|nanos| *nanos < 1_000_000_000);
    seconds
        .zip(nanos)
        .and_then(|(seconds, nanos)| seconds.checked_mul(1_000)?.checked_add(nanos / 1_000_000))
        .ok_or_else(|| {
            ApiError::invalid(
                field,
                "INVALID_TIME_RANGE",
                format!("{field} is not a time after the Unix epoch"),
            )
        })
}

/// The QueryService of one read node. Cheap to clone.
#[derive(Clone)]
pub struct QueryApi {
    projection: Arc<Projection>,
    watchers: Arc<Semaphore>,
    shutdown: CancellationToken,
    push_latency: PushLatency,
}

impl QueryApi {
    /// `push_latency` is observed once per live update a watch stream pushes.
    pub fn new(
        projection: Arc<Projection>,
        shutdown: CancellationToken,
        push_latency: PushLatency,
    ) -> QueryApi {
        QueryApi {
            projection,
            watchers: Arc::new(Semaphore::new(limits::WATCHERS_MAX)),
            shutdown,
            push_latency,
        }
    }

    /// Watch streams being served now.
    pub fn watchers(&self) -> usize {
        limits::WATCHERS_MAX - self.watchers.available_permits()
    }

    fn watcher_permit(&self) -> Result<OwnedSemaphorePermit, ApiError> {
        self.watchers.clone().try_acquire_owned().map_err(|_| {
            ApiError::new(
                Code::ResourceExhausted,
                "TOO_MANY_WATCHERS",
                format!(
                    "this read node already serves {} watch streams; retry later or use another read node",
                    limits::WATCHERS_MAX
                ),
            )
            .retry_after(limits::WATCHERS_RETRY_AFTER)
        })
    }

    fn account(&self, account_id: &str) -> Result<Arc<BalanceRow>, ApiError> {
        self.projection
            .balance(account_id)
            .map_err(|error| ApiError::internal(&error))?
            .ok_or_else(|| ApiError::account_not_found(account_id))
    }

    /// The account's last change for which `holds` is true, found by binary search over its
    /// history: `holds` must be true for a prefix of the sequences (positions and time stamps
    /// grow with the sequence). `None` if it holds for none.
    fn last_change_where(
        &self,
        row: &BalanceRow,
        holds: impl Fn(&HistoryRow) -> bool,
    ) -> Result<Option<HistoryRow>, ApiError> {
        let mut best = None;
        let (mut low, mut high) = (1, row.sequence);
        while low <= high {
            let middle = low + (high - low) / 2;
            let change = self
                .projection
                .db()
                .history(&row.account_id, middle)
                .map_err(|error| ApiError::internal(&error))?
                .ok_or_else(|| {
                    ApiError::internal(&anyhow::anyhow!(
                        "history row {middle} of {:?} is missing",
                        row.account_id
                    ))
                })?;
            if holds(&change) {
                best = Some(change);
                low = middle + 1;
            } else {
                high = middle - 1;
            }
        }
        Ok(best)
    }

    /// Waits (bounded) until the projection has applied `index` of `partition`.
    async fn wait_applied(
        &self,
        partition: u32,
        index: u64,
        field: &'static str,
    ) -> Result<(), ApiError> {
        if partition >= self.projection.partitions() {
            return Err(ApiError::invalid(
                field,
                "INVALID_CONSISTENCY_TOKEN",
                format!(
                    "{field} names partition {partition}, but the cluster has {}",
                    self.projection.partitions()
                ),
            ));
        }
        let mut positions = self.projection.positions();
        let mut faults = self.projection.faults().subscribe();
        let stuck = |faults: &Vec<Option<crate::faults::Fault>>| {
            faults[partition as usize]
                .as_ref()
                .filter(|fault| fault.kind == FaultKind::FoldFailed && fault.index <= index)
                .cloned()
        };
        // Reached, or the partition stopped before it (then it never will be, here).
        let reached = async {
            tokio::select! {
                reached = positions.wait_for(|positions| positions[partition as usize] >= index) => {
                    reached.map(|_| None)
                }
                stopped = faults.wait_for(|faults| stuck(faults).is_some()) => {
                    stopped.map(|faults| stuck(&faults))
                }
            }
        };
        match tokio::time::timeout(limits::CONSISTENCY_WAIT_MAX, reached).await {
            Ok(Ok(None)) => Ok(()),
            Ok(Ok(Some(fault))) if self.projection.positions().borrow()[partition as usize] < index => {
                Err(ApiError::new(
                    Code::Unavailable,
                    "PARTITION_STUCK",
                    format!(
                        "this read node stopped projecting partition {partition} at {} (it cannot \
                         fold the event block at index {}); read {} from another read node",
                        token(partition, self.projection.positions().borrow()[partition as usize]),
                        fault.index,
                        token(partition, index),
                    ),
                )
                .retry_after(limits::PARTITION_STUCK_RETRY_AFTER))
            }
            Ok(Ok(Some(_))) => Ok(()),
            Ok(Err(_)) => Err(ApiError::shutting_down()),
            Err(_) => Err(ApiError::new(
                Code::Unavailable,
                "CONSISTENCY_WAIT_TIMEOUT",
                format!(
                    "this read node has not applied {} within {:?} (it is at {}); retry, or read from another read node",
                    token(partition, index),
                    limits::CONSISTENCY_WAIT_MAX,
                    token(partition, self.projection.positions().borrow()[partition as usize]),
                ),
            )
            .retry_after(limits::CONSISTENCY_WAIT_RETRY_AFTER)),
        }
    }
}

/// The caller the auth layer verified (none without a tokens file).
fn caller_of<T>(request: &Request<T>) -> Option<security::Caller> {
    request.extensions().get::<security::Caller>().cloned()
}

fn validate_account(field: &'static str, account_id: &str) -> Result<(), ApiError> {
    ledger::validate_account_id(account_id)
        .map_err(|error| ApiError::invalid(field, error.reason(), format!("{field}: {error}")))
}

fn parse_position(
    field: &'static str,
    reason: &'static str,
    text: &str,
) -> Result<Vec<(u32, u64)>, ApiError> {
    // The write API's tokens name one or two positions; a longer text is not one of them,
    // and is not echoed back whole.
    let positions = (text.len() <= limits::POSITION_TOKEN_BYTES_MAX)
        .then(|| proto::token::parse(text))
        .flatten()
        .filter(|positions| positions.len() <= 2);
    positions.ok_or_else(|| {
        let shown: String = text.chars().take(limits::POSITION_TOKEN_BYTES_MAX).collect();
        ApiError::invalid(
            field,
            reason,
            format!("{field} {shown:?} is not a position token (v1.<partition>.<index>, as returned by the write API)"),
        )
    })
}

type Stream<T> = ReceiverStream<Result<T, Status>>;

#[tonic::async_trait]
impl QueryService for QueryApi {
    type WatchBalancesStream = Stream<pb::BalanceUpdate>;
    type WatchTransferStream = Stream<pb::TransferUpdate>;

    #[tracing::instrument(level = "debug", skip_all, fields(account_id = %request.get_ref().account_id))]
    async fn get_balance(
        &self,
        request: Request<pb::GetBalanceRequest>,
    ) -> Result<Response<pb::GetBalanceResponse>, Status> {
        let caller = caller_of(&request);
        let request = request.into_inner();
        validate_account("account_id", &request.account_id)?;
        security::check_account(caller.as_ref(), "account_id", &request.account_id)?;
        if !request.consistency_token.is_empty() {
            let positions = parse_position(
                "consistency_token",
                "INVALID_CONSISTENCY_TOKEN",
                &request.consistency_token,
            )?;
            // A cross-partition transfer's token names both partitions' positions.
            for (partition, index) in positions {
                self.wait_applied(partition, index, "consistency_token")
                    .await?;
            }
        }
        let row = self.account(&request.account_id)?;
        let applied = self.projection.positions().borrow()[row.partition as usize];
        let [balance] = annotated(&self.projection, [convert::balance(&row)])?;
        Ok(Response::new(pb::GetBalanceResponse {
            balance: Some(balance),
            position: token(row.partition, applied),
        }))
    }

    async fn watch_balances(
        &self,
        request: Request<pb::WatchBalancesRequest>,
    ) -> Result<Response<Self::WatchBalancesStream>, Status> {
        let caller = caller_of(&request);
        let request = request.into_inner();
        // Every watched account within the token's prefixes (resume_after_sequence may name
        // only these, checked below).
        for account_id in &request.account_ids {
            security::check_account(caller.as_ref(), "account_ids", account_id)?;
        }
        if request.account_ids.is_empty() {
            return Err(ApiError::invalid(
                "account_ids",
                "INVALID_ACCOUNT_ID",
                "name at least one account to watch",
            )
            .into());
        }
        let mut accounts: Vec<String> = Vec::new();
        for account_id in request.account_ids {
            validate_account("account_ids", &account_id)?;
            if !accounts.contains(&account_id) {
                accounts.push(account_id);
            }
            if accounts.len() > limits::WATCH_ACCOUNTS_MAX {
                return Err(ApiError::invalid(
                    "account_ids",
                    "TOO_MANY_ACCOUNTS",
                    format!(
                        "at most {} accounts per watch; split them over several watches",
                        limits::WATCH_ACCOUNTS_MAX
                    ),
                )
                .into());
            }
        }
        if let Some(stranger) = request
            .resume_after_sequence
            .keys()
            .find(|account_id| !accounts.contains(account_id))
        {
            return Err(ApiError::invalid(
                "resume_after_sequence",
                "INVALID_RESUME_SEQUENCE",
                format!(
                    "resume_after_sequence names account {:?}, which account_ids does not",
                    stranger.chars().take(64).collect::<String>()
                ),
            )
            .into());
        }
        let permit = self.watcher_permit()?;
        // Subscribe before reading the current rows: every change after what we read arrives
        // on this receiver, so the switch from snapshot/replay to live has no gap.
        let live = self.projection.subscribe_updates();
        let mut start = Vec::with_capacity(accounts.len());
        for account_id in accounts {
            let row = self.account(&account_id)?;
            let resume = request.resume_after_sequence.get(&account_id).copied();
            start.push((row, resume));
        }
        let (tx, rx) = mpsc::channel(limits::WATCH_BUFFER);
        let watcher = BalanceWatcher {
            projection: self.projection.clone(),
            tx,
            last: HashMap::new(),
            annotations: HashMap::new(),
            push_latency: self.push_latency.clone(),
        };
        let shutdown = self.shutdown.clone();
        tokio::spawn(async move {
            let _permit = permit;
            watcher.run(start, live, shutdown).await;
        });
        Ok(Response::new(ReceiverStream::new(rx)))
    }

    async fn watch_transfer(
        &self,
        request: Request<pb::WatchTransferRequest>,
    ) -> Result<Response<Self::WatchTransferStream>, Status> {
        let transaction_id = ledger::parse_transaction_id(&request.get_ref().transaction_id)
            .map_err(|error| {
                ApiError::invalid(
                    "transaction_id",
                    error.reason(),
                    format!("transaction_id: {error}"),
                )
            })?
            .hyphenated()
            .to_string();
        let permit = self.watcher_permit()?;
        let mut live = self.projection.subscribe_updates();
        // Every source partition's row under this id (usually one): the stream shows the
        // preferred one (`fold::preferred_transfer`), as a read by id does.
        let mut rows: BTreeMap<u32, TransferRow> = self
            .projection
            .db()
            .transfers(&transaction_id)
            .map_err(|error| ApiError::internal(&error))?
            .into_iter()
            .map(|row| (row.source_partition, row))
            .collect();
        let (tx, rx) = mpsc::channel(limits::WATCH_BUFFER);
        let shutdown = self.shutdown.clone();
        let push_latency = self.push_latency.clone();
        tokio::spawn(async move {
            let _permit = permit;
            // (source partition, version) of the row last sent.
            let mut sent: Option<(u32, u32)> = None;
            // Whether `rows` changed from the live feed since the last send (the first send
            // shows what was stored when the watch began: not a push of a new commit).
            let mut live_change = false;
            loop {
                if let Some(row) = preferred_transfer(rows.values().cloned())
                    && sent != Some((row.source_partition, row.version))
                {
                    sent = Some((row.source_partition, row.version));
                    let update = convert::transfer_update(&row);
                    if tx.send(Ok(update)).await.is_err() {
                        return;
                    }
                    if live_change {
                        push_latency.observe_pushed(row.timestamp_ms);
                    }
                    if row.state.is_final() {
                        return;
                    }
                }
                let deadline = tokio::time::sleep(limits::WATCH_TRANSFER_UNKNOWN_WAIT);
                tokio::pin!(deadline);
                let received = loop {
                    let received = tokio::select! {
                        received = live.recv() => received,
                        () = &mut deadline, if sent.is_none() => {
                            let _ = tx.send(Err(ApiError::new(
                                Code::NotFound,
                                "TRANSFER_NOT_FOUND",
                                format!("transfer {transaction_id} did not appear within {:?}", limits::WATCH_TRANSFER_UNKNOWN_WAIT),
                            ).into())).await;
                            return;
                        }
                        () = tx.closed() => return,
                        () = shutdown.cancelled() => {
                            let _ = tx.send(Err(ApiError::shutting_down().into())).await;
                            return;
                        }
                    };
                    match received {
                        Ok(Update::Transfer(row)) if row.transaction_id == transaction_id => {
                            break row;
                        }
                        Ok(_) => {}
                        Err(broadcast::error::RecvError::Lagged(_)) => {
                            let _ = tx.send(Err(lagged())).await;
                            return;
                        }
                        Err(broadcast::error::RecvError::Closed) => {
                            let _ = tx.send(Err(ApiError::shutting_down().into())).await;
                            return;
                        }
                    }
                };
                let newer = rows
                    .get(&received.source_partition)
                    .is_none_or(|known| received.version > known.version);
                if newer {
                    rows.insert(received.source_partition, (*received).clone());
                    live_change = true;
                }
            }
        });
        Ok(Response::new(ReceiverStream::new(rx)))
    }

    #[tracing::instrument(level = "debug", skip_all, fields(account_id = %request.get_ref().account_id))]
    async fn list_transfers(
        &self,
        request: Request<pb::ListTransfersRequest>,
    ) -> Result<Response<pb::ListTransfersResponse>, Status> {
        let caller = caller_of(&request);
        let request = request.into_inner();
        validate_account("account_id", &request.account_id)?;
        security::check_account(caller.as_ref(), "account_id", &request.account_id)?;
        let page_size = page_size(request.page_size)?;
        let start_after_token = if request.page_token.is_empty() {
            None
        } else {
            let sequence = request
                .page_token
                .strip_prefix(PAGE_TOKEN_PREFIX)
                .filter(|digits| !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit()))
                .and_then(|digits| digits.parse::<u64>().ok())
                .filter(|sequence| *sequence >= 1)
                .ok_or_else(invalid_page_token)?;
            Some(sequence)
        };
        let start_ms = request
            .start_time
            .as_ref()
            .map(|at| timestamp_ms("start_time", at))
            .transpose()?;
        let end_ms = request
            .end_time
            .as_ref()
            .map(|at| timestamp_ms("end_time", at))
            .transpose()?;
        if let (Some(start_ms), Some(end_ms)) = (start_ms, end_ms)
            && end_ms < start_ms
        {
            return Err(ApiError::invalid(
                "end_time",
                "INVALID_TIME_RANGE",
                "end_time is before start_time",
            )
            .into());
        }
        let row = self.account(&request.account_id)?;
        // The range in sequences: changes are stamped in sequence order (as GetBalanceAt
        // relies on too), so each end is one binary search.
        let sequence_before = |ms: u64| {
            self.last_change_where(&row, |change| change.timestamp_ms < ms)
                .map(|change| change.map_or(0, |change| change.sequence))
        };
        let newest_in_range = match end_ms {
            Some(end_ms) => sequence_before(end_ms)?,
            None => row.sequence,
        };
        let oldest_in_range = match start_ms {
            Some(start_ms) => sequence_before(start_ms)? + 1,
            None => 1,
        };
        let newest = start_after_token
            .map_or(row.sequence, |token| token.min(row.sequence))
            .min(newest_in_range);
        let oldest = newest
            .saturating_sub(u64::from(page_size) - 1)
            .max(oldest_in_range);
        let entries = if newest < oldest {
            Vec::new()
        } else {
            self.projection
                .db()
                .history_rows(&row.account_id, (oldest..=newest).rev())
                .map_err(|error| ApiError::internal(&error))?
        };
        // Each entry's transfer, for its annotations: one point read per entry of the page
        // (the transfer's source partition is the debited account's).
        let partitions = self.projection.partitions();
        let mut page = Vec::with_capacity(entries.len());
        for change in &entries {
            let from = if change.delta_minor < 0 {
                &row.account_id
            } else {
                &change.counterparty
            };
            let transfer = self
                .projection
                .db()
                .transfer(
                    &change.transaction_id,
                    ledger::partition_of(from, partitions),
                )
                .map_err(|error| ApiError::internal(&error))?;
            page.push(convert::history_entry(&row, change, transfer.as_ref()));
        }
        Ok(Response::new(pb::ListTransfersResponse {
            entries: page,
            next_page_token: if newest >= oldest && oldest > oldest_in_range {
                format!("{PAGE_TOKEN_PREFIX}{}", oldest - 1)
            } else {
                String::new()
            },
        }))
    }

    #[tracing::instrument(level = "debug", skip_all, fields(account_id = %request.get_ref().account_id))]
    async fn get_balance_at(
        &self,
        request: Request<pb::GetBalanceAtRequest>,
    ) -> Result<Response<pb::GetBalanceAtResponse>, Status> {
        use pb::get_balance_at_request::Point;
        let caller = caller_of(&request);
        let request = request.into_inner();
        validate_account("account_id", &request.account_id)?;
        security::check_account(caller.as_ref(), "account_id", &request.account_id)?;
        let point = request.point.ok_or_else(|| {
            ApiError::invalid(
                "point",
                "MISSING_POINT",
                "name a position or a timestamp_ms",
            )
        })?;
        let (row, position_index) = match &point {
            Point::Position(text) => {
                let positions = parse_position("position", "INVALID_POSITION", text)?;
                for &(partition, index) in &positions {
                    self.wait_applied(partition, index, "position").await?;
                }
                let row = self.account(&request.account_id)?;
                // A cross-partition token names two partitions: use the account's.
                let Some(&(_, index)) = positions
                    .iter()
                    .find(|(partition, _)| *partition == row.partition)
                else {
                    return Err(ApiError::invalid(
                        "position",
                        "POSITION_PARTITION_MISMATCH",
                        format!(
                            "position {text} names no position in partition {}, where account {:?} lives",
                            row.partition, row.account_id
                        ),
                    )
                    .into());
                };
                (row, index)
            }
            Point::TimestampMs(_) => (self.account(&request.account_id)?, 0),
        };
        // Positions and timestamps only grow with an account's sequence, so a binary search
        // over the history rows finds the last change at or before the point.
        let (opened_by_point, at_or_before): (bool, &dyn Fn(&HistoryRow) -> bool) = match &point {
            Point::Position(_) => {
                let index = position_index;
                (row.opened_index <= index, &move |change: &HistoryRow| {
                    change.index <= index
                })
            }
            Point::TimestampMs(at) => {
                let at = *at;
                (
                    row.opened_timestamp_ms <= at,
                    &move |change: &HistoryRow| change.timestamp_ms <= at,
                )
            }
        };
        if !opened_by_point {
            return Err(ApiError::not_found(
                "account_id",
                "ACCOUNT_NOT_FOUND",
                format!(
                    "account {:?} was not open yet at that point",
                    row.account_id
                ),
            )
            .into());
        }
        let best = self.last_change_where(&row, at_or_before)?;
        let balance = match best {
            Some(change) => convert::balance_after(&row, &change),
            None => convert::balance_opened(&row),
        };
        let [balance] = annotated(&self.projection, [balance])?;
        Ok(Response::new(pb::GetBalanceAtResponse {
            balance: Some(balance),
        }))
    }

    async fn list_accounts(
        &self,
        request: Request<pb::ListAccountsRequest>,
    ) -> Result<Response<pb::ListAccountsResponse>, Status> {
        let caller = caller_of(&request);
        let request = request.into_inner();
        if !request.prefix.is_empty() {
            validate_account("prefix", &request.prefix)?;
        }
        security::check_account(caller.as_ref(), "prefix", &request.prefix)?;
        let page_size = page_size(request.page_size)? as usize;
        let after = if request.page_token.is_empty() {
            None
        } else {
            let after = account_of_page_token(&request.page_token)
                .filter(|after| after.starts_with(&request.prefix))
                .ok_or_else(invalid_page_token)?;
            Some(after)
        };
        let mut rows = self
            .projection
            .db()
            .balances_from(&request.prefix, after.as_deref(), page_size + 1)
            .map_err(|error| ApiError::internal(&error))?;
        let more = rows.len() > page_size;
        rows.truncate(page_size);
        let next_page_token = match rows.last() {
            Some(last) if more => account_page_token(&last.account_id),
            _ => String::new(),
        };
        Ok(Response::new(pb::ListAccountsResponse {
            accounts: annotated(
                &self.projection,
                rows.iter().map(convert::balance).collect(),
            )?,
            next_page_token,
        }))
    }

    async fn batch_get_accounts(
        &self,
        request: Request<pb::BatchGetAccountsRequest>,
    ) -> Result<Response<pb::BatchGetAccountsResponse>, Status> {
        let caller = caller_of(&request);
        let request = request.into_inner();
        if request.account_ids.len() > limits::BATCH_GET_MAX {
            return Err(too_many("account_ids", "TOO_MANY_ACCOUNTS", "accounts").into());
        }
        let mut seen = std::collections::HashSet::new();
        let mut answer = pb::BatchGetAccountsResponse::default();
        for account_id in &request.account_ids {
            validate_account("account_ids", account_id)?;
            security::check_account(caller.as_ref(), "account_ids", account_id)?;
        }
        for account_id in request.account_ids {
            if !seen.insert(account_id.clone()) {
                continue;
            }
            match self
                .projection
                .balance(&account_id)
                .map_err(|error| ApiError::internal(&error))?
            {
                Some(row) => answer.accounts.push(convert::balance(&row)),
                None => answer.not_found.push(account_id),
            }
        }
        answer.accounts = annotated(&self.projection, answer.accounts)?;
        Ok(Response::new(answer))
    }

    async fn batch_get_transfers(
        &self,
        request: Request<pb::BatchGetTransfersRequest>,
    ) -> Result<Response<pb::BatchGetTransfersResponse>, Status> {
        let request = request.into_inner();
        if request.transaction_ids.len() > limits::BATCH_GET_MAX {
            return Err(too_many("transaction_ids", "TOO_MANY_TRANSFERS", "transfers").into());
        }
        let ids = request
            .transaction_ids
            .iter()
            .map(|text| {
                ledger::parse_transaction_id(text).map_err(|error| {
                    ApiError::invalid(
                        "transaction_ids",
                        error.reason(),
                        format!("transaction_ids: {error}"),
                    )
                })
            })
            .collect::<Result<Vec<_>, _>>()?;
        let mut seen = std::collections::HashSet::new();
        let mut answer = pb::BatchGetTransfersResponse::default();
        for (text, id) in request.transaction_ids.into_iter().zip(ids) {
            if !seen.insert(id) {
                continue;
            }
            let rows = self
                .projection
                .db()
                .transfers(&id.hyphenated().to_string())
                .map_err(|error| ApiError::internal(&error))?;
            match preferred_transfer(rows) {
                Some(row) => answer.transfers.push(convert::transfer_update(&row)),
                None => answer.not_found.push(text),
            }
        }
        Ok(Response::new(answer))
    }
}

/// The balances with what their accounts were opened with (one batched lookup).
fn annotated<B>(projection: &Projection, mut balances: B) -> Result<B, ApiError>
where
    B: AsMut<[pb::Balance]>,
{
    let found = projection
        .db()
        .account_annotations(
            balances
                .as_mut()
                .iter()
                .map(|balance| balance.account_id.as_str()),
        )
        .map_err(|error| ApiError::internal(&error))?;
    for (balance, annotations) in balances.as_mut().iter_mut().zip(found) {
        (balance.reference, balance.metadata) = annotations_to_fields(annotations.as_ref());
    }
    Ok(balances)
}

/// INVALID_ARGUMENT for a batch read above `limits::BATCH_GET_MAX`.
fn too_many(field: &'static str, reason: &'static str, what: &str) -> ApiError {
    ApiError::invalid(
        field,
        reason,
        format!(
            "at most {} {what} per call; split them over several calls",
            limits::BATCH_GET_MAX
        ),
    )
}

fn lagged() -> Status {
    ApiError::new(
        Code::Aborted,
        "WATCH_LAGGED",
        format!(
            "this watch fell more than {} updates behind the live feed and was cut off; \
             resume with resume_after_sequence set to the last sequence received per account",
            limits::UPDATES_BROADCAST_CAPACITY
        ),
    )
    .into()
}

/// One WatchBalances stream.
struct BalanceWatcher {
    projection: Arc<Projection>,
    tx: mpsc::Sender<Result<pb::BalanceUpdate, Status>>,
    /// Last sequence sent (or known to the client) per watched account.
    last: HashMap<String, u64>,
    /// What each watched account was opened with, read once when the watch starts (it never
    /// changes): every update sent carries it.
    annotations: HashMap<String, (String, BTreeMap<String, String>)>,
    push_latency: PushLatency,
}

impl BalanceWatcher {
    async fn run(
        mut self,
        start: Vec<(Arc<BalanceRow>, Option<u64>)>,
        mut live: broadcast::Receiver<Update>,
        shutdown: CancellationToken,
    ) {
        let found = self
            .projection
            .db()
            .account_annotations(start.iter().map(|(row, _)| row.account_id.as_str()));
        match found {
            Ok(found) => {
                for ((row, _), annotations) in start.iter().zip(found) {
                    if let Some(annotations) = annotations {
                        self.annotations.insert(
                            row.account_id.clone(),
                            annotations_to_fields(Some(&annotations)),
                        );
                    }
                }
            }
            Err(error) => {
                let _ = self.tx.send(Err(ApiError::internal(&error).into())).await;
                return;
            }
        }
        for (row, resume) in start {
            let sent = match resume {
                None => {
                    self.last.insert(row.account_id.clone(), row.sequence);
                    let snapshot = self.annotate(convert::snapshot(&row));
                    self.tx.send(Ok(snapshot)).await.is_ok()
                }
                Some(after) => {
                    // The client has everything up to `after`; a client ahead of this node
                    // (resuming on a node that is behind) just waits for the live feed.
                    self.last.insert(row.account_id.clone(), after);
                    self.replay(&row, row.sequence).await
                }
            };
            if !sent {
                return;
            }
        }
        loop {
            let received = tokio::select! {
                received = live.recv() => received,
                () = self.tx.closed() => return,
                () = shutdown.cancelled() => {
                    let _ = self.tx.send(Err(ApiError::shutting_down().into())).await;
                    return;
                }
            };
            let update = match received {
                Ok(Update::Balance(update)) => update,
                Ok(Update::Transfer(_)) => continue,
                Err(broadcast::error::RecvError::Lagged(_)) => {
                    let _ = self.tx.send(Err(lagged())).await;
                    return;
                }
                Err(broadcast::error::RecvError::Closed) => {
                    let _ = self.tx.send(Err(ApiError::shutting_down().into())).await;
                    return;
                }
            };
            let Some(balance) = &update.balance else {
                continue;
            };
            let Some(&last) = self.last.get(&balance.account_id) else {
                continue;
            };
            if balance.sequence <= last {
                // Already covered by the snapshot or the replay.
                continue;
            }
            if balance.sequence > last + 1 {
                // Never expected (we subscribed before reading), but a gap is worse than a
                // few reads: fill it from history.
                let row = match self.projection.balance(&balance.account_id) {
                    Ok(Some(row)) => row,
                    _ => {
                        let _ = self.tx.send(Err(lagged())).await;
                        return;
                    }
                };
                if !self.replay(&row, balance.sequence - 1).await {
                    return;
                }
            }
            self.last
                .insert(balance.account_id.clone(), balance.sequence);
            if self
                .tx
                .send(Ok(self.annotate((*update).clone())))
                .await
                .is_err()
            {
                return;
            }
            self.push_latency.observe_pushed(balance.timestamp_ms);
        }
    }

    /// The update with what its account was opened with.
    fn annotate(&self, mut update: pb::BalanceUpdate) -> pb::BalanceUpdate {
        if let Some(balance) = &mut update.balance
            && let Some((reference, metadata)) = self.annotations.get(&balance.account_id)
        {
            balance.reference.clone_from(reference);
            balance.metadata.clone_from(metadata);
        }
        update
    }

    /// Sends the account's history rows after `self.last[account]` up to `until`, in chunks
    /// read from RocksDB. False when the stream is gone.
    async fn replay(&mut self, row: &BalanceRow, until: u64) -> bool {
        // Saturating: a client may claim any sequence (u64::MAX means "send nothing old").
        let mut next = self.last[&row.account_id].saturating_add(1);
        while next <= until {
            let end = (next + limits::REPLAY_CHUNK_ROWS - 1).min(until);
            let changes = match self
                .projection
                .db()
                .history_rows(&row.account_id, next..=end)
            {
                Ok(changes) => changes,
                Err(error) => {
                    let _ = self.tx.send(Err(ApiError::internal(&error).into())).await;
                    return false;
                }
            };
            for change in &changes {
                let update = self.annotate(convert::change(row, change));
                if self.tx.send(Ok(update)).await.is_err() {
                    return false;
                }
                self.last.insert(row.account_id.clone(), change.sequence);
            }
            next = end + 1;
        }
        true
    }
}
