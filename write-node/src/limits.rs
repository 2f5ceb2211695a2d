//! Every queue, batch and wait of the write node has a named maximum here.

use std::time::Duration;

/// Client commands waiting for the store loop. A full mailbox answers RESOURCE_EXHAUSTED.
pub const CLIENT_MAILBOX_CAPACITY: usize = 65_536;
/// Inbound raft batches waiting for the store loop; a full one back-pressures the peer stream.
pub const RAFT_MAILBOX_CAPACITY: usize = 1_024;
/// Mailbox items handled per loop round before the loop ticks, proposes and persists.
pub const ROUND_DRAIN_MAX: usize = 16_384;
/// Commands in one raft entry: one entry, one fsync, many transfers (group commit).
pub const ENTRY_COMMANDS_MAX: usize = 4_096;
/// Upper bound of one encoded command: two account ids of at most 256 bytes plus fixed fields.
pub const COMMAND_BYTES_MAX: usize = 1_024;
/// raft `max_size_per_msg`: entries per MsgAppend are bounded by bytes, not one per message.
/// raft always puts at least one entry in an append, so one MsgAppend carries at most this
/// plus one entry (`ENTRY_BYTES_MAX`): see `RAFT_MESSAGE_BYTES_MAX`. raft's `batch_append`,
/// which merges a round's appends to one follower into one message without any size bound,
/// stays off (`store::startup::raft_config`): a follower far behind would get one message of
/// up to `RAFT_INFLIGHT_MSGS_MAX` times this, beyond any gRPC message limit.
pub const RAFT_MSG_BYTES_MAX: u64 = 1024 * 1024;
/// raft `max_inflight_msgs` per follower.
pub const RAFT_INFLIGHT_MSGS_MAX: usize = 256;
/// raft `max_uncommitted_size`: proposals beyond it are dropped (back-pressure to clients).
pub const RAFT_UNCOMMITTED_BYTES_MAX: u64 = 64 * 1024 * 1024;
/// raft `max_committed_size_per_ready`: bounds one partition's apply batch in a round (the
/// rest is applied in the rounds that follow at once), so a node catching up on many
/// committed entries does not hold its store thread, and every partition's ticks, for long.
/// raft still hands over one entry above it (an entry holds at most `ENTRY_BYTES_MAX`).
pub const RAFT_COMMITTED_BYTES_PER_READY_MAX: u64 = 128 * 1024;
/// A store round at least this long is logged with where its time went.
pub const ROUND_SLOW: Duration = Duration::from_millis(250);
/// Recent raft entries kept in memory per partition for building appends without RocksDB reads.
pub const ENTRY_CACHE_ENTRIES_MAX: usize = 1_024;
/// Raft messages queued towards one peer node; beyond it messages are dropped (raft resends).
pub const PEER_QUEUE_CAPACITY: usize = 8_192;
/// Raft messages in one frame of the peer stream.
pub const PEER_FRAME_MESSAGES_MAX: usize = 256;
/// Largest gRPC message of the peer service (raft frames, credit batches, snapshot parts),
/// sent and accepted: a larger one fails the call with OUT_OF_RANGE, and a raft stream that
/// fails on a frame would fail again on the same catch-up traffic forever.
pub const PEER_GRPC_MESSAGE_BYTES_MAX: usize = GRPC_MESSAGE_BYTES_MAX * 4;
/// Bytes of raft messages in one frame of the peer stream: a frame holds messages while they
/// fit, so a follower catching up gets many frames, never one above the gRPC limit.
pub const PEER_FRAME_BYTES_MAX: usize = 8 * 1024 * 1024;
/// Encoded bytes of one raft entry's payload: a full group-commit entry (`codec::EntryPayload`).
pub const ENTRY_BYTES_MAX: usize = ENTRY_COMMANDS_MAX * COMMAND_BYTES_MAX + 64;
/// Encoded bytes of one raft message: an append of `RAFT_MSG_BYTES_MAX` plus the one entry
/// raft may add beyond it, with raft's per-message and per-entry fields. A larger message
/// is a bug; the outbox drops it rather than break the stream for every partition.
pub const RAFT_MESSAGE_BYTES_MAX: usize = RAFT_MSG_BYTES_MAX as usize + ENTRY_BYTES_MAX + 64 * 1024;
/// Frames buffered in one peer stream.
pub const PEER_FRAMES_IN_FLIGHT_MAX: usize = 16;
/// Reconnect backoff towards a peer node.
pub const PEER_RECONNECT_BACKOFF_MIN: Duration = Duration::from_millis(50);
pub const PEER_RECONNECT_BACKOFF_MAX: Duration = Duration::from_secs(2);
/// Items of one SubmitTransfers or OpenAccounts stream waiting for their outcome.
pub const SUBMIT_STREAM_IN_FLIGHT_MAX: usize = 4_096;
/// How long a linearizable read waits for its ReadIndex round before UNAVAILABLE.
pub const READ_TIMEOUT: Duration = Duration::from_secs(3);
/// Largest gRPC message a node accepts (SubmitTransfers frames are one transfer each). A
/// larger one is INVALID_ARGUMENT / MESSAGE_TOO_LARGE (see `proto::guard`).
pub const GRPC_MESSAGE_BYTES_MAX: usize = 4 * 1024 * 1024;
/// Default of `calls_in_flight_max` (see `Config`): client calls served at once, a stream
/// counting until it ends. Beyond it a call is shed at once with RESOURCE_EXHAUSTED /
/// OVERLOADED and RetryInfo (health checks and raft traffic are never shed). Each call in
/// flight costs a task and a few KiB of buffers, so this bounds the memory a flood can take.
pub const CALLS_IN_FLIGHT_MAX_DEFAULT: usize = 4_096;
/// Bounds of `calls_in_flight_max`.
pub const CALLS_IN_FLIGHT_MAX_MIN: usize = 1;
pub const CALLS_IN_FLIGHT_MAX_MAX: usize = 65_536;
/// The RetryInfo delay of every OVERLOADED answer: from the gRPC front door (too many calls)
/// and from the store's full command queue. Defined once for both node types in `proto::guard`.
pub use proto::guard::OVERLOAD_RETRY_AFTER;
/// HTTP/2 SETTINGS_MAX_CONCURRENT_STREAMS: calls one client connection may have open at once
/// (clients queue beyond it on their side), so one connection cannot take every call slot.
pub const STREAMS_PER_CONNECTION_MAX: u32 = 1_024;

