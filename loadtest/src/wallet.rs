//! The wallet target: readiness, setup (open and fund the accounts through the API), the
//! unary and `SubmitTransfers` clients, watchers on the read node, and verification.
//!
//! Why one file of this length: the phases of a wallet run, in the order they happen, share
//! one set of arguments, clients and recorder; each phase is a function of its own.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{Context, bail};
use futures::StreamExt as _;
use futures::future::BoxFuture;
use rand::SeedableRng;
use rand::rngs::SmallRng;
use rand::seq::index::sample;
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_stream::wrappers::ReceiverStream;
use tonic::transport::{Channel, Endpoint};
use wallet_client::pb::wallet_service_client::WalletServiceClient;
use wallet_client::pb::{OpenAccountRequest, TransferRequest, TransferResult, TransferStatus};
use wallet_client::{ClientConfig, Code, QueryClient, Transfer, Uuid, WalletClient, code_name};

use crate::cli::{Api, Config};
use crate::driver::{self, Budget, Executor, Pacer};
use crate::limits;
use crate::recorder::{Failure, Recorder};
use crate::report::Verification;
use crate::workload::{Accounts, Generator, Mix, Op, TransferOp, usd};

/// Currency of every account of a run.
pub const CURRENCY: &str = "USD";

/// Connections to the cluster.
pub struct Wallet {
    pub client: WalletClient,
    pub query: Option<QueryClient>,
    pub endpoints: Vec<String>,
}

fn failure(error: &wallet_client::Error) -> Failure {
    Failure {
        code: code_name(error.code()).to_owned(),
        reason: error.reason().to_owned(),
        definite: error.is_definite(),
    }
}

impl Wallet {
    pub async fn connect(config: &Config) -> anyhow::Result<Wallet> {
        let mut client_config = ClientConfig::new(config.args.endpoints.clone());
        client_config.pipeline_transfers = !config.args.sdk_unary;
        let client = WalletClient::connect(client_config)
            .await
            .context("connecting to the write nodes")?;
        let query = config
            .read_endpoint
            .as_ref()
            .map(|endpoint| QueryClient::connect([endpoint]))
            .transpose()
            .context("connecting to the read node")?;
        Ok(Wallet {
            client,
            query,
            endpoints: config.args.endpoints.clone(),
        })
    }

