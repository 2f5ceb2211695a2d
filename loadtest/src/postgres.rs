//! The PostgreSQL side-by-side: the same accounts and the same seeded transfers, one
//! database transaction per transfer (insert the transfer with its id as primary key, debit
//! with a balance check, credit), `synchronous_commit = on`, one connection per client.
//!
//! Tables live in the schema `wallet_loadtest`, dropped and recreated at every run. Setup
//! inserts the funded accounts directly (that is setup, not the measured workload).

use std::collections::HashMap;
use std::sync::Arc;

use anyhow::{Context, bail};
use futures::future::BoxFuture;
use tokio::time::Instant;
use tokio_postgres::error::SqlState;
use tokio_postgres::{Client, NoTls, Statement};

use crate::cli::Config;
use crate::driver::{self, Budget, Executor, Pacer};
use crate::recorder::{Failure, Recorder};
use crate::report::Verification;
use crate::wallet::initial_balance;
use crate::workload::{Accounts, Generator, Mix, TransferOp, usd};

const SCHEMA: &str = "
DROP SCHEMA IF EXISTS wallet_loadtest CASCADE;
CREATE SCHEMA wallet_loadtest;
CREATE TABLE wallet_loadtest.accounts (
    id text PRIMARY KEY,
    currency char(3) NOT NULL,
    allow_negative boolean NOT NULL,
    balance bigint NOT NULL
);
CREATE TABLE wallet_loadtest.transfers (
    id uuid PRIMARY KEY,
    from_account text NOT NULL,
    to_account text NOT NULL,
    amount bigint NOT NULL CHECK (amount > 0),
    currency char(3) NOT NULL,
    committed_at timestamptz NOT NULL DEFAULT now()
);
";

/// Rows per INSERT while loading accounts.
const LOAD_BATCH: u32 = 10_000;

async fn connect(url: &str) -> anyhow::Result<Client> {
    let (client, connection) = tokio_postgres::connect(url, NoTls)
        .await
        .with_context(|| format!("connecting to PostgreSQL ({url})"))?;
    tokio::spawn(async move {
        if let Err(e) = connection.await {
            tracing::debug!(error = %e, "PostgreSQL connection ended");
        }
    });
    // Durable commits, like the wallet's fsync'd raft log.
    client.batch_execute("SET synchronous_commit = on").await?;
    Ok(client)
}

/// The server's durability settings, to print next to the figures.
pub async fn durability(url: &str) -> anyhow::Result<String> {
    let client = connect(url).await?;
    let mut parts = Vec::new();
    for setting in [
        "server_version",
        "fsync",
        "synchronous_commit",
        "wal_sync_method",
    ] {
        let row = client.query_one(&format!("SHOW {setting}"), &[]).await?;
        parts.push(format!("{setting}={}", row.get::<_, String>(0)));
    }
    Ok(parts.join(" "))
}

/// Waits for the server, recreates the schema and loads the funded accounts.
pub async fn prepare(config: &Config, partitions: u32) -> anyhow::Result<Arc<Accounts>> {
    let url = &config.args.postgres;
    let deadline = Instant::now() + config.args.wait_ready;
    let client = loop {
        match connect(url).await {
            Ok(client) => break client,
            Err(e) if Instant::now() >= deadline => return Err(e),
            Err(_) => tokio::time::sleep(std::time::Duration::from_millis(200)).await,
        }
    };
    let settings = durability(url).await?;
    if settings.contains("fsync=off") {
        bail!("PostgreSQL runs with fsync=off ({settings}): not comparable to the fsync'd wallet");
    }
    client
        .batch_execute(SCHEMA)
        .await
        .context("creating the schema")?;
    let accounts = Arc::new(Accounts::new(
        &config.run_id,
        config.args.accounts,
        partitions,
    ));
    let bar = driver::step_progress(
        config.args.no_progress,
        "loading accounts",
        u64::from(accounts.slots()),
    );
    let insert = client
        .prepare(
            "INSERT INTO wallet_loadtest.accounts (id, currency, allow_negative, balance)
             SELECT id, 'USD', neg, bal FROM unnest($1::text[], $2::bool[], $3::int8[]) AS t(id, neg, bal)",
        )
        .await?;
    let mut start = 0;
    while start < accounts.slots() {
        let end = (start + LOAD_BATCH).min(accounts.slots());
        let ids: Vec<String> = (start..end).map(|s| accounts.id(s)).collect();
        let negative: Vec<bool> = (start..end).map(|s| accounts.is_issuer(s)).collect();
        let balances: Vec<i64> = (start..end)
            .map(|s| initial_balance(&accounts, s, config.initial_balance_minor))
            .collect();
        client
            .execute(&insert, &[&ids, &negative, &balances])
            .await?;
        bar.inc(u64::from(end - start));
        start = end;
    }
    bar.finish_and_clear();
    client
        .batch_execute("ANALYZE wallet_loadtest.accounts")
        .await?;
    Ok(accounts)
}

