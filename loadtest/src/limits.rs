//! Every bound of the load test in one place: counts, times and queue sizes are capped so a
//! typo cannot start an unbounded run or fill memory.

use std::time::Duration;

/// Most ordinary accounts a run may use (the 10M); the expected-balance fold keeps
/// one `i64` per account, so this is also a memory bound (80 MB).
pub const ACCOUNTS_MAX: u32 = 10_000_000;

/// Most concurrent clients (unary callers, streams or PostgreSQL connections).
pub const CLIENTS_MAX: u32 = 4_096;

/// Most transfers one client may have outstanding (stream window or open-loop backlog).
pub const IN_FLIGHT_PER_CLIENT_MAX: u32 = 65_536;

/// Longest run.
pub const DURATION_MAX: Duration = Duration::from_secs(3_600);

/// Highest offered rate of an open-loop run, transfers per second over all clients.
pub const RATE_MAX: u64 = 10_000_000;

/// Most operations a run may be bounded to with `--requests`.
pub const REQUESTS_MAX: u64 = 1_000_000_000;

/// Most watcher streams (the read node serves 1024 streams at most).
pub const WATCHERS_MAX: u32 = 1_000;

/// Most accounts per watcher stream (the read node's per-watch limit is 1000).
pub const WATCH_ACCOUNTS_MAX: u32 = 1_000;

/// Concurrent calls while opening and funding accounts, and while verifying.
pub const SETUP_CONCURRENCY_MAX: usize = 4_096;

/// Funding transfers outstanding per SubmitTransfers stream during setup.
pub const FUNDING_WINDOW: usize = 2_048;

/// Transfers whose outcome was unknown (indefinite errors) kept for verification; beyond this
/// a run cannot prove exactly-once and verification fails.
pub const UNKNOWN_OUTCOMES_MAX: usize = 200_000;

/// Acknowledged transfers kept (reservoir sample) for the GetTransfer check, at most.
pub const ACKED_SAMPLE_MAX: usize = 100_000;

/// Most accounts read back with GetAccount during verification.
pub const VERIFY_ACCOUNTS_MAX: u32 = 10_000_000;

/// Points of the throughput/latency time series (one per tick): enough for the longest run.
pub const TIMELINE_POINTS_MAX: usize = 4_000;

/// Period of the time series and of the progress bar's figures.
pub const TICK: Duration = Duration::from_secs(1);

/// Longest wait for the cluster to report SERVING, for the read node to catch up, and for
/// in-flight cross-partition transfers to settle before verification.
pub const SETTLE_WAIT_MAX: Duration = Duration::from_secs(60);

/// Largest latency the histograms hold (longer ones are clamped to it): one minute.
pub const LATENCY_MICROS_MAX: u64 = 60_000_000;

/// Examples of each kind of verification failure printed, at most.
pub const VIOLATION_EXAMPLES_MAX: usize = 10;

/// Accounts whose read-node balance is compared with GetAccount's, at most.
pub const READ_NODE_CHECK_MAX: usize = 20_000;

/// Stream (re)connection attempts per client before it gives up.
pub const STREAM_RECONNECTS_MAX: u32 = 50;

const _: () = assert!(ACKED_SAMPLE_MAX <= UNKNOWN_OUTCOMES_MAX);
// A window must fit in the bounded request channel the stream is fed from, which is sized by it.
const _: () = assert!(FUNDING_WINDOW <= IN_FLIGHT_PER_CLIENT_MAX as usize);
// The timeline covers the longest run at one point per tick.
const _: () = assert!(TIMELINE_POINTS_MAX as u64 >= DURATION_MAX.as_secs() + 60);
