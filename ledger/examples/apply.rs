//! A single-thread measurement of the pure core: how fast `execute` decides and applies
//! transfers, and what a snapshot's clone and a status digest cost, at a given ledger size.
//! Not a test: it asserts nothing about speed; BENCHMARKS.md quotes its output.
//!
//!   cargo run --release -p ledger --example apply -- [accounts] [transfers] [in-flight-only]
//!
//! With `in-flight-only`, the ledger keeps only in-flight records in memory, as a write node
//! does (its records are on disk): what memory holds then is the accounts alone. The ids
//! are all new, so no decision needs a record from disk.
//!
//! Deterministic: account ids, amounts and transaction ids come from a fixed-seed xorshift.

use std::time::Instant;

use ledger::{Command, Currency, EntryMeta, Ledger, TransferCommand};

fn main() {
    let mut args = std::env::args().skip(1);
    let accounts: u64 = args
        .next()
        .map_or(100_000, |a| a.parse().expect("accounts"));
    let transfers: u64 = args
        .next()
        .map_or(1_000_000, |a| a.parse().expect("transfers"));
    let in_flight_only = args.next().is_some_and(|arg| arg == "in-flight-only");
    let usd = Currency::parse("USD").expect("USD");
    let mut ledger = Ledger::new();
    if in_flight_only {
        ledger.keep_only_in_flight();
    }
    let mut index = 0;
    let mut meta = || {
        index += 1;
        EntryMeta {
            index,
            timestamp_ms: 1_700_000_000_000 + index,
        }
    };
    let id = |n: u64| format!("acct-{n:09}");

    let started = Instant::now();
    let issuer = "issuer".to_string();
    ledger.execute(
        &Command::OpenAccount {
            account_id: issuer.clone(),
            currency: usd,
            allow_negative_balance: true,
            annotations: None,
        },
        meta(),
    );
    for n in 0..accounts {
        ledger.execute(
            &Command::OpenAccount {
                account_id: id(n),
                currency: usd,
                allow_negative_balance: false,
                annotations: None,
            },
            meta(),
        );
        ledger.execute(
            &Command::Transfer(TransferCommand {
                transaction_id: uuid::Uuid::from_u64_pair(1, n),
                from: issuer.clone(),
                to: id(n),
                amount_minor: 1_000_000,
                currency: usd,
                annotations: None,
            }),
            meta(),
        );
    }
    let setup = started.elapsed();
    let rss_accounts = rss_bytes();

    let mut seed = 0x9E37_79B9_7F4A_7C15_u64;
    let mut next = move || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    let commands: Vec<Command> = (0..transfers)
        .map(|n| {
            let from = next() % accounts;
            let to = (from + 1 + next() % (accounts - 1)) % accounts;
            Command::Transfer(TransferCommand {
                transaction_id: uuid::Uuid::from_u64_pair(2, n),
                from: id(from),
                to: id(to),
                amount_minor: i64::try_from(1 + next() % 100).expect("small"),
                currency: usd,
                annotations: None,
            })
        })
        .collect();
    let started = Instant::now();
    for command in &commands {
        ledger.execute(command, meta());
    }
    let applied = started.elapsed();
    drop(commands);
    let rss_transfers = rss_bytes();

    let started = Instant::now();
    let copy = ledger.clone();
    let cloned = started.elapsed();
    let started = Instant::now();
    let digest = ledger.digest();
    let digested = started.elapsed();
    drop(copy);

    println!(
        "accounts {accounts}, transfers {transfers}{}: setup {:.2} s; execute {:.0} transfers/s \
         ({:.2} µs each); clone {:.1} ms; digest {:.1} ms ({:02x}{:02x}..); RSS {} MiB with \
         the accounts ({:.0} B per account incl. its funding record), +{:.0} B per transfer",
        if in_flight_only {
            ", in-flight records only"
        } else {
            ""
        },
        setup.as_secs_f64(),
        transfers as f64 / applied.as_secs_f64(),
        applied.as_secs_f64() * 1e6 / transfers as f64,
        cloned.as_secs_f64() * 1e3,
        digested.as_secs_f64() * 1e3,
        digest[0],
        digest[1],
        rss_accounts >> 20,
        rss_accounts as f64 / accounts as f64,
        rss_transfers.saturating_sub(rss_accounts) as f64 / transfers as f64,
    );
}

/// This process's resident set size (Linux), 0 where /proc is unavailable.
fn rss_bytes() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|kb| kb.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .map_or(0, |kb| kb * 1024)
}
