//! The read side: [`QueryClient`] talks to read nodes (`wallet.v1.QueryService`), which serve
//! projections of the ledger's event log and push balance and transfer updates.
//!
//! ```no_run
//! use futures::StreamExt as _;
//! use wallet_client::QueryClient;
//!
//! # async fn run() -> Result<(), wallet_client::Error> {
//! let reads = QueryClient::connect(["127.0.0.1:50061"])?;
//! let mut updates = reads.watch_balances(vec!["alice".into()]);
//! while let Some(update) = updates.next().await {
//!     let update = update?;
//!     let balance = update.balance.unwrap_or_default();
//!     println!("{} {} (#{})", balance.account_id, balance.balance, balance.sequence);
//! }
//! # Ok(())
//! # }
//! ```

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use futures::Stream;
use proto::v1::query_service_client::QueryServiceClient;
use proto::v1::{
    Balance, BalanceUpdate, GetBalanceAtRequest, GetBalanceRequest, GetBalanceResponse,
    ListTransfersRequest, ListTransfersResponse, TransferUpdate, WatchBalancesRequest,
    WatchTransferRequest, get_balance_at_request,
};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::transport::Endpoint;
use tonic::{Code, Status};
use uuid::Uuid;

use crate::auth::{Conn, Credentials, TlsConfig};
use crate::config::normalize_endpoint_for;
use crate::error::{Error, classify};

/// Where `walletctl dev` runs its read node.
pub const DEFAULT_READ_ENDPOINT: &str = "127.0.0.1:50061";

/// Timeout of one unary read attempt. Longer than the read node's own bound on waiting for a
/// consistency token (5 s), so that wait ends with the server's clear answer.
pub const QUERY_CALL_TIMEOUT: Duration = Duration::from_secs(8);

/// Connect timeout towards a read node.
pub const QUERY_CONNECT_TIMEOUT: Duration = Duration::from_secs(2);

/// Backoff between reconnections of a watch stream (doubling, reset once updates flow).
pub const WATCH_RESUME_BACKOFF_MIN: Duration = Duration::from_millis(100);
/// Upper bound of that backoff.
pub const WATCH_RESUME_BACKOFF_MAX: Duration = Duration::from_secs(2);

/// Updates a watch buffers between its background task and the caller.
pub const WATCH_CLIENT_BUFFER: usize = 256;

/// A point in an account's past, for [`QueryClient::balance_at`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BalanceAt {
    /// A position token (`v1.<partition>.<index>`, as the write API returns): the balance
    /// right after that log entry.
    Position(String),
    /// Milliseconds since the Unix epoch: the balance after the last change at or before it.
    TimestampMs(u64),
}

/// A handle to one or more read nodes. Cheap to clone. Unary calls move to the next read node
/// when one is unreachable; watches resume on any of them (sequences are the same on every
/// read node, because each folds the same log).
#[derive(Clone)]
pub struct QueryClient {
    channels: Arc<Vec<(String, Conn)>>,
    next: Arc<AtomicUsize>,
}

