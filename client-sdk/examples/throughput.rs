//! Rough throughput of a running cluster: `clients` concurrent callers doing unary `Transfer`s
//! for a few seconds, then one pipelined `SubmitTransfers` stream. For orientation only: the
//! real benchmark tool (open loop, percentiles, verification) is `wallet-loadtest`.
//!
//! ```sh
//! walletctl dev &            # a local cluster
//! cargo run --example throughput -- 64 5   # 64 unary clients, 5 seconds each phase
//! ```

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use wallet_client::pb::TransferRequest;
use wallet_client::pb::wallet_service_client::WalletServiceClient;
use wallet_client::{ClientConfig, Transfer, WalletClient, new_transaction_id};

const ACCOUNTS: usize = 1_000;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let clients: usize = args
        .next()
        .map(|text| text.parse())
        .transpose()?
        .unwrap_or(16);
    let seconds: u64 = args
        .next()
        .map(|text| text.parse())
        .transpose()?
        .unwrap_or(5);
    let endpoints = ["127.0.0.1:50051", "127.0.0.1:50052", "127.0.0.1:50053"]
        .map(String::from)
        .to_vec();
    let client = WalletClient::connect(ClientConfig::new(endpoints)).await?;

    let issuer = format!("bench-issuer-{}", new_transaction_id().simple());
    client.open_account(&issuer, "USD", true).await?;
    let accounts: Arc<Vec<String>> = Arc::new(
        (0..ACCOUNTS)
            .map(|index| format!("bench-{index}"))
            .collect(),
    );
    for account in accounts.iter() {
        client.open_account(account, "USD", false).await?;
    }
    let issuer: Arc<str> = issuer.into();

    // Phase 1: closed loop, unary calls.
    let done = Arc::new(AtomicU64::new(0));
    let deadline = Instant::now() + Duration::from_secs(seconds);
    let mut tasks = Vec::new();
    for worker in 0..clients as u64 {
        let (client, done, issuer, accounts) = (
            client.clone(),
            done.clone(),
            issuer.clone(),
            accounts.clone(),
        );
        tasks.push(tokio::spawn(async move {
            let mut index = worker;
            while Instant::now() < deadline {
                let transfer = Transfer {
                    transaction_id: new_transaction_id(),
                    from: issuer.to_string(),
                    to: accounts[index as usize % ACCOUNTS].clone(),
                    amount: "0.01".into(),
                    currency: "USD".into(),
                };
                client.transfer(&transfer).await.expect("transfer");
                done.fetch_add(1, Ordering::Relaxed);
                index += clients as u64;
            }
        }));
    }
    let started = Instant::now();
    for task in tasks {
        task.await?;
    }
    let unary = done.load(Ordering::Relaxed) as f64 / started.elapsed().as_secs_f64();
    println!("unary Transfer, {clients} clients: {unary:.0} transfers/s");

    // Phase 2: one SubmitTransfers stream to the leader, results counted as they arrive.
    let leader = client
        .leader(0)
        .unwrap_or_else(|| "http://127.0.0.1:50051".into());
    let mut raw = WalletServiceClient::connect(leader).await?;
    let (requests_tx, requests_rx) = tokio::sync::mpsc::channel(4_096);
    let deadline = Instant::now() + Duration::from_secs(seconds);
    let issuer_for_stream = issuer.to_string();
    let accounts_for_stream = accounts.clone();
    tokio::spawn(async move {
        let mut index = 0usize;
        while Instant::now() < deadline {
            let request = TransferRequest {
                transaction_id: new_transaction_id().to_string(),
                from_account: issuer_for_stream.clone(),
                to_account: accounts_for_stream[index % ACCOUNTS].clone(),
                amount: "0.01".into(),
                currency: "USD".into(),
            };
            if requests_tx.send(request).await.is_err() {
                return;
            }
            index += 1;
        }
    });
    let started = Instant::now();
    let mut results = raw
        .submit_transfers(tokio_stream::wrappers::ReceiverStream::new(requests_rx))
        .await?
        .into_inner();
    let (mut succeeded, mut failed) = (0u64, 0u64);
    while let Some(result) = results.message().await? {
        if result.status == "success" {
            succeeded += 1
        } else {
            failed += 1
        }
    }
    let streamed = succeeded as f64 / started.elapsed().as_secs_f64();
    println!("SubmitTransfers, 1 stream: {streamed:.0} transfers/s ({failed} not successful)");
    Ok(())
}