/// One connection's prepared statements.
struct PgExecutor {
    client: Client,
    insert: Statement,
    debit: Statement,
    credit: Statement,
    read: Statement,
    accounts: Arc<Accounts>,
}

impl PgExecutor {
    async fn new(url: &str, accounts: Arc<Accounts>) -> anyhow::Result<PgExecutor> {
        let client = connect(url).await?;
        let insert = client
            .prepare(
                "INSERT INTO wallet_loadtest.transfers (id, from_account, to_account, amount, currency)
                 VALUES ($1, $2, $3, $4, 'USD')",
            )
            .await?;
        let debit = client
            .prepare(
                "UPDATE wallet_loadtest.accounts SET balance = balance - $2
                 WHERE id = $1 AND (allow_negative OR balance >= $2)",
            )
            .await?;
        let credit = client
            .prepare("UPDATE wallet_loadtest.accounts SET balance = balance + $2 WHERE id = $1")
            .await?;
        let read = client
            .prepare("SELECT balance FROM wallet_loadtest.accounts WHERE id = $1")
            .await?;
        Ok(PgExecutor {
            client,
            insert,
            debit,
            credit,
            read,
            accounts,
        })
    }

    /// One transfer as one transaction. Rows are locked in account-id order (debit or credit
    /// first, whichever account sorts first) so two opposite transfers never deadlock.
    async fn transfer_tx(&self, op: TransferOp) -> Result<(), Failure> {
        let (from, to) = (self.accounts.id(op.from), self.accounts.id(op.to));
        let c = &self.client;
        c.batch_execute("BEGIN").await.map_err(pg_failure)?;
        let body = async {
            c.execute(&self.insert, &[&op.id, &from, &to, &op.amount_minor])
                .await?;
            let steps = if from < to {
                [true, false]
            } else {
                [false, true]
            };
            for debit in steps {
                let rows = if debit {
                    c.execute(&self.debit, &[&from, &op.amount_minor]).await?
                } else {
                    c.execute(&self.credit, &[&to, &op.amount_minor]).await?
                };
                if rows != 1 {
                    return Ok(Some(if debit {
                        "INSUFFICIENT_FUNDS"
                    } else {
                        "ACCOUNT_NOT_FOUND"
                    }));
                }
            }
            Ok::<_, tokio_postgres::Error>(None)
        };
        match body.await {
            Ok(None) => c.batch_execute("COMMIT").await.map_err(pg_failure),
            Ok(Some(reason)) => {
                c.batch_execute("ROLLBACK").await.map_err(pg_failure)?;
                Err(Failure {
                    code: "FAILED_PRECONDITION".into(),
                    reason: reason.into(),
                    definite: true,
                })
            }
            Err(e) => {
                let failure = pg_failure(e);
                // A failed statement aborts the transaction; end it so the connection is usable.
                let _ = c.batch_execute("ROLLBACK").await;
                Err(failure)
            }
        }
    }
}

/// A PostgreSQL error in the wallet's vocabulary (gRPC code + reason).
fn pg_failure(error: tokio_postgres::Error) -> Failure {
    let (code, reason, definite) = match error.code() {
        Some(state) if *state == SqlState::UNIQUE_VIOLATION => {
            ("ALREADY_EXISTS", "TRANSACTION_ID_REUSED", true)
        }
        Some(state) if *state == SqlState::T_R_DEADLOCK_DETECTED => ("ABORTED", "DEADLOCK", true),
        Some(state) if *state == SqlState::T_R_SERIALIZATION_FAILURE => {
            ("ABORTED", "SERIALIZATION_FAILURE", true)
        }
        Some(state) => ("INTERNAL", state.code(), true),
        // No SQLSTATE: the connection failed, and a COMMIT may or may not have happened.
        None => ("UNAVAILABLE", "CONNECTION_ERROR", false),
    };
    Failure {
        code: code.into(),
        reason: reason.into(),
        definite,
    }
}

/// Each executor is used by exactly one client with one operation outstanding, so the
/// connection's BEGIN..COMMIT never interleaves with another transaction.
struct Shared(Arc<PgExecutor>);

impl Executor for Shared {
    fn transfer(&self, op: TransferOp) -> BoxFuture<'static, Result<(), Failure>> {
        let executor = self.0.clone();
        Box::pin(async move { executor.transfer_tx(op).await })
    }

    fn read(&self, slot: u32) -> BoxFuture<'static, Result<(), Failure>> {
        let executor = self.0.clone();
        Box::pin(async move {
            let id = executor.accounts.id(slot);
            executor
                .client
                .query_one(&executor.read, &[&id])
                .await
                .map(drop)
                .map_err(pg_failure)
        })
    }
}

