//! The one test kit of the workspace (not published): what every integration test and the
//! nemesis need to run the ledger as real processes.
//!
//! - [`free_port`]: loopback ports, never the same one twice in a process.
//! - [`binary`], [`find_binaries`]: the workspace's executables (`wallet-write-node`,
//!   `wallet-read-node`, ...) in the cargo target directory.
//! - [`Cluster`]: N `wallet-write-node` processes on free ports in a temporary directory,
//!   killed and restarted, with waits for leaders and agreement and client helpers.
//! - [`metrics`]: a node's `/metrics`, scraped and parsed.
//! - `traces` (feature `otel`): an OTLP/gRPC trace collector that keeps what nodes export.
//! - [`assert_architecture_says`]: the figures ARCHITECTURE.md quotes from a `limits.rs`.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

pub mod cluster;
pub mod metrics;
#[cfg(feature = "otel")]
pub mod traces;

pub use cluster::{
    Cluster, Node, WAIT_MAX, agreed_leaders, log_tail, reason, retryable, transfer_request,
};

/// Fails unless ARCHITECTURE.md says each of `quoted` (runs of whitespace count as one space,
/// so line breaks do not matter): a `limits.rs` test lists the figures the map quotes from it,
/// so that a change there must change the map too.
pub fn assert_architecture_says(quoted: &[String]) {
    let words: Vec<&str> = include_str!("../../ARCHITECTURE.md")
        .split_whitespace()
        .collect();
    let architecture = words.join(" ");
    for quoted in quoted {
        assert!(
            architecture.contains(quoted.as_str()),
            "ARCHITECTURE.md does not say {quoted}"
        );
    }
}

/// The first `count` account ids `<prefix>-<n>` that `ledger::partition_of` puts in
/// `partition` (of `partitions`): accounts placed where a test needs them.
pub fn accounts_in(partition: u32, partitions: u32, prefix: &str, count: usize) -> Vec<String> {
    (0..)
        .map(|n| format!("{prefix}-{n}"))
        .filter(|id| ledger::partition_of(id, partitions) == partition)
        .take(count)
        .collect()
}

/// A port that is free now, handed out once per process and below Linux's ephemeral range
/// (32768-60999).
///
/// Why not port 0: asking the kernel for port 0 twice can give the same port twice (a node's
/// gRPC and metrics ports then collide: the read-node harness's own bind-0 allocator did
/// exactly that), and a port taken from port 0 is released before the node binds it, so an
/// outgoing connection (ephemeral range) may grab it in between. A process-wide counter
/// never repeats a port; concurrent test processes (nextest runs one per test) start at
/// different places of the range, spread by process id, and a port someone already holds is
/// skipped.
pub fn free_port() -> u16 {
    use std::sync::atomic::{AtomicU16, Ordering};
    static NEXT: AtomicU16 = AtomicU16::new(0);
    if NEXT.load(Ordering::Relaxed) == 0 {
        let start = 20_000 + (std::process::id() % 600) as u16 * 20;
        let _ = NEXT.compare_exchange(0, start, Ordering::Relaxed, Ordering::Relaxed);
    }
    loop {
        let port = NEXT.fetch_add(1, Ordering::Relaxed);
        assert!(port < 32_768, "ran out of test ports");
        if std::net::TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
}

/// Spawns `command` with stdout and stderr appended to the file `log` (created if missing,
/// kept across restarts of the same process) and no stdin.
/// RocksDB's write-ahead log files in a data directory, with their sizes: all empty after a
/// clean stop that flushed, so the next open replays none.
pub fn write_ahead_logs(data_dir: &Path) -> Vec<(String, u64)> {
    std::fs::read_dir(data_dir)
        .expect("data dir")
        .map(|entry| entry.expect("entry"))
        .filter(|entry| entry.file_name().to_string_lossy().ends_with(".log"))
        .map(|entry| {
            let name = entry.file_name().to_string_lossy().into_owned();
            (name, entry.metadata().expect("metadata").len())
        })
        .collect()
}

/// SIGTERM (a clean stop), then waits (up to [`WAIT_MAX`]) for the process to exit; its exit
/// status.
pub fn terminate(child: &mut Child) -> std::process::ExitStatus {
    let status = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .expect("kill -TERM");
    assert!(status.success(), "kill -TERM failed");
    let deadline = std::time::Instant::now() + WAIT_MAX;
    loop {
        if let Some(status) = child.try_wait().expect("wait") {
            return status;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "process {} did not stop within {WAIT_MAX:?}",
            child.id()
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
}

pub fn spawn_logged(command: &mut Command, log: &Path) -> std::io::Result<Child> {
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)?;
    command
        .stdin(Stdio::null())
        .stdout(Stdio::from(log.try_clone()?))
        .stderr(Stdio::from(log))
        .spawn()
}

/// Where the running executable's sibling binaries may be: `target/<profile>/` is the
/// directory of a binary (`wallet-nemesis`) and the parent of a test executable's `deps/`.
fn target_dirs() -> Vec<PathBuf> {
    match std::env::current_exe() {
        Ok(exe) => exe
            .ancestors()
            .skip(1)
            .take(2)
            .map(Path::to_path_buf)
            .collect(),
        Err(_) => Vec::new(),
    }
}

/// The directory holding every one of `names`: `explicit` if given, else the cargo target
/// directory this executable runs from. The error says where it looked and what to build.
pub fn find_binaries(explicit: Option<&Path>, names: &[&str]) -> Result<PathBuf, String> {
    let candidates = match explicit {
        Some(dir) => vec![dir.to_path_buf()],
        None => target_dirs(),
    };
    for dir in &candidates {
        if names.iter().all(|name| dir.join(name).is_file()) {
            return Ok(dir.clone());
        }
    }
    Err(format!(
        "{} not found in {candidates:?}: build the binaries first (`cargo build --bins`, or \
         scripts/test; `cargo nextest run --workspace` builds them too)",
        names.join(" and ")
    ))
}

/// A binary of this workspace (`wallet-write-node`, `wallet-read-node`, ...) from the target
/// directory this test runs from. Cargo builds only the test's own package's binaries for
/// it, so another package's must have been built before; panics saying so otherwise.
pub fn binary(name: &str) -> PathBuf {
    match find_binaries(None, &[name]) {
        Ok(dir) => dir.join(name),
        Err(message) => panic!("{message}"),
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    #[test]
    fn free_port_never_hands_out_a_port_twice() {
        let ports: Vec<u16> = (0..200).map(|_| super::free_port()).collect();
        let distinct: BTreeSet<u16> = ports.iter().copied().collect();
        assert_eq!(distinct.len(), ports.len(), "{ports:?}");
        assert!(ports.iter().all(|&port| (20_000..32_768).contains(&port)));
    }

    #[test]
    fn a_missing_binary_is_reported_with_what_to_build() {
        let error = super::find_binaries(None, &["no-such-binary"]).expect_err("missing");
        assert!(error.contains("no-such-binary not found"), "{error}");
        assert!(error.contains("cargo build --bins"), "{error}");
    }
}