const _: () = assert!(
    SUBSCRIBERS_MAX < CALLS_IN_FLIGHT_MAX_DEFAULT,
    "read nodes' event log subscriptions must leave room for client calls"
);
const _: () = assert!(
    (STREAMS_PER_CONNECTION_MAX as usize) < CALLS_IN_FLIGHT_MAX_DEFAULT,
    "one connection alone must not be able to fill every call slot"
);
const _: () = assert!(
    CALLS_IN_FLIGHT_MAX_MIN <= CALLS_IN_FLIGHT_MAX_DEFAULT
        && CALLS_IN_FLIGHT_MAX_DEFAULT <= CALLS_IN_FLIGHT_MAX_MAX
);

/// The raft clock: heartbeats every `HEARTBEAT_TICKS` ticks, elections after `ELECTION_TICKS`.
pub const TICK_INTERVAL: Duration = Duration::from_millis(100);
pub const HEARTBEAT_TICKS: usize = 2;
pub const ELECTION_TICKS: usize = 10;
/// Leadership goes back to a partition's preferred leader (placement's) once that node has
/// been caught up for this long: after a failover, leaders spread over the nodes again, and a
/// node that keeps failing is not handed leadership each time it comes back.
pub const LEADER_HANDOFF_SETTLE: Duration = Duration::from_secs(3);
/// The preferred leader counts as caught up when its log is at most this many entries
/// behind the leader's (raft-rs sends it the rest before it campaigns, and drops proposals
/// meanwhile, so the gap must be small).
pub const LEADER_HANDOFF_LAG_ENTRIES_MAX: u64 = 64;
/// How long a call that needs a newer feature waits for a peer not heard from since this
/// node started (`features`): ten heartbeat intervals, which a live peer never misses.
pub const FEATURE_LEVEL_WAIT: Duration =
    Duration::from_millis(TICK_INTERVAL.as_millis() as u64 * HEARTBEAT_TICKS as u64 * 10);
/// How often it looks again meanwhile.
pub const FEATURE_LEVEL_POLL: Duration = Duration::from_millis(20);

