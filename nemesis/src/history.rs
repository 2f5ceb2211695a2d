//! The history: every operation's invocation and completion, with timestamps, as Jepsen
//! records it. Written as JSON next to the run's data, and checked afterwards.

use std::sync::Mutex;
use std::time::Instant;

use serde::Serialize;

/// Entries one history holds. Clients stop issuing operations when it is full (and the run
/// reports it), so memory stays bounded however long `--duration` is.
pub const HISTORY_ENTRIES_MAX: usize = 1_000_000;

/// How an operation ended, or that it started.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Phase {
    Invoke,
    /// Definitely happened (for a transfer: final and acknowledged).
    Ok,
    /// Definitely did not happen (a rejection).
    Fail,
    /// Unknown outcome (Jepsen's `:info`): may or may not have happened.
    Unknown,
}

/// What an entry is about.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum Op {
    Transfer {
        transaction_id: String,
        from: String,
        to: String,
        amount_minor: i64,
        currency: String,
        /// Completion only: the error reason, or the consistency token on success.
        detail: String,
        /// The id was already used by this worker for another transfer that reached a final
        /// outcome, and this one is sent from an account whose partition recorded it: it must
        /// be refused (`TRANSACTION_ID_REUSED`) and move nothing.
        reuse: bool,
    },
    /// A multi-leg transfer (`TransferLegs`): every leg moves, or none does.
    Legs {
        transaction_id: String,
        currency: String,
        /// In the order sent (the order the node applies them in).
        legs: Vec<Leg>,
        /// Completion only: the error reason, or the consistency token on success.
        detail: String,
        /// A refusal's first refused leg (ErrorInfo metadata `leg`), if the node named one.
        leg: Option<u32>,
    },
    /// One step of a hold (`AuthorizeTransfer`, `CaptureTransfer`, `VoidTransfer`).
    Hold {
        step: HoldStep,
        transaction_id: String,
        from: String,
        to: String,
        currency: String,
        /// Authorize: the amount held. Capture: the amount asked for (0: all of it). Void: 0.
        amount_minor: i64,
        /// Authorize: the hold's timeout in milliseconds; 0 for the other steps.
        timeout_ms: u64,
        /// Completion only: the error reason, or on success the hold's status as answered.
        detail: String,
        /// Completion of a successful capture: the captured amount the node answered.
        captured_minor: i64,
    },
    /// An account lifecycle change (`FreezeAccount`, `UnfreezeAccount`).
    Account {
        change: AccountChange,
        account_id: String,
        /// Completion only: the error reason, or on success the account's status as answered.
        detail: String,
    },
    /// A `GetAccount` sweep over every account (completion: balances in minor units).
    Read {
        balances: Vec<(String, i64)>,
        /// Whether the workload was stopped and nothing was in flight (a conservation check).
        quiescent: bool,
    },
    /// A fault injected or healed.
    Nemesis {
        fault: String,
        node: String,
        detail: String,
    },
    /// A balance update pushed to a watcher.
    Push {
        watcher: String,
        account_id: String,
        sequence: u64,
        snapshot: bool,
        balance_minor: i64,
        delta_minor: i64,
        transaction_id: String,
    },
}

/// One leg of an [`Op::Legs`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Leg {
    pub from: String,
    pub to: String,
    pub amount_minor: i64,
}

/// The step of a hold an [`Op::Hold`] is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum HoldStep {
    Authorize,
    Capture,
    Void,
}

/// The lifecycle change an [`Op::Account`] is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum AccountChange {
    Freeze,
    Unfreeze,
}

#[derive(Clone, Debug, Serialize)]
pub struct Entry {
    /// Milliseconds since the run started.
    pub time_ms: u64,
    /// Who did it: `worker-3`, `reader`, `nemesis`, `watcher-sdk`.
    pub process: String,
    pub phase: Phase,
    #[serde(flatten)]
    pub op: Op,
}

/// The shared, bounded history.
pub struct History {
    started: Instant,
    entries: Mutex<Vec<Entry>>,
}

impl History {
    pub fn new() -> History {
        History {
            started: Instant::now(),
            entries: Mutex::new(Vec::new()),
        }
    }

    pub fn elapsed_ms(&self) -> u64 {
        self.started.elapsed().as_millis() as u64
    }

    /// Appends an entry; false (and nothing recorded) when the history is full.
    pub fn record(&self, process: &str, phase: Phase, op: Op) -> bool {
        let mut entries = self.entries.lock().expect("history lock");
        if entries.len() >= HISTORY_ENTRIES_MAX {
            return false;
        }
        entries.push(Entry {
            time_ms: self.elapsed_ms(),
            process: process.to_owned(),
            phase,
            op,
        });
        true
    }

    pub fn full(&self) -> bool {
        self.entries.lock().expect("history lock").len() >= HISTORY_ENTRIES_MAX
    }

    /// Runs `f` on the entries recorded so far, without copying them.
    pub fn with_entries<T>(&self, f: impl FnOnce(&[Entry]) -> T) -> T {
        f(&self.entries.lock().expect("history lock"))
    }

    pub fn snapshot(&self) -> Vec<Entry> {
        self.entries.lock().expect("history lock").clone()
    }

    /// Writes the history as a JSON array to `path`.
    pub fn write_json(&self, path: &std::path::Path) -> std::io::Result<()> {
        let entries = self.snapshot();
        let file = std::io::BufWriter::new(std::fs::File::create(path)?);
        serde_json::to_writer(file, &entries).map_err(std::io::Error::other)
    }
}

impl Default for History {
    fn default() -> Self {
        History::new()
    }
}
