//! Multi-leg transfers (`TransferLegs`) against what their clients were told and what
//! `GetTransfer` reads back at the end.
//!
//! Per set id, with the final state read after quiescence:
//!
//! - an acknowledged set is `COMPLETED` with exactly the legs sent (same accounts, amounts,
//!   order and currency); it is never also refused;
//! - a refused set is never `COMPLETED`: it is `REJECTED`, or not found only when the edge
//!   refused it without recording anything ([`UNRECORDED_REFUSALS`]: bad input,
//!   `LEGS_SPAN_PARTITIONS`); a `REJECTED` set names the leg the client was told;
//! - a set whose outcome stayed unknown is either `COMPLETED` (counted as applied) or
//!   `REJECTED` / not found (nothing applied); never `IN_FLIGHT` after quiescence.
//!
//! The completed sets are returned with all their legs, so the final-balance fold, the
//! pushes and the read-node history count every leg of a completed set exactly once and
//! nothing of any other set; [`check_all_or_none`] then checks, per set, that the read
//! node's history shows either every leg or none.

use std::collections::{BTreeMap, HashMap};

use proto::v1::TransferStatus;

use super::{Completed, FinalTransfer, HistoryRow, Report};
use crate::history::{Entry, Leg, Op, Phase};

/// Refusals the edge answers before anything is decided, so nothing is recorded under the
/// id (`GetTransfer` may answer NOT_FOUND): malformed sets and legs, a set across
/// partitions, a cluster mid-upgrade. Any other refusal is recorded as REJECTED.
pub const UNRECORDED_REFUSALS: [&str; 11] = [
    "LEGS_SPAN_PARTITIONS",
    "LEGS_OUT_OF_RANGE",
    "REPEATED_LEG",
    "MIXED_CURRENCIES",
    "INVALID_AMOUNT",
    "AMOUNT_OUT_OF_RANGE",
    "INVALID_ACCOUNT_ID",
    "SAME_ACCOUNT",
    "UNKNOWN_CURRENCY",
    "INVALID_TRANSACTION_ID",
    "CLUSTER_UPGRADING",
];

/// What the clients sent under one set id, and every outcome they saw.
struct Sent {
    currency: String,
    legs: Vec<Leg>,
    /// Completions: phase, detail (reason or token), refused leg.
    outcomes: Vec<(Phase, String, Option<u32>)>,
}

fn sent(history: &[Entry], report: &mut Report) -> BTreeMap<String, Sent> {
    let mut sets: BTreeMap<String, Sent> = BTreeMap::new();
    for entry in history {
        let Op::Legs {
            transaction_id,
            currency,
            legs,
            detail,
            leg,
        } = &entry.op
        else {
            continue;
        };
        let set = sets.entry(transaction_id.clone()).or_insert_with(|| Sent {
            currency: currency.clone(),
            legs: legs.clone(),
            outcomes: Vec::new(),
        });
        if (&set.currency, &set.legs) != (currency, legs) {
            report.anomaly(format!(
                "harness bug: set {transaction_id} sent with two sets of legs"
            ));
        }
        if entry.phase != Phase::Invoke {
            set.outcomes.push((entry.phase, detail.clone(), *leg));
        }
    }
    sets
}

/// Every multi-leg id of the history and the rows a completed set shows in the read node's
/// history: two per leg within a partition (its debit and its credit), one per account whose
/// net change is not zero across partitions (each part moves its accounts' net); and whether
/// the set spans partitions.
pub(super) fn set_rows(history: &[Entry]) -> BTreeMap<String, (usize, bool)> {
    history
        .iter()
        .filter_map(|entry| match &entry.op {
            Op::Legs {
                transaction_id,
                legs,
                ..
            } => {
                let moved: Vec<(String, String, i64)> = legs
                    .iter()
                    .map(|leg| (leg.from.clone(), leg.to.clone(), leg.amount_minor))
                    .collect();
                let rows = if super::spans_partitions(&moved) {
                    super::net_by_account(&moved)
                        .iter()
                        .filter(|(_, net)| *net != 0)
                        .count()
                } else {
                    2 * legs.len()
                };
                Some((
                    transaction_id.clone(),
                    (rows, super::spans_partitions(&moved)),
                ))
            }
            _ => None,
        })
        .collect()
}

