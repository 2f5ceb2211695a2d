//! Every queue, stream, page and wait of the read node has a named maximum here.

use std::time::Duration;

/// Concurrent client streams (WatchBalances + WatchTransfer) per read node. Beyond it a new
/// watch is refused with RESOURCE_EXHAUSTED / TOO_MANY_WATCHERS.
pub const WATCHERS_MAX: usize = 1_024;
/// Accounts in one WatchBalances call; more is INVALID_ARGUMENT / TOO_MANY_ACCOUNTS.
pub const WATCH_ACCOUNTS_MAX: usize = 1_000;
/// Updates buffered per watcher between its task and its gRPC stream.
pub const WATCH_BUFFER: usize = 256;
/// Live updates the fold keeps for watchers (a bounded broadcast). A watcher that falls this
/// far behind is cut off with ABORTED / WATCH_LAGGED and resumes from its last sequence.
pub const UPDATES_BROADCAST_CAPACITY: usize = 16_384;
/// Longest consistency token or position accepted (`v1.P.I.P2.I2` with u32/u64 numbers is
/// at most 67 bytes); longer is INVALID_CONSISTENCY_TOKEN / INVALID_POSITION.
pub const POSITION_TOKEN_BYTES_MAX: usize = 128;
/// ListTransfers page size when the request says 0.
pub const PAGE_SIZE_DEFAULT: u32 = 50;
/// Most ids a BatchGetAccounts or BatchGetTransfers call names; more is INVALID_ARGUMENT
/// (TOO_MANY_ACCOUNTS, TOO_MANY_TRANSFERS).
pub const BATCH_GET_MAX: usize = 1_000;
/// Largest ListTransfers (and ListAccounts) page; more is INVALID_ARGUMENT /
/// PAGE_SIZE_TOO_LARGE.
pub const PAGE_SIZE_MAX: u32 = 1_000;
/// How long a read with a consistency token (or a past position) waits for the projection
/// to reach it before UNAVAILABLE / CONSISTENCY_WAIT_TIMEOUT.
pub const CONSISTENCY_WAIT_MAX: Duration = Duration::from_secs(5);
/// The RetryInfo delays of TOO_MANY_WATCHERS, PARTITION_STUCK (read elsewhere, or here once
/// the partition moves again) and CONSISTENCY_WAIT_TIMEOUT.
pub const WATCHERS_RETRY_AFTER: Duration = Duration::from_secs(1);
pub const PARTITION_STUCK_RETRY_AFTER: Duration = Duration::from_secs(1);
pub const CONSISTENCY_WAIT_RETRY_AFTER: Duration = Duration::from_millis(200);
/// How long WatchTransfer waits for an id the read node has not seen before NOT_FOUND.
pub const WATCH_TRANSFER_UNKNOWN_WAIT: Duration = Duration::from_secs(60);
/// History rows read per RocksDB multi-get when a watch replays missed changes.
pub const REPLAY_CHUNK_ROWS: u64 = 256;
/// Event blocks queued between the per-partition subscriptions and the fold thread. A full
/// queue back-pressures the subscription streams, so the write nodes see a slow reader, not
/// unbounded memory here.
pub const INGEST_QUEUE_BLOCKS: usize = 256;
/// Queued blocks the fold thread folds into one RocksDB write (a batch of blocks is still one
/// write when a single block would be: it takes only what is already queued).
pub const FOLD_BATCH_BLOCKS_MAX: usize = 64;
const _: () = assert!(FOLD_BATCH_BLOCKS_MAX <= INGEST_QUEUE_BLOCKS);
/// Memtables of all RocksDB column families together (`db_write_buffer_size`).
pub const ROCKSDB_MEMTABLES_BYTES_MAX: usize = 256 * 1024 * 1024;
/// One memtable of a column family keyed by account or transaction id (balances, history,
/// transfers; RocksDB's `write_buffer_size`, 64 MiB by default). Every insert of a random key
/// searches the skip list from the top: a smaller memtable keeps that search in the CPU
/// caches (BENCHMARKS.md, "Memtables sized for random keys").
pub const RANDOM_KEYS_MEMTABLE_BYTES: usize = 8 * 1024 * 1024;
/// RocksDB's block cache, shared by every column family (data, index and filter blocks).
pub const ROCKSDB_BLOCK_CACHE_BYTES: usize = 64 * 1024 * 1024;
/// Balances kept in the moka cache in front of RocksDB.
pub const BALANCE_CACHE_ENTRIES: u64 = 100_000;
/// Largest message accepted from a write node's Subscribe stream (one raft entry's events).
pub const SUBSCRIBE_MESSAGE_BYTES_MAX: usize = 16 * 1024 * 1024;
/// Largest request the read node accepts; larger is INVALID_ARGUMENT / MESSAGE_TOO_LARGE.
pub const GRPC_MESSAGE_BYTES_MAX: usize = 4 * 1024 * 1024;
/// Default of `calls_in_flight_max` (see `Config`): calls served at once, a watch counting
/// until it ends. Beyond it a call is shed at once with RESOURCE_EXHAUSTED / OVERLOADED and
/// RetryInfo (health checks are never shed).
pub const CALLS_IN_FLIGHT_MAX_DEFAULT: usize = 4_096;
/// Bounds of `calls_in_flight_max`.
pub const CALLS_IN_FLIGHT_MAX_MIN: usize = 1;
pub const CALLS_IN_FLIGHT_MAX_MAX: usize = 65_536;
/// The RetryInfo delay of an OVERLOADED answer (defined once, in `proto::guard`).
pub use proto::guard::OVERLOAD_RETRY_AFTER;
/// HTTP/2 SETTINGS_MAX_CONCURRENT_STREAMS: calls one client connection may have open at once.
pub const STREAMS_PER_CONNECTION_MAX: u32 = 1_024;
/// Backoff between attempts to reach a write node (subscription failover, discovery).
pub const RECONNECT_BACKOFF_MIN: Duration = Duration::from_millis(100);
pub const RECONNECT_BACKOFF_MAX: Duration = Duration::from_secs(2);
/// Connect and unary-call timeout towards write nodes.
pub const WRITE_NODE_CALL_TIMEOUT: Duration = Duration::from_secs(2);
/// A subscription silent for this long while another write node reports a higher applied
/// index for the partition is abandoned for that node (e.g. its source is cut off from the
/// leader and stopped applying, without the TCP connection breaking).
pub const SUBSCRIPTION_STALL: Duration = Duration::from_secs(3);
/// Projection snapshots (`snapshot/`): fetches one read node serves at once. Each holds a
/// RocksDB checkpoint (hard links: little space, but the files it pins stay on disk until it
/// ends) and a reading thread; more are refused with RESOURCE_EXHAUSTED / OVERLOADED.
pub const SNAPSHOTS_SERVED_MAX: usize = 2;
/// The RetryInfo delay of a snapshot fetch refused because `SNAPSHOTS_SERVED_MAX` are served.
pub const SNAPSHOT_RETRY_AFTER: Duration = Duration::from_secs(5);
/// Bytes of a file in one snapshot message.
pub const SNAPSHOT_CHUNK_BYTES: usize = 1024 * 1024;
/// Largest snapshot message the receiver accepts (a chunk and its framing).
pub const SNAPSHOT_MESSAGE_BYTES_MAX: usize = 2 * SNAPSHOT_CHUNK_BYTES;
/// Messages buffered between the thread reading the checkpoint and the gRPC stream.
pub const SNAPSHOT_STREAM_BUFFER: usize = 4;
/// Most files a snapshot header may list (a RocksDB of a few hundred GB has thousands).
pub const SNAPSHOT_FILES_MAX: usize = 100_000;
/// Bootstrap (`bootstrap_from`): attempts before the node folds from genesis instead, and the
/// pause between two.
pub const BOOTSTRAP_ATTEMPTS: u32 = 3;
pub const BOOTSTRAP_RETRY_BACKOFF: Duration = Duration::from_secs(1);
/// Connect timeout towards the bootstrap source, and the longest wait for its next message.
pub const BOOTSTRAP_CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
pub const BOOTSTRAP_MESSAGE_WAIT_MAX: Duration = Duration::from_secs(30);
/// How long in-flight calls get to finish once shutdown starts.
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

