//! Command-line flags, and their validation into a [`Config`] with a clear message per
//! mistake. Only loopback targets are accepted: this tool saturates what it points at.

use std::net::IpAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, bail};
use clap::{Parser, ValueEnum};

use crate::limits;

/// Load test for the wallet ledger (and the same workload against PostgreSQL).
#[derive(Debug, Clone, Parser)]
#[command(name = "wallet-loadtest", version, after_help = AFTER_HELP)]
pub struct Args {
    /// What to load: the wallet's write nodes, or PostgreSQL doing the same transfers.
    #[arg(long, value_enum, default_value_t = TargetKind::Wallet)]
    pub target: TargetKind,

    /// Write nodes, comma-separated host:port (loopback only).
    #[arg(
        long,
        env = "WALLET_ENDPOINTS",
        value_delimiter = ',',
        default_value = "127.0.0.1:50051,127.0.0.1:50052,127.0.0.1:50053"
    )]
    pub endpoints: Vec<String>,

    /// Read node (host:port, loopback only). With it, reads go to the read node, watchers can
    /// run, and verification also checks that the read node's balances agree. "none" disables.
    #[arg(long, env = "WALLET_READ_ENDPOINT", default_value = "127.0.0.1:50061")]
    pub read_endpoint: String,

    /// PostgreSQL connection string for `--target postgres` (loopback host or a Unix socket).
    #[arg(
        long,
        env = "WALLET_LOADTEST_POSTGRES",
        default_value = "host=127.0.0.1 port=5432 user=postgres dbname=postgres"
    )]
    pub postgres: String,

    /// Unary `Transfer` calls, or pipelined `SubmitTransfers` streams (wallet only).
    #[arg(long, value_enum, default_value_t = Api::Unary)]
    pub api: Api,

    /// Concurrent clients: unary callers, streams, or PostgreSQL connections.
    #[arg(long, short = 'c', default_value_t = 32)]
    pub clients: u32,

    /// Open loop: offered transfers per second over all clients, each sent at its intended
    /// time whether or not earlier ones have finished; latency is measured from that time.
    /// Without it the run is closed loop (each client waits for its outstanding transfers).
    #[arg(long)]
    pub rate: Option<u64>,

    /// Outstanding operations per client: the stream window for `--api stream`, the backlog
    /// allowed per client in open loop. Closed-loop unary clients always have 1.
    #[arg(long, default_value_t = 256)]
    pub in_flight: u32,

    /// Unary API: the SDK's `transfer()` sends each transfer as its own `Transfer` call
    /// instead of down its shared stream per node (its default pipelining).
    #[arg(long)]
    pub sdk_unary: bool,

    /// How long the measured phase lasts (e.g. 10s, 2m, 500ms).
    #[arg(long, short = 'd', default_value = "10s", value_parser = parse_duration)]
    pub duration: Duration,

    /// Also stop after this many operations (transfers and reads).
    #[arg(long, short = 'n')]
    pub requests: Option<u64>,

    /// Ordinary accounts (funded in setup), up to 10,000,000.
    #[arg(long, default_value_t = 10_000)]
    pub accounts: u32,

    /// Zipf exponent of account popularity (0 = uniform; 1 = classic Zipf, a few hot accounts).
    #[arg(long, default_value_t = 0.0)]
    pub zipf: f64,

    /// Share of transfers whose target account lives in another partition (0..=1).
    #[arg(long, default_value_t = 0.5)]
    pub cross_share: f64,

    /// Share of operations that are balance reads instead of transfers (0..=1).
    #[arg(long, default_value_t = 0.0)]
    pub read_share: f64,

    /// WatchBalances streams on the read node during the run (push lag is measured).
    #[arg(long, default_value_t = 0)]
    pub watchers: u32,

    /// Accounts per watcher stream.
    #[arg(long, default_value_t = 10)]
    pub watch_accounts: u32,

    /// Seed of the workload: the same seed gives the same sequence of transfers per client.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,

    /// Tag in every account id of this run (`lt-<run-id>-<n>`); a fresh random one by default.
    /// Reusing a tag on the same cluster is refused (the accounts would not start at zero).
    #[arg(long)]
    pub run_id: Option<String>,

    /// Balance each ordinary account is funded with, in USD.
    #[arg(long, default_value = "1000.00")]
    pub initial_balance: String,

    /// Largest transfer amount in USD; amounts are uniform between 0.01 and this.
    #[arg(long, default_value = "1.00")]
    pub amount_max: String,

    /// Partitions for the workload's notion of "cross-partition" with `--target postgres`
    /// (the wallet's own count is read from the cluster; a different value here is refused).
    #[arg(long)]
    pub partitions: Option<u32>,

    /// Concurrent calls while opening and funding accounts and while verifying.
    #[arg(long, default_value_t = 256)]
    pub setup_concurrency: usize,

    /// Most accounts read back with GetAccount in verification. Beyond it, every account
    /// the run touched plus a sample of the others are checked (and conservation is only
    /// inferred for the unchecked ones).
    #[arg(long, default_value_t = 1_000_000)]
    pub verify_accounts: u32,

    /// Acknowledged transfers checked one by one with GetTransfer (a seeded sample).
    #[arg(long, default_value_t = 2_000)]
    pub verify_transfers: usize,

    /// Skip verification (it still runs by default after every run).
    #[arg(long)]
    pub no_verify: bool,

    /// After setup, wait at most this long until the read node has folded everything setup
    /// wrote, so the timed run does not share the machine with its catch-up (big setups:
    /// millions of accounts). Without it the run starts at once.
    #[arg(long, value_parser = parse_duration)]
    pub settle_after_setup: Option<Duration>,

    /// How long to wait for the targets to be ready before setup.
    #[arg(long, default_value = "60s", value_parser = parse_duration)]
    pub wait_ready: Duration,

    /// Summary format on stdout.
    #[arg(long, value_enum, default_value_t = Format::Text)]
    pub format: Format,

    /// Also write an HTML report with SVG plots to this file.
    #[arg(long)]
    pub html: Option<PathBuf>,

    /// No progress bar (it is also hidden when stderr is not a terminal).
    #[arg(long)]
    pub no_progress: bool,
}