/// Checks every set; returns the completed ones (id → all legs).
pub(super) fn check_legs(
    history: &[Entry],
    finals: &HashMap<String, Option<FinalTransfer>>,
    report: &mut Report,
) -> Completed {
    let mut completed = Completed::new();
    for (id, sent) in sent(history, report) {
        report.legs_attempted += 1;
        let acknowledged = sent
            .outcomes
            .iter()
            .any(|(phase, _, _)| *phase == Phase::Ok);
        let refusals: Vec<&(Phase, String, Option<u32>)> = sent
            .outcomes
            .iter()
            .filter(|(phase, _, _)| *phase == Phase::Fail)
            .collect();
        let refused = !refusals.is_empty();
        if sent
            .outcomes
            .iter()
            .any(|(phase, _, _)| *phase == Phase::Unknown)
        {
            report.legs_resubmitted += 1;
        }
        if acknowledged {
            report.legs_acknowledged += 1;
        } else if refused {
            report.legs_refused += 1;
        } else {
            report.legs_unknown += 1;
        }
        if acknowledged && refused {
            report.anomaly(format!(
                "set {id}: both acknowledged and refused: {:?}",
                sent.outcomes
            ));
        }
        let Some(found) = finals.get(&id) else {
            report.anomaly(format!("harness bug: no final GetTransfer for set {id}"));
            continue;
        };
        let legs_sent: Vec<(String, String, i64)> = sent
            .legs
            .iter()
            .map(|leg| (leg.from.clone(), leg.to.clone(), leg.amount_minor))
            .collect();
        // A recorded set, completed or refused, is exactly the set sent.
        if let Some(state) = found
            && let Some(status) = match state.status {
                TransferStatus::Completed => Some("COMPLETED"),
                TransferStatus::Rejected => Some("REJECTED"),
                _ => None,
            }
            && (state.legs != legs_sent || state.currency != sent.currency)
        {
            report.anomaly(format!(
                "set {id}: {status} with other legs: {:?} {}, sent {legs_sent:?} {}",
                state.legs, state.currency, sent.currency
            ));
        }
        match found {
            Some(state) if state.status == TransferStatus::Completed => {
                report.legs_completed += 1;
                if let Some((_, reason, leg)) = refusals.first() {
                    report.anomaly(format!(
                        "set {id}: refused {reason} (leg {leg:?}) to the client but COMPLETED: \
                         a refused set moved money"
                    ));
                }
                if !acknowledged && !refused {
                    report.legs_unknown_applied += 1;
                }
                // What moved is what the node recorded (a mismatch is reported above the match).
                report.legs_moved += state.legs.len();
                report.legs_completed_across += usize::from(super::spans_partitions(&state.legs));
                completed.insert(id.clone(), state.legs.clone());
            }
            Some(state) if state.status == TransferStatus::Rejected => {
                report.legs_rejected += 1;
                if acknowledged {
                    report.anomaly(format!(
                        "set {id}: acknowledged but lost (final state REJECTED at leg {:?})",
                        state.rejected_leg
                    ));
                }
                for (_, reason, leg) in &refusals {
                    if leg.is_some() && *leg != state.rejected_leg {
                        report.anomaly(format!(
                            "set {id}: refused {reason} at leg {leg:?}, recorded REJECTED at \
                             leg {:?}",
                            state.rejected_leg
                        ));
                    }
                }
            }
            Some(state) => report.anomaly(format!(
                "set {id}: final state {:?} after quiescence",
                state.status
            )),
            None => {
                if acknowledged {
                    report.anomaly(format!("set {id}: acknowledged but lost (not found)"));
                }
                for (_, reason, _) in &refusals {
                    if !UNRECORDED_REFUSALS.contains(&reason.as_str()) {
                        report.anomaly(format!(
                            "set {id}: refused {reason} but no REJECTED record (not found)"
                        ));
                    }
                }
            }
        }
    }
    completed
}

/// All or none, on the read node: across every account's history, a completed set shows
/// exactly its rows ([`set_rows`]), any other set none, or across partitions only debits and
/// their refunds (a part prepared before the set was rejected), in pairs. (The per-account
/// checks compare each account's rows with its legs; this names a set applied in part.)
pub(super) fn check_all_or_none(
    read_history: &BTreeMap<String, Vec<HistoryRow>>,
    completed: &Completed,
    sets: &BTreeMap<String, (usize, bool)>,
    report: &mut Report,
) {
    let mut rows: BTreeMap<&str, usize> = BTreeMap::new();
    for row in read_history.values().flatten() {
        if sets.contains_key(&row.transaction_id) {
            *rows.entry(row.transaction_id.as_str()).or_default() += 1;
        }
    }
    for (id, (want, spans)) in sets {
        let seen = rows.get(id.as_str()).copied().unwrap_or(0);
        match completed.get(id) {
            Some(moved) if seen != *want => report.anomaly(format!(
                "all-or-none: set {id} (COMPLETED, {} legs) shows {seen} of its {want} rows in \
                 the read-node history",
                moved.len(),
            )),
            None if seen > 0 && (!spans || seen % 2 != 0) => report.anomaly(format!(
                "all-or-none: set {id} is not COMPLETED but shows {seen} rows in the read-node \
                 history"
            )),
            _ => {}
        }
    }
}
