//! `wallet-loadtest`: closed- and open-loop load against the wallet's public gRPC API (unary
//! `Transfer` or pipelined `SubmitTransfers`), with setup through the API, live progress, a
//! ghz-style summary, an HTML report, verification of the ledger's invariants after every
//! run, and the same workload against PostgreSQL for a side-by-side.
//!
//! The flow of a run: [`cli::Args::validate`] → setup (`wallet::prepare` or
//! `postgres::prepare`) → the measured phase (`driver` clients feeding a `recorder::Recorder`)
//! → verification → `report`.

pub mod cli;
pub mod driver;
pub mod limits;
pub mod postgres;
pub mod recorder;
pub mod report;
pub mod wallet;
pub mod workload;

use std::sync::Arc;
use std::time::Instant;

use anyhow::Context;

use crate::cli::{Config, Format, TargetKind};
use crate::recorder::Recorder;
use crate::report::Report;
use crate::workload::Mix;

/// Partitions the workload assumes for PostgreSQL when `--partitions` is not given: the
/// wallet's default, so "cross-partition" picks the same account pairs on both targets.
pub const POSTGRES_DEFAULT_PARTITIONS: u32 = 8;

/// Runs one load test end to end and returns its report (verification included unless
/// `--no-verify`). Errors are failures to run at all (unreachable target, failed setup).
pub async fn run(config: &Config) -> anyhow::Result<Outcome> {
    let args = &config.args;
    let mix = Mix {
        zipf: args.zipf,
        cross_share: args.cross_share,
        read_share: args.read_share,
        amount_max_minor: config.amount_max_minor,
        seed: args.seed,
    };
    let setup_started = Instant::now();
    match args.target {
        TargetKind::Wallet => {
            let wallet = Arc::new(wallet::Wallet::connect(config).await?);
            let accounts = wallet::prepare(&wallet, config).await.context("setup")?;
            let setup_s = setup_started.elapsed().as_secs_f64();
            let mut recorder = Recorder::new(accounts.slots(), args.verify_transfers, args.seed);
            recorder.start();
            let recorder = Arc::new(recorder);
            let pipelined_before = wallet.client.pipeline_stats();
            wallet::run_phase(&wallet, &accounts, &recorder, config, mix).await?;
            let duration_s = recorder.started.elapsed().as_secs_f64();
            let pipelined = wallet.client.pipeline_stats().transfers - pipelined_before.transfers;
            let verification = if args.no_verify {
                None
            } else {
                Some(wallet::verify(&wallet, &accounts, &recorder, config).await?)
            };
            let detail = format!(
                "{} write nodes{}, {} partitions{}",
                args.endpoints.len(),
                config
                    .read_endpoint
                    .as_ref()
                    .map_or(String::new(), |r| format!(" + read node {r}")),
                accounts.partitions,
                if pipelined == 0 {
                    String::new()
                } else {
                    format!(", the SDK's transfer() pipelined {pipelined} transfers")
                }
            );
            let g = recorder.lock();
            Ok(Outcome {
                report: report::build(
                    &g,
                    config,
                    detail,
                    accounts.partitions,
                    setup_s,
                    duration_s,
                    verification,
                ),
                transfers: g.transfers.clone(),
            })
        }
        TargetKind::Postgres => {
            let partitions = args.partitions.unwrap_or(POSTGRES_DEFAULT_PARTITIONS);
            let accounts = postgres::prepare(config, partitions)
                .await
                .context("setup")?;
            let detail = postgres::durability(&args.postgres).await?;
            let setup_s = setup_started.elapsed().as_secs_f64();
            let mut recorder = Recorder::new(accounts.slots(), args.verify_transfers, args.seed);
            recorder.start();
            let recorder = Arc::new(recorder);
            postgres::run_phase(&accounts, &recorder, config, mix).await?;
            let duration_s = recorder.started.elapsed().as_secs_f64();
            let verification = if args.no_verify {
                None
            } else {
                Some(postgres::verify(&accounts, &recorder, config).await?)
            };
            let g = recorder.lock();
            Ok(Outcome {
                report: report::build(
                    &g,
                    config,
                    detail,
                    partitions,
                    setup_s,
                    duration_s,
                    verification,
                ),
                transfers: g.transfers.clone(),
            })
        }
    }
}

/// A finished run: its report and the latency histogram of its successful transfers.
pub struct Outcome {
    pub report: Report,
    pub transfers: hdrhistogram::Histogram<u64>,
}

/// Prints the report as asked and writes the HTML file if one was asked for.
pub fn output(config: &Config, outcome: &Outcome) -> anyhow::Result<()> {
    let (report, transfers) = (&outcome.report, &outcome.transfers);
    match config.args.format {
        Format::Text => print!("{}", report::text(report)),
        Format::Json => println!("{}", serde_json::to_string_pretty(report)?),
    }
    if let Some(path) = &config.args.html {
        let page = report::html(report, transfers)?;
        std::fs::write(path, page).with_context(|| format!("writing {}", path.display()))?;
    }
    Ok(())
}