const AFTER_HELP: &str = "\
Exit status: 0 run done and verified, 1 verification found a violation, 2 usage error,
3 the run could not be done (target unreachable, setup failed).";

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum TargetKind {
    Wallet,
    Postgres,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Api {
    Unary,
    Stream,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Format {
    Text,
    Json,
}

/// `10s`, `500ms`, `2m`, or a bare number of seconds.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    let (number, unit) = match text.find(|c: char| !c.is_ascii_digit() && c != '.') {
        Some(at) => text.split_at(at),
        None => (text, "s"),
    };
    let value: f64 = number
        .parse()
        .map_err(|_| format!("{text:?} is not a duration (try 10s, 500ms or 2m)"))?;
    let seconds = match unit {
        "ms" => value / 1_000.0,
        "s" => value,
        "m" => value * 60.0,
        _ => return Err(format!("{text:?}: unknown unit {unit:?} (use ms, s or m)")),
    };
    if !seconds.is_finite() || seconds <= 0.0 {
        return Err(format!("{text:?} must be positive"));
    }
    Ok(Duration::from_secs_f64(seconds))
}

/// Amounts in USD cents from a decimal string with at most two fraction digits.
pub fn parse_usd_minor(text: &str, flag: &str) -> anyhow::Result<i64> {
    let (units, cents) = match text.split_once('.') {
        Some((units, cents)) => (units, cents),
        None => (text, ""),
    };
    let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    if !digits(units) || !(cents.is_empty() || (digits(cents) && cents.len() <= 2)) {
        bail!("{flag} {text:?}: expected a USD amount like 12.34 (at most 2 fraction digits)");
    }
    let units: i64 = units
        .parse()
        .with_context(|| format!("{flag} {text:?} is too large"))?;
    let cents: i64 = format!("{cents:0<2}").parse().expect("two digits");
    let minor = units
        .checked_mul(100)
        .and_then(|m| m.checked_add(cents))
        .with_context(|| format!("{flag} {text:?} is too large"))?;
    if minor <= 0 {
        bail!("{flag} must be greater than zero");
    }
    Ok(minor)
}

