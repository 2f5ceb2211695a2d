//! Frozen accounts against the freezer's history (`workload::freezer`, and the end of the
//! run's unfreeze of whatever stayed frozen).
//!
//! From the `Op::Account` attempts (each invoke paired with its completion per process):
//!
//! - *definitely frozen* intervals of an account: from an acknowledged freeze until the next
//!   unfreeze of it is first sent. Only while no unfreeze of it ended with an unknown
//!   outcome before the interval ends (such an unfreeze might still apply late), so the
//!   account was frozen throughout each interval kept;
//! - *possibly frozen* intervals: from a freeze being sent until the next acknowledged
//!   unfreeze, or to the end of time for a freeze whose outcome stayed unknown (it might
//!   apply late).
//!
//! An operation's window runs from the first time its id (for a capture: the first capture of
//! the hold) was sent to its completion: whatever decided it, an earlier attempt included,
//! was decided within it. Then:
//!
//! - a transfer, authorization or capture refused ACCOUNT_FROZEN must have a window that
//!   meets a possibly-frozen interval of one of its accounts;
//! - an acknowledged transfer or capture whose window lies inside a definitely-frozen
//!   interval of its source or target moved money while the account was frozen: an anomaly;
//!   so is an acknowledged authorization whose window lies inside one of its source.
//!
//! A multi-leg set counts as an operation on every account of its legs (each is checked as
//! a transfer checks its source and target).

use std::collections::{BTreeMap, HashMap};

use super::Report;
use crate::history::{AccountChange, Entry, HoldStep, Op, Phase};

/// Closed intervals of history time, milliseconds.
type Intervals = Vec<(u64, u64)>;

#[derive(Default)]
struct Frozen {
    definitely: Intervals,
    possibly: Intervals,
}

/// One freeze or unfreeze attempt.
struct Change {
    change: AccountChange,
    invoked_ms: u64,
    ended_ms: u64,
    phase: Phase,
}

fn frozen_intervals(history: &[Entry]) -> BTreeMap<String, Frozen> {
    let mut open: HashMap<(String, String), u64> = HashMap::new();
    let mut changes: BTreeMap<String, Vec<Change>> = BTreeMap::new();
    for entry in history {
        let Op::Account {
            change, account_id, ..
        } = &entry.op
        else {
            continue;
        };
        let key = (entry.process.clone(), account_id.clone());
        if entry.phase == Phase::Invoke {
            open.insert(key, entry.time_ms);
            continue;
        }
        changes.entry(account_id.clone()).or_default().push(Change {
            change: *change,
            invoked_ms: open.remove(&key).unwrap_or(entry.time_ms),
            ended_ms: entry.time_ms,
            phase: entry.phase,
        });
    }
    let mut all = BTreeMap::new();
    for (account, mut changes) in changes {
        changes.sort_by_key(|c| c.invoked_ms);
        let mut frozen = Frozen::default();
        let unfreezes = || {
            changes
                .iter()
                .filter(|c| c.change == AccountChange::Unfreeze)
        };
        for freeze in changes
            .iter()
            .filter(|c| c.change == AccountChange::Freeze && c.phase != Phase::Fail)
        {
            let next_unfreeze = unfreezes()
                .filter(|u| u.invoked_ms >= freeze.ended_ms)
                .map(|u| u.invoked_ms)
                .min()
                .unwrap_or(u64::MAX);
            let unknown_unfreeze_before =
                unfreezes().any(|u| u.phase == Phase::Unknown && u.invoked_ms <= next_unfreeze);
            if freeze.phase == Phase::Ok && !unknown_unfreeze_before {
                frozen.definitely.push((freeze.ended_ms, next_unfreeze));
            }
            let until = match freeze.phase {
                Phase::Ok => unfreezes()
                    .filter(|u| u.phase == Phase::Ok && u.ended_ms >= freeze.invoked_ms)
                    .map(|u| u.ended_ms)
                    .min()
                    .unwrap_or(u64::MAX),
                _ => u64::MAX,
            };
            frozen.possibly.push((freeze.invoked_ms, until));
        }
        all.insert(account, frozen);
    }
    all
}