const _: () = assert!(
    RAFT_MESSAGE_BYTES_MAX <= PEER_FRAME_BYTES_MAX,
    "every raft message must fit in a frame of the peer stream on its own"
);
const _: () = assert!(
    // Per message a frame adds its envelope (partition, length prefixes: < 32 bytes), plus
    // the frame's own fields.
    PEER_FRAME_BYTES_MAX + PEER_FRAME_MESSAGES_MAX * 32 + 64 <= PEER_GRPC_MESSAGE_BYTES_MAX,
    "a full frame of the peer stream must be below the gRPC message limit"
);
const _: () = assert!(
    ENTRY_COMMANDS_MAX <= ROUND_DRAIN_MAX,
    "a round must be able to fill one entry"
);
const _: () = assert!(
    ((ENTRY_COMMANDS_MAX * COMMAND_BYTES_MAX) as u64) < RAFT_UNCOMMITTED_BYTES_MAX,
    "one full entry must fit in raft's uncommitted budget or it could never be proposed"
);
const _: () = assert!(
    HEARTBEAT_TICKS * 2 < ELECTION_TICKS,
    "followers must hear several heartbeats per election timeout"
);
const _: () = assert!(
    LEADER_HANDOFF_SETTLE.as_millis() > 2 * ELECTION_TICKS as u128 * TICK_INTERVAL.as_millis(),
    "a node that just came back must stay caught up for longer than elections take"
);

/// In-flight cross-partition transfers one recovery pass picks up per partition.
pub const RECOVERY_BATCH_MAX: usize = 1_024;
/// How often the leader of a source partition looks for in-flight transfers to finish
/// (after a failover or restart nobody else will).
pub const RECOVERY_INTERVAL: Duration = Duration::from_millis(500);
/// How often the leader of a partition proposes to release its holds past their expiry. A
/// hold is never captured after its expiry whatever this is (the deciding entry's time stamp
/// decides); this bounds how long an expired hold still reserves its amount.
pub const HOLD_EXPIRY_INTERVAL: Duration = Duration::from_millis(250);
/// Expired holds one expiry pass releases per partition (one raft entry, mostly).
pub const HOLD_EXPIRY_BATCH_MAX: usize = 1_024;
/// Cross-partition transfers this node drives at once (client calls and recovery together).
pub const SAGAS_IN_FLIGHT_MAX: usize = 16_384;
/// Attempts to reach the target partition's leader for one credit before giving up (the
/// recovery pass tries again later; credits are idempotent).
pub const CREDIT_ATTEMPTS_MAX: u32 = 40;
pub const CREDIT_BACKOFF_MIN: Duration = Duration::from_millis(10);
pub const CREDIT_BACKOFF_MAX: Duration = Duration::from_millis(500);
/// Deadline of one Credit call to another node.
pub const CREDIT_CALL_TIMEOUT: Duration = Duration::from_secs(2);

/// How often a node that does not hold every partition asks the replicas of the others who
/// leads them (`directory.rs`): after a failover elsewhere, calls it routes there may go to
/// the old leader for up to this long (and are told NOT_LEADER, or forwarded once).
pub const LEADER_DIRECTORY_INTERVAL: Duration = Duration::from_millis(500);

/// A replica whose group may have removed it looks through at most this many unapplied log
/// entries for a membership change that could add it back (`store/membership.rs`); with a
/// longer tail it waits to apply more.
pub const REMOVAL_LOG_SCAN_MAX: u64 = 4096;

/// `ClusterService/MoveReplica`: how long one call drives a move before it answers
/// DEADLINE_EXCEEDED (the caller calls again: the move goes on from the applied membership),
/// and how often it plans the next step meanwhile.
pub const MOVE_CALL_DEADLINE: Duration = Duration::from_secs(60);
pub const MOVE_STEP_INTERVAL: Duration = Duration::from_millis(100);

/// One `PeerService/Leaders` or `PeerService/ReadRecord` call, at most (a read waits for a
/// ReadIndex round, bounded by `READ_TIMEOUT`).
pub const PEER_READ_CALL_TIMEOUT: Duration = Duration::from_secs(4);
/// Most partitions a cluster may have: a node may hold a replica of each, on one store
/// thread. Defined by placement, which walletctl checks against too.
pub const PARTITIONS_MAX: u32 = placement::PARTITIONS_MAX;

