//! Storage fault injection, compiled only with the `failpoints` feature (tests; never a
//! release build). Built on `fail` (tikv's fail-rs) and configured at start from the
//! `FAILPOINTS` environment variable: `name=action;name=action`, where an action is fail-rs's
//! syntax, e.g. `return`, `20*off->return` (pass 20 times, then fail every time), `1*return`
//! (fail once), `sleep(100)` or `panic`.
//!
//! The failpoints, in `Db::write` (the one place RocksDB batches are written), the snapshot
//! worker, or the store loop's clock:
//!
//! | name | where | `return` does |
//! |---|---|---|
//! | `storage::write` | every RocksDB write | fails it before anything is written, as a failed `write_opt` would. `return(synced)` or `return(unsynced)` fails only writes of that kind: the raft log and hard state (once per store round, unsynced: `Db::write_log`) and snapshots or the apply results (unsynced) |
//! | `storage::fsync` | synced writes, and the raft log's syncs (`Db::sync_wal`, on the sync thread) | writes the batch or syncs, then reports the sync failed: the data may or may not be durable ("fsyncgate") |
//! | `snapshot::write` | the snapshot worker | fails writing a snapshot before anything is written |
//! | `snapshot::fetched` | a follower's snapshot fetch | `return(MS)`: waits MS milliseconds between receiving the snapshot and installing it, the window in which the leader may announce the next one |
//! | `clock::offset_ms` | the wall clock a leader stamps entries with | `return(MS)`: adds MS milliseconds (negative: a clock behind the others) |
//!
//! Whichever storage failpoint fails, the store loop stops, callers get `STORAGE_FAILURE`, and
//! the node exits (see ARCHITECTURE.md, "Storage failures"). Counted actions count
//! evaluations: every write evaluates `storage::write`, every synced write and every sync of the raft log `storage::fsync`.

use anyhow::bail;

pub const STORAGE_WRITE: &str = "storage::write";
pub const STORAGE_FSYNC: &str = "storage::fsync";
pub const SNAPSHOT_WRITE: &str = "snapshot::write";
pub const SNAPSHOT_FETCHED: &str = "snapshot::fetched";
pub const CLOCK_OFFSET_MS: &str = "clock::offset_ms";

/// Reads `FAILPOINTS` and says, loudly, that this binary can inject faults. Keep the returned
/// scenario alive for the life of the process.
pub fn setup() -> fail::FailScenario<'static> {
    let scenario = fail::FailScenario::setup();
    let active: Vec<String> = fail::list()
        .into_iter()
        .map(|(name, action)| format!("{name}={action}"))
        .collect();
    tracing::warn!(
        active = active.join(";"),
        "failpoints are compiled in: this build injects storage faults and is for tests only"
    );
    scenario
}

/// `storage::write`, before a write of the given kind.
pub fn before_write(sync: bool) -> anyhow::Result<()> {
    let failed = fail::eval(STORAGE_WRITE, |kind| match kind.as_deref() {
        None => true,
        Some("synced") => sync,
        Some("unsynced") => !sync,
        Some(other) => {
            panic!("failpoint {STORAGE_WRITE}: return({other}) is neither synced nor unsynced")
        }
    });
    if failed == Some(true) {
        bail!("injected failure (failpoint {STORAGE_WRITE})");
    }
    Ok(())
}

/// `storage::fsync`, after a synced write reached RocksDB or the raft log was synced.
pub fn after_synced_write() -> anyhow::Result<()> {
    if fail::eval(STORAGE_FSYNC, |_| ()).is_some() {
        bail!("injected fsync failure after the write (failpoint {STORAGE_FSYNC})");
    }
    Ok(())
}

/// `snapshot::write`, before the snapshot worker writes a snapshot.
pub fn before_snapshot_write() -> anyhow::Result<()> {
    if fail::eval(SNAPSHOT_WRITE, |_| ()).is_some() {
        bail!("injected failure (failpoint {SNAPSHOT_WRITE})");
    }
    Ok(())
}

/// `snapshot::fetched`, after a follower received a snapshot and before it installs it.
pub fn snapshot_fetched_delay() -> Option<std::time::Duration> {
    fail::eval(SNAPSHOT_FETCHED, |ms| {
        let ms = ms.unwrap_or_else(|| panic!("failpoint {SNAPSHOT_FETCHED}: use return(MS)"));
        let ms: u64 = ms
            .parse()
            .unwrap_or_else(|_| panic!("failpoint {SNAPSHOT_FETCHED}: {ms:?} is not milliseconds"));
        std::time::Duration::from_millis(ms)
    })
}

/// `clock::offset_ms`: the skew to add to this node's wall clock, if any.
pub fn clock_offset_ms() -> Option<i64> {
    fail::eval(CLOCK_OFFSET_MS, |ms| {
        let ms = ms.unwrap_or_else(|| panic!("failpoint {CLOCK_OFFSET_MS}: use return(MS)"));
        ms.parse()
            .unwrap_or_else(|_| panic!("failpoint {CLOCK_OFFSET_MS}: {ms:?} is not milliseconds"))
    })
}
