//! Rough throughput of a running cluster, for orientation: `clients` concurrent callers doing
//! unary `Transfer`s, then as many pipelined `SubmitTransfers` streams, each for `seconds`,
//! with `cross_percent` of the transfers crossing partitions. The real benchmark tool (open
//! loop, percentiles, verification, PostgreSQL side by side) is `wallet-loadtest`.
//!
//! ```sh
//! walletctl dev &                                   # a local cluster (8 partitions)
//! cargo run --example throughput -- 64 5 50         # 64 clients, 5 s per phase, 50% cross
//! ```

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use wallet_client::pb::TransferRequest;
use wallet_client::pb::wallet_service_client::WalletServiceClient;
use wallet_client::{ClientConfig, Transfer, WalletClient, new_transaction_id};

/// Recipient accounts per partition.
const ACCOUNTS_PER_PARTITION: usize = 64;

/// Issuers (one per partition, allowed to go negative) and recipients grouped by partition.
struct Accounts {
    issuers: Vec<String>,
    recipients: Vec<Vec<String>>,
}

impl Accounts {
    /// The i-th transfer of a run: from the issuer of partition `i mod P` to an account in the
    /// same partition, or (for `cross_percent` of the indexes) in the next one.
    fn pick(&self, index: u64, cross_percent: u64) -> (String, String) {
        let partitions = self.issuers.len();
        let source = index as usize % partitions;
        let cross = (index.wrapping_mul(7_919) % 100) < cross_percent;
        let target = if cross {
            (source + 1) % partitions
        } else {
            source
        };
        let recipients = &self.recipients[target];
        let to = &recipients[(index as usize / partitions) % recipients.len()];
        (self.issuers[source].clone(), to.clone())
    }
}

async fn open_accounts(
    client: &WalletClient,
    partitions: u32,
    run: &str,
) -> anyhow::Result<Accounts> {
    let mut issuers = vec![String::new(); partitions as usize];
    let mut recipients = vec![Vec::new(); partitions as usize];
    let mut candidate = 0u64;
    while issuers.iter().any(String::is_empty)
        || recipients
            .iter()
            .any(|group| group.len() < ACCOUNTS_PER_PARTITION)
    {
        let id = format!("bench-{run}-{candidate}");
        candidate += 1;
        let partition = ledger::partition_of(&id, partitions) as usize;
        if issuers[partition].is_empty() {
            client.open_account(&id, "USD", true).await?;
            issuers[partition] = id;
        } else if recipients[partition].len() < ACCOUNTS_PER_PARTITION {
            client.open_account(&id, "USD", false).await?;
            recipients[partition].push(id);
        }
    }
    Ok(Accounts {
        issuers,
        recipients,
    })
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let clients: u64 = args
        .next()
        .map(|text| text.parse())
        .transpose()?
        .unwrap_or(16);
    let seconds: u64 = args
        .next()
        .map(|text| text.parse())
        .transpose()?
        .unwrap_or(5);
    let cross_percent: u64 = args
        .next()
        .map(|text| text.parse())
        .transpose()?
        .unwrap_or(50)
        .min(100);
    let endpoints = ["127.0.0.1:50051", "127.0.0.1:50052", "127.0.0.1:50053"]
        .map(String::from)
        .to_vec();
    let client = WalletClient::connect(ClientConfig::new(endpoints.clone())).await?;
    let partitions = client
        .cluster_status(false)
        .await
        .into_iter()
        .find_map(|(_, status)| status.ok())
        .map(|status| status.partitions.len() as u32)
        .ok_or_else(|| anyhow::anyhow!("no node answered"))?;
    let accounts = Arc::new(
        open_accounts(
            &client,
            partitions,
            &new_transaction_id().simple().to_string()[..8],
        )
        .await?,
    );

    // Phase 1: closed loop, unary calls through the SDK (routing by partition leader).
    let done = Arc::new(AtomicU64::new(0));
    let deadline = Instant::now() + Duration::from_secs(seconds);
    let started = Instant::now();
    let mut tasks = Vec::new();
    for worker in 0..clients {
        let (client, done, accounts) = (client.clone(), done.clone(), accounts.clone());
        tasks.push(tokio::spawn(async move {
            let mut index = worker;
            while Instant::now() < deadline {
                let (from, to) = accounts.pick(index, cross_percent);
                let transfer = Transfer {
                    transaction_id: new_transaction_id(),
                    from,
                    to,
                    amount: "0.01".into(),
                    currency: "USD".into(),
                    ..Default::default()
                };
                client.transfer(&transfer).await.expect("transfer");
                done.fetch_add(1, Ordering::Relaxed);
                index += clients;
            }
        }));
    }
    for task in tasks {
        task.await?;
    }
    let unary = done.load(Ordering::Relaxed) as f64 / started.elapsed().as_secs_f64();
    println!(
        "partitions={partitions} cross={cross_percent}% unary Transfer, {clients} clients: {unary:.0} transfers/s"
    );

    // Phase 2: one SubmitTransfers stream per partition, to that partition's leader, carrying
    // transfers whose source account is in that partition.
    let statuses = client.cluster_status(false).await;
    let mut leader_of = vec![String::new(); partitions as usize];
    for (endpoint, status) in &statuses {
        if let Ok(status) = status {
            for partition in &status.partitions {
                if partition.role == "leader" {
                    leader_of[partition.partition as usize] = endpoint.clone();
                }
            }
        }
    }
    let succeeded = Arc::new(AtomicU64::new(0));
    let failed = Arc::new(AtomicU64::new(0));
    let deadline = Instant::now() + Duration::from_secs(seconds);
    let started = Instant::now();
    let mut tasks = Vec::new();
    for (source, endpoint) in leader_of.iter().enumerate() {
        let mut raw = WalletServiceClient::connect(format!("http://{endpoint}")).await?;
        let (requests_tx, requests_rx) = tokio::sync::mpsc::channel(4_096);
        let accounts = accounts.clone();
        tokio::spawn(async move {
            let mut index = source as u64;
            while Instant::now() < deadline {
                let (from, to) = accounts.pick(index, cross_percent);
                let request = TransferRequest {
                    transaction_id: new_transaction_id().to_string(),
                    from_account: from,
                    to_account: to,
                    amount: "0.01".into(),
                    currency: "USD".into(),
                    ..Default::default()
                };
                if requests_tx.send(request).await.is_err() {
                    return;
                }
                index += accounts.issuers.len() as u64;
            }
        });
        let (succeeded, failed) = (succeeded.clone(), failed.clone());
        tasks.push(tokio::spawn(async move {
            let mut results = raw
                .submit_transfers(tokio_stream::wrappers::ReceiverStream::new(requests_rx))
                .await
                .expect("stream")
                .into_inner();
            while let Ok(Some(result)) = results.message().await {
                let counter = if result.status == "success" {
                    &succeeded
                } else {
                    &failed
                };
                counter.fetch_add(1, Ordering::Relaxed);
            }
        }));
    }
    for task in tasks {
        task.await?;
    }
    let streamed = succeeded.load(Ordering::Relaxed) as f64 / started.elapsed().as_secs_f64();
    println!(
        "partitions={partitions} cross={cross_percent}% SubmitTransfers, {} streams: {streamed:.0} transfers/s ({} not successful)",
        leader_of.len(),
        failed.load(Ordering::Relaxed)
    );
    Ok(())
}