/// Longest wait for the leader's answer to a write this node forwarded (`forward.rs`); the
/// caller's own deadline, when shorter, ends it first.
pub const FORWARD_CALL_TIMEOUT: Duration = Duration::from_secs(30);

/// Credits one Credit call (or one local batch) carries.
pub const CREDIT_BATCH_MAX: usize = 4_096;
/// Credits waiting for their batch, per target partition.
pub const CREDIT_QUEUE_CAPACITY: usize = 65_536;
/// Credit calls in flight at once towards one target partition.
pub const CREDIT_BATCHES_IN_FLIGHT_MAX: usize = 4;

/// Default and bounds of `snapshot_interval_entries` (see `Config`).
pub const SNAPSHOT_INTERVAL_ENTRIES_DEFAULT: u64 = 100_000;
pub const SNAPSHOT_INTERVAL_ENTRIES_MIN: u64 = 10;
pub const SNAPSHOT_INTERVAL_ENTRIES_MAX: u64 = 10_000_000;
/// Default and upper bound of `snapshot_interval_events` (the lower bound is the entries').
pub const SNAPSHOT_INTERVAL_EVENTS_DEFAULT: u64 = 500_000;
pub const SNAPSHOT_INTERVAL_EVENTS_MAX: u64 = 100_000_000;
/// Memtables of all column families together (RocksDB's `db_write_buffer_size`).
pub const ROCKSDB_MEMTABLES_BYTES_MAX: usize = 256 * 1024 * 1024;
/// One memtable of the `records` column family (RocksDB's `write_buffer_size`; its default
/// is 64 MiB). Records are keyed by random ids, so every insert searches the memtable's skip
/// list from the top: a smaller one keeps that search in the CPU caches (BENCHMARKS.md,
/// "Memtables sized for random keys").
pub const RECORDS_MEMTABLE_BYTES: usize = 8 * 1024 * 1024;
/// Block cache of the `records` column family: with the memtables, the in-memory cache of
/// recent transfer records (a retry of a recent id is answered without a disk read).
pub const RECORDS_BLOCK_CACHE_BYTES: usize = 64 * 1024 * 1024;
/// Default and bound of `log_retain_entries`.
pub const LOG_RETAIN_ENTRIES_DEFAULT: u64 = 5_000;
pub const LOG_RETAIN_ENTRIES_MAX: u64 = 10_000_000;
/// How long a leader waits for a follower to fetch a snapshot it was sent before telling
/// raft the send failed (raft then retries later).
pub const SNAPSHOT_FETCH_TIMEOUT: Duration = Duration::from_secs(60);
/// How long a leader waits for a follower to start fetching a snapshot it was sent (a
/// follower killed or restarted meanwhile never will) before telling raft the send failed.
pub const SNAPSHOT_FETCH_START_TIMEOUT: Duration = Duration::from_secs(5);
/// Event blocks per FetchSnapshot message (and at most `SNAPSHOT_CHUNK_BYTES` of them).
pub const SNAPSHOT_EVENTS_PER_MESSAGE: usize = 1_024;

/// Concurrent event log Subscribe streams per node. Each costs a task, a buffer and disk
/// reads; read nodes need one per partition, so this leaves room for many read nodes.
pub const SUBSCRIBERS_MAX: usize = 64;
/// Event blocks buffered per subscriber between the disk reader and the gRPC stream. One block
/// is one raft entry (up to `ENTRY_COMMANDS_MAX` events), so this bounds memory per subscriber.
pub const SUBSCRIBER_BUFFER_BLOCKS: usize = 32;
/// Store rounds per partition held in memory for subscribers that are caught up (one round's
/// event blocks come from at most `RAFT_COMMITTED_BYTES_PER_READY_MAX` of entries, plus one
/// entry): they get new blocks from memory, and one further behind reads the disk. Held only
/// while a partition has subscribers.
pub const EVENT_TAIL_ROUNDS: usize = 32;
/// Blocks read from RocksDB per disk read of a subscriber: the iterator is dropped between
/// reads so a slow subscriber never pins memtables or SST files for long.
pub const SCAN_CHUNK_BLOCKS: usize = 256;
/// Encoded bytes read per disk read, whichever of the two bounds comes first.
pub const SCAN_CHUNK_BYTES_MAX: usize = 4 * 1024 * 1024;
/// What a refused subscriber (TOO_MANY_SUBSCRIBERS) is told to wait before retrying.
pub const SUBSCRIBE_RETRY_AFTER: Duration = Duration::from_secs(1);