/// The measured phase: one connection per client, one operation outstanding per connection
/// (closed loop, or open loop at the client's share of `--rate`).
pub async fn run_phase(
    accounts: &Arc<Accounts>,
    recorder: &Arc<Recorder>,
    config: &Config,
    mix: Mix,
) -> anyhow::Result<()> {
    let args = &config.args;
    let mut executors = Vec::new();
    for _ in 0..args.clients {
        executors.push(Arc::new(
            PgExecutor::new(&args.postgres, accounts.clone()).await?,
        ));
    }
    let bar = driver::run_progress(args.duration, args.no_progress);
    let budget = Arc::new(Budget::new(args.duration, args.requests));
    let ticker = tokio::spawn(driver::ticker(recorder.clone(), bar.clone()));
    let rate_per_client = args.rate.map(|rate| rate as f64 / f64::from(args.clients));
    let mut clients = Vec::new();
    for (c, executor) in executors.into_iter().enumerate() {
        let c = c as u32;
        clients.push(tokio::spawn(driver::unary_client(
            Arc::new(Shared(executor)),
            Generator::new(accounts, mix, c),
            accounts.clone(),
            recorder.clone(),
            budget.clone(),
            Pacer::new(rate_per_client, f64::from(c) / f64::from(args.clients)),
            1,
        )));
    }
    for client in clients {
        client.await.context("client task")?;
    }
    ticker.abort();
    recorder.tick();
    bar.finish_and_clear();
    Ok(())
}

/// The same checks as for the wallet, with SQL: balances against the fold, conservation,
/// no ordinary account negative, and the acknowledged transfers present exactly as sent.
pub async fn verify(
    accounts: &Arc<Accounts>,
    recorder: &Recorder,
    config: &Config,
) -> anyhow::Result<Verification> {
    let client = connect(&config.args.postgres).await?;
    let mut v = Verification::new(u64::from(accounts.slots()));
    let (mut deltas, unknown, acked) = {
        let g = recorder.lock();
        (g.deltas.clone(), g.unknown.clone(), g.acked_sample.clone())
    };
    let lookup = client
        .prepare(
            "SELECT from_account, to_account, amount FROM wallet_loadtest.transfers WHERE id = $1",
        )
        .await?;
    v.unknown_outcomes = unknown.len() as u64;
    for op in &unknown {
        if client.query_opt(&lookup, &[&op.id]).await?.is_some() {
            v.unknown_applied += 1;
            deltas[op.from as usize] -= op.amount_minor;
            deltas[op.to as usize] += op.amount_minor;
        } else {
            v.unknown_not_applied += 1;
        }
    }
    let rows = client
        .query(
            "SELECT id, balance, allow_negative FROM wallet_loadtest.accounts",
            &[],
        )
        .await?;
    let mut balances = HashMap::with_capacity(rows.len());
    for row in &rows {
        let id: String = row.get(0);
        balances.insert(id, (row.get::<_, i64>(1), row.get::<_, bool>(2)));
    }
    let total: i64 = client
        .query_one(
            "SELECT COALESCE(sum(balance), 0)::int8 FROM wallet_loadtest.accounts",
            &[],
        )
        .await?
        .get(0);
    // Every row was read anyway: check them all.
    v.accounts_checked = u64::from(accounts.slots());
    for slot in 0..accounts.slots() {
        let id = accounts.id(slot);
        let Some(&(balance, allow_negative)) = balances.get(&id) else {
            v.violation(format!("{id}: missing"));
            continue;
        };
        let expected =
            initial_balance(accounts, slot, config.initial_balance_minor) + deltas[slot as usize];
        if balance != expected {
            v.balance_mismatches += 1;
            v.violation(format!(
                "{id}: balance {} but the acknowledged transfers make it {}",
                usd(balance),
                usd(expected)
            ));
        }
        if balance < 0 && !allow_negative {
            v.negative_accounts += 1;
            v.violation(format!("{id}: ordinary account is negative"));
        }
    }
    v.set_conservation(i128::from(total), accounts.slots());
    let sample: Vec<TransferOp> = acked
        .into_iter()
        .take(config.args.verify_transfers)
        .collect();
    v.transfers_checked = sample.len() as u64;
    for op in sample {
        match client.query_opt(&lookup, &[&op.id]).await? {
            Some(row)
                if row.get::<_, String>(0) == accounts.id(op.from)
                    && row.get::<_, String>(1) == accounts.id(op.to)
                    && row.get::<_, i64>(2) == op.amount_minor => {}
            Some(_) => {
                v.transfer_mismatches += 1;
                v.violation(format!("transfer {} stored with other parameters", op.id));
            }
            None => {
                v.transfer_mismatches += 1;
                v.violation(format!("acknowledged transfer {} is missing", op.id));
            }
        }
    }
    Ok(v)
}
