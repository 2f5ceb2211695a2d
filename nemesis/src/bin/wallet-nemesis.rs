//! `wallet-nemesis`: one fault-injection run by hand, longer than the test suite's.
//!
//! ```sh
//! cargo build --bins   # wallet-write-node and wallet-read-node must sit next to this binary
//! cargo run -p nemesis --bin wallet-nemesis -- --seed 7 --duration 600s
//! ```
//!
//! Exits 0 when no anomaly was found, 1 otherwise (the run directory is then kept and named).

use std::path::PathBuf;
use std::time::Duration;

use clap::Parser;
use nemesis::schedule::Timing;

#[derive(Parser, Debug)]
#[command(about = "Fault injection against a local wallet cluster, checked afterwards")]
struct Args {
    /// Seed of the fault schedule (and of the workers' choices): the same seed replays the
    /// same schedule.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// How long the workload runs under faults, e.g. 90s, 10m.
    #[arg(long, default_value = "60s", value_parser = parse_duration)]
    duration: Duration,
    /// Concurrent transfer workers.
    #[arg(long, default_value_t = 4)]
    workers: usize,
    /// Quiet time before each fault, min and max milliseconds.
    #[arg(long, num_args = 2, default_values_t = [1000, 3000])]
    quiet_ms: Vec<u64>,
    /// How long each fault holds, min and max milliseconds.
    #[arg(long, num_args = 2, default_values_t = [2000, 5000])]
    hold_ms: Vec<u64>,
    /// Directory holding wallet-write-node and wallet-read-node (default: next to this
    /// binary).
    #[arg(long)]
    bin_dir: Option<PathBuf>,
    /// Keep the run directory (data, logs, history.json, report.json) even on success.
    #[arg(long)]
    keep: bool,
    /// Print only the schedule for the seed and exit.
    #[arg(long)]
    print_schedule: bool,
    /// Write nodes (3 to 9).
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u64).range(3..=9))]
    write_nodes: u64,
    /// Replicas of each partition, placed on that many of the write nodes (default: every
    /// node holds every partition).
    #[arg(long)]
    replicas: Option<usize>,
}

fn parse_duration(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    let (number, unit) = text.split_at(
        text.find(|c: char| !c.is_ascii_digit())
            .unwrap_or(text.len()),
    );
    let value: u64 = number
        .parse()
        .map_err(|_| format!("bad duration {text:?}"))?;
    match unit {
        "" | "s" => Ok(Duration::from_secs(value)),
        "ms" => Ok(Duration::from_millis(value)),
        "m" => Ok(Duration::from_secs(value * 60)),
        "h" => Ok(Duration::from_secs(value * 3600)),
        _ => Err(format!("bad duration unit in {text:?} (use ms, s, m or h)")),
    }
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    anyhow::ensure!(
        args.quiet_ms[0] <= args.quiet_ms[1] && args.hold_ms[0] <= args.hold_ms[1],
        "min above max"
    );
    anyhow::ensure!((1..=64).contains(&args.workers), "--workers must be 1..=64");
    let mut config = nemesis::Config::new(args.seed, args.duration);
    config.workers = args.workers;
    config.timing = Timing {
        quiet_ms: (args.quiet_ms[0], args.quiet_ms[1]),
        hold_ms: (args.hold_ms[0], args.hold_ms[1]),
    };
    config.bin_dir = args.bin_dir;
    config.keep = args.keep;
    config.write_nodes = args.write_nodes;
    config.replicas = args.replicas;
    if args.print_schedule {
        use std::io::Write as _;
        let mut out = std::io::stdout().lock();
        let steps = nemesis::schedule::schedule(
            config.seed,
            config.duration,
            8,
            config.timing,
            config.moves(),
        );
        for step in steps {
            // A closed pipe (`| head`) just ends the listing.
            if writeln!(out, "{}", serde_json::to_string(&step)?).is_err() {
                break;
            }
        }
        return Ok(());
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    let outcome = runtime.block_on(nemesis::run(config))?;
    println!("{}", serde_json::to_string_pretty(&outcome.report)?);
    if outcome.report.ok() {
        Ok(())
    } else {
        eprintln!(
            "seed {}: {} anomalies",
            args.seed, outcome.report.anomalies_total
        );
        std::process::exit(1);
    }
}