/// The RetryInfo delay of NO_LEADER (an election is in progress).
pub const NO_LEADER_RETRY_AFTER: Duration = Duration::from_millis(200);
/// The RetryInfo delay of READ_TIMEOUT (a linearizable read ran out of `READ_TIMEOUT`).
pub const READ_TIMEOUT_RETRY_AFTER: Duration = Duration::from_millis(200);

/// Bytes per stored snapshot chunk and per FetchSnapshot state message.
pub const SNAPSHOT_CHUNK_BYTES: usize = 1024 * 1024;
/// Snapshots kept per partition: the newest one serves restarts and followers; older ones
/// are kept for audits (replay from a snapshot) until newer ones replace them.
pub const SNAPSHOTS_RETAINED: usize = 2;

/// Connections to peer nodes (raft streams, credits): connect timeout, HTTP/2 keep-alive
/// pings and how long an unanswered ping keeps the connection.
pub const PEER_CONNECT_TIMEOUT: Duration = Duration::from_secs(1);
pub const PEER_KEEP_ALIVE_INTERVAL: Duration = Duration::from_secs(10);
pub const PEER_KEEP_ALIVE_TIMEOUT: Duration = Duration::from_secs(5);
/// HTTP/2 flow-control windows of the raft stream's connection.
pub const PEER_STREAM_WINDOW_BYTES: u32 = 2 * 1024 * 1024;
pub const PEER_CONNECTION_WINDOW_BYTES: u32 = 8 * 1024 * 1024;
/// Connect timeout of a snapshot fetch (the fetch itself: `SNAPSHOT_FETCH_TIMEOUT`).
pub const SNAPSHOT_CONNECT_TIMEOUT: Duration = Duration::from_secs(2);

/// How often the store thread samples raft positions and the conservation sum for metrics.
pub const METRICS_SAMPLE_INTERVAL: Duration = Duration::from_secs(1);
/// How long in-flight calls get to finish once shutdown starts.
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

/// Accounts whose `allow_negative_balance` flag the API caches for the `issue` scope check
/// (a moka cache; about 100 bytes an entry, so at most about 26 MiB).
pub const ACCOUNT_FLAGS_CACHED_MAX: u64 = 1 << 18;

#[cfg(test)]
mod tests {
    use super::*;

    /// `1_000` as ARCHITECTURE.md writes it: `1,000`.
    fn thousands(value: u64) -> String {
        let digits = value.to_string();
        let mut text = String::new();
        for (position, digit) in digits.chars().enumerate() {
            if position > 0 && (digits.len() - position).is_multiple_of(3) {
                text.push(',');
            }
            text.push(digit);
        }
        text
    }

    /// The figures ARCHITECTURE.md quotes from this file: a change here must change the map
    /// too (it once said 20,000 entries for a 100,000-entry snapshot interval).
    #[test]
    fn architecture_quotes_these_limits() {
        testkit::assert_architecture_says(&[
            format!(
                "(default {}, `limits::SNAPSHOT_INTERVAL_ENTRIES_DEFAULT`",
                thousands(SNAPSHOT_INTERVAL_ENTRIES_DEFAULT)
            ),
            format!("(default {})", thousands(LOG_RETAIN_ENTRIES_DEFAULT)),
            format!("`RECOVERY_INTERVAL` ({} ms)", RECOVERY_INTERVAL.as_millis()),
            format!(
                "`limits::ROCKSDB_MEMTABLES_BYTES_MAX`, {} MiB)",
                ROCKSDB_MEMTABLES_BYTES_MAX >> 20
            ),
            format!(
                "(`limits::RECORDS_BLOCK_CACHE_BYTES`, {} MiB)",
                RECORDS_BLOCK_CACHE_BYTES >> 20
            ),
            format!(
                "`RAFT_COMMITTED_BYTES_PER_READY_MAX` ({} KiB)",
                RAFT_COMMITTED_BYTES_PER_READY_MAX >> 10
            ),
            format!("a round of {} ms or more", ROUND_SLOW.as_millis()),
        ]);
        assert_eq!(thousands(100_000), "100,000");
        assert_eq!(thousands(999), "999");
    }
}
