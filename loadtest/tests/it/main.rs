//! End to end: a real dev-sized cluster (three `wallet-write-node` processes and a
//! `wallet-read-node`, loopback ports, RocksDB in a temporary directory) loaded by the
//! `wallet-loadtest` binary for a few seconds, verification included. Throughput is not
//! asserted; correctness and the error vocabulary are.
//!
//! The node binaries belong to other packages, so cargo does not build them for this test:
//! they are taken from the target directory this test runs from (`cargo build --bins`, or
//! `cargo nextest run --workspace`, which builds them for the nodes' own tests).

use std::path::Path;
use std::process::{Child, Command, Output};

use serde_json::Value;

/// The documented overload and leadership answers a healthy run may report (README).
const OVERLOAD: &[(&str, &str)] = &[
    ("RESOURCE_EXHAUSTED", "OVERLOADED"),
    ("UNAVAILABLE", "NOT_LEADER"),
    ("UNAVAILABLE", "NO_LEADER"),
    ("UNAVAILABLE", "OUTCOME_UNKNOWN"),
    ("DEADLINE_EXCEEDED", "DEADLINE_EXCEEDED"),
];

/// The cluster: three write nodes from the test kit (killed with SIGKILL and reaped on drop,
/// their directory kept when the test fails) and a read node following them.
struct Cluster {
    write: testkit::Cluster,
    read: Child,
    write_endpoints: String,
    read_endpoint: String,
}

impl Cluster {
    fn start(partitions: u32) -> Cluster {
        let write = testkit::Cluster::start_partitioned(3, partitions, &[]);
        let write_endpoints = write.write_nodes();
        let read_endpoint = format!("127.0.0.1:{}", testkit::free_port());
        let read = spawn(
            Command::new(testkit::binary("wallet-read-node"))
                .args([
                    "--listen",
                    &read_endpoint,
                    "--write-nodes",
                    &write_endpoints,
                    "--metrics-listen",
                    "off",
                ])
                .arg("--data-dir")
                .arg(write.dir.path().join("read-node")),
            &write.dir.path().join("read-node.log"),
        );
        Cluster {
            write,
            read,
            write_endpoints,
            read_endpoint,
        }
    }

    /// Runs `wallet-loadtest` against this cluster with `extra` flags.
    fn loadtest(&self, extra: &[&str]) -> Output {
        Command::new(env!("CARGO_BIN_EXE_wallet-loadtest"))
            .args(["--endpoints", &self.write_endpoints])
            .args(["--read-endpoint", &self.read_endpoint])
            .args(["--no-progress", "--wait-ready", "60s"])
            .args(extra)
            .output()
            .expect("running wallet-loadtest")
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        let _ = self.read.kill();
        let _ = self.read.wait();
    }
}

fn spawn(command: &mut Command, log: &Path) -> Child {
    testkit::spawn_logged(
        command.env("RUST_LOG", "info,raft=warn,h2=warn,tower=warn"),
        log,
    )
    .expect("spawning a node")
}

/// The JSON report of a run that must have succeeded, checked for what every healthy run
/// shows: transfers done, verification passed on every count, only overload errors.
fn check_report(output: &Output) -> Value {
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "wallet-loadtest failed ({}):\n{stderr}\n{}",
        output.status,
        String::from_utf8_lossy(&output.stdout)
    );
    let report: Value = serde_json::from_slice(&output.stdout).expect("a JSON report on stdout");
    assert!(report["transfers_ok"].as_u64().unwrap() > 0, "{report:#}");
    assert!(report["latency"]["p99_ms"].as_f64().unwrap() > 0.0);
    assert!(!report["timeline"].as_array().unwrap().is_empty());
    for error in report["errors"].as_array().unwrap() {
        let pair = (
            error["code"].as_str().unwrap(),
            error["reason"].as_str().unwrap(),
        );
        assert!(
            OVERLOAD.contains(&pair),
            "unexpected error {pair:?} in {report:#}"
        );
    }
    assert_eq!(report["unexpected_errors"], 0);
    let v = &report["verification"];
    assert_eq!(v["passed"], true, "{v:#}");
    assert_eq!(v["conservation"], "checked");
    assert_eq!(v["balance_sum_minor"], 0);
    assert_eq!(v["accounts_checked"], v["accounts_total"]);
    for zero in [
        "balance_mismatches",
        "negative_accounts",
        "transfer_mismatches",
        "read_node_mismatches",
    ] {
        assert_eq!(v[zero], 0, "{zero}: {v:#}");
    }
    assert!(v["transfers_checked"].as_u64().unwrap() > 0);
    assert!(v["read_node_checked"].as_u64().unwrap() > 0);
    report
}