/// An operation that may move money between two accounts, or was refused for one of them.
struct Decided {
    what: String,
    accounts: Vec<String>,
    /// The accounts whose freezing forbids success (an authorization: its source only).
    guarded: Vec<String>,
    window: (u64, u64),
    phase: Phase,
    detail: String,
}

fn decided(history: &[Entry]) -> Vec<Decided> {
    // id (and step) → first invoke time.
    let mut first: HashMap<(String, u8), u64> = HashMap::new();
    let mut out = Vec::new();
    for entry in history {
        let (what, key, accounts, detail, guarded) = match &entry.op {
            Op::Transfer {
                transaction_id,
                from,
                to,
                detail,
                reuse: false,
                ..
            } => (
                "transfer",
                (transaction_id, 0),
                vec![from.clone(), to.clone()],
                detail,
                vec![from.clone(), to.clone()],
            ),
            // Every account of every leg is checked as a transfer checks its two.
            Op::Legs {
                transaction_id,
                legs,
                detail,
                ..
            } => {
                let mut accounts: Vec<String> = Vec::new();
                for leg in legs {
                    for account in [&leg.from, &leg.to] {
                        if !accounts.contains(account) {
                            accounts.push(account.clone());
                        }
                    }
                }
                (
                    "set",
                    (transaction_id, 3),
                    accounts.clone(),
                    detail,
                    accounts,
                )
            }
            Op::Hold {
                step: HoldStep::Authorize,
                transaction_id,
                from,
                to,
                detail,
                ..
            } => (
                "authorization",
                (transaction_id, 1),
                vec![from.clone(), to.clone()],
                detail,
                vec![from.clone()],
            ),
            Op::Hold {
                step: HoldStep::Capture,
                transaction_id,
                from,
                to,
                detail,
                ..
            } => (
                "capture",
                (transaction_id, 2),
                vec![from.clone(), to.clone()],
                detail,
                vec![from.clone(), to.clone()],
            ),
            _ => continue,
        };
        let started = *first.entry((key.0.clone(), key.1)).or_insert(entry.time_ms);
        if entry.phase == Phase::Invoke || entry.phase == Phase::Unknown {
            continue;
        }
        out.push(Decided {
            what: format!("{what} {}", key.0),
            accounts,
            guarded,
            window: (started, entry.time_ms),
            phase: entry.phase,
            detail: detail.clone(),
        });
    }
    out
}

pub(super) fn check_frozen(history: &[Entry], report: &mut Report) {
    let frozen = frozen_intervals(history);
    report.freezes_acknowledged = history
        .iter()
        .filter(|e| {
            e.phase == Phase::Ok
                && matches!(
                    e.op,
                    Op::Account {
                        change: AccountChange::Freeze,
                        ..
                    }
                )
        })
        .count();
    let empty = Frozen::default();
    for op in decided(history) {
        let (start, end) = op.window;
        let of = |account: &String| frozen.get(account).unwrap_or(&empty);
        if op.phase == Phase::Fail && op.detail == "ACCOUNT_FROZEN" {
            report.frozen_refusals += 1;
            let met = op.accounts.iter().any(|account| {
                of(account)
                    .possibly
                    .iter()
                    .any(|&(from, until)| from <= end && start <= until)
            });
            if !met {
                report.anomaly(format!(
                    "{} refused ACCOUNT_FROZEN in t={start}..{end}ms, when none of {:?} was \
                     frozen",
                    op.what, op.accounts
                ));
            }
        }
        let inside: Vec<&String> = op
            .guarded
            .iter()
            .filter(|account| {
                of(account)
                    .definitely
                    .iter()
                    .any(|&(from, until)| from <= start && end <= until)
            })
            .collect();
        if inside.is_empty() {
            continue;
        }
        report.frozen_windows_checked += 1;
        if op.phase == Phase::Ok {
            report.anomaly(format!(
                "{} acknowledged in t={start}..{end}ms while {inside:?} was frozen throughout",
                op.what
            ));
        }
    }
}