const _: () = assert!(PAGE_SIZE_DEFAULT <= PAGE_SIZE_MAX);
const _: () = assert!(
    WATCHERS_MAX < CALLS_IN_FLIGHT_MAX_DEFAULT,
    "a node full of watchers must still serve unary reads"
);
const _: () = assert!(
    (STREAMS_PER_CONNECTION_MAX as usize) < CALLS_IN_FLIGHT_MAX_DEFAULT,
    "one connection alone must not be able to fill every call slot"
);
const _: () = assert!(
    CALLS_IN_FLIGHT_MAX_MIN <= CALLS_IN_FLIGHT_MAX_DEFAULT
        && CALLS_IN_FLIGHT_MAX_DEFAULT <= CALLS_IN_FLIGHT_MAX_MAX
);
const _: () = assert!(RECONNECT_BACKOFF_MIN.as_millis() <= RECONNECT_BACKOFF_MAX.as_millis());
const _: () = assert!(
    SNAPSHOT_CHUNK_BYTES < SNAPSHOT_MESSAGE_BYTES_MAX,
    "a full chunk must fit the receiver's message limit"
);

#[cfg(test)]
mod tests {
    use super::*;

    /// The figures ARCHITECTURE.md quotes from this file: a change here must change the map too.
    #[test]
    fn architecture_quotes_these_limits() {
        testkit::assert_architecture_says(&[
            format!(
                "`ROCKSDB_MEMTABLES_BYTES_MAX` ({} MiB)",
                ROCKSDB_MEMTABLES_BYTES_MAX >> 20
            ),
            format!(
                "`ROCKSDB_BLOCK_CACHE_BYTES` ({} MiB)",
                ROCKSDB_BLOCK_CACHE_BYTES >> 20
            ),
        ]);
    }
}