#[test]
fn load_runs_end_to_end_and_verifies() {
    let cluster = Cluster::start(4);
    let html = cluster.write.dir.path().join("report.html");

    // Closed loop, unary, with reads on the read node and watchers.
    let unary = check_report(&cluster.loadtest(&[
        "--accounts",
        "300",
        "--clients",
        "6",
        "--duration",
        "3s",
        "--cross-share",
        "0.5",
        "--read-share",
        "0.2",
        "--watchers",
        "2",
        "--watch-accounts",
        "20",
        "--zipf",
        "1.0",
        "--seed",
        "7",
        "--run-id",
        "itunary",
        "--format",
        "json",
        "--html",
        html.to_str().unwrap(),
    ]));
    assert_eq!(unary["api"], "unary");
    assert_eq!(unary["mode"], "closed");
    assert_eq!(unary["accounts"], 300);
    assert_eq!(unary["partitions"], 4);
    assert!(unary["reads"]["count"].as_u64().unwrap() > 0, "{unary:#}");
    let page = std::fs::read_to_string(&html).expect("HTML report");
    assert_eq!(page.matches("<svg").count(), 3, "three plots");
    assert!(page.contains("Throughput over time") && page.contains("Latency histogram"));

    // Open loop, pipelined streams, every transfer crossing partitions.
    let stream = check_report(&cluster.loadtest(&[
        "--accounts",
        "200",
        "--clients",
        "4",
        "--duration",
        "3s",
        "--api",
        "stream",
        "--rate",
        "400",
        "--in-flight",
        "64",
        "--cross-share",
        "1",
        "--run-id",
        "itstream",
        "--format",
        "json",
    ]));
    assert_eq!(stream["api"], "stream");
    assert_eq!(stream["mode"], "open");
    assert_eq!(stream["offered_rate"], 400);
    // Bounded by count as well as time.
    let counted = check_report(&cluster.loadtest(&[
        "--accounts",
        "50",
        "--clients",
        "2",
        "--requests",
        "40",
        "--duration",
        "30s",
        "--run-id",
        "itcount",
        "--format",
        "json",
    ]));
    assert_eq!(
        counted["transfers_ok"].as_u64().unwrap() + counted["errors_total"].as_u64().unwrap(),
        40
    );

    // A run id already used on this cluster is refused: its accounts do not start at zero.
    let reused = cluster.loadtest(&[
        "--accounts",
        "50",
        "--duration",
        "1s",
        "--run-id",
        "itcount",
    ]);
    assert_eq!(reused.status.code(), Some(3));
    assert!(String::from_utf8_lossy(&reused.stderr).contains("was used before"));
}

#[test]
fn bad_input_is_refused_before_anything_is_sent() {
    for (flags, needle) in [
        (&["--endpoints", "10.1.2.3:50051"][..], "loopback"),
        (&["--clients", "0"][..], "--clients"),
        (&["--cross-share", "2"][..], "--cross-share"),
        (&["--duration", "soon"][..], "duration"),
    ] {
        let output = Command::new(env!("CARGO_BIN_EXE_wallet-loadtest"))
            .args(flags)
            .output()
            .expect("running wallet-loadtest");
        assert_eq!(output.status.code(), Some(2), "{flags:?}");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(stderr.contains(needle), "{flags:?}: {stderr}");
    }
    // Nothing listens on port 1: the tool says so within --wait-ready.
    let output = Command::new(env!("CARGO_BIN_EXE_wallet-loadtest"))
        .args([
            "--endpoints",
            "127.0.0.1:1",
            "--read-endpoint",
            "none",
            "--wait-ready",
            "1s",
        ])
        .output()
        .expect("running wallet-loadtest");
    assert_eq!(output.status.code(), Some(3));
    assert!(String::from_utf8_lossy(&output.stderr).contains("not ready"));
}
