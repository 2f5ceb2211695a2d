//! Opens an issuer and a user account, funds the user with one transfer, and reads both
//! balances back.
//!
//! Start a local cluster first (`walletctl dev`), then:
//!
//! ```text
//! cargo run -p client-sdk --example transfer
//! WALLET_ENDPOINTS=10.0.0.1:50051,10.0.0.2:50051 cargo run -p client-sdk --example transfer
//! ```
//!
//! It shows the one rule of the client: pick the transaction id once, before the first
//! attempt, and reuse it until the outcome is known. Then a lost answer is harmless.

use wallet_client::{ClientConfig, Error, Transfer, WalletClient, new_transaction_id};

/// The dev cluster's write nodes, used when `WALLET_ENDPOINTS` is not set.
const DEFAULT_ENDPOINTS: &str = "127.0.0.1:50051,127.0.0.1:50052,127.0.0.1:50053";

/// How often the example re-sends a transfer whose outcome came back unknown.
const OUTCOME_RETRIES_MAX: u32 = 3;

#[tokio::main]
async fn main() -> Result<(), Error> {
    let endpoints = std::env::var("WALLET_ENDPOINTS").unwrap_or_else(|_| DEFAULT_ENDPOINTS.into());
    let client = WalletClient::connect(ClientConfig::new(endpoints.split(','))).await?;

    // The issuer may go negative: it is where money enters the ledger. Opening is
    // idempotent, so running the example twice is fine.
    let issuer = client.open_account("example-issuer", "USD", true).await?;
    let user = client.open_account("example-user", "USD", false).await?;
    println!("opened {} and {}", issuer.account_id, user.account_id);

    let transfer = Transfer {
        transaction_id: new_transaction_id(),
        from: issuer.account_id.clone(),
        to: user.account_id.clone(),
        amount: "12.34".into(),
        currency: "USD".into(),
        ..Default::default()
    };
    let mut tries = 0;
    let done = loop {
        // The client already retries internally; this outer loop is what an application
        // does with an *indefinite* error: send the very same transfer (same id) again.
        match client.transfer(&transfer).await {
            Ok(done) => break done,
            Err(e) if !e.is_definite() && tries < OUTCOME_RETRIES_MAX => {
                tries += 1;
                eprintln!(
                    "outcome unknown ({}), asking again with the same id",
                    e.reason()
                );
            }
            Err(e) => return Err(e),
        }
    };
    println!(
        "transfer {} {} (token {})",
        done.transaction_id, done.status, done.consistency_token
    );

    let recorded = client.get_transfer(transfer.transaction_id).await?;
    println!(
        "recorded: {} -> {} {} {}",
        recorded.from_account, recorded.to_account, recorded.amount, recorded.currency
    );

    for id in [&issuer.account_id, &user.account_id] {
        let read = client.get_account(id).await?;
        if let Some(account) = read.account {
            println!(
                "{}: {} {} (at {})",
                account.account_id, account.balance, account.currency, read.position
            );
        }
    }
    Ok(())
}
