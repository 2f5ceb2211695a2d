//! `walletctl balance | watch | history`: the read side, served by a read node.

use futures::StreamExt as _;
use serde_json::{Value, json};
use wallet_client::QueryClient;
use wallet_client::pb::{Balance, BalanceUpdate, HistoryEntry};

use crate::output::Output;

/// `walletctl balance ACCOUNT [--token T]`.
pub async fn balance(
    query: &QueryClient,
    out: &Output,
    account: &str,
    token: Option<&str>,
) -> Result<(), wallet_client::Error> {
    let response = query.balance(account, token).await?;
    let balance = response.balance.unwrap_or_default();
    if out.is_json() {
        out.json_line(&json!({
            "ok": true,
            "balance": balance_json(&balance),
            "position": response.position,
        }));
    } else {
        println!(
            "{}  {}  balance {}  seq {}  position {}",
            balance.account_id,
            balance.currency,
            balance.balance,
            balance.sequence,
            response.position
        );
    }
    Ok(())
}

/// `walletctl watch ACCOUNT...`: one line per pushed update, until Ctrl-C. The SDK resumes
/// the stream after read-node restarts, so this only ends on a definite error.
pub async fn watch(
    query: &QueryClient,
    out: &Output,
    accounts: Vec<String>,
) -> Result<(), wallet_client::Error> {
    let mut updates = query.watch_balances(accounts);
    loop {
        let update = tokio::select! {
            update = updates.next() => update,
            _ = tokio::signal::ctrl_c() => return Ok(()),
        };
        match update {
            Some(Ok(update)) => print_update(out, &update),
            Some(Err(error)) => return Err(error),
            None => return Ok(()),
        }
    }
}

fn print_update(out: &Output, update: &BalanceUpdate) {
    let balance = update.balance.clone().unwrap_or_default();
    if out.is_json() {
        out.json_line(&json!({
            "snapshot": update.snapshot,
            "balance": balance_json(&balance),
            "delta": update.delta,
            "transaction_id": update.transaction_id,
            "counterparty": update.counterparty,
            "position": update.position,
        }));
    } else if update.snapshot {
        println!(
            "{}  {}  balance {}  seq {}  (current)",
            balance.account_id, balance.currency, balance.balance, balance.sequence
        );
    } else {
        println!(
            "{}  {}  balance {}  seq {}  {:>12}  {} {}  {}",
            balance.account_id,
            balance.currency,
            balance.balance,
            balance.sequence,
            update.delta,
            if update.delta_minor < 0 { "to" } else { "from" },
            update.counterparty,
            update.transaction_id
        );
    }
}

/// `walletctl history ACCOUNT [--page-size N] [--page-token T]`: one page, newest first.
pub async fn history(
    query: &QueryClient,
    out: &Output,
    account: &str,
    page_token: Option<&str>,
    page_size: u32,
) -> Result<(), wallet_client::Error> {
    let page = query.history(account, page_token, page_size).await?;
    if out.is_json() {
        let entries: Vec<Value> = page.entries.iter().map(entry_json).collect();
        out.json_line(&json!({
            "ok": true,
            "entries": entries,
            "next_page_token": page.next_page_token,
        }));
        return Ok(());
    }
    for entry in &page.entries {
        println!(
            "seq {:>6}  {:>12}  balance {:>12}  {} {}  {}  {}",
            entry.sequence,
            entry.delta,
            entry.balance_after,
            if entry.delta_minor < 0 { "to" } else { "from" },
            entry.counterparty,
            entry.transaction_id,
            entry.position
        );
    }
    if !page.next_page_token.is_empty() {
        println!("more: --page-token {}", page.next_page_token);
    }
    Ok(())
}

fn balance_json(balance: &Balance) -> Value {
    json!({
        "account_id": balance.account_id,
        "currency": balance.currency,
        "balance": balance.balance,
        "balance_minor": balance.balance_minor,
        "sequence": balance.sequence,
        "partition": balance.partition,
        "index": balance.index,
        "timestamp_ms": balance.timestamp_ms,
    })
}

fn entry_json(entry: &HistoryEntry) -> Value {
    json!({
        "sequence": entry.sequence,
        "transaction_id": entry.transaction_id,
        "delta": entry.delta,
        "balance_after": entry.balance_after,
        "counterparty": entry.counterparty,
        "currency": entry.currency,
        "position": entry.position,
        "timestamp_ms": entry.timestamp_ms,
    })
}