    /// Waits until every write node reports SERVING and the read node answers, then returns
    /// the cluster's partition count.
    pub async fn wait_ready(&self, wait: Duration) -> anyhow::Result<u32> {
        let deadline = Instant::now() + wait;
        loop {
            let mut ready = true;
            for endpoint in &self.endpoints {
                ready &= matches!(self.client.health(endpoint).await, Ok(true));
            }
            if let Some(query) = &self.query {
                // Any definite answer (NOT_FOUND for this probe) proves the node is serving.
                ready &= match query.balance("lt-readiness-probe", None).await {
                    Ok(_) => true,
                    Err(e) => e.is_definite(),
                };
            }
            if ready && let Ok(partitions) = self.partitions().await {
                return Ok(partitions);
            }
            if Instant::now() >= deadline {
                bail!(
                    "the cluster ({}{}) was not ready within {:?}; is `walletctl dev` running?",
                    self.endpoints.join(", "),
                    self.query.as_ref().map_or("", |_| " + read node"),
                    wait
                );
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    async fn partitions(&self) -> anyhow::Result<u32> {
        for (_, status) in self.client.cluster_status(false).await {
            if let Ok(status) = status
                && !status.partitions.is_empty()
            {
                return Ok(status.partitions.len() as u32);
            }
        }
        bail!("no write node answered GetClusterStatus")
    }

    /// The endpoint leading `partition`, as its own status says.
    pub async fn leader_of(&self, partition: u32) -> Option<String> {
        for (endpoint, status) in self.client.cluster_status(false).await {
            if let Ok(status) = status
                && status
                    .partitions
                    .iter()
                    .any(|p| p.partition == partition && p.role == "leader")
            {
                return Some(endpoint);
            }
        }
        None
    }

    /// Per partition, the highest applied index any write node reports, and the number of
    /// cross-partition transfers the leaders still have in flight.
    async fn applied_positions(&self, partitions: u32) -> (Vec<u64>, u64) {
        let mut applied = vec![0u64; partitions as usize];
        let mut in_flight = 0;
        for (_, status) in self.client.cluster_status(false).await {
            let Ok(status) = status else { continue };
            for p in &status.partitions {
                if let Some(slot) = applied.get_mut(p.partition as usize) {
                    *slot = (*slot).max(p.applied_index);
                }
                if p.role == "leader" {
                    in_flight += p.in_flight_transfers;
                }
            }
        }
        (applied, in_flight)
    }

    /// Opens every account (issuers allowed negative) through one `OpenAccounts` stream per
    /// partition, then funds each ordinary account from its partition's issuer through one
    /// `SubmitTransfers` stream per partition. What a stream leaves without a definite answer
    /// goes through the SDK's unary calls, which follow leaders and retry. A reused run id is
    /// refused: its accounts would not start at 0.
    pub async fn setup(&self, accounts: &Arc<Accounts>, config: &Config) -> anyhow::Result<()> {
        let hidden = config.args.no_progress;
        let bar = driver::step_progress(hidden, "opening accounts", u64::from(accounts.slots()));
        let mut tasks = Vec::new();
        for partition in 0..accounts.partitions {
            let endpoint = self
                .leader_of(partition)
                .await
                .with_context(|| format!("partition {partition} has no leader"))?;
            let mut slots = accounts.by_partition[partition as usize].clone();
            slots.push(accounts.count + partition);
            let (accounts, bar) = (accounts.clone(), bar.clone());
            tasks.push(tokio::spawn(async move {
                open_partition(&endpoint, slots, &accounts, &bar).await
            }));
        }
        let mut retry = Vec::new();
        for task in tasks {
            retry.extend(task.await.context("opening task")??);
        }
        let mut opened = futures::stream::iter(retry)
            .map(|slot| {
                let client = self.client.clone();
                let accounts = accounts.clone();
                async move {
                    let id = accounts.id(slot);
                    let account = client
                        .open_account(&id, CURRENCY, accounts.is_issuer(slot))
                        .await
                        .with_context(|| format!("opening {id}"))?;
                    fresh(&accounts, &id, account.balance_minor)
                }
            })
            .buffer_unordered(config.args.setup_concurrency);
        while let Some(result) = opened.next().await {
            result?;
            bar.inc(1);
        }
        bar.finish_and_clear();

        let bar = driver::step_progress(hidden, "funding accounts", u64::from(accounts.count));
        let mut tasks = Vec::new();
        for &partition in &accounts.populated {
            let endpoint = self
                .leader_of(partition)
                .await
                .with_context(|| format!("partition {partition} has no leader"))?;
            let ops: Vec<TransferOp> = accounts.by_partition[partition as usize]
                .iter()
                .map(|&slot| TransferOp {
                    id: Uuid::new_v4(),
                    from: accounts.count + partition,
                    to: slot,
                    amount_minor: config.initial_balance_minor,
                })
                .collect();
            let (accounts, bar) = (accounts.clone(), bar.clone());
            tasks.push(tokio::spawn(async move {
                fund_partition(&endpoint, ops, &accounts, &bar).await
            }));
        }
        let mut retry = Vec::new();
        for task in tasks {
            retry.extend(task.await.context("funding task")??);
        }
        // Whatever the streams could not settle (leader change, overload) goes through the
        // SDK, which follows leaders and retries with the same transaction id.
        for op in retry {
            let transfer = sdk_transfer(&op, accounts);
            self.client
                .transfer(&transfer)
                .await
                .with_context(|| format!("funding {}", transfer.to))?;
            bar.inc(1);
        }
        bar.finish_and_clear();
        Ok(())
    }

    /// Waits (at most `wait_max`) until the read node has applied everything the write nodes
    /// have applied now.
    async fn read_node_caught_up(
        &self,
        accounts: &Accounts,
        wait_max: Duration,
    ) -> anyhow::Result<Vec<String>> {
        let Some(query) = &self.query else {
            return Ok(Vec::new());
        };
        let (applied, _) = self.applied_positions(accounts.partitions).await;
        let tokens: Vec<String> = applied
            .iter()
            .enumerate()
            .map(|(p, index)| format!("v1.{p}.{index}"))
            .collect();
        let deadline = Instant::now() + wait_max;
        for &partition in &accounts.populated {
            let probe = accounts.id(accounts.count + partition);
            loop {
                match query
                    .balance(&probe, Some(&tokens[partition as usize]))
                    .await
                {
                    Ok(_) => break,
                    Err(e) if Instant::now() < deadline && !e.is_definite() => {
                        tokio::time::sleep(Duration::from_millis(100)).await;
                    }
                    // NOT_FOUND: the account's opening is not folded yet.
                    Err(e) if Instant::now() < deadline && e.code() == Code::NotFound => {
                        tokio::time::sleep(Duration::from_millis(100)).await;
                    }
                    Err(e) => {
                        bail!("the read node did not catch up with partition {partition}: {e}")
                    }
                }
            }
        }
        Ok(tokens)
    }
}

fn sdk_transfer(op: &TransferOp, accounts: &Accounts) -> Transfer {
    Transfer {
        transaction_id: op.id,
        from: accounts.id(op.from),
        to: accounts.id(op.to),
        amount: usd(op.amount_minor),
        currency: CURRENCY.to_owned(),
        ..Default::default()
    }
}

fn request(op: &TransferOp, accounts: &Accounts) -> TransferRequest {
    TransferRequest::from(&sdk_transfer(op, accounts))
}

/// An account this run opened must start at zero: otherwise its run id was used before.
fn fresh(accounts: &Accounts, id: &str, balance_minor: i64) -> anyhow::Result<()> {
    if balance_minor != 0 {
        bail!(
            "account {id} already exists with a balance: run id {:?} was used before on this \
             cluster; pick another --run-id",
            accounts.run_id
        );
    }
    Ok(())
}

/// Opens one partition's accounts through one `OpenAccounts` stream; returns the slots left
/// without a definite answer (the stream broke, the leader moved), for the caller to retry.
async fn open_partition(
    endpoint: &str,
    slots: Vec<u32>,
    accounts: &Arc<Accounts>,
    bar: &indicatif::ProgressBar,
) -> anyhow::Result<Vec<u32>> {
    let mut pending: HashSet<u32> = slots.iter().copied().collect();
    let requests = {
        let accounts = accounts.clone();
        tokio_stream::iter(slots.into_iter().map(move |slot| OpenAccountRequest {
            account_id: accounts.id(slot),
            currency: CURRENCY.to_owned(),
            allow_negative_balance: accounts.is_issuer(slot),
            ..Default::default()
        }))
    };
    let mut client = WalletServiceClient::new(channel(endpoint)?);
    let Ok(Ok(response)) =
        tokio::time::timeout(Duration::from_secs(5), client.open_accounts(requests)).await
    else {
        return Ok(pending.into_iter().collect());
    };
    let mut results = response.into_inner();
    while let Ok(Some(result)) = results.message().await {
        let Some(slot) = accounts.slot_of(&result.account_id) else {
            continue;
        };
        match (result.status.as_str(), &result.account, &result.error) {
            ("success", Some(account), _) => {
                fresh(accounts, &result.account_id, account.balance_minor)?
            }
            ("unavailable", _, _) => continue,
            (_, _, error) => bail!(
                "opening {} was rejected: {}",
                result.account_id,
                error
                    .as_ref()
                    .map_or("no error given", |e| e.message.as_str())
            ),
        }
        if pending.remove(&slot) {
            bar.inc(1);
        }
    }
    Ok(pending.into_iter().collect())
}

/// Funds one partition's accounts through one stream; returns what must be retried.
async fn fund_partition(
    endpoint: &str,
    ops: Vec<TransferOp>,
    accounts: &Accounts,
    bar: &indicatif::ProgressBar,
) -> anyhow::Result<Vec<TransferOp>> {
    let mut retry = Vec::new();
    let mut lane = match Lane::open(endpoint, limits::FUNDING_WINDOW).await {
        Ok(lane) => lane,
        Err(_) => return Ok(ops),
    };
    let mut queue = ops.into_iter();
    loop {
        while lane.outstanding() < limits::FUNDING_WINDOW {
            let Some(op) = queue.next() else { break };
            if !lane.send(op, Instant::now(), accounts) {
                retry.push(op);
            }
        }
        if lane.outstanding() == 0 {
            lane.close();
            retry.extend(queue);
            return Ok(retry);
        }
        match lane.next().await {
            LaneEvent::Result(_, _, Ok(())) => bar.inc(1),
            LaneEvent::Result(op, _, Err(f)) if f.definite => {
                bail!(
                    "funding {} was rejected: {} {}",
                    accounts.id(op.to),
                    f.code,
                    f.reason
                )
            }
            LaneEvent::Result(op, _, Err(_)) => retry.push(op),
            LaneEvent::Broken(_, pending) => {
                retry.extend(pending.into_iter().map(|(op, _)| op));
                retry.extend(queue);
                return Ok(retry);
            }
        }
    }
}

/// One `SubmitTransfers` stream and the transfers it has outstanding.
struct Lane {
    requests: Option<mpsc::Sender<TransferRequest>>,
    results: tonic::Streaming<TransferResult>,
    pending: HashMap<Uuid, (TransferOp, Instant)>,
}

enum LaneEvent {
    /// An answer for an outstanding transfer.
    Result(TransferOp, Instant, Result<(), Failure>),
    /// The stream failed or ended; these transfers have no answer (unknown outcome).
    Broken(Failure, Vec<(TransferOp, Instant)>),
}

fn channel(endpoint: &str) -> anyhow::Result<Channel> {
    let uri = wallet_client::normalize_endpoint(endpoint)?;
    Ok(Endpoint::from_shared(uri)?
        .tcp_nodelay(true)
        .connect_timeout(Duration::from_secs(2))
        .connect_lazy())
}

impl Lane {
    /// Opens a stream whose request queue holds `window` requests: with at most `window`
    /// outstanding, a send never waits.
    async fn open(endpoint: &str, window: usize) -> anyhow::Result<Lane> {
        let (tx, rx) = mpsc::channel(window);
        let mut client = WalletServiceClient::new(channel(endpoint)?);
        let results = tokio::time::timeout(
            Duration::from_secs(5),
            client.submit_transfers(ReceiverStream::new(rx)),
        )
        .await
        .context("SubmitTransfers did not start in 5 s")?
        .context("SubmitTransfers")?
        .into_inner();
        Ok(Lane {
            requests: Some(tx),
            results,
            pending: HashMap::with_capacity(window),
        })
    }

    fn outstanding(&self) -> usize {
        self.pending.len()
    }

    /// Queues a transfer; false if the stream is closed.
    fn send(&mut self, op: TransferOp, intended: Instant, accounts: &Accounts) -> bool {
        let Some(tx) = &self.requests else {
            return false;
        };
        match tx.try_send(request(&op, accounts)) {
            Ok(()) => {
                self.pending.insert(op.id, (op, intended));
                true
            }
            Err(_) => false,
        }
    }

    /// Ends the request side: the server finishes the outstanding ones and ends the stream.
    fn close(&mut self) {
        self.requests = None;
    }

    async fn next(&mut self) -> LaneEvent {
        loop {
            let message = self.results.message().await;
            let broken = match message {
                Ok(Some(result)) => {
                    let Ok(id) = Uuid::parse_str(&result.transaction_id) else {
                        continue;
                    };
                    let Some((op, intended)) = self.pending.remove(&id) else {
                        continue;
                    };
                    return LaneEvent::Result(op, intended, outcome(&result));
                }
                Ok(None) => Failure {
                    code: "UNAVAILABLE".into(),
                    reason: "STREAM_ENDED".into(),
                    definite: false,
                },
                Err(status) => Failure {
                    code: code_name(status.code()).into(),
                    reason: "STREAM_BROKEN".into(),
                    definite: false,
                },
            };
            self.requests = None;
            let pending = self.pending.drain().map(|(_, v)| v).collect();
            return LaneEvent::Broken(broken, pending);
        }
    }
}

/// A stream result as an outcome: "success", "rejected" (definite) or "unavailable".
fn outcome(result: &TransferResult) -> Result<(), Failure> {
    if result.status == "success" {
        return Ok(());
    }
    let (code, reason) = result
        .error
        .as_ref()
        .map_or((Code::Unknown, "UNKNOWN"), |e| {
            (Code::from_i32(e.code), e.reason.as_str())
        });
    Err(Failure {
        code: code_name(code).to_owned(),
        reason: reason.to_owned(),
        definite: result.status == "rejected",
    })
}

/// Unary calls through the Rust SDK (leader routing, retries with the same id).
struct UnaryExecutor {
    client: WalletClient,
    query: Option<QueryClient>,
    accounts: Arc<Accounts>,
}

impl Executor for UnaryExecutor {
    fn transfer(&self, op: TransferOp) -> BoxFuture<'static, Result<(), Failure>> {
        let client = self.client.clone();
        let transfer = sdk_transfer(&op, &self.accounts);
        Box::pin(async move {
            client
                .transfer(&transfer)
                .await
                .map(drop)
                .map_err(|e| failure(&e))
        })
    }

    fn read(&self, slot: u32) -> BoxFuture<'static, Result<(), Failure>> {
        let id = self.accounts.id(slot);
        let (client, query) = (self.client.clone(), self.query.clone());
        Box::pin(async move {
            match query {
                Some(query) => query.balance(&id, None).await.map(drop),
                None => client.get_account(&id).await.map(drop),
            }
            .map_err(|e| failure(&e))
        })
    }
}

/// One stream client: a `SubmitTransfers` stream to the leader of its partition, up to
/// `window` transfers outstanding; reads go beside it as unary calls. A broken stream or a
/// NOT_LEADER answer makes it look up the leader again and open a new stream.
#[allow(clippy::too_many_arguments)]
async fn stream_client(
    wallet: Arc<Wallet>,
    reads: Arc<dyn Executor>,
    mut generator: Generator,
    accounts: Arc<Accounts>,
    recorder: Arc<Recorder>,
    budget: Arc<Budget>,
    mut pacer: Pacer,
    window: usize,
) {
    let partition = generator.home_partition(&accounts);
    let mut outstanding_reads = futures::stream::FuturesUnordered::new();
    let mut stopping = false;
    let mut reconnects = 0;
    'lanes: loop {
        let endpoint = wallet.leader_of(partition).await;
        let lane = match endpoint {
            Some(endpoint) => Lane::open(&endpoint, window).await.ok(),
            None => None,
        };
        let Some(mut lane) = lane else {
            reconnects += 1;
            if reconnects > limits::STREAM_RECONNECTS_MAX || stopping {
                tracing::warn!(partition, "giving up on the stream: no leader reachable");
                break 'lanes;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
            continue;
        };
        // Set when the lane's node stopped leading: drain it, then open a new one.
        let mut stale = false;
        loop {
            let room = !stopping && !stale && lane.outstanding() + outstanding_reads.len() < window;
            if (stopping || stale) && lane.outstanding() == 0 {
                lane.close();
                if stopping {
                    break 'lanes;
                }
                continue 'lanes;
            }
            tokio::select! {
                biased;
                Some(()) = outstanding_reads.next(), if !outstanding_reads.is_empty() => {}
                event = lane.next(), if lane.outstanding() > 0 => match event {
                    LaneEvent::Result(op, intended, result) => {
                        if matches!(&result, Err(f) if f.reason == "NOT_LEADER") {
                            stale = true;
                        }
                        recorder.transfer(&op, intended.elapsed(), result);
                    }
                    LaneEvent::Broken(failure, pending) => {
                        for (op, intended) in pending {
                            recorder.transfer(&op, intended.elapsed(), Err(failure.clone()));
                        }
                        if stopping {
                            break 'lanes;
                        }
                        continue 'lanes;
                    }
                },
                () = tokio::time::sleep_until(pacer.due()), if room => {
                    if !budget.take() {
                        stopping = true;
                        continue;
                    }
                    let intended = pacer.sent();
                    match generator.next(&accounts) {
                        Op::Transfer(op) => {
                            if !lane.send(op, intended, &accounts) {
                                let closed = Failure {
                                    code: "UNAVAILABLE".into(),
                                    reason: "STREAM_CLOSED".into(),
                                    definite: true,
                                };
                                recorder.transfer(&op, intended.elapsed(), Err(closed));
                                stale = true;
                            }
                        }
                        read => outstanding_reads.push(driver::execute(reads.clone(), recorder.clone(), read, intended)),
                    }
                }
            }
        }
    }
    while outstanding_reads.next().await.is_some() {}
}

/// A watcher: one WatchBalances stream over `accounts_per_watch` accounts of its partition,
/// recording how long after its commit each change arrives.
async fn watcher(query: QueryClient, ids: Vec<String>, recorder: Arc<Recorder>, deadline: Instant) {
    let mut updates = query.watch_balances(ids);
    loop {
        let update = tokio::select! {
            update = updates.next() => update,
            () = tokio::time::sleep_until(deadline) => return,
        };
        match update {
            Some(Ok(update)) if !update.snapshot => {
                if let Some(balance) = update.balance {
                    let now_ms = SystemTime::now()
                        .duration_since(UNIX_EPOCH)
                        .map_or(0, |d| d.as_millis() as u64);
                    recorder.push(Duration::from_millis(
                        now_ms.saturating_sub(balance.timestamp_ms),
                    ));
                }
            }
            Some(Ok(_)) => {}
            Some(Err(e)) => {
                recorder.read(Duration::ZERO, Err(failure(&e)));
                return;
            }
            None => return,
        }
    }
}

/// The measured phase: clients, watchers and the ticker; returns when every client is done.
pub async fn run_phase(
    wallet: &Arc<Wallet>,
    accounts: &Arc<Accounts>,
    recorder: &Arc<Recorder>,
    config: &Config,
    mix: Mix,
) -> anyhow::Result<()> {
    let args = &config.args;
    let unary: Arc<dyn Executor> = Arc::new(UnaryExecutor {
        client: wallet.client.clone(),
        query: wallet.query.clone(),
        accounts: accounts.clone(),
    });
    let bar = driver::run_progress(args.duration, args.no_progress);
    let budget = Arc::new(Budget::new(args.duration, args.requests));
    let deadline = Instant::now() + args.duration;
    let ticker = tokio::spawn(driver::ticker(recorder.clone(), bar.clone()));

    let mut watchers = Vec::new();
    if let Some(query) = &wallet.query {
        for w in 0..args.watchers {
            let mut generator = Generator::new(accounts, mix, limits::CLIENTS_MAX + w);
            let mut ids: Vec<String> = (0..args.watch_accounts)
                .map(|_| accounts.id(generator.pick_account(accounts)))
                .collect();
            ids.sort();
            ids.dedup();
            watchers.push(tokio::spawn(watcher(
                query.clone(),
                ids,
                recorder.clone(),
                deadline,
            )));
        }
    }

    let rate_per_client = args.rate.map(|rate| rate as f64 / f64::from(args.clients));
    let mut clients = Vec::new();
    for c in 0..args.clients {
        let generator = Generator::new(accounts, mix, c);
        let pacer = Pacer::new(rate_per_client, f64::from(c) / f64::from(args.clients));
        let (accounts, recorder, budget) = (accounts.clone(), recorder.clone(), budget.clone());
        clients.push(match args.api {
            Api::Unary => {
                let in_flight = if pacer.is_open_loop() {
                    args.in_flight
                } else {
                    1
                };
                tokio::spawn(driver::unary_client(
                    unary.clone(),
                    generator,
                    accounts,
                    recorder,
                    budget,
                    pacer,
                    in_flight as usize,
                ))
            }
            Api::Stream => tokio::spawn(stream_client(
                wallet.clone(),
                unary.clone(),
                generator,
                accounts,
                recorder,
                budget,
                pacer,
                args.in_flight as usize,
            )),
        });
    }
    for client in clients {
        client.await.context("client task")?;
    }
    ticker.abort();
    recorder.tick();
    bar.finish_and_clear();
    for watcher in watchers {
        watcher.await.context("watcher task")?;
    }
    Ok(())
}

/// Prepares a run: readiness, partitions, accounts and their funding.
pub async fn prepare(wallet: &Wallet, config: &Config) -> anyhow::Result<Arc<Accounts>> {
    let partitions = wallet.wait_ready(config.args.wait_ready).await?;
    if let Some(p) = config.args.partitions
        && p != partitions
    {
        bail!("--partitions {p} given, but the cluster has {partitions} partitions");
    }
    let accounts = Arc::new(Accounts::new(
        &config.run_id,
        config.args.accounts,
        partitions,
    ));
    wallet.setup(&accounts, config).await?;
    if let Some(wait_max) = config.args.settle_after_setup {
        let started = Instant::now();
        wallet.read_node_caught_up(&accounts, wait_max).await?;
        tracing::info!(
            seconds = started.elapsed().as_secs_f64(),
            "the read node caught up with setup"
        );
    } else if config.args.watchers > 0 {
        // A watch of an account the read node has not folded yet would be NOT_FOUND.
        wallet
            .read_node_caught_up(&accounts, limits::SETTLE_WAIT_MAX)
            .await?;
    }
    Ok(accounts)
}

/// The balance each slot started the run with.
pub fn initial_balance(accounts: &Accounts, slot: u32, initial_minor: i64) -> i64 {
    if accounts.is_issuer(slot) {
        let group = &accounts.by_partition[(slot - accounts.count) as usize];
        -(initial_minor * group.len() as i64)
    } else {
        initial_minor
    }
}

/// Which slots to read back: all of them when within the limit; else every issuer and
/// every slot the run moved money on, then a seeded sample of the rest (or of the touched
/// ones if even they exceed the limit).
pub fn slots_to_check(accounts: &Accounts, deltas: &[i64], limit: u32, seed: u64) -> Vec<u32> {
    let slots = accounts.slots();
    if slots <= limit {
        return (0..slots).collect();
    }
    let mut rng = SmallRng::seed_from_u64(seed);
    let issuers: Vec<u32> = (accounts.count..slots).collect();
    let touched: Vec<u32> = (0..accounts.count)
        .filter(|&s| deltas[s as usize] != 0)
        .collect();
    let budget = (limit as usize).saturating_sub(issuers.len());
    let mut chosen = issuers;
    if touched.len() >= budget {
        chosen.extend(
            sample(&mut rng, touched.len(), budget)
                .into_iter()
                .map(|i| touched[i]),
        );
    } else {
        let untouched: Vec<u32> = (0..accounts.count)
            .filter(|&s| deltas[s as usize] == 0)
            .collect();
        let extra = (budget - touched.len()).min(untouched.len());
        chosen.extend(touched);
        chosen.extend(
            sample(&mut rng, untouched.len(), extra)
                .into_iter()
                .map(|i| untouched[i]),
        );
    }
    chosen.sort_unstable();
    chosen
}

/// Checks the run's invariants through the API; see [`Verification`].
pub async fn verify(
    wallet: &Wallet,
    accounts: &Arc<Accounts>,
    recorder: &Recorder,
    config: &Config,
) -> anyhow::Result<Verification> {
    let args = &config.args;
    let mut v = Verification::new(u64::from(accounts.slots()));
    let (mut deltas, unknown, acked, dropped) = {
        let g = recorder.lock();
        (
            g.deltas.clone(),
            g.unknown.clone(),
            g.acked_sample.clone(),
            g.unknown_dropped,
        )
    };
    if dropped > 0 {
        v.violation(format!(
            "{dropped} transfers with an unknown outcome beyond the {} kept: exactly-once cannot be checked for them",
            limits::UNKNOWN_OUTCOMES_MAX
        ));
    }

    // 1. Settle: cross-partition transfers still in flight finish (the leaders drive them).
    let deadline = Instant::now() + limits::SETTLE_WAIT_MAX;
    loop {
        let (_, in_flight) = wallet.applied_positions(accounts.partitions).await;
        if in_flight == 0 {
            break;
        }
        if Instant::now() >= deadline {
            v.violation(format!(
                "{in_flight} cross-partition transfers still in flight after {:?}",
                limits::SETTLE_WAIT_MAX
            ));
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    // 2. Unknown outcomes: ask the ledger what became of each; applied ones join the fold.
    let hidden = args.no_progress;
    v.unknown_outcomes = unknown.len() as u64 + dropped;
    let bar = driver::step_progress(hidden, "resolving unknowns", unknown.len() as u64);
    let resolved: Vec<(TransferOp, Result<Option<bool>, String>)> = futures::stream::iter(unknown)
        .map(|op| {
            let client = wallet.client.clone();
            let accounts = accounts.clone();
            async move { (op, transfer_applied(&client, &accounts, &op).await) }
        })
        .buffer_unordered(args.setup_concurrency)
        .inspect(|_| bar.inc(1))
        .collect()
        .await;
    bar.finish_and_clear();
    for (op, result) in resolved {
        match result {
            Ok(Some(true)) => {
                v.unknown_applied += 1;
                deltas[op.from as usize] -= op.amount_minor;
                deltas[op.to as usize] += op.amount_minor;
            }
            Ok(Some(false)) | Ok(None) => v.unknown_not_applied += 1,
            Err(problem) => v.violation(format!("transfer {} (outcome unknown): {problem}", op.id)),
        }
    }

    // 3. Balances: GetAccount (linearizable) against the fold of acknowledged transfers.
    let slots = slots_to_check(accounts, &deltas, args.verify_accounts, args.seed);
    v.accounts_checked = slots.len() as u64;
    let bar = driver::step_progress(hidden, "checking balances", slots.len() as u64);
    let observed: Vec<(u32, Result<i64, String>)> = futures::stream::iter(slots)
        .map(|slot| {
            let client = wallet.client.clone();
            let id = accounts.id(slot);
            async move {
                let balance = client
                    .get_account(&id)
                    .await
                    .map_err(|e| e.to_string())
                    .and_then(|r| {
                        r.account
                            .map(|a| a.balance_minor)
                            .ok_or_else(|| "no account".into())
                    });
                (slot, balance)
            }
        })
        .buffer_unordered(args.setup_concurrency)
        .inspect(|_| bar.inc(1))
        .collect()
        .await;
    bar.finish_and_clear();
    let mut balances = HashMap::with_capacity(observed.len());
    let mut sum: i128 = 0;
    for (slot, result) in observed {
        let id = accounts.id(slot);
        match result {
            Ok(balance) => {
                let expected = initial_balance(accounts, slot, config.initial_balance_minor)
                    + deltas[slot as usize];
                if balance != expected {
                    v.balance_mismatches += 1;
                    v.violation(format!(
                        "{id}: balance {} but the acknowledged transfers make it {}",
                        usd(balance),
                        usd(expected)
                    ));
                }
                if balance < 0 && !accounts.is_issuer(slot) {
                    v.negative_accounts += 1;
                    v.violation(format!(
                        "{id}: ordinary account is negative ({})",
                        usd(balance)
                    ));
                }
                sum += i128::from(balance);
                balances.insert(slot, balance);
            }
            Err(e) => v.violation(format!("GetAccount {id}: {e}")),
        }
    }
    v.set_conservation(sum, accounts.slots());

    // 4. Acknowledged transfers, one by one: COMPLETED, with the amount and accounts sent.
    let sample: Vec<TransferOp> = acked.into_iter().take(args.verify_transfers).collect();
    v.transfers_checked = sample.len() as u64;
    let checked: Vec<(TransferOp, Result<Option<bool>, String>)> = futures::stream::iter(sample)
        .map(|op| {
            let client = wallet.client.clone();
            let accounts = accounts.clone();
            async move { (op, transfer_applied(&client, &accounts, &op).await) }
        })
        .buffer_unordered(args.setup_concurrency)
        .collect()
        .await;
    for (op, result) in checked {
        match result {
            Ok(Some(true)) => {}
            Ok(other) => {
                v.transfer_mismatches += 1;
                v.violation(format!(
                    "acknowledged transfer {} is {}",
                    op.id,
                    match other {
                        Some(_) => "not COMPLETED",
                        None => "unknown to the ledger",
                    }
                ));
            }
            Err(problem) => {
                v.transfer_mismatches += 1;
                v.violation(format!("acknowledged transfer {}: {problem}", op.id));
            }
        }
    }

    // 5. The read node, once it has applied what the write nodes have: same balances.
    if let Some(query) = &wallet.query {
        match wallet
            .read_node_caught_up(accounts, limits::SETTLE_WAIT_MAX)
            .await
        {
            Err(e) => v.violation(format!("{e:#}")),
            Ok(tokens) => {
                let mut slots: Vec<u32> = balances.keys().copied().collect();
                slots.sort_unstable();
                slots.truncate(limits::READ_NODE_CHECK_MAX);
                v.read_node_checked = slots.len() as u64;
                let answers: Vec<(u32, Result<i64, String>)> = futures::stream::iter(slots)
                    .map(|slot| {
                        let query = query.clone();
                        let id = accounts.id(slot);
                        let token = tokens[accounts.partition(slot) as usize].clone();
                        async move {
                            let answer = query
                                .balance(&id, Some(&token))
                                .await
                                .map(|b| b.balance.map_or(i64::MIN, |b| b.balance_minor))
                                .map_err(|e| e.to_string());
                            (slot, answer)
                        }
                    })
                    .buffer_unordered(args.setup_concurrency)
                    .collect()
                    .await;
                for (slot, answer) in answers {
                    match answer {
                        Ok(balance) if balance == balances[&slot] => {}
                        Ok(balance) => {
                            v.read_node_mismatches += 1;
                            v.violation(format!(
                                "read node: {} has {} where GetAccount says {}",
                                accounts.id(slot),
                                usd(balance),
                                usd(balances[&slot])
                            ));
                        }
                        Err(e) => {
                            v.read_node_mismatches += 1;
                            v.violation(format!("read node GetBalance {}: {e}", accounts.id(slot)));
                        }
                    }
                }
            }
        }
    }
    Ok(v)
}

/// What the ledger says about a transfer: Some(true) completed as sent, Some(false)
/// rejected, None unknown to it; Err if it completed with other parameters or could not be
/// read. In-flight transfers are waited for (the source leader settles them).
async fn transfer_applied(
    client: &WalletClient,
    accounts: &Accounts,
    op: &TransferOp,
) -> Result<Option<bool>, String> {
    let deadline = Instant::now() + limits::SETTLE_WAIT_MAX;
    loop {
        match client.get_transfer(op.id).await {
            Ok(t) if t.status == TransferStatus::Completed as i32 => {
                let expected = sdk_transfer(op, accounts);
                if t.amount != expected.amount
                    || t.from_account != expected.from
                    || t.to_account != expected.to
                {
                    return Err(format!(
                        "COMPLETED as {} {} -> {}, sent as {} {} -> {}",
                        t.amount,
                        t.from_account,
                        t.to_account,
                        expected.amount,
                        expected.from,
                        expected.to
                    ));
                }
                return Ok(Some(true));
            }
            Ok(t) if t.status == TransferStatus::Rejected as i32 => return Ok(Some(false)),
            Ok(_) if Instant::now() < deadline => {}
            Ok(_) => return Err("still IN_FLIGHT".into()),
            Err(e) if e.code() == Code::NotFound => return Ok(None),
            Err(e) if !e.is_definite() && Instant::now() < deadline => {}
            Err(e) => return Err(format!("GetTransfer: {e}")),
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stream_results_map_to_outcomes() {
        let ok = TransferResult {
            transaction_id: "x".into(),
            status: "success".into(),
            consistency_token: "v1.0.1".into(),
            error: None,
            replayed: false,
        };
        assert_eq!(outcome(&ok), Ok(()));
        let rejected = TransferResult {
            status: "rejected".into(),
            error: Some(wallet_client::pb::TransferError {
                code: 9,
                reason: "INSUFFICIENT_FUNDS".into(),
                message: String::new(),
                field: String::new(),
            }),
            ..ok.clone()
        };
        let f = outcome(&rejected).unwrap_err();
        assert_eq!(
            (f.code.as_str(), f.reason.as_str(), f.definite),
            ("FAILED_PRECONDITION", "INSUFFICIENT_FUNDS", true)
        );
        let unavailable = TransferResult {
            status: "unavailable".into(),
            error: Some(wallet_client::pb::TransferError {
                code: 14,
                reason: "NOT_LEADER".into(),
                message: String::new(),
                field: String::new(),
            }),
            ..ok
        };
        let f = outcome(&unavailable).unwrap_err();
        assert_eq!((f.code.as_str(), f.definite), ("UNAVAILABLE", false));
    }

    #[test]
    fn initial_balances_sum_to_zero() {
        let accounts = Accounts::new("init", 300, 4);
        let sum: i64 = (0..accounts.slots())
            .map(|s| initial_balance(&accounts, s, 1_000))
            .sum();
        assert_eq!(sum, 0);
    }

    #[test]
    fn checked_slots_cover_touched_accounts_within_the_limit() {
        let accounts = Accounts::new("chk", 1_000, 4);
        let mut deltas = vec![0i64; accounts.slots() as usize];
        for s in [3usize, 10, 500] {
            deltas[s] = 5;
        }
        assert_eq!(slots_to_check(&accounts, &deltas, 2_000, 1).len(), 1_004);
        let some = slots_to_check(&accounts, &deltas, 100, 1);
        assert_eq!(some.len(), 100);
        for s in [3, 10, 500, 1_000, 1_003] {
            assert!(some.contains(&s), "{s}");
        }
        let tight = slots_to_check(&accounts, &deltas, 6, 1);
        assert_eq!(tight.len(), 6);
    }
}