/// Whether `host` (an IP literal, `[v6]`, or `localhost`) is a loopback address.
pub fn is_loopback_host(host: &str) -> bool {
    let host = host.trim_start_matches('[').trim_end_matches(']');
    if host.eq_ignore_ascii_case("localhost") {
        return true;
    }
    host.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

/// Refuses anything but `host:port` / `http://host:port` on a loopback host.
pub fn check_loopback_endpoint(endpoint: &str) -> anyhow::Result<()> {
    let authority = endpoint.trim().trim_start_matches("http://");
    let Some((host, port)) = authority.rsplit_once(':') else {
        bail!("endpoint {endpoint:?} must be host:port");
    };
    if port.parse::<u16>().is_err() {
        bail!("endpoint {endpoint:?}: bad port");
    }
    if !is_loopback_host(host) {
        bail!(
            "endpoint {endpoint:?} is not a loopback address: wallet-loadtest only loads \
             targets on this machine (127.0.0.0/8, ::1, localhost)"
        );
    }
    Ok(())
}

/// The validated settings of one run.
#[derive(Debug, Clone)]
pub struct Config {
    pub args: Args,
    pub read_endpoint: Option<String>,
    pub initial_balance_minor: i64,
    pub amount_max_minor: i64,
    pub run_id: String,
}

impl Args {
    /// Checks every flag and its relation to the others.
    pub fn validate(self) -> anyhow::Result<Config> {
        let a = &self;
        if a.endpoints.is_empty() {
            bail!("--endpoints: at least one write node is needed");
        }
        for endpoint in &a.endpoints {
            check_loopback_endpoint(endpoint).context("--endpoints")?;
        }
        let read_endpoint = match a.read_endpoint.trim() {
            "" | "none" => None,
            endpoint => {
                check_loopback_endpoint(endpoint).context("--read-endpoint")?;
                Some(endpoint.to_owned())
            }
        };
        if a.target == TargetKind::Postgres {
            check_loopback_postgres(&a.postgres)?;
            if a.api == Api::Stream {
                bail!("--api stream is the wallet's SubmitTransfers; PostgreSQL runs --api unary");
            }
            if a.watchers > 0 {
                bail!(
                    "--watchers needs the wallet's read node; not available with --target postgres"
                );
            }
        }
        if a.clients == 0 || a.clients > limits::CLIENTS_MAX {
            bail!("--clients must be between 1 and {}", limits::CLIENTS_MAX);
        }
        if a.in_flight == 0 || a.in_flight > limits::IN_FLIGHT_PER_CLIENT_MAX {
            bail!(
                "--in-flight must be between 1 and {}",
                limits::IN_FLIGHT_PER_CLIENT_MAX
            );
        }
        if let Some(rate) = a.rate
            && (rate == 0 || rate > limits::RATE_MAX)
        {
            bail!(
                "--rate must be between 1 and {} per second",
                limits::RATE_MAX
            );
        }
        if a.duration > limits::DURATION_MAX {
            bail!("--duration is at most {}s", limits::DURATION_MAX.as_secs());
        }
        if let Some(requests) = a.requests
            && (requests == 0 || requests > limits::REQUESTS_MAX)
        {
            bail!("--requests must be between 1 and {}", limits::REQUESTS_MAX);
        }
        if a.accounts < 2 || a.accounts > limits::ACCOUNTS_MAX {
            bail!("--accounts must be between 2 and {}", limits::ACCOUNTS_MAX);
        }
        if !(a.zipf.is_finite() && (0.0..=10.0).contains(&a.zipf)) {
            bail!("--zipf must be between 0 and 10");
        }
        for (flag, share) in [
            ("--cross-share", a.cross_share),
            ("--read-share", a.read_share),
        ] {
            if !(share.is_finite() && (0.0..=1.0).contains(&share)) {
                bail!("{flag} must be between 0 and 1, got {share}");
            }
        }
        if a.read_share >= 1.0 {
            bail!("--read-share must be below 1: a run needs transfers to measure");
        }
        if a.watchers > limits::WATCHERS_MAX {
            bail!("--watchers is at most {}", limits::WATCHERS_MAX);
        }
        if a.watchers > 0 && read_endpoint.is_none() {
            bail!("--watchers needs a --read-endpoint");
        }
        if a.watch_accounts == 0 || a.watch_accounts > limits::WATCH_ACCOUNTS_MAX {
            bail!(
                "--watch-accounts must be between 1 and {}",
                limits::WATCH_ACCOUNTS_MAX
            );
        }
        if let Some(p) = a.partitions
            && (p == 0 || p > 4_096)
        {
            bail!("--partitions must be between 1 and 4096");
        }
        if a.setup_concurrency == 0 || a.setup_concurrency > limits::SETUP_CONCURRENCY_MAX {
            bail!(
                "--setup-concurrency must be between 1 and {}",
                limits::SETUP_CONCURRENCY_MAX
            );
        }
        if a.verify_accounts == 0 || a.verify_accounts > limits::VERIFY_ACCOUNTS_MAX {
            bail!(
                "--verify-accounts must be between 1 and {}",
                limits::VERIFY_ACCOUNTS_MAX
            );
        }
        if a.verify_transfers > limits::ACKED_SAMPLE_MAX {
            bail!("--verify-transfers is at most {}", limits::ACKED_SAMPLE_MAX);
        }
        let initial_balance_minor = parse_usd_minor(&a.initial_balance, "--initial-balance")?;
        let amount_max_minor = parse_usd_minor(&a.amount_max, "--amount-max")?;
        // Funding all accounts from one issuer per partition must fit in an i64 of cents.
        if (initial_balance_minor as i128) * (a.accounts as i128) > i64::MAX as i128 / 2 {
            bail!("--initial-balance times --accounts is too large");
        }
        let run_id = match &a.run_id {
            Some(id) => {
                if id.is_empty()
                    || id.len() > 32
                    || !id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
                {
                    bail!("--run-id must be 1-32 characters of [A-Za-z0-9_]");
                }
                id.clone()
            }
            None => uuid::Uuid::new_v4().simple().to_string()[..10].to_owned(),
        };
        Ok(Config {
            read_endpoint,
            initial_balance_minor,
            amount_max_minor,
            run_id,
            args: self,
        })
    }
}

/// Refuses a PostgreSQL connection string whose hosts are not loopback or Unix sockets.
pub fn check_loopback_postgres(url: &str) -> anyhow::Result<()> {
    let config: tokio_postgres::Config = url
        .parse()
        .with_context(|| format!("--postgres {url:?} is not a valid connection string"))?;
    if config.get_hosts().is_empty() {
        bail!("--postgres must name a host (127.0.0.1, localhost, or a socket directory)");
    }
    for host in config.get_hosts() {
        if let tokio_postgres::config::Host::Tcp(name) = host
            && !is_loopback_host(name)
        {
            bail!(
                "--postgres host {name:?} is not a loopback address: only local targets are loaded"
            );
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(extra: &[&str]) -> Args {
        let mut argv = vec!["wallet-loadtest"];
        argv.extend_from_slice(extra);
        Args::try_parse_from(argv).expect("parse")
    }

    #[test]
    fn defaults_validate() {
        let config = args(&[]).validate().unwrap();
        assert_eq!(config.initial_balance_minor, 100_000);
        assert_eq!(config.amount_max_minor, 100);
        assert_eq!(config.read_endpoint.as_deref(), Some("127.0.0.1:50061"));
        assert_eq!(config.run_id.len(), 10);
    }

    #[test]
    fn non_loopback_targets_are_refused() {
        for bad in [
            "10.0.0.1:50051",
            "example.com:50051",
            "http://192.168.1.2:1",
        ] {
            let err = args(&["--endpoints", bad]).validate().unwrap_err();
            assert!(format!("{err:#}").contains("loopback"), "{bad}: {err:#}");
        }
        let err = args(&["--read-endpoint", "8.8.8.8:50061"])
            .validate()
            .unwrap_err();
        assert!(format!("{err:#}").contains("loopback"));
        let err = args(&[
            "--target",
            "postgres",
            "--postgres",
            "host=db.internal user=x",
        ])
        .validate()
        .unwrap_err();
        assert!(format!("{err:#}").contains("loopback"));
        args(&["--endpoints", "localhost:1,[::1]:2,127.0.0.2:3"])
            .validate()
            .unwrap();
        args(&[
            "--target",
            "postgres",
            "--postgres",
            "host=/var/run/postgresql user=x",
        ])
        .validate()
        .unwrap();
    }

    #[test]
    fn bad_numbers_are_refused_with_the_flag_named() {
        for (flags, needle) in [
            (&["--clients", "0"][..], "--clients"),
            (&["--accounts", "20000000"][..], "--accounts"),
            (&["--cross-share", "1.5"][..], "--cross-share"),
            (&["--read-share", "1"][..], "--read-share"),
            (&["--amount-max", "1.005"][..], "--amount-max"),
            (&["--initial-balance=-3"][..], "--initial-balance"),
            (&["--rate", "0"][..], "--rate"),
            (
                &["--watchers", "2", "--read-endpoint", "none"][..],
                "--read-endpoint",
            ),
            (&["--target", "postgres", "--api", "stream"][..], "--api"),
            (&["--run-id", "no-dashes"][..], "--run-id"),
        ] {
            let err = args(flags).validate().unwrap_err();
            assert!(format!("{err:#}").contains(needle), "{flags:?}: {err:#}");
        }
    }

    #[test]
    fn durations_and_amounts_parse() {
        assert_eq!(parse_duration("10s"), Ok(Duration::from_secs(10)));
        assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
        assert_eq!(parse_duration("3"), Ok(Duration::from_secs(3)));
        assert!(parse_duration("0s").is_err());
        assert!(parse_duration("5h").is_err());
        assert!(parse_duration("x").is_err());
        assert_eq!(parse_usd_minor("12.3", "f").unwrap(), 1230);
        assert_eq!(parse_usd_minor("7", "f").unwrap(), 700);
        assert!(parse_usd_minor("0.00", "f").is_err());
        assert!(parse_usd_minor("1e3", "f").is_err());
        assert!(parse_usd_minor(" 1", "f").is_err());
    }
}
