//! `wallet-loadtest`: parses the flags, installs logging, runs one load test and exits with
//! 0 (done and verified), 1 (verification failed), 2 (usage) or 3 (could not run).

use std::process::ExitCode;

use clap::Parser as _;
use loadtest::cli::Args;

#[tokio::main]
async fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .with_writer(std::io::stderr)
        .init();
    let config = match Args::parse().validate() {
        Ok(config) => config,
        Err(e) => {
            eprintln!("error: {e:#}");
            return ExitCode::from(2);
        }
    };
    let outcome = match loadtest::run(&config).await {
        Ok(outcome) => outcome,
        Err(e) => {
            eprintln!("error: {e:#}");
            return ExitCode::from(3);
        }
    };
    if let Err(e) = loadtest::output(&config, &outcome) {
        eprintln!("error: {e:#}");
        return ExitCode::from(3);
    }
    match &outcome.report.verification {
        Some(v) if !v.passed => {
            eprintln!("verification FAILED: {} violation(s)", v.violations_total);
            ExitCode::from(1)
        }
        _ => ExitCode::SUCCESS,
    }
}