impl QueryClient {
    /// Channels to the given read nodes (`host:port` or `http://host:port`). Connections are
    /// made on first use, so this only fails on a malformed or empty endpoint list.
    pub fn connect<I, S>(endpoints: I) -> Result<Self, Error>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        Self::connect_with(endpoints, None, None)
    }

    /// [`QueryClient::connect`] with TLS (`host:port` then means `https://`) and a bearer
    /// token (it needs the `read` scope).
    pub fn connect_with<I, S>(
        endpoints: I,
        tls: Option<&TlsConfig>,
        token: Option<&str>,
    ) -> Result<Self, Error>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        let credentials = Credentials::new(token)?;
        let mut channels = Vec::new();
        for endpoint in endpoints {
            let uri = normalize_endpoint_for(endpoint.as_ref(), tls.is_some())?;
            let endpoint_config = Endpoint::from_shared(uri.clone())
                .map_err(|e| Error::Config(format!("endpoint {uri}: {e}")))?
                .connect_timeout(QUERY_CONNECT_TIMEOUT)
                .tcp_nodelay(true)
                .http2_keep_alive_interval(Duration::from_secs(10))
                .keep_alive_timeout(Duration::from_secs(5))
                .keep_alive_while_idle(true);
            let channel = crate::auth::connect_lazy(endpoint_config, tls, &credentials)?;
            channels.push((endpoint.as_ref().to_owned(), channel));
        }
        if channels.is_empty() {
            return Err(Error::Config("no read node endpoints".into()));
        }
        Ok(Self {
            channels: Arc::new(channels),
            next: Arc::new(AtomicUsize::new(0)),
        })
    }

    fn client(&self, attempt: usize) -> QueryServiceClient<Conn> {
        let start = self.next.load(Ordering::Relaxed);
        let (_, channel) = &self.channels[(start + attempt) % self.channels.len()];
        QueryServiceClient::new(channel.clone())
    }

    /// One unary call, tried on each read node in turn while the failure is transport-level
    /// or UNAVAILABLE; the node that answers becomes the first choice for later calls.
    async fn unary<T, F, Fut>(&self, mut call: F) -> Result<T, Error>
    where
        F: FnMut(QueryServiceClient<Conn>) -> Fut,
        Fut: Future<Output = Result<tonic::Response<T>, Status>>,
    {
        let attempts = self.channels.len();
        let mut last = None;
        for attempt in 0..attempts {
            match call(self.client(attempt)).await {
                Ok(response) => {
                    if attempt > 0 {
                        self.next.fetch_add(attempt, Ordering::Relaxed);
                    }
                    return Ok(response.into_inner());
                }
                Err(status) if resumable(&status) => last = Some(classify(&status).error),
                Err(status) => return Err(classify(&status).error),
            }
        }
        Err(last.expect("at least one endpoint"))
    }

    /// The account's projected balance. With `consistency_token` (from a transfer), the read
    /// node first waits until it has applied that position: read-your-writes.
    pub async fn balance(
        &self,
        account_id: &str,
        consistency_token: Option<&str>,
    ) -> Result<GetBalanceResponse, Error> {
        let request = GetBalanceRequest {
            account_id: account_id.to_owned(),
            consistency_token: consistency_token.unwrap_or_default().to_owned(),
        };
        self.unary(|mut client| {
            let mut request = tonic::Request::new(request.clone());
            request.set_timeout(QUERY_CALL_TIMEOUT);
            async move { client.get_balance(request).await }
        })
        .await
    }

    /// One page of the account's history (balance changes), newest first. Pass the previous
    /// page's `next_page_token` to continue; it is empty after the last page. `page_size` 0
    /// means the server's default.
    pub async fn history(
        &self,
        account_id: &str,
        page_token: Option<&str>,
        page_size: u32,
    ) -> Result<ListTransfersResponse, Error> {
        let request = ListTransfersRequest {
            account_id: account_id.to_owned(),
            page_token: page_token.unwrap_or_default().to_owned(),
            page_size,
            ..ListTransfersRequest::default()
        };
        self.unary(|mut client| {
            let mut request = tonic::Request::new(request.clone());
            request.set_timeout(QUERY_CALL_TIMEOUT);
            async move { client.list_transfers(request).await }
        })
        .await
    }

    /// The account's balance at a past position or time, rebuilt from its history.
    pub async fn balance_at(&self, account_id: &str, at: BalanceAt) -> Result<Balance, Error> {
        let point = match at {
            BalanceAt::Position(position) => get_balance_at_request::Point::Position(position),
            BalanceAt::TimestampMs(ms) => get_balance_at_request::Point::TimestampMs(ms),
        };
        let request = GetBalanceAtRequest {
            account_id: account_id.to_owned(),
            point: Some(point),
        };
        let response = self
            .unary(|mut client| {
                let mut request = tonic::Request::new(request.clone());
                request.set_timeout(QUERY_CALL_TIMEOUT);
                async move { client.get_balance_at(request).await }
            })
            .await?;
        response.balance.ok_or_else(|| {
            Error::MalformedResponse("GetBalanceAt answered without a balance".into())
        })
    }

    /// The transfer's state now, then every change until a final state; the stream ends
    /// after the final one. An id the read node has not seen yet is waited for. Like
    /// [`QueryClient::watch_balances`] it survives read-node restarts and failovers: it
    /// reconnects and delivers only updates newer than the last `version` it delivered, so
    /// none is repeated and the order holds. A state that came and went while disconnected
    /// is skipped (the read node answers with the current state); the final state always
    /// arrives. It ends early only on a definite error.
    pub async fn watch_transfer(
        &self,
        transaction_id: Uuid,
    ) -> Result<impl Stream<Item = Result<TransferUpdate, Error>> + Send + Unpin + 'static, Error>
    {
        let (tx, rx) = mpsc::channel(WATCH_CLIENT_BUFFER);
        let client = self.clone();
        let transaction_id = transaction_id.hyphenated().to_string();
        tokio::spawn(async move { client.run_watch_transfer(transaction_id, tx).await });
        Ok(ReceiverStream::new(rx))
    }

    async fn run_watch_transfer(
        self,
        transaction_id: String,
        tx: mpsc::Sender<Result<TransferUpdate, Error>>,
    ) {
        let mut backoff = WATCH_RESUME_BACKOFF_MIN;
        let mut attempt = 0;
        let mut last_version = 0;
        loop {
            let request = WatchTransferRequest {
                transaction_id: transaction_id.clone(),
            };
            let failure = match self.client(attempt).watch_transfer(request).await {
                Err(status) => status,
                Ok(response) => {
                    let mut stream = response.into_inner();
                    loop {
                        let message = tokio::select! {
                            message = stream.message() => message,
                            () = tx.closed() => return,
                        };
                        match message {
                            Ok(Some(update)) => {
                                backoff = WATCH_RESUME_BACKOFF_MIN;
                                if update.version <= last_version {
                                    continue; // already delivered before a reconnect
                                }
                                last_version = update.version;
                                let is_final = update.is_final;
                                if tx.send(Ok(update)).await.is_err() || is_final {
                                    return;
                                }
                            }
                            Ok(None) => {
                                break Status::unavailable("the read node ended the watch");
                            }
                            Err(status) => break status,
                        }
                    }
                }
            };
            if !resumable(&failure) {
                let _ = tx.send(Err(classify(&failure).error)).await;
                return;
            }
            tracing::debug!(code = ?failure.code(), message = failure.message(), "transfer watch interrupted; resuming");
            attempt += 1;
            tokio::select! {
                () = tokio::time::sleep(backoff) => {}
                () = tx.closed() => return,
            }
            backoff = (backoff * 2).min(WATCH_RESUME_BACKOFF_MAX);
        }
    }

    /// Every account's current balance, then every change, per account in sequence order with
    /// no gap and no duplicate. The stream survives read-node restarts, failovers between read
    /// nodes and being cut off for lagging: it reconnects and resumes each account after the
    /// last sequence it delivered. It ends only on a definite error (e.g. an unknown account)
    /// or when dropped.
    pub fn watch_balances(
        &self,
        account_ids: Vec<String>,
    ) -> impl Stream<Item = Result<BalanceUpdate, Error>> + Send + Unpin + 'static {
        self.watch_balances_after(account_ids, HashMap::new())
    }

    /// [`QueryClient::watch_balances`], resuming the accounts in `after` (account id → last
    /// sequence already seen) with the changes after that sequence instead of a snapshot.
    pub fn watch_balances_after(
        &self,
        account_ids: Vec<String>,
        after: HashMap<String, u64>,
    ) -> impl Stream<Item = Result<BalanceUpdate, Error>> + Send + Unpin + 'static {
        let (tx, rx) = mpsc::channel(WATCH_CLIENT_BUFFER);
        let client = self.clone();
        tokio::spawn(async move { client.run_watch(account_ids, after, tx).await });
        ReceiverStream::new(rx)
    }

    async fn run_watch(
        self,
        account_ids: Vec<String>,
        mut last: HashMap<String, u64>,
        tx: mpsc::Sender<Result<BalanceUpdate, Error>>,
    ) {
        let mut backoff = WATCH_RESUME_BACKOFF_MIN;
        let mut attempt = 0;
        loop {
            let request = WatchBalancesRequest {
                account_ids: account_ids.clone(),
                resume_after_sequence: last.clone().into_iter().collect(),
            };
            let failure = match self.client(attempt).watch_balances(request).await {
                Err(status) => status,
                Ok(response) => {
                    let mut stream = response.into_inner();
                    loop {
                        let message = tokio::select! {
                            message = stream.message() => message,
                            () = tx.closed() => return,
                        };
                        match message {
                            Ok(Some(update)) => {
                                backoff = WATCH_RESUME_BACKOFF_MIN;
                                let Some(balance) = &update.balance else {
                                    continue;
                                };
                                let seen = last.get(&balance.account_id).copied();
                                // Defensive: never hand the caller an update twice.
                                if seen.is_some_and(|seen| balance.sequence <= seen) {
                                    continue;
                                }
                                last.insert(balance.account_id.clone(), balance.sequence);
                                if tx.send(Ok(update)).await.is_err() {
                                    return;
                                }
                            }
                            Ok(None) => {
                                break Status::unavailable("the read node ended the watch");
                            }
                            Err(status) => break status,
                        }
                    }
                }
            };
            if !resumable(&failure) {
                let _ = tx.send(Err(classify(&failure).error)).await;
                return;
            }
            tracing::debug!(code = ?failure.code(), message = failure.message(), "watch interrupted; resuming");
            attempt += 1;
            tokio::select! {
                () = tokio::time::sleep(backoff) => {}
                () = tx.closed() => return,
            }
            backoff = (backoff * 2).min(WATCH_RESUME_BACKOFF_MAX);
        }
    }
}

/// Failures after which the same request may succeed later or on another read node: the
/// node is unreachable or restarting, cut the watch off for lagging (ABORTED), is at its
/// stream limit, or timed out.
fn resumable(status: &Status) -> bool {
    matches!(
        status.code(),
        Code::Unavailable
            | Code::Aborted
            | Code::ResourceExhausted
            | Code::DeadlineExceeded
            | Code::Cancelled
            | Code::Unknown
    )
}
